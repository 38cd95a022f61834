//! The daemon's admin API in tests: a tokens file with a `write` token (alice) and a `read`
//! token (grafana), the `[admin]` config section naming it, and `sip-fastpath ctl` and curl run
//! inside the edge's namespace (the API listens on its loopback).

use std::path::PathBuf;

use anyhow::Context;

use crate::{Netns, binary};

pub const ADMIN_LISTEN: &str = "127.0.0.1:9465";
pub const ALICE: &str = "alice-0123456789abcdef";
pub const GRAFANA: &str = "grafana-fedcba9876543210";

/// A tokens file and each token in a file of its own (for `ctl --token-file`); removed on drop.
pub struct Admin {
    pub dir: PathBuf,
    /// Where the API listens, and over HTTPS: its certificate, key and the CA for `ctl --ca`.
    pub listen: String,
    pub tls: Option<AdminTls>,
}

/// The API's certificate files.
pub struct AdminTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What a `ctl` run printed, and how it exited.
#[derive(Debug)]
pub struct CtlRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Admin {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sfp-admin-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("tokens"),
            format!("# name role token\nalice write {ALICE}\ngrafana read {GRAFANA}\n"),
        )?;
        // As an operator keeps it: readable by the daemon's user only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("tokens"), std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(dir.join("alice.token"), format!("{ALICE}\n"))?;
        std::fs::write(dir.join("grafana.token"), format!("{GRAFANA}\n"))?;
        Ok(Admin {
            dir,
            listen: ADMIN_LISTEN.to_string(),
            tls: None,
        })
    }

    /// The API on `listen` (a LAN address) over HTTPS with `tls`.
    pub fn https(tag: &str, listen: &str, tls: AdminTls) -> anyhow::Result<Self> {
        let mut admin = Admin::new(tag)?;
        admin.listen = listen.to_string();
        admin.tls = Some(tls);
        Ok(admin)
    }

    /// `http://…` or `https://…` and the listen address.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    /// The `[admin]` table for the daemon's config (a table: append it after the others).
    pub fn config(&self) -> String {
        let mut c = format!(
            "\n[admin]\nlisten = \"{}\"\ntokens_file = \"{}\"\n",
            self.listen,
            self.dir.join("tokens").display()
        );
        if let Some(tls) = &self.tls {
            c.push_str(&format!(
                "certificate = \"{}\"\nkey = \"{}\"\n",
                tls.certificate.display(),
                tls.key.display()
            ));
        }
        c
    }

    /// `sip-fastpath ctl --token-file <who>.token args…` inside `ns` (with `--ca` over HTTPS).
    pub fn ctl(&self, ns: &Netns, who: &str, args: &[&str]) -> anyhow::Result<CtlRun> {
        let mut command = ns.command(binary().to_str().context("binary path")?);
        command
            .arg("ctl")
            .arg("--url")
            .arg(self.url())
            .arg("--token-file")
            .arg(self.dir.join(format!("{who}.token")));
        if let Some(tls) = &self.tls {
            command.arg("--ca").arg(&tls.ca);
        }
        let out = command
            .args(args)
            .env_remove("SIP_FASTPATH_TOKEN")
            .env_remove("SIP_FASTPATH_CA")
            .output()?;
        Ok(CtlRun {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `ctl --json args…` as alice; fails unless it succeeds.
    pub fn ctl_json(&self, ns: &Netns, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.ctl(ns, "alice", &all)?;
        anyhow::ensure!(run.ok, "ctl {args:?} failed: {}", run.stderr.trim());
        Ok(serde_json::from_str(&run.stdout)?)
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw HTTP request to the API from inside `ns` with curl: the status and the body.
/// `token` `None` sends no Authorization header.
pub fn http(
    ns: &Netns,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, String, String)> {
    let url = format!("http://{ADMIN_LISTEN}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "-s",
        "-D",
        "/dev/stderr",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data", b]);
    }
    args.push(&url);
    let out = ns.command("curl").args(&args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "curl {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("no status line from curl")?;
    let headers = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok((code.trim().parse()?, body.to_string(), headers))
}
