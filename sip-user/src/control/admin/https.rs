//! HTTPS for the admin API (`admin.certificate` and `admin.key`): an axum [`Listener`] whose
//! connections are TLS streams, so bearer tokens never cross a network in the clear.
//!
//! axum serves any `Listener`; this one is fed by a task that accepts TCP connections and
//! runs each handshake in its own task (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]), so a client that stalls its handshake holds up nobody else. The
//! rustls settings are made like the SIP listeners' (`transport::tls`): TLS 1.3, ring; a
//! reload replaces them (a renewed certificate), and each handshake takes the latest.
//! (Written here rather than taken from axum-server: this adapter is the whole difference, and
//! it reuses the daemon's own rustls settings and certificate reloads.)

use std::{io, net::SocketAddr, sync::Arc};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::transport::tls::HANDSHAKE_TIMEOUT;

/// Handshakes in progress at most; more clients wait in the kernel's accept queue.
pub const MAX_HANDSHAKES: usize = 64;

/// Connections that finished their handshake, waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// A TCP listener whose connections axum gets after their TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (until `cancel`), handshaking with the latest `config`.
    pub fn new(
        tcp: TcpListener,
        config: watch::Receiver<Arc<ServerConfig>>,
        cancel: CancellationToken,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(tcp, config, tx, cancel));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    log::warn!("admin API: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => log::info!("admin API: TLS handshake with {peer} failed: {e}"),
                Err(_) => log::info!("admin API: TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The address of an admin API client, over plain HTTP or HTTPS (axum's own `SocketAddr`
/// connect info covers only its TCP listener).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
