//! The INVITE client transaction (RFC 3261 §17.1.1, Figure 5, with RFC 6026's Accepted state).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Ctx, Event, earliest, fired};
use crate::sip::{Message, build, with_message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct ClientInvite {
    pub(super) state: State,
    request: Bytes,
    ack: Option<Bytes>,
    interval: Duration,
    /// Timer A (retransmit) and B (timeout) in Calling; D in Completed; M in Accepted.
    timer_a: Option<Instant>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
}

impl ClientInvite {
    /// Sends the INVITE and starts timers A and B.
    pub(super) fn start(request: Bytes, now: Instant, ctx: &mut Ctx<'_>) -> Self {
        ctx.transmit(request.clone());
        ClientInvite {
            state: State::Calling,
            request,
            ack: None,
            interval: ctx.timers.t1,
            timer_a: Some(now + ctx.timers.t1),
            timer_b: Some(now + ctx.timers.timeout()),
            timer_d: None,
            timer_m: None,
        }
    }

    pub(super) fn on_response(
        &mut self,
        response: &Message<'_, '_>,
        datagram: &Bytes,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let code = response.status().unwrap_or(0);
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.timer_a = None; // §17.1.1.2: no more retransmissions once a 1xx arrives.
                ctx.pass_response(datagram);
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                // RFC 6026 §7.2: Accepted; the TU sends the ACK for a 2xx itself.
                self.state = State::Accepted;
                self.request = Bytes::new(); // Accepted only absorbs 2xx retransmissions
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(now + ctx.timers.timeout());
                ctx.pass_response(datagram);
            }
            (State::Accepted, 200..=299) => ctx.pass_response(datagram),
            (State::Calling | State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_d = Some(now + ctx.timers.timer_d());
                let ack = self.build_ack(response);
                self.request = Bytes::new(); // Completed resends the ACK, never the INVITE
                ctx.transmit(ack.clone());
                self.ack = Some(ack);
                ctx.pass_response(datagram);
            }
            (State::Completed, 300..=699) => {
                // A retransmitted final response: ACK again, absorb (§17.1.1.2).
                if let Some(ack) = &self.ack {
                    ctx.transmit(ack.clone());
                }
            }
            _ => {}
        }
    }

    fn build_ack(&self, response: &Message<'_, '_>) -> Bytes {
        with_message(&self.request, |invite| {
            build::ack_for_non_2xx(invite, response)
        })
        .unwrap_or_default()
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if fired(self.timer_b, now) {
            self.state = State::Terminated;
            ctx.event(Event::Timeout { key: *ctx.key });
            return;
        }
        if fired(self.timer_a, now) {
            ctx.transmit(self.request.clone());
            self.interval *= 2; // INVITE retransmissions are not capped at T2 (§17.1.1.2).
            self.timer_a = Some(now + self.interval);
        }
        if fired(self.timer_d, now) || fired(self.timer_m, now) {
            self.state = State::Terminated;
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_d, self.timer_m])
    }
}
