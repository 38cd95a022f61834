//! A SIP load generator that is not the bottleneck: a UAC that places calls at a given rate
//! (INVITE, 100/180/200, ACK, BYE, 200) and a UAS that answers them, each on one thread with
//! batched UDP I/O (the daemon's own `recvmmsg`/`sendmmsg` socket), checking every message it
//! gets and measuring latency in microseconds (request sent → final response, per method).
//!
//! Why not sipp alone: one sipp caller tops out near 3,000 calls/s on these machines and reports
//! whole milliseconds, so it can neither find a proxy's capacity nor see its latency. sipp stays
//! as the independent cross-check (`tests/tests/loadgen.rs`).
//!
//! Every run is bounded: the UAC stops starting calls after `calls`, and gives up on a call after
//! 64·T1 (32 s); the UAS stops when its cancel flag is set.

pub mod uac;
pub mod uas;
mod wire;

pub use uac::{Uac, UacReport};
pub use uas::{Answer, Uas, UasReport, UasThread, backend_in};

/// RFC 3261 T1 (500 ms): the first retransmission interval over UDP.
pub const T1: std::time::Duration = std::time::Duration::from_millis(500);
/// RFC 3261 T2 (4 s): the longest retransmission interval of non-INVITE requests and 2xx.
pub const T2: std::time::Duration = std::time::Duration::from_secs(4);
/// 64·T1: how long a transaction may take before it has failed.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(32);

/// Pins the calling thread to `cpu` (the bench runs each role on its own CPU).
pub use sip_user::sys::pin_current_thread as pin_to;

/// Runs `work` to its end on a single-threaded runtime of the calling thread, pinned to `cpu`
/// first when given: each role of the load generator is one thread.
fn on_this_thread<T>(
    cpu: Option<usize>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if let Some(cpu) = cpu {
        pin_to(cpu)?;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?
        .block_on(work)
}

/// A UDP socket bound to `addr` with room for bursts at tens of thousands of calls a second
/// (8 MiB receive and send buffers, as far as the system allows).
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use anyhow::Context;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.into())
}
