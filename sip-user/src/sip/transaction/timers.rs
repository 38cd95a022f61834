//! RFC 3261 §17 timer values (Table 4 of §A) for an unreliable transport, derived from T1, T2
//! and T4; RFC 6026 adds L and M.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

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

    /// The interval to the next retransmission, `sent` retransmissions in, of a message that doubles from T1
    /// without a cap (timer A). The machines store the count, one byte, not the interval.
    pub fn doubled(&self, sent: u8) -> Duration {
        self.t1.saturating_mul(1 << sent.min(30))
    }

    /// [`Self::doubled`], capped at T2 (timers E and G).
    pub fn doubled_capped(&self, sent: u8) -> Duration {
        self.doubled(sent).min(self.t2)
    }
}

/// When a timer fires, or that it is not running, in 8 bytes: nanoseconds after a process-wide
/// epoch, 0 for none. An `Option<Instant>` takes 16, and every live transaction holds two
/// timers and a place in the schedule (~100,000 of them at 1,000 calls/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Deadline(u64);

impl Deadline {
    pub const NONE: Deadline = Deadline(0);

    /// The epoch: a day before the first use, so the instants a test's fake clock starts from
    /// (taken a little before) still come after it. An earlier instant counts as the epoch
    /// itself, already past.
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(|| {
            let now = Instant::now();
            now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
        })
    }

    pub fn at(at: Instant) -> Self {
        let nanos = at.saturating_duration_since(Self::epoch()).as_nanos();
        // u64 nanoseconds last 584 years; never 0, which means none.
        Deadline(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }

    pub fn get(self) -> Option<Instant> {
        (self != Self::NONE).then(|| Self::epoch() + Duration::from_nanos(self.0))
    }

    /// True if the timer runs and is due at `now`.
    pub fn fired(self, now: Instant) -> bool {
        self != Self::NONE && self <= Deadline::at(now)
    }

    /// The earlier of two, a running timer before none.
    pub fn earliest(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Self::NONE, d) | (d, Self::NONE) => d,
            (a, b) => a.min(b),
        }
    }
}
