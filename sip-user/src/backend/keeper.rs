//! Keeps the authoritative backend pool: sends the OPTIONS probes ([`crate::backend::probe`])
//! from its own socket, looks up `srv` backends again when their TTL runs out
//! ([`crate::backend::dns`]), applies probe results, lookups and config reloads, and publishes
//! every change to the workers through a `watch` channel (each worker keeps its own copy, so
//! picking a backend takes no lock).

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{
        Member, Pool,
        dns::{DnsError, Resolved, SrvResolver},
        health::State,
        probe::{ProbeResult, Prober},
        srv,
    },
    control::config::{BackendSection, DnsSection, HealthSection},
    control::metrics::Metrics,
};

/// A reloaded `[[backends]]`, `[health]` and `[dns]`.
#[derive(Debug, Clone)]
pub struct Reload {
    pub backends: Vec<BackendSection>,
    pub health: HealthSection,
    pub dns: DnsSection,
}

/// A backend's draining and weight as the admin API set them, over what the config says; kept
/// across reloads until set again or the daemon restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Override {
    pub draining: Option<bool>,
    pub weight: Option<f64>,
}

/// What the keeper is told.
#[derive(Debug)]
pub enum KeeperCommand {
    Reload(Reload),
    /// Drain, undrain or weigh the backend `address` names (`ip:port`, or an IP that one
    /// backend has); the reply is the backend's address, or why not.
    Override {
        address: String,
        change: Override,
        reply: oneshot::Sender<Result<SocketAddr, OverrideError>>,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// What the keeper starts from.
pub struct KeeperSetup {
    pub backends: Vec<BackendSection>,
    pub health: HealthSection,
    pub dns: DnsSection,
    /// The resolver never queries from these local ports (XDP treats them as SIP).
    pub sip_ports: Vec<u16>,
    /// Whether the proxy can reach IPv6 backends (it listens on IPv6).
    pub ipv6: bool,
    /// Where the probes come from (port 0: any).
    pub probe_from: SocketAddr,
}

type Lookup = (String, Result<Resolved, DnsError>);

pub struct PoolKeeper {
    pool: Pool,
    sections: Vec<BackendSection>,
    health: HealthSection,
    dns: DnsSection,
    sip_ports: Vec<u16>,
    ipv6: bool,
    /// Built when the config has an `srv` backend.
    resolver: Option<Arc<SrvResolver>>,
    /// The last good answer per `srv` name.
    resolved: HashMap<String, Vec<Member>>,
    /// When to look each `srv` name up again.
    refresh: HashMap<String, Instant>,
    in_flight: HashSet<String>,
    lookups: JoinSet<Lookup>,
    prober: Prober,
    socket: UdpSocket,
    publish: watch::Sender<Arc<Pool>>,
    metrics: Arc<Metrics>,
    overrides: HashMap<SocketAddr, Override>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("binding the health-check socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("DNS for the srv backends: {0}")]
    Dns(#[from] DnsError),
}

impl PoolKeeper {
    /// Binds the probing socket, looks up the `srv` backends (waiting up to two query timeouts
    /// for them, so the first calls already spread over them) and publishes the first pool.
    pub async fn new(
        setup: KeeperSetup,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, watch::Receiver<Arc<Pool>>), KeeperError> {
        let bind_error = |source| KeeperError::Bind {
            addr: setup.probe_from,
            source,
        };
        let socket = UdpSocket::bind(setup.probe_from)
            .await
            .map_err(bind_error)?;
        let prober = Prober::new(socket.local_addr().map_err(bind_error)?);
        let (publish, workers) = watch::channel(Arc::new(Pool::default()));
        let mut keeper = PoolKeeper {
            pool: Pool::default(),
            sections: setup.backends,
            health: setup.health,
            dns: setup.dns,
            sip_ports: setup.sip_ports,
            ipv6: setup.ipv6,
            resolver: None,
            resolved: HashMap::new(),
            refresh: HashMap::new(),
            in_flight: HashSet::new(),
            lookups: JoinSet::new(),
            prober,
            socket,
            publish,
            metrics,
            overrides: HashMap::new(),
        };
        keeper.resolver = keeper.build_resolver()?;
        keeper.schedule_all();
        keeper.start_due_lookups(Instant::now());
        let first_wait = 2 * Duration::from_millis(keeper.dns.timeout_ms);
        let _ = tokio::time::timeout(first_wait, async {
            while let Some(joined) = keeper.lookups.join_next().await {
                if let Ok((name, result)) = joined {
                    keeper.on_lookup(name, result, false);
                }
            }
        })
        .await;
        keeper.rebuild();
        keeper.publish();
        if keeper.pool.backends.is_empty() {
            log::warn!("no backends: every new call gets 503 until one is configured or resolved");
        } else {
            log::info!("backends: {}", keeper.pool.describe());
        }
        Ok((keeper, workers))
    }

    /// Probes and applies reloads until `cancel` fires.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<KeeperCommand>,
        cancel: CancellationToken,
    ) {
        let mut buf = vec![0u8; 65_535];
        let mut next_round = Instant::now();
        let mut expire_at: Option<Instant> = None;
        loop {
            let probing = self.health.interval_ms > 0;
            let round = async {
                if probing {
                    tokio::time::sleep_until(next_round.into()).await
                } else {
                    std::future::pending().await
                }
            };
            let expiry = async {
                match expire_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let next_lookup = self.next_lookup();
            let lookup_due = async {
                match next_lookup {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = lookup_due => self.start_due_lookups(Instant::now()),
                Some(joined) = self.lookups.join_next(), if !self.lookups.is_empty() => {
                    if let Ok((name, result)) = joined {
                        self.on_lookup(name, result, true);
                    }
                }
                _ = round => {
                    let now = Instant::now();
                    for t in self.prober.round(&self.pool, now) {
                        if let Err(e) = self.socket.send_to(&t.payload, t.dest.addr).await {
                            log::debug!("probe to {}: {e}", t.dest);
                        }
                    }
                    next_round = now + Duration::from_millis(self.health.interval_ms);
                    expire_at = Some(now + self.timeout());
                }
                _ = expiry => {
                    expire_at = None;
                    let failed = self.prober.expire(Instant::now(), self.timeout());
                    self.apply(&failed);
                }
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r
                        && let Some(result) = self.prober.on_datagram(&buf[..n], source, Instant::now())
                    {
                        self.apply(&[result]);
                    }
                }
                Some(command) = commands.recv() => match command {
                    KeeperCommand::Reload(reload) => self.reload(reload),
                    KeeperCommand::Override { address, change, reply } => {
                        let _ = reply.send(self.set_override(&address, change));
                    }
                },
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.health.timeout_ms.max(1))
    }

    fn apply(&mut self, results: &[ProbeResult]) {
        let mut changed = false;
        for r in results {
            let Some(b) = self.pool.backends.get_mut(r.backend) else {
                continue;
            };
            self.metrics.observe_probe(b.address, r.latency);
            match b.health.on_probe(r.latency.is_some()) {
                Some(State::Down) => {
                    log::warn!("backend {} is DOWN (no answer to OPTIONS)", b.address);
                    changed = true;
                }
                Some(State::Up) => {
                    log::info!("backend {} is UP again", b.address);
                    changed = true;
                }
                None => {}
            }
        }
        if changed {
            self.publish();
        }
    }

    fn reload(&mut self, reload: Reload) {
        let dns_changed = reload.dns != self.dns;
        self.sections = reload.backends;
        self.health = reload.health;
        self.dns = reload.dns;
        if dns_changed || self.resolver.is_none() {
            match self.build_resolver() {
                Ok(resolver) => self.resolver = resolver,
                Err(e) => log::error!("SIGHUP: keeping the previous resolver: {e}"),
            }
        }
        let names = self.srv_names();
        self.resolved.retain(|name, _| names.contains(name));
        self.refresh.retain(|name, _| names.contains(name));
        if dns_changed {
            self.refresh.clear();
        }
        self.schedule_all();
        self.start_due_lookups(Instant::now());
        self.rebuild();
        self.publish();
        log::info!("backends reloaded: {}", self.pool.describe());
    }

    /// The `srv` names the config lists.
    fn srv_names(&self) -> HashSet<String> {
        self.sections.iter().filter_map(|s| s.srv.clone()).collect()
    }

    fn build_resolver(&self) -> Result<Option<Arc<SrvResolver>>, DnsError> {
        if self.srv_names().is_empty() {
            return Ok(None);
        }
        SrvResolver::new(&self.dns, &self.sip_ports, self.ipv6).map(|r| Some(Arc::new(r)))
    }

    /// Names never looked up are due now.
    fn schedule_all(&mut self) {
        let now = Instant::now();
        for name in self.srv_names() {
            self.refresh.entry(name).or_insert(now);
        }
    }

    /// The earliest time a name not being looked up is due.
    fn next_lookup(&self) -> Option<Instant> {
        self.resolver.as_ref()?;
        self.refresh
            .iter()
            .filter(|(name, _)| !self.in_flight.contains(*name))
            .map(|(_, &t)| t)
            .min()
    }

    fn start_due_lookups(&mut self, now: Instant) {
        let Some(resolver) = &self.resolver else {
            return;
        };
        for (name, &due) in &self.refresh {
            if due <= now && self.in_flight.insert(name.clone()) {
                let (resolver, name) = (resolver.clone(), name.clone());
                self.lookups
                    .spawn(async move { (name.clone(), resolver.resolve(&name).await) });
            }
        }
    }

    /// Takes one lookup's answer: new records replace the old; a failure keeps them and tries
    /// again after `dns.retry_ms`.
    fn on_lookup(&mut self, name: String, result: Result<Resolved, DnsError>, apply: bool) {
        self.in_flight.remove(&name);
        if !self.srv_names().contains(&name) {
            return;
        }
        let now = Instant::now();
        self.metrics.observe_dns(&name, result.is_ok());
        match result {
            Ok(resolved) => {
                // Nothing found: ask again after `retry_ms`, not every second.
                let mut due = srv::refresh_at(resolved.valid_until, now);
                if resolved.members.is_empty() {
                    due = due.max(now + Duration::from_millis(self.dns.retry_ms));
                }
                self.refresh.insert(name.clone(), due);
                if self.resolved.get(&name) != Some(&resolved.members) {
                    if resolved.members.is_empty() {
                        log::warn!(
                            "{name}: no SRV records, or no target with an address: no backends \
                             from it"
                        );
                    } else {
                        log::info!(
                            "{name}: the SRV records list {}",
                            resolved
                                .members
                                .iter()
                                .map(|m| format!(
                                    "{} priority {} weight {}",
                                    m.address, m.priority, m.weight
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    self.resolved.insert(name, resolved.members);
                    if apply {
                        self.rebuild();
                        self.publish();
                    }
                }
            }
            Err(e) => {
                let retry = Duration::from_millis(self.dns.retry_ms);
                log::warn!(
                    "{e}; keeping the last records, retrying in {} ms",
                    retry.as_millis()
                );
                self.refresh.insert(name, now + retry);
            }
        }
    }

    /// Applies an override from the admin API at once.
    fn set_override(
        &mut self,
        address: &str,
        change: Override,
    ) -> Result<SocketAddr, OverrideError> {
        let found = find_backend(&self.pool, address)?;
        if let Some(w) = change.weight
            && !(w.is_finite() && (0.0..=crate::control::config::MAX_WEIGHT as f64).contains(&w))
        {
            return Err(OverrideError::Invalid(format!(
                "weight {w}: must be between 0 and {}",
                crate::control::config::MAX_WEIGHT
            )));
        }
        let o = self.overrides.entry(found).or_default();
        o.draining = change.draining.or(o.draining);
        o.weight = change.weight.or(o.weight);
        self.rebuild();
        self.publish();
        Ok(found)
    }

    /// The pool from the config, the last good lookups and the admin API's overrides.
    fn rebuild(&mut self) {
        let mut members = Member::from_config(&self.sections, &self.resolved);
        for m in &mut members {
            if let Some(o) = self.overrides.get(&m.address) {
                m.draining = o.draining.unwrap_or(m.draining);
                m.weight = o.weight.unwrap_or(m.weight);
            }
        }
        for gone in self.pool.reconcile(&members, &self.health) {
            log::info!("backend {gone} is no longer listed: draining (no new calls)");
        }
    }

    fn publish(&self) {
        self.metrics.set_backend_state(&self.pool);
        self.publish.send_replace(Arc::new(self.pool.clone()));
    }
}

/// The backend `address` names: `ip:port` exactly, or an IP only one backend has.
fn find_backend(pool: &Pool, address: &str) -> Result<SocketAddr, OverrideError> {
    use OverrideError::{Invalid, NotFound};
    let listed = || {
        let all: Vec<String> = pool
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    if let Ok(exact) = address.parse::<SocketAddr>() {
        return pool
            .backends
            .iter()
            .find(|b| b.address == exact)
            .map(|b| b.address)
            .ok_or_else(|| NotFound(format!("no backend {address} (the pool has: {})", listed())));
    }
    let ip: std::net::IpAddr = address
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| Invalid(format!("`{address}` is not ip:port or an IP address")))?;
    let mut at_ip = pool.backends.iter().filter(|b| b.address.ip() == ip);
    match (at_ip.next(), at_ip.next()) {
        (Some(b), None) => Ok(b.address),
        (None, _) => Err(NotFound(format!(
            "no backend at {ip} (the pool has: {})",
            listed()
        ))),
        (Some(_), Some(_)) => Err(Invalid(format!(
            "{ip} has more than one backend: name it as ip:port (the pool has: {})",
            listed()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn a_backend_is_found_by_address_or_by_an_ip_only_it_has() {
        let at = |s: &str| Backend::new(s.parse().unwrap(), 1.0, 3, 2);
        let pool = Pool::new(vec![
            at("10.0.0.1:5060"),
            at("10.0.0.2:5060"),
            at("10.0.0.2:5070"),
        ]);
        assert_eq!(
            find_backend(&pool, "10.0.0.2:5070"),
            Ok("10.0.0.2:5070".parse().unwrap())
        );
        assert_eq!(
            find_backend(&pool, "10.0.0.1"),
            Ok("10.0.0.1:5060".parse().unwrap())
        );
        let e = find_backend(&pool, "10.0.0.2").unwrap_err().to_string();
        assert!(e.contains("more than one backend"), "{e}");
        let e = find_backend(&pool, "10.0.0.9:5060").unwrap_err();
        assert!(matches!(e, OverrideError::NotFound(_)));
        let e = e.to_string();
        assert!(e.starts_with("no backend 10.0.0.9:5060"), "{e}");
        assert!(e.contains("10.0.0.1:5060"), "{e}");
        let e = find_backend(&pool, "backend-a").unwrap_err().to_string();
        assert!(e.contains("not ip:port"), "{e}");
    }
}
