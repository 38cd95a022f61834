//! sipp (Debian's `sip-tester`) as the callers and the backends of the end-to-end tests, the
//! demo and bench-e2e: backends run until dropped, callers run a bounded number of calls and
//! report sipp's own counts, and the backends' message logs say which calls reached them.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::Netns;

/// The scenario files in `tests/data/sipp`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/sipp")
        .join(format!("{name}.xml"))
}

/// A folder for sipp's logs, removed on drop.
pub struct LogDir(pub PathBuf);

impl LogDir {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sfp-sipp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(LogDir(dir))
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::env::var_os("SFP_KEEP_LOGS").is_some() {
            eprintln!("sipp logs kept in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sipp backend (UAS) answering on `addr:5060`; killed on drop.
pub struct Backend {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl Backend {
    /// Starts `scenario` in `ns`; `-aa` answers the proxy's OPTIONS probes, and an unexpected
    /// message (a retransmission) is ignored rather than fatal to the call.
    pub fn start(ns: &Netns, addr: &str, scenario_name: &str, logs: &Path) -> anyhow::Result<Self> {
        Self::start_with(ns, addr, scenario_name, logs, &[])
    }

    /// As [`Self::start`], with more sipp arguments (`-s user`, `-d ms`, `-key k v`).
    pub fn start_with(
        ns: &Netns,
        addr: &str,
        scenario_name: &str,
        logs: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let log = logs.join(format!("backend-{addr}-messages.log"));
        let child = ns
            .command("sipp")
            .arg("-sf")
            .arg(scenario(scenario_name))
            .args([
                "-i",
                addr,
                "-p",
                "5060",
                "-aa",
                "-nostdin",
                // A UAS absorbs retransmissions (RFC 3261 §17.2.1): sipp would abort the call
                // on an INVITE retransmitted after its 200 (the proxy's timer A when 100, 180
                // and 200 were all lost); ignoring it keeps the 200's own retransmissions going.
                "-default_behaviors",
                "all,-abortunexp",
                "-trace_msg",
                "-message_file",
            ])
            .arg(&log)
            .args(extra)
            .current_dir(logs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting sipp (install sip-tester: cargo xtask setup)")?;
        Ok(Backend {
            child: Some(child),
            addr: addr.to_string(),
            log,
        })
    }

    /// Stops it now (a backend failure in the middle of a run).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Call-ID → methods of the requests this backend received (OPTIONS probes left out).
    pub fn requests_by_call(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // "UDP message received", "TCP message received", …
        for block in text.split(" message received").skip(1) {
            let mut lines = block
                .lines()
                .skip_while(|l| l.trim().is_empty() || l.contains("bytes :"));
            let Some(start) = lines.next() else { continue };
            let method = start.split_whitespace().next().unwrap_or("").to_string();
            if method == "SIP/2.0" || method == "OPTIONS" {
                continue;
            }
            let call_id = block
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    let n = name.trim();
                    (n.eq_ignore_ascii_case("Call-ID") || n == "i")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default();
            calls.entry(call_id).or_default().push(method);
        }
        Ok(calls)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a caller run ended with, from sipp's own statistics.
#[derive(Debug, Clone, Default)]
pub struct CallerReport {
    pub exit_code: i32,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Response times (INVITE to 200, sipp's `rtd`) of every successful call, in ms.
    pub response_ms: Vec<f64>,
    pub call_ids: BTreeSet<String>,
    pub elapsed: Duration,
    /// Messages sipp did not expect where they came (with `lenient`, the call went on).
    pub unexpected: u64,
}

impl CallerReport {
    /// The `p`-th percentile (0 to 100) of the response times.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.response_ms.is_empty() {
            return f64::NAN;
        }
        let mut v = self.response_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// A bounded caller run.
pub struct Caller<'a> {
    pub ns: &'a Netns,
    pub local: &'a str,
    pub target: &'a str,
    pub scenario: &'a str,
    pub calls: u32,
    /// Calls per second.
    pub rate: u32,
    /// Most calls open at once.
    pub limit: u32,
    /// The whole run ends after this, whatever its state.
    pub timeout: Duration,
    /// Log every message (the Call-IDs in the report need it; benchmarks turn it off).
    pub trace: bool,
    /// Ignore unexpected messages instead of aborting the call (sipp's `abortunexp` off): a
    /// provisional response that arrives after the 200, which RFC 3261 lets a UA ignore, then
    /// does not fail the call. Benchmarks only; the tests want order kept.
    pub lenient: bool,
    /// More sipp arguments: `-s user`, `-d ms` (the scenario's pauses), `-t un` (a socket per
    /// call), `-key k v`.
    pub extra: &'a [&'a str],
}

impl<'a> Caller<'a> {
    /// `scenario` from `local` in `ns` to `target`: one call, 10/s, at most 100 open, 2 min at
    /// most, every message logged, order kept, no more arguments. Change what differs with
    /// struct update syntax.
    pub fn new(ns: &'a Netns, local: &'a str, target: &'a str, scenario: &'a str) -> Self {
        Caller {
            ns,
            local,
            target,
            scenario,
            calls: 1,
            rate: 10,
            limit: 100,
            timeout: Duration::from_secs(120),
            trace: true,
            lenient: false,
            extra: &[],
        }
    }

    pub fn run(&self, logs: &Path) -> anyhow::Result<CallerReport> {
        let stat = logs.join(format!("caller-{}-{}-stat.csv", self.scenario, self.rate));
        let messages = logs.join(format!(
            "caller-{}-{}-messages.log",
            self.scenario, self.rate
        ));
        let errors = logs.join(format!("caller-{}-{}-errors.log", self.scenario, self.rate));
        let _ = std::fs::remove_file(&errors);
        let started = Instant::now();
        let out = self
            .ns
            .command("sipp")
            .args([self.target, "-sf"])
            .arg(scenario(self.scenario))
            .args(["-i", self.local, "-p", "5060", "-nostdin"])
            .args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()])
            .args(["-l", &self.limit.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))])
            .args(["-recv_timeout", "40000", "-max_retrans", "10"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stat)
            .args(["-trace_rtt", "-rtt_freq", "1", "-trace_err", "-error_file"])
            .arg(&errors)
            .args(self.extra)
            .args(if self.lenient {
                &["-default_behaviors", "all,-abortunexp"][..]
            } else {
                &[]
            })
            .args(if self.trace {
                vec![
                    "-trace_msg".into(),
                    "-message_file".into(),
                    messages.clone().into_os_string(),
                ]
            } else {
                Vec::new()
            })
            .current_dir(logs)
            .stdin(Stdio::null())
            .output()
            .context("running sipp (install sip-tester: cargo xtask setup)")?;
        let elapsed = started.elapsed();
        let exit_code = out.status.code().unwrap_or(-1);
        if !matches!(exit_code, 0 | 1) {
            bail!(
                "sipp {} exited with {exit_code}: {}",
                self.scenario,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut report = read_stat(&stat)?;
        report.exit_code = exit_code;
        report.elapsed = elapsed;
        report.response_ms = read_rtt(logs, self.scenario)?;
        report.call_ids = sent_call_ids(&messages);
        report.unexpected = std::fs::read_to_string(&errors)
            .map(|text| text.matches("on unexpected message").count() as u64)
            .unwrap_or(0);
        Ok(report)
    }
}

/// The last row of sipp's `-trace_stat` CSV.
fn read_stat(path: &Path) -> anyhow::Result<CallerReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sipp's statistics {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("empty statistics")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .context("no statistics row")?
        .split(';')
        .collect();
    let field = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(CallerReport {
        successful: field("SuccessfulCall(C)"),
        failed: field("FailedCall(C)"),
        retransmissions: field("Retransmissions(C)"),
        ..CallerReport::default()
    })
}

/// Every response time sipp wrote with `-trace_rtt` (`<scenario>_<pid>_rtt.csv` in the
/// working folder: `date;dateMs;response_time;rtd_no`).
fn read_rtt(logs: &Path, scenario: &str) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(logs)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{scenario}_")) && name.ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(&path)?;
            out.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|l| l.split(';').nth(2)?.trim().parse::<f64>().ok()),
            );
            std::fs::remove_file(&path)?;
        }
    }
    Ok(out)
}

/// The Call-IDs of the calls a caller placed: of every message it sent (INVITE, SUBSCRIBE,
/// REFER… and the requests and responses that follow in the same call).
fn sent_call_ids(messages: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(messages).unwrap_or_default();
    // "UDP message sent", "TCP message sent", …
    text.split(" message sent")
        .skip(1)
        .filter_map(|b| {
            b.lines()
                .find_map(|l| l.strip_prefix("Call-ID:").map(|v| v.trim().to_string()))
        })
        .collect()
}
