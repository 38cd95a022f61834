//! The two-way edge end to end: registrations through the edge (Path with flow tokens) to a
//! real registrar, calls to phones behind NAT, in-dialog routing by Route set across a restart
//! and across two nodes, calls from the inside out, and what the edge refuses to relay. Every
//! host is a network namespace on one switched LAN (phones behind NAT hosts off it). Needs
//! root, sipp, kamailio, dnsmasq and the built binary (`cargo xtask test` does all of them).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use tests::{
    Daemon, EDGE_ADDR, EDGE_IFACE, Netns,
    bed::{B1, B2, Bed, CALLER, DNS_SERVER, FLOOD, assert_affinity, call_from, config_full},
    dns::{Srv, Zone},
    kamailio::{self, Kamailio},
    lan::Lan,
    metrics_of,
    phones::Phones,
    require_root,
    sipp::{Backend, Caller, CallerReport, LogDir},
    udp::{collect, exchange, final_response, final_response_to, header_values, status},
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

/// The value of one Prometheus sample `series` (name with labels), summed over lines that
/// start with it (every worker's).
fn metric_sum(metrics: &str, series_prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Scrapes `edge` until the sum of `series_prefix` reaches `at_least` (the workers export their
/// counts once a second); fails after 5 s with the last scrape.
fn wait_for_metric(edge: &Lan, series_prefix: &str, at_least: f64) -> anyhow::Result<f64> {
    wait_for_metric_of(&edge.host("edge").ns, series_prefix, at_least)
}

/// [`wait_for_metric`] for the edge in `ns`.
fn wait_for_metric_of(ns: &Netns, series_prefix: &str, at_least: f64) -> anyhow::Result<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics_of(ns)?;
        let v = metric_sum(&m, series_prefix);
        if v >= at_least {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{series_prefix} is {v}, not {at_least} or more, after 5 s\n{m}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn phones_behind_nat_register_through_the_edge_and_call_each_other() -> anyhow::Result<()> {
    let phones = Phones::new("edge-reg", SECRET)?;
    for (which, user) in [("a", "alice"), ("b", "bob")] {
        let r = phones.register(which, user)?;
        assert_all_succeeded(&r, 1, &format!("{user} registers"));
    }
    // Bob answers; Alice calls him (edge → registrar → Path → edge → Bob's NAT binding) and
    // hangs up; every in-dialog request goes along the Route set through the edge.
    let mut bob = phones.answer("b", "bob", "uas_call", &[])?;
    let r = phones.run("a", "uac_call", 3, &["-s", "bob"])?;
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
    let _bob = phones.answer("b", "bob", "uas_hangup", &["-d", "300"])?;
    let r = phones.run("a", "uac_wait_bye", 3, &["-s", "bob"])?;
    assert_all_succeeded(&r, 3, "alice calls bob, bob hangs up");

    let edge = &phones.lan.host("edge").ns;
    // Bob's INVITEs (from the registrar), and ACK and BYE of every call, left by a flow token.
    wait_for_metric_of(edge, "sip_fastpath_routed_total{by=\"flow\"", 12.0)?;
    wait_for_metric_of(
        edge,
        "sip_fastpath_backend_registrations_total{backend=\"192.0.2.11:5060\"}",
        2.0,
    )?;
    wait_for_metric_of(edge, "sip_fastpath_requests_total{side=\"inside\"", 6.0)?;
    Ok(())
}

/// Both bed backends as `[[backends]]` tables.
fn two_backends() -> String {
    format!("[[backends]]\naddress = \"{B1}:5060\"\n[[backends]]\naddress = \"{B2}:5060\"\n")
}

/// Calls are held between ACK and BYE while the edge restarts (same config, same secret); the
/// BYEs, from the caller (`uac_hold`) or the callee (`uas_hangup`), reach the right hop through a
/// process that never saw the calls.
fn restart_between_ack_and_bye(
    tag: &str,
    uac: &str,
    uac_args: &[&str],
    uas: &str,
    uas_args: &[&str],
    routed_by: &str,
) -> anyhow::Result<()> {
    let config = config_full(1000, SECRET, &two_backends());
    let mut bed = Bed::with_uas_args(tag, uas, uas_args, &config)?;
    let calls = 20;
    let Bed {
        daemon, lan, logs, ..
    } = &mut bed;
    let report = std::thread::scope(|s| {
        let (lan, logs) = (&*lan, &*logs);
        let caller = s.spawn(move || call_from(lan, logs, uac, calls, 20, uac_args));
        // 20 calls at 20/s are answered and ACKed within ~1 s; the BYEs come 5 s after.
        std::thread::sleep(Duration::from_millis(2000));
        let restarted = daemon.restart();
        let report = caller.join().expect("caller thread");
        restarted.and(report)
    })?;
    tests::bed::assert_all_succeeded(&report, u64::from(calls));
    let methods: &[&str] = if uas == "uas_hangup" {
        &["INVITE", "ACK"]
    } else {
        &["INVITE", "ACK", "BYE"]
    };
    let split = assert_affinity(&bed, &report, methods)?;
    // The restarted process routed the BYEs (its counters started at zero).
    let routed = wait_for_metric(
        &bed.lan,
        &format!("sip_fastpath_routed_total{{by=\"{routed_by}\""),
        f64::from(calls),
    )?;
    eprintln!(
        "{tag}: {calls} calls over a restart, split {split:?}, {routed} routed by {routed_by}"
    );
    Ok(())
}

#[test]
fn a_restart_between_ack_and_bye_loses_no_call_when_the_caller_hangs_up() -> anyhow::Result<()> {
    // The caller's BYE: our entries popped, the last one plain, so the backend's Contact.
    restart_between_ack_and_bye(
        "edge-rst-a",
        "uac_hold",
        &["-d", "5000"],
        "uas_call",
        &[],
        "route",
    )
}

#[test]
fn a_restart_between_ack_and_bye_loses_no_call_when_the_callee_hangs_up() -> anyhow::Result<()> {
    // The backend's BYE: the last entry of ours carries the caller's flow token.
    restart_between_ack_and_bye(
        "edge-rst-b",
        "uac_wait_bye",
        &[],
        "uas_hangup",
        &["-d", "5000"],
        "flow",
    )
}

#[test]
fn subscribe_and_notify_dialogs_cross_the_edge_both_ways() -> anyhow::Result<()> {
    let bed = Bed::new(
        "edge-sub",
        "uas_subscribe",
        &config_full(1000, SECRET, &two_backends()),
    )?;
    let r = bed.call("uac_subscribe", 10, 10)?;
    tests::bed::assert_all_succeeded(&r, 10);
    // Both SUBSCRIBEs (the second inside the dialog) at the one backend of each subscription;
    // both NOTIFYs reached the watcher, or sipp would have failed the call.
    assert_affinity(&bed, &r, &["SUBSCRIBE"])?;
    let subscribes: usize = bed
        .backends
        .iter()
        .map(|b| b.requests_by_call().map(|c| c.values().flatten().count()))
        .sum::<anyhow::Result<usize>>()?;
    assert_eq!(
        subscribes,
        2 * r.call_ids.len(),
        "two SUBSCRIBEs per subscription"
    );
    Ok(())
}

#[test]
fn a_refer_dialog_and_its_notify_cross_the_edge() -> anyhow::Result<()> {
    let bed = Bed::new(
        "edge-refer",
        "uas_refer",
        &config_full(1000, SECRET, &two_backends()),
    )?;
    let r = bed.call("uac_refer", 10, 10)?;
    tests::bed::assert_all_succeeded(&r, 10);
    // The NOTIFYs went to the referrer by its flow token.
    wait_for_metric(&bed.lan, "sip_fastpath_routed_total{by=\"flow\"", 10.0)?;
    Ok(())
}

#[test]
fn registrations_of_one_user_reach_one_registrar_whatever_their_call_id() -> anyhow::Result<()> {
    let bed = Bed::new(
        "edge-aor",
        "uas_register",
        &config_full(1000, SECRET, &two_backends()),
    )?;
    let socket = bed
        .lan
        .host("caller")
        .ns
        .udp_socket(format!("{CALLER}:5062").parse()?)?;
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    let (users, times) = (12, 4);
    for round in 0..times {
        for user in 0..users {
            let register = format!(
                "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER}:5062;rport;branch=z9hG4bK-r{user}-{round}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:user{user}@example.test>;tag=f{round}\r\nTo: <sip:user{user}@example.test>\r\n\
                 Call-ID: reg-user{user}-{round}\r\nCSeq: 1 REGISTER\r\nContact: <sip:user{user}@{CALLER}:5062>\r\n\
                 Expires: 600\r\nContent-Length: 0\r\n\r\n"
            );
            let got = exchange(
                &socket,
                edge,
                register.as_bytes(),
                Duration::from_millis(300),
            )?;
            let answer = final_response(&got).unwrap_or_default();
            assert_eq!(
                status(&answer),
                Some(200),
                "user{user} round {round}: {answer}"
            );
        }
    }
    let mut registrar_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, b) in bed.backends.iter().enumerate() {
        for call_id in b.requests_by_call()?.keys() {
            let user = call_id.rsplit_once('-').map_or("", |(u, _)| u).to_string();
            registrar_of.entry(user).or_default().insert(i);
        }
    }
    assert_eq!(registrar_of.len(), users, "{registrar_of:?}");
    assert!(
        registrar_of.values().all(|r| r.len() == 1),
        "every user's {times} registrations at one registrar: {registrar_of:?}"
    );
    let used: BTreeSet<_> = registrar_of.values().flatten().collect();
    assert_eq!(
        used.len(),
        2,
        "users spread over both registrars: {registrar_of:?}"
    );
    Ok(())
}

#[test]
fn a_backend_calls_out_to_a_carrier_found_by_srv_and_by_a_static_route() -> anyhow::Result<()> {
    let zone = Zone {
        service: "_sip._udp.carrier.test",
        records: vec![Srv {
            target: "gw.carrier.test",
            port: 5060,
            priority: 10,
            weight: 1,
        }],
        hosts: vec![("gw.carrier.test", FLOOD)],
        ttl: 30,
    };
    let tables = format!(
        "{}[dns]\nservers = [\"{DNS_SERVER}\"]\n[[routes]]\ndomain = \"static.test\"\n\
         destination = \"{FLOOD}:5060\"\n",
        two_backends()
    );
    let bed = Bed::with_dns(
        "edge-out",
        "uas_call",
        &config_full(1000, SECRET, &tables),
        &zone,
    )?;
    // The carrier, outside: the flood host's address.
    let carrier = Backend::start(&bed.lan.host("flood").ns, FLOOD, "uas_call", &bed.logs.0)?;
    let mut placed = BTreeSet::new();
    for domain in ["carrier.test", "static.test"] {
        // The PBX is backend 1's host, calling from another port.
        let target = format!("{EDGE_ADDR}:5060");
        let r = Caller {
            calls: 5,
            rate: 5,
            extra: &["-p", "5070", "-s", "+15551234", "-key", "domain", domain],
            ..Caller::new(&bed.lan.host("b1").ns, B1, &target, "pbx_call_out")
        }
        .run(&bed.logs.0)?;
        tests::bed::assert_all_succeeded(&r, 5);
        placed.extend(r.call_ids);
    }
    let at_carrier = carrier.requests_by_call()?;
    for call_id in &placed {
        assert_eq!(
            at_carrier.get(call_id).map(Vec::as_slice),
            Some(&["INVITE".to_string(), "ACK".into(), "BYE".into()][..]),
            "{call_id} at the carrier"
        );
    }
    for by in ["dns", "static"] {
        wait_for_metric(
            &bed.lan,
            &format!("sip_fastpath_routed_total{{by=\"{by}\""),
            5.0,
        )?;
    }
    Ok(())
}

/// A real flow token of this edge, taken from a Record-Route a backend received.
fn token_seen_by(backend: &Backend) -> anyhow::Result<String> {
    let log = std::fs::read_to_string(&backend.log)?;
    log.split(['<', '>', ',', ' '])
        .find_map(|part| {
            let user = part
                .strip_prefix("sip:")?
                .strip_suffix(&format!("@{EDGE_ADDR}:5060;lr"))?;
            Some(user.to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("no flow token in {}", backend.log.display()))
}

#[test]
fn the_edge_refuses_to_relay_and_answers_keepalives() -> anyhow::Result<()> {
    let top = format!("{SECRET}\ndomains = [\"example.test\"]");
    let bed = Bed::new(
        "edge-refuse",
        "uas_call",
        &config_full(1000, &top, &two_backends()),
    )?;
    // The would-be destination of every forged request: a socket on the flood host.
    let victim = bed
        .lan
        .host("flood")
        .ns
        .udp_socket(format!("{FLOOD}:5060").parse()?)?;
    let r = bed.call("uac_call", 2, 10)?;
    tests::bed::assert_all_succeeded(&r, 2);
    let real = bed
        .backends
        .iter()
        .find_map(|b| token_seen_by(b).ok())
        .expect("a backend saw a token");
    let mut tampered = real.clone().into_bytes();
    tampered[4] = if tampered[4] == b'Q' { b'R' } else { b'Q' };
    let tampered = String::from_utf8(tampered)?;

    let socket = bed
        .lan
        .host("caller")
        .ns
        .udp_socket(format!("{CALLER}:5064").parse()?)?;
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    let request = |method: &str, uri: &str, to_tag: &str, route: &str, n: u32| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER}:5064;rport;branch=z9hG4bK-relay-{n}\r\n{route}\
             Max-Forwards: 70\r\nFrom: <sip:mallory@{CALLER}>;tag=m{n}\r\nTo: <{uri}>{to_tag}\r\n\
             Call-ID: relay-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:mallory@{CALLER}:5064>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let cases = [
        (
            request(
                "INVITE",
                &format!("sip:victim@{FLOOD}"),
                "",
                &format!("Route: <sip:{EDGE_ADDR};lr>, <sip:{FLOOD};lr>\r\n"),
                1,
            ),
            "403 Forbidden (not a relay)",
        ),
        (
            request(
                "INVITE",
                "sip:bob@example.test",
                "",
                &format!("Route: <sip:AAECAwQFBgcICQoLDA0ODxAR@{EDGE_ADDR};lr>\r\n"),
                2,
            ),
            "403 Forbidden (invalid flow token)",
        ),
        (
            request(
                "INVITE",
                "sip:bob@example.test",
                "",
                &format!("Route: <sip:{tampered}@{EDGE_ADDR}:5060;lr>\r\n"),
                3,
            ),
            "403 Forbidden (invalid flow token)",
        ),
        (
            request(
                "BYE",
                &format!("sip:victim@{FLOOD}"),
                ";tag=v1",
                &format!("Route: <sip:{EDGE_ADDR}:5060;lr>\r\n"),
                4,
            ),
            "403 Forbidden (not a relay)",
        ),
        (
            request("INVITE", "sip:bob@elsewhere.test", "", "", 5),
            "403 Forbidden (domain not served here)",
        ),
    ];
    for (n, (msg, want)) in (1..).zip(&cases) {
        let got = exchange(&socket, edge, msg.as_bytes(), Duration::from_millis(500))?;
        let answer = final_response_to(&got, &format!("relay-{n}")).unwrap_or_default();
        assert!(
            answer.starts_with(&format!("SIP/2.0 {want}")),
            "{msg}\n→ {answer}"
        );
    }
    // The real token routes (to the caller's own flow, not to the flood host).
    let genuine = request(
        "OPTIONS",
        "sip:bob@example.test",
        "",
        &format!("Route: <sip:{real}@{EDGE_ADDR}:5060;lr>\r\n"),
        6,
    );
    exchange(
        &socket,
        edge,
        genuine.as_bytes(),
        Duration::from_millis(300),
    )?;
    assert!(
        collect(&victim, Duration::from_millis(300)).is_empty(),
        "a refused request reached the would-be destination"
    );

    // Keep-alives: STUN Binding (RFC 5389) and double CRLF (RFC 5626 §4.4).
    let mut stun = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend(*b"e2e-txn-0001");
    let got = exchange(&socket, edge, &stun, Duration::from_millis(300))?;
    // (The unACKed 403s to INVITEs are retransmitted meanwhile, timer G: skip them.)
    let resp = got
        .iter()
        .find(|d| d.first() == Some(&0x01))
        .expect("a STUN answer");
    assert_eq!(&resp[..2], &[0x01, 0x01], "Binding success");
    let port = u16::from_be_bytes([resp[26], resp[27]]) ^ 0x2112;
    let ip: Vec<u8> = resp[28..32]
        .iter()
        .zip([0x21, 0x12, 0xa4, 0x42])
        .map(|(a, k)| a ^ k)
        .collect();
    assert_eq!(
        (ip.as_slice(), port),
        (&[192u8, 0, 2, 2][..], 5064),
        "XOR-MAPPED-ADDRESS"
    );
    let got = exchange(&socket, edge, b"\r\n\r\n", Duration::from_millis(300))?;
    assert!(got.iter().any(|d| d == b"\r\n"), "a CRLF pong: {got:?}");

    // Answers instead of silence: too many header lines (513), a short body (400).
    let many: String = (0..600).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let huge = request("INVITE", "sip:bob@example.test", "", &many, 7);
    let got = exchange(&socket, edge, huge.as_bytes(), Duration::from_millis(500))?;
    let answer = final_response_to(&got, "relay-7").unwrap_or_default();
    assert!(
        answer.starts_with("SIP/2.0 513 Message Too Large"),
        "{answer}"
    );
    let short = request("INVITE", "sip:bob@example.test", "", "", 8)
        .replace("Content-Length: 0", "Content-Length: 80");
    let got = exchange(&socket, edge, short.as_bytes(), Duration::from_millis(500))?;
    let answer = final_response_to(&got, "relay-8").unwrap_or_default();
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request (Content-Length"),
        "{answer}"
    );

    for (reason, n) in [
        ("bad_flow_token", 2.0),
        ("relay_denied", 2.0),
        ("domain_not_served", 1.0),
    ] {
        let series = format!("sip_fastpath_refused_total{{reason=\"{reason}\"");
        assert_eq!(wait_for_metric(&bed.lan, &series, n)?, n, "{series}");
    }
    wait_for_metric(&bed.lan, "sip_fastpath_keepalives_total", 2.0)?;
    // The same counts in `sip-fastpath stats --json`, summed over the workers.
    let s = bed.daemon.stats()?;
    let sum = |group: &str, key: &str| -> u64 {
        s["workers"]
            .as_array()
            .map(|ws| ws.iter().map(|w| w[group][key].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    assert_eq!(sum("refused", "bad_flow_token"), 2, "{s}");
    assert_eq!(sum("refused", "domain_not_served"), 1, "{s}");
    assert!(sum("requests", "outside") >= 8, "{s}");
    Ok(())
}

/// The address both nodes of the cluster answer on; the router spreads it over them.
const SERVICE: &str = "198.51.100.10";

/// Registers `user` at Kamailio's registrar directly (not through the edge), with `contact`.
fn register_directly(
    ns: &Netns,
    from: &str,
    registrar: &str,
    user: &str,
    contact: &str,
) -> anyhow::Result<()> {
    let socket = ns.udp_socket(format!("{from}:5062").parse()?)?;
    let register = format!(
        "REGISTER sip:{registrar} SIP/2.0\r\nVia: SIP/2.0/UDP {from}:5062;branch=z9hG4bK-direct-{user}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{registrar}>;tag=d1\r\nTo: <sip:{user}@{registrar}>\r\n\
         Call-ID: direct-{user}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nExpires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let got = exchange(
        &socket,
        format!("{registrar}:5060").parse()?,
        register.as_bytes(),
        Duration::from_millis(500),
    )?;
    let answer = final_response(&got).unwrap_or_default();
    anyhow::ensure!(status(&answer) == Some(200), "registering {user}: {answer}");
    Ok(())
}

#[test]
fn two_nodes_behind_ecmp_share_calls_and_one_stopping_loses_none() -> anyhow::Result<()> {
    require_root();
    let tag = "edge-ecmp";
    let lan = Lan::new(
        tag,
        &[
            ("edge", EDGE_ADDR),
            ("edge2", "192.0.2.3"),
            ("caller", CALLER),
            ("registrar", B1),
            ("callee", B2),
            ("router", "192.0.2.254"),
        ],
    )?;
    // The router: a kernel multipath route spreads the service address over both nodes by
    // the 5-tuple (as a data-centre fabric or anycast does), one-armed on the LAN.
    let router = &lan.host("router").ns;
    for sysctl in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.eth0.send_redirects=0",
    ] {
        router.exec(&["sysctl", "-qw", sysctl])?;
    }
    let service_route = format!("{SERVICE}/32");
    router.exec(&[
        "ip",
        "route",
        "add",
        &service_route,
        "nexthop",
        "via",
        EDGE_ADDR,
        "nexthop",
        "via",
        "192.0.2.3",
    ])?;
    for host in ["caller", "registrar", "callee"] {
        lan.host(host)
            .ns
            .exec(&["ip", "route", "add", &service_route, "via", "192.0.2.254"])?;
    }
    for node in ["edge", "edge2"] {
        lan.host(node)
            .ns
            .exec(&["ip", "addr", "add", &service_route, "dev", "lo"])?;
    }
    let logs = LogDir::new(tag)?;
    // The backend is Kamailio (record-routing; responses by Via, in-dialog requests by Route, as
    // RFC 3261 has it), in front of a sipp callee registered there. sipp alone would answer the
    // address a call's first message came from, which is the node that is about to stop.
    let cfg = kamailio::config("registrar.cfg", &[("LISTEN", B1), ("PATH_MODE", "0")])?;
    let _registrar = Kamailio::start(&lan.host("registrar").ns, &cfg, &logs.0, "registrar")?;
    let callee = &lan.host("callee").ns;
    register_directly(callee, B2, B1, "service", &format!("sip:service@{B2}:5060"))?;
    let callee = Backend::start(callee, B2, "uas_call", &logs.0)?;
    // Same config and secret; each node's Via is its own address, its Record-Route the service's.
    let config = config_full(
        1000,
        &format!("{SECRET}\nroute_address = \"{SERVICE}\""),
        &format!("[[backends]]\naddress = \"{B1}:5060\"\n"),
    );
    let mut node1 = Some(Daemon::start(
        &lan.host("edge").ns,
        EDGE_IFACE,
        "auto",
        &config,
        tag,
    )?);
    let node2 = Daemon::start(
        &lan.host("edge2").ns,
        EDGE_IFACE,
        "auto",
        &config,
        &format!("{tag}2"),
    )?;

    let calls = 40;
    let to_service = |scenario: &'static str, calls: u32, extra: &'static [&'static str]| {
        let lan = &lan;
        let logs = &logs;
        move || {
            let target = format!("{SERVICE}:5060");
            Caller {
                calls,
                rate: 20,
                extra,
                ..Caller::new(&lan.host("caller").ns, CALLER, &target, scenario)
            }
            .run(&logs.0)
        }
    };
    // `-t un`: a socket per call, so a 5-tuple per call for the router to spread.
    let report = std::thread::scope(|s| -> anyhow::Result<CallerReport> {
        let caller = s.spawn(to_service(
            "uac_hold",
            calls,
            &["-t", "un", "-max_socket", "512", "-d", "6000"],
        ));
        // All 40 INVITEs are answered after ~2 s; the BYEs come 6 s after each.
        std::thread::sleep(Duration::from_secs(3));
        let taken: Vec<u64> = [node1.as_ref().expect("running"), &node2]
            .iter()
            .map(|d| d.stats().map(|s| tests::workers_sum(&s, "received")))
            .collect::<anyhow::Result<_>>()?;
        eprintln!("datagrams received before node 1 stops: {taken:?}");
        assert!(
            taken.iter().all(|&n| n > 0),
            "the router spread calls over both nodes: {taken:?}"
        );
        // Node 1 goes away mid-call, and the fabric drops its next hop.
        node1.take().expect("running").stop()?;
        router.exec(&["ip", "route", "replace", &service_route, "via", "192.0.2.3"])?;
        caller.join().expect("caller thread")
    })?;
    tests::bed::assert_all_succeeded(&report, u64::from(calls));
    // Every call's INVITE, ACK and BYE reached the callee: node 1's calls were torn down
    // through node 2, which never saw them.
    let at_callee = callee.requests_by_call()?;
    for call_id in &report.call_ids {
        assert_eq!(
            at_callee.get(call_id).map(Vec::as_slice),
            Some(&["INVITE".to_string(), "ACK".into(), "BYE".into()][..]),
            "{call_id}"
        );
    }
    wait_for_metric_of(
        &lan.host("edge2").ns,
        "sip_fastpath_routed_total{by=\"route\"",
        f64::from(calls),
    )?;
    // And new calls go on, through node 2 alone.
    let after = to_service("uac_call", 20, &["-t", "un", "-max_socket", "512"])()?;
    tests::bed::assert_all_succeeded(&after, 20);
    Ok(())
}

#[test]
fn path_policy_against_a_strict_registrar() -> anyhow::Result<()> {
    require_root();
    let tag = "edge-path";
    let lan = Lan::new(
        tag,
        &[("edge", EDGE_ADDR), ("registrar", B1), ("caller", CALLER)],
    )?;
    let logs = LogDir::new(tag)?;
    // path_mode 2: a Path without the UA's `Supported: path` is refused with 420 (RFC 3327 §5).
    let cfg = kamailio::config("registrar.cfg", &[("LISTEN", B1), ("PATH_MODE", "2")])?;
    let _registrar = Kamailio::start(&lan.host("registrar").ns, &cfg, &logs.0, "registrar")?;
    let backends = format!("[[backends]]\naddress = \"{B1}:5060\"\n");
    let always = config_full(1000, &format!("{SECRET}\npath = \"always\""), &backends);
    let mut daemon = Daemon::start(&lan.host("edge").ns, EDGE_IFACE, "auto", &always, tag)?;
    let socket = lan
        .host("caller")
        .ns
        .udp_socket(format!("{CALLER}:5066").parse()?)?;
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    let mut n = 0;
    let mut register = |supported: &str| -> anyhow::Result<String> {
        n += 1;
        let msg = format!(
            "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER}:5066;rport;branch=z9hG4bK-path-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:carol@example.test>;tag=p{n}\r\nTo: <sip:carol@example.test>\r\n\
             Call-ID: path-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@{CALLER}:5066>\r\n\
             Supported: {supported}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        let got = exchange(&socket, edge, msg.as_bytes(), Duration::from_millis(500))?;
        Ok(final_response(&got).unwrap_or_default())
    };
    // `always`: a UA without the option tag is refused by this registrar...
    let r = register("timer")?;
    assert_eq!(status(&r), Some(420), "{r}");
    // ...one with it registers, and the registrar echoes our Path with the UA's flow token.
    let r = register("path")?;
    assert_eq!(status(&r), Some(200), "{r}");
    let path = header_values(&r, "Path");
    assert!(
        path.iter()
            .any(|p| p.contains(&format!("@{EDGE_ADDR}:5060;lr>"))),
        "our Path with a token: {path:?}\n{r}"
    );
    // `if-supported`: no Path for the UA without the tag, so it registers.
    daemon.set_config(&config_full(
        1000,
        &format!("{SECRET}\npath = \"if-supported\""),
        &backends,
    ))?;
    daemon.restart()?;
    let r = register("timer")?;
    assert_eq!(status(&r), Some(200), "{r}");
    assert!(header_values(&r, "Path").is_empty(), "{r}");
    Ok(())
}
