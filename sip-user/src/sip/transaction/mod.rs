//! The transaction layer (RFC 3261 §17, RFC 6026), sans-IO in the quinn-proto style: feed it
//! parsed messages with [`TransactionLayer::handle`] and the clock with
//! [`TransactionLayer::handle_timeout`]; take datagrams to send from
//! [`TransactionLayer::poll_transmit`], events for the transaction user (the proxy core) from
//! [`TransactionLayer::poll_event`], and the next wake-up from
//! [`TransactionLayer::poll_timeout`]. Sockets and timers live at the edges.
//!
//! One state machine per file: [`client_invite`], [`client_non_invite`], [`server_invite`],
//! [`server_non_invite`]; [`key`] matches messages to them; [`timers`] holds T1/T2/T4.

pub mod client_invite;
pub mod client_non_invite;
pub mod key;
pub mod server_invite;
pub mod server_non_invite;
pub mod timers;

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use self::{
    client_invite::ClientInvite, client_non_invite::ClientNonInvite, key::Key,
    server_invite::ServerInvite, server_non_invite::ServerNonInvite,
};
pub use self::{
    key::{KeyMap, Kind, MethodClass},
    timers::{Deadline, Timers},
};
use crate::sip::{
    Message, Method, Parsed, parse_any,
    peer::Peer,
    schedule::Schedule,
    shrink::{FastMap, shrink},
    via::Via,
};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Peer,
    pub payload: Bytes,
}

/// What the transaction layer tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// The first four are about the message being handled, raised while
/// [`TransactionLayer::handle_from`] runs: the caller has that datagram in hand, so they do not
/// carry it (a copy of the handle, for a datagram received into a buffer of its own, cost an
/// allocation and its free each time: ~1,500 instructions a call).
pub enum Event {
    /// A new request created a server transaction; answer it with [`TransactionLayer::respond`].
    Request { key: Key, source: Peer },
    /// An ACK for a 2xx (RFC 3261 §17.2.3, RFC 6026 §8.7): not part of the INVITE transaction;
    /// the proxy forwards it statelessly along the dialog.
    Ack { source: Peer },
    /// A response to one of our client transactions, to pass upstream.
    Response { key: Key },
    /// A response that matches no transaction (say, a 2xx retransmission after the client
    /// transaction ended): forwarded statelessly (§16.7 step 9 note, §18.1.2).
    StrayResponse { source: Peer },
    /// Timer B, F or H fired: no final response, or no ACK.
    Timeout { key: Key },
    /// The transaction ended and is gone.
    Terminated { key: Key },
}

/// Why the layer could not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("message has no usable Via/CSeq to match a transaction on")]
    NoKey,
    #[error("no such server transaction")]
    UnknownTransaction,
    #[error("the datagram is not a SIP request or response")]
    NotSip,
    #[error("a client transaction with this branch exists already")]
    DuplicateBranch,
    #[error("not admitted: {0}")]
    Overloaded(Overload),
}

/// Why a new request was not admitted (it would have created a server transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overload {
    #[error("the worker holds its most server transactions")]
    Transactions,
    #[error("its source holds its share of the server transactions")]
    Source,
    #[error("its source's server transactions hold their share of request bytes")]
    SourceBytes,
}

/// How many server transactions a layer admits: in all, and from one source, by count and by
/// the bytes of their requests (a flood from one address then takes its share, not the table
/// nor the memory, whatever the size of its messages; sources the caller marks exempt, such as
/// the proxy's inside, only count toward the total). A refusal creates nothing: the caller
/// answers it statelessly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub max: usize,
    pub per_source: usize,
    /// The request bytes one source's live server transactions may add up to.
    pub per_source_bytes: u64,
}

impl Admission {
    pub const UNLIMITED: Admission = Admission {
        max: usize::MAX,
        per_source: usize::MAX,
        per_source_bytes: u64::MAX,
    };
}

/// What one source's live server transactions hold.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    count: u32,
    bytes: u64,
}

/// State shared by the machines while they handle one input.
pub(crate) struct Ctx<'a> {
    timers: &'a Timers,
    key: &'a Key,
    peer: Peer,
    transmits: &'a mut VecDeque<Transmit>,
    events: &'a mut VecDeque<Event>,
}

impl Ctx<'_> {
    fn transmit(&mut self, payload: Bytes) {
        self.transmits.push_back(Transmit {
            dest: self.peer,
            payload,
        });
    }

    fn pass_response(&mut self) {
        self.events.push_back(Event::Response { key: *self.key });
    }

    fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// A retransmission timer `after` from now, or none over a reliable transport (timers A,
    /// E and G, RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).
    fn retransmit_at(&self, now: Instant, after: Duration) -> Deadline {
        if self.peer.transport.is_reliable() {
            Deadline::NONE
        } else {
            Deadline::at(now + after)
        }
    }

    /// A timer that waits out retransmissions still in the network: `after` from now over UDP,
    /// zero over a reliable transport (timers D, I, J and K, Table 4).
    fn linger_until(&self, now: Instant, after: Duration) -> Deadline {
        if self.peer.transport.is_reliable() {
            Deadline::at(now)
        } else {
            Deadline::at(now + after)
        }
    }
}

/// The states both non-INVITE machines share (RFC 3261 Figures 6 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
#[expect(
    clippy::enum_variant_names,
    reason = "the RFC's names for the four machines"
)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine {
    fn deadline(&self) -> Deadline {
        match self {
            Machine::ClientInvite(m) => m.deadline(),
            Machine::ClientNonInvite(m) => m.deadline(),
            Machine::ServerInvite(m) => m.deadline(),
            Machine::ServerNonInvite(m) => m.deadline(),
        }
    }

    fn is_server(&self) -> bool {
        matches!(self, Machine::ServerInvite(_) | Machine::ServerNonInvite(_))
    }

    fn terminated(&self) -> bool {
        match self {
            Machine::ClientInvite(m) => m.state == client_invite::State::Terminated,
            Machine::ClientNonInvite(m) => m.state == client_non_invite::State::Terminated,
            Machine::ServerInvite(m) => m.state == server_invite::State::Terminated,
            Machine::ServerNonInvite(m) => m.state == server_non_invite::State::Terminated,
        }
    }

    /// The state's name, for tests and metrics.
    fn state_name(&self) -> String {
        match self {
            Machine::ClientInvite(m) => format!("{:?}", m.state),
            Machine::ClientNonInvite(m) => format!("{:?}", m.state),
            Machine::ServerInvite(m) => format!("{:?}", m.state),
            Machine::ServerNonInvite(m) => format!("{:?}", m.state),
        }
    }
}

/// One transaction. Its place in the schedule is `machine.deadline()`, recomputed rather than
/// stored (the entry is in a large hash table: every byte counts per live transaction).
#[derive(Debug)]
struct Entry {
    machine: Machine,
    peer: Peer,
    /// A server transaction's request size, charged to its source's [`Share`] until it ends.
    charged: u32,
}

/// Counters of the layer's work, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub created: u64,
    pub timeouts: u64,
    /// Requests and responses that matched an existing transaction (retransmissions).
    pub matched: u64,
}

/// All transactions of one worker.
#[derive(Debug)]
pub struct TransactionLayer {
    timers: Timers,
    /// Boxed: a slot is then 32 bytes, not 128, so growing the table moves a quarter of the
    /// memory. Measured with bench-e2e's capacity run: unboxed, the worker's INVITE→200 p99
    /// passed 35 ms at 1,000 calls/s as the table doubled past 100,000 entries; boxed, 3.3 ms.
    /// The table is a `KeyMap` (griddle), which spreads each doubling over the inserts after
    /// it: doubling at once, 229,376 boxed slots still took 20–41 ms here.
    entries: KeyMap<Box<Entry>>,
    /// Deadlines ordered by time, with the transaction they belong to; an entry whose
    /// transaction has moved on or ended is stale (see [`Schedule`], [`is_current`]).
    schedule: Schedule<Deadline, Key>,
    admission: Admission,
    /// Live server transactions, in all and by source address.
    servers: usize,
    servers_by_source: FastMap<IpAddr, Share>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl TransactionLayer {
    pub fn new(timers: Timers) -> Self {
        TransactionLayer {
            timers,
            entries: KeyMap::default(),
            schedule: Schedule::default(),
            admission: Admission::UNLIMITED,
            servers: 0,
            servers_by_source: FastMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The layer admitting at most `admission` server transactions.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// A message received from `source`.
    pub fn handle(
        &mut self,
        msg: &Message<'_, '_>,
        datagram: &Bytes,
        source: Peer,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let top_via = msg.top_via().and_then(Result::ok);
        self.handle_from(msg, top_via.as_ref(), datagram, source, false, now)
    }

    /// [`Self::handle`], with `exempt` sources counted toward the total only, not their own
    /// share. A new request beyond the limits fails with [`TransactionError::Overloaded`] and
    /// leaves no state; retransmissions and ACKs of admitted transactions always pass.
    ///
    /// `top_via` is `msg`'s top Via as [`Message::top_via`] parses it (validation hands it
    /// on, so it is parsed once per message); `None` if it has none or it is malformed.
    pub fn handle_from(
        &mut self,
        msg: &Message<'_, '_>,
        top_via: Option<&Via<'_>>,
        datagram: &Bytes,
        source: Peer,
        exempt: bool,
        now: Instant,
    ) -> Result<(), TransactionError> {
        debug_assert_eq!(
            top_via.map(|v| v.sent_by),
            msg.top_via().and_then(Result::ok).map(|v| v.sent_by),
            "top_via is the message's"
        );
        let top_via = top_via.ok_or(TransactionError::NoKey)?;
        match msg.method() {
            Some(method) => {
                self.handle_request(msg, top_via, method, datagram, source, exempt, now)
            }
            None => self.handle_response(msg, top_via, source, now),
        }
    }

    /// True if `msg`, whose top Via is `top_via`, belongs to a live server transaction (a
    /// retransmission).
    pub fn knows(&self, msg: &Message<'_, '_>, top_via: Option<&Via<'_>>) -> bool {
        top_via
            .and_then(|via| Key::server_at(msg, via))
            .is_some_and(|k| self.entries.contains_key(&k))
    }

    /// True if the transaction `key` is live.
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one message's context, borrowed from the caller's parse"
    )]
    fn handle_request(
        &mut self,
        msg: &Message<'_, '_>,
        top_via: &Via<'_>,
        method: Method<'_>,
        datagram: &Bytes,
        source: Peer,
        exempt: bool,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let key = Key::server_at(msg, top_via).ok_or(TransactionError::NoKey)?;
        let is_ack = method == Method::Ack;
        let matched = self.with_entry(&key, |m, ctx| match m {
            Machine::ServerInvite(m) => m.on_request(is_ack, now, ctx),
            Machine::ServerNonInvite(m) => m.on_request(ctx),
            _ => {}
        });
        if matched {
            self.stats.matched += 1;
            return Ok(());
        }
        if is_ack {
            self.events.push_back(Event::Ack { source });
            return Ok(());
        }
        if self.servers >= self.admission.max {
            return Err(TransactionError::Overloaded(Overload::Transactions));
        }
        let share = self
            .servers_by_source
            .get(&source.addr.ip())
            .copied()
            .unwrap_or_default();
        let charged = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
        if !exempt && share.count as usize >= self.admission.per_source {
            return Err(TransactionError::Overloaded(Overload::Source));
        }
        if !exempt && share.bytes + u64::from(charged) > self.admission.per_source_bytes {
            return Err(TransactionError::Overloaded(Overload::SourceBytes));
        }
        let machine = if method == Method::Invite {
            Machine::ServerInvite(ServerInvite::new())
        } else {
            Machine::ServerNonInvite(ServerNonInvite::new())
        };
        self.servers += 1;
        let share = self.servers_by_source.entry(source.addr.ip()).or_default();
        share.count += 1;
        share.bytes += u64::from(charged);
        self.insert(key, machine, source, charged);
        self.events.push_back(Event::Request { key, source });
        Ok(())
    }

    fn handle_response(
        &mut self,
        msg: &Message<'_, '_>,
        top_via: &Via<'_>,
        source: Peer,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let key = Key::client_for_response_at(msg, top_via).ok_or(TransactionError::NoKey)?;
        let code = msg.status().unwrap_or(0);
        let matched = self.with_entry(&key, |m, ctx| match m {
            Machine::ClientInvite(m) => m.on_response(msg, now, ctx),
            Machine::ClientNonInvite(m) => m.on_response(code, now, ctx),
            _ => {}
        });
        if matched {
            self.stats.matched += 1;
        } else {
            self.events.push_back(Event::StrayResponse { source });
        }
        Ok(())
    }

    /// Starts a client transaction sending `request` to `dest`. Its top Via must carry the
    /// branch the responses will match on.
    pub fn send_request(
        &mut self,
        request: Bytes,
        dest: Peer,
        now: Instant,
    ) -> Result<Key, TransactionError> {
        // A forwarded request may carry more header lines than the stack storage holds.
        let key = parse_any(&request, |parsed| match parsed {
            Ok(Parsed::Message(msg)) => Ok((
                Key::client_for_request(&msg),
                msg.method() == Some(Method::Invite),
            )),
            _ => Err(TransactionError::NotSip),
        })?;
        let (key, is_invite) = (key.0.ok_or(TransactionError::NoKey)?, key.1);
        self.start_client(key, is_invite, request, dest, now)
    }

    /// [`Self::send_request`] for a request the caller built and whose top-Via branch and
    /// method it knows, so the layer does not parse it again (debug builds check that they
    /// agree): the proxy's forwarded requests.
    pub fn send_request_known(
        &mut self,
        request: Bytes,
        branch: &[u8],
        method: Method<'_>,
        dest: Peer,
        now: Instant,
    ) -> Result<Key, TransactionError> {
        let key = Key::client(branch, method);
        debug_assert_eq!(
            parse_any(&request, |parsed| match parsed {
                Ok(Parsed::Message(m)) => Key::client_for_request(&m),
                _ => None,
            }),
            Some(key),
            "send_request_known(): branch and method disagree with the request"
        );
        self.start_client(key, method == Method::Invite, request, dest, now)
    }

    fn start_client(
        &mut self,
        key: Key,
        is_invite: bool,
        request: Bytes,
        dest: Peer,
        now: Instant,
    ) -> Result<Key, TransactionError> {
        if self.entries.contains_key(&key) {
            return Err(TransactionError::DuplicateBranch);
        }
        let mut ctx = Ctx {
            timers: &self.timers,
            key: &key,
            peer: dest,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let machine = if is_invite {
            Machine::ClientInvite(ClientInvite::start(request.clone(), now, &mut ctx))
        } else {
            Machine::ClientNonInvite(ClientNonInvite::start(request.clone(), now, &mut ctx))
        };
        self.insert(key, machine, dest, 0);
        Ok(key)
    }

    /// Sends `response`, whose status is `code`, through the server transaction `key`. The
    /// caller built or relayed the response and knows its code, so the layer does not parse it
    /// again (debug builds check that they agree).
    pub fn respond(
        &mut self,
        key: &Key,
        code: u16,
        response: Bytes,
        now: Instant,
    ) -> Result<(), TransactionError> {
        debug_assert_eq!(
            parse_any(&response, |parsed| match parsed {
                Ok(Parsed::Message(m)) => m.status(),
                _ => None,
            }),
            Some(code),
            "respond(): code and response disagree"
        );
        let found = self.with_entry(key, |m, ctx| match m {
            Machine::ServerInvite(m) => m.respond(code, response, now, ctx),
            Machine::ServerNonInvite(m) => m.respond(code, response, now, ctx),
            _ => {}
        });
        if found {
            Ok(())
        } else {
            Err(TransactionError::UnknownTransaction)
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = Deadline::at(now);
        while let Some((at, key)) = self.schedule.first() {
            if at > due {
                break;
            }
            self.schedule.pop_first();
            if !is_current(&self.entries, at, &key) {
                continue;
            }
            self.with_entry(&key, |m, ctx| match m {
                Machine::ClientInvite(m) => m.on_timeout(now, ctx),
                Machine::ClientNonInvite(m) => m.on_timeout(now, ctx),
                Machine::ServerInvite(m) => m.on_timeout(now, ctx),
                Machine::ServerNonInvite(m) => m.on_timeout(now),
            });
        }
        // What the loop stopped at may be stale.
        let entries = &self.entries;
        self.schedule.settle(|at, k| is_current(entries, at, k));
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().and_then(|(at, _)| at.get())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The current state of a transaction, by name (`Calling`, `Completed`, …).
    pub fn state(&self, key: &Key) -> Option<String> {
        self.entries.get(key).map(|e| e.machine.state_name())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Gives back the memory of a load that has passed; true if a table shrank.
    pub fn shrink(&mut self) -> bool {
        // Timers that fire together (a burst of calls 32 s ago) queue an event each at once.
        let queues = shrink(&mut self.events) | shrink(&mut self.transmits);
        let sources = shrink(&mut self.servers_by_source);
        let schedule = self.schedule.shrink();
        shrink(&mut self.entries) | queues | sources | schedule
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn insert(&mut self, key: Key, machine: Machine, peer: Peer, charged: u32) {
        self.stats.created += 1;
        self.entries.insert(
            key,
            Box::new(Entry {
                machine,
                peer,
                charged,
            }),
        );
        self.reschedule(&key, Deadline::NONE);
    }

    /// Runs `f` on the machine of `key`, then reschedules it, or removes it if it ended; false
    /// if there is no such transaction (one lookup tells both).
    fn with_entry(&mut self, key: &Key, f: impl FnOnce(&mut Machine, &mut Ctx<'_>)) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let old_deadline = entry.machine.deadline();
        let events_before = self.events.len();
        let mut ctx = Ctx {
            timers: &self.timers,
            key,
            peer: entry.peer,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        f(&mut entry.machine, &mut ctx);
        let (new, terminated) = (entry.machine.deadline(), entry.machine.terminated());
        self.stats.timeouts += self
            .events
            .iter()
            .skip(events_before)
            .filter(|e| matches!(e, Event::Timeout { .. }))
            .count() as u64;
        self.moved(key, old_deadline, new, terminated);
        true
    }

    /// Moves `key` in the schedule from `old` (its deadline before the change) to its
    /// machine's deadline now, or removes the entry if it terminated.
    fn reschedule(&mut self, key: &Key, old: Deadline) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let (new, terminated) = (entry.machine.deadline(), entry.machine.terminated());
        self.moved(key, old, new, terminated);
    }

    /// [`Self::reschedule`] with the machine's deadline and state already read (by a caller
    /// that held its entry: one table lookup fewer).
    fn moved(&mut self, key: &Key, old: Deadline, new: Deadline, terminated: bool) {
        if terminated {
            if let Some(entry) = self.entries.remove(key)
                && entry.machine.is_server()
            {
                self.servers -= 1;
                let ip = entry.peer.addr.ip();
                if let Some(share) = self.servers_by_source.get_mut(&ip) {
                    share.count -= 1;
                    share.bytes -= u64::from(entry.charged);
                    if share.count == 0 {
                        self.servers_by_source.remove(&ip);
                    }
                }
            }
            self.events.push_back(Event::Terminated { key: *key });
        }
        if old != new || terminated {
            // The entry at `old`, if any, is stale from here on (see `Schedule`).
            let some = |d: Deadline| (d != Deadline::NONE).then_some(d);
            let entries = &self.entries;
            self.schedule.moved(
                *key,
                some(old),
                some(new).filter(|_| !terminated),
                entries.len(),
                |at, k| is_current(entries, at, k),
            );
        }
    }
}

/// True if `key`'s transaction is live and its deadline is `at`: its entry in the schedule is
/// current, not left behind by a move (see [`Schedule`]).
fn is_current(entries: &KeyMap<Box<Entry>>, at: Deadline, key: &Key) -> bool {
    entries
        .get(key)
        .is_some_and(|e| !e.machine.terminated() && e.machine.deadline() == at)
}

#[cfg(test)]
mod tests;
