//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), as views into the message. Other schemes
//! are kept opaque: a proxy may route on them or answer 416 (RFC 4475 §3.3.2).

use super::{
    params::UriParams,
    scan::{find, has_space, rfind},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'b> {
    Sip,
    Sips,
    Tel,
    Other(&'b [u8]),
}

/// A URI. For `sip:`/`sips:`, `user` is the userinfo before `@` (password included, escapes
/// not decoded), `host`/`port` the hostport, `params` the `;…` list and `headers` the part
/// after `?`. For `tel:`, `host` is the telephone-subscriber. Other schemes: `host` is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'b> {
    pub scheme: Scheme<'b>,
    pub user: Option<&'b [u8]>,
    pub host: &'b [u8],
    pub port: Option<u16>,
    pub params: UriParamsRaw<'b>,
    pub headers: Option<&'b [u8]>,
}

/// The raw `;…` parameter section of a URI (empty or starting with `;`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriParamsRaw<'b>(pub &'b [u8]);

impl<'b> UriParamsRaw<'b> {
    pub fn iter(self) -> UriParams<'b> {
        UriParams::new(self.0)
    }

    pub fn get(self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        self.iter().get(name)
    }
}

/// The URI does not follow its scheme's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUri;

impl<'b> Uri<'b> {
    pub fn parse(s: &'b [u8]) -> Result<Self, BadUri> {
        if s.is_empty() || has_space(s) {
            return Err(BadUri);
        }
        let colon = find(s, b':').ok_or(BadUri)?;
        let scheme = &s[..colon];
        if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
            || !scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(BadUri);
        }
        let rest = &s[colon + 1..];
        let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            if rest.is_empty() {
                return Err(BadUri);
            }
            return Ok(Uri {
                scheme: Scheme::Other(scheme),
                user: None,
                host: rest,
                port: None,
                params: UriParamsRaw(b""),
                headers: None,
            });
        };
        if scheme == Scheme::Tel {
            let end = find(rest, b';').unwrap_or(rest.len());
            if end == 0 {
                return Err(BadUri);
            }
            return Ok(Uri {
                scheme,
                user: None,
                host: &rest[..end],
                port: None,
                params: UriParamsRaw(&rest[end..]),
                headers: None,
            });
        }
        // userinfo ends at the last '@': '@' cannot appear unescaped in parameters or headers,
        // while the user part may hold ';', '?' and ',' (RFC 4475 §3.1.1.2, §3.1.1.9).
        let (user, hostpart) = match rfind(rest, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if user.is_some_and(<[u8]>::is_empty) {
            return Err(BadUri);
        }
        let (hostpart, headers) = match find(hostpart, b'?') {
            Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
            None => (hostpart, None),
        };
        let params_at = find(hostpart, b';').unwrap_or(hostpart.len());
        let (host, port) = split_hostport(&hostpart[..params_at]).ok_or(BadUri)?;
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params: UriParamsRaw(&hostpart[params_at..]),
            headers,
        })
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }
}

/// `host [":" port]` (RFC 3261 §25.1): a hostname, IPv4 address or `[IPv6]` reference, and an
/// optional port up to 65535.
pub fn split_hostport(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = find(s, b']')?;
        let host = &s[..=close];
        if !host[1..close]
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (host, &s[close + 1..])
    } else {
        let end = find(s, b':').unwrap_or(s.len());
        let host = &s[..end];
        if host.is_empty()
            || !host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        (host, &s[end..])
    };
    let port = match port {
        [] => None,
        [b':', digits @ ..] => Some(u16::try_from(super::scan::parse_u64(digits, 65535)?).ok()?),
        _ => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u = Uri::parse(b"sip:alice:pw@[2001:db8::1]:5070;transport=udp;lr?subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice:pw"[..]));
        assert_eq!(u.host, b"[2001:db8::1]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.get(b"transport"), Some(Some(&b"udp"[..])));
        assert_eq!(u.params.get(b"lr"), Some(None));
        assert_eq!(u.headers, Some(&b"subject=x"[..]));
    }

    #[test]
    fn odd_but_valid_user_parts() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        let u = Uri::parse(b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com")
            .unwrap();
        assert_eq!(u.headers, None);
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = Uri::parse(b"tel:+16505552222;phone-context=example.com").unwrap();
        assert_eq!((u.scheme, u.host), (Scheme::Tel, &b"+16505552222"[..]));
        let u = Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, Scheme::Other(b"soap.beep"));
    }

    #[test]
    fn bad_uris() {
        for bad in [
            &b"sip:"[..],
            b"sip:@host",
            b"sip:a@ho st",
            b"sip:host:99999",
            b"1sip:x",
            b"nocolon",
            b"sip:[::1",
        ] {
            assert_eq!(
                Uri::parse(bad),
                Err(BadUri),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
