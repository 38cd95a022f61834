//! `cargo xtask demo`: sip-fastpath as a SIP load balancer in network namespaces. A caller
//! (sipp) places calls through sip-fastpath, XDP attached, to two backends (sipp), while a
//! third host floods it with junk, scanner probes and REGISTERs. Prints the call results, the
//! per-backend split, the kernel counters and a few metrics, then removes everything.

use std::sync::atomic::{AtomicBool, Ordering};

use tests::{
    EDGE_IFACE,
    bed::{B1, B2, Bed, EDGE, FLOOD, config, flood},
    require_root,
};

const CALLS: u32 = 300;
const RATE: u32 = 50;

fn main() -> anyhow::Result<()> {
    require_root();
    println!(
        "creating namespaces sfp-demo-*: a switch, sip-fastpath ({EDGE}), a caller (192.0.2.2), \
         backends {B1} and {B2}, a flood source ({FLOOD})"
    );
    let bed = Bed::new("demo", "uas_call", &config(1000))?;
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
    let ok = r.failed == 0 && r.successful == CALLS as u64;
    drop(bed);
    println!("\nsip-fastpath stopped; namespaces removed");
    if !ok {
        anyhow::bail!("{} of {CALLS} calls failed", r.failed);
    }
    Ok(())
}
