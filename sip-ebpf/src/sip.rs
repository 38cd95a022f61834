//! The SIP checks of the XDP program: is the first line SIP-shaped, where are the `Call-ID` and
//! `User-Agent` headers, what is the Call-ID hash, does the User-Agent name a scanner.
//!
//! The header scan jumps from line start to line start, eight bytes per step: each step loads one
//! word, compares header names on it when it starts a line (RFC 3261 §7.3.1: names are
//! case-insensitive; §7.3.3: `i` is the compact form of `Call-ID`), and looks for the LF that ends
//! the line. It stops at the blank line that ends the header section (§7), so bodies cost nothing.

use aya_ebpf::programs::XdpContext;
use sip_common::{
    CALL_ID_HASH_MAX_LEN, CallIdHasher, CpuState, FilterConfig, MAX_SCANNERS, SCANNER_WINDOW,
    method,
};

use crate::net::{SipDatagram, read_at};
use crate::swar::{byte, eq_bytes, first_flagged, fold_case, low_bytes, valid_bytes, word};

/// Header scan steps per run of the headers stage (each step: a word or a line, whichever is
/// shorter). The verifier's work grows faster than linearly with this (16: ~210k instructions,
/// 32: ~875k, 64: over the 1M budget), so the stage scans in chunks and tail-calls itself to go
/// on: [`MAX_SCAN_CALLS`] chunks of 16 = 480 steps, ~3 KiB of ordinary headers (40-byte lines
/// take 6 steps) and at least 1,500 bytes even of 3-byte lines.
pub const SCAN_STEPS_PER_CALL: usize = 16;
/// Runs of the headers stage per packet. The kernel allows 33 tail calls in a chain; the entry
/// uses one and the scanner stage one.
pub const MAX_SCAN_CALLS: u32 = 30;
/// No offset past this is read: the verifier needs a bound, and SIP over UDP stays under 1,500
/// bytes (RFC 3261 §18.1.1) while a frame on a jumbo link stays under 9,216.
pub const MAX_OFFSET: usize = 9216;
/// Longest first line searched for its LF, in words.
const MAX_LINE1_WORDS: usize = 128;
/// Longest method token (RFC 4475 §3.1.1.2's is 43 bytes).
const MAX_METHOD_LEN: usize = 64;

const FLAG_BYTES: u64 = 0x8080_8080_8080_8080;

/// What the first line says.
pub enum Shape {
    /// A request line or a status line (the method bucket is in `CpuState::last.method`).
    Sip,
    /// CRLF keep-alive or STUN binding (RFC 5626 §3.5.1, §4.4.1).
    Keepalive,
    /// No payload at all.
    Empty,
    NotSip,
}

/// The word at `off`, with bytes at or past `end` read as zero, and how many bytes are real.
#[inline(always)]
pub fn load_word(ctx: &XdpContext, off: usize, end: usize) -> Option<(u64, u32)> {
    if off >= end || off > MAX_OFFSET {
        return None;
    }
    if off + 8 <= end {
        return read_at::<u64>(ctx, off).ok().map(|w| (w, 8));
    }
    // Fewer than 8 bytes left: load the last 8 bytes of the datagram and shift the ones before
    // `off` out. `end` is at least 42 (it follows the Ethernet/IP/UDP headers).
    // `& 7`: the verifier cannot relate `end - off` to the failed `off + 8 <= end`, and would
    // otherwise assume a tail word may be full, letting every loop continue past the end.
    let n = (end - off) & 7;
    let w = read_at::<u64>(ctx, opaque(end - 8)?).ok()?;
    Some((w >> ((8 - n) * 8), n as u32))
}

/// `x` as a number the compiler cannot see through, bounded for the verifier. Offsets computed
/// as `p - k` would otherwise be folded into a pointer with a negative constant offset, which the
/// verifier rejects even when the variable part makes up for it.
#[inline(always)]
pub fn opaque(x: usize) -> Option<usize> {
    // SAFETY: reads back the local just written.
    let x = unsafe { core::ptr::read_volatile(&x) };
    (x <= MAX_OFFSET).then_some(x)
}

/// Reads a value the program stored in map memory, so the verifier sees an unknown number.
#[inline(always)]
pub fn reload(p: *const u32) -> usize {
    // SAFETY: `p` points into this CPU's `CPU_STATE` entry, valid for the whole program run.
    unsafe { core::ptr::read_volatile(p) as usize }
}

/// The datagram's end offset, read again from map memory. Inside loops: the kernel refines
/// both sides of every register-to-register compare, so a register `end` would carry a
/// different range out of each path through a step and no two paths would ever merge.
#[inline(always)]
fn fresh_end(st: *mut CpuState) -> usize {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    reload(unsafe { &raw const (*st).scratch.end })
}

/// 1 bits for RFC 3261 §25.1 `token` characters: alphanumerics and `-.!%*_+`'~`.
const TOKEN_LO: u64 = {
    let mut m = 0u64;
    let s = b"!%'*+-.0123456789";
    let mut i = 0;
    while i < s.len() {
        m |= 1 << s[i];
        i += 1;
    }
    m
};
const TOKEN_HI: u64 = {
    let mut m = 0u64;
    let s = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_`abcdefghijklmnopqrstuvwxyz~";
    let mut i = 0;
    while i < s.len() {
        m |= 1 << (s[i] - 64);
        i += 1;
    }
    m
};

#[inline(always)]
fn is_token(b: u8) -> bool {
    if b < 64 {
        (TOKEN_LO >> b) & 1 != 0
    } else if b < 128 {
        (TOKEN_HI >> (b - 64)) & 1 != 0
    } else {
        false
    }
}

#[inline(always)]
fn is_name_end(b: u8) -> bool {
    b == b':' || b == b' ' || b == b'\t'
}

/// Classifies the first line and records where the second starts in `scratch.line2`.
///
/// SIP-shaped (RFC 3261 §7.1, §7.2): a status line `SIP/<digit>...`, or a request line whose
/// method is a token followed by SP and whose last 16 bytes hold `SIP/` after a space. Lenient
/// on purpose: RFC 4475's invalid messages (double spaces, trailing spaces, huge status codes,
/// unknown versions) must still reach userspace, which answers them; only non-SIP is dropped.
#[inline(always)]
pub fn first_line(ctx: &XdpContext, d: &SipDatagram, st: *mut CpuState) -> Shape {
    let len = d.end - d.start;
    let Some((w0, n0)) = load_word(ctx, d.start, d.end) else {
        return Shape::Empty; // nothing to answer, nothing to fear
    };
    if len <= 8 {
        let crlf = (eq_bytes(w0, b'\r') | eq_bytes(w0, b'\n')) & valid_bytes(n0);
        if crlf == valid_bytes(n0) {
            return Shape::Keepalive;
        }
    }
    // STUN: first two bits zero, magic cookie 0x2112A442 at offset 4 (RFC 5389 §6).
    if len >= 20 && byte(w0, 0) & 0xc0 == 0 && (w0 >> 32) as u32 == 0x42a4_1221 {
        return Shape::Keepalive;
    }

    let is_response = fold_case(w0) & low_bytes(4) == word(b"sip/") && byte(w0, 4).is_ascii_digit();
    if !is_response && !method_is_token(ctx, d) {
        return Shape::NotSip;
    }
    if !find_line1_end(ctx, d, st) {
        return Shape::NotSip;
    }
    // SAFETY: `st` is this CPU's `CPU_STATE` entry (see `reload`).
    let lf = reload(unsafe { &raw const (*st).scratch.line2 }).wrapping_sub(1);
    if !is_response && !ends_with_version(ctx, d, lf) {
        return Shape::NotSip;
    }
    // Decided last and stored, not returned: a constant per method carried through the loops
    // above would have the verifier check them once per method.
    let method = if is_response {
        method::RESPONSE
    } else {
        request_method(ctx, d, w0)
    };
    // SAFETY: as above.
    unsafe { (*st).last.method = method };
    Shape::Sip
}

/// The method is 1–64 token characters followed by SP. Loads whole words and looks at their
/// bytes in registers: byte-sized packet loads in a loop are where the verifier loses track of
/// which pointer was bounds-checked.
#[inline(always)]
fn method_is_token(ctx: &XdpContext, d: &SipDatagram) -> bool {
    for j in 0..MAX_METHOD_LEN / 8 {
        let Some((w, n)) = load_word(ctx, d.start + j * 8, d.end) else {
            return false;
        };
        for k in 0..8u32 {
            if k >= n {
                return false;
            }
            let b = byte(w, k);
            if b == b' ' {
                return j > 0 || k > 0;
            }
            if !is_token(b) {
                return false;
            }
        }
    }
    false
}

#[inline(always)]
fn request_method(ctx: &XdpContext, d: &SipDatagram, w0: u64) -> u32 {
    if w0 & low_bytes(7) == word(b"INVITE ") {
        method::INVITE
    } else if w0 & low_bytes(4) == word(b"ACK ") {
        method::ACK
    } else if w0 & low_bytes(4) == word(b"BYE ") {
        method::BYE
    } else if w0 & low_bytes(7) == word(b"CANCEL ") {
        method::CANCEL
    } else if w0 == word(b"OPTIONS ") {
        method::OPTIONS
    } else if w0 == word(b"REGISTER")
        && load_word(ctx, d.start + 8, d.end).is_some_and(|(w, _)| byte(w, 0) == b' ')
    {
        method::REGISTER
    } else {
        method::OTHER_REQUEST
    }
}

/// Finds the LF that ends the first line and stores the offset after it in `scratch.line2`.
/// Stored, not returned: each way out of the loop gives a different offset, and the verifier
/// would check the rest of the program once per offset.
#[inline(always)]
fn find_line1_end(ctx: &XdpContext, d: &SipDatagram, st: *mut CpuState) -> bool {
    let mut off = d.start;
    for _ in 0..MAX_LINE1_WORDS {
        let Some((w, n)) = load_word(ctx, off, d.end) else {
            return false;
        };
        let m = eq_bytes(w, b'\n') & valid_bytes(n);
        if m != 0 {
            // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
            unsafe { (*st).scratch.line2 = (off + first_flagged(m) as usize + 1) as u32 };
            return true;
        }
        if n < 8 {
            return false; // the datagram ends inside the first line
        }
        off += 8;
    }
    false
}

/// A request line ends in `SP SIP/...` (the version, possibly followed by stray spaces).
#[inline(always)]
fn ends_with_version(ctx: &XdpContext, d: &SipDatagram, lf: usize) -> bool {
    if lf > MAX_OFFSET || lf < d.start + 9 {
        return false;
    }
    // The common case in two loads: " SIP/2.0" and "\r" right before the LF.
    if let Some(at) = opaque(lf - 9)
        && let Ok(w) = read_at::<u64>(ctx, at)
        && byte(w, 0) == b' '
        && fold_case(w) == fold_case(word(b" SIP/2.0"))
        && read_at::<u8>(ctx, at + 8).is_ok_and(|b| b == b'\r')
    {
        return true;
    }
    // Otherwise look for " sip/" at each of the 12 positions before it.
    for back in 6..18usize {
        if lf < d.start + back {
            return false;
        }
        let Some(at) = opaque(lf - back) else {
            return false;
        };
        if let Ok(w) = read_at::<u64>(ctx, at)
            && byte(w, 0) == b' '
            && fold_case(w) & low_bytes(5) == word(b" sip/")
        {
            return true;
        }
    }
    false
}

/// Starts a header scan at the second line (see [`scan_headers`]).
#[inline(always)]
pub fn start_header_scan(st: *mut CpuState) {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    unsafe {
        let s = &raw mut (*st).scratch;
        (*s).pos = (*s).line2;
        (*s).at_line_start = 1;
        (*s).call_id = 0;
        (*s).user_agent = 0;
    }
}

/// Runs up to [`SCAN_STEPS_PER_CALL`] steps of the header scan, recording the `Call-ID` and
/// `User-Agent` headers in `scratch.call_id` and `scratch.user_agent` (0 = absent). Returns
/// true when the scan is over (blank line, end of the datagram, or everything found), false
/// when the caller should continue it (the headers stage tail-calls itself for that).
#[inline(always)]
pub fn scan_headers(ctx: &XdpContext, st: *mut CpuState, want_ua: bool) -> bool {
    // SAFETY (all accesses to `*s` below): this CPU's `CPU_STATE` entry, see `reload`.
    // The loop keeps its position and line-start flag in `*s`, not in registers: read back from
    // map memory they are unknown to the verifier, so every path through one step ends in the
    // same state and the verifier checks one state per step instead of one per path.
    let s = unsafe { &raw mut (*st).scratch };
    for _ in 0..SCAN_STEPS_PER_CALL {
        let off = reload(unsafe { &raw const (*s).pos });
        let end = fresh_end(st);
        let Some((w, n)) = load_word(ctx, off, end) else {
            return true;
        };
        if reload(unsafe { &raw const (*s).at_line_start }) != 0 {
            if byte(w, 0) == b'\n' || w & 0xffff == word(b"\r\n") {
                return true; // the blank line: end of the header section
            }
            let f = fold_case(w);
            if f & low_bytes(7) == word(b"call-id") && is_name_end(byte(w, 7)) {
                if unsafe { (*s).call_id } == 0 {
                    unsafe { (*s).call_id = (off + 7) as u32 };
                }
            } else if f & 0xff == b'i' as u64 && is_name_end(byte(w, 1)) {
                if unsafe { (*s).call_id } == 0 {
                    unsafe { (*s).call_id = (off + 1) as u32 };
                }
            } else if want_ua
                && f == word(b"user-age")
                && let Some((w2, _)) = load_word(ctx, off + 8, end)
                && fold_case(w2) & 0xffff == word(b"nt")
                && is_name_end(byte(w2, 2))
            {
                unsafe { (*s).user_agent = (off + 10) as u32 };
            }
        }
        let m = eq_bytes(w, b'\n') & valid_bytes(n);
        let (next, line_start) = if m != 0 {
            (off + first_flagged(m) as usize + 1, 1)
        } else {
            (off + 8, 0)
        };
        unsafe {
            (*s).pos = next as u32;
            (*s).at_line_start = line_start;
        }
        if unsafe { (*s).call_id } != 0 && (!want_ua || unsafe { (*s).user_agent } != 0) {
            return true;
        }
    }
    false
}

/// From just past a header name, skips `*WSP ":" LWS` (RFC 3261 §7.3.1, §25.1, one fold) and
/// records the start of the value in `scratch.value`.
#[inline(always)]
fn value_start(ctx: &XdpContext, d: &SipDatagram, st: *mut CpuState, name_end: usize) -> bool {
    let Some((w, n)) = load_word(ctx, name_end, d.end) else {
        return false;
    };
    let colon = eq_bytes(w, b':') & valid_bytes(n);
    if colon == 0 {
        return false;
    }
    let mut off = name_end + first_flagged(colon) as usize + 1;
    for _ in 0..4 {
        let Some((w, n)) = load_word(ctx, off, d.end) else {
            return false;
        };
        let text = !(eq_bytes(w, b' ') | eq_bytes(w, b'\t')) & valid_bytes(n);
        if text == 0 {
            if n < 8 {
                return false; // only whitespace up to the end: no value
            }
            off += 8;
            continue;
        }
        off += first_flagged(text) as usize;
        // A fold: CRLF followed by SP or HT continues the LWS.
        match load_word(ctx, off, d.end) {
            Some((w, _))
                if w & 0xffff == word(b"\r\n") && (byte(w, 2) == b' ' || byte(w, 2) == b'\t') =>
            {
                off += 2;
            }
            _ => break,
        }
    }
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    unsafe { (*st).scratch.value = off as u32 };
    true
}

/// The `sip_common` hash of the Call-ID value, or `None` if there is no (non-empty) Call-ID.
#[inline(always)]
pub fn call_id_hash(ctx: &XdpContext, d: &SipDatagram, st: *mut CpuState) -> Option<u64> {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    let name_end = reload(unsafe { &raw const (*st).scratch.call_id });
    if name_end == 0 || !value_start(ctx, d, st, name_end) {
        return None;
    }
    let mut off = reload(unsafe { &raw const (*st).scratch.value });
    let mut hasher = CallIdHasher::new();
    let mut len = 0u32;
    for _ in 0..CALL_ID_HASH_MAX_LEN / 8 {
        let Some((w, n)) = load_word(ctx, off, fresh_end(st)) else {
            break;
        };
        let stop = eq_bytes(w, b'\r')
            | eq_bytes(w, b'\n')
            | eq_bytes(w, b' ')
            | eq_bytes(w, b'\t')
            | (!valid_bytes(n) & FLAG_BYTES);
        if stop != 0 {
            let k = first_flagged(stop);
            if k > 0 {
                hasher.write_word(w & low_bytes(k));
                len += k;
            }
            break;
        }
        if n < 8 {
            break; // unreachable: a short word always holds a stop flag; tells the verifier
        }
        hasher.write_word(w);
        len += 8;
        off += 8;
    }
    if len == 0 {
        return None;
    }
    Some(hasher.finish(len))
}

/// Words of the `User-Agent` value loaded for the scanner check: the searched window plus the
/// 16 bytes a signature starting in its last word may reach into.
const UA_WORDS: usize = SCANNER_WINDOW / 8 + 2;

/// True if the `User-Agent` value holds one of the configured signatures (case-folded) within
/// its first `SCANNER_WINDOW` bytes.
///
/// Loads the window once; the search then runs on registers: per word, flag the bytes equal to
/// each signature's first byte (SWAR), and only at flagged positions compare the whole signature,
/// assembled from adjacent words by shifts. No packet access depends on a match position, which
/// keeps the verifier's work linear (an earlier version loaded at each candidate and ran out of
/// its 1M-instruction budget).
#[inline(always)]
pub fn is_scanner(
    ctx: &XdpContext,
    d: &SipDatagram,
    st: *mut CpuState,
    cfg: &FilterConfig,
) -> bool {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    let name_end = reload(unsafe { &raw const (*st).scratch.user_agent });
    if name_end == 0 || !value_start(ctx, d, st, name_end) {
        return false;
    }
    let start = reload(unsafe { &raw const (*st).scratch.value });
    // The value's words, folded, with every byte from its end (CR/LF, or the datagram's end) on
    // zeroed: signatures are printable, so nothing past the value can match. Computed with masks
    // rather than an early exit, so no path carries a different constant length and the
    // verifier can merge them.
    let mut w = [0u64; UA_WORDS];
    let mut alive = u64::MAX;
    for (j, slot) in w.iter_mut().enumerate() {
        // Whole words only: the header section ends in CRLF CRLF, so at most the last three
        // bytes of a User-Agent value can fall in a datagram's final partial word.
        let off = start + j * 8;
        let (word, n) = if off + 8 <= fresh_end(st) && off <= MAX_OFFSET {
            read_at::<u64>(ctx, off).map_or((0, 0), |w| (w, 8))
        } else {
            (0, 0)
        };
        let stop = eq_bytes(word, b'\r') | eq_bytes(word, b'\n') | (!valid_bytes(n) & FLAG_BYTES);
        let keep = if stop != 0 {
            low_bytes(first_flagged(stop))
        } else {
            u64::MAX
        };
        *slot = fold_case(word) & keep & alive;
        if stop != 0 {
            alive = 0;
        }
    }
    let nsigs = cfg.num_scanners as usize;
    for j in 0..SCANNER_WINDOW / 8 {
        let (f0, f1, f2) = (w[j], w[j + 1], w[j + 2]);
        for i in 0..MAX_SCANNERS {
            if i >= nsigs {
                break;
            }
            let sig = &cfg.scanners[i];
            let mut cand = eq_bytes(f0, sig.words[0] as u8);
            for _ in 0..8 {
                if cand == 0 {
                    break;
                }
                let k = first_flagged(cand);
                cand &= cand - 1;
                let a = shift_in(f0, f1, k);
                let b = shift_in(f1, f2, k);
                if a & sig.masks[0] == sig.words[0] && b & sig.masks[1] == sig.words[1] {
                    return true;
                }
            }
        }
    }
    false
}

/// The 8 bytes starting at byte `k` of `lo`, continuing into `hi`.
#[inline(always)]
fn shift_in(lo: u64, hi: u64, k: u32) -> u64 {
    if k == 0 {
        lo
    } else {
        (lo >> (k * 8)) | (hi << (64 - k * 8))
    }
}
