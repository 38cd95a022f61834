//! The daemon's control side: what the config file and the admin API change while it runs.
//! [`Controller`] owns the running config, the API's live filter entries and the tokens; the
//! daemon's main loop hands it each SIGHUP, each [`Control`] message from the API, and each
//! expiry of a live entry, with the XDP program's maps to write. One owner, so a reload and an
//! API change never interleave.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    auth::Tokens,
    live::{Change, LiveError, LiveFilter},
    views::{FilterView, ReloadReport, Status},
};
use crate::{
    backend::keeper::{KeeperCommand, Reload},
    control::config::Config,
    control::ebpf::FastPath,
    control::filter::FilterSettings,
    transport::tls,
};

/// A request from the admin API to the main loop.
#[derive(Debug)]
pub enum Control {
    Status(oneshot::Sender<Status>),
    Filter(oneshot::Sender<FilterView>),
    ChangeFilter {
        change: Change,
        by: String,
        reply: oneshot::Sender<Result<FilterView, ChangeError>>,
    },
    Reload {
        by: String,
        reply: oneshot::Sender<ReloadReport>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Refused(#[from] LiveError),
    /// The maps would not take it (the change is undone).
    #[error("writing the XDP maps: {0}")]
    Maps(String),
}

/// What stays the same while the daemon runs, for `status`.
#[derive(Debug, Clone)]
pub struct Started {
    pub iface: String,
    pub xdp_mode: &'static str,
    pub cpus: Vec<u32>,
    pub started: Instant,
    pub started_at: SystemTime,
}

pub struct Controller {
    identity: Started,
    running: Config,
    config_path: Option<PathBuf>,
    /// SHA-256 of the config file as last (re)loaded, or of nothing without one.
    digest: String,
    /// The config's filter; the maps hold it merged with `live`.
    filter: FilterSettings,
    live: LiveFilter,
    steer: Vec<u32>,
    keeper: mpsc::Sender<KeeperCommand>,
    tls: watch::Sender<Option<Arc<rustls::ServerConfig>>>,
    admin_tls: Option<watch::Sender<Arc<rustls::ServerConfig>>>,
    tokens: Arc<RwLock<Tokens>>,
}

/// What [`Controller::new`] needs.
pub struct ControllerSetup {
    pub identity: Started,
    pub config: Config,
    pub config_path: Option<PathBuf>,
    /// The filter as applied at start (steering CPUs included).
    pub filter: FilterSettings,
    pub keeper: mpsc::Sender<KeeperCommand>,
    pub tls: watch::Sender<Option<Arc<rustls::ServerConfig>>>,
    /// The admin API's HTTPS settings, when it speaks HTTPS.
    pub admin_tls: Option<watch::Sender<Arc<rustls::ServerConfig>>>,
    pub tokens: Arc<RwLock<Tokens>>,
}

impl Controller {
    pub fn new(s: ControllerSetup) -> Self {
        Controller {
            digest: digest_of(s.config_path.as_deref()),
            steer: s.filter.steer_cpus.clone(),
            identity: s.identity,
            running: s.config,
            config_path: s.config_path,
            filter: s.filter,
            live: LiveFilter::default(),
            keeper: s.keeper,
            tls: s.tls,
            admin_tls: s.admin_tls,
            tokens: s.tokens,
        }
    }

    /// When the next live entry expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.live.next_expiry()
    }

    /// Drops the live entries that expired and writes the maps.
    pub fn expire(&mut self, fast_path: &mut FastPath, now: Instant) {
        let gone = self.live.expire(now);
        if gone.is_empty() {
            return;
        }
        for g in &gone {
            log::info!("admin: expired {g}");
        }
        if let Err(e) = fast_path.apply(&self.live.merged(&self.filter)) {
            log::error!("admin: writing the XDP maps after an expiry: {e}");
        }
    }

    pub async fn handle(&mut self, fast_path: &mut FastPath, control: Control) {
        match control {
            Control::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Control::Filter(reply) => {
                let _ = reply.send(self.filter_view());
            }
            Control::ChangeFilter { change, by, reply } => {
                let result = self.change_filter(fast_path, change, &by);
                let _ = reply.send(result.map(|()| self.filter_view()));
            }
            Control::Reload { by, reply } => {
                let report = self.reload(fast_path, &format!("reload by {by}")).await;
                let _ = reply.send(report);
            }
        }
    }

    fn change_filter(
        &mut self,
        fast_path: &mut FastPath,
        change: Change,
        by: &str,
    ) -> Result<(), ChangeError> {
        let before = self.live.clone();
        let what = self.live.change(change, by, Instant::now(), &self.filter)?;
        if let Err(e) = fast_path.apply(&self.live.merged(&self.filter)) {
            self.live = before;
            let _ = fast_path.apply(&self.live.merged(&self.filter));
            return Err(ChangeError::Maps(e.to_string()));
        }
        log::info!("admin: {by} {what}");
        Ok(())
    }

    fn status(&self) -> Status {
        let id = &self.identity;
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: id.started.elapsed().as_secs(),
            started_unix_s: id
                .started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            interface: id.iface.clone(),
            xdp_mode: id.xdp_mode.to_string(),
            workers: id.cpus.len(),
            cpus: id.cpus.clone(),
            steering: !self.steer.is_empty(),
            config_file: self.config_path.as_ref().map(|p| p.display().to_string()),
            config_sha256: self.digest.clone(),
            live_filter_entries: self.live.blocklist.len()
                + self.live.allowlist.len()
                + self.live.scanners.len()
                + usize::from(self.live.rate_limit.is_some()),
        }
    }

    fn filter_view(&self) -> FilterView {
        FilterView::new(&self.filter, &self.live, Instant::now())
    }

    /// Reads the config file again; applies the backends, health checks, filter (with the live
    /// entries), TLS certificate and tokens, and says which other changes need a restart. A bad
    /// file changes nothing. `why` starts the log lines (`SIGHUP`, `reload by alice`).
    pub async fn reload(&mut self, fast_path: &mut FastPath, why: &str) -> ReloadReport {
        let mut report = ReloadReport::default();
        let Some(path) = self.config_path.clone() else {
            report.error(
                why,
                "started without --config, nothing to reload".to_string(),
            );
            return report.finish();
        };
        let new = match Config::from_file(&path) {
            Ok(c) => c,
            Err(e) => {
                report.error(why, format!("keeping the running config: {e}"));
                return report.finish();
            }
        };
        match new.filter_settings(&self.steer) {
            Ok(settings) => {
                if let Some(dropped) = self.live.on_reload(&self.filter, &settings) {
                    report.note(why, dropped);
                }
                match fast_path.apply(&self.live.merged(&settings)) {
                    Ok(()) => self.filter = settings,
                    Err(e) => report.error(why, format!("applying the filter: {e}")),
                }
            }
            Err(e) => report.error(why, format!("filter: {e}")),
        }
        self.reload_tls(&new, why, &mut report);
        self.reload_tokens(&new, why, &mut report);
        self.reload_admin_tls(&new, why, &mut report);
        for field in restart_only(&self.running, &new) {
            report.restart_needed.push(field.to_string());
            log::warn!("{why}: `{field}` changed; it takes effect at the next restart");
        }
        let _ = self
            .keeper
            .send(KeeperCommand::Reload(Reload {
                backends: new.backends.clone(),
                health: new.health.clone(),
                dns: new.dns.clone(),
            }))
            .await;
        self.digest = digest_of(Some(&path));
        // What needs a restart keeps its running value; the rest is now the file's.
        self.running = Config {
            backends: new.backends,
            health: new.health,
            dns: new.dns,
            filter: new.filter,
            tls: crate::control::config::TlsSection {
                handshake_timeout_ms: self.running.tls.handshake_timeout_ms,
                trusted_names: self.running.tls.trusted_names.clone(),
                server_ca: self.running.tls.server_ca.clone(),
                ..new.tls
            },
            admin: crate::control::config::AdminSection {
                tokens_file: new.admin.tokens_file,
                ..self.running.admin.clone()
            },
            ..self.running.clone()
        };
        log::info!("{why}: reloaded {}", path.display());
        report.finish()
    }

    /// Certificates are re-read (renewed files take effect for new connections); turning TLS on
    /// or off needs the listeners, so a restart.
    fn reload_tls(&self, new: &Config, why: &str, report: &mut ReloadReport) {
        // (Read first: a `borrow()` in the match would hold the lock that `send_replace` takes.)
        let tls_running = self.tls.borrow().is_some();
        match (new.tls.files(), tls_running) {
            (Some(files), true) => match tls::server_config(&files) {
                Ok(c) => {
                    self.tls.send_replace(Some(c));
                    log::info!(
                        "{why}: TLS certificate re-read from {}",
                        files.certificate.display()
                    );
                }
                Err(e) => report.error(why, format!("keeping the running TLS certificate: {e}")),
            },
            (None, false) => {}
            _ => report.restart_needed.push("tls".to_string()),
        }
    }

    /// The admin API's certificate is re-read like the SIP listeners'; turning HTTPS on or
    /// off needs its listener, so a restart.
    fn reload_admin_tls(&self, new: &Config, why: &str, report: &mut ReloadReport) {
        let wanted = new
            .admin
            .tls_files()
            .filter(|_| new.admin.tokens_file.is_some());
        match (wanted, &self.admin_tls) {
            (Some(files), Some(running)) => match tls::server_config(&files) {
                Ok(c) => {
                    running.send_replace(c);
                    log::info!(
                        "{why}: admin API certificate re-read from {}",
                        files.certificate.display()
                    );
                }
                Err(e) => report.error(
                    why,
                    format!("keeping the running admin API certificate: {e}"),
                ),
            },
            (None, None) => {}
            _ => report.restart_needed.push("admin.certificate".to_string()),
        }
    }

    /// The tokens file is read again; the API keeps running without one only if it never had
    /// one (it is started at launch or not at all).
    fn reload_tokens(&self, new: &Config, why: &str, report: &mut ReloadReport) {
        let Some(path) = &new.admin.tokens_file else {
            if self.running.admin.tokens_file.is_some() {
                report.restart_needed.push("admin.tokens_file".to_string());
            }
            return;
        };
        match Tokens::from_file(path) {
            Ok(tokens) => {
                let n = tokens.len();
                if let Ok(mut held) = self.tokens.write() {
                    *held = tokens;
                }
                log::info!("{why}: {n} admin tokens read from {}", path.display());
            }
            Err(e) => report.error(why, format!("keeping the running admin tokens: {e}")),
        }
    }
}

/// The fields a reload cannot change (the sockets, workers and proxies were made with them).
fn restart_only(running: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("sip_ports", new.sip_ports != running.sip_ports),
        ("listen", new.listen != running.listen),
        ("listeners", new.listeners != running.listeners),
        ("connections", new.connections != running.connections),
        (
            "tls.handshake_timeout_ms",
            new.tls.handshake_timeout_ms != running.tls.handshake_timeout_ms,
        ),
        (
            "tls.trusted_names",
            new.tls.trusted_names != running.tls.trusted_names,
        ),
        ("tls.server_ca", new.tls.server_ca != running.tls.server_ca),
        ("workers", new.workers != running.workers),
        ("steering", new.steering != running.steering),
        ("metrics", new.metrics != running.metrics),
        ("admin.listen", new.admin.listen != running.admin.listen),
        ("capture", new.capture != running.capture),
        ("advertise", new.advertise != running.advertise),
        ("record_route", new.record_route != running.record_route),
        ("timers", new.timers != running.timers),
        ("limits", new.limits != running.limits),
        ("trusted", new.trusted != running.trusted),
        ("domains", new.domains != running.domains),
        ("flow_secret", new.flow_secret != running.flow_secret),
        ("route_address", new.route_address != running.route_address),
        ("path", new.path != running.path),
        ("routes", new.routes != running.routes),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

/// SHA-256 of the file's bytes, hex; of no bytes without a file (the built-in defaults).
fn digest_of(path: Option<&Path>) -> String {
    let bytes = path.and_then(|p| std::fs::read(p).ok()).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long the API waits for the main loop or a worker before answering 503.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);
