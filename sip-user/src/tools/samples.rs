//! Typical SIP messages, for `bench-xdp`, the benchmarks and the tests: what a softphone or PBX
//! really sends (an INVITE with SDP of about 800 bytes, with the Call-ID and User-Agent past the
//! Via/From/To headers, where real stacks put them). The messages live once, as files in
//! `tests/data/messages/` (also the fuzzer's seeds); these functions put a Call-ID in them.

/// The Call-ID written in the message files, replaced by the caller's.
pub const FILE_CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.example.com";

fn with_call_id(template: &str, call_id: &str) -> Vec<u8> {
    template.replacen(FILE_CALL_ID, call_id, 1).into_bytes()
}

macro_rules! message_file {
    ($(#[$doc:meta] $name:ident = $file:literal;)*) => {$(
        #[$doc]
        pub fn $name(call_id: &str) -> Vec<u8> {
            with_call_id(include_str!(concat!("../../../tests/data/messages/", $file)), call_id)
        }
    )*};
}

message_file! {
    /// An INVITE with SDP (809 bytes with the file's Call-ID).
    invite = "invite.sip";
    /// An OPTIONS keep-alive/health probe.
    options = "options.sip";
    /// A 200 OK to [`invite`], without SDP.
    ok_200 = "ok_200.sip";
    /// The ACK for a 2xx to [`invite`], sent end to end with the dialog's tags.
    ack = "ack.sip";
    /// A BYE inside the dialog set up by [`invite`].
    bye = "bye.sip";
    /// A REGISTER with authorization, as a phone refreshes its binding.
    register = "register.sip";
}

/// The six typical messages by name, with this Call-ID: what the benchmarks and the
/// allocation test run over.
pub fn typical(call_id: &str) -> [(&'static str, Vec<u8>); 6] {
    [
        ("invite_sdp", invite(call_id)),
        ("ok_200", ok_200(call_id)),
        ("ack", ack(call_id)),
        ("bye", bye(call_id)),
        ("register", register(call_id)),
        ("options", options(call_id)),
    ]
}

/// An INVITE of `len` bytes (exactly, for `len` of 300 or more) whose Call-ID is its last
/// header (padded with `X-P` headers before it): the header scan's worst case, all of a full-size datagram to read.
pub fn call_id_last(call_id: &str, len: usize) -> Vec<u8> {
    let head = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
                Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
                Max-Forwards: 70\r\n\
                To: Bob <sip:bob@biloxi.example.com>\r\n\
                From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
                CSeq: 314159 INVITE\r\n\
                Content-Length: 0\r\n";
    let tail = format!("Call-ID: {call_id}\r\n\r\n");
    let mut m = head.to_string();
    // `X-P: ` + filler + CRLF lines of 40 bytes, the last one sized to make the total exact.
    let mut room = len.saturating_sub(m.len() + tail.len());
    while room >= 7 {
        let line = if room >= 40 + 7 { 40 } else { room };
        m.push_str("X-P: ");
        m.push_str(&"p".repeat(line - 7));
        m.push_str("\r\n");
        room -= line;
    }
    m.push_str(&tail);
    m.into_bytes()
}

/// 200 bytes that are not SIP (a deterministic pseudo-random fill).
pub fn junk() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Header, Parsed, parse};

    #[test]
    fn call_id_last_has_the_length_asked_and_the_call_id_last() {
        for len in [300, 851, 1416, 1417, 1418, 1419, 3000] {
            let m = call_id_last("abc@host", len);
            assert_eq!(m.len(), len);
            let mut headers = [Header::EMPTY; 128];
            let Ok(Parsed::Message(msg)) = parse(&m, &mut headers) else {
                panic!("{len}: does not parse");
            };
            assert_eq!(msg.call_id(), Some(&b"abc@host"[..]));
            assert!(m.ends_with(b"Call-ID: abc@host\r\n\r\n"));
        }
    }
}
