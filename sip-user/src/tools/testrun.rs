//! `BPF_PROG_TEST_RUN`: run a loaded XDP program on a frame held in memory, in the kernel,
//! without any interface. aya 0.14 has no wrapper for it, so this is the raw `bpf(2)` call.

use std::os::fd::{AsFd, AsRawFd};

use aya::programs::ProgramFd;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (linux/bpf.h), up to `batch_size`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// What one test run returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The XDP action (`XDP_PASS` = 2, `XDP_DROP` = 1, `XDP_REDIRECT` = 4, ...).
    pub action: u32,
    /// Mean nanoseconds per run as the kernel measured it (over `repeat` runs).
    pub ns_per_run: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("BPF_PROG_TEST_RUN on a {len}-byte frame failed: {source}")]
pub struct TestRunError {
    len: usize,
    source: std::io::Error,
}

/// Runs `prog` on `frame` `repeat` times (at least once) on the calling CPU.
pub fn test_run(prog: &ProgramFd, frame: &[u8], repeat: u32) -> Result<TestRun, TestRunError> {
    // Room for programs that grow the frame; ours never does.
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..Default::default()
    };
    // SAFETY: `attr` is a correctly laid out prefix of `union bpf_attr` (the kernel zero-extends
    // shorter structs), and the buffers it points to outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(TestRunError {
            len: frame.len(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(TestRun {
        action: attr.retval,
        ns_per_run: attr.duration,
    })
}
