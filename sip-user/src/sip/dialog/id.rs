//! Dialog identifiers (RFC 3261 §12): Call-ID, local tag, remote tag. A proxy is neither UA;
//! here "local" is the caller's tag (From of the dialog-creating INVITE) and "remote" the
//! callee's (To of its responses), so both directions of a dialog map to one id.
//!
//! The id is one boxed byte string (length-prefixed fields), so a stored dialog costs one
//! allocation and a lookup costs none: the table is keyed by `Box<[u8]>` and looked up with a
//! `&[u8]` encoded on the stack.

use std::fmt;

/// An owned dialog id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DialogId(pub(super) Box<[u8]>);

/// Longest id encoded without a heap buffer (Call-IDs are typically under 100 bytes, tags
/// under 40). Not larger: the buffer is zeroed for every lookup, and 512 bytes cost a `memset`
/// call of ~50 instructions where 256 are a few vector stores.
const STACK: usize = 256;

/// Encodes `(call_id, local, remote)` and hands the bytes to `f`.
pub(super) fn with_encoded<R>(
    call_id: &[u8],
    local: &[u8],
    remote: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let len = 4 + call_id.len() + local.len() + remote.len();
    let fill = |buf: &mut [u8]| {
        // Fields longer than 64 KiB cannot occur in a datagram; truncating the prefix would
        // only merge ids that are already absurd.
        buf[0..2].copy_from_slice(&(call_id.len() as u16).to_le_bytes());
        buf[2..4].copy_from_slice(&(local.len() as u16).to_le_bytes());
        let mut i = 4;
        for part in [call_id, local, remote] {
            buf[i..i + part.len()].copy_from_slice(part);
            i += part.len();
        }
    };
    if len <= STACK {
        let mut buf = [0u8; STACK];
        fill(&mut buf[..len]);
        f(&buf[..len])
    } else {
        let mut buf = vec![0u8; len];
        fill(&mut buf);
        f(&buf)
    }
}

/// Call-ID, local tag and remote tag of an encoded id (a table key reads without a copy).
pub(super) fn parts_of(b: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let call_len = u16::from_le_bytes([b[0], b[1]]) as usize;
    let local_len = u16::from_le_bytes([b[2], b[3]]) as usize;
    let rest = &b[4..];
    (
        &rest[..call_len],
        &rest[call_len..call_len + local_len],
        &rest[call_len + local_len..],
    )
}

impl DialogId {
    pub fn new(call_id: &[u8], local: &[u8], remote: &[u8]) -> Self {
        with_encoded(call_id, local, remote, |b| DialogId(b.into()))
    }

    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        parts_of(&self.0)
    }

    pub fn call_id(&self) -> &[u8] {
        self.parts().0
    }

    pub fn local_tag(&self) -> &[u8] {
        self.parts().1
    }

    /// Empty while no response with a To tag has been seen.
    pub fn remote_tag(&self) -> &[u8] {
        self.parts().2
    }
}

impl fmt::Debug for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, l, r) = self.parts();
        write!(
            f,
            "DialogId({}; {}; {})",
            String::from_utf8_lossy(c),
            String::from_utf8_lossy(l),
            String::from_utf8_lossy(r)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_distinguishes_boundaries() {
        let id = DialogId::new(b"abc@h", b"t1", b"t2");
        assert_eq!(
            (id.call_id(), id.local_tag(), id.remote_tag()),
            (&b"abc@h"[..], &b"t1"[..], &b"t2"[..])
        );
        assert_ne!(
            DialogId::new(b"ab", b"c", b""),
            DialogId::new(b"a", b"bc", b"")
        );
        let long = vec![b'x'; 1000];
        assert_eq!(DialogId::new(&long, b"a", b"b").call_id(), &long[..]);
    }
}
