//! The STUN and TURN servers handed to each peer: the relay's own STUN server, the
//! `--ice-server` list, and a TURN server (coturn) with credentials minted for that peer.
//!
//! The credentials follow coturn's REST scheme (`use-auth-secret`): the user name is
//! `<expiry unix time>:<peer id>`, the password is base64(HMAC-SHA1(secret, user name)). coturn
//! checks both with the same shared secret and refuses them after the expiry, so a page that
//! leaks them leaks a few minutes of relaying, never the secret.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use hmac::{Hmac, Mac};
use protocol::{IceServer, PeerId};
use sha1::Sha1;

/// The fraction of the credentials' lifetime after which a peer is sent fresh ones.
const REFRESH_AT: f64 = 0.8;

/// Why the TURN configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IceError {
    /// A TURN URL that is not `turn:` or `turns:`.
    #[error(
        "{url:?} is not a TURN URL: write turn:HOST:PORT or turns:HOST:PORT, \
         optionally with ?transport=tcp"
    )]
    NotTurnUrl {
        /// The URL as given.
        url: String,
    },
    /// TURN URLs without a secret to mint credentials with.
    #[error("--turn-url needs the shared secret of the TURN server: set --turn-secret or --turn-secret-file")]
    NoSecret,
    /// A secret without a TURN URL to use it with.
    #[error("a TURN secret is set but no --turn-url: say where the TURN server is")]
    NoUrl,
    /// An empty secret.
    #[error("the TURN secret is empty")]
    EmptySecret,
    /// A lifetime of zero.
    #[error("--turn-ttl must be at least one second")]
    NoTtl,
    /// The secret file cannot be read.
    #[error("cannot read the TURN secret from {path}: {error}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

/// The secret shared with the TURN server. It never leaves the relay: its `Debug` prints
/// `[redacted]`, and it has no `Display`.
#[derive(Clone)]
pub struct TurnSecret(String);

impl TurnSecret {
    /// A secret given as text.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret in `path`, without the line end an editor leaves after it.
    pub fn from_file(path: &Path) -> Result<Self, IceError> {
        let text = std::fs::read_to_string(path).map_err(|error| IceError::SecretFile {
            path: path.to_owned(),
            error,
        })?;
        Ok(Self(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for TurnSecret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

/// A TURN server that accepts credentials minted with a shared secret (coturn's
/// `use-auth-secret`).
#[derive(Clone, Debug)]
pub struct TurnConfig {
    urls: Vec<String>,
    secret: TurnSecret,
    ttl: Duration,
}

impl TurnConfig {
    /// Checks the flags: TURN URLs and a secret come together or not at all, every URL is
    /// `turn:` or `turns:`, the lifetime is at least a second. `None` when neither is given.
    pub fn new(
        urls: Vec<String>,
        secret: Option<TurnSecret>,
        ttl: Duration,
    ) -> Result<Option<Self>, IceError> {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        let secret = match (urls.is_empty(), secret) {
            (true, None) => return Ok(None),
            (true, Some(_)) => return Err(IceError::NoUrl),
            (false, None) => return Err(IceError::NoSecret),
            (false, Some(secret)) => secret,
        };
        if secret.expose().is_empty() {
            return Err(IceError::EmptySecret);
        }
        if ttl < Duration::from_secs(1) {
            return Err(IceError::NoTtl);
        }
        if let Some(url) = urls.iter().find(|url| !is_turn_url(url)) {
            return Err(IceError::NotTurnUrl { url: url.clone() });
        }
        Ok(Some(Self { urls, secret, ttl }))
    }

    /// The TURN URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// How long minted credentials stay valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The TURN server with credentials for `peer`, valid for the lifetime from `now`.
    pub fn server_for(&self, peer: PeerId, now: SystemTime) -> IceServer {
        mint(self.urls.clone(), &self.secret, self.ttl, peer, now)
    }
}

/// `urls` with credentials for `peer` minted with `secret`, valid for `ttl` from `now`.
fn mint(
    urls: Vec<String>,
    secret: &TurnSecret,
    ttl: Duration,
    peer: PeerId,
    now: SystemTime,
) -> IceServer {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
    // Rounded up: the credentials must last the whole lifetime, or a refresh at 80% of a
    // short one could come after they expired.
    let expiry_secs = expiry.as_secs() + u64::from(expiry.subsec_nanos() > 0);
    let username = turn_username(expiry_secs, peer);
    let credential = turn_credential(secret, &username);
    IceServer {
        urls,
        username: Some(username),
        credential: Some(credential),
    }
}

/// The relay's own TURN server, as handed to the pages.
#[derive(Clone, Debug)]
pub(crate) struct OwnTurn {
    /// Its port (the STUN port).
    pub port: u16,
    /// Whether it takes TCP on that port too.
    pub tcp: bool,
    /// The https port, where it takes TLS too.
    pub tls_port: Option<u16>,
    /// The secret its credentials are minted with.
    pub secret: TurnSecret,
    /// How long they stay valid.
    pub ttl: Duration,
}

/// coturn's REST user name: `<expiry unix time>:<peer id>`.
pub fn turn_username(expiry_unix_secs: u64, peer: PeerId) -> String {
    format!("{expiry_unix_secs}:{peer}")
}

/// coturn's REST password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &TurnSecret, username: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `turn:host[:port][?transport=udp|tcp]` or the same with `turns:` (RFC 7065).
fn is_turn_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("turn:")
        .or_else(|| lower.strip_prefix("turns:"))
    else {
        return false;
    };
    let host = rest.split('?').next().unwrap_or_default();
    !host.is_empty() && !rest.starts_with("//") && rest.bytes().all(|b| b.is_ascii_graphic())
}

/// What every peer is handed, and how it is made for one peer.
#[derive(Clone, Debug, Default)]
pub(crate) struct IceServers {
    /// The `--ice-server` list, as it is.
    pub fixed: Vec<IceServer>,
    /// The port of the relay's own STUN server, when it runs.
    pub stun_port: Option<u16>,
    /// The TURN server, if any.
    pub turn: Option<TurnConfig>,
    /// The relay's own TURN server, when it runs.
    pub own_turn: Option<OwnTurn>,
}

impl IceServers {
    /// The list for `peer`: the relay's own STUN server at `host` (the host the page was loaded
    /// from, already checked by [`crate::host::url_host`]), the fixed servers, then TURN (the
    /// relay's own at `host`, or the configured one) with credentials minted now.
    pub fn for_peer(&self, host: Option<&str>, peer: PeerId, now: SystemTime) -> Vec<IceServer> {
        let own = self.stun_port.zip(host).map(|(port, host)| IceServer {
            urls: vec![format!("stun:{host}:{port}")],
            username: None,
            credential: None,
        });
        let own_turn = self.own_turn.as_ref().zip(host).map(|(turn, host)| {
            let port = turn.port;
            let mut urls = vec![format!("turn:{host}:{port}?transport=udp")];
            if turn.tcp {
                urls.push(format!("turn:{host}:{port}?transport=tcp"));
            }
            if let Some(tls_port) = turn.tls_port {
                urls.push(format!("turns:{host}:{tls_port}?transport=tcp"));
            }
            mint(urls, &turn.secret, turn.ttl, peer, now)
        });
        let turn = self.turn.as_ref().map(|turn| turn.server_for(peer, now));
        own.into_iter()
            .chain(self.fixed.iter().cloned())
            .chain(own_turn)
            .chain(turn)
            .collect()
    }

    /// How often a peer needs fresh credentials, if it needs any.
    pub fn refresh_every(&self) -> Option<Duration> {
        let ttls = self.turn.as_ref().map(|turn| turn.ttl);
        let own = self.own_turn.as_ref().map(|turn| turn.ttl);
        ttls.into_iter()
            .chain(own)
            .min()
            .map(|ttl| ttl.mul_f64(REFRESH_AT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TurnSecret {
        TurnSecret::new("north-wind")
    }

    #[test]
    fn credentials_match_coturns_rest_scheme() {
        // printf %s "1700003600:7" | openssl dgst -sha1 -hmac "north-wind" -binary | base64
        let username = turn_username(1_700_003_600, PeerId(7));
        assert_eq!(username, "1700003600:7");
        assert_eq!(
            turn_credential(&secret(), &username),
            "3OnaB8pTohwW5FtC5Nh003v64fU="
        );
        let turn = TurnConfig::new(
            vec!["turn:turn.example:3478".into()],
            Some(secret()),
            Duration::from_secs(3600),
        )
        .expect("valid")
        .expect("configured");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let server = turn.server_for(PeerId(7), at);
        assert_eq!(server.username.as_deref(), Some("1700003600:7"));
        assert_eq!(
            server.credential.as_deref(),
            Some("3OnaB8pTohwW5FtC5Nh003v64fU=")
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let turn = TurnConfig::new(
            vec!["turns:turn.example:5349?transport=tcp".into()],
            Some(secret()),
            Duration::from_secs(60),
        )
        .expect("valid");
        let text = format!("{turn:?} {:?}", secret());
        assert!(!text.contains("north-wind"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn turn_flags_are_checked_together() {
        let ttl = Duration::from_secs(3600);
        let url = || vec!["turn:turn.example:3478".to_owned()];
        assert!(TurnConfig::new(vec![], None, ttl).expect("fine").is_none());
        assert!(matches!(
            TurnConfig::new(url(), None, ttl),
            Err(IceError::NoSecret)
        ));
        assert!(matches!(
            TurnConfig::new(vec![], Some(secret()), ttl),
            Err(IceError::NoUrl)
        ));
        assert!(matches!(
            TurnConfig::new(url(), Some(TurnSecret::new("")), ttl),
            Err(IceError::EmptySecret)
        ));
        assert!(matches!(
            TurnConfig::new(url(), Some(secret()), Duration::ZERO),
            Err(IceError::NoTtl)
        ));
        for bad in [
            "stun:turn.example",
            "http://turn.example",
            "turn:",
            "turn://turn.example",
            "turn:a b",
        ] {
            let err =
                TurnConfig::new(vec![bad.into()], Some(secret()), ttl).expect_err("not a TURN URL");
            assert!(err.to_string().contains(bad), "{err}");
        }
        for good in [
            "turn:turn.example",
            "turn:192.0.2.1:3478?transport=tcp",
            "TURNS:turn.example:5349",
            "turn:[2001:db8::1]:3478",
        ] {
            assert!(
                TurnConfig::new(vec![good.into()], Some(secret()), ttl).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn each_peer_gets_our_stun_then_the_fixed_servers_then_turn() {
        let fixed = IceServer {
            urls: vec!["stun:stun.example:3478".into()],
            username: None,
            credential: None,
        };
        let ice = IceServers {
            fixed: vec![fixed.clone()],
            stun_port: Some(3478),
            turn: TurnConfig::new(
                vec!["turn:turn.example".into()],
                Some(secret()),
                Duration::from_secs(100),
            )
            .expect("valid"),
            own_turn: None,
        };
        let servers = ice.for_peer(Some("[fd00::1]"), PeerId(3), UNIX_EPOCH);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0].urls, ["stun:[fd00::1]:3478"]);
        assert_eq!(servers[1], fixed);
        assert_eq!(servers[2].username.as_deref(), Some("100:3"));
        assert_eq!(ice.refresh_every(), Some(Duration::from_secs(80)));
        let later = UNIX_EPOCH + Duration::from_millis(900);
        assert_eq!(
            ice.for_peer(None, PeerId(3), later)[1].username.as_deref(),
            Some("101:3"),
            "the expiry is rounded up, never down"
        );
        // Without a usable host there is no own STUN entry.
        assert_eq!(ice.for_peer(None, PeerId(3), UNIX_EPOCH).len(), 2);
    }

    #[test]
    fn the_relays_own_turn_server_is_named_by_the_pages_host() {
        let ice = IceServers {
            fixed: Vec::new(),
            stun_port: Some(3478),
            turn: None,
            own_turn: Some(OwnTurn {
                port: 3478,
                tcp: true,
                tls_port: Some(443),
                secret: secret(),
                ttl: Duration::from_secs(3600),
            }),
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let servers = ice.for_peer(Some("call.example"), PeerId(7), at);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:call.example:3478"]);
        assert_eq!(
            servers[1].urls,
            [
                "turn:call.example:3478?transport=udp",
                "turn:call.example:3478?transport=tcp",
                "turns:call.example:443?transport=tcp"
            ]
        );
        assert_eq!(servers[1].username.as_deref(), Some("1700003600:7"));
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("3OnaB8pTohwW5FtC5Nh003v64fU=")
        );
        assert_eq!(ice.refresh_every(), Some(Duration::from_secs(2880)));
        let text = format!("{ice:?}");
        assert!(!text.contains("north-wind"), "{text}");
    }
}
