//! The whole product: the real relay serving the real client bundle, and two real headless
//! Chrome pages making a call through it. Frames must be decoded in both remote videos.
//!
//! Needs the release bundle in `dist/` (`make test` builds it), and `chromedriver` and
//! `chromium` (`scripts/setup.sh --test` installs them; `CHROMEDRIVER` / `CHROME` override the
//! paths).

use std::{net::SocketAddr, time::Instant};

use e2e::{
    browser::{
        call_log, chat, decoding, decoding_everyone, frames, frames_beyond, same_code, screenshot,
        status_of, tile_frames, wait_for, wait_for_state, wait_pages, wait_until_alone, Driver,
        CLOSED_OR_OPENED, PATIENCE, TILES_FN,
    },
    relay,
};
use fantoccini::Locator;

/// The tests of this file take turns: each runs several Chromes, and on two cores two tests'
/// worth at once would make their timings meaningless (and their waits flaky).
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_see_each_other_hang_up_and_call_again() {
    let _turn = CHROME_TURN.lock().await;
    // Rooms of two, as for a 1:1 call: a third page is told the room is full.
    let (relay, shutdown, relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let driver = Driver::start().await;
    let callee = driver.browser().await;
    let caller = driver.browser().await;
    let base = format!("http://{relay}/?room=e2e");

    // The time a person waits: from opening the caller's page to seeing each other.
    let setup = e2e::browser::call(&callee, &caller, &base).await;
    println!("call setup: {setup} ms from opening /#true to decoded frames on both sides");
    for page in [&caller, &callee] {
        wait_for_state(page, "the connected status", "connected").await;
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

    // Both sides show the same verification code, from the two DTLS fingerprints.
    let first_code = same_code(&caller, &callee).await;
    screenshot(&caller, "call-desktop", 1280, 800).await;
    screenshot(&callee, "call-phone", 360, 740).await;

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
    // A new call: new certificates, a new code.
    let second_code = same_code(&caller, &callee).await;
    assert_ne!(
        first_code, second_code,
        "the code did not change with the call"
    );

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
    let (_, shutdown, _relay_task) = relay::start(relay, 2).await;
    for page in [&caller, &callee] {
        wait_for_state(
            page,
            "the call to come back after the relay restart",
            "connected",
        )
        .await;
        let now = frames(page).await;
        frames_beyond(page, now).await;
    }

    // Closing a page tells the other, which goes back to waiting.
    caller.close().await.expect("close the caller");
    wait_until_alone(&callee, "the callee to notice the caller left").await;
    callee.close().await.expect("close the callee");
    shutdown.cancel();
}

/// Opens `n` pages in `room` (the second one with `#true`, the others without) one after the
/// other, and returns them with the milliseconds until every page decodes everybody.
async fn room_of(
    driver: &Driver,
    relay: SocketAddr,
    room: &str,
    n: usize,
) -> (Vec<fantoccini::Client>, u128) {
    let mut pages = Vec::new();
    for _ in 0..n {
        pages.push(driver.browser().await);
    }
    let started = Instant::now();
    for (index, page) in pages.iter().enumerate() {
        let hash = if index == 1 { "#true" } else { "" };
        page.goto(&format!("http://{relay}/?room={room}{hash}"))
            .await
            .expect("open a page");
    }
    for page in &pages {
        decoding_everyone(page, n - 1).await;
    }
    (pages, started.elapsed().as_millis())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_rooms_connect_everybody_and_survive_the_relay() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;

    // Rooms of 2 and 3 pages opened at once (and 6 with E2E_ROOM_OF_SIX=1: on two cores its
    // 30 connections take ~30 s, too close to the waits' patience for every CI run): time until
    // every page decodes everybody.
    let six = std::env::var_os("E2E_ROOM_OF_SIX").is_some();
    for n in [2, 3].into_iter().chain(six.then_some(6)) {
        let (pages, ms) = room_of(&driver, relay, &format!("size{n}"), n).await;
        println!("room of {n}: {ms} ms until every page decodes everybody");
        for page in pages {
            page.close().await.expect("close a page");
        }
    }
    let (mut pages, ms) = room_of(&driver, relay, "mesh", 3).await;
    println!("room of 3 (kept): {ms} ms until every page decodes everybody");

    // A page opened while the call goes on joins it.
    let late = driver.browser().await;
    let opened = Instant::now();
    late.goto(&format!("http://{relay}/?room=mesh"))
        .await
        .expect("open a fourth page");
    pages.push(late);
    let mut conns = Vec::new();
    for page in &pages {
        conns.push(decoding_everyone(page, 3).await);
    }
    println!(
        "room of 4: {} ms from opening the fourth page until every page decodes everybody",
        opened.elapsed().as_millis()
    );

    // Chat reaches every other page, peer to peer, as text.
    chat(&pages, 0, "hello <b>everyone</b>").await;
    screenshot(&pages[1], "room-of-4-with-chat", 1280, 800).await;

    // The calls stayed what they were (a page that closes and reopens one shows its person
    // frozen, then gone, then back).
    same_calls(&pages, &conns, "after the chat").await;

    // The relay goes away mid-call: the pages say so, and their media keeps flowing.
    shutdown.cancel();
    relay_task.await.expect("the relay stops");
    for page in &pages {
        wait_for(
            page,
            "the page to say the relay is reconnecting",
            "return document.getElementById('status').textContent.includes('Reconnecting')",
        )
        .await;
    }
    let before: Vec<Vec<(String, u64)>> = {
        let mut all = Vec::new();
        for page in &pages {
            all.push(tile_frames(page).await);
        }
        all
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // ... and so does the chat.
    chat(&pages, 2, "still here without the relay").await;
    same_calls(&pages, &conns, "without the relay").await;
    for (page, before) in pages.iter().zip(&before) {
        let now = tile_frames(page).await;
        assert_eq!(now.len(), 3, "a tile went away with the relay");
        for ((conn, was), (_, is)) in before.iter().zip(&now) {
            assert!(
                is > was,
                "tile {conn}: frames stopped while the relay was down ({was} -> {is})"
            );
        }
    }

    // It comes back having forgotten everybody: the pages rejoin the same room and keep the
    // same calls (the same connections), without a new negotiation from scratch.
    let (_, shutdown, _relay_task) = relay::start(relay, 6).await;
    for (page, conns) in pages.iter().zip(&conns) {
        wait_for_state(page, "the page to be connected again", "connected").await;
        let now: Vec<String> = tile_frames(page)
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(
            &now, conns,
            "the calls were rebuilt after the relay restart"
        );
    }

    // Somebody leaves: everybody else loses only that tile.
    let leaving = pages.pop().expect("four pages");
    leaving.close().await.expect("close a page");
    for page in &pages {
        wait_for(
            page,
            "the departed person's tile to go",
            &format!("{TILES_FN} return tiles().length === 2;"),
        )
        .await;
    }
    for page in pages {
        page.close().await.expect("close a page");
    }
    shutdown.cancel();
}

/// Asserts that every page still shows the calls of `conns` (its tiles' connections) and no
/// other; if not, prints what each page's call log says closed or opened one.
async fn same_calls(pages: &[fantoccini::Client], conns: &[Vec<String>], when: &str) {
    let mut now = Vec::new();
    for page in pages {
        now.push(
            tile_frames(page)
                .await
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>(),
        );
    }
    if now != conns {
        for (index, page) in pages.iter().enumerate() {
            eprintln!(
                "[page {index}] calls {:?} -> {:?}; what closed or opened one:\n{}",
                conns[index],
                now[index],
                call_log(page, CLOSED_OR_OPENED, 60).await
            );
        }
        panic!("a page rebuilt a call {when}: {conns:?} -> {now:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_at_the_same_instant_settle_glare_without_a_new_call() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let a = driver.browser().await;
    let b = driver.browser().await;
    for round in 0..5 {
        // Both pages call: both offer at once, and perfect negotiation settles it.
        let url = format!("http://{relay}/?room=glare{round}#true");
        let (opened_a, opened_b) = tokio::join!(a.goto(&url), b.goto(&url));
        opened_a.expect("open page a");
        opened_b.expect("open page b");
        // Both at once, so that a failure prints both sides of the call.
        wait_pages(
            &[("a", &a), ("b", &b)],
            &format!("round {round}: both pages decoding the other"),
            &decoding(1),
            PATIENCE,
        )
        .await;
        for page in [&a, &b] {
            let conns: Vec<String> = tile_frames(page)
                .await
                .into_iter()
                .map(|(c, _)| c)
                .collect();
            assert_eq!(conns, ["0"], "round {round}: glare rebuilt the call");
        }
    }
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    shutdown.cancel();
}

/// The total energy of the audio `page` received on its newest connection (`totalAudioEnergy`
/// of its inbound audio): it grows while sound arrives and stands still during silence.
async fn audio_energy(page: &fantoccini::Client) -> f64 {
    page.execute(
        "const pc = (window.__pcs || []).at(-1);
         if (!pc) return 0;
         return pc.getStats().then((report) => {
           let energy = 0;
           report.forEach((s) => {
             if (s.type === 'inbound-rtp' && s.kind === 'audio') energy = s.totalAudioEnergy || 0;
           });
           return energy;
         });",
        vec![],
    )
    .await
    .expect("script runs")
    .as_f64()
    .unwrap_or(0.0)
}

/// How much audio energy reaches `page` in `ms` milliseconds.
async fn energy_over(page: &fantoccini::Client, ms: u64) -> f64 {
    let before = audio_energy(page).await;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    audio_energy(page).await - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_camera_off_and_screen_sharing_reach_the_other_side() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let a = driver.browser().await;
    let b = driver.browser().await;
    e2e::browser::call(&a, &b, &format!("http://{relay}/?room=media")).await;
    // The stats panel: per person, what arrives and leaves, and a graph that grows each second.
    a.execute(
        "document.getElementById('statsButton').click(); return true;",
        vec![],
    )
    .await
    .expect("open the stats");
    wait_for(
        &a,
        "the stats of the call",
        "const row = document.querySelector('#stats div[data-conn]');
         return row && /in [1-9][0-9]* kbps · out [1-9][0-9]* kbps · [1-9][0-9]* fps/
                 .test(row.querySelector('.figures').textContent)
             && row.querySelector('.graph').textContent.length >= 3
             && document.getElementById('statsButton').getAttribute('aria-pressed') === 'true';",
    )
    .await;
    screenshot(&a, "stats", 1280, 800).await;

    // The fake microphone beeps: sound arrives.
    let heard = energy_over(&a, 3000).await;
    assert!(heard > 0.0, "no sound arrived before muting");

    let press =
        |page: &'static str| format!("document.getElementById('{page}').click(); return true;");
    b.execute(&press("muteButton"), vec![])
        .await
        .expect("press mute");
    wait_for(
        &b,
        "the mute button pressed",
        "return document.getElementById('muteButton').getAttribute('aria-pressed') === 'true'",
    )
    .await;
    wait_for(
        &a,
        "the other side shown muted",
        "const f = document.querySelector('#remotes figure[data-conn]');
         return f && f.dataset.muted === 'true' && f.textContent.includes('muted');",
    )
    .await;
    // What was in flight when the button was pressed has arrived by now.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let muted = energy_over(&a, 3000).await;
    assert!(
        muted < heard / 100.0,
        "sound still arrives while muted: {muted} against {heard}"
    );

    b.execute(&press("cameraButton"), vec![])
        .await
        .expect("press camera");
    wait_for(
        &a,
        "the other side's camera shown off",
        "const f = document.querySelector('#remotes figure[data-conn]');
         return f && f.dataset.cameraOff === 'true' && f.textContent.includes('camera off');",
    )
    .await;
    screenshot(&a, "other-muted-camera-off", 1280, 800).await;
    screenshot(&b, "muted-camera-off", 1280, 800).await;
    // Both back on: the marks go, and sound arrives again.
    b.execute(&press("muteButton"), vec![])
        .await
        .expect("unmute");
    b.execute(&press("cameraButton"), vec![])
        .await
        .expect("camera on");
    wait_for(
        &a,
        "the other side shown unmuted with the camera on",
        "const f = document.querySelector('#remotes figure[data-conn]');
         return f && !('muted' in f.dataset) && !('cameraOff' in f.dataset);",
    )
    .await;
    assert!(energy_over(&a, 3000).await > 0.0, "no sound after unmuting");

    // Screen sharing replaces the camera's picture for the other side, and stopping it brings
    // the camera back, on the same call.
    let size = "const v = document.getElementById('remoteVideo');
        return v.videoWidth + 'x' + v.videoHeight;";
    let camera = a.execute(size, vec![]).await.expect("script runs");
    let camera = camera.as_str().unwrap_or_default().to_owned();
    b.execute(&press("shareButton"), vec![])
        .await
        .expect("press share");
    // Told apart by their shapes, the camera's 4:3 and the screen's 16:9, not their sizes:
    // under load Chrome's encoder scales a picture down and back up (a CI run saw the camera
    // come back at 640x480, not the size it was first seen at, and waited in vain).
    let shape = |size: &str| {
        let (w, h) = size.trim_matches('"').split_once('x').unwrap_or_default();
        w.parse::<f64>().unwrap_or(0.0) / h.parse::<f64>().unwrap_or(1.0)
    };
    let camera_shape = shape(&camera);
    assert!(
        camera_shape > 0.5,
        "the camera's picture at the other side: {camera}"
    );
    let switched = format!(
        "const v = document.getElementById('remoteVideo');
         return v.videoHeight > 0 && Math.abs(v.videoWidth / v.videoHeight - {camera_shape}) > 0.1
             ? v.videoWidth + 'x' + v.videoHeight : '';"
    );
    let screen = wait_for(&a, "the shared screen at the other side", &switched).await;
    eprintln!("sharing: the camera came at {camera}, the screen at {screen}");
    // The tile says it shows a screen (the stylesheet shows it whole, in the large place).
    wait_for(
        &a,
        "the shared screen's tile marked",
        "return document.getElementById('remoteVideo').closest('figure').dataset.screen === 'true';",
    )
    .await;
    assert_eq!(
        b.execute(
            "return document.getElementById('shareButton').getAttribute('aria-pressed')",
            vec![]
        )
        .await
        .expect("script runs")
        .as_str(),
        Some("true")
    );
    let conn_before = tile_frames(&a).await;
    b.execute(&press("shareButton"), vec![])
        .await
        .expect("stop sharing");
    let back = format!(
        "const v = document.getElementById('remoteVideo');
         return v.videoHeight > 0 && Math.abs(v.videoWidth / v.videoHeight - {camera_shape}) < 0.02;"
    );
    wait_for(&a, "the camera back at the other side", &back).await;
    wait_for(
        &a,
        "the tile no longer marked as a screen",
        "return !document.getElementById('remoteVideo').closest('figure').dataset.screen;",
    )
    .await;
    let conn_after = tile_frames(&a).await;
    assert_eq!(
        conn_before.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        conn_after.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "sharing {screen} started a new call"
    );

    // The cameras and microphones are listed to choose from; a camera that goes away mid-call
    // (its track ends, the browser says the devices changed) is replaced by the one left.
    wait_for(
        &b,
        "the device choices",
        "return document.getElementById('cameraSelect').options.length > 0
            && document.getElementById('micSelect').options.length > 0;",
    )
    .await;
    b.execute(
        "document.getElementById('localVideo').srcObject.getVideoTracks()[0].stop();
         navigator.mediaDevices.dispatchEvent(new Event('devicechange'));
         return true;",
        vec![],
    )
    .await
    .expect("unplug the camera");
    wait_for(
        &b,
        "a live camera again",
        "const t = document.getElementById('localVideo').srcObject.getVideoTracks()[0];
         return t && t.readyState === 'live';",
    )
    .await;
    let now = frames(&a).await;
    frames_beyond(&a, now + 10).await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_show_on_tiles_and_a_taken_one_is_asked_for_again() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let a = driver.browser().await;
    let b = driver.browser().await;
    let base = format!("http://{relay}/?room=names");
    a.goto(&format!("{base}&name=Ann")).await.expect("open a");
    wait_for_state(&a, "a waiting", "waiting").await;
    // The same name again: the page asks for another, with the field filled in.
    b.goto(&format!("{base}&name=Ann#true"))
        .await
        .expect("open b");
    wait_for(
        &b,
        "b asked for another name",
        "const s = document.getElementById('status');
         return s.dataset.state === 'error' && s.textContent.includes('already called')
             && document.getElementById('nameInput').value === 'Ann';",
    )
    .await;
    screenshot(&b, "name-taken", 1280, 800).await;
    let field = b
        .find(Locator::Id("nameInput"))
        .await
        .expect("the name field");
    field.clear().await.expect("clear the field");
    field
        .send_keys("Bob\u{e007}")
        .await
        .expect("type a name and press Enter");
    frames_beyond(&a, 0).await;
    frames_beyond(&b, 0).await;
    let caption = |who: &str| {
        format!(
            "const f = document.querySelector('#remotes figure[data-conn] figcaption');
             return f && f.textContent.startsWith('{who}');"
        )
    };
    wait_for(&a, "Bob's name on a's tile", &caption("Bob")).await;
    wait_for(&b, "Ann's name on b's tile", &caption("Ann")).await;
    // Remembered for the next visit.
    let kept = b
        .execute("return localStorage.getItem('name')", vec![])
        .await
        .expect("script runs");
    assert_eq!(kept.as_str(), Some("Bob"));
    // A name with a control character is refused with words, not joined with.
    a.goto(&format!("{base}2&name=Ev%0Ae"))
        .await
        .expect("reopen a");
    wait_for(
        &a,
        "the refused name explained",
        "return document.getElementById('nameNote').textContent.includes('control characters')",
    )
    .await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_name_the_room_and_a_new_room_is_unguessable() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let page = driver.browser().await;
    page.goto(&format!("http://{relay}/?room=inv&name=Ann#true"))
        .await
        .expect("open the page");
    let click = |id: &str| format!("document.getElementById('{id}').click(); return true;");
    page.execute(&click("copyLinkButton"), vec![])
        .await
        .expect("press copy");
    let link = wait_for(
        &page,
        "the invite link shown",
        "return document.getElementById('inviteNote').dataset.link || ''",
    )
    .await;
    // The room, without the caller's hash or their name.
    assert_eq!(
        link.as_str(),
        Some(format!("http://{relay}/?room=inv").as_str())
    );

    page.execute(&click("newRoomButton"), vec![])
        .await
        .expect("press new room");
    let search = wait_for(
        &page,
        "a new room with a random name",
        "return /^\\?room=[0-9a-f]{32}$/.test(location.search)
             && document.getElementById('status').dataset.state === 'waiting' && location.search",
    )
    .await;
    assert_ne!(search.as_str(), Some("?room=inv"));
    page.close().await.expect("close");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_camera_or_autoplay_flag_plays_and_offers_to_start_the_sound() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _relay_task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let autoplay = "--autoplay-policy=no-user-gesture-required";
    let fake_ui = "--use-fake-ui-for-media-stream";
    // No camera (refused), so Chrome lets nothing play with sound before a click.
    let listener = driver
        .browser_changed(
            &[autoplay, fake_ui],
            &["--use-fake-ui-for-media-stream=deny"],
        )
        .await;
    let caller = driver.browser_changed(&[autoplay], &[]).await;
    let base = format!("http://{relay}/?room=autoplay");
    listener.goto(&base).await.expect("open the listener");
    wait_for(
        &listener,
        "the listener told that the camera was refused",
        // Refused, as wanted; the page says so (and stays in the room to be called).
        "return document.getElementById('status').textContent.includes('denied')",
    )
    .await;
    caller
        .goto(&format!("{base}#true"))
        .await
        .expect("open the caller");
    // The picture plays anyway (without sound), and the page offers to start the sound.
    frames_beyond(&listener, 0).await;
    wait_for(
        &listener,
        "the start-audio button",
        "return !document.getElementById('startAudioButton').hidden
            && document.getElementById('remoteVideo').muted
            && !document.getElementById('remoteVideo').paused",
    )
    .await;
    screenshot(&listener, "click-to-start-audio", 360, 740).await;
    listener
        .find(Locator::Id("startAudioButton"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click it");
    wait_for(
        &listener,
        "the sound started",
        "const v = document.getElementById('remoteVideo');
         return !v.muted && !v.paused && document.getElementById('startAudioButton').hidden;",
    )
    .await;
    // The caller captures its camera, which usually lets it play sound at once; either way no
    // page is left with a paused tile and no way to start it.
    wait_for(
        &caller,
        "the caller's remote video playing, with sound or the button to start it",
        "const v = document.getElementById('remoteVideo');
         return v.srcObject && !v.paused
             && (!v.muted || !document.getElementById('startAudioButton').hidden);",
    )
    .await;
    listener.close().await.expect("close the listener");
    caller.close().await.expect("close the caller");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_code_cannot_start_says_so() {
    let _turn = CHROME_TURN.lock().await;
    // The real bundle with its WebAssembly cut short, as a download cut off would leave it.
    let broken = std::env::temp_dir().join(format!("e2e-broken-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    std::fs::create_dir_all(&broken).expect("a directory for the broken bundle");
    for entry in std::fs::read_dir(relay::dist_dir()).expect("dist/ (make test builds it)") {
        let path = entry.expect("a file of dist/").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        // The precompressed copies would be served instead; leave them out.
        if name.ends_with(".br") || name.ends_with(".gz") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read a file of dist/");
        if name.ends_with(".wasm") {
            bytes.truncate(bytes.len() / 2);
        }
        std::fs::write(broken.join(&name), bytes).expect("write the broken bundle");
    }
    let (addr, shutdown, _relay_task) = relay::start_with(
        ([127, 0, 0, 1], 0).into(),
        server::Config {
            dist: broken.clone(),
            ..server::Config::default()
        },
    )
    .await;
    let driver = Driver::start().await;
    let page = driver.browser().await;
    page.goto(&format!("http://{addr}/"))
        .await
        .expect("open the page");
    wait_for_state(&page, "the page to say it could not start", "error").await;
    let (_, text) = status_of(&page).await;
    assert!(text.contains("could not start"), "the page says {text:?}");
    assert!(
        !text.contains("CompileError"),
        "a raw exception shown: {text:?}"
    );
    page.close().await.expect("close");
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&broken);
}
