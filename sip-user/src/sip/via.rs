//! Via header values (RFC 3261 §20.42, §18.2.1; RFC 3581 `rport`).

use super::{
    params::HeaderParams,
    scan::{eq_ic, is_token, param_end, skip_lws},
    uri::split_hostport,
};

/// The branch prefix that marks an RFC 3261 transaction identifier (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value: `SIP/2.0/transport sent-by *(;param)`.
#[derive(Debug, Clone, Copy)]
pub struct Via<'b> {
    pub transport: &'b [u8],
    pub host: &'b [u8],
    pub port: Option<u16>,
    /// `host[:port]` as written.
    pub sent_by: &'b [u8],
    pub params: HeaderParams<'b>,
    /// The first `branch`, `received` and `rport` parameters, read while the list was checked
    /// (each is looked up several times a message: the transaction key, the proxy's own-Via
    /// test, the response's destination; a lookup walked the list again, ~4,000 instructions
    /// a call). `Some(b"")` for one without a value, which no value can be (an empty value is
    /// refused).
    branch: Option<&'b [u8]>,
    received: Option<&'b [u8]>,
    rport: Option<&'b [u8]>,
}

/// The Via value does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadVia;

impl<'b> Via<'b> {
    /// Parses one element of a Via list. LWS may surround the slashes (RFC 4475 §3.1.1.1).
    pub fn parse(s: &'b [u8]) -> Result<Self, BadVia> {
        let token_at = |i: usize| {
            let mut j = i;
            while j < s.len() && is_token(s[j]) {
                j += 1;
            }
            (j > i).then_some(j)
        };
        let mut i = skip_lws(s, 0);
        if s[i..].starts_with(b"SIP/2.0/") {
            // As nearly every Via is written: no LWS to look for.
            i += b"SIP/2.0/".len();
        } else {
            let end = token_at(i).ok_or(BadVia)?;
            let name_ok = eq_ic(&s[i..end], b"SIP");
            i = skip_lws(s, end);
            if !name_ok || s.get(i) != Some(&b'/') {
                return Err(BadVia);
            }
            i = skip_lws(s, i + 1);
            let end = token_at(i).ok_or(BadVia)?;
            if &s[i..end] != b"2.0" {
                return Err(BadVia);
            }
            i = skip_lws(s, end);
            if s.get(i) != Some(&b'/') {
                return Err(BadVia);
            }
            i += 1;
        }
        i = skip_lws(s, i);
        let end = token_at(i).ok_or(BadVia)?;
        let transport = &s[i..end];
        let host_start = skip_lws(s, end);
        if host_start == end {
            return Err(BadVia);
        }
        // Up to the parameters or whitespace. A `,` ends it too (it cannot be in one value of
        // the list outside quotes; the parameter check then refuses it).
        let j = param_end(s, host_start);
        let sent_by = &s[host_start..j];
        let (host, port) = split_hostport(sent_by).ok_or(BadVia)?;
        let params = HeaderParams::new(&s[j..]);
        let (mut branch, mut received, mut rport) = (None, None, None);
        for p in params {
            let (name, value) = p.map_err(|_| BadVia)?;
            let slot = match name.len() {
                6 if eq_ic(name, b"branch") => &mut branch,
                8 if eq_ic(name, b"received") => &mut received,
                5 if eq_ic(name, b"rport") => &mut rport,
                _ => continue,
            };
            slot.get_or_insert(value.unwrap_or_default());
        }
        Ok(Via {
            transport,
            host,
            port,
            sent_by,
            params,
            branch,
            received,
            rport,
        })
    }

    pub fn branch(&self) -> Option<&'b [u8]> {
        self.branch.filter(|b| !b.is_empty())
    }

    /// The branch if it is an RFC 3261 transaction id: the magic cookie and something after
    /// it (RFC 4475 §3.2.1: the cookie alone identifies nothing).
    pub fn rfc3261_branch(&self) -> Option<&'b [u8]> {
        self.branch()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&'b [u8]> {
        self.received.filter(|r| !r.is_empty())
    }

    /// `rport` (RFC 3581): `Some(None)` when present without a value (a request for it).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport.map(|p| {
            (!p.is_empty())
                .then(|| super::scan::parse_u64(p, 65535).map(|p| p as u16))
                .flatten()
        })
    }

    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get(b"ttl")
            .flatten()
            .and_then(|t| super::scan::parse_u64(t, 255).map(|t| t as u8))
    }

    pub fn maddr(&self) -> Option<&'b [u8]> {
        self.params.get(b"maddr").flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters read while checking are the ones a lookup of the list gives: the first
    /// of each name, in any case, with or without a value.
    #[test]
    fn the_parameters_read_on_the_way_are_the_first_of_each_name() {
        for params in [
            "",
            ";branch=z9hG4bK1;received=192.0.2.1;rport=5062",
            ";rport;branch=z9hG4bK2",
            ";BRANCH=z9hG4bK3;Received=192.0.2.3;RPORT",
            ";branch;branch=z9hG4bK4",
            ";branch=z9hG4bK5;branch=z9hG4bK6;rport=1;rport",
            ";received=[2001:db8::1];rport=x",
            ";branchx=1;receive=2;rports=3",
            " ; branch = z9hG4bK7 ; rport = 9",
        ] {
            let text = format!("SIP/2.0/UDP 192.0.2.9:5060{params}");
            let v = Via::parse(text.as_bytes()).unwrap();
            let get = |name: &[u8]| v.params.get(name);
            assert_eq!(v.branch(), get(b"branch").flatten(), "{text}");
            assert_eq!(v.received(), get(b"received").flatten(), "{text}");
            let rport = get(b"rport")
                .map(|p| p.and_then(|p| crate::sip::scan::parse_u64(p, 65535).map(|p| p as u16)));
            assert_eq!(v.rport(), rport, "{text}");
        }
    }

    #[test]
    fn folded_via_with_spaces_around_slashes() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert_eq!(v.rfc3261_branch(), None);
    }

    #[test]
    fn params_of_rfc3581_and_3261() {
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK77;rport;ttl=16;maddr=239.1.1.1;received=192.0.2.4").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rfc3261_branch(), Some(&b"z9hG4bK77"[..]));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some(&b"239.1.1.1"[..]));
        assert_eq!(v.received(), Some(&b"192.0.2.4"[..]));
        let v = Via::parse(b"SIP/2.0/UDP h;branch=z9hG4bK").unwrap();
        assert_eq!(v.rfc3261_branch(), None, "the magic cookie alone");
    }

    #[test]
    fn bad_vias() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/2.0/UDP",
            b"SIP/3.0/UDP h",
            b"SIP/2.0/UDPh",
            b"SIP/2.0/UDP h;branch=",
        ] {
            assert_eq!(
                Via::parse(bad).unwrap_err(),
                BadVia,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
