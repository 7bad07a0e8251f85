//! The browser side of the call engine: turns browser callbacks into [`Input`]s for
//! [`Engine`], carries out its [`Effect`]s, and shows its state.
//!
//! Callbacks (buttons, the relay socket, peer connection handlers, timers) only push an
//! [`Event`] into a channel; [`App::run`] takes them one at a time. The outcome of an effect on
//! a peer connection is fed back to the engine before the next event, so the engine always
//! knows where each negotiation stands. Nothing decides here: `core.rs` does.
//!
//! The loop never waits for a person or the network: a request that may (the screen picker,
//! a camera or microphone, the clipboard) runs on its own and comes back as an [`Event`], so
//! the relay, the calls and the timers go on meanwhile. What it does wait for are the browser's
//! own short steps on a connection (descriptions, `replaceTrack`, `getStats`).

use std::collections::VecDeque;

use futures::{
    channel::mpsc::{self, UnboundedSender},
    future::{LocalBoxFuture, Shared},
    FutureExt, StreamExt,
};
use gloo_events::{EventListener, EventListenerOptions};
use gloo_timers::callback::Timeout;
use protocol::ServerMsg;
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{MediaStream, RtcPeerConnectionState};

use crate::{
    chat,
    core::{
        self,
        chat_guard::{ChatGuard, Verdict},
        files::{self, FileError, Incoming, Step},
        gestures::Reaction,
        shortcuts::{self, Shortcut},
        ConnId, ConnState, Effect, Engine, Input, MediaState, PeerInput, Timer, Timing,
    },
    diagnose::{self, Path},
    door_ui::DoorUi,
    invite,
    media::{self, MediaError},
    peer::{self, Peer, PeerEvent, Spare},
    relay::{RelayEvent, RelaySocket},
    small::VecMap,
    stats,
    text::{label, Lang, RelayWhy, Text},
    ui::{self, Button, Ui},
};

/// Where the page keeps the person's name between visits (`localStorage`).
const NAME_KEY: &str = "name";

/// Where the page keeps the language the person chose (`localStorage`).
const LANG_KEY: &str = "lang";

/// The name kept from an earlier visit.
fn stored_name() -> Option<String> {
    stored(NAME_KEY)
}

/// What the page kept under `key` (`localStorage`).
fn stored(key: &str) -> Option<String> {
    let storage = web_sys::window()?.local_storage().ok()??;
    storage.get_item(key).ok()?
}

/// Keeps `lang` for the next visit.
fn store_lang(lang: Lang) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok()?) {
        let _ = storage.set_item(LANG_KEY, lang.tag());
    }
}

/// The browser's languages, in the person's order (`navigator.languages`).
fn browser_languages() -> Vec<String> {
    web_sys::window()
        .map(|w| w.navigator().languages())
        .map(|list| list.iter().filter_map(|tag| tag.as_string()).collect())
        .unwrap_or_default()
}

/// How often the page re-reads each call's path from `getStats()`.
const TICK_MS: u32 = 1_000;

/// Something that happened, for the loop to act on.
#[derive(Debug)]
pub enum Event {
    /// The camera and microphone request finished.
    Media(Result<MediaStream, MediaError>),
    /// A message from relay connection number `.0`.
    Relay(u32, ServerMsg),
    /// Relay connection number `.0` closed or failed, with words for the person.
    RelayLost(u32, RelayWhy),
    /// A peer connection reported something.
    Peer(ConnId, PeerEvent),
    /// A timer went off: the one started as number `.1` (a timer started again, or cancelled,
    /// after its `setTimeout` fired but before the loop took the event, is stale).
    Timer(Timer, u32),
    /// The browser is online again after a network change.
    Online,
    /// A button was pressed.
    Click(Button),
    /// Time to look at the calls' statistics.
    Tick,
    /// Stats read number `.0` came back: each call's report, and when it was read.
    Stats(u32, Vec<(ConnId, Result<JsValue, JsValue>, f64)>),
    /// The cameras or microphones changed (`devicechange`), or the page should look again.
    Devices,
    /// The cameras and microphones there are now.
    DevicesListed(Vec<media::Device>),
    /// The person chose another camera (`videoinput`) or microphone (`audioinput`).
    DeviceChosen(&'static str),
    /// The shared screen's track ended (the browser's own "Stop sharing").
    ShareEnded,
    /// The screen asked for by share request number `.0` opened, or was refused (with words
    /// for the person).
    ScreenOpened(u32, Result<MediaStream, Text>),
    /// The camera (`videoinput`) or microphone (`audioinput`) of device request number
    /// `request` opened, or not.
    DeviceOpened {
        /// Which kind of device.
        kind: &'static str,
        /// The number of the request: only the latest of its kind is used.
        request: u32,
        /// Its track.
        track: Result<web_sys::MediaStreamTrack, MediaError>,
    },
    /// The invite link was written to the clipboard (`true`) or could not be.
    LinkCopied(String, bool),
    /// The person chose a language in `langSelect`.
    LangChosen,
    /// The person did something the engine decides on: chose a reaction in the picker, pressed
    /// a keyboard shortcut.
    Input(Input),
    /// The person pressed the shortcut to the chat field.
    FocusChat,
    /// The person pressed a button of the stage's layout: a panel's, or their own picture.
    Stage(ui::Stage),
    /// The person pressed `passphraseButton` (or Enter in `passphraseInput`).
    PassphraseGiven,
    /// The microphone `.0` did not take the noise suppression asked for: open it again with it.
    OpenMicAgain(String),
    /// The person chose a file to send (`fileInput`).
    FileChosen,
    /// The file being sent has gone to everybody it was for, or broke off: its transfer and
    /// name.
    FileSent(Option<(web_sys::Element, String)>),
}

/// A connection's file coming in: the transfer, its bytes so far (left in the browser) and
/// its entry in `#transfers`.
#[derive(Default)]
struct Receiving {
    incoming: Incoming,
    parts: Option<(js_sys::Array, web_sys::Element, String)>,
}

/// How the page was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `#true`: call the others as soon as they are in the room.
    pub caller: bool,
    /// The room to join (`?room=NAME`).
    pub room: String,
    /// The relay's WebSocket URL.
    pub relay_url: String,
    /// The name typed last time, or `?name=`: as given, checked before use.
    pub name: Option<String>,
    /// The language to show the page in: `?lang=`, the one chosen last time, or the
    /// browser's.
    pub lang: Lang,
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
        let name = search.get("name").or_else(stored_name);
        let asked = search.get("lang");
        let lang = Lang::choose(
            asked.as_deref(),
            stored(LANG_KEY).as_deref(),
            &browser_languages(),
        );
        // Asked for by the address: kept, as if chosen on the page.
        if asked.as_deref().and_then(Lang::from_tag).is_some() {
            store_lang(lang);
        }
        Ok(Self {
            lang,
            caller: location.hash()? == "#true",
            room,
            relay_url: format!("{scheme}://{}/ws", location.host()?),
            name,
        })
    }
}

type MediaRequest = Shared<LocalBoxFuture<'static, Result<MediaStream, MediaError>>>;

/// The page: the engine, and the browser objects that carry out its effects.
pub struct App {
    engine: Engine,
    ui: Ui,
    door_ui: DoorUi,
    options: Options,
    events_tx: UnboundedSender<Event>,
    /// The relay connection, if one is open or opening.
    relay: Option<RelaySocket>,
    /// The number of the current relay connection: news from older ones is stale.
    relay_generation: u32,
    peers: VecMap<ConnId, Peer>,
    streams: VecMap<ConnId, MediaStream>,
    /// The engine's running timers, each with the number it was started as; dropping one
    /// clears it. Which timers run is the engine's to say: this only carries it out.
    timers: VecMap<Timer, (u32, Timeout)>,
    /// The number of the last timer started.
    timer_starts: u32,
    /// The screen we share instead of the camera, and the handler of its end.
    share: Option<MediaStream>,
    share_ended: Option<EventListener>,
    /// The number of the latest share effect: a screen asked for before it is not wanted.
    share_request: u32,
    /// The number of the latest camera and microphone request, by kind.
    device_requests: VecMap<&'static str, u32>,
    /// Each call's stats history and path, read with the paths every second.
    stats: VecMap<ConnId, (stats::History, Option<Path>)>,
    /// Whether a stats read is under way.
    reads: stats::Reads,
    /// Who speaks, from the calls' audio levels (`data-speaker` on their tile).
    speaker: core::speaker::Speaker,
    /// What each call's peer may still send on the chat channel.
    chat_guards: VecMap<ConnId, ChatGuard>,
    local: Option<MediaStream>,
    media: MediaRequest,
    /// The files coming in, by connection.
    receiving: VecMap<ConnId, Receiving>,
    /// The number of the last file sent.
    files_sent: u64,
    /// The microphone's level on the page, while we are not muted.
    meter: Option<media::MicMeter>,
    /// A connection made at start, for the first call to take (see [`Peer::new`]).
    spare: Option<Spare>,
    /// Page-lifetime handlers: the buttons, fields, `online` and `devicechange`.
    _listeners: Vec<EventListener>,
}

impl App {
    /// Sets the page up and runs until the page goes away.
    pub async fn run(options: Options, mut ui: Ui) -> Result<(), JsValue> {
        let window = web_sys::window().ok_or("no window")?;
        let (events_tx, mut events_rx) = mpsc::unbounded();
        let mut listeners = Vec::new();
        for &(button, _) in &Button::ALL {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(ui.button(button), "click", move |_| {
                let _ = tx.unbounded_send(Event::Click(button));
            }));
        }
        if let Some(document) = window.document() {
            for (id, control) in ui::Stage::ALL {
                if let Some(button) = document.get_element_by_id(id) {
                    let tx = events_tx.clone();
                    listeners.push(EventListener::new(&button, "click", move |_| {
                        let _ = tx.unbounded_send(Event::Stage(control));
                    }));
                }
            }
        }
        {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(&window, "online", move |_| {
                let _ = tx.unbounded_send(Event::Online);
            }));
        }
        // Enter in the chat field sends (Shift+Enter would be a new line in a text area), and
        // in the name field uses the name.
        for (field, button) in [
            (&ui.chat_input, Button::ChatSend),
            (&ui.name_input, Button::Name),
        ] {
            let tx = events_tx.clone();
            // Not passive: the handler keeps the key from the field.
            let options = EventListenerOptions::enable_prevent_default();
            listeners.push(EventListener::new_with_options(
                field,
                "keydown",
                options,
                move |event| {
                    let Some(key) = event.dyn_ref::<web_sys::KeyboardEvent>() else {
                        return;
                    };
                    if key.key() == "Enter" && !key.shift_key() {
                        key.prevent_default();
                        let _ = tx.unbounded_send(Event::Click(button));
                    }
                },
            ));
        }
        // The keyboard shortcuts, anywhere on the page but in a field. Not passive: a shortcut
        // is kept from the page (C must not type a "c" into the chat field it goes to).
        if let Some(document) = window.document() {
            let tx = events_tx.clone();
            let options = EventListenerOptions::enable_prevent_default();
            listeners.push(EventListener::new_with_options(
                &document,
                "keydown",
                options,
                move |event| {
                    let Some(pressed) = event.dyn_ref::<web_sys::KeyboardEvent>() else {
                        return;
                    };
                    let typing = event
                        .target()
                        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                        .and_then(|e| e.closest("input, textarea, select, [contenteditable]").ok())
                        .flatten()
                        .is_some();
                    let (key, code) = (pressed.key(), pressed.code());
                    let shortcut = shortcuts::shortcut(shortcuts::Key {
                        key: &key,
                        code: &code,
                        modified: pressed.ctrl_key() || pressed.alt_key() || pressed.meta_key(),
                        repeat: pressed.repeat(),
                        typing,
                    });
                    if let Some(shortcut) = shortcut {
                        pressed.prevent_default();
                        let _ = tx.unbounded_send(match shortcut {
                            Shortcut::Mute => Event::Input(Input::ToggleMute),
                            Shortcut::Camera => Event::Input(Input::ToggleCamera),
                            Shortcut::Hand => Event::Input(Input::ToggleHand),
                            Shortcut::Chat => Event::FocusChat,
                        });
                    }
                },
            ));
        }
        // Devices come and go (a headset plugged in, a camera unplugged mid-call).
        if let Ok(devices) = window.navigator().media_devices() {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(&devices, "devicechange", move |_| {
                let _ = tx.unbounded_send(Event::Devices);
            }));
        }
        for (select, kind) in [
            (&ui.camera_select, "videoinput"),
            (&ui.mic_select, "audioinput"),
        ] {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(select, "change", move |_| {
                let _ = tx.unbounded_send(Event::DeviceChosen(kind));
            }));
        }
        {
            // One handler for the picker's buttons (whose only content is text): the reaction
            // is the clicked one's `data-reaction`.
            let tx = events_tx.clone();
            listeners.push(EventListener::new(
                &ui.in_call.reactions,
                "click",
                move |event| {
                    let chosen = event
                        .target()
                        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                        .and_then(|t| t.closest("[data-reaction]").ok()?)
                        .and_then(|b| b.get_attribute("data-reaction"))
                        .and_then(|name| Reaction::from_name(&name));
                    if let Some(reaction) = chosen {
                        let _ = tx.unbounded_send(Event::Input(Input::React(reaction)));
                    }
                },
            ));
        }
        {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(
                &ui.in_call.file_input,
                "change",
                move |_| {
                    let _ = tx.unbounded_send(Event::FileChosen);
                },
            ));
        }
        {
            let tx = events_tx.clone();
            listeners.push(EventListener::new(&ui.lang_select, "change", move |_| {
                let _ = tx.unbounded_send(Event::LangChosen);
            }));
        }
        // The room's door: one handler for all its buttons, on the page (its tiles' remove
        // buttons come and go). Not passive: it keeps the passphrase's form from being sent.
        let door_ui = DoorUi::find(&window.document().ok_or("no document")?)?;
        {
            let tx = events_tx.clone();
            let options = EventListenerOptions::enable_prevent_default();
            listeners.push(EventListener::new_with_options(
                &door_ui.document,
                "click",
                options,
                move |event| {
                    if let Some(input) = DoorUi::clicked(event) {
                        let _ = tx.unbounded_send(match input {
                            Some(input) => Event::Input(input),
                            None => Event::PassphraseGiven,
                        });
                    }
                },
            ));
        }
        ui.set_lang(options.lang);
        // Between the steps of starting, the page takes what else is waiting: above all the
        // replies that open the camera, asked for before this code loaded (each would
        // otherwise wait for the whole start).
        next_task().await;
        let name = match options.name.as_deref().map(core::clean_name) {
            Some(Ok(name)) => name,
            Some(Err(why)) => {
                ui.name_note(Some(why));
                None
            }
            None => None,
        };
        ui.name_input.set_value(name.as_deref().unwrap_or_default());

        let config = core::Config {
            caller: options.caller,
            room: options.room.clone(),
            name,
            session: random_session(),
            seed: (js_sys::Math::random() * 2f64.powi(53)) as u64,
            timing: Timing::default(),
        };
        // The camera and the relay are asked for at the same time: neither waits for the other.
        let media = media::first_camera_request().boxed_local().shared();
        let mut app = App {
            engine: Engine::new(config),
            ui,
            door_ui,
            options,
            events_tx: events_tx.clone(),
            relay: None,
            relay_generation: 0,
            peers: VecMap::new(),
            streams: VecMap::new(),
            timers: VecMap::new(),
            timer_starts: 0,
            stats: VecMap::new(),
            reads: stats::Reads::default(),
            speaker: core::speaker::Speaker::default(),
            chat_guards: VecMap::new(),
            share: None,
            share_ended: None,
            share_request: 0,
            device_requests: VecMap::new(),
            local: None,
            media: media.clone(),
            meter: None,
            receiving: VecMap::new(),
            files_sent: 0,
            spare: Spare::new().ok(),
            _listeners: listeners,
        };
        app.watch_media(media);
        next_task().await;
        // Page-lifetime: ends when the loop below stops taking events.
        let tick_tx = events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                sleep_ms(TICK_MS).await;
                if tick_tx.unbounded_send(Event::Tick).is_err() {
                    break;
                }
            }
        });
        app.input(Input::Start).await;
        while let Some(event) = events_rx.next().await {
            app.handle(event).await;
        }
        Ok(())
    }

    /// Reports the outcome of a camera request as [`Event::Media`].
    fn watch_media(&self, request: MediaRequest) {
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = tx.unbounded_send(Event::Media(request.await));
        });
    }

    async fn handle(&mut self, event: Event) {
        if let (Event::Click(_) | Event::Input(_), Some(meter)) = (&event, &self.meter) {
            // A click or a key lets a browser run audio it held back until the person did
            // something.
            meter.resume();
        }
        let event = match event {
            Event::Click(Button::Noise) => Event::Input(Input::ToggleNoiseSuppression),
            Event::Click(Button::Hand) => Event::Input(Input::ToggleHand),
            event => event,
        };
        match event {
            Event::Input(input) => self.input(input).await,
            Event::Media(Ok(stream)) => {
                let first = self.local.is_none();
                self.ui.show_local(Some(&stream));
                self.local = Some(stream);
                self.apply_media(self.engine.media());
                // Switched off before the microphone opened (it opens with the browser's
                // processing, which is on).
                if !self.engine.noise_suppression() {
                    self.set_noise_suppression(false);
                }
                if first {
                    self.input(Input::Media(Ok(()))).await;
                }
                self.list_devices();
            }
            Event::Media(Err(err)) => {
                web_sys::console::warn_1(&format!("getUserMedia: {err:?}").into());
                self.input(Input::Media(Err(Text::Media(err.problem()))))
                    .await;
            }
            Event::Relay(generation, msg) if generation == self.relay_generation => {
                self.input(Input::Relay(msg)).await;
            }
            Event::RelayLost(generation, why) if generation == self.relay_generation => {
                self.relay = None;
                self.input(Input::RelayLost(why)).await;
            }
            Event::Relay(..) | Event::RelayLost(..) => {} // From a socket already replaced.
            Event::Peer(conn, PeerEvent::Chat(frame)) => {
                // A message shows in the chat log as it is read. Nothing else changed unless
                // the engine was told something: laying the page out again for each frame of
                // a flood took milliseconds a frame, seconds in all (tests/tests/hostile.rs).
                match self.read_chat(conn, &frame) {
                    Some(news) => self.input(Input::Peer(conn, news)).await,
                    None => return,
                }
            }
            // A file's bytes change nothing but its transfer's entry.
            Event::Peer(conn, PeerEvent::FileText(frame)) => {
                return self.on_file_text(conn, &frame)
            }
            Event::Peer(conn, PeerEvent::FileBytes(bytes)) => {
                return self.on_file_bytes(conn, bytes)
            }
            Event::Peer(conn, event) => self.on_peer(conn, event).await,
            Event::FileChosen => self.send_file(),
            Event::OpenMicAgain(id) => self.use_device("audioinput", id),
            Event::FileSent(broken) => {
                self.ui.in_call.file_input.set_disabled(false);
                if let Some((entry, name)) = broken {
                    self.refuse_file(&entry, &name, FileError::Broken);
                }
            }
            Event::Timer(timer, number) => {
                if self.timers.get(&timer).is_some_and(|(n, _)| *n == number) {
                    self.timers.remove(&timer);
                    self.input(Input::Timer(timer)).await;
                }
            }
            Event::Online => self.input(Input::Online).await,
            Event::Click(Button::Start) => {
                let request = media::open_camera_and_microphone().boxed_local().shared();
                self.media = request.clone();
                self.watch_media(request);
            }
            Event::Click(Button::Call) => self.input(Input::Call).await,
            Event::Click(Button::HangUp) => self.input(Input::HangUp).await,
            Event::Click(Button::ChatSend) => self.send_chat(),
            Event::Click(Button::Name) => self.use_name().await,
            Event::Click(Button::CopyLink) => self.copy_link(),
            Event::Click(Button::StartAudio) => self.ui.start_audio(),
            Event::Click(Button::Share) => self.input(Input::ToggleShare).await,
            Event::ShareEnded => self.input(Input::ShareEnded).await,
            Event::ScreenOpened(request, screen) if request == self.share_request => match screen {
                Ok(screen) => self.share_screen(screen).await,
                Err(why) => {
                    self.ui.chat_note(Some(why));
                    self.input(Input::ShareEnded).await;
                }
            },
            // Sharing was stopped (or asked for again) while the picker was open.
            Event::ScreenOpened(_, screen) => {
                if let Ok(screen) = screen {
                    stop_tracks(&screen);
                }
            }
            Event::DeviceOpened {
                kind,
                request,
                track,
            } => self.device_opened(kind, request, track).await,
            Event::LinkCopied(link, written) => {
                let text = if written {
                    Text::LinkCopied
                } else {
                    Text::CopyThisLink
                };
                self.ui.invite_note(text, Some(&link));
            }
            Event::Devices => self.list_devices(),
            Event::DevicesListed(devices) => self.look_at_devices(devices).await,
            Event::LangChosen => {
                if let Some(lang) = Lang::from_tag(&self.ui.lang_select.value()) {
                    store_lang(lang);
                    self.ui.set_lang(lang);
                    // The devices' names before the browser tells them are ours.
                    self.list_devices();
                }
            }
            Event::DeviceChosen(kind) => {
                let select = if kind == "videoinput" {
                    &self.ui.camera_select
                } else {
                    &self.ui.mic_select
                };
                self.use_device(kind, select.value());
            }
            Event::Click(Button::Stats) => {
                self.ui.toggle_stats();
                self.ui.show_stats(&self.engine.tiles(), &self.stats);
            }
            Event::Click(Button::NewRoom) => {
                let room = invite::new_room_name(random_bytes());
                let location = web_sys::window().map(|w| w.location());
                if let Some(location) = location {
                    let link = invite::room_link(
                        &location.origin().unwrap_or_default(),
                        &location.pathname().unwrap_or_default(),
                        &room,
                    );
                    if let Err(err) = location.assign(&link) {
                        web_sys::console::warn_2(&"new room".into(), &err);
                        self.ui.invite_note(Text::CopyThisLink, Some(&link));
                    }
                }
            }
            Event::Click(Button::Mute) => self.input(Input::ToggleMute).await,
            Event::Click(Button::Camera) => self.input(Input::ToggleCamera).await,
            // Turned into inputs above.
            Event::Click(Button::Noise | Button::Hand) => {}
            Event::Click(Button::Reaction) => self.ui.show_reactions(None),
            Event::PassphraseGiven => {
                let passphrase = self.door_ui.take_passphrase();
                self.input(Input::Passphrase(passphrase)).await;
            }
            Event::FocusChat => {
                // On a phone the chat is in a panel that may be closed: open it first.
                self.ui.show_panels(Some((0, Some(true))));
                let _ = self.ui.chat_input.focus();
            }
            Event::Stage(ui::Stage::Panel(n)) => self.ui.show_panels(Some((n, None))),
            Event::Stage(ui::Stage::MoveMe) => self.ui.move_me(),
            Event::Tick => self.read_stats(),
            Event::Stats(read, calls) => {
                if self.reads.finished(read) {
                    self.show_read(calls);
                }
            }
        }
        self.render();
    }

    /// Copies the link to this room to the clipboard, and shows it (to copy by hand where the
    /// browser does not let the page write to the clipboard) once the clipboard has answered
    /// ([`Event::LinkCopied`]): a browser may ask the person first.
    fn copy_link(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let location = window.location();
        let link = invite::room_link(
            &location.origin().unwrap_or_default(),
            &location.pathname().unwrap_or_default(),
            &self.options.room,
        );
        let clipboard = js_sys::Reflect::get(&window.navigator(), &"clipboard".into())
            .ok()
            .filter(|c| !c.is_undefined());
        let write = clipboard.and_then(|clipboard| {
            let write = js_sys::Reflect::get(&clipboard, &"writeText".into())
                .ok()?
                .dyn_into::<js_sys::Function>()
                .ok()?;
            write
                .call1(&clipboard, &JsValue::from_str(&link))
                .ok()?
                .dyn_into::<js_sys::Promise>()
                .ok()
        });
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let written = match write {
                Some(promise) => wasm_bindgen_futures::JsFuture::from(promise).await.is_ok(),
                None => false,
            };
            let _ = tx.unbounded_send(Event::LinkCopied(link, written));
        });
    }

    /// Takes the name in the name field: remembered for next time, and joined with.
    async fn use_name(&mut self) {
        match core::clean_name(&self.ui.name_input.value()) {
            Ok(name) => {
                self.ui.name_note(None);
                if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok()?) {
                    let _ = match &name {
                        Some(name) => storage.set_item(NAME_KEY, name),
                        None => storage.remove_item(NAME_KEY),
                    };
                }
                self.input(Input::SetName(name)).await;
            }
            Err(why) => self.ui.name_note(Some(why)),
        }
    }

    /// Asks for the list of cameras and microphones; it comes back as
    /// [`Event::DevicesListed`], so that the relay's and the connections' events are not held
    /// up meanwhile (a camera opening at the moment the answer arrives, say).
    fn list_devices(&self) {
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = tx.unbounded_send(Event::DevicesListed(media::list_devices().await));
        });
    }

    /// Shows the cameras and microphones there are; a device in use that went away (its track
    /// ended) is replaced by the first one left of its kind, on every call.
    async fn look_at_devices(&mut self, devices: Vec<media::Device>) {
        for kind in ["videoinput", "audioinput"] {
            let track = self.local.as_ref().and_then(|stream| {
                let tracks = if kind == "videoinput" {
                    stream.get_video_tracks()
                } else {
                    stream.get_audio_tracks()
                };
                tracks.get(0).dyn_into::<web_sys::MediaStreamTrack>().ok()
            });
            let current = track.as_ref().and_then(media::device_of);
            let gone = track
                .as_ref()
                .is_some_and(|t| t.ready_state() == web_sys::MediaStreamTrackState::Ended);
            let chosen = media::choose_device(&devices, kind, current.as_deref().filter(|_| !gone))
                .map(|d| d.id.clone());
            self.ui.show_devices(kind, &devices, chosen.as_deref());
            if gone {
                match chosen {
                    Some(id) => self.use_device(kind, id),
                    None => self.ui.chat_note(Some(Text::DeviceGone {
                        camera: kind == "videoinput",
                    })),
                }
            }
        }
    }

    /// Asks for the camera or microphone `id`; it comes back as [`Event::DeviceOpened`] (the
    /// browser may ask the person first, and a camera takes a while to open).
    fn use_device(&mut self, kind: &'static str, id: String) {
        let request = self.device_requests.get(&kind).map_or(1, |n| n + 1);
        self.device_requests.insert(kind, request);
        let tx = self.events_tx.clone();
        let noise_suppression = self.engine.noise_suppression();
        wasm_bindgen_futures::spawn_local(async move {
            let track = media::open_device(kind, &id, noise_suppression).await;
            let _ = tx.unbounded_send(Event::DeviceOpened {
                kind,
                request,
                track,
            });
        });
    }

    /// Sends from `track`, the camera or microphone of device request `request`, from now on,
    /// on every call; a track of an older request (the person chose again meanwhile) is
    /// stopped instead.
    async fn device_opened(
        &mut self,
        kind: &'static str,
        request: u32,
        track: Result<web_sys::MediaStreamTrack, MediaError>,
    ) {
        let latest = self.device_requests.get(&kind) == Some(&request);
        let track = match track {
            Ok(track) if latest => track,
            Ok(track) => {
                track.stop();
                return;
            }
            Err(err) => {
                if latest {
                    web_sys::console::warn_1(&format!("device: {err:?}").into());
                    self.ui.chat_note(Some(Text::Media(err.problem())));
                }
                return;
            }
        };
        let Some(local) = &self.local else {
            track.stop();
            return;
        };
        let old = if kind == "videoinput" {
            local.get_video_tracks()
        } else {
            local.get_audio_tracks()
        };
        for old in old.iter() {
            if let Ok(old) = old.dyn_into::<web_sys::MediaStreamTrack>() {
                local.remove_track(&old);
                old.stop();
            }
        }
        local.add_track(&track);
        self.apply_media(self.engine.media());
        let sender_kind = if kind == "videoinput" {
            "video"
        } else {
            "audio"
        };
        // While sharing, the screen keeps the video; the new camera waits for the end.
        if !(sender_kind == "video" && self.share.is_some()) {
            for peer in self.peers.values() {
                if let Err(err) = peer.replace(sender_kind, Some(&track)).await {
                    web_sys::console::warn_2(&"switching devices".into(), &err);
                }
            }
        }
    }

    /// Sends `screen`, just opened, instead of the camera's video on every call, and shows it.
    async fn share_screen(&mut self, screen: MediaStream) {
        let track = video_track(&screen);
        if let Some(track) = &track {
            // The browser's own "Stop sharing" ends the track.
            let tx = self.events_tx.clone();
            self.share_ended = Some(EventListener::new(track, "ended", move |_| {
                let _ = tx.unbounded_send(Event::ShareEnded);
            }));
        }
        for peer in self.peers.values() {
            if let Err(err) = peer.replace("video", track.as_ref()).await {
                web_sys::console::warn_2(&"sharing the screen".into(), &err);
            }
        }
        self.ui.show_local(Some(&screen));
        self.share = Some(screen);
        self.ui.show_share(true);
    }

    /// Has the browser suppress the microphone's noise or not, and shows it on the switch.
    fn set_noise_suppression(&mut self, on: bool) {
        self.ui.show_noise(on);
        let Some(track) = self.local.as_ref().and_then(audio_track) else {
            return; // The microphone opens with it when it opens.
        };
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if media::set_noise_suppression(&track, on).await {
                return;
            }
            // Chrome takes the constraints (its promise resolves) and goes on processing the
            // sound as the microphone was opened: the microphone is opened again with them,
            // and takes the old one's place on every call (`Event::DeviceOpened`).
            if let Some(id) = media::device_of(&track) {
                let _ = tx.unbounded_send(Event::OpenMicAgain(id));
            }
        });
    }

    /// Shows the microphone's level while we are not muted, from the microphone in use.
    fn show_mic_level(&mut self) {
        let track = self.local.as_ref().and_then(audio_track).filter(|t| {
            !self.engine.media().muted && t.ready_state() != web_sys::MediaStreamTrackState::Ended
        });
        match track {
            None => self.meter = None,
            Some(track) if self.meter.as_ref().is_some_and(|m| m.listens_to(&track)) => {}
            Some(track) => {
                self.meter = None;
                let stream = self.local.as_ref();
                let meter = stream
                    .map(|s| media::MicMeter::start(s, &track, self.ui.in_call.mic_level.clone()));
                match meter.unwrap_or(Err(JsValue::NULL)) {
                    Ok(meter) => self.meter = Some(meter),
                    Err(err) => web_sys::console::warn_2(&"microphone level".into(), &err),
                }
            }
        }
        self.ui.show_mic_level(self.meter.is_some());
    }

    /// What we send: the camera and microphone, with the shared screen's video instead of the
    /// camera's while sharing.
    fn outgoing(&self) -> Option<MediaStream> {
        let Some(screen) = &self.share else {
            return self.local.clone();
        };
        let stream = MediaStream::new().ok()?;
        if let Some(local) = &self.local {
            for track in local.get_audio_tracks().iter() {
                if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                    stream.add_track(&track);
                }
            }
        }
        if let Some(track) = video_track(screen) {
            stream.add_track(&track);
        }
        Some(stream)
    }

    /// Sends our microphone and camera as `media` says (a disabled track sends silence or
    /// black), and shows it on the buttons.
    fn apply_media(&self, media: MediaState) {
        if let Some(stream) = &self.local {
            for track in stream.get_audio_tracks().iter() {
                if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                    track.set_enabled(!media.muted);
                }
            }
            for track in stream.get_video_tracks().iter() {
                if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                    track.set_enabled(!media.camera_off);
                }
            }
        }
        self.ui.show_media(media);
    }

    /// Sends what is in the chat field to everyone we have a call with, peer to peer.
    fn send_chat(&mut self) {
        let text = match chat::compose(&self.ui.chat_input.value()) {
            Ok(text) => text,
            Err(err) => {
                self.ui.chat_note(Some(match err {
                    chat::ChatError::TooLong(n) => Text::ChatTooLong(n, chat::MAX_CHARS),
                    _ => Text::ChatEmpty,
                }));
                return;
            }
        };
        if self.peers.is_empty() {
            self.ui.chat_note(Some(Text::ChatNobody));
            return;
        }
        let at = js_sys::Date::now() as u64;
        self.to_everybody(&chat::encode(&text, at));
        self.ui
            .add_chat(None, &Text::You.show(self.ui.lang()), at, &text);
        self.ui.chat_input.set_value("");
        self.ui.chat_note(None);
    }

    /// `frame`, from the chat channel of `conn`, copied out of the browser if the
    /// connection's [`ChatGuard`] lets it in; else dropped unread, and the person told when
    /// the guard says so.
    fn let_in(&mut self, conn: ConnId, frame: &js_sys::JsString) -> Option<String> {
        if !self.chat_guards.contains_key(&conn) {
            self.chat_guards.insert(conn, ChatGuard::default());
        }
        let guard = self.chat_guards.get_mut(&conn)?;
        match guard.admit(frame.length() as usize, js_sys::Date::now()) {
            Verdict::Take => Some(frame.into()),
            Verdict::Drop { say: None } => None,
            Verdict::Drop { say: Some(why) } => {
                let tile = self.engine.tiles().into_iter().find(|t| t.conn == conn)?;
                let who = tile
                    .name
                    .unwrap_or_else(|| Text::Someone.show(self.ui.lang()));
                self.ui
                    .add_chat_dropped(tile.peer, why, &Text::ChatDropped { who, why });
                None
            }
        }
    }

    /// Reads `frame`, from the chat channel of `conn`, if its guard lets it in: a message goes
    /// into the chat log; what the engine is to be told (a media state, a hand, a reaction) is
    /// returned, and then what the page shows besides the chat may have changed.
    fn read_chat(&mut self, conn: ConnId, frame: &js_sys::JsString) -> Option<PeerInput> {
        let frame = self.let_in(conn, frame)?;
        let decoded = match crate::json::parse(&frame) {
            Some(doc) => chat::decode(doc),
            None => Err(chat::ChatError::Malformed("not JSON".to_owned())),
        };
        let news = match decoded {
            Ok(chat::Frame::Media(media)) => PeerInput::RemoteMedia(media),
            Ok(chat::Frame::Hand(hand)) => PeerInput::RemoteHand(hand),
            Ok(chat::Frame::Reaction(reaction)) => PeerInput::RemoteReaction(reaction),
            Ok(chat::Frame::Chat(wire)) => {
                let tile = self.engine.tiles().into_iter().find(|t| t.conn == conn);
                let who = tile
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_else(|| Text::Someone.show(self.ui.lang()));
                let from = tile.map(|t| t.peer);
                self.ui.add_chat(from, &who, wire.at, &wire.text);
                return None;
            }
            Err(err) => {
                web_sys::console::warn_1(&format!("chat: {err}").into());
                return None;
            }
        };
        Some(news)
    }

    /// Sends `frame` on the chat channel of every call.
    fn to_everybody(&self, frame: &str) {
        for peer in self.peers.values() {
            peer.send_chat(frame);
        }
    }

    /// The name of the person of `conn`, or the word for someone without one.
    fn who(&self, conn: ConnId) -> String {
        self.engine
            .tiles()
            .into_iter()
            .find(|t| t.conn == conn)
            .and_then(|t| t.name)
            .unwrap_or_else(|| Text::Someone.show(self.ui.lang()))
    }

    /// Sends the file chosen in `fileInput` to whoever `fileTo` says, one chunk at a time, on
    /// its own: the loop goes on meanwhile, and [`Event::FileSent`] comes when it is done.
    /// One file goes at a time (the field is disabled meanwhile), so that its frames are not
    /// mixed with another's on a channel.
    fn send_file(&mut self) {
        let Some(file) = self
            .ui
            .in_call
            .file_input
            .files()
            .and_then(|list| list.get(0))
        else {
            return;
        };
        // The same file may be chosen again.
        self.ui.in_call.file_input.set_value("");
        let name = files::clean_name(&file.name());
        // `fileTo` is empty for everybody, or the number of one person's connection.
        let to = self.ui.in_call.file_to.value();
        let chosen: Vec<ConnId> = self
            .peers
            .keys()
            .filter(|conn| to.is_empty() || to == conn.0.to_string())
            .copied()
            .collect();
        let channels: Vec<web_sys::RtcDataChannel> = chosen
            .iter()
            .filter_map(|conn| self.peers.get(conn)?.file_channel())
            .collect();
        let who = match chosen.first() {
            Some(&conn) if !to.is_empty() => self.who(conn),
            _ => label("everyone", self.ui.lang())
                .unwrap_or_default()
                .to_owned(),
        };
        let words = Text::FileTo {
            name: name.clone(),
            who,
        };
        let Some(entry) = self.ui.add_transfer(&words.show(self.ui.lang())) else {
            return;
        };
        let size = file.size() as u64;
        let checked = files::check_size(size).and(if channels.is_empty() {
            Err(FileError::Nobody)
        } else {
            Ok(())
        });
        if let Err(why) = checked {
            self.refuse_file(&entry, &name, why);
            return;
        }
        self.files_sent += 1;
        let header = files::encode_header(self.files_sent, &name, size);
        self.ui.in_call.file_input.set_disabled(true);
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let broken = match send_chunks(&file, size, &header, &channels, &entry).await {
                Ok(()) => None,
                Err(err) => {
                    web_sys::console::warn_2(&"sending a file".into(), &err);
                    Some((entry, name))
                }
            };
            let _ = tx.unbounded_send(Event::FileSent(broken));
        });
    }

    /// Shows `entry`, the transfer of `name`, as not sent or not taken, and why.
    fn refuse_file(&self, entry: &web_sys::Element, name: &str, why: FileError) {
        let words = Text::FileRefused {
            name: name.to_owned(),
            why: why.clone(),
        };
        Ui::transfer_refused(entry, &why, &words.show(self.ui.lang()));
    }

    /// A text frame on the file channel of `conn`: let in by the connection's
    /// [`ChatGuard`], it may start a transfer.
    fn on_file_text(&mut self, conn: ConnId, frame: &js_sys::JsString) {
        // The peer's text frames on both channels count together against what it may send.
        let Some(frame) = self.let_in(conn, frame) else {
            return;
        };
        if !self.receiving.contains_key(&conn) {
            self.receiving.insert(conn, Receiving::default());
        }
        let who = self.who(conn);
        let lang = self.ui.lang();
        let Some(receiving) = self.receiving.get_mut(&conn) else {
            return;
        };
        let header = match crate::json::parse(&frame) {
            Some(doc) => files::decode_header(doc),
            None => Err(FileError::Malformed),
        };
        // Not one of ours: nothing to show of it.
        let Ok(header) = header else {
            web_sys::console::warn_1(&"file channel: a frame that is not a file's".into());
            return;
        };
        let name = header.name.clone();
        let unfinished = receiving.parts.take();
        let step = receiving.incoming.header(header);
        if let Some((_, entry, name)) = unfinished {
            self.refuse_file(&entry, &name, FileError::Broken);
        }
        let Some(entry) = self.ui.add_transfer(
            &Text::FileFrom {
                name: name.clone(),
                who,
            }
            .show(lang),
        ) else {
            return;
        };
        match step {
            Step::Start(_) => {
                if let Some(receiving) = self.receiving.get_mut(&conn) {
                    receiving.parts = Some((js_sys::Array::new(), entry, name));
                }
            }
            Step::Refuse(Some(why)) => self.refuse_file(&entry, &name, why),
            _ => {}
        }
    }

    /// Bytes on the file channel of `conn`: kept if a transfer takes them, and the file
    /// shown as a link once it is whole.
    fn on_file_bytes(&mut self, conn: ConnId, bytes: js_sys::ArrayBuffer) {
        let Some(receiving) = self.receiving.get_mut(&conn) else {
            return; // Bytes of no transfer: dropped unread.
        };
        let step = receiving.incoming.bytes(u64::from(bytes.byte_length()));
        let Some((parts, entry, _)) = &receiving.parts else {
            return;
        };
        match step {
            Step::Keep(percent) => {
                parts.push(&bytes);
                Ui::transfer_progress(entry, percent);
            }
            Step::Complete => {
                parts.push(&bytes);
                let Some((parts, entry, name)) = receiving.parts.take() else {
                    return;
                };
                // A download, whatever the sender says it is: the page never opens it.
                let options = web_sys::BlobPropertyBag::new();
                options.set_type("application/octet-stream");
                let url =
                    web_sys::Blob::new_with_buffer_source_sequence_and_options(&parts, &options)
                        .and_then(|blob| web_sys::Url::create_object_url_with_blob(&blob));
                match url {
                    Ok(url) => self.ui.transfer_link(&entry, &name, &url),
                    Err(_) => self.refuse_file(&entry, &name, FileError::Broken),
                }
            }
            Step::Refuse(why) => {
                let why = why.unwrap_or(FileError::Broken);
                if let Some((_, entry, name)) = receiving.parts.take() {
                    self.refuse_file(&entry, &name, why);
                }
            }
            Step::Start(_) => {}
        }
    }

    async fn on_peer(&mut self, conn: ConnId, event: PeerEvent) {
        let news = match event {
            PeerEvent::Track(stream) => {
                self.streams.insert(conn, stream);
                return;
            }
            PeerEvent::IceServerError(error) => {
                web_sys::console::warn_1(
                    &format!("ICE server {}: {} {}", error.url, error.code, error.text).into(),
                );
                PeerInput::IceServerError(error)
            }
            PeerEvent::Candidate(candidate) => PeerInput::Candidate(candidate),
            PeerEvent::NegotiationNeeded => PeerInput::NegotiationNeeded,
            PeerEvent::Chat(frame) => match self.read_chat(conn, &frame) {
                Some(news) => news,
                None => return,
            },
            PeerEvent::FileText(frame) => return self.on_file_text(conn, &frame),
            PeerEvent::FileBytes(bytes) => return self.on_file_bytes(conn, bytes),
            PeerEvent::State(state) => {
                let state = conn_state(state);
                let connected = state == ConnState::Connected;
                self.input(Input::Peer(conn, PeerInput::State(state))).await;
                if connected {
                    self.read_stats();
                }
                return;
            }
        };
        self.input(Input::Peer(conn, news)).await;
    }

    /// Gives `input` to the engine and carries out what it says, feeding the outcome of each
    /// effect back before anything else happens.
    async fn input(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            trace(&crate::trace::line("in  ", &input));
            for effect in self.engine.handle(input) {
                trace(&crate::trace::line("out ", &effect));
                if let Some(outcome) = self.carry_out(effect).await {
                    queue.push_back(outcome);
                }
            }
        }
    }

    async fn carry_out(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::ConnectRelay => self.connect_relay(),
            Effect::DropRelay => {
                // Ending the writer drops the socket; whatever its reader still reports
                // carries an old generation and is ignored.
                self.relay = None;
                self.relay_generation += 1;
            }
            Effect::Send(msg) => {
                if let Some(relay) = &self.relay {
                    relay.send(msg.to_json());
                }
            }
            Effect::Open { conn, answering } => return self.open(conn, answering),
            Effect::Share(true) => {
                // The browser's picker waits for the person: the loop goes on meanwhile, and
                // the screen comes back as Event::ScreenOpened.
                self.share_request += 1;
                let request = self.share_request;
                let tx = self.events_tx.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let screen = media::open_screen().await;
                    let _ = tx.unbounded_send(Event::ScreenOpened(request, screen));
                });
            }
            Effect::Share(false) => {
                // A screen still being picked is not wanted any more.
                self.share_request += 1;
                self.share_ended = None;
                if let Some(screen) = self.share.take() {
                    stop_tracks(&screen);
                }
                let camera = self.local.as_ref().and_then(video_track);
                for peer in self.peers.values() {
                    if let Err(err) = peer.replace("video", camera.as_ref()).await {
                        web_sys::console::warn_2(&"back to the camera".into(), &err);
                    }
                }
                self.ui.show_local(self.local.as_ref());
                self.ui.show_share(false);
            }
            Effect::SetMedia(media) => {
                self.apply_media(media);
                self.to_everybody(&chat::encode_media(media));
            }
            Effect::SetNoiseSuppression(on) => self.set_noise_suppression(on),
            Effect::SetHand(hand) => {
                self.ui.show_hand(hand);
                self.to_everybody(&chat::encode_hand(hand));
            }
            Effect::React(reaction) => {
                self.ui.show_reactions(Some(false));
                self.to_everybody(&chat::encode_reaction(reaction));
            }
            Effect::Close { conn } => {
                // Dropping the peer closes its connection and unregisters its handlers.
                self.peers.remove(&conn);
                self.streams.remove(&conn);
                self.stats.remove(&conn);
                self.chat_guards.remove(&conn);
                if let Some(Receiving {
                    parts: Some((_, entry, name)),
                    ..
                }) = self.receiving.remove(&conn)
                {
                    self.refuse_file(&entry, &name, FileError::Broken);
                }
            }
            Effect::MakeOffer { conn } => {
                let peer = self.peers.get(&conn)?;
                let outcome = match peer.create_offer().await {
                    Ok(sdp) => PeerInput::LocalDescription { offer: true, sdp },
                    Err(err) => PeerInput::Failed(describe(&err)),
                };
                return Some(Input::Peer(conn, outcome));
            }
            Effect::ApplyOffer { conn, sdp } => {
                let outgoing = self.outgoing();
                let peer = self.peers.get(&conn)?;
                let outcome = match peer.answer_offer(&sdp, outgoing.as_ref()).await {
                    Ok(sdp) => PeerInput::LocalDescription { offer: false, sdp },
                    Err(err) => PeerInput::Failed(describe(&err)),
                };
                return Some(Input::Peer(conn, outcome));
            }
            Effect::ApplyAnswer { conn, sdp } => {
                let peer = self.peers.get(&conn)?;
                let outcome = match peer.accept_answer(&sdp).await {
                    Ok(()) => PeerInput::AnswerApplied,
                    Err(err) => PeerInput::Failed(describe(&err)),
                };
                return Some(Input::Peer(conn, outcome));
            }
            Effect::AddCandidate { conn, candidate } => {
                if let Some(peer) = self.peers.get(&conn) {
                    peer.add_candidate(candidate);
                }
            }
            Effect::RestartIce { conn } => {
                if let Some(Err(err)) = self.peers.get(&conn).map(Peer::restart_ice) {
                    web_sys::console::warn_2(&"restartIce".into(), &err);
                }
            }
            Effect::AddMedia { conn } => {
                if let (Some(peer), Some(local)) = (self.peers.get(&conn), &self.outgoing()) {
                    let warn = |err: JsValue| {
                        web_sys::console::warn_2(&"adding the camera to a call".into(), &err);
                    };
                    match peer.add_media(local) {
                        Ok(done) => wasm_bindgen_futures::spawn_local(async move {
                            if let Err(err) = done.await {
                                warn(err);
                            }
                        }),
                        Err(err) => warn(err),
                    }
                }
            }
            Effect::SetIceServers(servers) => {
                let warn = |result: Result<(), JsValue>| {
                    if let Err(err) = result {
                        web_sys::console::warn_2(&"setConfiguration".into(), &err);
                    }
                };
                if let Some(spare) = &mut self.spare {
                    warn(spare.use_servers(&servers));
                }
                for peer in self.peers.values() {
                    warn(peer.set_ice_servers(&servers));
                }
            }
            Effect::StartTimer { timer, ms } => {
                let tx = self.events_tx.clone();
                self.timer_starts = self.timer_starts.wrapping_add(1);
                let number = self.timer_starts;
                // setTimeout takes an i32: a longer wait would go off at once.
                let ms = ms.min(i32::MAX as u32);
                let timeout = Timeout::new(ms, move || {
                    let _ = tx.unbounded_send(Event::Timer(timer, number));
                });
                // Replacing a running timer drops (and so clears) the old one.
                self.timers.insert(timer, (number, timeout));
            }
            Effect::CancelTimer(timer) => {
                self.timers.remove(&timer);
            }
        }
        None
    }

    /// Creates connection `conn`; see [`Effect::Open`]. The camera is not waited for.
    fn open(&mut self, conn: ConnId, answering: bool) -> Option<Input> {
        let tx = self.events_tx.clone();
        let report = move |event| {
            let _ = tx.unbounded_send(Event::Peer(conn, event));
        };
        match Peer::new(self.spare.take(), self.engine.ice_servers(), report) {
            Ok(peer) => {
                if !answering {
                    peer.send_media(self.outgoing().as_ref());
                }
                // They learn first thing whether we are muted or have the camera off.
                let media = self.engine.media();
                if media != MediaState::default() {
                    peer.send_chat(&chat::encode_media(media));
                }
                // And whether our hand is up: somebody who joins later sees it too.
                if self.engine.hand() {
                    peer.send_chat(&chat::encode_hand(true));
                }
                self.peers.insert(conn, peer);
                None
            }
            Err(err) => Some(Input::Peer(conn, PeerInput::Failed(describe(&err)))),
        }
    }

    fn connect_relay(&mut self) {
        self.relay_generation += 1;
        let generation = self.relay_generation;
        let tx = self.events_tx.clone();
        let report = move |event| {
            let _ = tx.unbounded_send(match event {
                RelayEvent::Message(msg) => Event::Relay(generation, msg),
                RelayEvent::Lost(why) => Event::RelayLost(generation, why),
            });
        };
        // Frames sent before the socket opens wait for it, so `join` can be sent right away.
        match RelaySocket::open(&self.options.relay_url, report) {
            Ok(socket) => self.relay = Some(socket),
            Err(why) => {
                self.relay = None;
                let _ = self
                    .events_tx
                    .unbounded_send(Event::RelayLost(generation, why));
            }
        }
    }

    /// Reads the stats of each connected call, beside the loop, unless a read is under way:
    /// [`App::show_read`] shows them when they come back.
    fn read_stats(&mut self) {
        let tiles = self.engine.tiles();
        let connected = |tile: &&core::Tile| tile.state == core::TileState::Connected;
        if !tiles.iter().any(|tile| connected(&tile)) {
            return;
        }
        let Some(read) = self.reads.start(js_sys::Date::now()) else {
            return;
        };
        // Asked for now (a browser answers them in parallel), awaited one by one beside the loop.
        let mut calls = Vec::new();
        for tile in tiles.iter().filter(connected) {
            if let Some(peer) = self.peers.get(&tile.conn) {
                calls.push((tile.conn, peer.stats()));
            }
        }
        let tx = self.events_tx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let mut read_calls = Vec::new();
            for (conn, stats) in calls {
                read_calls.push((conn, stats.await, js_sys::Date::now()));
            }
            let _ = tx.unbounded_send(Event::Stats(read, read_calls));
        });
    }

    /// Shows the path each call takes (`#connectionPath`: the first one's), its figures, and
    /// who speaks, from a stats read.
    fn show_read(&mut self, calls: Vec<(ConnId, Result<JsValue, JsValue>, f64)>) {
        let tiles = self.engine.tiles();
        let mut levels = Vec::new();
        for (conn, stats, at_ms) in calls {
            // A call that ended while its stats were read.
            if !tiles.iter().any(|tile| tile.conn == conn) {
                continue;
            }
            match stats.and_then(|report| peer::stat_entries(&report)) {
                Ok(stats) => {
                    let path = diagnose::selected_path(&stats);
                    if let Some(path) = path {
                        self.ui.show_tile_path(conn, path);
                        if tiles[0].conn == conn {
                            self.ui.show_path(Some(path));
                        }
                    }
                    if !self.stats.contains_key(&conn) {
                        self.stats.insert(conn, Default::default());
                    }
                    if let Some((history, known)) = self.stats.get_mut(&conn) {
                        history.push(stats::Counters::of(&stats, at_ms));
                        *known = path;
                        if let Some(figures) = &history.figures {
                            levels.push((conn, figures.level));
                        }
                    }
                }
                Err(err) => web_sys::console::warn_2(&"getStats".into(), &err),
            }
        }
        self.ui.show_speaker(self.speaker.heard(&levels));
        self.ui.show_stats(&tiles, &self.stats);
    }

    fn render(&mut self) {
        self.ui.set_status(&self.engine.status());
        // The panels' buttons say whether they are open, the window may have been resized.
        self.ui.show_panels(None);
        let tiles = self.engine.tiles();
        self.ui.sync_tiles(&tiles, &self.streams);
        self.ui.list_file_to(&tiles);
        self.show_mic_level();
        if tiles.is_empty() {
            self.ui.show_path(None);
        }
        self.ui.enable(
            self.local.is_none(),
            self.engine.can_call(),
            self.engine.can_hang_up(),
        );
        self.door_ui.render(&self.engine, self.ui.lang());
    }
}

fn conn_state(state: RtcPeerConnectionState) -> ConnState {
    match state {
        RtcPeerConnectionState::New => ConnState::New,
        RtcPeerConnectionState::Connected => ConnState::Connected,
        RtcPeerConnectionState::Disconnected => ConnState::Disconnected,
        RtcPeerConnectionState::Failed => ConnState::Failed,
        RtcPeerConnectionState::Closed => ConnState::Closed,
        _ => ConnState::Connecting,
    }
}

/// A browser error in words (a DOMException's message, say).
fn describe(err: &JsValue) -> String {
    js_sys::Reflect::get(err, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| err.as_string())
        // Not `{err:?}`: formatting a JsValue brings wasm-bindgen's whole debug-string
        // function into the bundle's glue.
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// A random session id for this page: 16 hex digits from `crypto.getRandomValues` where there
/// is one (any secure context), else from `Math.random`.
fn random_session() -> String {
    random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `N` random bytes from `crypto.getRandomValues` (any secure context), else `Math.random`.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .and_then(|c| c.get_random_values_with_u8_array(&mut bytes).ok())
        .is_some();
    if !filled {
        for byte in &mut bytes {
            *byte = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    bytes
}

/// How many lines [`trace`] keeps.
const TRACE_LINES: u32 = 400;

/// Keeps the last [`TRACE_LINES`] engine inputs and effects, shortened (see
/// [`crate::trace::line`]), in `window.__callLog`:
/// what a person can copy into a bug report, and what the tests print when a call fails.
fn trace(line: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let key = JsValue::from_str("__callLog");
    let log = match js_sys::Reflect::get(&window, &key).map(JsCast::dyn_into::<js_sys::Array>) {
        Ok(Ok(log)) => log,
        _ => {
            let log = js_sys::Array::new();
            let _ = js_sys::Reflect::set(&window, &key, &log);
            log
        }
    };
    let stamp = js_sys::Date::now() as u64 % 100_000_000;
    log.push(&JsValue::from_str(&format!("{stamp} {line}")));
    if log.length() > TRACE_LINES {
        log.shift();
    }
}

/// Lets the page run what is waiting (input, the browser's replies) before going on.
async fn next_task() {
    sleep_ms(0).await;
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

/// Stops every track of `stream`.
fn stop_tracks(stream: &MediaStream) {
    for track in stream.get_tracks().iter() {
        if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
            track.stop();
        }
    }
}

/// Sends `file` (`size` bytes) on every one of `channels`: `header`, then its bytes in
/// chunks of [`files::CHUNK`], waiting while a channel holds more than [`files::HIGH_WATER`]
/// bytes not yet sent; `entry` shows how far it is.
async fn send_chunks(
    file: &web_sys::File,
    size: u64,
    header: &str,
    channels: &[web_sys::RtcDataChannel],
    entry: &web_sys::Element,
) -> Result<(), JsValue> {
    for channel in channels {
        channel.set_buffered_amount_low_threshold(files::HIGH_WATER / 2);
        channel.send_with_str(header)?;
    }
    let mut sent = 0;
    while sent < size {
        let end = (sent + files::CHUNK).min(size);
        let chunk = file.slice_with_f64_and_f64(sent as f64, end as f64)?;
        let bytes: js_sys::ArrayBuffer = wasm_bindgen_futures::JsFuture::from(chunk.array_buffer())
            .await?
            .dyn_into()?;
        for channel in channels {
            while channel.buffered_amount() > files::HIGH_WATER {
                // Until the channel has sent enough, or a second has gone: a connection closed
                // here (a hang-up, the person gone) fires no `close` on its channels.
                let drained = js_sys::Promise::new(&mut |resolve, _| {
                    channel.set_onbufferedamountlow(Some(&resolve));
                    if let Some(window) = web_sys::window() {
                        let _ = window
                            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 1_000);
                    }
                });
                wasm_bindgen_futures::JsFuture::from(drained).await?;
                channel.set_onbufferedamountlow(None);
                if channel.ready_state() != web_sys::RtcDataChannelState::Open {
                    return Err("the channel closed".into());
                }
            }
            channel.send_with_array_buffer(&bytes)?;
        }
        sent = end;
        Ui::transfer_progress(entry, files::progress(sent, size));
    }
    Ok(())
}

/// The first audio track of `stream`.
fn audio_track(stream: &MediaStream) -> Option<web_sys::MediaStreamTrack> {
    stream.get_audio_tracks().get(0).dyn_into().ok()
}

/// The first video track of `stream`.
fn video_track(stream: &MediaStream) -> Option<web_sys::MediaStreamTrack> {
    stream.get_video_tracks().get(0).dyn_into().ok()
}
