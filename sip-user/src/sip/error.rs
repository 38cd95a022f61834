//! Why a message was rejected. `Copy` and allocation-free, like `httparse::Error`: the parser
//! runs per datagram on the hot path and the proxy turns the error into a 400's reason phrase.

use super::name::HeaderName;

/// A syntax or framing error, naming the part of the message that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The datagram ends before the blank line that closes the header section (RFC 3261 §7).
    #[error("incomplete message: no blank line after the headers")]
    Incomplete,
    /// The start line is neither a Request-Line nor a Status-Line (RFC 3261 §7.1, §7.2).
    #[error("malformed start line")]
    StartLine,
    /// The method is not a token (RFC 3261 §25.1).
    #[error("method is not a token")]
    Method,
    /// Request-URI is missing, enclosed in `<>`, has embedded whitespace, or carries
    /// headers (RFC 3261 §19.1.1: "escaped headers are not allowed in a Request-URI").
    #[error("malformed Request-URI")]
    RequestUri,
    /// Elements of the Request-Line separated by other than exactly one SP, or trailing SP
    /// (RFC 3261 §7.1, RFC 4475 §3.1.2.9/§3.1.2.10).
    #[error("Request-Line elements must be separated by single spaces")]
    RequestLineSpacing,
    /// A SIP-Version other than `SIP/2.0`.
    #[error("unsupported SIP version")]
    Version,
    /// The status code is not three digits (RFC 3261 §7.2, RFC 4475 §3.1.2.19).
    #[error("status code is not three digits")]
    StatusCode,
    /// A header line without a colon, or a name that is not a token.
    #[error("malformed header name")]
    HeaderName,
    /// A header line begins with whitespace before any header to continue.
    #[error("continuation line without a header")]
    Continuation,
    /// More header lines than the caller's storage holds.
    #[error("too many headers")]
    TooManyHeaders,
    /// A header's value does not follow its grammar.
    #[error("malformed {0} header")]
    HeaderValue(HeaderName),
    /// A number in a header is out of its range (RFC 4475 §3.1.2.4/§3.1.2.5).
    #[error("{0} value out of range")]
    OutOfRange(HeaderName),
    /// Content-Length is more than the octets that follow the headers (RFC 4475 §3.1.2.2).
    #[error("Content-Length larger than the body")]
    BodyTooShort,
    /// The CSeq method differs from the Request-Line method (RFC 3261 §8.1.1.5,
    /// RFC 4475 §3.1.2.17/§3.1.2.18).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// A quoted string is not closed (RFC 4475 §3.1.2.6).
    #[error("unterminated quoted string in {0}")]
    Unterminated(HeaderName),
}
