//! One connection's task: reads the stream into its [`Framer`], passes each whole message to
//! the owning worker, answers keep-alive pings, writes what the worker queued for the peer, and
//! closes the connection when it idles, stalls in the middle of a message (slowloris), breaks
//! the framing limits, or the worker lets it go.

use std::time::Duration;

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::framer::{Frame, FrameError, FrameLimits, Framer};
use crate::sip::peer::Peer;

/// How a connection's life is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    pub limits: FrameLimits,
    /// Closed after this long without a byte either way.
    pub idle: Duration,
    /// A message must be complete this long after its first byte, and the first message this
    /// long after the connection opened (a client trickling a byte a second is closed).
    pub message_timeout: Duration,
    /// Messages queued for the peer at most; beyond, new ones are dropped (a peer that does not
    /// read cannot make us hold more).
    pub write_queue: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            limits: FrameLimits::default(),
            idle: Duration::from_secs(300),
            message_timeout: Duration::from_secs(10),
            write_queue: 256,
        }
    }
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The peer closed it (or reset it).
    Peer,
    Idle,
    /// A message (or the first one) took longer than `message_timeout`.
    Slow,
    HeaderTooLarge,
    MessageTooLarge,
    /// No or a bad Content-Length: the stream cannot be framed.
    BadFraming,
    /// A read or write failed.
    Error,
    /// The daemon is stopping, or the worker let the connection go.
    Shutdown,
    /// The TLS handshake failed or took too long.
    Handshake,
    /// Our connection to the peer could not be made.
    ConnectFailed,
}

impl Close {
    pub const ALL: [Close; 10] = [
        Close::Peer,
        Close::Idle,
        Close::Slow,
        Close::HeaderTooLarge,
        Close::MessageTooLarge,
        Close::BadFraming,
        Close::Error,
        Close::Shutdown,
        Close::Handshake,
        Close::ConnectFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Close::Peer => "peer",
            Close::Idle => "idle",
            Close::Slow => "slow",
            Close::HeaderTooLarge => "header_too_large",
            Close::MessageTooLarge => "message_too_large",
            Close::BadFraming => "bad_framing",
            Close::Error => "error",
            Close::Shutdown => "shutdown",
            Close::Handshake => "tls_handshake",
            Close::ConnectFailed => "connect_failed",
        }
    }
}

impl From<FrameError> for Close {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::HeaderTooLarge(_) => Close::HeaderTooLarge,
            FrameError::MessageTooLarge(_) => Close::MessageTooLarge,
            FrameError::NoContentLength | FrameError::BadContentLength => Close::BadFraming,
        }
    }
}

/// What a connection tells its worker.
#[derive(Debug)]
pub enum FromConnection {
    Message {
        peer: Peer,
        message: Bytes,
    },
    /// The client's certificate carries a name of `tls.trusted_names`: the peer is inside.
    Trusted {
        peer: Peer,
    },
    /// A TLS handshake failed (`reason` as in [`super::tls::failure_reason`], or `timeout`);
    /// `Closed` follows.
    HandshakeFailed {
        peer: Peer,
        reason: &'static str,
    },
    Closed {
        peer: Peer,
        reason: Close,
    },
}

/// What a connection's task works with: who is at the other end, the limits, where to report,
/// what to write, and when to stop.
pub struct Task {
    pub peer: Peer,
    pub settings: StreamSettings,
    pub to_worker: mpsc::Sender<FromConnection>,
    pub outgoing: mpsc::Receiver<Bytes>,
    pub cancel: CancellationToken,
}

impl Task {
    async fn report(&self, message: FromConnection) {
        let _ = self.to_worker.send(message).await;
    }

    /// Reports how the connection ended (after a failed handshake, its reason first). The write
    /// queue goes first, so the worker finds this connection's queue closed when the report
    /// comes and forgets it (a newer connection from the same address keeps its place).
    async fn closed(self, reason: Close, handshake: Option<&'static str>) {
        let (peer, to_worker) = (self.peer, self.to_worker.clone());
        drop(self);
        if let Some(reason) = handshake {
            let _ = to_worker
                .send(FromConnection::HandshakeFailed { peer, reason })
                .await;
        }
        let _ = to_worker
            .send(FromConnection::Closed { peer, reason })
            .await;
    }

    /// A handshake failed (`Some(reason)`) or was cancelled (`None`).
    async fn handshake_failed(self, failed: Option<&'static str>) {
        let reason = if failed.is_some() {
            Close::Handshake
        } else {
            Close::Shutdown
        };
        self.closed(reason, failed).await;
    }
}

/// Connects to the task's peer within `timeout` (TCP, then the TLS handshake as a client when
/// `tls` is given), then runs the connection as [`serve`] does.
pub async fn connect(
    task: Task,
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    timeout: Duration,
) {
    let connected = tokio::select! {
        _ = task.cancel.cancelled() => None,
        r = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(task.peer.addr)) => {
            r.ok().and_then(Result::ok)
        }
    };
    let Some(tcp) = connected else {
        return task.closed(Close::ConnectFailed, None).await;
    };
    let _ = tcp.set_nodelay(true);
    let Some((config, name)) = tls else {
        return serve(tcp, task, true).await;
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    match handshake(connector.connect(name, tcp), timeout, &task.cancel).await {
        Ok(tls) => serve(tls, task, true).await,
        Err(failed) => task.handshake_failed(failed).await,
    }
}

/// A TLS handshake (either side) within `timeout`: the stream, or why not (`None` when
/// cancelled).
async fn handshake<S>(
    shake: impl Future<Output = std::io::Result<S>>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<S, Option<&'static str>> {
    tokio::select! {
        _ = cancel.cancelled() => Err(None),
        r = tokio::time::timeout(timeout, shake) => match r {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(Some(super::tls::failure_reason(&e))),
            Err(_) => Err(Some("timeout")),
        },
    }
}

/// Runs the TLS handshake (server side) on a new connection within `timeout`, then the
/// connection as [`serve`] does.
pub async fn serve_tls(
    tcp: tokio::net::TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    timeout: Duration,
    trusted_names: std::sync::Arc<[rustls_pki_types::ServerName<'static>]>,
    task: Task,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match handshake(acceptor.accept(tcp), timeout, &task.cancel).await {
        Ok(tls) => {
            if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                let trusted = super::tls::names_any(cert, &trusted_names);
                log::debug!(
                    "TLS from {}: client certificate sha256 {}{}",
                    task.peer,
                    super::tls::fingerprint(cert),
                    if trusted { ", trusted by name" } else { "" }
                );
                if trusted {
                    task.report(FromConnection::Trusted { peer: task.peer })
                        .await;
                }
            }
            serve(tls, task, false).await;
        }
        Err(failed) => task.handshake_failed(failed).await,
    }
}

/// Runs one connection until it closes, then says why. `ours`: we opened it (to a backend), so
/// the peer owes us no first message.
pub async fn serve<S>(stream: S, mut task: Task, ours: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = run(stream, &mut task, ours).await;
    task.closed(reason, None).await;
}

async fn run<S>(stream: S, task: &mut Task, ours: bool) -> Close
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (peer, settings) = (task.peer, task.settings);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new(settings.limits);
    let opened = Instant::now();
    let mut last_activity = opened;
    // When the message now being received started (the opening of a connection a client made
    // counts as the start of its first one).
    let mut message_started = (!ours).then_some(opened);
    loop {
        let idle_at = last_activity + settings.idle;
        let slow_at = message_started.map(|t| t + settings.message_timeout);
        let (deadline, on_deadline) = match slow_at {
            Some(s) if s < idle_at => (s, Close::Slow),
            _ => (idle_at, Close::Idle),
        };
        tokio::select! {
            _ = task.cancel.cancelled() => return Close::Shutdown,
            _ = tokio::time::sleep_until(deadline) => return on_deadline,
            out = task.outgoing.recv() => match out {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return Close::Error;
                    }
                    last_activity = Instant::now();
                }
                None => return Close::Shutdown,
            },
            r = rd.read_buf(framer.buffer()) => match r {
                Ok(0) => return Close::Peer,
                // A TLS peer that closes without close_notify: closed all the same.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Close::Peer,
                Err(_) => return Close::Error,
                Ok(_) => {
                    let now = Instant::now();
                    last_activity = now;
                    message_started.get_or_insert(now);
                    let mut framed = false;
                    loop {
                        match framer.next_frame() {
                            Ok(Some(Frame::Message(message))) => {
                                framed = true;
                                if task
                                    .to_worker
                                    .send(FromConnection::Message { peer, message })
                                    .await
                                    .is_err()
                                {
                                    return Close::Shutdown;
                                }
                            }
                            Ok(Some(Frame::Ping)) => {
                                // RFC 5626 §4.4.1: the pong is a single CRLF.
                                if wr.write_all(b"\r\n").await.is_err() {
                                    return Close::Error;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        }
                    }
                    if framer.buffered() == 0 {
                        message_started = None;
                    } else if framed {
                        message_started = Some(now); // the next message began in this read
                    }
                }
            },
        }
    }
}
