//! Keeps the authoritative backend pool: sends the OPTIONS probes ([`crate::backend::probe`])
//! from its own socket, applies their results and config reloads, and publishes every change
//! to the workers through a `watch` channel (each worker keeps its own copy, so picking a
//! backend takes no lock).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{
        Pool,
        health::State,
        probe::{ProbeResult, Prober},
    },
    config::{BackendSection, HealthSection},
    metrics::Metrics,
};

/// A reloaded `[[backends]]` and `[health]`.
#[derive(Debug, Clone)]
pub struct Reload {
    pub backends: Vec<BackendSection>,
    pub health: HealthSection,
}

pub struct PoolKeeper {
    pool: Pool,
    health: HealthSection,
    prober: Prober,
    socket: UdpSocket,
    publish: watch::Sender<Arc<Pool>>,
    metrics: Arc<Metrics>,
}

impl PoolKeeper {
    /// Binds the probing socket to `probe_from` (port 0: any) and publishes the first pool.
    pub async fn new(
        pool: Pool,
        health: HealthSection,
        probe_from: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, watch::Receiver<Arc<Pool>>)> {
        let socket = UdpSocket::bind(probe_from).await?;
        let prober = Prober::new(socket.local_addr()?);
        let (publish, workers) = watch::channel(Arc::new(pool.clone()));
        metrics.set_backend_state(&pool);
        Ok((
            PoolKeeper {
                pool,
                health,
                prober,
                socket,
                publish,
                metrics,
            },
            workers,
        ))
    }

    /// Probes and applies reloads until `cancel` fires.
    pub async fn run(mut self, mut reloads: mpsc::Receiver<Reload>, cancel: CancellationToken) {
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
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = round => {
                    let now = Instant::now();
                    for t in self.prober.round(&self.pool, now) {
                        if let Err(e) = self.socket.send_to(&t.payload, t.dest).await {
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
                Some(reload) = reloads.recv() => self.reload(reload),
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
        for gone in self.pool.reconcile(&reload.backends, &reload.health) {
            log::info!("backend {gone} removed from the config: draining (no new calls)");
        }
        self.health = reload.health;
        self.publish();
        log::info!(
            "backends reloaded: {}",
            self.pool
                .backends
                .iter()
                .map(|b| format!(
                    "{} weight {}{}",
                    b.address,
                    b.weight,
                    if b.draining { " draining" } else { "" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    fn publish(&self) {
        self.metrics.set_backend_state(&self.pool);
        self.publish.send_replace(Arc::new(self.pool.clone()));
    }
}
