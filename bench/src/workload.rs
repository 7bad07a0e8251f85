//! The messages of the workload: SDP-looking offers and answers, ICE candidates, and the marker
//! embedded in each one so that the receiver can tell which pair and side sent it, in which
//! order, and when it was (scheduled to be) sent.
//!
//! One exchange is what a call's setup puts through a relay: side A sends an offer and five
//! candidates, side B an answer and five candidates (12 messages). A peer's `seq`-th message is
//! fixed by `seq` alone ([`kind_at`], [`sdp_size_at`]), so every relay gets the same mix.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Messages one side sends per exchange: one offer or answer, then five candidates.
pub const EXCHANGE_LEN: u64 = 6;

/// The lengths of the SDP texts, in bytes, cycled through exchange by exchange.
pub const SDP_SIZES: [usize; 4] = [3_200, 4_000, 4_900, 5_800];

/// Which end of a pair: A offers, B answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller: sends offers.
    A,
    /// The callee: sends answers.
    B,
}

impl Side {
    /// The other end of the pair.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `"a"` or `"b"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }

    fn code(self) -> u8 {
        self.as_str().as_bytes()[0]
    }
}

/// What a signaling message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// A trickled ICE candidate.
    Candidate,
}

impl Kind {
    /// The message type as the relays spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::Answer => "answer",
            Kind::Candidate => "candidate",
        }
    }

    fn code(self) -> u8 {
        self.as_str().as_bytes()[0]
    }
}

/// The kind of `side`'s `seq`-th message.
pub fn kind_at(side: Side, seq: u64) -> Kind {
    match (seq % EXCHANGE_LEN, side) {
        (0, Side::A) => Kind::Offer,
        (0, Side::B) => Kind::Answer,
        _ => Kind::Candidate,
    }
}

/// Which of [`SDP_SIZES`] the `seq`-th message uses, if it is an offer or answer.
pub fn sdp_size_at(seq: u64) -> usize {
    // The modulo keeps the value below SDP_SIZES.len(): the cast cannot truncate.
    ((seq / EXCHANGE_LEN) % SDP_SIZES.len() as u64) as usize
}

/// The length of an encoded [`Marker`].
pub const MARKER_LEN: usize = 43;

/// What a template holds where the marker goes. Only characters that JSON never escapes, so the
/// marker survives any number of encodings unchanged (socket.io's seed page encodes twice).
pub const PLACEHOLDER: &str = "#bm:000000:a:o:0000000000:0000000000000000#";

const PREFIX: &[u8] = b"#bm:";

static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(PREFIX));

/// Who sent a message, its place in the sender's stream, and when it was due to be sent.
///
/// Encoded as `#bm:PPPPPP:S:K:QQQQQQQQQQ:TTTTTTTTTTTTTTTT#` (pair, side, kind, seq, nanoseconds
/// since the run's epoch), fixed width so that templates can be filled without re-encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The pair's index.
    pub pair: u32,
    /// The sending side.
    pub side: Side,
    /// What the message is.
    pub kind: Kind,
    /// The sender's message number, from 0, per direction.
    pub seq: u64,
    /// When the message was due to be sent, in nanoseconds since the generator's epoch.
    pub sent_ns: u64,
}

fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        // value % 10 is a single digit.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn digits(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

impl Marker {
    /// The marker's fixed-width text.
    pub fn encode(&self) -> [u8; MARKER_LEN] {
        let mut out = [0u8; MARKER_LEN];
        out.copy_from_slice(PLACEHOLDER.as_bytes());
        put_digits(&mut out[4..10], u64::from(self.pair));
        out[11] = self.side.code();
        out[13] = self.kind.code();
        put_digits(&mut out[15..25], self.seq);
        put_digits(&mut out[26..42], self.sent_ns);
        out
    }

    /// Appends the marker's text to `out`.
    pub fn push_to(&self, out: &mut String) {
        let encoded = self.encode();
        out.push_str(std::str::from_utf8(&encoded).expect("the marker is ASCII"));
    }

    /// Finds and decodes the first marker in `text`.
    pub fn find(text: &str) -> Option<Marker> {
        let bytes = text.as_bytes();
        let at = FINDER.find(bytes)?;
        Marker::decode(bytes.get(at..at + MARKER_LEN)?)
    }

    /// Decodes a marker's text.
    pub fn decode(b: &[u8]) -> Option<Marker> {
        if b.len() != MARKER_LEN || !b.starts_with(PREFIX) || b[MARKER_LEN - 1] != b'#' {
            return None;
        }
        let side = match b[11] {
            b'a' => Side::A,
            b'b' => Side::B,
            _ => return None,
        };
        let kind = match b[13] {
            b'o' => Kind::Offer,
            b'a' => Kind::Answer,
            b'c' => Kind::Candidate,
            _ => return None,
        };
        Some(Marker {
            pair: u32::try_from(digits(&b[4..10])?).ok()?,
            side,
            kind,
            seq: digits(&b[15..25])?,
            sent_ns: digits(&b[26..42])?,
        })
    }
}

/// An SDP-looking session description of about `target_len` bytes with `marker` in its `s=`
/// line, shaped like what a browser produces for one audio and one video track.
pub fn sdp_text(kind: Kind, target_len: usize, marker: &str) -> String {
    let setup = if kind == Kind::Offer {
        "actpass"
    } else {
        "active"
    };
    let mut sdp = String::with_capacity(target_len + 512);
    let lines = [
        "v=0".to_owned(),
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1".to_owned(),
        format!("s={marker}"),
        "t=0 0".to_owned(),
        "a=group:BUNDLE 0 1".to_owned(),
        "a=extmap-allow-mixed".to_owned(),
        "a=msid-semantic: WMS 5f0c1b6e-2bd4-4b8e-9b53-6f1f8a7c2d11".to_owned(),
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126".to_owned(),
        "c=IN IP4 127.0.0.1".to_owned(),
        "a=rtcp:9 IN IP4 127.0.0.1".to_owned(),
        "a=ice-ufrag:Yx3T".to_owned(),
        "a=ice-pwd:0ZBlN4lY0qW3ZkIxAGZ2sPMS".to_owned(),
        "a=ice-options:trickle".to_owned(),
        "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08".to_owned(),
        format!("a=setup:{setup}"),
        "a=mid:0".to_owned(),
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned(),
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid".to_owned(),
        "a=sendrecv".to_owned(),
        "a=msid:5f0c1b6e-2bd4-4b8e-9b53-6f1f8a7c2d11 1b7a3c22-9d9e-4c55-8f0e-0c1f3e4b5a6d".to_owned(),
        "a=rtcp-mux".to_owned(),
        "a=rtpmap:111 opus/48000/2".to_owned(),
        "a=rtcp-fb:111 transport-cc".to_owned(),
        "a=fmtp:111 minptime=10;useinbandfec=1".to_owned(),
        "a=rtpmap:63 red/48000/2".to_owned(),
        "a=fmtp:63 111/111".to_owned(),
        "a=rtpmap:9 G722/8000".to_owned(),
        "a=rtpmap:0 PCMU/8000".to_owned(),
        "a=rtpmap:8 PCMA/8000".to_owned(),
        "a=rtpmap:13 CN/8000".to_owned(),
        "a=rtpmap:110 telephone-event/48000".to_owned(),
        "a=rtpmap:126 telephone-event/8000".to_owned(),
        "a=ssrc:2797433514 cname:q0x1TSyf3vJ0tQ7c".to_owned(),
        "a=ssrc:2797433514 msid:5f0c1b6e-2bd4-4b8e-9b53-6f1f8a7c2d11 1b7a3c22-9d9e-4c55-8f0e-0c1f3e4b5a6d".to_owned(),
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107 108 109 127 125".to_owned(),
        "c=IN IP4 127.0.0.1".to_owned(),
        "a=rtcp:9 IN IP4 127.0.0.1".to_owned(),
        "a=ice-ufrag:Yx3T".to_owned(),
        "a=ice-pwd:0ZBlN4lY0qW3ZkIxAGZ2sPMS".to_owned(),
        "a=ice-options:trickle".to_owned(),
        format!("a=setup:{setup}"),
        "a=mid:1".to_owned(),
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset".to_owned(),
        "a=extmap:13 urn:3gpp:video-orientation".to_owned(),
        "a=sendrecv".to_owned(),
        "a=rtcp-mux".to_owned(),
        "a=rtcp-rsize".to_owned(),
    ];
    for line in &lines {
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    // Video codecs, each with its feedback and retransmission lines, until the text is as long
    // as asked; real offers differ in length mostly by how many codecs they list.
    let codecs = ["VP8", "VP9", "H264", "AV1", "H265"];
    let mut payload_type = 96u32;
    while sdp.len() < target_len {
        let codec = codecs[(payload_type as usize / 2) % codecs.len()];
        let lines = [
            format!("a=rtpmap:{payload_type} {codec}/90000"),
            format!("a=rtcp-fb:{payload_type} goog-remb"),
            format!("a=rtcp-fb:{payload_type} transport-cc"),
            format!("a=rtcp-fb:{payload_type} ccm fir"),
            format!("a=rtcp-fb:{payload_type} nack"),
            format!("a=rtcp-fb:{payload_type} nack pli"),
            format!(
                "a=fmtp:{payload_type} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            ),
            format!("a=rtpmap:{} rtx/90000", payload_type + 1),
            format!("a=fmtp:{} apt={payload_type}", payload_type + 1),
        ];
        for line in &lines {
            sdp.push_str(line);
            sdp.push_str("\r\n");
        }
        payload_type += 2;
    }
    sdp
}

/// The candidate lines one side trickles per exchange, `{marker}` standing for the marker.
const CANDIDATES: [&str; 5] = [
    "candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 ufrag {marker} network-id 1 network-cost 10",
    "candidate:1467250027 2 udp 2122260222 127.0.0.1 46244 typ host generation 0 ufrag {marker} network-id 1 network-cost 10",
    "candidate:435653019 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active generation 0 ufrag {marker} network-id 1",
    "candidate:842163049 1 udp 1686052607 127.0.0.1 46243 typ srflx raddr 127.0.0.1 rport 46243 generation 0 ufrag {marker}",
    "candidate:3020425487 1 udp 41885439 127.0.0.1 3478 typ relay raddr 127.0.0.1 rport 46243 generation 0 ufrag {marker}",
];

/// The `index`-th candidate line of an exchange (0 to 4) with `marker` in its `ufrag`.
pub fn candidate_text(index: usize, marker: &str) -> String {
    CANDIDATES[index % CANDIDATES.len()].replace("{marker}", marker)
}

/// One encoded frame with a hole where the marker goes, so that sending a message costs two
/// copies and no JSON encoding.
#[derive(Clone, Debug)]
pub struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    /// Splits an encoded frame at its one [`PLACEHOLDER`].
    pub fn new(frame: &str) -> Template {
        let at = frame
            .find(PLACEHOLDER)
            .expect("the frame holds the marker placeholder");
        assert!(
            !frame[at + MARKER_LEN..].contains(PLACEHOLDER),
            "the frame holds the marker placeholder twice"
        );
        Template {
            prefix: frame[..at].to_owned(),
            suffix: frame[at + MARKER_LEN..].to_owned(),
        }
    }

    /// The frame with `marker` filled in.
    pub fn render(&self, marker: &Marker) -> String {
        let mut out = String::with_capacity(self.len());
        out.push_str(&self.prefix);
        marker.push_to(&mut out);
        out.push_str(&self.suffix);
        out
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.prefix.len() + MARKER_LEN + self.suffix.len()
    }

    /// Whether the frame is empty (it never is: it holds at least the marker).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What one side of one pair sends, already encoded for one relay.
#[derive(Clone, Debug)]
pub struct Script {
    pair: u32,
    side: Side,
    /// One offer (side A) or answer (side B) per entry of [`SDP_SIZES`].
    sdp: Vec<Template>,
    /// One per candidate of an exchange.
    candidates: Vec<Template>,
}

/// A message payload, before a relay's framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// An offer or answer with its SDP text.
    Sdp(Kind, String),
    /// A candidate line.
    Candidate(String),
}

impl Script {
    /// Builds `side`'s script for `pair`; `encode` frames a payload for the relay under test.
    pub fn new(pair: u32, side: Side, encode: impl Fn(&Payload) -> String) -> Script {
        let sdp_kind = kind_at(side, 0);
        let sdp = SDP_SIZES
            .iter()
            .map(|&size| {
                Template::new(&encode(&Payload::Sdp(
                    sdp_kind,
                    sdp_text(sdp_kind, size, PLACEHOLDER),
                )))
            })
            .collect();
        let candidates = (0..CANDIDATES.len())
            .map(|i| Template::new(&encode(&Payload::Candidate(candidate_text(i, PLACEHOLDER)))))
            .collect();
        Script {
            pair,
            side,
            sdp,
            candidates,
        }
    }

    /// The `seq`-th frame, stamped as due at `sent_ns`.
    pub fn render(&self, seq: u64, sent_ns: u64) -> String {
        let kind = kind_at(self.side, seq);
        let marker = Marker {
            pair: self.pair,
            side: self.side,
            kind,
            seq,
            sent_ns,
        };
        self.template(seq).render(&marker)
    }

    fn template(&self, seq: u64) -> &Template {
        match kind_at(self.side, seq) {
            Kind::Candidate => {
                // The remainder is below EXCHANGE_LEN: the cast cannot truncate.
                let index = (seq % EXCHANGE_LEN) as usize - 1;
                &self.candidates[index % self.candidates.len()]
            }
            _ => &self.sdp[sdp_size_at(seq)],
        }
    }

    /// The mean frame length over one full cycle of the script, in bytes.
    pub fn mean_frame_len(&self) -> f64 {
        let cycle = EXCHANGE_LEN * SDP_SIZES.len() as u64;
        let total: usize = (0..cycle).map(|seq| self.template(seq).len()).sum();
        total as f64 / cycle as f64
    }

    /// The range of frame lengths of the offers or answers, in bytes.
    pub fn sdp_frame_lens(&self) -> (usize, usize) {
        let lens = self.sdp.iter().map(Template::len);
        (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
    }

    /// The range of frame lengths of the candidates, in bytes.
    pub fn candidate_frame_lens(&self) -> (usize, usize) {
        let lens = self.candidates.iter().map(Template::len);
        (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_json_twice() {
        assert_eq!(PLACEHOLDER.len(), MARKER_LEN);
        let marker = Marker {
            pair: 49,
            side: Side::B,
            kind: Kind::Answer,
            seq: 1_234_567,
            sent_ns: 98_765_432_101,
        };
        let mut text = String::new();
        marker.push_to(&mut text);
        let once = serde_json::to_string(&text).expect("a string encodes");
        let twice = serde_json::to_string(&once).expect("a string encodes");
        assert_eq!(Marker::find(&twice), Some(marker));
        assert_eq!(Marker::find("no marker here"), None);
    }

    #[test]
    fn the_mix_is_one_sdp_and_five_candidates_per_side() {
        let kinds: Vec<Kind> = (0..EXCHANGE_LEN).map(|seq| kind_at(Side::A, seq)).collect();
        assert_eq!(kinds[0], Kind::Offer);
        assert!(kinds[1..].iter().all(|&k| k == Kind::Candidate));
        assert_eq!(kind_at(Side::B, EXCHANGE_LEN), Kind::Answer);
        for &size in &SDP_SIZES {
            let sdp = sdp_text(Kind::Offer, size, PLACEHOLDER);
            assert!((size..size + 400).contains(&sdp.len()), "{}", sdp.len());
            assert!((3_000..=6_200).contains(&sdp.len()));
        }
        let candidate = candidate_text(0, PLACEHOLDER);
        assert!(
            (120..=220).contains(&candidate.len()),
            "{}",
            candidate.len()
        );
    }

    #[test]
    fn scripts_render_the_marker_of_each_message() {
        let script = Script::new(7, Side::A, |payload| match payload {
            Payload::Sdp(kind, sdp) => format!("{}:{sdp}", kind.as_str()),
            Payload::Candidate(line) => format!("candidate:{line}"),
        });
        for seq in 0..30 {
            let frame = script.render(seq, 1_000 + seq);
            let marker = Marker::find(&frame).expect("the frame has a marker");
            assert_eq!(marker.pair, 7);
            assert_eq!(marker.side, Side::A);
            assert_eq!(marker.seq, seq);
            assert_eq!(marker.sent_ns, 1_000 + seq);
            assert_eq!(marker.kind, kind_at(Side::A, seq));
            assert!(frame.starts_with(marker.kind.as_str()));
        }
    }
}
