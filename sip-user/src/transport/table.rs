//! One worker's connections: the write queue of each by peer, how many each source IP holds,
//! and the tasks that run them. Only the owning worker touches its table (no lock); other
//! workers hand it what must go out on one of its connections.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use rustls_pki_types::ServerName;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::stream::{FromConnection, StreamSettings, Task, connect, serve, serve_tls};
use crate::sip::{
    peer::{Peer, Transport},
    shrink::shrink,
};

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("its source holds connections.per_source connections already")]
    PerSource,
    #[error("the socket could not join the worker's runtime")]
    Runtime,
    #[error("no TLS certificate is loaded, or TLS toward it is not available")]
    NoTls,
    #[error("UDP has no connections")]
    NotAStream,
}

/// Why a message could not go out on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no connection to that peer")]
    NoConnection,
    #[error("the peer does not read: its write queue is full")]
    QueueFull,
}

/// The connections a worker owns.
#[derive(Debug)]
pub struct Connections {
    by_peer: HashMap<Peer, mpsc::Sender<Bytes>>,
    per_ip: HashMap<IpAddr, u32>,
    max_per_source: u32,
    settings: StreamSettings,
    tls: TlsSetup,
    to_worker: mpsc::Sender<FromConnection>,
    cancel: CancellationToken,
}

/// TLS for a worker's connections: the listeners' server config (replaced on SIGHUP), the
/// client config for connections we open (servers verified against `tls.server_ca` or the
/// system's roots), and how long a handshake (and a connect) may take.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub server: watch::Receiver<Option<Arc<rustls::ServerConfig>>>,
    pub client: Option<Arc<rustls::ClientConfig>>,
    pub handshake_timeout: Duration,
    /// Clients whose certificate carries one of these names are inside (`tls.trusted_names`).
    pub trusted_names: Arc<[ServerName<'static>]>,
}

impl TlsSetup {
    /// No TLS: connections on a TLS listener are refused, none are opened.
    pub fn none() -> Self {
        TlsSetup {
            server: watch::channel(None).1,
            client: None,
            handshake_timeout: super::tls::HANDSHAKE_TIMEOUT,
            trusted_names: Arc::new([]),
        }
    }
}

impl Connections {
    /// A table whose connection tasks report to `to_worker` and stop with `cancel`.
    pub fn new(
        settings: StreamSettings,
        max_per_source: u32,
        tls: TlsSetup,
        to_worker: mpsc::Sender<FromConnection>,
        cancel: CancellationToken,
    ) -> Self {
        Connections {
            by_peer: HashMap::new(),
            per_ip: HashMap::new(),
            max_per_source,
            settings,
            tls,
            to_worker,
            cancel,
        }
    }

    /// Takes a connection accepted from `peer` (TCP, or TLS still to shake hands) and starts
    /// its task on this runtime.
    pub fn adopt(&mut self, stream: std::net::TcpStream, peer: Peer) -> Result<(), Refused> {
        let count = self.per_ip.get(&peer.addr.ip()).copied().unwrap_or(0);
        if count >= self.max_per_source {
            return Err(Refused::PerSource); // dropping the stream closes it
        }
        let tls = match peer.transport {
            Transport::Tls => Some(self.tls.server.borrow().clone().ok_or(Refused::NoTls)?),
            _ => None,
        };
        let _ = stream.set_nodelay(true);
        let stream = tokio::net::TcpStream::from_std(stream).map_err(|_| Refused::Runtime)?;
        let (tx, rx) = mpsc::channel(self.settings.write_queue);
        if let Some(old) = self.by_peer.insert(peer, tx) {
            // The same address and port again: the old connection is gone (its close is on
            // its way); the new one takes its place and its count.
            drop(old);
        } else {
            *self.per_ip.entry(peer.addr.ip()).or_default() += 1;
        }
        let task = self.task(peer, rx);
        match tls {
            Some(config) => tokio::spawn(serve_tls(
                stream,
                config,
                self.tls.handshake_timeout,
                self.tls.trusted_names.clone(),
                task,
            )),
            None => tokio::spawn(serve(stream, task, false)),
        };
        Ok(())
    }

    /// Opens a connection to `peer` (a backend, a route with `transport=tcp` or `tls`),
    /// registered at once so what is sent meanwhile waits in its queue. Over TLS the server's
    /// certificate must name `server_name` (its IP address when `None`). A UA's flow whose
    /// connection is gone gets a connection attempt too, which its NAT refuses (counted as
    /// `connect_failed`): RFC 5626 §5.3's 430 Flow Failed is not answered yet.
    pub fn connect(&mut self, peer: Peer, server_name: Option<&str>) -> Result<(), Refused> {
        let tls = match peer.transport {
            Transport::Udp => return Err(Refused::NotAStream),
            Transport::Tcp => None,
            Transport::Tls => {
                let config = self.tls.client.clone().ok_or(Refused::NoTls)?;
                let name = match server_name {
                    Some(n) => ServerName::try_from(n.to_string()).map_err(|_| Refused::NoTls)?,
                    None => ServerName::IpAddress(peer.addr.ip().into()),
                };
                Some((config, name))
            }
        };
        let (tx, rx) = mpsc::channel(self.settings.write_queue);
        if self.by_peer.insert(peer, tx).is_none() {
            *self.per_ip.entry(peer.addr.ip()).or_default() += 1;
        }
        tokio::spawn(connect(
            self.task(peer, rx),
            tls,
            self.tls.handshake_timeout,
        ));
        Ok(())
    }

    fn task(&self, peer: Peer, outgoing: mpsc::Receiver<Bytes>) -> Task {
        Task {
            peer,
            settings: self.settings,
            to_worker: self.to_worker.clone(),
            outgoing,
            cancel: self.cancel.child_token(),
        }
    }

    /// Queues `payload` on the connection to `peer`.
    pub fn send(&self, peer: &Peer, payload: Bytes) -> Result<(), SendError> {
        let tx = self.by_peer.get(peer).ok_or(SendError::NoConnection)?;
        tx.try_send(payload).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => SendError::NoConnection,
        })
    }

    /// The connection's task ended: forget it (unless a newer connection from the same address
    /// and port took its place, whose queue is still open).
    pub fn closed(&mut self, peer: &Peer) {
        let still_open = self.by_peer.get(peer).is_some_and(|tx| !tx.is_closed());
        if still_open {
            return;
        }
        if self.by_peer.remove(peer).is_some() {
            let ip = peer.addr.ip();
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Open connections by transport ([`crate::sip::peer::Transport::index`] order).
    pub fn open_by_transport(&self) -> [usize; 3] {
        let mut open = [0; 3];
        for peer in self.by_peer.keys() {
            open[peer.transport.index()] += 1;
        }
        open
    }

    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Gives back the memory of a burst of connections that has passed.
    pub fn shrink(&mut self) -> bool {
        shrink(&mut self.by_peer) | shrink(&mut self.per_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::stream::Close;

    /// A connection that never came up (here: refused on loopback) is forgotten with its count,
    /// so failures from one address do not use up its `per_source`.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_connection_is_forgotten_with_its_count() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peer = Peer::new(Transport::Tcp, format!("127.0.0.1:{port}").parse().unwrap());
        let (tx, mut rx) = mpsc::channel(8);
        let mut conns = Connections::new(
            StreamSettings::default(),
            1,
            TlsSetup::none(),
            tx,
            CancellationToken::new(),
        );
        for _ in 0..3 {
            conns.connect(peer, None).unwrap();
            assert_eq!(conns.len(), 1);
            let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a report within 5 s");
            match report {
                Some(FromConnection::Closed { peer: p, reason }) => {
                    assert_eq!((p, reason), (peer, Close::ConnectFailed));
                    conns.closed(&p);
                }
                other => panic!("{other:?}"),
            }
            assert!(conns.is_empty() && conns.per_ip.is_empty(), "forgotten");
        }
    }
}
