//! `cargo bench -p sip-user --bench sip`: the userspace SIP stack per message and per call.
//!
//! - `parse/<message>`: this crate's parser (structure only, then with full validation) next to
//!   the `rsip` crate parsing the same bytes in the same run.
//! - `call/server`: one call (INVITE→100→180→200→ACK→BYE→200) through the transaction layer
//!   and the dialog table, parsing included, as the proxy's server side handles it.

use std::{
    hint::black_box,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sip_user::{
    samples,
    sip::{
        Header, Parsed, build,
        dialog::{DialogTable, Limits},
        parse,
        transaction::{Event, Timers, TransactionLayer},
    },
};

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let id = "a84b4c76e66710@pc33.atlanta.example.com";
    let wsinv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rfc4475/wsinv.dat"
    ))
    .expect("wsinv.dat");
    vec![
        ("invite_sdp", samples::invite(id)),
        ("ok_200", samples::ok_200(id)),
        ("ack", samples::ack(id)),
        ("bye", samples::bye(id)),
        ("register", samples::register(id)),
        ("options", samples::options(id)),
        ("wsinv", wsinv),
    ]
}

fn parse_only(buf: &[u8]) -> usize {
    let mut headers = [Header::EMPTY; 64];
    match parse(buf, &mut headers) {
        Ok(Parsed::Message(m)) => m.headers.len() + m.body.len(),
        _ => 0,
    }
}

fn parse_validated(buf: &[u8]) -> usize {
    let mut headers = [Header::EMPTY; 64];
    match parse(buf, &mut headers) {
        Ok(Parsed::Message(m)) => m.validate().map_or(0, |()| m.headers.len()),
        _ => 0,
    }
}

fn bench_parse(c: &mut Criterion) {
    for (name, msg) in messages() {
        let rsip_ok = rsip::SipMessage::try_from(&msg[..]).is_ok();
        assert!(parse_validated(&msg) > 0, "{name} must parse");
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.bench_function("sip-fastpath", |b| b.iter(|| parse_only(black_box(&msg))));
        g.bench_function("sip-fastpath+validate", |b| {
            b.iter(|| parse_validated(black_box(&msg)))
        });
        let label = if rsip_ok { "rsip" } else { "rsip (error)" };
        g.bench_function(label, |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(&msg[..])).is_ok())
        });
        g.finish();
    }
}

/// The messages of one call as the proxy's server side sees them, with the responses it sends.
struct CallMessages {
    invite: Bytes,
    ack: Bytes,
    bye: Bytes,
}

fn call_messages() -> CallMessages {
    let id = "a84b4c76e66710@pc33.atlanta.example.com";
    CallMessages {
        invite: Bytes::from(samples::invite(id)),
        ack: Bytes::from(samples::ack(id)),
        bye: Bytes::from(samples::bye(id)),
    }
}

/// The library's parse-and-use helper; every message of the call parses.
fn with_message<R>(datagram: &Bytes, f: impl FnOnce(&sip_user::sip::Message<'_, '_>) -> R) -> R {
    sip_user::sip::with_message(datagram, f).expect("parse")
}

fn one_call(
    layer: &mut TransactionLayer,
    dialogs: &mut DialogTable,
    call: &CallMessages,
    now: Instant,
) {
    let peer: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let respond = |layer: &mut TransactionLayer,
                   dialogs: &mut DialogTable,
                   req: &Bytes,
                   codes: &[(u16, &str)]| {
        with_message(req, |m| {
            layer.handle(m, req, peer, now).unwrap();
            dialogs.handle(m, now);
        });
        let Some(Event::Request { key, .. }) = layer.poll_event() else {
            panic!("request event")
        };
        for &(code, reason) in codes {
            let resp = with_message(req, |m| {
                build::response(m, code, reason, Some(b"a6c85cf"), &[])
            });
            with_message(&resp, |r| dialogs.handle(r, now));
            layer.respond(&key, code, resp, now).unwrap();
        }
    };
    respond(
        layer,
        dialogs,
        &call.invite,
        &[(100, "Trying"), (180, "Ringing"), (200, "OK")],
    );
    with_message(&call.ack, |m| {
        layer.handle(m, &call.ack, peer, now).unwrap();
        dialogs.handle(m, now);
    });
    while layer.poll_event().is_some() {}
    respond(layer, dialogs, &call.bye, &[(200, "OK")]);
    while layer.poll_transmit().is_some() {}
    // Let every timer run out so the next call starts from an empty layer.
    let later = now + Duration::from_secs(40);
    layer.handle_timeout(later);
    dialogs.handle_timeout(later);
    while layer.poll_event().is_some() {}
    while dialogs.poll_event().is_some() {}
}

fn bench_call(c: &mut Criterion) {
    let call = call_messages();
    let mut layer = TransactionLayer::new(Timers::default());
    let mut dialogs = DialogTable::new(1000, Limits::default());
    let mut now = Instant::now();
    one_call(&mut layer, &mut dialogs, &call, now);
    assert!(
        layer.is_empty() && dialogs.is_empty(),
        "a call leaves nothing behind"
    );
    c.bench_function("call/server", |b| {
        b.iter(|| {
            now += Duration::from_secs(60);
            one_call(&mut layer, &mut dialogs, &call, now);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_parse, bench_call
}
criterion_main!(benches);
