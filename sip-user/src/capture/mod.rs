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

use crate::sip::peer::{Peer, Transport};

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

    /// A message received from `from`.
    pub fn received(&mut self, message: &[u8], from: Peer, now: Instant) {
        let local = self.local[from.transport.index()];
        self.emit(message, from.addr, local, from.transport, now);
    }

    /// A message sent to `to`.
    pub fn sent(&mut self, message: &[u8], to: Peer, now: Instant) {
        let local = self.local[to.transport.index()];
        self.emit(message, local, to.addr, to.transport, now);
    }

    fn emit(
        &mut self,
        message: &[u8],
        source: SocketAddr,
        destination: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        // Keep-alives and what is not SIP carry no Call-ID: not captured.
        let Some(call_id) = find_call_id(message) else {
            return;
        };
        if !sampled(call_id, self.settings.sample_percent) || message.len() > hep::MAX_PAYLOAD {
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
fn sampled(call_id: &[u8], percent: u8) -> bool {
    match percent {
        100.. => true,
        0 => false,
        p => hash_call_id(call_id) % 100 < u64::from(p),
    }
}

/// The Call-ID header's value (`Call-ID` or compact `i`), looked for in the header block
/// without a full parse: capture also sees what the proxy made itself, and parsing again for
/// a value is more than the capture needs.
pub fn find_call_id(message: &[u8]) -> Option<&[u8]> {
    let head_end = memchr::memmem::find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = &message[..head_end];
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = crate::sip::scan::trim_lws(&line[..colon]);
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let value = crate::sip::scan::trim_lws(&line[colon + 1..]);
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_id_is_found_in_either_form_and_keepalives_have_none() {
        let m = b"INVITE sip:b SIP/2.0\r\nVia: x\r\nCall-ID:  a1@h \r\n\r\nCall-ID: body";
        assert_eq!(find_call_id(m), Some(&b"a1@h"[..]));
        let compact = b"SIP/2.0 200 OK\r\nv: x\r\ni: c2\r\n\r\n";
        assert_eq!(find_call_id(compact), Some(&b"c2"[..]));
        assert_eq!(find_call_id(b"\r\n\r\n"), None);
        assert_eq!(
            find_call_id(b"OPTIONS sip:x SIP/2.0\r\n\r\nCall-ID: y\r\n"),
            None
        );
    }

    #[test]
    fn sampling_takes_whole_calls_in_proportion() {
        assert!(sampled(b"x", 100) && !sampled(b"x", 0));
        let ids: Vec<String> = (0..10_000).map(|i| format!("call-{i}@h")).collect();
        let taken = ids.iter().filter(|c| sampled(c.as_bytes(), 25)).count();
        assert!((2_200..2_800).contains(&taken), "{taken} of 10,000 at 25%");
        // The same call, the same answer: its messages are captured together.
        assert!(
            ids.iter()
                .all(|c| sampled(c.as_bytes(), 25) == sampled(c.as_bytes(), 25))
        );
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
        for _ in 0..5 {
            c.received(b"BYE sip:x SIP/2.0\r\nCall-ID: q\r\n\r\n", from, now);
        }
        c.received(b"\r\n\r\n", from, now);
        assert_eq!(
            (counters.sent.get(), counters.capped.get()),
            (2, 3),
            "4/s over 2 workers"
        );
        c.received(
            b"BYE sip:x SIP/2.0\r\nCall-ID: q\r\n\r\n",
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
