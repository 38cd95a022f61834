//! `loadgen`: the project's SIP load generator (see `tests::loadgen`).
//!
//! ```text
//! loadgen uas --listen 192.0.2.11:5060 [--cpu 1] [--seconds 60]
//! loadgen uac --target 192.0.2.1:5060 --rate 10000 --calls 100000 [--local 0.0.0.0:0]
//!             [--hold-ms 100] [--cpu 1] [--json]
//! ```
//!
//! The UAS answers until `--seconds` pass (or SIGTERM); the UAC prints completed and failed
//! calls, the rate achieved, and INVITE and BYE latency percentiles in microseconds.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::bail;
use clap::{Parser, Subcommand};
use tests::loadgen::{Answer, Uac, UacReport, Uas, bind};

#[derive(Parser)]
#[command(about = "SIP load generator: a UAC placing calls at a rate, a UAS answering them")]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Answer calls (INVITE → 100/180/200, BYE → 200) and OPTIONS.
    Uas {
        #[arg(long)]
        listen: SocketAddr,
        /// Pin to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        /// Stop after this long.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
    },
    /// Place calls and report.
    Uac {
        /// Where every request goes (the proxy, or a UAS).
        #[arg(long)]
        target: SocketAddr,
        /// Calls started per second.
        #[arg(long)]
        rate: u32,
        /// Calls in all.
        #[arg(long)]
        calls: u64,
        #[arg(long, default_value = "0.0.0.0:0")]
        local: SocketAddr,
        /// Between the ACK and the BYE.
        #[arg(long, default_value_t = 100)]
        hold_ms: u64,
        #[arg(long)]
        cpu: Option<usize>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().role {
        Role::Uas {
            listen,
            cpu,
            seconds,
        } => {
            let socket = bind(listen)?;
            let stop = Arc::new(AtomicBool::new(false));
            let timer = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(seconds));
                timer.store(true, Ordering::Relaxed);
            });
            let report = Uas {
                socket,
                keep_call_ids: false,
                answer: Answer::Accept,
                cpu,
            }
            .run(stop)?;
            println!("{report:?}");
        }
        Role::Uac {
            target,
            rate,
            calls,
            local,
            hold_ms,
            cpu,
            json,
        } => {
            if rate == 0 || calls == 0 {
                bail!("--rate and --calls must be at least 1");
            }
            let report = Uac {
                socket: bind(local)?,
                target,
                rate,
                calls,
                hold: Duration::from_millis(hold_ms),
                cpu,
            }
            .run()?;
            if json {
                println!("{}", to_json(&report));
            } else {
                print_report(&report);
            }
        }
    }
    Ok(())
}

fn print_report(r: &UacReport) {
    println!(
        "{} calls started, {} completed, {} failed ({} timed out), {:.0} calls/s over {:.2} s",
        r.started,
        r.completed,
        r.failed,
        r.timed_out,
        r.rate(),
        r.elapsed.as_secs_f64()
    );
    println!(
        "{} out of order, {} retransmissions, {} invalid responses",
        r.out_of_order, r.retransmissions, r.invalid
    );
    for (name, h) in [("INVITE→200", &r.invite_us), ("BYE→200", &r.bye_us)] {
        println!(
            "{name}: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs ({} samples)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len()
        );
    }
}

fn to_json(r: &UacReport) -> serde_json::Value {
    let h = |h: &hdrhistogram::Histogram<u64>| {
        serde_json::json!({
            "p50_us": h.value_at_quantile(0.5),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
            "samples": h.len(),
        })
    };
    serde_json::json!({
        "started": r.started,
        "completed": r.completed,
        "failed": r.failed,
        "timed_out": r.timed_out,
        "out_of_order": r.out_of_order,
        "retransmissions": r.retransmissions,
        "invalid": r.invalid,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "calls_per_s": r.rate(),
        "invite": h(&r.invite_us),
        "bye": h(&r.bye_us),
    })
}
