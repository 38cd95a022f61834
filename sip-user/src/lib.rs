//! sip-fastpath: an XDP-accelerated SIP fast path.
//!
//! # Layout
//!
//! - [`ebpf`]: loads the XDP program (built by `build.rs` from `sip-ebpf`) and writes its maps.
//! - [`filter`]: the operator's filter settings and their map form; [`cidr`]: CIDR parsing.
//! - [`config`]: the TOML config file, validated with errors that name the field.
//! - [`testrun`]: `BPF_PROG_TEST_RUN`; [`frame`]: builds test frames around a payload.
//! - [`classify`]: "what would the fast path do with this packet?" (`sip-fastpath classify`);
//!   [`pcap`]: the UDP datagrams of a pcap/pcapng capture, for `classify` and `parse --pcap`.
//! - [`stats`]: reads the kernel counters (`sip-fastpath stats`).
//! - [`daemon`]: `run(options, shutdown)`: attach, steer, receive, detach.
//! - [`workers`]: the per-CPU sockets (an `SO_REUSEPORT` group steered by CPU) and threads;
//!   [`worker`]: one worker's loop around its [`proxy::Proxy`].
//! - [`pool_keeper`]: probes the backends, applies reloads, publishes the pool to the workers.
//! - [`admin`]: the admin HTTP API (bearer tokens, live filter entries, drains, dialogs,
//!   reloads) and the `/metrics` endpoint; its [`admin::control`] owns what changes while the
//!   daemon runs (the reload on SIGHUP included).
//! - [`capture`]: HEPv3 copies of the SIP messages for a collector (Homer, sngrep).
//! - [`ctl`]: `sip-fastpath ctl`, the admin API's client.
//! - [`metrics`]: Prometheus metrics; [`heap`]: the allocator's
//!   own accounting (in use, held free) and giving free memory back.
//! - [`sip`]: the SIP stack without I/O: zero-copy parser, checks, transactions, dialogs.
//! - [`backend`]: the backend pool: weighted rendezvous choice per Call-ID, health, draining.
//! - [`proxy`]: the proxy core (RFC 3261 §16), sans-IO: one per worker.
//! - [`bench`]: `sip-fastpath bench-xdp`, the kernel path's cost next to an empty program.
//! - [`transport`]: a worker's batched UDP socket, TCP/TLS connections and their framing.
//! - [`sys`]: the libc calls (interfaces, bpffs, CPU pinning) behind safe wrappers.

pub mod admin;
pub mod backend;
pub mod bench;
pub mod capture;
pub mod cidr;
pub mod classify;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod ebpf;
pub mod filter;
pub mod frame;
pub mod heap;
pub mod metrics;
pub mod pcap;
pub mod pool_keeper;
pub mod proxy;
pub mod samples;
pub mod sip;
pub mod stats;
pub mod sys;
pub mod testrun;
pub mod transport;
pub mod worker;
pub mod workers;
