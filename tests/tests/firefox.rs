//! Calls with real headless Firefox ESR pages in them, beside headless Chromium: the real relay
//! serving the real client bundle on 127.0.0.1, and the pages calling each other through it.
//! A second browser engine checks what one alone cannot: its own SDP, codecs, ICE and
//! autoplay, against the other's.
//!
//! Needs the release bundle in `dist/` (`make test` builds it), `geckodriver` and
//! `firefox-esr` beside `chromedriver` and `chromium` (`scripts/setup.sh --test` installs them;
//! `GECKODRIVER` / `FIREFOX` override the paths), and the namespace of
//! `scripts/loopback-only.sh`, whose veth pair gives Firefox a host address to gather: on
//! loopback alone it gathers no ICE candidate.

use std::time::Instant;

use e2e::{
    browser::{
        chat, connection_path, decoding, same_code, wait_for_state, wait_pages, Driver, PATIENCE,
    },
    firefox::firefox,
    relay,
};
use fantoccini::{Client, Locator};
use futures_util::future::join_all;

/// The tests of this file take turns: each runs two or three browsers, and on two cores more
/// at once would make their waits flaky.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A 1:1 call in `room`: `callee` waits, `caller` opens the page with `#true`. Checks frames on
/// both sides, a chat message each way, the same verification code on both pages, and that
/// hanging up on the caller's side ends the call on both.
async fn one_to_one(relay: std::net::SocketAddr, room: &str, callee: &Client, caller: &Client) {
    let url = format!("http://{relay}/?room={room}");
    let setup = e2e::browser::call(callee, caller, &url).await;
    let (callee_path, caller_path) = (connection_path(callee).await, connection_path(caller).await);
    println!(
        "{room}: {setup} ms from opening /#true to decoded frames on both sides \
         (paths: callee {callee_path}, caller {caller_path})"
    );
    for page in [callee, caller] {
        wait_for_state(page, "the connected status", "connected").await;
    }
    let code = same_code(callee, caller).await;
    println!("{room}: both pages show the code {code}");

    let pages = [callee.clone(), caller.clone()];
    chat(&pages, 0, &format!("hello from the callee of {room}")).await;
    chat(&pages, 1, &format!("hello from the caller of {room}")).await;

    caller
        .find(Locator::Id("hangupButton"))
        .await
        .expect("hang-up button")
        .click()
        .await
        .expect("click hang up");
    wait_pages(
        &[("callee", callee), ("caller", caller)],
        "the call to end on both sides",
        "return document.getElementById('remoteVideo').srcObject === null
            && document.getElementById('status').dataset.state === 'ended'",
        PATIENCE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_firefox_call_each_other_both_ways() {
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let driver = Driver::start().await;
    // Both browsers start at once: Firefox takes seconds.
    let (chrome, (_gecko, fox)) = tokio::join!(driver.browser(), firefox());

    // Firefox waits and Chromium calls: Chromium offers, Firefox answers.
    one_to_one(relay, "chromium-calls-firefox", &fox, &chrome).await;
    // Then the other way round, in a room of its own.
    one_to_one(relay, "firefox-calls-chromium", &chrome, &fox).await;

    chrome.close().await.expect("close Chromium");
    // Firefox is not closed: its driver, dropped at the end, kills it at once, where a clean
    // quit takes seconds.
    shutdown.cancel();
    println!("Chromium and Firefox: {} ms", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_firefox_pages_call_each_other() {
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let ((_gecko_a, a), (_gecko_b, b)) = tokio::join!(firefox(), firefox());

    one_to_one(relay, "firefox-calls-firefox", &a, &b).await;

    // The drivers, dropped at the end, kill both Firefoxes (a clean quit takes seconds).
    shutdown.cancel();
    println!("two Firefoxes: {} ms", started.elapsed().as_millis());
}

/// A browser for one page of a room.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Chromium,
    Firefox,
}

/// Opens a room of three, one page after the other, each page in `order` in its browser and
/// with its hash (`""` or `"#true"`), and waits until every page decodes the other two. A
/// failure prints every page's status, call trace and videos.
async fn room_of_three(room: &str, order: [(Engine, &str); 3]) {
    let started = Instant::now();
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    // The three browsers start at once: Firefox takes seconds.
    let started_browsers = join_all(order.iter().map(|(engine, _)| async {
        match engine {
            Engine::Chromium => (None, driver.browser().await),
            Engine::Firefox => {
                let (gecko, page) = firefox().await;
                (Some(gecko), page)
            }
        }
    }))
    .await;
    let (_geckos, pages): (Vec<_>, Vec<_>) = started_browsers.into_iter().unzip();
    let opened = Instant::now();
    for (page, (_, hash)) in pages.iter().zip(order) {
        page.goto(&format!("http://{relay}/?room={room}{hash}"))
            .await
            .expect("open a page");
    }
    let labels: Vec<String> = order
        .iter()
        .enumerate()
        .map(|(n, (engine, hash))| {
            format!(
                "{n}-{engine:?}{}",
                if hash.is_empty() { "" } else { "-caller" }
            )
        })
        .collect();
    let labelled: Vec<(&str, &Client)> = labels.iter().map(String::as_str).zip(&pages).collect();
    wait_pages(
        &labelled,
        &format!("{room}: every page decoding the other two"),
        &decoding(2),
        PATIENCE,
    )
    .await;
    println!(
        "{room}: {} ms from opening the first page until every page decodes the other two",
        opened.elapsed().as_millis()
    );
    // The Chromiums close; the Firefoxes' drivers, dropped at the end, kill them (a clean quit
    // takes seconds).
    for ((engine, _), page) in order.iter().zip(pages) {
        if let Engine::Chromium = engine {
            page.close().await.expect("close a page");
        }
    }
    shutdown.cancel();
    println!("{room}: {} ms in all", started.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_of_three_with_a_calling_firefox_between_two_chromiums() {
    let _turn = TURN.lock().await;
    room_of_three(
        "chromium-firefoxcalls-chromium",
        [
            (Engine::Chromium, ""),
            (Engine::Firefox, "#true"),
            (Engine::Chromium, ""),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_of_three_with_a_waiting_firefox_and_two_calling_chromiums() {
    let _turn = TURN.lock().await;
    room_of_three(
        "firefox-chromiumcalls-chromiumcalls",
        [
            (Engine::Firefox, ""),
            (Engine::Chromium, "#true"),
            (Engine::Chromium, "#true"),
        ],
    )
    .await;
}

/// The noise suppression switch in Firefox: the microphone the page uses is asked for the
/// browser's noise suppression and gain control off, then on again, echo cancellation on
/// throughout, as the track's own `getConstraints()` says. (Firefox's fake microphone reports
/// no processing in `getSettings()` whatever it is asked, seen here: `noiseSuppression`,
/// `autoGainControl` and `echoCancellation` all false from the start; so the constraints the
/// track holds are what can be checked. `incall.rs` checks the settings in Chromium.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_suppression_switches_the_microphone_in_firefox() {
    let _turn = TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let (_gecko, page) = firefox().await;
    page.goto(&format!("http://{relay}/?room=firefox-noise"))
        .await
        .expect("open the page");
    let asked = |state: &str, wanted: &str| {
        format!(
            "const v = document.getElementById('localVideo');
             const t = v.srcObject && v.srcObject.getAudioTracks()[0];
             if (!t || t.readyState !== 'live') return false;
             const c = t.getConstraints();
             return document.getElementById('noiseButton').getAttribute('aria-pressed') === '{state}'
                 && {wanted};"
        )
    };
    let wait = |what: &'static str, script: String| {
        let page = page.clone();
        async move {
            wait_pages(&[("firefox", &page)], what, &script, PATIENCE).await;
        }
    };
    // On, as browsers open a microphone (nothing asked of it yet).
    wait(
        "the microphone open, the switch on",
        asked("true", "c.noiseSuppression !== false"),
    )
    .await;
    let press = || async {
        page.find(Locator::Id("noiseButton"))
            .await
            .expect("the noise button")
            .click()
            .await
            .expect("click it");
    };
    press().await;
    wait(
        "the microphone asked for no noise suppression",
        asked(
            "false",
            "c.noiseSuppression === false && c.autoGainControl === false && c.echoCancellation === true",
        ),
    )
    .await;
    press().await;
    wait(
        "the microphone asked for noise suppression again",
        asked(
            "true",
            "c.noiseSuppression === true && c.autoGainControl === true && c.echoCancellation === true",
        ),
    )
    .await;
    shutdown.cancel();
}
