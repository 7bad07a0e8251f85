//! The relay's STUN server and the ICE servers it hands out, on real sockets: Binding requests
//! over UDP, a STUN port somebody else holds, the relay's own STUN entry in `welcome`, and TURN
//! credentials that verify with the shared secret and are renewed before they expire.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use bytecodec::{DecodeExt, EncodeExt};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use protocol::{ClientMsg, IceServer, PeerId, ServerMsg};
use server::{Listeners, TurnConfig, TurnSecret};
use sha1::Sha1;
use stun_codec::{
    rfc5389::{attributes::XorMappedAddress, methods::BINDING, Attribute},
    Message as StunMessage, MessageClass, MessageDecoder, MessageEncoder, TransactionId,
};
use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::{CancellationToken, DropGuard};

mod common;
use common::{http::get, RECV_TIMEOUT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "test-shared-secret";

/// One relay on ephemeral ports; stopped when dropped.
struct IceRelay {
    http: SocketAddr,
    stun: Option<SocketAddr>,
    _handle: JoinHandle<std::io::Result<()>>,
    _stop: DropGuard,
}

fn config() -> server::Config {
    server::Config {
        dist: PathBuf::from("/nonexistent/relay-test-dist"),
        ..server::Config::default()
    }
}

impl IceRelay {
    async fn start(listeners: Listeners, config: server::Config) -> Self {
        let http = listeners.http.local_addr().expect("an address");
        let stun = listeners
            .stun
            .as_ref()
            .map(|s| s.local_addr().expect("an address"));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server::serve(listeners, config, shutdown.clone()));
        Self {
            http,
            stun,
            _handle: handle,
            _stop: shutdown.drop_guard(),
        }
    }

    /// A relay with STUN on an ephemeral UDP port.
    async fn with_stun(config: server::Config) -> Self {
        let listeners = Listeners {
            http: TcpListener::bind("127.0.0.1:0").await.expect("binds"),
            https: None,
            stun: Some(UdpSocket::bind("127.0.0.1:0").await.expect("binds")),
            turn_tls: None,
        };
        Self::start(listeners, config).await
    }

    /// Connects to `/ws` with the given `Host` header (the default is `127.0.0.1:port`).
    async fn connect(&self, host: Option<&str>) -> Ws {
        let mut request = format!("ws://{}/ws", self.http)
            .into_client_request()
            .expect("a valid request");
        if let Some(host) = host {
            request
                .headers_mut()
                .insert("host", HeaderValue::from_str(host).expect("a valid header"));
        }
        let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, connect_async(request))
            .await
            .expect("in time")
            .expect("upgrades");
        ws
    }

    async fn metrics(&self) -> String {
        let (status, body) = get(self.http, "/metrics").await;
        assert_eq!(status, 200, "/metrics");
        body
    }
}

/// The next event from the relay (pings skipped).
async fn recv(ws: &mut Ws) -> ServerMsg {
    recv_within(ws, RECV_TIMEOUT).await
}

async fn recv_within(ws: &mut Ws, within: Duration) -> ServerMsg {
    loop {
        let frame = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message arrives in time")
            .expect("the connection is open")
            .expect("the frame reads");
        if let Message::Text(text) = frame {
            return ServerMsg::parse(text.as_str()).expect("a ServerMsg");
        }
    }
}

/// Joins `room`; returns the id and the ICE servers of the welcome.
async fn join(ws: &mut Ws, room: &str) -> (PeerId, Vec<IceServer>) {
    let msg = ClientMsg::join(room);
    ws.send(Message::text(msg.to_json())).await.expect("sends");
    match recv(ws).await {
        ServerMsg::Welcome {
            id, ice_servers, ..
        } => (id, ice_servers),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

fn binding_request(id: u8) -> Vec<u8> {
    let request =
        StunMessage::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new([id; 12]));
    MessageEncoder::new()
        .encode_into_bytes(request)
        .expect("encodes")
}

/// Sends a Binding request from `client` to `server`; returns the address the answer says the
/// request came from.
async fn reflexive_address(client: &UdpSocket, server: SocketAddr, id: u8) -> SocketAddr {
    client
        .send_to(&binding_request(id), server)
        .await
        .expect("sends");
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(RECV_TIMEOUT, client.recv_from(&mut buf))
        .await
        .expect("the relay answers in time")
        .expect("reads");
    assert_eq!(from, server);
    let response = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(&buf[..len])
        .expect("a STUN message")
        .expect("whole, with a valid fingerprint");
    assert_eq!(response.class(), MessageClass::SuccessResponse);
    assert_eq!(response.method(), BINDING);
    assert_eq!(response.transaction_id(), TransactionId::new([id; 12]));
    response
        .get_attribute::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS")
        .address()
}

#[tokio::test]
async fn a_binding_request_learns_the_address_it_came_from() {
    let relay = IceRelay::with_stun(config()).await;
    let stun = relay.stun.expect("STUN runs");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    // Junk first: it is dropped without an answer, and the server goes on.
    for junk in [&b""[..], b"hello", &[0u8; 20], &binding_request(9)[..19]] {
        client.send_to(junk, stun).await.expect("sends");
    }
    let mine = client.local_addr().expect("an address");
    assert_eq!(reflexive_address(&client, stun, 1).await, mine);
    assert_eq!(reflexive_address(&client, stun, 2).await, mine);
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("\nrelay_stun_requests_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_welcome_names_the_relays_stun_server_by_the_pages_host() {
    let relay = IceRelay::with_stun(config()).await;
    let port = relay.stun.expect("STUN runs").port();
    let mut ws = relay.connect(None).await;
    let (_, servers) = join(&mut ws, "stun").await;
    assert_eq!(
        servers,
        [IceServer {
            urls: vec![format!("stun:127.0.0.1:{port}")],
            username: None,
            credential: None,
        }]
    );
    let mut v6 = relay.connect(Some("[fd00::20]:8443")).await;
    let (_, servers) = join(&mut v6, "stun-v6").await;
    assert_eq!(servers[0].urls, [format!("stun:[fd00::20]:{port}")]);
    // A Host that is no host name gets no STUN entry rather than a bent URL.
    let mut odd = relay.connect(Some("x?transport=tcp")).await;
    let (_, servers) = join(&mut odd, "stun-odd").await;
    assert!(servers.is_empty(), "{servers:?}");
}

#[tokio::test]
async fn a_taken_stun_port_is_skipped_and_not_handed_out() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let port = taken.local_addr().expect("an address").port();
    let listeners = Listeners::bind(IpAddr::from([127, 0, 0, 1]), 0, None, Some(port))
        .await
        .expect("http still binds");
    assert!(listeners.stun.is_none(), "the port was taken");
    let relay = IceRelay::start(listeners, config()).await;
    let mut ws = relay.connect(None).await;
    let (_, servers) = join(&mut ws, "no-stun").await;
    assert!(servers.is_empty(), "{servers:?}");

    // With the port free, bind takes it.
    let free = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let port = free.local_addr().expect("an address").port();
    drop(free);
    let listeners = Listeners::bind(IpAddr::from([127, 0, 0, 1]), 0, None, Some(port))
        .await
        .expect("binds");
    assert_eq!(
        listeners
            .stun
            .as_ref()
            .map(|s| s.local_addr().expect("address").port()),
        Some(port)
    );
}

/// The TURN entry of a list of ICE servers, with its expiry and the peer id of its user name.
fn turn_entry(servers: &[IceServer]) -> (&IceServer, u64, PeerId) {
    let turn = servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn")))
        .expect("a TURN server");
    let username = turn.username.as_deref().expect("a user name");
    let (expiry, peer) = username.split_once(':').expect("expiry:peer");
    let expiry: u64 = expiry.parse().expect("a unix time");
    let peer = PeerId(peer.parse().expect("a peer id"));
    // What coturn computes with its static-auth-secret.
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn.credential.as_deref(), Some(expected.as_str()));
    (turn, expiry, peer)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn turn_credentials_verify_and_are_renewed_before_they_expire() {
    let ttl = Duration::from_secs(2);
    let urls = vec![
        "turn:turn.test:3478".to_owned(),
        "turns:turn.test:5349?transport=tcp".to_owned(),
    ];
    let turn = TurnConfig::new(urls.clone(), Some(TurnSecret::new(SECRET)), ttl)
        .expect("valid")
        .expect("configured");
    let relay = IceRelay::with_stun(server::Config {
        turn: Some(turn),
        ..config()
    })
    .await;
    let mut ws = relay.connect(None).await;
    let joined_at = unix_now();
    let (id, servers) = join(&mut ws, "turn").await;
    assert_eq!(servers.len(), 2, "our STUN, then TURN: {servers:?}");
    let (entry, first_expiry, peer) = turn_entry(&servers);
    assert_eq!(entry.urls, urls);
    assert_eq!(peer, id);
    assert!(
        first_expiry as f64 >= joined_at + 1.9 && (first_expiry as f64) <= joined_at + 4.0,
        "expiry {first_expiry} for a join at {joined_at}"
    );

    let mut expiry = first_expiry;
    for round in 0..2 {
        let msg = recv_within(&mut ws, ttl).await;
        let arrived = unix_now();
        let ServerMsg::IceServers { ice_servers } = msg else {
            panic!("expected fresh ICE servers, got {msg:?}");
        };
        assert!(
            arrived < expiry as f64,
            "round {round}: fresh credentials at {arrived}, after the old ones expired at {expiry}"
        );
        let (_, next, peer) = turn_entry(&ice_servers);
        assert_eq!(peer, id);
        assert!(
            next > expiry,
            "round {round}: {next} is not later than {expiry}"
        );
        expiry = next;
    }

    let metrics = relay.metrics().await;
    assert!(!metrics.contains(SECRET), "{metrics}");
}
