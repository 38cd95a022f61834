//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Ctx, Event, earliest, fired};

/// The states of Figure 6 (the same four as the server's Figure 8).
pub use super::NonInviteState as State;

/// Kept small (one per live transaction in a large table): one timer retransmits (E) and one
/// ends the state (F or K).
#[derive(Debug)]
pub struct ClientNonInvite {
    pub(super) state: State,
    request: Bytes,
    interval: Duration,
    /// Timer E: retransmit the request (Trying, Proceeding).
    timer_e: Option<Instant>,
    /// The timer that ends the state: F in Trying and Proceeding (the transaction fails), K in
    /// Completed.
    timer_end: Option<Instant>,
}

impl ClientNonInvite {
    pub(super) fn start(request: Bytes, now: Instant, ctx: &mut Ctx<'_>) -> Self {
        ctx.transmit(request.clone());
        ClientNonInvite {
            state: State::Trying,
            request,
            interval: ctx.timers.t1,
            timer_e: Some(now + ctx.timers.t1),
            timer_end: Some(now + ctx.timers.timeout()), // F
        }
    }

    pub(super) fn on_response(
        &mut self,
        code: u16,
        datagram: &Bytes,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                ctx.pass_response(datagram);
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.request = Bytes::new(); // no more retransmissions: keep nothing for Timer K
                self.timer_e = None;
                self.timer_end = Some(now + ctx.timers.t4); // K
                ctx.pass_response(datagram);
            }
            _ => {} // retransmissions in Completed are absorbed
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if fired(self.timer_end, now) {
            if self.state != State::Completed {
                ctx.event(Event::Timeout { key: *ctx.key }); // timer F: no final response
            }
            self.state = State::Terminated;
            return;
        }
        if fired(self.timer_e, now) {
            ctx.transmit(self.request.clone());
            // Trying: double up to T2; Proceeding: every T2 (§17.1.2.2).
            self.interval = match self.state {
                State::Proceeding => ctx.timers.t2,
                _ => ctx.timers.backoff_capped(self.interval),
            };
            self.timer_e = Some(now + self.interval);
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_end])
    }
}
