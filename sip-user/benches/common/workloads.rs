//! What the benchmarks measure, shared by the criterion benchmark (`benches/sip.rs`) and the
//! instruction-count workload (`examples/workload.rs`) so both measure the same thing: the
//! messages, parsing with and without validation, and one call as the proxy's server side
//! handles it (INVITE→100→180→200→ACK→BYE→200 through the transaction layer and the dialog
//! table, the responses built by the stack).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use sip_user::{
    sip::{
        build,
        dialog::DialogTable,
        transaction::{Event, TransactionLayer},
        validate::DialogFields,
    },
    tools::samples,
};

/// The benchmarked messages: the typical ones and RFC 4475's wsinv.
pub fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let id = samples::FILE_CALL_ID;
    let wsinv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rfc4475/wsinv.dat"
    ))
    .expect("wsinv.dat");
    let mut all: Vec<(&'static str, Vec<u8>)> = samples::typical(id).into();
    all.push(("wsinv", wsinv));
    all
}

/// Start line, headers and body, into the header storage the daemon parses into (left
/// uninitialised, `parse_any`), as `parse_validated` does: initialising a `[Header::EMPTY; 64]`
/// first would add ~250 instructions a message that no path of the daemon pays.
pub fn parse_only(buf: &[u8]) -> usize {
    sip_user::sip::with_message(buf, |m| m.headers.len() + m.body.len()).unwrap_or(0)
}

/// And every known header's value.
pub fn parse_validated(buf: &[u8]) -> usize {
    sip_user::sip::with_message(buf, |m| m.validate().map_or(0, |_| m.headers.len())).unwrap_or(0)
}

/// The messages of one call as the proxy's server side sees them, with the responses it sends.
pub struct CallMessages {
    invite: Bytes,
    ack: Bytes,
    bye: Bytes,
}

impl CallMessages {
    pub fn new() -> Self {
        let id = samples::FILE_CALL_ID;
        CallMessages {
            invite: Bytes::from(samples::invite(id)),
            ack: Bytes::from(samples::ack(id)),
            bye: Bytes::from(samples::bye(id)),
        }
    }
}

/// The library's parse-and-use helper; every message of the call parses.
fn with_message<R>(datagram: &Bytes, f: impl FnOnce(&sip_user::sip::Message<'_, '_>) -> R) -> R {
    sip_user::sip::with_message(datagram, f).expect("parse")
}

/// One call at `now`; every transaction and dialog it made is gone afterwards.
pub fn one_call(
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
            layer.handle(m, req, peer.into(), now).unwrap();
            dialogs.handle(m, &DialogFields::read(m), now);
        });
        let Some(Event::Request { key, .. }) = layer.poll_event() else {
            panic!("request event")
        };
        for &(code, reason) in codes {
            let resp = with_message(req, |m| {
                build::response(m, code, reason, Some(b"a6c85cf"), &[])
            });
            with_message(&resp, |r| dialogs.handle(r, &DialogFields::read(r), now));
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
        layer.handle(m, &call.ack, peer.into(), now).unwrap();
        dialogs.handle(m, &DialogFields::read(m), now);
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
