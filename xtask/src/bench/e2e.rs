//! End-to-end load trials: a receiving system (the collector over UDP with W workers, or a peer
//! collector: nfcapd, sfcapd) started fresh on a loopback port, `flowgen` driving
//! one protocol profile at it at an offered rate with the sender pinned to another core, and the
//! records the system kept counted from its own output (the collector's Prometheus metrics, the
//! peers' files). A sweep bisects the offered rate for the largest rate with less than
//! [`LOSS_THRESHOLD`] record loss.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// A sweep's pass mark: fewer than 0.01 % of the records sent may be missing.
pub const LOSS_THRESHOLD: f64 = 1e-4;

/// OVS protocol profiles of `flowgen` the e2e benches drive.
pub const PROFILES: [&str; 3] = ["ovs-netflow", "ovs-ipfix", "ovs-sflow"];

/// A system that receives the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// `collector run` in UDP mode with this many workers.
    Collector { workers: usize },
    /// nfdump's NetFlow/IPFIX capture daemon.
    Nfcapd,
    /// nfdump's sFlow capture daemon.
    Sfcapd,
}

impl System {
    pub fn name(self) -> String {
        match self {
            System::Collector { workers } => format!("collector-w{workers}"),
            System::Nfcapd => "nfcapd".into(),
            System::Sfcapd => "sfcapd".into(),
        }
    }

    /// Whether the system reads the profile's protocol.
    pub fn accepts(self, profile: &str) -> bool {
        let sflow = profile.contains("sflow");
        match self {
            System::Collector { .. } => true,
            System::Nfcapd => !sflow,
            System::Sfcapd => sflow,
        }
    }

    /// The executable a peer needs (None for the collector).
    pub fn program(self) -> Option<&'static str> {
        match self {
            System::Collector { .. } => None,
            System::Nfcapd => Some("nfcapd"),
            System::Sfcapd => Some("sfcapd"),
        }
    }
}

/// The binaries a trial runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub collector: PathBuf,
    pub flowgen: PathBuf,
}

/// How a sweep runs.
#[derive(Clone, Debug, Serialize)]
pub struct SweepConfig {
    /// Seconds flowgen sends per trial.
    pub trial_secs: f64,
    /// Bisection steps after the first trial.
    pub steps: u32,
    /// Offered rate of the first trial in data datagrams/s; `None`: as fast as flowgen can.
    pub start_rate: Option<u64>,
    /// Pin the sender to this core (and a one-worker collector to core 0), with `taskset`.
    pub sender_core: Option<usize>,
}

/// One trial: what was offered, sent and kept, and what it cost the receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trial {
    /// Requested data datagrams/s (`None`: unpaced).
    pub offered_rate: Option<u64>,
    /// Data datagrams/s flowgen achieved.
    pub sent_rate: f64,
    pub sent_datagrams: u64,
    pub sent_records: u64,
    /// Flow records the system kept (decoded, or written to its files).
    pub records_kept: u64,
    /// Datagrams the system received (collector only).
    pub datagrams_received: Option<u64>,
    /// Kernel socket-buffer drops the system reported (collector only).
    pub socket_drops: Option<u64>,
    /// `(sent_records - records_kept) / sent_records`, at least 0; for the collector the larger
    /// of that and its datagram loss.
    pub loss: f64,
    /// User + system CPU seconds of the receiver over the trial (start-up included).
    pub cpu_seconds: f64,
    /// Peak resident set (VmHWM) of the receiver, KiB.
    pub peak_rss_kib: u64,
}

/// A bisection over the offered rate for one system and profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sweep {
    pub system: String,
    pub profile: String,
    /// Flow records per data datagram (from what flowgen sent).
    pub records_per_datagram: f64,
    /// Largest achieved data datagrams/s with loss under the threshold (0 when none was).
    pub max_lossless_datagrams_per_sec: f64,
    pub max_lossless_records_per_sec: f64,
    /// The first, unpaced trial was already lossless: the sender, not the receiver, was the limit.
    pub sender_limited: bool,
    /// CPU seconds of the receiver per million records kept, over every trial of the sweep.
    pub cpu_seconds_per_million_records: Option<f64>,
    pub peak_rss_kib: u64,
    pub trials: Vec<Trial>,
}

/// Bisect the offered rate for `system` under `profile`.
pub fn sweep(
    bins: &Binaries,
    system: System,
    profile: &str,
    config: &SweepConfig,
    scratch: &Path,
) -> anyhow::Result<Sweep> {
    let mut trials = Vec::new();
    let first = trial(bins, system, profile, config.start_rate, config, scratch)?;
    print_trial(system, profile, &first);
    let sender_limited = config.start_rate.is_none() && first.loss < LOSS_THRESHOLD;
    // `lo`/`hi`: the highest lossless and lowest lossy rates offered (the achieved rate of an
    // unpaced trial); without a lossy rate yet the next probe is twice `lo`, without a lossless
    // one halfway down. `best`: the highest achieved rate of a lossless trial.
    let lossless = first.loss < LOSS_THRESHOLD;
    let first_rate = config.start_rate.map_or(first.sent_rate, |r| r as f64);
    let mut lo = if lossless { first_rate } else { 0.0 };
    let mut hi = (!lossless).then_some(first_rate);
    let mut best = if lossless { first.sent_rate } else { 0.0 };
    trials.push(first);
    for _ in 0..config.steps {
        if sender_limited {
            break;
        }
        let probe = hi.map_or(lo * 2.0, |h| (lo + h) / 2.0);
        let rate = (probe.round() as u64).max(1);
        let t = trial(bins, system, profile, Some(rate), config, scratch)?;
        print_trial(system, profile, &t);
        if t.loss < LOSS_THRESHOLD {
            lo = lo.max(probe);
            best = best.max(t.sent_rate);
        } else {
            hi = Some(hi.map_or(probe, |h: f64| h.min(probe)));
        }
        trials.push(t);
    }
    let sent_records: u64 = trials.iter().map(|t| t.sent_records).sum();
    let sent_datagrams: u64 = trials.iter().map(|t| t.sent_datagrams).sum();
    let records_per_datagram = if sent_datagrams == 0 {
        0.0
    } else {
        sent_records as f64 / sent_datagrams as f64
    };
    let kept: u64 = trials.iter().map(|t| t.records_kept).sum();
    let cpu: f64 = trials.iter().map(|t| t.cpu_seconds).sum();
    let max_dps = best;
    Ok(Sweep {
        system: system.name(),
        profile: profile.into(),
        records_per_datagram,
        max_lossless_datagrams_per_sec: max_dps,
        max_lossless_records_per_sec: max_dps * records_per_datagram,
        sender_limited,
        cpu_seconds_per_million_records: (kept > 0).then(|| cpu / (kept as f64 / 1e6)),
        peak_rss_kib: trials.iter().map(|t| t.peak_rss_kib).max().unwrap_or(0),
        trials,
    })
}

fn print_trial(system: System, profile: &str, t: &Trial) {
    println!(
        "bench: {:<13} {:<12} offered {:>9} sent {:>10.0} dgram/s  records {:>9}/{:<9} loss {:>8.4}%  cpu {:.2}s rss {} KiB",
        system.name(),
        profile,
        t.offered_rate
            .map_or_else(|| "max".to_string(), |r| r.to_string()),
        t.sent_rate,
        t.records_kept,
        t.sent_records,
        t.loss * 100.0,
        t.cpu_seconds,
        t.peak_rss_kib
    );
}

/// What flowgen's manifest says was sent.
#[derive(Debug, Deserialize)]
struct ManifestTotals {
    datagrams: u64,
    data_datagrams: u64,
    records: u64,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    elapsed_secs: f64,
    totals: ManifestTotals,
}

/// Run one trial at `rate` (data datagrams/s, `None` unpaced).
pub fn trial(
    bins: &Binaries,
    system: System,
    profile: &str,
    rate: Option<u64>,
    config: &SweepConfig,
    scratch: &Path,
) -> anyhow::Result<Trial> {
    let dir = scratch.join(format!(
        "{}-{}-{}",
        system.name(),
        profile,
        rate.map_or_else(|| "max".to_string(), |r| r.to_string())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = free_udp_port()?;
    let mut receiver = Receiver::start(bins, system, port, config, &dir)?;
    let result = drive(bins, profile, port, rate, config, &dir)
        .and_then(|manifest| receiver.finish(manifest, rate));
    receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Run flowgen to 127.0.0.1:`port` and read its manifest.
fn drive(
    bins: &Binaries,
    profile: &str,
    port: u16,
    rate: Option<u64>,
    config: &SweepConfig,
    dir: &Path,
) -> anyhow::Result<Manifest> {
    let manifest_path = dir.join("manifest.json");
    let mut command = pinned(&bins.flowgen, config.sender_core);
    command
        .args(["--profile", profile, "--to", &format!("127.0.0.1:{port}")])
        .args(["--duration", &config.trial_secs.to_string()])
        .args(["--progress", "none", "--manifest"])
        .arg(&manifest_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    let out = command.output().context("running flowgen")?;
    if !out.status.success() {
        bail!(
            "flowgen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = std::fs::read_to_string(&manifest_path).context("reading flowgen's manifest")?;
    serde_json::from_str(&text).context("parsing flowgen's manifest")
}

/// A command, under `taskset -c CORE` when a core is given and taskset exists.
fn pinned(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) if has_program("taskset") => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string()]).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

/// Whether `program` is on PATH.
pub fn has_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running receiving system.
struct Receiver {
    system: System,
    child: Child,
    dir: PathBuf,
    /// The collector's metrics port.
    metrics_port: Option<u16>,
}

impl Receiver {
    fn start(
        bins: &Binaries,
        system: System,
        port: u16,
        config: &SweepConfig,
        dir: &Path,
    ) -> anyhow::Result<Receiver> {
        let log = std::fs::File::create(dir.join("receiver.log"))?;
        let mut metrics_port = None;
        let mut command = match system {
            System::Collector { workers } => {
                let metrics = free_tcp_port()?;
                metrics_port = Some(metrics);
                // One worker: the whole process on core 0, away from the sender.
                let core = (workers == 1 && config.sender_core.is_some()).then_some(0);
                let mut c = pinned(&bins.collector, core);
                c.args(["run", "--listen", &format!("127.0.0.1:{port}")])
                    .args(["--workers", &workers.to_string(), "--ring-dir"])
                    .arg(dir.join("rings"))
                    .args(["--ring-size", "16MiB"])
                    .args(["--metrics", &format!("127.0.0.1:{metrics}")]);
                c
            }
            System::Nfcapd | System::Sfcapd => {
                let data = dir.join("data");
                std::fs::create_dir_all(&data)?;
                let mut c = Command::new(system.program().unwrap_or_default());
                c.args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600"])
                    .args(["-B", "33554432", "-w"])
                    .arg(&data);
                c
            }
        };
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", system.name()))?;
        let mut receiver = Receiver {
            system,
            child,
            dir: dir.to_path_buf(),
            metrics_port,
        };
        receiver.wait_ready(port)?;
        Ok(receiver)
    }

    /// Wait until the receiver's UDP port is bound (and the collector's metrics answer).
    fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}): {}",
                    self.system.name(),
                    std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
                );
            }
            let bound = UdpSocket::bind(("127.0.0.1", port)).is_err();
            let metrics_ok = self.metrics_port.is_none_or(|m| scrape(m).is_ok());
            if bound && metrics_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not come up within 15 s", self.system.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the receiver to drain, then count what it kept and what it cost.
    fn finish(&mut self, manifest: Manifest, offered_rate: Option<u64>) -> anyhow::Result<Trial> {
        let pid = self.child.id();
        let (records_kept, datagrams_received, socket_drops, cpu_seconds, peak_rss_kib) =
            match self.metrics_port {
                Some(m) => {
                    // Drained when two scrapes 200 ms apart agree.
                    let mut last = None;
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let sample = loop {
                        std::thread::sleep(Duration::from_millis(200));
                        let text = scrape(m)?;
                        let s = (
                            metric_sum(&text, "collector_records_decoded_total"),
                            metric_sum(&text, "collector_datagrams_received_total"),
                            metric_sum(&text, "collector_socket_drops_total"),
                        );
                        if last == Some(s) || Instant::now() > deadline {
                            break s;
                        }
                        last = Some(s);
                    };
                    let (cpu, rss) = process_cost(pid)?;
                    (sample.0, Some(sample.1), Some(sample.2), cpu, rss)
                }
                None => {
                    std::thread::sleep(Duration::from_millis(500));
                    let (cpu, rss) = process_cost(pid)?;
                    self.stop();
                    (self.count_peer_records()?, None, None, cpu, rss)
                }
            };
        let sent_records = manifest.totals.records;
        // The collector's sFlow record counter includes counter records, which the manifest
        // does not count as records: its datagram count, exact for every protocol, is
        // checked too, and the larger of the two losses counts.
        let loss = shortfall(sent_records, records_kept)
            .max(datagrams_received.map_or(0.0, |r| shortfall(manifest.totals.datagrams, r)));
        Ok(Trial {
            offered_rate,
            sent_rate: if manifest.elapsed_secs > 0.0 {
                manifest.totals.data_datagrams as f64 / manifest.elapsed_secs
            } else {
                0.0
            },
            sent_datagrams: manifest.totals.datagrams,
            sent_records,
            records_kept,
            datagrams_received,
            socket_drops,
            loss,
            cpu_seconds,
            peak_rss_kib,
        })
    }

    /// SIGTERM (so peers flush their files), then wait; SIGKILL after 10 s.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Flow records a stopped peer wrote.
    fn count_peer_records(&self) -> anyhow::Result<u64> {
        match self.system {
            System::Nfcapd | System::Sfcapd => {
                let out = Command::new("nfdump")
                    .arg("-R")
                    .arg(self.dir.join("data"))
                    .arg("-I")
                    .output()
                    .context("running nfdump -I")?;
                let text = String::from_utf8_lossy(&out.stdout);
                Ok(text
                    .lines()
                    .find_map(|l| l.strip_prefix("Flows:"))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0))
            }
            System::Collector { .. } => Ok(0),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `(sent - kept) / sent`, 0 when nothing was sent or more was kept.
pub fn shortfall(sent: u64, kept: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(kept) as f64 / sent as f64
    }
}

/// GET /metrics from the collector on 127.0.0.1:`port`.
fn scrape(port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") && !response.starts_with("HTTP/1.0 200") {
        bail!("metrics endpoint answered {:?}", response.lines().next());
    }
    Ok(response)
}

/// Sum of every sample of `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.as_bytes().first() {
                Some(b'{') => &rest[rest.find('}')? + 1..],
                Some(b' ') => rest,
                _ => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .sum()
}

/// CPU seconds (utime + stime) and peak RSS (VmHWM, KiB) of a running process.
fn process_cost(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ticks = parse_cpu_ticks(&stat).context("unreadable /proc/PID/stat")?;
    let rss = parse_vm_hwm(&status).context("no VmHWM in /proc/PID/status")?;
    Ok((ticks as f64 / clock_ticks_per_sec() as f64, rss))
}

/// utime + stime (clock ticks) from /proc/PID/stat (fields 14 and 15; the command name in
/// parentheses may hold spaces).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmHWM in KiB from /proc/PID/status.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_and_metrics_are_read() {
        let stat = "1234 (collector w (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 99";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(
            parse_vm_hwm("Name:\tx\nVmHWM:\t  20480 kB\nVmRSS: 1 kB\n"),
            Some(20480)
        );
        let text = "# TYPE collector_records_decoded counter\n\
                    collector_records_decoded_total{worker=\"0\",protocol=\"v5\"} 30\n\
                    collector_records_decoded_total{worker=\"1\",protocol=\"v5\"} 12\n\
                    collector_records_decoded_totally 99\n\
                    collector_socket_drops_total 7\n";
        assert_eq!(metric_sum(text, "collector_records_decoded_total"), 42);
        assert_eq!(metric_sum(text, "collector_socket_drops_total"), 7);
        assert_eq!(metric_sum(text, "collector_missing_total"), 0);
        assert_eq!(shortfall(1000, 999), 0.001);
        assert_eq!(shortfall(1000, 1022), 0.0);
        assert_eq!(shortfall(0, 5), 0.0);
    }

    #[test]
    fn peers_take_only_their_protocols() {
        assert!(System::Nfcapd.accepts("ovs-ipfix"));
        assert!(!System::Nfcapd.accepts("ovs-sflow"));
        assert!(System::Sfcapd.accepts("ovs-sflow"));
        assert!(System::Collector { workers: 2 }.accepts("ovs-sflow"));
        assert_eq!(System::Collector { workers: 2 }.name(), "collector-w2");
    }
}
