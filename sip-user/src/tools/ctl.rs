//! `sip-fastpath ctl …`: the admin API from a shell. Each subcommand is one request; the answer
//! is printed as a table (or as the API's JSON with `--json`), and an error answer exits 1 with
//! the API's message.

use std::{io::Write, path::Path, time::Duration};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::control::admin::views::{
    BackendView, CallView, DialogsView, ErrorView, FilterEntryView, FilterView, ReloadReport,
    Source, Status,
};

const RATE_LIMIT: &str = "/api/v1/filter/rate_limit";

/// What `ctl` talks to unless told otherwise (`admin.listen`'s default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9465";

/// One `ctl` request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Status,
    Backends,
    /// Drain (`Some(true)`), undrain (`Some(false)`) and/or weigh a backend.
    Backend {
        backend: String,
        draining: Option<bool>,
        weight: Option<f64>,
    },
    Filter,
    Add {
        list: &'static str,
        value: String,
        ttl_s: Option<u64>,
    },
    Remove {
        list: &'static str,
        value: String,
    },
    /// A live per-source rate limit in place of the config's (`burst` defaults to two
    /// seconds' worth).
    RateLimit {
        pps: u32,
        burst: Option<u32>,
        ttl_s: Option<u64>,
    },
    /// Back to the config file's rate limit.
    ClearRateLimit,
    Dialogs,
    Call(String),
    Reload,
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "no token: set SIP_FASTPATH_TOKEN, or --token-file (SIP_FASTPATH_TOKEN_FILE) to a file \
         holding one token from the daemon's admin.tokens_file"
    )]
    NoToken,
    #[error("reading the token file {path}: {error}")]
    TokenFile { path: String, error: String },
    #[error("--ca {path}: {error}")]
    Ca { path: String, error: String },
    #[error(
        "cannot reach the admin API at {url}: {error} (is the daemon running, with \
         admin.tokens_file set and admin.listen at this address? https:// when admin.certificate \
         is set, with --ca for a certificate of your own CA)"
    )]
    Unreachable { url: String, error: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("the answer from {url} is not what ctl expects: {error}")]
    Answer { url: String, error: String },
}

/// The token from `SIP_FASTPATH_TOKEN`, else the first non-empty line of `file`.
pub fn token(env: Option<String>, file: Option<&Path>) -> Result<String, CtlError> {
    if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_string());
    }
    let Some(path) = file else {
        return Err(CtlError::NoToken);
    };
    let text = std::fs::read_to_string(path).map_err(|e| CtlError::TokenFile {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .ok_or_else(|| CtlError::TokenFile {
            path: path.display().to_string(),
            error: "no token in it".to_string(),
        })
}

/// The certificates in the PEM file `path`.
fn ca_certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, CtlError> {
    let err = |error: String| CtlError::Ca {
        path: path.display().to_string(),
        error,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| err(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(err("no CERTIFICATE in it".to_string()));
    }
    Ok(certs)
}

/// Percent-encodes what a path segment may not hold (a Call-ID can hold almost anything);
/// `/` stays, for CIDRs.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// A client of the API at `url` (`http://` or `https://`). An `https://` server is verified
    /// against the CA certificates in the PEM file `ca` (a private CA, or the API's own
    /// self-signed certificate), else against the Mozilla roots that ship with ctl.
    pub fn new(url: &str, token: String, ca: Option<&Path>) -> Result<Self, CtlError> {
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::WebPki);
        if let Some(path) = ca {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certificates(
                path,
            )?));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client {
            agent,
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends `request`; returns the answer's JSON.
    pub fn send(&self, request: &Request) -> Result<Value, CtlError> {
        let enc = |s: &str| utf8_percent_encode(s, PATH).to_string();
        let (method, path, body) = match request {
            Request::Status => ("GET", "/api/v1/status".to_string(), None),
            Request::Backends => ("GET", "/api/v1/backends".to_string(), None),
            Request::Backend {
                backend,
                draining,
                weight,
            } => {
                let mut body = serde_json::Map::new();
                if let Some(d) = draining {
                    body.insert("draining".into(), json!(d));
                }
                if let Some(w) = weight {
                    body.insert("weight".into(), json!(w));
                }
                let path = format!("/api/v1/backends/{}", enc(backend));
                ("PATCH", path, Some(Value::Object(body)))
            }
            Request::Filter => ("GET", "/api/v1/filter".to_string(), None),
            Request::Add { list, value, ttl_s } => {
                let key = if *list == "scanners" {
                    "signature"
                } else {
                    "cidr"
                };
                let mut body = json!({ key: value });
                if let Some(t) = ttl_s {
                    body["ttl_s"] = json!(t);
                }
                ("POST", format!("/api/v1/filter/{list}"), Some(body))
            }
            Request::Remove { list, value } => (
                "DELETE",
                format!("/api/v1/filter/{list}/{}", enc(value)),
                None,
            ),
            Request::RateLimit { pps, burst, ttl_s } => {
                let mut body = json!({ "pps": pps });
                if let Some(b) = burst {
                    body["burst"] = json!(b);
                }
                if let Some(t) = ttl_s {
                    body["ttl_s"] = json!(t);
                }
                ("PUT", RATE_LIMIT.to_string(), Some(body))
            }
            Request::ClearRateLimit => ("DELETE", RATE_LIMIT.to_string(), None),
            Request::Dialogs => ("GET", "/api/v1/dialogs".to_string(), None),
            Request::Call(call_id) => ("GET", format!("/api/v1/dialogs/{}", enc(call_id)), None),
            Request::Reload => ("POST", "/api/v1/reload".to_string(), Some(json!({}))),
        };
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("Authorization", &auth)
                .send_json(&b),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(&b),
            (_, b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(b.unwrap_or(Value::Null)),
        };
        let mut response = sent.map_err(|e| CtlError::Unreachable {
            url: self.base.clone(),
            error: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| CtlError::Answer {
                url: url.clone(),
                error: e.to_string(),
            })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| CtlError::Answer {
            url: url.clone(),
            error: format!("{e}: {text}"),
        })?;
        // A reload with errors answers 422 with its report: that is an answer to show.
        if (200..300).contains(&status) || matches!(request, Request::Reload) && status == 422 {
            return Ok(value);
        }
        let message = serde_json::from_value::<ErrorView>(value)
            .map(|e| e.error)
            .unwrap_or(text);
        Err(CtlError::Api { status, message })
    }
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, CtlError> {
    serde_json::from_value(value).map_err(|e| CtlError::Answer {
        url: "the admin API".to_string(),
        error: e.to_string(),
    })
}

/// Writes the answer to `request` for a person; returns false when the answer reports a
/// failure (a reload with errors).
pub fn render(request: &Request, value: Value, out: &mut impl Write) -> Result<bool, CtlError> {
    let text = match request {
        Request::Status => status_text(&parse(value)?),
        Request::Backends => backends_text(&parse::<Vec<BackendView>>(value)?),
        Request::Backend { .. } => backends_text(&[parse(value)?]),
        Request::Filter
        | Request::Add { .. }
        | Request::Remove { .. }
        | Request::RateLimit { .. }
        | Request::ClearRateLimit => filter_text(&parse(value)?),
        Request::Dialogs => dialogs_text(&parse(value)?),
        Request::Call(_) => call_text(&parse(value)?),
        Request::Reload => {
            let report: ReloadReport = parse(value)?;
            let ok = report.ok;
            let _ = out.write_all(reload_text(&report).as_bytes());
            return Ok(ok);
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(true)
}

fn status_text(s: &Status) -> String {
    let mut t = String::new();
    let mut row = |k: &str, v: String| t.push_str(&format!("{k:<14} {v}\n"));
    row("version", s.version.clone());
    row(
        "interface",
        format!("{} (XDP {} mode)", s.interface, s.xdp_mode),
    );
    row("uptime", duration(s.uptime_s));
    row(
        "workers",
        format!(
            "{} on CPUs {:?}, steering {}",
            s.workers,
            s.cpus,
            if s.steering { "on" } else { "off" }
        ),
    );
    row(
        "config",
        s.config_file.clone().unwrap_or_else(|| "(defaults)".into()),
    );
    row("config sha256", s.config_sha256.clone());
    row("live filter", format!("{} entries", s.live_filter_entries));
    t
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, ..) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn backends_text(list: &[BackendView]) -> String {
    let mut t = format!(
        "{:<24} {:<5} {:>8} {:>7} {:<6} {:<9} {:>8} {:>10}\n",
        "BACKEND", "PROTO", "PRIORITY", "WEIGHT", "HEALTH", "STATE", "DIALOGS", "REQUESTS"
    );
    for b in list {
        let state = if b.draining {
            "draining"
        } else if b.eligible {
            "active"
        } else {
            "idle"
        };
        t.push_str(&format!(
            "{:<24} {:<5} {:>8} {:>7} {:<6} {:<9} {:>8} {:>10}\n",
            b.address, b.transport, b.priority, b.weight, b.health, state, b.dialogs, b.requests
        ));
    }
    if list.is_empty() {
        t.push_str("(no backends)\n");
    }
    t
}

fn filter_text(f: &FilterView) -> String {
    let mut t = String::new();
    let section = |t: &mut String, name: &str, entries: &[FilterEntryView]| {
        t.push_str(&format!("{name}:\n"));
        if entries.is_empty() {
            t.push_str("  (empty)\n");
        }
        for e in entries {
            let origin = match (e.origin.source, &e.origin.by, e.origin.expires_in_s) {
                (Source::Config, ..) => "config".to_string(),
                (Source::Api, by, None) => format!("api, by {}", by.as_deref().unwrap_or("?")),
                (Source::Api, by, Some(s)) => format!(
                    "api, by {}, expires in {}",
                    by.as_deref().unwrap_or("?"),
                    duration(s)
                ),
            };
            t.push_str(&format!("  {:<40} {origin}\n", e.value));
        }
    };
    section(&mut t, "blocklist", &f.blocklist);
    section(&mut t, "allowlist", &f.allowlist);
    section(&mut t, "scanners", &f.scanners);
    let r = &f.rate_limit;
    let limit = if r.pps == 0 {
        "off".to_string()
    } else {
        format!("{} packets/s per source, burst {}", r.pps, r.burst)
    };
    let origin = match r.origin.source {
        Source::Config => "config".to_string(),
        Source::Api => format!("api, by {}", r.origin.by.as_deref().unwrap_or("?")),
    };
    t.push_str(&format!("rate limit: {limit} ({origin})\n"));
    t
}

fn dialogs_text(d: &DialogsView) -> String {
    let mut t = format!("{} dialogs, {} transactions\n", d.total, d.transactions);
    for (state, n) in &d.by_state {
        t.push_str(&format!("  {state:<14} {n}\n"));
    }
    t.push_str(&format!(
        "{:<7} {:>4} {:>8} {:>13}\n",
        "WORKER", "CPU", "DIALOGS", "TRANSACTIONS"
    ));
    for w in &d.workers {
        let n = |v: Option<usize>| v.map_or("no answer".to_string(), |v| v.to_string());
        t.push_str(&format!(
            "{:<7} {:>4} {:>8} {:>13}\n",
            w.worker,
            w.cpu,
            n(w.dialogs),
            n(w.transactions)
        ));
    }
    t
}

fn call_text(c: &CallView) -> String {
    let mut t = format!(
        "Call-ID {} on worker {} (CPU {})\n",
        c.call_id, c.worker, c.cpu
    );
    t.push_str(&format!(
        "{:<14} {:<24} {:>9} {:<20} {:<20}\n",
        "STATE", "BACKEND", "AGE", "CALLER TAG", "CALLEE TAG"
    ));
    for d in &c.dialogs {
        t.push_str(&format!(
            "{:<14} {:<24} {:>8.1}s {:<20} {:<20}\n",
            d.state,
            d.backend.as_deref().unwrap_or("-"),
            d.age_s,
            d.caller_tag,
            d.callee_tag
        ));
    }
    t
}

fn reload_text(r: &ReloadReport) -> String {
    let mut t = String::from(if r.ok {
        "reloaded\n"
    } else {
        "reload failed; the running settings stay where it says so:\n"
    });
    for e in &r.errors {
        t.push_str(&format!("  error: {e}\n"));
    }
    for f in &r.restart_needed {
        t.push_str(&format!(
            "  `{f}` changed: it takes effect at the next restart\n"
        ));
    }
    for n in &r.notes {
        t.push_str(&format!("  note: {n}\n"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_environment_first_then_the_file() {
        assert_eq!(token(Some(" abc ".into()), None).unwrap(), "abc");
        assert!(matches!(token(None, None), Err(CtlError::NoToken)));
        let path = std::env::temp_dir().join(format!("sfp-ctl-token-{}", std::process::id()));
        std::fs::write(&path, "# ops token\n\n0123456789abcdef\n").unwrap();
        let t = token(Some(String::new()), Some(&path));
        let _ = std::fs::remove_file(&path);
        assert_eq!(t.unwrap(), "0123456789abcdef");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m01s");
        assert_eq!(duration(3 * 3600 + 120), "3h02m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d01h");
    }

    #[test]
    fn an_unreachable_daemon_says_what_to_check() {
        // A loopback port just freed: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let client =
            Client::new(&url, "0123456789abcdef".into(), None).expect("no CA file to read");
        let e = client.send(&Request::Status).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot reach the admin API at {url}")),
            "{e}"
        );
        assert!(e.contains("admin.tokens_file"), "{e}");
    }
}
