//! The two-way edge through the proxy core, with a fake clock: registrations with Path and flow
//! tokens, calls from the inside to a registered phone, in-dialog routing by Route set alone (a
//! restarted proxy), what the edge refuses to relay, static routes and DNS, keep-alives, and the
//! answers to requests that do not parse.

use std::time::Duration;

use super::{tests::*, *};
use crate::control::cidr::Cidr;

/// A phone behind NAT: its Contact says 10.0.0.7, its datagrams come from the NAT's binding.
const PHONE: &str = "203.0.113.50:40001";
const REGISTRAR: &str = B1;

fn register(call_id: &str, user: &str, supported_path: bool) -> String {
    let supported = if supported_path {
        "Supported: path, outbound\r\n"
    } else {
        ""
    };
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bK-reg-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r1\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@10.0.0.7:5060>\r\n{supported}\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
}

fn phone_token() -> String {
    FlowKey::new(SECRET)
        .encode(&Flow {
            transport: Transport::Udp,
            peer: addr(PHONE),
            local_port: 5060,
        })
        .as_str()
        .to_string()
}

fn forwarded_to(out: &[Transmit], dest: &str) -> String {
    text(
        out.iter()
            .find(|t| t.dest == addr(dest))
            .unwrap_or_else(|| panic!("nothing to {dest}: {out:?}")),
    )
}

#[test]
fn a_register_from_outside_gets_our_path_with_the_phones_flow() {
    let mut p = proxy(&[B1, B2]);
    let t0 = Instant::now();
    let out = send(&mut p, register("reg-1", "alice", false), PHONE, t0);
    assert_eq!(out.len(), 1, "{out:?}");
    let fwd = text(&out[0]);
    assert_eq!(
        header(&fwd, "Path:"),
        [format!("Path: <sip:{}@192.0.2.1:5060;lr>", phone_token())]
    );
    assert!(
        header(&fwd, "Record-Route:").is_empty(),
        "REGISTER creates no dialog"
    );
    let s = p.stats();
    assert_eq!((s.from_outside, s.routed[RoutedBy::Pool as usize]), (1, 1));
    assert_eq!(
        p.poll_event(),
        Some(ProxyEvent::Forwarded {
            backend: if out[0].dest == addr(B1) { 0 } else { 1 },
            register: true
        })
    );
}

#[test]
fn path_policy() {
    let t0 = Instant::now();
    for (policy, supported, wanted) in [
        (PathPolicy::Always, false, true),
        (PathPolicy::IfSupported, false, false),
        (PathPolicy::IfSupported, true, true),
        (PathPolicy::Off, true, false),
    ] {
        let mut cfg = config();
        cfg.path = policy;
        let mut p = proxy_with(cfg, &[B1]);
        let out = send(&mut p, register("pp", "alice", supported), PHONE, t0);
        let has = !header(&forwarded_to(&out, B1), "Path:").is_empty();
        assert_eq!(has, wanted, "{policy:?} with Supported: path = {supported}");
    }
}

#[test]
fn registrations_of_one_user_reach_one_registrar_whatever_the_call_id() {
    let mut p = proxy(&[B1, B2, "192.0.2.23:5060"]);
    let t0 = Instant::now();
    let mut per_user: HashMap<String, std::collections::HashSet<SocketAddr>> = HashMap::new();
    for user in 0..30 {
        for reg in 0..5 {
            let out = send(
                &mut p,
                register(&format!("u{user}-r{reg}"), &format!("user{user}"), false),
                PHONE,
                t0,
            );
            per_user
                .entry(format!("user{user}"))
                .or_default()
                .insert(out[0].dest.addr);
        }
    }
    assert!(per_user.values().all(|set| set.len() == 1), "{per_user:?}");
    let used: std::collections::HashSet<_> = per_user.values().flatten().collect();
    assert_eq!(used.len(), 3, "users spread over the registrars");
}

/// The registrar delivers a call to the phone: Route from the phone's Path, Request-URI its
/// private Contact. Returns the INVITE as it reaches the phone.
fn call_to_registered_phone(p: &mut Proxy, call_id: &str, t0: Instant) -> String {
    let invite = format!(
        "INVITE sip:alice@10.0.0.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {REGISTRAR};branch=z9hG4bK-k-{call_id}\r\n\
         Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bK-caller-{call_id}\r\n\
         Route: <sip:{}@192.0.2.1:5060;lr>\r\nRecord-Route: <sip:{REGISTRAR};lr>\r\nMax-Forwards: 69\r\n\
         From: <sip:bob@example.com>;tag=bob1\r\nTo: <sip:alice@example.com>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:bob@192.0.2.44:5060>\r\nContent-Length: 0\r\n\r\n",
        phone_token()
    );
    let out = send(p, invite, REGISTRAR, t0);
    forwarded_to(&out, PHONE)
}

#[test]
fn a_call_from_the_inside_reaches_the_phones_nat_binding() {
    let mut p = proxy(&[B1, B2]);
    let t0 = Instant::now();
    let fwd = call_to_registered_phone(&mut p, "in-1", t0);
    assert!(
        fwd.starts_with("INVITE sip:alice@10.0.0.7:5060 SIP/2.0"),
        "{fwd}"
    );
    assert!(header(&fwd, "Route:").is_empty(), "our entry popped: {fwd}");
    // Facing the phone: its token; facing the registrar: plain; then the registrar's own.
    assert_eq!(
        header(&fwd, "Record-Route:"),
        [
            format!("Record-Route: <sip:{}@192.0.2.1:5060;lr>", phone_token()),
            "Record-Route: <sip:192.0.2.1:5060;lr>".to_string(),
            format!("Record-Route: <sip:{REGISTRAR};lr>"),
        ]
    );
    let s = p.stats();
    assert_eq!((s.from_inside, s.routed[RoutedBy::Flow as usize]), (1, 1));
}

/// A BYE along a route set, `routes` written as the sender's UA writes them.
fn bye(from_tag: &str, to_tag: &str, uri: &str, via: &str, routes: &[String]) -> String {
    let mut t = format!(
        "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-bye-{from_tag}\r\nMax-Forwards: 70\r\n"
    );
    for r in routes {
        t.push_str(&format!("Route: {r}\r\n"));
    }
    t.push_str(&format!(
        "From: <sip:x@example.com>;tag={from_tag}\r\nTo: <sip:y@example.com>;tag={to_tag}\r\n\
         Call-ID: after-restart\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ));
    t
}

#[test]
fn in_dialog_requests_need_no_dialog_state_so_a_restarted_node_routes_them() {
    // The route set a call from the phone got (RR: ours facing the backend, ours facing the
    // phone), read back by each side; this proxy never saw the call.
    let mut p = proxy(&[B1, B2]);
    let t0 = Instant::now();
    let facing_phone = format!("<sip:{}@192.0.2.1:5060;lr>", phone_token());
    let facing_inside = "<sip:192.0.2.1:5060;lr>".to_string();
    // The phone hangs up: its route set is the Record-Route reversed.
    let from_phone = bye(
        "a",
        "b",
        "sip:bob@192.0.2.22:5060",
        "10.0.0.7:5060",
        &[facing_phone.clone(), facing_inside.clone()],
    );
    let out = send(&mut p, from_phone, PHONE, t0);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].dest, addr(B2), "to the backend's Contact");
    // The backend hangs up: the Record-Route in order.
    let from_backend = bye(
        "b",
        "a",
        "sip:alice@10.0.0.7:5060",
        B2,
        &[facing_inside, facing_phone],
    );
    let out = send(&mut p, from_backend, B2, t0);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].dest,
        addr(PHONE),
        "to the phone's NAT binding, not 10.0.0.7"
    );
    assert!(header(&text(&out[0]), "Route:").is_empty());
    assert_eq!(answered(&p), 0, "no 481");

    // A node with another secret refuses the tokens (403), and forwards nothing.
    let mut cfg = config();
    cfg.flow_key = FlowKey::new(b"some other cluster's secret");
    let mut other = proxy_with(cfg, &[B1, B2]);
    let routes = [
        "<sip:192.0.2.1:5060;lr>".to_string(),
        format!("<sip:{}@192.0.2.1:5060;lr>", phone_token()),
    ];
    let out = send(
        &mut other,
        bye("b", "a", "sip:alice@10.0.0.7", B2, &routes),
        B2,
        t0,
    );
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("SIP/2.0 403 Forbidden (invalid flow token)"));
    assert_eq!(out[0].dest, addr(B2));
    assert_eq!(other.stats().refused[Refusal::BadToken as usize], 1);
}

#[test]
fn the_edge_is_not_an_open_relay() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let refused = |p: &mut Proxy, msg: String, from: &str, status: &str| {
        let out = send(p, msg, from, t0);
        assert!(
            out.iter().all(|t| t.dest == addr(from)),
            "forwarded somewhere: {out:?}"
        );
        let last = text(out.last().expect("an answer"));
        assert!(last.starts_with(status), "{last}");
    };
    // An outside INVITE routed through us to a foreign host.
    let inv = invite("relay-1", 70).replace(
        "Max-Forwards: 70",
        "Route: <sip:192.0.2.1;lr>, <sip:198.51.100.66;lr>\r\nMax-Forwards: 70",
    );
    refused(&mut p, inv, UAC, "SIP/2.0 403 Forbidden (not a relay)");
    // A forged token, and a real one with a character changed.
    let forged = invite("relay-2", 70).replace(
        "Max-Forwards: 70",
        "Route: <sip:AAECAwQFBgcICQoLDA0ODxAR@192.0.2.1;lr>\r\nMax-Forwards: 70",
    );
    refused(
        &mut p,
        forged,
        UAC,
        "SIP/2.0 403 Forbidden (invalid flow token)",
    );
    let mut t = phone_token().into_bytes();
    t[5] = if t[5] == b'x' { b'y' } else { b'x' };
    let tampered = invite("relay-3", 70).replace(
        "Max-Forwards: 70",
        &format!(
            "Route: <sip:{}@192.0.2.1;lr>\r\nMax-Forwards: 70",
            String::from_utf8(t).unwrap()
        ),
    );
    refused(
        &mut p,
        tampered,
        UAC,
        "SIP/2.0 403 Forbidden (invalid flow token)",
    );
    // An in-dialog request from outside to an outside address.
    let routes = ["<sip:192.0.2.1:5060;lr>".to_string()];
    let b = bye(
        "a",
        "b",
        "sip:victim@198.51.100.66",
        "192.0.2.10:5060",
        &routes,
    );
    refused(&mut p, b, UAC, "SIP/2.0 403 Forbidden (not a relay)");
    let s = p.stats();
    assert_eq!(s.refused[Refusal::Relay as usize], 2);
    assert_eq!(s.refused[Refusal::BadToken as usize], 2);
    assert_eq!(outcome(&p, Outcome::Forwarded), 0);

    // With `domains`, only those.
    let mut cfg = config();
    cfg.policy.domains = vec!["example.com".into()];
    let mut p = proxy_with(cfg, &[B1]);
    let other = invite("dom-1", 70).replace("sip:bob@example.com", "sip:bob@elsewhere.example");
    refused(
        &mut p,
        other,
        UAC,
        "SIP/2.0 403 Forbidden (domain not served here)",
    );
    let ours = send(&mut p, invite("dom-2", 70), UAC, t0);
    assert!(ours.iter().any(|t| t.dest == addr(B1)));
}

#[test]
fn trusted_sources_are_inside() {
    let mut cfg = config();
    cfg.policy.trusted = vec!["192.0.2.40/29".parse::<Cidr>().unwrap()];
    let mut p = proxy_with(cfg, &[B1]);
    let t0 = Instant::now();
    // From a trusted host, an INVITE to an address goes there rather than to the pool.
    let inv = invite("trusted-1", 70).replace("sip:bob@example.com", "sip:bob@192.0.2.60");
    let out = send(&mut p, inv.clone(), "192.0.2.44:5060", t0);
    assert!(
        out.iter().any(|t| t.dest == addr("192.0.2.60:5060")),
        "{out:?}"
    );
    // The same from an untrusted one goes to the pool.
    let out = send(&mut p, inv.replace("trusted-1", "untrusted-1"), UAC, t0);
    assert!(out.iter().any(|t| t.dest == addr(B1)), "{out:?}");
}

fn call_out(call_id: &str, uri: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bK-out-{call_id}\r\nMax-Forwards: 70\r\n\
         From: <sip:pbx@example.com>;tag=p1\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@{B1}>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn calls_out_by_static_route_and_by_dns() {
    let mut cfg = config();
    cfg.policy.routes = vec![target::StaticRoute {
        domain: None,
        prefix: Some("+44".into()),
        destination: "192.0.2.70:5080".parse().unwrap(),
    }];
    let mut p = proxy_with(cfg, &[B1]);
    let t0 = Instant::now();
    // Static: straight there, with Record-Route facing the carrier (outside) carrying its flow.
    let out = send(
        &mut p,
        call_out("st-1", "sip:+442071234567@192.0.2.1"),
        B1,
        t0,
    );
    let fwd = forwarded_to(&out, "192.0.2.70:5080");
    assert_eq!(header(&fwd, "Record-Route:").len(), 2, "{fwd}");
    assert_eq!(p.stats().routed[RoutedBy::Static as usize], 1);

    // DNS: parked until the worker answers; 100 Trying meanwhile.
    let out = send(
        &mut p,
        call_out("dns-1", "sip:+15551234@carrier.example"),
        B1,
        t0,
    );
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("SIP/2.0 100"));
    let out = send(
        &mut p,
        call_out("dns-2", "sip:+15559999@carrier.example"),
        B1,
        t0,
    );
    assert_eq!(out.len(), 1);
    let name = p.poll_query().expect("a query");
    assert_eq!(name.host, "carrier.example");
    assert_eq!(p.poll_query(), None, "one query for both calls");
    p.handle_answer(name, found_80(t0, 10), t0);
    let out: Vec<Transmit> = std::iter::from_fn(|| p.poll_transmit()).collect();
    assert_eq!(
        out.iter()
            .filter(|t| t.dest == addr("192.0.2.80:5060"))
            .count(),
        2,
        "{out:?}"
    );
    assert_eq!(p.stats().routed[RoutedBy::Dns as usize], 2);
    // Cached: the next call goes at once.
    let out = send(
        &mut p,
        call_out("dns-3", "sip:+1555@carrier.example"),
        B1,
        t0,
    );
    assert!(out.iter().any(|t| t.dest == addr("192.0.2.80:5060")));

    // A name that does not exist: 404; a lookup that fails: 503.
    send(&mut p, call_out("dns-4", "sip:x@gone.example"), B1, t0);
    let name = p.poll_query().unwrap();
    p.handle_answer(name, Answer::NoSuchName, t0);
    let out: Vec<Transmit> = std::iter::from_fn(|| p.poll_transmit()).collect();
    assert!(
        text(out.last().unwrap()).starts_with("SIP/2.0 404 Not Found (domain does not resolve)")
    );
    send(&mut p, call_out("dns-5", "sip:x@down.example"), B1, t0);
    let name = p.poll_query().unwrap();
    p.handle_answer(name, Answer::Failed, t0);
    let out: Vec<Transmit> = std::iter::from_fn(|| p.poll_transmit()).collect();
    let last = text(out.last().unwrap());
    assert!(last.starts_with("SIP/2.0 503"), "{last}");
    assert_eq!(header(&last, "Retry-After:").len(), 1);

    // Nothing routes it: 404.
    let out = send(
        &mut p,
        call_out("none-1", "sip:+15551234@192.0.2.1"),
        B1,
        t0,
    );
    assert!(text(out.last().unwrap()).starts_with("SIP/2.0 404 Not Found (no route)"));

    // A SIPS next hop found by DNS: over TLS to 5061 by default, its certificate to be checked
    // for the name it was resolved from (RFC 5922 §4), not for its address.
    send(
        &mut p,
        call_out("tls-1", "sips:+1555@secure.example"),
        B1,
        t0,
    );
    let name = p.poll_query().unwrap();
    assert_eq!(name.host, "secure.example");
    p.handle_answer(name, found_80(t0, 10), t0);
    let out: Vec<Transmit> = std::iter::from_fn(|| p.poll_transmit()).collect();
    let invite = out
        .iter()
        .find(|t| text(t).starts_with("INVITE"))
        .expect("forwarded");
    assert_eq!(invite.dest.transport, Transport::Tls);
    assert!(
        text(invite).starts_with("INVITE sips:") && text(invite).contains("Via: SIP/2.0/TLS "),
        "{}",
        text(invite)
    );
    assert_eq!(
        p.resolved_tls_name(&invite.dest).as_deref(),
        Some("secure.example")
    );
    assert_eq!(p.backend_tls_name(&invite.dest), None, "not a backend");
    assert_eq!(
        p.resolved_tls_name(&Peer::udp(invite.dest.addr)),
        None,
        "UDP checks nothing"
    );
}

#[test]
fn a_cancel_ends_an_invite_still_waiting_for_dns() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let invite = call_out("dns-cancel", "sip:+15551234@carrier.example");
    let out = send(&mut p, invite.clone(), B1, t0);
    assert!(text(&out[0]).starts_with("SIP/2.0 100"), "{out:?}");
    assert_eq!(p.parked(), 1);
    let cancel = invite
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = send(&mut p, cancel, B1, t0 + Duration::from_millis(10));
    let codes: Vec<String> = out.iter().map(|t| text(t)[..11].to_string()).collect();
    assert_eq!(codes, ["SIP/2.0 200", "SIP/2.0 487"], "{out:?}");
    assert!(
        text(&out[1]).contains("CSeq: 1 INVITE"),
        "{}",
        text(&out[1])
    );
    assert_eq!(p.parked(), 0, "nothing waits any more");
    // The answer comes later: nothing goes out for the cancelled INVITE.
    let name = p
        .poll_query()
        .expect("the query went out before the CANCEL");
    p.handle_answer(name, found_80(t0, 10), t0 + Duration::from_millis(20));
    assert_eq!(p.poll_transmit(), None);
    // Every datagram got its one outcome: INVITE 487, CANCEL 200.
    let s = p.stats();
    assert_eq!(s.outcomes.iter().sum::<u64>(), 2, "{s:?}");
}

#[test]
fn subscribe_and_notify_are_record_routed_and_notify_reaches_the_subscriber() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let sub = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bK-sub1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=s1\r\nTo: <sip:bob@example.com>\r\n\
               Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nExpires: 600\r\n\
               Contact: <sip:alice@10.0.0.7:5060>\r\nContent-Length: 0\r\n\r\n";
    let out = send(&mut p, sub.to_string(), PHONE, t0);
    let fwd = forwarded_to(&out, B1);
    let rr = header(&fwd, "Record-Route:");
    assert_eq!(rr.len(), 2, "{fwd}");
    // The notifier's NOTIFY, along the route set from the SUBSCRIBE's Record-Route.
    let routes: Vec<String> = rr
        .iter()
        .map(|l| l.trim_start_matches("Record-Route: ").to_string())
        .collect();
    let mut notify = format!(
        "NOTIFY sip:alice@10.0.0.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bK-n1\r\nMax-Forwards: 70\r\n"
    );
    for r in &routes {
        notify.push_str(&format!("Route: {r}\r\n"));
    }
    notify.push_str(
        "From: <sip:bob@example.com>;tag=n1\r\nTo: <sip:alice@example.com>;tag=s1\r\nCall-ID: sub-1\r\n\
         CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=600\r\n\
         Contact: <sip:bob@192.0.2.21>\r\nContent-Length: 0\r\n\r\n",
    );
    let out = send(&mut p, notify, B1, t0);
    let fwd = forwarded_to(&out, PHONE);
    assert_eq!(
        header(&fwd, "Record-Route:").len(),
        2,
        "NOTIFY may create the dialog"
    );
}

#[test]
fn cancel_after_the_final_response_is_answered_not_forwarded() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let out = send(&mut p, invite("late-cancel", 70), UAC, t0);
    let fwd = forwarded_to(&out, B1);
    send(&mut p, answer(&fwd, 200, "callee"), B1, t0);
    let cancel = invite("late-cancel", 70)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = send(&mut p, cancel, UAC, t0 + Duration::from_millis(10));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].dest, addr(UAC));
    assert!(text(&out[0]).starts_with("SIP/2.0 200"));
}

#[test]
fn keepalives_are_answered() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let mut stun = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend(*b"transaction1");
    p.handle(Bytes::from(stun), addr(PHONE), t0);
    let out: Vec<Transmit> = std::iter::from_fn(|| p.poll_transmit()).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, addr(PHONE));
    assert_eq!(&out[0].payload[..2], &[0x01, 0x01], "Binding success");
    let out = send(&mut p, "\r\n\r\n".to_string(), PHONE, t0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].payload[..], b"\r\n");
    assert!(
        send(&mut p, "\r\n".to_string(), PHONE, t0).is_empty(),
        "a pong is not answered"
    );
    assert_eq!(p.stats().keepalives, 2);
    assert_eq!(outcomes(&p), [("keepalive", 3)], "STUN, ping and pong");
}

#[test]
fn requests_that_do_not_parse_are_answered_when_a_via_can_be_read() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    // 120 extra headers: more than the stack storage, fewer than the limit: forwarded.
    let many: String = (0..120)
        .map(|i| format!("X-Carrier-{i}: value {i}\r\n"))
        .collect();
    let big = invite("many-1", 70).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{many}"),
    );
    let out = send(&mut p, big, UAC, t0);
    let fwd = forwarded_to(&out, B1);
    assert_eq!(header(&fwd, "X-Carrier-").len(), 120);
    // 600: 513.
    let many: String = (0..600)
        .map(|i| format!("X-Carrier-{i}: value {i}\r\n"))
        .collect();
    let huge = invite("many-2", 70).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{many}"),
    );
    let out = send(&mut p, huge, UAC, t0);
    assert_eq!(out.len(), 1);
    let r = text(&out[0]);
    assert!(r.starts_with("SIP/2.0 513 Message Too Large"), "{r}");
    assert_eq!(header(&r, "Call-ID:"), ["Call-ID: many-2"]);
    // Content-Length beyond the datagram (RFC 3261 §18.3): 400.
    let short = invite("cl-1", 70).replace("Content-Length: 0", "Content-Length: 500");
    let out = send(&mut p, short, UAC, t0);
    assert!(
        text(&out[0]).starts_with("SIP/2.0 400 Bad Request (Content-Length larger than the body)")
    );
    // A header line cut in the middle: 400 naming it.
    let cut = invite("cut-1", 70);
    let cut = &cut[..cut.find("Contact:").unwrap() + 12];
    let out = send(&mut p, cut.to_string(), UAC, t0);
    assert!(
        text(&out[0]).starts_with("SIP/2.0 400 Bad Request (incomplete message"),
        "{out:?}"
    );
    // No Via: nothing to answer to.
    let no_via = "INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 99\r\n\r\n";
    assert!(send(&mut p, no_via.to_string(), UAC, t0).is_empty());
    assert_eq!(
        outcomes(&p),
        [
            ("forwarded", 1),
            ("answered_4xx", 2),
            ("answered_5xx", 1),
            ("dropped_unparsable", 1)
        ]
    );
}

#[test]
fn options_for_us_from_the_inside_is_answered_here() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let opt = format!(
        "OPTIONS sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bK-ping\r\nMax-Forwards: 70\r\n\
         From: <sip:b1@x>;tag=1\r\nTo: <sip:192.0.2.1>\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n\r\n"
    );
    let out = send(&mut p, opt, B1, t0);
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("SIP/2.0 200 OK"));
}

#[test]
fn a_request_back_through_another_proxy_with_a_shorter_route_is_a_spiral() {
    // A's BYE goes edge → registrar (which record-routed) → edge: the second time it carries
    // our Via and the same Request-URI, tags and CSeq, but the registrar took its Route entry.
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    let routes = [
        "<sip:192.0.2.1:5060;lr>".to_string(),
        format!("<sip:{REGISTRAR};lr>"),
        "<sip:192.0.2.1:5060;lr>".to_string(),
        format!("<sip:{}@192.0.2.1:5060;lr>", phone_token()),
    ];
    let first = bye(
        "a",
        "b",
        "sip:alice@10.0.0.7:5060",
        "192.0.2.44:5060",
        &routes,
    );
    let out = send(&mut p, first, "192.0.2.44:5060", t0);
    let to_registrar = forwarded_to(&out, REGISTRAR);
    // The registrar pops its entry and sends it back to us, its Via on top.
    let back = to_registrar
        .replacen(&format!("Route: <sip:{REGISTRAR};lr>\r\n"), "", 1)
        .replacen(
            "Via: ",
            &format!("Via: SIP/2.0/UDP {REGISTRAR};branch=z9hG4bK-kam-1\r\nVia: "),
            1,
        );
    let out = send(&mut p, back, REGISTRAR, t0);
    let fwd = forwarded_to(&out, PHONE);
    assert!(fwd.starts_with("BYE sip:alice@10.0.0.7:5060"), "{fwd}");
    assert_eq!(answered(&p), 0, "no 482");
}

#[test]
fn limits_refuse_new_requests_statelessly_and_spare_other_sources() {
    let mut cfg = config();
    cfg.admission = Admission {
        max: 100,
        per_source: 10,
        per_source_bytes: u64::MAX,
    };
    cfg.max_dialogs = 15;
    let mut p = proxy_with(cfg, &[B1]);
    let t0 = Instant::now();
    // A flood of INVITEs from one outside address: ten are admitted, the rest get 503 with
    // Retry-After and leave nothing behind.
    let flood = "203.0.113.66:5060";
    for i in 0..30 {
        let out = send(&mut p, invite(&format!("flood-{i}"), 70), flood, t0);
        if i < 10 {
            assert!(out.iter().any(|t| t.dest == addr(B1)), "{i}: {out:?}");
        } else {
            assert_eq!(out.len(), 1, "{i}");
            let r = text(&out[0]);
            assert!(r.starts_with("SIP/2.0 503 Service Unavailable"), "{r}");
            assert_eq!(header(&r, "Retry-After:").len(), 1);
        }
    }
    assert_eq!(
        p.active_transactions(),
        20,
        "10 server + 10 client transactions"
    );
    assert_eq!(p.stats().overload[Limit::PerSource as usize], 20);
    // A retransmission of an admitted INVITE is answered by its transaction, not refused.
    let again = send(&mut p, invite("flood-3", 70), flood, t0);
    assert!(text(&again[0]).starts_with("SIP/2.0 100"), "{again:?}");
    // Another caller still gets through.
    let out = send(&mut p, invite("legit-1", 70), UAC, t0);
    assert!(out.iter().any(|t| t.dest == addr(B1)));
    // The dialog table holds 15: from a fresh source, the 16th new call is refused.
    for i in 0..4 {
        send(
            &mut p,
            invite(&format!("other-{i}"), 70),
            "198.51.100.9:5060",
            t0,
        );
    }
    assert_eq!(p.active_dialogs(), 15);
    let out = send(&mut p, invite("sixteenth", 70), "198.51.100.10:5060", t0);
    assert!(text(&out[0]).starts_with("SIP/2.0 503"), "{out:?}");
    assert_eq!(p.stats().overload[Limit::Dialogs as usize], 1);
}

#[test]
fn over_the_memory_ceiling_new_requests_are_refused_but_calls_can_end() {
    let mut cfg = config();
    cfg.memory_ceiling = 64 << 20;
    let mut p = proxy_with(cfg, &[B1]);
    let t0 = Instant::now();
    p.set_heap_in_use(32 << 20);
    let out = send(&mut p, invite("under", 70), UAC, t0);
    assert!(out.iter().any(|t| t.dest == addr(B1)), "{out:?}");
    p.set_heap_in_use(65 << 20);
    // A new call: 503 with Retry-After, nothing kept.
    let before = p.active_transactions();
    let out = send(&mut p, invite("over", 70), UAC, t0);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = text(&out[0]);
    assert!(r.starts_with("SIP/2.0 503 Service Unavailable"), "{r}");
    assert_eq!(header(&r, "Retry-After:").len(), 1);
    assert_eq!(p.active_transactions(), before);
    assert_eq!(p.stats().overload[Limit::Memory as usize], 1);
    // The admitted INVITE's retransmission is still its transaction's, and its CANCEL and a BYE
    // (which end calls, and free memory) still go through.
    let again = send(&mut p, invite("under", 70), UAC, t0);
    assert!(text(&again[0]).starts_with("SIP/2.0 100"), "{again:?}");
    let cancel = invite("under", 70)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = send(&mut p, cancel, UAC, t0);
    assert!(
        out.iter()
            .any(|t| t.dest == addr(B1) && text(t).starts_with("CANCEL")),
        "{out:?}"
    );
    let routes = ["<sip:192.0.2.1:5060;lr>".to_string()];
    let out = send(
        &mut p,
        bye(
            "a",
            "b",
            "sip:bob@192.0.2.21:5060",
            "192.0.2.10:5060",
            &routes,
        ),
        UAC,
        t0,
    );
    assert!(out.iter().any(|t| t.dest == addr(B1)), "{out:?}");
    assert_eq!(p.stats().overload[Limit::Memory as usize], 1);
    // Back under the ceiling: new calls again.
    p.set_heap_in_use(63 << 20);
    let out = send(&mut p, invite("after", 70), UAC, t0);
    assert!(out.iter().any(|t| t.dest == addr(B1)), "{out:?}");
}

#[test]
fn every_datagram_has_exactly_one_outcome_and_they_add_up() {
    let mut p = proxy(&[B1]);
    let t0 = Instant::now();
    // A call: INVITE forwarded; the backend's 100 absorbed, 180 and 200 relayed.
    let out = send(&mut p, invite("mix-1", 70), UAC, t0);
    let fwd = forwarded_to(&out, B1);
    for code in [100, 180, 200] {
        send(&mut p, answer(&fwd, code, "callee"), B1, t0);
    }
    // The INVITE retransmitted: absorbed (the transaction answers it).
    send(&mut p, invite("mix-1", 70), UAC, t0);
    // Keep-alives: a ping and a pong.
    send(&mut p, "\r\n\r\n".to_string(), UAC, t0);
    send(&mut p, "\r\n".to_string(), UAC, t0);
    // Junk with no Via; a response that is not ours; a response that does not validate.
    send(&mut p, "HELLO\r\n\r\n".to_string(), UAC, t0);
    let foreign = answer(&fwd, 200, "x").replace("192.0.2.1:5060", "198.51.100.1:5060");
    send(&mut p, foreign, B1, t0);
    send(
        &mut p,
        answer(&fwd, 200, "x").replace("CSeq: 1 INVITE", "CSeq: x INVITE"),
        B1,
        t0,
    );
    // A request answered 400; one refused 403; a CANCEL for nothing (481).
    send(
        &mut p,
        invite("mix-2", 70).replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
        UAC,
        t0,
    );
    let relay = invite("mix-3", 70).replace(
        "Max-Forwards: 70",
        "Route: <sip:198.51.100.66;lr>\r\nMax-Forwards: 70",
    );
    send(&mut p, relay, UAC, t0);
    let cancel = invite("mix-4", 70)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    send(&mut p, cancel, UAC, t0);
    // A call out that waits for DNS: received, no outcome yet...
    send(
        &mut p,
        call_out("mix-5", "sip:+1555@carrier.example"),
        B1,
        t0,
    );
    assert_eq!(p.parked(), 1);
    let mid = outcomes(&p);
    assert!(!mid.iter().any(|(n, _)| *n == "answered_5xx"), "{mid:?}");
    // ...until the name resolves and it is forwarded.
    let name = p.poll_query().unwrap();
    p.handle_answer(name, found_80(t0, 0), t0);
    assert_eq!(p.parked(), 0);
    assert_eq!(
        outcomes(&p),
        [
            ("forwarded", 2),
            ("relayed", 2),
            ("answered_4xx", 3),
            ("absorbed", 2),
            ("keepalive", 2),
            ("dropped_unparsable", 1),
            ("dropped_malformed", 1),
            ("dropped_not_ours", 1),
        ]
    );
    assert_eq!(p.stats().received, 14);
    // The timers' 408 (the carrier never answers) is counted apart, not as an outcome.
    let received = p.stats().received;
    p.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(p.stats().timer_replies, 1);
    assert_eq!(p.stats().received, received);
    outcomes(&p);
}

/// The DNS answer naming 192.0.2.80:5060 (SRV priority `priority`), valid for a minute.
fn found_80(t0: Instant, priority: u16) -> Answer {
    Answer::Found {
        candidates: vec![resolve::Candidate {
            addr: addr("192.0.2.80:5060"),
            priority,
            weight: 1.0,
        }],
        valid_until: t0 + Duration::from_secs(60),
    }
}
