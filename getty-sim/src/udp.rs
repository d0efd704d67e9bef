//! Simulated UDP: datagrams between bound sockets, with loss, duplication and reordering drawn
//! from the seed, and an ICMP-like refusal for a connected socket whose peer has nothing bound.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::executor::{SimRuntime, SimTimer, World};
use crate::link::Path;

/// What happens to datagrams on the simulated network (every link alike; a cut link loses or
/// holds them besides, see [`LinkFault`](crate::LinkFault)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UdpFaults {
    /// The chance, 0 to 1, that a datagram is lost.
    pub loss: f64,
    /// The chance that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// The chance that a datagram overtakes those waiting to be read.
    pub reorder: f64,
}

pub(crate) struct UdpState {
    connected: Option<SocketAddr>,
    /// Datagrams on their way or waiting to be read: arrival time, sender, bytes.
    queue: VecDeque<(Duration, SocketAddr, Vec<u8>)>,
    reader: Option<Waker>,
    /// A refusal to report on the next receive (a connected socket's peer had nothing bound).
    refused: bool,
}

/// A bound UDP socket of the simulated network.
#[derive(Debug)]
pub struct SimUdp {
    world: Arc<World>,
    id: usize,
    addr: SocketAddr,
    /// Wakes a reader when a datagram on its way arrives.
    arrival: Mutex<Option<SimTimer>>,
}

impl UdpState {
    /// Queues a datagram from `from` arriving at `arrives`, at `position` in the queue when it
    /// overtakes others (then it arrives with the first one it overtakes), and wakes the reader.
    /// A connected socket takes datagrams from its peer only.
    pub(crate) fn deliver(
        &mut self,
        from: SocketAddr,
        bytes: Vec<u8>,
        arrives: Duration,
        position: Option<usize>,
    ) {
        if self.connected.is_some_and(|peer| peer != from) {
            return;
        }
        let at = position.map_or(self.queue.len(), |p| p.min(self.queue.len()));
        let arrives = self
            .queue
            .get(at)
            .map_or(arrives, |next| next.0.min(arrives));
        self.queue.insert(at, (arrives, from, bytes));
        self.reader.take().into_iter().for_each(Waker::wake);
    }

    /// The waiting reader, to wake.
    pub(crate) fn take_reader(&mut self) -> Option<Waker> {
        self.reader.take()
    }

    /// The waiting reader of a socket that goes away.
    pub(crate) fn into_reader(self) -> Option<Waker> {
        self.reader
    }
}

impl SimRuntime {
    /// Binds a UDP socket to `addr` on this handle's host (port 0: an ephemeral one), connected
    /// to `peer` if given (it then receives from `peer` only).
    pub fn bind_udp_to(&self, addr: SocketAddr, peer: Option<SocketAddr>) -> io::Result<SimUdp> {
        let mut state = self.world.lock();
        if !state.net.links.is_up(self.host) {
            return Err(crate::net::host_down());
        }
        let addr = SocketAddr::new(self.local_ip(addr.ip()), addr.port());
        let addr = state.net.bind_port(addr)?;
        let peer = peer.map(|p| SocketAddr::new(self.remote_ip(p.ip()), p.port()));
        let id = state.net.udp_slots.len();
        state.net.udp_slots.push(Some(UdpState {
            connected: peer,
            queue: VecDeque::new(),
            reader: None,
            refused: false,
        }));
        state.net.udp.insert(addr, id);
        Ok(SimUdp {
            world: self.world.clone(),
            id,
            addr,
            arrival: Mutex::new(None),
        })
    }

    /// Sets what happens to every datagram from now on.
    pub fn set_udp_faults(&self, faults: UdpFaults) {
        self.world.lock().net.udp_faults = faults;
    }
}

impl getty_core::runtime::UdpSocket for SimUdp {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut guard = self.world.lock();
        let state = &mut *guard;
        let now = state.now;
        let Some(socket) = state.net.udp_slots[self.id].as_mut() else {
            return Poll::Ready(Err(crate::net::crashed()));
        };
        if std::mem::take(&mut socket.refused) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the peer has nothing bound (port unreachable)",
            )));
        }
        match socket.queue.front() {
            Some(&(at, _, _)) if at <= now => {
                let (_, from, datagram) = socket.queue.pop_front().expect("a front");
                // As the OS does: a datagram longer than the buffer is cut.
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                Poll::Ready(Ok((n, from)))
            }
            next => {
                let next = next.map(|&(at, _, _)| at);
                socket.reader = Some(cx.waker().clone());
                if let Some(at) = next {
                    let mut timer = SimTimer::at(&self.world, at);
                    drop(guard);
                    if Pin::new(&mut timer).poll(cx).is_ready() {
                        cx.waker().wake_by_ref();
                    }
                    *self.arrival.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
                }
                Poll::Pending
            }
        }
    }

    fn poll_send_to(
        &self,
        _: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let mut state = self.world.lock();
        let state = &mut *state;
        if state.net.udp_slots[self.id].is_none() {
            return Poll::Ready(Err(crate::net::crashed()));
        }
        let to = if to.ip().is_loopback() {
            SocketAddr::new(self.addr.ip(), to.port())
        } else {
            to
        };
        match state.net.links.path(self.addr.ip(), to.ip()) {
            Path::Lost => return Poll::Ready(Ok(buf.len())),
            Path::Held => {
                let held = (to, self.addr, buf.to_vec());
                state.net.held_datagrams.push(held);
                return Poll::Ready(Ok(buf.len()));
            }
            Path::Open => {}
        }
        let Some(target) = state.net.udp.get(&to).copied() else {
            let socket = state.net.udp_slots[self.id].as_mut().expect("bound");
            if socket.connected == Some(to) {
                socket.refused = true;
                socket.reader.take().into_iter().for_each(Waker::wake);
            }
            return Poll::Ready(Ok(buf.len()));
        };
        let faults = state.net.udp_faults;
        if state.rng.f64() < faults.loss {
            return Poll::Ready(Ok(buf.len()));
        }
        let copies = if state.rng.f64() < faults.duplicate {
            2
        } else {
            1
        };
        let overtake = state.rng.f64() < faults.reorder;
        let (now, latency) = (state.now, state.net.latency);
        let arrives = state
            .net
            .links
            .transit(self.addr.ip(), to.ip(), buf.len(), now, latency);
        let receiver = state.net.udp_slots[target].as_mut().expect("bound");
        for _ in 0..copies {
            let overtake = overtake.then(|| state.rng.usize(..=receiver.queue.len()));
            receiver.deliver(self.addr, buf.to_vec(), arrives, overtake);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for SimUdp {
    fn drop(&mut self) {
        let mut state = self.world.lock();
        // A crashed host's socket is gone already (and its port may be someone else's).
        if state.net.udp_slots[self.id].take().is_some() {
            state.net.udp.remove(&self.addr);
            state.net.used_ports.remove(&self.addr);
        }
    }
}
