//! SIP over TLS at the edge with real clients: sipsak (GnuTLS, Debian) sends OPTIONS over TLS 1.3
//! through sip-fastpath to the sipp backends; `openssl s_client` (OpenSSL) is the client that
//! offers only TLS 1.2, and the one with a client certificate for mutual TLS, because Debian's
//! sipsak is built with GnuTLS and its `--tls-client-cert` is read only by its OpenSSL code
//! (src/transport.c), so it never presents one. Certificates are made at test time. Needs root, sipp, sipsak, openssl and the built binary (`cargo xtask
//! test` does all of them).

use std::{process::Stdio, time::Duration};

use tests::{
    Netns,
    bed::{B1, B2, Bed, EDGE, config_full},
    certs::Certs,
    metric_sum,
};

fn tls_config(certs: &Certs, mutual: bool, extra: &str) -> String {
    let tables = format!(
        "[[backends]]\naddress = \"{B1}:5060\"\n[[backends]]\naddress = \"{B2}:5060\"\n{}{extra}",
        certs.tls_section(mutual)
    );
    config_full(1000, "", &tables)
}

fn tls_bed(tag: &str, certs: &Certs, mutual: bool, extra: &str) -> Bed {
    Bed::new(tag, "uas_call", &tls_config(certs, mutual, extra)).unwrap()
}

/// Runs a program in `ns` to its end (bounded by `timeout` from coreutils); its exit code and
/// output.
fn run_in(ns: &Netns, program: &str, args: &[&str]) -> (i32, String) {
    let out = ns
        .command("timeout")
        .args(["-k", "2", "10", program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running a client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// sipsak sends one OPTIONS over TLS to the edge (to the backends, which answer 200).
fn sipsak_options(ns: &Netns, certs: &Certs) -> (i32, String) {
    let ca = format!("--tls-ca-cert={}", certs.path("ca.pem").display());
    let uri = format!("sip:bob@{EDGE}:5061");
    run_in(ns, "sipsak", &["-vv", "-s", &uri, "--transport=tls", &ca])
}

/// `openssl s_client` handshakes with the edge's TLS port with `version` (`-tls1_2`,
/// `-tls1_3`); true if the handshake succeeded.
fn openssl_handshake(ns: &Netns, certs: &Certs, version: &str) -> (bool, String) {
    let (code, out) = run_in(
        ns,
        "openssl",
        &[
            "s_client",
            "-connect",
            &format!("{EDGE}:5061"),
            version,
            "-CAfile",
            &certs.path("ca.pem").display().to_string(),
            "-verify_return_error",
            "-brief",
        ],
    );
    (code == 0 && out.contains("Verification: OK"), out)
}

#[test]
fn a_tls_13_client_is_answered_and_a_tls_12_only_client_is_refused() {
    let certs = Certs::new("tls13").unwrap();
    let bed = tls_bed("tls-13", &certs, false, "");
    let caller = &bed.lan.host("caller").ns;
    let (code, out) = sipsak_options(caller, &certs);
    assert_eq!(code, 0, "sipsak over TLS got its 200:\n{out}");
    assert!(out.contains("200"), "{out}");
    let (ok, out) = openssl_handshake(caller, &certs, "-tls1_3");
    assert!(
        ok,
        "a TLS 1.3 handshake verifies the edge's certificate:\n{out}"
    );
    let (ok, out) = openssl_handshake(caller, &certs, "-tls1_2");
    assert!(!ok, "TLS 1.2 is refused when the minimum is 1.3:\n{out}");
    std::thread::sleep(Duration::from_millis(1200)); // the workers export once a second
    let m = bed.metrics().unwrap();
    assert!(
        metric_sum(
            &m,
            "sip_fastpath_tls_handshake_failures_total{reason=\"incompatible\""
        ) >= 1,
        "the TLS 1.2 client counted\n{m}"
    );
    assert!(
        metric_sum(
            &m,
            "sip_fastpath_transport_messages_total{direction=\"in\",transport=\"tls\""
        ) >= 1,
        "{m}"
    );
}

#[test]
fn tls_12_is_taken_when_allowed() {
    let certs = Certs::new("tls12").unwrap();
    let bed = tls_bed("tls-12", &certs, false, "min_version = \"1.2\"\n");
    let (ok, out) = openssl_handshake(&bed.lan.host("caller").ns, &certs, "-tls1_2");
    assert!(ok, "TLS 1.2 allowed by tls.min_version:\n{out}");
}

/// One OPTIONS over TLS with `openssl s_client`, presenting the client certificate `client`
/// (`client` or `stranger`) if given; what came back.
fn openssl_options(ns: &Netns, certs: &Certs, client: Option<&str>, call_id: &str) -> String {
    let message = format!(
        "OPTIONS sip:bob@{EDGE}:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.2:5061;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:trunk@192.0.2.2>;tag=t1\r\nTo: <sip:bob@{EDGE}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let file = certs.path(&format!("{call_id}.sip"));
    std::fs::write(&file, message).unwrap();
    let identity = match client {
        Some(c) => format!(
            "-cert {} -key {}",
            certs.path(&format!("{c}.pem")).display(),
            certs.path(&format!("{c}.key")).display()
        ),
        None => String::new(),
    };
    // The message, then 2 s for the answer before s_client sees the end of its input.
    let script = format!(
        "(cat {}; sleep 2) | openssl s_client -connect {EDGE}:5061 -quiet -CAfile {} {identity}",
        file.display(),
        certs.path("ca.pem").display()
    );
    run_in(ns, "sh", &["-c", &script]).1
}

#[test]
fn mutual_tls_takes_a_known_client_certificate_and_refuses_others() {
    let certs = Certs::new("mtls").unwrap();
    let bed = tls_bed("tls-mutual", &certs, true, "");
    let caller = &bed.lan.host("caller").ns;
    let out = openssl_options(caller, &certs, Some("client"), "mtls-known");
    assert!(
        out.contains("SIP/2.0 200"),
        "a client certificate from the trunk CA:\n{out}"
    );
    let out = openssl_options(caller, &certs, Some("stranger"), "mtls-stranger");
    assert!(
        !out.contains("SIP/2.0"),
        "a certificate from an unknown CA is refused:\n{out}"
    );
    let out = openssl_options(caller, &certs, None, "mtls-none");
    assert!(
        !out.contains("SIP/2.0"),
        "no certificate is refused:\n{out}"
    );
    let (code, out) = sipsak_options(caller, &certs);
    assert_ne!(code, 0, "sipsak, which presents none, is refused:\n{out}");
    std::thread::sleep(Duration::from_millis(1200));
    let m = bed.metrics().unwrap();
    let failed = metric_sum(&m, "sip_fastpath_tls_handshake_failures_total{");
    assert!(failed >= 2, "both refusals counted\n{m}");
}

#[test]
fn the_certificate_is_reread_on_sighup_and_a_broken_file_keeps_the_running_one() {
    let certs = Certs::new("reload").unwrap();
    let config = tls_config(&certs, false, "");
    let bed = Bed::new("tls-reload", "uas_call", &config).unwrap();
    let caller = &bed.lan.host("caller").ns;
    let (ok, out) = openssl_handshake(caller, &certs, "-tls1_3");
    assert!(
        ok && !out.contains("renewed"),
        "the first certificate:\n{out}"
    );
    certs.renew_server("server-renewed").unwrap();
    bed.daemon.reload(&config).unwrap();
    let renewed = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let (ok, out) = openssl_handshake(caller, &certs, "-tls1_3");
        ok && out.contains("server-renewed")
    });
    assert!(
        renewed,
        "new connections get the renewed certificate after SIGHUP"
    );
    std::fs::write(certs.path("server.pem"), "not a certificate").unwrap();
    bed.daemon.reload(&config).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out) = openssl_handshake(caller, &certs, "-tls1_3");
    assert!(
        ok && out.contains("server-renewed"),
        "a broken file on reload keeps the running certificate:\n{out}"
    );
}

#[test]
fn a_thousand_tls_connections_open_at_once_each_get_their_options_answered() {
    let certs = Certs::new("many").unwrap();
    let bed = tls_bed(
        "tls-many",
        &certs,
        false,
        "[connections]\nper_source = 2000\n",
    );
    let caller = &bed.lan.host("caller").ns;
    let edge = format!("{EDGE}:5061").parse().unwrap();
    let r = tests::tls_clients::options_on_many(caller, edge, &certs.path("ca.pem"), 1000).unwrap();
    eprintln!("1000 TLS connections: {r:?}");
    assert_eq!(r.connected, 1000, "every handshake completed");
    assert_eq!(r.answered_200, 1000, "every OPTIONS answered 200");
}

/// A backend reached over TLS: Kamailio with its tls module, its certificate checked for the
/// configured `tls_name`; one connection carries every request; a wrong name fails the
/// handshake (counted) and nothing is sent to it.
#[test]
fn a_backend_over_tls_is_verified_by_name_and_its_connection_reused() {
    let certs = Certs::new("backend").unwrap();
    for (tls_name, good) in [("backend.test", true), ("wrong.test", false)] {
        let backends = format!(
            "[[backends]]\naddress = \"{B1}:5061\"\ntransport = \"tls\"\ntls_name = \"{tls_name}\"\n\
             [tls]\nserver_ca = \"{}\"\n",
            certs.path("ca.pem").display()
        );
        // Health probes are UDP OPTIONS; this backend takes TLS only: probing off.
        let tag = if good {
            "tls-backend"
        } else {
            "tls-backend-bad"
        };
        let bed = Bed::new(tag, "uas_call", &config_full(0, "", &backends)).unwrap();
        let kamailio_tls = certs.path(&format!("{tag}-kamailio-tls.cfg"));
        std::fs::write(
            &kamailio_tls,
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\nprivate_key = {}\ncertificate = {}\n",
                certs.path("backend.key").display(),
                certs.path("backend.pem").display()
            ),
        )
        .unwrap();
        let cfg = tests::kamailio::config(
            "tls_backend.cfg",
            &[
                ("LISTEN", B1),
                ("TLSCFG", &kamailio_tls.display().to_string()),
            ],
        )
        .unwrap();
        let mut kamailio =
            tests::kamailio::Kamailio::start(&bed.lan.host("b1").ns, &cfg, &bed.logs.0, "kamailio")
                .unwrap();
        let caller = &bed.lan.host("caller").ns;
        let uri = format!("sip:bob@{EDGE}:5060");
        // (One try when the handshake must fail: sipsak waits its 10 s bound for an answer.)
        let answers: Vec<(i32, String)> = (0..if good { 3 } else { 1 })
            .map(|_| run_in(caller, "sipsak", &["-vv", "-s", &uri]))
            .collect();
        std::thread::sleep(Duration::from_millis(1200));
        let m = bed.metrics().unwrap();
        kamailio.stop();
        let connected = metric_sum(
            &m,
            "sip_fastpath_connections_total{event=\"connected\",transport=\"tls\"",
        );
        if good {
            for (code, out) in &answers {
                assert_eq!(
                    *code, 0,
                    "OPTIONS over UDP, on to the backend over TLS:\n{out}"
                );
            }
            assert_eq!(connected, 1, "one connection for every request\n{m}");
        } else {
            assert!(
                metric_sum(
                    &m,
                    "sip_fastpath_tls_handshake_failures_total{reason=\"bad_certificate\""
                ) >= 1,
                "the certificate does not name wrong.test\n{m}"
            );
            assert!(
                answers.iter().all(|(code, _)| *code != 0),
                "no 200 came back"
            );
        }
    }
}

/// Calls over TLS: sipp on one TCP connection into socat, which carries it over TLS 1.3 to the
/// edge (Debian's sipp has no TLS), to the UDP backends: ordinary calls, the callee hanging
/// up toward the TLS caller, and a 3,000-byte INVITE.
#[test]
fn calls_over_tls_reach_udp_backends_and_come_back() {
    let certs = Certs::new("calls").unwrap();
    for (uac, uas, calls, methods) in [
        ("uac_call", "uas_call", 20, &["INVITE", "ACK", "BYE"][..]),
        (
            "uac_call_large",
            "uas_call",
            10,
            &["INVITE", "ACK", "BYE"][..],
        ),
        ("uac_wait_bye", "uas_hangup", 10, &["INVITE", "ACK"][..]),
    ] {
        let bed = Bed::new(&format!("tls-{uac}"), uas, &tls_config(&certs, false, "")).unwrap();
        let caller = &bed.lan.host("caller").ns;
        let relay_at: std::net::SocketAddr = "192.0.2.2:5070".parse().unwrap();
        let _relay = tests::tls_clients::TlsRelay::start(
            caller,
            relay_at,
            format!("{EDGE}:5061").parse().unwrap(),
            &certs.path("ca.pem"),
        )
        .unwrap();
        let r = tests::bed::call_to(
            &bed,
            &relay_at.to_string(),
            uac,
            calls,
            &["-t", "t1", "-max_socket", "100"],
        )
        .unwrap();
        tests::bed::assert_all_succeeded(&r, calls as u64);
        let split = tests::bed::assert_affinity(&bed, &r, methods).unwrap();
        let m = bed.metrics().unwrap();
        let tls_in = metric_sum(
            &m,
            "sip_fastpath_transport_messages_total{direction=\"in\",transport=\"tls\"",
        );
        eprintln!("{uac} over tls: {calls} calls, split {split:?}, {tls_in} messages in over tls");
        assert!(tls_in >= 2 * calls as u64, "the calls came over TLS\n{m}");
    }
}

/// A client that opens a TLS connection and never says hello is closed after
/// tls.handshake_timeout_ms, counted as a handshake timeout.
#[test]
fn a_silent_tls_client_is_closed_at_the_handshake_deadline() {
    let certs = Certs::new("silent").unwrap();
    let bed = tls_bed("tls-silent", &certs, false, "handshake_timeout_ms = 800\n");
    let caller = &bed.lan.host("caller").ns;
    let mut silent = caller
        .tcp_connect(format!("{EDGE}:5061").parse().unwrap())
        .unwrap();
    let closed = tests::stream::closed_within(&mut silent, Duration::from_secs(5));
    assert!(closed, "closed at the handshake deadline");
    std::thread::sleep(Duration::from_millis(1200));
    let m = bed.metrics().unwrap();
    assert_eq!(
        metric_sum(
            &m,
            "sip_fastpath_tls_handshake_failures_total{reason=\"timeout\""
        ),
        1,
        "{m}"
    );
}

/// `tls.trusted_names`: a client whose certificate (verified against `client_ca`) names
/// trunk.test is inside, like a `trusted` address: its OPTIONS to the edge is answered by the
/// edge itself (inside rules), while another client of the same CA is outside and its OPTIONS
/// goes to a backend (whose answer carries the backend's Contact).
#[test]
fn a_client_certificate_named_in_trusted_names_is_inside() {
    let certs = Certs::new("trusted").unwrap();
    let bed = tls_bed(
        "tls-trusted",
        &certs,
        true,
        "trusted_names = [\"trunk.test\"]\n",
    );
    let caller = &bed.lan.host("caller").ns;
    let inside = openssl_options(caller, &certs, Some("client"), "trusted-1");
    assert!(inside.contains("SIP/2.0 200"), "{inside}");
    assert!(
        !inside.contains("Contact: <sip:192.0.2.1") && inside.contains(";tag=sfp"),
        "answered by the edge, as for an inside source:\n{inside}"
    );
    let outside = openssl_options(caller, &certs, Some("other-client"), "trusted-2");
    assert!(
        outside.contains("SIP/2.0 200") && outside.contains("Contact: <sip:192.0.2.1"),
        "another certificate of the CA is outside: to a backend\n{outside}"
    );
    let m = bed.metrics().unwrap();
    assert_eq!(
        metric_sum(&m, "sip_fastpath_requests_total{side=\"inside\""),
        1,
        "{m}"
    );
}
