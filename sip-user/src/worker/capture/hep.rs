//! HEPv3 encoding (the Homer Encapsulation Protocol of Homer, Kamailio's `siptrace` and
//! sngrep's `--eep-listen`): a `HEP3` header with the total length, then chunks of
//! `vendor (u16) | type (u16) | length (u16, with these 6 bytes) | value`, all big-endian.
//! Written here because it is a few dozen lines and no maintained Rust crate encodes it.
//!
//! Chunks sent (vendor 0, the generic ones): 1 address family, 2 IP protocol, 3/4 IPv4 or 5/6
//! IPv6 source and destination, 7/8 ports, 9/10 time in seconds and microseconds, 11 payload
//! type (1: SIP), 12 capture agent id, 14 the collector's password when one is set, 15 the
//! message, 17 the correlation id (the Call-ID, which Homer groups a call by).

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

/// One captured message.
#[derive(Debug, Clone)]
pub struct HepMessage<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// Carried over TCP (TLS included) rather than UDP.
    pub stream: bool,
    pub time: SystemTime,
    pub agent_id: u32,
    pub password: Option<&'a str>,
    pub call_id: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const PROTO_SIP: u8 = 1;

/// Appends `m` as one HEPv3 packet to `out` (cleared first).
pub fn encode(m: &HepMessage<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HEP3\0\0");
    let (src, dst) = (m.source.ip(), m.destination.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, 1, &[AF_INET]);
            chunk(out, 3, &s.octets());
            chunk(out, 4, &d.octets());
        }
        // Mixed families travel as IPv6, IPv4 mapped.
        _ => {
            chunk(out, 1, &[AF_INET6]);
            chunk(out, 5, &v6(src).octets());
            chunk(out, 6, &v6(dst).octets());
        }
    }
    chunk(out, 2, &[if m.stream { 6 } else { 17 }]);
    chunk(out, 7, &m.source.port().to_be_bytes());
    chunk(out, 8, &m.destination.port().to_be_bytes());
    let since = m.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    chunk(out, 9, &(since.as_secs() as u32).to_be_bytes());
    chunk(out, 10, &since.subsec_micros().to_be_bytes());
    chunk(out, 11, &[PROTO_SIP]);
    chunk(out, 12, &m.agent_id.to_be_bytes());
    if let Some(p) = m.password {
        chunk(out, 14, p.as_bytes());
    }
    chunk(out, 15, m.payload);
    if let Some(c) = m.call_id {
        chunk(out, 17, c);
    }
    let total = out.len().min(u16::MAX as usize) as u16;
    out[4..6].copy_from_slice(&total.to_be_bytes());
}

/// The most a payload may be for its packet's lengths to fit in 16 bits (with room for the
/// other chunks).
pub const MAX_PAYLOAD: usize = 65_535 - 512;

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The chunks of a packet, as (type, value), checking every length on the way.
    fn chunks(p: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(&p[..4], b"HEP3");
        assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize, p.len());
        let mut i = 6;
        let mut found = Vec::new();
        while i < p.len() {
            let vendor = u16::from_be_bytes([p[i], p[i + 1]]);
            let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
            let len = u16::from_be_bytes([p[i + 4], p[i + 5]]) as usize;
            assert_eq!(vendor, 0);
            found.push((kind, p[i + 6..i + len].to_vec()));
            i += len;
        }
        assert_eq!(i, p.len());
        found
    }

    #[test]
    fn an_ipv4_udp_message_has_every_generic_chunk() {
        let m = HepMessage {
            source: "192.0.2.2:5060".parse().unwrap(),
            destination: "192.0.2.1:5062".parse().unwrap(),
            stream: false,
            time: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            agent_id: 2001,
            password: Some("secret"),
            call_id: Some(b"abc@h"),
            payload: b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        };
        let mut out = Vec::new();
        encode(&m, &mut out);
        let c = chunks(&out);
        let get = |k: u16| c.iter().find(|(t, _)| *t == k).map(|(_, v)| v.clone());
        assert_eq!(get(1), Some(vec![AF_INET]));
        assert_eq!(get(2), Some(vec![17]));
        assert_eq!(get(3), Some(vec![192, 0, 2, 2]));
        assert_eq!(get(4), Some(vec![192, 0, 2, 1]));
        assert_eq!(get(7), Some(5060u16.to_be_bytes().to_vec()));
        assert_eq!(get(8), Some(5062u16.to_be_bytes().to_vec()));
        assert_eq!(get(9), Some(1_700_000_000u32.to_be_bytes().to_vec()));
        assert_eq!(get(10), Some(123_456u32.to_be_bytes().to_vec()));
        assert_eq!(get(11), Some(vec![1]));
        assert_eq!(get(12), Some(2001u32.to_be_bytes().to_vec()));
        assert_eq!(get(14), Some(b"secret".to_vec()));
        assert_eq!(get(15), Some(m.payload.to_vec()));
        assert_eq!(get(17), Some(b"abc@h".to_vec()));
    }

    #[test]
    fn mixed_families_go_as_ipv6_and_streams_as_tcp() {
        let m = HepMessage {
            source: "192.0.2.2:5060".parse().unwrap(),
            destination: "[2001:db8::1]:5061".parse().unwrap(),
            stream: true,
            time: UNIX_EPOCH,
            agent_id: 1,
            password: None,
            call_id: None,
            payload: b"x",
        };
        let mut out = vec![9; 3];
        encode(&m, &mut out);
        let c = chunks(&out);
        assert_eq!(c[0], (1, vec![AF_INET6]));
        assert_eq!(
            c[1].1,
            "::ffff:192.0.2.2".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert!(c.iter().any(|(t, v)| *t == 2 && v == &[6]));
        assert!(!c.iter().any(|(t, _)| *t == 14 || *t == 17));
    }
}
