//! What a person does in a call besides talking: raising a hand and reacting. Both travel peer
//! to peer on the connection's data channel ([`crate::chat`]); this part decides what we send
//! and how long what the others sent stays on their tiles.
//!
//! - **A hand** stays up until its person lowers it. Each connection is told ours when it
//!   opens (the frame waits for the channel), so somebody joining later sees it too.
//! - **A reaction** shows on the sender's tile for [`SHOWN_MS`]; a newer one from the same
//!   person takes its place, so that however many a peer sends, a tile shows one. We send at
//!   most one per [`SEND_GAP_MS`]: a person clicking fast stays well inside what the other
//!   pages take from a peer ([`super::chat_guard`]).

use super::{ConnId, Effect, Out, Timer};

/// How long a reaction shows on the sender's tile, in ms.
pub const SHOWN_MS: u32 = 4_000;

/// The shortest time between two reactions we send, in ms: clicks in between are let go.
pub const SEND_GAP_MS: u32 = 400;

/// A reaction: one of a few, so that a peer cannot put words of its own on our page. The
/// stylesheet draws each on the sender's tile, by its name (`data-reaction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// 👍
    ThumbsUp,
    /// 👏
    Clap,
    /// 😂
    Laugh,
    /// ❤️
    Heart,
    /// 😮
    Surprised,
}

impl Reaction {
    /// Every reaction, in the order the picker shows them.
    pub const ALL: [Reaction; 5] = [
        Reaction::ThumbsUp,
        Reaction::Clap,
        Reaction::Laugh,
        Reaction::Heart,
        Reaction::Surprised,
    ];

    /// Its name on the wire, in the picker's `data-reaction` and on the tile's `data-reaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::ThumbsUp => "thumbs-up",
            Reaction::Clap => "clap",
            Reaction::Laugh => "laugh",
            Reaction::Heart => "heart",
            Reaction::Surprised => "surprised",
        }
    }

    /// The reaction named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Reaction> {
        Reaction::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Our own hand.
#[derive(Debug, Default)]
pub struct Gestures {
    /// Our hand is up.
    hand: bool,
}

impl Gestures {
    /// Whether our hand is up: a new connection is told it first.
    pub fn hand(&self) -> bool {
        self.hand
    }

    /// The hand button: up, or down.
    pub fn toggle_hand(&mut self, out: &mut Out) {
        self.hand = !self.hand;
        out.push(Effect::SetHand(self.hand));
    }

    /// The person chose `reaction`: sent to everybody, unless the last one went out less than
    /// [`SEND_GAP_MS`] ago.
    pub fn react(&mut self, reaction: Reaction, out: &mut Out) {
        if out.running(Timer::ReactGap) {
            return;
        }
        out.start(Timer::ReactGap, SEND_GAP_MS);
        out.push(Effect::React(reaction));
    }
}

/// What the others did, as one call keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Theirs {
    /// Their hand is up.
    pub hand: bool,
    /// The reaction they sent last, while it shows.
    pub reaction: Option<Reaction>,
}

impl Theirs {
    /// They sent `reaction` on connection `conn`: it shows for [`SHOWN_MS`] from now, in place
    /// of one still showing.
    pub fn reacted(&mut self, conn: ConnId, reaction: Reaction, out: &mut Out) {
        self.reaction = Some(reaction);
        out.start(Timer::Reaction(conn), SHOWN_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::VecSet;

    const STYLE: &str = include_str!("../../../www/style.css");

    #[test]
    fn reactions_are_known_by_their_names_only() {
        for reaction in Reaction::ALL {
            assert_eq!(Reaction::from_name(reaction.as_str()), Some(reaction));
            // Drawn by the stylesheet, and named in every language.
            let rule = format!(
                "[data-reaction=\"{}\"]::before {{ content: ",
                reaction.as_str()
            );
            assert!(STYLE.contains(&rule), "{rule}");
            assert!(crate::text::label(reaction.as_str(), crate::text::Lang::ZhHans).is_some());
        }
        for name in ["", "Clap", "clap ", "<b>", "thumbs_up"] {
            assert_eq!(Reaction::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn the_hand_goes_up_and_down() {
        let mut ours = Gestures::default();
        let mut out = Out::new(VecSet::new());
        ours.toggle_hand(&mut out);
        assert!(ours.hand());
        ours.toggle_hand(&mut out);
        assert!(!ours.hand());
        let (effects, timers, _) = out.finish();
        assert_eq!(effects, [Effect::SetHand(true), Effect::SetHand(false)]);
        assert_eq!(timers.iter().count(), 0);
    }

    #[test]
    fn clicks_closer_than_the_gap_send_one_reaction() {
        let mut ours = Gestures::default();
        let mut out = Out::new(VecSet::new());
        ours.react(Reaction::Clap, &mut out);
        ours.react(Reaction::Heart, &mut out);
        let (effects, timers, _) = out.finish();
        assert_eq!(
            effects,
            [
                Effect::StartTimer {
                    timer: Timer::ReactGap,
                    ms: SEND_GAP_MS
                },
                Effect::React(Reaction::Clap),
            ]
        );
        assert!(timers.contains(&Timer::ReactGap));
    }

    #[test]
    fn a_newer_reaction_of_theirs_takes_the_place_of_the_last() {
        let mut theirs = Theirs::default();
        let mut out = Out::new(VecSet::new());
        theirs.reacted(ConnId(3), Reaction::Laugh, &mut out);
        theirs.reacted(ConnId(3), Reaction::Surprised, &mut out);
        assert_eq!(theirs.reaction, Some(Reaction::Surprised));
        let (effects, timers, _) = out.finish();
        assert_eq!(effects.len(), 2, "the timer restarted: {effects:?}");
        assert_eq!(timers.iter().count(), 1);
    }
}
