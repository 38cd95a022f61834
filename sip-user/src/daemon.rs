//! `run(options, shutdown)`: load and configure the XDP program, start the workers, attach,
//! publish stats, and undo it all when `shutdown` completes.

use std::{
    future::Future,
    path::{Path, PathBuf},
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
    config::Config,
    ebpf::{FastPath, LoadError},
    stats::DEFAULT_PIN_ROOT,
    workers::{WorkerError, Workers},
};

/// How often the workers' counters are published to the pinned `WORKERS` map.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

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
}

impl RunOptions {
    pub fn new(iface: &str, mode: XdpModeChoice, config: Config) -> Self {
        Self {
            iface: iface.to_string(),
            mode,
            config,
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
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
    #[error("interface `{0}` does not exist (in this network namespace)")]
    NoInterface(String),
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
    } = options;
    config.validate().map_err(DaemonError::Config)?;
    if !Path::new("/sys/class/net").join(&iface).exists() && if_index(&iface).is_none() {
        return Err(DaemonError::NoInterface(iface));
    }
    let cpus = worker_cpus(config.workers)?;
    let steer: Vec<u32> = if config.steering {
        cpus.clone()
    } else {
        Vec::new()
    };
    let settings = config
        .filter_settings(&steer)
        .map_err(DaemonError::Config)?;

    let mut fast_path = FastPath::load()?;
    fast_path.apply(&settings)?;
    for (stage, n) in fast_path.verified_instructions() {
        log::info!("XDP stage {stage} verified ({n} instructions processed by the verifier)");
    }
    let pin_dir = pin_root.join(&iface);
    prepare_pin_dir(&pin_root, &pin_dir)?;
    let result = run_attached(
        &mut fast_path,
        &iface,
        mode,
        &config,
        &cpus,
        &pin_dir,
        shutdown,
    )
    .await;
    if let Err(e) = std::fs::remove_dir_all(&pin_dir) {
        log::warn!("removing {}: {e}", pin_dir.display());
    }
    result
}

async fn run_attached(
    fast_path: &mut FastPath,
    iface: &str,
    mode: XdpModeChoice,
    config: &Config,
    cpus: &[u32],
    pin_dir: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    fast_path.pin_state(pin_dir)?;
    let workers_map = pin_workers_map(fast_path, pin_dir)?;
    let log_drain = start_log_drain(fast_path);

    let cancel = CancellationToken::new();
    let workers = Workers::start(config.listen_addr(), cpus, cancel.clone())?;
    log::info!(
        "{} workers on CPUs {:?}, listening on {}, steering {}",
        cpus.len(),
        cpus,
        config.listen_addr(),
        if config.steering { "on" } else { "off" }
    );

    let attached = attach(fast_path, iface, mode);
    let link = match attached {
        Ok(link) => link,
        Err(e) => {
            cancel.cancel();
            workers.join();
            return Err(e);
        }
    };

    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    let mut workers_map = workers_map;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = publish.tick() => publish_workers(&mut workers_map, &workers.snapshot(true)),
        }
    }
    log::info!("shutting down: detaching XDP from {iface}");
    if let Err(e) = fast_path.detach(link) {
        log::error!("detaching XDP from {iface}: {e}");
    }
    cancel.cancel();
    let final_stats = workers.snapshot(false);
    workers.join();
    publish_workers(&mut workers_map, &final_stats);
    if let Some(drain) = log_drain {
        drain.abort();
    }
    Ok(())
}

fn attach(
    fast_path: &mut FastPath,
    iface: &str,
    mode: XdpModeChoice,
) -> Result<aya::programs::xdp::XdpLinkId, DaemonError> {
    let link = match mode {
        XdpModeChoice::Native => fast_path.attach(iface, XdpMode::Driver)?,
        XdpModeChoice::Skb => fast_path.attach(iface, XdpMode::Skb)?,
        XdpModeChoice::Auto => match fast_path.attach(iface, XdpMode::Driver) {
            Ok(link) => link,
            Err(e) => {
                log::warn!("native XDP unavailable on {iface} ({e}); falling back to skb mode");
                fast_path.attach(iface, XdpMode::Skb)?
            }
        },
    };
    log::info!("XDP attached to {iface}");
    Ok(link)
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
    if root.starts_with(bpffs) && !is_bpffs(bpffs) {
        mount_bpffs(bpffs).map_err(err(bpffs))?;
    }
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs(path: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: all arguments are valid C strings or null (no mount data).
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn if_index(iface: &str) -> Option<u32> {
    let c = std::ffi::CString::new(iface).ok()?;
    // SAFETY: `c` is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
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
