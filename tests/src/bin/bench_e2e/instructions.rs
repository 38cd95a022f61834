//! User-space instructions per call of the whole daemon (`--daemon-instructions`): sip-fastpath
//! with one worker runs under valgrind's callgrind while the load generator makes calls through
//! it, once with few calls and once with more at the same rate; the difference of the two
//! totals over the difference in calls leaves out start-up, loading the XDP program and
//! shutdown. Counted instructions do not depend on what else the machine runs, unlike time;
//! valgrind slows the daemon ~50x, so the rate is low and each message meets an idle worker
//! (no batching: the per-call figure is an upper bound for a loaded daemon). valgrind does not
//! offer the CPU's SHA extensions, so the flow tokens' HMAC-SHA256 is counted in its software
//! form (~1,700 instructions a block) where the daemon itself uses SHA-NI when present.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use tests::{Daemon, EDGE_IFACE, lan::Lan};

use crate::capacity;

/// Calls per second offered to the daemon under valgrind.
const RATE: u32 = 50;
/// The two runs' lengths in seconds.
const SHORT_S: u32 = 2;
const LONG_S: u32 = 10;

pub fn measure(lan: &Lan) -> anyhow::Result<()> {
    // Kept after the run (the bench's log folder is not), to be read with callgrind_annotate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/callgrind-daemon");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let edge = &lan.host("edge").ns;
    let caller = &lan.host("caller").ns;
    let backends = capacity::start_backends(lan)?;
    let config = capacity::daemon_config();
    println!("sip-fastpath under callgrind, one worker, {RATE} calls/s from the load generator:");
    let mut totals = Vec::new();
    for seconds in [SHORT_S, LONG_S] {
        let out = dir.join(format!("callgrind.{seconds}s.out"));
        let wrapper = vec![
            "valgrind".to_string(),
            "--tool=callgrind".to_string(),
            format!("--callgrind-out-file={}", out.display()),
            format!(
                "--log-file={}",
                dir.join(format!("valgrind.{seconds}s.log")).display()
            ),
        ];
        let daemon = Daemon::start_wrapped(edge, EDGE_IFACE, &config, "instructions", wrapper)?;
        let step = capacity::run_step(edge, caller, RATE, seconds);
        let status = daemon.stop()?;
        let step = step?;
        ensure!(
            status.success(),
            "the daemon under valgrind exited with {status}"
        );
        ensure!(
            step.failed == 0 && step.completed == u64::from(RATE * seconds),
            "{seconds} s at {RATE}/s: {} completed, {} failed (valgrind too slow for this rate?)",
            step.completed,
            step.failed
        );
        let total = callgrind_total(&out)?;
        println!(
            "  {} calls: {total} instructions in all ({})",
            step.completed,
            out.display()
        );
        totals.push((step.completed, total));
    }
    let [(short_calls, short), (long_calls, long)] = totals[..] else {
        bail!("two runs expected");
    };
    let per_call = (long.saturating_sub(short)) as f64 / (long_calls - short_calls) as f64;
    println!(
        "\nuser-space instructions per call, whole daemon (INVITE/100/180/200/ACK/BYE/200 through \
         the proxy, {RATE} calls/s): {per_call:.0}\n\
         (where they go: callgrind_annotate on each file; what the longer run adds is the calls')"
    );
    for b in backends {
        b.finish()?;
    }
    Ok(())
}

/// The instruction total callgrind wrote (`summary:` or `totals:` line).
fn callgrind_total(file: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{} has no instruction total", file.display()))
}
