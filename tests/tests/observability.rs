//! The shipped alerts (`deploy/prometheus/alerts.yml`) and dashboard
//! (`deploy/grafana/sip-fastpath.json`) against real Prometheus (Debian's 2.42): promtool
//! accepts the rules; Prometheus scraping a daemon under a short load evaluates every panel's
//! expression to data and every alert's without error, every metric either names exists; and a
//! killed backend makes its alert fire.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    bed::{Bed, config},
    prometheus::{Prometheus, api, evaluate, wait_for_scrape},
    sipp::LogDir,
};

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

#[test]
fn promtool_accepts_the_alerting_rules() -> anyhow::Result<()> {
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"))
        .output()?;
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    Ok(())
}

/// Every `sip_fastpath_*` metric name an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sip_fastpath_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_panel_and_alert_reads_metrics_the_daemon_exports_and_a_dead_backend_fires()
-> anyhow::Result<()> {
    let mut bed = Bed::new("obs", "uas_call", &config(500))?;
    let logs = LogDir::new("obs")?;
    let edge = &bed.lan.host("edge").ns;
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml"))?;
    // The backend alert waits 30 s in production; 2 s here, so the test sees it fire.
    let test_rules = rules.replace(
        "expr: sip_fastpath_backend_up == 0\n        for: 30s",
        "expr: sip_fastpath_backend_up == 0\n        for: 2s",
    );
    assert_ne!(test_rules, rules, "the backend alert's `for` moved");
    let _prometheus = Prometheus::start(edge, &logs.0, &test_rules)?;
    // Calls, so rates and the latency histogram have data, while Prometheus scrapes.
    let r = bed.call("uac_call", 40, 10)?;
    assert_eq!(r.failed, 0, "{r:?}");
    // A few more scrapes after the calls, and Prometheus ready.
    wait_for_scrape(edge)?;
    std::thread::sleep(Duration::from_secs(3));

    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(deploy(
        "grafana/sip-fastpath.json",
    ))?)?;
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr").to_string();
            let result = evaluate(edge, &expr)?;
            assert!(
                !result.is_empty(),
                "panel {}: no data for {expr}",
                panel["title"]
            );
            exprs.push(expr);
        }
    }
    assert!(exprs.len() >= 12, "{} panel expressions", exprs.len());
    let alerts: Vec<String> = rules
        .split("expr:")
        .skip(1)
        .map(|part| {
            part.split("\n        for:")
                .next()
                .unwrap_or("")
                .replace('|', "")
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for expr in &alerts {
        evaluate(edge, expr)?;
        exprs.push(expr.clone());
    }
    // No panel or alert on a metric the daemon does not export.
    for name in exprs.iter().flat_map(|e| metric_names(e)) {
        let found = evaluate(edge, &format!("count({name})"))?;
        assert!(!found.is_empty(), "{name} is not exported");
    }

    // A dead backend: its health checks fail, its alert fires.
    bed.backends[0].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = api(edge, "alerts", None)?;
        let firing = v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|alert| {
                alert["labels"]["alertname"] == "SipFastpathBackendDown"
                    && alert["state"] == "firing"
                    && alert["labels"]["backend"] == format!("{}:5060", tests::bed::B1)
            })
        });
        if firing {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "SipFastpathBackendDown never fired: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
