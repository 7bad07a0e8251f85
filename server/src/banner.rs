//! What the relay prints when it starts: where to open the page on this machine and on the
//! others, the certificate's fingerprint to compare in the browser, and a QR code for phones.

use std::{fmt::Write, net::IpAddr, ops::RangeInclusive};

use qrcode::{render::unicode::Dense1x2, QrCode};

/// What the start-up banner tells.
#[derive(Clone, Debug, Default)]
pub struct Banner {
    /// The plain-http port.
    pub http_port: u16,
    /// The https port, if TLS is on.
    pub https_port: Option<u16>,
    /// The SHA-256 fingerprint of the certificate, as browsers show it.
    pub fingerprint: Option<String>,
    /// The addresses other devices reach this machine at (see [`lan_addresses`]).
    pub lan: Vec<IpAddr>,
    /// The UDP port of the built-in STUN server, if it runs.
    pub stun_port: Option<u16>,
    /// The built-in TURN server, if it runs (on [`Banner::stun_port`]).
    pub turn: Option<TurnBanner>,
    /// Whether the relay listens on loopback only, so that other devices cannot connect.
    pub loopback_only: bool,
}

/// What the banner says of the built-in TURN server.
#[derive(Clone, Debug)]
pub struct TurnBanner {
    /// The address relayed addresses are advertised at.
    pub advertised: IpAddr,
    /// The relayed ports.
    pub ports: RangeInclusive<u16>,
    /// A port for TURN over TLS besides the https port (--turn-tls-port).
    pub tls_port: Option<u16>,
}

/// The addresses other devices may reach the relay at when it listens on `bound`: `bound`
/// itself if it is a specific address, else every address of the machine except loopback and
/// link-local ones. IPv4 first.
pub fn lan_addresses(bound: IpAddr) -> Vec<IpAddr> {
    let usable = |ip: &IpAddr| !ip.is_loopback() && !ip.is_unspecified() && !is_link_local(*ip);
    let mut ips: Vec<IpAddr> = if bound.is_unspecified() {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces
                .iter()
                .map(if_addrs::Interface::ip)
                // A socket bound to 0.0.0.0 is reached over IPv4 only.
                .filter(|ip| bound.is_ipv6() || ip.is_ipv4())
                .collect(),
            Err(err) => {
                tracing::warn!(%err, "cannot list the network interfaces");
                Vec::new()
            }
        }
    } else {
        vec![bound]
    };
    ips.retain(usable);
    ips.sort_by_key(IpAddr::is_ipv6);
    ips.dedup();
    ips
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// `http(s)://ip:port`, with an IPv6 address in brackets.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The start-up banner: the URL for this machine, those for other devices, the certificate's
/// fingerprint, and a QR code of the first https URL drawn with half blocks.
pub fn banner(info: &Banner) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "On this machine, open http://localhost:{port} (and http://localhost:{port}/#true in a second window to call yourself).",
        port = info.http_port
    );
    let others: Vec<String> = match info.https_port {
        Some(port) => info.lan.iter().map(|ip| url("https", *ip, port)).collect(),
        None => info
            .lan
            .iter()
            .map(|ip| url("http", *ip, info.http_port))
            .collect(),
    };
    if info.loopback_only {
        let _ = writeln!(
            out,
            "Only this machine can connect: the relay listens on a loopback address (see --addr)."
        );
    } else if others.is_empty() {
        let _ = writeln!(
            out,
            "No network address found for other devices: are you connected to a network?"
        );
    } else {
        let _ = writeln!(out, "From other devices (phone, laptop), open:");
        for url in &others {
            let _ = writeln!(out, "    {url}");
        }
    }
    match (&info.https_port, &info.fingerprint) {
        (Some(_), Some(fingerprint)) => {
            let _ = writeln!(
                out,
                "The browser may warn about the certificate the first time: accept it if its SHA-256 fingerprint is\n    {fingerprint}"
            );
        }
        (Some(_), None) => {}
        (None, _) => {
            let _ = writeln!(
                out,
                "TLS is off: other devices get camera and microphone only through an https proxy in front of the relay."
            );
        }
    }
    match (info.stun_port, &info.turn) {
        (Some(port), Some(turn)) => {
            let _ = writeln!(
                out,
                "STUN and TURN are answered on UDP and TCP port {port}{tls}; relayed addresses are advertised at {ip}, UDP ports {first}-{last} (--public-ip, --turn-ports).",
                tls = turn.tls_port.or(info.https_port).map(|p| format!(", TURN over TLS on TCP {p}")).unwrap_or_default(),
                ip = turn.advertised,
                first = turn.ports.start(),
                last = turn.ports.end(),
            );
            let _ = writeln!(
                out,
                "For calls between networks, open in the firewall: TCP {http}{https}, UDP and TCP {port}, UDP {first}-{last}.",
                http = info.http_port,
                https = info.https_port.into_iter().chain(turn.tls_port).map(|p| format!(" and {p}")).collect::<String>(),
                first = turn.ports.start(),
                last = turn.ports.end(),
            );
        }
        (Some(port), None) => {
            let _ = writeln!(out, "STUN is answered on UDP port {port}.");
        }
        (None, _) => {}
    }
    if let (Some(first), Some(_), false) = (others.first(), info.https_port, info.loopback_only) {
        if let Ok(code) = QrCode::new(first.as_bytes()) {
            // Light modules drawn dark and the other way round: most terminals are dark, and
            // a QR code reads as dark modules on a light ground with a light quiet zone.
            let qr = code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            let _ = writeln!(out, "Scan to open {first} on a phone:\n{qr}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Banner {
        Banner {
            http_port: 8080,
            https_port: Some(8443),
            fingerprint: Some("AB:CD".into()),
            lan: vec![
                "192.168.1.20".parse().expect("ip"),
                "fd00::20".parse().expect("ip"),
            ],
            stun_port: Some(3478),
            turn: None,
            loopback_only: false,
        }
    }

    #[test]
    fn the_banner_says_what_turn_advertises_and_what_to_open() {
        let text = banner(&Banner {
            turn: Some(TurnBanner {
                advertised: "203.0.113.10".parse().expect("ip"),
                ports: 49160..=49999,
                tls_port: None,
            }),
            ..info()
        });
        assert!(text.contains("TURN over TLS on TCP 8443;"), "{text}");
        assert!(
            text.contains("advertised at 203.0.113.10, UDP ports 49160-49999"),
            "{text}"
        );
        assert!(
            text.contains(
                "open in the firewall: TCP 8080 and 8443, UDP and TCP 3478, UDP 49160-49999."
            ),
            "{text}"
        );
    }

    #[test]
    fn a_separate_turn_tls_port_is_named_and_opened_too() {
        let text = banner(&Banner {
            turn: Some(TurnBanner {
                advertised: "203.0.113.10".parse().expect("ip"),
                ports: 49160..=49999,
                tls_port: Some(5349),
            }),
            ..info()
        });
        assert!(text.contains("TURN over TLS on TCP 5349;"), "{text}");
        assert!(
            text.contains("open in the firewall: TCP 8080 and 8443 and 5349, UDP and TCP 3478"),
            "{text}"
        );
    }

    #[test]
    fn the_banner_says_where_to_go_and_what_to_compare() {
        let text = banner(&info());
        assert!(text.contains("http://localhost:8080"), "{text}");
        assert!(text.contains("    https://192.168.1.20:8443\n"), "{text}");
        assert!(text.contains("    https://[fd00::20]:8443\n"), "{text}");
        assert!(text.contains("AB:CD"), "{text}");
        assert!(text.contains("UDP port 3478"), "{text}");
        assert!(
            text.contains("Scan to open https://192.168.1.20:8443"),
            "{text}"
        );
        assert!(
            text.contains('\u{2580}') || text.contains('\u{2584}'),
            "{text}"
        );
    }

    #[test]
    fn without_tls_there_is_no_qr_code_and_a_hint() {
        let text = banner(&Banner {
            https_port: None,
            fingerprint: None,
            ..info()
        });
        assert!(text.contains("    http://192.168.1.20:8080\n"), "{text}");
        assert!(text.contains("TLS is off"), "{text}");
        assert!(!text.contains("Scan"), "{text}");
    }

    #[test]
    fn a_specific_address_is_the_only_one_offered() {
        let ip: IpAddr = "192.168.1.20".parse().expect("ip");
        assert_eq!(lan_addresses(ip), [ip]);
        assert!(lan_addresses("127.0.0.1".parse().expect("ip")).is_empty());
        let all = lan_addresses("0.0.0.0".parse().expect("ip"));
        assert!(all.iter().all(|ip| ip.is_ipv4() && !ip.is_loopback()));
    }
}
