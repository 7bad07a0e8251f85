//! Which transceiver carries our camera and microphone: decided here, on a plain description of
//! a connection's transceivers, and carried out by the browser layer (`peer.rs`) and by the
//! simulated browser of the engine's tests alike.
//!
//! The rule that matters: a transceiver that an offer of the other side left without an m-line
//! (we added it for an offer of our own that was rolled back in a collision, before the camera
//! opened: `addTransceiver` ones are never matched to a remote offer's m-lines, only `addTrack`
//! ones are) is made **inactive**, never stopped. Chrome keeps a transceiver stopped before it
//! was ever negotiated "stopping" for good, and its negotiation-needed check stays true, so
//! the page made a new offer after every answer, forever (40 a second, seen in rooms of three
//! with two `#true` pages). An inactive one is negotiated once, as an m-line that carries
//! nothing, and the connection is quiet after that.

/// `audio` or `video`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A microphone.
    Audio,
    /// A camera or a screen.
    Video,
}

impl Kind {
    /// The browser's name for it (`MediaStreamTrack.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }

    /// The kind the browser names `kind`, if it is one of ours.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "audio" => Some(Self::Audio),
            "video" => Some(Self::Video),
            _ => None,
        }
    }
}

/// `RTCRtpTransceiver.direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Sends only.
    SendOnly,
    /// Receives only.
    RecvOnly,
    /// Neither.
    Inactive,
    /// Stopped (or stopping).
    Stopped,
}

/// What the policy needs to know of one transceiver, in `getTransceivers()` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transceiver {
    /// What it carries.
    pub kind: Kind,
    /// Its m-line's `a=mid`, once negotiated.
    pub mid: Option<String>,
    /// What we asked of it.
    pub direction: Direction,
    /// Its sender has a track.
    pub sending: bool,
}

/// Something to do to the transceiver at an index of the list given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Put our track of its kind on its sender (`replaceTrack`: no negotiation).
    SendTrack(usize),
    /// Change its direction.
    SetDirection(usize, Direction),
    /// Take its track off (`replaceTrack(null)`) and make it inactive: it is not needed.
    Retire(usize),
    /// No transceiver can take our track of this kind: `addTrack` (a negotiation follows).
    AddTrack(Kind),
}

/// The transceiver of `kind` that carries our media: the one with the lowest negotiated mid
/// that is neither stopped nor made inactive (m-line order is the one thing both sides agree
/// on; `getTransceivers()` order is creation order, which differs between the two sides).
fn carrier(transceivers: &[Transceiver], kind: Kind) -> Option<usize> {
    transceivers
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.kind == kind && !matches!(t.direction, Direction::Stopped | Direction::Inactive)
        })
        .filter_map(|(i, t)| Some((i, mid_order(t.mid.as_deref()?))))
        .min_by(|(_, a), (_, b)| a.cmp(b))
        .map(|(i, _)| i)
}

/// Mids are numbers in Chrome and Firefox; anything else sorts after them, by text.
fn mid_order(mid: &str) -> (u64, String) {
    match mid.parse() {
        Ok(n) => (n, String::new()),
        Err(_) => (u64::MAX, mid.to_owned()),
    }
}

/// After the other side's offer is applied, before the answer is made: for each kind, its
/// carrier sends and receives, with our track if we have one of that kind (`tracks`: whether
/// we have audio, video); a transceiver the offer left without an m-line, of a kind that has a
/// carrier, is retired: inactive (see the module's words on why never stopped), and without
/// its track if it had one (the carrier sends it: sent twice, the camera would cost twice the
/// bandwidth). One of a kind the offer has no m-line for stays, to be negotiated next.
pub fn after_remote_offer(transceivers: &[Transceiver], tracks: [bool; 2]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, t) in transceivers.iter().enumerate() {
        let live = !matches!(t.direction, Direction::Stopped | Direction::Inactive);
        if t.mid.is_none() && live && carrier(transceivers, t.kind).is_some() {
            steps.push(Step::Retire(i));
        }
    }
    for (kind, have) in [(Kind::Audio, tracks[0]), (Kind::Video, tracks[1])] {
        let Some(i) = carrier(transceivers, kind) else {
            continue;
        };
        let t = &transceivers[i];
        if t.direction == Direction::RecvOnly {
            steps.push(Step::SetDirection(i, Direction::SendRecv));
        }
        if have && !t.sending {
            steps.push(Step::SendTrack(i));
        }
    }
    steps
}

/// Our camera and microphone opened after the connection was made: each track goes on the
/// carrier of its kind if that sends nothing yet (no negotiation while it is send-receive), or
/// on a transceiver not yet negotiated that waits for one; otherwise it is added.
pub fn camera_opened(transceivers: &[Transceiver], tracks: [bool; 2]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (kind, have) in [(Kind::Audio, tracks[0]), (Kind::Video, tracks[1])] {
        if !have {
            continue;
        }
        let free = carrier(transceivers, kind)
            .filter(|&i| !transceivers[i].sending)
            .or_else(|| {
                transceivers.iter().position(|t| {
                    t.kind == kind
                        && t.mid.is_none()
                        && !t.sending
                        && !matches!(t.direction, Direction::Stopped | Direction::Inactive)
                })
            });
        match free {
            Some(i) => {
                steps.push(Step::SendTrack(i));
                if transceivers[i].direction == Direction::RecvOnly {
                    steps.push(Step::SetDirection(i, Direction::SendRecv));
                }
            }
            None if carrier(transceivers, kind).is_some_and(|i| transceivers[i].sending) => {}
            None => steps.push(Step::AddTrack(kind)),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Kind, mid: Option<&str>, direction: Direction, sending: bool) -> Transceiver {
        Transceiver {
            kind,
            mid: mid.map(str::to_owned),
            direction,
            sending,
        }
    }

    #[test]
    fn leftovers_of_a_rolled_back_offer_are_made_inactive_never_stopped() {
        use Direction::*;
        // Ours from before the collision (no camera yet), then the offer's two.
        let list = [
            t(Kind::Audio, None, SendRecv, false),
            t(Kind::Video, None, SendRecv, false),
            t(Kind::Audio, Some("0"), RecvOnly, false),
            t(Kind::Video, Some("1"), RecvOnly, false),
        ];
        assert_eq!(
            after_remote_offer(&list, [true, true]),
            vec![
                Step::Retire(0),
                Step::Retire(1),
                Step::SetDirection(2, SendRecv),
                Step::SendTrack(2),
                Step::SetDirection(3, SendRecv),
                Step::SendTrack(3),
            ]
        );
        // Once negotiated (mids 3 and 4, inactive), they never carry the camera.
        let list = [
            t(Kind::Audio, Some("3"), Inactive, false),
            t(Kind::Video, Some("4"), Inactive, false),
            t(Kind::Audio, Some("0"), SendRecv, false),
            t(Kind::Video, Some("1"), SendRecv, false),
        ];
        assert_eq!(
            camera_opened(&list, [true, true]),
            vec![Step::SendTrack(2), Step::SendTrack(3)]
        );
        assert_eq!(after_remote_offer(&list, [false, false]), vec![]);
        // Ours had the camera already (put on after the offer was made): the carrier takes
        // it, and the leftover stops sending it.
        let list = [
            t(Kind::Video, None, SendRecv, true),
            t(Kind::Video, Some("1"), RecvOnly, false),
        ];
        assert_eq!(
            after_remote_offer(&list, [false, true]),
            vec![
                Step::Retire(0),
                Step::SetDirection(1, SendRecv),
                Step::SendTrack(1)
            ]
        );
        // An offer without video: our video transceiver stays, for the next negotiation.
        let list = [
            t(Kind::Video, None, SendRecv, true),
            t(Kind::Audio, Some("0"), RecvOnly, false),
        ];
        assert_eq!(
            after_remote_offer(&list, [true, true]),
            vec![Step::SetDirection(1, SendRecv), Step::SendTrack(1)]
        );
    }

    #[test]
    fn the_carrier_is_the_lowest_mid_of_its_kind() {
        use Direction::*;
        let list = [
            t(Kind::Video, Some("10"), SendRecv, false),
            t(Kind::Video, Some("2"), SendRecv, false),
            t(Kind::Audio, Some("1"), SendRecv, true),
        ];
        assert_eq!(
            after_remote_offer(&list, [true, true]),
            vec![Step::SendTrack(1)]
        );
        // Nothing of a kind to send on: the track is added.
        let list = [t(Kind::Audio, Some("0"), SendRecv, true)];
        assert_eq!(
            camera_opened(&list, [true, true]),
            vec![Step::AddTrack(Kind::Video)]
        );
        // A connection we call on, not yet negotiated: its own transceivers take the tracks.
        let list = [
            t(Kind::Audio, None, SendRecv, false),
            t(Kind::Video, None, SendRecv, false),
        ];
        assert_eq!(
            camera_opened(&list, [true, true]),
            vec![Step::SendTrack(0), Step::SendTrack(1)]
        );
    }
}
