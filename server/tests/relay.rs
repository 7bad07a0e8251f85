//! The relay over real sockets: each test starts `server::run` on an ephemeral port, connects
//! WebSocket clients to `/ws` (or speaks raw HTTP/1.1 for the static files and the health and
//! metrics endpoints) and checks what each peer receives, and what it must not receive.
//!
//! Timers (hold, resume grace, pings) are shortened through [`Limits`] in the tests that wait for
//! them; every other test runs with the defaults, whose timers are far longer than a test.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use protocol::{
    ClientMsg, ErrorKind, IceCandidate, IceServer, PeerId, PeerInfo, ServerMsg, CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY, CLOSE_RECONNECTING, MAX_MESSAGE_BYTES,
};
use server::Limits;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{
        self,
        client::IntoClientRequest,
        http::{HeaderValue, StatusCode},
        Message,
    },
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

mod common;
use common::{
    expect_welcome, http::get_with, join_msg, next_frame, parse_event, recv, Welcome, RECV_TIMEOUT,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a peer that should receive nothing is watched.
const SILENCE: Duration = Duration::from_millis(300);

/// How long a gauge in `/metrics` may take to settle (a closing connection gives its place back
/// after its closing handshake, which may wait up to two seconds for a peer that does not read).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One relay on an ephemeral port.
struct TestRelay {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

/// The configuration every test starts from: the default limits.
fn test_config() -> server::Config {
    server::Config {
        dist: PathBuf::from("/nonexistent/relay-test-dist"),
        ice_servers: ice_servers(),
        room_capacity: 2,
        ..server::Config::default()
    }
}

impl TestRelay {
    async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    async fn start_with_limits(limits: Limits) -> Self {
        Self::start_with(server::Config {
            limits,
            ..test_config()
        })
        .await
    }

    async fn start_serving(dist: PathBuf) -> Self {
        Self::start_with(server::Config {
            dist,
            ..test_config()
        })
        .await
    }

    async fn start_with(config: server::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server::run(listener, config, shutdown.clone()));
        Self {
            addr,
            shutdown,
            handle,
        }
    }

    /// Opens a WebSocket, with an `Origin` header if given; the error of a refused upgrade
    /// carries the HTTP response.
    async fn try_connect(&self, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let mut request = format!("ws://{}/ws", self.addr)
            .into_client_request()
            .expect("a valid request");
        if let Some(origin) = origin {
            request.headers_mut().insert(
                "origin",
                HeaderValue::from_str(origin).expect("a valid header"),
            );
        }
        connect_async(request).await.map(|(ws, _)| ws)
    }

    async fn connect(&self) -> Ws {
        self.try_connect(None)
            .await
            .expect("the WebSocket handshake succeeds")
    }

    /// Connects, retrying while the relay refuses with `status` because it has not yet given
    /// back the place of a connection that just closed.
    async fn connect_once_freed(&self, status: StatusCode) -> Ws {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match self.try_connect(None).await {
                Ok(ws) => return ws,
                Err(tungstenite::Error::Http(response))
                    if response.status() == status && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("expected the place to be freed, got {err}"),
            }
        }
    }

    /// Connects and joins `room`; returns the socket and the id the relay gave it.
    async fn join(&self, room: &str) -> (Ws, PeerId) {
        let mut ws = self.connect().await;
        let id = join_on(&mut ws, room).await;
        (ws, id)
    }

    /// Connects and joins `room` as `name`.
    async fn join_as(&self, room: &str, name: &str) -> (Ws, Welcome) {
        let mut ws = self.connect().await;
        let welcome = join_as(&mut ws, room, name).await;
        (ws, welcome)
    }

    /// The body of `GET /metrics`.
    async fn metrics(&self) -> String {
        let response = get_with(self.addr, "/metrics", "").await;
        assert_eq!(response.status, 200);
        response.text().to_owned()
    }

    /// Polls `/metrics` until `series` reads `want`.
    async fn wait_for_metric(&self, series: &str, want: u64) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let text = self.metrics().await;
            let got = metric(&text, series);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is still {got}, expected {want}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn ice_servers() -> Vec<IceServer> {
    vec![
        IceServer {
            urls: vec!["stun:stun.example.org:3478".into()],
            username: None,
            credential: None,
        },
        IceServer {
            urls: vec!["turn:turn.example.org:3478".into()],
            username: Some("user".into()),
            credential: Some("secret".into()),
        },
    ]
}

/// The value of one series (`name` or `name{labels}`) in a Prometheus exposition.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
}

/// The status of a refused WebSocket upgrade.
fn refused_with(result: Result<Ws, tungstenite::Error>) -> StatusCode {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, but the upgrade succeeded"),
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    send_text(ws, &msg.to_json()).await;
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("sends");
}

/// The next event, which must be an error of `kind`.
async fn recv_error(ws: &mut Ws, kind: ErrorKind) {
    match recv(ws).await {
        ServerMsg::Error { kind: got, message } => {
            assert_eq!(got, kind, "{message}");
            assert!(!message.is_empty(), "the error says what went wrong");
        }
        other => panic!("expected a {kind} error, got {other:?}"),
    }
}

/// The next frame, which must be a Close frame with `code`.
async fn recv_close(ws: &mut Ws, code: u16) {
    match next_frame(ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), code, "{frame:?}"),
        other => panic!("expected a Close frame with code {code}, got {other:?}"),
    }
}

/// Closes `ws` and waits for the relay's answer to the closing handshake.
async fn close(mut ws: Ws) {
    ws.close(None).await.expect("sends a Close frame");
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected the relay's Close frame, got {other:?}"),
        }
    }
}

/// Fails if any event (anything but a ping or pong) arrives within [`SILENCE`].
async fn assert_silent(ws: &mut Ws) {
    assert_silent_for(ws, SILENCE).await;
}

/// Fails if any event (anything but a ping or pong) arrives within `time`. Reading answers the
/// relay's pings, so the peer stays alive meanwhile.
async fn assert_silent_for(ws: &mut Ws, time: Duration) {
    let deadline = Instant::now() + time;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(frame) => panic!("expected silence, got {frame:?}"),
        }
    }
}

/// Sends `join` and waits for the welcome; returns the id the relay gave this connection.
async fn join_on(ws: &mut Ws, room: &str) -> PeerId {
    join_with_peers(ws, room).await.0
}

/// Sends `join` and waits for the welcome; returns this connection's id and the ids of the peers
/// already in the room.
async fn join_with_peers(ws: &mut Ws, room: &str) -> (PeerId, Vec<PeerId>) {
    send(ws, &join_msg(room, None, None)).await;
    let welcome = expect_welcome(ws, room).await;
    assert_eq!(welcome.ice_servers, ice_servers());
    (
        welcome.id,
        welcome.peers.into_iter().map(|peer| peer.id).collect(),
    )
}

/// Sends `join` with a display name and waits for the welcome.
async fn join_as(ws: &mut Ws, room: &str, name: &str) -> Welcome {
    send(ws, &join_msg(room, Some(name), None)).await;
    let welcome = expect_welcome(ws, room).await;
    assert_eq!(welcome.ice_servers, ice_servers());
    welcome
}

/// Joins `a` then `b` to `room` and consumes the `peer-joined` that `a` gets.
async fn pair(relay: &TestRelay, room: &str) -> ((Ws, PeerId), (Ws, PeerId)) {
    let (mut a, a_id) = relay.join(room).await;
    let (b, b_id) = relay.join(room).await;
    assert_eq!(recv(&mut a).await, peer_joined(b_id, None));
    ((a, a_id), (b, b_id))
}

fn peer_joined(id: PeerId, name: Option<&str>) -> ServerMsg {
    ServerMsg::PeerJoined {
        peer: PeerInfo {
            id,
            name: name.map(Into::into),
            session: None,
        },
    }
}

/// `peer-left` for a peer that said goodbye.
fn left(peer: PeerId) -> ServerMsg {
    ServerMsg::PeerLeft {
        peer,
        reconnecting: false,
    }
}

/// `peer-left` for a peer whose connection dropped: it may still resume.
fn dropped(peer: PeerId) -> ServerMsg {
    ServerMsg::PeerLeft {
        peer,
        reconnecting: true,
    }
}

fn offer(sdp: &str) -> ClientMsg {
    ClientMsg::Offer {
        to: None,
        sdp: sdp.into(),
    }
}

fn offer_to(to: PeerId, sdp: &str) -> ClientMsg {
    ClientMsg::Offer {
        to: Some(to),
        sdp: sdp.into(),
    }
}

/// The offer event a peer gets from `from`.
fn offer_from(from: PeerId, from_name: Option<&str>, sdp: &str) -> ServerMsg {
    ServerMsg::Offer {
        from,
        from_name: from_name.map(Into::into),
        sdp: sdp.into(),
    }
}

fn candidate(n: usize) -> IceCandidate {
    IceCandidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122260223 192.168.1.2 {} typ host",
            50_000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

/// Sends an answer from `from` (addressed to `to`, or to nobody in particular) and checks that
/// it reaches `dest`, stamped with the sender's id and display name.
async fn assert_answer_reaches(
    from: &mut Ws,
    to: Option<PeerId>,
    dest: &mut Ws,
    from_id: PeerId,
    from_name: Option<&str>,
    sdp: &str,
) {
    let answer = ClientMsg::Answer {
        to,
        sdp: sdp.into(),
    };
    send(from, &answer).await;
    let expected = ServerMsg::Answer {
        from: from_id,
        from_name: from_name.map(Into::into),
        sdp: sdp.into(),
    };
    assert_eq!(recv(dest).await, expected);
}

/// Checks that an offer from `from` (which has no display name) reaches `to`, the other peer
/// of their room.
async fn assert_offer_reaches(from: &mut Ws, from_id: PeerId, to: &mut Ws, sdp: &str) {
    send(from, &offer(sdp)).await;
    assert_eq!(recv(to).await, offer_from(from_id, None, sdp));
}

#[tokio::test]
async fn peers_pair_up_in_a_room() {
    let relay = TestRelay::start().await;
    let mut a = relay.connect().await;
    let a_welcome = join_as(&mut a, "r", "Alice").await;
    assert!(a_welcome.peers.is_empty(), "{:?}", a_welcome.peers);

    let mut b = relay.connect().await;
    send(&mut b, &join_msg("r", None, None)).await;
    let b_welcome = expect_welcome(&mut b, "r").await;
    assert_ne!(a_welcome.id, b_welcome.id);
    assert_ne!(a_welcome.token, b_welcome.token);
    assert_eq!(
        b_welcome.peers,
        vec![PeerInfo {
            id: a_welcome.id,
            name: Some("Alice".into()),
            session: None,
        }]
    );
    assert_eq!(recv(&mut a).await, peer_joined(b_welcome.id, None));
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn signals_reach_the_other_peer_of_the_room_only() {
    let relay = TestRelay::start().await;
    let ((mut a, a_id), (mut b, b_id)) = pair(&relay, "r").await;
    let ((mut c, c_id), (mut d, _d_id)) = pair(&relay, "s").await;

    assert_offer_reaches(&mut a, a_id, &mut b, "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n").await;
    assert_answer_reaches(&mut b, None, &mut a, b_id, None, "v=0 answer").await;
    let candidate = IceCandidate {
        candidate: "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(1),
    };
    // Addressed explicitly this time.
    send(
        &mut a,
        &ClientMsg::Candidate {
            to: Some(b_id),
            candidate: candidate.clone(),
        },
    )
    .await;
    assert_eq!(
        recv(&mut b).await,
        ServerMsg::Candidate {
            from: a_id,
            from_name: None,
            candidate
        }
    );
    send(&mut b, &ClientMsg::HangUp { to: None }).await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::HangUp {
            from: b_id,
            from_name: None
        }
    );

    // A peer of another room cannot be addressed, and hears nothing of it.
    send(&mut a, &offer_to(c_id, "v=0 stray")).await;
    recv_error(&mut a, ErrorKind::NoPeer).await;
    // Nor can a peer address itself.
    send(&mut a, &offer_to(a_id, "v=0 self")).await;
    recv_error(&mut a, ErrorKind::NoPeer).await;

    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
    assert_silent(&mut c).await;
    assert_silent(&mut d).await;
}

#[tokio::test]
async fn a_third_peer_is_refused_and_hears_nothing() {
    let relay = TestRelay::start().await;
    let ((mut a, a_id), (mut b, _b_id)) = pair(&relay, "r").await;

    let mut c = relay.connect().await;
    send(&mut c, &join_msg("r", None, None)).await;
    recv_error(&mut c, ErrorKind::RoomFull).await;
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;

    assert_offer_reaches(&mut a, a_id, &mut b, "v=0 after refusal").await;
    assert_silent(&mut c).await;

    // The refused socket is still usable.
    let (c_id, peers) = join_with_peers(&mut c, "other").await;
    assert!(peers.is_empty(), "{peers:?}");
    let mut e = relay.connect().await;
    let (e_id, peers) = join_with_peers(&mut e, "other").await;
    assert_eq!(peers, vec![c_id]);
    assert_eq!(recv(&mut c).await, peer_joined(e_id, None));
    assert_offer_reaches(&mut e, e_id, &mut c, "v=0 other room").await;
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn a_closed_peer_leaves_its_room() {
    let relay = TestRelay::start().await;
    let ((mut a, _a_id), (b, b_id)) = pair(&relay, "r").await;

    // The relay answers the closing handshake.
    close(b).await;
    assert_eq!(recv(&mut a).await, left(b_id));

    // The slot is free again.
    let (c, c_id) = relay.join("r").await;
    assert_eq!(recv(&mut a).await, peer_joined(c_id, None));

    // A connection that drops without a closing handshake leaves too.
    drop(c);
    assert_eq!(recv(&mut a).await, dropped(c_id));
    let (_d, d_id) = relay.join("r").await;
    assert_eq!(recv(&mut a).await, peer_joined(d_id, None));
    assert_silent(&mut a).await;
}

/// A page that drops its socket to connect again (it stopped hearing the relay) closes with
/// 4000: the others are told it is reconnecting, not gone, and it gets its place back. Before,
/// its Close read as a goodbye: the others ended their calls with it, although its media flowed.
#[tokio::test]
async fn a_peer_closing_to_reconnect_keeps_its_place() {
    let relay = TestRelay::start().await;
    let (mut a, a_welcome) = relay.join_as("r", "ann").await;
    let (mut b, b_welcome) = relay.join_as("r", "bob").await;
    assert_eq!(recv(&mut a).await, peer_joined(b_welcome.id, Some("bob")));

    b.close(Some(tungstenite::protocol::CloseFrame {
        code: CLOSE_RECONNECTING.into(),
        reason: "".into(),
    }))
    .await
    .expect("sends a Close frame");
    assert_eq!(recv(&mut a).await, dropped(b_welcome.id));

    let mut b = relay.connect().await;
    send(&mut b, &join_msg("r", None, Some(&b_welcome.token))).await;
    let resumed = expect_welcome(&mut b, "r").await;
    assert_eq!(resumed.id, b_welcome.id);
    assert_eq!(recv(&mut a).await, peer_joined(b_welcome.id, Some("bob")));
    send(&mut a, &offer_to(b_welcome.id, "v=0 again")).await;
    assert_eq!(
        recv(&mut b).await,
        offer_from(a_welcome.id, Some("ann"), "v=0 again")
    );
}

#[tokio::test]
async fn bad_input_is_answered_with_typed_errors() {
    let hold = Duration::from_millis(300);
    let relay = TestRelay::start_with_limits(Limits {
        hold,
        ..Limits::default()
    })
    .await;

    // Before joining.
    let mut a = relay.connect().await;
    send(&mut a, &offer("v=0 too early")).await;
    recv_error(&mut a, ErrorKind::NotJoined).await;
    send(&mut a, &ClientMsg::HangUp { to: None }).await;
    recv_error(&mut a, ErrorKind::NotJoined).await;
    for room in [
        String::new(),
        "x".repeat(protocol::MAX_ROOM_LEN + 1),
        "a\nb".into(),
    ] {
        send(&mut a, &join_msg(&room, None, None)).await;
        recv_error(&mut a, ErrorKind::InvalidRoom).await;
    }
    send_text(&mut a, "{nope").await;
    recv_error(&mut a, ErrorKind::InvalidJson).await;
    let a_id = join_on(&mut a, &"x".repeat(protocol::MAX_ROOM_LEN)).await;
    // Nobody else is in the room: the offer is held for the next peer, and the sender is told
    // when nobody came to take it.
    send(&mut a, &offer("v=0 alone")).await;
    recv_error(&mut a, ErrorKind::Expired).await;
    // A peer that is not in the room and may not come back cannot be addressed.
    send(&mut a, &offer_to(PeerId(999_999), "v=0 nobody")).await;
    recv_error(&mut a, ErrorKind::NoPeer).await;
    a.close(None).await.expect("closes");

    // Each bad input, from a joined peer whose partner must not notice.
    let ((mut a, a_id2), (mut b, b_id)) = pair(&relay, "r").await;
    assert_ne!(a_id, a_id2);
    let bad: [(Message, ErrorKind); 8] = [
        (Message::text("{nope"), ErrorKind::InvalidJson),
        (Message::text("[1, 2]"), ErrorKind::InvalidJson),
        (Message::text(r#"{"type":"dance"}"#), ErrorKind::UnknownType),
        (Message::text(r#"{"sdp":"v=0"}"#), ErrorKind::UnknownType),
        (
            Message::text(r#"{"type":"offer"}"#),
            ErrorKind::InvalidMessage,
        ),
        (
            Message::text(r#"{"type":"candidate","candidate":"not an object"}"#),
            ErrorKind::InvalidMessage,
        ),
        (Message::binary(vec![1, 2, 3]), ErrorKind::BinaryFrame),
        (
            Message::text(r#"{"type":"join","room":"r"}"#),
            ErrorKind::AlreadyJoined,
        ),
    ];
    for (i, (frame, kind)) in bad.into_iter().enumerate() {
        a.send(frame).await.expect("sends");
        recv_error(&mut a, kind).await;
        assert_silent(&mut b).await;
        // The connection still works.
        assert_offer_reaches(&mut a, a_id2, &mut b, &format!("v=0 after bad input {i}")).await;
    }
    // A second join into another room is refused just the same, and leaves the peer where it is.
    send(&mut a, &join_msg("elsewhere", None, None)).await;
    recv_error(&mut a, ErrorKind::AlreadyJoined).await;
    assert_silent(&mut b).await;
    assert_offer_reaches(&mut b, b_id, &mut a, "v=0 still here").await;
    assert_silent(&mut a).await;
}

#[tokio::test]
async fn an_oversized_message_closes_only_its_connection() {
    let relay = TestRelay::start().await;
    let ((mut a, a_id), (mut b, b_id)) = pair(&relay, "r").await;

    // A message of exactly the limit is relayed.
    let empty = offer("").to_json();
    let sdp = "x".repeat(MAX_MESSAGE_BYTES - empty.len());
    let largest = offer(&sdp).to_json();
    assert_eq!(largest.len(), MAX_MESSAGE_BYTES);
    send_text(&mut a, &largest).await;
    assert_eq!(recv(&mut b).await, offer_from(a_id, None, &sdp));

    // One byte more closes the connection with 1009.
    let too_big = offer(&format!("{sdp}x")).to_json();
    assert_eq!(too_big.len(), MAX_MESSAGE_BYTES + 1);
    send_text(&mut b, &too_big).await;
    recv_close(&mut b, CLOSE_MESSAGE_TOO_BIG).await;
    assert_eq!(recv(&mut a).await, dropped(b_id));
    assert_silent(&mut a).await;

    // The relay keeps serving: the slot is free and signals flow.
    let (mut c, c_id) = relay.join("r").await;
    assert_eq!(recv(&mut a).await, peer_joined(c_id, None));
    assert_offer_reaches(&mut c, c_id, &mut a, "v=0 after the big one").await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_going_away() {
    let mut relay = TestRelay::start().await;
    let ((mut a, _), (mut b, _)) = pair(&relay, "r").await;
    let mut lobby = relay.connect().await;

    relay.shutdown.cancel();
    recv_close(&mut a, CLOSE_GOING_AWAY).await;
    recv_close(&mut b, CLOSE_GOING_AWAY).await;
    recv_close(&mut lobby, CLOSE_GOING_AWAY).await;

    tokio::time::timeout(Duration::from_secs(3), &mut relay.handle)
        .await
        .expect("run returns soon after shutdown")
        .expect("run does not panic")
        .expect("run returns Ok");
}

#[tokio::test]
async fn names_are_unique_in_a_room_and_stamp_signals() {
    let relay = TestRelay::start().await;
    let (mut ann, ann_welcome) = relay.join_as("r", "ann").await;
    let ann_id = ann_welcome.id;

    let mut bob = relay.connect().await;
    send(&mut bob, &join_msg("r", Some("ann"), None)).await;
    recv_error(&mut bob, ErrorKind::NameTaken).await;
    assert_silent(&mut ann).await;
    // The refused socket is still usable: it tries again under another name.
    let bob_welcome = join_as(&mut bob, "r", "bob").await;
    let bob_id = bob_welcome.id;
    assert_eq!(
        bob_welcome.peers,
        vec![PeerInfo {
            id: ann_id,
            name: Some("ann".into()),
            session: None,
        }]
    );
    assert_eq!(recv(&mut ann).await, peer_joined(bob_id, Some("bob")));

    // The same name in another room is fine.
    let (mut other_ann, other_welcome) = relay.join_as("s", "ann").await;
    assert_ne!(other_welcome.id, ann_id);
    assert!(other_welcome.peers.is_empty(), "{:?}", other_welcome.peers);

    // Every signal is stamped with the sender's id and name.
    send(&mut ann, &offer("v=0 from ann")).await;
    assert_eq!(
        recv(&mut bob).await,
        offer_from(ann_id, Some("ann"), "v=0 from ann")
    );
    assert_answer_reaches(
        &mut bob,
        Some(ann_id),
        &mut ann,
        bob_id,
        Some("bob"),
        "v=0 from bob",
    )
    .await;
    send(
        &mut ann,
        &ClientMsg::Candidate {
            to: None,
            candidate: candidate(1),
        },
    )
    .await;
    assert_eq!(
        recv(&mut bob).await,
        ServerMsg::Candidate {
            from: ann_id,
            from_name: Some("ann".into()),
            candidate: candidate(1)
        }
    );
    send(&mut bob, &ClientMsg::HangUp { to: None }).await;
    assert_eq!(
        recv(&mut ann).await,
        ServerMsg::HangUp {
            from: bob_id,
            from_name: Some("bob".into())
        }
    );
    // The stamps are the relay's: a sender cannot pass itself off as somebody else.
    send_text(
        &mut bob,
        r#"{"type":"offer","sdp":"v=0 spoof","from":12345,"fromName":"mallory"}"#,
    )
    .await;
    assert_eq!(
        recv(&mut ann).await,
        offer_from(bob_id, Some("bob"), "v=0 spoof")
    );
    assert_silent(&mut ann).await;
    assert_silent(&mut bob).await;
    assert_silent(&mut other_ann).await;
}

#[tokio::test]
async fn a_signal_sent_alone_is_held_for_the_next_peer() {
    let hold = Duration::from_secs(1);
    let relay = TestRelay::start_with_limits(Limits {
        hold,
        ..Limits::default()
    })
    .await;
    let (mut a, a_welcome) = relay.join_as("r", "ann").await;
    let a_id = a_welcome.id;
    send(&mut a, &offer("v=0 early")).await;
    send(
        &mut a,
        &ClientMsg::Candidate {
            to: None,
            candidate: candidate(7),
        },
    )
    .await;
    // A round trip: once it is answered, the relay has read (and held) both signals.
    send_text(&mut a, "{nope").await;
    recv_error(&mut a, ErrorKind::InvalidJson).await;

    let mut b = relay.connect().await;
    let (b_id, peers) = join_with_peers(&mut b, "r").await;
    assert_eq!(peers, vec![a_id]);
    // After the welcome, in the order they were sent.
    assert_eq!(
        recv(&mut b).await,
        offer_from(a_id, Some("ann"), "v=0 early")
    );
    assert_eq!(
        recv(&mut b).await,
        ServerMsg::Candidate {
            from: a_id,
            from_name: Some("ann".into()),
            candidate: candidate(7)
        }
    );
    assert_eq!(recv(&mut a).await, peer_joined(b_id, None));
    // They were taken: the sender hears no `expired` when the hold time is over.
    assert_silent_for(&mut a, hold + Duration::from_millis(500)).await;
    assert_silent(&mut b).await;

    let metrics = relay.metrics().await;
    assert_eq!(metric(&metrics, "relay_messages_relayed_total"), 2);
    assert_eq!(metric(&metrics, r#"relay_errors_total{kind="expired"}"#), 0);
}

#[tokio::test]
async fn a_held_signal_that_nobody_takes_expires() {
    let hold = Duration::from_millis(300);
    let relay = TestRelay::start_with_limits(Limits {
        hold,
        ..Limits::default()
    })
    .await;
    let (mut a, a_id) = relay.join("r").await;
    let sent = Instant::now();
    send(&mut a, &offer("v=0 into the void")).await;
    recv_error(&mut a, ErrorKind::Expired).await;
    let waited = sent.elapsed();
    assert!(
        waited >= hold,
        "expired after {waited:?}, before the hold time"
    );

    // The expired offer is gone: a peer that joins now does not get it.
    let mut b = relay.connect().await;
    let (b_id, peers) = join_with_peers(&mut b, "r").await;
    assert_eq!(peers, vec![a_id]);
    assert_eq!(recv(&mut a).await, peer_joined(b_id, None));
    assert_silent(&mut b).await;
    assert_silent(&mut a).await;

    let metrics = relay.metrics().await;
    assert_eq!(metric(&metrics, r#"relay_errors_total{kind="expired"}"#), 1);
    assert_eq!(metric(&metrics, "relay_messages_relayed_total"), 0);
}

#[tokio::test]
async fn a_dropped_peer_resumes_its_id_and_name() {
    // The default grace period (15 s) is far longer than this test.
    let relay = TestRelay::start().await;
    let (a, a_welcome) = relay.join_as("r", "ann").await;
    let (mut b, b_welcome) = relay.join_as("r", "bob").await;
    let (a_id, b_id) = (a_welcome.id, b_welcome.id);

    // A's connection drops without a closing handshake.
    drop(a);
    assert_eq!(recv(&mut b).await, dropped(a_id));

    // During the grace period A's name is kept for it...
    let mut c = relay.connect().await;
    send(&mut c, &join_msg("r", Some("ann"), None)).await;
    recv_error(&mut c, ErrorKind::NameTaken).await;
    // ...an unknown token gets nothing, and leaves the socket usable.
    send(
        &mut c,
        &join_msg("r", None, Some("0123456789abcdef0123456789abcdef")),
    )
    .await;
    recv_error(&mut c, ErrorKind::InvalidResume).await;
    let c_welcome = join_as(&mut c, "elsewhere", "ann").await;
    assert!(c_welcome.peers.is_empty(), "{:?}", c_welcome.peers);
    assert_silent(&mut b).await;

    // A signal for the dropped peer waits for it instead of being refused.
    send(&mut b, &offer_to(a_id, "v=0 while you were away")).await;
    assert_silent(&mut b).await;

    // A comes back with its token: same id, same name, same room.
    let mut a = relay.connect().await;
    send(&mut a, &join_msg("r", None, Some(&a_welcome.token))).await;
    let resumed = expect_welcome(&mut a, "r").await;
    assert_eq!(resumed.id, a_id);
    assert_eq!(
        resumed.peers,
        vec![PeerInfo {
            id: b_id,
            name: Some("bob".into()),
            session: None,
        }]
    );
    assert_ne!(
        resumed.token, a_welcome.token,
        "a token is good for one resume"
    );
    assert_eq!(
        recv(&mut a).await,
        offer_from(b_id, Some("bob"), "v=0 while you were away")
    );
    assert_eq!(recv(&mut b).await, peer_joined(a_id, Some("ann")));
    assert_answer_reaches(&mut a, None, &mut b, a_id, Some("ann"), "v=0 back").await;

    // The old token is used up.
    let mut d = relay.connect().await;
    send(&mut d, &join_msg("r", None, Some(&a_welcome.token))).await;
    recv_error(&mut d, ErrorKind::InvalidResume).await;
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
    assert_silent(&mut c).await;
}

#[tokio::test]
async fn a_resume_token_is_refused_after_the_grace_period() {
    let grace = Duration::from_millis(300);
    let relay = TestRelay::start_with_limits(Limits {
        resume_grace: grace,
        ..Limits::default()
    })
    .await;
    let (a, a_welcome) = relay.join_as("r", "ann").await;
    let (mut b, _) = relay.join_as("r", "bob").await;
    let a_id = a_welcome.id;
    drop(a);
    assert_eq!(recv(&mut b).await, dropped(a_id));
    tokio::time::sleep(grace + Duration::from_millis(300)).await;

    // The dropped peer is gone for good: a signal for it is refused rather than held.
    send(&mut b, &offer_to(a_id, "v=0 too late")).await;
    recv_error(&mut b, ErrorKind::NoPeer).await;

    // Its token is refused, and the socket stays usable...
    let mut a = relay.connect().await;
    send(&mut a, &join_msg("r", None, Some(&a_welcome.token))).await;
    recv_error(&mut a, ErrorKind::InvalidResume).await;
    // ...and its name is free again.
    let again = join_as(&mut a, "r", "ann").await;
    assert_ne!(again.id, a_id);
    assert_eq!(recv(&mut b).await, peer_joined(again.id, Some("ann")));
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

/// A WebSocket client spoken by hand over TCP. It reads and writes only when told to, so, unlike
/// tokio-tungstenite's, it never answers a ping behind the test's back.
struct RawClient {
    stream: TcpStream,
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

impl RawClient {
    async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("sends the handshake");
        // Byte by byte, so that no frame after the head is read into a buffer here.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(RECV_TIMEOUT, stream.read_u8())
                .await
                .expect("the handshake is answered in time")
                .expect("reads the handshake");
            head.push(byte);
        }
        let head = String::from_utf8(head).expect("the head is text");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { stream }
    }

    /// Sends one masked text frame.
    async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | OP_TEXT];
        let len = u16::try_from(payload.len()).expect("a short frame");
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).await.expect("sends a frame");
    }

    /// The next frame's opcode and payload; `None` when the relay has closed the connection.
    async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        let read = tokio::time::timeout(RECV_TIMEOUT, self.stream.read_exact(&mut head))
            .await
            .expect("a frame or the end arrives in time");
        match read {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(err) => panic!("reading failed: {err}"),
        }
        assert_eq!(head[1] & 0x80, 0, "frames from the relay are not masked");
        let len = match head[1] & 0x7f {
            126 => usize::from(self.stream.read_u16().await.expect("reads a length")),
            127 => usize::try_from(self.stream.read_u64().await.expect("reads a length"))
                .expect("a length that fits"),
            len => usize::from(len),
        };
        let mut payload = vec![0; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .expect("reads a payload");
        Some((head[0] & 0x0f, payload))
    }
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let idle = Duration::from_millis(300);
    let relay = TestRelay::start_with_limits(Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: idle,
        ..Limits::default()
    })
    .await;
    let started = Instant::now();
    let mut a = RawClient::connect(relay.addr).await;
    a.send_text(&join_msg("r", None, None).to_json()).await;
    let a_id = loop {
        match a.read_frame().await {
            Some((OP_PING, _)) => {}
            Some((OP_TEXT, text)) => match parse_event(std::str::from_utf8(&text).expect("text")) {
                ServerMsg::Welcome { id, .. } => break id,
                other => panic!("expected a welcome, got {other:?}"),
            },
            other => panic!("expected a welcome, got {other:?}"),
        }
    };
    // From now on A neither reads nor writes: it answers no ping.

    let mut b = relay.connect().await;
    let (b_id, peers) = join_with_peers(&mut b, "r").await;
    assert_eq!(peers, vec![a_id]);
    let b_joined = Instant::now();
    // B reads, and so answers pings: it hears that A is gone...
    assert_eq!(recv(&mut b).await, dropped(a_id));
    let (since_start, since_b) = (started.elapsed(), b_joined.elapsed());
    assert!(
        since_start >= idle,
        "dropped {since_start:?} after connecting, before the idle timeout"
    );
    assert!(
        since_b < idle + Duration::from_secs(3),
        "dropped only {since_b:?} after B joined"
    );
    // ...and is not dropped itself, although it sends nothing.
    assert_silent_for(&mut b, idle * 4).await;

    // A was pinged (and told of B), then told why it was dropped, then the connection ended.
    let mut pings = 0;
    loop {
        match a.read_frame().await {
            Some((OP_PING, _)) => pings += 1,
            Some((OP_TEXT, text)) => assert_eq!(
                parse_event(std::str::from_utf8(&text).expect("text")),
                peer_joined(b_id, None)
            ),
            Some((OP_CLOSE, payload)) => {
                assert!(payload.len() >= 2, "a close code");
                assert_eq!(
                    u16::from_be_bytes([payload[0], payload[1]]),
                    CLOSE_GOING_AWAY
                );
                break;
            }
            other => panic!("expected pings then a Close frame, got {other:?}"),
        }
    }
    assert!(pings >= 1, "A was pinged before being dropped");
    assert_eq!(
        a.read_frame().await,
        None,
        "the relay closed the connection"
    );

    // B is still connected, and A's place is free.
    let (_c, c_id) = relay.join("r").await;
    assert_eq!(recv(&mut b).await, peer_joined(c_id, None));
    assert_ne!(b_id, c_id);
}

#[tokio::test]
async fn sockets_opened_together_are_not_pinged_together() {
    // Clients that connect at once (all of them, back after a restart) would otherwise be
    // pinged in one burst every interval: a stall of everybody's messages each time.
    let interval = Duration::from_millis(1000);
    let relay = TestRelay::start_with_limits(Limits {
        ping_interval: interval,
        idle_timeout: interval * 10,
        ..Limits::default()
    })
    .await;
    let opened = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(RawClient::connect(relay.addr).await);
    }
    let mut waiting = tokio::task::JoinSet::new();
    for mut client in clients {
        waiting.spawn(async move {
            loop {
                match client.read_frame().await {
                    Some((OP_PING, _)) => return opened.elapsed(),
                    Some(_) => {}
                    None => panic!("closed before its first ping"),
                }
            }
        });
    }
    let firsts: Vec<Duration> = waiting.join_all().await;
    let first = *firsts.iter().min().expect("twelve pings");
    let last = *firsts.iter().max().expect("twelve pings");
    assert!(
        first >= interval / 2,
        "a first ping after {first:?}, before half the interval"
    );
    // Spread over the second half of the interval: twelve such times all fall within a tenth
    // of it about once in four million runs; unspread, they come within a few ms.
    assert!(
        last - first >= interval / 10,
        "the first pings came within {:?} of each other: {firsts:?}",
        last - first
    );
}

#[tokio::test]
async fn messages_beyond_the_rate_are_refused_and_the_connection_stays_open() {
    let relay = TestRelay::start_with_limits(Limits {
        rate_per_sec: 10.0,
        rate_burst: 5.0,
        ..Limits::default()
    })
    .await;
    let ((mut a, a_id), (mut b, _)) = pair(&relay, "r").await;
    const SENT: usize = 20;
    for i in 0..SENT {
        a.feed(Message::text(offer(&format!("v=0 {i}")).to_json()))
            .await
            .expect("queues");
    }
    a.flush().await.expect("sends");

    // Once the bucket has refilled, the connection works as before: a last offer, and a bad frame
    // whose answer marks the end of what A is told.
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&mut a, &offer("v=0 after a pause")).await;
    send_text(&mut a, "{nope").await;

    let mut refused = 0;
    loop {
        match recv(&mut a).await {
            ServerMsg::Error {
                kind: ErrorKind::RateLimited,
                ..
            } => refused += 1,
            ServerMsg::Error {
                kind: ErrorKind::InvalidJson,
                ..
            } => break,
            other => panic!("expected rate-limited errors, got {other:?}"),
        }
    }
    let mut numbers = Vec::new();
    loop {
        match recv(&mut b).await {
            ServerMsg::Offer { from, sdp, .. } if from == a_id && sdp == "v=0 after a pause" => {
                break
            }
            ServerMsg::Offer { from, sdp, .. } if from == a_id => numbers.push(
                sdp.strip_prefix("v=0 ")
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("one of the offers"),
            ),
            other => panic!("expected A's offers, got {other:?}"),
        }
    }
    assert!(refused > 0, "20 messages at once exceed a burst of 5");
    assert_eq!(
        refused + numbers.len(),
        SENT,
        "each message is either relayed or refused: {numbers:?}"
    );
    // `join` took one of the five.
    assert!(numbers.len() >= 4, "{numbers:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn a_flood_closes_the_connection_with_policy_violation() {
    let relay = TestRelay::start_with_limits(Limits {
        rate_per_sec: 10.0,
        rate_burst: 5.0,
        abuse_limit: 10,
        ..Limits::default()
    })
    .await;
    let ((mut a, a_id), (mut b, _)) = pair(&relay, "r").await;
    // Small frames flushed at once: the relay reads them all before it closes the connection.
    for _ in 0..60 {
        a.feed(Message::text(ClientMsg::HangUp { to: None }.to_json()))
            .await
            .expect("queues");
    }
    a.flush().await.expect("sends");

    let mut refused = 0;
    loop {
        match next_frame(&mut a).await {
            Message::Text(text) => match parse_event(text.as_str()) {
                ServerMsg::Error {
                    kind: ErrorKind::RateLimited,
                    ..
                } => refused += 1,
                other => panic!("expected rate-limited errors, got {other:?}"),
            },
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), CLOSE_POLICY, "{frame:?}");
                break;
            }
            other => panic!("expected a Close frame with code 1008, got {other:?}"),
        }
    }
    // The tenth refusal in a row closes the connection instead of being answered; answers still
    // queued then are dropped with the connection.
    assert!(refused < 10, "{refused} refusals answered");

    // B got what was let through, then heard that A left.
    let mut hang_ups = 0;
    loop {
        match recv(&mut b).await {
            ServerMsg::HangUp { from, .. } if from == a_id => hang_ups += 1,
            ServerMsg::PeerLeft { peer, .. } if peer == a_id => break,
            other => panic!("expected hang-ups then peer-left, got {other:?}"),
        }
    }
    assert!(
        (4..60).contains(&hang_ups),
        "{hang_ups} hang-ups let through"
    );
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn connections_beyond_max_sessions_get_503_until_one_closes() {
    let relay = TestRelay::start_with_limits(Limits {
        max_sessions: 2,
        ..Limits::default()
    })
    .await;
    let (mut first, first_id) = relay.join("r").await;
    let mut second = relay.connect().await;
    assert_eq!(
        refused_with(relay.try_connect(None).await),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Plain HTTP is not counted.
    assert_eq!(get_with(relay.addr, "/healthz", "").await.status, 200);
    // The open connections work as before.
    let (second_id, peers) = join_with_peers(&mut second, "r").await;
    assert_eq!(peers, vec![first_id]);
    assert_eq!(recv(&mut first).await, peer_joined(second_id, None));

    close(first).await;
    assert_eq!(recv(&mut second).await, left(first_id));
    let mut third = relay
        .connect_once_freed(StatusCode::SERVICE_UNAVAILABLE)
        .await;
    let (third_id, peers) = join_with_peers(&mut third, "r").await;
    assert_eq!(peers, vec![second_id]);
    assert_eq!(recv(&mut second).await, peer_joined(third_id, None));
    // Full again.
    assert_eq!(
        refused_with(relay.try_connect(None).await),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_second_connection_from_one_address_gets_429() {
    let relay = TestRelay::start_with_limits(Limits {
        max_per_ip: 1,
        ..Limits::default()
    })
    .await;
    let (first, _) = relay.join("r").await;
    assert_eq!(
        refused_with(relay.try_connect(None).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    close(first).await;
    let mut again = relay
        .connect_once_freed(StatusCode::TOO_MANY_REQUESTS)
        .await;
    join_on(&mut again, "r").await;
    assert_eq!(
        refused_with(relay.try_connect(None).await),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The relay does the WebSocket upgrade itself: requests that are not one get axum's answers.
#[tokio::test]
async fn requests_that_are_not_upgrades_are_refused_as_axum_does() {
    let relay = TestRelay::start().await;
    let cases = [
        (
            "",
            "400 Bad Request",
            "Connection header did not include 'upgrade'",
        ),
        (
            "Connection: Upgrade\r\n",
            "400 Bad Request",
            "`Upgrade` header did not include 'websocket'",
        ),
        (
            "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n",
            "400 Bad Request",
            "`Sec-WebSocket-Key` header missing",
        ),
        (
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a2V5\r\n\
             Sec-WebSocket-Version: 8\r\n",
            "400 Bad Request",
            "`Sec-WebSocket-Version` header did not include '13'",
        ),
    ];
    for (headers, status, body) in cases {
        let mut stream = TcpStream::connect(relay.addr).await.expect("connects");
        let request = format!("GET /ws HTTP/1.1\r\nHost: {}\r\n{headers}\r\n", relay.addr);
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut response = vec![0; 4096];
        let mut len = 0;
        while !String::from_utf8_lossy(&response[..len]).ends_with(body) {
            let n = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut response[len..]))
                .await
                .expect("answered in time")
                .expect("reads");
            assert!(n > 0, "{}", String::from_utf8_lossy(&response[..len]));
            len += n;
        }
        let response = String::from_utf8_lossy(&response[..len]);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{response}"
        );
    }
}

#[tokio::test]
async fn pages_of_other_sites_may_not_connect() {
    let relay = TestRelay::start().await;
    assert_eq!(
        refused_with(relay.try_connect(Some("https://evil.example")).await),
        StatusCode::FORBIDDEN
    );
    let own = format!("http://127.0.0.1:{}", relay.addr.port());
    let mut page = relay
        .try_connect(Some(&own))
        .await
        .expect("a page of the relay's own origin connects");
    let page_id = join_on(&mut page, "r").await;
    // A program that sends no Origin has no visitor's credentials to abuse: it is let in.
    let mut program = relay.connect().await;
    let (_, peers) = join_with_peers(&mut program, "r").await;
    assert_eq!(peers, vec![page_id]);
    assert_eq!(metric(&relay.metrics().await, "relay_refused_total"), 1);
}

#[tokio::test]
async fn an_origin_allowlist_admits_only_its_origins() {
    let relay = TestRelay::start_with(server::Config {
        allowed_origins: vec!["https://app.example".into()],
        ..test_config()
    })
    .await;
    let mut app = relay
        .try_connect(Some("https://app.example"))
        .await
        .expect("the listed origin connects");
    join_on(&mut app, "r").await;
    let own = format!("http://127.0.0.1:{}", relay.addr.port());
    for origin in [
        own.as_str(),
        "https://evil.example",
        "https://app.example.evil",
    ] {
        assert_eq!(
            refused_with(relay.try_connect(Some(origin)).await),
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_dropped() {
    let relay = TestRelay::start_with_limits(Limits {
        // The sender's speed is not what this test is about.
        rate_per_sec: 1e9,
        rate_burst: 1e9,
        ..Limits::default()
    })
    .await;
    let ((mut a, _a_id), (b, b_id)) = pair(&relay, "slow").await;
    let ((mut c, c_id), (mut d, _)) = pair(&relay, "other").await;
    // B never reads again. The kernel's buffers take a few megabytes, then its outbox fills.
    let big = offer(&"x".repeat(60 * 1024)).to_json();
    let mut sent = 0;
    let mut b_left = false;
    while !b_left {
        assert!(
            sent < 3000,
            "still not dropped after {sent} messages of 60 KB"
        );
        for _ in 0..16 {
            a.feed(Message::text(big.as_str())).await.expect("queues");
        }
        a.flush().await.expect("sends");
        sent += 16;
        while let Ok(frame) = tokio::time::timeout(Duration::from_millis(1), a.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) => match parse_event(text.as_str()) {
                    ServerMsg::PeerLeft { peer, .. } if peer == b_id => b_left = true,
                    // What A sends once B's outbox is full, or B is gone, is refused.
                    ServerMsg::Error {
                        kind: ErrorKind::NoPeer,
                        ..
                    } => {}
                    other => panic!("expected B to leave, got {other:?}"),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected B to leave, got {other:?}"),
            }
        }
    }

    // The relay's other rooms keep working.
    assert_offer_reaches(&mut c, c_id, &mut d, "v=0 unaffected").await;
    // And it lets go of B's connection, its place and its memory, although B still reads
    // nothing (it is still open on this side).
    relay.wait_for_metric("relay_connections", 3).await;
    assert_eq!(metric(&relay.metrics().await, "relay_peers"), 3);
    drop(b);
}

/// Pings and counts the `no-peer` refusals that come before the pong.
async fn refusals_until_pong(ws: &mut Ws) -> usize {
    send(ws, &ClientMsg::Ping).await;
    let mut refused = 0;
    loop {
        match recv(ws).await {
            ServerMsg::Pong => return refused,
            ServerMsg::Error {
                kind: ErrorKind::NoPeer,
                ..
            } => refused += 1,
            other => panic!("expected refusals and a pong, got {other:?}"),
        }
    }
}

/// Signals the relay took for a peer whose socket could not take them yet (it reads slowly) are
/// read by that peer or refused to their sender, when the peer says goodbye before reading them.
/// The relay cannot send after it has read a Close frame, so it must not read one while frames
/// wait for the socket: before, it read the Close and dropped them, reported delivered.
#[tokio::test]
async fn signals_waiting_for_a_slow_reader_that_says_goodbye_are_read_or_refused() {
    // Enough 60 KB offers to fill the kernel's buffers (a few megabytes) and leave the rest
    // waiting in the relay, fewer than would fill B's outbox.
    const OFFERS: usize = 240;
    let relay = TestRelay::start_with_limits(Limits {
        rate_per_sec: 1e9,
        rate_burst: 1e9,
        ..Limits::default()
    })
    .await;
    let ((mut a, _), (mut b, b_id)) = pair(&relay, "slow-goodbye").await;
    let big = offer(&"x".repeat(60 * 1024)).to_json();
    for _ in 0..OFFERS {
        a.feed(Message::text(big.as_str())).await.expect("queues");
    }
    a.flush().await.expect("sends");
    // Once the pong is back, the relay has handed every offer to B's outbox.
    let mut refused = refusals_until_pong(&mut a).await;
    // B says goodbye, then reads what comes until the relay closes.
    b.close(None).await.expect("sends a Close frame");
    let mut read = 0;
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, b.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match parse_event(text.as_str()) {
                ServerMsg::Offer { .. } => read += 1,
                other => panic!("bob got {other:?}"),
            },
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(Message::Close(_))) | None) => break,
            other => panic!("expected offers and the relay's Close frame, got {other:?}"),
        }
    }
    assert_eq!(recv(&mut a).await, left(b_id));
    // Refusals of what B's outbox dropped would come now.
    refused += refusals_until_pong(&mut a).await;
    assert_eq!(
        read + refused,
        OFFERS,
        "{read} offers read and {refused} refused: the rest were lost"
    );
}

#[tokio::test]
async fn health_and_metrics_report_what_happened() {
    let relay = TestRelay::start().await;
    let health = get_with(relay.addr, "/healthz", "").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let response = get_with(relay.addr, "/metrics", "").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        response.headers
    );
    let text = response.text();
    assert_eq!(metric(text, "relay_connections"), 0);
    assert_eq!(metric(text, "relay_messages_relayed_total"), 0);
    assert_eq!(
        metric(text, r#"relay_errors_total{kind="invalid-json"}"#),
        0
    );
    assert!(text.contains("# TYPE relay_connections gauge"), "{text}");
    assert!(
        text.contains("# TYPE relay_messages_relayed_total counter"),
        "{text}"
    );

    let ((mut a, a_id), (mut b, _)) = pair(&relay, "r").await;
    send_text(&mut a, "{nope").await;
    recv_error(&mut a, ErrorKind::InvalidJson).await;
    assert_offer_reaches(&mut a, a_id, &mut b, "v=0 counted").await;
    assert_eq!(
        refused_with(relay.try_connect(Some("https://evil.example")).await),
        StatusCode::FORBIDDEN
    );

    let text = relay.metrics().await;
    assert_eq!(metric(&text, "relay_connections"), 2);
    assert_eq!(metric(&text, "relay_connections_total"), 2);
    assert_eq!(metric(&text, "relay_refused_total"), 1);
    assert_eq!(metric(&text, "relay_rooms"), 1);
    assert_eq!(metric(&text, "relay_peers"), 2);
    assert_eq!(metric(&text, "relay_messages_relayed_total"), 1);
    assert!(metric(&text, "relay_bytes_relayed_total") >= "v=0 counted".len() as u64);
    assert_eq!(
        metric(&text, r#"relay_errors_total{kind="invalid-json"}"#),
        1
    );
    for kind in ErrorKind::ALL {
        let others = metric(&text, &format!("relay_errors_total{{kind=\"{kind}\"}}"));
        if kind != ErrorKind::InvalidJson {
            assert_eq!(others, 0, "{kind}");
        }
    }

    // The gauges follow connections that close.
    close(b).await;
    relay.wait_for_metric("relay_connections", 1).await;
    let text = relay.metrics().await;
    assert_eq!(metric(&text, "relay_peers"), 1);
    assert_eq!(metric(&text, "relay_connections_total"), 2);
}

/// Hammers room "x" in one of three ways until `stop`; returns how many rounds it made.
async fn flood(addr: SocketAddr, style: usize, stop: Arc<AtomicBool>) -> usize {
    let url = format!("ws://{addr}/ws");
    let join = join_msg("x", None, None).to_json();
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::task::yield_now().await;
        rounds += 1;
        match style {
            // Garbage from a joined peer, faster than the rate limit.
            0 => {
                let Ok((mut ws, _)) = connect_async(url.as_str()).await else {
                    continue;
                };
                let _ = ws.feed(Message::text(join.as_str())).await;
                for i in 0..300 {
                    let frame = match i % 5 {
                        0 => Message::text("{nope"),
                        1 => Message::binary(vec![0xff; 64]),
                        2 => Message::text(r#"{"type":"dance"}"#),
                        3 => Message::text(r#"{"type":"offer"}"#),
                        _ => Message::text(r#"{"type":"offer","to":123456789,"sdp":"v=0"}"#),
                    };
                    if ws.feed(frame).await.is_err() {
                        break;
                    }
                }
                let _ = ws.flush().await;
                let _ = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
            }
            // Frames over the size limit.
            1 => {
                let Ok((mut ws, _)) = connect_async(url.as_str()).await else {
                    continue;
                };
                let _ = ws.send(Message::text(join.as_str())).await;
                let _ = ws
                    .send(Message::text("x".repeat(MAX_MESSAGE_BYTES + 1)))
                    .await;
                let _ = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
            }
            // Connections that vanish: after joining, right after the upgrade, mid-handshake.
            _ => {
                if let Ok((mut ws, _)) = connect_async(url.as_str()).await {
                    if rounds % 2 == 0 {
                        let _ = ws.send(Message::text(join.as_str())).await;
                    }
                }
                if let Ok(mut tcp) = TcpStream::connect(addr).await {
                    let _ = tcp
                        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                        .await;
                }
            }
        }
    }
    rounds
}

/// A client that writes many frames at once has them carried out in batches: every one still
/// arrives, once and in order, among the answers to its own requests.
#[tokio::test]
async fn signals_sent_in_one_burst_arrive_once_each_in_order() {
    let relay = TestRelay::start().await;
    let ((mut a, a_id), (mut b, _)) = pair(&relay, "burst").await;
    const BURST: usize = 100;
    for n in 0..BURST {
        a.feed(Message::text(offer(&format!("v=0 {n}")).to_json()))
            .await
            .expect("queues");
        if n % 10 == 0 {
            a.feed(Message::text(ClientMsg::Ping.to_json()))
                .await
                .expect("queues");
        }
    }
    a.flush().await.expect("sends the burst");
    for n in 0..BURST {
        assert_eq!(
            recv(&mut b).await,
            offer_from(a_id, None, &format!("v=0 {n}"))
        );
    }
    for _ in (0..BURST).step_by(10) {
        assert_eq!(recv(&mut a).await, ServerMsg::Pong);
    }
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_completes_while_bad_clients_flood_the_relay() {
    let relay = TestRelay::start_with_limits(Limits {
        max_per_ip: 10_000,
        ..Limits::default()
    })
    .await;
    let ((mut a, a_id), (mut b, b_id)) = pair(&relay, "y").await;

    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..3)
        .map(|style| tokio::spawn(flood(relay.addr, style, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    send(&mut a, &offer("v=0 under fire")).await;
    assert_eq!(recv(&mut b).await, offer_from(a_id, None, "v=0 under fire"));
    assert_answer_reaches(&mut b, None, &mut a, b_id, None, "v=0 answer under fire").await;
    const CANDIDATES: usize = 20;
    for n in 0..CANDIDATES {
        for (ws, n) in [(&mut a, n), (&mut b, 100 + n)] {
            send(
                ws,
                &ClientMsg::Candidate {
                    to: None,
                    candidate: candidate(n),
                },
            )
            .await;
        }
    }
    for n in 0..CANDIDATES {
        assert_eq!(
            recv(&mut b).await,
            ServerMsg::Candidate {
                from: a_id,
                from_name: None,
                candidate: candidate(n)
            }
        );
        assert_eq!(
            recv(&mut a).await,
            ServerMsg::Candidate {
                from: b_id,
                from_name: None,
                candidate: candidate(100 + n)
            }
        );
    }
    send(&mut a, &ClientMsg::HangUp { to: None }).await;
    assert_eq!(
        recv(&mut b).await,
        ServerMsg::HangUp {
            from: a_id,
            from_name: None
        }
    );
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;

    stop.store(true, Ordering::Relaxed);
    let mut rounds = Vec::new();
    for flooder in flooders {
        let done = tokio::time::timeout(Duration::from_secs(10), flooder)
            .await
            .expect("the flood stops")
            .expect("the flooder does not panic");
        rounds.push(done);
    }
    assert!(rounds.iter().all(|r| *r >= 2), "the flood ran: {rounds:?}");
    let text = relay.metrics().await;
    for kind in [
        "invalid-json",
        "binary-frame",
        "unknown-type",
        "invalid-message",
    ] {
        assert!(
            metric(&text, &format!("relay_errors_total{{kind=\"{kind}\"}}")) > 0,
            "the flood reached the relay ({kind}):\n{text}"
        );
    }
    // And the relay still takes newcomers.
    let (_c, c_id) = relay.join("z").await;
    assert_ne!(c_id, a_id);
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "relay-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("creates the temporary directory");
        Self(path)
    }

    fn write(&self, name: &str, contents: &[u8]) {
        std::fs::write(self.0.join(name), contents).expect("writes a file");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_client_bundle_is_served() {
    let dist = TempDir::new();
    let index = "<!doctype html><title>call</title><p>hello from the test bundle</p>";
    dist.write("index.html", index.as_bytes());
    let wasm = b"\0asm\x01\0\0\0";
    dist.write("x.wasm", wasm);
    let script = "console.log('the same line, over and over again');\n".repeat(200);
    assert!(script.len() >= 10_000);
    dist.write("app.js", script.as_bytes());
    let relay = TestRelay::start_serving(dist.path().to_owned()).await;

    let page = get_with(relay.addr, "/", "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert_eq!(page.body, index.as_bytes());

    let module = get_with(relay.addr, "/x.wasm", "").await;
    assert_eq!(module.status, 200);
    assert_eq!(module.header("content-type"), Some("application/wasm"));
    assert_eq!(module.body, wasm);

    // Without Accept-Encoding, nothing is compressed.
    let plain = get_with(relay.addr, "/app.js", "").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, script.as_bytes());

    let gzipped = get_with(relay.addr, "/app.js", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(
        gzipped.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        gzipped.headers
    );
    assert!(
        gzipped.body.len() < script.len() / 4,
        "{} bytes for {}",
        gzipped.body.len(),
        script.len()
    );
    assert!(
        gzipped.body.windows(2).any(|w| w == [0x1f, 0x8b]),
        "a gzip stream"
    );

    // Browsers ask for brotli first: smaller than gzip, and the same bytes once decoded.
    let brotli = get_with(relay.addr, "/app.js", "Accept-Encoding: br, gzip\r\n").await;
    assert_eq!(brotli.status, 200);
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert!(
        brotli.body.len() < script.len() / 4,
        "{}",
        brotli.body.len()
    );
    let stream = if brotli.header("transfer-encoding") == Some("chunked") {
        dechunk(&brotli.body)
    } else {
        brotli.body.clone()
    };
    let mut decoded = Vec::new();
    brotli_decompressor::BrotliDecompress(&mut stream.as_slice(), &mut decoded)
        .expect("a brotli stream");
    assert_eq!(decoded, script.as_bytes());

    // A file compressed beforehand (scripts/build-client.sh) is sent as it is, with its type.
    dist.write("pre.wasm", wasm);
    dist.write("pre.wasm.br", b"compressed beforehand");
    let pre = get_with(relay.addr, "/pre.wasm", "Accept-Encoding: br, gzip\r\n").await;
    assert_eq!(pre.header("content-encoding"), Some("br"));
    assert_eq!(pre.header("content-type"), Some("application/wasm"));
    assert_eq!(pre.body, b"compressed beforehand");

    let missing = get_with(relay.addr, "/nope.js", "").await;
    assert_eq!(missing.status, 404);

    // Browsers send Accept-Encoding with the WebSocket handshake too: compression must leave
    // the upgrade alone.
    let mut request = format!("ws://{}/ws", relay.addr)
        .into_client_request()
        .expect("a valid request");
    request.headers_mut().insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    let (mut ws, response) = connect_async(request).await.expect("upgrades");
    assert_eq!(response.headers().get("content-encoding"), None);
    join_on(&mut ws, "r").await;
}

#[tokio::test]
async fn sessions_are_passed_on_so_pages_know_each_other_after_a_relay_restart() {
    let relay = TestRelay::start().await;
    let join = |session: &str| ClientMsg::Join {
        room: if session.starts_with("page-") {
            "r"
        } else {
            "s"
        }
        .into(),
        name: None,
        resume: None,
        session: Some(session.into()),
        passphrase: None,
    };
    let mut a = relay.connect().await;
    send_text(&mut a, &join("page-a").to_json()).await;
    let a_id = match recv(&mut a).await {
        ServerMsg::Welcome { id, .. } => id,
        other => panic!("expected a welcome, got {other:?}"),
    };
    let mut b = relay.connect().await;
    send_text(&mut b, &join("page-b").to_json()).await;
    match recv(&mut b).await {
        ServerMsg::Welcome { peers, .. } => assert_eq!(
            peers,
            vec![PeerInfo {
                id: a_id,
                name: None,
                session: Some("page-a".into()),
            }]
        ),
        other => panic!("expected a welcome, got {other:?}"),
    }
    match recv(&mut a).await {
        ServerMsg::PeerJoined { peer } => assert_eq!(peer.session.as_deref(), Some("page-b")),
        other => panic!("expected peer-joined, got {other:?}"),
    }

    // A session id is checked like a name: bad input gets a clear error, the socket stays
    // usable (in a room of its own: this test relay's rooms hold two).
    let mut c = relay.connect().await;
    send_text(&mut c, &join("bad\u{7}session").to_json()).await;
    match recv(&mut c).await {
        ServerMsg::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::InvalidMessage);
            assert!(message.contains("session id"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    send_text(&mut c, &join("other-page").to_json()).await;
    assert!(matches!(recv(&mut c).await, ServerMsg::Welcome { .. }));
}

#[tokio::test]
async fn ping_is_answered_before_and_after_joining() {
    let relay = TestRelay::start().await;
    let mut ws = relay.connect().await;
    send_text(&mut ws, &ClientMsg::Ping.to_json()).await;
    assert_eq!(recv(&mut ws).await, ServerMsg::Pong);
    join_on(&mut ws, "r").await;
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv(&mut ws).await, ServerMsg::Pong);
    assert_eq!(ServerMsg::Pong.to_json(), r#"{"type":"pong"}"#);
}

/// The body of a `Transfer-Encoding: chunked` response, without the chunk framing.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next()?.trim(), 16).ok())
            .expect("a chunk size line");
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

/// Rooms of six, as the page's mesh.
fn mesh_config() -> server::Config {
    server::Config {
        room_capacity: 6,
        ..test_config()
    }
}

/// A `join` of `room` as the page with `session`, with `passphrase`.
fn knock_msg(room: &str, session: &str, passphrase: Option<&str>) -> ClientMsg {
    ClientMsg::Join {
        room: room.into(),
        name: Some(session.into()),
        resume: None,
        session: Some(session.into()),
        passphrase: passphrase.map(Into::into),
    }
}

/// The next event, which must be a `room` event; returns it.
async fn recv_door(ws: &mut Ws) -> (PeerId, bool, bool, Vec<String>) {
    match recv(ws).await {
        ServerMsg::Room {
            controller,
            locked,
            passphrase,
            knocking,
        } => (
            controller,
            locked,
            passphrase,
            knocking.into_iter().map(|k| k.session).collect(),
        ),
        other => panic!("expected a room event, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_in_locks_the_room_and_lets_one_knock_in_and_turns_one_away() {
    let relay = TestRelay::start_with(mesh_config()).await;
    let ((mut a, a_id), (mut b, _)) = pair(&relay, "door").await;
    // An open room says nothing of its door: the oldest is in control.
    assert_silent(&mut a).await;
    // Only the person in control locks; the other is refused and nothing changes.
    send(&mut b, &ClientMsg::Lock { locked: true }).await;
    recv_error(&mut b, ErrorKind::NotInControl).await;
    send(&mut b, &ClientMsg::Remove { peer: a_id }).await;
    recv_error(&mut b, ErrorKind::NotInControl).await;
    assert_silent(&mut a).await;
    send(&mut a, &ClientMsg::Lock { locked: true }).await;
    assert_eq!(recv_door(&mut a).await, (a_id, true, false, vec![]));
    assert_eq!(recv_door(&mut b).await, (a_id, true, false, vec![]));

    // Two pages knock; both people inside see each knock once.
    let mut carol = relay.connect().await;
    send(&mut carol, &knock_msg("door", "carol", None)).await;
    recv_error(&mut carol, ErrorKind::Knocking).await;
    assert_eq!(recv_door(&mut a).await.3, vec!["carol"]);
    assert_eq!(recv_door(&mut b).await.3, vec!["carol"]);
    let mut dave = relay.connect().await;
    send(&mut dave, &knock_msg("door", "dave", None)).await;
    recv_error(&mut dave, ErrorKind::Knocking).await;
    assert_eq!(recv_door(&mut a).await.3, vec!["carol", "dave"]);
    assert_eq!(recv_door(&mut b).await.3, vec!["carol", "dave"]);
    // Asking again is no news.
    send(&mut carol, &knock_msg("door", "carol", None)).await;
    recv_error(&mut carol, ErrorKind::Knocking).await;
    assert_silent(&mut a).await;

    // Anyone inside answers: b lets carol in, a turns dave away.
    send(
        &mut b,
        &ClientMsg::Admit {
            session: "carol".into(),
        },
    )
    .await;
    assert_eq!(recv_door(&mut a).await.3, vec!["dave"]);
    assert_eq!(recv_door(&mut b).await.3, vec!["dave"]);
    send(
        &mut a,
        &ClientMsg::Refuse {
            session: "dave".into(),
        },
    )
    .await;
    assert!(recv_door(&mut a).await.3.is_empty());
    assert!(recv_door(&mut b).await.3.is_empty());
    // An answer to nobody is refused.
    send(
        &mut a,
        &ClientMsg::Admit {
            session: "dave".into(),
        },
    )
    .await;
    recv_error(&mut a, ErrorKind::NoPeer).await;

    send(&mut carol, &knock_msg("door", "carol", None)).await;
    let welcome = expect_welcome(&mut carol, "door").await;
    assert_eq!(welcome.peers.len(), 2);
    // Carol is told the room is locked, and by whom.
    assert_eq!(recv_door(&mut carol).await, (a_id, true, false, vec![]));
    send(&mut dave, &knock_msg("door", "dave", None)).await;
    recv_error(&mut dave, ErrorKind::KnockRefused).await;
    for ws in [&mut a, &mut b] {
        assert!(matches!(recv(ws).await, ServerMsg::PeerJoined { .. }));
        assert_silent(ws).await;
    }

    // Opened again, dave walks in.
    send(&mut a, &ClientMsg::Lock { locked: false }).await;
    assert_eq!(recv_door(&mut a).await, (a_id, false, false, vec![]));
    send(&mut dave, &knock_msg("door", "dave", None)).await;
    expect_welcome(&mut dave, "door").await;
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused_by_the_relay() {
    let relay = TestRelay::start().await;
    let (mut a, a_id) = relay.join("secret").await;
    send(
        &mut a,
        &ClientMsg::Passphrase {
            passphrase: "open sesame".into(),
        },
    )
    .await;
    assert_eq!(recv_door(&mut a).await, (a_id, false, true, vec![]));
    let mut b = relay.connect().await;
    send(&mut b, &knock_msg("secret", "b", None)).await;
    recv_error(&mut b, ErrorKind::WrongPassphrase).await;
    send(&mut b, &knock_msg("secret", "b", Some("open"))).await;
    recv_error(&mut b, ErrorKind::WrongPassphrase).await;
    assert_silent(&mut a).await;
    send(&mut b, &knock_msg("secret", "b", Some("open sesame"))).await;
    expect_welcome(&mut b, "secret").await;
    assert_eq!(recv_door(&mut b).await, (a_id, false, true, vec![]));
    // A passphrase too long is bad input, and changes nothing.
    let long = "x".repeat(protocol::MAX_PASSPHRASE_LEN + 1);
    send(&mut a, &ClientMsg::Passphrase { passphrase: long }).await;
    assert!(matches!(recv(&mut a).await, ServerMsg::PeerJoined { .. }));
    recv_error(&mut a, ErrorKind::InvalidMessage).await;
}

#[tokio::test]
async fn a_removed_person_is_told_closed_and_kept_out_while_the_room_is_locked() {
    let relay = TestRelay::start().await;
    let mut a = relay.connect().await;
    send(&mut a, &knock_msg("keep", "a", None)).await;
    let a_id = expect_welcome(&mut a, "keep").await.id;
    let mut b = relay.connect().await;
    send(&mut b, &knock_msg("keep", "b", None)).await;
    let b_id = expect_welcome(&mut b, "keep").await.id;
    assert!(matches!(recv(&mut a).await, ServerMsg::PeerJoined { .. }));
    send(&mut a, &ClientMsg::Lock { locked: true }).await;
    recv_door(&mut a).await;
    recv_door(&mut b).await;
    send(&mut a, &ClientMsg::Remove { peer: b_id }).await;
    assert_eq!(recv(&mut b).await, ServerMsg::Removed);
    recv_close(&mut b, protocol::CLOSE_REMOVED).await;
    assert_eq!(recv(&mut a).await, left(b_id));
    // Back on a new connection: kept out, and nobody inside is bothered.
    let mut again = relay.connect().await;
    send(&mut again, &knock_msg("keep", "b", None)).await;
    recv_error(&mut again, ErrorKind::Removed).await;
    assert_silent(&mut a).await;
    // Nobody removes themselves, or somebody not there.
    send(&mut a, &ClientMsg::Remove { peer: a_id }).await;
    recv_error(&mut a, ErrorKind::InvalidMessage).await;
    send(&mut a, &ClientMsg::Remove { peer: b_id }).await;
    recv_error(&mut a, ErrorKind::NoPeer).await;
}

#[tokio::test]
async fn control_passes_to_the_oldest_when_the_person_in_control_leaves() {
    let relay = TestRelay::start_with(mesh_config()).await;
    let ((mut a, a_id), (mut b, b_id)) = pair(&relay, "pass").await;
    let (mut c, c_id) = relay.join("pass").await;
    assert!(matches!(recv(&mut a).await, ServerMsg::PeerJoined { .. }));
    assert!(matches!(recv(&mut b).await, ServerMsg::PeerJoined { .. }));
    // An open room: control passes without a word, to the oldest, who can lock.
    close(a).await;
    assert_eq!(recv(&mut b).await, left(a_id));
    assert_eq!(recv(&mut c).await, left(a_id));
    assert_silent(&mut b).await;
    send(&mut c, &ClientMsg::Lock { locked: true }).await;
    recv_error(&mut c, ErrorKind::NotInControl).await;
    send(&mut b, &ClientMsg::Lock { locked: true }).await;
    assert_eq!(recv_door(&mut b).await, (b_id, true, false, vec![]));
    assert_eq!(recv_door(&mut c).await, (b_id, true, false, vec![]));
    // A locked room tells who has control now.
    close(b).await;
    assert_eq!(recv(&mut c).await, left(b_id));
    assert_eq!(recv_door(&mut c).await, (c_id, true, false, vec![]));
    send(&mut c, &ClientMsg::Lock { locked: false }).await;
    assert_eq!(recv_door(&mut c).await, (c_id, false, false, vec![]));
}
