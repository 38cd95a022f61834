//! `cargo bench -p sip-user --bench sip`: the userspace SIP stack per message and per call.
//!
//! - `parse/<message>`: this crate's parser (structure only, then with full validation) next to
//!   the `rsip` crate parsing the same bytes in the same run.
//! - `call/server`: one call (INVITE→100→180→200→ACK→BYE→200) through the transaction layer
//!   and the dialog table, parsing included, as the proxy's server side handles it.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

#[path = "common/workloads.rs"]
mod workloads;

use criterion::{Criterion, criterion_group, criterion_main};
use sip_user::sip::{
    dialog::{DialogTable, Limits},
    transaction::{Timers, TransactionLayer},
};
use workloads::{CallMessages, messages, one_call, parse_only, parse_validated};

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

fn bench_call(c: &mut Criterion) {
    let call = CallMessages::new();
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
