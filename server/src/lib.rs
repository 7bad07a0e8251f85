//! The signaling relay.
//!
//! It serves the built client bundle and relays JSON signaling messages (see the `protocol`
//! crate) between the peers of a room over WebSocket at `/ws`. The binary in `main.rs` only reads
//! its configuration and calls [`run`]; tests start the relay the same way on port 0.

mod connection;
mod limits;
mod metrics;
mod registry;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use protocol::IceServer;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{compression::CompressionLayer, services::ServeDir};

pub use limits::Limits;
pub use metrics::Metrics;
pub use registry::{Registry, Timing};

/// How long shutdown waits for connections to say goodbye before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the relay needs to know to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory holding the built client (`index.html`, the `.wasm` and its JS glue).
    pub dist: PathBuf,
    /// STUN/TURN servers handed to every peer when it joins.
    pub ice_servers: Vec<IceServer>,
    /// The most peers one room may hold.
    pub room_capacity: usize,
    /// Origins whose pages may open a WebSocket. Empty: pages served from the relay's own host
    /// name (any port, so that `trunk serve` works). Requests without `Origin` (not from a
    /// browser) are always let in.
    pub allowed_origins: Vec<String>,
    /// Limits on what one client, one address and everybody together may use.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dist: PathBuf::from("dist"),
            ice_servers: Vec::new(),
            room_capacity: 2,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// The state every connection shares.
pub struct Relay {
    registry: Registry,
    metrics: Metrics,
    limits: Limits,
    allowed_origins: Vec<String>,
    admission: limits::Admission,
    /// Cancelled when the relay shuts down; each connection's token is a child of it.
    shutdown: CancellationToken,
    /// Every WebSocket task, so that shutdown can wait for them: axum's graceful shutdown does
    /// not wait for upgraded connections.
    tracker: TaskTracker,
}

impl Relay {
    /// A relay with no peers yet, stopping when `shutdown` is cancelled.
    pub fn new(config: &Config, shutdown: CancellationToken) -> Arc<Self> {
        let timing = Timing {
            hold: config.limits.hold,
            resume_grace: config.limits.resume_grace,
        };
        Arc::new(Self {
            registry: Registry::new(config.room_capacity, config.ice_servers.clone(), timing),
            metrics: Metrics::default(),
            limits: config.limits.clone(),
            allowed_origins: config.allowed_origins.clone(),
            admission: limits::Admission::new(&config.limits),
            shutdown,
            tracker: TaskTracker::new(),
        })
    }
}

/// The HTTP routes: `/ws` for signaling, `/healthz`, `/metrics`, and everything else from the
/// client bundle. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// per-address limit needs the peer's address.
pub fn app(relay: Arc<Relay>, dist: PathBuf) -> Router {
    // ServeDir answers `/` with index.html and `.wasm` as `application/wasm`, which browsers
    // require for streaming compilation.
    let bundle = ServeDir::new(dist);
    Router::new()
        .route("/ws", get(connection::ws_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .with_state(relay)
        .fallback_service(bundle)
        .layer(CompressionLayer::new())
}

/// Serves the relay on `listener` until `shutdown` is cancelled, then closes every WebSocket
/// with 1001 and waits (up to a few seconds) for the connections to finish.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let relay = Relay::new(&config, shutdown.clone());
    let router = app(relay.clone(), config.dist);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await?;
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
    Ok(())
}

async fn metrics_handler(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    let body = relay
        .metrics
        .render(relay.registry.room_count(), relay.registry.member_count());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
