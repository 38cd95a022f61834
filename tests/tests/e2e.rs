//! End to end: sipp callers → sip-fastpath (XDP attached) → two sipp backends, each in its own
//! network namespace on one switched LAN. Needs root, sipp and the built binary
//! (`cargo xtask test` does all three).

use std::time::Duration;

use tests::{
    Daemon,
    lan::{LAN_EDGE_IFACE, Lan},
    require_root,
    sipp::{Backend, Caller, CallerReport, LogDir},
};

const EDGE: &str = "192.0.2.1";
const CALLER: &str = "192.0.2.2";
const B1: &str = "192.0.2.11";
const B2: &str = "192.0.2.12";
const FLOOD: &str = "192.0.2.66";

fn config(health_interval_ms: u64) -> String {
    format!(
        r#"
sip_ports = [5060]
metrics = "127.0.0.1:9464"
[[backends]]
address = "{B1}:5060"
weight = 1
[[backends]]
address = "{B2}:5060"
weight = 1
[health]
interval_ms = {health_interval_ms}
timeout_ms = {timeout}
fall = 2
rise = 2
[filter]
rate_limit_pps = 100
rate_limit_burst = 200
allowlist = ["192.0.2.0/28"]
"#,
        timeout = health_interval_ms / 2
    )
}

/// The LAN, the daemon and two backends running `uas`.
/// Fields drop in order: the daemon and the backends stop before their namespaces go.
struct Bed {
    daemon: Daemon,
    backends: Vec<Backend>,
    logs: LogDir,
    lan: Lan,
}

impl Bed {
    fn new(tag: &str, uas: &str, health_interval_ms: u64) -> anyhow::Result<Self> {
        require_root();
        let lan = Lan::new(
            tag,
            &[
                ("edge", EDGE),
                ("caller", CALLER),
                ("b1", B1),
                ("b2", B2),
                ("flood", FLOOD),
            ],
        )?;
        let logs = LogDir::new(tag)?;
        let backends = vec![
            Backend::start(&lan.host("b1").ns, B1, uas, &logs.0)?,
            Backend::start(&lan.host("b2").ns, B2, uas, &logs.0)?,
        ];
        let daemon = Daemon::start(
            &lan.host("edge").ns,
            LAN_EDGE_IFACE,
            "auto",
            &config(health_interval_ms),
            tag,
        )?;
        Ok(Bed {
            lan,
            daemon,
            backends,
            logs,
        })
    }

    fn call(&self, scenario: &str, calls: u32, rate: u32) -> anyhow::Result<CallerReport> {
        Caller {
            ns: &self.lan.host("caller").ns,
            local: CALLER,
            target: &format!("{EDGE}:5060"),
            scenario,
            calls,
            rate,
            limit: 100,
            timeout: Duration::from_secs(120),
            trace: true,
        }
        .run(&self.logs.0)
    }

    /// The daemon's `/metrics`, fetched from inside its namespace.
    fn metrics(&self) -> anyhow::Result<String> {
        self.lan.host("edge").ns.exec(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            "http://127.0.0.1:9464/metrics",
        ])
    }
}

fn assert_all_succeeded(r: &CallerReport, calls: u64) {
    assert_eq!(
        (r.successful, r.failed),
        (calls, 0),
        "sipp: {} successful, {} failed of {calls} (exit {})",
        r.successful,
        r.failed,
        r.exit_code
    );
}

/// Every call of the caller reached exactly one backend, with all of `methods`.
fn assert_affinity(bed: &Bed, r: &CallerReport, methods: &[&str]) -> anyhow::Result<Vec<usize>> {
    let per_backend: Vec<_> = bed
        .backends
        .iter()
        .map(Backend::requests_by_call)
        .collect::<anyhow::Result<_>>()?;
    let mut counts = vec![0; per_backend.len()];
    for call_id in &r.call_ids {
        let at: Vec<usize> = (0..per_backend.len())
            .filter(|&i| per_backend[i].contains_key(call_id))
            .collect();
        assert_eq!(at.len(), 1, "call {call_id} reached backends {at:?}");
        let got = &per_backend[at[0]][call_id];
        for m in methods {
            assert!(
                got.iter().any(|g| g == m),
                "call {call_id}: no {m} at backend {}: {got:?}",
                at[0]
            );
        }
        counts[at[0]] += 1;
    }
    Ok(counts)
}

#[test]
fn calls_split_between_backends_with_every_message_of_a_call_at_one() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-split", "uas_call", 1000)?;
    // 400 calls: a fair split is 200 ± 10 (one standard deviation), the bound is 4 of them.
    let calls = 400;
    let r = bed.call("uac_call", calls, 100)?;
    assert_all_succeeded(&r, calls as u64);
    assert_eq!(r.call_ids.len(), calls as usize);
    let counts = assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?;
    eprintln!(
        "{calls} calls: split {counts:?}, response time p50 {} ms p99 {} ms, {} retransmissions",
        r.percentile(50.0),
        r.percentile(99.0),
        r.retransmissions
    );
    let share = counts[0] as f64 / calls as f64;
    assert!(
        (0.4..=0.6).contains(&share),
        "equal weights: split {counts:?} is outside 50% ± 10%"
    );
    let m = bed.metrics()?;
    assert!(
        m.contains(&format!(
            "sip_fastpath_backend_up{{backend=\"{B1}:5060\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains("sip_fastpath_request_duration_seconds_bucket"),
        "{m}"
    );
    assert!(
        m.contains("sip_fastpath_kernel_packets_total{reason="),
        "{m}"
    );
    Ok(())
}

/// One kind of call, `calls` times, through the proxy: all succeed at sipp, and each reached
/// one backend with `methods`.
fn flow(tag: &str, uac: &str, uas: &str, calls: u32, methods: &[&str]) -> anyhow::Result<()> {
    let bed = Bed::new(tag, uas, 1000)?;
    let r = bed.call(uac, calls, 20)?;
    assert_all_succeeded(&r, calls as u64);
    let counts = assert_affinity(&bed, &r, methods)?;
    eprintln!("{uac}: {calls} calls, split {counts:?}");
    Ok(())
}

#[test]
fn cancel_before_answer() -> anyhow::Result<()> {
    flow(
        "e2e-cancel",
        "uac_cancel",
        "uas_cancel",
        20,
        &["INVITE", "CANCEL", "ACK"],
    )
}

#[test]
fn busy_callee() -> anyhow::Result<()> {
    flow("e2e-busy", "uac_busy", "uas_busy", 20, &["INVITE", "ACK"])
}

#[test]
fn re_invite_inside_a_dialog() -> anyhow::Result<()> {
    flow(
        "e2e-reinv",
        "uac_reinvite",
        "uas_reinvite",
        20,
        &["INVITE", "ACK", "BYE"],
    )
}
