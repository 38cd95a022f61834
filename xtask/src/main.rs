//! `cargo xtask`: set-up, build, test, benchmark and demo for sip-fastpath.
//!
//! Every command runs `setup` first, which installs only what is missing, so each one works on
//! a fresh machine (as root) and costs a few `--version` calls on a prepared one.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Set-up, build, test, benchmark and demo for sip-fastpath")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain and test tools (idempotent): nightly rust-src, rustfmt,
    /// clippy, llvm-22-dev, bpf-linker (LLVM 22), cargo-fuzz, and the Debian packages the tests
    /// use (sipp, Kamailio, dnsmasq, sipsak, openssl, socat, systemd, capsh, perf, …).
    /// `build` and `bench-xdp` install only what building takes.
    Setup,
    /// Build the XDP program and the release binary at target/release/sip-fastpath.
    Build,
    /// Run every test: unit, BPF_PROG_TEST_RUN on the real kernel, network namespaces (root).
    Test,
    /// Measure the XDP program per packet next to an empty XDP program.
    BenchXdp {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// Count CPU instructions per message (parse, parse+validate, the rsip crate) and per call
    /// (transactions + dialogs) with valgrind's callgrind: unlike time on a shared machine, the
    /// counts repeat exactly, so the ratios against rsip are stable.
    BenchInstructions {
        /// Iterations per measurement (a second run with none subtracts the start-up).
        #[arg(long, default_value_t = 2000)]
        iterations: u64,
    },
    /// Fuzz with libFuzzer (cargo-fuzz), inputs up to 65,535 bytes: `parse`, the SIP parser,
    /// seeded from the RFC 4475 messages and tests/data/messages; `proxy`, the whole sans-IO
    /// proxy (sequences of datagrams, clock steps, DNS answers), seeded from the typical
    /// messages; `framer`, the stream framer (the same messages wherever a stream is split),
    /// seeded like `parse`. A crash is saved in sip-user/fuzz/artifacts/<target>/; copy it to
    /// sip-user/tests/data/fuzz/ (parse, framer) or tests/data/fuzz-proxy/ (proxy) as a
    /// regression test.
    Fuzz {
        /// How long to run each target.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Which: parse, proxy, framer, or all (one after the other).
        #[arg(long, default_value = "all")]
        target: FuzzTarget,
    },
    /// sip-fastpath as a load balancer in network namespaces: sipp calls through it to two sipp
    /// backends while a third host floods it; prints the results, the split and the counters.
    Demo,
    /// Capacity on one CPU with the project's load generator, then the highest call rate at
    /// zero failed calls and sipp's response times, for sip-fastpath and Kamailio 5.6
    /// (dispatcher, Call-ID hash) in the same namespaces.
    BenchE2e {
        /// Only the UDP ladders (skips TLS).
        #[arg(long)]
        udp_only: bool,
        /// Only the capacity runs (each proxy on one CPU, the load generator on the other).
        #[arg(long, conflicts_with = "no_capacity")]
        capacity_only: bool,
        /// Only the sipp ladders.
        #[arg(long)]
        no_capacity: bool,
        /// Only the whole daemon's user-space instructions per call: sip-fastpath under
        /// valgrind's callgrind, calls from the load generator at a low rate (about 1 minute).
        #[arg(long, conflicts_with_all = ["capacity_only", "no_capacity", "udp_only"])]
        daemon_instructions: bool,
        /// Only sip-fastpath, on one CPU, at this offered rate (calls/s) for 15 s: its latency
        /// and cost at one rate, for comparing a change (about 1 minute).
        #[arg(long, value_name = "RATE", conflicts_with_all = ["capacity_only", "no_capacity", "udp_only", "daemon_instructions"])]
        ours_at: Option<u32>,
    },
    /// The daemon's memory (RSS) at idle, under a steady 1,000 calls/s, with 10,000 calls held
    /// open, and 60 s after the load, in the end-to-end test namespaces (about 4 minutes).
    BenchMemory,
}

/// Debian packages the build needs: LLVM 22 for bpf-linker.
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev"];

/// Debian packages the tests, benchmarks and the demo need besides.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "bpftool",
    "sip-tester",
    "valgrind",
    "curl",
    "nftables",
    // The e2e test's DNS server for SRV backends (the binary only, no system service).
    "dnsmasq-base",
    // The registrar behind the edge in the two-way tests, and bench-e2e's comparison. The
    // package's service is not used: the tests start it in their namespaces.
    "kamailio",
    // TLS: Kamailio's tls module (bench-e2e's TLS comparison), sipsak (a TLS 1.3 SIP client,
    // GnuTLS), openssl (test certificates, s_client for TLS 1.2 and mutual TLS) and socat
    // (bench-e2e's TLS leg in front of sipp, which has no TLS).
    "kamailio-tls-modules",
    "sipsak",
    "openssl",
    "socat",
    // The systemd unit's checks: systemd-analyze verify (systemd), and capsh (libcap2-bin) to
    // run the daemon as an unprivileged user with only the unit's capabilities. bench-e2e pins
    // with taskset (util-linux) and counts system calls with perf (linux-perf).
    "systemd",
    "libcap2-bin",
    "util-linux",
    "linux-perf",
    // The shipped alerts and dashboard are checked against real Prometheus (and promtool).
    "prometheus",
    // HEPv3 capture is decoded by sngrep (its HEP parser) and checked by tshark's SIP
    // dissector.
    "sngrep",
    "tshark",
];

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Cmd::Setup => setup(Needs::Everything),
        Cmd::Build => {
            setup(Needs::Build)?;
            build(&root, true)
        }
        Cmd::Test => {
            setup(Needs::Everything)?;
            // The tests drive the debug binary; the XDP object is the same release build.
            build(&root, false)?;
            let bin = root.join("target/debug/sip-fastpath");
            // Formatting and lints are part of the test: a change that breaks them fails here.
            cargo(&root, &["fmt", "--all", "--check"]).status_ok("cargo fmt --check")?;
            cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "sip-ebpf",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
            .status_ok("cargo clippy")?;
            // The XDP program, with its own (nightly) toolchain and the same workspace lints.
            cargo(
                &root.join("sip-ebpf"),
                &["clippy", "--release", "--", "-D", "warnings"],
            )
            .status_ok("cargo clippy (sip-ebpf)")?;
            cargo(&root, &["test", "--workspace", "--exclude", "sip-ebpf"])
                .env("SIP_FASTPATH_BIN", &bin)
                .env("SIP_FASTPATH_REQUIRE_EBPF", "1")
                .status_ok("cargo test")?;
            // Briefly, so every run also searches for new crashes in both targets.
            fuzz(&root, FuzzTarget::All, TEST_FUZZ_SECONDS)
        }
        Cmd::BenchXdp { repeat } => {
            setup(Needs::Build)?;
            build(&root, true)?;
            Command::new(root.join("target/release/sip-fastpath"))
                .args(["bench-xdp", "--repeat", &repeat.to_string()])
                .status_ok("sip-fastpath bench-xdp")
        }
        Cmd::Fuzz { seconds, target } => {
            setup(Needs::Everything)?;
            fuzz(&root, target, seconds)
        }
        Cmd::BenchInstructions { iterations } => bench_instructions(&root, iterations),
        Cmd::BenchE2e {
            udp_only,
            capacity_only,
            no_capacity,
            daemon_instructions,
            ours_at,
        } => {
            setup(Needs::Everything)?;
            let flags = [
                (udp_only, "--udp-only"),
                (capacity_only, "--capacity-only"),
                (no_capacity, "--no-capacity"),
                (daemon_instructions, "--daemon-instructions"),
            ];
            let mut args: Vec<String> = flags
                .iter()
                .filter(|f| f.0)
                .map(|f| f.1.to_string())
                .collect();
            if let Some(rate) = ours_at {
                args.extend(["--ours-at".to_string(), rate.to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_namespace_program(&root, "bench-e2e", &args)
        }
        Cmd::BenchMemory => {
            setup(Needs::Everything)?;
            run_namespace_program(&root, "bench-memory", &[])
        }
        Cmd::Demo => {
            setup(Needs::Everything)?;
            run_namespace_program(&root, "demo", &[])
        }
    }
}

/// Builds the release binary and the `tests` crate's program `bin`, and runs it against it.
fn run_namespace_program(root: &Path, bin: &str, args: &[&str]) -> anyhow::Result<()> {
    build(root, true)?;
    cargo(root, &["build", "--release", "-p", "tests", "--bin", bin])
        .status_ok(&format!("building {bin}"))?;
    Command::new(root.join("target/release").join(bin))
        .args(args)
        .env("SIP_FASTPATH_BIN", root.join("target/release/sip-fastpath"))
        .status_ok(bin)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo` with the outer cargo's toolchain pin removed, so folder toolchain files apply.
fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.args(args)
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

fn build(root: &Path, release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "--workspace", "--exclude", "sip-ebpf"];
    if release {
        args.push("--release");
    }
    cargo(root, &args)
        .env("SIP_FASTPATH_REQUIRE_EBPF", "1")
        .status_ok("cargo build (with the XDP program)")
}

/// What a command needs installed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// The toolchain and what building the XDP object takes.
    Build,
    /// Also the test peers (sipp, Kamailio, …) and cargo-fuzz.
    Everything,
}

fn setup(needs: Needs) -> anyhow::Result<()> {
    install_debian(BUILD_PACKAGES)?;
    setup_toolchain()?;
    if needs == Needs::Build {
        return Ok(());
    }
    install_debian(TEST_PACKAGES)?;
    if !succeeds(
        Command::new("cargo")
            .args(["fuzz", "--version"])
            .env_remove("RUSTUP_TOOLCHAIN"),
    ) {
        println!("xtask setup: installing cargo-fuzz");
        Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .status_ok("cargo install cargo-fuzz")?;
    }
    Ok(())
}

/// Seconds `cargo xtask test` fuzzes each target for.
const TEST_FUZZ_SECONDS: u64 = 30;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FuzzTarget {
    Parse,
    Proxy,
    Framer,
    All,
}

/// Installs the Debian packages of `packages` that are missing (idempotent).
fn install_debian(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !debian_package_installed(p))
        .collect();
    if !missing.is_empty() {
        println!("xtask setup: installing Debian packages {missing:?}");
        Command::new("apt-get")
            .arg("update")
            .status_ok("apt-get update")?;
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status_ok("apt-get install")?;
    }
    Ok(())
}

/// rustfmt and clippy (checked by `cargo xtask test`), nightly rust-src and bpf-linker for the
/// eBPF build.
fn setup_toolchain() -> anyhow::Result<()> {
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if !succeeds(Command::new("cargo").args([tool, "--version"])) {
            println!("xtask setup: adding {component}");
            Command::new("rustup")
                .args(["component", "add", component])
                .status_ok(&format!("rustup component add {component}"))?;
        }
    }
    let has_rust_src = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src")
        });
    if !has_rust_src {
        println!("xtask setup: adding rust-src to the nightly toolchain");
        Command::new("rustup")
            .args(["component", "add", "rust-src", "--toolchain", "nightly"])
            .status_ok("rustup component add rust-src")?;
    }
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        // Its default feature wants LLVM 23, absent here; Debian's LLVM 22 lives under
        // /usr/lib/llvm-22, which bpf-linker's build script finds through LLVM_PREFIX.
        println!("xtask setup: building bpf-linker against LLVM 22 (a few minutes)");
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env_remove("RUSTUP_TOOLCHAIN")
            .status_ok("cargo install bpf-linker")?;
    }
    Ok(())
}

/// Instructions one run of the `workload` example executes, as callgrind counts them.
fn instructions(bin: &Path, what: &str, message: &str, iterations: u64) -> anyhow::Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(bin)
        .args([what, message, &iterations.to_string()])
        .output()
        .context("running valgrind")?;
    if !out.status.success() {
        bail!(
            "workload {what} {message} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .context("callgrind printed no instruction count")
}

/// Instructions per iteration: the difference between `iterations` and none, divided.
fn per_iteration(bin: &Path, what: &str, message: &str, iterations: u64) -> anyhow::Result<f64> {
    let base = instructions(bin, what, message, 0)?;
    let full = instructions(bin, what, message, iterations)?;
    Ok(full.saturating_sub(base) as f64 / iterations as f64)
}

fn bench_instructions(root: &Path, iterations: u64) -> anyhow::Result<()> {
    setup(Needs::Everything)?;
    if iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    cargo(
        root,
        &[
            "build",
            "--release",
            "-p",
            "sip-user",
            "--example",
            "workload",
        ],
    )
    .status_ok("building the workload")?;
    let bin = root.join("target/release/examples/workload");
    println!("| message | parse | parse+validate | rsip | rsip / parse | rsip / parse+validate |");
    println!("|---|---:|---:|---:|---:|---:|");
    for message in [
        "invite_sdp",
        "ok_200",
        "ack",
        "bye",
        "register",
        "options",
        "wsinv",
    ] {
        let parse = per_iteration(&bin, "parse", message, iterations)?;
        let validate = per_iteration(&bin, "validate", message, iterations)?;
        let rsip = per_iteration(&bin, "rsip", message, iterations)?;
        println!(
            "| {message} | {parse:.0} | {validate:.0} | {rsip:.0} | {:.1}x | {:.1}x |",
            rsip / parse,
            rsip / validate
        );
    }
    let call = per_iteration(&bin, "call", "-", (iterations / 10).max(1))?;
    println!(
        "\ninstructions per call (INVITE/100/180/200/ACK/BYE/200, transactions + dialogs): {call:.0}"
    );
    Ok(())
}

fn fuzz(root: &Path, target: FuzzTarget, seconds: u64) -> anyhow::Result<()> {
    let targets: &[&str] = match target {
        FuzzTarget::Parse => &["parse"],
        FuzzTarget::Proxy => &["proxy"],
        FuzzTarget::Framer => &["framer"],
        FuzzTarget::All => &["parse", "proxy", "framer"],
    };
    for &name in targets {
        let corpus = root.join("target/fuzz-corpus").join(name);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds: Vec<PathBuf> = if name != "proxy" {
            vec![
                root.join("tests/data/rfc4475"),
                root.join("tests/data/messages"),
            ]
        } else {
            // The proxy's seeds are records of typical messages, written by the library itself.
            let dir = root.join("target/fuzz-seeds/proxy");
            cargo(
                root,
                &[
                    "run",
                    "-q",
                    "-p",
                    "sip-user",
                    "--example",
                    "fuzz_seeds",
                    "--",
                ],
            )
            .arg(&dir)
            .status_ok("writing the proxy fuzz seeds")?;
            vec![dir]
        };
        Command::new("cargo")
            .args(["+nightly", "fuzz", "run", name])
            .arg(&corpus)
            .args(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-max_len=65535")
            .arg("-print_final_stats=1")
            .current_dir(root.join("sip-user"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .status_ok(&format!("cargo fuzz run {name}"))?;
    }
    Ok(())
}

/// True if the command runs and exits 0 (output discarded): "is this tool installed?".
fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn debian_package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

trait StatusOk {
    fn status_ok(&mut self, what: &str) -> anyhow::Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self, what: &str) -> anyhow::Result<()> {
        let status = self.status().with_context(|| format!("starting {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    }
}
