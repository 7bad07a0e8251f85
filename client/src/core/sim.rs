//! A simulated `RTCPeerConnection` for the engine's tests, as Chrome and Firefox behave where the
//! engine's decisions depend on it: transceivers and their association with m-lines (only those
//! made by `addTrack` are taken over by a remote offer), rollback, the data channel's m-line, ICE
//! restarts, and `negotiationneeded` as the WebRTC specification's "update the negotiation-needed
//! flag" fires it: once per change, only while stable, again after each return to stable while
//! a negotiation is still needed, and re-checked when its task runs. Descriptions are small SDP
//! texts with the lines the engine reads (`a=mid:`, `a=fingerprint:`).
//!
//! Where the two browsers differ, both are modelled ([`Browser`]): Chrome keeps a transceiver
//! stopped before it was ever negotiated "stopping" for good, so that negotiation stays needed
//! (seen in Chrome 156: `direction` "stopped", `currentDirection` null, one offer after every
//! answer); the specification, and Firefox, let it go.

use super::transceivers::{self, Direction, Kind, Step, Transceiver};

/// Whose behaviour the simulated connection follows where they differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    /// Chromium 156.
    Chrome,
    /// Firefox ESR 153.
    Firefox,
}

/// `RTCPeerConnection.signalingState`, without the provisional answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signaling {
    /// Nothing outstanding.
    Stable,
    /// Our offer is set.
    HaveLocalOffer,
}

/// One m-line of a description.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Section {
    /// `audio`, `video` or `application`.
    kind: String,
    mid: String,
    direction: Direction,
}

/// A description, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Description {
    sdp: String,
    sections: Vec<Section>,
    ufrag: String,
}

impl Description {
    fn parse(sdp: &str) -> Self {
        let mut sections: Vec<Section> = Vec::new();
        let mut ufrag = String::new();
        for line in sdp.lines() {
            if let Some(kind) = line.strip_prefix("m=") {
                let kind = kind.split(' ').next().unwrap_or_default().to_owned();
                sections.push(Section {
                    kind,
                    mid: String::new(),
                    direction: Direction::SendRecv,
                });
            } else if let Some(mid) = line.strip_prefix("a=mid:") {
                if let Some(s) = sections.last_mut() {
                    s.mid = mid.to_owned();
                }
            } else if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
                ufrag = u.to_owned();
            } else if let Some(s) = sections.last_mut() {
                s.direction = match line {
                    "a=sendonly" => Direction::SendOnly,
                    "a=recvonly" => Direction::RecvOnly,
                    "a=inactive" => Direction::Inactive,
                    "a=stopped" => Direction::Stopped,
                    _ => s.direction,
                };
            }
        }
        Self {
            sdp: sdp.to_owned(),
            sections,
            ufrag,
        }
    }

    fn section(&self, mid: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.mid == mid)
    }
}

fn reverse(d: Direction) -> Direction {
    match d {
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        other => other,
    }
}

/// What both directions allow.
fn intersect(a: Direction, b: Direction) -> Direction {
    let bits = |d| match d {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        _ => (false, false),
    };
    if a == Direction::Stopped || b == Direction::Stopped {
        return Direction::Stopped;
    }
    let ((sa, ra), (sb, rb)) = (bits(a), bits(b));
    match (sa && sb, ra && rb) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

fn direction_line(d: Direction) -> &'static str {
    match d {
        Direction::SendRecv => "a=sendrecv",
        Direction::SendOnly => "a=sendonly",
        Direction::RecvOnly => "a=recvonly",
        Direction::Inactive => "a=inactive",
        Direction::Stopped => "a=stopped",
    }
}

/// One simulated transceiver.
#[derive(Clone, Debug)]
struct FakeTransceiver {
    kind: Kind,
    mid: Option<String>,
    /// The mid came from our offer, not yet answered: a rollback takes it back.
    provisional: bool,
    direction: Direction,
    sending: bool,
    /// Made by `addTrack`: a remote offer may take it over.
    by_track: bool,
    stopping: bool,
    stopped: bool,
}

/// A simulated `RTCPeerConnection`. Each call that changes what needs negotiating (making it,
/// a description applied, a track, a restart) is followed by the page queuing the browser's
/// negotiation-needed task ([`FakePc::negotiation_task`]), which looks when it runs.
#[derive(Debug)]
pub struct FakePc {
    browser: Browser,
    /// Where its descriptions say they come from (unique per connection).
    origin: String,
    /// The fingerprint its descriptions carry.
    fingerprint: String,
    pub signaling: Signaling,
    transceivers: Vec<FakeTransceiver>,
    data: bool,
    pending_local: Option<Description>,
    current_local: Option<Description>,
    current_remote: Option<Description>,
    /// `[[NegotiationNeeded]]`.
    flag: bool,
    /// `restartIce()` was called and no offer has carried new credentials yet.
    restart_pending: bool,
    ufrag: u32,
    version: u32,
    next_mid: u32,
    pub closed: bool,
    /// Offers set as local description, as the browser counts them.
    pub offers: u32,
    /// Chrome after rolling back its offer for Firefox's: see [`FakePc::answer_offer`].
    refuses_new_lines: bool,
}

impl FakePc {
    /// A new connection with the chat data channel (which every connection of ours makes at
    /// once), and, for one we call on, our audio and video: tracks if `camera` is open, else
    /// send-receive transceivers without tracks.
    pub fn new(
        browser: Browser,
        origin: String,
        fingerprint: u8,
        calling: bool,
        camera: bool,
    ) -> Self {
        let mut pc = Self {
            browser,
            origin,
            fingerprint: [fingerprint; 8]
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
            signaling: Signaling::Stable,
            transceivers: Vec::new(),
            data: true,
            pending_local: None,
            current_local: None,
            current_remote: None,
            flag: false,
            restart_pending: false,
            ufrag: 1,
            version: 0,
            next_mid: 0,
            closed: false,
            offers: 0,
            refuses_new_lines: false,
        };
        if calling {
            for kind in [Kind::Audio, Kind::Video] {
                pc.transceivers.push(FakeTransceiver {
                    kind,
                    mid: None,
                    provisional: false,
                    direction: Direction::SendRecv,
                    sending: camera,
                    by_track: camera,
                    stopping: false,
                    stopped: false,
                });
            }
        }
        pc
    }

    /// The current local description's SDP (both sides stable: the one in force).
    pub fn local(&self) -> Option<&str> {
        self.current_local.as_ref().map(|d| d.sdp.as_str())
    }

    /// The current remote description's SDP.
    pub fn remote(&self) -> Option<&str> {
        self.current_remote.as_ref().map(|d| d.sdp.as_str())
    }

    /// Whether a remote description is in place (candidates can be added).
    /// How many m-lines its negotiated descriptions have.
    pub fn lines(&self) -> usize {
        self.current_remote
            .as_ref()
            .or(self.current_local.as_ref())
            .map_or(0, |d| d.sections.len())
    }

    pub fn has_remote(&self) -> bool {
        self.current_remote.is_some()
    }

    fn views(&self) -> Vec<Transceiver> {
        self.transceivers
            .iter()
            .map(|t| Transceiver {
                kind: t.kind,
                mid: t.mid.clone(),
                direction: if t.stopping || t.stopped {
                    Direction::Stopped
                } else {
                    t.direction
                },
                sending: t.sending,
            })
            .collect()
    }

    fn apply(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::SendTrack(i) => self.transceivers[i].sending = true,
                Step::SetDirection(i, Direction::Stopped) => self.stop(i),
                Step::SetDirection(i, d) => self.transceivers[i].direction = d,
                Step::Retire(i) => {
                    self.transceivers[i].sending = false;
                    self.transceivers[i].direction = Direction::Inactive;
                }
                Step::AddTrack(kind) => self.transceivers.push(FakeTransceiver {
                    kind,
                    mid: None,
                    provisional: false,
                    direction: Direction::SendRecv,
                    sending: true,
                    by_track: true,
                    stopping: false,
                    stopped: false,
                }),
            }
        }
    }

    /// `transceiver.stop()`.
    pub fn stop(&mut self, i: usize) {
        let t = &mut self.transceivers[i];
        t.stopping = true;
        t.direction = Direction::Stopped;
        t.sending = false;
        // The specification (and Firefox) let a transceiver that was never negotiated go at
        // once; Chrome keeps it stopping.
        if t.mid.is_none() && self.browser == Browser::Firefox {
            t.stopped = true;
        }
    }

    /// The page's policy for transceivers after a remote offer, in the old shape: a
    /// transceiver left without an m-line and without a track is stopped. Kept to show what it
    /// did in Chrome.
    pub fn stop_leftovers(&mut self) {
        for i in 0..self.transceivers.len() {
            let t = &self.transceivers[i];
            if t.mid.is_none() && !t.sending && !t.stopping {
                self.stop(i);
            }
        }
    }

    /// The specification's "check if negotiation is needed".
    fn negotiation_needed(&self) -> bool {
        if self.restart_pending {
            return true;
        }
        let Some(local) = &self.current_local else {
            return self.data || !self.transceivers.is_empty();
        };
        if self.data && !local.sections.iter().any(|s| s.kind == "application") {
            return true;
        }
        let offer = self
            .current_remote
            .as_ref()
            .is_some_and(|r| r.sdp.contains("s=answer"));
        for t in &self.transceivers {
            if t.stopping && !t.stopped {
                return true;
            }
            if t.stopped {
                continue;
            }
            let Some(mid) = &t.mid else {
                return true;
            };
            let Some(section) = local.section(mid) else {
                return true;
            };
            let expected = if offer {
                t.direction
            } else {
                let offered = self
                    .current_remote
                    .as_ref()
                    .and_then(|r| r.section(mid))
                    .map_or(Direction::Inactive, |s| reverse(s.direction));
                intersect(t.direction, offered)
            };
            if section.direction != expected {
                return true;
            }
        }
        false
    }

    /// The task "update the negotiation-needed flag" queued: whether `negotiationneeded`
    /// fires now.
    pub fn negotiation_task(&mut self) -> bool {
        if self.closed || self.signaling != Signaling::Stable {
            return false;
        }
        if !self.negotiation_needed() {
            self.flag = false;
            return false;
        }
        if self.flag {
            return false;
        }
        self.flag = true;
        true
    }

    /// Back to stable: the flag is cleared, to be looked at again by the task the page
    /// queues.
    fn stable_again(&mut self) {
        self.signaling = Signaling::Stable;
        self.flag = false;
    }

    fn describe(&mut self, kind: &str, sections: &[Section]) -> Description {
        self.version += 1;
        let mut sdp = format!(
            "v=0\no=- {} {} IN IP4 0.0.0.0\ns={kind}\na=fingerprint:sha-256 {}\na=ice-ufrag:{}-{}\n\
             a=x-browser:{:?}\n",
            self.origin, self.version, self.fingerprint, self.origin, self.ufrag, self.browser
        );
        for s in sections {
            sdp.push_str(&format!(
                "m={} 9 X\na=mid:{}\n{}\n",
                s.kind,
                s.mid,
                direction_line(s.direction)
            ));
        }
        Description::parse(&sdp)
    }

    /// `setLocalDescription()` in stable: an offer of every transceiver and the data channel.
    pub fn make_offer(&mut self) -> Result<String, String> {
        if self.signaling != Signaling::Stable {
            // A browser would make a new offer; the engine never asks for one then.
            return Err("the engine asked for an offer off stable".into());
        }
        let adds_lines = self
            .transceivers
            .iter()
            .any(|t| t.mid.is_none() && !t.stopping && !t.stopped);
        if self.refuses_new_lines && adds_lines {
            return Err(
                "Failed to set local offer sdp: A BUNDLE group contains a codec \
                        collision for header extension id=6"
                    .into(),
            );
        }
        if self.restart_pending {
            self.ufrag += 1;
            self.restart_pending = false;
        }
        let mut sections = Vec::new();
        // The m-lines negotiated so far, in their order.
        if let Some(local) = self.current_local.clone() {
            for s in &local.sections {
                let direction = match self
                    .transceivers
                    .iter()
                    .find(|t| t.mid.as_deref() == Some(&s.mid))
                {
                    Some(t) if t.stopping || t.stopped => Direction::Stopped,
                    Some(t) => t.direction,
                    None => s.direction,
                };
                sections.push(Section {
                    direction,
                    ..s.clone()
                });
            }
        }
        let mut next_mid = self.next_mid.max(sections.len() as u32);
        for t in &mut self.transceivers {
            if t.mid.is_none() && !t.stopping && !t.stopped {
                t.mid = Some(next_mid.to_string());
                t.provisional = true;
                next_mid += 1;
                sections.push(Section {
                    kind: t.kind.as_str().to_owned(),
                    mid: t.mid.clone().unwrap_or_default(),
                    direction: t.direction,
                });
            }
        }
        if self.data && !sections.iter().any(|s| s.kind == "application") {
            sections.push(Section {
                kind: "application".into(),
                mid: next_mid.to_string(),
                direction: Direction::SendRecv,
            });
            next_mid += 1;
        }
        self.next_mid = next_mid;
        let offer = self.describe("offer", &sections);
        let sdp = offer.sdp.clone();
        self.pending_local = Some(offer);
        self.signaling = Signaling::HaveLocalOffer;
        self.offers += 1;
        Ok(sdp)
    }

    /// `setLocalDescription({type: "rollback"})`.
    fn rollback(&mut self) {
        self.pending_local = None;
        for t in &mut self.transceivers {
            if t.provisional {
                t.mid = None;
                t.provisional = false;
            }
        }
        self.signaling = Signaling::Stable;
    }

    /// What the page does with a remote offer: `setRemoteDescription(offer)` (rolling back an
    /// offer of ours), its transceiver policy (`old_policy`: stop what the offer left
    /// unmatched), the answer. Returns the answer's SDP.
    pub fn answer_offer(
        &mut self,
        sdp: &str,
        camera: bool,
        old_policy: bool,
    ) -> Result<String, String> {
        let rolled_back = self.signaling == Signaling::HaveLocalOffer;
        if rolled_back {
            self.rollback();
        }
        // Chrome, having rolled its offer back to answer Firefox's, refuses its own next offer
        // that adds m-lines: the header extension ids of its rolled-back offer collide with
        // Firefox's in the BUNDLE group.
        self.refuses_new_lines =
            self.browser == Browser::Chrome && rolled_back && sdp.contains("a=x-browser:Firefox");
        let offer = Description::parse(sdp);
        // Chrome: a subsequent offer keeps the m-lines negotiated so far, in their order (an
        // offer from another connection of the same page does not).
        if let Some(current) = self.current_remote.as_ref().or(self.current_local.as_ref()) {
            let lines = |d: &Description| -> Vec<(String, String)> {
                d.sections
                    .iter()
                    .map(|s| (s.kind.clone(), s.mid.clone()))
                    .collect()
            };
            let (before, now) = (lines(current), lines(&offer));
            if now.len() < before.len() || now[..before.len()] != before[..] {
                return Err(
                    "Failed to set remote offer sdp: The order of m-lines in subsequent \
                            offer doesn't match order from previous offer/answer."
                        .into(),
                );
            }
        }
        for s in &offer.sections {
            let Some(kind) = Kind::parse(&s.kind) else {
                continue;
            };
            if self
                .transceivers
                .iter()
                .any(|t| t.mid.as_deref() == Some(&s.mid))
            {
                continue;
            }
            if let Some(t) = self.transceivers.iter_mut().find(|t| {
                t.kind == kind && t.mid.is_none() && t.by_track && !t.stopping && !t.stopped
            }) {
                t.mid = Some(s.mid.clone());
                continue;
            }
            self.transceivers.push(FakeTransceiver {
                kind,
                mid: Some(s.mid.clone()),
                provisional: false,
                direction: Direction::RecvOnly,
                sending: false,
                by_track: false,
                stopping: false,
                stopped: false,
            });
        }
        let mids = offer
            .sections
            .iter()
            .filter_map(|s| s.mid.parse::<u32>().ok());
        self.next_mid = self.next_mid.max(mids.max().map_or(0, |m| m + 1));
        if old_policy {
            self.stop_leftovers();
            let tracks = [camera, camera];
            let steps = transceivers::after_remote_offer(&self.views(), tracks)
                .into_iter()
                .filter(|s| !matches!(s, Step::Retire(_)))
                .collect();
            self.apply(steps);
        } else {
            let steps = transceivers::after_remote_offer(&self.views(), [camera, camera]);
            self.apply(steps);
        }
        // The other side stopped these: ours stop with them.
        for section in offer
            .sections
            .iter()
            .filter(|s| s.direction == Direction::Stopped)
        {
            let ours = self
                .transceivers
                .iter_mut()
                .find(|t| t.mid.as_deref() == Some(&section.mid));
            if let Some(t) = ours {
                t.stopping = true;
                t.stopped = true;
            }
        }
        let sections: Vec<Section> = offer
            .sections
            .iter()
            .map(|s| {
                let ours = self
                    .transceivers
                    .iter()
                    .find(|t| t.mid.as_deref() == Some(&s.mid));
                let direction = match ours {
                    Some(t) if t.stopping || t.stopped => Direction::Stopped,
                    Some(t) => intersect(t.direction, reverse(s.direction)),
                    None => s.direction,
                };
                Section {
                    direction,
                    ..s.clone()
                }
            })
            .collect();
        // A remote ICE restart restarts ours too.
        if self
            .current_remote
            .as_ref()
            .is_some_and(|r| r.ufrag != offer.ufrag)
        {
            self.ufrag += 1;
            self.restart_pending = false;
        }
        let answer = self.describe("answer", &sections);
        let sdp = answer.sdp.clone();
        self.current_remote = Some(offer);
        self.current_local = Some(answer);
        // Ours that we were stopping are stopped once an answer says so.
        for t in &mut self.transceivers {
            let rejected = t
                .mid
                .as_deref()
                .and_then(|mid| answer_sections_stopped(&sections, mid));
            if t.stopping && rejected == Some(true) {
                t.stopped = true;
            }
        }
        self.stable_again();
        Ok(sdp)
    }

    /// `setRemoteDescription(answer)`.
    pub fn apply_answer(&mut self, sdp: &str) -> Result<(), String> {
        let Some(offer) = self.pending_local.take() else {
            return Err("InvalidStateError: no offer to answer".into());
        };
        let answer = Description::parse(sdp);
        for t in &mut self.transceivers {
            t.provisional = false;
            if t.stopping {
                if let Some(mid) = &t.mid {
                    if offer
                        .section(mid)
                        .is_some_and(|s| s.direction == Direction::Stopped)
                    {
                        t.stopped = true;
                    }
                }
            }
        }
        self.current_local = Some(offer);
        self.current_remote = Some(answer);
        self.stable_again();
        Ok(())
    }

    /// `restartIce()`.
    pub fn restart_ice(&mut self) {
        self.restart_pending = true;
    }

    /// The camera opened: the page puts it on the connection.
    pub fn camera_opened(&mut self) {
        let steps = transceivers::camera_opened(&self.views(), [true, true]);
        self.apply(steps);
    }

    /// A track of `kind` added (`addTrack`), as a change of media mid-call does.
    pub fn add_track(&mut self, kind: Kind) {
        self.apply(vec![Step::AddTrack(kind)]);
    }
}

/// Whether the section `mid` of `sections` is stopped, if there is one.
fn answer_sections_stopped(sections: &[Section], mid: &str) -> Option<bool> {
    sections
        .iter()
        .find(|s| s.mid == mid)
        .map(|s| s.direction == Direction::Stopped)
}
