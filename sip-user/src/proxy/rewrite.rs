//! How the proxy rewrites messages it forwards (RFC 3261 §16.6, §16.7): requests get our Via
//! on top, Max-Forwards minus one, our Record-Route entries on dialog-creating requests and our
//! Path on REGISTERs, and lose the Route entries that named us (loose routing, §16.4, with the
//! strict-router fix-up); the sender's Via gets `received` and `rport` (RFC 3581 §4); responses
//! lose our Via (§16.7 step 3).

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use sip_common::CallIdHasher;

use super::flow::{TokenText, Transport};
use crate::sip::{
    HeaderName, Message, StartLine,
    build::{header as put, status_line},
    scan::CommaList,
    simd::{self, Class},
    text::{put_decimal, put_hex, put_ip},
    uri::ip_literal,
    validate::DialogFields,
    via::Via,
};

/// Who we are on the wire: the host and ports in our Via (this node), and the route address in
/// our Record-Route and Path entries. The route address may be shared by a cluster (an anycast or
/// ECMP service address), so that any node takes a dialog's later requests, while responses come
/// back to the node whose Via they carry.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host: String,
    /// The UDP port.
    pub port: u16,
    /// `host:port`, as written in our UDP Via.
    pub host_port: String,
    /// The route address's host.
    pub route_host: String,
    /// `route_host:port`, as written in our UDP Record-Route and Path entries.
    pub route_host_port: String,
    /// Our port per transport ([`Transport::index`] order), where we listen on it.
    ports: [Option<u16>; 3],
}

impl Identity {
    pub fn new(host: &str, port: u16) -> Self {
        Self::with_route_host(host, port, host)
    }

    /// Via `host:port`, Record-Route and Path `route_host:port`.
    pub fn with_route_host(host: &str, port: u16, route_host: &str) -> Self {
        Identity {
            host: host.to_string(),
            port,
            host_port: format!("{host}:{port}"),
            route_host: route_host.to_string(),
            route_host_port: format!("{route_host}:{port}"),
            ports: [Some(port), None, None],
        }
    }

    /// Also listening on `transport` at `port`.
    pub fn with_port(mut self, transport: Transport, port: u16) -> Self {
        self.ports[transport.index()] = Some(port);
        self
    }

    /// Our port for `transport` (the UDP port when we do not listen on it).
    pub fn port_for(&self, transport: Transport) -> u16 {
        self.ports[transport.index()].unwrap_or(self.port)
    }

    /// True if we listen on `transport`.
    pub fn listens_on(&self, transport: Transport) -> bool {
        self.ports[transport.index()].is_some()
    }

    fn is_my_port(&self, port: u16) -> bool {
        self.ports.contains(&Some(port))
    }

    /// True if a URI's host and port name us, by either address and any of our ports (5060
    /// when absent).
    pub fn is_me(&self, host: &[u8], port: Option<u16>) -> bool {
        self.is_my_port(port.unwrap_or(5060))
            && (host.eq_ignore_ascii_case(self.host.as_bytes())
                || host.eq_ignore_ascii_case(self.route_host.as_bytes()))
    }

    /// True if a Via (a response's top one, or one in a looping request) is this node's.
    pub fn is_my_via(&self, via: &Via<'_>) -> bool {
        self.is_my_port(via.port.unwrap_or(5060))
            && via.host.eq_ignore_ascii_case(self.host.as_bytes())
    }
}

/// One URI of ours in a Record-Route or Path header, for the transport the next request on
/// that side must use (RFC 5658: one entry per side when they differ): plain, or carrying a
/// flow token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub flow: Option<TokenText>,
    pub transport: Transport,
}

impl Entry {
    pub const PLAIN: Entry = Entry {
        flow: None,
        transport: Transport::Udp,
    };

    fn write(&self, out: &mut BytesMut, me: &Identity) {
        out.put_slice(b"<sip:");
        if let Some(t) = &self.flow {
            out.put_slice(t.as_bytes());
            out.put_u8(b'@');
        }
        out.put_slice(me.route_host.as_bytes());
        out.put_u8(b':');
        put_decimal(out, me.port_for(self.transport));
        if self.transport != Transport::Udp {
            out.put_slice(b";transport=");
            out.put_slice(self.transport.name().as_bytes());
        }
        out.put_slice(b";lr>");
    }
}

/// What forwarding changes in a request besides Via and Max-Forwards (RFC 3261 §16.6).
#[derive(Debug, Clone, Copy, Default)]
pub struct Edits<'a> {
    /// Route values of ours to remove from the front (§16.4, loose routing).
    pub pop_routes: usize,
    /// Strict-router compatibility (§16.4): the new Request-URI; the last Route value, which it
    /// came from, is removed.
    pub new_uri: Option<&'a [u8]>,
    /// Record-Route entries to add, top first (§16.6 step 4; two when the sides differ).
    pub record_route: &'a [Entry],
    /// A Path entry to add on top (RFC 3327 §5.2), for a REGISTER.
    pub path: Option<Entry>,
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

impl Branch {
    /// The branch as written in our Via, into `buf` (no allocation): formatted once per
    /// forwarded request, for the Via and for the client transaction's key.
    pub fn text<'a>(&self, buf: &'a mut [u8; 64]) -> &'a [u8] {
        // 11 + 10 + 1 + 16 + 1 + 8 = 47 bytes at most: always fits.
        let mut w = &mut buf[..];
        w.put_slice(BRANCH_PREFIX);
        put_decimal(&mut w, self.worker);
        w.put_u8(b'-');
        put_hex(&mut w, self.seq);
        w.put_u8(b'-');
        put_hex(&mut w, u64::from(self.loop_hash));
        let n = 64 - w.len();
        &buf[..n]
    }
}

/// The loop hash in a branch of ours (its last `-` field, hexadecimal), as [`Branch::text`]
/// wrote it.
fn loop_hash_in(branch: &[u8]) -> Option<u32> {
    let hex = std::str::from_utf8(branch.rsplit(|&c| c == b'-').next()?).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

/// The fields whose change makes a returning request a spiral rather than a loop (RFC 3261
/// §16.3 step 4, §16.6 step 8: everything that affects the request's admission or routing):
/// Request-URI, From tag, To tag, Call-ID, CSeq number, Proxy-Require and the Route set (an
/// in-dialog request that comes back to us through another record-routing proxy has one entry
/// fewer). Hashed in one pass over the pieces, each followed by its length, without
/// allocating (a hash per piece, combined, cost ~170 instructions a piece).
pub fn loop_hash(msg: &Message<'_, '_>, read: &DialogFields<'_>) -> u32 {
    let uri = match msg.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => b"",
    };
    let seq = read.cseq.map_or(0, |c| c.seq);
    let proxy_require = msg
        .header(HeaderName::ProxyRequire)
        .map_or(b"".as_slice(), |h| h.value);
    let pieces: [&[u8]; 5] = [
        uri,
        read.from_tag.flatten().unwrap_or(b""),
        read.to_tag.flatten().unwrap_or(b""),
        msg.call_id().unwrap_or(b""),
        proxy_require,
    ];
    let mut hasher = CallIdHasher::new();
    hasher.write_word(u64::from(seq));
    for piece in pieces.into_iter().chain(msg.values(HeaderName::Route)) {
        hasher.write_bytes(piece);
        hasher.write_word(piece.len() as u64);
    }
    let h = hasher.finish(0);
    (h ^ (h >> 32)) as u32
}

/// True if our branch prefix occurs in `value`: each `z` found 16 bytes at a time, the prefix
/// compared there. `memmem::find` built a searcher per call, ~600 instructions a request.
fn has_branch_prefix(value: &[u8]) -> bool {
    !simd::each_flagged(value, Class::of(b"z"), |i, _| {
        !value[i..].starts_with(BRANCH_PREFIX)
    })
}

/// §16.3 step 4: the request carries a Via of ours whose branch holds this very request's
/// loop hash (it went round and came back unchanged). A Via of ours with another hash is a
/// spiral, which is legal and forwarded.
pub fn is_loop(msg: &Message<'_, '_>, read: &DialogFields<'_>, me: &Identity) -> bool {
    // Our branch prefix appears in no Via line on almost every request: one substring search
    // per line settles that without parsing any Via.
    if !msg
        .headers_named(HeaderName::Via)
        .any(|h| has_branch_prefix(h.value))
    {
        return false;
    }
    let mut ours = msg.vias().filter_map(Result::ok).filter_map(|v| {
        let b = v.branch().filter(|b| b.starts_with(BRANCH_PREFIX))?;
        if !me.is_my_via(&v) {
            return None;
        }
        loop_hash_in(b)
    });
    // Hashed only when a Via of ours is there: almost never on the way in.
    let Some(first) = ours.next() else {
        return false;
    };
    let hash = loop_hash(msg, read);
    first == hash || ours.any(|h| h == hash)
}

/// The request `msg`, received from `source`, as forwarded by us over `transport`: `branch`
/// (a [`Branch`]'s text) in our new top Via,
/// the sender's Via (`top_via`, as validation parsed it) with `received`/`rport` (RFC 3581),
/// Max-Forwards decremented (70 if absent, §16.6 step 3), and the route `edits`.
pub fn forward_request(
    msg: &Message<'_, '_>,
    top_via: Option<&Via<'_>>,
    source: SocketAddr,
    transport: Transport,
    me: &Identity,
    branch: &[u8],
    edits: &Edits<'_>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.raw.len() + 256);
    if let StartLine::Request { method, uri } = msg.start {
        out.put_slice(method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(edits.new_uri.unwrap_or(uri));
        out.put_slice(b" SIP/2.0\r\n");
    }
    out.put_slice(b"Via: SIP/2.0/");
    out.put_slice(transport.via_name().as_bytes());
    out.put_u8(b' ');
    out.put_slice(me.host.as_bytes());
    out.put_u8(b':');
    put_decimal(&mut out, me.port_for(transport));
    out.put_slice(b";branch=");
    out.put_slice(branch);
    out.put_slice(b"\r\n");
    for e in edits.record_route {
        out.put_slice(b"Record-Route: ");
        e.write(&mut out, me);
        out.put_slice(b"\r\n");
    }
    if let Some(e) = &edits.path {
        out.put_slice(b"Path: ");
        e.write(&mut out, me);
        out.put_slice(b"\r\n");
    }
    let routes = if edits.pop_routes > 0 || edits.new_uri.is_some() {
        msg.values(HeaderName::Route).count()
    } else {
        0
    };
    let mut route_index = 0usize;
    let mut saw_max_forwards = false;
    let mut via_done = false;
    for h in msg.headers {
        match h.name {
            HeaderName::Via if !via_done => {
                via_done = true;
                put_sender_via(&mut out, h.raw_name, h.value, top_via, source);
            }
            HeaderName::MaxForwards => {
                saw_max_forwards = true;
                let n = crate::sip::fields::max_forwards(h.value).unwrap_or(70);
                out.put_slice(b"Max-Forwards: ");
                put_decimal(&mut out, n.saturating_sub(1));
                out.put_slice(b"\r\n");
            }
            HeaderName::Route if routes > 0 => {
                // Keep the values that are neither ours at the front nor the one a strict
                // router's fix-up moved into the Request-URI; the rest of the line as written.
                let mut started = false;
                for v in CommaList::new(h.value) {
                    let i = route_index;
                    route_index += 1;
                    let moved = edits.new_uri.is_some() && i + 1 == routes;
                    if i < edits.pop_routes || moved {
                        continue;
                    }
                    if started {
                        out.put_slice(b", ");
                    } else {
                        out.put_slice(h.raw_name);
                        out.put_slice(b": ");
                        started = true;
                    }
                    out.put_slice(v);
                }
                if started {
                    out.put_slice(b"\r\n");
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
/// stay as they were. `parsed`: the line's first value as validation parsed it; without one
/// (it did not parse, which validation does not let through) the line is kept as it is.
fn put_sender_via(
    out: &mut BytesMut,
    name: &[u8],
    value: &[u8],
    parsed: Option<&Via<'_>>,
    source: SocketAddr,
) {
    let mut values = CommaList::new(value);
    let first = values.next().unwrap_or(b"");
    let Some(via) = parsed else {
        return put(out, name, value);
    };
    debug_assert!(
        first.as_ptr_range().contains(&via.sent_by.as_ptr()),
        "the parsed Via is this line's first value"
    );
    let ip = source.ip();
    let needs_received = ip_literal(via.host) != Some(ip);
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
    out.put_slice(b";received=");
    put_ip(out, ip);
    if wants_rport {
        out.put_slice(b";rport=");
        put_decimal(out, source.port());
    }
    if let Some(rest) = values.remainder() {
        out.put_slice(b", ");
        out.put_slice(rest);
    }
    out.put_slice(b"\r\n");
}

/// The response `msg` without its top Via value (ours), to relay upstream.
pub fn strip_top_via(msg: &Message<'_, '_>) -> Bytes {
    let StartLine::Response { code, reason } = msg.start else {
        return Bytes::new();
    };
    if let Some((from, to)) = lone_top_via_line(msg) {
        // The usual case: the message as received, less one line, in two copies (rebuilding
        // it line by line cost ~1,200 instructions a response).
        let mut out = BytesMut::with_capacity(msg.raw.len() - (to - from));
        out.put_slice(&msg.raw[..from]);
        out.put_slice(&msg.raw[to..]);
        return out.freeze();
    }
    // The response may be kept 32 s (a non-INVITE server transaction's Completed state), so it
    // is built in a buffer of its exact size: no slack, and `freeze` needs no shared header.
    let len = "SIP/2.0 000 \r\n".len()
        + reason.len()
        + lines_without_top_via(msg)
            .map(|(name, value)| name.len() + ": \r\n".len() + value.len())
            .sum::<usize>()
        + "\r\n".len()
        + msg.body.len();
    let mut out = BytesMut::with_capacity(len);
    status_line(&mut out, code, reason);
    for (name, value) in lines_without_top_via(msg) {
        put(&mut out, name, value);
    }
    out.put_slice(b"\r\n");
    out.put_slice(msg.body);
    debug_assert_eq!(out.len(), len, "strip_top_via sized its buffer exactly");
    out.freeze()
}

/// Where the first Via line of `msg` starts and the next header line starts, in `msg.raw`,
/// when that line holds one value and is not the last header line (so the next line's start
/// is known from the parse). `None` sends the caller to the line-by-line rebuild.
fn lone_top_via_line(msg: &Message<'_, '_>) -> Option<(usize, usize)> {
    let at = msg.headers.iter().position(|h| h.name == HeaderName::Via)?;
    let via = &msg.headers[at];
    let next = msg.headers.get(at + 1)?;
    let mut values = CommaList::new(via.value);
    values.next();
    if values.remainder().is_some() {
        return None;
    }
    let from = offset_in(msg.raw, via.raw_name)?;
    let to = offset_in(msg.raw, next.raw_name)?;
    (from < to).then_some((from, to))
}

/// Where `part` starts in `whole`, if it is a slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

/// The header lines of `msg` (name as written, value) without the first Via value.
fn lines_without_top_via<'m>(
    msg: &'m Message<'_, '_>,
) -> impl Iterator<Item = (&'m [u8], &'m [u8])> {
    let mut stripped = false;
    msg.headers.iter().filter_map(move |h| {
        if h.name == HeaderName::Via && !stripped {
            stripped = true;
            let mut values = CommaList::new(h.value);
            values.next();
            return values.remainder().map(|rest| (h.raw_name, rest));
        }
        Some((h.raw_name, h.value))
    })
}

#[cfg(test)]
mod tests {
    use super::{BRANCH_PREFIX, Branch, lines_without_top_via, lone_top_via_line, loop_hash_in};
    use crate::sip::{Header, Parsed, parse};

    /// Every way a response's Vias can be written: the copy with a line cut out and the
    /// rebuild say the same thing (header for header, body for body).
    #[test]
    fn a_response_loses_exactly_its_top_via_value() {
        let tail = "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\n\
                    CSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbody";
        let cases = [
            // (Via lines, whether the top line is cut out as it is: Vias first, Vias last)
            (
                "Via: SIP/2.0/UDP us;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP them;branch=z9hG4bK2\r\n",
                [true, true],
            ),
            (
                "v: SIP/2.0/UDP us;branch=z9hG4bK1\r\nv:SIP/2.0/UDP them\r\n",
                [true, true],
            ),
            (
                "Via : SIP/2.0/UDP us;branch=z9hG4bK1 \r\n  ;x=1\r\nVia: SIP/2.0/UDP t\r\n",
                [true, true],
            ),
            // The last header line: its end is not known from the next one's start.
            ("Via: SIP/2.0/UDP us;branch=z9hG4bK1\r\n", [true, false]),
            // Two values in a line: rebuilt.
            (
                "Via: SIP/2.0/UDP us;branch=z9hG4bK1, SIP/2.0/UDP them;branch=z9hG4bK2\r\n",
                [false, false],
            ),
            (
                "Via: SIP/2.0/UDP us;branch=z9hG4bK1 ,\r\n SIP/2.0/UDP them\r\n",
                [false, false],
            ),
        ];
        for (vias, cut) in cases {
            for (via_last, cut) in [false, true].into_iter().zip(cut) {
                let text = if via_last {
                    let (head, body) = tail.split_once("\r\n\r\n").unwrap();
                    format!("SIP/2.0 200 OK\r\n{head}\r\n{vias}\r\n{body}")
                } else {
                    format!("SIP/2.0 200 OK\r\n{vias}{tail}")
                };
                let mut h = [Header::EMPTY; 16];
                let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut h) else {
                    panic!("{text}")
                };
                assert_eq!(lone_top_via_line(&m).is_some(), cut, "{text}");
                let out = super::strip_top_via(&m);
                let mut h2 = [Header::EMPTY; 16];
                let Ok(Parsed::Message(o)) = parse(&out, &mut h2) else {
                    panic!("{}", String::from_utf8_lossy(&out))
                };
                let expected: Vec<_> = lines_without_top_via(&m)
                    .map(|(_, v)| v.trim_ascii())
                    .collect();
                let got: Vec<_> = o.headers.iter().map(|h| h.value.trim_ascii()).collect();
                assert_eq!(got, expected, "{text}");
                assert_eq!(o.body, b"body");
                assert_eq!(o.start, m.start);
            }
        }
    }

    #[test]
    fn the_branch_prefix_is_found_wherever_it_is() {
        let plain = |v: &[u8]| v.windows(BRANCH_PREFIX.len()).any(|w| w == BRANCH_PREFIX);
        let prefix = std::str::from_utf8(BRANCH_PREFIX).unwrap();
        for pad in 0..40 {
            let lead = "z".repeat(pad % 3) + &"x".repeat(pad);
            for v in [
                format!("SIP/2.0/UDP h;branch={lead}{prefix}0-1-2"),
                format!("SIP/2.0/UDP h;branch={lead}z9hG4bK-lg1"),
                format!("{lead}{}", &prefix[..prefix.len() - 1]),
                format!("{lead}{prefix}"),
            ] {
                assert_eq!(
                    super::has_branch_prefix(v.as_bytes()),
                    plain(v.as_bytes()),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn a_branch_is_written_as_specified_and_its_loop_hash_reads_back() {
        for b in [
            Branch {
                worker: 0,
                seq: 0,
                loop_hash: 0,
            },
            Branch {
                worker: u32::MAX,
                seq: u64::MAX,
                loop_hash: u32::MAX,
            },
        ] {
            let mut buf = [0u8; 64];
            let text = b.text(&mut buf);
            let spec = format!("z9hG4bK-sfp{}-{:x}-{:x}", b.worker, b.seq, b.loop_hash);
            assert_eq!(text, spec.as_bytes());
            assert!(text.starts_with(BRANCH_PREFIX));
            assert_eq!(loop_hash_in(text), Some(b.loop_hash));
        }
    }
}
