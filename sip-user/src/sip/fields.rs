//! Typed views of the scalar header fields, parsed when asked for (RFC 3261 §20).

use super::{
    address::{Address, BadAddress},
    error::Error,
    message::Message,
    method::Method,
    name::HeaderName,
    params::HeaderParams,
    scan::CommaList,
    scan::{is_token, is_token_str, parse_u64, skip_lws, trim_lws},
    simd,
    via::Via,
};

/// `CSeq: number method` (RFC 3261 §20.16; the number is below 2**31, §8.1.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'b> {
    pub seq: u32,
    pub method: Method<'b>,
}

impl<'b> CSeq<'b> {
    pub fn parse(v: &'b [u8]) -> Result<Self, Error> {
        let bad = Error::HeaderValue(HeaderName::CSeq);
        let v = trim_lws(v);
        let digits_end = v
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(v.len());
        if digits_end == 0 {
            return Err(bad);
        }
        // At most 2**31 - 1 (RFC 3261 §8.1.1.5).
        let seq = parse_u64(&v[..digits_end], (1 << 31) - 1)
            .ok_or(Error::OutOfRange(HeaderName::CSeq))?;
        let m = skip_lws(v, digits_end);
        if m == digits_end {
            return Err(bad);
        }
        let method = Method::from_bytes(&v[m..]);
        // A known method is a token; only another one is checked byte by byte.
        if matches!(method, Method::Other(_)) && !is_token_str(&v[m..]) {
            return Err(bad);
        }
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

/// A `delta-seconds` value (RFC 3261 §25.1), at most 2**32-1 (§20.19 caps Expires there).
pub fn delta_seconds(v: &[u8], name: HeaderName) -> Result<u32, Error> {
    let v = trim_lws(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(Error::HeaderValue(name));
    }
    parse_u64(v, u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or(Error::OutOfRange(name))
}

/// `Max-Forwards` (RFC 3261 §20.22): an integer 0–255.
pub fn max_forwards(v: &[u8]) -> Result<u8, Error> {
    let n = delta_seconds(v, HeaderName::MaxForwards)?;
    u8::try_from(n).map_err(|_| Error::OutOfRange(HeaderName::MaxForwards))
}

/// `Session-Expires` (RFC 4028 §4): the interval and the `refresher` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires<'b> {
    pub seconds: u32,
    pub refresher: Option<&'b [u8]>,
}

impl<'b> SessionExpires<'b> {
    pub fn parse(v: &'b [u8]) -> Result<Self, Error> {
        let name = HeaderName::SessionExpires;
        let v = trim_lws(v);
        let end = v
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(v.len());
        let seconds = delta_seconds(&v[..end], name)?;
        let params = HeaderParams::new(&v[end..]);
        params.validate().map_err(|_| Error::HeaderValue(name))?;
        Ok(SessionExpires {
            seconds,
            refresher: params.get(b"refresher").flatten(),
        })
    }
}

/// `Retry-After: delta-seconds [comment] *(;param)` (RFC 3261 §20.33).
pub fn retry_after(v: &[u8]) -> Result<u32, Error> {
    let v = trim_lws(v);
    let end = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    delta_seconds(&v[..end], HeaderName::RetryAfter)
}

/// `(type, subtype)` of a media type.
pub type MediaType<'b> = (&'b [u8], &'b [u8]);

/// `Content-Type: type/subtype *(;param)` (RFC 3261 §20.15).
pub fn content_type(v: &[u8]) -> Result<MediaType<'_>, Error> {
    let v = trim_lws(v);
    // The common shape, `type/subtype` alone (`application/sdp`), in one pass over each part.
    let ty_end = v.iter().position(|&b| !is_token(b)).unwrap_or(v.len());
    if ty_end > 0 && v.get(ty_end) == Some(&b'/') && is_token_str(&v[ty_end + 1..]) {
        return Ok((&v[..ty_end], &v[ty_end + 1..]));
    }
    media_type(v)
}

/// [`content_type`]'s whole rule, for a trimmed value: whitespace around `/` and `;`, and
/// parameters.
fn media_type(v: &[u8]) -> Result<MediaType<'_>, Error> {
    let bad = Error::HeaderValue(HeaderName::ContentType);
    let semi = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let media = trim_lws(&v[..semi]);
    let slash = media.iter().position(|&b| b == b'/').ok_or(bad)?;
    let (ty, sub) = (trim_lws(&media[..slash]), trim_lws(&media[slash + 1..]));
    if !is_token_str(ty) || !is_token_str(sub) {
        return Err(bad);
    }
    HeaderParams::new(&v[semi..]).validate().map_err(|_| bad)?;
    Ok((ty, sub))
}

/// `Call-ID: word ["@" word]` (RFC 3261 §20.8).
pub fn call_id(v: &[u8]) -> Result<&[u8], Error> {
    if v.is_empty() || !simd::is_call_id(v) {
        return Err(Error::HeaderValue(HeaderName::CallId));
    }
    Ok(v)
}

/// `Date: rfc1123-date` (RFC 3261 §20.17): `Thu, 21 Feb 2002 13:02:03 GMT`, always GMT
/// (RFC 4475 §3.1.2.12).
pub fn date(v: &[u8]) -> Result<(), Error> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let v = trim_lws(v);
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let ok = v.len() == 29
        && DAYS.contains(&&v[0..3])
        && &v[3..5] == b", "
        && digits(&v[5..7])
        && v[7] == b' '
        && MONTHS.contains(&&v[8..11])
        && v[11] == b' '
        && digits(&v[12..16])
        && v[16] == b' '
        && digits(&v[17..19])
        && v[19] == b':'
        && digits(&v[20..22])
        && v[22] == b':'
        && digits(&v[23..25])
        && &v[25..] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err(Error::HeaderValue(HeaderName::Date))
    }
}

pub(super) fn address_error(e: BadAddress, name: HeaderName) -> Error {
    match e {
        BadAddress::Unterminated => Error::Unterminated(name),
        BadAddress::Syntax => Error::HeaderValue(name),
    }
}

impl<'h, 'b> Message<'h, 'b> {
    /// The topmost Via value (RFC 3261 §8.1.1.7): the one the transaction layer matches on.
    pub fn top_via(&self) -> Option<Result<Via<'b>, Error>> {
        let h = self.header(HeaderName::Via)?;
        let first = CommaList::new(h.value).next()?;
        Some(Via::parse(first).map_err(|_| Error::HeaderValue(HeaderName::Via)))
    }

    /// Every Via value, top first, across lines and comma lists.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'b>, Error>> + use<'h, 'b> {
        self.headers_named(HeaderName::Via)
            .flat_map(|h| CommaList::new(h.value))
            .map(|v| Via::parse(v).map_err(|_| Error::HeaderValue(HeaderName::Via)))
    }

    /// The address in a single-valued address header (From, To).
    pub fn address(&self, name: HeaderName) -> Option<Result<Address<'b>, Error>> {
        let h = self.header(name)?;
        Some(Address::parse(h.value).map_err(|e| address_error(e, name)))
    }

    pub fn from(&self) -> Option<Result<Address<'b>, Error>> {
        self.address(HeaderName::From)
    }

    pub fn to(&self) -> Option<Result<Address<'b>, Error>> {
        self.address(HeaderName::To)
    }

    /// The tag of the From or To header (`name`): `None` without the header, `Some(None)`
    /// without a tag. Read without parsing the URI ([`super::address::tag_of`]): for a
    /// validated message only.
    pub fn tag_in(&self, name: HeaderName) -> Option<Option<&'b [u8]>> {
        self.header(name).map(|h| super::address::tag_of(h.value))
    }

    /// Every value of a multi-valued address header (Contact, Route, Record-Route), in order.
    /// A Contact of `*` (RFC 3261 §10.2.2) is not an address: check [`Self::contact_is_star`].
    pub fn addresses(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<Address<'b>, Error>> + use<'h, 'b> {
        self.values(name)
            .map(move |v| Address::parse(v).map_err(|e| address_error(e, name)))
    }

    /// Every value of a header that holds a comma list (RFC 3261 §7.3.1), across its lines, in
    /// order and unparsed.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'b [u8]> + use<'h, 'b> {
        self.headers_named(name)
            .flat_map(|h| CommaList::new(h.value))
    }

    pub fn contact_is_star(&self) -> bool {
        self.header(HeaderName::Contact)
            .is_some_and(|h| h.value == b"*")
    }

    pub fn cseq(&self) -> Option<Result<CSeq<'b>, Error>> {
        self.header(HeaderName::CSeq).map(|h| CSeq::parse(h.value))
    }

    pub fn max_forwards(&self) -> Option<Result<u8, Error>> {
        self.header(HeaderName::MaxForwards)
            .map(|h| max_forwards(h.value))
    }

    pub fn expires(&self) -> Option<Result<u32, Error>> {
        self.header(HeaderName::Expires)
            .map(|h| delta_seconds(h.value, HeaderName::Expires))
    }

    pub fn content_type(&self) -> Option<Result<MediaType<'b>, Error>> {
        self.header(HeaderName::ContentType)
            .map(|h| content_type(h.value))
    }

    /// The framed Content-Length, if one was given.
    pub fn content_length(&self) -> Option<usize> {
        self.header(HeaderName::ContentLength)
            .map(|_| self.body.len())
    }

    pub fn session_expires(&self) -> Option<Result<SessionExpires<'b>, Error>> {
        self.header(HeaderName::SessionExpires)
            .map(|h| SessionExpires::parse(h.value))
    }

    /// The Request-URI, parsed; `None` for a response.
    pub fn request_uri(&self) -> Option<Result<super::uri::Uri<'b>, Error>> {
        match self.start {
            super::message::StartLine::Request { uri, .. } => {
                Some(super::uri::Uri::parse(uri).map_err(|_| Error::RequestUri))
            }
            super::message::StartLine::Response { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_forms_and_limits() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(
            CSeq::parse(b"36893488147419103232 REGISTER"),
            Err(Error::OutOfRange(HeaderName::CSeq))
        );
        assert_eq!(
            CSeq::parse(b"2147483648 BYE"),
            Err(Error::OutOfRange(HeaderName::CSeq))
        );
        assert_eq!(
            CSeq::parse(b"12"),
            Err(Error::HeaderValue(HeaderName::CSeq))
        );
        assert_eq!(
            CSeq::parse(b"12INVITE"),
            Err(Error::HeaderValue(HeaderName::CSeq))
        );
        let c = CSeq::parse(b"2147483647 invite").unwrap();
        assert_eq!((c.seq, c.method), (2_147_483_647, Method::Other(b"invite")));
        assert_eq!(
            CSeq::parse(b"1 IN<VITE"),
            Err(Error::HeaderValue(HeaderName::CSeq))
        );
        assert_eq!(
            CSeq::parse(b"000000000000000000001 ACK"),
            Err(Error::OutOfRange(HeaderName::CSeq)),
            "more digits than a number is read with"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(max_forwards(b"0068"), Ok(68));
        assert_eq!(
            max_forwards(b"300"),
            Err(Error::OutOfRange(HeaderName::MaxForwards))
        );
        assert_eq!(
            max_forwards(b"-1"),
            Err(Error::HeaderValue(HeaderName::MaxForwards))
        );
        assert_eq!(
            retry_after(b"120 (I'm in a meeting);duration=3600"),
            Ok(120)
        );
        let se = SessionExpires::parse(b"1800;refresher=uac").unwrap();
        assert_eq!((se.seconds, se.refresher), (1800, Some(&b"uac"[..])));
    }

    #[test]
    fn dates_must_be_gmt() {
        assert_eq!(date(b"Sat, 13 Nov 2010 23:29:00 GMT"), Ok(()));
        assert!(date(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }

    #[test]
    fn content_type_short_path_agrees_with_the_grammar() {
        // Every string of up to 6 bytes over letters, the separators and whitespace.
        let alphabet = b"a/; =\t\"";
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut code in 0..alphabet.len().pow(len) {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[code % alphabet.len()];
                        code /= alphabet.len();
                        b
                    })
                    .collect();
                assert_eq!(content_type(&v), media_type(trim_lws(&v)), "{v:?}");
                checked += 1;
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn content_types_and_call_ids() {
        assert_eq!(
            content_type(b"application/sdp").unwrap(),
            (&b"application"[..], &b"sdp"[..])
        );
        assert_eq!(
            content_type(b"multipart/mixed;boundary=7a9cbec02ceef655")
                .unwrap()
                .1,
            b"mixed"
        );
        assert!(content_type(b"sdp").is_err());
        assert!(call_id(br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#).is_ok());
        assert!(call_id(b"a b").is_err());
    }
}
