//! Everything that sets up and watches the message path: the config file, the XDP program and
//! its maps, the kernel counters, the metrics and the admin API.

pub mod admin;
pub mod cidr;
pub mod config;
pub mod ebpf;
pub mod filter;
pub mod metrics;
pub mod stats;
