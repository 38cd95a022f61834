//! "SIMD within a register" helpers: work on eight packet bytes at once in a `u64`, so that the
//! header scan costs one bounds check and a handful of ALU ops per 8 bytes, and the verifier sees
//! an eighth as many loop iterations as a byte-at-a-time scan.
//!
//! Words are little-endian: byte `k` of the packet word is bits `8k..8k+8`.

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;
const CASE: u64 = 0x2020_2020_2020_2020;
/// 0x80 in every byte: the flag bit of every byte of a word.
pub const FLAG_BYTES: u64 = 0x8080_8080_8080_8080;

/// 0x80 in every byte of `x` that is zero, 0 elsewhere (exact: no false positives).
#[inline(always)]
pub fn zero_bytes(x: u64) -> u64 {
    !(((x & LO7).wrapping_add(LO7)) | x | LO7)
}

/// 0x80 in the lowest zero byte of `x`, possibly also in bytes above it, nowhere below it: the
/// classic `(x - 0x01..) & !x & 0x80..` test in three operations instead of [`zero_bytes`]'s
/// five. Bytes above a zero byte may be flagged by the borrow, so use it where only the lowest
/// flag ([`first_flagged`]) or "any flag" matters.
#[inline(always)]
pub fn zero_bytes_lowest(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & FLAG_BYTES
}

/// Like [`zero_bytes_lowest`], for the bytes of `x` below `n` (`n` ≤ 0x80): 0x80 in the lowest
/// such byte, possibly in bytes above it.
#[inline(always)]
pub fn below_lowest(x: u64, n: u8) -> u64 {
    x.wrapping_sub((n as u64).wrapping_mul(ONES)) & !x & FLAG_BYTES
}

/// Like [`eq_bytes`], with [`zero_bytes_lowest`]'s guarantee (only the lowest flag is exact),
/// in three operations after the xor.
#[inline(always)]
pub fn eq_bytes_lowest(w: u64, b: u8) -> u64 {
    zero_bytes_lowest(w ^ (b as u64).wrapping_mul(ONES))
}

/// 0x80 in every byte of `w` equal to `b`.
#[inline(always)]
pub fn eq_bytes(w: u64, b: u8) -> u64 {
    zero_bytes(w ^ (b as u64).wrapping_mul(ONES))
}

/// 0x80 in each of the low `n` bytes (`n` ≤ 8): the bytes of a word that lie in the packet.
#[inline(always)]
pub fn valid_bytes(n: u32) -> u64 {
    if n >= 8 {
        0x8080_8080_8080_8080
    } else {
        ((1u64 << (n * 8)) - 1) & 0x8080_8080_8080_8080
    }
}

/// Index (0..8) of the lowest byte flagged with 0x80 in `m`; `m` must not be zero.
/// Isolates the lowest flag (`1 << 8k` after the shift) and multiplies it into a byte table:
/// the BPF target has no count-trailing-zeros instruction.
#[inline(always)]
pub fn first_flagged(m: u64) -> u32 {
    lowest_flag_into(m, 0x0001_0203_0405_0607)
}

/// [`first_flagged`] + 1 (1..=8), in the same operations: the byte table holds the sums.
#[inline(always)]
pub fn past_first_flagged(m: u64) -> u32 {
    lowest_flag_into(m, 0x0102_0304_0506_0708)
}

/// Byte `7 - k` of `table`, `k` being the lowest flagged byte of `m` (non-zero).
#[inline(always)]
fn lowest_flag_into(m: u64, table: u64) -> u32 {
    let lowest = (m & m.wrapping_neg()) >> 7;
    (lowest.wrapping_mul(table) >> 56) as u32
}

/// ASCII letters folded to lower case. Other bytes change too (`\r` becomes `-`), so compare
/// only against patterns made of letters, digits and `-./:` or folded the same way.
#[inline(always)]
pub fn fold_case(w: u64) -> u64 {
    w | CASE
}

/// Byte `k` of `w`.
#[inline(always)]
pub fn byte(w: u64, k: u32) -> u8 {
    (w >> (k * 8)) as u8
}

/// A little-endian word from an ASCII pattern of up to 8 bytes (for `const` comparisons).
pub const fn word(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < s.len() {
        w |= (s[i] as u64) << (i * 8);
        i += 1;
    }
    w
}

/// Mask selecting the low `n` bytes of a word (`n` ≤ 8).
pub const fn low_bytes(n: u32) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (n * 8)) - 1
    }
}
