//! The call's state and the one loop that changes it.
//!
//! Browser callbacks (buttons, the relay socket, peer connection handlers) only push an
//! [`Event`] into a channel; [`App::run`] takes them one at a time and decides. Nothing else
//! holds the state, so no callback can re-enter it halfway through a step.

use futures::{
    channel::mpsc::{self, UnboundedSender},
    SinkExt, StreamExt,
};
use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
use protocol::{ClientMsg, ErrorKind, IceServer, PeerId, ServerMsg};
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{MediaStream, RtcPeerConnectionState};

use crate::{
    diagnose::{self, IceSetup, Path},
    media::{self, MediaError},
    peer::{Peer, PeerEvent},
    ui::{Button, Status, Ui},
};

/// Something that happened, for the loop to act on.
#[derive(Debug)]
pub enum Event {
    /// The camera and microphone request finished.
    Media(Result<MediaStream, MediaError>),
    /// A message from the relay.
    Relay(ServerMsg),
    /// The relay connection closed or failed, with words for the person.
    RelayLost(String),
    /// Time to try the relay again.
    Reconnect,
    /// A peer connection reported something; `call` tells stale calls' events apart.
    Peer {
        /// Which call it belongs to.
        call: u32,
        /// What it said.
        event: PeerEvent,
    },
    /// A button was pressed.
    Click(Button),
    /// Every [`TICK_MS`]: time to look at the call's statistics again.
    Tick,
}

/// How often the page re-reads the call's path from `getStats()`.
const TICK_MS: u32 = 2_000;

/// What a problem on the page is about; each kind is cleared by what resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// No camera or microphone: cleared when they open.
    Media,
    /// The relay is unreachable: cleared by its next `welcome`.
    Relay,
    /// The relay refused a request (a full room): cleared by the next `welcome`.
    Refused,
    /// The call failed: cleared when a new call starts.
    Call,
}

/// How the page was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `#true`: call the other person as soon as both are in the room.
    pub caller: bool,
    /// The room to join (`?room=NAME`).
    pub room: String,
    /// The relay's WebSocket URL.
    pub relay_url: String,
}

impl Options {
    /// Reads the options from the page's address.
    pub fn from_location(location: &web_sys::Location) -> Result<Self, JsValue> {
        let search = web_sys::UrlSearchParams::new_with_str(&location.search()?)?;
        let room = search
            .get("room")
            .filter(|room| !room.is_empty())
            .unwrap_or_else(|| protocol::DEFAULT_ROOM.to_owned());
        let scheme = if location.protocol()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        Ok(Self {
            caller: location.hash()? == "#true",
            room,
            relay_url: format!("{scheme}://{}/ws", location.host()?),
        })
    }
}

/// The call in progress.
struct Call {
    id: u32,
    with: PeerId,
    peer: Peer,
    /// The TURN server that refused our credentials during this call, if one did.
    turn_refused: Option<String>,
    /// Media flows: the path is worth reading.
    connected: bool,
}

/// The page's whole state.
pub struct App {
    options: Options,
    ui: Ui,
    events_tx: UnboundedSender<Event>,
    /// Frames for the relay, sent in order by the socket's writer task once it is open.
    relay: Option<UnboundedSender<String>>,
    me: Option<PeerId>,
    ice_servers: Vec<IceServer>,
    other: Option<PeerId>,
    local: Option<MediaStream>,
    call: Option<Call>,
    calls_made: u32,
    /// From the last `welcome`: gives our id back if the relay connection drops.
    resume_token: Option<String>,
    /// Reconnection attempts since the relay last welcomed us.
    reconnects: u32,
    /// What the status line says when nothing is wrong.
    progress: Status,
    /// What is wrong, newest last; the newest is shown until what resolves it happens, so
    /// that progress ("Waiting…") never hides a problem the person has to act on.
    problems: Vec<(Trouble, String)>,
    /// The button handlers; they live as long as the page's loop.
    _buttons: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

impl App {
    /// Sets the page up and runs until the page goes away.
    pub async fn run(options: Options, ui: Ui) -> Result<(), JsValue> {
        let (events_tx, mut events_rx) = mpsc::unbounded();
        let buttons = Button::ALL
            .iter()
            .map(|&(button, _)| {
                let tx = events_tx.clone();
                let handler = Closure::<dyn FnMut(_)>::new(move |_: web_sys::Event| {
                    let _ = tx.unbounded_send(Event::Click(button));
                });
                ui.button(button)
                    .set_onclick(Some(handler.as_ref().unchecked_ref()));
                handler
            })
            .collect();
        let mut app = App {
            options,
            ui,
            events_tx,
            relay: None,
            me: None,
            ice_servers: Vec::new(),
            other: None,
            local: None,
            call: None,
            calls_made: 0,
            resume_token: None,
            reconnects: 0,
            progress: Status::Starting,
            problems: Vec::new(),
            _buttons: buttons,
        };
        // Page-lifetime: ends when the loop below stops taking events.
        let tick_tx = app.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                sleep_ms(TICK_MS).await;
                if tick_tx.unbounded_send(Event::Tick).is_err() {
                    break;
                }
            }
        });
        app.show(Status::Starting);
        // Media first: the caller should have its camera before it can be called upon to call.
        let media = media::open_camera_and_microphone().await;
        app.handle(Event::Media(media)).await;
        app.connect_relay();
        while let Some(event) = events_rx.next().await {
            app.handle(event).await;
        }
        Ok(())
    }

    fn connect_relay(&mut self) {
        let socket = match WebSocket::open(&self.options.relay_url) {
            Ok(socket) => socket,
            Err(err) => {
                self.set_problem(Trouble::Relay, format!("Cannot reach the relay: {err}"));
                return;
            }
        };
        let (mut sink, mut stream) = socket.split();
        let (relay_tx, mut relay_rx) = mpsc::unbounded::<String>();
        self.relay = Some(relay_tx);
        let tx = self.events_tx.clone();
        // The sink waits for the socket to open before it takes a frame, so `join` can be
        // queued right away.
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(text) = relay_rx.next().await {
                if let Err(err) = sink.send(Message::Text(text)).await {
                    web_sys::console::warn_1(&format!("relay send: {err}").into());
                    break;
                }
            }
        });
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(Message::Text(text)) => match ServerMsg::parse(&text) {
                        Ok(msg) => Event::Relay(msg),
                        Err(err) => {
                            web_sys::console::warn_1(&format!("relay sent {text:?}: {err}").into());
                            continue;
                        }
                    },
                    Ok(Message::Bytes(_)) => continue,
                    Err(WebSocketError::ConnectionClose(close)) => {
                        Event::RelayLost(match close.code {
                            1001 => "The relay is shutting down.".to_owned(),
                            1009 => {
                                "The relay closed the connection: a message was too big.".to_owned()
                            }
                            code if close.reason.is_empty() => {
                                format!("The relay closed the connection (code {code}).")
                            }
                            code => format!(
                                "The relay closed the connection (code {code}: {}).",
                                close.reason
                            ),
                        })
                    }
                    Err(WebSocketError::ConnectionError) => Event::RelayLost(
                        "Cannot reach the relay: is the server running?".to_owned(),
                    ),
                    Err(err) => Event::RelayLost(format!("Relay connection error: {err}")),
                };
                let lost = matches!(event, Event::RelayLost(_));
                if tx.unbounded_send(event).is_err() || lost {
                    break;
                }
            }
        });
        let resume = self.resume_token.take();
        self.join(resume);
    }

    fn join(&self, resume: Option<String>) {
        self.send(ClientMsg::Join {
            room: self.options.room.clone(),
            name: None,
            resume,
        });
    }

    /// Acts on one event.
    async fn handle(&mut self, event: Event) {
        match event {
            Event::Media(Ok(stream)) => {
                self.clear_problem(Trouble::Media);
                self.ui.show_local(Some(&stream));
                self.local = Some(stream);
                if self.call.is_some() {
                    self.show(Status::Waiting(
                        "Camera on. Hang up and call again to send it.".to_owned(),
                    ));
                } else if self.relay.is_some() {
                    self.show_waiting();
                }
            }
            Event::Media(Err(err)) => {
                web_sys::console::warn_1(&format!("getUserMedia: {err:?}").into());
                self.set_problem(Trouble::Media, err.to_string());
            }
            Event::Relay(msg) => self.on_relay(msg).await,
            Event::RelayLost(why) => {
                self.relay = None;
                self.me = None;
                self.other = None;
                // 1, 2, 4, 8 then every 10 seconds: a restarting relay is back within a few.
                let delay = (1u32 << self.reconnects.min(4)).min(10);
                self.reconnects += 1;
                let tx = self.events_tx.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    sleep_ms(delay * 1000).await;
                    let _ = tx.unbounded_send(Event::Reconnect);
                });
                self.set_problem(Trouble::Relay, format!("{why} Reconnecting in {delay} s…"));
            }
            Event::Reconnect => self.connect_relay(),
            Event::Peer { call, event } => self.on_peer(call, event).await,
            Event::Tick => self.read_path().await,
            Event::Click(Button::Start) => {
                let media = media::open_camera_and_microphone().await;
                Box::pin(self.handle(Event::Media(media))).await;
            }
            Event::Click(Button::Call) => {
                if let Some(other) = self.other.filter(|_| self.call.is_none()) {
                    self.start_call(other).await;
                }
            }
            Event::Click(Button::HangUp) => {
                if let Some(call) = &self.call {
                    let to = Some(call.with);
                    self.send(ClientMsg::HangUp { to });
                    self.end_call();
                    self.show(Status::Ended(
                        "Call ended. Press Call to call again.".to_owned(),
                    ));
                }
            }
        }
        self.update_buttons();
    }

    async fn on_relay(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome {
                id,
                peers,
                ice_servers,
                resume_token,
                ..
            } => {
                self.clear_problem(Trouble::Relay);
                self.clear_problem(Trouble::Refused);
                self.me = Some(id);
                self.resume_token = Some(resume_token);
                self.reconnects = 0;
                self.ice_servers = ice_servers;
                self.other = peers.first().map(|p| p.id);
                self.on_other_present().await;
            }
            // Fresh TURN credentials before the old ones expire: for later ICE restarts too.
            ServerMsg::IceServers { ice_servers } => {
                if let Some(call) = &self.call {
                    if let Err(err) = call.peer.set_ice_servers(&ice_servers) {
                        web_sys::console::warn_2(&"setConfiguration".into(), &err);
                    }
                }
                self.ice_servers = ice_servers;
            }
            ServerMsg::PeerJoined { peer } => {
                self.other = Some(peer.id);
                self.on_other_present().await;
            }
            ServerMsg::PeerLeft { peer } => {
                if self.other == Some(peer) {
                    self.other = None;
                    self.end_call();
                    self.show(Status::Waiting(
                        "The other person left. Waiting for them to come back…".to_owned(),
                    ));
                }
            }
            ServerMsg::Offer { from, sdp, .. } => self.on_offer(from, &sdp).await,
            ServerMsg::Answer { from, sdp, .. } => {
                if let Some(call) = self.call.as_mut().filter(|c| c.with == from) {
                    if let Err(err) = call.peer.accept_answer(&sdp).await {
                        self.fail("Could not apply the answer", &err);
                    }
                }
            }
            ServerMsg::Candidate {
                from, candidate, ..
            } => {
                if let Some(call) = self.call.as_mut().filter(|c| c.with == from) {
                    if let Err(err) = call.peer.add_candidate(candidate).await {
                        web_sys::console::warn_1(&err);
                    }
                }
            }
            ServerMsg::HangUp { from, .. } => {
                if self.call.as_ref().is_some_and(|c| c.with == from) {
                    self.end_call();
                    self.show(Status::Ended(
                        "The other person hung up. Press Call to call again.".to_owned(),
                    ));
                }
            }
            // Our place expired while we were away: join as someone new.
            ServerMsg::Error {
                kind: ErrorKind::InvalidResume,
                ..
            } => self.join(None),
            ServerMsg::Error { kind, message } => {
                web_sys::console::warn_1(&format!("relay: {kind}: {message}").into());
                let text = match kind {
                    ErrorKind::RoomFull => format!(
                        "This room is full: two people are already in a call. \
                         Add ?room=NAME to the address to use another room. ({message})"
                    ),
                    _ => format!("The relay refused a request: {message}"),
                };
                self.set_problem(Trouble::Refused, text);
            }
        }
    }

    /// The other person is in the room: the caller calls, the other waits to be called.
    async fn on_other_present(&mut self) {
        // Back on the relay after losing it, with a call still up: the other side may have
        // ended it when we vanished, so start afresh rather than keep a call only one side has.
        if self.call.is_some() {
            self.end_call();
        }
        match self.other {
            Some(other) if self.options.caller => self.start_call(other).await,
            Some(_) => self.show(Status::Waiting(
                "The other person is here. Waiting for their call, or press Call.".to_owned(),
            )),
            None => self.show_waiting(),
        }
    }

    async fn start_call(&mut self, with: PeerId) {
        let Some(call) = self.new_call(with) else {
            return;
        };
        self.clear_problem(Trouble::Call);
        self.show(Status::Connecting);
        match call.peer.create_offer().await {
            Ok(sdp) => {
                self.send(ClientMsg::Offer {
                    to: Some(with),
                    sdp,
                });
                self.call = Some(call);
            }
            Err(err) => self.fail("Could not create an offer", &err),
        }
    }

    async fn on_offer(&mut self, from: PeerId, sdp: &str) {
        if let Some(call) = &self.call {
            // Both sides called at once ("glare"). The peer with the lower id keeps its offer;
            // the other drops its own and answers, so exactly one call survives.
            if call.peer.has_local_offer() && self.me.is_some_and(|me| me < from) {
                return;
            }
            self.end_call();
        }
        let Some(mut call) = self.new_call(from) else {
            return;
        };
        self.clear_problem(Trouble::Call);
        self.show(Status::Connecting);
        match call.peer.accept_offer(sdp).await {
            Ok(answer) => {
                self.send(ClientMsg::Answer {
                    to: Some(from),
                    sdp: answer,
                });
                self.call = Some(call);
            }
            Err(err) => self.fail("Could not answer the call", &err),
        }
    }

    fn new_call(&mut self, with: PeerId) -> Option<Call> {
        self.calls_made += 1;
        let id = self.calls_made;
        let tx = self.events_tx.clone();
        let report = move |event| {
            let _ = tx.unbounded_send(Event::Peer { call: id, event });
        };
        match Peer::new(&self.ice_servers, report) {
            Ok(peer) => {
                peer.send_media(self.local.as_ref());
                Some(Call {
                    id,
                    with,
                    peer,
                    turn_refused: None,
                    connected: false,
                })
            }
            Err(err) => {
                self.fail("Could not create a peer connection", &err);
                None
            }
        }
    }

    async fn on_peer(&mut self, call_id: u32, event: PeerEvent) {
        let Some(call) = self.call.as_mut().filter(|c| c.id == call_id) else {
            return; // An event from a call that has ended.
        };
        match event {
            PeerEvent::Candidate(candidate) => {
                let to = Some(call.with);
                self.send(ClientMsg::Candidate { to, candidate });
            }
            PeerEvent::Track(stream) => self.ui.show_remote(Some(&stream)),
            PeerEvent::IceServerError(error) => {
                web_sys::console::warn_1(
                    &format!("ICE server {}: {} {}", error.url, error.code, error.text).into(),
                );
                if error.is_turn_auth() {
                    call.turn_refused = Some(error.url);
                }
            }
            PeerEvent::State(RtcPeerConnectionState::Connected) => {
                call.connected = true;
                self.clear_problem(Trouble::Call);
                self.show(Status::Connected);
                self.read_path().await;
            }
            PeerEvent::State(RtcPeerConnectionState::Disconnected) => self.show(Status::Connecting),
            PeerEvent::State(RtcPeerConnectionState::Failed) => {
                let advice = diagnose::ice_failure_advice(
                    IceSetup::of(&self.ice_servers),
                    call.turn_refused.as_deref(),
                );
                self.end_call();
                self.set_problem(Trouble::Call, advice);
            }
            PeerEvent::State(_) => {}
        }
    }

    /// Shows which path the connected call's media takes (`#connectionPath`).
    async fn read_path(&mut self) {
        let Some(call) = self.call.as_ref().filter(|c| c.connected) else {
            return;
        };
        let id = call.id;
        let path = match call.peer.stats().await {
            Ok(stats) => diagnose::selected_path(&stats),
            Err(err) => {
                web_sys::console::warn_2(&"getStats".into(), &err);
                None
            }
        };
        // The call may have ended while the stats were read.
        if self.call.as_ref().is_some_and(|c| c.id == id) {
            if let Some(path) = path {
                self.ui.show_path(Some(path));
            }
        }
    }

    fn end_call(&mut self) {
        // Dropping the call closes its peer connection and unregisters its handlers.
        self.call = None;
        self.ui.show_remote(None);
        self.ui.show_path(None::<Path>);
    }

    fn send(&self, msg: ClientMsg) {
        // Without a relay there is nobody to tell; `RelayLost` already told the person.
        if let Some(relay) = &self.relay {
            let _ = relay.unbounded_send(msg.to_json());
        }
    }

    fn show_waiting(&mut self) {
        self.show(Status::Waiting(
            "Waiting for the other person to open the page…".to_owned(),
        ));
    }

    fn fail(&mut self, what: &str, err: &JsValue) {
        web_sys::console::error_2(&what.into(), err);
        self.end_call();
        self.set_problem(Trouble::Call, format!("{what}. Press Call to try again."));
    }

    /// Records how the call is going; shown unless a problem is.
    fn show(&mut self, status: Status) {
        self.progress = status;
        self.render_status();
    }

    /// Shows `text` until what resolves `kind` happens.
    fn set_problem(&mut self, kind: Trouble, text: String) {
        self.problems.retain(|(k, _)| *k != kind);
        self.problems.push((kind, text));
        self.render_status();
    }

    fn clear_problem(&mut self, kind: Trouble) {
        let before = self.problems.len();
        self.problems.retain(|(k, _)| *k != kind);
        if self.problems.len() != before {
            self.render_status();
        }
    }

    fn render_status(&self) {
        match self.problems.last() {
            Some((_, text)) => self.ui.set_status(&Status::Error(text.clone())),
            None => self.ui.set_status(&self.progress),
        }
    }

    fn update_buttons(&self) {
        let joined = self.me.is_some();
        self.ui.enable(
            self.local.is_none(),
            joined && self.other.is_some() && self.call.is_none(),
            self.call.is_some(),
        );
    }
}

/// Waits `ms` milliseconds without blocking the page.
async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let ms = i32::try_from(ms).unwrap_or(i32::MAX);
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
