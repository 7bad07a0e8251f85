//! One WebSocket connection: admission, upgrade, and one task that reads the socket, writes
//! what is queued for it, pings it, and cleans up.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::Future,
    net::SocketAddr,
    sync::atomic::Ordering,
    sync::{Arc, Mutex, PoisonError},
    task::{ready, Context, Poll, Waker},
    time::{Duration, SystemTime},
};

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    ErrorKind, PeerId, Request, ServerMsg, CLOSE_GOING_AWAY, CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY,
    CLOSE_RECONNECTING, CLOSE_REMOVED, MAX_MESSAGE_BYTES,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
    Message,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    host::url_host,
    limits::{self, RateLimit, Ticket},
    registry::{JoinRequest, Mailbox, Relayed},
    upgrade::{Socket, Upgrade},
    Relay,
};

/// How many frames may wait for one peer before it counts as not reading.
/// A call's setup is one offer, one answer and a few dozen candidates.
const OUTBOX_CAPACITY: usize = 256;

/// How many frames a connection carries out in one go when its client sent several at once,
/// before it lets others run.
const BATCH_FRAMES: usize = 16;

/// How long the relay waits to hand a final Close frame to a peer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a peer is reached: its socket's sending side, and the token that ends its connection.
/// One `Arc`: a batch keeps a clone of each outbox it wrote to, and cloning a
/// `CancellationToken` takes a lock.
#[derive(Clone, Debug)]
pub struct Outbox {
    queue: Arc<Queue>,
}

/// One peer's socket and the frames waiting for it. Whoever delivers a frame writes it into
/// the socket at once if nothing waits before it: the common case costs the peer's connection
/// task no wake-up. A connection carrying out what its client sent leaves the flushes of what
/// it wrote to the end of the frames it read in one go (see [`flush_batch`]), so that under load
/// several frames leave in one system call. When the socket cannot take a frame, it waits here
/// and the peer's connection task is woken to write it when it can. Empty, the queue holds no
/// allocation (a bounded `mpsc` channel allocates a block of 32 slots up front).
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    /// Cancelled to drop the peer, e.g. when it reads too slowly to keep its outbox from filling.
    kick: CancellationToken,
}

#[derive(Default)]
struct QueueState {
    /// The connection's socket, both ways: reads and writes take turns under the lock, each a
    /// single poll, never held across an `await`. `None` once the connection is ending (and in
    /// unit tests, where frames only queue).
    socket: Option<Socket>,
    frames: VecDeque<Message>,
    /// The socket holds frames it has not sent yet.
    unflushed: bool,
    /// A batch is to flush the socket when it ends.
    deferred: bool,
    /// The socket could not take everything: the connection task writes the rest.
    blocked: bool,
    /// The connection has ended: nothing more is taken.
    closed: bool,
    /// The peer was removed from its room: the connection ends.
    removed: bool,
    /// Wakes the connection task when the socket could not take everything.
    waker: Option<Waker>,
}

impl std::fmt::Debug for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueState")
            .field("frames", &self.frames.len())
            .field("unflushed", &self.unflushed)
            .field("deferred", &self.deferred)
            .field("blocked", &self.blocked)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl QueueState {
    /// Puts `frame` straight into the socket if nothing waits before it and the socket takes
    /// it now; queues it otherwise. The queue then holds no allocation for a peer whose socket
    /// keeps up.
    fn push(&mut self, frame: Message, cx: &mut Context<'_>) -> Result<(), tungstenite::Error> {
        if let (true, Some(socket)) = (self.frames.is_empty(), self.socket.as_mut()) {
            if let Poll::Ready(ready) = socket.poll_ready_unpin(cx) {
                ready?;
                self.unflushed = true;
                return socket.start_send_unpin(frame);
            }
        }
        self.frames.push_back(frame);
        Ok(())
    }

    /// Polls for the next frame the peer sent; the end of the stream once the socket is gone.
    /// A Close frame closes the queue at once: the socket sends nothing after it (but the reply).
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, tungstenite::Error>>> {
        let Some(socket) = self.socket.as_mut() else {
            return Poll::Ready(None);
        };
        let read = socket.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(Message::Close(_)))) = read {
            self.closed = true;
        }
        read
    }

    /// Moves the waiting frames into the socket and, with `flush`, sends them, as far as the
    /// socket takes them now.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        flush: bool,
    ) -> Poll<Result<(), tungstenite::Error>> {
        let Some(socket) = self.socket.as_mut() else {
            return Poll::Pending;
        };
        while !self.frames.is_empty() {
            ready!(socket.poll_ready_unpin(cx))?;
            if let Some(frame) = self.frames.pop_front() {
                self.unflushed = true;
                socket.start_send_unpin(frame)?;
            }
        }
        if flush && self.unflushed {
            ready!(socket.poll_flush_unpin(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

tokio::task_local! {
    /// The outboxes the current batch wrote to without flushing them.
    static UNFLUSHED: RefCell<Vec<Outbox>>;
}

/// Ends a batch (a connection carrying out the frames it read in one go, inside
/// `UNFLUSHED.scope`): flushes what it wrote to other sockets, one system call per socket.
///
/// The batch is written out in the connection's loop, not passed to a function: a future
/// passed by value into an `async fn` is stored once more in the caller's task for each level,
/// and a connection's task is most of an idle socket's memory.
fn flush_batch() {
    let outboxes = UNFLUSHED.with(|list| std::mem::take(&mut *list.borrow_mut()));
    for outbox in outboxes {
        outbox.flush_deferred();
    }
}

impl Outbox {
    fn new(kick: CancellationToken, socket: Option<Socket>) -> Self {
        let state = QueueState {
            socket,
            ..QueueState::default()
        };
        Self {
            queue: Arc::new(Queue {
                state: Mutex::new(state),
                kick,
            }),
        }
    }

    /// Cancelled to drop the peer, e.g. when it reads too slowly to keep its outbox from filling.
    pub fn kick(&self) -> &CancellationToken {
        &self.queue.kick
    }

    /// Sends any frame (a ping, say) without waiting. A full outbox means the peer does not
    /// read what it is sent: it is dropped, rather than letting the relay's memory grow on its
    /// behalf.
    pub fn deliver_frame(&self, frame: Message) -> bool {
        let mut state = self.queue.lock();
        // The peer's connection is already ending; its own task cleans up.
        if state.closed || self.kick().is_cancelled() {
            return false;
        }
        if state.frames.len() >= OUTBOX_CAPACITY {
            drop(state);
            tracing::warn!("outbox full: dropping a peer that does not read");
            self.kick().cancel();
            return false;
        }
        if state.blocked {
            // The connection task is writing what came before: it takes this one too.
            state.frames.push_back(frame);
            return true;
        }
        // Write it from here. A noop waker: if the socket cannot take it now, the connection
        // task takes over with its own.
        let in_batch = UNFLUSHED.try_with(|_| ()).is_ok();
        let cx = &mut Context::from_waker(Waker::noop());
        let written = match state.push(frame, cx) {
            Ok(()) => state.poll_write(cx, !in_batch),
            Err(err) => Poll::Ready(Err(err)),
        };
        let wrote = matches!(written, Poll::Ready(Ok(())));
        let failed = matches!(written, Poll::Ready(Err(_)));
        if wrote && in_batch && state.unflushed && !state.deferred {
            state.deferred = true;
            drop(state);
            UNFLUSHED.with(|list| list.borrow_mut().push(self.clone()));
        } else {
            self.settle(state, written);
        }
        // A failed write took the frame nowhere.
        !failed
    }

    /// Sends what a batch wrote into the socket.
    fn flush_deferred(&self) {
        let mut state = self.queue.lock();
        state.deferred = false;
        if state.blocked || state.closed {
            return;
        }
        let written = state.poll_write(&mut Context::from_waker(Waker::noop()), true);
        self.settle(state, written);
    }

    /// What follows a write made outside the connection task: a failed transport ends the
    /// connection (its task does), and what the socket could not take now is left to the task,
    /// which is woken to write it.
    fn settle(
        &self,
        mut state: std::sync::MutexGuard<'_, QueueState>,
        written: Poll<Result<(), tungstenite::Error>>,
    ) {
        match written {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(err)) => {
                drop(state);
                tracing::debug!(error = %err, "write failed");
                self.kick().cancel();
            }
            Poll::Pending => {
                state.blocked = true;
                let waker = state.waker.clone();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }

    /// For the connection task: writes what the socket could not take from others, if
    /// anything, and (with `read`) polls for the next frame the peer sent. One lock for both,
    /// and the task is woken for a hand-over through the waker it leaves here.
    ///
    /// Nothing is read while frames wait for the socket: a Close frame read then would leave
    /// them unsendable (the socket sends nothing after it), and they were reported delivered.
    /// A peer that reads slowly is read slowly too.
    fn poll_socket(&self, cx: &mut Context<'_>, read: bool) -> Poll<Woken> {
        let mut state = self.queue.lock();
        if state.blocked {
            match state.poll_write(cx, true) {
                Poll::Ready(written) => {
                    state.blocked = false;
                    if written.is_err() {
                        return Poll::Ready(Woken::WriteFailed);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        if read {
            state.poll_read(cx).map(Woken::Frame)
        } else {
            Poll::Pending
        }
    }

    /// The next frame the peer sent, if it is already here; if not, the task is woken when
    /// it comes. `None` while frames wait for the socket: nothing is read until they leave
    /// (see [`Outbox::poll_socket`]).
    async fn read_now(&self) -> Option<Poll<Option<Result<Message, tungstenite::Error>>>> {
        std::future::poll_fn(|cx| {
            let mut state = self.queue.lock();
            Poll::Ready((!state.blocked).then(|| state.poll_read(cx)))
        })
        .await
    }

    /// Takes no more frames, and hands back the socket: the connection is ending.
    fn close(&self) -> Option<Socket> {
        let mut state = self.queue.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        state.waker = None;
        state.socket.take()
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing that holds the lock can panic half-way; a poisoned queue is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`ServerMsg::Removed`] as the rooms deliver it.
const REMOVED: &str = r#"{"type":"removed"}"#;

impl Outbox {
    /// Whether the peer was removed from its room.
    fn removed(&self) -> bool {
        self.queue.lock().removed
    }
}

impl Mailbox for Outbox {
    fn deliver(&self, text: String) -> bool {
        // The word that the peer was removed ends its connection, once written.
        let removed = text == REMOVED;
        let delivered = self.deliver_frame(Message::text(text));
        if removed {
            self.queue.lock().removed = true;
            self.kick().cancel();
        }
        delivered
    }
}

/// Upgrades `GET /ws` to a WebSocket and runs the connection, if the origin and the limits
/// allow it.
pub async fn ws_handler(
    ws: Upgrade,
    State(relay): State<Arc<Relay>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !limits::origin_allowed(&headers, &relay.allowed_origins) {
        relay.metrics.refused_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%addr, origin = ?headers.get("origin"), "refused a foreign origin");
        return (StatusCode::FORBIDDEN, "this origin may not connect\n").into_response();
    }
    let ticket = match relay.admission.admit(addr.ip()) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            relay.metrics.refused_total.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%addr, status = %refusal.0, "refused a connection");
            return refusal.into_response();
        }
    };
    // The relay's own STUN server is handed out under the name the page used to reach us.
    let host = crate::host::host_header(&headers)
        .and_then(url_host)
        .map(str::to_owned);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(relay.limits.read_buffer)
        .write_buffer_size(relay.limits.write_buffer);
    ws.on_upgrade(config, move |socket| {
        // Peer ids are handed out at `join` (by Redis, with a backplane): the logs name a
        // connection by a number of its own until then.
        let conn = relay.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let tracker = relay.tracker.clone();
        tracker.track_future(
            handle_socket(socket, relay, host, ticket)
                .instrument(tracing::info_span!("connection", conn, %addr)),
        )
    })
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed it with a Close frame: it is gone for good.
    Closed,
    /// The client closed it to connect again ([`CLOSE_RECONNECTING`]): it may come back with
    /// its resume token.
    Reconnecting,
    /// Its transport failed: it may come back with its resume token.
    Client,
    /// The client sent a frame larger than [`MAX_MESSAGE_BYTES`].
    TooBig,
    /// The relay dropped it: its outbox filled up (it does not read), or writing failed.
    Kicked,
    /// It kept sending faster than the rate limit.
    Abuse,
    /// It answered no ping for the idle timeout.
    Silent,
    /// The relay is shutting down.
    Shutdown,
    /// The person in control of its room removed it.
    Removed,
}

impl End {
    fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Closed | End::Reconnecting | End::Client => return None,
            End::TooBig => (CLOSE_MESSAGE_TOO_BIG, "message too big"),
            End::Kicked => (CLOSE_POLICY, "not reading messages"),
            End::Abuse => (CLOSE_POLICY, "too many messages"),
            End::Silent => (CLOSE_GOING_AWAY, "no answer to pings"),
            End::Shutdown => (CLOSE_GOING_AWAY, "relay shutting down"),
            End::Removed => (CLOSE_REMOVED, "removed from the room"),
        };
        Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })
    }
}

/// What woke a connection's task.
enum Woken {
    /// Its kick token was cancelled (see [`Outbox::kick`]), or the relay is shutting down.
    Kicked,
    /// A ping, or fresh TURN credentials, is due.
    Timer,
    /// Writing what others could not send straight away failed: the transport is gone.
    WriteFailed,
    /// The client sent a frame, or its stream ended.
    Frame(Option<Result<Message, tungstenite::Error>>),
}

/// One connection's own state, owned by its read loop.
struct Connection {
    relay: Arc<Relay>,
    /// The id it joined as (a resumed one, maybe); `None` until it joins.
    id: Option<PeerId>,
    /// The host the page reached the relay by, for the relay's own STUN server.
    host: Option<String>,
    outbox: Outbox,
    rate: RateLimit,
    /// When the frames being carried out were read (one clock reading per batch).
    heard: Instant,
}

/// The connection's task. Not an `async fn`: one keeps room for its arguments for its whole
/// life, and the socket (~370 bytes) moves into the outbox at once; a connection's task is most
/// of an idle socket's memory.
fn handle_socket(
    socket: Socket,
    relay: Arc<Relay>,
    host: Option<String>,
    ticket: Ticket,
) -> impl Future<Output = ()> {
    let kick = relay.shutdown.child_token();
    let conn = Connection {
        rate: RateLimit::new(relay.limits.rate_per_sec, relay.limits.rate_burst),
        outbox: Outbox::new(kick.clone(), Some(socket)),
        relay,
        id: None,
        host,
        heard: Instant::now(),
    };
    run(conn, kick, ticket)
}

async fn run(mut conn: Connection, kick: CancellationToken, ticket: Ticket) {
    tracing::info!("connected");
    let relay = conn.relay.clone();
    relay.metrics.connections.fetch_add(1, Ordering::Relaxed);
    relay
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let limits = &relay.limits;
    // The first ping comes at a random point of the second half of the interval: sockets
    // opened together (every client back after a restart, say) would otherwise be pinged
    // together every interval, a burst of writes that holds up everybody's messages.
    let mut next_ping = conn.heard + limits.ping_interval.mul_f64(0.5 + 0.5 * unit_random());
    // When the peer is due fresh TURN credentials: set once it has joined, if TURN is on.
    let mut refresh_at: Option<Instant> = None;
    // One timer for both: the earlier of the two.
    let timer = tokio::time::sleep_until(next_ping);
    let kicked = kick.cancelled();
    tokio::pin!(timer, kicked);
    // The task's waker the kick token's waiter was registered with: while it is the same, the
    // waiter wakes the task by itself and a wake-up only needs to read the token.
    let mut kick_waker: Option<Waker> = None;
    // The socket was read to its end, with the task's waker, just before the loop came round:
    // reading it again at once would find nothing.
    let mut socket_armed = false;

    // One task per connection: it reads the socket, and writes what others could not send
    // straight away. A peer that does not read fills its outbox and is kicked, or stops
    // answering pings and counts as silent. Each wake-up looks at the kick token, the timer,
    // and (under one lock) the socket, in that order.
    let end = loop {
        let woken = std::future::poll_fn(|cx| {
            let is_kicked = match &kick_waker {
                Some(waker) if waker.will_wake(cx.waker()) => kick.is_cancelled(),
                _ => {
                    kick_waker = Some(cx.waker().clone());
                    kicked.as_mut().poll(cx).is_ready()
                }
            };
            if is_kicked {
                return Poll::Ready(Woken::Kicked);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woken::Timer);
            }
            conn.outbox
                .poll_socket(cx, !std::mem::take(&mut socket_armed))
        })
        .await;
        let frame = match woken {
            Woken::Kicked => {
                break if relay.shutdown.is_cancelled() {
                    End::Shutdown
                } else if conn.outbox.removed() {
                    End::Removed
                } else {
                    End::Kicked
                };
            }
            Woken::WriteFailed => break End::Kicked,
            Woken::Timer => {
                let now = Instant::now();
                if now >= next_ping {
                    if now.duration_since(conn.heard) >= limits.idle_timeout {
                        break End::Silent;
                    }
                    conn.outbox.deliver_frame(Message::Ping(Default::default()));
                    next_ping = now + limits.ping_interval;
                }
                if refresh_at.is_some_and(|at| now >= at) {
                    conn.refresh_ice_servers();
                    refresh_at = refresh_at
                        .zip(relay.ice.refresh_every())
                        .map(|(at, every)| at + every);
                }
                timer.as_mut().reset(earliest(next_ping, refresh_at));
                continue;
            }
            Woken::Frame(frame) => frame,
        };
        conn.heard = Instant::now();
        // This frame, and those that came with it, up to a limit; then what they delivered is
        // flushed.
        let end;
        (end, socket_armed) = UNFLUSHED
            .scope(RefCell::default(), async {
                let mut frame = frame;
                let out = 'batch: {
                    for _ in 1..BATCH_FRAMES {
                        if let Some(end) = conn.on_message(frame).await {
                            break 'batch (Some(end), false);
                        }
                        match conn.outbox.read_now().await {
                            Some(Poll::Ready(next)) => frame = next,
                            Some(Poll::Pending) => break 'batch (None, true),
                            None => break 'batch (None, false),
                        }
                    }
                    (conn.on_message(frame).await, false)
                };
                flush_batch();
                out
            })
            .await;
        if let Some(end) = end {
            break end;
        }
        if conn.id.is_some() && refresh_at.is_none() {
            refresh_at = relay
                .ice
                .refresh_every()
                .map(|every| Instant::now() + every);
            timer.as_mut().reset(earliest(next_ping, refresh_at));
        }
    };

    // What is still queued is for a peer that is going away.
    let socket = conn.outbox.close();
    // A peer that said goodbye frees its name at once; one that vanished, or closed to
    // connect again, keeps its place for the resume grace period.
    if let Some(id) = conn.id {
        relay
            .rooms
            .leave(id, !matches!(end, End::Closed | End::Removed))
            .await;
    }
    kick.cancel();
    if let Some(mut socket) = socket {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            match end.close_frame() {
                Some(frame) => socket.send(Message::Close(Some(frame))).await,
                // The client closed: flush the Close reply tungstenite queued for it.
                None => SinkExt::close(&mut socket).await,
            }
        })
        .await;
    }
    relay.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    drop(ticket);
    tracing::info!(?end, "disconnected");
}

/// A number in `[0, 1)`, different at each call: std's randomly keyed hasher over the time
/// (no system call per connection, and nothing that can fail).
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(Instant::now()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The earlier of a deadline and an optional one.
fn earliest(at: Instant, other: Option<Instant>) -> Instant {
    other.map_or(at, |other| other.min(at))
}

impl Connection {
    /// Carries out one frame the client sent (or the end of its stream); returns why to end,
    /// if it must.
    async fn on_message(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<End> {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_frame(Some(text.as_str())).await,
            Some(Ok(Message::Binary(_))) => self.on_frame(None).await,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
            Some(Ok(Message::Close(Some(frame))))
                if u16::from(frame.code) == CLOSE_RECONNECTING =>
            {
                Some(End::Reconnecting)
            }
            Some(Ok(Message::Close(_))) => Some(End::Closed),
            None => Some(End::Client),
            Some(Err(err)) => {
                tracing::debug!(error = %err, "read failed");
                Some(match err {
                    tungstenite::Error::Capacity(_) => End::TooBig,
                    _ => End::Client,
                })
            }
        }
    }

    /// Carries out one data frame (`None` for a binary one); returns why to end, if it must.
    async fn on_frame(&mut self, text: Option<&str>) -> Option<End> {
        let reply = if !self.rate.allow(self.heard) {
            if self.rate.refused_in_a_row >= self.relay.limits.abuse_limit {
                return Some(End::Abuse);
            }
            Some(ServerMsg::error(
                ErrorKind::RateLimited,
                "too many messages: this one was dropped; slow down",
            ))
        } else if let Some(text) = text {
            self.on_text(text).await
        } else {
            Some(ServerMsg::error(
                ErrorKind::BinaryFrame,
                "the relay speaks JSON text frames only",
            ))
        };
        if let Some(ServerMsg::Error { kind, .. }) = &reply {
            self.relay.metrics.error(*kind);
        }
        match reply {
            Some(reply) if !self.outbox.deliver(reply.to_json()) => Some(End::Kicked),
            _ => None,
        }
    }

    /// Carries out one text frame; returns what to answer the sender, if anything.
    async fn on_text(&mut self, text: &str) -> Option<ServerMsg> {
        let request = match Request::parse(text) {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!(%err, "bad message");
                return Some(ServerMsg::error(err.kind(), err.to_string()));
            }
        };
        let rooms = &self.relay.rooms;
        let result = match request {
            Request::Ping => Some(ServerMsg::Pong),
            Request::Join { .. } if self.id.is_some() => Some(ServerMsg::error(
                ErrorKind::AlreadyJoined,
                "this connection has already joined a room",
            )),
            Request::Join {
                room,
                name,
                resume,
                session,
                passphrase,
            } => {
                let request = JoinRequest {
                    room,
                    name,
                    resume,
                    session,
                    passphrase,
                };
                let (ice, host) = (&self.relay.ice, self.host.as_deref());
                let servers = |id| ice.for_peer(host, id, SystemTime::now());
                let mailbox = Arc::new(self.outbox.clone());
                match rooms.join(request, mailbox, servers).await {
                    Ok(joined) => {
                        tracing::info!(id = %joined.id, room = %joined.room, released = joined.released, "joined");
                        self.relay
                            .metrics
                            .relayed(joined.released, joined.released_bytes);
                        self.id = Some(joined.id);
                        None
                    }
                    Err(refusal) => Some(refusal.to_msg()),
                }
            }
            Request::Control(control) => match self.id {
                None => Some(ServerMsg::error(
                    ErrorKind::NotJoined,
                    "send \"join\" before changing the room",
                )),
                Some(from) => rooms.control(from, control).await.err().map(|r| r.to_msg()),
            },
            Request::Relay { to, signal } => match self.id {
                None => Some(ServerMsg::error(
                    ErrorKind::NotJoined,
                    "send \"join\" before signaling",
                )),
                Some(from) => match rooms.relay(from, to, signal).await {
                    Ok(Relayed::Delivered(bytes)) => {
                        self.relay.metrics.relayed(1, bytes);
                        None
                    }
                    Ok(Relayed::Held) => None,
                    Err(refusal) => Some(refusal.to_msg()),
                },
            },
        };
        if let Some(ServerMsg::Error { kind, .. }) = &result {
            tracing::debug!(%kind, "refused");
        }
        result
    }

    /// Sends the peer the ICE servers with fresh TURN credentials, before the ones it has expire.
    fn refresh_ice_servers(&self) {
        let Some(id) = self.id else { return };
        let ice_servers = self
            .relay
            .ice
            .for_peer(self.host.as_deref(), id, SystemTime::now());
        tracing::debug!("fresh TURN credentials");
        self.outbox
            .deliver(ServerMsg::IceServers { ice_servers }.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_kicks_its_peer_instead_of_growing() {
        let outbox = Outbox::new(CancellationToken::new(), None);
        for n in 0..OUTBOX_CAPACITY {
            assert!(outbox.deliver(n.to_string()), "frame {n} fits");
        }
        assert!(!outbox.kick().is_cancelled());
        assert!(!outbox.deliver("one more".into()), "the outbox is full");
        assert!(outbox.kick().is_cancelled());
    }

    #[test]
    fn the_removal_the_outbox_watches_for_is_the_one_the_rooms_write() {
        assert_eq!(ServerMsg::Removed.to_json(), REMOVED);
    }

    #[test]
    fn a_closed_outbox_takes_nothing_and_holds_nothing() {
        let outbox = Outbox::new(CancellationToken::new(), None);
        assert!(outbox.deliver("queued".into()));
        outbox.close();
        assert!(!outbox.deliver("too late".into()));
        assert!(outbox.queue.lock().frames.is_empty());
        assert!(!outbox.kick().is_cancelled());
    }
}
