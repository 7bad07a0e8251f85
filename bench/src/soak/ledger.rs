//! The soak's books: every signal sent, whom it was meant for and what became of it, and who is
//! in which room as far as the driver knows.
//!
//! Every member's task writes here under one lock, so the books are exact: a signal is entered
//! before its frame is written, and its delivery is entered when the addressee's task reads it.
//! The relay answers a refused signal with an `error` that names no signal, so refusals are
//! counted per socket (an *incarnation* of a member) and matched against that socket's
//! undelivered signals when the run settles; see [`Ledger::settle`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use protocol::PeerId;

/// A member: one person, who may come back on a new socket after a drop.
pub type MemberIx = u32;
/// An incarnation: one socket of a member, from its `welcome` to its end.
pub type IncIx = u32;

/// Where a member is, as the driver knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    /// Connecting or joining; not yet told its id.
    Joining,
    /// In its room.
    Present,
    /// Its socket dropped; its place is reserved (or the reservation ran out).
    Reserved,
    /// It left with a Close.
    Gone,
}

/// How a socket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Closed with a Close frame, after reading everything the relay sent before its reply.
    Left,
    /// Dropped without a Close: whatever was in flight to it is gone with it.
    Killed,
    /// Broken by the relay's side (the chaos run kills a relay): what was in flight to it, and
    /// what it had sent in the moment before, may be gone with it.
    Broken,
}

/// How long before its socket broke a signal may have been sent and still die with the relay
/// that read it: a relay reads, stores and publishes a signal within milliseconds.
const BREAK_WINDOW: Duration = Duration::from_secs(2);

/// The signal kinds the members send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// A trickled ICE candidate.
    Candidate,
}

struct Member {
    room: u32,
    presence: Presence,
    since: Instant,
    peer: Option<PeerId>,
    /// The member's latest incarnation.
    inc: Option<IncIx>,
}

/// One signal sent.
struct Sig {
    to: MemberIx,
    /// The addressee's incarnation when it was sent.
    to_inc: IncIx,
    kind: Kind,
    /// Sent while the sender knew the addressee was reconnecting: the relay must hold it.
    to_reconnecting: bool,
    sent: Instant,
    delivered: Option<Instant>,
    deliveries: u8,
}

struct Inc {
    member: MemberIx,
    relay: usize,
    peer: PeerId,
    sent: Vec<Sig>,
    delivered: u32,
    refused: u32,
    end: Option<End>,
    ended: Option<Instant>,
    welcomed: Instant,
}

/// Figures of one relay process (signals counted where they were sent).
#[derive(Clone, Debug, Default)]
pub struct RelayFigures {
    /// Signals sent through it.
    pub sent: u64,
    /// Of those, delivered (once).
    pub delivered: u64,
    /// Errors its senders got for signals.
    pub refused: u64,
    /// Delivery latencies since the last report, in microseconds (held signals excluded).
    pub latencies_us: Vec<u32>,
    /// Sockets opened to it.
    pub sockets: u64,
}

/// What went wrong, beyond the signals' fates.
#[derive(Clone, Debug, Default)]
pub struct Anomalies {
    /// Delivered to the wrong member, stamped with the wrong sender, or not a signal we sent.
    pub misrouted: u64,
    /// Delivered more than once.
    pub duplicated: u64,
    /// A member's view of its room disagreed with the truth for longer than the margin:
    /// somebody's `peer-left` or `peer-joined` never came.
    pub view_mismatches: u64,
    /// Joins refused, by kind (`room-full` is retried and expected now and then).
    pub join_refusals: BTreeMap<String, u64>,
    /// Resumes refused (`invalid-resume`): members that lost their places.
    pub places_lost: u64,
    /// Sockets the relay closed or broke on its own, and anything else unexpected.
    pub failures: Vec<String>,
}

/// The fates of every signal once the run has settled.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    /// Signals sent.
    pub sent: u64,
    /// Delivered once, to the right member.
    pub delivered: u64,
    /// Refused: an `error` reached the sender.
    pub refused: u64,
    /// Sent while the sender still saw the addressee connected, to a socket that was then
    /// dropped without a Close before reading it: the protocol lets these go (docs/protocol.md,
    /// "Signals can be lost"). Counted, not failed.
    pub died_with_socket: u64,
    /// Neither delivered nor refused, nor excused above.
    pub lost: u64,
    /// More errors than undelivered signals on one socket: an error for a delivered signal.
    pub over_refused: u64,
    /// The undelivered signals of sockets that lost some, to tell the relay's bug from ours.
    pub lost_examples: Vec<String>,
}

/// The books.
pub struct Ledger {
    start: Instant,
    members: Vec<Member>,
    incs: Vec<Inc>,
    peers: HashMap<PeerId, MemberIx>,
    /// Members of each room that may still matter to a view check.
    rooms: Vec<Vec<MemberIx>>,
    rooms_open: Vec<RoomSlots>,
    relays: Vec<RelayFigures>,
    errors: BTreeMap<String, u64>,
    joins: u64,
    resumes: u64,
    /// Anomalies seen so far.
    pub anomalies: Anomalies,
}

struct RoomSlots {
    room: u32,
    target: u8,
    taken: u8,
}

impl Ledger {
    /// Empty books for a run against `relays` relay processes.
    pub fn new(relays: usize) -> Self {
        Self {
            start: Instant::now(),
            members: Vec::new(),
            incs: Vec::new(),
            peers: HashMap::new(),
            rooms: Vec::new(),
            rooms_open: Vec::new(),
            relays: vec![RelayFigures::default(); relays],
            errors: BTreeMap::new(),
            joins: 0,
            resumes: 0,
            anomalies: Anomalies::default(),
        }
    }

    /// A place for a new member: a random room that has one below its size (2 to 6, drawn when
    /// the room was opened), or a new room. `pick` draws a number below its argument. Returns
    /// the member and its room's number.
    pub fn admit(&mut self, pick: &mut impl FnMut(u64) -> u64) -> (MemberIx, u32) {
        let free: Vec<usize> = (0..self.rooms_open.len())
            .filter(|&i| self.rooms_open[i].taken < self.rooms_open[i].target)
            .collect();
        let at = if free.is_empty() {
            self.rooms.push(Vec::new());
            self.rooms_open.push(RoomSlots {
                room: (self.rooms.len() - 1) as u32,
                target: 2 + pick(5) as u8,
                taken: 0,
            });
            self.rooms_open.len() - 1
        } else {
            free[pick(free.len() as u64) as usize]
        };
        let slots = &mut self.rooms_open[at];
        slots.taken += 1;
        let room = slots.room;
        let member = self.members.len() as MemberIx;
        self.members.push(Member {
            room,
            presence: Presence::Joining,
            since: Instant::now(),
            peer: None,
            inc: None,
        });
        self.rooms[room as usize].push(member);
        (member, room)
    }

    /// Gives back the place `member` held for good. A room that empties is closed: new members
    /// go to new rooms, as new calls do.
    pub fn release(&mut self, member: MemberIx) {
        let room = self.members[member as usize].room;
        if let Some(at) = self.rooms_open.iter().position(|r| r.room == room) {
            self.rooms_open[at].taken -= 1;
            if self.rooms_open[at].taken == 0 {
                self.rooms_open.swap_remove(at);
            }
        }
    }

    /// Places held by members now (including those between a drop and their resume).
    pub fn places_taken(&self) -> usize {
        self.rooms_open.iter().map(|r| r.taken as usize).sum()
    }

    /// A socket to relay `relay` was opened.
    pub fn socket_opened(&mut self, relay: usize) {
        self.relays[relay].sockets += 1;
    }

    /// `member` got its `welcome` as `peer` on relay `relay`: a new incarnation begins.
    pub fn welcome(&mut self, member: MemberIx, relay: usize, peer: PeerId) -> IncIx {
        let inc = self.incs.len() as IncIx;
        self.incs.push(Inc {
            member,
            relay,
            peer,
            sent: Vec::new(),
            delivered: 0,
            refused: 0,
            end: None,
            ended: None,
            welcomed: Instant::now(),
        });
        let m = &mut self.members[member as usize];
        if m.peer.is_some() {
            self.resumes += 1;
        } else {
            self.joins += 1;
        }
        if let Some(old) = m.peer.filter(|&old| old != peer) {
            self.anomalies.failures.push(format!(
                "member {member} resumed as peer {} instead of {}",
                peer.0, old.0
            ));
        }
        m.peer = Some(peer);
        m.inc = Some(inc);
        m.presence = Presence::Present;
        m.since = Instant::now();
        self.peers.insert(peer, member);
        inc
    }

    /// Incarnation `inc` ended as `end`.
    pub fn end(&mut self, inc: IncIx, end: End) {
        let i = &mut self.incs[inc as usize];
        i.end = Some(end);
        i.ended = Some(Instant::now());
        let m = &mut self.members[i.member as usize];
        m.presence = match end {
            End::Left => Presence::Gone,
            End::Killed | End::Broken => Presence::Reserved,
        };
        m.since = Instant::now();
    }

    /// Enters a signal of `kind` from `inc` to the peer `to` and returns its number, or `None`
    /// if the driver does not know that peer yet (its task has not read its `welcome`): then
    /// nothing is sent.
    pub fn send(
        &mut self,
        inc: IncIx,
        to: PeerId,
        kind: Kind,
        to_reconnecting: bool,
    ) -> Option<u32> {
        let to_member = *self.peers.get(&to)?;
        let to_inc = self.members[to_member as usize].inc?;
        let i = &mut self.incs[inc as usize];
        let seq = i.sent.len() as u32;
        i.sent.push(Sig {
            to: to_member,
            to_inc,
            kind,
            to_reconnecting,
            sent: Instant::now(),
            delivered: None,
            deliveries: 0,
        });
        self.relays[i.relay].sent += 1;
        Some(seq)
    }

    /// `member` read a signal of `kind` stamped `from`, carrying the marker of signal `seq`
    /// of incarnation `inc` (or no marker at all).
    pub fn deliver(
        &mut self,
        member: MemberIx,
        from: PeerId,
        kind: Kind,
        marker: Option<(IncIx, u32)>,
    ) {
        let receiver_inc = self.members[member as usize].inc;
        let Some((inc, seq)) = marker else {
            self.anomalies.misrouted += 1;
            return;
        };
        let Some(i) = self.incs.get_mut(inc as usize) else {
            self.anomalies.misrouted += 1;
            return;
        };
        let (sender_peer, relay) = (i.peer, i.relay);
        let Some(sig) = i.sent.get_mut(seq as usize) else {
            self.anomalies.misrouted += 1;
            return;
        };
        if sig.to != member || from != sender_peer || sig.kind != kind {
            self.anomalies.misrouted += 1;
            return;
        }
        sig.deliveries = sig.deliveries.saturating_add(1);
        sig.delivered.get_or_insert_with(Instant::now);
        if sig.deliveries > 1 {
            self.anomalies.duplicated += 1;
            return;
        }
        // A signal held for a reconnecting peer waited on purpose: its latency says nothing.
        let held = sig.to_reconnecting || receiver_inc != Some(sig.to_inc);
        let latency = sig.sent.elapsed();
        i.delivered += 1;
        let figures = &mut self.relays[relay];
        figures.delivered += 1;
        if !held {
            figures
                .latencies_us
                .push(latency.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    /// `member`'s resume was refused (its place was lost): it joins again as a new peer.
    pub fn place_lost(&mut self, member: MemberIx) {
        let peer = self.members[member as usize].peer.take();
        self.anomalies.places_lost += 1;
        if self.anomalies.failures.len() < 50 {
            self.anomalies.failures.push(format!(
                "member {member} could not resume its place as peer {:?}, {:.1} s into the run",
                peer.map(|p| p.0),
                self.start.elapsed().as_secs_f64()
            ));
        }
    }

    /// The first `welcome` `member` got at or after `since`.
    pub fn welcome_since(&self, member: MemberIx, since: Instant) -> Option<Instant> {
        self.incs
            .iter()
            .filter(|i| i.member == member && i.welcomed >= since)
            .map(|i| i.welcomed)
            .min()
    }

    /// Members whose socket a relay broke at or after `since`.
    pub fn broken_since(&self, since: Instant) -> Vec<MemberIx> {
        self.incs
            .iter()
            .filter(|i| i.end == Some(End::Broken) && i.ended.is_some_and(|at| at >= since))
            .map(|i| i.member)
            .collect()
    }

    /// The first delivery of a signal sent at or after `since`, if any.
    pub fn first_delivery_sent_since(&self, since: Instant) -> Option<Instant> {
        self.incs
            .iter()
            .flat_map(|i| &i.sent)
            .filter(|sig| sig.sent >= since)
            .filter_map(|sig| sig.delivered)
            .min()
    }

    /// Incarnation `inc` got an `error` of `kind` for a signal.
    pub fn refuse(&mut self, inc: IncIx, kind: &str) {
        let i = &mut self.incs[inc as usize];
        i.refused += 1;
        self.relays[i.relay].refused += 1;
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Signals of `inc` neither delivered nor refused yet.
    pub fn outstanding(&self, inc: IncIx) -> i64 {
        let i = &self.incs[inc as usize];
        i.sent.len() as i64 - i64::from(i.delivered) - i64::from(i.refused)
    }

    /// Compares what `member` believes is in its room (`present`: the peers it was told joined
    /// and not told left) with the truth, counting disagreements that have lasted longer than
    /// `margin` (a `peer-joined` or `peer-left` may still be on its way).
    pub fn check_view(&mut self, member: MemberIx, present: &HashSet<PeerId>, margin: Duration) {
        let room = self.members[member as usize].room as usize;
        let now = Instant::now();
        let mut mismatches = Vec::new();
        // Members gone (or reserved) for long are dropped from the room's list once every view
        // check can rely on them being absent.
        let members = &self.members;
        self.rooms[room].retain(|&other| {
            let m = &members[other as usize];
            let settled = now.duration_since(m.since) > margin;
            if other != member && settled {
                let seen = m.peer.is_some_and(|p| present.contains(&p));
                let there = m.presence == Presence::Present;
                if seen != there {
                    mismatches.push(format!(
                        "member {member} sees peer {:?} as {} but it is {:?}",
                        m.peer.map(|p| p.0),
                        if seen { "present" } else { "absent" },
                        m.presence
                    ));
                }
            }
            !(matches!(m.presence, Presence::Gone | Presence::Reserved)
                && now.duration_since(m.since) > margin * 30)
        });
        self.anomalies.view_mismatches += mismatches.len() as u64;
        for mismatch in mismatches.into_iter().take(5) {
            if self.anomalies.failures.len() < 50 {
                self.anomalies.failures.push(mismatch);
            }
        }
    }

    /// Sockets that joined afresh, and sockets that resumed.
    pub fn counts(&self) -> (u64, u64) {
        (self.joins, self.resumes)
    }

    /// Errors told to senders so far, by kind.
    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    /// Relay `relay`'s figures, with the latencies taken out (they are per report).
    pub fn take_figures(&mut self, relay: usize) -> RelayFigures {
        let figures = &mut self.relays[relay];
        let latencies = std::mem::take(&mut figures.latencies_us);
        RelayFigures {
            latencies_us: latencies,
            ..figures.clone()
        }
    }

    /// Signals older than `age` that are still neither delivered nor refused (nor excused), by
    /// the relay they were sent through: lost unless the relay is merely late.
    pub fn overdue(&self, age: Duration) -> Vec<u64> {
        let now = Instant::now();
        let mut overdue = vec![0; self.relays.len()];
        for i in &self.incs {
            let (undelivered, excused) =
                self.undelivered(i, |sig| now.duration_since(sig.sent) > age);
            let unexplained = undelivered.saturating_sub(u64::from(i.refused) + excused);
            overdue[i.relay] += unexplained;
        }
        overdue
    }

    /// Undelivered signals of `i` that `filter` picks, and how many of those went to a socket
    /// that was then killed or broken while the sender still saw it connected, or were sent
    /// by `i` in the moment before a relay broke its socket.
    fn undelivered(&self, i: &Inc, filter: impl Fn(&Sig) -> bool) -> (u64, u64) {
        let (mut undelivered, mut excused) = (0, 0);
        let broke = match (i.end, i.ended) {
            (Some(End::Broken), Some(at)) => at.checked_sub(BREAK_WINDOW),
            _ => None,
        };
        for sig in i.sent.iter().filter(|s| s.deliveries == 0 && filter(s)) {
            undelivered += 1;
            let to_end = self.incs[sig.to_inc as usize].end;
            if (!sig.to_reconnecting && matches!(to_end, Some(End::Killed | End::Broken)))
                || broke.is_some_and(|from| sig.sent >= from)
            {
                excused += 1;
            }
        }
        (undelivered, excused)
    }

    /// The fate of every signal, once nothing more can arrive.
    pub fn settle(&self) -> Settled {
        let mut s = Settled::default();
        for i in &self.incs {
            let (undelivered, excused) = self.undelivered(i, |_| true);
            let refused = u64::from(i.refused);
            s.sent += i.sent.len() as u64;
            s.delivered += u64::from(i.delivered);
            s.refused += refused;
            let unrefused = undelivered.saturating_sub(refused);
            s.died_with_socket += unrefused.min(excused);
            s.lost += unrefused.saturating_sub(excused);
            if unrefused > excused && s.lost_examples.len() < 10 {
                for (seq, sig) in i.sent.iter().enumerate().filter(|(_, s)| s.deliveries == 0) {
                    let to = &self.incs[sig.to_inc as usize];
                    s.lost_examples.push(format!(
                        "socket {} (peer {}, relay {}, refused {refused}) signal {seq}: {:?} \
                         to peer {} (relay {}, its socket ended {:?}){}, sent {:.1} s into the run",
                        self.incs
                            .iter()
                            .position(|x| std::ptr::eq(x, i))
                            .unwrap_or(0),
                        i.peer.0,
                        i.relay,
                        sig.kind,
                        to.peer.0,
                        to.relay,
                        to.end,
                        if sig.to_reconnecting {
                            " while it was reconnecting"
                        } else {
                            ""
                        },
                        sig.sent.duration_since(self.start).as_secs_f64()
                    ));
                }
            }
            s.over_refused += refused.saturating_sub(undelivered);
        }
        s
    }

    /// Seconds since the books were opened.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
