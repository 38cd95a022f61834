//! Transaction identifiers (RFC 3261 §17.1.3, §17.2.3). Keys hold `Bytes` slices of the
//! datagram that created the transaction: no copy of the fields.

use bytes::Bytes;

use crate::sip::{HeaderName, Message, Method, StartLine, via::Via};

/// Which transaction a method belongs to: an ACK matches the INVITE it acknowledges, a CANCEL
/// has its own transaction (§9.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodClass {
    Invite,
    Cancel,
    Other(Bytes),
}

impl MethodClass {
    fn of(method: Method<'_>, datagram: &Bytes) -> Self {
        match method {
            Method::Invite | Method::Ack => MethodClass::Invite,
            Method::Cancel => MethodClass::Cancel,
            m => MethodClass::Other(slice(datagram, m.as_bytes())),
        }
    }
}

/// A transaction key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// §17.2.3 with the magic cookie: branch, sent-by and method.
    Rfc3261 {
        branch: Bytes,
        sent_by: Bytes,
        method: MethodClass,
    },
    /// §17.2.3 for RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number, top Via and
    /// method. (The To tag is left out: an ACK's To carries the tag of the response, which the
    /// INVITE did not have.)
    Rfc2543 {
        uri: Bytes,
        from_tag: Bytes,
        call_id: Bytes,
        cseq: u32,
        via: Bytes,
        method: MethodClass,
    },
    /// A client transaction: our own branch and the method (§17.1.3).
    Client { branch: Bytes, method: MethodClass },
}

/// `s` as a slice of `datagram`'s buffer, sharing it when `s` lies inside (a reference count),
/// copying otherwise.
fn slice(datagram: &Bytes, s: &[u8]) -> Bytes {
    let start = datagram.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    if !s.is_empty() && p >= start && p + s.len() <= start + datagram.len() {
        datagram.slice_ref(s)
    } else {
        Bytes::copy_from_slice(s)
    }
}

impl Key {
    /// The server transaction a request belongs to; `None` if it lacks what matching needs
    /// (a top Via, CSeq).
    pub fn server(msg: &Message<'_, '_>, datagram: &Bytes) -> Option<Key> {
        let StartLine::Request { method, uri } = msg.start else {
            return None;
        };
        let via: Via<'_> = msg.top_via()?.ok()?;
        let method = MethodClass::of(method, datagram);
        if let Some(branch) = via.rfc3261_branch() {
            return Some(Key::Rfc3261 {
                branch: slice(datagram, branch),
                sent_by: slice(datagram, via.sent_by),
                method,
            });
        }
        let cseq = msg.cseq()?.ok()?;
        let top_via = msg.header(HeaderName::Via)?.value;
        let from_tag = msg
            .from()
            .and_then(Result::ok)
            .and_then(|a| a.tag())
            .unwrap_or(b"");
        Some(Key::Rfc2543 {
            uri: slice(datagram, uri),
            from_tag: slice(datagram, from_tag),
            call_id: slice(datagram, msg.call_id().unwrap_or(b"")),
            cseq: cseq.seq,
            via: slice(datagram, top_via),
            method,
        })
    }

    /// The client transaction a response belongs to: top Via branch and CSeq method.
    pub fn client_for_response(msg: &Message<'_, '_>, datagram: &Bytes) -> Option<Key> {
        let via = msg.top_via()?.ok()?;
        let cseq = msg.cseq()?.ok()?;
        Some(Key::Client {
            branch: slice(datagram, via.branch()?),
            method: MethodClass::of(cseq.method, datagram),
        })
    }

    /// The client transaction a request we send belongs to.
    pub fn client_for_request(msg: &Message<'_, '_>, datagram: &Bytes) -> Option<Key> {
        let via = msg.top_via()?.ok()?;
        Some(Key::Client {
            branch: slice(datagram, via.branch()?),
            method: MethodClass::of(msg.method()?, datagram),
        })
    }

    /// For a CANCEL's key, the key of the INVITE it cancels (§9.2: same branch and sent-by, or
    /// same RFC 2543 fields, with method INVITE).
    pub fn cancelled_invite(&self) -> Option<Key> {
        let mut k = self.clone();
        match &mut k {
            Key::Rfc3261 { method, .. }
            | Key::Rfc2543 { method, .. }
            | Key::Client { method, .. } => {
                if *method != MethodClass::Cancel {
                    return None;
                }
                *method = MethodClass::Invite;
            }
        }
        Some(k)
    }
}
