//! Finds the Call-ID header value in a SIP message: what the workers hash to check that the
//! kernel steered a message to the right CPU. A line-by-line search, independent of the XDP
//! program's word-at-a-time scan, so each checks the other in the tests.

/// The value of the first `Call-ID` (or compact `i`) header, without surrounding whitespace.
/// RFC 3261 §7.3.1: names are case-insensitive, whitespace may precede the colon, and LWS
/// (including a folded line) may follow it.
pub fn find_call_id(msg: &[u8]) -> Option<&[u8]> {
    let mut lines = msg.split(|&b| b == b'\n').skip(1); // the start line
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // end of the header section
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue; // a continuation line, not a header name
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
            continue;
        }
        let mut value = trim(&line[colon + 1..]);
        if value.is_empty() {
            // The value may start on a folded continuation line.
            let next = lines.next()?;
            let next = next.strip_suffix(b"\r").unwrap_or(next);
            if !next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                return None;
            }
            value = trim(next);
        }
        return (!value.is_empty()).then_some(value);
    }
    None
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::find_call_id;

    #[test]
    fn long_compact_case_and_lws() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\ncall-id  :  abc@h \r\n\r\n";
        assert_eq!(find_call_id(m), Some(&b"abc@h"[..]));
        let m = b"BYE sip:a@b SIP/2.0\r\nI:xyz\r\n\r\n";
        assert_eq!(find_call_id(m), Some(&b"xyz"[..]));
        let m = b"BYE sip:a@b SIP/2.0\r\ni:\r\n  folded\r\n\r\n";
        assert_eq!(find_call_id(m), Some(&b"folded"[..]));
    }

    #[test]
    fn absent_or_in_body() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n";
        assert_eq!(find_call_id(m), None);
    }
}
