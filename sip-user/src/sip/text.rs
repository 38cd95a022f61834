//! Numbers and addresses written straight into an outgoing message without `core::fmt`: a
//! `write!` cost about 550 instructions (callgrind, whole daemon), and a forwarded request
//! wrote four or five of them (Via port, Max-Forwards, `received`, `rport`, branch).

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

/// `n` in decimal (`itoa`: the digits without a formatter).
pub fn put_decimal(out: &mut impl BufMut, n: impl itoa::Integer) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in lowercase hexadecimal without leading zeros, as `{:x}` writes it. Hand-written:
/// `itoa` has no hexadecimal, and this is eight lines.
pub fn put_hex(out: &mut impl BufMut, n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// An address as `Display` writes it: IPv4 octet by octet, IPv6 (rare here) by `Display`.
pub fn put_ip(out: &mut BytesMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            put_decimal(out, a);
            for octet in [b, c, d] {
                out.put_u8(b'.');
                put_decimal(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        let mut out = BytesMut::new();
        for n in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            65535,
            u32::MAX as u64,
            u64::MAX,
        ]
        .into_iter()
        .chain((0..64).map(|s| 1u64 << s))
        .chain((0..64).map(|s| (1u64 << s) - 1))
        {
            out.clear();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
            out.clear();
            put_hex(&mut out, n);
            assert_eq!(&out[..], format!("{n:x}").as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "10.0.100.9",
            "::1",
            "2001:db8::9",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            out.clear();
            put_ip(&mut out, ip);
            assert_eq!(&out[..], ip.to_string().as_bytes());
        }
    }
}
