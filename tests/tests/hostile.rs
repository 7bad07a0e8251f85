//! The page against a hostile relay: one that sends frames that are not JSON, unknown types,
//! wrong fields and megabytes (a stand-in relay written for these tests, [`e2e::standin`]).
//! The page must keep going, and never show an exception's text.

use std::time::Duration;

use e2e::{
    browser::{wait_for, Cdp, Driver},
    standin::{Script, StandIn},
};
use fantoccini::Client;
use serde_json::{json, Value};

/// The tests of this file take turns: each runs Chromes, and two cores are few.
static CHROME_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installed before the page's own scripts: keeps what the page writes with `console.error`
/// in `window.__consoleErrors` (a start that failed, say), beside the uncaught errors the
/// harness keeps in `window.__pageErrors` (a Rust panic in the page surfaces as an uncaught
/// `RuntimeError: unreachable`).
const CONSOLE_WATCH_JS: &str = r#"(() => {
  const kept = window.__consoleErrors = [];
  const error = console.error.bind(console);
  console.error = (...args) => { kept.push(args.map(String).join(' ')); error(...args); };
})();"#;

/// Words that only an exception, a panic or a value shown raw would put on the page.
const RAW_WORDS: [&str; 12] = [
    "Error:",
    "Exception",
    "undefined",
    "panicked",
    "RuntimeError",
    "unreachable",
    "JsValue(",
    "[object ",
    "NaN",
    "TypeError",
    "SyntaxError",
    "Uncaught",
];

/// A Chrome of `driver` whose console errors are kept (see [`CONSOLE_WATCH_JS`]).
async fn watched_browser(driver: &Driver) -> Client {
    let page = driver.browser().await;
    page.issue_cmd(Cdp::new(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": CONSOLE_WATCH_JS }),
    ))
    .await
    .expect("install the console watch");
    page
}

/// Asserts that `page` shows no exception's words, has had no uncaught error and wrote no
/// console error, and that what it shows stays of a reasonable size; `when` says at which
/// step of the test.
async fn assert_clean(page: &Client, when: &str) {
    let v = page
        .execute(
            "return [document.body.innerText, window.__pageErrors || [],
                     window.__consoleErrors || []];",
            vec![],
        )
        .await
        .expect("script runs");
    let text = v[0].as_str().unwrap_or_default();
    for word in RAW_WORDS {
        assert!(
            !text.contains(word),
            "{when}: the page shows {word:?}: {}",
            excerpt(text, word)
        );
    }
    assert_eq!(v[1], json!([]), "{when}: uncaught errors in the page");
    assert_eq!(v[2], json!([]), "{when}: console errors in the page");
    assert!(
        text.len() < 64 * 1024,
        "{when}: the page shows {} bytes of text, starting {:?}",
        text.len(),
        &text[..text.len().min(300)]
    );
}

/// `text` around the first `word`, for a failure's message.
fn excerpt(text: &str, word: &str) -> String {
    let at = text.find(word).unwrap_or(0);
    let from = text.floor_char_boundary(at.saturating_sub(120));
    let to = text.ceil_char_boundary((at + 120).min(text.len()));
    text[from..to].to_owned()
}

/// The relay messages `page` acted on, by type, from its call log (`pong` left out: it answers
/// the page's own heartbeat).
async fn relay_inputs(page: &Client) -> Vec<String> {
    let v = page
        .execute(
            "return (window.__callLog || []).map(l => (l.match(/ in  Relay\\((\\w+)/) || [])[1])
                .filter(t => t && t !== 'Pong');",
            vec![],
        )
        .await
        .expect("script runs");
    serde_json::from_value(v).expect("a list of types")
}

/// The relay's `welcome` for peer `id` with `peers` (ids and sessions) in the room.
fn welcome(id: u64, peers: &[(u64, &str)]) -> Value {
    let peers: Vec<Value> = peers
        .iter()
        .map(|(id, session)| json!({ "id": id, "session": session }))
        .collect();
    json!({ "type": "welcome", "id": id, "room": "hostile", "peers": peers,
            "iceServers": [], "resumeToken": format!("token-{id}") })
}

/// Opens `url` on `page`, takes its socket and its `join`, and welcomes it as peer 1 with
/// `peers` in the room.
async fn open_and_welcome(
    page: &Client,
    standin: &mut StandIn,
    url: &str,
    peers: &[(u64, &str)],
) -> Script {
    page.goto(url).await.expect("open the page");
    let mut script = standin.accept().await;
    let join = script.recv_type("join").await;
    assert_eq!(join["room"], "hostile", "{join}");
    script.send_json(&welcome(1, peers));
    script
}

/// `n` bytes of JSON-free text that ends nowhere a parser would like.
fn garbage(n: usize) -> String {
    "{\"type\":\"welcome\",\u{1}}]"
        .chars()
        .cycle()
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_from_the_relay_are_read_past() {
    let _turn = CHROME_TURN.lock().await;
    let mut standin = StandIn::start().await;
    let driver = Driver::start().await;
    let page = watched_browser(&driver).await;
    let url = format!("{}/?room=hostile", standin.url());
    let script = open_and_welcome(&page, &mut standin, &url, &[]).await;
    wait_for(
        &page,
        "the page to wait alone in the room",
        "const s = document.getElementById('status');
         return s.dataset.state === 'waiting' && s.textContent.includes('Waiting for the other');",
    )
    .await;

    let two_mb = 2 * 1024 * 1024;
    let frames = [
        "not json at all".to_owned(),
        String::new(),
        "null".to_owned(),
        "[1,2,3]".to_owned(),
        "\"a string\"".to_owned(),
        "{\"type\":".to_owned(),
        // JSON, of types nobody knows.
        r#"{"no":"type"}"#.to_owned(),
        r#"{"type":"no-such-type","peer":{"id":2}}"#.to_owned(),
        r#"{"type":7}"#.to_owned(),
        // Known types with wrong fields.
        r#"{"type":"welcome","id":"one","peers":{},"iceServers":null}"#.to_owned(),
        r#"{"type":"peer-joined","peer":{"id":-1}}"#.to_owned(),
        r#"{"type":"peer-joined","peer":{"id":1e300}}"#.to_owned(),
        r#"{"type":"peer-joined","peer":{"id":9007199254740993}}"#.to_owned(),
        r#"{"type":"peer-left","peer":"2"}"#.to_owned(),
        r#"{"type":"offer","from":2}"#.to_owned(),
        r#"{"type":"candidate","from":2,"candidate":[1,2]}"#.to_owned(),
        r#"{"type":"ice-servers","iceServers":[{"urls":7}]}"#.to_owned(),
        r#"{"type":"error","kind":{"nested":true}}"#.to_owned(),
        r#"{"type":"pong","extra":"\ud800"}"#.to_owned(),
        // Two megabytes: of garbage, and of JSON of an unknown type.
        garbage(two_mb),
        format!(r#"{{"type":"padding","pad":"{}"}}"#, "x".repeat(two_mb)),
    ];
    for frame in &frames {
        script.send(frame.clone());
    }

    // The page still listens: somebody comes in, and it says so.
    script.send_json(&json!({ "type": "peer-joined",
                              "peer": { "id": 2, "name": "Bo", "session": "s2" } }));
    wait_for(
        &page,
        "the page to see the newcomer after the garbage",
        "const s = document.getElementById('status');
         return s.dataset.state === 'waiting' && s.textContent.includes('The other person is here');",
    )
    .await;
    // Of it all, the page took only what it could read as a relay's message.
    assert_eq!(
        relay_inputs(&page).await,
        ["Welcome", "PeerJoined"],
        "what the page took as messages from the relay"
    );
    assert_clean(&page, "after malformed frames").await;
    // Nothing of it was taken for a lost relay: the page kept its socket.
    assert!(
        !standin.another_socket(Duration::from_millis(500)).await,
        "the page opened another socket to the relay"
    );
    page.close().await.expect("close the page");
}
