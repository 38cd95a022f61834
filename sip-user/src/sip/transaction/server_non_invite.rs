//! The non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).

use std::time::Instant;

use bytes::Bytes;

use super::{Ctx, timers::Deadline};

/// The states of Figure 8 (the same four as the client's Figure 6).
pub use super::NonInviteState as State;

#[derive(Debug)]
pub struct ServerNonInvite {
    pub(super) state: State,
    last_response: Option<Bytes>,
    timer_j: Deadline,
}

impl ServerNonInvite {
    pub(super) fn new() -> Self {
        ServerNonInvite {
            state: State::Trying,
            last_response: None,
            timer_j: Deadline::NONE,
        }
    }

    /// A retransmission of the request: discarded in Trying, answered with the last response
    /// in Proceeding and Completed.
    pub(super) fn on_request(&mut self, ctx: &mut Ctx<'_>) {
        if let (State::Proceeding | State::Completed, Some(r)) = (self.state, &self.last_response) {
            ctx.transmit(r.clone());
        }
    }

    pub(super) fn respond(&mut self, code: u16, response: Bytes, now: Instant, ctx: &mut Ctx<'_>) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        ctx.transmit(response.clone());
        self.last_response = Some(response);
        if code < 200 {
            self.state = State::Proceeding;
        } else {
            self.state = State::Completed;
            self.timer_j = ctx.linger_until(now, ctx.timers.timeout());
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant) {
        if self.timer_j.fired(now) {
            self.state = State::Terminated;
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.timer_j
    }
}
