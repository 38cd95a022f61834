//! End to end: sipp callers → sip-fastpath (XDP attached) → two sipp backends, each in its own
//! network namespace on one switched LAN. Needs root, sipp and the built binary
//! (`cargo xtask test` does all three).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tests::{
    bed::{
        B1, B2, Bed, DNS_SERVER, FLOOD, assert_affinity, assert_all_succeeded, config, config_with,
        flood,
    },
    dns::{Srv, Zone},
    reason,
};

#[test]
fn calls_split_between_backends_with_every_message_of_a_call_at_one() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-split", "uas_call", &config(1000))?;
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
    let bed = Bed::new(tag, uas, &config(1000))?;
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

#[test]
fn calls_complete_through_five_percent_loss() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-loss", "uas_call", &config(1000))?;
    bed.lan.set_loss(5)?;
    let calls: u32 = std::env::var("SFP_LOSS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let r = bed.call("uac_call", calls, 20)?;
    let lost = bed.lan.lost();
    eprintln!(
        "5% loss: {} of {calls} calls succeeded, {lost} datagrams lost in the switch, \
         {} retransmissions by the caller, p99 {} ms",
        r.successful,
        r.retransmissions,
        r.percentile(99.0)
    );
    assert_all_succeeded(&r, calls as u64);
    assert!(
        lost > 0,
        "5% loss and nothing lost: the loss rule did nothing"
    );
    Ok(())
}

/// The value of one Prometheus sample line `name{labels} value`, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Scrapes the daemon until `series` reads `value`; fails after `limit`. Returns the wait.
fn wait_for_sample(
    bed: &Bed,
    series: &str,
    value: f64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if sample(&bed.metrics()?, series) == Some(value) {
            return Ok(start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{series} is not {value} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_backend_is_marked_down_and_new_calls_go_to_the_other() -> anyhow::Result<()> {
    let interval_ms = 500;
    let mut bed = Bed::new("e2e-kill", "uas_call", &config(interval_ms))?;
    let r = bed.call("uac_call", 40, 40)?;
    assert_all_succeeded(&r, 40);
    let before = assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?;
    assert!(
        before.iter().all(|&n| n > 0),
        "both backends took calls: {before:?}"
    );

    bed.backends[1].kill();
    let killed = Instant::now();
    // fall = 2 probes, one per interval, each failing after timeout = interval / 2.
    let window = Duration::from_millis(2 * interval_ms + interval_ms / 2);
    let up = format!("sip_fastpath_backend_up{{backend=\"{B2}:5060\"}}");
    wait_for_sample(&bed, &up, 0.0, window + Duration::from_secs(2))?;
    let detected = killed.elapsed();
    eprintln!("killed backend marked down after {detected:?} (window {window:?})");
    assert!(
        detected <= window + Duration::from_millis(500),
        "took {detected:?}"
    );

    let r = bed.call("uac_call", 100, 50)?;
    assert_all_succeeded(&r, 100);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [100, 0]
    );
    let m = bed.metrics()?;
    let failures = format!("sip_fastpath_health_check_failures_total{{backend=\"{B2}:5060\"}}");
    assert!(sample(&m, &failures).unwrap_or(0.0) >= 2.0, "{m}");
    assert_eq!(
        sample(
            &m,
            &format!("sip_fastpath_backend_up{{backend=\"{B1}:5060\"}}")
        ),
        Some(1.0)
    );
    Ok(())
}

#[test]
fn a_flood_of_junk_and_scanners_is_dropped_in_xdp_while_calls_succeed() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-flood", "uas_call", &config(1000))?;
    let done = AtomicBool::new(false);
    let calls = 200;
    let (report, sent) = std::thread::scope(|s| {
        let flooding = s.spawn(|| flood(&bed, &done, 100, 800_000));
        let report = bed.call("uac_call", calls, 40);
        done.store(true, Ordering::Relaxed);
        (report, flooding.join().expect("flood thread"))
    });
    let (r, sent) = (report?, sent?);
    let s = bed.daemon.stats()?;
    let (junk, rate, scanner) = (
        reason(&s, "drop/not_sip"),
        reason(&s, "drop/rate_limit"),
        reason(&s, "drop/scanner"),
    );
    eprintln!(
        "flood of {sent} packets during {calls} calls: dropped in XDP not_sip {junk}, \
         rate_limit {rate}, scanner {scanner}; calls {} ok, {} failed",
        r.successful, r.failed
    );
    assert_all_succeeded(&r, calls as u64);
    assert!(junk >= sent / 3, "junk dropped {junk} of ~{}", sent / 2);
    assert!(
        rate >= sent / 4,
        "REGISTERs rate limited {rate} of ~{}",
        sent / 2
    );
    assert!(scanner >= 50, "scanner OPTIONS dropped {scanner} of 100");
    Ok(())
}

#[test]
fn a_backend_drained_by_reload_takes_no_new_calls() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-drain", "uas_call", &config(1000))?;
    let r = bed.call("uac_call", 40, 40)?;
    assert_all_succeeded(&r, 40);
    let before = assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?;
    assert!(
        before.iter().all(|&n| n > 0),
        "both backends took calls: {before:?}"
    );

    // The operator marks B2 draining and sends SIGHUP.
    let drained = config(1000).replacen(
        &format!("address = \"{B2}:5060\"\nweight = 1"),
        &format!("address = \"{B2}:5060\"\nweight = 1\ndraining = true"),
        1,
    );
    assert_ne!(drained, config(1000), "the config edit did not apply");
    bed.daemon.reload(&drained)?;
    let series = format!("sip_fastpath_backend_draining{{backend=\"{B2}:5060\"}}");
    wait_for_sample(&bed, &series, 1.0, Duration::from_secs(5))?;
    let r = bed.call("uac_call", 60, 30)?;
    assert_all_succeeded(&r, 60);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [60, 0]
    );
    Ok(())
}

/// The zone of the SRV test: `_sip._udp.sip.test` lists B1 and B2 (when given) at these
/// (priority, weight), with a 2 s TTL.
fn sip_test_zone(b1: Option<(u16, u16)>, b2: Option<(u16, u16)>) -> Zone<'static> {
    let record = |target, (priority, weight)| Srv {
        target,
        port: 5060,
        priority,
        weight,
    };
    Zone {
        service: "_sip._udp.sip.test",
        records: [
            b1.map(|pw| record("b1.sip.test", pw)),
            b2.map(|pw| record("b2.sip.test", pw)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        hosts: vec![("b1.sip.test", B1), ("b2.sip.test", B2)],
        ttl: 2,
    }
}

/// SIGHUP makes the XDP lists exactly what the config says: a source blocked by the blocklist
/// gets no answer; once its CIDR is removed from the config and SIGHUP sent, it is answered.
#[test]
fn a_cidr_removed_from_the_blocklist_by_reload_lets_its_traffic_through() -> anyhow::Result<()> {
    // Another CIDR stays listed, so the blocklist is not simply switched off by the reload.
    let open = format!("{}blocklist = [\"198.51.100.0/24\"]\n", config(1000));
    let blocked = format!(
        "{}blocklist = [\"198.51.100.0/24\", \"{FLOOD}/32\"]\n",
        config(1000)
    );
    let bed = Bed::new("e2e-unblock", "uas_call", &blocked)?;
    let socket = bed
        .lan
        .host("flood")
        .ns
        .udp_socket(format!("{FLOOD}:5060").parse()?)?;
    let edge = format!("{}:5060", tests::EDGE_ADDR).parse()?;
    let ask = |n: u32| {
        let msg = tests::sip_message("OPTIONS", &format!("unblock-{n}"), n);
        tests::udp::exchange(&socket, edge, &msg, Duration::from_millis(800))
    };
    assert!(ask(1)?.is_empty(), "blocked: dropped in XDP, no answer");
    let stats = bed.daemon.stats()?;
    assert!(reason(&stats, "drop/blocklist") >= 1, "{stats}");
    bed.daemon.reload(&open)?;
    let answered =
        (2..12).any(|n| ask(n).is_ok_and(|got| got.iter().any(|d| d.starts_with(b"SIP/2.0 200"))));
    assert!(answered, "the CIDR left the blocklist with the reload");
    Ok(())
}

#[test]
fn srv_backends_follow_priority_weight_and_ttl() -> anyhow::Result<()> {
    let config = config_with(
        1000,
        &format!(
            "[[backends]]\nsrv = \"sip.test\"\n\
             [dns]\nservers = [\"{DNS_SERVER}\"]\ntimeout_ms = 300\nretry_ms = 1000\n"
        ),
    );
    let zone = sip_test_zone(Some((10, 1)), Some((20, 1)));
    let mut bed = Bed::with_dns("e2e-srv", "uas_call", &config, &zone)?;
    let series = |name: &str, b: &str| format!("sip_fastpath_{name}{{backend=\"{b}:5060\"}}");
    let ttl = Duration::from_secs(10);

    // Priority 10 (B1) takes every call while it is up; B2 (priority 20) waits.
    wait_for_sample(&bed, &series("backend_priority", B2), 20.0, ttl)?;
    let r = bed.call("uac_call", 20, 20)?;
    assert_all_succeeded(&r, 20);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [20, 0]
    );

    // The records change: both at priority 10. Once the 2 s TTL runs out the daemon asks
    // again, and new calls split.
    let edge = &bed.lan.host("edge").ns;
    let dns = bed.dns.as_mut().expect("the bed has DNS");
    dns.serve(edge, &sip_test_zone(Some((10, 1)), Some((10, 1))))?;
    let waited = wait_for_sample(&bed, &series("backend_priority", B2), 10.0, ttl)?;
    eprintln!("new SRV records in use after {waited:?} (TTL 2 s)");
    let r = bed.call("uac_call", 100, 50)?;
    assert_all_succeeded(&r, 100);
    let split = assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?;
    assert!(
        split.iter().all(|&n| n >= 25),
        "equal weights split {split:?}"
    );

    // B1 leaves the records: it drains, and every new call goes to B2.
    let edge = &bed.lan.host("edge").ns;
    let dns = bed.dns.as_mut().expect("the bed has DNS");
    dns.serve(edge, &sip_test_zone(None, Some((10, 1))))?;
    wait_for_sample(&bed, &series("backend_draining", B1), 1.0, ttl)?;
    let r = bed.call("uac_call", 20, 20)?;
    assert_all_succeeded(&r, 20);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [0, 20]
    );
    let lookups = |bed: &Bed, result: &str| -> anyhow::Result<f64> {
        let series =
            format!("sip_fastpath_dns_lookups_total{{result=\"{result}\",srv=\"sip.test\"}}");
        Ok(sample(&bed.metrics()?, &series).unwrap_or(0.0))
    };
    let ok = lookups(&bed, "ok")?;
    assert!(ok >= 3.0, "SRV lookups: {ok}");

    // The DNS server dies: lookups fail, and the last records stay in use.
    bed.dns.as_mut().expect("the bed has DNS").stop();
    let deadline = Instant::now() + ttl;
    while lookups(&bed, "error")? < 1.0 {
        assert!(Instant::now() < deadline, "no failed lookup counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = bed.call("uac_call", 20, 20)?;
    assert_all_succeeded(&r, 20);
    assert_eq!(
        assert_affinity(&bed, &r, &["INVITE", "ACK", "BYE"])?,
        [0, 20]
    );
    assert_eq!(
        sample(&bed.metrics()?, &series("backend_draining", B2)),
        Some(0.0)
    );
    Ok(())
}

/// The sum of every sample of `name` whose labels contain `label` (all workers).
fn sum_of(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_flood_of_every_shape_stays_under_the_memory_ceiling_while_calls_succeed() -> anyhow::Result<()>
{
    // Small limits, so the flood meets them within seconds; T1 = 100 ms makes 64·T1 6.4 s, so
    // unACKed 2xx end (and are counted) within the test. These limits bound the state to ~16 MB
    // on the 2 workers (4,000 server transactions each, as many client ones, ~0.4 KB apiece;
    // 2,000 dialogs, ~0.5 KB), so RSS may grow at most that plus the allocator's slack over
    // idle. (Measured: 19.8 -> 22.3 MB with them; the same flood without them: 54.7 MB.)
    const CEILING_OVER_IDLE: u64 = 24 << 20;
    let bed = flood_bed(
        "e2e-limits",
        "[limits]\ntransactions = 4000\nper_source = 500\ndialogs = 2000\n[timers]\nt1_ms = 100\n",
    )?;
    let run = calls_during_flood(&bed, flood_every_shape, Duration::from_secs(12))?;
    let m = bed.metrics()?;
    let per_source = sum_of(&m, "sip_fastpath_overload_total", "limit=\"per_source\"");
    eprintln!("flood: {run}; {per_source} refused by per_source");
    run.check(20_000, CEILING_OVER_IDLE);
    assert!(per_source > 0.0, "the per-source limit engaged\n{m}");
    // The flood's INVITEs were answered 2xx by the backends and never ACKed: their dialogs end
    // after 64·T1 and are counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = bed.metrics()?;
        if sum_of(&m, "sip_fastpath_dialogs_ended_total", "end=\"no_ack\"") > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dialog ended for want of an ACK\n{m}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

#[test]
fn a_flood_of_large_requests_meets_its_share_of_memory_while_calls_succeed() -> anyhow::Result<()> {
    // memory_mb = 64 on 2 workers: one source's requests may hold 4 MiB per worker. T1 = 100
    // ms: a transaction (and its charge) ends 6.4 s after its final response.
    const MEMORY_MB: u64 = 64;
    let bed = flood_bed(
        "e2e-bytes",
        &format!("[limits]\nmemory_mb = {MEMORY_MB}\n[timers]\nt1_ms = 100\n"),
    )?;
    let run = calls_during_flood(&bed, flood_large, Duration::from_secs(10))?;
    let m = bed.metrics()?;
    let refused = sum_of(
        &m,
        "sip_fastpath_overload_total",
        "limit=\"per_source_bytes\"",
    );
    let over_ceiling = sum_of(&m, "sip_fastpath_overload_total", "limit=\"memory_mb\"");
    eprintln!(
        "large flood: {run}; {refused} refused by the source's share, {over_ceiling} by the \
         ceiling"
    );
    // Its share bounds what the flood holds: 4 MiB of requests per worker, each kept about
    // twice, with the allocator's slack.
    run.check(10_000, (MEMORY_MB << 20) / 2);
    assert!(refused > 0.0, "the per-source byte share engaged\n{m}");
    assert_eq!(
        over_ceiling, 0.0,
        "the source met its share, not the ceiling"
    );
    Ok(())
}

/// The bed with both backends and `tables` (TOML: `[limits]`, `[timers]`), the flood host
/// allowlisted: XDP's rate limit would otherwise drop most of a flood, and these tests are
/// about what reaches the workers.
fn flood_bed(tag: &str, tables: &str) -> anyhow::Result<Bed> {
    let backends = format!(
        "[[backends]]\naddress = \"{B1}:5060\"\n[[backends]]\naddress = \"{B2}:5060\"\n{tables}"
    );
    let config = config_with(1000, &backends).replace(
        "allowlist = [\"192.0.2.0/28\"]",
        &format!("allowlist = [\"192.0.2.0/28\", \"{}/32\"]", FLOOD),
    );
    Bed::new(tag, "uas_call", &config)
}

type Flood = fn(&Bed, &AtomicBool, Duration) -> anyhow::Result<u64>;

/// What [`calls_during_flood`] saw.
struct FloodRun {
    calls: tests::sipp::CallerReport,
    sent: u64,
    idle: u64,
    peak: u64,
}

impl FloodRun {
    /// Every call succeeded, the flood sent more than `min_sent` datagrams, and RSS stayed
    /// within `over_idle` bytes of idle.
    fn check(&self, min_sent: u64, over_idle: u64) {
        assert_all_succeeded(&self.calls, 100);
        assert!(self.sent > min_sent, "the flood sent {}", self.sent);
        assert!(
            self.peak <= self.idle + over_idle,
            "RSS peaked at {:.1} MB, more than {} MB over idle",
            mb(self.peak),
            over_idle >> 20
        );
    }
}

impl std::fmt::Display for FloodRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} datagrams; RSS idle {:.1} MB, peak {:.1} MB; calls {} ok {} failed",
            self.sent,
            mb(self.idle),
            mb(self.peak),
            self.calls.successful,
            self.calls.failed
        )
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Runs `flood` for `duration` and, from 2 s in, 100 legitimate calls from the caller's host.
fn calls_during_flood(bed: &Bed, flood: Flood, duration: Duration) -> anyhow::Result<FloodRun> {
    let idle = bed.daemon.rss()?;
    let done = AtomicBool::new(false);
    let (calls, sent, peak) = std::thread::scope(|s| {
        let flooder = s.spawn(|| flood(bed, &done, duration));
        let sampler = s.spawn(|| {
            let mut peak = 0u64;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(bed.daemon.rss().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        std::thread::sleep(Duration::from_secs(2));
        let calls = bed.call("uac_call", 100, 20);
        let sent = flooder.join().expect("flood thread");
        done.store(true, Ordering::Relaxed);
        (calls, sent, sampler.join().expect("sampler"))
    });
    Ok(FloodRun {
        calls: calls?,
        sent: sent?,
        idle,
        peak,
    })
}

/// For `duration` (or until `stop`), from the flood host: MESSAGE requests of ~1,400 bytes (as
/// large as fits a datagram on the LAN unfragmented), each with a fresh Call-ID and branch.
/// About 2,000 a second.
fn flood_large(bed: &Bed, stop: &AtomicBool, duration: Duration) -> anyhow::Result<u64> {
    let flood = FLOOD;
    let body = "x".repeat(1000);
    send_from_flood_host(bed, stop, duration, 20, |n| {
        format!(
            "MESSAGE sip:u{n}@example.test SIP/2.0\r\nVia: SIP/2.0/UDP {flood}:5080;branch=z9hG4bKlg{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:f@{flood}>;tag=t{n}\r\nTo: <sip:u{n}@example.test>\r\n\
             Call-ID: large-{n}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    })
}

/// For `duration` (or until `stop`), from the flood host, in turn: a mutated INVITE (CSeq method
/// mismatch: 400), an INVITE that will never be ACKed, a REGISTER, and a CANCEL for no
/// transaction (481); every one with a fresh Call-ID and branch. About 4,000 a second.
fn flood_every_shape(bed: &Bed, stop: &AtomicBool, duration: Duration) -> anyhow::Result<u64> {
    let flood = FLOOD;
    send_from_flood_host(bed, stop, duration, 40, |n| {
        let (method, cseq_method) = match n % 4 {
            0 => ("INVITE", "BYE"),
            1 => ("INVITE", "INVITE"),
            2 => ("REGISTER", "REGISTER"),
            _ => ("CANCEL", "CANCEL"),
        };
        format!(
            "{method} sip:u{n}@example.test SIP/2.0\r\nVia: SIP/2.0/UDP {flood}:5080;branch=z9hG4bKfl{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:f@{flood}>;tag=t{n}\r\nTo: <sip:u{n}@example.test>\r\n\
             Call-ID: flood-{n}\r\nCSeq: 1 {cseq_method}\r\nContact: <sip:f@{flood}:5080>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    })
}

/// Sends `message(n)` for n = 0, 1, … from the flood host to the edge for `duration` (or until
/// `stop`), pausing 10 ms after every `burst`; how many it sent.
fn send_from_flood_host(
    bed: &Bed,
    stop: &AtomicBool,
    duration: Duration,
    burst: u64,
    message: impl Fn(u64) -> String,
) -> anyhow::Result<u64> {
    let flood = FLOOD;
    let socket = bed
        .lan
        .host("flood")
        .ns
        .udp_socket(format!("{flood}:5080").parse()?)?;
    let edge: std::net::SocketAddr = format!("{}:5060", tests::EDGE_ADDR).parse()?;
    let until = Instant::now() + duration;
    let mut sent = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        socket.send_to(message(sent).as_bytes(), edge)?;
        sent += 1;
        if sent.is_multiple_of(burst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(sent)
}

#[test]
fn every_datagram_is_accounted_for_in_stats() -> anyhow::Result<()> {
    let bed = Bed::new("e2e-count", "uas_call", &config(1000))?;
    let r = bed.call("uac_call", 20, 20)?;
    assert_all_succeeded(&r, 20);
    // A few of every other kind, from the caller's host.
    let socket = bed
        .lan
        .host("caller")
        .ns
        .udp_socket(format!("{}:5070", tests::bed::CALLER).parse()?)?;
    let edge: std::net::SocketAddr = format!("{}:5060", tests::EDGE_ADDR).parse()?;
    let mut stun = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend(*b"count-txn-01");
    let bad = String::from_utf8(tests::sip_message("OPTIONS", "count-bad", 1))?
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE");
    for datagram in [&stun[..], b"\r\n\r\n", b"", bad.as_bytes()] {
        socket.send_to(datagram, edge)?;
    }
    fn outcome(s: &serde_json::Value, name: &str) -> u64 {
        s["workers"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .map(|w| w["outcomes"][name].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
    // The proxies' counts are copied once a second: wait (bounded) until all of the above is
    // in, then every count must add up.
    let s = bed
        .daemon
        .wait_for("the mix to be counted", Duration::from_secs(5), |s| {
            outcome(s, "keepalive") == 2 && outcome(s, "answered_4xx") == 1
        })?;
    let sum = |f: &str| tests::workers_sum(&s, f);
    let outcomes: u64 = s["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .flat_map(|w| w["outcomes"].as_object().into_iter().flatten())
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(
        sum("received"),
        sum("handled") + sum("handoff_dropped"),
        "{s}"
    );
    assert_eq!(sum("handled"), outcomes + sum("parked"), "{s}");
    let outcome = |name: &str| outcome(&s, name);
    assert!(
        outcome("forwarded") >= 60,
        "INVITE, ACK, BYE of 20 calls: {s}"
    );
    assert!(outcome("relayed") >= 60, "180, 200, 200 of 20 calls: {s}");
    assert_eq!(outcome("keepalive"), 2, "STUN and the CRLF ping: {s}");
    assert_eq!(outcome("dropped_unparsable"), 1, "the empty datagram: {s}");
    assert_eq!(outcome("answered_4xx"), 1, "the 400: {s}");
    assert_eq!(reason(&s, "pass/empty"), 1, "{s}");
    // And the table says so.
    let text = std::process::Command::new(tests::binary())
        .args(["stats", "--iface", tests::EDGE_IFACE, "--pin-root"])
        .arg(&bed.daemon.pin_root)
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("received = handled + dropped: ok"), "{text}");
    assert!(text.contains("= handled: ok"), "{text}");
    Ok(())
}
