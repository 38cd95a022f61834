//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), as views into the message. Other schemes
//! are kept opaque: a proxy may route on them or answer 416 (RFC 4475 §3.3.2).

use std::net::{IpAddr, Ipv4Addr};

use super::{
    params::UriParams,
    scan::{find, is_ipv6, is_scheme, is_uri_mark_or_lws},
    simd::{self, Class},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'b> {
    Sip,
    Sips,
    Tel,
    Other(&'b [u8]),
}

impl<'b> Scheme<'b> {
    /// The scheme named by the bytes before a URI's first `:` (case-insensitive).
    pub fn named(scheme: &'b [u8]) -> Self {
        match scheme {
            [s, i, p] if eq3(*s, *i, *p, b"sip") => Scheme::Sip,
            [s, i, p, ss] if eq3(*s, *i, *p, b"sip") && (*ss | 0x20) == b's' => Scheme::Sips,
            [t, e, l] if eq3(*t, *e, *l, b"tel") => Scheme::Tel,
            _ => Scheme::Other(scheme),
        }
    }

    /// The scheme of a URI that parses (`Uri::parse` splits it at the same first `:`),
    /// without parsing the rest of it; `None` without a `:`.
    pub fn of_uri(uri: &'b [u8]) -> Option<Self> {
        find(uri, b':').map(|colon| Scheme::named(&uri[..colon]))
    }
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
    /// Parses `s` in one pass that finds the scheme's `:`, the last `@` and, after it, the
    /// first `;` and `?` (and refuses whitespace anywhere), then checks the scheme and the
    /// hostport with one table lookup per byte.
    pub fn parse(s: &'b [u8]) -> Result<Self, BadUri> {
        let marks = Marks::of(s).ok_or(BadUri)?;
        let colon = marks.colon.ok_or(BadUri)?;
        let scheme = &s[..colon];
        match scheme.split_first() {
            Some((first, rest))
                if first.is_ascii_alphabetic() && rest.iter().all(|&b| is_scheme(b)) => {}
            _ => return Err(BadUri),
        }
        let rest = &s[colon + 1..];
        let scheme = match Scheme::named(scheme) {
            Scheme::Other(scheme) => {
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
            }
            known => known,
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
        let (user, host_at) = match marks.last_at {
            Some(at) if at == colon + 1 => return Err(BadUri),
            Some(at) => (Some(&s[colon + 1..at]), at + 1),
            None => (None, colon + 1),
        };
        let (hostpart_end, headers) = match marks.question {
            Some(q) => (q, Some(&s[q + 1..])),
            None => (s.len(), None),
        };
        let params_at = marks
            .semicolon
            .filter(|&i| i < hostpart_end)
            .unwrap_or(hostpart_end);
        let (host, port) = split_hostport(&s[host_at..params_at]).ok_or(BadUri)?;
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params: UriParamsRaw(&s[params_at..hostpart_end]),
            headers,
        })
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }
}

/// Three bytes equal, ignoring ASCII case, to the lowercase `lower`.
#[inline]
fn eq3(a: u8, b: u8, c: u8, lower: &[u8; 3]) -> bool {
    (a | 0x20) == lower[0] && (b | 0x20) == lower[1] && (c | 0x20) == lower[2]
}

/// What [`Marks`] looks at: the split points, and whitespace (with the control bytes, which
/// `Marks::note` passes over).
const MARKS: Class = Class::of(b":@?;").and_at_or_below_sp();

/// Where a URI's parts split: the first `:`, the last `@`, and after that `@` (or anywhere,
/// without one) the first `?` and `;`.
struct Marks {
    colon: Option<usize>,
    last_at: Option<usize>,
    question: Option<usize>,
    semicolon: Option<usize>,
}

impl Marks {
    /// `None` if `s` is empty or holds whitespace.
    #[inline]
    fn of(s: &[u8]) -> Option<Marks> {
        if s.is_empty() {
            return None;
        }
        let mut m = Marks {
            colon: None,
            last_at: None,
            question: None,
            semicolon: None,
        };
        // Only the split points and whitespace (a handful a URI) are looked at, found 16 bytes
        // at a time: byte by byte this loop was most of a URI's parse.
        simd::each_flagged(s, MARKS, |i, b| m.note(i, b)).then_some(m)
    }

    /// Takes byte `b` at `i` into account; false for whitespace.
    #[inline(always)]
    fn note(&mut self, i: usize, b: u8) -> bool {
        if !is_uri_mark_or_lws(b) {
            return true;
        }
        match b {
            b':' => {
                self.colon.get_or_insert(i);
            }
            b'@' => {
                self.last_at = Some(i);
                self.question = None;
                self.semicolon = None;
            }
            b'?' => {
                self.question.get_or_insert(i);
            }
            b';' => {
                self.semicolon.get_or_insert(i);
            }
            _ => return false, // whitespace
        }
        true
    }
}

/// `host [":" port]` (RFC 3261 §25.1): a hostname, IPv4 address or `[IPv6]` reference, and an
/// optional port up to 65535.
pub fn split_hostport(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let end = if s.first() == Some(&b'[') {
        let close = 1 + s[1..].iter().position(|&b| !is_ipv6(b))?;
        if s[close] != b']' {
            return None;
        }
        close + 1
    } else {
        let end = simd::host_len(s);
        if end == 0 {
            return None;
        }
        end
    };
    let port = match &s[end..] {
        [] => None,
        [b':', digits @ ..] => Some(u16::try_from(super::scan::parse_u64(digits, 65535)?).ok()?),
        _ => return None,
    };
    Some((&s[..end], port))
}

/// The address a host names when it is an IP literal (`192.0.2.1`, `[2001:db8::1]`), as
/// `IpAddr`'s parser reads it; `None` for a name. Dotted-quad IPv4, nearly every host the proxy
/// compares with a source address or routes to, is read here (the standard parser cost ~250
/// instructions a host, five a call); the rest goes to the standard parser.
pub fn ip_literal(host: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = dotted_quad(host) {
        return Some(IpAddr::V4(v4));
    }
    let text = std::str::from_utf8(host).ok()?;
    text.trim_matches(['[', ']']).parse().ok()
}

/// `a.b.c.d` with four decimal octets of at most 255 and no leading zeros (as the standard
/// parser wants them), or `None`. One pass over the bytes.
fn dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&s.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let (mut k, mut n, mut digits) = (0usize, 0u32, 0u32);
    for &b in s {
        if b == b'.' {
            if digits == 0 || k == 3 {
                return None;
            }
            octets[k] = n as u8;
            (k, n, digits) = (k + 1, 0, 0);
        } else {
            let d = u32::from(b.wrapping_sub(b'0'));
            // A digit after a leading 0, or past 255.
            if d > 9 || (digits == 1 && n == 0) {
                return None;
            }
            n = n * 10 + d;
            digits += 1;
            if n > 255 {
                return None;
            }
        }
    }
    if k != 3 || digits == 0 {
        return None;
    }
    octets[3] = n as u8;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast IPv4 path reads what the standard parser reads, and refuses what it refuses.
    #[test]
    fn ip_literals_read_as_the_standard_parser_reads_them() {
        let std_parse = |h: &str| h.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let mut hosts: Vec<String> = [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "1.2.3.-4",
            "1.2.3.1000",
            "a.b.c.d",
            "example.com",
            "[2001:db8::1]",
            "2001:db8::1",
            "[::ffff:1.2.3.4]",
            "",
            "1.2.3.4:5060",
            "१.2.3.4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in [
            "0", "9", "10", "99", "100", "199", "249", "250", "255", "256", "300", "999",
        ] {
            hosts.push(format!("{a}.1.{a}.2"));
        }
        for h in &hosts {
            assert_eq!(ip_literal(h.as_bytes()), std_parse(h), "{h:?}");
        }
    }

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
    fn marks_agree_with_the_byte_by_byte_rule() {
        // Strings over the mark bytes and a filler, long enough for the 16-byte path, the
        // marks at every position: the vector path must note exactly what the plain one does.
        let plain = |s: &[u8]| {
            let mut m = Marks {
                colon: None,
                last_at: None,
                question: None,
                semicolon: None,
            };
            s.iter().enumerate().all(|(i, &b)| m.note(i, b)).then_some((
                m.colon,
                m.last_at,
                m.question,
                m.semicolon,
            ))
        };
        let fast = |s: &[u8]| Marks::of(s).map(|m| (m.colon, m.last_at, m.question, m.semicolon));
        let bytes = [b':', b'@', b'?', b';', b' ', b'\t', 0x01, b'=', b'x'];
        for len in 16..40 {
            for (i, &a) in bytes.iter().enumerate() {
                for (j, &b) in bytes.iter().enumerate() {
                    for at in [0, 1, len / 2, len - 2, len - 1] {
                        let mut s = vec![b'x'; len];
                        s[at] = a;
                        s[(at + 1 + 7 * j + i) % len] = b;
                        assert_eq!(fast(&s), plain(&s), "{}", String::from_utf8_lossy(&s));
                    }
                }
            }
        }
    }

    #[test]
    fn the_scheme_alone_agrees_with_the_parse() {
        for uri in [
            &b"sip:a@b"[..],
            b"SIPS:a@b:5061",
            b"sIp:x;lr",
            b"tel:+1555",
            b"TEL:+1555;phone-context=x",
            b"mailto:a@b",
            b"soap.beep://192.0.2.103:3002",
            b"sipx:a@b",
        ] {
            assert_eq!(
                Scheme::of_uri(uri),
                Some(Uri::parse(uri).unwrap().scheme),
                "{}",
                String::from_utf8_lossy(uri)
            );
        }
        assert_eq!(Scheme::of_uri(b"nocolon"), None);
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
