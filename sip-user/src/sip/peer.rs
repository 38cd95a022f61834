//! Where a message came from or goes to: a transport and an address. Over UDP the address is
//! the whole story; over TCP and TLS the peer's address (its IP and ephemeral port) names one
//! connection at our listener, so the same pair also names the connection a response must go
//! back on (RFC 3261 §18.2.2) and the flow a request toward a UA must take (RFC 5626 §5.3).

use std::{fmt, net::SocketAddr};

/// The transports a message can travel on (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// As written in a Via's sent-protocol (`SIP/2.0/TCP`, RFC 3261 §20.42).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// As written in config files, metrics labels and a URI's `transport` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Reliable transports do not retransmit (RFC 3261 §17.1.1.2, §17.2.1: timers A, E and G
    /// are not used, and D, I, J, K are zero).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// A Via's sent-protocol transport, compared without case.
    pub fn from_via(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| name.eq_ignore_ascii_case(t.via_name().as_bytes()))
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The other end of a message: its transport and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Self {
        Peer {
            transport: Transport::Udp,
            addr,
        }
    }

    pub fn new(transport: Transport, addr: SocketAddr) -> Self {
        Peer { transport, addr }
    }
}

/// A bare address is a UDP peer.
impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer::udp(addr)
    }
}

/// A bare address names a UDP peer.
impl PartialEq<SocketAddr> for Peer {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.transport == Transport::Udp && self.addr == *other
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_names_round_trip_without_case() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_via(t.via_name().as_bytes()), Some(t));
            assert_eq!(
                Transport::from_via(t.via_name().to_lowercase().as_bytes()),
                Some(t)
            );
        }
        assert_eq!(Transport::from_via(b"SCTP"), None);
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Tcp.is_reliable() && Transport::Tls.is_reliable());
    }
}
