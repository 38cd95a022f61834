//! Capacity side by side: each proxy pinned to CPU 0 (sip-fastpath with one worker, Kamailio with
//! one UDP child and its timer processes), the load generator (`tests::loadgen`: one UAC, two
//! UAS backends) pinned to CPU 1; the rate rises until a step fails a call, its INVITE p99 passes
//! 50 ms, or it achieves less than 90 % of the offered rate. Then a run at half the highest clean
//! rate gives the latency to compare (p50/p99/p99.9) and the cost per call.

use std::{net::SocketAddr, time::Duration};

use tests::{
    Daemon, EDGE_IFACE, Netns,
    bed::{B1, B2, CALLER, EDGE, config_full},
    lan::Lan,
    loadgen::{Uac, UasThread, backend_in, bind},
    perf::{PerfStat, namespace_pids},
};

/// Where each side runs.
pub const PROXY_CPU: usize = 0;
pub const LOAD_CPU: usize = 1;
/// Offered calls per second, in order; a step lasts [`STEP_SECONDS`]. Each about 1.25x the
/// one before, the same ladder for every proxy: a capacity is known to within a step, so the
/// ratio of two capacities to within about 25 % (with steps of 1,000 it was quantised: 6,000
/// against 2,000 read as 3.00x whatever lay between).
const RATES: &[u32] = &[
    1000, 1250, 1600, 2000, 2500, 3200, 4000, 5000, 6300, 8000, 10_000, 12_500, 16_000, 20_000,
    25_000,
];
const STEP_SECONDS: u32 = 5;
/// The run at half capacity is longer: its p99.9 rests on a few hundred calls otherwise.
const HALF_SECONDS: u32 = 15;
/// The longest wait for an overloaded proxy to go idle before the half-rate run: 64·T1 and
/// some.
const IDLE_WAIT: Duration = Duration::from_secs(45);
/// A step whose INVITE→200 p99 passes this is past capacity.
const P99_LIMIT_US: u64 = 50_000;

/// One step of a ladder.
#[derive(Debug, Clone)]
pub struct Step {
    pub rate: u32,
    pub completed: u64,
    pub failed: u64,
    pub achieved: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// The proxy's processes' CPU time per completed call.
    pub cpu_us_per_call: f64,
    /// The part of it spent in user space.
    pub user_us_per_call: f64,
    pub syscalls_per_call: f64,
}

impl Step {
    fn clean(&self) -> bool {
        self.failed == 0
            && self.completed > 0
            && self.p99_us <= P99_LIMIT_US
            && self.achieved >= 0.9 * self.rate as f64
    }
}

/// A proxy's ladder and its run at half its highest clean rate.
pub struct Capacity {
    pub name: String,
    pub steps: Vec<Step>,
    pub half: Option<Step>,
}

impl Capacity {
    pub fn best(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.clean())
    }
}

/// The daemon's config for the capacity runs: one worker, the two loadgen backends. The limits
/// that shield a node from one outside source are raised: the load generator is one source,
/// and these runs measure CPU, not those shares.
pub fn daemon_config() -> String {
    config_full(
        1000,
        "workers = 1",
        &format!(
            "[[backends]]\naddress = \"{B1}:5060\"\nweight = 1\n\
             [[backends]]\naddress = \"{B2}:5060\"\nweight = 1\n\
             [limits]\ntransactions = 4194304\nper_source = 4194304\nmemory_mb = 8192\n"
        ),
    )
}

/// The two loadgen backends, answering at B1 and B2 on the load CPU.
pub fn start_backends(lan: &Lan) -> anyhow::Result<[UasThread; 2]> {
    let start = |role: &str, addr: &str| -> anyhow::Result<UasThread> {
        backend_in(
            &lan.host(role).ns,
            format!("{addr}:5060").parse()?,
            false,
            Some(LOAD_CPU),
        )
    };
    Ok([start("b1", B1)?, start("b2", B2)?])
}

/// sip-fastpath with [`daemon_config`] in `edge`, pinned to [`PROXY_CPU`].
pub fn start_ours(edge: &Netns) -> anyhow::Result<Daemon> {
    let daemon = Daemon::start(edge, EDGE_IFACE, "auto", &daemon_config(), "capacity")?;
    pin_namespace(edge, PROXY_CPU)?;
    Ok(daemon)
}

/// Moves every thread of every process in `ns` (the proxy under test) to `cpu`.
pub fn pin_namespace(ns: &Netns, cpu: usize) -> anyhow::Result<()> {
    for pid in namespace_pids(ns)? {
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-cp", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "taskset could not pin process {pid} to CPU {cpu}");
    }
    Ok(())
}

/// Runs the ladder against the proxy now running (and pinned) in `edge`.
pub fn measure(name: &str, edge: &Netns, caller: &Netns) -> anyhow::Result<Capacity> {
    println!("{name}, capacity on CPU {PROXY_CPU} (load generator on CPU {LOAD_CPU}):");
    let mut steps = Vec::new();
    for &rate in RATES {
        let step = run_step(edge, caller, rate, STEP_SECONDS)?;
        print_step(&step);
        let clean = step.clean();
        steps.push(step);
        if !clean {
            break;
        }
        // Let the finished calls' transactions expire between steps.
        std::thread::sleep(Duration::from_secs(3));
    }
    let mut capacity = Capacity {
        name: name.to_string(),
        steps,
        half: None,
    };
    if let Some(best) = capacity.best().map(|s| s.rate) {
        // The step that ended the ladder overloaded the proxy: its calls' retransmissions (the
        // backends' 200s, the proxy's own timers) go on for up to 64·T1 = 32 s and would be
        // measured as the half-rate run's latency. Wait until the proxy is idle.
        let waited = wait_until_idle(edge)?;
        println!("  (idle after {} s)", waited.as_secs());
        let half = run_step(edge, caller, best / 2, HALF_SECONDS)?;
        print!("  at half its highest clean rate: ");
        print_step(&half);
        capacity.half = Some(half);
    }
    Ok(capacity)
}

/// sip-fastpath alone at one offered rate for [`HALF_SECONDS`], set up as for [`measure`]: a
/// quick look at one change's latency and cost.
pub fn ours_at(lan: &Lan, rate: u32) -> anyhow::Result<()> {
    let edge = &lan.host("edge").ns;
    let caller = &lan.host("caller").ns;
    let backends = start_backends(lan)?;
    let daemon = start_ours(edge)?;
    print!("sip-fastpath on CPU {PROXY_CPU}: ");
    let step = run_step(edge, caller, rate, HALF_SECONDS)?;
    print_step(&step);
    drop(daemon);
    for b in backends {
        b.finish()?;
    }
    Ok(())
}

/// Waits until the proxy in `edge` has used under 1 % of a CPU for two seconds running, at
/// most [`IDLE_WAIT`] (then goes on regardless); how long it waited.
fn wait_until_idle(edge: &Netns) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    let mut quiet = 0;
    let mut last = crate::namespace_cpu(edge)?.total();
    while quiet < 2 && start.elapsed() < IDLE_WAIT {
        tests::interrupt::check()?;
        std::thread::sleep(Duration::from_secs(1));
        let now = crate::namespace_cpu(edge)?.total();
        quiet = if now.saturating_sub(last) < Duration::from_millis(10) {
            quiet + 1
        } else {
            0
        };
        last = now;
    }
    Ok(start.elapsed())
}

pub fn run_step(edge: &Netns, caller: &Netns, rate: u32, seconds: u32) -> anyhow::Result<Step> {
    tests::interrupt::check()?;
    let calls = u64::from(rate * seconds);
    let local: SocketAddr = format!("{CALLER}:0").parse()?;
    let socket = caller.inside(move || bind(local))?;
    let target: SocketAddr = format!("{EDGE}:5060").parse()?;
    let cpu0 = crate::namespace_cpu(edge)?;
    let perf = PerfStat::start(&namespace_pids(edge)?);
    let report = std::thread::spawn(move || {
        Uac {
            socket,
            target,
            rate,
            calls,
            hold: Duration::ZERO,
            cpu: Some(LOAD_CPU),
        }
        .run()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the UAC thread panicked"))??;
    let cpu = crate::namespace_cpu(edge)? - cpu0;
    let done = report.completed.max(1) as f64;
    let syscalls_per_call = match perf.map(PerfStat::finish) {
        Some(Ok(c)) => c.syscalls as f64 / done,
        _ => f64::NAN,
    };
    let h = &report.invite_us;
    Ok(Step {
        rate,
        completed: report.completed,
        failed: report.failed,
        achieved: report.rate(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        cpu_us_per_call: cpu.total().as_secs_f64() * 1e6 / done,
        user_us_per_call: cpu.user.as_secs_f64() * 1e6 / done,
        syscalls_per_call,
    })
}

fn print_step(s: &Step) {
    println!(
        "  {:>6}/s: {} completed, {} failed, {:.0} calls/s, INVITE→200 p50 {} µs p99 {} µs p99.9 {} µs, {:.1} µs CPU ({:.1} user) and {:.1} system calls per call",
        s.rate,
        s.completed,
        s.failed,
        s.achieved,
        s.p50_us,
        s.p99_us,
        s.p999_us,
        s.cpu_us_per_call,
        s.user_us_per_call,
        s.syscalls_per_call
    );
}

/// The comparison table.
pub fn compare(ours: &Capacity, theirs: &Capacity) {
    println!(
        "\nCapacity on one CPU (load generator on the other):\n\n| proxy | highest clean rate (offered) | achieved calls/s | at half that rate: p50 / p99 / p99.9 µs | proxy CPU µs per call | system calls per call |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for c in [ours, theirs] {
        match (c.best(), &c.half) {
            (Some(b), Some(h)) => println!(
                "| {} | {} | {:.0} | {} / {} / {} | {:.1} | {:.1} |",
                c.name,
                b.rate,
                b.achieved,
                h.p50_us,
                h.p99_us,
                h.p999_us,
                h.cpu_us_per_call,
                h.syscalls_per_call
            ),
            _ => println!("| {} | none | | | | |", c.name),
        }
    }
    if let (Some(a), Some(b), Some(ha), Some(hb)) =
        (ours.best(), theirs.best(), &ours.half, &theirs.half)
    {
        println!(
            "\nratios {} / {}: highest clean rate {:.2}x; at half each one's capacity: p99 {:.2}x, CPU per call {:.2}x, system calls per call {:.2}x",
            ours.name,
            theirs.name,
            a.achieved / b.achieved,
            ha.p99_us as f64 / hb.p99_us.max(1) as f64,
            ha.cpu_us_per_call / hb.cpu_us_per_call,
            ha.syscalls_per_call / hb.syscalls_per_call,
        );
    }
    // CPU per call compares only at the same offered rate (it falls as the rate rises).
    println!("\n| offered calls/s | proxy CPU µs per call, ours / theirs |\n|---:|---:|");
    for o in ours.steps.iter().filter(|s| s.clean()) {
        if let Some(t) = theirs.steps.iter().find(|t| t.rate == o.rate && t.clean()) {
            println!(
                "| {} | {:.1} / {:.1} = {:.2}x |",
                o.rate,
                o.cpu_us_per_call,
                t.cpu_us_per_call,
                o.cpu_us_per_call / t.cpu_us_per_call
            );
        }
    }
}
