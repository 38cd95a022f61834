//! Dialog tracking for the proxy (RFC 3261 §12): which calls exist, in which phase, and on which
//! backend; RFC 4028 session-timer expiry; a bounded table with counted evictions. Sans-IO like
//! the transaction layer: [`DialogTable::handle`] per message, [`DialogTable::handle_timeout`]
//! with the clock, [`DialogTable::poll_event`] for sessions that ended.
//!
//! Dialogs are found by Call-ID and the caller's tag, both known from the INVITE on, so a
//! dialog keeps one key for its whole life (no re-keying when the callee's tag arrives, and a
//! CANCEL, whose To has no tag, finds it). A request from the callee carries the caller's tag in
//! To, so a message is looked up by its From tag, then by its To tag. The callee's tag is stored
//! and checked: the table tracks the first callee that answers (no forking). Lookups encode the
//! key on the stack and hand out a `Copy` [`DialogRef`]: no allocation per message.

pub mod id;
pub mod inspect;
pub mod session;

use std::{collections::VecDeque, time::Instant};

use self::id::with_encoded;
pub use self::{
    id::DialogId,
    session::{DialogState, End, Limits, Phase, Session},
};
use crate::sip::{
    Message, Method,
    schedule::Schedule,
    shrink::{FastMap, shrink},
    validate::DialogFields,
};

/// A handle to a dialog in the table, valid until the dialog ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialogRef(u64);

/// A session that ended, with how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The ended entry's key and remote tag, moved out of it: its [`DialogId`] is built only
    /// when asked for (the proxy counts ended dialogs by `end`; building the id for each cost
    /// two allocations and their frees).
    key: Box<[u8]>,
    remote: Box<[u8]>,
    pub end: End,
    /// The phase it was in when it ended (Connected for a BYE, Calling for a timeout…).
    pub last_phase: Phase,
}

impl Ended {
    /// The dialog's id (allocates).
    pub fn id(&self) -> DialogId {
        Entry::id_of(&self.key, &self.remote)
    }
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DialogStats {
    pub created: u64,
    pub ended: u64,
    pub evicted: u64,
    pub expired: u64,
    /// Dialogs ended because the 2xx to their INVITE was never ACKed (counted in `expired`
    /// too).
    pub no_ack: u64,
}

#[derive(Debug)]
struct Entry {
    /// Call-ID and caller tag, encoded as in [`DialogId`] with an empty remote tag.
    key: Box<[u8]>,
    /// The callee's tag, once a response carried one.
    remote: Box<[u8]>,
    session: Session,
}

/// All dialogs of one worker, at most `max` of them.
#[derive(Debug)]
pub struct DialogTable {
    limits: Limits,
    max: usize,
    index: FastMap<Box<[u8]>, u64>,
    /// Boxed, as the transaction table's: growing the table moves 16-byte slots, not 150.
    entries: FastMap<u64, Box<Entry>>,
    /// Deadlines in order, with the entry they belong to; an entry whose dialog has moved on
    /// or ended is stale (see [`Schedule`], [`is_current`]).
    schedule: Schedule<Instant, u64>,
    next_seq: u64,
    events: VecDeque<Ended>,
    stats: DialogStats,
}

impl DialogTable {
    /// `max` must be at least 1.
    pub fn new(max: usize, limits: Limits) -> Self {
        DialogTable {
            limits,
            max: max.max(1),
            index: FastMap::default(),
            entries: FastMap::default(),
            schedule: Schedule::default(),
            next_seq: 0,
            events: VecDeque::new(),
            stats: DialogStats::default(),
        }
    }

    /// Updates the dialog `msg` belongs to (creating it for an initial INVITE) and returns it,
    /// or `None` if the message belongs to no tracked dialog.
    /// `read`: its tags and CSeq, as validation read them.
    pub fn handle(
        &mut self,
        msg: &Message<'_, '_>,
        read: &DialogFields<'_>,
        now: Instant,
    ) -> Option<DialogRef> {
        let call_id = msg.call_id()?;
        let from_tag = read.from_tag?.unwrap_or(b"");
        let to_tag = read.to_tag?.unwrap_or(b"");
        let cseq = read.cseq?;
        let limits = self.limits;
        // From the caller (From = caller's tag), or from the callee (To = caller's tag).
        // The To tag is looked up only when the From tag is not a caller's: most messages
        // come from the caller, and each lookup encodes and hashes the key.
        let (seq, from_caller) = if let Some(seq) = self.lookup(call_id, from_tag) {
            (seq, true)
        } else if let Some(seq) = (!to_tag.is_empty())
            .then(|| self.lookup(call_id, to_tag))
            .flatten()
        {
            (seq, false)
        } else if msg.method() == Some(Method::Invite) && to_tag.is_empty() {
            (self.create(call_id, from_tag, cseq.seq, now), true)
        } else {
            return None;
        };
        let callee_tag = if from_caller { to_tag } else { from_tag };
        let entry = self.entries.get_mut(&seq)?;
        if !callee_tag.is_empty() {
            if entry.remote.is_empty() && msg.status().is_some() && from_caller {
                entry.remote = callee_tag.into(); // the first answering callee (§12.1.2)
            } else if *entry.remote != *callee_tag {
                return None; // another branch of a forked call: not tracked
            }
        }
        match (msg.method(), msg.status()) {
            (Some(Method::Cancel), _) => self.update(seq, Session::on_cancel),
            (Some(Method::Ack), _) => self.update(seq, |s| s.on_ack(now, &limits)),
            (Some(Method::Bye), _) => self.update(seq, |s| s.on_bye(now, &limits)),
            (None, Some(code)) => {
                let session_expires = || {
                    msg.session_expires()
                        .and_then(Result::ok)
                        .map(|s| s.seconds)
                };
                match cseq.method {
                    Method::Invite | Method::Update => self.update(seq, |s| {
                        if cseq.method == Method::Invite || s.phase == Phase::Connected {
                            s.on_invite_response(code, session_expires(), now, &limits)
                        }
                    }),
                    Method::Bye => self.update(seq, |s| s.on_bye_response(code)),
                    _ => {}
                }
            }
            _ => {}
        }
        Some(DialogRef(seq))
    }

    /// Ends every dialog whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Expiring a dialog ends it, which takes its entry off. The first entry is current
        // (see `Schedule::moved`); one that is not is dropped rather than trusted, so the loop
        // always ends.
        while let Some((at, seq)) = self.schedule.first() {
            if at > now {
                break;
            }
            if !is_current(&self.entries, at, &seq) {
                self.schedule.pop_first();
                continue;
            }
            self.stats.expired += 1;
            self.update(seq, Session::expire);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| at)
    }

    pub fn poll_event(&mut self) -> Option<Ended> {
        self.events.pop_front()
    }

    /// The session, while the dialog lasts.
    pub fn get(&self, r: DialogRef) -> Option<&Session> {
        self.entries.get(&r.0).map(|e| &e.session)
    }

    /// The dialog's id (allocates: for logs and tests, not the message path).
    pub fn id(&self, r: DialogRef) -> Option<DialogId> {
        self.entries.get(&r.0).map(|e| e.id())
    }

    /// Sets the backend a dialog was sent to (dialog affinity) and where its caller is.
    pub fn set_route(&mut self, r: DialogRef, backend: u32, caller: crate::sip::peer::Peer) {
        if let Some(e) = self.entries.get_mut(&r.0) {
            e.session.backend = backend;
            e.session.caller = Some(caller);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Gives back the memory of a load that has passed; true if a table shrank.
    pub fn shrink(&mut self) -> bool {
        let entries = shrink(&mut self.entries);
        let schedule = self.schedule.shrink();
        shrink(&mut self.index) | entries | schedule
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> DialogStats {
        self.stats
    }

    fn lookup(&self, call_id: &[u8], caller_tag: &[u8]) -> Option<u64> {
        with_encoded(call_id, caller_tag, b"", |k| self.index.get(k).copied())
    }

    fn create(&mut self, call_id: &[u8], caller_tag: &[u8], cseq: u32, now: Instant) -> u64 {
        if self.entries.len() >= self.max {
            self.evict_one();
        }
        let key = DialogId::new(call_id, caller_tag, b"").0;
        let session = Session::new(now, cseq, &self.limits);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.created += 1;
        let deadline = session.deadline;
        self.index.insert(key.clone(), seq);
        self.entries.insert(
            seq,
            Box::new(Entry {
                key,
                remote: Box::default(),
                session,
            }),
        );
        let entries = &self.entries;
        let current = |at, s: &u64| is_current(entries, at, s);
        self.schedule
            .moved(seq, None, Some(deadline), entries.len(), current);
        seq
    }

    /// Evicts the dialog closest to its own deadline: the one the table would drop first anyway.
    fn evict_one(&mut self) {
        let Some((_, seq)) = self.schedule.first() else {
            return;
        };
        self.stats.evicted += 1;
        self.update(seq, |s| s.terminate(End::Evicted));
    }

    /// Applies `f`, then reschedules the dialog or removes it if it ended.
    fn update(&mut self, seq: u64, f: impl FnOnce(&mut Session)) {
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        let (before, phase_before) = (entry.session.deadline, entry.session.phase);
        f(&mut entry.session);
        let (after, phase, end) = (
            entry.session.deadline,
            entry.session.phase,
            entry.session.end,
        );
        if phase != Phase::Terminated {
            // Most messages leave the deadline where it was (a provisional response, a
            // retransmission): then the schedule is already right. Otherwise the entry at
            // `before` is stale from here on, left in the heap (see `Schedule`).
            if after != before {
                let entries = &self.entries;
                let current = |at, s: &u64| is_current(entries, at, s);
                self.schedule
                    .moved(seq, Some(before), Some(after), entries.len(), current);
            }
            return;
        }
        let entry = self.entries.remove(&seq).expect("present above");
        let entries = &self.entries;
        let current = |at, s: &u64| is_current(entries, at, s);
        self.schedule
            .moved(seq, Some(before), None, entries.len(), current);
        self.index.remove(&entry.key);
        self.stats.ended += 1;
        if end == Some(End::NoAck) {
            self.stats.no_ack += 1;
        }
        let Entry { key, remote, .. } = *entry;
        self.events.push_back(Ended {
            key,
            remote,
            end: end.unwrap_or(End::Timeout),
            last_phase: phase_before,
        });
    }
}

/// True if dialog `seq` is live and its deadline is `at`: its entry in the schedule is current,
/// not left behind by a move (see [`Schedule`]).
fn is_current(entries: &FastMap<u64, Box<Entry>>, at: Instant, seq: &u64) -> bool {
    entries.get(seq).is_some_and(|e| e.session.deadline == at)
}

impl Entry {
    fn id(&self) -> DialogId {
        Entry::id_of(&self.key, &self.remote)
    }

    fn id_of(key: &[u8], remote: &[u8]) -> DialogId {
        let key = DialogId(key.into());
        DialogId::new(key.call_id(), key.local_tag(), remote)
    }
}

#[cfg(test)]
mod tests;
