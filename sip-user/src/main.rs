//! The `sip-fastpath` command line. Thin: parses arguments and calls the library.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sip_user::{
    control::config::Config,
    control::stats,
    daemon::{self, RunOptions, XdpModeChoice},
    tools::classify::Classifier,
};

/// An XDP-accelerated SIP fast path: drops floods, scanners and junk in the kernel and steers
/// every Call-ID to one worker CPU.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line:
    /// timestamp, level, target, fields.message) for a log shipper. The level comes from
    /// RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to an interface and run until SIGINT/SIGTERM (needs root).
    Run {
        /// Interface whose incoming SIP traffic to filter and steer.
        #[arg(long)]
        iface: String,
        /// XDP attach mode: auto tries native (driver) mode and falls back to skb.
        #[arg(long, value_enum, default_value = "auto")]
        xdp_mode: XdpModeChoice,
        /// TOML config file (defaults apply without one; see `check-config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder under which maps are pinned as <pin-root>/<iface>/.
        #[arg(long, default_value = stats::DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
    },
    /// Print the kernel and worker counters of a running daemon.
    Stats {
        #[arg(long)]
        iface: String,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = stats::DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
    },
    /// Run the XDP program on files of raw UDP payloads, or on the UDP datagrams of a pcap or
    /// pcapng capture (BPF_PROG_TEST_RUN, needs root), and print one JSON line per file or
    /// datagram: verdict, reason, Call-ID hash.
    Classify {
        /// UDP destination port of the frame built around each payload file (a capture's
        /// datagrams keep their own addresses and ports).
        #[arg(long, default_value_t = 5060)]
        port: u16,
        /// Apply this config's filter (ports, blocklist, scanners); the rate limit is left off,
        /// since it is a property of traffic, not of one packet.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A capture (tcpdump, sngrep -O, Wireshark) to replay instead of payload files.
        #[arg(long, conflicts_with = "files")]
        pcap: Option<PathBuf>,
        #[arg(required_unless_present = "pcap")]
        files: Vec<PathBuf>,
    },
    /// Parse files holding one SIP message each (a UDP payload), or the SIP datagrams of a pcap
    /// or pcapng capture, with the userspace parser and print one JSON line per message:
    /// ok/error, kind, method, status, Call-ID, CSeq, Via branch. Exits with 1 if any message
    /// did not parse or validate.
    Parse {
        /// A capture to read instead of files: its UDP datagrams from or to `--port`.
        #[arg(long, conflicts_with = "files")]
        pcap: Option<PathBuf>,
        /// With --pcap: the SIP ports (repeat the flag for more).
        #[arg(long = "port", default_value = "5060")]
        ports: Vec<u16>,
        #[arg(required_unless_present = "pcap")]
        files: Vec<PathBuf>,
    },
    /// Print the Call-ID hash of VALUE (the one the kernel steers by) as a decimal integer.
    HashCallId { value: String },
    /// Validate a config file and exit.
    ///
    /// Prints what the file sets up, or the first problem with the field it is in. Top-level keys:
    /// sip_ports, sip_tcp_ports, listen, workers, steering, metrics, advertise, record_route,
    /// trusted, domains, flow_secret, route_address, path; tables: [[listeners]] (transport = udp |
    /// tcp | tls, address, port; default udp and tcp on `listen`, tls on 5061 with [tls]), [tls]
    /// (certificate, key, min_version, client_ca, handshake_timeout_ms, server_ca, trusted_names),
    /// [connections] (idle_s, message_timeout_ms, max_header_bytes, max_message_bytes, per_source,
    /// write_queue), [[backends]] (address, transport, tls_name, weight, priority, draining; or
    /// srv, draining), [[routes]] (domain or prefix, destination), [dns] (servers, timeout_ms,
    /// retry_ms), [health] (interval_ms, timeout_ms, fall, rise), [timers] (t1_ms, t2_ms, t4_ms),
    /// [limits] (transactions, per_source, dialogs, handoff_queue, memory_mb: per worker but
    /// memory_mb, which is the process's heap), [filter] (rate_limit_pps, rate_limit_burst,
    /// allowlist, blocklist, scanner_user_agents). SRV and route names are not looked up here; TLS
    /// files are loaded.
    CheckConfig {
        /// The TOML file, as given to `run --config`.
        file: PathBuf,
    },
    /// Talk to a running daemon's admin API (`[admin]` in its config): show its status,
    /// backends, filter and dialogs; drain backends, block and allow sources, reload.
    ///
    /// The token is read from SIP_FASTPATH_TOKEN, or from the file --token-file names (one
    /// token from the daemon's admin.tokens_file; never on the command line, where `ps` shows
    /// it). Exits 1 with the API's message when it refuses a request.
    Ctl {
        /// The admin API (the daemon's admin.listen; https:// when it has admin.certificate).
        #[arg(long, env = "SIP_FASTPATH_ADMIN", default_value = sip_user::tools::ctl::DEFAULT_URL)]
        url: String,
        /// A file holding the token.
        #[arg(long, env = "SIP_FASTPATH_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// PEM file of the CA certificates an https:// API's certificate must chain to (your
        /// own CA, or its self-signed certificate); without it, the Mozilla roots.
        #[arg(long, env = "SIP_FASTPATH_CA")]
        ca: Option<PathBuf>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Measure the XDP program per packet next to an empty XDP program (needs root).
    BenchXdp {
        /// Test runs per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Measurements per packet kind; the minimum is reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Run without scanner signatures (shows what the User-Agent check costs).
        #[arg(long)]
        no_scanners: bool,
        /// Run without the per-source rate limiter (shows what it costs).
        #[arg(long)]
        no_rate_limit: bool,
        /// Only the packet kinds whose name contains this text, case-insensitive (for example
        /// `--only invite`, to profile one kind with `perf record`).
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
    },
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Version, uptime, interface and XDP mode, workers, config digest.
    Status,
    /// Backends with health, draining, weight, dialogs and requests.
    Backends,
    /// Stop sending new calls to a backend (`ip:port`, or an IP one backend has); its calls
    /// finish there. Kept across reloads until `undrain` or a restart.
    Drain { backend: String },
    /// Send new calls to a drained backend again.
    Undrain { backend: String },
    /// Set a backend's weight (0 to 65535; 0 takes no new calls).
    Weight { backend: String, weight: f64 },
    /// The blocklist, allowlist, scanner signatures and rate limit in force, with where each
    /// entry comes from.
    Filter,
    /// Drop a source (CIDR or address) in XDP at once.
    Block {
        cidr: String,
        /// Remove it again after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove a source blocked with `block`.
    Unblock { cidr: String },
    /// Exempt a source from the rate limit (a carrier, a trunk).
    Allow {
        cidr: String,
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove a source allowed with `allow`.
    Disallow { cidr: String },
    /// Drop in XDP every request whose User-Agent contains SIGNATURE (case-insensitive, 1 to
    /// 16 printable ASCII bytes), next to the config's `filter.scanner_user_agents` (8 in all).
    BlockScanner {
        signature: String,
        /// Remove it again after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove a signature added with `block-scanner`.
    UnblockScanner { signature: String },
    /// Limit every source (but the allowlist) to PPS packets a second in XDP, in place of the
    /// config's `filter.rate_limit_pps`; `off` goes back to the config's.
    RateLimit {
        /// Packets per second per source, or `off`.
        pps: RateLimitArg,
        /// Packets a source may send at once above the rate (default: two seconds' worth).
        #[arg(long)]
        burst: Option<u32>,
        /// Go back to the config's limit after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Dialog counts by state and worker; with a Call-ID, that call's dialogs.
    Dialogs { call_id: Option<String> },
    /// Read the config file again (as SIGHUP does) and print what was applied or not.
    Reload,
}

/// `ctl rate-limit`'s argument: a rate, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RateLimitArg {
    Pps(u32),
    Off,
}

impl std::str::FromStr for RateLimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(RateLimitArg::Off),
            n => match n.parse::<u32>() {
                Ok(pps) if pps > 0 => Ok(RateLimitArg::Pps(pps)),
                _ => Err(format!(
                    "`{n}`: packets per second (1 to {}) or `off`",
                    u32::MAX
                )),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The start of a JSON line about a captured datagram: its number and ends.
fn datagram_line(
    d: &sip_user::tools::pcap::Datagram,
) -> serde_json::Map<String, serde_json::Value> {
    let mut line = serde_json::Map::new();
    line.insert("packet".into(), d.number.into());
    line.insert("source".into(), d.source.to_string().into());
    line.insert("destination".into(), d.destination.to_string().into());
    line
}

fn ctl_request(command: CtlCommand) -> sip_user::tools::ctl::Request {
    use sip_user::tools::ctl::Request;
    let backend = |backend, draining, weight| Request::Backend {
        backend,
        draining,
        weight,
    };
    let add = |list, value, ttl_s| Request::Add { list, value, ttl_s };
    let remove = |list, value| Request::Remove { list, value };
    match command {
        CtlCommand::Status => Request::Status,
        CtlCommand::Backends => Request::Backends,
        CtlCommand::Drain { backend: b } => backend(b, Some(true), None),
        CtlCommand::Undrain { backend: b } => backend(b, Some(false), None),
        CtlCommand::Weight { backend: b, weight } => backend(b, None, Some(weight)),
        CtlCommand::Filter => Request::Filter,
        CtlCommand::Block { cidr, ttl } => add("blocklist", cidr, ttl),
        CtlCommand::Unblock { cidr } => remove("blocklist", cidr),
        CtlCommand::Allow { cidr, ttl } => add("allowlist", cidr, ttl),
        CtlCommand::Disallow { cidr } => remove("allowlist", cidr),
        CtlCommand::BlockScanner { signature, ttl } => add("scanners", signature, ttl),
        CtlCommand::UnblockScanner { signature } => remove("scanners", signature),
        CtlCommand::RateLimit {
            pps: RateLimitArg::Off,
            ..
        } => Request::ClearRateLimit,
        CtlCommand::RateLimit {
            pps: RateLimitArg::Pps(pps),
            burst,
            ttl,
        } => Request::RateLimit {
            pps,
            burst,
            ttl_s: ttl,
        },
        CtlCommand::Dialogs { call_id: None } => Request::Dialogs,
        CtlCommand::Dialogs { call_id: Some(c) } => Request::Call(c),
        CtlCommand::Reload => Request::Reload,
    }
}

fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    match format {
        LogFormat::Text => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .init();
        }
        LogFormat::Json => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            // `try_init` also installs the bridge that turns `log` records into events.
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init()
                .map_err(|e| anyhow::anyhow!("setting up JSON logging: {e}"))?;
        }
    }
    Ok(())
}

/// The system allocator, counting the bytes it hands out (one atomic per allocation) so that
/// `limits.memory_mb` can refuse new requests before a flood of large messages grows the heap.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() -> anyhow::Result<()> {
    sip_user::sys::heap::count_allocations_with(|| ALLOCATOR.allocated());
    let cli = Cli::parse();
    init_logging(cli.log_format)?;
    let command = cli.command;
    if !matches!(command, Command::Run { .. }) {
        // The one-shot commands print; piped into `head`, they should end quietly as Unix tools
        // do rather than panic on a closed stdout. (Not the daemon: its sockets must see EPIPE.)
        // SAFETY: restores the default disposition of one signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match command {
        Command::Run {
            iface,
            xdp_mode,
            config,
            pin_root,
        } => {
            let loaded = load_config(config.as_deref())?;
            let options = RunOptions {
                pin_root,
                config_path: config,
                ..RunOptions::new(&iface, xdp_mode, loaded)
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(options, shutdown_signal()))?;
        }
        Command::Ctl {
            url,
            token_file,
            ca,
            json,
            command,
        } => {
            let token = sip_user::tools::ctl::token(
                std::env::var("SIP_FASTPATH_TOKEN").ok(),
                token_file.as_deref(),
            )?;
            let request = ctl_request(command);
            let client = sip_user::tools::ctl::Client::new(&url, token, ca.as_deref())?;
            let answer = client.send(&request)?;
            let ok = if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                answer.get("ok").and_then(|v| v.as_bool()) != Some(false)
            } else {
                sip_user::tools::ctl::render(&request, answer, &mut std::io::stdout())?
            };
            if !ok {
                std::process::exit(1);
            }
        }
        Command::Stats {
            iface,
            json,
            pin_root,
        } => {
            let s = stats::read(&pin_root, &iface)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print!("{}", s.render());
            }
        }
        Command::Classify {
            port,
            config,
            pcap,
            files,
        } => {
            let config = load_config(config.as_deref())?;
            let mut settings = config.filter_settings(&[]).map_err(anyhow::Error::msg)?;
            settings.rate_limit_pps = 0;
            let classifier = Classifier::new(settings)?;
            if let Some(pcap) = pcap {
                let capture = sip_user::tools::pcap::read(&pcap)?;
                for d in &capture.datagrams {
                    let spec = sip_user::tools::frame::FrameSpec {
                        src: d.source,
                        dst: d.destination,
                        ..sip_user::tools::frame::FrameSpec::ipv4_to_port(port)
                    };
                    let decision = classifier.classify_frame(&spec.build(&d.payload))?;
                    let mut line = datagram_line(d);
                    line.insert("verdict".into(), serde_json::json!(decision.verdict));
                    line.insert("reason".into(), serde_json::json!(decision.reason));
                    line.insert(
                        "call_id_hash".into(),
                        serde_json::json!(decision.call_id_hash),
                    );
                    println!("{}", serde_json::Value::Object(line));
                }
                eprintln!(
                    "{}: {} UDP datagrams classified, {} other packets skipped",
                    pcap.display(),
                    capture.datagrams.len(),
                    capture.skipped
                );
            }
            for file in files {
                let payload =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let d = classifier.classify_payload(&payload, port)?;
                let line = serde_json::json!({
                    "file": file.display().to_string(),
                    "verdict": d.verdict,
                    "reason": d.reason,
                    "call_id_hash": d.call_id_hash,
                });
                println!("{line}");
            }
        }
        Command::Parse { pcap, ports, files } => {
            let mut failed = 0;
            if let Some(pcap) = pcap {
                let capture = sip_user::tools::pcap::read(&pcap)?;
                let sip = capture.datagrams.iter().filter(|d| {
                    ports.contains(&d.source.port()) || ports.contains(&d.destination.port())
                });
                let mut seen = 0;
                for d in sip {
                    // Keep-alives (CRLF, RFC 5626 §4.4.1) are not messages.
                    if d.payload.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    seen += 1;
                    let summary = sip_user::sip::summary::summarize(&d.payload);
                    failed += usize::from(!summary.ok);
                    // The same line as for a file, the packet's number and ends first.
                    let mut line = datagram_line(d);
                    if let serde_json::Value::Object(fields) = serde_json::to_value(&summary)? {
                        line.extend(fields);
                    }
                    println!("{}", serde_json::Value::Object(line));
                }
                eprintln!(
                    "{}: {seen} SIP messages parsed, {failed} failed",
                    pcap.display()
                );
            }
            for file in files {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let summary = sip_user::sip::summary::summarize(&bytes);
                failed += usize::from(!summary.ok);
                let line = ParseLine {
                    file: &file.display().to_string(),
                    summary: &summary,
                };
                println!("{}", serde_json::to_string(&line)?);
            }
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Command::HashCallId { value } => {
            println!("{}", sip_common::hash_call_id(value.as_bytes()));
        }
        Command::CheckConfig { file } => {
            let c = Config::from_file(&file)?;
            let backends: Vec<String> = c.backends.iter().map(|b| b.describe()).collect();
            println!(
                "{}: ok (sip_ports {:?}, sip_tcp_ports {:?}, listeners {}, workers {}, steering {}, metrics {}, backends: {})",
                file.display(),
                c.sip_ports,
                c.tcp_ports(),
                c.listeners()
                    .iter()
                    .map(|(t, a)| format!("{t} {a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if c.workers == 0 {
                    "one per CPU".to_string()
                } else {
                    c.workers.to_string()
                },
                if !c.steering {
                    "off"
                } else if c.workers != 0 && !c.steers(c.workers) {
                    "on (unused: one worker has nothing to steer to)"
                } else {
                    "on"
                },
                if c.metrics.is_empty() {
                    "off"
                } else {
                    &c.metrics
                },
                if backends.is_empty() {
                    "none (every new call gets 503)".to_string()
                } else {
                    backends.join(", ")
                }
            );
            println!("{}", c.describe_edge());
            println!("{}", c.limits.describe());
            println!("{}", c.connections.describe());
            if let Some(files) = c.tls.files() {
                // Loaded for real: a key that does not match its certificate fails here.
                sip_user::transport::tls::server_config(&files)?;
                println!(
                    "tls: certificate {} loaded, TLS {} and up, {}",
                    files.certificate.display(),
                    match files.min_version {
                        sip_user::transport::tls::MinVersion::Tls12 => "1.2",
                        sip_user::transport::tls::MinVersion::Tls13 => "1.3",
                    },
                    match &files.client_ca {
                        Some(ca) =>
                            format!("client certificates required (CAs in {})", ca.display()),
                        None => "no client certificates".to_string(),
                    }
                );
            }
        }
        Command::BenchXdp {
            repeat,
            rounds,
            no_scanners,
            no_rate_limit,
            only,
        } => {
            if repeat == 0 {
                bail!("--repeat must be at least 1");
            }
            let features = sip_user::tools::bench::Features {
                scanners: !no_scanners,
                rate_limit: !no_rate_limit,
            };
            let report = sip_user::tools::bench::run(repeat, rounds, features, only.as_deref())?;
            if report.rows.is_empty() {
                bail!(
                    "--only {:?} matches no packet kind; the kinds are: {} (the flood is \
                     measured only with the rate limiter on, without --no-rate-limit)",
                    only.unwrap_or_default(),
                    sip_user::tools::bench::case_names().join(", ")
                );
            }
            print!("{}", report.render());
        }
    }
    Ok(())
}

/// One line of `sip-fastpath parse`: the file name first, then the summary's fields.
#[derive(serde::Serialize)]
struct ParseLine<'a> {
    file: &'a str,
    #[serde(flatten)]
    summary: &'a sip_user::sip::summary::Summary,
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
