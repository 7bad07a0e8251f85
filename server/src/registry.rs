//! Who is connected, which room each peer is in, and how to reach them.
//!
//! One `std::sync::Mutex` guards both directions of the peer <-> room map so they never disagree;
//! every method is synchronous, so no `.await` can happen while it is held. Messages to peers are
//! queued with `try_send` on each peer's bounded outbox, drained by that peer's writer task.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use axum::extract::ws::Message;
use protocol::{ErrorKind, PeerId, PeerInfo, ServerMsg, Signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
        match self.tx.try_send(Message::text(text)) {
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

struct Member {
    room: String,
    name: Option<String>,
    outbox: Outbox,
}

impl Member {
    fn info(&self, id: PeerId) -> PeerInfo {
        PeerInfo {
            id,
            name: self.name.clone(),
        }
    }
}

#[derive(Default)]
struct State {
    members: HashMap<PeerId, Member>,
    /// Each room's members, oldest first. A room exists only while it has members.
    rooms: HashMap<String, Vec<PeerId>>,
}

/// Rooms and their members.
pub struct Registry {
    state: Mutex<State>,
    next_id: AtomicU64,
    room_capacity: usize,
}

impl Registry {
    /// An empty registry whose rooms hold at most `room_capacity` peers.
    pub fn new(room_capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            room_capacity,
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

    /// Puts `id` into `room` and tells the members already there. Returns those members.
    pub fn join(
        &self,
        id: PeerId,
        room: &str,
        name: Option<String>,
        outbox: Outbox,
    ) -> Result<Vec<PeerInfo>, Refusal> {
        protocol::validate_room(room).map_err(|why| Refusal::new(ErrorKind::InvalidRoom, why))?;
        let mut state = self.lock();
        if state.members.contains_key(&id) {
            return Err(Refusal::new(
                ErrorKind::AlreadyJoined,
                "this connection has already joined a room",
            ));
        }
        let present = state.rooms.get(room).map_or(0, Vec::len);
        if present >= self.room_capacity {
            return Err(Refusal::new(
                ErrorKind::RoomFull,
                format!(
                    "room {room:?} is full ({} of {} people are in a call)",
                    present, self.room_capacity
                ),
            ));
        }
        let member = Member {
            room: room.to_owned(),
            name,
            outbox,
        };
        let joined = ServerMsg::PeerJoined {
            peer: member.info(id),
        }
        .to_json();
        let others: Vec<PeerInfo> = state
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|other| {
                let m = state.members.get(other)?;
                m.outbox.deliver(&joined);
                Some(m.info(*other))
            })
            .collect();
        state.members.insert(id, member);
        state.rooms.entry(room.to_owned()).or_default().push(id);
        Ok(others)
    }

    /// Forwards `signal` from `from` to `to`, or to the one other member of `from`'s room.
    pub fn relay(&self, from: PeerId, to: Option<PeerId>, signal: Signal) -> Result<(), Refusal> {
        let text = signal.from_peer(from).to_json();
        let state = self.lock();
        let Some(sender) = state.members.get(&from) else {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before signaling",
            ));
        };
        let room = state.rooms.get(&sender.room).map_or(&[][..], Vec::as_slice);
        let target = match to {
            Some(to) if to != from && room.contains(&to) => to,
            Some(to) => {
                return Err(Refusal::new(
                    ErrorKind::NoPeer,
                    format!("peer {to} is not in your room"),
                ))
            }
            None => {
                let mut others = room.iter().filter(|id| **id != from);
                match (others.next(), others.next()) {
                    (Some(only), None) => *only,
                    (None, _) => {
                        return Err(Refusal::new(
                            ErrorKind::NoPeer,
                            "nobody else is in the room yet",
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err(Refusal::new(
                            ErrorKind::InvalidMessage,
                            "several peers are in the room: say which one with \"to\"",
                        ))
                    }
                }
            }
        };
        if let Some(member) = state.members.get(&target) {
            member.outbox.deliver(&text);
        }
        Ok(())
    }

    /// Takes `id` out of its room, if it joined one, and tells the members left behind.
    pub fn leave(&self, id: PeerId) {
        let mut state = self.lock();
        let Some(member) = state.members.remove(&id) else {
            return;
        };
        let Some(room) = state.rooms.get_mut(&member.room) else {
            return;
        };
        room.retain(|other| *other != id);
        if room.is_empty() {
            state.rooms.remove(&member.room);
            return;
        }
        let left = ServerMsg::PeerLeft { peer: id }.to_json();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(2);
        let kick = CancellationToken::new();
        (Outbox { tx, kick }, rx)
    }

    #[test]
    fn a_full_outbox_kicks_its_peer_instead_of_growing() {
        let registry = Registry::new(2);
        let (a, _a_rx) = outbox();
        let (b, _b_rx) = outbox();
        let b_kick = b.kick.clone();
        registry.join(PeerId(1), "r", None, a).expect("joins");
        registry.join(PeerId(2), "r", None, b).expect("joins");
        for _ in 0..2 {
            registry
                .relay(PeerId(1), None, Signal::HangUp)
                .expect("relays");
        }
        assert!(!b_kick.is_cancelled());
        registry
            .relay(PeerId(1), None, Signal::HangUp)
            .expect("relays");
        assert!(b_kick.is_cancelled());
    }

    #[test]
    fn empty_rooms_are_removed() {
        let registry = Registry::new(2);
        let (a, _a_rx) = outbox();
        registry.join(PeerId(1), "r", None, a).expect("joins");
        assert_eq!(registry.room_count(), 1);
        registry.leave(PeerId(1));
        assert_eq!(registry.room_count(), 0);
    }
}
