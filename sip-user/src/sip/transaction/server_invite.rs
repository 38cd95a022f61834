//! The INVITE server transaction (RFC 3261 §17.2.1, Figure 7, with RFC 6026's Accepted state).

use std::time::Instant;

use bytes::Bytes;

use super::{Ctx, Event, timers::Deadline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// Kept small (one per live transaction in a large table): one timer retransmits (G) and
/// one ends the state (H, I or L), never more at once.
#[derive(Debug)]
pub struct ServerInvite {
    pub(super) state: State,
    last_response: Option<Bytes>,
    /// Retransmissions of the final response so far (timer G doubles from T1 up to T2).
    retransmits: u8,
    /// Timer G: retransmit the final response (Completed).
    timer_g: Deadline,
    /// The timer that ends the state: H in Completed (no ACK: the transaction fails), I in
    /// Confirmed, L in Accepted.
    timer_end: Deadline,
}

impl ServerInvite {
    pub(super) fn new() -> Self {
        ServerInvite {
            state: State::Proceeding,
            last_response: None,
            retransmits: 0,
            timer_g: Deadline::NONE,
            timer_end: Deadline::NONE,
        }
    }

    /// A request matched this transaction: a retransmitted INVITE or the ACK.
    pub(super) fn on_request(&mut self, is_ack: bool, now: Instant, ctx: &mut Ctx<'_>) {
        match (self.state, is_ack) {
            (State::Proceeding | State::Completed, false) => {
                // §17.2.1: answer a retransmission with the most recent response.
                if let Some(r) = &self.last_response {
                    ctx.transmit(r.clone());
                }
            }
            (State::Completed, true) => {
                self.state = State::Confirmed;
                self.last_response = None; // Confirmed only absorbs ACKs
                self.timer_g = Deadline::NONE;
                self.timer_end = ctx.linger_until(now, ctx.timers.t4); // I
            }
            (State::Accepted, true) => {
                // RFC 6026 §8.7: an ACK for the 2xx goes to the TU (the proxy routes it).
                ctx.event(Event::Ack { source: ctx.peer });
            }
            _ => {} // retransmitted INVITE in Accepted, ACKs in Confirmed: absorbed
        }
    }

    /// The TU sends a response through this transaction.
    pub(super) fn respond(&mut self, code: u16, response: Bytes, now: Instant, ctx: &mut Ctx<'_>) {
        if self.state != State::Proceeding {
            if self.state == State::Accepted && (200..300).contains(&code) {
                ctx.transmit(response); // the TU's retransmission of its 2xx (§13.3.1.4)
            }
            return;
        }
        match code {
            100..=199 => {}
            200..=299 => {
                // RFC 6026 §7.1: Accepted absorbs INVITE retransmissions and the TU
                // retransmits its 2xx itself, so nothing of the response is kept (and the
                // response is sent without a copy of its handle, which for a buffer of its own
                // would allocate a shared header).
                self.state = State::Accepted;
                self.timer_end = Deadline::at(now + ctx.timers.timeout()); // L
                self.last_response = None;
                ctx.transmit(response);
                return;
            }
            _ => {
                self.state = State::Completed;
                self.timer_g = ctx.retransmit_at(now, ctx.timers.t1);
                self.timer_end = Deadline::at(now + ctx.timers.timeout()); // H
            }
        }
        ctx.transmit(response.clone());
        self.last_response = Some(response);
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.timer_end.fired(now) {
            if self.state == State::Completed {
                // Timer H: no ACK (§17.2.1), the transaction fails.
                ctx.event(Event::Timeout { key: *ctx.key });
            }
            self.state = State::Terminated;
            return;
        }
        if self.timer_g.fired(now) {
            if let Some(r) = &self.last_response {
                ctx.transmit(r.clone());
            }
            self.retransmits = self.retransmits.saturating_add(1);
            self.timer_g = ctx.retransmit_at(now, ctx.timers.doubled_capped(self.retransmits));
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.timer_g.earliest(self.timer_end)
    }
}
