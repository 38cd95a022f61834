//! Typical SIP messages, for `bench-xdp` and the tests: what a softphone or PBX really sends
//! (an INVITE with SDP of about 900 bytes, with the Call-ID and User-Agent past the Via/From/To
//! headers, where real stacks put them).

/// An INVITE with SDP, about 900 bytes.
pub fn invite(call_id: &str) -> Vec<u8> {
    let sdp = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {call_id}\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: Yealink SIP-T46S 66.85.0.5\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// An OPTIONS keep-alive/health probe.
pub fn options(call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKhjhs8ass877\r\n\
Max-Forwards: 70\r\n\
To: <sip:carol@chicago.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {call_id}\r\n\
CSeq: 63104 OPTIONS\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A 200 OK to an INVITE, without SDP.
pub fn ok_200(call_id: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=192.0.2.10\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {call_id}\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The ACK for a 2xx to [`invite`], sent end to end with the dialog's tags.
pub fn ack(call_id: &str) -> Vec<u8> {
    format!(
        "ACK sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds9;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {call_id}\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A BYE inside the dialog set up by [`invite`].
pub fn bye(call_id: &str) -> Vec<u8> {
    format!(
        "BYE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds10;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {call_id}\r\n\
CSeq: 314160 BYE\r\n\
User-Agent: Yealink SIP-T46S 66.85.0.5\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A REGISTER with authorization, as a phone refreshes its binding.
pub fn register(call_id: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:registrar.atlanta.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Alice <sip:alice@atlanta.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=456248\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Authorization: Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"84a4cc6f3082121f32b42a2187831a9e\", uri=\"sip:registrar.atlanta.example.com\", response=\"7587245234b3434cc3412213e5f113a5\", algorithm=MD5\r\n\
Expires: 3600\r\n\
User-Agent: Yealink SIP-T46S 66.85.0.5\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
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
