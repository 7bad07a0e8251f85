//! Real headless Firefox ESR pages driven through geckodriver, beside the Chrome ones of
//! [`crate::browser`]: the same [`Client`], so every helper there works on these pages too.
//!
//! Firefox has no DevTools command to run a script before a page's own; WebDriver BiDi's
//! `script.addPreloadScript` does it, so its pages keep the same connection watch
//! (`window.__pcLog`) that a failing wait prints.
//!
//! Firefox gathers no ICE candidate on loopback alone, nor without a default route: the tests
//! run inside `scripts/loopback-only.sh`, whose namespace has a veth pair of its own for that.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Map, Value};
use tokio::process::{Child, Command};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::browser::{connection_watch_js, free_port, PATIENCE};

/// The preferences every test Firefox gets: a fake camera and microphone granted without
/// asking, video and sound that play without a click, and none of Firefox's own traffic
/// (updates, telemetry, safe browsing, captive-portal and connectivity checks, prefetching) on
/// the network: what Chrome's `--disable-background-networking --disable-component-update
/// --disable-sync --no-first-run` do there. geckodriver sets a few of these itself; they are all
/// here so that this list says what the browser does.
pub fn firefox_prefs() -> Map<String, Value> {
    [
        // The fake devices (a changing colour and a tone), granted without a prompt.
        ("media.navigator.streams.fake", json!(true)),
        ("media.navigator.permission.disabled", json!(true)),
        // 0: media may play, with sound, without a user gesture.
        ("media.autoplay.default", json!(0)),
        // Plain addresses rather than mDNS names in host candidates, as the Chromes have.
        (
            "media.peerconnection.ice.obfuscate_host_addresses",
            json!(false),
        ),
        // Updates of Firefox, its add-ons, its search engines, its media plugins (OpenH264).
        ("app.update.enabled", json!(false)),
        ("app.update.auto", json!(false)),
        ("app.update.checkInstallTime", json!(false)),
        ("app.update.disabledForTesting", json!(true)),
        ("extensions.update.enabled", json!(false)),
        ("extensions.getAddons.cache.enabled", json!(false)),
        ("extensions.blocklist.enabled", json!(false)),
        ("extensions.systemAddon.update.enabled", json!(false)),
        ("browser.search.update", json!(false)),
        ("media.gmp-manager.updateEnabled", json!(false)),
        ("media.gmp-gmpopenh264.autoupdate", json!(false)),
        ("media.gmp-widevinecdm.autoupdate", json!(false)),
        // Safe browsing's lists.
        ("browser.safebrowsing.malware.enabled", json!(false)),
        ("browser.safebrowsing.phishing.enabled", json!(false)),
        ("browser.safebrowsing.blockedURIs.enabled", json!(false)),
        ("browser.safebrowsing.downloads.enabled", json!(false)),
        (
            "browser.safebrowsing.downloads.remote.enabled",
            json!(false),
        ),
        ("browser.safebrowsing.update.enabled", json!(false)),
        // Telemetry, health reports, studies.
        ("datareporting.healthreport.uploadEnabled", json!(false)),
        ("datareporting.policy.dataSubmissionEnabled", json!(false)),
        ("datareporting.usage.uploadEnabled", json!(false)),
        ("toolkit.telemetry.enabled", json!(false)),
        ("toolkit.telemetry.unified", json!(false)),
        ("toolkit.telemetry.archive.enabled", json!(false)),
        ("app.normandy.enabled", json!(false)),
        ("app.shield.optoutstudies.enabled", json!(false)),
        // The checks for a captive portal and for being online.
        ("network.captive-portal-service.enabled", json!(false)),
        ("network.connectivity-service.enabled", json!(false)),
        // Speculative lookups and connections; DNS over HTTPS off for good (5).
        ("network.dns.disablePrefetch", json!(true)),
        ("network.prefetch-next", json!(false)),
        ("network.predictor.enabled", json!(false)),
        ("network.http.speculative-parallel-limit", json!(0)),
        ("network.trr.mode", json!(5)),
        // First-run pages, the default-browser check, remote settings, the region lookup,
        // Firefox accounts, the new-tab page.
        ("browser.shell.checkDefaultBrowser", json!(false)),
        ("browser.aboutwelcome.enabled", json!(false)),
        ("browser.startup.page", json!(0)),
        ("browser.startup.homepage", json!("about:blank")),
        ("browser.newtabpage.enabled", json!(false)),
        (
            "services.settings.server",
            json!("data:,#remote-settings-dummy/v1"),
        ),
        ("browser.region.update.enabled", json!(false)),
        ("browser.region.network.url", json!("")),
        ("identity.fxaccounts.enabled", json!(false)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The Firefox binary (`FIREFOX` overrides it).
pub fn firefox_path() -> String {
    std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".to_owned())
}

/// The geckodriver binary (`GECKODRIVER` overrides it).
pub fn geckodriver_path() -> String {
    std::env::var("GECKODRIVER").unwrap_or_else(|_| "geckodriver".to_owned())
}

/// One geckodriver on a free loopback port, for one Firefox session: a geckodriver serves a
/// single session at a time, so each page has its own. It runs in a process group of its own,
/// which the Firefox it starts (and that browser's content processes) share: dropping the
/// driver kills the whole group, so a failing test leaves no browser behind, and removes the
/// directory of the browser's temporary profile.
pub struct Gecko {
    child: Child,
    url: String,
    profiles: PathBuf,
}

impl Gecko {
    /// Starts geckodriver on this machine's loopback.
    pub async fn start() -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let profiles = std::env::temp_dir().join(format!(
            "e2e-firefox-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profiles).expect("a directory for Firefox's profile");
        let port = free_port();
        let path = geckodriver_path();
        let child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Firefox's WebDriver BiDi port: any free one (the default, 9222, is one for all).
            .args(["--websocket-port", "0"])
            .arg("--profile-root")
            .arg(&profiles)
            // A release build takes the remote-settings server of the prefs (a data: URL that
            // leads nowhere) only with this; without it, it looks up Mozilla's.
            .env("MOZ_REMOTE_SETTINGS_DEVTOOLS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e} (run scripts/setup.sh --test)"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles,
        }
    }

    /// The session of this geckodriver: a new headless Firefox with [`firefox_prefs`], whose
    /// pages get the connection watch of Chrome's (`window.__pcLog`, printed by a failing
    /// wait). Waits for geckodriver to listen. Call it once per driver.
    pub async fn browser(&self) -> Client {
        let caps = json!({
            "browserName": "firefox",
            // A WebDriver BiDi connection as well, for the watch.
            "webSocketUrl": true,
            "moz:firefoxOptions": {
                "binary": firefox_path(),
                "args": ["-headless"],
                "prefs": firefox_prefs(),
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let started = Instant::now();
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&self.url).await {
                Ok(client) => {
                    let bidi = client
                        .capabilities()
                        .and_then(|caps| caps.get("webSocketUrl"))
                        .and_then(Value::as_str)
                        .expect("Firefox offers WebDriver BiDi")
                        .to_owned();
                    preload(&bidi, connection_watch_js()).await;
                    return client;
                }
                // geckodriver takes a moment to listen.
                Err(_) if started.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no Firefox session from geckodriver at {}: {err}", self.url),
            }
        }
    }
}

impl Drop for Gecko {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// Has the session behind the WebDriver BiDi WebSocket at `bidi` run `script` in every page
/// before the page's own scripts (`script.addPreloadScript`: what Chrome's DevTools call
/// `Page.addScriptToEvaluateOnNewDocument`). The script stays with the session after the
/// WebSocket closes.
async fn preload(bidi: &str, script: &str) {
    let (mut socket, _) = tokio_tungstenite::connect_async(bidi)
        .await
        .unwrap_or_else(|e| panic!("no WebDriver BiDi at {bidi}: {e}"));
    let command = json!({
        "id": 1,
        "method": "script.addPreloadScript",
        "params": { "functionDeclaration": format!("() => {{ {script} }}") },
    });
    socket
        .send(Message::text(command.to_string()))
        .await
        .expect("send the preload script");
    let answered = tokio::time::timeout(PATIENCE, async {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("BiDi speaks JSON");
            if reply["id"] == 1 {
                return reply;
            }
        }
        Value::Null
    })
    .await
    .expect("an answer to the preload script");
    assert_eq!(
        answered["type"], "success",
        "the preload script was refused: {answered}"
    );
    let _ = socket.close(None).await;
}

/// A headless Firefox with a geckodriver of its own: keep the driver as long as the page.
pub async fn firefox() -> (Gecko, Client) {
    let gecko = Gecko::start().await;
    let page = gecko.browser().await;
    (gecko, page)
}
