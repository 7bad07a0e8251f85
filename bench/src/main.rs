//! The benchmark driver and load generator: starts each relay, runs every phase against it,
//! stops it, and prints the side-by-side table. `bench/run.sh` builds the binaries and runs
//! this one pinned to the generator's core; `bench --smoke` is the quick correctness check.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::Context;
use bench::{
    dialect::{self, Ident, RelayKind},
    load::{self, Accept, Pairs, Transport},
    procfs,
    relay::{RelayProcess, RelaySetup},
    report::{self, Phases, RelayReport},
    tls,
    workload::{Script, Side},
};
use clap::Parser;

/// Benchmarks the signaling relay side by side with the seed relays and a bare forwarder.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// A tiny workload on our relay and the forwarder only, every frame checked; exits non-zero
    /// if any message is lost, misrouted or out of order.
    #[arg(long)]
    smoke: bool,
    /// The relays to measure, in the table's order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,seed-ws,seed-socketio,forwarder"
    )]
    relays: Vec<String>,
    /// Peer pairs for the message phases (a broadcasting relay gets one pair; see the docs).
    #[arg(long, default_value_t = 50)]
    pairs: u32,
    /// Closed loop: messages in flight per direction of each pair.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Open loop: messages per second, all pairs together.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds of each message phase that are not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds of each message phase that are measured.
    #[arg(long, default_value_t = 10.0)]
    measure: f64,
    /// Idle sockets to hold open, in steps (RSS is read at each).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle: Vec<usize>,
    /// WebSockets to open in the accept-rate burst.
    #[arg(long, default_value_t = 2000)]
    accept: usize,
    /// Handshakes in flight at once during the burst.
    #[arg(long, default_value_t = 64)]
    accept_concurrency: usize,
    /// The phases to run: all, or some of idle, closed, open, accept, wss (our relay's accept
    /// burst over wss, with full TLS handshakes and with resumed sessions).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    phases: Vec<String>,
    /// Parse and check every relayed frame (always on with --smoke).
    #[arg(long)]
    verify: bool,
    /// Pin the relays to this CPU with taskset (run.sh passes 0 on a machine with 2+ CPUs).
    #[arg(long)]
    relay_cpu: Option<u32>,
    /// Our relay's binary [default: `server` beside this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The forwarder's binary [default: `forwarder` beside this binary].
    #[arg(long)]
    forwarder_bin: Option<PathBuf>,
    /// The seed relays' directory [default: ../shared/anchors beside the workspace].
    #[arg(long)]
    anchors: Option<PathBuf>,
    /// Where to install the seed relays and write the relays' logs [default: bench-work
    /// beside this binary].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Before each phase, wait until other processes use less than this share of a core...
    #[arg(long, default_value_t = 0.10)]
    quiet_threshold: f64,
    /// ...but no longer than this many seconds (0: do not wait; --smoke does not).
    #[arg(long, default_value_t = 20.0)]
    quiet_wait: f64,
    /// Also run our relay's open loop across two instances sharing rooms through a Redis
    /// (`redis-server`, started on a free port): side A of each pair on one instance, side B
    /// on the other; printed beside the one-relay open loop of the same run.
    #[arg(long)]
    cross_instance: bool,
    /// Write each relay's open-loop latencies (ns, sorted, one per line) to DIR/RELAY.txt.
    #[arg(long, value_name = "DIR")]
    latency_dump: Option<PathBuf>,
    /// Also run the open loop on our relay and the forwarder at once, alternating between them
    /// in N short slices (the --measure seconds split between them), so that a stall of the
    /// shared machine falls on both alike; prints their latency and CPU side by side.
    #[arg(long, value_name = "N", default_value_t = 0)]
    slices: u32,
}

/// What each phase does, after --smoke has been applied.
#[derive(Clone, Debug)]
struct Plan {
    relays: Vec<RelayKind>,
    pairs: u32,
    window: usize,
    rate: f64,
    warmup: Duration,
    measure: Duration,
    /// Smoke: messages per peer in closed loop, and messages in all in open loop.
    closed_per_peer: Option<u64>,
    open_count: Option<u64>,
    idle: Vec<usize>,
    accept: usize,
    accept_concurrency: usize,
    /// WebSockets to open in each of our relay's wss bursts.
    wss_accept: usize,
    phases: Phases,
    verify: bool,
    /// Wait for a quiet machine before each phase: (threshold, longest wait).
    quiet: Option<(f64, Duration)>,
    /// Our relay's open loop again through two instances and Redis.
    cross_instance: bool,
}

impl Plan {
    fn from_args(args: &Args) -> anyhow::Result<Plan> {
        let mut relays = Vec::new();
        for name in &args.relays {
            let kind = RelayKind::from_name(name.trim()).with_context(|| {
                format!(
                    "unknown relay {name:?}; expected ours, seed-ws, seed-socketio or forwarder"
                )
            })?;
            relays.push(kind);
        }
        let mut idle = args.idle.clone();
        idle.sort_unstable();
        let phases = Phases::parse(&args.phases).map_err(anyhow::Error::msg)?;
        let plan = Plan {
            relays,
            pairs: args.pairs.max(1),
            window: args.window.max(1),
            rate: args.rate,
            warmup: Duration::from_secs_f64(args.warmup),
            measure: Duration::from_secs_f64(args.measure),
            closed_per_peer: None,
            open_count: None,
            idle,
            accept: args.accept,
            accept_concurrency: args.accept_concurrency.max(1),
            wss_accept: args.accept,
            phases,
            verify: args.verify,
            cross_instance: args.cross_instance,
            quiet: (args.quiet_wait > 0.0).then(|| {
                (
                    args.quiet_threshold,
                    Duration::from_secs_f64(args.quiet_wait),
                )
            }),
        };
        if !args.smoke {
            return Ok(plan);
        }
        Ok(Plan {
            relays: vec![RelayKind::Ours, RelayKind::Forwarder],
            pairs: 3,
            window: 4,
            rate: 1000.0,
            closed_per_peer: Some(60),
            open_count: Some(300),
            idle: vec![100],
            accept: 100,
            // Enough that the TLS path never rots; a debug build's handshakes are slow.
            wss_accept: 20,
            verify: true,
            quiet: None,
            ..plan
        })
    }

    /// Sockets one relay holds at most at once.
    fn sockets(&self) -> u64 {
        let idle = self.idle.iter().copied().max().unwrap_or(0);
        (idle.max(self.accept) + 2 * self.pairs as usize) as u64
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("[bench] cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("[bench] {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let setup = RelaySetup {
        server_bin: args
            .server_bin
            .clone()
            .unwrap_or_else(|| exe_dir.join("server")),
        forwarder_bin: args
            .forwarder_bin
            .clone()
            .unwrap_or_else(|| exe_dir.join("forwarder")),
        anchors: args
            .anchors
            .clone()
            .unwrap_or_else(|| workspace.join("../shared/anchors")),
        work_dir: args
            .work_dir
            .clone()
            .unwrap_or_else(|| exe_dir.join("bench-work")),
        cpu: args.relay_cpu,
    };
    fs::create_dir_all(&setup.work_dir)?;
    for (kind, bin) in [
        (RelayKind::Ours, &setup.server_bin),
        (RelayKind::Forwarder, &setup.forwarder_bin),
    ] {
        if plan.relays.contains(&kind) && !bin.is_file() {
            anyhow::bail!(
                "no {} binary at {}; build it first (bench/run.sh does)",
                kind.name(),
                bin.display()
            );
        }
    }

    // The generator holds every socket of a phase: raise its open-file limit to the hard one.
    let needed = plan.sockets() + 64;
    let nofile =
        rlimit::increase_nofile_limit(needed.max(65_536)).context("raising the open-file limit")?;
    if nofile < needed {
        eprintln!(
            "[bench] warning: the generator may open {nofile} files (hard limit), but the run needs about {needed}: lower --idle or raise the hard limit"
        );
    }
    if let Some(ports) = procfs::ephemeral_ports() {
        if ports < needed {
            eprintln!(
                "[bench] warning: only {ports} ephemeral ports (net.ipv4.ip_local_port_range) for about {needed} sockets"
            );
        }
    }

    let started = Instant::now();
    let mut reports = Vec::new();
    let mut cross = None;
    for &kind in &plan.relays {
        let report = run_relay(kind, &plan, &setup, needed).await;
        if kind == RelayKind::Ours && plan.cross_instance {
            cross = Some(cross_instance(&plan, &setup, report.open.as_ref()).await);
        }
        if let (Some(dir), Some(open)) = (&args.latency_dump, &report.open) {
            fs::create_dir_all(dir)?;
            let lines: String = open
                .latencies_ns
                .iter()
                .map(|ns| format!("{ns}\n"))
                .collect();
            fs::write(dir.join(format!("{}.txt", kind.name())), lines)?;
        }
        reports.push(report);
    }

    let sliced = if args.slices > 0 {
        Some(sliced_open_loop(&plan, &setup, args.slices).await)
    } else {
        None
    };

    let mut text = header(&plan, &setup, &reports);
    text.push('\n');
    text.push_str(&report::table(&reports, plan.rate, &plan.idle, plan.accept));
    for report in &reports {
        if let Some(https) = report::https_table(report, plan.accept_concurrency) {
            text.push('\n');
            text.push_str(&https);
        }
    }
    if let Some(cross) = &cross {
        text.push('\n');
        text.push_str(cross);
    }
    match &sliced {
        Some(Ok(sliced)) => {
            text.push('\n');
            text.push_str(sliced);
        }
        Some(Err(why)) => {
            text.push_str(&format!("\nThe sliced open loop failed: {why}\n"));
        }
        None => {}
    }
    let notes = report::notes(&reports);
    if !notes.is_empty() {
        text.push_str("\nNotes from this run:\n\n");
        text.push_str(&notes);
    }
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "\nRun took {:.0} s. Relay logs: {}\n",
            started.elapsed().as_secs_f64(),
            setup.work_dir.join("logs").display()
        ),
    );
    println!("{text}");
    if let Some(out) = &args.out {
        fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }

    let mut failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.is_clean() && (args.smoke || r.kind == RelayKind::Ours))
        .map(|r| r.kind.name())
        .collect();
    if matches!(sliced, Some(Err(_))) {
        failed.push("sliced open loop");
    }
    if failed.is_empty() {
        if args.smoke {
            eprintln!(
                "[bench] smoke passed: every message arrived once, in order, at its peer; every ws and wss socket opened"
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("[bench] FAILED: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Our relay and the forwarder, both running, each with its pairs connected, take turns at the
/// open loop: `slices` turns each, the order alternating, `plan.measure` split between the
/// turns (each after a short unmeasured start). The machine's stalls fall on both alike, which
/// single runs of one relay after the other cannot promise for a 99th percentile. Returns the
/// Markdown section for the report, or what went wrong.
async fn sliced_open_loop(plan: &Plan, setup: &RelaySetup, slices: u32) -> Result<String, String> {
    let kinds = [RelayKind::Ours, RelayKind::Forwarder];
    let mut relays = Vec::new();
    let mut sets = Vec::new();
    for kind in kinds {
        let relay = match RelayProcess::start(kind, setup, "sliced", false) {
            Ok(relay) => relay,
            Err(err) => return Err(format!("cannot start {}: {err:#}", kind.name())),
        };
        match Pairs::connect(
            kind,
            relay.addr,
            relay.addr,
            relay.pid,
            plan.pairs,
            plan.window,
            plan.verify,
        )
        .await
        {
            Ok(set) => sets.push(set),
            Err(err) => return Err(format!("connecting to {}: {err:#}", kind.name())),
        }
        relays.push(relay);
    }
    let slice = plan.measure / slices;
    let warmup = Duration::from_millis(300);
    // Per relay: every latency (ns), CPU microseconds and messages summed over the turns.
    let mut latencies: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu = [(0.0f64, 0u64); 2];
    let mut failure = None;
    'turns: for turn in 0..slices {
        for step in 0..2 {
            let i = if turn % 2 == 0 { step } else { 1 - step };
            eprintln!(
                "[bench] sliced open loop: turn {}/{slices}, {}",
                turn + 1,
                kinds[i].name()
            );
            match sets[i].open_loop(plan.rate, warmup, slice, None).await {
                Ok(open) => {
                    latencies[i].extend_from_slice(&open.latencies_ns);
                    cpu[i].0 += open.cpu_us_per_msg * open.samples as f64;
                    cpu[i].1 += open.samples;
                }
                Err(err) => {
                    failure = Some(format!("{}: {err:#}", kinds[i].name()));
                    break 'turns;
                }
            }
        }
    }
    for (set, kind) in sets.into_iter().zip(kinds) {
        let faults = set.close().await;
        if !faults.is_clean() && failure.is_none() {
            failure = Some(format!(
                "{}: {} lost, {} misrouted, {} out of order, {} other faults of {} sent",
                kind.name(),
                faults.lost,
                faults.misrouted,
                faults.out_of_order,
                faults.others(),
                faults.sent
            ));
        }
    }
    for relay in relays {
        let _ = relay.stop();
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let mut rows = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        latencies[i].sort_unstable();
        let l = &latencies[i];
        rows.push((
            kind.name(),
            [
                load::percentile_us(l, 0.50),
                load::percentile_us(l, 0.99),
                load::percentile_us(l, 0.999),
                cpu[i].0 / cpu[i].1.max(1) as f64,
            ],
            l.len(),
        ));
    }
    let mut text = format!(
        "Open loop at {} msg/s in {slices} alternating slices per relay ({:.1} s measured each):\n\n\
         | relay | samples | p50 µs | p99 µs | p99.9 µs | CPU µs/msg |\n|---|---:|---:|---:|---:|---:|\n",
        plan.rate,
        slice.as_secs_f64()
    );
    for (name, f, n) in &rows {
        text.push_str(&format!(
            "| {name} | {n} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
            f[0], f[1], f[2], f[3]
        ));
    }
    let (a, b) = (&rows[0].1, &rows[1].1);
    text.push_str(&format!(
        "| ours ÷ forwarder | | x{:.2} | x{:.2} | x{:.2} | x{:.2} |\n",
        a[0] / b[0],
        a[1] / b[1],
        a[2] / b[2],
        a[3] / b[3]
    ));
    Ok(text)
}

/// Runs every phase of the plan against `kind`: idle sockets on a fresh process, then the
/// message phases and the accept bursts (for our relay over ws, then over wss) on another fresh
/// one.
async fn run_relay(kind: RelayKind, plan: &Plan, setup: &RelaySetup, needed: u64) -> RelayReport {
    // A broadcasting relay delivers each message to every other socket: with one pair, each
    // message reaches exactly its intended peer, as with the others. Keep as many messages in
    // flight as all the pairs of the others do.
    let (pairs, window) = if kind.broadcasts() {
        (1, plan.window * plan.pairs as usize)
    } else {
        (plan.pairs, plan.window)
    };
    let phases = plan.phases;
    let mut report = RelayReport::new(kind, pairs, window, phases);
    let name = kind.name();

    if phases.idle {
        quiet(plan, &mut report, None, "the idle sockets").await;
        eprintln!("[bench] {name}: idle sockets {:?}", plan.idle);
        match RelayProcess::start(kind, setup, "idle", false) {
            Ok(relay) => {
                report.nofile = relay.nofile;
                if relay.nofile < needed {
                    let warning = format!(
                        "the relay may open only {} files, the run needs about {needed}: raise the hard limit (ulimit -Hn)",
                        relay.nofile
                    );
                    eprintln!("[bench] {name}: {warning}");
                    report.warnings.push(warning);
                }
                match load::idle(kind, relay.addr, relay.pid, &plan.idle).await {
                    Ok(idle) => report.idle = Some(idle),
                    Err(err) => report.failures.push(format!("idle sockets: {err:#}")),
                }
                if let Err(err) = relay.stop() {
                    report.failures.push(format!("stopping: {err:#}"));
                }
            }
            Err(err) => {
                report.failures.push(format!("cannot start: {err:#}"));
                return report;
            }
        }
    }

    let wss = phases.wss && kind == RelayKind::Ours;
    if !(phases.messages() || phases.accept || wss) {
        return report;
    }
    let mut relay = match RelayProcess::start(kind, setup, "messages", wss) {
        Ok(relay) => relay,
        Err(err) => {
            report.failures.push(format!("cannot start: {err:#}"));
            return report;
        }
    };
    if report.nofile == 0 {
        report.nofile = relay.nofile;
    }
    if phases.messages() {
        message_phases(plan, &mut report, &relay, pairs, window).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if phases.accept {
        report.accept = burst(
            plan,
            &mut report,
            &relay,
            relay.addr,
            plan.accept,
            Transport::Ws,
            "accept burst",
        )
        .await;
    }
    if wss {
        wss_bursts(plan, &mut report, &relay).await;
    }
    if !relay.is_running() {
        report
            .failures
            .push(format!("the relay exited; see {}", relay.log.display()));
    }
    if let Err(err) = relay.stop() {
        report.failures.push(format!("stopping: {err:#}"));
    }
    report
}

/// A `redis-server` of the benchmark's own on a free loopback port, nothing saved to disk,
/// pinned with the relays; killed by its PID when dropped.
struct Redis {
    port: u16,
    child: std::process::Child,
}

impl Redis {
    fn start(cpu: Option<u32>) -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let redis = Redis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our relay's open loop through two instances and Redis: the lines printed under the table,
/// beside `single` (the one-relay open loop of the same run), or why it could not run.
async fn cross_instance(
    plan: &Plan,
    setup: &RelaySetup,
    single: Option<&load::OpenLoop>,
) -> String {
    match cross_open_loop(plan, setup).await {
        Ok(cross) => {
            let row = |what: &str, one: f64, two: f64| {
                format!("| {what} | {one:.0} | {two:.0} (×{:.2}) |\n", two / one)
            };
            let one = |f: fn(&load::OpenLoop) -> f64| single.map_or(f64::NAN, f);
            let mut text = format!(
                "Cross-instance: the same open loop at {} msg/s, side A of each pair on one instance of ours, side B on another, rooms shared through one redis-server (all three on the relay CPU):\n\n| | one relay | two relays + Redis |\n|---|---:|---:|\n",
                plan.rate
            );
            text += &row("latency p50 (µs) ↓", one(|o| o.p50_us), cross.p50_us);
            text += &row("latency p99 (µs) ↓", one(|o| o.p99_us), cross.p99_us);
            text += &row("latency p99.9 (µs) ↓", one(|o| o.p999_us), cross.p999_us);
            text += &format!(
                "| sent {} msgs: lost / misrouted / out of order / other | | {} |\n",
                cross.sent, cross.faults
            );
            text
        }
        Err(err) => format!("Cross-instance: could not run: {err:#}\n"),
    }
}

async fn cross_open_loop(plan: &Plan, setup: &RelaySetup) -> anyhow::Result<CrossLoop> {
    let redis = Redis::start(setup.cpu)?;
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let extra = ["--redis-url", url.as_str()];
    let one = RelayProcess::start_with(RelayKind::Ours, setup, "cross-1", false, &extra)?;
    let two = RelayProcess::start_with(RelayKind::Ours, setup, "cross-2", false, &extra)?;
    eprintln!(
        "[bench] ours: cross-instance open loop at {} msg/s",
        plan.rate
    );
    let set = Pairs::connect(
        RelayKind::Ours,
        one.addr,
        two.addr,
        one.pid,
        plan.pairs,
        plan.window,
        plan.verify,
    )
    .await?;
    let open = set
        .open_loop(plan.rate, plan.warmup, plan.measure, plan.open_count)
        .await;
    let faults = set.close().await;
    let _ = one.stop();
    let _ = two.stop();
    drop(redis);
    let open = open?;
    Ok(CrossLoop {
        sent: faults.sent,
        p50_us: open.p50_us,
        p99_us: open.p99_us,
        p999_us: open.p999_us,
        faults: format!(
            "{} / {} / {} / {}",
            faults.lost,
            faults.misrouted,
            faults.out_of_order,
            faults.unexpected + faults.verify_failed + faults.send_failed
        ),
    })
}

struct CrossLoop {
    sent: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    faults: String,
}

/// Connects the pairs and runs the closed and the open loop the plan asks for.
async fn message_phases(
    plan: &Plan,
    report: &mut RelayReport,
    relay: &RelayProcess,
    pairs: u32,
    window: usize,
) {
    let (kind, name) = (report.kind, report.kind.name());
    eprintln!("[bench] {name}: connecting {pairs} pairs");
    let set = match Pairs::connect(
        kind,
        relay.addr,
        relay.addr,
        relay.pid,
        pairs,
        window,
        plan.verify,
    )
    .await
    {
        Ok(set) => set,
        Err(err) => {
            report.failures.push(format!("connecting pairs: {err:#}"));
            return;
        }
    };
    report.mean_frame = set.mean_frame_len();
    for attempt in 1..=ATTEMPTS {
        if !plan.phases.closed {
            break;
        }
        quiet(plan, report, Some(relay.pid), "the closed loop").await;
        eprintln!("[bench] {name}: closed loop");
        match set
            .closed_loop(plan.warmup, plan.measure, plan.closed_per_peer)
            .await
        {
            Ok(closed) => {
                let others = closed.others_util;
                report.closed = Some(closed);
                if !disturbed(plan, report, others, "closed loop", attempt) {
                    break;
                }
            }
            Err(err) => {
                report.failures.push(format!("closed loop: {err:#}"));
                break;
            }
        }
    }
    for attempt in 1..=ATTEMPTS {
        if !plan.phases.open {
            break;
        }
        quiet(plan, report, Some(relay.pid), "the open loop").await;
        eprintln!("[bench] {name}: open loop at {} msg/s", plan.rate);
        match set
            .open_loop(plan.rate, plan.warmup, plan.measure, plan.open_count)
            .await
        {
            Ok(open) => {
                let others = open.others_util;
                report.open = Some(open);
                if !disturbed(plan, report, others, "open loop", attempt) {
                    break;
                }
            }
            Err(err) => {
                report.failures.push(format!("open loop: {err:#}"));
                break;
            }
        }
    }
    report.faults = Some(set.close().await);
}

/// Our relay's accept burst over wss, right after the ws one on the same process: first with a
/// full TLS handshake per socket (the client keeps no sessions), then resuming sessions with
/// the tickets the relay hands out.
async fn wss_bursts(plan: &Plan, report: &mut RelayReport, relay: &RelayProcess) {
    let (Some(addr), Some(cert)) = (relay.tls_addr, relay.cert.as_deref()) else {
        report
            .failures
            .push("wss burst: the relay was started without TLS".into());
        return;
    };
    for handshake in [tls::Handshake::Full, tls::Handshake::Resumed] {
        let client = match tls::Client::new(cert, handshake) {
            Ok(client) => client,
            Err(err) => {
                report.failures.push(format!("wss burst: {err:#}"));
                return;
            }
        };
        if handshake == tls::Handshake::Resumed {
            let prime = plan.wss_accept.min(plan.accept_concurrency);
            if let Err(err) = load::prime_tickets(report.kind, addr, &client, prime).await {
                report.failures.push(format!("wss burst: {err:#}"));
                return;
            }
        }
        let phase = format!("wss burst, {}", handshake.label());
        let accept = burst(
            plan,
            report,
            relay,
            addr,
            plan.wss_accept,
            Transport::Wss(&client),
            &phase,
        )
        .await;
        match handshake {
            tls::Handshake::Full => report.accept_wss = accept,
            tls::Handshake::Resumed => report.accept_wss_resumed = accept,
        }
    }
}

/// One accept burst of `count` sockets to `addr` over `transport`, run again once if other
/// processes disturbed it.
async fn burst(
    plan: &Plan,
    report: &mut RelayReport,
    relay: &RelayProcess,
    addr: SocketAddr,
    count: usize,
    transport: Transport<'_>,
    phase: &str,
) -> Option<Accept> {
    let mut result = None;
    for attempt in 1..=ATTEMPTS {
        quiet(plan, report, Some(relay.pid), &format!("the {phase}")).await;
        eprintln!(
            "[bench] {}: {phase}: opening {count} WebSockets",
            report.kind.name()
        );
        match load::accept(
            report.kind,
            addr,
            relay.pid,
            count,
            plan.accept_concurrency,
            transport,
        )
        .await
        {
            Ok(accept) => {
                let others = accept.others_util;
                result = Some(accept);
                if !disturbed(plan, report, others, phase, attempt) {
                    break;
                }
            }
            Err(err) => {
                report.failures.push(format!("{phase}: {err:#}"));
                break;
            }
        }
    }
    result
}

/// How many times a phase runs at most when other processes disturb it.
const ATTEMPTS: u32 = 2;

/// Other processes using more than this share of a core during a phase spoil it: it runs again.
const DISTURBED: f64 = 0.25;

/// Whether `phase` (attempt `attempt`) should run again because other processes used `others`
/// of a core meanwhile. Says so, and notes it in the report when there is no attempt left.
fn disturbed(
    plan: &Plan,
    report: &mut RelayReport,
    others: f64,
    phase: &str,
    attempt: u32,
) -> bool {
    if plan.quiet.is_none() || others <= DISTURBED {
        return false;
    }
    let what = format!(
        "other processes used {:.0}% of a core during the {phase} (attempt {attempt} of {ATTEMPTS})",
        others * 100.0
    );
    eprintln!("[bench] {}: {what}", report.kind.name());
    if attempt < ATTEMPTS {
        return true;
    }
    report
        .warnings
        .push(format!("{what}: its figures are disturbed"));
    false
}

/// Waits for other processes to leave the machine alone before `phase`, if the plan says so;
/// notes it in the report when they did not.
async fn quiet(plan: &Plan, report: &mut RelayReport, relay_pid: Option<u32>, phase: &str) {
    let Some((threshold, max_wait)) = plan.quiet else {
        return;
    };
    let share = load::wait_quiet(relay_pid, threshold, max_wait).await;
    if share >= threshold {
        let warning = format!(
            "other processes used {:.0}% of a core before {phase} (waited {:.0} s for less than {:.0}%)",
            share * 100.0,
            max_wait.as_secs_f64(),
            threshold * 100.0
        );
        eprintln!("[bench] {}: {warning}", report.kind.name());
        report.warnings.push(warning);
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The machine and the workload, above the table.
fn header(plan: &Plan, setup: &RelaySetup, reports: &[RelayReport]) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let online = command_output("nproc", &["--all"]).unwrap_or_else(|| cpus.to_string());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let node = command_output("node", &["--version"]).unwrap_or_else(|| "none".into());
    let pinning = match setup.cpu {
        Some(cpu) => format!(
            "relays pinned to CPU {cpu}, generator to CPU {}",
            procfs::allowed_cpus().unwrap_or_default()
        ),
        None => "no CPU pinning".to_owned(),
    };
    let nofile: Vec<String> = reports
        .iter()
        .map(|r| format!("{} {}", r.kind.name(), r.nofile))
        .collect();
    let secs = |d: Duration| d.as_secs_f64();
    let closed = match plan.closed_per_peer {
        Some(n) => format!("{n} messages per peer"),
        None => format!(
            "{:.0} s warm-up + {:.0} s measured",
            secs(plan.warmup),
            secs(plan.measure)
        ),
    };
    let open = match plan.open_count {
        Some(n) => format!("{n} messages at {} msg/s", plan.rate),
        None => format!(
            "{} msg/s, {:.0} s warm-up + {:.0} s measured",
            plan.rate,
            secs(plan.warmup),
            secs(plan.measure)
        ),
    };
    // The frames as our relay's clients send them (the others' framing differs by a few bytes).
    let script = Script::new(0, Side::A, |payload| {
        dialect::encode(RelayKind::Ours, payload, &Ident::Anonymous)
    });
    let ((sdp_min, sdp_max), (cand_min, cand_max)) =
        (script.sdp_frame_lens(), script.candidate_frame_lens());
    let build = if cfg!(debug_assertions) {
        "\nDev build: these figures check the generator, they say nothing about speed.\n"
    } else {
        ""
    };
    let phases = if plan.phases == Phases::ALL {
        String::new()
    } else {
        format!(" Phases run: {}.", plan.phases.names().join(", "))
    };
    let wss = if plan.phases.wss && plan.relays.contains(&RelayKind::Ours) {
        format!(
            "; ours also over wss, {} WebSockets with a full TLS handshake each, then {} resuming sessions",
            plan.wss_accept, plan.wss_accept
        )
    } else {
        String::new()
    };
    format!(
        "Machine: {online} CPUs ({model}), Linux {kernel}, Node {node}; {pinning}.\n\
         Open-file limit of each relay: {}.\n\
         Workload: {} pairs{}; per exchange 1 offer + 1 answer (SDP 3.2–5.8 KB, frames {sdp_min}–{sdp_max} B) + 10 candidates (frames {cand_min}–{cand_max} B).\n\
         Closed loop: {closed}, window {} per direction. Open loop: {open}. Idle sockets: {:?}. Accept burst: {} WebSockets, {} handshakes at a time{wss}.{}{phases}\n",
        nofile.join(", "),
        plan.pairs,
        if plan.relays.iter().any(|k| k.broadcasts()) {
            " (seed-socketio: 1 pair, as it broadcasts; see docs/benchmarks.md)"
        } else {
            ""
        },
        plan.window,
        plan.idle,
        plan.accept,
        plan.accept_concurrency,
        if plan.verify { " Every relayed frame verified." } else { "" },
    ) + build
}
