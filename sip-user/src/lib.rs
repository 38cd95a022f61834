//! sip-fastpath: an XDP-accelerated SIP fast path.
//!
//! # Layout
//!
//! The folders follow a message: the kernel steers it to a [`worker`], which reads it off a
//! [`transport`], parses and checks it with the [`sip`] stack, routes it in the [`proxy`] to a
//! peer or a [`backend`]; [`control`] is everything that sets up and watches that path, and
//! [`tools`] are the commands an operator runs beside it.
//!
//! - [`daemon`]: `run(options, shutdown)`: load and attach the XDP program, start the workers,
//!   the pool keeper and the admin API, serve until shutdown, detach.
//! - [`worker`]: the per-CPU sockets and threads ([`worker::threads`], an `SO_REUSEPORT` group
//!   steered by CPU), one worker's loop around its [`proxy::Proxy`] ([`worker::event_loop`]),
//!   and the HEPv3 copies of its messages for a collector ([`worker::capture`]).
//! - [`transport`]: a worker's batched UDP socket, TCP/TLS connections and their framing.
//! - [`sip`]: the SIP stack without I/O: zero-copy parser, checks, transactions, dialogs.
//! - [`proxy`]: the proxy core (RFC 3261 §16), sans-IO: one per worker.
//! - [`backend`]: the backend pool: weighted rendezvous choice per Call-ID, health, draining,
//!   SRV, and the [`backend::keeper`] that probes them and publishes the pool to the workers.
//! - [`control`]: the TOML [`control::config`], the XDP program and its maps
//!   ([`control::ebpf`], [`control::filter`], [`control::cidr`]), the kernel counters
//!   ([`control::stats`]), Prometheus [`control::metrics`] and the [`control::admin`] HTTP API
//!   (whose [`control::admin::controller`] owns what changes while the daemon runs).
//! - [`tools`]: `classify`, `bench-xdp`, `ctl`, pcap replay, and what they build on (test
//!   frames, `BPF_PROG_TEST_RUN`, sample messages).
//! - [`sys`]: the libc calls (interfaces, bpffs, CPU pinning) behind safe wrappers, and the
//!   allocator's own accounting ([`sys::heap`]).

pub mod backend;
pub mod control;
pub mod daemon;
pub mod proxy;
pub mod sip;
pub mod sys;
pub mod tools;
pub mod transport;
pub mod worker;
