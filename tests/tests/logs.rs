//! `--log-format json`: every line the daemon writes to stderr, from start to shutdown, is one
//! JSON object a log shipper can read (timestamp, level, target, fields.message).

use tests::{Daemon, EDGE_ADDR, EDGE_IFACE, lan::Lan, require_root};

#[test]
fn the_daemon_logs_json_lines_from_start_to_shutdown() -> anyhow::Result<()> {
    require_root();
    let lan = Lan::new("logs", &[("edge", EDGE_ADDR), ("client", "192.0.2.2")])?;
    let config = "sip_ports = [5060]\nworkers = 1\n";
    let daemon = Daemon::start_json_logging(&lan.host("edge").ns, EDGE_IFACE, config, "json-logs")?;
    let log = daemon.json_log.clone().expect("a JSON log path");
    let status = daemon.stop()?;
    let text = std::fs::read_to_string(&log);
    let _ = std::fs::remove_file(&log);
    let text = text?;
    assert!(status.success(), "{status}: {text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    let said = |words: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(words)
        })
    };
    assert!(said("XDP attached"), "{text}");
    assert!(said("shutting down"), "{text}");
    // A warning keeps its level.
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("flow_secret")),
        "{text}"
    );
    Ok(())
}
