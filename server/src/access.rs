//! Who may read `/metrics`: this machine by default, the addresses of `--metrics-allow`, and
//! anybody with `--metrics-token`'s bearer token.
//!
//! The figures say how many people are in calls, how many rooms are open and what fails; that
//! is the operator's business, not the world's. The address checked is the TCP peer's, the one
//! the per-address limits use: a header saying where a request came from is anybody's to
//! write, so it can only take permission away (see [`MetricsAccess::allows`]).

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// An address or a block of addresses: `192.0.2.7`, `10.0.0.0/8`, `fd00::/8`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this block (an IPv4 address written as IPv6, `::ffff:a.b.c.d`, is
    /// taken as the IPv4 address it is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || format!("{text:?} is not an IP address or a block such as 10.0.0.0/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        // A written IPv4 address as IPv6 matches what `contains` compares it with.
        let (addr, offset) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => (addr.to_canonical(), 96),
            _ => (addr, 0),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .and_then(|p| p.checked_sub(offset))
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        Ok(Self { addr, prefix })
    }
}

/// The bearer token that lets any address read `/metrics`. It never reaches a log: its
/// `Debug` is redacted, and only its hash is kept.
#[derive(Clone)]
pub struct MetricsToken {
    /// SHA-256 of the token: comparing hashes takes the same time whatever the guess shares
    /// with the token, and the token itself is not kept in memory.
    digest: [u8; 32],
}

impl MetricsToken {
    /// A token given as text; `None` if it is empty (which would let everybody in).
    pub fn new(token: &str) -> Option<Self> {
        (!token.is_empty()).then(|| Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The token in `path`, without the line end an editor leaves after it.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::new(text.trim_end_matches(['\r', '\n'])).ok_or(TokenError::Empty)
    }

    /// Whether `given` is the token, in time that does not depend on where they differ.
    fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let differ = self
            .digest
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(differ) == 0
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for MetricsToken {
    type Err = TokenError;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        Self::new(token).ok_or(TokenError::Empty)
    }
}

/// Why a metrics token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is empty.
    #[error("the metrics token is empty")]
    Empty,
    /// The token's file cannot be read.
    #[error("cannot read the metrics token from {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

/// Who may read `/metrics` besides this machine.
#[derive(Clone, Debug, Default)]
pub struct MetricsAccess {
    /// Addresses let in without a token (`--metrics-allow`).
    pub allow: Vec<IpNet>,
    /// The bearer token that lets any address in (`--metrics-token`).
    pub token: Option<MetricsToken>,
}

impl MetricsAccess {
    /// Whether a request from `peer` (the TCP peer's address) with `headers` may read
    /// `/metrics`: with the bearer token from anywhere, from an address of
    /// [`MetricsAccess::allow`], or from loopback unless a proxy forwarded it there (it says so
    /// in `Forwarded` or `X-Forwarded-For`): a proxy on this machine, such as docs/nginx.conf's,
    /// would otherwise open `/metrics` to everybody it serves.
    pub fn allows(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        let peer = peer.to_canonical();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let forwarded =
            headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
        match (&self.token, bearer) {
            (Some(token), Some(given)) if token.matches(given) => true,
            _ => {
                self.allow.iter().any(|net| net.contains(peer))
                    || (peer.is_loopback() && !forwarded)
            }
        }
    }
}

/// What a refused scraper reads: how to be let in.
pub(crate) const REFUSED: &str = "/metrics answers this machine only: start the relay with \
     --metrics-allow <address> for this one, or --metrics-token and send \
     `Authorization: Bearer <token>`\n";

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn net(text: &str) -> IpNet {
        text.parse().expect("a block")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("a value"));
        }
        headers
    }

    #[test]
    fn blocks_contain_their_addresses() {
        assert!(net("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        // IPv4 peers of a dual-stack socket arrive as IPv6.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("::a00:1")));
    }

    #[test]
    fn blocks_that_are_not_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "x",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(net(" 10.1.2.3/8 ").to_string(), "10.1.2.3/8");
    }

    #[test]
    fn loopback_only_by_default() {
        let access = MetricsAccess::default();
        let none = HeaderMap::new();
        assert!(access.allows(ip("127.0.0.1"), &none));
        assert!(access.allows(ip("127.0.0.2"), &none));
        assert!(access.allows(ip("::1"), &none));
        assert!(access.allows(ip("::ffff:127.0.0.1"), &none));
        assert!(!access.allows(ip("192.168.1.20"), &none));
        assert!(!access.allows(ip("fd00::1"), &none));
        assert!(!access.allows(ip("0.0.0.0"), &none));
    }

    #[test]
    fn a_forwarded_request_is_not_this_machines() {
        let access = MetricsAccess::default();
        for forwarded in [
            headers(&[("x-forwarded-for", "203.0.113.9")]),
            headers(&[("forwarded", "for=203.0.113.9")]),
        ] {
            assert!(!access.allows(ip("127.0.0.1"), &forwarded));
        }
    }

    #[test]
    fn named_addresses_are_let_in() {
        let access = MetricsAccess {
            allow: vec![net("192.0.2.7"), net("10.0.0.0/8")],
            token: None,
        };
        let none = HeaderMap::new();
        assert!(access.allows(ip("192.0.2.7"), &none));
        assert!(access.allows(ip("10.9.9.9"), &none));
        assert!(access.allows(ip("127.0.0.1"), &none));
        assert!(!access.allows(ip("192.0.2.8"), &none));
    }

    #[test]
    fn the_token_lets_anybody_in_and_nothing_else_does() {
        let access = MetricsAccess {
            allow: Vec::new(),
            token: MetricsToken::new("s3cret-token"),
        };
        let far = ip("203.0.113.9");
        assert!(access.allows(far, &headers(&[("authorization", "Bearer s3cret-token")])));
        assert!(access.allows(far, &headers(&[("authorization", "bearer s3cret-token")])));
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            assert!(
                !access.allows(far, &headers(&[("authorization", wrong)])),
                "{wrong:?}"
            );
        }
        assert!(!access.allows(far, &HeaderMap::new()));
        // A wrong token does not take away what the address has.
        assert!(access.allows(
            ip("127.0.0.1"),
            &headers(&[("authorization", "Bearer nope")])
        ));
    }

    #[test]
    fn the_token_stays_out_of_logs() {
        let token: MetricsToken = "s3cret-token".parse().expect("a token");
        let access = MetricsAccess {
            allow: Vec::new(),
            token: Some(token),
        };
        let shown = format!("{access:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!("".parse::<MetricsToken>().is_err());
    }
}
