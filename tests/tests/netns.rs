//! sip-fastpath on a veth in a network namespace, in native and skb XDP mode: real UDP reaches
//! the workers, every Call-ID lands on one worker, and the blocklist, rate limit and allowlist
//! act as configured. Needs root and the built binary (`cargo xtask test` does both).

use std::{net::SocketAddr, time::Duration};

use sip_common::{hash_call_id, slot_for_hash};
use tests::{
    Daemon, EDGE_ADDR, EDGE_IFACE,
    admin::{Admin, GRAFANA, http},
    lan::Lan,
    reason, require_root, sip_message, workers_sum,
};

/// Sources on the client: 192.0.2.2 (allowlisted, used for the affinity checks), a plain one
/// that gets rate limited, and a blocklisted one.
const PLAIN_SOURCE: &str = "192.0.2.3";
const BLOCKED_SOURCE: &str = "192.0.2.66";

const CONFIG: &str = r#"
sip_ports = [5060]
workers = 0
[filter]
rate_limit_pps = 5
rate_limit_burst = 10
allowlist = ["192.0.2.2/32"]
blocklist = ["192.0.2.64/27"]
"#;

fn edge() -> SocketAddr {
    format!("{EDGE_ADDR}:5060").parse().unwrap()
}

fn scenario(mode: &str) -> anyhow::Result<()> {
    require_root();
    let lan = Lan::new(mode, &[("edge", EDGE_ADDR), ("client", "192.0.2.2")])?;
    for source in [PLAIN_SOURCE, BLOCKED_SOURCE] {
        lan.add_address("client", source)?;
    }
    let client = &lan.host("client").ns;
    let edge_ns = &lan.host("edge").ns;
    let daemon = Daemon::start(edge_ns, EDGE_IFACE, mode, CONFIG, mode)?;
    let s0 = daemon.stats()?;
    let workers = s0["workers"].as_array().unwrap().len();
    assert!(workers >= 1);

    // 1. Many Call-IDs from the allowlisted source: all delivered, none misrouted, spread over
    //    all workers (the Call-IDs are checked to hash to every worker first).
    let sender = client.udp_socket("192.0.2.2:5060".parse()?)?;
    let call_ids: Vec<String> = (0..64)
        .map(|i| format!("{i}-affinity@{mode}.test"))
        .collect();
    let mut slots = vec![0; workers];
    for c in &call_ids {
        slots[slot_for_hash(hash_call_id(c.as_bytes()), workers as u32) as usize] += 1;
    }
    assert!(
        slots.iter().all(|&n| n > 0),
        "test Call-IDs do not cover all workers: {slots:?}"
    );
    let per_call = 5;
    for seq in 1..=per_call {
        for c in &call_ids {
            sender.send_to(&sip_message("OPTIONS", c, seq), edge())?;
        }
    }
    let sent = (call_ids.len() * per_call as usize) as u64;
    let s1 = daemon.wait_for("all affinity messages", Duration::from_secs(10), |s| {
        workers_sum(s, "received") >= sent
    })?;
    assert_eq!(workers_sum(&s1, "received"), sent, "{s1}");
    assert_eq!(
        workers_sum(&s1, "misrouted"),
        0,
        "a Call-ID reached the wrong worker: {s1}"
    );
    assert!(reason(&s1, "redirect/steered") >= sent, "{s1}");
    for w in s1["workers"].as_array().unwrap() {
        assert!(
            w["received"].as_u64().unwrap() > 0,
            "worker got nothing: {s1}"
        );
    }

    // 2. One Call-ID, 50 messages: exactly one worker's count moves, by 50.
    let before: Vec<u64> = s1["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["received"].as_u64().unwrap())
        .collect();
    for seq in 1..=50 {
        sender.send_to(&sip_message("INFO", "one-call@affinity.test", seq), edge())?;
    }
    let s2 = daemon.wait_for("the single-call burst", Duration::from_secs(10), |s| {
        workers_sum(s, "received") >= sent + 50
    })?;
    let moved: Vec<u64> = s2["workers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&before)
        .map(|(w, b)| w["received"].as_u64().unwrap() - b)
        .collect();
    assert_eq!(
        moved.iter().filter(|&&m| m > 0).count(),
        1,
        "one Call-ID on several workers: {moved:?}"
    );
    assert_eq!(moved.iter().sum::<u64>(), 50);

    // 3. The blocklisted source: dropped in XDP, never seen by a worker.
    let blocked = client.udp_socket(format!("{BLOCKED_SOURCE}:5060").parse()?)?;
    for seq in 1..=20 {
        blocked.send_to(&sip_message("OPTIONS", "blocked@test", seq), edge())?;
    }
    let s3 = daemon.wait_for("blocklist drops", Duration::from_secs(10), |s| {
        reason(s, "drop/blocklist") >= 20
    })?;
    assert_eq!(reason(&s3, "drop/blocklist"), 20, "{s3}");
    assert_eq!(
        workers_sum(&s3, "received"),
        sent + 50,
        "a blocklisted message got through: {s3}"
    );

    // 4. A plain source over its rate (5/s, burst 10): a burst of 100 mostly dropped. The
    //    allowlisted source sent 370 above without a single rate-limit drop.
    let plain = client.udp_socket(format!("{PLAIN_SOURCE}:5060").parse()?)?;
    for seq in 1..=100 {
        plain.send_to(
            &sip_message("OPTIONS", &format!("rate-{seq}@test"), seq),
            edge(),
        )?;
    }
    let s4 = daemon.wait_for(
        "rate-limit drops and deliveries",
        Duration::from_secs(10),
        |s| reason(s, "drop/rate_limit") + workers_sum(s, "received") >= sent + 50 + 100,
    )?;
    let limited = reason(&s4, "drop/rate_limit");
    let passed = workers_sum(&s4, "received") - sent - 50;
    assert!(
        (10..=20).contains(&passed),
        "burst 10 at 5/s should let 10-20 through, got {passed}: {s4}"
    );
    assert_eq!(limited + passed, 100, "{s4}");

    // 5. Junk on the SIP port: dropped as not SIP.
    for _ in 0..10 {
        plain.send_to(tests::TLS_JUNK, edge())?;
    }
    daemon.wait_for("not_sip drops", Duration::from_secs(10), |s| {
        reason(s, "drop/not_sip") >= 10
    })?;

    // Clean exit on SIGTERM, XDP detached.
    let status = daemon.stop()?;
    assert!(status.success(), "sip-fastpath exited with {status}");
    let link = edge_ns.exec(&["ip", "-d", "link", "show", EDGE_IFACE])?;
    assert!(
        !link.contains("prog/xdp"),
        "XDP still attached after exit:\n{link}"
    );
    Ok(())
}

#[test]
fn native_xdp_steers_filters_and_detaches() {
    scenario("native").unwrap();
}

#[test]
fn skb_xdp_steers_filters_and_detaches() {
    scenario("skb").unwrap();
}

/// One worker: the program filters and counts, but redirects nothing (a CPUMAP redirect would
/// only move the kernel's receive work onto the one worker's CPU); every message still reaches
/// the worker, and junk is still dropped.
#[test]
fn one_worker_filters_without_redirecting() -> anyhow::Result<()> {
    require_root();
    let lan = Lan::new("oneworker", &[("edge", EDGE_ADDR), ("client", "192.0.2.2")])?;
    let client = &lan.host("client").ns;
    let edge_ns = &lan.host("edge").ns;
    let admin = Admin::new("oneworker")?;
    let config = format!("sip_ports = [5060]\nworkers = 1\n{}", admin.config());
    let daemon = Daemon::start(edge_ns, EDGE_IFACE, "native", &config, "oneworker")?;
    // The status says what the program does, not what the config asked for.
    let (code, body, _) = http(edge_ns, "GET", "/api/v1/status", Some(GRAFANA), None)?;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(status["workers"], 1, "{status}");
    assert_eq!(status["steering"], false, "steering reported on: {status}");
    let sender = client.udp_socket("192.0.2.2:5060".parse()?)?;
    let sent = 20;
    for seq in 1..=sent {
        sender.send_to(
            &sip_message("OPTIONS", &format!("{seq}-one@worker.test"), seq),
            edge(),
        )?;
    }
    for _ in 0..5 {
        sender.send_to(tests::TLS_JUNK, edge())?;
    }
    let s = daemon.wait_for("every message and the junk", Duration::from_secs(10), |s| {
        workers_sum(s, "received") >= u64::from(sent) && reason(s, "drop/not_sip") >= 5
    })?;
    assert_eq!(workers_sum(&s, "received"), u64::from(sent), "{s}");
    assert_eq!(
        reason(&s, "redirect/steered"),
        0,
        "redirected with one worker: {s}"
    );
    assert!(reason(&s, "pass/unsteered") >= u64::from(sent), "{s}");
    let status = daemon.stop()?;
    assert!(status.success(), "sip-fastpath exited with {status}");
    Ok(())
}
