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

/// The modes, in report order; (a) first, the others are ratios to it.
pub const MODES: [&str; 4] = ["drop", "afxdp", "perf", "udp"];

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

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it the other end.
        for ns in [&self.collector_ns, &self.sender_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `program` run inside namespace `ns`, under `taskset -c CORES` when cores are given.
fn in_netns(ns: &str, program: &Path, cores: &[usize]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
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
    mode: &'static str,
}

impl ModeCollector {
    fn start(
        bins: &Binaries,
        pair: &VethPair,
        mode: &'static str,
        core: Option<usize>,
        dir: &Path,
    ) -> anyhow::Result<ModeCollector> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("collector.log"))?;
        // A fixed port inside the fresh namespace: nothing else listens there.
        let metrics_port = 9742;
        let mut command = in_netns(&pair.collector_ns, &bins.collector, core.as_slice());
        command.arg("run");
        let counters_file = (mode != "udp").then(|| dir.join("xdp-counters"));
        match &counters_file {
            Some(file) => {
                command
                    .args(["--xdp", &pair.collector_if, "--xdp-attach", "driver"])
                    .args(["--xdp-mode", mode, "--report-interval", "1"])
                    .args(["--listen", &format!("0.0.0.0:{PORT}")])
                    .arg("--counters-file")
                    .arg(file);
            }
            None => {
                command.args(["--listen", &format!("{COLLECTOR_ADDR}:{PORT}")]);
            }
        }
        command
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
) -> anyhow::Result<Trial> {
    let mode = collector.mode;
    let before = collector.settled();
    let (cpu_before, _) = e2e::process_cost(collector.child.id())?;
    let mut command = in_netns(&pair.sender_ns, &bins.flowgen, &config.sender_cores);
    command.args(["--source-ip", SENDER_ADDR]);
    let to = format!("{COLLECTOR_ADDR}:{PORT}");
    let manifest = e2e::drive_with(command, profile, &to, rate, config, dir)?;
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
    println!(
        "bench: xdp {mode:<6} offered {:>9} sent {:>10.0} dgram/s  kept {:>9} of {:>9} datagrams  loss {:>8.4}%  sender {:.2} cores",
        rate.map_or_else(|| "max".to_string(), |r| r.to_string()),
        t.sent_rate,
        t.datagrams_received.unwrap_or(0),
        t.sent_datagrams,
        t.loss * 100.0,
        t.sender_busy_cores()
    );
    Ok(t)
}

/// Run every mode; a mode that cannot run is reported with its reason.
pub fn run(
    bins: &Binaries,
    profile: &str,
    config: &SweepConfig,
    scratch: &Path,
) -> anyhow::Result<XdpRun> {
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
    for mode in MODES {
        let dir = scratch.join(format!("xdp-{mode}"));
        let _ = std::fs::remove_dir_all(&dir);
        let result = measure_mode(bins, &pair, mode, profile, config, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let result = result.unwrap_or_else(|err| unavailable(mode, format!("{err:#}")));
        if let Some(reason) = &result.reason {
            println!("bench: xdp {mode:<6} not available: {reason}");
        }
        run.modes.push(result);
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
    }
}

/// Start the collector in `mode`; for the collecting XDP modes first check with a short paced
/// probe that records come out of it; then bisect.
fn measure_mode(
    bins: &Binaries,
    pair: &VethPair,
    mode: &'static str,
    profile: &str,
    config: &SweepConfig,
    dir: &Path,
) -> anyhow::Result<ModeResult> {
    let collector = ModeCollector::start(bins, pair, mode, config.receiver_core, dir)?;
    if mode == "afxdp" || mode == "perf" {
        let probe_config = SweepConfig {
            trial_secs: 1.0,
            ..config.clone()
        };
        let before = collector.settled();
        let t = trial(
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
                mode,
                format!(
                    "`collector run --xdp --xdp-mode {mode}` {outcome} from {} datagrams; the \
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
    let bisection = bisect(config, |rate| {
        trial(bins, pair, &collector, profile, rate, config, dir)
    })?;
    let sent_records: u64 = bisection.trials.iter().map(|t| t.sent_records).sum();
    let sent_datagrams: u64 = bisection.trials.iter().map(|t| t.sent_datagrams).sum();
    let per_datagram = if sent_datagrams > 0 {
        sent_records as f64 / sent_datagrams as f64
    } else {
        0.0
    };
    Ok(ModeResult {
        mode: mode.into(),
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
        fast_path_share: (mode != "udp" && sent_datagrams > 0).then(|| {
            let fast: u64 = bisection
                .trials
                .iter()
                .filter_map(|t| t.xdp_fast_path)
                .sum();
            fast as f64 / sent_datagrams as f64
        }),
        trials: bisection.trials,
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
        };
        assert_eq!(s.counter("matched"), 6);
        assert_eq!(s.counter("redirected"), 0);
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
        run.skipped = Some("needs root".into());
        assert!(markdown(&run).contains("Skipped: needs root"));
    }

    /// A tiny run of every mode when privileged: the drop and UDP modes measure a lossless
    /// paced trial, the collecting XDP modes either do too or say why they cannot.
    #[test]
    fn a_tiny_run_measures_or_explains_every_mode() {
        let bins = crate::bench::binaries_from_env().unwrap_or_else(|| Binaries {
            collector: crate::target_dir().join("debug/collector"),
            flowgen: crate::target_dir().join("debug/flowgen"),
        });
        if !bins.collector.is_file() || !bins.flowgen.is_file() {
            println!("SKIPPED: no collector/flowgen binaries (run through `cargo xtask test`)");
            return;
        }
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
        assert_eq!(modes, MODES);
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
