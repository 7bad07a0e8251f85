//! Several relay instances sharing rooms through a real Redis (`redis-server`, started by each
//! test on a free loopback port and stopped by its PID when the test ends, even when it fails).
//! Clients are real WebSockets on different instances; an instance is shut down, or killed
//! outright (its runtime dropped, as a crash would), and Redis itself is stopped and started
//! again in the middle of a test.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use futures_util::SinkExt;
use protocol::{ClientMsg, ErrorKind, PeerId, PeerInfo, ServerMsg};
use server::{BackplaneConfig, Limits};
use tokio::{net::TcpStream, time::Instant};
use tokio_tungstenite::{
    connect_async_with_config, tungstenite::Message, MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

mod common;
use common::{expect_welcome, http::get, join_msg, next_frame, recv, Welcome, RECV_TIMEOUT};
#[path = "common/redis.rs"]
mod redis;
use redis::Redis;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a state that the relays reach by themselves (health, a dead instance noticed) may
/// take before the test fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// One relay instance on an ephemeral port, in a runtime of its own so that a test can kill it
/// without letting it say goodbye.
struct Instance {
    addr: SocketAddr,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

fn config(redis: &Redis, limits: Limits) -> server::Config {
    config_at(&redis.url(), limits)
}

/// [`config`] for the Redis at `url`.
fn config_at(url: &str, limits: Limits) -> server::Config {
    let mut backplane = BackplaneConfig::new(url).expect("a Redis URL");
    backplane.heartbeat = Duration::from_millis(100);
    backplane.presence_ttl = Duration::from_millis(600);
    backplane.timeout = Duration::from_millis(500);
    server::Config {
        dist: PathBuf::from("/nonexistent/relay-test-dist"),
        room_capacity: 3,
        limits,
        backplane: Some(backplane),
        ..server::Config::default()
    }
}

impl Instance {
    async fn start(redis: &Redis) -> Self {
        Self::start_with(config(redis, Limits::default())).await
    }

    /// An instance that looks at Redis thirty times less often than [`Instance::start`]'s
    /// (every 3 s), for tests where one instance must lag the other.
    async fn start_slow(redis: &Redis) -> Self {
        let mut slow = config(redis, Limits::default());
        if let Some(backplane) = slow.backplane.as_mut() {
            backplane.heartbeat = Duration::from_secs(3);
            backplane.presence_ttl = Duration::from_secs(18);
        }
        Self::start_with(slow).await
    }

    async fn start_with(config: server::Config) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("has an address");
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let stop = shutdown.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            server::run(listener, config, stop).await
        });
        let instance = Self {
            addr,
            shutdown,
            runtime: Some(runtime),
        };
        instance.wait_until_healthy().await;
        instance
    }

    /// Polls `/healthz` until it answers `want`.
    async fn wait_for_health(&self, want: u16) -> String {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let (status, body) = get(self.addr, "/healthz").await;
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz still answers {status} {body:?}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_until_healthy(&self) {
        self.wait_for_health(200).await;
    }

    /// A WebSocket to the instance, with Nagle off as browsers have it (signals go out at once).
    async fn connect(&self) -> Ws {
        let (ws, _) = connect_async_with_config(format!("ws://{}/ws", self.addr), None, true)
            .await
            .expect("the WebSocket handshake succeeds");
        ws
    }

    /// Connects and joins `room` as `name`.
    async fn join_as(&self, room: &str, name: &str) -> (Ws, Welcome) {
        let mut ws = self.connect().await;
        send(&mut ws, &join_msg(room, Some(name), None)).await;
        let welcome = expect_welcome(&mut ws, room).await;
        (ws, welcome)
    }

    async fn metrics(&self) -> String {
        let (status, body) = get(self.addr, "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// Kills the instance as a crash would: its tasks stop where they are, nothing says
    /// goodbye to Redis, its sockets close.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The value of one series in a Prometheus exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::text(msg.to_json())).await.expect("sends");
}

async fn recv_error(ws: &mut Ws, kind: ErrorKind) -> String {
    match recv(ws).await {
        ServerMsg::Error { kind: got, message } => {
            assert_eq!(got, kind, "{message}");
            assert!(!message.is_empty());
            message
        }
        other => panic!("expected a {kind} error, got {other:?}"),
    }
}

/// Reads past pings until the relay closes the connection; returns the close code, if any.
async fn recv_close(ws: &mut Ws) -> Option<u16> {
    match next_frame(ws).await {
        Message::Close(frame) => frame.map(|f| u16::from(f.code)),
        other => panic!("expected a Close frame, got {other:?}"),
    }
}

/// Fails unless the connection ends (a Close frame, an error or the end of the stream) in time.
async fn expect_end(ws: &mut Ws) {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("the connection ends in time")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            Some(Ok(other)) => panic!("expected the end, got {other:?}"),
        }
    }
}

fn info(id: PeerId, name: &str) -> PeerInfo {
    PeerInfo {
        id,
        name: Some(name.into()),
        session: None,
    }
}

fn offer(to: Option<PeerId>, sdp: &str) -> ClientMsg {
    ClientMsg::Offer {
        to,
        sdp: sdp.into(),
    }
}

fn offer_from(from: PeerId, name: &str, sdp: &str) -> ServerMsg {
    ServerMsg::Offer {
        from,
        from_name: Some(name.into()),
        sdp: sdp.into(),
    }
}

fn joined(id: PeerId, name: &str) -> ServerMsg {
    ServerMsg::PeerJoined {
        peer: info(id, name),
    }
}

fn left(peer: PeerId, reconnecting: bool) -> ServerMsg {
    ServerMsg::PeerLeft { peer, reconnecting }
}

/// A round trip to the relay: once `pong` is back, everything sent before has been carried out.
async fn round_trip(ws: &mut Ws) {
    send(ws, &ClientMsg::Ping).await;
    assert_eq!(recv(ws).await, ServerMsg::Pong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_two_instances_share_a_room_and_call() {
    let redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    let (a_id, b_id) = (a_welcome.id, b_welcome.id);
    assert_ne!(a_id, b_id, "ids are unique across instances");
    assert_eq!(b_welcome.peers, vec![info(a_id, "ann")]);
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));

    // An offer without `to` goes to the one other peer, on the other instance, and back.
    send(&mut b, &offer(None, "v=0 from bob")).await;
    assert_eq!(recv(&mut a).await, offer_from(b_id, "bob", "v=0 from bob"));
    let answer = ClientMsg::Answer {
        to: Some(b_id),
        sdp: "v=0 from ann".into(),
    };
    send(&mut a, &answer).await;
    assert_eq!(
        recv(&mut b).await,
        ServerMsg::Answer {
            from: a_id,
            from_name: Some("ann".into()),
            sdp: "v=0 from ann".into()
        }
    );
    // Many signals in a row arrive once each, in order.
    for n in 0..20 {
        send(&mut a, &offer(Some(b_id), &format!("v=0 {n}"))).await;
    }
    for n in 0..20 {
        assert_eq!(
            recv(&mut b).await,
            offer_from(a_id, "ann", &format!("v=0 {n}"))
        );
    }
    round_trip(&mut b).await;

    // A goodbye on one instance is heard on the other.
    a.close(None).await.expect("closes");
    assert_eq!(recv(&mut b).await, left(a_id, false));

    let metrics = one.metrics().await;
    assert!(metric(&metrics, "relay_backplane_published_total") >= 21.0);
    assert!(metric(&metrics, "relay_backplane_received_total") >= 3.0);
    assert_eq!(metric(&metrics, "relay_backplane_up"), 1.0);
    assert!(metric(&metrics, "relay_backplane_round_trip_seconds_count") >= 1.0);
    let metrics = two.metrics().await;
    assert_eq!(metric(&metrics, "relay_peers"), 1.0);
    assert!(metric(&metrics, "relay_backplane_received_total") >= 22.0);
}

/// A signal that reaches its addressee's instance while the addressee says goodbye is read by
/// the addressee before the relay's Close reply, or refused to its sender (`no-peer`): never
/// dropped in between. Offers stream from one instance while the addressee closes on the other,
/// round after round, so that some land in the moment between the goodbye and Redis hearing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_racing_a_goodbye_is_delivered_or_refused() {
    use futures_util::StreamExt;
    const ROUNDS: usize = 30;
    const OFFERS: usize = 100;
    let redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (mut delivered, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let room = format!("race-{round}");
        let (mut a, _) = one.join_as(&room, "ann").await;
        let (mut b, b_welcome) = two.join_as(&room, "bob").await;
        let b_id = b_welcome.id;
        assert_eq!(recv(&mut a).await, joined(b_id, "bob"));
        let sender = tokio::spawn(async move {
            for n in 0..OFFERS {
                send(&mut a, &offer(Some(b_id), &format!("v=0 {n}"))).await;
            }
            send(&mut a, &ClientMsg::Ping).await;
            a
        });
        // Goodbye part-way through the stream, a little later each round.
        let goodbye = Instant::now() + Duration::from_millis(2 * (round as u64 % 20));
        let (mut read, mut closing) = (0, false);
        loop {
            let frame = if closing {
                tokio::time::timeout(RECV_TIMEOUT, b.next())
                    .await
                    .expect("the relay answers the goodbye in time")
            } else if let Ok(frame) = tokio::time::timeout_at(goodbye, b.next()).await {
                frame
            } else {
                b.close(None).await.expect("closes");
                closing = true;
                continue;
            };
            match frame {
                Some(Ok(Message::Text(text))) => match common::parse_event(text.as_str()) {
                    ServerMsg::Offer { .. } => read += 1,
                    other => panic!("bob got {other:?}"),
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
        let mut a = sender.await.expect("the sender finishes");
        // Refusals come back after the pong when another instance sends them: wait for all.
        let (mut errors, mut ponged) = (0, false);
        while read + errors < OFFERS || !ponged {
            let event = tokio::time::timeout(RECV_TIMEOUT / 2, recv(&mut a))
                .await
                .unwrap_or_else(|_| {
                    panic!("round {round}: of {OFFERS} offers, {read} were read and {errors} refused: the rest were lost")
                });
            match event {
                ServerMsg::Error {
                    kind: ErrorKind::NoPeer,
                    ..
                } => errors += 1,
                ServerMsg::Pong => ponged = true,
                ServerMsg::PeerLeft { peer, .. } if peer == b_id => {}
                other => panic!("ann got {other:?}"),
            }
        }
        // Nothing more: no offer was both read and refused. Bob's departure may still be on
        // its way (it reaches ann through Redis, her refusals come from her own instance).
        send(&mut a, &ClientMsg::Ping).await;
        loop {
            match recv(&mut a).await {
                ServerMsg::Pong => break,
                ServerMsg::PeerLeft { peer, .. } if peer == b_id => {}
                other => {
                    panic!("round {round}: after every offer was accounted for, ann got {other:?}")
                }
            }
        }
        assert_eq!(read + errors, OFFERS, "round {round}");
        delivered += read;
        refused += errors;
    }
    // The race was run, not skipped: both outcomes happened.
    assert!(
        delivered > 0 && refused > 0,
        "{delivered} read, {refused} refused"
    );
    eprintln!("{delivered} offers read before the goodbye, {refused} refused after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_places_are_shared_across_instances() {
    let redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (_a, a_welcome) = one.join_as("r", "ann").await;

    let mut c = two.connect().await;
    send(&mut c, &join_msg("r", Some("ann"), None)).await;
    recv_error(&mut c, ErrorKind::NameTaken).await;
    send(&mut c, &join_msg("r", Some("cat"), None)).await;
    let c_welcome = expect_welcome(&mut c, "r").await;
    assert_eq!(c_welcome.peers, vec![info(a_welcome.id, "ann")]);

    // Rooms hold three here: the fourth is refused on either instance.
    let (_d, _) = one.join_as("r", "dan").await;
    let mut e = two.connect().await;
    send(&mut e, &join_msg("r", Some("eve"), None)).await;
    recv_error(&mut e, ErrorKind::RoomFull).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_signals_are_released_and_expire_across_instances() {
    let redis = Redis::start();
    let hold = Duration::from_millis(500);
    let limits = Limits {
        hold,
        ..Limits::default()
    };
    let one = Instance::start_with(config(&redis, limits.clone())).await;
    let two = Instance::start_with(config(&redis, limits)).await;

    // Sent alone on one instance, taken by a peer joining on the other.
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    send(&mut a, &offer(None, "v=0 early")).await;
    round_trip(&mut a).await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    assert_eq!(b_welcome.peers, vec![info(a_welcome.id, "ann")]);
    assert_eq!(
        recv(&mut b).await,
        offer_from(a_welcome.id, "ann", "v=0 early")
    );
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));

    // Nobody comes for this one: its sender is told, once the hold time is over.
    let (mut c, _) = two.join_as("elsewhere", "cat").await;
    let sent = Instant::now();
    send(&mut c, &offer(None, "v=0 into the void")).await;
    recv_error(&mut c, ErrorKind::Expired).await;
    assert!(sent.elapsed() >= hold, "expired before the hold time");
    let (mut d, _) = one.join_as("elsewhere", "dan").await;
    // Only the welcome: the expired offer is gone. The ping's pong is the next event.
    round_trip(&mut d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_resumes_on_another_instance_after_its_own_shuts_down() {
    let redis = Redis::start();
    let one = Instance::start(&redis).await;
    let two = Instance::start(&redis).await;
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    let (a_id, b_id) = (a_welcome.id, b_welcome.id);
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));

    one.shutdown.cancel();
    assert_eq!(recv_close(&mut a).await, Some(protocol::CLOSE_GOING_AWAY));
    assert_eq!(recv(&mut b).await, left(a_id, true));
    // Held for ann while she is away.
    send(&mut b, &offer(Some(a_id), "v=0 while you were away")).await;
    round_trip(&mut b).await;

    let mut a = two.connect().await;
    send(&mut a, &join_msg("r", None, Some(&a_welcome.token))).await;
    let resumed = expect_welcome(&mut a, "r").await;
    assert_eq!(resumed.id, a_id, "the same id on the other instance");
    assert_eq!(resumed.peers, vec![info(b_id, "bob")]);
    assert_eq!(
        recv(&mut a).await,
        offer_from(b_id, "bob", "v=0 while you were away")
    );
    assert_eq!(recv(&mut b).await, joined(a_id, "ann"));
    send(&mut a, &offer(None, "v=0 back")).await;
    assert_eq!(recv(&mut b).await, offer_from(a_id, "ann", "v=0 back"));

    // The token was good once, on any instance.
    let three = Instance::start(&redis).await;
    let mut d = three.connect().await;
    send(&mut d, &join_msg("r", None, Some(&a_welcome.token))).await;
    recv_error(&mut d, ErrorKind::InvalidResume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_leaves_no_ghost_and_its_peers_resume_elsewhere() {
    let redis = Redis::start();
    let mut one = Instance::start(&redis).await;
    let two = Instance::start(&redis).await;
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    let a_id = a_welcome.id;
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));

    // No goodbye: the survivor notices the presence key expire.
    one.kill();
    expect_end(&mut a).await;
    assert_eq!(recv(&mut b).await, left(a_id, true));
    // Ann's name is still hers for the grace period...
    let mut c = two.connect().await;
    send(&mut c, &join_msg("r", Some("ann"), None)).await;
    recv_error(&mut c, ErrorKind::NameTaken).await;
    // ...and she comes back on the survivor.
    let mut a = two.connect().await;
    send(&mut a, &join_msg("r", None, Some(&a_welcome.token))).await;
    let resumed = expect_welcome(&mut a, "r").await;
    assert_eq!(resumed.id, a_id);
    assert_eq!(recv(&mut b).await, joined(a_id, "ann"));

    let metrics = two.metrics().await;
    assert_eq!(
        metric(&metrics, "relay_backplane_instances_reaped_total"),
        1.0
    );
    assert_eq!(metric(&metrics, "relay_peers"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_is_reported_refused_and_recovered_from() {
    let mut redis = Redis::start();
    let one = Instance::start(&redis).await;
    let two = Instance::start(&redis).await;
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    let (a_id, b_id) = (a_welcome.id, b_welcome.id);
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));

    redis.stop();
    let body = one.wait_for_health(503).await;
    assert!(body.contains("degraded"), "{body}");
    two.wait_for_health(503).await;
    // A join is refused with a clear error, at once rather than after a hang...
    let mut c = one.connect().await;
    send(&mut c, &join_msg("s", Some("cat"), None)).await;
    let why = recv_error(&mut c, ErrorKind::BackplaneUnavailable).await;
    assert!(why.contains("Redis"), "{why}");
    // ...so is a signal, and the calls' connections stay open meanwhile.
    send(&mut a, &offer(None, "v=0 lost")).await;
    recv_error(&mut a, ErrorKind::BackplaneUnavailable).await;
    round_trip(&mut a).await;
    round_trip(&mut b).await;

    // Redis comes back empty (it saves nothing): the instances put their peers back.
    redis.restart();
    one.wait_until_healthy().await;
    two.wait_until_healthy().await;
    send(&mut c, &join_msg("s", Some("cat"), None)).await;
    let c_welcome = expect_welcome(&mut c, "s").await;
    assert!(
        c_welcome.id != a_id && c_welcome.id != b_id,
        "no id is handed out twice after Redis lost its counter"
    );
    send(&mut a, &offer(None, "v=0 again")).await;
    assert_eq!(recv(&mut b).await, offer_from(a_id, "ann", "v=0 again"));
    // Names are still held: a newcomer on either instance cannot take bob's.
    let mut d = one.connect().await;
    send(&mut d, &join_msg("r", Some("bob"), None)).await;
    recv_error(&mut d, ErrorKind::NameTaken).await;

    let metrics = one.metrics().await;
    assert!(metric(&metrics, "relay_backplane_reconnects_total") >= 1.0);
    assert_eq!(metric(&metrics, "relay_backplane_up"), 1.0);
}

/// An instance that stalls past its presence (a relay starved of CPU: the chaos run saw it on a
/// machine at load 25) is taken for gone by the others, which turn its members into
/// reservations. It notices at its next heartbeat and puts them back; before, its peers'
/// signals were refused (`not-joined`) for as long as their connections lasted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_taken_for_gone_while_alive_puts_its_members_back() {
    use ::redis::AsyncCommands;
    let redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    let (a_id, b_id) = (a_welcome.id, b_welcome.id);
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));

    // What a stall looks like from outside: one's presence is gone whenever two looks.
    let client = ::redis::Client::open(redis.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects to Redis");
    let state: String = conn.hget("videocall:room:r", "s").await.expect("the room");
    let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
    let instance = state["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == a_id.0))
        .and_then(|m| m["instance"].as_str())
        .expect("ann's instance")
        .to_owned();
    let alive = format!("videocall:alive:{instance}");
    let stall = tokio::spawn(async move {
        loop {
            let _: Result<(), _> = conn.del(&alive).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Two reaps one: bob hears ann dropped.
    let reaped = tokio::time::timeout(SETTLE_TIMEOUT, recv(&mut b)).await;
    stall.abort();
    assert_eq!(reaped.expect("two reaps one in time"), left(a_id, true));

    // One puts ann back: bob hears she is back, and once one serves again (it refuses with
    // `backplane-unavailable` meanwhile, and a page tries again), her signals reach him.
    assert_eq!(recv(&mut b).await, joined(a_id, "ann"));
    one.wait_until_healthy().await;
    send(&mut a, &offer(Some(b_id), "v=0 after the stall")).await;
    assert_eq!(
        recv(&mut b).await,
        offer_from(a_id, "ann", "v=0 after the stall")
    );
    round_trip(&mut a).await;
}

/// A place reserved for a peer whose socket dropped survives Redis restarting empty: the
/// instance that reserved it puts it back, and the peer resumes it (the chaos run saw these
/// resumes refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_place_survives_redis_restarting_empty() {
    let mut redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (b, b_welcome) = two.join_as("r", "bob").await;
    let b_id = b_welcome.id;
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));
    drop(b);
    assert_eq!(recv(&mut a).await, left(b_id, true));

    redis.stop();
    redis.restart();
    // Both have heard their subscriptions drop, and put back what they hold.
    wait_for_resync(&one).await;
    wait_for_resync(&two).await;

    let mut b = one.connect().await;
    send(&mut b, &join_msg("r", Some("bob"), Some(&b_welcome.token))).await;
    let back = expect_welcome(&mut b, "r").await;
    assert_eq!(back.id, b_id, "bob has his place back");
    assert_eq!(back.peers, vec![info(a_welcome.id, "ann")]);
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));
}

/// Waits until `instance` has made its subscription to Redis again and says it is healthy.
async fn wait_for_resync(instance: &Instance) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while metric(
        &instance.metrics().await,
        "relay_backplane_reconnects_total",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no reconnection to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instance.wait_until_healthy().await;
}

/// How long the two tests below hold a signal.
const HOLD: Duration = Duration::from_secs(3);

/// Ann on one instance, bob on another; bob's socket drops and ann's offer to him is held.
struct HeldForBob {
    redis: Redis,
    one: Instance,
    two: Instance,
    a: Ws,
    a_welcome: Welcome,
    b_welcome: Welcome,
    /// When the offer was sent.
    sent: Instant,
}

impl HeldForBob {
    async fn start() -> Self {
        let redis = Redis::start();
        let limits = Limits {
            hold: HOLD,
            ..Limits::default()
        };
        let one = Instance::start_with(config(&redis, limits.clone())).await;
        let two = Instance::start_with(config(&redis, limits)).await;
        let (mut a, a_welcome) = one.join_as("r", "ann").await;
        let (b, b_welcome) = two.join_as("r", "bob").await;
        let b_id = b_welcome.id;
        assert_eq!(recv(&mut a).await, joined(b_id, "bob"));
        drop(b);
        assert_eq!(recv(&mut a).await, left(b_id, true));
        let sent = Instant::now();
        send(&mut a, &offer(Some(b_id), "v=0 for bob")).await;
        round_trip(&mut a).await;
        Self {
            redis,
            one,
            two,
            a,
            a_welcome,
            b_welcome,
            sent,
        }
    }
}

/// Redis restarts empty while an offer waits for a dropped peer: the offer is gone with Redis's
/// data, so its sender must hear it expired (the chaos run lost four such signals silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_signal_lost_with_redis_data_expires_for_its_sender() {
    let HeldForBob {
        mut redis,
        one,
        two,
        mut a,
        a_welcome,
        b_welcome,
        sent,
    } = HeldForBob::start().await;
    let b_id = b_welcome.id;

    redis.stop();
    redis.restart();
    wait_for_resync(&one).await;
    wait_for_resync(&two).await;

    // Bob is back in his place, without the offer: Redis lost it.
    let mut b = one.connect().await;
    send(&mut b, &join_msg("r", Some("bob"), Some(&b_welcome.token))).await;
    let back = expect_welcome(&mut b, "r").await;
    assert_eq!(back.peers, vec![info(a_welcome.id, "ann")]);
    round_trip(&mut b).await;
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));
    recv_error(&mut a, ErrorKind::Expired).await;
    assert!(sent.elapsed() >= HOLD, "told before the hold time");
}

/// The other side of the test above: an offer its addressee took before Redis restarted empty
/// was delivered, so its sender hears nothing once the hold time is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_signal_taken_before_redis_restarts_is_not_refused() {
    let HeldForBob {
        mut redis,
        one,
        two,
        mut a,
        a_welcome,
        b_welcome,
        sent,
    } = HeldForBob::start().await;
    let b_id = b_welcome.id;
    let mut b = one.connect().await;
    send(&mut b, &join_msg("r", Some("bob"), Some(&b_welcome.token))).await;
    expect_welcome(&mut b, "r").await;
    assert_eq!(
        recv(&mut b).await,
        offer_from(a_welcome.id, "ann", "v=0 for bob")
    );
    assert_eq!(recv(&mut a).await, joined(b_id, "bob"));

    redis.stop();
    redis.restart();
    wait_for_resync(&one).await;
    wait_for_resync(&two).await;
    if let Some(left) = HOLD.checked_sub(sent.elapsed()) {
        tokio::time::sleep(left + Duration::from_millis(500)).await;
    }
    // Nothing before the pong: no `expired` for a delivered offer.
    round_trip(&mut a).await;
}

/// While Redis is down, one peer closes its socket and another's drops; Redis comes back empty.
/// The peer who was in the room with them hears both left (the chaos run saw peers keep a ghost
/// of one that left then), and the dropped one resumes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_leave_while_redis_is_down_and_loses_its_data_are_told_gone() {
    let mut redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));
    let (c, c_welcome) = two.join_as("r", "cat").await;
    assert_eq!(recv(&mut a).await, joined(c_welcome.id, "cat"));
    assert_eq!(recv(&mut b).await, joined(c_welcome.id, "cat"));

    redis.stop();
    two.wait_for_health(503).await;
    b.close(None).await.expect("closes");
    drop(c);
    // Both relays find Redis away and queue the leaves; then Redis is back, empty.
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    wait_for_resync(&one).await;
    wait_for_resync(&two).await;

    let mut heard = vec![recv(&mut a).await, recv(&mut a).await];
    heard.sort_by_key(|msg| format!("{msg:?}"));
    let mut want = vec![left(b_welcome.id, false), left(c_welcome.id, true)];
    want.sort_by_key(|msg| format!("{msg:?}"));
    assert_eq!(heard, want);

    let mut c = one.connect().await;
    send(&mut c, &join_msg("r", Some("cat"), Some(&c_welcome.token))).await;
    let back = expect_welcome(&mut c, "r").await;
    assert_eq!(back.id, c_welcome.id, "cat has her place back");
    assert_eq!(back.peers, vec![info(a_welcome.id, "ann")]);
    assert_eq!(recv(&mut a).await, joined(c_welcome.id, "cat"));
}

/// Bob's socket drops while Redis is paused, and his page resumes at once on the other relay,
/// again and again, as pages do. His own relay takes him out of the room only at its next
/// heartbeat after Redis is back, so for a while his token still belongs to a member: he is
/// asked to try again (`backplane-unavailable`), never told his place is gone (the chaos run
/// lost a place so after Redis was cut off), and gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_racing_its_own_leave_after_redis_pauses_gets_its_place() {
    let redis = Redis::start();
    let one = Instance::start(&redis).await;
    // Bob's relay looks at Redis thirty times less often: one serves again well before two
    // takes bob out of the room.
    let two = Instance::start_slow(&redis).await;
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (b, b_welcome) = two.join_as("r", "bob").await;
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));

    // Two tries to take bob out while Redis is paused, gives up after its timeout and keeps
    // the leave for later; its subscription and presence outlive the short pause.
    redis.pause();
    drop(b);
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.unpause();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut refused = 0;
    let back = loop {
        let mut b = one.connect().await;
        send(&mut b, &join_msg("r", Some("bob"), Some(&b_welcome.token))).await;
        match recv(&mut b).await {
            ServerMsg::Welcome { id, peers, .. } => break (id, peers),
            ServerMsg::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::BackplaneUnavailable, "{message}");
                refused += 1;
            }
            other => panic!("expected a welcome or an error, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "bob never got his place back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(back, (b_welcome.id, vec![info(a_welcome.id, "ann")]));
    eprintln!("bob was asked to try again {refused} times");
    // Ann heard bob drop and come back, once each.
    assert_eq!(recv(&mut a).await, left(b_welcome.id, true));
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));
}

/// Redis restarts empty; one relay puts its members back at once, the other (slower) three
/// seconds later. Dan, who joins in between, hears of bob once bob's relay puts him back, and
/// bob hears of dan: each missed the other's arrival (the chaos run saw a peer told that another
/// left whose presence it never heard of).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_put_back_late_and_peers_that_joined_meanwhile_hear_of_each_other() {
    let mut redis = Redis::start();
    let one = Instance::start(&redis).await;
    let two = Instance::start_slow(&redis).await;
    let (mut a, a_welcome) = one.join_as("r", "ann").await;
    let (mut b, b_welcome) = two.join_as("r", "bob").await;
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));

    redis.stop();
    redis.restart();
    wait_for_resync(&one).await;
    let (mut d, d_welcome) = one.join_as("r", "dan").await;
    assert_eq!(
        d_welcome.peers,
        vec![info(a_welcome.id, "ann")],
        "bob is not back yet"
    );
    assert_eq!(recv(&mut a).await, joined(d_welcome.id, "dan"));

    wait_for_resync(&two).await;
    assert_eq!(recv(&mut d).await, joined(b_welcome.id, "bob"));
    assert_eq!(recv(&mut b).await, joined(d_welcome.id, "dan"));
    // Ann saw bob all along: nothing for her.
    round_trip(&mut a).await;
}

/// The next event, which must be a `room` event: its person in control, lock and knocks.
async fn recv_door(ws: &mut Ws) -> (PeerId, bool, Vec<String>) {
    match recv(ws).await {
        ServerMsg::Room {
            controller,
            locked,
            knocking,
            ..
        } => (
            controller,
            locked,
            knocking.into_iter().map(|k| k.session).collect(),
        ),
        other => panic!("expected a room event, got {other:?}"),
    }
}

/// A `join` of `room` as `name`, whose page's session is `name` too.
fn knock_msg(room: &str, name: &str) -> ClientMsg {
    ClientMsg::Join {
        room: room.into(),
        name: Some(name.into()),
        resume: None,
        session: Some(name.into()),
        passphrase: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_locked_on_one_instance_is_locked_on_the_other() {
    let redis = Redis::start();
    let (one, two) = (Instance::start(&redis).await, Instance::start(&redis).await);
    let mut a = one.connect().await;
    send(&mut a, &knock_msg("kept", "ann")).await;
    let a_id = expect_welcome(&mut a, "kept").await.id;
    send(&mut a, &ClientMsg::Lock { locked: true }).await;
    assert_eq!(recv_door(&mut a).await, (a_id, true, vec![]));

    // A knock through the other instance is seen, let in, and gets in there.
    let mut b = two.connect().await;
    send(&mut b, &knock_msg("kept", "bob")).await;
    recv_error(&mut b, ErrorKind::Knocking).await;
    assert_eq!(recv_door(&mut a).await.2, vec!["bob"]);
    send(
        &mut a,
        &ClientMsg::Admit {
            session: "bob".into(),
        },
    )
    .await;
    assert!(recv_door(&mut a).await.2.is_empty());
    send(&mut b, &knock_msg("kept", "bob")).await;
    let b_id = expect_welcome(&mut b, "kept").await.id;
    assert_eq!(recv_door(&mut b).await, (a_id, true, vec![]));
    assert!(matches!(recv(&mut a).await, ServerMsg::PeerJoined { peer } if peer.id == b_id));

    // Bob may not lock or remove; removed by ann across instances, he is told and closed, and
    // kept out.
    send(&mut b, &ClientMsg::Remove { peer: a_id }).await;
    recv_error(&mut b, ErrorKind::NotInControl).await;
    send(&mut a, &ClientMsg::Remove { peer: b_id }).await;
    assert_eq!(recv(&mut b).await, ServerMsg::Removed);
    assert_eq!(recv_close(&mut b).await, Some(protocol::CLOSE_REMOVED));
    assert_eq!(recv(&mut a).await, left(b_id, false));
    let mut again = one.connect().await;
    send(&mut again, &knock_msg("kept", "bob")).await;
    recv_error(&mut again, ErrorKind::Removed).await;
}

/// A TCP proxy to Redis whose connections can go deaf: those open when [`Proxy::freeze`] is
/// called carry nothing more either way, yet stay open, as connections do across a network
/// cut that neither end has noticed yet. Connections made after it carry on.
struct Proxy {
    addr: SocketAddr,
    /// Connections numbered below this carry nothing.
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(redis: &Redis) -> Self {
        use std::sync::{atomic::AtomicU64, Arc};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("an address");
        let target = redis.url();
        let target = target
            .trim_start_matches("redis://")
            .trim_end_matches("/0")
            .to_owned();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(1));
        let (frozen, counter) = (frozen_below.clone(), next.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let id = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::carry(client_read, server_write, id, frozen.clone()));
                tokio::spawn(Self::carry(server_read, client_write, id, frozen.clone()));
            }
        });
        Self {
            addr,
            frozen_below,
            next,
        }
    }

    /// Copies `from` to `to` while connection `id` is not frozen; reads and drops after.
    async fn carry(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        id: u64,
        frozen_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if id < frozen_below.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Every connection open now goes deaf.
    fn freeze(&self) {
        let next = self.next.load(std::sync::atomic::Ordering::SeqCst);
        self.frozen_below
            .store(next, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_lost_with_a_subscription_cut_off_unnoticed_is_refused_to_its_sender() {
    let redis = Redis::start();
    let proxy = Proxy::start(&redis).await;
    let one = Instance::start(&redis).await;
    let two = Instance::start_with(config_at(&proxy.url(), Limits::default())).await;
    let (mut a, a_welcome) = one.join_as("cut", "ann").await;
    let (mut b, b_welcome) = two.join_as("cut", "bob").await;
    assert_eq!(recv(&mut a).await, joined(b_welcome.id, "bob"));
    // Two's connections to Redis go deaf; Redis still counts its subscription as a listener,
    // so the offer is published into it and lost there.
    proxy.freeze();
    send(&mut a, &offer(Some(b_welcome.id), "into the cut")).await;
    // Two notices (its pings go unanswered), subscribes again, and finds the offer's number
    // missing: ann is told, or bob got it after all; never neither.
    let deadline = Instant::now() + Duration::from_secs(20);
    let told = loop {
        assert!(
            Instant::now() < deadline,
            "ann was never told, and bob never got it"
        );
        // Reads that may find nothing (`recv` fails after its time).
        let within = Duration::from_millis(500);
        tokio::select! {
            Ok(event) = tokio::time::timeout(within, recv(&mut a)) => match event {
                ServerMsg::Error { kind, .. } => break kind,
                // Two is taken for gone while it cannot reach Redis, and comes back.
                ServerMsg::PeerLeft { .. } | ServerMsg::PeerJoined { .. } => {}
                other => panic!("ann got {other:?}"),
            },
            Ok(event) = tokio::time::timeout(within, recv(&mut b)) => {
                if let ServerMsg::Offer { sdp, .. } = event {
                    panic!("bob got {sdp:?}: nothing was lost");
                }
            }
            else => {}
        }
    };
    assert_eq!(told, ErrorKind::BackplaneUnavailable);
    let _ = a_welcome;
}
