//! What one run measured of each relay, and the side-by-side table with ratios to our relay.

use std::fmt::Write as _;

use crate::{
    dialect::RelayKind,
    load::{Accept, ClosedLoop, Faults, Idle, OpenLoop},
};

/// The phases a run measures (`--phases`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    /// Idle sockets on a fresh process.
    pub idle: bool,
    /// Closed loop.
    pub closed: bool,
    /// Open loop.
    pub open: bool,
    /// The ws accept burst.
    pub accept: bool,
    /// Our relay only: the same burst over wss, with full TLS handshakes and with resumed
    /// sessions.
    pub wss: bool,
}

impl Phases {
    /// Every phase's name on the command line, in the order they run.
    pub const NAMES: [&'static str; 5] = ["idle", "closed", "open", "accept", "wss"];

    /// Every phase.
    pub const ALL: Phases = Phases {
        idle: true,
        closed: true,
        open: true,
        accept: true,
        wss: true,
    };

    /// The phases named in `names` (see [`Phases::NAMES`]; `all` for every one).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Phases, String> {
        let mut phases = Phases {
            idle: false,
            closed: false,
            open: false,
            accept: false,
            wss: false,
        };
        for name in names {
            match name.as_ref().trim() {
                "all" => phases = Phases::ALL,
                "idle" => phases.idle = true,
                "closed" => phases.closed = true,
                "open" => phases.open = true,
                "accept" => phases.accept = true,
                "wss" => phases.wss = true,
                other => {
                    return Err(format!(
                        "unknown phase {other:?}; expected all or some of {}",
                        Phases::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(phases)
    }

    /// Whether a message phase runs (the pairs are connected only then).
    pub fn messages(self) -> bool {
        self.closed || self.open
    }

    /// The phases' names, for the header.
    pub fn names(self) -> Vec<&'static str> {
        let on = [self.idle, self.closed, self.open, self.accept, self.wss];
        Phases::NAMES
            .into_iter()
            .zip(on)
            .filter_map(|(name, on)| on.then_some(name))
            .collect()
    }
}

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
    /// Our relay only: the same burst over wss, with a full TLS handshake per socket.
    pub accept_wss: Option<Accept>,
    /// Our relay only: the same burst over wss, resuming TLS sessions where the client can.
    pub accept_wss_resumed: Option<Accept>,
    /// The phases that were to run.
    pub phases: Phases,
    /// Message faults over the message phases.
    pub faults: Option<Faults>,
    /// Phases that could not run, and why.
    pub failures: Vec<String>,
    /// What may have disturbed the figures (e.g. a busy machine).
    pub warnings: Vec<String>,
}

impl RelayReport {
    /// An empty report for `kind`, which is to run `phases`.
    pub fn new(kind: RelayKind, pairs: u32, window: usize, phases: Phases) -> RelayReport {
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
            accept_wss: None,
            accept_wss_resumed: None,
            phases,
            faults: None,
            failures: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Whether every phase that was to run ran, every message arrived once, in order, where it
    /// was sent, every idle socket stayed open, and every socket of the accept bursts opened.
    pub fn is_clean(&self) -> bool {
        let phases = self.phases;
        let idle_ok = self.idle.as_ref().is_some_and(|idle| {
            idle.steps
                .last()
                .is_some_and(|&(count, _, _)| idle.alive == count as u64)
        });
        let accepted = |a: &Option<Accept>| a.as_ref().is_some_and(|a| a.failed == 0);
        let wss = phases.wss && self.kind == RelayKind::Ours;
        self.failures.is_empty()
            && (!phases.messages() || self.faults.as_ref().is_some_and(Faults::is_clean))
            && (!phases.idle || idle_ok)
            && (!phases.accept || accepted(&self.accept))
            && (!wss || (accepted(&self.accept_wss) && accepted(&self.accept_wss_resumed)))
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
    // Rows of phases that did not run (`--phases`) say nothing.
    for row in rows
        .iter()
        .filter(|row| reports.iter().any(|r| (row.value)(r).is_some()))
    {
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
    if !reports.iter().any(|r| r.faults.is_some()) {
        return out;
    }
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
                f.others()
            ),
            None => "–".to_owned(),
        };
        let _ = write!(out, " {cell} |");
    }
    out.push('\n');
    out
}

/// Our relay's accept bursts side by side: plain ws, then wss with a full TLS handshake per
/// socket, then wss resuming sessions; each wss figure also as a ratio to the ws one. `None`
/// when our relay ran no wss burst.
pub fn https_table(report: &RelayReport, concurrency: usize) -> Option<String> {
    if report.accept_wss.is_none() && report.accept_wss_resumed.is_none() {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "HTTPS accept, {}: {concurrency} handshakes at a time, one burst after another on the same process.\n",
        report.kind.name(),
    );
    out.push_str(
        "| burst | opened | accepted/s ↑ | relay CPU µs per socket ↓ | relay core busy (%) | generator CPU µs per socket | generator core busy (%) | other processes (% of a core) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ws = report.accept.as_ref();
    let ratio = |value: f64, base: Option<f64>| match base {
        Some(base) if base > 0.0 && value.is_finite() => format!(" (×{:.2})", value / base),
        _ => String::new(),
    };
    let resumed = report.accept_wss_resumed.as_ref().map_or_else(
        || "wss, resumed TLS sessions".to_owned(),
        |a| {
            format!(
                "wss, resumed TLS sessions ({} resumed)",
                thousands(a.resumed)
            )
        },
    );
    let bursts = [
        ("ws".to_owned(), report.accept.as_ref(), None),
        (
            "wss, full TLS handshakes".to_owned(),
            report.accept_wss.as_ref(),
            ws,
        ),
        (resumed, report.accept_wss_resumed.as_ref(), ws),
    ];
    for (name, accept, base) in bursts {
        let Some(a) = accept else {
            let _ = writeln!(out, "| {name} | – | – | – | – | – | – | – |");
            continue;
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {}{} | {}{} | {:.0} | {} | {:.0} | {:.0} |",
            thousands(a.opened),
            thousands(a.conns_per_sec.round() as usize),
            ratio(a.conns_per_sec, base.map(|w| w.conns_per_sec)),
            format_value(a.cpu_us_per_conn, 0),
            ratio(a.cpu_us_per_conn, base.map(|w| w.cpu_us_per_conn)),
            a.relay_util * 100.0,
            format_value(a.generator_us_per_conn, 0),
            a.generator_util * 100.0,
            a.others_util * 100.0,
        );
    }
    out.push_str("\n(×N) is the wss figure divided by the ws one of the same run.\n");
    Some(out)
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
        for (burst, accept) in [
            ("the accept burst", &report.accept),
            ("the wss burst (full handshakes)", &report.accept_wss),
            (
                "the wss burst (resumed sessions)",
                &report.accept_wss_resumed,
            ),
        ] {
            if let Some(accept) = accept {
                if accept.failed > 0 {
                    let _ = writeln!(
                        out,
                        "- {name}: {} WebSockets failed to open in {burst}; the first: {}",
                        accept.failed,
                        accept.first_error.as_deref().unwrap_or("?")
                    );
                }
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
    use super::{thousands, Phases};

    #[test]
    fn phases_are_parsed() {
        assert_eq!(Phases::parse(&["all"]), Ok(Phases::ALL));
        let some = Phases::parse(&["accept", " wss"]).unwrap();
        assert!(some.accept && some.wss && !some.idle && !some.messages());
        assert_eq!(some.names(), ["accept", "wss"]);
        assert!(Phases::parse(&["tls"]).is_err());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
