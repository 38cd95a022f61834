//! TCP SYNs crafted by a test (a SYN flood from one source), sent from a raw socket in the
//! source's namespace to an address inside the test LAN only.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::Netns;

/// Sends `count` SYNs from `from` (ports counting up from 20000) to `to`; how many went out.
pub fn flood(ns: &Netns, from: Ipv4Addr, to: SocketAddrV4, count: u32) -> anyhow::Result<u32> {
    let socket = ns.raw_tcp_socket()?;
    let dest = socket2::SockAddr::from(to);
    let mut sent = 0;
    for i in 0..count {
        let port = 20000 + (i % 40000) as u16;
        let segment = syn(from, port, to);
        if socket.send_to(&segment, &dest).is_ok() {
            sent += 1;
        }
    }
    Ok(sent)
}

/// A 20-byte TCP SYN with a valid checksum (RFC 9293 §3.1), so the ones XDP lets through are
/// real SYNs to the stack.
fn syn(from: Ipv4Addr, sport: u16, to: SocketAddrV4) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&to.port().to_be_bytes());
    t[4..8].copy_from_slice(&u32::from(sport).wrapping_mul(2_654_435_761).to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&from.octets());
    add(&to.ip().octets());
    add(&[0, 6, 0, 20]);
    add(&t);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    t[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    t
}
