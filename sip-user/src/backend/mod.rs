//! The backend pool: static backends with weights, their health, draining, and the choice of a
//! backend for a new call. Pure state: the proxy's health checker feeds probe results in, and
//! the proxy asks [`Pool::pick`] for each new call.

pub mod health;
pub mod probe;
pub mod select;

use std::net::SocketAddr;

use self::health::Health;
use crate::config::{BackendSection, HealthSection};

/// One backend SIP server.
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: SocketAddr,
    pub weight: u32,
    /// Draining: no new calls; dialogs already on it finish there.
    pub draining: bool,
    pub health: Health,
    id: u64,
}

impl Backend {
    pub fn new(address: SocketAddr, weight: u32, fall: u32, rise: u32) -> Self {
        Backend {
            address,
            weight,
            draining: false,
            health: Health::new(fall, rise),
            id: select::backend_id(&address.to_string()),
        }
    }

    /// Takes new calls: up, not draining, weight above zero.
    pub fn eligible(&self) -> bool {
        self.health.is_up() && !self.draining && self.weight > 0
    }
}

/// The configured backends.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub backends: Vec<Backend>,
}

impl Pool {
    pub fn new(backends: Vec<Backend>) -> Self {
        Pool { backends }
    }

    /// The pool a config describes.
    pub fn from_config(backends: &[BackendSection], health: &HealthSection) -> Self {
        let mut pool = Pool::default();
        pool.reconcile(backends, health);
        pool
    }

    /// Applies a reloaded config. A backend keeps its index (dialogs refer to it) and its
    /// health; one gone from the config drains, so its calls finish; new ones are appended.
    /// Returns the addresses that started draining because they were removed.
    pub fn reconcile(
        &mut self,
        backends: &[BackendSection],
        health: &HealthSection,
    ) -> Vec<SocketAddr> {
        let mut removed = Vec::new();
        for b in &mut self.backends {
            match backends.iter().find(|c| c.address == b.address) {
                Some(c) => {
                    b.weight = c.weight;
                    b.draining = c.draining;
                }
                None => {
                    if !b.draining {
                        removed.push(b.address);
                    }
                    b.draining = true;
                }
            }
            b.health.set_thresholds(health.fall, health.rise);
        }
        for c in backends {
            if !self.backends.iter().any(|b| b.address == c.address) {
                let mut b = Backend::new(c.address, c.weight, health.fall, health.rise);
                b.draining = c.draining;
                self.backends.push(b);
            }
        }
        removed
    }

    /// The backend for a new call with this Call-ID hash, or `None` when none is eligible (the
    /// proxy answers 503 with Retry-After).
    pub fn pick(&self, call_hash: u64) -> Option<usize> {
        let candidates = self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.eligible())
            .map(|(i, b)| (i, b.id, b.weight));
        select::pick(call_hash, candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::new(vec![
            Backend::new("192.0.2.1:5060".parse().unwrap(), 1, 2, 1),
            Backend::new("192.0.2.2:5060".parse().unwrap(), 1, 2, 1),
        ])
    }

    #[test]
    fn down_and_draining_backends_get_no_new_calls() {
        let mut p = pool();
        let hashes: Vec<u64> = (0..1000u64)
            .map(|i| sip_common::hash_call_id(&i.to_le_bytes()))
            .collect();
        let before: Vec<usize> = hashes.iter().map(|&h| p.pick(h).unwrap()).collect();
        assert!(before.contains(&0) && before.contains(&1));
        p.backends[1].health.on_probe(false);
        p.backends[1].health.on_probe(false);
        assert!(hashes.iter().all(|&h| p.pick(h) == Some(0)));
        p.backends[1].health.on_probe(true);
        let after: Vec<usize> = hashes.iter().map(|&h| p.pick(h).unwrap()).collect();
        assert_eq!(before, after, "back up: every call hashes where it did");
        p.backends[0].draining = true;
        assert!(hashes.iter().all(|&h| p.pick(h) == Some(1)));
        p.backends[1].draining = true;
        assert_eq!(p.pick(hashes[0]), None, "none eligible: 503");
    }

    #[test]
    fn reload_keeps_indices_and_drains_removed_backends() {
        let cfg = |addrs: &[&str]| -> Vec<BackendSection> {
            addrs
                .iter()
                .map(|a| BackendSection {
                    address: a.parse().unwrap(),
                    weight: 1,
                    draining: false,
                })
                .collect()
        };
        let h = HealthSection::default();
        let mut p = Pool::from_config(&cfg(&["192.0.2.1:5060", "192.0.2.2:5060"]), &h);
        p.backends[0].health.on_probe(false);
        let removed = p.reconcile(&cfg(&["192.0.2.3:5060", "192.0.2.1:5060"]), &h);
        assert_eq!(removed, vec!["192.0.2.2:5060".parse().unwrap()]);
        let addrs: Vec<String> = p.backends.iter().map(|b| b.address.to_string()).collect();
        assert_eq!(
            addrs,
            ["192.0.2.1:5060", "192.0.2.2:5060", "192.0.2.3:5060"]
        );
        assert!(p.backends[1].draining && !p.backends[0].draining && !p.backends[2].draining);
        p.backends[0].health.on_probe(false);
        p.backends[0].health.on_probe(false);
        assert!(!p.backends[0].health.is_up(), "health survives a reload");
    }
}
