//! `name-addr` / `addr-spec` values with header parameters: From, To, Contact, Route,
//! Record-Route (RFC 3261 §20.10, §20.20, §20.39, §25.1).

use super::{
    params::HeaderParams,
    scan::{find, is_lws, is_token, skip_lws, skip_quoted, trim_lws},
    simd::{self, Class},
    uri::Uri,
};

/// An address: optional display name (as written, quotes included), the URI, and the header
/// parameters after it (`;tag=…`, `;expires=…`, `;q=…`).
#[derive(Debug, Clone, Copy)]
pub struct Address<'b> {
    pub display: Option<&'b [u8]>,
    pub uri: Uri<'b>,
    pub uri_raw: &'b [u8],
    pub params: HeaderParams<'b>,
    /// The URI was in `<…>` (name-addr form).
    pub bracketed: bool,
}

/// Why an address did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAddress {
    /// A quoted display name without its closing quote (RFC 4475 §3.1.2.6).
    Unterminated,
    /// Anything else: a display name that is not tokens or a quoted string (§3.1.2.15), LWS
    /// inside `<…>` (§3.1.2.14), an addr-spec with `?` or `,` outside `<…>` (§3.1.2.13), a
    /// malformed URI or parameter list.
    Syntax,
}

impl<'b> Address<'b> {
    pub fn parse(value: &'b [u8]) -> Result<Self, BadAddress> {
        let parts = Parts::split(value)?;
        let uri = Uri::parse(parts.uri_raw).map_err(|_| BadAddress::Syntax)?;
        let params = HeaderParams::new(parts.params);
        params.validate().map_err(|_| BadAddress::Syntax)?;
        Ok(Address {
            display: parts.display,
            uri,
            uri_raw: parts.uri_raw,
            params,
            bracketed: parts.bracketed,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'b [u8]> {
        self.params.get(b"tag").flatten()
    }
}

/// An address value split into display name, URI and header parameters, each piece checked
/// for what the split itself needs (quotes and brackets that close, a display name of tokens,
/// an addr-spec without `?` or `,`), the URI and the parameters not yet parsed.
struct Parts<'b> {
    display: Option<&'b [u8]>,
    uri_raw: &'b [u8],
    params: &'b [u8],
    bracketed: bool,
}

impl<'b> Parts<'b> {
    fn split(value: &'b [u8]) -> Result<Self, BadAddress> {
        let s = trim_lws(value);
        let (display, rest) = if s.first() == Some(&b'"') {
            let end = skip_quoted(s, 0).ok_or(BadAddress::Unterminated)?;
            let after = skip_lws(s, end);
            if s.get(after) != Some(&b'<') {
                return Err(BadAddress::Syntax);
            }
            (Some(&s[..end]), &s[after..])
        } else if let Some(lt) = find(s, b'<') {
            let display = trim_lws(&s[..lt]);
            // *(token LWS): tokens separated by whitespace.
            if !display.iter().all(|&b| is_token(b) || is_lws(b)) {
                return Err(BadAddress::Syntax);
            }
            ((!display.is_empty()).then_some(display), &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix(b"<") {
            // The URI runs to it: tens of bytes (a flow token's Route), worth a vectorized search.
            let gt = simd::find(inner, Class::of(b">")).ok_or(BadAddress::Syntax)?;
            return Ok(Parts {
                display,
                uri_raw: &inner[..gt],
                params: &inner[gt + 1..],
                bracketed: true,
            });
        }
        // addr-spec: the URI ends at the first ';' or whitespace; what follows are header
        // parameters. A URI with '?' or ',' must be bracketed (RFC 3261 §20.10).
        let end = rest
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(rest.len());
        let uri_raw = &rest[..end];
        if uri_raw.iter().any(|&b| b == b'?' || b == b',') {
            return Err(BadAddress::Syntax);
        }
        Ok(Parts {
            display,
            uri_raw,
            params: &rest[end..],
            bracketed: false,
        })
    }
}

/// Checks an address value as [`Address::parse`] does, the URI too only `with_uri` (a From or
/// To in a response is read only for its tag), and returns its `tag` (as [`tag_of`]), read on
/// the way: validation hands the tags on to the dialog table and the loop-detection hash.
pub fn check_address(value: &[u8], with_uri: bool) -> Result<Option<&[u8]>, BadAddress> {
    let parts = Parts::split(value)?;
    if with_uri {
        Uri::parse(parts.uri_raw).map_err(|_| BadAddress::Syntax)?;
    }
    HeaderParams::new(parts.params)
        .validate_and_get(b"tag")
        .map(Option::flatten)
        .map_err(|_| BadAddress::Syntax)
}

/// The `tag` parameter of a From or To value, read by the same split as [`Address::parse`]
/// but without parsing the URI or checking every parameter: for a value `Address::parse`
/// accepts, the same as its [`Address::tag`]. The tables read tags of messages the proxy has
/// validated already, several times per message. `None` also for a value that does not split.
pub fn tag_of(value: &[u8]) -> Option<&[u8]> {
    let parts = Parts::split(value).ok()?;
    HeaderParams::new(parts.params).get(b"tag").flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_of_agrees_with_the_full_parse() {
        for value in [
            &b"Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"[..],
            b"\"A <b>;tag=x\" <sip:a@b;tag=uri-param>;tag=real",
            b"sip:carol@chicago.com;tag=3",
            b"sip:carol@chicago.com ; tag = 4 ;x",
            b" <sip:a@b> ;lr;TAG=upper",
            b"<sip:a@b>",
            b"sip:a@b",
            b"Name With Spaces <sip:a@b?x=y>;tag=z",
            b"<sip:a@b>;tag=first;tag=second",
            b"<sip:a@b>;tag=\"quoted;value\"",
            b"<sip:a@b>;tag=abc ;lr",
            b"<sip:a@b>;tagx=1;tag=2",
        ] {
            let full = Address::parse(value)
                .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(value)))
                .tag();
            assert_eq!(tag_of(value), full, "{}", String::from_utf8_lossy(value));
        }
        assert_eq!(tag_of(b"\"open <sip:a@b>;tag=1"), None);
    }

    #[test]
    fn name_addr_forms() {
        let a = Address::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display, Some(&br#""J Rosenberg \\\"""#[..]));
        assert_eq!(a.uri.host, b"example.com");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));

        let a = Address::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some(&b"caller"[..]));
        let a = Address::parse(b"sip:caller@example.net;tag=134161461246").unwrap();
        assert!(!a.bracketed);
        assert_eq!(a.tag(), Some(&b"134161461246"[..]));
    }

    #[test]
    fn rfc4475_bad_addresses() {
        assert_eq!(
            Address::parse(br#""Mr. J. User <sip:j.user@example.com>"#).unwrap_err(),
            BadAddress::Unterminated
        );
        assert!(Address::parse(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(Address::parse(br#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(Address::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(Address::parse(br#""Joe" <sip:joe@example.org>;;;;"#).is_err());
    }
}
