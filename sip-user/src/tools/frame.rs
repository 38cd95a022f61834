//! Builds Ethernet frames around a UDP payload, for `classify`, `bench-xdp` and the tests:
//! optional 802.1Q tag, IPv4 (optionally with options) or IPv6, with valid checksums; and bare
//! TCP segments (a SYN), for the kernel's connection guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How to wrap a payload.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// 802.1Q VLAN id to tag the frame with.
    pub vlan: Option<u16>,
    /// Bytes of IPv4 options (a multiple of 4, at most 40), filled with NOPs and an end marker.
    pub ipv4_options: usize,
}

impl FrameSpec {
    /// 192.0.2.10:5060 → 192.0.2.1:`port` (RFC 5737 documentation addresses: frames built here
    /// are only ever run through `BPF_PROG_TEST_RUN`, never sent).
    pub fn ipv4_to_port(port: u16) -> Self {
        Self {
            src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 5060),
            dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port),
            vlan: None,
            ipv4_options: 0,
        }
    }

    /// `src` → 192.0.2.1 or 2001:db8::1:`port`, whichever is of `src`'s family.
    pub fn from_source(src: SocketAddr, port: u16) -> Self {
        let dst = match src.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        };
        Self {
            src,
            dst: SocketAddr::new(dst, port),
            ..Self::ipv4_to_port(port)
        }
    }

    /// A TCP segment with `flags` (0x02 SYN, 0x10 ACK, …) and no payload; its checksum is
    /// left zero (the XDP program does not check it).
    pub fn build_tcp(&self, flags: u8) -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence number
        tcp[12] = 5 << 4; // data offset: 5 words
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes()); // window
        self.wrap(6, tcp)
    }

    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(udp_len as usize);
        udp.extend_from_slice(&self.src.port().to_be_bytes());
        udp.extend_from_slice(&self.dst.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        self.wrap(17, udp)
    }

    /// Ethernet and IP headers around the layer-4 bytes `l4` of protocol `proto` (17: UDP, whose
    /// checksum is filled in; 6: TCP).
    fn wrap(&self, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
        let mut f = Vec::with_capacity(l4.len() + 80);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        let l4_len = l4.len() as u16;
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let opts = self.ipv4_options.min(40) / 4 * 4;
                let ihl = 20 + opts;
                let mut ip = vec![0u8; ihl];
                ip[0] = 0x40 | (ihl / 4) as u8;
                ip[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
                ip[6] = 0x40; // don't fragment
                ip[8] = 64;
                ip[9] = proto;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                for b in &mut ip[20..ihl] {
                    *b = 1; // NOP
                }
                if opts > 0 {
                    ip[ihl - 1] = 0; // end of options list
                }
                let sum = checksum(&[&ip]);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                let mut pseudo = Vec::with_capacity(12);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, proto]);
                pseudo.extend_from_slice(&l4_len.to_be_bytes());
                if proto == 17 {
                    set_udp_checksum(&mut l4, &pseudo);
                }
                f.extend_from_slice(&ip);
            }
            (s, d) => {
                let to_v6 = |a: IpAddr| match a {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                let (s, d) = (to_v6(s), to_v6(d));
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = vec![0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&l4_len.to_be_bytes());
                ip[6] = proto;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                let mut pseudo = Vec::with_capacity(40);
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, proto]);
                if proto == 17 {
                    set_udp_checksum(&mut l4, &pseudo);
                }
                f.extend_from_slice(&ip);
            }
        }
        f.extend_from_slice(&l4);
        f
    }
}

fn set_udp_checksum(udp: &mut [u8], pseudo: &[u8]) {
    let sum = match checksum(&[pseudo, udp]) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length but
/// the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [last] = chunks.remainder() {
            sum += (*last as u32) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
