//! Test hosts in network namespaces for the end-to-end tests and the demo.
//!
//! Everything created here is removed on drop (also when a test fails), every wait is bounded
//! in time, and traffic only goes to addresses inside namespaces made here.

use std::{
    fs::File,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub mod admin;
pub mod bed;
pub mod certs;
pub mod collector;
pub mod dns;
pub mod interrupt;
pub mod kamailio;
pub mod lan;
pub mod loadgen;
pub mod perf;
pub mod phones;
pub mod prometheus;
pub mod sipp;
pub mod stream;
pub mod syn;
pub mod tls_clients;
pub mod udp;

/// Stops the process group `child` leads (started with `process_group(0)`): SIGTERM, then
/// SIGKILL after 5 s for what is left (children that outlive their parent included).
pub fn stop_group(mut child: Child) {
    let group = child.id() as i32;
    // SAFETY: signalling a process group this process started.
    unsafe { libc::killpg(group, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::killpg(group, libc::SIGKILL) };
    let _ = child.wait();
}

/// Runs a command, failing with its stderr.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn require_root() {
    // SAFETY: no arguments, no side effects.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "these tests attach XDP programs and create network namespaces: run as root"
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let _ = run(&["ip", "netns", "del", name]); // left over from a killed run
        run(&["ip", "netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `program` to be started inside the namespace (`ip netns exec` execs it, so the child is
    /// the program itself and killing the child kills it).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that entered this namespace (`setns` changes only the calling
    /// thread); the sockets it makes stay in the namespace.
    pub fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = self.path();
        std::thread::spawn(move || -> anyhow::Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: a valid namespace fd; affects only this short-lived thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
        self.inside(move || {
            let s = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            Ok(s)
        })
    }

    /// A raw IPv4 TCP socket inside this namespace (the kernel writes the IP header), for
    /// segments a test crafts itself: a SYN flood.
    pub fn raw_tcp_socket(&self) -> anyhow::Result<socket2::Socket> {
        self.inside(|| {
            use socket2::{Domain, Protocol, Socket, Type};
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).context("raw TCP socket")
        })
    }

    /// A TCP connection from inside this namespace to `to` (2 s to connect, reads time out
    /// after 200 ms).
    pub fn tcp_connect(&self, to: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
        self.inside(move || {
            let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))
                .with_context(|| format!("connecting to {to}"))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            Ok(s)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// The edge's (sip-fastpath's) address and interface on every test LAN ([`lan::Lan`]): RFC 5737
/// documentation addresses, which exist only inside the namespaces made here.
pub const EDGE_ADDR: &str = "192.0.2.1";
pub const EDGE_IFACE: &str = "ve";

/// The `sip-fastpath` binary under test: `$SIP_FASTPATH_BIN`, else the workspace's debug build.
pub fn binary() -> PathBuf {
    std::env::var_os("SIP_FASTPATH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sip-fastpath")
        })
}

/// A running `sip-fastpath run` inside a namespace; stopped with SIGTERM on drop.
pub struct Daemon {
    child: Option<Child>,
    pub pin_root: PathBuf,
    pub iface: String,
    /// Holds the config file the daemon was started with (removed on drop).
    dir: PathBuf,
    netns: PathBuf,
    mode: String,
    /// With `--log-format json`, its stderr goes here (kept after the daemon stops; the
    /// caller removes it).
    pub json_log: Option<PathBuf>,
    /// Run as `nobody` with only these capabilities (`cap_bpf`, …) instead of as root.
    caps: Option<Vec<String>>,
    /// A command the daemon runs under (`valgrind --tool=callgrind …`), which must exec it
    /// and pass on its signals; empty: run it directly.
    wrapper: Vec<String>,
}

/// The unprivileged user [`Daemon::start_with_caps`] runs the daemon as.
pub const NOBODY: u32 = 65534;

impl Daemon {
    /// As [`Daemon::start`], logging JSON lines (`--log-format json`) to [`Daemon::json_log`].
    pub fn start_json_logging(
        ns: &Netns,
        iface: &str,
        config: &str,
        tag: &str,
    ) -> anyhow::Result<Self> {
        Self::prepare(ns, iface, "auto", config, tag, true, None)?.spawned()
    }

    /// As [`Daemon::start`], as the user `nobody` holding only `caps` (capability names as
    /// systemd writes them, `CAP_BPF`), as the systemd unit runs it. Its pin folder is made
    /// and handed to that user first, as the unit's `ExecStartPre` does.
    pub fn start_with_caps(
        ns: &Netns,
        iface: &str,
        config: &str,
        tag: &str,
        caps: &[&str],
    ) -> anyhow::Result<Self> {
        let caps = caps.iter().map(|c| c.to_ascii_lowercase()).collect();
        Self::prepare(ns, iface, "auto", config, tag, false, Some(caps))?.spawned()
    }

    /// Starts the daemon in `ns` (network namespace only, so it shares the host's bpffs and the
    /// test can read its pinned maps) and waits until its workers publish stats.
    pub fn start(
        ns: &Netns,
        iface: &str,
        mode: &str,
        config: &str,
        tag: &str,
    ) -> anyhow::Result<Self> {
        Self::prepare(ns, iface, mode, config, tag, false, None)?.spawned()
    }

    /// As [`Daemon::start`], run under `wrapper` (a program and its arguments, which runs the
    /// daemon's command line after them, such as valgrind). Stop it with [`Daemon::stop`]:
    /// valgrind writes its results on the daemon's clean exit.
    pub fn start_wrapped(
        ns: &Netns,
        iface: &str,
        config: &str,
        tag: &str,
        wrapper: Vec<String>,
    ) -> anyhow::Result<Self> {
        let mut d = Self::prepare(ns, iface, "auto", config, tag, false, None)?;
        d.wrapper = wrapper;
        d.spawned()
    }

    /// [`Self::spawn`], handing the running daemon back.
    fn spawned(mut self) -> anyhow::Result<Self> {
        self.spawn()?;
        Ok(self)
    }

    /// Writes the config and sets up the pin folder and log for a daemon not yet started.
    fn prepare(
        ns: &Netns,
        iface: &str,
        mode: &str,
        config: &str,
        tag: &str,
        json: bool,
        caps: Option<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "{} does not exist: run `cargo xtask build` or set SIP_FASTPATH_BIN",
                bin.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("sfp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("config.toml"), config)?;
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/sip-fastpath-test-{tag}-{}",
            std::process::id()
        ));
        let mut d = Daemon {
            child: None,
            pin_root,
            iface: iface.to_string(),
            dir,
            netns: ns.path(),
            mode: mode.to_string(),
            json_log: None,
            caps,
            wrapper: Vec::new(),
        };
        if d.caps.is_some() {
            std::fs::create_dir_all(&d.pin_root)?;
            std::os::unix::fs::chown(&d.pin_root, Some(NOBODY), Some(NOBODY))?;
        }
        if json {
            // Outside `dir`, which goes with the daemon: the caller reads it after the stop and
            // removes it.
            d.json_log = Some(
                std::env::temp_dir().join(format!("sfp-{tag}-{}-log.json", std::process::id())),
            );
        }
        Ok(d)
    }

    /// Starts the process and waits (20 s at most) until its workers publish stats.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let netns_arg = format!("--net={}", self.netns.display());
        let mut command = Command::new("nsenter");
        command.arg(netns_arg);
        if let Some(caps) = &self.caps {
            // capsh keeps the listed capabilities across the change to `nobody` and makes them
            // ambient, so the daemon it execs holds exactly those (as systemd's
            // AmbientCapabilities does).
            let list = caps.join(",");
            command
                .arg("capsh")
                .arg(format!(
                    "--caps={list},cap_setuid,cap_setgid,cap_setpcap+eip"
                ))
                .args(["--keep=1", "--user=nobody"])
                .arg(format!("--inh={list}"))
                .arg(format!("--addamb={list}"))
                .args(["--", "-c", "exec \"$0\" \"$@\""]);
        }
        command
            .args(&self.wrapper)
            .arg(binary())
            .args([
                "run",
                "--iface",
                &self.iface,
                "--xdp-mode",
                &self.mode,
                "--config",
            ])
            .arg(self.dir.join("config.toml"))
            .arg("--pin-root")
            .arg(&self.pin_root)
            .stdin(Stdio::null());
        if let Some(log) = &self.json_log {
            command.args(["--log-format", "json"]);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            command.stderr(file);
        }
        let child = command.spawn().context("starting sip-fastpath")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("sip-fastpath exited early: {status}");
            }
            if let Ok(s) = self.stats()
                && s["workers"].as_array().is_some_and(|w| !w.is_empty())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sip-fastpath did not come up within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon (SIGTERM, a clean exit) and starts it again with the same config, as
    /// an operator's restart or a crash-and-respawn does; everything it held in memory is gone.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = terminate(&mut child)?;
            if !status.success() {
                bail!("sip-fastpath exited with {status} on SIGTERM");
            }
        }
        self.spawn()
    }

    /// `sip-fastpath stats --json` for this daemon.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(binary())
            .args(["stats", "--json", "--iface", &self.iface, "--pin-root"])
            .arg(&self.pin_root)
            .output()?;
        if !out.status.success() {
            bail!("stats: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits (bounded) until `pred` holds for the stats, returning the last stats seen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats()?;
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; last stats: {s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's process id (`nsenter` execs it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident set size in bytes (`VmRSS` in /proc), while it runs.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kb * 1024)
    }

    /// Rewrites the daemon's config file, for the next [`Self::restart`].
    pub fn set_config(&self, config: &str) -> anyhow::Result<()> {
        Ok(std::fs::write(self.dir.join("config.toml"), config)?)
    }

    /// Rewrites the daemon's config file and sends SIGHUP, as an operator reloads.
    pub fn reload(&self, config: &str) -> anyhow::Result<()> {
        self.set_config(config)?;
        let child = self.child.as_ref().context("not running")?;
        // SAFETY: signalling our own child process.
        if unsafe { libc::kill(child.id() as i32, libc::SIGHUP) } != 0 {
            bail!("SIGHUP: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        terminate(&mut child)
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("sip-fastpath did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `/metrics` of the daemon in `ns`, fetched from inside it (the endpoint is on its
/// loopback).
pub fn metrics_of(ns: &Netns) -> anyhow::Result<String> {
    ns.exec(&[
        "curl",
        "-sf",
        "--max-time",
        "5",
        "http://127.0.0.1:9464/metrics",
    ])
}

/// Not SIP: the start of a TLS ClientHello, as scanners send to port 5060.
pub const TLS_JUNK: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03junk";

/// A minimal SIP request with the given Call-ID.
pub fn sip_message(method: &str, call_id: &str, seq: u32) -> Vec<u8> {
    format!(
        "{method} sip:bob@{EDGE_ADDR} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK{seq}x{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.2>;tag=a{seq}\r\nTo: <sip:bob@{EDGE_ADDR}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The sum of the Prometheus sample lines of `metrics` that start with `prefix` (a metric's
/// name and its first labels, in the exporter's alphabetical label order); 0 when none.
pub fn metric_sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Sum of a numeric field over the workers in a stats object.
pub fn workers_sum(stats: &serde_json::Value, field: &str) -> u64 {
    stats["workers"]
        .as_array()
        .map(|ws| ws.iter().map(|w| w[field].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

/// A kernel counter `verdict/reason` from a stats object.
pub fn reason(stats: &serde_json::Value, key: &str) -> u64 {
    stats["reasons"][key].as_u64().unwrap_or(0)
}
