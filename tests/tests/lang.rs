//! The page in the person's language: English, Traditional and Simplified Chinese, chosen by
//! `?lang=`, by the browser's languages, or on the page (`langSelect`), and remembered. In
//! Chinese no English is left on the page, in a call too; a browser that cannot make calls is
//! told so in its language, never with an exception's text.

use e2e::{
    browser::{call_between, status_of, wait_for, wait_for_state, Cdp, Driver},
    relay,
};
use fantoccini::Client;
use serde_json::json;

/// The tests of this file take turns: each runs Chromes, and two cores are few.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Words of three or more Latin letters the page shows (its visible text, outside the device
/// choices, and its placeholders, labels and titles), leaving out the names of things that are
/// not translated.
const ENGLISH_LEFT: &str = r#"
    const names = new Set(['WebRTC', 'WebSocket', 'JavaScript', 'WebAssembly', 'Chrome', 'Edge',
        'Firefox', 'Safari', 'STUN', 'TURN', 'ICE', 'NAT', 'README', 'English']);
    const words = (text) => (text || '').split(/[^A-Za-z]+/).filter(w => w.length >= 3 && !names.has(w));
    const found = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) {
        const parent = node.parentElement;
        if (!parent || parent.closest('select, script, style, noscript, [hidden]')) continue;
        if (!parent.checkVisibility()) continue;
        for (const w of words(node.textContent)) found.push(w + ' in ' + (parent.id || parent.tagName));
    }
    for (const el of document.querySelectorAll('[placeholder], [aria-label], [title]')) {
        if (el.closest('[hidden]')) continue;
        for (const attr of ['placeholder', 'aria-label', 'title']) {
            for (const w of words(el.getAttribute(attr))) found.push(w + ' in @' + attr + ' of ' + (el.id || el.tagName));
        }
    }
    return found;"#;

/// The English words left on `page`.
async fn english_left(page: &Client) -> Vec<String> {
    let found = page
        .execute(ENGLISH_LEFT, vec![])
        .await
        .expect("script runs");
    found
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

/// `<html lang>` of `page`.
async fn html_lang(page: &Client) -> String {
    page.execute("return document.documentElement.lang;", vec![])
        .await
        .expect("script runs")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `page` is shown in `tag` (`<html lang>` and the language choice).
async fn wait_for_lang(page: &Client, tag: &str) {
    wait_for(
        page,
        &format!("the page in {tag}"),
        &format!(
            "return document.documentElement.lang === '{tag}'
                && document.getElementById('langSelect').value === '{tag}';"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_speaks_the_language_asked_for_and_leaves_no_english() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let driver = Driver::start().await;
    for (tag, waiting) in [
        ("zh-Hant", "正在等待對方開啟這個頁面…"),
        ("zh-Hans", "正在等待对方打开这个页面…"),
        ("en", "Waiting for the other person to open the page…"),
    ] {
        let page = driver.browser().await;
        page.goto(&format!("http://{relay}/?room=lang-{tag}&lang={tag}"))
            .await
            .expect("open the page");
        wait_for_state(&page, "the page to wait in the room", "waiting").await;
        wait_for_lang(&page, tag).await;
        let (_, text) = status_of(&page).await;
        assert_eq!(text, waiting, "{tag}");
        let left = english_left(&page).await;
        if tag == "en" {
            // The check sees English where there is some.
            assert!(left.len() > 10, "English not seen in English: {left:?}");
        } else {
            assert!(left.is_empty(), "English left in {tag}: {left:?}");
        }
        page.close().await.expect("close");
    }

    // A call in Traditional Chinese: the status, the tiles, their verification codes and the
    // path, all in it.
    let callee = driver.browser().await;
    let caller = driver.browser().await;
    call_between(
        &callee,
        &format!("http://{relay}/?room=lang-call&lang=zh-Hant"),
        &caller,
        &format!("http://{relay}/?room=lang-call"),
    )
    .await;
    wait_for_lang(&callee, "zh-Hant").await;
    wait_for_state(&callee, "the connected status", "connected").await;
    let (_, text) = status_of(&callee).await;
    assert_eq!(text, "已連線。");
    wait_for(
        &callee,
        "the verification code and the path",
        "return !!document.getElementById('verifyCode').dataset.code
            && document.getElementById('connectionPath').textContent !== '';",
    )
    .await;
    let left = english_left(&callee).await;
    assert!(left.is_empty(), "English left in a call: {left:?}");
    // The caller's page asked for no language: the browser's (English here) is shown.
    assert_eq!(html_lang(&caller).await, "en");
    for page in [callee, caller] {
        page.close().await.expect("close");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_language_is_followed_and_a_choice_on_the_page_is_kept() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let driver = Driver::start().await;
    let page = driver
        .browser_changed(&[], &["--accept-lang=zh-TW,zh,en"])
        .await;
    let url = format!("http://{relay}/?room=lang-choice");
    page.goto(&url).await.expect("open the page");
    wait_for_state(&page, "the page to wait in the room", "waiting").await;
    wait_for_lang(&page, "zh-Hant").await;

    // Chosen on the page: shown at once, everything said again in it.
    page.execute(
        "const s = document.getElementById('langSelect');
         s.value = 'zh-Hans'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .expect("choose a language");
    wait_for_lang(&page, "zh-Hans").await;
    wait_for(
        &page,
        "the status line in Simplified Chinese",
        "return document.getElementById('status').textContent === '正在等待对方打开这个页面…';",
    )
    .await;
    let left = english_left(&page).await;
    assert!(left.is_empty(), "English left after the choice: {left:?}");

    // And kept: the page opened again is in it, though the browser prefers another.
    page.goto(&url).await.expect("open the page again");
    wait_for_state(&page, "the page to wait in the room", "waiting").await;
    wait_for_lang(&page, "zh-Hans").await;
    page.close().await.expect("close");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_webrtc_is_told_so_in_its_language() {
    let _turn = CHROME_TURN.lock().await;
    let (relay, shutdown, _task) = relay::start(([127, 0, 0, 1], 0).into(), 2).await;
    let driver = Driver::start().await;
    for (tag, says) in [
        (
            "en",
            "This browser cannot make video calls: it has no WebRTC.",
        ),
        ("zh-Hant", "這個瀏覽器無法進行視訊通話：它不支援 WebRTC。"),
        ("zh-Hans", "这个浏览器无法进行视频通话：它不支持 WebRTC。"),
    ] {
        let page = driver.browser().await;
        // As in a WebKit built without WebRTC: the camera is there, the connection is not.
        page.issue_cmd(Cdp::new(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;" }),
        ))
        .await
        .expect("take WebRTC away");
        page.goto(&format!("http://{relay}/?room=no-webrtc&lang={tag}"))
            .await
            .expect("open the page");
        wait_for_state(&page, "the page to say it cannot call", "error").await;
        let (_, text) = status_of(&page).await;
        assert!(text.starts_with(says), "{tag}: the page says {text:?}");
        for exception in [
            "RTCPeerConnection",
            "ReferenceError",
            "not defined",
            "variable",
        ] {
            assert!(
                !text.contains(exception),
                "{tag}: an exception shown: {text:?}"
            );
        }
        let call_enabled = page
            .execute(
                "return !document.getElementById('callButton').disabled;",
                vec![],
            )
            .await
            .expect("script runs");
        assert_eq!(call_enabled, json!(false), "{tag}: Call offered");
        if tag != "en" {
            let left = english_left(&page).await;
            assert!(left.is_empty(), "English left in {tag}: {left:?}");
        }
        page.close().await.expect("close");
    }
    shutdown.cancel();
}
