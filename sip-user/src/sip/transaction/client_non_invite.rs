//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).

use std::time::Instant;

use bytes::Bytes;

use super::{Ctx, Event, timers::Deadline};

/// The states of Figure 6 (the same four as the server's Figure 8).
pub use super::NonInviteState as State;

/// Kept small (one per live transaction in a large table): one timer retransmits (E) and one
/// ends the state (F or K).
#[derive(Debug)]
pub struct ClientNonInvite {
    pub(super) state: State,
    request: Bytes,
    /// Retransmissions of the request so far (timer E doubles from T1 up to T2).
    retransmits: u8,
    /// Timer E: retransmit the request (Trying, Proceeding).
    timer_e: Deadline,
    /// The timer that ends the state: F in Trying and Proceeding (the transaction fails), K in
    /// Completed.
    timer_end: Deadline,
}

impl ClientNonInvite {
    pub(super) fn start(request: Bytes, now: Instant, ctx: &mut Ctx<'_>) -> Self {
        ctx.transmit(request.clone());
        ClientNonInvite {
            state: State::Trying,
            request,
            retransmits: 0,
            timer_e: ctx.retransmit_at(now, ctx.timers.t1),
            timer_end: Deadline::at(now + ctx.timers.timeout()), // F
        }
    }

    pub(super) fn on_response(&mut self, code: u16, now: Instant, ctx: &mut Ctx<'_>) {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                ctx.pass_response();
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.request = Bytes::new(); // no more retransmissions: keep nothing for Timer K
                self.timer_e = Deadline::NONE;
                self.timer_end = ctx.linger_until(now, ctx.timers.t4); // K
                ctx.pass_response();
            }
            _ => {} // retransmissions in Completed are absorbed
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.timer_end.fired(now) {
            if self.state != State::Completed {
                ctx.event(Event::Timeout { key: *ctx.key }); // timer F: no final response
            }
            self.state = State::Terminated;
            return;
        }
        if self.timer_e.fired(now) {
            ctx.transmit(self.request.clone());
            // Trying: double up to T2; Proceeding: every T2 (§17.1.2.2).
            self.retransmits = self.retransmits.saturating_add(1);
            let interval = match self.state {
                State::Proceeding => ctx.timers.t2,
                _ => ctx.timers.doubled_capped(self.retransmits),
            };
            self.timer_e = ctx.retransmit_at(now, interval);
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.timer_e.earliest(self.timer_end)
    }
}
