//! The load generator's own tests: what its UAC counts as completed really completed at the UAS,
//! a refused call is not counted, and through the proxy it agrees with sipp at a rate sipp
//! manages (same calls completed, latency within sipp's millisecond resolution).

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use tests::{
    Daemon, EDGE_IFACE,
    bed::{B1, B2, CALLER, EDGE, config},
    lan::Lan,
    loadgen::{Answer, Uac, UacReport, Uas, UasReport, backend_in},
    require_root,
    sipp::{Caller, LogDir},
};

fn loopback() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("a loopback socket")
}

/// `calls` at `rate` from a UAC to a UAS answering with `answer`, both on loopback: what each
/// side saw.
fn on_loopback(answer: Answer, rate: u32, calls: u64) -> anyhow::Result<(UacReport, UasReport)> {
    let uas_socket = loopback();
    let target = uas_socket.local_addr()?;
    let uas = Uas {
        socket: uas_socket,
        keep_call_ids: true,
        answer,
        cpu: None,
    }
    .spawn();
    let report = Uac {
        socket: loopback(),
        target,
        rate,
        calls,
        hold: Duration::ZERO,
        cpu: None,
    }
    .run()?;
    Ok((report, uas.finish()?))
}

#[test]
fn the_uac_counts_as_completed_exactly_the_calls_the_uas_completed() -> anyhow::Result<()> {
    let (report, seen) = on_loopback(Answer::Accept, 1000, 2000)?;
    assert_eq!(
        (
            report.started,
            report.completed,
            report.failed,
            report.invalid
        ),
        (2000, 2000, 0, 0),
        "{report:?}"
    );
    assert_eq!(seen.completed, report.completed, "{seen:?}");
    assert_eq!((seen.invites, seen.unexpected), (2000, 0), "{seen:?}");
    // Each of calls 0..2000 completed exactly once, by the UAS's own record.
    let numbers: BTreeSet<u64> = seen
        .completed_call_ids
        .iter()
        .map(|id| {
            let id = std::str::from_utf8(id).unwrap();
            id.split_once('-').unwrap().0.parse().unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..2000).collect::<BTreeSet<u64>>());
    assert_eq!(report.invite_us.len(), 2000);
    assert_eq!(report.bye_us.len(), 2000);
    assert!(report.invite_us.max() > 0);
    Ok(())
}

#[test]
fn calls_the_uas_refuses_are_failed_not_completed() -> anyhow::Result<()> {
    let (report, seen) = on_loopback(Answer::Busy, 200, 50)?;
    assert_eq!(
        (report.completed, report.failed, report.invalid),
        (0, 50, 0),
        "{report:?}"
    );
    assert_eq!((seen.invites, seen.completed), (50, 0), "{seen:?}");
    Ok(())
}

#[test]
fn through_the_proxy_it_agrees_with_sipp() -> anyhow::Result<()> {
    require_root();
    let lan = Lan::new(
        "loadgen",
        &[("edge", EDGE), ("caller", CALLER), ("b1", B1), ("b2", B2)],
    )?;
    let logs = LogDir::new("loadgen")?;
    let backend = |role: &str, addr: &str| -> anyhow::Result<_> {
        backend_in(
            &lan.host(role).ns,
            format!("{addr}:5060").parse()?,
            true,
            None,
        )
    };
    let uas = [backend("b1", B1)?, backend("b2", B2)?];
    let _daemon = Daemon::start(
        &lan.host("edge").ns,
        EDGE_IFACE,
        "auto",
        &config(500),
        "loadgen",
    )?;
    let caller = &lan.host("caller").ns;
    let target = format!("{EDGE}:5060");
    let (rate, calls) = (100u32, 400u32);
    // sipp first: the same call (its scenario pauses 100 ms between ACK and BYE).
    let sipp = Caller {
        calls,
        rate,
        limit: rate * 4,
        timeout: Duration::from_secs(60),
        trace: false,
        ..Caller::new(caller, CALLER, &target, "uac_call")
    }
    .run(&logs.0)?;
    let local: SocketAddr = format!("{CALLER}:0").parse()?;
    let socket = caller.inside(move || Ok(UdpSocket::bind(local)?))?;
    let ours = Uac {
        socket,
        target: target.parse()?,
        rate,
        calls: u64::from(calls),
        hold: Duration::from_millis(100),
        cpu: None,
    }
    .run()?;
    let [a, b] = uas;
    let (a, b) = (a.finish()?, b.finish()?);
    assert_eq!(
        (sipp.successful, sipp.failed),
        (u64::from(calls), 0),
        "{sipp:?}"
    );
    assert_eq!(
        (ours.completed, ours.failed, ours.invalid, ours.out_of_order),
        (u64::from(calls), 0, 0, 0),
        "{ours:?}"
    );
    // Both runs' calls reached the backends and ended there, none twice or lost.
    assert_eq!(
        a.completed + b.completed,
        2 * u64::from(calls),
        "{a:?} {b:?}"
    );
    assert_eq!(a.unexpected + b.unexpected, 0, "{a:?} {b:?}");
    // Latency: sipp measures whole milliseconds; ours in microseconds must round to within
    // one of it.
    let sipp_p50 = sipp.percentile(50.0);
    let ours_p50 = ours.invite_us.value_at_quantile(0.5) as f64 / 1000.0;
    println!(
        "INVITE→200 p50: sipp {sipp_p50} ms, loadgen {ours_p50:.3} ms ({} µs p99)",
        ours.invite_us.value_at_quantile(0.99)
    );
    assert!(
        (ours_p50 - sipp_p50).abs() <= 1.0,
        "sipp p50 {sipp_p50} ms, ours {ours_p50} ms"
    );
    Ok(())
}
