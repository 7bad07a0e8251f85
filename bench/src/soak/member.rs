//! One member of a soak room: joins, signals its roommates the way pages do, and leaves in one
//! of three ways, possibly coming back on a new socket with its resume token.
//!
//! Signaling follows a call's shape: on `welcome` the newcomer offers to everyone already there
//! and trickles candidates after each offer; whoever gets an offer answers it and trickles its
//! own; every few seconds a member renegotiates with one roommate. When a roommate's socket
//! drops (`peer-left` with `reconnecting`), a member sometimes sends it a candidate anyway: the
//! relay must hold it for the resume or answer `expired`.
//!
//! Before it goes, a member stops sending and waits until each of its signals was delivered or
//! refused, so that no `error` meant for it dies with its socket; see [`super::ledger`].

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, IceCandidate, PeerId, ServerMsg};
use serde_json::json;
use tokio::{
    sync::watch,
    time::{sleep, sleep_until, timeout, Instant},
};
use tokio_tungstenite::tungstenite::Message;

use super::{
    ledger::{End, IncIx, Kind, Ledger, MemberIx},
    Rng,
};
use crate::{
    dialect::{self, Ws},
    workload,
};

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Members come, signal and go.
    Run,
    /// Nobody sends or goes any more; signals in flight settle.
    Quiet,
    /// Everybody leaves with a Close.
    Leave,
}

/// What every member task shares.
pub struct Shared {
    /// The books.
    pub ledger: Mutex<Ledger>,
    /// The relays' ws addresses; a member joins (and resumes on) any of them.
    pub relays: Vec<SocketAddr>,
    /// The run's phase.
    pub phase: watch::Receiver<Phase>,
    /// The relay's hold time (`--hold-secs`).
    pub hold: Duration,
    /// The relay's resume grace (`--resume-grace-secs`).
    pub grace: Duration,
    /// How long a member that is about to leave waits for each of its signals to be delivered
    /// or refused: the hold time and a margin, and in the chaos run the fault's time too (while
    /// Redis is away no relay can say a held signal expired).
    pub settle: Duration,
    /// How long one socket of a member lives, at least and at most.
    pub lifetime: (Duration, Duration),
    /// A view of a room may lag the truth by this much before it counts as wrong.
    pub view_margin: Duration,
    /// Members come back, as pages do, when the relay breaks their socket or cannot reach
    /// Redis, instead of counting it a failure (the chaos run).
    pub resilient: bool,
}

/// The relay's side broke the socket (closed it, reset it, or stopped answering).
#[derive(Debug)]
struct RelayBroke(String);

impl std::fmt::Display for RelayBroke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the relay broke the socket: {}", self.0)
    }
}

impl std::error::Error for RelayBroke {}

fn broke(why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(RelayBroke(why.into()))
}

/// Why a join did not go through.
enum JoinFailed {
    /// The resume token was refused: the place is gone.
    PlaceLost,
    /// The relay could not be reached, broke the socket, or could not reach Redis.
    Transient(anyhow::Error),
    /// Anything else.
    Failed(anyhow::Error),
}

impl Shared {
    /// The books, locked. Nothing awaits while they are held.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a member's socket ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// A Close frame: the others are told it left.
    Leave,
    /// Dropped without a Close, back with the resume token after a short while.
    DropAndResume,
    /// Dropped without a Close, never back: the others are told it is reconnecting, and the
    /// relay gives its place away after the grace period.
    DropForGood,
}

/// Lives one member: joins room `room`, and on, until it leaves for good or the run ends.
pub async fn live(shared: Arc<Shared>, member: MemberIx, room: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut resume: Option<String> = None;
    let mut relay = rng.below(shared.relays.len() as u64) as usize;
    let mut tries = 0;
    loop {
        let joined = Socket::join(&shared, member, room, relay, resume.clone()).await;
        let mut socket = match joined {
            Ok(socket) => {
                tries = 0;
                socket
            }
            Err(JoinFailed::PlaceLost) if shared.resilient => {
                shared.ledger().place_lost(member);
                resume = None;
                continue;
            }
            // Back off and try again, as a page does; within a minute it must work.
            Err(JoinFailed::Transient(_)) if shared.resilient && tries < 120 => {
                tries += 1;
                sleep(rng.between_ms(250, 750)).await;
                continue;
            }
            Err(JoinFailed::PlaceLost) => {
                shared
                    .ledger()
                    .anomalies
                    .failures
                    .push(format!("member {member} could not resume its place"));
                break;
            }
            Err(JoinFailed::Transient(err) | JoinFailed::Failed(err)) => {
                shared
                    .ledger()
                    .anomalies
                    .failures
                    .push(format!("member {member} could not join: {err:#}"));
                break;
            }
        };
        match socket.run(&shared, &mut rng).await {
            Ok(Exit::DropAndResume) => {
                let token = socket.token.clone();
                drop(socket);
                // Back well within the grace period, on any relay (a load balancer may send a
                // page elsewhere).
                let most = shared.grace.saturating_sub(Duration::from_secs(2));
                let gap = rng.between(Duration::from_millis(300), most.min(Duration::from_secs(3)));
                sleep(gap).await;
                resume = Some(token);
                relay = rng.below(shared.relays.len() as u64) as usize;
            }
            Ok(Exit::Leave | Exit::DropForGood) => break,
            Err(err) if shared.resilient && err.downcast_ref::<RelayBroke>().is_some() => {
                shared.ledger().end(socket.inc, End::Broken);
                resume = Some(socket.token.clone());
                drop(socket);
                sleep(rng.between_ms(200, 1000)).await;
            }
            Err(err) => {
                let mut ledger = shared.ledger();
                ledger.end(socket.inc, End::Killed);
                ledger
                    .anomalies
                    .failures
                    .push(format!("member {member} (peer {}): {err:#}", socket.peer.0));
                break;
            }
        }
    }
    // The relay takes the departure in a moment after the socket goes; a newcomer in its
    // place meanwhile would find the room full.
    sleep(Duration::from_secs(1)).await;
    shared.ledger().release(member);
}

/// One socket of a member, joined.
struct Socket {
    ws: Ws,
    member: MemberIx,
    inc: IncIx,
    peer: PeerId,
    token: String,
    /// The peers it was told are in its room.
    present: HashSet<PeerId>,
    /// The peers it was told dropped and may resume.
    reconnecting: HashSet<PeerId>,
}

impl Socket {
    /// Opens a socket to relay `relay` and joins room `room` (resuming with `resume`). A full
    /// room (a departure the relay has not seen yet) is tried again for a while.
    async fn join(
        shared: &Shared,
        member: MemberIx,
        room: u32,
        relay: usize,
        resume: Option<String>,
    ) -> Result<Socket, JoinFailed> {
        let mut ws = dialect::open(shared.relays[relay], "/ws")
            .await
            .map_err(JoinFailed::Transient)?;
        shared.ledger().socket_opened(relay);
        let mut join = json!({"type": "join", "room": format!("soak-{room}"), "session": format!("m{member}")});
        if let Some(token) = &resume {
            join["resume"] = json!(token);
        }
        for _ in 0..50 {
            dialect::send_text(&mut ws, join.to_string())
                .await
                .map_err(JoinFailed::Transient)?;
            let text = dialect::recv_text(&mut ws)
                .await
                .map_err(JoinFailed::Transient)?;
            match ServerMsg::parse(&text) {
                Ok(ServerMsg::Welcome {
                    id,
                    peers,
                    resume_token,
                    ..
                }) => {
                    let inc = shared.ledger().welcome(member, relay, id);
                    return Ok(Socket {
                        ws,
                        member,
                        inc,
                        peer: id,
                        token: resume_token,
                        present: peers.iter().map(|p| p.id).collect(),
                        reconnecting: HashSet::new(),
                    });
                }
                Ok(ServerMsg::Error { kind, .. }) => {
                    *shared
                        .ledger()
                        .anomalies
                        .join_refusals
                        .entry(kind.as_str().to_owned())
                        .or_default() += 1;
                    let refused = || anyhow::anyhow!("join refused: {text:.200}");
                    match kind {
                        protocol::ErrorKind::RoomFull => {}
                        protocol::ErrorKind::InvalidResume => return Err(JoinFailed::PlaceLost),
                        protocol::ErrorKind::BackplaneUnavailable => {
                            return Err(JoinFailed::Transient(refused()))
                        }
                        _ => return Err(JoinFailed::Failed(refused())),
                    }
                    sleep(Duration::from_millis(200)).await;
                }
                _ => {
                    return Err(JoinFailed::Failed(anyhow::anyhow!(
                        "expected a welcome, got {text:.200}"
                    )))
                }
            }
        }
        Err(JoinFailed::Failed(anyhow::anyhow!(
            "room soak-{room} stayed full"
        )))
    }

    /// Signals until its time is up or the run goes quiet, then goes the way it drew.
    async fn run(&mut self, shared: &Shared, rng: &mut Rng) -> anyhow::Result<Exit> {
        let mut phase = shared.phase.clone();
        let exit = match rng.below(100) {
            0..45 => Exit::Leave,
            45..80 => Exit::DropAndResume,
            _ => Exit::DropForGood,
        };
        let depart_at = Instant::now() + rng.between(shared.lifetime.0, shared.lifetime.1);
        let mut renegotiate_at = Instant::now() + rng.between_ms(1500, 5000);

        if *phase.borrow() == Phase::Run {
            let peers: Vec<PeerId> = self.present.iter().copied().collect();
            for peer in peers {
                self.offer(shared, peer).await?;
            }
        }
        while *phase.borrow() == Phase::Run && Instant::now() < depart_at {
            tokio::select! {
                frame = self.ws.next() => self.handle(shared, rng, frame, true).await?,
                _ = sleep_until(renegotiate_at) => {
                    renegotiate_at = Instant::now() + rng.between_ms(1500, 5000);
                    let peers: Vec<PeerId> = self.present.iter().copied().collect();
                    if !peers.is_empty() {
                        let peer = peers[rng.below(peers.len() as u64) as usize];
                        self.offer(shared, peer).await?;
                    }
                }
                _ = sleep_until(depart_at) => {}
                _ = phase.changed() => {}
            }
        }

        // Quiet: wait for every signal of this socket to be delivered or refused.
        let settle_by = Instant::now() + shared.settle;
        while shared.ledger().outstanding(self.inc) > 0 && Instant::now() < settle_by {
            self.read_for(shared, rng, Duration::from_millis(50))
                .await?;
        }
        let ending = *phase.borrow() != Phase::Run;
        if ending {
            // The run is over: wait for the word to leave, still reading.
            while *phase.borrow() != Phase::Leave {
                tokio::select! {
                    frame = self.ws.next() => self.handle(shared, rng, frame, false).await?,
                    _ = phase.changed() => {}
                }
            }
        }
        shared
            .ledger()
            .check_view(self.member, &self.present, shared.view_margin);
        let exit = if ending { Exit::Leave } else { exit };
        match exit {
            Exit::Leave => {
                shared.ledger().end(self.inc, End::Left);
                self.ws.close(None).await.context("sending Close")?;
                // What the relay sent before it saw the Close still arrives: read it all.
                let drained = timeout(Duration::from_secs(10), async {
                    while let Some(Ok(frame)) = self.ws.next().await {
                        if let Message::Text(text) = frame {
                            self.take(shared, rng, &text, false).await?;
                        }
                    }
                    anyhow::Ok(())
                })
                .await;
                drained.context("the relay did not finish the close handshake")??;
            }
            Exit::DropAndResume | Exit::DropForGood => {
                shared.ledger().end(self.inc, End::Killed);
                // Dropping the stream closes the TCP socket with no Close frame, as a page
                // whose tab was killed or whose network went away does.
            }
        }
        Ok(exit)
    }

    /// Reads frames for up to `wait`, sending nothing.
    async fn read_for(
        &mut self,
        shared: &Shared,
        rng: &mut Rng,
        wait: Duration,
    ) -> anyhow::Result<()> {
        if let Ok(frame) = timeout(wait, self.ws.next()).await {
            self.handle(shared, rng, frame, false).await?;
        }
        Ok(())
    }

    /// Handles one frame from the socket; with `reply`, answers offers and greets drops.
    async fn handle(
        &mut self,
        shared: &Shared,
        rng: &mut Rng,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        reply: bool,
    ) -> anyhow::Result<()> {
        match frame {
            Some(Ok(Message::Text(text))) => self.take(shared, rng, &text, reply).await,
            Some(Ok(Message::Close(close))) => {
                Err(broke(format!("the relay closed the socket: {close:?}")))
            }
            Some(Ok(_)) => Ok(()),
            Some(Err(err)) => Err(broke(format!("reading from the relay: {err}"))),
            None => Err(broke("the relay closed the socket")),
        }
    }

    async fn take(
        &mut self,
        shared: &Shared,
        rng: &mut Rng,
        text: &str,
        reply: bool,
    ) -> anyhow::Result<()> {
        let msg = ServerMsg::parse(text)
            .map_err(|e| anyhow::anyhow!("unreadable event {text:.200}: {e:?}"))?;
        match msg {
            ServerMsg::Offer { from, sdp, .. } => {
                shared
                    .ledger()
                    .deliver(self.member, from, Kind::Offer, marker(&sdp));
                if reply && self.present.contains(&from) {
                    self.send(shared, from, Kind::Answer, false).await?;
                    for _ in 0..2 {
                        self.send(shared, from, Kind::Candidate, false).await?;
                    }
                }
            }
            ServerMsg::Answer { from, sdp, .. } => {
                shared
                    .ledger()
                    .deliver(self.member, from, Kind::Answer, marker(&sdp));
            }
            ServerMsg::Candidate {
                from, candidate, ..
            } => {
                shared.ledger().deliver(
                    self.member,
                    from,
                    Kind::Candidate,
                    marker(&candidate.candidate),
                );
            }
            ServerMsg::PeerJoined { peer } => {
                self.reconnecting.remove(&peer.id);
                if !self.present.insert(peer.id) {
                    bail!("told twice that peer {} joined", peer.id.0);
                }
            }
            ServerMsg::PeerLeft { peer, reconnecting } => {
                if !self.present.remove(&peer) {
                    bail!("told that peer {} left, which was not there", peer.0);
                }
                if reconnecting {
                    self.reconnecting.insert(peer);
                    if reply && rng.below(2) == 0 {
                        self.send(shared, peer, Kind::Candidate, true).await?;
                    }
                }
            }
            ServerMsg::Error { kind, .. } => shared.ledger().refuse(self.inc, kind.as_str()),
            ServerMsg::Pong | ServerMsg::IceServers { .. } => {}
            other => bail!("unexpected event {other:?}"),
        }
        Ok(())
    }

    /// An offer to `peer` and the candidates gathered for it.
    async fn offer(&mut self, shared: &Shared, peer: PeerId) -> anyhow::Result<()> {
        self.send(shared, peer, Kind::Offer, false).await?;
        for _ in 0..2 {
            self.send(shared, peer, Kind::Candidate, false).await?;
        }
        Ok(())
    }

    /// Enters a signal in the books and sends it.
    async fn send(
        &mut self,
        shared: &Shared,
        to: PeerId,
        kind: Kind,
        to_reconnecting: bool,
    ) -> anyhow::Result<()> {
        let Some(seq) = shared.ledger().send(self.inc, to, kind, to_reconnecting) else {
            return Ok(());
        };
        let marker = format!("soak-{}-{seq}", self.inc);
        let to = Some(to);
        let msg = match kind {
            Kind::Offer => ClientMsg::Offer {
                to,
                sdp: workload::sdp_text(workload::Kind::Offer, 1800, &marker),
            },
            Kind::Answer => ClientMsg::Answer {
                to,
                sdp: workload::sdp_text(workload::Kind::Answer, 1500, &marker),
            },
            Kind::Candidate => ClientMsg::Candidate {
                to,
                candidate: IceCandidate {
                    candidate: workload::candidate_text(seq as usize, &marker),
                    sdp_mid: Some("0".to_owned()),
                    sdp_m_line_index: Some(0),
                },
            },
        };
        self.ws
            .send(Message::text(msg.to_json()))
            .await
            .map_err(|err| broke(format!("writing to the relay: {err}")))
    }
}

/// The `soak-INC-SEQ` marker a signal carries in its SDP or candidate line.
fn marker(text: &str) -> Option<(IncIx, u32)> {
    let rest = &text[text.find("soak-")? + 5..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(rest.len());
    let (inc, seq) = rest[..end].split_once('-')?;
    Some((inc.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_reads_back_from_an_sdp_and_a_candidate() {
        let sdp = workload::sdp_text(workload::Kind::Offer, 1800, "soak-12-345");
        assert_eq!(marker(&sdp), Some((12, 345)));
        let candidate = workload::candidate_text(1, "soak-7-0");
        assert_eq!(marker(&candidate), Some((7, 0)));
        assert_eq!(marker("v=0"), None);
    }
}
