//! getty's runtime seam on the simulation: [`SimRuntime`] is an `Executor` and a `Network`, so
//! every getty endpoint runs on it unchanged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use getty_core::runtime::{Executor, Network, TcpOptions, Timer};

use crate::executor::{SimRuntime, SimTimer};
use crate::net::{SimListener, SimTcpStream};
use crate::udp::SimUdp;

impl Timer for SimTimer {
    fn reset(&mut self, at: Instant) {
        SimTimer::reset(self, at)
    }
}

impl Executor for SimRuntime {
    type Timer = SimTimer;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        SimRuntime::spawn(self, future)
    }

    fn timer(&self, at: Instant) -> SimTimer {
        SimRuntime::timer(self, at)
    }

    fn now(&self) -> Instant {
        SimRuntime::now(self)
    }

    fn random_u64(&self) -> u64 {
        SimRuntime::random_u64(self)
    }
}

impl Network for SimRuntime {
    type Tcp = SimTcpStream;
    type Listener = SimListener;
    type Udp = SimUdp;

    fn connect(
        &self,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> impl Future<Output = io::Result<SimTcpStream>> + Send {
        let rt = self.clone();
        async move { rt.connect_from(addr, local).await }
    }

    fn listen(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<SimListener> {
        if reuse_port {
            // Several listeners on one port is an OS feature the simulation does not model.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "getty-sim does not model SO_REUSEPORT",
            ));
        }
        SimRuntime::listen(self, addr)
    }

    fn listener_addr(&self, listener: &SimListener) -> io::Result<SocketAddr> {
        Ok(listener.local_addr())
    }

    fn accept<'a>(
        &'a self,
        listener: &'a SimListener,
    ) -> impl Future<Output = io::Result<(SimTcpStream, SocketAddr)>> + Send + 'a {
        listener.accept()
    }

    fn tcp_addrs(&self, stream: &SimTcpStream) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok(stream.addrs())
    }

    /// The buffer sizes become the stream's windows; the other options mean nothing here.
    fn set_tcp_options(&self, stream: &SimTcpStream, options: &TcpOptions) -> io::Result<()> {
        if let Some(bytes) = options.send_buffer_size {
            stream.set_send_window(bytes);
        }
        if let Some(bytes) = options.recv_buffer_size {
            stream.set_recv_window(bytes);
        }
        Ok(())
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<SimUdp> {
        self.bind_udp_to(addr, None)
    }

    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<SimUdp> {
        let local = local.unwrap_or_else(|| SocketAddr::new(self.host, 0));
        self.bind_udp_to(local, Some(peer))
    }
}
