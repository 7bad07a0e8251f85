//! What the built-in TURN server refuses, decided without sockets: which peers an allocation
//! may reach, how many allocations one user and one source address may hold, and which user
//! names are still valid. Like coturn's `denied-peer-ip` defaults, the refused ranges are a
//! table, not a code path; the socket layer ([`super::conn`]) only asks.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

/// Why the TURN server refused something; the label is the `reason` of
/// `relay_turn_refused_total` in `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A peer on loopback (127.0.0.0/8, ::1): the relay's own machine.
    Loopback,
    /// A link-local peer (169.254.0.0/16, fe80::/10): cloud metadata services live there.
    LinkLocal,
    /// A multicast peer.
    Multicast,
    /// 0.0.0.0/8 or ::.
    Unspecified,
    /// 240.0.0.0/4 and the broadcast address.
    Reserved,
    /// A private, unique-local or carrier-grade-NAT peer, without `--turn-allow-private`.
    Private,
    /// Any port of the relay's own addresses that is not a live allocation: its HTTP, HTTPS
    /// and STUN ports, and whatever else listens there.
    OwnAddress,
    /// A peer the relay itself talks to (its Redis).
    Service,
    /// The user already holds as many allocations as allowed.
    UserQuota,
    /// The source address already holds as many allocations as allowed.
    SourceQuota,
    /// A user name that is not `<expiry>:<user>`, or a MESSAGE-INTEGRITY that does not verify.
    Credentials,
    /// Credentials past their expiry.
    Expired,
    /// Too many unauthenticated requests from one address (each costs the TURN crate a
    /// nonce it keeps for an hour).
    Unauthenticated,
}

impl Refusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 13] = [
        Refusal::Loopback,
        Refusal::LinkLocal,
        Refusal::Multicast,
        Refusal::Unspecified,
        Refusal::Reserved,
        Refusal::Private,
        Refusal::OwnAddress,
        Refusal::Service,
        Refusal::UserQuota,
        Refusal::SourceQuota,
        Refusal::Credentials,
        Refusal::Expired,
        Refusal::Unauthenticated,
    ];

    /// The label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link_local",
            Refusal::Multicast => "multicast",
            Refusal::Unspecified => "unspecified",
            Refusal::Reserved => "reserved",
            Refusal::Private => "private",
            Refusal::OwnAddress => "own_address",
            Refusal::Service => "service",
            Refusal::UserQuota => "user_quota",
            Refusal::SourceQuota => "source_quota",
            Refusal::Credentials => "credentials",
            Refusal::Expired => "expired",
            Refusal::Unauthenticated => "unauthenticated_rate",
        }
    }
}

/// IPv4 ranges refused whatever the flags, checked in order.
const V4_ALWAYS: [(Ipv4Addr, u8, Refusal); 5] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, Refusal::Unspecified),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Refusal::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Refusal::LinkLocal),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Refusal::Multicast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Refusal::Reserved),
];

/// IPv4 ranges refused unless private peers are allowed.
const V4_PRIVATE: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Carrier-grade NAT (RFC 6598): the inside of somebody else's network.
    (Ipv4Addr::new(100, 64, 0, 0), 10),
];

/// IPv6 ranges refused whatever the flags (IPv4-mapped addresses are checked as IPv4).
const V6_ALWAYS: [(Ipv6Addr, u8, Refusal); 4] = [
    (Ipv6Addr::UNSPECIFIED, 128, Refusal::Unspecified),
    (Ipv6Addr::LOCALHOST, 128, Refusal::Loopback),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Refusal::LinkLocal,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Refusal::Multicast,
    ),
];

/// Unique-local IPv6 (fc00::/7), refused unless private peers are allowed.
const V6_PRIVATE: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7);

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, bits: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, bits: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Which peers an allocation may reach.
#[derive(Clone, Debug)]
pub struct PeerPolicy {
    allow_private: bool,
    own_ips: Vec<IpAddr>,
    services: Vec<SocketAddr>,
}

impl PeerPolicy {
    /// A policy for a relay reached at `own_ips` (its public address, its bound address, its
    /// network interfaces) that talks to `services` itself (its Redis).
    pub fn new(allow_private: bool, own_ips: Vec<IpAddr>, services: Vec<SocketAddr>) -> Self {
        let own_ips = own_ips.into_iter().map(|ip| ip.to_canonical()).collect();
        Self {
            allow_private,
            own_ips,
            services,
        }
    }

    /// Whether an allocation may reach `peer`. `own_allocation` says that `peer` is the relayed
    /// address of a live allocation on this server: that is always allowed, whatever its
    /// address, because between two strict NATs relay to relay on one server is the only path.
    pub fn check(&self, peer: SocketAddr, own_allocation: bool) -> Result<(), Refusal> {
        if own_allocation {
            return Ok(());
        }
        let ip = peer.ip().to_canonical();
        let peer = SocketAddr::new(ip, peer.port());
        if self.services.contains(&peer) {
            return Err(Refusal::Service);
        }
        match ip {
            IpAddr::V4(v4) => {
                if let Some((_, _, refusal)) = V4_ALWAYS
                    .iter()
                    .find(|(net, bits, _)| in_v4(v4, *net, *bits))
                {
                    return Err(*refusal);
                }
                if v4 == Ipv4Addr::BROADCAST {
                    return Err(Refusal::Reserved);
                }
            }
            IpAddr::V6(v6) => {
                if let Some((_, _, refusal)) = V6_ALWAYS
                    .iter()
                    .find(|(net, bits, _)| in_v6(v6, *net, *bits))
                {
                    return Err(*refusal);
                }
            }
        }
        // Before the private ranges: a relay on a private address (a home server, a lab)
        // names its own ports "own address" whatever the flags.
        if self.own_ips.contains(&ip) {
            return Err(Refusal::OwnAddress);
        }
        let private = match ip {
            IpAddr::V4(v4) => V4_PRIVATE.iter().any(|(net, bits)| in_v4(v4, *net, *bits)),
            IpAddr::V6(v6) => in_v6(v6, V6_PRIVATE.0, V6_PRIVATE.1),
        };
        if private && !self.allow_private {
            return Err(Refusal::Private);
        }
        Ok(())
    }
}

/// How many allocations one user and one source address may hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Per user (the part of the user name after the expiry): one page holds one allocation
    /// per call and transport, a few more during an ICE restart.
    pub per_user: usize,
    /// Per source IP address: every page behind one NAT (an office) counts together.
    pub per_source: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            per_user: 16,
            per_source: 64,
        }
    }
}

impl Quota {
    /// Whether one more allocation is allowed to a user that holds `user_holds` and a source
    /// address that holds `source_holds`.
    pub fn check(&self, user_holds: usize, source_holds: usize) -> Result<(), Refusal> {
        if user_holds >= self.per_user {
            Err(Refusal::UserQuota)
        } else if source_holds >= self.per_source {
            Err(Refusal::SourceQuota)
        } else {
            Ok(())
        }
    }
}

/// The user of a coturn REST user name `<expiry>:<user>` (the relay's peer id), if it has that
/// shape.
pub fn user_of(username: &str) -> Option<&str> {
    let (expiry, user) = username.split_once(':')?;
    expiry.parse::<u64>().ok()?;
    Some(user)
}

/// Whether a coturn REST user name is well formed and not past its expiry at `now`.
pub fn check_username(username: &str, now: SystemTime) -> Result<(), Refusal> {
    let expiry = username
        .split_once(':')
        .and_then(|(expiry, _)| expiry.parse::<u64>().ok())
        .ok_or(Refusal::Credentials)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if expiry < now {
        Err(Refusal::Expired)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    fn policy(allow_private: bool) -> PeerPolicy {
        PeerPolicy::new(
            allow_private,
            vec![
                "203.0.113.10".parse().expect("ip"),
                "10.0.0.5".parse().expect("ip"),
            ],
            vec![addr("198.51.100.7:6379")],
        )
    }

    #[test]
    fn what_no_flag_opens_is_refused() {
        for allow_private in [false, true] {
            let p = policy(allow_private);
            for (peer, why) in [
                ("127.0.0.1:9", Refusal::Loopback),
                ("127.200.0.1:9", Refusal::Loopback),
                ("[::1]:9", Refusal::Loopback),
                ("[::ffff:127.0.0.1]:9", Refusal::Loopback),
                ("169.254.169.254:80", Refusal::LinkLocal),
                ("[fe80::1]:9", Refusal::LinkLocal),
                ("224.0.0.251:5353", Refusal::Multicast),
                ("[ff02::1]:9", Refusal::Multicast),
                ("0.0.0.0:9", Refusal::Unspecified),
                ("0.1.2.3:9", Refusal::Unspecified),
                ("[::]:9", Refusal::Unspecified),
                ("255.255.255.255:9", Refusal::Reserved),
                ("240.0.0.1:9", Refusal::Reserved),
                ("203.0.113.10:8443", Refusal::OwnAddress),
                ("203.0.113.10:3478", Refusal::OwnAddress),
                ("10.0.0.5:22", Refusal::OwnAddress),
                ("198.51.100.7:6379", Refusal::Service),
            ] {
                assert_eq!(p.check(addr(peer), false), Err(why), "{peer}");
            }
        }
    }

    #[test]
    fn private_peers_need_the_flag() {
        for peer in [
            "10.1.2.3:5000",
            "172.16.0.1:5000",
            "172.31.255.255:5000",
            "192.168.1.20:5000",
            "100.64.0.1:5000",
            "[fd00::1]:5000",
        ] {
            assert_eq!(
                policy(false).check(addr(peer), false),
                Err(Refusal::Private),
                "{peer}"
            );
            assert_eq!(policy(true).check(addr(peer), false), Ok(()), "{peer}");
        }
        for public in ["172.32.0.1:5000", "198.51.100.7:6380", "[2001:db8::1]:5000"] {
            assert_eq!(policy(false).check(addr(public), false), Ok(()), "{public}");
        }
    }

    #[test]
    fn another_allocation_is_reachable_whatever_its_address() {
        for peer in ["127.0.0.1:49160", "10.0.0.5:49999", "203.0.113.10:49200"] {
            assert_eq!(policy(false).check(addr(peer), true), Ok(()), "{peer}");
        }
    }

    #[test]
    fn quotas_count_users_then_sources() {
        let quota = Quota {
            per_user: 2,
            per_source: 3,
        };
        assert_eq!(quota.check(1, 2), Ok(()));
        assert_eq!(quota.check(2, 0), Err(Refusal::UserQuota));
        assert_eq!(quota.check(0, 3), Err(Refusal::SourceQuota));
    }

    #[test]
    fn user_names_follow_coturns_rest_scheme() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(user_of("1000:7"), Some("7"));
        assert_eq!(user_of("1000:a:b"), Some("a:b"));
        assert_eq!(user_of("7"), None);
        assert_eq!(user_of("x:7"), None);
        assert_eq!(check_username("1000:7", now), Ok(()));
        assert_eq!(check_username("999:7", now), Err(Refusal::Expired));
        assert_eq!(check_username("later:7", now), Err(Refusal::Credentials));
        assert_eq!(check_username("", now), Err(Refusal::Credentials));
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
