//! Dialog tracking for the proxy (RFC 3261 §12): which calls exist, in which phase, and on which
//! backend; RFC 4028 session-timer expiry; a bounded table with counted evictions. Sans-IO like
//! the transaction layer: [`DialogTable::handle`] per message, [`DialogTable::handle_timeout`]
//! with the clock, [`DialogTable::poll_event`] for sessions that ended.

pub mod id;
pub mod session;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::Instant,
};

use self::id::with_encoded;
pub use self::{
    id::DialogId,
    session::{DialogState, End, Limits, Phase, Session},
};
use crate::sip::{Message, Method};

/// A session that ended, with how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: DialogId,
    pub end: End,
    /// The phase it was in when it ended (Connected for a BYE, Calling for a timeout…).
    pub last_phase: Phase,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DialogStats {
    pub created: u64,
    pub ended: u64,
    pub evicted: u64,
    pub expired: u64,
}

#[derive(Debug)]
struct Entry {
    session: Session,
    seq: u64,
}

/// All dialogs of one worker, at most `max` of them.
#[derive(Debug)]
pub struct DialogTable {
    limits: Limits,
    max: usize,
    dialogs: HashMap<Box<[u8]>, Entry>,
    /// Deadlines in order; the sequence number breaks ties and finds the key in `keys`.
    schedule: BTreeSet<(Instant, u64)>,
    keys: HashMap<u64, Box<[u8]>>,
    /// Early dialogs by their id without the remote tag, for a CANCEL (whose To has no tag)
    /// after a 1xx re-keyed the dialog.
    early: HashMap<Box<[u8]>, Box<[u8]>>,
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
            dialogs: HashMap::new(),
            schedule: BTreeSet::new(),
            keys: HashMap::new(),
            early: HashMap::new(),
            next_seq: 0,
            events: VecDeque::new(),
            stats: DialogStats::default(),
        }
    }

    /// Updates the dialog `msg` belongs to (creating it for an initial INVITE) and returns its
    /// id, or `None` if the message belongs to no tracked dialog.
    pub fn handle(&mut self, msg: &Message<'_, '_>, now: Instant) -> Option<DialogId> {
        let call_id = msg.call_id()?;
        let from_tag = msg.from()?.ok()?.tag().unwrap_or(b"");
        let to_tag = msg.to()?.ok()?.tag().unwrap_or(b"");
        let cseq = msg.cseq()?.ok()?;
        let limits = self.limits;
        let key = match msg.method() {
            Some(Method::Invite) if to_tag.is_empty() => {
                let key = self
                    .find(call_id, from_tag, b"")
                    .unwrap_or_else(|| self.create(call_id, from_tag, cseq.seq, now));
                Some(key)
            }
            Some(Method::Cancel) => {
                let key = self.find_either(call_id, from_tag, to_tag).or_else(|| {
                    with_encoded(call_id, from_tag, b"", |k| self.early.get(k).cloned())
                })?;
                self.update(&key, |s| s.on_cancel());
                Some(key)
            }
            Some(Method::Bye) => {
                let key = self.find_either(call_id, from_tag, to_tag)?;
                self.update(&key, |s| s.on_bye(now, &limits));
                Some(key)
            }
            Some(_) => self.find_either(call_id, from_tag, to_tag),
            None => {
                let code = msg.status()?;
                let session_expires = msg
                    .session_expires()
                    .and_then(Result::ok)
                    .map(|s| s.seconds);
                match cseq.method {
                    Method::Invite | Method::Update => {
                        let key = match self.find_either(call_id, from_tag, to_tag) {
                            Some(k) => k,
                            // The first response with a To tag turns the pending entry into the
                            // early (or confirmed) dialog.
                            None => {
                                let pending = self.find(call_id, from_tag, b"")?;
                                if to_tag.is_empty() {
                                    pending
                                } else {
                                    self.rekey(&pending, call_id, from_tag, to_tag)?
                                }
                            }
                        };
                        self.update(&key, |s| {
                            if cseq.method == Method::Invite || s.phase == Phase::Connected {
                                s.on_invite_response(code, session_expires, now, &limits)
                            }
                        });
                        Some(key)
                    }
                    Method::Bye => {
                        let key = self.find_either(call_id, from_tag, to_tag)?;
                        self.update(&key, |s| s.on_bye_response(code));
                        Some(key)
                    }
                    _ => self.find_either(call_id, from_tag, to_tag),
                }
            }
        };
        key.map(DialogId)
    }

    /// Ends every dialog whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.schedule.first() {
            if at > now {
                break;
            }
            let Some(key) = self.keys.get(&seq).cloned() else {
                self.schedule.pop_first();
                continue;
            };
            self.stats.expired += 1;
            self.update(&key, Session::expire);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|&(at, _)| at)
    }

    pub fn poll_event(&mut self) -> Option<Ended> {
        self.events.pop_front()
    }

    pub fn get(&self, id: &DialogId) -> Option<&Session> {
        self.dialogs.get(&id.0).map(|e| &e.session)
    }

    /// Sets the backend a dialog was sent to (dialog affinity) and where its caller is.
    pub fn set_route(&mut self, id: &DialogId, backend: u32, caller: std::net::SocketAddr) {
        if let Some(e) = self.dialogs.get_mut(&id.0) {
            e.session.backend = backend;
            e.session.caller = Some(caller);
        }
    }

    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    pub fn stats(&self) -> DialogStats {
        self.stats
    }

    fn find(&self, call_id: &[u8], local: &[u8], remote: &[u8]) -> Option<Box<[u8]>> {
        with_encoded(call_id, local, remote, |k| {
            self.dialogs.get_key_value(k).map(|(k, _)| k.clone())
        })
    }

    /// Both directions: a request from the callee has the tags swapped.
    fn find_either(&self, call_id: &[u8], from_tag: &[u8], to_tag: &[u8]) -> Option<Box<[u8]>> {
        self.find(call_id, from_tag, to_tag)
            .or_else(|| self.find(call_id, to_tag, from_tag))
    }

    fn create(&mut self, call_id: &[u8], from_tag: &[u8], cseq: u32, now: Instant) -> Box<[u8]> {
        if self.dialogs.len() >= self.max {
            self.evict_one();
        }
        let key = DialogId::new(call_id, from_tag, b"").0;
        self.stats.created += 1;
        self.insert(key.clone(), Session::new(now, cseq, &self.limits));
        key
    }

    /// Evicts the dialog closest to its own deadline: the one the table would drop first anyway.
    fn evict_one(&mut self) {
        let Some(&(_, seq)) = self.schedule.first() else {
            return;
        };
        let Some(key) = self.keys.get(&seq).cloned() else {
            return;
        };
        self.stats.evicted += 1;
        self.update(&key, |s| s.terminate(End::Evicted));
    }

    fn insert(&mut self, key: Box<[u8]>, session: Session) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.schedule.insert((session.deadline, seq));
        self.keys.insert(seq, key.clone());
        self.dialogs.insert(key, Entry { session, seq });
    }

    fn remove(&mut self, key: &[u8]) -> Option<Session> {
        let entry = self.dialogs.remove(key)?;
        self.schedule.remove(&(entry.session.deadline, entry.seq));
        self.keys.remove(&entry.seq);
        Some(entry.session)
    }

    fn rekey(
        &mut self,
        old: &[u8],
        call_id: &[u8],
        local: &[u8],
        remote: &[u8],
    ) -> Option<Box<[u8]>> {
        let session = self.remove(old)?;
        let key = DialogId::new(call_id, local, remote).0;
        if matches!(session.phase, Phase::Calling | Phase::Ringing) {
            self.early.insert(old.into(), key.clone());
        }
        self.insert(key.clone(), session);
        Some(key)
    }

    /// Applies `f`, then reschedules the dialog or removes it if it ended.
    fn update(&mut self, key: &[u8], f: impl FnOnce(&mut Session)) {
        let Some(entry) = self.dialogs.get_mut(key) else {
            return;
        };
        let (before, phase_before, seq) = (entry.session.deadline, entry.session.phase, entry.seq);
        f(&mut entry.session);
        let (after, phase, end) = (
            entry.session.deadline,
            entry.session.phase,
            entry.session.end,
        );
        self.schedule.remove(&(before, seq));
        if phase_before != phase
            && matches!(phase, Phase::Connected | Phase::Terminated)
            && !self.early.is_empty()
        {
            let id = DialogId(key.into());
            with_encoded(id.call_id(), id.local_tag(), b"", |k| self.early.remove(k));
        }
        if phase == Phase::Terminated {
            let (key, _) = self.dialogs.remove_entry(key).expect("present above");
            self.keys.remove(&seq);
            self.stats.ended += 1;
            self.events.push_back(Ended {
                id: DialogId(key),
                end: end.unwrap_or(End::Timeout),
                last_phase: phase_before,
            });
        } else {
            self.schedule.insert((after, seq));
        }
    }
}

#[cfg(test)]
mod tests;
