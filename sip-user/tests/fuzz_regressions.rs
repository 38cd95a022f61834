//! Inputs the fuzzers found (or that sit on the parser's edges), replayed through the same
//! functions the fuzz targets call. Add a crash from `sip-user/fuzz/artifacts/parse/` to
//! `sip-user/tests/data/fuzz/` (or from `artifacts/framer/`), or from `artifacts/proxy/` to `tests/data/fuzz-proxy/`, and it
//! is tested from then on.

#[test]
fn fuzz_inputs_do_not_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("tests/data/fuzz") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        sip_user::sip::exercise::exercise(&data);
        sip_user::transport::framer::check_splits(&data);
        // Every prefix too: truncation is what UDP does to a message that did not fit.
        for end in 0..data.len() {
            sip_user::sip::exercise::exercise(&data[..end]);
        }
        n += 1;
    }
    assert!(n >= 4, "the regression inputs are present");
}

#[test]
fn proxy_fuzz_inputs_and_seeds_do_not_break_an_invariant() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz-proxy");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    inputs.extend(
        sip_user::proxy::exercise::seeds()
            .into_iter()
            .map(|(_, s)| s),
    );
    assert!(inputs.len() >= 10, "the seeds are there");
    for data in &inputs {
        sip_user::proxy::exercise::exercise(data);
    }
}
