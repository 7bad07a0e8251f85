//! Host names as browsers send them in `Host` and `Origin`, and the checks that make one safe to
//! put into a URL the relay hands back (a redirect, a STUN server).

use std::net::Ipv6Addr;

use axum::http::{header, HeaderMap};

/// The `Host` header's text, if there is one and it is visible ASCII.
pub(crate) fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// `host` of `host:port`, `[v6]` of `[v6]:port`; the authority itself when it has no port.
pub(crate) fn hostname(authority: &str) -> &str {
    if let Some(end) = authority.find(']') {
        return &authority[..=end];
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The host of a `Host` header (port stripped, an IPv6 literal kept in its brackets), if it is
/// a plain DNS name, an IPv4 address or a bracketed IPv6 address. Anything else (a user name, a
/// path, spaces, a zone id) is refused: the header comes from the client and the result goes
/// into URLs.
pub(crate) fn url_host(authority: &str) -> Option<&str> {
    let host = hostname(authority.trim());
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok().then_some(host);
    }
    let plain = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    plain.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_keep_their_brackets() {
        assert_eq!(url_host("relay.example:8443"), Some("relay.example"));
        assert_eq!(url_host("192.168.1.20"), Some("192.168.1.20"));
        assert_eq!(url_host("[fd00::1]:8080"), Some("[fd00::1]"));
        assert_eq!(url_host("[::1]"), Some("[::1]"));
    }

    #[test]
    fn hosts_that_would_bend_a_url_are_refused() {
        for bad in [
            "",
            ":8080",
            "user@evil.example",
            "evil.example/path",
            "a b",
            "[nope]:1",
            "[fe80::1%eth0]",
            "[::1",
            "x?transport=tcp",
        ] {
            assert_eq!(url_host(bad), None, "{bad:?}");
        }
    }
}
