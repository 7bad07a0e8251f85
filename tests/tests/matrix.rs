//! Rooms in every join order: real headless Chrome pages opening a room's link with `#true` or
//! without, at once or one second apart, through the real relay. Every page must decode every
//! other, and a steady call must stay quiet: over [`STEADY`] no connection makes more than one
//! offer (a call that renegotiates forty times a second works, and is broken).
//!
//! `MATRIX_RUNS=N` repeats the whole matrix N times (a flaky order is a bug, not noise);
//! `MATRIX_ONLY=TEXT` runs the orders whose label contains TEXT (`[#true / #true] 0 ms`);
//! `MATRIX_PATIENCE_S=N` fails a room not meshed within N s, with every page's logs.

use std::time::{Duration, Instant};

use e2e::{
    browser::{call_log, conn_counts, wait_pages, Driver},
    relay,
};
use fantoccini::Client;
use serde_json::Value;

/// The tests of this file take turns: each runs four Chromes, and on two cores eight at once
/// would make their waits flaky.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The call-log lines that tell a connection's exchanges and its end.
const EXCHANGES: &str =
    "Open|Close|Failed|HangUp|PeerLeft|PeerJoined|MakeOffer|ApplyOffer|ApplyAnswer|Offer \\{|Answer \\{|State\\(|RestartIce|Lost";

/// How long a call must stay quiet once everybody decodes everybody.
const STEADY: Duration = Duration::from_secs(10);

/// How long a room may take to connect everybody: generous, two cores run every page.
const MESH_PATIENCE: Duration = Duration::from_secs(45);

/// [`MESH_PATIENCE`], or `MATRIX_PATIENCE_S` seconds (a short one shows a slow room's logs).
fn patience() -> Duration {
    std::env::var("MATRIX_PATIENCE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(MESH_PATIENCE, Duration::from_secs)
}

/// True when the page shows `n` remote tiles that all decode video.
fn decoding(n: usize) -> String {
    format!(
        "const t = [...document.querySelectorAll('#remotes figure[data-conn]')]
            .filter(f => !f.hidden);
         return t.length === {n} && t.every(f => {{ const v = f.querySelector('video');
             return v.srcObject && v.getVideoPlaybackQuality().totalVideoFrames > 0; }});"
    )
}

/// Per remote tile of a page: `[data-conn, offers made on it]`, as the engine counts them, and
/// the offers the browser itself set (`setLocalDescription` of an offer, per connection, from
/// the watch every test page gets).
const OFFERS: &str = "return {
    engine: [...document.querySelectorAll('#remotes figure[data-conn]')]
        .map(f => [f.dataset.conn, Number(f.dataset.offers || 0)]),
    browser: (window.__pcs || []).map(pc => pc.__offers || 0) };";

/// The offers made so far on `page`: the engine's per tile, the browser's per connection.
async fn offers(page: &Client) -> (Vec<(String, u64)>, Vec<u64>) {
    let v = page.execute(OFFERS, vec![]).await.expect("script runs");
    let engine = conn_counts(&v["engine"]);
    let browser = v["browser"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n.as_u64().unwrap_or(0))
        .collect();
    (engine, browser)
}

/// How a room is opened: `#true` or not per page, and the pause between pages.
#[derive(Clone, Debug)]
struct Order {
    callers: Vec<bool>,
    apart: Duration,
}

impl Order {
    fn label(&self) -> String {
        let pages: Vec<&str> = self
            .callers
            .iter()
            .map(|&c| if c { "#true" } else { "/" })
            .collect();
        format!("[{}] {} ms apart", pages.join(" "), self.apart.as_millis())
    }
}

/// Opens `order` in `room` on `pages` (one browser each), waits until every page decodes every
/// other, then watches [`STEADY`] of the call. Returns the ms to a full mesh and the most
/// offers any one connection made while steady; panics (with every page's call log) when the
/// mesh never forms.
async fn run_room(pages: &[Client], base: &str, room: &str, order: &Order) -> (u128, u64) {
    let n = order.callers.len();
    let started = Instant::now();
    let urls: Vec<String> = order
        .callers
        .iter()
        .map(|&caller| format!("{base}/?room={room}{}", if caller { "#true" } else { "" }))
        .collect();
    if order.apart.is_zero() {
        // Every page asked for at the same moment.
        let opening: Vec<_> = pages
            .iter()
            .zip(&urls)
            .map(|(page, url)| {
                let (page, url) = (page.clone(), url.clone());
                tokio::spawn(async move { page.goto(&url).await })
            })
            .collect();
        for opened in opening {
            opened.await.expect("the task runs").expect("open a page");
        }
    } else {
        for (index, (page, url)) in pages.iter().zip(&urls).enumerate() {
            if index > 0 {
                tokio::time::sleep(order.apart).await;
            }
            page.goto(url).await.expect("open a page");
        }
    }
    let labels: Vec<String> = (0..n).map(|i| format!("page {i}")).collect();
    let named: Vec<(&str, &Client)> = labels.iter().map(|l| l.as_str()).zip(pages).collect();
    wait_pages(
        &named,
        &format!("{}: every page decoding every other", order.label()),
        &decoding(n - 1),
        patience(),
    )
    .await;
    let mesh_ms = started.elapsed().as_millis();

    let mut before = Vec::new();
    for page in pages {
        before.push(offers(page).await);
    }
    tokio::time::sleep(STEADY).await;
    let mut worst = 0;
    for (index, (page, (engine_before, browser_before))) in pages.iter().zip(&before).enumerate() {
        let (engine_after, browser_after) = offers(page).await;
        for (conn, after) in &engine_after {
            let was = engine_before
                .iter()
                .find(|(c, _)| c == conn)
                .map_or(0, |(_, o)| *o);
            worst = worst.max(after - was);
        }
        for (pc, after) in browser_after.iter().enumerate() {
            let was = browser_before.get(pc).copied().unwrap_or(0);
            worst = worst.max(after - was);
        }
        // Still everybody, after the quiet time.
        let still = page
            .execute(&decoding(n - 1), vec![])
            .await
            .expect("script runs");
        if still != Value::Bool(true) {
            let tiles = page
                .execute(
                    "return [...document.querySelectorAll('#remotes figure')].map(f => {
                        const v = f.querySelector('video');
                        return [f.dataset.conn, f.dataset.state, f.hidden, v.srcObject ? v.srcObject.id : null,
                                v.srcObject ? v.getVideoPlaybackQuality().totalVideoFrames : 0]; });",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            eprintln!("[page {index}] tiles after the quiet time: {tiles}");
            let log = page
                .execute(
                    "return [document.getElementById('status').textContent].concat((window.__callLog || [])
                        .filter(l => /Failed|Close|HangUp|PeerLeft|State|Welcome|RelayLost/.test(l))
                        .slice(-30)).join('\\n')",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            eprintln!(
                "[page {index}] status and what closed:\n{}",
                log.as_str().unwrap_or("")
            );
            eprintln!("[page {index}] {}", connections(page).await);
            // The page that lost a tile may only have followed another that rebuilt its
            // connection first (an offer from a new connection does not fit the old one):
            // what every page did, in time order, names the first.
            for (other, page) in pages.iter().enumerate() {
                eprintln!(
                    "[page {other}] offers, answers, failures and closes:\n{}",
                    call_log(page, EXCHANGES, 80).await
                );
            }
            panic!("{}: page {index} lost a tile while steady", order.label());
        }
    }
    if worst == 1 {
        // Allowed, but worth a look: what made it.
        for (index, page) in pages.iter().enumerate() {
            let log = page
                .execute(
                    "return (window.__callLog || []).filter(l => /MakeOffer|RestartIce|State|Media|Online|Negotiation|Timer\\(|AnswerApplied|ApplyOffer|offer: false/.test(l))
                        .slice(-30).join('\\n')",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            eprintln!(
                "[page {index}] offers, restarts and states:\n{}",
                log.as_str().unwrap_or("")
            );
        }
    }
    if worst > 1 {
        for (index, page) in pages.iter().enumerate() {
            eprintln!("[page {index}] {}", connections(page).await);
            let log = page
                .execute(
                    "return (window.__callLog || []).slice(-40).join('\\n')",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            eprintln!(
                "[page {index}] the engine's last steps:\n{}",
                log.as_str().unwrap_or("")
            );
        }
    }
    (mesh_ms, worst)
}

/// What the browser holds of each connection of `page`: signaling state, offers set, and per
/// transceiver its mid, direction, current direction and whether it sends a track; and the
/// m-lines of the local and remote descriptions. For a failing order's report.
async fn connections(page: &Client) -> String {
    const FACTS: &str = "return (window.__pcs || []).map((pc, i) => {
        const mlines = (d) => d ? d.sdp.split('\\r\\n').filter(l => l.startsWith('m=') ||
            l.startsWith('a=mid') || /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))
            .join(' ') : 'none';
        return 'pc' + i + ' ' + pc.signalingState + ' ' + pc.connectionState + ' offers '
            + (pc.__offers || 0) + '\\n  transceivers: ' + pc.getTransceivers().map(t =>
            (t.mid === null ? 'no-mid' : 'mid ' + t.mid) + ' ' + t.receiver.track.kind + ' '
            + t.direction + '/' + t.currentDirection + (t.sender.track ? ' track' : '')
            + (t.stopped ? ' stopped' : '')).join('; ')
            + '\\n  local: ' + mlines(pc.currentLocalDescription)
            + '\\n  remote: ' + mlines(pc.currentRemoteDescription);
    }).join('\\n');";
    page.execute(FACTS, vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The orders: rooms of 3 in all 8 patterns of `#true` / no hash, opened at once and one
/// second apart; rooms of 4 in four patterns.
fn orders() -> Vec<Order> {
    let mut orders = Vec::new();
    for apart in [Duration::ZERO, Duration::from_secs(1)] {
        for pattern in 0..8u32 {
            orders.push(Order {
                callers: (0..3).map(|i| pattern & (1 << (2 - i)) != 0).collect(),
                apart,
            });
        }
    }
    for (callers, apart) in [
        ([false, false, false, false], 0),
        ([true, false, true, false], 1),
        ([false, true, false, true], 0),
        ([true, true, true, true], 1),
    ] {
        orders.push(Order {
            callers: callers.to_vec(),
            apart: Duration::from_secs(apart),
        });
    }
    orders
}

fn median(values: &mut [u128]) -> u128 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_connects_everybody_and_stays_quiet() {
    let _turn = CHROME_TURN.lock().await;
    let runs: usize = std::env::var("MATRIX_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let base = format!("http://{relay}");
    let driver = Driver::start().await;
    let mut room = 0;
    let mut times: [Vec<u128>; 5] = Default::default();
    let mut worst_offers = 0;
    let mut failures = Vec::new();
    for run in 0..runs {
        // `MATRIX_ONLY=TEXT`: only the orders whose label contains it (for a look at one).
        let only = std::env::var("MATRIX_ONLY").unwrap_or_default();
        for order in orders().into_iter().filter(|o| o.label().contains(&only)) {
            room += 1;
            let n = order.callers.len();
            // A browser that dies while opening its page (Chrome's renderer crashing under the
            // load of four starting at once on two cores) fails the test harness, not the
            // call: the room is opened once more, with new browsers, and says so.
            for attempt in 0..2 {
                // New browsers for every room, as people opening a link: a Chrome that opened
                // the fake camera in several rooms in a row sometimes gets a single frame.
                let mut browsers = Vec::new();
                for _ in 0..n {
                    browsers.push(driver.browser().await);
                }
                // In a task of its own, so that one order's failure (with its report) does
                // not hide how the others go.
                let outcome = tokio::spawn({
                    let (pages, base, order) = (browsers.clone(), base.clone(), order.clone());
                    async move {
                        run_room(&pages, &base, &format!("order{room}-{attempt}"), &order).await
                    }
                })
                .await;
                for page in browsers {
                    let _ = page.close().await;
                }
                match outcome {
                    Ok((ms, worst)) => {
                        println!(
                            "run {run}: {}: full mesh in {ms} ms; most offers on one connection \
                             while steady: {worst}",
                            order.label()
                        );
                        if worst > 1 {
                            failures.push(format!(
                                "{}: a connection made {worst} offers in {} s of a steady call",
                                order.label(),
                                STEADY.as_secs()
                            ));
                        }
                        worst_offers = worst_offers.max(worst);
                        times[n].push(ms);
                    }
                    Err(err) => {
                        let why = err
                            .try_into_panic()
                            .ok()
                            .and_then(|p| {
                                p.downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            })
                            .unwrap_or_default();
                        if attempt == 0 && why.starts_with("open a page") {
                            println!(
                                "run {run}: {}: a browser died opening its page; opening the room again",
                                order.label()
                            );
                            continue;
                        }
                        failures.push(format!("{}: no full mesh (see above)", order.label()));
                    }
                }
                break;
            }
        }
    }
    for size in [3, 4] {
        println!(
            "rooms of {size}: median {} ms to a full mesh over {} rooms",
            median(&mut times[size]),
            times[size].len()
        );
    }
    println!(
        "most offers on one connection in {} s of a steady call: {worst_offers}",
        STEADY.as_secs()
    );
    shutdown.cancel();
    assert!(
        failures.is_empty(),
        "failed orders:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_joining_a_running_call_joins_it_quietly() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let base = format!("http://{relay}");
    let driver = Driver::start().await;
    let mut pages = Vec::new();
    for _ in 0..4 {
        pages.push(driver.browser().await);
    }
    for (callers, label) in [
        ([false, true, false, true], "late #true"),
        ([true, false, true, false], "late /"),
    ] {
        let room = format!("late{}", label.len());
        let first = Order {
            callers: callers[..3].to_vec(),
            apart: Duration::ZERO,
        };
        run_room(&pages[..3], &base, &room, &first).await;
        // The fourth page joins the call under way.
        let started = Instant::now();
        let hash = if callers[3] { "#true" } else { "" };
        pages[3]
            .goto(&format!("{base}/?room={room}{hash}"))
            .await
            .expect("open the fourth page");
        let named: Vec<(&str, &Client)> = ["a", "b", "c", "d"].into_iter().zip(&pages).collect();
        wait_pages(
            &named,
            &format!("{label}: everybody decoding the newcomer"),
            &decoding(3),
            MESH_PATIENCE,
        )
        .await;
        println!(
            "{label}: the fourth page joined the call in {} ms",
            started.elapsed().as_millis()
        );
        for page in &pages {
            page.goto("about:blank").await.expect("leave the room");
        }
    }
    for page in pages {
        page.close().await.expect("close a browser");
    }
    shutdown.cancel();
}
