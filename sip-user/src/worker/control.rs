//! What a worker's loop waits for besides its socket and its timer: shutdown, a new backend
//! pool, hand-overs from other workers and messages from its own connections, merged into one
//! stream.
//!
//! Why merged: each of them is rare next to datagrams, yet as four branches of the loop's
//! `select!` all four were polled on every pass that found the socket empty, and each poll of
//! a pending one re-registered the task's waker with its source (a lock or atomic
//! read-modify-writes each). That cost ~4,300 instructions a call at 50 calls/s
//! (`bench-e2e --daemon-instructions` with the three besides shutdown switched off: 144,112 →
//! 139,788). `SelectAll` (futures-util) polls only the sources that woke it; a pass where none
//! did checks its ready queue and stops there.

use std::sync::Arc;

use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{backend::Pool, transport::stream::FromConnection, worker::Handoff};

/// One thing that happened.
#[derive(Debug)]
pub enum Control {
    Shutdown,
    /// The backend pool changed (health or reload).
    Pool(Arc<Pool>),
    Handoff(Handoff),
    Connection(FromConnection),
}

/// The merged sources, and a way to tell whether either queue holds something.
pub struct Controls {
    sources: SelectAll<BoxStream<'static, Control>>,
    /// Senders of the two queues, kept to read their fill (`capacity` is an atomic load; the
    /// receivers live inside the merged stream): the loop lets queued hand-overs and stream
    /// messages go before datagrams.
    inbox: mpsc::Sender<Handoff>,
    from_connections: mpsc::Sender<FromConnection>,
}

impl Controls {
    /// `pool` must have been read (`borrow_and_update`): only later changes come out. A source
    /// that ends (the pool's keeper gone, at shutdown) is not polled again.
    pub fn new(
        cancel: CancellationToken,
        pool: watch::Receiver<Arc<Pool>>,
        (inbox_tx, mut inbox): (mpsc::Sender<Handoff>, mpsc::Receiver<Handoff>),
        (connections_tx, mut from_connections): (
            mpsc::Sender<FromConnection>,
            mpsc::Receiver<FromConnection>,
        ),
    ) -> Self {
        let mut sources = SelectAll::new();
        sources.push(
            stream::once(cancel.cancelled_owned())
                .map(|()| Control::Shutdown)
                .boxed(),
        );
        sources.push(
            stream::unfold(pool, |mut rx| async move {
                rx.changed().await.ok()?;
                let pool = rx.borrow_and_update().clone();
                Some((Control::Pool(pool), rx))
            })
            .boxed(),
        );
        sources.push(
            stream::poll_fn(move |cx| inbox.poll_recv(cx))
                .map(Control::Handoff)
                .boxed(),
        );
        sources.push(
            stream::poll_fn(move |cx| from_connections.poll_recv(cx))
                .map(Control::Connection)
                .boxed(),
        );
        Controls {
            sources,
            inbox: inbox_tx,
            from_connections: connections_tx,
        }
    }

    /// The next thing that happened; `None` once every source ended (never while shutdown is
    /// still to come).
    pub async fn next(&mut self) -> Option<Control> {
        self.sources.next().await
    }

    /// True if a hand-over or a stream message is queued.
    pub fn queued(&self) -> bool {
        self.inbox.capacity() < self.inbox.max_capacity()
            || self.from_connections.capacity() < self.from_connections.max_capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every source comes out, a queued item is seen as queued, and shutdown ends nothing else.
    #[tokio::test]
    async fn every_source_comes_out_of_the_merged_stream() {
        let cancel = CancellationToken::new();
        let (pool_tx, pool_rx) = watch::channel(Arc::new(Pool::default()));
        let (inbox_tx, inbox_rx) = mpsc::channel(4);
        let (conn_tx, conn_rx) = mpsc::channel(4);
        let mut controls = Controls::new(
            cancel.clone(),
            pool_rx,
            (inbox_tx.clone(), inbox_rx),
            (conn_tx.clone(), conn_rx),
        );
        async fn next(c: &mut Controls) -> Option<Control> {
            tokio::time::timeout(Duration::from_secs(2), c.next())
                .await
                .expect("an item within 2 s")
        }
        assert!(!controls.queued());
        let peer = crate::sip::peer::Peer::udp("192.0.2.1:5060".parse().unwrap());
        inbox_tx
            .send(Handoff::Message {
                message: bytes::Bytes::from_static(b"x"),
                source: peer,
                inside: false,
            })
            .await
            .unwrap();
        assert!(controls.queued());
        assert!(matches!(
            next(&mut controls).await,
            Some(Control::Handoff(Handoff::Message { .. }))
        ));
        assert!(!controls.queued());
        conn_tx
            .send(FromConnection::Trusted { peer })
            .await
            .unwrap();
        assert!(controls.queued());
        assert!(matches!(
            next(&mut controls).await,
            Some(Control::Connection(FromConnection::Trusted { .. }))
        ));
        pool_tx.send(Arc::new(Pool::default())).unwrap();
        assert!(matches!(next(&mut controls).await, Some(Control::Pool(_))));
        cancel.cancel();
        assert!(matches!(next(&mut controls).await, Some(Control::Shutdown)));
        // Nothing else is pending: the next poll waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), controls.next())
                .await
                .is_err()
        );
    }
}
