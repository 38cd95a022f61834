//! The INVITE server transaction (RFC 3261 §17.2.1, Figure 7, with RFC 6026's Accepted state).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Ctx, Event, earliest, fired};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct ServerInvite {
    pub(super) state: State,
    last_response: Option<Bytes>,
    interval: Duration,
    timer_g: Option<Instant>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl ServerInvite {
    pub(super) fn new() -> Self {
        ServerInvite {
            state: State::Proceeding,
            last_response: None,
            interval: Duration::ZERO,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    /// A request matched this transaction: a retransmitted INVITE or the ACK.
    pub(super) fn on_request(
        &mut self,
        is_ack: bool,
        datagram: &Bytes,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        match (self.state, is_ack) {
            (State::Proceeding | State::Completed, false) => {
                // §17.2.1: answer a retransmission with the most recent response.
                if let Some(r) = &self.last_response {
                    ctx.transmit(r.clone());
                }
            }
            (State::Completed, true) => {
                self.state = State::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                self.timer_i = Some(now + ctx.timers.t4);
            }
            (State::Accepted, true) => {
                // RFC 6026 §8.7: an ACK for the 2xx goes to the TU (the proxy routes it).
                ctx.event(Event::Ack {
                    datagram: datagram.clone(),
                    source: ctx.peer,
                });
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
        ctx.transmit(response.clone());
        match code {
            100..=199 => {}
            200..=299 => {
                // RFC 6026 §7.1: Accepted absorbs INVITE retransmissions and the TU
                // retransmits its 2xx itself, so nothing of the response is kept.
                self.state = State::Accepted;
                self.timer_l = Some(now + ctx.timers.timeout());
                self.last_response = None;
                return;
            }
            _ => {
                self.state = State::Completed;
                self.interval = ctx.timers.t1;
                self.timer_g = Some(now + ctx.timers.t1);
                self.timer_h = Some(now + ctx.timers.timeout());
            }
        }
        self.last_response = Some(response);
    }

    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if fired(self.timer_h, now) {
            // No ACK (§17.2.1): the transaction fails.
            self.state = State::Terminated;
            ctx.event(Event::Timeout { key: *ctx.key });
            return;
        }
        if fired(self.timer_g, now) {
            if let Some(r) = &self.last_response {
                ctx.transmit(r.clone());
            }
            self.interval = ctx.timers.backoff_capped(self.interval);
            self.timer_g = Some(now + self.interval);
        }
        if fired(self.timer_i, now) || fired(self.timer_l, now) {
            self.state = State::Terminated;
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_i, self.timer_l])
    }
}
