//! What an operator asks of a dialog table (the admin API's `dialogs` routes): counts by phase
//! and by backend, and the dialogs of one Call-ID. Off the message path: a lookup by Call-ID
//! walks the table (its index is keyed by Call-ID *and* caller tag), which is fine for a person
//! asking and keeps the message path's index as it is.

use std::time::Instant;

use super::{DialogTable, Phase};

/// Dialogs per phase, in the order of [`Phase::COUNTED`].
pub type PhaseCounts = [usize; Phase::COUNTED.len()];

/// One dialog as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    pub call_id: String,
    pub caller_tag: String,
    /// Empty until a response carried the callee's tag.
    pub callee_tag: String,
    pub phase: Phase,
    /// Index of the backend in the pool the call was sent to; `None` for a call routed
    /// elsewhere (outward, by a route rule or a flow).
    pub backend: Option<u32>,
    /// Milliseconds since the INVITE created it.
    pub age_ms: u64,
}

impl DialogTable {
    /// How many dialogs are in each phase.
    pub fn phase_counts(&self) -> PhaseCounts {
        let mut counts = PhaseCounts::default();
        for e in self.entries.values() {
            if let Some(i) = Phase::COUNTED.iter().position(|&p| p == e.session.phase) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// How many dialogs each backend (by pool index) carries.
    pub fn backend_counts(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for e in self.entries.values().filter(|e| e.session.caller.is_some()) {
            let i = e.session.backend as usize;
            if counts.len() <= i {
                counts.resize(i + 1, 0);
            }
            counts[i] += 1;
        }
        counts
    }

    /// The dialogs of `call_id` (more than one when a caller reused a Call-ID with a new tag).
    /// Reads the keys in place: only the dialogs found are copied out.
    pub fn find_call(&self, call_id: &[u8], now: Instant) -> Vec<DialogInfo> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut found: Vec<DialogInfo> = self
            .entries
            .values()
            .filter_map(|e| {
                let (id, caller_tag, _) = super::id::parts_of(&e.key);
                (id == call_id).then(|| DialogInfo {
                    call_id: text(id),
                    caller_tag: text(caller_tag),
                    callee_tag: text(&e.remote),
                    phase: e.session.phase,
                    // `set_route` records the caller with the backend.
                    backend: e.session.caller.map(|_| e.session.backend),
                    age_ms: now.saturating_duration_since(e.session.created).as_millis() as u64,
                })
            })
            .collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.age_ms));
        found
    }
}
