//! The receive side: one UDP socket and one thread per worker, each pinned to its CPU.
//!
//! The sockets form an `SO_REUSEPORT` group bound in CPU order, and a two-instruction classic
//! BPF program (`SO_ATTACH_REUSEPORT_CBPF`) returns the current CPU as the index of the socket
//! to deliver to. The XDP program redirects each Call-ID through a CPUMAP to one CPU, the skb is
//! built there, so the datagram lands on the socket — and the worker — of that CPU. Measured on
//! this kernel (DESIGN.md): without the redirect everything lands on the receiving CPU's socket;
//! without the cBPF the group's own hash splits one Call-ID over sockets.
//!
//! In this version the workers receive and count, and check the steering: each hashes the
//! Call-ID it finds (with the SIP parser's header lines) and counts a message as misrouted when the hash names another CPU.

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use sip_common::{WorkerStats, hash_call_id, slot_for_hash};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::sip::{Header, MAX_HEADERS, call_id_in, parse_headers_only};

/// Largest datagram a worker receives.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("binding worker socket {index} to {addr}: {source}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("attaching the reuseport CPU selector to {addr}: {source}")]
    ReuseportProgram {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting worker thread for CPU {cpu}: {source}")]
    Spawn { cpu: u32, source: std::io::Error },
}

/// Counters of one worker, written only by its own thread (relaxed atomics, own cache line).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub received: AtomicU64,
    pub misrouted: AtomicU64,
    pub no_call_id: AtomicU64,
}

/// A running set of workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    pub cpus: Vec<u32>,
}

impl Workers {
    /// Binds one socket per CPU in `cpus` (in that order) to `addr`, attaches the CPU selector,
    /// and starts the threads. `cpus[k]` must equal `k` for the selector's index to match (the
    /// daemon uses the first N online CPUs).
    pub fn start(
        addr: SocketAddr,
        cpus: &[u32],
        cancel: CancellationToken,
    ) -> Result<Self, WorkerError> {
        let mut sockets = Vec::with_capacity(cpus.len());
        for index in 0..cpus.len() {
            sockets.push(bind_member(addr).map_err(|source| WorkerError::Bind {
                index,
                addr,
                source,
            })?);
        }
        if let Some(first) = sockets.first() {
            attach_cpu_selector(first)
                .map_err(|source| WorkerError::ReuseportProgram { addr, source })?;
        }
        let steer: Arc<[u32]> = cpus.into();
        let mut workers = Workers {
            handles: Vec::new(),
            counters: Vec::new(),
            cpus: cpus.to_vec(),
        };
        for (socket, &cpu) in sockets.into_iter().zip(cpus) {
            let counters = Arc::new(WorkerCounters::default());
            workers.counters.push(counters.clone());
            let (steer, cancel) = (steer.clone(), cancel.clone());
            let handle = std::thread::Builder::new()
                .name(format!("sip-worker-{cpu}"))
                .spawn(move || worker_thread(cpu, socket, counters, steer, cancel))
                .map_err(|source| WorkerError::Spawn { cpu, source })?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// The counters in the `WORKERS` map form.
    pub fn snapshot(&self, active: bool) -> Vec<WorkerStats> {
        self.counters
            .iter()
            .zip(&self.cpus)
            .map(|(c, &cpu)| WorkerStats {
                received: c.received.load(Ordering::Relaxed),
                misrouted: c.misrouted.load(Ordering::Relaxed),
                no_call_id: c.no_call_id.load(Ordering::Relaxed),
                cpu,
                active: active as u32,
            })
            .collect()
    }

    /// Waits for the threads to finish (after the cancellation token fired).
    pub fn join(self) {
        for h in self.handles {
            if h.join().is_err() {
                log::error!("a worker thread panicked");
            }
        }
    }
}

fn bind_member(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Bursts of signalling arrive faster than one wakeup; 4 MiB absorbs them.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `ld #cpu; ret a`: deliver to the socket whose group index is the current CPU.
fn attach_cpu_selector(socket: &Socket) -> std::io::Result<()> {
    const SKF_AD_OFF: i32 = -0x1000;
    const SKF_AD_CPU: i32 = 36;
    let mut code = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (SKF_AD_OFF + SKF_AD_CPU) as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points to `code`, both alive across the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &prog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn worker_thread(
    cpu: u32,
    socket: Socket,
    counters: Arc<WorkerCounters>,
    steer: Arc<[u32]>,
    cancel: CancellationToken,
) {
    if let Err(e) = crate::testrun::pin_current_thread(cpu as usize) {
        log::warn!("worker for CPU {cpu}: could not pin the thread: {e}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("worker for CPU {cpu}: no runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let socket = match tokio::net::UdpSocket::from_std(socket.into()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("worker for CPU {cpu}: {e}");
                return;
            }
        };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, _peer)) => count(cpu, &buf[..n], &counters, &steer),
                    Err(e) => log::debug!("worker for CPU {cpu}: recv: {e}"),
                },
            }
        }
    });
}

fn count(cpu: u32, msg: &[u8], counters: &WorkerCounters, steer: &[u32]) {
    counters.received.fetch_add(1, Ordering::Relaxed);
    // The parser's header lines only: a malformed start line is the proxy's business, the
    // steering check only needs the Call-ID.
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    match parse_headers_only(msg, &mut headers)
        .ok()
        .and_then(call_id_in)
    {
        None => {
            counters.no_call_id.fetch_add(1, Ordering::Relaxed);
        }
        Some(call_id) => {
            let want = steer[slot_for_hash(hash_call_id(call_id), steer.len() as u32) as usize];
            if want != cpu {
                counters.misrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
