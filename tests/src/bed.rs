//! The end-to-end test bed: a switched LAN with a caller, sip-fastpath (XDP attached), two sipp
//! backends and a flood source, each in its own namespace. Used by the e2e tests and the demo.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    Daemon, EDGE_IFACE,
    dns::{Dnsmasq, Zone},
    lan::Lan,
    require_root,
    sipp::{Backend, Caller, CallerReport, LogDir},
};

pub const EDGE: &str = crate::EDGE_ADDR;
pub const CALLER: &str = "192.0.2.2";
pub const B1: &str = "192.0.2.11";
pub const B2: &str = "192.0.2.12";
pub const FLOOD: &str = "192.0.2.66";
/// The DNS server of [`Bed::with_dns`], on the edge's loopback.
pub const DNS_SERVER: &str = "127.0.0.1:5353";

/// The daemon's config for the bed: both backends, probes every `health_interval_ms`, the
/// LAN's hosts allowlisted (the flood source is not).
pub fn config(health_interval_ms: u64) -> String {
    config_with(
        health_interval_ms,
        &format!(
            "[[backends]]\naddress = \"{B1}:5060\"\nweight = 1\n\
             [[backends]]\naddress = \"{B2}:5060\"\nweight = 1\n"
        ),
    )
}

/// The bed's config with other `backends` (TOML tables: `[[backends]]`, `[dns]`).
pub fn config_with(health_interval_ms: u64, backends: &str) -> String {
    config_full(health_interval_ms, "", backends)
}

/// The bed's config with top-level settings `top` (before any table: `flow_secret = …`) and
/// the tables `backends` (`[[backends]]`, `[dns]`, `[[routes]]`).
pub fn config_full(health_interval_ms: u64, top: &str, backends: &str) -> String {
    format!(
        r#"
sip_ports = [5060]
metrics = "127.0.0.1:9464"
{top}
{backends}
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
pub struct Bed {
    pub daemon: Daemon,
    pub dns: Option<Dnsmasq>,
    pub backends: Vec<Backend>,
    pub logs: LogDir,
    pub lan: Lan,
}

impl Bed {
    pub fn new(tag: &str, uas: &str, config: &str) -> anyhow::Result<Self> {
        Self::build(tag, (uas, &[]), config, None)
    }

    /// The bed with backends running `uas` with more sipp arguments (`-d ms`).
    pub fn with_uas_args(
        tag: &str,
        uas: &str,
        uas_args: &[&str],
        config: &str,
    ) -> anyhow::Result<Self> {
        Self::build(tag, (uas, uas_args), config, None)
    }

    /// The bed with a DNS server serving `zone` at [`DNS_SERVER`], started before the daemon.
    pub fn with_dns(tag: &str, uas: &str, config: &str, zone: &Zone) -> anyhow::Result<Self> {
        Self::build(tag, (uas, &[]), config, Some(zone))
    }

    fn build(
        tag: &str,
        (uas, uas_args): (&str, &[&str]),
        config: &str,
        zone: Option<&Zone>,
    ) -> anyhow::Result<Self> {
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
            Backend::start_with(&lan.host("b1").ns, B1, uas, &logs.0, uas_args)?,
            Backend::start_with(&lan.host("b2").ns, B2, uas, &logs.0, uas_args)?,
        ];
        let dns = match zone {
            Some(zone) => Some(Dnsmasq::start(
                &lan.host("edge").ns,
                DNS_SERVER.parse()?,
                zone,
                &logs.0,
            )?),
            None => None,
        };
        let daemon = Daemon::start(&lan.host("edge").ns, EDGE_IFACE, "auto", config, tag)?;
        Ok(Bed {
            lan,
            daemon,
            dns,
            backends,
            logs,
        })
    }

    pub fn call(&self, scenario: &str, calls: u32, rate: u32) -> anyhow::Result<CallerReport> {
        self.call_with(scenario, calls, rate, &[])
    }

    /// [`Self::call`] with more sipp arguments (`-d ms`, `-s user`, `-t un`).
    pub fn call_with(
        &self,
        scenario: &str,
        calls: u32,
        rate: u32,
        extra: &[&str],
    ) -> anyhow::Result<CallerReport> {
        call_from(&self.lan, &self.logs, scenario, calls, rate, extra)
    }

    /// The daemon's `/metrics`, fetched from inside its namespace.
    pub fn metrics(&self) -> anyhow::Result<String> {
        crate::metrics_of(&self.lan.host("edge").ns)
    }
}

/// `calls` of `scenario` from the LAN's caller host to the edge. A free function over the
/// LAN and the logs, so a test can run calls while it holds the daemon mutably (a restart).
pub fn call_from(
    lan: &Lan,
    logs: &LogDir,
    scenario: &str,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> anyhow::Result<CallerReport> {
    let target = format!("{EDGE}:5060");
    Caller {
        calls,
        rate,
        extra,
        ..Caller::new(&lan.host("caller").ns, CALLER, &target, scenario)
    }
    .run(&logs.0)
}

/// `calls` of `scenario` from the caller host to `target` (an address of the edge, or a relay in
/// front of it), with more sipp arguments.
pub fn call_to(
    bed: &Bed,
    target: &str,
    scenario: &str,
    calls: u32,
    extra: &[&str],
) -> anyhow::Result<CallerReport> {
    Caller {
        calls,
        rate: 10,
        extra,
        ..Caller::new(&bed.lan.host("caller").ns, CALLER, target, scenario)
    }
    .run(&bed.logs.0)
}

/// Floods the edge from the flood host until `stop` (or 60 s, or `max` packets): `scanners`
/// friendly-scanner OPTIONS first (while the source is within its rate-limit burst), then
/// TLS-looking junk and REGISTERs in turn. Returns the packets sent.
pub fn flood(bed: &Bed, stop: &AtomicBool, scanners: u32, max: u64) -> anyhow::Result<u64> {
    let socket = bed
        .lan
        .host("flood")
        .ns
        .udp_socket(format!("{FLOOD}:5060").parse()?)?;
    let edge: SocketAddr = format!("{EDGE}:5060").parse()?;
    let mut sent = 0u64;
    for i in 0..scanners {
        let scan = format!(
            "OPTIONS sip:100@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {FLOOD}:5060;branch=z9hG4bKs{i}\r\n\
             From: <sip:100@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: scan{i}\r\nCSeq: 1 OPTIONS\r\n\
             User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(scan.as_bytes(), edge)?;
        sent += 1;
    }
    let register = crate::sip_message("REGISTER", "flood", 1);
    let until = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until && sent < max {
        socket.send_to(crate::TLS_JUNK, edge)?;
        socket.send_to(&register, edge)?;
        sent += 2;
        if sent.is_multiple_of(128) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(sent)
}

/// sipp completed every one of `calls`.
pub fn assert_all_succeeded(r: &CallerReport, calls: u64) {
    assert_eq!(
        (r.successful, r.failed),
        (calls, 0),
        "sipp: {} successful, {} failed of {calls} (exit {})",
        r.successful,
        r.failed,
        r.exit_code
    );
}

/// Every call of the caller reached exactly one backend, with all of `methods`; the calls per
/// backend.
pub fn assert_affinity(
    bed: &Bed,
    r: &CallerReport,
    methods: &[&str],
) -> anyhow::Result<Vec<usize>> {
    let per_backend: Vec<_> = bed
        .backends
        .iter()
        .map(Backend::requests_by_call)
        .collect::<anyhow::Result<_>>()?;
    assert!(
        !r.call_ids.is_empty(),
        "the caller's message log named no calls"
    );
    assert_eq!(
        r.call_ids.len() as u64,
        r.successful,
        "calls in the caller's log vs sipp's count"
    );
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
