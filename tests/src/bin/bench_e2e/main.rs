//! `cargo xtask bench-e2e`: first each proxy's capacity on one CPU, driven by the project's load
//! generator (`capacity`); then, with sipp as the independent check, the highest call rate at
//! zero failed calls and sipp's response times, for sip-fastpath and for Kamailio 5.6 (dispatcher, algorithm 0 = Call-ID hash) in the
//! same namespaces, with the same backends and scenario, one after the other, over UDP and
//! over TLS (sipp on one TCP connection through socat, which speaks TLS 1.3 to the proxy; the
//! backends stay on UDP). The proxy's CPU time is summed over every process in its namespace.
//!
//! The caller ignores responses that arrive out of order instead of failing the call (a 180
//! after the 200: Kamailio's receiver processes share one socket and can forward a call's
//! responses in another order; RFC 3261 lets a UA ignore a late provisional response), and
//! counts them, so a proxy's rate is not cut by sipp's strictness and its reordering shows.

use std::{path::Path, time::Duration};

use anyhow::Context;

mod capacity;
mod instructions;
use tests::{
    Daemon, EDGE_IFACE, Netns,
    bed::{B1, B2, CALLER, EDGE, config},
    certs::Certs,
    kamailio::{self, Kamailio},
    lan::Lan,
    perf::{PerfStat, namespace_pids},
    require_root,
    sipp::{Backend, Caller, LogDir},
    tls_clients::TlsRelay,
};

/// Offered call rates, per second; a run is 4 s of calls at that rate.
const RATES: &[u32] = &[250, 500, 1000, 1500, 2000, 3000, 4000];
const SECONDS_PER_STEP: u32 = 4;

struct Step {
    rate: u32,
    calls: u64,
    failed: u64,
    p50: f64,
    p99: f64,
    achieved: f64,
    cpu_ms_per_call: f64,
    /// Every CPU of the machine (callers, backends, proxy, softirq and kernel threads such as
    /// the CPUMAP's), per call: the same sipp load in both runs, so the difference is the
    /// proxy's whole cost, including what `cpu_ms_per_call` cannot see.
    machine_ms_per_call: f64,
    /// Responses that reached the caller out of order (a 180 after the 200).
    unexpected: u64,
    /// System calls and context switches of the proxy's processes per call (`perf stat`;
    /// NaN when perf could not count).
    syscalls_per_call: f64,
    switches_per_call: f64,
}

fn main() -> anyhow::Result<()> {
    require_root();
    tests::interrupt::install()?;
    let flag = |name: &str| std::env::args().any(|a| a == name);
    // `--udp-only`: skip the TLS ladders; `--capacity-only`: only the load generator's
    // capacity runs; `--no-capacity`: only sipp's ladders; `--daemon-instructions`: only the
    // whole daemon's instructions per call under callgrind; `--ours-at RATE`: only
    // sip-fastpath at one rate.
    let with_tls = !flag("--udp-only");
    let lan = Lan::new(
        "bench",
        &[("edge", EDGE), ("caller", CALLER), ("b1", B1), ("b2", B2)],
    )?;
    let logs = LogDir::new("bench")?;
    let edge = &lan.host("edge").ns;
    let caller = &lan.host("caller").ns;
    if flag("--daemon-instructions") {
        return instructions::measure(&lan);
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--ours-at") {
        let rate = args
            .get(at + 1)
            .and_then(|r| r.parse().ok())
            .context("--ours-at takes a rate in calls/s")?;
        return capacity::ours_at(&lan, rate);
    }
    if !flag("--no-capacity") {
        capacity_side_by_side(&lan, &logs.0)?;
        if flag("--capacity-only") {
            return Ok(());
        }
    }
    let _backends = [
        Backend::start(&lan.host("b1").ns, B1, "uas_bench", &logs.0)?,
        Backend::start(&lan.host("b2").ns, B2, "uas_bench", &logs.0)?,
    ];
    let certs = Certs::new("bench")?;
    let udp = Load {
        target: format!("{EDGE}:5060"),
        extra: &[],
    };
    // sipp on one TCP connection into socat, which carries it over TLS 1.3 to port 5061.
    let relay_at: std::net::SocketAddr = format!("{CALLER}:5070").parse()?;
    let tls = Load {
        target: relay_at.to_string(),
        extra: &["-t", "t1", "-max_socket", "100"],
    };
    let relay = TlsRelay::start(
        caller,
        relay_at,
        format!("{EDGE}:5061").parse()?,
        &certs.path("ca.pem"),
    )?;

    println!(
        "sip-fastpath (XDP attached, {} workers), UDP:",
        online_cpus()
    );
    let config = format!("{}{}", bench_config(), certs.tls_section(false));
    let daemon = Daemon::start(edge, EDGE_IFACE, "auto", &config, "bench")?;
    let ours = ladder(edge, caller, &logs.0, &udp)?;
    let ours_tls = if with_tls {
        println!("sip-fastpath, TLS (sipp -t t1 through socat):");
        ladder(edge, caller, &logs.0, &tls)?
    } else {
        Vec::new()
    };
    drop(daemon);

    println!("Kamailio 5.6 dispatcher (4 UDP children, 4 TCP children with the tls module), UDP:");
    let list = logs.0.join("dispatcher.list");
    std::fs::write(&list, format!("1 sip:{B1}:5060\n1 sip:{B2}:5060\n"))?;
    let list_value = format!("{}\"", list.display());
    let tls_cfg = logs.0.join("kamailio-tls.cfg");
    std::fs::write(
        &tls_cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\nprivate_key = {}\ncertificate = {}\n\
             [client:default]\nverify_certificate = no\nrequire_certificate = no\n",
            certs.path("server.key").display(),
            certs.path("server.pem").display()
        ),
    )?;
    let cfg = kamailio::config(
        "dispatcher.cfg",
        &[("LISTEN", EDGE), ("LIST\"", &list_value)],
    )?
    .replace(
        &format!("listen=udp:{EDGE}:5060"),
        &format!("listen=udp:{EDGE}:5060\nlisten=tls:{EDGE}:5061\nenable_tls=yes\ntcp_children=4"),
    )
    .replace(
        "loadmodule \"tm.so\"",
        &format!(
            "loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\nloadmodule \"tm.so\"",
            tls_cfg.display()
        ),
    );
    let mut kamailio = Kamailio::start(edge, &cfg, &logs.0, "kamailio")?;
    let theirs = ladder(edge, caller, &logs.0, &udp);
    let theirs_tls = (with_tls && theirs.is_ok()).then(|| {
        println!("Kamailio 5.6, TLS (sipp -t t1 through socat):");
        ladder(edge, caller, &logs.0, &tls)
    });
    kamailio.stop();
    drop(relay);
    let theirs = theirs?;
    compare("UDP", &ours, "Kamailio 5.6", &theirs);
    let Some(theirs_tls) = theirs_tls else {
        return Ok(());
    };
    let theirs_tls = theirs_tls?;
    compare("TLS", &ours_tls, "Kamailio 5.6 TLS", &theirs_tls);
    // The goal: a TLS call costs sip-fastpath no more proxy CPU than a UDP call costs Kamailio.
    println!("\n| offered calls/s | proxy CPU per call, sip-fastpath TLS / Kamailio UDP |");
    println!("|---:|---:|");
    cpu_at_same_rates(&ours_tls, &theirs, |o, t| {
        println!(
            "| {} | {:.3} / {:.3} ms = {:.2}x |",
            o.rate,
            o.cpu_ms_per_call,
            t.cpu_ms_per_call,
            o.cpu_ms_per_call / t.cpu_ms_per_call
        )
    });
    Ok(())
}

/// What a ladder offers: where sipp sends and how.
struct Load<'a> {
    target: String,
    extra: &'a [&'a str],
}

/// A step counts when no call failed and sipp really offered the rate (90 % of it): past that
/// the caller, not the proxy, is the limit.
fn best(steps: &[Step]) -> Option<usize> {
    steps
        .iter()
        .rposition(|s| s.failed == 0 && s.calls > 0 && s.achieved >= 0.9 * s.rate as f64)
}

/// Calls `f` with the steps of both ladders at each rate where neither failed a call.
fn cpu_at_same_rates(ours: &[Step], theirs: &[Step], mut f: impl FnMut(&Step, &Step)) {
    for o in ours.iter().filter(|s| s.failed == 0) {
        if let Some(t) = theirs.iter().find(|t| t.rate == o.rate && t.failed == 0) {
            f(o, t);
        }
    }
}

/// The tables of one transport: the best step of each, and CPU per call at the same rates.
fn compare(transport: &str, ours: &[Step], their_name: &str, theirs: &[Step]) {
    println!(
        "\n{transport}:\n\n| proxy | offered calls/s | achieved calls/s, 0 failed | p50 ms | p99 ms | proxy CPU ms per call | machine CPU ms per call | out of order, whole ladder |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, steps) in [("sip-fastpath", ours), (their_name, theirs)] {
        let disorder: u64 = steps.iter().map(|s| s.unexpected).sum();
        let calls: u64 = steps.iter().map(|s| s.calls).sum();
        match best(steps) {
            Some(i) => {
                let s = &steps[i];
                println!(
                    "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.3} | {:.3} | {disorder} of {calls} calls |",
                    s.rate, s.achieved, s.p50, s.p99, s.cpu_ms_per_call, s.machine_ms_per_call
                );
            }
            None => println!("| {name} | none | | | | | | {disorder} of {calls} calls |"),
        }
    }
    if let (Some(a), Some(b)) = (best(ours), best(theirs)) {
        println!(
            "\nratio sip-fastpath / {their_name}: max rate {:.2}x (both bounded by what the one \
             sipp caller offers on this machine)",
            ours[a].achieved / theirs[b].achieved,
        );
    }
    // CPU compares only at the same offered rate (per-call cost falls as the rate rises).
    println!(
        "\n| offered calls/s | proxy CPU per call, ours / theirs | machine CPU per call, ours / theirs | system calls per call, ours / theirs | context switches per call, ours / theirs |"
    );
    println!("|---:|---:|---:|---:|---:|");
    cpu_at_same_rates(ours, theirs, |o, t| {
        println!(
            "| {} | {} | {} | {} | {} |",
            o.rate,
            vs(o.cpu_ms_per_call, t.cpu_ms_per_call, " ms", 3),
            vs(o.machine_ms_per_call, t.machine_ms_per_call, " ms", 3),
            vs(o.syscalls_per_call, t.syscalls_per_call, "", 1),
            vs(o.switches_per_call, t.switches_per_call, "", 1),
        );
    });
}

/// Both proxies on one CPU with the load generator on the other (see `capacity`), before the
/// sipp ladders (its backends take the backends' ports).
fn capacity_side_by_side(lan: &Lan, logs: &Path) -> anyhow::Result<()> {
    let edge = &lan.host("edge").ns;
    let caller = &lan.host("caller").ns;
    let backends = capacity::start_backends(lan)?;
    let daemon = capacity::start_ours(edge)?;
    let ours = capacity::measure("sip-fastpath", edge, caller)?;
    drop(daemon);
    let list = logs.join("dispatcher-capacity.list");
    std::fs::write(&list, format!("1 sip:{B1}:5060\n1 sip:{B2}:5060\n"))?;
    let list_value = format!("{}\"", list.display());
    let cfg = kamailio::config(
        "dispatcher.cfg",
        &[("LISTEN", EDGE), ("LIST\"", &list_value)],
    )?
    .replace("children=4", "children=1");
    // 1 GB of shared memory: its transactions must not be what limits it.
    let mut kamailio = Kamailio::start_with_memory(edge, &cfg, logs, "kamailio-capacity", 1024)?;
    capacity::pin_namespace(edge, capacity::PROXY_CPU)?;
    let theirs = capacity::measure("Kamailio 5.6", edge, caller);
    kamailio.stop();
    let theirs = theirs?;
    for b in backends {
        let seen = b.finish()?;
        println!(
            "  load generator backend: {} calls completed, {} unexpected",
            seen.completed, seen.unexpected
        );
    }
    capacity::compare(&ours, &theirs);
    Ok(())
}

/// `ours / theirs unit = ratio` for a table cell.
fn vs(ours: f64, theirs: f64, unit: &str, decimals: usize) -> String {
    format!(
        "{ours:.decimals$} / {theirs:.decimals$}{unit} = {:.2}x",
        ours / theirs
    )
}

fn bench_config() -> String {
    // The bed's config without the rate limiter's allowlist needs: the caller is allowlisted.
    config(1000)
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the rates in order until one has failed calls (and one more step is pointless).
fn ladder(edge: &Netns, caller: &Netns, logs: &Path, load: &Load<'_>) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &rate in RATES {
        tests::interrupt::check()?;
        let calls = rate * SECONDS_PER_STEP;
        let cpu0 = namespace_cpu(edge)?;
        let machine0 = machine_cpu()?;
        let perf = PerfStat::start(&namespace_pids(edge)?);
        let r = Caller {
            calls,
            rate,
            limit: rate * 4,
            timeout: Duration::from_secs(60),
            trace: false,
            lenient: true,
            extra: load.extra,
            ..Caller::new(caller, CALLER, &load.target, "uac_call")
        }
        .run(logs);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // sipp gave up (say, its connection broke): this rate failed, the ladder ends.
                println!("  {rate:>5}/s: the caller failed: {e:#}");
                steps.push(Step {
                    rate,
                    calls: calls as u64,
                    failed: calls as u64,
                    p50: f64::NAN,
                    p99: f64::NAN,
                    achieved: 0.0,
                    cpu_ms_per_call: f64::NAN,
                    machine_ms_per_call: f64::NAN,
                    unexpected: 0,
                    syscalls_per_call: f64::NAN,
                    switches_per_call: f64::NAN,
                });
                break;
            }
        };
        let cpu = (namespace_cpu(edge)? - cpu0).total();
        let machine = machine_cpu()? - machine0;
        let ok_calls = r.successful.max(1) as f64;
        let (syscalls_per_call, switches_per_call) = match perf.map(PerfStat::finish) {
            Some(Ok(c)) => (
                c.syscalls as f64 / ok_calls,
                c.context_switches as f64 / ok_calls,
            ),
            Some(Err(e)) => {
                println!("  (perf: {e:#})");
                (f64::NAN, f64::NAN)
            }
            None => (f64::NAN, f64::NAN),
        };
        let step = Step {
            rate,
            calls: r.successful + r.failed,
            failed: r.failed + (calls as u64).saturating_sub(r.successful + r.failed),
            p50: r.percentile(50.0),
            p99: r.percentile(99.0),
            achieved: r.successful as f64 / r.elapsed.as_secs_f64(),
            cpu_ms_per_call: cpu.as_secs_f64() * 1000.0 / (r.successful.max(1) as f64),
            machine_ms_per_call: machine.as_secs_f64() * 1000.0 / (r.successful.max(1) as f64),
            unexpected: r.unexpected,
            syscalls_per_call,
            switches_per_call,
        };
        println!(
            "  {rate:>5}/s: {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms, {:.0} calls/s achieved, {:.3} ms CPU per call ({:.3} machine), {:.1} system calls and {:.1} context switches per call, {} out of order, {} retransmissions",
            r.successful,
            step.failed,
            step.p50,
            step.p99,
            step.achieved,
            step.cpu_ms_per_call,
            step.machine_ms_per_call,
            step.syscalls_per_call,
            step.switches_per_call,
            step.unexpected,
            r.retransmissions
        );
        let last = step.failed > 0 || step.achieved < 0.9 * rate as f64;
        steps.push(step);
        if last {
            break;
        }
        // Let the backends' finished calls expire between steps.
        std::thread::sleep(Duration::from_secs(3));
    }
    Ok(steps)
}

/// Clock ticks per second, the unit of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Busy time of every CPU since boot (`/proc/stat`: all but idle and iowait).
fn machine_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 =
        f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    Ok(Duration::from_secs_f64(busy / clock_ticks()))
}

/// CPU time of the processes in a namespace, user and system apart: what the proxy's own code
/// costs, and what the kernel does for it (system calls, the UDP stack in their context).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    fn total(self) -> Duration {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// User and system CPU time of every process in the namespace.
fn namespace_cpu(ns: &Netns) -> anyhow::Result<CpuTime> {
    let ticks = clock_ticks();
    let (mut user, mut system) = (0.0, 0.0);
    for pid in namespace_pids(ns)? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        user += field(11) / ticks;
        system += field(12) / ticks;
    }
    Ok(CpuTime {
        user: Duration::from_secs_f64(user),
        system: Duration::from_secs_f64(system),
    })
}
