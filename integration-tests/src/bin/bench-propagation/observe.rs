//! What the benchmark reads about a process: its memory and CPU time in `/proc`, and the
//! warnings and errors in the control plane's log.

use std::time::Duration;

use anyhow::Context as _;
use integration_tests::ControlPlane;

/// A process's resident memory and CPU time, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
pub(crate) struct ProcStats {
    pub(crate) rss_kib: u64,
    pub(crate) cpu: Duration,
}

impl ProcStats {
    /// `pid`: a process id or `self`; `ticks`: clock ticks per second.
    pub(crate) fn read(pid: &str, ticks: u64) -> anyhow::Result<ProcStats> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // After `pid (comm)` come fields 3 (state) and on: utime is field 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| -> anyhow::Result<u64> {
            fields
                .get(n - 3)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no field {n} in /proc/{pid}/stat"))
        };
        let cpu_ticks = field(14)? + field(15)?;
        Ok(ProcStats {
            rss_kib,
            cpu: Duration::from_secs_f64(cpu_ticks as f64 / ticks as f64),
        })
    }
}

/// `getconf CLK_TCK` (the crate forbids `unsafe`, so no `sysconf`), 100 if that fails.
pub(crate) fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Counts the control plane's warnings and errors, and shows a few.
pub(crate) fn report_log(cp: &ControlPlane) {
    let log = format!("{}\n{}", cp.process().stdout(), cp.process().stderr());
    let worrying: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    println!(
        "control plane log: {} warnings, {} errors{}",
        worrying.iter().filter(|l| l.contains(" WARN ")).count(),
        worrying.iter().filter(|l| l.contains(" ERROR ")).count(),
        if worrying.is_empty() {
            ""
        } else {
            ", the first ones:"
        }
    );
    for line in worrying.iter().take(5) {
        println!("  {line}");
    }
}
