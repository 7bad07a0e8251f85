//! The relay binary: reads flags and environment, binds, and runs until Ctrl-C or SIGTERM.

use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::PathBuf,
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use protocol::IceServer;
use server::{Banner, Listeners, Tls, TurnConfig, TurnSecret, TurnServerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Signaling relay and web server for the video call.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; 0.0.0.0 lets other machines of the network connect.
    #[arg(long, env = "ADDR", default_value = "0.0.0.0")]
    addr: IpAddr,
    /// Port for plain http. Requests from other machines are redirected to https while TLS is
    /// on (except /healthz and /metrics).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Port for https and wss; 0 turns TLS off (for a relay behind a TLS proxy).
    #[arg(long, env = "TLS_PORT", default_value_t = 8443)]
    tls_port: u16,
    /// Turn TLS off, like --tls-port 0.
    #[arg(long, env = "NO_TLS")]
    no_tls: bool,
    /// Certificate chain (PEM), e.g. certbot's fullchain.pem. Renewed files are picked up
    /// without a restart. Without it the relay issues its own certificate in --data-dir.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM), e.g. certbot's privkey.pem.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the relay keeps its own certificate (cert.pem) and key (key.pem).
    /// [default: $XDG_DATA_HOME/videocall, else $HOME/.local/share/videocall, else ./data]
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// UDP port of the built-in STUN server, handed to the browsers; 0 turns it off. If the
    /// port is taken (coturn on the same machine), the relay runs on without it.
    #[arg(long, env = "STUN_PORT", default_value_t = 3478)]
    stun_port: u16,
    /// Turn the built-in TURN server off (it runs on the STUN port unless --turn-url names
    /// another TURN server).
    #[arg(long, env = "NO_TURN")]
    no_turn: bool,
    /// UDP ports of the built-in TURN server's relayed addresses: every relayed connection of
    /// every page holds one (a room of six all behind strict NATs takes 30). Open them in the
    /// firewall.
    #[arg(long, env = "TURN_PORTS", default_value = "49160-49999", value_parser = port_range)]
    turn_ports: RangeInclusive<u16>,
    /// The address peers reach this machine at, for a relay behind NAT (e.g. a cloud VM): the
    /// built-in TURN server advertises its relayed addresses there.
    /// [default: --addr, or the machine's first network address]
    #[arg(long, env = "PUBLIC_IP")]
    public_ip: Option<IpAddr>,
    /// A TCP port for TURN over TLS only, besides the https port (which takes it too), e.g.
    /// 5349, or 443 when a proxy has the https port; pages are told of this one. Needs TLS.
    #[arg(long, env = "TURN_TLS_PORT")]
    turn_tls_port: Option<u16>,
    /// Relayed kbit/s per allocation of the built-in TURN server, each direction; 0: no cap.
    #[arg(long, env = "TURN_MAX_KBPS", default_value_t = 10_000)]
    turn_max_kbps: u32,
    /// Let the built-in TURN server relay to private addresses (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7), e.g. for a relay inside a company network. Loopback, link-local,
    /// multicast and the relay's own ports stay refused.
    #[arg(long, env = "TURN_ALLOW_PRIVATE")]
    turn_allow_private: bool,
    /// TURN server URL, e.g. turn:turn.example.org:3478 or turns:turn.example.org:5349
    /// (?transport=tcp allowed). Repeat the flag, or separate URLs with commas in the variable.
    /// Needs --turn-secret or --turn-secret-file.
    #[arg(long = "turn-url", env = "TURN_URLS", value_delimiter = ',')]
    turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn's static-auth-secret), used to mint short-lived
    /// credentials for each peer. It never reaches a page or a log. Without --turn-url, the
    /// built-in TURN server's secret; without either, the relay keeps one in --data-dir.
    #[arg(
        long,
        env = "TURN_SECRET",
        hide_env_values = true,
        conflicts_with = "turn_secret_file"
    )]
    turn_secret: Option<TurnSecret>,
    /// File holding the TURN server's shared secret (keeps it out of the process list).
    #[arg(long, env = "TURN_SECRET_FILE")]
    turn_secret_file: Option<PathBuf>,
    /// Seconds the TURN credentials given to a peer stay valid; fresh ones are sent at 80%.
    #[arg(long, env = "TURN_TTL", default_value_t = 3600)]
    turn_ttl: u64,
    /// Directory of the built client (`trunk build --release` writes it).
    #[arg(long, env = "DIST_DIR", default_value = "dist")]
    dist: PathBuf,
    /// Another STUN or TURN URL handed to the browsers, e.g. stun:stun.example.org:3478, after
    /// the relay's own STUN server. Repeat the flag, or separate URLs with commas in the
    /// variable.
    #[arg(long = "ice-server", env = "ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Vec<String>,
    /// The most people in one room; each talks to every other over a connection of its own.
    #[arg(long, env = "ROOM_CAPACITY", default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
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
    /// Per-connection WebSocket read buffer, in bytes: how much tungstenite takes per call (the
    /// socket itself is read up to 16 KiB at a time through one buffer per thread).
    #[arg(long, env = "READ_BUFFER", default_value_t = 1024)]
    read_buffer: usize,
    /// Share rooms with every other relay on this Redis, e.g. redis://127.0.0.1:6379/0, so that
    /// instances behind one load balancer act as one relay. Without it rooms live in this
    /// process only.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// What the backplane's Redis keys and channels start with: deployments sharing one Redis
    /// (or one database of it) need different prefixes.
    #[arg(long, env = "REDIS_PREFIX", default_value = "videocall:")]
    redis_prefix: String,
    /// An address or block (e.g. 192.0.2.7 or 10.0.0.0/8) whose scrapers may read /metrics
    /// without a token; this machine always may. Repeat the flag, or separate them with commas
    /// in the variable.
    #[arg(long = "metrics-allow", env = "METRICS_ALLOW", value_delimiter = ',')]
    metrics_allow: Vec<server::IpNet>,
    /// A token that lets any address read /metrics with `Authorization: Bearer <token>`. It
    /// never reaches a log.
    #[arg(
        long,
        env = "METRICS_TOKEN",
        hide_env_values = true,
        conflicts_with = "metrics_token_file"
    )]
    metrics_token: Option<server::MetricsToken>,
    /// File holding the /metrics token (keeps it out of the process list).
    #[arg(long, env = "METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    one_malloc_arena();
    runtime()?.block_on(run())
}

/// Starts the relay again as itself with one allocator arena (`MALLOC_ARENA_MAX=1`, which
/// glibc reads once as a process starts), unless the variable is set already (an operator's
/// own value is kept).
///
/// glibc gives threads that allocate at once arenas of their own, and each arena keeps the pages
/// of its own busiest moment: in the soak (`soak --one-relay --secs 600`, docs/soak.md) the two
/// workers' arenas grew in steps for eight minutes, RSS 13.1 → 13.4 MiB between the thirds
/// (+2.27 %, over the soak's 2 %), against 12.3 → 12.3 MiB (+0.42 %) in one arena, with the
/// same median latency (0.23 and 0.24 ms). mimalloc was tried instead and took twice the
/// memory, still in steps. The count cannot be set from safe code once the process runs, so
/// the process image is replaced (same PID, same arguments); if that fails, it runs on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    use std::os::unix::process::CommandExt;
    const ARENA_MAX: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(ARENA_MAX).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(ARENA_MAX, "1")
        .exec();
    eprintln!("could not start again with one allocator arena ({err}); running on as started");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

/// A thread per CPU the relay may use; on one CPU (a small VM, or pinned with `taskset`) a
/// single-threaded runtime, which does the same work without the hand-offs between threads.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The TURN crate logs every datagram it refuses at error level, which anybody
            // can set off at will; what matters is logged by server/src/turn_server.
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,turn=off")),
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
    let secret = match (args.turn_secret, &args.turn_secret_file) {
        (Some(secret), _) => Some(secret),
        (None, Some(path)) => Some(TurnSecret::from_file(path)?),
        (None, None) => None,
    };
    let ttl = Duration::from_secs(args.turn_ttl);
    let external = args.turn_urls.iter().any(|url| !url.trim().is_empty());
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(server::tls::default_data_dir);
    // An external TURN server (coturn) takes the place of the built-in one.
    // With --no-turn or no STUN port, a secret without a URL is the error it always was.
    let (turn, turn_server) = if external || args.no_turn || args.stun_port == 0 {
        (TurnConfig::new(args.turn_urls, secret, ttl)?, None)
    } else {
        let secret = match secret {
            Some(secret) => secret,
            None => server::load_or_create_secret(&data_dir).context(
                "the built-in TURN server needs a secret: give a writable --data-dir, \
                 --turn-secret, or --no-turn",
            )?,
        };
        let mut config = TurnServerConfig::new(secret);
        config.ttl = ttl;
        config.ports = args.turn_ports.clone();
        config.public_ip = args.public_ip;
        config.max_kbps = args.turn_max_kbps;
        config.allow_private = args.turn_allow_private;
        config.services = redis_addresses(args.redis_url.as_deref()).await;
        (None, Some(config))
    };
    if !args.dist.join("index.html").is_file() {
        tracing::warn!(dist = %args.dist.display(), "no index.html in the client directory: build the client with `make run` or `trunk build --release`");
    }

    let tls_on = !args.no_tls && args.tls_port != 0;
    let tls = if tls_on {
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Tls::from_files(cert, key),
            _ => Tls::self_signed(&data_dir),
        };
        Some(tls.context(
            "cannot set up https: give --tls-cert and --tls-key, a writable --data-dir, or \
             --no-tls behind a TLS proxy",
        )?)
    } else {
        None
    };
    let mut listeners = Listeners::bind(
        args.addr,
        args.port,
        tls.is_some().then_some(args.tls_port),
        (args.stun_port != 0).then_some(args.stun_port),
    )
    .await?;
    if let Some(port) = args.turn_tls_port {
        if tls.is_none() || turn_server.is_none() {
            anyhow::bail!(
                "--turn-tls-port needs TLS on (--tls-port) and the built-in TURN server (no --no-turn, --turn-url or --stun-port 0)"
            );
        }
        let addr = SocketAddr::new(args.addr, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for TURN over TLS on {addr}"))?;
        listeners.turn_tls = Some(listener);
    }
    let port = |listener: &tokio::net::TcpListener| listener.local_addr().map(|a| a.port());
    let stun_port = match &listeners.stun {
        Some(socket) => Some(socket.local_addr()?.port()),
        None => None,
    };
    let turn_banner = match (&turn_server, &listeners.stun) {
        (Some(config), Some(socket)) => {
            config
                .advertised_ip(socket.local_addr()?.ip())
                .map(|ip| server::TurnBanner {
                    advertised: ip,
                    ports: config.ports.clone(),
                    tls_port: listeners
                        .turn_tls
                        .as_ref()
                        .and_then(|l| l.local_addr().ok())
                        .map(|a| a.port()),
                })
        }
        _ => None,
    };
    if stun_port.is_none() && ice_servers.is_empty() && turn.is_none() {
        tracing::info!(
            "no STUN or TURN server: calls connect on the same network only (see --stun-port, --turn-url)"
        );
    }
    let info = Banner {
        http_port: port(&listeners.http)?,
        https_port: listeners.https.as_ref().map(port).transpose()?,
        fingerprint: tls.as_ref().map(Tls::fingerprint),
        lan: server::lan_addresses(args.addr),
        stun_port,
        turn: turn_banner,
        loopback_only: args.addr.is_loopback(),
    };
    println!("{}", server::banner(&info));

    let backplane = match &args.redis_url {
        Some(url) => {
            let mut backplane = server::BackplaneConfig::new(url)
                .context("--redis-url is not a Redis URL (redis://HOST:PORT/DB)")?;
            backplane.prefix = args.redis_prefix.clone();
            tracing::info!("sharing rooms through Redis");
            Some(backplane)
        }
        None => None,
    };

    let metrics = server::MetricsAccess {
        allow: args.metrics_allow,
        token: match (args.metrics_token, &args.metrics_token_file) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(server::MetricsToken::from_file(path)?),
            (None, None) => None,
        },
    };

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
        tls,
        turn,
        turn_server,
        backplane,
        metrics,
    };
    server::serve(listeners, config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// `FIRST-LAST` (or one port) as a range of ports other than 0.
fn port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535): write FIRST-LAST"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first > last {
        return Err(format!(
            "{first}-{last} is empty: write the lower port first"
        ));
    }
    Ok(first..=last)
}

/// Where the Redis of `--redis-url` is, so that the built-in TURN server never relays there.
async fn redis_addresses(url: Option<&str>) -> Vec<SocketAddr> {
    use redis::IntoConnectionInfo;
    let Some(Ok(info)) = url.map(IntoConnectionInfo::into_connection_info) else {
        return Vec::new();
    };
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        _ => return Vec::new(),
    };
    let found = tokio::net::lookup_host((host.as_str(), port)).await;
    found.map(Iterator::collect).unwrap_or_default()
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
