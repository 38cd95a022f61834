//! A worker's UDP socket with batched I/O: many datagrams per system call each way
//! (`recvmmsg`/`sendmmsg`, through nix), and a socket registered with the runtime for read
//! readiness only.
//!
//! Why read-only: a UDP socket signals "writable" again each time the kernel frees a sent
//! datagram, so a socket registered for both made the worker's `epoll_wait` return at once about
//! three times per call with nothing to read (issue 14's profile). Sends are attempted directly;
//! the rare full send buffer is waited out with short sleeps (see [`UdpIo::send_all`]).

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use bytes::Bytes;
use nix::{
    errno::Errno,
    sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg},
};
use tokio::io::{Interest, unix::AsyncFd};

/// Datagrams per system call. Published measurements for small datagrams: batches of 8 give most
/// of the gain of `recvmmsg` (+25 % packets/s), 16 adds ~2 %; 32 lets a burst drain in fewer calls.
pub const BATCH: usize = 32;
/// The fewest datagrams a `recvmmsg` asks for. Each call sets up one header per datagram it
/// asks for, whether or not one comes (~25 instructions each, in nix and here): at low rates a
/// wake-up finds one or two datagrams, and asking for `BATCH` cost ~1,500 instructions a call
/// (`bench-e2e --daemon-instructions`). So a call asks for twice what the last one got, at
/// least this many; a full batch doubles the next (the queue holds more), so a burst reaches
/// `BATCH` within three calls.
const MIN_BATCH: usize = 4;
/// Largest datagram received (the UDP maximum; larger ones cannot exist).
pub const MAX_DATAGRAM: usize = 65_535;
/// How long a full send buffer is waited out, in steps, before the datagrams still unsent are
/// counted as send errors (a worker that cannot send should not stop receiving for long).
const SEND_RETRIES: u32 = 20;
const SEND_RETRY_PAUSE: Duration = Duration::from_micros(500);

/// The socket, registered for reading.
pub struct UdpIo {
    fd: AsyncFd<UdpSocket>,
    recv: RecvBuffers,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// The destinations of one `sendmmsg`, reused (only as many written as are sent).
    send_addrs: Vec<Option<SockaddrStorage>>,
}

/// `BATCH` receive buffers in one allocation: large enough to be mapped on its own, so only the
/// pages datagrams are written to become resident (each buffer's first page or two).
struct RecvBuffers {
    bytes: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    /// How many datagrams the next `recvmmsg` asks for (see [`MIN_BATCH`]).
    want: usize,
}

/// How many datagrams to ask for after a call that asked for `want` and got `got`: twice what
/// came, never below half of `want` (a burst's tail comes in fewer calls), within
/// `MIN_BATCH..=BATCH`.
fn next_want(want: usize, got: usize) -> usize {
    (2 * got)
        .next_power_of_two()
        .max(want / 2)
        .clamp(MIN_BATCH, BATCH)
}

/// What one [`UdpIo::send_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// `sendmmsg` calls made.
    pub calls: u32,
    /// Datagrams the kernel refused (their destination's error, or a send buffer full for
    /// longer than the retries).
    pub failed: u32,
}

impl UdpIo {
    /// Takes a non-blocking socket and registers it with the current runtime.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, and with it the fd, until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(Self {
            fd,
            recv: RecvBuffers {
                bytes: vec![0u8; BATCH * MAX_DATAGRAM],
                headers: MultiHeaders::preallocate(BATCH, None),
                want: MIN_BATCH,
            },
            send_headers: MultiHeaders::preallocate(BATCH, None),
            send_addrs: Vec::with_capacity(BATCH),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Waits until the socket has something to read, and leaves that readiness for
    /// [`Self::recv_batches`]. Takes `&self`, so that a worker's loop can wait for it in two
    /// places of one `select!` (see the worker).
    ///
    /// Through `poll_read_ready`, which keeps the task's waker in the socket's one reader slot,
    /// rather than `AsyncFd::readable`, whose future joins a list of waiters and leaves it when
    /// dropped, under the list's lock both times: the loop makes a new wait every pass
    /// (`bench-e2e --daemon-instructions`: 131,150 → 128,450 a call). The one task that owns
    /// the socket is the only one that waits on it.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            self.fd
                .poll_read_ready(cx)
                .map(|r| r.map(|mut guard| guard.retain_ready()))
        })
        .await
    }

    /// Waits until the socket has something to read, then receives up to `max_calls` batches
    /// into `out`, each datagram copied into a buffer of its own size (which the parser borrows
    /// from and a transaction may keep: see the worker). Returns the number of `recvmmsg`
    /// calls. Stops early when the socket is drained (the readiness is then cleared), and after
    /// `max_calls` in any case, so the caller's other work (timers, hand-overs) is never starved
    /// by a flood.
    pub async fn recv_batches(
        &mut self,
        max_calls: u32,
        out: &mut Vec<(Bytes, SocketAddr)>,
    ) -> io::Result<u32> {
        let mut guard = std::future::poll_fn(|cx| self.fd.poll_read_ready(cx)).await?;
        let mut calls = 0;
        let mut keep = |data: &[u8], source| out.push((Bytes::copy_from_slice(data), source));
        while calls < max_calls {
            let recv = &mut self.recv;
            let want = recv.want;
            match guard.try_io(|fd| recv.receive(fd.get_ref(), &mut keep)) {
                Ok(Ok(n)) => {
                    calls += 1;
                    recv.want = next_want(want, n);
                    if n < want {
                        // Fewer than asked: the queue is empty (`recvmmsg` without a timeout
                        // returns short only then). Clearing the readiness saves the empty
                        // `recvmmsg` that would learn it, one per wake-up: the socket is
                        // registered edge-triggered, so a datagram that came meanwhile has
                        // queued a new event, which sets the readiness again (tokio clears
                        // only the readiness of the event this guard saw, the same reasoning
                        // as its short stream reads).
                        guard.clear_ready();
                        break;
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => break,
            }
        }
        Ok(calls)
    }

    /// Sends every datagram of `batch`, `BATCH` per `sendmmsg`. A datagram the kernel refuses
    /// (say, ICMP port unreachable reported on the socket) is skipped and counted; a full send
    /// buffer is retried after a short pause, [`SEND_RETRIES`] times at most.
    pub async fn send_all(&mut self, batch: &[(Bytes, SocketAddr)]) -> SendOutcome {
        let mut out = SendOutcome::default();
        let mut at = 0;
        let mut retries = 0;
        while at < batch.len() {
            let chunk = &batch[at..batch.len().min(at + BATCH)];
            out.calls += 1;
            self.send_addrs.clear();
            self.send_addrs
                .extend(chunk.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))));
            match send_chunk(
                self.fd.get_ref(),
                &mut self.send_headers,
                chunk,
                &self.send_addrs,
            ) {
                Ok(n) if n > 0 => at += n,
                Ok(_) => {
                    // Nothing sent and no error: do not spin.
                    out.failed += 1;
                    at += 1;
                }
                Err(Errno::EAGAIN) if retries < SEND_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(SEND_RETRY_PAUSE).await;
                }
                Err(e) => {
                    // The first datagram of the chunk failed: skip it, go on with the rest.
                    log::debug!("send to {}: {e}", chunk[0].1);
                    out.failed += 1;
                    at += 1;
                }
            }
        }
        out
    }
}

impl RecvBuffers {
    /// One `recvmmsg` (non-blocking) of up to `self.want` datagrams: hands each to `f`,
    /// returns how many came.
    fn receive(
        &mut self,
        socket: &UdpSocket,
        f: &mut impl FnMut(&[u8], SocketAddr),
    ) -> io::Result<usize> {
        let mut lens = [(0usize, None::<SocketAddr>); BATCH];
        let mut n = 0;
        {
            // On the stack: no allocation per call.
            let want = self.want.min(BATCH);
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
            for (slice, buffer) in slices[..want]
                .iter_mut()
                .zip(self.bytes.chunks_exact_mut(MAX_DATAGRAM))
            {
                *slice = [IoSliceMut::new(buffer)];
            }
            let results = recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices[..want].iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for (slot, r) in lens.iter_mut().zip(results) {
                *slot = (r.bytes, r.address.and_then(socket_addr));
                n += 1;
            }
        }
        for (i, (len, addr)) in lens[..n].iter().enumerate() {
            if let Some(addr) = addr {
                let start = i * MAX_DATAGRAM;
                f(&self.bytes[start..start + len], *addr);
            }
        }
        Ok(n)
    }
}

/// One `sendmmsg` of up to `BATCH` datagrams to `addrs` (one each); how many the kernel took.
fn send_chunk(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    chunk: &[(Bytes, SocketAddr)],
    addrs: &[Option<SockaddrStorage>],
) -> Result<usize, Errno> {
    // On the stack: no allocation per call.
    let n = chunk.len().min(BATCH).min(addrs.len());
    let slices: [[IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [IoSlice::new(chunk.get(i).map_or(&[][..], |(b, _)| b))]);
    let results = sendmmsg(
        socket.as_raw_fd(),
        headers,
        &slices[..n],
        &addrs[..n],
        [],
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(results.count())
}

/// The datagram's source as a std address (IPv4 or IPv6; nothing else reaches a UDP socket).
fn socket_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_asks_for_twice_what_came_and_a_full_one_doubles() {
        assert_eq!(next_want(MIN_BATCH, 0), MIN_BATCH);
        assert_eq!(next_want(MIN_BATCH, 1), MIN_BATCH);
        assert_eq!(next_want(4, 3), 8);
        // Full batches double up to BATCH.
        assert_eq!(next_want(4, 4), 8);
        assert_eq!(next_want(8, 8), 16);
        assert_eq!(next_want(16, 16), BATCH);
        assert_eq!(next_want(BATCH, BATCH), BATCH);
        // After a burst, halving at most per call.
        assert_eq!(next_want(BATCH, 1), BATCH / 2);
        assert_eq!(next_want(8, 0), MIN_BATCH);
    }

    /// Receives until `want` datagrams came (bounded in passes and time).
    async fn receive_all(io: &mut UdpIo, want: usize) -> Vec<(Bytes, SocketAddr)> {
        let mut got = Vec::new();
        for _ in 0..200 {
            if got.len() >= want {
                break;
            }
            tokio::time::timeout(Duration::from_secs(2), io.recv_batches(1, &mut got))
                .await
                .expect("the datagrams arrive")
                .expect("recvmmsg");
        }
        got
    }

    #[tokio::test]
    async fn one_datagram_and_a_burst_of_batches_arrive_whole_and_in_order() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut io = UdpIo::new(socket).unwrap();
        let to = io.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"one", to).unwrap();
        let got = receive_all(&mut io, 1).await;
        assert_eq!(got[0].0, &b"one"[..]);
        assert_eq!(got[0].1, sender.local_addr().unwrap());
        // A burst of several batches: nothing is lost or reordered.
        let burst = 3 * BATCH;
        for i in 0..burst {
            sender.send_to(format!("d{i}").as_bytes(), to).unwrap();
        }
        let got = receive_all(&mut io, burst).await;
        let texts: Vec<_> = got.iter().map(|(b, _)| b.clone()).collect();
        let sent: Vec<_> = (0..burst).map(|i| Bytes::from(format!("d{i}"))).collect();
        assert_eq!(texts, sent);
    }
}
