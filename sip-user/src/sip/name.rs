//! Header names the stack understands, recognised case-insensitively in long or compact form
//! (RFC 3261 §7.3.3 and §20; RFC 3265 §7.2 `o`/`u`; RFC 4028 `x`; RFC 3515 `r`).

use std::fmt;

macro_rules! header_names {
    ($($variant:ident = $long:literal $(| $compact:literal)?;)*) => {
        /// A header the stack knows by name; everything else is [`HeaderName::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $($variant,)*
            Other,
        }

        impl HeaderName {
            /// Every name with its compact form (0 if it has none), in declaration order.
            const ALL: &'static [(HeaderName, &'static str, u8)] = &[
                $((HeaderName::$variant, $long, 0 $(+ $compact.as_bytes()[0])?),)*
            ];

            /// The canonical long name, as written in RFC 3261.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $long,)*
                    HeaderName::Other => "extension",
                }
            }
        }
    };
}

header_names! {
    Via = "Via" | "v";
    From = "From" | "f";
    To = "To" | "t";
    CallId = "Call-ID" | "i";
    CSeq = "CSeq";
    MaxForwards = "Max-Forwards";
    Contact = "Contact" | "m";
    ContentLength = "Content-Length" | "l";
    ContentType = "Content-Type" | "c";
    Route = "Route";
    RecordRoute = "Record-Route";
    Expires = "Expires";
    Date = "Date";
    Require = "Require";
    ProxyRequire = "Proxy-Require";
    Supported = "Supported" | "k";
    SessionExpires = "Session-Expires" | "x";
    MinSe = "Min-SE";
    RetryAfter = "Retry-After";
    UserAgent = "User-Agent";
    Subject = "Subject" | "s";
    ContentEncoding = "Content-Encoding" | "e";
    ReferTo = "Refer-To" | "r";
    Event = "Event" | "o";
    AllowEvents = "Allow-Events" | "u";
}

/// Name lookup by a collision-free hash of (first byte, last byte, length), built and checked at
/// compile time, then one comparison of at most two folded words. Written by hand because it
/// runs for every header line of every message: a linear scan of the names cost ~55
/// instructions a header, this ~20.
impl HeaderName {
    /// Recognises a header name (long or compact form, any case). `name` must hold no CR, as
    /// the parser guarantees (a name ends at the first byte at or below SP): folding with
    /// `| 0x20` is then exact, since only letters fold to letters and only `-` and CR to `-`.
    /// So a name recognised here is a token (RFC 3261 §25.1), and the parser checks only the
    /// others byte by byte.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> Self {
        match name.len() {
            // Compact forms (RFC 3261 §7.3.3).
            1 if name[0].is_ascii_alphabetic() => COMPACT[(name[0] & 0x1f) as usize],
            2..=MAX_NAME => {
                let e = &LONG[slot(name[0], name[name.len() - 1], name.len())];
                if e.len as usize == name.len() && folded_words(name) == e.words {
                    e.name
                } else {
                    HeaderName::Other
                }
            }
            _ => HeaderName::Other,
        }
    }
}

/// Longest long name the table can hold (two overlapping words).
const MAX_NAME: usize = 16;
/// Case folding for the words compared: sets bit 5 of every byte.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The table slot of a name by its first and last byte and its length. The constants were
/// searched for so that no two names share a slot; `LONG`'s construction fails to compile
/// if a new name collides (then search again).
const fn slot(first: u8, last: u8, len: usize) -> usize {
    (((first | 0x20) as usize).wrapping_mul(11) ^ (last | 0x20) as usize ^ len) & 63
}

/// A name as two folded little-endian words: its first and last 8 bytes (overlapping when
/// shorter than 16), or 4 or 2 bytes for shorter names. Together with the length they
/// determine the folded name.
const fn folded_words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    let (head, tail) = if n >= 8 {
        (le(b, 0, 8), le(b, n - 8, 8))
    } else if n >= 4 {
        (le(b, 0, 4), le(b, n - 4, 4))
    } else if n >= 2 {
        (le(b, 0, 2), le(b, n - 2, 2))
    } else {
        (0, 0)
    };
    (head | FOLD, tail | FOLD)
}

/// `k` (2, 4 or 8) bytes of `b` from `at`, little-endian, zero-extended.
#[inline(always)]
const fn le(b: &[u8], at: usize, k: usize) -> u64 {
    let mut w = [0u8; 8];
    let mut i = 0;
    while i < k {
        w[i] = b[at + i];
        i += 1;
    }
    u64::from_le_bytes(w)
}

#[derive(Clone, Copy)]
struct Entry {
    name: HeaderName,
    /// 0 in empty slots, which no name (2 bytes or more) matches.
    len: u8,
    words: (u64, u64),
}

const LONG: [Entry; 64] = {
    let mut t = [Entry {
        name: HeaderName::Other,
        len: 0,
        words: (0, 0),
    }; 64];
    let mut i = 0;
    while i < HeaderName::ALL.len() {
        let (name, long, _) = HeaderName::ALL[i];
        let b = long.as_bytes();
        assert!(
            b.len() >= 2 && b.len() <= MAX_NAME,
            "a long name is 2 to 16 bytes"
        );
        let s = slot(b[0], b[b.len() - 1], b.len());
        assert!(
            t[s].len == 0,
            "two header names share a slot: change slot()'s constants"
        );
        t[s] = Entry {
            name,
            len: b.len() as u8,
            words: folded_words(b),
        };
        i += 1;
    }
    t
};

/// Compact forms by letter (`& 0x1f`: both cases land on the same index).
const COMPACT: [HeaderName; 32] = {
    let mut t = [HeaderName::Other; 32];
    let mut i = 0;
    while i < HeaderName::ALL.len() {
        let (name, _, c) = HeaderName::ALL[i];
        if c != 0 {
            assert!(
                matches!(t[(c & 0x1f) as usize], HeaderName::Other),
                "a compact form twice"
            );
            t[(c & 0x1f) as usize] = name;
        }
        i += 1;
    }
    t
};

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn every_name_in_every_case_and_no_near_miss() {
        for &(name, long, compact) in HeaderName::ALL {
            for form in [
                long.to_string(),
                long.to_ascii_lowercase(),
                long.to_ascii_uppercase(),
            ] {
                assert_eq!(HeaderName::from_bytes(form.as_bytes()), name, "{form}");
            }
            if compact != 0 {
                for c in [compact.to_ascii_lowercase(), compact.to_ascii_uppercase()] {
                    assert_eq!(HeaderName::from_bytes(&[c]), name, "{}", c as char);
                }
            }
            // Any one byte changed (to another token byte), one added or one dropped: not this
            // name, and only another known name if it spells one.
            let b = long.as_bytes();
            let mut variants: Vec<Vec<u8>> = vec![b[1..].to_vec(), b[..b.len() - 1].to_vec()];
            variants.push([b, b"x"].concat());
            for i in 0..b.len() {
                for r in [b'x', b'-', b'1', b'.'] {
                    let mut v = b.to_vec();
                    v[i] = r;
                    variants.push(v);
                }
            }
            for v in variants {
                let got = HeaderName::from_bytes(&v);
                let spelled = HeaderName::ALL
                    .iter()
                    .find(|(_, l, c)| {
                        l.as_bytes().eq_ignore_ascii_case(&v)
                            || (v.len() == 1 && *c != 0 && v[0].eq_ignore_ascii_case(c))
                    })
                    .map_or(HeaderName::Other, |e| e.0);
                assert_eq!(got, spelled, "{}", String::from_utf8_lossy(&v));
            }
        }
        for other in [
            &b""[..],
            b"-",
            b"1",
            b"Accept",
            b"Allow",
            b"Content-Disposition",
        ] {
            assert_eq!(HeaderName::from_bytes(other), HeaderName::Other);
        }
    }

    #[test]
    fn known_names_are_letters_and_hyphens() {
        // What makes a recognised name a token without looking at its bytes (see `from_bytes`).
        for (_, long, compact) in HeaderName::ALL {
            assert!(
                long.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'),
                "{long}"
            );
            assert!(*compact == 0 || compact.is_ascii_alphabetic());
        }
        // Every byte that is not a letter or `-`, in place of each byte: never a known name
        // (CR, which folds to `-`, is the parser's to refuse).
        for (_, long, _) in HeaderName::ALL {
            for i in 0..long.len() {
                for b in
                    (0..=255u8).filter(|b| !b.is_ascii_alphabetic() && *b != b'-' && *b != b'\r')
                {
                    let mut v = long.as_bytes().to_vec();
                    v[i] = b;
                    assert_eq!(HeaderName::from_bytes(&v), HeaderName::Other, "{v:?}");
                }
            }
        }
    }

    #[test]
    fn long_compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"cseq"), HeaderName::CSeq);
        assert_eq!(HeaderName::from_bytes(b"X-Custom"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"Session-Expires"),
            HeaderName::SessionExpires
        );
    }
}
