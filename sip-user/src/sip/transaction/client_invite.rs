//! The INVITE client transaction (RFC 3261 §17.1.1, Figure 5, with RFC 6026's Accepted state).

use std::time::Instant;

use bytes::Bytes;

use super::{Ctx, Event, timers::Deadline};
use crate::sip::{Message, build, with_message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// Kept small: one entry per live transaction sits in a large table. Each state needs one
/// message at most (the INVITE to retransmit in Calling, the ACK to resend in Completed) and
/// one timer that ends it (B, D or M), so those share fields.
#[derive(Debug)]
pub struct ClientInvite {
    pub(super) state: State,
    /// The INVITE in Calling and Proceeding; the ACK in Completed; nothing in Accepted.
    resend: Bytes,
    /// Retransmissions of the INVITE so far (timer A doubles from T1).
    retransmits: u8,
    /// Timer A: retransmit the INVITE (Calling).
    timer_a: Deadline,
    /// The timer that ends the state: B in Calling and Proceeding (the transaction fails), D in
    /// Completed, M in Accepted.
    timer_end: Deadline,
}

impl ClientInvite {
    /// Sends the INVITE and starts timers A and B.
    pub(super) fn start(request: Bytes, now: Instant, ctx: &mut Ctx<'_>) -> Self {
        ctx.transmit(request.clone());
        ClientInvite {
            state: State::Calling,
            resend: request,
            retransmits: 0,
            timer_a: ctx.retransmit_at(now, ctx.timers.t1),
            timer_end: Deadline::at(now + ctx.timers.timeout()),
        }
    }

    pub(super) fn on_response(
        &mut self,
        response: &Message<'_, '_>,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let code = response.status().unwrap_or(0);
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.timer_a = Deadline::NONE; // §17.1.1.2: no more retransmissions once a 1xx arrives.
                ctx.pass_response();
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                // RFC 6026 §7.2: Accepted; the TU sends the ACK for a 2xx itself.
                self.state = State::Accepted;
                self.resend = Bytes::new(); // Accepted only absorbs 2xx retransmissions
                self.timer_a = Deadline::NONE;
                self.timer_end = Deadline::at(now + ctx.timers.timeout()); // M
                ctx.pass_response();
            }
            (State::Accepted, 200..=299) => ctx.pass_response(),
            (State::Calling | State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.timer_a = Deadline::NONE;
                self.timer_end = ctx.linger_until(now, ctx.timers.timer_d()); // D
                // Completed resends the ACK, never the INVITE.
                self.resend = self.build_ack(response);
                ctx.transmit(self.resend.clone());
                ctx.pass_response();
            }
            (State::Completed, 300..=699) => {
                // A retransmitted final response: ACK again, absorb (§17.1.1.2).
                ctx.transmit(self.resend.clone());
            }
            _ => {}
        }
    }

    fn build_ack(&self, response: &Message<'_, '_>) -> Bytes {
        with_message(&self.resend, |invite| {
            build::ack_for_non_2xx(invite, response)
        })
        .unwrap_or_default()
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.timer_end.fired(now) {
            if matches!(self.state, State::Calling | State::Proceeding) {
                ctx.event(Event::Timeout { key: *ctx.key }); // timer B: no final response
            }
            self.state = State::Terminated;
            return;
        }
        if self.timer_a.fired(now) {
            ctx.transmit(self.resend.clone());
            // INVITE retransmissions are not capped at T2 (§17.1.1.2).
            self.retransmits = self.retransmits.saturating_add(1);
            self.timer_a = ctx.retransmit_at(now, ctx.timers.doubled(self.retransmits));
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.timer_a.earliest(self.timer_end)
    }
}
