//! The workers: one per CPU, each owning a socket of the receive group, its [`Proxy`]'s
//! transactions and dialogs, and its share of the TCP/TLS connections. [`threads`] binds the
//! sockets and starts the threads; [`event_loop`] is one worker's loop; [`capture`] copies its
//! messages to a HEP collector.
//!
//! [`Proxy`]: crate::proxy::Proxy

pub mod capture;
pub mod control;
pub mod event_loop;
pub mod threads;

pub use event_loop::{Handoff, ResolverSetup, StreamSetup, Worker};
pub use threads::{WorkerError, WorkerQueues, WorkerSetup, Workers};
