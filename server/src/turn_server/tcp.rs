//! TURN over TCP (RFC 5766 2.1) on the STUN port, for networks that drop all UDP: each
//! connection is a stream of STUN messages and ChannelData (padded to 4 bytes), cut into frames
//! here and handed to a TURN crate server of its own, whose 5-tuples are then the connection's.
//! The relayed addresses are UDP as always.
//!
//! One crate server per connection because the crate's server reads from a fixed list of
//! sockets given at its start; what it costs is two tasks per connection. A connection that
//! sends something that is neither STUN nor ChannelData has lost its framing and is closed; one
//! that stops half-way through a frame is closed after [`FRAME_TIMEOUT`]; one that says nothing
//! for [`IDLE_TIMEOUT`] is closed (browsers refresh permissions every few minutes).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, Mutex, Semaphore},
};
use tokio_util::sync::CancellationToken;
use turn::{allocation::AllocationInfo, server::Server};
use webrtc_util::Conn;

use super::conn::{crate_server_config, State, Verdict};

/// How long the rest of a frame may take once its first bytes came.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may say nothing at all.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a write to a client that does not read may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// TURN connections open at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 4_096;

/// How long the accept loop rests after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The client closed the connection or the network failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// Neither a STUN message nor ChannelData: the stream lost its framing.
    #[error("not a STUN message or ChannelData")]
    Garbage,
    /// Half a frame, then silence; or no frame at all for too long.
    #[error("timed out")]
    Timeout,
    /// A frame longer than the crate takes.
    #[error("a frame of {0} bytes is too long")]
    TooLong(usize),
}

/// Reads one frame: a STUN message (20-byte header plus its length) or ChannelData (4-byte
/// header plus its length, padded to 4 bytes).
pub(super) async fn read_frame(reader: &mut Reader, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    tokio::time::timeout(IDLE_TIMEOUT, reader.read_exact(&mut header[..1]))
        .await
        .map_err(|_| FrameError::Timeout)??;
    let rest = async {
        reader.read_exact(&mut header[1..]).await?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let total = match header[0] >> 6 {
            0 => 20 + len,
            1 => 4 + len.div_ceil(4) * 4,
            _ => return Err(FrameError::Garbage),
        };
        if total > max {
            return Err(FrameError::TooLong(total));
        }
        let mut frame = vec![0u8; total];
        frame[..4].copy_from_slice(&header);
        reader.read_exact(&mut frame[4..]).await?;
        Ok(frame)
    };
    tokio::time::timeout(FRAME_TIMEOUT, rest)
        .await
        .map_err(|_| FrameError::Timeout)?
}

/// The halves of a TURN connection: TCP, or TLS on the https port.
pub(super) type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One TURN connection, as the crate's socket.
struct TcpConn {
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
    peer: SocketAddr,
    local: SocketAddr,
    state: Arc<State>,
    ended: CancellationToken,
}

impl TcpConn {
    async fn write(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(frame)).await {
            Ok(written) => written,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

fn ended_error() -> webrtc_util::Error {
    webrtc_util::Error::Other("the TURN connection has ended".into())
}

#[async_trait]
impl Conn for TcpConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(ended_error())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(ended_error())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut reader = self.reader.lock().await;
        loop {
            let frame = tokio::select! {
                _ = self.ended.cancelled() => return Err(ended_error()),
                frame = read_frame(&mut reader, buf.len()) => frame,
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => {
                    tracing::debug!(peer = %self.peer, %err, "TURN connection ends");
                    self.ended.cancel();
                    return Err(ended_error());
                }
            };
            match self.state.inspect(&frame, self.peer, self.local) {
                Verdict::Pass => {
                    buf[..frame.len()].copy_from_slice(&frame);
                    return Ok((frame.len(), self.peer));
                }
                Verdict::Drop => {
                    // What the UDP socket would drop, a stream cannot step over.
                    tracing::debug!(peer = %self.peer, "TURN connection sent garbage");
                    self.ended.cancel();
                    return Err(ended_error());
                }
                Verdict::Answer(reply) => {
                    if self.write(&reply).await.is_err() {
                        self.ended.cancel();
                        return Err(ended_error());
                    }
                }
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(ended_error())
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.state.observe_sent(buf, self.peer, self.local);
        if let Err(err) = self.write(buf).await {
            self.ended.cancel();
            return Err(err.into());
        }
        Ok(buf.len())
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.ended.cancel();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// What a TURN connection needs from the server it joins: handed to the https port, which
/// passes on the connections whose first bytes are STUN.
#[derive(Clone)]
pub struct Streams {
    state: Arc<State>,
    closed_tx: mpsc::Sender<AllocationInfo>,
    stop: CancellationToken,
}

impl Streams {
    pub(crate) fn new(
        state: Arc<State>,
        closed_tx: mpsc::Sender<AllocationInfo>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            state,
            closed_tx,
            stop,
        }
    }

    /// Serves TURN on `stream` (from `peer`, accepted at `local`) until it or the relay ends.
    pub(crate) async fn serve<S>(&self, stream: S, peer: SocketAddr, local: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.state.stream_opened(true);
        let (reader, writer) = tokio::io::split(stream);
        connection(
            Box::new(reader),
            Box::new(writer),
            peer,
            local,
            Arc::clone(&self.state),
            self.closed_tx.clone(),
            self.stop.clone(),
        )
        .await;
    }
}

/// Accepts TURN connections on `listener` until `stop`.
pub(crate) async fn serve(listener: TcpListener, streams: Streams) {
    let Streams {
        state,
        closed_tx,
        stop,
    } = streams;
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = Arc::clone(&places).acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(%err, "TURN accept failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        let closed_tx = closed_tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                return;
            };
            state.stream_opened(false);
            let (reader, writer) = stream.into_split();
            let (reader, writer): (Reader, Writer) = (Box::new(reader), Box::new(writer));
            connection(reader, writer, peer, local, state, closed_tx, stop).await;
            drop(place);
        });
    }
}

/// Runs one connection's TURN server until the connection or the relay ends.
async fn connection(
    reader: Reader,
    writer: Writer,
    peer: SocketAddr,
    local: SocketAddr,
    state: Arc<State>,
    closed_tx: mpsc::Sender<AllocationInfo>,
    stop: CancellationToken,
) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let ended = stop.child_token();
    let conn = TcpConn {
        reader: Mutex::new(reader),
        writer: Mutex::new(writer),
        peer: canonical(peer),
        local: canonical(local),
        state: Arc::clone(&state),
        ended: ended.clone(),
    };
    let server = Server::new(crate_server_config(Arc::new(conn), &state, closed_tx)).await;
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            tracing::debug!(%err, "no TURN server for a connection");
            return;
        }
    };
    ended.cancelled().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server.close()).await;
}
