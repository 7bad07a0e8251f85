//! Fuzz targets for what the TURN server reads before the TURN crate does: the pre-filter of
//! every datagram and frame ([`State::inspect`]) and the framing of TURN over TCP and TLS
//! ([`read_frame`]). Inputs are arbitrary bytes, STUN messages with valid headers and broken
//! attributes, and requests signed with valid credentials (so that the permission and quota
//! checks run), each also cut short, lengthened or with bytes changed.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuzzing::{
    byte_edits, bytes, check, edit_bytes, proptest::prelude::*,
    proptest::test_runner::TestCaseError, run,
};
use stun::{
    agent::TransactionId,
    attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME},
    integrity::MessageIntegrity,
    message::{
        Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST,
        CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
        METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
    },
    textattrs::TextAttribute,
};
use tokio_util::sync::CancellationToken;
use turn::proto::{
    channum::ChannelNumber, data::Data, lifetime::Lifetime, peeraddr::PeerAddress,
    reqtrans::RequestedTransport, PROTO_UDP,
};

use super::{
    conn::{State, StateConfig, Verdict},
    policy::PeerPolicy,
    tcp::{read_frame, FrameError, Reader},
    Quota, REALM,
};
use crate::{fuzz::datagrams, ice::TurnSecret, Config, Relay};

/// Cases per target in `cargo test`: about a second each in a debug build.
const CASES: u32 = 300;

/// The secret the fuzzed server mints credentials with.
const SECRET: &str = "fuzz";

/// The STUN message types of TURN: requests, indications, responses.
const TYPES: &[u16] = &[
    0x0001, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0017, 0x0103, 0x0113, 0x0111,
];

/// A TURN server's shared state, as `turn_server::serve` makes it, without sockets.
fn state() -> State {
    let relay = Relay::new(&Config::default(), CancellationToken::new());
    State::new(
        StateConfig {
            policy: PeerPolicy::new(
                false,
                vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))],
                vec![],
            ),
            quota: Quota::default(),
            secret: TurnSecret::new(SECRET),
            max_kbps: 0,
            ports: super::DEFAULT_PORTS,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        },
        relay,
        CancellationToken::new(),
    )
}

/// A TURN request or indication as a browser sends it, signed with a credential the server
/// accepts (or one expired, or for another realm), towards any peer.
fn signed() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        METHOD_ALLOCATE,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
        METHOD_REFRESH,
        METHOD_BINDING,
        METHOD_SEND,
    ]);
    let peer = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        prop::sample::select(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        ]),
    ];
    (
        method,
        any::<bool>(),
        any::<[u8; 12]>(),
        (
            any::<bool>(),
            any::<u64>(),
            prop_oneof![Just(REALM.to_owned()), "[a-z]{0,8}"],
        ),
        (peer, any::<u16>(), 0x4000u16..0x4004, any::<u32>()),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(
                method,
                indication,
                id,
                (valid, user, realm),
                (ip, port, channel, lifetime),
                data,
            )| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let expiry = if valid {
                    now + 3600
                } else {
                    now.saturating_sub(1)
                };
                let username = format!("{expiry}:{user}");
                let password = crate::ice::turn_credential(&TurnSecret::new(SECRET), &username);
                let key = turn::auth::generate_auth_key(&username, &realm, &password);
                let class = if indication {
                    CLASS_INDICATION
                } else {
                    CLASS_REQUEST
                };
                let setters: Vec<Box<dyn Setter>> = vec![
                    Box::new(TransactionId(id)),
                    Box::new(MessageType::new(method, class)),
                    Box::new(RequestedTransport {
                        protocol: PROTO_UDP,
                    }),
                    Box::new(PeerAddress { ip, port }),
                    Box::new(ChannelNumber(channel)),
                    Box::new(Lifetime(Duration::from_secs(u64::from(lifetime)))),
                    Box::new(Data(data)),
                    Box::new(TextAttribute::new(ATTR_USERNAME, username)),
                    Box::new(TextAttribute::new(ATTR_REALM, realm)),
                    Box::new(TextAttribute::new(ATTR_NONCE, "nonce".into())),
                    Box::new(MessageIntegrity(key)),
                ];
                let mut message = Message::new();
                match message.build(&setters) {
                    Ok(()) => message.raw,
                    Err(_) => Vec::new(),
                }
            },
        )
}

/// ChannelData: a channel number, a length, the data, maybe padded to 4 bytes.
fn channel_data() -> impl Strategy<Value = Vec<u8>> {
    (
        0x4000u16..=0x7fff,
        prop::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
    )
        .prop_map(|(channel, data, pad)| {
            let mut frame = channel.to_be_bytes().to_vec();
            frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
            frame.extend_from_slice(&data);
            if pad {
                frame.resize(frame.len().div_ceil(4) * 4, 0);
            }
            frame
        })
}

/// Datagrams for the TURN port: arbitrary, STUN-shaped, signed and ChannelData, each maybe
/// broken.
fn turn_datagrams() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => datagrams(TYPES),
        2 => (signed(), byte_edits()).prop_map(|(m, edits)| edit_bytes(m, &edits)),
        1 => (channel_data(), byte_edits()).prop_map(|(m, edits)| edit_bytes(m, &edits)),
    ]
}

/// What the pre-filter answers itself is a STUN response to the request it read: the same
/// transaction, a success or an error class. Garbage is dropped, ChannelData passed on.
fn inspect_checked(
    state: &State,
    datagram: &[u8],
    from: SocketAddr,
    local: SocketAddr,
) -> Result<(), TestCaseError> {
    let verdict = state.inspect(datagram, from, local);
    let channel_data = datagram.first().is_some_and(|b| b & 0xc0 == 0x40);
    if channel_data {
        return check(verdict == Verdict::Pass, || {
            format!("ChannelData: {verdict:?}")
        });
    }
    if datagram.first().is_none_or(|b| b & 0xc0 != 0) {
        return check(verdict == Verdict::Drop, || format!("garbage: {verdict:?}"));
    }
    let Verdict::Answer(reply) = verdict else {
        return Ok(());
    };
    let mut decoded = Message {
        raw: reply,
        ..Message::default()
    };
    check(decoded.decode().is_ok(), || {
        "the answer does not decode".into()
    })?;
    check(decoded.transaction_id.0[..] == datagram[8..20], || {
        "an answer to another transaction".into()
    })?;
    let response = [CLASS_SUCCESS_RESPONSE, CLASS_ERROR_RESPONSE].contains(&decoded.typ.class);
    check(response, || format!("answered with a {}", decoded.typ))
}

fn source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        Just(SocketAddr::from(([198, 51, 100, 2], 50_000))),
        any::<([u8; 4], u16)>().prop_map(SocketAddr::from),
    ]
}

/// A datagram whose first bits say neither STUN nor ChannelData, with a STUN magic cookie:
/// the pre-filter passed it to the crate before fuzzing found it.
#[test]
fn a_datagram_with_the_top_bits_set_is_dropped() {
    let datagram = [
        128, 0, 0, 68, 33, 18, 164, 66, 0, 0, 0, 0, 0, 0, 2, 226, 11, 190, 137, 228, 0, 86, 0, 4,
        232, 98, 0, 141, 62, 5, 0, 13, 202, 241, 248, 112, 2, 167, 51, 112, 180, 172, 206, 119,
        197, 0, 0, 0, 0, 22, 0, 4, 102, 229, 191, 241, 0, 18, 0, 26, 109, 223, 110, 8, 99, 252, 66,
        131, 211, 236, 207, 178, 68, 97, 221, 249, 7, 106, 106, 134, 89, 125, 14, 131, 116, 102, 0,
        0,
    ];
    let from = SocketAddr::from(([198, 51, 100, 2], 50_000));
    let local = SocketAddr::from(([203, 0, 113, 1], 3478));
    assert_eq!(state().inspect(&datagram, from, local), Verdict::Drop);
}

/// Every datagram on the STUN port gets a verdict without a panic: passed to the crate,
/// dropped, or answered with a response to it.
#[test]
fn fuzz_turn_datagrams() {
    let state = state();
    let local = SocketAddr::from(([203, 0, 113, 1], 3478));
    run(
        "turn-datagrams",
        CASES,
        (turn_datagrams(), source()),
        |(datagram, from)| inspect_checked(&state, &datagram, from, local),
    );
}

/// The frames a stream of `bytes` holds for `max`, as RFC 5766 2.1 cuts them, and the error
/// that ends it: what [`read_frame`] must find.
fn model_frames(mut bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, &'static str) {
    let mut frames = Vec::new();
    loop {
        if bytes.len() < 4 {
            // The whole header is read before it is looked at.
            return (frames, "io");
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let total = match bytes[0] >> 6 {
            0 => 20 + len,
            1 => 4 + len.div_ceil(4) * 4,
            _ => return (frames, "garbage"),
        };
        if total > max {
            return (frames, "too-long");
        }
        if bytes.len() < total {
            return (frames, "io");
        }
        frames.push(bytes[..total].to_vec());
        bytes = &bytes[total..];
    }
}

/// A stream of frames, whole or broken, or arbitrary bytes.
fn streams() -> impl Strategy<Value = Vec<u8>> {
    let frame = prop_oneof![signed(), channel_data(), datagrams(TYPES)];
    prop_oneof![
        1 => bytes(2_000),
        3 => (prop::collection::vec(frame, 0..6), byte_edits())
            .prop_map(|(frames, edits)| edit_bytes(frames.concat(), &edits)),
    ]
}

/// TURN over a stream is cut into exactly the frames its headers say, up to the largest a
/// socket read takes; a stream that loses its framing or says too much ends with its typed
/// error; and every frame then goes through the same pre-filter as a datagram.
#[test]
fn fuzz_turn_tcp_frames() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let state = Arc::new(state());
    let local = SocketAddr::from(([203, 0, 113, 1], 3478));
    let from = SocketAddr::from(([198, 51, 100, 2], 50_000));
    let max = prop_oneof![Just(1500usize), Just(65_535 + 20), 0usize..200];
    run(
        "turn-tcp-frames",
        CASES,
        (streams(), max),
        |(stream, max)| {
            let (expected, expected_end) = model_frames(&stream, max);
            let mut reader: Reader = Box::new(std::io::Cursor::new(stream.clone()));
            let mut frames = Vec::new();
            let end = runtime.block_on(async {
                loop {
                    match read_frame(&mut reader, max).await {
                        Ok(frame) => frames.push(frame),
                        Err(err) => return err,
                    }
                }
            });
            let end = match end {
                FrameError::Io(_) => "io",
                FrameError::Garbage => "garbage",
                FrameError::TooLong(_) => "too-long",
                FrameError::Timeout => "timeout",
            };
            check(frames == expected, || {
                format!("cut into {} frames, not {}", frames.len(), expected.len())
            })?;
            check(end == expected_end, || {
                format!("ended by {end}, not {expected_end}")
            })?;
            for frame in &frames {
                inspect_checked(&state, frame, from, local)?;
            }
            Ok(())
        },
    );
}
