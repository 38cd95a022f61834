//! "What would the fast path do with this packet?": runs the XDP program on a frame with
//! `BPF_PROG_TEST_RUN` and reads back its decision.

use serde::Serialize;
use sip_common::{LastResult, method, reason, verdict};

use crate::{
    control::ebpf::{FastPath, LoadError},
    control::filter::FilterSettings,
    tools::frame::FrameSpec,
    tools::testrun::{self, TestRunError},
};

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    TestRun(#[from] TestRunError),
    #[error("pinning the thread to a CPU for the test run: {0}")]
    Pin(std::io::Error),
    #[error("listing online CPUs: {0}")]
    Cpus(String),
    #[error("the program returned XDP action {action} but recorded verdict `{verdict}`")]
    Inconsistent { action: u32, verdict: &'static str },
}

/// The program's decision about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: &'static str,
    pub reason: &'static str,
    /// The SIP method bucket, `none` when the first line was not recognised.
    pub method: &'static str,
    pub call_id_hash: Option<u64>,
}

/// A loaded program with a filter applied, ready to classify frames.
pub struct Classifier {
    fast_path: FastPath,
    cpu: usize,
}

impl Classifier {
    /// Loads the program with `settings`. When `settings.steer_cpus` is empty, steering goes to
    /// every online CPU, so SIP with a Call-ID shows as `redirect` as it would on a running
    /// daemon.
    pub fn new(mut settings: FilterSettings) -> Result<Self, ClassifyError> {
        if settings.steer_cpus.is_empty() {
            settings.steer_cpus = aya::util::online_cpus()
                .map_err(|(what, e)| ClassifyError::Cpus(format!("{what}: {e}")))?;
            settings.steer_cpus.truncate(sip_common::MAX_STEER_CPUS);
        }
        let mut fast_path = FastPath::load()?;
        fast_path.apply(&settings)?;
        // Per-CPU results are read from the slot of the CPU the test run ran on: stay on one.
        let cpu = crate::sys::current_cpu().unwrap_or(0);
        crate::sys::pin_current_thread(cpu).map_err(ClassifyError::Pin)?;
        Ok(Self { fast_path, cpu })
    }

    pub fn fast_path(&self) -> &FastPath {
        &self.fast_path
    }

    /// New filter settings, as a SIGHUP applies them to the running daemon's maps.
    pub fn apply(&mut self, settings: &FilterSettings) -> Result<(), ClassifyError> {
        Ok(self.fast_path.apply(settings)?)
    }

    /// The empty baseline program, loaded on first use.
    pub fn empty_program_fd(&mut self) -> Result<&aya::programs::ProgramFd, ClassifyError> {
        Ok(self.fast_path.load_empty()?)
    }

    /// Classifies a UDP payload sent to `port` from a documentation address.
    pub fn classify_payload(&self, payload: &[u8], port: u16) -> Result<Decision, ClassifyError> {
        self.classify_frame(&FrameSpec::ipv4_to_port(port).build(payload))
    }

    /// Classifies a whole Ethernet frame.
    pub fn classify_frame(&self, frame: &[u8]) -> Result<Decision, ClassifyError> {
        let run = testrun::test_run(self.fast_path.program_fd()?, frame, 1)?;
        let state = self.fast_path.cpu_state()?;
        let values = state.get(&0, 0).map_err(|source| LoadError::Map {
            map: sip_common::map_names::CPU_STATE,
            source,
        })?;
        let last: LastResult = values[self.cpu].last;
        let decision = Decision {
            verdict: verdict::name(last.verdict),
            reason: reason::name(last.reason),
            method: method::name(last.method),
            call_id_hash: (last.has_hash != 0).then_some(last.call_id_hash),
        };
        let expected = match last.verdict {
            verdict::DROP => 1,
            verdict::PASS => 2,
            _ => 4,
        };
        if run.action != expected {
            return Err(ClassifyError::Inconsistent {
                action: run.action,
                verdict: decision.verdict,
            });
        }
        Ok(decision)
    }
}
