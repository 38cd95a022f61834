//! Any datagram through the whole parser: no panic, no out-of-bounds slice.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sip_user::sip::exercise::exercise(data);
});
