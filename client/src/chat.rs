//! Text chat: what a message may be, and how it travels on a connection's data channel, which
//! also carries each side's microphone and camera state, raised hand and reactions.
//!
//! Messages go peer to peer, one reliable, ordered data channel per connection (negotiated
//! with a fixed id on both sides, so that it needs no signaling of its own and keeps working
//! while the relay is down). This module holds every decision about them, with no browser in
//! it: what the person may send, the wire format, and what a received message must be.

use protocol::JsonView;

use crate::core::{gestures::Reaction, MediaState};

/// The data channel's label and its negotiated id.
pub const CHANNEL_LABEL: &str = "chat";
/// See [`CHANNEL_LABEL`].
pub const CHANNEL_ID: u16 = 0;

/// The longest message, in characters.
pub const MAX_CHARS: usize = 2_000;

/// The lines the chat log keeps: older ones go, so that a long call (or a peer sending as fast
/// as it may, see [`crate::core::chat_guard`]) does not grow the page without end.
pub const LOG_LINES: u32 = 500;

/// Why a message was not sent or not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatError {
    /// Nothing but white space.
    Empty,
    /// Longer than [`MAX_CHARS`]; how long it was.
    TooLong(usize),
    /// A received frame that is not one of our messages.
    Malformed(String),
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatError::Empty => f.write_str("Type a message first."),
            ChatError::TooLong(n) => write!(
                f,
                "That message is {n} characters long; the limit is {MAX_CHARS}. Shorten it or \
                 send it in parts."
            ),
            ChatError::Malformed(why) => write!(f, "not a chat message: {why}"),
        }
    }
}

/// One message as it travels.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire {
    /// The text.
    pub text: String,
    /// When it was sent, in whole milliseconds since the epoch by the sender's clock.
    pub at: u64,
}

/// What the person typed, made ready to send: control characters other than line breaks and
/// tabs taken out, then trimmed (in that order, so that composing it again changes nothing:
/// a control character no longer hides the spaces before it from the trim), within
/// [`MAX_CHARS`].
pub fn compose(typed: &str) -> Result<String, ChatError> {
    let kept: String = typed
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = kept.trim().to_owned();
    // Counted one by one: `chars().count()`'s fast path is 900 bytes of the page's code, for
    // at most a few thousand characters.
    let chars = text.chars().fold(0, |n, _| n + 1);
    if chars == 0 {
        return Err(ChatError::Empty);
    }
    if chars > MAX_CHARS {
        return Err(ChatError::TooLong(chars));
    }
    Ok(text)
}

/// The frame that carries `text`, sent at `at`: `{"text", "at"}`.
pub fn encode(text: &str, at: u64) -> String {
    format!(r#"{{"text":{},"at":{at}}}"#, protocol::json_string(text))
}

/// A frame of the data channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A chat message: `{"text", "at"}`.
    Chat(Wire),
    /// The sender's microphone and camera: `{"muted", "cameraOff"}`.
    Media(MediaState),
    /// The sender raised (`true`) or lowered their hand: `{"hand"}`.
    Hand(bool),
    /// The sender reacted: `{"reaction"}`, one of [`Reaction::ALL`] by name.
    Reaction(Reaction),
}

/// The frame that tells the other side our hand is up (`true`) or down.
pub fn encode_hand(hand: bool) -> String {
    format!(r#"{{"hand":{hand}}}"#)
}

/// The frame that carries our `reaction`.
pub fn encode_reaction(reaction: Reaction) -> String {
    format!(r#"{{"reaction":"{}"}}"#, reaction.as_str())
}

/// The frame that tells the other side our microphone and camera state.
pub fn encode_media(media: MediaState) -> String {
    format!(
        r#"{{"muted":{},"cameraOff":{}}}"#,
        media.muted, media.camera_off
    )
}

/// A received frame (as parsed JSON), checked as if the sender had typed it here: a peer's
/// page is not trusted to have done so.
pub fn decode(frame: impl JsonView) -> Result<Frame, ChatError> {
    let malformed = |why: &str| Err(ChatError::Malformed(why.to_owned()));
    if let Some(text) = frame.field("text") {
        let Some(text) = text.string() else {
            return malformed("the text is not a string");
        };
        let at = match frame.field("at").map(|at| at.integer()) {
            None => 0,
            Some(Some(at)) => at,
            Some(None) => return malformed("the time is not a whole number"),
        };
        return Ok(Frame::Chat(Wire {
            text: compose(&text)?,
            at,
        }));
    }
    if let Some(hand) = frame.field("hand") {
        return match hand.boolean() {
            Some(hand) => Ok(Frame::Hand(hand)),
            None => malformed("a hand that is not true or false"),
        };
    }
    if let Some(reaction) = frame.field("reaction") {
        // Only names we know: a peer's own words never reach the tile this way.
        return match reaction.string().as_deref().and_then(Reaction::from_name) {
            Some(reaction) => Ok(Frame::Reaction(reaction)),
            None => malformed("not a reaction we know"),
        };
    }
    let flag = |key: &str| frame.field(key).map(|value| value.boolean().ok_or(()));
    match (flag("muted"), flag("cameraOff")) {
        (None, None) => malformed("neither a message, a media state, a hand nor a reaction"),
        (Some(Err(())), _) | (_, Some(Err(()))) => {
            malformed("a media state that is not true or false")
        }
        (muted, camera_off) => Ok(Frame::Media(MediaState {
            muted: muted == Some(Ok(true)),
            camera_off: camera_off == Some(Ok(true)),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as the page reads it: parsed first (here by serde_json, there by the browser).
    fn decode(frame: &str) -> Result<Frame, ChatError> {
        match serde_json::from_str::<serde_json::Value>(frame) {
            Ok(doc) => super::decode(&doc),
            Err(_) => Err(ChatError::Malformed("not JSON".to_owned())),
        }
    }

    #[test]
    fn what_the_person_types_is_trimmed_and_checked() {
        assert_eq!(compose("  hello\n"), Ok("hello".to_owned()));
        assert_eq!(compose("two\nlines"), Ok("two\nlines".to_owned()));
        assert_eq!(
            compose("bell\u{7}s and\u{1b}[31m escapes"),
            Ok("bells and[31m escapes".to_owned())
        );
        assert_eq!(compose(" \n\t "), Err(ChatError::Empty));
        let long = "é".repeat(MAX_CHARS + 1);
        assert_eq!(compose(&long), Err(ChatError::TooLong(MAX_CHARS + 1)));
        assert!(
            compose(&"é".repeat(MAX_CHARS)).is_ok(),
            "the limit counts characters"
        );
        assert!(ChatError::TooLong(2001)
            .to_string()
            .contains("limit is 2000"));
    }

    #[test]
    fn composing_twice_changes_nothing() {
        // The inputs the fuzz targets chat-frames and chat-round-trip found.
        for typed in ["/\u{2028}\u{7f}", "\u{7f}\t\u{fffd}", " a \u{7f}"] {
            let once = compose(typed).expect("text is left");
            assert_eq!(compose(&once), Ok(once.clone()), "{typed:?}");
        }
    }

    #[test]
    fn markup_travels_as_text() {
        let frame = encode("<img src=x onerror=alert(1)>", 5);
        let Ok(Frame::Chat(wire)) = decode(&frame) else {
            panic!("our own frame: {frame}");
        };
        assert_eq!(wire.text, "<img src=x onerror=alert(1)>");
        assert_eq!(wire.at, 5);
    }

    #[test]
    fn received_frames_are_checked_like_typed_text() {
        assert!(matches!(decode("not json"), Err(ChatError::Malformed(_))));
        assert!(matches!(
            decode(r#"{"text":1,"at":0}"#),
            Err(ChatError::Malformed(_))
        ));
        assert_eq!(decode(r#"{"text":"  ","at":0}"#), Err(ChatError::Empty));
        let huge = encode(&"x".repeat(MAX_CHARS * 2), 0);
        assert_eq!(decode(&huge), Err(ChatError::TooLong(MAX_CHARS * 2)));
        assert!(matches!(
            decode(r#"{"at":3}"#),
            Err(ChatError::Malformed(_))
        ));
        assert!(matches!(
            decode(r#"{"muted":"yes"}"#),
            Err(ChatError::Malformed(_))
        ));
    }

    #[test]
    fn hands_and_reactions_travel_on_the_same_channel_by_name_only() {
        for hand in [false, true] {
            assert_eq!(decode(&encode_hand(hand)), Ok(Frame::Hand(hand)));
        }
        for reaction in Reaction::ALL {
            assert_eq!(
                decode(&encode_reaction(reaction)),
                Ok(Frame::Reaction(reaction))
            );
        }
        for bad in [
            r#"{"hand":"up"}"#,
            r#"{"hand":1}"#,
            r#"{"reaction":"<img src=x>"}"#,
            r#"{"reaction":"🎉"}"#,
            r#"{"reaction":7}"#,
            r#"{"reaction":["clap"]}"#,
        ] {
            assert!(matches!(decode(bad), Err(ChatError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn media_states_travel_on_the_same_channel() {
        for muted in [false, true] {
            for camera_off in [false, true] {
                let media = MediaState { muted, camera_off };
                assert_eq!(decode(&encode_media(media)), Ok(Frame::Media(media)));
            }
        }
        assert_eq!(
            decode(r#"{"cameraOff":true}"#),
            Ok(Frame::Media(MediaState {
                muted: false,
                camera_off: true
            }))
        );
    }
}

/// Fuzz targets for the frames a peer sends on the data channel (see the `fuzzing` crate for
/// how they run). They read each frame through both views of a parsed document: serde_json's,
/// as the tests above do, and a model of the browser's `JSON.parse`, whose numbers are
/// JavaScript numbers.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod fuzz {
    use fuzzing::{check, json_frames, proptest::prelude::*, run, JsModel};
    use serde_json::Value;

    use super::*;

    /// Cases per target in `cargo test`: about a second each in a debug build.
    const CASES: u32 = 300;

    /// Valid frames: messages, with times a JavaScript number holds, and media states.
    fn frames() -> impl Strategy<Value = Value> {
        let text =
            prop_oneof![3 => "[ -~]{0,20}", 1 => any::<String>(), 1 => fuzzing::awkward_string()];
        let chat = (text, 0u64..=(1 << 53)).prop_map(|(text, at)| {
            serde_json::from_str(&encode(&text, at)).expect("our own frame is JSON")
        });
        let media = (any::<bool>(), any::<bool>()).prop_map(|(muted, camera_off)| {
            serde_json::from_str(&encode_media(MediaState { muted, camera_off }))
                .expect("our own frame is JSON")
        });
        let hand = any::<bool>().prop_map(|hand| {
            serde_json::from_str(&encode_hand(hand)).expect("our own frame is JSON")
        });
        let reaction =
            fuzzing::proptest::sample::select(Reaction::ALL.to_vec()).prop_map(|reaction| {
                serde_json::from_str(&encode_reaction(reaction)).expect("our own frame is JSON")
            });
        prop_oneof![chat, media, hand, reaction]
    }

    /// A message taken in is one the person could have typed here: [`compose`] leaves it as it
    /// is.
    fn as_if_typed(frame: &Result<Frame, ChatError>) -> Result<(), TestCaseError> {
        if let Ok(Frame::Chat(wire)) = frame {
            let again = compose(&wire.text);
            check(again.as_ref() == Ok(&wire.text), || {
                format!("{:?} taken in, but typed here it is {again:?}", wire.text)
            })?;
            check(wire.at <= 1 << 53, || format!("a time of {}", wire.at))?;
        }
        Ok(())
    }

    /// Whatever a peer sends is taken in as a message, a media state, a hand or a reaction, or
    /// refused with its reason, the same on both views, and a message taken in is one that could have been typed.
    #[test]
    fn fuzz_chat_frames() {
        run("chat-frames", CASES, json_frames(frames()), |text| {
            // Not JSON: the page's `JSON.parse` throws and the frame is refused before this.
            let Ok(doc) = serde_json::from_str::<Value>(&text) else {
                return Ok(());
            };
            let serde = decode(&doc);
            let js = decode(JsModel(&doc));
            if serde.is_ok() {
                check(js == serde, || {
                    format!("serde_json reads {serde:?}, the browser {js:?}")
                })?;
            }
            as_if_typed(&serde)?;
            as_if_typed(&js)
        });
    }

    /// What one side sends, the other reads as it was sent, on both views.
    #[test]
    fn fuzz_chat_round_trip() {
        let typed = prop_oneof![3 => "[ -~\\t\\n]{0,30}", 2 => any::<String>(), 1 => fuzzing::awkward_string()];
        let cases = (typed, 0u64..=(1 << 53), any::<bool>(), any::<bool>());
        run(
            "chat-round-trip",
            CASES,
            cases,
            |(typed, at, muted, camera_off)| {
                let media = MediaState { muted, camera_off };
                let frame = encode_media(media);
                let doc: Value = serde_json::from_str(&frame).expect("our own frame is JSON");
                check(decode(&doc) == Ok(Frame::Media(media)), || frame.clone())?;
                check(decode(JsModel(&doc)) == Ok(Frame::Media(media)), || {
                    frame.clone()
                })?;
                let Ok(text) = compose(&typed) else {
                    return Ok(());
                };
                let frame = encode(&text, at);
                let doc: Value = serde_json::from_str(&frame).expect("our own frame is JSON");
                let sent = Ok(Frame::Chat(Wire { text, at }));
                let serde = decode(&doc);
                check(serde == sent, || {
                    format!("{typed:?} sent as {frame}, read as {serde:?}")
                })?;
                let js = decode(JsModel(&doc));
                check(js == sent, || {
                    format!("{typed:?} sent as {frame}, read as {js:?}")
                })
            },
        );
    }
}
