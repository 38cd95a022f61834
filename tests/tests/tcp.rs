//! SIP over TCP at the edge (RFC 3261 §18.3): sipp callers on TCP, one connection for all calls
//! (`-t t1`) or one per call (`-t tn`), through sip-fastpath to sipp backends on UDP, and raw
//! clients that break the stream's rules. Needs root, sipp and the built binary (`cargo xtask
//! test` does all three).

use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use tests::{
    bed::{B1, B2, Bed, EDGE, FLOOD, assert_affinity, assert_all_succeeded, config, config_full},
    metric_sum, sip_message,
    stream::{closed_within, read_until},
};

/// `calls` of `uac` over TCP (`mode`: `t1` or `tn`) to backends running `uas`: all succeed, each
/// call's `methods` reach one backend, and the edge counted TCP connections and messages.
fn over_tcp(tag: &str, uac: &str, uas: &str, mode: &str, calls: u32, methods: &[&str]) {
    let bed = Bed::new(tag, uas, &config(1000)).unwrap();
    // sipp refuses `tn` while its socket limit (50,000) is above the open-files limit.
    let r = bed
        .call_with(uac, calls, 20, &["-t", mode, "-max_socket", "1000"])
        .unwrap();
    assert_all_succeeded(&r, calls as u64);
    let split = assert_affinity(&bed, &r, methods).unwrap();
    let m = bed.metrics().unwrap();
    let accepted = metric_sum(
        &m,
        "sip_fastpath_connections_total{event=\"accepted\",transport=\"tcp\"",
    );
    let tcp_in = metric_sum(
        &m,
        "sip_fastpath_transport_messages_total{direction=\"in\",transport=\"tcp\"",
    );
    eprintln!(
        "{uac} over tcp ({mode}): {calls} calls, split {split:?}, {accepted} connections, \
         {tcp_in} messages in over tcp"
    );
    match mode {
        "t1" => assert_eq!(accepted, 1, "one connection for every call\n{m}"),
        _ => assert!(accepted >= calls as u64, "a connection per call\n{m}"),
    }
    assert!(
        tcp_in >= (calls * methods.len() as u32) as u64 / 2,
        "the calls' requests came over tcp\n{m}"
    );
}

#[test]
fn calls_over_one_tcp_connection_reach_udp_backends() {
    over_tcp(
        "tcp-t1",
        "uac_call",
        "uas_call",
        "t1",
        40,
        &["INVITE", "ACK", "BYE"],
    );
}

#[test]
fn calls_over_a_tcp_connection_each_reach_udp_backends() {
    over_tcp(
        "tcp-tn",
        "uac_call",
        "uas_call",
        "tn",
        40,
        &["INVITE", "ACK", "BYE"],
    );
}

#[test]
fn the_callee_hangs_up_toward_a_tcp_caller() {
    // The backend's BYE follows the Record-Route: our inside entry, then the outside entry with
    // the caller's TCP flow token, which names the connection to send it on.
    over_tcp(
        "tcp-bye",
        "uac_wait_bye",
        "uas_hangup",
        "t1",
        20,
        &["INVITE", "ACK"],
    );
}

#[test]
fn cancel_over_tcp() {
    over_tcp(
        "tcp-cancel",
        "uac_cancel",
        "uas_cancel",
        "tn",
        20,
        &["INVITE", "CANCEL", "ACK"],
    );
}

#[test]
fn a_3000_byte_invite_over_tcp() {
    over_tcp(
        "tcp-large",
        "uac_call_large",
        "uas_call",
        "t1",
        10,
        &["INVITE", "ACK", "BYE"],
    );
}

/// Backends reached over TCP (`transport = "tcp"`): the edge opens the connections and reuses
/// them for every call; a caller on UDP or on TCP; calls, the callee hanging up, CANCEL.
#[test]
fn calls_reach_backends_over_tcp_from_udp_and_tcp_callers() {
    let backends = format!(
        "[[backends]]\naddress = \"{B1}:5060\"\ntransport = \"tcp\"\n\
         [[backends]]\naddress = \"{B2}:5060\"\ntransport = \"tcp\"\n"
    );
    // Health probes are UDP OPTIONS, which a TCP-only sipp does not answer: probing off.
    let config = config_full(0, "", &backends);
    for (uac, uas, methods) in [
        ("uac_call", "uas_call", &["INVITE", "ACK", "BYE"][..]),
        ("uac_wait_bye", "uas_hangup", &["INVITE", "ACK"][..]),
        ("uac_cancel", "uas_cancel", &["INVITE", "CANCEL", "ACK"][..]),
    ] {
        let bed = Bed::with_uas_args(
            &format!("tcp-in-{uas}"),
            uas,
            &["-t", "t1", "-max_socket", "1000"],
            &config,
        )
        .unwrap();
        for caller_mode in ["udp", "t1"] {
            let extra: &[&str] = match caller_mode {
                "udp" => &[],
                _ => &["-t", "t1", "-max_socket", "1000"],
            };
            let calls = 20;
            let r = bed.call_with(uac, calls, 20, extra).unwrap();
            assert_all_succeeded(&r, calls as u64);
            let split = assert_affinity(&bed, &r, methods).unwrap();
            eprintln!("{uac} from a {caller_mode} caller to tcp backends: split {split:?}");
        }
        let m = bed.metrics().unwrap();
        let connected = metric_sum(
            &m,
            "sip_fastpath_connections_total{event=\"connected\",transport=\"tcp\"",
        );
        assert!(
            (1..=2).contains(&connected),
            "one connection per backend, reused by every call: {connected}\n{m}"
        );
    }
}

/// A SYN flood from one (not allowlisted) source to the TCP port is dropped in XDP past the
/// source's burst, counted by reason, while an allowlisted caller's calls over TCP go on.
#[test]
fn a_syn_flood_from_one_source_is_dropped_in_xdp() {
    let bed = Bed::new("tcp-synflood", "uas_call", &config(1000)).unwrap();
    let flood_ns = &bed.lan.host("flood").ns;
    let edge = std::net::SocketAddrV4::new(EDGE.parse().unwrap(), 5060);
    let syns = 3000;
    let sent = tests::syn::flood(flood_ns, FLOOD.parse().unwrap(), edge, syns).unwrap();
    assert_eq!(sent, syns);
    let r = bed.call_with("uac_call", 10, 10, &["-t", "t1"]).unwrap();
    assert_all_succeeded(&r, 10);
    let m = bed.metrics().unwrap();
    let dropped = metric_sum(
        &m,
        "sip_fastpath_kernel_packets_total{reason=\"tcp_syn_rate_limit\",verdict=\"drop\"",
    );
    let passed = metric_sum(
        &m,
        "sip_fastpath_kernel_packets_total{reason=\"tcp_syn\",verdict=\"pass\"",
    );
    eprintln!("{syns} SYNs from one source: {dropped} dropped in XDP, {passed} passed");
    // The bed's rate is 100/s with a burst of 200: all but about the burst are dropped.
    assert!(dropped >= (syns - 400) as u64, "dropped {dropped}\n{m}");
    assert!(passed >= 1, "the caller's connection passed\n{m}");
}

#[test]
fn slow_and_endless_clients_are_closed_and_others_are_answered() {
    let config = config_full(
        1000,
        "",
        &format!(
            "[[backends]]\naddress = \"{}:5060\"\n[[backends]]\naddress = \"{}:5060\"\n\
             [connections]\nmessage_timeout_ms = 1500\nmax_header_bytes = 2048\nper_source = 6\n\
             idle_s = 2\n",
            B1, B2
        ),
    );
    let bed = Bed::new("tcp-abuse", "uas_call", &config).unwrap();
    let caller = &bed.lan.host("caller").ns;
    let edge: SocketAddr = format!("{EDGE}:5060").parse().unwrap();

    // A slowloris client: one byte every 200 ms of a message that never ends.
    let mut slow = caller.tcp_connect(edge).unwrap();
    // A client sending an endless header.
    let mut endless = caller.tcp_connect(edge).unwrap();
    endless
        .write_all(b"OPTIONS sip:x@192.0.2.1 SIP/2.0\r\nX-Endless: ")
        .unwrap();
    let filler = [b'a'; 512];
    for _ in 0..8 {
        if endless.write_all(&filler).is_err() {
            break; // closed already
        }
    }
    // A client without Content-Length: the stream cannot be framed.
    let mut unframed = caller.tcp_connect(edge).unwrap();
    unframed
        .write_all(b"OPTIONS sip:x@192.0.2.1 SIP/2.0\r\nCall-ID: nolen\r\n\r\n")
        .unwrap();

    // Meanwhile a well-behaved client pings (RFC 5626: CRLF CRLF, answered CRLF) and asks.
    let mut good = caller.tcp_connect(edge).unwrap();
    good.write_all(b"\r\n\r\n").unwrap();
    let pong = read_until(&mut good, "\r\n", Duration::from_secs(2));
    assert_eq!(pong, "\r\n", "a pong for the ping");
    let slow_bytes = b"OPTIONS sip:x@192.0.2.1 SIP/2.0\r\n";
    let started = Instant::now();
    for (i, b) in slow_bytes.iter().enumerate() {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        if i == 2 {
            let options = String::from_utf8(sip_message("OPTIONS", "tcp-good-1", 1))
                .unwrap()
                .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
            good.write_all(options.as_bytes()).unwrap();
            let answer = read_until(&mut good, "\r\n\r\n", Duration::from_secs(3));
            assert!(
                answer.starts_with("SIP/2.0 200"),
                "answered while the others stall: {answer:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)),
        "the slowloris client was closed"
    );
    assert!(
        closed_within(&mut endless, Duration::from_secs(3)),
        "the endless header was closed"
    );
    assert!(
        closed_within(&mut unframed, Duration::from_secs(3)),
        "the unframed stream was closed"
    );

    // An idle connection (a ping, then silence) is closed after idle_s.
    let mut idle = caller.tcp_connect(edge).unwrap();
    idle.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(
        read_until(&mut idle, "\r\n", Duration::from_secs(1)),
        "\r\n"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)),
        "closed when idle"
    );
    drop(idle);

    // connections.per_source = 6: with every other connection closed, 1 of 7 is refused.
    drop(good);
    std::thread::sleep(Duration::from_millis(300));
    // (Which one the edge refuses depends on the order it accepts them in; the accepted ones
    // stay open for message_timeout_ms, 1.5 s, so a close seen before then is the refusal.)
    let more: Vec<_> = (0..7).map(|_| caller.tcp_connect(edge).unwrap()).collect();
    let started = Instant::now();
    let mut closed = vec![false; more.len()];
    while started.elapsed() < Duration::from_millis(1000) && !closed.contains(&true) {
        for (s, c) in more.iter().zip(&mut closed) {
            s.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            if matches!((&*s).read(&mut byte), Ok(0)) {
                *c = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        closed.iter().filter(|&&c| c).count(),
        1,
        "one beyond connections.per_source"
    );

    let m = bed.metrics().unwrap();
    assert_eq!(
        metric_sum(
            &m,
            "sip_fastpath_connections_total{event=\"refused\",transport=\"tcp\""
        ),
        1,
        "{m}"
    );
    for reason in ["slow", "header_too_large", "bad_framing", "idle"] {
        assert!(
            metric_sum(
                &m,
                &format!(
                    "sip_fastpath_connections_closed_total{{reason=\"{reason}\",transport=\"tcp\""
                )
            ) >= 1,
            "closed as {reason}\n{m}"
        );
    }
}
