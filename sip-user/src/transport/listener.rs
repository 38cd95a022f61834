//! A TCP listener per worker, all in one `SO_REUSEPORT` group per listening address: the kernel
//! spreads new connections over the workers' accept queues, and each accepted connection then
//! goes to the worker that owns its peer ([`super::owner_of`]).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Connections waiting to be accepted, per worker's socket.
const BACKLOG: i32 = 1024;

/// One member of the reuseport group on `addr`.
pub fn bind_member(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
