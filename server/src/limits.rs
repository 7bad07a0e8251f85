//! What one client, one address and everybody together may use, and how it is enforced.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::http::{header, HeaderMap, StatusCode};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::host::hostname;

/// The relay's limits. Every one has a flag in the binary (`server --help`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// WebSocket connections open at once; more get `503 Service Unavailable`.
    pub max_sessions: usize,
    /// WebSocket connections open at once from one IP address; more get `429`.
    pub max_per_ip: usize,
    /// Messages per second one connection may send, on average.
    pub rate_per_sec: f64,
    /// Messages one connection may send at once before the rate applies (a call's setup is a
    /// burst of some 30).
    pub rate_burst: f64,
    /// Rate-limited messages in a row after which the connection is closed (1008).
    pub abuse_limit: u32,
    /// How often the relay pings each connection.
    pub ping_interval: Duration,
    /// A connection silent (no pong, no message) for this long is dropped.
    pub idle_timeout: Duration,
    /// How long a message for a peer that has not joined yet is held.
    pub hold: Duration,
    /// How long a dropped peer's id and name stay reserved for it to resume.
    pub resume_grace: Duration,
    /// Per-connection WebSocket read buffer: tungstenite allocates and zero-fills it up front
    /// and keeps it (its default of 128 KiB would dominate an idle connection's memory). It sets
    /// only how much tungstenite takes per call: the socket is read up to 16 KiB per system call
    /// through one buffer per thread (`upgrade::LazyRead`).
    pub read_buffer: usize,
    /// Per-connection WebSocket write buffer.
    pub write_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_per_ip: 64,
            rate_per_sec: 50.0,
            rate_burst: 200.0,
            abuse_limit: 100,
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            hold: Duration::from_secs(10),
            resume_grace: Duration::from_secs(15),
            read_buffer: 1024,
            write_buffer: 8 * 1024,
        }
    }
}

/// Decides who may open a connection, and holds their place while it is open.
pub struct Admission {
    sessions: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// A connection's place; giving it back (dropping it) frees it for the next.
pub struct Ticket {
    _session: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            sessions: Arc::new(Semaphore::new(limits.max_sessions)),
            per_ip: Arc::default(),
            max_per_ip: limits.max_per_ip,
        }
    }

    /// A place for a connection from `ip`, or the HTTP answer that refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<Ticket, (StatusCode, &'static str)> {
        let session = self.sessions.clone().try_acquire_owned().map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is full: try again later\n",
            )
        })?;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address\n",
            ));
        }
        *count += 1;
        Ok(Ticket {
            _session: session,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }
}

/// Whether a WebSocket upgrade may go ahead, judged by its `Origin`: a browser always sends it,
/// so a page of a foreign site cannot open a socket with its visitor's browser (cross-site
/// WebSocket hijacking). Without an allowlist, the page must come from the relay's own host
/// name, on any port.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // Not a browser: nobody's credentials to abuse.
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
    }
    let host = crate::host::host_header(headers).unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, authority)| authority);
    let (origin_host, host) = (hostname(origin_host), hostname(host));
    !origin_host.is_empty()
        && (origin_host.eq_ignore_ascii_case(host)
            || (is_loopback(origin_host) && is_loopback(host)))
}

/// `localhost`, `127.0.0.1` and `[::1]` name the same machine: a dev server such as `trunk
/// serve` proxies a page of one to a relay addressed by another.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "[::1]" || host.starts_with("127.")
}

/// A token bucket: `rate` messages a second on average, `burst` at once.
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    /// Refused messages since the last one let through.
    pub refused_in_a_row: u32,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Takes a token for one message that came at `now`; false when the bucket is empty.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.take(now, 1.0)
    }

    /// Takes `cost` tokens (bytes, for a bandwidth cap) at `now`; false, taking none, when the
    /// bucket holds fewer.
    pub fn take(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        if let Some(origin) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("header"),
            );
        }
        h
    }

    #[test]
    fn only_pages_of_the_relays_own_host_may_connect_by_default() {
        assert!(origin_allowed(&headers(None, "relay:8080"), &[]));
        assert!(origin_allowed(
            &headers(Some("http://relay:8080"), "relay:8080"),
            &[]
        ));
        assert!(origin_allowed(
            &headers(Some("http://relay:8081"), "relay:8080"),
            &[]
        ));
        assert!(origin_allowed(
            &headers(Some("https://[::1]:1"), "[::1]:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "relay:8080"),
            &[]
        ));
        assert!(!origin_allowed(&headers(Some("null"), "relay:8080"), &[]));
        assert!(origin_allowed(
            &headers(Some("http://localhost:8081"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            &headers(Some("http://localhost:8081"), "relay:8080"),
            &[]
        ));
        let list = ["https://app.example".to_owned()];
        assert!(origin_allowed(
            &headers(Some("https://app.example"), "relay:8080"),
            &list
        ));
        assert!(!origin_allowed(
            &headers(Some("http://relay:8080"), "relay:8080"),
            &list
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_at_its_rate() {
        let mut bucket = RateLimit::new(10.0, 2.0);
        let now = Instant::now();
        assert!(bucket.allow(now) && bucket.allow(now));
        assert!(!bucket.allow(now));
        assert_eq!(bucket.refused_in_a_row, 1);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(bucket.allow(Instant::now()));
        assert_eq!(bucket.refused_in_a_row, 0);
    }

    #[test]
    fn an_address_gets_its_places_back() {
        let limits = Limits {
            max_per_ip: 1,
            max_sessions: 2,
            ..Limits::default()
        };
        let admission = Admission::new(&limits);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let first = admission.admit(ip).expect("admitted");
        assert_eq!(
            admission.admit(ip).err().map(|e| e.0),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        let other = admission.admit([127, 0, 0, 2].into()).expect("admitted");
        assert_eq!(
            admission.admit([127, 0, 0, 3].into()).err().map(|e| e.0),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        drop((first, other));
        assert!(admission.admit(ip).is_ok());
    }
}
