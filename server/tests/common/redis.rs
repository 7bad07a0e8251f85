//! A `redis-server` of a test's own: shared by the relay's backplane tests and the end-to-end
//! call across two instances (`tests/tests/backplane_call.rs` includes this file by path).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How long `redis-server` may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A `redis-server` of the test's own, on a free loopback port, with nothing saved to disk.
pub struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    /// Starts the server (again) on the same port and waits until it answers PING. One still
    /// running is stopped first: its handle would be lost, and the process with it.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if self.pings() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server does not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server (by its PID) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server in its tracks (SIGSTOP): it keeps its connections and its data, and
    /// answers nothing until [`Redis::unpause`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn unpause(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} {pid}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
