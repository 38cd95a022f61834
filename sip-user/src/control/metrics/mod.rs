//! Prometheus metrics (served at `/metrics` by [`crate::control::admin::metrics_router`]).
//!
//! Workers hold their own label children ([`WorkerMetrics`]), resolved once at start and on a
//! backend reload, so an event is an atomic add and never a label lookup; their per-message
//! counts and the proxy's counters are copied in off the message path (at scrape time, or once
//! a second). The kernel counters are read from the pinned per-CPU map at scrape time.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod worker;

pub use worker::{BackendMetrics, Direction, WorkerCounters, WorkerMetrics};

use crate::{
    backend::Pool,
    control::stats::Stats,
    proxy::{
        Limit, ProxyStats,
        outcome::Outcome,
        target::{Refusal, RoutedBy},
    },
    sip::{dialog::End, peer::Transport},
};

const NS: &str = "sip_fastpath";

/// Request → final response, from 1 ms to 32 s (a ringing phone takes seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0,
];
/// OPTIONS round trips, 100 µs to 1 s.
const PROBE_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Every metric the daemon exports.
pub struct Metrics {
    pub registry: Registry,
    xdp_attached: IntGaugeVec,
    limits: IntGaugeVec,
    kernel_packets: IntCounterVec,
    kernel_methods: IntCounterVec,
    messages: IntCounterVec,
    misrouted: IntCounterVec,
    no_call_id: IntCounterVec,
    handoff_dropped: IntCounterVec,
    send_errors: IntCounterVec,
    capture: IntCounterVec,
    proxy: IntCounterVec,
    timer_replies: IntCounterVec,
    no_backend: IntCounterVec,
    transactions: IntGaugeVec,
    dialogs: IntGaugeVec,
    requests_by_side: IntCounterVec,
    routed: IntCounterVec,
    refused: IntCounterVec,
    keepalives: IntCounterVec,
    dns_failures: IntCounterVec,
    dialogs_ended: IntCounterVec,
    overload: IntCounterVec,
    backend_requests: IntCounterVec,
    backend_registrations: IntCounterVec,
    backend_responses: IntCounterVec,
    request_duration: HistogramVec,
    backend_up: IntGaugeVec,
    backend_draining: IntGaugeVec,
    backend_priority: IntGaugeVec,
    backend_weight: GaugeVec,
    dns_lookups: IntCounterVec,
    health_check: HistogramVec,
    health_failures: IntCounterVec,
    heap: IntGaugeVec,
    transport_messages: IntCounterVec,
    udp_calls: IntCounterVec,
    connections: IntCounterVec,
    connections_closed: IntCounterVec,
    connections_open: IntGaugeVec,
    tls_handshake_failures: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help).namespace(NS), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help).namespace(NS), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help).namespace(NS), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help)
        .namespace(NS)
        .buckets(buckets.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            xdp_attached: gauge(
                &r,
                "xdp_attached",
                "1 while the XDP program is attached to the interface, 0 once detached.",
                &["iface"],
            ),
            limits: gauge(
                &r,
                "limit",
                "The configured per-worker limits ([limits]: transactions, per_source, dialogs, \
                 handoff_queue), for ratios such as dialogs / limit.",
                &["limit"],
            ),
            kernel_packets: counter(
                &r,
                "kernel_packets_total",
                "Packets the XDP program handled, by verdict and reason.",
                &["verdict", "reason"],
            ),
            kernel_methods: counter(
                &r,
                "kernel_sip_messages_total",
                "SIP messages the XDP program recognised, by method.",
                &["method"],
            ),
            messages: counter(
                &r,
                "worker_messages_total",
                "Datagrams received by each worker's socket.",
                &["worker"],
            ),
            misrouted: counter(
                &r,
                "worker_misrouted_total",
                "Datagrams that arrived at a worker other than their Call-ID's, handed over.",
                &["worker"],
            ),
            no_call_id: counter(
                &r,
                "worker_no_call_id_total",
                "Datagrams without a Call-ID (keep-alives, malformed), handled where they arrived.",
                &["worker"],
            ),
            handoff_dropped: counter(
                &r,
                "worker_handoff_dropped_total",
                "Misrouted datagrams dropped because the owning worker's queue was full.",
                &["worker"],
            ),
            send_errors: counter(
                &r,
                "worker_send_errors_total",
                "Datagrams the socket refused to send.",
                &["worker"],
            ),
            capture: counter(
                &r,
                "capture_messages_total",
                "SIP messages copied to the HEP collector ([capture]): sent, capped (over \
                 max_per_second), failed (the socket refused).",
                &["result"],
            ),
            proxy: counter(
                &r,
                "proxy_messages_total",
                "What each worker's proxy did with the datagrams it handled, one outcome each: \
                 forwarded, relayed, answered_2xx..answered_6xx (a final response made here), \
                 absorbed (retransmissions, hop-by-hop 100s), keepalive, dropped_* by reason. \
                 Their sum is the datagrams handled, less the requests waiting for DNS.",
                &["worker", "outcome"],
            ),
            timer_replies: counter(
                &r,
                "proxy_timer_replies_total",
                "Final responses the timers made (408 for a silent hop): not outcomes of a \
                 received datagram.",
                &["worker"],
            ),
            no_backend: counter(
                &r,
                "proxy_no_backend_total",
                "New requests answered 503 because no backend was up (among answered_5xx).",
                &["worker"],
            ),
            transactions: gauge(
                &r,
                "transactions",
                "Live SIP transactions per worker.",
                &["worker"],
            ),
            dialogs: gauge(&r, "dialogs", "Active dialogs per worker.", &["worker"]),
            requests_by_side: counter(
                &r,
                "requests_total",
                "New requests (not retransmissions) by the side they came from: outside, or \
                 inside (the backends and `trusted`).",
                &["worker", "side"],
            ),
            routed: counter(
                &r,
                "routed_total",
                "Requests forwarded, by how the destination was found: pool (backends), route \
                 (an address in the Route set or Request-URI), flow (a flow token), dns (a name, \
                 RFC 3263), static (`[[routes]]`), dialog (the dialog table).",
                &["worker", "by"],
            ),
            refused: counter(
                &r,
                "refused_total",
                "Requests the routing rules refused: bad_flow_token and relay_denied and \
                 domain_not_served (403), no_route and unknown_domain (404).",
                &["worker", "reason"],
            ),
            keepalives: counter(
                &r,
                "keepalives_total",
                "STUN Binding requests and double-CRLF pings answered (RFC 5626 §4.4).",
                &["worker"],
            ),
            dns_failures: counter(
                &r,
                "dns_failures_total",
                "Requests answered 503 because their next hop's name did not resolve in time.",
                &["worker"],
            ),
            dialogs_ended: counter(
                &r,
                "dialogs_ended_total",
                "Dialogs that ended, by how: bye, rejected, cancelled, timeout, session_expired, \
                 evicted (a full table), no_ack (a 2xx never ACKed within 64*T1).",
                &["worker", "end"],
            ),
            overload: counter(
                &r,
                "overload_total",
                "New requests answered 503 because a [limits] entry was reached: transactions, \
                 per_source (one outside source's share), dialogs.",
                &["worker", "limit"],
            ),
            backend_requests: counter(
                &r,
                "backend_requests_total",
                "Requests forwarded to each backend.",
                &["backend"],
            ),
            backend_registrations: counter(
                &r,
                "backend_registrations_total",
                "REGISTERs forwarded to each backend (registrar), chosen by address-of-record.",
                &["backend"],
            ),
            backend_responses: counter(
                &r,
                "backend_final_responses_total",
                "Final responses to requests forwarded to each backend, by class (408 counts \
                 a silent backend).",
                &["backend", "class"],
            ),
            request_duration: histogram(
                &r,
                "request_duration_seconds",
                "From receiving a request to relaying its final response, per backend.",
                &["backend"],
                DURATION_BUCKETS,
            ),
            backend_up: gauge(
                &r,
                "backend_up",
                "1 when the backend's health checks say up.",
                &["backend"],
            ),
            backend_draining: gauge(
                &r,
                "backend_draining",
                "1 when the backend takes no new calls (draining or removed by a reload).",
                &["backend"],
            ),
            backend_priority: gauge(
                &r,
                "backend_priority",
                "The backend's priority: new calls go to the lowest one with a backend up.",
                &["backend"],
            ),
            backend_weight: float_gauge(
                &r,
                "backend_weight",
                "The backend's share of new calls relative to others of its priority.",
                &["backend"],
            ),
            dns_lookups: counter(
                &r,
                "dns_lookups_total",
                "SRV lookups for `srv` backends, by name and result (ok or error).",
                &["srv", "result"],
            ),
            health_check: histogram(
                &r,
                "health_check_seconds",
                "Round trip of answered OPTIONS probes.",
                &["backend"],
                PROBE_BUCKETS,
            ),
            health_failures: counter(
                &r,
                "health_check_failures_total",
                "OPTIONS probes that got no answer in time.",
                &["backend"],
            ),
            heap: gauge(
                &r,
                "heap_bytes",
                "The allocator's heap: in_use (handed out) and free (held in its arenas, not \
                 returned to the system); counted (what the daemon's own code holds, which \
                 limits.memory_mb is compared with). RSS minus in_use and free is code, stacks \
                 and maps.",
                &["state"],
            ),
            transport_messages: counter(
                &r,
                "transport_messages_total",
                "SIP messages received (in) and sent (out) by the workers, by transport.",
                &["worker", "transport", "direction"],
            ),
            udp_calls: counter(
                &r,
                "udp_system_calls_total",
                "recvmmsg (receive) and sendmmsg (send) calls of the workers' UDP sockets: \
                 transport_messages_total{transport=\"udp\"} divided by these is the batch size.",
                &["worker", "direction"],
            ),
            connections: counter(
                &r,
                "connections_total",
                "Stream connections accepted, refused (connections.per_source) and opened by us \
                 (connected), by transport.",
                &["worker", "transport", "event"],
            ),
            connections_closed: counter(
                &r,
                "connections_closed_total",
                "Stream connections closed, by transport and reason (peer, idle, slow, \
                 header_too_large, message_too_large, bad_framing, error, shutdown, \
                 tls_handshake, connect_failed).",
                &["worker", "transport", "reason"],
            ),
            connections_open: gauge(
                &r,
                "connections_open",
                "Stream connections open now, by the worker that owns them.",
                &["worker", "transport"],
            ),
            tls_handshake_failures: counter(
                &r,
                "tls_handshake_failures_total",
                "TLS handshakes that failed, by reason (timeout, incompatible: e.g. below \
                 tls.min_version, bad_certificate, no_certificate, alert, not_tls, closed, io, \
                 other).",
                &["worker", "reason"],
            ),
            registry: r,
        }
    }

    /// The children one worker updates.
    pub fn worker(&self, worker: usize) -> WorkerMetrics {
        let w = worker.to_string();
        WorkerMetrics {
            send_errors: self.send_errors.with_label_values(&[&w]),
            outcomes: Outcome::ALL.map(|o| self.proxy.with_label_values(&[&w, o.name()])),
            timer_replies: self.timer_replies.with_label_values(&[&w]),
            no_backend: self.no_backend.with_label_values(&[&w]),
            sides: ["outside", "inside"]
                .map(|side| self.requests_by_side.with_label_values(&[&w, side])),
            routed: RoutedBy::ALL.map(|b| self.routed.with_label_values(&[&w, b.name()])),
            refused: Refusal::ALL.map(|r| self.refused.with_label_values(&[&w, r.name()])),
            keepalives: self.keepalives.with_label_values(&[&w]),
            dns_failures: self.dns_failures.with_label_values(&[&w]),
            dialogs_ended: End::NAMES.map(|e| self.dialogs_ended.with_label_values(&[&w, e])),
            overload: Limit::ALL.map(|l| self.overload.with_label_values(&[&w, l.name()])),
            transactions: self.transactions.with_label_values(&[&w]),
            dialogs: self.dialogs.with_label_values(&[&w]),
            last: ProxyStats::default(),
            backends: Vec::new(),
            messages_in: Transport::ALL.map(|t| {
                self.transport_messages
                    .with_label_values(&[&w, t.name(), "in"])
            }),
            messages_out: Transport::ALL.map(|t| {
                self.transport_messages
                    .with_label_values(&[&w, t.name(), "out"])
            }),
            udp_calls: Direction::ALL.map(|d| self.udp_calls.with_label_values(&[&w, d.name()])),
            connections: self.connections.clone(),
            connections_closed: self.connections_closed.clone(),
            tls_handshake_failures: self.tls_handshake_failures.clone(),
            connections_open: Transport::ALL
                .map(|t| self.connections_open.with_label_values(&[&w, t.name()])),
            worker: w,
        }
    }

    /// Per-backend children for the pool's backends, in pool order.
    pub fn backends(&self, pool: &Pool) -> Vec<BackendMetrics> {
        pool.backends
            .iter()
            .map(|b| {
                let a = b.address.to_string();
                let class = |c: &str| self.backend_responses.with_label_values(&[a.as_str(), c]);
                BackendMetrics {
                    requests: self.backend_requests.with_label_values(&[&a]),
                    registrations: self.backend_registrations.with_label_values(&[&a]),
                    classes: [
                        class("2xx"),
                        class("3xx"),
                        class("4xx"),
                        class("5xx"),
                        class("6xx"),
                    ],
                    duration: self.request_duration.with_label_values(&[&a]),
                }
            })
            .collect()
    }

    /// Backend state after a probe round or reload.
    /// The capture's counters.
    pub fn capture(&self) -> crate::worker::capture::CaptureCounters {
        let c = |result: &str| self.capture.with_label_values(&[result]);
        crate::worker::capture::CaptureCounters {
            sent: c("sent"),
            capped: c("capped"),
            failed: c("failed"),
        }
    }

    /// Requests sent to `backend` so far.
    pub fn backend_requests(&self, backend: &SocketAddr) -> u64 {
        self.backend_requests
            .with_label_values(&[backend.to_string().as_str()])
            .get()
    }

    pub fn set_backend_state(&self, pool: &Pool) {
        for b in &pool.backends {
            let a = b.address.to_string();
            self.backend_up
                .with_label_values(&[&a])
                .set(b.health.is_up() as i64);
            self.backend_draining
                .with_label_values(&[&a])
                .set(b.draining as i64);
            self.backend_priority
                .with_label_values(&[&a])
                .set(i64::from(b.priority));
            self.backend_weight.with_label_values(&[&a]).set(b.weight);
        }
    }

    pub fn observe_dns(&self, srv: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.dns_lookups.with_label_values(&[srv, result]).inc();
    }

    pub fn observe_probe(&self, backend: SocketAddr, latency: Option<Duration>) {
        let a = backend.to_string();
        match latency {
            Some(l) => self
                .health_check
                .with_label_values(&[&a])
                .observe(l.as_secs_f64()),
            None => self.health_failures.with_label_values(&[&a]).inc(),
        }
    }

    /// Brings the workers' receive counters (kept by the workers for `sip-fastpath stats`
    /// too, so a message is counted once) up to their current values.
    pub fn set_workers(&self, workers: &[Arc<WorkerCounters>]) {
        for (i, c) in workers.iter().enumerate() {
            let w = i.to_string();
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            raise(&self.messages.with_label_values(&[&w]), get(&c.received));
            raise(&self.misrouted.with_label_values(&[&w]), get(&c.misrouted));
            raise(
                &self.no_call_id.with_label_values(&[&w]),
                get(&c.no_call_id),
            );
            raise(
                &self.handoff_dropped.with_label_values(&[&w]),
                get(&c.handoff_dropped),
            );
        }
    }

    /// Whether XDP is attached to `iface` now.
    pub fn set_xdp_attached(&self, iface: &str, attached: bool) {
        self.xdp_attached
            .with_label_values(&[iface])
            .set(i64::from(attached));
    }

    /// The configured per-worker limits, set once at start and on reload.
    pub fn set_limits(&self, limits: &crate::control::config::LimitsSection) {
        for (name, value) in [
            ("transactions", limits.transactions),
            ("per_source", limits.per_source),
            ("dialogs", limits.dialogs),
            ("handoff_queue", limits.handoff_queue),
        ] {
            self.limits
                .with_label_values(&[name])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// The allocator's heap now (at scrape time).
    pub fn set_heap(&self) {
        if let Some(h) = crate::sys::heap::usage() {
            self.heap
                .with_label_values(&["in_use"])
                .set(h.in_use as i64);
            self.heap.with_label_values(&["free"]).set(h.free as i64);
        }
        if let Some(bytes) = crate::sys::heap::allocated() {
            self.heap
                .with_label_values(&["counted"])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Brings the kernel counters up to the values just read from the maps.
    pub fn set_kernel(&self, stats: &Stats) {
        for (key, &value) in &stats.reasons {
            let (verdict, reason) = key.split_once('/').unwrap_or((key, ""));
            raise(
                &self.kernel_packets.with_label_values(&[verdict, reason]),
                value,
            );
        }
        for (method, &value) in &stats.methods {
            raise(&self.kernel_methods.with_label_values(&[method]), value);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Counters only go up: a map read lower than what was exported (a restarted program) is
/// ignored rather than turned into a negative step.
fn raise(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}
