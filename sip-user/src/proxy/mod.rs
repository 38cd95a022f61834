//! The proxy core (RFC 3261 §16), sans-IO: datagrams in ([`Proxy::handle`]), datagrams out
//! ([`Proxy::poll_transmit`]), a clock ([`Proxy::handle_timeout`], [`Proxy::poll_timeout`]).
//! One `Proxy` per worker owns that worker's transactions, dialogs and backend view, so the
//! message path takes no locks.
//!
//! Routing, as an edge load balancer in front of backends: a new call goes to the backend the
//! Call-ID hash picks ([`crate::backend::Pool::pick`]); every later request of the dialog goes
//! to the same backend, or, when it comes from that backend (a BYE from the callee), back to
//! the address the INVITE came from. Requests are forwarded statefully through client
//! transactions; responses lose our Via and go back through the server transaction. ACK for a
//! 2xx is forwarded statelessly along the dialog; CANCEL is answered here and sent on along the
//! INVITE's branch. Local answers: 100 Trying for INVITE, 400 for malformed requests, 416/420/
//! 483 from [`crate::sip::proxy_check`], 481 for unknown dialogs, 503 with Retry-After when no
//! backend is up, 408 when a backend does not answer.

pub mod rewrite;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use bytes::Bytes;

use self::rewrite::{Branch, Identity, forward_request, is_loop, loop_hash, strip_top_via};
use crate::{
    backend::Pool,
    sip::{
        Error, Header, MAX_HEADERS, Message, Method, Parsed, build,
        dialog::{DialogTable, Limits},
        parse,
        proxy_check::{Decision, check},
        transaction::{Event, Timers, TransactionLayer, Transmit, key::Key},
        with_message,
    },
};

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub identity: Identity,
    /// Add Record-Route to dialog-creating INVITEs so in-dialog requests come through us.
    pub record_route: bool,
    /// Option tags we accept in Proxy-Require (none by default: answer 420).
    pub supported: Vec<Vec<u8>>,
    pub timers: Timers,
    pub max_dialogs: usize,
    pub dialog_limits: Limits,
    /// Seconds in the Retry-After of a 503 when no backend is up.
    pub retry_after: u32,
    /// Distinguishes this worker's branches from other workers'.
    pub worker: u32,
}

/// What the proxy did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    pub received: u64,
    /// Did not parse or validate (requests among them answered 400).
    pub malformed: u64,
    /// Answered here with a final response (400/416/420/481/483/503/408).
    pub local_replies: u64,
    pub forwarded_requests: u64,
    pub relayed_responses: u64,
    /// New calls refused for lack of a backend (503).
    pub no_backend: u64,
    /// Dropped: responses not for us, ACKs outside any dialog, unanswerable messages.
    pub dropped: u64,
}

/// What happened to requests sent to backends, for metrics (drained with
/// [`Proxy::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A request went to backend `backend` (an index into [`Pool::backends`]).
    Forwarded { backend: u32 },
    /// A request to `backend` got its final response `status` (408 when the backend was
    /// silent) `elapsed` after we received it.
    Completed {
        backend: u32,
        status: u16,
        elapsed: Duration,
    },
}

/// One forwarded request: its server transaction, the original and forwarded bytes, where it
/// went.
#[derive(Debug)]
struct Link {
    server: Key,
    original: Bytes,
    forwarded: Bytes,
    dest: SocketAddr,
    /// The backend `dest` is, or `None` when the request went back to the caller.
    backend: Option<u32>,
    received: Instant,
    final_relayed: bool,
}

/// A worker's proxy.
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    pub pool: Pool,
    txs: TransactionLayer,
    dialogs: DialogTable,
    /// Client transaction → what it forwards.
    links: HashMap<Key, Link>,
    /// Server transaction → client transaction (to find an INVITE's branch for CANCEL).
    server_links: HashMap<Key, Key>,
    next_branch: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
    stats: ProxyStats,
    /// To-tag of the responses we make ourselves.
    local_tag: String,
    /// The header of our 503s, made once (a flood with every backend down asks for it often).
    retry_after: Bytes,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig, pool: Pool) -> Self {
        let local_tag = format!("sfp{}", cfg.worker);
        let retry_after = Bytes::from(format!("Retry-After: {}", cfg.retry_after));
        Proxy {
            txs: TransactionLayer::new(cfg.timers),
            dialogs: DialogTable::new(cfg.max_dialogs, cfg.dialog_limits),
            cfg,
            pool,
            links: HashMap::new(),
            server_links: HashMap::new(),
            next_branch: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: ProxyStats::default(),
            local_tag,
            retry_after,
        }
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    pub fn active_dialogs(&self) -> usize {
        self.dialogs.len()
    }

    pub fn active_transactions(&self) -> usize {
        self.txs.len()
    }

    /// One received datagram.
    pub fn handle(&mut self, datagram: Bytes, source: SocketAddr, now: Instant) {
        let mut headers = [Header::EMPTY; MAX_HEADERS];
        let parsed = parse(&datagram, &mut headers);
        self.handle_parsed(parsed, &datagram, source, now);
    }

    /// One received datagram that the caller already parsed (a worker parses once, to find
    /// the Call-ID's worker, and hands the result on).
    pub fn handle_parsed(
        &mut self,
        parsed: Result<Parsed<'_, '_>, Error>,
        datagram: &Bytes,
        source: SocketAddr,
        now: Instant,
    ) {
        self.stats.received += 1;
        let msg = match parsed {
            Ok(Parsed::KeepAlive) => return,
            Ok(Parsed::Message(m)) => m,
            Err(_) => {
                // Without headers there is nothing to address a response to (RFC 3261 §16.3).
                self.stats.malformed += 1;
                return;
            }
        };
        if let Err(e) = msg.validate() {
            self.stats.malformed += 1;
            if msg.is_request() && msg.method() != Some(Method::Ack) {
                self.reply_stateless(&msg, source, 400, &format!("Bad Request ({e})"), &[]);
            }
            return;
        }
        match check(&msg, &self.cfg.supported) {
            Decision::Forward(_) => {}
            Decision::Reply {
                code,
                reason,
                unsupported,
            } => {
                let extra = unsupported.map(|u| [b"Unsupported: ".as_slice(), u].concat());
                let extra: Vec<&[u8]> = extra.iter().map(Vec::as_slice).collect();
                self.reply_stateless(&msg, source, code, reason, &extra);
                return;
            }
            Decision::Drop(_) => {
                self.stats.dropped += 1;
                return;
            }
        }
        if msg.is_request() && is_loop(&msg, &self.cfg.identity) {
            if msg.method() == Some(Method::Ack) {
                self.stats.dropped += 1;
            } else {
                self.reply_stateless(&msg, source, 482, "Loop Detected", &[]);
            }
            return;
        }
        if !msg.is_request() {
            let ours = matches!(msg.top_via(), Some(Ok(v)) if self.cfg.identity.is_my_via(&v));
            if !ours {
                self.stats.dropped += 1; // §16.7 step 3 precondition: a response must be ours
                return;
            }
        }
        if self.txs.handle(&msg, datagram, source, now).is_err() {
            self.stats.dropped += 1;
        }
        self.drain_events(now, Some(&msg));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.txs.handle_timeout(now);
        self.dialogs.handle_timeout(now);
        while self.dialogs.poll_event().is_some() {}
        self.drain_events(now, None);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.txs.poll_timeout(), self.dialogs.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.txs.poll_transmit().or_else(|| self.out.pop_front())
    }

    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// Acts on the transaction layer's events. `current` is the message just handed to it:
    /// the events that carry a datagram (request, ACK, response) only ever come from that
    /// message, so its parse is reused rather than repeated; timers raise only Timeout and
    /// Terminated.
    fn drain_events(&mut self, now: Instant, current: Option<&Message<'_, '_>>) {
        while let Some(event) = self.txs.poll_event() {
            match (event, current) {
                (
                    Event::Request {
                        key,
                        datagram,
                        source,
                    },
                    Some(msg),
                ) => self.on_request(key, msg, datagram, source, now),
                (Event::Ack { source, .. }, Some(msg)) => self.forward_ack(msg, source, now),
                (Event::Response { key, .. }, Some(msg)) => self.relay_response(&key, msg, now),
                (Event::StrayResponse { .. }, Some(msg)) => self.relay_stray(msg),
                (
                    Event::Request { .. }
                    | Event::Ack { .. }
                    | Event::Response { .. }
                    | Event::StrayResponse { .. },
                    None,
                ) => {
                    debug_assert!(false, "a timer raised a message event");
                }
                (Event::Timeout { key }, _) => self.on_timeout(&key, now),
                (Event::Terminated { key }, _) => {
                    self.links.remove(&key);
                    self.server_links.remove(&key);
                }
            }
        }
    }

    fn branch(&mut self, msg: &Message<'_, '_>) -> Branch {
        self.next_branch += 1;
        Branch {
            worker: self.cfg.worker,
            seq: self.next_branch,
            loop_hash: loop_hash(msg),
        }
    }

    fn on_request(
        &mut self,
        key: Key,
        msg: &Message<'_, '_>,
        datagram: Bytes,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(method) = msg.method() else { return };
        if method == Method::Cancel {
            self.on_cancel(&key, msg, now);
            return;
        }
        if method == Method::Invite {
            let trying = build::response(msg, 100, "Trying", None, &[]);
            let _ = self.txs.respond(&key, 100, trying, now);
        }
        let in_dialog = msg
            .to()
            .and_then(Result::ok)
            .is_some_and(|a| a.tag().is_some());
        let dest = if in_dialog {
            let route = self
                .dialogs
                .handle(msg, now)
                .and_then(|r| self.dialogs.get(r).map(|s| (s.backend, s.caller)));
            match route.and_then(|(b, caller)| {
                Some((b, self.pool.backends.get(b as usize)?.address, caller))
            }) {
                Some((_, backend, Some(caller))) if source == backend => (caller, None),
                Some((b, backend, _)) => (backend, Some(b)),
                None => {
                    return self.reply(&key, msg, 481, "Call/Transaction Does Not Exist", &[], now);
                }
            }
        } else {
            let hash = sip_common::hash_call_id(msg.call_id().unwrap_or(b""));
            let Some(index) = self.pool.pick(hash) else {
                self.stats.no_backend += 1;
                let retry = self.retry_after.clone(); // a reference count, not a copy
                return self.reply(&key, msg, 503, "Service Unavailable", &[&retry[..]], now);
            };
            if method == Method::Invite
                && let Some(r) = self.dialogs.handle(msg, now)
            {
                self.dialogs.set_route(r, index as u32, source);
            }
            (self.pool.backends[index].address, Some(index as u32))
        };
        let (dest, backend) = dest;
        let branch = self.branch(msg);
        let record_route = self.cfg.record_route && method == Method::Invite && !in_dialog;
        let forwarded = forward_request(msg, source, &self.cfg.identity, branch, record_route);
        match self.txs.send_request(forwarded.clone(), dest, now) {
            Ok(client) => {
                self.stats.forwarded_requests += 1;
                if let Some(backend) = backend {
                    self.events.push_back(ProxyEvent::Forwarded { backend });
                }
                self.server_links.insert(key.clone(), client.clone());
                self.links.insert(
                    client,
                    Link {
                        server: key,
                        original: datagram,
                        forwarded,
                        dest,
                        backend,
                        received: now,
                        final_relayed: false,
                    },
                );
            }
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// §16.10: answer the CANCEL, and send one along the INVITE's branch if it was forwarded.
    fn on_cancel(&mut self, key: &Key, msg: &Message<'_, '_>, now: Instant) {
        let invite = key
            .cancelled_invite()
            .and_then(|k| self.server_links.get(&k))
            .and_then(|c| self.links.get(c));
        let Some(link) = invite else {
            return self.reply(key, msg, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        let (forwarded, dest) = (link.forwarded.clone(), link.dest);
        self.dialogs.handle(msg, now);
        let ok = build::response(msg, 200, "OK", None, &[]);
        let _ = self.txs.respond(key, 200, ok, now);
        if let Some(cancel) = with_message(&forwarded, build::cancel_for) {
            let _ = self.txs.send_request(cancel, dest, now);
        }
    }

    fn relay_response(&mut self, client: &Key, msg: &Message<'_, '_>, now: Instant) {
        self.dialogs.handle(msg, now);
        let Some(link) = self.links.get_mut(client) else {
            return; // the answers to our own CANCEL
        };
        let code = msg.status().unwrap_or(0);
        if code == 100 {
            return; // hop by hop (§16.7 step 5)
        }
        if code >= 200 && !link.final_relayed {
            link.final_relayed = true;
            if let Some(backend) = link.backend {
                self.events.push_back(ProxyEvent::Completed {
                    backend,
                    status: code,
                    elapsed: now.saturating_duration_since(link.received),
                });
            }
        }
        self.stats.relayed_responses += 1;
        let server = link.server.clone();
        let _ = self.txs.respond(&server, code, strip_top_via(msg), now);
    }

    /// A response without a client transaction (a 2xx retransmitted after ours ended): strip our
    /// Via and send it to the next one's address (received/rport first, RFC 3581).
    fn relay_stray(&mut self, m: &Message<'_, '_>) {
        let relay = (|| {
            let next = m.vias().nth(1)?.ok()?;
            let ip: IpAddr = std::str::from_utf8(next.received().unwrap_or(next.host))
                .ok()?
                .trim_matches(['[', ']'])
                .parse()
                .ok()?;
            let port = next.rport().flatten().or(next.port).unwrap_or(5060);
            Some(Transmit {
                dest: SocketAddr::new(ip, port),
                payload: strip_top_via(m),
            })
        })();
        match relay {
            Some(t) => {
                self.stats.relayed_responses += 1;
                self.out.push_back(t);
            }
            None => self.stats.dropped += 1,
        }
    }

    /// ACK for a 2xx: stateless, along the dialog (§16.11 note; RFC 6026).
    fn forward_ack(&mut self, m: &Message<'_, '_>, source: SocketAddr, now: Instant) {
        let branch = self.branch(m);
        let routed = (|| {
            let r = self.dialogs.handle(m, now)?;
            let s = self.dialogs.get(r)?;
            let backend = self.pool.backends.get(s.backend as usize)?.address;
            let dest = match s.caller {
                Some(caller) if source == backend => caller,
                _ => backend,
            };
            Some(Transmit {
                dest,
                payload: forward_request(m, source, &self.cfg.identity, branch, false),
            })
        })();
        match routed {
            Some(t) => {
                self.stats.forwarded_requests += 1;
                self.out.push_back(t);
            }
            None => self.stats.dropped += 1,
        }
    }

    /// The backend never answered (timer B or F): 408 upstream unless a final went up already.
    fn on_timeout(&mut self, client: &Key, now: Instant) {
        let Some(link) = self.links.get(client) else {
            return;
        };
        if link.final_relayed {
            return;
        }
        let (server, original) = (link.server.clone(), link.original.clone());
        if let Some(backend) = link.backend {
            self.events.push_back(ProxyEvent::Completed {
                backend,
                status: 408,
                elapsed: now.saturating_duration_since(link.received),
            });
        }
        if let Some(resp) = with_message(&original, |m| {
            self.local_tag_response(m, 408, "Request Timeout", &[])
        }) {
            self.stats.local_replies += 1;
            let _ = self.txs.respond(&server, 408, resp, now);
        }
    }

    fn local_tag_response(
        &self,
        msg: &Message<'_, '_>,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
    ) -> Bytes {
        build::response(msg, code, reason, Some(self.local_tag.as_bytes()), extra)
    }

    /// A final response through the server transaction `key`.
    fn reply(
        &mut self,
        key: &Key,
        msg: &Message<'_, '_>,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
        now: Instant,
    ) {
        self.stats.local_replies += 1;
        let resp = self.local_tag_response(msg, code, reason, extra);
        let _ = self.txs.respond(key, code, resp, now);
    }

    /// A response without a transaction: for requests rejected before matching (400, 416…).
    fn reply_stateless(
        &mut self,
        msg: &Message<'_, '_>,
        dest: SocketAddr,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
    ) {
        self.stats.local_replies += 1;
        let payload = self.local_tag_response(msg, code, reason, extra);
        self.out.push_back(Transmit { dest, payload });
    }
}

#[cfg(test)]
mod tests;
