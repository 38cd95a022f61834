//! One call's dialog and session state, as a proxy on the path sees it (RFC 3261 §12, §16;
//! RFC 4028 session timers). Pure transitions; the table in [`super`] owns time and capacity.

use std::time::{Duration, Instant};

/// The session lifecycle of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing seen yet (a dialog is created by its INVITE, so a stored one is never Idle).
    Idle,
    /// INVITE forwarded, no provisional response with a To tag yet.
    Calling,
    /// A 1xx with a To tag: an early dialog (§12.1).
    Ringing,
    /// A 2xx: the dialog is confirmed (§12.1).
    Connected,
    /// A BYE is on its way.
    Disconnecting,
    /// Over; see [`End`].
    Terminated,
}

impl Phase {
    /// The phases a stored dialog can be in, in the order of counts and metric labels.
    pub const COUNTED: [Phase; 4] = [
        Phase::Calling,
        Phase::Ringing,
        Phase::Connected,
        Phase::Disconnecting,
    ];

    /// Its name in the admin API and `ctl dialogs`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Calling => "calling",
            Phase::Ringing => "ringing",
            Phase::Connected => "connected",
            Phase::Disconnecting => "disconnecting",
            Phase::Terminated => "terminated",
        }
    }
}

/// RFC 3261 §12 dialog state, derived from the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// BYE answered (or its transaction timed out).
    Bye,
    /// The INVITE got a 3xx–6xx final response (other than 487 after CANCEL).
    Rejected(u16),
    /// CANCEL, confirmed by the 487 to the INVITE.
    Cancelled,
    /// No final response, no BYE answer, or no activity within the phase's limit.
    Timeout,
    /// RFC 4028: no refresh before Session-Expires.
    SessionExpired,
    /// Pushed out of a full table.
    Evicted,
    /// A 2xx to the INVITE was never ACKed within 64·T1 (RFC 3261 §13.3.1.4: the callee gives
    /// up and ends the dialog; so do we, rather than keep it for hours).
    NoAck,
}

impl End {
    /// Every kind of end, in the order of [`Self::index`], with its metric label.
    pub const NAMES: [&'static str; 7] = [
        "bye",
        "rejected",
        "cancelled",
        "timeout",
        "session_expired",
        "evicted",
        "no_ack",
    ];

    pub fn index(self) -> usize {
        match self {
            End::Bye => 0,
            End::Rejected(_) => 1,
            End::Cancelled => 2,
            End::Timeout => 3,
            End::SessionExpired => 4,
            End::Evicted => 5,
            End::NoAck => 6,
        }
    }
}

/// How long each phase may last before the dialog is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calling without any response: the INVITE transaction's timeout (64·T1).
    pub calling: Duration,
    /// Ringing without a final response: Timer C (RFC 3261 §16.6 step 11, > 3 min).
    pub ringing: Duration,
    /// Connected without a session timer: the longest call kept (a lost BYE must not leak).
    pub connected: Duration,
    /// Disconnecting: the BYE transaction's timeout (64·T1).
    pub disconnecting: Duration,
    /// Connected but not yet ACKed: 64·T1 (RFC 3261 §13.3.1.4).
    pub ack: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            calling: Duration::from_secs(32),
            ringing: Duration::from_secs(181),
            connected: Duration::from_secs(12 * 3600),
            disconnecting: Duration::from_secs(32),
            ack: Duration::from_secs(32),
        }
    }
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Session {
    pub phase: Phase,
    pub end: Option<End>,
    pub created: Instant,
    /// When the table drops the dialog unless something happens first.
    pub deadline: Instant,
    /// RFC 4028 Session-Expires interval, once a 2xx (or refresh) negotiated one.
    pub session_expires: Option<Duration>,
    /// Which backend the call went to (dialog affinity); set by the proxy.
    pub backend: u32,
    /// Where the dialog-creating INVITE came from: requests from the callee go back there.
    pub caller: Option<crate::sip::peer::Peer>,
    /// CSeq of the INVITE, to tell its responses from a re-INVITE's.
    pub invite_cseq: u32,
    /// A CANCEL was seen for the INVITE.
    pub cancelling: bool,
    /// The INVITE got its 2xx but no ACK yet: the session lasts [`Limits::ack`] unless one comes.
    pub awaiting_ack: bool,
}

impl Session {
    pub fn new(now: Instant, invite_cseq: u32, limits: &Limits) -> Self {
        Session {
            phase: Phase::Calling,
            end: None,
            created: now,
            deadline: now + limits.calling,
            session_expires: None,
            backend: 0,
            caller: None,
            invite_cseq,
            cancelling: false,
            awaiting_ack: false,
        }
    }

    pub fn dialog_state(&self) -> DialogState {
        match self.phase {
            Phase::Idle | Phase::Calling | Phase::Ringing => DialogState::Early,
            Phase::Connected | Phase::Disconnecting => DialogState::Confirmed,
            Phase::Terminated => DialogState::Terminated,
        }
    }

    /// A response to the dialog's INVITE (or a re-INVITE/UPDATE when connected).
    pub fn on_invite_response(
        &mut self,
        code: u16,
        session_expires: Option<u32>,
        now: Instant,
        limits: &Limits,
    ) {
        match (self.phase, code) {
            (Phase::Calling | Phase::Ringing, 101..=199) => {
                self.phase = Phase::Ringing;
                self.deadline = now + limits.ringing;
            }
            (Phase::Calling | Phase::Ringing, 200..=299) => {
                // Confirmed, but kept only 64·T1 until the caller's ACK shows it is there.
                self.phase = Phase::Connected;
                self.session_expires = session_expires.map(|s| Duration::from_secs(s.into()));
                self.awaiting_ack = true;
                self.deadline = now + limits.ack;
            }
            (Phase::Connected, 200..=299) if !self.awaiting_ack => {
                self.refresh(session_expires, now, limits);
            }
            (Phase::Calling | Phase::Ringing, 300..=699) => {
                self.terminate(if code == 487 && self.cancelling {
                    End::Cancelled
                } else {
                    End::Rejected(code)
                });
            }
            _ => {} // 100 Trying is hop-by-hop; a failed re-INVITE leaves the session as it was
        }
    }

    /// A session refresh (2xx to re-INVITE or UPDATE) or the 2xx that set the session up.
    fn refresh(&mut self, session_expires: Option<u32>, now: Instant, limits: &Limits) {
        self.session_expires = session_expires
            .map(|s| Duration::from_secs(s.into()))
            .or(self.session_expires);
        self.deadline = now + self.session_expires.unwrap_or(limits.connected);
    }

    /// The ACK for the INVITE's 2xx: the session now lasts its session timer, or
    /// [`Limits::connected`].
    pub fn on_ack(&mut self, now: Instant, limits: &Limits) {
        if self.awaiting_ack && self.phase == Phase::Connected {
            self.awaiting_ack = false;
            self.refresh(None, now, limits);
        }
    }

    pub fn on_bye(&mut self, now: Instant, limits: &Limits) {
        if self.phase != Phase::Terminated {
            self.phase = Phase::Disconnecting;
            self.deadline = now + limits.disconnecting;
        }
    }

    pub fn on_bye_response(&mut self, code: u16) {
        // Any final response ends the dialog (RFC 3261 §15.1.1: even a non-2xx to BYE).
        if self.phase == Phase::Disconnecting && code >= 200 {
            self.terminate(End::Bye);
        }
    }

    pub fn on_cancel(&mut self) {
        if matches!(self.phase, Phase::Calling | Phase::Ringing) {
            self.cancelling = true;
        }
    }

    /// The deadline passed.
    pub fn expire(&mut self) {
        let end = match self.phase {
            Phase::Connected if self.awaiting_ack => End::NoAck,
            Phase::Connected if self.session_expires.is_some() => End::SessionExpired,
            Phase::Disconnecting => End::Bye,
            _ => End::Timeout,
        };
        self.terminate(end);
    }

    pub fn terminate(&mut self, end: End) {
        self.phase = Phase::Terminated;
        self.end.get_or_insert(end);
    }
}
