//! How the generator speaks to each relay: the URL path, how a peer gets ready (join, login,
//! Socket.IO namespace), how a signal is framed, and what a correctly relayed frame looks like.

use std::{net::SocketAddr, time::Duration};

use anyhow::{bail, ensure, Context};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, IceCandidate, PeerId, ServerMsg};
use rustls::HandshakeKind;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};

use crate::{
    tls,
    workload::{Kind, Payload},
};

/// One client WebSocket of the generator.
pub type Ws = WebSocketStream<TcpStream>;

/// How long the generator waits for any one setup reply before calling the relay broken.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The relays the benchmark knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelayKind {
    /// This project's relay (`server`).
    Ours,
    /// The seed Node `ws` relay: login by name, signals routed to a named peer.
    SeedWs,
    /// The seed express + socket.io relay: every message broadcast to every other socket.
    SeedSocketio,
    /// A bare tokio-tungstenite forwarder with no logic (the `forwarder` binary).
    Forwarder,
}

impl RelayKind {
    /// Every relay, in the order of the table.
    pub const ALL: [RelayKind; 4] = [
        RelayKind::Ours,
        RelayKind::SeedWs,
        RelayKind::SeedSocketio,
        RelayKind::Forwarder,
    ];

    /// The relay's name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Ours => "ours",
            RelayKind::SeedWs => "seed-ws",
            RelayKind::SeedSocketio => "seed-socketio",
            RelayKind::Forwarder => "forwarder",
        }
    }

    /// The relay named `name`.
    pub fn from_name(name: &str) -> Option<RelayKind> {
        RelayKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The path of the relay's WebSocket endpoint.
    pub fn path(self) -> &'static str {
        match self {
            RelayKind::Ours => "/ws",
            RelayKind::SeedSocketio => "/socket.io/?EIO=4&transport=websocket",
            RelayKind::SeedWs | RelayKind::Forwarder => "/",
        }
    }

    /// Its directory among the seed relays (`--anchors`, by default `../shared/anchors`).
    pub fn anchor_dir(self) -> Option<&'static str> {
        match self {
            RelayKind::SeedWs => Some("seed-ws"),
            RelayKind::SeedSocketio => Some("seed-socketio"),
            RelayKind::Ours | RelayKind::Forwarder => None,
        }
    }

    /// Whether every socket's messages reach every other socket. Such a relay is measured with
    /// one pair, so that each message is delivered once, to its intended receiver.
    pub fn broadcasts(self) -> bool {
        self == RelayKind::SeedSocketio
    }
}

/// How the relay knows a peer, as far as the generator needs to check where messages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ident {
    /// The id our relay gave it.
    Peer(PeerId),
    /// The name it logged in with (seed-ws).
    Name(String),
    /// Nothing: the relay does not tell its peers apart on the wire.
    Anonymous,
}

/// One client WebSocket over TLS (wss).
pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// Small buffers: the generator holds up to 10k sockets, and the relays' memory is measured, not
/// the generator's.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// A TCP connection to `addr`, with Nagle's algorithm off as browsers have it.
async fn connect_tcp(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Opens a WebSocket to `addr` at `path`.
pub async fn open(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let tcp = connect_tcp(addr).await?;
    let url = format!("ws://{addr}{path}");
    let (ws, _response) = client_async_with_config(url.as_str(), tcp, Some(ws_config()))
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}

/// Opens a wss WebSocket to `addr` (the relay's https port) at `path`: TCP, the TLS handshake
/// as `client` does it, then the HTTP upgrade inside. Says whether TLS resumed a session.
pub async fn open_tls(
    addr: SocketAddr,
    path: &str,
    client: &tls::Client,
) -> anyhow::Result<(Wss, bool)> {
    let tcp = connect_tcp(addr).await?;
    let stream = client
        .connector
        .connect(client.server_name.clone(), tcp)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    let url = format!("wss://{}:{}{path}", tls::SERVER_NAME, addr.port());
    let (ws, _response) = client_async_with_config(url.as_str(), stream, Some(ws_config()))
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok((ws, resumed))
}

/// The next text frame, skipping control frames; an error on close, failure or timeout.
pub async fn recv_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        let frame = tokio::time::timeout(SETUP_TIMEOUT, ws.next())
            .await
            .context("no reply from the relay in time")?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => bail!("the relay closed the socket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err).context("reading from the relay"),
            None => bail!("the relay closed the socket"),
        }
    }
}

/// Sends one text frame.
pub async fn send_text(ws: &mut Ws, text: impl Into<String>) -> anyhow::Result<()> {
    ws.send(Message::text(text.into()))
        .await
        .context("writing to the relay")
}

/// The next text frame of the type `kind` (our relay and seed-ws), skipping others.
async fn recv_type(ws: &mut Ws, kind: &str) -> anyhow::Result<Value> {
    loop {
        let text = recv_text(ws).await?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("the relay sent something that is not JSON: {text:.200}"))?;
        if value["type"] == kind {
            return Ok(value);
        }
        if value["type"] == "error" {
            bail!("the relay answered with an error: {text:.300}");
        }
    }
}

/// Gets a fresh socket ready to send signals: joins the room, logs in, or connects to the
/// Socket.IO namespace. Returns how the relay knows it.
pub async fn ready(kind: RelayKind, ws: &mut Ws, room: &str, name: &str) -> anyhow::Result<Ident> {
    match kind {
        RelayKind::Ours => {
            // Built as JSON rather than as a `ClientMsg::Join`, whose optional fields grow.
            send_text(ws, json!({"type": "join", "room": room}).to_string()).await?;
            let welcome = recv_type(ws, "welcome").await?;
            match ServerMsg::parse(&welcome.to_string()) {
                Ok(ServerMsg::Welcome { id, .. }) => Ok(Ident::Peer(id)),
                other => bail!("expected a welcome, got {other:?}"),
            }
        }
        RelayKind::SeedWs => {
            recv_type(ws, "hello").await?;
            send_text(ws, json!({"type": "login", "name": name}).to_string()).await?;
            let login = recv_type(ws, "login").await?;
            ensure!(login["success"] == true, "login refused: {login}");
            Ok(Ident::Name(name.to_owned()))
        }
        RelayKind::SeedSocketio => {
            // Engine.IO's open packet, then Socket.IO's CONNECT to the main namespace.
            let open = recv_text(ws).await?;
            ensure!(
                open.starts_with("0{"),
                "expected an Engine.IO open packet, got {open:.200}"
            );
            send_text(ws, "40").await?;
            loop {
                let reply = recv_text(ws).await?;
                if reply.starts_with("40") {
                    break;
                }
                ensure!(
                    reply == "2",
                    "expected a Socket.IO CONNECT reply, got {reply:.200}"
                );
                send_text(ws, "3").await?;
            }
            Ok(Ident::Anonymous)
        }
        RelayKind::Forwarder => Ok(Ident::Anonymous),
    }
}

/// Connects one pair: A first, then B, so that the forwarder (which pairs sockets in the order
/// their handshakes complete) puts them together. Returns A's and B's sockets and identities.
pub async fn connect_pair(
    kind: RelayKind,
    addr: SocketAddr,
    addr_b: SocketAddr,
    label: &str,
    pair: u32,
) -> anyhow::Result<[(Ws, Ident); 2]> {
    let room = format!("{label}-{pair}");
    let mut a = open(addr, kind.path()).await?;
    let a_id = ready(kind, &mut a, &room, &format!("{room}-a")).await?;
    let mut b = open(addr_b, kind.path()).await?;
    let b_id = ready(kind, &mut b, &room, &format!("{room}-b")).await?;
    if kind == RelayKind::Ours {
        // A hears that B arrived; read it now so the signal stream holds signals only.
        let joined = recv_type(&mut a, "peer-joined").await?;
        ensure!(
            Ident::Peer(PeerId(joined["peer"]["id"].as_u64().unwrap_or(0))) == b_id,
            "A was told of another peer than B: {joined}"
        );
    }
    Ok([(a, a_id), (b, b_id)])
}

/// A client frame carrying `payload` to `partner`, the way the relay's own clients send it.
pub fn encode(kind: RelayKind, payload: &Payload, partner: &Ident) -> String {
    let candidate = |line: &str| IceCandidate {
        candidate: line.to_owned(),
        sdp_mid: Some("0".to_owned()),
        sdp_m_line_index: Some(0),
    };
    match kind {
        // The forwarder passes frames through, so it gets our protocol's frames verbatim.
        RelayKind::Ours | RelayKind::Forwarder => match payload {
            Payload::Sdp(Kind::Answer, sdp) => ClientMsg::Answer {
                to: None,
                sdp: sdp.clone(),
            },
            Payload::Sdp(_, sdp) => ClientMsg::Offer {
                to: None,
                sdp: sdp.clone(),
            },
            Payload::Candidate(line) => ClientMsg::Candidate {
                to: None,
                candidate: candidate(line),
            },
        }
        .to_json(),
        // The seed page sends the RTCSessionDescription / RTCIceCandidate objects as they are.
        RelayKind::SeedWs => {
            let name = match partner {
                Ident::Name(name) => name.as_str(),
                _ => "",
            };
            match payload {
                Payload::Sdp(kind, sdp) => json!({
                    "type": kind.as_str(),
                    "name": name,
                    kind.as_str(): {"type": kind.as_str(), "sdp": sdp},
                }),
                Payload::Candidate(line) => json!({
                    "type": "candidate",
                    "name": name,
                    "candidate": candidate(line),
                }),
            }
            .to_string()
        }
        // The seed page emits 'message' with a JSON string: `JSON.stringify(pc.localDescription)`
        // or `JSON.stringify({event: '_ice_candidate', data: {candidate}})`; the relay parses it
        // and broadcasts the object.
        RelayKind::SeedSocketio => {
            let inner = match payload {
                Payload::Sdp(kind, sdp) => json!({"type": kind.as_str(), "sdp": sdp}),
                Payload::Candidate(line) => {
                    json!({"event": "_ice_candidate", "data": {"candidate": candidate(line)}})
                }
            };
            format!("42{}", json!(["message", inner.to_string()]))
        }
    }
}

/// Checks that a relayed frame is the message of type `expected` from `partner`, shaped as the
/// relay's clients expect it. Only in `--verify` runs: it parses every frame.
pub fn verify(kind: RelayKind, text: &str, expected: Kind, partner: &Ident) -> Result<(), String> {
    let ok = match kind {
        RelayKind::Ours => {
            let Ident::Peer(partner) = partner else {
                return Err("no peer id for the partner".into());
            };
            match (ServerMsg::parse(text), expected) {
                (Ok(ServerMsg::Offer { from, .. }), Kind::Offer)
                | (Ok(ServerMsg::Answer { from, .. }), Kind::Answer) => from == *partner,
                (
                    Ok(ServerMsg::Candidate {
                        from, candidate, ..
                    }),
                    Kind::Candidate,
                ) => {
                    from == *partner
                        && candidate.sdp_mid.as_deref() == Some("0")
                        && candidate.sdp_m_line_index == Some(0)
                }
                _ => false,
            }
        }
        RelayKind::Forwarder => matches!(
            (ClientMsg::parse(text), expected),
            (Ok(ClientMsg::Offer { to: None, .. }), Kind::Offer)
                | (Ok(ClientMsg::Answer { to: None, .. }), Kind::Answer)
                | (Ok(ClientMsg::Candidate { to: None, .. }), Kind::Candidate)
        ),
        RelayKind::SeedWs => {
            let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let kind = expected.as_str();
            value["type"] == kind
                && match expected {
                    Kind::Offer => {
                        value["offer"]["type"] == "offer"
                            && matches!(partner, Ident::Name(name) if value["name"] == name.as_str())
                    }
                    Kind::Answer => value["answer"]["type"] == "answer",
                    Kind::Candidate => value["candidate"]["sdpMid"] == "0",
                }
        }
        RelayKind::SeedSocketio => {
            let value: Value = text
                .strip_prefix("42")
                .and_then(|rest| serde_json::from_str(rest).ok())
                .ok_or("not a Socket.IO EVENT packet")?;
            value[0] == "message"
                && match expected {
                    Kind::Candidate => {
                        value[1]["event"] == "_ice_candidate"
                            && value[1]["data"]["candidate"]["candidate"].is_string()
                    }
                    _ => value[1]["type"] == expected.as_str() && value[1]["sdp"].is_string(),
                }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not a relayed {} from {partner:?}: {text:.300}",
            expected.as_str()
        ))
    }
}

/// The reply a frame that is not a signal asks for, if it is a keep-alive (Socket.IO's ping).
pub fn keepalive_reply(kind: RelayKind, text: &str) -> Option<&'static str> {
    (kind == RelayKind::SeedSocketio && text == "2").then_some("3")
}
