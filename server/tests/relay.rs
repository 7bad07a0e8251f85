//! The relay over real sockets: each test starts `server::run` on an ephemeral port, connects
//! WebSocket clients to `/ws` (or speaks raw HTTP/1.1 for the static files) and checks what each
//! peer receives, and what it must not receive.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use protocol::{
    ClientMsg, ErrorKind, IceCandidate, IceServer, PeerId, PeerInfo, ServerMsg, CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG, MAX_MESSAGE_BYTES,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a message that should arrive may take.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a peer that should receive nothing is watched.
const SILENCE: Duration = Duration::from_millis(300);

/// One relay on an ephemeral port.
struct TestRelay {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestRelay {
    async fn start() -> Self {
        Self::start_serving(PathBuf::from("/nonexistent/relay-test-dist")).await
    }

    async fn start_serving(dist: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let shutdown = CancellationToken::new();
        let config = server::Config {
            dist,
            ice_servers: ice_servers(),
            room_capacity: 2,
        };
        let handle = tokio::spawn(server::run(listener, config, shutdown.clone()));
        Self {
            addr,
            shutdown,
            handle,
        }
    }

    async fn connect(&self) -> Ws {
        let (ws, _) = connect_async(format!("ws://{}/ws", self.addr))
            .await
            .expect("the WebSocket handshake succeeds");
        ws
    }

    /// Connects and joins `room`; returns the socket and the id the relay gave it.
    async fn join(&self, room: &str) -> (Ws, PeerId) {
        let mut ws = self.connect().await;
        let id = join_on(&mut ws, room).await;
        (ws, id)
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

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    send_text(ws, &msg.to_json()).await;
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("sends");
}

/// The next frame that is not a ping or pong, or a failure after [`RECV_TIMEOUT`].
async fn next_frame(ws: &mut Ws) -> Message {
    loop {
        let frame = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a frame arrives in time")
            .expect("the connection is still open")
            .expect("the frame reads");
        if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
            return frame;
        }
    }
}

/// The next event from the relay.
async fn recv(ws: &mut Ws) -> ServerMsg {
    match next_frame(ws).await {
        Message::Text(text) => ServerMsg::parse(text.as_str())
            .unwrap_or_else(|err| panic!("not a ServerMsg ({err}): {text}")),
        other => panic!("expected a text frame, got {other:?}"),
    }
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

/// Fails if anything arrives within [`SILENCE`].
async fn assert_silent(ws: &mut Ws) {
    if let Ok(frame) = tokio::time::timeout(SILENCE, ws.next()).await {
        panic!("expected silence, got {frame:?}");
    }
}

/// Sends `join` and waits for the welcome; returns the id the relay gave this connection.
async fn join_on(ws: &mut Ws, room: &str) -> PeerId {
    join_with_peers(ws, room).await.0
}

/// Sends `join` and waits for the welcome; returns this connection's id and the ids of the peers
/// already in the room.
async fn join_with_peers(ws: &mut Ws, room: &str) -> (PeerId, Vec<PeerId>) {
    send(
        ws,
        &ClientMsg::Join {
            room: room.into(),
            name: None,
        },
    )
    .await;
    match recv(ws).await {
        ServerMsg::Welcome {
            id,
            room: joined,
            peers,
            ice_servers: servers,
        } => {
            assert_eq!(joined, room);
            assert_eq!(servers, ice_servers());
            (id, peers.into_iter().map(|peer| peer.id).collect())
        }
        other => panic!("expected a welcome to {room:?}, got {other:?}"),
    }
}

/// Joins `a` then `b` to `room` and consumes the `peer-joined` that `a` gets.
async fn pair(relay: &TestRelay, room: &str) -> ((Ws, PeerId), (Ws, PeerId)) {
    let (mut a, a_id) = relay.join(room).await;
    let (b, b_id) = relay.join(room).await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: b_id,
                name: None
            }
        }
    );
    ((a, a_id), (b, b_id))
}

fn offer(sdp: &str) -> ClientMsg {
    ClientMsg::Offer {
        to: None,
        sdp: sdp.into(),
    }
}

/// Checks that an offer from `from` reaches `to`, the other peer of their room.
async fn assert_offer_reaches(from: &mut Ws, from_id: PeerId, to: &mut Ws, sdp: &str) {
    send(from, &offer(sdp)).await;
    assert_eq!(
        recv(to).await,
        ServerMsg::Offer {
            from: from_id,
            sdp: sdp.into()
        }
    );
}

#[tokio::test]
async fn peers_pair_up_in_a_room() {
    let relay = TestRelay::start().await;
    let mut a = relay.connect().await;
    send(
        &mut a,
        &ClientMsg::Join {
            room: "r".into(),
            name: Some("Alice".into()),
        },
    )
    .await;
    let ServerMsg::Welcome {
        id: a_id,
        room,
        peers,
        ice_servers: servers,
    } = recv(&mut a).await
    else {
        panic!("expected a welcome");
    };
    assert_eq!(room, "r");
    assert!(peers.is_empty(), "{peers:?}");
    assert_eq!(servers, ice_servers());

    let mut b = relay.connect().await;
    send(
        &mut b,
        &ClientMsg::Join {
            room: "r".into(),
            name: None,
        },
    )
    .await;
    let ServerMsg::Welcome {
        id: b_id,
        room,
        peers,
        ice_servers: servers,
    } = recv(&mut b).await
    else {
        panic!("expected a welcome");
    };
    assert_ne!(a_id, b_id);
    assert_eq!(room, "r");
    assert_eq!(
        peers,
        vec![PeerInfo {
            id: a_id,
            name: Some("Alice".into())
        }]
    );
    assert_eq!(servers, ice_servers());
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: b_id,
                name: None
            }
        }
    );
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn signals_reach_the_other_peer_of_the_room_only() {
    let relay = TestRelay::start().await;
    let ((mut a, a_id), (mut b, b_id)) = pair(&relay, "r").await;
    let ((mut c, c_id), (mut d, _d_id)) = pair(&relay, "s").await;

    assert_offer_reaches(&mut a, a_id, &mut b, "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n").await;
    send(
        &mut b,
        &ClientMsg::Answer {
            to: None,
            sdp: "v=0 answer".into(),
        },
    )
    .await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::Answer {
            from: b_id,
            sdp: "v=0 answer".into()
        }
    );
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
            candidate
        }
    );
    send(&mut b, &ClientMsg::HangUp { to: None }).await;
    assert_eq!(recv(&mut a).await, ServerMsg::HangUp { from: b_id });

    // A peer of another room cannot be addressed, and hears nothing of it.
    send(
        &mut a,
        &ClientMsg::Offer {
            to: Some(c_id),
            sdp: "v=0 stray".into(),
        },
    )
    .await;
    recv_error(&mut a, ErrorKind::NoPeer).await;
    // Nor can a peer address itself.
    send(
        &mut a,
        &ClientMsg::Offer {
            to: Some(a_id),
            sdp: "v=0 self".into(),
        },
    )
    .await;
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
    send(
        &mut c,
        &ClientMsg::Join {
            room: "r".into(),
            name: None,
        },
    )
    .await;
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
    assert_eq!(
        recv(&mut c).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: e_id,
                name: None
            }
        }
    );
    assert_offer_reaches(&mut e, e_id, &mut c, "v=0 other room").await;
    assert_silent(&mut a).await;
    assert_silent(&mut b).await;
}

#[tokio::test]
async fn a_closed_peer_leaves_its_room() {
    let relay = TestRelay::start().await;
    let ((mut a, _a_id), (mut b, b_id)) = pair(&relay, "r").await;

    b.close(None).await.expect("sends a Close frame");
    // The relay answers the closing handshake.
    match tokio::time::timeout(RECV_TIMEOUT, b.next()).await {
        Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("expected the relay's Close frame, got {other:?}"),
    }
    assert_eq!(recv(&mut a).await, ServerMsg::PeerLeft { peer: b_id });

    // The slot is free again.
    let (c, c_id) = relay.join("r").await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: c_id,
                name: None
            }
        }
    );

    // A connection that drops without a closing handshake leaves too.
    drop(c);
    assert_eq!(recv(&mut a).await, ServerMsg::PeerLeft { peer: c_id });
    let (_d, d_id) = relay.join("r").await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: d_id,
                name: None
            }
        }
    );
    assert_silent(&mut a).await;
}

#[tokio::test]
async fn bad_input_is_answered_with_typed_errors() {
    let relay = TestRelay::start().await;

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
        send(&mut a, &ClientMsg::Join { room, name: None }).await;
        recv_error(&mut a, ErrorKind::InvalidRoom).await;
    }
    send_text(&mut a, "{nope").await;
    recv_error(&mut a, ErrorKind::InvalidJson).await;
    let a_id = join_on(&mut a, &"x".repeat(protocol::MAX_ROOM_LEN)).await;
    send(&mut a, &offer("v=0 alone")).await;
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
    send(
        &mut a,
        &ClientMsg::Join {
            room: "elsewhere".into(),
            name: None,
        },
    )
    .await;
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
    assert_eq!(
        recv(&mut b).await,
        ServerMsg::Offer {
            from: a_id,
            sdp: sdp.clone()
        }
    );

    // One byte more closes the connection with 1009.
    let too_big = offer(&format!("{sdp}x")).to_json();
    assert_eq!(too_big.len(), MAX_MESSAGE_BYTES + 1);
    send_text(&mut b, &too_big).await;
    recv_close(&mut b, CLOSE_MESSAGE_TOO_BIG).await;
    assert_eq!(recv(&mut a).await, ServerMsg::PeerLeft { peer: b_id });
    assert_silent(&mut a).await;

    // The relay keeps serving: the slot is free and signals flow.
    let (mut c, c_id) = relay.join("r").await;
    assert_eq!(
        recv(&mut a).await,
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: c_id,
                name: None
            }
        }
    );
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

/// One HTTP response: its status code, lower-cased header names with their values, and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` over a fresh TCP connection and reads the whole response.
async fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sends the request");
    let mut raw = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("the response arrives in time")
        .expect("reads the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the response has a head");
    let head = std::str::from_utf8(&raw[..split]).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
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

    let page = get(relay.addr, "/", "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert_eq!(page.body, index.as_bytes());

    let module = get(relay.addr, "/x.wasm", "").await;
    assert_eq!(module.status, 200);
    assert_eq!(module.header("content-type"), Some("application/wasm"));
    assert_eq!(module.body, wasm);

    // Without Accept-Encoding, nothing is compressed.
    let plain = get(relay.addr, "/app.js", "").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, script.as_bytes());

    let gzipped = get(relay.addr, "/app.js", "Accept-Encoding: gzip\r\n").await;
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

    let missing = get(relay.addr, "/nope.js", "").await;
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
