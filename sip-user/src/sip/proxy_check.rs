//! What a proxy does with a message that parsed: forward it, or answer it locally. RFC 3261
//! §16.3 (request validation) and RFC 4475 §3.2–§3.4 (the `semantic` torture messages). The
//! proxy core calls [`check`] on every message before any routing.

use super::{
    message::{Message, StartLine},
    method::Method,
    name::HeaderName,
    scan::CommaList,
    uri::Scheme,
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
const SINGLE: u64 = bits(&[
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::From,
    HeaderName::To,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
]);

/// §8.1.1: To, From, CSeq, Call-ID and Via are mandatory (RFC 4475 §3.3.1).
const REQUIRED: u64 = bits(&[
    HeaderName::To,
    HeaderName::From,
    HeaderName::CSeq,
    HeaderName::CallId,
    HeaderName::Via,
]);

// Every name has a bit of a `u64`.
const _: () = assert!((HeaderName::Other as u32) < 64);

const fn bits(names: &[HeaderName]) -> u64 {
    let mut set = 0;
    let mut i = 0;
    while i < names.len() {
        set |= 1 << names[i] as u32;
        i += 1;
    }
    set
}

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
    // The names present and those present more than once, in one pass over the lines.
    let (mut seen, mut repeated) = (0u64, 0u64);
    for h in msg.headers {
        let bit = 1 << h.name as u32;
        repeated |= seen & bit;
        seen |= bit;
    }
    if seen & REQUIRED != REQUIRED {
        return reply_or_drop(400, "Missing Required Header");
    }
    if msg.content_length_count > 1 {
        return reply_or_drop(400, "Multiple Content-Length Values");
    }
    if repeated & SINGLE != 0 {
        return reply_or_drop(400, "Multiple Values In Single-Value Header");
    }
    let Some(method) = method else {
        return Decision::Forward(Matching::Rfc3261); // responses: matched by the proxy's own branch
    };
    // §16.3 step 2: a scheme the proxy cannot route (RFC 4475 §3.3.2, §3.3.3). Validation
    // parsed the Request-URI; its scheme is read here without parsing it again.
    if let StartLine::Request { uri, .. } = msg.start
        && matches!(Scheme::of_uri(uri), Some(Scheme::Other(_)))
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

#[cfg(test)]
mod tests {
    use super::{Decision, check};
    use crate::sip::{Header, Parsed, parse};

    const REQUEST: &str = "OPTIONS sip:b@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\r\nMax-Forwards: 70\r\n\
        From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c@h\r\n\
        CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn reason(text: &str) -> Option<&'static str> {
        let mut headers = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
            panic!("parses: {text}");
        };
        let validated = m.validate().expect(text);
        match check(&m, &validated, &[] as &[&[u8]]) {
            Decision::Reply { reason, .. } => Some(reason),
            Decision::Forward(_) => None,
            Decision::Drop(reason) => panic!("a request is answered, not dropped: {reason}"),
        }
    }

    #[test]
    fn each_required_header_missing_and_each_single_one_repeated_is_answered() {
        assert_eq!(reason(REQUEST), None);
        let lines: Vec<&str> = REQUEST.split_inclusive("\r\n").collect();
        for (i, line) in lines.iter().enumerate().skip(1) {
            let Some((name, _)) = line.split_once(':') else {
                continue;
            };
            let without: String = lines
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, l)| *l)
                .collect();
            let twice: String = lines[..=i].concat() + line + &lines[i + 1..].concat();
            let required = ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name);
            let single = name != "Via";
            assert_eq!(
                reason(&without),
                required.then_some("Missing Required Header"),
                "without {name}"
            );
            let expected = match name {
                "Content-Length" => Some("Multiple Content-Length Values"),
                _ if single => Some("Multiple Values In Single-Value Header"),
                _ => None,
            };
            assert_eq!(reason(&twice), expected, "{name} twice");
        }
    }
}
