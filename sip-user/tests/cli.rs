//! The CLI as a user runs it: `parse` and `hash-call-id` on the RFC 4475 files, and
//! `check-config`, through the built `sip-fastpath` binary. (`classify` needs root and the eBPF
//! object: it is tested with the XDP program in `tests/tests/xdp_test_run.rs`.)

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sip-fastpath");

fn data(file: &str) -> String {
    format!(
        "{}/../tests/data/rfc4475/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn manifest() -> Vec<(String, String)> {
    std::fs::read_to_string(data("MANIFEST.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn parse_prints_one_line_per_file_and_fails_on_invalid() {
    let files = manifest();
    let out = Command::new(BIN)
        .arg("parse")
        .args(files.iter().map(|(f, _)| data(f)))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid files make the exit status 1"
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 49);
    for ((file, class), line) in files.iter().zip(&lines) {
        assert!(line["file"].as_str().unwrap().ends_with(file.as_str()));
        let ok = line["ok"].as_bool().unwrap();
        assert_eq!(ok, class != "invalid", "{file} ({class}): {line}");
        assert_eq!(line["error"].is_null(), ok, "{line}");
    }
    let wsinv = &lines[0];
    assert_eq!(wsinv["kind"], "request");
    assert_eq!(wsinv["method"], "INVITE");
    assert_eq!(wsinv["call_id"], "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(wsinv["cseq"], 9);
    assert_eq!(wsinv["cseq_method"], "INVITE");
    assert_eq!(wsinv["via_branch"], "390skdjuw");
    let unreason = lines
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("unreason.dat"))
        .unwrap();
    assert_eq!(
        (unreason["kind"].as_str(), unreason["status"].as_u64()),
        (Some("response"), Some(200))
    );

    let ok = Command::new(BIN)
        .args(["parse", &data("wsinv.dat")])
        .status()
        .unwrap();
    assert!(ok.success());
    let missing = Command::new(BIN)
        .args(["parse", "/nonexistent.dat"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.dat"));
}

#[test]
fn hash_call_id_matches_sip_common() {
    for value in [
        "a84b4c76e66710@pc33.atlanta.example.com",
        "x",
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
    ] {
        let out = Command::new(BIN)
            .args(["hash-call-id", value])
            .output()
            .unwrap();
        assert!(out.status.success());
        let printed: u64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            printed,
            sip_common::hash_call_id(value.as_bytes()),
            "{value}"
        );
    }
}

#[test]
fn check_config_accepts_backends_and_names_the_bad_field() {
    let dir = std::env::temp_dir().join(format!("sfp-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "trusted = [\"10.0.0.0/8\"]\n[[backends]]\naddress = \"192.0.2.10:5060\"\nweight = 2\n\
         [[backends]]\nsrv = \"example.com\"\n[[routes]]\nprefix = \"+44\"\ndestination = \"uk.example\"\n\
         [health]\ninterval_ms = 500\ntimeout_ms = 200\n",
    )
    .unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[health]\ninterval_ms = 100\ntimeout_ms = 500\n").unwrap();
    let run = |file: &std::path::Path| {
        Command::new(BIN)
            .arg("check-config")
            .arg(file)
            .output()
            .unwrap()
    };
    let (ok, err) = (run(&good), run(&bad));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("192.0.2.10:5060 (weight 2, priority 0)")
            && stdout.contains("SRV _sip._udp.example.com. (priorities and weights from DNS)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inside: the backends and 10.0.0.0/8")
            && stdout.contains("a random secret per start")
            && stdout.contains("prefix +44 → uk.example"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(stderr.contains("health.timeout_ms"), "{stderr}");
}
