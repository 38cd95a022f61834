//! Prometheus (Debian's package) in a test namespace, scraping the daemon's `/metrics`, and
//! queries to its HTTP API: for the observability tests and the demo.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
};

use serde_json::Value;

use crate::Netns;

/// Prometheus in a namespace, stopped (with its children) on drop.
pub struct Prometheus {
    child: Child,
    data: PathBuf,
}

impl Prometheus {
    /// Scrapes the daemon's `/metrics` on 127.0.0.1:9464 every second, evaluates `rules` every
    /// second, serves its API on 127.0.0.1:9090 of `ns`.
    pub fn start(ns: &Netns, logs: &std::path::Path, rules: &str) -> anyhow::Result<Self> {
        let data = logs.join("prometheus-data");
        std::fs::create_dir_all(&data)?;
        let rules_path = logs.join("alerts.yml");
        std::fs::write(&rules_path, rules)?;
        let config_path = logs.join("prometheus.yml");
        std::fs::write(
            &config_path,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sip-fastpath\n    static_configs:\n      \
                 - targets: ['127.0.0.1:9464']\n",
                rules_path.display()
            ),
        )?;
        let log = std::fs::File::create(logs.join("prometheus.log"))?;
        let child = ns
            .command("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Prometheus { child, data })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// `GET /api/v1/<what>` with `query` from inside `ns`; the JSON answer.
pub fn api(ns: &Netns, what: &str, query: Option<&str>) -> anyhow::Result<Value> {
    let url = format!("http://127.0.0.1:9090/api/v1/{what}");
    let mut args = vec!["curl", "-sS", "--max-time", "5", "-G", &url];
    let encoded;
    if let Some(q) = query {
        encoded = format!("query={q}");
        args.extend(["--data-urlencode", &encoded]);
    }
    let out = ns.exec(&args)?;
    Ok(serde_json::from_str(&out)?)
}

/// The expression's result series, or the error Prometheus gave.
pub fn evaluate(ns: &Netns, expr: &str) -> anyhow::Result<Vec<Value>> {
    let v = api(ns, "query", Some(expr))?;
    anyhow::ensure!(v["status"] == "success", "{expr}: {v}");
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Waits (30 s at most) until Prometheus has scraped the daemon: `up` is 1.
pub fn wait_for_scrape(ns: &Netns) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let up = api(ns, "query", Some("up{job=\"sip-fastpath\"}"));
        if let Ok(v) = &up
            && v["data"]["result"][0]["value"][1] == "1"
        {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "Prometheus never scraped: {up:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
