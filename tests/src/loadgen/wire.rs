//! Reading the parts of a SIP message the load generator checks, with the project's parser.

use sip_user::sip::{
    Header, HeaderName, Message, Parsed, address::Address, fields::CSeq, parse, via::Via,
};

/// Header lines a message may have before the load generator calls it malformed.
pub const MAX_HEADERS: usize = 64;

/// What a received message says, borrowed from it.
pub struct Seen<'b> {
    /// `Some(code)` for a response, `None` for a request.
    pub status: Option<u16>,
    /// The request's method (as written), or the CSeq method of a response.
    pub method: &'b [u8],
    pub cseq: u32,
    pub call_id: &'b [u8],
    /// The top Via's branch.
    pub branch: &'b [u8],
    pub to_tag: Option<&'b [u8]>,
    /// The first Contact's URI.
    pub contact: Option<&'b [u8]>,
}

/// Parses `buf` and hands what it says (and the message) to `f`; `None` when it is not a
/// well-formed SIP message with a Call-ID, a CSeq and a Via branch.
pub fn read<R>(buf: &[u8], f: impl FnOnce(&Seen<'_>, &Message<'_, '_>) -> R) -> Option<R> {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    let Ok(Parsed::Message(m)) = parse(buf, &mut headers) else {
        return None;
    };
    let cseq = CSeq::parse(m.header(HeaderName::CSeq)?.value).ok()?;
    let via = Via::parse(m.header(HeaderName::Via)?.value).ok()?;
    let branch = via.params.get(b"branch").flatten()?;
    let to_tag = m
        .header(HeaderName::To)
        .and_then(|h| Address::parse(h.value).ok())
        .and_then(|a| a.tag());
    let contact = m
        .header(HeaderName::Contact)
        .and_then(|h| Address::parse(h.value).ok())
        .map(|a| a.uri_raw);
    let seen = Seen {
        status: m.status(),
        method: m.method().map_or(cseq.method.as_bytes(), |x| x.as_bytes()),
        cseq: cseq.seq,
        call_id: m.call_id()?,
        branch,
        to_tag,
        contact,
    };
    Some(f(&seen, &m))
}
