//! The two-way edge end to end: registrations through the edge (Path with flow tokens) to a
//! real registrar, calls to phones behind NAT, in-dialog routing by Route set across a restart
//! and across two nodes, calls from the inside out, and what the edge refuses to relay. Every
//! host is a network namespace on one switched LAN (phones behind NAT hosts off it). Needs
//! root, sipp, kamailio, dnsmasq and the built binary (`cargo xtask test` does all of them).

use std::time::Duration;

use tests::{
    Daemon, EDGE_ADDR, EDGE_IFACE,
    bed::config_full,
    kamailio::{self, Kamailio},
    lan::Lan,
    require_root,
    sipp::{Backend, Caller, CallerReport, LogDir},
};

const SECRET: &str = "flow_secret = \"edge tests: one secret for every node\"";

fn assert_all_succeeded(r: &CallerReport, calls: u64, what: &str) {
    assert_eq!(
        (r.successful, r.failed),
        (calls, 0),
        "{what}: sipp {} successful, {} failed of {calls} (exit {})",
        r.successful,
        r.failed,
        r.exit_code
    );
}

/// A sipp run from `ns` at `local` to the edge.
fn sipp(
    ns: &tests::Netns,
    local: &str,
    scenario: &str,
    calls: u32,
    extra: &[&str],
    logs: &LogDir,
) -> anyhow::Result<CallerReport> {
    Caller {
        ns,
        local,
        target: &format!("{EDGE_ADDR}:5060"),
        scenario,
        calls,
        rate: 5,
        limit: 10,
        timeout: Duration::from_secs(60),
        trace: true,
        lenient: false,
        extra,
    }
    .run(&logs.0)
}

/// The value of one Prometheus sample `series` (name with labels), summed over lines that
/// start with it (every worker's).
fn metric_sum(metrics: &str, series_prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metrics(lan: &Lan) -> anyhow::Result<String> {
    lan.host("edge").ns.exec(&[
        "curl",
        "-sf",
        "--max-time",
        "5",
        "http://127.0.0.1:9464/metrics",
    ])
}

#[test]
fn phones_behind_nat_register_through_the_edge_and_call_each_other() -> anyhow::Result<()> {
    require_root();
    let tag = "edge-reg";
    let mut lan = Lan::new(
        tag,
        &[
            ("edge", EDGE_ADDR),
            ("registrar", "192.0.2.11"),
            ("nat-a", "192.0.2.21"),
            ("nat-b", "192.0.2.22"),
        ],
    )?;
    lan.add_natted("nat-a", "phone-a", 1)?;
    lan.add_natted("nat-b", "phone-b", 2)?;
    let logs = LogDir::new(tag)?;
    let cfg = kamailio::config(
        "registrar.cfg",
        &[("LISTEN", "192.0.2.11"), ("PATH_MODE", "0")],
    )?;
    let _registrar = Kamailio::start(&lan.host("registrar").ns, &cfg, &logs.0, "registrar")?;
    let config = config_full(
        1000,
        SECRET,
        "[[backends]]\naddress = \"192.0.2.11:5060\"\n",
    );
    let _daemon = Daemon::start(&lan.host("edge").ns, EDGE_IFACE, "auto", &config, tag)?;

    let (a, b) = (
        lan.natted("phone-a", "nat-a"),
        lan.natted("phone-b", "nat-b"),
    );
    for (phone, user) in [(&a, "alice"), (&b, "bob")] {
        let r = sipp(
            phone.ns,
            &phone.addr,
            "phone_register",
            1,
            &["-s", user, "-key", "supported", "timer"],
            &logs,
        )?;
        assert_all_succeeded(&r, 1, &format!("{user} registers"));
    }

    // Bob answers; Alice calls him (edge → registrar → Path → edge → Bob's NAT binding) and
    // hangs up; every in-dialog request goes along the Route set through the edge.
    let mut bob = Backend::start_with(b.ns, &b.addr, "uas_call", &logs.0, &["-s", "bob"])?;
    let r = sipp(a.ns, &a.addr, "uac_call", 3, &["-s", "bob"], &logs)?;
    assert_all_succeeded(&r, 3, "alice calls bob and hangs up");
    let got = bob.requests_by_call()?;
    for call_id in &r.call_ids {
        assert_eq!(
            got.get(call_id).map(Vec::as_slice),
            Some(&["INVITE".to_string(), "ACK".into(), "BYE".into()][..]),
            "what reached bob for {call_id}"
        );
    }
    bob.kill();

    // Now Bob hangs up: his BYE goes edge → registrar → edge → Alice's NAT binding.
    let _bob = Backend::start_with(
        b.ns,
        &b.addr,
        "uas_hangup",
        &logs.0,
        &["-s", "bob", "-d", "300"],
    )?;
    let r = sipp(a.ns, &a.addr, "uac_wait_bye", 3, &["-s", "bob"], &logs)?;
    assert_all_succeeded(&r, 3, "alice calls bob, bob hangs up");

    let m = metrics(&lan)?;
    let by_flow = metric_sum(&m, "sip_fastpath_routed_total{by=\"flow\"");
    assert!(
        by_flow >= 12.0,
        "INVITE, ACK and BYE of 6 calls and their in-dialog requests by flow token: {by_flow}\n{m}"
    );
    assert!(
        metric_sum(
            &m,
            "sip_fastpath_backend_registrations_total{backend=\"192.0.2.11:5060\"}"
        ) >= 2.0
    );
    assert!(metric_sum(&m, "sip_fastpath_requests_total{side=\"inside\"") >= 6.0);
    Ok(())
}
