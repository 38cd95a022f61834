//! Transaction identifiers (RFC 3261 §17.1.3, §17.2.3) as a 128-bit keyed digest of the fields
//! a transaction is matched on, plus the method class: a `Copy` value of 24 bytes.
//!
//! The first design kept `Bytes` slices of the datagram in the key, so every live transaction
//! pinned its whole datagram (and the key was stored twice): at 1,000 calls/s the ~100,000
//! transactions in their 32 s windows held ~260 MB (bench-memory). A digest keeps none of it.
//! Two messages whose fields are equal have equal digests; different fields collide with
//! probability ~2^-128 per pair, and the hash is keyed with a random key drawn once per process
//! (SipHash-1-3 with its 128-bit output, one pass over the fields), so a sender cannot make two
//! transactions collide on purpose. (A fast non-cryptographic hash would do for a table, not for an
//! identity: its collisions may not depend on the key.) Because the digest is already keyed
//! and uniform, the tables of keys ([`KeyMap`]) use its first half as the hash, not hash it
//! again.

use std::{
    hash::{Hash, Hasher},
    sync::OnceLock,
};

use nohash_hasher::BuildNoHashHasher;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::sip::{HeaderName, Message, Method, StartLine, via::Via};

/// Which transaction a method belongs to: an ACK matches the INVITE it acknowledges, a CANCEL
/// has its own transaction (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MethodClass {
    Invite,
    Cancel,
    /// Any other method. Its name (methods are case-sensitive tokens) goes into the digest, so
    /// the class stays one byte: the key is in every table, several times per call.
    Other,
}

impl MethodClass {
    /// The class, and the name the digest must include (empty for INVITE/ACK and CANCEL, whose
    /// keys [`Key::cancelled_invite`] turns into each other).
    fn of(method: Method<'_>) -> (Self, &[u8]) {
        match method {
            Method::Invite | Method::Ack => (MethodClass::Invite, b""),
            Method::Cancel => (MethodClass::Cancel, b""),
            m => (MethodClass::Other, m.as_bytes()),
        }
    }
}

/// How a transaction is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// §17.2.3 with the magic cookie: branch and sent-by.
    Rfc3261,
    /// §17.2.3 for RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and top Via.
    /// (The To tag is left out: an ACK's To carries the tag of the response, which the INVITE
    /// did not have.)
    Rfc2543,
    /// A client transaction: our own branch (§17.1.3).
    Client,
}

/// A table of transaction keys: the key hashes to its digest's first half (see the module).
pub type KeyMap<V> = griddle::HashMap<Key, V, BuildNoHashHasher<Key>>;

/// A transaction key. Ordered (arbitrarily) so the timer schedule can hold it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub kind: Kind,
    pub method: MethodClass,
    /// Two 64-bit halves rather than a `u128`, whose 16-byte alignment would pad the key.
    digest: [u64; 2],
}

impl Hash for Key {
    /// One `u64`, as [`KeyMap`]'s pass-through hasher wants: the digest's first half, which a
    /// keyed hash made uniform, with the kind and method class (a client and a server key of
    /// the same fields differ only there) folded into its low bits.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let class = (self.kind as u64) << 2 | self.method as u64;
        state.write_u64(self.digest[0] ^ class);
    }
}

impl nohash_hasher::IsEnabled for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Key({:?}, {:?}, {:016x}{:016x})",
            self.kind, self.method, self.digest[0], self.digest[1]
        )
    }
}

/// The digest's 128-bit key, drawn once per process (and kept: it is read per digest).
fn digest_key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let [k0, k1] = crate::sys::secret_words("transaction digest");
        (k0, k1)
    })
}

/// The 128-bit digest of `fields` (hashed with their lengths, so field boundaries count).
fn digest(fields: impl Hash) -> [u64; 2] {
    let (k0, k1) = digest_key();
    let mut hasher = SipHasher13::new_with_keys(k0, k1);
    fields.hash(&mut hasher);
    let h = hasher.finish128();
    [h.h1, h.h2]
}

impl Key {
    /// The server transaction a request belongs to; `None` if it lacks what matching needs
    /// (a top Via, CSeq).
    pub fn server(msg: &Message<'_, '_>) -> Option<Key> {
        Key::server_at(msg, &msg.top_via()?.ok()?)
    }

    /// [`Key::server`] with the request's top Via already parsed (by validation).
    pub fn server_at(msg: &Message<'_, '_>, via: &Via<'_>) -> Option<Key> {
        let StartLine::Request { method, uri } = msg.start else {
            return None;
        };
        let (method, name) = MethodClass::of(method);
        if let Some(branch) = via.rfc3261_branch() {
            return Some(Key {
                kind: Kind::Rfc3261,
                method,
                digest: digest((branch, via.sent_by, name)),
            });
        }
        let cseq = msg.cseq()?.ok()?;
        let top_via = msg.header(HeaderName::Via)?.value;
        let from_tag = msg
            .from()
            .and_then(Result::ok)
            .and_then(|a| a.tag())
            .unwrap_or(b"");
        let call_id = msg.call_id().unwrap_or(b"");
        Some(Key {
            kind: Kind::Rfc2543,
            method,
            digest: digest((uri, from_tag, call_id, cseq.seq, top_via, name)),
        })
    }

    /// The client transaction a response belongs to: top Via branch and CSeq method.
    pub fn client_for_response(msg: &Message<'_, '_>) -> Option<Key> {
        Key::client_for_response_at(msg, &msg.top_via()?.ok()?)
    }

    /// [`Key::client_for_response`] with the response's top Via already parsed.
    pub fn client_for_response_at(msg: &Message<'_, '_>, via: &Via<'_>) -> Option<Key> {
        let cseq = msg.cseq()?.ok()?;
        Some(Key::client(via.branch()?, cseq.method))
    }

    /// The client transaction a request we send belongs to.
    pub fn client_for_request(msg: &Message<'_, '_>) -> Option<Key> {
        let via = msg.top_via()?.ok()?;
        Some(Key::client(via.branch()?, msg.method()?))
    }

    /// The client transaction of a request with this top-Via branch and method.
    pub fn client(branch: &[u8], method: Method<'_>) -> Key {
        let (method, name) = MethodClass::of(method);
        Key {
            kind: Kind::Client,
            method,
            digest: digest((branch, name)),
        }
    }

    /// For a CANCEL's key, the key of the INVITE it cancels (§9.2: same branch and sent-by, or
    /// same RFC 2543 fields, with method INVITE).
    pub fn cancelled_invite(&self) -> Option<Key> {
        (self.method == MethodClass::Cancel).then_some(Key {
            method: MethodClass::Invite,
            ..*self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::with_message;

    fn key_of(text: &str) -> Key {
        with_message(text.as_bytes(), |m| Key::server(m).unwrap()).unwrap()
    }

    fn request(method: &str, branch: &str, cseq_method: &str) -> String {
        format!(
            "{method} sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a.example:5060;branch={branch}\r\n\
             From: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 {cseq_method}\r\n\r\n"
        )
    }

    #[test]
    fn equal_fields_equal_keys_and_any_difference_another() {
        let invite = key_of(&request("INVITE", "z9hG4bK1", "INVITE"));
        assert_eq!(invite, key_of(&request("INVITE", "z9hG4bK1", "INVITE")));
        assert_eq!(
            invite,
            key_of(&request("ACK", "z9hG4bK1", "ACK")),
            "ACK matches INVITE"
        );
        assert_ne!(invite, key_of(&request("INVITE", "z9hG4bK2", "INVITE")));
        let cancel = key_of(&request("CANCEL", "z9hG4bK1", "CANCEL"));
        assert_ne!(invite, cancel);
        assert_eq!(cancel.cancelled_invite(), Some(invite));
        assert_eq!(invite.cancelled_invite(), None);
        let bye = key_of(&request("BYE", "z9hG4bK1", "BYE"));
        assert_eq!(bye.method, MethodClass::Other);
        assert_ne!(bye, key_of(&request("INFO", "z9hG4bK1", "INFO")));
        // Field boundaries count: branch "z9hG4bKab" + sent-by "c" is not "z9hG4bKa" + "bc".
        assert_ne!(
            digest((&b"z9hG4bKab"[..], &b"c"[..])),
            digest((&b"z9hG4bKa"[..], &b"bc"[..]))
        );
        assert_eq!(size_of::<Key>(), 24);
    }
}
