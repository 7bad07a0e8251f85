//! What the relay's test files share: reading the relay's next frame or event within a time
//! limit, over a plain or a TLS WebSocket alike, and joining a room. (Each test file is its own
//! crate and uses a part of it.)
#![allow(dead_code)]

pub mod http;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use protocol::{ClientMsg, IceServer, PeerId, PeerInfo, ServerMsg};
use tokio_tungstenite::tungstenite::{Error, Message};

/// How long any one read may take before the test fails instead of hanging.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// The next frame that is not a ping or pong, or a failure after [`RECV_TIMEOUT`].
pub async fn next_frame<S>(ws: &mut S) -> Message
where
    S: Stream<Item = Result<Message, Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a frame arrives in time")
            .expect("the connection is still open")
            .expect("the frame reads");
        if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
            return frame;
        }
    }
}

/// The next event from the relay: a text frame holding a [`ServerMsg`].
pub async fn recv<S>(ws: &mut S) -> ServerMsg
where
    S: Stream<Item = Result<Message, Error>> + Unpin,
{
    match next_frame(ws).await {
        Message::Text(text) => parse_event(text.as_str()),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// A text frame from the relay, which must be a [`ServerMsg`].
pub fn parse_event(text: &str) -> ServerMsg {
    ServerMsg::parse(text).unwrap_or_else(|err| panic!("not a ServerMsg ({err}): {text}"))
}

/// A `join` to `room`, as `name` if given, resuming the place of the token `resume` if given.
pub fn join_msg(room: &str, name: Option<&str>, resume: Option<&str>) -> ClientMsg {
    ClientMsg::Join {
        room: room.into(),
        name: name.map(Into::into),
        resume: resume.map(Into::into),
        session: None,
        passphrase: None,
    }
}

/// What a `welcome` told a peer.
#[derive(Debug)]
pub struct Welcome {
    pub id: PeerId,
    pub peers: Vec<PeerInfo>,
    pub ice_servers: Vec<IceServer>,
    pub token: String,
}

/// The next event, which must be the welcome to `room`, with an id a page can hold exactly and
/// a resume token nobody could guess.
pub async fn expect_welcome<S>(ws: &mut S, room: &str) -> Welcome
where
    S: Stream<Item = Result<Message, Error>> + Unpin,
{
    match recv(ws).await {
        ServerMsg::Welcome {
            id,
            room: joined,
            peers,
            ice_servers,
            resume_token,
        } => {
            assert_eq!(joined, room);
            assert!(id.0 < 1 << 53, "an id exact in JavaScript: {id}");
            assert!(
                resume_token.len() >= 16,
                "an unguessable resume token: {resume_token:?}"
            );
            Welcome {
                id,
                peers,
                ice_servers,
                token: resume_token,
            }
        }
        other => panic!("expected a welcome to {room:?}, got {other:?}"),
    }
}
