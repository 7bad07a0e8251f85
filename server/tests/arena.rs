//! The relay binary starts itself again with one allocator arena (see `one_malloc_arena` in
//! `src/main.rs`), keeping its arguments and an operator's own setting.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The relay binary, on free ports, without TLS, STUN or TURN, and with `env` added.
fn start(env: &[(&str, &str)]) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a directory");
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--port", "0", "--no-tls", "--stun-port", "0", "--no-turn"])
        .arg("--dist")
        .arg(dir.path())
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("MALLOC_ARENA_MAX")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay");
    (child, dir)
}

/// The process's environment once it has one with `MALLOC_ARENA_MAX`, and its arguments.
fn settled(child: &Child) -> (Vec<String>, Vec<String>) {
    let read = |what: &str| {
        std::fs::read(format!("/proc/{}/{what}", child.id()))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let environ = read("environ");
        if environ.iter().any(|v| v.starts_with("MALLOC_ARENA_MAX=")) || Instant::now() > deadline {
            return (environ, read("cmdline"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_relay_runs_in_one_allocator_arena_with_its_own_arguments() {
    let (child, _dir) = start(&[]);
    let (environ, cmdline) = settled(&child);
    // Still running a moment later: it took its arguments the second time too.
    std::thread::sleep(Duration::from_millis(500));
    let still = child_running(child.id());
    stop(child);
    assert!(
        environ.iter().any(|v| v == "MALLOC_ARENA_MAX=1"),
        "the relay's environment: {environ:?}"
    );
    assert!(still, "the relay exited after starting again");
    assert_eq!(
        &cmdline[1..7],
        ["--port", "0", "--no-tls", "--stun-port", "0", "--no-turn"],
        "the relay's arguments after starting again"
    );
}

#[test]
fn an_operators_own_arena_count_is_kept() {
    let (child, _dir) = start(&[("MALLOC_ARENA_MAX", "3")]);
    let (environ, _) = settled(&child);
    stop(child);
    assert!(
        environ.iter().any(|v| v == "MALLOC_ARENA_MAX=3")
            && !environ.iter().any(|v| v == "MALLOC_ARENA_MAX=1"),
        "the relay's environment: {environ:?}"
    );
}

fn child_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}
