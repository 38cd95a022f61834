//! Keep-alives on the SIP port (RFC 5626 §4.4): a UA behind NAT keeps its binding open with
//! STUN Binding requests (§4.4.2, RFC 5389) or, on connections, double-CRLF pings (§4.4.1); we
//! answer both here, in the worker that received them. The XDP program passes both.
//!
//! The STUN answer is written by hand: it is one fixed-layout message (header, XOR-MAPPED-ADDRESS,
//! FINGERPRINT) on the product's own edge, where a general STUN codec would add a dependency
//! tree for 40 lines.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

/// RFC 5389 §6.
const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A datagram that looks like STUN (RFC 5389 §6: two zero bits, the magic cookie, a length
/// that is a multiple of 4 and matches the datagram): never SIP, whose first byte is a letter.
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= HEADER
        && d[0] & 0xc0 == 0
        && u32::from_be_bytes([d[4], d[5], d[6], d[7]]) == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([d[2], d[3]])) == d.len() - HEADER
        && d.len().is_multiple_of(4)
}

/// The Binding success response to a Binding request from `source`: the same transaction id,
/// XOR-MAPPED-ADDRESS = `source` (what the UA's NAT shows us), and FINGERPRINT (RFC 5626 §8.4
/// wants it, to tell STUN from SIP on one port). `None` for other STUN messages, which are
/// not answered (§7.3: indications and responses get no answer).
pub fn stun_binding_response(request: &[u8], source: SocketAddr) -> Option<Bytes> {
    if !is_stun(request) || u16::from_be_bytes([request[0], request[1]]) != BINDING_REQUEST {
        return None;
    }
    let txid = &request[8..20];
    let (family, addr_len) = match source.ip() {
        IpAddr::V4(_) => (1u8, 4),
        IpAddr::V6(_) => (2u8, 16),
    };
    let xma_len = 4 + addr_len;
    let length = (4 + xma_len) + (4 + 4);
    let mut out = BytesMut::with_capacity(HEADER + length);
    out.put_u16(BINDING_SUCCESS);
    out.put_u16(length as u16);
    out.put_u32(MAGIC_COOKIE);
    out.put_slice(txid);
    // §15.2: port XOR the cookie's high half; address XOR the cookie (and the transaction id).
    out.put_u16(XOR_MAPPED_ADDRESS);
    out.put_u16(xma_len as u16);
    out.put_u8(0);
    out.put_u8(family);
    out.put_u16(source.port() ^ (MAGIC_COOKIE >> 16) as u16);
    let mut pad = [0u8; 16];
    pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    pad[4..].copy_from_slice(txid);
    match source.ip() {
        IpAddr::V4(a) => out.extend(a.octets().iter().zip(&pad).map(|(x, k)| x ^ k)),
        IpAddr::V6(a) => out.extend(a.octets().iter().zip(&pad).map(|(x, k)| x ^ k)),
    }
    // §15.5: CRC-32 of everything before the attribute, the length already counting it.
    let crc = crc32fast::hash(&out) ^ FINGERPRINT_XOR;
    out.put_u16(FINGERPRINT);
    out.put_u16(4);
    out.put_u32(crc);
    Some(out.freeze())
}

/// RFC 5626 §4.4.1: a double CRLF is a ping, answered with one CRLF (the pong). A lone CRLF
/// (a pong, or padding) is not answered, so two peers cannot ping-pong forever.
pub fn crlf_pong(datagram: &[u8]) -> Option<Bytes> {
    (datagram == b"\r\n\r\n").then(|| Bytes::from_static(b"\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(txid: [u8; 12], with_fingerprint: bool) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend(MAGIC_COOKIE.to_be_bytes());
        m.extend(txid);
        if with_fingerprint {
            m[3] = 8;
            let crc = crc32fast::hash(&m) ^ FINGERPRINT_XOR;
            m.extend([0x80, 0x28, 0, 4]);
            m.extend(crc.to_be_bytes());
        }
        m
    }

    /// Decodes XOR-MAPPED-ADDRESS and checks FINGERPRINT, the way a client would.
    fn mapped(resp: &[u8]) -> SocketAddr {
        assert!(is_stun(resp));
        assert_eq!(u16::from_be_bytes([resp[0], resp[1]]), BINDING_SUCCESS);
        let mut at = HEADER;
        let mut found = None;
        while at < resp.len() {
            let t = u16::from_be_bytes([resp[at], resp[at + 1]]);
            let l = usize::from(u16::from_be_bytes([resp[at + 2], resp[at + 3]]));
            let v = &resp[at + 4..at + 4 + l];
            match t {
                XOR_MAPPED_ADDRESS => {
                    let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
                    let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
                    key.extend(&resp[8..20]);
                    let ip: Vec<u8> = v[4..].iter().zip(&key).map(|(a, k)| a ^ k).collect();
                    let ip = match v[1] {
                        1 => IpAddr::from(<[u8; 4]>::try_from(ip).unwrap()),
                        _ => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap()),
                    };
                    found = Some(SocketAddr::new(ip, port));
                }
                FINGERPRINT => {
                    assert_eq!(at + 8, resp.len(), "FINGERPRINT comes last");
                    let crc = crc32fast::hash(&resp[..at]) ^ FINGERPRINT_XOR;
                    assert_eq!(v, crc.to_be_bytes());
                }
                other => panic!("unexpected attribute {other:#x}"),
            }
            at += 4 + l.next_multiple_of(4);
        }
        found.expect("XOR-MAPPED-ADDRESS")
    }

    #[test]
    fn binding_requests_are_answered_with_the_mapped_address() {
        for source in ["203.0.113.9:40001", "[2001:db8::7]:5062"] {
            let source: SocketAddr = source.parse().unwrap();
            for fp in [false, true] {
                let req = binding_request(*b"0123456789ab", fp);
                let resp = stun_binding_response(&req, source).unwrap();
                assert_eq!(&resp[8..20], b"0123456789ab");
                assert_eq!(mapped(&resp), source);
            }
        }
    }

    #[test]
    fn other_datagrams_are_not_stun() {
        let src: SocketAddr = "203.0.113.9:40001".parse().unwrap();
        assert!(stun_binding_response(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", src).is_none());
        let mut resp = binding_request([1; 12], false);
        resp[1] = 0x11; // a Binding indication
        assert!(stun_binding_response(&resp, src).is_none());
        let mut bad_len = binding_request([1; 12], true);
        bad_len[3] = 4;
        assert!(stun_binding_response(&bad_len, src).is_none());
    }

    #[test]
    fn double_crlf_is_a_ping_single_crlf_is_not() {
        assert_eq!(crlf_pong(b"\r\n\r\n").as_deref(), Some(&b"\r\n"[..]));
        assert!(crlf_pong(b"\r\n").is_none());
        assert!(crlf_pong(b"\r\n\r\n\r\n").is_none());
    }
}
