//! A HEP collector for the capture tests: sngrep sniffing loopback with HEP parsing on (`-E`):
//! each HEPv3 packet to the collector's address is decoded back into the SIP message it
//! carries, with the addresses, ports and time from its chunks, and written to a pcap file
//! that tshark then dissects. (sngrep's `-L` listener takes the same packets but does not write
//! them to `-O`; Debian's tshark 4.0 has no HEP dissector of its own.)

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::Netns;

pub struct Sngrep {
    child: Option<Child>,
    pub pcap: PathBuf,
}

impl Sngrep {
    /// Takes the HEP sent over loopback inside `ns` (to a collector address where nothing
    /// listens: the packets are sniffed, not received); what it decodes goes to `pcap`.
    pub fn start(ns: &Netns, pcap: &Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let _ = std::fs::remove_file(pcap);
        let child = ns
            .command("sngrep")
            .args(["-N", "-q", "-E", "-d", "lo", "-O"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting sngrep (install it: cargo xtask setup)")?;
        let mut s = Sngrep {
            child: Some(child),
            pcap: pcap.to_path_buf(),
        };
        // sngrep opens its capture at once; give it a moment and check it is still running.
        std::thread::sleep(Duration::from_millis(700));
        if let Some(status) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("sngrep exited at start: {status}");
        }
        Ok(s)
    }

    /// Stops it (SIGTERM to its group, which flushes the pcap; SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::stop_group(child);
        }
    }
}

impl Drop for Sngrep {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.pcap);
    }
}

/// One SIP message as tshark dissected it from the collector's pcap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Captured {
    /// The method of a request, the status code of a response.
    pub kind: String,
    pub call_id: String,
    /// `ip:port` of each end, from the HEP chunks.
    pub source: String,
    pub destination: String,
    /// Seconds since the epoch, from the HEP time chunks.
    pub time: String,
}

/// tshark's SIP dissection of `pcap`, each message once (sngrep writes a decoded HEP packet as
/// two identical frames; distinct messages differ in ends or time).
pub fn sip_messages(pcap: &Path) -> anyhow::Result<Vec<Captured>> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", "sip", "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .args([
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
        ])
        .args(["-e", "frame.time_epoch"])
        .output()
        .context("running tshark (install it: cargo xtask setup)")?;
    if !out.status.success() {
        bail!("tshark: {}", String::from_utf8_lossy(&out.stderr));
    }
    let all: std::collections::BTreeSet<Captured> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let [method, status, call_id, sip, sport, dip, dport, time] = f[..] else {
                return None;
            };
            Some(Captured {
                kind: if method.is_empty() { status } else { method }.to_string(),
                call_id: call_id.to_string(),
                source: format!("{sip}:{sport}"),
                destination: format!("{dip}:{dport}"),
                time: time.to_string(),
            })
        })
        .collect();
    Ok(all.into_iter().collect())
}
