//! What the page tells a person about the network path of a call, decided without the browser.
//!
//! The browser layer reads `getStats()` into [`StatEntry`]s and forwards ICE candidate errors;
//! everything here is plain Rust and unit-tested on the host (`cargo test -p client --lib`).

use protocol::IceServer;

/// How an ICE candidate reaches its owner, from the candidate's `candidateType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CandidateType {
    /// The device's own address: a direct path on one network.
    Host,
    /// An address learned by the other side from the checks themselves (behind a NAT).
    Prflx,
    /// The public address a STUN server saw: through a NAT.
    Srflx,
    /// An address on a TURN server that relays the media.
    Relay,
}

impl CandidateType {
    /// Parses `candidateType` as `getStats()` reports it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "host" => Some(Self::Host),
            "srflx" => Some(Self::Srflx),
            "prflx" => Some(Self::Prflx),
            "relay" => Some(Self::Relay),
            _ => None,
        }
    }

    /// The name `getStats()` uses, which is also the `data-path` of `#connectionPath`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// The path a call's media takes: the least direct of the selected pair's two candidates
/// (a relayed side makes the whole path relayed; a NAT on one side makes it go through NAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path(pub CandidateType);

impl Path {
    /// The path of a pair of candidates.
    pub fn of(local: CandidateType, remote: CandidateType) -> Self {
        Self(local.max(remote))
    }

    /// The `data-path` value: `host`, `srflx`, `prflx` or `relay`.
    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }
}

/// One entry of an `RTCStatsReport`, reduced to what finding the selected pair needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatEntry {
    /// `id`.
    pub id: String,
    /// `type`: `transport`, `candidate-pair`, `local-candidate`, `remote-candidate`, ...
    pub kind: String,
    /// `selectedCandidatePairId` of a transport.
    pub selected_pair_id: Option<String>,
    /// `localCandidateId` of a pair.
    pub local_candidate_id: Option<String>,
    /// `remoteCandidateId` of a pair.
    pub remote_candidate_id: Option<String>,
    /// `nominated` of a pair.
    pub nominated: bool,
    /// `selected` of a pair (Firefox's name for it).
    pub selected: bool,
    /// `state` of a pair: `succeeded`, `in-progress`, ...
    pub state: Option<String>,
    /// `candidateType` of a candidate.
    pub candidate_type: Option<String>,
    /// Counters of an `inbound-rtp` (0 where absent).
    pub bytes_received: f64,
    /// See [`StatEntry::bytes_received`].
    pub packets_received: f64,
    /// See [`StatEntry::bytes_received`] (it may go below zero with duplicates).
    pub packets_lost: f64,
    /// See [`StatEntry::bytes_received`]; video only.
    pub frames_decoded: f64,
    /// `bytesSent` of an `outbound-rtp`.
    pub bytes_sent: f64,
    /// `totalAudioEnergy` and `totalSamplesDuration` (seconds) of an audio `inbound-rtp`: how
    /// loud what came in was ([`crate::stats::Figures::level`]).
    pub audio_energy: f64,
    /// See [`StatEntry::audio_energy`].
    pub audio_s: f64,
    /// `currentRoundTripTime` of a candidate pair, in seconds.
    pub rtt_s: Option<f64>,
}

/// The path of the selected candidate pair in a stats report, if one is selected yet.
///
/// The transport's `selectedCandidatePairId` names it (Chrome, Safari); without one, a pair
/// marked `selected` (Firefox) or a nominated pair that succeeded stands in.
pub fn selected_path(stats: &[StatEntry]) -> Option<Path> {
    let by_id = |id: &str| stats.iter().find(|s| s.id == id);
    let pair = stats
        .iter()
        .filter(|s| s.kind == "transport")
        .find_map(|t| t.selected_pair_id.as_deref().and_then(by_id))
        .or_else(|| {
            let pairs = || stats.iter().filter(|s| s.kind == "candidate-pair");
            pairs().find(|p| p.selected).or_else(|| {
                pairs().find(|p| p.nominated && p.state.as_deref() == Some("succeeded"))
            })
        })?;
    let kind_of = |id: &Option<String>| {
        let candidate = by_id(id.as_deref()?)?;
        CandidateType::parse(candidate.candidate_type.as_deref()?)
    };
    Some(Path::of(
        kind_of(&pair.local_candidate_id)?,
        kind_of(&pair.remote_candidate_id)?,
    ))
}

/// What kind of ICE servers the page was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IceSetup {
    /// At least one `stun:` URL.
    pub stun: bool,
    /// At least one `turn:` or `turns:` URL.
    pub turn: bool,
}

impl IceSetup {
    /// Sorts the servers from `welcome` by kind.
    pub fn of(servers: &[IceServer]) -> Self {
        let urls = || servers.iter().flat_map(|s| &s.urls);
        Self {
            stun: urls().any(|u| u.starts_with("stun:") || u.starts_with("stuns:")),
            turn: urls().any(|u| is_turn_url(u)),
        }
    }
}

fn is_turn_url(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// An `icecandidateerror` event: the browser could not use one STUN or TURN server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServerError {
    /// The server's URL.
    pub url: String,
    /// The STUN error code (401: unauthorized), or 7xx for a server that did not answer.
    pub code: u16,
    /// The browser's words.
    pub text: String,
}

impl IceServerError {
    /// Whether a TURN server refused the credentials: 401 Unauthorized, or 431 Integrity
    /// Check Failure (RFC 8489, 14.8), after the browser retried with the credentials it had.
    pub fn is_turn_auth(&self) -> bool {
        is_turn_url(&self.url) && matches!(self.code, 401 | 431)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, kind: &str, candidate_type: &str) -> StatEntry {
        StatEntry {
            id: id.into(),
            kind: kind.into(),
            candidate_type: Some(candidate_type.into()),
            ..StatEntry::default()
        }
    }

    fn pair(id: &str, local: &str, remote: &str) -> StatEntry {
        StatEntry {
            id: id.into(),
            kind: "candidate-pair".into(),
            local_candidate_id: Some(local.into()),
            remote_candidate_id: Some(remote.into()),
            ..StatEntry::default()
        }
    }

    #[test]
    fn the_least_direct_side_names_the_path() {
        use CandidateType::*;
        assert_eq!(Path::of(Host, Host).as_str(), "host");
        assert_eq!(Path::of(Host, Srflx).as_str(), "srflx");
        assert_eq!(Path::of(Prflx, Host).as_str(), "prflx");
        assert_eq!(Path::of(Srflx, Relay).as_str(), "relay");
        assert_eq!(Path::of(Relay, Host).as_str(), "relay");
    }

    #[test]
    fn the_transport_names_the_selected_pair() {
        let stats = vec![
            candidate("L1", "local-candidate", "host"),
            candidate("L2", "local-candidate", "relay"),
            candidate("R1", "remote-candidate", "host"),
            pair("P1", "L1", "R1"),
            StatEntry {
                nominated: true,
                state: Some("succeeded".into()),
                ..pair("P2", "L2", "R1")
            },
            StatEntry {
                id: "T".into(),
                kind: "transport".into(),
                selected_pair_id: Some("P1".into()),
                ..StatEntry::default()
            },
        ];
        assert_eq!(selected_path(&stats), Some(Path(CandidateType::Host)));
        // Without the transport's word, the nominated pair that succeeded stands in.
        let without_transport: Vec<_> = stats.into_iter().filter(|s| s.id != "T").collect();
        assert_eq!(
            selected_path(&without_transport),
            Some(Path(CandidateType::Relay))
        );
    }

    #[test]
    fn no_selected_pair_means_no_path_yet() {
        let stats = vec![
            candidate("L1", "local-candidate", "host"),
            candidate("R1", "remote-candidate", "srflx"),
            pair("P1", "L1", "R1"),
        ];
        assert_eq!(selected_path(&stats), None);
        let unknown_candidate = vec![
            StatEntry {
                selected: true,
                ..pair("P1", "L1", "R9")
            },
            candidate("L1", "local-candidate", "host"),
        ];
        assert_eq!(selected_path(&unknown_candidate), None);
    }

    fn server(url: &str) -> IceServer {
        IceServer {
            urls: vec![url.into()],
            username: None,
            credential: None,
        }
    }

    #[test]
    fn advice_follows_what_was_configured() {
        let ice_failure_advice = |setup, refused: Option<&str>| {
            crate::text::Text::NoPath {
                setup,
                turn_refused: refused.map(str::to_owned),
            }
            .show(crate::text::Lang::En)
        };
        let none = ice_failure_advice(IceSetup::of(&[]), None);
        assert!(none.contains("No STUN or TURN server"), "{none}");
        let stun = ice_failure_advice(IceSetup::of(&[server("stun:relay.lan:3478")]), None);
        assert!(
            stun.contains("Only STUN") && stun.contains("--turn-url"),
            "{stun}"
        );
        assert!(!stun.contains("--ice-server"), "{stun}");
        let turn = IceSetup::of(&[server("stun:a:3478"), server("turns:a:5349")]);
        assert_eq!(
            turn,
            IceSetup {
                stun: true,
                turn: true
            }
        );
        let advice = ice_failure_advice(turn, None);
        assert!(advice.contains("TURN server was configured"), "{advice}");
        let refused = ice_failure_advice(turn, Some("turn:a:3478"));
        assert!(
            refused.contains("refused the credentials") && refused.contains("--turn-secret"),
            "{refused}"
        );
    }

    #[test]
    fn only_a_turn_server_can_refuse_credentials() {
        let error = |url: &str, code| IceServerError {
            url: url.into(),
            code,
            text: String::new(),
        };
        assert!(error("turn:10.0.0.1:3478?transport=udp", 401).is_turn_auth());
        assert!(error("turns:a:5349", 431).is_turn_auth());
        assert!(!error("turn:a:3478", 701).is_turn_auth());
        assert!(!error("stun:a:3478", 401).is_turn_auth());
    }
}
