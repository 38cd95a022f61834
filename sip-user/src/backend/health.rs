//! A backend's health from its OPTIONS probes: down after `fall` failures in a row, up again
//! after `rise` successes in a row (the hysteresis keeps a flapping backend from taking calls).

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    fall: u32,
    rise: u32,
    failures: u32,
    successes: u32,
}

impl Health {
    /// Starts up: a configured backend takes calls until probes say otherwise.
    pub fn new(fall: u32, rise: u32) -> Self {
        Health {
            state: State::Up,
            fall: fall.max(1),
            rise: rise.max(1),
            failures: 0,
            successes: 0,
        }
    }

    /// New thresholds from a reloaded config; the counts so far stay.
    pub fn set_thresholds(&mut self, fall: u32, rise: u32) {
        self.fall = fall.max(1);
        self.rise = rise.max(1);
    }

    /// Records one probe (a response to OPTIONS before the timeout counts as a success, any
    /// status: the server is alive). Returns the new state if it changed.
    pub fn on_probe(&mut self, ok: bool) -> Option<State> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == State::Down && self.successes >= self.rise {
                self.state = State::Up;
                return Some(State::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == State::Up && self.failures >= self.fall {
                self.state = State::Down;
                return Some(State::Down);
            }
        }
        None
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_k_failures_and_rises_after_m_successes() {
        let mut h = Health::new(3, 2);
        assert_eq!(h.on_probe(false), None);
        assert_eq!(h.on_probe(true), None, "a success resets the failure count");
        assert_eq!(h.on_probe(false), None);
        assert_eq!(h.on_probe(false), None);
        assert_eq!(h.on_probe(false), Some(State::Down));
        assert_eq!(h.on_probe(false), None);
        assert_eq!(h.on_probe(true), None);
        assert_eq!(h.on_probe(true), Some(State::Up));
        assert!(h.is_up());
    }
}
