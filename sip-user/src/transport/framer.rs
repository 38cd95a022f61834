//! Message framing on a stream (RFC 3261 §18.3), sans-IO: bytes go into [`Framer::buffer`] as
//! they arrive, whole messages come out of [`Framer::next_frame`]. A message is its header
//! section up to the empty line, then exactly Content-Length bytes of body (mandatory on
//! streams). CRLFs between messages are skipped (§7.5), and a double CRLF there is a keep-alive
//! ping to answer with one CRLF (RFC 5626 §4.4.1).
//!
//! Written by hand: it is the edge of the product, and it must take bytes split anywhere with
//! bounded memory and no copy of a message; the fuzz target `framer` checks that splitting the
//! same stream at every position gives the same frames.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

use crate::sip::{HeaderName, scan::parse_u64};

/// How much a connection may make us hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The start line and headers, with the empty line (a client flooding an endless header is
    /// cut off here).
    pub max_header: usize,
    /// A whole message, headers and body.
    pub max_message: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_header: 16 * 1024,
            max_message: 64 * 1024,
        }
    }
}

/// One thing read off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message (it may still fail to parse: the parser decides).
    Message(Bytes),
    /// A double-CRLF keep-alive ping, to answer with a single CRLF (RFC 5626 §4.4.1).
    Ping,
}

/// Why a stream cannot be framed any further; the connection is closed (what is buffered cannot
/// be resynchronised with the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("header section over {0} bytes")]
    HeaderTooLarge(usize),
    #[error("message over {0} bytes")]
    MessageTooLarge(usize),
    #[error("no Content-Length (mandatory on streams, RFC 3261 §18.3)")]
    NoContentLength,
    #[error("Content-Length is not a number")]
    BadContentLength,
}

impl FrameError {
    /// For metrics labels and logs.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::HeaderTooLarge(_) => "header_too_large",
            FrameError::MessageTooLarge(_) => "message_too_large",
            FrameError::NoContentLength | FrameError::BadContentLength => "bad_framing",
        }
    }
}

/// A message shorter than this is copied out of the read buffer into one of its own size
/// rather than split off it: a split keeps the whole read allocation alive as long as the
/// message lives (a transaction keeps requests up to 32 s), which is how kept slices of
/// receive blocks cost 334 MB at 1,000 calls/s on the UDP path (issue 13's finding).
pub const SPLIT_AT_LEAST: usize = READ_CHUNK / 2;
/// What a read asks the buffer to have room for.
pub const READ_CHUNK: usize = 4096;

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    limits: FrameLimits,
    /// How far the search for the empty line got (it resumes there when more bytes come).
    scanned: usize,
    /// The length of the message at the front, once its header section is complete.
    pending: Option<usize>,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Self {
        Framer {
            buf: BytesMut::new(),
            limits,
            scanned: 0,
            pending: None,
        }
    }

    /// The buffer to read into, with room for a read.
    pub fn buffer(&mut self) -> &mut BytesMut {
        let want = match self.pending {
            Some(total) => (total - self.buf.len().min(total)).clamp(1, READ_CHUNK),
            None => READ_CHUNK,
        };
        if self.buf.capacity() - self.buf.len() < want.clamp(1, READ_CHUNK / 4) {
            self.buf.reserve(want);
        }
        &mut self.buf
    }

    /// Appends bytes (for tests and the fuzz target; the daemon reads into [`Self::buffer`]).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not a whole message yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.pending.is_none() {
            // §7.5: CRLFs before a start line are ignored; two at once are a ping.
            loop {
                match &self.buf[..] {
                    [b'\r', b'\n', b'\r', b'\n', ..] => {
                        self.buf.advance(4);
                        return Ok(Some(Frame::Ping));
                    }
                    // A lone CRLF: a pong, or half a ping still coming.
                    [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] | [b'\r'] => return Ok(None),
                    [b'\r', b'\n', ..] => self.buf.advance(2),
                    _ => break,
                }
            }
            let Some(header_end) = self.find_header_end()? else {
                return Ok(None);
            };
            let length = content_length(&self.buf[..header_end])?;
            let total = header_end
                .checked_add(length)
                .filter(|&t| t <= self.limits.max_message)
                .ok_or(FrameError::MessageTooLarge(self.limits.max_message))?;
            self.pending = Some(total);
        }
        let total = self.pending.expect("set above");
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        let message = if total >= SPLIT_AT_LEAST {
            self.buf.split_to(total).freeze()
        } else {
            let m = Bytes::copy_from_slice(&self.buf[..total]);
            self.buf.advance(total);
            m
        };
        Ok(Some(Frame::Message(message)))
    }

    /// The offset just past the empty line ending the header section, if it is in the buffer.
    fn find_header_end(&mut self) -> Result<Option<usize>, FrameError> {
        let from = self.scanned.saturating_sub(3);
        match memmem::find(&self.buf[from..], b"\r\n\r\n") {
            Some(at) => {
                let end = from + at + 4;
                if end > self.limits.max_header {
                    return Err(FrameError::HeaderTooLarge(self.limits.max_header));
                }
                Ok(Some(end))
            }
            None if self.buf.len() > self.limits.max_header => {
                Err(FrameError::HeaderTooLarge(self.limits.max_header))
            }
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }
}

/// The Content-Length (or compact `l`, RFC 3261 §7.3.3) of a header section, with the stack's
/// own header-name table and number parser; white space allowed around the colon and the value.
/// Only this header is looked at: the whole message is parsed once, by the worker.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if HeaderName::from_bytes(line[..colon].trim_ascii_end()) != HeaderName::ContentLength {
            continue;
        }
        let n = parse_u64(line[colon + 1..].trim_ascii(), MAX_CONTENT_LENGTH)
            .ok_or(FrameError::BadContentLength)? as usize;
        // Two different lengths: the stream cannot be framed.
        if found.is_some_and(|f| f != n) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FrameError::NoContentLength)
}

/// Larger than any message a connection may carry (the limits stop it first), small enough
/// that adding it to an offset cannot overflow.
const MAX_CONTENT_LENGTH: u64 = u32::MAX as u64;

/// Every frame of `stream` fed in pieces of the given sizes (cycled), with the error that ended
/// it if one did; for the fuzz target and tests.
pub fn frames_in_pieces(
    stream: &[u8],
    pieces: &[usize],
    limits: FrameLimits,
) -> (Vec<Frame>, Option<FrameError>) {
    let mut framer = Framer::new(limits);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().copied().filter(|&n| n > 0).cycle();
    while at < stream.len() {
        let n = sizes.next().unwrap_or(stream.len()).min(stream.len() - at);
        framer.extend(&stream[at..at + n]);
        at += n;
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// The fuzz target's check: the frames of `data` (and the error that ends them) are the same
/// whether it arrives at once, a byte at a time, or in pieces of sizes taken from its first
/// bytes; small limits so that inputs reach them.
pub fn check_splits(data: &[u8]) {
    let limits = FrameLimits {
        max_header: 2048,
        max_message: 8192,
    };
    let whole = frames_in_pieces(data, &[data.len().max(1)], limits);
    let sizes: Vec<usize> = data
        .iter()
        .take(3)
        .map(|&b| usize::from(b % 61) + 1)
        .collect();
    for pieces in [&[1usize][..], &sizes] {
        let split = frames_in_pieces(data, pieces, limits);
        assert_eq!(whole, split, "fed in pieces of {pieces:?}");
    }
    for frame in &whole.0 {
        if let Frame::Message(m) = frame {
            assert!(m.len() <= limits.max_message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    const WITH_BODY: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: y\r\nl : 5\r\n\r\nhello";

    fn stream() -> Vec<u8> {
        [b"\r\n".as_slice(), OPTIONS, b"\r\n\r\n", WITH_BODY, OPTIONS].concat()
    }

    fn expected() -> Vec<Frame> {
        vec![
            Frame::Message(Bytes::from_static(OPTIONS)),
            Frame::Ping,
            Frame::Message(Bytes::from_static(WITH_BODY)),
            Frame::Message(Bytes::from_static(OPTIONS)),
        ]
    }

    #[test]
    fn the_same_frames_wherever_the_stream_is_split() {
        let s = stream();
        assert_eq!(
            frames_in_pieces(&s, &[s.len()], FrameLimits::default()),
            (expected(), None)
        );
        for size in 1..s.len() {
            assert_eq!(
                frames_in_pieces(&s, &[size], FrameLimits::default()),
                (expected(), None),
                "pieces of {size}"
            );
        }
        // Split once at every position.
        for at in 1..s.len() {
            let mut f = Framer::new(FrameLimits::default());
            let mut got = Vec::new();
            for part in [&s[..at], &s[at..]] {
                f.extend(part);
                while let Some(frame) = f.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, expected(), "split at {at}");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn limits_and_bad_lengths_end_the_stream_with_a_reason() {
        let small = FrameLimits {
            max_header: 64,
            max_message: 100,
        };
        let endless = [b"INVITE sip:a SIP/2.0\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(
            frames_in_pieces(&endless, &[7], small).1,
            Some(FrameError::HeaderTooLarge(64))
        );
        let big = b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 90\r\n\r\n";
        assert_eq!(
            frames_in_pieces(big, &[100], small).1,
            Some(FrameError::MessageTooLarge(100))
        );
        for bad in [
            b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n".as_slice(),
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            let (frames, err) = frames_in_pieces(bad, &[3], FrameLimits::default());
            assert!(frames.is_empty());
            assert!(
                matches!(
                    err,
                    Some(FrameError::NoContentLength | FrameError::BadContentLength)
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn small_messages_are_copied_large_ones_split_off_the_read_buffer() {
        let body = vec![b'x'; SPLIT_AT_LEAST];
        let large = [
            format!(
                "MESSAGE sip:a SIP/2.0\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            &body,
        ]
        .concat();
        let mut f = Framer::new(FrameLimits::default());
        f.buffer().extend_from_slice(&[OPTIONS, &large].concat());
        let base = f.buffer().as_ptr() as usize;
        let Some(Frame::Message(small)) = f.next_frame().unwrap() else {
            panic!("a message")
        };
        let Some(Frame::Message(split)) = f.next_frame().unwrap() else {
            panic!("a message")
        };
        assert_eq!((&small[..], &split[..]), (OPTIONS, &large[..]));
        // A split is the read buffer's own bytes; a copy lives elsewhere.
        assert_eq!(split.as_ptr() as usize, base + OPTIONS.len());
        assert_ne!(small.as_ptr() as usize, base);
    }
}
