//! The real relay, started in this process on a loopback port, serving the built client.

use std::{net::SocketAddr, path::PathBuf};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The client bundle `make test` builds (`DIST_DIR` overrides it).
pub fn dist_dir() -> PathBuf {
    let dist = std::env::var_os("DIST_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist"),
        PathBuf::from,
    );
    assert!(
        dist.join("index.html").is_file(),
        "no client bundle in {}: run `make test` (or `make client`), which builds it first",
        dist.display()
    );
    dist.canonicalize().expect("the bundle's path")
}

/// Starts the relay on `addr` (port 0: any free port) with rooms of `room_capacity`. Returns
/// its address, its shutdown token, and the task that ends when it has stopped.
pub async fn start(
    addr: SocketAddr,
    room_capacity: usize,
) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let config = server::Config {
        dist: dist_dir(),
        room_capacity,
        ..server::Config::default()
    };
    start_with(addr, config).await
}

/// [`start`] with a configuration of the caller's (a relay sharing rooms through Redis, say).
pub async fn start_with(
    addr: SocketAddr,
    config: server::Config,
) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the relay");
    let addr = listener.local_addr().expect("relay address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            server::run(listener, config, shutdown)
                .await
                .expect("the relay runs");
        }
    });
    (addr, shutdown, task)
}
