//! RFC 3261 §17 timer values (Table 4 of §A) for an unreliable transport, derived from T1, T2
//! and T4; RFC 6026 adds L and M.

use std::time::Duration;

/// The base timers. Defaults: T1 = 500 ms (RTT estimate), T2 = 4 s (maximum retransmit
/// interval for non-INVITE requests and INVITE responses), T4 = 5 s (maximum time a message
/// stays in the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Timers B, F, H, J, L and M: 64·T1, the transaction timeout.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: "at least 32 seconds for unreliable transports" (§17.1.1.2).
    pub fn timer_d(&self) -> Duration {
        self.timeout().max(Duration::from_secs(32))
    }

    /// The next retransmit interval after `current` for a request or response whose interval
    /// is capped at T2 (timers E and G).
    pub fn backoff_capped(&self, current: Duration) -> Duration {
        (current * 2).min(self.t2)
    }
}
