//! The admin API and `sip-fastpath ctl` against a running daemon on the test LAN: tokens and
//! roles, live blocklist entries that take effect in XDP at once, expire and survive a SIGHUP,
//! scanner signatures and a rate limit set and cleared by `ctl`, reloads with their errors in
//! the answer, HTTPS on the LAN (verified by `ctl --ca`, renewed by a reload), drains that move
//! new calls, and dialogs by state and by Call-ID. Needs root, sipp and the built binary
//! (`cargo xtask test`).

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;

use tests::{
    EDGE_ADDR,
    admin::{ALICE, Admin, AdminTls, GRAFANA, http},
    bed::{B1, B2, Bed, CALLER, FLOOD, assert_affinity, assert_all_succeeded, config},
    certs::Certs,
    reason,
    udp::{self, status},
};

fn bed(tag: &str, admin: &Admin) -> anyhow::Result<Bed> {
    Bed::new(
        tag,
        "uas_call",
        &format!("{}{}", config(1000), admin.config()),
    )
}

#[test]
fn the_api_wants_a_token_and_a_write_token_to_change_anything() -> anyhow::Result<()> {
    let admin = Admin::new("adm-auth")?;
    let bed = bed("adm-auth", &admin)?;
    let ns = &bed.lan.host("edge").ns;

    let (code, body, headers) = http(ns, "GET", "/api/v1/status", None, None)?;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{headers}"
    );
    let (code, body, _) = http(
        ns,
        "GET",
        "/api/v1/status",
        Some("not-a-token-at-all"),
        None,
    )?;
    assert_eq!(code, 401, "{body}");

    let (code, body, _) = http(ns, "GET", "/api/v1/status", Some(GRAFANA), None)?;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(status["interface"], tests::EDGE_IFACE, "{status}");
    assert!(
        ["driver", "skb"].contains(&status["xdp_mode"].as_str().unwrap_or("")),
        "{status}"
    );
    assert_eq!(status["config_sha256"].as_str().map(str::len), Some(64));

    let block = r#"{"cidr": "198.51.100.0/24"}"#;
    let (code, body, _) = http(
        ns,
        "POST",
        "/api/v1/filter/blocklist",
        Some(GRAFANA),
        Some(block),
    )?;
    assert_eq!(code, 403, "a read token may not write: {body}");
    assert!(body.contains("read-only"), "{body}");
    let (code, body, _) = http(
        ns,
        "POST",
        "/api/v1/filter/blocklist",
        Some(ALICE),
        Some(block),
    )?;
    assert_eq!(code, 201, "{body}");

    // Errors are JSON that name the problem.
    let (code, body, _) = http(
        ns,
        "POST",
        "/api/v1/filter/blocklist",
        Some(ALICE),
        Some(r#"{"cidr": "198.51.100.0/33"}"#),
    )?;
    assert_eq!(code, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body)?;
    assert!(
        error["error"]
            .as_str()
            .unwrap_or("")
            .contains("prefix length 33"),
        "{error}"
    );
    let (code, body, _) = http(
        ns,
        "PATCH",
        "/api/v1/backends/192.0.2.99:5060",
        Some(ALICE),
        Some(r#"{"draining": true}"#),
    )?;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no backend 192.0.2.99:5060"), "{body}");
    let (code, body, _) = http(ns, "GET", "/api/v1/nothing", Some(ALICE), None)?;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    // ctl reads the token from a file and shows the API's refusal.
    let run = admin.ctl(ns, "grafana", &["block", "203.0.113.9"])?;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains("read-only") && run.stderr.contains("HTTP 403"),
        "{run:?}"
    );
    let run = admin.ctl(ns, "grafana", &["status"])?;
    assert!(run.ok && run.stdout.contains("interface"), "{run:?}");
    Ok(())
}

/// The flood host's SIP socket.
fn flood_socket(bed: &Bed) -> anyhow::Result<std::net::UdpSocket> {
    let host = bed.lan.host("flood");
    host.ns.udp_socket(format!("{FLOOD}:5060").parse()?)
}

/// Whether an OPTIONS numbered `n` with `user_agent` from the flood host is answered 200.
fn answered_as(socket: &std::net::UdpSocket, user_agent: &str, n: u32) -> anyhow::Result<bool> {
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    let msg = options_from(user_agent, n);
    let got = udp::exchange(socket, edge, &msg, Duration::from_millis(400))?;
    Ok(got.iter().any(|d| d.starts_with(b"SIP/2.0 200")))
}

/// Sends OPTIONS from the flood host until one is answered 200 or `tries` went unanswered.
fn answered(socket: &std::net::UdpSocket, tries: u32, first: u32) -> anyhow::Result<bool> {
    for n in first..first + tries {
        if answered_as(socket, "plain-phone/1.0", n)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[test]
fn a_source_blocked_by_api_is_dropped_at_once_until_unblocked_expired_or_reloaded_away()
-> anyhow::Result<()> {
    let admin = Admin::new("adm-block")?;
    let bed = bed("adm-block", &admin)?;
    let ns = &bed.lan.host("edge").ns;
    let socket = flood_socket(&bed)?;
    assert!(answered(&socket, 5, 0)?, "answered before any block");

    let filter = admin.ctl_json(ns, &["block", FLOOD])?;
    let entry = &filter["blocklist"][0];
    assert_eq!(entry["value"], format!("{FLOOD}/32"), "{filter}");
    assert_eq!(
        (&entry["source"], &entry["by"]),
        (&"api".into(), &"alice".into())
    );
    assert!(!answered(&socket, 3, 10)?, "blocked: dropped in XDP");
    let drops = reason(&bed.daemon.stats()?, "drop/blocklist");
    assert!(
        drops >= 3,
        "the kernel counted the blocklist drops: {drops}"
    );

    // A SIGHUP of the unchanged config keeps the API's entry.
    bed.daemon
        .reload(&format!("{}{}", config(1000), admin.config()))?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(!answered(&socket, 3, 20)?, "still blocked after SIGHUP");
    let text = admin.ctl(ns, "alice", &["filter"])?;
    assert!(text.ok && text.stdout.contains("api, by alice"), "{text:?}");

    let run = admin.ctl(ns, "alice", &["unblock", FLOOD])?;
    assert!(run.ok, "{run:?}");
    assert!(answered(&socket, 10, 30)?, "unblocked: answered again");
    let run = admin.ctl(ns, "alice", &["unblock", FLOOD])?;
    assert!(!run.ok && run.stderr.contains("HTTP 404"), "{run:?}");

    // With a TTL the entry goes by itself.
    admin.ctl_json(ns, &["block", &format!("{FLOOD}/32"), "--ttl", "2"])?;
    assert!(!answered(&socket, 2, 40)?, "blocked for 2 s");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(answered(&socket, 10, 50)?, "answered once the TTL ran out");
    let filter = admin.ctl_json(ns, &["filter"])?;
    assert_eq!(
        filter["blocklist"].as_array().map(Vec::len),
        Some(0),
        "{filter}"
    );

    // A config entry cannot be removed by the API: it says where it is.
    let blocked_in_file = format!(
        "{}blocklist = [\"203.0.113.0/24\"]\n{}",
        config(1000),
        admin.config()
    );
    bed.daemon.set_config(&blocked_in_file)?;
    let reload = admin.ctl_json(ns, &["reload"])?;
    assert_eq!(reload["ok"], true, "{reload}");
    let run = admin.ctl(ns, "alice", &["unblock", "203.0.113.0/24"])?;
    assert!(
        !run.ok && run.stderr.contains("config file's filter.blocklist"),
        "{run:?}"
    );

    // A reload of a broken file answers with the error and keeps everything running.
    bed.daemon.set_config("sip_ports = [0]\n")?;
    let run = admin.ctl(ns, "alice", &["reload"])?;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stdout.contains("error: keeping the running config"),
        "{run:?}"
    );
    assert!(run.stdout.contains("sip_ports"), "{run:?}");
    assert!(
        answered(&socket, 5, 60)?,
        "still serving after the failed reload"
    );
    Ok(())
}

/// An OPTIONS from the flood host with `user_agent`, numbered `n`.
fn options_from(user_agent: &str, n: u32) -> Vec<u8> {
    let msg =
        String::from_utf8(tests::sip_message("OPTIONS", &format!("ua-{n}"), n)).expect("ASCII");
    msg.replace(
        "Content-Length:",
        &format!("User-Agent: {user_agent}\r\nContent-Length:"),
    )
    .into_bytes()
}

/// Sends `count` OPTIONS at once, then counts the 200s that come back within a second.
fn answered_of_burst(
    socket: &std::net::UdpSocket,
    count: u32,
    first: u32,
) -> anyhow::Result<usize> {
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    for n in first..first + count {
        socket.send_to(&options_from("plain-phone/1.0", n), edge)?;
    }
    let got = udp::collect(socket, Duration::from_secs(1));
    Ok(got.iter().filter(|d| d.starts_with(b"SIP/2.0 200")).count())
}

#[test]
fn scanner_signatures_and_a_rate_limit_set_by_ctl_act_in_xdp_at_once() -> anyhow::Result<()> {
    let admin = Admin::new("adm-scan")?;
    let bed = bed("adm-scan", &admin)?;
    let ns = &bed.lan.host("edge").ns;
    let socket = flood_socket(&bed)?;
    let ask = |ua: &str, n: u32| answered_as(&socket, ua, n);
    assert!(ask("Acme-Prober/2.1", 0)?, "answered before the signature");

    // A signature added live drops that User-Agent (any case) in XDP, and nothing else.
    let filter = admin.ctl_json(ns, &["block-scanner", "acme-prober"])?;
    let added = filter["scanners"]
        .as_array()
        .and_then(|s| s.iter().find(|e| e["value"] == "acme-prober"));
    assert!(
        added.is_some_and(|e| e["source"] == "api" && e["by"] == "alice"),
        "{filter}"
    );
    let before = reason(&bed.daemon.stats()?, "drop/scanner");
    for n in 1..=3 {
        assert!(
            !ask("Acme-Prober/2.1", n)?,
            "the scanner's OPTIONS {n} was answered"
        );
    }
    let dropped = reason(&bed.daemon.stats()?, "drop/scanner") - before;
    assert!(
        dropped >= 3,
        "the kernel counted the scanner drops: {dropped}"
    );
    assert!(
        ask("plain-phone/1.0", 4)?,
        "another User-Agent is still answered"
    );

    // Refused with the reason: too long for the XDP map's slot.
    let run = admin.ctl(
        ns,
        "alice",
        &["block-scanner", "a-signature-longer-than-sixteen"],
    )?;
    assert!(!run.ok && run.stderr.contains("HTTP 400"), "{run:?}");

    let run = admin.ctl(ns, "alice", &["unblock-scanner", "acme-prober"])?;
    assert!(run.ok, "{run:?}");
    assert!(
        ask("Acme-Prober/2.1", 5)?,
        "answered again once the signature is gone"
    );

    // A live rate limit replaces the config's (100/s, burst 200) at once, and `off` restores it.
    assert_eq!(
        answered_of_burst(&socket, 20, 100)?,
        20,
        "the config's limit lets 20 through"
    );
    let filter = admin.ctl_json(ns, &["rate-limit", "2", "--burst", "3"])?;
    let limit = &filter["rate_limit"];
    assert_eq!(
        (&limit["pps"], &limit["burst"], &limit["source"]),
        (&2.into(), &3.into(), &"api".into()),
        "{filter}"
    );
    let before = reason(&bed.daemon.stats()?, "drop/rate_limit");
    let through = answered_of_burst(&socket, 20, 200)?;
    assert!(
        through <= 5,
        "at 2/s with a burst of 3, {through} of 20 got through"
    );
    let limited = reason(&bed.daemon.stats()?, "drop/rate_limit") - before;
    assert!(
        limited >= 15,
        "the kernel counted the rate-limit drops: {limited}"
    );
    let text = admin.ctl(ns, "alice", &["filter"])?;
    assert!(text.ok && text.stdout.contains("api, by alice"), "{text:?}");

    let run = admin.ctl(ns, "alice", &["rate-limit", "off"])?;
    assert!(run.ok, "{run:?}");
    std::thread::sleep(Duration::from_millis(1100)); // the source's bucket refills
    assert_eq!(
        answered_of_burst(&socket, 20, 300)?,
        20,
        "back to the config's limit"
    );
    Ok(())
}

#[test]
fn the_api_over_https_on_the_lan_verifies_with_ctl_ca_and_renews_on_reload() -> anyhow::Result<()> {
    let certs = Certs::new("adm-tls")?;
    let tls = AdminTls {
        certificate: certs.path("server.pem"),
        key: certs.path("server.key"),
        ca: certs.path("ca.pem"),
    };
    // On the edge's LAN address: the certificate names 192.0.2.1.
    let admin = Admin::https("adm-tls", &format!("{EDGE_ADDR}:9465"), tls)?;
    let bed = bed("adm-tls", &admin)?;
    let caller = &bed.lan.host("caller").ns;

    // ctl from another host, verifying the API's certificate against the CA.
    let status = admin.ctl_json(caller, &["status"])?;
    assert_eq!(status["interface"], tests::EDGE_IFACE, "{status}");
    let filter = admin.ctl_json(caller, &["block", "198.51.100.7"])?;
    assert_eq!(filter["blocklist"][0]["by"], "alice", "{filter}");

    // Without --ca the certificate is not trusted, and ctl says so.
    let out = caller
        .command(tests::binary().to_str().context("binary path")?)
        .args(["ctl", "--url", &admin.url(), "status"])
        .env("SIP_FASTPATH_TOKEN", ALICE)
        .env_remove("SIP_FASTPATH_CA")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot reach the admin API"),
        "{stderr}"
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = caller
        .command("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{EDGE_ADDR}:9465/api/v1/status"),
        ])
        .output()?;
    assert!(
        !plain.status.success(),
        "plain HTTP was answered: {plain:?}"
    );

    // A renewed certificate is served after a reload, without a restart.
    let subject = || -> anyhow::Result<String> {
        let out = caller
            .command("curl")
            .args(["-sv", "--max-time", "5", "--cacert"])
            .arg(certs.path("ca.pem"))
            .args(["-H", &format!("Authorization: Bearer {GRAFANA}")])
            .arg(format!("https://{EDGE_ADDR}:9465/api/v1/status"))
            .output()?;
        anyhow::ensure!(out.status.success(), "curl: {out:?}");
        let verbose = String::from_utf8_lossy(&out.stderr);
        Ok(verbose
            .lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or_default()
            .to_string())
    };
    assert!(subject()?.contains("CN=server"), "{}", subject()?);
    certs.renew_server("renewed")?;
    let reload = admin.ctl_json(caller, &["reload"])?;
    assert_eq!(reload["ok"], true, "{reload}");
    assert!(subject()?.contains("CN=renewed"), "{}", subject()?);
    Ok(())
}

#[test]
fn a_drained_backend_gets_no_new_calls_and_dialogs_are_found_by_call_id() -> anyhow::Result<()> {
    let admin = Admin::new("adm-drain")?;
    let bed = bed("adm-drain", &admin)?;
    let ns = &bed.lan.host("edge").ns;

    // `drain` by IP alone: one backend has it.
    let drained = admin.ctl_json(ns, &["drain", B1])?;
    assert_eq!(drained["address"], format!("{B1}:5060"), "{drained}");
    assert_eq!(drained["draining"], true, "{drained}");
    let r = bed.call("uac_call", 20, 20)?;
    assert_all_succeeded(&r, 20);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [0, 20],
        "every new call on B2 while B1 drains"
    );
    let table = admin.ctl(ns, "alice", &["backends"])?;
    assert!(table.ok && table.stdout.contains("draining"), "{table:?}");
    let backends = admin.ctl_json(ns, &["backends"])?;
    let b2 = backends
        .as_array()
        .and_then(|all| all.iter().find(|b| b["address"] == format!("{B2}:5060")))
        .cloned()
        .unwrap_or_default();
    assert!(b2["requests"].as_u64() >= Some(40), "INVITE and BYE: {b2}");

    admin.ctl_json(ns, &["undrain", &format!("{B1}:5060")])?;
    let r = bed.call("uac_call", 40, 40)?;
    assert_all_succeeded(&r, 40);
    let split = assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?;
    // 40 calls with equal weights: B1 taking none would be a 1 in 10^12 chance.
    assert!(split[0] > 0, "B1 takes calls again: {split:?}");

    // A call left unacknowledged stays connected (awaiting its ACK) for 64·T1: long enough to
    // look it up.
    let socket = bed
        .lan
        .host("caller")
        .ns
        .udp_socket(format!("{CALLER}:5064").parse()?)?;
    let call_id = "admin-lookup-1@192.0.2.2";
    let invite = format!(
        "INVITE sip:bob@{EDGE_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER}:5064;branch=z9hG4bKadm1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{CALLER}>;tag=adm1\r\nTo: <sip:bob@{EDGE_ADDR}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CALLER}:5064>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    let got = udp::exchange(&socket, edge, invite.as_bytes(), Duration::from_secs(2))?;
    let final_status = udp::final_response(&got).and_then(|t| status(&t));
    assert_eq!(final_status, Some(200), "{got:?}");

    let call = admin.ctl_json(ns, &["dialogs", call_id])?;
    assert_eq!(call["call_id"], call_id, "{call}");
    let dialog = &call["dialogs"][0];
    assert_eq!(dialog["state"], "connected", "{call}");
    assert_eq!(dialog["caller_tag"], "adm1", "{call}");
    assert!(
        [format!("{B1}:5060"), format!("{B2}:5060")]
            .iter()
            .any(|b| dialog["backend"] == *b),
        "{call}"
    );
    let dialogs = admin.ctl_json(ns, &["dialogs"])?;
    assert!(
        dialogs["by_state"]["connected"].as_u64() >= Some(1),
        "{dialogs}"
    );
    assert!(dialogs["total"].as_u64() >= Some(1), "{dialogs}");
    let run = admin.ctl(ns, "alice", &["dialogs", "no-such-call@x"])?;
    assert!(
        !run.ok && run.stderr.contains("no dialog with Call-ID"),
        "{run:?}"
    );
    Ok(())
}
