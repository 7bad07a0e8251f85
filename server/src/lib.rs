//! The signaling relay.
//!
//! It serves the built client bundle and relays JSON signaling messages (see the `protocol`
//! crate) between the peers of a room over WebSocket at `/ws`, over plain http and over https
//! ([`tls`]), and answers STUN Binding requests and TURN on UDP ([`stun`], [`turn_server`]). The binary in `main.rs` only
//! reads its configuration, binds ([`Listeners::bind`]) and calls [`serve`]; tests start the
//! relay the same way on port 0, or with [`run`] for plain http only.

/// `impl AsyncWrite for $wrapper<S>` by handing every call to its field `inner`: for the
/// streams that change only how they are read (see `http::Sniffed`, `upgrade::LazyRead`).
macro_rules! write_through_inner {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

mod access;
mod backplane;
mod banner;
mod connection;
mod door;
mod expiry;
#[cfg(test)]
mod fuzz;
mod headers;
mod host;
mod http;
mod ice;
mod limits;
mod metrics;
mod redirect;
mod registry;
mod room;
mod rooms;
pub mod stun;
pub mod tls;
pub mod turn_server;
mod upgrade;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use protocol::{ErrorKind, IceServer, ServerMsg};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{compression::CompressionLayer, services::ServeDir};

pub use access::{IpNet, MetricsAccess, MetricsToken, TokenError};
pub use backplane::{Backplane, BackplaneConfig};
pub use banner::{banner, lan_addresses, Banner, TurnBanner};
pub use ice::{turn_credential, turn_username, IceError, TurnConfig, TurnSecret};
pub use limits::Limits;
pub use metrics::Metrics;
pub use redirect::redirect_target;
pub use registry::{Mailbox, Registry, Timing};
pub use rooms::Rooms;
pub use tls::Tls;
pub use turn_server::{load_or_create_secret, Quota, TurnServerConfig};

/// How long shutdown waits for connections to say goodbye before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the relay needs to know to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory holding the built client (`index.html`, the `.wasm` and its JS glue).
    pub dist: PathBuf,
    /// STUN/TURN servers handed to every peer when it joins, after the relay's own STUN server
    /// (when [`Listeners::stun`] is given) and before [`Config::turn`].
    pub ice_servers: Vec<IceServer>,
    /// The most peers one room may hold.
    pub room_capacity: usize,
    /// Origins whose pages may open a WebSocket. Empty: pages served from the relay's own host
    /// name (any port, so that `trunk serve` works). Requests without `Origin` (not from a
    /// browser) are always let in.
    pub allowed_origins: Vec<String>,
    /// Limits on what one client, one address and everybody together may use.
    pub limits: Limits,
    /// The certificate for [`Listeners::https`]; needed when that listener is given. `None`
    /// (the default): no https.
    pub tls: Option<Tls>,
    /// A TURN server that takes credentials minted with a shared secret; every peer gets its
    /// own, refreshed before they expire. `None` (the default): no TURN.
    pub turn: Option<TurnConfig>,
    /// The built-in TURN server, on [`Listeners::stun`]'s socket (it answers STUN Binding
    /// requests as well). Pages get it as `turn:` on the host they were loaded from. `None`
    /// (the default): that socket answers STUN only.
    pub turn_server: Option<TurnServerConfig>,
    /// Redis, to share rooms with other instances. `None` (the default): rooms live in this
    /// process only, and nothing goes through Redis.
    pub backplane: Option<BackplaneConfig>,
    /// Who may read `/metrics` besides this machine (the default: nobody).
    pub metrics: MetricsAccess,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dist: PathBuf::from("dist"),
            ice_servers: Vec::new(),
            room_capacity: 6,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
            tls: None,
            turn: None,
            turn_server: None,
            backplane: None,
            metrics: MetricsAccess::default(),
        }
    }
}

/// The sockets the relay serves on.
#[derive(Debug)]
pub struct Listeners {
    /// Plain http and ws. With [`Listeners::https`] given, requests from other machines are
    /// redirected to https (see [`redirect_target`]).
    pub http: TcpListener,
    /// https and wss, with [`Config::tls`]'s certificate.
    pub https: Option<TcpListener>,
    /// STUN on UDP; while it runs, every `welcome` names it as a STUN server.
    pub stun: Option<UdpSocket>,
    /// TURN over TLS only (`--turn-tls-port`), with [`Config::tls`]'s certificate, for the
    /// built-in TURN server; pages are then told of it instead of the https port (which still
    /// takes TURN too).
    pub turn_tls: Option<TcpListener>,
}

/// Why the relay cannot listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {error}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// What the system said.
    pub error: std::io::Error,
}

impl Listeners {
    /// Plain http only.
    pub fn http(http: TcpListener) -> Self {
        Self {
            http,
            https: None,
            stun: None,
            turn_tls: None,
        }
    }

    /// Binds http on `port`, https on `tls_port` and STUN on UDP `stun_port` (`None`: off), all
    /// on `addr`. A STUN port that cannot be had (say coturn has it) is not an error: it is
    /// logged and the relay runs without STUN (and does not hand itself out as a STUN server).
    pub async fn bind(
        addr: IpAddr,
        port: u16,
        tls_port: Option<u16>,
        stun_port: Option<u16>,
    ) -> Result<Self, BindError> {
        let tcp = |port: u16| async move {
            let addr = SocketAddr::new(addr, port);
            TcpListener::bind(addr)
                .await
                .map_err(|error| BindError { addr, error })
        };
        let http = tcp(port).await?;
        let https = match tls_port {
            Some(port) => Some(tcp(port).await?),
            None => None,
        };
        let stun = match stun_port {
            Some(port) => match UdpSocket::bind((addr, port)).await {
                Ok(socket) => Some(socket),
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(
                        port,
                        "UDP port {port} is taken (by a TURN server such as coturn?): running without the built-in STUN server; set --stun-port 0 to say so"
                    );
                    None
                }
                Err(err) => {
                    tracing::warn!(port, %err, "cannot listen for STUN: running without the built-in STUN server");
                    None
                }
            },
            None => None,
        };
        Ok(Self {
            http,
            https,
            stun,
            turn_tls: None,
        })
    }
}

/// The state every connection shares.
pub struct Relay {
    rooms: Rooms,
    /// Connections accepted so far, to name them in the logs.
    connections: AtomicU64,
    metrics: Metrics,
    metrics_access: MetricsAccess,
    limits: Limits,
    allowed_origins: Vec<String>,
    admission: limits::Admission,
    ice: ice::IceServers,
    /// Cancelled when the relay shuts down; each connection's token is a child of it.
    shutdown: CancellationToken,
    /// Every WebSocket task, so that shutdown can wait for them: axum's graceful shutdown does
    /// not wait for upgraded connections.
    tracker: TaskTracker,
    /// The built-in TURN server, once it runs: the https port hands it the connections that
    /// speak STUN after the TLS handshake.
    turn_streams: std::sync::OnceLock<turn_server::Streams>,
}

impl Relay {
    /// A relay with no peers yet, stopping when `shutdown` is cancelled.
    pub fn new(config: &Config, shutdown: CancellationToken) -> Arc<Self> {
        Self::with_stun(config, shutdown, None, None, None)
    }

    /// A relay that hands out its own STUN server on `stun_port`, if given, and its own TURN
    /// server there when `own_turn` is given (`Some(true)`: over TCP too; over TLS on
    /// `tls_port` when there is one).
    fn with_stun(
        config: &Config,
        shutdown: CancellationToken,
        stun_port: Option<u16>,
        own_turn: Option<bool>,
        tls_port: Option<u16>,
    ) -> Arc<Self> {
        let timing = Timing {
            hold: config.limits.hold,
            resume_grace: config.limits.resume_grace,
        };
        let rooms = match &config.backplane {
            Some(backplane) => Rooms::Redis(Backplane::new(
                backplane.clone(),
                config.room_capacity,
                timing,
            )),
            None => Rooms::Memory(Registry::new(config.room_capacity, timing)),
        };
        Arc::new(Self {
            rooms,
            connections: AtomicU64::new(0),
            metrics: Metrics::default(),
            metrics_access: config.metrics.clone(),
            limits: config.limits.clone(),
            allowed_origins: config.allowed_origins.clone(),
            admission: limits::Admission::new(&config.limits),
            ice: ice::IceServers {
                fixed: config.ice_servers.clone(),
                stun_port,
                turn: config.turn.clone(),
                own_turn: stun_port
                    .zip(config.turn_server.as_ref())
                    .zip(own_turn)
                    .map(|((port, turn), tcp)| ice::OwnTurn {
                        port,
                        tcp,
                        tls_port,
                        secret: turn.secret.clone(),
                        ttl: turn.ttl,
                    }),
            },
            shutdown,
            tracker: TaskTracker::new(),
            turn_streams: std::sync::OnceLock::new(),
        })
    }
}

/// The HTTP routes: `/ws` for signaling, `/healthz`, `/metrics`, and everything else from the
/// client bundle, every response with the security headers of `headers` (the page's
/// Content-Security-Policy among them). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: the per-address limit and `/metrics`
/// need the peer's address.
pub fn app(relay: Arc<Relay>, dist: PathBuf) -> Router {
    // ServeDir answers `/` with index.html and `.wasm` as `application/wasm`, which browsers
    // require for streaming compilation.
    // scripts/build-client.sh leaves .br and .gz beside each file, compressed at the highest
    // levels once; the compression layer only compresses what has no such file.
    let bundle = ServeDir::new(&dist).precompressed_br().precompressed_gzip();
    Router::new()
        .route("/ws", get(connection::ws_handler))
        .route("/healthz", get(health_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(relay)
        .fallback_service(bundle)
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(Arc::new(dist), headers::add))
}

/// Serves the relay over plain http on `listener` until `shutdown` is cancelled, then closes
/// every WebSocket with 1001 and waits (up to a few seconds) for the connections to finish.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(Listeners::http(listener), config, shutdown).await
}

/// Serves the relay on every listener given until `shutdown` is cancelled, then closes every
/// WebSocket with 1001 and waits (up to a few seconds) for the connections to finish. An https
/// listener needs [`Config::tls`]. If one listener fails, the others are stopped too.
pub async fn serve(
    listeners: Listeners,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Listeners {
        http,
        https,
        stun,
        turn_tls,
    } = listeners;
    let with_certificate = |listener: Option<TcpListener>| match (listener, config.tls.clone()) {
        (Some(listener), Some(tls)) => Ok(Some((listener, tls))),
        (Some(_), None) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an https or TURN-over-TLS listener needs a certificate (Config::tls)",
        )),
        (None, _) => Ok(None),
    };
    let https = with_certificate(https)?;
    let turn_tls = with_certificate(turn_tls)?;
    let tls_port = match &https {
        Some((listener, _)) => Some(listener.local_addr()?.port()),
        None => None,
    };
    let stun_addr = match &stun {
        Some(socket) => Some(socket.local_addr()?),
        None => None,
    };
    let stun_port = stun_addr.map(|addr| addr.port());
    // The built-in TURN server runs on the STUN socket, advertised at an address peers can
    // reach; without one it does not run, and pages are not told about it.
    let turn_server = match (stun_addr, config.turn_server.clone()) {
        (Some(addr), Some(turn)) => match turn.advertised_ip(addr.ip()) {
            Some(advertised) => Some((turn, advertised)),
            None => {
                tracing::warn!(
                    "no address to advertise TURN at: running without TURN; set --public-ip"
                );
                None
            }
        },
        _ => None,
    };
    // TURN over TCP on the same port, for networks that drop UDP; a taken port is skipped.
    let turn_tcp = match (&turn_server, stun_addr) {
        (Some(_), Some(addr)) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(%addr, %err, "cannot listen for TURN over TCP: running TURN over UDP only");
                None
            }
        },
        _ => None,
    };
    // A port of its own for TURN over TLS, if given, is the one pages are told of.
    let turn_tls = match turn_tls {
        Some(_) if turn_server.is_none() => {
            tracing::warn!("no built-in TURN server runs: nothing listens for TURN over TLS");
            None
        }
        turn_tls => turn_tls,
    };
    let turns_port = match &turn_tls {
        Some((listener, _)) => Some(listener.local_addr()?.port()),
        None => tls_port,
    };
    // Everything stops at `stop`: on shutdown, or when one of the servers fails.
    let stop = shutdown.child_token();
    let relay = Relay::with_stun(
        &config,
        stop.clone(),
        stun_port,
        turn_server.as_ref().map(|_| turn_tcp.is_some()),
        turns_port,
    );
    let router = app(relay.clone(), config.dist);
    let stop_on_error = |result: std::io::Result<()>| {
        if result.is_err() {
            stop.cancel();
        }
        result
    };

    let plain = match tls_port {
        Some(port) => router
            .clone()
            .layer(middleware::from_fn_with_state(port, redirect::to_https)),
        None => router.clone(),
    };
    let http = async {
        let served = http::serve(http, None, plain, relay.clone(), stop.clone()).await;
        stop_on_error(served)
    };
    let https = async {
        let Some((listener, tls)) = https else {
            return Ok(());
        };
        let served = http::serve(listener, Some(tls), router, relay.clone(), stop.clone()).await;
        stop_on_error(served)
    };
    let turns = async {
        let Some((listener, tls)) = turn_tls else {
            return Ok(());
        };
        let served = http::serve_turn_tls(listener, tls, relay.clone(), stop.clone()).await;
        stop_on_error(served)
    };
    let stun = async {
        match (stun, turn_server) {
            (Some(socket), Some((turn, advertised))) => {
                let stop = stop.clone();
                turn_server::serve(socket, turn_tcp, turn, advertised, relay.clone(), stop).await;
            }
            (Some(socket), None) => stun::serve(socket, relay.clone(), stop.clone()).await,
            (None, _) => {}
        }
    };
    let backplane = async {
        if let Rooms::Redis(backplane) = &relay.rooms {
            backplane.clone().run(stop.clone()).await;
        }
    };
    let expiry = expire(relay.clone(), stop.clone());
    let (http, https, turns, (), (), ()) =
        tokio::join!(http, https, turns, stun, backplane, expiry);

    // The WebSockets watch `stop` too: close them also when a server failed.
    stop.cancel();
    relay.tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, relay.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = relay.tracker.len(),
            "connections still open after the drain timeout"
        );
    }
    // After the connections have left through it.
    if let Rooms::Redis(backplane) = &relay.rooms {
        backplane.depart().await;
    }
    http.and(https).and(turns)
}

/// The one task that ends held messages and reservations when they are due, until `stop`; a
/// sender whose message nobody took is told.
async fn expire(relay: Arc<Relay>, stop: CancellationToken) {
    loop {
        let due = tokio::select! {
            _ = stop.cancelled() => return,
            due = relay.rooms.next_due() => due,
        };
        for due in due {
            if let Some(sender) = relay.rooms.expire(due).await {
                relay.metrics.error(ErrorKind::Expired);
                let secs = relay.limits.hold.as_secs_f32();
                let msg = ServerMsg::error(
                    ErrorKind::Expired,
                    format!("nobody joined to take your message within {secs} s"),
                );
                sender.deliver(msg.to_json());
            }
        }
    }
}

/// `ok`, or 503 while the backplane cannot place new joins.
async fn health_handler(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    if relay.rooms.healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded: Redis (the backplane) is unreachable; new joins are refused\n",
        )
    }
}

/// A new unguessable token (a resume token, an instance's name): 128 bits from the operating
/// system.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS entropy (unheard of on the platforms we run on): std's per-process random
        // hash keys still make a token nobody can guess from outside.
        use std::hash::{BuildHasher, RandomState};
        let (a, b) = (RandomState::new(), RandomState::new());
        bytes[..8].copy_from_slice(&a.hash_one(Instant::now()).to_le_bytes());
        bytes[8..].copy_from_slice(&b.hash_one(std::process::id()).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The figures, to this machine and to whom [`Config::metrics`] names; 403 to everybody else.
async fn metrics_handler(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !relay.metrics_access.allows(addr.ip(), &headers) {
        tracing::debug!(%addr, "refused /metrics");
        return (StatusCode::FORBIDDEN, access::REFUSED).into_response();
    }
    let mut body = relay
        .metrics
        .render(relay.rooms.room_count(), relay.rooms.member_count());
    if let Rooms::Redis(backplane) = &relay.rooms {
        backplane.render(&mut body);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
