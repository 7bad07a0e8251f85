//! The room's door in real pages: the first in locks the room, sees who knocks, lets one in and
//! turns one away, removes someone (who is told, and does not come back by itself), and sets a
//! passphrase the relay checks before a newcomer gets in.
//!
//! Needs the release bundle in `dist/` and Chrome, as `call.rs` does. The buttons are pressed
//! with the element's own `click()`: the settings panel they sit in may be closed, and what is
//! tested here is what pressing them does.

use e2e::{
    browser::{decoding_everyone, status_of, wait_for, Driver},
    relay,
};
use fantoccini::Client;

/// The tests of this file take turns: each runs several Chromes, and two cores are few.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Presses the element `selector` of `page` (it must be there and enabled).
async fn press(page: &Client, selector: &str) {
    let done = page
        .execute(
            &format!(
                "const e = document.querySelector({selector:?});
                 if (!e || e.disabled) return false;
                 e.click(); return true;"
            ),
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(done, true, "{selector} is there and enabled");
}

/// Waits until `selector` matches an enabled element of `page`.
async fn wait_enabled(page: &Client, what: &str, selector: &str) {
    let script =
        format!("const e = document.querySelector({selector:?}); return !!e && !e.disabled;");
    wait_for(page, what, &script).await;
}

/// Types `text` into `passphraseInput` of `page` and presses `passphraseButton`.
async fn give_passphrase(page: &Client, text: &str) {
    wait_enabled(page, "the passphrase field", "#passphraseInput").await;
    page.execute(
        &format!("document.getElementById('passphraseInput').value = {text:?};"),
        vec![],
    )
    .await
    .expect("script runs");
    press(page, "#passphraseButton").await;
}

/// Waits until the status line of `page` says something containing `words`.
async fn wait_status(page: &Client, what: &str, words: &str) {
    let script =
        format!("return document.getElementById('status').textContent.includes({words:?});");
    wait_for(page, what, &script).await;
}

/// The sessions of the knocks `page` lists.
async fn knocks(page: &Client) -> Vec<String> {
    let value = page
        .execute(
            "return [...document.querySelectorAll('#knocks li')].map(k => k.dataset.session);",
            vec![],
        )
        .await
        .expect("script runs");
    value
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// How many remote tiles `page` shows.
async fn tiles(page: &Client) -> u64 {
    page.execute(
        "return document.querySelectorAll('#remotes figure[data-conn]').length;",
        vec![],
    )
    .await
    .expect("script runs")
    .as_u64()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_lets_a_knock_in_turns_one_away_and_removes_someone() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=door");
    let owner = driver.browser().await;
    owner.goto(&room).await.expect("open a page");
    // The first in is in control: the lock works for them.
    wait_enabled(&owner, "the lock for the first in", "#lockButton").await;
    press(&owner, "#lockButton").await;
    wait_for(
        &owner,
        "the lock pressed",
        "return document.getElementById('lockButton').getAttribute('aria-pressed') === 'true';",
    )
    .await;

    // A newcomer knocks, and waits, told why.
    let guest = driver.browser().await;
    guest
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    wait_status(&guest, "the guest told the room is locked", "locked").await;
    assert_eq!(status_of(&guest).await.0, "waiting");
    wait_for(
        &owner,
        "the knock listed",
        "return document.querySelectorAll('#knocks li').length === 1;",
    )
    .await;
    // The guest's own page shows no lock control: it is not in control.
    let lock_disabled = guest
        .execute(
            "return document.getElementById('lockButton').disabled;",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(lock_disabled, true);
    press(&owner, "#knocks [data-admit]").await;
    decoding_everyone(&owner, 1).await;
    decoding_everyone(&guest, 1).await;
    assert!(knocks(&owner).await.is_empty());

    // Another knocks and is turned away: it stops asking, and says so.
    let stranger = driver.browser().await;
    stranger
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    wait_for(
        &owner,
        "the second knock",
        "return document.querySelectorAll('#knocks li').length === 1;",
    )
    .await;
    press(&owner, "#knocks [data-refuse]").await;
    wait_status(
        &stranger,
        "the stranger told it was turned away",
        "did not let you in",
    )
    .await;
    assert_eq!(status_of(&stranger).await.0, "error");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        knocks(&owner).await.is_empty(),
        "a refused page knocks no more"
    );
    assert!(knocks(&guest).await.is_empty());

    // The guest sees no remove button; the owner removes the guest.
    let guest_buttons = guest
        .execute(
            "return document.querySelectorAll('[data-remove]').length;",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(guest_buttons, 0);
    press(&owner, "#remotes [data-remove]").await;
    wait_status(&guest, "the guest told it was removed", "removed").await;
    wait_for(
        &owner,
        "the guest's tile gone",
        "return document.querySelectorAll('#remotes figure[data-conn]').length === 0;",
    )
    .await;
    // It does not come back by itself.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(tiles(&owner).await, 0);
    assert!(knocks(&owner).await.is_empty());
    assert_eq!(tiles(&guest).await, 0);
    wait_status(&guest, "the guest still told it was removed", "removed").await;

    for page in [owner, guest, stranger] {
        page.close().await.expect("close the browser");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_is_refused_and_the_right_one_lets_the_call_start() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 6).await;
    let driver = Driver::start().await;
    let room = format!("http://{relay}/?room=secret");
    let owner = driver.browser().await;
    owner.goto(&room).await.expect("open a page");
    wait_enabled(&owner, "the lock for the first in", "#lockButton").await;
    give_passphrase(&owner, "open sesame").await;

    let guest = driver.browser().await;
    guest
        .goto(&format!("{room}#true"))
        .await
        .expect("open a page");
    wait_status(&guest, "the guest asked for the passphrase", "passphrase").await;
    give_passphrase(&guest, "open says me").await;
    wait_status(&guest, "the guest told it is wrong", "not this room").await;
    assert_eq!(tiles(&owner).await, 0, "nobody got in");
    give_passphrase(&guest, "open sesame").await;
    decoding_everyone(&owner, 1).await;
    decoding_everyone(&guest, 1).await;

    for page in [owner, guest] {
        page.close().await.expect("close the browser");
    }
    shutdown.cancel();
}
