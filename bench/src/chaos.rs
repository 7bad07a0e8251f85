//! The chaos run (`make chaos`; `make test` runs it too): two relays behind nginx share rooms
//! through one Redis while members churn and signal as in the soak ([`crate::soak`]), and one
//! fault strikes in each case:
//!
//! - `kill-relay`: one relay is killed (SIGKILL) and started again 10 s later; its members
//!   come back through nginx, on the other relay, with their resume tokens;
//! - `restart-redis`: Redis is killed and started again, empty;
//! - `pause-redis`: Redis is stopped (SIGSTOP) for 10 s, then continued;
//! - `cut-redis`: Redis's network namespace drops every packet for 10 s.
//!
//! Members act as pages do: a socket the relay broke is opened again (through nginx) and
//! resumed; a join refused with `backplane-unavailable` is tried again. Every signal must end
//! delivered once, to the right member, or refused to its sender; a signal is excused only when
//! a socket it depended on broke with the relay (sent in the moment before its own socket
//! broke, or to a socket that broke). Each case prints how long the relays took to be healthy
//! again, how long until a signal sent after the fault arrived, and (for a killed relay) how
//! long until every member it held was back in its place.
//!
//! Redis runs in a network namespace of its own, joined to the relays' namespace by a veth
//! pair, so that a case can cut it off; `bin/chaos.rs` makes both namespaces and runs this
//! inside the relays' one. Nothing leaves the two namespaces.

use std::{
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, ensure, Context};
use std::time::Instant;

use tokio::{sync::watch, task::JoinSet};

use crate::{
    relay::{RelayProcess, RelaySetup},
    soak::{
        healthy, judge,
        ledger::{Ledger, Settled},
        member::{Phase, Shared},
        relay_flags, settle_and_leave, top_up, wait_healthy, Outcome, Rng,
    },
};

/// Redis's address in its namespace.
pub const REDIS_ADDR: &str = "10.213.0.2";
/// The relays' end of the veth pair.
pub const RELAYS_ADDR: &str = "10.213.0.1";
const REDIS_PORT: u16 = 6379;

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL one relay; start it again after the fault's time.
    KillRelay,
    /// SIGKILL Redis and start it again at once, empty.
    RestartRedis,
    /// SIGSTOP Redis for the fault's time.
    PauseRedis,
    /// Drop every packet to and from Redis for the fault's time.
    CutRedis,
}

impl Fault {
    /// Every fault, in the order the run takes them.
    pub const ALL: [Fault; 4] = [
        Fault::KillRelay,
        Fault::RestartRedis,
        Fault::PauseRedis,
        Fault::CutRedis,
    ];

    /// The case's name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillRelay => "kill-relay",
            Fault::RestartRedis => "restart-redis",
            Fault::PauseRedis => "pause-redis",
            Fault::CutRedis => "cut-redis",
        }
    }

    /// The fault named `name`.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How a chaos run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cases, in order.
    pub faults: Vec<Fault>,
    /// Members at once.
    pub members: usize,
    /// How long the load runs before the fault.
    pub warm: Duration,
    /// How long a pause or a cut lasts, and how long a killed relay stays down.
    pub fault: Duration,
    /// How long the load runs after the fault ended, before it settles.
    pub after: Duration,
    /// The relay's `--hold-secs`.
    pub hold_secs: u64,
    /// The relay's `--resume-grace-secs`.
    pub grace_secs: u64,
    /// The `server` binary.
    pub server_bin: PathBuf,
    /// Where the relays', nginx's and Redis's files go.
    pub work_dir: PathBuf,
    /// The network namespace Redis runs in.
    pub redis_ns: String,
    /// Seeds every member's choices.
    pub seed: u64,
}

/// What one case measured.
#[derive(Clone, Debug, Default)]
pub struct CaseFigures {
    /// From the end of the fault (the kill, for a killed relay or a restarted Redis) until
    /// both relays answered `/healthz` with 200.
    pub healthy_after: Option<Duration>,
    /// From the end of the fault until the first signal sent after it was delivered.
    pub flowing_after: Option<Duration>,
    /// Sockets the fault broke, and from the fault until the last of their members was back.
    pub broken: usize,
    /// From the kill until every member whose socket broke had its place back.
    pub back_after: Option<Duration>,
    /// Resumes refused: places lost.
    pub places_lost: u64,
    /// Signals delivered to the wrong member.
    pub misrouted: u64,
    /// Signals delivered more than once.
    pub duplicated: u64,
}

/// A `redis-server` in the Redis namespace, saving nothing, killed by its pid when dropped.
struct Redis {
    ns: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Redis {
    fn start(ns: &str, work_dir: &std::path::Path) -> anyhow::Result<Redis> {
        let log = work_dir.join("redis.log");
        let out = fs::File::create(&log)?;
        // `ip netns exec` execs redis-server: the child's pid is Redis's own.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "redis-server"])
            .args(["--bind", REDIS_ADDR, "--port", &REDIS_PORT.to_string()])
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting redis-server in its namespace")?;
        let redis = Redis {
            ns: ns.to_owned(),
            child: Some(child),
            log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let addr = SocketAddr::from((REDIS_ADDR.parse::<Ipv4Addr>()?, REDIS_PORT));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            ensure!(
                std::time::Instant::now() < deadline,
                "redis-server does not answer at {addr}; see {}",
                redis.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill {signal} {} failed", self.pid());
        Ok(())
    }

    /// Drops (`cut`) or lets through again every packet of Redis's namespace.
    fn cut(&self, cut: bool) -> anyhow::Result<()> {
        for chain in ["INPUT", "OUTPUT"] {
            let status = Command::new("ip")
                .args(["netns", "exec", &self.ns, "iptables"])
                .arg(if cut { "-I" } else { "-D" })
                .args([chain, "-j", "DROP"])
                .status()
                .context("running iptables in Redis's namespace")?;
            ensure!(status.success(), "iptables {chain} failed");
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped process takes SIGKILL too.
        self.kill();
    }
}

/// nginx in front of the two relays, as a deployment would have it: WebSockets passed through,
/// a relay that refuses connections skipped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(work_dir: &std::path::Path, relays: [u16; 2]) -> anyhow::Result<Nginx> {
        let port = free_port()?;
        let dir = work_dir.join("nginx");
        fs::create_dir_all(&dir)?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n  \
             upstream relays {{\n    server 127.0.0.1:{} max_fails=1 fail_timeout=2s;\n    \
             server 127.0.0.1:{} max_fails=1 fail_timeout=2s;\n  }}\n  \
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
             proxy_pass http://relays;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Upgrade $http_upgrade;\n      \
             proxy_set_header Connection $connection_upgrade;\n      \
             proxy_set_header Host $host;\n      proxy_connect_timeout 1s;\n      \
             proxy_read_timeout 1h;\n    }}\n  }}\n}}\n",
            relays[0], relays[1]
        );
        let path = dir.join("nginx.conf");
        fs::write(&path, conf)?;
        let log = fs::File::create(dir.join("stderr.log"))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nginx (scripts/setup.sh --test installs it)")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut nginx = Nginx { child, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                bail!("nginx exited ({status}); see {d}/error.log");
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "nginx does not listen on {addr}; see {d}/error.log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master takes its worker with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The table the run prints at the end, one row per case.
pub const SUMMARY_HEADER: &str = "| case | fault | relays healthy after (s) | signals flowing after (s) | sockets broken | all back after (s) | places lost | sent | delivered | refused | died with a socket | lost | misrouted | duplicated | refused after delivery |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// Runs every case in turn, each on a fresh Redis, relays and nginx.
pub fn run(config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    outcome.line(format!(
        "Chaos: two relays behind nginx on one Redis (in a network namespace of its own), {} \
         members in rooms of 2 to 6 churning as in the soak; load for {} s, then the fault \
         ({} s for a pause, a cut or a relay down), then {} s more; relay --hold-secs {} \
         --resume-grace-secs {}.",
        config.members,
        config.warm.as_secs(),
        config.fault.as_secs(),
        config.after.as_secs(),
        config.hold_secs,
        config.grace_secs
    ));
    fs::create_dir_all(&config.work_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for fault in &config.faults {
        outcome.line("");
        outcome.line(format!("### {}", fault.name()));
        let (figures, settled) = case(config, *fault, &runtime, &mut outcome)?;
        let what = match fault {
            Fault::KillRelay => format!("relay a SIGKILL, back after {} s", config.fault.as_secs()),
            Fault::RestartRedis => "Redis SIGKILL, started again empty".to_owned(),
            Fault::PauseRedis => format!("Redis SIGSTOP {} s", config.fault.as_secs()),
            Fault::CutRedis => format!("Redis's packets dropped {} s", config.fault.as_secs()),
        };
        rows.push(format!(
            "| {} | {what} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fault.name(),
            seconds(figures.healthy_after),
            seconds(figures.flowing_after),
            figures.broken,
            if figures.broken == 0 {
                "-".to_owned()
            } else {
                seconds(figures.back_after)
            },
            figures.places_lost,
            settled.sent,
            settled.delivered,
            settled.refused,
            settled.died_with_socket,
            settled.lost,
            figures.misrouted,
            figures.duplicated,
            settled.over_refused,
        ));
    }
    outcome.line("");
    outcome.line(SUMMARY_HEADER);
    for row in rows {
        outcome.line(row);
    }
    Ok(outcome)
}

/// One case: fresh Redis, two relays and nginx; load; the fault; recovery; settling; verdict.
fn case(
    config: &Config,
    fault: Fault,
    runtime: &tokio::runtime::Runtime,
    outcome: &mut Outcome,
) -> anyhow::Result<(CaseFigures, Settled)> {
    let name = fault.name();
    let work = config.work_dir.join(name);
    fs::create_dir_all(&work)?;
    let mut redis = Redis::start(&config.redis_ns, &work)?;
    let url = format!("redis://{REDIS_ADDR}:{REDIS_PORT}/0");
    let mut flags = relay_flags(config.hold_secs, config.grace_secs);
    flags.extend(["--redis-url".into(), url]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let setup = RelaySetup {
        server_bin: config.server_bin.clone(),
        forwarder_bin: PathBuf::new(),
        anchors: PathBuf::new(),
        work_dir: work.clone(),
        cpu: None,
    };
    let ports = [free_port()?, free_port()?];
    let mut a = Some(RelayProcess::start_at(&setup, "chaos-a", ports[0], &flags)?);
    let b = RelayProcess::start_at(&setup, "chaos-b", ports[1], &flags)?;
    let addrs = ports.map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    wait_healthy(&addrs, Duration::from_secs(20)).context("the relays did not reach Redis")?;
    let nginx = Nginx::start(&work, ports)?;

    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::new(1)),
        relays: vec![nginx.addr],
        phase: phase_rx,
        hold: Duration::from_secs(config.hold_secs),
        grace: Duration::from_secs(config.grace_secs),
        settle: Duration::from_secs(config.hold_secs + 3) + config.fault,
        lifetime: (Duration::from_secs(5), Duration::from_secs(40)),
        // While Redis is away nobody can be told who left: a view may lag by the fault's time.
        view_margin: config.fault + Duration::from_secs(5),
        resilient: true,
    });
    let mut rng = Rng::new(config.seed ^ (name.len() as u64) << 8);
    let mut members = JoinSet::new();
    let mut figures = CaseFigures::default();

    let result: anyhow::Result<()> = runtime.block_on(async {
        let start = Instant::now();
        let fault_at = start + config.warm;
        let fault_end = fault_at + config.fault;
        let stop_at = fault_end + config.after;
        let (mut struck, mut ended) = (false, false);
        let mut recovered_from: Option<Instant> = None;
        while Instant::now() < stop_at {
            top_up(
                &shared,
                config.members,
                &mut rng,
                &mut members,
                name,
                outcome,
            );
            let now = Instant::now();
            if !struck && now >= fault_at {
                struck = true;
                outcome.line(format!(
                    "{name}: the fault strikes {:.1} s into the load",
                    now.duration_since(start).as_secs_f64()
                ));
                match fault {
                    Fault::KillRelay => {
                        if let Some(relay) = a.take() {
                            relay.kill()?;
                        }
                        recovered_from = Some(now);
                    }
                    Fault::RestartRedis => {
                        redis.kill();
                        redis = Redis::start(&config.redis_ns, &work)?;
                        recovered_from = Some(Instant::now());
                        ended = true;
                    }
                    Fault::PauseRedis => redis.signal("-STOP")?,
                    Fault::CutRedis => redis.cut(true)?,
                }
            }
            if struck && !ended && now >= fault_end {
                ended = true;
                match fault {
                    Fault::KillRelay => {
                        a = Some(RelayProcess::start_at(
                            &setup, "chaos-a2", ports[0], &flags,
                        )?);
                    }
                    Fault::RestartRedis => {}
                    Fault::PauseRedis => redis.signal("-CONT")?,
                    Fault::CutRedis => redis.cut(false)?,
                }
                if fault != Fault::KillRelay {
                    recovered_from = Some(Instant::now());
                }
            }
            if let (Some(from), None) = (recovered_from, figures.healthy_after) {
                let live: Vec<SocketAddr> = if a.is_some() {
                    addrs.to_vec()
                } else {
                    vec![addrs[1]]
                };
                if live.iter().all(|addr| healthy(*addr)) {
                    figures.healthy_after = Some(from.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let from = recovered_from.context("the fault never struck")?;
        let fault_struck = if fault == Fault::KillRelay {
            from
        } else {
            fault_at
        };
        {
            let ledger = shared.ledger();
            figures.flowing_after = ledger
                .first_delivery_sent_since(from)
                .map(|at| at.duration_since(from));
            let broken = ledger.broken_since(fault_struck);
            figures.broken = broken.len();
            let mut last = Some(fault_struck);
            for member in broken {
                last = last
                    .zip(ledger.welcome_since(member, fault_struck))
                    .map(|(a, b)| a.max(b));
            }
            figures.back_after = last.map(|at| at.duration_since(fault_struck));
            figures.places_lost = ledger.anomalies.places_lost;
        }

        // Quiet, then everybody leaves, as in the soak.
        settle_and_leave(&phase_tx, shared.hold, &mut members, name, outcome).await;
        Ok(())
    });
    result?;

    let settled = judge(name, &shared, outcome);
    {
        let anomalies = &shared.ledger().anomalies;
        (figures.misrouted, figures.duplicated) = (anomalies.misrouted, anomalies.duplicated);
    }
    let mut line = String::new();
    let secs = |d: Option<Duration>| match d {
        Some(_) => format!("{} s", seconds(d)),
        None => seconds(d),
    };
    let _ = write!(
        line,
        "{name}: relays healthy again after {}; the first signal sent after the fault arrived \
         after {}",
        secs(figures.healthy_after),
        secs(figures.flowing_after)
    );
    if figures.broken > 0 {
        let _ = write!(
            line,
            "; {} sockets broke, all their members back in their places after {}",
            figures.broken,
            secs(figures.back_after)
        );
    }
    let _ = write!(line, "; {} places lost.", figures.places_lost);
    outcome.line(line);
    if figures.healthy_after.is_none() {
        outcome.fail(format!("{name}: the relays were not healthy again"));
    }
    if figures.flowing_after.is_none() {
        outcome.fail(format!("{name}: no signal went through after the fault"));
    }
    if figures.broken > 0 && figures.back_after.is_none() {
        outcome.fail(format!(
            "{name}: members whose socket broke did not all come back"
        ));
    }
    if figures.places_lost > 0 {
        outcome.fail(format!(
            "{name}: {} members could not resume their places",
            figures.places_lost
        ));
    }
    drop(nginx);
    if let Some(a) = a {
        a.stop()?;
    }
    b.stop()?;
    drop(redis);
    Ok((figures, settled))
}

/// A time to print in seconds, or "never".
fn seconds(d: Option<Duration>) -> String {
    d.map_or("never".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}
