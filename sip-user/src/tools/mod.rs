//! The commands an operator runs beside the daemon (`classify`, `bench-xdp`, `ctl`, pcap
//! replay) and what they build on: test frames, `BPF_PROG_TEST_RUN` and sample messages.

pub mod bench;
pub mod classify;
pub mod ctl;
pub mod frame;
pub mod pcap;
pub mod samples;
pub mod testrun;
