//! Byte searches 16 bytes at a time: which bytes of a slice belong to a small class (up to four
//! given bytes, and optionally every byte at or below SP), as a bit mask per 16-byte chunk; and
//! two class checks of the same kind, a hostname's characters and a Call-ID's.
//!
//! The one place the parser's vector code lives (a line's LF, a URI's split points and
//! whitespace, an address's closing `>`, a comma list's delimiters, a Via's sent-by, a host, a
//! Call-ID): at the tens of bytes these searches cover, `memchr`'s runtime dispatch and set-up
//! were most of its cost under callgrind. Written by hand because it is the parser's inner
//! loop. SSE2 is part of every x86_64 CPU; other architectures, and slices shorter than 16
//! bytes (8 for a host), take the byte-by-byte path, which applies the rules of
//! [`super::scan`]: the same bytes either way, as the tests check for every byte value.

use super::scan::{is_host, is_word};

/// Bytes per chunk.
pub const CHUNK: usize = 16;

/// What a search flags.
#[derive(Clone, Copy)]
pub struct Class {
    bytes: [u8; 4],
    count: usize,
    /// Every byte at or below SP (0x20): whitespace, line ends and the control bytes.
    at_or_below_sp: bool,
}

impl Class {
    /// These bytes (one to four).
    pub const fn of(bytes: &[u8]) -> Self {
        assert!(!bytes.is_empty() && bytes.len() <= 4);
        let mut set = [0u8; 4];
        let mut i = 0;
        while i < bytes.len() {
            set[i] = bytes[i];
            i += 1;
        }
        Class {
            bytes: set,
            count: bytes.len(),
            at_or_below_sp: false,
        }
    }

    /// Every byte at or below SP.
    pub const AT_OR_BELOW_SP: Class = Class {
        bytes: [0; 4],
        count: 0,
        at_or_below_sp: true,
    };

    /// These bytes, and every byte at or below SP.
    pub const fn and_at_or_below_sp(self) -> Self {
        Class {
            at_or_below_sp: true,
            ..self
        }
    }

    #[inline(always)]
    fn has(&self, b: u8) -> bool {
        self.bytes[..self.count].contains(&b) || (self.at_or_below_sp && b <= b' ')
    }
}

/// Calls `f(offset, byte)` for every byte of `s` in `class`, in order, while it returns true;
/// false if `f` stopped the search.
#[inline(always)]
pub fn each_flagged(s: &[u8], class: Class, mut f: impl FnMut(usize, u8) -> bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    if s.len() >= CHUNK {
        let mut visit = |at: usize, mut bits: u32| {
            while bits != 0 {
                let i = at + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if !f(i, s[i]) {
                    return false;
                }
            }
            true
        };
        return each_chunk(s.len(), |at, seen| {
            visit(at, mask(s, at, class) >> seen << seen)
        });
    }
    s.iter().enumerate().all(|(i, &b)| !class.has(b) || f(i, b))
}

/// The first byte of `s` in `class`.
#[inline(always)]
pub fn find(s: &[u8], class: Class) -> Option<usize> {
    let mut found = None;
    each_flagged(s, class, |i, _| {
        found = Some(i);
        false
    });
    found
}

/// Calls `f(at, seen)` for the 16-byte chunks of a slice of `n` bytes (at least 16) in order,
/// each starting at `at`. The last one ends at `n` and may overlap the one before: its first
/// `seen` bytes were looked at already (0 for the others). Stops when `f` returns false, and
/// returns false then. The one chunk walk of this module's searches and checks.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn each_chunk(n: usize, mut f: impl FnMut(usize, u32) -> bool) -> bool {
    debug_assert!(n >= CHUNK);
    let mut at = 0;
    while at + CHUNK <= n {
        if !f(at, 0) {
            return false;
        }
        at += CHUNK;
    }
    let last = n - CHUNK;
    at == n || f(last, (at - last) as u32)
}

/// Bit `i` set if `s[at + i]` is in `class`, for the 16 bytes `s[at..at + 16]`, which must be
/// in `s`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn mask(s: &[u8], at: usize, class: Class) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    let v = load(s, at);
    // SAFETY: SSE2 is in the x86_64 baseline, so the intrinsics are always available; register
    // operations only.
    unsafe {
        let mut hits = _mm_setzero_si128();
        for &b in &class.bytes[..class.count] {
            hits = _mm_or_si128(hits, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
        }
        if class.at_or_below_sp {
            // min(v, SP) == v exactly for the bytes at or below SP (unsigned).
            let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(b' ' as i8)), v);
            hits = _mm_or_si128(hits, low);
        }
        _mm_movemask_epi8(hits) as u32
    }
}

/// The offset of the first byte of `s` that is not a hostname or IPv4 character (alphanumerics,
/// `-`, `.`, RFC 3261 §25.1), or `s.len()`. Every URI's and Via's host is checked this way, a
/// handful a message: 16 bytes at a time, and a slice of 8 to 15 bytes (an IPv4 address and
/// port) as its first and last 8 bytes in one vector.
pub fn host_len(s: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let n = s.len();
        if n >= CHUNK {
            let mut end = n;
            each_chunk(n, |at, seen| {
                let m = not_host_mask(load(s, at)) >> seen << seen;
                if m != 0 {
                    end = at + m.trailing_zeros() as usize;
                }
                m == 0
            });
            return end;
        }
        if n >= 8 {
            // Bytes 0..8 in the low half, n-8..n in the high half (overlapping when n < 16).
            let m = not_host_mask(load_halves(s));
            return if m & 0xff != 0 {
                m.trailing_zeros() as usize
            } else if m != 0 {
                n - 8 + (m >> 8).trailing_zeros() as usize
            } else {
                n
            };
        }
    }
    s.iter().position(|&b| !is_host(b)).unwrap_or(s.len())
}

/// The Call-ID hash of a header value, as [`sip_common::hash_call_id`] defines it (the kernel
/// computes the same), for the daemon's callers: every message's Call-ID is hashed on arrival,
/// and the definition's byte-by-byte search for the value's end cost ~2.4 instructions a
/// byte. Here the end is found 16 bytes at a time; the cut value goes to the definition's
/// hasher.
pub fn hash_call_id(value: &[u8]) -> u64 {
    const ENDS: Class = Class::of(b"\r\n \t");
    let value = &value[..value.len().min(sip_common::CALL_ID_HASH_MAX_LEN)];
    sip_common::hash_call_id_input(&value[..find(value, ENDS).unwrap_or(value.len())])
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m128i;

/// `s[at..at + 16]`, which must be in `s`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn load(s: &[u8], at: usize) -> __m128i {
    assert!(at + CHUNK <= s.len());
    // SAFETY: SSE2 is in the x86_64 baseline; the unaligned load reads `s[at..at + 16]`, in
    // bounds by the assertion above.
    unsafe { std::arch::x86_64::_mm_loadu_si128(s.as_ptr().add(at).cast::<__m128i>()) }
}

/// The first 8 bytes of `s` (at least 8 long) in the low half, its last 8 in the high half.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn load_halves(s: &[u8]) -> __m128i {
    let n = s.len();
    assert!(n >= 8);
    let first = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
    let last = u64::from_le_bytes(s[n - 8..].try_into().expect("8 bytes"));
    // SAFETY: SSE2 is in the x86_64 baseline; no memory is touched.
    unsafe { std::arch::x86_64::_mm_set_epi64x(last as i64, first as i64) }
}

/// Bit `i` set if byte `i` of `v` is not alphanumeric, `-` or `.`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn not_host_mask(v: __m128i) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86_64 baseline; register operations only.
    unsafe {
        // x in [lo, hi] (unsigned) exactly when min(max(x, lo), hi) == x.
        let within = |x: __m128i, lo: u8, hi: u8| {
            let clamped = _mm_min_epu8(
                _mm_max_epu8(x, _mm_set1_epi8(lo as i8)),
                _mm_set1_epi8(hi as i8),
            );
            _mm_cmpeq_epi8(clamped, x)
        };
        // `| 0x20` folds the capitals onto 'a'..='z' and no other byte: the rest of
        // 0x40..0x5f lands on `` ` `` `{|}~` and DEL, everything else stays outside.
        let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
        let host = _mm_or_si128(
            _mm_or_si128(within(lower, b'a', b'z'), within(v, b'0', b'9')),
            _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8)),
            ),
        );
        !(_mm_movemask_epi8(host) as u32) & 0xffff
    }
}

/// Bytes of a printable-ASCII range that are neither `word` characters (RFC 3261 §25.1) nor `@`:
/// what, with the bytes at or below SP and from DEL up, a Call-ID may not hold.
#[cfg(target_arch = "x86_64")]
const NOT_CALL_ID: &[u8; 8] = b"#$&,;=^|";

/// True if every byte of `s` is a `word` character or `@`, and at most one is `@`: the
/// `callid = word [ "@" word ]` rule (RFC 3261 §25.1) without the non-empty parts, which
/// [`super::fields::call_id`] does not ask for either. Every message's Call-ID is checked,
/// 16 bytes at a time (two byte-by-byte passes cost ~8 instructions a byte).
pub fn is_call_id(s: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if s.len() >= CHUNK {
        let (mut bad, mut ats) = (0u32, 0u32);
        each_chunk(s.len(), |at, seen| {
            let (b, a) = call_id_masks(load(s, at));
            bad |= b >> seen;
            ats += (a >> seen).count_ones();
            true
        });
        return bad == 0 && ats <= 1;
    }
    s.iter().all(|&b| is_word(b) || b == b'@') && s.iter().filter(|&&b| b == b'@').count() <= 1
}

/// For the 16 bytes of `v`: those that may not be in a Call-ID, and the `@`s.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn call_id_masks(v: __m128i) -> (u32, u32) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86_64 baseline; register operations only.
    unsafe {
        // min(v, SP) == v: at or below SP; max(v, DEL) == v: DEL and above (unsigned).
        let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(b' ' as i8)), v);
        let high = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x7f)), v);
        let mut bad = _mm_or_si128(low, high);
        for &b in NOT_CALL_ID {
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
        }
        let ats = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'@' as i8));
        (_mm_movemask_epi8(bad) as u32, _mm_movemask_epi8(ats) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same hash as the definition's for values of every length up to past the cap, with
    /// each terminator (and other bytes) at every place.
    #[test]
    fn the_call_id_hash_is_the_definitions() {
        let mut seen = 0;
        for len in 0..300usize {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(
                hash_call_id(&base),
                sip_common::hash_call_id(&base),
                "len {len}"
            );
            for at in (0..len).step_by(7) {
                for b in [b'\r', b'\n', b' ', b'\t', 0u8, 0x0b, 0x21, 0xff] {
                    let mut v = base.clone();
                    v[at] = b;
                    assert_eq!(
                        hash_call_id(&v),
                        sip_common::hash_call_id(&v),
                        "{len} {at} {b}"
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen > 10_000);
    }

    /// The byte-by-byte rule, for comparison.
    fn plain(s: &[u8], class: Class) -> Vec<usize> {
        (0..s.len()).filter(|&i| class.has(s[i])).collect()
    }

    fn flagged(s: &[u8], class: Class) -> Vec<usize> {
        let mut all = Vec::new();
        each_flagged(s, class, |i, _| {
            all.push(i);
            true
        });
        all
    }

    #[test]
    fn every_flagged_byte_in_order_at_every_length_and_place() {
        let classes = [
            Class::of(b"\n"),
            Class::of(b":@?;").and_at_or_below_sp(),
            Class::AT_OR_BELOW_SP,
        ];
        let bytes = [
            b'\n', b':', b'@', b'?', b';', b' ', b'\t', 0, 0x1f, 0x20, 0x21, 0x80, 0xff,
        ];
        for class in classes {
            for len in 0..50 {
                for at in 0..len {
                    for &b in &bytes {
                        let mut s = vec![b'x'; len];
                        s[at] = b;
                        s[(at * 7 + 3) % len] = b'\n';
                        assert_eq!(flagged(&s, class), plain(&s, class), "{s:?}");
                        assert_eq!(find(&s, class), plain(&s, class).first().copied());
                    }
                }
            }
        }
    }

    #[test]
    fn host_len_is_the_byte_rule_at_every_length_and_place() {
        use crate::sip::scan::is_host;
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    if len > 3 {
                        s[(at * 5 + 2) % len] = b'.'; // another host byte elsewhere
                    }
                    let want = s.iter().position(|&c| !is_host(c)).unwrap_or(len);
                    assert_eq!(host_len(&s), want, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn call_id_bytes_are_the_word_rule_and_one_at() {
        use crate::sip::scan::is_word;
        // Every byte value at every place of Call-IDs around the 16-byte chunks, with no, one
        // and two `@`s elsewhere.
        for len in 1..50 {
            for ats in [vec![], vec![len / 2], vec![0, len - 1]] {
                let mut id = vec![b'a'; len];
                for &i in &ats {
                    id[i] = b'@';
                }
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = id.clone();
                        s[at] = b;
                        let want = s.iter().all(|&c| is_word(c) || c == b'@')
                            && s.iter().filter(|&&c| c == b'@').count() <= 1;
                        assert_eq!(is_call_id(&s), want, "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_search_stops_when_told() {
        let s = [b';'; 40];
        let mut seen = 0;
        assert!(!each_flagged(&s, Class::of(b";"), |_, _| {
            seen += 1;
            seen < 20
        }));
        assert_eq!(seen, 20);
    }
}
