//! Bytes per call in the proxy core, measured: a counting allocator (the `cap` crate) around a worker's `Proxy`
//! carrying 5,000 complete calls (INVITE, 100, 180, 200, ACK, BYE, 200, typical sizes) at one
//! instant of a fake clock, so every transaction is still in its RFC 6026 / Timer J window:
//! the state a steady load keeps per call for 32 s. Then the clock runs out and everything must
//! be given back. Printed for the closing note and bounded so a regression shows. One test, so
//! nothing else allocates in between.

use std::{
    alloc::System,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cap::Cap;
use sip_user::{
    backend::{Backend, Pool},
    proxy::{Proxy, ProxyConfig, flow::FlowKey, rewrite::Identity},
};

/// The live heap, by the same maintained wrapper the daemon counts its heap with.
#[global_allocator]
static GLOBAL: Cap<System> = Cap::new(System, usize::MAX);

fn live_bytes() -> isize {
    GLOBAL.allocated() as isize
}

const CALLER: &str = "203.0.113.10:5060";
const BACKEND: &str = "192.0.2.21:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxy() -> Proxy {
    let cfg = ProxyConfig::new(
        Identity::new("192.0.2.1", 5060),
        FlowKey::new(b"proxy memory test secret"),
    );
    Proxy::new(cfg, Pool::new(vec![Backend::new(addr(BACKEND), 1.0, 3, 2)]))
}

fn send(p: &mut Proxy, msg: &str, from: &str, now: Instant) -> Vec<String> {
    p.handle(Bytes::copy_from_slice(msg.as_bytes()), addr(from), now);
    while p.poll_event().is_some() {} // the worker turns these into metrics
    std::iter::from_fn(|| p.poll_transmit())
        .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
        .collect()
}

/// The backend's answer to the forwarded request `fwd`, echoing its Vias (and its
/// Record-Route for the INVITE's responses).
fn answer(fwd: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in fwd.lines() {
        let copy = ["Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:"]
            .iter()
            .any(|h| line.starts_with(h));
        if copy {
            out.push_str(line);
            out.push_str("\r\n");
        } else if line.starts_with("To:") {
            let tag = if code > 100 && !line.contains("tag=") {
                ";tag=b4c9e1f0a7"
            } else {
                ""
            };
            out.push_str(&format!("{line}{tag}\r\n"));
        }
    }
    out.push_str(&format!(
        "Contact: <sip:bob@{BACKEND}>\r\nContent-Length: 0\r\n\r\n"
    ));
    out
}

/// One call, caller and backend both behaving, all at `now`.
fn call(p: &mut Proxy, i: usize, now: Instant) {
    let call_id = format!("{i:08x}-4c76e66710@pc33.atlanta.example.com");
    let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let common = format!(
        "From: \"Alice\" <sip:alice@example.com>;tag=1928301774-{i}\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\n"
    );
    let invite = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds{i}\r\n\
         {common}To: <sip:bob@example.com>\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@203.0.113.10:5060>\r\n\
         User-Agent: softphone/1.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let out = send(p, &invite, CALLER, now);
    let fwd = out
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("forwarded");
    for (code, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
        send(p, &answer(fwd, code, reason), BACKEND, now);
    }
    let route: Vec<&str> = fwd
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    let routes = route.iter().rev().copied().collect::<Vec<_>>().join(", ");
    for (method, cseq) in [("ACK", "314159 ACK"), ("BYE", "314160 BYE")] {
        let req = format!(
            "{method} sip:bob@{BACKEND} SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK{method}{i}\r\n\
             Route: {routes}\r\n{common}To: <sip:bob@example.com>;tag=b4c9e1f0a7\r\nCSeq: {cseq}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let out = send(p, &req, CALLER, now);
        if method == "BYE" {
            let fwd = out
                .iter()
                .find(|m| m.starts_with("BYE"))
                .expect("BYE forwarded");
            send(p, &answer(fwd, 200, "OK"), BACKEND, now);
        }
    }
}

#[test]
fn bytes_per_call_in_the_transaction_windows() {
    const N: usize = 5000;
    let t0 = Instant::now();
    let mut p = proxy();
    call(&mut p, usize::MAX, t0); // warm up the lazily made parts (local tags, queues)
    p.handle_timeout(t0 + Duration::from_secs(60));
    let _ = p.shrink();
    let before = live_bytes();
    for i in 0..N {
        call(&mut p, i, t0 + Duration::from_secs(61));
    }
    let during = live_bytes();
    let per_call = (during - before) as f64 / N as f64;
    let s = p.stats();
    println!(
        "proxy core: {per_call:.0} bytes per call in the 32 s windows ({} transactions, {} dialogs for {N} calls)",
        p.active_transactions(),
        p.active_dialogs()
    );
    let forwarded = s.outcomes[sip_user::proxy::outcome::Outcome::Forwarded as usize];
    assert_eq!(forwarded as usize, 3 * N + 3, "{s:?}");
    assert_eq!(p.active_dialogs(), 0, "every call ended with its BYE");
    assert!(per_call < 1800.0, "{per_call:.0} bytes per call");

    // Every timer runs out: the tables empty and give their memory back.
    for _ in 0..20 {
        match p.poll_timeout() {
            Some(at) => p.handle_timeout(at.max(t0 + Duration::from_secs(61))),
            None => break,
        }
        let _ = std::iter::from_fn(|| p.poll_transmit()).count();
        while p.poll_event().is_some() {}
    }
    p.handle_timeout(t0 + Duration::from_secs(200));
    assert_eq!(p.active_transactions(), 0);
    assert!(p.shrink(), "the tables shrank");
    let after = live_bytes();
    println!(
        "after the windows: {} bytes more than before",
        after - before
    );
    assert!(after - before < 64 * 1024, "{} bytes kept", after - before);
}
