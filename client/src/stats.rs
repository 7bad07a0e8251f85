//! Call stats: from the cumulative counters of `getStats()`, read once a second, the figures a
//! person looks at when a call is choppy (bitrate in and out, round-trip time, frames per
//! second, packet loss) and a minute of history drawn as a small graph.

use crate::diagnose::StatEntry;

/// How many samples the graph keeps: one a second, a minute.
pub const HISTORY: usize = 60;

/// The counters of one connection at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// When, in milliseconds.
    pub at_ms: f64,
    /// Bytes received, all media.
    pub bytes_in: f64,
    /// Bytes sent, all media.
    pub bytes_out: f64,
    /// Packets received and lost, all media.
    pub packets_in: f64,
    /// See [`Counters::packets_in`].
    pub packets_lost: f64,
    /// Video frames decoded.
    pub frames: f64,
    /// The selected pair's current round-trip time, in seconds.
    pub rtt_s: Option<f64>,
    /// The audio received: its energy, and how many seconds of it.
    pub audio_energy: f64,
    /// See [`Counters::audio_energy`].
    pub audio_s: f64,
}

impl Counters {
    /// Adds up a stats report taken at `at_ms`.
    pub fn of(stats: &[StatEntry], at_ms: f64) -> Self {
        let mut counters = Counters {
            at_ms,
            ..Counters::default()
        };
        for entry in stats {
            match entry.kind.as_str() {
                "inbound-rtp" => {
                    counters.bytes_in += entry.bytes_received;
                    counters.packets_in += entry.packets_received;
                    counters.packets_lost += entry.packets_lost.max(0.0);
                    counters.frames += entry.frames_decoded;
                    counters.audio_energy += entry.audio_energy;
                    counters.audio_s += entry.audio_s;
                }
                "outbound-rtp" => counters.bytes_out += entry.bytes_sent,
                "candidate-pair" if entry.nominated && entry.rtt_s.is_some() => {
                    counters.rtt_s = entry.rtt_s;
                }
                _ => {}
            }
        }
        counters
    }
}

/// What a person reads about one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Kilobits per second received and sent.
    pub kbps_in: f64,
    /// See [`Figures::kbps_in`].
    pub kbps_out: f64,
    /// Decoded video frames per second.
    pub fps: f64,
    /// Packets lost, in percent of those expected, over the last interval.
    pub loss_pct: f64,
    /// Round-trip time in milliseconds, when known.
    pub rtt_ms: Option<f64>,
    /// How loud the audio received was, as the root mean square of its samples (0 to 1, full
    /// scale), over the interval.
    pub level: f64,
}

impl Figures {
    /// The figures between two readings (`None` if time did not move forward: a reading from
    /// an older connection, say).
    pub fn between(before: &Counters, now: &Counters) -> Option<Self> {
        let seconds = (now.at_ms - before.at_ms) / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        let rate = |a: f64, b: f64| ((b - a).max(0.0)) / seconds;
        let received = (now.packets_in - before.packets_in).max(0.0);
        let lost = (now.packets_lost - before.packets_lost).max(0.0);
        let expected = received + lost;
        Some(Figures {
            kbps_in: rate(before.bytes_in, now.bytes_in) * 8.0 / 1000.0,
            kbps_out: rate(before.bytes_out, now.bytes_out) * 8.0 / 1000.0,
            fps: rate(before.frames, now.frames),
            loss_pct: if expected > 0.0 {
                100.0 * lost / expected
            } else {
                0.0
            },
            rtt_ms: now.rtt_s.map(|s| s * 1000.0),
            level: {
                let seconds = now.audio_s - before.audio_s;
                if seconds > 0.0 {
                    ((now.audio_energy - before.audio_energy).max(0.0) / seconds).sqrt()
                } else {
                    0.0
                }
            },
        })
    }

    /// One line of text: "in 812 kbps · out 790 kbps · 30 fps · loss 0.0% · rtt 3 ms".
    pub fn line(&self) -> String {
        let rtt = self.rtt_ms.map_or_else(
            || "rtt –".to_owned(),
            |ms| format!("rtt {} ms", ms.round() as i64),
        );
        format!(
            "in {} kbps · out {} kbps · {} fps · loss {}.{}% · {rtt}",
            self.kbps_in.round() as i64,
            self.kbps_out.round() as i64,
            self.fps.round() as i64,
            (self.loss_pct * 10.0).round() as i64 / 10,
            (self.loss_pct * 10.0).round() as i64 % 10,
        )
    }
}

/// A minute of one connection: the last reading and the incoming bitrate of each second.
#[derive(Clone, Debug, Default)]
pub struct History {
    last: Option<Counters>,
    kbps_in: Vec<f64>,
    /// The latest figures.
    pub figures: Option<Figures>,
}

impl History {
    /// Takes a new reading.
    pub fn push(&mut self, now: Counters) {
        if let Some(before) = &self.last {
            if let Some(figures) = Figures::between(before, &now) {
                if self.kbps_in.len() == HISTORY {
                    self.kbps_in.remove(0);
                }
                self.kbps_in.push(figures.kbps_in);
                self.figures = Some(figures);
            }
        }
        self.last = Some(now);
    }

    /// The incoming bitrate of the last minute as a row of bars, oldest first, scaled to the
    /// highest: "▁▂▅▇█▇".
    pub fn graph(&self) -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let top = self.kbps_in.iter().copied().fold(0.0, f64::max);
        self.kbps_in
            .iter()
            .map(|kbps| {
                if top <= 0.0 {
                    BARS[0]
                } else {
                    BARS[((kbps / top) * 7.0).round().clamp(0.0, 7.0) as usize]
                }
            })
            .collect()
    }
}

/// How long a stats read may take before another is started in its place (its answer, if it
/// ever comes, is then ignored).
pub const READ_GIVEN_UP_MS: f64 = 10_000.0;

/// When the page reads its calls' stats: at each tick, unless a read is still under way.
///
/// `getStats()` is answered by the browser's network thread, and on a loaded machine reading
/// three calls took up to 3.3 s (the mesh test in `tests/tests/call.rs`, two cores, four
/// pages). While the page's loop waited for it, the ticks of every second queued up behind
/// it, 23 of them, and with them the relay's messages and the timers: the page stopped
/// moving. So a read runs beside the loop, at most one at a time, and a tick that finds one
/// under way is skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reads {
    /// The number of the last read started.
    started: u32,
    /// When the read under way started, in milliseconds.
    under_way: Option<f64>,
}

impl Reads {
    /// The number of a read to start now, or `None` while one is under way.
    pub fn start(&mut self, now_ms: f64) -> Option<u32> {
        if self
            .under_way
            .is_some_and(|since| now_ms - since < READ_GIVEN_UP_MS)
        {
            return None;
        }
        self.started = self.started.wrapping_add(1);
        self.under_way = Some(now_ms);
        Some(self.started)
    }

    /// Read number `read` came back: whether its answer is the one awaited.
    pub fn finished(&mut self, read: u32) -> bool {
        let awaited = self.under_way.is_some() && read == self.started;
        if awaited {
            self.under_way = None;
        }
        awaited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_at_a_time_and_a_lost_one_is_given_up() {
        let mut reads = Reads::default();
        let first = reads.start(0.0).expect("nothing under way");
        assert_eq!(reads.start(1000.0), None, "a tick during a read is skipped");
        assert!(reads.finished(first));
        assert!(!reads.finished(first), "an answer counts once");
        let second = reads.start(2000.0).expect("the read came back");
        assert_eq!(reads.start(2000.0 + READ_GIVEN_UP_MS - 1.0), None);
        let third = reads.start(2000.0 + READ_GIVEN_UP_MS).expect("given up");
        assert!(
            !reads.finished(second),
            "the given-up read's answer is ignored"
        );
        assert!(reads.finished(third));
    }

    fn entry(kind: &str) -> StatEntry {
        StatEntry {
            kind: kind.to_owned(),
            ..StatEntry::default()
        }
    }

    #[test]
    fn a_report_adds_up_to_counters() {
        let video = StatEntry {
            bytes_received: 1000.0,
            packets_received: 10.0,
            packets_lost: 1.0,
            frames_decoded: 30.0,
            ..entry("inbound-rtp")
        };
        let audio = StatEntry {
            bytes_received: 200.0,
            packets_received: 5.0,
            ..entry("inbound-rtp")
        };
        let out = StatEntry {
            bytes_sent: 900.0,
            ..entry("outbound-rtp")
        };
        let pair = StatEntry {
            nominated: true,
            rtt_s: Some(0.025),
            ..entry("candidate-pair")
        };
        let counters = Counters::of(&[video, audio, out, pair, entry("transport")], 5.0);
        assert_eq!(
            counters,
            Counters {
                at_ms: 5.0,
                bytes_in: 1200.0,
                bytes_out: 900.0,
                packets_in: 15.0,
                packets_lost: 1.0,
                frames: 30.0,
                rtt_s: Some(0.025),
                audio_energy: 0.0,
                audio_s: 0.0,
            }
        );
    }

    #[test]
    fn figures_are_rates_over_the_interval() {
        let before = Counters {
            at_ms: 1000.0,
            bytes_in: 0.0,
            bytes_out: 0.0,
            packets_in: 100.0,
            packets_lost: 0.0,
            frames: 0.0,
            rtt_s: None,
            audio_energy: 1.0,
            audio_s: 10.0,
        };
        let now = Counters {
            at_ms: 3000.0,
            bytes_in: 250_000.0,
            bytes_out: 125_000.0,
            packets_in: 295.0,
            packets_lost: 5.0,
            frames: 60.0,
            rtt_s: Some(0.012),
            // Two seconds at a root mean square of 0.1 (-20 dB of full scale).
            audio_energy: 1.0 + 2.0 * 0.01,
            audio_s: 12.0,
        };
        let f = Figures::between(&before, &now).expect("time moved");
        assert!((f.level - 0.1).abs() < 1e-9, "{}", f.level);
        assert_eq!(f.kbps_in, 1000.0);
        assert_eq!(f.kbps_out, 500.0);
        assert_eq!(f.fps, 30.0);
        assert!((f.loss_pct - 2.5).abs() < 1e-9, "{}", f.loss_pct);
        assert_eq!(f.rtt_ms, Some(12.0));
        assert_eq!(
            f.line(),
            "in 1000 kbps · out 500 kbps · 30 fps · loss 2.5% · rtt 12 ms"
        );
        assert_eq!(Figures::between(&now, &before), None);
    }

    #[test]
    fn a_minute_of_history_draws_as_bars() {
        let mut history = History::default();
        assert_eq!(history.graph(), "");
        for (n, kb) in [0.0, 100.0, 300.0, 400.0].iter().enumerate() {
            history.push(Counters {
                at_ms: n as f64 * 1000.0,
                bytes_in: kb * 1000.0 / 8.0,
                ..Counters::default()
            });
        }
        // Rates: 100, 200, 100 kbps.
        assert_eq!(history.graph(), "▅█▅");
        for n in 4..100 {
            history.push(Counters {
                at_ms: n as f64 * 1000.0,
                ..Counters::default()
            });
        }
        assert_eq!(history.graph().chars().count(), HISTORY);
    }
}
