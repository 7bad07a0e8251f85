//! What one run measured of each relay, and the side-by-side table with ratios to our relay.

use std::fmt::Write as _;

use crate::{
    dialect::RelayKind,
    load::{Accept, ClosedLoop, Faults, Idle, OpenLoop},
};

/// Everything measured of one relay in one run.
#[derive(Clone, Debug)]
pub struct RelayReport {
    /// Which relay.
    pub kind: RelayKind,
    /// Pairs used for the message phases.
    pub pairs: u32,
    /// Messages in flight per direction in closed loop.
    pub window: usize,
    /// The relay's open-file limit.
    pub nofile: u64,
    /// The mean frame length its peers sent, bytes.
    pub mean_frame: f64,
    /// Closed-loop throughput.
    pub closed: Option<ClosedLoop>,
    /// Open-loop latency and CPU.
    pub open: Option<OpenLoop>,
    /// Idle-socket memory.
    pub idle: Option<Idle>,
    /// Connection accept rate.
    pub accept: Option<Accept>,
    /// Message faults over the message phases.
    pub faults: Option<Faults>,
    /// Phases that could not run, and why.
    pub failures: Vec<String>,
    /// What may have disturbed the figures (e.g. a busy machine).
    pub warnings: Vec<String>,
}

impl RelayReport {
    /// An empty report for `kind`.
    pub fn new(kind: RelayKind, pairs: u32, window: usize) -> RelayReport {
        RelayReport {
            kind,
            pairs,
            window,
            nofile: 0,
            mean_frame: 0.0,
            closed: None,
            open: None,
            idle: None,
            accept: None,
            faults: None,
            failures: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Whether every phase ran, and every message arrived once, in order, where it was sent,
    /// and every idle socket stayed open.
    pub fn is_clean(&self) -> bool {
        let idle_ok = self.idle.as_ref().is_some_and(|idle| {
            idle.steps
                .last()
                .is_some_and(|&(count, _, _)| idle.alive == count as u64)
        });
        self.failures.is_empty()
            && self.faults.as_ref().is_some_and(Faults::is_clean)
            && idle_ok
            && self.accept.as_ref().is_some_and(|a| a.failed == 0)
    }

    fn idle_step(&self, index: usize) -> Option<f64> {
        self.idle
            .as_ref()
            .and_then(|idle| idle.steps.get(index))
            .map(|&(_, _, per_socket)| per_socket)
    }
}

/// Which way a figure is better, for reading its ratio; shown as an arrow after the name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
    /// A figure that explains the others (e.g. how busy a core was).
    Neither,
}

impl Better {
    fn arrow(self) -> &'static str {
        match self {
            Better::Lower => " ↓",
            Better::Higher => " ↑",
            Better::Neither => "",
        }
    }
}

/// Reads one figure out of a report, if that phase ran.
type Figure = Box<dyn Fn(&RelayReport) -> Option<f64>>;

struct Row {
    name: String,
    better: Better,
    value: Figure,
    decimals: usize,
}

fn row(
    name: impl Into<String>,
    better: Better,
    decimals: usize,
    value: impl Fn(&RelayReport) -> Option<f64> + 'static,
) -> Row {
    Row {
        name: name.into(),
        better,
        value: Box::new(value),
        decimals,
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// The table, in Markdown: one column per relay, each figure followed by its ratio to our
/// relay's (`×2.00` = twice ours, whichever way is better for that row).
pub fn table(reports: &[RelayReport], rate: f64, idle_counts: &[usize], accepts: usize) -> String {
    let rate = format!("{}k msg/s", rate / 1000.0);
    let mut rows = vec![
        row(
            format!("**relay CPU µs per delivered msg @ {rate}** (headline)"),
            Better::Lower,
            2,
            |r| r.open.as_ref().and_then(|o| finite(o.cpu_us_per_msg)),
        ),
        row(
            "relay CPU µs per delivered msg, closed loop",
            Better::Lower,
            2,
            |r| r.closed.as_ref().and_then(|c| finite(c.cpu_us_per_msg)),
        ),
        row("delivered msg/s, closed loop", Better::Higher, 0, |r| {
            r.closed.as_ref().map(|c| c.msgs_per_sec)
        }),
        row(
            "relay core busy, closed loop (%)",
            Better::Neither,
            0,
            |r| r.closed.as_ref().map(|c| c.relay_util * 100.0),
        ),
        row(
            "generator core busy, closed loop (%)",
            Better::Neither,
            0,
            |r| r.closed.as_ref().map(|c| c.generator_util * 100.0),
        ),
        row(
            "other processes' CPU, closed loop (% of a core)",
            Better::Neither,
            0,
            |r| r.closed.as_ref().map(|c| c.others_util * 100.0),
        ),
        row(
            format!("latency p50 @ {rate} (µs)"),
            Better::Lower,
            0,
            |r| r.open.as_ref().and_then(|o| finite(o.p50_us)),
        ),
        row(
            format!("latency p99 @ {rate} (µs)"),
            Better::Lower,
            0,
            |r| r.open.as_ref().and_then(|o| finite(o.p99_us)),
        ),
        row(
            format!("latency p99.9 @ {rate} (µs)"),
            Better::Lower,
            0,
            |r| r.open.as_ref().and_then(|o| finite(o.p999_us)),
        ),
        row(
            format!("latency max @ {rate} (µs)"),
            Better::Lower,
            0,
            |r| r.open.as_ref().map(|o| o.max_us),
        ),
        row(
            format!("generator send lateness p99 @ {rate} (µs)"),
            Better::Neither,
            0,
            |r| r.open.as_ref().and_then(|o| finite(o.send_lag_us[1])),
        ),
        row(
            format!("generator send lateness p99.9 @ {rate} (µs)"),
            Better::Neither,
            0,
            |r| r.open.as_ref().and_then(|o| finite(o.send_lag_us[2])),
        ),
        row(
            format!("relay core busy @ {rate} (%)"),
            Better::Neither,
            0,
            |r| r.open.as_ref().map(|o| o.relay_util * 100.0),
        ),
        row(
            format!("other processes' CPU @ {rate} (% of a core)"),
            Better::Neither,
            0,
            |r| r.open.as_ref().map(|o| o.others_util * 100.0),
        ),
    ];
    for (index, &count) in idle_counts.iter().enumerate() {
        rows.push(row(
            format!("idle RSS per socket @ {} sockets (KiB)", thousands(count)),
            Better::Lower,
            1,
            move |r| r.idle_step(index),
        ));
    }
    rows.extend([
        row("RSS before the idle sockets (MiB)", Better::Lower, 1, |r| {
            r.idle.as_ref().map(|i| i.base_kib as f64 / 1024.0)
        }),
        row(
            format!(
                "WebSockets accepted per second ({} opened)",
                thousands(accepts)
            ),
            Better::Higher,
            0,
            |r| r.accept.as_ref().map(|a| a.conns_per_sec),
        ),
        row(
            "relay CPU µs per accepted WebSocket",
            Better::Lower,
            0,
            |r| r.accept.as_ref().and_then(|a| finite(a.cpu_us_per_conn)),
        ),
        row(
            "other processes' CPU, accept burst (% of a core)",
            Better::Neither,
            0,
            |r| r.accept.as_ref().map(|a| a.others_util * 100.0),
        ),
    ]);

    let ours = reports.iter().find(|r| r.kind == RelayKind::Ours);
    let mut out = String::new();
    let _ = write!(out, "| |");
    for report in reports {
        let _ = write!(out, " {} |", report.kind.name());
    }
    out.push_str("\n|---|");
    for _ in reports {
        out.push_str("---:|");
    }
    out.push('\n');
    for row in &rows {
        let _ = write!(out, "| {}{} |", row.name, row.better.arrow());
        let base = ours.and_then(|o| (row.value)(o));
        for report in reports {
            let cell = match (row.value)(report) {
                None => "–".to_owned(),
                Some(value) => {
                    let text = format_value(value, row.decimals);
                    match base {
                        Some(base)
                            if report.kind != RelayKind::Ours
                                && base != 0.0
                                && row.better != Better::Neither =>
                        {
                            format!("{text} (×{:.2})", value / base)
                        }
                        _ => text,
                    }
                }
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    // Rows that are words, not figures.
    let _ = write!(out, "| pairs × window per direction |");
    for report in reports {
        let _ = write!(out, " {} × {} |", report.pairs, report.window);
    }
    out.push('\n');
    let _ = write!(out, "| mean frame (bytes) |");
    for report in reports {
        let _ = write!(out, " {:.0} |", report.mean_frame);
    }
    out.push('\n');
    let _ = write!(
        out,
        "| sent / lost / misrouted / out of order / other faults |"
    );
    for report in reports {
        let cell = match &report.faults {
            Some(f) => format!(
                "{} / {} / {} / {} / {}",
                thousands(f.sent as usize),
                f.lost,
                f.misrouted,
                f.out_of_order,
                f.unexpected + f.verify_failed + f.send_failed + f.closed_early
            ),
            None => "–".to_owned(),
        };
        let _ = write!(out, " {cell} |");
    }
    out.push('\n');
    out
}

fn format_value(value: f64, decimals: usize) -> String {
    if decimals == 0 {
        thousands(value.round() as usize)
    } else {
        format!("{value:.decimals$}")
    }
}

/// `12345` as `12,345`.
pub fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The details under the table: per relay, what failed and the first errors seen.
pub fn notes(reports: &[RelayReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let name = report.kind.name();
        for failure in report.failures.iter().chain(&report.warnings) {
            let _ = writeln!(out, "- {name}: {failure}");
        }
        if let Some(faults) = &report.faults {
            for error in &faults.errors {
                let _ = writeln!(out, "- {name}: {error}");
            }
        }
        if let Some(idle) = &report.idle {
            if let Some(&(count, _, _)) = idle.steps.last() {
                if idle.alive != count as u64 {
                    let _ = writeln!(
                        out,
                        "- {name}: only {} of {count} idle sockets were still open",
                        idle.alive
                    );
                }
            }
        }
        if let Some(accept) = &report.accept {
            if accept.failed > 0 {
                let _ = writeln!(
                    out,
                    "- {name}: {} WebSockets failed to open in the accept burst",
                    accept.failed
                );
            }
        }
        if let Some(open) = &report.open {
            let [p50, p99, p999, max] = open.send_lag_us;
            let _ = writeln!(
                out,
                "- {name}: open loop: {} latencies; the generator sent {p50:.0} µs late at the median, {p99:.0} µs at p99, {p999:.0} µs at p99.9, {max:.0} µs at worst (counted in the latencies)",
                open.samples
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
