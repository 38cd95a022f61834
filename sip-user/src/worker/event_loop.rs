//! One worker: a single-threaded tokio runtime on its CPU that owns a socket of the reuseport
//! group and a [`Proxy`] (its transactions and dialogs). The loop waits for the first of: a
//! datagram, a datagram handed over by another worker, the proxy's next timer, a new backend
//! pool, or shutdown; then it sends what the proxy queued.
//!
//! A datagram whose Call-ID belongs to another worker (no XDP steering, or a Call-ID the kernel
//! could not hash) is handed to that worker's queue: every message of a call meets the same
//! transactions and dialog, and the message path takes no lock.
//!
//! Streams (TCP) work the same way: each worker accepts on its listener of a reuseport group,
//! hands every new connection to the worker that owns its peer ([`transport::owner_of`]), which
//! runs the connection as a task on its runtime; a message read off a connection is handed to
//! the worker of its Call-ID like a datagram, and what must go out on a connection another
//! worker owns is handed to that worker.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use sip_common::slot_for_hash;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{Pool, dns::SrvResolver},
    control::config::DnsSection,
    control::metrics::{Direction, Metrics, WorkerCounters, WorkerMetrics},
    proxy::{
        Proxy, ProxyEvent,
        inspect::{Inspection, Query},
        resolve::Answer,
        target::Name,
    },
    sip::{
        Parsed, parse_any,
        peer::{Peer, Transport},
        transaction::Transmit,
    },
    transport::{
        self,
        stream::{FromConnection, StreamSettings},
        table::{Connections, Refused, SendError, TlsSetup},
        udp::UdpIo,
    },
    worker::{
        capture::Capture,
        control::{Control, Controls},
    },
};

/// `recvmmsg` calls per wake-up at most (of `udp::BATCH` datagrams each) before the loop sends
/// what they produced and looks at its timers and hand-overs again. One: the replies to a batch
/// leave before the next batch is read (with 8, the first reply of a pass waited for up to 256
/// datagrams' work; `bench-e2e --ours-at 5000`, same session: INVITE→200 p50 565–676 → 452–541
/// µs, p99 1,737–1,861 → 1,263–1,793 µs, CPU per call no higher).
const RECV_CALLS_PER_WAKE: u32 = 1;
/// Passes in a row that may look at the UDP socket before anything else. A wake-up for a
/// datagram otherwise polled the shutdown, pool, timer and both queues first, in vain nearly
/// always (~600 instructions a datagram, callgrind); after this many, one pass looks at the
/// others first, so a flood cannot starve the timers or shutdown.
const UDP_FIRST_PASSES: u32 = 8;
/// How often the proxy's own counters and gauges are copied to the metrics (off the message
/// path; Prometheus scrapes far less often).
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// The worker's timer fires at the end of the `TIMER_GRAIN` bin its deadline falls in, so one
/// firing serves every deadline of a bin. Each firing costs two system calls besides the wake
/// itself: tokio's time driver is left with no timer once the worker's one timer fired, and
/// arming it again then wakes the runtime through its eventfd (a `write`), so the next
/// `epoll_wait` returns at once. With the proxy's deadlines armed as they came (transaction
/// timers, thousands in flight at 1,000 calls/s), it fired ~380 times a second: 0.38 writes
/// and 0.5 extra `epoll_wait`s a call (`perf record` of the worker's system calls). A timer
/// of RFC 3261 (T1 = 500 ms and its multiples, §17) is then up to 10 ms late.
const TIMER_GRAIN: Duration = Duration::from_millis(10);

/// The end of the `TIMER_GRAIN` bin (counted from `origin`) that `deadline` falls in.
fn grain_end(origin: Instant, deadline: Instant) -> Instant {
    const GRAIN_NS: u64 = TIMER_GRAIN.as_nanos() as u64;
    // A deadline centuries away (past `u64` nanoseconds, or `Instant`'s range) stays as it is.
    u64::try_from(deadline.saturating_duration_since(origin).as_nanos())
        .ok()
        .and_then(|since| since.div_ceil(GRAIN_NS).checked_mul(GRAIN_NS))
        .and_then(|n| origin.checked_add(Duration::from_nanos(n)))
        .unwrap_or(deadline)
}

/// What one worker hands another.
#[derive(Debug)]
pub enum Handoff {
    /// A message received by one worker for the worker that owns its Call-ID; `inside` when its
    /// connection's certificate made its source inside (`tls.trusted_names`).
    Message {
        message: Bytes,
        source: Peer,
        inside: bool,
    },
    /// A message to send on a connection the receiving worker owns, with the name the sender
    /// resolved a TLS next hop from, which the certificate must carry if the connection must be
    /// opened (see [`Proxy::resolved_tls_name`]; a backend's name every worker knows).
    Send {
        transmit: Transmit,
        tls_name: Option<Arc<str>>,
    },
    /// A connection accepted by one worker for the worker that owns its peer.
    Stream {
        stream: std::net::TcpStream,
        peer: Peer,
    },
    /// A question from the admin API about this worker's dialogs (answered between messages:
    /// the tables are the worker's alone).
    Inspect {
        query: Query,
        reply: oneshot::Sender<Inspection>,
    },
    /// The answer to a lookup this worker started (one queue fewer to look at per pass).
    Answer { name: Name, answer: Answer },
}

/// Connections one worker's connection tasks may have queued for it at most; beyond, they wait
/// (and so do their peers: TCP's own flow control).
const FROM_CONNECTIONS_QUEUE: usize = 1024;

/// The stream listeners and connection settings, the same for every worker.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    pub settings: StreamSettings,
    pub max_per_source: u32,
    pub tls: TlsSetup,
}

/// Everything a worker thread owns.
pub struct Worker {
    pub index: usize,
    pub cpu: u32,
    pub proxy: Proxy,
    pub counters: Arc<WorkerCounters>,
    pub metrics: Arc<Metrics>,
    pub pool: watch::Receiver<Arc<Pool>>,
    pub inbox: mpsc::Receiver<Handoff>,
    /// Every worker's queue, by worker index (this one's included: lookups answer on it).
    pub peers: Arc<[mpsc::Sender<Handoff>]>,
    /// How to make the resolver for the proxy's next-hop names.
    pub resolver: ResolverSetup,
    pub streams: StreamSetup,
    /// HEP copies of what it receives and sends (`[capture]`).
    pub capture: Option<Capture>,
    pub cancel: CancellationToken,
}

/// What a worker's resolver is made from. Each worker makes its own, on its own runtime, where
/// the resolver's connections then live.
#[derive(Debug, Clone)]
pub struct ResolverSetup {
    pub dns: DnsSection,
    pub sip_ports: Vec<u16>,
    pub ipv6: bool,
}

impl Worker {
    /// Runs until cancelled, receiving on `socket` and accepting on `listeners`.
    pub async fn run(
        mut self,
        socket: std::net::UdpSocket,
        listeners: Vec<(std::net::TcpListener, Transport)>,
    ) {
        let mut udp = match UdpIo::new(socket) {
            Ok(u) => u,
            Err(e) => {
                log::error!("worker {}: UDP socket: {e}", self.index);
                return;
            }
        };
        let mut m = self.metrics.worker(self.index);
        let (conn_tx, from_conns) = mpsc::channel(FROM_CONNECTIONS_QUEUE);
        // Connections whose client certificate made them inside (`tls.trusted_names`).
        let mut trusted: HashSet<Peer> = HashSet::new();
        let mut conns = Connections::new(
            self.streams.settings,
            self.streams.max_per_source,
            self.streams.tls.clone(),
            conn_tx.clone(),
            self.cancel.clone(),
        );
        for (listener, transport) in listeners {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::spawn(accept(
                        l,
                        transport,
                        self.peers.clone(),
                        m.connection_counter(transport, "refused"),
                        self.cancel.clone(),
                    ));
                }
                Err(e) => log::error!("worker {}: {transport} listener: {e}", self.index),
            }
        }
        let pool = self.pool.borrow_and_update().clone();
        self.take_pool(pool, &mut m);
        // Shutdown, pool changes and both queues as one stream (see `control`). The inbox's
        // receiver moves into it; the worker keeps a closed one in its place.
        let inbox = std::mem::replace(&mut self.inbox, mpsc::channel(1).1);
        let mut controls = Controls::new(
            self.cancel.clone(),
            self.pool.clone(),
            (self.peers[self.index].clone(), inbox),
            (conn_tx, from_conns),
        );
        // Each datagram is received in batches, then copied once into a buffer of its own size,
        // which the parser borrows from and a transaction may keep. Slicing datagrams off shared
        // 1 MiB receive blocks (the first design) let one kept slice, a transaction's key for
        // its 32 s, pin a whole block: 334 MB at a steady 1,000 calls/s (bench-memory).
        let mut received: Vec<(Bytes, std::net::SocketAddr)> = Vec::new();
        // Outgoing datagrams of one pass of the loop, sent in batches.
        let mut outgoing: Vec<(Bytes, std::net::SocketAddr)> = Vec::new();
        // One timer for the proxy's next deadline, moved rather than made anew each pass (a
        // new one per pass registered and dropped a timer entry every time).
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // The deadline `armed` was worked out from, and the origin of its grid.
        let mut wanted: Option<Instant> = None;
        let started = Instant::now();
        // Passes in a row that looked at the UDP socket first (see `UDP_FIRST_PASSES`).
        let mut udp_streak = 0u32;
        // The export shares the timer with the proxy (one timer fewer to look at per pass); the
        // first is a period after the start.
        let mut next_export = Instant::now() + EXPORT_EVERY;
        let r = &self.resolver;
        let resolver = match SrvResolver::new(&r.dns, &r.sip_ports, r.ipv6) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                log::error!(
                    "worker {}: no resolver for next-hop names (answered 503): {e}",
                    self.index
                );
                None
            }
        };
        loop {
            let deadline = match self.proxy.poll_timeout() {
                Some(d) => d.min(next_export),
                None => next_export,
            };
            // On the grid of `TIMER_GRAIN` (see there), worked out only when the deadline
            // changed (most passes leave it as it was), and moved only when it changes bins.
            if Some(deadline) != wanted {
                wanted = Some(deadline);
                let at = grain_end(started, deadline);
                if Some(at) != armed {
                    timer.as_mut().reset(at.into());
                    armed = Some(at);
                }
            }
            // The UDP socket first, unless a queue has something (hand-overs and stream
            // messages keep their turn before datagrams) or the socket had its run.
            let udp_first = udp_streak < UDP_FIRST_PASSES && !controls.queued();
            tokio::select! {
                biased;
                r = udp.readable(), if udp_first => {
                    udp_streak += 1;
                    self.receive_udp(r, &mut udp, &mut received, &mut m).await;
                }
                _ = &mut timer => {
                    (armed, wanted) = (None, None);
                    // The proxy's deadline or the export's, whichever came (the proxy does
                    // nothing before its own). The clock is read here, not on every pass.
                    let now = Instant::now();
                    if now >= next_export {
                        next_export = now + EXPORT_EVERY;
                        self.export(&mut conns, &mut m);
                    }
                    self.proxy.handle_timeout(now);
                }
                Some(c) = controls.next() => match c {
                    Control::Shutdown => break,
                    Control::Pool(pool) => self.take_pool(pool, &mut m),
                    Control::Handoff(h) => self.on_handoff(h, &mut conns, &m),
                    Control::Connection(c) => {
                        self.on_connection(c, &mut conns, &mut trusted, &mut m);
                    }
                },
                r = udp.readable(), if !udp_first => {
                    udp_streak = 0;
                    self.receive_udp(r, &mut udp, &mut received, &mut m).await;
                }
            }
            self.flush(&mut udp, &mut outgoing, &mut conns, &mut m)
                .await;
            self.start_lookups(resolver.as_ref());
        }
    }

    /// What another worker (or a lookup, or the admin API) handed this one.
    fn on_handoff(&mut self, h: Handoff, conns: &mut Connections, m: &WorkerMetrics) {
        match h {
            Handoff::Message {
                message,
                source,
                inside,
            } => {
                if let Some(bytes) = crate::sys::heap::allocated() {
                    self.proxy.set_heap_in_use(bytes);
                }
                self.proxy
                    .handle_as(message, source, inside, Instant::now());
            }
            Handoff::Send { transmit, tls_name } => {
                self.send_on_connection(conns, transmit, tls_name.as_deref(), m);
            }
            Handoff::Stream { stream, peer } => match conns.adopt(stream, peer) {
                Ok(()) => m.connection_event(peer.transport, "accepted"),
                Err(Refused::PerSource) => m.connection_event(peer.transport, "refused"),
                Err(e) => {
                    log::debug!("worker {}: connection from {peer}: {e}", self.index);
                    m.connection_event(peer.transport, "refused");
                }
            },
            Handoff::Inspect { query, reply } => {
                let _ = reply.send(self.proxy.inspect(&query, Instant::now()));
            }
            Handoff::Answer { name, answer } => {
                self.proxy.handle_answer(name, answer, Instant::now());
            }
        }
    }

    /// What one of this worker's connections reported.
    fn on_connection(
        &mut self,
        c: FromConnection,
        conns: &mut Connections,
        trusted: &mut HashSet<Peer>,
        m: &mut WorkerMetrics,
    ) {
        match c {
            FromConnection::Message { peer, message } => {
                m.received(peer.transport);
                let inside = !trusted.is_empty() && trusted.contains(&peer);
                self.on_message(message, peer, inside);
            }
            FromConnection::Trusted { peer } => {
                trusted.insert(peer);
            }
            FromConnection::HandshakeFailed { peer, reason } => {
                log::debug!("worker {}: TLS handshake with {peer}: {reason}", self.index);
                m.tls_handshake_failed(reason);
            }
            FromConnection::Closed { peer, reason } => {
                trusted.remove(&peer);
                conns.closed(&peer);
                m.connection_closed(peer.transport, reason);
            }
        }
    }

    /// Receives what the socket has (it was found readable, or `ready` says why not) and hands
    /// each datagram to the proxy.
    async fn receive_udp(
        &mut self,
        ready: std::io::Result<()>,
        udp: &mut UdpIo,
        received: &mut Vec<(Bytes, std::net::SocketAddr)>,
        m: &mut WorkerMetrics,
    ) {
        let r = match ready {
            Ok(()) => udp.recv_batches(RECV_CALLS_PER_WAKE, received).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(calls) => m.udp_calls(Direction::Receive, calls),
            Err(e) => log::debug!("worker {}: recv: {e}", self.index),
        }
        for (datagram, source) in received.drain(..) {
            m.received(Transport::Udp);
            self.on_message(datagram, Peer::udp(source), false);
        }
    }

    /// Copies the proxy's counters and gauges to the metrics, and gives back memory: smaller
    /// tables free their old buckets, the trim returns the pages.
    fn export(&mut self, conns: &mut Connections, m: &mut WorkerMetrics) {
        self.proxy.shrink();
        conns.shrink();
        m.connections_open(conns.open_by_transport());
        crate::sys::heap::release_after_load();
        let stats = self.proxy.stats();
        self.counters.set_proxy(&stats, self.proxy.parked());
        m.proxy_stats(
            stats,
            self.proxy.active_transactions(),
            self.proxy.active_dialogs(),
        );
    }

    /// Starts a task per name the proxy asked for; each sends its answer back to this worker's
    /// queue (waiting for room: the lookups are bounded by the proxy's parked requests).
    fn start_lookups(&mut self, resolver: Option<&Arc<SrvResolver>>) {
        while let Some(name) = self.proxy.poll_query() {
            let resolver = resolver.cloned();
            let queue = self.peers[self.index].clone();
            tokio::spawn(async move {
                let answer = match resolver {
                    Some(r) => r.resolve_next_hop(&name).await,
                    None => Answer::Failed,
                };
                let _ = queue.send(Handoff::Answer { name, answer }).await;
            });
        }
    }

    /// The backend pool changed (health or reload): take it, and the metric children for it.
    fn take_pool(&mut self, pool: Arc<Pool>, m: &mut WorkerMetrics) {
        m.backends = self.metrics.backends(&pool);
        self.proxy.pool = pool;
    }

    /// Parses the message (a datagram, or one framed off a stream) once and hashes its Call-ID
    /// once: the hash names the owning worker (the kernel steered by the same one), and the
    /// parse and the hash go to this worker's proxy when that is us.
    fn on_message(&mut self, datagram: Bytes, source: Peer, inside: bool) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        parse_any(&datagram, |parsed| {
            let call_id = match &parsed {
                Ok(Parsed::Message(msg)) => msg.call_id(),
                _ => None,
            };
            let Some(call_id) = call_id else {
                // Keep-alives and what has no Call-ID: the proxy answers or drops them.
                self.counters.no_call_id.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                return self
                    .proxy
                    .handle_parsed_as(parsed, &datagram, source, inside, now);
            };
            let hash = crate::sip::simd::hash_call_id(call_id);
            if let Some(capture) = &mut self.capture {
                capture.received(&datagram, call_id, hash, source, Instant::now());
            }
            let owner = slot_for_hash(hash, self.peers.len() as u32) as usize;
            if owner == self.index {
                let now = Instant::now();
                return self
                    .proxy
                    .handle_hashed(parsed, &datagram, source, inside, hash, now);
            }
            self.counters.misrouted.fetch_add(1, Ordering::Relaxed);
            let handoff = Handoff::Message {
                message: datagram.clone(), // a reference count
                source,
                inside,
            };
            if self.peers[owner].try_send(handoff).is_err() {
                self.counters
                    .handoff_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Queues `t` on this worker's connection to its destination. A peer whose connection is
    /// gone cannot be reached (RFC 5626 §5.3: we do not open one toward a UA) and counts as a
    /// send error, like a datagram the kernel would not send.
    fn send_on_connection(
        &self,
        conns: &mut Connections,
        t: Transmit,
        tls_name: Option<&str>,
        m: &WorkerMetrics,
    ) {
        m.sent(t.dest.transport);
        let mut sent = conns.send(&t.dest, t.payload.clone());
        if sent == Err(SendError::NoConnection) {
            let name = self.proxy.backend_tls_name(&t.dest).or(tls_name);
            match conns.connect(t.dest, name) {
                Ok(()) => {
                    m.connection_event(t.dest.transport, "connected");
                    sent = conns.send(&t.dest, t.payload);
                }
                Err(e) => log::debug!("worker {}: connecting to {}: {e}", self.index, t.dest),
            }
        }
        if let Err(e) = sent {
            m.send_errors.inc();
            log::debug!("worker {}: send to {}: {e}", self.index, t.dest);
        }
    }

    /// Sends what the proxy queued: datagrams in batches, stream messages to their connection's
    /// owner; then turns the proxy's events into metrics.
    async fn flush(
        &mut self,
        udp: &mut UdpIo,
        outgoing: &mut Vec<(Bytes, std::net::SocketAddr)>,
        conns: &mut Connections,
        m: &mut WorkerMetrics,
    ) {
        while let Some(t) = self.proxy.poll_transmit() {
            if let Some(capture) = &mut self.capture {
                capture.sent(&t.payload, t.dest, Instant::now());
            }
            if t.dest.transport != Transport::Udp {
                let owner = transport::owner_of(&t.dest, self.peers.len());
                let tls_name = self.proxy.resolved_tls_name(&t.dest);
                if owner == self.index {
                    self.send_on_connection(conns, t, tls_name.as_deref(), m);
                } else if self.peers[owner]
                    .try_send(Handoff::Send {
                        transmit: t,
                        tls_name,
                    })
                    .is_err()
                {
                    // Not a received message (handoff_dropped counts those): a send that failed.
                    m.send_errors.inc();
                }
                continue;
            }
            m.sent(Transport::Udp);
            outgoing.push((t.payload, t.dest.addr));
        }
        if !outgoing.is_empty() {
            let sent = udp.send_all(outgoing).await;
            outgoing.clear();
            m.udp_calls(Direction::Send, sent.calls);
            m.send_errors.inc_by(u64::from(sent.failed));
        }
        while let Some(event) = self.proxy.poll_event() {
            match event {
                ProxyEvent::Forwarded { backend, register } => {
                    if let Some(b) = m.backends.get(backend as usize) {
                        b.requests.inc();
                        if register {
                            b.registrations.inc();
                        }
                    }
                }
                ProxyEvent::Completed {
                    backend,
                    status,
                    elapsed,
                } => {
                    if let Some(b) = m.backends.get(backend as usize) {
                        b.completed(status, elapsed);
                    }
                }
            }
        }
    }
}

/// Accepts connections on one worker's listener and hands each to the worker that owns its
/// peer (maybe this one), until cancelled.
async fn accept(
    listener: tokio::net::TcpListener,
    transport: Transport,
    peers: Arc<[mpsc::Sender<Handoff>]>,
    refused: prometheus::IntCounter,
    cancel: CancellationToken,
) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    log::warn!("{transport} accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = Peer::new(transport, addr);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let owner = transport::owner_of(&peer, peers.len());
        if peers[owner]
            .try_send(Handoff::Stream { stream, peer })
            .is_err()
        {
            // The owner's queue is full: the connection is closed (dropped), counted refused.
            refused.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_moves_to_the_end_of_its_grain_never_earlier() {
        let origin = Instant::now();
        let grain = TIMER_GRAIN.as_nanos() as u64;
        for ns in [
            0,
            1,
            grain - 1,
            grain,
            grain + 1,
            7 * grain + 3,
            1_000_000_007,
        ] {
            let deadline = origin + Duration::from_nanos(ns);
            let end = grain_end(origin, deadline);
            assert!(end >= deadline, "{ns}");
            assert!(end - deadline < TIMER_GRAIN, "{ns}");
            assert_eq!((end - origin).as_nanos() % u128::from(grain), 0, "{ns}");
        }
        // Every deadline of one bin shares its end: one firing serves them all.
        let a = grain_end(origin, origin + Duration::from_nanos(grain + 1));
        let b = grain_end(origin, origin + Duration::from_nanos(2 * grain));
        assert_eq!(a, b);
        // A deadline before the origin (already due) is not moved past the origin.
        assert_eq!(
            grain_end(origin + TIMER_GRAIN, origin),
            origin + TIMER_GRAIN
        );
    }
}
