//! The load the generator puts on a relay: peer pairs driven in closed loop (as fast as the
//! relay returns messages) and open loop (on a fixed schedule), idle sockets, and a burst of
//! connections. Every phase samples the relay's CPU time and memory from `/proc`.
//!
//! The generator runs on a current-thread runtime: it is pinned to one core anyway, and one
//! thread keeps the clock of the sender and the receiver the same.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures_util::{
    stream::{self, SplitSink},
    SinkExt, StreamExt,
};
use tokio::{sync::Semaphore, task::JoinHandle};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    dialect::{self, Ident, RelayKind, Ws, Wss},
    procfs::{self, CpuSample},
    tls,
    workload::{Marker, Script, Side},
};

/// How many errors are kept word for word for the report.
const KEPT_ERRORS: usize = 5;

/// How long without a single message arriving counts as messages lost, not slow.
const STALL: Duration = Duration::from_secs(5);

/// What every reader and sender of one set of pairs shares.
struct Shared {
    kind: RelayKind,
    epoch: Instant,
    verify: bool,
    received: AtomicU64,
    misrouted: AtomicU64,
    out_of_order: AtomicU64,
    unexpected: AtomicU64,
    verify_failed: AtomicU64,
    send_failed: AtomicU64,
    closed_early: AtomicU64,
    /// Latencies are kept for messages due in `[record_from, record_until)` (ns since epoch).
    record_from: AtomicU64,
    record_until: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    /// Set before the pairs are torn down: what happens after is not an error.
    closing: AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn note(&self, error: impl FnOnce() -> String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < KEPT_ERRORS {
            errors.push(error());
        }
    }
}

/// One side of one pair: what it sends and how.
struct Peer {
    side: Side,
    script: Script,
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    next_seq: AtomicU64,
    sent: AtomicU64,
    /// Closed loop: permits to send to the partner; the partner's reader returns one per
    /// message it receives.
    window: Semaphore,
}

impl Peer {
    /// Sends the next message of the script, stamped as due at `due_ns`.
    async fn send_next(&self, shared: &Shared, due_ns: u64) -> bool {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let frame = self.script.render(seq, due_ns);
        let result = self.sink.lock().await.send(Message::text(frame)).await;
        match result {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(err) => {
                shared.send_failed.fetch_add(1, Ordering::Relaxed);
                shared.note(|| format!("send failed: {err}"));
                false
            }
        }
    }
}

/// A sample of everything a phase reports on, at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    received: u64,
    relay: CpuSample,
    generator: CpuSample,
    /// Busy ticks of the whole machine.
    machine: u64,
}

impl Sample {
    /// The share of one core that processes other than the relay and the generator used
    /// between `self` and `end`: anything else running on the machine disturbs the figures.
    fn others_util(&self, end: &Sample, ticks_per_sec: u64) -> f64 {
        let ours = |s: &Sample| -> (u64, u64) { (s.relay.ticks(), s.generator.ticks()) };
        let (relay0, gen0) = ours(self);
        let (relay1, gen1) = ours(end);
        let machine = end.machine.saturating_sub(self.machine);
        let others = machine.saturating_sub((relay1 - relay0) + (gen1 - gen0));
        let wall = end.at.duration_since(self.at).as_secs_f64();
        if wall > 0.0 {
            others as f64 / ticks_per_sec as f64 / wall
        } else {
            0.0
        }
    }
}

/// Throughput with as many messages in flight as the window allows.
#[derive(Clone, Debug, Default)]
pub struct ClosedLoop {
    /// Messages delivered in the measured interval.
    pub messages: u64,
    /// Messages delivered per second.
    pub msgs_per_sec: f64,
    /// Relay CPU time per delivered message, in microseconds.
    pub cpu_us_per_msg: f64,
    /// The relay's share of its core (1.0 = busy throughout).
    pub relay_util: f64,
    /// The generator's share of its core.
    pub generator_util: f64,
    /// The share of a core used by everything else on the machine.
    pub others_util: f64,
}

/// Latency at a fixed offered rate.
#[derive(Clone, Debug, Default)]
pub struct OpenLoop {
    /// The offered rate, messages per second.
    pub rate: f64,
    /// Messages whose latency was recorded.
    pub samples: u64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// The largest latency, microseconds.
    pub max_us: f64,
    /// Relay CPU time per delivered message, in microseconds.
    pub cpu_us_per_msg: f64,
    /// The relay's share of its core.
    pub relay_util: f64,
    /// The generator's share of its core.
    pub generator_util: f64,
    /// The share of a core used by everything else on the machine.
    pub others_util: f64,
    /// Every recorded latency, in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
    /// How late the generator was in sending the measured messages, in microseconds: the
    /// median, the 99th and 99.9th percentiles, and the worst. Lateness counts in the latency.
    pub send_lag_us: [f64; 4],
}

/// What went wrong with the messages, over all phases of one set of pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Messages sent.
    pub sent: u64,
    /// Messages received (each counted once per delivered copy).
    pub received: u64,
    /// Sent but never received.
    pub lost: u64,
    /// Received by a peer they were not for.
    pub misrouted: u64,
    /// Received out of order, or twice.
    pub out_of_order: u64,
    /// Frames that were neither a signal nor a keep-alive (e.g. an `error` from the relay).
    pub unexpected: u64,
    /// Relayed frames of the wrong shape (`--verify` only).
    pub verify_failed: u64,
    /// Sends that failed.
    pub send_failed: u64,
    /// Sockets the relay closed during the run.
    pub closed_early: u64,
    /// The first few errors, word for word.
    pub errors: Vec<String>,
}

impl Faults {
    /// Faults other than lost, misrouted and out-of-order messages.
    pub fn others(&self) -> u64 {
        self.unexpected + self.verify_failed + self.send_failed + self.closed_early
    }

    /// Whether every message arrived once, in order, where it was sent.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.misrouted == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.verify_failed == 0
            && self.send_failed == 0
            && self.closed_early == 0
    }
}

/// `pairs` pairs of peers connected through one relay, ready to send.
pub struct Pairs {
    shared: Arc<Shared>,
    peers: Vec<Arc<Peer>>,
    readers: Vec<JoinHandle<()>>,
    relay_pid: u32,
    ticks_per_sec: u64,
    window: usize,
}

impl Pairs {
    /// Connects `pairs` pairs, one after another, to the relay `kind` at `addr` (process
    /// `relay_pid`). In closed loop each direction keeps up to `window` messages in flight.
    /// With `verify`, every relayed frame is parsed and checked.
    pub async fn connect(
        kind: RelayKind,
        addr: SocketAddr,
        addr_b: SocketAddr,
        relay_pid: u32,
        pairs: u32,
        window: usize,
        verify: bool,
    ) -> anyhow::Result<Pairs> {
        let shared = Arc::new(Shared {
            kind,
            epoch: Instant::now(),
            verify,
            received: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            verify_failed: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            record_from: AtomicU64::new(u64::MAX),
            record_until: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            errors: Mutex::new(Vec::new()),
        });
        let mut peers = Vec::new();
        let mut readers = Vec::new();
        for pair in 0..pairs {
            let [(a_ws, a_id), (b_ws, b_id)] =
                dialect::connect_pair(kind, addr, addr_b, "pair", pair)
                    .await
                    .with_context(|| format!("connecting pair {pair}"))?;
            let (a_sink, a_stream) = a_ws.split();
            let (b_sink, b_stream) = b_ws.split();
            let peer = |side: Side, sink, partner: &Ident| {
                Arc::new(Peer {
                    side,
                    script: Script::new(pair, side, |payload| {
                        dialect::encode(kind, payload, partner)
                    }),
                    sink: tokio::sync::Mutex::new(sink),
                    next_seq: AtomicU64::new(0),
                    sent: AtomicU64::new(0),
                    window: Semaphore::new(window),
                })
            };
            let a = peer(Side::A, a_sink, &b_id);
            let b = peer(Side::B, b_sink, &a_id);
            readers.push(tokio::spawn(read_loop(
                a_stream,
                pair,
                a.clone(),
                b.clone(),
                b_id.clone(),
                shared.clone(),
            )));
            readers.push(tokio::spawn(read_loop(
                b_stream,
                pair,
                b.clone(),
                a.clone(),
                a_id,
                shared.clone(),
            )));
            peers.push(a);
            peers.push(b);
        }
        Ok(Pairs {
            shared,
            peers,
            readers,
            relay_pid,
            ticks_per_sec: procfs::clock_ticks_per_sec(),
            window,
        })
    }

    /// The mean frame length this relay's peers send, in bytes.
    pub fn mean_frame_len(&self) -> f64 {
        let n = self.peers.len().max(1) as f64;
        self.peers
            .iter()
            .map(|p| p.script.mean_frame_len())
            .sum::<f64>()
            / n
    }

    /// The frame-length ranges of offers/answers and of candidates, in bytes.
    pub fn frame_lens(&self) -> ((usize, usize), (usize, usize)) {
        let first = &self.peers[0].script;
        (first.sdp_frame_lens(), first.candidate_frame_lens())
    }

    fn sent(&self) -> u64 {
        self.peers
            .iter()
            .map(|p| p.sent.load(Ordering::Relaxed))
            .sum()
    }

    fn sample(&self) -> anyhow::Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            received: self.shared.received.load(Ordering::Relaxed),
            relay: CpuSample::take(self.relay_pid)?,
            generator: CpuSample::take(std::process::id())?,
            machine: procfs::machine_busy_ticks().unwrap_or(0),
        })
    }

    /// Waits until every message sent has arrived, or `timeout`, or nothing has arrived for
    /// [`STALL`].
    async fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = (self.shared.received.load(Ordering::Relaxed), Instant::now());
        loop {
            let received = self.shared.received.load(Ordering::Relaxed);
            if received >= self.sent()
                || Instant::now() >= deadline
                || self.shared.closed_early.load(Ordering::Relaxed) > 0
            {
                return;
            }
            if received != last.0 {
                last = (received, Instant::now());
            } else if last.1.elapsed() > STALL {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every peer sends as fast as its window allows: `warmup`, then `measure` measured. With
    /// `per_peer`, every peer sends exactly that many messages instead and the whole run is
    /// measured.
    pub async fn closed_loop(
        &self,
        warmup: Duration,
        measure: Duration,
        per_peer: Option<u64>,
    ) -> anyhow::Result<ClosedLoop> {
        // Nothing is in flight between phases: reset every window to its size.
        for peer in &self.peers {
            peer.window.forget_permits(peer.window.available_permits());
            peer.window.add_permits(self.window);
        }
        let stop = CancellationToken::new();
        let start_all = self.sample()?;
        let senders: Vec<JoinHandle<()>> = self
            .peers
            .iter()
            .map(|peer| {
                tokio::spawn(closed_sender(
                    peer.clone(),
                    self.shared.clone(),
                    stop.clone(),
                    per_peer,
                ))
            })
            .collect();
        let (start, end) = if per_peer.is_some() {
            let mut all = std::pin::pin!(futures_util::future::join_all(senders));
            // A lost message never returns its permit: give up when nothing arrives for a while
            // rather than wait for the senders forever.
            let mut last = (self.shared.received.load(Ordering::Relaxed), Instant::now());
            loop {
                tokio::select! {
                    _ = &mut all => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                let received = self.shared.received.load(Ordering::Relaxed);
                if received != last.0 {
                    last = (received, Instant::now());
                } else if last.1.elapsed() > STALL {
                    stop.cancel();
                    bail!(
                        "nothing arrived for {} s: {} sent, {received} received",
                        STALL.as_secs(),
                        self.sent()
                    );
                }
            }
            self.drain(Duration::from_secs(10)).await;
            (start_all, self.sample()?)
        } else {
            tokio::time::sleep(warmup).await;
            let start = self.sample()?;
            tokio::time::sleep(measure).await;
            let end = self.sample()?;
            stop.cancel();
            let all = futures_util::future::join_all(senders);
            // A sender waiting for a permit of a lost message never returns: do not wait
            // forever, the loss shows in the faults.
            let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
            self.drain(Duration::from_secs(10)).await;
            (start, end)
        };
        let messages = end.received - start.received;
        let wall = end.at.duration_since(start.at).as_secs_f64();
        Ok(ClosedLoop {
            messages,
            msgs_per_sec: messages as f64 / wall,
            cpu_us_per_msg: per_message_us(&start.relay, &end.relay, messages, self.ticks_per_sec),
            relay_util: start.relay.utilisation(&end.relay, self.ticks_per_sec),
            generator_util: start
                .generator
                .utilisation(&end.generator, self.ticks_per_sec),
            others_util: start.others_util(&end, self.ticks_per_sec),
        })
    }

    /// Sends `rate` messages per second in all, round-robin over the peers, each stamped with
    /// the time it was due: latency runs from there, so a stall of the relay (or of the
    /// generator) counts against every message it delays, not just the first one. Latencies
    /// of messages due in the `measure` interval after `warmup` are kept. With `count`, that
    /// many messages are sent and all are measured.
    pub async fn open_loop(
        &self,
        rate: f64,
        warmup: Duration,
        measure: Duration,
        count: Option<u64>,
    ) -> anyhow::Result<OpenLoop> {
        let shared = &self.shared;
        let interval_ns = 1e9 / rate;
        let start_ns = shared.now_ns() + 20_000_000;
        let (warmup, measure) = match count {
            Some(count) => (Duration::ZERO, Duration::from_secs_f64(count as f64 / rate)),
            None => (warmup, measure),
        };
        let record_from = start_ns + duration_ns(warmup);
        let record_until = record_from + duration_ns(measure);
        shared
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        shared.record_from.store(record_from, Ordering::Relaxed);
        shared.record_until.store(record_until, Ordering::Relaxed);

        let total = count.unwrap_or(((warmup + measure).as_secs_f64() * rate).ceil() as u64);
        let mut start = None;
        let mut lags = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for k in 0..total {
            let due = start_ns + (k as f64 * interval_ns) as u64;
            wait_until(shared, due).await;
            if start.is_none() && due >= record_from {
                start = Some(self.sample()?);
            }
            if (record_from..record_until).contains(&due) {
                lags.push(shared.now_ns().saturating_sub(due));
            }
            // usize -> u64 never truncates; the remainder is below the number of peers.
            let peer = &self.peers[(k % self.peers.len() as u64) as usize];
            peer.send_next(shared, due).await;
        }
        let end = self.sample()?;
        self.drain(Duration::from_secs(10)).await;
        shared.record_from.store(u64::MAX, Ordering::Relaxed);
        let start = start.unwrap_or(end);

        let mut latencies =
            std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(|p| p.into_inner()));
        latencies.sort_unstable();
        let messages = end.received - start.received;
        Ok(OpenLoop {
            rate,
            samples: latencies.len() as u64,
            p50_us: percentile_us(&latencies, 0.50),
            p99_us: percentile_us(&latencies, 0.99),
            p999_us: percentile_us(&latencies, 0.999),
            max_us: latencies.last().map_or(0.0, |&ns| ns as f64 / 1e3),
            cpu_us_per_msg: per_message_us(&start.relay, &end.relay, messages, self.ticks_per_sec),
            relay_util: start.relay.utilisation(&end.relay, self.ticks_per_sec),
            generator_util: start
                .generator
                .utilisation(&end.generator, self.ticks_per_sec),
            others_util: start.others_util(&end, self.ticks_per_sec),
            latencies_ns: latencies,
            send_lag_us: {
                lags.sort_unstable();
                [
                    percentile_us(&lags, 0.50),
                    percentile_us(&lags, 0.99),
                    percentile_us(&lags, 0.999),
                    lags.last().map_or(0.0, |&ns| ns as f64 / 1e3),
                ]
            },
        })
    }

    /// Closes every socket and says what went wrong over the pairs' life.
    pub async fn close(self) -> Faults {
        self.drain(Duration::from_secs(2)).await;
        let shared = &self.shared;
        shared.closing.store(true, Ordering::Relaxed);
        let sent = self.sent();
        let received = shared.received.load(Ordering::Relaxed);
        for reader in &self.readers {
            reader.abort();
        }
        for reader in self.readers {
            let _ = reader.await;
        }
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Faults {
            sent,
            received,
            lost: sent.saturating_sub(received),
            misrouted: load(&shared.misrouted),
            out_of_order: load(&shared.out_of_order),
            unexpected: load(&shared.unexpected),
            verify_failed: load(&shared.verify_failed),
            send_failed: load(&shared.send_failed),
            closed_early: load(&shared.closed_early),
            errors: shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn per_message_us(start: &CpuSample, end: &CpuSample, messages: u64, ticks: u64) -> f64 {
    if messages == 0 {
        return f64::NAN;
    }
    start.cpu_secs(end, ticks) * 1e6 / messages as f64
}

/// The `q`-quantile (nearest rank) of sorted nanoseconds, in microseconds.
pub fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1e3
}

/// Waits until `due`: sleeps while it is far, then yields to the readers until it is reached.
/// Tokio's timer has millisecond resolution, far coarser than the latencies measured here.
async fn wait_until(shared: &Shared, due: u64) {
    loop {
        let now = shared.now_ns();
        if now >= due {
            return;
        }
        let ahead = due - now;
        if ahead > 2_000_000 {
            tokio::time::sleep(Duration::from_nanos(ahead - 1_500_000)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// One peer's closed-loop sender: a message whenever the window has room.
async fn closed_sender(
    peer: Arc<Peer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    per_peer: Option<u64>,
) {
    let mut sent = 0u64;
    while per_peer.is_none_or(|limit| sent < limit) {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = peer.window.acquire() => match permit {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            },
        }
        if !peer.send_next(&shared, shared.now_ns()).await {
            break;
        }
        sent += 1;
    }
}

/// Reads everything relayed to `me`: checks where each signal comes from and its order, keeps
/// its latency, and returns a window permit to the sender.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Ws>,
    pair: u32,
    me: Arc<Peer>,
    partner: Arc<Peer>,
    partner_id: Ident,
    shared: Arc<Shared>,
) {
    let mut expected_seq = 0u64;
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(err) => {
                if !shared.closing.load(Ordering::Relaxed) {
                    shared.note(|| format!("pair {pair} {:?}: read failed: {err}", me.side));
                }
                break;
            }
        };
        let text = text.as_str();
        let Some(marker) = Marker::find(text) else {
            if let Some(reply) = dialect::keepalive_reply(shared.kind, text) {
                let _ = me.sink.lock().await.send(Message::text(reply)).await;
            } else if !shared.closing.load(Ordering::Relaxed) {
                shared.unexpected.fetch_add(1, Ordering::Relaxed);
                shared.note(|| format!("pair {pair} {:?}: unexpected frame {text:.300}", me.side));
            }
            continue;
        };
        let now = shared.now_ns();
        if marker.pair != pair || marker.side != partner.side {
            shared.misrouted.fetch_add(1, Ordering::Relaxed);
            shared.note(|| {
                format!(
                    "pair {pair} {:?} received pair {} {:?}'s message",
                    me.side, marker.pair, marker.side
                )
            });
            continue;
        }
        if marker.seq != expected_seq {
            shared.out_of_order.fetch_add(1, Ordering::Relaxed);
            shared.note(|| {
                format!(
                    "pair {pair} {:?}: message {} arrived when {expected_seq} was next",
                    me.side, marker.seq
                )
            });
        }
        expected_seq = marker.seq + 1;
        if shared.verify {
            if let Err(why) = dialect::verify(shared.kind, text, marker.kind, &partner_id) {
                shared.verify_failed.fetch_add(1, Ordering::Relaxed);
                shared.note(|| format!("pair {pair} {:?}: {why}", me.side));
            }
        }
        shared.received.fetch_add(1, Ordering::Relaxed);
        if marker.sent_ns >= shared.record_from.load(Ordering::Relaxed)
            && marker.sent_ns < shared.record_until.load(Ordering::Relaxed)
        {
            shared
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(now.saturating_sub(marker.sent_ns));
        }
        partner.window.add_permits(1);
    }
    if !shared.closing.load(Ordering::Relaxed) {
        shared.closed_early.fetch_add(1, Ordering::Relaxed);
        shared.note(|| format!("pair {pair} {:?}: the relay closed the socket", me.side));
    }
}

/// Resident memory of a relay holding idle sockets.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    /// The relay's RSS before the idle sockets (after a short warm-up), KiB.
    pub base_kib: u64,
    /// For each step: sockets open, the relay's RSS then (KiB), and RSS growth per socket (KiB).
    pub steps: Vec<(usize, u64, f64)>,
    /// Sockets still open when the last step was measured.
    pub alive: u64,
}

/// Opens idle sockets in steps up to each of `counts` (ascending), each one joined to a room of
/// two (our relay), logged in (seed-ws) or connected to the namespace (socket.io), and measures
/// the relay's RSS growth per socket at each step.
pub async fn idle(
    kind: RelayKind,
    addr: SocketAddr,
    relay_pid: u32,
    counts: &[usize],
) -> anyhow::Result<Idle> {
    // Warm-up: let the relay's lazily built state (JIT, allocator arenas, first-use tables)
    // exist before the baseline, so that it is not charged to the first sockets.
    let warm = open_idle(kind, addr, "warm", 0..16).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_kib = procfs::rss_kib(relay_pid).context("reading the relay's VmRSS")?;

    let alive = Arc::new(AtomicU64::new(0));
    let mut keepers = Vec::new();
    let mut steps = Vec::new();
    let mut opened = 0;
    for &count in counts {
        let sockets = open_idle(kind, addr, "idle", opened..count).await?;
        keepers.extend(
            sockets
                .into_iter()
                .map(|ws| tokio::spawn(keep_idle(kind, ws, alive.clone()))),
        );
        opened = count.max(opened);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = procfs::rss_kib(relay_pid).context("reading the relay's VmRSS")?;
        let per_socket = rss.saturating_sub(base_kib) as f64 / count.max(1) as f64;
        steps.push((count, rss, per_socket));
    }
    let alive_now = alive.load(Ordering::Relaxed);
    for keeper in keepers {
        keeper.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Idle {
        base_kib,
        steps,
        alive: alive_now,
    })
}

async fn open_idle(
    kind: RelayKind,
    addr: SocketAddr,
    label: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<Ws>> {
    let results: Vec<anyhow::Result<Ws>> = stream::iter(range)
        .map(|i| async move {
            let mut ws = dialect::open(addr, kind.path()).await?;
            let room = format!("{label}-{}", i / 2);
            dialect::ready(kind, &mut ws, &room, &format!("{label}-{i}")).await?;
            Ok(ws)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let total = results.len();
    let mut sockets = Vec::with_capacity(total);
    let mut first_error = None;
    for result in results {
        match result {
            Ok(ws) => sockets.push(ws),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err.context(format!(
            "{} of {total} idle sockets failed to open",
            total - sockets.len()
        )));
    }
    Ok(sockets)
}

/// Holds an idle socket open, answering keep-alives, until the relay closes it or it is aborted.
async fn keep_idle(kind: RelayKind, mut ws: Ws, alive: Arc<AtomicU64>) {
    alive.fetch_add(1, Ordering::Relaxed);
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Text(text) = &frame {
            if let Some(reply) = dialect::keepalive_reply(kind, text.as_str()) {
                let _ = ws.send(Message::text(reply)).await;
            }
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}

/// Waits until processes other than the generator and `relay_pid` use less than `threshold` of
/// a core (measured over one second at a time), or `max_wait` has passed. Returns the share of
/// a core they used in the last second measured. Other work on the machine (a build, a test
/// run) takes CPU from the relay and the generator and spoils every figure.
pub async fn wait_quiet(relay_pid: Option<u32>, threshold: f64, max_wait: Duration) -> f64 {
    let ticks_per_sec = procfs::clock_ticks_per_sec();
    let own = |pid: Option<u32>| pid.and_then(|pid| procfs::cpu_ticks(pid).ok()).unwrap_or(0);
    let me = Some(std::process::id());
    let deadline = Instant::now() + max_wait;
    loop {
        let start = (
            Instant::now(),
            procfs::machine_busy_ticks().unwrap_or(0),
            own(relay_pid) + own(me),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let machine = procfs::machine_busy_ticks()
            .unwrap_or(0)
            .saturating_sub(start.1);
        let ours = (own(relay_pid) + own(me)).saturating_sub(start.2);
        let share = machine.saturating_sub(ours) as f64
            / ticks_per_sec as f64
            / start.0.elapsed().as_secs_f64();
        if share < threshold || Instant::now() >= deadline {
            return share;
        }
    }
}

/// How fast the relay accepts WebSockets.
#[derive(Clone, Debug, Default)]
pub struct Accept {
    /// Sockets opened.
    pub opened: usize,
    /// Sockets that failed to open.
    pub failed: usize,
    /// Of those opened over TLS, how many resumed an earlier session.
    pub resumed: usize,
    /// Handshakes completed per second.
    pub conns_per_sec: f64,
    /// Relay CPU time per accepted socket, microseconds.
    pub cpu_us_per_conn: f64,
    /// Generator CPU time per opened socket, microseconds (the client's side of the handshakes).
    pub generator_us_per_conn: f64,
    /// The relay's share of its core during the burst.
    pub relay_util: f64,
    /// The generator's share of its core during the burst.
    pub generator_util: f64,
    /// The share of a core used by everything else on the machine meanwhile.
    pub others_util: f64,
    /// The first error of a socket that failed to open.
    pub first_error: Option<String>,
}

/// How the accept burst opens its sockets.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    /// Plain ws: TCP, then the HTTP upgrade.
    Ws,
    /// wss: TCP, the TLS handshake as the client does it, then the HTTP upgrade inside.
    Wss(&'a tls::Client),
}

/// Opens `count` WebSockets over `transport`, `concurrency` handshakes at a time, and times it;
/// then closes them.
pub async fn accept(
    kind: RelayKind,
    addr: SocketAddr,
    relay_pid: u32,
    count: usize,
    concurrency: usize,
    transport: Transport<'_>,
) -> anyhow::Result<Accept> {
    let ticks = procfs::clock_ticks_per_sec();
    let cpu_start = CpuSample::take(relay_pid)?;
    let gen_start = CpuSample::take(std::process::id())?;
    let machine_start = procfs::machine_busy_ticks().unwrap_or(0);
    let start = Instant::now();
    // Every socket stays open until the burst is over; only whether TLS resumed is read.
    type Opened = anyhow::Result<(Box<dyn std::any::Any>, bool)>;
    let results: Vec<Opened> = stream::iter(0..count)
        .map(|_| async move {
            match transport {
                Transport::Ws => {
                    let ws = dialect::open(addr, kind.path()).await?;
                    Ok((Box::new(ws) as Box<dyn std::any::Any>, false))
                }
                Transport::Wss(client) => {
                    let (ws, resumed) = dialect::open_tls(addr, kind.path(), client).await?;
                    Ok((Box::new(ws) as Box<dyn std::any::Any>, resumed))
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_end = CpuSample::take(relay_pid)?;
    let gen_end = CpuSample::take(std::process::id())?;
    let machine = procfs::machine_busy_ticks()
        .unwrap_or(0)
        .saturating_sub(machine_start);
    let others = machine
        .saturating_sub(cpu_end.ticks() - cpu_start.ticks())
        .saturating_sub(gen_end.ticks() - gen_start.ticks());
    let opened = results.iter().filter(|r| r.is_ok()).count();
    let resumed = results
        .iter()
        .filter(|r| matches!(r, Ok((_, true))))
        .count();
    let first_error = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .map(|err| format!("{err:#}"));
    drop(results);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_conn = |start: &CpuSample, end: &CpuSample| {
        start.cpu_secs(end, ticks) * 1e6 / opened.max(1) as f64
    };
    Ok(Accept {
        opened,
        failed: count - opened,
        resumed,
        conns_per_sec: opened as f64 / elapsed,
        cpu_us_per_conn: per_conn(&cpu_start, &cpu_end),
        generator_us_per_conn: per_conn(&gen_start, &gen_end),
        relay_util: cpu_start.utilisation(&cpu_end, ticks),
        generator_util: gen_start.utilisation(&gen_end, ticks),
        others_util: others as f64 / ticks as f64 / elapsed,
        first_error,
    })
}

/// Opens and closes `count` wss sockets with `client`, a few at a time, so that it holds tickets
/// before a burst that resumes sessions: without them the burst's first wave could not resume.
pub async fn prime_tickets(
    kind: RelayKind,
    addr: SocketAddr,
    client: &tls::Client,
    count: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<(Wss, bool)>> = stream::iter(0..count)
        .map(|_| dialect::open_tls(addr, kind.path(), client))
        .buffer_unordered(8)
        .collect()
        .await;
    for result in results {
        result.context("opening a wss socket for its session tickets")?;
    }
    // Let the relay close them before anything is measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile_us;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.5), 500.0);
        assert_eq!(percentile_us(&ns, 0.99), 990.0);
        assert_eq!(percentile_us(&ns, 0.999), 999.0);
        assert!(percentile_us(&[], 0.5).is_nan());
    }
}
