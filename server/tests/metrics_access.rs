//! Who may read `/metrics`: over real sockets from this machine, and through the real router
//! as a tower service for requests from elsewhere (a test cannot connect from another machine,
//! so it hands the router the peer address the connection would have given, as the relay's
//! own server does).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
};
use server::{MetricsAccess, MetricsToken};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower_service::Service;

mod common;

const TOKEN: &str = "a-long-random-scrape-token";

fn config(metrics: MetricsAccess) -> server::Config {
    server::Config {
        dist: PathBuf::from("/nonexistent/relay-test-dist"),
        metrics,
        ..server::Config::default()
    }
}

fn with_token() -> MetricsAccess {
    MetricsAccess {
        allow: Vec::new(),
        token: MetricsToken::new(TOKEN),
    }
}

/// `GET /metrics` through the router as if from `peer`, with `authorization` if given.
async fn metrics_from(access: MetricsAccess, peer: &str, authorization: Option<&str>) -> u16 {
    let config = config(access);
    let shutdown = CancellationToken::new();
    let relay = server::Relay::new(&config, shutdown.clone());
    let mut router = server::app(relay, config.dist.clone());
    let peer: SocketAddr = peer.parse().expect("an address");
    let mut request = Request::builder()
        .uri("/metrics")
        .header(header::HOST, "relay.example:8080")
        .extension(ConnectInfo(peer));
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = router.call(request).await.expect("the router answers");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body = String::from_utf8_lossy(&body);
    if status == StatusCode::FORBIDDEN {
        assert!(body.contains("--metrics-allow"), "says how: {body}");
    } else {
        assert!(body.contains("relay_connections "), "{body}");
    }
    shutdown.cancel();
    status.as_u16()
}

#[tokio::test]
async fn other_machines_are_refused_by_default() {
    assert_eq!(
        metrics_from(MetricsAccess::default(), "192.0.2.7:50000", None).await,
        403
    );
    assert_eq!(
        metrics_from(MetricsAccess::default(), "[2001:db8::7]:50000", None).await,
        403
    );
    assert_eq!(
        metrics_from(MetricsAccess::default(), "127.0.0.1:50000", None).await,
        200
    );
    assert_eq!(
        metrics_from(MetricsAccess::default(), "[::1]:50000", None).await,
        200
    );
}

#[tokio::test]
async fn named_addresses_are_let_in() {
    let access = || MetricsAccess {
        allow: vec!["192.0.2.0/24".parse().expect("a block")],
        token: None,
    };
    assert_eq!(metrics_from(access(), "192.0.2.7:50000", None).await, 200);
    assert_eq!(
        metrics_from(access(), "[::ffff:192.0.2.7]:50000", None).await,
        200
    );
    assert_eq!(
        metrics_from(access(), "198.51.100.7:50000", None).await,
        403
    );
}

#[tokio::test]
async fn the_right_token_lets_anybody_in_and_a_wrong_one_nobody() {
    let far = "198.51.100.7:50000";
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(metrics_from(with_token(), far, Some(&bearer)).await, 200);
    assert_eq!(
        metrics_from(with_token(), far, Some("Bearer a-long-random-scrape-tokeN")).await,
        403
    );
    assert_eq!(metrics_from(with_token(), far, Some(TOKEN)).await, 403);
    assert_eq!(metrics_from(with_token(), far, None).await, 403);
}

/// A relay on 127.0.0.1; stopped when dropped.
async fn relay(access: MetricsAccess) -> (SocketAddr, DropGuard) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(listener, config(access), shutdown.clone()));
    (addr, shutdown.drop_guard())
}

/// The status of `GET /metrics` over a real connection, with `extra` header lines.
async fn status(addr: SocketAddr, extra: &str) -> u16 {
    common::http::get_with(addr, "/metrics", extra).await.status
}

#[tokio::test]
async fn this_machine_reads_the_metrics_over_a_real_socket() {
    let (addr, _stop) = relay(MetricsAccess::default()).await;
    assert_eq!(status(addr, "").await, 200);
}

#[tokio::test]
async fn what_a_proxy_on_this_machine_forwards_needs_the_token() {
    let (addr, _stop) = relay(with_token()).await;
    let forwarded = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(status(addr, forwarded).await, 403);
    assert_eq!(status(addr, "Forwarded: for=203.0.113.9\r\n").await, 403);
    let with_token = format!("{forwarded}Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(status(addr, &with_token).await, 200);
    let with_wrong = format!("{forwarded}Authorization: Bearer not-{TOKEN}\r\n");
    assert_eq!(status(addr, &with_wrong).await, 403);
}

/// Over a real socket from an address of this machine that is not loopback, when it has one
/// (`if_addrs`): the relay on 0.0.0.0 sees that address as the peer.
#[tokio::test]
async fn a_non_loopback_peer_is_refused_over_a_real_socket() {
    let Some(ip) = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|interface| interface.ip())
        .find(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local()))
    else {
        eprintln!("no non-loopback IPv4 address here: covered by the router tests only");
        return;
    };
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("binds");
    let port = listener.local_addr().expect("an address").port();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run(
        listener,
        config(with_token()),
        shutdown.clone(),
    ));
    let _stop = shutdown.drop_guard();
    let addr = SocketAddr::new(ip, port);
    assert_eq!(status(addr, "").await, 403);
    assert_eq!(
        status(addr, &format!("Authorization: Bearer {TOKEN}\r\n")).await,
        200
    );
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(status(loopback, "").await, 200);
}
