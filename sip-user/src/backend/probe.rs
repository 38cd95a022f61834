//! OPTIONS probes to the backends, sans-IO: [`Prober::round`] writes one OPTIONS per backend,
//! [`Prober::on_datagram`] matches answers by Call-ID, [`Prober::expire`] fails the ones still
//! unanswered. Any response counts as alive (a 404 or 405 to OPTIONS still proves a SIP stack
//! is there), as in Kamailio's dispatcher with `ds_ping_reply_codes` left open.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::Pool;
use crate::sip::{transaction::Transmit, with_message};

/// One probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    /// Index into [`Pool::backends`].
    pub backend: usize,
    /// Round trip of an answered probe; `None` when it timed out.
    pub latency: Option<Duration>,
}

#[derive(Debug)]
struct Pending {
    backend: usize,
    address: SocketAddr,
    sent: Instant,
}

/// The probes in flight.
#[derive(Debug)]
pub struct Prober {
    /// `host:port` of the probing socket, written in Via, From and Call-ID.
    me: String,
    seq: u64,
    /// Call-ID → probe.
    pending: HashMap<String, Pending>,
}

impl Prober {
    pub fn new(me: SocketAddr) -> Self {
        Prober {
            me: me.to_string(),
            seq: 0,
            pending: HashMap::new(),
        }
    }

    /// One OPTIONS for each backend of the pool (down and draining ones too: a down backend
    /// comes back by answering).
    pub fn round(&mut self, pool: &Pool, now: Instant) -> Vec<Transmit> {
        pool.backends
            .iter()
            .enumerate()
            .map(|(backend, b)| {
                self.seq += 1;
                let call_id = format!("probe-{}@{}", self.seq, self.me);
                let mut m = String::with_capacity(320);
                let _ = write!(
                    m,
                    "OPTIONS sip:{addr} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {me};branch=z9hG4bK-sfp-probe-{seq};rport\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:sip-fastpath@{me}>;tag=probe\r\n\
                     To: <sip:{addr}>\r\n\
                     Call-ID: {call_id}\r\n\
                     CSeq: {seq} OPTIONS\r\n\
                     Accept: application/sdp\r\n\
                     Content-Length: 0\r\n\r\n",
                    addr = b.address,
                    me = self.me,
                    seq = self.seq,
                );
                self.pending.insert(
                    call_id,
                    Pending {
                        backend,
                        address: b.address,
                        sent: now,
                    },
                );
                Transmit {
                    dest: b.address.into(),
                    payload: Bytes::from(m),
                }
            })
            .collect()
    }

    /// A datagram on the probing socket: the answer to a probe if its Call-ID and source match
    /// one in flight.
    pub fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Instant,
    ) -> Option<ProbeResult> {
        let call_id = with_message(datagram, |msg| {
            let id = msg.call_id().filter(|_| !msg.is_request())?;
            let id = std::str::from_utf8(id).ok()?;
            (self.pending.get(id)?.address == source).then(|| id.to_string())
        })??;
        let p = self.pending.remove(&call_id)?;
        Some(ProbeResult {
            backend: p.backend,
            latency: Some(now.saturating_duration_since(p.sent)),
        })
    }

    /// The probes sent `timeout` or longer ago, now failed.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<ProbeResult> {
        let mut failed = Vec::new();
        self.pending.retain(|_, p| {
            let late = now.saturating_duration_since(p.sent) >= timeout;
            if late {
                failed.push(ProbeResult {
                    backend: p.backend,
                    latency: None,
                });
            }
            !late
        });
        failed.sort_by_key(|r| r.backend);
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backend::Backend, sip::build};

    #[test]
    fn answered_probes_succeed_and_silent_ones_fail() {
        let pool = Pool::new(vec![
            Backend::new("192.0.2.10:5060".parse().unwrap(), 1.0, 2, 1),
            Backend::new("192.0.2.11:5060".parse().unwrap(), 1.0, 2, 1),
        ]);
        let mut prober = Prober::new("192.0.2.1:40000".parse().unwrap());
        let t0 = Instant::now();
        let sent = prober.round(&pool, t0);
        assert_eq!(sent.len(), 2);
        let ok = with_message(&sent[1].payload, |m| {
            build::response(m, 200, "OK", Some(b"b"), &[])
        })
        .expect("our probe parses");
        let later = t0 + Duration::from_millis(3);
        assert_eq!(
            prober.on_datagram(&ok, "192.0.2.10:5060".parse().unwrap(), later),
            None,
            "an answer from the wrong address does not count"
        );
        assert_eq!(
            prober.on_datagram(&ok, sent[1].dest.addr, later),
            Some(ProbeResult {
                backend: 1,
                latency: Some(Duration::from_millis(3))
            })
        );
        assert_eq!(
            prober.on_datagram(&ok, sent[1].dest.addr, later),
            None,
            "once"
        );
        assert!(prober.expire(later, Duration::from_millis(500)).is_empty());
        let failed = prober.expire(t0 + Duration::from_millis(500), Duration::from_millis(500));
        assert_eq!(
            failed,
            vec![ProbeResult {
                backend: 0,
                latency: None
            }]
        );
    }
}
