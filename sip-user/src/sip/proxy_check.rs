//! What a proxy does with a message that parsed: forward it, or answer it locally. RFC 3261
//! §16.3 (request validation) and RFC 4475 §3.2–§3.4 (the `semantic` torture messages). The
//! proxy core calls [`check`] on every message before any routing.

use super::{
    message::Message, method::Method, name::HeaderName, scan::CommaList, uri::Scheme,
    validate::Validated,
};

/// How the transaction layer must match this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// By the top Via's branch (it starts with the magic cookie `z9hG4bK`).
    Rfc3261,
    /// No usable branch (absent, or the magic cookie alone, RFC 4475 §3.2.1 and §3.4.1): match
    /// by Request-URI, tags, Call-ID, CSeq and top Via (RFC 3261 §17.2.3).
    Rfc2543,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'b> {
    /// Process and forward.
    Forward(Matching),
    /// Answer the request with this status; `unsupported` is the value for an Unsupported
    /// header (420, RFC 3261 §16.3 step 6).
    Reply {
        code: u16,
        reason: &'static str,
        unsupported: Option<&'b [u8]>,
    },
    /// Drop silently: a malformed response (RFC 3261 §16.7 cannot answer a response), or an
    /// ACK that cannot be answered (§17.2.3).
    Drop(&'static str),
}

/// Header fields that may appear once only and that a proxy relies on (RFC 3261 §20,
/// RFC 4475 §3.3.8).
const SINGLE: [HeaderName; 6] = [
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::From,
    HeaderName::To,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
];

/// Decides what a proxy supporting the option tags in `supported` does with `msg`, which
/// passed [`Message::validate`] with `validated`.
pub fn check<'b, S: AsRef<[u8]>>(
    msg: &Message<'_, 'b>,
    validated: &Validated<'_>,
    supported: &[S],
) -> Decision<'b> {
    let method = msg.method();
    let reply_or_drop = |code, reason| match method {
        Some(Method::Ack) | None => Decision::Drop(reason),
        Some(_) => Decision::Reply {
            code,
            reason,
            unsupported: None,
        },
    };
    // §8.1.1: To, From, CSeq, Call-ID and Via are mandatory (RFC 4475 §3.3.1).
    for required in [
        HeaderName::To,
        HeaderName::From,
        HeaderName::CSeq,
        HeaderName::CallId,
        HeaderName::Via,
    ] {
        if msg.header(required).is_none() {
            return reply_or_drop(400, "Missing Required Header");
        }
    }
    if msg.content_length_count > 1 {
        return reply_or_drop(400, "Multiple Content-Length Values");
    }
    if SINGLE.iter().any(|&h| msg.count(h) > 1) {
        return reply_or_drop(400, "Multiple Values In Single-Value Header");
    }
    let Some(method) = method else {
        return Decision::Forward(Matching::Rfc3261); // responses: matched by the proxy's own branch
    };
    // §16.3 step 2: a scheme the proxy cannot route (RFC 4475 §3.3.2, §3.3.3).
    if let Some(Ok(uri)) = msg.request_uri()
        && matches!(uri.scheme, Scheme::Other(_))
    {
        return reply_or_drop(416, "Unsupported URI Scheme");
    }
    // §16.3 step 3 (RFC 4475 §3.3.11).
    if let Some(Ok(0)) = msg.max_forwards() {
        return reply_or_drop(483, "Too Many Hops");
    }
    // §16.3 step 6: Proxy-Require with an extension we do not support (RFC 4475 §3.3.5).
    // Require is for the UAS and is not looked at.
    if method != Method::Ack && method != Method::Cancel {
        for h in msg.headers_named(HeaderName::ProxyRequire) {
            if CommaList::new(h.value).any(|tag| {
                !supported
                    .iter()
                    .any(|s| s.as_ref().eq_ignore_ascii_case(tag))
            }) {
                return Decision::Reply {
                    code: 420,
                    reason: "Bad Extension",
                    unsupported: Some(h.value),
                };
            }
        }
    }
    let matching = match &validated.top_via {
        Some(via) if via.rfc3261_branch().is_some() => Matching::Rfc3261,
        _ => Matching::Rfc2543,
    };
    Decision::Forward(matching)
}
