//! The link to the relay: joining, the heartbeat that notices a socket dead without a word,
//! and connecting again with jittered exponential backoff, resuming our place with its token.

use protocol::{ClientMsg, PeerId};

use super::{Effect, Out, Timer, Timing};
use crate::text::RelayWhy;

/// Where the link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not asked to start yet.
    Idle,
    /// A socket is opening and `join` is on its way.
    Joining,
    /// In the room.
    Joined,
    /// Lost; [`Timer::Reconnect`] runs.
    Down,
}

/// The relay link's state.
#[derive(Debug)]
pub struct RelayLink {
    state: LinkState,
    /// Our relay id, once joined (kept while the relay is away).
    me: Option<PeerId>,
    resume_token: Option<String>,
    /// Attempts since the last welcome: the backoff's exponent.
    reconnects: u32,
    /// Why the relay was lost, while it is.
    lost: Option<RelayWhy>,
    /// The jitter's generator.
    rng: u64,
}

impl RelayLink {
    /// A link that has not started, with the jitter seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed: xorshift's first outputs from a small seed are all near 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self {
            state: LinkState::Idle,
            me: None,
            resume_token: None,
            reconnects: 0,
            lost: None,
            rng: (z ^ (z >> 31)) | 1,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// In the room.
    pub fn joined(&self) -> bool {
        self.state == LinkState::Joined
    }

    /// Our relay id, once we had one.
    pub fn me(&self) -> Option<PeerId> {
        self.me
    }

    /// Why the relay was lost, until a `welcome` says we are back: a socket being opened
    /// again is not being back (and fails again while the relay is away).
    pub fn lost(&self) -> Option<RelayWhy> {
        self.lost.filter(|_| self.state != LinkState::Joined)
    }

    /// Opens a socket and joins with `join` (made with [`RelayLink::take_resume`]).
    pub fn connect(&mut self, join: ClientMsg, out: &mut Out) {
        self.state = LinkState::Joining;
        out.push(Effect::ConnectRelay);
        out.push(Effect::Send(join));
    }

    /// The resume token, for the next join (it is used once).
    pub fn take_resume(&mut self) -> Option<String> {
        self.resume_token.take()
    }

    /// `welcome`: in the room as `id`.
    pub fn welcomed(&mut self, id: PeerId, resume_token: String, timing: &Timing, out: &mut Out) {
        self.me = Some(id);
        self.state = LinkState::Joined;
        self.lost = None;
        self.resume_token = Some(resume_token);
        self.reconnects = 0;
        out.cancel(Timer::Reconnect);
        out.start(Timer::Heartbeat, timing.heartbeat_ms);
    }

    /// `pong`: the relay is there; ask again in a while.
    pub fn pong(&mut self, timing: &Timing, out: &mut Out) {
        out.cancel(Timer::PongDue);
        out.start(Timer::Heartbeat, timing.heartbeat_ms);
    }

    /// Asks the relay now whether it is still there, unless a question is already out.
    pub fn probe(&mut self, timing: &Timing, out: &mut Out) {
        if self.state != LinkState::Joined || out.running(Timer::PongDue) {
            return;
        }
        out.cancel(Timer::Heartbeat);
        out.push(Effect::Send(ClientMsg::Ping));
        out.start(Timer::PongDue, timing.pong_timeout_ms);
    }

    /// The relay connection is gone, with words for the person: try again after a jittered,
    /// growing delay ("equal jitter": half fixed, half random, so that a restarted relay is not
    /// hit by every page at the same instant). Whether it was up until now.
    pub fn down(&mut self, why: RelayWhy, timing: &Timing, out: &mut Out) -> bool {
        if self.state == LinkState::Down {
            return false;
        }
        self.state = LinkState::Down;
        self.lost = Some(why);
        out.cancel(Timer::Heartbeat);
        out.cancel(Timer::PongDue);
        let exp = timing
            .reconnect_base_ms
            .saturating_mul(1 << self.reconnects.min(16))
            .min(timing.reconnect_max_ms);
        let ms = exp / 2 + (f64::from(exp / 2) * self.random()) as u32;
        self.reconnects += 1;
        out.start(Timer::Reconnect, ms);
        true
    }

    /// The relay connection is gone for good (we were removed from the room): no retry.
    pub fn give_up(&mut self, why: RelayWhy, out: &mut Out) {
        self.state = LinkState::Down;
        self.lost = Some(why);
        out.cancel(Timer::Heartbeat);
        out.cancel(Timer::PongDue);
        out.cancel(Timer::Reconnect);
    }

    /// A number in `0..1`, from a xorshift generator.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::VecSet;

    #[test]
    fn the_backoff_grows_with_jitter_and_a_welcome_resets_it() {
        let timing = Timing::default();
        let mut link = RelayLink::new(3);
        let mut timers = VecSet::new();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let mut out = Out::new(std::mem::take(&mut timers));
            assert!(link.down(RelayWhy::Lost, &timing, &mut out));
            // Down twice is down once.
            assert!(!link.down(RelayWhy::Lost, &timing, &mut out));
            let (effects, kept, _) = out.finish();
            timers = kept;
            delays.extend(effects.iter().filter_map(|e| match e {
                Effect::StartTimer {
                    timer: Timer::Reconnect,
                    ms,
                } => Some(*ms),
                _ => None,
            }));
            let mut out = Out::new(std::mem::take(&mut timers));
            link.connect(ClientMsg::Ping, &mut out);
            timers = out.finish().1;
        }
        for (n, ms) in delays.iter().enumerate() {
            let exp = (500u32 << n).min(10_000);
            assert!((exp / 2..=exp).contains(ms), "attempt {n}: {ms} ms");
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1] / 2),
            "no jitter: {delays:?}"
        );
        let mut out = Out::new(timers);
        link.welcomed(PeerId(1), "t".into(), &timing, &mut out);
        assert!(link.joined());
        assert!(link.down(RelayWhy::Lost, &timing, &mut out));
        let (effects, _, _) = out.finish();
        let first = effects.iter().rev().find_map(|e| match e {
            Effect::StartTimer {
                timer: Timer::Reconnect,
                ms,
            } => Some(*ms),
            _ => None,
        });
        assert!(first.is_some_and(|ms| ms <= 500), "{first:?}");
    }
}
