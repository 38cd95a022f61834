//! Sequences of datagrams from several sources, clock steps and DNS answers through one
//! worker's proxy: no panic, every datagram accounted for, tables within their limits, every
//! message sent parses (see `sip_user::proxy::exercise`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sip_user::proxy::exercise::exercise(data);
});
