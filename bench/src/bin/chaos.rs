//! The chaos run: faults in Redis and the relays under signaling load (`bench::chaos`).
//!
//! Needs root: it makes two network namespaces (the relays', nginx's and the members' one, and
//! Redis's one, joined by a veth pair with addresses that exist only there), runs itself again
//! inside the first, and removes both when that ends, whatever way it ends.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{ensure, Context};
use bench::chaos::{self, Config, Fault, REDIS_ADDR, RELAYS_ADDR};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Faults in Redis and the relays under signaling load")]
struct Args {
    /// The cases to run, by name: kill-relay, restart-redis, pause-redis, cut-redis (all when
    /// none is given).
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Members at once.
    #[arg(long, default_value_t = 60)]
    members: usize,
    /// Seconds of load before the fault.
    #[arg(long, default_value_t = 8)]
    warm_secs: u64,
    /// Seconds a pause or a cut lasts, and a killed relay stays down.
    #[arg(long, default_value_t = 10)]
    fault_secs: u64,
    /// Seconds of load after the fault.
    #[arg(long, default_value_t = 12)]
    after_secs: u64,
    /// The relay's --hold-secs.
    #[arg(long, default_value_t = 4)]
    hold_secs: u64,
    /// The relay's --resume-grace-secs.
    #[arg(long, default_value_t = 20)]
    grace_secs: u64,
    /// The relay binary (default: `server` beside this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where logs go (default: `chaos-work` beside this binary).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Seeds the members' choices.
    #[arg(long, default_value_t = 29)]
    seed: u64,
    /// Set when this binary runs itself inside the namespaces: Redis's namespace.
    #[arg(long, hide = true)]
    redis_ns: Option<String>,
}

/// The two namespaces and the veth pair between them; removed when dropped.
struct Namespaces {
    relays: String,
    redis: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .context("running ip (scripts/setup.sh --test installs iproute2)")?;
    ensure!(status.success(), "ip {} failed", args.join(" "));
    Ok(())
}

impl Namespaces {
    fn make() -> anyhow::Result<Namespaces> {
        let tag = format!("vcc{}", std::process::id());
        let ns = Namespaces {
            relays: format!("{tag}n"),
            redis: format!("{tag}r"),
        };
        let (veth_n, veth_r) = (format!("{tag}a"), format!("{tag}b"));
        ip(&["netns", "add", &ns.relays])?;
        ip(&["netns", "add", &ns.redis])?;
        ip(&["-n", &ns.relays, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.redis, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", &veth_n, "netns", &ns.relays, "type", "veth", "peer", "name", &veth_r,
            "netns", &ns.redis,
        ])?;
        ip(&[
            "-n",
            &ns.relays,
            "addr",
            "add",
            &format!("{RELAYS_ADDR}/30"),
            "dev",
            &veth_n,
        ])?;
        ip(&[
            "-n",
            &ns.redis,
            "addr",
            "add",
            &format!("{REDIS_ADDR}/30"),
            "dev",
            &veth_r,
        ])?;
        ip(&["-n", &ns.relays, "link", "set", &veth_n, "up"])?;
        ip(&["-n", &ns.redis, "link", "set", &veth_r, "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.relays, &self.redis] {
            // Whatever still runs in there (nothing, normally) goes first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("[chaos] error: {err:#}");
            std::process::exit(2);
        }
    }
}

/// Runs `command` to its end. Ctrl-C or SIGTERM stops it, but not this process: the caller
/// still removes the namespaces and everything running in them.
fn wait_through_signals(
    mut command: tokio::process::Command,
) -> anyhow::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut child = command.spawn()?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            status = child.wait() => return Ok(status?),
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("[chaos] stopped: removing the namespaces and what runs in them");
        let _ = child.start_kill();
        Ok(child.wait().await?)
    })
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let Some(redis_ns) = args.redis_ns.clone() else {
        // Outside: make the namespaces and run again inside the relays' one.
        let ns = Namespaces::make().context("making the network namespaces (needs root)")?;
        let exe = std::env::current_exe()?;
        let mut inside = tokio::process::Command::new("ip");
        inside
            .args(["netns", "exec", &ns.relays])
            .arg(&exe)
            .args(std::env::args_os().skip(1))
            .args(["--redis-ns", &ns.redis]);
        let status = wait_through_signals(inside);
        // Whatever the run left behind (all of it, if a signal cut it short) goes with them.
        drop(ns);
        return Ok(status
            .context("running the chaos inside its namespace")?
            .success());
    };
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    let _ = rlimit::increase_nofile_limit(65_536);
    let faults = if args.cases.is_empty() {
        Fault::ALL.to_vec()
    } else {
        args.cases
            .iter()
            .map(|name| Fault::from_name(name).with_context(|| format!("no case named {name:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let config = Config {
        faults,
        members: args.members,
        warm: Duration::from_secs(args.warm_secs),
        fault: Duration::from_secs(args.fault_secs),
        after: Duration::from_secs(args.after_secs),
        hold_secs: args.hold_secs,
        grace_secs: args.grace_secs,
        server_bin: args.server_bin.unwrap_or_else(|| dir.join("server")),
        work_dir: args.work_dir.unwrap_or_else(|| dir.join("chaos-work")),
        redis_ns,
        seed: args.seed,
    };
    let outcome = chaos::run(&config)?;
    let passed = outcome.failures.is_empty();
    if passed {
        println!("\n[chaos] PASS: every signal delivered once or refused to its sender, every member back in its place");
    } else {
        println!("\n[chaos] FAIL: {}", outcome.failures.join("; "));
    }
    Ok(passed)
}
