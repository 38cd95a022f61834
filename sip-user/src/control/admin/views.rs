//! The admin API's answers, as JSON. `sip-fastpath ctl` reads the same types back, so the
//! shapes are defined once.

use std::{collections::BTreeMap, time::Instant};

use serde::{Deserialize, Serialize};

use super::live::{Entry, LiveFilter};
use crate::control::filter::FilterSettings;

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub uptime_s: u64,
    pub started_unix_s: u64,
    pub interface: String,
    /// `driver` (native) or `skb` (generic).
    pub xdp_mode: String,
    pub workers: usize,
    pub cpus: Vec<u32>,
    /// The XDP program redirects each Call-ID to its worker's CPU: `steering` is on and there
    /// are two workers or more (one has nothing to steer to).
    pub steering: bool,
    pub config_file: Option<String>,
    /// SHA-256 of the config file as last loaded (of nothing when running on defaults).
    pub config_sha256: String,
    /// Blocklist, allowlist and scanner entries and a rate limit added through the API.
    pub live_filter_entries: usize,
}

/// Where a filter entry comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// Where a filter setting comes from, who added it and for how long (the same fields in every
/// filter answer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    pub source: Source,
    /// Who added it through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

impl Origin {
    const CONFIG: Origin = Origin {
        source: Source::Config,
        by: None,
        expires_in_s: None,
    };

    fn api<T>(e: &Entry<T>, now: Instant) -> Self {
        Origin {
            source: Source::Api,
            by: Some(e.by.clone()),
            expires_in_s: e.expires_in_s(now),
        }
    }
}

/// One blocklist or allowlist CIDR, or one scanner signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilterEntryView {
    pub value: String,
    #[serde(flatten)]
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateLimitView {
    /// Packets per second per source; 0: off.
    pub pps: u32,
    pub burst: u32,
    #[serde(flatten)]
    pub origin: Origin,
}

/// `GET /api/v1/filter`: what the XDP maps hold, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilterView {
    pub blocklist: Vec<FilterEntryView>,
    pub allowlist: Vec<FilterEntryView>,
    pub scanners: Vec<FilterEntryView>,
    pub rate_limit: RateLimitView,
}

impl FilterView {
    pub fn new(config: &FilterSettings, live: &LiveFilter, now: Instant) -> Self {
        let from_config = |value: String| FilterEntryView {
            value,
            origin: Origin::CONFIG,
        };
        fn from_api<T: ToString>(e: &Entry<T>, now: Instant) -> FilterEntryView {
            FilterEntryView {
                value: e.value.to_string(),
                origin: Origin::api(e, now),
            }
        }
        let cidrs = |config: &[crate::control::cidr::Cidr],
                     live: &[Entry<crate::control::cidr::Cidr>]| {
            config
                .iter()
                .map(|c| from_config(c.to_string()))
                .chain(live.iter().map(|e| from_api(e, now)))
                .collect()
        };
        let rate_limit = match &live.rate_limit {
            Some(e) => RateLimitView {
                pps: e.value.pps,
                burst: e.value.burst,
                origin: Origin::api(e, now),
            },
            None => RateLimitView {
                pps: config.rate_limit_pps,
                burst: config.rate_limit_burst,
                origin: Origin::CONFIG,
            },
        };
        FilterView {
            blocklist: cidrs(&config.blocklist, &live.blocklist),
            allowlist: cidrs(&config.allowlist, &live.allowlist),
            scanners: config
                .scanners
                .iter()
                .map(|s| from_config(s.clone()))
                .chain(live.scanners.iter().map(|e| from_api(e, now)))
                .collect(),
            rate_limit,
        }
    }
}

/// `POST /api/v1/reload`: what a reload (or SIGHUP) did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadReport {
    /// No errors: everything the file says that a reload can apply is applied.
    pub ok: bool,
    /// What was not applied, and why (the running settings stay).
    pub errors: Vec<String>,
    /// Fields that changed but take effect at the next restart.
    pub restart_needed: Vec<String>,
    /// Other things worth knowing (a live entry that gave way to the file).
    pub notes: Vec<String>,
}

impl ReloadReport {
    /// Records and logs an error.
    pub fn error(&mut self, why: &str, message: String) {
        log::error!("{why}: {message}");
        self.errors.push(message);
    }

    pub fn note(&mut self, why: &str, message: String) {
        log::info!("{why}: {message}");
        self.notes.push(message);
    }

    /// Sets `ok` from the errors.
    pub fn finish(mut self) -> Self {
        self.ok = self.errors.is_empty();
        self
    }
}

/// One backend in `GET /api/v1/backends`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendView {
    pub address: String,
    pub transport: String,
    pub priority: u16,
    pub weight: f64,
    pub draining: bool,
    /// `up` or `down` (OPTIONS probes).
    pub health: String,
    /// Takes new calls: up, not draining, weight above 0.
    pub eligible: bool,
    /// Dialogs on it now, over every worker.
    pub dialogs: usize,
    /// Requests sent to it since the start (`sip_fastpath_backend_requests_total`).
    pub requests: u64,
}

/// `GET /api/v1/dialogs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DialogsView {
    pub total: usize,
    /// Dialogs by phase: calling, ringing, connected, disconnecting.
    pub by_state: BTreeMap<String, usize>,
    pub transactions: usize,
    pub workers: Vec<WorkerDialogs>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerDialogs {
    pub worker: usize,
    pub cpu: u32,
    /// `None` when the worker did not answer in time.
    pub dialogs: Option<usize>,
    pub transactions: Option<usize>,
}

/// `GET /api/v1/dialogs/{call_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallView {
    pub call_id: String,
    /// The worker whose tables hold the call (its Call-ID's hash).
    pub worker: usize,
    pub cpu: u32,
    pub dialogs: Vec<CallDialogView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallDialogView {
    /// calling, ringing, connected or disconnecting.
    pub state: String,
    pub caller_tag: String,
    pub callee_tag: String,
    /// The backend the call went to; absent for a call routed elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub age_s: f64,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorView {
    pub error: String,
}
