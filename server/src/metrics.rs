//! Counters for `/metrics`, in the Prometheus text format.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use protocol::ErrorKind;

use crate::turn_server::Refusal;

/// What the relay counts. Every field is a plain atomic: counting never takes a lock.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections open now.
    pub connections: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Upgrades refused: too many sessions, too many from one address, or a foreign origin.
    pub refused_total: AtomicU64,
    /// Signals delivered to a peer's outbox (held ones when released).
    pub messages_relayed: AtomicU64,
    /// Bytes of those signals.
    pub bytes_relayed: AtomicU64,
    /// STUN Binding requests answered.
    pub stun_requests: AtomicU64,
    /// TLS handshakes that failed or timed out on the https port.
    pub tls_handshakes_failed: AtomicU64,
    /// Allocations of the built-in TURN server alive now.
    pub turn_allocations: AtomicU64,
    /// Allocations the built-in TURN server granted since start.
    pub turn_allocations_total: AtomicU64,
    /// Bytes relayed between allocations and peers, both directions.
    pub turn_bytes_relayed: AtomicU64,
    /// Datagrams dropped by the per-allocation bandwidth cap.
    pub turn_dropped_over_cap: AtomicU64,
    /// TURN connections over TCP on the STUN port.
    pub turn_tcp_connections: AtomicU64,
    /// TURN connections over TLS (the https port or --turn-tls-port).
    pub turn_tls_connections: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    turn_refused: [AtomicU64; Refusal::ALL.len()],
}

impl Metrics {
    /// Counts one error told to a client.
    pub fn error(&self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one thing the TURN server refused.
    pub fn turn_refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.turn_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one delivered signal of `bytes` bytes.
    pub fn relayed(&self, messages: usize, bytes: usize) {
        self.messages_relayed
            .fetch_add(messages as u64, Ordering::Relaxed);
        self.bytes_relayed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The exposition text; `rooms` and `peers` come from the registry.
    pub fn render(&self, rooms: usize, peers: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "relay_connections",
            "gauge",
            "WebSocket connections open now.",
            get(&self.connections),
        );
        metric(
            "relay_connections_total",
            "counter",
            "WebSocket connections accepted.",
            get(&self.connections_total),
        );
        metric(
            "relay_refused_total",
            "counter",
            "WebSocket upgrades refused (limits, origin).",
            get(&self.refused_total),
        );
        metric(
            "relay_rooms",
            "gauge",
            "Rooms with at least one peer.",
            rooms as u64,
        );
        metric("relay_peers", "gauge", "Peers in a room.", peers as u64);
        metric(
            "relay_messages_relayed_total",
            "counter",
            "Signals delivered to a peer.",
            get(&self.messages_relayed),
        );
        metric(
            "relay_bytes_relayed_total",
            "counter",
            "Bytes of signals delivered.",
            get(&self.bytes_relayed),
        );
        metric(
            "relay_stun_requests_total",
            "counter",
            "STUN Binding requests answered.",
            get(&self.stun_requests),
        );
        metric(
            "relay_tls_handshakes_failed_total",
            "counter",
            "TLS handshakes on the https port that failed or timed out.",
            get(&self.tls_handshakes_failed),
        );
        metric(
            "relay_turn_allocations",
            "gauge",
            "Allocations of the built-in TURN server alive now.",
            get(&self.turn_allocations),
        );
        metric(
            "relay_turn_allocations_total",
            "counter",
            "Allocations the built-in TURN server granted.",
            get(&self.turn_allocations_total),
        );
        metric(
            "relay_turn_bytes_relayed_total",
            "counter",
            "Bytes relayed by the built-in TURN server, both directions.",
            get(&self.turn_bytes_relayed),
        );
        metric(
            "relay_turn_dropped_over_cap_total",
            "counter",
            "Datagrams dropped by the per-allocation bandwidth cap (--turn-max-kbps).",
            get(&self.turn_dropped_over_cap),
        );
        out.push_str(
            "# HELP relay_turn_connections_total TURN connections over TCP and over TLS (UDP has none).\n",
        );
        out.push_str("# TYPE relay_turn_connections_total counter\n");
        for (transport, count) in [
            ("tcp", &self.turn_tcp_connections),
            ("tls", &self.turn_tls_connections),
        ] {
            let _ = writeln!(
                out,
                "relay_turn_connections_total{{transport=\"{transport}\"}} {}",
                get(count)
            );
        }
        out.push_str(
            "# HELP relay_turn_refused_total What the built-in TURN server refused, by reason.\n",
        );
        out.push_str("# TYPE relay_turn_refused_total counter\n");
        for (why, count) in Refusal::ALL.iter().zip(&self.turn_refused) {
            let _ = writeln!(
                out,
                "relay_turn_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                get(count)
            );
        }
        out.push_str("# HELP relay_errors_total Errors told to clients, by kind.\n");
        out.push_str("# TYPE relay_errors_total counter\n");
        for (kind, count) in ErrorKind::ALL.iter().zip(&self.errors) {
            let _ = writeln!(out, "relay_errors_total{{kind=\"{kind}\"}} {}", get(count));
        }
        out
    }
}
