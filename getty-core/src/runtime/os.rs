//! OS sockets, shared by the adapters on OS runtimes (getty-tokio, getty-smol): creating,
//! binding, listening (backlog, SO_REUSEADDR, SO_REUSEPORT), starting a connect, connecting UDP
//! sockets and applying [`TcpOptions`], all with socket2, before the adapter registers the std
//! socket with its reactor.
//!
//! This is plain OS work, the same for every OS runtime, so it lives once here, outside the
//! [`Executor`](super::Executor) and [`Network`] traits: an adapter only turns the resulting
//! std socket into its runtime's type and waits on it. [`OsNetwork`] is the extension for
//! tests that need the OS socket under a stream.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use super::{Network, TcpOptions};

/// A borrowed view of a socket, to set and read its options (socket2's).
pub use socket2::SockRef;

/// Backlog of listening sockets.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A nonblocking TCP socket for `addr`'s family, bound to `local` if given.
fn tcp_socket(addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(local) = local {
        // Lets a restarted server (or a client with a fixed port) rebind while old connections
        // sit in TIME_WAIT. Not on Windows, where it would let another socket steal the port.
        #[cfg(not(windows))]
        socket.set_reuse_address(true)?;
        socket.bind(&local.into())?;
    }
    Ok(socket)
}

/// Starts a nonblocking connect to `addr` (from `local` if given) with TCP_NODELAY on.
///
/// The returned stream is still connecting: register it with the reactor, wait until it is
/// writable, then call [`finish_connect`].
pub fn start_connect(addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = tcp_socket(addr, local)?;
    socket.set_tcp_nodelay(true)?;
    if let Err(e) = socket.connect(&addr.into()) {
        if !in_progress(&e) {
            return Err(e);
        }
    }
    Ok(socket.into())
}

/// Checks the outcome of a connect started by [`start_connect`], once the stream (the same
/// socket, as registered by the adapter) is writable.
#[cfg(unix)]
pub fn finish_connect<S: std::os::fd::AsFd>(stream: &S) -> io::Result<()> {
    check_connected(socket2::SockRef::from(stream))
}

/// Checks the outcome of a connect started by [`start_connect`], once the stream (the same
/// socket, as registered by the adapter) is writable.
#[cfg(windows)]
pub fn finish_connect<S: std::os::windows::io::AsSocket>(stream: &S) -> io::Result<()> {
    check_connected(socket2::SockRef::from(stream))
}

fn check_connected(socket: socket2::SockRef<'_>) -> io::Result<()> {
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    // Linux can report a failed connect as writable with no pending error.
    socket.peer_addr().map(drop)
}

/// A nonblocking listener bound to `addr` (SO_REUSEADDR on, except on Windows; SO_REUSEPORT
/// too with `reuse_port`, where the OS has it).
pub fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // Lets a restarted server rebind while old connections sit in TIME_WAIT. Not on Windows,
    // where it would let another socket steal the port.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuse_port(true)?;
        #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT is not available on this system",
        ));
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Applies `options` to a connected stream's socket: what the OS adapters'
/// [`Network::set_tcp_options`] do.
pub fn apply_tcp_options(socket: SockRef<'_>, options: &TcpOptions) -> io::Result<()> {
    socket.set_tcp_nodelay(options.nodelay)?;
    match options.keepalive {
        Some(idle) => socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?,
        None => socket.set_keepalive(false)?,
    }
    if let Some(bytes) = options.send_buffer_size {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = options.recv_buffer_size {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}

/// A [`Network`] on OS sockets, which can hand out the socket under a stream: for tests that
/// read options back from the kernel or set what [`TcpOptions`] does not (a zero linger time
/// to send a reset). Implemented by the tokio and smol adapters; not part of [`Runtime`], so a
/// simulated network need not have it.
///
/// [`Runtime`]: super::Runtime
pub trait OsNetwork: Network {
    /// The OS socket under `stream`, to set and read its options.
    fn os_socket<'a>(&self, stream: &'a Self::Tcp) -> SockRef<'a>;
}

/// A nonblocking UDP socket bound to `addr` (port 0 picks a free port).
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A nonblocking UDP socket connected to `peer`, bound to `local` if given (otherwise to an
/// address the OS picks). A connected socket only exchanges datagrams with `peer`, and reports
/// an ICMP "port unreachable" from it as `ConnectionRefused` on the next receive.
pub fn connect_udp(peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let local = local.unwrap_or(match peer {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    });
    let socket = bind_udp(local)?;
    socket.connect(peer)?;
    Ok(socket)
}

/// Whether a nonblocking `connect` error only says that the handshake is under way.
fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::EINPROGRESS);
    #[cfg(not(unix))]
    return e.kind() == io::ErrorKind::WouldBlock;
}

/// The OS clock, for [`Executor::now`](super::Executor::now) of runtimes whose timers follow it
/// (smol's). The only place getty-core reads `Instant::now()` (CI checks): everything else in
/// the crate asks its runtime.
pub fn now() -> Instant {
    Instant::now()
}

/// A random number from fastrand's thread-local generator (seeded from the OS), for
/// [`Executor::random_u64`](super::Executor::random_u64) of OS runtimes.
pub fn random_u64() -> u64 {
    fastrand::u64(..)
}
