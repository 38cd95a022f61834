//! The Call-ID hash: one definition for the XDP program and the daemon.
//!
//! The kernel picks a CPU (and so a worker) with `steer_table[hash % len]`, and the daemon picks
//! a backend with the same hash, so both sides must agree bit for bit. The function is defined
//! over 8-byte little-endian words so that the XDP program can feed it one packet load at a time
//! (a byte-at-a-time hash costs the verifier and the CPU eight times as many loop iterations).
//!
//! Definition: take the Call-ID header *value* (RFC 3261 §20.8) up to the first CR, LF, SP or HT,
//! at most [`CALL_ID_HASH_MAX_LEN`] bytes of it. Feed it as little-endian `u64` words, the last
//! one zero-padded, to [`CallIdHasher::write_word`], then [`CallIdHasher::finish`] with the length.
//! The finaliser is murmur3's `fmix64`, so every output bit depends on every input bit and the
//! low bits are as good as the high ones (plain FNV-1a's lowest bit is the parity of the input's
//! lowest bits: `hash % 2` would split calls by the last digit of the Call-ID).

/// Bytes of a Call-ID value that take part in the hash. Longer values are hashed on their
/// first 256 bytes; real Call-IDs are 20–80 bytes.
pub const CALL_ID_HASH_MAX_LEN: usize = 256;

const SEED: u64 = 0x5349_502d_4641_5354; // "SIP-FAST"
const WORD_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Incremental form of the Call-ID hash, for callers that load the value a word at a time.
#[derive(Clone, Copy, Debug)]
pub struct CallIdHasher {
    state: u64,
}

impl Default for CallIdHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl CallIdHasher {
    #[inline(always)]
    pub const fn new() -> Self {
        Self { state: SEED }
    }

    /// Mixes in the next 8 bytes of the value, as a little-endian word. A final partial word
    /// must have its missing high bytes set to zero.
    #[inline(always)]
    pub fn write_word(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(WORD_MUL).rotate_left(29);
    }

    /// Mixes in `bytes` as little-endian words, the last one zero-padded.
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_word(u64::from_le_bytes(word));
        }
    }

    /// Finishes the hash; `len` is the number of value bytes that were fed in.
    #[inline(always)]
    pub fn finish(self, len: u32) -> u64 {
        fmix64(self.state ^ (len as u64))
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit. Also what
/// userspace mixes a Call-ID hash with a backend's id for rendezvous hashing.
#[inline(always)]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// True for the bytes that end a Call-ID value for hashing: CR, LF, SP, HT.
#[inline(always)]
pub const fn is_call_id_terminator(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | b' ' | b'\t')
}

/// The part of `value` that the hash covers: up to the first CR, LF, SP or HT, at most
/// [`CALL_ID_HASH_MAX_LEN`] bytes.
pub fn call_id_hash_input(value: &[u8]) -> &[u8] {
    let mut end = 0;
    while end < value.len() && end < CALL_ID_HASH_MAX_LEN && !is_call_id_terminator(value[end]) {
        end += 1;
    }
    &value[..end]
}

/// Hashes a Call-ID header value (see the module docs for the exact definition).
pub fn hash_call_id(value: &[u8]) -> u64 {
    hash_call_id_input(call_id_hash_input(value))
}

/// The hash of a value already cut to what the hash covers ([`call_id_hash_input`]'s result):
/// for callers that find the value's end their own way (the daemon, 16 bytes at a time).
#[inline]
pub fn hash_call_id_input(input: &[u8]) -> u64 {
    let mut hasher = CallIdHasher::new();
    hasher.write_bytes(input);
    hasher.finish(input.len() as u32)
}

/// Index into a table of `len` entries (`len > 0`) for a Call-ID hash: the hash's high 32 bits
/// scaled to `[0, len)` by a multiplication and a shift (Lemire's reduction), where `hash % len`
/// is a division: the XDP JIT emits `div`, which bench-xdp's profile showed at ~2 % of an
/// INVITE's time. The kernel's steering and the daemon's worker choice both use this.
#[inline(always)]
pub const fn slot_for_hash(hash: u64, len: u32) -> u32 {
    (((hash >> 32) * len as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_whitespace_and_line_ends() {
        let h = hash_call_id(b"a84b4c76e66710@pc33.atlanta.example.com");
        assert_eq!(
            hash_call_id(b"a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 1"),
            h
        );
        assert_eq!(
            hash_call_id(b"a84b4c76e66710@pc33.atlanta.example.com trailing"),
            h
        );
        assert_ne!(hash_call_id(b"a84b4c76e66710@pc33.atlanta.example.co"), h);
    }

    #[test]
    fn covers_only_the_first_256_bytes() {
        let long = [b'x'; 300];
        assert_eq!(hash_call_id(&long), hash_call_id(&long[..256]));
        assert_ne!(hash_call_id(&long[..255]), hash_call_id(&long[..256]));
    }

    #[test]
    fn length_and_padding_matter() {
        // A zero-padded last word must not collide with an explicit NUL byte.
        assert_ne!(hash_call_id(b"abc"), hash_call_id(b"abc\0"));
        assert_ne!(hash_call_id(b""), hash_call_id(b"\0"));
    }

    #[test]
    fn slots_spread_sequential_call_ids() {
        // Consecutive Call-IDs must split evenly over the slots (plain FNV-1a did not).
        for n in [2u32, 3, 4, 8] {
            let mut buckets = [0u32; 8];
            for i in 0..8000 {
                let id = format!("{i}@host");
                buckets[slot_for_hash(hash_call_id(id.as_bytes()), n) as usize] += 1;
            }
            let want = 8000 / n;
            for b in &buckets[..n as usize] {
                assert!(b.abs_diff(want) < want / 10, "n={n}: {buckets:?}");
            }
        }
    }

    #[test]
    fn slots_stay_below_the_table_length() {
        for len in [1u32, 2, 3, 7, 64, u32::MAX] {
            for hash in [0, 1, u64::MAX >> 32, 1 << 32, u64::MAX - 1, u64::MAX] {
                assert!(slot_for_hash(hash, len) < len, "{hash:#x} {len}");
            }
            assert_eq!(slot_for_hash(u64::MAX, len), len - 1);
        }
    }
}
