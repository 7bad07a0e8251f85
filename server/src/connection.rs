//! One WebSocket connection: upgrade, read loop, writer task, and cleanup.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use protocol::{
    ClientMsg, ErrorKind, PeerId, Request, ServerMsg, CLOSE_GOING_AWAY, CLOSE_MESSAGE_TOO_BIG,
    MAX_MESSAGE_BYTES,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{registry::Outbox, Relay};

/// How many frames may wait for one peer before it counts as not reading.
/// A call's setup is one offer, one answer and a few dozen candidates.
const OUTBOX_CAPACITY: usize = 256;

/// How long the relay waits to hand a final Close frame to a peer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Close code for a peer dropped because it did not read its messages (RFC 6455: policy violation).
const CLOSE_POLICY: u16 = 1008;

/// Upgrades `GET /ws` to a WebSocket and runs the connection.
pub async fn ws_handler(ws: WebSocketUpgrade, State(relay): State<Arc<Relay>>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let id = relay.registry.next_id();
            let tracker = relay.tracker.clone();
            tracker.track_future(
                handle_socket(socket, relay, id).instrument(tracing::info_span!("peer", %id)),
            )
        })
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed it, or its transport failed.
    Client,
    /// The client sent a frame larger than [`MAX_MESSAGE_BYTES`].
    TooBig,
    /// The peer's outbox filled up.
    SlowReader,
    /// The relay is shutting down.
    Shutdown,
}

impl End {
    fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Client => return None,
            End::TooBig => (CLOSE_MESSAGE_TOO_BIG, "message too big"),
            End::SlowReader => (CLOSE_POLICY, "not reading messages"),
            End::Shutdown => (CLOSE_GOING_AWAY, "relay shutting down"),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

async fn handle_socket(socket: WebSocket, relay: Arc<Relay>, id: PeerId) {
    tracing::info!("connected");
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let kick = relay.shutdown.child_token();
    let outbox = Outbox {
        tx,
        kick: kick.clone(),
    };
    let writer = tokio::spawn(write_loop(sink, rx, kick.clone()));

    let end = loop {
        let frame = tokio::select! {
            _ = kick.cancelled() => {
                break if relay.shutdown.is_cancelled() { End::Shutdown } else { End::SlowReader };
            }
            frame = stream.next() => frame,
        };
        let reply = match frame {
            Some(Ok(Message::Text(text))) => handle_text(&relay, id, &outbox, text.as_str()),
            Some(Ok(Message::Binary(_))) => Some(ServerMsg::error(
                ErrorKind::BinaryFrame,
                "the relay speaks JSON text frames only",
            )),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            Some(Ok(Message::Close(_))) | None => break End::Client,
            Some(Err(err)) => {
                // axum hides tungstenite's error type; its text is the only way to tell a
                // capacity error from a broken transport.
                let text = err.to_string();
                tracing::debug!(error = %text, "read failed");
                break if text.contains("too long") || text.contains("too big") {
                    End::TooBig
                } else {
                    End::Client
                };
            }
        };
        if let Some(reply) = reply {
            if !outbox.deliver(&reply.to_json()) {
                break End::SlowReader;
            }
        }
    };

    relay.registry.leave(id);
    // Stop the writer before writing the Close frame ourselves: what is still queued is for a
    // peer that is going away.
    kick.cancel();
    if let Ok(mut sink) = writer.await {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            match end.close_frame() {
                Some(frame) => sink.send(Message::Close(Some(frame))).await,
                // When the client closed, tungstenite has queued the reply to its Close frame
                // but only writes it on the next flush: without this the closing handshake
                // never completes and the browser reports an unclean close (1006).
                None => sink.close().await,
            }
        })
        .await;
    }
    tracing::info!(?end, "disconnected");
}

/// Carries out one text frame; returns what to answer the sender, if anything.
fn handle_text(relay: &Relay, id: PeerId, outbox: &Outbox, text: &str) -> Option<ServerMsg> {
    let msg = match ClientMsg::parse(text) {
        Ok(msg) => msg,
        Err(err) => {
            tracing::debug!(%err, "bad message");
            return Some(ServerMsg::error(err.kind(), err.to_string()));
        }
    };
    let result =
        match Request::from(msg) {
            Request::Join { room, name } => relay
                .registry
                .join(id, &room, name, outbox.clone())
                .map(|peers| {
                    tracing::info!(%room, others = peers.len(), "joined");
                    Some(ServerMsg::Welcome {
                        id,
                        room,
                        peers,
                        ice_servers: relay.ice_servers.clone(),
                    })
                }),
            Request::Relay { to, signal } => {
                tracing::debug!(?to, "relaying");
                relay.registry.relay(id, to, signal).map(|()| None)
            }
        };
    result.unwrap_or_else(|refusal| {
        tracing::debug!(kind = %refusal.kind, "refused");
        Some(refusal.to_msg())
    })
}

/// Drains the peer's outbox into its socket until the outbox closes or `stop` is cancelled.
/// Hands the sink back so that the connection can still send its Close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    stop: CancellationToken,
) -> SplitSink<WebSocket, Message> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            msg = rx.recv() => msg,
        };
        let Some(msg) = msg else { break };
        if sink.send(msg).await.is_err() {
            // The transport is gone: end the read side too.
            stop.cancel();
            break;
        }
    }
    sink
}
