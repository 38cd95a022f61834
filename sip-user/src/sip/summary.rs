//! One JSON object per message, for `sip-fastpath parse`: "what does the stack make of this?"

use serde::Serialize;

use super::{Header, MAX_HEADERS, Parsed, parse};

/// The parse result of one datagram. Strings are the message's bytes, lossily decoded as UTF-8.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub ok: bool,
    pub error: Option<String>,
    /// `request`, `response`, or `keepalive` for a datagram of CRLFs only.
    pub kind: Option<&'static str>,
    pub method: Option<String>,
    pub status: Option<u16>,
    pub call_id: Option<String>,
    pub cseq: Option<u32>,
    pub cseq_method: Option<String>,
    pub via_branch: Option<String>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses and validates `datagram`. Fields are filled in as far as the message parsed, so a
/// message that fails validation still shows its method, Call-ID and so on.
pub fn summarize(datagram: &[u8]) -> Summary {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    let mut s = Summary {
        ok: false,
        error: None,
        kind: None,
        method: None,
        status: None,
        call_id: None,
        cseq: None,
        cseq_method: None,
        via_branch: None,
    };
    let m = match parse(datagram, &mut headers) {
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
        Ok(Parsed::KeepAlive) => {
            s.ok = true;
            s.kind = Some("keepalive");
            return s;
        }
        Ok(Parsed::Message(m)) => m,
    };
    s.kind = Some(if m.is_request() {
        "request"
    } else {
        "response"
    });
    s.method = m.method().map(|m| text(m.as_bytes()));
    s.status = m.status();
    s.call_id = m.call_id().map(text);
    if let Some(Ok(cseq)) = m.cseq() {
        s.cseq = Some(cseq.seq);
        s.cseq_method = Some(text(cseq.method.as_bytes()));
    }
    s.via_branch = m
        .top_via()
        .and_then(Result::ok)
        .and_then(|v| v.branch())
        .map(text);
    match m.validate() {
        Ok(_) => s.ok = true,
        Err(e) => s.error = Some(e.to_string()),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn request_fields() {
        let s = summarize(b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 7 BYE\r\n\r\n");
        assert!(s.ok);
        assert_eq!(s.kind, Some("request"));
        assert_eq!(s.method.as_deref(), Some("BYE"));
        assert_eq!((s.cseq, s.cseq_method.as_deref()), (Some(7), Some("BYE")));
        assert_eq!(s.via_branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(s.call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn invalid_keeps_what_parsed() {
        let s = summarize(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: c2\r\nCSeq: 7 INVITE\r\n\r\n");
        assert!(!s.ok);
        assert_eq!(
            s.error.as_deref(),
            Some("CSeq method does not match the request method")
        );
        assert_eq!(s.call_id.as_deref(), Some("c2"));
        let s = summarize(b"garbage");
        assert_eq!((s.ok, s.kind), (false, None));
    }
}
