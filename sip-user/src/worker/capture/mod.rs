//! SIP capture: every SIP message a worker receives and sends, as HEPv3 ([`hep`]) to a
//! collector (Homer, sngrep `-L`, Kamailio's sipcapture), for `[capture]`. Whole calls are
//! sampled (by the Call-ID's hash, so a call is captured with all its messages or not at all),
//! and each worker sends at most its share of `max_per_second`; what the cap holds back is
//! counted, never queued. One `sendto` per message from the worker's own thread: capture is
//! for troubleshooting, off by default, and costs nothing when off.

pub mod hep;

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant, SystemTime},
};

use prometheus::IntCounter;
use sip_common::hash_call_id;

use crate::sip::{
    peer::{Peer, Transport},
    with_message,
};

/// What `[capture]` configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    pub collector: SocketAddr,
    /// Percent of calls captured (0 to 100).
    pub sample_percent: u8,
    /// Messages per second over all workers.
    pub max_per_second: u32,
    pub agent_id: u32,
    pub password: Option<String>,
}

/// The capture counters (`sip_fastpath_capture_messages_total{result}`).
#[derive(Debug, Clone)]
pub struct CaptureCounters {
    pub sent: IntCounter,
    pub capped: IntCounter,
    pub failed: IntCounter,
}

/// One worker's capture.
#[derive(Debug)]
pub struct Capture {
    settings: CaptureSettings,
    socket: UdpSocket,
    /// Our address per transport (index [`Transport::index`]): the other end of each message.
    local: [SocketAddr; 3],
    per_second: u32,
    window: Instant,
    left: u32,
    buf: Vec<u8>,
    counters: CaptureCounters,
}

impl Capture {
    /// A capture for one of `workers` workers, sending from an ephemeral UDP port.
    pub fn new(
        settings: CaptureSettings,
        local: [SocketAddr; 3],
        workers: usize,
        counters: CaptureCounters,
    ) -> std::io::Result<Self> {
        let bind: SocketAddr = if settings.collector.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        let per_second = (settings.max_per_second / workers.max(1) as u32).max(1);
        Ok(Capture {
            settings,
            socket,
            local,
            per_second,
            window: Instant::now(),
            left: per_second,
            buf: Vec::with_capacity(2048),
            counters,
        })
    }

    /// A message received from `from`, with the Call-ID the worker's parse found and the hash
    /// it computed of it.
    pub fn received(
        &mut self,
        message: &[u8],
        call_id: &[u8],
        hash: u64,
        from: Peer,
        now: Instant,
    ) {
        let local = self.local[from.transport.index()];
        self.emit(
            message,
            (call_id, Some(hash)),
            from.addr,
            local,
            from.transport,
            now,
        );
    }

    /// A message sent to `to`. What we send was built or checked by the stack, so it parses;
    /// a keep-alive (no Call-ID) is not captured.
    pub fn sent(&mut self, message: &[u8], to: Peer, now: Instant) {
        let local = self.local[to.transport.index()];
        with_message(message, |m| {
            if let Some(call_id) = m.call_id() {
                self.emit(message, (call_id, None), local, to.addr, to.transport, now);
            }
        });
    }

    /// `call`: the Call-ID and, when the caller has it, its hash (else it is hashed here, and
    /// only when sampling needs it).
    fn emit(
        &mut self,
        message: &[u8],
        (call_id, hash): (&[u8], Option<u64>),
        source: SocketAddr,
        destination: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let hash = || hash.unwrap_or_else(|| hash_call_id(call_id));
        if !sampled(hash, self.settings.sample_percent) || message.len() > hep::MAX_PAYLOAD {
            return;
        }
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.left = self.per_second;
        }
        if self.left == 0 {
            self.counters.capped.inc();
            return;
        }
        self.left -= 1;
        let m = hep::HepMessage {
            source,
            destination,
            stream: transport != Transport::Udp,
            time: SystemTime::now(),
            agent_id: self.settings.agent_id,
            password: self.settings.password.as_deref(),
            call_id: Some(call_id),
            payload: message,
        };
        hep::encode(&m, &mut self.buf);
        match self.socket.send_to(&self.buf, self.settings.collector) {
            Ok(_) => self.counters.sent.inc(),
            Err(_) => self.counters.failed.inc(),
        }
    }
}

/// Whether a call is in the sample: the Call-ID's hash (the kernel's) below the share.
fn sampled(hash: impl FnOnce() -> u64, percent: u8) -> bool {
    match percent {
        100.. => true,
        0 => false,
        p => hash() % 100 < u64::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_takes_whole_calls_in_proportion() {
        let x = || hash_call_id(b"x");
        assert!(sampled(x, 100) && !sampled(x, 0));
        let ids: Vec<String> = (0..10_000).map(|i| format!("call-{i}@h")).collect();
        let taken = ids
            .iter()
            .filter(|c| sampled(|| hash_call_id(c.as_bytes()), 25))
            .count();
        assert!((2_200..2_800).contains(&taken), "{taken} of 10,000 at 25%");
    }

    #[test]
    fn the_per_second_cap_holds_back_and_counts() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let counter = |n: &str| IntCounter::new(n, "test").unwrap();
        let counters = CaptureCounters {
            sent: counter("sent"),
            capped: counter("capped"),
            failed: counter("failed"),
        };
        let settings = CaptureSettings {
            collector: collector.local_addr().unwrap(),
            sample_percent: 100,
            max_per_second: 4,
            agent_id: 7,
            password: None,
        };
        let local = ["127.0.0.1:5060".parse().unwrap(); 3];
        let mut c = Capture::new(settings, local, 2, counters.clone()).unwrap();
        let from = Peer::udp("127.0.0.2:5070".parse().unwrap());
        let now = Instant::now();
        let bye = b"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: q\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\r\n";
        for _ in 0..4 {
            c.received(bye, b"q", hash_call_id(b"q"), from, now);
        }
        // Sent messages are parsed for their Call-ID; a keep-alive has none.
        c.sent(bye, from, now);
        c.sent(b"\r\n\r\n", from, now);
        assert_eq!(
            (counters.sent.get(), counters.capped.get()),
            (2, 3),
            "4/s over 2 workers"
        );
        c.received(
            bye,
            b"q",
            hash_call_id(b"q"),
            from,
            now + Duration::from_secs(1),
        );
        assert_eq!(counters.sent.get(), 3, "a new second");
        let mut buf = [0u8; 2048];
        let (n, _) = collector.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..4], b"HEP3");
        assert_eq!(u16::from_be_bytes([buf[4], buf[5]]) as usize, n);
    }
}
