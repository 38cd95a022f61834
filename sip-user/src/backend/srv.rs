//! From SRV records to backends (RFC 2782, as RFC 3263 §4.4 uses it for SIP): which name to
//! ask, what a record's priority and weight become, and when to ask again. Pure; the lookups
//! themselves are in [`super::dns`].

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use super::Member;

/// RFC 2782: "records with weight 0 should have a very small chance of being selected" when
/// others have weight; alone, they share equally. A weight of 1/100 does both.
pub const ZERO_WEIGHT: f64 = 0.01;

/// Records are asked for again no sooner than this, whatever their TTL says (a TTL of 0 would
/// otherwise mean a lookup per probe round).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The SRV owner name for a configured `srv`: `example.com` means SIP over UDP at that domain,
/// `_sip._udp.example.com.`; a name that starts with `_` is already a service name. Always
/// fully qualified, so resolv.conf search domains are not tried.
pub fn query_name(srv: &str) -> String {
    let name = if srv.starts_with('_') {
        srv.to_string()
    } else {
        format!("_sip._udp.{srv}")
    };
    if name.ends_with('.') {
        name
    } else {
        name + "."
    }
}

/// One SRV record with the addresses its target resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host; `.` means the service is not offered there (RFC 2782).
    pub target: String,
    pub addresses: Vec<IpAddr>,
}

/// The backends a set of records names: every address of every target, with the record's
/// priority, and its weight shared among the target's addresses (a host with two addresses
/// takes the calls one with a single address would). An address named twice counts once, with
/// its lowest priority. Sorted by priority and address, so the same records in another order
/// (servers rotate them) are the same backends.
pub fn members(records: &[Record]) -> Vec<Member> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.priority);
    let mut out: Vec<Member> = Vec::new();
    for r in sorted {
        if r.target == "." || r.addresses.is_empty() || r.port == 0 {
            continue;
        }
        let weight = if r.weight == 0 {
            ZERO_WEIGHT
        } else {
            f64::from(r.weight)
        } / r.addresses.len() as f64;
        for ip in &r.addresses {
            let address = SocketAddr::new(*ip, r.port);
            if !out.iter().any(|m| m.address == address) {
                out.push(Member {
                    address,
                    weight,
                    priority: r.priority,
                    draining: false,
                    transport: crate::sip::peer::Transport::Udp,
                    tls_name: None,
                });
            }
        }
    }
    out.sort_by_key(|m| (m.priority, m.address));
    out
}

/// When to look again at records that expire at `valid_until`.
pub fn refresh_at(valid_until: Instant, now: Instant) -> Instant {
    valid_until.max(now + MIN_REFRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(priority: u16, weight: u16, target: &str, addresses: &[&str]) -> Record {
        Record {
            priority,
            weight,
            port: 5060,
            target: target.to_string(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn query_names() {
        assert_eq!(query_name("example.com"), "_sip._udp.example.com.");
        assert_eq!(query_name("example.com."), "_sip._udp.example.com.");
        assert_eq!(
            query_name("_sip._udp.example.com"),
            "_sip._udp.example.com."
        );
        assert_eq!(
            query_name("_sips._tcp.example.com."),
            "_sips._tcp.example.com."
        );
    }

    #[test]
    fn records_become_members_by_priority_and_weight() {
        let m = members(&[
            record(20, 5, "backup.example.com.", &["192.0.2.30"]),
            record(10, 0, "small.example.com.", &["192.0.2.10"]),
            record(10, 60, "big.example.com.", &["192.0.2.20", "192.0.2.21"]),
            record(10, 1, ".", &[]),
            record(30, 1, "again.example.com.", &["192.0.2.30"]),
            Record {
                port: 0,
                ..record(10, 1, "portless.example.com.", &["192.0.2.40"])
            },
        ]);
        let got: Vec<(String, u16, f64)> = m
            .iter()
            .map(|m| (m.address.to_string(), m.priority, m.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("192.0.2.10:5060".to_string(), 10, ZERO_WEIGHT),
                ("192.0.2.20:5060".to_string(), 10, 30.0),
                ("192.0.2.21:5060".to_string(), 10, 30.0),
                ("192.0.2.30:5060".to_string(), 20, 5.0),
            ]
        );
    }

    #[test]
    fn record_order_does_not_matter() {
        let a = record(10, 1, "a.example.com.", &["192.0.2.1"]);
        let b = record(10, 1, "b.example.com.", &["192.0.2.2"]);
        assert_eq!(members(&[a.clone(), b.clone()]), members(&[b, a]));
    }

    #[test]
    fn short_ttls_are_floored() {
        let now = Instant::now();
        assert_eq!(refresh_at(now, now), now + MIN_REFRESH);
        let later = now + Duration::from_secs(300);
        assert_eq!(refresh_at(later, now), later);
    }
}
