//! Flow tokens (RFC 5626 §5.2 style): the outside flow of a UA, written by us into the user part
//! of our Path and Record-Route URIs, so that a request routed back to us names the flow it must
//! leave on, with no state kept here. The token is authenticated with HMAC-SHA256 under the
//! configured `flow_secret`: every node of a cluster with the same secret routes any node's
//! tokens, and nobody without it can make us send to an address of their choice.
//!
//! Layout before base64url (unpadded, RFC 4648 §5, all characters legal in a SIP URI user part,
//! RFC 3261 §25.1 `unreserved`):
//!
//! ```text
//! kind (1) | peer IP (4 or 16) | peer port (2) | our local port (2) | HMAC-SHA256, first 10 bytes
//! ```
//!
//! `kind` holds the transport in its high nibble and the address family in its low one, so TCP
//! and TLS connections can be added without a new format. The MAC is truncated to 80 bits as in
//! RFC 5626's example (HMAC-SHA1-80); a forgery needs ~2^80 tries, each answered 403.

use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::sip::peer::Peer;
pub use crate::sip::peer::Transport;

/// The transport's code in a token's kind byte.
fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
    }
}

fn transport_from_code(c: u8) -> Option<Transport> {
    match c {
        1 => Some(Transport::Udp),
        2 => Some(Transport::Tcp),
        3 => Some(Transport::Tls),
        _ => None,
    }
}

/// One flow: where a UA's messages came from, and the local port they reached us on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub peer: SocketAddr,
    pub local_port: u16,
}

impl Flow {
    /// Where a message on this flow goes: over UDP to the address, over TCP and TLS on the
    /// connection from that address.
    pub fn peer(&self) -> Peer {
        Peer::new(self.transport, self.peer)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not base64url")]
    Encoding,
    #[error("wrong length")]
    Length,
    #[error("unknown kind")]
    Kind,
    #[error("authentication failed")]
    Mac,
}

const MAC_LEN: usize = 10;
/// kind + IPv6 + two ports + MAC.
const MAX_RAW: usize = 1 + 16 + 2 + 2 + MAC_LEN;
/// base64 of [`MAX_RAW`] bytes, unpadded: ceil(31 · 4 / 3).
const MAX_TEXT: usize = 42;
/// The shortest secret accepted from the config (128 bits).
pub const MIN_SECRET: usize = 16;

/// A token as text, on the stack (a Record-Route is written per dialog-creating request).
#[derive(Clone, Copy)]
pub struct TokenText {
    buf: [u8; MAX_TEXT],
    len: usize,
}

impl TokenText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // base64url output is ASCII.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl PartialEq for TokenText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TokenText {}

impl std::fmt::Debug for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The keyed MAC, made once from the secret and cloned per token (cloning copies the
/// precomputed inner and outer hash states: no key schedule per message), and the tokens it
/// made and checked last.
///
/// Each worker's proxy owns its key (a clone starts with nothing remembered), hence the
/// `RefCell`: a call makes its outside flow's token for each dialog-creating request and checks
/// it again on every in-dialog request from either side, the same few bytes each time. An
/// HMAC is ~5,000 instructions without SHA instructions (valgrind's CPU, older servers) and two
/// SHA-256 blocks with them; a remembered token is a table slot and a 26-byte comparison.
pub struct FlowKey {
    mac: Hmac<Sha256>,
    recent: RefCell<Recent>,
}

impl Clone for FlowKey {
    fn clone(&self) -> Self {
        FlowKey {
            mac: self.mac.clone(),
            recent: RefCell::new(Recent::new()),
        }
    }
}

/// Slots of each of [`Recent`]'s tables: 256 flows, a few tens of kB per worker. A power of
/// two: a slot is the top bits of a multiplicative hash ([`slot_of`]).
const RECENT: usize = 256;
const _: () = assert!(RECENT.is_power_of_two());

/// Tokens made and tokens verified lately, in direct-mapped tables (a new entry replaces the
/// one in its slot). Only tokens that passed the MAC check are remembered as checked, and a
/// presented token must equal one of them byte for byte, compared in constant time (a cached
/// token is a valid one: an early-exit comparison would tell a forger how many bytes it got
/// right): what is accepted is exactly what the MAC accepts.
struct Recent {
    made: Box<[Option<(Flow, TokenText)>]>,
    checked: Box<[Option<(TokenText, Flow)>]>,
}

impl Recent {
    fn new() -> Self {
        Recent {
            made: vec![None; RECENT].into_boxed_slice(),
            checked: vec![None; RECENT].into_boxed_slice(),
        }
    }
}

/// A flow's slot in [`Recent::made`].
fn flow_slot(flow: &Flow) -> usize {
    let ip = match flow.peer.ip() {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64)
        }
    };
    slot_of(ip ^ u64::from(flow.peer.port()) << 32 ^ u64::from(flow.local_port) << 48)
}

/// A token's slot in [`Recent::checked`]: from its last characters, which are MAC (anyone can
/// choose a slot by writing a token; all it does is replace one remembered token).
fn token_slot(token: &[u8]) -> usize {
    let tail = token.len().saturating_sub(8);
    slot_of(
        token[tail..]
            .iter()
            .fold(0u64, |h, &b| h << 8 | u64::from(b)),
    )
}

/// A table slot for `x`: the top bits of `x` times the 64-bit golden ratio (Fibonacci
/// hashing), which spreads keys that differ only in low bits (ports, the last characters).
fn slot_of(x: u64) -> usize {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - RECENT.trailing_zeros())) as usize
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey(..)")
    }
}

impl FlowKey {
    pub fn new(secret: &[u8]) -> Self {
        FlowKey {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length"),
            recent: RefCell::new(Recent::new()),
        }
    }

    /// A key from 32 random bytes (when no `flow_secret` is configured: tokens then hold only
    /// for this process).
    pub fn random() -> std::io::Result<Self> {
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        Ok(Self::new(&secret))
    }

    pub fn encode(&self, flow: &Flow) -> TokenText {
        let slot = flow_slot(flow);
        if let Some((f, text)) = &self.recent.borrow().made[slot]
            && f == flow
        {
            return *text;
        }
        let text = self.sign(flow);
        self.recent.borrow_mut().made[slot] = Some((*flow, text));
        text
    }

    /// A new token for `flow`.
    fn sign(&self, flow: &Flow) -> TokenText {
        let mut raw = [0u8; MAX_RAW];
        let family = match flow.peer.ip() {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        };
        raw[0] = transport_code(flow.transport) << 4 | family;
        let mut n = 1;
        match flow.peer.ip() {
            IpAddr::V4(a) => {
                raw[n..n + 4].copy_from_slice(&a.octets());
                n += 4;
            }
            IpAddr::V6(a) => {
                raw[n..n + 16].copy_from_slice(&a.octets());
                n += 16;
            }
        }
        raw[n..n + 2].copy_from_slice(&flow.peer.port().to_be_bytes());
        raw[n + 2..n + 4].copy_from_slice(&flow.local_port.to_be_bytes());
        n += 4;
        let mut mac = self.mac.clone();
        mac.update(&raw[..n]);
        let tag = mac.finalize().into_bytes();
        raw[n..n + MAC_LEN].copy_from_slice(&tag[..MAC_LEN]);
        n += MAC_LEN;
        let mut text = TokenText {
            buf: [0; MAX_TEXT],
            len: 0,
        };
        text.len = URL_SAFE_NO_PAD
            .encode_slice(&raw[..n], &mut text.buf)
            .expect("MAX_TEXT holds the longest token");
        text
    }

    /// The flow a token names, if we (or a node with our secret) made it. The MAC is checked in
    /// constant time.
    pub fn decode(&self, token: &[u8]) -> Result<Flow, TokenError> {
        if token.len() > MAX_TEXT {
            return Err(TokenError::Length);
        }
        let slot = token_slot(token);
        // (`ct_eq` on slices of different lengths is false.)
        if let Some((text, flow)) = &self.recent.borrow().checked[slot]
            && bool::from(text.as_bytes().ct_eq(token))
        {
            return Ok(*flow);
        }
        let flow = self.verify(token)?;
        let mut text = TokenText {
            buf: [0; MAX_TEXT],
            len: token.len(),
        };
        text.buf[..token.len()].copy_from_slice(token); // at most MAX_TEXT: checked above
        self.recent.borrow_mut().checked[slot] = Some((text, flow));
        Ok(flow)
    }

    /// The flow `token` names if its MAC is right.
    fn verify(&self, token: &[u8]) -> Result<Flow, TokenError> {
        let mut raw = [0u8; MAX_RAW + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(token, &mut raw)
            .map_err(|_| TokenError::Encoding)?;
        let raw = &raw[..n];
        let (transport, ip_len) = match raw.first().copied() {
            Some(k) => {
                let t = transport_from_code(k >> 4).ok_or(TokenError::Kind)?;
                match k & 0x0f {
                    4 => (t, 4),
                    6 => (t, 16),
                    _ => return Err(TokenError::Kind),
                }
            }
            None => return Err(TokenError::Length),
        };
        let signed = 1 + ip_len + 4;
        if raw.len() != signed + MAC_LEN {
            return Err(TokenError::Length);
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..signed]);
        mac.verify_truncated_left(&raw[signed..])
            .map_err(|_| TokenError::Mac)?;
        let ip = if ip_len == 4 {
            let o: [u8; 4] = raw[1..5].try_into().expect("4 bytes");
            IpAddr::V4(Ipv4Addr::from(o))
        } else {
            let o: [u8; 16] = raw[1..17].try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(o))
        };
        let at = 1 + ip_len;
        let port = u16::from_be_bytes([raw[at], raw[at + 1]]);
        let local_port = u16::from_be_bytes([raw[at + 2], raw[at + 3]]);
        Ok(Flow {
            transport,
            peer: SocketAddr::new(ip, port),
            local_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(peer: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            peer: peer.parse().unwrap(),
            local_port: 5060,
        }
    }

    #[test]
    fn round_trips_v4_and_v6() {
        let key = FlowKey::new(b"a secret of sixteen+ bytes");
        for peer in ["203.0.113.7:34567", "[2001:db8::5]:5062"] {
            let f = flow(peer);
            let t = key.encode(&f);
            assert!(
                t.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'),
                "{t:?} must fit a URI user part"
            );
            assert_eq!(key.decode(t.as_bytes()), Ok(f));
        }
        assert_eq!(key.encode(&flow("203.0.113.7:34567")).as_bytes().len(), 26);
    }

    #[test]
    fn another_node_with_the_same_secret_accepts_it_another_secret_does_not() {
        let f = flow("198.51.100.9:5060");
        let t = FlowKey::new(b"cluster secret 0123456789").encode(&f);
        assert_eq!(
            FlowKey::new(b"cluster secret 0123456789").decode(t.as_bytes()),
            Ok(f)
        );
        assert_eq!(
            FlowKey::new(b"another secret 0123456789").decode(t.as_bytes()),
            Err(TokenError::Mac)
        );
        let random = FlowKey::random().unwrap();
        assert_eq!(random.decode(t.as_bytes()), Err(TokenError::Mac));
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let key = FlowKey::new(b"a secret of sixteen+ bytes");
        let t = key.encode(&flow("203.0.113.7:34567"));
        // Checked once, so remembered: a forgery is compared with it, and still refused.
        assert_eq!(key.decode(t.as_bytes()), Ok(flow("203.0.113.7:34567")));
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..t.as_bytes().len() {
            for &c in alphabet {
                let mut forged = t.as_bytes().to_vec();
                if forged[i] == c {
                    continue;
                }
                forged[i] = c;
                // The last character's spare bits must be zero (the decoder checks them), so
                // every other character changes the bytes or the encoding: all refused.
                assert!(key.decode(&forged).is_err(), "{forged:?}");
            }
        }
    }

    #[test]
    fn remembered_tokens_give_what_the_mac_gives() {
        let key = FlowKey::new(b"a secret of sixteen+ bytes");
        // More flows than slots, over both address families: every token made is the one a
        // fresh key makes, and every one decodes to its flow, the second time from memory
        // where its slot was not taken since.
        let fresh = FlowKey::new(b"a secret of sixteen+ bytes");
        let flows: Vec<Flow> = (0..3 * RECENT as u16)
            .map(|i| {
                let peer = if i % 3 == 0 {
                    format!("[2001:db8::{i:x}]:{}", 5060 + i)
                } else {
                    format!("198.51.100.{}:{}", i % 250, 5060 + i)
                };
                flow(&peer)
            })
            .collect();
        for _ in 0..2 {
            for f in &flows {
                let t = key.encode(f);
                assert_eq!(t, fresh.sign(f));
                assert_eq!(key.decode(t.as_bytes()), Ok(*f));
                assert_eq!(key.decode(t.as_bytes()), Ok(*f));
            }
        }
        // The memory is used: the last flow's token sits in its slot of each table.
        let last = flows[flows.len() - 1];
        let t = key.encode(&last);
        let recent = key.recent.borrow();
        assert_eq!(recent.made[flow_slot(&last)], Some((last, t)));
        assert_eq!(recent.checked[token_slot(t.as_bytes())], Some((t, last)));
        drop(recent);
        // A token checked by one key is not accepted by another that has not seen it.
        let t = key.encode(&flows[0]);
        let other = FlowKey::new(b"another secret 0123456789");
        assert_eq!(other.decode(t.as_bytes()), Err(TokenError::Mac));
        assert_eq!(other.clone().decode(t.as_bytes()), Err(TokenError::Mac));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let key = FlowKey::new(b"a secret of sixteen+ bytes");
        assert_eq!(key.decode(b"alic"), Err(TokenError::Kind));
        assert_eq!(key.decode(b"alice"), Err(TokenError::Encoding));
        assert_eq!(key.decode(b"!!"), Err(TokenError::Encoding));
        assert_eq!(key.decode(b""), Err(TokenError::Length));
        assert_eq!(key.decode(&[b'A'; 80]), Err(TokenError::Length));
        // A valid kind with a short body.
        let short = URL_SAFE_NO_PAD.encode([0x14, 1, 2, 3]);
        assert_eq!(key.decode(short.as_bytes()), Err(TokenError::Length));
    }
}
