//! The room: who is there, who calls whom, and who is polite to whom.
//!
//! - **Who calls.** A `#true` page calls everybody; otherwise, in a room of three or more, the
//!   newer page of each pair calls the older one, so `/` plus `/#true` is still the 1:1 call
//!   where the page without the hash waits to be called.
//! - **Politeness** comes from the session ids, which both sides know and which outlive relay
//!   restarts: the greater session is polite.
//! - **People are recognised** by their session id when the relay gives them a new id (it
//!   restarted, or they came back).

use protocol::{PeerId, PeerInfo};

use super::{gestures::Theirs, negotiation::Negotiation, MediaState};

/// The call with one person: its negotiation, and what they told us of their media.
#[derive(Debug)]
pub struct Call {
    /// The connection's negotiation.
    pub negotiation: Negotiation,
    /// Whether they are muted or have their camera off.
    pub remote_media: MediaState,
    /// Their hand and their reaction.
    pub theirs: Theirs,
}

/// Another person of the room, as far as we know.
#[derive(Debug)]
pub struct Person {
    /// Their relay id; it changes if the relay restarts.
    pub id: PeerId,
    /// Their page's session id, if their page sends one.
    pub session: Option<String>,
    /// Their display name.
    pub name: Option<String>,
    /// They joined after us (we heard of them by `peer-joined`).
    pub newer: bool,
    /// In the room as far as the relay says.
    pub present: bool,
    /// Our call with them, if there is one.
    pub call: Option<Call>,
}

/// Everybody else in the room, in the order we heard of them.
#[derive(Debug, Default)]
pub struct Room {
    people: Vec<Person>,
}

impl Room {
    /// Records `peer` as in the room: a person we know (by session, or by id) gets their new
    /// id and name; anyone else is new to us. `newer`: heard of by `peer-joined`. Ourselves
    /// (by an older socket the relay has not yet noticed is dead) are not recorded. A name the
    /// relay would have refused (too long, control characters) is not kept: this relay is not
    /// the one we know.
    ///
    /// The id is theirs from now on: anybody else who had it (before a relay restart, which
    /// hands the ids out again) is no longer in the room under it, and keeps their call until
    /// they come back under a new id.
    pub fn learn(&mut self, peer: PeerInfo, newer: bool, my_session: &str) {
        if peer.session.as_deref() == Some(my_session) {
            return;
        }
        let name = peer
            .name
            .filter(|name| protocol::validate_name(name).is_ok());
        let known = self
            .people
            .iter()
            .position(|p| match (&p.session, &peer.session) {
                (Some(a), Some(b)) => a == b,
                _ => p.id == peer.id,
            });
        let at = match known {
            Some(at) => {
                let person = &mut self.people[at];
                person.id = peer.id;
                person.name = name;
                person.present = true;
                at
            }
            None => {
                self.people.push(Person {
                    id: peer.id,
                    session: peer.session,
                    name,
                    newer,
                    present: true,
                    call: None,
                });
                self.people.len() - 1
            }
        };
        for (n, other) in self.people.iter_mut().enumerate() {
            if n != at && other.id == peer.id {
                other.present = false;
            }
        }
    }

    /// Somebody we had not heard of sent us something: take them in as newer.
    pub fn stranger(&mut self, id: PeerId) {
        if self.by_id(id).is_none() {
            self.people.push(Person {
                id,
                session: None,
                name: None,
                newer: true,
                present: true,
                call: None,
            });
        }
    }

    /// The person with relay id `id`: the one in the room, if another who had it before is
    /// not (see [`Room::learn`]).
    pub fn by_id(&self, id: PeerId) -> Option<&Person> {
        self.position(id).map(|at| &self.people[at])
    }

    /// The person with relay id `id`, to change (see [`Room::by_id`]).
    pub fn by_id_mut(&mut self, id: PeerId) -> Option<&mut Person> {
        self.position(id).map(|at| &mut self.people[at])
    }

    /// Where the person with relay id `id` is in [`Room::people`] (see [`Room::by_id`]).
    fn position(&self, id: PeerId) -> Option<usize> {
        let people = &self.people;
        people
            .iter()
            .position(|p| p.id == id && p.present)
            .or_else(|| people.iter().position(|p| p.id == id))
    }

    /// The person whose call is on connection `conn`.
    pub fn by_conn_mut(&mut self, conn: super::ConnId) -> Option<&mut Person> {
        self.people.iter_mut().find(|p| {
            p.call
                .as_ref()
                .is_some_and(|c| c.negotiation.conn() == conn)
        })
    }

    /// Everybody, in the order we heard of them.
    pub fn people(&self) -> impl Iterator<Item = &Person> {
        self.people.iter()
    }

    /// Everybody, to change.
    pub fn people_mut(&mut self) -> impl Iterator<Item = &mut Person> {
        self.people.iter_mut()
    }

    /// The calls there are.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.people.iter().filter_map(|p| p.call.as_ref())
    }

    /// How many others are in the room now.
    pub fn present(&self) -> usize {
        self.people.iter().filter(|p| p.present).count()
    }

    /// Forgets who is here (a `welcome` says it anew).
    pub fn mark_all_absent(&mut self) {
        for person in &mut self.people {
            person.present = false;
        }
    }

    /// Forgets the people who are not here and have no call with us.
    pub fn forget_absent(&mut self) {
        self.people.retain(|p| p.present || p.call.is_some());
    }

    /// Forgets the person with relay id `id` (see [`Room::by_id`]).
    pub fn remove(&mut self, id: PeerId) {
        if let Some(at) = self.position(id) {
            self.people.remove(at);
        }
    }

    /// Whom we should call now and have no call with: everybody present if `caller`, else,
    /// in a room of three or more, the people who were there before us.
    pub fn to_call(&self, caller: bool) -> Vec<PeerId> {
        let people = 1 + self.present();
        self.people
            .iter()
            .filter(|p| p.present && p.call.is_none())
            .filter(|p| caller || (people >= 3 && !p.newer))
            .map(|p| p.id)
            .collect()
    }

    /// Whether we are the polite side towards `person`: the one with the greater session id
    /// (or relay id, for a client that sends no session).
    pub fn polite_towards(person: &Person, my_session: &str, me: Option<PeerId>) -> bool {
        match &person.session {
            Some(theirs) => my_session > theirs.as_str(),
            None => me.is_some_and(|me| me > person.id),
        }
    }

    /// Points every call at its person while the relay is up and they are there.
    pub fn route_calls(&mut self, relay_up: bool) {
        for person in &mut self.people {
            let route = (relay_up && person.present).then_some(person.id);
            if let Some(call) = person.call.as_mut() {
                call.negotiation.set_route(route);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, session: &str) -> PeerInfo {
        PeerInfo {
            id: PeerId(id),
            name: None,
            session: Some(session.into()),
        }
    }

    #[test]
    fn the_newer_page_calls_in_rooms_of_three_and_a_caller_calls_everybody() {
        let mut room = Room::default();
        room.learn(info(1, "a"), false, "me");
        assert!(
            room.to_call(false).is_empty(),
            "two people: the page without the hash waits"
        );
        assert_eq!(room.to_call(true), [PeerId(1)]);
        room.learn(info(3, "c"), true, "me");
        assert_eq!(room.to_call(false), [PeerId(1)], "the older one only");
        assert_eq!(room.to_call(true), [PeerId(1), PeerId(3)]);
        // Ourselves, by an old socket: not a person.
        room.learn(info(4, "me"), true, "me");
        assert_eq!(room.present(), 2);
    }

    #[test]
    fn a_person_back_under_a_new_id_is_recognised_by_session() {
        let mut room = Room::default();
        room.learn(info(1, "a"), false, "me");
        room.mark_all_absent();
        room.forget_absent();
        assert_eq!(room.present(), 0);
        room.learn(info(1, "a"), false, "me");
        room.mark_all_absent();
        room.learn(info(7, "a"), true, "me");
        let person = room.by_id(PeerId(7)).expect("known by session");
        assert!(!person.newer, "still the one who was there first");
        assert!(room.by_id(PeerId(1)).is_none());
        assert!(Room::polite_towards(person, "b", None));
        assert!(!Room::polite_towards(person, "0", None));
    }

    #[test]
    fn a_name_the_relay_would_refuse_is_not_kept() {
        let mut room = Room::default();
        for (id, name) in [
            (1, "N".repeat(65)),
            (2, "tab\there".into()),
            (3, "Bo".into()),
        ] {
            room.learn(
                PeerInfo {
                    id: PeerId(id),
                    name: Some(name),
                    session: Some(format!("s{id}")),
                },
                true,
                "me",
            );
        }
        let names: Vec<Option<&str>> = room.people().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [None, None, Some("Bo")]);
    }
}
