//! IPv4/IPv6 CIDRs as the LPM tries key them (IPv4 as IPv4-mapped IPv6).

use std::{fmt, net::IpAddr, str::FromStr};

use sip_common::{HINT_WORDS, ListHints, SourceAddr, mapped_v4, mapped_v4_prefix_len};

/// A CIDR such as `198.51.100.0/24` or `2001:db8::/32`; a bare address means a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("`{0}` is not an IP address or CIDR (expected e.g. 198.51.100.0/24 or 2001:db8::/32)")]
    Syntax(String),
    #[error("`{0}`: prefix length {1} is longer than the address ({2} bits)")]
    PrefixTooLong(String, u32, u32),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::Syntax(s.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u32>()
                .map_err(|_| CidrError::Syntax(s.to_string()))?,
            None => max,
        };
        if len > max {
            return Err(CidrError::PrefixTooLong(s.to_string(), len, max));
        }
        Ok(Cidr {
            addr,
            len: len as u8,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Cidr {
    /// The key of this CIDR in a trie over [`SourceAddr`]: prefix length and address.
    pub fn trie_key(&self) -> (u32, SourceAddr) {
        match self.addr {
            IpAddr::V4(a) => (mapped_v4_prefix_len(self.len as u32), mapped_v4(a.octets())),
            IpAddr::V6(a) => (self.len as u32, a.octets()),
        }
    }

    /// The same CIDR with the host bits cleared (`198.51.100.7/24` → `198.51.100.0/24`), the
    /// form the admin API stores and shows.
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - self.len as u32).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - self.len as u32).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Cidr {
            addr,
            len: self.len,
        }
    }

    /// True if `ip` is in this CIDR; IPv4 and IPv4-mapped IPv6 compare alike, as in the tries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (len, net) = self.trie_key();
        let addr = match ip {
            IpAddr::V4(a) => mapped_v4(a.octets()),
            IpAddr::V6(a) => a.octets(),
        };
        let (net, addr) = (u128::from_be_bytes(net), u128::from_be_bytes(addr));
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        net & mask == addr & mask
    }
}

/// The hints of a list (see `sip_common::ListHints`): every bit on which an address of one of
/// the CIDRs falls is set.
pub fn hints(cidrs: &[Cidr]) -> ListHints {
    let mut h = ListHints {
        words: [0; HINT_WORDS],
    };
    for c in cidrs {
        for bits in c.hint_ranges().into_iter().flatten() {
            for bit in bits {
                h.words[bit as usize / 64] |= 1 << (bit % 64);
            }
        }
    }
    h
}

impl Cidr {
    /// The [`sip_common::hint_bit`]s its addresses fall on: in the IPv4 half the /16s of the
    /// IPv4-mapped addresses it covers, in the other half the first 16 bits of its addresses
    /// (set for IPv4 CIDRs too, as `::ffff:…` starts with 0: one bit more than needed).
    fn hint_ranges(&self) -> [Option<std::ops::Range<u32>>; 2] {
        let (len, addr) = self.trie_key();
        // The `span` values from `first` on that a prefix `bits` long of a 16-bit field covers.
        let field = |first: u32, bits: u32| {
            let span = 1u32 << (16 - bits.min(16));
            let start = first & !(span - 1);
            start..start + span
        };
        let first16 = u32::from(addr[0]) << 8 | u32::from(addr[1]);
        let v6 = field(first16, len);
        let v6 = (1 << 16) + v6.start..(1 << 16) + v6.end;
        // IPv4-mapped addresses: those whose first 96 bits are `::ffff`; the CIDR covers some
        // if it agrees with them on its first min(len, 96) bits.
        let mapped = u128::from_be_bytes(mapped_v4([0; 4]));
        let shared = len.min(96);
        let covers_mapped =
            shared == 0 || (u128::from_be_bytes(addr) ^ mapped) >> (128 - shared) == 0;
        let v4 = covers_mapped.then(|| {
            let slash16 = u32::from(addr[12]) << 8 | u32::from(addr[13]);
            field(slash16, len.saturating_sub(96))
        });
        [v4, Some(v6)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_a_cidr_holds_has_its_hint_bit_set() {
        let cidrs = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "198.51.100.0/24",
            "203.0.113.7",
            "192.0.2.0/15",
            "::/0",
            "::/8",
            "::ffff:0:0/96",
            "::ffff:10.0.0.0/104",
            "2001:db8::/32",
            "2000::/3",
            "fe80::1",
            "2001:db8::/12",
        ];
        let probes = [
            "10.1.2.3",
            "10.255.0.1",
            "11.0.0.1",
            "172.31.255.255",
            "172.32.0.1",
            "198.51.100.9",
            "198.51.101.9",
            "203.0.113.7",
            "203.0.113.8",
            "192.1.255.1",
            "192.2.0.1",
            "8.8.8.8",
            "::1",
            "::ffff:10.9.9.9",
            "2001:db8::5",
            "2001:db9::5",
            "3fff::1",
            "4000::1",
            "fe80::1",
            "fe80::2",
        ];
        for c in cidrs {
            let cidr: Cidr = c.parse().unwrap();
            let h = hints(&[cidr]);
            let set = h.words.iter().map(|w| w.count_ones()).sum::<u32>();
            for p in probes {
                let ip: IpAddr = p.parse().unwrap();
                let addr = match ip {
                    IpAddr::V4(a) => mapped_v4(a.octets()),
                    IpAddr::V6(a) => a.octets(),
                };
                let bit = sip_common::hint_bit(sip_common::source_words(&addr)) as usize;
                let hinted = h.words[bit / 64] >> (bit % 64) & 1 == 1;
                assert!(
                    !cidr.contains(ip) || hinted,
                    "{c} holds {p}: its bit is set"
                );
            }
            // Coarse, not everything: a /24 or a host sets one bit in each half.
            if cidr.len >= 16 && cidr.addr.is_ipv4() {
                assert_eq!(set, 2, "{c}");
            }
        }
        assert_eq!(
            hints(&["10.0.0.0/8".parse().unwrap()]).words[..1024]
                .iter()
                .map(|w| w.count_ones())
                .sum::<u32>(),
            256,
            "a /8 covers 256 /16s"
        );
    }

    #[test]
    fn parses_v4_v6_and_hosts() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert_eq!(c.trie_key().0, 120);
        assert_eq!(&c.trie_key().1[10..], &[0xff, 0xff, 198, 51, 100, 0]);
        let h: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(h.len, 128);
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().trie_key().0, 128);
    }

    #[test]
    fn contains_v4_v6_and_mapped() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(c.contains("198.51.100.200".parse().unwrap()));
        assert!(c.contains("::ffff:198.51.100.1".parse().unwrap()));
        assert!(!c.contains("198.51.101.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn network_clears_the_host_bits() {
        let n = |s: &str| s.parse::<Cidr>().unwrap().network().to_string();
        assert_eq!(n("198.51.100.7/24"), "198.51.100.0/24");
        assert_eq!(n("198.51.100.7"), "198.51.100.7/32");
        assert_eq!(n("10.1.2.3/0"), "0.0.0.0/0");
        assert_eq!(n("2001:db8:1::5/32"), "2001:db8::/32");
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong(..))
        ));
        assert!(matches!(
            "example.com".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
    }
}
