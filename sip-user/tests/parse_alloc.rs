//! "No heap allocation per message": a counting global allocator around the parser, over the
//! RFC 4475 valid messages and the typical INVITE/200/ACK/BYE/REGISTER/OPTIONS. Parsing,
//! validation, the proxy check and the typed accessors all run between the two readings.
//! This file is its own test binary, and allocations are counted per thread: the test harness's
//! own thread, which may allocate while a test runs, is not counted.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use bytes::{Bytes, BytesMut};
use sip_user::{
    sip::{Header, HeaderName, Parsed, parse, proxy_check::check},
    tools::samples,
};

struct Counting;

thread_local! {
    // `const` and no destructor: reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`/`dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Everything the stack reads from a message, so the test covers the accessors too.
fn use_everything(datagram: &Bytes) -> usize {
    let mut headers = [Header::EMPTY; 64];
    let Ok(Parsed::Message(m)) = parse(datagram, &mut headers) else {
        panic!("must parse");
    };
    let validated = m.validate().expect("valid");
    let mut seen = m.headers.len() + m.body.len();
    seen += m.call_id().map_or(0, <[u8]>::len);
    seen += m.cseq().unwrap().unwrap().seq as usize;
    for via in m.vias() {
        let via = via.unwrap();
        seen += via.branch().map_or(0, <[u8]>::len) + via.host.len();
    }
    seen += m.from().unwrap().unwrap().tag().map_or(0, <[u8]>::len);
    seen += m.to().unwrap().unwrap().uri.host.len();
    seen += m
        .addresses(HeaderName::Contact)
        .filter_map(Result::ok)
        .count();
    seen += m.max_forwards().and_then(Result::ok).unwrap_or(0) as usize;
    seen += m
        .request_uri()
        .and_then(Result::ok)
        .map_or(0, |u| u.host.len());
    seen += matches!(
        check(&m, &validated, &[] as &[&[u8]]),
        sip_user::sip::proxy_check::Decision::Forward(_)
    ) as usize;
    // Zero-copy hand-off: a field as `Bytes` sharing the datagram's buffer.
    seen += datagram.slice_ref(m.call_id().unwrap()).len();
    seen
}

#[test]
fn parsing_does_not_allocate() {
    let dir = format!("{}/../tests/data/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let valid = [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
    ];
    let mut messages: Vec<(String, Bytes)> = valid
        .iter()
        .map(|f| {
            (
                f.to_string(),
                Bytes::from(std::fs::read(format!("{dir}/{f}.dat")).unwrap()),
            )
        })
        .collect();
    for (name, m) in samples::typical(samples::FILE_CALL_ID) {
        messages.push((name.to_string(), Bytes::from(m)));
    }
    // Datagrams as a worker receives them: read into one shared receive buffer and split off
    // (`BytesMut::split().freeze()`), so handing out a field as `Bytes` is a reference count,
    // not a copy.
    let mut rx = BytesMut::with_capacity(64 * 1024);
    let messages: Vec<(String, Bytes)> = messages
        .into_iter()
        .map(|(name, m)| {
            rx.extend_from_slice(&m);
            (name, rx.split().freeze())
        })
        .collect();
    let mut total = 0;
    for (name, datagram) in &messages {
        let before = allocations();
        for _ in 0..10 {
            total += use_everything(datagram);
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "{name}: {} allocations in 10 parses",
            after - before
        );
    }
    assert!(total > 0);
    // The counter does count: one Vec allocation shows up.
    let before = allocations();
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(16));
    assert_eq!(allocations() - before, 1);
    drop(v);
}
