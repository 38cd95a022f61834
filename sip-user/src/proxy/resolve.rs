//! Next hops named by host names (RFC 3263 §4, for UDP): a per-worker cache in front of the
//! worker's resolver, sans-IO like the rest of the proxy. [`Resolver::lookup`] answers from the
//! cache or queues a query ([`Resolver::poll_query`]); the worker resolves it off the message
//! path and hands the answer back ([`Resolver::answer`]), and the proxy then routes the requests
//! it parked for that name.
//!
//! Answers are kept for their DNS TTL, clamped to 1 s – 5 min; a name that does not exist for
//! 30 s at least, and a failed lookup (timeout, server failure) for 5 s, so a flood of calls to
//! a dead name costs one query per few seconds, not one per call. The cache is bounded.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::target::Name;
use crate::backend::select;

/// One address a name resolved to, with its SRV priority and weight (0 and 1 for A/AAAA).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub priority: u16,
    pub weight: f64,
}

/// What the worker's lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Found {
        candidates: Vec<Candidate>,
        valid_until: Instant,
    },
    /// The name, and so the domain, does not exist or has no usable records.
    NoSuchName,
    /// Timeout or server failure: worth trying again later.
    Failed,
}

/// What the cache says about a name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// An address, picked among the candidates by the request's hash.
    Addr(SocketAddr),
    NoSuchName,
    Failed,
    /// Not known yet: a query is on its way.
    Pending,
}

const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(300);
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
const FAILURE_TTL: Duration = Duration::from_secs(5);
/// Names cached per worker.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    candidates: Result<Vec<Candidate>, Answer>,
    until: Instant,
}

#[derive(Debug, Default)]
pub struct Resolver {
    cache: HashMap<Name, Entry>,
    in_flight: HashSet<Name>,
    queries: VecDeque<Name>,
}

impl Resolver {
    /// The address for `name` (picked by `hash` among the best candidates), or `Pending` after
    /// queueing a query if there is none in flight.
    pub fn lookup(&mut self, name: &Name, hash: u64, now: Instant) -> Lookup {
        if let Some(e) = self.cache.get(name).filter(|e| e.until > now) {
            return match &e.candidates {
                Ok(c) => pick(c, hash).map_or(Lookup::NoSuchName, Lookup::Addr),
                Err(Answer::NoSuchName) => Lookup::NoSuchName,
                Err(_) => Lookup::Failed,
            };
        }
        if self.in_flight.insert(name.clone()) {
            self.queries.push_back(name.clone());
        }
        Lookup::Pending
    }

    /// The next name to resolve.
    pub fn poll_query(&mut self) -> Option<Name> {
        self.queries.pop_front()
    }

    /// The answer for a queried name.
    pub fn answer(&mut self, name: Name, answer: Answer, now: Instant) {
        self.in_flight.remove(&name);
        let (candidates, ttl) = match answer {
            Answer::Found {
                candidates,
                valid_until,
            } if !candidates.is_empty() => (
                Ok(candidates),
                valid_until
                    .saturating_duration_since(now)
                    .clamp(MIN_TTL, MAX_TTL),
            ),
            Answer::Found { .. } | Answer::NoSuchName => (Err(Answer::NoSuchName), NEGATIVE_TTL),
            Answer::Failed => (Err(Answer::Failed), FAILURE_TTL),
        };
        if self.cache.len() >= MAX_ENTRIES && !self.cache.contains_key(&name) {
            self.cache.retain(|_, e| e.until > now);
            if self.cache.len() >= MAX_ENTRIES {
                self.cache.clear();
            }
        }
        self.cache.insert(
            name,
            Entry {
                candidates,
                until: now + ttl,
            },
        );
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// RFC 2782 as RFC 3263 §4.4 uses it: the lowest priority, then by weight; the weighted choice
/// is rendezvous hashing on the request's hash, so one call's requests pick alike.
fn pick(candidates: &[Candidate], hash: u64) -> Option<SocketAddr> {
    let best = candidates.iter().map(|c| c.priority).min()?;
    let group = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.priority == best)
        .map(|(i, c)| {
            let id = select::backend_id(&c.addr.to_string());
            // Weight 0 gets a very small chance (RFC 2782), as for SRV backends.
            (i, id, if c.weight > 0.0 { c.weight } else { 0.01 })
        });
    select::pick(hash, group).map(|i| candidates[i].addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(h: &str) -> Name {
        Name {
            host: h.into(),
            port: None,
        }
    }

    fn cand(a: &str, priority: u16) -> Candidate {
        Candidate {
            addr: a.parse().unwrap(),
            priority,
            weight: 1.0,
        }
    }

    /// `name` resolved at `t0` to two addresses of these priorities, for 60 s.
    fn resolved(r: &mut Resolver, host: &str, priorities: [u16; 2], t0: Instant) {
        r.answer(
            name(host),
            Answer::Found {
                candidates: vec![
                    cand("192.0.2.80:5060", priorities[0]),
                    cand("192.0.2.81:5060", priorities[1]),
                ],
                valid_until: t0 + Duration::from_secs(60),
            },
            t0,
        );
    }

    #[test]
    fn a_miss_queues_one_query_and_the_answer_is_cached_for_its_ttl() {
        let mut r = Resolver::default();
        let t0 = Instant::now();
        assert_eq!(r.lookup(&name("trunk.example"), 1, t0), Lookup::Pending);
        assert_eq!(r.lookup(&name("trunk.example"), 2, t0), Lookup::Pending);
        assert_eq!(r.poll_query(), Some(name("trunk.example")));
        assert_eq!(r.poll_query(), None, "one query for both requests");
        resolved(&mut r, "trunk.example", [10, 20], t0);
        for h in 0..50 {
            assert_eq!(
                r.lookup(&name("trunk.example"), h, t0),
                Lookup::Addr("192.0.2.80:5060".parse().unwrap()),
                "the lowest priority"
            );
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(r.lookup(&name("trunk.example"), 1, later), Lookup::Pending);
        assert_eq!(r.poll_query(), Some(name("trunk.example")));
    }

    #[test]
    fn weights_spread_within_a_priority() {
        let mut r = Resolver::default();
        let t0 = Instant::now();
        r.lookup(&name("t.example"), 0, t0);
        resolved(&mut r, "t.example", [10, 10], t0);
        let first = (0..1000u64)
            .filter(|&h| {
                r.lookup(&name("t.example"), sip_common::fmix64(h), t0)
                    == Lookup::Addr("192.0.2.80:5060".parse().unwrap())
            })
            .count();
        assert!((400..600).contains(&first), "{first} of 1000");
    }

    #[test]
    fn failures_and_missing_names_are_cached_briefly() {
        let mut r = Resolver::default();
        let t0 = Instant::now();
        r.lookup(&name("gone.example"), 0, t0);
        r.answer(name("gone.example"), Answer::NoSuchName, t0);
        assert_eq!(r.lookup(&name("gone.example"), 0, t0), Lookup::NoSuchName);
        assert_eq!(
            r.lookup(&name("gone.example"), 0, t0 + Duration::from_secs(31)),
            Lookup::Pending
        );
        r.lookup(&name("down.example"), 0, t0);
        r.answer(name("down.example"), Answer::Failed, t0);
        assert_eq!(r.lookup(&name("down.example"), 0, t0), Lookup::Failed);
        assert_eq!(
            r.lookup(&name("down.example"), 0, t0 + Duration::from_secs(6)),
            Lookup::Pending
        );
    }
}
