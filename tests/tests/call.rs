//! The whole product: the real relay serving the real client bundle, and two real headless
//! Chrome pages making a call through it. Frames must be decoded in both remote videos.
//!
//! Needs the release bundle in `dist/` (`make test` builds it), and `chromedriver` and
//! `chromium` (`scripts/setup.sh --test` installs them; `CHROMEDRIVER` / `CHROME` override the
//! paths).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long any one thing may take before the test gives up on it. Generous: shared machines.
const PATIENCE: Duration = Duration::from_secs(30);

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

/// A chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("port").port()
        };
        let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let child = Command::new(&path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e} (run scripts/setup.sh --test)"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chrome with a fake camera and microphone that grants them without asking.
    async fn browser(&self) -> Client {
        let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    "--autoplay-policy=no-user-gesture-required",
                    // Gather candidates on loopback, with plain addresses rather than mDNS
                    // names: the tests talk to 127.0.0.1 only.
                    "--allow-loopback-in-peer-connection",
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                ],
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let started = Instant::now();
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&self.url).await {
                Ok(client) => return client,
                // chromedriver takes a moment to listen.
                Err(err) if started.elapsed() < PATIENCE => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no browser session from chromedriver: {err}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Evaluates `script` in `page` until it returns something truthy; returns that.
async fn wait_for(page: &Client, what: &str, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let value = page.execute(script, vec![]).await.expect("script runs");
        let truthy = match &value {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        if started.elapsed() > PATIENCE {
            let status = page
                .execute(
                    "return document.getElementById('status').textContent",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what}; the page says {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(page: &Client) -> (String, String) {
    let v = page
        .execute(
            "const s = document.getElementById('status');
             return [s.dataset.state, s.textContent];",
            vec![],
        )
        .await
        .expect("script runs");
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_str().unwrap_or_default().to_owned(),
    )
}

async fn frames_beyond(page: &Client, before: u64) {
    let script = format!("{REMOTE_FRAMES_FN} return frames() > {before};");
    wait_for(page, "remote video frames", &script).await;
}

/// Defines `frames()`: decoded frames in the page's remote video so far (0 without a stream).
const REMOTE_FRAMES_FN: &str = "const frames = () => {
    const v = document.getElementById('remoteVideo');
    return v.srcObject ? v.getVideoPlaybackQuality().totalVideoFrames : 0; };";

async fn frames(page: &Client) -> u64 {
    page.execute(&format!("{REMOTE_FRAMES_FN} return frames();"), vec![])
        .await
        .expect("script runs")
        .as_u64()
        .unwrap_or(0)
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
