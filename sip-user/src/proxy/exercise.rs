//! Drives one worker's proxy (transactions, dialogs, routing, DNS parking, limits) with any
//! sequence of datagrams from several sources, clock steps and DNS answers, and checks what
//! must hold whatever comes in. What the `proxy` fuzz target (`sip-user/fuzz`) and its
//! regression tests call.
//!
//! The input is read as records until it ends:
//!
//! | first byte % 4 | record |
//! |---|---|
//! | 0 | a message: a byte naming the source (% 5: [`SOURCES`]; / 8 % 3: UDP, TCP or TLS; bit 7: inside by certificate), a little-endian u16 length (cut to what is left), the bytes |
//! | 1 | the clock moves on: a little-endian u16, in units of 8 ms (up to ~9 minutes) |
//! | 2 | the oldest DNS question is answered: a byte, % 3 = found / no such name / failed |
//! | 3 | the timers due now fire |
//!
//! Invariants, checked after every record: every datagram handled has exactly one outcome or
//! waits for DNS; the tables stay within the configured limits; every message sent parses
//! (or is a STUN answer or a CRLF pong).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    Proxy, ProxyConfig,
    flow::FlowKey,
    resolve::{Answer, Candidate},
    rewrite::Identity,
    target::{Name, Policy, StaticRoute},
};
use crate::{
    backend::{Backend, Pool},
    sip::{
        Parsed, parse_any,
        peer::{Peer, Transport},
        transaction::Admission,
    },
};

/// Who sends: two outside phones, the two backends, a trusted host (inside by CIDR).
pub const SOURCES: [&str; 5] = [
    "203.0.113.10:5060",
    "203.0.113.11:40000",
    "192.0.2.21:5060",
    "192.0.2.22:5060",
    "10.9.0.5:5060",
];

const MAX_SERVER: usize = 64;
const MAX_DIALOGS: usize = 32;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a fixed address")
}

/// The proxy under test: small limits so the fuzzer reaches them, a trusted CIDR, static
/// routes to an address and to a name.
pub fn proxy() -> Proxy {
    let identity = Identity::new("192.0.2.1", 5060)
        .with_port(Transport::Tcp, 5060)
        .with_port(Transport::Tls, 5061);
    let cfg = ProxyConfig {
        admission: Admission {
            max: MAX_SERVER,
            per_source: MAX_SERVER / 2,
            // A few large datagrams meet it.
            per_source_bytes: 64 * 1024,
        },
        max_dialogs: MAX_DIALOGS,
        policy: Policy {
            trusted: vec!["10.9.0.0/16".parse().expect("a CIDR")],
            domains: Vec::new(),
            routes: vec![
                StaticRoute {
                    domain: None,
                    prefix: Some("+44".into()),
                    destination: "192.0.2.70:5060".parse().expect("an address"),
                },
                StaticRoute {
                    domain: Some("carrier.example".into()),
                    prefix: None,
                    destination: "trunk.example".parse().expect("a name"),
                },
            ],
        },
        ..ProxyConfig::new(identity, FlowKey::new(b"proxy exercise secret"))
    };
    let backends = [SOURCES[2], SOURCES[3]]
        .iter()
        .map(|b| Backend::new(addr(b), 1.0, 3, 2))
        .collect();
    Proxy::new(cfg, Pool::new(backends))
}

/// Runs the records of `data` through a fresh proxy; panics if an invariant breaks.
pub fn exercise(data: &[u8]) {
    let mut p = proxy();
    let mut now = Instant::now();
    let mut questions: VecDeque<Name> = VecDeque::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            0 => {
                let Some((&who, tail)) = rest.split_first() else {
                    break;
                };
                let len = match tail {
                    [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                    _ => 0,
                };
                let body = tail.get(2..).unwrap_or(&[]);
                let len = len.min(body.len());
                let transport = Transport::ALL[usize::from(who / 8) % Transport::ALL.len()];
                let source = Peer::new(transport, addr(SOURCES[usize::from(who) % SOURCES.len()]));
                let inside = who & 0x80 != 0;
                p.handle_as(Bytes::copy_from_slice(&body[..len]), source, inside, now);
                rest = &body[len..];
            }
            1 => {
                let step = match rest {
                    [a, b, ..] => u64::from(u16::from_le_bytes([*a, *b])) * 8,
                    _ => 1000,
                };
                rest = rest.get(2..).unwrap_or(&[]);
                now += Duration::from_millis(step);
            }
            2 => {
                let kind = rest.first().copied().unwrap_or(0);
                rest = rest.get(1..).unwrap_or(&[]);
                if let Some(name) = questions.pop_front() {
                    let answer = match kind % 3 {
                        0 => Answer::Found {
                            candidates: vec![Candidate {
                                addr: addr("192.0.2.80:5060"),
                                priority: 0,
                                weight: 1.0,
                            }],
                            valid_until: now + Duration::from_secs(30),
                        },
                        1 => Answer::NoSuchName,
                        _ => Answer::Failed,
                    };
                    p.handle_answer(name, answer, now);
                }
            }
            _ => {
                if let Some(at) = p.poll_timeout()
                    && at <= now
                {
                    p.handle_timeout(now);
                }
            }
        }
        questions.extend(std::iter::from_fn(|| p.poll_query()));
        check(&mut p);
    }
}

/// The invariants, after one record.
fn check(p: &mut Proxy) {
    let s = p.stats();
    assert_eq!(
        s.received,
        s.outcomes.iter().sum::<u64>() + p.parked() as u64,
        "every datagram has one outcome or waits for DNS: {s:?}"
    );
    // Each server transaction forwards one request and may send one CANCEL.
    assert!(
        p.active_transactions() <= 3 * MAX_SERVER,
        "{}",
        p.active_transactions()
    );
    assert!(p.active_dialogs() <= MAX_DIALOGS, "{}", p.active_dialogs());
    while let Some(t) = p.poll_transmit() {
        let keepalive = t.payload.starts_with(&[0x01, 0x01]) || &t.payload[..] == b"\r\n";
        let parses = parse_any(&t.payload, |m| matches!(m, Ok(Parsed::Message(_))));
        assert!(
            keepalive || parses,
            "sent a message that does not parse: {:?}",
            String::from_utf8_lossy(&t.payload)
        );
    }
    while p.poll_event().is_some() {}
}

/// A record delivering `bytes` from source `who`.
pub fn datagram(who: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![0, who];
    r.extend((bytes.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    r.extend(bytes);
    r
}

/// A record moving the clock on by `ms`.
pub fn wait(ms: u64) -> Vec<u8> {
    let mut r = vec![1];
    r.extend(((ms / 8).min(u64::from(u16::MAX)) as u16).to_le_bytes());
    r
}

/// Seeds for the fuzzer: the typical messages (INVITE with SDP, 200, ACK, BYE, REGISTER,
/// OPTIONS) from each kind of source, with clock steps, timers and DNS answers between them.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let typical = crate::tools::samples::typical("seed-1@pc33.atlanta.example.com");
    let mut out = Vec::new();
    for (who, _) in SOURCES.iter().enumerate() {
        let mut all = Vec::new();
        for (name, msg) in &typical {
            let mut one = datagram(who as u8, msg);
            one.extend(wait(600));
            one.push(3);
            out.push((format!("{name}-from-{who}"), one.clone()));
            all.extend(one);
        }
        all.extend([2, 0]);
        all.extend(wait(40_000));
        all.push(3);
        out.push((format!("all-from-{who}"), all));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_run_and_reach_the_backends() {
        for (name, seed) in seeds() {
            exercise(&seed);
            assert!(!name.is_empty());
        }
        // An INVITE from outside is forwarded (the harness reaches the proxy's core).
        let mut p = proxy();
        let invite = &crate::tools::samples::typical("x@y")[0].1;
        p.handle(
            Bytes::copy_from_slice(invite),
            addr(SOURCES[0]),
            Instant::now(),
        );
        assert_eq!(
            p.stats().outcomes[super::super::outcome::Outcome::Forwarded as usize],
            1
        );
    }

    #[test]
    fn short_and_odd_inputs_do_not_panic() {
        for data in [
            &[][..],
            &[0],
            &[0, 9],
            &[0, 0, 0xff, 0xff],
            &[1],
            &[2],
            &[3, 3, 3],
        ] {
            exercise(data);
        }
    }
}
