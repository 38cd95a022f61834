//! The message parser: start line, header lines and body of one datagram (RFC 3261 §7), as
//! slices of the caller's buffer. Header storage is the caller's, as in `httparse`, so parsing
//! does not allocate; typed views of header values are in [`super::fields`], parsed on demand.

use std::mem::MaybeUninit;

use super::{
    error::Error,
    lines::LineEnds,
    method::Method,
    name::HeaderName,
    scan::{eq_ic, find, has_space, is_token_str, is_wsp, parse_u64, rfind, trim_lws},
    simd::{self, Class},
};

/// One header line (with its continuation lines): the name as written and recognised, and the
/// value without surrounding whitespace. A folded value keeps its inner CRLF-SP sequences;
/// the field parsers treat them as whitespace (RFC 3261 §7.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    pub name: HeaderName,
    pub raw_name: &'b [u8],
    pub value: &'b [u8],
}

impl Header<'_> {
    /// A placeholder for header storage arrays: `[Header::EMPTY; 64]`.
    pub const EMPTY: Header<'static> = Header {
        name: HeaderName::Other,
        raw_name: b"",
        value: b"",
    };
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'b> {
    /// `Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1).
    Request { method: Method<'b>, uri: &'b [u8] },
    /// `SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 §7.2).
    Response { code: u16, reason: &'b [u8] },
}

/// A parsed SIP message borrowing from the datagram (`'b`) and the header storage (`'h`).
#[derive(Debug, Clone, Copy)]
pub struct Message<'h, 'b> {
    pub start: StartLine<'b>,
    pub headers: &'h [Header<'b>],
    /// The body, framed by Content-Length; on UDP without Content-Length, the rest of the
    /// datagram (RFC 3261 §18.3).
    pub body: &'b [u8],
    /// The message's own bytes: from the start line to the end of the body. Octets after it
    /// in the datagram are ignored (RFC 4475 §3.1.1.8).
    pub raw: &'b [u8],
    /// More than one Content-Length header was present; the body is then the rest of the
    /// datagram and [`super::proxy_check`] answers 400 (RFC 4475 §3.3.9).
    pub content_length_count: u8,
}

/// What one datagram holds.
#[derive(Debug, Clone, Copy)]
pub enum Parsed<'h, 'b> {
    /// Only CRLFs: a keep-alive ping or pong (RFC 5626 §4.4.1); nothing to answer on UDP.
    KeepAlive,
    Message(Message<'h, 'b>),
}

/// Header lines parsed with stack storage on the daemon's paths (proxy, transactions, workers,
/// the `parse` command): enough for nearly every message, so the common case allocates nothing.
pub const MAX_HEADERS: usize = 64;

/// Header lines a message may have at all: carrier INVITEs carry 100 and more (P-headers,
/// Diversion, History-Info…). [`parse_any`] parses those again with heap storage; a message
/// with more fails with [`Error::TooManyHeaders`] (answered 513).
pub const MAX_HEADERS_LARGE: usize = 512;

/// Parses `buf` and hands the result to `f`: with [`MAX_HEADERS`] lines of stack storage, and
/// when that is too few, once more with [`MAX_HEADERS_LARGE`] on the heap (the only allocation,
/// and only for such messages).
pub fn parse_any<R>(buf: &[u8], f: impl FnOnce(Result<Parsed<'_, '_>, Error>) -> R) -> R {
    // Left uninitialised: setting 64 headers up front cost ~400 instructions a message, more
    // than parsing a short header section.
    let mut headers = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
    match parse_into(buf, &mut headers) {
        Err(Error::TooManyHeaders) => {
            let mut large = vec![Header::EMPTY; MAX_HEADERS_LARGE];
            f(parse(buf, &mut large))
        }
        parsed => f(parsed),
    }
}

/// Parses `buf` and hands the message to `f`; `None` for a keep-alive or a datagram that does
/// not parse. For code that already knows the bytes are a message it built or accepted before.
pub fn with_message<R>(buf: &[u8], f: impl FnOnce(&Message<'_, '_>) -> R) -> Option<R> {
    parse_any(buf, |parsed| match parsed {
        Ok(Parsed::Message(m)) => Some(f(&m)),
        _ => None,
    })
}

/// What can be read of a request that failed to parse, so it can be answered (400 or 513)
/// rather than left to retransmit for 32 s: its start line and the header lines before the
/// problem, with no body. `None` unless the start line is a request other than ACK and a Via
/// was read (a response needs somewhere to go, RFC 3261 §18.2.2).
pub fn parse_for_reply<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Option<Message<'h, 'b>> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let (first, pos, mut lines) = first_line(buf, start)?;
    let start_line = parse_start_line(first).ok()?;
    if !matches!(start_line, StartLine::Request { method, .. } if method != Method::Ack) {
        return None;
    }
    // Only what a response copies (RFC 3261 §8.2.6), from wherever it is in the header section.
    let needed = |n: HeaderName| {
        matches!(
            n,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        )
    };
    let headers = as_slots(headers);
    let (count, _) = header_lines(buf, pos, &mut lines, headers, needed);
    let headers = filled(headers, count);
    headers
        .iter()
        .any(|h| h.name == HeaderName::Via)
        .then_some(Message {
            start: start_line,
            headers,
            body: &buf[buf.len()..],
            raw: &buf[start..],
            content_length_count: 0,
        })
}

/// Parses one datagram. Leading CRLFs are skipped (RFC 3261 §7.5). Fails on a malformed start
/// line or header line, on more header lines than `headers` holds, and on a Content-Length
/// larger than what follows; it does not look inside header values (see
/// [`Message::validate`]).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Result<Parsed<'h, 'b>, Error> {
    parse_into(buf, as_slots(headers))
}

/// Header storage the parser fills from the front, one slot per header line: the caller's
/// initialised headers ([`parse`], httparse style) or an uninitialised array ([`parse_any`]).
type Slots<'b> = [MaybeUninit<Header<'b>>];

/// `headers` as slots.
fn as_slots<'a, 'b>(headers: &'a mut [Header<'b>]) -> &'a mut Slots<'b> {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the parser writes only initialised
    // headers into slots (`header_lines`), so `headers` stays initialised.
    unsafe { &mut *(std::ptr::from_mut(headers) as *mut Slots<'b>) }
}

/// The first `count` slots, which `header_lines` initialised (it returns how many it wrote).
fn filled<'a, 'b>(slots: &'a Slots<'b>, count: usize) -> &'a [Header<'b>] {
    let slots = &slots[..count];
    // SAFETY: `header_lines` writes slot n before it counts it, so the first `count` slots
    // are initialised; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &*(std::ptr::from_ref(slots) as *const [Header<'b>]) }
}

fn parse_into<'h, 'b>(buf: &'b [u8], headers: &'h mut Slots<'b>) -> Result<Parsed<'h, 'b>, Error> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    let Some(start) = start else {
        return Ok(Parsed::KeepAlive);
    };
    let (first, pos, mut lines) = first_line(buf, start).ok_or(Error::Incomplete)?;
    let start_line = parse_start_line(first)?;
    let (count, body_start) = parse_header_section(buf, pos, &mut lines, headers)?;
    let headers = filled(headers, count);

    // Content-Length frames the body (RFC 3261 §18.3); more than one is answered 400 by
    // `proxy_check`, so the body is then the rest of the datagram.
    let mut content_length = None;
    let mut content_length_count = 0u8;
    for h in headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let v = parse_u64(h.value, u32::MAX as u64)
            .ok_or(Error::HeaderValue(HeaderName::ContentLength))?;
        content_length.get_or_insert(v);
        content_length_count = content_length_count.saturating_add(1);
    }
    let rest = &buf[body_start..];
    let body = match content_length {
        Some(len) if content_length_count == 1 => {
            let len = usize::try_from(len).map_err(|_| Error::BodyTooShort)?;
            rest.get(..len).ok_or(Error::BodyTooShort)?
        }
        _ => rest,
    };
    Ok(Parsed::Message(Message {
        start: start_line,
        headers,
        body,
        raw: &buf[start..body_start + body.len()],
        content_length_count,
    }))
}

/// The header lines of a datagram whose first line is skipped unread: for callers that need a
/// header even when the start line is malformed (the tests that compare the XDP program's
/// Call-ID hash with the parser's on RFC 4475's invalid messages). The same header-line parser
/// as [`parse`].
pub fn parse_headers_only<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Result<&'h [Header<'b>], Error> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(Error::Incomplete)?;
    let (_, pos, mut lines) = first_line(buf, start).ok_or(Error::Incomplete)?;
    let headers = as_slots(headers);
    let (count, _) = parse_header_section(buf, pos, &mut lines, headers)?;
    Ok(filled(headers, count))
}

/// The first non-empty Call-ID value among `headers` (see [`Message::call_id`]).
pub fn call_id_in<'b>(headers: &[Header<'b>]) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name == HeaderName::CallId)
        .map(|h| h.value)
        .filter(|v| !v.is_empty())
}

/// Header lines from `pos` to the blank line (RFC 3261 §7.3): the number stored in `headers`
/// and the offset of the body.
fn parse_header_section<'b>(
    buf: &'b [u8],
    pos: usize,
    lines: &mut LineEnds<'_>,
    headers: &mut Slots<'b>,
) -> Result<(usize, usize), Error> {
    let (count, body) = header_lines(buf, pos, lines, headers, |_| true);
    body.map(|b| (count, b))
}

/// The header-line loop: how many lines were stored in `headers` (also when it fails, for
/// [`parse_for_reply`]), and the body's offset or what went wrong. Only lines whose name
/// `keep`s are stored; the others are checked and skipped. `lines` finds the LFs from `pos` on.
fn header_lines<'b>(
    buf: &'b [u8],
    mut pos: usize,
    lines: &mut LineEnds<'_>,
    headers: &mut Slots<'b>,
    keep: impl Fn(HeaderName) -> bool,
) -> (usize, Result<usize, Error>) {
    let mut count = 0usize;
    let mut value_start = 0usize; // where the current header's value begins in `buf`
    let mut kept = false; // the current header (which continuation lines extend) was stored
    let mut any = false;
    loop {
        if pos == buf.len() && any {
            // The datagram ends after a complete header line but without the blank line: on
            // UDP the datagram frames the message, so take it as headers without a body.
            return (count, Ok(pos));
        }
        let Some((line, next)) = line_at(buf, pos, lines) else {
            return (count, Err(Error::Incomplete));
        };
        if line.is_empty() {
            return (count, Ok(next));
        }
        if is_wsp(line[0]) {
            // A continuation line (RFC 3261 §7.3.1): the value runs on to this line's end.
            if !any {
                return (count, Err(Error::Continuation));
            }
            if kept {
                let end = pos + line.len();
                // SAFETY: `kept` means the line before was stored in slot `count - 1`.
                let last = unsafe { headers[count - 1].assume_init_mut() };
                last.value = trim_lws(&buf[value_start..end]);
            }
        } else {
            // name, optional whitespace, colon (RFC 3261 §7.3.1).
            let name_end = name_end(buf, pos, line);
            let mut colon = name_end;
            while colon < line.len() && is_wsp(line[colon]) {
                colon += 1;
            }
            let raw_name = &line[..name_end];
            let name = HeaderName::from_bytes(raw_name);
            // A known name is a token: it matched letters and `-` folded with `| 0x20`, which
            // only letters fold to (and CR to `-`, which ends the name above). Only other
            // names are checked byte by byte.
            if name_end == 0
                || (name == HeaderName::Other && !is_token_str(raw_name))
                || line.get(colon) != Some(&b':')
            {
                return (count, Err(Error::HeaderName));
            }
            any = true;
            kept = keep(name);
            if kept {
                if count == headers.len() {
                    return (count, Err(Error::TooManyHeaders));
                }
                value_start = pos + colon + 1;
                headers[count].write(Header {
                    name,
                    raw_name,
                    value: trim_lws(&line[colon + 1..]),
                });
                count += 1;
            }
        }
        pos = next;
    }
}

/// Where the header name of `line` (at `buf[pos..]`) ends: at its first `:` or byte at or below
/// SP, or at the line's end. One 16-byte comparison for nearly every name; the bytes before
/// the end are not yet known to be a token (see `header_lines`).
#[inline]
fn name_end(buf: &[u8], pos: usize, line: &[u8]) -> usize {
    const NAME_END: Class = Class::of(b":").and_at_or_below_sp();
    #[cfg(target_arch = "x86_64")]
    if pos + simd::CHUNK <= buf.len() {
        // The 16 bytes may run past the line (its CR, the next line): clipped to the line.
        let m = simd::mask(buf, pos, NAME_END);
        if m != 0 {
            return (m.trailing_zeros() as usize).min(line.len());
        }
    }
    simd::find(line, NAME_END).unwrap_or(line.len())
}

/// The first line, starting at `start`: the line, where the next one starts, and the line ends
/// after it.
fn first_line(buf: &[u8], start: usize) -> Option<(&[u8], usize, LineEnds<'_>)> {
    let mut lines = LineEnds::new(buf, start);
    let (line, next) = line_at(buf, start, &mut lines)?;
    Some((line, next, lines))
}

/// The line starting at `pos` without its CRLF (or bare LF), and the offset of the next line.
/// `lines` holds the LFs from `pos` on: the one it hands out ends this line.
#[inline]
fn line_at<'b>(buf: &'b [u8], pos: usize, lines: &mut LineEnds<'_>) -> Option<(&'b [u8], usize)> {
    let lf = lines.next_lf()?;
    let line = buf.get(pos..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, lf + 1))
}

const VERSION: &[u8] = b"SIP/2.0";

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, Error> {
    if line.len() > VERSION.len()
        && eq_ic(&line[..VERSION.len()], VERSION)
        && line[VERSION.len()] == b' '
    {
        return parse_status_line(&line[VERSION.len() + 1..]);
    }
    if line.len() >= 4 && eq_ic(&line[..4], b"SIP/") {
        return Err(Error::Version);
    }
    parse_request_line(line)
}

/// `Status-Code SP Reason-Phrase` after the version. The reason may be empty, with or
/// without its SP (RFC 4475 §3.1.1.13), and is any UTF-8 text.
fn parse_status_line(rest: &[u8]) -> Result<StartLine<'_>, Error> {
    // The code is the first 3 bytes: a plain search stops at once, where `memchr`'s set-up
    // would cost more than the search.
    let (code, reason) = match find(rest, b' ') {
        Some(sp) => (&rest[..sp], &rest[sp + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if code.len() != 3 {
        return Err(Error::StatusCode);
    }
    let code = parse_u64(code, 699).ok_or(Error::StatusCode)? as u16;
    if code < 100 {
        return Err(Error::StatusCode);
    }
    Ok(StartLine::Response { code, reason })
}

/// `Method SP Request-URI SP SIP-Version` with exactly one SP between elements
/// (RFC 3261 §7.1; RFC 4475 §3.1.2.7–§3.1.2.11).
fn parse_request_line(line: &[u8]) -> Result<StartLine<'_>, Error> {
    let sp = find(line, b' ').ok_or(Error::StartLine)?; // a method's length away
    let method = Method::from_bytes(&line[..sp]);
    // A known method is spelled in capitals (methods are case-sensitive, RFC 3261 §7.1), so
    // only others are checked byte by byte.
    if matches!(method, Method::Other(m) if !is_token_str(m)) {
        return Err(if sp == 0 {
            Error::StartLine
        } else {
            Error::Method
        });
    }
    let rest = &line[sp + 1..];
    match common_request_uri(rest) {
        Some(uri) => Ok(StartLine::Request { method, uri }),
        None => request_uri_and_version(method, rest),
    }
}

/// The Request-URI of the common ending, a URI without spaces and " SIP/2.0", decided in one
/// comparison and one 16-byte search; `None` for anything else, which
/// [`request_uri_and_version`] decides (and tells the errors apart).
#[inline]
fn common_request_uri(rest: &[u8]) -> Option<&[u8]> {
    let uri = rest.strip_suffix(b" SIP/2.0")?;
    let &first = uri.first()?;
    (first > b' ' && first != b'<' && !has_space(uri) && find(uri, b':').is_some()).then_some(uri)
}

/// What follows the method's SP: the Request-URI, its SP and the version, with every check.
fn request_uri_and_version<'b>(method: Method<'b>, rest: &'b [u8]) -> Result<StartLine<'b>, Error> {
    if rest.last().is_some_and(|&b| is_wsp(b)) || rest.first().is_some_and(|&b| is_wsp(b)) {
        return Err(Error::RequestLineSpacing);
    }
    let last_sp = rfind(rest, b' ').ok_or(Error::StartLine)?; // 7 bytes from the end
    let (uri, version) = (&rest[..last_sp], &rest[last_sp + 1..]);
    if uri.last().is_some_and(|&b| is_wsp(b)) {
        return Err(Error::RequestLineSpacing);
    }
    if !eq_ic(version, VERSION) {
        return Err(if version.len() >= 4 && eq_ic(&version[..4], b"SIP/") {
            Error::Version
        } else {
            Error::StartLine
        });
    }
    if uri.is_empty() || has_space(uri) || uri[0] == b'<' || find(uri, b':').is_none() {
        return Err(Error::RequestUri);
    }
    Ok(StartLine::Request { method, uri })
}

impl<'h, 'b> Message<'h, 'b> {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method<'b>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first header with this name.
    pub fn header(&self, name: HeaderName) -> Option<&'h Header<'b>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Every header line with this name, in order.
    pub fn headers_named(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = &'h Header<'b>> + use<'h, 'b> {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// How many header lines carry this name.
    pub fn count(&self, name: HeaderName) -> usize {
        self.headers_named(name).count()
    }

    /// The Call-ID value (RFC 3261 §20.8): what the kernel hashes, so the same bytes.
    pub fn call_id(&self) -> Option<&'b [u8]> {
        call_id_in(self.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok<'h, 'b>(buf: &'b [u8], headers: &'h mut [Header<'b>]) -> Message<'h, 'b> {
        match parse(buf, headers) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    /// The header-name rule as RFC 3261 §7.3.1 reads: a token, optional whitespace, a colon.
    fn name_by_the_grammar(line: &[u8]) -> Option<&[u8]> {
        let end = line
            .iter()
            .position(|&b| !crate::sip::scan::is_token(b))
            .unwrap_or(line.len());
        let colon = end + line[end..].iter().take_while(|&&b| is_wsp(b)).count();
        (end > 0 && line.get(colon) == Some(&b':')).then_some(&line[..end])
    }

    #[test]
    fn header_names_follow_the_grammar_for_any_byte_anywhere() {
        // Known and unknown names, short and past 16 bytes, with every byte value put at every
        // place of the name and around the colon: the parser takes exactly the lines the
        // grammar allows, with the same name.
        let names: [&[u8]; 6] = [
            b"Via",
            b"Call-ID",
            b"Content-Length",
            b"Allow",
            b"X-Very-Long-Extension-Name",
            b"i",
        ];
        for name in names {
            for at in 0..name.len() + 2 {
                for b in 0..=255u8 {
                    let mut line = [name, b" : 0"].concat();
                    line[at] = b;
                    if b == b'\n' || (at == 0 && is_wsp(b)) {
                        continue; // another line, a continuation line: not this test's subject
                    }
                    let msg = [b"OPTIONS sip:a@b SIP/2.0\r\n", &line[..], b"\r\n\r\n"].concat();
                    let mut headers = [Header::EMPTY; 4];
                    let parsed = parse(&msg, &mut headers);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    let got = match parsed {
                        Ok(Parsed::Message(m)) => Some(m.headers[0].raw_name),
                        Err(Error::HeaderName) => None,
                        // A name that became Content-Length (`l`), whose value the parser
                        // reads: the name was taken.
                        Err(Error::HeaderValue(HeaderName::ContentLength)) => {
                            name_by_the_grammar(line)
                                .filter(|n| HeaderName::from_bytes(n) == HeaderName::ContentLength)
                        }
                        other => panic!("{line:?}: {other:?}"),
                    };
                    assert_eq!(
                        got,
                        name_by_the_grammar(line),
                        "{:?}",
                        String::from_utf8_lossy(line)
                    );
                }
            }
        }
    }

    #[test]
    fn the_common_request_line_path_agrees_with_the_checked_one() {
        // Every line the short path takes, the checked path takes the same way.
        let uris: [&[u8]; 8] = [
            b"sip:bob@example.com",
            b"sips:a@b:5061;transport=tls",
            b"<sip:a@b>",
            b"sip:a b@c",
            b"nocolon",
            b"sip:\x01@b",
            b"sip:a@b\t",
            b"",
        ];
        let versions: [&[u8]; 4] = [b" SIP/2.0", b"  SIP/2.0", b" sip/2.0", b" SIP/7.0"];
        let mut taken = 0;
        for uri in uris {
            for version in versions {
                for lead in [&b""[..], b" "] {
                    let rest = [lead, uri, version].concat();
                    if let Some(u) = common_request_uri(&rest) {
                        taken += 1;
                        let checked = request_uri_and_version(Method::Invite, &rest);
                        assert_eq!(
                            checked,
                            Ok(StartLine::Request {
                                method: Method::Invite,
                                uri: u
                            }),
                            "{rest:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(taken, 3);
    }

    #[test]
    fn call_id_long_compact_case_lws_and_fold() {
        let mut h = [Header::EMPTY; 8];
        for (m, want) in [
            (
                &b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\ncall-id  :  abc@h \r\n\r\n"[..],
                &b"abc@h"[..],
            ),
            (b"BYE sip:a@b SIP/2.0\r\nI:xyz\r\n\r\n", b"xyz"),
            (b"BYE sip:a@b SIP/2.0\r\ni:\r\n  folded\r\n\r\n", b"folded"),
            // A broken start line still has readable headers.
            (
                b"INVITE  sip:a@b  SIP/2.0\r\ni: broken-start\r\n\r\n",
                b"broken-start",
            ),
        ] {
            assert_eq!(
                parse_headers_only(m, &mut h).ok().and_then(call_id_in),
                Some(want)
            );
        }
        let in_body = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n";
        assert_eq!(
            parse_headers_only(in_body, &mut h)
                .ok()
                .and_then(call_id_in),
            None
        );
    }

    #[test]
    fn keepalives() {
        let mut h = [Header::EMPTY; 4];
        assert!(matches!(parse(b"\r\n\r\n", &mut h), Ok(Parsed::KeepAlive)));
        assert!(matches!(parse(b"\r\n", &mut h), Ok(Parsed::KeepAlive)));
    }

    #[test]
    fn leading_crlf_bare_lf_and_folding() {
        let mut h = [Header::EMPTY; 8];
        let m = parse_ok(
            b"\r\nBYE sip:a@b SIP/2.0\nSubject: one\n two\nl: 3\n\nabcdef",
            &mut h,
        );
        assert_eq!(m.method(), Some(Method::Bye));
        assert_eq!(m.headers[0].name, HeaderName::Subject);
        assert_eq!(m.headers[0].value, b"one\n two");
        assert_eq!(m.body, b"abc");
        assert!(m.raw.starts_with(b"BYE") && m.raw.ends_with(b"abc"));
    }

    #[test]
    fn content_length_folded_onto_next_line() {
        let mut h = [Header::EMPTY; 8];
        let m = parse_ok(
            b"SIP/2.0 200 OK\r\nContent-Length:\r\n 2\r\n\r\nhi!",
            &mut h,
        );
        assert_eq!((m.status(), m.body), (Some(200), &b"hi"[..]));
    }

    #[test]
    fn errors() {
        let mut h = [Header::EMPTY; 2];
        let cases: [(&[u8], Error); 9] = [
            (b"INVITE sip:a@b SIP/2.0\r\nTo: x", Error::Incomplete),
            (
                b"INVITE sip:a@b SIP/2.0\r\n a: b\r\n\r\n",
                Error::Continuation,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
                Error::HeaderName,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n",
                Error::TooManyHeaders,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc",
                Error::BodyTooShort,
            ),
            (b"SIP/2.0 20 OK\r\n\r\n", Error::StatusCode),
            (b"SIP/2.0 099 Low\r\n\r\n", Error::StatusCode),
            (b"INV(TE sip:a@b SIP/2.0\r\n\r\n", Error::Method),
            (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", Error::StartLine),
        ];
        for (buf, err) in cases {
            assert_eq!(
                parse(buf, &mut h).map(|_| ()),
                Err(err),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }
}
