//! Messages the stack writes itself: local responses (100, 400, 483, 503…) and the ACK a
//! client INVITE transaction sends for a non-2xx final response. The rules are RFC 3261 §8.2.6
//! (responses copy Via, From, To, Call-ID and CSeq) and §17.1.1.3 (the ACK's headers).

use bytes::{BufMut, Bytes, BytesMut};

use super::{HeaderName, Message, text::put_decimal};

/// A response to `request`: its Via lines, From, To (with `to_tag` added if the request's To
/// has no tag and the code is above 100), Call-ID and CSeq; then `extra` header lines (each
/// without CRLF) and no body.
pub fn response(
    request: &Message<'_, '_>,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[&[u8]],
) -> Bytes {
    let mut out = BytesMut::with_capacity(request.raw.len().min(1024) + 64);
    status_line(&mut out, code, reason.as_bytes());
    for h in request.headers {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                header(&mut out, h.name.as_str().as_bytes(), h.value)
            }
            HeaderName::To => {
                out.put_slice(b"To: ");
                out.put_slice(h.value);
                // A tag of ours unless the To has one (RFC 3261 §8.2.6.2); a 100 has none.
                // Its tag read by the split alone: the URI is the request's, forwarded as is.
                if let Some(tag) = to_tag
                    && code > 100
                    && super::address::tag_of(h.value).is_none()
                {
                    out.put_slice(b";tag=");
                    out.put_slice(tag);
                }
                out.put_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for line in extra {
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// The ACK for a non-2xx final `response` to `invite` (RFC 3261 §17.1.1.3): the INVITE's
/// Request-URI, top Via, From, Call-ID, CSeq number and Route set, and the response's To.
pub fn ack_for_non_2xx(invite: &Message<'_, '_>, response: &Message<'_, '_>) -> Bytes {
    same_transaction(invite, "ACK", response)
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): the INVITE's Request-URI, top Via (so
/// the same branch), From, To, Call-ID, CSeq number and Route set.
pub fn cancel_for(invite: &Message<'_, '_>) -> Bytes {
    same_transaction(invite, "CANCEL", invite)
}

/// A request that belongs with `invite`'s transaction: its start line with `method`, its top
/// Via, From, Call-ID, CSeq number and Route set, and the To of `to_from`.
fn same_transaction(invite: &Message<'_, '_>, method: &str, to_from: &Message<'_, '_>) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    if let super::StartLine::Request { uri, .. } = invite.start {
        out.put_slice(uri);
    }
    out.put_slice(b" SIP/2.0\r\n");
    // The top Via value only (the first element of the first Via line).
    if let Some(h) = invite.header(HeaderName::Via) {
        let first = super::scan::CommaList::new(h.value)
            .next()
            .unwrap_or(h.value);
        header(&mut out, b"Via", first);
    }
    out.put_slice(b"Max-Forwards: 70\r\n");
    for (name, from) in [
        (HeaderName::From, invite),
        (HeaderName::To, to_from),
        (HeaderName::CallId, invite),
    ] {
        if let Some(h) = from.header(name) {
            header(&mut out, name.as_str().as_bytes(), h.value);
        }
    }
    if let Some(Ok(cseq)) = invite.cseq() {
        out.put_slice(b"CSeq: ");
        put_decimal(&mut out, cseq.seq);
        out.put_u8(b' ');
        out.put_slice(method.as_bytes());
        out.put_slice(b"\r\n");
    }
    for h in invite.headers_named(HeaderName::Route) {
        header(&mut out, b"Route", h.value);
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// Appends `SIP/2.0 code reason CRLF`.
pub(crate) fn status_line(out: &mut BytesMut, code: u16, reason: &[u8]) {
    out.put_slice(b"SIP/2.0 ");
    put_decimal(out, code);
    out.put_u8(b' ');
    out.put_slice(reason);
    out.put_slice(b"\r\n");
}

/// Appends `name: value CRLF`.
pub(crate) fn header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Header, Parsed, parse};

    fn with<R>(buf: &[u8], f: impl FnOnce(&Message<'_, '_>) -> R) -> R {
        let mut h = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(buf, &mut h) else {
            panic!()
        };
        f(&m)
    }

    #[test]
    fn response_copies_the_right_headers_and_adds_a_tag() {
        let req = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@a>\r\n\r\n";
        let resp = with(req, |m| {
            response(m, 486, "Busy Here", Some(b"xyz"), &[b"Retry-After: 30"])
        });
        with(&resp, |r| {
            r.validate().unwrap();
            assert_eq!(r.status(), Some(486));
            assert_eq!(r.vias().count(), 2);
            assert_eq!(r.to().unwrap().unwrap().tag(), Some(&b"xyz"[..]));
            assert!(r.header(HeaderName::Contact).is_none());
            assert_eq!(r.header(HeaderName::RetryAfter).unwrap().value, b"30");
        });
    }

    #[test]
    fn ack_takes_the_invite_headers_and_the_response_to() {
        let inv = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b\r\nRoute: <sip:p;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\r\n";
        let resp = b"SIP/2.0 486 Busy\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=9\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\r\n";
        let ack = with(inv, |i| with(resp, |r| ack_for_non_2xx(i, r)));
        with(&ack, |a| {
            a.validate().unwrap();
            assert_eq!(a.method(), Some(crate::sip::Method::Ack));
            assert_eq!(a.vias().count(), 1);
            assert_eq!(
                a.top_via().unwrap().unwrap().branch(),
                Some(&b"z9hG4bK1"[..])
            );
            assert_eq!(a.to().unwrap().unwrap().tag(), Some(&b"9"[..]));
            assert_eq!(a.cseq().unwrap().unwrap().seq, 7);
            assert!(a.header(HeaderName::Route).is_some());
        });
    }
}
