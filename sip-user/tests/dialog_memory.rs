//! Bytes per dialog, measured: a counting allocator around a table of 10,000 confirmed dialogs
//! (INVITE, 180, 200 each; typical Call-ID and tag lengths). Printed for the README and the
//! closing note, and bounded so a regression shows. Then: messages inside existing dialogs
//! allocate nothing. One test, so nothing else allocates in between.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::Instant,
};

use sip_user::sip::{
    Header, Parsed,
    dialog::{DialogTable, Limits},
    parse,
};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only tracks live bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn feed(t: &mut DialogTable, msg: &[u8], now: Instant) {
    let mut h = [Header::EMPTY; 32];
    let Ok(Parsed::Message(m)) = parse(msg, &mut h) else {
        panic!()
    };
    let read = m.validate().expect("a valid message").dialog;
    t.handle(&m, &read, now).expect("belongs to a dialog");
}

#[test]
fn bytes_per_dialog() {
    const N: usize = 10_000;
    let now = Instant::now();
    let mut msgs = Vec::with_capacity(N * 3);
    for i in 0..N {
        let call_id = format!("{i:08x}-4c76e66710@pc33.atlanta.example.com");
        let common = format!("From: <sip:alice@a>;tag=1928301774-{i}\r\nCall-ID: {call_id}\r\n");
        msgs.push(format!("INVITE sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{i}\r\n{common}To: <sip:bob@b>\r\nCSeq: 1 INVITE\r\n\r\n"));
        for code in [180, 200] {
            msgs.push(format!("SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{i}\r\n{common}To: <sip:bob@b>;tag=a6c85cf-{i}\r\nCSeq: 1 INVITE\r\n\r\n"));
        }
    }
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let mut table = DialogTable::new(N, Limits::default());
    for m in &msgs {
        feed(&mut table, m.as_bytes(), now);
    }
    let used = LIVE_BYTES.load(Ordering::SeqCst) - before;
    assert_eq!(table.len(), N);
    let per_dialog = used as f64 / N as f64;
    println!("dialog table: {N} dialogs, {used} bytes, {per_dialog:.0} bytes per dialog");
    assert!(per_dialog > 64.0, "the count is real");
    assert!(per_dialog < 1024.0, "{per_dialog:.0} bytes per dialog");

    // Retransmitted 200s and re-sent INVITEs of existing dialogs: lookups only.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for m in msgs.iter().skip(2).step_by(3).take(1000) {
        feed(&mut table, m.as_bytes(), now);
    }
    for m in msgs.iter().step_by(3).take(1000) {
        feed(&mut table, m.as_bytes(), now);
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst) - before,
        0,
        "in-dialog messages allocate"
    );
    drop(table);
}
