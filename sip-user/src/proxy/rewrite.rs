//! How the proxy rewrites messages it forwards (RFC 3261 §16.6, §16.7): requests get our Via
//! on top, Max-Forwards minus one, our Record-Route on dialog-creating requests, and lose the
//! Route entry that named us (loose routing, §16.4); the sender's Via gets `received` and
//! `rport` (RFC 3581 §4); responses lose our Via (§16.7 step 3).

use std::{
    fmt::{self, Write as _},
    net::SocketAddr,
};

use bytes::{BufMut, Bytes, BytesMut};

use sip_common::{fmix64, hash_call_id};

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

/// What every branch of ours starts with.
const BRANCH_PREFIX: &[u8] = b"z9hG4bK-sfp";

/// A branch of ours (RFC 3261 §8.1.1.7: the magic cookie, then unique per request): the
/// worker, a per-worker sequence number, and the request's [`loop_hash`] (§16.6 step 8, so a
/// request that comes back to us unchanged is recognised as a loop), written straight into the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub worker: u32,
    pub seq: u64,
    pub loop_hash: u32,
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "z9hG4bK-sfp{}-{:x}-{:x}",
            self.worker, self.seq, self.loop_hash
        )
    }
}

/// The fields whose change makes a returning request a spiral rather than a loop (RFC 3261
/// §16.3 step 4, §16.6 step 8): Request-URI, From tag, To tag, Call-ID, CSeq number and
/// Proxy-Require. Hashed piece by piece, without allocating.
pub fn loop_hash<'b>(msg: &Message<'_, 'b>) -> u32 {
    fn tag<'b, E>(a: Option<Result<Address<'b>, E>>) -> Option<&'b [u8]> {
        a.and_then(Result::ok).and_then(|a| a.tag())
    }
    let uri = match msg.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => b"",
    };
    let seq = msg.cseq().and_then(Result::ok).map_or(0, |c| c.seq);
    let proxy_require = msg
        .header(HeaderName::ProxyRequire)
        .map_or(b"".as_slice(), |h| h.value);
    let pieces: [&[u8]; 5] = [
        uri,
        tag(msg.from()).unwrap_or(b""),
        tag(msg.to()).unwrap_or(b""),
        msg.call_id().unwrap_or(b""),
        proxy_require,
    ];
    let mut h = u64::from(seq);
    for p in pieces {
        h = fmix64(h ^ hash_call_id(p));
    }
    (h ^ (h >> 32)) as u32
}

/// §16.3 step 4: the request carries a Via of ours whose branch holds this very request's
/// loop hash (it went round and came back unchanged). A Via of ours with another hash is a
/// spiral, which is legal and forwarded.
pub fn is_loop(msg: &Message<'_, '_>, me: &Identity) -> bool {
    let mut ours = msg.vias().filter_map(Result::ok).filter_map(|v| {
        let b = v.branch().filter(|b| b.starts_with(BRANCH_PREFIX))?;
        if !me.is_my_via(&v) {
            return None;
        }
        let h = std::str::from_utf8(b.rsplit(|&c| c == b'-').next()?).ok()?;
        u32::from_str_radix(h, 16).ok()
    });
    // Hashed only when a Via of ours is there: almost never on the way in.
    let Some(first) = ours.next() else {
        return false;
    };
    let hash = loop_hash(msg);
    first == hash || ours.any(|h| h == hash)
}

/// The request `msg`, received from `source`, as forwarded by us: `branch` in our new top Via,
/// the sender's Via with `received`/`rport` (RFC 3581), Max-Forwards decremented (70 if
/// absent, §16.6 step 3), our Route entry removed, and a Record-Route if `record_route`.
pub fn forward_request(
    msg: &Message<'_, '_>,
    source: SocketAddr,
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
    let mut via_done = false;
    for h in msg.headers {
        match h.name {
            HeaderName::Via if !via_done => {
                via_done = true;
                put_sender_via(&mut out, h.raw_name, h.value, source);
            }
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

/// The sender's Via line with `received` when its sent-by is not the source address and with
/// `rport` filled in when it asked for it (RFC 3581 §4; §18.2.1). Other values on the line
/// stay as they were.
fn put_sender_via(out: &mut BytesMut, name: &[u8], value: &[u8], source: SocketAddr) {
    let mut values = CommaList::new(value);
    let first = values.next().unwrap_or(b"");
    let Ok(via) = Via::parse(first) else {
        return put(out, name, value);
    };
    let ip = source.ip();
    let host = std::str::from_utf8(via.host).unwrap_or("");
    let needs_received = host.trim_matches(['[', ']']).parse().ok() != Some(ip);
    let wants_rport = via.rport().is_some();
    if !needs_received && !wants_rport {
        return put(out, name, value);
    }
    out.put_slice(name);
    out.put_slice(b": ");
    // `sent_by` borrows from `first`: its end is a plain offset into it.
    let end = via.sent_by.as_ptr() as usize - first.as_ptr() as usize + via.sent_by.len();
    out.put_slice(&first[..end]);
    for (n, v) in via.params.map_while(Result::ok) {
        if n.eq_ignore_ascii_case(b"received") || n.eq_ignore_ascii_case(b"rport") {
            continue;
        }
        out.put_u8(b';');
        out.put_slice(n);
        if let Some(v) = v {
            out.put_u8(b'=');
            out.put_slice(v);
        }
    }
    // RFC 3581 §4: with rport, received is added even when it equals the sent-by host.
    let _ = write!(out, ";received={ip}");
    if wants_rport {
        let _ = write!(out, ";rport={}", source.port());
    }
    if let Some(rest) = values.remainder() {
        out.put_slice(b", ");
        out.put_slice(rest);
    }
    out.put_slice(b"\r\n");
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
