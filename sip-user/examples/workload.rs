//! A fixed amount of work for instruction counting: `valgrind --tool=callgrind` counts
//! instructions, which unlike wall-clock time on a shared machine repeat exactly, so the cost of
//! one message is `(count(N) - count(0)) / N`. `cargo xtask bench-instructions` runs it.
//!
//! Usage: `workload <parse|validate|rsip|call> <message name or -> <iterations>`, the names
//! being those of the criterion benchmark (`invite_sdp`, `ok_200`, … `wsinv`).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

#[path = "../benches/common/workloads.rs"]
mod workloads;

use sip_user::sip::{
    dialog::{DialogTable, Limits},
    transaction::{Timers, TransactionLayer},
};
use workloads::{CallMessages, one_call, parse_only, parse_validated};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, what, file, n] = &args[..] else {
        eprintln!("usage: workload <parse|validate|rsip|call> <message|-> <iterations>");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("iterations");
    let msg = match workloads::messages().into_iter().find(|(m, _)| m == file) {
        Some((_, bytes)) => bytes,
        None if file == "-" => Vec::new(),
        None => panic!("no message named {file}"),
    };
    let mut sink = 0usize;
    match what.as_str() {
        "parse" => (0..n).for_each(|_| sink += parse_only(black_box(&msg))),
        "validate" => (0..n).for_each(|_| sink += parse_validated(black_box(&msg))),
        "rsip" => (0..n).for_each(|_| {
            sink += usize::from(rsip::SipMessage::try_from(black_box(&msg[..])).is_ok())
        }),
        "call" => sink += calls(n),
        _ => panic!("unknown workload {what}"),
    }
    println!("{sink}");
}

/// `n` calls through the transaction layer and the dialog table (see `call_flow`).
fn calls(n: u64) -> usize {
    let call = CallMessages::new();
    let mut layer = TransactionLayer::new(Timers::default());
    let mut dialogs = DialogTable::new(1000, Limits::default());
    let mut now = Instant::now();
    for _ in 0..n {
        one_call(&mut layer, &mut dialogs, &call, now);
        now += Duration::from_secs(60);
    }
    assert!(layer.is_empty() && dialogs.is_empty());
    n as usize
}
