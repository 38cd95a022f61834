//! The transports: a worker's UDP socket with batched I/O ([`udp`]); and SIP over streams
//! (RFC 3261 §18.3): TCP listeners, one task per connection that frames messages off the stream
//! ([`framer`]) and writes what the worker sends back, and the rule that says which worker owns
//! a connection ([`owner_of`]).
//!
//! A connection is owned by the worker its peer's IP hashes to, whichever worker's listener
//! accepted it: every worker can then tell where to send a response or a request for a
//! connection without asking anyone (no shared table, no lock), and one worker sees all the
//! connections of a source, so it counts them against `connections.per_source` alone.

pub mod framer;
pub mod listener;
pub mod stream;
pub mod table;
pub mod tls;
pub mod udp;

use std::net::IpAddr;

use sip_common::{fmix64, slot_for_hash};

use crate::sip::peer::Peer;

/// The worker (of `workers`) that owns the connections from `peer`'s IP address.
pub fn owner_of(peer: &Peer, workers: usize) -> usize {
    let bits = match peer.addr.ip() {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64)
        }
    };
    slot_for_hash(fmix64(bits), workers.max(1) as u32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::peer::Transport;

    #[test]
    fn one_owner_per_ip_whatever_the_port_spread_over_workers() {
        let peer = |s: &str| Peer::new(Transport::Tcp, s.parse().unwrap());
        let a = owner_of(&peer("198.51.100.7:40000"), 4);
        assert_eq!(owner_of(&peer("198.51.100.7:40001"), 4), a);
        assert!(a < 4);
        let owners: std::collections::BTreeSet<usize> = (1..=64u8)
            .map(|i| owner_of(&peer(&format!("10.0.0.{i}:5060")), 4))
            .collect();
        assert_eq!(owners.len(), 4, "64 addresses reach every worker");
        assert_eq!(owner_of(&peer("[2001:db8::1]:5060"), 1), 0);
    }
}
