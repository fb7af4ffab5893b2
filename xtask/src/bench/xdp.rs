//! `cargo xtask bench e2e-xdp` (issue 7): the collector on one end of a veth pair in a network
//! namespace of its own (pinned to core 0), `flowgen` in a second namespace on the other end
//! (pinned to core 1), and one bisection of the offered rate per mode, all in one run:
//!
//! - (a) `drop`: `collector run --xdp IF --xdp-mode drop`, the XDP program dropping every matched
//!   datagram (the ceiling); loss = datagrams sent but not counted as `drop_mode_dropped`;
//! - (b) `afxdp` and (c) `perf`: `--xdp-mode afxdp|perf`, records counted from the collector's
//!   metrics like the UDP mode, and the program's `redirected` / `perf_copied` counters telling
//!   how many datagrams took the fast path (the collector keeps UDP sockets on the same ports, the
//!   slow path). A mode whose collector decodes nothing from a 1,000-datagram probe, or nothing
//!   through the fast path, is reported as not available with what the program counted, never
//!   with a figure;
//! - (d) `udp`: the collector on UDP sockets on the same veth.
//!
//! Results are ratios of each mode's max lossless datagram rate to (a). On a veth the receiving
//! end's XDP program runs in the sender's softirq, on the sender's core: the ceiling is what one
//! sender core can push through veth and XDP. Namespaces (unique names) are always removed; the
//! host's interfaces are never touched. Without root (CAP_NET_ADMIN, CAP_BPF) the run is skipped
//! with the reason.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::e2e::{
    self, Binaries, LOSS_THRESHOLD, SweepConfig, Trial, bisect, has_program, metric_sum, shortfall,
};

/// Collector-side and sender-side addresses (TEST-NET-1, inside the namespaces only).
const COLLECTOR_ADDR: &str = "192.0.2.1";
const SENDER_ADDR: &str = "192.0.2.2";
/// The export port (NetFlow).
const PORT: u16 = 2055;

/// One measured configuration: a label, the collector's `--xdp-mode` (`None`: UDP sockets) and
/// extra `collector run` arguments.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub label: &'static str,
    pub xdp_mode: Option<&'static str>,
    pub args: &'static [&'static str],
    /// Settings of the collector's veth end (`/sys/class/net/IF/NAME`, value) for this mode,
    /// put back to 0 after it.
    pub iface: &'static [(&'static str, &'static str)],
}

/// The modes, in report order; (a) first, the others are ratios to it. Beside AF_XDP as
/// configured by default, the variants the defaults were chosen against, measured in the same
/// run: the former 8,192-entry rings, a worker spinning 200 µs on its rings before sleeping, and
/// preferred busy polling (with the veth's NAPI deferral set for it).
pub const MODES: [Mode; 7] = [
    Mode {
        label: "drop",
        xdp_mode: Some("drop"),
        args: &[],
        iface: &[],
    },
    Mode {
        label: "afxdp",
        xdp_mode: Some("afxdp"),
        args: &[],
        iface: &[],
    },
    Mode {
        label: "afxdp-ring8k",
        xdp_mode: Some("afxdp"),
        args: &["--xsk-ring-size", "8192"],
        iface: &[],
    },
    Mode {
        label: "afxdp-spin",
        xdp_mode: Some("afxdp"),
        args: &["--xdp-spin-us", "200"],
        iface: &[],
    },
    Mode {
        label: "afxdp-busy-poll",
        xdp_mode: Some("afxdp"),
        args: &["--xdp-busy-poll"],
        iface: &[
            ("napi_defer_hard_irqs", "2"),
            ("gro_flush_timeout", "200000"),
        ],
    },
    Mode {
        label: "perf",
        xdp_mode: Some("perf"),
        args: &[],
        iface: &[],
    },
    Mode {
        label: "udp",
        xdp_mode: None,
        args: &[],
        iface: &[],
    },
];

/// The modes to run: all of [`MODES`], or those named in `XDP_BENCH_MODES` (comma-separated
/// labels, e.g. `drop,afxdp,afxdp-spin`; `drop` is always run first, the ratios need it).
pub fn selected_modes(filter: Option<&str>) -> anyhow::Result<Vec<Mode>> {
    let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(MODES.to_vec());
    };
    let wanted: Vec<&str> = filter.split(',').map(str::trim).collect();
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !MODES.iter().any(|m| m.label == **w))
    {
        bail!(
            "XDP_BENCH_MODES: unknown mode {unknown:?} (modes: {})",
            MODES.map(|m| m.label).join(", ")
        );
    }
    Ok(MODES
        .iter()
        .filter(|m| m.label == "drop" || wanted.contains(&m.label))
        .copied()
        .collect())
}

/// One mode's bisection, or why it has no figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModeResult {
    pub mode: String,
    /// Whether the mode could be measured; otherwise `reason` says why.
    pub available: bool,
    pub reason: Option<String>,
    /// Largest achieved data datagrams/s with loss under the threshold (0 when none).
    pub max_lossless_datagrams_per_sec: f64,
    pub max_lossless_records_per_sec: f64,
    /// The first, unpaced trial was lossless: flowgen's top speed, not the mode, was the limit.
    pub sender_limited: bool,
    /// `max_lossless_datagrams_per_sec` over the drop mode's.
    pub ratio_to_drop: Option<f64>,
    /// What limited the first trial ([`e2e::limit`]) and the cores' worth of CPU flowgen used.
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub sender_busy_cores: Option<f64>,
    /// Of the datagrams sent over all trials, the share the XDP program steered to the mode's
    /// fast path (the rest reached the collector's UDP sockets, the slow path).
    #[serde(default)]
    pub fast_path_share: Option<f64>,
    pub trials: Vec<Trial>,
    /// Per trial (same order as `trials`): the AF_XDP sockets' ring counters and the CPUs' use.
    #[serde(default)]
    pub details: Vec<TrialDetail>,
}

/// What [`Trial`] does not hold: where the time went and where frames were lost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialDetail {
    /// AF_XDP sockets: times the RX ring was full, the fill ring empty, and frames the kernel
    /// dropped for the sockets (deltas over the trial; 0 in other modes).
    pub xsk_rx_ring_full: u64,
    pub xsk_fill_ring_empty: u64,
    pub xsk_rx_dropped: u64,
    /// Each CPU's use while flowgen ran (from /proc/stat, every process on it).
    pub cpus: Vec<CpuUse>,
}

/// One CPU's share of a time span spent busy (anything but idle and iowait), and in softirq
/// (where veth's NAPI runs the XDP program and the AF_XDP copy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub cpu: usize,
    pub busy: f64,
    pub softirq: f64,
    /// NET_RX softirqs the CPU ran (/proc/softirqs): where veth's NAPI ran, unless a worker
    /// busy-polled it (which runs outside softirq).
    #[serde(default)]
    pub net_rx: u64,
}

/// The NET_RX line of /proc/softirqs, one count per CPU.
pub fn parse_net_rx(text: &str) -> Vec<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("NET_RX:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Per-CPU jiffies (/proc/stat) and NET_RX softirq counts (/proc/softirqs) at one moment.
struct CpuSnapshot {
    ticks: Vec<(usize, u64, u64, u64)>,
    net_rx: Vec<u64>,
}

impl CpuSnapshot {
    fn take() -> CpuSnapshot {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        CpuSnapshot {
            ticks: parse_cpu_ticks(&read("/proc/stat")),
            net_rx: parse_net_rx(&read("/proc/softirqs")),
        }
    }
}

/// The `cpuN` lines of /proc/stat as (N, busy, softirq, total) jiffies.
pub fn parse_cpu_ticks(text: &str) -> Vec<(usize, u64, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal (guest time is within user).
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3)? + v.get(4).unwrap_or(&0);
            Some((cpu, total - idle, *v.get(6).unwrap_or(&0), total))
        })
        .collect()
}

/// CPU use between two snapshots.
fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot) -> Vec<CpuUse> {
    after
        .ticks
        .iter()
        .filter_map(|&(cpu, busy, softirq, total)| {
            let &(_, b0, s0, t0) = before.ticks.iter().find(|b| b.0 == cpu)?;
            let span = total.saturating_sub(t0).max(1) as f64;
            let net_rx = |counts: &Vec<u64>| counts.get(cpu).copied().unwrap_or(0);
            Some(CpuUse {
                cpu,
                busy: busy.saturating_sub(b0) as f64 / span,
                softirq: softirq.saturating_sub(s0) as f64 / span,
                net_rx: net_rx(&after.net_rx).saturating_sub(net_rx(&before.net_rx)),
            })
        })
        .collect()
}

/// The whole e2e-xdp run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct XdpRun {
    pub profile: String,
    /// XDP attach mode used (driver: veth's native XDP).
    pub attach: String,
    pub sender: String,
    pub trial_secs: f64,
    pub bisection_steps: u32,
    /// Set when the whole run was skipped (no privileges, no `ip`, ...).
    pub skipped: Option<String>,
    pub modes: Vec<ModeResult>,
    /// Unpaced trials of the ceiling and of AF_XDP, alternated ([`PAIRS`] pairs), each with a
    /// fresh collector: the two figures of a pair are seconds apart, so a change in the other
    /// users' load moves both.
    #[serde(default)]
    pub pairs: Vec<PairedTrial>,
}

/// Pairs of alternated unpaced trials (drop, then AF_XDP) after the bisections.
pub const PAIRS: usize = 3;

/// One pair: the XDP_DROP ceiling and AF_XDP, both unpaced, one right after the other.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedTrial {
    pub drop_datagrams_per_sec: f64,
    pub afxdp_datagrams_per_sec: f64,
    /// AF_XDP's loss in its unpaced trial (under the threshold: the rate is lossless).
    pub afxdp_loss: f64,
    /// What the sender's core did in each trial (flowgen, and the whole CPU).
    pub drop_cpus: Vec<CpuUse>,
    pub afxdp_cpus: Vec<CpuUse>,
    pub drop_sender_busy: f64,
    pub afxdp_sender_busy: f64,
}

impl PairedTrial {
    /// AF_XDP's unpaced rate over the ceiling's, lossless or not: how much slower the sender is
    /// when the frames go to AF_XDP.
    pub fn sent_ratio(&self) -> f64 {
        if self.drop_datagrams_per_sec > 0.0 {
            self.afxdp_datagrams_per_sec / self.drop_datagrams_per_sec
        } else {
            0.0
        }
    }

    /// AF_XDP's unpaced rate over the ceiling's, when AF_XDP lost nothing (an unpaced lossless
    /// trial is the sender's top speed in that mode, so also the mode's lossless rate).
    pub fn ratio(&self) -> Option<f64> {
        (self.afxdp_loss < LOSS_THRESHOLD && self.drop_datagrams_per_sec > 0.0)
            .then(|| self.afxdp_datagrams_per_sec / self.drop_datagrams_per_sec)
    }
}

/// The median of sorted, non-empty `values`.
fn median(values: &[f64]) -> f64 {
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// [`PAIRS`] alternated unpaced trials of `drop` and `afxdp`.
fn paired_trials(
    bins: &Binaries,
    pair: &VethPair,
    profile: &str,
    config: &SweepConfig,
    scratch: &Path,
) -> anyhow::Result<Vec<PairedTrial>> {
    let mode = |label| MODES.iter().find(|m| m.label == label).copied();
    let (Some(ceiling), Some(afxdp)) = (mode("drop"), mode("afxdp")) else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for _ in 0..PAIRS {
        let one = |mode: Mode| -> anyhow::Result<(Trial, TrialDetail)> {
            let dir = scratch.join(format!("xdp-pair-{}", mode.label));
            let _ = std::fs::remove_dir_all(&dir);
            let collector = ModeCollector::start(bins, pair, mode, config.receiver_core, &dir)?;
            let result = trial(bins, pair, &collector, profile, None, config, &dir);
            drop(collector);
            let _ = std::fs::remove_dir_all(&dir);
            result
        };
        let (d, d_detail) = one(ceiling)?;
        let (a, a_detail) = one(afxdp)?;
        pairs.push(PairedTrial {
            drop_datagrams_per_sec: d.sent_rate,
            afxdp_datagrams_per_sec: a.sent_rate,
            afxdp_loss: a.loss,
            drop_cpus: d_detail.cpus,
            afxdp_cpus: a_detail.cpus,
            drop_sender_busy: d.sender_busy_cores(),
            afxdp_sender_busy: a.sender_busy_cores(),
        });
    }
    Ok(pairs)
}

/// Two namespaces and the veth between them (names carry the pid); deleted on drop.
struct VethPair {
    collector_ns: String,
    sender_ns: String,
    collector_if: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl VethPair {
    fn create() -> anyhow::Result<VethPair> {
        let tag = format!("fgx{}", std::process::id());
        let pair = VethPair {
            collector_ns: format!("{tag}c"),
            sender_ns: format!("{tag}s"),
            collector_if: format!("{tag}c"),
        };
        let sender_if = format!("{tag}s");
        // From here on, drop removes whatever exists.
        ip(&["netns", "add", &pair.collector_ns])?;
        ip(&["netns", "add", &pair.sender_ns])?;
        ip(&[
            "link",
            "add",
            &pair.collector_if,
            "netns",
            &pair.collector_ns,
            "type",
            "veth",
            "peer",
            "name",
            &sender_if,
            "netns",
            &pair.sender_ns,
        ])?;
        for (ns, iface, addr) in [
            (&pair.collector_ns, &pair.collector_if, COLLECTOR_ADDR),
            (&pair.sender_ns, &sender_if, SENDER_ADDR),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", iface])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", iface, "up"])?;
        }
        Ok(pair)
    }
}

impl VethPair {
    /// Write `settings` (`/sys/class/net/IF/NAME`, value) of the collector's end, inside its
    /// namespace.
    fn set_iface(&self, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        for (name, value) in settings {
            let path = format!("/sys/class/net/{}/{name}", self.collector_if);
            let out = Command::new("ip")
                .args(["netns", "exec", &self.collector_ns, "sh", "-c"])
                .arg(format!("echo {value} > {path}"))
                .output()
                .context("running ip netns exec")?;
            anyhow::ensure!(
                out.status.success(),
                "setting {path} to {value}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it the other end.
        for ns in [&self.collector_ns, &self.sender_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Niceness of the collector and flowgen: on a machine shared with other users' builds, the two
/// measured processes get most of their cores whatever the others run, in every mode alike
/// (without it, a spinning worker pushed the other users' work onto the sender's core and the
/// ratios followed the neighbours' load, not the modes).
const NICE: &str = "-20";

/// `program` run inside namespace `ns` at [`NICE`], under `taskset -c CORES` when cores are
/// given.
fn in_netns(ns: &str, program: &Path, cores: &[usize]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    if has_program("nice") {
        c.args(["nice", "-n", NICE]);
    }
    if !cores.is_empty() && has_program("taskset") {
        let list = cores
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        c.args(["taskset", "-c", &list]);
    }
    c.arg(program);
    c
}

/// Why this machine cannot run the XDP benchmark, if it cannot.
fn missing_prerequisite() -> Option<String> {
    for program in ["ip", "curl"] {
        if !has_program(program) {
            return Some(format!("`{program}` is not installed"));
        }
    }
    // Effective capabilities: CAP_NET_ADMIN (12) for namespaces and links, CAP_BPF (39) and
    // CAP_PERFMON (38) or CAP_SYS_ADMIN (21) for the XDP program.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1 << bit) != 0;
    if !has(12) || !(has(39) || has(21)) {
        return Some("needs root (CAP_NET_ADMIN and CAP_BPF) for namespaces and XDP".into());
    }
    None
}

/// A collector running in the collector namespace in one mode.
struct ModeCollector {
    child: Child,
    dir: PathBuf,
    counters_file: Option<PathBuf>,
    metrics_port: u16,
    ns: String,
    mode: Mode,
}

impl ModeCollector {
    fn start(
        bins: &Binaries,
        pair: &VethPair,
        mode: Mode,
        core: Option<usize>,
        dir: &Path,
    ) -> anyhow::Result<ModeCollector> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("collector.log"))?;
        // A fixed port inside the fresh namespace: nothing else listens there.
        let metrics_port = 9742;
        let mut command = in_netns(&pair.collector_ns, &bins.collector, core.as_slice());
        command.arg("run");
        let counters_file = mode.xdp_mode.map(|_| dir.join("xdp-counters"));
        match (&counters_file, mode.xdp_mode) {
            (Some(file), Some(xdp_mode)) => {
                command
                    .args(["--xdp", &pair.collector_if, "--xdp-attach", "driver"])
                    .args(["--xdp-mode", xdp_mode, "--report-interval", "1"])
                    .args(["--listen", &format!("0.0.0.0:{PORT}")])
                    .arg("--counters-file")
                    .arg(file);
            }
            _ => {
                command.args(["--listen", &format!("{COLLECTOR_ADDR}:{PORT}")]);
            }
        }
        command
            .args(mode.args)
            .args(["--workers", "1", "--ring-dir"])
            .arg(dir.join("rings"))
            .args(["--ring-size", "16MiB"])
            .args(["--metrics", &format!("127.0.0.1:{metrics_port}")]);
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting the collector in its namespace")?;
        let mut collector = ModeCollector {
            child,
            dir: dir.to_path_buf(),
            counters_file,
            metrics_port,
            ns: pair.collector_ns.clone(),
            mode,
        };
        collector.wait_ready()?;
        Ok(collector)
    }

    /// Attached (the counters file is written) or, in UDP mode, metrics answering.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the collector exited ({status}): {}",
                    last_lines(&self.dir.join("collector.log"), 5)
                );
            }
            let ready = match &self.counters_file {
                Some(file) => file.is_file(),
                None => self.scrape().is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the collector was not ready within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET /metrics inside the namespace (`curl`).
    fn scrape(&self) -> anyhow::Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .output()
            .context("running curl in the collector namespace")?;
        anyhow::ensure!(out.status.success(), "no metrics endpoint answers");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The XDP program's counters (`name=value` pairs of the counters file).
    fn counters(&self) -> Vec<(String, u64)> {
        self.counters_file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse_counters(&t))
            .unwrap_or_default()
    }

    /// What the mode counts after a trial, once it stopped changing.
    fn settled(&self) -> Sample {
        let mut last: Option<Sample> = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The counters file is rewritten every second.
            let wait = if self.counters_file.is_some() {
                1_200
            } else {
                300
            };
            std::thread::sleep(Duration::from_millis(wait));
            let now = self.sample();
            if last.as_ref() == Some(&now) || Instant::now() > deadline {
                return now;
            }
            last = Some(now);
        }
    }

    fn sample(&self) -> Sample {
        let text = self.scrape().ok();
        let metric = |name| text.as_deref().map(|t| metric_sum(t, name));
        Sample {
            counters: self.counters(),
            records: metric("collector_records_decoded_total"),
            datagrams: metric("collector_datagrams_received_total"),
            socket_drops: metric("collector_socket_drops_total"),
            xsk: [
                "collector_xsk_rx_ring_full_total",
                "collector_xsk_fill_ring_empty_total",
                "collector_xsk_rx_dropped_total",
            ]
            .map(|name| metric(name).unwrap_or(0)),
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ModeCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a collector counted at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    counters: Vec<(String, u64)>,
    records: Option<u64>,
    datagrams: Option<u64>,
    socket_drops: Option<u64>,
    /// AF_XDP rx_ring_full, fill_ring_empty, rx_dropped (summed over the queues).
    xsk: [u64; 3],
}

impl Sample {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

/// `name=value` pairs of a counters line.
pub fn parse_counters(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// One trial at `rate` against a collector running in its mode: counts are deltas.
fn trial(
    bins: &Binaries,
    pair: &VethPair,
    collector: &ModeCollector,
    profile: &str,
    rate: Option<u64>,
    config: &SweepConfig,
    dir: &Path,
) -> anyhow::Result<(Trial, TrialDetail)> {
    let mode = collector.mode.xdp_mode.unwrap_or("udp");
    let label = collector.mode.label;
    let before = collector.settled();
    let (cpu_before, _) = e2e::process_cost(collector.child.id())?;
    let mut command = in_netns(&pair.sender_ns, &bins.flowgen, &config.sender_cores);
    command.args(["--source-ip", SENDER_ADDR]);
    let to = format!("{COLLECTOR_ADDR}:{PORT}");
    let cpus_before = CpuSnapshot::take();
    let manifest = e2e::drive_with(command, profile, &to, rate, config, dir)?;
    let cpus = cpu_use(&cpus_before, &CpuSnapshot::take());
    anyhow::ensure!(
        manifest.totals.datagrams > 0,
        "flowgen sent nothing ({} data datagrams built, all refused)",
        manifest.totals.data_datagrams
    );
    let after = collector.settled();
    let (cpu_after, peak_rss_kib) = e2e::process_cost(collector.child.id())?;
    let delta = |f: fn(&Sample) -> Option<u64>| Some(f(&after)?.saturating_sub(f(&before)?));
    let counted = |name: &str| after.counter(name).saturating_sub(before.counter(name));
    let xdp_fast_path = match mode {
        "drop" => Some(counted("drop_mode_dropped")),
        "afxdp" => Some(counted("redirected")),
        "perf" => Some(counted("perf_copied")),
        _ => None,
    };
    let sent = &manifest.totals;
    let (records_kept, datagrams_received, socket_drops, loss) = if mode == "drop" {
        let dropped = after
            .counter("drop_mode_dropped")
            .saturating_sub(before.counter("drop_mode_dropped"));
        (0, Some(dropped), None, shortfall(sent.datagrams, dropped))
    } else {
        let records = delta(|s| s.records).unwrap_or(0);
        let datagrams = delta(|s| s.datagrams).unwrap_or(0);
        let loss = shortfall(sent.records, records).max(shortfall(sent.datagrams, datagrams));
        (records, Some(datagrams), delta(|s| s.socket_drops), loss)
    };
    let t = Trial {
        offered_rate: rate,
        sent_rate: manifest.sent_rate(),
        sent_datagrams: sent.datagrams,
        sent_records: sent.records,
        records_expected: if mode == "drop" { 0 } else { sent.records },
        records_kept,
        datagrams_received,
        socket_drops,
        loss,
        cpu_seconds: (cpu_after - cpu_before).max(0.0),
        peak_rss_kib,
        sender_cpu_seconds: manifest.cpu_secs,
        sender_secs: manifest.elapsed_secs,
        xdp_fast_path,
    };
    let xsk = |i: usize| after.xsk[i].saturating_sub(before.xsk[i]);
    let detail = TrialDetail {
        xsk_rx_ring_full: xsk(0),
        xsk_fill_ring_empty: xsk(1),
        xsk_rx_dropped: xsk(2),
        cpus,
    };
    let cores = detail
        .cpus
        .iter()
        .map(|c| {
            format!(
                "cpu{} {:.0}% ({:.0}% softirq, {} NET_RX)",
                c.cpu,
                c.busy * 100.0,
                c.softirq * 100.0,
                c.net_rx
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "bench: xdp {label:<11} offered {:>9} sent {:>10.0} dgram/s  kept {:>9} of {:>9} datagrams  loss {:>8.4}%  sender {:.2} cores  {cores}{}",
        rate.map_or_else(|| "max".to_string(), |r| r.to_string()),
        t.sent_rate,
        t.datagrams_received.unwrap_or(0),
        t.sent_datagrams,
        t.loss * 100.0,
        t.sender_busy_cores(),
        if mode == "afxdp" {
            format!(
                "  xsk rx_ring_full {} fill_ring_empty {} rx_dropped {}",
                detail.xsk_rx_ring_full, detail.xsk_fill_ring_empty, detail.xsk_rx_dropped
            )
        } else {
            String::new()
        }
    );
    Ok((t, detail))
}

/// Run every mode; a mode that cannot run is reported with its reason.
pub fn run(
    bins: &Binaries,
    profile: &str,
    config: &SweepConfig,
    scratch: &Path,
) -> anyhow::Result<XdpRun> {
    let modes = selected_modes(std::env::var("XDP_BENCH_MODES").ok().as_deref())?;
    let mut run = XdpRun {
        profile: profile.into(),
        attach: "driver".into(),
        sender: format!(
            "flowgen, {} thread(s), {} exporters, cores {:?}",
            config.sender_threads, config.exporters, config.sender_cores
        ),
        trial_secs: config.trial_secs,
        bisection_steps: config.steps,
        skipped: None,
        modes: Vec::new(),
        pairs: Vec::new(),
    };
    if let Some(reason) = missing_prerequisite() {
        println!("bench: e2e-xdp SKIPPED: {reason}");
        run.skipped = Some(reason);
        return Ok(run);
    }
    let pair = match VethPair::create() {
        Ok(pair) => pair,
        Err(err) => {
            let reason = format!("cannot create the namespaces and veth: {err:#}");
            println!("bench: e2e-xdp SKIPPED: {reason}");
            run.skipped = Some(reason);
            return Ok(run);
        }
    };
    for mode in &modes {
        let dir = scratch.join(format!("xdp-{}", mode.label));
        let _ = std::fs::remove_dir_all(&dir);
        let result = pair
            .set_iface(mode.iface)
            .and_then(|()| measure_mode(bins, &pair, *mode, profile, config, &dir));
        let reset: Vec<_> = mode.iface.iter().map(|&(name, _)| (name, "0")).collect();
        let _ = pair.set_iface(&reset);
        let _ = std::fs::remove_dir_all(&dir);
        let result = result.unwrap_or_else(|err| unavailable(mode.label, format!("{err:#}")));
        if let Some(reason) = &result.reason {
            println!("bench: xdp {:<11} not available: {reason}", mode.label);
        }
        run.modes.push(result);
    }
    // Unpaced sweeps only (the real runs; the harness's own tiny test paces its trials).
    if config.start_rate.is_none() && modes.iter().any(|m| m.label == "afxdp") {
        run.pairs = paired_trials(bins, &pair, profile, config, scratch).unwrap_or_else(|err| {
            println!("bench: xdp paired trials failed: {err:#}");
            Vec::new()
        });
    }
    drop(pair);
    let ceiling = run
        .modes
        .iter()
        .find(|m| m.mode == "drop" && m.available)
        .map(|m| m.max_lossless_datagrams_per_sec)
        .filter(|r| *r > 0.0);
    for m in &mut run.modes {
        m.ratio_to_drop = ceiling
            .filter(|_| m.available)
            .map(|c| m.max_lossless_datagrams_per_sec / c);
    }
    Ok(run)
}

fn unavailable(mode: &str, reason: String) -> ModeResult {
    ModeResult {
        mode: mode.into(),
        available: false,
        reason: Some(reason),
        max_lossless_datagrams_per_sec: 0.0,
        max_lossless_records_per_sec: 0.0,
        sender_limited: false,
        ratio_to_drop: None,
        limit: None,
        sender_busy_cores: None,
        fast_path_share: None,
        trials: Vec::new(),
        details: Vec::new(),
    }
}

/// Start the collector in `mode`; for the collecting XDP modes first check with a short paced
/// probe that records come out of it; then bisect.
fn measure_mode(
    bins: &Binaries,
    pair: &VethPair,
    mode: Mode,
    profile: &str,
    config: &SweepConfig,
    dir: &Path,
) -> anyhow::Result<ModeResult> {
    let collector = ModeCollector::start(bins, pair, mode, config.receiver_core, dir)?;
    let label = mode.label;
    let xdp_mode = mode.xdp_mode.unwrap_or("udp");
    if xdp_mode == "afxdp" || xdp_mode == "perf" {
        let probe_config = SweepConfig {
            trial_secs: 1.0,
            ..config.clone()
        };
        let before = collector.settled();
        let (t, _) = trial(
            bins,
            pair,
            &collector,
            profile,
            Some(1_000),
            &probe_config,
            dir,
        )?;
        if t.records_kept == 0 || t.xdp_fast_path == Some(0) {
            let after = collector.counters();
            let delta = |name: &str| {
                after
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, v)| *v)
                    .saturating_sub(before.counter(name))
            };
            let outcome = if t.records_kept > 0 {
                format!(
                    "collected {} records, but through the UDP sockets (slow path), none \
                     through the fast path",
                    t.records_kept
                )
            } else if collector.scrape().is_ok() {
                "collected no records (its metrics show none decoded)".to_string()
            } else {
                "collected no records and serves no metrics in XDP mode".to_string()
            };
            return Ok(unavailable(
                label,
                format!(
                    "`collector run --xdp --xdp-mode {xdp_mode}` {outcome} from {} datagrams; the \
                     XDP program counted matched={} redirected={} passed_no_socket={} \
                     perf_copied={} perf_failed={}",
                    t.sent_datagrams,
                    delta("matched"),
                    delta("redirected"),
                    delta("passed_no_socket"),
                    delta("perf_copied"),
                    delta("perf_failed"),
                ),
            ));
        }
    }
    let mut details = Vec::new();
    let bisection = bisect(config, |rate| {
        let (t, detail) = trial(bins, pair, &collector, profile, rate, config, dir)?;
        details.push(detail);
        Ok(t)
    })?;
    let sent_records: u64 = bisection.trials.iter().map(|t| t.sent_records).sum();
    let sent_datagrams: u64 = bisection.trials.iter().map(|t| t.sent_datagrams).sum();
    let per_datagram = if sent_datagrams > 0 {
        sent_records as f64 / sent_datagrams as f64
    } else {
        0.0
    };
    Ok(ModeResult {
        mode: label.into(),
        available: true,
        reason: None,
        max_lossless_datagrams_per_sec: bisection.best,
        max_lossless_records_per_sec: bisection.best * per_datagram,
        sender_limited: bisection.sender_limited,
        ratio_to_drop: None,
        limit: bisection
            .trials
            .first()
            .filter(|t| t.offered_rate.is_none())
            .map(|t| e2e::limit(t, config).to_string()),
        sender_busy_cores: bisection.trials.first().map(Trial::sender_busy_cores),
        fast_path_share: (xdp_mode != "udp" && sent_datagrams > 0).then(|| {
            let fast: u64 = bisection
                .trials
                .iter()
                .filter_map(|t| t.xdp_fast_path)
                .sum();
            fast as f64 / sent_datagrams as f64
        }),
        trials: bisection.trials,
        details,
    })
}

/// The run as Markdown.
pub fn markdown(run: &XdpRun) -> String {
    let mut md = format!(
        "## e2e-xdp ({}, veth between two namespaces, XDP attach {}, {})\n\n",
        run.profile, run.attach, run.sender
    );
    if let Some(reason) = &run.skipped {
        let _ = writeln!(md, "Skipped: {reason}\n");
        return md;
    }
    let _ = writeln!(
        md,
        "| mode | max lossless datagrams/s | records/s | vs XDP_DROP (a) | fast-path share | first trial: limit, sender cores busy | note |\n|---|---:|---:|---:|---:|---|---|"
    );
    for m in &run.modes {
        if !m.available {
            let _ = writeln!(
                md,
                "| {} | – | – | – | – | – | not available: {} |",
                m.mode,
                m.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {} | {} | {}, {} | {} |",
            m.mode,
            m.max_lossless_datagrams_per_sec,
            m.max_lossless_records_per_sec,
            m.ratio_to_drop
                .map_or_else(|| "–".to_string(), |r| format!("{r:.2}×")),
            m.fast_path_share
                .map_or_else(|| "–".to_string(), |f| format!("{:.1} %", f * 100.0)),
            m.limit.as_deref().unwrap_or("paced"),
            m.sender_busy_cores
                .map_or_else(|| "–".to_string(), |c| format!("{c:.2}")),
            if m.sender_limited {
                "sender-limited (unpaced flowgen lost nothing)"
            } else if m.max_lossless_datagrams_per_sec == 0.0 {
                "no lossless trial"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        md,
        "\nLoss threshold {}%; {} s trials, {} bisection steps. In drop mode the loss counts \
         datagrams (sent vs `drop_mode_dropped`), in the other modes records and datagrams.\n",
        LOSS_THRESHOLD * 100.0,
        run.trial_secs,
        run.bisection_steps
    );
    if !run.pairs.is_empty() {
        let _ = writeln!(
            md,
            "Alternated unpaced trials (a fresh collector each; sender core = the CPU flowgen is \
             pinned to, busy with anything, softirq included):\n\n\
             | pair | drop datagrams/s | afxdp datagrams/s | sent afxdp / drop | afxdp loss | lossless afxdp / drop | flowgen cores busy (drop, afxdp) | sender core busy, softirq (drop; afxdp) |\n\
             |---:|---:|---:|---:|---:|---:|---|---|"
        );
        let core = |cpus: &[CpuUse]| {
            cpus.iter()
                .max_by(|a, b| a.net_rx.cmp(&b.net_rx))
                .map_or_else(
                    || "–".to_string(),
                    |c| {
                        format!(
                            "cpu{} {:.0} %, {:.0} %",
                            c.cpu,
                            c.busy * 100.0,
                            c.softirq * 100.0
                        )
                    },
                )
        };
        for (i, p) in run.pairs.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.2}× | {:.4} % | {} | {:.2}, {:.2} | {}; {} |",
                i + 1,
                p.drop_datagrams_per_sec,
                p.afxdp_datagrams_per_sec,
                p.sent_ratio(),
                p.afxdp_loss * 100.0,
                p.ratio()
                    .map_or_else(|| "lossy".to_string(), |r| format!("{r:.2}×")),
                p.drop_sender_busy,
                p.afxdp_sender_busy,
                core(&p.drop_cpus),
                core(&p.afxdp_cpus)
            );
        }
        let mut sent: Vec<f64> = run.pairs.iter().map(PairedTrial::sent_ratio).collect();
        sent.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (sent.first(), sent.last()) {
            let _ = writeln!(
                md,
                "\nflowgen's top speed through AF_XDP over its top speed into XDP_DROP: median \
                 {:.2}×, {lo:.2}–{hi:.2}× (on a veth the receive path runs on the sender's core: \
                 no lossless AF_XDP rate can be above this).",
                median(&sent)
            );
        }
        let mut ratios: Vec<f64> = run.pairs.iter().filter_map(PairedTrial::ratio).collect();
        ratios.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (ratios.first(), ratios.last()) {
            let _ = writeln!(
                md,
                "\nAF_XDP / XDP_DROP over the lossless pairs: median {:.2}×, {lo:.2}–{hi:.2}× \
                 ({} of {} pairs lossless).\n",
                median(&ratios),
                ratios.len(),
                run.pairs.len()
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_lines_are_read() {
        let c = parse_counters("seen=7 matched=6 drop_mode_dropped=5 junk perf_failed=x\n");
        assert_eq!(
            c,
            [
                ("seen".to_string(), 7),
                ("matched".to_string(), 6),
                ("drop_mode_dropped".to_string(), 5)
            ]
        );
        let s = Sample {
            counters: c,
            records: None,
            datagrams: None,
            socket_drops: None,
            xsk: [0; 3],
        };
        assert_eq!(s.counter("matched"), 6);
        assert_eq!(s.counter("redirected"), 0);
    }

    #[test]
    fn cpu_use_comes_from_proc_stat_and_softirqs() {
        let stat = |user: u64, idle: u64, softirq: u64| {
            format!(
                "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 {user} 0 10 {idle} 0 0 {softirq} 0 0 0\nintr 5\n"
            )
        };
        let softirqs = |n: u64| format!("  CPU0\n  HI: 1\n  NET_RX: {n}\n");
        let before = CpuSnapshot {
            ticks: parse_cpu_ticks(&stat(100, 100, 0)),
            net_rx: parse_net_rx(&softirqs(7)),
        };
        assert_eq!(before.ticks, [(0, 110, 0, 210)]);
        assert_eq!(before.net_rx, [7]);
        let after = CpuSnapshot {
            ticks: parse_cpu_ticks(&stat(150, 125, 25)),
            net_rx: parse_net_rx(&softirqs(1007)),
        };
        // 100 jiffies passed: 50 user + 25 softirq busy, 25 idle.
        let used = cpu_use(&before, &after);
        assert_eq!(
            used,
            [CpuUse {
                cpu: 0,
                busy: 0.75,
                softirq: 0.25,
                net_rx: 1000
            }]
        );
    }

    #[test]
    fn modes_are_picked_by_label_with_the_ceiling_always_first() {
        let labels = |f: Option<&str>| -> Vec<&str> {
            selected_modes(f).unwrap().iter().map(|m| m.label).collect()
        };
        assert_eq!(labels(None), MODES.map(|m| m.label));
        assert_eq!(labels(Some("")), MODES.map(|m| m.label));
        assert_eq!(
            labels(Some("afxdp-spin, afxdp")),
            ["drop", "afxdp", "afxdp-spin"]
        );
        let err = selected_modes(Some("afxdp,turbo")).unwrap_err().to_string();
        assert!(err.contains("turbo"), "{err}");
    }

    #[test]
    fn markdown_says_why_a_mode_has_no_figure() {
        let mut run = XdpRun {
            profile: "ovs-netflow".into(),
            attach: "driver".into(),
            sender: "flowgen".into(),
            trial_secs: 2.0,
            bisection_steps: 5,
            skipped: None,
            modes: vec![unavailable("afxdp", "not wired".into())],
            pairs: Vec::new(),
        };
        run.modes.insert(
            0,
            ModeResult {
                available: true,
                reason: None,
                max_lossless_datagrams_per_sec: 1000.0,
                max_lossless_records_per_sec: 30000.0,
                ratio_to_drop: Some(1.0),
                ..unavailable("drop", String::new())
            },
        );
        let md = markdown(&run);
        assert!(
            md.contains("| drop | 1000 | 30000 | 1.00× | – | paced, – |"),
            "{md}"
        );
        assert!(
            md.contains("| afxdp | – | – | – | – | – | not available: not wired |"),
            "{md}"
        );
        // Alternated pairs: a ratio for the lossless ones, "lossy" otherwise, and the median.
        let pair = |afxdp: f64, loss: f64| PairedTrial {
            drop_datagrams_per_sec: 400.0,
            afxdp_datagrams_per_sec: afxdp,
            afxdp_loss: loss,
            drop_cpus: Vec::new(),
            afxdp_cpus: Vec::new(),
            drop_sender_busy: 1.0,
            afxdp_sender_busy: 1.0,
        };
        run.pairs = vec![pair(300.0, 0.0), pair(380.0, 0.01), pair(340.0, 0.0)];
        assert_eq!(run.pairs[0].ratio(), Some(0.75));
        assert_eq!(run.pairs[1].ratio(), None);
        let md = markdown(&run);
        assert!(
            md.contains("| 2 | 400 | 380 | 0.95× | 1.0000 % | lossy |"),
            "{md}"
        );
        assert!(md.contains("median 0.85×, 0.75–0.95×"), "{md}");
        assert!(
            md.contains("median 0.80×, 0.75–0.85× (2 of 3 pairs lossless)"),
            "{md}"
        );
        run.skipped = Some("needs root".into());
        assert!(markdown(&run).contains("Skipped: needs root"));
    }

    /// A tiny run of every mode when privileged: the drop and UDP modes measure a lossless
    /// paced trial, the collecting XDP modes either do too or say why they cannot.
    #[test]
    fn a_tiny_run_measures_or_explains_every_mode() {
        let Some(bins) = crate::bench::test_binaries() else {
            return;
        };
        if let Some(reason) = missing_prerequisite() {
            println!("SKIPPED: {reason}");
            return;
        }
        let config = SweepConfig {
            trial_secs: 0.5,
            steps: 0,
            start_rate: Some(500),
            sender_cores: Vec::new(),
            receiver_core: None,
            sender_threads: 1,
            exporters: 2,
        };
        let scratch = std::env::temp_dir().join(format!("xtask-xdp-{}", std::process::id()));
        let run = run(&bins, "ovs-netflow", &config, &scratch).expect("xdp run");
        let _ = std::fs::remove_dir_all(&scratch);
        assert_eq!(run.skipped, None);
        let modes: Vec<&str> = run.modes.iter().map(|m| m.mode.as_str()).collect();
        let expected: Vec<&str> = selected_modes(std::env::var("XDP_BENCH_MODES").ok().as_deref())
            .unwrap()
            .iter()
            .map(|m| m.label)
            .collect();
        assert_eq!(modes, expected);
        for m in &run.modes {
            if m.mode == "drop" || m.mode == "udp" {
                assert!(m.available, "{m:?}");
            }
            if m.available {
                let t = &m.trials[0];
                assert!(t.sent_datagrams > 0, "{m:?}");
                assert_eq!(t.loss, 0.0, "{m:?}");
                assert_eq!(t.datagrams_received, Some(t.sent_datagrams), "{m:?}");
                assert!(m.max_lossless_datagrams_per_sec > 0.0);
                if m.mode != "udp" {
                    assert_eq!(t.xdp_fast_path, Some(t.sent_datagrams), "{m:?}");
                    assert_eq!(m.fast_path_share, Some(1.0), "{m:?}");
                }
            } else {
                assert!(m.reason.as_deref().is_some_and(|r| !r.is_empty()), "{m:?}");
            }
        }
        let drop = &run.modes[0];
        assert_eq!(drop.ratio_to_drop, Some(1.0));
    }
}
