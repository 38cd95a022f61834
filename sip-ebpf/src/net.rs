//! Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (with options) / IPv6 (with a few extension
//! headers), UDP, and the flags and port of TCP. Every read is bounds-checked against
//! `data_end` right before it.

use aya_ebpf::programs::XdpContext;
use sip_common::{FilterConfig, MAX_SIP_PORTS, SourceAddr, mapped_v4_words};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_TCP: u8 = 6;
/// TCP flag bits (RFC 9293 §3.1): the byte at offset 13 of the header.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
/// IPv6 extension headers we step over to find UDP: hop-by-hop, routing, destination options.
const MAX_IPV6_EXT: usize = 3;

/// A source address ([`SourceAddr`], the tries' key) aligned to 8 bytes: copied and read as
/// two words in two loads, where the byte array alone is copied a byte at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Source(pub SourceAddr);

impl Source {
    #[inline(always)]
    fn from_words(w: [u64; 2]) -> Self {
        // SAFETY: `Source` is 16 bytes of plain data, like `[u64; 2]`; every bit pattern is valid.
        unsafe { core::mem::transmute::<[u64; 2], Self>(w) }
    }

    /// The address as two native-endian words (what `sip_common::rate_tag` takes).
    #[inline(always)]
    pub fn words(&self) -> [u64; 2] {
        // SAFETY: as above, the other way round; `self` is 8-byte aligned.
        unsafe { core::mem::transmute::<Self, [u64; 2]>(*self) }
    }
}

/// A UDP datagram to one of the SIP ports: its source, and its payload as `[start, end)` offsets
/// from the start of the frame (`end` is where the UDP length ends, or the end of the frame's
/// linear data if that comes first).
pub struct SipDatagram {
    pub src: Source,
    pub start: usize,
    pub end: usize,
}

pub enum Packet {
    Sip(SipDatagram),
    /// A TCP SYN (a new connection, no ACK) to a SIP TCP/TLS port, from `src`. The program
    /// does not look into streams: every other TCP segment is `Other`.
    Syn(Source),
    /// Not IPv4/IPv6 UDP to a SIP port.
    Other,
    /// An IPv4 fragment or an IPv6 fragment header: reassembly happens in the stack.
    Fragment,
    /// Headers truncated or inconsistent.
    Malformed,
}

/// A pointer to a `T` at `off` bytes into the frame, or `Err` if it would run past the end.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(());
    }
    Ok((start + off) as *const T)
}

/// Reads a `T` at `off` (unaligned).
#[inline(always)]
pub fn read_at<T: Copy>(ctx: &XdpContext, off: usize) -> Result<T, ()> {
    let p = ptr_at::<T>(ctx, off)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` lie inside the packet, and
    // `T: Copy` is a plain integer or byte array; packet data has no alignment guarantee.
    Ok(unsafe { p.read_unaligned() })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, off: usize) -> Result<u16, ()> {
    Ok(u16::from_be(read_at::<u16>(ctx, off)?))
}

#[inline(always)]
pub fn classify(ctx: &XdpContext, cfg: &FilterConfig) -> Packet {
    match try_classify(ctx, cfg) {
        Ok(p) => p,
        Err(()) => Packet::Malformed,
    }
}

#[inline(always)]
fn try_classify(ctx: &XdpContext, cfg: &FilterConfig) -> Result<Packet, ()> {
    let mut off = ETH_HLEN;
    let mut proto = read_be16(ctx, 12)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = read_be16(ctx, ETH_HLEN + 2)?;
        off += 4;
    }
    let src: Source;
    let l4: u8;
    // Where the IP packet ends by its own length field (the UDP length must fit in it).
    let ip_end: usize;
    match proto {
        ETH_P_IP => {
            let ver_ihl: u8 = read_at(ctx, off)?;
            let ihl = ((ver_ihl & 0x0f) as usize) * 4;
            if ver_ihl >> 4 != 4 || ihl < 20 {
                return Ok(Packet::Malformed);
            }
            l4 = read_at::<u8>(ctx, off + 9)?;
            if l4 != IPPROTO_UDP && l4 != IPPROTO_TCP {
                return Ok(Packet::Other);
            }
            // Flags and fragment offset: MF set or a non-zero offset means a fragment.
            if read_be16(ctx, off + 6)? & 0x3fff != 0 {
                return Ok(Packet::Fragment);
            }
            let a: [u8; 4] = read_at(ctx, off + 12)?;
            src = Source::from_words(mapped_v4_words(a));
            ip_end = off + read_be16(ctx, off + 2)? as usize;
            off += ihl;
        }
        ETH_P_IPV6 => {
            let mut next: u8 = read_at(ctx, off + 6)?;
            src = Source::from_words([read_at(ctx, off + 8)?, read_at(ctx, off + 16)?]);
            ip_end = off + IPV6_HLEN + read_be16(ctx, off + 4)? as usize;
            off += IPV6_HLEN;
            for _ in 0..MAX_IPV6_EXT {
                match next {
                    // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
                    0 | 43 | 60 => {
                        // Next header and length in one load (one bounds check).
                        let [nh, len]: [u8; 2] = read_at(ctx, off)?;
                        next = nh;
                        off += (len as usize + 1) * 8;
                    }
                    _ => break,
                }
            }
            if next == 44 {
                return Ok(Packet::Fragment);
            }
            if next != IPPROTO_UDP && next != IPPROTO_TCP {
                return Ok(Packet::Other);
            }
            l4 = next;
        }
        _ => return Ok(Packet::Other),
    }
    let dport = read_be16(ctx, off + 2)?;
    if l4 == IPPROTO_TCP {
        // A fragment was returned above, so the TCP header's first 14 bytes are here or the
        // packet is malformed.
        let flags: u8 = read_at(ctx, off + 13)?;
        let syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        return Ok(
            if syn && is_port(&cfg.tcp_ports, cfg.num_tcp_ports, dport) {
                Packet::Syn(src)
            } else {
                Packet::Other
            },
        );
    }
    if !is_port(&cfg.ports, cfg.num_ports, dport) {
        return Ok(Packet::Other);
    }
    let udp_len = read_be16(ctx, off + 4)? as usize;
    let start = off + UDP_HLEN;
    // The UDP length must cover its header and fit in the IP packet (Ethernet padding may
    // follow it).
    if udp_len < UDP_HLEN || off + udp_len > ip_end || ptr_at::<[u8; UDP_HLEN]>(ctx, off).is_err() {
        return Ok(Packet::Malformed);
    }
    // A datagram longer than the frame's linear data (a multi-buffer frame: jumbo MTU, GRO, or
    // a test run over one page) is checked on the part that is there: the first line and the
    // headers, where the Call-ID usually is. The rest is the stack's.
    let frame_len = ctx.data_end() - ctx.data();
    let end = (off + udp_len).min(frame_len);
    Ok(Packet::Sip(SipDatagram { src, start, end }))
}

#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "a constant trip count the verifier bounds; a loop over `ports[..count]` it cannot"
)]
fn is_port(ports: &[u16; MAX_SIP_PORTS], count: u32, port: u16) -> bool {
    let n = count as usize;
    for i in 0..MAX_SIP_PORTS {
        if i >= n {
            break;
        }
        if ports[i] == port {
            return true;
        }
    }
    false
}
