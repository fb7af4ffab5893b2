//! The benchmark report: `target/bench/report.json` (every sweep and trial, the machine, the
//! commit, peers skipped and why, the decode/ring micro-benchmark figures when those groups ran)
//! and `report.md` (the same as tables, with ratios to the one-worker collector).

use std::{fmt::Write as _, path::Path, process::Command};

use serde::{Deserialize, Serialize};

use super::e2e::{LOSS_THRESHOLD, Sweep};

/// Report schema version; bump when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub generated_unix: u64,
    pub commit: String,
    pub command: String,
    pub machine: Machine,
    /// Pass mark of the sweeps (fraction of records).
    pub loss_threshold: f64,
    pub trial_secs: f64,
    pub bisection_steps: u32,
    /// Offered data datagrams/s of each sweep's first trial (`None`: unpaced).
    pub start_rate: Option<u64>,
    pub smoke: bool,
    pub sweeps: Vec<Sweep>,
    pub skipped: Vec<Skipped>,
    /// `target/bench/decode.json` and `ring.json` when those groups ran in this invocation.
    pub decode: Option<serde_json::Value>,
    pub ring: Option<serde_json::Value>,
    /// The template-memory run (`target/bench/templates.json`) when it ran in this invocation.
    #[serde(default)]
    pub templates: Option<super::templates::TemplateMemory>,
    /// Sender-scaling probes (e2e-udp, peers, all).
    #[serde(default)]
    pub senders: Vec<super::senders::SenderProbe>,
    /// The e2e-xdp run (`target/bench/xdp.json`) when it ran in this invocation.
    #[serde(default)]
    pub xdp: Option<super::xdp::XdpRun>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the run started (the machine is shared).
    pub loadavg_at_start: String,
}

/// A system that did not run, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skipped {
    pub system: String,
    pub reason: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split(':').nth(1))
                .unwrap_or("unknown")
                .trim()
                .to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// `git describe`-like short commit of the workspace, with `-dirty` when it has changes.
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// Check what a report must hold to be usable: every sweep has trials with consistent counts.
pub fn validate(report: &Report) -> anyhow::Result<()> {
    anyhow::ensure!(
        report.version == REPORT_VERSION,
        "report version {}",
        report.version
    );
    anyhow::ensure!(!report.sweeps.is_empty(), "report has no sweeps");
    for s in &report.sweeps {
        anyhow::ensure!(
            !s.trials.is_empty(),
            "{} {}: no trials",
            s.system,
            s.profile
        );
        anyhow::ensure!(
            s.max_lossless_datagrams_per_sec >= 0.0 && s.max_lossless_records_per_sec >= 0.0,
            "{} {}: negative rate",
            s.system,
            s.profile
        );
        for t in &s.trials {
            anyhow::ensure!(
                (0.0..=1.0).contains(&t.loss),
                "{} {}: loss {} out of range",
                s.system,
                s.profile,
                t.loss
            );
            anyhow::ensure!(
                t.sent_records == 0 || t.sent_datagrams > 0,
                "{} {}: records without datagrams",
                s.system,
                s.profile
            );
        }
    }
    Ok(())
}

/// The report as Markdown tables.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(md, "# collector benchmark report\n");
    let _ = writeln!(
        md,
        "- commit `{}`, command `{}`{}",
        report.commit,
        report.command,
        if report.smoke {
            " (smoke run: tiny rates, figures meaningless)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "- machine: {} CPUs ({}), kernel {}, load average at start `{}`",
        m.cpus, m.cpu_model, m.kernel, m.loadavg_at_start
    );
    let _ = writeln!(
        md,
        "- max lossless rate: largest achieved data-datagram rate with < {}% records missing; {} s trials, {} bisection steps after a first trial at {}\n",
        LOSS_THRESHOLD * 100.0,
        report.trial_secs,
        report.bisection_steps,
        report.start_rate.map_or_else(
            || "flowgen's top speed (unpaced)".to_string(),
            |r| format!("{r} datagrams/s")
        )
    );
    let mut profiles: Vec<&str> = report.sweeps.iter().map(|s| s.profile.as_str()).collect();
    profiles.dedup();
    for profile in profiles {
        let sweeps: Vec<&Sweep> = report
            .sweeps
            .iter()
            .filter(|s| s.profile == profile)
            .collect();
        let base = sweeps
            .iter()
            .find(|s| s.system == "collector-w1")
            .map(|s| s.max_lossless_records_per_sec)
            .filter(|r| *r > 0.0);
        let _ = writeln!(md, "## {profile}\n");
        let _ = writeln!(
            md,
            "| system | max lossless datagrams/s | records/s | vs collector-w1 | CPU-s / M records | peak RSS MiB | note |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|");
        for s in &sweeps {
            let ratio = base.map_or_else(
                || "–".to_string(),
                |b| format!("{:.2}×", s.max_lossless_records_per_sec / b),
            );
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {} | {} | {:.1} | {} |",
                s.system,
                s.max_lossless_datagrams_per_sec,
                s.max_lossless_records_per_sec,
                ratio,
                s.cpu_seconds_per_million_records
                    .map_or_else(|| "–".to_string(), |c| format!("{c:.2}")),
                s.peak_rss_kib as f64 / 1024.0,
                if s.sender_limited {
                    "sender-limited (unpaced flowgen lost nothing)"
                } else if s.max_lossless_datagrams_per_sec == 0.0 {
                    "no lossless trial"
                } else {
                    ""
                }
            );
        }
        md.push('\n');
        for s in &sweeps {
            if !s.bottleneck.is_empty() {
                let _ = writeln!(md, "- {}: {}", s.system, s.bottleneck);
            }
        }
        let _ = writeln!(md, "\n<details><summary>trials</summary>\n");
        let _ = writeln!(
            md,
            "| system | offered/s | sent/s | records sent | expected | kept | loss % | socket drops | CPU s |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &sweeps {
            for t in &s.trials {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} | {} | {:.4} | {} | {:.2} |",
                    s.system,
                    t.offered_rate
                        .map_or_else(|| "max".to_string(), |r| r.to_string()),
                    t.sent_rate,
                    t.sent_records,
                    t.records_expected,
                    t.records_kept,
                    t.loss * 100.0,
                    t.socket_drops
                        .map_or_else(|| "–".to_string(), |d| d.to_string()),
                    t.cpu_seconds
                );
            }
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(md, "## Skipped\n");
        for s in &report.skipped {
            let _ = writeln!(md, "- {}: {}", s.system, s.reason);
        }
        md.push('\n');
    }
    if !report.senders.is_empty() {
        md.push_str(&super::senders::markdown(&report.senders));
        md.push('\n');
    }
    if let Some(x) = &report.xdp {
        md.push_str(&super::xdp::markdown(x));
    }
    if let Some(t) = &report.templates {
        md.push_str(&super::templates::markdown(t));
        md.push('\n');
    }
    for (name, value) in [("decode", &report.decode), ("ring", &report.ring)] {
        if let Some(v) = value {
            let _ = writeln!(md, "## {name} (callgrind)\n\n```json\n{v}\n```\n");
        }
    }
    md
}
