//! The room's door as this page sees it: who is in control, whether the room is locked or has a
//! passphrase, who knocks, and where this page stands (inside, knocking, turned away).
//!
//! The relay decides and enforces all of it (`server/src/door.rs`); the page only shows it and
//! asks. It sends a `room` event only when the room is not what a page takes it to be: an open
//! room, no passphrase, nobody knocking, the oldest member in control. So the page keeps the
//! members in the order they came (itself included) and takes the oldest to be in control
//! unless a `room` event named someone else who is still there.

use protocol::{Knock, PeerId, PeerInfo};

/// Where this page stands at the door.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// Not asked yet, or inside.
    #[default]
    Open,
    /// Waiting for someone inside to let it in; the `join` goes again on [`super::Timer::Knock`].
    Knocking,
    /// The people inside turned it away.
    Refused,
    /// The person in control removed it; it does not come back by itself.
    Removed,
    /// The room needs a passphrase (`true`: the one given was wrong).
    Passphrase(bool),
}

/// The door, as the page knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Door {
    /// The members, oldest first, this page included.
    order: Vec<PeerId>,
    /// The person in control as the last `room` event named them.
    named: Option<PeerId>,
    locked: bool,
    passphrase_set: bool,
    knocking: Vec<Knock>,
    /// The passphrase this page joins with, once the person typed one.
    passphrase: Option<String>,
    entry: Entry,
}

impl Door {
    /// We joined as `me`, with `peers` there before us (oldest first).
    pub fn welcome(&mut self, me: PeerId, peers: &[PeerInfo]) {
        self.order = peers.iter().map(|p| p.id).chain([me]).collect();
        self.named = None;
        self.locked = false;
        self.passphrase_set = false;
        self.knocking.clear();
        self.entry = Entry::Open;
    }

    /// `id` joined after everybody there.
    pub fn joined(&mut self, id: PeerId) {
        self.order.retain(|p| *p != id);
        self.order.push(id);
    }

    /// `id` left (or dropped: the relay takes it out of the room either way).
    pub fn left(&mut self, id: PeerId) {
        self.order.retain(|p| *p != id);
    }

    /// A `room` event.
    pub fn told(
        &mut self,
        controller: PeerId,
        locked: bool,
        passphrase: bool,
        knocking: Vec<Knock>,
    ) {
        self.named = Some(controller);
        self.locked = locked;
        self.passphrase_set = passphrase;
        self.knocking = knocking;
    }

    /// The person in control: the one the relay named, while they are here; else the oldest.
    pub fn controller(&self) -> Option<PeerId> {
        self.named
            .filter(|named| self.order.contains(named))
            .or_else(|| self.order.first().copied())
    }

    /// Whether the room is locked.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Whether the room has a passphrase.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase_set
    }

    /// Who knocks, first first.
    pub fn knocking(&self) -> &[Knock] {
        &self.knocking
    }

    /// Where this page stands.
    pub fn entry(&self) -> Entry {
        self.entry
    }

    /// Where this page stands from now on.
    pub fn set_entry(&mut self, entry: Entry) {
        self.entry = entry;
    }

    /// The passphrase to join with.
    pub fn passphrase(&self) -> Option<String> {
        self.passphrase.clone()
    }

    /// Join with `passphrase` from now on (empty: none).
    pub fn use_passphrase(&mut self, passphrase: String) {
        self.passphrase = (!passphrase.is_empty()).then_some(passphrase);
    }

    /// A knock answered here: it goes from the list before the relay's word comes back, so
    /// that it is not answered twice.
    pub fn answered(&mut self, session: &str) {
        self.knocking.retain(|k| k.session != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64) -> PeerInfo {
        PeerInfo {
            id: PeerId(id),
            name: None,
            session: None,
        }
    }

    #[test]
    fn the_oldest_is_in_control_unless_the_relay_named_someone_still_here() {
        let mut door = Door::default();
        door.welcome(PeerId(3), &[peer(1), peer(2)]);
        assert_eq!(door.controller(), Some(PeerId(1)));
        door.left(PeerId(1));
        assert_eq!(door.controller(), Some(PeerId(2)));
        door.told(PeerId(3), true, false, Vec::new());
        assert_eq!(door.controller(), Some(PeerId(3)));
        door.joined(PeerId(4));
        door.left(PeerId(3));
        // The relay passes control to the oldest, and says nothing of an open room.
        assert_eq!(door.controller(), Some(PeerId(2)));
    }

    #[test]
    fn alone_we_are_in_control_and_a_new_welcome_forgets_the_old_room() {
        let mut door = Door::default();
        door.welcome(PeerId(7), &[]);
        assert_eq!(door.controller(), Some(PeerId(7)));
        door.told(PeerId(7), true, true, Vec::new());
        door.welcome(PeerId(9), &[peer(8)]);
        assert_eq!(door.controller(), Some(PeerId(8)));
        assert!(!door.locked() && !door.has_passphrase());
    }
}
