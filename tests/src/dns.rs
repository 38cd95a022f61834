//! An authoritative DNS server for the SRV tests: dnsmasq (Debian's `dnsmasq-base`, no system
//! service) on a namespace's loopback, answering only the records given, with a fixed TTL.
//! Killed on drop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::Netns;

/// One SRV record of the service.
#[derive(Debug, Clone)]
pub struct Srv<'a> {
    pub target: &'a str,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// What the server answers: `service` (e.g. `_sip._udp.sip.test`) has `records`, and each
/// target of `hosts` has its IPv4 address.
#[derive(Debug, Clone)]
pub struct Zone<'a> {
    pub service: &'a str,
    pub records: Vec<Srv<'a>>,
    pub hosts: Vec<(&'a str, &'a str)>,
    pub ttl: u32,
}

pub struct Dnsmasq {
    child: Option<Child>,
    listen: SocketAddr,
    pub log: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` on `listen` (a loopback address there) serving `zone`, and waits
    /// until it answers.
    pub fn start(ns: &Netns, listen: SocketAddr, zone: &Zone, logs: &Path) -> anyhow::Result<Self> {
        let mut dns = Dnsmasq {
            child: None,
            listen,
            log: logs.join("dnsmasq.log"),
        };
        dns.serve(ns, zone)?;
        Ok(dns)
    }

    /// Replaces the zone: stops the server and starts it again with `zone`.
    pub fn serve(&mut self, ns: &Netns, zone: &Zone) -> anyhow::Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--group=root".into(),
            "--pid-file=".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", self.listen.ip()),
            format!("--port={}", self.listen.port()),
            format!("--local-ttl={}", zone.ttl),
            "--log-queries".into(),
            "--log-facility=-".into(),
        ];
        for r in &zone.records {
            args.push(format!(
                "--srv-host={},{},{},{},{}",
                zone.service, r.target, r.port, r.priority, r.weight
            ));
        }
        for (host, ip) in &zone.hosts {
            args.push(format!("--host-record={host},{ip}"));
        }
        let child = ns
            .command("dnsmasq")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dnsmasq (install dnsmasq-base: cargo xtask setup)")?;
        self.child = Some(child);
        self.wait_until_answering(ns, zone.service)
    }

    /// Sends SRV queries until one is answered (5 s at most).
    fn wait_until_answering(&mut self, ns: &Netns, service: &str) -> anyhow::Result<()> {
        let from: SocketAddr = format!("{}:0", self.listen.ip()).parse()?;
        let socket = ns.udp_socket(from)?;
        let query = srv_query(service);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("dnsmasq exited with {status}; see {}", self.log.display());
            }
            socket.send_to(&query, self.listen)?;
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && n > 12
                && buf[..2] == query[..2]
            {
                return Ok(());
            }
        }
        bail!("dnsmasq did not answer on {} within 5 s", self.listen)
    }

    /// Stops answering (as a failed server does).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs dnsmasq, so the child is dnsmasq itself.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A DNS query (RFC 1035 §4.1) for the SRV records of `name`.
fn srv_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x5f, 0x5f, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 33, 0, 1]);
    q
}
