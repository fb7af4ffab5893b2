//! Settings of `collector run`: the TOML config file, the command-line flags, and how they combine.
//!
//! This module owns parsing and validation only. Every setting has a flag and a config-file key of
//! the same name (`--ring-dir` ↔ `ring_dir`); a flag given on the command line wins over the file.
//! Sampling rates are merged: the file's table, then `--sampling-rate` entries replacing the same
//! exporter or prefix. XDP mode is on when `--xdp` or `xdp` names an interface; a setting that only
//! applies there, given as a flag or a key without either, is refused. Unknown keys and bad values
//! are a [`ConfigError`] naming the key or flag, which the binary reports on one line with exit
//! code 2: also a `user` that this host does not have (or root), looked up when the settings are
//! resolved, before any ring file or socket is created.

use crate::allow::AllowPrefix;
use crate::decode::sampling::{ConfiguredRate, SamplingTable};
use crate::ring::RingSize;
use crate::source::xsk::ZeroCopy;
use crate::xdp::{AttachMode, SteerMode};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// UDP ports listened on by default: NetFlow (2055, 2056), IPFIX (4739), sFlow (6343).
pub const DEFAULT_PORTS: [u16; 4] = [2055, 2056, 4739, 6343];
/// Default Prometheus endpoint.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9742";
/// Default directory of the ring files.
pub const DEFAULT_RING_DIR: &str = "./collector-rings";
/// Default socket receive buffer asked for each UDP socket.
pub const DEFAULT_RCVBUF: u64 = 32 << 20;
/// Default period of the one-line summary log.
pub const DEFAULT_SUMMARY_SECS: u64 = 10;
/// Most entries per AF_XDP ring (fill, completion, RX) and frames per UMEM (XDP mode) when none is
/// configured: 128 MiB of UMEM per RX queue. Measured on a veth, one worker, unpaced sender
/// (BENCHMARKS.md, e2e-xdp): 2048 entries lost records from 180k datagrams/s on, 8192 lost 1–14 %
/// at 240–270k (a worker away for tens of ms lets a whole ring fill up), 32768 lost nothing in 9
/// of 9 such trials.
pub const DEFAULT_XSK_RING_SIZE: u32 = 32768;
/// Fewest entries per AF_XDP ring when none is configured (8 MiB of UMEM per RX queue).
pub const MIN_AUTO_XSK_RING_SIZE: u32 = 2048;
/// UMEM of all RX queues together when no ring size is configured: NICs with more than four
/// queues get smaller rings (their load is spread over more workers).
pub const XSK_UMEM_BUDGET: u64 = 512 << 20;

/// Entries per AF_XDP ring when none is configured, for `queues` RX queues of 4 KiB frames:
/// [`DEFAULT_XSK_RING_SIZE`] while all their UMEM fits [`XSK_UMEM_BUDGET`], else the largest
/// power of two that fits, not below [`MIN_AUTO_XSK_RING_SIZE`].
pub fn auto_xsk_ring_size(queues: usize) -> u32 {
    let per_queue = XSK_UMEM_BUDGET / (queues.max(1) as u64 * 4096);
    let fits = match per_queue {
        0 => 0,
        n => 1u64 << n.ilog2(),
    };
    u32::try_from(fits)
        .unwrap_or(u32::MAX)
        .clamp(MIN_AUTO_XSK_RING_SIZE, DEFAULT_XSK_RING_SIZE)
}
/// Default `xdp_spin_us`: how long an XDP-mode worker checks its fast-path rings without a
/// syscall after the last frame before it sleeps in poll(2). 0: measured on a 2-CPU VM, a
/// spinning worker slowed the sender's CPU (flowgen 0.86–0.90 busy instead of 0.93–0.95, 5–8 %
/// fewer datagrams/s) and gained nothing against the wake-ups it saves.
pub const DEFAULT_XDP_SPIN_US: u64 = 0;
/// Largest accepted `xdp_spin_us` (10 ms).
pub const MAX_XDP_SPIN_US: u64 = 10_000;
/// Largest accepted `xsk_ring_size` (a 4 KiB frame each: 256 MiB of UMEM per RX queue).
pub const MAX_XSK_RING_SIZE: u32 = 65536;
/// Default `report_interval`: seconds between two reports of the XDP program's counters.
pub const DEFAULT_REPORT_SECS: u64 = 5;
/// Largest accepted `report_interval` (an hour).
pub const MAX_REPORT_SECS: u64 = 3600;

/// A bad config file, flag or value. Displayed as one line naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid {setting} value {value:?}: {expected}")]
    Value {
        setting: String,
        value: String,
        expected: &'static str,
    },
    #[error("{setting} only applies with --xdp <IFACE> (or the key `xdp` in the config file)")]
    XdpOnly { setting: &'static str },
    /// `user` / `--user` names no user of this system, or root.
    #[error("invalid {setting} value {name:?}: {cause}")]
    User {
        setting: &'static str,
        name: String,
        cause: String,
    },
}

impl ConfigError {
    fn value(setting: &str, value: impl ToString, expected: &'static str) -> Self {
        ConfigError::Value {
            setting: setting.to_string(),
            value: value.to_string(),
            expected,
        }
    }
}

/// The config file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<String>>,
    pub workers: Option<usize>,
    pub ring_dir: Option<PathBuf>,
    pub ring_size: Option<SizeValue>,
    pub metrics: Option<String>,
    pub rcvbuf: Option<SizeValue>,
    pub summary_interval: Option<u64>,
    /// Configured sampling rates win over rates the exporters send.
    pub sampling_override: Option<bool>,
    /// Exporter address or prefix → sampling rate (1 in N).
    pub sampling_rate: Option<std::collections::BTreeMap<String, i64>>,
    /// Collect through the XDP fast path on this interface (XDP mode); none: UDP mode.
    pub xdp: Option<String>,
    /// XDP mode: attach the program `driver`, `skb` or `auto`.
    pub xdp_attach: Option<String>,
    /// XDP mode: matched datagrams go to `afxdp`, `perf` or `drop`.
    pub xdp_mode: Option<String>,
    /// XDP mode: zero-copy AF_XDP `auto`, `on` or `off`.
    pub xdp_zero_copy: Option<String>,
    /// XDP mode: entries per AF_XDP ring and frames per UMEM (a power of two).
    pub xsk_ring_size: Option<i64>,
    /// XDP mode: µs a worker spins on its fast-path rings after the last frame (0: never).
    pub xdp_spin_us: Option<i64>,
    /// XDP mode: preferred busy polling on the AF_XDP sockets.
    pub xdp_busy_poll: Option<bool>,
    /// XDP mode: seconds between two reports of the program's counters.
    pub report_interval: Option<i64>,
    /// XDP mode: file each counters report is written to.
    pub counters_file: Option<PathBuf>,
    /// Exporter source prefixes allowed to send ("10.0.0.0/8", "2001:db8::/32"); none: all.
    pub allow: Option<Vec<String>>,
    /// Drop root after setup: switch to this user.
    pub user: Option<String>,
}

/// A size in the file: a number of bytes or a string with a unit ("64MiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl FileConfig {
    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(path, &text)
    }

    /// Parse config text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let line = err
                .span()
                .map(|span| text.get(..span.start).unwrap_or(text).matches('\n').count() + 1)
                .unwrap_or(1);
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                message: err.message().replace('\n', " ").trim().to_string(),
            }
        })
    }
}

/// Settings given on the command line (`None`/empty: not given).
#[derive(Debug, Default, Clone)]
pub struct FlagConfig {
    pub config: Option<PathBuf>,
    pub listen: Vec<String>,
    pub workers: Option<usize>,
    pub ring_dir: Option<PathBuf>,
    pub ring_size: Option<String>,
    pub metrics: Option<String>,
    pub rcvbuf: Option<String>,
    pub summary_interval: Option<u64>,
    pub sampling_override: bool,
    pub sampling_rate: Vec<String>,
    pub xdp: Option<String>,
    pub xdp_attach: Option<AttachMode>,
    pub xdp_mode: Option<SteerMode>,
    pub xdp_zero_copy: Option<ZeroCopy>,
    pub xsk_ring_size: Option<u32>,
    pub xdp_spin_us: Option<u64>,
    pub xdp_busy_poll: bool,
    pub report_interval: Option<u64>,
    pub counters_file: Option<PathBuf>,
    pub allow: Vec<AllowPrefix>,
    pub user: Option<String>,
}

/// A configured sampling rate for one exporter address or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingRate {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length; 32 or 128 for a single exporter.
    pub prefix_len: u8,
    /// 1 in `rate` packets sampled.
    pub rate: u32,
}

impl SamplingRate {
    /// Parse `EXPORTER_OR_PREFIX=RATE` (`192.0.2.1=400`, `10.0.0.0/8=400`, `2001:db8::/32=100`).
    pub fn parse(text: &str) -> Result<SamplingRate, ConfigError> {
        let expected = "expected EXPORTER_OR_PREFIX=RATE, e.g. 10.0.0.0/8=400";
        let (prefix, rate) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::value("--sampling-rate", text, expected))?;
        let rate: i64 = rate
            .trim()
            .parse()
            .map_err(|_| ConfigError::value("--sampling-rate", text, expected))?;
        Self::from_parts("--sampling-rate", prefix.trim(), rate)
    }

    fn from_parts(setting: &str, prefix: &str, rate: i64) -> Result<SamplingRate, ConfigError> {
        let rate = u32::try_from(rate)
            .ok()
            .filter(|&r| r >= 1)
            .ok_or_else(|| {
                ConfigError::value(setting, rate, "a sampling rate from 1 to 4294967295")
            })?;
        let bad_prefix = || {
            ConfigError::value(
                setting,
                prefix,
                "an IPv4/IPv6 address or prefix such as 10.0.0.0/8",
            )
        };
        let (addr, len) = match prefix.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (prefix, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad_prefix())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(bad_prefix)?,
            None => max,
        };
        Ok(SamplingRate {
            addr: mask(addr, prefix_len),
            prefix_len,
            rate,
        })
    }
}

impl std::fmt::Display for SamplingRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}={}", self.addr, self.prefix_len, self.rate)
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Configured sampling rates; the longest matching prefix decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SamplingRates(pub Vec<SamplingRate>);

impl SamplingRates {
    /// The rates as the decoder takes them; `override_exported` makes them win over exported rates.
    pub fn to_configured(&self, override_exported: bool) -> Vec<ConfiguredRate> {
        self.0
            .iter()
            .map(|s| ConfiguredRate {
                prefix: s.addr,
                prefix_len: s.prefix_len,
                rate: s.rate,
                override_exported,
            })
            .collect()
    }

    /// The configured rate for `exporter` (longest prefix), as the decoder resolves it.
    pub fn rate_for(&self, exporter: IpAddr) -> Option<u32> {
        SamplingTable::new(self.to_configured(false))
            .configured(exporter)
            .map(|c| c.rate)
    }

    /// Add or replace the entry for the same prefix.
    fn set(&mut self, entry: SamplingRate) {
        match self
            .0
            .iter_mut()
            .find(|s| s.addr == entry.addr && s.prefix_len == entry.prefix_len)
        {
            Some(existing) => *existing = entry,
            None => self.0.push(entry),
        }
    }
}

/// Everything `collector run` needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The config file the settings came from, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    /// True when `listen` is the built-in default (an IPv6-less host then skips `[::]`).
    pub listen_is_default: bool,
    pub workers: usize,
    /// True when `workers` is the built-in default (XDP mode then runs one worker per RX queue).
    pub workers_is_default: bool,
    pub ring_dir: PathBuf,
    pub ring_size: RingSize,
    pub metrics: SocketAddr,
    pub rcvbuf: u64,
    pub summary_interval: Duration,
    pub sampling: SamplingRates,
    /// Configured sampling rates override the exported ones.
    pub sampling_override: bool,
    /// The interface whose XDP fast path is collected from; `None`: UDP mode.
    pub xdp: Option<String>,
    /// XDP mode: how the program is attached.
    pub xdp_attach: AttachMode,
    /// XDP mode: where the program sends matched datagrams.
    pub xdp_mode: SteerMode,
    /// XDP mode: zero-copy AF_XDP request.
    pub xdp_zero_copy: ZeroCopy,
    /// XDP mode: entries per AF_XDP ring and frames per UMEM; `None`: [`auto_xsk_ring_size`].
    pub xsk_ring_size: Option<u32>,
    /// XDP mode: how long a worker spins on its fast-path rings after the last frame before it
    /// sleeps in poll(2) (zero: never spins).
    pub xdp_spin: Duration,
    /// XDP mode: the AF_XDP sockets busy-poll their RX queue (preferred busy polling).
    pub xdp_busy_poll: bool,
    /// XDP mode: period of the program's counters report.
    pub report_interval: Duration,
    /// XDP mode: where each counters report is written (one line, replaced atomically).
    pub counters_file: Option<PathBuf>,
    /// Exporter source prefixes allowed to send; empty allows every source.
    pub allow: Vec<AllowPrefix>,
    /// The user to become after setup.
    pub user: Option<String>,
}

impl Settings {
    /// Combine flags with the config file they name (if any): flags win. Also checks what only
    /// this host can tell, before anything is set up: the user to become exists and is not root.
    pub fn resolve(flags: &FlagConfig) -> Result<Settings, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let settings = Self::combine(flags, file)?;
        if let Some(name) = &settings.user {
            let setting = if flags.user.is_some() {
                "--user"
            } else {
                "user"
            };
            check_user(setting, name)?;
        }
        Ok(settings)
    }

    /// Combine flags with an already parsed file.
    pub fn combine(flags: &FlagConfig, file: FileConfig) -> Result<Settings, ConfigError> {
        let (listen_texts, listen_setting) = if !flags.listen.is_empty() {
            (flags.listen.clone(), "--listen")
        } else {
            (file.listen.clone().unwrap_or_default(), "listen")
        };
        let listen_is_default = listen_texts.is_empty();
        let listen = if listen_is_default {
            default_listen()
        } else {
            listen_texts
                .iter()
                .map(|text| {
                    text.parse::<SocketAddr>().map_err(|_| {
                        ConfigError::value(
                            listen_setting,
                            text,
                            "expected ADDR:PORT, e.g. 0.0.0.0:2055 or [::]:4739",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let workers = match (flags.workers, file.workers) {
            (Some(n), _) => check_workers("--workers", n)?,
            (None, Some(n)) => check_workers("workers", n)?,
            (None, None) => default_workers(),
        };
        let ring_size = match (&flags.ring_size, &file.ring_size) {
            (Some(text), _) => parse_ring_size("--ring-size", text)?,
            (None, Some(SizeValue::Text(text))) => parse_ring_size("ring_size", text)?,
            (None, Some(SizeValue::Bytes(n))) => parse_ring_size("ring_size", &n.to_string())?,
            (None, None) => RingSize::default(),
        };
        let rcvbuf = match (&flags.rcvbuf, &file.rcvbuf) {
            (Some(text), _) => parse_size("--rcvbuf", text)?,
            (None, Some(value)) => size_value("rcvbuf", value)?,
            (None, None) => DEFAULT_RCVBUF,
        };
        if rcvbuf > i32::MAX as u64 {
            return Err(ConfigError::value("rcvbuf", rcvbuf, "at most 2GiB"));
        }
        let (metrics_text, metrics_setting) = match (&flags.metrics, &file.metrics) {
            (Some(text), _) => (text.as_str(), "--metrics"),
            (None, Some(text)) => (text.as_str(), "metrics"),
            (None, None) => (DEFAULT_METRICS, "metrics"),
        };
        let metrics = metrics_text.parse().map_err(|_| {
            ConfigError::value(
                metrics_setting,
                metrics_text,
                "expected ADDR:PORT, e.g. 127.0.0.1:9742",
            )
        })?;
        let summary_secs = match (flags.summary_interval, file.summary_interval) {
            (Some(s), _) => s,
            (None, Some(s)) => s,
            (None, None) => DEFAULT_SUMMARY_SECS,
        };
        if summary_secs == 0 {
            return Err(ConfigError::value(
                "summary_interval",
                0,
                "a number of seconds of at least 1",
            ));
        }
        let mut sampling = file_sampling(&file)?;
        for text in &flags.sampling_rate {
            sampling.set(SamplingRate::parse(text)?);
        }
        let xdp = match (&flags.xdp, &file.xdp) {
            (Some(iface), _) => Some(check_iface("--xdp", iface)?),
            (None, Some(iface)) => Some(check_iface("xdp", iface)?),
            (None, None) => None,
        };
        if xdp.is_none()
            && let Some(setting) = xdp_only_setting(flags, &file)
        {
            return Err(ConfigError::XdpOnly { setting });
        }
        let xdp_attach = match (flags.xdp_attach, &file.xdp_attach) {
            (Some(a), _) => a,
            (None, Some(text)) => <AttachMode as clap::ValueEnum>::from_str(text, false)
                .map_err(|_| ConfigError::value("xdp_attach", text, "driver, skb or auto"))?,
            (None, None) => AttachMode::Auto,
        };
        let xdp_mode = match (flags.xdp_mode, &file.xdp_mode) {
            (Some(m), _) => m,
            (None, Some(text)) => <SteerMode as clap::ValueEnum>::from_str(text, false)
                .map_err(|_| ConfigError::value("xdp_mode", text, "afxdp, perf or drop"))?,
            (None, None) => SteerMode::Afxdp,
        };
        let xdp_zero_copy = match (flags.xdp_zero_copy, &file.xdp_zero_copy) {
            (Some(z), _) => z,
            (None, Some(text)) => <ZeroCopy as clap::ValueEnum>::from_str(text, false)
                .map_err(|_| ConfigError::value("xdp_zero_copy", text, "auto, on or off"))?,
            (None, None) => ZeroCopy::Auto,
        };
        let xsk_ring_size = match (flags.xsk_ring_size, file.xsk_ring_size) {
            (Some(n), _) => Some(check_xsk_ring_size("--xsk-ring-size", i64::from(n))?),
            (None, Some(n)) => Some(check_xsk_ring_size("xsk_ring_size", n)?),
            (None, None) => None,
        };
        let xdp_spin_us = match (flags.xdp_spin_us, file.xdp_spin_us) {
            (Some(n), _) => check_xdp_spin_us("--xdp-spin-us", i64::try_from(n).unwrap_or(-1))?,
            (None, Some(n)) => check_xdp_spin_us("xdp_spin_us", n)?,
            (None, None) => DEFAULT_XDP_SPIN_US,
        };
        let report_secs = match (flags.report_interval, file.report_interval) {
            (Some(n), _) => {
                check_report_interval("--report-interval", i64::try_from(n).unwrap_or(-1))?
            }
            (None, Some(n)) => check_report_interval("report_interval", n)?,
            (None, None) => DEFAULT_REPORT_SECS,
        };
        let allow = if flags.allow.is_empty() {
            file.allow
                .iter()
                .flatten()
                .map(|text| {
                    text.parse::<AllowPrefix>().map_err(|_| {
                        ConfigError::value(
                            "allow",
                            text,
                            "an IP prefix, ADDR or ADDR/LEN, e.g. 10.0.0.0/8 or 2001:db8::/32",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            flags.allow.clone()
        };
        Ok(Settings {
            config_file: flags.config.clone(),
            listen,
            listen_is_default,
            workers,
            workers_is_default: flags.workers.is_none() && file.workers.is_none(),
            ring_dir: flags
                .ring_dir
                .clone()
                .or(file.ring_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RING_DIR)),
            ring_size,
            metrics,
            rcvbuf,
            summary_interval: Duration::from_secs(summary_secs),
            sampling,
            sampling_override: flags.sampling_override || file.sampling_override.unwrap_or(false),
            xdp,
            xdp_attach,
            xdp_mode,
            xdp_zero_copy,
            xsk_ring_size,
            xdp_spin: Duration::from_micros(xdp_spin_us),
            xdp_busy_poll: flags.xdp_busy_poll || file.xdp_busy_poll.unwrap_or(false),
            report_interval: Duration::from_secs(report_secs),
            counters_file: flags.counters_file.clone().or(file.counters_file),
            allow,
            user: flags.user.clone().or(file.user),
        })
    }

    /// Re-read the sampling rates (SIGHUP): the config file's table and override switch, then the
    /// flags' entries again. Returns them as the decoder takes them.
    pub fn reload_sampling(&self, flags: &FlagConfig) -> Result<Vec<ConfiguredRate>, ConfigError> {
        let file = match &self.config_file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut sampling = file_sampling(&file)?;
        for text in &flags.sampling_rate {
            sampling.set(SamplingRate::parse(text)?);
        }
        let override_exported = flags.sampling_override || file.sampling_override.unwrap_or(false);
        Ok(sampling.to_configured(override_exported))
    }
}

fn file_sampling(file: &FileConfig) -> Result<SamplingRates, ConfigError> {
    let mut sampling = SamplingRates::default();
    for (prefix, &rate) in file.sampling_rate.iter().flatten() {
        sampling.set(SamplingRate::from_parts(
            &format!("sampling_rate.\"{prefix}\""),
            prefix,
            rate,
        )?);
    }
    Ok(sampling)
}

/// The first setting given, flags before keys, that only applies with `--xdp` or `xdp`.
fn xdp_only_setting(flags: &FlagConfig, file: &FileConfig) -> Option<&'static str> {
    [
        (flags.xdp_attach.is_some(), "--xdp-attach"),
        (flags.xdp_mode.is_some(), "--xdp-mode"),
        (flags.xdp_zero_copy.is_some(), "--xdp-zero-copy"),
        (flags.xsk_ring_size.is_some(), "--xsk-ring-size"),
        (flags.xdp_spin_us.is_some(), "--xdp-spin-us"),
        (flags.xdp_busy_poll, "--xdp-busy-poll"),
        (flags.report_interval.is_some(), "--report-interval"),
        (flags.counters_file.is_some(), "--counters-file"),
        (file.xdp_attach.is_some(), "xdp_attach"),
        (file.xdp_mode.is_some(), "xdp_mode"),
        (file.xdp_zero_copy.is_some(), "xdp_zero_copy"),
        (file.xsk_ring_size.is_some(), "xsk_ring_size"),
        (file.xdp_spin_us.is_some(), "xdp_spin_us"),
        (file.xdp_busy_poll.is_some(), "xdp_busy_poll"),
        (file.report_interval.is_some(), "report_interval"),
        (file.counters_file.is_some(), "counters_file"),
    ]
    .into_iter()
    .find_map(|(given, setting)| given.then_some(setting))
}

/// The user `collector run` drops to: one the password database has, and not root (dropping to
/// root keeps root). Checked by [`Settings::resolve`], not [`Settings::combine`], since the answer
/// is this host's, not the settings' own.
fn check_user(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let cause = match crate::privilege::lookup(name) {
        Ok(account) if account.uid == 0 => "that is root; give an unprivileged user".to_string(),
        Ok(_) => return Ok(()),
        Err(e) => format!("{e:#}"),
    };
    Err(ConfigError::User {
        setting,
        name: name.to_string(),
        cause,
    })
}

/// An interface name the kernel could have: 1 to 15 bytes, no `/`, `:` or white space, not `.`
/// or `..`.
fn check_iface(setting: &str, name: &str) -> Result<String, ConfigError> {
    let valid = (1..libc::IFNAMSIZ).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if valid {
        Ok(name.to_string())
    } else {
        Err(ConfigError::value(
            setting,
            name,
            "a network interface name, 1 to 15 bytes without /, : or spaces, e.g. eth0",
        ))
    }
}

fn check_workers(setting: &str, n: usize) -> Result<usize, ConfigError> {
    if (1..=1024).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::value(
            setting,
            n,
            "a worker count from 1 to 1024",
        ))
    }
}

fn check_xsk_ring_size(setting: &str, n: i64) -> Result<u32, ConfigError> {
    u32::try_from(n)
        .ok()
        .filter(|n| n.is_power_of_two() && (64..=MAX_XSK_RING_SIZE).contains(n))
        .ok_or_else(|| ConfigError::value(setting, n, "a power of two from 64 to 65536"))
}

fn check_xdp_spin_us(setting: &str, n: i64) -> Result<u64, ConfigError> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_XDP_SPIN_US)
        .ok_or_else(|| ConfigError::value(setting, n, "microseconds from 0 to 10000"))
}

fn check_report_interval(setting: &str, n: i64) -> Result<u64, ConfigError> {
    u64::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_REPORT_SECS).contains(n))
        .ok_or_else(|| ConfigError::value(setting, n, "seconds from 1 to 3600"))
}

/// One worker per online core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `0.0.0.0` and `[::]` on every default port.
pub fn default_listen() -> Vec<SocketAddr> {
    let v4 = DEFAULT_PORTS.map(|p| SocketAddr::from(([0, 0, 0, 0], p)));
    let v6 = DEFAULT_PORTS.map(|p| SocketAddr::from(([0u16; 8], p)));
    v4.into_iter().chain(v6).collect()
}

fn parse_ring_size(setting: &str, text: &str) -> Result<RingSize, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::value(
            setting,
            text,
            "a power of two of 256-byte records (16 to 2^32, e.g. 262144) or bytes giving one (64MiB)",
        )
    })
}

fn size_value(setting: &str, value: &SizeValue) -> Result<u64, ConfigError> {
    match value {
        SizeValue::Bytes(n) => u64::try_from(*n)
            .map_err(|_| ConfigError::value(setting, n, "a non-negative size in bytes")),
        SizeValue::Text(text) => parse_size(setting, text),
    }
}

/// Parse a size: bytes, or a number with a unit K/KiB, M/MiB, G/GiB (powers of 1024).
pub fn parse_size(setting: &str, text: &str) -> Result<u64, ConfigError> {
    let expected = "a size in bytes, or with a unit: 512KiB, 64MiB, 1GiB";
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| ConfigError::value(setting, text, expected))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(ConfigError::value(setting, text, expected)),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| ConfigError::value(setting, text, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let s = Settings::combine(&FlagConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(s.listen.len(), 8);
        assert!(s.listen_is_default);
        assert!(s.listen.contains(&"[::]:4739".parse().unwrap()));
        assert!(s.listen.contains(&"0.0.0.0:6343".parse().unwrap()));
        assert_eq!(s.metrics, "127.0.0.1:9742".parse().unwrap());
        assert_eq!(s.ring_dir, PathBuf::from("./collector-rings"));
        assert_eq!(s.rcvbuf, 32 << 20);
        assert!(s.workers >= 1);
        assert!(s.workers_is_default);
        assert_eq!(s.xdp_zero_copy, ZeroCopy::Auto);
        assert_eq!(s.xsk_ring_size, None);
        assert_eq!(s.xdp_spin, Duration::ZERO);
        assert_eq!(s.xdp, None);
        assert_eq!(s.xdp_attach, AttachMode::Auto);
        assert_eq!(s.xdp_mode, SteerMode::Afxdp);
        assert_eq!(s.report_interval, Duration::from_secs(5));
        assert_eq!(s.counters_file, None);
    }

    /// Flags naming an XDP interface, so that XDP-only settings apply.
    fn xdp_flags() -> FlagConfig {
        FlagConfig {
            xdp: Some("eth0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn xdp_spin_from_file_and_flags() {
        let s = Settings::combine(&xdp_flags(), file("xdp_spin_us = 0\n").unwrap()).unwrap();
        assert_eq!(s.xdp_spin, Duration::ZERO);
        let flags = FlagConfig {
            xdp_spin_us: Some(50),
            ..xdp_flags()
        };
        let s = Settings::combine(&flags, file("xdp_spin_us = 1000\n").unwrap()).unwrap();
        assert_eq!(s.xdp_spin, Duration::from_micros(50));
        assert!(!s.xdp_busy_poll);
        let s = Settings::combine(&xdp_flags(), file("xdp_busy_poll = true\n").unwrap()).unwrap();
        assert!(s.xdp_busy_poll);
        for text in ["xdp_spin_us = -1", "xdp_spin_us = 10001"] {
            let err = Settings::combine(&xdp_flags(), file(text).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains("invalid xdp_spin_us value"), "{text}: {err}");
        }
        let flags = FlagConfig {
            xdp_spin_us: Some(20_000),
            ..xdp_flags()
        };
        let err = Settings::combine(&flags, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid --xdp-spin-us value"), "{err}");
    }

    #[test]
    fn xdp_settings_from_file_and_flags() {
        let f = file("xdp_zero_copy = \"off\"\nxsk_ring_size = 4096\nworkers = 2\n").unwrap();
        let s = Settings::combine(&xdp_flags(), f).unwrap();
        assert_eq!(s.xdp_zero_copy, ZeroCopy::Off);
        assert_eq!(s.xsk_ring_size, Some(4096));
        assert!(!s.workers_is_default);
        let flags = FlagConfig {
            xdp_zero_copy: Some(ZeroCopy::On),
            xsk_ring_size: Some(8192),
            ..xdp_flags()
        };
        let f = file("xdp_zero_copy = \"off\"\nxsk_ring_size = 4096\n").unwrap();
        let s = Settings::combine(&flags, f).unwrap();
        assert_eq!(s.xdp_zero_copy, ZeroCopy::On);
        assert_eq!(s.xsk_ring_size, Some(8192));
        for (text, key) in [
            ("xdp_zero_copy = \"maybe\"", "xdp_zero_copy"),
            ("xsk_ring_size = 3000", "xsk_ring_size"),
            ("xsk_ring_size = 32", "xsk_ring_size"),
            ("xsk_ring_size = 131072", "xsk_ring_size"),
        ] {
            let err = Settings::combine(&xdp_flags(), file(text).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("invalid {key} value")),
                "{text}: {err}"
            );
        }
        let flags = FlagConfig {
            xsk_ring_size: Some(1000),
            ..xdp_flags()
        };
        let err = Settings::combine(&flags, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid --xsk-ring-size value"), "{err}");
    }

    #[test]
    fn xdp_switches_from_file_and_flags() {
        let text = "xdp = \"eth0\"\nxdp_attach = \"skb\"\nxdp_mode = \"perf\"\n\
                    report_interval = 30\ncounters_file = \"/run/collector/counters\"\n";
        let s = Settings::combine(&FlagConfig::default(), file(text).unwrap()).unwrap();
        assert_eq!(s.xdp.as_deref(), Some("eth0"));
        assert_eq!(s.xdp_attach, AttachMode::Skb);
        assert_eq!(s.xdp_mode, SteerMode::Perf);
        assert_eq!(s.report_interval, Duration::from_secs(30));
        assert_eq!(
            s.counters_file,
            Some(PathBuf::from("/run/collector/counters"))
        );
        let flags = FlagConfig {
            xdp: Some("veth1".into()),
            xdp_attach: Some(AttachMode::Driver),
            xdp_mode: Some(SteerMode::Drop),
            report_interval: Some(1),
            counters_file: Some("/tmp/counters".into()),
            ..Default::default()
        };
        let s = Settings::combine(&flags, file(text).unwrap()).unwrap();
        assert_eq!(s.xdp.as_deref(), Some("veth1"));
        assert_eq!(s.xdp_attach, AttachMode::Driver);
        assert_eq!(s.xdp_mode, SteerMode::Drop);
        assert_eq!(s.report_interval, Duration::from_secs(1));
        assert_eq!(s.counters_file, Some(PathBuf::from("/tmp/counters")));
        let s =
            Settings::combine(&FlagConfig::default(), file("xdp = \"eth0\"\n").unwrap()).unwrap();
        assert_eq!(s.xdp_attach, AttachMode::Auto);
        assert_eq!(s.xdp_mode, SteerMode::Afxdp);
        assert_eq!(s.report_interval, Duration::from_secs(5));
        assert_eq!(s.counters_file, None);
    }

    #[test]
    fn bad_xdp_switches_are_named() {
        for (text, key) in [
            ("xdp = \"\"", "xdp"),
            ("xdp = \"an-interface-name\"", "xdp"),
            ("xdp = \"eth0/1\"", "xdp"),
            ("xdp_attach = \"offload\"", "xdp_attach"),
            ("xdp_mode = \"ring\"", "xdp_mode"),
            ("report_interval = 0", "report_interval"),
            ("report_interval = -5", "report_interval"),
            ("report_interval = 3601", "report_interval"),
        ] {
            // The XDP-only keys are checked in XDP mode, the interface named by the file.
            let text = if key == "xdp" {
                text.to_string()
            } else {
                format!("xdp = \"eth0\"\n{text}")
            };
            let err = Settings::combine(&FlagConfig::default(), file(&text).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("invalid {key} value")),
                "{text}: {err}"
            );
        }
        // A value of the wrong type is refused by the parser, naming its line.
        let err = file("workers = 2\ncounters_file = 7\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("path"), "{err}");
        let bad = |flags: FlagConfig| {
            Settings::combine(&flags, FileConfig::default())
                .unwrap_err()
                .to_string()
        };
        let e = bad(FlagConfig {
            xdp: Some(" eth0".into()),
            ..Default::default()
        });
        assert!(e.contains("invalid --xdp value"), "{e}");
        let e = bad(FlagConfig {
            report_interval: Some(0),
            ..xdp_flags()
        });
        assert!(e.contains("invalid --report-interval value"), "{e}");
    }

    #[test]
    fn xdp_only_settings_are_refused_without_xdp() {
        for key in [
            "xdp_attach = \"skb\"",
            "xdp_mode = \"perf\"",
            "xdp_zero_copy = \"off\"",
            "xsk_ring_size = 4096",
            "xdp_spin_us = 10",
            "xdp_busy_poll = false",
            "report_interval = 3",
            "counters_file = \"/tmp/counters\"",
        ] {
            let name = key.split(' ').next().unwrap();
            let err = Settings::combine(&FlagConfig::default(), file(key).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{name} only applies with --xdp <IFACE>")),
                "{key}: {err}"
            );
            // The interface, from either place, turns XDP mode on.
            let with_key = format!("xdp = \"eth0\"\n{key}\n");
            Settings::combine(&FlagConfig::default(), file(&with_key).unwrap()).unwrap();
            Settings::combine(&xdp_flags(), file(key).unwrap()).unwrap();
        }
        let flags = FlagConfig {
            xdp_mode: Some(SteerMode::Perf),
            ..Default::default()
        };
        let err = Settings::combine(&flags, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--xdp-mode only applies"), "{err}");
        // A flag is allowed when the file names the interface, and is named before a key.
        Settings::combine(&flags, file("xdp = \"eth0\"\n").unwrap()).unwrap();
        let err = Settings::combine(&flags, file("report_interval = 3\n").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--xdp-mode only applies"), "{err}");
    }

    #[test]
    fn flags_win_over_file_and_sampling_merges() {
        let f = file(
            r#"
            listen = ["127.0.0.1:9000"]
            workers = 3
            ring_dir = "/tmp/from-file"
            ring_size = "8MiB"
            metrics = "127.0.0.1:1111"
            rcvbuf = 1048576
            [sampling_rate]
            "10.0.0.0/8" = 400
            "192.0.2.1" = 100
            "#,
        )
        .unwrap();
        let flags = FlagConfig {
            workers: Some(2),
            metrics: Some("127.0.0.1:2222".into()),
            sampling_rate: vec!["10.0.0.0/8=1000".into()],
            ..Default::default()
        };
        let s = Settings::combine(&flags, f).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:9000".parse().unwrap()]);
        assert_eq!(s.workers, 2);
        assert_eq!(s.ring_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(s.ring_size, RingSize::Bytes(8 << 20));
        assert_eq!(s.rcvbuf, 1 << 20);
        assert_eq!(s.metrics, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(s.sampling.rate_for("10.1.2.3".parse().unwrap()), Some(1000));
        assert_eq!(s.sampling.rate_for("192.0.2.1".parse().unwrap()), Some(100));
        assert_eq!(s.sampling.rate_for("192.0.2.2".parse().unwrap()), None);
    }

    #[test]
    fn unknown_key_names_the_key_on_one_line() {
        let err = file("listen = []\nlisen = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |flags: FlagConfig| {
            Settings::combine(&flags, FileConfig::default())
                .unwrap_err()
                .to_string()
        };
        let e = bad(FlagConfig {
            listen: vec!["2055".into()],
            ..Default::default()
        });
        assert!(e.contains("--listen") && e.contains("\"2055\""), "{e}");
        let e = bad(FlagConfig {
            workers: Some(0),
            ..Default::default()
        });
        assert!(e.contains("--workers"), "{e}");
        let e = bad(FlagConfig {
            ring_size: Some("12XB".into()),
            ..Default::default()
        });
        assert!(e.contains("--ring-size"), "{e}");
        let e = bad(FlagConfig {
            sampling_rate: vec!["10.0.0.0/33=5".into()],
            ..Default::default()
        });
        assert!(e.contains("--sampling-rate"), "{e}");
        let e = bad(FlagConfig {
            sampling_rate: vec!["10.0.0.1=0".into()],
            ..Default::default()
        });
        assert!(e.contains("sampling rate"), "{e}");
        let e = Settings::combine(
            &FlagConfig::default(),
            file("[sampling_rate]\n\"not-an-ip\" = 4\n").unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not-an-ip"), "{e}");
    }

    #[test]
    fn prefixes_match_longest_first() {
        let mut rates = SamplingRates::default();
        rates.set(SamplingRate::parse("10.0.0.0/8=400").unwrap());
        rates.set(SamplingRate::parse("10.1.0.0/16=50").unwrap());
        rates.set(SamplingRate::parse("2001:db8::/32=7").unwrap());
        assert_eq!(rates.rate_for("10.1.9.9".parse().unwrap()), Some(50));
        assert_eq!(rates.rate_for("10.2.0.1".parse().unwrap()), Some(400));
        assert_eq!(
            rates.rate_for("::ffff:10.2.0.1".parse().unwrap()),
            Some(400)
        );
        assert_eq!(rates.rate_for("2001:db8:1::1".parse().unwrap()), Some(7));
        assert_eq!(rates.rate_for("11.0.0.1".parse().unwrap()), None);
        assert_eq!(
            SamplingRate::parse("10.9.8.7/8=3").unwrap().addr,
            "10.0.0.0".parse::<IpAddr>().unwrap()
        );
        let mut all = SamplingRates::default();
        all.set(SamplingRate::parse("0.0.0.0/0=3").unwrap());
        assert_eq!(all.rate_for("203.0.113.1".parse().unwrap()), Some(3));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "1024").unwrap(), 1024);
        assert_eq!(parse_size("x", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("x", "2G").unwrap(), 2 << 30);
        assert!(parse_size("x", "MiB").is_err());
        assert!(parse_size("x", "99999999999999999999G").is_err());
    }

    #[test]
    fn unconfigured_rings_share_a_umem_budget() {
        // Up to four queues: the measured 32768 each (128 MiB); more: a share of 512 MiB.
        assert_eq!(auto_xsk_ring_size(0), 32768);
        assert_eq!(auto_xsk_ring_size(1), 32768);
        assert_eq!(auto_xsk_ring_size(4), 32768);
        assert_eq!(auto_xsk_ring_size(5), 16384);
        assert_eq!(auto_xsk_ring_size(16), 8192);
        assert_eq!(auto_xsk_ring_size(64), 2048);
        assert_eq!(auto_xsk_ring_size(1024), 2048, "never below 2048");
    }
}
