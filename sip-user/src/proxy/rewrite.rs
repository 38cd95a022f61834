//! How the proxy rewrites messages it forwards (RFC 3261 §16.6, §16.7): requests get our Via
//! on top, Max-Forwards minus one, our Record-Route on dialog-creating requests, and lose the
//! Route entry that named us (loose routing, §16.4); responses lose our Via (§16.7 step 3).

use std::fmt::{self, Write as _};

use bytes::{BufMut, Bytes, BytesMut};

use crate::sip::{
    HeaderName, Message, StartLine, address::Address, build::header as put, scan::CommaList,
    via::Via,
};

/// Who we are on the wire: the host and port written in our Via and Record-Route.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host: String,
    pub port: u16,
    /// `host:port`, as written.
    pub host_port: String,
}

impl Identity {
    pub fn new(host: &str, port: u16) -> Self {
        Identity {
            host: host.to_string(),
            port,
            host_port: format!("{host}:{port}"),
        }
    }

    /// True if a URI's host and port name us (port 5060 when absent).
    pub fn is_me(&self, host: &[u8], port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(self.host.as_bytes()) && port.unwrap_or(5060) == self.port
    }

    /// True if the top Via of a response is ours.
    pub fn is_my_via(&self, via: &Via<'_>) -> bool {
        self.is_me(via.host, via.port)
    }
}

/// A branch of ours (RFC 3261 §8.1.1.7: the magic cookie, then unique per request): the
/// worker and a per-worker sequence number, written straight into the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub worker: u32,
    pub seq: u64,
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "z9hG4bK-sfp{}-{:x}", self.worker, self.seq)
    }
}

/// The request `msg` as forwarded by us: `branch` in our new top Via, Max-Forwards decremented
/// (70 if absent, §16.6 step 3), our Route entry removed, and a Record-Route if `record_route`.
pub fn forward_request(
    msg: &Message<'_, '_>,
    me: &Identity,
    branch: Branch,
    record_route: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.raw.len() + 128);
    if let StartLine::Request { method, uri } = msg.start {
        out.put_slice(method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(uri);
        out.put_slice(b" SIP/2.0\r\n");
    }
    // Formatted straight into the buffer: no temporary strings per message.
    let _ = write!(out, "Via: SIP/2.0/UDP {};branch={branch}\r\n", me.host_port);
    if record_route {
        let _ = write!(out, "Record-Route: <sip:{};lr>\r\n", me.host_port);
    }
    let mut saw_max_forwards = false;
    let mut route_checked = false;
    for h in msg.headers {
        match h.name {
            HeaderName::MaxForwards => {
                saw_max_forwards = true;
                let n = crate::sip::fields::max_forwards(h.value).unwrap_or(70);
                let _ = write!(out, "Max-Forwards: {}\r\n", n.saturating_sub(1));
            }
            HeaderName::Route if !route_checked => {
                route_checked = true;
                // Drop the first Route value if it is us (§16.4); keep the rest of the line.
                let mut values = CommaList::new(h.value);
                let first = values.next().unwrap_or(b"");
                let ours = Address::parse(first).is_ok_and(|a| me.is_me(a.uri.host, a.uri.port));
                if !ours {
                    put(&mut out, h.raw_name, h.value);
                } else if let Some(rest) = values.remainder() {
                    put(&mut out, h.raw_name, rest);
                }
            }
            _ => put(&mut out, h.raw_name, h.value),
        }
    }
    if !saw_max_forwards {
        put(&mut out, b"Max-Forwards", b"69");
    }
    out.put_slice(b"\r\n");
    out.put_slice(msg.body);
    out.freeze()
}

/// The response `msg` without its top Via value (ours), to relay upstream.
pub fn strip_top_via(msg: &Message<'_, '_>) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.raw.len());
    if let StartLine::Response { code, reason } = msg.start {
        let _ = write!(out, "SIP/2.0 {code} ");
        out.put_slice(reason);
        out.put_slice(b"\r\n");
    }
    let mut stripped = false;
    for h in msg.headers {
        if h.name == HeaderName::Via && !stripped {
            stripped = true;
            let mut values = CommaList::new(h.value);
            values.next();
            if let Some(rest) = values.remainder() {
                put(&mut out, h.raw_name, rest);
            }
            continue;
        }
        put(&mut out, h.raw_name, h.value);
    }
    out.put_slice(b"\r\n");
    out.put_slice(msg.body);
    out.freeze()
}
