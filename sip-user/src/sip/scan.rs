//! Character classes and small scanners shared by the start-line, header and field parsers
//! (RFC 3261 §25.1 core rules). Everything works on byte slices and returns offsets or
//! sub-slices of its input: nothing here allocates.

use super::simd::{self, Class};

/// Character class bits, one table lookup per byte instead of a chain of comparisons: the
/// scanners below test a class per byte and stop only on the bytes that matter to them.
const TOKEN: u16 = 1;
const WORD: u16 = 2;
/// `hostname` and IPv4 characters (RFC 3261 §25.1): alphanumerics, `-`, `.`.
const HOST: u16 = 4;
/// Linear whitespace and line ends: SP, HT, CR, LF.
const LWS: u16 = 8;
/// What splits a URI into its parts: `:` `@` `?` `;`.
const URI_MARK: u16 = 16;
/// What a `#element` list scanner must look at: `,` `"` `<` `>`.
const LIST_MARK: u16 = 32;
/// `scheme` characters after the first (RFC 3986 §3.1): alphanumerics, `+`, `-`, `.`.
const SCHEME: u16 = 64;
/// Inside an IPv6 reference: hex digits, `:`, `.`.
const IPV6: u16 = 128;
/// What ends an unquoted header parameter value: `;` `,` and whitespace.
const PARAM_END: u16 = 256;

const fn class_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let word = token
            || matches!(
                c,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            );
        let host = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.');
        let mut class = 0;
        if token {
            class |= TOKEN;
        }
        if word {
            class |= WORD;
        }
        if host {
            class |= HOST;
        }
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            class |= LWS;
        }
        if matches!(c, b':' | b'@' | b'?' | b';') {
            class |= URI_MARK;
        }
        if matches!(c, b',' | b'"' | b'<' | b'>') {
            class |= LIST_MARK;
        }
        if host || c == b'+' {
            class |= SCHEME;
        }
        if c.is_ascii_hexdigit() || matches!(c, b':' | b'.') {
            class |= IPV6;
        }
        if matches!(c, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n') {
            class |= PARAM_END;
        }
        t[b] = class;
        b += 1;
    }
    t
}

static CLASS: [u16; 256] = class_table();

#[inline(always)]
fn class(b: u8) -> u16 {
    CLASS[b as usize]
}

/// Hostname and IPv4 characters: alphanumerics, `-`, `.`.
#[inline]
pub fn is_host(b: u8) -> bool {
    class(b) & HOST != 0
}

/// Characters of an IPv6 reference between its brackets.
#[inline]
pub fn is_ipv6(b: u8) -> bool {
    class(b) & IPV6 != 0
}

/// Scheme characters after the first.
#[inline]
pub fn is_scheme(b: u8) -> bool {
    class(b) & SCHEME != 0
}

/// `;` `,` or whitespace: the end of an unquoted header parameter value.
#[inline]
pub fn is_param_end(b: u8) -> bool {
    class(b) & PARAM_END != 0
}

/// SP, HT, CR or LF.
#[inline]
pub fn is_lws(b: u8) -> bool {
    class(b) & LWS != 0
}

/// `:` `@` `?` `;`, or whitespace: the bytes a URI scanner stops at.
#[inline]
pub fn is_uri_mark_or_lws(b: u8) -> bool {
    class(b) & (URI_MARK | LWS) != 0
}

/// `token` characters (RFC 3261 §25.1): alphanumerics and `-.!%*_+`'~`.
#[inline]
pub fn is_token(b: u8) -> bool {
    class(b) & TOKEN != 0
}

/// `word` characters (RFC 3261 §25.1, used by Call-ID): token plus `()<>:\"/[]?{}`.
#[inline]
pub fn is_word(b: u8) -> bool {
    class(b) & WORD != 0
}

#[inline]
pub const fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// True if every byte is a token character and there is at least one.
#[inline]
pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// The offset of the first byte at or after `i` that is not linear whitespace: SP, HT, or a
/// line fold (CRLF or LF followed by SP/HT, RFC 3261 §7.3.1).
#[inline]
pub fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        match s[i] {
            b' ' | b'\t' => i += 1,
            b'\r' if s.get(i + 1) == Some(&b'\n') && s.get(i + 2).is_some_and(|&b| is_wsp(b)) => {
                i += 3
            }
            b'\n' if s.get(i + 1).is_some_and(|&b| is_wsp(b)) => i += 2,
            _ => break,
        }
    }
    i
}

/// `s` without leading and trailing linear whitespace.
///
/// The common cases, one space before the value (after a header's colon) or nothing, and
/// nothing after, are decided inline: this runs for every header line of every message.
/// Bytes above SP are never whitespace, so two comparisons with SP decide them without the
/// class table; anything at or below SP goes the exact way.
#[inline(always)]
pub fn trim_lws(s: &[u8]) -> &[u8] {
    if let [first, .., last] = s
        && *last > b' '
    {
        if *first > b' ' {
            return s;
        }
        if *first == b' ' && s[1] > b' ' {
            return &s[1..]; // `Via: ...`, and `Content-Length: 0` (`s[1]` is then `last`)
        }
    }
    trim_lws_slow(s)
}

/// [`trim_lws`] for everything else: several spaces, tabs, folds, one byte, nothing.
#[inline(never)]
fn trim_lws_slow(s: &[u8]) -> &[u8] {
    let s = match s {
        [b' ', rest @ ..] if rest.first().is_some_and(|&b| !is_lws(b)) => rest,
        _ => s,
    };
    if let [only] = s
        && !is_lws(*only)
    {
        return s;
    }
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start && matches!(s[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    &s[start..end]
}

/// True if `s` contains whitespace or a line break anywhere (16 bytes at a time: the
/// Request-URI of every request, tens of bytes; only bytes at or below SP are looked at).
pub fn has_space(s: &[u8]) -> bool {
    !simd::each_flagged(s, Class::AT_OR_BELOW_SP, |_, b| !is_lws(b))
}

/// The offset of the first parameter-value end in `s` at or after `from` (`;` `,` SP HT CR LF,
/// [`is_param_end`]), or `s.len()`: 16 bytes at a time. Used for a Via's sent-by (-80
/// instructions a Via under callgrind); parameter values stay byte by byte, where the vector
/// search measured no faster (values of ten to twenty bytes, often under one chunk).
pub fn param_end(s: &[u8], from: usize) -> usize {
    const ENDS: Class = Class::of(b";,").and_at_or_below_sp();
    let rest = &s[from..];
    let mut end = rest.len();
    simd::each_flagged(rest, ENDS, |i, b| {
        // Control bytes are flagged with whitespace; they do not end a value.
        if is_param_end(b) {
            end = i;
        }
        !is_param_end(b)
    });
    from + end
}

/// Given `s[i] == b'"'`, the offset just past the closing quote; `None` if the string is not
/// closed. Handles `quoted-pair` escapes (RFC 3261 §25.1).
pub fn skip_quoted(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    None
}

/// A quoted string without its closing quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unterminated;

/// The offset of the first `sep` in `s` that is outside quoted strings and `<...>`.
///
/// Outside brackets only `sep`, `"` and `<` matter; inside them only the `>` that closes them
/// (brackets do not nest, and a quote inside them is a URI's byte): each is found by one
/// vectorized search rather than byte by byte — the bracketed URIs of Contact, Route and
/// Record-Route values are most of what a message's lists hold.
pub fn find_unquoted(s: &[u8], sep: u8) -> Result<Option<usize>, Unterminated> {
    debug_assert!(
        !matches!(sep, b'"' | b'<' | b'>'),
        "a separator, not a delimiter"
    );
    let mut i = 0;
    let marks = Class::of(&[sep, b'"', b'<']);
    while let Some(k) = simd::find(&s[i..], marks) {
        let at = i + k;
        match s[at] {
            b'"' => i = skip_quoted(s, at).ok_or(Unterminated)?,
            b'<' => match simd::find(&s[at + 1..], Class::of(b">")) {
                Some(close) => i = at + 1 + close + 1,
                None => return Ok(None),
            },
            _ => return Ok(Some(at)),
        }
    }
    Ok(None)
}

/// Splits a header value at top-level commas (RFC 3261 §7.3.1: `#element` lists), skipping
/// commas inside quoted strings and angle brackets. Yields trimmed elements; an unterminated
/// quote yields the rest as one element (the element's own parser reports it).
pub struct CommaList<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaList<'a> {
    pub fn new(value: &'a [u8]) -> Self {
        Self { rest: Some(value) }
    }

    /// The elements not yet returned, as one slice of the value (trimmed; `None` if none are
    /// left): what remains of a list after taking its first element off, without copying.
    pub fn remainder(&self) -> Option<&'a [u8]> {
        self.rest.map(trim_lws).filter(|r| !r.is_empty())
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        // Most values hold no quote, angle bracket or comma (a Via, one Contact without a
        // display name is bracketed): one vectorized search settles those.
        match simd::find(rest, Class::of(b",\"<")) {
            None => {
                self.rest = None;
                return Some(trim_lws(rest));
            }
            Some(i) if rest[i] == b',' => {
                self.rest = Some(&rest[i + 1..]);
                return Some(trim_lws(&rest[..i]));
            }
            Some(_) => {}
        }
        match find_unquoted(rest, b',') {
            Ok(Some(i)) => {
                self.rest = Some(&rest[i + 1..]);
                Some(trim_lws(&rest[..i]))
            }
            _ => {
                self.rest = None;
                Some(trim_lws(rest))
            }
        }
    }
}

/// Parses an unsigned decimal with at most `max` as its value; `None` if it is empty, has a
/// non-digit, or overflows.
pub fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// The first `b` in `s`. A plain loop: the fields searched here are a few dozen bytes, where a
/// SIMD `memchr`'s call and set-up cost more than the search.
#[inline]
pub fn find(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The last `b` in `s`.
#[inline]
pub fn rfind(s: &[u8], b: u8) -> Option<usize> {
    s.iter().rposition(|&c| c == b)
}

/// Case-insensitive ASCII comparison. Exact case first: what peers send (`SIP/2.0`, `tag`)
/// nearly always is, and a plain comparison costs a few instructions, not a loop.
#[inline]
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_end_agrees_with_the_byte_rule() {
        let plain = |s: &[u8], from: usize| {
            (from..s.len())
                .find(|&i| is_param_end(s[i]))
                .unwrap_or(s.len())
        };
        let fillers: [&[u8]; 3] = [b"z9hG4bK776asdhds", b"a\x01b\x7fc", b"192.0.2.10:5060"];
        for filler in fillers {
            for end in [b';', b',', b' ', b'\t', b'\r', b'\n', b'x'] {
                for len in 0..40 {
                    let mut s: Vec<u8> = filler.iter().copied().cycle().take(len).collect();
                    s.push(end);
                    s.extend_from_slice(b"rest;x");
                    for from in [0, 1, len / 2] {
                        assert_eq!(param_end(&s, from), plain(&s, from), "{s:?} from {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn lws_folds_and_trims() {
        assert_eq!(skip_lws(b" \t\r\n x", 0), 5);
        assert_eq!(
            skip_lws(b"\r\nx", 0),
            0,
            "CRLF without WSP is a line end, not LWS"
        );
        assert_eq!(trim_lws(b" \r\n\tabc \r\n"), b"abc");
    }

    #[test]
    fn has_space_agrees_with_a_plain_search() {
        for len in 0..50 {
            for at in 0..len {
                for b in [b' ', b'\t', b'\r', b'\n', 0u8, 0x1f, 0x21, 0x80, 0xff] {
                    let mut s = vec![b'x'; len];
                    s[at] = b;
                    assert_eq!(has_space(&s), is_lws(b), "len {len} at {at} byte {b:#x}");
                }
            }
            assert!(!has_space(&vec![b'x'; len]));
        }
    }

    /// Every string of up to `max_len` bytes over `alphabet`, shortest first.
    fn every_string(alphabet: &[u8], max_len: u32) -> impl Iterator<Item = Vec<u8>> + '_ {
        (0..=max_len).flat_map(move |len| {
            (0..alphabet.len().pow(len)).map(move |mut code| {
                (0..len)
                    .map(|_| {
                        let b = alphabet[code % alphabet.len()];
                        code /= alphabet.len();
                        b
                    })
                    .collect()
            })
        })
    }

    #[test]
    fn trim_fast_paths_agree_with_the_general_rule() {
        // Every string of up to 5 bytes over whitespace, line ends, two text bytes, a control
        // byte (below SP, not whitespace) and a byte above ASCII.
        let mut checked = 0;
        for s in every_string(b" \t\r\nab\x01\xff", 5) {
            let start = skip_lws(&s, 0);
            let mut end = s.len();
            while end > start && is_lws(s[end - 1]) {
                end -= 1;
            }
            assert_eq!(trim_lws(&s), &s[start..end], "{s:?}");
            checked += 1;
        }
        assert_eq!(checked, 1 + 8 + 64 + 512 + 4096 + 32768);
    }

    /// The byte-by-byte rule `find_unquoted` implements with searches.
    fn find_unquoted_bytewise(s: &[u8], sep: u8) -> Result<Option<usize>, Unterminated> {
        let mut i = 0;
        let mut in_angle = false;
        while i < s.len() {
            match s[i] {
                b'"' if !in_angle => {
                    i = skip_quoted(s, i).ok_or(Unterminated)?;
                    continue;
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b if b == sep && !in_angle => return Ok(Some(i)),
                _ => {}
            }
            i += 1;
        }
        Ok(None)
    }

    #[test]
    fn find_unquoted_agrees_with_the_bytewise_rule() {
        // Every string of up to 7 bytes over the delimiters, the separator, an escape and text.
        let mut checked = 0;
        for s in every_string(b",\"<>\\a", 7) {
            assert_eq!(
                find_unquoted(&s, b','),
                find_unquoted_bytewise(&s, b','),
                "{:?}",
                String::from_utf8_lossy(&s)
            );
            checked += 1;
        }
        assert_eq!(checked, (0..=7).map(|n| 6usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn find_unquoted_agrees_with_the_bytewise_rule_across_16_byte_chunks() {
        // The same strings (up to 5 bytes) spread out with text, so that the delimiters fall
        // in and across the vector search's chunks.
        for s in every_string(b",\"<>\\a", 5) {
            for pad in [6, 13, 17, 31] {
                for split in 0..=s.len() {
                    let mut t = vec![b'x'; pad];
                    t.extend_from_slice(&s[..split]);
                    t.extend(std::iter::repeat_n(b'y', pad));
                    t.extend_from_slice(&s[split..]);
                    assert_eq!(
                        find_unquoted(&t, b','),
                        find_unquoted_bytewise(&t, b','),
                        "{:?}",
                        String::from_utf8_lossy(&t)
                    );
                }
            }
        }
    }

    #[test]
    fn comma_lists_respect_quotes_and_angles() {
        let v: Vec<&[u8]> = CommaList::new(br#""a, b" <sip:x@y;p=1,2>, <sip:z>"#).collect();
        assert_eq!(v, vec![&br#""a, b" <sip:x@y;p=1,2>"#[..], &b"<sip:z>"[..]]);
        assert_eq!(find_unquoted(br#""open"#, b','), Err(Unterminated));
        let mut l = CommaList::new(b"a, b ,c ");
        l.next();
        assert_eq!(l.remainder(), Some(&b"b ,c"[..]));
        let mut l = CommaList::new(b"only");
        l.next();
        assert_eq!(l.remainder(), None);
    }

    #[test]
    fn numbers_check_range_and_digits() {
        assert_eq!(parse_u64(b"255", 255), Some(255));
        assert_eq!(parse_u64(b"256", 255), None);
        assert_eq!(parse_u64(b"36893488147419103232", u64::MAX), None);
        assert_eq!(parse_u64(b"-1", 10), None);
        assert_eq!(parse_u64(b"", 10), None);
    }
}
