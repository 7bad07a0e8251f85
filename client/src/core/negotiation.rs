//! One connection's negotiation: perfect negotiation as the W3C's pattern has it, and keeping
//! the connection alive. It knows nothing of rooms or people: what it has to tell the other
//! side it sends through its route (the relay, addressed to a peer, while that peer is there)
//! or keeps until there is one again. A connection to a media server would be one more of
//! these, with the server as its route.
//!
//! - **Perfect negotiation.** Offers come only from `negotiationneeded`, made while the
//!   connection is stable and no offer is being made (`making_offer`). An offer that arrives
//!   while we are not ready for one (making an offer, or ours out and unanswered) collides: the
//!   impolite side ignores it, the polite side applies it (the browser rolls its own back). An
//!   answer is applied only to the offer it answers (`setting_remote_answer`). Remote
//!   candidates wait for a remote description in one queue, here.
//! - **Nothing lost.** An offer without an answer is sent again with our candidates after
//!   [`Timing::answer_due_ms`] (doubling), and when the other side is back; a repeated offer
//!   we already answered gets the same answer again; what we had to say while there was no
//!   route goes out when there is one.
//! - **ICE restarts.** A connection that fails, stays disconnected for
//!   [`Timing::disconnected_ms`], or never connects within [`Timing::connect_due_ms`], or a
//!   network change, gets an ICE restart; one not back within [`Timing::lost_ms`] is lost. The
//!   impolite side restarts; the polite side gives it [`Timing::restart_grace_ms`] first, because
//!   two restarts that cross make the polite side roll its own back, and Chrome's video into the
//!   page that rolled back a restart offer stalls after a few frames (seen in the address-change
//!   lab test).

use protocol::{IceCandidate, PeerId, Signal};

use super::{ConnId, ConnState, Effect, Out, TileState, Timer, Timing};
use crate::{diagnose::IceSetup, text::Text, verify};

/// The most of our candidates kept to be sent again, and of signals kept without a route.
pub const KEPT_SIGNALS: usize = 64;

/// The browser's signaling state, as far as the effects we asked for go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signaling {
    /// Nothing outstanding.
    Stable,
    /// Our offer is set and sent; the answer has not been applied.
    HaveLocalOffer,
    /// Their offer is being applied and answered.
    HaveRemoteOffer,
}

/// Something the negotiation needs its owner to do beyond the connection: say something to
/// the person, or check the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The call cannot go on: close it and say why.
    Failed(Text),
    /// Tell the person this about the call (a path that cannot be found, a call lost).
    Trouble(Text),
    /// The call connected: what was said about calls no longer holds.
    Connected,
    /// The network may have changed: check that the relay socket still works.
    ProbeRelay,
}

/// One connection's negotiation and health.
#[derive(Debug)]
pub struct Negotiation {
    conn: ConnId,
    polite: bool,
    /// Where signals go now: the peer, while the relay and they are there.
    route: Option<PeerId>,
    signaling: Signaling,
    /// `MakeOffer` issued, its local description not yet reported (the W3C's `makingOffer`).
    making_offer: bool,
    /// `ApplyAnswer` issued, not yet done (the W3C's `isSettingRemoteAnswerPending`).
    setting_remote_answer: bool,
    /// A remote description is in place: candidates can be added.
    remote_set: bool,
    /// Our ICE restart offer is out: the other side's new candidates wait for its answer.
    restarting: bool,
    /// Remote candidates waiting for a remote description (or the restart's answer).
    pending: Vec<IceCandidate>,
    /// Our last offer, sent again if it may have been lost, and how often it was.
    last_offer: Option<String>,
    offer_resends: u32,
    /// The last offer we applied, and our answer to it once made: the same offer again means
    /// that the answer was lost.
    remote_offer: Option<String>,
    last_answer: Option<String>,
    /// Our candidates since our last ICE restart, sent again with a repeated offer or answer.
    local_candidates: Vec<IceCandidate>,
    /// What we had to tell them while there was no route, in order.
    unsent: Vec<Signal>,
    state: ConnState,
    tile: TileState,
    /// The call connected once: losing it is "lost", never having it is "failed".
    ever_connected: bool,
    /// The TURN server that refused our credentials, if one did.
    turn_refused: Option<String>,
    /// The DTLS certificate fingerprints of our side and theirs, from the SDPs.
    local_fingerprint: Option<Vec<u8>>,
    remote_fingerprint: Option<Vec<u8>>,
    /// Offers made on this connection.
    offers: u32,
    /// The origin line (`o=`) of the last remote description applied: its session id says
    /// which of their connections is ours, and with its version, which description it was.
    remote_origin: Option<String>,
}

/// An SDP's origin (its `o=` line, without the `o=`): the session id and its version.
fn origin(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("o="))
}

/// The session id of an origin: one per connection, kept through renegotiations and ICE
/// restarts (RFC 8866, 5.2).
fn session_of(origin: &str) -> Option<&str> {
    origin.split_whitespace().nth(1)
}

/// The mids of an SDP, in order: an answer has exactly its offer's.
fn mids(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=mid:"))
        .collect()
}

impl Negotiation {
    /// A new connection `conn`, polite or not, that has to connect within
    /// [`Timing::connect_due_ms`].
    pub fn new(conn: ConnId, polite: bool, timing: &Timing, out: &mut Out) -> Self {
        out.start(Timer::ConnectDue(conn), timing.connect_due_ms);
        Self {
            conn,
            polite,
            route: None,
            signaling: Signaling::Stable,
            making_offer: false,
            setting_remote_answer: false,
            remote_set: false,
            restarting: false,
            pending: Vec::new(),
            last_offer: None,
            offer_resends: 0,
            remote_offer: None,
            last_answer: None,
            local_candidates: Vec::new(),
            unsent: Vec::new(),
            state: ConnState::New,
            tile: TileState::Connecting,
            ever_connected: false,
            turn_refused: None,
            local_fingerprint: None,
            remote_fingerprint: None,
            offers: 0,
            remote_origin: None,
        }
    }

    /// The connection.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// How its tile should look.
    pub fn tile(&self) -> TileState {
        self.tile
    }

    /// The offers made on it.
    pub fn offers(&self) -> u32 {
        self.offers
    }

    /// The verification code of this call, once it has connected.
    pub fn verify_code(&self) -> Option<String> {
        match (&self.local_fingerprint, &self.remote_fingerprint) {
            (Some(ours), Some(theirs)) if self.ever_connected => Some(verify::code(ours, theirs)),
            _ => None,
        }
    }

    /// Where signals go from now on (`None`: keep them).
    pub fn set_route(&mut self, route: Option<PeerId>) {
        self.route = route;
    }

    /// Closes it: its timers stop.
    pub fn close(&self, out: &mut Out) {
        let conn = self.conn;
        for timer in [
            Timer::Disconnected(conn),
            Timer::Lost(conn),
            Timer::AnswerDue(conn),
            Timer::RestartDue(conn),
            Timer::ConnectDue(conn),
        ] {
            out.cancel(timer);
        }
        out.push(Effect::Close { conn });
    }

    /// `negotiationneeded`. One that reaches us while an exchange is under way (the browser
    /// queued it while stable) is dropped, as the W3C's pattern does: the browser clears its
    /// flag when the connection is stable again and fires anew if a negotiation is still
    /// needed. Keeping it for later made one more offer after every such exchange, though the
    /// offer under way already carried the change (seen in rooms of four: two offers in 10 s
    /// of a steady call).
    pub fn negotiation_needed(&mut self, out: &mut Out) {
        if self.signaling == Signaling::Stable && !self.making_offer {
            self.offer(out);
        }
    }

    fn offer(&mut self, out: &mut Out) {
        self.making_offer = true;
        out.push(Effect::MakeOffer { conn: self.conn });
    }

    /// The local description an effect made: our offer (from `MakeOffer`) or our answer (from
    /// `ApplyOffer`).
    pub fn local_description(&mut self, offer: bool, sdp: String, timing: &Timing, out: &mut Out) {
        if offer {
            if !self.making_offer {
                return;
            }
            self.making_offer = false;
            self.signaling = Signaling::HaveLocalOffer;
            self.offers += 1;
            self.local_fingerprint = verify::fingerprint(&sdp);
            self.last_offer = Some(sdp.clone());
            self.offer_resends = 0;
            self.signal(Signal::Offer(sdp), out);
            out.start(Timer::AnswerDue(self.conn), timing.answer_due_ms);
        } else {
            if self.signaling != Signaling::HaveRemoteOffer {
                return;
            }
            self.local_fingerprint = verify::fingerprint(&sdp);
            self.last_answer = Some(sdp.clone());
            self.signal(Signal::Answer(sdp), out);
            self.stable_again(out);
        }
    }

    /// `ApplyAnswer` succeeded.
    pub fn answer_applied(&mut self, out: &mut Out) {
        if !self.setting_remote_answer {
            return;
        }
        self.setting_remote_answer = false;
        self.restarting = false;
        self.stable_again(out);
    }

    /// Whether `offer` comes from another connection of theirs than the one this negotiation
    /// has heard from: they closed theirs and called again. Applied to this connection, its
    /// m-lines would not fit ours, and the browser would refuse it.
    pub fn from_another_connection(&self, offer: &str) -> bool {
        let known = self.remote_origin.as_deref().and_then(session_of);
        match (known, origin(offer).and_then(session_of)) {
            (Some(known), Some(theirs)) => known != theirs,
            _ => false,
        }
    }

    /// Their offer.
    pub fn remote_offer(&mut self, sdp: String, out: &mut Out) {
        if self.remote_offer.as_deref() == Some(sdp.as_str()) {
            // The same offer again: they did not get our answer (or are making sure).
            // Answered already, whatever we have done since (an offer of ours may be out: the
            // repeat is no collision, and applying it would roll ours back while the other
            // side answers it, and the two would disagree on the m-lines).
            match self.signaling {
                Signaling::HaveRemoteOffer => return, // The answer is on its way.
                Signaling::Stable | Signaling::HaveLocalOffer if self.last_answer.is_some() => {
                    for signal in self.repeat(self.last_answer.clone().map(Signal::Answer)) {
                        self.signal(signal, out);
                    }
                    return;
                }
                _ => {}
            }
        }
        let ready = !self.making_offer
            && (self.signaling == Signaling::Stable || self.setting_remote_answer);
        if !ready && !self.polite {
            // Ignored (the W3C's `ignoreOffer`): the polite side rolls back and answers ours.
            return;
        }
        // Polite: the browser rolls back an offer of ours and applies theirs.
        self.signaling = Signaling::HaveRemoteOffer;
        self.making_offer = false;
        self.setting_remote_answer = false;
        self.restarting = false;
        self.remote_offer = Some(sdp.clone());
        self.remote_origin = origin(&sdp).map(str::to_owned);
        self.remote_fingerprint = verify::fingerprint(&sdp);
        self.last_answer = None;
        out.push(Effect::ApplyOffer {
            conn: self.conn,
            sdp,
        });
    }

    /// Their answer.
    pub fn remote_answer(&mut self, sdp: String, out: &mut Out) {
        // An answer to an earlier offer of ours (sent twice while the network was slow) can
        // arrive after a newer offer: its m-lines would not match, and the browser would refuse
        // it and end the call. The answer to this offer is on its way.
        // The same answer twice (the other side answered our repeated offer again) can arrive
        // after a newer offer with the same m-lines (an ICE restart): its origin line (their
        // session and its version) is the one already applied. Applied again, we would take
        // it for the answer to the new offer while they answer it for real later, having
        // rolled back an offer of theirs that we then accept (a CI run of the matrix test,
        // 2026-12-07: the next offer's m-lines no longer matched, and the call was closed).
        let applied_before =
            origin(&sdp).is_some() && origin(&sdp) == self.remote_origin.as_deref();
        let answers_ours = !applied_before
            && self
                .last_offer
                .as_deref()
                .is_some_and(|offer| mids(offer) == mids(&sdp));
        if self.signaling == Signaling::HaveLocalOffer
            && !self.setting_remote_answer
            && answers_ours
        {
            self.setting_remote_answer = true;
            self.remote_origin = origin(&sdp).map(str::to_owned);
            self.remote_fingerprint = verify::fingerprint(&sdp);
            out.push(Effect::ApplyAnswer {
                conn: self.conn,
                sdp,
            });
        }
        // Otherwise a stale answer (to an offer rolled back or already answered).
    }

    /// Their candidate: added now, or once a remote description (or our restart's answer) is
    /// in place.
    pub fn remote_candidate(&mut self, candidate: IceCandidate, out: &mut Out) {
        if self.remote_set && !self.restarting {
            out.push(Effect::AddCandidate {
                conn: self.conn,
                candidate,
            });
        } else {
            self.pending.push(candidate);
        }
    }

    /// Our candidate: sent, and kept to go again with a repeated offer or answer.
    pub fn local_candidate(&mut self, candidate: IceCandidate, out: &mut Out) {
        if self.local_candidates.len() >= KEPT_SIGNALS {
            self.local_candidates.remove(0);
        }
        self.local_candidates.push(candidate.clone());
        self.signal(Signal::Candidate(candidate), out);
    }

    /// A STUN or TURN server refused our credentials.
    pub fn turn_refused(&mut self, url: String) {
        self.turn_refused = Some(url);
    }

    /// Back to stable with a remote description in place: the candidates that waited go in,
    /// and our offer needs no resending.
    fn stable_again(&mut self, out: &mut Out) {
        let conn = self.conn;
        self.signaling = Signaling::Stable;
        self.remote_set = true;
        self.last_offer = None;
        self.offer_resends = 0;
        out.cancel(Timer::AnswerDue(conn));
        for candidate in std::mem::take(&mut self.pending) {
            out.push(Effect::AddCandidate { conn, candidate });
        }
    }

    /// Tells the other side something now, or as soon as there is a route.
    fn signal(&mut self, signal: Signal, out: &mut Out) {
        match self.route {
            Some(to) => out.push(Effect::Send(signal.to_peer(to))),
            None => {
                if self.unsent.len() >= KEPT_SIGNALS {
                    self.unsent.remove(0);
                }
                self.unsent.push(signal);
            }
        }
    }

    /// A description again, with our candidates.
    fn repeat(&self, description: Option<Signal>) -> Vec<Signal> {
        let Some(description) = description else {
            return Vec::new();
        };
        std::iter::once(description)
            .chain(self.local_candidates.iter().cloned().map(Signal::Candidate))
            .collect()
    }

    /// The other side may have missed what we said (the relay, or they, were away): our
    /// unanswered offer with its candidates (anything older is moot), or else what waited.
    pub fn catch_up(&mut self, out: &mut Out) {
        let Some(to) = self.route else {
            return;
        };
        let signals = if self.signaling == Signaling::HaveLocalOffer {
            self.unsent.clear();
            self.repeat(self.last_offer.clone().map(Signal::Offer))
        } else {
            std::mem::take(&mut self.unsent)
        };
        for signal in signals {
            out.push(Effect::Send(signal.to_peer(to)));
        }
    }

    /// The browser's connection state changed.
    pub fn state_changed(
        &mut self,
        state: ConnState,
        timing: &Timing,
        setup: IceSetup,
        out: &mut Out,
    ) {
        let conn = self.conn;
        self.state = state;
        match state {
            ConnState::Connected => {
                self.tile = TileState::Connected;
                self.ever_connected = true;
                out.note(Note::Connected);
                for timer in [
                    Timer::Disconnected(conn),
                    Timer::Lost(conn),
                    Timer::RestartDue(conn),
                    Timer::ConnectDue(conn),
                ] {
                    out.cancel(timer);
                }
            }
            ConnState::Disconnected => {
                if self.tile == TileState::Connected {
                    self.tile = TileState::Reconnecting;
                }
                // The network may have changed under us: the restart's offer needs a relay
                // connection that works.
                out.note(Note::ProbeRelay);
                out.start(Timer::Disconnected(conn), timing.disconnected_ms);
                if !out.running(Timer::Lost(conn)) {
                    out.start(Timer::Lost(conn), timing.lost_ms);
                }
            }
            ConnState::Failed => {
                out.note(Note::ProbeRelay);
                if self.ever_connected {
                    self.tile = TileState::Reconnecting;
                } else {
                    // Never connected: no path exists. Say why, and what to do next; the ICE
                    // restart below tries once more meanwhile.
                    out.note(Note::Trouble(self.no_path_advice(setup)));
                }
                out.cancel(Timer::Disconnected(conn));
                if !out.running(Timer::Lost(conn)) {
                    out.start(Timer::Lost(conn), timing.lost_ms);
                }
                self.restart_ice(false, timing, out);
            }
            ConnState::New | ConnState::Connecting | ConnState::Closed => {}
        }
    }

    /// Restarts ICE now if we are the impolite side (or `now`); the polite side gives the
    /// other side [`Timing::restart_grace_ms`] to do it first.
    pub fn restart_ice(&mut self, now: bool, timing: &Timing, out: &mut Out) {
        let conn = self.conn;
        if self.tile == TileState::Lost {
            return;
        }
        if self.polite && !now {
            if !out.running(Timer::RestartDue(conn)) {
                out.start(Timer::RestartDue(conn), timing.restart_grace_ms);
            }
            return;
        }
        out.cancel(Timer::RestartDue(conn));
        self.restarting = true;
        // The restart gathers new candidates; the old ones are of no use to the other side.
        self.local_candidates.clear();
        out.push(Effect::RestartIce { conn });
    }

    /// One of its timers went off (it was running).
    pub fn timer(&mut self, timer: Timer, timing: &Timing, setup: IceSetup, out: &mut Out) {
        let conn = self.conn;
        match timer {
            Timer::RestartDue(_) => {
                if self.state != ConnState::Connected {
                    self.restart_ice(true, timing, out);
                }
            }
            Timer::ConnectDue(_) => {
                // Failed and disconnected connections have restarts of their own.
                if matches!(self.state, ConnState::New | ConnState::Connecting) {
                    if !out.running(Timer::Lost(conn)) {
                        out.start(Timer::Lost(conn), timing.lost_ms);
                    }
                    self.restart_ice(false, timing, out);
                }
            }
            Timer::AnswerDue(_) => {
                if self.signaling != Signaling::HaveLocalOffer {
                    return;
                }
                self.offer_resends += 1;
                let ms = timing
                    .answer_due_ms
                    .saturating_mul(1 << self.offer_resends.min(3));
                self.catch_up(out);
                out.start(Timer::AnswerDue(conn), ms);
            }
            Timer::Disconnected(_) => {
                if self.state == ConnState::Disconnected {
                    self.restart_ice(false, timing, out);
                }
            }
            Timer::Lost(_) => {
                self.tile = TileState::Lost;
                let text = if self.ever_connected {
                    Text::ConnectionLost
                } else {
                    self.no_path_advice(setup)
                };
                out.cancel(Timer::Disconnected(conn));
                out.cancel(Timer::RestartDue(conn));
                out.note(Note::Trouble(text));
            }
            Timer::Reconnect
            | Timer::Heartbeat
            | Timer::PongDue
            | Timer::Reaction(_)
            | Timer::ReactGap
            | Timer::Knock => {}
        }
    }

    /// What to tell the person about a call that never connected: ICE advice if the two pages
    /// did exchange descriptions; otherwise the network is not the problem (on one machine a
    /// firewall would be wrong advice), the other page never answered.
    fn no_path_advice(&self, setup: IceSetup) -> Text {
        if self.remote_set || self.turn_refused.is_some() {
            Text::NoPath {
                setup,
                turn_refused: self.turn_refused.clone(),
            }
        } else {
            Text::NeverAnswered
        }
    }

    /// An effect on the connection failed. The browser refusing the offer of a renegotiation
    /// leaves the connection as it was negotiated, and the call goes on: Chrome refuses its own
    /// next offer after it rolled one back to answer Firefox's ("A BUNDLE group contains a
    /// codec collision for header extension id=6", seen in rooms of three with a Firefox page),
    /// and closing the call then left Firefox with a connection nobody answered. Anything else
    /// ends the call, with words for the person (the browser's own words, `_why`, are in the
    /// call log: an exception's text helps a bug report, not the person).
    pub fn failed(&mut self, _why: String, out: &mut Out) {
        if self.making_offer && self.remote_set {
            self.making_offer = false;
            return;
        }
        out.note(Note::Failed(Text::CallFailed));
    }
}
