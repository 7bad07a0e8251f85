//! What the page shows: the status line, one tile per person we have a call with, and the
//! words for the person. Each problem is kept by kind and cleared by what resolves it.

use super::{relay_link::RelayLink, room::Room, Status, Tile, TileState};
use crate::text::Text;

/// What a problem on the page is about; each kind is cleared by what resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// No camera or microphone: cleared when they open.
    Media,
    /// The relay refused a request (a full room): cleared by the next `welcome`.
    Refused,
    /// A call failed: cleared when a call connects or a new one starts.
    Call,
}

/// What the person is told beyond the state of things.
#[derive(Debug, Default)]
pub struct View {
    problems: Vec<(Trouble, Text)>,
    /// The last call ended (hang-up), with words for the person.
    ended: Option<Text>,
}

impl View {
    /// Says `text` about `kind`, replacing what was said about it.
    pub fn set_problem(&mut self, kind: Trouble, text: Text) {
        self.problems.retain(|(k, _)| *k != kind);
        self.problems.push((kind, text));
    }

    /// What was said about `kind` no longer holds.
    pub fn clear_problem(&mut self, kind: Trouble) {
        self.problems.retain(|(k, _)| *k != kind);
    }

    /// The call ended, as `text` says (`None`: a new one is under way).
    pub fn set_ended(&mut self, text: Option<Text>) {
        self.ended = text;
    }

    /// What the status line should say now.
    pub fn status(&self, relay: &RelayLink, room: &Room) -> Status {
        if let Some((_, text)) = self.problems.last() {
            return Status::Error(text.clone());
        }
        if let Some(why) = relay.lost() {
            return Status::Error(Text::RelayAway {
                why,
                calls_go_on: room.calls().next().is_some(),
            });
        }
        if !relay.joined() && relay.me().is_none() {
            return Status::Starting;
        }
        let mut calls = room.calls().peekable();
        if calls.peek().is_none() {
            if let Some(ended) = &self.ended {
                return Status::Ended(ended.clone());
            }
            return Status::Waiting(match room.present() {
                0 => Text::WaitingAlone,
                _ => Text::WaitingOtherHere,
            });
        }
        if calls.all(|c| c.negotiation.tile() == TileState::Connected) {
            Status::Connected
        } else {
            Status::Connecting
        }
    }

    /// The remote people's tiles, in the order they came.
    pub fn tiles(room: &Room) -> Vec<Tile> {
        room.people()
            .filter_map(|person| {
                let call = person.call.as_ref()?;
                let negotiation = &call.negotiation;
                Some(Tile {
                    conn: negotiation.conn(),
                    peer: person.id,
                    name: person.name.clone(),
                    state: negotiation.tile(),
                    media: call.remote_media,
                    hand: call.theirs.hand,
                    reaction: call.theirs.reaction,
                    verify: negotiation.verify_code(),
                    offers: negotiation.offers(),
                })
            })
            .collect()
    }
}
