//! Fuzz targets for the two JSON readers a stranger reaches: the relay's reading of a client's
//! frame ([`Request::parse`], and [`ClientMsg::parse`] behind it) and the page's reading of the
//! relay's events ([`ServerMsg::read`], over serde_json's document as the relay's tests read it
//! and over a model of the browser's). See the `fuzzing` crate for how they run.
#![cfg(not(target_arch = "wasm32"))]

use fuzzing::{check, json_frames, proptest::prelude::*, run, JsModel};
use protocol::{
    ClientMsg, ErrorKind, IceCandidate, IceServer, PeerId, PeerInfo, Request, ServerMsg, Signal,
};
use serde_json::Value;

/// Cases per target in `cargo test`: about a second each in a debug build.
const CASES: u32 = 300;

/// Short strings mostly, awkward ones often, a long one now and then.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ -~]{0,12}",
        3 => any::<String>(),
        1 => fuzzing::awkward_string(),
    ]
}

/// An id the relay hands out: below 2^53, so that JavaScript holds it exactly.
fn peer_id() -> impl Strategy<Value = PeerId> {
    prop_oneof![0u64..10, 0u64..=(1 << 53)].prop_map(PeerId)
}

fn candidate() -> impl Strategy<Value = IceCandidate> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(candidate, sdp_mid, sdp_m_line_index)| IceCandidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        })
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        text().prop_map(Signal::Offer),
        text().prop_map(Signal::Answer),
        candidate().prop_map(Signal::Candidate),
        Just(Signal::HangUp),
    ]
}

/// Any request a client may send. `to` may be any number here: a client may name any id.
fn client_msg() -> impl Strategy<Value = ClientMsg> {
    let join = (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(room, name, resume, session, passphrase)| ClientMsg::Join {
                room,
                name,
                resume,
                session,
                passphrase,
            },
        );
    let control = prop_oneof![
        any::<bool>().prop_map(|locked| ClientMsg::Lock { locked }),
        text().prop_map(|passphrase| ClientMsg::Passphrase { passphrase }),
        text().prop_map(|session| ClientMsg::Admit { session }),
        text().prop_map(|session| ClientMsg::Refuse { session }),
        any::<u64>().prop_map(|peer| ClientMsg::Remove { peer: PeerId(peer) }),
    ];
    let to = prop::option::of(prop_oneof![peer_id(), any::<u64>().prop_map(PeerId)]);
    let relayed = (signal(), to).prop_map(|(signal, to)| match (signal.to_peer(PeerId(0)), to) {
        (ClientMsg::Offer { sdp, .. }, to) => ClientMsg::Offer { to, sdp },
        (ClientMsg::Answer { sdp, .. }, to) => ClientMsg::Answer { to, sdp },
        (ClientMsg::Candidate { candidate, .. }, to) => ClientMsg::Candidate { to, candidate },
        (_, to) => ClientMsg::HangUp { to },
    });
    prop_oneof![2 => join, 5 => relayed, 1 => control, 1 => Just(ClientMsg::Ping)]
}

fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (
        peer_id(),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(id, name, session)| PeerInfo { id, name, session })
}

fn ice_server() -> impl Strategy<Value = IceServer> {
    (
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(urls, username, credential)| IceServer {
            urls,
            username,
            credential,
        })
}

/// Any event the relay may send.
fn server_msg() -> impl Strategy<Value = ServerMsg> {
    let welcome = (
        peer_id(),
        text(),
        prop::collection::vec(peer_info(), 0..4),
        prop::collection::vec(ice_server(), 0..3),
        text(),
    )
        .prop_map(
            |(id, room, peers, ice_servers, resume_token)| ServerMsg::Welcome {
                id,
                room,
                peers,
                ice_servers,
                resume_token,
            },
        );
    prop_oneof![
        welcome,
        peer_info().prop_map(|peer| ServerMsg::PeerJoined { peer }),
        (peer_id(), any::<bool>())
            .prop_map(|(peer, reconnecting)| ServerMsg::PeerLeft { peer, reconnecting }),
        (signal(), peer_id(), prop::option::of(text()))
            .prop_map(|(signal, from, name)| signal.from_peer(from, name)),
        prop::collection::vec(ice_server(), 0..3)
            .prop_map(|ice_servers| ServerMsg::IceServers { ice_servers }),
        Just(ServerMsg::Pong),
        Just(ServerMsg::Removed),
        (
            peer_id(),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(
                (text(), prop::option::of(text()))
                    .prop_map(|(session, name)| protocol::Knock { session, name }),
                0..3
            )
        )
            .prop_map(
                |(controller, locked, passphrase, knocking)| ServerMsg::Room {
                    controller,
                    locked,
                    passphrase,
                    knocking
                }
            ),
        (prop::sample::select(&ErrorKind::ALL[..]), text())
            .prop_map(|(kind, message)| ServerMsg::error(kind, message)),
    ]
}

fn doc(msg: &impl serde::Serialize) -> Value {
    serde_json::to_value(msg).expect("a message serializes")
}

/// What the relay's fast path sends the addressee, read back by the page: the same event as
/// forwarding the typed signal.
fn stamped_reads_back(
    signal: &protocol::RawSignal,
    typed: Signal,
    from: PeerId,
    name: Option<&str>,
) -> Result<(), TestCaseError> {
    let stamped = signal.stamped(from, name);
    let expected = typed.from_peer(from, name.map(str::to_owned));
    let read = ServerMsg::parse(&stamped);
    check(read.as_ref() == Ok(&expected), || {
        format!("the relay wrote {stamped}, read back as {read:?}, not {expected:?}")
    })
}

/// The relay's reading of what a client sends: the fast path ([`Request::parse`]) accepts and
/// refuses exactly what [`ClientMsg::parse`] does, with the same typed error, and what it
/// forwards reads back as the signal the client sent.
#[test]
fn fuzz_client_requests() {
    let frames = json_frames(client_msg().prop_map(|msg| doc(&msg)));
    run("client-requests", CASES, frames, |text| {
        let request = Request::parse(&text);
        let typed = ClientMsg::parse(&text);
        match (request, typed) {
            (Err(err), Err(expected)) => check(err == expected, || {
                format!("refused as {err:?}, but ClientMsg says {expected:?}")
            }),
            (Ok(Request::Relay { to, signal }), Ok(msg)) => {
                let Request::Relay {
                    to: expected_to,
                    signal: _,
                } = Request::from(msg.clone())
                else {
                    return check(false, || format!("relayed, but ClientMsg reads {msg:?}"));
                };
                check(to == expected_to, || format!("to {to:?} for {msg:?}"))?;
                let typed = match msg {
                    ClientMsg::Offer { sdp, .. } => Signal::Offer(sdp),
                    ClientMsg::Answer { sdp, .. } => Signal::Answer(sdp),
                    ClientMsg::Candidate { candidate, .. } => Signal::Candidate(candidate),
                    _ => Signal::HangUp,
                };
                stamped_reads_back(&signal, typed, PeerId(5), Some("ann"))
            }
            (Ok(request), Ok(msg)) => check(request == Request::from(msg.clone()), || {
                format!("read as {request:?}, but ClientMsg reads {msg:?}")
            }),
            // Known differences, found by this target: fields the envelope steps over unread
            // and ClientMsg reads and refuses (see KNOWN_DIFFERENCES).
            (Ok(Request::Relay { .. }), Err(protocol::ParseError::InvalidJson(why)))
                if KNOWN_DIFFERENCES.iter().any(|known| why.contains(known)) =>
            {
                Ok(())
            }
            (request, typed) => check(false, || {
                format!("the fast path says {request:?}, ClientMsg says {typed:?}")
            }),
        }
    });
}

/// Whatever a client writes, the relay reads back as written, and passes on so that the
/// addressee reads the same signal.
#[test]
fn fuzz_client_round_trip() {
    let cases = (client_msg(), peer_id(), prop::option::of(text()));
    run("client-round-trip", CASES, cases, |(msg, from, name)| {
        let text = msg.to_json();
        let read = ClientMsg::parse(&text);
        check(read.as_ref() == Ok(&msg), || {
            format!("{text} read as {read:?}")
        })?;
        match (Request::parse(&text), Request::from(msg.clone())) {
            (
                Ok(Request::Relay { to, signal }),
                Request::Relay {
                    to: expected_to,
                    signal: expected,
                },
            ) => {
                check(to == expected_to, || format!("{text}: to {to:?}"))?;
                let typed = match msg {
                    ClientMsg::Offer { sdp, .. } => Signal::Offer(sdp),
                    ClientMsg::Answer { sdp, .. } => Signal::Answer(sdp),
                    ClientMsg::Candidate { candidate, .. } => Signal::Candidate(candidate),
                    _ => Signal::HangUp,
                };
                stamped_reads_back(&signal, typed.clone(), from, name.as_deref())?;
                stamped_reads_back(&expected, typed, from, name.as_deref())
            }
            (read, expected) => check(read.as_ref() == Ok(&expected), || {
                format!("{text} read as {read:?}, not {expected:?}")
            }),
        }
    });
}

/// The page's reading of what the relay sends, over both views: never a panic; what the
/// relay's own reading (serde_json's numbers) accepts, the browser's (JavaScript numbers)
/// accepts as the same event; and an event read is written back the same.
#[test]
fn fuzz_server_events() {
    let frames = json_frames(server_msg().prop_map(|msg| doc(&msg)));
    run("server-events", CASES, frames, |text| {
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            // Not JSON: the page's `JSON.parse` throws and the frame is refused before any view.
            return check(ServerMsg::parse(&text).is_err(), || "not JSON, read".into());
        };
        let serde = ServerMsg::read(&doc);
        let js = ServerMsg::read(JsModel(&doc));
        if let Ok(msg) = &serde {
            check(js.as_ref() == Ok(msg), || {
                format!("serde_json reads {msg:?}, the browser {js:?}")
            })?;
        }
        for msg in [serde, js].into_iter().flatten() {
            let again = ServerMsg::parse(&msg.to_json());
            check(again.as_ref() == Ok(&msg), || {
                format!("{msg:?} written and read back as {again:?}")
            })?;
        }
        Ok(())
    });
}

/// Every event the relay writes reads back as written, on both views.
#[test]
fn fuzz_server_round_trip() {
    run("server-round-trip", CASES, server_msg(), |msg| {
        let text = msg.to_json();
        let read = ServerMsg::parse(&text);
        check(read.as_ref() == Ok(&msg), || {
            format!("{text} read as {read:?}")
        })?;
        let doc: Value = serde_json::from_str(&text).expect("the relay writes JSON");
        let js = ServerMsg::read(JsModel(&doc));
        check(js.as_ref() == Ok(&msg), || {
            format!("{text} read by the browser as {js:?}")
        })
    });
}

/// What ClientMsg refuses in an unknown field and the fast path, which steps over the field
/// unread, does not. Harmless: the field is never forwarded, and the addressee reads the signal
/// back without it (the tests below). Found by `client-requests`:
/// - nesting 127 deep: ClientMsg buffers the object before it reads it, one level deeper than
///   the envelope, and meets serde_json's limit of 128 levels;
/// - a number too large for a float (`-1e9999223372036854775808`), in a ten-minute run.
const KNOWN_DIFFERENCES: [&str; 2] = ["recursion limit", "number out of range"];

/// Asserts that ClientMsg refuses `text` as invalid JSON saying `why`, and that the fast path
/// forwards it to `to` as an offer of `sdp` that the addressee reads back.
fn forwarded_though_clientmsg_refuses(text: &str, why: &str, to: Option<PeerId>, sdp: &str) {
    assert!(matches!(
        ClientMsg::parse(text),
        Err(protocol::ParseError::InvalidJson(err)) if err.contains(why)
    ));
    let Ok(Request::Relay {
        to: forwarded_to,
        signal,
    }) = Request::parse(text)
    else {
        panic!("the fast path forwards it");
    };
    assert_eq!(forwarded_to, to);
    assert_eq!(
        ServerMsg::parse(&signal.stamped(PeerId(1), None)),
        Ok(ServerMsg::Offer {
            from: PeerId(1),
            from_name: None,
            sdp: sdp.into()
        })
    );
}

#[test]
fn a_signal_nested_at_the_limit() {
    let text = format!(
        r#"{{"join":{}null],null{},"sdp":"","type":"offer"}}"#,
        "[".repeat(127),
        "]".repeat(126)
    );
    forwarded_though_clientmsg_refuses(&text, "recursion limit", None, "");
}

/// The ten-minute run's input, shortened.
#[test]
fn a_signal_with_a_number_out_of_range_in_an_unknown_field() {
    let text = r#"{"":{"from":[-1e9999223372036854775808]},"sdp":"v=0","to":0,"type":"offer"}"#;
    forwarded_though_clientmsg_refuses(text, "number out of range", Some(PeerId(0)), "v=0");
}
