//! Plain http from another machine is sent to https: browsers give camera and microphone only to
//! https pages (and to localhost), so a phone that typed `http://192.168.1.20:8080` would get a
//! page that cannot call.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::host::url_host;

/// Paths answered over plain http to everybody: monitoring scrapers poll them by address and
/// seldom follow redirects.
const EXEMPT: [&str; 2] = ["/healthz", "/metrics"];

/// Where a plain-http request should go instead, if anywhere: `https://<host>:<tls_port><path>`
/// for a client that is not this machine, with the host of its `Host` header (port stripped).
/// `None` for loopback clients, for `/healthz` and `/metrics`, and when the `Host` header is
/// missing or not a plain host name or address.
pub fn redirect_target(
    client: IpAddr,
    host_header: Option<&str>,
    path_and_query: &str,
    tls_port: u16,
) -> Option<String> {
    if client.to_canonical().is_loopback() {
        return None;
    }
    let path = path_and_query.split('?').next().unwrap_or_default();
    if EXEMPT.contains(&path) {
        return None;
    }
    let host = url_host(host_header?)?;
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(if tls_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{tls_port}{path_and_query}")
    })
}

/// Middleware for the plain-http listener: answers with `308 Permanent Redirect` where
/// [`redirect_target`] says so, passes everything else on.
pub(crate) async fn to_https(
    State(tls_port): State<u16>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let host = crate::host::host_header(request.headers());
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = redirect_target(addr.ip(), host, path_and_query, tls_port)
        .and_then(|target| HeaderValue::from_str(&target).ok());
    match location {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
            "this relay speaks https to other machines\n",
        )
            .into_response(),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lan() -> IpAddr {
        [192, 168, 1, 30].into()
    }

    #[test]
    fn other_machines_are_sent_to_https_with_path_and_query() {
        assert_eq!(
            redirect_target(lan(), Some("192.168.1.20:8080"), "/?room=kitchen", 8443).as_deref(),
            Some("https://192.168.1.20:8443/?room=kitchen")
        );
        assert_eq!(
            redirect_target(lan(), Some("call.example"), "/app.wasm", 443).as_deref(),
            Some("https://call.example/app.wasm")
        );
        assert_eq!(
            redirect_target(
                "fd00::30".parse().expect("ip"),
                Some("[fd00::20]:8080"),
                "/",
                8443
            )
            .as_deref(),
            Some("https://[fd00::20]:8443/")
        );
    }

    #[test]
    fn this_machine_and_monitoring_stay_on_http() {
        for local in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = local.parse().expect("ip");
            assert_eq!(redirect_target(ip, Some("localhost:8080"), "/", 8443), None);
        }
        assert_eq!(
            redirect_target(lan(), Some("relay:8080"), "/healthz", 8443),
            None
        );
        assert_eq!(
            redirect_target(lan(), Some("relay:8080"), "/metrics?x=1", 8443),
            None
        );
        assert!(redirect_target(lan(), Some("relay:8080"), "/healthzz", 8443).is_some());
    }

    #[test]
    fn a_host_header_that_would_bend_the_url_gets_no_redirect() {
        assert_eq!(redirect_target(lan(), None, "/", 8443), None);
        assert_eq!(
            redirect_target(lan(), Some("evil.example/x"), "/", 8443),
            None
        );
        assert_eq!(
            redirect_target(lan(), Some("a@evil.example"), "/", 8443),
            None
        );
    }
}
