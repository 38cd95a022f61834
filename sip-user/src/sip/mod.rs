//! The SIP stack, free of I/O: parse a datagram, check it, and run the RFC 3261 transaction
//! and dialog state machines over it with a caller-supplied clock.
//!
//! # Layout
//!
//! - [`message`]: [`parse`] one datagram into a [`Message`] of borrowed slices; no allocation.
//!   [`lines`] finds its line ends, 64 bytes per step.
//! - [`fields`], [`via`], [`address`], [`uri`], [`params`]: typed views of header values,
//!   parsed on demand; [`validate`](Message::validate) checks them all at once.
//! - [`proxy_check`]: forward, or answer locally (400/416/420/483), per RFC 3261 §16.3.
//! - [`exercise`]: every parser path over one input, for the fuzz target.
//! - [`summary`]: the JSON line `sip-fastpath parse` prints.
//! - [`name`], [`method`], [`scan`], [`error`]: vocabulary and character classes; [`simd`]:
//!   byte searches and class checks (Call-IDs, hostnames) 16 bytes at a time.
//! - [`build`], [`text`]: messages the stack writes, and the numbers in them without `fmt`.
//! - [`shrink`]: tables give their memory back after a load has passed (and grow incrementally).
//! - [`schedule`]: the transaction and dialog tables' timers, a heap swept lazily.

pub mod address;
pub mod build;
pub mod dialog;
pub mod error;
pub mod exercise;
pub mod fields;
pub mod lines;
pub mod message;
pub mod method;
pub mod name;
pub mod params;
pub mod peer;
pub mod proxy_check;
pub mod scan;
pub mod schedule;
pub mod shrink;
pub mod simd;
pub mod summary;
pub mod text;
pub mod transaction;
pub mod uri;
pub mod validate;
pub mod via;

pub use error::Error;
pub use message::{
    Header, MAX_HEADERS, MAX_HEADERS_LARGE, Message, Parsed, StartLine, call_id_in, parse,
    parse_any, parse_for_reply, parse_headers_only, with_message,
};
pub use method::Method;
pub use name::HeaderName;
