//! Whole-message syntax checks: every header the stack relies on parses, and the request's
//! CSeq method matches its Request-Line. This is what separates RFC 4475's `invalid` messages
//! (answered 400) from its `valid` and `semantic` ones.

use super::{
    address::Address,
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

impl Message<'_, '_> {
    /// Checks the syntax of the Request-URI and of every known header line. Unknown headers
    /// are not looked at (RFC 3261 §7.3.1: they are passed on as they are).
    pub fn validate(&self) -> Result<(), Error> {
        if let StartLine::Request { uri, .. } = self.start {
            let uri = Uri::parse(uri).map_err(|_| Error::RequestUri)?;
            // RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI.
            if uri.is_sip() && uri.headers.is_some() {
                return Err(Error::RequestUri);
            }
        }
        for h in self.headers {
            let name = h.name;
            match name {
                HeaderName::Via => {
                    for v in CommaList::new(h.value) {
                        Via::parse(v).map_err(|_| Error::HeaderValue(name))?;
                    }
                }
                HeaderName::From | HeaderName::To => {
                    Address::parse(h.value).map_err(|e| address_error(e, name))?;
                }
                HeaderName::Contact if h.value == b"*" => {}
                HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
                    for v in CommaList::new(h.value) {
                        Address::parse(v).map_err(|e| address_error(e, name))?;
                    }
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
        Ok(())
    }
}
