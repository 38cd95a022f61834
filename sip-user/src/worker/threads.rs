//! The receive side: one UDP socket and one thread per worker, each pinned to its CPU.
//!
//! The sockets form an `SO_REUSEPORT` group bound in CPU order, and a two-instruction classic
//! BPF program (`SO_ATTACH_REUSEPORT_CBPF`) returns the current CPU as the index of the socket
//! to deliver to. The XDP program redirects each Call-ID through a CPUMAP to one CPU, the skb is
//! built there, so the datagram lands on the socket — and the worker — of that CPU. Measured on
//! this kernel (docs/toolchain-and-pitfalls.md): without the redirect everything lands on the receiving CPU's socket;
//! without the cBPF the group's own hash splits one Call-ID over sockets.
//!
//! Each worker runs the proxy for the Call-IDs the hash gives its CPU ([`crate::worker`]).

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use sip_common::{WorkerStats, slot_for_hash};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Pool,
    control::config::DnsSection,
    control::metrics::{Metrics, WorkerCounters},
    proxy::{
        Proxy, ProxyConfig,
        inspect::{Inspection, Query},
    },
    sip::peer::Transport,
    transport,
    worker::capture::{Capture, CaptureSettings},
    worker::{Handoff, ResolverSetup, StreamSetup, Worker},
};

/// What every worker starts from.
pub struct WorkerSetup {
    pub addr: SocketAddr,
    /// Worker `k` runs on `cpus[k]`.
    pub cpus: Vec<u32>,
    /// The proxy settings; `worker` is set per worker.
    pub proxy: ProxyConfig,
    pub pool: watch::Receiver<Arc<Pool>>,
    pub metrics: Arc<Metrics>,
    /// For the resolver each worker makes for its next-hop names (RFC 3263).
    pub dns: DnsSection,
    pub sip_ports: Vec<u16>,
    /// Each worker's queue of datagrams handed over by the others.
    pub handoff_queue: usize,
    /// Stream listeners (TCP), each a reuseport group with one member per worker.
    pub stream_listeners: Vec<(Transport, SocketAddr)>,
    pub streams: StreamSetup,
    /// `[capture]`, with our address per transport for the copies.
    pub capture: Option<(CaptureSettings, [SocketAddr; 3])>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("binding worker {index}'s {transport} listener to {addr}: {source}")]
    Listen {
        index: usize,
        transport: Transport,
        addr: SocketAddr,
        source: std::io::Error,
    },
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
    #[error("the capture socket of worker {index}: {source}")]
    Capture {
        index: usize,
        source: std::io::Error,
    },
    #[error("starting worker thread for CPU {cpu}: {source}")]
    Spawn { cpu: u32, source: std::io::Error },
}

/// A running set of workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    pub cpus: Vec<u32>,
    pub queues: WorkerQueues,
}

/// The workers' hand-over queues, by worker index: how the admin API asks them about their
/// dialogs.
#[derive(Clone, Debug)]
pub struct WorkerQueues(Arc<[mpsc::Sender<Handoff>]>);

impl WorkerQueues {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The worker whose dialogs hold `call_id` (the hash the kernel steers by).
    pub fn owner_of(&self, call_id: &str) -> usize {
        slot_for_hash(
            crate::sip::simd::hash_call_id(call_id.as_bytes()),
            self.0.len() as u32,
        ) as usize
    }

    /// Asks worker `index`; `None` if it is gone or does not answer within `wait` (its queue
    /// full of hand-overs, or it is busy).
    pub async fn inspect(&self, index: usize, query: Query, wait: Duration) -> Option<Inspection> {
        let (reply, answer) = oneshot::channel();
        let queue = self.0.get(index)?;
        tokio::time::timeout(wait, async {
            queue.send(Handoff::Inspect { query, reply }).await.ok()?;
            answer.await.ok()
        })
        .await
        .ok()
        .flatten()
    }
}

impl Workers {
    /// Binds one socket per CPU in `cpus` (in that order) to `addr`, attaches the CPU selector,
    /// and starts the threads. `cpus[k]` must equal `k` for the selector's index to match (the
    /// daemon uses the first N online CPUs).
    pub fn start(setup: WorkerSetup, cancel: CancellationToken) -> Result<Self, WorkerError> {
        let WorkerSetup {
            addr,
            cpus,
            proxy,
            pool,
            metrics,
            dns,
            sip_ports,
            handoff_queue,
            stream_listeners,
            streams,
            capture,
        } = setup;
        let mut sockets = Vec::with_capacity(cpus.len());
        for index in 0..cpus.len() {
            sockets.push(bind_member(addr).map_err(|source| WorkerError::Bind {
                index,
                addr,
                source,
            })?);
        }
        let mut listeners = Vec::with_capacity(cpus.len());
        for index in 0..cpus.len() {
            let mut mine = Vec::new();
            for &(transport, addr) in &stream_listeners {
                let l = transport::listener::bind_member(addr).map_err(|source| {
                    WorkerError::Listen {
                        index,
                        transport,
                        addr,
                        source,
                    }
                })?;
                mine.push((l, transport));
            }
            listeners.push(mine);
        }
        if let Some(first) = sockets.first() {
            attach_cpu_selector(first)
                .map_err(|source| WorkerError::ReuseportProgram { addr, source })?;
        }
        let (peers, inboxes): (Vec<_>, Vec<_>) =
            cpus.iter().map(|_| mpsc::channel(handoff_queue)).unzip();
        let peers: Arc<[mpsc::Sender<_>]> = peers.into();
        let mut workers = Workers {
            handles: Vec::new(),
            counters: Vec::new(),
            cpus: cpus.clone(),
            queues: WorkerQueues(peers.clone()),
        };
        for (index, (((socket, inbox), &cpu), listeners)) in sockets
            .into_iter()
            .zip(inboxes)
            .zip(&cpus)
            .zip(listeners)
            .enumerate()
        {
            let counters = Arc::new(WorkerCounters::default());
            workers.counters.push(counters.clone());
            let mut cfg = proxy.clone();
            cfg.worker = index as u32;
            let pool_now = (**pool.borrow()).clone();
            let capture = match &capture {
                Some((settings, local)) => Some(
                    Capture::new(settings.clone(), *local, cpus.len(), metrics.capture())
                        .map_err(|source| WorkerError::Capture { index, source })?,
                ),
                None => None,
            };
            let worker = Worker {
                index,
                cpu,
                proxy: Proxy::new(cfg, pool_now),
                counters,
                metrics: metrics.clone(),
                pool: pool.clone(),
                inbox,
                peers: peers.clone(),
                resolver: ResolverSetup {
                    dns: dns.clone(),
                    sip_ports: sip_ports.clone(),
                    ipv6: addr.is_ipv6(),
                },
                streams: streams.clone(),
                capture,
                cancel: cancel.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("sip-worker-{cpu}"))
                .spawn(move || worker_thread(worker, socket, listeners))
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
            .map(|(c, &cpu)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                WorkerStats {
                    received: get(&c.received),
                    misrouted: get(&c.misrouted),
                    no_call_id: get(&c.no_call_id),
                    from_outside: get(&c.from_outside),
                    from_inside: get(&c.from_inside),
                    routed: c.routed.each_ref().map(get),
                    refused: c.refused.each_ref().map(get),
                    keepalives: get(&c.keepalives),
                    handled: get(&c.handled),
                    outcomes: c.outcomes.each_ref().map(get),
                    parked: get(&c.parked),
                    timer_replies: get(&c.timer_replies),
                    handoff_dropped: get(&c.handoff_dropped),
                    cpu,
                    active: active as u32,
                }
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
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn worker_thread(
    worker: Worker,
    socket: Socket,
    listeners: Vec<(std::net::TcpListener, Transport)>,
) {
    let cpu = worker.cpu;
    if let Err(e) = crate::sys::pin_current_thread(cpu as usize) {
        log::warn!("worker for CPU {cpu}: could not pin the thread: {e}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("worker for CPU {cpu}: no runtime: {e}");
            return;
        }
    };
    rt.block_on(worker.run(socket.into(), listeners));
}
