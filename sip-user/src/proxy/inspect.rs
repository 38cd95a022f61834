//! What the admin API asks a worker's proxy: its dialogs and transactions, with backends named
//! by address (the pool indexes are the worker's own business).

use std::{net::SocketAddr, time::Instant};

use super::Proxy;
use crate::sip::dialog::{Phase, inspect::PhaseCounts};

/// A question for one worker.
#[derive(Debug, Clone)]
pub enum Query {
    /// Counts: dialogs by phase and by backend, transactions.
    Summary,
    /// The dialogs of one Call-ID.
    Call(String),
}

/// A worker's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub phases: PhaseCounts,
    /// Dialogs per backend, by address (backends carrying none left out).
    pub backends: Vec<(SocketAddr, usize)>,
    pub transactions: usize,
}

/// One dialog of a Call-ID.
#[derive(Debug, Clone, PartialEq)]
pub struct CallDialog {
    pub caller_tag: String,
    pub callee_tag: String,
    pub phase: Phase,
    pub backend: Option<SocketAddr>,
    pub age_ms: u64,
}

/// A worker's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Inspection {
    Summary(Summary),
    Call(Vec<CallDialog>),
}

impl Proxy {
    /// Answers `query` from this proxy's tables as they are at `now`.
    pub fn inspect(&self, query: &Query, now: Instant) -> Inspection {
        let address = |i: u32| self.pool.backends.get(i as usize).map(|b| b.address);
        match query {
            Query::Summary => Inspection::Summary(Summary {
                phases: self.dialogs.phase_counts(),
                backends: self
                    .dialogs
                    .backend_counts()
                    .into_iter()
                    .enumerate()
                    .filter(|&(_, n)| n > 0)
                    .filter_map(|(i, n)| Some((address(i as u32)?, n)))
                    .collect(),
                transactions: self.txs.len(),
            }),
            Query::Call(call_id) => Inspection::Call(
                self.dialogs
                    .find_call(call_id.as_bytes(), now)
                    .into_iter()
                    .map(|d| CallDialog {
                        caller_tag: d.caller_tag,
                        callee_tag: d.callee_tag,
                        phase: d.phase,
                        backend: d.backend.and_then(address),
                        age_ms: d.age_ms,
                    })
                    .collect(),
            ),
        }
    }
}
