//! The call engine: the room's state and every decision, as `state + input -> effects`.
//!
//! Nothing here touches the browser. The browser layer (`app.rs`) turns callbacks into
//! [`Input`]s, hands them to [`Engine::handle`], and carries out the [`Effect`]s it gets back,
//! in order; the outcome of an effect on a peer connection (a local description made, an answer
//! applied, a failure) comes back as the next input. The page then shows [`Engine::status`] and
//! [`Engine::tiles`]. Every decision is unit-tested on the host (`cargo test -p client --lib`).
//!
//! - **Mesh.** One peer connection ([`ConnId`]) per other person. A `#true` page calls everyone;
//!   otherwise, in a room of three or more, the newer page of each pair calls the older one, so
//!   `/` plus `/#true` is still the 1:1 call where the page without the hash waits to be called.
//! - **Perfect negotiation.** Offers come only from `negotiationneeded`; of two colliding offers
//!   the impolite side ignores the other's and the polite side rolls its own back (the browser's
//!   implicit rollback in `setRemoteDescription`). Politeness comes from the session ids, which
//!   both sides know and which outlive relay restarts.
//! - **Calls survive.** Losing the relay keeps every peer connection: the page reconnects with
//!   jittered exponential backoff, resumes with its token or joins again with its session id,
//!   and recognises the others by theirs. A connection that fails, or stays disconnected for
//!   [`Timing::disconnected_ms`], or a network change, gets an ICE restart; one not back within
//!   [`Timing::lost_ms`] is shown as lost. The impolite side restarts; the polite side gives
//!   it [`Timing::restart_grace_ms`] first, because two restarts that cross make the polite
//!   side roll its own back, and Chrome's video into the page that rolled back a restart offer
//!   stalls after a few frames (seen in the address-change lab test).
//! - **No lost signals.** A socket can die without a word (the device moved): what went into it
//!   is gone. An offer without an answer is sent again, with our candidates, after
//!   [`Timing::answer_due_ms`] (doubling), on rejoining the relay, and when its addressee comes
//!   back under a new id; a repeated offer we already answered gets the same answer again; what
//!   we had to say while the relay was away goes out on rejoining.

use protocol::{
    ClientMsg, ErrorKind, IceCandidate, IceServer, PeerId, PeerInfo, ServerMsg, Signal,
};

use crate::{
    diagnose::{self, IceServerError, IceSetup},
    small::VecSet,
    verify,
};

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
}

/// The `a=mid:` values of an SDP, in order: an answer has exactly its offer's.
fn mids(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=mid:"))
        .collect()
}

/// The name the person typed, made ready to join with: trimmed, `None` when empty; refused
/// with words for the person when the relay would refuse it (control characters, too long).
pub fn clean_name(typed: &str) -> Result<Option<String>, String> {
    let name = typed.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().any(char::is_control) {
        return Err("A name cannot contain control characters (such as line breaks).".to_owned());
    }
    protocol::validate_name(name).map_err(|why| format!("That name cannot be used: {why}."))?;
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
    /// The relay connection closed or could not open, with words for the person.
    RelayLost(String),
    /// A timer went off.
    Timer(Timer),
    /// The browser reports a network change (`online`).
    Online,
    /// Camera and microphone opened (`Ok`), or why not.
    Media(Result<(), String>),
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
    Waiting(String),
    /// Setting up a call.
    Connecting,
    /// Media flows with everybody called.
    Connected,
    /// The person hung up, or was hung up on.
    Ended(String),
    /// Something the person must know about; stays until what resolves it happens.
    Error(String),
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

    /// The status line's text.
    pub fn text(&self) -> &str {
        match self {
            Status::Starting => "Starting: asking for camera and microphone…",
            Status::Connecting => "Connecting…",
            Status::Connected => "Connected.",
            Status::Waiting(text) | Status::Ended(text) | Status::Error(text) => text,
        }
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

/// What a problem on the page is about; each kind is cleared by what resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// No camera or microphone: cleared when they open.
    Media,
    /// The relay refused a request (a full room): cleared by the next `welcome`.
    Refused,
    /// A call failed: cleared when a call connects or a new one starts.
    Call,
}

/// The state of the relay connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RelayState {
    /// Not asked to start yet.
    Idle,
    /// A socket is opening and `join` is on its way.
    Joining,
    /// In the room.
    Joined,
    /// Lost; [`Timer::Reconnect`] runs.
    Down,
}

/// Where a connection's offer/answer exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signaling {
    /// Nothing outstanding.
    Stable,
    /// [`Effect::MakeOffer`] issued.
    MakingOffer,
    /// Our offer is out; waiting for the answer.
    HaveLocalOffer,
    /// [`Effect::ApplyOffer`] issued.
    Answering,
    /// [`Effect::ApplyAnswer`] issued.
    ApplyingAnswer,
}

/// A call with one person.
#[derive(Debug)]
struct Link {
    conn: ConnId,
    polite: bool,
    signaling: Signaling,
    /// `negotiationneeded` came while the exchange was busy: offer once it is stable.
    negotiation_wanted: bool,
    /// A remote description is in place: candidates can be added.
    remote_set: bool,
    /// Our ICE restart offer is out: the other side's new candidates wait for its answer.
    restarting: bool,
    /// We rolled back our ICE restart offer for theirs, which restarts ICE for both sides: the
    /// `negotiationneeded` the browser still owes our restart asks for nothing more.
    restart_superseded: bool,
    /// Remote candidates waiting for a remote description (or the restart's answer).
    pending: Vec<IceCandidate>,
    /// Our last offer, sent again if the relay may have lost it.
    last_offer: Option<String>,
    /// How many times [`Self::last_offer`] was sent again.
    offer_resends: u32,
    /// The last offer we applied, and our answer to it once made: the same offer again means
    /// that the answer was lost.
    remote_offer: Option<String>,
    last_answer: Option<String>,
    /// Our candidates since our last ICE restart, sent again with a repeated offer or answer.
    local_candidates: Vec<IceCandidate>,
    /// What we had to tell them while the relay (or they) were away, in order.
    unsent: Vec<Signal>,
    state: ConnState,
    tile: TileState,
    /// The call connected once: losing it is "lost", never having it is "failed".
    ever_connected: bool,
    /// The TURN server that refused our credentials, if one did.
    turn_refused: Option<String>,
    /// What they told us of their microphone and camera.
    remote_media: MediaState,
    /// The DTLS certificate fingerprints of our side and theirs, from the SDPs.
    local_fingerprint: Option<Vec<u8>>,
    remote_fingerprint: Option<Vec<u8>>,
    /// Offers made on this connection.
    offers: u32,
}

impl Link {
    /// The exchange is back to stable with a remote description in place: the candidates that
    /// waited for it go in, and a negotiation asked for meanwhile starts now.
    fn stable_again(&mut self, out: &mut Vec<Effect>) {
        let conn = self.conn;
        self.signaling = Signaling::Stable;
        self.remote_set = true;
        self.last_offer = None;
        self.offer_resends = 0;
        out.extend(
            std::mem::take(&mut self.pending)
                .into_iter()
                .map(|candidate| Effect::AddCandidate { conn, candidate }),
        );
        if std::mem::take(&mut self.negotiation_wanted) {
            self.signaling = Signaling::MakingOffer;
            out.push(Effect::MakeOffer { conn });
        }
    }
}

impl Link {
    /// Our unanswered offer again, with the candidates gathered for it so far.
    fn repeat_offer(&self) -> Vec<Signal> {
        self.repeat(self.last_offer.clone().map(Signal::Offer))
    }

    /// Our last answer again, with our candidates.
    fn repeat_answer(&self) -> Vec<Signal> {
        self.repeat(self.last_answer.clone().map(Signal::Answer))
    }

    fn repeat(&self, description: Option<Signal>) -> Vec<Signal> {
        let Some(description) = description else {
            return Vec::new();
        };
        std::iter::once(description)
            .chain(self.local_candidates.iter().cloned().map(Signal::Candidate))
            .collect()
    }
}

/// The most of our candidates kept to be sent again, and of signals kept while the relay is away.
const KEPT_SIGNALS: usize = 64;

/// Another person of the room, as far as we know.
#[derive(Debug)]
struct Remote {
    id: PeerId,
    session: Option<String>,
    name: Option<String>,
    /// They joined after us (we heard of them by `peer-joined`).
    newer: bool,
    /// In the room as far as the relay says.
    present: bool,
    link: Option<Link>,
}

/// The room's whole state.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    relay: RelayState,
    me: Option<PeerId>,
    resume_token: Option<String>,
    ice_servers: Vec<IceServer>,
    reconnects: u32,
    /// Why the relay was lost, while it is.
    relay_lost: Option<String>,
    /// Whether we take part in calls: false after Hang up, until Call or an incoming offer.
    active: bool,
    /// What we send of our microphone and camera.
    media: MediaState,
    /// The relay refused our join for its name: a new name sends it again.
    name_refused: bool,
    /// We share a screen instead of the camera.
    sharing: bool,
    /// The remote people, in the order we heard of them.
    remotes: Vec<Remote>,
    problems: Vec<(Trouble, String)>,
    /// The last call ended (hang-up), with words for the person.
    ended: Option<String>,
    next_conn: u32,
    timers: VecSet<Timer>,
    rng: u64,
    /// Connections opened in the page's lifetime, for the tests' "no new call" checks.
    opened: u32,
}

impl Engine {
    /// An engine that has not joined yet; give it [`Input::Start`].
    pub fn new(config: Config) -> Self {
        // splitmix64 of the seed: xorshift's first outputs from a small seed are all near 0.
        let mut z = config.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let rng = (z ^ (z >> 31)) | 1;
        Self {
            config,
            relay: RelayState::Idle,
            me: None,
            resume_token: None,
            ice_servers: Vec::new(),
            reconnects: 0,
            relay_lost: None,
            active: true,
            media: MediaState::default(),
            name_refused: false,
            sharing: false,
            remotes: Vec::new(),
            problems: Vec::new(),
            ended: None,
            next_conn: 0,
            timers: VecSet::new(),
            rng,
            opened: 0,
        }
    }

    /// Acts on one input; returns what the browser layer must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                self.relay = RelayState::Joining;
                out.push(Effect::ConnectRelay);
                out.push(Effect::Send(self.join_msg(None)));
            }
            Input::Relay(msg) => self.on_relay(msg, &mut out),
            Input::RelayLost(why) => self.on_relay_lost(why, &mut out),
            Input::Timer(timer) => self.on_timer(timer, &mut out),
            Input::Online => {
                // The device's addresses may have changed: the relay socket may be dead, and
                // every connection looks for a path again.
                self.probe_relay(&mut out);
                for conn in self.links().map(|l| l.conn).collect::<Vec<_>>() {
                    self.restart_ice(conn, &mut out);
                }
            }
            Input::Media(Ok(())) => {
                self.clear_problem(Trouble::Media);
                for remote in &mut self.remotes {
                    if let Some(link) = remote.link.as_mut() {
                        // This one's negotiation is needed.
                        link.restart_superseded = false;
                        out.push(Effect::AddMedia { conn: link.conn });
                    }
                }
            }
            Input::Media(Err(why)) => self.set_problem(Trouble::Media, why),
            Input::Call => {
                self.active = true;
                self.ended = None;
                let ids: Vec<PeerId> = self
                    .remotes
                    .iter()
                    .filter(|r| r.present && r.link.is_none())
                    .map(|r| r.id)
                    .collect();
                for id in ids {
                    self.open_link(id, false, &mut out);
                }
            }
            Input::HangUp => {
                let linked: Vec<(PeerId, ConnId)> = self
                    .remotes
                    .iter()
                    .filter_map(|r| Some((r.id, r.link.as_ref()?.conn)))
                    .collect();
                if !linked.is_empty() {
                    for (id, conn) in linked {
                        self.send(&mut out, ClientMsg::HangUp { to: Some(id) });
                        self.close_link(conn, &mut out);
                    }
                    self.active = false;
                    self.ended = Some("Call ended. Press Call to call again.".to_owned());
                }
            }
            Input::SetName(name) => {
                self.config.name = name;
                // Refused for the name: ask again with this one (the socket stays open after
                // an error). Joined already: it is used from the next join on.
                if self.relay == RelayState::Joining && self.name_refused {
                    self.name_refused = false;
                    self.clear_problem(Trouble::Refused);
                    let resume = self.resume_token.take();
                    out.push(Effect::Send(self.join_msg(resume)));
                }
            }
            Input::ToggleShare => {
                self.sharing = !self.sharing;
                out.push(Effect::Share(self.sharing));
            }
            Input::ShareEnded => {
                if self.sharing {
                    self.sharing = false;
                    out.push(Effect::Share(false));
                }
            }
            Input::ToggleMute => {
                self.media.muted = !self.media.muted;
                out.push(Effect::SetMedia(self.media));
            }
            Input::ToggleCamera => {
                self.media.camera_off = !self.media.camera_off;
                out.push(Effect::SetMedia(self.media));
            }
            Input::Peer(conn, news) => self.on_peer(conn, news, &mut out),
        }
        out
    }

    /// What we send of our microphone and camera: a new connection is told it first.
    pub fn media(&self) -> MediaState {
        self.media
    }

    /// What the status line should say now.
    pub fn status(&self) -> Status {
        if let Some((_, text)) = self.problems.last() {
            return Status::Error(text.clone());
        }
        if let Some(why) = &self.relay_lost {
            if self.relay == RelayState::Down {
                let calls = self.links().count();
                let keep = if calls > 0 {
                    " The call goes on meanwhile."
                } else {
                    ""
                };
                return Status::Error(format!("{why} Reconnecting to the relay…{keep}"));
            }
        }
        if self.relay != RelayState::Joined && self.me.is_none() {
            return Status::Starting;
        }
        let links: Vec<&Link> = self.links().collect();
        if links.is_empty() {
            if let Some(ended) = &self.ended {
                return Status::Ended(ended.clone());
            }
            return match self.remotes.iter().filter(|r| r.present).count() {
                0 => Status::Waiting("Waiting for the other person to open the page…".to_owned()),
                _ => Status::Waiting(
                    "The other person is here. Waiting for their call, or press Call.".to_owned(),
                ),
            };
        }
        if links.iter().all(|l| l.tile == TileState::Connected) {
            Status::Connected
        } else {
            Status::Connecting
        }
    }

    /// The remote people's tiles, in the order they came.
    pub fn tiles(&self) -> Vec<Tile> {
        self.remotes
            .iter()
            .filter_map(|r| {
                let link = r.link.as_ref()?;
                Some(Tile {
                    conn: link.conn,
                    peer: r.id,
                    name: r.name.clone(),
                    state: link.tile,
                    media: link.remote_media,
                    verify: match (&link.local_fingerprint, &link.remote_fingerprint) {
                        (Some(ours), Some(theirs)) if link.ever_connected => {
                            Some(verify::code(ours, theirs))
                        }
                        _ => None,
                    },
                    offers: link.offers,
                })
            })
            .collect()
    }

    /// Whether Call makes sense now (someone is here we have no call with).
    pub fn can_call(&self) -> bool {
        self.relay == RelayState::Joined
            && self.remotes.iter().any(|r| r.present && r.link.is_none())
    }

    /// Whether Hang up makes sense now.
    pub fn can_hang_up(&self) -> bool {
        self.links().next().is_some()
    }

    /// Our relay id, once joined.
    pub fn me(&self) -> Option<PeerId> {
        self.me
    }

    /// The ICE servers new connections get.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// How many peer connections the page has opened in its lifetime.
    pub fn connections_opened(&self) -> u32 {
        self.opened
    }

    /// The timers running now.
    pub fn timers(&self) -> impl Iterator<Item = Timer> + '_ {
        self.timers.iter().copied()
    }

    fn links(&self) -> impl Iterator<Item = &Link> {
        self.remotes.iter().filter_map(|r| r.link.as_ref())
    }

    fn join_msg(&self, resume: Option<String>) -> ClientMsg {
        ClientMsg::Join {
            room: self.config.room.clone(),
            name: self.config.name.clone(),
            resume,
            session: Some(self.config.session.clone()),
        }
    }

    fn send(&self, out: &mut Vec<Effect>, msg: ClientMsg) {
        // Without the relay there is nobody to tell; what matters is sent again on rejoin.
        if self.relay == RelayState::Joined {
            out.push(Effect::Send(msg));
        }
    }

    fn set_problem(&mut self, kind: Trouble, text: String) {
        self.problems.retain(|(k, _)| *k != kind);
        self.problems.push((kind, text));
    }

    fn clear_problem(&mut self, kind: Trouble) {
        self.problems.retain(|(k, _)| *k != kind);
    }

    fn start_timer(&mut self, timer: Timer, ms: u32, out: &mut Vec<Effect>) {
        self.timers.insert(timer);
        out.push(Effect::StartTimer { timer, ms });
    }

    fn cancel_timer(&mut self, timer: Timer, out: &mut Vec<Effect>) {
        if self.timers.remove(&timer) {
            out.push(Effect::CancelTimer(timer));
        }
    }

    /// A number in `0..1`, from a xorshift generator: the jitter of the reconnection delays.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn remote_by_id(&mut self, id: PeerId) -> Option<&mut Remote> {
        self.remotes.iter_mut().find(|r| r.id == id)
    }

    fn link_mut(&mut self, conn: ConnId) -> Option<(&mut Link, PeerId)> {
        self.remotes.iter_mut().find_map(|r| {
            let id = r.id;
            r.link.as_mut().filter(|l| l.conn == conn).map(|l| (l, id))
        })
    }

    fn on_relay(&mut self, msg: ServerMsg, out: &mut Vec<Effect>) {
        match msg {
            ServerMsg::Welcome {
                id,
                peers,
                ice_servers,
                resume_token,
                ..
            } => self.on_welcome(id, peers, ice_servers, resume_token, out),
            ServerMsg::Pong => {
                self.cancel_timer(Timer::PongDue, out);
                let ms = self.config.timing.heartbeat_ms;
                self.start_timer(Timer::Heartbeat, ms, out);
            }
            ServerMsg::IceServers { ice_servers } => {
                self.ice_servers = ice_servers.clone();
                out.push(Effect::SetIceServers(ice_servers));
            }
            ServerMsg::PeerJoined { peer } => {
                let id = peer.id;
                self.learn(peer, true);
                // Someone we have a call with, back (maybe under a new id): what we told them
                // meanwhile may not have reached them.
                self.catch_up(id, out);
                self.call_whom_we_should(out);
            }
            ServerMsg::PeerLeft { peer, reconnecting } => {
                let Some(remote) = self.remote_by_id(peer) else {
                    return;
                };
                remote.present = false;
                let keep = reconnecting && remote.link.is_some();
                if !keep {
                    // Gone for good (or we had no call with them): the tile goes.
                    let conn = remote.link.as_ref().map(|l| l.conn);
                    if let Some(conn) = conn {
                        self.close_link(conn, out);
                    }
                    self.remotes.retain(|r| r.id != peer);
                }
                // A dropped connection may come back: the call stays while its media flows,
                // and the Lost timer ends it if the media stops too.
            }
            ServerMsg::Offer { from, sdp, .. } => self.on_offer(from, sdp, out),
            ServerMsg::Answer { from, sdp, .. } => {
                let Some(link) = self.remote_by_id(from).and_then(|r| r.link.as_mut()) else {
                    return;
                };
                // An answer to an earlier offer of ours (sent twice while the network was slow)
                // can arrive after a newer offer: its m-lines would not match, and the browser
                // would refuse it and end the call. The answer to this offer is on its way.
                let answers_ours = link
                    .last_offer
                    .as_deref()
                    .is_some_and(|offer| mids(offer) == mids(&sdp));
                if link.signaling == Signaling::HaveLocalOffer && answers_ours {
                    link.signaling = Signaling::ApplyingAnswer;
                    link.remote_fingerprint = verify::fingerprint(&sdp);
                    out.push(Effect::ApplyAnswer {
                        conn: link.conn,
                        sdp,
                    });
                }
                // Otherwise a stale answer (to an offer rolled back or already answered).
            }
            ServerMsg::Candidate {
                from, candidate, ..
            } => {
                let Some(link) = self.remote_by_id(from).and_then(|r| r.link.as_mut()) else {
                    return;
                };
                if link.remote_set && !link.restarting {
                    out.push(Effect::AddCandidate {
                        conn: link.conn,
                        candidate,
                    });
                } else {
                    link.pending.push(candidate);
                }
            }
            ServerMsg::HangUp { from, .. } => {
                let conn = self
                    .remote_by_id(from)
                    .and_then(|r| r.link.as_ref())
                    .map(|l| l.conn);
                if let Some(conn) = conn {
                    self.close_link(conn, out);
                    if self.links().next().is_none() {
                        self.ended =
                            Some("The other person hung up. Press Call to call again.".to_owned());
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
                self.on_relay_lost(
                    "The relay cannot reach the store it shares rooms through.".to_owned(),
                    out,
                );
            }
            ServerMsg::Error {
                kind: ErrorKind::NameTaken,
                ..
            } => {
                self.name_refused = true;
                let name = self.config.name.clone().unwrap_or_default();
                self.set_problem(
                    Trouble::Refused,
                    format!(
                        "Somebody in this room is already called “{name}”. Type another name \
                         and press Use name."
                    ),
                );
            }
            ServerMsg::Error { kind, message } => {
                let text = match kind {
                    ErrorKind::RoomFull => format!(
                        "This room is full. Add ?room=NAME to the address to use another room. \
                         ({message})"
                    ),
                    _ => format!("The relay refused a request: {message}"),
                };
                self.set_problem(Trouble::Refused, text);
            }
        }
    }

    fn on_welcome(
        &mut self,
        id: PeerId,
        peers: Vec<PeerInfo>,
        ice_servers: Vec<IceServer>,
        resume_token: String,
        out: &mut Vec<Effect>,
    ) {
        self.me = Some(id);
        self.relay = RelayState::Joined;
        self.relay_lost = None;
        self.resume_token = Some(resume_token);
        self.reconnects = 0;
        self.cancel_timer(Timer::Reconnect, out);
        let heartbeat = self.config.timing.heartbeat_ms;
        self.start_timer(Timer::Heartbeat, heartbeat, out);
        self.clear_problem(Trouble::Refused);
        if self.ice_servers != ice_servers {
            self.ice_servers = ice_servers.clone();
            out.push(Effect::SetIceServers(ice_servers));
        }
        // Who is here now; anyone we knew who is not may still come back (a relay restart
        // brings everybody back one by one), and keeps their call while its media flows.
        for remote in &mut self.remotes {
            remote.present = false;
        }
        for peer in peers {
            self.learn(peer, false);
        }
        self.remotes.retain(|r| r.present || r.link.is_some());
        // What we said may have been lost with the relay, and what we had to say waited for
        // it: send it now, to the ids the others have now.
        let linked: Vec<PeerId> = self
            .remotes
            .iter()
            .filter(|r| r.link.is_some())
            .map(|r| r.id)
            .collect();
        for id in linked {
            self.catch_up(id, out);
        }
        self.call_whom_we_should(out);
    }

    /// Records `peer` as in the room: a person we know (by session, or by id) gets their new
    /// id; anyone else is new to us. `newer`: heard of by `peer-joined`.
    fn learn(&mut self, peer: PeerInfo, newer: bool) {
        if peer.session.as_deref() == Some(self.config.session.as_str()) {
            // Ourselves, by an older socket the relay has not yet noticed is dead.
            return;
        }
        let known = self
            .remotes
            .iter_mut()
            .find(|r| match (&r.session, &peer.session) {
                (Some(a), Some(b)) => a == b,
                _ => r.id == peer.id,
            });
        match known {
            Some(remote) => {
                remote.id = peer.id;
                remote.name = peer.name;
                remote.present = true;
            }
            None => self.remotes.push(Remote {
                id: peer.id,
                session: peer.session,
                name: peer.name,
                newer,
                present: true,
                link: None,
            }),
        }
    }

    /// Opens a call with everyone we should call and have none with: a `#true` page calls
    /// everybody; in a room of three or more the newer page of each pair calls.
    fn call_whom_we_should(&mut self, out: &mut Vec<Effect>) {
        if !self.active || self.relay != RelayState::Joined {
            return;
        }
        let people = 1 + self.remotes.iter().filter(|r| r.present).count();
        let caller = self.config.caller;
        let to_call: Vec<PeerId> = self
            .remotes
            .iter()
            .filter(|r| r.present && r.link.is_none())
            .filter(|r| caller || (people >= 3 && !r.newer))
            .map(|r| r.id)
            .collect();
        for id in to_call {
            self.open_link(id, false, out);
        }
    }

    /// Whether we are the polite side towards `remote`: the one with the greater session id
    /// (or relay id, for a client that sends no session).
    fn polite_towards(&self, remote: &Remote) -> bool {
        match &remote.session {
            Some(theirs) => self.config.session > *theirs,
            None => self.me.is_some_and(|me| me > remote.id),
        }
    }

    /// Opens a connection to `id`; its `negotiationneeded` makes the offer.
    fn open_link(&mut self, id: PeerId, answering: bool, out: &mut Vec<Effect>) -> Option<ConnId> {
        self.ended = None;
        self.clear_problem(Trouble::Call);
        let conn = ConnId(self.next_conn);
        let polite = {
            let remote = self.remotes.iter().find(|r| r.id == id)?;
            self.polite_towards(remote)
        };
        self.next_conn += 1;
        self.opened += 1;
        let remote = self.remote_by_id(id)?;
        remote.link = Some(Link {
            conn,
            polite,
            signaling: Signaling::Stable,
            negotiation_wanted: false,
            remote_set: false,
            restarting: false,
            restart_superseded: false,
            pending: Vec::new(),
            last_offer: None,
            offer_resends: 0,
            remote_offer: None,
            last_answer: None,
            local_candidates: Vec::new(),
            unsent: Vec::new(),
            state: ConnState::New,
            tile: TileState::Connecting,
            ever_connected: false,
            turn_refused: None,
            remote_media: MediaState::default(),
            local_fingerprint: None,
            remote_fingerprint: None,
            offers: 0,
        });
        out.push(Effect::Open { conn, answering });
        let ms = self.config.timing.connect_due_ms;
        self.start_timer(Timer::ConnectDue(conn), ms, out);
        Some(conn)
    }

    fn close_link(&mut self, conn: ConnId, out: &mut Vec<Effect>) {
        for remote in &mut self.remotes {
            if remote.link.as_ref().is_some_and(|l| l.conn == conn) {
                remote.link = None;
            }
        }
        self.cancel_timer(Timer::Disconnected(conn), out);
        self.cancel_timer(Timer::Lost(conn), out);
        self.cancel_timer(Timer::AnswerDue(conn), out);
        self.cancel_timer(Timer::RestartDue(conn), out);
        self.cancel_timer(Timer::ConnectDue(conn), out);
        out.push(Effect::Close { conn });
    }

    fn on_offer(&mut self, from: PeerId, sdp: String, out: &mut Vec<Effect>) {
        if self.remote_by_id(from).is_none() {
            // An offer from someone we have not heard of (their peer-joined is behind it only
            // if the relay restarted in between): take them in.
            self.remotes.push(Remote {
                id: from,
                session: None,
                name: None,
                newer: true,
                present: true,
                link: None,
            });
        }
        let has_link = self.remote_by_id(from).is_some_and(|r| r.link.is_some());
        if !has_link {
            // Being called makes us take part again, even after a hang-up.
            self.active = true;
            self.open_link(from, true, out);
        }
        let Some(link) = self.remote_by_id(from).and_then(|r| r.link.as_mut()) else {
            return;
        };
        if link.remote_offer.as_deref() == Some(sdp.as_str()) {
            // The same offer again: they did not get our answer (or are making sure).
            match link.signaling {
                Signaling::Answering => return, // The answer is on its way.
                Signaling::Stable if link.last_answer.is_some() => {
                    for signal in link.repeat_answer() {
                        self.send(out, signal.to_peer(from));
                    }
                    return;
                }
                _ => {}
            }
        }
        let collision = link.signaling != Signaling::Stable;
        if collision && !link.polite {
            // Perfect negotiation: the impolite side keeps its own offer; the other side will
            // roll back and answer it.
            return;
        }
        // Polite, and our restart offer collided with theirs: theirs restarts ICE (a collision
        // while restarting is both sides noticing the same drop), so ours need not follow.
        link.restart_superseded = collision && link.restarting;
        link.signaling = Signaling::Answering;
        link.restarting = false;
        link.remote_offer = Some(sdp.clone());
        link.remote_fingerprint = verify::fingerprint(&sdp);
        link.last_answer = None;
        out.push(Effect::ApplyOffer {
            conn: link.conn,
            sdp,
        });
    }

    fn on_peer(&mut self, conn: ConnId, news: PeerInput, out: &mut Vec<Effect>) {
        let answer_due = self.config.timing.answer_due_ms;
        let Some((link, _)) = self.link_mut(conn) else {
            return; // News from a connection that has been closed.
        };
        match news {
            PeerInput::NegotiationNeeded => {
                if std::mem::take(&mut link.restart_superseded) {
                    // The remote's restart offer, which we answered, already restarted ICE:
                    // a second restart right after it would only add a renegotiation.
                    return;
                }
                if link.signaling == Signaling::Stable {
                    link.signaling = Signaling::MakingOffer;
                    link.negotiation_wanted = false;
                    out.push(Effect::MakeOffer { conn });
                } else {
                    link.negotiation_wanted = true;
                }
            }
            PeerInput::LocalDescription { offer: true, sdp } => {
                if link.signaling != Signaling::MakingOffer {
                    return;
                }
                link.signaling = Signaling::HaveLocalOffer;
                link.offers += 1;
                link.local_fingerprint = verify::fingerprint(&sdp);
                link.last_offer = Some(sdp.clone());
                link.offer_resends = 0;
                self.signal(conn, Signal::Offer(sdp), out);
                self.start_timer(Timer::AnswerDue(conn), answer_due, out);
            }
            PeerInput::LocalDescription { offer: false, sdp } => {
                if link.signaling != Signaling::Answering {
                    return;
                }
                link.local_fingerprint = verify::fingerprint(&sdp);
                link.last_answer = Some(sdp.clone());
                self.signal(conn, Signal::Answer(sdp), out);
                self.stable_again(conn, out);
            }
            PeerInput::AnswerApplied => {
                if link.signaling != Signaling::ApplyingAnswer {
                    return;
                }
                link.restarting = false;
                self.stable_again(conn, out);
            }
            PeerInput::Failed(why) => {
                // The exchange cannot go on: end this call and say so; Call starts a new one.
                self.close_link(conn, out);
                self.set_problem(
                    Trouble::Call,
                    format!("The call could not be set up ({why}). Press Call to try again."),
                );
            }
            PeerInput::Candidate(candidate) => {
                if link.local_candidates.len() >= KEPT_SIGNALS {
                    link.local_candidates.remove(0);
                }
                link.local_candidates.push(candidate.clone());
                self.signal(conn, Signal::Candidate(candidate), out);
            }
            PeerInput::State(state) => self.on_conn_state(conn, state, out),
            PeerInput::RemoteMedia(media) => link.remote_media = media,
            PeerInput::IceServerError(error) => {
                if error.is_turn_auth() {
                    link.turn_refused = Some(error.url);
                }
            }
        }
    }

    fn on_conn_state(&mut self, conn: ConnId, state: ConnState, out: &mut Vec<Effect>) {
        let timing = self.config.timing;
        let setup = IceSetup::of(&self.ice_servers);
        let Some((link, _)) = self.link_mut(conn) else {
            return;
        };
        link.state = state;
        match state {
            ConnState::Connected => {
                link.tile = TileState::Connected;
                link.ever_connected = true;
                self.clear_problem(Trouble::Call);
                self.cancel_timer(Timer::Disconnected(conn), out);
                self.cancel_timer(Timer::Lost(conn), out);
                self.cancel_timer(Timer::RestartDue(conn), out);
                self.cancel_timer(Timer::ConnectDue(conn), out);
            }
            ConnState::Disconnected => {
                if link.tile == TileState::Connected {
                    link.tile = TileState::Reconnecting;
                }
                // The network may have changed under us: the restart's offer needs a relay
                // connection that works.
                self.probe_relay(out);
                self.start_timer(Timer::Disconnected(conn), timing.disconnected_ms, out);
                if !self.timers.contains(&Timer::Lost(conn)) {
                    self.start_timer(Timer::Lost(conn), timing.lost_ms, out);
                }
            }
            ConnState::Failed => {
                self.probe_relay(out);
                let Some((link, _)) = self.link_mut(conn) else {
                    return;
                };
                let advice = (!link.ever_connected)
                    .then(|| diagnose::ice_failure_advice(setup, link.turn_refused.as_deref()));
                if link.ever_connected {
                    link.tile = TileState::Reconnecting;
                }
                if let Some(advice) = advice {
                    // Never connected: no path exists. Say why, and what to do next; the
                    // ICE restart below tries once more meanwhile.
                    self.set_problem(Trouble::Call, advice);
                }
                self.cancel_timer(Timer::Disconnected(conn), out);
                if !self.timers.contains(&Timer::Lost(conn)) {
                    self.start_timer(Timer::Lost(conn), timing.lost_ms, out);
                }
                self.restart_ice(conn, out);
            }
            ConnState::New | ConnState::Connecting | ConnState::Closed => {}
        }
    }

    /// Tells the person on `conn` something now, or as soon as the relay and they are back.
    fn signal(&mut self, conn: ConnId, signal: Signal, out: &mut Vec<Effect>) {
        let relay_up = self.relay == RelayState::Joined;
        let Some(remote) = self
            .remotes
            .iter_mut()
            .find(|r| r.link.as_ref().is_some_and(|l| l.conn == conn))
        else {
            return;
        };
        if relay_up && remote.present {
            out.push(Effect::Send(signal.to_peer(remote.id)));
        } else if let Some(link) = remote.link.as_mut() {
            if link.unsent.len() >= KEPT_SIGNALS {
                link.unsent.remove(0);
            }
            link.unsent.push(signal);
        }
    }

    /// Sends `id` what may not have reached them: our unanswered offer with its candidates
    /// (anything older is moot), or else what waited for the relay.
    fn catch_up(&mut self, id: PeerId, out: &mut Vec<Effect>) {
        if self.relay != RelayState::Joined {
            return;
        }
        let Some(remote) = self.remote_by_id(id).filter(|r| r.present) else {
            return;
        };
        let Some(link) = remote.link.as_mut() else {
            return;
        };
        let signals = if link.signaling == Signaling::HaveLocalOffer {
            link.unsent.clear();
            link.repeat_offer()
        } else {
            std::mem::take(&mut link.unsent)
        };
        for signal in signals {
            out.push(Effect::Send(signal.to_peer(id)));
        }
    }

    /// The exchange on `conn` is over: see [`Link::stable_again`]; our offer needs no resending.
    fn stable_again(&mut self, conn: ConnId, out: &mut Vec<Effect>) {
        self.cancel_timer(Timer::AnswerDue(conn), out);
        if let Some((link, _)) = self.link_mut(conn) {
            link.stable_again(out);
        }
    }

    /// Asks the relay now whether it is still there, unless a question is already out.
    fn probe_relay(&mut self, out: &mut Vec<Effect>) {
        if self.relay != RelayState::Joined || self.timers.contains(&Timer::PongDue) {
            return;
        }
        self.cancel_timer(Timer::Heartbeat, out);
        out.push(Effect::Send(ClientMsg::Ping));
        let ms = self.config.timing.pong_timeout_ms;
        self.start_timer(Timer::PongDue, ms, out);
    }

    /// Restarts ICE on `conn` now if we are the impolite side (or `now`); the polite side gives
    /// the other side [`Timing::restart_grace_ms`] to do it first.
    fn restart_ice(&mut self, conn: ConnId, out: &mut Vec<Effect>) {
        self.restart_ice_now(conn, false, out);
    }

    fn restart_ice_now(&mut self, conn: ConnId, now: bool, out: &mut Vec<Effect>) {
        let grace = self.config.timing.restart_grace_ms;
        let Some((link, _)) = self.link_mut(conn) else {
            return;
        };
        if link.tile == TileState::Lost {
            return;
        }
        if link.polite && !now {
            if !self.timers.contains(&Timer::RestartDue(conn)) {
                self.start_timer(Timer::RestartDue(conn), grace, out);
            }
            return;
        }
        self.cancel_timer(Timer::RestartDue(conn), out);
        let Some((link, _)) = self.link_mut(conn) else {
            return;
        };
        link.restarting = true;
        link.restart_superseded = false;
        // The restart gathers new candidates; the old ones are of no use to the other side.
        link.local_candidates.clear();
        out.push(Effect::RestartIce { conn });
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Vec<Effect>) {
        if !self.timers.remove(&timer) {
            return; // Cancelled after it fired.
        }
        match timer {
            Timer::Reconnect => {
                self.relay = RelayState::Joining;
                out.push(Effect::ConnectRelay);
                let resume = self.resume_token.take();
                out.push(Effect::Send(self.join_msg(resume)));
            }
            Timer::Heartbeat => self.probe_relay(out),
            Timer::RestartDue(conn) => {
                let connected = self
                    .link_mut(conn)
                    .is_some_and(|(l, _)| l.state == ConnState::Connected);
                if !connected {
                    self.restart_ice_now(conn, true, out);
                }
            }
            Timer::ConnectDue(conn) => {
                let lost_ms = self.config.timing.lost_ms;
                let Some((link, _)) = self.link_mut(conn) else {
                    return;
                };
                // Failed and disconnected connections have restarts of their own.
                if matches!(link.state, ConnState::New | ConnState::Connecting) {
                    if !self.timers.contains(&Timer::Lost(conn)) {
                        self.start_timer(Timer::Lost(conn), lost_ms, out);
                    }
                    self.restart_ice(conn, out);
                }
            }
            Timer::AnswerDue(conn) => {
                let base = self.config.timing.answer_due_ms;
                let Some((link, id)) = self.link_mut(conn) else {
                    return;
                };
                if link.signaling != Signaling::HaveLocalOffer {
                    return;
                }
                link.offer_resends += 1;
                let ms = base.saturating_mul(1 << link.offer_resends.min(3));
                self.catch_up(id, out);
                self.start_timer(Timer::AnswerDue(conn), ms, out);
            }
            Timer::PongDue => {
                // A socket whose network went away can stay "open" for minutes: drop it and
                // connect again, from wherever this device is now.
                out.push(Effect::DropRelay);
                self.on_relay_lost(
                    "The relay stopped answering (the network may have changed).".to_owned(),
                    out,
                );
            }
            Timer::Disconnected(conn) => {
                if self
                    .link_mut(conn)
                    .is_some_and(|(l, _)| l.state == ConnState::Disconnected)
                {
                    self.restart_ice(conn, out);
                }
            }
            Timer::Lost(conn) => {
                let setup = IceSetup::of(&self.ice_servers);
                let Some((link, _)) = self.link_mut(conn) else {
                    return;
                };
                link.tile = TileState::Lost;
                let text = if link.ever_connected {
                    "Lost the connection with someone: it could not be restored. They may have \
                     lost their network or closed the page; ask them to reload it, or check \
                     your own network."
                        .to_owned()
                } else {
                    diagnose::ice_failure_advice(setup, link.turn_refused.as_deref())
                };
                self.cancel_timer(Timer::Disconnected(conn), out);
                self.cancel_timer(Timer::RestartDue(conn), out);
                self.set_problem(Trouble::Call, text);
            }
        }
    }

    fn on_relay_lost(&mut self, why: String, out: &mut Vec<Effect>) {
        if self.relay == RelayState::Down {
            return;
        }
        self.relay = RelayState::Down;
        self.relay_lost = Some(why);
        self.cancel_timer(Timer::Heartbeat, out);
        self.cancel_timer(Timer::PongDue, out);
        // Jittered exponential backoff ("equal jitter"): half the delay fixed, half random,
        // so that a restarted relay is not hit by every page at the same instant.
        let timing = self.config.timing;
        let exp = timing
            .reconnect_base_ms
            .saturating_mul(1 << self.reconnects.min(16))
            .min(timing.reconnect_max_ms);
        let ms = exp / 2 + (f64::from(exp / 2) * self.random()) as u32;
        self.reconnects += 1;
        self.start_timer(Timer::Reconnect, ms, out);
    }
}

pub mod transceivers;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
