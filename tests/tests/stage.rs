//! The stage: the other person fills it, yourself small in a corner that a click changes, the
//! panels open beside it on a wide window and over it on a phone, nothing wider than a 360-px
//! phone, a shared screen large beside the others (`docs/screenshots/screen-share.png`); and the page's accessibility, checked with axe-core in the main states (before a call,
//! a call with the chat and settings open, light and dark, a phone's width): no violation of
//! impact "serious" or "critical".
//!
//! Needs the release bundle in `dist/` and Chrome, as `call.rs` does, and axe-core in
//! `tests/axe/node_modules` (`scripts/setup.sh --test` installs it with `npm ci`).

use e2e::{
    browser::{chat, decoding_everyone, screenshot, wait_for, Cdp, Driver},
    relay,
};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

/// The tests of this file take turns: each runs several Chromes, and two cores are few.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// axe-core's script, from the package `tests/axe/package.json` pins.
fn axe_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("axe/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/setup.sh --test, which runs npm ci in tests/axe)",
            path.display()
        )
    })
}

/// Runs axe-core on `page` as it is now, prints a line of counts by impact for `state` and
/// every violation, and returns the violations of impact serious or critical.
async fn axe(page: &Client, source: &str, state: &str) -> Vec<String> {
    page.execute(source, vec![])
        .await
        .expect("load axe-core into the page");
    let results = page
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done({
                 version: axe.version,
                 passes: r.passes.length,
                 incomplete: r.incomplete.map(i => i.id),
                 violations: r.violations.map(v => ({
                     id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.map(n => n.target.join(' ') + (n.failureSummary
                         ? ': ' + n.failureSummary.replace(/\\s+/g, ' ') : '')),
                 })),
             }), e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .expect("axe.run");
    assert!(results.get("error").is_none(), "axe.run failed: {results}");
    let violations = results["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let count = |impact: &str| violations.iter().filter(|v| v["impact"] == impact).count();
    println!(
        "axe-core {} {state}: {} rules passed, {} to review by hand {}; violations: critical {}, \
         serious {}, moderate {}, minor {}",
        results["version"].as_str().unwrap_or("?"),
        results["passes"],
        results["incomplete"].as_array().map_or(0, Vec::len),
        results["incomplete"],
        count("critical"),
        count("serious"),
        count("moderate"),
        count("minor"),
    );
    let mut serious = Vec::new();
    for v in &violations {
        let line = format!(
            "  {} ({}): {}\n    {}",
            v["id"].as_str().unwrap_or_default(),
            v["impact"].as_str().unwrap_or_default(),
            v["help"].as_str().unwrap_or_default(),
            v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n    ")
        );
        println!("{line}");
        if v["impact"] == "serious" || v["impact"] == "critical" {
            serious.push(format!("{state}: {line}"));
        }
    }
    serious
}

/// The window of `page` at `width` x `height`, given a moment to lay the page out again.
async fn window(page: &Client, width: u32, height: u32) {
    page.set_window_size(width, height)
        .await
        .expect("set the window size");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Clicks `#id` of `page`.
async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// A script that is true when panel `#panel` is shown or not as `shown` says, and its button
/// says so (`aria-expanded`).
fn panel_is(panel: &str, shown: bool) -> String {
    format!(
        "const p = document.getElementById('{panel}');
         const b = document.querySelector('[aria-controls=\"{panel}\"]');
         return p.checkVisibility() === {shown} && b.getAttribute('aria-expanded') === '{shown}';"
    )
}

/// Where things are on `page`: the stage, the remote tiles, our own picture, the first tile's
/// verification code (their rectangles, `[left, top, width, height]`), and whether the page is
/// wider than the window.
const LAYOUT: &str = "const r = (e) => { const b = e.getBoundingClientRect();
        return [b.left, b.top, b.width, b.height]; };
    return {
        stage: r(document.querySelector('.stage')),
        tiles: [...document.querySelectorAll('#remotes figure[data-conn]')].map(r),
        me: r(document.querySelector('figure.me')),
        code: r(document.getElementById('verifyCode')),
        overflow: document.documentElement.scrollWidth - window.innerWidth,
    };";

fn rect(value: &Value) -> [f64; 4] {
    let n = |i: usize| value[i].as_f64().unwrap_or(f64::NAN);
    [n(0), n(1), n(2), n(3)]
}

/// `inner` lies inside `outer` (to the pixel).
fn inside(inner: [f64; 4], outer: [f64; 4]) -> bool {
    inner[0] >= outer[0] - 1.0
        && inner[1] >= outer[1] - 1.0
        && inner[0] + inner[2] <= outer[0] + outer[2] + 1.0
        && inner[1] + inner[3] <= outer[1] + outer[3] + 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_is_filled_and_the_page_passes_axe_core_light_dark_and_on_a_phone() {
    let _turn = CHROME_TURN.lock().await;
    let source = axe_source();
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=stage");
    let first = driver.browser().await;
    let second = driver.browser().await;
    let mut serious = Vec::new();

    // Before a call: alone with the camera's preview.
    first.goto(&room).await.expect("open a page");
    wait_for(
        &first,
        "the camera's preview",
        "const v = document.getElementById('localVideo');
         return v.srcObject && v.readyState >= 2;",
    )
    .await;
    serious.extend(axe(&first, &source, "before a call").await);

    // A call of two on a wide window: the panels beside the stage, open until closed.
    second
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    decoding_everyone(&first, 1).await;
    decoding_everyone(&second, 1).await;
    chat(&[first.clone(), second.clone()], 1, "hello").await;
    window(&first, 1280, 800).await;
    for panel in ["chatPanel", "settingsPanel"] {
        wait_for(&first, &format!("{panel} open"), &panel_is(panel, true)).await;
    }
    wait_for(
        &first,
        "the verification code",
        "const v = document.getElementById('verifyCode'); return v && v.dataset.code;",
    )
    .await;
    let layout = first.execute(LAYOUT, vec![]).await.expect("script runs");
    let (stage, me, code) = (
        rect(&layout["stage"]),
        rect(&layout["me"]),
        rect(&layout["code"]),
    );
    let tiles: Vec<[f64; 4]> = layout["tiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(rect)
        .collect();
    assert_eq!(tiles.len(), 1, "one tile: {layout}");
    let tile = tiles[0];
    let area = |r: [f64; 4]| r[2] * r[3];
    assert!(
        area(tile) > 0.85 * area(stage),
        "the other person fills the stage: {layout}"
    );
    assert!(
        inside(me, stage) && area(me) < 0.1 * area(stage),
        "yourself small, on the stage: {layout}"
    );
    assert!(
        inside(code, tile) && code[1] > tile[1] + 0.75 * tile[3],
        "the code along the bottom of the tile, not over the face: {layout}"
    );
    serious.extend(axe(&first, &source, "a call of two, chat and settings open").await);

    // Dark, as the system may be set.
    first
        .issue_cmd(Cdp::new(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
        ))
        .await
        .expect("emulate a dark system");
    serious.extend(axe(&first, &source, "the same, dark").await);
    first
        .issue_cmd(Cdp::new(
            "Emulation.setEmulatedMedia",
            json!({ "features": [] }),
        ))
        .await
        .expect("back to light");

    // A toggle of the bar that is on looks it: muted, the mute button is not the camera's.
    let looks = "const bg = (id) => getComputedStyle(document.getElementById(id)).backgroundColor;
        return bg('muteButton') !== bg('cameraButton');";
    click(&first, "muteButton").await;
    wait_for(&first, "the mute button looking pressed", looks).await;
    click(&first, "muteButton").await;
    wait_for(
        &first,
        "the mute button looking as the others",
        &looks.replace("!==", "==="),
    )
    .await;

    // A panel closes and opens again with its button; a click moves yourself to the next
    // corner (from the top right to the bottom right), and so does Enter.
    click(&first, "settingsPanelButton").await;
    wait_for(&first, "settings closed", &panel_is("settingsPanel", false)).await;
    click(&first, "settingsPanelButton").await;
    wait_for(&first, "settings open", &panel_is("settingsPanel", true)).await;
    assert!(
        me[0] + me[2] / 2.0 > stage[0] + stage[2] / 2.0 && me[1] < stage[1] + stage[3] / 2.0,
        "yourself at the top right first: {layout}"
    );
    first
        .find(Locator::Css("figure.me"))
        .await
        .expect("our own picture")
        .click()
        .await
        .expect("click our own picture");
    wait_for(
        &first,
        "yourself moved to the bottom right",
        "const me = document.querySelector('figure.me').getBoundingClientRect();
         const stage = document.querySelector('.stage').getBoundingClientRect();
         return me.top > stage.top + stage.height / 2 && me.left > stage.left + stage.width / 2
             && me.bottom <= stage.bottom;",
    )
    .await;
    // From the keyboard too: Enter on the picture's button moves it on, to the bottom left.
    first
        .find(Locator::Css("figure.me .move"))
        .await
        .expect("the button over our own picture")
        .send_keys("\u{e007}")
        .await
        .expect("press Enter on it");
    wait_for(
        &first,
        "yourself moved to the bottom left",
        "const me = document.querySelector('figure.me').getBoundingClientRect();
         const stage = document.querySelector('.stage').getBoundingClientRect();
         return me.top > stage.top + stage.height / 2 && me.right < stage.left + stage.width / 2;",
    )
    .await;

    // A phone: a panel the person has not touched is closed there (the settings, opened by
    // hand, stay open until closed), nothing is wider than the window; the chat opens over the
    // stage.
    window(&first, 360, 740).await;
    wait_for(
        &first,
        "the chat closed on a phone",
        &panel_is("chatPanel", false),
    )
    .await;
    wait_for(
        &first,
        "the settings still open",
        &panel_is("settingsPanel", true),
    )
    .await;
    click(&first, "settingsPanelButton").await;
    wait_for(
        &first,
        "the settings closed",
        &panel_is("settingsPanel", false),
    )
    .await;
    let layout = first.execute(LAYOUT, vec![]).await.expect("script runs");
    assert!(
        layout["overflow"].as_f64() == Some(0.0),
        "the page is no wider than a 360-px phone: {layout}"
    );
    serious.extend(axe(&first, &source, "a call of two at 360x740").await);
    click(&first, "chatPanelButton").await;
    wait_for(
        &first,
        "the chat open on a phone",
        &format!(
            "{} && document.getElementById('chatInput').checkVisibility();",
            panel_is("chatPanel", true).trim_end_matches(';')
        ),
    )
    .await;
    serious.extend(axe(&first, &source, "the chat open at 360x740").await);

    // A shared screen takes the large place, shown whole, the others beside it: a third person
    // comes, and the second shares their screen.
    let third = driver.browser().await;
    third.goto(&room).await.expect("open a page");
    decoding_everyone(&first, 2).await;
    window(&first, 1280, 800).await;
    click(&second, "shareButton").await;
    let sizes = wait_for(
        &first,
        "the shared screen in the large place",
        "const area = (f) => { const b = f.getBoundingClientRect(); return b.width * b.height; };
         const screen = document.querySelector('#remotes figure[data-screen]');
         const other = document.querySelector('#remotes figure[data-conn]:not([data-screen])');
         return screen && other && area(screen) > 4 * area(other) ? [area(screen), area(other)] : null;",
    )
    .await;
    println!("a shared screen's tile and another's, in px²: {sizes}");
    screenshot(&first, "screen-share", 1280, 800).await;
    window(&first, 360, 740).await;
    click(&first, "chatPanelButton").await;
    wait_for(&first, "the chat closed", &panel_is("chatPanel", false)).await;
    screenshot(&first, "screen-share-phone", 360, 740).await;
    window(&first, 1280, 800).await;
    serious.extend(axe(&first, &source, "a call of three with a shared screen").await);

    assert!(
        serious.is_empty(),
        "serious or critical accessibility violations:\n{}",
        serious.join("\n")
    );
    first.close().await.expect("close a page");
    second.close().await.expect("close a page");
    third.close().await.expect("close a page");
    shutdown.cancel();
}

/// Among three, who speaks is large: two pages mute, and on both of them the third's tile is
/// marked `data-speaker` (the only one marked) and is more than twice the other's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_speaks_is_large_among_three() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=speaker");
    let speaker = driver.browser().await;
    let quiet = [driver.browser().await, driver.browser().await];
    speaker.goto(&room).await.expect("open a page");
    for page in &quiet {
        page.goto(&format!("{room}#true"))
            .await
            .expect("open a page");
    }
    for page in quiet.iter().chain([&speaker]) {
        decoding_everyone(page, 2).await;
    }
    for page in &quiet {
        click(page, "muteButton").await;
    }
    for page in &quiet {
        wait_for(
            page,
            "the speaker's tile marked and across the stage",
            "const marked = [...document.querySelectorAll('#remotes figure[data-speaker]')];
             if (marked.length !== 1) return false;
             const tile = marked[0], stage = document.getElementById('remotes');
             const area = (f) => { const r = f.getBoundingClientRect(); return r.width * r.height; };
             const others = [...stage.children].filter(f => f !== tile && !f.hidden);
             return others.length === 1 && others.every(f => area(tile) > 2 * area(f))
                 && !tile.hasAttribute('data-muted');",
        )
        .await;
    }
    for page in quiet.iter().chain([&speaker]) {
        page.clone().close().await.expect("close the browser");
    }
    shutdown.cancel();
}
