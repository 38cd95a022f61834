//! The backend pool: backends with priorities and weights (static, or from DNS SRV records),
//! their health, draining, and the choice of a backend for a new call. Pure state: the pool
//! keeper feeds probe results and resolved records in, and the proxy asks [`Pool::pick`] for
//! each new call.

pub mod dns;
pub mod health;
pub mod keeper;
pub mod probe;
pub mod select;
pub mod srv;

use std::{collections::HashMap, net::SocketAddr};

use self::health::Health;
use crate::{
    control::config::{BackendSection, HealthSection},
    sip::peer::Transport,
};

/// One backend as the config or DNS describes it, before health is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub address: SocketAddr,
    /// Share of new calls relative to the other backends of its priority.
    pub weight: f64,
    /// Lower takes the calls while any of its backends is up (RFC 2782).
    pub priority: u16,
    pub draining: bool,
    /// How we reach it (UDP unless the config says `transport`).
    pub transport: Transport,
    /// The name its TLS certificate must carry (default: its IP address).
    pub tls_name: Option<String>,
}

impl Member {
    /// The backends the config lists, with each `srv` entry replaced by the members its
    /// records resolved to (none while unresolved). An address listed twice counts once, as
    /// its first listing says.
    pub fn from_config(
        sections: &[BackendSection],
        resolved: &HashMap<String, Vec<Member>>,
    ) -> Vec<Member> {
        let mut members: Vec<Member> = Vec::new();
        for section in sections {
            let found: Vec<Member> = match (&section.address, &section.srv) {
                (Some(address), _) => vec![Member {
                    address: *address,
                    weight: f64::from(section.weight()),
                    priority: section.priority.unwrap_or(0),
                    draining: section.draining,
                    transport: section.transport.transport(),
                    tls_name: section.tls_name.clone(),
                }],
                (None, Some(name)) => resolved
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|m| Member {
                        draining: m.draining || section.draining,
                        ..m.clone()
                    })
                    .collect(),
                (None, None) => Vec::new(),
            };
            for m in found {
                if !members.iter().any(|o| o.address == m.address) {
                    members.push(m);
                }
            }
        }
        members
    }
}

/// One backend SIP server.
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: SocketAddr,
    pub weight: f64,
    pub priority: u16,
    /// Draining: no new calls; dialogs already on it finish there.
    pub draining: bool,
    pub health: Health,
    pub transport: Transport,
    pub tls_name: Option<String>,
    id: u64,
}

impl Backend {
    pub fn new(address: SocketAddr, weight: f64, fall: u32, rise: u32) -> Self {
        Backend {
            address,
            weight,
            priority: 0,
            draining: false,
            health: Health::new(fall, rise),
            transport: Transport::Udp,
            tls_name: None,
            id: select::backend_id(&address.to_string()),
        }
    }

    /// Takes new calls: up, not draining, weight above zero.
    pub fn eligible(&self) -> bool {
        self.health.is_up() && !self.draining && self.weight > 0.0
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

    /// The pool of these members, all up.
    pub fn from_members(members: &[Member], health: &HealthSection) -> Self {
        let mut pool = Pool::default();
        pool.reconcile(members, health);
        pool
    }

    /// Applies a reloaded config or re-resolved records. A backend keeps its index (dialogs
    /// refer to it) and its health; one no longer listed drains, so its calls finish; new ones
    /// are appended. Returns the addresses that started draining because they went away.
    pub fn reconcile(&mut self, members: &[Member], health: &HealthSection) -> Vec<SocketAddr> {
        let mut removed = Vec::new();
        for b in &mut self.backends {
            match members.iter().find(|m| m.address == b.address) {
                Some(m) => {
                    b.weight = m.weight;
                    b.priority = m.priority;
                    b.draining = m.draining;
                    b.transport = m.transport;
                    b.tls_name = m.tls_name.clone();
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
        for m in members {
            if !self.backends.iter().any(|b| b.address == m.address) {
                let mut b = Backend::new(m.address, m.weight, health.fall, health.rise);
                b.priority = m.priority;
                b.draining = m.draining;
                b.transport = m.transport;
                b.tls_name = m.tls_name.clone();
                self.backends.push(b);
            }
        }
        removed
    }

    /// The backend for a new call with this Call-ID hash, or `None` when none is eligible (the
    /// proxy answers 503 with Retry-After). Only the lowest priority with an eligible backend
    /// takes calls (RFC 2782); within it, weighted rendezvous hashing picks.
    pub fn pick(&self, call_hash: u64) -> Option<usize> {
        let eligible = || {
            self.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.eligible())
        };
        let priority = eligible().map(|(_, b)| b.priority).min()?;
        let candidates = eligible()
            .filter(|(_, b)| b.priority == priority)
            .map(|(i, b)| (i, b.id, b.weight));
        select::pick(call_hash, candidates)
    }

    /// One line per backend for logs and `check-config`.
    pub fn describe(&self) -> String {
        self.backends
            .iter()
            .map(|b| {
                format!(
                    "{} priority {} weight {}{}",
                    b.address,
                    b.priority,
                    b.weight,
                    if b.draining { " draining" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::new(vec![
            Backend::new("192.0.2.1:5060".parse().unwrap(), 1.0, 2, 1),
            Backend::new("192.0.2.2:5060".parse().unwrap(), 1.0, 2, 1),
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
    fn the_lowest_priority_with_a_backend_up_takes_the_calls() {
        let mut p = pool();
        p.backends
            .push(Backend::new("192.0.2.3:5060".parse().unwrap(), 1.0, 2, 1));
        p.backends[0].priority = 10;
        p.backends[1].priority = 10;
        p.backends[2].priority = 20;
        let hashes: Vec<u64> = (0..1000u64)
            .map(|i| sip_common::hash_call_id(&i.to_le_bytes()))
            .collect();
        let picks =
            |p: &Pool| -> Vec<usize> { hashes.iter().map(|&h| p.pick(h).unwrap()).collect() };
        let first = picks(&p);
        assert!(first.contains(&0) && first.contains(&1) && !first.contains(&2));
        p.backends[0].health.on_probe(false);
        p.backends[0].health.on_probe(false);
        assert!(picks(&p).iter().all(|&i| i == 1), "the rest of priority 10");
        p.backends[1].draining = true;
        assert!(
            picks(&p).iter().all(|&i| i == 2),
            "priority 20 when 10 has none"
        );
    }

    #[test]
    fn srv_members_join_static_ones_and_drain_with_their_entry() {
        let srv = |draining| BackendSection {
            srv: Some("example.com".into()),
            draining,
            ..Default::default()
        };
        let fixed = BackendSection {
            address: Some("192.0.2.1:5060".parse().unwrap()),
            weight: Some(3),
            priority: Some(5),
            ..Default::default()
        };
        let records = srv::members(&[srv::Record {
            priority: 10,
            weight: 0,
            port: 5070,
            target: "b.example.com.".into(),
            addresses: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
        }]);
        let resolved = HashMap::from([("example.com".to_string(), records)]);
        assert!(Member::from_config(&[srv(false)], &HashMap::new()).is_empty());
        let m = Member::from_config(&[fixed.clone(), srv(false)], &resolved);
        assert_eq!(
            m.iter()
                .map(|m| (m.address.to_string(), m.priority, m.weight, m.draining))
                .collect::<Vec<_>>(),
            [
                ("192.0.2.1:5060".to_string(), 5, 3.0, false),
                (
                    "192.0.2.1:5070".to_string(),
                    10,
                    srv::ZERO_WEIGHT / 2.0,
                    false
                ),
                (
                    "192.0.2.2:5070".to_string(),
                    10,
                    srv::ZERO_WEIGHT / 2.0,
                    false
                ),
            ]
        );
        let m = Member::from_config(&[srv(true), fixed], &resolved);
        assert!(m[0].draining && m[1].draining && !m[2].draining);
    }

    #[test]
    fn reload_keeps_indices_and_drains_removed_backends() {
        let cfg = |addrs: &[&str]| -> Vec<Member> {
            let sections: Vec<BackendSection> = addrs
                .iter()
                .map(|a| BackendSection {
                    address: Some(a.parse().unwrap()),
                    ..Default::default()
                })
                .collect();
            Member::from_config(&sections, &HashMap::new())
        };
        let h = HealthSection::default();
        let mut p = Pool::from_members(&cfg(&["192.0.2.1:5060", "192.0.2.2:5060"]), &h);
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
