//! The built-in TURN server (RFC 5766 over UDP) on the STUN port: with it, a call between two
//! homes whose routers allow no direct path connects through the relay binary alone.
//!
//! The protocol is the webrtc-rs `turn` crate's `turn::server::Server`: the TURN half of a
//! maintained WebRTC stack (used by webrtc-rs itself and tested against browsers), in async
//! Rust on tokio like the relay, with the three extension points this server needs. What the
//! crate does not decide, ours does, through those points ([`conn`]):
//! - its `Conn` trait for the listening socket, so the same UDP socket still answers STUN
//!   Binding requests as before, and so that garbage, unauthenticated floods, permissions to
//!   refused peers (403, which the crate has no hook for) and allocations over quota (486) are
//!   dealt with before the crate sees them;
//! - its `RelayAddressGenerator`, so relayed sockets come from `--turn-ports`, are advertised
//!   at `--public-ip`, check every datagram against the peer policy and the bandwidth cap,
//!   and count what they relay;
//! - its `AuthHandler`, for coturn's REST credentials (`<expiry>:<peer>`, which the crate's
//!   own `LongTermAuthHandler` does not parse).
//!
//! The crate's server reads datagrams; TURN over TCP on the same port is framed into them here,
//! one crate server per connection ([`tcp`]), and so is TURN over TLS on the https port, which
//! hands over the connections whose first byte after the handshake is a STUN message's (see
//! `http`). What it does not do (yet): IPv6 relayed addresses.
//!
//! The decisions themselves (which peers, how many allocations) live in [`policy`], without
//! sockets.

mod conn;
#[cfg(test)]
mod fuzz;
pub mod policy;
mod tcp;

pub(crate) use tcp::Streams;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::RangeInclusive,
    path::Path,
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use turn::server::Server;

pub use policy::{Quota, Refusal};

use crate::{ice::TurnSecret, Relay};

/// The realm the TURN server names in its challenges.
const REALM: &str = "videocall";

/// The file in the data directory that keeps the generated secret.
pub const SECRET_FILE: &str = "turn-secret";

/// The default relayed port range: every relayed connection of every page holds one.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 49160..=49999;

/// The built-in TURN server's settings.
#[derive(Clone, Debug)]
pub struct TurnServerConfig {
    /// The secret the credentials are minted with (coturn's REST scheme).
    pub secret: TurnSecret,
    /// How long minted credentials stay valid.
    pub ttl: Duration,
    /// Ports for relayed addresses.
    pub ports: RangeInclusive<u16>,
    /// The address peers reach relayed addresses at, for a relay behind NAT (a cloud VM).
    /// `None`: the address the STUN socket is bound to, or the machine's first network
    /// address when it is bound to all of them.
    pub public_ip: Option<IpAddr>,
    /// Relayed kbit/s per allocation and direction; 0: no cap.
    pub max_kbps: u32,
    /// Whether peers in private ranges may be reached.
    pub allow_private: bool,
    /// Allocations per user and per source address.
    pub quota: Quota,
    /// Addresses the relay talks to itself (its Redis): never relayed to.
    pub services: Vec<SocketAddr>,
}

impl TurnServerConfig {
    /// A configuration with the defaults of the binary's flags.
    pub fn new(secret: TurnSecret) -> Self {
        Self {
            secret,
            ttl: Duration::from_secs(3600),
            ports: DEFAULT_PORTS,
            public_ip: None,
            max_kbps: 10_000,
            allow_private: false,
            quota: Quota::default(),
            services: Vec::new(),
        }
    }

    /// The address relayed addresses are advertised at when the STUN socket is bound to
    /// `bound`; `None` when there is none to give (bound to all addresses of a machine that
    /// has no network).
    pub fn advertised_ip(&self, bound: IpAddr) -> Option<IpAddr> {
        if let Some(ip) = self.public_ip {
            return Some(ip.to_canonical());
        }
        if !bound.is_unspecified() {
            return Some(bound.to_canonical());
        }
        crate::banner::lan_addresses(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            .into_iter()
            .next()
    }
}

/// Why the TURN secret cannot be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot keep the TURN secret in {path}: {error}")]
pub struct SecretError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub error: std::io::Error,
}

/// The secret kept in `data_dir`, made (256 random bits, readable by the owner only) on first
/// use. Kept rather than made per start, so that credentials handed out before a restart still
/// work after it.
pub fn load_or_create_secret(data_dir: &Path) -> Result<TurnSecret, SecretError> {
    let path = data_dir.join(SECRET_FILE);
    let err = |error| SecretError {
        path: path.clone(),
        error,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(TurnSecret::new(text.trim())),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(err(error)),
    }
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(data_dir).map_err(err)?;
    let secret = format!("{}{}", crate::new_token(), crate::new_token());
    // Written beside, then renamed: a relay stopped half-way leaves no half secret.
    let partial = data_dir.join(format!("{SECRET_FILE}.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = options.open(&partial)?;
        file.write_all(secret.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)
    };
    write().map_err(err)?;
    Ok(TurnSecret::new(secret))
}

/// Serves TURN (and STUN Binding) on `socket`, and over TCP on `tcp` if given, until `stop`
/// is cancelled. Relayed sockets are bound to the socket's own address (IPv4 when it is bound
/// to all addresses) and advertised at `advertised`.
pub(crate) async fn serve(
    socket: UdpSocket,
    tcp: Option<TcpListener>,
    config: TurnServerConfig,
    advertised: IpAddr,
    relay: Arc<Relay>,
    stop: CancellationToken,
) {
    conn::roomy_buffers(&socket);
    let bound = match socket.local_addr() {
        Ok(addr) => addr.ip(),
        Err(err) => {
            tracing::warn!(%err, "the TURN socket has no address: running without TURN");
            return;
        }
    };
    let bind_ip = match (bound.is_unspecified(), advertised) {
        (true, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (true, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (false, _) => bound,
    };
    let https_streams = Arc::clone(&relay);
    let https_streams = &https_streams.turn_streams;
    let mut own_ips = crate::banner::lan_addresses(bound);
    own_ips.extend([advertised, bound]);
    let state = Arc::new(conn::State::new(
        conn::StateConfig {
            policy: policy::PeerPolicy::new(config.allow_private, own_ips, config.services),
            quota: config.quota,
            secret: config.secret,
            max_kbps: config.max_kbps,
            ports: config.ports,
            bind_ip,
            public_ip: advertised,
        },
        relay,
        stop.clone(),
    ));
    let listening = match conn::ServerConn::new(socket, Arc::clone(&state)) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(%err, "the TURN socket has no address: running without TURN");
            return;
        }
    };
    // Allocations close on their own (expiry, a refresh to zero): the crate says so here. It
    // waits for room in this channel, so it is drained until the very end.
    let (closed_tx, mut closed_rx) = mpsc::channel(1024);
    let tcp_closed_tx = closed_tx.clone();
    let server = Server::new(conn::crate_server_config(
        Arc::new(listening),
        &state,
        closed_tx,
    ))
    .await;
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            tracing::warn!(%err, "cannot start the TURN server: running without it");
            return;
        }
    };
    let streams = tcp::Streams::new(Arc::clone(&state), tcp_closed_tx, stop.clone());
    // The https port hands over the connections that speak STUN after the handshake.
    let _ = https_streams.set(streams.clone());
    let over_tcp = async {
        if let Some(listener) = tcp {
            tcp::serve(listener, streams).await;
        }
    };
    let notified = async {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                closed = closed_rx.recv() => match closed {
                    Some(info) => state.closed(&info),
                    None => break,
                },
            }
        }
    };
    tokio::join!(over_tcp, notified);
    let closing = async {
        if let Err(err) = server.close().await {
            tracing::debug!(%err, "TURN server close");
        }
    };
    let draining = async { while closed_rx.recv().await.is_some() {} };
    // The drain ends when every allocation has said goodbye; the close may not wait for it.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tokio::join!(closing, draining)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("videocall");
        let made = load_or_create_secret(&data).expect("made");
        let again = load_or_create_secret(&data).expect("read back");
        assert_eq!(
            crate::ice::turn_credential(&made, "1:1"),
            crate::ice::turn_credential(&again, "1:1")
        );
        let text = std::fs::read_to_string(data.join(SECRET_FILE)).expect("kept");
        assert_eq!(text.len(), 64, "256 bits in hex");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode();
            assert_eq!(mode(&data.join(SECRET_FILE)) & 0o777, 0o600);
            assert_eq!(mode(&data) & 0o777, 0o700);
        }
        assert!(!format!("{made:?}").contains(&text));
    }

    #[test]
    fn relayed_addresses_are_advertised_where_peers_reach_the_relay() {
        let mut config = TurnServerConfig::new(TurnSecret::new("s"));
        let bound: IpAddr = "192.0.2.4".parse().expect("ip");
        assert_eq!(config.advertised_ip(bound), Some(bound));
        let public: IpAddr = "203.0.113.9".parse().expect("ip");
        config.public_ip = Some(public);
        assert_eq!(config.advertised_ip(bound), Some(public));
        assert_eq!(
            config.advertised_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Some(public)
        );
    }
}
