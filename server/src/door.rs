//! A room's door: who is in control of the room, whether it is locked, its passphrase, who
//! knocks, and who was turned away.
//!
//! Part of the room's state ([`crate::room::Room`]), so it lives wherever the room does: in
//! memory, or in Redis for every relay on the backplane, and a page cannot get past it by
//! talking to another relay. Like the room, it knows no clock: times are milliseconds on the
//! caller's.
//!
//! - **Control** is the first member's; when they leave (or drop), it passes to the oldest
//!   member still there. Only the person in control locks, sets the passphrase and removes.
//! - **What the pages hear.** A page takes the oldest member to be in control of an open room
//!   with no passphrase and nobody knocking, and so it is, in the common case: such a room
//!   sends no `room` event at all. One comes after `welcome` and after a departure when the
//!   room is otherwise ([`Door::worth_telling`]), and after every change made at the door.
//! - **A passphrase** is checked on every `join` but a resume (who resumes was inside). Only a
//!   digest of it is kept.
//! - **A locked room** turns a `join` into a knock: the page is told `knocking` and sends the
//!   same `join` again every second or two; the people inside see the knock and admit it (the
//!   page's next `join` gets in) or refuse it (its next `join` is told `knock-refused`). A page
//!   that stops asking is forgotten after [`KNOCK_MS`].
//! - **Turned away** (refused, or removed from the room) stays out while the room is locked;
//!   opening the room forgets it.

use protocol::{ErrorKind, Knock, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::room::Refusal;

/// How long a knock stays without the page asking again.
pub const KNOCK_MS: u64 = 10_000;

/// How long a page let in has to come in.
pub const ADMIT_MS: u64 = 60_000;

/// How many pages may knock at once; more are told to try again later.
pub const MAX_KNOCKING: usize = 16;

/// How many turned-away pages a room remembers.
pub const MAX_TURNED_AWAY: usize = 64;

/// A knock, as the room keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Knocking {
    session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    until: u64,
}

/// A page let in, until it comes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pass {
    session: String,
    until: u64,
}

/// A page that may not come back while the room is locked, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TurnedAway {
    session: String,
    /// Removed by the person in control, not refused at the door.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

/// The room's door.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Door {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    controller: Option<PeerId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    locked: bool,
    /// The passphrase's digest (see [`digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passphrase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    knocking: Vec<Knocking>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    admitted: Vec<Pass>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    turned_away: Vec<TurnedAway>,
}

/// What the door says to a `join`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Come in.
    Open,
    /// The room is locked: the knock is noted (`new`: the people inside have not seen it yet).
    Knocked {
        /// A knock the people inside must hear of.
        new: bool,
    },
    /// Not in.
    Shut(Refusal),
}

/// The digest of `passphrase` for room `room`: the room's name is the salt, so one passphrase
/// in two rooms gives two digests.
fn digest(room: &str, passphrase: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(room.as_bytes());
    hash.update([0]);
    hash.update(passphrase.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Door {
    /// Whether it holds nothing (the room has never had a member, or is empty).
    pub fn is_default(&self) -> bool {
        *self == Door::default()
    }

    /// Whether `id` is in control.
    pub fn in_control(&self, id: PeerId) -> bool {
        self.controller == Some(id)
    }

    /// Makes `id` the person in control, if nobody is.
    pub fn claim(&mut self, id: PeerId) {
        self.controller.get_or_insert(id);
    }

    /// Control leaves `id` (it left the room) for `next`; with nobody left, the door forgets
    /// everything. Whether the person in control changed.
    pub fn pass_on(&mut self, id: PeerId, next: Option<PeerId>) -> bool {
        if self.controller != Some(id) {
            return false;
        }
        match next {
            Some(next) => self.controller = Some(next),
            None => *self = Door::default(),
        }
        true
    }

    /// Forgets knocks and passes whose time is over at `now`; whether a knock went.
    pub fn sweep(&mut self, now: u64) -> bool {
        let before = self.knocking.len();
        self.knocking.retain(|k| k.until > now);
        self.admitted.retain(|p| p.until > now);
        self.knocking.len() != before
    }

    /// What the door says to a `join` of room `room` from `session` (named `name`) with
    /// `passphrase`, at `now`. A resume is always let through: who resumes was inside.
    pub fn gate(
        &mut self,
        room: &str,
        session: Option<&str>,
        name: Option<&str>,
        passphrase: Option<&str>,
        now: u64,
    ) -> Gate {
        if let Some(expected) = &self.passphrase {
            let given = passphrase.map(|p| digest(room, p));
            if given.as_ref() != Some(expected) {
                return Gate::Shut(Refusal::new(
                    ErrorKind::WrongPassphrase,
                    match passphrase {
                        None => "this room needs its passphrase",
                        Some(_) => "that is not this room's passphrase",
                    },
                ));
            }
        }
        if !self.locked {
            return Gate::Open;
        }
        let Some(session) = session else {
            return Gate::Shut(Refusal::new(
                ErrorKind::KnockRefused,
                "the room is locked, and knocking needs a session id in \"join\"",
            ));
        };
        if let Some(away) = self.turned_away.iter().find(|t| t.session == session) {
            return Gate::Shut(if away.removed {
                Refusal::new(
                    ErrorKind::Removed,
                    "you were removed from this room, and it is locked",
                )
            } else {
                Refusal::new(
                    ErrorKind::KnockRefused,
                    "the people in this locked room did not let you in",
                )
            });
        }
        if let Some(at) = self.admitted.iter().position(|p| p.session == session) {
            self.admitted.remove(at);
            return Gate::Open;
        }
        let until = now.saturating_add(KNOCK_MS);
        if let Some(knock) = self.knocking.iter_mut().find(|k| k.session == session) {
            knock.until = until;
            return Gate::Knocked { new: false };
        }
        if self.knocking.len() >= MAX_KNOCKING {
            return Gate::Shut(Refusal::new(
                ErrorKind::RoomFull,
                "too many people are knocking at this room: try again shortly",
            ));
        }
        self.knocking.push(Knocking {
            session: session.to_owned(),
            name: name.map(str::to_owned),
            until,
        });
        Gate::Knocked { new: true }
    }

    /// Locks or opens the room. Opening it lets in whoever knocks next and forgets who was
    /// turned away. Whether anything changed.
    pub fn lock(&mut self, locked: bool) -> bool {
        if self.locked == locked {
            return false;
        }
        self.locked = locked;
        if !locked {
            self.knocking.clear();
            self.admitted.clear();
            self.turned_away.clear();
        }
        true
    }

    /// Sets the passphrase of room `room` (empty: none).
    pub fn set_passphrase(&mut self, room: &str, passphrase: &str) {
        self.passphrase = (!passphrase.is_empty()).then(|| digest(room, passphrase));
    }

    /// Lets in (`admit`) or turns away the page knocking as `session`, at `now`. Whether it was
    /// knocking.
    pub fn answer(&mut self, session: &str, admit: bool, now: u64) -> bool {
        let Some(at) = self.knocking.iter().position(|k| k.session == session) else {
            return false;
        };
        self.knocking.remove(at);
        if admit {
            self.admitted.push(Pass {
                session: session.to_owned(),
                until: now.saturating_add(ADMIT_MS),
            });
        } else {
            self.turn_away(session, false);
        }
        true
    }

    /// Keeps the page of `session` out while the room is locked (`removed`: by the person in
    /// control).
    pub fn turn_away(&mut self, session: &str, removed: bool) {
        self.turned_away.retain(|t| t.session != session);
        if self.turned_away.len() >= MAX_TURNED_AWAY {
            self.turned_away.remove(0);
        }
        self.turned_away.push(TurnedAway {
            session: session.to_owned(),
            removed,
        });
    }

    /// Whether the people inside need a `room` event to know the door: they take the oldest
    /// member (`oldest`) to be in control of an open room without a passphrase or knocks, and
    /// hear otherwise.
    pub fn worth_telling(&self, oldest: Option<PeerId>) -> bool {
        self.locked
            || self.passphrase.is_some()
            || !self.knocking.is_empty()
            || self.controller != oldest
    }

    /// The `room` event for the people inside, once somebody is in control.
    pub fn event(&self) -> Option<protocol::ServerMsg> {
        Some(protocol::ServerMsg::Room {
            controller: self.controller?,
            locked: self.locked,
            passphrase: self.passphrase.is_some(),
            knocking: self
                .knocking
                .iter()
                .map(|k| Knock {
                    session: k.session.clone(),
                    name: k.name.clone(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> Door {
        let mut door = Door::default();
        door.claim(PeerId(1));
        door.lock(true);
        door
    }

    fn kind(gate: Gate) -> Option<ErrorKind> {
        match gate {
            Gate::Shut(refusal) => Some(refusal.kind),
            _ => None,
        }
    }

    #[test]
    fn a_knock_is_noted_once_and_let_in_once() {
        let mut door = locked();
        let knock = |door: &mut Door, now| door.gate("r", Some("s"), Some("ann"), None, now);
        assert_eq!(knock(&mut door, 0), Gate::Knocked { new: true });
        assert_eq!(knock(&mut door, 1_000), Gate::Knocked { new: false });
        assert!(door.answer("s", true, 2_000));
        assert_eq!(knock(&mut door, 3_000), Gate::Open);
        // The pass is used up: the same page knocks again.
        assert_eq!(knock(&mut door, 4_000), Gate::Knocked { new: true });
    }

    #[test]
    fn a_refused_or_removed_page_stays_out_until_the_room_opens() {
        let mut door = locked();
        door.gate("r", Some("s"), None, None, 0);
        assert!(door.answer("s", false, 1));
        door.turn_away("t", true);
        let gate = |door: &mut Door, session| door.gate("r", Some(session), None, None, 2);
        assert_eq!(kind(gate(&mut door, "s")), Some(ErrorKind::KnockRefused));
        assert_eq!(kind(gate(&mut door, "t")), Some(ErrorKind::Removed));
        assert!(door.lock(false));
        assert_eq!(gate(&mut door, "s"), Gate::Open);
        assert_eq!(gate(&mut door, "t"), Gate::Open);
    }

    #[test]
    fn the_passphrase_is_checked_and_kept_only_as_a_digest() {
        let mut door = Door::default();
        door.set_passphrase("r", "open sesame");
        assert!(!serde_json::to_string(&door).unwrap().contains("sesame"));
        let gate = |door: &mut Door, p| door.gate("r", Some("s"), None, p, 0);
        assert_eq!(
            kind(gate(&mut door, None)),
            Some(ErrorKind::WrongPassphrase)
        );
        assert_eq!(
            kind(gate(&mut door, Some("open"))),
            Some(ErrorKind::WrongPassphrase)
        );
        assert_eq!(gate(&mut door, Some("open sesame")), Gate::Open);
        // Another room with the same passphrase keeps another digest.
        let mut other = Door::default();
        other.set_passphrase("q", "open sesame");
        assert_ne!(other.passphrase, door.passphrase);
        door.set_passphrase("r", "");
        assert_eq!(gate(&mut door, None), Gate::Open);
    }

    #[test]
    fn a_knock_not_repeated_is_forgotten() {
        let mut door = locked();
        door.gate("r", Some("s"), None, None, 0);
        assert!(!door.sweep(KNOCK_MS - 1));
        assert!(door.sweep(KNOCK_MS));
        assert!(!door.answer("s", true, KNOCK_MS));
    }

    #[test]
    fn control_passes_to_the_next_and_an_empty_room_forgets_its_door() {
        let mut door = locked();
        assert!(!door.pass_on(PeerId(2), Some(PeerId(3))));
        assert!(door.pass_on(PeerId(1), Some(PeerId(3))));
        assert!(door.in_control(PeerId(3)));
        assert!(door.pass_on(PeerId(3), None));
        assert!(door.is_default());
    }
}
