//! What people do in a call besides talking, seen from the other pages: a raised hand on the
//! person's tile (and on the tile a newcomer sees), gone when lowered; a reaction that shows
//! on the sender's tile and goes away by itself.
//!
//! Needs the release bundle in `dist/` and Chrome, as `call.rs` does.

use e2e::{
    browser::{decoding_everyone, wait_for, Cdp, Driver},
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
/// Opens `first` (it waits) and `second` (it calls) in `room`, and waits until each decodes the
/// other.
async fn call_of_two(first: &Client, second: &Client, room: &str) {
    first.goto(room).await.expect("open a page");
    second
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    decoding_everyone(first, 1).await;
    decoding_everyone(second, 1).await;
}

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
    call_of_two(&raiser, &other, &room).await;
    let raiser_id = only_peer(&other).await;
    let tile = format!("#remotes figure[data-peer=\"{raiser_id}\"]");

    // Raised: pressed here, on the raiser's tile there, in its caption too.
    assert_eq!(
        attribute(&raiser, "#handButton", "aria-pressed").await,
        "false"
    );
    click(&raiser, "handButton").await;
    // The click is an event for the page's loop, which may be busy a moment: waited for.
    wait_for(
        &raiser,
        "the hand button pressed: true",
        &pressed("handButton", "true"),
    )
    .await;
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
    // The click is an event for the page's loop, which may be busy a moment: waited for.
    wait_for(
        &raiser,
        "the hand button pressed: false",
        &pressed("handButton", "false"),
    )
    .await;
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

    // A reaction: picked from the picker, which closes; shown on the sender's tile elsewhere,
    // then gone by itself.
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
         return f && f.dataset.reaction === 'clap'
             && getComputedStyle(f, '::before').content === '\"👏\"';"
    );
    for (page, whose) in [(&other, "the first page"), (&late, "the newcomer's page")] {
        wait_for(page, &format!("the clap on {whose}"), &shown).await;
    }
    let gone = format!(
        "const f = document.querySelector({tile:?});
         return f && !f.dataset.reaction && getComputedStyle(f, '::before').content === 'none';"
    );
    for (page, whose) in [(&other, "the first page"), (&late, "the newcomer's page")] {
        wait_for(page, &format!("the clap gone from {whose}"), &gone).await;
    }

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
    call_of_two(&speaker, &other, &room).await;

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
    call_of_two(&keys, &other, &room).await;
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
    // not shortcuts. On a phone the chat is a panel, closed until opened: C opens it.
    keys.set_window_size(360, 740)
        .await
        .expect("a phone's window");
    wait_for(
        &keys,
        "the chat closed on a phone",
        "return !document.getElementById('chatInput').checkVisibility()
            && document.getElementById('chatPanelButton').getAttribute('aria-expanded') === 'false';",
    )
    .await;
    press(&keys, "c").await;
    wait_for(
        &keys,
        "the chat field focused by C, and shown",
        "const input = document.getElementById('chatInput');
         return document.activeElement === input && input.value === '' && input.checkVisibility()
            && document.getElementById('chatPanelButton').getAttribute('aria-expanded') === 'true';",
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

/// A file of `size` bytes at `path`, of bytes that do not repeat in any short period (so that
/// a chunk lost, doubled or out of place changes its hash); and its SHA-256, as `sha256sum`
/// prints it.
fn file_of(path: &std::path::Path, size: usize) -> String {
    let mut state: u32 = 0x9e37_79b9;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(path, bytes).expect("write the file to send");
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Chooses the file at `path` in `page`'s `fileInput`, for whoever `fileTo` says (`to`: the
/// value of one of its options).
async fn send_file(page: &Client, path: &std::path::Path, to: &str) {
    page.execute(
        &format!("document.getElementById('fileTo').value = {to:?};"),
        vec![],
    )
    .await
    .expect("choose whom to send to");
    page.find(Locator::Id("fileInput"))
        .await
        .expect("the file field")
        .send_keys(&path.display().to_string())
        .await
        .expect("choose the file");
}

/// Installed before a transfer: keeps every `data-progress` `#transfers` shows, in
/// `window.__progress`.
const WATCH_PROGRESS: &str = "window.__progress = [];
    new MutationObserver((changes) => { for (const c of changes) {
        const p = c.target.getAttribute && c.target.getAttribute('data-progress');
        if (p !== null && p !== undefined) window.__progress.push(Number(p)); } })
    .observe(document.getElementById('transfers'),
        { subtree: true, childList: true, attributes: true, attributeFilter: ['data-progress'] });";

/// Downloads the file of the link `#transfers a[download=NAME]` of `page` into `dir`, as a
/// person would (a click on the link; the page's `blob:` address is not readable by its
/// scripts, whose `connect-src` is the relay's), once the transfer is done; returns its
/// SHA-256 as `sha256sum` prints it.
async fn download(page: &Client, name: &str, dir: &std::path::Path) -> String {
    page.issue_cmd(Cdp::new(
        "Browser.setDownloadBehavior",
        serde_json::json!({ "behavior": "allow", "downloadPath": dir.display().to_string() }),
    ))
    .await
    .expect("allow downloads");
    let link = format!("#transfers a[download={name:?}]");
    wait_for(
        page,
        &format!("the link to {name}"),
        &format!(
            "const a = document.querySelector({link:?});
             return a && a.closest('li').dataset.progress === '100';"
        ),
    )
    .await;
    page.find(Locator::Css(&link))
        .await
        .expect("the link")
        .click()
        .await
        .expect("click the link");
    let path = dir.join(name);
    let started = std::time::Instant::now();
    // Chrome writes `NAME.crdownload` and renames it when it is complete.
    while !path.exists() {
        assert!(
            started.elapsed() < e2e::browser::PATIENCE,
            "{name} never downloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_to_one_person_or_everybody_whole_and_one_too_big_is_refused() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=files");
    let sender = driver.browser().await;
    let to_one = driver.browser().await;
    let other = driver.browser().await;
    sender.goto(&room).await.expect("open a page");
    to_one
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    other.goto(&room).await.expect("open a page");
    for page in [&sender, &to_one, &other] {
        decoding_everyone(page, 2).await;
    }
    let dir = std::env::temp_dir().join(format!("incall-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the files");

    // A few MB to one person: it arrives whole there (the same SHA-256), with its progress
    // shown on the way, and nowhere else.
    let path = dir.join("three-mb.bin");
    let hash = file_of(&path, 3 * 1024 * 1024 + 12_345);
    // The option for `to_one`: its tile's connection on the sender's page.
    let to_one_id = only_peer_named(&sender, &to_one).await;
    for page in [&to_one, &other] {
        page.execute(WATCH_PROGRESS, vec![]).await.expect("watch");
    }
    send_file(&sender, &path, &to_one_id).await;
    let downloads = dir.join("to-one");
    assert_eq!(
        download(&to_one, "three-mb.bin", &downloads).await,
        hash,
        "the file that arrived"
    );
    let progress = to_one
        .execute("return window.__progress;", vec![])
        .await
        .expect("script runs");
    let seen: Vec<u64> = progress
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_u64())
        .collect();
    assert!(
        seen.iter().any(|p| (1..100).contains(p)) && seen.last() == Some(&100),
        "progress shown on the way: {seen:?}"
    );
    wait_for(
        &sender,
        "the sender's transfer done",
        "const t = document.querySelector('#transfers li');
         return t && t.dataset.progress === '100' && !t.dataset.refused
             && !document.getElementById('fileInput').disabled;",
    )
    .await;
    let elsewhere = other
        .execute(
            "return document.querySelectorAll('#transfers li').length;",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(elsewhere, 0, "the file reached somebody it was not for");

    // To everybody: both get it.
    let small = dir.join("notes.txt");
    let small_hash = file_of(&small, 40_000);
    send_file(&sender, &small, "").await;
    for (page, downloads) in [(&to_one, "to-one"), (&other, "other")] {
        let downloads = dir.join(downloads);
        assert_eq!(download(page, "notes.txt", &downloads).await, small_hash);
    }

    // Over the limit: refused at once, in words, and nothing is sent.
    let big = dir.join("too-big.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(17 * 1024 * 1024))
        .expect("a file over the limit");
    send_file(&sender, &big, "").await;
    wait_for(
        &sender,
        "the file over the limit refused",
        "const t = [...document.querySelectorAll('#transfers li')].at(-1);
         return t && t.dataset.refused === 'too-big' && t.textContent.includes('too-big.bin')
             && t.textContent.includes('16.0 MB');",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for page in [&to_one, &other] {
        let names = page
            .execute(
                "return [...document.querySelectorAll('#transfers li')].map(t => t.textContent).join('|');",
                vec![],
            )
            .await
            .expect("script runs");
        assert!(
            !names.as_str().unwrap_or_default().contains("too-big"),
            "a refused file went out: {names}"
        );
    }

    let _ = std::fs::remove_dir_all(&dir);
    for page in [sender, to_one, other] {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}

/// The `data-conn` of the tile on `page` of the person whose page is `them` (found by the
/// relay id `them`'s own tiles do not have: the one `page` shows and the others do not).
async fn only_peer_named(page: &Client, them: &Client) -> String {
    // `them` knows its own id as everybody else's tile of it: ask `them` which ids it sees,
    // and take the one of `page`'s tiles that is not among them.
    let theirs = them
        .execute(
            "return [...document.querySelectorAll('#remotes figure[data-conn]')].map(f => f.dataset.peer);",
            vec![],
        )
        .await
        .expect("script runs");
    let theirs: Vec<String> = theirs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let ours = page
        .execute(
            "return [...document.querySelectorAll('#remotes figure[data-conn]')].map(f => [f.dataset.peer, f.dataset.conn]);",
            vec![],
        )
        .await
        .expect("script runs");
    ours.as_array()
        .into_iter()
        .flatten()
        .find(|t| !theirs.iter().any(|p| Some(p.as_str()) == t[0].as_str()))
        .and_then(|t| t[1].as_str().map(str::to_owned))
        .expect("the tile of the person")
}

/// Installed before a hostile page's own scripts: keeps every data channel its connections
/// create in `pc.__channels`, so that the test can write on the page's own channels (as in
/// hostile.rs).
const CHANNEL_WATCH_JS: &str = r#"(() => {
  const PC = window.RTCPeerConnection;
  const create = PC.prototype.createDataChannel;
  PC.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    (this.__channels = this.__channels || []).push(channel);
    return channel;
  };
})();"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_peer_sends_that_is_not_a_hand_a_reaction_or_a_file_shows_nothing() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=hostile-gestures");
    let victim = driver.browser().await;
    let hostile = driver.browser().await;
    hostile
        .issue_cmd(Cdp::new(
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({ "source": CHANNEL_WATCH_JS }),
        ))
        .await
        .expect("install the channel watch");
    call_of_two(&victim, &hostile, &room).await;
    let channels = "const pc = window.__pcs.at(-1);
        const chat = pc.__channels.find(c => c.label === 'chat');
        const file = pc.__channels.find(c => c.label === 'file');";

    // Hands and reactions that are none of ours, then one that is: only that one shows (the
    // channel is ordered, so the others were read first).
    hostile
        .execute(
            &format!(
                "{channels}
                 for (const f of [{{ reaction: '<b>x</b>' }}, {{ reaction: '🎉' }}, {{ reaction: 7 }},
                                  {{ hand: 'yes' }}, {{ hand: 1 }}])
                     chat.send(JSON.stringify(f));
                 chat.send(JSON.stringify({{ reaction: 'heart' }}));"
            ),
            vec![],
        )
        .await
        .expect("send the frames");
    wait_for(
        &victim,
        "the one reaction that is one",
        "const f = document.querySelector('#remotes figure[data-conn]');
         return f.dataset.reaction === 'heart' && !f.dataset.hand;",
    )
    .await;

    // On the file channel: bytes of no file, a file over the limit (with a name that hides
    // its kind), a file with more bytes than it said, one with a frame bigger than any chunk,
    // then a good one. Only the good one becomes a link; the others are refused in words.
    hostile
        .execute(
            &format!(
                "{channels}
                 for (let i = 0; i < 50; i++) file.send(new Uint8Array(64 * 1024));
                 file.send(JSON.stringify({{ file: 1, name: '../../evil\\u202egpj.exe', size: 17825792 }}));
                 file.send(new Uint8Array(16 * 1024));
                 file.send(JSON.stringify({{ file: 2, name: 'longer.bin', size: 100 }}));
                 file.send(new Uint8Array(200));
                 file.send(JSON.stringify({{ file: 3, name: 'chunky.bin', size: 1000000 }}));
                 file.send(new Uint8Array(100 * 1024));
                 file.send(JSON.stringify({{ file: 4, name: 'ok.txt', size: 10 }}));
                 file.send(new Uint8Array(10));"
            ),
            vec![],
        )
        .await
        .expect("send the frames");
    wait_for(
        &victim,
        "the good file's link",
        "return !!document.querySelector('#transfers a[download=\"ok.txt\"]');",
    )
    .await;
    let transfers = victim
        .execute(
            "return [...document.querySelectorAll('#transfers li')].map(t =>
                [t.dataset.refused || '', t.textContent, !!t.querySelector('a')]);",
            vec![],
        )
        .await
        .expect("script runs");
    let transfers = transfers.as_array().cloned().unwrap_or_default();
    assert_eq!(transfers.len(), 4, "{transfers:?}");
    let refused: Vec<&str> = transfers
        .iter()
        .map(|t| t[0].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        refused,
        ["too-big", "broken", "broken", ""],
        "{transfers:?}"
    );
    let first = transfers[0][1].as_str().unwrap_or_default();
    assert!(
        first.contains("evilgpj.exe") && first.contains("16.0 MB") && !first.contains('/'),
        "the name cleaned and the limit said: {first:?}"
    );
    assert!(
        transfers[..3].iter().all(|t| t[2] == false) && transfers[3][2] == true,
        "{transfers:?}"
    );
    let errors = victim
        .execute("return window.__pageErrors;", vec![])
        .await
        .expect("script runs");
    assert_eq!(errors, serde_json::json!([]), "uncaught errors in the page");

    for page in [victim, hostile] {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_level_shows_under_the_browsers_own_autoplay_policy() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    // Chrome's own autoplay policy, which holds audio until the person does something on a
    // page: one that captures the microphone is let play (the page also resumes its audio
    // context on every click and shortcut, for a browser that would not).
    let page = driver
        .browser_changed(&["--autoplay-policy=no-user-gesture-required"], &[])
        .await;
    page.goto(&format!("http://{relay}/?room=level"))
        .await
        .expect("open the page");
    wait_for(
        &page,
        "the microphone level, nothing clicked",
        "const m = document.getElementById('micLevel');
         return !m.hidden && Number(m.value) > 0;",
    )
    .await;
    page.close().await.expect("close the page");
    shutdown.cancel();
}
