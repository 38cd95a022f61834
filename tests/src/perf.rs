//! System calls and context switches of a set of processes over a stretch of time, counted by the
//! kernel (`perf stat` on the `raw_syscalls:sys_enter` tracepoint): what a proxy costs in kernel
//! crossings per call, next to its CPU time.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;

/// A running `perf stat` attached to some processes; [`PerfStat::finish`] stops it and reads the
/// counts. Dropped unfinished, it is killed.
pub struct PerfStat {
    child: Option<Child>,
}

/// What one [`PerfStat`] counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub syscalls: u64,
    pub context_switches: u64,
}

impl PerfStat {
    /// Starts counting for `pids` (every thread they have now). `None` if there is nothing to
    /// count or perf cannot run here (the bench then leaves the column empty).
    pub fn start(pids: &[u32]) -> Option<Self> {
        if pids.is_empty() {
            return None;
        }
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "raw_syscalls:sys_enter,context-switches",
            ])
            .args(["-p", &list.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // perf needs a moment to attach before the counted work starts.
        std::thread::sleep(Duration::from_millis(200));
        Some(Self { child: Some(child) })
    }

    /// Stops perf (SIGINT makes it print its counts) and parses them.
    pub fn finish(mut self) -> anyhow::Result<Counts> {
        let child = self.child.take().context("perf already finished")?;
        // SAFETY: sends a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().context("waiting for perf")?;
        parse(&String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for PerfStat {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// perf's CSV lines: `count,unit,event,...`.
fn parse(text: &str) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let mut seen = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (f.first(), f.get(2)) else {
            continue;
        };
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        if event.starts_with("raw_syscalls:sys_enter") {
            counts.syscalls = n;
            seen += 1;
        } else if event.starts_with("context-switches") {
            counts.context_switches = n;
            seen += 1;
        }
    }
    anyhow::ensure!(seen == 2, "perf printed no counts: {text}");
    Ok(counts)
}

/// Every process whose network namespace is `ns` (the proxy under test and its workers).
pub fn namespace_pids(ns: &crate::Netns) -> anyhow::Result<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(ns.path())?.ino();
    let want = format!("net:[{inode}]");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("ns/net"))
            .ok()
            .and_then(|l| l.to_str().map(String::from))
            .as_deref()
            == Some(want.as_str())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_csv() {
        let text = "\n12345,,raw_syscalls:sys_enter,2001002,100.00,,\n77,,context-switches,2001002,100.00,,\n";
        let c = parse(text).unwrap();
        assert_eq!((c.syscalls, c.context_switches), (12345, 77));
        assert!(parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n").is_err());
    }
}
