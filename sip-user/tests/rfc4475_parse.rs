//! RFC 4475 through the userspace parser, one test per message: every `valid` message parses
//! and validates, every `invalid` one fails with the error for what its section tests, and
//! every `semantic` one gets the proxy behaviour its section asks for.

use sip_user::sip::{
    Error, Header, HeaderName, Message, Parsed,
    proxy_check::{Decision, Matching, check},
};

fn bytes(file: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/data/rfc4475/{file}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses and validates `file`, then hands the message to `f`.
fn with_message<R>(file: &str, f: impl FnOnce(Result<&Message<'_, '_>, Error>) -> R) -> R {
    let buf = bytes(file);
    let mut headers = [Header::EMPTY; 64];
    match sip_user::sip::parse(&buf, &mut headers) {
        Ok(Parsed::Message(m)) => match m.validate() {
            Ok(_) => f(Ok(&m)),
            Err(e) => f(Err(e)),
        },
        Ok(Parsed::KeepAlive) => panic!("{file}: not a keep-alive"),
        Err(e) => f(Err(e)),
    }
}

fn decision(file: &str) -> String {
    with_message(file, |m| {
        let m = m.unwrap_or_else(|e| panic!("{file} must parse: {e}"));
        let validated = m.validate().expect("validated once already");
        format!("{:?}", check(m, &validated, &[] as &[&[u8]]))
    })
}

macro_rules! valid {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let file = stringify!($name);
            with_message(file, |m| {
                let m = m.unwrap_or_else(|e| panic!("{file} is valid but was rejected: {e}"));
                assert!(m.call_id().is_some(), "{file}: Call-ID");
                assert!(m.cseq().unwrap().is_ok(), "{file}: CSeq");
                assert!(m.top_via().unwrap().is_ok(), "{file}: Via");
                // The tables' quick tag read agrees with the full parse.
                for name in [HeaderName::From, HeaderName::To] {
                    let parsed = m.address(name).unwrap().unwrap().tag();
                    assert_eq!(m.tag_in(name), Some(parsed), "{file}: {name} tag");
                }
            });
        }
    )*};
}

valid!(
    wsinv, intmeth, esc01, escnull, esc02, lwsdisp, longreq, dblreq, semiuri, transports, mpart01,
    unreason, noreason
);

macro_rules! invalid {
    ($($name:ident => $err:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            let file = stringify!($name);
            let got = with_message(file, |m| m.map(|_| ()));
            assert_eq!(got, Err($err), "{file}");
        }
    )*};
}

invalid! {
    badinv01 => Error::HeaderValue(HeaderName::Via),
    clerr => Error::BodyTooShort,
    ncl => Error::HeaderValue(HeaderName::ContentLength),
    scalar02 => Error::OutOfRange(HeaderName::CSeq),
    scalarlg => Error::OutOfRange(HeaderName::CSeq),
    quotbal => Error::Unterminated(HeaderName::To),
    ltgtruri => Error::RequestUri,
    lwsruri => Error::RequestUri,
    lwsstart => Error::RequestLineSpacing,
    trws => Error::RequestLineSpacing,
    escruri => Error::RequestUri,
    baddate => Error::HeaderValue(HeaderName::Date),
    regbadct => Error::HeaderValue(HeaderName::Contact),
    badaspec => Error::HeaderValue(HeaderName::To),
    baddn => Error::HeaderValue(HeaderName::From),
    badvers => Error::Version,
    mismatch01 => Error::CSeqMethodMismatch,
    mismatch02 => Error::CSeqMethodMismatch,
    bigcode => Error::StatusCode,
}

macro_rules! semantic {
    ($($name:ident => $decision:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            let file = stringify!($name);
            assert_eq!(decision(file), format!("{:?}", $decision), "{file}");
        }
    )*};
}

const FORWARD: Decision<'static> = Decision::Forward(Matching::Rfc3261);

fn reply(code: u16, reason: &'static str) -> Decision<'static> {
    Decision::Reply {
        code,
        reason,
        unsupported: None,
    }
}

semantic! {
    badbranch => Decision::Forward(Matching::Rfc2543),
    insuf => reply(400, "Missing Required Header"),
    unkscm => reply(416, "Unsupported URI Scheme"),
    novelsc => reply(416, "Unsupported URI Scheme"),
    unksm2 => FORWARD,
    bext01 => Decision::Reply {
        code: 420,
        reason: "Bad Extension",
        unsupported: Some(b"noProxiesSupportThis, norDoAnyProxiesSupportThis"),
    },
    invut => FORWARD,
    regaut01 => FORWARD,
    multi01 => reply(400, "Multiple Values In Single-Value Header"),
    mcl01 => reply(400, "Multiple Content-Length Values"),
    bcast => FORWARD,
    zeromf => reply(483, "Too Many Hops"),
    cparam01 => FORWARD,
    cparam02 => FORWARD,
    regescrt => FORWARD,
    sdp01 => FORWARD,
    inv2543 => Decision::Forward(Matching::Rfc2543),
}

/// dblreq: only the first message of the datagram counts; the trailing octets are ignored.
#[test]
fn dblreq_frames_by_content_length() {
    let buf = bytes("dblreq");
    let mut headers = [Header::EMPTY; 32];
    let Ok(Parsed::Message(m)) = sip_user::sip::parse(&buf, &mut headers) else {
        panic!()
    };
    assert_eq!(m.body.len(), 0);
    assert!(m.raw.len() < buf.len());
    let rest = &buf[m.raw.len()..];
    let second = rest.iter().position(|&b| b != b'\r' && b != b'\n').unwrap();
    assert!(rest[second..].starts_with(b"INVITE"));
}

/// Every file in the manifest has its test above.
#[test]
fn manifest_is_covered() {
    let manifest = std::fs::read_to_string(format!(
        "{}/../tests/data/rfc4475/MANIFEST.tsv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let me = include_str!("rfc4475_parse.rs");
    let mut n = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split('.').next().unwrap();
        let tested = [",", ")", " =>", "\n"]
            .iter()
            .any(|end| me.contains(&format!(" {name}{end}")));
        assert!(tested, "{name} has no test");
        n += 1;
    }
    assert_eq!(n, 49);
}

#[test]
fn a_malformed_top_via_is_an_error_where_it_is_read() {
    let buf = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP ;branch=z9hG4bK1\r\n\
        Via: SIP/2.0/UDP h2;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\
        Call-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
    let mut headers = [Header::EMPTY; 64];
    let Ok(Parsed::Message(m)) = sip_user::sip::parse(buf, &mut headers) else {
        panic!("parses");
    };
    assert!(matches!(m.top_via(), Some(Err(_))));
    assert_eq!(
        m.validate().map(|_| ()),
        Err(Error::HeaderValue(HeaderName::Via))
    );
}
