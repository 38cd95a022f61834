//! Whole-message syntax checks: every header the stack relies on parses, and the request's
//! CSeq method matches its Request-Line. This is what separates RFC 4475's `invalid` messages
//! (answered 400) from its `valid` and `semantic` ones.

use super::{
    address::{Address, check_address},
    error::Error,
    fields::{
        CSeq, SessionExpires, address_error, call_id, content_type, date, delta_seconds,
        max_forwards, retry_after,
    },
    message::{Message, StartLine},
    name::HeaderName,
    scan::CommaList,
    uri::Uri,
    via::Via,
};

/// What validation parsed on its way that the layers after it read again: the top Via (the
/// transaction key, the proxy's own-Via test, the sender's Via it rewrites), From's and To's
/// tags and CSeq (the dialog table, the loop-detection hash), a request's Request-URI and
/// first Route value (the route, RFC 3261 §16.4), handed on so that each is parsed once per
/// message, not once per reader.
#[derive(Debug, Clone, Copy)]
pub struct Validated<'b> {
    /// The first value of the first Via line; `None` if the message has no Via.
    pub top_via: Option<Via<'b>>,
    pub dialog: DialogFields<'b>,
    /// A request's Request-URI; `None` for a response.
    pub request_uri: Option<Uri<'b>>,
    /// The URI of the first value of the first Route line of a request; `None` without one.
    /// (The URI alone: a whole `Address` made validation's result large enough that copying
    /// it cost what the parse saved.)
    pub top_route: Option<Uri<'b>>,
}

impl<'b> Validated<'b> {
    /// The same fields read from a message validated earlier (a request taken out of parking
    /// after its lookup), without checking anything again.
    pub fn read(msg: &Message<'_, 'b>) -> Self {
        let request_uri = msg.request_uri().and_then(Result::ok);
        let top_route = msg
            .addresses(HeaderName::Route)
            .next()
            .and_then(Result::ok)
            .map(|a| a.uri)
            .filter(|_| request_uri.is_some());
        Validated {
            top_via: msg.top_via().and_then(Result::ok),
            dialog: DialogFields::read(msg),
            request_uri,
            top_route,
        }
    }
}

/// What the dialog table and the loop-detection hash read of a message.
#[derive(Debug, Clone, Copy)]
pub struct DialogFields<'b> {
    /// The first From header's tag: `None` without the header, `Some(None)` without a tag (as
    /// [`Message::tag_in`]).
    pub from_tag: Option<Option<&'b [u8]>>,
    /// The first To header's tag, the same way.
    pub to_tag: Option<Option<&'b [u8]>>,
    /// The first CSeq.
    pub cseq: Option<CSeq<'b>>,
}

impl<'b> DialogFields<'b> {
    /// Read from a message that passed validation, checking nothing.
    pub fn read(msg: &Message<'_, 'b>) -> Self {
        DialogFields {
            from_tag: msg.tag_in(HeaderName::From),
            to_tag: msg.tag_in(HeaderName::To),
            cseq: msg.cseq().and_then(Result::ok),
        }
    }
}

impl<'b> Message<'_, 'b> {
    /// Checks the syntax of what the proxy relies on.
    ///
    /// A request: the Request-URI and every known header line, so that a malformed one is
    /// answered 400 before anything acts on it (RFC 4475's `invalid` messages). A response:
    /// only what a proxy reads in one, the Vias (it removes the top one and matches on it,
    /// RFC 3261 §16.7), CSeq and Call-ID (transaction and dialog), and that From and To are
    /// addresses whose tags can be read; the rest (Contact, Record-Route, …) it forwards
    /// unread (§16.7 step 9), so it is not parsed. Unknown headers are never looked at
    /// (§7.3.1: they are passed on as they are).
    pub fn validate(&self) -> Result<Validated<'b>, Error> {
        let (mut top_via, mut via_seen) = (None, false);
        let (mut from_tag, mut to_tag, mut first_cseq) = (None, None, None);
        let (mut top_route, mut route_seen) = (None, false);
        let request_uri = match self.start {
            StartLine::Request { uri, .. } => {
                let uri = Uri::parse(uri).map_err(|_| Error::RequestUri)?;
                // RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI.
                if uri.is_sip() && uri.headers.is_some() {
                    return Err(Error::RequestUri);
                }
                Some(uri)
            }
            StartLine::Response { .. } => None,
        };
        let request = request_uri.is_some();
        for h in self.headers {
            let name = h.name;
            match name {
                HeaderName::Via => {
                    let first_line = !via_seen;
                    via_seen = true;
                    for (i, v) in CommaList::new(h.value).enumerate() {
                        let via = Via::parse(v).map_err(|_| Error::HeaderValue(name))?;
                        if first_line && i == 0 {
                            top_via = Some(via); // as `Message::top_via` reads it
                        }
                    }
                }
                HeaderName::From | HeaderName::To => {
                    let tag =
                        check_address(h.value, request).map_err(|e| address_error(e, name))?;
                    let first = if name == HeaderName::From {
                        &mut from_tag
                    } else {
                        &mut to_tag
                    };
                    first.get_or_insert(tag);
                }
                HeaderName::CallId => {
                    call_id(h.value)?;
                }
                HeaderName::CSeq => {
                    let cseq = CSeq::parse(h.value)?;
                    if let StartLine::Request { method, .. } = self.start
                        && cseq.method != method
                    {
                        return Err(Error::CSeqMethodMismatch);
                    }
                    first_cseq.get_or_insert(cseq);
                }
                // The rest of a response is forwarded unread.
                _ if !request => {}
                HeaderName::Contact if h.value == b"*" => {}
                HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
                    let first_route = name == HeaderName::Route && !route_seen;
                    route_seen |= name == HeaderName::Route;
                    for (i, v) in CommaList::new(h.value).enumerate() {
                        let address = Address::parse(v).map_err(|e| address_error(e, name))?;
                        if first_route && i == 0 {
                            top_route = Some(address.uri);
                        }
                    }
                }
                HeaderName::MaxForwards => {
                    max_forwards(h.value)?;
                }
                HeaderName::Expires | HeaderName::MinSe => {
                    delta_seconds(h.value, name)?;
                }
                HeaderName::SessionExpires => {
                    SessionExpires::parse(h.value)?;
                }
                HeaderName::RetryAfter => {
                    retry_after(h.value)?;
                }
                HeaderName::ContentType => {
                    content_type(h.value)?;
                }
                HeaderName::Date => date(h.value)?,
                _ => {}
            }
        }
        Ok(Validated {
            top_via,
            dialog: DialogFields {
                from_tag,
                to_tag,
                cseq: first_cseq,
            },
            request_uri,
            top_route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DialogFields;
    use crate::sip::{Error, Header, HeaderName, Parsed, parse};

    /// The Request-URI and first Route value handed on are the ones a fresh parse gives: the
    /// first value of the first Route line, whatever other lines and lists follow.
    #[test]
    fn the_request_uri_and_top_route_handed_on_are_the_ones_read_afresh() {
        // The Route lines, and the first Route value's host.
        let routes = [
            ("", None),
            ("Route: <sip:a.example;lr>\r\n", Some("a.example")),
            (
                "Route: <sip:a.example;lr>, <sip:b.example;lr>\r\n",
                Some("a.example"),
            ),
            (
                "Record-Route: <sip:rr.example;lr>\r\nRoute: \"A\" <sip:tok@a.example:5070;lr>;x=1\r\n\
                 Route: <sip:c.example>\r\n",
                Some("a.example"),
            ),
            (
                "Contact: <sip:c@x>\r\nRoute: sip:plain.example\r\n",
                Some("plain.example"),
            ),
        ];
        for (routes, host) in routes {
            let text = format!(
                "BYE sip:bob@y.example:5080;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 {routes}From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 7 BYE\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let mut headers = [Header::EMPTY; 32];
            let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
                panic!("parses: {text}");
            };
            let handed = m.validate().expect("valid");
            let read = super::Validated::read(&m);
            let fresh_route = m
                .addresses(HeaderName::Route)
                .next()
                .map(|a| a.unwrap().uri);
            let fresh_uri = m.request_uri().unwrap().unwrap();
            assert_eq!(fresh_uri.host, b"y.example");
            assert_eq!(
                fresh_route.map(|u| u.host),
                host.map(str::as_bytes),
                "{text}"
            );
            assert_eq!(handed.request_uri, Some(fresh_uri), "{text}");
            assert_eq!(read.request_uri, Some(fresh_uri), "{text}");
            assert_eq!(handed.top_route, fresh_route, "{text}");
            assert_eq!(read.top_route, fresh_route, "{text}");
        }
        // A response hands on neither.
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nRoute: <sip:a.example;lr>\r\n\
                    From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 7 BYE\r\n\r\n";
        let mut headers = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
            panic!("parses");
        };
        let handed = m.validate().expect("valid");
        assert!(handed.request_uri.is_none() && handed.top_route.is_none());
        let read = super::Validated::read(&m);
        assert!(read.request_uri.is_none() && read.top_route.is_none());
    }

    /// What validation hands on is what the readers read for themselves before.
    #[test]
    fn the_dialog_fields_handed_on_are_the_ones_read_afresh() {
        let froms = [
            "From: Alice <sip:a@x>;tag=1928301774",
            "f: \"A ;tag=no\" <sip:a@x;tag=uri>;TAG=upper;x=1",
            "From: sip:a@x ; tag = spaced ;x",
            "From: <sip:a@x>;x;tag=second",
            "From: <sip:a@x>",
        ];
        let tos = [
            "To: <sip:b@y>",
            "t: Bob <sip:b@y>;tag=a6c85cf",
            "To: sip:b@y;tag=9",
        ];
        for from in froms {
            for to in tos {
                for start in ["INVITE sip:b@y SIP/2.0", "SIP/2.0 180 Ringing"] {
                    let text = format!(
                        "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{from}\r\n{to}\r\n\
                         From: <sip:later@x>;tag=later\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\
                         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    );
                    let mut headers = [Header::EMPTY; 32];
                    let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
                        panic!("parses: {text}");
                    };
                    let handed = m.validate().expect("valid").dialog;
                    let read = DialogFields::read(&m);
                    assert_eq!(handed.from_tag, read.from_tag, "{text}");
                    assert_eq!(handed.to_tag, read.to_tag, "{text}");
                    assert_eq!(handed.cseq, read.cseq, "{text}");
                    assert_eq!(handed.cseq.map(|c| c.seq), Some(7));
                }
            }
        }
    }

    fn validate(text: &str) -> Result<(), Error> {
        let mut headers = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
            panic!("parses: {text}");
        };
        m.validate().map(|_| ())
    }

    const RESPONSE: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\r\nFrom: <sip:a@example.com>;tag=1\r\n\
        To: <sip:b@example.com>;tag=2\r\nCall-ID: c@h\r\nCSeq: 1 INVITE\r\n\
        Contact: <sip:b@192.0.2.20>\r\nContent-Length: 0\r\n\r\n";
    const REQUEST: &str = "INVITE sip:b@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\r\nMax-Forwards: 70\r\n\
        From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c@h\r\n\
        CSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.10>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn a_response_is_checked_in_what_the_proxy_reads_and_forwarded_unread_in_the_rest() {
        assert_eq!(validate(RESPONSE), Ok(()));
        assert_eq!(validate(REQUEST), Ok(()));
        // Read by the proxy in a response: a fault is an error, as in a request.
        for (from, to, name) in [
            (
                "Via: SIP/2.0/UDP 192.0.2.10;branch",
                "Via: SIP/2.0/UDP ;branch",
                HeaderName::Via,
            ),
            ("CSeq: 1 INVITE", "CSeq: x INVITE", HeaderName::CSeq),
            ("Call-ID: c@h", "Call-ID: c@h@i", HeaderName::CallId),
            ("tag=1", "tag=1;;x", HeaderName::From),
            (
                "To: <sip:b@example.com>",
                "To: <sip:b@example.com",
                HeaderName::To,
            ),
        ] {
            let bad = RESPONSE.replacen(from, to, 1);
            assert_ne!(bad, RESPONSE, "{to}");
            assert!(validate(&bad).is_err(), "{to}");
            assert!(
                matches!(validate(&bad), Err(Error::HeaderValue(n)) if n == name)
                    || matches!(validate(&bad), Err(Error::Unterminated(_))),
                "{to}: {:?}",
                validate(&bad)
            );
        }
        // Not read in a response (a URI in From or To, Contact, Expires): forwarded as it is;
        // the same fault in a request is answered 400.
        for (from, to) in [
            (
                "Contact: <sip:b@192.0.2.20>",
                "Contact: <sip:b@192.0.2.20;;>;;",
            ),
            ("<sip:a@example.com>", "<sip:a@[example.com>"),
            ("Content-Length: 0", "Expires: soon\r\nContent-Length: 0"),
        ] {
            let response = RESPONSE.replacen(from, to, 1);
            assert_ne!(response, RESPONSE, "{to}");
            assert_eq!(validate(&response), Ok(()), "{to}");
            let request = REQUEST.replacen(from, to, 1);
            let request = if request == REQUEST {
                REQUEST.replacen("Contact: <sip:a@192.0.2.10>", to, 1)
            } else {
                request
            };
            assert!(validate(&request).is_err(), "request with {to}");
        }
    }

    #[test]
    fn the_top_via_handed_on_is_the_one_message_top_via_reads() {
        // One line, a comma list, several lines (an empty Via value is an error).
        for vias in [
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n",
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n",
            "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP h2\r\n",
        ] {
            let text = REQUEST.replacen("Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\r\n", vias, 1);
            let mut headers = [Header::EMPTY; 32];
            let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut headers) else {
                panic!("parses: {text}");
            };
            let handed = m.validate().expect(vias).top_via;
            let read = m.top_via().map(Result::unwrap);
            assert_eq!(
                handed.map(|v| (v.sent_by.as_ptr(), v.sent_by, v.branch())),
                read.map(|v| (v.sent_by.as_ptr(), v.sent_by, v.branch())),
                "{vias}"
            );
        }
    }
}
