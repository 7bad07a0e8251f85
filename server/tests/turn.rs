//! The built-in TURN server on real sockets, with a real TURN client (the `turn` crate's, and
//! coturn's `turnutils_uclient` where Debian's coturn is installed), on credentials the relay
//! minted and handed out in `welcome`.
//!
//! Everything runs on loopback, which the relay refuses to relay to, so relayed data goes
//! between two allocations of the same server: the relay advertises its relayed addresses at
//! 127.0.0.1 (the address it is bound to), and another allocation is reachable whatever its
//! address, while a plain listener on 127.0.0.1 is not.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::SinkExt;
use protocol::{ClientMsg, IceServer, ServerMsg};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use server::{Listeners, Quota, TurnSecret, TurnServerConfig};
use stun::{
    agent::TransactionId,
    message::{Message as StunMessage, MessageType, CLASS_INDICATION, METHOD_SEND},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::{connect_async, tungstenite::Message, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use turn::{
    client::{Client, ClientConfig},
    proto::{data::Data, peeraddr::PeerAddress},
};
use webrtc_util::Conn;

mod common;
use common::{http::get, recv, RECV_TIMEOUT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "turn-test-secret";

/// Ports for relayed addresses in these tests; a taken one is skipped.
const PORTS: std::ops::RangeInclusive<u16> = 45000..=45999;

/// One relay with TURN on an ephemeral UDP port of 127.0.0.1; stopped when dropped.
struct TurnRelay {
    http: SocketAddr,
    https: Option<SocketAddr>,
    /// The port for TURN over TLS only, when asked for.
    turn_tls: Option<SocketAddr>,
    udp: SocketAddr,
    _handle: JoinHandle<std::io::Result<()>>,
    _stop: DropGuard,
}

/// What a page is handed for the built-in TURN server.
struct Credentials {
    urls: Vec<String>,
    username: String,
    password: String,
}

fn turn_config(quota: Quota) -> TurnServerConfig {
    let mut turn = TurnServerConfig::new(TurnSecret::new(SECRET));
    turn.ports = PORTS;
    turn.quota = quota;
    turn
}

impl TurnRelay {
    async fn start(turn: TurnServerConfig) -> Self {
        Self::start_with(turn, None).await
    }

    /// With https (and TURN over TLS on its port) when `tls` is given.
    async fn start_with(turn: TurnServerConfig, tls: Option<server::Tls>) -> Self {
        Self::start_on(turn, tls, false).await
    }

    /// [`Self::start_with`], and with a port for TURN over TLS only when `turn_tls`.
    async fn start_on(turn: TurnServerConfig, tls: Option<server::Tls>, turn_tls: bool) -> Self {
        let listener = || async { TcpListener::bind("127.0.0.1:0").await.expect("binds") };
        let https = match &tls {
            Some(_) => Some(listener().await),
            None => None,
        };
        let turn_tls = match turn_tls {
            true => Some(listener().await),
            false => None,
        };
        let address =
            |l: &Option<TcpListener>| l.as_ref().map(|l| l.local_addr().expect("an address"));
        let (https_addr, turn_tls_addr) = (address(&https), address(&turn_tls));
        let listeners = Listeners {
            http: listener().await,
            https,
            stun: Some(stun_socket().await),
            turn_tls,
        };
        let http = listeners.http.local_addr().expect("an address");
        let udp = listeners
            .stun
            .as_ref()
            .expect("a socket")
            .local_addr()
            .expect("an address");
        let config = server::Config {
            dist: PathBuf::from("/nonexistent/relay-test-dist"),
            turn_server: Some(turn),
            tls,
            ..server::Config::default()
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server::serve(listeners, config, shutdown.clone()));
        // Answered once `serve` runs, which listens for TURN over TCP before it answers.
        let (status, _) = get(http, "/healthz").await;
        assert_eq!(status, 200, "/healthz");
        Self {
            http,
            https: https_addr,
            turn_tls: turn_tls_addr,
            udp,
            _handle: handle,
            _stop: shutdown.drop_guard(),
        }
    }

    /// Joins `room` as a page would and takes the TURN entry of its `welcome`.
    async fn credentials(&self, room: &str) -> (Ws, Credentials) {
        let (mut ws, _) = tokio::time::timeout(
            RECV_TIMEOUT,
            connect_async(format!("ws://{}/ws", self.http)),
        )
        .await
        .expect("in time")
        .expect("upgrades");
        ws.send(Message::text(ClientMsg::join(room).to_json()))
            .await
            .expect("sends");
        let servers: Vec<IceServer> = match recv(&mut ws).await {
            ServerMsg::Welcome { ice_servers, .. } => ice_servers,
            other => panic!("expected a welcome, got {other:?}"),
        };
        let turn = servers
            .iter()
            .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
            .unwrap_or_else(|| panic!("a TURN entry in {servers:?}"));
        let credentials = Credentials {
            urls: turn.urls.clone(),
            username: turn.username.clone().expect("a user name"),
            password: turn.credential.clone().expect("a credential"),
        };
        (ws, credentials)
    }

    async fn metrics(&self) -> String {
        let (status, body) = get(self.http, "/metrics").await;
        assert_eq!(status, 200, "/metrics");
        body
    }

    /// A TURN client on `local_ip` speaking to this relay.
    async fn client(&self, local_ip: &str, username: &str, password: &str) -> Client {
        let socket = Arc::new(UdpSocket::bind((local_ip, 0)).await.expect("binds"));
        self.client_on(socket, username, password).await
    }

    /// A TURN client on `local_ip` with the credentials a page was handed.
    async fn client_as(&self, local_ip: &str, turn: &Credentials) -> Client {
        self.client(local_ip, &turn.username, &turn.password).await
    }

    /// `count` allocations from `local_ip` (kept in `held`, with their clients), then one more
    /// that is refused with 486 (Allocation Quota Reached).
    async fn allocate_up_to_486(
        &self,
        local_ip: &str,
        turn: &Credentials,
        count: usize,
        held: &mut Vec<(Client, Box<dyn Conn + Send + Sync>)>,
    ) {
        for _ in 0..count {
            let client = self.client_as(local_ip, turn).await;
            let relayed = allocate(&client).await.expect("within the quota");
            held.push((client, Box::new(relayed)));
        }
        let over = self.client_as(local_ip, turn).await;
        let refused = allocate(&over).await.err().expect("over the quota");
        assert!(refused.to_string().contains("486"), "{local_ip}: {refused}");
    }

    /// Two clients on 127.0.0.1 with `turn`'s credentials, each with an allocation.
    async fn two_allocations(&self, turn: &Credentials) -> (Client, Client, [impl Conn; 2]) {
        let a = self.client_as("127.0.0.1", turn).await;
        let b = self.client_as("127.0.0.1", turn).await;
        let ra = allocate(&a).await.expect("allocates");
        let rb = allocate(&b).await.expect("allocates");
        (a, b, [ra, rb])
    }

    /// A TURN client on `socket` (which the test may write to itself).
    async fn client_on(&self, socket: Arc<UdpSocket>, username: &str, password: &str) -> Client {
        let client = Client::new(ClientConfig {
            stun_serv_addr: self.udp.to_string(),
            turn_serv_addr: self.udp.to_string(),
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            conn: socket,
            vnet: None,
        })
        .await
        .expect("a client");
        client.listen().await.expect("listens");
        client
    }
}

/// The value of the metric line that starts with `name ` (labels included in `name`).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .expect("a number")
}

/// Allocates, within the test's time limit.
async fn allocate(client: &Client) -> Result<impl Conn, turn::Error> {
    tokio::time::timeout(RECV_TIMEOUT, client.allocate())
        .await
        .expect("the allocation is answered in time")
}

/// Sends `data` from `from` to `to_addr` until `to` receives it; returns where it came from.
async fn relay_through(
    from: &impl Conn,
    to: &impl Conn,
    to_addr: SocketAddr,
    data: &[u8],
) -> SocketAddr {
    let mut buf = vec![0u8; 1500];
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        from.send_to(data, to_addr).await.expect("sends");
        if let Ok(Ok((len, source))) =
            tokio::time::timeout(Duration::from_millis(200), to.recv_from(&mut buf)).await
        {
            if &buf[..len] == data {
                return source;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{data:?} never arrived at {to_addr}"
        );
    }
}

/// Two allocations that relay to each other both ways: the peer of each is the other.
async fn assert_two_allocations_talk(a: &impl Conn, b: &impl Conn) {
    let (a_addr, b_addr) = (
        a.local_addr().expect("an address"),
        b.local_addr().expect("an address"),
    );
    // B's permission for A first, or A's first datagram is dropped at B (and retried).
    let _ = b.send_to(b"open", a_addr).await;
    assert_eq!(relay_through(a, b, b_addr, b"from a").await, a_addr);
    assert_eq!(relay_through(b, a, a_addr, b"from b").await, b_addr);
}

#[tokio::test]
async fn two_allocations_relay_to_each_other_on_credentials_the_relay_minted() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let (_ws, turn) = relay.credentials("turn-pair").await;
    assert_eq!(
        turn.urls,
        [
            format!("turn:127.0.0.1:{}?transport=udp", relay.udp.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", relay.udp.port())
        ]
    );

    let (_a, _b, [ra, rb]) = relay.two_allocations(&turn).await;
    for relayed in [&ra, &rb] {
        let addr = relayed.local_addr().expect("an address");
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert!(PORTS.contains(&addr.port()), "{addr}");
    }
    assert_two_allocations_talk(&ra, &rb).await;

    let metrics = relay.metrics().await;
    assert_eq!(metric(&metrics, "relay_turn_allocations"), 2, "{metrics}");
    assert_eq!(metric(&metrics, "relay_turn_allocations_total"), 2);
    assert!(metric(&metrics, "relay_turn_bytes_relayed_total") >= 12);
    assert!(!metrics.contains(SECRET), "{metrics}");

    // A refresh to zero ends an allocation, and the gauge follows.
    ra.close().await.expect("closes");
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while metric(&relay.metrics().await, "relay_turn_allocations") != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauge stays at 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn loopback_and_private_peers_are_refused_and_nothing_reaches_them() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let (_ws, turn) = relay.credentials("turn-refused").await;
    let listener = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let target = listener.local_addr().expect("an address");

    let c_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("binds"));
    let c = relay
        .client_on(Arc::clone(&c_socket), &turn.username, &turn.password)
        .await;
    let rc = allocate(&c).await.expect("allocates");
    for peer in [
        target,
        "10.0.0.1:9".parse().expect("address"),
        "169.254.169.254:80".parse().expect("address"),
        relay.http,
    ] {
        let refused = rc
            .send_to(b"let me in", peer)
            .await
            .expect_err("a refused permission fails the send");
        assert!(refused.to_string().contains("403"), "{peer}: {refused}");
    }

    // With a permission for 127.0.0.1 that another allocation there justifies, the listener's
    // port on the same address is still out of reach: through a Send indication or a channel.
    let d = relay.client_as("127.0.0.1", &turn).await;
    let rd = allocate(&d).await.expect("allocates");
    assert_two_allocations_talk(&rc, &rd).await;
    for _ in 0..10 {
        let _ = rc.send_to(b"sneak", target).await;
    }
    // The client refuses to send where it got no permission: Send indications (which need no
    // credentials) straight from its socket go as far as the relayed socket's own check, since
    // the allocation holds a permission for 127.0.0.1.
    let mut send = StunMessage::new();
    send.build(&[
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        Box::new(PeerAddress {
            ip: target.ip(),
            port: target.port(),
        }),
        Box::new(Data(b"sneak".to_vec())),
    ])
    .expect("builds");
    for _ in 0..10 {
        c_socket.send_to(&send.raw, relay.udp).await.expect("sends");
    }
    let mut buf = [0u8; 64];
    let arrived = tokio::time::timeout(Duration::from_secs(1), listener.recv_from(&mut buf)).await;
    assert!(arrived.is_err(), "the listener got {arrived:?}");

    let metrics = relay.metrics().await;
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"loopback\"}") >= 1);
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"private\"}") >= 1);
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"link_local\"}") >= 1);
}

#[tokio::test]
async fn wrong_malformed_and_expired_credentials_are_refused() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let (_ws, turn) = relay.credentials("turn-auth").await;
    let expired = "1:7";
    let expired_password = server::turn_credential(&TurnSecret::new(SECRET), expired);
    for (username, password) in [
        (turn.username.as_str(), "not-the-password"),
        ("alice", turn.password.as_str()),
        (expired, expired_password.as_str()),
    ] {
        let client = relay.client("127.0.0.1", username, password).await;
        assert!(
            allocate(&client).await.is_err(),
            "{username} allocated with bad credentials"
        );
    }
    let good = relay.client_as("127.0.0.1", &turn).await;
    allocate(&good).await.expect("the right ones allocate");

    let metrics = relay.metrics().await;
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"credentials\"}") >= 2);
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"expired\"}") >= 1);
    assert_eq!(metric(&metrics, "relay_turn_allocations"), 1);
}

/// Deterministic junk: xorshift bytes.
fn junk(state: &mut u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 17;
            *state ^= *state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A STUN header: `kind` (method and class), `len` bytes of attributes promised, the cookie.
fn header(kind: u16, len: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&kind.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&0x2112_a442_u32.to_be_bytes());
    h.extend_from_slice(&[9; 12]);
    h
}

#[tokio::test]
async fn garbage_and_a_flood_from_one_address_leave_the_others_working() {
    let quota = Quota {
        per_user: 6,
        per_source: 4,
    };
    let relay = TurnRelay::start(turn_config(quota)).await;

    // Garbage of every kind, from one socket.
    let junk_socket = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let mut state = 0x2545_f491_u32;
    let mut datagrams: Vec<Vec<u8>> = (0..400).map(|len| junk(&mut state, len)).collect();
    for kind in [
        0x0001, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0113, 0x3fff,
    ] {
        // Headers that promise more than they carry, and attributes that lie about their size.
        datagrams.push(header(kind, 200));
        let mut lying = header(kind, 8);
        lying.extend_from_slice(&[0x00, 0x12, 0xff, 0xff, 1, 2, 3, 4]);
        datagrams.push(lying);
        let full = header(kind, 0);
        for cut in 0..full.len() {
            datagrams.push(full[..cut].to_vec());
        }
    }
    // ChannelData for channels nobody bound, and with lengths that lie.
    datagrams.push(vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3]);
    datagrams.push(vec![0x7f, 0xff, 0x00, 0x00]);
    datagrams.push(vec![0x40]);
    for datagram in &datagrams {
        junk_socket
            .send_to(datagram, relay.udp)
            .await
            .expect("sends");
    }

    // A flood of unauthenticated Allocate requests from 127.0.0.3.
    let flood_socket = UdpSocket::bind("127.0.0.3:0").await.expect("binds");
    for i in 0..2_000u16 {
        let mut allocate = header(0x0003, 8);
        allocate[8..10].copy_from_slice(&i.to_be_bytes());
        // REQUESTED-TRANSPORT: UDP.
        allocate.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
        flood_socket
            .send_to(&allocate, relay.udp)
            .await
            .expect("sends");
    }

    // Authenticated allocations from 127.0.0.2 up to the per-address quota, then 486.
    let (_flooder_ws, flooder) = relay.credentials("turn-flood").await;
    let mut held = Vec::new();
    relay
        .allocate_up_to_486("127.0.0.2", &flooder, quota.per_source, &mut held)
        .await;
    // The same user from another address, up to the per-user quota.
    relay
        .allocate_up_to_486(
            "127.0.0.4",
            &flooder,
            quota.per_user - quota.per_source,
            &mut held,
        )
        .await;

    // Somebody else still allocates and relays, and STUN is still answered.
    let (_ws, turn) = relay.credentials("turn-others").await;
    let a = relay.client_as("127.0.0.1", &turn).await;
    let b = relay.client_as("127.0.0.1", &turn).await;
    let mapped = tokio::time::timeout(RECV_TIMEOUT, a.send_binding_request())
        .await
        .expect("in time")
        .expect("a Binding answer");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    let ra = allocate(&a).await.expect("allocates");
    let rb = allocate(&b).await.expect("allocates");
    assert_two_allocations_talk(&ra, &rb).await;

    let metrics = relay.metrics().await;
    assert_eq!(
        metric(&metrics, "relay_turn_allocations"),
        (quota.per_user + 2) as u64
    );
    assert!(
        metric(
            &metrics,
            "relay_turn_refused_total{reason=\"source_quota\"}"
        ) >= 1
    );
    assert!(metric(&metrics, "relay_turn_refused_total{reason=\"user_quota\"}") >= 1);
    assert!(
        metric(
            &metrics,
            "relay_turn_refused_total{reason=\"unauthenticated_rate\"}"
        ) >= 1
    );
    assert!(metric(&metrics, "relay_stun_requests_total") >= 1);
}

/// Whole seconds since the epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

const UCLIENT: &str = "/usr/bin/turnutils_uclient";

/// coturn's own test client, in client-to-client mode (`-y`: its allocations relay to each
/// other), with REST credentials minted from the secret as the relay mints them, over UDP,
/// (with `-t`) TCP or (with `-t -S`) TLS, to `port` on 127.0.0.1. Returns how many messages
/// it sent and received; `None` where Debian's coturn is not installed.
async fn uclient(flags: &[&str], port: u16) -> Option<(u64, u64)> {
    if !std::path::Path::new(UCLIENT).exists() {
        eprintln!("skipped: no {UCLIENT} (Debian's coturn package)");
        return None;
    }
    let username = format!("{}:uclient", unix_now() + 600);
    let password = server::turn_credential(&TurnSecret::new(SECRET), &username);
    let port = port.to_string();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(UCLIENT)
            .args(flags)
            .args(["-y", "-c", "-n", "50", "-m", "2", "-l", "200", "-z", "5"])
            .args(["-u", &username, "-w", &password, "-p", &port, "127.0.0.1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("uclient ends in time")
    .expect("uclient runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let count = |label: &str| -> u64 {
        text.lines()
            .filter_map(|line| line.split_once(label))
            .filter_map(|(_, rest)| {
                rest.trim_start_matches([':', '=', ' '])
                    .split_whitespace()
                    .next()?
                    .trim_end_matches(',')
                    .parse()
                    .ok()
            })
            .next_back()
            .unwrap_or_else(|| panic!("no {label} in\n{text}"))
    };
    let (sent, received) = (count("tot_send_msgs"), count("tot_recv_msgs"));
    assert!(sent >= 100, "{text}");
    Some((sent, received))
}

#[tokio::test]
async fn coturns_client_relays_through_the_built_in_server() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let Some((sent, received)) = uclient(&[], relay.udp.port()).await else {
        return;
    };
    assert_eq!(received, sent);
    let metrics = relay.metrics().await;
    assert!(
        metric(&metrics, "relay_turn_allocations_total") >= 2,
        "{metrics}"
    );
}

#[tokio::test]
async fn coturns_client_relays_over_tcp_on_the_same_port() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let Some((sent, received)) = uclient(&["-t"], relay.udp.port()).await else {
        return;
    };
    assert_eq!(received, sent);
    let metrics = relay.metrics().await;
    assert!(
        metric(&metrics, "relay_turn_allocations_total") >= 2,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "relay_turn_connections_total{transport=\"tcp\"}") >= 2,
        "{metrics}"
    );
}

/// A UDP socket for the relay's STUN port on a port whose TCP twin is free too: the relay
/// listens for TURN over TCP on the same port and goes on without it when that is taken, and
/// the tests running beside this one hold TCP ports of their own (a CI run refused a
/// connection so).
async fn stun_socket() -> UdpSocket {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = tcp.local_addr().expect("an address").port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)).await {
            // Free again for the relay, which binds it at once.
            drop(tcp);
            return udp;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A Binding request over TCP, answered over TCP: whether a connection still works.
async fn binding_over_tcp(stream: &mut TcpStream) -> std::io::Result<()> {
    let request = header(0x0001, 0);
    stream.write_all(&request).await?;
    let mut answer = [0u8; 20];
    tokio::time::timeout(RECV_TIMEOUT, stream.read_exact(&mut answer))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    assert_eq!(&answer[..2], &[0x01, 0x01], "a Binding success");
    assert_eq!(&answer[8..20], &request[8..20], "the same transaction");
    let len = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
    let mut attributes = vec![0u8; len];
    stream.read_exact(&mut attributes).await?;
    Ok(())
}

#[tokio::test]
async fn a_tcp_connection_that_stalls_or_sends_garbage_ends_alone() {
    let relay = TurnRelay::start(turn_config(Quota::default())).await;
    let connect = || TcpStream::connect(relay.udp);
    // Half a message, then silence.
    let mut stalled = connect().await.expect("connects");
    stalled
        .write_all(&header(0x0003, 8)[..10])
        .await
        .expect("writes");
    // Garbage: the connection is closed, since its framing is lost.
    let mut garbage = connect().await.expect("connects");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(RECV_TIMEOUT, garbage.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Others go on, over TCP and over UDP.
    let mut fine = connect().await.expect("connects");
    binding_over_tcp(&mut fine)
        .await
        .expect("answered over TCP");
    binding_over_tcp(&mut fine).await.expect("and again");
    let (_ws, turn) = relay.credentials("turn-tcp-others").await;
    let (_a, _b, [ra, rb]) = relay.two_allocations(&turn).await;
    assert_two_allocations_talk(&ra, &rb).await;
    // Still open: a stalled frame is given up on after its time-out, not at once.
    drop(stalled);
}

#[tokio::test]
async fn coturns_client_relays_over_tls_on_the_https_port_which_still_serves_pages() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = server::Tls::self_signed(dir.path()).expect("a certificate");
    let relay = TurnRelay::start_with(turn_config(Quota::default()), Some(tls)).await;
    let https = relay.https.expect("https");
    let (_ws, turn) = relay.credentials("turn-tls").await;
    assert!(
        turn.urls
            .contains(&format!("turns:127.0.0.1:{}?transport=tcp", https.port())),
        "{:?}",
        turn.urls
    );
    let connect = || tls_connect(dir.path(), https);

    // A TLS connection that sends half a STUN message and stalls holds up nobody.
    let mut stalled = connect().await;
    stalled
        .write_all(&header(0x0003, 8)[..10])
        .await
        .expect("writes");
    stalled.flush().await.expect("flushes");

    let Some((sent, received)) = uclient(&["-t", "-S"], https.port()).await else {
        return;
    };
    assert_eq!(received, sent);

    // The same port still serves https.
    let mut stream = connect().await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut answer = String::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_string(&mut answer))
        .await
        .expect("in time")
        .expect("reads");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metrics = relay.metrics().await;
    assert!(
        metric(&metrics, "relay_turn_allocations_total") >= 2,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "relay_turn_connections_total{transport=\"tls\"}") >= 2,
        "{metrics}"
    );
    drop(stalled);
}

/// A TLS connection to `addr`, trusting the certificate the relay made in `dir`.
async fn tls_connect(dir: &std::path::Path, addr: SocketAddr) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).expect("reads") {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await.expect("the handshake")
}

#[tokio::test]
async fn a_port_of_its_own_for_turn_over_tls_is_the_one_pages_are_told_of() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = server::Tls::self_signed(dir.path()).expect("a certificate");
    let relay = TurnRelay::start_on(turn_config(Quota::default()), Some(tls), true).await;
    let (https, turns) = (relay.https.expect("https"), relay.turn_tls.expect("turns"));
    let (_ws, turn) = relay.credentials("turn-tls-port").await;
    let told = |port: u16| {
        turn.urls
            .contains(&format!("turns:127.0.0.1:{port}?transport=tcp"))
    };
    assert!(told(turns.port()), "{:?}", turn.urls);
    assert!(!told(https.port()), "{:?}", turn.urls);

    let Some((sent, received)) = uclient(&["-t", "-S"], turns.port()).await else {
        return;
    };
    assert_eq!(received, sent);
    let metrics = relay.metrics().await;
    assert!(
        metric(&metrics, "relay_turn_connections_total{transport=\"tls\"}") >= 2,
        "{metrics}"
    );

    // It serves nothing else: a request for a page is closed unanswered.
    let mut stream = tls_connect(dir.path(), turns).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}
