//! The TOML config file. Every field has a default, unknown fields are errors (a typo must not
//! silently turn a filter off), and every error names the field.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    control::cidr::Cidr,
    control::filter::{DEFAULT_SCANNERS, FilterSettings},
    proxy::{
        PathPolicy,
        flow::{FlowKey, MIN_SECRET},
        target::{Policy, StaticRoute},
    },
    sip::{peer::Transport, transaction::Timers},
    transport::{
        framer::FrameLimits,
        stream::StreamSettings,
        tls::{MinVersion, TlsFiles},
    },
};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP ports the XDP program treats as SIP (1 to 8).
    pub sip_ports: Vec<u16>,
    /// TCP ports whose SYNs the XDP program checks against the blocklist and the per-source
    /// rate (0 to 8); default: the ports of the TCP and TLS listeners. It never looks into the
    /// streams themselves.
    pub sip_tcp_ports: Option<Vec<u16>>,
    /// Address the workers receive UDP on; defaults to 0.0.0.0 on the first SIP port. Kept
    /// for configs from before `[[listeners]]`, which it cannot be used with.
    pub listen: Option<SocketAddr>,
    /// Where SIP is received, by transport. Default: UDP on `listen`, and TCP on the same
    /// address and port.
    pub listeners: Vec<ListenerSection>,
    /// Worker threads, one per CPU starting at CPU 0; 0 means one per online CPU.
    pub workers: usize,
    /// Redirect each Call-ID to its worker's CPU in XDP (off: every message passes on the
    /// receiving CPU, and workers count misrouted messages). With one worker there is nothing
    /// to steer to and the program only filters.
    pub steering: bool,
    /// Where Prometheus scrapes `/metrics`; `""` turns the endpoint off.
    pub metrics: String,
    /// The address written in our Via and Record-Route; defaults to the listen address, or the
    /// interface's first IPv4 address when listening on 0.0.0.0.
    pub advertise: Option<IpAddr>,
    /// Add Record-Route to dialog-creating requests (INVITE, SUBSCRIBE, REFER, NOTIFY), so
    /// in-dialog requests come through us.
    pub record_route: bool,
    /// Sources that are inside besides the backends (CIDRs). Requests from the inside are routed
    /// by their Route set and Request-URI; from anywhere else (the outside), new requests go
    /// to the backends and nowhere else.
    pub trusted: Vec<String>,
    /// When not empty: the only Request-URI domains outside requests may ask for (others 403).
    pub domains: Vec<String>,
    /// The secret that signs flow tokens (16 characters at least). Nodes of a cluster share it;
    /// unset, a random one is made at each start, so tokens do not survive a restart.
    pub flow_secret: Option<String>,
    /// The address in our Record-Route and Path entries, where in-dialog requests and calls to
    /// registered phones come back to: a cluster's shared (anycast, ECMP) address; default:
    /// `advertise`.
    pub route_address: Option<IpAddr>,
    /// When to add our Path (with the phone's flow token) to REGISTERs from outside:
    /// `always`, `if-supported` (the UA sent `Supported: path`), or `off`.
    pub path: PathPolicy,
    /// Static routes for requests from the inside (carrier trunks), checked before DNS.
    pub routes: Vec<RouteSection>,
    /// The backend SIP servers new calls are spread over (by Call-ID hash and weight).
    pub backends: Vec<BackendSection>,
    pub health: HealthSection,
    pub dns: DnsSection,
    pub timers: TimersSection,
    pub limits: LimitsSection,
    pub connections: ConnectionsSection,
    pub tls: TlsSection,
    pub filter: FilterSection,
    pub admin: AdminSection,
    pub capture: CaptureSection,
}

/// `[capture]`: every SIP message received and sent, as HEPv3 to a collector (Homer, sngrep
/// `-L`, Kamailio's sipcapture). Off unless `hep` is set.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// The collector's `ip:port` (UDP).
    pub hep: Option<SocketAddr>,
    /// Percent of calls captured, whole (chosen by Call-ID): 1 to 100.
    pub sample_percent: u8,
    /// Messages per second at most, over all workers; the rest are counted, not sent.
    pub max_per_second: u32,
    /// The capture agent id the collector shows (HEP chunk 12).
    pub agent_id: u32,
    /// The collector's password (HEP chunk 14), if it wants one.
    pub password: Option<String>,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            hep: None,
            sample_percent: 100,
            max_per_second: 2000,
            agent_id: 2001,
            password: None,
        }
    }
}

impl CaptureSection {
    /// The capture to run, `None` when off.
    pub fn settings(&self) -> Option<crate::worker::capture::CaptureSettings> {
        Some(crate::worker::capture::CaptureSettings {
            collector: self.hep?,
            sample_percent: self.sample_percent,
            max_per_second: self.max_per_second,
            agent_id: self.agent_id,
            password: self.password.clone(),
        })
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.sample_percent) {
            return Err(format!(
                "capture.sample_percent: must be 1 to 100, got {}",
                self.sample_percent
            ));
        }
        if self.max_per_second == 0 {
            return Err("capture.max_per_second: must be above 0".to_string());
        }
        if let Some(hep) = self.hep
            && (hep.port() == 0 || hep.ip().is_unspecified())
        {
            return Err(format!("capture.hep: `{hep}` is not a collector's address"));
        }
        Ok(())
    }
}

/// `[admin]`: the admin HTTP API (`sip-fastpath ctl` talks to it). Off unless `tokens_file` is
/// set: every route needs a bearer token from that file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Where the API listens: keep it on loopback or a management network.
    pub listen: SocketAddr,
    /// Lines of `name role token` (role `read` or `write`); re-read on SIGHUP.
    pub tokens_file: Option<PathBuf>,
    /// PEM: the API's certificate and chain; with `key`, the API speaks HTTPS only (TLS 1.3).
    /// Re-read on SIGHUP.
    pub certificate: Option<PathBuf>,
    /// PEM: the certificate's private key.
    pub key: Option<PathBuf>,
}

impl AdminSection {
    /// The certificate files, when HTTPS is configured.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            section: "admin",
            certificate: self.certificate.clone()?,
            key: self.key.clone()?,
            min_version: MinVersion::Tls13,
            client_ca: None,
        })
    }
}

/// Where the admin API listens unless `admin.listen` says otherwise (the metrics endpoint's
/// port plus one).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9465";

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.parse().expect("a valid address"),
            tokens_file: None,
            certificate: None,
            key: None,
        }
    }
}

/// `[tls]`: the TLS listeners' certificate (re-read on SIGHUP) and what clients must offer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM file: our certificate, then its chain. With it (and `key`), the default listeners
    /// include TLS on port 5061.
    pub certificate: Option<PathBuf>,
    /// PEM file: the certificate's private key.
    pub key: Option<PathBuf>,
    /// `"1.3"` (default) or `"1.2"`: the lowest TLS version a client may use.
    pub min_version: MinVersion,
    /// PEM bundle of CAs: when set, clients must present a certificate chaining to one of them
    /// (mutual TLS, for trunks); unknown or missing certificates fail the handshake.
    pub client_ca: Option<PathBuf>,
    /// A client's handshake must be done within this many milliseconds (and ours, with a
    /// backend, including the TCP connect).
    pub handshake_timeout_ms: u64,
    /// PEM bundle of CAs the backends' (and next hops') certificates must chain to, for
    /// connections we open over TLS; default: the system's CA certificates.
    pub server_ca: Option<PathBuf>,
    /// With `client_ca`: clients whose certificate carries one of these names (subject
    /// alternative names) are inside, like `trusted` addresses (a PBX on a changing address).
    pub trusted_names: Vec<String>,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            certificate: None,
            key: None,
            min_version: MinVersion::Tls13,
            client_ca: None,
            handshake_timeout_ms: crate::transport::tls::HANDSHAKE_TIMEOUT.as_millis() as u64,
            server_ca: None,
            trusted_names: Vec::new(),
        }
    }
}

impl TlsSection {
    /// The files to load, when a certificate is configured.
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            section: "tls",
            certificate: self.certificate.clone()?,
            key: self.key.clone()?,
            min_version: self.min_version,
            client_ca: self.client_ca.clone(),
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.certificate.is_some() != self.key.is_some() {
            return Err("tls.certificate and tls.key: set both or neither".to_string());
        }
        if self.client_ca.is_some() && self.certificate.is_none() {
            return Err("tls.client_ca: needs tls.certificate and tls.key".to_string());
        }
        if self.handshake_timeout_ms == 0 {
            return Err("tls.handshake_timeout_ms: must be above 0".to_string());
        }
        if !self.trusted_names.is_empty() && self.client_ca.is_none() {
            return Err(
                "tls.trusted_names: needs tls.client_ca (names are only trusted from verified \
                 certificates)"
                    .to_string(),
            );
        }
        self.trusted_server_names()?;
        Ok(())
    }

    /// `trusted_names` as names a certificate is checked for.
    pub fn trusted_server_names(
        &self,
    ) -> Result<Vec<rustls_pki_types::ServerName<'static>>, String> {
        self.trusted_names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                rustls_pki_types::ServerName::try_from(n.clone())
                    .map_err(|_| format!("tls.trusted_names[{i}]: `{n}` is not a DNS name"))
            })
            .collect()
    }
}

/// One `[[listeners]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// `udp`, `tcp` or `tls` (needs `[tls]`).
    pub transport: TransportName,
    /// The IP address to listen on (default 0.0.0.0).
    #[serde(default = "unspecified")]
    pub address: IpAddr,
    /// Default 5060 (UDP, TCP), 5061 (TLS).
    pub port: Option<u16>,
}

fn unspecified() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// A transport as written in the config.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl TransportName {
    pub fn transport(self) -> Transport {
        match self {
            TransportName::Udp => Transport::Udp,
            TransportName::Tcp => Transport::Tcp,
            TransportName::Tls => Transport::Tls,
        }
    }
}

impl ListenerSection {
    pub fn addr(&self) -> SocketAddr {
        let default = match self.transport {
            TransportName::Tls => 5061,
            _ => 5060,
        };
        SocketAddr::new(self.address, self.port.unwrap_or(default))
    }
}

/// `[connections]`: how long and how much a TCP connection may hold us (per connection unless
/// said otherwise).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// Closed after this many seconds without a byte either way. Phones keep their flows open
    /// with CRLF pings (RFC 5626, every ~2 minutes), which count.
    pub idle_s: u64,
    /// A message must be complete this long after its first byte (and the first message this
    /// long after the connection opened): a client trickling bytes (slowloris) is closed.
    pub message_timeout_ms: u64,
    /// The start line and headers at most; a longer header section closes the connection.
    pub max_header_bytes: usize,
    /// A whole message at most.
    pub max_message_bytes: usize,
    /// Connections one source IP may hold open at once; more are closed at once.
    pub per_source: u32,
    /// Messages waiting to be written to one peer; beyond, new ones are dropped.
    pub write_queue: usize,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        let d = StreamSettings::default();
        ConnectionsSection {
            idle_s: d.idle.as_secs(),
            message_timeout_ms: d.message_timeout.as_millis() as u64,
            max_header_bytes: d.limits.max_header,
            max_message_bytes: d.limits.max_message,
            per_source: 256,
            write_queue: d.write_queue,
        }
    }
}

impl ConnectionsSection {
    pub fn settings(&self) -> StreamSettings {
        StreamSettings {
            limits: FrameLimits {
                max_header: self.max_header_bytes,
                max_message: self.max_message_bytes,
            },
            idle: Duration::from_secs(self.idle_s),
            message_timeout: Duration::from_millis(self.message_timeout_ms),
            write_queue: self.write_queue,
        }
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        format!(
            "connections: closed after {} s idle or a message taking over {} ms; headers up to \
             {} bytes, messages up to {}; {} per source IP; {} messages queued per peer",
            self.idle_s,
            self.message_timeout_ms,
            self.max_header_bytes,
            self.max_message_bytes,
            self.per_source,
            self.write_queue
        )
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("idle_s", self.idle_s),
            ("message_timeout_ms", self.message_timeout_ms),
            ("per_source", u64::from(self.per_source)),
            ("write_queue", self.write_queue as u64),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("connections.{name}: must be above 0"));
            }
        }
        if self.max_header_bytes < 256 {
            return Err(format!(
                "connections.max_header_bytes: at least 256, got {}",
                self.max_header_bytes
            ));
        }
        if self.max_message_bytes < self.max_header_bytes {
            return Err(format!(
                "connections.max_message_bytes: at least max_header_bytes ({}), got {}",
                self.max_header_bytes, self.max_message_bytes
            ));
        }
        Ok(())
    }
}

/// `[limits]`, per worker: how much state a flood can make each worker hold. Beyond a limit,
/// new requests are answered 503 with Retry-After statelessly (counted in `overload_total`,
/// logged at most every 10 s); retransmissions of what was admitted always pass.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Server transactions (each lives up to 64·T1 = 32 s; ~700 bytes with what the proxy
    /// keeps for its forwarded half). A call makes two (INVITE and BYE), so a worker taking R
    /// calls a second holds ~64·R: the default admits ~2,000 calls a second per worker.
    pub transactions: usize,
    /// Server transactions one outside source may hold (backends and `trusted` count toward
    /// `transactions` only): the default lets one source (an SBC, a trunk not listed as
    /// `trusted`) send ~1,000 calls a second to each worker.
    pub per_source: usize,
    /// Dialogs (~500 bytes each); beyond, new INVITEs get 503 rather than pushing out others.
    pub dialogs: usize,
    /// Misrouted datagrams waiting for their worker; beyond, dropped and counted.
    pub handoff_queue: usize,
    /// Heap (MiB, all workers, what the daemon's own code holds) beyond which new requests get
    /// 503, except BYE and CANCEL, which end calls and free memory; 0 = no ceiling. The
    /// counts above bound the tables, this bounds the bytes: a flood of 60 KB requests to a
    /// slow hop would keep ~120 KB per transaction.
    pub memory_mb: usize,
}

impl LimitsSection {
    /// One outside source's share of request bytes in a worker's server transactions: an
    /// eighth of the worker's part of `memory_mb` (what a transaction keeps is about twice its
    /// request, the original and the forwarded copy), so a source sending large messages meets
    /// its share long before the heap ceiling that would refuse everyone.
    pub fn per_source_bytes(&self, workers: usize) -> u64 {
        match self.memory_mb {
            0 => u64::MAX,
            mb => ((mb as u64) << 20) / workers.max(1) as u64 / 8,
        }
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        let memory = match self.memory_mb {
            0 => "no heap ceiling".to_string(),
            mb => format!("new requests 503 beyond {mb} MiB of heap"),
        };
        format!(
            "limits per worker: {} server transactions, {} per outside source, {} dialogs, {} \
             hand-overs queued; {memory}",
            self.transactions, self.per_source, self.dialogs, self.handoff_queue
        )
    }
}

/// The smallest `limits.memory_mb` accepted.
const MIN_MEMORY_MB: usize = 16;

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            transactions: 131_072,
            per_source: 65_536,
            dialogs: 100_000,
            handoff_queue: 8192,
            memory_mb: 1024,
        }
    }
}

/// One `[[backends]]` entry: a static `address`, or an `srv` name whose records (RFC 2782) give
/// the backends, their priorities and weights.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `ip:port` of the backend.
    pub address: Option<SocketAddr>,
    /// A domain whose `_sip._udp` SRV records list the backends (`example.com` is looked up as
    /// `_sip._udp.example.com`; a name starting with `_` is looked up as written). Re-resolved
    /// when the records' TTL runs out.
    pub srv: Option<String>,
    /// Share of new calls relative to the other backends of its priority (0 takes none; default
    /// 1). Static backends only: SRV records carry their own.
    pub weight: Option<u32>,
    /// New calls go to the lowest priority that has a backend up (default 0). Static backends
    /// only: SRV records carry their own.
    pub priority: Option<u16>,
    /// No new calls; calls already on it finish there (set it and send SIGHUP to drain). On an
    /// `srv` entry it drains every backend the records list.
    #[serde(default)]
    pub draining: bool,
    /// `udp` (default), `tcp` or `tls`: how requests reach it (static backends only). Over TCP
    /// and TLS the connection is opened by the worker that owns the backend's address and
    /// reused by all. Health probes stay on UDP.
    #[serde(default = "udp")]
    pub transport: TransportName,
    /// With `transport = "tls"`: the name the backend's certificate must carry (default: its
    /// IP address, which the certificate must then list).
    pub tls_name: Option<String>,
}

fn udp() -> TransportName {
    TransportName::Udp
}

/// One `[[routes]]` entry: requests from the inside whose Request-URI has this `domain`, or whose
/// user part (a `tel:` number) starts with `prefix`, go to `destination`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub domain: Option<String>,
    pub prefix: Option<String>,
    /// `ip`, `ip:port`, `host` or `host:port`; a host is resolved per RFC 3263 (SRV when no
    /// port is given, then A/AAAA).
    pub destination: String,
}

impl RouteSection {
    fn to_route(&self, i: usize) -> Result<StaticRoute, String> {
        match (&self.domain, &self.prefix) {
            (None, None) | (Some(_), Some(_)) => {
                return Err(format!(
                    "routes[{i}]: needs `domain` or `prefix`, one of them"
                ));
            }
            (Some(d), None) => {
                check_domain(d).map_err(|e| format!("routes[{i}].domain: `{d}` {e}"))?;
            }
            (None, Some(p)) => {
                if p.is_empty() || p.bytes().any(|b| b.is_ascii_whitespace() || b == b'@') {
                    return Err(format!(
                        "routes[{i}].prefix: `{p}` is not a user-part prefix"
                    ));
                }
            }
        }
        let destination = self
            .destination
            .parse()
            .map_err(|e| format!("routes[{i}].destination: {e}"))?;
        Ok(StaticRoute {
            domain: self
                .domain
                .as_ref()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
            prefix: self.prefix.clone(),
            destination,
        })
    }
}

/// The largest static weight (the SRV weight field's range, so the two compare).
pub const MAX_WEIGHT: u32 = 65_535;

/// `[dns]`: how `srv` backends are resolved.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Name servers as `ip` or `ip:port`; empty means those of /etc/resolv.conf.
    pub servers: Vec<String>,
    /// Milliseconds one query waits for an answer (two attempts per server).
    pub timeout_ms: u64,
    /// Milliseconds before retrying a lookup that failed; the last good records stay in use.
    pub retry_ms: u64,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            servers: Vec::new(),
            timeout_ms: 2000,
            retry_ms: 5000,
        }
    }
}

impl DnsSection {
    /// The name servers, `None` for the system's.
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("dns.servers[{i}]: `{s}` is not an ip or ip:port"))
            })
            .collect()
    }
}

impl BackendSection {
    /// Checks entry `i` against the entries before it.
    fn validate(&self, i: usize, earlier: &[BackendSection]) -> Result<(), String> {
        match (&self.address, &self.srv) {
            (None, None) => Err(format!("backends[{i}]: needs `address` or `srv`")),
            (Some(_), Some(_)) => Err(format!(
                "backends[{i}]: `address` and `srv` exclude each other; use two entries"
            )),
            (Some(a), None) => {
                if a.ip().is_unspecified() || a.port() == 0 {
                    return Err(format!(
                        "backends[{i}].address: {a} is not a reachable ip:port"
                    ));
                }
                if let Some(j) = earlier.iter().position(|o| o.address == Some(*a)) {
                    return Err(format!(
                        "backends[{i}].address: {a} is already backends[{j}]"
                    ));
                }
                if self.tls_name.is_some() && self.transport != TransportName::Tls {
                    return Err(format!(
                        "backends[{i}].tls_name: only with transport = \"tls\""
                    ));
                }
                if let Some(name) = &self.tls_name
                    && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
                {
                    return Err(format!(
                        "backends[{i}].tls_name: `{name}` is not a DNS name or IP address"
                    ));
                }
                if let Some(w) = self.weight
                    && w > MAX_WEIGHT
                {
                    return Err(format!(
                        "backends[{i}].weight: at most {MAX_WEIGHT}, got {w}"
                    ));
                }
                Ok(())
            }
            (None, Some(name)) => {
                for (field, set) in [
                    ("weight", self.weight.is_some()),
                    ("priority", self.priority.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "backends[{i}].{field}: not with `srv`; the SRV records carry it"
                        ));
                    }
                }
                if self.transport != TransportName::Udp {
                    return Err(format!(
                        "backends[{i}].transport: `srv` backends are reached over udp \
                         (_sip._udp records) in this version"
                    ));
                }
                check_domain(name).map_err(|e| format!("backends[{i}].srv: `{name}` {e}"))?;
                if let Some(j) = earlier.iter().position(|o| o.srv.as_ref() == Some(name)) {
                    return Err(format!(
                        "backends[{i}].srv: {name} is already backends[{j}]"
                    ));
                }
                Ok(())
            }
        }
    }

    /// The static backend's weight.
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// How `check-config` shows the entry.
    pub fn describe(&self) -> String {
        let drain = if self.draining { ", draining" } else { "" };
        match (&self.address, &self.srv) {
            (Some(a), _) => format!(
                "{} {a} (weight {}, priority {}{drain})",
                self.transport.transport(),
                self.weight(),
                self.priority.unwrap_or(0)
            ),
            (None, Some(name)) => format!(
                "SRV {} (priorities and weights from DNS{drain})",
                crate::backend::srv::query_name(name)
            ),
            (None, None) => "nothing".to_string(),
        }
    }
}

/// A domain name as DNS carries it (RFC 1035 §2.3.4: labels of 1 to 63 bytes, 253 in all), of
/// the characters host names and service labels use.
fn check_domain(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a domain name (1 to 253 characters)");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an address; use `address = \"ip:port\"`");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("has a character other than letters, digits, `-` and `_`");
        }
    }
    Ok(())
}

/// `[health]`: OPTIONS probes to every backend.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Milliseconds between probe rounds; 0 turns probing off (backends stay up).
    pub interval_ms: u64,
    /// Milliseconds a probe waits for any response before it counts as failed.
    pub timeout_ms: u64,
    /// Failed probes in a row that mark a backend down.
    pub fall: u32,
    /// Answered probes in a row that mark a down backend up again.
    pub rise: u32,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            interval_ms: 1000,
            timeout_ms: 500,
            fall: 3,
            rise: 2,
        }
    }
}

/// `[timers]`: RFC 3261 §17 T1, T2, T4 in milliseconds.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TimersSection {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl Default for TimersSection {
    fn default() -> Self {
        TimersSection {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

impl TimersSection {
    pub fn timers(&self) -> Timers {
        Timers {
            t1: Duration::from_millis(self.t1_ms),
            t2: Duration::from_millis(self.t2_ms),
            t4: Duration::from_millis(self.t4_ms),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSection {
    /// Packets per second per source address; 0 turns the rate limiter off.
    pub rate_limit_pps: u32,
    /// Packets a source may send at once beyond its rate.
    pub rate_limit_burst: u32,
    /// CIDRs exempt from the rate limit.
    pub allowlist: Vec<String>,
    /// CIDRs dropped in XDP.
    pub blocklist: Vec<String>,
    /// Case-insensitive `User-Agent` substrings that mark a scanner (up to 8, 16 bytes each).
    pub scanner_user_agents: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sip_ports: vec![5060],
            sip_tcp_ports: None,
            listen: None,
            listeners: Vec::new(),
            workers: 0,
            steering: true,
            metrics: "127.0.0.1:9464".to_string(),
            advertise: None,
            record_route: true,
            trusted: Vec::new(),
            domains: Vec::new(),
            flow_secret: None,
            route_address: None,
            path: PathPolicy::Always,
            routes: Vec::new(),
            backends: Vec::new(),
            health: HealthSection::default(),
            dns: DnsSection::default(),
            timers: TimersSection::default(),
            limits: LimitsSection::default(),
            connections: ConnectionsSection::default(),
            tls: TlsSection::default(),
            filter: FilterSection::default(),
            admin: AdminSection::default(),
            capture: CaptureSection::default(),
        }
    }
}

impl Default for FilterSection {
    fn default() -> Self {
        let d = FilterSettings::default();
        Self {
            rate_limit_pps: d.rate_limit_pps,
            rate_limit_burst: d.rate_limit_burst,
            allowlist: Vec::new(),
            blocklist: Vec::new(),
            scanner_user_agents: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks the config; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.filter_settings(&[])?;
        self.tls.validate()?;
        self.validate_listeners()?;
        self.connections.validate()?;
        self.capture.validate()?;
        let listen = self.listen_addr();
        if !self.sip_ports.contains(&listen.port()) {
            return Err(format!(
                "listen: port {} is not one of sip_ports {:?}, so XDP would not see that traffic",
                listen.port(),
                self.sip_ports
            ));
        }
        if self.workers > sip_common::MAX_STEER_CPUS {
            return Err(format!(
                "workers: at most {} are supported, got {}",
                sip_common::MAX_STEER_CPUS,
                self.workers
            ));
        }
        if let Some(metrics) = self.metrics_addr()?
            && self.admin.tokens_file.is_some()
            && metrics == self.admin.listen
        {
            return Err(format!(
                "admin.listen: {metrics} is the metrics endpoint's address too"
            ));
        }
        if self.admin.certificate.is_some() != self.admin.key.is_some() {
            return Err("admin.certificate and admin.key: set both or neither".to_string());
        }
        for (i, b) in self.backends.iter().enumerate() {
            b.validate(i, &self.backends[..i])?;
        }
        let d = &self.dns;
        d.server_addrs()?;
        if d.timeout_ms == 0 || d.retry_ms == 0 {
            return Err(format!(
                "dns: timeout_ms and retry_ms must be above 0, got {} and {}",
                d.timeout_ms, d.retry_ms
            ));
        }
        let h = &self.health;
        if h.interval_ms > 0 && (h.timeout_ms == 0 || h.timeout_ms > h.interval_ms) {
            return Err(format!(
                "health.timeout_ms: must be between 1 and interval_ms ({}), got {}",
                h.interval_ms, h.timeout_ms
            ));
        }
        if h.fall == 0 || h.rise == 0 {
            return Err("health.fall and health.rise: must be at least 1".to_string());
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
            return Err(format!(
                "timers: need 0 < t1_ms <= t2_ms and t4_ms > 0, got t1_ms={} t2_ms={} t4_ms={}",
                t.t1_ms, t.t2_ms, t.t4_ms
            ));
        }
        let l = &self.limits;
        for (field, n) in [
            ("transactions", l.transactions),
            ("per_source", l.per_source),
            ("dialogs", l.dialogs),
            ("handoff_queue", l.handoff_queue),
        ] {
            if n == 0 {
                return Err(format!("limits.{field}: must be at least 1"));
            }
        }
        if l.memory_mb != 0 && l.memory_mb < MIN_MEMORY_MB {
            return Err(format!(
                "limits.memory_mb: at least {MIN_MEMORY_MB} (an idle daemon holds a few MiB), or \
                 0 for no ceiling, got {}",
                l.memory_mb
            ));
        }
        if l.per_source > l.transactions {
            return Err(format!(
                "limits.per_source: at most limits.transactions ({}), got {}",
                l.transactions, l.per_source
            ));
        }
        for (field, addr) in [
            ("advertise", self.advertise),
            ("route_address", self.route_address),
        ] {
            if let Some(a) = addr
                && a.is_unspecified()
            {
                return Err(format!("{field}: {a} is not an address peers can reach"));
            }
        }
        self.policy()?;
        if let Some(secret) = &self.flow_secret
            && secret.len() < MIN_SECRET
        {
            return Err(format!(
                "flow_secret: at least {MIN_SECRET} characters (it signs the flow tokens), got {}",
                secret.len()
            ));
        }
        Ok(())
    }

    /// Who is inside, `domains` and `[[routes]]`, as the proxy takes them.
    pub fn policy(&self) -> Result<Policy, String> {
        let trusted = self
            .trusted
            .iter()
            .enumerate()
            .map(|(i, s)| s.parse::<Cidr>().map_err(|e| format!("trusted[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let domains = self
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| {
                check_domain(d)
                    .map(|()| d.trim_end_matches('.').to_ascii_lowercase())
                    .map_err(|e| format!("domains[{i}]: `{d}` {e}"))
            })
            .collect::<Result<_, _>>()?;
        let routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| r.to_route(i))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            trusted,
            domains,
            routes,
        })
    }

    /// How `check-config` shows the two sides and the routing settings.
    pub fn describe_edge(&self) -> String {
        let list = |v: &[String], none: &str| {
            if v.is_empty() {
                none.to_string()
            } else {
                v.join(", ")
            }
        };
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let key = match (&r.domain, &r.prefix) {
                    (Some(d), _) => format!("domain {d}"),
                    (None, Some(p)) => format!("prefix {p}"),
                    (None, None) => String::new(),
                };
                format!("{key} → {}", r.destination)
            })
            .collect();
        format!(
            "inside: the backends and {}; outside requests for {}; flow tokens signed with {}; \
             Record-Route/Path address {}; Path on outside REGISTERs: {}; static routes: {}",
            list(&self.trusted, "no trusted CIDRs"),
            if self.domains.is_empty() {
                "any domain".to_string()
            } else {
                format!("the domains {}", self.domains.join(", "))
            },
            if self.flow_secret.is_some() {
                "flow_secret"
            } else {
                "a random secret per start (set flow_secret for restarts and clusters)"
            },
            self.route_address
                .map_or("the advertised address".to_string(), |a| a.to_string()),
            match self.path {
                PathPolicy::Always => "always",
                PathPolicy::IfSupported => "if the UA supports it",
                PathPolicy::Off => "off",
            },
            list(&routes, "none"),
        )
    }

    /// The flow-token key: from `flow_secret`, else random (logged by the caller).
    pub fn flow_key(&self) -> std::io::Result<FlowKey> {
        match &self.flow_secret {
            Some(s) => Ok(FlowKey::new(s.as_bytes())),
            None => FlowKey::random(),
        }
    }

    /// The metrics endpoint, `None` when turned off.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics.is_empty() {
            return Ok(None);
        }
        self.metrics
            .parse()
            .map(Some)
            .map_err(|e| format!("metrics: `{}` is not ip:port ({e})", self.metrics))
    }

    /// Every listener: the `[[listeners]]`, or by default UDP on `listen`, TCP on the same
    /// address, and TLS on its port 5061 when `[tls]` has a certificate.
    pub fn listeners(&self) -> Vec<(Transport, SocketAddr)> {
        if self.listeners.is_empty() {
            let udp = self.listen_addr();
            let mut all = vec![(Transport::Udp, udp), (Transport::Tcp, udp)];
            if self.tls.certificate.is_some() {
                all.push((Transport::Tls, SocketAddr::new(udp.ip(), 5061)));
            }
            return all;
        }
        self.listeners
            .iter()
            .map(|l| (l.transport.transport(), l.addr()))
            .collect()
    }

    fn validate_listeners(&self) -> Result<(), String> {
        if self.listeners.is_empty() {
            return Ok(());
        }
        if self.listen.is_some() {
            return Err(
                "listen: not with [[listeners]]; write the UDP address as a listener".to_string(),
            );
        }
        let udp = self
            .listeners
            .iter()
            .filter(|l| l.transport == TransportName::Udp)
            .count();
        if udp != 1 {
            return Err(format!(
                "listeners: exactly one with transport = \"udp\" is needed (the workers' \
                 datagram socket), got {udp}"
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.transport == TransportName::Tls && self.tls.certificate.is_none() {
                return Err(format!(
                    "listeners[{i}].transport: tls needs [tls] certificate and key"
                ));
            }
            if l.port == Some(0) {
                return Err(format!("listeners[{i}].port: must be above 0"));
            }
            let same = self.listeners[..i]
                .iter()
                .any(|o| o.transport == l.transport && o.addr() == l.addr());
            if same {
                return Err(format!("listeners[{i}]: the same as an earlier one"));
            }
        }
        Ok(())
    }

    /// The TCP ports whose SYNs XDP filters: `sip_tcp_ports`, or the TCP and TLS listeners'.
    pub fn tcp_ports(&self) -> Vec<u16> {
        if let Some(p) = &self.sip_tcp_ports {
            return p.clone();
        }
        let mut ports: Vec<u16> = self
            .listeners()
            .iter()
            .filter(|(t, _)| *t != Transport::Udp)
            .map(|(_, a)| a.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The UDP address the workers receive on.
    pub fn listen_addr(&self) -> SocketAddr {
        if let Some(l) = self
            .listeners
            .iter()
            .find(|l| l.transport == TransportName::Udp)
        {
            return l.addr();
        }
        self.listen.unwrap_or_else(|| {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                self.sip_ports.first().copied().unwrap_or(5060),
            )
        })
    }

    /// True if the XDP program steers Call-IDs for this many workers: `steering` is on and
    /// there are two or more. With one, a redirect would only move the kernel's receive work
    /// (the CPUMAP thread builds the packets and runs the UDP stack) onto the worker's own CPU
    /// instead of the CPU that received the frame: on one CPU, 6,300 clean calls/s with it and
    /// 10,000 without (bench-e2e).
    pub fn steers(&self, workers: usize) -> bool {
        self.steering && workers > 1
    }

    /// The filter as the XDP program takes it, steering to `steer_cpus`.
    pub fn filter_settings(&self, steer_cpus: &[u32]) -> Result<FilterSettings, String> {
        let cidrs = |field: &str, list: &[String]| -> Result<Vec<Cidr>, String> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<Cidr>()
                        .map_err(|e| format!("filter.{field}[{i}]: {e}"))
                })
                .collect()
        };
        let f = &self.filter;
        let settings = FilterSettings {
            ports: self.sip_ports.clone(),
            tcp_ports: self.tcp_ports(),
            rate_limit_pps: f.rate_limit_pps,
            rate_limit_burst: f.rate_limit_burst,
            allowlist: cidrs("allowlist", &f.allowlist)?,
            blocklist: cidrs("blocklist", &f.blocklist)?,
            scanners: f.scanner_user_agents.clone(),
            steer_cpus: steer_cpus.to_vec(),
        };
        settings.validate().map_err(|e| e.to_string())?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(s).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen_addr().port(), 5060);
    }

    #[test]
    fn listeners_default_to_udp_and_tcp_and_errors_name_the_field() {
        let c = parse("").unwrap();
        let any: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        assert_eq!(
            c.listeners(),
            [(Transport::Udp, any), (Transport::Tcp, any)]
        );
        let c = parse(
            "[[listeners]]\ntransport = \"udp\"\naddress = \"192.0.2.1\"\n\
             [[listeners]]\ntransport = \"tcp\"\nport = 5070\n",
        )
        .unwrap();
        assert_eq!(
            c.listeners(),
            [
                (Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
                (Transport::Tcp, "0.0.0.0:5070".parse().unwrap())
            ]
        );
        assert_eq!(c.listen_addr(), "192.0.2.1:5060".parse().unwrap());
        let e = parse("[[listeners]]\ntransport = \"tcp\"\n").unwrap_err();
        assert!(e.starts_with("listeners: exactly one"), "{e}");
        let e =
            parse("listen = \"0.0.0.0:5060\"\n[[listeners]]\ntransport = \"udp\"\n").unwrap_err();
        assert!(e.starts_with("listen: not with"), "{e}");
        let e = parse("[[listeners]]\ntransport = \"sctp\"\n").unwrap_err();
        assert!(e.contains("unknown variant `sctp`"), "{e}");
        let e = parse("[connections]\nmax_header_bytes = 100\n").unwrap_err();
        assert!(e.starts_with("connections.max_header_bytes"), "{e}");
        let e = parse("[connections]\nidle_s = 0\n").unwrap_err();
        assert!(e.starts_with("connections.idle_s"), "{e}");
        let e = parse("[[backends]]\naddress = \"192.0.2.5:5060\"\ntls_name = \"a.example\"\n")
            .unwrap_err();
        assert!(e.starts_with("backends[0].tls_name: only with"), "{e}");
        let e = parse(
            "[[backends]]\naddress = \"192.0.2.5:5061\"\ntransport = \"tls\"\ntls_name = \"a b\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("backends[0].tls_name: `a b`"), "{e}");
        let e = parse("[tls]\ntrusted_names = [\"pbx.example\"]\n").unwrap_err();
        assert!(
            e.starts_with("tls.trusted_names: needs tls.client_ca"),
            "{e}"
        );
        let e = parse(
            "[tls]\ncertificate = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\ntrusted_names = [\"a b\"]\n",
        )
        .unwrap_err();
        assert!(e.starts_with("tls.trusted_names[0]: `a b`"), "{e}");
        let e = parse("[tls]\nkey = \"/k.pem\"\n").unwrap_err();
        assert!(e.starts_with("tls.certificate and tls.key"), "{e}");
        let e = parse("[[listeners]]\ntransport = \"udp\"\n[[listeners]]\ntransport = \"tls\"\n")
            .unwrap_err();
        assert!(
            e.starts_with("listeners[1].transport: tls needs [tls]"),
            "{e}"
        );
    }

    #[test]
    fn full_filter_section() {
        let c = parse(
            r#"
            sip_ports = [5060, 5080]
            workers = 2
            [filter]
            rate_limit_pps = 50
            rate_limit_burst = 100
            allowlist = ["192.0.2.0/24"]
            blocklist = ["198.51.100.0/24", "2001:db8::/32"]
            scanner_user_agents = ["friendly-scanner"]
            "#,
        )
        .unwrap();
        let s = c.filter_settings(&[0, 1]).unwrap();
        assert_eq!(s.blocklist.len(), 2);
        assert_eq!(s.ports, vec![5060, 5080]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("[filter]\nblocklist = [\"10.0.0.0/8\", \"nonsense\"]").unwrap_err();
        assert!(e.starts_with("filter.blocklist[1]"), "{e}");
        let e = parse("sip_port = [5060]").unwrap_err();
        assert!(e.contains("unknown field `sip_port`"), "{e}");
        let e = parse("sip_ports = [5060]\nlisten = \"0.0.0.0:5070\"").unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = parse("[filter]\nrate_limit_pps = \"fast\"").unwrap_err();
        assert!(e.contains("rate_limit_pps"), "{e}");
        let e = parse("[[backends]]\naddress = \"10.0.1.2\"").unwrap_err();
        assert!(
            e.contains("address = \"10.0.1.2\"") && e.contains("socket address"),
            "{e}"
        );
        let e = parse("[[backends]]\naddress = \"10.0.1.2:5060\"\nweigth = 2").unwrap_err();
        assert!(e.contains("unknown field `weigth`"), "{e}");
        let two = "[[backends]]\naddress = \"10.0.1.2:5060\"\n";
        let e = parse(&two.repeat(2)).unwrap_err();
        assert!(e.starts_with("backends[1].address"), "{e}");
        let e = parse("[health]\ninterval_ms = 100\ntimeout_ms = 500").unwrap_err();
        assert!(e.starts_with("health.timeout_ms"), "{e}");
        let e = parse("metrics = \"localhost\"").unwrap_err();
        assert!(e.starts_with("metrics:"), "{e}");
        let e = parse("[admin]\ncertificate = \"/etc/admin.pem\"").unwrap_err();
        assert!(e.starts_with("admin.certificate and admin.key"), "{e}");
        let e = parse("[timers]\nt1_ms = 0").unwrap_err();
        assert!(e.starts_with("timers:"), "{e}");
        let e = parse("[limits]\ndialogs = 0").unwrap_err();
        assert!(e.starts_with("limits.dialogs"), "{e}");
        let e = parse("[limits]\ntransactions = 100\nper_source = 200").unwrap_err();
        assert!(e.starts_with("limits.per_source"), "{e}");
        let e = parse("[limits]\nmemory_mb = 8").unwrap_err();
        assert!(e.starts_with("limits.memory_mb: at least 16"), "{e}");
        assert_eq!(
            parse("[limits]\nmemory_mb = 0").unwrap().limits.memory_mb,
            0
        );
    }

    #[test]
    fn srv_backends_and_their_errors() {
        let c = parse(
            r#"
            [[backends]]
            srv = "example.com"
            [[backends]]
            address = "192.0.2.9:5060"
            priority = 100
            [dns]
            servers = ["192.0.2.53", "192.0.2.54:5353"]
            "#,
        )
        .unwrap();
        assert_eq!(c.backends[0].srv.as_deref(), Some("example.com"));
        assert_eq!(
            c.dns.server_addrs().unwrap(),
            [
                "192.0.2.53:53".parse().unwrap(),
                "192.0.2.54:5353".parse().unwrap()
            ]
        );
        for (text, start) in [
            (
                "[[backends]]\nweight = 2",
                "backends[0]: needs `address` or `srv`",
            ),
            (
                "[[backends]]\nsrv = \"a.example\"\naddress = \"192.0.2.1:5060\"",
                "backends[0]: `address` and `srv` exclude",
            ),
            (
                "[[backends]]\nsrv = \"a.example\"\nweight = 2",
                "backends[0].weight: not with `srv`",
            ),
            (
                "[[backends]]\nsrv = \"a.example\"\npriority = 2",
                "backends[0].priority: not with `srv`",
            ),
            (
                "[[backends]]\nsrv = \"a..example\"",
                "backends[0].srv: `a..example` has",
            ),
            (
                "[[backends]]\nsrv = \"a example\"",
                "backends[0].srv: `a example` has",
            ),
            (
                "[[backends]]\nsrv = \"192.0.2.1\"",
                "backends[0].srv: `192.0.2.1` is an",
            ),
            (
                "[[backends]]\nsrv = \"a.example\"\n[[backends]]\nsrv = \"a.example\"",
                "backends[1].srv: a.example is already backends[0]",
            ),
            (
                "[[backends]]\naddress = \"192.0.2.1:5060\"\nweight = 70000",
                "backends[0].weight: at most 65535",
            ),
            ("[dns]\nservers = [\"ns1\"]", "dns.servers[0]: `ns1`"),
            ("[dns]\nretry_ms = 0", "dns: timeout_ms and retry_ms"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(start), "{text}: {e}");
        }
    }

    #[test]
    fn edge_routing_settings_and_their_errors() {
        let c = parse(
            r#"
            trusted = ["10.0.0.0/8", "2001:db8::/32"]
            domains = ["example.com"]
            flow_secret = "0123456789abcdef-cluster"
            route_address = "198.51.100.1"
            path = "if-supported"
            [[routes]]
            domain = "Carrier.Example."
            destination = "192.0.2.50:5060"
            [[routes]]
            prefix = "+44"
            destination = "uk.trunk.example"
            "#,
        )
        .unwrap();
        let p = c.policy().unwrap();
        assert_eq!(p.trusted.len(), 2);
        assert_eq!(p.routes[0].domain.as_deref(), Some("carrier.example"));
        assert_eq!(c.path, PathPolicy::IfSupported);
        for (text, start) in [
            ("trusted = [\"10.0.0.0/33\"]", "trusted[0]:"),
            ("domains = [\"a b\"]", "domains[0]: `a b`"),
            ("flow_secret = \"short\"", "flow_secret: at least 16"),
            ("route_address = \"0.0.0.0\"", "route_address: 0.0.0.0"),
            ("path = \"sometimes\"", "unknown variant `sometimes`"),
            (
                "[[routes]]\ndestination = \"192.0.2.1\"",
                "routes[0]: needs `domain` or `prefix`",
            ),
            (
                "[[routes]]\ndomain = \"a.example\"\nprefix = \"1\"\ndestination = \"192.0.2.1\"",
                "routes[0]: needs `domain` or `prefix`",
            ),
            (
                "[[routes]]\nprefix = \"+1\"\ndestination = \"not a host\"",
                "routes[0].destination: `not a host`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(start), "{text}: {e}");
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(
            r#"
            sip_ports = [5060]
            listen = "0.0.0.0:5060"
            workers = 0
            metrics = "127.0.0.1:9464"
            [[backends]]
            address = "10.0.1.2:5060"
            weight = 1
            [health]
            interval_ms = 1000
            [filter]
            rate_limit_pps = 200
            rate_limit_burst = 400
            allowlist = []
            blocklist = ["198.51.100.0/24"]
            scanner_user_agents = ["friendly-scanner", "sipvicious", "sipcli"]
            "#,
        )
        .unwrap();
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].weight(), 1);
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(c.record_route);
    }
}
