//! The WebSocket upgrade, and what the socket reads through.
//!
//! axum's `WebSocketUpgrade` would do the upgrade too, but it hands over a socket that reads
//! straight into tungstenite's read buffer, which tungstenite allocates and zero-fills per
//! connection up front and keeps for the connection's life: with the 4 KiB the relay used, half
//! of an idle connection's memory. Here the socket reads through [`LazyRead`] instead, which
//! reads each time as much as is there into one buffer per thread and keeps only what
//! tungstenite has not taken yet: tungstenite's own buffer can then be small (it only sets how
//! much it takes per call, not how much is read from the kernel per system call), and an idle
//! connection holds no read buffer of its own beyond it.
//!
//! The checks and the refusals are axum 0.8's, for HTTP/1.1 (the only HTTP the relay speaks),
//! with the same statuses and texts.

use std::{
    cell::RefCell,
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use hyper::body::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::server::TlsStream;

use crate::http::Sniffed;
use tokio_tungstenite::{
    tungstenite::{
        handshake,
        protocol::{Role, WebSocketConfig},
    },
    WebSocketStream,
};

/// A relay connection's WebSocket.
pub type Socket = WebSocketStream<LazyRead<Stream>>;

/// What a WebSocket runs on: the connection's own stream, taken back from hyper after the
/// upgrade, so that every read and write goes straight to it (behind hyper's boxed upgraded
/// stream, each one went through three more layers, one of them dynamic).
#[derive(Debug)]
pub enum Stream {
    /// Plain ws.
    Tcp(TcpStream),
    /// wss (its first byte read once to tell it from TURN, see `http`).
    Tls(Box<Sniffed<TlsStream<TcpStream>>>),
    /// A stream of another kind (none today): hyper's own.
    Upgraded(TokioIo<Upgraded>),
}

impl Stream {
    /// The stream under `upgraded`, with what hyper had read of it past the request.
    fn new(upgraded: Upgraded) -> (Stream, Bytes) {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return (Stream::Tcp(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Sniffed<TlsStream<TcpStream>>>>() {
            Ok(parts) => (Stream::Tls(Box::new(parts.io.into_inner())), parts.read_buf),
            Err(upgraded) => (Stream::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

/// Calls `$call` on whichever stream `$self` holds.
macro_rules! each {
    ($self:expr, $s:ident => $call:expr) => {
        match &mut *$self {
            Stream::Tcp($s) => $call,
            Stream::Tls($s) => $call,
            Stream::Upgraded($s) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Upgraded(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// How much one system call reads at most: a few frames of the largest kind at once.
const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    /// Where every connection served by this thread reads from its socket. It is borrowed only
    /// within one `poll_read`, never across an `await`.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// A valid WebSocket upgrade request, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade: axum's status and text for it.
#[derive(Debug)]
pub struct NotAnUpgrade(StatusCode, &'static str);

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != axum::http::Method::GET {
            return Err(NotAnUpgrade(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            ));
        }
        if !header_contains(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(NotAnUpgrade(
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ));
        }
        if !header_eq(&parts.headers, header::UPGRADE, "websocket") {
            return Err(NotAnUpgrade(
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            ));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(NotAnUpgrade(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            ))?
            .clone();
        if !header_eq(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotAnUpgrade(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            ));
        }
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(NotAnUpgrade(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        ))?;
        Ok(Self { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once the connection has switched, spawns
    /// `callback` with the socket; a connection that fails to switch is dropped quietly.
    pub fn on_upgrade<C, F>(self, config: WebSocketConfig, callback: C) -> Response
    where
        C: FnOnce(Socket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (stream, read) = Stream::new(upgraded);
            // Copied out, not kept: the bytes are a slice of hyper's read buffer, which they
            // would keep allocated for the connection's life (~8 KiB).
            let io = LazyRead::new(stream, &read);
            drop(read);
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            callback(socket).await;
        });
        let accept = handshake::derive_accept_key(self.key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::try_from(accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

fn header_eq(headers: &HeaderMap, key: HeaderName, value: &str) -> bool {
    headers
        .get(key)
        .is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_contains(headers: &HeaderMap, key: HeaderName, value: &str) -> bool {
    headers
        .get(key)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.to_ascii_lowercase().contains(value))
}

/// A socket read through the thread's scratch buffer: each system call reads as much as is
/// there (up to [`SCRATCH_BYTES`]), what the caller has no room for waits in a buffer of the
/// connection's own, and that buffer is freed as soon as it is taken. A connection waiting for
/// data holds no read buffer here.
#[derive(Debug)]
pub struct LazyRead<S> {
    inner: S,
    /// Read from the socket, not yet taken: `spill[taken..]`.
    spill: Vec<u8>,
    taken: usize,
}

impl<S> LazyRead<S> {
    /// Wraps `inner`, of which `read` was read already (by the HTTP server, past the request).
    pub fn new(inner: S, read: &[u8]) -> Self {
        Self {
            inner,
            spill: read.to_vec(),
            taken: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LazyRead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.taken < this.spill.len() {
            let n = buf.remaining().min(this.spill.len() - this.taken);
            buf.put_slice(&this.spill[this.taken..this.taken + n]);
            this.taken += n;
            if this.taken == this.spill.len() {
                this.spill = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_BYTES {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let read = read.filled();
            let n = buf.remaining().min(read.len());
            buf.put_slice(&read[..n]);
            if n < read.len() {
                this.spill = read[n..].to_vec();
            }
            Poll::Ready(Ok(()))
        })
    }
}

write_through_inner!(LazyRead);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_take_everything_in_order_and_keep_nothing_when_drained() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut lazy = LazyRead::new(server, &[]);
        let sent: Vec<u8> = (0..40_000u32).map(|n| (n % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        let mut chunk = [0u8; 100];
        loop {
            let n = lazy.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(lazy.spill.capacity(), 0, "nothing held once drained");
    }
}
