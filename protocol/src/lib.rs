//! The signaling protocol spoken between the browser client and the relay.
//!
//! Every message is one JSON object in one WebSocket text frame, with a `"type"` field naming it.
//! Requests go from a peer to the relay ([`ClientMsg`]); events go from the relay to a peer
//! ([`ServerMsg`]). Both sides compile these same types, so the wire cannot drift between them.
//! `docs/protocol.md` describes the same thing for people writing another client.

use std::fmt;

use serde::{Deserialize, Serialize};

mod json;
#[cfg(feature = "relay")]
mod raw;
pub use json::{exact_integer, json_string, JsonView, ReadError};
#[cfg(feature = "relay")]
pub use raw::{Control, RawSignal, Request};

/// The largest text frame the relay accepts; a larger one closes the connection with
/// [`CLOSE_MESSAGE_TOO_BIG`]. An SDP offer with audio and video is 3 to 6 KB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The room a client joins when the page names none.
pub const DEFAULT_ROOM: &str = "default";

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;

/// Close code sent when a frame is larger than [`MAX_MESSAGE_BYTES`] (RFC 6455, 7.4.1).
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Close code sent when the relay shuts down, or drops a peer that stopped answering pings
/// (RFC 6455, 7.4.1).
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Close code sent to a peer that does not read its messages or keeps sending too fast
/// (RFC 6455, 7.4.1: policy violation).
pub const CLOSE_POLICY: u16 = 1008;

/// Close code sent to a peer removed from its room by the person in control (after
/// [`ServerMsg::Removed`]): a page does not reconnect by itself after it.
pub const CLOSE_REMOVED: u16 = 4003;

/// Close code a client sends when it drops its socket to connect again (the relay stopped
/// answering it, say): the relay keeps its place for the resume grace period, as for a
/// connection that broke, instead of taking the Close for a goodbye.
pub const CLOSE_RECONNECTING: u16 = 4000;

/// The relay's name for one connected peer, unique for the relay's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One STUN or TURN server, shaped like the browser's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One ICE candidate, shaped like the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The candidate line, `candidate:...`.
    pub candidate: String,
    /// The media stream identification tag of the m-line it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The index of the m-line it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// What the relay tells the members of a room about one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's id; address messages to it with `to`.
    pub id: PeerId,
    /// The display name it joined with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The session it joined with, if any: the same page keeps it across reconnections and
    /// relay restarts, while its `id` may change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A request from a peer to the relay.
///
/// The signaling messages (`offer`, `answer`, `candidate`, `hang-up`) are forwarded to the peer
/// named by `to`; without `to` they go to the one other peer of a 1:1 room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMsg {
    /// Enter a room. Answered by [`ServerMsg::Welcome`] or an error (`room-full`, ...).
    Join {
        /// The room's name: 1 to [`MAX_ROOM_LEN`] bytes.
        room: String,
        /// An optional display name shown to the others, unique in the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The `resumeToken` of an earlier `welcome`: within the grace period it gives back
        /// that connection's id and name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// A random id the page keeps for its lifetime (1 to [`MAX_ROOM_LEN`] bytes), passed on
        /// to the others in [`PeerInfo`]: after a relay restart has forgotten every id and
        /// token, the pages still recognise each other and keep their calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// The room's passphrase, if its person in control set one ([`ClientMsg::Passphrase`]):
        /// the relay checks it before letting anyone in (a resume does not need it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
    },
    /// Lock the room (`locked`) or open it. In a locked room a `join` knocks: the people
    /// inside see it in [`ServerMsg::Room`] and `admit` or `refuse` it. Only the person in
    /// control may; others get `not-in-control`.
    Lock {
        /// Locked, or open.
        locked: bool,
    },
    /// Set the passphrase every later `join` must bring (an empty one takes it off). Only the
    /// person in control may.
    Passphrase {
        /// The passphrase: at most [`MAX_PASSPHRASE_LEN`] bytes; empty for none.
        passphrase: String,
    },
    /// Let in the page knocking with this session id (see [`Knock`]). Anyone in the room may.
    Admit {
        /// The knocking page's session id.
        session: String,
    },
    /// Turn away the page knocking with this session id: it cannot knock again while the room
    /// stays locked. Anyone in the room may.
    Refuse {
        /// The knocking page's session id.
        session: String,
    },
    /// Remove a person from the room: they hear [`ServerMsg::Removed`], their connection
    /// closes, and they cannot come back while the room is locked. Only the person in control
    /// may.
    Remove {
        /// Who.
        peer: PeerId,
    },
    /// An SDP offer for the addressed peer.
    Offer {
        /// The addressed peer; `None` means the other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The session description.
        sdp: String,
    },
    /// An SDP answer for the addressed peer.
    Answer {
        /// The addressed peer; `None` means the other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate for the addressed peer.
    Candidate {
        /// The addressed peer; `None` means the other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// End the call with the addressed peer; both stay in the room.
    HangUp {
        /// The addressed peer; `None` means the other peer of the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
    },
    /// Is the relay still there? Answered by [`ServerMsg::Pong`], joined or not. A page needs
    /// it after a network change: its old socket may be dead without its knowing.
    Ping,
}

/// The message types a client may send, as they appear in `"type"`.
pub const CLIENT_MSG_TYPES: [&str; 11] = [
    "join",
    "offer",
    "answer",
    "candidate",
    "hang-up",
    "ping",
    "lock",
    "passphrase",
    "admit",
    "refuse",
    "remove",
];

/// The longest passphrase a room takes, in bytes.
pub const MAX_PASSPHRASE_LEN: usize = 128;

/// Someone waiting at a locked room's door, as the people inside see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knock {
    /// The knocking page's session id: what `admit` and `refuse` name.
    pub session: String,
    /// The name it asked to join with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The part of a signaling message that the relay forwards untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An SDP offer.
    Offer(String),
    /// An SDP answer.
    Answer(String),
    /// A trickled ICE candidate.
    Candidate(IceCandidate),
    /// The call is over.
    HangUp,
}

impl Signal {
    /// The message a client sends to have the relay forward this to peer `to`.
    pub fn to_peer(self, to: PeerId) -> ClientMsg {
        let to = Some(to);
        match self {
            Signal::Offer(sdp) => ClientMsg::Offer { to, sdp },
            Signal::Answer(sdp) => ClientMsg::Answer { to, sdp },
            Signal::Candidate(candidate) => ClientMsg::Candidate { to, candidate },
            Signal::HangUp => ClientMsg::HangUp { to },
        }
    }

    /// The event the addressed peer receives, stamped with the sender the relay knows.
    pub fn from_peer(self, from: PeerId, from_name: Option<String>) -> ServerMsg {
        match self {
            Signal::Offer(sdp) => ServerMsg::Offer {
                from,
                from_name,
                sdp,
            },
            Signal::Answer(sdp) => ServerMsg::Answer {
                from,
                from_name,
                sdp,
            },
            Signal::Candidate(candidate) => ServerMsg::Candidate {
                from,
                from_name,
                candidate,
            },
            Signal::HangUp => ServerMsg::HangUp { from, from_name },
        }
    }
}

/// Why a text frame is not a [`ClientMsg`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame is not a JSON object.
    #[error("not a JSON object: {0}")]
    InvalidJson(String),
    /// The object has no string `"type"`, or one this protocol does not know.
    #[error("unknown message type {0:?}; expected one of {CLIENT_MSG_TYPES:?}")]
    UnknownType(String),
    /// The type is known but a field is missing or has the wrong shape.
    #[error("invalid {kind:?} message: {detail}")]
    InvalidMessage {
        /// The message's `"type"`.
        kind: String,
        /// What serde found wrong.
        detail: String,
    },
}

impl ParseError {
    /// The error kind a client is told.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ParseError::InvalidJson(_) => ErrorKind::InvalidJson,
            ParseError::UnknownType(_) => ErrorKind::UnknownType,
            ParseError::InvalidMessage { .. } => ErrorKind::InvalidMessage,
        }
    }
}

impl ClientMsg {
    /// A plain `join` of `room`: no name, no resume token, no session.
    pub fn join(room: impl Into<String>) -> Self {
        ClientMsg::Join {
            room: room.into(),
            name: None,
            resume: None,
            session: None,
            passphrase: None,
        }
    }

    /// Parses one text frame, telling apart bad JSON, an unknown type and a malformed message.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        // The well-formed case is the common one: one pass, no intermediate tree. Only for an
        // object: serde also reads a tagged enum from an array whose first element is the tag
        // (`["hang-up"]`), which is not the protocol; the tree below refuses it.
        if starts_an_object(text) {
            if let Ok(msg) = serde_json::from_str(text) {
                return Ok(msg);
            }
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(ParseError::InvalidJson("expected an object".into()));
        };
        let kind = match object.get("type") {
            Some(serde_json::Value::String(kind)) => kind.clone(),
            Some(other) => return Err(ParseError::UnknownType(other.to_string())),
            None => return Err(ParseError::UnknownType("(missing)".into())),
        };
        if !CLIENT_MSG_TYPES.contains(&kind.as_str()) {
            return Err(ParseError::UnknownType(kind));
        }
        match serde_json::from_value(value) {
            Ok(msg) => Ok(msg),
            Err(e) => Err(ParseError::InvalidMessage {
                kind,
                detail: e.to_string(),
            }),
        }
    }

    /// The message as one JSON text frame: written by hand ([`json::Object`]), as serde
    /// would write it (the tests compare the two), so that the page's bundle carries no
    /// serializer: 0.7 KB gzipped less, measured with `scripts/bundle-size.sh`.
    pub fn to_json(&self) -> String {
        use json::Object;
        match self {
            ClientMsg::Join {
                room,
                name,
                resume,
                session,
                passphrase,
            } => Object::new("join")
                .string("room", room)
                .maybe("name", name)
                .maybe("resume", resume)
                .maybe("session", session)
                .maybe("passphrase", passphrase),
            ClientMsg::Lock { locked } => Object::new("lock").boolean("locked", *locked),
            ClientMsg::Passphrase { passphrase } => {
                Object::new("passphrase").string("passphrase", passphrase)
            }
            ClientMsg::Admit { session } => Object::new("admit").string("session", session),
            ClientMsg::Refuse { session } => Object::new("refuse").string("session", session),
            ClientMsg::Remove { peer } => Object::new("remove").number("peer", peer.0),
            ClientMsg::Offer { to, sdp } => Object::new("offer").to(*to).string("sdp", sdp),
            ClientMsg::Answer { to, sdp } => Object::new("answer").to(*to).string("sdp", sdp),
            ClientMsg::Candidate { to, candidate } => {
                let inner = Object::bare()
                    .string("candidate", &candidate.candidate)
                    .maybe("sdpMid", &candidate.sdp_mid);
                let inner = match candidate.sdp_m_line_index {
                    Some(index) => inner.number("sdpMLineIndex", index.into()),
                    None => inner,
                };
                Object::new("candidate")
                    .to(*to)
                    .raw("candidate", &inner.end())
            }
            ClientMsg::HangUp { to } => Object::new("hang-up").to(*to),
            ClientMsg::Ping => Object::new("ping"),
        }
        .end()
    }
}

/// What went wrong with a request, as the `kind` of [`ServerMsg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The frame was not a JSON object.
    InvalidJson,
    /// The `"type"` was missing or unknown.
    UnknownType,
    /// A field was missing or had the wrong shape.
    InvalidMessage,
    /// The relay speaks text frames only.
    BinaryFrame,
    /// A signal was sent before `join`.
    NotJoined,
    /// `join` was sent twice on one connection.
    AlreadyJoined,
    /// The room already holds as many peers as it may.
    RoomFull,
    /// The room name is empty, too long or has control characters.
    InvalidRoom,
    /// The addressed peer is not in the sender's room.
    NoPeer,
    /// The display name is taken by another peer of the room.
    NameTaken,
    /// The resume token is unknown or its grace period is over.
    InvalidResume,
    /// Too many messages too fast; this one was dropped.
    RateLimited,
    /// A held message found nobody to take it in time.
    Expired,
    /// The relay cannot reach the backplane it shares rooms through (Redis): it cannot place a
    /// join, or carry a signal, right now. Nothing was done; try again shortly.
    BackplaneUnavailable,
    /// A room control request (`lock`, `passphrase`, `remove`) from someone not in control of
    /// the room. Nothing changed.
    NotInControl,
    /// The room has a passphrase and the `join` brought none, or another one.
    WrongPassphrase,
    /// The room is locked: the people inside were asked to let this page in. Send the same
    /// `join` again (every second or two) until it is let in or turned away.
    Knocking,
    /// The people inside the locked room turned this page away.
    KnockRefused,
    /// This page was removed from the room, which is still locked.
    Removed,
}

impl ErrorKind {
    /// Every kind, for counting them.
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::InvalidJson,
        ErrorKind::UnknownType,
        ErrorKind::InvalidMessage,
        ErrorKind::BinaryFrame,
        ErrorKind::NotJoined,
        ErrorKind::AlreadyJoined,
        ErrorKind::RoomFull,
        ErrorKind::InvalidRoom,
        ErrorKind::NoPeer,
        ErrorKind::NameTaken,
        ErrorKind::InvalidResume,
        ErrorKind::RateLimited,
        ErrorKind::Expired,
        ErrorKind::BackplaneUnavailable,
        ErrorKind::NotInControl,
        ErrorKind::WrongPassphrase,
        ErrorKind::Knocking,
        ErrorKind::KnockRefused,
        ErrorKind::Removed,
    ];

    /// The kind named `wire` on the wire, if there is one.
    pub fn from_wire(wire: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == wire)
    }

    /// The kind as it appears on the wire, e.g. `room-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid-json",
            ErrorKind::UnknownType => "unknown-type",
            ErrorKind::InvalidMessage => "invalid-message",
            ErrorKind::BinaryFrame => "binary-frame",
            ErrorKind::NotJoined => "not-joined",
            ErrorKind::AlreadyJoined => "already-joined",
            ErrorKind::RoomFull => "room-full",
            ErrorKind::InvalidRoom => "invalid-room",
            ErrorKind::NoPeer => "no-peer",
            ErrorKind::NameTaken => "name-taken",
            ErrorKind::InvalidResume => "invalid-resume",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Expired => "expired",
            ErrorKind::BackplaneUnavailable => "backplane-unavailable",
            ErrorKind::NotInControl => "not-in-control",
            ErrorKind::WrongPassphrase => "wrong-passphrase",
            ErrorKind::Knocking => "knocking",
            ErrorKind::KnockRefused => "knock-refused",
            ErrorKind::Removed => "removed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event from the relay to one peer. Written by serde; read by [`ServerMsg::read`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMsg {
    /// The answer to `join`: who you are and who is already there.
    Welcome {
        /// Your id in this room.
        id: PeerId,
        /// The room you joined.
        room: String,
        /// The peers already in the room, oldest first.
        peers: Vec<PeerInfo>,
        /// The STUN/TURN servers to give `RTCPeerConnection`.
        ice_servers: Vec<IceServer>,
        /// Send it back in `join` after a dropped connection to get this id and name back.
        resume_token: String,
    },
    /// Someone entered your room.
    PeerJoined {
        /// Who.
        peer: PeerInfo,
    },
    /// Someone left your room (or their connection dropped).
    PeerLeft {
        /// Who.
        peer: PeerId,
        /// Their connection dropped without a goodbye: they may come back within the resume
        /// grace period, and a call whose media still flows need not end.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reconnecting: bool,
    },
    /// An SDP offer from `from`.
    Offer {
        /// The sender, as the relay knows it.
        from: PeerId,
        /// The sender's display name, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_name: Option<String>,
        /// The session description.
        sdp: String,
    },
    /// An SDP answer from `from`.
    Answer {
        /// The sender, as the relay knows it.
        from: PeerId,
        /// The sender's display name, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_name: Option<String>,
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate from `from`.
    Candidate {
        /// The sender, as the relay knows it.
        from: PeerId,
        /// The sender's display name, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_name: Option<String>,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// `from` ended the call.
    HangUp {
        /// The sender, as the relay knows it.
        from: PeerId,
        /// The sender's display name, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_name: Option<String>,
    },
    /// Fresh STUN/TURN servers, replacing those of `welcome`: sent before the TURN credentials
    /// handed out earlier expire (at about 80% of their lifetime), again and again for as long
    /// as the peer stays. Give them to `RTCPeerConnection.setConfiguration` and use them for the
    /// next connection.
    IceServers {
        /// The whole list, as in `welcome`.
        ice_servers: Vec<IceServer>,
    },
    /// The answer to `ping`.
    Pong,
    /// Who controls the room and how it is kept: sent after `welcome` and to everybody in the
    /// room whenever it changes.
    Room {
        /// The person in control: the room's first, and when they leave, the oldest still
        /// there.
        controller: PeerId,
        /// Newcomers knock.
        locked: bool,
        /// A `join` needs the passphrase.
        passphrase: bool,
        /// Who is knocking, first first.
        knocking: Vec<Knock>,
    },
    /// The person in control removed you from the room; the relay closes the connection
    /// (code 4003). Do not come back by yourself.
    Removed,
    /// Your last request could not be carried out; the connection stays open.
    Error {
        /// What went wrong, for programs.
        kind: ErrorKind,
        /// What went wrong, for people.
        message: String,
    },
}

impl ServerMsg {
    /// An error event.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            kind,
            message: message.into(),
        }
    }

    /// The message as one JSON text frame.
    pub fn to_json(&self) -> String {
        // Its fields are strings, numbers and maps with string keys, which always serialize;
        // not formatting the impossible error keeps serde_json's messages out of the client.
        serde_json::to_string(self)
            .unwrap_or_else(|_| unreachable!("a ServerMsg always serializes"))
    }

    /// Parses one text frame from the relay (see [`ServerMsg::read`] for a frame the caller
    /// has parsed already).
    pub fn parse(text: &str) -> Result<Self, ReadError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|err| ReadError::new(format!("not JSON: {err}")))?;
        Self::read(&doc)
    }
}

/// Whether a JSON text starts an object (`{` after JSON's whitespace).
pub(crate) fn starts_an_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// Checks a room name: 1 to [`MAX_ROOM_LEN`] bytes, no control characters.
pub fn validate_room(room: &str) -> Result<(), String> {
    validate_label("room name", room)
}

/// Checks a display name: the same rules as a room name.
pub fn validate_name(name: &str) -> Result<(), String> {
    validate_label("name", name)
}

/// Checks a session id: the same rules as a room name.
pub fn validate_session(session: &str) -> Result<(), String> {
    validate_label("session id", session)
}

/// Checks a room passphrase: at most [`MAX_PASSPHRASE_LEN`] bytes, no control characters
/// (empty is allowed: no passphrase).
pub fn validate_passphrase(passphrase: &str) -> Result<(), String> {
    if passphrase.len() > MAX_PASSPHRASE_LEN {
        return Err(format!(
            "the passphrase is longer than {MAX_PASSPHRASE_LEN} bytes"
        ));
    }
    if passphrase.chars().any(char::is_control) {
        return Err("the passphrase has control characters".into());
    }
    Ok(())
}

fn validate_label(what: &str, label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if label.len() > MAX_ROOM_LEN {
        return Err(format!("the {what} is longer than {MAX_ROOM_LEN} bytes"));
    }
    if label.chars().any(char::is_control) {
        return Err(format!("the {what} has control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_with_the_documented_shape() {
        let msg = ClientMsg::Candidate {
            to: Some(PeerId(7)),
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
        };
        let json = msg.to_json();
        assert_eq!(
            json,
            r#"{"type":"candidate","to":7,"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
        );
        assert_eq!(ClientMsg::parse(&json), Ok(msg));

        let welcome = ServerMsg::Welcome {
            id: PeerId(1),
            room: "r".into(),
            peers: vec![],
            ice_servers: vec![],
            resume_token: "t".into(),
        };
        assert_eq!(
            welcome.to_json(),
            r#"{"type":"welcome","id":1,"room":"r","peers":[],"iceServers":[],"resumeToken":"t"}"#
        );
        let refresh = ServerMsg::IceServers {
            ice_servers: vec![IceServer {
                urls: vec!["turn:relay.example:3478?transport=tcp".into()],
                username: Some("1700000000:4".into()),
                credential: Some("c2VjcmV0".into()),
            }],
        };
        assert_eq!(
            refresh.to_json(),
            r#"{"type":"ice-servers","iceServers":[{"urls":["turn:relay.example:3478?transport=tcp"],"username":"1700000000:4","credential":"c2VjcmV0"}]}"#
        );
        assert_eq!(
            ServerMsg::parse(&refresh.to_json()).expect("valid"),
            refresh
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"hang-up","from":3,"fromName":"ann"}"#).expect("valid"),
            ServerMsg::HangUp {
                from: PeerId(3),
                from_name: Some("ann".into())
            }
        );
    }

    #[test]
    fn client_messages_are_written_as_serde_writes_them() {
        let awkward = "a \"quoted\" \\ line\nwith\tcontrol \u{1} \u{7f} and é 😀";
        let candidate = IceCandidate {
            candidate: awkward.into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(u16::MAX),
        };
        let messages = [
            ClientMsg::Join {
                room: awkward.into(),
                name: Some("ann".into()),
                resume: None,
                session: Some("s".into()),
                passphrase: Some(awkward.into()),
            },
            ClientMsg::join("r"),
            ClientMsg::Offer {
                to: Some(PeerId((1 << 53) - 1)),
                sdp: awkward.into(),
            },
            ClientMsg::Answer {
                to: None,
                sdp: String::new(),
            },
            ClientMsg::Candidate {
                to: Some(PeerId(0)),
                candidate: candidate.clone(),
            },
            ClientMsg::Candidate {
                to: None,
                candidate: IceCandidate {
                    sdp_mid: None,
                    sdp_m_line_index: None,
                    ..candidate
                },
            },
            ClientMsg::HangUp {
                to: Some(PeerId(3)),
            },
            ClientMsg::HangUp { to: None },
            ClientMsg::Ping,
            ClientMsg::Lock { locked: true },
            ClientMsg::Lock { locked: false },
            ClientMsg::Passphrase {
                passphrase: awkward.into(),
            },
            ClientMsg::Admit {
                session: "s".into(),
            },
            ClientMsg::Refuse {
                session: "s".into(),
            },
            ClientMsg::Remove { peer: PeerId(9) },
        ];
        for msg in messages {
            let ours: serde_json::Value =
                serde_json::from_str(&msg.to_json()).expect("we write JSON");
            let serde = serde_json::to_value(&msg).expect("serde writes it");
            assert_eq!(ours, serde, "{msg:?}");
            assert_eq!(ClientMsg::parse(&msg.to_json()), Ok(msg));
        }
    }

    #[test]
    fn parse_errors_are_told_apart() {
        assert_eq!(
            ClientMsg::parse("{nope").map_err(|e| e.kind()),
            Err(ErrorKind::InvalidJson)
        );
        assert_eq!(
            ClientMsg::parse("[1,2]").map_err(|e| e.kind()),
            Err(ErrorKind::InvalidJson)
        );
        assert_eq!(
            ClientMsg::parse(r#"{"type":"dance"}"#).map_err(|e| e.kind()),
            Err(ErrorKind::UnknownType)
        );
        assert_eq!(
            ClientMsg::parse(r#"{"sdp":"x"}"#).map_err(|e| e.kind()),
            Err(ErrorKind::UnknownType)
        );
        let err = ClientMsg::parse(r#"{"type":"offer"}"#).expect_err("sdp is missing");
        assert_eq!(err.kind(), ErrorKind::InvalidMessage);
        assert!(err.to_string().contains("sdp"), "{err}");
    }

    #[test]
    fn every_server_message_reads_back_as_written() {
        let peer = PeerInfo {
            id: PeerId(4),
            name: Some("ann".into()),
            session: Some("s".into()),
        };
        let all = [
            ServerMsg::Welcome {
                id: PeerId(1),
                room: "r".into(),
                peers: vec![peer.clone()],
                ice_servers: vec![IceServer {
                    urls: vec!["stun:a:3478".into()],
                    username: None,
                    credential: None,
                }],
                resume_token: "t".into(),
            },
            ServerMsg::PeerJoined { peer },
            ServerMsg::PeerLeft {
                peer: PeerId(4),
                reconnecting: true,
            },
            ServerMsg::PeerLeft {
                peer: PeerId(4),
                reconnecting: false,
            },
            Signal::Offer("o".into()).from_peer(PeerId(2), Some("bo".into())),
            Signal::Answer("a".into()).from_peer(PeerId(2), None),
            Signal::Candidate(IceCandidate {
                candidate: "candidate:1".into(),
                sdp_mid: None,
                sdp_m_line_index: Some(1),
            })
            .from_peer(PeerId(2), None),
            Signal::HangUp.from_peer(PeerId(2), None),
            ServerMsg::IceServers {
                ice_servers: vec![],
            },
            ServerMsg::Pong,
            ServerMsg::error(ErrorKind::NameTaken, "taken"),
        ];
        for msg in all {
            assert_eq!(ServerMsg::parse(&msg.to_json()).ok(), Some(msg));
        }
        // Unknown fields are ignored; wrong or missing ones are named.
        assert_eq!(
            ServerMsg::parse(r#"{"type":"pong","extra":1}"#).ok(),
            Some(ServerMsg::Pong)
        );
        let err = ServerMsg::parse(r#"{"type":"offer","from":2}"#).expect_err("no sdp");
        assert!(err.to_string().contains("sdp"), "{err}");
        let err = ServerMsg::parse(r#"{"type":"dance"}"#).expect_err("unknown type");
        assert!(err.to_string().contains("dance"), "{err}");
        assert!(ServerMsg::parse(r#"{"type":"peer-joined","peer":4}"#).is_err());
        assert!(ServerMsg::parse(r#"{"type":"peer-left","peer":{"id":4}}"#).is_err());
        assert!(ServerMsg::parse(r#"{"from":2}"#).is_err());
    }

    #[test]
    fn error_kind_names_match_the_wire() {
        for kind in ErrorKind::ALL {
            let wire = serde_json::to_value(kind).expect("serializes");
            assert_eq!(wire, serde_json::Value::from(kind.as_str()));
        }
    }

    #[test]
    fn room_names_are_checked() {
        assert!(validate_room("abc").is_ok());
        assert!(validate_room("").is_err());
        assert!(validate_room(&"x".repeat(MAX_ROOM_LEN + 1)).is_err());
        assert!(validate_room("a\nb").is_err());
    }
}
