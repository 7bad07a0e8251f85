//! The HTTP/1.1 server both listeners run: a task per connection (with TLS, its handshake first,
//! under a time limit), request headers under a time limit, WebSocket upgrades, and a graceful
//! end. hyper is given the connection's own stream type, so that an upgraded connection can be
//! had back as that stream (see `upgrade`) instead of behind hyper's boxed one.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};

use axum::{extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_service::Service;

use crate::{tls::Tls, Relay};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the accept loop rests after a failed accept (say, out of file descriptors), so that
/// it does not spin while the condition lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` is cancelled, then lets
/// the connections finish their requests (WebSockets are closed by their own tasks).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Router,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    accept(listener, tls, Some(router), relay, shutdown).await
}

/// Serves TURN over TLS only on `listener` (`--turn-tls-port`) until `shutdown` is cancelled:
/// a connection that speaks anything else after the handshake is closed.
pub(crate) async fn serve_turn_tls(
    listener: TcpListener,
    tls: Tls,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    accept(listener, Some(tls), None, relay, shutdown).await
}

/// The accept loop of [`serve`] and [`serve_turn_tls`]; `router: None` serves TURN only.
async fn accept(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Option<Router>,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    let acceptor = match &tls {
        Some(tls) => {
            connections.spawn(tls.clone().watch(shutdown.clone()));
            let config = tls.server_config().map_err(std::io::Error::other)?;
            Some((TlsAcceptor::from(config), tls.handshake_timeout))
        }
        None => None,
    };
    let scheme = match (&router, &tls) {
        (None, _) => "TURN-over-TLS",
        (Some(_), Some(_)) => "https",
        (Some(_), None) => "http",
    };
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed on the {scheme} port");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        // No Nagle: a relayed frame leaves at once instead of waiting for the ACK of the
        // previous one (the queued frames of a busy connection still leave in one write, see
        // `connection`).
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            addr,
            router: router.clone(),
            shutdown: shutdown.clone(),
        };
        match acceptor.clone() {
            Some((acceptor, timeout)) => {
                connections.spawn(connection.serve_tls(stream, acceptor, timeout, relay.clone()))
            }
            None => connections.spawn(connection.serve(stream)),
        };
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(crate::DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "{scheme} connections still open after the drain timeout"
        );
    }
    Ok(())
}

/// One accepted connection.
struct Connection {
    addr: SocketAddr,
    /// `None` on a port for TURN only.
    router: Option<Router>,
    shutdown: CancellationToken,
}

impl Connection {
    /// The TLS handshake under its time limit, then HTTP, or TURN when the first byte is a
    /// STUN message's.
    async fn serve_tls(
        self,
        stream: TcpStream,
        acceptor: TlsAcceptor,
        timeout: Duration,
        relay: Arc<Relay>,
    ) {
        let addr = self.addr;
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    relay.metrics.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    relay.metrics.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, "TLS handshake timed out");
                    return;
                }
            },
        };
        // A STUN message starts with two zero bits (its type), HTTP with a method's capital
        // letter; ChannelData (0b01) never comes first.
        let mut stream = stream;
        let mut first = [0u8; 1];
        let read = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            read = tokio::time::timeout(HEADER_TIMEOUT, stream.read(&mut first)) => read,
        };
        if !matches!(read, Ok(Ok(1))) {
            return;
        }
        let stream = Sniffed::new(first[0], stream);
        if first[0] < 0x40 {
            if let Some(turn) = relay.turn_streams.get() {
                turn.serve(stream, addr, local).await;
            }
            return;
        }
        self.serve(stream).await;
    }

    /// HTTP/1.1 with upgrades on `stream`, until the client is done or shutdown; closed at
    /// once on a port for TURN only.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Connection {
            addr,
            router,
            shutdown,
        } = self;
        let Some(router) = router else {
            tracing::debug!(%addr, "not TURN on the TURN-over-TLS port");
            return;
        };
        // What `into_make_service_with_connect_info` does for axum's own server: the WebSocket
        // handler reads the client's address (per-address limits, logs) from the request.
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(addr));
            router.clone().call(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(crate::DRAIN_TIMEOUT, connection).await {
                    Ok(result) => result,
                    Err(_) => return,
                }
            }
        };
        if let Err(err) = result {
            tracing::debug!(%addr, %err, "connection ended with an error");
        }
    }
}

/// A stream whose first byte was read to tell STUN from HTTP, and is read again first.
#[derive(Debug)]
pub struct Sniffed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S> Sniffed<S> {
    fn new(first: u8, inner: S) -> Self {
        Self {
            first: Some(first),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(first) = self.first.take() {
                buf.put_slice(&[first]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through_inner!(Sniffed);
