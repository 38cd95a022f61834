//! Call flows through the dialog table with a fake clock.

use std::time::Duration;

use super::*;
use crate::sip::{Header, Parsed, parse};

struct Call {
    id: &'static str,
}

impl Call {
    /// A request from the caller (`from_callee` swaps the direction, as a BYE from the callee).
    fn request(&self, method: &str, cseq: u32, to_tag: &str, from_callee: bool) -> Vec<u8> {
        let (from, to) = if from_callee {
            (
                format!("<sip:bob@b>;tag={to_tag}"),
                "<sip:alice@a>;tag=caller".to_string(),
            )
        } else if to_tag.is_empty() {
            (
                "<sip:alice@a>;tag=caller".to_string(),
                "<sip:bob@b>".to_string(),
            )
        } else {
            (
                "<sip:alice@a>;tag=caller".to_string(),
                format!("<sip:bob@b>;tag={to_tag}"),
            )
        };
        format!(
            "{method} sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{cseq}{method}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\r\n",
            self.id
        )
        .into_bytes()
    }

    fn response(&self, code: u16, method: &str, cseq: u32, to_tag: &str, extra: &str) -> Vec<u8> {
        let to = if to_tag.is_empty() {
            "<sip:bob@b>".to_string()
        } else {
            format!("<sip:bob@b>;tag={to_tag}")
        };
        format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{cseq}{method}\r\nFrom: <sip:alice@a>;tag=caller\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n{extra}\r\n",
            self.id
        )
        .into_bytes()
    }
}

fn feed(t: &mut DialogTable, msg: &[u8], now: Instant) -> Option<DialogRef> {
    let mut h = [Header::EMPTY; 32];
    let Ok(Parsed::Message(m)) = parse(msg, &mut h) else {
        panic!("{}", String::from_utf8_lossy(msg))
    };
    t.handle(&m, &m.validate().expect("a valid message").dialog, now)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_whole_call_through_every_phase() {
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let c = Call { id: "call-a@h" };
    let r = feed(&mut t, &c.request("INVITE", 1, "", false), t0).unwrap();
    let id = t.id(r).unwrap();
    assert_eq!(
        (id.call_id(), id.local_tag(), id.remote_tag()),
        (&b"call-a@h"[..], &b"caller"[..], &b""[..])
    );
    assert_eq!(t.get(r).unwrap().phase, Phase::Calling);
    assert_eq!(
        feed(&mut t, &c.request("INVITE", 1, "", false), t0),
        Some(r),
        "retransmission"
    );
    feed(&mut t, &c.response(100, "INVITE", 1, "", ""), t0);
    assert_eq!(t.get(r).unwrap().phase, Phase::Calling);
    assert_eq!(
        feed(&mut t, &c.response(180, "INVITE", 1, "callee", ""), t0),
        Some(r)
    );
    assert_eq!(t.id(r).unwrap().remote_tag(), b"callee");
    let s = t.get(r).unwrap();
    assert_eq!(
        (s.phase, s.dialog_state()),
        (Phase::Ringing, DialogState::Early)
    );
    feed(
        &mut t,
        &c.response(
            200,
            "INVITE",
            1,
            "callee",
            "Session-Expires: 1800;refresher=uac\r\n",
        ),
        t0 + secs(5),
    );
    let s = t.get(r).unwrap();
    assert_eq!(
        (s.phase, s.dialog_state()),
        (Phase::Connected, DialogState::Confirmed)
    );
    assert!(s.awaiting_ack);
    assert_eq!(s.deadline, t0 + secs(5 + 32), "64·T1 for the ACK");
    assert_eq!(
        feed(&mut t, &c.request("ACK", 1, "callee", false), t0 + secs(5)),
        Some(r)
    );
    let s = t.get(r).unwrap();
    assert!(!s.awaiting_ack);
    assert_eq!(s.deadline, t0 + secs(5 + 1800), "then the session timer");
    // Another callee tag (a forked branch) is not this dialog.
    assert_eq!(
        feed(&mut t, &c.request("INFO", 2, "other", false), t0 + secs(6)),
        None
    );
    // The callee hangs up: From and To swapped.
    feed(&mut t, &c.request("BYE", 7, "callee", true), t0 + secs(60));
    assert_eq!(t.get(r).unwrap().phase, Phase::Disconnecting);
    feed(
        &mut t,
        &c.response(200, "BYE", 7, "callee", ""),
        t0 + secs(60),
    );
    assert!(t.is_empty());
    let ended = t.poll_event().unwrap();
    assert_eq!(
        (ended.id().remote_tag(), ended.end, ended.last_phase),
        (&b"callee"[..], End::Bye, Phase::Disconnecting)
    );
    assert_eq!(t.stats().created, 1);
    assert!(
        t.index.is_empty() && t.schedule.is_empty(),
        "nothing left behind"
    );
}

#[test]
fn failures_rejection_cancel_and_timeouts() {
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let busy = Call { id: "busy" };
    feed(&mut t, &busy.request("INVITE", 1, "", false), t0);
    feed(&mut t, &busy.response(486, "INVITE", 1, "x", ""), t0);
    assert_eq!(t.poll_event().unwrap().end, End::Rejected(486));

    let cancelled = Call { id: "cancelled" };
    feed(&mut t, &cancelled.request("INVITE", 1, "", false), t0);
    feed(&mut t, &cancelled.response(180, "INVITE", 1, "y", ""), t0);
    feed(&mut t, &cancelled.request("CANCEL", 1, "", false), t0);
    feed(&mut t, &cancelled.response(487, "INVITE", 1, "y", ""), t0);
    let e = t.poll_event().unwrap();
    assert_eq!((e.end, e.last_phase), (End::Cancelled, Phase::Ringing));
    assert!(t.index.is_empty(), "the index goes with the dialog");

    let silent = Call { id: "silent" };
    feed(&mut t, &silent.request("INVITE", 1, "", false), t0);
    t.handle_timeout(t0 + secs(31));
    assert_eq!(t.len(), 1);
    assert_eq!(t.poll_timeout(), Some(t0 + secs(32)));
    t.handle_timeout(t0 + secs(32));
    let e = t.poll_event().unwrap();
    assert_eq!((e.end, e.last_phase), (End::Timeout, Phase::Calling));
    assert_eq!(t.stats().expired, 1);
}

#[test]
fn session_timer_expires_unless_refreshed() {
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let c = Call { id: "timer" };
    feed(&mut t, &c.request("INVITE", 1, "", false), t0);
    let id = feed(
        &mut t,
        &c.response(200, "INVITE", 1, "z", "Session-Expires: 90\r\n"),
        t0,
    )
    .unwrap();
    feed(&mut t, &c.request("ACK", 1, "z", false), t0);
    // A refresh by re-INVITE at 60 s moves the expiry to 150 s.
    feed(&mut t, &c.request("INVITE", 2, "z", false), t0 + secs(60));
    feed(
        &mut t,
        &c.response(200, "INVITE", 2, "z", "Session-Expires: 90\r\n"),
        t0 + secs(60),
    );
    t.handle_timeout(t0 + secs(100));
    assert_eq!(t.get(id).unwrap().phase, Phase::Connected);
    t.handle_timeout(t0 + secs(150));
    let e = t.poll_event().unwrap();
    assert_eq!(
        (e.end, e.last_phase),
        (End::SessionExpired, Phase::Connected)
    );
    // Without Session-Expires, a connected call lasts up to the `connected` limit.
    let limits = Limits {
        connected: secs(600),
        ..Limits::default()
    };
    let mut t = DialogTable::new(100, limits);
    feed(&mut t, &c.request("INVITE", 1, "", false), t0);
    feed(&mut t, &c.response(200, "INVITE", 1, "z", ""), t0);
    feed(&mut t, &c.request("ACK", 1, "z", false), t0);
    t.handle_timeout(t0 + secs(600));
    assert_eq!(t.poll_event().unwrap().end, End::Timeout);
}

#[test]
fn a_2xx_never_acked_ends_the_dialog_after_64_t1() {
    // RFC 3261 §13.3.1.4: without the ACK the callee gives up after 64·T1; a flood of INVITEs
    // answered but never ACKed must not hold dialogs for the `connected` limit (12 h).
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let c = Call { id: "no-ack" };
    feed(&mut t, &c.request("INVITE", 1, "", false), t0);
    let r = feed(&mut t, &c.response(200, "INVITE", 1, "z", ""), t0).unwrap();
    // A re-sent 2xx does not extend it.
    feed(
        &mut t,
        &c.response(200, "INVITE", 1, "z", ""),
        t0 + secs(20),
    );
    t.handle_timeout(t0 + secs(31));
    assert!(t.get(r).is_some());
    t.handle_timeout(t0 + secs(32));
    let e = t.poll_event().unwrap();
    assert_eq!((e.end, e.last_phase), (End::NoAck, Phase::Connected));
    assert_eq!((t.stats().no_ack, t.stats().expired), (1, 1));
    assert!(t.is_empty());
}

#[test]
fn a_full_table_evicts_and_counts() {
    let mut t = DialogTable::new(3, Limits::default());
    let t0 = Instant::now();
    let ids = ["e1", "e2", "e3", "e4"];
    for (i, id) in ids.iter().enumerate() {
        let c = Call { id };
        feed(
            &mut t,
            &c.request("INVITE", 1, "", false),
            t0 + secs(i as u64),
        );
    }
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evicted, 1);
    let e = t.poll_event().unwrap();
    assert_eq!(
        (e.id().call_id(), e.end),
        (&b"e1"[..], End::Evicted),
        "the oldest deadline goes"
    );
}

#[test]
fn inspection_counts_phases_and_backends_and_finds_a_call() {
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let ringing = Call { id: "ring@h" };
    let r = feed(&mut t, &ringing.request("INVITE", 1, "", false), t0).unwrap();
    t.set_route(
        r,
        2,
        crate::sip::peer::Peer::udp("192.0.2.1:5060".parse().unwrap()),
    );
    feed(
        &mut t,
        &ringing.response(180, "INVITE", 1, "callee", ""),
        t0,
    );
    let calling = Call { id: "call@h" };
    feed(
        &mut t,
        &calling.request("INVITE", 1, "", false),
        t0 + secs(1),
    )
    .unwrap();

    assert_eq!(t.phase_counts(), [1, 1, 0, 0]);
    assert_eq!(
        t.backend_counts(),
        vec![0, 0, 1],
        "only calls sent to a backend"
    );
    let found = t.find_call(b"ring@h", t0 + secs(3));
    assert_eq!(
        found,
        vec![inspect::DialogInfo {
            call_id: "ring@h".into(),
            caller_tag: "caller".into(),
            callee_tag: "callee".into(),
            phase: Phase::Ringing,
            backend: Some(2),
            age_ms: 3000,
        }]
    );
    assert_eq!(t.find_call(b"call@h", t0 + secs(1))[0].backend, None);
    assert!(t.find_call(b"other@h", t0).is_empty());
}

#[test]
fn a_deadline_moved_later_leaves_no_early_wake_up_and_nothing_behind() {
    // Calling (32 s) → ringing (Timer C, 181 s) → connected and ACKed (12 h): each move leaves
    // the earlier entry in the schedule's heap, and none of them may be the next wake-up.
    let mut t = DialogTable::new(100, Limits::default());
    let t0 = Instant::now();
    let c = Call { id: "moves" };
    feed(&mut t, &c.request("INVITE", 1, "", false), t0);
    assert_eq!(t.poll_timeout(), Some(t0 + secs(32)));
    feed(&mut t, &c.response(180, "INVITE", 1, "m", ""), t0 + secs(1));
    assert_eq!(t.poll_timeout(), Some(t0 + secs(182)));
    feed(&mut t, &c.response(200, "INVITE", 1, "m", ""), t0 + secs(2));
    feed(&mut t, &c.request("ACK", 1, "m", false), t0 + secs(2));
    assert_eq!(t.poll_timeout(), Some(t0 + secs(2 + 12 * 3600)));
    t.handle_timeout(t0 + secs(3600));
    assert_eq!(t.len(), 1, "no stale deadline ends the call");
    feed(&mut t, &c.request("BYE", 2, "m", false), t0 + secs(3600));
    feed(&mut t, &c.response(200, "BYE", 2, "m", ""), t0 + secs(3600));
    assert!(t.is_empty());
    assert_eq!(t.poll_timeout(), None);
    assert!(t.schedule.is_empty(), "no stale entry left behind");
}
