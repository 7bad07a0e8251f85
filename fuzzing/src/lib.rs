//! What the fuzz targets share: a runner that is bounded in `cargo test` and runs for a time
//! budget under `make fuzz`, and generators of hostile input (arbitrary text, JSON of every
//! shape, and valid messages with one thing or another broken).
//!
//! The targets are property tests on proptest, on stable Rust: nightly toolchains cannot be
//! installed here, which rules out cargo-fuzz and libFuzzer. Of the stable choices, proptest is
//! the most widely used and kept, runs as a plain `#[test]`, generates structured input from
//! composable strategies (a valid message, then broken in one place), and shrinks a failure to
//! a minimal input, which is what a regression case needs. `arbitrary` alone has no runner and
//! no shrinking; bolero's stable mode is proptest-like but much less used.
//!
//! A target is a `#[test]` named `fuzz_...` that calls [`run`]. Without `FUZZ_S` it runs the
//! few hundred cases it is given, a second or so. With `FUZZ_S=<seconds>` (`make fuzz`) it runs
//! batches of cases until that much time has passed and prints how many ran.

use std::time::{Duration, Instant};

use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};
use serde_json::{Map, Number, Value};

pub use proptest;

/// The environment variable that switches [`run`] from a fixed count of cases to a time budget,
/// in seconds per target.
pub const BUDGET_VAR: &str = "FUZZ_S";

/// Cases per batch in a timed run: the budget is checked between batches.
const BATCH: u32 = 512;

/// Runs `test` on inputs from `strategy`: `cases` of them, or for `FUZZ_S` seconds when that is
/// set. A failure (a returned error or a panic) is shrunk to a minimal input, printed, and fails
/// the calling test.
pub fn run<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var(BUDGET_VAR)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut executions: u64 = 0;
    loop {
        let batch = if budget.is_some() { BATCH } else { cases };
        let mut runner = TestRunner::new(Config {
            cases: batch,
            // Regressions are kept as plain tests beside each target, with the bytes written
            // out, rather than as seeds in a file proptest owns.
            failure_persistence: None,
            // A string of a few KB takes many steps to shrink; a minute is enough to make a
            // failure readable and short enough that `make fuzz` goes on to report it.
            max_shrink_time: 60_000,
            ..Config::default()
        });
        match runner.run(&strategy, &test) {
            Ok(()) => executions += u64::from(batch),
            Err(TestError::Fail(why, minimal)) => {
                let at = started.elapsed().as_secs_f64();
                println!(
                    "fuzz {name}: FAILED after about {executions} executions in {at:.0} s: {why}\n\
                     fuzz {name}: minimal failing input: {minimal:?}"
                );
                panic!("fuzz {name}: {why}; minimal failing input: {minimal:?}");
            }
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
        }
        match budget {
            Some(budget) if started.elapsed() < budget => continue,
            Some(_) => {
                let secs = started.elapsed().as_secs_f64();
                println!("fuzz {name}: {executions} executions in {secs:.0} s, 0 failures");
                return;
            }
            None => return,
        }
    }
}

/// Fails the case with `why` unless `ok`: a property that does not hold.
pub fn check(ok: bool, why: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(why()))
    }
}

/// Numbers a parser may choke on: the edges of every integer type, of what a JavaScript number
/// holds exactly, and of `f64`.
pub fn awkward_number() -> impl Strategy<Value = Value> {
    let integers = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::from(u16::MAX)),
        Just(u64::from(u16::MAX) + 1),
        Just(u64::from(u32::MAX)),
        Just((1 << 53) - 1),
        Just(1 << 53),
        Just((1 << 53) + 1),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        any::<u64>(),
    ]
    .prop_map(Value::from);
    let negative = prop_oneof![Just(-1i64), Just(i64::MIN), any::<i64>()].prop_map(Value::from);
    let floats = prop_oneof![
        Just(0.5f64),
        Just(-0.0),
        Just(1.0),
        Just(9_007_199_254_740_992.0),
        Just(1e300),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
    .prop_filter_map("JSON has no NaN or infinity", |f| {
        Number::from_f64(f).map(Value::Number)
    });
    prop_oneof![integers, negative, floats]
}

/// Strings a parser may choke on: empty, long, control characters, quotes and backslashes,
/// non-ASCII, the protocol's own words.
pub fn awkward_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z\\-]{0,12}",
        1 => Just(String::new()),
        1 => "[\\x00-\\x1f\"\\\\/\u{7f}\u{2028}\u{fffd}\u{1f3a5}]{1,8}",
        1 => (1usize..70_000).prop_map(|n| "x".repeat(n)),
        1 => prop::sample::select(WORDS).prop_map(str::to_owned),
    ]
}

/// The protocol's and the chat's own words, so that generated JSON often hits a known field or
/// type.
const WORDS: &[&str] = &[
    "type",
    "join",
    "offer",
    "answer",
    "candidate",
    "hang-up",
    "lock",
    "locked",
    "passphrase",
    "admit",
    "refuse",
    "remove",
    "removed",
    "controller",
    "knocking",
    "ping",
    "pong",
    "welcome",
    "peer-joined",
    "peer-left",
    "ice-servers",
    "error",
    "room",
    "name",
    "resume",
    "session",
    "to",
    "from",
    "fromName",
    "sdp",
    "sdpMid",
    "sdpMLineIndex",
    "peer",
    "peers",
    "id",
    "urls",
    "username",
    "credential",
    "iceServers",
    "resumeToken",
    "reconnecting",
    "kind",
    "message",
    "text",
    "at",
    "muted",
    "cameraOff",
    "room-full",
    "invalid-json",
    "__proto__",
];

/// Any JSON value, a few levels deep, with awkward numbers and strings and the protocol's
/// field names as keys.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        awkward_number(),
        awkward_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(str::to_owned),
            1 => awkward_string(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a valid document, at positions chosen by index (taken modulo what is there).
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Replace a value (wrong type, huge number, `null`, nested junk).
    Replace(usize, Value),
    /// Remove a field of an object.
    Remove(usize),
    /// Add a field, known or not.
    Add(usize, String, Value),
    /// Put a value inside as many arrays, in place.
    Nest(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let key = prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => awkward_string(),
    ];
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), key, json_value()).prop_map(|(at, k, v)| Mutation::Add(at, k, v)),
        1 => (any::<usize>(), 1usize..200).prop_map(|(at, depth)| Mutation::Nest(at, depth)),
    ]
}

/// Every value of `doc`, depth first, the document itself first.
fn count(doc: &Value) -> usize {
    1 + match doc {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(fields) => fields.values().map(count).sum(),
        _ => 0,
    }
}

/// The `at`-th value of `doc` in [`count`]'s order.
fn nth(doc: &mut Value, at: usize) -> Option<&mut Value> {
    if at == 0 {
        return Some(doc);
    }
    let mut at = at - 1;
    let children: Vec<&mut Value> = match doc {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(fields) => fields.values_mut().collect(),
        _ => return None,
    };
    for child in children {
        let size = count(child);
        if at < size {
            return nth(child, at);
        }
        at -= size;
    }
    None
}

/// `doc` with `mutation` applied.
pub fn apply(mut doc: Value, mutation: &Mutation) -> Value {
    let size = count(&doc);
    match mutation {
        Mutation::Replace(at, value) => {
            if let Some(target) = nth(&mut doc, at % size) {
                *target = value.clone();
            }
        }
        Mutation::Remove(at) => {
            if let Some(Value::Object(fields)) = nth(&mut doc, at % size) {
                if !fields.is_empty() {
                    let key = fields.keys().nth(at % fields.len()).cloned();
                    if let Some(key) = key {
                        fields.remove(&key);
                    }
                }
            }
        }
        Mutation::Add(at, key, value) => {
            if let Some(Value::Object(fields)) = nth(&mut doc, at % size) {
                fields.insert(key.clone(), value.clone());
            }
        }
        Mutation::Nest(at, depth) => {
            if let Some(target) = nth(&mut doc, at % size) {
                let mut value = target.take();
                for _ in 0..*depth {
                    value = Value::Array(vec![value]);
                }
                *target = value;
            }
        }
    }
    doc
}

/// One change to a document's text.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Cut it short.
    Truncate(usize),
    /// Put text in somewhere.
    Insert(usize, String),
    /// Say the first field again, with another value (JSON allows duplicate keys; parsers
    /// differ on which one wins).
    DuplicateFirst(Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    let junk = prop_oneof![
        prop::sample::select(
            &[
                "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\udc00", "\\u0000",
                "null", "1e999", "-", "0", "\u{0}", "\u{feff}", " ",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), junk).prop_map(|(at, text)| Edit::Insert(at, text)),
        json_value().prop_map(Edit::DuplicateFirst),
    ]
}

/// The nearest character boundary of `text` at or below `at` (taken modulo its length).
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` with `edit` applied.
pub fn edit_text(mut text: String, edit: &Edit) -> String {
    match edit {
        Edit::Truncate(at) => text.truncate(boundary(&text, *at)),
        Edit::Insert(at, junk) => text.insert_str(boundary(&text, *at), junk),
        Edit::DuplicateFirst(value) => {
            if let Some(open) = text.find('{') {
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) {
                    if let Some(key) = fields.keys().next() {
                        let field = format!("{}:{value},", Value::String(key.clone()));
                        text.insert_str(open + 1, &field);
                    }
                }
            }
        }
    }
    text
}

/// Text the JSON tokenizer sees a lot of: JSON's punctuation, literals, escapes and the
/// protocol's words run together in any order.
pub fn json_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(
            &[
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"",
                "\"type\":",
                "\"to\":",
                "\"sdp\":",
                "\"candidate\":",
                "\"text\":",
                "\"muted\":",
                "null",
                "true",
                "false",
                "-0",
                "1e999",
                "18446744073709551616",
                "9007199254740993",
                "1.5",
                "\\u0000",
                "\\ud83d\\ude00",
                "\\ud800",
                " ",
                "\n",
            ][..]
        )
        .prop_map(str::to_owned),
        prop::sample::select(WORDS).prop_map(|w| format!("\"{w}\"")),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// Arrays or objects nested `depth` deep, around a valid message's text or nothing: past
/// serde_json's limit of 128, and the browser's.
pub fn deep_nesting() -> impl Strategy<Value = String> {
    (1usize..3_000, any::<bool>()).prop_map(|(depth, objects)| {
        if objects {
            format!("{}1{}", "{\"type\":".repeat(depth), "}".repeat(depth))
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
    })
}

/// Frames for a JSON reader: the valid documents of `valid` as written, the same with
/// [`Mutation`]s and text [`Edit`]s, JSON of any shape, token soup, deep nesting and arbitrary
/// text.
pub fn json_frames(valid: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = String> {
    let valid = valid.boxed();
    let mutated = (
        valid.clone(),
        prop::collection::vec(mutation(), 1..4),
        prop::collection::vec(edit(), 0..2),
    )
        .prop_map(|(doc, mutations, edits)| {
            let doc = mutations.iter().fold(doc, apply);
            edits.iter().fold(doc.to_string(), edit_text)
        });
    let edited = (valid.clone(), prop::collection::vec(edit(), 1..3))
        .prop_map(|(doc, edits)| edits.iter().fold(doc.to_string(), edit_text));
    prop_oneof![
        2 => valid.prop_map(|doc| doc.to_string()),
        4 => mutated,
        2 => edited,
        2 => json_value().prop_map(|doc| doc.to_string()),
        2 => json_soup(),
        1 => deep_nesting(),
        1 => any::<String>(),
    ]
}

/// Any bytes, from none to `max`, with the short ones most often.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..=max),
    ]
}

/// Changes to a valid binary message: a byte or a 16-bit length field set to anything, bytes
/// cut off the end or added to it.
#[derive(Clone, Debug)]
pub enum ByteEdit {
    /// Set the byte at this index.
    Set(usize, u8),
    /// Set the big-endian 16-bit field at this (even) index.
    SetU16(usize, u16),
    /// Keep this many bytes.
    Truncate(usize),
    /// Add these.
    Append(Vec<u8>),
}

/// A few [`ByteEdit`]s.
pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Set(at, b)),
        (any::<usize>(), any::<u16>()).prop_map(|(at, v)| ByteEdit::SetU16(at, v)),
        any::<usize>().prop_map(ByteEdit::Truncate),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(ByteEdit::Append),
    ];
    prop::collection::vec(edit, 0..4)
}

/// `bytes` with `edits` applied, indexes taken modulo the length.
pub fn edit_bytes(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        match edit {
            ByteEdit::Set(at, b) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = *b;
            }
            ByteEdit::SetU16(at, v) if bytes.len() >= 2 => {
                let at = (at % (bytes.len() - 1)) & !1;
                bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            ByteEdit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            ByteEdit::Append(more) => bytes.extend_from_slice(more),
            _ => {}
        }
    }
    bytes
}

/// The page's reading of a document (`client::json::Js`, over what `JSON.parse` made), modelled
/// on a serde_json document so that it runs on the host: the same fields, but every number is
/// a JavaScript number (an `f64`), so `2.0` is the whole number 2 and a large integer is
/// rounded before it is checked, as in the browser.
#[derive(Clone, Copy, Debug)]
pub struct JsModel<'a>(pub &'a Value);

impl protocol::JsonView for JsModel<'_> {
    fn field(&self, key: &str) -> Option<Self> {
        self.0.get(key).filter(|v| !v.is_null()).map(JsModel)
    }

    fn string(&self) -> Option<String> {
        self.0.as_str().map(str::to_owned)
    }

    fn integer(&self) -> Option<u64> {
        self.0.as_f64().and_then(protocol::exact_integer)
    }

    fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }

    fn items(&self) -> Option<Vec<Self>> {
        self.0
            .as_array()
            .map(|items| items.iter().map(JsModel).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_reach_every_value_and_stay_json() {
        let doc: Value = serde_json::from_str(r#"{"a":[1,{"b":2}],"c":"d"}"#).expect("JSON");
        assert_eq!(count(&doc), 6);
        let replaced = apply(doc.clone(), &Mutation::Replace(4, Value::Null));
        assert_eq!(replaced.to_string(), r#"{"a":[1,{"b":null}],"c":"d"}"#);
        let nested = apply(doc.clone(), &Mutation::Nest(5, 2));
        assert_eq!(nested.to_string(), r#"{"a":[1,{"b":2}],"c":[["d"]]}"#);
        let text = edit_text(doc.to_string(), &Edit::DuplicateFirst(Value::from(7)));
        assert!(text.starts_with(r#"{"a":7,"a":"#), "{text}");
        assert_eq!(edit_text("é".into(), &Edit::Truncate(1)), "");
    }
}
