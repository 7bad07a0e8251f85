//! The whole product: the real relay serving the real client bundle, and two real headless
//! Chrome pages making a call through it. Frames must be decoded in both remote videos.
//!
//! Needs the release bundle in `dist/` (`make test` builds it), and `chromedriver` and
//! `chromium` (`scripts/setup.sh --test` installs them; `CHROMEDRIVER` / `CHROME` override the
//! paths).

use std::{net::SocketAddr, path::PathBuf, time::Instant};

use e2e::browser::{frames, frames_beyond, status_of, wait_for, Driver};
use fantoccini::Locator;
use tokio_util::sync::CancellationToken;

fn dist_dir() -> PathBuf {
    let dist = std::env::var_os("DIST_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist"),
        PathBuf::from,
    );
    assert!(
        dist.join("index.html").is_file(),
        "no client bundle in {}: run `make test`, which builds it first",
        dist.display()
    );
    dist
}

/// Starts the relay on `addr` (port 0: any free port). Returns its address, its shutdown
/// token, and the task that ends when it has stopped.
async fn start_relay(
    addr: SocketAddr,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the relay");
    let addr = listener.local_addr().expect("relay address");
    let shutdown = CancellationToken::new();
    let config = server::Config {
        dist: dist_dir(),
        ..server::Config::default()
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_see_each_other_hang_up_and_call_again() {
    let (relay, shutdown, relay_task) = start_relay(([127, 0, 0, 1], 0).into()).await;
    let driver = Driver::start().await;
    let callee = driver.browser().await;
    let caller = driver.browser().await;
    let base = format!("http://{relay}/?room=e2e");

    callee.goto(&base).await.expect("open the callee page");
    wait_for(
        &callee,
        "the callee to wait in the room",
        "return document.getElementById('status').dataset.state === 'waiting'",
    )
    .await;

    // The time a person waits: from opening the caller's page to seeing each other.
    let opened = Instant::now();
    caller
        .goto(&format!("{base}#true"))
        .await
        .expect("open the caller page");
    frames_beyond(&caller, 0).await;
    frames_beyond(&callee, 0).await;
    let setup = opened.elapsed();
    println!(
        "call setup: {} ms from opening /#true to decoded frames on both sides",
        setup.as_millis()
    );
    for page in [&caller, &callee] {
        wait_for(
            page,
            "the connected status",
            "return document.getElementById('status').dataset.state === 'connected'",
        )
        .await;
        // Two pages of one machine talk over its own addresses: a direct path (prflx when the
        // connectivity checks arrive before the trickled candidate).
        let path = e2e::browser::connection_path(page).await;
        assert!(["host", "prflx"].contains(&path.as_str()), "path {path}");
    }

    // A third person in the full room is told so and never gets the pair's media.
    let intruder = driver.browser().await;
    intruder.goto(&base).await.expect("open a third page");
    wait_for(
        &intruder,
        "the room-full message",
        "const s = document.getElementById('status');
         return s.dataset.state === 'error' && s.textContent.includes('full');",
    )
    .await;
    assert_eq!(frames(&intruder).await, 0, "the third page got media");
    intruder.close().await.expect("close the third page");

    // Hang up on one side: both remote videos are cleared.
    caller
        .find(Locator::Id("hangupButton"))
        .await
        .expect("hang-up button")
        .click()
        .await
        .expect("click hang up");
    for page in [&caller, &callee] {
        wait_for(
            page,
            "the remote video to be cleared",
            "return document.getElementById('remoteVideo').srcObject === null",
        )
        .await;
        assert_eq!(status_of(page).await.0, "ended");
    }

    // Either side can call again; this time the one that was called.
    callee
        .find(Locator::Id("callButton"))
        .await
        .expect("call button")
        .click()
        .await
        .expect("click call");
    frames_beyond(&caller, 0).await;
    frames_beyond(&callee, 0).await;

    // The relay restarts: both pages notice, reconnect by themselves, and call again.
    shutdown.cancel();
    relay_task.await.expect("the relay stops");
    for page in [&caller, &callee] {
        wait_for(
            page,
            "the page to notice the relay is gone",
            "return document.getElementById('status').textContent.includes('Reconnecting')",
        )
        .await;
    }
    let (_, shutdown, _relay_task) = start_relay(relay).await;
    for page in [&caller, &callee] {
        wait_for(
            page,
            "the call to come back after the relay restart",
            "return document.getElementById('status').dataset.state === 'connected'",
        )
        .await;
        let now = frames(page).await;
        frames_beyond(page, now).await;
    }

    // Closing a page tells the other, which goes back to waiting.
    caller.close().await.expect("close the caller");
    wait_for(
        &callee,
        "the callee to notice the caller left",
        "return document.getElementById('remoteVideo').srcObject === null
            && document.getElementById('status').dataset.state === 'waiting'",
    )
    .await;
    callee.close().await.expect("close the callee");
    shutdown.cancel();
}
