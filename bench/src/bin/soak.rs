//! The soak run: rooms churning through one relay, then through two relays on one Redis, for
//! `--secs` (`SOAK_S`) in all, watched for leaks and for signals gone astray. See
//! [`bench::soak`] and docs/soak.md. Exits non-zero, saying why, when the run fails.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use bench::soak::{self, Config};
use clap::Parser;

/// Soak the relay: thousands of sockets joining, signaling, resuming and dropping.
#[derive(Debug, Parser)]
struct Args {
    /// The whole run in seconds, split evenly between the two setups.
    #[arg(long, env = "SOAK_S", default_value_t = 1800)]
    secs: u64,
    /// Seconds between report lines [default: 60, or 10 for runs under 10 minutes].
    #[arg(long)]
    report_secs: Option<u64>,
    /// Members at once.
    #[arg(long, default_value_t = 300)]
    members: usize,
    /// Shortest life of one socket, in seconds.
    #[arg(long, default_value_t = 5)]
    min_life: u64,
    /// Longest life of one socket, in seconds.
    #[arg(long, default_value_t = 40)]
    max_life: u64,
    /// The relay's --hold-secs: held signals expire after it.
    #[arg(long, default_value_t = 4)]
    hold_secs: u64,
    /// The relay's --resume-grace-secs.
    #[arg(long, default_value_t = 8)]
    grace_secs: u64,
    /// The relay binary [default: `server` beside this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the relays' logs go [default: `soak-work` beside this binary].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Seeds every random choice.
    #[arg(long, default_value_t = 23)]
    seed: u64,
    /// Append the run (command, date, table, verdict) to this Markdown file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Only the one-relay setup, for the whole run: to study the single relay alone (its
    /// memory, say). `make test` and `make soak` run both setups.
    #[arg(long)]
    one_relay: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("[soak] {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    // The generator holds hundreds of sockets; the relays raise their own limit.
    let _ = rlimit::increase_nofile_limit(65_536);
    let config = Config {
        secs: args.secs,
        report_every: Duration::from_secs(args.report_secs.unwrap_or(if args.secs < 600 {
            10
        } else {
            60
        })),
        concurrency: args.members,
        lifetime: (
            Duration::from_secs(args.min_life),
            Duration::from_secs(args.max_life),
        ),
        hold_secs: args.hold_secs,
        grace_secs: args.grace_secs,
        server_bin: args.server_bin.unwrap_or_else(|| dir.join("server")),
        work_dir: args.work_dir.unwrap_or_else(|| dir.join("soak-work")),
        seed: args.seed,
        one_relay_only: args.one_relay,
    };
    let outcome = soak::run(&config)?;
    let passed = outcome.failures.is_empty();
    let verdict = if passed {
        "PASS: nothing lost, misrouted or duplicated; memory and descriptors flat".to_owned()
    } else {
        format!("FAIL: {}", outcome.failures.join("; "))
    };
    println!("\n[soak] {verdict}");
    if let Some(path) = &args.record {
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let section = format!(
            "\n## Run of {date} (commit {commit}, `SOAK_S={}`)\n\n{}\n**{verdict}**\n",
            args.secs, outcome.report
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(section.as_bytes()))
            .with_context(|| format!("appending to {}", path.display()))?;
    }
    Ok(passed)
}
