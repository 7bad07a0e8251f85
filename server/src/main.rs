//! The relay binary: reads flags and environment, binds, and runs until Ctrl-C or SIGTERM.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use protocol::IceServer;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Signaling relay and web server for the video call.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; 0.0.0.0 lets other machines of the network connect.
    #[arg(long, env = "ADDR", default_value = "0.0.0.0")]
    addr: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Directory of the built client (`trunk build --release` writes it).
    #[arg(long, env = "DIST_DIR", default_value = "dist")]
    dist: PathBuf,
    /// STUN or TURN URL handed to the browsers, e.g. stun:stun.l.google.com:19302. Repeat the
    /// flag, or separate URLs with commas in the variable. Without one, calls connect only
    /// between machines that can reach each other directly (the same network).
    #[arg(long = "ice-server", env = "ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Vec<String>,
    /// The most people in one room (2 for a 1:1 call).
    #[arg(long, env = "ROOM_CAPACITY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    room_capacity: u16,
    /// Origin whose pages may open a WebSocket, e.g. https://call.example.org (repeat, or
    /// separate with commas; `*` for any). Without one: pages from the relay's own host name.
    #[arg(
        long = "allowed-origin",
        env = "ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// WebSocket connections open at once; more are refused with 503.
    #[arg(long, env = "MAX_SESSIONS", default_value_t = 10_000)]
    max_sessions: usize,
    /// WebSocket connections open at once from one IP address; more are refused with 429.
    #[arg(long, env = "MAX_PER_IP", default_value_t = 64)]
    max_per_ip: usize,
    /// Messages per second one connection may send on average (token bucket).
    #[arg(long, env = "RATE_PER_SEC", default_value_t = 50.0)]
    rate_per_sec: f64,
    /// Messages one connection may send in a burst.
    #[arg(long, env = "RATE_BURST", default_value_t = 200.0)]
    rate_burst: f64,
    /// Seconds between pings; a connection that answers none for two intervals is dropped
    /// (within three intervals: 30 s by default).
    #[arg(long, env = "PING_SECS", default_value_t = 10)]
    ping_secs: u64,
    /// Seconds a message for a peer that has not joined yet is held.
    #[arg(long, env = "HOLD_SECS", default_value_t = 10)]
    hold_secs: u64,
    /// Seconds a dropped peer may take to come back with its resume token.
    #[arg(long, env = "RESUME_GRACE_SECS", default_value_t = 15)]
    resume_grace_secs: u64,
    /// Per-connection WebSocket read buffer, in bytes.
    #[arg(long, env = "READ_BUFFER", default_value_t = 4 * 1024)]
    read_buffer: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let ice_servers: Vec<IceServer> = args
        .ice_servers
        .iter()
        .filter(|url| !url.trim().is_empty())
        .map(|url| IceServer {
            urls: vec![url.trim().to_owned()],
            username: None,
            credential: None,
        })
        .collect();
    if ice_servers.is_empty() {
        tracing::info!(
            "no ICE servers configured: calls connect on the same network only (see --ice-server)"
        );
    }
    if !args.dist.join("index.html").is_file() {
        tracing::warn!(dist = %args.dist.display(), "no index.html in the client directory: build the client with `make run` or `trunk build --release`");
    }

    let listener = tokio::net::TcpListener::bind((args.addr, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.addr, args.port))?;
    let local = listener.local_addr()?;
    let host = if args.addr.is_unspecified() || args.addr.is_loopback() {
        "localhost".to_owned()
    } else {
        local.ip().to_string()
    };
    println!("Relay listening on {local}.");
    println!(
        "Open http://{host}:{} in one window and http://{host}:{}/#true in another.",
        local.port(),
        local.port()
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let ping = Duration::from_secs(args.ping_secs.max(1));
    let limits = server::Limits {
        max_sessions: args.max_sessions,
        max_per_ip: args.max_per_ip,
        rate_per_sec: args.rate_per_sec,
        rate_burst: args.rate_burst.max(1.0),
        ping_interval: ping,
        // Checked at each ping: a silent peer goes 2 to 3 intervals after it was last heard.
        idle_timeout: ping * 2,
        hold: Duration::from_secs(args.hold_secs),
        resume_grace: Duration::from_secs(args.resume_grace_secs),
        read_buffer: args.read_buffer,
        ..server::Limits::default()
    };
    let config = server::Config {
        dist: args.dist,
        ice_servers,
        room_capacity: usize::from(args.room_capacity),
        allowed_origins: args.allowed_origins,
        limits,
    };
    server::run(listener, config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
