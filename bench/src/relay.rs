//! Starting and stopping the relays under test, each on its own port of 127.0.0.1, pinned to
//! the relay core, with its open-file limit raised, and its output in a log file.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context};

use crate::{dialect::RelayKind, procfs};

/// The open-file limit asked for each relay (capped at the hard limit).
pub const RELAY_NOFILE: u64 = 65_536;

/// Where the relays come from and how to run them.
#[derive(Clone, Debug)]
pub struct RelaySetup {
    /// The `server` binary (our relay).
    pub server_bin: PathBuf,
    /// The `forwarder` binary.
    pub forwarder_bin: PathBuf,
    /// The read-only directory of the seed relays (`seed-ws/`, `seed-socketio/`).
    pub anchors: PathBuf,
    /// A writable directory for the anchors' copies with their `node_modules`, and the logs.
    pub work_dir: PathBuf,
    /// The CPU to pin the relays to with `taskset`, if any.
    pub cpu: Option<u32>,
}

impl RelaySetup {
    /// Copies a seed relay out of the read-only anchors and installs its dependencies with
    /// `npm ci`, unless a copy with the same lock file is already installed.
    pub fn prepare_anchor(&self, kind: RelayKind) -> anyhow::Result<PathBuf> {
        let Some(name) = kind.anchor_dir() else {
            bail!("{} is not a seed relay", kind.name());
        };
        let source = self.anchors.join(name);
        let dest = self.work_dir.join("anchors").join(name);
        let lock = fs::read(source.join("package-lock.json"))
            .with_context(|| format!("reading {}/package-lock.json", source.display()))?;
        let installed = fs::read(dest.join("package-lock.json")).ok();
        if installed.as_deref() == Some(lock.as_slice()) && dest.join("node_modules").is_dir() {
            return Ok(dest);
        }
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::create_dir_all(&dest)?;
        copy_dir(&source, &dest)?;
        eprintln!("[bench] npm ci in {}", dest.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dest)
            .stdin(Stdio::null())
            .status()
            .context("running npm (are Node and npm installed?)")?;
        ensure!(status.success(), "npm ci failed in {}", dest.display());
        Ok(dest)
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() == "node_modules" {
                continue;
            }
            fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            // The anchors are read-only; the copy must not be, or the next refresh cannot
            // delete it.
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// `N` different free ports on 127.0.0.1 (the relay binds them right after; nothing else here
/// races for them). All are held until all are found, so that none is handed out twice.
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// One running relay process.
#[derive(Debug)]
pub struct RelayProcess {
    /// Which relay.
    pub kind: RelayKind,
    /// Its process id (the relay itself: `taskset` and `bash` exec into it).
    pub pid: u32,
    /// Where it listens (plain http and ws).
    pub addr: SocketAddr,
    /// Where our relay listens for https and wss, when it was started with TLS.
    pub tls_addr: Option<SocketAddr>,
    /// The certificate our relay issued itself (`cert.pem` in its data directory), with TLS.
    pub cert: Option<PathBuf>,
    /// Its open-file limit.
    pub nofile: u64,
    /// Where its output goes.
    pub log: PathBuf,
    child: Option<Child>,
}

impl RelayProcess {
    /// Starts `kind` on a free port and waits until it accepts connections. `tag` names the log.
    /// With `tls`, our relay also serves https and wss on a second free port, with the
    /// certificate it issues itself into `work_dir/relay-data`; without, its TLS is off. Its
    /// STUN server is always off (two relays of one run would want the same UDP port).
    pub fn start(
        kind: RelayKind,
        setup: &RelaySetup,
        tag: &str,
        tls: bool,
    ) -> anyhow::Result<RelayProcess> {
        Self::start_with(kind, setup, tag, tls, &[])
    }

    /// [`RelayProcess::start`] with more arguments for our relay (`--redis-url URL`, say).
    pub fn start_with(
        kind: RelayKind,
        setup: &RelaySetup,
        tag: &str,
        tls: bool,
        extra: &[&str],
    ) -> anyhow::Result<RelayProcess> {
        Self::start_on(kind, setup, tag, tls, extra, free_ports()?)
    }

    /// [`RelayProcess::start_with`] for our relay without TLS on a given port: a relay started
    /// again where a load balancer expects it.
    pub fn start_at(
        setup: &RelaySetup,
        tag: &str,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<RelayProcess> {
        Self::start_on(RelayKind::Ours, setup, tag, false, extra, [port, 0])
    }

    fn start_on(
        kind: RelayKind,
        setup: &RelaySetup,
        tag: &str,
        tls: bool,
        extra: &[&str],
        [port, tls_port]: [u16; 2],
    ) -> anyhow::Result<RelayProcess> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let port_text = port.to_string();
        let tls = tls && kind == RelayKind::Ours;
        let tls_port_text = if tls {
            tls_port.to_string()
        } else {
            "0".into()
        };
        let tls_addr = tls.then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, tls_port)));
        let data_dir = setup.work_dir.join("relay-data");
        let data_dir_text = data_dir.to_string_lossy().into_owned();
        let (program, args, dir): (PathBuf, Vec<&str>, Option<PathBuf>) = match kind {
            RelayKind::Ours => (
                setup.server_bin.clone(),
                vec![
                    "--addr",
                    "127.0.0.1",
                    "--port",
                    &port_text,
                    "--tls-port",
                    &tls_port_text,
                    "--data-dir",
                    &data_dir_text,
                    "--stun-port",
                    "0",
                    "--dist",
                    "/nonexistent",
                ],
                None,
            ),
            RelayKind::Forwarder => (
                setup.forwarder_bin.clone(),
                vec!["--port", &port_text],
                None,
            ),
            RelayKind::SeedWs | RelayKind::SeedSocketio => {
                let dir = setup.prepare_anchor(kind)?;
                (PathBuf::from("node"), vec!["server.js"], Some(dir))
            }
        };
        let mut args = args;
        if kind == RelayKind::Ours {
            // Pairs by default; `extra` may say otherwise (the relay takes each flag once).
            if !extra.contains(&"--room-capacity") {
                args.extend_from_slice(&["--room-capacity", "2"]);
            }
            args.extend_from_slice(extra);
        }
        let logs = setup.work_dir.join("logs");
        fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{}-{tag}.log", kind.name()));
        let out = fs::File::create(&log)?;

        // taskset and bash both exec, so the child's pid is the relay's own.
        let raise = format!(
            "ulimit -n {RELAY_NOFILE} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$@\""
        );
        let mut command = match setup.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "bash"]);
                c
            }
            None => Command::new("bash"),
        };
        command
            .args(["-c", &raise, "bash"])
            .arg(&program)
            .args(&args)
            .env_remove("RUST_LOG")
            // Our relay reads these too; the flags above win, but say nothing else.
            .env_remove("TLS_CERT")
            .env_remove("TLS_KEY")
            .env_remove("NO_TLS")
            // Our relay's refusal limits (64 sockets per address, 50 messages a second per
            // socket, 10k sockets) would turn the load away: lift them, so that the checks
            // still run but never refuse. Variables, not flags: a relay without those limits
            // ignores them.
            .env("MAX_PER_IP", "1000000")
            .env("MAX_SESSIONS", "1000000")
            .env("RATE_PER_SEC", "1000000000")
            .env("RATE_BURST", "1000000000")
            .env("PORT", &port_text)
            .env("HOST", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(dir) = &dir {
            command.current_dir(dir);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        let mut relay = RelayProcess {
            kind,
            pid,
            addr,
            tls_addr,
            cert: tls.then(|| data_dir.join("cert.pem")),
            nofile: 0,
            log,
            child: Some(child),
        };
        relay.wait_listening()?;
        relay.nofile = procfs::nofile_limit(pid).unwrap_or(0);
        Ok(relay)
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} exited before listening ({status}); see {}",
                        self.kind.name(),
                        self.log.display()
                    );
                }
            }
            let waiting: Vec<SocketAddr> = [Some(self.addr), self.tls_addr]
                .into_iter()
                .flatten()
                .filter(|addr| {
                    TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err()
                })
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} is not listening on {waiting:?} after 20 s; see {}",
                self.kind.name(),
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the relay outright (SIGKILL), as a crash or an out-of-memory kill would.
    pub fn kill(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Asks the relay to stop (SIGTERM), waits for it, and kills it if it does not stop.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        // Our relay drains for up to 5 s on SIGTERM; give it a little more before killing.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(7);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("{} did not stop on SIGTERM; killed it", self.kind.name())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
