//! What the relay reads of a signal, and how it passes it on: the envelope (`type`, `to`) is
//! parsed, the SDP is kept as the JSON string the sender wrote and written out again as it
//! came, neither unescaped nor escaped again. A session description is most of a call's
//! signaling bytes; this is what keeps the relay's cost per message near a bare forwarder's.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ClientMsg, ParseError, PeerId, Signal};

/// A signal as the relay passes it on.
#[derive(Clone, Debug)]
pub struct RawSignal {
    kind: Kind,
    /// `sdp` for a description (a JSON string, as written), `candidate` for a candidate.
    payload: Option<Box<RawValue>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Offer,
    Answer,
    Candidate,
    HangUp,
}

impl Kind {
    fn of(kind: &str) -> Option<Kind> {
        Some(match kind {
            "offer" => Kind::Offer,
            "answer" => Kind::Answer,
            "candidate" => Kind::Candidate,
            "hang-up" => Kind::HangUp,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::Answer => "answer",
            Kind::Candidate => "candidate",
            Kind::HangUp => "hang-up",
        }
    }
}

/// The fields of a signal the relay reads; the rest of the object is ignored, as by
/// [`ClientMsg`].
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    to: Option<PeerId>,
    #[serde(default, borrow)]
    sdp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    candidate: Option<&'a RawValue>,
}

/// What a candidate must look like: [`crate::IceCandidate`]'s fields and types, checked without
/// copying its strings. A candidate that fits is passed on as written, as the SDP is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Read only to check the types.
struct CandidateShape<'a> {
    #[serde(borrow)]
    candidate: Cow<'a, str>,
    #[serde(default, borrow)]
    sdp_mid: Option<Cow<'a, str>>,
    #[serde(default)]
    sdp_m_line_index: Option<u16>,
}

/// The event the addressee receives: [`crate::ServerMsg`]'s fields, in its order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stamped<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    from: PeerId,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sdp: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate: Option<&'a RawValue>,
}

impl RawSignal {
    /// The event the addressed peer receives, stamped with the sender the relay knows: the
    /// same JSON as [`Signal::from_peer`]'s, with the SDP as the sender escaped it.
    pub fn stamped(&self, from: PeerId, from_name: Option<&str>) -> String {
        let payload = self.payload.as_deref();
        let (sdp, candidate) = match self.kind {
            Kind::Offer | Kind::Answer => (payload, None),
            Kind::Candidate => (None, payload),
            Kind::HangUp => (None, None),
        };
        let stamped = Stamped {
            kind: self.kind.name(),
            from,
            from_name,
            sdp,
            candidate,
        };
        serde_json::to_string(&stamped).expect("a stamped signal always serializes")
    }
}

impl PartialEq for RawSignal {
    fn eq(&self, other: &Self) -> bool {
        fn text(payload: &Option<Box<RawValue>>) -> Option<&str> {
            payload.as_deref().map(RawValue::get)
        }
        self.kind == other.kind && text(&self.payload) == text(&other.payload)
    }
}

impl Eq for RawSignal {}

impl From<Signal> for RawSignal {
    fn from(signal: Signal) -> Self {
        let (kind, payload) = match &signal {
            Signal::Offer(sdp) => (Kind::Offer, Some(raw(sdp))),
            Signal::Answer(sdp) => (Kind::Answer, Some(raw(sdp))),
            Signal::Candidate(candidate) => (Kind::Candidate, Some(raw(candidate))),
            Signal::HangUp => (Kind::HangUp, None),
        };
        RawSignal { kind, payload }
    }
}

/// A payload written out as JSON.
fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a signal's payload always serializes")
}

/// A [`ClientMsg`] sorted into what the relay does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Enter a room.
    Join {
        /// The room's name.
        room: String,
        /// An optional display name.
        name: Option<String>,
        /// A resume token from an earlier `welcome`.
        resume: Option<String>,
        /// The page's session id.
        session: Option<String>,
        /// The room's passphrase.
        passphrase: Option<String>,
    },
    /// Change how the room is kept ([`Control`]).
    Control(Control),
    /// Forward a signal to a peer of the sender's room.
    Relay {
        /// The addressed peer; `None` means the other peer of a 1:1 room.
        to: Option<PeerId>,
        /// What to forward, as the sender wrote it.
        signal: RawSignal,
    },
    /// Answer with `pong`.
    Ping,
}

/// A room control request: see the [`ClientMsg`] variants of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Lock the room, or open it.
    Lock(bool),
    /// Set the passphrase (empty: none).
    Passphrase(String),
    /// Let in the knocking page with this session id.
    Admit(String),
    /// Turn away the knocking page with this session id.
    Refuse(String),
    /// Remove this member.
    Remove(PeerId),
}

impl From<ClientMsg> for Request {
    fn from(msg: ClientMsg) -> Self {
        let (to, signal) = match msg {
            ClientMsg::Join {
                room,
                name,
                resume,
                session,
                passphrase,
            } => {
                return Request::Join {
                    room,
                    name,
                    resume,
                    session,
                    passphrase,
                }
            }
            ClientMsg::Lock { locked } => return Request::Control(Control::Lock(locked)),
            ClientMsg::Passphrase { passphrase } => {
                return Request::Control(Control::Passphrase(passphrase))
            }
            ClientMsg::Admit { session } => return Request::Control(Control::Admit(session)),
            ClientMsg::Refuse { session } => return Request::Control(Control::Refuse(session)),
            ClientMsg::Remove { peer } => return Request::Control(Control::Remove(peer)),
            ClientMsg::Offer { to, sdp } => (to, Signal::Offer(sdp)),
            ClientMsg::Answer { to, sdp } => (to, Signal::Answer(sdp)),
            ClientMsg::Candidate { to, candidate } => (to, Signal::Candidate(candidate)),
            ClientMsg::HangUp { to } => (to, Signal::HangUp),
            ClientMsg::Ping => return Request::Ping,
        };
        Request::Relay {
            to,
            signal: signal.into(),
        }
    }
}

impl Request {
    /// Parses one text frame from a client. A signal is read by its envelope and passed on as
    /// written ([`RawSignal`]); anything else, and any frame the envelope does not fit, is read
    /// as a [`ClientMsg`], which accepts and refuses exactly as before.
    pub fn parse(text: &str) -> Result<Request, ParseError> {
        if let Some(request) = Self::parse_signal(text) {
            return Ok(request);
        }
        ClientMsg::parse(text).map(Request::from)
    }

    /// The fast path: a well-formed signal, or `None`.
    fn parse_signal(text: &str) -> Option<Request> {
        // The whole frame: the envelope steps over unknown fields, keys included, without
        // decoding them, where `ClientMsg` refuses a bad escape anywhere.
        if !escapes_read(text) {
            return None;
        }
        // An object: serde reads a struct from an array too (`["offer",null,"",null]`, found by
        // the `client-requests` fuzz target), which `ClientMsg` refuses.
        if !crate::starts_an_object(text) {
            return None;
        }
        let envelope: Envelope = serde_json::from_str(text).ok()?;
        let kind = Kind::of(&envelope.kind)?;
        let payload = match kind {
            Kind::Offer | Kind::Answer => {
                let sdp = envelope.sdp?;
                // A description is a JSON string: anything else is for `ClientMsg` to refuse.
                if !sdp.get().starts_with('"') {
                    return None;
                }
                Some(sdp.to_owned())
            }
            Kind::Candidate => {
                let candidate = envelope.candidate?;
                // An object: serde reads a struct from an array too (`["c"]`), which the page
                // would not read back. `ClientMsg` takes those and writes them as objects.
                if !candidate.get().starts_with('{') {
                    return None;
                }
                serde_json::from_str::<CandidateShape>(candidate.get()).ok()?;
                Some(candidate.to_owned())
            }
            Kind::HangUp => None,
        };
        Some(Request::Relay {
            to: envelope.to,
            signal: RawSignal { kind, payload },
        })
    }
}

/// Whether every `\u` escape in the JSON value `raw` reads: serde_json's raw values step over
/// strings without decoding them, so a lone surrogate (`"\ud800"`) would pass through to the
/// addressee, whom `ClientMsg` (and the page's serde view) would refuse it. Found by the
/// `client-requests` fuzz target, in a field's value and then (in a ten-minute run) in the key
/// of an unknown field. Browsers escape only control characters in a description, so a frame
/// is decoded only when it has such an escape.
fn escapes_read(raw: &str) -> bool {
    !raw.contains("\\u") || serde_json::from_str::<serde_json::Value>(raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, IceCandidate, ServerMsg};

    #[test]
    fn a_signal_written_as_an_array_is_refused_as_clientmsg_refuses_it() {
        // The minimal input the fuzz target found, and the shortest signal so written.
        for text in [
            "[\"offer\",null,\"\",null]",
            "[\"hang-up\"]",
            " \n[\"answer\",7,\"v=0\"]",
        ] {
            assert_eq!(
                Request::parse(text),
                Err(ParseError::InvalidJson("expected an object".into())),
                "{text}"
            );
        }
        // Whitespace before an object is still the fast path's.
        assert!(matches!(
            Request::parse(" \n{\"type\":\"hang-up\",\"to\":2}"),
            Ok(Request::Relay {
                to: Some(PeerId(2)),
                ..
            })
        ));
    }

    #[test]
    fn what_the_page_could_not_read_back_never_takes_the_fast_path() {
        // The minimal input the fuzz target found, and the same in a candidate's field.
        for text in [
            "{\"sdp\":\"\\ud800A\",\"type\":\"offer\"}",
            "{\"type\":\"candidate\",\"candidate\":{\"candidate\":\"c\",\"usernameFragment\":\"\\udc00\"}}",
            "{\"hang-up\":{\"\\ud800sdpMLineIndex\":null},\"sdp\":\"0A  \",\"to\":0,\"type\":\"answer\"}",
        ] {
            assert!(
                matches!(Request::parse(text), Err(ParseError::InvalidJson(_))),
                "{text}: {:?}",
                Request::parse(text)
            );
        }
        // A candidate written as an array is read by `ClientMsg`, and passed on as an object.
        let text = "{\"candidate\":[\"\"],\"to\":0,\"type\":\"candidate\"}";
        let Ok(Request::Relay { signal, .. }) = Request::parse(text) else {
            panic!("{text}: {:?}", Request::parse(text));
        };
        assert!(
            ServerMsg::parse(&signal.stamped(PeerId(5), None)).is_ok(),
            "{}",
            signal.stamped(PeerId(5), None)
        );
        // A good pair still passes, as written.
        let text = "{\"sdp\":\"\\ud83c\\udfa5\",\"type\":\"offer\"}";
        assert!(matches!(Request::parse(text), Ok(Request::Relay { .. })));
    }

    fn candidate() -> IceCandidate {
        IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        }
    }

    fn signals() -> Vec<Signal> {
        vec![
            Signal::Offer("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\"quoted\" \\ é 🎥\u{1}".into()),
            Signal::Answer("v=0\r\n".into()),
            Signal::Candidate(candidate()),
            Signal::HangUp,
        ]
    }

    #[test]
    fn every_signal_reads_as_a_relay_request_and_is_passed_on_as_the_relay_always_wrote_it() {
        for signal in signals() {
            for to in [None, Some(PeerId(7))] {
                for name in [None, Some("ann \"the\" one")] {
                    let mut msg = signal.clone().to_peer(PeerId(7));
                    if to.is_none() {
                        msg = match msg {
                            ClientMsg::Offer { sdp, .. } => ClientMsg::Offer { to: None, sdp },
                            ClientMsg::Answer { sdp, .. } => ClientMsg::Answer { to: None, sdp },
                            ClientMsg::Candidate { candidate, .. } => ClientMsg::Candidate {
                                to: None,
                                candidate,
                            },
                            ClientMsg::HangUp { .. } => ClientMsg::HangUp { to: None },
                            other => other,
                        };
                    }
                    let Ok(Request::Relay {
                        to: got_to,
                        signal: raw,
                    }) = Request::parse(&msg.to_json())
                    else {
                        panic!("{msg:?} is a relay request");
                    };
                    assert_eq!(got_to, to);
                    let expected = signal
                        .clone()
                        .from_peer(PeerId(3), name.map(str::to_owned))
                        .to_json();
                    assert_eq!(raw.stamped(PeerId(3), name), expected, "{msg:?}");
                    // The same from a typed signal.
                    let typed = RawSignal::from(signal.clone());
                    assert_eq!(typed.stamped(PeerId(3), name), expected);
                    assert!(ServerMsg::parse(&expected).is_ok());
                }
            }
        }
    }

    #[test]
    fn the_sdp_passes_through_as_the_sender_escaped_it() {
        // A browser may escape what serde would not; the addressee reads the same string.
        let text = r#"{"type":"offer","sdp":"v=0\r\n\u0041\/x","extra":[1,2]}"#;
        let Ok(Request::Relay { to: None, signal }) = Request::parse(text) else {
            panic!("an offer");
        };
        let stamped = signal.stamped(PeerId(1), None);
        assert_eq!(
            stamped,
            r#"{"type":"offer","from":1,"sdp":"v=0\r\n\u0041\/x"}"#
        );
        assert_eq!(
            ServerMsg::parse(&stamped),
            Ok(ServerMsg::Offer {
                from: PeerId(1),
                from_name: None,
                sdp: "v=0\r\nA/x".into()
            })
        );
    }

    #[test]
    fn a_candidate_passes_through_as_written() {
        // Fields the relay does not know (a browser's usernameFragment) reach the addressee.
        let candidate = r#"{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":null,"usernameFragment":"u\/f"}"#;
        let text = format!(r#"{{"type":"candidate","to":3,"candidate":{candidate}}}"#);
        let Ok(Request::Relay { to, signal }) = Request::parse(&text) else {
            panic!("a candidate");
        };
        assert_eq!(to, Some(PeerId(3)));
        let stamped = signal.stamped(PeerId(1), None);
        assert_eq!(
            stamped,
            format!(r#"{{"type":"candidate","from":1,"candidate":{candidate}}}"#)
        );
        let Ok(ServerMsg::Candidate { candidate, .. }) = ServerMsg::parse(&stamped) else {
            panic!("the addressee reads a candidate");
        };
        assert_eq!(candidate.sdp_mid, None);
        assert_eq!(candidate.sdp_m_line_index, None);
    }

    #[test]
    fn what_the_envelope_does_not_fit_is_refused_as_before() {
        for (text, kind) in [
            (r#"{"type":"offer","sdp":7}"#, ErrorKind::InvalidMessage),
            (r#"{"type":"offer","sdp":null}"#, ErrorKind::InvalidMessage),
            (r#"{"type":"offer"}"#, ErrorKind::InvalidMessage),
            (r#"{"type":"answer","sdp":{}}"#, ErrorKind::InvalidMessage),
            (
                r#"{"type":"candidate","candidate":"x"}"#,
                ErrorKind::InvalidMessage,
            ),
            (
                r#"{"type":"candidate","candidate":{"sdpMid":"0"}}"#,
                ErrorKind::InvalidMessage,
            ),
            (
                r#"{"type":"candidate","candidate":{"candidate":"c","sdpMLineIndex":70000}}"#,
                ErrorKind::InvalidMessage,
            ),
            (
                r#"{"type":"candidate","candidate":{"candidate":"c","sdpMid":0}}"#,
                ErrorKind::InvalidMessage,
            ),
            (
                r#"{"type":"offer","to":-1,"sdp":"v=0"}"#,
                ErrorKind::InvalidMessage,
            ),
            (r#"{"type":"offer","sdp":"v=0""#, ErrorKind::InvalidJson),
            (r#"{"type":"shout","sdp":"v=0"}"#, ErrorKind::UnknownType),
            (r#"["offer"]"#, ErrorKind::InvalidJson),
        ] {
            let expected = ClientMsg::parse(text).expect_err(text);
            assert_eq!(expected.kind(), kind, "{text}");
            assert_eq!(Request::parse(text).map(|_| ()), Err(expected), "{text}");
        }
    }

    #[test]
    fn other_requests_read_as_client_messages() {
        assert_eq!(
            Request::parse(&ClientMsg::join("r").to_json()).ok(),
            Some(Request::from(ClientMsg::join("r")))
        );
        assert_eq!(
            Request::parse(r#"{"type":"ping"}"#).ok(),
            Some(Request::Ping)
        );
    }

    #[test]
    fn a_signal_sent_to_a_peer_is_the_request_to_relay_it() {
        let candidate = IceCandidate {
            candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        };
        for signal in [
            Signal::Offer("o".into()),
            Signal::Answer("a".into()),
            Signal::Candidate(candidate),
            Signal::HangUp,
        ] {
            assert_eq!(
                Request::from(signal.clone().to_peer(PeerId(4))),
                Request::Relay {
                    to: Some(PeerId(4)),
                    signal: signal.into()
                }
            );
        }
    }

    #[test]
    fn requests_sort_signals_from_joins() {
        assert_eq!(
            Request::from(ClientMsg::HangUp { to: None }),
            Request::Relay {
                to: None,
                signal: Signal::HangUp.into()
            }
        );
        assert_eq!(
            Signal::Answer("v=0".into()).from_peer(PeerId(2), None),
            ServerMsg::Answer {
                from: PeerId(2),
                from_name: None,
                sdp: "v=0".into()
            }
        );
    }
}
