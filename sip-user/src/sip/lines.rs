//! Where a message's lines end: the LFs of the datagram, found 64 bytes at a time.
//!
//! The parser walks a message line by line (RFC 3261 §7: the start line, then one header line
//! after another up to the blank line). Searching for each line's LF on its own cost a search
//! set-up per line (~60 instructions for a 40-byte header line under callgrind, with `memchr`
//! or a 16-byte loop alike). Here one step compares 64 bytes with LF and keeps the result as a
//! bit mask; each line end after that is the mask's lowest bit, taken off: a few instructions
//! per line and ~20 per 64 bytes, the `simdjson` way of indexing structure first (the 16-byte
//! masks come from [`super::simd`]; other architectures build the mask byte by byte).

#[cfg(target_arch = "x86_64")]
use super::simd::{self, CHUNK, Class};

/// Bytes per mask.
const BLOCK: usize = 64;

/// The LFs of `buf` from an offset on, in order.
pub struct LineEnds<'b> {
    buf: &'b [u8],
    /// Offset of bit 0 of `mask`.
    base: usize,
    /// LFs at `base + bit` not yet handed out.
    mask: u64,
}

impl<'b> LineEnds<'b> {
    /// The LFs at `from` and after.
    pub fn new(buf: &'b [u8], from: usize) -> Self {
        LineEnds {
            buf,
            base: from,
            mask: lf_mask(buf, from),
        }
    }

    /// The offset of the next LF, or `None` when the buffer has no more.
    #[inline]
    pub fn next_lf(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let bit = self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                return Some(self.base + bit);
            }
            self.base += BLOCK;
            if self.base >= self.buf.len() {
                return None;
            }
            self.mask = lf_mask(self.buf, self.base);
        }
    }
}

/// Bit `i` set if `buf[at + i]` is LF, for the up to 64 bytes from `at`.
#[inline]
fn lf_mask(buf: &[u8], at: usize) -> u64 {
    let n = buf.len();
    if at >= n {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if at + BLOCK <= n {
            return lf_mask_64(buf, at);
        }
        if n >= BLOCK {
            // The last 64 bytes, overlapping what came before `at`: drop those bits.
            let last = n - BLOCK;
            return lf_mask_64(buf, last) >> (at - last);
        }
    }
    buf[at..n.min(at + BLOCK)]
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (u64::from(b == b'\n') << i))
}

/// The LF mask of the 64 bytes `buf[at..at + 64]`, which must be in `buf`: four 16-byte
/// masks side by side.
#[cfg(target_arch = "x86_64")]
#[inline]
fn lf_mask_64(buf: &[u8], at: usize) -> u64 {
    const LF: Class = Class::of(b"\n");
    (0..BLOCK / CHUNK).fold(0, |m, k| {
        m | u64::from(simd::mask(buf, at + CHUNK * k, LF)) << (CHUNK * k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8], from: usize) -> Vec<usize> {
        let mut ends = LineEnds::new(buf, from);
        std::iter::from_fn(|| ends.next_lf()).collect()
    }

    #[test]
    fn every_lf_in_order_from_any_offset() {
        // Lengths around the 64-byte blocks and the 64-byte minimum of the vector path, LFs
        // at pseudo-random places (one in five bytes), every starting offset.
        let mut x = 12345u32;
        for len in (0..20).chain(55..75).chain(120..135).chain([200, 257]) {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    if (x >> 16).is_multiple_of(5) {
                        b'\n'
                    } else {
                        b'a'
                    }
                })
                .collect();
            for from in 0..=len {
                let want: Vec<usize> = (from..len).filter(|&i| buf[i] == b'\n').collect();
                assert_eq!(all(&buf, from), want, "len {len} from {from}");
            }
        }
    }

    #[test]
    fn only_lf_counts() {
        let buf = [b'\r', 0x8a, 0x0a, 0xff, 0x0b, b'\n'].repeat(20);
        let want: Vec<usize> = (0..buf.len()).filter(|&i| buf[i] == b'\n').collect();
        assert_eq!(all(&buf, 0), want);
        assert_eq!(all(&[], 0), Vec::<usize>::new());
        assert_eq!(all(b"ab\n", 5), Vec::<usize>::new());
    }
}
