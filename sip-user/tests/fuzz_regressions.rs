//! Inputs the fuzzer found (or that sit on the parser's edges), replayed through the same
//! function the fuzz target calls. Add a crash from `sip-user/fuzz/artifacts/parse/` to
//! `sip-user/tests/data/fuzz/` and it is tested from then on.

#[test]
fn fuzz_inputs_do_not_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("tests/data/fuzz") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        sip_user::sip::exercise::exercise(&data);
        // Every prefix too: truncation is what UDP does to a message that did not fit.
        for end in 0..data.len() {
            sip_user::sip::exercise::exercise(&data[..end]);
        }
        n += 1;
    }
    assert!(n >= 4, "the regression inputs are present");
}
