//! Hosts and the links between them: which hosts exist and are up, what each link does to the
//! traffic crossing it (latency, bandwidth, held or dropped), and the faults a test scripts
//! during a run (partitions, crashes and restarts).
//!
//! Every path from one host to another is one of three things ([`Path`]): open, held (what
//! crosses waits for the heal: TCP retransmits, a router queue holds datagrams) or lost (a
//! black hole: datagrams vanish; TCP streams stall, as real TCP does until it gives up, and a
//! connect times out after [`CONNECT_GIVE_UP`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::executor::SimRuntime;
use crate::trace::Event;

/// How long a connect keeps trying a host that never answers (a black hole, a crashed host,
/// an address no host has, a partition that does not heal) before it fails with `TimedOut`:
/// Linux's default, six SYN retransmissions.
pub const CONNECT_GIVE_UP: Duration = Duration::from_secs(127);

/// What a cut link does to the traffic crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkFault {
    /// Traffic waits: TCP bytes and connects go on after the heal, datagrams arrive then.
    Hold,
    /// Traffic is lost: datagrams vanish; TCP bytes are retransmitted after the heal (streams
    /// stall meanwhile); connects time out after [`CONNECT_GIVE_UP`] unless the heal comes
    /// first.
    Drop,
}

/// Where traffic from one host to another goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Open,
    Held,
    Lost,
}

#[derive(Debug, Default)]
pub(crate) struct LinkState {
    fault: Option<LinkFault>,
    latency: Option<Duration>,
    /// Bytes per second; `None`: unlimited.
    bandwidth: Option<u64>,
    /// When the link finishes sending what was queued on it (bandwidth only).
    busy_until: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Links {
    /// Hosts that exist, and whether each is up (not crashed).
    pub(crate) hosts: HashMap<IpAddr, bool>,
    /// Directed: (from, to). Faults and settings are set on both directions at once.
    links: HashMap<(IpAddr, IpAddr), LinkState>,
    /// Hosts cut off from every other.
    isolated: HashMap<IpAddr, LinkFault>,
}

impl Links {
    pub(crate) fn add_host(&mut self, ip: IpAddr) {
        self.hosts.entry(ip).or_insert(true);
    }

    pub(crate) fn is_up(&self, ip: IpAddr) -> bool {
        self.hosts.get(&ip).copied().unwrap_or(false)
    }

    /// Where traffic from `from` to `to` goes now.
    pub(crate) fn path(&self, from: IpAddr, to: IpAddr) -> Path {
        if !self.is_up(to) || !self.is_up(from) {
            return Path::Lost;
        }
        if from == to {
            return Path::Open;
        }
        let faults = [
            self.links.get(&(from, to)).and_then(|l| l.fault),
            self.isolated.get(&from).copied(),
            self.isolated.get(&to).copied(),
        ];
        if faults.contains(&Some(LinkFault::Drop)) {
            Path::Lost
        } else if faults.contains(&Some(LinkFault::Hold)) {
            Path::Held
        } else {
            Path::Open
        }
    }

    /// Whether the link from `from` to `to` has a bandwidth limit.
    pub(crate) fn has_bandwidth(&self, from: IpAddr, to: IpAddr) -> bool {
        self.links
            .get(&(from, to))
            .is_some_and(|l| l.bandwidth.is_some())
    }

    /// When `bytes` sent now from `from` arrive at `to`: the link's queue (when it has a
    /// bandwidth), then its latency (`default` unless the link has its own).
    pub(crate) fn transit(
        &mut self,
        from: IpAddr,
        to: IpAddr,
        bytes: usize,
        now: Duration,
        default: Duration,
    ) -> Duration {
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return now + default;
        };
        let mut sent = now;
        if let Some(rate) = link.bandwidth {
            let start = link.busy_until.max(now);
            let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(rate.max(1)));
            sent = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            link.busy_until = sent;
        }
        sent + link.latency.unwrap_or(default)
    }

    fn both_ways(&mut self, a: IpAddr, b: IpAddr, mut change: impl FnMut(&mut LinkState)) {
        change(self.links.entry((a, b)).or_default());
        change(self.links.entry((b, a)).or_default());
    }
}

impl SimRuntime {
    /// A handle on the host `ip` of the same simulation (as [`Sim::host`](crate::Sim::host)).
    pub fn host(&self, ip: IpAddr) -> SimRuntime {
        self.world.lock().net.links.add_host(ip);
        SimRuntime {
            world: self.world.clone(),
            host: ip,
        }
    }

    /// The address of this handle's host.
    pub fn ip(&self) -> IpAddr {
        self.host
    }

    fn change_links(&self, event: Event, change: impl FnOnce(&mut Links)) {
        let mut state = self.world.lock();
        change(&mut state.net.links);
        let at = state.now;
        state.trace.push(at, event);
        let woken = state.net.paths_changed();
        drop(state);
        woken.into_iter().for_each(std::task::Waker::wake);
    }

    /// Cuts the hosts `a` and `b` off from each other, holding their traffic: TCP bytes and
    /// connects wait for [`heal`](Self::heal), datagrams arrive then.
    pub fn partition(&self, a: IpAddr, b: IpAddr) {
        self.cut(a, b, LinkFault::Hold)
    }

    /// Cuts the hosts `a` and `b` off from each other, losing their traffic: datagrams vanish,
    /// connects time out, TCP streams stall until [`heal`](Self::heal).
    pub fn drop_traffic(&self, a: IpAddr, b: IpAddr) {
        self.cut(a, b, LinkFault::Drop)
    }

    fn cut(&self, a: IpAddr, b: IpAddr, fault: LinkFault) {
        self.change_links(Event::Cut { a, b, fault }, |links| {
            links.both_ways(a, b, |l| l.fault = Some(fault))
        })
    }

    /// Ends the cut between `a` and `b`: held traffic flows, waiting connects go on.
    pub fn heal(&self, a: IpAddr, b: IpAddr) {
        self.change_links(Event::Heal { a, b }, |links| {
            links.both_ways(a, b, |l| l.fault = None)
        })
    }

    /// Cuts `host` off from every other host (`fault` says what happens to the traffic) until
    /// [`rejoin`](Self::rejoin).
    pub fn isolate(&self, host: IpAddr, fault: LinkFault) {
        self.change_links(Event::Isolate { host, fault }, |links| {
            links.isolated.insert(host, fault);
        })
    }

    /// Ends [`isolate`](Self::isolate) for `host`.
    pub fn rejoin(&self, host: IpAddr) {
        self.change_links(Event::Rejoin { host }, |links| {
            links.isolated.remove(&host);
        })
    }

    /// Sets the one-way latency between `a` and `b`, both ways, from now on (other links keep
    /// the default, [`set_latency`](Self::set_latency)).
    pub fn set_link_latency(&self, a: IpAddr, b: IpAddr, latency: Duration) {
        self.world
            .lock()
            .net
            .links
            .both_ways(a, b, |l| l.latency = Some(latency));
    }

    /// Limits the link between `a` and `b` to `bytes_per_second` in each direction (shared by
    /// every connection and datagram crossing it); `None` lifts the limit.
    pub fn set_link_bandwidth(&self, a: IpAddr, b: IpAddr, bytes_per_second: Option<u64>) {
        self.world
            .lock()
            .net
            .links
            .both_ways(a, b, |l| l.bandwidth = bytes_per_second);
    }

    /// Crashes `host`: every task spawned from its handles stops (dropped where it stands),
    /// its listeners and UDP sockets vanish, and its connections die without a FIN: its own
    /// end fails with `ConnectionAborted`, the peer hears nothing (reads stall, writes fill the
    /// window) until [`restart`](Self::restart). While down it answers nothing: connects to it
    /// time out, datagrams to it are lost.
    pub fn crash(&self, host: IpAddr) {
        let doomed = {
            let mut state = self.world.lock();
            let at = state.now;
            state.trace.push(at, Event::Crash { host });
            state.net.links.hosts.insert(host, false);
            state.net.crash_sockets(host);
            state.take_tasks_of(host)
        };
        // Dropped outside the lock: a task's sockets take it when they go.
        drop(doomed);
    }

    /// Brings a crashed `host` back with nothing running and every port free; the peers of
    /// the connections it had get a reset (the restarted host answers their next segment with
    /// RST), connects to it are refused until something listens.
    pub fn restart(&self, host: IpAddr) {
        let mut state = self.world.lock();
        let at = state.now;
        state.trace.push(at, Event::Restart { host });
        state.net.links.hosts.insert(host, true);
        state.net.reset_crashed(host);
        let woken = state.net.paths_changed();
        drop(state);
        woken.into_iter().for_each(std::task::Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use getty_core::runtime::UdpSocket;

    use super::*;
    use crate::Sim;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    async fn recv(socket: &crate::SimUdp) -> io::Result<Vec<u8>> {
        let mut buf = [0; 64];
        let (n, _) =
            futures_lite::future::poll_fn(|cx| socket.poll_recv_from(cx, &mut buf)).await?;
        Ok(buf[..n].to_vec())
    }

    async fn send(socket: &crate::SimUdp, bytes: &[u8], to: SocketAddr) {
        futures_lite::future::poll_fn(|cx| socket.poll_send_to(cx, bytes, to))
            .await
            .expect("send");
    }

    #[test]
    fn a_connect_nobody_answers_gives_up_and_a_heal_in_time_lets_it_through() {
        let sim = Sim::new(1);
        let (a, b) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            // An address no host has: a black hole.
            let start = b.now();
            let err = b
                .connect("10.9.9.9:80".parse().unwrap())
                .await
                .expect_err("no host");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(b.now() - start, CONNECT_GIVE_UP);
            // A dropping link: the connect waits; the heal comes first, so it goes through.
            let listener = a.listen("0.0.0.0:80".parse().unwrap()).unwrap();
            b.drop_traffic(ip(1), ip(2));
            let healer = b.clone();
            b.spawn(async move {
                healer.sleep(Duration::from_secs(10)).await;
                healer.heal(ip(1), ip(2));
            });
            let start = b.now();
            b.connect(listener.local_addr())
                .await
                .expect("after the heal");
            assert_eq!(b.now() - start, Duration::from_secs(10));
        });
        let trace = sim.trace();
        assert!(trace
            .events()
            .iter()
            .any(|(at, e)| *at == CONNECT_GIVE_UP && matches!(e, Event::ConnectTimedOut { .. })));
    }

    #[test]
    fn links_have_their_own_latency_and_bandwidth() {
        let sim = Sim::new(2);
        let (a, b) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            a.set_link_latency(ip(1), ip(2), Duration::from_millis(40));
            a.set_link_bandwidth(ip(1), ip(2), Some(100_000));
            let listener = a.listen("0.0.0.0:80".parse().unwrap()).unwrap();
            let mut conn = b.connect(listener.local_addr()).await.unwrap();
            let (mut accepted, _) = listener.accept().await.unwrap();
            let start = b.now();
            conn.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            accepted.read_exact(&mut buf).await.unwrap();
            // 4 bytes at 100 kB/s (40 µs), then 40 ms of latency.
            assert_eq!(b.now() - start, Duration::from_micros(40_040));
            // 500 kB take 5 s at 100 kB/s: the window (64 KiB) keeps the writer waiting.
            let writer = b.clone();
            writer.spawn(async move {
                conn.write_all(&vec![1; 500_000]).await.unwrap();
            });
            let start = a.now();
            let mut got = vec![0; 500_000];
            accepted.read_exact(&mut got).await.unwrap();
            let took = a.now() - start;
            assert!(
                took >= Duration::from_secs(5) && took < Duration::from_millis(5_100),
                "{took:?}"
            );
        });
    }

    #[test]
    fn a_crash_stops_the_hosts_tasks_and_a_restart_resets_its_peers() {
        let sim = Sim::new(3);
        let (server, client) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
            let listener = server.listen(addr).unwrap();
            let mut conn = client.connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            // A task on the server host that would answer, and notes when it is dropped.
            struct Flag(Arc<AtomicBool>);
            impl Drop for Flag {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let dropped = Arc::new(AtomicBool::new(false));
            let flag = Flag(dropped.clone());
            let mut accepted = accepted;
            server.spawn(async move {
                let _flag = flag;
                let mut buf = [0; 1];
                while accepted.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = accepted.write_all(&buf).await;
                }
            });
            client.sleep(Duration::from_millis(1)).await;
            client.crash(ip(1));
            assert!(dropped.load(Ordering::SeqCst), "the host's task stopped");
            // The listener is gone with its host.
            assert_eq!(
                listener.accept().await.expect_err("crashed").kind(),
                io::ErrorKind::ConnectionAborted
            );
            // The peer hears nothing: no FIN, no answer.
            conn.write_all(b"x").await.unwrap();
            let mut buf = [0; 1];
            let read = futures_lite::future::or(async { Some(conn.read(&mut buf).await) }, async {
                client.sleep(Duration::from_secs(60)).await;
                None
            })
            .await;
            assert!(read.is_none(), "a crashed host says nothing");
            // Down: connects to it time out; it cannot listen.
            let err = client.connect(addr).await.expect_err("down");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(server.listen(addr).is_err());
            // Back up: the old connection is reset, the port is free, nothing listens yet.
            client.restart(ip(1));
            let err = conn.read(&mut buf).await.expect_err("reset");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            let err = client.connect(addr).await.expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            drop(listener);
            let listener = server
                .listen(addr)
                .expect("the port is free after the restart");
            client.connect(addr).await.expect("connects again");
            drop(listener);
        });
    }

    #[test]
    fn held_datagrams_arrive_after_the_heal_dropped_ones_never() {
        let sim = Sim::new(4);
        let (a, b) = (sim.host(ip(1)), sim.host(ip(2)));
        sim.block_on(async move {
            let receiver = a.bind_udp_to("0.0.0.0:53".parse().unwrap(), None).unwrap();
            let sender = b.bind_udp_to("0.0.0.0:0".parse().unwrap(), None).unwrap();
            let to: SocketAddr = "10.0.0.1:53".parse().unwrap();
            b.isolate(ip(2), LinkFault::Drop);
            send(&sender, b"lost", to).await;
            b.rejoin(ip(2));
            b.partition(ip(1), ip(2));
            send(&sender, b"held", to).await;
            let early = futures_lite::future::or(async { Some(recv(&receiver).await) }, async {
                a.sleep(Duration::from_secs(5)).await;
                None
            })
            .await;
            assert!(early.is_none(), "held while partitioned");
            b.heal(ip(1), ip(2));
            assert_eq!(recv(&receiver).await.unwrap(), b"held");
            send(&sender, b"open", to).await;
            assert_eq!(recv(&receiver).await.unwrap(), b"open");
        });
    }
}
