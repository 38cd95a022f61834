//! A worker's side of the metrics: its label children ([`WorkerMetrics`], resolved once so an
//! event is an atomic add) and the counters its thread writes for the scrape to read
//! ([`WorkerCounters`]). The worker depends on these; the registry ([`super::Metrics`]) renders
//! them, and nothing here depends on the worker.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use sip_common::{OUTCOME_KINDS, REFUSAL_KINDS, ROUTED_KINDS};

use crate::{
    proxy::{
        Limit, ProxyStats,
        outcome::Outcome,
        target::{Refusal, RoutedBy},
    },
    sip::{dialog::End, peer::Transport},
    transport::stream::Close,
};

/// Counters of one worker, written only by its own thread (relaxed atomics, own cache line).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub received: AtomicU64,
    pub misrouted: AtomicU64,
    pub no_call_id: AtomicU64,
    /// The proxy's routing counts, copied in once a second (off the message path).
    pub from_outside: AtomicU64,
    pub from_inside: AtomicU64,
    pub routed: [AtomicU64; ROUTED_KINDS],
    pub refused: [AtomicU64; REFUSAL_KINDS],
    pub keepalives: AtomicU64,
    pub handled: AtomicU64,
    pub outcomes: [AtomicU64; OUTCOME_KINDS],
    pub parked: AtomicU64,
    pub timer_replies: AtomicU64,
    /// Counted live by the worker's own thread, like `received`.
    pub handoff_dropped: AtomicU64,
}

impl WorkerCounters {
    /// Takes the proxy's counts (the worker's own thread, once a second).
    pub fn set_proxy(&self, s: &ProxyStats, parked: usize) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.handled, s.received);
        for (a, &v) in self.outcomes.iter().zip(&s.outcomes) {
            set(a, v);
        }
        set(&self.parked, parked as u64);
        set(&self.timer_replies, s.timer_replies);
        set(&self.from_outside, s.from_outside);
        set(&self.from_inside, s.from_inside);
        for (a, &v) in self.routed.iter().zip(&s.routed) {
            set(a, v);
        }
        for (a, &v) in self.refused.iter().zip(&s.refused) {
            set(a, v);
        }
        set(&self.keepalives, s.keepalives);
    }
}

/// One backend's children, held by each worker.
#[derive(Clone)]
pub struct BackendMetrics {
    pub requests: IntCounter,
    pub registrations: IntCounter,
    pub(super) classes: [IntCounter; 5],
    pub(super) duration: Histogram,
}

impl BackendMetrics {
    pub fn completed(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.classes.get((status / 100).saturating_sub(2) as usize) {
            c.inc();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Which way a batched UDP call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Receive = 0,
    Send = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Receive, Direction::Send];

    pub fn name(self) -> &'static str {
        match self {
            Direction::Receive => "receive",
            Direction::Send => "send",
        }
    }
}

/// One worker's children.
pub struct WorkerMetrics {
    pub send_errors: IntCounter,
    pub(super) outcomes: [IntCounter; Outcome::ALL.len()],
    pub(super) timer_replies: IntCounter,
    pub(super) no_backend: IntCounter,
    pub(super) sides: [IntCounter; 2],
    pub(super) routed: [IntCounter; RoutedBy::ALL.len()],
    pub(super) refused: [IntCounter; Refusal::ALL.len()],
    pub(super) keepalives: IntCounter,
    pub(super) dns_failures: IntCounter,
    pub(super) dialogs_ended: [IntCounter; End::NAMES.len()],
    pub(super) overload: [IntCounter; Limit::ALL.len()],
    pub(super) transactions: IntGauge,
    pub(super) dialogs: IntGauge,
    pub(super) last: ProxyStats,
    /// Indexed like the worker's pool.
    pub backends: Vec<BackendMetrics>,
    pub(super) messages_in: [IntCounter; 3],
    pub(super) messages_out: [IntCounter; 3],
    pub(super) udp_calls: [IntCounter; 2],
    pub(super) connections: IntCounterVec,
    pub(super) connections_closed: IntCounterVec,
    pub(super) connections_open: [IntGauge; 3],
    pub(super) tls_handshake_failures: IntCounterVec,
    pub(super) worker: String,
}

impl WorkerMetrics {
    pub fn received(&self, t: Transport) {
        self.messages_in[t.index()].inc();
    }

    pub fn sent(&self, t: Transport) {
        self.messages_out[t.index()].inc();
    }

    /// `calls` batched UDP system calls made.
    pub fn udp_calls(&self, d: Direction, calls: u32) {
        self.udp_calls[d as usize].inc_by(u64::from(calls));
    }

    /// A connection accepted or refused (rare: the child is looked up each time).
    pub fn connection_event(&self, t: Transport, event: &str) {
        self.connection_counter(t, event).inc();
    }

    /// The counter of one connection event, for a task that counts on its own.
    pub fn connection_counter(&self, t: Transport, event: &str) -> IntCounter {
        self.connections
            .with_label_values(&[&self.worker, t.name(), event])
    }

    pub fn connection_closed(&self, t: Transport, reason: Close) {
        self.connections_closed
            .with_label_values(&[&self.worker, t.name(), reason.name()])
            .inc();
    }

    pub fn tls_handshake_failed(&self, reason: &str) {
        self.tls_handshake_failures
            .with_label_values(&[&self.worker, reason])
            .inc();
    }

    pub fn connections_open(&self, open: [usize; 3]) {
        for (g, n) in self.connections_open.iter().zip(open) {
            g.set(n as i64);
        }
    }

    /// Exports what changed in the proxy's own counters since the last call.
    pub fn proxy_stats(&mut self, s: ProxyStats, transactions: usize, dialogs: usize) {
        if s != self.last {
            let l = self.last;
            for (c, (now, before)) in self.outcomes.iter().zip(s.outcomes.iter().zip(l.outcomes)) {
                c.inc_by(now - before);
            }
            self.timer_replies.inc_by(s.timer_replies - l.timer_replies);
            self.no_backend.inc_by(s.no_backend - l.no_backend);
            self.sides[0].inc_by(s.from_outside - l.from_outside);
            self.sides[1].inc_by(s.from_inside - l.from_inside);
            for (c, (now, before)) in self.routed.iter().zip(s.routed.iter().zip(l.routed)) {
                c.inc_by(now - before);
            }
            for (c, (now, before)) in self.refused.iter().zip(s.refused.iter().zip(l.refused)) {
                c.inc_by(now - before);
            }
            self.keepalives.inc_by(s.keepalives - l.keepalives);
            self.dns_failures.inc_by(s.dns_failures - l.dns_failures);
            let ended = s.dialogs_ended.iter().zip(l.dialogs_ended);
            for (c, (now, before)) in self.dialogs_ended.iter().zip(ended) {
                c.inc_by(now - before);
            }
            for (c, (now, before)) in self.overload.iter().zip(s.overload.iter().zip(l.overload)) {
                c.inc_by(now - before);
            }
            self.last = s;
        }
        self.transactions.set(transactions as i64);
        self.dialogs.set(dialogs as i64);
    }
}
