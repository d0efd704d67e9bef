//! The simulated network's TCP: listeners and streams between hosts, and the per-socket side
//! of the faults in [`link`](crate::link) (resets, crashes).
//!
//! A stream is two ordered byte pipes, each bounded by a window: a writer whose peer does not
//! read waits, as on a real socket once both buffers are full, so backpressure is real. Bytes
//! written while the two hosts cannot reach each other are held and arrive after the heal (TCP
//! retransmits), and a connect across a cut waits for the heal, for the caller's timeout, or
//! [`CONNECT_GIVE_UP`](crate::CONNECT_GIVE_UP) at most.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::executor::{SimRuntime, State, World};
use crate::trace::Event;

/// The default window of each direction of a stream: what a writer may have in flight and
/// unread before it waits (a loopback socket pair holds a few hundred KiB; this is smaller so
/// that backpressure shows quickly).
pub const DEFAULT_WINDOW: usize = 64 * 1024;

/// The default one-way latency of every link: time passes when data crosses the network.
pub const DEFAULT_LATENCY: Duration = Duration::from_micros(50);

/// The most a stream sends as one segment over a link with a bandwidth (Ethernet's MSS).
const SEGMENT: usize = 1460;

/// First port handed out when a socket binds port 0.
const EPHEMERAL_START: u16 = 49_152;

#[derive(Default)]
pub(crate) struct NetState {
    listeners: HashMap<SocketAddr, usize>,
    listener_slots: Vec<Option<ListenerState>>,
    conns: Vec<Conn>,
    /// Ports in use per host address (listeners and connected streams).
    pub(crate) used_ports: HashSet<SocketAddr>,
    next_port: HashMap<IpAddr, u16>,
    /// Hosts, links and faults.
    pub(crate) links: crate::link::Links,
    /// Connects waiting for a path to open.
    blocked: Vec<Waker>,
    /// Datagrams held on a cut link: receiving socket's address, sender, bytes.
    pub(crate) held_datagrams: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// How long bytes and datagrams take from one socket to another.
    pub(crate) latency: Duration,
    /// Bound UDP sockets by address, and their state by id.
    pub(crate) udp: HashMap<SocketAddr, usize>,
    pub(crate) udp_slots: Vec<Option<crate::udp::UdpState>>,
    pub(crate) udp_faults: crate::udp::UdpFaults,
}

struct ListenerState {
    backlog: VecDeque<(usize, SocketAddr)>,
    acceptor: Option<Waker>,
}

/// One connection: `pipes[i]` carries what side `i` writes.
struct Conn {
    addrs: [SocketAddr; 2],
    pipes: [Pipe; 2],
    /// Set by a reset (either side, or a host reset): every operation fails.
    reset: bool,
    /// Side `i` dropped its stream.
    dropped: [bool; 2],
    /// Side `i`'s host crashed: its end is dead, and sends nothing more (not even a FIN).
    crashed: [bool; 2],
}

struct Pipe {
    /// What was written, each run of bytes with the virtual time it reaches the reader.
    data: VecDeque<(Duration, Vec<u8>)>,
    /// Bytes in `data`: bounded by `window`.
    buffered: usize,
    window: usize,
    /// The writer closed its side (FIN) at this time plus the latency, after `data`.
    fin: Option<Duration>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            data: VecDeque::new(),
            buffered: 0,
            window: DEFAULT_WINDOW,
            fin: None,
            reader: None,
            writer: None,
        }
    }

    fn wake(&mut self) {
        self.reader.take().into_iter().for_each(Waker::wake);
        self.writer.take().into_iter().for_each(Waker::wake);
    }
}

impl NetState {
    pub(crate) fn new() -> Self {
        NetState {
            latency: DEFAULT_LATENCY,
            ..NetState::default()
        }
    }

    /// Everything a change of paths may unblock: connects, every stream's reader and writer,
    /// and UDP readers; held datagrams whose path opened are delivered (and those whose path
    /// is now lost, dropped).
    pub(crate) fn paths_changed(&mut self) -> Vec<Waker> {
        let mut woken = std::mem::take(&mut self.blocked);
        for conn in &mut self.conns {
            for pipe in &mut conn.pipes {
                woken.extend(pipe.reader.take());
                woken.extend(pipe.writer.take());
            }
        }
        let held = std::mem::take(&mut self.held_datagrams);
        for (to, from, bytes) in held {
            match self.links.path(from.ip(), to.ip()) {
                crate::link::Path::Held => self.held_datagrams.push((to, from, bytes)),
                crate::link::Path::Lost => {}
                crate::link::Path::Open => {
                    if let Some(&target) = self.udp.get(&to) {
                        if let Some(socket) = self.udp_slots[target].as_mut() {
                            socket.deliver(from, bytes, Duration::ZERO, None);
                        }
                    }
                }
            }
        }
        for socket in self.udp_slots.iter_mut().flatten() {
            woken.extend(socket.take_reader());
        }
        woken
    }

    /// `host` crashed: its listeners and UDP sockets vanish, its ends of connections die, its
    /// ports are free.
    pub(crate) fn crash_sockets(&mut self, host: IpAddr) {
        // Sorted: a map's order differs from process to process, wakes must not.
        let mut listeners: Vec<SocketAddr> = self
            .listeners
            .keys()
            .filter(|a| a.ip() == host)
            .copied()
            .collect();
        listeners.sort();
        for addr in listeners {
            let id = self.listeners.remove(&addr).expect("listed");
            if let Some(slot) = self.listener_slots[id].take() {
                slot.acceptor.into_iter().for_each(Waker::wake);
            }
        }
        let mut sockets: Vec<SocketAddr> = self
            .udp
            .keys()
            .filter(|a| a.ip() == host)
            .copied()
            .collect();
        sockets.sort();
        for addr in sockets {
            let id = self.udp.remove(&addr).expect("listed");
            if let Some(socket) = self.udp_slots[id].take() {
                socket.into_reader().into_iter().for_each(Waker::wake);
            }
        }
        self.held_datagrams.retain(|(to, _, _)| to.ip() != host);
        for conn in &mut self.conns {
            let mut hit = false;
            for side in 0..2 {
                if conn.addrs[side].ip() == host && !conn.crashed[side] {
                    conn.crashed[side] = true;
                    hit = true;
                }
            }
            if hit {
                conn.pipes.iter_mut().for_each(Pipe::wake);
            }
        }
        self.used_ports.retain(|a| a.ip() != host);
        self.next_port.remove(&host);
    }

    /// `host` restarted: the peers of its dead connections get a reset.
    pub(crate) fn reset_crashed(&mut self, host: IpAddr) {
        let ids: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                let conn = &self.conns[i];
                (0..2).any(|s| conn.crashed[s] && conn.addrs[s].ip() == host)
            })
            .collect();
        for id in ids {
            self.reset_conn(id);
        }
    }

    /// `addr` with its port chosen when it is 0.
    pub(crate) fn bind_port(&mut self, mut addr: SocketAddr) -> io::Result<SocketAddr> {
        if addr.port() == 0 {
            let next = self.next_port.entry(addr.ip()).or_insert(EPHEMERAL_START);
            let start = *next;
            loop {
                let candidate = SocketAddr::new(addr.ip(), *next);
                *next = if *next == u16::MAX {
                    EPHEMERAL_START
                } else {
                    *next + 1
                };
                if !self.used_ports.contains(&candidate) {
                    addr = candidate;
                    break;
                }
                if *next == start {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "no free ephemeral port",
                    ));
                }
            }
        } else if self.used_ports.contains(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is in use"),
            ));
        }
        self.used_ports.insert(addr);
        Ok(addr)
    }

    fn reset_conn(&mut self, id: usize) {
        let conn = &mut self.conns[id];
        if !conn.reset {
            conn.reset = true;
            conn.pipes.iter_mut().for_each(Pipe::wake);
        }
    }
}

impl SimRuntime {
    /// The address this handle's host uses for a socket bound to `addr`: an unspecified or
    /// loopback address means the host's own.
    pub(crate) fn local_ip(&self, addr: IpAddr) -> IpAddr {
        if addr.is_unspecified() || addr.is_loopback() {
            self.host
        } else {
            addr
        }
    }

    /// Where `addr` leads from this host: loopback is the host itself.
    pub(crate) fn remote_ip(&self, addr: IpAddr) -> IpAddr {
        if addr.is_loopback() {
            self.host
        } else {
            addr
        }
    }

    /// Starts listening on `addr` of this handle's host (port 0: an ephemeral one).
    pub fn listen(&self, addr: SocketAddr) -> io::Result<SimListener> {
        let mut state = self.world.lock();
        if !state.net.links.is_up(self.host) {
            return Err(host_down());
        }
        let addr = SocketAddr::new(self.local_ip(addr.ip()), addr.port());
        let addr = state.net.bind_port(addr)?;
        let id = state.net.listener_slots.len();
        state.net.listener_slots.push(Some(ListenerState {
            backlog: VecDeque::new(),
            acceptor: None,
        }));
        state.net.listeners.insert(addr, id);
        let at = state.now;
        state.trace.push(at, Event::Listen { addr });
        Ok(SimListener {
            world: self.world.clone(),
            id,
            addr,
        })
    }

    /// Connects to `addr` from this handle's host: refused at once when nothing listens there;
    /// while the path is cut (or the host is down or does not exist) it waits for the path to
    /// open, and fails with `TimedOut` after [`CONNECT_GIVE_UP`](crate::CONNECT_GIVE_UP).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<SimTcpStream> {
        self.connect_from(addr, None).await
    }

    /// [`connect`](Self::connect) from the port of `local`, if given.
    pub async fn connect_from(
        &self,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> io::Result<SimTcpStream> {
        let remote = SocketAddr::new(self.remote_ip(addr.ip()), addr.port());
        let mut give_up: Option<crate::executor::SimTimer> = None;
        futures_lite::future::poll_fn(|cx| {
            let mut guard = self.world.lock();
            let state = &mut *guard;
            if !state.net.links.is_up(self.host) {
                return Poll::Ready(Err(host_down()));
            }
            if state.net.links.path(self.host, remote.ip()) == crate::link::Path::Open {
                return Poll::Ready(self.connect_now(state, remote, local));
            }
            let timer = give_up.get_or_insert_with(|| {
                let at = state.now + crate::link::CONNECT_GIVE_UP;
                crate::executor::SimTimer::at(&self.world, at)
            });
            state.net.blocked.push(cx.waker().clone());
            drop(guard);
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            let mut state = self.world.lock();
            let at = state.now;
            state.trace.push(at, Event::ConnectTimedOut { to: remote });
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {remote}"),
            )))
        })
        .await
    }

    fn connect_now(
        &self,
        state: &mut State,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> io::Result<SimTcpStream> {
        let at = state.now;
        let Some(&listener) = state.net.listeners.get(&remote) else {
            state.trace.push(at, Event::Refused { to: remote });
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on {remote}"),
            ));
        };
        let port = local.map_or(0, |l| l.port());
        let local = state.net.bind_port(SocketAddr::new(self.host, port))?;
        let id = state.net.conns.len();
        state.net.conns.push(Conn {
            addrs: [local, remote],
            pipes: [Pipe::new(), Pipe::new()],
            reset: false,
            dropped: [false, false],
            crashed: [false, false],
        });
        let slot = state.net.listener_slots[listener]
            .as_mut()
            .expect("a listener in the map is live");
        slot.backlog.push_back((id, local));
        slot.acceptor.take().into_iter().for_each(Waker::wake);
        state.trace.push(
            at,
            Event::Connect {
                from: local,
                to: remote,
            },
        );
        Ok(SimTcpStream {
            world: self.world.clone(),
            conn: id,
            side: 0,
            arrival: None,
        })
    }

    /// Sets the one-way latency of every link without one of its own
    /// ([`set_link_latency`](Self::set_link_latency)) from now on (default [`DEFAULT_LATENCY`]).
    pub fn set_latency(&self, latency: Duration) {
        self.world.lock().net.latency = latency;
    }

    /// Resets every connection of `host` (both ends fail with `ConnectionReset`).
    pub fn reset_host(&self, host: IpAddr) {
        let mut state = self.world.lock();
        let at = state.now;
        state.trace.push(at, Event::ResetHost { host });
        let ids: Vec<usize> = (0..state.net.conns.len())
            .filter(|&i| state.net.conns[i].addrs.iter().any(|a| a.ip() == host))
            .collect();
        for id in ids {
            state.net.reset_conn(id);
        }
    }
}

/// A listening socket of the simulated network.
#[derive(Debug)]
pub struct SimListener {
    world: Arc<World>,
    id: usize,
    addr: SocketAddr,
}

impl SimListener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts the next connection.
    pub async fn accept(&self) -> io::Result<(SimTcpStream, SocketAddr)> {
        futures_lite::future::poll_fn(|cx| {
            let mut state = self.world.lock();
            let Some(slot) = state.net.listener_slots[self.id].as_mut() else {
                return Poll::Ready(Err(crashed()));
            };
            match slot.backlog.pop_front() {
                Some((conn, peer)) => Poll::Ready(Ok((
                    SimTcpStream {
                        world: self.world.clone(),
                        conn,
                        side: 1,
                        arrival: None,
                    },
                    peer,
                ))),
                None => {
                    slot.acceptor = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let mut state = self.world.lock();
        // A crashed host's listener is gone already (and its port may be someone else's).
        if let Some(slot) = state.net.listener_slots[self.id].take() {
            state.net.listeners.remove(&self.addr);
            state.net.used_ports.remove(&self.addr);
            // Connections nobody accepted are reset, as the kernel does.
            for (conn, _) in slot.backlog {
                state.net.reset_conn(conn);
            }
        }
    }
}

/// One end of a simulated TCP connection: futures-io `AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub struct SimTcpStream {
    world: Arc<World>,
    conn: usize,
    side: usize,
    /// Wakes a reader when bytes still on their way arrive.
    arrival: Option<crate::executor::SimTimer>,
}

impl SimTcpStream {
    /// The local and peer addresses.
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        let state = self.world.lock();
        let addrs = state.net.conns[self.conn].addrs;
        (addrs[self.side], addrs[1 - self.side])
    }

    /// Sets the window of what this end sends (bytes in flight and unread by the peer).
    pub fn set_send_window(&self, bytes: usize) {
        let mut state = self.world.lock();
        let pipe = &mut state.net.conns[self.conn].pipes[self.side];
        pipe.window = bytes.max(1);
        pipe.wake();
    }

    /// Sets the window of what this end receives.
    pub fn set_recv_window(&self, bytes: usize) {
        let mut state = self.world.lock();
        let pipe = &mut state.net.conns[self.conn].pipes[1 - self.side];
        pipe.window = bytes.max(1);
        pipe.wake();
    }

    fn reset_error() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "connection reset")
    }

    /// The error this end's next operation fails with, if it is dead.
    fn dead(conn: &Conn, side: usize) -> Option<io::Error> {
        if conn.crashed[side] {
            Some(crashed())
        } else if conn.reset {
            Some(Self::reset_error())
        } else {
            None
        }
    }
}

/// The error of a socket on a crashed host.
pub(crate) fn crashed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the host crashed")
}

/// The error of a new socket on a host that is down.
pub(crate) fn host_down() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the host is down")
}

impl AsyncRead for SimTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut guard = this.world.lock();
        let state = &mut *guard;
        let now = state.now;
        let conn = &mut state.net.conns[this.conn];
        if let Some(err) = Self::dead(conn, this.side) {
            return Poll::Ready(Err(err));
        }
        let (mine, theirs) = (conn.addrs[this.side].ip(), conn.addrs[1 - this.side].ip());
        let reachable = state.net.links.path(theirs, mine) == crate::link::Path::Open;
        let pipe = &mut state.net.conns[this.conn].pipes[1 - this.side];
        // The next thing that arrives, if it has not yet: the reader waits for it.
        let mut next_arrival = None;
        if reachable {
            let mut n = 0;
            while n < buf.len() {
                let Some((at, bytes)) = pipe.data.front_mut() else {
                    break;
                };
                if *at > now {
                    next_arrival = Some(*at);
                    break;
                }
                let take = bytes.len().min(buf.len() - n);
                buf[n..n + take].copy_from_slice(&bytes[..take]);
                bytes.drain(..take);
                n += take;
                if bytes.is_empty() {
                    pipe.data.pop_front();
                }
            }
            if n > 0 {
                pipe.buffered -= n;
                pipe.writer.take().into_iter().for_each(Waker::wake);
                return Poll::Ready(Ok(n));
            }
            match pipe.fin {
                Some(at) if pipe.data.is_empty() && at <= now => return Poll::Ready(Ok(0)),
                Some(at) if pipe.data.is_empty() => next_arrival = Some(at),
                _ => {}
            }
        }
        pipe.reader = Some(cx.waker().clone());
        if let Some(at) = next_arrival {
            let mut timer = crate::executor::SimTimer::at(&this.world, at);
            drop(guard);
            if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            this.arrival = Some(timer);
        }
        Poll::Pending
    }
}

impl AsyncWrite for SimTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.world.lock();
        let state = &mut *guard;
        let conn = &mut state.net.conns[self.conn];
        if let Some(err) = Self::dead(conn, self.side) {
            return Poll::Ready(Err(err));
        }
        if conn.dropped[1 - self.side] && !conn.crashed[1 - self.side] {
            // The peer is gone: what it would have read goes nowhere. (A real peer's kernel
            // answers with a reset a round trip later, after this side usually saw the end.)
            return Poll::Ready(Ok(buf.len()));
        }
        let pipe = &mut conn.pipes[self.side];
        if pipe.fin.is_some() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let room = pipe.window.saturating_sub(pipe.buffered);
        if room == 0 {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        if n > 0 {
            let (from, to) = (conn.addrs[self.side].ip(), conn.addrs[1 - self.side].ip());
            let (now, latency) = (state.now, state.net.latency);
            // On a link with a bandwidth, bytes leave one segment at a time, and the first
            // arrive while later ones are still being sent.
            let segment = if state.net.links.has_bandwidth(from, to) {
                SEGMENT
            } else {
                n
            };
            for chunk in buf[..n].chunks(segment) {
                let arrives = state.net.links.transit(from, to, chunk.len(), now, latency);
                let pipe = &mut state.net.conns[self.conn].pipes[self.side];
                pipe.data.push_back((arrives, chunk.to_vec()));
            }
            let pipe = &mut state.net.conns[self.conn].pipes[self.side];
            pipe.buffered += n;
            pipe.reader.take().into_iter().for_each(Waker::wake);
        }
        Poll::Ready(Ok(n))
    }

    /// Takes as much of every slice as the window allows, as one write (a vectored write
    /// of small slices is one system call on an OS socket too).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if bufs.len() <= 1 || total == 0 {
            let first = bufs.first().map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        let mut joined = Vec::with_capacity(total);
        bufs.iter().for_each(|b| joined.extend_from_slice(b));
        self.poll_write(cx, &joined)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.world.lock();
        let state = &mut *guard;
        let conn = &state.net.conns[self.conn];
        if let Some(err) = Self::dead(conn, self.side) {
            return Poll::Ready(Err(err));
        }
        let (from, to) = (conn.addrs[self.side].ip(), conn.addrs[1 - self.side].ip());
        let (now, latency) = (state.now, state.net.latency);
        let arrives = state.net.links.transit(from, to, 0, now, latency);
        let pipe = &mut state.net.conns[self.conn].pipes[self.side];
        pipe.fin.get_or_insert(arrives);
        pipe.reader.take().into_iter().for_each(Waker::wake);
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimTcpStream {
    fn drop(&mut self) {
        let mut state = self.world.lock();
        let state = &mut *state;
        let conn = &mut state.net.conns[self.conn];
        conn.dropped[self.side] = true;
        if !conn.crashed[self.side] {
            // Closing the socket sends FIN; the peer reads what was sent, then the end.
            let (from, to) = (conn.addrs[self.side].ip(), conn.addrs[1 - self.side].ip());
            let (now, latency) = (state.now, state.net.latency);
            let arrives = state.net.links.transit(from, to, 0, now, latency);
            state.net.conns[self.conn].pipes[self.side]
                .fin
                .get_or_insert(arrives);
        }
        let conn = &mut state.net.conns[self.conn];
        conn.pipes.iter_mut().for_each(Pipe::wake);
        if conn.dropped == [true, true] {
            let local = conn.addrs[0];
            // A crashed host's ports were freed at the crash (and may be taken again).
            if !conn.crashed[0] {
                state.net.used_ports.remove(&local);
            }
            // The buffers go; the slot stays (ids are indices), empty.
            conn.pipes = [Pipe::new(), Pipe::new()];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::Sim;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn bytes_flow_in_order_and_the_end_follows_them() {
        let sim = Sim::new(1);
        let (server, client) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            let listener = server.listen("0.0.0.0:80".parse().unwrap()).unwrap();
            assert_eq!(listener.local_addr(), SocketAddr::new(ip(1), 80));
            let mut conn = client.connect(listener.local_addr()).await.unwrap();
            let (mut accepted, peer) = listener.accept().await.unwrap();
            assert_eq!(peer, conn.addrs().0);
            assert_eq!(accepted.addrs(), (listener.local_addr(), peer));
            conn.write_all(b"hello ").await.unwrap();
            conn.write_all(b"world").await.unwrap();
            conn.close().await.unwrap();
            let mut got = Vec::new();
            accepted.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello world");
            // Half-close: the other direction still works.
            accepted.write_all(b"bye").await.unwrap();
            let mut back = [0; 3];
            conn.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"bye");
        });
    }

    #[test]
    fn refused_when_nothing_listens_and_ports_come_back() {
        let sim = Sim::new(2);
        let rt = sim.host(ip(1));
        sim.block_on(async move {
            let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
            let err = rt.connect(addr).await.expect_err("nothing listens");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            let listener = rt.listen(addr).unwrap();
            assert_eq!(
                rt.listen(addr).expect_err("in use").kind(),
                io::ErrorKind::AddrInUse
            );
            drop(listener);
            rt.listen(addr).expect("the port is free again");
        });
    }

    #[test]
    fn a_full_window_makes_the_writer_wait() {
        let sim = Sim::new(3);
        let rt = sim.host(ip(1));
        let rt2 = rt.clone();
        sim.block_on(async move {
            let listener = rt.listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut conn = rt.connect(listener.local_addr()).await.unwrap();
            let (mut accepted, _) = listener.accept().await.unwrap();
            conn.set_send_window(1000);
            let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = written.clone();
            rt.spawn(async move {
                let chunk = [7u8; 100];
                for _ in 0..30 {
                    conn.write_all(&chunk).await.unwrap();
                    counter.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
                }
            });
            rt2.sleep(Duration::from_secs(1)).await;
            assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 1000);
            let mut got = vec![0; 3000];
            accepted.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|&b| b == 7));
        });
    }

    #[test]
    fn a_partition_holds_bytes_and_connects_until_the_heal() {
        let sim = Sim::new(4);
        let (a, b) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            let listener = a.listen("0.0.0.0:9".parse().unwrap()).unwrap();
            let mut conn = b.connect(listener.local_addr()).await.unwrap();
            let (mut accepted, _) = listener.accept().await.unwrap();
            a.partition(ip(1), ip(2));
            conn.write_all(b"held").await.unwrap();
            let mut buf = [0; 4];
            let read = futures_lite::future::or(
                async { Some(accepted.read_exact(&mut buf).await) },
                async {
                    a.sleep(Duration::from_secs(5)).await;
                    None
                },
            )
            .await;
            assert!(read.is_none(), "nothing crosses a partition");
            let blocked = futures_lite::future::or(
                async { Some(b.connect(listener.local_addr()).await) },
                async {
                    b.sleep(Duration::from_secs(5)).await;
                    None
                },
            )
            .await;
            assert!(blocked.is_none(), "a connect waits for the heal");
            a.heal(ip(1), ip(2));
            accepted.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"held");
            a.reset_host(ip(2));
            let err = accepted.read(&mut buf).await.expect_err("reset");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        });
    }
}
