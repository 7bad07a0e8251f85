//! What one connection's peer may send on the chat channel: frames no longer than a message
//! can be, no faster than a person types or toggles their microphone. The rest is dropped
//! before it is read (a frame is copied out of the browser and parsed only once it is let in),
//! and the person is told that something was left out, at most once per [`QUIET_MS`] for each
//! reason, so that a flood does not become a flood of notes.
//!
//! Without it a peer's page could make ours do unbounded work: five thousand small messages
//! each added a line to the chat, and each line's scroll laid the growing log out again, which
//! froze the page for minutes (tests/tests/hostile.rs).

use crate::chat::MAX_CHARS;

/// The longest frame let in, in UTF-16 code units (what a browser string's `length` counts).
/// Every frame a page of ours sends fits with room to spare: a message of [`MAX_CHARS`]
/// characters of two units each, written by another client with every unit escaped as
/// `\uXXXX` (six units), is 24,000 units and the time and keys a few dozen more.
pub const MAX_FRAME_UNITS: usize = 32 * 1024;

/// Frames a peer may send at once, after a quiet while.
pub const BURST: f64 = 20.0;

/// Frames a peer may send per second, on average, once its burst is used up.
pub const PER_SECOND: f64 = 5.0;

/// The person is told of frames dropped for one reason at most once in this many ms.
pub const QUIET_MS: f64 = 10_000.0;

// A frame of a whole message in the worst escaping fits.
const _: () = assert!(MAX_CHARS * 2 * 6 + 64 <= MAX_FRAME_UNITS);

/// Why frames of a peer were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A frame longer than [`MAX_FRAME_UNITS`]: how long it was.
    TooBig(usize),
    /// More frames than [`BURST`] and [`PER_SECOND`] allow.
    TooFast,
}

impl Dropped {
    /// The chat line's `data-dropped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::TooBig(_) => "too-big",
            Dropped::TooFast => "too-fast",
        }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Read it.
    Take,
    /// Drop it unread; tell the person why, if `say` has it.
    Drop {
        /// Why, when the person is to be told now.
        say: Option<Dropped>,
    },
}

/// The chat guard of one connection: a token bucket of frames, and when the person was last
/// told of each reason for dropping them.
#[derive(Clone, Debug)]
pub struct ChatGuard {
    /// Frames that may come now.
    tokens: f64,
    /// When the last frame came, in ms.
    last_ms: Option<f64>,
    /// When the person was last told of a frame too big, and of frames too fast.
    said_ms: [Option<f64>; 2],
}

impl Default for ChatGuard {
    fn default() -> Self {
        Self {
            tokens: BURST,
            last_ms: None,
            said_ms: [None; 2],
        }
    }
}

impl ChatGuard {
    /// A frame of `units` UTF-16 code units came at `now_ms` (any clock that counts ms; one
    /// that goes back refills nothing).
    pub fn admit(&mut self, units: usize, now_ms: f64) -> Verdict {
        if let Some(last) = self.last_ms {
            let gained = (now_ms - last).max(0.0) / 1000.0 * PER_SECOND;
            self.tokens = (self.tokens + gained).min(BURST);
        }
        self.last_ms = Some(now_ms);
        let dropped = if self.tokens < 1.0 {
            Dropped::TooFast
        } else {
            self.tokens -= 1.0;
            if units <= MAX_FRAME_UNITS {
                return Verdict::Take;
            }
            Dropped::TooBig(units)
        };
        let said = &mut self.said_ms[matches!(dropped, Dropped::TooFast) as usize];
        let quiet = said.is_some_and(|at| (0.0..QUIET_MS).contains(&(now_ms - at)));
        if quiet {
            return Verdict::Drop { say: None };
        }
        *said = Some(now_ms);
        Verdict::Drop { say: Some(dropped) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdicts on `n` frames of `units`, one every `apart_ms` from `start_ms`.
    fn frames(
        guard: &mut ChatGuard,
        n: usize,
        units: usize,
        start_ms: f64,
        apart_ms: f64,
    ) -> Vec<Verdict> {
        (0..n)
            .map(|i| guard.admit(units, start_ms + i as f64 * apart_ms))
            .collect()
    }

    const TAKE: Verdict = Verdict::Take;
    const QUIETLY: Verdict = Verdict::Drop { say: None };

    #[test]
    fn a_person_chatting_is_never_held_back() {
        let mut guard = ChatGuard::default();
        // A message a second for a minute, and the longest one a page sends.
        assert!(frames(&mut guard, 60, 4_040, 0.0, 1_000.0)
            .iter()
            .all(|v| *v == TAKE));
        // A burst: a pasted run of lines, the microphone toggled a few times.
        assert!(frames(&mut guard, 20, 30, 60_000.0, 10.0)
            .iter()
            .all(|v| *v == TAKE));
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_with_one_note() {
        let mut guard = ChatGuard::default();
        // 5,000 frames within a second: the burst and the second's worth are taken.
        let verdicts = frames(&mut guard, 5_000, 30, 0.0, 0.2);
        let taken = verdicts.iter().filter(|v| **v == TAKE).count();
        assert_eq!(taken, 24, "the burst and a second's refill");
        let said: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| !matches!(v, Verdict::Take | Verdict::Drop { say: None }))
            .collect();
        assert_eq!(
            said,
            [&Verdict::Drop {
                say: Some(Dropped::TooFast)
            }]
        );
        assert_eq!(
            verdicts[20],
            Verdict::Drop {
                say: Some(Dropped::TooFast)
            }
        );
        // Still flooding 5 s later: dropped without a word; 10 s after the note, one more.
        assert_eq!(guard.admit(30, 5_000.0), TAKE, "refilled meanwhile");
        let verdicts = frames(&mut guard, 100, 30, 5_000.0, 1.0);
        assert!(
            verdicts.iter().skip(30).all(|v| *v == QUIETLY),
            "{verdicts:?}"
        );
        let verdicts = frames(&mut guard, 100, 30, 10_100.0, 0.0);
        assert!(verdicts.contains(&Verdict::Drop {
            say: Some(Dropped::TooFast)
        }));
    }

    #[test]
    fn a_frame_too_big_is_dropped_unread_and_said_once_per_while() {
        let mut guard = ChatGuard::default();
        assert_eq!(guard.admit(MAX_FRAME_UNITS, 0.0), TAKE);
        assert_eq!(
            guard.admit(262_144, 1.0),
            Verdict::Drop {
                say: Some(Dropped::TooBig(262_144))
            }
        );
        assert_eq!(guard.admit(MAX_FRAME_UNITS + 1, 2.0), QUIETLY);
        // Too big and too fast are told apart: a flood after the big frame is still said.
        let verdicts = frames(&mut guard, 40, 10, 3.0, 0.0);
        assert!(verdicts.contains(&Verdict::Drop {
            say: Some(Dropped::TooFast)
        }));
        assert_eq!(
            guard.admit(10_000_000, 10_001.0),
            Verdict::Drop {
                say: Some(Dropped::TooBig(10_000_000))
            }
        );
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing_and_silences_nothing_for_ever() {
        let mut guard = ChatGuard::default();
        let verdicts = frames(&mut guard, 21, 10, 50_000.0, 0.0);
        assert_eq!(
            verdicts[20],
            Verdict::Drop {
                say: Some(Dropped::TooFast)
            }
        );
        // The clock jumps back an hour: no tokens from it, and the note may come again.
        assert_eq!(
            guard.admit(10, 50_000.0 - 3_600_000.0),
            Verdict::Drop {
                say: Some(Dropped::TooFast)
            }
        );
    }
}
