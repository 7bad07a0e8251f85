//! JSON without serde, for the browser client: reading the relay's events out of a document
//! that something else parsed, and writing strings.
//!
//! The relay's tests and the benchmark read with `serde_json` ([`ServerMsg::parse`]); the
//! browser client reads what the browser's own `JSON.parse` made of the frame, through the same
//! [`ServerMsg::read`], so its WebAssembly carries no JSON parser and no serde visitors (they
//! were a quarter of the page's download). The rules are the ones serde applied before: every
//! field a variant needs must be there with the right shape, unknown fields are ignored, `null`
//! counts as absent.

use std::fmt;

use crate::{ErrorKind, IceCandidate, IceServer, Knock, PeerId, PeerInfo, ServerMsg};

/// One value of a parsed JSON document, seen through what reading the protocol needs.
pub trait JsonView: Sized {
    /// The field `key` of an object; `None` if this is not an object or the field is absent
    /// or `null`.
    fn field(&self, key: &str) -> Option<Self>;
    /// The value as a string, if it is one.
    fn string(&self) -> Option<String>;
    /// The value as a whole number from 0 to 2^53, if it is one.
    fn integer(&self) -> Option<u64>;
    /// The value as `true` or `false`, if it is one.
    fn boolean(&self) -> Option<bool>;
    /// The elements of an array, if it is one.
    fn items(&self) -> Option<Vec<Self>>;
}

/// Why a document is not a [`ServerMsg`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError(String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// An error saying what was wrong.
    pub fn new(why: impl Into<String>) -> Self {
        ReadError(why.into())
    }
}

/// A JSON object being written, field by field, in order.
pub(crate) struct Object(String);

impl Object {
    /// An object whose `"type"` is `kind`.
    pub fn new(kind: &str) -> Self {
        Object::bare().string("type", kind)
    }

    /// An empty object.
    pub fn bare() -> Self {
        Object(String::from("{"))
    }

    /// `"key":` and then `value`, as it is.
    pub fn raw(mut self, key: &str, value: &str) -> Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
        self.0.push_str(value);
        self
    }

    /// A string field.
    pub fn string(self, key: &str, value: &str) -> Self {
        self.raw(key, &json_string(value))
    }

    /// A string field, if there is a value.
    pub fn maybe(self, key: &str, value: &Option<String>) -> Self {
        match value {
            Some(value) => self.string(key, value),
            None => self,
        }
    }

    /// A number field.
    pub fn number(self, key: &str, value: u64) -> Self {
        self.raw(key, &value.to_string())
    }

    /// A boolean field.
    pub fn boolean(self, key: &str, value: bool) -> Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// The addressee of a signal, if there is one.
    pub fn to(self, to: Option<PeerId>) -> Self {
        match to {
            Some(to) => self.number("to", to.0),
            None => self,
        }
    }

    /// The object's text.
    pub fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The largest integer a JavaScript number holds exactly: ids stay below it (see [`PeerId`]).
const MAX_EXACT: u64 = 1 << 53;

/// The value at `key`, which must be there.
fn need<V: JsonView>(doc: &V, key: &str) -> Result<V, ReadError> {
    doc.field(key)
        .ok_or_else(|| ReadError(format!("missing field `{key}`")))
}

fn wrong(key: &str, what: &str) -> ReadError {
    ReadError(format!("field `{key}` must be {what}"))
}

fn string<V: JsonView>(doc: &V, key: &str) -> Result<String, ReadError> {
    need(doc, key)?
        .string()
        .ok_or_else(|| wrong(key, "a string"))
}

fn id<V: JsonView>(doc: &V, key: &str) -> Result<PeerId, ReadError> {
    need(doc, key)?
        .integer()
        .map(PeerId)
        .ok_or_else(|| wrong(key, "a peer id"))
}

/// An optional field: absent and `null` are `None`, a value of the wrong shape an error.
fn optional<V: JsonView, T>(
    doc: &V,
    key: &str,
    what: &str,
    read: impl FnOnce(&V) -> Option<T>,
) -> Result<Option<T>, ReadError> {
    match doc.field(key) {
        None => Ok(None),
        Some(value) => read(&value).map(Some).ok_or_else(|| wrong(key, what)),
    }
}

fn flag<V: JsonView>(doc: &V, key: &str) -> Result<bool, ReadError> {
    need(doc, key)?
        .boolean()
        .ok_or_else(|| wrong(key, "true or false"))
}

fn optional_string<V: JsonView>(doc: &V, key: &str) -> Result<Option<String>, ReadError> {
    optional(doc, key, "a string", V::string)
}

fn list<V: JsonView, T>(
    doc: &V,
    key: &str,
    read: impl Fn(&V) -> Result<T, ReadError>,
) -> Result<Vec<T>, ReadError> {
    need(doc, key)?
        .items()
        .ok_or_else(|| wrong(key, "an array"))?
        .iter()
        .map(read)
        .collect()
}

fn peer_info<V: JsonView>(doc: &V) -> Result<PeerInfo, ReadError> {
    Ok(PeerInfo {
        id: id(doc, "id")?,
        name: optional_string(doc, "name")?,
        session: optional_string(doc, "session")?,
    })
}

fn ice_server<V: JsonView>(doc: &V) -> Result<IceServer, ReadError> {
    Ok(IceServer {
        urls: list(doc, "urls", |url| {
            url.string().ok_or_else(|| wrong("urls", "strings"))
        })?,
        username: optional_string(doc, "username")?,
        credential: optional_string(doc, "credential")?,
    })
}

fn candidate<V: JsonView>(doc: &V) -> Result<IceCandidate, ReadError> {
    Ok(IceCandidate {
        candidate: string(doc, "candidate")?,
        sdp_mid: optional_string(doc, "sdpMid")?,
        sdp_m_line_index: optional(doc, "sdpMLineIndex", "an m-line index", |v| {
            v.integer().and_then(|n| u16::try_from(n).ok())
        })?,
    })
}

impl ServerMsg {
    /// Reads one event from the relay out of its parsed JSON document.
    pub fn read<V: JsonView>(doc: V) -> Result<Self, ReadError> {
        let doc = &doc;
        let tag = string(doc, "type")?;
        let from = || id(doc, "from");
        let from_name = || optional_string(doc, "fromName");
        Ok(match tag.as_str() {
            "welcome" => ServerMsg::Welcome {
                id: id(doc, "id")?,
                room: string(doc, "room")?,
                peers: list(doc, "peers", peer_info)?,
                ice_servers: list(doc, "iceServers", ice_server)?,
                resume_token: string(doc, "resumeToken")?,
            },
            "peer-joined" => ServerMsg::PeerJoined {
                peer: peer_info(&need(doc, "peer")?)?,
            },
            "peer-left" => ServerMsg::PeerLeft {
                peer: id(doc, "peer")?,
                reconnecting: optional(doc, "reconnecting", "true or false", V::boolean)?
                    .unwrap_or(false),
            },
            "offer" => ServerMsg::Offer {
                from: from()?,
                from_name: from_name()?,
                sdp: string(doc, "sdp")?,
            },
            "answer" => ServerMsg::Answer {
                from: from()?,
                from_name: from_name()?,
                sdp: string(doc, "sdp")?,
            },
            "candidate" => ServerMsg::Candidate {
                from: from()?,
                from_name: from_name()?,
                candidate: candidate(&need(doc, "candidate")?)?,
            },
            "hang-up" => ServerMsg::HangUp {
                from: from()?,
                from_name: from_name()?,
            },
            "ice-servers" => ServerMsg::IceServers {
                ice_servers: list(doc, "iceServers", ice_server)?,
            },
            "pong" => ServerMsg::Pong,
            "room" => ServerMsg::Room {
                controller: id(doc, "controller")?,
                locked: flag(doc, "locked")?,
                passphrase: flag(doc, "passphrase")?,
                knocking: list(doc, "knocking", |knock| {
                    Ok(Knock {
                        session: string(knock, "session")?,
                        name: optional_string(knock, "name")?,
                    })
                })?,
            },
            "removed" => ServerMsg::Removed,
            "error" => ServerMsg::Error {
                kind: ErrorKind::from_wire(&string(doc, "kind")?)
                    .ok_or_else(|| wrong("kind", "a known error kind"))?,
                message: string(doc, "message")?,
            },
            other => return Err(ReadError(format!("unknown event type `{other}`"))),
        })
    }
}

impl JsonView for &serde_json::Value {
    fn field(&self, key: &str) -> Option<Self> {
        self.get(key).filter(|v| !v.is_null())
    }

    fn string(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }

    fn integer(&self) -> Option<u64> {
        self.as_u64().filter(|n| *n <= MAX_EXACT)
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn items(&self) -> Option<Vec<Self>> {
        self.as_array().map(|items| items.iter().collect())
    }
}

/// The same reading of a number for every [`JsonView`] over JavaScript values: a whole
/// number from 0 to 2^53.
pub fn exact_integer(number: f64) -> Option<u64> {
    (number.fract() == 0.0 && (0.0..=MAX_EXACT as f64).contains(&number)).then_some(number as u64)
}

/// `text` as a JSON string, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[n >> 4]));
                out.push(char::from(HEX[n & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMsg, ServerMsg};

    fn read(text: &str) -> Result<ServerMsg, ReadError> {
        ServerMsg::parse(text)
    }

    #[test]
    fn null_is_absent_and_wrong_shapes_are_named() {
        assert_eq!(
            read(r#"{"type":"hang-up","from":2,"fromName":null}"#),
            Ok(ServerMsg::HangUp {
                from: PeerId(2),
                from_name: None
            })
        );
        let err = read(r#"{"type":"hang-up","from":null}"#).expect_err("from is required");
        assert!(err.to_string().contains("`from`"), "{err}");
        let err = read(r#"{"type":"offer","from":"2","sdp":"x"}"#).expect_err("an id is a number");
        assert!(err.to_string().contains("`from`"), "{err}");
        let err =
            read(r#"{"type":"hang-up","from":2,"fromName":7}"#).expect_err("names are strings");
        assert!(err.to_string().contains("`fromName`"), "{err}");
        assert!(read(r#"{"type":"peer-left","peer":1,"reconnecting":"yes"}"#).is_err());
        assert!(read(r#"{"type":"error","kind":"dance","message":"m"}"#).is_err());
        assert!(read(
            r#"{"type":"welcome","id":1,"room":"r","peers":{},"iceServers":[],"resumeToken":"t"}"#
        )
        .is_err());
        assert!(read("[]").is_err());
        assert!(read("{nope").is_err());
        assert!(read(r#"{"type":7}"#).is_err());
    }

    #[test]
    fn numbers_are_whole_and_exact_in_javascript() {
        let hang_up = |from: &str| read(&format!(r#"{{"type":"hang-up","from":{from}}}"#));
        assert!(hang_up("9007199254740992").is_ok(), "2^53 is exact");
        assert!(hang_up("9007199254740993").is_err());
        assert!(hang_up("-1").is_err());
        assert!(hang_up("1.5").is_err());
        let candidate = |index: &str| {
            read(&format!(
                r#"{{"type":"candidate","from":1,"candidate":{{"candidate":"c","sdpMLineIndex":{index}}}}}"#
            ))
        };
        assert!(candidate("65535").is_ok());
        assert!(candidate("65536").is_err());
        assert_eq!(exact_integer(3.0), Some(3));
        assert_eq!(exact_integer(3.5), None);
        assert_eq!(exact_integer(-1.0), None);
        assert_eq!(exact_integer(f64::NAN), None);
        assert_eq!(exact_integer(2f64.powi(53)), Some(1 << 53));
        assert_eq!(exact_integer(2f64.powi(54)), None);
    }

    #[test]
    fn strings_are_written_as_serde_reads_them() {
        for text in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "lines\r\n\ttab",
            "controls \u{0} \u{1} \u{1f} \u{7f}",
            "<b>markup</b> & émoji 🙂 \u{2028}",
        ] {
            let written = json_string(text);
            assert_eq!(
                serde_json::from_str::<String>(&written).ok().as_deref(),
                Some(text)
            );
        }
        // What the client sends reads back on the relay as it was.
        let msg = ClientMsg::Offer {
            to: Some(PeerId(3)),
            sdp: "v=0\r\n\"x\"".into(),
        };
        assert_eq!(ClientMsg::parse(&msg.to_json()), Ok(msg));
    }
}
