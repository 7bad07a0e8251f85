//! Who is speaking: the person whose tile the stage shows large (`data-speaker`) among three
//! or more, unless a screen is shared. Decided from how loud each call's incoming audio was
//! over the last second ([`crate::stats::Figures::level`]).
//!
//! The loudest above [`SPEAKING`] speaks, unless who speaks now is nearly as loud
//! ([`TAKE_OVER`]) or took the stage less than [`HOLD_READS`] reads ago; in a silence the last
//! speaker stays large, as people expect of a call, rather than the stage moving at every pause.

use super::ConnId;

/// The level above which someone counts as speaking: the root mean square of the samples,
/// about -34 dB of full scale (Chromium's fake microphone beeps at about -20 dB; a muted one
/// sends silence).
pub const SPEAKING: f64 = 0.02;

/// How much louder than who speaks someone must be to take over.
pub const TAKE_OVER: f64 = 1.5;

/// How many reads (one a second) who took the stage keeps it at least: two people taking
/// turns in one breath, or beeps that fall in one second's read and not the next, would
/// otherwise lay the stage out anew every second.
pub const HOLD_READS: u32 = 3;

/// The speaker so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Speaker {
    current: Option<ConnId>,
    /// Reads since the current speaker took the stage.
    held: u32,
}

impl Speaker {
    /// The calls' levels over the last second: who speaks now.
    pub fn heard(&mut self, levels: &[(ConnId, f64)]) -> Option<ConnId> {
        let current = self
            .current
            .and_then(|conn| levels.iter().find(|(c, _)| *c == conn));
        self.held = self.held.saturating_add(1);
        if current.is_some() && self.held < HOLD_READS {
            return self.current;
        }
        // Who speaks keeps the stage against someone barely louder (two people talking at once,
        // or the same beep on every fake microphone), so that it does not flip every second.
        let bar = current.map_or(SPEAKING, |(_, level)| (level * TAKE_OVER).max(SPEAKING));
        let loudest = levels
            .iter()
            .filter(|(_, level)| *level >= bar)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let next = loudest.or(current).map(|(conn, _)| *conn);
        if next != self.current {
            self.held = 0;
        }
        self.current = next;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loudest_speaks_and_stays_through_a_silence_but_not_after_leaving() {
        let mut speaker = Speaker::default();
        assert_eq!(speaker.heard(&[(ConnId(1), 0.001), (ConnId(2), 0.0)]), None);
        assert_eq!(
            speaker.heard(&[(ConnId(1), 0.05), (ConnId(2), 0.1)]),
            Some(ConnId(2))
        );
        for _ in 0..HOLD_READS {
            assert_eq!(
                speaker.heard(&[(ConnId(1), 0.0), (ConnId(2), 0.001)]),
                Some(ConnId(2))
            );
        }
        assert_eq!(
            speaker.heard(&[(ConnId(1), 0.03), (ConnId(2), 0.001)]),
            Some(ConnId(1))
        );
        assert_eq!(speaker.heard(&[(ConnId(2), 0.0)]), None);
    }

    #[test]
    fn who_took_the_stage_keeps_it_a_few_reads_against_anyone() {
        let mut speaker = Speaker::default();
        speaker.heard(&[(ConnId(1), 0.1), (ConnId(2), 0.0)]);
        for read in 1..HOLD_READS {
            assert_eq!(
                speaker.heard(&[(ConnId(1), 0.0), (ConnId(2), 0.5)]),
                Some(ConnId(1)),
                "read {read}"
            );
        }
        assert_eq!(
            speaker.heard(&[(ConnId(1), 0.0), (ConnId(2), 0.5)]),
            Some(ConnId(2))
        );
    }

    #[test]
    fn someone_barely_louder_does_not_take_over() {
        let mut speaker = Speaker::default();
        for _ in 0..HOLD_READS {
            speaker.heard(&[(ConnId(1), 0.10), (ConnId(2), 0.09)]);
        }
        assert_eq!(
            speaker.heard(&[(ConnId(1), 0.10), (ConnId(2), 0.12)]),
            Some(ConnId(1))
        );
        assert_eq!(
            speaker.heard(&[(ConnId(1), 0.10), (ConnId(2), 0.2)]),
            Some(ConnId(2))
        );
    }
}
