//! The answering side: INVITE → 100, 180, 200 (retransmitted until the ACK, RFC 3261 §13.3.1.4),
//! ACK, BYE → 200; OPTIONS → 200 (a proxy's health checks). Every completed call (its BYE
//! answered after its ACK) is recorded by Call-ID, so a test can check the UAC's count against
//! what really happened here.

use std::{
    collections::{BinaryHeap, HashMap, HashSet, hash_map::Entry},
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use sip_user::{
    sip::{HeaderName, build},
    transport::udp::UdpIo,
};

use super::{CALL_TIMEOUT, T1, T2, wire};

/// A UAS bound to one address.
pub struct Uas {
    pub socket: UdpSocket,
    /// Record the Call-ID of every completed call (for tests; costs memory per call).
    pub keep_call_ids: bool,
    pub answer: Answer,
    /// Pin the thread that runs it to this CPU.
    pub cpu: Option<usize>,
}

/// How a [`Uas`] answers INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 100, 180, 200: the call goes ahead.
    Accept,
    /// 486 Busy Here: no call.
    Busy,
}

/// A UAS answering on its own thread until [`UasThread::finish`] (or drop).
pub struct UasThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<UasReport>>>,
}

impl Uas {
    /// Starts answering on a new thread.
    pub fn spawn(self) -> UasThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        UasThread {
            stop,
            handle: Some(std::thread::spawn(move || self.run(flag))),
        }
    }
}

/// A UAS accepting calls at `at` inside `ns` (its socket is made there), on its own thread.
pub fn backend_in(
    ns: &crate::Netns,
    at: SocketAddr,
    keep_call_ids: bool,
    cpu: Option<usize>,
) -> anyhow::Result<UasThread> {
    let socket = ns.inside(move || Ok(UdpSocket::bind(at)?))?;
    Ok(Uas {
        socket,
        keep_call_ids,
        answer: Answer::Accept,
        cpu,
    }
    .spawn())
}

impl UasThread {
    /// Stops it and returns what it saw.
    pub fn finish(mut self) -> anyhow::Result<UasReport> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("finished once");
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the UAS thread panicked"))?
    }
}

impl Drop for UasThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a UAS saw.
#[derive(Debug, Default, Clone)]
pub struct UasReport {
    pub invites: u64,
    /// Calls whose BYE was answered.
    pub completed: u64,
    pub acks: u64,
    pub byes: u64,
    pub options: u64,
    /// Requests seen again (INVITE or BYE retransmissions), answered again.
    pub retransmissions: u64,
    /// 200s sent again because no ACK had come.
    pub ok_retransmissions: u64,
    /// BYEs that came before the call's ACK (answered: the call ends all the same).
    pub bye_before_ack: u64,
    /// Calls whose 200 was never ACKed within 64·T1.
    pub no_ack: u64,
    /// Messages that did not parse, responses (a UAS gets none), unknown methods, an ACK or
    /// BYE for a call it does not know.
    pub unexpected: u64,
    /// Call-IDs of completed calls, when asked for.
    pub completed_call_ids: HashSet<Vec<u8>>,
}

struct Answered {
    /// The 200 to the INVITE, for retransmissions until the ACK.
    ok: Bytes,
    peer: SocketAddr,
    acked: bool,
    /// Retransmissions of the 200 so far.
    sent: u32,
    since: Instant,
}

impl Uas {
    /// Answers until `stop` is set (checked at least every 50 ms).
    pub fn run(self, stop: Arc<AtomicBool>) -> anyhow::Result<UasReport> {
        super::on_this_thread(self.cpu, self.serve(stop))
    }

    async fn serve(self, stop: Arc<AtomicBool>) -> anyhow::Result<UasReport> {
        let Uas {
            socket,
            keep_call_ids,
            answer: mode,
            cpu: _,
        } = self;
        let local = socket.local_addr()?;
        let mut udp = UdpIo::new(socket)?;
        let mut report = UasReport::default();
        let mut calls: HashMap<Vec<u8>, Answered> = HashMap::new();
        // Completed calls' BYE answers, for BYE retransmissions (kept one T2 past the BYE).
        let mut done: HashMap<Vec<u8>, (Bytes, Instant)> = HashMap::new();
        let mut timers: BinaryHeap<std::cmp::Reverse<(Instant, Vec<u8>)>> = BinaryHeap::new();
        let mut received = Vec::new();
        let mut out: Vec<(Bytes, SocketAddr)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut tag = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    retransmit_oks(&mut calls, &mut timers, &mut out, &mut report, now);
                    done.retain(|_, (_, at)| now.duration_since(*at) < T2);
                }
                r = udp.recv_batches(8, &mut received) => {
                    r?;
                    for (datagram, peer) in received.drain(..) {
                        tag += 1;
                        let step = Step { local, peer, tag, keep_call_ids, mode };
                        answer(&datagram, step, &mut calls, &mut done, &mut timers, &mut out, &mut report,
                            );
                    }
                }
            }
            if !out.is_empty() {
                udp.send_all(&out).await;
                out.clear();
            }
        }
        Ok(report)
    }
}

/// Where a message came from and went to, a fresh To tag, and how to answer.
#[derive(Clone, Copy)]
struct Step {
    local: SocketAddr,
    peer: SocketAddr,
    tag: u64,
    keep_call_ids: bool,
    mode: Answer,
}

fn answer(
    datagram: &[u8],
    step: Step,
    calls: &mut HashMap<Vec<u8>, Answered>,
    done: &mut HashMap<Vec<u8>, (Bytes, Instant)>,
    timers: &mut BinaryHeap<std::cmp::Reverse<(Instant, Vec<u8>)>>,
    out: &mut Vec<(Bytes, SocketAddr)>,
    report: &mut UasReport,
) {
    let keep_call_ids = step.keep_call_ids;
    let handled = wire::read(datagram, |seen, request| {
        if seen.status.is_some() {
            report.unexpected += 1;
            return;
        }
        // RFC 3261 §8.2.6 responses, built by the stack's own builder; a 1xx/2xx to an INVITE
        // (and to OPTIONS) also carries the Record-Route lines and our Contact (§12.1.1).
        let tag = format!("uas{}", step.tag);
        let contact = format!("Contact: <sip:uas@{}>", step.local);
        let reply = |code: u16, reason: &str, dialog: bool| {
            let mut extra: Vec<Vec<u8>> = Vec::new();
            if dialog {
                for h in request.headers_named(HeaderName::RecordRoute) {
                    extra.push([b"Record-Route: ", h.value].concat());
                }
                extra.push(contact.clone().into_bytes());
            }
            let extra: Vec<&[u8]> = extra.iter().map(Vec::as_slice).collect();
            build::response(request, code, reason, Some(tag.as_bytes()), &extra)
        };
        match seen.method {
            b"INVITE" if step.mode == Answer::Busy => {
                report.invites += 1;
                out.push((reply(486, "Busy Here", false), step.peer));
            }
            b"INVITE" => match calls.entry(seen.call_id.to_vec()) {
                Entry::Occupied(e) => {
                    report.retransmissions += 1;
                    out.push((e.get().ok.clone(), step.peer));
                }
                Entry::Vacant(e) => {
                    report.invites += 1;
                    out.push((reply(100, "Trying", false), step.peer));
                    // 180 and 200 carry the same To tag (one dialog).
                    let ringing = reply(180, "Ringing", true);
                    let ok = reply(200, "OK", true);
                    out.push((ringing, step.peer));
                    out.push((ok.clone(), step.peer));
                    let now = Instant::now();
                    timers.push(std::cmp::Reverse((now + T1, e.key().clone())));
                    e.insert(Answered {
                        ok,
                        peer: step.peer,
                        acked: false,
                        sent: 0,
                        since: now,
                    });
                }
            },
            b"ACK" => match calls.get_mut(seen.call_id) {
                Some(c) => {
                    report.acks += u64::from(!c.acked);
                    c.acked = true;
                }
                None if done.contains_key(seen.call_id) => {}
                None => report.unexpected += 1,
            },
            b"BYE" => {
                if let Some((ok, _)) = done.get(seen.call_id) {
                    report.retransmissions += 1;
                    out.push((ok.clone(), step.peer));
                    return;
                }
                report.byes += 1;
                match calls.remove(seen.call_id) {
                    Some(c) => {
                        // A BYE may overtake the ACK (UDP; or the ACK was lost): the dialog
                        // exists from our 200 on, so it ends here all the same (§15.1.2).
                        report.bye_before_ack += u64::from(!c.acked);
                        let ok = reply(200, "OK", false);
                        out.push((ok.clone(), step.peer));
                        report.completed += 1;
                        if keep_call_ids {
                            report.completed_call_ids.insert(seen.call_id.to_vec());
                        }
                        done.insert(seen.call_id.to_vec(), (ok, Instant::now()));
                    }
                    None => {
                        report.unexpected += 1;
                        out.push((reply(481, "Call Does Not Exist", false), step.peer));
                    }
                }
            }
            b"OPTIONS" => {
                report.options += 1;
                out.push((reply(200, "OK", true), step.peer));
            }
            _ => {
                report.unexpected += 1;
                out.push((reply(501, "Not Implemented", false), step.peer));
            }
        }
    });
    if handled.is_none() {
        report.unexpected += 1;
    }
}

/// Sends the 200 again for calls not ACKed in time (T1, doubling up to T2); gives up after
/// 64·T1.
fn retransmit_oks(
    calls: &mut HashMap<Vec<u8>, Answered>,
    timers: &mut BinaryHeap<std::cmp::Reverse<(Instant, Vec<u8>)>>,
    out: &mut Vec<(Bytes, SocketAddr)>,
    report: &mut UasReport,
    now: Instant,
) {
    while let Some(std::cmp::Reverse((at, _))) = timers.peek() {
        if *at > now {
            break;
        }
        let Some(std::cmp::Reverse((_, call_id))) = timers.pop() else {
            break;
        };
        let Some(c) = calls.get_mut(&call_id) else {
            continue; // completed
        };
        if c.acked {
            continue;
        }
        if now.duration_since(c.since) >= CALL_TIMEOUT {
            report.no_ack += 1;
            calls.remove(&call_id);
            continue;
        }
        c.sent += 1;
        report.ok_retransmissions += 1;
        out.push((c.ok.clone(), c.peer));
        let next = (T1 * 2u32.pow(c.sent.min(3))).min(T2);
        timers.push(std::cmp::Reverse((now + next, call_id)));
    }
}
