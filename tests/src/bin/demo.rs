//! `cargo xtask demo`: sip-fastpath at the edge, in network namespaces, in two parts.
//!
//! 1. As a load balancer under attack: a caller (sipp) places calls through sip-fastpath, XDP
//!    attached, to two backends (sipp), while a third host floods it with junk, scanner probes
//!    and REGISTERs; Prometheus scrapes it. Prints the call results, the per-backend split, the
//!    kernel counters, what `sip-fastpath ctl` shows through the admin API (status, backends, a
//!    source blocked at once), and a Prometheus query answered.
//! 2. Both directions: two phones behind NAT register through the edge to a registrar
//!    (Kamailio) behind it; one calls the other, and the registrar's INVITE reaches the
//!    callee's NAT binding through the edge by the flow token in its Path; each side hangs up
//!    once. Prints what the callee received and the edge's routing counters.
//!
//! Everything is removed at the end, also on failure.

use std::sync::atomic::{AtomicBool, Ordering};

use tests::{
    EDGE_IFACE,
    admin::Admin,
    bed::{B1, B2, Bed, EDGE, FLOOD, config, flood},
    phones::{Phones, REGISTRAR},
    prometheus::{Prometheus, evaluate, wait_for_scrape},
    require_root,
    sipp::LogDir,
};

const CALLS: u32 = 300;
const RATE: u32 = 50;

fn main() -> anyhow::Result<()> {
    require_root();
    tests::interrupt::install()?;
    println!(
        "creating namespaces sfp-demo-*: a switch, sip-fastpath ({EDGE}), a caller (192.0.2.2), \
         backends {B1} and {B2}, a flood source ({FLOOD})"
    );
    let admin = Admin::new("demo")?;
    let bed = Bed::new(
        "demo",
        "uas_call",
        &format!("{}{}", config(1000), admin.config()),
    )?;
    let edge = &bed.lan.host("edge").ns;
    let prometheus_files = LogDir::new("demo-prometheus")?;
    let prometheus = Prometheus::start(edge, &prometheus_files.0, "groups: []\n")?;
    println!(
        "running {CALLS} calls at {RATE}/s (INVITE, 100, 180, 200, ACK, BYE, 200) through sip-fastpath; \
         flooding from {FLOOD} meanwhile"
    );
    let done = AtomicBool::new(false);
    let (report, flood_sent) = std::thread::scope(|s| {
        let flooding = s.spawn(|| flood(&bed, &done, 50, 200_000));
        let report = bed.call("uac_call", CALLS, RATE);
        done.store(true, Ordering::Relaxed);
        (report, flooding.join().map_or(0, |r| r.unwrap_or(0)))
    });
    let r = report?;
    println!(
        "\ncalls: {} successful, {} failed of {CALLS}; INVITE→200 p50 {} ms, p99 {} ms",
        r.successful,
        r.failed,
        r.percentile(50.0),
        r.percentile(99.0)
    );
    for b in &bed.backends {
        let calls = b.requests_by_call()?;
        let ours = r.call_ids.iter().filter(|c| calls.contains_key(*c)).count();
        println!("backend {}: {ours} calls", b.addr);
    }
    println!("flood: {flood_sent} packets sent from {FLOOD}");

    let out = std::process::Command::new(tests::binary())
        .args(["stats", "--iface", EDGE_IFACE, "--pin-root"])
        .arg(&bed.daemon.pin_root)
        .output()?;
    println!(
        "\n$ sip-fastpath stats --iface {EDGE_IFACE}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let metrics = bed.metrics()?;
    println!("$ curl http://127.0.0.1:9464/metrics (excerpt)");
    for line in metrics.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("sip_fastpath_backend_")
                || l.starts_with("sip_fastpath_request_duration_seconds_count")
                || l.starts_with("sip_fastpath_dialogs"))
    }) {
        println!("{line}");
    }
    tests::interrupt::check()?;
    operate(&bed, &admin)?;
    let ok = r.failed == 0 && r.successful == CALLS as u64;
    drop(prometheus);
    drop(bed);
    println!("\nsip-fastpath stopped; namespaces removed");
    if !ok {
        anyhow::bail!("{} of {CALLS} calls failed", r.failed);
    }
    tests::interrupt::check()?;
    two_directions()
}

/// What an operator sees and does: `ctl status` and `ctl backends` through the admin API, the
/// flood source blocked at once with `ctl block`, and Prometheus answering a query over what
/// it scraped during the calls.
fn operate(bed: &Bed, admin: &Admin) -> anyhow::Result<()> {
    let edge = &bed.lan.host("edge").ns;
    for args in [
        &["status"][..],
        &["backends"][..],
        &["block", FLOOD, "--ttl", "3600"][..],
    ] {
        let run = admin.ctl(edge, "alice", args)?;
        println!("\n$ sip-fastpath ctl {}\n{}", args.join(" "), run.stdout);
        anyhow::ensure!(run.ok, "ctl {args:?}: {}", run.stderr);
    }
    wait_for_scrape(edge)?;
    // Scrapes are a second apart: two more, and the latest sample is from after the calls.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let query = "sum by (reason) (sip_fastpath_kernel_packets_total)";
    println!("$ curl http://127.0.0.1:9090/api/v1/query --data-urlencode 'query={query}'");
    let mut series = evaluate(edge, query)?;
    series.sort_by_key(|s| s["metric"]["reason"].as_str().unwrap_or("").to_string());
    anyhow::ensure!(
        !series.is_empty(),
        "Prometheus answered no series for {query}"
    );
    for s in series {
        let value: f64 = s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0);
        println!(
            "  {:<28} {value:>10.0}",
            s["metric"]["reason"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Part 2: a registered phone behind NAT receives calls through the edge.
fn two_directions() -> anyhow::Result<()> {
    println!(
        "\n--- both directions ---\ncreating namespaces sfp-phones-*: sip-fastpath ({EDGE}), a \
         registrar (Kamailio, {REGISTRAR}) behind it, and two phones behind home routers: alice \
         10.0.1.2 (NAT 192.0.2.21), bob 10.0.2.2 (NAT 192.0.2.22)"
    );
    let phones = Phones::new("phones", "flow_secret = \"demo: one secret per cluster\"")?;
    for (which, user) in [("a", "alice"), ("b", "bob")] {
        let r = phones.register(which, user)?;
        println!(
            "{user} registers through the edge (Path with its flow token): {}",
            if r.successful == 1 {
                "200 OK"
            } else {
                "FAILED"
            }
        );
        if r.successful != 1 {
            anyhow::bail!("{user} could not register");
        }
    }
    let mut bob = phones.answer("b", "bob", "uas_call", &[])?;
    let calls = 5;
    let r = phones.run("a", "uac_call", calls, &["-s", "bob"])?;
    println!(
        "alice calls bob {calls} times and hangs up: {} successful, {} failed \
         (INVITE: alice → edge → registrar → edge → bob's NAT binding)",
        r.successful, r.failed
    );
    let first = std::fs::read_to_string(&bob.log)?
        .split("UDP message received")
        .nth(1)
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("INVITE "))
                .map(str::to_string)
        })
        .unwrap_or_default();
    println!("  bob's phone got: {first}  (its private Contact, reached through NAT)");
    bob.kill();
    let _bob = phones.answer("b", "bob", "uas_hangup", &["-d", "300"])?;
    let back = phones.run("a", "uac_wait_bye", calls, &["-s", "bob"])?;
    println!(
        "alice calls bob {calls} times and bob hangs up: {} successful, {} failed \
         (BYE: bob → edge → registrar → edge → alice's NAT binding)",
        back.successful, back.failed
    );
    let out = std::process::Command::new(tests::binary())
        .args(["stats", "--iface", EDGE_IFACE, "--pin-root"])
        .arg(&phones.daemon.pin_root)
        .output()?;
    let stats = String::from_utf8_lossy(&out.stdout);
    let routing = stats
        .split_once("requests by side")
        .map_or(String::new(), |(_, r)| format!("requests by side{r}"));
    println!("\n$ sip-fastpath stats --iface {EDGE_IFACE} (routing part)\n{routing}");
    let ok =
        r.failed == 0 && back.failed == 0 && r.successful + back.successful == 2 * u64::from(calls);
    drop(phones);
    println!("sip-fastpath and Kamailio stopped; namespaces removed");
    if !ok {
        anyhow::bail!("calls between the phones failed");
    }
    Ok(())
}
