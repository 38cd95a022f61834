//! `run(options, shutdown)`: load and configure the XDP program, start the backend pool
//! keeper, the workers and the metrics endpoint, attach, publish stats, reload on SIGHUP, and
//! undo it all when `shutdown` completes.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya::{
    maps::{Array, MapData},
    programs::XdpMode,
};
use sip_common::{WorkerStats, map_names};
use tokio::io::{Interest, unix::AsyncFd};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::keeper::{KeeperError, KeeperSetup, PoolKeeper},
    control::admin::{
        self, AdminState,
        auth::{Tokens, TokensError},
        controller::{Controller, ControllerSetup, Started},
        https::TlsListener,
    },
    control::config::Config,
    control::ebpf::{FastPath, LoadError},
    control::filter::FilterSettings,
    control::metrics::{Metrics, WorkerCounters},
    control::stats::DEFAULT_PIN_ROOT,
    proxy::{ProxyConfig, flow::FlowKey, rewrite::Identity},
    sip::transaction::Admission,
    sip::{dialog::Limits, peer::Transport},
    sys,
    transport::{
        table::TlsSetup,
        tls::{self, TlsError},
    },
    worker::StreamSetup,
    worker::{WorkerError, WorkerSetup, Workers},
};

/// How often the workers' counters are published to the pinned `WORKERS` map.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// Retry-After of the 503 sent when no backend is up.
const RETRY_AFTER_SECS: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to skb mode with a logged reason.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on any interface, slower.
    Skb,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub iface: String,
    pub mode: XdpModeChoice,
    pub config: Config,
    /// Maps are pinned under `<pin_root>/<iface>/`.
    pub pin_root: PathBuf,
    /// The file `config` came from: SIGHUP reads it again.
    pub config_path: Option<PathBuf>,
}

impl RunOptions {
    pub fn new(iface: &str, mode: XdpModeChoice, config: Config) -> Self {
        Self {
            iface: iface.to_string(),
            mode,
            config,
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
            config_path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Workers(#[from] WorkerError),
    #[error("listing online CPUs: {0}")]
    Cpus(String),
    #[error("preparing the pin folder {path}: {source}")]
    PinDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "--pin-root {0} is not on a bpf filesystem, and maps can only be pinned on one (the \
         kernel answers EPERM): use a folder under /sys/fs/bpf, or mount one there first \
         (mount -t bpf bpf <folder>)"
    )]
    PinRootNotBpffs(String),
    #[error("interface `{0}` does not exist (in this network namespace)")]
    NoInterface(String),
    #[error(
        "interface `{0}` has no IPv4 address to write in Via and Record-Route: set `advertise` \
         or a `listen` address"
    )]
    NoAddress(String),
    #[error(transparent)]
    Backends(#[from] KeeperError),
    #[error("making a random flow_secret from /dev/urandom: {0}")]
    Random(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("binding {what} to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the fast path on `options.iface` until `shutdown` completes.
pub async fn run(
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let RunOptions {
        iface,
        mode,
        config,
        pin_root,
        config_path,
    } = options;
    config.validate().map_err(DaemonError::Config)?;
    sys::heap::configure_for_daemon();
    if !Path::new("/sys/class/net").join(&iface).exists() && sys::if_index(&iface).is_none() {
        return Err(DaemonError::NoInterface(iface));
    }
    let cpus = worker_cpus(config.workers)?;
    let steer: Vec<u32> = if config.steers(cpus.len()) {
        cpus.clone()
    } else {
        Vec::new()
    };
    let settings = config
        .filter_settings(&steer)
        .map_err(DaemonError::Config)?;

    let mut fast_path = FastPath::load()?;
    fast_path.apply(&settings)?;
    for (program, n) in fast_path.verified_instructions() {
        log::info!("XDP program {program} verified ({n} instructions processed by the verifier)");
    }
    let pin_dir = pin_root.join(&iface);
    prepare_pin_dir(&pin_root, &pin_dir)?;
    let attached = Attached {
        iface: &iface,
        mode,
        config: &config,
        filter: settings,
        config_path: config_path.as_deref(),
        cpus: &cpus,
        pin_root: &pin_root,
        pin_dir: &pin_dir,
    };
    let result = run_attached(&mut fast_path, attached, shutdown).await;
    if let Err(e) = std::fs::remove_dir_all(&pin_dir) {
        log::warn!("removing {}: {e}", pin_dir.display());
    }
    result
}

/// What `run_attached` works with.
struct Attached<'a> {
    iface: &'a str,
    mode: XdpModeChoice,
    config: &'a Config,
    /// The filter as applied at load.
    filter: FilterSettings,
    config_path: Option<&'a Path>,
    cpus: &'a [u32],
    pin_root: &'a Path,
    pin_dir: &'a Path,
}

async fn run_attached(
    fast_path: &mut FastPath,
    a: Attached<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let config = a.config;
    // A bad tokens file stops the start, as a bad config does.
    let tokens = match &config.admin.tokens_file {
        Some(path) => Some(Tokens::from_file(path)?),
        None => None,
    };
    // So does a bad admin certificate: the API would otherwise come up without HTTPS.
    let admin_tls = match (&config.admin.tokens_file, config.admin.tls_files()) {
        (Some(_), Some(files)) => Some(tls::server_config(&files)?),
        _ => None,
    };
    let (admin_tls_tx, admin_tls_rx) = admin_tls.map(tokio::sync::watch::channel).unzip();
    fast_path.pin_state(a.pin_dir)?;
    let workers_map = pin_workers_map(fast_path, a.pin_dir)?;
    let log_drain = start_log_drain(fast_path);

    let listen = config.listen_addr();
    let advertise = advertise_address(config, a.iface)?;
    let metrics = Arc::new(Metrics::new());
    let cancel = CancellationToken::new();

    let keeper_setup = KeeperSetup {
        backends: config.backends.clone(),
        health: config.health.clone(),
        dns: config.dns.clone(),
        sip_ports: config.sip_ports.clone(),
        ipv6: listen.is_ipv6(),
        probe_from: SocketAddr::new(advertise, 0),
    };
    let (keeper, pool_rx) = PoolKeeper::new(keeper_setup, metrics.clone()).await?;
    let (keeper_tx, keeper_rx) = tokio::sync::mpsc::channel(16);
    let keeper = tokio::spawn(keeper.run(keeper_rx, cancel.clone()));

    if config.flow_secret.is_none() {
        log::warn!(
            "flow_secret is not set: flow tokens are signed with a random secret, so calls and \
             registrations through this node do not survive its restart, and other nodes \
             refuse its tokens"
        );
    }
    let flow_key = config.flow_key().map_err(DaemonError::Random)?;
    let tls_config = match config.tls.files() {
        Some(files) => Some(tls::server_config(&files)?),
        None => None,
    };
    let (tls_tx, tls_rx) = tokio::sync::watch::channel(tls_config);
    // For connections we open over TLS (backends, `transport=tls` next hops): without CA
    // certificates that is an error only if a backend needs it.
    let wants_client = config.tls.server_ca.is_some()
        || config
            .backends
            .iter()
            .any(|b| b.transport.transport() == Transport::Tls);
    let tls_client =
        match tls::client_config(config.tls.server_ca.as_deref(), config.tls.min_version) {
            Ok(c) => Some(c),
            Err(e) if wants_client => return Err(e.into()),
            Err(e) => {
                log::warn!("no TLS toward next hops: {e}");
                None
            }
        };
    let stream_listeners: Vec<(Transport, SocketAddr)> = config
        .listeners()
        .into_iter()
        .filter(|(t, _)| *t != Transport::Udp)
        .collect();
    let mut proxy = proxy_config(config, advertise, listen.port(), flow_key, a.cpus.len())?;
    for (t, addr) in stream_listeners.iter().rev() {
        // The first listener of a transport is the one our Via and Record-Route name.
        proxy.identity = proxy.identity.with_port(*t, addr.port());
    }
    let capture = config.capture.settings().map(|settings| {
        // Our side of each copy: the advertised address, on each transport's listening port.
        let port_of = |t: Transport| {
            stream_listeners
                .iter()
                .find(|(lt, _)| *lt == t)
                .map_or(listen.port(), |(_, a)| a.port())
        };
        log::info!(
            "capturing {}% of calls as HEPv3 to {} (at most {} messages/s)",
            settings.sample_percent,
            settings.collector,
            settings.max_per_second
        );
        let local = Transport::ALL.map(|t| SocketAddr::new(advertise, port_of(t)));
        (settings, local)
    });
    let setup = WorkerSetup {
        capture,
        addr: listen,
        cpus: a.cpus.to_vec(),
        proxy,
        pool: pool_rx.clone(),
        metrics: metrics.clone(),
        dns: config.dns.clone(),
        sip_ports: config.sip_ports.clone(),
        handoff_queue: config.limits.handoff_queue,
        stream_listeners: stream_listeners.clone(),
        streams: StreamSetup {
            settings: config.connections.settings(),
            max_per_source: config.connections.per_source,
            tls: TlsSetup {
                server: tls_rx,
                client: tls_client,
                handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
                trusted_names: config
                    .tls
                    .trusted_server_names()
                    .map_err(DaemonError::Config)?
                    .into(),
            },
        },
    };
    let workers = Workers::start(setup, cancel.clone())?;
    let scrape = Scrape {
        pin_root: a.pin_root.to_path_buf(),
        iface: a.iface.to_string(),
        workers: workers.counters.clone(),
    };
    let tokens = Arc::new(std::sync::RwLock::new(tokens.unwrap_or_default()));
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel(16);
    let admin_state = AdminState {
        tokens: tokens.clone(),
        control: control_tx,
        keeper: keeper_tx.clone(),
        pool: pool_rx,
        workers: workers.queues.clone(),
        cpus: a.cpus.to_vec(),
        metrics: metrics.clone(),
    };
    let admin = AdminStart {
        state: admin_state,
        tls: admin_tls_rx,
    };
    let servers = match start_http(config, metrics.clone(), scrape, admin, &cancel).await {
        Ok(servers) => servers,
        Err(e) => {
            cancel.cancel();
            workers.join();
            return Err(e);
        }
    };
    let streams: String = stream_listeners
        .iter()
        .map(|(t, addr)| format!(", {t} {addr}"))
        .collect();
    log::info!(
        "{} workers on CPUs {:?}, listening on udp {listen}{streams} as {advertise}, steering {}",
        a.cpus.len(),
        a.cpus,
        match (config.steering, a.filter.steer_cpus.is_empty()) {
            (false, _) => "off",
            (true, true) => "off (one worker: nothing to steer to)",
            (true, false) => "on",
        },
    );

    let (link, xdp_mode) = match attach(fast_path, a.iface, a.mode) {
        Ok(attached) => attached,
        Err(e) => {
            cancel.cancel();
            workers.join();
            return Err(e);
        }
    };
    metrics.set_xdp_attached(a.iface, true);
    metrics.set_limits(&config.limits);

    let mut controller = Controller::new(ControllerSetup {
        identity: Started {
            iface: a.iface.to_string(),
            xdp_mode,
            cpus: a.cpus.to_vec(),
            started: std::time::Instant::now(),
            started_at: std::time::SystemTime::now(),
        },
        config: config.clone(),
        config_path: a.config_path.map(Path::to_path_buf),
        filter: a.filter,
        keeper: keeper_tx,
        tls: tls_tx,
        admin_tls: admin_tls_tx,
        tokens,
    });
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    let mut workers_map = workers_map;
    let mut hangup = hangup_signal();
    tokio::pin!(shutdown);
    loop {
        let expiry = controller.next_expiry();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = publish.tick() => publish_workers(&mut workers_map, &workers.snapshot(true)),
            Some(()) = next_hangup(&mut hangup) => {
                controller.reload(fast_path, "SIGHUP").await;
            }
            Some(control) = control_rx.recv() => controller.handle(fast_path, control).await,
            _ = sleep_until(expiry), if expiry.is_some() => {
                controller.expire(fast_path, std::time::Instant::now());
            }
        }
    }
    log::info!("shutting down: detaching XDP from {}", a.iface);
    match fast_path.detach(link) {
        Ok(()) => metrics.set_xdp_attached(a.iface, false),
        Err(e) => log::error!("detaching XDP from {}: {e}", a.iface),
    }
    cancel.cancel();
    let final_stats = workers.snapshot(false);
    workers.join();
    publish_workers(&mut workers_map, &final_stats);
    let _ = keeper.await;
    for server in servers {
        let _ = server.await;
    }
    if let Some(drain) = log_drain {
        drain.abort();
    }
    Ok(())
}

fn proxy_config(
    config: &Config,
    advertise: IpAddr,
    port: u16,
    flow_key: FlowKey,
    workers: usize,
) -> Result<ProxyConfig, DaemonError> {
    let timers = config.timers.timers();
    let host = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let route_host = host(config.route_address.unwrap_or(advertise));
    Ok(ProxyConfig {
        identity: Identity::with_route_host(&host(advertise), port, &route_host),
        record_route: config.record_route,
        supported: Vec::new(),
        timers,
        admission: Admission {
            max: config.limits.transactions,
            per_source: config.limits.per_source,
            per_source_bytes: config.limits.per_source_bytes(workers),
        },
        max_dialogs: config.limits.dialogs,
        memory_ceiling: match config.limits.memory_mb {
            0 => usize::MAX,
            mb => mb << 20,
        },
        dialog_limits: Limits {
            calling: timers.timeout(),
            disconnecting: timers.timeout(),
            ack: timers.timeout(),
            ..Limits::default()
        },
        retry_after: RETRY_AFTER_SECS,
        worker: 0,
        policy: config.policy().map_err(DaemonError::Config)?,
        flow_key,
        path: config.path,
    })
}

/// The address peers reach us at: `advertise`, else the listen address, else the interface's
/// first IPv4 address.
fn advertise_address(config: &Config, iface: &str) -> Result<IpAddr, DaemonError> {
    if let Some(a) = config.advertise {
        return Ok(a);
    }
    let listen = config.listen_addr().ip();
    if !listen.is_unspecified() {
        return Ok(listen);
    }
    sys::first_ipv4(iface).ok_or_else(|| DaemonError::NoAddress(iface.to_string()))
}

/// What a scrape reads besides the metrics the daemon updates itself.
struct Scrape {
    pin_root: PathBuf,
    iface: String,
    workers: Vec<Arc<WorkerCounters>>,
}

/// What the admin API starts with.
struct AdminStart {
    state: AdminState,
    /// The HTTPS settings (`admin.certificate`), replaced on reload; plain HTTP without.
    tls: Option<tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>>,
}

/// Starts the `/metrics` endpoint and, with a tokens file, the admin API.
async fn start_http(
    config: &Config,
    metrics: Arc<Metrics>,
    scrape: Scrape,
    admin: AdminStart,
    cancel: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, DaemonError> {
    let bind = |what: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Bind { what, addr, source })
    };
    let mut servers = Vec::new();
    if let Some(addr) = config.metrics_addr().map_err(DaemonError::Config)? {
        let listener = bind("the metrics endpoint", addr).await?;
        log::info!("metrics on http://{addr}/metrics");
        let refresh: admin::Refresh = Arc::new(move |m: &Metrics| {
            m.set_workers(&scrape.workers);
            m.set_heap();
            match crate::control::stats::read(&scrape.pin_root, &scrape.iface) {
                Ok(s) => m.set_kernel(&s),
                Err(e) => log::debug!("metrics: kernel counters: {e}"),
            }
        });
        let router = admin::metrics_router(metrics, refresh);
        servers.push(tokio::spawn(admin::serve(listener, router, cancel.clone())));
    }
    match &config.admin.tokens_file {
        Some(path) => {
            let addr = config.admin.listen;
            let listener = bind("the admin API", addr).await?;
            let n = admin.state.tokens.read().map_or(0, |t| t.len());
            let router = admin::router(Arc::new(admin.state));
            let scheme = if admin.tls.is_some() { "https" } else { "http" };
            log::info!(
                "admin API on {scheme}://{addr}/api/v1/ ({n} tokens from {})",
                path.display()
            );
            match admin.tls {
                Some(tls) => {
                    let listener =
                        TlsListener::new(listener, tls, cancel.clone()).map_err(|source| {
                            DaemonError::Bind {
                                what: "the admin API",
                                addr,
                                source,
                            }
                        })?;
                    servers.push(tokio::spawn(admin::serve(listener, router, cancel.clone())));
                }
                None => {
                    if !addr.ip().is_loopback() {
                        log::warn!(
                            "admin API on {addr} without TLS: its bearer tokens cross the \
                             network in the clear (set admin.certificate and admin.key)"
                        );
                    }
                    servers.push(tokio::spawn(admin::serve(listener, router, cancel.clone())));
                }
            }
        }
        None => log::info!("admin API off (set admin.tokens_file to turn it on)"),
    }
    Ok(servers)
}

fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("cannot listen for SIGHUP, reloads are off: {e}");
            None
        }
    }
}

async fn next_hangup(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Attaches in the mode asked for; returns the link and the mode it got (`driver`, `skb`).
fn attach(
    fast_path: &mut FastPath,
    iface: &str,
    mode: XdpModeChoice,
) -> Result<(aya::programs::xdp::XdpLinkId, &'static str), DaemonError> {
    let attached = match mode {
        XdpModeChoice::Native => (fast_path.attach(iface, XdpMode::Driver)?, "driver"),
        XdpModeChoice::Skb => (fast_path.attach(iface, XdpMode::Skb)?, "skb"),
        XdpModeChoice::Auto => match fast_path.attach(iface, XdpMode::Driver) {
            Ok(link) => (link, "driver"),
            Err(e) => {
                log::warn!("native XDP unavailable on {iface} ({e}); falling back to skb mode");
                (fast_path.attach(iface, XdpMode::Skb)?, "skb")
            }
        },
    };
    log::info!("XDP attached to {iface} in {} mode", attached.1);
    Ok(attached)
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The first `workers` online CPUs (all when 0). The reuseport selector indexes sockets by CPU
/// id, so the CPUs must be 0..N.
fn worker_cpus(workers: usize) -> Result<Vec<u32>, DaemonError> {
    let online =
        aya::util::online_cpus().map_err(|(what, e)| DaemonError::Cpus(format!("{what}: {e}")))?;
    let n = if workers == 0 {
        online.len()
    } else {
        workers.min(online.len())
    };
    let n = n.min(sip_common::MAX_STEER_CPUS);
    let cpus: Vec<u32> = (0..n as u32).collect();
    if cpus.iter().any(|c| !online.contains(c)) {
        return Err(DaemonError::Cpus(format!(
            "workers run on CPUs 0..{n}, but the online CPUs are {online:?}"
        )));
    }
    Ok(cpus)
}

fn prepare_pin_dir(root: &Path, dir: &Path) -> Result<(), DaemonError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| DaemonError::PinDir { path, source }
    };
    let bpffs = Path::new("/sys/fs/bpf");
    if root.starts_with(bpffs) && !sys::is_bpffs(bpffs) {
        sys::mount_bpffs(bpffs).map_err(err(bpffs))?;
    }
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    // BPF_OBJ_PIN anywhere else fails with a bare EPERM: say why before trying.
    if !sys::is_bpffs(dir) {
        return Err(DaemonError::PinRootNotBpffs(root.display().to_string()));
    }
    Ok(())
}

fn pin_workers_map(
    fast_path: &mut FastPath,
    pin_dir: &Path,
) -> Result<Array<MapData, WorkerStats>, DaemonError> {
    let name = map_names::WORKERS;
    let map = fast_path
        .ebpf_mut()
        .take_map(name)
        .ok_or(LoadError::MissingMap(name))?;
    let path = pin_dir.join(name);
    let _ = std::fs::remove_file(&path);
    map.pin(&path).map_err(|source| LoadError::Pin {
        map: name,
        path: path.display().to_string(),
        source,
    })?;
    Ok(Array::try_from(map).map_err(|source| LoadError::Map { map: name, source })?)
}

fn publish_workers(map: &mut Array<MapData, WorkerStats>, stats: &[WorkerStats]) {
    for (i, s) in stats.iter().enumerate() {
        if let Err(e) = map.set(i as u32, s, 0) {
            log::warn!("publishing worker stats: {e}");
            return;
        }
    }
}

/// Forwards the XDP program's `aya-log` records (rare: it logs only control-plane problems) to
/// this process's logger.
fn start_log_drain(fast_path: &mut FastPath) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(fast_path.ebpf_mut()) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("no log drain for the XDP program: {e}");
            return None;
        }
    };
    // SAFETY: the AsyncFd owns the logger, and with it the ring buffer fd, until it is dropped.
    let fd = match unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("no log drain for the XDP program: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let mut fd = fd;
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

#[cfg(test)]
mod pin_dir_tests {
    use super::*;

    #[test]
    fn a_pin_root_off_bpffs_is_refused_with_the_reason() {
        let root = std::env::temp_dir().join(format!("sfp-pin-root-{}", std::process::id()));
        let e = prepare_pin_dir(&root, &root.join("eth0")).unwrap_err();
        let _ = std::fs::remove_dir_all(&root);
        let text = e.to_string();
        assert!(matches!(e, DaemonError::PinRootNotBpffs(_)), "{text}");
        assert!(text.contains("not on a bpf filesystem"), "{text}");
        assert!(text.contains("/sys/fs/bpf"), "{text}");
    }
}
