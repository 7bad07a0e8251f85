//! The call engine: the room's state and every decision, as `state + input -> effects`.
//!
//! Nothing here touches the browser. The browser layer (`app.rs`) turns callbacks into
//! [`Input`]s, hands them to [`Engine::handle`], and carries out the [`Effect`]s it gets back,
//! in order; the outcome of an effect on a peer connection (a local description made, an answer
//! applied, a failure) comes back as the next input. The page then shows [`Engine::status`] and
//! [`Engine::tiles`]. Every decision is unit-tested on the host (`cargo test -p client --lib`).
//!
//! The engine is split by who owns the state, each part with its own tests:
//! - [`relay_link`]: joined, down, backoff, heartbeat, resume;
//! - [`room`]: who is there, who calls whom, politeness;
//! - [`negotiation`]: one connection's perfect negotiation, candidates, offer resends, ICE
//!   restarts and their grace, fingerprints (a connection to a media server would be one more);
//! - [`local_media`]: mute, camera, screen; [`transceivers`]: which transceiver carries them;
//! - [`view`]: the status line, the tiles and the words for the person;
//! - [`gestures`]: our raised hand and reactions, and how long theirs show;
//! - [`files`]: what a file sent or received may be, and how a transfer travels;
//! - [`shortcuts`]: which key does what, and when a key is the person typing;
//! - [`chat_guard`]: how much a peer may send on the chat channel (the browser layer holds one
//!   per connection, and asks it about each frame before reading it).
//!
//! This file holds the inputs and effects, and [`Engine`], which routes each input to its part
//! and carries what one part's outcome means for the others. Calls survive the relay: losing it
//! keeps every peer connection, and the page comes back to the same calls, recognising the
//! others by their session ids.

use protocol::{ClientMsg, ErrorKind, IceCandidate, IceServer, PeerId, PeerInfo, ServerMsg};

use crate::{
    diagnose::{IceServerError, IceSetup},
    small::VecSet,
    text::{Lang, RelayWhy, Text},
};

/// How long a page at a locked room's door waits before knocking again (the relay forgets a
/// knock not repeated within 10 s).
const KNOCK_AGAIN_MS: u32 = 1_500;

pub mod chat_guard;
pub mod door;
pub mod files;
pub mod gestures;
pub mod local_media;
pub mod negotiation;
pub mod relay_link;
pub mod room;
pub mod shortcuts;
pub mod speaker;
pub mod transceivers;
pub mod view;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use door::{Door, Entry};
use gestures::{Gestures, Reaction, Theirs};
use local_media::LocalMedia;
use negotiation::{Negotiation, Note};
use relay_link::{LinkState, RelayLink};
use room::{Call, Room};
use view::{Trouble, View};

/// One peer connection, numbered by the engine. Inputs about a connection that has been closed
/// are stale and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// The timers the engine owns. Starting one that runs replaces it; the engine cancels each when
/// its reason goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Try the relay again.
    Reconnect,
    /// The connection stayed disconnected this long: restart ICE.
    Disconnected(ConnId),
    /// The connection was not restored in time: the person is lost.
    Lost(ConnId),
    /// Time to ask the relay whether it is still there.
    Heartbeat,
    /// The relay did not answer the last `ping` in time.
    PongDue,
    /// Our offer got no answer in time: send it again.
    AnswerDue(ConnId),
    /// The polite side left an ICE restart to the other side this long; its turn now.
    RestartDue(ConnId),
    /// A new connection has had this long to connect: if it has not, restart ICE.
    ConnectDue(ConnId),
    /// Their reaction on a connection has shown long enough.
    Reaction(ConnId),
    /// We may send a reaction again.
    ReactGap,
    /// Knock again at the locked room.
    Knock,
}

/// `RTCPeerConnection.connectionState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Not started.
    New,
    /// ICE and DTLS are under way.
    Connecting,
    /// Media can flow.
    Connected,
    /// Lost contact; may come back by itself.
    Disconnected,
    /// Gave up; only an ICE restart brings it back.
    Failed,
    /// Closed.
    Closed,
}

/// What a peer connection reported, or how an effect on it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerInput {
    /// `negotiationneeded`: tracks or an ICE restart want a new offer.
    NegotiationNeeded,
    /// [`Effect::MakeOffer`] or [`Effect::ApplyOffer`] made this local description.
    LocalDescription {
        /// An offer (from `MakeOffer`), or an answer (from `ApplyOffer`).
        offer: bool,
        /// Its SDP.
        sdp: String,
    },
    /// [`Effect::ApplyAnswer`] succeeded.
    AnswerApplied,
    /// An effect on the connection failed, with the browser's words.
    Failed(String),
    /// A local ICE candidate to send.
    Candidate(IceCandidate),
    /// The connection's state changed.
    State(ConnState),
    /// A STUN or TURN server could not be used (`icecandidateerror`).
    IceServerError(IceServerError),
    /// The person on the other side muted, unmuted, or turned their camera off or on.
    RemoteMedia(MediaState),
    /// The person on the other side raised (`true`) or lowered their hand.
    RemoteHand(bool),
    /// The person on the other side reacted.
    RemoteReaction(Reaction),
}

/// The name the person typed, made ready to join with: trimmed, `None` when empty; refused
/// for the person when the relay would refuse it (control characters, too long).
pub fn clean_name(typed: &str) -> Result<Option<String>, Text> {
    let name = typed.trim();
    if name.is_empty() {
        return Ok(None);
    }
    protocol::validate_name(name).map_err(|_| Text::NameInvalid)?;
    Ok(Some(name.to_owned()))
}

/// What a person sends of their microphone and camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaState {
    /// The microphone is muted: silence is sent.
    pub muted: bool,
    /// The camera is off: black frames are sent.
    pub camera_off: bool,
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The page started: join the room.
    Start,
    /// A message from the relay.
    Relay(ServerMsg),
    /// The relay connection closed or could not open, and why.
    RelayLost(RelayWhy),
    /// A timer went off.
    Timer(Timer),
    /// The browser reports a network change (`online`).
    Online,
    /// Camera and microphone opened (`Ok`), or what to tell the person.
    Media(Result<(), Text>),
    /// The person pressed Call.
    Call,
    /// The person pressed Hang up.
    HangUp,
    /// The person chose the name to join with (`None`: no name).
    SetName(Option<String>),
    /// The person pressed the share button.
    ToggleShare,
    /// Screen sharing ended: stopped from the browser, or never started (refused).
    ShareEnded,
    /// The person pressed the mute button.
    ToggleMute,
    /// The person pressed the camera button.
    ToggleCamera,
    /// The person pressed the noise suppression switch.
    ToggleNoiseSuppression,
    /// The person pressed the hand button.
    ToggleHand,
    /// The person chose a reaction.
    React(Reaction),
    /// The person pressed the lock button.
    ToggleLock,
    /// The person gave a passphrase: the room's new one (in control, inside), or the one to
    /// join with (outside, asked for one).
    Passphrase(String),
    /// The person let in (`true`) or turned away the page knocking with this session id.
    Answer(String, bool),
    /// The person in control removed this person.
    Remove(PeerId),
    /// A peer connection's news.
    Peer(ConnId, PeerInput),
}

/// Something for the browser layer to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Open a new relay connection. Later [`Effect::Send`]s go to it once it is open.
    ConnectRelay,
    /// Give up the current relay connection (it stopped answering): close it and ignore
    /// whatever it still reports.
    DropRelay,
    /// Send a message to the relay.
    Send(ClientMsg),
    /// Start (`true`) or stop sharing the screen: it replaces the camera's video on every call,
    /// and the camera comes back when it stops.
    Share(bool),
    /// Send our microphone and camera like this from now on (enable or disable the tracks),
    /// show it on our buttons, and tell everybody we have a call with.
    SetMedia(MediaState),
    /// Have the browser suppress the microphone's noise (`true`) or not, on the microphone
    /// open now and on one opened later, and show it on the switch.
    SetNoiseSuppression(bool),
    /// Our hand is up (`true`) or down from now on: show it on the hand button, and tell
    /// everybody we have a call with.
    SetHand(bool),
    /// Send this reaction to everybody we have a call with.
    React(Reaction),
    /// Create a peer connection with the current ICE servers; report its news as
    /// [`Input::Peer`]. A connection we call on gets send-receive audio and video at once,
    /// with the camera's tracks if it is open (it is not waited for: its tracks go onto those
    /// transceivers when it opens, without a new negotiation). One opened to answer an offer
    /// gets nothing until the offer is applied, so that the offer's m-lines carry our media.
    Open {
        /// The new connection.
        conn: ConnId,
        /// An offer is about to be applied to it ([`Effect::ApplyOffer`]).
        answering: bool,
    },
    /// Close the connection and drop its handlers.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// `setLocalDescription()` for an offer; report [`PeerInput::LocalDescription`].
    MakeOffer {
        /// The connection.
        conn: ConnId,
    },
    /// `setRemoteDescription(offer)` (which rolls back an offer of ours), then
    /// `setLocalDescription()` for the answer; report [`PeerInput::LocalDescription`].
    ApplyOffer {
        /// The connection.
        conn: ConnId,
        /// The offer.
        sdp: String,
    },
    /// `setRemoteDescription(answer)`; report [`PeerInput::AnswerApplied`].
    ApplyAnswer {
        /// The connection.
        conn: ConnId,
        /// The answer.
        sdp: String,
    },
    /// `addIceCandidate`. Only issued once a remote description is in place.
    AddCandidate {
        /// The connection.
        conn: ConnId,
        /// The remote candidate.
        candidate: IceCandidate,
    },
    /// `restartIce()`: the next offer gathers new candidates.
    RestartIce {
        /// The connection.
        conn: ConnId,
    },
    /// Add the local media that just opened to the connection (a renegotiation follows).
    AddMedia {
        /// The connection.
        conn: ConnId,
    },
    /// Use these ICE servers from now on, on every open connection too (and on a connection
    /// made ahead of need, so that it gathers with them before anyone calls).
    SetIceServers(Vec<IceServer>),
    /// Start (or restart) a timer.
    StartTimer {
        /// Which.
        timer: Timer,
        /// After how long.
        ms: u32,
    },
    /// Cancel a timer.
    CancelTimer(Timer),
}

/// How one remote person's tile looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileState {
    /// The call with them is being set up.
    Connecting,
    /// Media flows.
    Connected,
    /// The connection dropped; an ICE restart is under way.
    Reconnecting,
    /// Not restored in time.
    Lost,
}

impl TileState {
    /// The tile's `data-state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Lost => "lost",
        }
    }
}

/// One remote person's tile, as the page should show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The connection whose media it shows.
    pub conn: ConnId,
    /// The person's relay id (`data-peer`); it changes if the relay restarts.
    pub peer: PeerId,
    /// The person's display name.
    pub name: Option<String>,
    /// How it is going.
    pub state: TileState,
    /// Whether they are muted or have their camera off.
    pub media: MediaState,
    /// Their hand is up.
    pub hand: bool,
    /// The reaction they sent, while it shows.
    pub reaction: Option<Reaction>,
    /// The verification code both sides of this call show ([`crate::verify`]), once they are
    /// connected: there is nothing to compare before, and drawing its symbols (a colour emoji
    /// font) takes the page's main thread for tens of ms, which would fall on the moment the
    /// answer is made and ICE starts.
    pub verify: Option<String>,
    /// How many offers we made on this connection (`data-offers`): a steady call makes none.
    pub offers: u32,
}

/// What the status line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Asking for camera and microphone, or joining the room.
    Starting,
    /// In the room alone, or with people who have not called yet.
    Waiting(Text),
    /// Setting up a call.
    Connecting,
    /// Media flows with everybody called.
    Connected,
    /// The person hung up, or was hung up on.
    Ended(Text),
    /// Something the person must know about; stays until what resolves it happens.
    Error(Text),
}

impl Status {
    /// The status line's `data-state`.
    pub fn state(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Waiting(_) => "waiting",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Ended(_) => "ended",
            Status::Error(_) => "error",
        }
    }

    /// What the status line says.
    pub fn text(&self) -> Text {
        match self {
            Status::Starting => Text::Starting,
            Status::Connecting => Text::Connecting,
            Status::Connected => Text::Connected,
            Status::Waiting(text) | Status::Ended(text) | Status::Error(text) => text.clone(),
        }
    }

    /// The status line's words in `lang`.
    pub fn words(&self, lang: Lang) -> String {
        self.text().show(lang)
    }
}

/// How long the engine waits for things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// First relay reconnection delay; it doubles per attempt.
    pub reconnect_base_ms: u32,
    /// The longest relay reconnection delay.
    pub reconnect_max_ms: u32,
    /// A connection disconnected this long gets an ICE restart.
    pub disconnected_ms: u32,
    /// A connection not restored this long after it dropped is lost.
    pub lost_ms: u32,
    /// How often the page asks the relay whether it is still there.
    pub heartbeat_ms: u32,
    /// How long a `pong` may take before the relay connection counts as dead.
    pub pong_timeout_ms: u32,
    /// An offer unanswered this long is sent again; the wait doubles each time, up to 8 times
    /// this.
    pub answer_due_ms: u32,
    /// How long the polite side of a dropped connection leaves the ICE restart to the other.
    pub restart_grace_ms: u32,
    /// A new connection that is not connected this long gets an ICE restart (a browser that
    /// gathered nothing after a rollback stays "connecting" for good otherwise).
    pub connect_due_ms: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            reconnect_base_ms: 500,
            reconnect_max_ms: 10_000,
            disconnected_ms: 3_000,
            lost_ms: 30_000,
            heartbeat_ms: 10_000,
            pong_timeout_ms: 3_000,
            answer_due_ms: 3_000,
            restart_grace_ms: 6_000,
            connect_due_ms: 10_000,
        }
    }
}

/// How the page was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `#true`: call everybody in the room.
    pub caller: bool,
    /// The room to join.
    pub room: String,
    /// The display name to join with.
    pub name: Option<String>,
    /// This page's session id: random, kept for the page's lifetime.
    pub session: String,
    /// A seed for the reconnection jitter.
    pub seed: u64,
    /// Timers.
    pub timing: Timing,
}

/// What the parts of the engine did with one input: the effects, in order, the timers that
/// run, and what a connection's negotiation needs the engine to act on.
pub struct Out {
    effects: Vec<Effect>,
    timers: VecSet<Timer>,
    notes: Vec<Note>,
}

impl Out {
    /// Collects the effects of one input, with the timers running now.
    pub fn new(timers: VecSet<Timer>) -> Self {
        Self {
            effects: Vec::new(),
            timers,
            notes: Vec::new(),
        }
    }

    /// Something for the browser layer to do.
    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Starts (or restarts) `timer`.
    pub fn start(&mut self, timer: Timer, ms: u32) {
        self.timers.insert(timer);
        self.effects.push(Effect::StartTimer { timer, ms });
    }

    /// Cancels `timer` if it runs.
    pub fn cancel(&mut self, timer: Timer) {
        if self.timers.remove(&timer) {
            self.effects.push(Effect::CancelTimer(timer));
        }
    }

    /// Whether `timer` runs.
    pub fn running(&self, timer: Timer) -> bool {
        self.timers.contains(&timer)
    }

    /// A connection's news for the engine.
    fn note(&mut self, note: Note) {
        self.notes.push(note);
    }

    /// The effects, the timers running, and the notes not yet taken.
    pub fn finish(self) -> (Vec<Effect>, VecSet<Timer>, Vec<Note>) {
        (self.effects, self.timers, self.notes)
    }
}

/// The room's whole state.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    relay: RelayLink,
    room: Room,
    media: LocalMedia,
    gestures: Gestures,
    view: View,
    door: Door,
    ice_servers: Vec<IceServer>,
    /// Whether we take part in calls: false after Hang up, until Call or an incoming offer.
    active: bool,
    /// The relay refused our join for its name: a new name sends it again.
    name_refused: bool,
    next_conn: u32,
    /// The timers running (the browser layer only holds their handles).
    timers: VecSet<Timer>,
}

impl Engine {
    /// An engine that has not joined yet; give it [`Input::Start`].
    pub fn new(config: Config) -> Self {
        Self {
            relay: RelayLink::new(config.seed),
            config,
            room: Room::default(),
            media: LocalMedia::default(),
            gestures: Gestures::default(),
            view: View::default(),
            door: Door::default(),
            ice_servers: Vec::new(),
            active: true,
            name_refused: false,
            next_conn: 0,
            timers: VecSet::new(),
        }
    }

    /// Acts on one input; returns what the browser layer must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Out::new(std::mem::take(&mut self.timers));
        self.on(input, &mut out);
        let (effects, timers, notes) = out.finish();
        debug_assert!(notes.is_empty(), "notes not taken: {notes:?}");
        self.timers = timers;
        effects
    }

    fn on(&mut self, input: Input, out: &mut Out) {
        let timing = self.config.timing;
        match input {
            Input::Start => {
                let join = self.join_msg(None);
                self.relay.connect(join, out);
            }
            Input::Relay(msg) => self.on_relay(msg, out),
            Input::RelayLost(RelayWhy::Closed(protocol::CLOSE_REMOVED)) => {
                self.removed(out);
                self.relay_down(RelayWhy::Closed(protocol::CLOSE_REMOVED), out);
            }
            Input::RelayLost(why) => self.relay_down(why, out),
            Input::Timer(timer) => self.on_timer(timer, out),
            Input::Online => {
                // The device's addresses may have changed: the relay socket may be dead, and
                // every connection looks for a path again.
                self.relay.probe(&timing, out);
                for conn in self.conns() {
                    self.with_call(conn, out, |n, out| n.restart_ice(false, &timing, out));
                }
            }
            Input::Media(Ok(())) => {
                self.view.clear_problem(Trouble::Media);
                if self.media.opened() {
                    for conn in self.conns() {
                        out.push(Effect::AddMedia { conn });
                    }
                }
            }
            Input::Media(Err(why)) => self.view.set_problem(Trouble::Media, why),
            Input::Call => {
                self.active = true;
                self.view.set_ended(None);
                let ids: Vec<PeerId> = self
                    .room
                    .people()
                    .filter(|p| p.present && p.call.is_none())
                    .map(|p| p.id)
                    .collect();
                for id in ids {
                    self.open_call(id, false, out);
                }
            }
            Input::HangUp => {
                let linked: Vec<(PeerId, ConnId)> = self
                    .room
                    .people()
                    .filter_map(|p| Some((p.id, p.call.as_ref()?.negotiation.conn())))
                    .collect();
                if !linked.is_empty() {
                    for (id, conn) in linked {
                        if self.relay.joined() {
                            out.push(Effect::Send(ClientMsg::HangUp { to: Some(id) }));
                        }
                        self.close_call(conn, out);
                    }
                    self.active = false;
                    self.view.set_ended(Some(Text::CallEnded));
                }
            }
            Input::SetName(name) => {
                self.config.name = name;
                // Refused for the name: ask again with this one (the socket stays open after
                // an error). Joined already: it is used from the next join on.
                if self.relay.state() == LinkState::Joining && self.name_refused {
                    self.name_refused = false;
                    self.view.clear_problem(Trouble::Refused);
                    let resume = self.relay.take_resume();
                    out.push(Effect::Send(self.join_msg(resume)));
                }
            }
            Input::ToggleShare => self.media.toggle_share(out),
            Input::ShareEnded => self.media.share_ended(out),
            Input::ToggleMute => self.media.toggle_mute(out),
            Input::ToggleCamera => self.media.toggle_camera(out),
            Input::ToggleNoiseSuppression => self.media.toggle_noise_suppression(out),
            Input::ToggleHand => self.gestures.toggle_hand(out),
            Input::React(reaction) => self.gestures.react(reaction, out),
            Input::ToggleLock => {
                if self.in_control() {
                    let locked = !self.door.locked();
                    out.push(Effect::Send(ClientMsg::Lock { locked }));
                }
            }
            Input::Passphrase(passphrase) => {
                if self.in_control() {
                    out.push(Effect::Send(ClientMsg::Passphrase { passphrase }));
                } else if !self.relay.joined() {
                    self.door.use_passphrase(passphrase);
                    if let (LinkState::Joining, Entry::Passphrase(_)) =
                        (self.relay.state(), self.door.entry())
                    {
                        self.door.set_entry(Entry::Open);
                        self.view.clear_problem(Trouble::Refused);
                        out.push(Effect::Send(self.join_msg(None)));
                    }
                }
            }
            Input::Answer(session, admit) => {
                if self.relay.joined() {
                    self.door.answered(&session);
                    out.push(Effect::Send(if admit {
                        ClientMsg::Admit { session }
                    } else {
                        ClientMsg::Refuse { session }
                    }));
                }
            }
            Input::Remove(peer) => {
                if self.in_control() && Some(peer) != self.relay.me() {
                    out.push(Effect::Send(ClientMsg::Remove { peer }));
                }
            }
            Input::Peer(conn, news) => self.on_peer(conn, news, out),
        }
    }

    /// Whether this page is in control of its room: it may lock it, set its passphrase and
    /// remove people.
    pub fn in_control(&self) -> bool {
        self.relay.joined()
            && self.relay.me().is_some()
            && self.door.controller() == self.relay.me()
    }

    /// The room's door as the relay told it.
    pub fn door(&self) -> &Door {
        &self.door
    }

    /// The person in control removed us: the calls end, and the page does not come back.
    fn removed(&mut self, out: &mut Out) {
        if self.door.entry() == Entry::Removed {
            return;
        }
        self.door.set_entry(Entry::Removed);
        for conn in self.conns() {
            self.close_call(conn, out);
        }
        self.active = false;
        self.view.set_problem(Trouble::Refused, Text::Removed);
    }

    /// What we send of our microphone and camera: a new connection is told it first.
    pub fn media(&self) -> MediaState {
        self.media.state()
    }

    /// Whether the browser is to suppress the microphone's noise.
    pub fn noise_suppression(&self) -> bool {
        self.media.noise_suppression()
    }

    /// Whether our hand is up: a new connection is told it first.
    pub fn hand(&self) -> bool {
        self.gestures.hand()
    }

    /// What the status line should say now.
    pub fn status(&self) -> Status {
        if self.door.entry() == Entry::Knocking && !self.relay.joined() {
            return Status::Waiting(Text::Knocking);
        }
        self.view.status(&self.relay, &self.room)
    }

    /// The remote people's tiles, in the order they came.
    pub fn tiles(&self) -> Vec<Tile> {
        View::tiles(&self.room)
    }

    /// Whether Call makes sense now (someone is here we have no call with).
    pub fn can_call(&self) -> bool {
        self.relay.joined() && self.room.people().any(|p| p.present && p.call.is_none())
    }

    /// Whether Hang up makes sense now.
    pub fn can_hang_up(&self) -> bool {
        self.room.calls().next().is_some()
    }

    /// Our relay id, once joined.
    pub fn me(&self) -> Option<PeerId> {
        self.relay.me()
    }

    /// The ICE servers new connections get.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// How many peer connections the page has opened in its lifetime.
    pub fn connections_opened(&self) -> u32 {
        self.next_conn
    }

    /// The timers running now.
    pub fn timers(&self) -> impl Iterator<Item = Timer> + '_ {
        self.timers.iter().copied()
    }

    /// The connections there are.
    fn conns(&self) -> Vec<ConnId> {
        self.room.calls().map(|c| c.negotiation.conn()).collect()
    }

    fn join_msg(&self, resume: Option<String>) -> ClientMsg {
        ClientMsg::Join {
            room: self.config.room.clone(),
            name: self.config.name.clone(),
            resume,
            session: Some(self.config.session.clone()),
            passphrase: self.door.passphrase(),
        }
    }

    /// Runs `act` on the negotiation of `conn`, if it is open, then acts on its notes.
    fn with_call(
        &mut self,
        conn: ConnId,
        out: &mut Out,
        act: impl FnOnce(&mut Negotiation, &mut Out),
    ) {
        let Some(call) = self.room.by_conn_mut(conn).and_then(|p| p.call.as_mut()) else {
            return; // News from a connection that has been closed.
        };
        act(&mut call.negotiation, out);
        self.take_notes(conn, out);
    }

    /// What a connection's negotiation asked of the engine.
    fn take_notes(&mut self, conn: ConnId, out: &mut Out) {
        for note in std::mem::take(&mut out.notes) {
            match note {
                Note::Failed(text) => {
                    self.close_call(conn, out);
                    self.view.set_problem(Trouble::Call, text);
                }
                Note::Trouble(text) => self.view.set_problem(Trouble::Call, text),
                Note::Connected => self.view.clear_problem(Trouble::Call),
                Note::ProbeRelay => {
                    let timing = self.config.timing;
                    self.relay.probe(&timing, out);
                }
            }
        }
    }

    fn on_relay(&mut self, msg: ServerMsg, out: &mut Out) {
        let timing = self.config.timing;
        match msg {
            ServerMsg::Welcome {
                id,
                peers,
                ice_servers,
                resume_token,
                ..
            } => self.on_welcome(id, peers, ice_servers, resume_token, out),
            ServerMsg::Pong => self.relay.pong(&timing, out),
            ServerMsg::Room {
                controller,
                locked,
                passphrase,
                knocking,
            } => self.door.told(controller, locked, passphrase, knocking),
            ServerMsg::Removed => self.removed(out),
            ServerMsg::IceServers { ice_servers } => {
                self.ice_servers = ice_servers.clone();
                out.push(Effect::SetIceServers(ice_servers));
            }
            ServerMsg::PeerJoined { peer } => {
                let id = peer.id;
                self.door.joined(id);
                self.room.learn(peer, true, &self.config.session);
                self.room.route_calls(self.relay.joined());
                // Someone we have a call with, back (maybe under a new id): what we told them
                // meanwhile may not have reached them.
                if let Some(conn) = self.conn_of(id) {
                    self.with_call(conn, out, |n, out| n.catch_up(out));
                }
                self.call_whom_we_should(out);
            }
            ServerMsg::PeerLeft { peer, reconnecting } => {
                self.door.left(peer);
                let Some(person) = self.room.by_id_mut(peer) else {
                    return;
                };
                let conn = person.call.as_ref().map(|c| c.negotiation.conn());
                if reconnecting && conn.is_some() {
                    person.present = false;
                } else {
                    // Gone for good (or we had no call with them): the tile goes. Removed
                    // while still present, so that it is them and not somebody who had
                    // their id before (see `Room::learn`).
                    if let Some(conn) = conn {
                        self.close_call(conn, out);
                    }
                    self.room.remove(peer);
                }
                // A dropped connection may come back: the call stays while its media flows,
                // and the Lost timer ends it if the media stops too.
                self.room.route_calls(self.relay.joined());
            }
            ServerMsg::Offer { from, sdp, .. } => {
                // An offer from someone we have not heard of (their peer-joined is behind it
                // only if the relay restarted in between): take them in.
                self.room.stranger(from);
                // From a new connection of theirs (they closed the one we share and called
                // again): ours goes, and a new one answers theirs.
                if let Some(conn) = self.conn_of(from) {
                    let another = self
                        .room
                        .by_conn_mut(conn)
                        .and_then(|p| p.call.as_ref())
                        .is_some_and(|c| c.negotiation.from_another_connection(&sdp));
                    if another {
                        self.close_call(conn, out);
                    }
                }
                if self.conn_of(from).is_none() {
                    // Being called makes us take part again, even after a hang-up.
                    self.active = true;
                    self.open_call(from, true, out);
                }
                if let Some(conn) = self.conn_of(from) {
                    self.with_call(conn, out, |n, out| n.remote_offer(sdp, out));
                }
            }
            ServerMsg::Answer { from, sdp, .. } => {
                if let Some(conn) = self.conn_of(from) {
                    self.with_call(conn, out, |n, out| n.remote_answer(sdp, out));
                }
            }
            ServerMsg::Candidate {
                from, candidate, ..
            } => {
                if let Some(conn) = self.conn_of(from) {
                    self.with_call(conn, out, |n, out| n.remote_candidate(candidate, out));
                }
            }
            ServerMsg::HangUp { from, .. } => {
                if let Some(conn) = self.conn_of(from) {
                    self.close_call(conn, out);
                    if self.room.calls().next().is_none() {
                        self.view.set_ended(Some(Text::OtherHungUp));
                    }
                }
            }
            // A signal to someone who has just left: their `peer-left` is on its way.
            ServerMsg::Error {
                kind: ErrorKind::NoPeer,
                ..
            } => {}
            // Our place expired while we were away: join as someone new, same session.
            ServerMsg::Error {
                kind: ErrorKind::InvalidResume,
                ..
            } => out.push(Effect::Send(self.join_msg(None))),
            // A relay of several could not reach the store they share rooms through (Redis):
            // it placed nothing. Connect again with the usual backoff (to it, or to another
            // relay behind the same address), keeping every call whose media flows.
            ServerMsg::Error {
                kind: ErrorKind::BackplaneUnavailable,
                ..
            } => {
                out.push(Effect::DropRelay);
                self.relay_down(RelayWhy::StoreDown, out);
            }
            // A locked room: someone inside is asked to let us in; ask again shortly.
            ServerMsg::Error {
                kind: ErrorKind::Knocking,
                ..
            } => {
                self.door.set_entry(Entry::Knocking);
                self.view.clear_problem(Trouble::Refused);
                out.start(Timer::Knock, KNOCK_AGAIN_MS);
            }
            ServerMsg::Error {
                kind: ErrorKind::KnockRefused,
                ..
            } => {
                self.door.set_entry(Entry::Refused);
                self.view.set_problem(Trouble::Refused, Text::KnockRefused);
            }
            ServerMsg::Error {
                kind: ErrorKind::Removed,
                ..
            } => self.removed(out),
            ServerMsg::Error {
                kind: ErrorKind::WrongPassphrase,
                ..
            } => {
                let wrong = self.door.passphrase().is_some();
                self.door.set_entry(Entry::Passphrase(wrong));
                self.view
                    .set_problem(Trouble::Refused, Text::Passphrase { wrong });
            }
            // A control request that crossed a change of control: nothing changed, and the
            // page shows the room as it is (the relay's words are in the call log).
            ServerMsg::Error {
                kind: ErrorKind::NotInControl,
                ..
            } => {}
            ServerMsg::Error {
                kind: ErrorKind::NameTaken,
                ..
            } => {
                self.name_refused = true;
                let name = self.config.name.clone().unwrap_or_default();
                self.view
                    .set_problem(Trouble::Refused, Text::NameTaken(name));
            }
            // The relay's own words (`message`) are in the call log, for a bug report.
            ServerMsg::Error { kind, .. } => {
                let text = match kind {
                    ErrorKind::RoomFull => Text::RoomFull,
                    _ => Text::Refused,
                };
                self.view.set_problem(Trouble::Refused, text);
            }
        }
    }

    fn on_welcome(
        &mut self,
        id: PeerId,
        peers: Vec<PeerInfo>,
        ice_servers: Vec<IceServer>,
        resume_token: String,
        out: &mut Out,
    ) {
        let timing = self.config.timing;
        self.relay.welcomed(id, resume_token, &timing, out);
        self.view.clear_problem(Trouble::Refused);
        self.door.welcome(id, &peers);
        out.cancel(Timer::Knock);
        if self.ice_servers != ice_servers {
            self.ice_servers = ice_servers.clone();
            out.push(Effect::SetIceServers(ice_servers));
        }
        // Who is here now; anyone we knew who is not may still come back (a relay restart
        // brings everybody back one by one), and keeps their call while its media flows.
        self.room.mark_all_absent();
        for peer in peers {
            self.room.learn(peer, false, &self.config.session);
        }
        self.room.forget_absent();
        self.room.route_calls(true);
        // What we said may have been lost with the relay, and what we had to say waited for
        // it: send it now, to the ids the others have now.
        for conn in self.conns() {
            self.with_call(conn, out, |n, out| n.catch_up(out));
        }
        self.call_whom_we_should(out);
    }

    /// The connection of our call with `id`, if we have one.
    fn conn_of(&self, id: PeerId) -> Option<ConnId> {
        self.room
            .by_id(id)
            .and_then(|p| p.call.as_ref())
            .map(|c| c.negotiation.conn())
    }

    /// Opens a call with everyone we should call and have none with.
    fn call_whom_we_should(&mut self, out: &mut Out) {
        if !self.active || !self.relay.joined() {
            return;
        }
        for id in self.room.to_call(self.config.caller) {
            self.open_call(id, false, out);
        }
    }

    /// Opens a connection to `id`; on a connection we call on, its `negotiationneeded` makes
    /// the offer.
    fn open_call(&mut self, id: PeerId, answering: bool, out: &mut Out) {
        let me = self.relay.me();
        let route = self.relay.joined().then_some(id);
        let conn = ConnId(self.next_conn);
        let timing = self.config.timing;
        let session = self.config.session.clone();
        let Some(person) = self.room.by_id_mut(id) else {
            return;
        };
        let polite = Room::polite_towards(person, &session, me);
        self.next_conn += 1;
        out.push(Effect::Open { conn, answering });
        let mut negotiation = Negotiation::new(conn, polite, &timing, out);
        negotiation.set_route(route.filter(|_| person.present));
        person.call = Some(Call {
            negotiation,
            remote_media: MediaState::default(),
            theirs: Theirs::default(),
        });
        self.view.set_ended(None);
        self.view.clear_problem(Trouble::Call);
    }

    fn close_call(&mut self, conn: ConnId, out: &mut Out) {
        if let Some(person) = self.room.by_conn_mut(conn) {
            if let Some(call) = person.call.take() {
                out.cancel(Timer::Reaction(conn));
                call.negotiation.close(out);
            }
        }
    }

    fn on_peer(&mut self, conn: ConnId, news: PeerInput, out: &mut Out) {
        let timing = self.config.timing;
        let setup = IceSetup::of(&self.ice_servers);
        match news {
            PeerInput::NegotiationNeeded => {
                self.with_call(conn, out, |n, out| n.negotiation_needed(out));
            }
            PeerInput::LocalDescription { offer, sdp } => {
                self.with_call(conn, out, |n, out| {
                    n.local_description(offer, sdp, &timing, out)
                });
            }
            PeerInput::AnswerApplied => self.with_call(conn, out, |n, out| n.answer_applied(out)),
            PeerInput::Failed(why) => self.with_call(conn, out, |n, out| n.failed(why, out)),
            PeerInput::Candidate(candidate) => {
                self.with_call(conn, out, |n, out| n.local_candidate(candidate, out));
            }
            PeerInput::State(state) => {
                self.with_call(conn, out, |n, out| {
                    n.state_changed(state, &timing, setup, out)
                });
            }
            PeerInput::RemoteMedia(media) => {
                if let Some(call) = self.room.by_conn_mut(conn).and_then(|p| p.call.as_mut()) {
                    call.remote_media = media;
                }
            }
            PeerInput::RemoteHand(hand) => {
                if let Some(call) = self.room.by_conn_mut(conn).and_then(|p| p.call.as_mut()) {
                    call.theirs.hand = hand;
                }
            }
            PeerInput::RemoteReaction(reaction) => {
                if let Some(call) = self.room.by_conn_mut(conn).and_then(|p| p.call.as_mut()) {
                    call.theirs.reacted(conn, reaction, out);
                }
            }
            PeerInput::IceServerError(error) => {
                if error.is_turn_auth() {
                    self.with_call(conn, out, |n, _| n.turn_refused(error.url));
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Out) {
        if !out.timers.remove(&timer) {
            return; // Cancelled after it fired.
        }
        let timing = self.config.timing;
        let setup = IceSetup::of(&self.ice_servers);
        match timer {
            Timer::Reconnect => {
                let resume = self.relay.take_resume();
                let join = self.join_msg(resume);
                self.relay.connect(join, out);
            }
            Timer::Heartbeat => self.relay.probe(&timing, out),
            Timer::Knock => {
                if self.relay.state() == LinkState::Joining && self.door.entry() == Entry::Knocking
                {
                    out.push(Effect::Send(self.join_msg(None)));
                }
            }
            Timer::ReactGap => {}
            Timer::Reaction(conn) => {
                if let Some(call) = self.room.by_conn_mut(conn).and_then(|p| p.call.as_mut()) {
                    call.theirs.reaction = None;
                }
            }
            Timer::PongDue => {
                // A socket whose network went away can stay "open" for minutes: drop it and
                // connect again, from wherever this device is now.
                out.push(Effect::DropRelay);
                self.relay_down(RelayWhy::NoAnswer, out);
            }
            Timer::Disconnected(conn)
            | Timer::Lost(conn)
            | Timer::AnswerDue(conn)
            | Timer::RestartDue(conn)
            | Timer::ConnectDue(conn) => {
                self.with_call(conn, out, |n, out| n.timer(timer, &timing, setup, out));
            }
        }
    }

    fn relay_down(&mut self, why: RelayWhy, out: &mut Out) {
        let timing = self.config.timing;
        // Removed: the page does not come back by itself.
        if self.door.entry() == Entry::Removed {
            self.relay.give_up(why, out);
            self.room.route_calls(false);
        } else if self.relay.down(why, &timing, out) {
            self.room.route_calls(false);
        }
    }
}
