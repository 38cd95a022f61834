//! The XDP program on the real kernel, through `BPF_PROG_TEST_RUN` (needs root, so it lives in
//! this crate, which plain `cargo test` leaves out): the RFC 4475 torture messages and crafted
//! frames, classified exactly as `sip-fastpath classify` does, and `classify` itself.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::Mutex,
};

use sip_common::hash_call_id;
use sip_user::{
    control::filter::FilterSettings,
    sip::{self, Header, Parsed},
    tools::classify::{Classifier, Decision},
    tools::frame::FrameSpec,
    tools::samples,
};

/// Test runs pin their thread to read per-CPU results; one classifier at a time keeps it simple.
static SERIAL: Mutex<()> = Mutex::new(());

/// Payload bytes that fit in the linear part of a `BPF_PROG_TEST_RUN` XDP frame (a page less
/// headroom and shared info, less the headers).
const MAX_LINEAR_PAYLOAD: usize = 3000;

fn rfc4475_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/rfc4475")
}

fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(rfc4475_dir().join("MANIFEST.tsv")).expect("manifest");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect()
}

fn settings() -> FilterSettings {
    FilterSettings {
        blocklist: vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:bad::/48".parse().unwrap(),
        ],
        rate_limit_pps: 0,
        ..FilterSettings::default()
    }
}

fn classifier() -> Classifier {
    Classifier::new(settings())
        .expect("load the XDP program (run as root after `cargo xtask build`)")
}

fn classify(c: &Classifier, payload: &[u8]) -> Decision {
    c.classify_payload(payload, 5060).expect("test run")
}

/// A frame carrying `payload` from the IPv4 source `a` (port 5060) to port 5060.
fn from_v4(a: [u8; 4], payload: &[u8]) -> Vec<u8> {
    from_ip(IpAddr::V4(Ipv4Addr::from(a)), payload)
}

/// `payload` from `ip`:5060 to port 5060 of a documentation address of its family.
fn from_ip(ip: IpAddr, payload: &[u8]) -> Vec<u8> {
    FrameSpec::from_source(SocketAddr::new(ip, 5060), 5060).build(payload)
}

#[test]
fn rfc4475_messages_are_never_dropped_and_hashes_match() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let files = manifest();
    assert_eq!(files.len(), 49, "all 49 RFC 4475 messages");
    let mut with_call_id = 0;
    let mut parsed_with_call_id = 0;
    let mut long_steered = 0;
    for (file, class) in files {
        let bytes = std::fs::read(rfc4475_dir().join(&file)).unwrap();
        let d = classify(&c, &bytes);
        assert_ne!(d.verdict, "drop", "{file} ({class}) was dropped: {d:?}");
        if bytes.len() > MAX_LINEAR_PAYLOAD {
            // Larger than the linear part of an XDP test-run frame (and than any unfragmented
            // datagram on a 1500-byte link): the program scans the part that is there, and the
            // Call-ID is in it (longreq's is at byte 1,124), so it is steered like the rest.
            long_steered += usize::from(d.reason == "steered");
        }
        // The userspace parser's Call-ID: from the whole message where it parses, else from
        // its header lines (the invalid messages' start lines may be broken; the kernel still
        // steers them, and must agree).
        let mut headers = [Header::EMPTY; 64];
        if let Ok(Parsed::Message(m)) = sip::parse(&bytes, &mut headers) {
            parsed_with_call_id += usize::from(m.call_id().is_some());
        }
        let mut headers = [Header::EMPTY; 64];
        match sip::parse_headers_only(&bytes, &mut headers)
            .ok()
            .and_then(sip::call_id_in)
        {
            Some(value) => {
                with_call_id += 1;
                assert_eq!(
                    d.verdict, "redirect",
                    "{file}: has a Call-ID, should be steered: {d:?}"
                );
                assert_eq!(
                    d.call_id_hash,
                    Some(hash_call_id(value)),
                    "{file}: kernel hash differs from the parser's Call-ID {:?}",
                    String::from_utf8_lossy(value)
                );
            }
            None => assert_eq!(d.reason, "no_call_id", "{file}: {d:?}"),
        }
    }
    assert_eq!(long_steered, 1, "longreq is steered from its linear part");
    assert!(
        with_call_id >= 44,
        "only {with_call_id} messages had a Call-ID"
    );
    assert!(
        parsed_with_call_id >= 39,
        "only {parsed_with_call_id} messages parsed with a Call-ID"
    );
}

#[test]
fn non_sip_on_the_sip_port_is_dropped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let tls_client_hello = [
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x5a,
    ];
    for (name, payload) in [
        ("junk", samples::junk()),
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
        ),
        ("tls", tls_client_hello.to_vec()),
        (
            "no version",
            b"INVITE sip:a@b\r\nCall-ID: x\r\n\r\n".to_vec(),
        ),
        (
            "space first",
            b" INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n".to_vec(),
        ),
    ] {
        let d = classify(&c, &payload);
        assert_eq!((d.verdict, d.reason), ("drop", "not_sip"), "{name}: {d:?}");
    }
}

#[test]
fn keepalives_pass() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    for (name, payload) in [
        ("crlfcrlf", b"\r\n\r\n".to_vec()),
        ("crlf", b"\r\n".to_vec()),
        ("stun", stun),
    ] {
        let d = classify(&c, &payload);
        assert_eq!(
            (d.verdict, d.reason),
            ("pass", "keepalive"),
            "{name}: {d:?}"
        );
    }
    // An empty datagram is no keep-alive: counted as what it is.
    let d = classify(&c, b"");
    assert_eq!((d.verdict, d.reason), ("pass", "empty"), "{d:?}");
}

#[test]
fn scanner_user_agents_are_dropped_case_insensitively() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    for ua in [
        "friendly-scanner",
        "Friendly-Scanner",
        "sipvicious 0.3",
        "pplsip (sipcli/v1.8)",
    ] {
        let msg = format!(
            "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
             From: <sip:100@192.0.2.1>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: scan1\r\n\
             CSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        );
        let d = classify(&c, msg.as_bytes());
        assert_eq!((d.verdict, d.reason), ("drop", "scanner"), "{ua}: {d:?}");
    }
    // Anywhere in the value's first 48 bytes, also when the User-Agent is the last header
    // and the datagram ends right after it, or when a long header follows it (the value is then
    // read in one step from the header name); not beyond the window.
    let with_sep = |sep: &str, ua: &str, last: bool| {
        let ua_line = format!("User-Agent{sep}{ua}\r\n");
        let tail = "Call-ID: w\r\nContent-Length: 0\r\n";
        let msg = if last {
            format!("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: w\r\n{ua_line}\r\n")
        } else {
            let pad = format!("X-Pad: {}\r\n", "p".repeat(80));
            format!("OPTIONS sip:a@b SIP/2.0\r\n{ua_line}{pad}{tail}\r\n")
        };
        let short = format!("OPTIONS sip:a@b SIP/2.0\r\n{ua_line}{tail}\r\n");
        let (long, short) = (
            classify(&c, msg.as_bytes()).reason,
            classify(&c, short.as_bytes()).reason,
        );
        if !last {
            assert_eq!(long, short, "{sep:?} {ua}");
        }
        long
    };
    let with_ua = |ua: &str, last: bool| with_sep(": ", ua, last);
    // Separators of every shape RFC 3261 §7.3.1 allows, a fold among them.
    for sep in [
        ":",
        ": ",
        " : ",
        "\t:\t ",
        ":        \t  ",
        ":\r\n ",
        ":  \r\n\t",
    ] {
        for last in [false, true] {
            assert_eq!(with_sep(sep, "sipvicious", last), "scanner", "{sep:?}");
            assert_eq!(with_sep(sep, "x sipcli", last), "scanner", "{sep:?}");
            assert_eq!(with_sep(sep, "Yealink", last), "steered", "{sep:?}");
        }
    }
    let deep = format!("{}friendly-scanner", "x".repeat(32));
    assert_eq!(with_ua(&deep, false), "scanner");
    assert_eq!(with_ua(&deep, true), "scanner");
    assert_eq!(with_ua("sipcli", true), "scanner");
    let beyond = format!("{}friendly-scanner", "x".repeat(48));
    assert_eq!(with_ua(&beyond, false), "steered");
    // The shortest signature ending exactly where the value does, at every alignment, also
    // in the datagram's last bytes (the words after it are then not whole); one byte short
    // of it is no match.
    for pad in 0..=42 {
        let x = "x".repeat(pad);
        for last in [false, true] {
            assert_eq!(
                with_ua(&format!("{x}SIPcli"), last),
                "scanner",
                "{pad} {last}"
            );
            assert_eq!(
                with_ua(&format!("{x}sipcl"), last),
                "steered",
                "{pad} {last}"
            );
        }
    }
    // Scanners send requests: a response's User-Agent is not looked at.
    let response = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\nCall-ID: r\r\n\r\n";
    assert_eq!(classify(&c, response).reason, "steered");
    // A real phone's User-Agent passes, and so does a signature in another header.
    let ok = samples::invite("ua-ok@example.com");
    assert_eq!(classify(&c, &ok).verdict, "redirect");
    let other = b"OPTIONS sip:a@b SIP/2.0\r\nUser-Agent: Yealink\r\nSubject: sipvicious\r\nCall-ID: z\r\n\r\n";
    assert_eq!(classify(&c, other).verdict, "redirect");
}

/// The datagram's end ends a `User-Agent` value as a line end does: a signature's trailing
/// space is not matched by whatever the check reads past the last byte.
#[test]
fn a_signature_is_not_completed_past_the_datagrams_end() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Classifier::new(FilterSettings {
        scanners: vec!["sipcli ".to_string()],
        ..settings()
    })
    .expect("load the XDP program");
    let head = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: w\r\nUser-Agent: x ";
    // Every length of filler, so that the value's end falls at each alignment of the words
    // the check loads.
    for pad in 0..=24 {
        let x = "y".repeat(pad);
        let cut = format!("{head}{x}sipcli");
        assert_eq!(classify(&c, cut.as_bytes()).reason, "steered", "{pad}");
        let whole = format!("{head}{x}sipcli 1.0\r\n\r\n");
        assert_eq!(classify(&c, whole.as_bytes()).reason, "scanner", "{pad}");
    }
}

#[test]
fn compact_call_id_at_the_end_of_a_1400_byte_header_section() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let mut msg = String::from("OPTIONS sip:a@example.com SIP/2.0\r\n");
    let mut n = 0;
    while msg.len() < 1390 {
        msg.push_str(&format!("X-Filler-{n}: {}\r\n", "a".repeat(40)));
        n += 1;
    }
    msg.push_str("i:last-one\r\n\r\n");
    assert!(msg.len() >= 1400, "{}", msg.len());
    let d = classify(&c, msg.as_bytes());
    assert_eq!(d.verdict, "redirect", "{d:?}");
    assert_eq!(d.call_id_hash, Some(hash_call_id(b"last-one")));
    // The scan's worst case: 1,400 bytes of the shortest header lines (one step per line).
    let mut tiny = String::from("OPTIONS sip:a@example.com SIP/2.0\r\n");
    while tiny.len() < 1430 {
        tiny.push_str("x:y\r\n");
    }
    tiny.push_str("i:deep\r\n\r\n");
    let d = classify(&c, tiny.as_bytes());
    assert_eq!(
        (d.verdict, d.call_id_hash),
        ("redirect", Some(hash_call_id(b"deep"))),
        "{d:?}"
    );
    // Long name, odd case, whitespace before the colon, a folded value.
    let folded = b"BYE sip:a@b SIP/2.0\r\nVia: x\r\ncALL-iD \t:\r\n  folded-id@h\r\n\r\n";
    assert_eq!(
        classify(&c, folded).call_id_hash,
        Some(hash_call_id(b"folded-id@h"))
    );
}

#[test]
fn the_call_id_is_found_after_lines_of_every_length_and_not_in_the_body() {
    // The scan reads 32-byte chunks and checks the name after each LF: lines of every length
    // put the Call-ID's line start at every offset of a chunk, after one or several LFs in the
    // same chunk, and (with few lines) within the last 48 bytes, where it goes word by word.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    for len in 4..=72 {
        for lines in 0..=3 {
            let filler = format!("x:{}\r\n", "a".repeat(len - 4));
            let head = format!("OPTIONS sip:a@b SIP/2.0\r\n{}", filler.repeat(lines));
            let id = format!("id-{len}-{lines}");
            let msg = format!("{head}Call-ID: {id}\r\n\r\n");
            let d = classify(&c, msg.as_bytes());
            assert_eq!(
                (d.verdict, d.call_id_hash),
                ("redirect", Some(hash_call_id(id.as_bytes()))),
                "{msg:?}: {d:?}"
            );
            // The same line after the blank line is body, not a header.
            let body = format!("{head}\r\nCall-ID: {id}\r\n{}", "b".repeat(len));
            let d = classify(&c, body.as_bytes());
            assert_eq!(
                (d.verdict, d.reason),
                ("pass", "no_call_id"),
                "{body:?}: {d:?}"
            );
        }
    }
}

#[test]
fn no_call_id_passes_to_userspace() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let d = classify(
        &c,
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n",
    );
    assert_eq!((d.verdict, d.reason), ("pass", "no_call_id"), "{d:?}");
}

#[test]
fn vlan_ipv6_options_and_truncation() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = classifier();
    let payload = samples::options("layers@example.com");
    let want = Some(hash_call_id(b"layers@example.com"));
    let v4 = FrameSpec::ipv4_to_port(5060);
    let v6 = FrameSpec {
        src: SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
            5060,
        ),
        dst: SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            5060,
        ),
        ..v4.clone()
    };
    for (name, spec) in [
        (
            "vlan",
            FrameSpec {
                vlan: Some(100),
                ..v4.clone()
            },
        ),
        (
            "ipv4 options",
            FrameSpec {
                ipv4_options: 12,
                ..v4.clone()
            },
        ),
        ("ipv6", v6.clone()),
        (
            "ipv6 vlan",
            FrameSpec {
                vlan: Some(7),
                ..v6.clone()
            },
        ),
    ] {
        let d = c.classify_frame(&spec.build(&payload)).unwrap();
        assert_eq!(
            (d.verdict, d.call_id_hash),
            ("redirect", want),
            "{name}: {d:?}"
        );
    }
    // Another port: untouched.
    let d = c
        .classify_frame(&FrameSpec::ipv4_to_port(8080).build(&payload))
        .unwrap();
    assert_eq!((d.verdict, d.reason), ("pass", "other"));
    // Truncated frames: IP header cut → malformed; the datagram running past the frame's
    // linear data (what a multi-buffer frame looks like) → the part there is scanned, and this
    // one's Call-ID is in it.
    let full = v4.build(&payload);
    let d = c.classify_frame(&full[..30]).unwrap();
    assert_eq!((d.verdict, d.reason), ("pass", "malformed"), "{d:?}");
    let d = c.classify_frame(&full[..full.len() - 10]).unwrap();
    assert_eq!((d.verdict, d.call_id_hash), ("redirect", want), "{d:?}");
    // A UDP length past the IP packet's own length is malformed.
    let mut bad_len = full.clone();
    let udp_len_at = 14 + 20 + 4;
    let claimed = u16::from_be_bytes([bad_len[udp_len_at], bad_len[udp_len_at + 1]]) + 10;
    bad_len[udp_len_at..udp_len_at + 2].copy_from_slice(&claimed.to_be_bytes());
    let d = c.classify_frame(&bad_len).unwrap();
    assert_eq!((d.verdict, d.reason), ("pass", "malformed"), "{d:?}");
    // A blocklisted IPv6 source.
    let bad = FrameSpec {
        src: SocketAddr::new(IpAddr::V6("2001:db8:bad::5".parse().unwrap()), 5060),
        ..v6
    };
    let d = c.classify_frame(&bad.build(&payload)).unwrap();
    assert_eq!((d.verdict, d.reason), ("drop", "blocklist"));
}

#[test]
fn blocklist_beats_allowlist_and_rate_limit_counts_per_source() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let settings = FilterSettings {
        blocklist: vec!["203.0.113.0/24".parse().unwrap()],
        allowlist: vec![
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.7".parse().unwrap(),
        ],
        rate_limit_pps: 1,
        rate_limit_burst: 3,
        ..FilterSettings::default()
    };
    let c = Classifier::new(settings).unwrap();
    let payload = samples::options("rate@example.com");
    let from = |a: [u8; 4]| from_v4(a, &payload);
    let blocked = c.classify_frame(&from([203, 0, 113, 7])).unwrap();
    assert_eq!(blocked.reason, "blocklist");
    // A burst of 3 at 1 packet/s: the 4th is over the rate.
    let limited = from([192, 0, 2, 55]);
    let verdicts: Vec<&str> = (0..5)
        .map(|_| c.classify_frame(&limited).unwrap().reason)
        .collect();
    assert_eq!(
        verdicts,
        ["steered", "steered", "steered", "rate_limit", "rate_limit"]
    );
    // The allowlisted carrier is not limited.
    let carrier = from([198, 51, 100, 9]);
    for _ in 0..10 {
        assert_eq!(c.classify_frame(&carrier).unwrap().reason, "steered");
    }
}

/// The limiter's clock moves (it is read again at each tick, see `sip_common::TickClock`): a
/// source over its rate gets through again once real time has paid for one more packet, and
/// only for one.
#[test]
fn a_limited_source_passes_again_once_its_rate_allows() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 2 packets/s: 500 ms apart, a burst of 2 (1,000 ms ahead, plus the clock's quantum).
    let c = Classifier::new(FilterSettings {
        rate_limit_pps: 2,
        rate_limit_burst: 2,
        ..FilterSettings::default()
    })
    .unwrap();
    let frame = from_v4([192, 0, 2, 77], &samples::options("clock@example.com"));
    let send = || c.classify_frame(&frame).unwrap().reason;
    assert_eq!(
        [send(), send(), send()],
        ["steered", "steered", "rate_limit"]
    );
    // 600 ms pay for one packet (500 ms) even with the clock two 10-ms ticks behind.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(send(), "steered", "the clock moved on");
    assert_eq!(send(), "rate_limit", "by one packet's worth");
}

/// The rate table keeps two sources per set (`sip_common::RateSet`): a third source in a set
/// takes the way of the source whose allowed time is earliest, so the source furthest over its
/// rate is the last to be forgotten, and a newcomer is never refused.
#[test]
fn a_full_rate_set_forgets_the_source_least_ahead_of_its_rate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Three IPv4 sources in one set under this process's key (what the loader uses).
    let key = sip_user::control::filter::rate_key();
    let mut by_set = std::collections::HashMap::<u32, Vec<[u8; 4]>>::new();
    let trio = (0..1u32 << 20)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            [10, a, b, c]
        })
        .find_map(|ip| {
            let set =
                sip_common::rate_set(sip_common::rate_tag(sip_common::mapped_v4_words(ip), key));
            let list = by_set.entry(set).or_default();
            list.push(ip);
            (list.len() == 3).then(|| list.clone())
        })
        .expect("three of 2^20 sources share one of 32,768 sets");
    let c = Classifier::new(FilterSettings {
        rate_limit_pps: 1,
        rate_limit_burst: 2,
        ..FilterSettings::default()
    })
    .unwrap();
    let payload = samples::options("rate-set@example.com");
    let send = |a: [u8; 4]| c.classify_frame(&from_v4(a, &payload)).unwrap().reason;
    let [limited, light, newcomer] = [trio[0], trio[1], trio[2]];
    // `limited` spends its burst (2 s ahead of its rate), `light` sends one (1 s ahead).
    assert_eq!(
        [send(limited), send(limited), send(limited)],
        ["steered", "steered", "rate_limit"]
    );
    assert_eq!(send(light), "steered");
    // The newcomer takes `light`'s way; `limited` keeps its state and stays refused.
    assert_eq!(send(newcomer), "steered");
    assert_eq!(send(limited), "rate_limit");
    // `light` comes back as new (a fresh burst) and takes the newcomer's way in turn.
    assert_eq!(send(light), "steered");
    assert_eq!(send(limited), "rate_limit");
    // A source in another set is untouched by all of this.
    let elsewhere = (0..=255u8)
        .map(|d| [192, 0, 2, d])
        .find(|&ip| {
            let set =
                |a| sip_common::rate_set(sip_common::rate_tag(sip_common::mapped_v4_words(a), key));
            set(ip) != set(limited)
        })
        .unwrap();
    assert_eq!([send(elsewhere), send(elsewhere)], ["steered", "steered"]);
}

/// `sip_tcp_ports`: a SYN (a new connection) meets the blocklist and the source's rate, the
/// rest of a TCP stream and other ports pass untouched, as the program never reads streams.
#[test]
fn tcp_syns_to_sip_ports_meet_the_blocklist_and_the_rate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let settings = FilterSettings {
        tcp_ports: vec![5060, 5061],
        blocklist: vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:bad::/48".parse().unwrap(),
        ],
        rate_limit_pps: 1,
        rate_limit_burst: 3,
        ..FilterSettings::default()
    };
    let c = Classifier::new(settings).unwrap();
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let to = |src: IpAddr, port: u16| FrameSpec::from_source(SocketAddr::new(src, 40000), port);
    let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
    let run = |f: &FrameSpec, flags: u8| {
        let d = c.classify_frame(&f.build_tcp(flags)).unwrap();
        (d.verdict, d.reason)
    };
    let blocked = to(v4([203, 0, 113, 9]), 5061);
    assert_eq!(run(&blocked, SYN), ("drop", "tcp_syn_blocklist"));
    let blocked6 = to(IpAddr::V6("2001:db8:bad::5".parse().unwrap()), 5060);
    assert_eq!(run(&blocked6, SYN), ("drop", "tcp_syn_blocklist"));
    // A burst of 3 SYNs at 1 a second, then the rate limit.
    let flood = to(v4([192, 0, 2, 77]), 5060);
    let reasons: Vec<&str> = (0..5).map(|_| run(&flood, SYN).1).collect();
    assert_eq!(
        reasons,
        [
            "tcp_syn",
            "tcp_syn",
            "tcp_syn",
            "tcp_syn_rate_limit",
            "tcp_syn_rate_limit"
        ]
    );
    // Segments of an open connection, a SYN-ACK, and SYNs to other ports: not looked at.
    assert_eq!(run(&flood, ACK), ("pass", "other"));
    assert_eq!(run(&flood, SYN | ACK), ("pass", "other"));
    assert_eq!(run(&blocked, ACK), ("pass", "other"));
    assert_eq!(run(&to(v4([203, 0, 113, 9]), 22), SYN), ("pass", "other"));
    // Without tcp_ports, no SYN is looked at either.
    let c = Classifier::new(FilterSettings {
        blocklist: vec!["203.0.113.0/24".parse().unwrap()],
        ..FilterSettings::default()
    })
    .unwrap();
    let d = c.classify_frame(&blocked.build_tcp(SYN)).unwrap();
    assert_eq!((d.verdict, d.reason), ("pass", "other"));
}

/// What a SIGHUP applies replaces the lists: a CIDR dropped from the blocklist or the
/// allowlist stops applying at once, one kept or added applies.
#[test]
fn applying_new_settings_removes_the_cidrs_no_longer_listed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lists = |block: &[&str], allow: &[&str]| FilterSettings {
        blocklist: block.iter().map(|c| c.parse().unwrap()).collect(),
        allowlist: allow.iter().map(|c| c.parse().unwrap()).collect(),
        rate_limit_pps: 1,
        rate_limit_burst: 1,
        ..FilterSettings::default()
    };
    let mut c = Classifier::new(lists(
        &["203.0.113.0/24", "198.51.100.0/24"],
        &["192.0.2.128/25"],
    ))
    .unwrap();
    let payload = samples::options("reload@example.com");
    let reason =
        |c: &Classifier, a: [u8; 4]| c.classify_frame(&from_v4(a, &payload)).unwrap().reason;
    assert_eq!(reason(&c, [203, 0, 113, 7]), "blocklist");
    assert_eq!(reason(&c, [198, 51, 100, 7]), "blocklist");
    // The allowlisted carrier is not rate limited (burst 1).
    for _ in 0..3 {
        assert_eq!(reason(&c, [192, 0, 2, 200]), "steered");
    }
    c.apply(&lists(&["198.51.100.0/24", "2001:db8:bad::/48"], &[]))
        .unwrap();
    assert_ne!(
        reason(&c, [203, 0, 113, 7]),
        "blocklist",
        "dropped from the blocklist"
    );
    assert_eq!(reason(&c, [198, 51, 100, 7]), "blocklist", "kept");
    let burst: Vec<&str> = (0..3).map(|_| reason(&c, [192, 0, 2, 200])).collect();
    assert_eq!(
        burst[2], "rate_limit",
        "dropped from the allowlist: limited again {burst:?}"
    );
    c.apply(&lists(&[], &[])).unwrap();
    assert_ne!(
        reason(&c, [198, 51, 100, 7]),
        "blocklist",
        "an empty blocklist"
    );
}

/// The lists' hints (`sip_common::ListHints`) let the program skip the trie for sources no
/// CIDR may hold: a prefix shorter than the hints' 16 bits reaches every address it holds, in
/// both families, and nothing next to it; so does a CIDR added by a reload.
#[test]
fn short_prefixes_reach_every_address_they_hold() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let block = |cidrs: &[&str]| FilterSettings {
        blocklist: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        rate_limit_pps: 0,
        ..FilterSettings::default()
    };
    let mut c = Classifier::new(block(&["10.0.0.0/8", "2c00::/7", "2001:db8::/29"])).unwrap();
    let payload = samples::options("hints@example.com");
    let reason = |c: &Classifier, ip: &str| {
        let frame = from_ip(ip.parse().unwrap(), &payload);
        c.classify_frame(&frame).unwrap().reason
    };
    for ip in [
        "10.0.0.1",
        "10.200.7.9",
        "10.255.255.255",
        "2c00::1",
        "2dff:1::5",
        "2001:dbf::1",
    ] {
        assert_eq!(reason(&c, ip), "blocklist", "{ip}");
    }
    for ip in [
        "9.255.255.255",
        "11.0.0.0",
        "2bff::1",
        "2e00::1",
        "2001:dc0::1",
    ] {
        assert_eq!(reason(&c, ip), "steered", "{ip}");
    }
    c.apply(&block(&["172.16.0.0/12"])).unwrap();
    assert_eq!(reason(&c, "172.31.9.9"), "blocklist", "added by a reload");
    assert_ne!(reason(&c, "10.200.7.9"), "blocklist", "dropped by a reload");
}

/// `sip-fastpath classify` as a user runs it: the kernel's verdict on a file, and its Call-ID
/// hash equal to the userspace parser's.
#[test]
fn classify_agrees_with_the_parser() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files = ["wsinv.dat", "esc01.dat", "dblreq.dat", "insuf.dat"];
    let out = std::process::Command::new(tests::binary())
        .arg("classify")
        .args(files.iter().map(|f| rfc4475_dir().join(f)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "classify (root, eBPF built): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), files.len());
    for (file, line) in files.iter().zip(&lines) {
        let bytes = std::fs::read(rfc4475_dir().join(file)).unwrap();
        let summary = sip::summary::summarize(&bytes);
        match summary.call_id {
            Some(id) => {
                assert_eq!(line["verdict"], "redirect", "steered by default: {line}");
                assert_eq!(
                    line["call_id_hash"].as_u64(),
                    Some(hash_call_id(id.as_bytes())),
                    "{file}"
                );
            }
            None => assert!(line["call_id_hash"].is_null(), "{file}: {line}"),
        }
    }
}

/// `sip-fastpath bench-xdp`'s measurement, briefly: every packet kind gets the verdict the
/// README's table shows (a benchmark that measured the wrong path would still print numbers),
/// the flood case included.
#[test]
fn bench_xdp_measures_each_kind_on_its_path() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let features = sip_user::tools::bench::Features {
        scanners: true,
        rate_limit: true,
    };
    let report = sip_user::tools::bench::run(1_000, 1, features, None).expect("bench-xdp");
    let outcomes: Vec<(&str, &str)> = report
        .rows
        .iter()
        .map(|r| (r.case, r.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("INVITE with SDP", "redirect/steered"),
            ("OPTIONS", "redirect/steered"),
            ("200 OK", "redirect/steered"),
            ("INVITE, Call-ID last header", "redirect/steered"),
            (
                "RFC 4475 longreq (past the linear data)",
                "redirect/steered"
            ),
            ("junk (not SIP)", "drop/not_sip"),
            ("INVITE from blocklisted source", "drop/blocklist"),
            (
                "INVITE over its source's rate (a SIP flood)",
                "drop/rate_limit"
            ),
        ]
    );
    let without = sip_user::tools::bench::Features {
        scanners: false,
        rate_limit: false,
    };
    let report = sip_user::tools::bench::run(1_000, 1, without, Some("flood")).unwrap();
    assert!(
        report.rows.is_empty(),
        "no flood to measure without the limiter"
    );
}
