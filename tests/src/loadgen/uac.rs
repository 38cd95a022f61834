//! The calling side: `calls` calls at `rate` per second, each INVITE → (100) (180) 200 → ACK →
//! `hold` → BYE → 200, every request sent to `target` (the proxy; in-dialog requests carry the
//! Route set from the 200's Record-Route, RFC 3261 §12.1.2). Every response is checked (known
//! Call-ID, our Via branch, the CSeq of the request it answers, a To tag and a Contact on the
//! 2xx); a provisional response after the 200 is counted as out of order and otherwise ignored
//! (RFC 3261 lets a UA ignore it; a proxy with several receivers may reorder a call's responses).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use sip_user::{
    sip::{HeaderName, Message, build, with_message},
    transport::udp::UdpIo,
};

use super::{CALL_TIMEOUT, T1, T2, wire};

/// A UAC's run.
pub struct Uac {
    pub socket: UdpSocket,
    pub target: SocketAddr,
    pub rate: u32,
    pub calls: u64,
    /// Between the ACK and the BYE.
    pub hold: Duration,
    /// Pin the thread that runs it to this CPU.
    pub cpu: Option<usize>,
}

/// What a UAC run measured.
#[derive(Debug)]
pub struct UacReport {
    pub started: u64,
    /// Calls whose BYE got its 200 (after an INVITE answered 200 and ACKed).
    pub completed: u64,
    /// Calls that got a final error response, or no answer within 64·T1.
    pub failed: u64,
    pub timed_out: u64,
    /// Provisional responses that came after the call's 200.
    pub out_of_order: u64,
    /// Requests sent again (no answer within T1, doubling).
    pub retransmissions: u64,
    /// Responses that did not parse, named an unknown call, or did not match their request.
    pub invalid: u64,
    pub elapsed: Duration,
    /// Microseconds from sending the INVITE (first transmission) to its 200.
    pub invite_us: Histogram<u64>,
    /// Microseconds from sending the BYE to its 200.
    pub bye_us: Histogram<u64>,
}

impl UacReport {
    /// Completed calls per second over the run.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// INVITE sent, nothing back.
    Calling,
    /// A provisional response came.
    Proceeding,
    /// 200 received and ACKed; the BYE goes at the hold's end.
    Held,
    /// BYE sent.
    Ending,
    Completed,
    Failed,
}

struct Call {
    state: State,
    invite_at: Instant,
    bye_at: Option<Instant>,
    /// Transmissions of the current request beyond the first.
    resent: u32,
    /// ACK and BYE, once the 200 said where and how (built once, sent as often as needed).
    ack: Option<Bytes>,
    bye: Option<Bytes>,
}

/// What a timer entry is for.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Due {
    /// Retransmit the INVITE or the BYE, or fail the call.
    Resend,
    /// Send the BYE (the hold ended).
    Hangup,
}

impl Uac {
    /// Runs the calls on a runtime of the calling thread; returns when every call ended.
    pub fn run(self) -> anyhow::Result<UacReport> {
        super::on_this_thread(self.cpu, self.place_calls())
    }

    async fn place_calls(self) -> anyhow::Result<UacReport> {
        anyhow::ensure!(self.rate > 0, "the call rate must be at least 1 per second");
        let local = self.socket.local_addr()?;
        let mut udp = UdpIo::new(self.socket)?;
        // A tag that keeps this run's Call-IDs apart from any earlier run's.
        let run = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let ctx = Ctx {
            local,
            target: self.target,
            run,
        };
        let mut calls: Vec<Call> = Vec::with_capacity(self.calls as usize);
        let mut timers: BinaryHeap<Reverse<(Instant, Due, u64)>> = BinaryHeap::new();
        let mut report = UacReport {
            started: 0,
            completed: 0,
            failed: 0,
            timed_out: 0,
            out_of_order: 0,
            retransmissions: 0,
            invalid: 0,
            elapsed: Duration::ZERO,
            invite_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            bye_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        };
        let mut received = Vec::new();
        let mut out: Vec<(Bytes, SocketAddr)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = Instant::now();
        let mut ended = 0u64;
        // Bounded: every call ends by 64·T1 after its INVITE, and INVITEs stop after `calls`.
        let hard_stop = start
            + Duration::from_secs_f64(self.calls as f64 / self.rate as f64)
            + CALL_TIMEOUT
            + self.hold
            + Duration::from_secs(5);
        while ended < self.calls && Instant::now() < hard_stop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    let due = ((now - start).as_secs_f64() * self.rate as f64) as u64;
                    let due = due.min(self.calls);
                    while (calls.len() as u64) < due {
                        let n = calls.len() as u64;
                        out.push((ctx.invite(n), self.target));
                        calls.push(Call {
                            state: State::Calling,
                            invite_at: now,
                            bye_at: None,
                            resent: 0,
                            ack: None,
                            bye: None,
                        });
                        timers.push(Reverse((now + T1, Due::Resend, n)));
                        report.started += 1;
                    }
                    ended += fire_timers(&ctx, &mut calls, &mut timers, &mut out, &mut report, now);
                }
                r = udp.recv_batches(8, &mut received) => {
                    r?;
                    let now = Instant::now();
                    for (datagram, _) in received.drain(..) {
                        ended += on_response(&ctx, &datagram, &mut calls, &mut timers, &mut out,
                            &mut report, now, self.hold);
                    }
                }
            }
            if !out.is_empty() {
                udp.send_all(&out).await;
                out.clear();
            }
        }
        report.elapsed = start.elapsed();
        // Calls still open at the hard stop (a UAS that never answered) failed.
        let open = calls
            .iter()
            .filter(|c| !matches!(c.state, State::Completed | State::Failed))
            .count() as u64;
        report.failed += open + (self.calls - report.started);
        report.timed_out += open;
        Ok(report)
    }
}

/// What every message of a run shares.
struct Ctx {
    local: SocketAddr,
    target: SocketAddr,
    run: String,
}

impl Ctx {
    fn call_id(&self, n: u64) -> String {
        format!("{n}-{}@loadgen", self.run)
    }

    fn invite(&self, n: u64) -> Bytes {
        let (l, t) = (self.local, self.target);
        Bytes::from(format!(
            "INVITE sip:service@{t} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {l};branch=z9hG4bK-lg{n}-1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:loadgen@{l}>;tag=lg{n}\r\n\
             To: <sip:service@{t}>\r\n\
             Call-ID: {}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:loadgen@{l}>\r\n\
             Content-Length: 0\r\n\r\n",
            self.call_id(n)
        ))
    }

    /// An in-dialog request (ACK or BYE) from the 200's To tag, Contact and Record-Route.
    fn in_dialog(
        &self,
        n: u64,
        method: &str,
        cseq: u32,
        to_tag: &[u8],
        target: &[u8],
        routes: &[u8],
    ) -> Bytes {
        let (l, t) = (self.local, self.target);
        let mut m = Vec::with_capacity(512);
        m.extend_from_slice(method.as_bytes());
        m.push(b' ');
        m.extend_from_slice(target);
        m.extend_from_slice(
            format!(
                " SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-lg{n}-{}\r\n",
                if method == "ACK" { 2 } else { 3 }
            )
            .as_bytes(),
        );
        m.extend_from_slice(routes);
        m.extend_from_slice(
            format!(
                "Max-Forwards: 70\r\nFrom: <sip:loadgen@{l}>;tag=lg{n}\r\nTo: <sip:service@{t}>;tag="
            )
            .as_bytes(),
        );
        m.extend_from_slice(to_tag);
        m.extend_from_slice(
            format!(
                "\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
                self.call_id(n)
            )
            .as_bytes(),
        );
        Bytes::from(m)
    }

    /// The call number in one of this run's Call-IDs.
    fn call_of(&self, call_id: &[u8]) -> Option<u64> {
        let s = std::str::from_utf8(call_id).ok()?;
        let (n, rest) = s.split_once('-')?;
        (rest.strip_suffix("@loadgen")? == self.run).then_some(())?;
        n.parse().ok()
    }
}

/// Handles one response; returns 1 if it ended its call.
#[expect(
    clippy::too_many_arguments,
    reason = "the UAC loop's state, lent piece by piece so each borrow stays disjoint"
)]
fn on_response(
    ctx: &Ctx,
    datagram: &[u8],
    calls: &mut [Call],
    timers: &mut BinaryHeap<Reverse<(Instant, Due, u64)>>,
    out: &mut Vec<(Bytes, SocketAddr)>,
    report: &mut UacReport,
    now: Instant,
    hold: Duration,
) -> u64 {
    let ended = wire::read(datagram, |seen, response| {
        let Some(status) = seen.status else {
            return Err(()); // a UAC gets no requests in this scenario
        };
        let n = ctx.call_of(seen.call_id).ok_or(())?;
        let call = calls.get_mut(n as usize).ok_or(())?;
        let invite = match (seen.method, seen.cseq) {
            (b"INVITE", 1) => true,
            (b"BYE", 2) => false,
            _ => return Err(()),
        };
        let want_branch = format!("z9hG4bK-lg{n}-{}", if invite { 1 } else { 3 });
        if seen.branch != want_branch.as_bytes() {
            return Err(());
        }
        if invite {
            match (status, call.state) {
                (100..=199, State::Calling) => call.state = State::Proceeding,
                (100..=199, State::Proceeding) => {}
                (100..=199, _) => report.out_of_order += 1,
                (200..=299, State::Calling | State::Proceeding) => {
                    let (Some(tag), Some(target)) = (seen.to_tag, seen.contact) else {
                        return Err(());
                    };
                    let _ = report
                        .invite_us
                        .record(now.duration_since(call.invite_at).as_micros() as u64);
                    // The route set: the 200's Record-Route entries in reverse (§12.1.2).
                    let mut rr: Vec<&[u8]> = response
                        .headers_named(HeaderName::RecordRoute)
                        .flat_map(|h| h.value.split(|&b| b == b','))
                        .map(|v| v.trim_ascii())
                        .collect();
                    rr.reverse();
                    let mut routes = Vec::new();
                    for r in rr {
                        routes.extend_from_slice(b"Route: ");
                        routes.extend_from_slice(r);
                        routes.extend_from_slice(b"\r\n");
                    }
                    let ack = ctx.in_dialog(n, "ACK", 1, tag, target, &routes);
                    out.push((ack.clone(), ctx.target));
                    call.ack = Some(ack);
                    call.bye = Some(ctx.in_dialog(n, "BYE", 2, tag, target, &routes));
                    call.state = State::Held;
                    call.resent = 0;
                    timers.push(Reverse((now + hold, Due::Hangup, n)));
                }
                (200..=299, _) => {
                    // The 200 again: our ACK was lost or late; send it again (§13.2.2.4).
                    if let Some(ack) = &call.ack {
                        out.push((ack.clone(), ctx.target));
                    }
                }
                (_, State::Calling | State::Proceeding) => {
                    // A final error: the proxy's transaction layer ACKs it hop by hop toward
                    // us, so ACK it as the transaction layer would (§17.1.1.3).
                    out.push((ctx.error_ack(n, response), ctx.target));
                    call.state = State::Failed;
                    report.failed += 1;
                    return Ok(1);
                }
                _ => {}
            }
            Ok(0)
        } else {
            match (status, call.state) {
                (100..=199, _) => Ok(0),
                (200..=299, State::Ending) => {
                    if let Some(at) = call.bye_at {
                        let _ = report
                            .bye_us
                            .record(now.duration_since(at).as_micros() as u64);
                    }
                    call.state = State::Completed;
                    call.ack = None;
                    call.bye = None;
                    report.completed += 1;
                    Ok(1)
                }
                (_, State::Ending) => {
                    call.state = State::Failed;
                    report.failed += 1;
                    Ok(1)
                }
                _ => Ok(0), // a retransmitted final for a call already ended
            }
        }
    });
    match ended {
        Some(Ok(n)) => n,
        _ => {
            report.invalid += 1;
            0
        }
    }
}

impl Ctx {
    /// The ACK for a non-2xx final `response` to call `n`'s INVITE (RFC 3261 §17.1.1.3), by the
    /// stack's own builder from the INVITE as sent (made again: error answers are rare).
    fn error_ack(&self, n: u64, response: &Message<'_, '_>) -> Bytes {
        let invite = self.invite(n);
        with_message(&invite, |invite| build::ack_for_non_2xx(invite, response)).unwrap_or_default()
    }
}

/// Sends BYEs whose hold ended, retransmits unanswered INVITEs and BYEs, fails calls past
/// 64·T1. Returns how many calls ended.
fn fire_timers(
    ctx: &Ctx,
    calls: &mut [Call],
    timers: &mut BinaryHeap<Reverse<(Instant, Due, u64)>>,
    out: &mut Vec<(Bytes, SocketAddr)>,
    report: &mut UacReport,
    now: Instant,
) -> u64 {
    let mut ended = 0;
    while let Some(Reverse((at, _, _))) = timers.peek() {
        if *at > now {
            break;
        }
        let Some(Reverse((_, due, n))) = timers.pop() else {
            break;
        };
        let Some(call) = calls.get_mut(n as usize) else {
            continue;
        };
        match (due, call.state) {
            (Due::Hangup, State::Held) => {
                if let Some(bye) = &call.bye {
                    out.push((bye.clone(), ctx.target));
                }
                call.state = State::Ending;
                call.bye_at = Some(now);
                call.resent = 0;
                timers.push(Reverse((now + T1, Due::Resend, n)));
            }
            (Due::Resend, State::Calling | State::Ending) => {
                let since = match call.state {
                    State::Ending => call.bye_at.unwrap_or(call.invite_at),
                    _ => call.invite_at,
                };
                if now.duration_since(since) >= CALL_TIMEOUT {
                    call.state = State::Failed;
                    report.failed += 1;
                    report.timed_out += 1;
                    ended += 1;
                    continue;
                }
                call.resent += 1;
                report.retransmissions += 1;
                let request = match call.state {
                    State::Ending => call.bye.clone(),
                    _ => Some(ctx.invite(n)),
                };
                if let Some(r) = request {
                    out.push((r, ctx.target));
                }
                // Timer A doubles without bound (INVITE); timer E stops at T2 (BYE).
                let next = T1 * 2u32.pow(call.resent.min(6));
                let next = if call.state == State::Ending {
                    next.min(T2)
                } else {
                    next
                };
                timers.push(Reverse((now + next, Due::Resend, n)));
            }
            (Due::Resend, State::Proceeding) => {
                // A provisional response stops INVITE retransmissions; the call still fails
                // if no final response comes within 64·T1.
                if now.duration_since(call.invite_at) >= CALL_TIMEOUT {
                    call.state = State::Failed;
                    report.failed += 1;
                    report.timed_out += 1;
                    ended += 1;
                } else {
                    timers.push(Reverse((call.invite_at + CALL_TIMEOUT, Due::Resend, n)));
                }
            }
            _ => {}
        }
    }
    ended
}
