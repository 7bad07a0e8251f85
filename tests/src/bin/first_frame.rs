//! First frame, side by side: our page through our relay beside the original JavaScript page
//! through its socket.io relay (`../shared/anchors/seed-socketio`), in one run, alternating.
//!
//! Each run opens two fresh headless Chromes: the callee page first, then, once it waits in the
//! room, the caller page (`/#true`). The time is from opening the caller's page to decoded
//! frames in the remote video of both. The same script, injected into both pages before they
//! load, marks when each page reached each step (through the browser APIs both use: the
//! WebSocket, `getUserMedia`, `RTCPeerConnection`), so the two timelines are comparable.
//!
//! `bench/first-frame.sh` installs the seed relay's packages and runs this in a loopback-only
//! network namespace: `first-frame --seed-dir DIR [--runs N] [--baseline DIST]`. With
//! `--baseline DIST` the other side is not the seed page but our page as built in `DIST` (a
//! copy of an earlier `dist/`), served by a second relay of ours: two builds side by side.
//! With `CALL_LOG=1` it also prints our two pages' call logs (`window.__callLog`: each engine input and effect, stamped in ms);
//! with `LONG_TASKS=1`, each page's long tasks (main thread busy 50 ms or more: start and
//! length, ms) beside its marks; with `TRACE_HOLD=1` it keeps the browsers open 12 s after each
//! call, for a `CHROME` wrapper that records a `--trace-startup` trace to finish writing it.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use e2e::browser::{self, Cdp, Driver};
use fantoccini::Client;
use serde_json::{json, Value};

/// Marks each step a page reaches, in ms since its navigation started (`performance.now()`),
/// in `window.__marks`; runs before any script of the page.
const MARKS_JS: &str = r#"(() => {
  const marks = {};
  window.__marks = marks;
  const mark = (name) => { if (!(name in marks)) marks[name] = performance.now(); };
  document.addEventListener('DOMContentLoaded', () => mark('page loaded'));
  // Our page's code: the WebAssembly module compiled and instantiated (the seed has none).
  for (const f of ['instantiate', 'instantiateStreaming']) {
    const orig = WebAssembly[f];
    WebAssembly[f] = (...a) => orig(...a).then((r) => { mark('code ready'); return r; });
  }
  // The page's main thread busy for 50 ms or more: [start, length] in ms.
  window.__longTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        window.__longTasks.push([Math.round(e.startTime), Math.round(e.duration)]);
      }
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) {}
  const media = navigator.mediaDevices;
  if (media) {
    const gum = media.getUserMedia.bind(media);
    media.getUserMedia = (c) => { mark('camera asked'); return gum(c).then((s) => { mark('camera'); return s; }); };
  }
  const WS = window.WebSocket;
  const Wrapped = function (...args) {
    mark('relay asked');
    const ws = new WS(...args);
    ws.addEventListener('message', () => mark('joined'));
    return ws;
  };
  Wrapped.prototype = WS.prototype;
  Object.setPrototypeOf(Wrapped, WS);
  window.WebSocket = Wrapped;
  const PC = window.RTCPeerConnection;
  const description = (set, which) => function (...args) {
    return set.apply(this, args).then((r) => {
      const d = this[which];
      if (d) mark(d.type === 'offer' ? 'offer' : 'answer');
      return r;
    });
  };
  // The camera handed to a connection: added as a track (the seed page) or put on a
  // transceiver that is already negotiated (ours).
  const replace = RTCRtpSender.prototype.replaceTrack;
  RTCRtpSender.prototype.replaceTrack = function (t) {
    if (t && t.kind === 'video') mark('camera sent');
    return replace.call(this, t);
  };
  PC.prototype.setLocalDescription = description(PC.prototype.setLocalDescription, 'localDescription');
  PC.prototype.setRemoteDescription = description(PC.prototype.setRemoteDescription, 'remoteDescription');
  const Pc = function (...args) {
    mark('connection made');
    const pc = new PC(...args);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') mark('ICE connected');
    });
    const add = pc.addTrack.bind(pc);
    pc.addTrack = (t, ...rest) => { if (t.kind === 'video') mark('camera sent'); return add(t, ...rest); };
    return pc;
  };
  Pc.prototype = PC.prototype;
  Object.setPrototypeOf(Pc, PC);
  window.RTCPeerConnection = Pc;
  const poll = () => {
    const v = document.getElementById('remoteVideo');
    if (v && v.srcObject && v.getVideoPlaybackQuality().totalVideoFrames > 0) {
      mark('first frame');
    } else {
      setTimeout(poll, 5);
    }
  };
  poll();
})();"#;

/// The steps, in the order a call goes through them.
const STEPS: [&str; 12] = [
    "page loaded",
    "code ready",
    "camera asked",
    "camera",
    "camera sent",
    "relay asked",
    "joined",
    "connection made",
    "offer",
    "answer",
    "ICE connected",
    "first frame",
];

/// Which page and relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Ours,
    Seed,
    /// Our page as built in `--baseline DIST`.
    Baseline,
}

/// A page that only opens the camera, as both pages do first: how soon a fresh Chrome of this
/// machine hands out camera frames at all, the floor under either page's first frame.
const CAMERA_ONLY_HTML: &str = r#"<!doctype html><meta charset="utf-8"><title>camera</title>
<video id="localVideo" autoplay muted playsinline></video>
<script>
navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then((s) => {
  const v = document.getElementById('localVideo');
  v.srcObject = s;
  const poll = () => v.getVideoPlaybackQuality().totalVideoFrames > 0
    ? (window.__marks['first frame'] = performance.now()) : setTimeout(poll, 5);
  poll();
});
</script>"#;

/// Opens the camera-only page in a fresh Chrome `runs` times; the median of each step.
async fn camera_alone(driver: &Driver, base: &str, runs: usize) -> Vec<String> {
    let mut results = Vec::new();
    for _ in 0..runs {
        let page = page(driver).await;
        page.goto(base).await.expect("open the camera-only page");
        browser::wait_for(
            &page,
            "the camera's first frame",
            "return 'first frame' in (window.__marks || {});",
        )
        .await;
        let (_, marks) = marks(&page).await;
        results.push(Run {
            setup_ms: marks["first frame"].as_f64().unwrap_or(f64::NAN),
            caller: STEPS.iter().map(|s| marks[*s].as_f64()).collect(),
            callee: Vec::new(),
        });
        let _ = page.close().await;
    }
    timeline(&results.iter().collect::<Vec<_>>(), true)
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Seed => "seed (JS + socket.io)",
            Side::Baseline => "ours, baseline build",
        }
    }
}

/// One call: the setup time, and each page's steps in ms since the caller's page was opened.
struct Run {
    setup_ms: f64,
    caller: Vec<Option<f64>>,
    callee: Vec<Option<f64>>,
}

/// A fresh Chrome with the marks script installed.
async fn page(driver: &Driver) -> Client {
    let client = driver.browser().await;
    client
        .issue_cmd(Cdp::new(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": MARKS_JS }),
        ))
        .await
        .expect("install the marks script");
    client
}

/// `performance.timeOrigin` and the marks of `page`.
async fn marks(page: &Client) -> (f64, Value) {
    let v = page
        .execute(
            "return [performance.timeOrigin, window.__marks || {}];",
            vec![],
        )
        .await
        .expect("script runs");
    (v[0].as_f64().unwrap_or(0.0), v[1].clone())
}

async fn run_once(driver: &Driver, base: &str, side: Side) -> Run {
    let callee = page(driver).await;
    let caller = page(driver).await;
    callee
        .goto(&format!("{base}/"))
        .await
        .expect("open the callee");
    // Ready to be called: camera open and connected to its relay.
    browser::wait_for(
        &callee,
        "the callee to be ready",
        "const m = window.__marks || {}; return 'camera' in m && 'joined' in m;",
    )
    .await;
    if side != Side::Seed {
        browser::wait_for_state(&callee, "the callee to wait in the room", "waiting").await;
    }
    let opened = Instant::now();
    caller
        .goto(&format!("{base}/#true"))
        .await
        .expect("open the caller");
    for p in [&caller, &callee] {
        browser::wait_for(
            p,
            "the first frame",
            "return 'first frame' in (window.__marks || {});",
        )
        .await;
    }
    for (who, p) in [("caller", &caller), ("callee", &callee)] {
        if std::env::var("CALL_LOG").is_ok() && side != Side::Seed {
            let log = text_of(p, "return (window.__callLog || []).join('\\n');").await;
            eprintln!("== {who}\n{log}");
        }
        if std::env::var("LONG_TASKS").is_ok() {
            let tasks = text_of(
                p,
                "return JSON.stringify([window.__longTasks, window.__marks]);",
            )
            .await;
            eprintln!("long tasks, {} {who}: {tasks}", side.name());
        }
    }
    let (caller_origin, caller_marks) = marks(&caller).await;
    let (callee_origin, callee_marks) = marks(&callee).await;
    let at = |marks: &Value, origin: f64| -> Vec<Option<f64>> {
        STEPS
            .iter()
            .map(|s| marks[*s].as_f64().map(|t| origin + t - caller_origin))
            .collect()
    };
    let caller_steps = at(&caller_marks, caller_origin);
    let callee_steps = at(&callee_marks, callee_origin);
    // From opening the caller (its time origin) to the later of the two first frames.
    let first_frame = STEPS.len() - 1;
    let setup_ms = caller_steps[first_frame]
        .zip(callee_steps[first_frame])
        .map(|(a, b)| a.max(b))
        .unwrap_or_else(|| opened.elapsed().as_secs_f64() * 1000.0);
    if std::env::var("TRACE_HOLD").is_ok() {
        tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    }
    let _ = caller.close().await;
    let _ = callee.close().await;
    Run {
        setup_ms,
        caller: caller_steps,
        callee: callee_steps,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of each step over `runs`, for one page.
fn timeline(runs: &[&Run], caller: bool) -> Vec<String> {
    (0..STEPS.len())
        .map(|i| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| if caller { r.caller[i] } else { r.callee[i] })
                .collect();
            if values.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", median(values))
            }
        })
        .collect()
}

fn start_seed(dir: &PathBuf) -> (SocketAddr, tokio::process::Child) {
    let port = browser::free_port();
    let child = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node in {}: {e}", dir.display()));
    (SocketAddr::from(([127, 0, 0, 1], port)), child)
}

async fn wait_http(addr: SocketAddr) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < browser::PATIENCE,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `script` returns in `page`, as text (empty if it fails).
async fn text_of(page: &Client, script: &str) -> String {
    page.execute(script, vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A relay of ours on a free loopback port, serving the page in `dist`.
async fn serving(
    dist: PathBuf,
) -> (
    SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let config = server::Config {
        dist,
        ..server::Config::default()
    };
    e2e::relay::start_with(([127, 0, 0, 1], 0).into(), config).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut seed_dir = None;
    let mut runs = 8usize;
    let mut baseline: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed-dir" => seed_dir = args.next().map(PathBuf::from),
            "--baseline" => baseline = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            other => {
                panic!(
                    "unknown argument {other}; usage: \
                     first-frame --seed-dir DIR [--runs N] [--baseline DIST]"
                )
            }
        }
    }
    let seed_dir = seed_dir.expect("--seed-dir: the seed-socketio relay, its packages installed");
    let (ours, shutdown, _relay) = e2e::relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let (seed, _seed_child) = start_seed(&seed_dir);
    let camera_dir =
        std::env::temp_dir().join(format!("first-frame-camera-{}", std::process::id()));
    std::fs::create_dir_all(&camera_dir).expect("a directory for the camera-only page");
    std::fs::write(camera_dir.join("index.html"), CAMERA_ONLY_HTML).expect("the camera-only page");
    let (camera_only, _camera_shutdown, _camera_relay) = serving(camera_dir.clone()).await;
    wait_http(seed).await;
    // The side ours is compared with: the seed page, or an earlier build of ours.
    let baseline_relay = match baseline {
        Some(dist) => Some(serving(dist).await),
        None => None,
    };
    let (other, other_base) = match &baseline_relay {
        Some((addr, ..)) => (Side::Baseline, format!("http://{addr}")),
        None => (Side::Seed, format!("http://{seed}")),
    };
    let driver = Driver::start().await;
    // One warm-up call each, not counted: the first Chrome of a run pays for its disk cache.
    run_once(&driver, &format!("http://{ours}"), Side::Ours).await;
    run_once(&driver, &other_base, other).await;

    let mut results: Vec<(Side, Run)> = Vec::new();
    for i in 0..runs * 2 {
        // Alternate, starting with the other side every other pair.
        let side = if (i + i / 2) % 2 == 0 {
            other
        } else {
            Side::Ours
        };
        let base = match side {
            Side::Ours => format!("http://{ours}"),
            _ => other_base.clone(),
        };
        let run = run_once(&driver, &base, side).await;
        println!(
            "run {:>2} {:<22} {:>6.0} ms",
            i + 1,
            side.name(),
            run.setup_ms
        );
        results.push((side, run));
    }
    println!();
    println!(
        "Median ms since the caller's page was opened ({runs} runs each, alternating, fresh Chromes):"
    );
    println!(
        "{:<24}{}",
        "",
        STEPS.iter().map(|s| format!("{s:>16}")).collect::<String>()
    );
    let mut setups = Vec::new();
    for side in [other, Side::Ours] {
        let mine: Vec<&Run> = results
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, r)| r)
            .collect();
        for (caller, who) in [(true, "caller"), (false, "callee")] {
            let line: String = timeline(&mine, caller)
                .iter()
                .map(|v| format!("{v:>16}"))
                .collect();
            println!("{:<24}{line}", format!("{} {who}", side.name()));
        }
        let setup = median(mine.iter().map(|r| r.setup_ms).collect());
        setups.push(setup);
        println!(
            "{:<32}{setup:.0} ms (median), range {:.0}..{:.0}",
            format!("{} first frames:", side.name()),
            mine.iter()
                .map(|r| r.setup_ms)
                .fold(f64::INFINITY, f64::min),
            mine.iter().map(|r| r.setup_ms).fold(0.0, f64::max),
        );
    }
    let alone = camera_alone(&driver, &format!("http://{camera_only}/"), runs).await;
    let _ = std::fs::remove_dir_all(&camera_dir);
    println!(
        "{:<24}{}",
        "camera alone",
        alone.iter().map(|v| format!("{v:>16}")).collect::<String>()
    );
    println!(
        "\nours / {}: {:.2}x the other page's time to first frame on both sides",
        other.name(),
        setups[1] / setups[0]
    );
    // Runs go in pairs, one of each side, back to back: the median of the pairs' ratios
    // follows the machine's speed as it drifts during the run, which the ratio of the two
    // medians does not.
    let pairs: Vec<f64> = results
        .chunks(2)
        .filter_map(|pair| match pair {
            [(a, them), (Side::Ours, ours)] | [(Side::Ours, ours), (a, them)] if *a == other => {
                Some(ours.setup_ms / them.setup_ms)
            }
            _ => None,
        })
        .collect();
    let spread = pairs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    println!(
        "ours / {}, pair by pair: median {:.2}x over {} pairs (range {:.2}x..{:.2}x)",
        other.name(),
        median(pairs.clone()),
        pairs.len(),
        spread.0,
        spread.1
    );
    shutdown.cancel();
}
