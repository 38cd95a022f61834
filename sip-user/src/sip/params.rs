//! `;name[=value]` parameter lists: header parameters, where SWS may surround `;` and `=`
//! (RFC 3261 §25.1 `SEMI`, `EQUAL`), and URI parameters, where it may not (§19.1.1).

use super::scan::{is_param_end, is_token, skip_lws, skip_quoted};

/// A parameter list was malformed: an empty name (`;;`, RFC 4475 §3.1.2.1), an unterminated
/// quoted value, or something other than `;` between parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadParams;

/// Iterates `*( SEMI generic-param )` in a header value. `s` is what follows the element the
/// parameters belong to; it is empty or starts (after LWS) with `;`.
#[derive(Debug, Clone, Copy)]
pub struct HeaderParams<'b> {
    s: &'b [u8],
    i: usize,
}

impl<'b> HeaderParams<'b> {
    pub fn new(s: &'b [u8]) -> Self {
        Self { s, i: 0 }
    }

    /// The value of the first parameter with this name (case-insensitive): `Some(None)` for a
    /// parameter without a value. Stops at a malformed list.
    pub fn get(self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        // Most often the parameter asked for is the first, written `;name=value` in this case
        // with a token value (`;tag=…`, `;branch=…`): that is the first with this name, and
        // its value ends where the iterator would end it. Read without the iterator.
        if let Some(rest) = self.s[self.i..]
            .strip_prefix(b";")
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix(b"="))
            && rest.first().is_some_and(|&b| b != b'"' && !is_param_end(b))
        {
            let end = rest
                .iter()
                .position(|&b| is_param_end(b))
                .unwrap_or(rest.len());
            return Some(Some(&rest[..end]));
        }
        self.map_while(Result::ok)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Checks the whole list.
    pub fn validate(self) -> Result<(), BadParams> {
        self.into_iter().try_for_each(|p| p.map(|_| ()))
    }

    /// Checks the whole list and, on the way, reads what [`Self::get`] would for `name`: one
    /// pass where a check then a lookup would walk the list twice.
    pub fn validate_and_get(self, name: &[u8]) -> Result<Option<Option<&'b [u8]>>, BadParams> {
        let mut found = None;
        for p in self {
            let (n, v) = p?;
            if found.is_none() && n.eq_ignore_ascii_case(name) {
                found = Some(v);
            }
        }
        Ok(found)
    }
}

impl<'b> Iterator for HeaderParams<'b> {
    type Item = Result<(&'b [u8], Option<&'b [u8]>), BadParams>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let mut i = skip_lws(s, self.i);
        if i >= s.len() {
            return None;
        }
        let fail = |this: &mut Self| {
            this.i = s.len();
            Some(Err(BadParams))
        };
        if s[i] != b';' {
            return fail(self);
        }
        i = skip_lws(s, i + 1);
        let name_start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        if i == name_start {
            return fail(self);
        }
        let name = &s[name_start..i];
        i = skip_lws(s, i);
        let mut value = None;
        if s.get(i) == Some(&b'=') {
            i = skip_lws(s, i + 1);
            let v_start = i;
            if s.get(i) == Some(&b'"') {
                match skip_quoted(s, i) {
                    Some(end) => i = end,
                    None => return fail(self),
                }
            } else {
                // token, host (IPv6 references included) or anything up to the next separator.
                while i < s.len() && !is_param_end(s[i]) {
                    i += 1;
                }
            }
            if i == v_start {
                return fail(self);
            }
            value = Some(&s[v_start..i]);
        }
        self.i = i;
        Some(Ok((name, value)))
    }
}

/// Iterates `*( ";" uri-parameter )` inside a URI: no whitespace, values up to the next `;`.
#[derive(Debug, Clone, Copy)]
pub struct UriParams<'b> {
    s: &'b [u8],
}

impl<'b> UriParams<'b> {
    /// `s` starts with `;` or is empty.
    pub fn new(s: &'b [u8]) -> Self {
        Self { s }
    }

    pub fn get(self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        self.into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl<'b> Iterator for UriParams<'b> {
    type Item = (&'b [u8], Option<&'b [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s.strip_prefix(b";")?;
        let end = s.iter().position(|&b| b == b';').unwrap_or(s.len());
        let param = &s[..end];
        self.s = &s[end..];
        Some(match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
            None => (param, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_agrees_with_the_iterator() {
        // `get`'s shortcut for a first `;name=value` against the plain rule.
        let by_iterator = |s: &'static [u8], name: &[u8]| {
            HeaderParams::new(s)
                .map_while(Result::ok)
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        for s in [
            &b";tag=abc"[..],
            b";tag=abc;lr",
            b";tag=abc ;lr",
            b";tag=abc,x",
            b";tag=\"q;v\"",
            b";tag= abc",
            b";tag=;x=1",
            b";tagx=1;tag=2",
            b";TAG=1",
            b" ;tag=1",
            b";tag",
            b";tag=",
            b";branch=z9hG4bK776;received=192.0.2.1",
        ] {
            for name in [&b"tag"[..], b"branch", b"received", b"x"] {
                assert_eq!(
                    HeaderParams::new(s).get(name),
                    by_iterator(s, name),
                    "{} {}",
                    String::from_utf8_lossy(s),
                    String::from_utf8_lossy(name)
                );
            }
        }
    }

    #[test]
    fn header_params_with_sws() {
        let p = HeaderParams::new(b" ;   tag    = 1918181833n ; lr;q=\"a;b\"");
        let all: Vec<_> = p.map(Result::unwrap).collect();
        assert_eq!(
            all,
            vec![
                (&b"tag"[..], Some(&b"1918181833n"[..])),
                (&b"lr"[..], None),
                (&b"q"[..], Some(&b"\"a;b\""[..])),
            ]
        );
        assert_eq!(p.get(b"TAG"), Some(Some(&b"1918181833n"[..])));
    }

    #[test]
    fn validate_and_get_is_validate_then_get() {
        for s in [
            &b";tag=abc;lr"[..],
            b" ; TAG = x ;tag=y",
            b";lr;tag",
            b";a=1",
            b"",
            b";;tag=1",
            b";tag=\"q;v\";b",
        ] {
            let p = HeaderParams::new(s);
            let expected = p.validate().map(|()| p.get(b"tag"));
            assert_eq!(p.validate_and_get(b"tag"), expected, "{s:?}");
        }
    }

    #[test]
    fn empty_params_are_errors() {
        assert_eq!(HeaderParams::new(b";;").validate(), Err(BadParams));
        assert_eq!(HeaderParams::new(b";a=").validate(), Err(BadParams));
        assert_eq!(HeaderParams::new(b"x").validate(), Err(BadParams));
        assert_eq!(HeaderParams::new(b"").validate(), Ok(()));
    }

    #[test]
    fn uri_params() {
        let p = UriParams::new(b";lr;transport=udp;%6C%72");
        assert_eq!(p.get(b"transport"), Some(Some(&b"udp"[..])));
        assert_eq!(p.get(b"lr"), Some(None));
        assert_eq!(p.count(), 3);
    }
}
