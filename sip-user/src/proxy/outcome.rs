//! What became of each datagram a proxy handles: exactly one [`Outcome`] per datagram, so the
//! counts add up to what was received (a request waiting for DNS gets its outcome when the
//! name resolves). Responses the timers make (408 for a silent hop) are not outcomes of a
//! received datagram and are counted apart.

/// One datagram's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A request sent on (statefully, or a 2xx ACK statelessly).
    Forwarded,
    /// A response sent on upstream.
    Relayed,
    /// A request answered here with a final response, by class.
    Answered2xx,
    Answered3xx,
    Answered4xx,
    Answered5xx,
    Answered6xx,
    /// Taken in by a transaction: a retransmission (answered from the transaction, or not at
    /// all), a hop's 100 Trying, the answers to our own CANCEL.
    Absorbed,
    /// A STUN Binding request or CRLF ping answered, or a CRLF pong.
    KeepAlive,
    /// Not SIP (an empty datagram too), or a request without a Via to answer to.
    DroppedUnparsable,
    /// A response or ACK that does not parse or validate (neither can be answered).
    DroppedMalformed,
    /// A response whose top Via is not ours (RFC 3261 §16.7 step 3).
    DroppedNotOurs,
    /// An ACK that came back to us unchanged (a loop; an ACK cannot be answered 482).
    DroppedLoop,
    /// An ACK or a response we found nowhere to send.
    DroppedUnroutable,
    /// A message the transaction layer could not take (no Via or CSeq to match on).
    DroppedUnmatched,
}

impl Outcome {
    pub const ALL: [Outcome; sip_common::OUTCOME_KINDS] = [
        Outcome::Forwarded,
        Outcome::Relayed,
        Outcome::Answered2xx,
        Outcome::Answered3xx,
        Outcome::Answered4xx,
        Outcome::Answered5xx,
        Outcome::Answered6xx,
        Outcome::Absorbed,
        Outcome::KeepAlive,
        Outcome::DroppedUnparsable,
        Outcome::DroppedMalformed,
        Outcome::DroppedNotOurs,
        Outcome::DroppedLoop,
        Outcome::DroppedUnroutable,
        Outcome::DroppedUnmatched,
    ];

    /// The final response `code` we answered with.
    pub fn answered(code: u16) -> Self {
        match code {
            200..=299 => Outcome::Answered2xx,
            300..=399 => Outcome::Answered3xx,
            400..=499 => Outcome::Answered4xx,
            500..=599 => Outcome::Answered5xx,
            _ => Outcome::Answered6xx,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Relayed => "relayed",
            Outcome::Answered2xx => "answered_2xx",
            Outcome::Answered3xx => "answered_3xx",
            Outcome::Answered4xx => "answered_4xx",
            Outcome::Answered5xx => "answered_5xx",
            Outcome::Answered6xx => "answered_6xx",
            Outcome::Absorbed => "absorbed",
            Outcome::KeepAlive => "keepalive",
            Outcome::DroppedUnparsable => "dropped_unparsable",
            Outcome::DroppedMalformed => "dropped_malformed",
            Outcome::DroppedNotOurs => "dropped_not_ours",
            Outcome::DroppedLoop => "dropped_loop",
            Outcome::DroppedUnroutable => "dropped_unroutable",
            Outcome::DroppedUnmatched => "dropped_unmatched",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_in_order() {
        let names: std::collections::BTreeSet<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        assert_eq!(Outcome::answered(481), Outcome::Answered4xx);
        assert_eq!(Outcome::answered(603), Outcome::Answered6xx);
    }
}
