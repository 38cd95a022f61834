//! The SIP checks of the XDP program: is the first line SIP-shaped, where are the `Call-ID` and
//! `User-Agent` headers, what is the Call-ID hash, does the User-Agent name a scanner.
//!
//! The header scan is a `may_goto` loop (see [`next_round`]), the scanner check a bounded loop
//! over a copy of the value: one program, no tail calls. The scan reads 32 bytes a round, looks
//! for an LF in them and compares the header name after it (RFC 3261 §7.3.1: names are
//! case-insensitive; §7.3.3: `i` is the compact form of `Call-ID`). It stops at the blank line
//! that ends the header section (§7), so bodies cost nothing.

use aya_ebpf::programs::XdpContext;
use sip_common::{
    CALL_ID_HASH_MAX_LEN, CallIdHasher, CpuState, FilterConfig, MAX_SCANNER_LEN, MAX_SCANNERS,
    SCANNER_WINDOW, Scratch, method,
};

use crate::net::{SipDatagram, read_at};
use crate::swar::{
    FLAG_BYTES, below_lowest, byte, eq_bytes, eq_bytes_lowest, first_flagged, fold_case, low_bytes,
    past_first_flagged, valid_bytes, word,
};

/// Offsets the header scan carries across loop iterations are masked with this (see
/// [`next_round`]), so the scan covers the first 4 KiB of a datagram: all of the linear data of
/// a one-page frame, where the driver puts it.
pub const SCAN_LIMIT: usize = 4095;
/// No offset past this is read: the verifier needs a bound, and SIP over UDP stays under 1,500
/// bytes (RFC 3261 §18.1.1) while a frame on a jumbo link stays under 9,216.
pub const MAX_OFFSET: usize = 9216;
/// Longest first line searched for its LF, in words.
const MAX_LINE1_WORDS: usize = 128;
/// Longest method token (RFC 4475 §3.1.1.2's is 43 bytes).
const MAX_METHOD_LEN: usize = 64;

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

/// Reads a value from map memory (the program's own `CPU_STATE` entry, or the config), so the
/// verifier sees an unknown number, and LLVM cannot keep it in a register across a loop.
#[inline(always)]
pub fn reload(p: *const u32) -> usize {
    // SAFETY: `p` points into a map value (this CPU's `CPU_STATE` entry or the `CONFIG`
    // entry), valid for the whole program run.
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
    let method = if is_response {
        method::RESPONSE
    } else {
        request_method(ctx, d, w0)
    };
    // Kept in map memory, not in a register: a constant per method carried through the loops
    // below would have the verifier check them once per method.
    // SAFETY: `st` is this CPU's `CPU_STATE` entry (see `reload`).
    unsafe { (*st).scratch.method = method };
    // A method the first word names (with its SP) needs no byte-by-byte token check.
    if method == method::OTHER_REQUEST && !method_is_token(ctx, d) {
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
    // Counted only now that the line is SIP-shaped.
    // SAFETY: as above.
    unsafe { (*st).last.method = reload(&raw const (*st).scratch.method) as u32 };
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
            unsafe { (*st).scratch.line2 = (off + past_first_flagged(m) as usize) as u32 };
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

/// The 8 bytes at `p`.
///
/// # Safety
/// `p..p + 8` must have been checked against the packet's end.
#[inline(always)]
unsafe fn read_word(p: usize) -> u64 {
    // SAFETY: the caller checked the bounds; packet data has no alignment.
    unsafe { (p as *const u64).read_unaligned() }
}

/// Where the first LF of a 32-byte chunk is, from its four words' LF flags (the lowest flag of
/// each exact; one must be non-zero): one past its offset (1..=32), and whether the chunk may
/// hold another LF after it (possibly a false alarm, never a miss).
#[inline(always)]
fn first_lf_of(m: [u64; 4]) -> (u64, bool) {
    if m[0] != 0 {
        let more = m[0] & (m[0] - 1) | m[1] | m[2] | m[3];
        (past_first_flagged(m[0]) as u64, more != 0)
    } else if m[1] != 0 {
        let more = m[1] & (m[1] - 1) | m[2] | m[3];
        (8 + past_first_flagged(m[1]) as u64, more != 0)
    } else if m[2] != 0 {
        let more = m[2] & (m[2] - 1) | m[3];
        (16 + past_first_flagged(m[2]) as u64, more != 0)
    } else {
        (24 + past_first_flagged(m[3]) as u64, m[3] & (m[3] - 1) != 0)
    }
}

/// Moves `pos` on by `step` for one more round of a scan loop; `false` when the kernel's loop
/// budget is spent.
///
/// `may_goto` (kernel 6.9+) lets a loop run without the verifier walking every iteration: the
/// verifier only needs each iteration's start state to be one it has seen. To make that so, the
/// offsets a loop carries are made *canonical* here, in the same asm block: `x += z` with `z` a
/// number that is 0 at run time and that the verifier only knows to lie in 0..4096 (see
/// [`canon_zero`]) leaves the low bits of `x` unknown to it, and `x &= 4095` bounds them, so
/// every round starts with `pos` and `end` in 0..4096 and nothing else known. Without it every
/// iteration has a different known range and the verifier cannot prune (it ran out of its
/// 1M-instruction budget). In a separate asm block, LLVM moved the masking away from `may_goto`
/// and pruning stopped working, so the two stay together. Real offsets stay below
/// [`SCAN_LIMIT`] + 1.
///
/// The step is added here, after `pos += z`, because it is the end of the chain that runs
/// through every round (load, LF flags, [`past_first_flagged`]): two operations on that chain
/// where the former `pos += step; pos &= 4095; pos ^= k; pos ^= k` were five.
#[inline(always)]
fn next_round(pos: &mut u64, step: u64, end: &mut u64, z: u64) -> bool {
    let spent: u64;
    // SAFETY: ALU operations on the given registers and `may_goto`, which either falls through
    // or jumps over the one instruction after it (to the end of this block); no memory access.
    // `.8byte`: the raw `may_goto +1` (BPF_JMP | BPF_JCOND, offset 1), which this LLVM's BPF
    // assembler has no mnemonic for in inline asm.
    unsafe {
        core::arch::asm!(
            "{pos} += {z}",
            "{pos} += {step}",
            "{pos} &= 4095",
            "{end} += {z}",
            "{end} &= 4095",
            "{spent} = 1",
            ".8byte 0x00000000000100e5",
            "{spent} = 0",
            pos = inout(reg) *pos,
            end = inout(reg) *end,
            step = in(reg) step,
            z = in(reg) z,
            spent = out(reg) spent,
            options(nostack),
        );
    }
    spent == 0
}

/// 0, as a number the verifier knows only to lie in 0..4096, for [`next_round`]: the difference
/// of two reads of the same packet bytes (low bits of the destination MAC, which no check
/// compares), which the verifier takes for two unknown values. `None` only if the frame has no
/// Ethernet header (already excluded): no constant stand-in, which would let the verifier see
/// through the masking.
#[inline(always)]
pub fn canon_zero(ctx: &XdpContext) -> Option<u64> {
    let p = crate::net::ptr_at::<u16>(ctx, 4).ok()?;
    // SAFETY: `ptr_at` checked that the two bytes lie in the packet. Volatile: two reads that
    // LLVM cannot merge into one (which would make the difference a constant 0 it folds away).
    let (a, b) = unsafe { (p.read_volatile(), p.read_volatile()) };
    Some((a as u64).wrapping_sub(b as u64) & SCAN_LIMIT as u64)
}

/// The header scan: from the second line to the blank line that ends the header section
/// (RFC 3261 §7), records the `Call-ID` and `User-Agent` headers in `scratch.call_id` and
/// `scratch.user_agent` (0 = absent); stops early once it has what it needs.
///
/// One loop round looks at the 32 bytes from `pos` for an LF. Where it finds one it checks the
/// header name that starts right after it (names are case-insensitive, §7.3.1; `i` is
/// `Call-ID`'s compact form, §7.3.3), from two words loaded there, inside the 48 bytes
/// checked for the round. The next round starts 32 bytes on, unless the chunk holds a second
/// LF, where it starts at the line just checked; either way the name at a round's start, if
/// one starts there, has been checked. So in the usual round the next round's address does not
/// wait for this round's LF search: the load, the LF flags and the position of the first LF are
/// a chain of ~15 cycles that each line paid for when every round started at a line start.
/// The scan begins at the first line's LF. Near the datagram's end it goes one checked word a
/// round. Datagrams longer than [`SCAN_LIMIT`] are scanned up to it.
#[inline(always)]
pub fn scan_headers(ctx: &XdpContext, st: *mut CpuState, want_ua: bool, z: u64) {
    let data = ctx.data();
    let data_end = ctx.data_end();
    // SAFETY: `st` is this CPU's `CPU_STATE` entry, valid and ours alone for the whole run
    // (see `reload`); so is `*s`, its scratch, in every access below.
    let s = unsafe { &raw mut (*st).scratch };
    // SAFETY: as above.
    unsafe {
        (*s).call_id = 0;
        (*s).user_agent = 0;
    }
    // The first line's LF (`line2` is at least 1).
    // SAFETY: as above.
    let mut pos = (reload(unsafe { &raw const (*s).line2 }) as u64).wrapping_sub(1);
    let mut end = fresh_end(st).min(SCAN_LIMIT) as u64;
    let mut step = 0;
    while next_round(&mut pos, step, &mut end, z) {
        let off = pos as usize;
        let lim = end as usize;
        let p = data + off;
        // Two ways through a round, each whole: one flag choosing between them at three places
        // cost more instructions (kept as a 0/1 value) than the code it shared.
        // 48 bytes of the datagram: the chunk and the name after an LF at its end.
        if off + 48 <= lim && p + 48 <= data_end {
            // SAFETY: `p + 48 <= data_end` was checked just above.
            let w = unsafe {
                [
                    read_word(p),
                    read_word(p + 8),
                    read_word(p + 16),
                    read_word(p + 24),
                ]
            };
            let m = w.map(|w| eq_bytes_lowest(w, b'\n'));
            if m[0] | m[1] | m[2] | m[3] == 0 {
                step = 32;
                continue;
            }
            let (past, more) = first_lf_of(m);
            // `past` ≤ 32, so the name lies in the 48 bytes checked above; checked again for
            // the verifier, which does not carry a check over to a pointer moved by a variable.
            let q = p + (past & 63) as usize;
            if q + 16 > data_end {
                break;
            }
            // SAFETY: `q + 16 <= data_end` was checked just above.
            let (n0, n1) = unsafe { (read_word(q), read_word(q + 8)) };
            if header_found(s, off + past as usize, n0, n1, want_ua) {
                break;
            }
            step = if more { past } else { 32 };
        } else {
            // Near the datagram's end: one checked word a round.
            let Some((w0, n0)) = load_word(ctx, off, lim) else {
                break;
            };
            let m0 = eq_bytes_lowest(w0, b'\n') & valid_bytes(n0);
            if m0 == 0 {
                if n0 < 8 {
                    break; // the datagram ends inside this line
                }
                step = 8;
                continue;
            }
            let past = past_first_flagged(m0) as usize;
            let Some((n0, _)) = load_word(ctx, off + past, lim) else {
                break; // the datagram ends with this LF
            };
            let n1 = load_word(ctx, off + past + 8, lim).map_or(0, |(w, _)| w);
            if header_found(s, off + past, n0, n1, want_ua) {
                break;
            }
            step = past as u64;
        }
    }
}

/// At a line start: the blank line that ends the header section, or a header name to record
/// (names are case-insensitive, §7.3.1; `i` is `Call-ID`'s compact form, §7.3.3). `true` when
/// the scan should stop: the section ended, or it has found what it needs.
#[inline(always)]
fn header_found(s: *mut Scratch, off: usize, w0: u64, w1: u64, want_ua: bool) -> bool {
    if byte(w0, 0) == b'\n' || w0 & 0xffff == word(b"\r\n") {
        return true; // the blank line: end of the header section
    }
    let f = fold_case(w0);
    // The scan's state is read only where a name matched: on the other lines (most of them)
    // the check is the blank-line test and one byte compare per name.
    match byte(f, 0) {
        b'c' if f & low_bytes(7) == word(b"call-id") && is_name_end(byte(w0, 7)) => {
            // SAFETY: `s` is this CPU's scratch (see `scan_headers`), in every block below.
            unsafe { found_call_id(s, (off + 7) as u32, want_ua) }
        }
        b'i' if is_name_end(byte(w0, 1)) => {
            // SAFETY: as above.
            unsafe { found_call_id(s, (off + 1) as u32, want_ua) }
        }
        b'u' if want_ua
            && f == word(b"user-age")
            && fold_case(w1) & 0xffff == word(b"nt")
            && is_name_end(byte(w1, 2)) =>
        {
            // SAFETY: as above.
            unsafe {
                (*s).user_agent = (off + 10) as u32;
                (*s).call_id != 0
            }
        }
        _ => false,
    }
}

/// Records where a Call-ID name ends (the first such header's); `true` if the scan has all it
/// needs.
///
/// # Safety
/// `s` is this CPU's scratch (see `scan_headers`).
#[inline(always)]
unsafe fn found_call_id(s: *mut Scratch, name_end: u32, want_ua: bool) -> bool {
    // SAFETY: the caller's.
    unsafe {
        if (*s).call_id == 0 {
            (*s).call_id = name_end;
        }
        !want_ua || (*s).user_agent != 0
    }
}

/// The Call-ID hash in the common case, after one bounds check: the value found by
/// [`value_after_name`] ends (CR, LF, SP or HT) within its first 64 bytes. `None` in any other
/// case, which [`call_id_hash`]'s general loop handles (it checks every word on its own).
#[inline(always)]
fn short_call_id_hash(ctx: &XdpContext, st: *mut CpuState, name_end: usize) -> Option<u64> {
    let v = value_after_name(ctx, st, name_end)?;
    let mut hasher = CallIdHasher::new();
    for j in 0..8 {
        // SAFETY: `value_after_name` checked `v + 64 <= data_end`.
        let w = unsafe { read_word(v + 8 * j) };
        let stop = call_id_stops(w, 0);
        if stop != 0 {
            let len = 8 * j as u32 + hash_last_word(&mut hasher, w, stop);
            return (len > 0).then(|| hasher.finish(len));
        }
        hasher.write_word(w);
    }
    None
}

/// Flags (0x80) at the bytes of `w` that end a Call-ID value for hashing (CR, LF, SP, HT: as
/// `sip_common::is_call_id_terminator`) and at those in `past` (bytes past the datagram); 0 if
/// there are none. The terminators are all below 0x21: a cheap test first, the exact one only
/// on a word that has such a byte (usually the value's last).
#[inline(always)]
fn call_id_stops(w: u64, past: u64) -> u64 {
    if below_lowest(w, 0x21) | past == 0 {
        return 0;
    }
    eq_bytes(w, b'\r') | eq_bytes(w, b'\n') | eq_bytes(w, b' ') | eq_bytes(w, b'\t') | past
}

/// Feeds the bytes of `w` before its first `stop` flag to `hasher`; how many they are.
#[inline(always)]
fn hash_last_word(hasher: &mut CallIdHasher, w: u64, stop: u64) -> u32 {
    let k = first_flagged(stop);
    if k > 0 {
        hasher.write_word(w & low_bytes(k));
    }
    k
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
    let mut off = name_end + past_first_flagged(colon) as usize;
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
    if name_end == 0 {
        return None;
    }
    if let Some(hash) = short_call_id_hash(ctx, st, name_end) {
        return Some(hash);
    }
    if !value_start(ctx, d, st, name_end) {
        return None;
    }
    // SAFETY: as above.
    let mut off = reload(unsafe { &raw const (*st).scratch.value });
    let mut hasher = CallIdHasher::new();
    let mut len = 0u32;
    for _ in 0..CALL_ID_HASH_MAX_LEN / 8 {
        let Some((w, n)) = load_word(ctx, off, fresh_end(st)) else {
            break;
        };
        let stop = call_id_stops(w, !valid_bytes(n) & FLAG_BYTES);
        if stop != 0 {
            len += hash_last_word(&mut hasher, w, stop);
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

/// Words of a `User-Agent` value the scanner check reads: the window, and the longest
/// signature's bytes after the window's last start position.
const WINDOW_WORDS: usize = (SCANNER_WINDOW + MAX_SCANNER_LEN) / 8;
const _: () = assert!(WINDOW_WORDS * 8 == 64 && SCANNER_WINDOW.is_multiple_of(8));

/// True if the `User-Agent` value holds one of the configured signatures (case-folded) within
/// its first `SCANNER_WINDOW` bytes.
///
/// The value's first 64 bytes are put in `scratch.window` once, folded and cut at the value's
/// end ([`fold_window`]); then each round looks at one word of it: it flags the bytes equal to
/// each signature's first byte (SWAR) and only at flagged positions compares the whole
/// signature, two words read from the window at that byte. The rounds are a plain bounded loop:
/// with the words read from map memory every round starts in the same verifier state, so the
/// verifier walks six short rounds (~7k instructions more than a `may_goto` loop, and as fast).
/// With the words loaded from the packet in each round (three, and a second way near the
/// datagram's end) a round cost twice as much, and took a `may_goto` loop to verify.
#[inline(always)]
pub fn is_scanner(
    ctx: &XdpContext,
    d: &SipDatagram,
    st: *mut CpuState,
    cfg: &FilterConfig,
) -> bool {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`.
    let name_end = reload(unsafe { &raw const (*st).scratch.user_agent });
    if name_end == 0 {
        return false;
    }
    if !load_after_name(ctx, st, name_end)
        && !(value_start(ctx, d, st, name_end) && load_value(ctx, st))
    {
        return false;
    }
    fold_window(st);
    // SAFETY: as above.
    let window = unsafe { &raw const (*st).scratch.window }.cast::<u8>();
    for round in 0..SCANNER_WINDOW / 8 {
        let at = round * 8;
        // SAFETY: as above.
        if at >= reload(unsafe { &raw const (*st).scratch.window_len }) {
            return false;
        }
        let f = window_word(window, at);
        // Read in each round: a count kept in a register would leave the loop with a range
        // narrowed by each `i >= nsigs` exit, and no two rounds would start in the same state.
        let nsigs = reload(&raw const cfg.num_scanners);
        for i in 0..MAX_SCANNERS {
            if i >= nsigs {
                break;
            }
            let sig = &cfg.scanners[i];
            let mut cand = eq_bytes(f, sig.words[0] as u8);
            for _ in 0..8 {
                if cand == 0 {
                    break;
                }
                let pos = at + (first_flagged(cand) & 7) as usize;
                cand &= cand - 1;
                if window_word(window, pos) & sig.masks[0] == sig.words[0]
                    && window_word(window, pos + 8) & sig.masks[1] == sig.words[1]
                {
                    return true;
                }
            }
        }
    }
    false
}

/// The 8 bytes of `scratch.window` from byte `at`.
#[inline(always)]
fn window_word(window: *const u8, at: usize) -> u64 {
    // SAFETY: `window` is this CPU's `scratch.window` (128 bytes, see `reload`); callers pass
    // `at` < `SCANNER_WINDOW` + `MAX_SCANNER_LEN` - 8, so the 8 bytes lie inside it.
    unsafe { window.add(at).cast::<u64>().read_unaligned() }
}

/// The start of the value of the header whose name ends at `name_end`, found from the name in
/// one step, without [`value_start`]'s chain of dependent loads, in the common case: the value
/// starts within the 16 bytes after the name (`": "`, no fold), and 80 bytes from the name on
/// lie in the datagram. A packet address with the 64 bytes after it checked against the
/// frame's end; `None` in any other case, which the general path handles.
#[inline(always)]
fn value_after_name(ctx: &XdpContext, st: *mut CpuState, name_end: usize) -> Option<usize> {
    let p = ctx.data() + name_end;
    if name_end > MAX_OFFSET || name_end + 80 > fresh_end(st) || p + 80 > ctx.data_end() {
        return None;
    }
    // SAFETY: `p + 80 <= data_end` was checked just above.
    let (w0, w1) = unsafe { (read_word(p), read_word(p + 8)) };
    // `*WSP ":"` (RFC 3261 §7.3.1): the colon in the first word.
    let colon = eq_bytes(w0, b':');
    if colon == 0 {
        return None;
    }
    let after = past_first_flagged(colon) & 7; // 0: the colon is the word's last byte
    let rest = if after == 0 {
        w1
    } else {
        (w0 >> (after * 8)) | (w1 << (64 - after * 8))
    };
    // Then `*WSP` and the value's first byte, unless that is a CR (a fold, or no value).
    let text = !(eq_bytes(rest, b' ') | eq_bytes(rest, b'\t')) & FLAG_BYTES;
    if text == 0 || byte(rest, first_flagged(text) & 7) == b'\r' {
        return None;
    }
    let lead = if after == 0 { 8 } else { after } + (first_flagged(text) & 7);
    let v = p + lead as usize;
    (v + 64 <= ctx.data_end()).then_some(v)
}

/// [`value_after_name`] for the scanner check: stores the value's first 64 bytes in
/// `scratch.window` for [`fold_window`]; `false` (and nothing stored) where it does not apply.
#[inline(always)]
fn load_after_name(ctx: &XdpContext, st: *mut CpuState, name_end: usize) -> bool {
    let Some(v) = value_after_name(ctx, st, name_end) else {
        return false;
    };
    // Loaded from the value's start, so that `fold_window` has nothing to move (lead 0), and
    // reads each word back from where it was just stored. (Storing from the name on and
    // letting `fold_window` move the value measured no different in bench-xdp.)
    // SAFETY: `value_after_name` checked `v + 64 <= data_end`; `w` is this CPU's 16-word
    // window (see `reload`).
    unsafe {
        let w = (&raw mut (*st).scratch.window).cast::<u64>();
        for j in 0..8 {
            w.add(j).write(read_word(v + 8 * j));
        }
        (*st).scratch.window_len = 0;
    }
    true
}

/// Stores the first 64 bytes of the value at `scratch.value` in `scratch.window`, and where
/// the value starts in them in `scratch.window_len`, for [`fold_window`]. `false` if the value
/// cannot be read (it runs past the frame's linear data).
#[inline(always)]
fn load_value(ctx: &XdpContext, st: *mut CpuState) -> bool {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`; `w` is its 16-word window.
    let (start, end, w) = unsafe {
        (
            reload(&raw const (*st).scratch.value),
            fresh_end(st),
            (&raw mut (*st).scratch.window).cast::<u64>(),
        )
    };
    if start >= end || start > MAX_OFFSET || end < 64 {
        return false;
    }
    let data = ctx.data();
    let p = data + start;
    let lead = if start + 64 <= end && p + 64 <= ctx.data_end() {
        for j in 0..8 {
            // SAFETY: `p + 64 <= data_end` was checked just above; `w` as above.
            unsafe { w.add(j).write(read_word(p + 8 * j)) };
        }
        0
    } else {
        // Near the datagram's end: its last 64 bytes, then CRs, so that the datagram's end
        // ends the value as a CR would (zeros would fold into spaces, which a signature may
        // hold).
        let Some(at) = opaque(end - 64) else {
            return false;
        };
        let q = data + at;
        if q + 64 > ctx.data_end() {
            return false;
        }
        for j in 0..8 {
            // SAFETY: `q + 64 <= data_end` was checked just above; `w` as above.
            unsafe {
                w.add(j).write(read_word(q + 8 * j));
                w.add(8 + j).write(word(b"\r\r\r\r\r\r\r\r"));
            }
        }
        start - at
    };
    // SAFETY: as above.
    unsafe { (*st).scratch.window_len = lead as u32 };
    true
}

/// Moves the value stored in `scratch.window` from byte `scratch.window_len` on to the
/// window's start, case-folded, and zero from its end (CR or LF) on, and sets
/// `scratch.window_len` to the number of its bytes a signature may start at. Through map
/// memory: each way of loading leaves the verifier different knowledge of the words and of
/// where the value starts, and what follows is checked once.
#[inline(always)]
fn fold_window(st: *mut CpuState) {
    // SAFETY: this CPU's `CPU_STATE` entry, see `reload`; `w` is its 16-word window.
    let (lead, w) = unsafe {
        (
            reload(&raw const (*st).scratch.window_len) & 63,
            (&raw mut (*st).scratch.window).cast::<u64>(),
        )
    };
    let bytes = w.cast::<u8>();
    let mut len = 64;
    for j in 0..8 {
        // SAFETY: `lead + 8 * j + 8 <= 127`: inside the 128-byte window. Word `j` is written
        // after its bytes were read and before the bytes after them are: an in-place move down.
        let x = unsafe { bytes.add(lead + 8 * j).cast::<u64>().read_unaligned() };
        let m = value_end_flags(x);
        if m != 0 {
            let n = first_flagged(m);
            // SAFETY: as above.
            unsafe {
                w.add(j).write(fold_case(x) & low_bytes(n));
                for t in j + 1..8 {
                    // Volatile: plain stores here became a call to `memset`, a BPF-to-BPF
                    // call that cost as much as the whole check (profile of bench-xdp).
                    core::ptr::write_volatile(w.add(t), 0);
                }
            }
            len = 8 * j + n as usize;
            break;
        }
        // SAFETY: as above.
        unsafe { w.add(j).write(fold_case(x)) };
    }
    // SAFETY: as above.
    unsafe { (*st).scratch.window_len = len.min(SCANNER_WINDOW) as u32 };
}

/// 0x80 at the first CR or LF of `w` (possibly at bytes after it too).
#[inline(always)]
fn value_end_flags(w: u64) -> u64 {
    eq_bytes_lowest(w, b'\r') | eq_bytes_lowest(w, b'\n')
}
