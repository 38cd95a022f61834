//! Kamailio 5.6 (Debian's `kamailio`) in a namespace, as a registrar behind the edge in the
//! tests and as the proxy compared in bench-e2e. It forks worker processes that outlive a
//! killed parent, so it runs in a process group of its own and is stopped as a group (SIGTERM,
//! then SIGKILL), also when a test fails.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::Netns;

/// A config in `tests/data/kamailio`, with `replace` applied (placeholders such as `LISTEN`).
pub fn config(name: &str, replace: &[(&str, &str)]) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/kamailio")
        .join(name);
    let mut text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    Ok(text)
}

pub struct Kamailio {
    child: Option<Child>,
    pub cfg: PathBuf,
    pub log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio with `cfg` (the config's text) in `ns`, logging to `<logs>/<name>.log`,
    /// and waits (5 s at most) until it listens.
    pub fn start(ns: &Netns, cfg: &str, logs: &Path, name: &str) -> anyhow::Result<Self> {
        Self::start_with_memory(ns, cfg, logs, name, 256)
    }

    /// As [`Self::start`], with `shm_mb` of shared memory (its transactions live there).
    pub fn start_with_memory(
        ns: &Netns,
        cfg: &str,
        logs: &Path,
        name: &str,
        shm_mb: u32,
    ) -> anyhow::Result<Self> {
        let cfg_path = logs.join(format!("{name}.cfg"));
        std::fs::write(&cfg_path, cfg)?;
        let run_dir = logs.join(format!("{name}-run"));
        std::fs::create_dir_all(&run_dir)?;
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = ns
            .command("kamailio")
            .arg("-f")
            .arg(&cfg_path)
            // 256 MB shared (by default) and 16 MB per process: what bench-e2e measured Kamailio
            // with; less starves its transaction table at a thousand calls a second.
            .args(["-DD", "-E", "-m", &shm_mb.to_string(), "-M", "16", "-Y"])
            .arg(&run_dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // `ip netns exec` execs kamailio: the group leader is kamailio itself.
            .process_group(0)
            .spawn()
            .context("starting kamailio (install it: cargo xtask setup)")?;
        let mut k = Kamailio {
            child: Some(child),
            cfg: cfg_path,
            log,
        };
        // It prints its sockets ("Listening on") before forking the children that serve them.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = k.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "kamailio exited at start ({status}); see {} and {}",
                    k.log.display(),
                    k.cfg.display()
                );
            }
            if std::fs::read_to_string(&k.log)
                .unwrap_or_default()
                .contains("Listening on")
            {
                std::thread::sleep(Duration::from_millis(500));
                return Ok(k);
            }
            if Instant::now() > deadline {
                bail!("kamailio did not start within 5 s; see {}", k.log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its process group id (the leader's pid).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::stop_group(child);
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}
