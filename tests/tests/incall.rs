//! What people do in a call besides talking, seen from the other pages: a raised hand on the
//! person's tile (and on the tile a newcomer sees), gone when lowered; a reaction that shows
//! on the sender's tile and goes away by itself.
//!
//! Needs the release bundle in `dist/` and Chrome, as `call.rs` does.

use e2e::{
    browser::{decoding_everyone, wait_for, Driver},
    relay,
};
use fantoccini::{
    actions::{InputSource, KeyAction, KeyActions},
    Client, Locator,
};

/// The tests of this file take turns: each runs several Chromes, and two cores are few.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Clicks the element `#id` of `page`.
async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// The value of `attribute` of the element `selector` of `page` (`null` when it has none).
async fn attribute(page: &Client, selector: &str, attribute: &str) -> serde_json::Value {
    page.execute(
        &format!(
            "const e = document.querySelector({selector:?}); \
             return e ? e.getAttribute({attribute:?}) : 'no element';"
        ),
        vec![],
    )
    .await
    .expect("script runs")
}

/// The `data-peer` of the only remote tile of `page`.
async fn only_peer(page: &Client) -> String {
    let peers = page
        .execute(
            "return [...document.querySelectorAll('#remotes figure[data-conn]')]
                .map(f => f.dataset.peer);",
            vec![],
        )
        .await
        .expect("script runs");
    let peers = peers.as_array().expect("a list");
    assert_eq!(peers.len(), 1, "one tile: {peers:?}");
    peers[0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_hand_and_a_reaction_show_on_the_other_pages() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=hands");
    let raiser = driver.browser().await;
    let other = driver.browser().await;
    raiser.goto(&room).await.expect("open a page");
    other
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    decoding_everyone(&raiser, 1).await;
    decoding_everyone(&other, 1).await;
    let raiser_id = only_peer(&other).await;
    let tile = format!("#remotes figure[data-peer=\"{raiser_id}\"]");

    // Raised: pressed here, on the raiser's tile there, in its caption too.
    assert_eq!(
        attribute(&raiser, "#handButton", "aria-pressed").await,
        "false"
    );
    click(&raiser, "handButton").await;
    assert_eq!(
        attribute(&raiser, "#handButton", "aria-pressed").await,
        "true"
    );
    wait_for(
        &other,
        "the raised hand on the raiser's tile",
        &format!(
            "const f = document.querySelector({tile:?});
             return f && f.dataset.hand === 'true'
                 && f.querySelector('figcaption').textContent.includes('hand raised');"
        ),
    )
    .await;

    // Somebody who comes in later sees it too, on the raiser's tile only.
    let late = driver.browser().await;
    late.goto(&room).await.expect("open a third page");
    decoding_everyone(&late, 2).await;
    wait_for(
        &late,
        "the raised hand on the newcomer's page",
        &format!(
            "const hands = [...document.querySelectorAll('#remotes figure[data-hand]')];
             return hands.length === 1 && hands[0].dataset.peer === {raiser_id:?};"
        ),
    )
    .await;

    // Lowered: gone everywhere.
    click(&raiser, "handButton").await;
    assert_eq!(
        attribute(&raiser, "#handButton", "aria-pressed").await,
        "false"
    );
    for (page, whose) in [(&other, "the first page"), (&late, "the newcomer's page")] {
        wait_for(
            page,
            &format!("the hand lowered on {whose}"),
            "return document.querySelectorAll('#remotes figure[data-hand]').length === 0
                && ![...document.querySelectorAll('#remotes figcaption')]
                    .some(c => c.textContent.includes('hand raised'));",
        )
        .await;
    }

    // A reaction: picked from the picker, which closes; shown on the sender's tile elsewhere
    // (and on the sender's own picture), then gone by itself.
    click(&raiser, "reactionButton").await;
    assert_eq!(
        attribute(&raiser, "#reactionButton", "aria-expanded").await,
        "true"
    );
    raiser
        .find(Locator::Css("#reactions [data-reaction=\"clap\"]"))
        .await
        .expect("the clap in the picker")
        .click()
        .await
        .expect("click the clap");
    assert_eq!(attribute(&raiser, "#reactions", "hidden").await, "");
    let shown = format!(
        "const f = document.querySelector({tile:?});
         const r = f && f.querySelector('.reaction');
         return f && f.dataset.reaction === 'clap' && r.textContent === '👏'
             && r.getAttribute('aria-label') === 'Applause' && r.checkVisibility();"
    );
    for (page, whose) in [(&other, "the first page"), (&late, "the newcomer's page")] {
        wait_for(page, &format!("the clap on {whose}"), &shown).await;
    }
    assert_eq!(
        attribute(&raiser, "#ownReaction", "data-reaction").await,
        "clap"
    );
    let gone = format!(
        "const f = document.querySelector({tile:?});
         return f && !f.dataset.reaction && f.querySelector('.reaction').textContent === '';"
    );
    for (page, whose) in [(&other, "the first page"), (&late, "the newcomer's page")] {
        wait_for(page, &format!("the clap gone from {whose}"), &gone).await;
    }
    wait_for(
        &raiser,
        "the clap gone from the sender's own picture",
        "return !document.getElementById('ownReaction').dataset.reaction;",
    )
    .await;

    for page in [raiser, other, late] {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}

/// Defines `settings()`: the microphone's processing, `[noiseSuppression, autoGainControl]`, as
/// the track the page previews and the track each call sends say (`getSettings()`), one list
/// per track. (Echo cancellation is asked for either way; Chromium turns its processing on and
/// off as a whole, so it goes off with noise suppression there.)
const MIC_SETTINGS_FN: &str = "const settings = () => {
    const s = (t) => { const g = t.getSettings(); return [g.noiseSuppression, g.autoGainControl]; };
    const local = document.getElementById('localVideo').srcObject.getAudioTracks().map(s);
    const sent = (window.__pcs || []).filter(pc => pc.connectionState !== 'closed')
        .flatMap(pc => pc.getSenders()).filter(x => x.track && x.track.kind === 'audio')
        .map(x => s(x.track));
    return local.concat(sent); };";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_suppression_switches_the_microphone_and_its_level_shows_while_unmuted() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=noise");
    let speaker = driver.browser().await;
    let other = driver.browser().await;
    speaker.goto(&room).await.expect("open a page");
    other
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    decoding_everyone(&speaker, 1).await;
    decoding_everyone(&other, 1).await;

    // On, as browsers open a microphone: the switch says so, and so do the tracks.
    assert_eq!(
        attribute(&speaker, "#noiseButton", "aria-pressed").await,
        "true"
    );
    let all = |wanted: &str| {
        format!(
            "{MIC_SETTINGS_FN} const all = settings();
             return all.length >= 2 && all.every(s => JSON.stringify(s) === {wanted:?});"
        )
    };
    wait_for(&speaker, "the microphone processed", &all("[true,true]")).await;

    // Off: the microphone in use, the one previewed and the one sent, is no longer processed
    // for noise and gain, and the call goes on.
    click(&speaker, "noiseButton").await;
    assert_eq!(
        attribute(&speaker, "#noiseButton", "aria-pressed").await,
        "false"
    );
    wait_for(
        &speaker,
        "the microphone without noise suppression",
        &all("[false,false]"),
    )
    .await;
    // And on again.
    click(&speaker, "noiseButton").await;
    wait_for(
        &speaker,
        "the microphone with noise suppression again",
        &all("[true,true]"),
    )
    .await;
    decoding_everyone(&other, 1).await;

    // The level shows while the microphone is on (the fake microphone beeps), and goes away
    // while muted.
    let level = "const m = document.getElementById('micLevel');
        return !m.hidden && m.checkVisibility() && Number(m.value) > 0;";
    wait_for(&speaker, "the microphone level", level).await;
    click(&speaker, "muteButton").await;
    wait_for(
        &speaker,
        "no microphone level while muted",
        "const m = document.getElementById('micLevel'); return m.hidden && Number(m.value) === 0;",
    )
    .await;
    click(&speaker, "muteButton").await;
    wait_for(&speaker, "the microphone level back", level).await;

    for page in [speaker, other] {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}

/// A script that is true when `#id`'s `aria-pressed` is `value`.
fn pressed(id: &str, value: &str) -> String {
    format!("return document.getElementById('{id}').getAttribute('aria-pressed') === '{value}';")
}

/// Presses and releases the keys of `keys` on `page`, one after the other, as a person would
/// (WebDriver's key actions: wherever the focus is).
async fn press(page: &Client, keys: &str) {
    let mut actions = KeyActions::new("keyboard".to_owned());
    for key in keys.chars() {
        actions = actions
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
    }
    page.perform_actions(actions)
        .await
        .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_shortcuts_do_what_the_page_lists_but_not_while_typing() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=keys");
    let keys = driver.browser().await;
    let other = driver.browser().await;
    keys.goto(&room).await.expect("open a page");
    other
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    decoding_everyone(&keys, 1).await;
    decoding_everyone(&other, 1).await;
    let listed = keys
        .execute(
            "return [...document.querySelectorAll('#shortcuts kbd')].map(k => k.textContent).join('');",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(listed, "MVHC", "the shortcuts listed on the page");
    let tile = "#remotes figure[data-conn]";

    // M mutes (the other page sees it), and again unmutes; H raises the hand; V turns the
    // camera off.
    press(&keys, "m").await;
    wait_for(&keys, "muted by M", &pressed("muteButton", "true")).await;
    wait_for(
        &other,
        "the mute on the other page",
        &format!("return document.querySelector({tile:?}).dataset.muted === 'true';"),
    )
    .await;
    press(&keys, "m").await;
    wait_for(&keys, "unmuted by M", &pressed("muteButton", "false")).await;
    press(&keys, "h").await;
    wait_for(
        &other,
        "the hand raised by H on the other page",
        &format!("return document.querySelector({tile:?}).dataset.hand === 'true';"),
    )
    .await;
    press(&keys, "v").await;
    wait_for(
        &keys,
        "the camera off by V",
        &pressed("cameraButton", "true"),
    )
    .await;

    // C goes to the chat field, and types nothing there; what is typed there next is text,
    // not shortcuts.
    press(&keys, "c").await;
    wait_for(
        &keys,
        "the chat field focused by C",
        "const input = document.getElementById('chatInput');
         return document.activeElement === input && input.value === '';",
    )
    .await;
    press(&keys, "mhvc").await;
    wait_for(
        &keys,
        "the letters typed into the chat field",
        "return document.getElementById('chatInput').value === 'mhvc';",
    )
    .await;
    let states = keys
        .execute(
            "return ['muteButton', 'handButton', 'cameraButton']
                .map(id => document.getElementById(id).getAttribute('aria-pressed'));",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(
        states,
        serde_json::json!(["false", "true", "true"]),
        "typing in the chat toggled something"
    );

    for page in [keys, other] {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}
