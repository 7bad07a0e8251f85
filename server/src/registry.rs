//! The rooms of one relay on its own, in memory: the default, with no backplane.
//!
//! One `std::sync::Mutex` guards the rooms ([`Room`], which hold the rules), which room each
//! peer is in and how to reach it, so they never disagree; every method is synchronous, so no
//! `.await` can happen while it is held. Messages to peers are handed to each peer's
//! [`Mailbox`]; the registry never sees the transport. Held messages and reservations end in
//! one expiry task ([`Deadlines`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use protocol::{Control, ErrorKind, IceServer, PeerId, PeerInfo, RawSignal, ServerMsg};
use tokio::time::Instant;

pub use crate::room::Refusal;
use crate::{
    expiry::Deadlines,
    room::{Arrival, Room, Route},
};

/// How a peer is reached: whatever carries text to it. The connection's outbox implements it;
/// the registry and the backplane know nothing else of the transport.
pub trait Mailbox: Send + Sync + 'static {
    /// Hands `text` to the peer without waiting (owned: it leaves as it is, uncopied). `false`
    /// if it cannot take it (it is going away, or does not read and is being dropped).
    fn deliver(&self, text: String) -> bool;
}

/// A shared [`Mailbox`].
pub type MailboxRef = Arc<dyn Mailbox>;

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
    /// The room's passphrase, if it has one.
    pub passphrase: Option<String>,
}

impl JoinRequest {
    /// Checks the room, name and session the client gave.
    pub fn validate(&self) -> Result<(), Refusal> {
        protocol::validate_room(&self.room)
            .map_err(|why| Refusal::new(ErrorKind::InvalidRoom, why))?;
        if let Some(name) = &self.name {
            protocol::validate_name(name)
                .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
        }
        if let Some(session) = &self.session {
            protocol::validate_session(session)
                .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
        }
        if let Some(passphrase) = &self.passphrase {
            protocol::validate_passphrase(passphrase)
                .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
        }
        Ok(())
    }
}

/// A successful `join`; `welcome` is already on its way.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The id the peer has from now on: a fresh one, or the resumed one.
    pub id: PeerId,
    /// The room it is in (a resume token's, maybe).
    pub room: String,
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
    /// Nobody to take it yet: held until someone joins or it expires.
    Held,
}

/// Timers the rooms work with.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a message for a peer that has not joined yet is held.
    pub hold: Duration,
    /// How long a dropped peer's id and name stay reserved for it to resume.
    pub resume_grace: Duration,
}

/// Something in a room that ends at a deadline, for the expiry task.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// A held message, by room and number.
    Held {
        /// The room.
        room: String,
        /// The message's number in the room.
        number: u64,
        /// Who sent it.
        from: PeerId,
    },
    /// A resume reservation, by room and token.
    Reservation {
        /// The room.
        room: String,
        /// The resume token.
        token: String,
    },
}

/// The `welcome` for a peer that joined `room` as `id`.
pub fn welcome(
    id: PeerId,
    room: &str,
    peers: Vec<PeerInfo>,
    ice_servers: Vec<IceServer>,
    resume_token: String,
) -> String {
    ServerMsg::Welcome {
        id,
        room: room.to_owned(),
        peers,
        ice_servers,
        resume_token,
    }
    .to_json()
}

struct Local {
    room: String,
    mailbox: MailboxRef,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Room>,
    /// Each joined peer's room and mailbox.
    peers: HashMap<PeerId, Local>,
    /// The room of each reserved resume token.
    tokens: HashMap<String, String>,
    /// Rooms with at least one member.
    occupied: usize,
}

/// Rooms and their members, in memory.
pub struct Registry {
    state: Mutex<State>,
    next_id: AtomicU64,
    room_capacity: usize,
    timing: Timing,
    /// The rooms' clock: milliseconds since this instant.
    epoch: Instant,
    deadlines: Deadlines<Due>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("room_capacity", &self.room_capacity)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry whose rooms hold at most `room_capacity` peers.
    pub fn new(room_capacity: usize, timing: Timing) -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            room_capacity,
            timing,
            epoch: Instant::now(),
            deadlines: Deadlines::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than stopping the whole relay would, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn millis(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// Puts a peer into a room, tells the members already there, and hands it the messages held
    /// for it after its `welcome`, which carries `ice_servers(id)` for the id it joins as.
    pub fn join(
        &self,
        request: JoinRequest,
        mailbox: MailboxRef,
        ice_servers: impl FnOnce(PeerId) -> Vec<IceServer>,
    ) -> Result<Joined, Refusal> {
        request.validate()?;
        let JoinRequest {
            room,
            name,
            resume,
            session,
            passphrase,
        } = request;
        let resume_token = crate::new_token();
        let now = self.now();
        let mut state = self.lock();
        let state = &mut *state;
        // A resume token names its room.
        let room = match &resume {
            Some(token) => match state.tokens.get(token) {
                Some(room) => room.clone(),
                None => {
                    return Err(Refusal::new(
                        ErrorKind::InvalidResume,
                        "unknown or expired resume token: join without it",
                    ))
                }
            },
            None => room,
        };
        let arrival = Arrival {
            id: PeerId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            name,
            resume: resume.clone(),
            session,
            resume_token: resume_token.clone(),
            instance: String::new(),
        };
        let entry = state.rooms.entry(room.clone()).or_default();
        let knocked = match entry.knock(&room, &arrival, passphrase.as_deref(), now) {
            Ok(None) => Ok(()),
            Ok(Some(deliveries)) => {
                for (to, text) in deliveries {
                    if let Some(peer) = state.peers.get(&to) {
                        peer.mailbox.deliver(text);
                    }
                }
                Err(Room::knocking())
            }
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = knocked {
            if state.rooms.get(&room).is_some_and(Room::is_empty) {
                state.rooms.remove(&room);
            }
            return Err(refusal);
        }
        let entry = state.rooms.entry(room.clone()).or_default();
        let admitted = match entry.join(&room, arrival, self.room_capacity, now) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                if entry.is_empty() {
                    state.rooms.remove(&room);
                }
                return Err(refusal);
            }
        };
        if entry.members().len() == 1 {
            state.occupied += 1;
        }
        if let Some(token) = &resume {
            state.tokens.remove(token);
        }
        for (to, text) in admitted.deliveries {
            if let Some(peer) = state.peers.get(&to) {
                peer.mailbox.deliver(text);
            }
        }
        // `welcome` goes out under the lock so that the held messages, and anything the others
        // send once they hear of the new peer, come after it.
        let id = admitted.id;
        let peers = admitted.peers;
        mailbox.deliver(welcome(id, &room, peers, ice_servers(id), resume_token));
        let released = admitted.released.len();
        let mut released_bytes = 0;
        for text in admitted.released {
            released_bytes += text.len();
            mailbox.deliver(text);
        }
        if let Some(text) = admitted.door {
            mailbox.deliver(text);
        }
        state.peers.insert(
            id,
            Local {
                room: room.clone(),
                mailbox,
            },
        );
        Ok(Joined {
            id,
            room,
            released,
            released_bytes,
        })
    }

    /// Forwards `signal` from `from` to `to`, or to the one other member of `from`'s room.
    /// A signal for a peer that is not there yet is held until the hold time is over.
    pub fn relay(
        &self,
        from: PeerId,
        to: Option<PeerId>,
        signal: RawSignal,
    ) -> Result<Relayed, Refusal> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let not_joined = || Refusal::new(ErrorKind::NotJoined, "send \"join\" before signaling");
        let room_name = &state.peers.get(&from).ok_or_else(not_joined)?.room;
        let room = state.rooms.get_mut(room_name).ok_or_else(not_joined)?;
        // The clock is read only if a reservation needs it.
        match room.relay(from, to, &signal, || self.now())? {
            Route::Deliver(target, text) => {
                // Handed over after the lock is let go: delivering may write to the peer's
                // socket, and other rooms need not wait for that.
                let mailbox = state.peers.get(&target).map(|peer| peer.mailbox.clone());
                drop(guard);
                let bytes = text.len();
                // A peer whose connection is closing (it left, or its socket broke) takes
                // nothing more: its sender hears so rather than nothing.
                if !mailbox.is_some_and(|mailbox| mailbox.deliver(text)) {
                    return Err(Refusal::peer_gone(target));
                }
                Ok(Relayed::Delivered(bytes))
            }
            Route::Held(number, _) => {
                let due = Due::Held {
                    room: room_name.clone(),
                    number,
                    from,
                };
                self.deadlines.add(Instant::now() + self.timing.hold, due);
                Ok(Relayed::Held)
            }
        }
    }

    /// Carries out a room control request from `from`: see [`Room::control`].
    pub fn control(&self, from: PeerId, control: &Control) -> Result<(), Refusal> {
        let now = self.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let not_joined = || Refusal::new(ErrorKind::NotJoined, "send \"join\" first");
        let room_name = &state.peers.get(&from).ok_or_else(not_joined)?.room;
        let room = state.rooms.get_mut(room_name).ok_or_else(not_joined)?;
        let deliveries = room.control(room_name, from, control, now)?;
        // A removed member's mailbox is still there: its connection closes on the word.
        for (to, text) in deliveries {
            if let Some(peer) = state.peers.get(&to) {
                peer.mailbox.deliver(text);
            }
        }
        Ok(())
    }

    /// Takes `id` out of its room, if it joined one, and tells the members left behind. With
    /// `reserve`, its id and name stay reserved for the resume grace period.
    pub fn leave(&self, id: PeerId, reserve: bool) {
        let now = self.now();
        let until = now.saturating_add(Self::millis(self.timing.resume_grace));
        let mut state = self.lock();
        let state = &mut *state;
        let Some(local) = state.peers.remove(&id) else {
            return;
        };
        let Some(room) = state.rooms.get_mut(&local.room) else {
            return;
        };
        let Some(left) = room.leave(id, reserve, now, until) else {
            return;
        };
        if room.members().is_empty() {
            state.occupied = state.occupied.saturating_sub(1);
        }
        if room.is_empty() {
            state.rooms.remove(&local.room);
        }
        if let Some(token) = left.reserved {
            state.tokens.insert(token.clone(), local.room.clone());
            let due = Due::Reservation {
                room: local.room,
                token,
            };
            self.deadlines
                .add(Instant::now() + self.timing.resume_grace, due);
        }
        for (to, text) in left.deliveries {
            if let Some(peer) = state.peers.get(&to) {
                peer.mailbox.deliver(text);
            }
        }
    }

    /// Waits until something is due; see [`Registry::expire`].
    pub async fn next_due(&self) -> Vec<Due> {
        self.deadlines.next_due().await
    }

    /// Ends what is due. For a held message nobody took, returns its sender's mailbox, so that
    /// the sender can be told.
    pub fn expire(&self, due: Due) -> Option<MailboxRef> {
        let mut state = self.lock();
        let state = &mut *state;
        match due {
            Due::Held { room, number, from } => {
                if !state.rooms.get_mut(&room)?.expire_held(number, from) {
                    return None;
                }
                state.peers.get(&from).map(|p| p.mailbox.clone())
            }
            Due::Reservation { room, token } => {
                state.tokens.remove(&token);
                if let Some(entry) = state.rooms.get_mut(&room) {
                    entry.expire_reservation(&token);
                    if entry.is_empty() {
                        state.rooms.remove(&room);
                    }
                }
                None
            }
        }
    }

    /// How long held messages wait.
    pub fn hold_time(&self) -> Duration {
        self.timing.hold
    }

    /// How many rooms have at least one peer now.
    pub fn room_count(&self) -> usize {
        self.lock().occupied
    }

    /// How many peers are in a room now.
    pub fn member_count(&self) -> usize {
        self.lock().peers.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// A mailbox of at most `capacity` texts that reports when it is full.
    struct TestMailbox {
        tx: mpsc::Sender<String>,
    }

    impl Mailbox for TestMailbox {
        fn deliver(&self, text: String) -> bool {
            self.tx.try_send(text).is_ok()
        }
    }

    fn mailbox() -> (MailboxRef, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(16);
        (Arc::new(TestMailbox { tx }), rx)
    }

    fn registry(hold: Duration) -> Registry {
        let timing = Timing {
            hold,
            resume_grace: Duration::from_secs(15),
        };
        Registry::new(2, timing)
    }

    fn join(registry: &Registry, room: &str) -> (Joined, mpsc::Receiver<String>) {
        let (mailbox, rx) = mailbox();
        let request = JoinRequest {
            room: room.into(),
            ..JoinRequest::default()
        };
        (
            registry
                .join(request, mailbox, |_| Vec::new())
                .expect("joins"),
            rx,
        )
    }

    #[test]
    fn empty_rooms_are_removed() {
        let registry = registry(Duration::from_secs(10));
        let (a, _rx) = join(&registry, "r");
        assert_eq!(registry.room_count(), 1);
        registry.leave(a.id, true);
        assert_eq!(registry.room_count(), 0);
        assert_eq!(registry.member_count(), 0);
    }

    #[test]
    fn a_signal_sent_alone_waits_for_the_next_peer() {
        let registry = registry(Duration::from_secs(10));
        let (a, _a_rx) = join(&registry, "r");
        let held = registry
            .relay(a.id, None, protocol::Signal::Offer("v=0".into()).into())
            .expect("held");
        assert_eq!(held, Relayed::Held);
        let (b, mut b_rx) = join(&registry, "r");
        assert_eq!(b.released, 1);
        let first = b_rx.try_recv().expect("welcome");
        assert!(first.contains("welcome"));
        let second = b_rx.try_recv().expect("held offer");
        assert!(second.contains("\"offer\""));
    }

    #[tokio::test(start_paused = true)]
    async fn one_task_expires_held_messages_in_order() {
        let registry = registry(Duration::from_secs(1));
        let (a, _a_rx) = join(&registry, "r");
        for sdp in ["v=0 one", "v=0 two"] {
            registry
                .relay(a.id, None, protocol::Signal::Offer(sdp.into()).into())
                .expect("held");
        }
        let due = registry.next_due().await;
        assert_eq!(due.len(), 2, "both were held at the same instant: {due:?}");
        for due in due {
            assert!(registry.expire(due).is_some(), "the sender is told");
        }
        // Expired: the next peer gets nothing but its welcome.
        let (_, mut b_rx) = join(&registry, "r");
        assert!(b_rx.try_recv().expect("welcome").contains("welcome"));
        assert!(b_rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_deadline_does_not_expire_a_newer_message_of_the_same_number() {
        let registry = registry(Duration::from_secs(1));
        let (a, _a_rx) = join(&registry, "r");
        registry
            .relay(a.id, None, protocol::Signal::HangUp.into())
            .expect("held as number 1");
        // The room empties and is made again: its numbers start again.
        registry.leave(a.id, false);
        tokio::time::advance(Duration::from_millis(500)).await;
        let (b, _b_rx) = join(&registry, "r");
        registry
            .relay(b.id, None, protocol::Signal::HangUp.into())
            .expect("held as number 1 too");
        let stale = registry.next_due().await;
        assert_eq!(stale.len(), 1);
        assert!(registry.expire(stale[0].clone()).is_none(), "a's is gone");
        let due = registry.next_due().await;
        assert!(
            registry.expire(due[0].clone()).is_some(),
            "b's expires on time"
        );
    }
}
