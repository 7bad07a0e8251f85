//! A network lab on one machine: hosts as network namespaces, cables as veth pairs, switches as
//! bridges, home routers as namespaces that forward, masquerade and filter with iptables.
//!
//! Nothing in a lab can reach the machine's own network: no veth ever has an end outside the
//! lab's namespaces, so no lab namespace has a route out. The test process itself stays in the
//! machine's namespace and reaches into the lab through [`Lab::connect`], which opens a socket
//! from a short-lived thread that has entered the lab host's namespace (a socket stays in the
//! namespace it was made in). Dropping the [`Lab`] (also when a test fails) kills every process
//! in its namespaces and deletes them, which removes their links too.
//!
//! Needs root (`ip netns add`); [`Lab::new`] returns `None`, and the test says it skipped,
//! where the process is not root.

use std::{
    fs::File,
    io::{self, BufRead},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use fantoccini::Client;
use nix::sched::{setns, CloneFlags};
use tokio::task::JoinHandle;

use crate::browser::{self, PATIENCE};

/// Namespace names start with this, then the test process's pid: a later run can tell a lab
/// left behind by a killed run (its pid is gone) and remove it.
const PREFIX: &str = "vclab";

/// Where chromedriver listens inside a lab host.
const DRIVER_PORT: u16 = 9515;

static LABS: AtomicU32 = AtomicU32::new(0);

/// A set of network namespaces and the processes running in them.
pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    forwards: Vec<JoinHandle<()>>,
    dir: PathBuf,
}

impl Lab {
    /// A new, empty lab; `None` where this process may not create namespaces (not root).
    pub fn new(name: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("[lab] SKIPPED {name}: network namespaces need root (CI runs as root)");
            return None;
        }
        remove_stale_labs();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{}-{n}-", std::process::id());
        let dir = std::env::temp_dir().join(format!("{tag}{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab directory");
        Some(Self {
            tag,
            namespaces: Vec::new(),
            children: Vec::new(),
            forwards: Vec::new(),
            dir,
        })
    }

    /// A directory for this lab's files (logs, data directories).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a host: a namespace with its loopback up. Returns its full name.
    pub fn host(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.tag);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command in host `ns` and waits for it; panics if it fails.
    pub fn exec(&self, ns: &str, args: &[&str]) {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// Runs a command in host `ns` for at most `limit` and returns what it printed (standard
    /// output, then standard error), whether it succeeded or not.
    pub fn output(&self, ns: &str, limit: Duration, args: &[&str]) -> String {
        let secs = limit.as_secs().max(1).to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", &secs])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns}: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// A cable: a veth pair from `a`'s interface `a_if` to `b`'s `b_if`, both up, with the
    /// addresses (CIDR, e.g. `10.1.0.1/24`) given; `None` leaves an end without one (to put it
    /// on a bridge).
    pub fn cable(&self, a: (&str, &str, Option<&str>), b: (&str, &str, Option<&str>)) {
        run(
            "ip",
            &[
                "link", "add", a.1, "netns", a.0, "type", "veth", "peer", "name", b.1, "netns", b.0,
            ],
        );
        for (ns, iface, addr) in [a, b] {
            if let Some(addr) = addr {
                self.exec(ns, &["ip", "addr", "add", addr, "dev", iface]);
            }
            self.exec(ns, &["ip", "link", "set", iface, "up"]);
        }
    }

    /// A switch inside host `ns`: a bridge with address `addr`, joining the interfaces `ports`
    /// of that host.
    pub fn bridge(&self, ns: &str, name: &str, addr: &str, ports: &[&str]) {
        self.exec(ns, &["ip", "link", "add", name, "type", "bridge"]);
        self.exec(ns, &["ip", "addr", "add", addr, "dev", name]);
        self.exec(ns, &["ip", "link", "set", name, "up"]);
        for port in ports {
            self.exec(ns, &["ip", "link", "set", port, "master", name]);
        }
    }

    /// Gives host `ns` a default route that leads nowhere: packets for addresses nobody in the
    /// lab has are dropped silently, as the internet drops packets for private addresses,
    /// instead of failing at once with "network unreachable". The route goes into a veth pair
    /// whose two ends are both in `ns` (this kernel may have no dummy interfaces): what comes
    /// out of one end arrives at the other, for no local address, and is dropped there.
    pub fn blackhole_default_route(&self, ns: &str) {
        run(
            "ip",
            &[
                "-n", ns, "link", "add", "nowhere0", "type", "veth", "peer", "name", "nowhere1",
            ],
        );
        for (iface, addr) in [
            ("nowhere0", "10.255.255.1/30"),
            ("nowhere1", "10.255.255.2/30"),
        ] {
            self.exec(ns, &["ip", "addr", "add", addr, "dev", iface]);
            self.exec(ns, &["ip", "link", "set", iface, "up"]);
        }
        self.exec(
            ns,
            &["ip", "route", "add", "default", "via", "10.255.255.2"],
        );
    }

    /// Starts a program in host `ns`, its output in `<lab dir>/<log>.log`. It runs in a
    /// process group of its own, so that what it starts (Chrome under chromedriver) is stopped
    /// with it.
    pub fn spawn(&mut self, ns: &str, log: &str, program: &str, args: &[String]) -> u32 {
        let out = File::create(self.dir.join(format!("{log}.log"))).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {ns}: {e}"));
        let pid = child.id();
        self.children.push((log.to_owned(), child));
        pid
    }

    /// Whether the program started as `log` still runs.
    pub fn running(&mut self, log: &str) -> bool {
        self.children
            .iter_mut()
            .filter(|(name, _)| name == log)
            .any(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    /// The lines of a program's log so far.
    pub fn log(&self, log: &str) -> Vec<String> {
        File::open(self.dir.join(format!("{log}.log")))
            .map(|f| {
                io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A TCP connection to `addr` made from inside host `ns`.
    pub async fn connect(&self, ns: &str, addr: SocketAddr) -> io::Result<TcpStream> {
        connect_from(ns.to_owned(), addr).await
    }

    /// Waits until something in host `ns` accepts TCP connections on `addr`.
    pub async fn wait_listening(&mut self, ns: &str, addr: SocketAddr, log: &str) {
        let started = Instant::now();
        loop {
            if self.connect(ns, addr).await.is_ok() {
                return;
            }
            assert!(
                self.running(log),
                "{log} exited: {:#?}",
                self.log(log).iter().rev().take(20).collect::<Vec<_>>()
            );
            assert!(
                started.elapsed() < PATIENCE,
                "nothing listens on {addr} in {ns}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A loopback address of this machine that leads to `port` on host `ns`'s own loopback.
    pub async fn forward(&mut self, ns: &str, port: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a forwarder");
        let local = listener.local_addr().expect("forwarder address");
        let ns = ns.to_owned();
        self.forwards.push(tokio::spawn(async move {
            while let Ok((mut outside, _)) = listener.accept().await {
                let ns = ns.clone();
                tokio::spawn(async move {
                    let target = SocketAddr::from(([127, 0, 0, 1], port));
                    let Ok(inside) = connect_from(ns, target).await else {
                        return;
                    };
                    if inside.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(mut inside) = tokio::net::TcpStream::from_std(inside) else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                });
            }
        }));
        local
    }

    /// A headless Chrome running in host `ns` (under a chromedriver of its own there), with
    /// the standard test flags plus `extra`. Chrome keeps its default ICE behaviour: no
    /// loopback candidates, mDNS host names.
    pub async fn browser(&mut self, ns: &str, extra: &[String]) -> Client {
        let log = format!("chromedriver-{}", ns.trim_start_matches(&self.tag));
        self.spawn(
            ns,
            &log,
            &browser::chromedriver_path(),
            &[format!("--port={DRIVER_PORT}")],
        );
        let local = self.forward(ns, DRIVER_PORT).await;
        let mut args: Vec<String> = browser::CHROME_ARGS.iter().map(|a| a.to_string()).collect();
        args.extend_from_slice(extra);
        browser::connect_browser(&format!("http://{local}"), &args).await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for task in &self.forwards {
            task.abort();
        }
        if std::thread::panicking() {
            for (log, _) in &self.children {
                let lines = self.log(log);
                let tail = lines.len().saturating_sub(15);
                eprintln!("[lab] last lines of {log}.log:");
                for line in &lines[tail..] {
                    eprintln!("    {line}");
                }
            }
            eprintln!("[lab] logs kept in {}", self.dir.display());
        }
        for (_, child) in &mut self.children {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            remove_namespace(ns);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `program args`, panicking with its output if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (run scripts/setup.sh --test)"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills whatever still runs in namespace `ns`, then deletes it (and so its links).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// Removes the namespaces of labs whose test process is gone (killed before it could clean).
fn remove_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = ns
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("[lab] removing {ns}, left behind by an earlier run");
            remove_namespace(ns);
        }
    }
}

/// Connects to `addr` from inside namespace `ns`, on a thread of its own: `setns` moves only
/// the calling thread, and that thread ends right after.
async fn connect_from(ns: String, addr: SocketAddr) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = File::open(format!("/run/netns/{ns}")).and_then(|file| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        });
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("the connecting thread died")))
}
