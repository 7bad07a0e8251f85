//! Who is connected, which room each peer is in, and how to reach them.
//!
//! One `std::sync::Mutex` guards the members, the rooms, the held messages and the resume
//! reservations together, so they never disagree; every method is synchronous, so no `.await`
//! can happen while it is held. Messages to peers are queued with `try_send` on each peer's
//! bounded outbox, drained by that peer's writer task.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use axum::extract::ws::Message;
use protocol::{ErrorKind, IceServer, PeerId, PeerInfo, ServerMsg, Signal};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

/// How many messages one sender may have waiting for a peer that has not joined yet.
const MAX_HELD_PER_SENDER: usize = 64;

/// How a peer is reached: its queue of outgoing frames, and the token that ends its connection.
#[derive(Clone, Debug)]
pub struct Outbox {
    /// Frames for the peer's writer task.
    pub tx: mpsc::Sender<Message>,
    /// Cancelled to drop the peer, e.g. when it reads too slowly to keep its outbox from filling.
    pub kick: CancellationToken,
}

impl Outbox {
    /// Queues one frame without waiting. A full outbox means the peer does not read what it is
    /// sent: it is dropped, rather than letting the relay's memory grow on its behalf.
    pub fn deliver(&self, text: &str) -> bool {
        self.deliver_frame(Message::text(text))
    }

    /// Queues any frame (a ping, say) like [`Outbox::deliver`].
    pub fn deliver_frame(&self, frame: Message) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("outbox full: dropping a peer that does not read");
                self.kick.cancel();
                false
            }
            // The peer's connection is already ending; its own task cleans up.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A request the registry refused, with words for the person behind the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl Refusal {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The error event that tells the client.
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::error(self.kind, self.message.clone())
    }
}

/// What a `join` asks for.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    /// The room.
    pub room: String,
    /// The display name, unique in the room.
    pub name: Option<String>,
    /// A resume token from an earlier `welcome`.
    pub resume: Option<String>,
    /// The page's session id, passed on to the others.
    pub session: Option<String>,
}

/// A successful `join`; `welcome` is already on its way.
#[derive(Clone, Copy, Debug)]
pub struct Joined {
    /// The id the peer has from now on: the connection's own, or the resumed one.
    pub id: PeerId,
    /// How many held messages were delivered to it after `welcome`.
    pub released: usize,
    /// Their bytes.
    pub released_bytes: usize,
}

/// What became of a relayed signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Queued for the addressed peer; this many bytes.
    Delivered(usize),
    /// Nobody to take it yet: held under this number until someone joins or it expires.
    Held(u64),
}

/// Timers the registry works with.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a message for a peer that has not joined yet is held.
    pub hold: Duration,
    /// How long a dropped peer's id and name stay reserved for it to resume.
    pub resume_grace: Duration,
}

struct Member {
    room: String,
    name: Option<String>,
    session: Option<String>,
    resume_token: String,
    outbox: Outbox,
}

impl Member {
    fn info(&self, id: PeerId) -> PeerInfo {
        PeerInfo {
            id,
            name: self.name.clone(),
            session: self.session.clone(),
        }
    }
}

/// A dropped peer's place, kept for it for the grace period.
struct Reservation {
    id: PeerId,
    room: String,
    name: Option<String>,
    session: Option<String>,
    until: Instant,
}

/// A message waiting for its addressee to join.
struct Held {
    room: String,
    from: PeerId,
    to: Option<PeerId>,
    text: String,
}

#[derive(Default)]
struct State {
    members: HashMap<PeerId, Member>,
    /// Each room's members, oldest first. A room exists only while it has members.
    rooms: HashMap<String, Vec<PeerId>>,
    /// By resume token.
    reservations: HashMap<String, Reservation>,
    /// By hold number, oldest first.
    held: BTreeMap<u64, Held>,
    next_hold: u64,
}

impl State {
    fn drop_expired_reservations(&mut self, now: Instant) {
        self.reservations.retain(|_, r| r.until > now);
    }

    fn name_taken(&self, room: &str, name: &str) -> bool {
        let members = self.rooms.get(room).into_iter().flatten();
        members
            .filter_map(|id| self.members.get(id))
            .any(|m| m.name.as_deref() == Some(name))
            || self
                .reservations
                .values()
                .any(|r| r.room == room && r.name.as_deref() == Some(name))
    }

    /// Whether `id` may still come back to `room`: its reservation is there and not expired
    /// (expired ones are only swept on `join` and `leave`).
    fn reserved_in(&self, room: &str, id: PeerId) -> bool {
        let now = Instant::now();
        self.reservations
            .values()
            .any(|r| r.room == room && r.id == id && r.until > now)
    }
}

/// Rooms and their members.
pub struct Registry {
    state: Mutex<State>,
    next_id: AtomicU64,
    room_capacity: usize,
    timing: Timing,
}

impl Registry {
    /// An empty registry whose rooms hold at most `room_capacity` peers.
    pub fn new(room_capacity: usize, timing: Timing) -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            room_capacity,
            timing,
        }
    }

    /// A fresh id for a new connection.
    pub fn next_id(&self) -> PeerId {
        PeerId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than stopping the whole relay would, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts connection `conn` into a room, tells the members already there, and hands it the
    /// messages held for it. Its `welcome` carries `ice_servers(id)` for the id it joins as
    /// (a resumed one, maybe).
    pub fn join(
        &self,
        conn: PeerId,
        request: JoinRequest,
        outbox: Outbox,
        ice_servers: impl FnOnce(PeerId) -> Vec<IceServer>,
    ) -> Result<Joined, Refusal> {
        let JoinRequest {
            mut room,
            mut name,
            resume,
            mut session,
        } = request;
        protocol::validate_room(&room).map_err(|why| Refusal::new(ErrorKind::InvalidRoom, why))?;
        if let Some(name) = &name {
            protocol::validate_name(name)
                .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
        }
        if let Some(session) = &session {
            protocol::validate_session(session)
                .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
        }
        let resume_token = new_token();
        let mut state = self.lock();
        state.drop_expired_reservations(Instant::now());
        let mut id = conn;
        if let Some(token) = &resume {
            let Some(reservation) = state.reservations.get(token) else {
                return Err(Refusal::new(
                    ErrorKind::InvalidResume,
                    "unknown or expired resume token: join without it",
                ));
            };
            (id, room, name) = (
                reservation.id,
                reservation.room.clone(),
                reservation.name.clone(),
            );
            session = session.or_else(|| reservation.session.clone());
        } else if let Some(name) = name.as_deref().filter(|n| state.name_taken(&room, n)) {
            return Err(Refusal::new(
                ErrorKind::NameTaken,
                format!("the name {name:?} is taken in room {room:?}"),
            ));
        }
        let present = state.rooms.get(&room).map_or(0, Vec::len);
        if present >= self.room_capacity {
            // A resuming peer keeps its reservation: the room may have a place again soon.
            return Err(Refusal::new(
                ErrorKind::RoomFull,
                format!(
                    "room {room:?} is full ({present} of {} places taken)",
                    self.room_capacity
                ),
            ));
        }
        if let Some(token) = &resume {
            state.reservations.remove(token);
        }
        let member = Member {
            room: room.clone(),
            name,
            session,
            resume_token: resume_token.clone(),
            outbox,
        };
        let joined_msg = ServerMsg::PeerJoined {
            peer: member.info(id),
        }
        .to_json();
        let peers: Vec<PeerInfo> = state
            .rooms
            .get(&room)
            .into_iter()
            .flatten()
            .filter_map(|other| {
                let m = state.members.get(other)?;
                m.outbox.deliver(&joined_msg);
                Some(m.info(*other))
            })
            .collect();
        // `welcome` goes out under the lock so that the held messages, and anything the others
        // send once they hear of the new peer, come after it.
        let welcome = ServerMsg::Welcome {
            id,
            room: room.clone(),
            peers,
            ice_servers: ice_servers(id),
            resume_token,
        };
        member.outbox.deliver(&welcome.to_json());
        let waiting: Vec<u64> = state
            .held
            .iter()
            .filter(|(_, h)| h.room == room && h.from != id && h.to.is_none_or(|to| to == id))
            .map(|(hold, _)| *hold)
            .collect();
        let mut released_bytes = 0;
        for hold in &waiting {
            if let Some(held) = state.held.remove(hold) {
                member.outbox.deliver(&held.text);
                released_bytes += held.text.len();
            }
        }
        state.rooms.entry(room.clone()).or_default().push(id);
        state.members.insert(id, member);
        Ok(Joined {
            id,
            released: waiting.len(),
            released_bytes,
        })
    }

    /// Forwards `signal` from `from` to `to`, or to the one other member of `from`'s room.
    /// A signal for a peer that is not there yet (nobody else in the room, or a dropped peer
    /// that may resume) is held; see [`Registry::expire`].
    pub fn relay(
        &self,
        from: PeerId,
        to: Option<PeerId>,
        signal: Signal,
    ) -> Result<Relayed, Refusal> {
        let mut state = self.lock();
        let Some(sender) = state.members.get(&from) else {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before signaling",
            ));
        };
        let text = signal.from_peer(from, sender.name.clone()).to_json();
        let room = state.rooms.get(&sender.room).map_or(&[][..], Vec::as_slice);
        let target = match to {
            Some(to) if to != from && room.contains(&to) => Some(to),
            Some(to) if state.reserved_in(&sender.room, to) => None,
            Some(to) => {
                return Err(Refusal::new(
                    ErrorKind::NoPeer,
                    format!("peer {to} is not in your room"),
                ))
            }
            None => {
                let mut others = room.iter().filter(|id| **id != from);
                match (others.next(), others.next()) {
                    (Some(only), None) => Some(*only),
                    (None, _) => None,
                    (Some(_), Some(_)) => {
                        return Err(Refusal::new(
                            ErrorKind::InvalidMessage,
                            "several peers are in the room: say which one with \"to\"",
                        ))
                    }
                }
            }
        };
        if let Some(target) = target {
            if let Some(member) = state.members.get(&target) {
                member.outbox.deliver(&text);
            }
            return Ok(Relayed::Delivered(text.len()));
        }
        if state.held.values().filter(|h| h.from == from).count() >= MAX_HELD_PER_SENDER {
            return Err(Refusal::new(
                ErrorKind::NoPeer,
                "too many messages are already waiting for somebody to join",
            ));
        }
        let room = sender.room.clone();
        state.next_hold += 1;
        let hold = state.next_hold;
        state.held.insert(
            hold,
            Held {
                room,
                from,
                to,
                text,
            },
        );
        Ok(Relayed::Held(hold))
    }

    /// Ends the wait of held message `hold`. If nobody took it, returns its sender's outbox so
    /// that the sender can be told.
    pub fn expire(&self, hold: u64) -> Option<Outbox> {
        let mut state = self.lock();
        let held = state.held.remove(&hold)?;
        state.members.get(&held.from).map(|m| m.outbox.clone())
    }

    /// How long held messages wait.
    pub fn hold_time(&self) -> Duration {
        self.timing.hold
    }

    /// Takes `id` out of its room, if it joined one, and tells the members left behind. With
    /// `reserve`, its id and name stay reserved for the resume grace period.
    pub fn leave(&self, id: PeerId, reserve: bool) {
        let mut state = self.lock();
        let Some(member) = state.members.remove(&id) else {
            return;
        };
        state.drop_expired_reservations(Instant::now());
        // What it sent and nobody took goes with it.
        state.held.retain(|_, h| h.from != id);
        if reserve {
            state.reservations.insert(
                member.resume_token,
                Reservation {
                    id,
                    room: member.room.clone(),
                    name: member.name,
                    session: member.session,
                    until: Instant::now() + self.timing.resume_grace,
                },
            );
        }
        let Some(room) = state.rooms.get_mut(&member.room) else {
            return;
        };
        room.retain(|other| *other != id);
        if room.is_empty() {
            state.rooms.remove(&member.room);
            state.held.retain(|_, h| h.room != member.room);
            return;
        }
        let left = ServerMsg::PeerLeft {
            peer: id,
            reconnecting: reserve,
        }
        .to_json();
        for other in &state.rooms[&member.room] {
            if let Some(m) = state.members.get(other) {
                m.outbox.deliver(&left);
            }
        }
    }

    /// How many rooms exist now.
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// How many peers are in a room now.
    pub fn member_count(&self) -> usize {
        self.lock().members.len()
    }
}

/// A new unguessable resume token: 128 bits from the operating system.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS entropy (unheard of on the platforms we run on): std's per-process random
        // hash keys still make a token nobody can guess from outside.
        use std::hash::{BuildHasher, RandomState};
        let (a, b) = (RandomState::new(), RandomState::new());
        bytes[..8].copy_from_slice(&a.hash_one(Instant::now()).to_le_bytes());
        bytes[8..].copy_from_slice(&b.hash_one(std::process::id()).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(4);
        let kick = CancellationToken::new();
        (Outbox { tx, kick }, rx)
    }

    fn registry() -> Registry {
        let timing = Timing {
            hold: Duration::from_secs(10),
            resume_grace: Duration::from_secs(15),
        };
        Registry::new(2, timing)
    }

    fn join(registry: &Registry, id: u64, room: &str) -> (Joined, mpsc::Receiver<Message>) {
        let (outbox, rx) = outbox();
        let request = JoinRequest {
            room: room.into(),
            ..JoinRequest::default()
        };
        (
            registry
                .join(PeerId(id), request, outbox, |_| Vec::new())
                .expect("joins"),
            rx,
        )
    }

    #[test]
    fn a_full_outbox_kicks_its_peer_instead_of_growing() {
        let registry = registry();
        let (_, _a_rx) = join(&registry, 1, "r");
        let (b, b_rx) = outbox();
        let b_kick = b.kick.clone();
        let request = JoinRequest {
            room: "r".into(),
            ..JoinRequest::default()
        };
        registry
            .join(PeerId(2), request, b, |_| Vec::new())
            .expect("joins");
        // welcome took one place of four.
        for _ in 0..3 {
            registry
                .relay(PeerId(1), None, Signal::HangUp)
                .expect("relays");
        }
        assert!(!b_kick.is_cancelled());
        registry
            .relay(PeerId(1), None, Signal::HangUp)
            .expect("relays");
        assert!(b_kick.is_cancelled());
        drop(b_rx);
    }

    #[test]
    fn empty_rooms_are_removed() {
        let registry = registry();
        let (_, _rx) = join(&registry, 1, "r");
        assert_eq!(registry.room_count(), 1);
        registry.leave(PeerId(1), true);
        assert_eq!(registry.room_count(), 0);
    }

    #[test]
    fn a_signal_sent_alone_waits_for_the_next_peer() {
        let registry = registry();
        let (_, _a_rx) = join(&registry, 1, "r");
        let held = registry
            .relay(PeerId(1), None, Signal::Offer("v=0".into()))
            .expect("held");
        assert!(matches!(held, Relayed::Held(_)));
        let (joined, mut b_rx) = join(&registry, 2, "r");
        assert_eq!(joined.released, 1);
        let first = b_rx.try_recv().expect("welcome");
        assert!(first.to_text().expect("text").contains("welcome"));
        let second = b_rx.try_recv().expect("held offer");
        assert!(second.to_text().expect("text").contains("\"offer\""));
        let Relayed::Held(hold) = held else {
            unreachable!()
        };
        assert!(registry.expire(hold).is_none(), "already delivered");
    }
}
