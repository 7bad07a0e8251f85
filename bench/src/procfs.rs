//! What the kernel says about a process: CPU time used, resident memory, open-file limit.
//! Everything is read from `/proc`, so this works on Linux only.

use std::{fs, io, process::Command, time::Instant};

use anyhow::Context;

/// Clock ticks per second of the CPU times in `/proc/PID/stat` (`getconf CLK_TCK`, 100 on
/// every common Linux).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of every thread of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/PID/stat")))
    };
    Ok(field(14)? + field(15)?)
}

/// A process's CPU time at one moment.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    ticks: u64,
    at: Instant,
}

impl CpuSample {
    /// Samples `pid` now.
    pub fn take(pid: u32) -> anyhow::Result<CpuSample> {
        let ticks = cpu_ticks(pid).with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(CpuSample {
            ticks,
            at: Instant::now(),
        })
    }

    /// The process's CPU time at the sample, in clock ticks.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// CPU seconds used between `self` and the later `end`.
    pub fn cpu_secs(&self, end: &CpuSample, ticks_per_sec: u64) -> f64 {
        end.ticks.saturating_sub(self.ticks) as f64 / ticks_per_sec as f64
    }

    /// The share of one core used between `self` and `end` (1.0 = one core busy throughout).
    pub fn utilisation(&self, end: &CpuSample, ticks_per_sec: u64) -> f64 {
        let wall = end.at.duration_since(self.at).as_secs_f64();
        if wall > 0.0 {
            self.cpu_secs(end, ticks_per_sec) / wall
        } else {
            0.0
        }
    }
}

/// CPU time the whole machine spent busy so far (all CPUs: user, nice, system, irq, softirq,
/// steal), in clock ticks, from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> io::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    Ok([0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum())
}

fn status_field(pid: u32, name: &str) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
}

/// The resident set size of `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    status_field(pid, "VmRSS")
}

/// The soft limit on open files of `pid` (`Max open files` in `/proc/PID/limits`).
pub fn nofile_limit(pid: u32) -> io::Result<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .ok_or_else(|| io::Error::other("no Max open files in /proc/PID/limits"))?;
    let soft = line["Max open files".len()..].split_whitespace().next();
    match soft {
        Some("unlimited") => Ok(u64::MAX),
        Some(value) => value
            .parse()
            .map_err(|_| io::Error::other(format!("bad limit {value:?}"))),
        None => Err(io::Error::other("empty Max open files line")),
    }
}

/// The comm name of `pid` (`/proc/PID/comm`).
pub fn comm(pid: u32) -> io::Result<String> {
    Ok(fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim()
        .to_owned())
}

/// How many ephemeral ports `connect` may use (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_ports() -> Option<u64> {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    Some(high.saturating_sub(low) + 1)
}

/// The CPUs this process may run on (`Cpus_allowed_list` in `/proc/self/status`).
pub fn allowed_cpus() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
}
