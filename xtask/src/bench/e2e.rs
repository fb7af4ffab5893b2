//! End-to-end load trials: a receiving system (the collector over UDP with W workers, or a peer
//! collector: nfcapd, sfcapd, nfacctd, sfacctd) started fresh on a loopback port, `flowgen` driving
//! one protocol profile at it at an offered rate with the sender pinned to another core, and the
//! records the system kept counted from its own output (the collector's Prometheus metrics,
//! nfdump's files, pmacct's memory table through `pmacct -s`). A sweep bisects the offered rate
//! for the largest rate with less than [`LOSS_THRESHOLD`] record loss.
//!
//! pmacct is configured to keep and count every record: the memory plugin aggregated on the
//! exporter address with the `flows` counter (one bucket per exporter, each flow record adds one
//! flow), read with `pmacct -s` until two reads agree. The core-to-plugin transfer is left
//! unbuffered: with `plugin_buffer_size` set, the last partly filled buffer stays in the core
//! (120 of 3,000 v5 records in a check), and the print plugin lost the first datagram of each
//! new exporter in the same check, so neither is used. (Buffering is not what limits pmacct here:
//! with a 64 KiB buffer it kept about 170k v5 records/s of 600k offered, in a check by hand.)
//! pmacct keeps IP flows only: the OVS IPFIX profile's ARP flows (counted in flowgen's manifest
//! as `non_ip_records`) are not expected of it.

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
    /// pmacct's NetFlow/IPFIX daemon.
    Nfacctd,
    /// pmacct's sFlow daemon.
    Sfacctd,
}

impl System {
    pub fn name(self) -> String {
        match self {
            System::Collector { workers } => format!("collector-w{workers}"),
            System::Nfcapd => "nfcapd".into(),
            System::Sfcapd => "sfcapd".into(),
            System::Nfacctd => "nfacctd".into(),
            System::Sfacctd => "sfacctd".into(),
        }
    }

    /// Whether the system reads the profile's protocol.
    pub fn accepts(self, profile: &str) -> bool {
        let sflow = profile.contains("sflow");
        match self {
            System::Collector { .. } => true,
            System::Nfcapd | System::Nfacctd => !sflow,
            System::Sfcapd | System::Sfacctd => sflow,
        }
    }

    /// Whether the system keeps flow records without an IP layer (pmacct does not).
    pub fn keeps_non_ip(self) -> bool {
        !matches!(self, System::Nfacctd | System::Sfacctd)
    }

    /// The executable a peer needs (None for the collector).
    pub fn program(self) -> Option<&'static str> {
        match self {
            System::Collector { .. } => None,
            System::Nfcapd => Some("nfcapd"),
            System::Sfcapd => Some("sfcapd"),
            System::Nfacctd => Some("nfacctd"),
            System::Sfacctd => Some("sfacctd"),
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
    /// Pin the sender to these cores with `taskset`; empty: not pinned.
    pub sender_cores: Vec<usize>,
    /// Pin a one-worker collector and the peers (single-threaded) to this core.
    pub receiver_core: Option<usize>,
    /// flowgen's `--threads`.
    pub sender_threads: usize,
    /// flowgen's `--exporters` (each its own source port: several let a multi-worker collector
    /// spread them over its workers).
    pub exporters: u32,
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
    /// Of `sent_records`, those the system is expected to keep: all, or for pmacct the IP flows.
    #[serde(default)]
    pub records_expected: u64,
    /// Flow records the system kept (decoded, or written to its files).
    pub records_kept: u64,
    /// Datagrams the system received (collector only).
    pub datagrams_received: Option<u64>,
    /// Kernel socket-buffer drops the system reported (collector only).
    pub socket_drops: Option<u64>,
    /// `(records_expected - records_kept) / records_expected`, at least 0; for the collector the
    /// larger of that and its datagram loss.
    pub loss: f64,
    /// User + system CPU seconds of the receiver over the trial (start-up included; every
    /// process of the receiver: pmacct runs a core and a plugin process).
    pub cpu_seconds: f64,
    /// Peak resident set (VmHWM) of the receiver, KiB (summed over its processes).
    pub peak_rss_kib: u64,
    /// CPU seconds flowgen used (every thread) and how long it sent.
    #[serde(default)]
    pub sender_cpu_seconds: f64,
    #[serde(default)]
    pub sender_secs: f64,
    /// XDP modes: datagrams the program steered to the mode's fast path (redirected to AF_XDP,
    /// copied to perf, dropped in drop mode); the rest went through the UDP sockets.
    #[serde(default)]
    pub xdp_fast_path: Option<u64>,
}

impl Trial {
    /// Cores' worth of CPU the sender used while sending.
    pub fn sender_busy_cores(&self) -> f64 {
        if self.sender_secs > 0.0 {
            self.sender_cpu_seconds / self.sender_secs
        } else {
            0.0
        }
    }

    /// Cores' worth of CPU the receiver used over `trial_secs` (its start-up and drain included,
    /// so slightly high).
    pub fn receiver_busy_cores(&self, trial_secs: f64) -> f64 {
        if trial_secs > 0.0 {
            self.cpu_seconds / trial_secs
        } else {
            0.0
        }
    }
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
    /// Which side saturated in the first (unpaced) trial, with the CPU each used.
    #[serde(default)]
    pub bottleneck: String,
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
    let bisection = bisect(config, |rate| {
        let t = trial(bins, system, profile, rate, config, scratch)?;
        print_trial(system, profile, &t);
        Ok(t)
    })?;
    let trials = bisection.trials;
    let sent_records: u64 = trials.iter().map(|t| t.sent_records).sum();
    let sent_datagrams: u64 = trials.iter().map(|t| t.sent_datagrams).sum();
    let records_per_datagram = if sent_datagrams == 0 {
        0.0
    } else {
        sent_records as f64 / sent_datagrams as f64
    };
    let kept: u64 = trials.iter().map(|t| t.records_kept).sum();
    let cpu: f64 = trials.iter().map(|t| t.cpu_seconds).sum();
    let max_dps = bisection.best;
    Ok(Sweep {
        system: system.name(),
        profile: profile.into(),
        records_per_datagram,
        max_lossless_datagrams_per_sec: max_dps,
        max_lossless_records_per_sec: max_dps * records_per_datagram,
        sender_limited: bisection.sender_limited,
        bottleneck: trials
            .first()
            .map(|t| bottleneck(t, config))
            .unwrap_or_default(),
        cpu_seconds_per_million_records: (kept > 0).then(|| cpu / (kept as f64 / 1e6)),
        peak_rss_kib: trials.iter().map(|t| t.peak_rss_kib).max().unwrap_or(0),
        trials,
    })
}

/// The trials of a bisection and what it found.
pub struct Bisection {
    pub trials: Vec<Trial>,
    /// Highest achieved data datagrams/s of a trial with loss under [`LOSS_THRESHOLD`] (0: none).
    pub best: f64,
    /// The first, unpaced trial was already lossless.
    pub sender_limited: bool,
}

/// Bisect the offered rate with `run_trial` (given the offered data datagrams/s, `None`:
/// unpaced): a first trial at `config.start_rate`, then `config.steps` probes. `lo`/`hi` are the
/// highest lossless and lowest lossy rates offered (the achieved rate of an unpaced trial);
/// without a lossy rate yet the next probe is twice `lo`, without a lossless one halfway down.
pub fn bisect(
    config: &SweepConfig,
    mut run_trial: impl FnMut(Option<u64>) -> anyhow::Result<Trial>,
) -> anyhow::Result<Bisection> {
    let mut trials = Vec::new();
    let first = run_trial(config.start_rate)?;
    let sender_limited = config.start_rate.is_none() && first.loss < LOSS_THRESHOLD;
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
        let t = run_trial(Some(rate))?;
        if t.loss < LOSS_THRESHOLD {
            lo = lo.max(probe);
            best = best.max(t.sent_rate);
        } else {
            hi = Some(hi.map_or(probe, |h: f64| h.min(probe)));
        }
        trials.push(t);
    }
    Ok(Bisection {
        trials,
        best,
        sender_limited,
    })
}

/// Busy fraction of its cores above which a side counts as CPU-bound.
const CPU_BOUND: f64 = 0.85;

/// Which side limited `t`, an unpaced trial, and whether it was CPU-bound: lossless, the
/// sender (the receiver kept up with all it could send); lossy, the receiver. A side that used
/// less than [`CPU_BOUND`] of its cores was not CPU-bound: on a shared machine other processes
/// took the rest, or (a lossy receiver) it was not scheduled in time and its socket buffer
/// overflowed.
pub fn limit(t: &Trial, config: &SweepConfig) -> &'static str {
    let sender_cores = if config.sender_cores.is_empty() {
        config.sender_threads.max(1)
    } else {
        config.sender_cores.len().min(config.sender_threads.max(1))
    };
    if t.loss < LOSS_THRESHOLD {
        if t.sender_busy_cores() >= CPU_BOUND * sender_cores as f64 {
            "sender (CPU-bound)"
        } else {
            "sender (not CPU-bound: shared cores)"
        }
    } else if t.receiver_busy_cores(config.trial_secs) >= CPU_BOUND {
        "receiver (CPU-bound)"
    } else {
        "receiver (not CPU-bound: scheduling, buffers)"
    }
}

/// [`limit`] of a sweep's first trial with the CPU each side used, so that a reader can tell a
/// CPU-bound side from a starved one.
pub fn bottleneck(t: &Trial, config: &SweepConfig) -> String {
    let cores = if config.sender_cores.is_empty() {
        "unpinned".to_string()
    } else {
        format!("{} core(s)", config.sender_cores.len())
    };
    let usage = format!(
        "sender {:.2} cores busy ({} thread(s) on {cores}), receiver {:.2}",
        t.sender_busy_cores(),
        config.sender_threads,
        t.receiver_busy_cores(config.trial_secs)
    );
    match t.offered_rate {
        Some(_) => format!("paced first trial: {usage}"),
        None if t.loss < LOSS_THRESHOLD => format!(
            "{}: lossless at flowgen's top speed; {usage}",
            limit(t, config)
        ),
        None => format!(
            "{}: lost {:.3}% at flowgen's top speed; {usage}",
            limit(t, config),
            t.loss * 100.0
        ),
    }
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
pub struct ManifestTotals {
    pub datagrams: u64,
    pub data_datagrams: u64,
    pub records: u64,
    #[serde(default)]
    pub non_ip_records: u64,
}

/// The parts of flowgen's manifest the benches read.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub elapsed_secs: f64,
    #[serde(default)]
    pub cpu_secs: f64,
    pub totals: ManifestTotals,
}

impl Manifest {
    /// Data datagrams/s flowgen achieved.
    pub fn sent_rate(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.totals.data_datagrams as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }
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
    let command = pinned(&bins.flowgen, &config.sender_cores);
    let to = format!("127.0.0.1:{port}");
    drive_with(command, profile, &to, rate, config, dir)
}

/// Run flowgen (`command`: its program, maybe under `taskset` or `ip netns exec`) to `to` with
/// the sweep's threads, exporters and trial length, and read its manifest.
pub fn drive_with(
    mut command: Command,
    profile: &str,
    to: &str,
    rate: Option<u64>,
    config: &SweepConfig,
    dir: &Path,
) -> anyhow::Result<Manifest> {
    let manifest_path = dir.join("manifest.json");
    command
        .args(["--profile", profile, "--to", to])
        .args(["--threads", &config.sender_threads.max(1).to_string()])
        .args(["--exporters", &config.exporters.max(1).to_string()])
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

/// A command, under `taskset -c CORES` when cores are given and taskset exists.
pub fn pinned(program: &Path, cores: &[usize]) -> Command {
    if cores.is_empty() || !has_program("taskset") {
        return Command::new(program);
    }
    let list = cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut c = Command::new("taskset");
    c.args(["-c", &list]).arg(program);
    c
}

/// Whether `program` is on PATH.
pub fn has_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running receiving system.
struct Receiver {
    system: System,
    child: Child,
    dir: PathBuf,
    /// The collector's metrics port.
    metrics_port: Option<u16>,
    /// pmacct's memory-plugin pipe (`pmacct -p`).
    pmacct_pipe: Option<PathBuf>,
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
        let mut pmacct_pipe = None;
        let mut command = match system {
            System::Collector { workers } => {
                let metrics = free_tcp_port()?;
                metrics_port = Some(metrics);
                // One worker: the whole process on a core of its own, away from the sender.
                let core = config.receiver_core.filter(|_| workers == 1);
                let mut c = pinned(&bins.collector, core.as_slice());
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
                let program = Path::new(system.program().unwrap_or_default());
                let mut c = pinned(program, config.receiver_core.as_slice());
                c.args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600"])
                    .args(["-B", "33554432", "-w"])
                    .arg(&data);
                c
            }
            System::Nfacctd | System::Sfacctd => {
                let pipe = dir.join("imt.pipe");
                let conf = dir.join("pmacct.conf");
                std::fs::write(&conf, pmacct_config(system, port, &pipe))?;
                pmacct_pipe = Some(pipe);
                let program = Path::new(system.program().unwrap_or_default());
                let mut c = pinned(program, config.receiver_core.as_slice());
                c.arg("-f").arg(&conf);
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
            pmacct_pipe,
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
            let pipe_ok = self
                .pmacct_pipe
                .as_deref()
                .is_none_or(|p| pmacct_flows(p).is_ok());
            if bound && metrics_ok && pipe_ok {
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
                None => match self.pmacct_pipe.clone() {
                    Some(pipe) => {
                        // Drained when two reads 300 ms apart agree.
                        let mut last = None;
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let flows = loop {
                            std::thread::sleep(Duration::from_millis(300));
                            let flows = pmacct_flows(&pipe)?;
                            if last == Some(flows) || Instant::now() > deadline {
                                break flows;
                            }
                            last = Some(flows);
                        };
                        let (cpu, rss) = process_cost(pid)?;
                        self.stop();
                        (flows, None, None, cpu, rss)
                    }
                    None => {
                        std::thread::sleep(Duration::from_millis(500));
                        let (cpu, rss) = process_cost(pid)?;
                        self.stop();
                        (self.count_peer_records()?, None, None, cpu, rss)
                    }
                },
            };
        let sent_records = manifest.totals.records;
        let records_expected = if self.system.keeps_non_ip() {
            sent_records
        } else {
            sent_records.saturating_sub(manifest.totals.non_ip_records)
        };
        // The collector's sFlow record counter includes counter records, which the manifest
        // does not count as records: its datagram count, exact for every protocol, is
        // checked too, and the larger of the two losses counts.
        let loss = shortfall(records_expected, records_kept)
            .max(datagrams_received.map_or(0.0, |r| shortfall(manifest.totals.datagrams, r)));
        Ok(Trial {
            offered_rate,
            sent_rate: manifest.sent_rate(),
            sent_datagrams: manifest.totals.datagrams,
            sent_records,
            records_expected,
            records_kept,
            datagrams_received,
            socket_drops,
            loss,
            cpu_seconds,
            peak_rss_kib,
            sender_cpu_seconds: manifest.cpu_secs,
            sender_secs: manifest.elapsed_secs,
            xdp_fast_path: None,
        })
    }

    /// SIGTERM (so peers flush their files), then wait; SIGKILL after 10 s. pmacct has nothing to
    /// flush once `pmacct -s` was read, and its core does not always exit on SIGTERM: it is
    /// killed. Descendants left over (pmacct's plugins) are killed too.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id();
        let children = descendants(pid);
        let signal = if self.pmacct_pipe.is_some() {
            "-KILL"
        } else {
            "-TERM"
        };
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for child in children {
            // Only processes that are still this receiver's: their parent is it, or init after it
            // died; pids are not reused within the fraction of a second this takes.
            let _ = Command::new("kill")
                .args(["-KILL", &child.to_string()])
                .stderr(Stdio::null())
                .status();
        }
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
            System::Collector { .. } | System::Nfacctd | System::Sfacctd => Ok(0),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// pmacct configuration that keeps and counts every flow record: the memory plugin, one bucket per
/// exporter address with the `flows` counter, an unbuffered core-to-plugin transfer (see the
/// module documentation) in a 64 MiB pipe, and a 32 MiB socket buffer as nfcapd gets.
pub fn pmacct_config(system: System, port: u16, pipe: &Path) -> String {
    let daemon = if system == System::Sfacctd {
        "sfacctd"
    } else {
        "nfacctd"
    };
    format!(
        "daemonize: false\n\
         {daemon}_ip: 127.0.0.1\n\
         {daemon}_port: {port}\n\
         {daemon}_pipe_size: 33554432\n\
         plugins: memory[m]\n\
         aggregate[m]: peer_src_ip, flows\n\
         imt_path[m]: {}\n\
         plugin_pipe_size[m]: 67108864\n",
        pipe.display()
    )
}

/// Flow records in pmacct's memory table: the sum of the FLOWS column of `pmacct -s -O csv`.
fn pmacct_flows(pipe: &Path) -> anyhow::Result<u64> {
    let out = Command::new("pmacct")
        .arg("-p")
        .arg(pipe)
        .args(["-s", "-O", "csv"])
        .output()
        .context("running pmacct -s")?;
    anyhow::ensure!(
        out.status.success(),
        "pmacct -s failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_pmacct_flows(&String::from_utf8_lossy(&out.stdout))
        .context("pmacct -s printed no FLOWS column")
}

/// Sum of the FLOWS column of pmacct's CSV table (header line first).
pub fn parse_pmacct_flows(csv: &str) -> Option<u64> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let column = lines.next()?.split(',').position(|h| h.trim() == "FLOWS")?;
    lines
        .map(|l| l.split(',').nth(column)?.trim().parse::<u64>().ok())
        .sum()
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
pub fn scrape(port: u16) -> anyhow::Result<String> {
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

/// CPU seconds (utime + stime) and peak RSS (VmHWM, KiB) of a running process and its
/// descendants (pmacct forks its plugins).
pub fn process_cost(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut ticks = parse_cpu_ticks(&stat).context("unreadable /proc/PID/stat")?;
    let mut rss = parse_vm_hwm(&status).context("no VmHWM in /proc/PID/status")?;
    for child in descendants(pid) {
        // A child may exit between the listing and the read: it then adds nothing.
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
        ticks += parse_cpu_ticks(&stat).unwrap_or(0);
        rss += parse_vm_hwm(&status).unwrap_or(0);
    }
    Ok((ticks as f64 / clock_ticks_per_sec() as f64, rss))
}

/// Every live descendant of `pid`, from the parent ids in /proc/*/stat.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| {
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    Some((p, parse_ppid(&stat)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !found.contains(&p) {
                found.push(p);
                frontier.push(p);
            }
        }
    }
    found
}

/// The parent pid (field 4) from /proc/PID/stat.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(1)?.parse().ok()
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
    fn pmacct_output_and_parent_pids_are_read() {
        let csv = "PEER_SRC_IP,PACKETS,FLOWS,BYTES\n127.0.0.1,3041446,6000,2401708362\n\
                   127.0.0.2,10,7,99\n";
        assert_eq!(parse_pmacct_flows(csv), Some(6007));
        assert_eq!(
            parse_pmacct_flows("PEER_SRC_IP,PACKETS,FLOWS,BYTES\n"),
            Some(0)
        );
        assert_eq!(parse_pmacct_flows("PEER_SRC_IP,PACKETS\n1.2.3.4,5\n"), None);
        assert_eq!(parse_pmacct_flows("PEER_SRC_IP,FLOWS\n1.2.3.4,x\n"), None);
        assert_eq!(
            parse_ppid("77 (nfacctd: Core Process [default]) S 42 77 77 0"),
            Some(42)
        );
        assert_eq!(parse_ppid("77 nothing"), None);
        let conf = pmacct_config(System::Sfacctd, 6343, Path::new("/x/imt.pipe"));
        assert!(
            conf.contains("sfacctd_port: 6343\n") && conf.contains("imt_path[m]: /x/imt.pipe\n")
        );
        assert!(
            !conf.contains("plugin_buffer_size"),
            "buffering holds back the tail"
        );
    }

    /// pmacct's configuration keeps and counts every record on a small run with a known count
    /// (v5, OVS IPFIX without its ARP flows, sFlow), when pmacct and the binaries are there. This
    /// checks the configuration, not pmacct's speed: on a machine busy with other work pmacct can
    /// drop a few records of a run, so each profile gets three tries.
    #[test]
    fn pmacct_keeps_every_record_of_a_small_run() {
        let Some(bins) = crate::bench::test_binaries() else {
            return;
        };
        if !has_program("nfacctd") || !has_program("sfacctd") || !has_program("pmacct") {
            println!("SKIPPED: pmacct (nfacctd, sfacctd, pmacct) not installed");
            return;
        }
        let scratch = std::env::temp_dir().join(format!("xtask-pmacct-{}", std::process::id()));
        let config = SweepConfig {
            trial_secs: 0.5,
            steps: 0,
            start_rate: Some(400),
            sender_cores: Vec::new(),
            receiver_core: None,
            sender_threads: 1,
            exporters: 1,
        };
        for (system, profile) in [
            (System::Nfacctd, "ovs-netflow"),
            (System::Nfacctd, "ovs-ipfix"),
            (System::Sfacctd, "ovs-sflow"),
        ] {
            let run =
                || trial(&bins, system, profile, Some(400), &config, &scratch).expect("trial");
            let mut t = run();
            for _ in 1..3 {
                if t.records_kept == t.records_expected {
                    break;
                }
                println!("{profile}: pmacct lost records ({t:?}); trying again");
                t = run();
            }
            assert!(t.records_expected > 0, "{profile}: nothing sent");
            assert_eq!(t.records_kept, t.records_expected, "{profile}: {t:?}");
            assert_eq!(t.loss, 0.0, "{profile}");
            assert!(
                t.cpu_seconds > 0.0 && t.peak_rss_kib > 0,
                "{profile}: {t:?}"
            );
            if profile == "ovs-ipfix" {
                assert!(
                    t.records_expected < t.sent_records,
                    "ARP flows are not expected"
                );
            } else {
                assert_eq!(t.records_expected, t.sent_records, "{profile}");
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }

    #[test]
    fn the_limit_names_the_side_and_whether_it_was_cpu_bound() {
        let config = SweepConfig {
            trial_secs: 2.0,
            steps: 0,
            start_rate: None,
            sender_cores: vec![1],
            receiver_core: Some(0),
            sender_threads: 1,
            exporters: 4,
        };
        let t = |loss: f64, sender_cpu: f64, receiver_cpu: f64| Trial {
            offered_rate: None,
            sent_rate: 1.0,
            sent_datagrams: 1,
            sent_records: 1,
            records_expected: 1,
            records_kept: 1,
            datagrams_received: None,
            socket_drops: None,
            loss,
            cpu_seconds: receiver_cpu,
            peak_rss_kib: 1,
            sender_cpu_seconds: sender_cpu,
            sender_secs: 2.0,
            xdp_fast_path: None,
        };
        assert_eq!(limit(&t(0.0, 1.9, 0.2), &config), "sender (CPU-bound)");
        assert_eq!(
            limit(&t(0.0, 0.5, 0.2), &config),
            "sender (not CPU-bound: shared cores)"
        );
        assert_eq!(limit(&t(0.2, 1.9, 1.9), &config), "receiver (CPU-bound)");
        assert_eq!(
            limit(&t(0.2, 1.9, 0.4), &config),
            "receiver (not CPU-bound: scheduling, buffers)"
        );
        assert!(bottleneck(&t(0.2, 1.0, 0.4), &config).contains("lost 20.000%"));
    }

    #[test]
    fn peers_take_only_their_protocols() {
        assert!(System::Nfcapd.accepts("ovs-ipfix"));
        assert!(!System::Nfcapd.accepts("ovs-sflow"));
        assert!(System::Sfcapd.accepts("ovs-sflow"));
        assert!(System::Collector { workers: 2 }.accepts("ovs-sflow"));
        assert!(System::Nfacctd.accepts("ovs-netflow") && !System::Nfacctd.accepts("ovs-sflow"));
        assert!(System::Sfacctd.accepts("ovs-sflow") && !System::Sfacctd.accepts("ovs-ipfix"));
        assert!(!System::Sfacctd.keeps_non_ip() && System::Nfcapd.keeps_non_ip());
        assert_eq!(System::Collector { workers: 2 }.name(), "collector-w2");
    }
}
