//! `cargo xtask bench-memory`: the daemon's memory through the shapes of a day's load, in the
//! namespaces of the end-to-end tests (sipp caller → sip-fastpath → two sipp backends). RSS
//! comes from /proc; the allocator's own accounting (bytes in use, bytes held free) from the
//! daemon's `/metrics`, so live data and a retained heap can be told apart.
//!
//! 1. A fresh daemon at idle; 10,000 calls placed at 1,000/s and held open: RSS per live call
//!    (the growth over idle / 10,000) while their INVITE transactions are still in RFC 6026's
//!    32 s Accepted window, and once only the dialogs are left, as in a long call; then 60 s
//!    after the calls ended.
//! 2. The daemon restarted; a steady 1,000 calls/s for 30 s (peak RSS); 60 s after.
//!
//! Goals (issue 13): ≤ 2 KB per live call, ≤ 64 MB at a steady 1,000 calls/s, back within 2×
//! of idle after the load.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tests::{
    bed::{Bed, CALLER, EDGE, config},
    require_root,
    sipp::{Caller, CallerReport},
};

const RATE: u32 = 1000;
const STEADY_SECONDS: u32 = 30;
const HELD: u32 = 10_000;
const HOLD_MS: &str = "75000";

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// RSS, and the heap in use and held free, of the bed's daemon now.
struct Sample {
    rss: u64,
    in_use: u64,
    free: u64,
}

impl Sample {
    fn take(bed: &Bed) -> anyhow::Result<Self> {
        let m = bed.metrics()?;
        let heap = |state: &str| {
            m.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("sip_fastpath_heap_bytes{{state=\"{state}\"}} "))
                })
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        Ok(Sample {
            rss: bed.daemon.rss()?,
            in_use: heap("in_use"),
            free: heap("free"),
        })
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MB (heap: {:.1} MB in use, {:.1} MB held free)",
            mb(self.rss),
            mb(self.in_use),
            mb(self.free)
        )
    }
}

fn run(bed: &Bed, scenario: &str, calls: u32, extra: &[&str]) -> anyhow::Result<CallerReport> {
    tests::interrupt::check()?;
    let target = format!("{EDGE}:5060");
    Caller {
        calls,
        rate: RATE,
        limit: calls.min(HELD) + 100,
        timeout: Duration::from_secs(180),
        trace: false,
        extra,
        ..Caller::new(&bed.lan.host("caller").ns, CALLER, &target, scenario)
    }
    .run(&bed.logs.0)
}

fn main() -> anyhow::Result<()> {
    require_root();
    tests::interrupt::install()?;
    let mut bed = Bed::new("bench-mem", "uas_bench", &config(1000))?;
    std::thread::sleep(Duration::from_secs(2));
    let idle = Sample::take(&bed)?;
    println!("fresh, idle: {idle}");

    // 10,000 calls placed at 1,000/s, each held 75 s after its ACK: all are up from ~11 s to
    // 75 s; their INVITE transactions end 32 s after each 200 (by ~43 s).
    let (held, at_early, at_late) = std::thread::scope(|s| {
        let caller = s.spawn(|| run(&bed, "uac_hold", HELD, &["-d", HOLD_MS]));
        std::thread::sleep(Duration::from_secs(25));
        let early = Sample::take(&bed);
        std::thread::sleep(Duration::from_secs(30));
        let late = Sample::take(&bed);
        (caller.join().expect("caller thread"), early, late)
    });
    let (held, at_early, at_late) = (held?, at_early?, at_late?);
    let per = |s: &Sample| {
        (
            s.rss.saturating_sub(idle.rss) as f64 / f64::from(HELD),
            s.in_use.saturating_sub(idle.in_use) as f64 / f64::from(HELD),
        )
    };
    let (early_rss, early_heap) = per(&at_early);
    let (per_call, heap_per_call) = per(&at_late);
    println!(
        "{HELD} calls held open: {} ok, {} failed\n  with their INVITE transactions: {at_early}; \
         {early_rss:.0} bytes RSS, {early_heap:.0} bytes heap per call\n  dialogs only: \
         {at_late}; {per_call:.0} bytes RSS, {heap_per_call:.0} bytes heap per call",
        held.successful, held.failed
    );
    std::thread::sleep(Duration::from_secs(60));
    let after_held = Sample::take(&bed)?;
    println!("60 s after they ended: {after_held}");

    bed.daemon.restart()?;
    std::thread::sleep(Duration::from_secs(2));
    let idle2 = Sample::take(&bed)?;
    println!("restarted, idle: {idle2}");
    let done = AtomicBool::new(false);
    let (steady, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0u64;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(bed.daemon.rss().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(500));
            }
            peak
        });
        let r = run(&bed, "uac_call", RATE * STEADY_SECONDS, &[]);
        done.store(true, Ordering::Relaxed);
        (r, sampler.join().unwrap_or(0))
    });
    let steady = steady?;
    if steady.failed > 0 || held.failed > 0 {
        // Failed calls hold less: the figures would describe a load that did not work.
        anyhow::bail!(
            "{} held and {} steady calls failed (sipp's error log says why: SFP_KEEP_LOGS=1 \
             keeps it)",
            held.failed,
            steady.failed
        );
    }
    let end_of_steady = Sample::take(&bed)?;
    println!(
        "steady {RATE} calls/s for {STEADY_SECONDS} s: {} ok, {} failed; RSS peak {:.1} MB; at \
         the end {end_of_steady}",
        steady.successful,
        steady.failed,
        mb(peak)
    );
    std::thread::sleep(Duration::from_secs(60));
    let after_steady = Sample::take(&bed)?;
    println!("60 s after the steady load: {after_steady}");
    if let Some(pid) = bed.daemon.pid() {
        print_largest_mappings(pid);
    }

    let ratio = |s: &Sample, idle: &Sample| s.rss as f64 / idle.rss as f64;
    println!(
        "\n| figure | measured | goal |\n|---|---:|---:|\n\
         | idle (fresh) | {:.1} MB | |\n\
         | per live call ({HELD} held, dialogs only) | {per_call:.0} bytes RSS, {heap_per_call:.0} bytes heap | ≤ 2048 bytes |\n\
         | per live call, INVITE transactions still up | {early_rss:.0} bytes RSS, {early_heap:.0} bytes heap | |\n\
         | 60 s after the held calls | {:.2}x idle | ≤ 2x |\n\
         | steady {RATE} calls/s, peak | {:.1} MB | ≤ 64 MB |\n\
         | 60 s after the steady load | {:.2}x idle | ≤ 2x |",
        mb(idle.rss),
        ratio(&after_held, &idle),
        mb(peak),
        ratio(&after_steady, &idle2),
    );
    Ok(())
}

/// Where the resident memory is: the mappings holding the most (from /proc/<pid>/smaps), so a
/// retained heap can be told from the program, its stacks and the BPF maps.
fn print_largest_mappings(pid: u32) {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return;
    };
    let mut mappings: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            name = format!("{first} {}", words.nth(4).unwrap_or("[anonymous]"));
        } else if first == "Rss:" {
            let kb = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            mappings.push((kb, name.clone()));
        }
    }
    mappings.sort_by_key(|m| std::cmp::Reverse(m.0));
    println!("  largest resident mappings:");
    for (kb, name) in mappings.iter().take(8) {
        println!("    {:>8.1} MB  {name}", *kb as f64 / 1024.0);
    }
}
