//! The client's own tests, run by wasm-bindgen-test in a real headless Chromium with a fake
//! camera and microphone (see `client/webdriver.json`).
//!
//! Two [`Peer`]s on the same page negotiate with each other directly, the test passing their
//! offers, answers and candidates by hand: no relay, no second browser. Run them inside
//! `scripts/loopback-only.sh` so Chrome's traffic never leaves the machine:
//!
//! ```sh
//! CHROMEDRIVER=/usr/bin/chromedriver scripts/loopback-only.sh \
//!     cargo test -p client --target wasm32-unknown-unknown
//! ```
//!
//! Nothing here asserts how long something takes: every wait polls and gives up, with a
//! message saying what it was waiting for, after [`PATIENCE_MS`].

use client::{
    app::Options,
    core::Status,
    diagnose::{self, IceServerError},
    media::open_camera_and_microphone,
    peer::{self, Peer, PeerEvent},
    text::{Lang, Text},
    ui::{Button, Ui},
};
use futures::channel::mpsc::{self, TryRecvError, UnboundedReceiver};
use js_sys::{Date, Promise};
use protocol::IceCandidate;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{
    Document, HtmlVideoElement, MediaStream, MediaStreamTrack, RtcIceCandidateInit,
    RtcIceGatheringState, RtcPeerConnection, RtcPeerConnectionState, RtcSignalingState,
};

wasm_bindgen_test_configure!(run_in_browser);

/// How long any one wait may take before the test fails. Generous: shared two-core machines.
const PATIENCE_MS: f64 = 20_000.0;

/// How often a wait looks again.
const POLL_MS: i32 = 25;

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        web_sys::window()
            .expect("a window")
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .expect("setTimeout");
    });
    JsFuture::from(promise).await.expect("a timer never fails");
}

/// The end of a bounded wait.
struct Deadline {
    until: f64,
}

impl Deadline {
    fn start() -> Self {
        Self {
            until: Date::now() + PATIENCE_MS,
        }
    }

    /// Sleeps a moment; fails the test, saying what it waited for, once the time is up.
    async fn tick(&self, waiting_for: impl FnOnce() -> String) {
        if Date::now() > self.until {
            panic!(
                "gave up after {} s waiting for {}",
                PATIENCE_MS / 1000.0,
                waiting_for()
            );
        }
        sleep(POLL_MS).await;
    }
}

/// Polls `done` until it holds; fails the test after [`PATIENCE_MS`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Deadline::start();
    while !done() {
        deadline.tick(|| what.to_owned()).await;
    }
}

fn document() -> Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a document")
}

/// A muted, autoplaying `<video>` in the test page, showing `stream`.
fn video_showing(stream: &MediaStream) -> HtmlVideoElement {
    let document = document();
    let video: HtmlVideoElement = document
        .create_element("video")
        .expect("create <video>")
        .dyn_into()
        .expect("a <video> is an HtmlVideoElement");
    video.set_muted(true);
    video.set_autoplay(true);
    video.set_src_object(Some(stream));
    document
        .body()
        .expect("a body")
        .append_child(&video)
        .expect("append the <video>");
    video
}

/// Waits until `video` has decoded a frame: its size is known only then.
async fn wait_for_frames(video: &HtmlVideoElement, whose: &str) {
    wait_until(
        &format!("{whose} video to show a frame (videoWidth > 0)"),
        || video.video_width() > 0,
    )
    .await;
}

/// Stops every track of `stream`, releasing the fake camera and microphone.
fn stop(stream: &MediaStream) {
    for track in stream.get_tracks() {
        track.unchecked_into::<MediaStreamTrack>().stop();
    }
}

/// One side of a call: a [`Peer`] and what it has reported so far.
struct Side {
    name: &'static str,
    peer: Peer,
    events: UnboundedReceiver<PeerEvent>,
    /// Local candidates not yet passed to the other side.
    candidates: Vec<IceCandidate>,
    /// Every connection state reported, in order.
    states: Vec<RtcPeerConnectionState>,
    /// Every remote stream reported, in order.
    tracks: Vec<MediaStream>,
    /// Every STUN/TURN server error reported, in order.
    ice_errors: Vec<IceServerError>,
    /// How many times the connection asked for a negotiation.
    negotiations: u32,
    chats: Vec<String>,
}

impl Side {
    fn new(name: &'static str) -> Self {
        let (tx, events) = mpsc::unbounded();
        let peer = Peer::new(None, &[], move |event| {
            let _ = tx.unbounded_send(event);
        })
        .expect("create a peer connection");
        Self {
            name,
            peer,
            events,
            candidates: Vec::new(),
            states: Vec::new(),
            tracks: Vec::new(),
            ice_errors: Vec::new(),
            negotiations: 0,
            chats: Vec::new(),
        }
    }

    /// Takes in what the peer has reported since the last call.
    fn collect(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                PeerEvent::Candidate(candidate) => self.candidates.push(candidate),
                PeerEvent::State(state) => self.states.push(state),
                PeerEvent::Track(stream) => self.tracks.push(stream),
                PeerEvent::IceServerError(error) => self.ice_errors.push(error),
                PeerEvent::NegotiationNeeded => self.negotiations += 1,
                PeerEvent::Chat(frame) => self.chats.push(frame.into()),
                PeerEvent::FileText(_) | PeerEvent::FileBytes(_) => {}
            }
        }
    }

    /// Whether the last connection state the peer reported is `Connected`.
    fn connected(&self) -> bool {
        self.states.last() == Some(&RtcPeerConnectionState::Connected)
    }

    fn describe(&self) -> String {
        let pc = self.peer.connection();
        format!(
            "{}: reported states {:?}, now {:?} (ICE {:?}, signaling {:?})",
            self.name,
            self.states,
            pc.connection_state(),
            pc.ice_connection_state(),
            pc.signaling_state()
        )
    }
}

/// Adds `candidates` to `to`, emptying the list.
fn deliver(candidates: &mut Vec<IceCandidate>, to: &Peer) {
    for candidate in std::mem::take(candidates) {
        to.add_candidate(candidate);
    }
}

/// Trickles candidates both ways until both sides report `Connected`.
async fn connect(a: &mut Side, b: &mut Side) {
    let deadline = Deadline::start();
    loop {
        a.collect();
        b.collect();
        deliver(&mut a.candidates, &b.peer);
        deliver(&mut b.candidates, &a.peer);
        if a.connected() && b.connected() {
            return;
        }
        deadline
            .tick(|| format!("both sides to connect; {}; {}", a.describe(), b.describe()))
            .await;
    }
}

/// A full call between two peers on this page: A sends the fake camera, B has none (as in the
/// app, it asks to receive anyway), candidates trickle both ways; B must show A's video.
#[wasm_bindgen_test]
async fn two_peers_negotiate_connect_and_carry_video() {
    let local = open_camera_and_microphone()
        .await
        .expect("the fake camera and microphone");
    let mut a = Side::new("A");
    let mut b = Side::new("B");
    a.peer.send_media(Some(&local));
    // B answers: its connection takes the offer's transceivers (as the page does).

    let offer = a.peer.create_offer().await.expect("A creates an offer");
    assert!(
        offer.contains("m=video"),
        "the offer has no video:\n{offer}"
    );
    assert!(a.peer.has_local_offer(), "A should wait for an answer");
    let answer = b.peer.accept_offer(&offer, None).await.expect("B answers");
    assert!(!b.peer.has_local_offer(), "B answered; it has no offer out");
    // Without a camera B still answers send-receive: a camera opened later needs no new
    // negotiation.
    assert!(
        !answer.contains("a=recvonly") && answer.contains("a=sendrecv"),
        "B's answer should be send-receive:\n{answer}"
    );
    a.peer
        .accept_answer(&answer)
        .await
        .expect("A applies the answer");
    assert!(!a.peer.has_local_offer(), "A's offer was answered");
    assert_eq!(
        a.peer.connection().signaling_state(),
        RtcSignalingState::Stable
    );

    connect(&mut a, &mut b).await;
    assert_eq!(
        a.peer.connection().connection_state(),
        RtcPeerConnectionState::Connected
    );
    // Two peers of one page talk over the machine's own addresses: the stats say so.
    let report = a.peer.stats().await.expect("getStats");
    let stats = peer::stat_entries(&report).expect("a stats report");
    assert!(
        stats.iter().any(|s| s.kind == "candidate-pair"),
        "no candidate pairs in {stats:?}"
    );
    assert_eq!(
        diagnose::selected_path(&stats).map(|p| p.as_str()),
        Some("host"),
        "{stats:?}"
    );
    assert!(a.ice_errors.is_empty() && b.ice_errors.is_empty());
    assert_eq!(
        b.peer.connection().connection_state(),
        RtcPeerConnectionState::Connected
    );
    // B sends nothing yet, but its tracks are there on A's side, ready for its camera.
    assert!(!a.tracks.is_empty(), "A has no receiving tracks from B");

    let remote = b
        .tracks
        .iter()
        .find(|stream| stream.get_video_tracks().length() > 0)
        .unwrap_or_else(|| panic!("B reported no stream with a video track: {:?}", b.tracks))
        .clone();
    let video = video_showing(&remote);
    wait_for_frames(&video, "B's remote").await;

    // Chat rides on the connection's data channel, negotiated in the same offer.
    a.peer.send_chat(&client::chat::encode("hello <b>B</b>", 1));
    wait_until("A's chat message at B", || {
        b.collect();
        !b.chats.is_empty()
    })
    .await;
    let Ok(client::chat::Frame::Chat(wire)) =
        client::chat::decode(client::json::parse(&b.chats[0]).expect("a JSON frame"))
    else {
        panic!("not a chat frame: {:?}", b.chats[0]);
    };
    assert_eq!(wire.text, "hello <b>B</b>");

    video.remove();
    stop(&local);
}

/// The bug of the original pages: candidates that arrive before the offer. The browser refuses
/// them then, so they must be kept until B has the offer (the engine keeps them: `Link::pending`
/// in `core.rs`, tested there), then applied. B's own candidates are withheld from A, so the
/// connection can only come up if B really applied A's early candidates: A then learns B's
/// address from B's connectivity checks.
#[wasm_bindgen_test]
async fn candidates_before_the_offer_are_refused_then_applied_after_it() {
    let mut a = Side::new("A");
    let mut b = Side::new("B");
    a.peer.send_media(None);
    let offer = a.peer.create_offer().await.expect("A creates an offer");

    // All of A's candidates, before B has seen the offer.
    wait_until("A to finish gathering candidates", || {
        a.peer.connection().ice_gathering_state() == RtcIceGatheringState::Complete
    })
    .await;
    a.collect();
    let early = std::mem::take(&mut a.candidates);
    assert!(!early.is_empty(), "A gathered no candidates");

    // What the original pages did: the browser itself refuses a candidate this early.
    let bare = RtcPeerConnection::new().expect("a bare RTCPeerConnection");
    let init = RtcIceCandidateInit::new(&early[0].candidate);
    init.set_sdp_mid(early[0].sdp_mid.as_deref());
    init.set_sdp_m_line_index(early[0].sdp_m_line_index);
    let refused =
        JsFuture::from(bare.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await;
    assert!(
        refused.is_err(),
        "the browser accepted a candidate before the remote description"
    );
    bare.close();

    let answer = b.peer.accept_offer(&offer, None).await.expect("B answers");
    // What the engine does once the offer is in place: the kept candidates go in, in order.
    for candidate in early {
        b.peer.add_candidate(candidate);
    }
    a.peer
        .accept_answer(&answer)
        .await
        .expect("A applies the answer");

    let deadline = Deadline::start();
    loop {
        a.collect();
        b.collect();
        // Withhold B's candidates; A has no more to give.
        b.candidates.clear();
        a.candidates.clear();
        if a.connected() && b.connected() {
            break;
        }
        deadline
            .tick(|| {
                format!(
                    "a connection through A's early candidates only; {}; {}",
                    a.describe(),
                    b.describe()
                )
            })
            .await;
    }
}

/// The fake camera and microphone open, and the camera shows in a `<video>`.
#[wasm_bindgen_test]
async fn camera_opens_and_shows_in_a_video() {
    let stream = open_camera_and_microphone()
        .await
        .expect("the fake camera and microphone");
    assert_eq!(stream.get_video_tracks().length(), 1, "video tracks");
    assert_eq!(stream.get_audio_tracks().length(), 1, "audio tracks");
    for track in stream.get_tracks() {
        let track: MediaStreamTrack = track.unchecked_into();
        assert!(track.enabled(), "{} track disabled", track.kind());
    }

    let video = video_showing(&stream);
    wait_for_frames(&video, "the local").await;
    assert!(video.video_height() > 0);

    video.remove();
    stop(&stream);
}

/// Dropping a [`Peer`] closes its connection and unregisters its handlers: nothing is reported
/// afterwards, not even for an event dispatched on the connection by hand.
#[wasm_bindgen_test]
async fn dropping_a_peer_closes_its_connection() {
    let (tx, mut events) = mpsc::unbounded();
    let peer = Peer::new(None, &[], move |event| {
        let _ = tx.unbounded_send(event);
    })
    .expect("create a peer connection");
    peer.send_media(None);
    peer.create_offer().await.expect("create an offer");
    let pc: RtcPeerConnection = peer.connection().clone();
    let state_change = || web_sys::Event::new("connectionstatechange").expect("an event");

    // While the peer lives, its handler reports (the control for the check after the drop).
    pc.dispatch_event(&state_change()).expect("dispatch");
    let mut before = Vec::new();
    while let Ok(event) = events.try_recv() {
        before.push(event);
    }
    assert!(
        before.iter().any(|e| matches!(e, PeerEvent::State(_))),
        "a live peer did not report its state: {before:?}"
    );

    drop(peer);
    assert_eq!(pc.signaling_state(), RtcSignalingState::Closed);
    assert_eq!(pc.connection_state(), RtcPeerConnectionState::Closed);
    assert!(pc.onicecandidate().is_none(), "onicecandidate still set");
    assert!(pc.ontrack().is_none(), "ontrack still set");
    assert!(
        pc.onconnectionstatechange().is_none(),
        "onconnectionstatechange still set"
    );

    pc.dispatch_event(&state_change()).expect("dispatch");
    // `Closed`: nothing came, and nothing can come: the handlers, which held the channel's
    // sender, were freed. `Empty` would mean a handler (and its sender) is still alive.
    match events.try_recv() {
        Err(TryRecvError::Closed) => {}
        Ok(event) => panic!("a dropped peer reported {event:?}"),
        Err(TryRecvError::Empty) => {
            panic!("a dropped peer's handlers are still alive (the channel is open)")
        }
    }
}

/// The options come from the page's address; changed with `history.replaceState`, which does
/// not navigate away from the tests.
#[wasm_bindgen_test]
fn options_come_from_the_address() {
    let window = web_sys::window().expect("a window");
    let location = window.location();
    let history = window.history().expect("a history");
    let original = location.href().expect("href");
    let host = location.host().expect("host");
    let at = |url: &str| {
        history
            .replace_state_with_url(&JsValue::NULL, "", Some(url))
            .expect("replaceState");
        Options::from_location(&location).expect("options")
    };

    let room_and_caller = at("?room=kitchen#true");
    let no_room = at("?room=#false");
    let plain = at("?");
    let named = at("?name=Zoe");
    let chinese = at("?lang=zh-TW");
    // Asked for by the address, it is kept: the next page without `?lang=` shows it too.
    let kept = at("?");
    if let Some(storage) = window.local_storage().expect("storage") {
        storage.remove_item("lang").expect("forget the language");
    }
    history
        .replace_state_with_url(&JsValue::NULL, "", Some(&original))
        .expect("restore the address");

    assert_eq!(
        room_and_caller,
        Options {
            caller: true,
            room: "kitchen".to_owned(),
            // The tests are served over http, so the relay is plain ws on the same host.
            relay_url: format!("ws://{host}/ws"),
            name: None,
            // The browser's language (the test browser's is English).
            lang: Lang::En,
        }
    );
    assert_eq!(chinese.lang, Lang::ZhHant);
    assert_eq!(kept.lang, Lang::ZhHant);
    assert_eq!(no_room.room, protocol::DEFAULT_ROOM, "an empty room name");
    assert!(!no_room.caller, "#false is not the caller");
    assert_eq!(plain.room, protocol::DEFAULT_ROOM);
    assert!(!plain.caller);
    assert_eq!(named.name.as_deref(), Some("Zoe"));
}

/// `Ui::find` names the missing or wrong element, and works on the page's elements.
#[wasm_bindgen_test]
fn ui_finds_the_page_elements_or_says_which_is_missing() {
    let message = |result: Result<Ui, JsValue>| match result {
        Ok(_) => panic!("found elements that are not there"),
        Err(err) => err.as_string().expect("a string error"),
    };
    let page = |body: &str| {
        let document = document()
            .implementation()
            .expect("a DOMImplementation")
            .create_html_document()
            .expect("a new document");
        document.body().expect("a body").set_inner_html(body);
        document
    };
    let complete = r#"<figure class="me"><video id="localVideo"></video></figure>
        <div id="remotes"><figure><video id="remoteVideo"></video></figure></div>
        <button id="startButton"></button><button id="callButton"></button>
        <button id="hangupButton"></button><p id="status"></p><p id="connectionPath"></p>
        <input id="chatInput"><button id="chatSend"></button><div id="chatLog"></div>
        <p id="chatNote"></p><button id="muteButton"></button><button id="cameraButton"></button>
        <input id="nameInput"><button id="nameButton"></button><p id="nameNote"></p>
        <button id="copyLinkButton"></button><button id="newRoomButton"></button>
        <p id="inviteNote"></p><button id="startAudioButton"></button>
        <button id="statsButton"></button><div id="stats"></div><button id="shareButton"></button>
        <select id="cameraSelect"></select><select id="micSelect"></select>
        <select id="langSelect"></select><button id="handButton"></button>
        <button id="reactionButton"></button><span id="reactions"></span>
        <button id="noiseButton"></button><meter id="micLevel"></meter>
        <input id="fileInput" type="file"><select id="fileTo"></select><ul id="transfers"></ul>
        <button id="chatPanelButton"></button><div id="chatPanel"></div>
        <button id="settingsPanelButton"></button><div id="settingsPanel"></div>"#;

    // The elements of what people do in a call are looked for first (see `InCall`).
    assert_eq!(message(Ui::find(&page(""))), "the page has no #handButton");
    assert_eq!(
        message(Ui::find(&page(
            &complete.replace(r#"<p id="status"></p>"#, "")
        ))),
        "the page has no #status"
    );
    assert_eq!(
        message(Ui::find(&page(&complete.replace(
            r#"<button id="callButton"></button>"#,
            r#"<div id="callButton"></div>"#
        )))),
        "#callButton is not the expected element"
    );

    let document = page(complete);
    let mut ui = Ui::find(&document).expect("all elements are there");
    ui.set_status(&Status::Waiting(Text::WaitingAlone));
    let status = document.get_element_by_id("status").expect("#status");
    assert_eq!(
        status.get_attribute("data-state").as_deref(),
        Some("waiting")
    );
    assert_eq!(
        status.text_content().as_deref(),
        Some("Waiting for the other person to open the page…")
    );
    ui.set_lang(Lang::ZhHans);
    ui.set_status(&Status::Waiting(Text::WaitingAlone));
    assert_eq!(
        status.text_content().as_deref(),
        Some("正在等待对方打开这个页面…")
    );
    assert_eq!(
        document
            .document_element()
            .and_then(|e| e.get_attribute("lang"))
            .as_deref(),
        Some("zh-Hans")
    );
    ui.set_lang(Lang::En);
    ui.enable(false, true, false);
    let disabled: Vec<bool> = Button::ALL
        .iter()
        .map(|&(button, _)| ui.button(button).disabled())
        .collect();
    assert_eq!(
        disabled,
        [
            true, false, true, false, false, false, false, false, false, false, false, false,
            false, false, false
        ]
    );
    ui.show_media(client::core::MediaState {
        muted: true,
        camera_off: false,
    });
    let pressed = |id: &str| {
        document
            .get_element_by_id(id)
            .and_then(|b| b.get_attribute("aria-pressed"))
    };
    assert_eq!(pressed("muteButton").as_deref(), Some("true"));
    assert_eq!(pressed("cameraButton").as_deref(), Some("false"));

    // Chat lines are text: markup in a message stays characters.
    ui.add_chat(None, "You", 0, "<b>bold?</b>");
    ui.add_chat(Some(protocol::PeerId(7)), "<i>Eve</i>", 0, "hi");
    let log = document.get_element_by_id("chatLog").expect("#chatLog");
    assert_eq!(log.child_element_count(), 2);
    let first = log.first_element_child().expect("a line");
    assert_eq!(first.get_attribute("data-from").as_deref(), Some("me"));
    assert!(first.query_selector("span b").expect("query").is_none());
    assert!(first
        .text_content()
        .unwrap_or_default()
        .contains("<b>bold?</b>"));
    let second = log.last_element_child().expect("a line");
    assert_eq!(second.get_attribute("data-from").as_deref(), Some("7"));
    assert!(second.query_selector("i").expect("query").is_none());

    // What a peer sent and the page left out gets a line of its own; the log keeps its last
    // lines only.
    let why = client::core::chat_guard::Dropped::TooFast;
    let note = Text::ChatDropped {
        who: "Eve".into(),
        why,
    };
    ui.add_chat_dropped(protocol::PeerId(7), why, &note);
    let last = log.last_element_child().expect("a line");
    assert_eq!(
        last.get_attribute("data-dropped").as_deref(),
        Some("too-fast")
    );
    assert_eq!(
        last.text_content().as_deref(),
        Some("Eve is sending messages too fast: some were left out.")
    );
    for n in 0..client::chat::LOG_LINES {
        ui.add_chat(Some(protocol::PeerId(7)), "Eve", 0, &format!("line {n}"));
    }
    assert_eq!(log.child_element_count(), client::chat::LOG_LINES);
    let oldest = log.first_element_child().expect("a line");
    assert!(oldest
        .text_content()
        .unwrap_or_default()
        .ends_with("line 0"));

    // The panels: opened or closed by the person (`data-open`), their buttons say so; a panel
    // nobody chose for is shown as laid out (this document has no layout: not shown).
    let attribute = |id: &str, name: &str| {
        document
            .get_element_by_id(id)
            .and_then(|e| e.get_attribute(name))
    };
    ui.show_panels(None);
    assert_eq!(
        attribute("chatPanelButton", "aria-expanded").as_deref(),
        Some("false")
    );
    assert_eq!(attribute("chatPanel", "data-open"), None);
    ui.show_panels(Some((0, Some(true))));
    assert_eq!(attribute("chatPanel", "data-open").as_deref(), Some("true"));
    assert_eq!(
        attribute("chatPanelButton", "aria-expanded").as_deref(),
        Some("true")
    );
    ui.show_panels(Some((1, None)));
    assert_eq!(
        attribute("settingsPanel", "data-open").as_deref(),
        Some("true")
    );
    assert_eq!(
        attribute("settingsPanelButton", "aria-expanded").as_deref(),
        Some("true")
    );
    assert_eq!(attribute("chatPanel", "data-open").as_deref(), Some("true"));

    // Our own picture goes round the corners, clockwise from the top right.
    let corners: Vec<Option<String>> = (0..4)
        .map(|_| {
            ui.move_me();
            document
                .query_selector("figure.me")
                .ok()
                .flatten()
                .and_then(|me| me.get_attribute("data-corner"))
        })
        .collect();
    assert_eq!(
        corners,
        [
            Some("br".into()),
            Some("bl".into()),
            Some("tl".into()),
            None
        ]
    );
}

/// Perfect negotiation in the browser: both sides offer at once (glare); the polite side rolls
/// its offer back and answers, the impolite side keeps its offer and takes the answer. Then a
/// side that had no camera adds it mid-call and renegotiates: the other side receives that
/// video. Then ten more rounds of glare on the live call, frames checked after each, all on the
/// same two connections.
#[wasm_bindgen_test]
async fn glare_is_settled_by_rollback_and_media_can_be_added_mid_call() {
    let local = open_camera_and_microphone()
        .await
        .expect("the fake camera and microphone");
    let mut impolite = Side::new("impolite");
    let mut polite = Side::new("polite");
    impolite.peer.send_media(None);
    polite.peer.send_media(None);
    let impolite_offer = impolite.peer.create_offer().await.expect("offer");
    let _polite_offer = polite.peer.create_offer().await.expect("offer");
    assert!(polite.peer.has_local_offer() && impolite.peer.has_local_offer());
    // The impolite side ignores the polite side's offer; the polite side answers.
    let answer = polite
        .peer
        .answer_offer(&impolite_offer, None)
        .await
        .expect("the polite side rolls back and answers");
    impolite
        .peer
        .accept_answer(&answer)
        .await
        .expect("the impolite side takes the answer");
    connect(&mut impolite, &mut polite).await;

    // The polite side's camera opens now: its tracks go onto the send-receive transceivers
    // the call already has (its own, of the rolled-back offer, were stopped), so they flow with
    // no new negotiation.
    polite
        .peer
        .add_media(&local)
        .expect("add the camera")
        .await
        .expect("the camera added");
    let deadline = Deadline::start();
    let video = loop {
        impolite.collect();
        if let Some(stream) = impolite
            .tracks
            .iter()
            .find(|s| s.get_video_tracks().length() > 0)
        {
            break video_showing(stream);
        }
        deadline
            .tick(|| "the added camera's track on the other side".to_owned())
            .await;
    };
    wait_for_frames(&video, "the added camera's").await;

    // Glare again and again on the live call: both sides offer at the same moment, the polite
    // side rolls back and answers. The call never goes down, and its frames keep coming.
    for round in 0..10 {
        let impolite_offer = impolite.peer.create_offer().await.expect("offer");
        let _ = polite.peer.create_offer().await.expect("offer");
        let answer = polite
            .peer
            .answer_offer(&impolite_offer, None)
            .await
            .unwrap_or_else(|err| panic!("round {round}: the polite side answers: {err:?}"));
        impolite
            .peer
            .accept_answer(&answer)
            .await
            .unwrap_or_else(|err| panic!("round {round}: the answer applies: {err:?}"));
        let frames = decoded_frames(&video);
        wait_until(&format!("frames after glare round {round}"), || {
            decoded_frames(&video) > frames
        })
        .await;
        for side in [&impolite, &polite] {
            assert_eq!(
                side.peer.connection().connection_state(),
                RtcPeerConnectionState::Connected,
                "round {round}: {}",
                side.describe()
            );
        }
    }
    video.remove();
    stop(&local);
}

/// Frames `video` has decoded so far.
fn decoded_frames(video: &HtmlVideoElement) -> u32 {
    video.get_video_playback_quality().total_video_frames()
}
