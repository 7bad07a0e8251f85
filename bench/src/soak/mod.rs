//! The soak run (`make soak`): hours of rooms churning through the relay, watched for leaks and
//! for any signal that goes astray.
//!
//! Two setups run in turn, each for half of the run: one relay, then two relays sharing rooms
//! through a Redis of the run's own. In each, a population of members (a few hundred sockets)
//! keeps itself topped up: members join rooms of 2 to 6, signal like calls do, and go after a
//! while, by a Close, by dropping the socket and resuming with their token, or by dropping it
//! for good; new members take their places ([`member`]). Every signal is entered in the books
//! ([`ledger`]) and must end delivered once, to the right member, or refused with an `error`.
//!
//! Each relay process is sampled every second (RSS, open descriptors, threads from `/proc`) and
//! a line per relay is printed every report interval, as rows of a Markdown table. The run
//! passes when nothing was lost, misrouted or duplicated, every view of a room matched the
//! truth, memory and descriptors stayed flat after the warm-up, and once everybody left the
//! relays are back to no connections, no rooms and their idle descriptors.

pub mod ledger;
pub mod member;

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{ensure, Context};
use tokio::{sync::watch, task::JoinSet, time::Instant};

use crate::{
    dialect::RelayKind,
    procfs,
    relay::{RelayProcess, RelaySetup},
};
use ledger::Ledger;
use member::{Phase, Shared};

/// How a soak run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// The whole run, both setups together, in seconds.
    pub secs: u64,
    /// How often a line per relay is printed.
    pub report_every: Duration,
    /// Members at once (each holds a socket, except between a drop and its resume).
    pub concurrency: usize,
    /// How long one socket of a member lives, at least and at most.
    pub lifetime: (Duration, Duration),
    /// The relay's `--hold-secs`.
    pub hold_secs: u64,
    /// The relay's `--resume-grace-secs`.
    pub grace_secs: u64,
    /// The `server` binary.
    pub server_bin: PathBuf,
    /// Where the relays' logs and data go.
    pub work_dir: PathBuf,
    /// Seeds every member's choices, so a run can be repeated.
    pub seed: u64,
    /// Only the one-relay setup, for the whole run.
    pub one_relay_only: bool,
}

/// A small fast generator (SplitMix64): the soak needs dice, not cryptography.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A duration between `low` and `high`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.below(span + 1))
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn between_ms(&mut self, low: u64, high: u64) -> Duration {
        self.between(Duration::from_millis(low), Duration::from_millis(high))
    }
}

/// A `redis-server` of the run's own on a free loopback port, saving nothing, killed by its
/// pid when dropped (also when the run fails or panics).
pub(crate) struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (scripts/setup.sh --test installs it)")?;
        let redis = Redis { port, child };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !redis.pings() {
            ensure!(
                std::time::Instant::now() < deadline,
                "redis-server does not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn pings(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One relay process as the run watches it.
#[derive(Clone, Debug)]
struct Watched {
    name: String,
    pid: u32,
    addr: SocketAddr,
}

/// One sample of a relay process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    /// Open descriptors beyond one per connection the relay reports: what a leak would grow,
    /// while the connections themselves come and go with the population.
    spare_fds: u64,
}

fn fds(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64)
}

fn threads(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |dir| dir.count() as u64)
}

/// The relay's unlabelled `/metrics` values, read over plain http on loopback.
fn metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let mut values = HashMap::new();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return values;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    if stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
        || stream.read_to_string(&mut text).is_err()
    {
        return values;
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.split_once(' ') {
            if let Ok(value) = value.trim().parse() {
                values.insert(name.to_owned(), value);
            }
        }
    }
    values
}

/// Whether `/healthz` answers 200 (with a backplane: the relay reaches Redis).
pub(crate) fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut text).is_ok()
        && text
            .lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
}

/// The `q`-quantile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1e3
}

/// The header of the table the run prints.
pub const TABLE_HEADER: &str = "| setup | t (s) | relay | RSS (MiB) | fds | threads | conns | peers | rooms | sockets | sent | delivered | refused | p50 (ms) | p99 (ms) | overdue | misrouted | duplicated |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// What a soak run found: the table, the verdicts, and whether it passed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The lines printed (Markdown).
    pub report: String,
    /// Every reason the run failed; empty when it passed.
    pub failures: Vec<String>,
}

impl Outcome {
    pub(crate) fn line(&mut self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        self.report.push_str(line.as_ref());
        self.report.push('\n');
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.line(format!("- **FAIL** {why}"));
        self.failures.push(why);
    }
}

/// Runs both setups for half of `config.secs` each (or the one-relay setup for all of it).
pub fn run(config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let setups = if config.one_relay_only { 1 } else { 2 };
    let phase_secs = (config.secs / setups).max(10);
    outcome.line(format!(
        "Soak: {} s per setup, {} members at once in rooms of 2 to 6, sockets living {}–{} s; \
         exits: 45 % Close, 35 % drop and resume, 20 % drop for good; relay --hold-secs {} \
         --resume-grace-secs {}; relay binary {}.",
        phase_secs,
        config.concurrency,
        config.lifetime.0.as_secs(),
        config.lifetime.1.as_secs(),
        config.hold_secs,
        config.grace_secs,
        config.server_bin.display()
    ));
    let setup = RelaySetup {
        server_bin: config.server_bin.clone(),
        forwarder_bin: PathBuf::new(),
        anchors: PathBuf::new(),
        work_dir: config.work_dir.clone(),
        cpu: None,
    };
    fs::create_dir_all(&config.work_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let flags = relay_flags(config.hold_secs, config.grace_secs);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    outcome.line("");
    outcome.line("### One relay");
    outcome.line("");
    outcome.line(TABLE_HEADER);
    {
        let relay = RelayProcess::start_with(RelayKind::Ours, &setup, "soak-one", false, &flags)?;
        let watched = vec![Watched {
            name: "one".into(),
            pid: relay.pid,
            addr: relay.addr,
        }];
        runtime.block_on(soak(config, "one", &watched, phase_secs, &mut outcome))?;
        relay.stop()?;
    }
    if config.one_relay_only {
        return Ok(outcome);
    }

    outcome.line("");
    outcome.line("### Two relays on one Redis");
    outcome.line("");
    outcome.line(TABLE_HEADER);
    {
        let redis = Redis::start()?;
        let url = redis.url();
        let mut with_redis = flags.to_vec();
        with_redis.extend(["--redis-url", &url]);
        let a = RelayProcess::start_with(RelayKind::Ours, &setup, "soak-a", false, &with_redis)?;
        let b = RelayProcess::start_with(RelayKind::Ours, &setup, "soak-b", false, &with_redis)?;
        let watched: Vec<Watched> = [("a", &a), ("b", &b)]
            .into_iter()
            .map(|(name, relay)| Watched {
                name: name.into(),
                pid: relay.pid,
                addr: relay.addr,
            })
            .collect();
        let addrs: Vec<SocketAddr> = watched.iter().map(|w| w.addr).collect();
        wait_healthy(&addrs, Duration::from_secs(20)).context("the relays did not reach Redis")?;
        runtime.block_on(soak(config, "two", &watched, phase_secs, &mut outcome))?;
        a.stop()?;
        b.stop()?;
        drop(redis);
    }
    Ok(outcome)
}

/// One setup: the churn for `secs` against `relays`, the settling, and the checks.
async fn soak(
    config: &Config,
    setup: &str,
    relays: &[Watched],
    secs: u64,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    // What an idle relay holds open (listeners, epoll, timers, its Redis connections): every
    // descriptor above it after the run is a leak.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_fds: Vec<u64> = relays.iter().map(|r| fds(r.pid)).collect();

    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let hold = Duration::from_secs(config.hold_secs);
    let grace = Duration::from_secs(config.grace_secs);
    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::new(relays.len())),
        relays: relays.iter().map(|r| r.addr).collect(),
        phase: phase_rx,
        hold,
        grace,
        settle: hold + Duration::from_secs(3),
        lifetime: config.lifetime,
        view_margin: Duration::from_secs(5),
        resilient: false,
    });
    let mut rng = Rng::new(config.seed ^ setup.len() as u64);
    let mut members = JoinSet::new();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); relays.len()];
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_sample = start + Duration::from_secs(1);
    let mut next_report = start + config.report_every;
    let overdue_age = hold + Duration::from_secs(5);

    while Instant::now() < end {
        top_up(
            &shared,
            config.concurrency,
            &mut rng,
            &mut members,
            setup,
            outcome,
        );
        let now = Instant::now();
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            for (relay, samples) in relays.iter().zip(&mut samples) {
                let conns = metrics(relay.addr)
                    .get("relay_connections")
                    .map_or(0, |c| *c as u64);
                samples.push(Sample {
                    at: now - start,
                    rss_kib: procfs::rss_kib(relay.pid).unwrap_or(0),
                    spare_fds: fds(relay.pid).saturating_sub(conns),
                });
            }
        }
        if now >= next_report {
            next_report += config.report_every;
            report(setup, &shared, relays, start, overdue_age, outcome);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    settle_and_leave(&phase_tx, hold, &mut members, setup, outcome).await;
    report(setup, &shared, relays, start, overdue_age, outcome);

    // Reservations of members that dropped for good run out after the grace period; then an
    // empty relay must hold nothing of the run.
    tokio::time::sleep(grace + Duration::from_secs(2)).await;
    let mut checks = String::new();
    for (relay, idle) in relays.iter().zip(&idle_fds) {
        let after = fds(relay.pid);
        let gauges = metrics(relay.addr);
        let gauge = |name: &str| gauges.get(name).copied().unwrap_or(f64::NAN);
        let _ = write!(
            checks,
            "relay {}: fds idle {idle}, after {after}; connections {}, peers {}, rooms {}; ",
            relay.name,
            gauge("relay_connections"),
            gauge("relay_peers"),
            gauge("relay_rooms")
        );
        if after > idle + 2 {
            outcome.fail(format!(
                "{setup}: relay {} holds {after} descriptors after everybody left, {idle} idle",
                relay.name
            ));
        }
        for name in ["relay_connections", "relay_peers", "relay_rooms"] {
            if gauge(name) != 0.0 {
                outcome.fail(format!(
                    "{setup}: relay {} reports {name} {} after everybody left",
                    relay.name,
                    gauge(name)
                ));
            }
        }
    }

    judge(setup, &shared, outcome);
    outcome.line(format!("{setup}: after everybody left: {checks}"));
    let flat = flatness(secs, relays, &samples);
    for line in flat.0 {
        outcome.line(format!("{setup}: {line}"));
    }
    for why in flat.1 {
        outcome.fail(format!("{setup}: {why}"));
    }
    Ok(())
}

/// Admits members until `target` places are taken, a few at a time so that the start is a
/// ramp, not a stampede, and notes member tasks that ended by failing.
pub(crate) fn top_up(
    shared: &Arc<Shared>,
    target: usize,
    rng: &mut Rng,
    members: &mut JoinSet<()>,
    setup: &str,
    outcome: &mut Outcome,
) {
    for _ in 0..10 {
        let admitted = {
            let mut ledger = shared.ledger();
            (ledger.places_taken() < target).then(|| ledger.admit(&mut |n| rng.below(n)))
        };
        let Some((member, room)) = admitted else {
            break;
        };
        members.spawn(member::live(shared.clone(), member, room, rng.next_u64()));
    }
    while let Some(done) = members.try_join_next() {
        if let Err(err) = done {
            outcome.fail(format!("{setup}: a member task failed: {err}"));
        }
    }
}

/// Quiet: nobody sends or goes; every signal in flight lands or is refused (a held one expires
/// after the hold time), and members between a drop and their resume come back. Then
/// everybody leaves, within a minute.
pub(crate) async fn settle_and_leave(
    phase: &watch::Sender<Phase>,
    hold: Duration,
    members: &mut JoinSet<()>,
    setup: &str,
    outcome: &mut Outcome,
) {
    let _ = phase.send(Phase::Quiet);
    tokio::time::sleep(hold + Duration::from_secs(5)).await;
    let _ = phase.send(Phase::Leave);
    let all_left = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = members.join_next().await {
            if let Err(err) = done {
                outcome.fail(format!("{setup}: a member task failed: {err}"));
            }
        }
    })
    .await;
    if all_left.is_err() {
        outcome.fail(format!("{setup}: members still running 60 s after the end"));
        members.abort_all();
    }
}

/// The relay's flags in the soak and the chaos run: rooms of up to 6 (the mesh's limit), the
/// run's hold time and resume grace.
pub(crate) fn relay_flags(hold_secs: u64, grace_secs: u64) -> Vec<String> {
    [
        "--room-capacity".into(),
        "6".into(),
        "--hold-secs".into(),
        hold_secs.to_string(),
        "--resume-grace-secs".into(),
        grace_secs.to_string(),
    ]
    .into()
}

/// Waits until every relay answers `/healthz` with 200.
pub(crate) fn wait_healthy(relays: &[SocketAddr], patience: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + patience;
    while !relays.iter().all(|addr| healthy(*addr)) {
        ensure!(
            std::time::Instant::now() < deadline,
            "not healthy within {} s",
            patience.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The fates of the setup's signals, once settled: a line of figures, and a failure for
/// anything lost, misrouted, duplicated or refused after delivery, any wrong view of a room,
/// and any failure a member noted.
pub(crate) fn judge(setup: &str, shared: &Shared, outcome: &mut Outcome) -> ledger::Settled {
    let ledger = shared.ledger();
    let settled = ledger.settle();
    let anomalies = &ledger.anomalies;
    let counts = ledger.counts();
    outcome.line("");
    outcome.line(format!(
        "{setup}: {} sockets ({} joins, {} resumes); signals: {} sent, {} delivered, {} refused \
         ({:?}), {} died with a dropped or broken socket (allowed), **{} lost, {} misrouted, \
         {} duplicated**, {} refused after delivery; {} room views wrong; join refusals {:?}.",
        counts.0 + counts.1,
        counts.0,
        counts.1,
        settled.sent,
        settled.delivered,
        settled.refused,
        ledger.errors(),
        settled.died_with_socket,
        settled.lost,
        anomalies.misrouted,
        anomalies.duplicated,
        settled.over_refused,
        anomalies.view_mismatches,
        anomalies.join_refusals
    ));
    for example in &settled.lost_examples {
        outcome.line(format!(
            "{setup}: undelivered on a socket that lost signals: {example}"
        ));
    }
    for (what, count) in [
        ("lost", settled.lost),
        ("misrouted", anomalies.misrouted),
        ("duplicated", anomalies.duplicated),
        ("refused after delivery", settled.over_refused),
        ("wrong room views", anomalies.view_mismatches),
    ] {
        if count > 0 {
            outcome.fail(format!("{setup}: {count} signals or views {what}"));
        }
    }
    if settled.sent == 0 || settled.delivered == 0 {
        outcome.fail(format!("{setup}: no signal went through"));
    }
    let failures: Vec<String> = anomalies.failures.iter().take(20).cloned().collect();
    let more = anomalies.failures.len().saturating_sub(failures.len());
    drop(ledger);
    for failure in failures {
        outcome.fail(format!("{setup}: {failure}"));
    }
    if more > 0 {
        outcome.fail(format!("{setup}: and {more} more failures"));
    }
    settled
}

/// One line per relay: its process, its gauges, and the signals sent through it.
fn report(
    setup: &str,
    shared: &Shared,
    relays: &[Watched],
    start: Instant,
    overdue_age: Duration,
    outcome: &mut Outcome,
) {
    let mut ledger = shared.ledger();
    let overdue = ledger.overdue(overdue_age);
    let (misrouted, duplicated) = (ledger.anomalies.misrouted, ledger.anomalies.duplicated);
    let figures: Vec<_> = (0..relays.len()).map(|r| ledger.take_figures(r)).collect();
    drop(ledger);
    let elapsed = start.elapsed().as_secs();
    for ((relay, mut figures), overdue) in relays.iter().zip(figures).zip(overdue) {
        let gauges = metrics(relay.addr);
        let gauge = |name: &str| gauges.get(name).map_or("?".to_owned(), |v| format!("{v}"));
        figures.latencies_us.sort_unstable();
        outcome.line(format!(
            "| {setup} | {elapsed} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {overdue} | {misrouted} | {duplicated} |",
            relay.name,
            procfs::rss_kib(relay.pid).unwrap_or(0) as f64 / 1024.0,
            fds(relay.pid),
            threads(relay.pid),
            gauge("relay_connections"),
            gauge("relay_peers"),
            gauge("relay_rooms"),
            figures.sockets,
            figures.sent,
            figures.delivered,
            figures.refused,
            percentile_ms(&figures.latencies_us, 0.50),
            percentile_ms(&figures.latencies_us, 0.99),
        ));
    }
}

/// Whether RSS and descriptors stayed flat: after the warm-up, the mean of the last third
/// against the mean of the first. Within 2 % for setups of five minutes or more; shorter ones
/// are too short for allocator arenas and the population's swings to average out, and get
/// 10 %. The warm-up is the first third of the setup (the first minute of a shorter one): in
/// the first 30-min run the relays' heap grew for 4 to 7 minutes to a plateau, which a
/// one-minute warm-up judged a leak. Descriptors are judged beyond one per open connection,
/// which come and go with the population (±3 % in that run; back to idle after it).
/// Returns lines to print and failures.
fn flatness(secs: u64, relays: &[Watched], samples: &[Vec<Sample>]) -> (Vec<String>, Vec<String>) {
    let warmup = Duration::from_secs(if secs >= 300 {
        secs / 3
    } else {
        60.min(secs / 3)
    });
    let tolerance = if secs >= 300 { 0.02 } else { 0.10 };
    let (mut lines, mut failures) = (Vec::new(), Vec::new());
    for (relay, samples) in relays.iter().zip(samples) {
        let kept: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
        if kept.len() < 6 {
            failures.push(format!("relay {}: too few samples to judge", relay.name));
            continue;
        }
        let third = kept.len() / 3;
        let mean = |part: &[&Sample], f: fn(&Sample) -> u64| {
            part.iter().map(|s| f(s) as f64).sum::<f64>() / part.len() as f64
        };
        let (first, last) = (&kept[..third], &kept[kept.len() - third..]);
        for (what, f, unit) in [
            (
                "RSS",
                (|s: &Sample| s.rss_kib) as fn(&Sample) -> u64,
                1024.0,
            ),
            ("fds beyond connections", |s: &Sample| s.spare_fds, 1.0),
        ] {
            let (a, b) = (mean(first, f), mean(last, f));
            let change = if a > 0.0 { (b - a) / a } else { 0.0 };
            lines.push(format!(
                "relay {} {what}: first third {:.1}, last third {:.1} ({:+.2} %, limit ±{:.0} %{})",
                relay.name,
                a / unit,
                b / unit,
                change * 100.0,
                tolerance * 100.0,
                if unit == 1.0 { " or 2" } else { "" }
            ));
            // Two descriptors either way are the sampling's own jitter (a connection counted
            // before or after its socket): on a base of 14, 2 % would be a third of one.
            let slack = if unit == 1.0 { 2.0 } else { 0.0 };
            if (b - a).abs() > (tolerance * a).max(slack) {
                failures.push(format!(
                    "relay {} {what} not flat: {:.1} → {:.1} ({:+.2} %)",
                    relay.name,
                    a / unit,
                    b / unit,
                    change * 100.0
                ));
            }
        }
    }
    (lines, failures)
}
