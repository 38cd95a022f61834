//! Any byte stream through the stream framer: the same messages wherever it is split, within
//! the limits, no panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sip_user::transport::framer::check_splits(data);
});
