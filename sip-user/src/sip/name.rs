//! Header names the stack understands, recognised case-insensitively in long or compact form
//! (RFC 3261 §7.3.3 and §20; RFC 3265 §7.2 `o`/`u`; RFC 4028 `x`; RFC 3515 `r`).

use std::fmt;

macro_rules! header_names {
    ($($variant:ident = $long:literal $(| $compact:literal)?;)*) => {
        /// A header the stack knows by name; everything else is [`HeaderName::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $($variant,)*
            Other,
        }

        impl HeaderName {
            /// Recognises a header name (long or compact form, any case).
            #[inline]
            pub fn from_bytes(name: &[u8]) -> Self {
                if name.len() == 1 {
                    // Compact forms (RFC 3261 §7.3.3): one byte, one comparison each.
                    let c = name[0].to_ascii_lowercase();
                    $($(
                        if c == $compact.as_bytes()[0] {
                            return HeaderName::$variant;
                        }
                    )?)*
                    return HeaderName::Other;
                }
                // First byte and length reject almost every candidate before comparing.
                let first = name.first().map_or(0, u8::to_ascii_lowercase);
                $(
                    if name.len() == $long.len()
                        && first == $long.as_bytes()[0].to_ascii_lowercase()
                        && name.eq_ignore_ascii_case($long.as_bytes())
                    {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other
            }

            /// The canonical long name, as written in RFC 3261.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $long,)*
                    HeaderName::Other => "extension",
                }
            }
        }
    };
}

// Ordered roughly by how often they appear, since lookup is a linear scan of length-checked
// comparisons (each fails on the length or the first byte almost always).
header_names! {
    Via = "Via" | "v";
    From = "From" | "f";
    To = "To" | "t";
    CallId = "Call-ID" | "i";
    CSeq = "CSeq";
    MaxForwards = "Max-Forwards";
    Contact = "Contact" | "m";
    ContentLength = "Content-Length" | "l";
    ContentType = "Content-Type" | "c";
    Route = "Route";
    RecordRoute = "Record-Route";
    Expires = "Expires";
    Date = "Date";
    Require = "Require";
    ProxyRequire = "Proxy-Require";
    Supported = "Supported" | "k";
    SessionExpires = "Session-Expires" | "x";
    MinSe = "Min-SE";
    RetryAfter = "Retry-After";
    UserAgent = "User-Agent";
    Subject = "Subject" | "s";
    ContentEncoding = "Content-Encoding" | "e";
    ReferTo = "Refer-To" | "r";
    Event = "Event" | "o";
    AllowEvents = "Allow-Events" | "u";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn long_compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"cseq"), HeaderName::CSeq);
        assert_eq!(HeaderName::from_bytes(b"X-Custom"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"Session-Expires"),
            HeaderName::SessionExpires
        );
    }
}
