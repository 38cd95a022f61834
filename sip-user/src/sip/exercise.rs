//! Runs every part of the parser over one datagram and checks the invariants that must hold
//! for any input: what the fuzz target (`sip-user/fuzz`) and its regression tests call.

use super::{
    Header, HeaderName, MAX_HEADERS, Parsed, parse, proxy_check::check, summary::summarize,
};

/// Parses `data` and reads every typed view. Panics only if an invariant is broken: parsed
/// slices lie inside `data`, and the body is inside the message.
pub fn exercise(data: &[u8]) {
    let inside = |s: &[u8]| {
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        let p = s.as_ptr() as usize;
        s.is_empty() || (p >= start && p + s.len() <= end)
    };
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    if let Ok(Parsed::Message(m)) = parse(data, &mut headers) {
        assert!(inside(m.raw) && inside(m.body));
        assert!(m.raw.ends_with(m.body));
        for h in m.headers {
            assert!(inside(h.value) && inside(h.raw_name));
        }
        if let Ok(validated) = m.validate() {
            let _ = check(&m, &validated, &[] as &[&[u8]]);
        }
        for via in m.vias().flatten() {
            let _ = (
                via.branch(),
                via.rport(),
                via.ttl(),
                via.received(),
                via.maddr(),
            );
        }
        let _ = (m.from(), m.to(), m.cseq(), m.max_forwards(), m.expires());
        let _ = (
            m.content_type(),
            m.session_expires(),
            m.request_uri(),
            m.call_id(),
        );
        for name in [
            HeaderName::Contact,
            HeaderName::Route,
            HeaderName::RecordRoute,
        ] {
            for a in m.addresses(name).flatten() {
                let _ = (a.tag(), a.uri.params.iter().count());
            }
        }
    }
    let _ = summarize(data);
}
