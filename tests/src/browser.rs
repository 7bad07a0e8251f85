//! Real headless Chrome pages driven through chromedriver, and what the tests read from them.

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use fantoccini::{wd::WebDriverCompatibleCommand, Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// How long any one thing may take before a test gives up on it. Generous: shared machines.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The flags every test browser gets: headless, a fake camera and microphone granted without
/// asking, and none of Chrome's own traffic (updates, sync, safe browsing) on the network.
pub const CHROME_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// Flags for calls over loopback only: gather candidates on loopback, with plain addresses
/// rather than mDNS names.
pub const LOOPBACK_ARGS: [&str; 2] = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("port").port()
}

/// A chromedriver on a free loopback port. It runs in a process group of its own, which the
/// Chrome instances it starts share: dropping the driver kills the whole group, so a failing
/// test leaves no browser behind.
pub struct Driver {
    child: Child,
    url: String,
}

/// The chromedriver binary (`CHROMEDRIVER` overrides it).
pub fn chromedriver_path() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned())
}

impl Driver {
    /// Starts chromedriver on this machine's loopback.
    pub async fn start() -> Self {
        let port = free_port();
        let path = chromedriver_path();
        let child = Command::new(&path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e} (run scripts/setup.sh --test)"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chrome with [`CHROME_ARGS`] and [`LOOPBACK_ARGS`].
    pub async fn browser(&self) -> Client {
        self.browser_changed(&[], &[]).await
    }

    /// [`Driver::browser`] without the flags `drop` and with `add`: say, without the autoplay
    /// flag, or with the camera refused.
    pub async fn browser_changed(&self, drop: &[&str], add: &[&str]) -> Client {
        let args: Vec<String> = LOOPBACK_ARGS
            .iter()
            .chain(CHROME_ARGS.iter())
            .filter(|a| !drop.contains(a))
            .chain(add.iter())
            .map(|a| a.to_string())
            .collect();
        connect_browser(&self.url, &args).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

/// A Chrome DevTools command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
pub struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl Cdp {
    /// The DevTools method `cmd` with `params`.
    pub fn new(cmd: &'static str, params: Value) -> Self {
        Self { cmd, params }
    }
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Installed in every test page before its own scripts: keeps each `RTCPeerConnection` in
/// `window.__pcs` (for its stats) and notes what it does, as the browser sees it (descriptions with their ICE username fragments, signaling,
/// gathering and connection states, candidates), in `window.__pcLog`, and counts the offers
/// each one set as its local description (`pc.__offers`). A failing wait prints it
/// beside the engine's own trace. It also keeps the page's uncaught errors, failed loads and
/// unhandled rejections in `window.__pageErrors`, for a page that never got going.
const PC_WATCH_JS: &str = r#"(() => {
  const errors = window.__pageErrors = [];
  const at = () => Math.round(performance.now()) + ' ';
  window.addEventListener('error', (e) => {
    const el = e.target && e.target !== window ? e.target : null;
    errors.push(at() + (el ? 'failed to load ' + (el.src || el.href || el.tagName) : 'error: ' + e.message));
  }, true);
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    errors.push(at() + 'unhandled rejection: ' + (r && (r.stack || r.message) || r));
  });
  const PC = window.RTCPeerConnection;
  if (!PC) return;
  const log = window.__pcLog = [];
  const pcs = window.__pcs = [];
  const ids = new WeakMap();
  let next = 0;
  const note = (pc, what) => {
    log.push(Math.round(performance.now()) + ' pc' + ids.get(pc) + ' ' + what);
    if (log.length > 400) log.shift();
  };
  const ufrag = (d) => ((d && d.sdp || '').match(/a=ice-ufrag:(\S+)/) || [])[1];
  for (const name of ['setLocalDescription', 'setRemoteDescription']) {
    const set = PC.prototype[name];
    PC.prototype[name] = function (...args) {
      const which = name === 'setLocalDescription' ? 'localDescription' : 'remoteDescription';
      return set.apply(this, args).then(
        (r) => { const d = this[which];
                 if (name === 'setLocalDescription' && d && d.type === 'offer') this.__offers = (this.__offers || 0) + 1;
                 note(this, name + ' ' + (d ? d.type + ' ufrag ' + ufrag(d) : 'none')); return r; },
        (e) => { note(this, name + ' failed: ' + e); throw e; });
    };
  }
  const Watched = function (...args) {
    const pc = new PC(...args);
    ids.set(pc, next++);
    pcs.push(pc);
    for (const [event, state] of [['signalingstatechange', 'signalingState'],
        ['icegatheringstatechange', 'iceGatheringState'],
        ['iceconnectionstatechange', 'iceConnectionState'],
        ['connectionstatechange', 'connectionState']]) {
      pc.addEventListener(event, () => note(pc, state + ' ' + pc[state]));
    }
    pc.addEventListener('icecandidate', (e) => note(pc, e.candidate
      ? 'candidate ' + e.candidate.candidate.split(' ').slice(4, 8).join(' ') + ' ufrag ' + e.candidate.usernameFragment
      : 'candidates end'));
    pc.addEventListener('track', (e) => note(pc, 'track ' + e.track.kind));
    return pc;
  };
  Watched.prototype = PC.prototype;
  Object.setPrototypeOf(Watched, PC);
  window.RTCPeerConnection = Watched;
})();"#;

/// The connection watch of every Chrome page, for Firefox's pages too ([`crate::firefox`]).
pub(crate) fn connection_watch_js() -> &'static str {
    PC_WATCH_JS
}

/// A new browser session from the chromedriver at `url`, with Chrome started with `args`.
/// Waits for chromedriver to listen.
pub async fn connect_browser(url: &str, args: &[String]) -> Client {
    let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let caps = json!({ "goog:chromeOptions": { "binary": chrome, "args": args } });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let started = Instant::now();
    loop {
        let mut builder = ClientBuilder::new(HttpConnector::new());
        match builder.capabilities(caps.clone()).connect(url).await {
            Ok(client) => {
                client
                    .issue_cmd(Cdp::new(
                        "Page.addScriptToEvaluateOnNewDocument",
                        json!({ "source": PC_WATCH_JS }),
                    ))
                    .await
                    .expect("install the connection watch");
                return client;
            }
            // chromedriver takes a moment to listen.
            Err(_) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no browser session from chromedriver at {url}: {err}"),
        }
    }
}

/// Evaluates `script` in `page` until it returns something truthy, for up to `patience`;
/// returns that. On time-out the test fails with the page's status line and its call trace.
pub async fn wait_long(page: &Client, what: &str, script: &str, patience: Duration) -> Value {
    let mut values = wait_pages(&[("page", page)], what, script, patience).await;
    values.pop().unwrap_or(Value::Null)
}

/// [`wait_long`] on several pages at once, until `script` is truthy on every one of them. On
/// time-out every page's status line and call trace is printed (and kept in a file: a test
/// run's output may be cut), so that both sides of a call can be read.
pub async fn wait_pages(
    pages: &[(&str, &Client)],
    what: &str,
    script: &str,
    patience: Duration,
) -> Vec<Value> {
    let started = Instant::now();
    let mut values = vec![Value::Null; pages.len()];
    loop {
        for ((_, page), value) in pages.iter().zip(values.iter_mut()) {
            if truthy(value) {
                continue;
            }
            *value = page.execute(script, vec![]).await.expect("script runs");
        }
        if values.iter().all(truthy) {
            return values;
        }
        if started.elapsed() > patience {
            let mut says = Vec::new();
            for ((label, page), value) in pages.iter().zip(&values) {
                let (state, text) = status_of(page).await;
                let log = page
                    .execute("return (window.__callLog || []).join('\\n')", vec![])
                    .await
                    .unwrap_or(Value::Null);
                let log = log.as_str().unwrap_or("");
                let kept = std::env::temp_dir()
                    .join(format!("e2e-call-log-{}-{label}.txt", std::process::id()));
                let _ = std::fs::write(&kept, log);
                eprintln!(
                    "[{label}] the call engine's last steps (all of them in {}):\n{log}",
                    kept.display()
                );
                let pcs = page
                    .execute(
                        "return window.__pcLog ? window.__pcLog.join('\\n') : null",
                        vec![],
                    )
                    .await
                    .unwrap_or(Value::Null);
                match pcs.as_str() {
                    Some(pcs) => {
                        eprintln!("[{label}] its connections, as the browser saw them:\n{pcs}")
                    }
                    // The watch is installed by Driver::browser and Gecko::browser only.
                    None => eprintln!("[{label}] its connections: not watched in this page"),
                }
                let video = page
                    .execute(&format!("{VIDEO_FRAMES_FN} {VIDEO_FACTS}"), vec![])
                    .await
                    .unwrap_or(Value::Null);
                eprintln!("[{label}] remote videos: {video}");
                let loaded = page
                    .execute(PAGE_FACTS, vec![])
                    .await
                    .unwrap_or(Value::Null);
                eprintln!("[{label}] errors and loads: {loaded}");
                let done = if truthy(value) { "done" } else { "waiting" };
                says.push(format!("{label} ({done}) says [{state}] {text}"));
            }
            panic!("timed out waiting for {what}; {}", says.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// The function of `VIDEO_FRAMES_FN`, as a literal for `concat!`.
macro_rules! video_frames_js {
    () => {
        "(v) => v.mozPaintedFrames !== undefined
            ? v.mozPaintedFrames : v.getVideoPlaybackQuality().totalVideoFrames"
    };
}

/// Defines `videoFrames(video)`: the frames `video` has shown so far. Chrome counts them in
/// `getVideoPlaybackQuality()`; headless Firefox leaves that at 0 and counts painted frames in
/// its own `mozPaintedFrames`.
pub const VIDEO_FRAMES_FN: &str = concat!("const videoFrames = ", video_frames_js!(), ";");

/// What each `<video>` shows, for a failing test's report.
const VIDEO_FACTS: &str = "return [...document.querySelectorAll('video')].map(v => ({
    id: v.id, peer: v.dataset.peer, paused: v.paused, ready: v.readyState,
    frames: videoFrames(v), size: v.videoWidth + 'x' + v.videoHeight,
    stream: v.srcObject && v.srcObject.id,
    tracks: v.srcObject ? v.srcObject.getTracks().map(t => t.kind + ':' + t.readyState
        + (t.muted ? ':muted' : '')) : [] }));";

/// The page's uncaught errors, and what it loaded (file, ms from start to end, HTTP status: 0
/// when the connection failed), for a page that stayed at "Loading…".
const PAGE_FACTS: &str = "return { errors: window.__pageErrors || [],
    loads: performance.getEntriesByType('resource').map(r =>
        r.name.split('/').pop() + ' ' + Math.round(r.startTime) + '-' + Math.round(r.responseEnd)
        + ' status ' + r.responseStatus) };";

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// [`wait_long`] with [`PATIENCE`].
pub async fn wait_for(page: &Client, what: &str, script: &str) -> Value {
    wait_long(page, what, script, PATIENCE).await
}

/// The status line: its `data-state` and its text.
pub async fn status_of(page: &Client) -> (String, String) {
    let v = page
        .execute(
            "const s = document.getElementById('status');
             return s ? [s.dataset.state, s.textContent] : ['', 'no status line'];",
            vec![],
        )
        .await
        .unwrap_or(Value::Null);
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_str().unwrap_or_default().to_owned(),
    )
}

/// Defines `frames()`: decoded frames in the page's remote video so far (0 without a stream),
/// in Chrome or Firefox.
pub const REMOTE_FRAMES_FN: &str = concat!(
    "const frames = () => { const v = document.getElementById('remoteVideo');
        return v.srcObject ? (",
    video_frames_js!(),
    ")(v) : 0; };"
);

/// Decoded frames in the page's remote video so far.
pub async fn frames(page: &Client) -> u64 {
    page.execute(&format!("{REMOTE_FRAMES_FN} return frames();"), vec![])
        .await
        .expect("script runs")
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `page`'s status line is in `state` (`data-state`: `waiting`, `connected`, ...).
pub async fn wait_for_state(page: &Client, what: &str, state: &str) {
    let script = format!("return document.getElementById('status').dataset.state === '{state}'");
    wait_for(page, what, &script).await;
}

/// Waits until `page` has noticed that the other person left: no remote video, and waiting
/// in the room again.
pub async fn wait_until_alone(page: &Client, what: &str) {
    wait_for(
        page,
        what,
        "return document.getElementById('remoteVideo').srcObject === null
            && document.getElementById('status').dataset.state === 'waiting'",
    )
    .await;
}

/// Waits until the remote video has decoded more than `before` frames.
pub async fn frames_beyond(page: &Client, before: u64) {
    let script = format!("{REMOTE_FRAMES_FN} return frames() > {before};");
    wait_for(page, "remote video frames", &script).await;
}

/// The `data-path` of `#connectionPath` once the page shows one: `host`, `srflx`, `prflx` or
/// `relay`.
pub async fn connection_path(page: &Client) -> String {
    let value = wait_for(
        page,
        "the connection path",
        "return document.getElementById('connectionPath').dataset.path",
    )
    .await;
    value.as_str().unwrap_or_default().to_owned()
}

/// Opens `/#true` on `caller` while `callee` waits at `url`; returns the milliseconds from
/// opening the caller's page to decoded frames on both sides.
pub async fn call(callee: &Client, caller: &Client, url: &str) -> u128 {
    call_between(callee, url, caller, url).await
}

/// [`call`] with each page at an address of its own (two relay instances of one room, say):
/// `callee` waits at `callee_url`, then `caller` opens `caller_url#true`.
pub async fn call_between(
    callee: &Client,
    callee_url: &str,
    caller: &Client,
    caller_url: &str,
) -> u128 {
    callee.goto(callee_url).await.expect("open the callee page");
    wait_for_state(callee, "the callee to wait in the room", "waiting").await;
    let opened = Instant::now();
    caller
        .goto(&format!("{caller_url}#true"))
        .await
        .expect("open the caller page");
    frames_beyond(caller, 0).await;
    frames_beyond(callee, 0).await;
    opened.elapsed().as_millis()
}

/// The address of a relay to open pages at, as a URL base: `http://127.0.0.1:PORT`.
pub fn base_url(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

/// Saves what `page` shows, at `width` x `height` CSS pixels, as `docs/screenshots/NAME.png`:
/// the README and the docs show the page in its main states from these.
pub async fn screenshot(page: &Client, name: &str, width: u32, height: u32) {
    page.set_window_size(width, height)
        .await
        .expect("set the window size");
    // Let the layout settle at the new size.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = page.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

/// Waits until both pages show a verification code (`#verifyCode`) and returns it; both must
/// show the same one.
pub async fn same_code(a: &Client, b: &Client) -> String {
    let script = "const v = document.getElementById('verifyCode');
        return v && v.dataset.code ? v.dataset.code : '';";
    let codes = wait_pages(
        &[("a", a), ("b", b)],
        "the verification codes",
        script,
        PATIENCE,
    )
    .await;
    let codes: Vec<&str> = codes
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    assert_eq!(codes[0], codes[1], "the two sides show different codes");
    assert_eq!(codes[0].split(' ').count(), 5, "five symbols: {codes:?}");
    codes[0].to_owned()
}

/// Defines `tiles()`: per remote tile, `[data-conn, decoded frames]`, in Chrome or Firefox.
pub const TILES_FN: &str = concat!(
    "const tiles = () => [...document.querySelectorAll('#remotes figure[data-conn]')]
        .map(f => { const v = f.querySelector('video');
                    return [f.dataset.conn, v.srcObject ? (",
    video_frames_js!(),
    ")(v) : 0]; });"
);

/// Waits until `page` shows `n` remote tiles that all decode video; returns their connections.
pub async fn decoding_everyone(page: &Client, n: usize) -> Vec<String> {
    wait_for(page, &format!("{n} remote tiles with frames"), &decoding(n)).await;
    tile_frames(page)
        .await
        .into_iter()
        .map(|(conn, _)| conn)
        .collect()
}

/// A script that is true when the page shows `n` remote tiles that all decode video.
pub fn decoding(n: usize) -> String {
    format!("{TILES_FN} const t = tiles(); return t.length === {n} && t.every(([, f]) => f > 0);")
}

/// `(data-conn, decoded frames)` of each remote tile of `page`.
pub async fn tile_frames(page: &Client) -> Vec<(String, u64)> {
    let value = page
        .execute(&format!("{TILES_FN} return tiles();"), vec![])
        .await
        .expect("script runs");
    conn_counts(&value)
}

/// `[[data-conn, count], ...]` from a page's script as pairs (a missing count reads 0).
pub fn conn_counts(value: &Value) -> Vec<(String, u64)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t[0].as_str().unwrap_or_default().to_owned(),
                t[1].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Types `text` into the chat of `pages[from]` and sends it with Enter; every other page shows
/// it once, as text, marked with the sender's relay id.
pub async fn chat(pages: &[Client], from: usize, text: &str) {
    let sender = &pages[from];
    let input = sender
        .find(Locator::Id("chatInput"))
        .await
        .expect("the chat field");
    input
        .send_keys(&format!("{text}\u{e007}"))
        .await
        .expect("type and press Enter");
    // The sender's own line appears once the text is taken (the field's keys are events).
    let own = format!(
        "return [...document.querySelectorAll('#chatLog p[data-from=\"me\"] span')]
            .some(s => s.textContent === {text:?});"
    );
    wait_for(sender, &format!("the sender's own line {text:?}"), &own).await;
    let script = format!(
        "const lines = [...document.querySelectorAll('#chatLog p')]
            .filter(p => p.dataset.from !== 'me' && p.querySelector('span').textContent === {text:?});
         return lines.length === 1 && !lines[0].querySelector('span b') ? lines[0].dataset.from : '';"
    );
    for (n, page) in pages.iter().enumerate() {
        if n != from {
            wait_for(page, &format!("the chat message {text:?}"), &script).await;
        }
    }
}

/// The last `last` lines of `page`'s call log (`window.__callLog`) that match the JavaScript
/// regular expression `pattern`, with the status line first: what the tests print when a call
/// did something a person would notice.
pub async fn call_log(page: &Client, pattern: &str, last: usize) -> String {
    let script = format!(
        "return [document.getElementById('status').textContent].concat((window.__callLog || [])
            .filter(l => /{pattern}/.test(l)).slice(-{last})).join('\\n')"
    );
    page.execute(&script, vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What closed or opened a connection on `page`, and why: the lines to print when a call was
/// rebuilt where it should have stayed.
pub const CLOSED_OR_OPENED: &str =
    "Failed|Close|Open|HangUp|PeerLeft|PeerJoined|Welcome|RelayLost|State|Lost";
