//! The page against a hostile relay: one that sends frames that are not JSON, unknown types,
//! wrong fields, megabytes and events out of order (a stand-in relay written for these tests,
//! [`e2e::standin`]). The page must keep going, stay sane (one tile per call, no connection
//! out of its sight), and never show an exception's text.

use std::time::Duration;

use e2e::{
    browser::{call_log, status_of, wait_for, Cdp, Driver},
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

/// The remote tiles `page` shows: `[data-peer, caption]` each.
async fn tiles_of(page: &Client) -> Vec<(String, String)> {
    let v = page
        .execute(
            "return [...document.querySelectorAll('#remotes figure[data-conn]')]
                .map(f => [f.dataset.peer, f.querySelector('figcaption').textContent]);",
            vec![],
        )
        .await
        .expect("script runs");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t[0].as_str().unwrap_or_default().to_owned(),
                t[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until `page` shows tiles for exactly `peers` (relay ids), in that order.
async fn wait_for_tiles(page: &Client, peers: &[u64], when: &str) {
    let want: Vec<String> = peers.iter().map(u64::to_string).collect();
    let script = format!(
        "return JSON.stringify([...document.querySelectorAll('#remotes figure[data-conn]')]
            .map(f => f.dataset.peer)) === {:?};",
        serde_json::to_string(&want).expect("json")
    );
    wait_for(page, &format!("tiles for {peers:?} {when}"), &script).await;
}

/// Asserts that every peer connection `page` has open (the harness keeps them all in
/// `window.__pcs`) shows as a tile: none lives on out of the page's sight.
async fn every_connection_shown(page: &Client, when: &str) {
    let v = page
        .execute(
            "return [(window.__pcs || []).filter(pc => pc.signalingState !== 'closed').length,
                     document.querySelectorAll('#remotes figure[data-conn]').length];",
            vec![],
        )
        .await
        .expect("script runs");
    if v[0] != v[1] {
        eprintln!(
            "{when}: what opened and closed connections:\n{}",
            call_log(page, "Open|Close|PeerJoined|PeerLeft", 40).await
        );
    }
    assert_eq!(v[0], v[1], "{when}: open connections, then tiles");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_of_order_leave_the_page_sane() {
    let _turn = CHROME_TURN.lock().await;
    let mut standin = StandIn::start().await;
    let driver = Driver::start().await;
    let page = watched_browser(&driver).await;
    // A calling page: every person it knows of gets a tile, so that duplicates would show.
    let url = format!("{}/?room=hostile#true", standin.url());
    let mut script = open_and_welcome(&page, &mut standin, &url, &[(2, "s2")]).await;
    let offer = script.recv_type("offer").await;
    assert_eq!(offer["to"], 2, "{offer}");
    wait_for_tiles(&page, &[2], "after the welcome").await;

    // Signals nobody asked for: an answer from a peer never offered to, candidates and a
    // hang-up from peers never heard of, a peer leaving who never came, and an answer from
    // peer 2 to an offer it never got (other m-lines than ours).
    let stray = [
        json!({ "type": "answer", "from": 7, "sdp": "v=0\r\n" }),
        json!({ "type": "candidate", "from": 8,
                "candidate": { "candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host",
                               "sdpMid": "0", "sdpMLineIndex": 0 } }),
        json!({ "type": "hang-up", "from": 98 }),
        json!({ "type": "peer-left", "peer": 99 }),
        json!({ "type": "answer", "from": 2, "sdp": "v=0\r\na=mid:zz\r\n" }),
    ];
    for msg in &stray {
        script.send_json(msg);
    }
    // The same welcome again, and the same person joining twice: still one tile each.
    script.send_json(&welcome(1, &[(2, "s2")]));
    script.send_json(&json!({ "type": "peer-joined", "peer": { "id": 2, "session": "s2" } }));
    for _ in 0..2 {
        script.send_json(&json!({ "type": "peer-joined", "peer": { "id": 3, "session": "s3" } }));
    }
    wait_for_tiles(&page, &[2, 3], "after the repeats").await;
    every_connection_shown(&page, "after the repeats").await;
    // The id of 3 for somebody else (as after a relay restart, which hands ids out again): a
    // call of their own, and the call with the first 3 stays until it ends by itself.
    script.send_json(&json!({ "type": "peer-joined", "peer": { "id": 3, "session": "s3-again" } }));
    wait_for(
        &page,
        "a connection for the second 3",
        "return (window.__pcs || []).filter(pc => pc.signalingState !== 'closed').length === 3;",
    )
    .await;
    every_connection_shown(&page, "after 3 came twice").await;
    wait_for_tiles(&page, &[2, 3, 3], "after 3 came twice").await;
    // A name no relay would pass on (the relay allows 64 bytes): not shown.
    let long_name = "N".repeat(2 * 1024 * 1024);
    script.send_json(&json!({ "type": "peer-joined",
                              "peer": { "id": 4, "session": "s4", "name": long_name } }));
    wait_for_tiles(&page, &[2, 3, 3, 4], "after a person with a 2 MB name").await;
    let tiles = tiles_of(&page).await;
    assert!(
        tiles.iter().all(|(_, caption)| caption.len() < 200),
        "a caption of {} bytes",
        tiles.iter().map(|(_, c)| c.len()).max().unwrap_or(0)
    );

    // The page still acts on what makes sense: 4 and both 3s leave (the one the relay named
    // last first), 2 stays.
    for gone in [4, 3, 3] {
        script.send_json(&json!({ "type": "peer-left", "peer": gone }));
    }
    wait_for_tiles(&page, &[2], "after 3 and 4 left").await;
    every_connection_shown(&page, "after 3 and 4 left").await;
    let (state, text) = status_of(&page).await;
    assert_eq!(state, "connecting", "{text}");
    // No stray answer or candidate was handed to a connection.
    let applied = call_log(&page, "ApplyAnswer|AddCandidate", 10).await;
    assert_eq!(applied.lines().count(), 1, "{applied}");
    assert_clean(&page, "after events out of order").await;
    // It kept its socket, and offered to nobody it should not have.
    assert!(
        !standin.another_socket(Duration::from_millis(500)).await,
        "the page opened another socket to the relay"
    );
    for msg in script.unread() {
        if let Some(to) = msg.get("to") {
            assert!(
                [2, 3, 4].contains(&to.as_u64().unwrap_or(0)),
                "the page signalled to {to}: {msg}"
            );
        }
    }
    page.close().await.expect("close the page");
}
