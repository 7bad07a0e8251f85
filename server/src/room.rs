//! One room: who is in it, who may come back, and what waits for whom.
//!
//! The model knows no transport, no lock and no clock. Every method takes the time as
//! milliseconds on whatever clock its caller keeps, changes the room and returns the messages to
//! deliver as `(addressee, text)` pairs; delivering them is the caller's business. The in-memory
//! registry ([`crate::registry`]) keeps its rooms in a map and hands the messages to local
//! outboxes; the Redis backplane ([`crate::backplane`]) loads a room, applies the same methods,
//! stores it back and publishes the messages to the instances the addressees are connected to.
//! So both modes share one set of rules, and a join costs the room, not the whole relay.

use protocol::{Control, ErrorKind, PeerId, PeerInfo, RawSignal, ServerMsg};
use serde::{Deserialize, Serialize};

use crate::door::{Door, Gate};

/// How many messages one sender may have waiting for a peer that has not joined yet.
pub const MAX_HELD_PER_SENDER: usize = 64;

/// How many departures a room remembers at most (see [`Room::note_departure`]).
pub const MAX_DEPARTED: usize = 32;

/// Messages to hand to members of the room: `(addressee, text)`, in the order to send them.
pub type Deliveries = Vec<(PeerId, String)>;

/// A request the room refused, with words for the person behind the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A signal's addressee `to` was gone (or going) by the time the signal reached it.
    pub fn peer_gone(to: PeerId) -> Self {
        Self::new(
            ErrorKind::NoPeer,
            format!("peer {to} left before your message reached it"),
        )
    }

    /// The error event that tells the client.
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::error(self.kind, self.message.clone())
    }
}

/// A peer in the room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: PeerId,
    /// Its display name, unique in the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The page's session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The token that gives its place back if its connection drops.
    pub resume_token: String,
    /// The relay instance holding its connection (with a backplane); empty in memory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Put back after the store lost the room ([`Room::restore`]): it was in the room before
    /// the loss, so it saw whoever was there then (see [`Room::left_while_lost`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

impl Member {
    /// What the others are told of it.
    pub fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id,
            name: self.name.clone(),
            session: self.session.clone(),
        }
    }
}

/// A dropped peer's place, kept for it until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    token: String,
    id: PeerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    until: u64,
    /// Put back after the store lost it: its peer may be connected already (it resumed
    /// before the loss, on an instance that has not put it back yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restored: bool,
}

impl Reservation {
    /// `member`'s place, kept until `until`.
    fn of(member: &Member, until: u64, restored: bool) -> Self {
        Self {
            token: member.resume_token.clone(),
            id: member.id,
            name: member.name.clone(),
            session: member.session.clone(),
            until,
            restored,
        }
    }
}

/// A member that left lately: with a backplane, members put back after the store lost the room
/// hear it left when their relays put them back (see [`Room::note_departure`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Departed {
    id: PeerId,
    /// It dropped and may resume.
    reconnecting: bool,
    until: u64,
}

/// A message waiting for its addressee to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    number: u64,
    from: PeerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<PeerId>,
    text: String,
}

/// What a peer brings when it asks to join.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// The id it gets unless it resumes an earlier one.
    pub id: PeerId,
    /// Its display name (ignored when resuming: the reserved one comes back).
    pub name: Option<String>,
    /// A resume token from an earlier `welcome`.
    pub resume: Option<String>,
    /// The page's session id.
    pub session: Option<String>,
    /// The token for its next resume.
    pub resume_token: String,
    /// The relay instance holding its connection; empty in memory.
    pub instance: String,
}

/// A successful join: what the new member's `welcome` and the messages after it carry.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The id it joined as: its own, or the resumed one.
    pub id: PeerId,
    /// The members already there, oldest first.
    pub peers: Vec<PeerInfo>,
    /// Messages held for it, to send right after `welcome`.
    pub released: Vec<String>,
    /// Who sent each of them, under which number: with a backplane, the sender's relay hears
    /// they were taken (it cannot tell that from their loss with Redis's data otherwise).
    pub taken: Vec<(PeerId, u64)>,
    /// `peer-joined` for each member already there.
    pub deliveries: Deliveries,
    /// The `room` event for the new member, to send after the held messages, if the room is
    /// not what a page takes it to be ([`crate::door::Door::worth_telling`]).
    pub door: Option<String>,
}

/// Where a signal goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to this member: the text to send it.
    Deliver(PeerId, String),
    /// Held under this number until someone joins or it expires; the room changed.
    Held(u64, usize),
}

/// What a peer's leaving did.
#[derive(Clone, Debug, Default)]
pub struct Left {
    /// `peer-left` for each member still there.
    pub deliveries: Deliveries,
    /// The resume token now reserved, if the place was kept.
    pub reserved: Option<String>,
}

/// One room's members, reservations and held messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Oldest first.
    members: Vec<Member>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reservations: Vec<Reservation>,
    /// Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    held: Vec<Held>,
    #[serde(default)]
    next_hold: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    departed: Vec<Departed>,
    #[serde(default, skip_serializing_if = "Door::is_default")]
    door: Door,
}

impl Room {
    /// Whether nothing is left in it: no member, no reservation, nothing held.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.reservations.is_empty()
            && self.held.is_empty()
            && self.departed.is_empty()
            && self.door.is_default()
    }

    /// Its members, oldest first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Whether `id` has a place reserved (its connection dropped and it may resume).
    pub fn is_reserved(&self, id: PeerId) -> bool {
        self.reservations.iter().any(|r| r.id == id)
    }

    /// Whether `id` left lately ([`Room::note_departure`], [`Room::left_while_lost`]).
    pub fn departed(&self, id: PeerId) -> bool {
        self.departed.iter().any(|d| d.id == id)
    }

    /// Remembers until `until` that `id` left (it dropped and may resume, with
    /// `reconnecting`): a member put back after the store lost its data, and not yet told, may
    /// still believe it there. At most [`MAX_DEPARTED`] are remembered.
    pub fn note_departure(&mut self, id: PeerId, reconnecting: bool, until: u64) {
        if self.departed.len() >= MAX_DEPARTED {
            self.departed.remove(0);
        }
        self.departed.push(Departed {
            id,
            reconnecting,
            until,
        });
    }

    /// Whether all the room holds is who left lately: it goes once they are forgotten.
    pub fn only_departed(&self) -> bool {
        self.members.is_empty()
            && self.reservations.is_empty()
            && self.held.is_empty()
            && !self.departed.is_empty()
    }

    /// The member with `id`, if it is there.
    pub fn member(&self, id: PeerId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Forgets reservations whose grace period is over at `now`.
    pub fn sweep(&mut self, now: u64) {
        // A knock forgotten shows until the next `room` event: the page that knocked is gone.
        self.door.sweep(now);
        self.reservations.retain(|r| r.until > now);
        self.departed.retain(|d| d.until > now);
        let (members, reservations) = (&self.members, &self.reservations);
        self.held.retain(|h| {
            members.iter().any(|m| m.id == h.from) || reservations.iter().any(|r| r.id == h.from)
        });
    }

    fn name_taken(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.name.as_deref() == Some(name))
            || self
                .reservations
                .iter()
                .any(|r| r.name.as_deref() == Some(name))
    }

    /// Lets `arrival` in, named `room` in messages, if the room has a place (at most
    /// `capacity` members) and its name is free; a resume token gives back a reserved place.
    pub fn join(
        &mut self,
        room: &str,
        arrival: Arrival,
        capacity: usize,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        self.sweep(now);
        let Arrival {
            mut id,
            mut name,
            resume,
            mut session,
            resume_token,
            instance,
        } = arrival;
        let reservation = match &resume {
            Some(token) => {
                let Some(at) = self.reservations.iter().position(|r| &r.token == token) else {
                    return Err(Refusal::new(
                        ErrorKind::InvalidResume,
                        "unknown or expired resume token: join without it",
                    ));
                };
                Some(at)
            }
            None => None,
        };
        if let Some(at) = reservation {
            let r = &self.reservations[at];
            (id, name) = (r.id, r.name.clone());
            session = session.or_else(|| r.session.clone());
        } else if let Some(name) = name.as_deref().filter(|n| self.name_taken(n)) {
            return Err(Refusal::new(
                ErrorKind::NameTaken,
                format!("the name {name:?} is taken in room {room:?}"),
            ));
        }
        let present = self.members.len();
        if present >= capacity {
            // A resuming peer keeps its reservation: the room may have a place again soon.
            return Err(Refusal::new(
                ErrorKind::RoomFull,
                format!("room {room:?} is full ({present} of {capacity} places taken)"),
            ));
        }
        if let Some(at) = reservation {
            self.reservations.remove(at);
        }
        let member = Member {
            id,
            name,
            session,
            resume_token,
            instance,
            restored: false,
        };
        let joined = ServerMsg::PeerJoined {
            peer: member.info(),
        }
        .to_json();
        let deliveries = self
            .members
            .iter()
            .map(|m| (m.id, joined.clone()))
            .collect();
        let peers = self.members.iter().map(Member::info).collect();
        let (mut released, mut taken) = (Vec::new(), Vec::new());
        self.held.retain(|h| {
            let for_it = h.from != id && h.to.is_none_or(|to| to == id);
            if for_it {
                released.push(h.text.clone());
                taken.push((h.from, h.number));
            }
            !for_it
        });
        self.members.push(member);
        self.door.claim(id);
        let door = self
            .door_worth_telling()
            .then(|| self.door.event().map(|event| event.to_json()))
            .flatten();
        Ok(Admitted {
            id,
            peers,
            released,
            taken,
            deliveries,
            door,
        })
    }

    /// The door's answer to `arrival` asking to join (named `room`) with `passphrase`, at
    /// `now`: `Ok(None)` to go on with [`Room::join`]; `Ok(Some(deliveries))` when it knocked
    /// at the locked room (the room changed: commit it, with `deliveries` telling the members
    /// of a new knock, and tell the page `knocking`); a refusal when it may not come in. A
    /// resume always goes on: who resumes was inside.
    pub fn knock(
        &mut self,
        room: &str,
        arrival: &Arrival,
        passphrase: Option<&str>,
        now: u64,
    ) -> Result<Option<Deliveries>, Refusal> {
        self.sweep(now);
        if arrival.resume.is_some() {
            return Ok(None);
        }
        let gate = self.door.gate(
            room,
            arrival.session.as_deref(),
            arrival.name.as_deref(),
            passphrase,
            now,
        );
        match gate {
            Gate::Open => Ok(None),
            Gate::Knocked { new } => Ok(Some(if new { self.tell_door() } else { Vec::new() })),
            Gate::Shut(refusal) => Err(refusal),
        }
    }

    /// The refusal a page that knocked gets: it asks again shortly.
    pub fn knocking() -> Refusal {
        Refusal::new(
            ErrorKind::Knocking,
            "the room is locked: the people inside were asked to let you in",
        )
    }

    /// Whether the members must hear of the door: the pages take the oldest member to be in
    /// control of an open room ([`Door::worth_telling`]).
    fn door_worth_telling(&self) -> bool {
        self.door.worth_telling(self.members.first().map(|m| m.id))
    }

    /// The `room` event for every member.
    fn tell_door(&self) -> Deliveries {
        let Some(event) = self.door.event() else {
            return Vec::new();
        };
        let text = event.to_json();
        self.members.iter().map(|m| (m.id, text.clone())).collect()
    }

    /// Carries out `control` from member `from` of the room named `room` at `now`: returns
    /// what to tell whom (a removed member included: it is no longer a member), or why not, in
    /// which case nothing changed.
    pub fn control(
        &mut self,
        room: &str,
        from: PeerId,
        control: &Control,
        now: u64,
    ) -> Result<Deliveries, Refusal> {
        self.sweep(now);
        if self.member(from).is_none() {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before changing the room",
            ));
        }
        let in_control = self.door.in_control(from);
        let not_in_control = || {
            Refusal::new(
                ErrorKind::NotInControl,
                "only the person in control of the room may do that",
            )
        };
        match control {
            Control::Lock(locked) => {
                if !in_control {
                    return Err(not_in_control());
                }
                if !self.door.lock(*locked) {
                    return Ok(Vec::new());
                }
            }
            Control::Passphrase(passphrase) => {
                if !in_control {
                    return Err(not_in_control());
                }
                protocol::validate_passphrase(passphrase)
                    .map_err(|why| Refusal::new(ErrorKind::InvalidMessage, why))?;
                self.door.set_passphrase(room, passphrase);
            }
            Control::Admit(session) | Control::Refuse(session) => {
                let admit = matches!(control, Control::Admit(_));
                if !self.door.answer(session, admit, now) {
                    return Err(Refusal::new(
                        ErrorKind::NoPeer,
                        "nobody is knocking with that session: they left, or were answered",
                    ));
                }
            }
            Control::Remove(peer) => {
                if !in_control {
                    return Err(not_in_control());
                }
                if *peer == from {
                    return Err(Refusal::new(
                        ErrorKind::InvalidMessage,
                        "you cannot remove yourself: leave the room instead",
                    ));
                }
                let Some(member) = self.member(*peer) else {
                    return Err(Refusal::peer_gone(*peer));
                };
                if let Some(session) = member.session.clone() {
                    self.door.turn_away(&session, true);
                }
                let mut deliveries = vec![(*peer, ServerMsg::Removed.to_json())];
                if let Some(left) = self.leave(*peer, false, now, now) {
                    deliveries.extend(left.deliveries);
                }
                return Ok(deliveries);
            }
        }
        Ok(self.tell_door())
    }

    /// Decides where `signal` from member `from` goes: to `to`, or to the one other member. A
    /// signal for somebody who is not there yet (nobody else in the room, or a dropped peer that
    /// may resume) is held; see [`Room::expire_held`]. `now` (ms) is asked for only to tell
    /// whether a reservation still holds.
    pub fn relay(
        &mut self,
        from: PeerId,
        to: Option<PeerId>,
        signal: &RawSignal,
        now: impl Fn() -> u64,
    ) -> Result<Route, Refusal> {
        let Some(sender) = self.member(from) else {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before signaling",
            ));
        };
        let text = signal.stamped(from, sender.name.as_deref());
        let present = |id: PeerId| self.members.iter().any(|m| m.id == id);
        let target = match to {
            Some(to) if to != from && present(to) => Some(to),
            Some(to)
                if self
                    .reservations
                    .iter()
                    .any(|r| r.id == to && r.until > now()) =>
            {
                None
            }
            Some(to) => {
                return Err(Refusal::new(
                    ErrorKind::NoPeer,
                    format!("peer {to} is not in your room"),
                ))
            }
            None => {
                let mut others = self.members.iter().filter(|m| m.id != from);
                match (others.next(), others.next()) {
                    (Some(only), None) => Some(only.id),
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
            return Ok(Route::Deliver(target, text));
        }
        if self.held.iter().filter(|h| h.from == from).count() >= MAX_HELD_PER_SENDER {
            return Err(Refusal::new(
                ErrorKind::NoPeer,
                "too many messages are already waiting for somebody to join",
            ));
        }
        self.next_hold += 1;
        let number = self.next_hold;
        let bytes = text.len();
        self.held.push(Held {
            number,
            from,
            to,
            text,
        });
        Ok(Route::Held(number, bytes))
    }

    /// Numbers the next held message at least `floor`. With a backplane, a room that Redis lost
    /// starts numbering again from the clock, so that no number its held messages had before
    /// the loss comes back (the sender's relay tells them apart by sender and number).
    pub fn number_holds_from(&mut self, floor: u64) {
        self.next_hold = self.next_hold.max(floor);
    }

    /// Ends the wait of held message `number` from `from`. Whether nobody took it (its sender
    /// is to be told). Numbers start again in a room that emptied, but ids are never reused, so
    /// the pair names one message.
    pub fn expire_held(&mut self, number: u64, from: PeerId) -> bool {
        let Some(at) = self
            .held
            .iter()
            .position(|h| h.number == number && h.from == from)
        else {
            return false;
        };
        self.held.remove(at);
        true
    }

    /// Ends the reservation of `token`, if it is still there.
    pub fn expire_reservation(&mut self, token: &str) {
        self.reservations.retain(|r| r.token != token);
    }

    /// Takes member `id` out and tells the others. With `reserve`, its id and name stay reserved
    /// for it until `until`. `None` if it was not there.
    pub fn leave(&mut self, id: PeerId, reserve: bool, now: u64, until: u64) -> Option<Left> {
        self.sweep(now);
        let at = self.members.iter().position(|m| m.id == id)?;
        let member = self.members.remove(at);
        // What it sent and nobody took goes with it, unless it may come back: then its relay
        // still tells it when the hold runs out (a relay taken for gone during a cut from Redis
        // is alive, and its senders waited for that word). The sweep drops it with the place.
        if !reserve {
            self.held.retain(|h| h.from != id);
        }
        let reserved = reserve.then(|| {
            self.reservations
                .push(Reservation::of(&member, until, false));
            member.resume_token
        });
        // Control passes to the oldest member still there; an empty room's door forgets all.
        let passed = self.door.pass_on(id, self.members.first().map(|m| m.id));
        if self.members.is_empty() {
            self.held.clear();
            return Some(Left {
                deliveries: Vec::new(),
                reserved,
            });
        }
        let left = ServerMsg::PeerLeft {
            peer: id,
            reconnecting: reserve,
        }
        .to_json();
        let mut deliveries: Deliveries =
            self.members.iter().map(|m| (m.id, left.clone())).collect();
        if passed && self.door_worth_telling() {
            deliveries.extend(self.tell_door());
        }
        Some(Left {
            deliveries,
            reserved,
        })
    }

    /// `member` left (with `reserve`, its connection dropped and its place is kept until
    /// `until`) while the store had lost the room, so it is not in it. Whoever was in the room
    /// with it before the loss hears it left: the members put back already now, the others when
    /// their relays put them back ([`Room::restore`]). `None` if it is in the room, or has a
    /// place reserved, after all.
    pub fn left_while_lost(
        &mut self,
        member: &Member,
        reserve: bool,
        now: u64,
        until: u64,
    ) -> Option<Left> {
        self.sweep(now);
        let id = member.id;
        if self.member(id).is_some() || self.reservations.iter().any(|r| r.id == id) {
            return None;
        }
        self.note_departure(id, reserve, until);
        let reserved = reserve.then(|| {
            self.reservations
                .push(Reservation::of(member, until, false));
            member.resume_token.clone()
        });
        let left = ServerMsg::PeerLeft {
            peer: id,
            reconnecting: reserve,
        }
        .to_json();
        Some(Left {
            deliveries: self
                .members
                .iter()
                .filter(|m| m.restored)
                .map(|m| (m.id, left.clone()))
                .collect(),
            reserved,
        })
    }

    /// Every member held by `instance`, which is gone, leaves with its place reserved until
    /// `until`, as if its connection had dropped. Returns what to tell the members left and the
    /// tokens now reserved.
    pub fn reap(&mut self, instance: &str, now: u64, until: u64) -> (Deliveries, Vec<String>) {
        let gone: Vec<PeerId> = self
            .members
            .iter()
            .filter(|m| m.instance == instance)
            .map(|m| m.id)
            .collect();
        let (mut deliveries, mut tokens) = (Vec::new(), Vec::new());
        for id in gone {
            if let Some(left) = self.leave(id, true, now, until) {
                deliveries.extend(left.deliveries);
                tokens.extend(left.reserved);
            }
        }
        // Not to the members that went after the message was made.
        deliveries.retain(|(to, _)| self.member(*to).is_some());
        (deliveries, tokens)
    }

    /// Puts back the reservation of `member` until `until` (the store lost it), unless it is
    /// due, the member is back, or it is still there.
    pub fn restore_reservation(&mut self, member: &Member, until: u64, now: u64) {
        if until <= now
            || self.member(member.id).is_some()
            || self.reservations.iter().any(|r| r.id == member.id)
        {
            return;
        }
        self.reservations.push(Reservation::of(member, until, true));
    }

    /// Puts back `members`, which the room lost while their connections stayed up (the
    /// backplane's store was wiped, or their instance was taken for gone), all of one instance
    /// at once. Whoever heard that one of them left (its place was reserved) hears it is back;
    /// the others of the batch were taken out with it and heard nothing, so they are not told
    /// (the chaos run saw a peer told twice that another joined). One already there is left as
    /// it is.
    pub fn restore(&mut self, members: Vec<Member>) -> Deliveries {
        let batch: Vec<PeerId> = members.iter().map(|m| m.id).collect();
        let mut back = Vec::new();
        let mut deliveries = Vec::new();
        for mut member in members {
            if self.member(member.id).is_some() {
                continue;
            }
            member.restored = true;
            // Only those who heard it left hear it is back: not for a reservation put back
            // after the store lost the room (its peer was connected all along).
            let heard_left = self
                .reservations
                .iter()
                .any(|r| r.id == member.id && !r.restored);
            self.reservations.retain(|r| r.id != member.id);
            if heard_left {
                back.push(member.info());
            }
            self.members.push(member);
        }
        for peer in back {
            let joined = ServerMsg::PeerJoined { peer: peer.clone() }.to_json();
            deliveries.extend(
                self.members
                    .iter()
                    .filter(|m| m.id != peer.id && !batch.contains(&m.id))
                    .map(|m| (m.id, joined.clone())),
            );
        }
        // A room the store lost lost its door too (its lock and passphrase): its oldest member
        // takes control, as the pages take it to.
        if let Some(first) = self.members.first().map(|m| m.id) {
            self.door.claim(first);
        }
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(id: u64, name: Option<&str>) -> Arrival {
        Arrival {
            id: PeerId(id),
            name: name.map(Into::into),
            resume: None,
            session: None,
            resume_token: format!("token-{id}"),
            instance: String::new(),
        }
    }

    #[test]
    fn a_held_signal_is_released_to_the_next_member() {
        let mut room = Room::default();
        room.join("r", arrival(1, None), 2, 0).expect("joins");
        let route = room
            .relay(
                PeerId(1),
                None,
                &protocol::Signal::Offer("v=0".into()).into(),
                || 0,
            )
            .expect("held");
        assert!(matches!(route, Route::Held(1, _)));
        let admitted = room.join("r", arrival(2, None), 2, 0).expect("joins");
        assert_eq!(admitted.released.len(), 1);
        assert!(admitted.released[0].contains("\"offer\""));
        assert_eq!(
            admitted.taken,
            vec![(PeerId(1), 1)],
            "its sender and number"
        );
        assert_eq!(admitted.deliveries.len(), 1, "peer-joined for the first");
        assert!(!room.expire_held(1, PeerId(1)), "already delivered");
    }

    #[test]
    fn a_reservation_keeps_the_name_until_its_time() {
        let mut room = Room::default();
        room.join("r", arrival(1, Some("ann")), 2, 0)
            .expect("joins");
        let left = room.leave(PeerId(1), true, 0, 100).expect("was there");
        assert_eq!(left.reserved.as_deref(), Some("token-1"));
        let clash = room.join("r", arrival(2, Some("ann")), 2, 50);
        assert_eq!(clash.map(|_| ()).unwrap_err().kind, ErrorKind::NameTaken);
        room.join("r", arrival(3, Some("ann")), 2, 100)
            .expect("free again");
    }

    #[test]
    fn a_dead_instance_is_reaped_into_reservations() {
        let mut room = Room::default();
        let mut a = arrival(1, Some("ann"));
        a.instance = "dead".into();
        room.join("r", a, 3, 0).expect("joins");
        let mut b = arrival(2, None);
        b.instance = "alive".into();
        room.join("r", b, 3, 0).expect("joins");
        let (deliveries, tokens) = room.reap("dead", 0, 100);
        assert_eq!(tokens, vec!["token-1".to_owned()]);
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].0, PeerId(2));
        assert!(deliveries[0].1.contains("\"reconnecting\":true"));
        let mut back = arrival(9, None);
        back.resume = Some("token-1".into());
        let admitted = room.join("r", back, 3, 10).expect("resumes");
        assert_eq!(admitted.id, PeerId(1));
    }

    /// A held signal outlives its sender's dropped socket (the sender may resume, and its relay
    /// still owes it `expired`), but not its goodbye, nor its reservation.
    #[test]
    fn a_held_signal_stays_while_its_sender_may_come_back() {
        let hold = |room: &mut Room| {
            room.join("r", arrival(1, None), 3, 0).expect("joins");
            room.join("r", arrival(2, None), 3, 0).expect("joins");
            room.join("r", arrival(3, None), 3, 0).expect("joins");
            room.leave(PeerId(2), true, 0, 100).expect("drops");
            let signal = protocol::Signal::Offer("v=0".into()).into();
            match room.relay(PeerId(1), Some(PeerId(2)), &signal, || 0) {
                Ok(Route::Held(number, _)) => number,
                other => panic!("expected it held, got {other:?}"),
            }
        };
        let mut room = Room::default();
        let number = hold(&mut room);
        room.leave(PeerId(1), true, 10, 50).expect("drops too");
        assert!(room.expire_held(number, PeerId(1)), "kept for its sender");

        let mut room = Room::default();
        let number = hold(&mut room);
        room.leave(PeerId(1), true, 10, 50).expect("drops too");
        room.sweep(60);
        assert!(!room.expire_held(number, PeerId(1)), "gone with its place");

        let mut room = Room::default();
        let number = hold(&mut room);
        room.leave(PeerId(1), false, 10, 50).expect("says goodbye");
        assert!(!room.expire_held(number, PeerId(1)), "gone with its sender");
    }

    #[test]
    fn the_room_survives_a_round_trip_through_json() {
        let mut room = Room::default();
        room.join("r", arrival(1, Some("ann")), 2, 0)
            .expect("joins");
        room.relay(PeerId(1), None, &protocol::Signal::HangUp.into(), || 0)
            .expect("held");
        let text = serde_json::to_string(&room).expect("serializes");
        let back: Room = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, room);
    }
    fn member(id: u64, instance: &str) -> Member {
        Member {
            id: PeerId(id),
            name: None,
            session: None,
            resume_token: format!("token-{id}"),
            instance: instance.into(),
            restored: false,
        }
    }

    fn left_msg(id: u64, reconnecting: bool) -> String {
        ServerMsg::PeerLeft {
            peer: PeerId(id),
            reconnecting,
        }
        .to_json()
    }

    /// Redis lost a room of three on two instances; peer 3 (of instance b) left before b could
    /// tell anyone, peer 2 (of b too) dropped. A member put back already hears both at once; one
    /// put back later finds both remembered as departed (its relay tells it, knowing what it
    /// was told); a newcomer sees neither, and the dropped one may resume its place.
    #[test]
    fn those_who_left_while_the_room_was_lost_are_told_to_whoever_saw_them() {
        for a_first in [true, false] {
            let mut room = Room::default();
            let one = member(1, "a");
            if a_first {
                assert!(room.restore(vec![one.clone()]).is_empty());
            }
            let gone = room
                .left_while_lost(&member(3, "b"), false, 0, 100)
                .expect("not in the lost room");
            let dropped = room
                .left_while_lost(&member(2, "b"), true, 0, 100)
                .expect("not in the lost room");
            assert_eq!(dropped.reserved.as_deref(), Some("token-2"));
            let told = [gone.deliveries, dropped.deliveries].concat();
            if a_first {
                assert_eq!(
                    told,
                    vec![
                        (PeerId(1), left_msg(3, false)),
                        (PeerId(1), left_msg(2, true))
                    ]
                );
            } else {
                assert!(told.is_empty(), "nobody there yet");
                assert!(room.restore(vec![one]).is_empty());
            }
            assert!(room.departed(PeerId(3)) && room.departed(PeerId(2)));
            assert!(room.is_reserved(PeerId(2)) && !room.is_reserved(PeerId(3)));
            let newcomer = room.join("r", arrival(4, None), 6, 0).expect("joins");
            assert_eq!(newcomer.peers.len(), 1, "only peer 1");
            let mut back = arrival(9, None);
            back.resume = Some("token-2".into());
            let resumed = room.join("r", back, 6, 0).expect("resumes its place");
            assert_eq!(resumed.id, PeerId(2));
            assert!(room
                .left_while_lost(&member(2, "b"), false, 0, 100)
                .is_none());
            room.sweep(100);
            assert!(!room.departed(PeerId(3)), "forgotten in time");
        }
    }
}
