//! Rooms shared by several relay instances through Redis (`--redis-url`).
//!
//! Redis holds each room's state (the [`Room`] model, as JSON, with a version number). An
//! operation loads the room, applies the same [`Room`] method the in-memory registry uses, and
//! commits with one Lua script that checks the version, stores the new state and publishes the
//! messages it produced, all at once; on a version clash it starts over. A message goes to the
//! channel of the instance holding the addressee's connection, whose subscriber hands it to the
//! peer's [`Mailbox`]. One Redis connection publishes in order and one subscriber reads in
//! order, so a peer sees `welcome`, then what was held for it, then what others send it.
//!
//! - Peer ids come from a counter in Redis, in blocks, so they are unique across instances; the
//!   counter never goes below Redis's clock in microseconds, so that one lost with Redis's data
//!   starts again above every id handed out before (ids are large, still exact in JavaScript).
//! - A signal carries its sender; the addressee's instance answers `no-peer` when the addressee
//!   has gone, and the commit reports messages to an instance nobody hears (it died), so a
//!   signal is delivered or refused, never dropped. A commit carries a deadline on Redis's
//!   clock, so that one the relay gave up on (Redis paused or cut off) never runs late.
//! - Each instance refreshes a presence key (with a TTL) on a heartbeat. An instance whose key
//!   expired is gone: the first survivor to notice turns its members into resume reservations
//!   and tells their rooms (`peer-left` with `reconnecting`), so its peers can resume elsewhere
//!   and no ghost stays behind.
//! - If Redis goes away, `/healthz` says so, joins and signals are refused with
//!   `backplane-unavailable` (within a timeout, never a hang), connections stay open, and once
//!   Redis answers again each instance puts its members back and goes on by itself.
//! - What an instance's members were told while it did not hear its channel is lost with the
//!   channel; so each instance keeps what it told each member about its room, and once it is
//!   back it has every room's state published to every instance with a member there, at one
//!   point of each channel, and its listener tells its members the difference. If Redis lost
//!   its data, held signals it lost are reported `expired` to their senders, and peers that
//!   left meanwhile are told to those who saw them.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use protocol::{Control, ErrorKind, IceServer, PeerId, RawSignal, ServerMsg};
use redis::{aio::ConnectionManager, AsyncCommands};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    acks,
    expiry::Deadlines,
    registry::{welcome, Due, JoinRequest, Joined, MailboxRef, Relayed, Timing},
    room::{Arrival, Deliveries, Member, Refusal, Room, Route},
};

/// How many times an operation is tried when other instances keep changing its room.
const MAX_TRIES: usize = 16;

/// The pause before trying an operation again after its `tries`-th conflict: a random share
/// (`random`) of 2^tries milliseconds, at most 64. Tried again at once, instances racing on one
/// room met again at once: in the 30-min soak beside a browser test (a load of 32 on two
/// cores), 6 of 7,447 joins lost all 16 tries (docs/soak.md).
fn conflict_pause(tries: usize, random: u32) -> Duration {
    let ceiling_us = 1000u64 << tries.min(6);
    Duration::from_micros(u64::from(random) % ceiling_us)
}

/// How many peer ids an instance takes from the shared counter at once.
const ID_BLOCK: u64 = 16;

/// What a joining peer's commit publishes to the relay of a peer whose held message it took,
/// followed by the message's number: see [`LocalState::held`]. Room messages are JSON objects,
/// so the two never meet.
const TAKEN: &str = "!taken ";

/// Checks the room's version; stores the new state (`-`: unchanged, empty: delete the room);
/// adds the room to a set (the instance's rooms) if one is named; publishes the messages.
/// Returns `{1, ...}` with the (0-based) numbers of the messages nobody was subscribed to hear
/// (their instance is gone), `{0}` if the room changed since it was loaded, or `{2}` if Redis
/// runs it after `ARGV[5]` (its own clock, in microseconds): the relay gave up on it by then
/// and told the client so, and a Redis that was paused or cut off must not carry it out late.
/// Nothing is done in either of the last two cases. A stored state that only remembers who
/// left lasts `ARGV[6]` milliseconds (0: for good). A signal (`TO/FROM/INSTANCE TEXT`) gets the
/// next number of this sender's count for its channel (the key `ARGV[7]` and the channel), as
/// `TO/FROM/INSTANCE/SEQ TEXT` (see [`crate::acks`]); each message's entry in the answer is
/// its number times two, plus one if nobody heard it.
const COMMIT: &str = r"
local t = redis.call('TIME')
if tonumber(t[1]) * 1000000 + tonumber(t[2]) > tonumber(ARGV[5]) then return {2} end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {0} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] ~= '-' then
  redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
  if tonumber(ARGV[6]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
  else
    redis.call('PERSIST', KEYS[1])
  end
end
if ARGV[3] ~= '' then redis.call('SADD', ARGV[3], ARGV[4]) end
local out = {1}
for i = 8, #ARGV, 2 do
  local ch, p = ARGV[i], ARGV[i + 1]
  local seq = 0
  local head, rest = string.match(p, '^([^ ]*/[^ ]*)( .*)$')
  if head then
    local k = ARGV[7] .. ch
    seq = redis.call('INCR', k)
    redis.call('EXPIRE', k, 86400)
    p = head .. '/' .. seq .. rest
  end
  local unheard = 0
  if redis.call('PUBLISH', ch, p) == 0 then unheard = 1 end
  out[#out + 1] = seq * 2 + unheard
end
return out
";

/// Publishes on channel `ARGV[3]` (`0 ` and [`acks::SEQS_MARK`], `ARGV[4]`) how many signals
/// each instance of the set `ARGV[1]` has published to it, from the counts `ARGV[2]..INSTANCE:`
/// and the channel: everything numbered up to there that the listener has not heard by the
/// mark is lost.
const SEQS: &str = r"
local parts = {}
for _, s in ipairs(redis.call('SMEMBERS', ARGV[1])) do
  local n = redis.call('GET', ARGV[2] .. s .. ':' .. ARGV[3])
  if n then parts[#parts + 1] = s .. '=' .. n end
end
redis.call('PUBLISH', ARGV[3], '0 ' .. ARGV[4] .. table.concat(parts, ' '))
return 1
";

/// Publishes room `KEYS[1]`'s state as it is now on the channel of every instance with a member
/// in it (`ARGV[1]` and the instance), as `0 !sync ROOM` (`ARGV[2]`, `ARGV[3]`) and the state on
/// the next line, so that each listener compares what its members there were told with the room
/// at exactly that point of its channel: see [`Backplane::on_sync`].
const SYNC: &str = r"
local s = redis.call('HGET', KEYS[1], 's')
if not s then return 0 end
local seen = {}
for _, m in ipairs(cjson.decode(s).members or {}) do
  local i = m.instance
  if type(i) == 'string' and i ~= '' and not seen[i] then
    seen[i] = true
    redis.call('PUBLISH', ARGV[1] .. i, '0 ' .. ARGV[2] .. ARGV[3] .. '\n' .. s)
  end
end
return 1
";

/// What a [`SYNC`] message's text starts with.
const SYNC_MARK: &str = "!sync ";

/// Takes a block of `ARGV[2]` ids from the counter, first raising it to at least `ARGV[1]` (the
/// highest id the caller knows of) and to Redis's clock in microseconds. Returns the block's
/// last id. The clock is what keeps ids unique when Redis restarts empty: an instance that
/// takes a block before the others have raised the counter past their own ids (the chaos run
/// saw a `welcome` reach another peer of the same id) still starts above every id handed out
/// before, unless the counter ran ahead of the clock (a million ids a second) or Redis came
/// back on a clock that is behind. Ids stay exact in JavaScript (below 2^53) until 2255.
const TAKE_IDS: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = redis.call('TIME')
local floor = math.max(tonumber(ARGV[1]), tonumber(t[1]) * 1000000 + tonumber(t[2]))
if cur < floor then cur = floor end
cur = cur + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', cur))
return cur
";

/// How to reach Redis and how often to say this instance is alive.
#[derive(Clone)]
pub struct BackplaneConfig {
    client: redis::Client,
    /// What every key and channel name starts with, so that several deployments can share one
    /// Redis.
    pub prefix: String,
    /// How often the presence key is refreshed (and Redis's health checked).
    pub heartbeat: Duration,
    /// How long an instance that stopped refreshing its presence counts as alive.
    pub presence_ttl: Duration,
    /// The longest any one Redis request may take before it counts as failed.
    pub timeout: Duration,
}

impl fmt::Debug for BackplaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("BackplaneConfig")
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("presence_ttl", &self.presence_ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BackplaneConfig {
    /// The backplane at `url` (`redis://HOST:PORT/DB`), with a one-second heartbeat and
    /// presence that lasts five. Only the URL's form is checked here: Redis need not be up.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: "videocall:".into(),
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        })
    }
}

/// The backplane's own figures for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    published: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    conflicts: AtomicU64,
    round_trips: AtomicU64,
    round_trip_micros: AtomicU64,
    reaped: AtomicU64,
    bounced: AtomicU64,
    /// Signals published here that another instance reported lost.
    lost: AtomicU64,
}

/// Why an operation did not go through.
#[derive(Debug)]
enum Failure {
    /// The room's rules said no.
    Refused(Refusal),
    /// Redis did not answer, or answered with an error.
    Redis(String),
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        Failure::Refused(refusal)
    }
}

impl From<redis::RedisError> for Failure {
    fn from(err: redis::RedisError) -> Self {
        Failure::Redis(err.to_string())
    }
}

impl Failure {
    fn into_refusal(self) -> Refusal {
        match self {
            Failure::Refused(refusal) => refusal,
            Failure::Redis(err) => {
                tracing::warn!(%err, "backplane request failed");
                unavailable()
            }
        }
    }
}

fn unavailable() -> Refusal {
    Refusal::new(
        ErrorKind::BackplaneUnavailable,
        "the relay cannot reach the backplane it shares rooms through (Redis): try again shortly",
    )
}

/// A peer connected to this instance.
struct Local {
    room: String,
    mailbox: MailboxRef,
    /// Its record in the room, to put back if Redis lost it.
    member: Member,
    /// The peers it was told are in its room (`welcome`, `peer-joined`, `peer-left`): what a
    /// [`SYNC`] corrects, should a word have been lost while this instance did not hear its
    /// channel.
    view: BTreeSet<PeerId>,
}

/// A `leave` that Redis did not take, to try again once it is back.
struct PendingLeave {
    room: String,
    member: Member,
    reserve: bool,
    /// [`LocalState::wipes`] when it was first tried: if Redis lost its data since, the room
    /// no longer has the peer, and those who saw it must still hear it left.
    wipes: u64,
}

/// A place this instance reserved for a peer whose connection dropped, until it is due.
struct Reserved {
    room: String,
    member: Member,
    /// Unix milliseconds.
    until: u64,
}

#[derive(Default)]
struct LocalState {
    peers: HashMap<PeerId, Local>,
    /// By resume token.
    reserved: HashMap<String, Reserved>,
    /// How many local peers each room has.
    rooms: HashMap<String, usize>,
    pending: Vec<PendingLeave>,
    /// Messages from peers here that wait in their rooms for a peer to resume (or join), by
    /// sender and number: the [`Self::wipes`] seen when each was held. When one is due and its
    /// room no longer has it, either a joining peer took it (its relay says so: [`Self::taken`])
    /// or Redis lost it with the rest of its data; in the second case its sender is told it
    /// expired, as if it had waited in vain (the chaos run lost 4 when Redis restarted empty).
    held: HashMap<(PeerId, u64), u64>,
    /// Held messages of [`Self::held`] that a joining peer took.
    taken: HashSet<(PeerId, u64)>,
    /// How many times this instance found that Redis had lost its data.
    wipes: u64,
    /// When it last found that.
    wiped_at: Option<Instant>,
    /// The numbers of the signals heard from each instance (see [`crate::acks`]).
    heard: acks::Heard,
    /// Who sent each numbered signal published to each instance.
    sent: acks::Sent,
}

/// The rooms of every instance sharing one Redis.
pub struct Backplane {
    config: BackplaneConfig,
    /// This instance's name, random: its channel and presence key are named after it.
    instance: String,
    /// Made by the heartbeat once Redis first answers; it reconnects by itself after that.
    conn: Mutex<Option<ConnectionManager>>,
    local: Mutex<LocalState>,
    /// The next id to hand out and the last of the block.
    ids: tokio::sync::Mutex<(u64, u64)>,
    /// The highest id this instance took from the counter.
    highest_id: AtomicU64,
    /// Redis's clock minus ours, in microseconds, as the last heartbeat measured it.
    clock_offset: AtomicI64,
    /// The heartbeat's last word: Redis answered.
    alive: AtomicBool,
    /// The subscriber listens on this instance's channel.
    subscribed: AtomicBool,
    /// Set once the members have been put back after Redis was away.
    synced: AtomicBool,
    /// The listener subscribed again: the mark of the senders' counts is to be published.
    mark_due: AtomicBool,
    /// When the heartbeat last found Redis answering after it had not.
    back_since: Mutex<Option<Instant>>,
    /// The mark Redis held when this instance last synced: another means Redis lost its data.
    epoch: Mutex<Option<String>>,
    room_capacity: usize,
    timing: Timing,
    deadlines: Deadlines<Due>,
    stats: Stats,
    commit: redis::Script,
    take_ids: redis::Script,
    sync: redis::Script,
    seqs: redis::Script,
}

impl fmt::Debug for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backplane")
            .field("instance", &self.instance)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unix_millis() -> u64 {
    unix_micros() / 1000
}

fn unix_micros() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Backplane {
    /// A backplane for one instance; it reaches Redis once [`Backplane::run`] runs.
    pub fn new(config: BackplaneConfig, room_capacity: usize, timing: Timing) -> Arc<Self> {
        Arc::new(Self {
            config,
            instance: crate::new_token(),
            conn: Mutex::new(None),
            local: Mutex::default(),
            ids: tokio::sync::Mutex::new((1, 0)),
            highest_id: AtomicU64::new(0),
            clock_offset: AtomicI64::new(0),
            alive: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            mark_due: AtomicBool::new(false),
            back_since: Mutex::new(None),
            epoch: Mutex::new(None),
            room_capacity,
            timing,
            deadlines: Deadlines::default(),
            stats: Stats::default(),
            commit: redis::Script::new(COMMIT),
            take_ids: redis::Script::new(TAKE_IDS),
            sync: redis::Script::new(SYNC),
            seqs: redis::Script::new(SEQS),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.config.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    fn channel_of(&self, instance: &str) -> String {
        self.key(&["instance", instance])
    }

    fn lock_local(&self) -> MutexGuard<'_, LocalState> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connection(&self) -> Result<ConnectionManager, Failure> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| Failure::Redis("not connected yet".into()))
    }

    /// Runs one Redis request within the timeout.
    async fn timed<T>(
        &self,
        request: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.config.timeout, request).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Failure::Redis("no answer within the timeout".into())),
        }
    }

    /// Whether Redis answers and this instance hears its channel: what `/healthz` says.
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
            && self.subscribed.load(Ordering::Relaxed)
            && self.synced.load(Ordering::Relaxed)
    }

    /// Loads `room`, applies `change` and commits the result with the messages it made, trying
    /// again while other instances change the room in between. `change` may run several times.
    async fn update<T>(
        &self,
        room: &str,
        index: bool,
        change: impl FnMut(&mut Room, u64) -> Result<(T, Deliveries), Refusal>,
    ) -> Result<T, Failure> {
        Ok(self.update_from(room, index, None, change).await?.0)
    }

    /// [`Backplane::update`] for messages `from` a peer of this instance: each carries its
    /// sender, so that the instance of an addressee who has just gone can tell the sender so.
    /// Also returns the addressees whose instance nobody heard for (it died).
    async fn update_from<T>(
        &self,
        room: &str,
        index: bool,
        from: Option<PeerId>,
        mut change: impl FnMut(&mut Room, u64) -> Result<(T, Deliveries), Refusal>,
    ) -> Result<(T, Vec<PeerId>), Failure> {
        let mut conn = self.connection()?;
        let key = self.key(&["room", room]);
        let index_key = if index {
            self.key(&["rooms-of", &self.instance])
        } else {
            String::new()
        };
        for tries in 0..MAX_TRIES {
            if tries > 0 {
                tokio::time::sleep(conflict_pause(tries, getrandom::u32().unwrap_or(0))).await;
            }
            let (version, stored): (Option<u64>, Option<String>) = self
                .timed(
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("v")
                        .arg("s")
                        .query_async(&mut conn),
                )
                .await?;
            let mut state: Room = match stored.as_deref().map(serde_json::from_str) {
                Some(Ok(state)) => state,
                None => Room::default(),
                Some(Err(err)) => {
                    // Not ours to fix by hand: start the room afresh rather than refuse it forever.
                    tracing::warn!(%err, room, "unreadable room state in Redis: starting it afresh");
                    Room::default()
                }
            };
            let now = unix_millis();
            state.sweep(now);
            // Where each member was before the change: one it takes out (a removed member) is
            // still told so.
            let before: Vec<(PeerId, String)> = state
                .members()
                .iter()
                .map(|m| (m.id, m.instance.clone()))
                .collect();
            let (value, deliveries) = change(&mut state, now)?;
            let new = if state.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&state)
                    .map_err(|err| Failure::Redis(format!("cannot store the room: {err}")))?
            };
            let new = if stored.as_deref() == Some(new.as_str()) {
                "-".to_owned()
            } else {
                new
            };
            let mut invocation = self.commit.key(&key);
            invocation
                .arg(version.unwrap_or(0))
                .arg(new)
                .arg(&index_key)
                .arg(room)
                .arg(self.redis_deadline())
                .arg(if state.only_departed() {
                    millis(self.timing.resume_grace)
                } else {
                    0
                })
                .arg(self.key(&["seq", &self.instance, ""]));
            // Each message's addressee, and the instance and sender of a signal.
            let mut addressees: Vec<(PeerId, Option<(&str, PeerId)>)> = Vec::new();
            for (to, text) in &deliveries {
                // Addressees are members, or were until the change; one that went meanwhile
                // gets nothing.
                let instance = match state.member(*to) {
                    Some(member) => &member.instance,
                    None => match before.iter().find(|(id, _)| id == to) {
                        Some((_, instance)) => instance,
                        None => continue,
                    },
                };
                let payload = match from {
                    Some(from) => format!("{to}/{from}/{} {text}", self.instance),
                    None => format!("{to} {text}"),
                };
                invocation.arg(self.channel_of(instance)).arg(payload);
                addressees.push((*to, from.map(|from| (instance.as_str(), from))));
            }
            let done: Vec<i64> = self.timed(invocation.invoke_async(&mut conn)).await?;
            if done.first() == Some(&2) {
                return Err(Failure::Redis(
                    "Redis ran the update after its deadline".into(),
                ));
            }
            if done.first() == Some(&1) {
                let mut unheard = Vec::new();
                let now = Instant::now();
                let mut local = self.lock_local();
                for (&code, &(to, signal)) in done[1..].iter().zip(&addressees) {
                    if code & 1 == 1 {
                        unheard.push(to);
                    } else if let (Some((instance, from)), Ok(seq @ 1..)) =
                        (signal, u64::try_from(code >> 1))
                    {
                        local.sent.record(instance, seq, from, now);
                    }
                }
                drop(local);
                self.stats
                    .published
                    .fetch_add(addressees.len() as u64, Ordering::Relaxed);
                return Ok((value, unheard));
            }
            self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        Err(Failure::Refused(Refusal::new(
            ErrorKind::BackplaneUnavailable,
            "the room is changing too fast to join it right now: try again",
        )))
    }

    /// When an update sent now must have run, on Redis's clock (microseconds): once this
    /// instance stops waiting for it, it must not happen.
    fn redis_deadline(&self) -> i64 {
        let ours = i64::try_from(unix_micros()).unwrap_or(i64::MAX);
        let timeout = i64::try_from(self.config.timeout.as_micros()).unwrap_or(i64::MAX);
        ours.saturating_add(self.clock_offset.load(Ordering::Relaxed))
            .saturating_add(timeout)
    }

    /// A fresh peer id, unique across every instance on this Redis.
    async fn next_id(&self) -> Result<PeerId, Failure> {
        let mut ids = self.ids.lock().await;
        if ids.0 > ids.1 {
            let mut conn = self.connection()?;
            let floor = self.highest_id.load(Ordering::Relaxed);
            let last: u64 = self
                .timed(
                    self.take_ids
                        .key(self.key(&["peer-ids"]))
                        .arg(floor)
                        .arg(ID_BLOCK)
                        .invoke_async(&mut conn),
                )
                .await?;
            *ids = (last.saturating_sub(ID_BLOCK) + 1, last);
            self.highest_id.fetch_max(last, Ordering::Relaxed);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(PeerId(id))
    }

    /// Puts a peer into a room shared by every instance: see [`crate::Registry::join`].
    pub async fn join(
        &self,
        request: JoinRequest,
        mailbox: MailboxRef,
        ice_servers: impl Fn(PeerId) -> Vec<IceServer>,
    ) -> Result<Joined, Refusal> {
        request.validate()?;
        if !self.healthy() {
            return Err(unavailable());
        }
        self.try_join(request, mailbox, ice_servers)
            .await
            .map_err(Failure::into_refusal)
    }

    async fn try_join(
        &self,
        request: JoinRequest,
        mailbox: MailboxRef,
        ice_servers: impl Fn(PeerId) -> Vec<IceServer>,
    ) -> Result<Joined, Failure> {
        let JoinRequest {
            room,
            name,
            resume,
            session,
            passphrase,
        } = request;
        let mut conn = self.connection()?;
        // A resume token names its room; a reservation made moments ago may not be indexed yet,
        // so the room the client names is the fallback.
        let room = match &resume {
            Some(token) => {
                let indexed: Option<String> =
                    self.timed(conn.get(self.key(&["token", token]))).await?;
                indexed.unwrap_or(room)
            }
            None => room,
        };
        // A token still held by a member whose instance died before anyone noticed: that
        // instance is taken for gone now, so that its peer need not wait for the heartbeat.
        let dead = match &resume {
            Some(token) => self.dead_holder(&room, token).await?,
            None => None,
        };
        let fresh = match resume {
            Some(_) => PeerId(0),
            None => self.next_id().await?,
        };
        let resume_token = crate::new_token();
        let grace = millis(self.timing.resume_grace);
        let instance = self.instance.clone();
        let capacity = self.room_capacity;
        let mut registered: Option<PeerId> = None;
        let result = self
            .update(&room, true, |state, now| {
                let mut deliveries = Vec::new();
                if let Some(dead) = &dead {
                    deliveries = state.reap(dead, now, now.saturating_add(grace)).0;
                }
                // The token's member is still in the room: its old connection's leave has not
                // landed (its relay waits for Redis, or has not noticed the drop yet). Not an
                // unknown token: the page tries again in a moment, and finds its place (the
                // chaos run saw a place lost so, after Redis was cut off).
                if let Some(token) = &resume {
                    if state.members().iter().any(|m| &m.resume_token == token) {
                        return Err(Refusal::new(
                            ErrorKind::BackplaneUnavailable,
                            "your previous connection is still leaving the room: try again",
                        ));
                    }
                }
                let arrival = Arrival {
                    id: fresh,
                    name: name.clone(),
                    resume: resume.clone(),
                    session: session.clone(),
                    resume_token: resume_token.clone(),
                    instance: instance.clone(),
                };
                // A locked room: the knock is committed, and the page told to ask again.
                if let Some(told) = state.knock(&room, &arrival, passphrase.as_deref(), now)? {
                    deliveries.extend(told);
                    return Ok((None, deliveries));
                }
                let admitted = state.join(&room, arrival, capacity, now)?;
                let id = admitted.id;
                deliveries.extend(admitted.deliveries);
                // `welcome` and the held messages go through this instance's own channel, so
                // that nothing another instance sends the new peer can overtake them.
                let servers = ice_servers(id);
                let text = welcome(id, &room, admitted.peers, servers, resume_token.clone());
                deliveries.push((id, text));
                let released = admitted.released.len();
                let released_bytes = admitted.released.iter().map(String::len).sum();
                deliveries.extend(admitted.released.into_iter().map(|text| (id, text)));
                deliveries.extend(admitted.door.map(|text| (id, text)));
                // Their senders' relays hear they were taken (see `LocalState::held`).
                deliveries.extend(
                    admitted
                        .taken
                        .into_iter()
                        .map(|(from, number)| (from, format!("{TAKEN}{number}"))),
                );
                // Reachable before the commit: its messages may arrive before Redis's answer.
                if let Some(member) = state.member(id) {
                    self.register(id, &room, mailbox.clone(), member.clone());
                    registered = Some(id);
                }
                Ok((
                    Some(Joined {
                        id,
                        room: room.clone(),
                        released,
                        released_bytes,
                    }),
                    deliveries,
                ))
            })
            .await
            .and_then(|joined| joined.ok_or_else(|| Failure::Refused(Room::knocking())));
        match &result {
            Ok(joined) => {
                if let Some(token) = &resume {
                    // Used up: another instance must not find it again.
                    let _: Result<(), _> = self.timed(conn.del(self.key(&["token", token]))).await;
                }
                if registered != Some(joined.id) {
                    tracing::warn!(id = %joined.id, "joined but not registered");
                }
            }
            Err(err) => {
                if let Some(local) = registered.and_then(|id| self.unregister(id)) {
                    if matches!(err, Failure::Redis(_)) {
                        // The commit may have gone through before its answer was lost.
                        self.pend_leave(local, false);
                    }
                }
            }
        }
        match result {
            // Redis lost its data moments ago: the reservation may not be back yet (its relay
            // puts it back at its next heartbeat). The page tries again shortly.
            Err(Failure::Refused(refusal))
                if refusal.kind == ErrorKind::InvalidResume && self.wiped_lately() =>
            {
                Err(Failure::Redis(
                    "a resume while Redis's lost data is being put back".into(),
                ))
            }
            result => result,
        }
    }

    /// Whether this instance found, within a few heartbeats, that Redis had lost its data.
    fn wiped_lately(&self) -> bool {
        let lately = self.config.presence_ttl * 2;
        self.lock_local()
            .wiped_at
            .is_some_and(|at| at.elapsed() < lately)
    }

    fn pend_leave(&self, local: Local, reserve: bool) {
        let mut state = self.lock_local();
        let wipes = state.wipes;
        state.pending.push(PendingLeave {
            room: local.room,
            member: local.member,
            reserve,
            wipes,
        });
    }

    /// The instance of the member holding `token` in `room`, if that instance is gone.
    async fn dead_holder(&self, room: &str, token: &str) -> Result<Option<String>, Failure> {
        let mut conn = self.connection()?;
        let stored: Option<String> = self
            .timed(conn.hget(self.key(&["room", room]), "s"))
            .await?;
        let Some(state) = stored.and_then(|s| serde_json::from_str::<Room>(&s).ok()) else {
            return Ok(None);
        };
        let Some(holder) = state
            .members()
            .iter()
            .find(|m| m.resume_token == token && m.instance != self.instance)
        else {
            return Ok(None);
        };
        // Its presence lasts a few heartbeats after a crash; its subscription ends with it.
        let (alive, listeners): (bool, Vec<(String, u64)>) = self
            .timed(
                redis::pipe()
                    .exists(self.key(&["alive", &holder.instance]))
                    .cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(self.channel_of(&holder.instance))
                    .query_async(&mut conn),
            )
            .await?;
        let heard = listeners.first().is_some_and(|(_, n)| *n > 0);
        Ok((!alive || !heard).then(|| holder.instance.clone()))
    }

    fn register(&self, id: PeerId, room: &str, mailbox: MailboxRef, member: Member) {
        let mut local = self.lock_local();
        let previous = local.peers.insert(
            id,
            Local {
                room: room.to_owned(),
                mailbox,
                member,
                view: BTreeSet::new(),
            },
        );
        if previous.is_none() {
            *local.rooms.entry(room.to_owned()).or_default() += 1;
        }
    }

    fn unregister(&self, id: PeerId) -> Option<Local> {
        let mut local = self.lock_local();
        let gone = local.peers.remove(&id)?;
        if let Some(count) = local.rooms.get_mut(&gone.room) {
            *count -= 1;
            if *count == 0 {
                local.rooms.remove(&gone.room);
            }
        }
        Some(gone)
    }

    /// Forwards a signal: see [`crate::Registry::relay`].
    pub async fn relay(
        &self,
        from: PeerId,
        to: Option<PeerId>,
        signal: RawSignal,
    ) -> Result<Relayed, Refusal> {
        let Some(room) = self.lock_local().peers.get(&from).map(|p| p.room.clone()) else {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before signaling",
            ));
        };
        // Until this instance has put its members back (Redis may have restarted empty), the
        // room may not know the sender yet.
        if !self.healthy() {
            return Err(unavailable());
        }
        // `Ok(bytes)` delivered, `Err(number)` held.
        let (route, unheard): (Result<usize, u64>, _) = self
            .update_from(&room, false, Some(from), |state, now| {
                state.number_holds_from(now.saturating_mul(1000));
                Ok(match state.relay(from, to, &signal, || now)? {
                    Route::Deliver(target, text) => (Ok(text.len()), vec![(target, text)]),
                    Route::Held(number, _) => (Err(number), Vec::new()),
                })
            })
            .await
            .map_err(Failure::into_refusal)?;
        // Its relay died and nobody has noticed yet: the peer will resume elsewhere.
        if let Some(gone) = unheard.first() {
            self.stats.bounced.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::new(
                ErrorKind::NoPeer,
                format!("peer {gone} lost its connection to the relay: it may be back shortly"),
            ));
        }
        Ok(match route {
            Ok(bytes) => Relayed::Delivered(bytes),
            Err(number) => {
                {
                    let mut local = self.lock_local();
                    let wipes = local.wipes;
                    local.held.insert((from, number), wipes);
                }
                let due = Due::Held { room, number, from };
                self.deadlines.add(Instant::now() + self.timing.hold, due);
                Relayed::Held
            }
        })
    }

    /// Carries out a room control request: see [`crate::Registry::control`].
    pub async fn control(&self, from: PeerId, control: Control) -> Result<(), Refusal> {
        let Some(room) = self.lock_local().peers.get(&from).map(|p| p.room.clone()) else {
            return Err(Refusal::new(
                ErrorKind::NotJoined,
                "send \"join\" before changing the room",
            ));
        };
        if !self.healthy() {
            return Err(unavailable());
        }
        self.update(&room, false, |state, now| {
            Ok(((), state.control(&room, from, &control, now)?))
        })
        .await
        .map_err(Failure::into_refusal)
    }

    /// Takes a peer out of its room: see [`crate::Registry::leave`]. If Redis does not take it,
    /// it is tried again once Redis is back.
    pub async fn leave(&self, id: PeerId, reserve: bool) {
        let Some(local) = self.unregister(id) else {
            return;
        };
        // Redis may have lost the room, and this instance not yet looked: a leave now would
        // find no member and reserve no place (the chaos run saw a resume refused so).
        if !self.healthy() {
            self.pend_leave(local, reserve);
            return;
        }
        if let Err(err) = self
            .try_leave(&local.room, &local.member, reserve, false)
            .await
        {
            tracing::warn!(?err, %id, "could not leave through the backplane: will retry");
            self.pend_leave(local, reserve);
        }
    }

    /// Takes `member` out of `room`. With `lost` (Redis lost its data since the peer's
    /// connection ended), a member the room no longer has is told to those who saw it
    /// ([`Room::left_while_lost`]); the chaos run saw two peers keep a ghost otherwise, and a
    /// dropped peer lose its place.
    async fn try_leave(
        &self,
        room: &str,
        member: &Member,
        reserve: bool,
        lost: bool,
    ) -> Result<(), Failure> {
        let grace = millis(self.timing.resume_grace);
        let id = member.id;
        let reserved = self
            .update(room, false, |state, now| {
                let until = now.saturating_add(grace);
                let left = match state.member(id) {
                    // Resumed meanwhile (on another instance, if this one was taken for gone):
                    // a later connection's place, not this one's.
                    Some(there)
                        if there.instance != self.instance
                            || there.resume_token != member.resume_token =>
                    {
                        None
                    }
                    Some(_) => {
                        let left = state.leave(id, reserve, now, until);
                        // Remembered a while, for members put back after Redis lost its data
                        // (see `on_sync`).
                        state.note_departure(id, reserve, until);
                        left
                    }
                    None if lost => state.left_while_lost(member, reserve, now, until),
                    None => None,
                };
                Ok(match left {
                    Some(left) => (
                        left.reserved.map(|token| (token, member.clone(), until)),
                        left.deliveries,
                    ),
                    None => (None, Vec::new()),
                })
            })
            .await?;
        if let Some((token, member, until)) = reserved {
            // Kept here too, to be put back should Redis lose it.
            self.lock_local().reserved.insert(
                token.clone(),
                Reserved {
                    room: room.to_owned(),
                    member,
                    until,
                },
            );
            self.index_token(&token, room).await?;
            let due = Due::Reservation {
                room: room.to_owned(),
                token,
            };
            self.deadlines
                .add(Instant::now() + self.timing.resume_grace, due);
        }
        Ok(())
    }

    async fn index_token(&self, token: &str, room: &str) -> Result<(), Failure> {
        let mut conn = self.connection()?;
        let grace = millis(self.timing.resume_grace);
        let _: () = self
            .timed(conn.pset_ex(self.key(&["token", token]), room, grace))
            .await?;
        Ok(())
    }

    /// Waits until a held message or a reservation made here is due.
    pub async fn next_due(&self) -> Vec<Due> {
        self.deadlines.next_due().await
    }

    /// Ends what is due: see [`crate::Registry::expire`].
    pub async fn expire(&self, due: Due) -> Option<MailboxRef> {
        let again = due.clone();
        let result = match due {
            // Not before this instance has looked whether Redis lost its data meanwhile.
            Due::Held { .. } if !self.healthy() => Err(Failure::Redis("not synced".into())),
            Due::Held { room, number, from } => self
                .update(&room, false, |state, _| {
                    Ok((state.expire_held(number, from), Vec::new()))
                })
                .await
                .map(|expired| {
                    let mut local = self.lock_local();
                    let held_in = local.held.remove(&(from, number));
                    let taken = local.taken.remove(&(from, number));
                    let lost = held_in.is_some_and(|wipes| wipes != local.wipes) && !taken;
                    drop(local);
                    if expired || lost {
                        self.mailbox_of(from)
                    } else {
                        None
                    }
                }),
            Due::Reservation { room, token } => {
                self.lock_local().reserved.remove(&token);
                self.update(&room, false, |state, _| {
                    state.expire_reservation(&token);
                    Ok(((), Vec::new()))
                })
                .await
                .map(|()| None)
            }
        };
        result.unwrap_or_else(|err| {
            // Redis is away: a held message stays in its room until expired here, and its
            // sender must hear it was not taken (the chaos run lost that word when the hold
            // time ran out while Redis was paused). Reservations other instances sweep too.
            tracing::debug!(?err, "could not expire through the backplane: trying again");
            if matches!(again, Due::Held { .. }) {
                self.deadlines
                    .add(Instant::now() + self.config.heartbeat, again);
            }
            None
        })
    }

    fn mailbox_of(&self, id: PeerId) -> Option<MailboxRef> {
        self.lock_local().peers.get(&id).map(|p| p.mailbox.clone())
    }

    /// How many rooms have a peer connected to this instance.
    pub fn room_count(&self) -> usize {
        self.lock_local().rooms.len()
    }

    /// How many peers are connected to this instance and in a room.
    pub fn member_count(&self) -> usize {
        self.lock_local().peers.len()
    }

    /// Keeps this instance known to the others and Redis's health known to it, and listens on
    /// its channel, until `shutdown`. Then says goodbye: see [`Backplane::depart`].
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::join!(
            self.clone().heartbeat(shutdown.clone()),
            self.clone().listen(shutdown)
        );
    }

    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let was = self.alive.load(Ordering::Relaxed);
            match self.beat().await {
                Ok(taken_for_gone) => {
                    if !was {
                        tracing::info!(instance = %self.instance, "backplane: Redis answers");
                        *self
                            .back_since
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                            Some(Instant::now());
                    }
                    self.alive.store(true, Ordering::Relaxed);
                    // Its members go back (below) before it serves again: a leave meanwhile
                    // waits, or the place it reserves would go with the member put back.
                    if taken_for_gone {
                        self.synced.store(false, Ordering::Relaxed);
                    }
                    // Members go back, and leaves are finished, only once this instance hears
                    // its channel again: what they tell its own members would reach nobody
                    // (the chaos run saw peers told twice that another joined, the word that
                    // it had left lost on a channel not yet heard again after Redis restarted).
                    // (Without a subscription, `synced` is false too: the listener says so.)
                    if self.subscribed.load(Ordering::Relaxed) {
                        if !self.synced.load(Ordering::Relaxed) {
                            self.resync().await;
                        }
                        self.retry_leaves().await;
                        if let Err(err) = self.settle_lost().await {
                            tracing::debug!(?err, "backplane: lost signals not settled yet");
                        }
                    }
                    self.reap().await;
                }
                Err(err) => {
                    if was {
                        tracing::warn!(?err, "backplane: Redis is unreachable; new joins are refused until it is back");
                    }
                    self.alive.store(false, Ordering::Relaxed);
                    // What Redis holds may be gone when it comes back: put the members back then.
                    self.synced.store(false, Ordering::Relaxed);
                    // A connection that went deaf without an error (a cut that a NAT or a
                    // firewall forgot) is never made anew by its manager, which waits for an
                    // error (the test
                    // `a_signal_lost_with_a_subscription_cut_off_unnoticed_is_refused_to_its_sender`
                    // never saw this instance healthy again). When the listener could subscribe
                    // afresh, Redis is there and only this connection is deaf: the next beat
                    // connects anew. Not otherwise: across a plain cut the old connection comes
                    // back by itself once packets flow again.
                    if self.subscribed.load(Ordering::Relaxed) {
                        *self
                            .conn
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                    }
                }
            }
        }
    }

    /// Finds and tells of signals lost between instances (see [`crate::acks`]): publishes the
    /// mark of the senders' counts once the listener subscribed again, reports the gaps found
    /// to their senders' instances, and tells this instance's peers whose signals were reported
    /// lost.
    async fn settle_lost(&self) -> Result<(), Failure> {
        let mut conn = self.connection()?;
        if self.mark_due.swap(false, Ordering::Relaxed) {
            let mut invocation = self.seqs.prepare_invoke();
            invocation
                .arg(self.key(&["instances"]))
                .arg(self.key(&["seq", ""]))
                .arg(self.channel_of(&self.instance))
                .arg(acks::SEQS_MARK);
            if let Err(err) = self.timed::<i64>(invocation.invoke_async(&mut conn)).await {
                self.mark_due.store(true, Ordering::Relaxed);
                return Err(err);
            }
        }
        let gaps = self.lock_local().heard.take_gaps();
        if !gaps.is_empty() {
            let mut pipe = redis::pipe();
            for gap in &gaps {
                let list = self.key(&["lost", &gap.sender]);
                pipe.rpush(&list, gap.report(&self.instance))
                    .ignore()
                    .expire(&list, 60)
                    .ignore();
            }
            if let Err(err) = self.timed::<()>(pipe.query_async(&mut conn)).await {
                self.lock_local().heard.put_back(gaps);
                return Err(err);
            }
            tracing::warn!(
                ?gaps,
                "backplane: signals to this instance were lost; their senders are told"
            );
        }
        let list = self.key(&["lost", &self.instance]);
        let (reports,): (Vec<String>,) = self
            .timed(
                redis::pipe()
                    .atomic()
                    .lrange(&list, 0, -1)
                    .del(&list)
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?;
        let mut lost = Vec::new();
        {
            let mut local = self.lock_local();
            for report in &reports {
                if let Some((receiver, first, last)) = acks::Gap::read(report) {
                    lost.extend(local.sent.lost(receiver, first, last));
                }
            }
            local.sent.prune(Instant::now());
        }
        for from in lost {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            if let Some(mailbox) = self.mailbox_of(from) {
                mailbox.deliver(
                    ServerMsg::error(
                        ErrorKind::BackplaneUnavailable,
                        "a signal of yours was lost between relays while one of them lost Redis: send it again",
                    )
                    .to_json(),
                );
            }
        }
        Ok(())
    }

    /// Says this instance is alive, connecting first if need be; measures the round trip.
    /// Returns whether another instance had taken this one for gone meanwhile.
    async fn beat(&self) -> Result<bool, Failure> {
        let mut conn = match self.connection() {
            Ok(conn) => conn,
            Err(_) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.timeout))
                    .set_response_timeout(Some(self.config.timeout))
                    .set_number_of_retries(1);
                let made = self
                    .timed(
                        self.config
                            .client
                            .get_connection_manager_with_config(config),
                    )
                    .await?;
                *self
                    .conn
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(made.clone());
                made
            }
        };
        let started = Instant::now();
        let sent_at = unix_micros();
        let ttl = millis(self.config.presence_ttl);
        let alive = self.key(&["alive", &self.instance]);
        let (added, (secs, micros_part)): (u64, (u64, u64)) = self
            .timed(
                redis::pipe()
                    .pset_ex(&alive, 1, ttl)
                    .ignore()
                    .sadd(self.key(&["instances"]), &self.instance)
                    .cmd("TIME")
                    .query_async(&mut conn),
            )
            .await?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Redis read its clock about half a round trip after we read ours.
        let theirs = secs.saturating_mul(1_000_000).saturating_add(micros_part);
        let ours = sent_at.saturating_add(micros / 2);
        let offset =
            i64::try_from(theirs).unwrap_or(i64::MAX) - i64::try_from(ours).unwrap_or(i64::MAX);
        self.clock_offset.store(offset, Ordering::Relaxed);
        // Not on the list any more, though synced: another instance took this one for gone
        // (it stalled past its presence, as a relay starved of CPU does) and turned its members
        // into reservations. Put them back, or their signals are refused for good (the chaos
        // run, on a machine at load 25, saw 850 `not-joined`).
        let taken_for_gone = added == 1 && self.synced.load(Ordering::Relaxed);
        if taken_for_gone {
            tracing::warn!(instance = %self.instance, "backplane: this instance was taken for gone; putting its members back");
        }
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        self.stats
            .round_trip_micros
            .fetch_add(micros, Ordering::Relaxed);
        Ok(taken_for_gone)
    }

    /// Puts this instance's members back into their rooms (Redis may have lost them, or taken
    /// this instance for gone) and raises the id counter past every id handed out here.
    async fn resync(&self) {
        let mut restored = true;
        match self.lost_data().await {
            Ok(true) => {
                {
                    let mut local = self.lock_local();
                    local.wipes += 1;
                    local.wiped_at = Some(Instant::now());
                }
                if !self.restore_reservations().await {
                    restored = false;
                }
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(?err, "backplane: could not read Redis's mark");
                restored = false;
            }
        }
        let mut rooms: HashMap<String, Vec<Member>> = HashMap::new();
        for p in self.lock_local().peers.values() {
            rooms
                .entry(p.room.clone())
                .or_default()
                .push(p.member.clone());
        }
        for (room, members) in rooms {
            let done = self
                .update(&room, true, |state, _| {
                    Ok(((), state.restore(members.clone())))
                })
                .await;
            if let Err(err) = done {
                tracing::warn!(?err, "backplane: could not put members back");
                restored = false;
            }
        }
        let raised = match self.connection() {
            Ok(mut conn) => self
                .timed(
                    self.take_ids
                        .key(self.key(&["peer-ids"]))
                        .arg(self.highest_id.load(Ordering::Relaxed))
                        .arg(0)
                        .invoke_async::<u64>(&mut conn),
                )
                .await
                .is_ok(),
            Err(_) => false,
        };
        // Before it serves again: a resume arriving meanwhile would find the leaver's place
        // still a member's.
        self.retry_leaves().await;
        // Words published for its members while this instance did not hear its channel were
        // lost (the chaos run saw peers keep a ghost of one that left meanwhile, and be told
        // that one left whose arrival they never heard).
        if let Err(err) = self.sync_views().await {
            tracing::warn!(
                ?err,
                "backplane: could not check what its members were told"
            );
            restored = false;
        }
        if restored && raised {
            self.synced.store(true, Ordering::Relaxed);
        }
    }

    /// Whether Redis lost its data since this instance last looked (it restarted empty): a
    /// random mark that the first instance to look sets, and that only a loss takes away.
    async fn lost_data(&self) -> Result<bool, Failure> {
        let mut conn = self.connection()?;
        let key = self.key(&["epoch"]);
        let current: Option<String> = self
            .timed(
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(crate::new_token())
                    .arg("NX")
                    .ignore()
                    .get(&key)
                    .query_async::<(Option<String>,)>(&mut conn),
            )
            .await?
            .0;
        let mut epoch = self
            .epoch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lost = epoch.is_some() && *epoch != current;
        *epoch = current;
        Ok(lost)
    }

    /// Puts back the places this instance reserved that Redis lost: their peers resume them.
    /// Returns whether all went back.
    async fn restore_reservations(&self) -> bool {
        let now = unix_millis();
        let reserved: Vec<(String, String, Member, u64)> = self
            .lock_local()
            .reserved
            .iter()
            .filter(|(_, r)| r.until > now)
            .map(|(token, r)| (token.clone(), r.room.clone(), r.member.clone(), r.until))
            .collect();
        let mut all = true;
        for (token, room, member, until) in reserved {
            let put_back = async {
                self.update(&room, true, |state, now| {
                    state.restore_reservation(&member, until, now);
                    Ok(((), Vec::new()))
                })
                .await?;
                self.index_token(&token, &room).await
            };
            if let Err(err) = put_back.await {
                tracing::warn!(?err, "backplane: could not put a reservation back");
                all = false;
            }
        }
        all
    }

    async fn retry_leaves(&self) {
        let (pending, wipes) = {
            let mut local = self.lock_local();
            (std::mem::take(&mut local.pending), local.wipes)
        };
        for leave in pending {
            let lost = leave.wipes != wipes;
            let tried = self
                .try_leave(&leave.room, &leave.member, leave.reserve, lost)
                .await;
            if let Err(err) = tried {
                tracing::debug!(?err, "backplane: a leave is still pending");
                self.lock_local().pending.push(leave);
            }
        }
    }

    /// Finds instances whose presence expired and turns their members into reservations.
    async fn reap(&self) {
        // Back from an outage of Redis (or just started): every other instance's presence ran
        // out meanwhile too, and each renews it at its own next beat. Taken for gone now, a
        // live instance would put its members back moments later, and everybody in their rooms
        // would hear them leave and join again (the chaos run's `cut-redis` saw peers told
        // twice that one joined, the word that it left lost on a channel not yet heard again).
        let back_since = *self
            .back_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if back_since
            .is_none_or(|at| at.elapsed() < self.config.presence_ttl + self.config.heartbeat)
        {
            return;
        }
        if let Err(err) = self.try_reap().await {
            tracing::debug!(
                ?err,
                "backplane: could not look for instances that are gone"
            );
        }
    }

    async fn try_reap(&self) -> Result<(), Failure> {
        let mut conn = self.connection()?;
        let instances: Vec<String> = self.timed(conn.smembers(self.key(&["instances"]))).await?;
        for instance in instances.iter().filter(|i| **i != self.instance) {
            let alive: bool = self
                .timed(conn.exists(self.key(&["alive", instance])))
                .await?;
            if alive {
                continue;
            }
            // One survivor reaps; the others see the claim and leave it.
            let claim = self.key(&["reaping", instance]);
            let claimed: Option<String> = self
                .timed(
                    redis::cmd("SET")
                        .arg(&claim)
                        .arg(&self.instance)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(self.config.presence_ttl) * 4)
                        .query_async(&mut conn),
                )
                .await?;
            if claimed.is_none() {
                continue;
            }
            tracing::info!(%instance, "backplane: an instance is gone; its peers may resume elsewhere");
            self.stats.reaped.fetch_add(1, Ordering::Relaxed);
            let index = self.key(&["rooms-of", instance]);
            let rooms: Vec<String> = self.timed(conn.smembers(&index)).await?;
            let grace = millis(self.timing.resume_grace);
            for room in rooms {
                let tokens = self
                    .update(&room, false, |state, now| {
                        let (deliveries, tokens) =
                            state.reap(instance, now, now.saturating_add(grace));
                        Ok((tokens, deliveries))
                    })
                    .await?;
                for token in tokens {
                    self.index_token(&token, &room).await?;
                }
            }
            let _: () = self
                .timed(
                    redis::pipe()
                        .del(&index)
                        .ignore()
                        .srem(self.key(&["instances"]), instance)
                        .ignore()
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(())
    }

    /// Reads this instance's channel and hands each message to its addressee, reconnecting
    /// whenever the subscription drops, until `shutdown`.
    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        let channel = self.channel_of(&self.instance);
        let mut first = true;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.timed(self.config.client.get_async_pubsub()).await {
                Ok(pubsub) => {
                    let (mut sink, mut stream) = pubsub.split();
                    if self.timed(sink.subscribe(&channel)).await.is_ok() {
                        if !first {
                            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        first = false;
                        self.subscribed.store(true, Ordering::Relaxed);
                        // What was published to the old subscription after it broke is lost:
                        // the mark tells how far each sender had counted.
                        self.mark_due.store(true, Ordering::Relaxed);
                        tracing::debug!(%channel, "backplane: listening");
                        let mut ping = tokio::time::interval(self.config.heartbeat);
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = ping.tick() => {
                                    // A Redis that vanished without closing the socket.
                                    if self.timed(sink.ping::<redis::Value>()).await.is_err() {
                                        break;
                                    }
                                }
                                msg = stream.next() => match msg {
                                    Some(msg) => self.on_message(msg.get_payload_bytes()),
                                    None => break,
                                },
                            }
                        }
                        self.subscribed.store(false, Ordering::Relaxed);
                        // Redis may have restarted empty before the heartbeat noticed it was
                        // gone: put the members back once it answers, whoever notices first.
                        self.synced.store(false, Ordering::Relaxed);
                        tracing::warn!("backplane: lost the subscription to Redis; reconnecting");
                    }
                }
                Err(err) => tracing::debug!(?err, "backplane: cannot subscribe yet"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.heartbeat) => {}
            }
        }
    }

    /// One published message: `TO TEXT`, or `TO/FROM/INSTANCE TEXT` for a signal from peer
    /// `FROM` of instance `INSTANCE`. A signal whose addressee is no longer here (it left, or
    /// its connection is closing, after the sender's relay published it) is not dropped: its
    /// sender is told, as a single relay tells it (`no-peer`).
    fn on_message(self: &Arc<Self>, payload: &[u8]) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let parsed = std::str::from_utf8(payload).ok().and_then(parse_payload);
        let Some(Published {
            to,
            sender,
            seq,
            text,
        }) = parsed
        else {
            tracing::warn!("backplane: a message that is not ours on our channel");
            return;
        };
        if let (Some((_, instance)), Some(seq)) = (sender, seq) {
            self.lock_local().heard.saw(instance, seq);
        }
        if let Some(mark) = text.strip_prefix(acks::SEQS_MARK) {
            let mut local = self.lock_local();
            for (instance, count) in acks::read_mark(mark) {
                local.heard.counted(instance, count);
            }
            return;
        }
        if let Some(sync) = text.strip_prefix(SYNC_MARK) {
            if let Some((room, state)) = sync.split_once('\n') {
                self.on_sync(room, state);
            }
            return;
        }
        if let Some(number) = text.strip_prefix(TAKEN) {
            if let Ok(number) = number.parse() {
                let mut local = self.lock_local();
                if local.held.contains_key(&(to, number)) {
                    local.taken.insert((to, number));
                }
            }
            return;
        }
        let delivered = {
            let mut local = self.lock_local();
            match local.peers.get_mut(&to) {
                Some(peer) => {
                    see(&mut peer.view, text);
                    peer.mailbox.deliver(text.to_owned())
                }
                None => false,
            }
        };
        if let (false, Some((from, instance))) = (delivered, sender) {
            let this = Arc::clone(self);
            let instance = instance.to_owned();
            tokio::spawn(async move { this.bounce(from, &instance, to).await });
        }
    }

    /// Tells this instance's members in `room` what they missed: each is told of the peers it
    /// believes there and that are not (`peer-left`), and of those there it was not told of
    /// (`peer-joined`). `state` is the room as it was when the [`SYNC`] was published, so
    /// everything published before it has been handed over, and nothing after.
    fn on_sync(&self, room: &str, state: &str) {
        let state: Room = if state.is_empty() {
            Room::default()
        } else {
            match serde_json::from_str(state) {
                Ok(state) => state,
                Err(err) => {
                    tracing::warn!(%err, room, "backplane: unreadable room state in a sync");
                    return;
                }
            }
        };
        // Moments after Redis lost its data, a peer missing from the room may be one its
        // relay has not put back yet: only those known to have left are told so (the others'
        // calls would break for nothing).
        let wiped_lately = self.wiped_lately();
        let known_gone = |id: PeerId| !wiped_lately || state.is_reserved(id) || state.departed(id);
        let mut local = self.lock_local();
        for (&id, peer) in local.peers.iter_mut().filter(|(_, p)| p.room == room) {
            // Not in the room at that point: its welcome, and all it is told, come after.
            if state.member(id).is_none() {
                continue;
            }
            let there: BTreeSet<PeerId> = state
                .members()
                .iter()
                .map(|m| m.id)
                .filter(|&m| m != id)
                .collect();
            let mut view = there.clone();
            for &gone in peer.view.difference(&there) {
                if !known_gone(gone) {
                    view.insert(gone);
                    continue;
                }
                tracing::info!(%id, %gone, room, "backplane: a member missed that a peer left");
                let reconnecting = state.is_reserved(gone);
                let left = ServerMsg::PeerLeft {
                    peer: gone,
                    reconnecting,
                };
                peer.mailbox.deliver(left.to_json());
            }
            for &new in there.difference(&peer.view) {
                tracing::info!(%id, %new, room, "backplane: a member missed that a peer joined");
                if let Some(member) = state.member(new) {
                    let joined = ServerMsg::PeerJoined {
                        peer: member.info(),
                    };
                    peer.mailbox.deliver(joined.to_json());
                }
            }
            peer.view = view;
        }
    }

    /// Asks for a [`SYNC`] of every room with a member here, for every instance with a member
    /// there: what this instance put back is news to peers that joined meanwhile elsewhere.
    async fn sync_views(&self) -> Result<(), Failure> {
        let mut conn = self.connection()?;
        let rooms: Vec<String> = self.lock_local().rooms.keys().cloned().collect();
        let channels = self.channel_of("");
        for room in rooms {
            let _: i64 = self
                .timed(
                    self.sync
                        .key(self.key(&["room", &room]))
                        .arg(&channels)
                        .arg(SYNC_MARK)
                        .arg(&room)
                        .invoke_async(&mut conn),
                )
                .await?;
        }
        Ok(())
    }

    /// Tells peer `from` (of `instance`) that its signal found `to` gone.
    async fn bounce(&self, from: PeerId, instance: &str, to: PeerId) {
        self.stats.bounced.fetch_add(1, Ordering::Relaxed);
        let text = Refusal::peer_gone(to).to_msg().to_json();
        if instance == self.instance {
            if let Some(mailbox) = self.mailbox_of(from) {
                mailbox.deliver(text);
            }
            return;
        }
        let published = match self.connection() {
            Ok(mut conn) => {
                self.timed(
                    conn.publish::<_, _, i64>(self.channel_of(instance), format!("{from} {text}")),
                )
                .await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = published {
            // Redis is away: the sender's relay refuses its signals until it is back.
            tracing::warn!(?err, %from, %to, "backplane: could not tell a sender its addressee left");
        }
    }

    /// Takes this instance off the list once its connections have left: its presence goes at
    /// once instead of after its TTL.
    pub async fn depart(&self) {
        let Ok(mut conn) = self.connection() else {
            return;
        };
        self.retry_leaves().await;
        let result: Result<(), _> = self
            .timed(
                redis::pipe()
                    .del(self.key(&["alive", &self.instance]))
                    .ignore()
                    .del(self.key(&["rooms-of", &self.instance]))
                    .ignore()
                    .srem(self.key(&["instances"]), &self.instance)
                    .ignore()
                    .query_async(&mut conn),
            )
            .await;
        if let Err(err) = result {
            tracing::warn!(
                ?err,
                "backplane: could not say goodbye; the presence key will expire"
            );
        }
    }

    /// The backplane's figures in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "relay_backplane_up",
            "gauge",
            "1 while Redis answers and this instance hears its channel.",
            u8::from(self.healthy()).to_string(),
        );
        metric(
            "relay_backplane_published_total",
            "counter",
            "Messages this instance published for peers (on any instance).",
            get(&self.stats.published).to_string(),
        );
        metric(
            "relay_backplane_received_total",
            "counter",
            "Messages this instance received on its channel.",
            get(&self.stats.received).to_string(),
        );
        metric(
            "relay_backplane_reconnects_total",
            "counter",
            "Times the subscription to Redis was made again after it dropped.",
            get(&self.stats.reconnects).to_string(),
        );
        metric(
            "relay_backplane_conflicts_total",
            "counter",
            "Room updates tried again because another instance changed the room first.",
            get(&self.stats.conflicts).to_string(),
        );
        metric(
            "relay_backplane_instances_reaped_total",
            "counter",
            "Instances this one found gone and whose peers it let resume elsewhere.",
            get(&self.stats.reaped).to_string(),
        );
        metric(
            "relay_backplane_bounced_total",
            "counter",
            "Signals whose addressee (or its relay) had gone by the time they arrived: their senders got no-peer.",
            get(&self.stats.bounced).to_string(),
        );
        metric(
            "relay_backplane_lost_total",
            "counter",
            "Signals published here that the addressee's relay never heard (its subscription broke unnoticed): their senders got backplane-unavailable.",
            get(&self.stats.lost).to_string(),
        );
        let seconds = get(&self.stats.round_trip_micros) as f64 / 1e6;
        let _ = write!(
            out,
            "# HELP relay_backplane_round_trip_seconds Heartbeat round trips to Redis.\n\
             # TYPE relay_backplane_round_trip_seconds summary\n\
             relay_backplane_round_trip_seconds_sum {seconds}\n\
             relay_backplane_round_trip_seconds_count {}\n",
            get(&self.stats.round_trips)
        );
    }
}

/// Notes in `view` whom `text`, about to be handed to a member, says is in its room.
fn see(view: &mut BTreeSet<PeerId>, text: &str) {
    // Only these change a view; signals, the bulk, are not parsed.
    if !(text.starts_with(r#"{"type":"welcome""#) || text.starts_with(r#"{"type":"peer-"#)) {
        return;
    }
    match ServerMsg::parse(text) {
        Ok(ServerMsg::Welcome { peers, .. }) => *view = peers.iter().map(|p| p.id).collect(),
        Ok(ServerMsg::PeerJoined { peer }) => {
            view.insert(peer.id);
        }
        Ok(ServerMsg::PeerLeft { peer, .. }) => {
            view.remove(&peer);
        }
        _ => {}
    }
}

/// A message read from an instance's channel.
#[derive(Debug, PartialEq, Eq)]
struct Published<'a> {
    to: PeerId,
    /// The sender of a signal, and the instance holding its connection.
    sender: Option<(PeerId, &'a str)>,
    /// The signal's number in its instance's count for this channel.
    seq: Option<u64>,
    text: &'a str,
}

/// Splits a published message into its addressee, its sender if it carries one, and its text.
fn parse_payload(payload: &str) -> Option<Published<'_>> {
    let (address, text) = payload.split_once(' ')?;
    let mut parts = address.splitn(4, '/');
    let to = PeerId(parts.next()?.parse().ok()?);
    let sender = match (parts.next(), parts.next()) {
        (None, _) => None,
        (Some(from), Some(instance)) if !instance.is_empty() => {
            Some((PeerId(from.parse().ok()?), instance))
        }
        _ => return None,
    };
    let seq = match parts.next() {
        Some(seq) => Some(seq.parse().ok()?),
        None => None,
    };
    Some(Published {
        to,
        sender,
        seq,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_pauses_a_random_while_that_doubles_up_to_64_ms() {
        assert_eq!(conflict_pause(1, 0), Duration::ZERO);
        assert_eq!(conflict_pause(1, 1999), Duration::from_micros(1999));
        assert_eq!(conflict_pause(1, 2000), Duration::ZERO);
        assert_eq!(
            conflict_pause(3, u32::MAX),
            Duration::from_micros(u64::from(u32::MAX) % 8000)
        );
        assert!(conflict_pause(15, u32::MAX) < Duration::from_millis(64));
        assert_eq!(conflict_pause(15, 63_999), Duration::from_micros(63_999));
    }

    #[test]
    fn payloads_name_their_addressee_and_maybe_their_sender() {
        assert_eq!(
            parse_payload(r#"7 {"type":"peer-left"}"#),
            Some(Published {
                to: PeerId(7),
                sender: None,
                seq: None,
                text: r#"{"type":"peer-left"}"#
            })
        );
        assert_eq!(
            parse_payload(r#"7/3/ab12 {"type":"offer"}"#),
            Some(Published {
                to: PeerId(7),
                sender: Some((PeerId(3), "ab12")),
                seq: None,
                text: r#"{"type":"offer"}"#
            })
        );
        assert_eq!(
            parse_payload(r#"7/3/ab12/42 {"type":"offer"}"#),
            Some(Published {
                to: PeerId(7),
                sender: Some((PeerId(3), "ab12")),
                seq: Some(42),
                text: r#"{"type":"offer"}"#
            })
        );
        for bad in [
            "7",
            "x {}",
            "7/3 {}",
            "7/x/ab {}",
            "7/3/ {}",
            "7/3/ab/x {}",
            "",
        ] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
    }
}
