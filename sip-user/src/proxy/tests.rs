//! Calls through the proxy core with a fake clock: a caller, two backends, and the datagrams
//! that pass between them.

use std::time::Duration;

pub(super) use super::*;
pub(super) use crate::backend::Backend;

pub(super) const UAC: &str = "192.0.2.10:5060";
pub(super) const B1: &str = "192.0.2.21:5060";
pub(super) const B2: &str = "192.0.2.22:5060";
pub(super) const ME: &str = "192.0.2.1";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) const SECRET: &[u8] = b"proxy tests flow secret";

pub(super) fn config() -> ProxyConfig {
    ProxyConfig {
        max_dialogs: 1000,
        retry_after: 30,
        ..ProxyConfig::new(Identity::new(ME, 5060), FlowKey::new(SECRET))
    }
}

pub(super) fn proxy(backends: &[&str]) -> Proxy {
    proxy_with(config(), backends)
}

pub(super) fn proxy_with(cfg: ProxyConfig, backends: &[&str]) -> Proxy {
    let pool = Pool::new(
        backends
            .iter()
            .map(|b| Backend::new(addr(b), 1.0, 3, 2))
            .collect(),
    );
    Proxy::new(cfg, pool)
}

pub(super) fn send(p: &mut Proxy, datagram: String, from: &str, now: Instant) -> Vec<Transmit> {
    p.handle(Bytes::from(datagram), addr(from), now);
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

pub(super) fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

pub(super) fn invite(call_id: &str, max_forwards: u8) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-uac-{call_id}\r\nMax-Forwards: {max_forwards}\r\nFrom: <sip:alice@example.com>;tag=caller\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10:5060>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A backend's response to the forwarded request `fwd` (echoing its Vias).
pub(super) fn answer(fwd: &str, code: u16, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} Reason\r\n");
    for line in fwd.lines() {
        let keep = ["Via:", "From:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| line.starts_with(h));
        if keep {
            out.push_str(line);
            out.push_str("\r\n");
        } else if line.starts_with("To:") {
            let tag = if code > 100 && !line.contains("tag=") {
                format!(";tag={to_tag}")
            } else {
                String::new()
            };
            out.push_str(&format!("{line}{tag}\r\n"));
        }
    }
    out.push_str("Contact: <sip:bob@192.0.2.21:5060>\r\nContent-Length: 0\r\n\r\n");
    out
}

/// How many datagrams ended with `o`.
pub(super) fn outcome(p: &Proxy, o: Outcome) -> u64 {
    p.stats().outcomes[o as usize]
}

/// Requests answered here with a final response, any class.
pub(super) fn answered(p: &Proxy) -> u64 {
    use Outcome::*;
    [
        Answered2xx,
        Answered3xx,
        Answered4xx,
        Answered5xx,
        Answered6xx,
    ]
    .iter()
    .map(|&o| outcome(p, o))
    .sum()
}

/// The outcomes that occurred, by name; and checks they add up to what was received.
pub(super) fn outcomes(p: &Proxy) -> Vec<(&'static str, u64)> {
    let s = p.stats();
    assert_eq!(
        s.received,
        s.outcomes.iter().sum::<u64>() + p.parked() as u64,
        "every datagram has one outcome (or waits for DNS): {s:?}"
    );
    Outcome::ALL
        .iter()
        .map(|&o| (o.name(), s.outcomes[o as usize]))
        .filter(|&(_, n)| n > 0)
        .collect()
}

pub(super) fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines().filter(|l| l.starts_with(name)).collect()
}

#[test]
fn a_call_end_to_end_with_the_callee_hanging_up() {
    let mut p = proxy(&[B1, B2]);
    let t0 = Instant::now();
    let out = send(&mut p, invite("call-1", 70), UAC, t0);
    assert_eq!(out.len(), 2, "{out:?}");
    let trying = out.iter().find(|t| t.dest == addr(UAC)).unwrap();
    assert!(text(trying).starts_with("SIP/2.0 100 Trying"));
    let fwd = out.iter().find(|t| t.dest != addr(UAC)).unwrap();
    let backend = fwd.dest.addr;
    let fwd = text(fwd);
    let vias = header(&fwd, "Via:");
    assert!(
        vias[0].starts_with("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sfp0-"),
        "{fwd}"
    );
    assert!(vias[1].contains("z9hG4bK-uac-call-1"));
    assert_eq!(header(&fwd, "Max-Forwards:"), ["Max-Forwards: 69"]);
    // Two entries: the one facing the backend (inside, plain) on top, the one facing the
    // caller (outside) with the caller's flow token.
    let token = FlowKey::new(SECRET).encode(&Flow {
        transport: Transport::Udp,
        peer: addr(UAC),
        local_port: 5060,
    });
    assert_eq!(
        header(&fwd, "Record-Route:"),
        [
            "Record-Route: <sip:192.0.2.1:5060;lr>".to_string(),
            format!("Record-Route: <sip:{}@192.0.2.1:5060;lr>", token.as_str())
        ]
    );

    // 100 from the backend stays here; 180 and 200 go up without our Via.
    assert!(send(&mut p, answer(&fwd, 100, "x"), &backend.to_string(), t0).is_empty());
    for code in [180, 200] {
        let up = send(
            &mut p,
            answer(&fwd, code, "callee"),
            &backend.to_string(),
            t0,
        );
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].dest, addr(UAC));
        let r = text(&up[0]);
        assert!(r.starts_with(&format!("SIP/2.0 {code}")));
        assert_eq!(header(&r, "Via:").len(), 1);
        assert!(!r.contains("192.0.2.1:5060;branch"));
    }
    assert_eq!(p.active_dialogs(), 1);

    // ACK for the 2xx: stateless, along the caller's route set (the Record-Route reversed) to
    // the backend's Contact, our Route entries gone.
    let ack = format!(
        "ACK sip:bob@{backend} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-uac-ack\r\nRoute: <sip:{}@192.0.2.1:5060;lr>, <sip:192.0.2.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=caller\r\nTo: <sip:bob@example.com>;tag=callee\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        token.as_str()
    );
    let out = send(&mut p, ack, UAC, t0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, backend);
    assert!(header(&text(&out[0]), "Route:").is_empty());

    // The callee hangs up: the BYE comes from the backend and goes to the caller.
    let bye = format!(
        "BYE sip:alice@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {backend};branch=z9hG4bK-uas-bye\r\nRoute: <sip:192.0.2.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=callee\r\nTo: <sip:alice@example.com>;tag=caller\r\nCall-ID: call-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = send(
        &mut p,
        bye,
        &backend.to_string(),
        t0 + Duration::from_secs(30),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, addr(UAC));
    let fwd_bye = text(&out[0]);
    let ok = send(
        &mut p,
        answer(&fwd_bye, 200, "caller"),
        UAC,
        t0 + Duration::from_secs(30),
    );
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].dest, backend);
    assert_eq!(p.active_dialogs(), 0, "the 200 to BYE ends the dialog");
    // INVITE, ACK, BYE forwarded; 180, 200 and the BYE's 200 relayed; the backend's 100 taken
    // in (hop by hop): one outcome for each of the 7 datagrams.
    assert_eq!(
        outcomes(&p),
        [("forwarded", 3), ("relayed", 3), ("absorbed", 1)]
    );
}

#[test]
fn calls_spread_over_backends_and_retransmissions_are_absorbed() {
    let mut p = proxy(&[B1, B2]);
    let t0 = Instant::now();
    let mut per_backend: HashMap<SocketAddr, u32> = HashMap::new();
    for i in 0..200 {
        let out = send(&mut p, invite(&format!("spread-{i}"), 70), UAC, t0);
        let fwd = out.iter().find(|t| t.dest != addr(UAC)).unwrap();
        *per_backend.entry(fwd.dest.addr).or_default() += 1;
    }
    assert!(
        per_backend.values().all(|&n| (70..=130).contains(&n)),
        "{per_backend:?}"
    );
    // The same INVITE again: the server transaction answers with its last response (100).
    let again = send(
        &mut p,
        invite("spread-0", 70),
        UAC,
        t0 + Duration::from_millis(300),
    );
    assert_eq!(again.len(), 1);
    assert!(text(&again[0]).starts_with("SIP/2.0 100"));
}

#[test]
fn local_answers_503_483_400() {
    let t0 = Instant::now();
    let mut p = proxy(&[B1]);
    Arc::make_mut(&mut p.pool).backends[0].draining = true;
    let out = send(&mut p, invite("none-up", 70), UAC, t0);
    let last = text(out.last().unwrap());
    assert!(last.starts_with("SIP/2.0 503"), "{last}");
    assert_eq!(header(&last, "Retry-After:"), ["Retry-After: 30"]);
    assert_eq!(p.stats().no_backend, 1);

    let mut p = proxy(&[B1]);
    let out = send(&mut p, invite("hops", 0), UAC, t0);
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("SIP/2.0 483 Too Many Hops"));

    let bad = invite("bad", 70).replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let out = send(&mut p, bad, UAC, t0);
    assert!(text(&out[0]).starts_with("SIP/2.0 400 Bad Request (CSeq method does not match"));
    assert_eq!(outcomes(&p), [("answered_4xx", 2)]);
}

#[test]
fn cancel_before_answer() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let out = send(&mut p, invite("cancel-1", 70), UAC, t0);
    let fwd = text(out.iter().find(|t| t.dest == addr(B1)).unwrap());
    send(&mut p, answer(&fwd, 180, "callee"), B1, t0);
    let cancel = invite("cancel-1", 70)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = send(&mut p, cancel, UAC, t0 + Duration::from_secs(1));
    assert_eq!(out.len(), 2, "{out:?}");
    let ok = out.iter().find(|t| t.dest == addr(UAC)).unwrap();
    assert!(text(ok).starts_with("SIP/2.0 200") && text(ok).contains("CSeq: 1 CANCEL"));
    let onward = text(out.iter().find(|t| t.dest == addr(B1)).unwrap());
    assert!(onward.starts_with("CANCEL sip:bob@example.com SIP/2.0"));
    assert_eq!(
        header(&onward, "Via:")[0],
        header(&fwd, "Via:")[0],
        "the INVITE's branch"
    );
    // The backend ends the INVITE with 487: ACKed by our client transaction, relayed up.
    let out = send(
        &mut p,
        answer(&fwd, 487, "callee"),
        B1,
        t0 + Duration::from_secs(1),
    );
    let to_backend: Vec<String> = out
        .iter()
        .filter(|t| t.dest == addr(B1))
        .map(text)
        .collect();
    assert!(
        to_backend.iter().any(|m| m.starts_with("ACK ")),
        "{to_backend:?}"
    );
    assert!(
        out.iter()
            .any(|t| t.dest == addr(UAC) && text(t).starts_with("SIP/2.0 487"))
    );
    assert_eq!(p.active_dialogs(), 0);
}

#[test]
fn a_silent_backend_gets_408_upstream() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    send(&mut p, invite("silent", 70), UAC, t0);
    let mut to_uac = Vec::new();
    for _ in 0..100 {
        let Some(at) = p.poll_timeout() else { break };
        if at > t0 + Duration::from_secs(40) {
            break;
        }
        p.handle_timeout(at);
        to_uac.extend(
            std::iter::from_fn(|| p.poll_transmit())
                .filter(|t| t.dest == addr(UAC))
                .map(|t| text(&t)),
        );
    }
    assert!(
        to_uac.iter().any(|m| m.starts_with("SIP/2.0 408")),
        "{to_uac:?}"
    );
}

#[test]
fn responses_not_for_us_and_unknown_dialogs() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let foreign = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n\r\n";
    assert!(send(&mut p, foreign.to_string(), B1, t0).is_empty());
    assert_eq!(outcome(&p, Outcome::DroppedNotOurs), 1);
    let bye = "BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-nodialog\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=caller\r\nTo: <sip:bob@example.com>;tag=nobody\r\nCall-ID: unknown\r\nCSeq: 2 BYE\r\n\r\n";
    let out = send(&mut p, bye.to_string(), UAC, t0);
    assert!(text(&out[0]).starts_with("SIP/2.0 481"));
}

#[test]
fn the_senders_via_gets_received_and_rport() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    // Behind a NAT: the Via says 10.0.0.5, the datagram came from 192.0.2.10:40123.
    let inv = invite("nat-1", 70).replace(
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-uac-nat-1",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-uac-nat-1",
    );
    let out = send(&mut p, inv, "192.0.2.10:40123", t0);
    let fwd = text(out.iter().find(|t| t.dest == addr(B1)).unwrap());
    assert_eq!(
        header(&fwd, "Via:")[1],
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-nat-1;received=192.0.2.10;rport=40123",
        "{fwd}"
    );
    let trying = out.iter().find(|t| t.dest != addr(B1)).unwrap();
    assert_eq!(
        trying.dest,
        addr("192.0.2.10:40123"),
        "answered where it came from"
    );

    // A sender whose Via is its source address and who did not ask for rport: untouched.
    let out = send(&mut p, invite("plain-1", 70), UAC, t0);
    let fwd = text(out.iter().find(|t| t.dest == addr(B1)).unwrap());
    assert_eq!(
        header(&fwd, "Via:")[1],
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-uac-plain-1"
    );
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop_and_a_changed_one_a_spiral() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let out = send(&mut p, invite("loop-1", 70), UAC, t0);
    let fwd = text(out.iter().find(|t| t.dest == addr(B1)).unwrap());
    // The backend sends it straight back to us (with its own Via on top).
    let back = fwd.replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bK-b1-loop\r\nVia: ",
        1,
    );
    let out = send(&mut p, back.clone(), B1, t0);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        text(&out[0]).starts_with("SIP/2.0 482 Loop Detected"),
        "{}",
        text(&out[0])
    );
    assert_eq!(out[0].dest, addr(B1));

    // Same request with a new Request-URI (the backend retargeted it): a spiral, forwarded.
    let spiral = back.replacen(
        "INVITE sip:bob@example.com",
        "INVITE sip:carol@192.0.2.30",
        1,
    );
    let out = send(&mut p, spiral, B1, t0);
    assert!(
        out.iter().any(|t| t.dest == addr("192.0.2.30:5060")
            && text(t).starts_with("INVITE sip:carol@192.0.2.30")),
        "{out:?}"
    );
}
