//! The proxy core (RFC 3261 §16), sans-IO: datagrams in ([`Proxy::handle`]), datagrams out
//! ([`Proxy::poll_transmit`]), a clock ([`Proxy::handle_timeout`], [`Proxy::poll_timeout`]),
//! and names to resolve ([`Proxy::poll_query`], [`Proxy::handle_answer`]). One `Proxy` per
//! worker owns that worker's transactions, dialogs and backend view, so the message path takes
//! no locks.
//!
//! The edge routes both ways ([`target`] has the rules): what comes from the **outside** goes
//! to the backend pool (a new call by its Call-ID hash, a REGISTER by its address-of-record),
//! or, inside a dialog, along its Route set to the inside; what comes from the **inside** (the
//! backends, `trusted`) goes along its Route set, a static route, or its Request-URI (RFC 3263
//! for names). Requests toward an outside UA name its flow in a token of ours ([`flow`]): in
//! the Path we add to its REGISTER (RFC 3327) and in our Record-Route entry facing it, so the
//! registrar's calls and every in-dialog request reach its NAT binding with no state here. A
//! restarted node, or another node with the same secret, routes them alike.
//!
//! Requests are forwarded statefully through client transactions; responses lose our Via and go
//! back through the server transaction. ACK for a 2xx is routed statelessly like any in-dialog
//! request; CANCEL is answered here and sent along the INVITE's branch while the INVITE is
//! pending. Local answers: 100 Trying for INVITE, 400/513 for malformed requests, 416/420/483
//! from [`crate::sip::proxy_check`], 482 for loops, 403 for what the edge will not relay or a
//! token that does not verify, 404 when nothing routes a request, 481 for an unknown CANCEL or
//! dialog, 503 with Retry-After when no backend is up or DNS fails, 408 when a hop does not
//! answer. STUN Binding requests and double-CRLF pings are answered ([`keepalive`]).

pub mod exercise;
pub mod flow;
pub mod inspect;
pub mod keepalive;
pub mod outcome;
pub mod resolve;
pub mod rewrite;
pub mod route;
pub mod target;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use self::{
    flow::{Flow, FlowKey, Transport},
    outcome::Outcome,
    resolve::{Answer, Lookup, Resolver},
    rewrite::{Branch, Edits, Entry, Identity, forward_request, is_loop, loop_hash, strip_top_via},
    target::{Name, Policy, PoolKey, Refusal, RoutedBy, Side, Target},
};
use crate::{
    backend::Pool,
    sip::{
        Error, HeaderName, MAX_HEADERS, Message, Method, Parsed, build,
        dialog::{DialogRef, DialogTable, End, Limits},
        parse_any, parse_for_reply,
        peer::Peer,
        proxy_check::{Decision, check},
        scan::CommaList,
        shrink::{FastMap, shrink},
        transaction::{
            Admission, Event, Overload, Timers, TransactionError, TransactionLayer, Transmit,
            key::{Key, KeyMap, MethodClass},
        },
        validate::Validated,
        with_message,
    },
};

/// When the edge adds its Path to a REGISTER from outside (RFC 3327).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathPolicy {
    /// Always: the registrar must accept Path without the UA's `Supported: path` (Kamailio
    /// `path_mode` 0 or 1; strict registrars answer 420 to such REGISTERs).
    Always,
    /// Only when the UA sent `Supported: path` (RFC 3327 §5: what strict registrars require).
    IfSupported,
    /// Never: the registrar reaches phones some other way.
    Off,
}

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub identity: Identity,
    /// Add Record-Route to dialog-creating requests so in-dialog requests come through us.
    pub record_route: bool,
    /// Option tags we accept in Proxy-Require (none by default: answer 420).
    pub supported: Vec<Vec<u8>>,
    pub timers: Timers,
    /// Server transactions admitted at most, in all and per outside source.
    pub admission: Admission,
    /// Dialogs at most; beyond, new INVITEs get 503.
    pub max_dialogs: usize,
    /// Heap bytes beyond which new requests get 503 (BYE and CANCEL excepted), compared with
    /// what [`Proxy::set_heap_in_use`] last said; `usize::MAX` for no ceiling.
    pub memory_ceiling: usize,
    pub dialog_limits: Limits,
    /// Seconds in the Retry-After of a 503 when no backend is up.
    pub retry_after: u32,
    /// Distinguishes this worker's branches from other workers'.
    pub worker: u32,
    /// Who is inside, `domains`, static routes.
    pub policy: Policy,
    /// Signs and checks flow tokens.
    pub flow_key: FlowKey,
    pub path: PathPolicy,
}

impl ProxyConfig {
    /// `identity` and `flow_key` with every other setting at its default: Record-Route on, RFC
    /// 3261 timers, no admission limits, 100,000 dialogs, no heap ceiling, 503s with
    /// Retry-After 5, no trusted sources or routes, Path always. The daemon sets every field from
    /// the config; tests and the fuzz target change what they need.
    pub fn new(identity: Identity, flow_key: FlowKey) -> Self {
        ProxyConfig {
            identity,
            record_route: true,
            supported: Vec::new(),
            timers: Timers::default(),
            admission: Admission::UNLIMITED,
            max_dialogs: 100_000,
            memory_ceiling: usize::MAX,
            dialog_limits: Limits::default(),
            retry_after: 5,
            worker: 0,
            policy: Policy::default(),
            flow_key,
            path: PathPolicy::Always,
        }
    }
}

/// What the proxy did, for metrics. `received` = the sum of `outcomes` + the requests parked
/// for DNS now ([`Proxy::parked`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Datagrams handed to this proxy.
    pub received: u64,
    /// What became of them, one outcome each ([`Outcome::ALL`] order).
    pub outcomes: [u64; Outcome::ALL.len()],
    /// Final responses the timers made (408 when a hop stayed silent): not the outcome of a
    /// received datagram.
    pub timer_replies: u64,
    /// New calls refused for lack of a backend (503; also an `answered_5xx` outcome).
    pub no_backend: u64,
    /// New requests (not retransmissions) by the side they came from.
    pub from_outside: u64,
    pub from_inside: u64,
    /// Requests forwarded, by how their destination was found ([`RoutedBy::ALL`] order).
    pub routed: [u64; sip_common::ROUTED_KINDS],
    /// Requests refused by the routing rules ([`Refusal::ALL`] order).
    pub refused: [u64; sip_common::REFUSAL_KINDS],
    /// STUN Binding requests and CRLF pings answered.
    pub keepalives: u64,
    /// Requests answered 503 because a name did not resolve in time.
    pub dns_failures: u64,
    /// Dialogs that ended, by how ([`End::NAMES`] order): a 2xx never ACKed is `no_ack`.
    pub dialogs_ended: [u64; End::NAMES.len()],
    /// New requests refused with 503 because a limit was reached ([`Limit::ALL`] order).
    pub overload: [u64; Limit::ALL.len()],
}

/// The limits a worker refuses new requests at (with a stateless 503 and Retry-After).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.transactions`: the worker's server transactions.
    Transactions,
    /// `limits.per_source`: one outside source's share of them.
    PerSource,
    /// One outside source's share of request bytes (derived from `limits.memory_mb`).
    PerSourceBytes,
    /// `limits.dialogs`: new INVITEs while the dialog table is full.
    Dialogs,
    /// `limits.memory_mb`: new requests while the heap is over the ceiling.
    Memory,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::Transactions,
        Limit::PerSource,
        Limit::PerSourceBytes,
        Limit::Dialogs,
        Limit::Memory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::Transactions => "transactions",
            Limit::PerSource => "per_source",
            Limit::PerSourceBytes => "per_source_bytes",
            Limit::Dialogs => "dialogs",
            Limit::Memory => "memory_mb",
        }
    }

    /// The setting behind the limit, for the log.
    pub fn setting(self) -> &'static str {
        match self {
            Limit::Transactions => "limits.transactions",
            Limit::PerSource => "limits.per_source",
            Limit::PerSourceBytes => "one source's share of limits.memory_mb",
            Limit::Dialogs => "limits.dialogs",
            Limit::Memory => "limits.memory_mb",
        }
    }
}

impl From<Overload> for Limit {
    fn from(o: Overload) -> Self {
        match o {
            Overload::Transactions => Limit::Transactions,
            Overload::Source => Limit::PerSource,
            Overload::SourceBytes => Limit::PerSourceBytes,
        }
    }
}

/// A refusal is logged at most this often per worker (a flood must not become a log flood).
const OVERLOAD_LOG_EVERY: Duration = Duration::from_secs(10);

/// What happened to requests sent to backends, for metrics (drained with
/// [`Proxy::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A request went to backend `backend` (an index into [`Pool::backends`]); `register` when
    /// it was a REGISTER.
    Forwarded { backend: u32, register: bool },
    /// A request to `backend` got its final response `status` (408 when the backend was
    /// silent) `elapsed` after we received it.
    Completed {
        backend: u32,
        status: u16,
        elapsed: Duration,
    },
}

/// One forwarded request: its server transaction, and while it is pending what only a pending
/// request needs. Only an INVITE answered 2xx keeps its link past the final response: its 2xx
/// retransmissions are relayed through it for RFC 6026's 32 s, so the link is small (32 bytes)
/// and the rest is boxed and dropped at the final. Any other request's link goes with its final
/// (the client transaction absorbs retransmitted finals itself).
#[derive(Debug)]
struct Link {
    server: Key,
    /// `None` once the final response went up.
    pending: Option<Box<Pending>>,
}

/// What a pending request keeps: the original (to answer 408 when the hop is silent), the
/// forwarded request and where it went (to build and send its CANCEL, §9.1), and for the
/// backend's latency histogram which backend that is and when the request came.
#[derive(Debug)]
struct Pending {
    original: Bytes,
    forwarded: Bytes,
    dest: Peer,
    backend: Option<u32>,
    received: Instant,
}

/// A request waiting for a name to resolve.
#[derive(Debug)]
struct Parked {
    /// Its server transaction; `None` for an ACK (forwarded statelessly).
    server: Option<Key>,
    datagram: Bytes,
    source: Peer,
    side: Side,
}

/// Requests one worker keeps waiting for DNS at most; beyond, they are answered 503.
const MAX_PARKED: usize = 1024;

/// Where a request goes, once its target is an address.
#[derive(Debug, Clone, Copy)]
struct Dest {
    peer: Peer,
    backend: Option<u32>,
    by: RoutedBy,
    side: Side,
}

/// What became of routing a request.
enum Routed {
    To(Dest),
    /// Waiting for DNS.
    Parked,
    /// Answer with this status, reason and extra header line.
    Answer(u16, &'static str, Option<Bytes>),
    /// Refused by the routing rules: answer with [`Refusal::response`].
    Refused(Refusal),
}

/// A worker's proxy.
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    /// Shared with the other workers and the pool keeper: a new pool (health, reload) is a
    /// pointer swap, not a copy per worker.
    pub pool: Arc<Pool>,
    txs: TransactionLayer,
    dialogs: DialogTable,
    /// Client transaction → what it forwards.
    links: KeyMap<Link>,
    /// Server transaction → client transaction of a pending INVITE (to find its branch for
    /// CANCEL), until its final response.
    server_links: KeyMap<Key>,
    next_branch: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
    stats: ProxyStats,
    resolver: Resolver,
    parked: FastMap<Name, Vec<Parked>>,
    parked_count: usize,
    /// To-tag of the responses we make ourselves.
    local_tag: String,
    /// The header of our 503s, made once (a flood with every backend down asks for it often).
    retry_after: Bytes,
    /// When a refusal was last logged.
    overload_logged: Option<Instant>,
    /// An outcome was recorded for the datagram being handled, or it was parked for DNS.
    settled: bool,
    /// The process's heap as last told (see [`ProxyConfig::memory_ceiling`]).
    heap_in_use: usize,
    /// Names TLS next hops were resolved from, by address: a connection to one checks the
    /// certificate for the name, not the address (RFC 5922 §4). Bounded by [`MAX_TLS_NAMES`].
    tls_names: HashMap<SocketAddr, Arc<str>>,
    /// The message being handled came from a source inside by identity (see
    /// [`Proxy::handle_as`]).
    source_inside: bool,
    /// The hash of the Call-ID of the message being handled (`sip_common::hash_call_id`, the
    /// kernel's): a worker computes it once to find the owner, and the pool and the resolver
    /// pick by it.
    call_hash: u64,
}

/// The hash the kernel steers `msg`'s Call-ID by (a message without one hashes as empty).
pub fn call_id_hash(msg: &Message<'_, '_>) -> u64 {
    crate::sip::simd::hash_call_id(msg.call_id().unwrap_or(b""))
}

/// TLS next-hop names one worker remembers at most (cleared when full; a connection that
/// exists needs none).
const MAX_TLS_NAMES: usize = 4096;

impl Proxy {
    pub fn new(cfg: ProxyConfig, pool: Pool) -> Self {
        let local_tag = format!("sfp{}", cfg.worker);
        let retry_after = Bytes::from(format!("Retry-After: {}", cfg.retry_after));
        Proxy {
            txs: TransactionLayer::new(cfg.timers).with_admission(cfg.admission),
            dialogs: DialogTable::new(cfg.max_dialogs, cfg.dialog_limits),
            cfg,
            pool: Arc::new(pool),
            links: KeyMap::default(),
            server_links: KeyMap::default(),
            next_branch: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: ProxyStats::default(),
            resolver: Resolver::default(),
            parked: FastMap::default(),
            parked_count: 0,
            local_tag,
            retry_after,
            overload_logged: None,
            settled: false,
            heap_in_use: 0,
            tls_names: HashMap::new(),
            source_inside: false,
            call_hash: 0,
        }
    }

    /// The process's heap in use now, for `memory_ceiling` (the worker says it before each
    /// datagram: the proxy is sans-IO, the count is the allocator's).
    pub fn set_heap_in_use(&mut self, bytes: usize) {
        self.heap_in_use = bytes;
    }

    /// Requests waiting for a name to resolve: received, their outcome not known yet.
    pub fn parked(&self) -> usize {
        self.parked_count
    }

    /// Counts the outcome of the datagram being handled (or of a parked request, decided).
    fn record(&mut self, outcome: Outcome) {
        self.stats.outcomes[outcome as usize] += 1;
        self.settled = true;
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
    pub fn handle(&mut self, datagram: Bytes, source: impl Into<Peer>, now: Instant) {
        self.handle_as(datagram, source.into(), false, now);
    }

    /// One received message; `inside`: its source is inside whatever its address (a TLS client
    /// whose certificate names it in `tls.trusted_names`).
    pub fn handle_as(&mut self, datagram: Bytes, source: Peer, inside: bool, now: Instant) {
        parse_any(&datagram, |parsed| {
            self.handle_parsed_as(parsed, &datagram, source, inside, now)
        });
    }

    /// One received datagram that the caller already parsed (a worker parses once, to find
    /// the Call-ID's worker, and hands the result on).
    pub fn handle_parsed(
        &mut self,
        parsed: Result<Parsed<'_, '_>, Error>,
        datagram: &Bytes,
        source: Peer,
        now: Instant,
    ) {
        self.handle_parsed_as(parsed, datagram, source, false, now);
    }

    /// [`Self::handle_parsed`] with the source's side given by its identity (see
    /// [`Self::handle_as`]).
    pub fn handle_parsed_as(
        &mut self,
        parsed: Result<Parsed<'_, '_>, Error>,
        datagram: &Bytes,
        source: Peer,
        inside: bool,
        now: Instant,
    ) {
        let call_hash = match &parsed {
            Ok(Parsed::Message(m)) => call_id_hash(m),
            _ => 0,
        };
        self.handle_hashed(parsed, datagram, source, inside, call_hash, now);
    }

    /// [`Self::handle_parsed_as`] with the Call-ID's hash ([`call_id_hash`]) the caller already
    /// computed: a worker hashes it once, to find the owning worker, and that is all the
    /// hashing of the Call-ID a message costs.
    pub fn handle_hashed(
        &mut self,
        parsed: Result<Parsed<'_, '_>, Error>,
        datagram: &Bytes,
        source: Peer,
        inside: bool,
        call_hash: u64,
        now: Instant,
    ) {
        self.source_inside = inside;
        self.call_hash = call_hash;
        self.stats.received += 1;
        self.settled = false;
        self.handle_received(parsed, datagram, source, now);
        if !self.settled {
            // A transaction took it in and had nothing to say: a retransmission.
            self.record(Outcome::Absorbed);
        }
        self.count_ended_dialogs();
    }

    fn handle_received(
        &mut self,
        parsed: Result<Parsed<'_, '_>, Error>,
        datagram: &Bytes,
        source: Peer,
        now: Instant,
    ) {
        let msg = match parsed {
            Ok(Parsed::KeepAlive) if datagram.is_empty() => {
                return self.record(Outcome::DroppedUnparsable); // no payload: nothing at all
            }
            Ok(Parsed::KeepAlive) => {
                self.record(Outcome::KeepAlive);
                if let Some(pong) = keepalive::crlf_pong(datagram) {
                    self.keepalive(source, pong);
                }
                return;
            }
            Ok(Parsed::Message(m)) => m,
            Err(e) => {
                if let Some(resp) = keepalive::stun_binding_response(datagram, source.addr) {
                    self.record(Outcome::KeepAlive);
                    return self.keepalive(source, resp);
                }
                return self.answer_unparsable(datagram, e, source);
            }
        };
        let validated = match msg.validate() {
            Ok(v) => v,
            Err(e) => {
                if msg.is_request() && msg.method() != Some(Method::Ack) {
                    self.reply_stateless(&msg, source, 400, &format!("Bad Request ({e})"), &[]);
                } else {
                    self.record(Outcome::DroppedMalformed);
                }
                return;
            }
        };
        // Parsed once, by validation, for every reader below.
        let top_via = validated.top_via.as_ref();
        match check(&msg, &validated, &self.cfg.supported) {
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
                self.record(Outcome::DroppedMalformed);
                return;
            }
        }
        if msg.is_request() && is_loop(&msg, &validated.dialog, &self.cfg.identity) {
            if msg.method() == Some(Method::Ack) {
                self.record(Outcome::DroppedLoop);
            } else {
                self.reply_stateless(&msg, source, 482, "Loop Detected", &[]);
            }
            return;
        }
        if !msg.is_request() {
            let ours = top_via.is_some_and(|v| self.cfg.identity.is_my_via(v));
            if !ours {
                // §16.7 step 3 precondition: a response must be ours.
                self.record(Outcome::DroppedNotOurs);
                return;
            }
        }
        if msg.method() == Some(Method::Invite)
            && validated.dialog.to_tag.flatten().is_none()
            && self.dialogs.len() >= self.cfg.max_dialogs
            && !self.txs.knows(&msg, top_via)
        {
            return self.overloaded(&msg, source, Limit::Dialogs, now);
        }
        if self.heap_in_use > self.cfg.memory_ceiling
            && msg
                .method()
                .is_some_and(|m| !matches!(m, Method::Ack | Method::Bye | Method::Cancel))
            && !self.txs.knows(&msg, top_via)
        {
            return self.overloaded(&msg, source, Limit::Memory, now);
        }
        let exempt = msg.is_request() && self.source_side(source) == Side::Inside;
        match self
            .txs
            .handle_from(&msg, top_via, datagram, source, exempt, now)
        {
            Ok(()) => {}
            Err(TransactionError::Overloaded(o)) => {
                return self.overloaded(&msg, source, o.into(), now);
            }
            Err(_) => self.record(Outcome::DroppedUnmatched),
        }
        self.drain_events(now, Some((&msg, &validated, datagram)));
    }

    /// A new request beyond a limit: a 503 with Retry-After, sent statelessly so the refusal
    /// holds no state (a flood of refused requests costs nothing to remember), counted, and
    /// logged at most every [`OVERLOAD_LOG_EVERY`].
    fn overloaded(&mut self, msg: &Message<'_, '_>, source: Peer, limit: Limit, now: Instant) {
        self.stats.overload[limit as usize] += 1;
        if self
            .overload_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= OVERLOAD_LOG_EVERY)
        {
            self.overload_logged = Some(now);
            log::warn!(
                "worker {}: {} reached; new requests get 503 ({} refused so far, the last from \
                 {source})",
                self.cfg.worker,
                limit.setting(),
                self.stats.overload[limit as usize]
            );
        }
        if msg.method() != Some(Method::Ack) {
            let retry = self.retry_after.clone();
            self.reply_stateless(msg, source, 503, "Service Unavailable", &[&retry[..]]);
        }
    }

    /// Counts the dialogs the table ended (and empties its event queue).
    fn count_ended_dialogs(&mut self) {
        while let Some(ended) = self.dialogs.poll_event() {
            self.stats.dialogs_ended[ended.end.index()] += 1;
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.txs.handle_timeout(now);
        self.dialogs.handle_timeout(now);
        self.count_ended_dialogs();
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

    /// A name the worker must resolve (RFC 3263) and answer with [`Self::handle_answer`].
    pub fn poll_query(&mut self) -> Option<Name> {
        self.resolver.poll_query()
    }

    /// The answer for a name from [`Self::poll_query`]: routes the requests that waited for it.
    pub fn handle_answer(&mut self, name: Name, answer: Answer, now: Instant) {
        let waiting = self.parked.remove(&name).unwrap_or_default();
        self.parked_count -= waiting.len();
        self.resolver.answer(name, answer, now);
        for p in waiting {
            let Parked {
                server,
                datagram,
                source,
                side,
            } = p;
            self.source_inside = side == Side::Inside;
            parse_any(&datagram, |parsed| {
                let Ok(Parsed::Message(msg)) = parsed else {
                    return;
                };
                self.call_hash = call_id_hash(&msg);
                // It passed validation when it came in: what validation read is read again.
                let read = Validated::read(&msg);
                match server {
                    Some(key) => {
                        self.route_and_forward(key, &msg, &read, &datagram, source, side, None, now)
                    }
                    None => self.forward_ack(&msg, &read, &datagram, source, now),
                }
            });
        }
        self.drain_events(now, None);
    }

    /// Gives back the memory of a load that has passed (off the message path, once a
    /// second); true if a table shrank, so the allocator has free pages worth returning.
    pub fn shrink(&mut self) -> bool {
        let tables = [
            self.txs.shrink(),
            self.dialogs.shrink(),
            shrink(&mut self.links),
            shrink(&mut self.server_links),
            shrink(&mut self.out),
            shrink(&mut self.events),
        ];
        tables.contains(&true)
    }

    /// The name a TLS backend's certificate must carry (its `tls_name`), if `peer` is one. Asked
    /// only when a connection is opened (it looks through the pool).
    pub fn backend_tls_name(&self, peer: &Peer) -> Option<&str> {
        if peer.transport != Transport::Tls {
            return None;
        }
        self.pool
            .backends
            .iter()
            .find(|b| b.address == peer.addr && b.transport == Transport::Tls)
            .and_then(|b| b.tls_name.as_deref())
    }

    /// The name this worker resolved the TLS next hop `peer` from, which its certificate must
    /// carry; cheap (nothing unless TLS next hops were resolved), as it is asked per message a
    /// worker hands to the owner of a connection, who may have to open it.
    pub fn resolved_tls_name(&self, peer: &Peer) -> Option<Arc<str>> {
        if peer.transport != Transport::Tls || self.tls_names.is_empty() {
            return None;
        }
        self.tls_names.get(&peer.addr).cloned()
    }

    /// Names cached by this worker's resolver.
    pub fn cached_names(&self) -> usize {
        self.resolver.cached()
    }

    fn keepalive(&mut self, dest: Peer, payload: Bytes) {
        self.stats.keepalives += 1;
        self.out.push_back(Transmit { dest, payload });
    }

    /// A request that did not parse: answered when its start line and a Via can be read —
    /// 513 for more header lines than we take, 400 naming the problem otherwise. Only the
    /// lines a response copies are kept, so stack storage does (no allocation per junk message).
    fn answer_unparsable(&mut self, datagram: &[u8], error: Error, source: Peer) {
        let mut headers = [crate::sip::Header::EMPTY; MAX_HEADERS];
        let Some(msg) = parse_for_reply(datagram, &mut headers) else {
            return self.record(Outcome::DroppedUnparsable);
        };
        let (code, reason) = match error {
            Error::TooManyHeaders => (513, "Message Too Large".to_string()),
            e => (400, format!("Bad Request ({e})")),
        };
        self.reply_stateless(&msg, source, code, &reason, &[]);
    }

    /// Acts on the transaction layer's events. `current` is the message just handed to it, as
    /// parsed and validated, with its datagram: the message events (request, ACK, response)
    /// only ever come from that message, so its parse is reused rather than repeated and the
    /// events carry no datagram of their own; `None` after a timer, which raises only Timeout
    /// and Terminated.
    fn drain_events(
        &mut self,
        now: Instant,
        current: Option<(&Message<'_, '_>, &Validated<'_>, &Bytes)>,
    ) {
        while let Some(event) = self.txs.poll_event() {
            match (event, current) {
                (Event::Request { key, source }, Some((msg, read, datagram))) => {
                    self.on_request(key, msg, read, datagram, source, now)
                }
                (Event::Ack { source }, Some((msg, read, datagram))) => {
                    self.count_side(source);
                    self.dialogs.handle(msg, &read.dialog, now);
                    self.forward_ack(msg, read, datagram, source, now)
                }
                (Event::Response { key }, Some((msg, read, _))) => {
                    self.relay_response(&key, msg, read, now)
                }
                (Event::StrayResponse { .. }, Some((msg, _, _))) => self.relay_stray(msg),
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

    fn branch(&mut self, msg: &Message<'_, '_>, read: &Validated<'_>) -> Branch {
        self.next_branch += 1;
        Branch {
            worker: self.cfg.worker,
            seq: self.next_branch,
            loop_hash: loop_hash(msg, &read.dialog),
        }
    }

    /// Inside: a backend's address or a `trusted` source.
    fn is_inside(&self, ip: IpAddr) -> bool {
        self.cfg
            .policy
            .is_inside(ip, self.pool.backends.iter().map(|b| b.address.ip()))
    }

    fn side_of(&self, ip: IpAddr) -> Side {
        if self.is_inside(ip) {
            Side::Inside
        } else {
            Side::Outside
        }
    }

    /// The side of the message being handled's source: by its address, or inside by its
    /// certificate.
    fn source_side(&self, source: Peer) -> Side {
        if self.source_inside {
            Side::Inside
        } else {
            self.side_of(source.addr.ip())
        }
    }

    /// The side of a new request's source, counted.
    fn count_side(&mut self, source: Peer) -> Side {
        let side = self.source_side(source);
        match side {
            Side::Outside => self.stats.from_outside += 1,
            Side::Inside => self.stats.from_inside += 1,
        }
        side
    }

    fn backend_at(&self, addr: SocketAddr) -> Option<u32> {
        self.pool
            .backends
            .iter()
            .position(|b| b.address == addr)
            .map(|i| i as u32)
    }

    fn on_request(
        &mut self,
        key: Key,
        msg: &Message<'_, '_>,
        read: &Validated<'_>,
        datagram: &Bytes,
        source: Peer,
        now: Instant,
    ) {
        let Some(method) = msg.method() else { return };
        if method == Method::Cancel {
            self.on_cancel(&key, msg, read, now);
            return;
        }
        if method == Method::Invite {
            let trying = build::response(msg, 100, "Trying", None, &[]);
            let _ = self.txs.respond(&key, 100, trying, now);
        }
        let side = self.count_side(source);
        let dialog = self.dialogs.handle(msg, &read.dialog, now);
        self.route_and_forward(key, msg, read, datagram, source, side, dialog, now);
    }

    /// Routes a request (§16.4–§16.6) and forwards it through a client transaction, or
    /// answers it. `dialog`: its dialog, as the table just updated it (`None` when re-routed
    /// after DNS: the table saw it the first time).
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's context, borrowed from the caller's parse; a struct would copy it"
    )]
    fn route_and_forward(
        &mut self,
        key: Key,
        msg: &Message<'_, '_>,
        read: &Validated<'_>,
        datagram: &Bytes,
        source: Peer,
        side: Side,
        dialog: Option<DialogRef>,
        now: Instant,
    ) {
        let Some(method) = msg.method() else { return };
        let route = match route::read(msg, read, &self.cfg.identity, &self.cfg.flow_key) {
            Ok(r) => r,
            Err(e) => return self.reply(&key, msg, 400, &format!("Bad Request ({e})"), &[], now),
        };
        let target = target::decide(msg, &route, side, &self.cfg.policy, &self.cfg.identity);
        let parked = || Parked {
            server: Some(key),
            datagram: datagram.clone(),
            source,
            side,
        };
        let dest = match self.destination(msg, read, target, source, dialog, parked, now) {
            Routed::To(d) => d,
            Routed::Parked => return,
            Routed::Answer(code, reason, extra) => {
                let extra: Vec<&[u8]> = extra.iter().map(|b| &b[..]).collect();
                return self.reply(&key, msg, code, reason, &extra, now);
            }
            Routed::Refused(r) => {
                self.stats.refused[r as usize] += 1;
                let (code, reason) = r.response();
                return self.reply(&key, msg, code, reason, &[], now);
            }
        };
        // A To tag: a dialog's request (RFC 3261 §12.2).
        let in_dialog = read.dialog.to_tag.flatten().is_some();
        let creates_dialog = match method {
            Method::Invite | Method::Subscribe | Method::Refer => !in_dialog,
            // A NOTIFY may create the subscription's dialog (RFC 6665 §4.1.2.4): its
            // Record-Route is how the subscriber learns the route set.
            Method::Notify => true,
            _ => false,
        };
        let mut rr = [Entry::PLAIN; 2];
        let rr_len = if self.cfg.record_route && creates_dialog {
            // One entry facing each side when they differ in side or transport (RFC 5658); an
            // outside side's carries its flow.
            rr[0] = self.entry_for(dest.side, dest.peer);
            rr[1] = self.entry_for(side, source);
            if rr[0] == rr[1] { 1 } else { 2 }
        } else {
            0
        };
        let register = method == Method::Register;
        let path = (register && side == Side::Outside && self.wants_path(msg))
            .then(|| self.entry_for(Side::Outside, source));
        let edits = Edits {
            pop_routes: route.pop_front,
            new_uri: route.new_uri,
            record_route: &rr[..rr_len],
            path,
        };
        // Formatted once: it goes into our Via and makes the client transaction's key.
        let mut text = [0u8; 64];
        let branch = self.branch(msg, read).text(&mut text);
        let forwarded = forward_request(
            msg,
            read.top_via.as_ref(),
            source.addr,
            dest.peer.transport,
            &self.cfg.identity,
            branch,
            &edits,
        );
        let sent = self
            .txs
            .send_request_known(forwarded.clone(), branch, method, dest.peer, now);
        match sent {
            Ok(client) => {
                self.record(Outcome::Forwarded);
                self.stats.routed[dest.by as usize] += 1;
                if let Some(backend) = dest.backend {
                    self.events
                        .push_back(ProxyEvent::Forwarded { backend, register });
                }
                if method == Method::Invite {
                    // Only an INVITE can be CANCELled (§9.1), and only while it is pending:
                    // the link back from its server transaction is kept for that alone.
                    self.server_links.insert(key, client);
                }
                self.links.insert(
                    client,
                    Link {
                        server: key,
                        pending: Some(Box::new(Pending {
                            original: datagram.clone(),
                            forwarded,
                            dest: dest.peer,
                            backend: dest.backend,
                            received: now,
                        })),
                    },
                );
            }
            Err(_) => self.record(Outcome::DroppedUnmatched),
        }
    }

    /// The address a [`Target`] names, or why there is none (yet).
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's context, borrowed from the caller's parse; a struct would copy it"
    )]
    fn destination(
        &mut self,
        msg: &Message<'_, '_>,
        read: &Validated<'_>,
        target: Target,
        source: Peer,
        dialog: Option<DialogRef>,
        parked: impl FnOnce() -> Parked,
        now: Instant,
    ) -> Routed {
        let address = |this: &Self, peer: Peer, by: RoutedBy, inside_only: bool| {
            let side = this.side_of(peer.addr.ip());
            if inside_only && side == Side::Outside {
                return Routed::Refused(Refusal::Relay);
            }
            Routed::To(Dest {
                peer,
                backend: this.backend_at(peer.addr),
                by,
                side,
            })
        };
        match target {
            Target::Flow(f) => Routed::To(Dest {
                peer: f.peer(),
                backend: None,
                by: RoutedBy::Flow,
                side: Side::Outside,
            }),
            Target::Pool { key } => match self.pool.pick(match key {
                PoolKey::CallId => self.call_hash,
                PoolKey::Aor(hash) => hash,
            }) {
                Some(i) => {
                    if msg.method() == Some(Method::Invite)
                        && let Some(r) = dialog
                    {
                        self.dialogs.set_route(r, i as u32, source);
                    }
                    let b = &self.pool.backends[i];
                    Routed::To(Dest {
                        peer: Peer::new(b.transport, b.address),
                        backend: Some(i as u32),
                        by: RoutedBy::Pool,
                        side: Side::Inside,
                    })
                }
                None => {
                    self.stats.no_backend += 1;
                    let retry = self.retry_after.clone(); // a reference count, not a copy
                    Routed::Answer(503, "Service Unavailable", Some(retry))
                }
            },
            Target::Addr {
                addr,
                transport,
                by,
                inside_only,
            } => address(self, Peer::new(transport, addr), by, inside_only),
            Target::Resolve {
                name,
                transport,
                by,
                inside_only,
            } => {
                match self.resolver.lookup(&name, self.call_hash, now) {
                    Lookup::Addr(a) => {
                        if transport == Transport::Tls {
                            if self.tls_names.len() >= MAX_TLS_NAMES {
                                self.tls_names.clear();
                            }
                            self.tls_names.insert(a, name.host.as_str().into());
                        }
                        address(self, Peer::new(transport, a), by, inside_only)
                    }
                    Lookup::NoSuchName => Routed::Refused(Refusal::UnknownDomain),
                    Lookup::Failed => {
                        self.stats.dns_failures += 1;
                        let retry = self.retry_after.clone();
                        Routed::Answer(503, "Service Unavailable (DNS)", Some(retry))
                    }
                    Lookup::Pending if self.parked_count < MAX_PARKED => {
                        self.parked.entry(name).or_default().push(parked());
                        self.parked_count += 1;
                        self.settled = true; // its outcome comes when the name resolves
                        Routed::Parked
                    }
                    Lookup::Pending => {
                        self.stats.dns_failures += 1;
                        let retry = self.retry_after.clone();
                        Routed::Answer(503, "Service Unavailable (DNS busy)", Some(retry))
                    }
                }
            }
            Target::Dialog => {
                let known = dialog
                    .or_else(|| self.dialogs.handle(msg, &read.dialog, now))
                    .and_then(|r| self.dialogs.get(r))
                    .and_then(|s| {
                        let b = self.pool.backends.get(s.backend as usize)?;
                        Some((s.backend, Peer::new(b.transport, b.address), s.caller))
                    });
                match known {
                    Some((_, backend, Some(caller))) if source.addr == backend.addr => {
                        Routed::To(Dest {
                            peer: caller,
                            backend: None,
                            by: RoutedBy::Dialog,
                            side: self.side_of(caller.addr.ip()),
                        })
                    }
                    Some((b, backend, _)) => Routed::To(Dest {
                        peer: backend,
                        backend: Some(b),
                        by: RoutedBy::Dialog,
                        side: Side::Inside,
                    }),
                    None => Routed::Answer(481, "Call/Transaction Does Not Exist", None),
                }
            }
            Target::Local => Routed::Answer(200, "OK", None),
            Target::Refuse(r) => Routed::Refused(r),
        }
    }

    /// Our Record-Route or Path entry facing `side` at `peer`, for its transport: an outside
    /// side's carries its flow.
    fn entry_for(&self, side: Side, peer: Peer) -> Entry {
        let flow = match side {
            Side::Inside => None,
            Side::Outside => Some(self.cfg.flow_key.encode(&Flow {
                transport: peer.transport,
                peer: peer.addr,
                local_port: self.cfg.identity.port_for(peer.transport),
            })),
        };
        Entry {
            flow,
            transport: peer.transport,
        }
    }

    /// RFC 3327 §5: add Path per the policy.
    fn wants_path(&self, msg: &Message<'_, '_>) -> bool {
        match self.cfg.path {
            PathPolicy::Always => true,
            PathPolicy::Off => false,
            PathPolicy::IfSupported => msg
                .headers_named(HeaderName::Supported)
                .flat_map(|h| CommaList::new(h.value))
                .any(|t| t.eq_ignore_ascii_case(b"path")),
        }
    }

    /// §16.10: answer the CANCEL, and send one along the INVITE's branch while the INVITE is
    /// pending. After its final response there is nothing left to cancel (§9.1): the CANCEL is
    /// answered and goes no further.
    fn on_cancel(&mut self, key: &Key, msg: &Message<'_, '_>, read: &Validated<'_>, now: Instant) {
        let Some(invite) = key.cancelled_invite().filter(|k| self.txs.contains(k)) else {
            return self.reply(key, msg, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        let pending = self
            .server_links
            .get(&invite)
            .and_then(|c| self.links.get(c))
            .and_then(|link| link.pending.as_ref())
            .map(|p| (p.forwarded.clone(), p.dest));
        self.dialogs.handle(msg, &read.dialog, now);
        let ok = build::response(msg, 200, "OK", None, &[]);
        self.record(Outcome::Answered2xx);
        let _ = self.txs.respond(key, 200, ok, now);
        if let Some((forwarded, dest)) = pending
            && let Some(cancel) = with_message(&forwarded, build::cancel_for)
        {
            let _ = self.txs.send_request(cancel, dest, now);
        } else if let Some(parked) = self.unpark(&invite) {
            // Still waiting for DNS: nothing went out to cancel; the INVITE ends here (§9.2).
            parse_any(&parked.datagram, |parsed| {
                if let Ok(Parsed::Message(m)) = parsed {
                    self.reply(&invite, &m, 487, "Request Terminated", &[], now);
                }
            });
        }
    }

    /// Takes the request of server transaction `key` out of the DNS wait, if it is there.
    fn unpark(&mut self, key: &Key) -> Option<Parked> {
        let (name, at) = self.parked.iter().find_map(|(name, list)| {
            let at = list.iter().position(|p| p.server == Some(*key))?;
            Some((name.clone(), at))
        })?;
        let list = self.parked.get_mut(&name)?;
        let parked = list.swap_remove(at);
        if list.is_empty() {
            self.parked.remove(&name);
        }
        self.parked_count -= 1;
        Some(parked)
    }

    fn relay_response(
        &mut self,
        client: &Key,
        msg: &Message<'_, '_>,
        read: &Validated<'_>,
        now: Instant,
    ) {
        self.dialogs.handle(msg, &read.dialog, now);
        let Some(link) = self.links.get_mut(client) else {
            return self.record(Outcome::Absorbed); // the answers to our own CANCEL
        };
        let code = msg.status().unwrap_or(0);
        if code == 100 {
            return self.record(Outcome::Absorbed); // hop by hop (§16.7 step 5)
        }
        let server = link.server;
        // The first final response ends what a pending request keeps, and every link but
        // an INVITE's answered 2xx (see `Link`).
        if code >= 200 {
            if let Some(p) = link.pending.take() {
                self.server_links.remove(&server);
                if let Some(backend) = p.backend {
                    self.events.push_back(ProxyEvent::Completed {
                        backend,
                        status: code,
                        elapsed: now.saturating_duration_since(p.received),
                    });
                }
            }
            if client.method != MethodClass::Invite || code >= 300 {
                self.links.remove(client);
            }
        }
        self.record(Outcome::Relayed);
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
            let transport = Transport::from_via(next.transport).unwrap_or_default();
            Some(Transmit {
                dest: Peer::new(transport, SocketAddr::new(ip, port)),
                payload: strip_top_via(m),
            })
        })();
        match relay {
            Some(t) => {
                self.record(Outcome::Relayed);
                self.out.push_back(t);
            }
            None => self.record(Outcome::DroppedUnroutable),
        }
    }

    /// ACK for a 2xx: stateless, routed like any in-dialog request (§16.11 note; RFC 6026).
    /// It cannot be answered: what would be refused is dropped.
    fn forward_ack(
        &mut self,
        m: &Message<'_, '_>,
        read: &Validated<'_>,
        datagram: &Bytes,
        source: Peer,
        now: Instant,
    ) {
        let side = self.source_side(source);
        let Ok(route) = route::read(m, read, &self.cfg.identity, &self.cfg.flow_key) else {
            return self.record(Outcome::DroppedMalformed);
        };
        let target = target::decide(m, &route, side, &self.cfg.policy, &self.cfg.identity);
        let parked = || Parked {
            server: None,
            datagram: datagram.clone(), // a reference count, and only when parked
            source,
            side,
        };
        let dest = match self.destination(m, read, target, source, None, parked, now) {
            Routed::To(d) => d,
            Routed::Parked => return,
            Routed::Answer(..) => return self.record(Outcome::DroppedUnroutable),
            Routed::Refused(r) => {
                self.stats.refused[r as usize] += 1;
                return self.record(Outcome::DroppedUnroutable);
            }
        };
        let mut text = [0u8; 64];
        let branch = self.branch(m, read).text(&mut text);
        let edits = Edits {
            pop_routes: route.pop_front,
            new_uri: route.new_uri,
            ..Edits::default()
        };
        self.record(Outcome::Forwarded);
        self.stats.routed[dest.by as usize] += 1;
        let payload = forward_request(
            m,
            read.top_via.as_ref(),
            source.addr,
            dest.peer.transport,
            &self.cfg.identity,
            branch,
            &edits,
        );
        self.out.push_back(Transmit {
            dest: dest.peer,
            payload,
        });
    }

    /// The hop never answered (timer B or F): 408 upstream unless a final went up already.
    fn on_timeout(&mut self, client: &Key, now: Instant) {
        let Some(link) = self.links.get(client) else {
            return;
        };
        let Some(pending) = &link.pending else {
            return;
        };
        let (server, original) = (link.server, pending.original.clone());
        if let Some(backend) = pending.backend {
            self.events.push_back(ProxyEvent::Completed {
                backend,
                status: 408,
                elapsed: now.saturating_duration_since(pending.received),
            });
        }
        if let Some(resp) = with_message(&original, |m| {
            self.local_tag_response(m, 408, "Request Timeout", &[])
        }) {
            self.stats.timer_replies += 1;
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
        self.record(Outcome::answered(code));
        let resp = self.local_tag_response(msg, code, reason, extra);
        let _ = self.txs.respond(key, code, resp, now);
    }

    /// A response without a transaction: for requests rejected before matching (400, 416…).
    fn reply_stateless(
        &mut self,
        msg: &Message<'_, '_>,
        dest: Peer,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
    ) {
        self.record(Outcome::answered(code));
        let payload = self.local_tag_response(msg, code, reason, extra);
        self.out.push_back(Transmit { dest, payload });
    }
}

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod tests;
