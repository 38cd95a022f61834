//! The four state machines driven through the layer with a fake clock (a start `Instant` plus
//! offsets): retransmission schedules, lost and duplicated messages, RFC 2543 matching, CANCEL.

use std::time::Duration;

use super::*;
use crate::sip::{Header, parse};

const UAC: &str = "192.0.2.10:5060";
const UAS: &str = "192.0.2.20:5060";

fn addr(s: &str) -> Peer {
    Peer::udp(s.parse().unwrap())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(method: &str, branch: &str, cseq_method: &str, to_tag: &str) -> Bytes {
    let via = if branch.is_empty() {
        "SIP/2.0/UDP 192.0.2.10:5060".to_string()
    } else {
        format!("SIP/2.0/UDP 192.0.2.10:5060;branch={branch}")
    };
    Bytes::from(format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>{to_tag}\r\nCall-ID: call-1@example.com\r\nCSeq: 1 {cseq_method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn response(code: u16, branch: &str, cseq_method: &str) -> Bytes {
    Bytes::from(format!(
        "SIP/2.0 {code} Reason\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: call-1@example.com\r\nCSeq: 1 {cseq_method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn feed(layer: &mut TransactionLayer, datagram: &Bytes, from: &str, now: Instant) {
    let mut h = [Header::EMPTY; 32];
    let Ok(Parsed::Message(m)) = parse(datagram, &mut h) else {
        panic!("test message must parse")
    };
    layer.handle(&m, datagram, addr(from), now).unwrap();
}

fn transmits(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

fn events(layer: &mut TransactionLayer) -> Vec<Event> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Runs the clock to `until` (bounded), firing timers; returns the offsets of transmissions.
fn run_until(layer: &mut TransactionLayer, t0: Instant, until: Duration) -> Vec<Duration> {
    let mut sent = Vec::new();
    for _ in 0..1000 {
        let Some(at) = layer.poll_timeout() else {
            break;
        };
        if at > t0 + until {
            break;
        }
        layer.handle_timeout(at);
        for _ in transmits(layer) {
            sent.push(at - t0);
        }
    }
    sent
}

fn request_event_key(evs: &[Event]) -> Key {
    evs.iter()
        .find_map(|e| match e {
            Event::Request { key, .. } => Some(*key),
            _ => None,
        })
        .expect("a Request event")
}

#[test]
fn client_invite_retransmits_with_doubling_and_times_out_after_64_t1() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let key = l
        .send_request(request("INVITE", "z9hG4bKc1", "INVITE", ""), addr(UAS), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.state(&key).as_deref(), Some("Calling"));
    let sent = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(sent, [500, 1500, 3500, 7500, 15500, 31500].map(ms));
    let evs = events(&mut l);
    assert!(
        matches!(evs[..], [Event::Timeout { .. }, Event::Terminated { .. }]),
        "{evs:?}"
    );
    assert!(l.is_empty());
    assert_eq!(l.stats().timeouts, 1);
}

#[test]
fn client_invite_non_2xx_is_acked_and_retransmissions_absorbed() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let key = l
        .send_request(request("INVITE", "z9hG4bKc2", "INVITE", ""), addr(UAS), t0)
        .unwrap();
    transmits(&mut l);
    // The first 100 Trying is lost; a retransmission goes out at T1; then 100 arrives.
    assert_eq!(run_until(&mut l, t0, ms(600)), [ms(500)]);
    feed(
        &mut l,
        &response(100, "z9hG4bKc2", "INVITE"),
        UAS,
        t0 + ms(700),
    );
    assert_eq!(l.state(&key).as_deref(), Some("Proceeding"));
    assert!(
        run_until(&mut l, t0, Duration::from_secs(10)).is_empty(),
        "1xx stops timer A"
    );
    feed(
        &mut l,
        &response(486, "z9hG4bKc2", "INVITE"),
        UAS,
        t0 + Duration::from_secs(10),
    );
    let acks = transmits(&mut l);
    assert_eq!(acks.len(), 1);
    assert!(
        acks[0]
            .payload
            .starts_with(b"ACK sip:bob@example.com SIP/2.0\r\n")
    );
    assert_eq!(acks[0].dest, addr(UAS));
    let passed = events(&mut l)
        .iter()
        .filter(|e| matches!(e, Event::Response { .. }))
        .count();
    assert_eq!(passed, 2, "100 and 486 go up");
    // A duplicated 486: ACKed again, not passed up.
    feed(
        &mut l,
        &response(486, "z9hG4bKc2", "INVITE"),
        UAS,
        t0 + Duration::from_secs(11),
    );
    assert_eq!(transmits(&mut l).len(), 1);
    assert!(events(&mut l).is_empty());
    assert_eq!(l.state(&key).as_deref(), Some("Completed"));
    // Timer D: 32 s.
    run_until(&mut l, t0, Duration::from_secs(41));
    assert_eq!(l.state(&key).as_deref(), Some("Completed"));
    run_until(&mut l, t0, Duration::from_secs(43));
    assert_eq!(l.state(&key), None);
}

#[test]
fn client_invite_2xx_goes_to_accepted_and_every_2xx_goes_up() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let key = l
        .send_request(request("INVITE", "z9hG4bKc3", "INVITE", ""), addr(UAS), t0)
        .unwrap();
    feed(
        &mut l,
        &response(200, "z9hG4bKc3", "INVITE"),
        UAS,
        t0 + ms(100),
    );
    feed(
        &mut l,
        &response(200, "z9hG4bKc3", "INVITE"),
        UAS,
        t0 + ms(600),
    );
    assert_eq!(l.state(&key).as_deref(), Some("Accepted"));
    let ups = events(&mut l)
        .iter()
        .filter(|e| matches!(e, Event::Response { .. }))
        .count();
    assert_eq!(ups, 2, "the TU ACKs each 2xx itself (RFC 6026)");
    assert_eq!(
        transmits(&mut l).len(),
        1,
        "no ACK from the transaction for a 2xx"
    );
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty(), "timer M");
}

#[test]
fn client_non_invite_caps_retransmissions_at_t2() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    l.send_request(
        request("OPTIONS", "z9hG4bKc4", "OPTIONS", ""),
        addr(UAS),
        t0,
    )
    .unwrap();
    transmits(&mut l);
    let sent = run_until(&mut l, t0, Duration::from_secs(40));
    let expect: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(sent, expect);
    assert!(
        events(&mut l)
            .iter()
            .any(|e| matches!(e, Event::Timeout { .. }))
    );
}

#[test]
fn client_non_invite_completes_and_absorbs_duplicates_until_timer_k() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let key = l
        .send_request(request("BYE", "z9hG4bKc5", "BYE", ";tag=b1"), addr(UAS), t0)
        .unwrap();
    transmits(&mut l);
    // Two transmissions lost; the third gets through.
    assert_eq!(run_until(&mut l, t0, ms(2000)), [ms(500), ms(1500)]);
    feed(
        &mut l,
        &response(200, "z9hG4bKc5", "BYE"),
        UAS,
        t0 + ms(2000),
    );
    feed(
        &mut l,
        &response(200, "z9hG4bKc5", "BYE"),
        UAS,
        t0 + ms(2100),
    );
    let ups = events(&mut l)
        .iter()
        .filter(|e| matches!(e, Event::Response { .. }))
        .count();
    assert_eq!(ups, 1);
    assert_eq!(l.state(&key).as_deref(), Some("Completed"));
    assert!(run_until(&mut l, t0, ms(8000)).is_empty());
    assert!(l.is_empty(), "timer K = T4");
}

#[test]
fn server_invite_non_2xx_retransmits_until_ack_then_confirmed() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let invite = request("INVITE", "z9hG4bKs1", "INVITE", "");
    feed(&mut l, &invite, UAC, t0);
    let key = request_event_key(&events(&mut l));
    feed(&mut l, &invite, UAC, t0 + ms(10));
    assert!(transmits(&mut l).is_empty(), "nothing to repeat yet");
    l.respond(&key, 100, response(100, "z9hG4bKs1", "INVITE"), t0 + ms(20))
        .unwrap();
    feed(&mut l, &invite, UAC, t0 + ms(500));
    let sent = transmits(&mut l);
    assert_eq!(
        sent.len(),
        2,
        "100, then 100 again for the retransmitted INVITE"
    );
    assert!(
        sent.iter()
            .all(|t| t.dest == addr(UAC) && t.payload.starts_with(b"SIP/2.0 100"))
    );
    l.respond(
        &key,
        486,
        response(486, "z9hG4bKs1", "INVITE"),
        t0 + ms(1000),
    )
    .unwrap();
    transmits(&mut l);
    // Timer G: T1, 2T1, 4T1, then capped at T2.
    let offsets: Vec<Duration> = run_until(&mut l, t0, ms(16000))
        .into_iter()
        .map(|d| d - ms(1000))
        .collect();
    assert_eq!(offsets, [500, 1500, 3500, 7500, 11500].map(ms));
    feed(
        &mut l,
        &request("ACK", "z9hG4bKs1", "ACK", ";tag=b1"),
        UAC,
        t0 + ms(16000),
    );
    assert_eq!(l.state(&key).as_deref(), Some("Confirmed"));
    assert!(
        events(&mut l)
            .iter()
            .all(|e| !matches!(e, Event::Ack { .. })),
        "ACK for non-2xx is absorbed"
    );
    feed(
        &mut l,
        &request("ACK", "z9hG4bKs1", "ACK", ";tag=b1"),
        UAC,
        t0 + ms(16100),
    );
    assert!(run_until(&mut l, t0, ms(22000)).is_empty());
    assert!(l.is_empty(), "timer I = T4");
}

#[test]
fn server_invite_without_ack_times_out_on_timer_h() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    feed(
        &mut l,
        &request("INVITE", "z9hG4bKs2", "INVITE", ""),
        UAC,
        t0,
    );
    let key = request_event_key(&events(&mut l));
    l.respond(&key, 503, response(503, "z9hG4bKs2", "INVITE"), t0)
        .unwrap();
    run_until(&mut l, t0, Duration::from_secs(33));
    let evs = events(&mut l);
    assert!(
        matches!(evs[..], [Event::Timeout { .. }, Event::Terminated { .. }]),
        "{evs:?}"
    );
}

#[test]
fn server_invite_2xx_passes_the_ack_on_and_absorbs_retransmitted_invites() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let invite = request("INVITE", "z9hG4bKs3", "INVITE", "");
    feed(&mut l, &invite, UAC, t0);
    let key = request_event_key(&events(&mut l));
    l.respond(&key, 200, response(200, "z9hG4bKs3", "INVITE"), t0)
        .unwrap();
    assert_eq!(l.state(&key).as_deref(), Some("Accepted"));
    transmits(&mut l);
    feed(&mut l, &invite, UAC, t0 + ms(100));
    assert!(
        transmits(&mut l).is_empty(),
        "the TU retransmits 2xx, not the transaction"
    );
    feed(
        &mut l,
        &request("ACK", "z9hG4bKs3", "ACK", ";tag=b1"),
        UAC,
        t0 + ms(200),
    );
    assert!(
        events(&mut l)
            .iter()
            .any(|e| matches!(e, Event::Ack { .. }))
    );
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty(), "timer L");
}

#[test]
fn ack_for_2xx_with_its_own_branch_goes_to_the_tu() {
    let mut l = TransactionLayer::new(Timers::default());
    feed(
        &mut l,
        &request("ACK", "z9hG4bKother", "ACK", ";tag=b1"),
        UAC,
        Instant::now(),
    );
    assert!(matches!(events(&mut l)[..], [Event::Ack { .. }]));
    assert!(l.is_empty());
}

#[test]
fn server_non_invite_answers_retransmissions_from_the_last_response() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKs4", "BYE", ";tag=b1");
    feed(&mut l, &bye, UAC, t0);
    let key = request_event_key(&events(&mut l));
    feed(&mut l, &bye, UAC, t0 + ms(500));
    assert!(
        transmits(&mut l).is_empty(),
        "Trying: retransmissions discarded"
    );
    assert!(events(&mut l).is_empty(), "and not passed up again");
    l.respond(&key, 200, response(200, "z9hG4bKs4", "BYE"), t0 + ms(600))
        .unwrap();
    feed(&mut l, &bye, UAC, t0 + ms(1500));
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].payload, sent[1].payload);
    assert_eq!(l.stats().matched, 2);
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty(), "timer J");
}

#[test]
fn rfc2543_matching_without_a_branch() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    let invite = request("INVITE", "", "INVITE", "");
    feed(&mut l, &invite, UAC, t0);
    let key = request_event_key(&events(&mut l));
    assert_eq!(key.kind, Kind::Rfc2543);
    l.respond(&key, 486, response(486, "", "INVITE"), t0)
        .unwrap();
    feed(&mut l, &invite, UAC, t0 + ms(100));
    assert_eq!(
        transmits(&mut l).len(),
        2,
        "486, and 486 again for the retransmission"
    );
    // The ACK has the To tag of the response and CSeq method ACK, and still matches.
    feed(
        &mut l,
        &request("ACK", "", "ACK", ";tag=b1"),
        UAC,
        t0 + ms(200),
    );
    assert_eq!(l.state(&key).as_deref(), Some("Confirmed"));
    // The magic cookie alone is not a branch (RFC 4475 §3.2.1).
    feed(
        &mut l,
        &request("OPTIONS", "z9hG4bK", "OPTIONS", ""),
        UAC,
        t0,
    );
    let k = request_event_key(&events(&mut l));
    assert_eq!(k.kind, Kind::Rfc2543);
}

#[test]
fn cancel_has_its_own_transaction_and_finds_its_invite() {
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    feed(
        &mut l,
        &request("INVITE", "z9hG4bKs5", "INVITE", ""),
        UAC,
        t0,
    );
    let invite_key = request_event_key(&events(&mut l));
    feed(
        &mut l,
        &request("CANCEL", "z9hG4bKs5", "CANCEL", ""),
        UAC,
        t0 + ms(50),
    );
    let cancel_key = request_event_key(&events(&mut l));
    assert_ne!(cancel_key, invite_key);
    assert_eq!(cancel_key.cancelled_invite(), Some(invite_key));
    assert_eq!(invite_key.cancelled_invite(), None);
    assert_eq!(l.len(), 2);
}

#[test]
fn stray_responses_are_reported() {
    let mut l = TransactionLayer::new(Timers::default());
    feed(
        &mut l,
        &response(200, "z9hG4bKnobody", "INVITE"),
        UAS,
        Instant::now(),
    );
    assert!(matches!(events(&mut l)[..], [Event::StrayResponse { .. }]));
}

#[test]
fn configurable_t1() {
    let timers = Timers {
        t1: ms(100),
        ..Timers::default()
    };
    let mut l = TransactionLayer::new(timers);
    let t0 = Instant::now();
    l.send_request(request("INVITE", "z9hG4bKc9", "INVITE", ""), addr(UAS), t0)
        .unwrap();
    transmits(&mut l);
    let sent = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(
        sent,
        [100, 300, 700, 1500, 3100, 6300].map(ms),
        "timer B = 6.4 s"
    );
}

#[test]
fn admission_limits_new_requests_not_retransmissions() {
    let mut l = TransactionLayer::new(Timers::default()).with_admission(Admission {
        max: 3,
        per_source: 2,
        per_source_bytes: u64::MAX,
    });
    let t0 = Instant::now();
    let opts = |n: u32| request("OPTIONS", &format!("z9hG4bKadm{n}"), "OPTIONS", "");
    let from = |s: &str| -> Peer { Peer::udp(s.parse().unwrap()) };
    let try_feed = |l: &mut TransactionLayer, n: u32, src: &str, exempt: bool| {
        let datagram = opts(n);
        let mut h = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(&datagram, &mut h) else {
            panic!()
        };
        let via = m.top_via().unwrap().unwrap();
        l.handle_from(&m, Some(&via), &datagram, from(src), exempt, t0)
    };
    assert_eq!(try_feed(&mut l, 1, "198.51.100.1:5060", false), Ok(()));
    assert_eq!(try_feed(&mut l, 2, "198.51.100.1:5061", false), Ok(()));
    // A third from the same address: over its share, and nothing was created.
    assert_eq!(
        try_feed(&mut l, 3, "198.51.100.1:5062", false),
        Err(TransactionError::Overloaded(Overload::Source))
    );
    assert_eq!(l.len(), 2);
    // The same request again is a retransmission: always handled.
    assert_eq!(try_feed(&mut l, 1, "198.51.100.1:5060", false), Ok(()));
    // An exempt source counts toward the total only.
    assert_eq!(try_feed(&mut l, 4, "198.51.100.1:5063", true), Ok(()));
    assert_eq!(
        try_feed(&mut l, 5, "192.0.2.7:5060", false),
        Err(TransactionError::Overloaded(Overload::Transactions))
    );
    // Answered and expired (Timer J), they make room again.
    answer_all_and_expire(&mut l, t0);
    assert_eq!(try_feed(&mut l, 6, "198.51.100.1:5060", false), Ok(()));
}

#[test]
fn a_source_of_large_requests_meets_its_share_of_bytes() {
    // Made large by a long To parameter.
    let opts = |n: u32, pad: &str| {
        request(
            "OPTIONS",
            &format!("z9hG4bKbig{n}"),
            "OPTIONS",
            &format!(";pad={pad}"),
        )
    };
    let size = opts(0, &"x".repeat(1000)).len() as u64;
    let mut l = TransactionLayer::new(Timers::default()).with_admission(Admission {
        max: 100,
        per_source: 100,
        per_source_bytes: 3 * size,
    });
    let t0 = Instant::now();
    let feed = |l: &mut TransactionLayer, n: u32, body: &str, src: &str| {
        let datagram = opts(n, body);
        let mut h = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(&datagram, &mut h) else {
            panic!()
        };
        let via = m.top_via().unwrap().unwrap();
        l.handle_from(
            &m,
            Some(&via),
            &datagram,
            Peer::udp(src.parse().unwrap()),
            false,
            t0,
        )
    };
    let big = "x".repeat(1000);
    for n in 0..3 {
        assert_eq!(feed(&mut l, n, &big, "198.51.100.1:5060"), Ok(()));
    }
    assert_eq!(
        feed(&mut l, 3, &big, "198.51.100.1:5060"),
        Err(TransactionError::Overloaded(Overload::SourceBytes)),
        "a fourth large request is over the share"
    );
    assert_eq!(
        feed(&mut l, 4, &big, "198.51.100.2:5060"),
        Ok(()),
        "another source"
    );
    // The share comes back as the transactions end.
    answer_all_and_expire(&mut l, t0);
    assert_eq!(feed(&mut l, 5, &big, "198.51.100.1:5060"), Ok(()));
}

/// Answers every new OPTIONS 200 and runs the clock past Timer J: the layer is empty.
fn answer_all_and_expire(l: &mut TransactionLayer, t0: Instant) {
    for e in events(l) {
        if let Event::Request { key, .. } = e {
            l.respond(&key, 200, response(200, "x", "OPTIONS"), t0)
                .unwrap();
        }
    }
    run_until(l, t0, Duration::from_secs(70));
    assert!(l.is_empty());
}

/// Over TCP nothing is retransmitted (timers A, E, G off) and the lingering states end at
/// once (timers D, I, J, K zero, RFC 3261 Table 4); the transaction timeouts still hold.
#[test]
fn over_a_reliable_transport_nothing_is_retransmitted_and_nothing_lingers() {
    let tcp = |s: &str| Peer::new(crate::sip::peer::Transport::Tcp, s.parse().unwrap());
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    // Client INVITE: no timer A; silence still ends it at timer B.
    l.send_request(request("INVITE", "z9hG4bKr1", "INVITE", ""), tcp(UAS), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert!(run_until(&mut l, t0, Duration::from_secs(40)).is_empty());
    assert!(matches!(
        events(&mut l)[..],
        [Event::Timeout { .. }, Event::Terminated { .. }]
    ));
    // Client non-INVITE: no timer E; a final response ends it at once (K = 0).
    l.send_request(request("OPTIONS", "z9hG4bKr2", "OPTIONS", ""), tcp(UAS), t0)
        .unwrap();
    transmits(&mut l);
    assert!(run_until(&mut l, t0, ms(5000)).is_empty());
    let mut h = [Header::EMPTY; 32];
    let resp = response(200, "z9hG4bKr2", "OPTIONS");
    let Ok(Parsed::Message(m)) = parse(&resp, &mut h) else {
        panic!()
    };
    l.handle(&m, &resp, tcp(UAS), t0 + ms(10)).unwrap();
    l.handle_timeout(t0 + ms(10));
    assert!(l.is_empty(), "timer K is zero");
    events(&mut l);
    // Server INVITE answered 486: no timer G; the ACK ends it at once (I = 0).
    let invite = request("INVITE", "z9hG4bKr3", "INVITE", "");
    let Ok(Parsed::Message(m)) = parse(&invite, &mut h) else {
        panic!()
    };
    l.handle(&m, &invite, tcp(UAC), t0).unwrap();
    let key = request_event_key(&events(&mut l));
    l.respond(&key, 486, response(486, "z9hG4bKr3", "INVITE"), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert!(run_until(&mut l, t0, ms(20_000)).is_empty(), "no timer G");
    let ack = request("ACK", "z9hG4bKr3", "ACK", ";tag=b1");
    let Ok(Parsed::Message(m)) = parse(&ack, &mut h) else {
        panic!()
    };
    l.handle(&m, &ack, tcp(UAC), t0 + ms(20_000)).unwrap();
    l.handle_timeout(t0 + ms(20_000));
    assert!(l.is_empty(), "timer I is zero");
    // Server non-INVITE: its final response ends it at once (J = 0).
    let options = request("OPTIONS", "z9hG4bKr4", "OPTIONS", "");
    let Ok(Parsed::Message(m)) = parse(&options, &mut h) else {
        panic!()
    };
    l.handle(&m, &options, tcp(UAC), t0).unwrap();
    let key = request_event_key(&events(&mut l));
    l.respond(&key, 200, response(200, "z9hG4bKr4", "OPTIONS"), t0)
        .unwrap();
    l.handle_timeout(t0);
    assert!(l.is_empty(), "timer J is zero");
}

#[test]
fn a_deadline_moved_later_leaves_no_early_wake_up() {
    // Timer A's next retransmission (T1) is dropped when the 100 arrives: the next wake-up is
    // Timer B (64*T1), with no stop at T1 on the way.
    let mut l = TransactionLayer::new(Timers::default());
    let t0 = Instant::now();
    for i in 0..3 {
        let branch = format!("z9hG4bKlate{i}");
        l.send_request(request("INVITE", &branch, "INVITE", ""), addr(UAS), t0)
            .unwrap();
        assert_eq!(l.poll_timeout(), Some(t0 + ms(500)));
        feed(&mut l, &response(100, &branch, "INVITE"), UAS, t0 + ms(10));
    }
    transmits(&mut l);
    events(&mut l);
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    l.handle_timeout(t0 + ms(31_999));
    assert!(transmits(&mut l).is_empty() && events(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    l.handle_timeout(t0 + ms(32_000));
    assert_eq!(events(&mut l).len(), 6, "three timeouts, three ends");
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}
