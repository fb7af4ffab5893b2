//! The XDP program embedded in the binary, and its userspace side.
//!
//! Owns: checking the process may load XDP (capabilities), loading the object with the aya-log
//! level, filling the port map, the exporter allow-list and the mode flags, binding AF_XDP
//! sockets into the XSKMAP, handing out the perf event array, attaching through a bpf_link (so the kernel detaches the program
//! when the process dies, however it dies), reading the per-CPU counters, and draining the
//! program's log records into `tracing`. [`SteerProgram`] owns all of it; dropping it detaches.
//! It knows nothing about flow protocols.

use std::{fmt, net::IpAddr, os::fd::AsRawFd, str::FromStr};

use crate::allow::AllowPrefix;

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, PerfEventArray, XskMap, lpm_trie::Key},
    programs::{Xdp, XdpMode, links::LinkType, loaded_links, xdp::XdpLink},
};
use aya_log::EbpfLogger;
use collector_common::{
    ALLOW_V4_MAP, ALLOW_V6_MAP, AllowValue, CONFIG_ALLOW_LIST, CONFIG_DROP_MODE, CONFIG_MAP,
    CONFIG_PERF_MODE, COUNTERS_MAP, ConfigFlags, Counter, CounterValue, FRAMES_MAP,
    MAX_ALLOW_PREFIXES, MAX_PORTS, MAX_QUEUES, PORTS_MAP, PortKey, PortValue, STEER_PROGRAM,
    XSKS_MAP,
};

/// The eBPF object built by `build.rs` from `collector-ebpf`.
pub static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));

/// `tracing` target of the log records the XDP program emits (its crate's module path).
pub const PROGRAM_LOG_TARGET: &str = "steer";

/// How to attach the XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP, run by the network driver.
    Driver,
    /// Generic XDP, run by the kernel network stack (works on every interface, slower).
    Skb,
    /// Driver mode, falling back to SKB mode when the driver refuses.
    Auto,
}

/// Where the program sends matched datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SteerMode {
    /// Redirect to the AF_XDP socket bound to the frame's RX queue (XDP_PASS when none is).
    Afxdp,
    /// Copy into the per-CPU perf ring and drop.
    Perf,
    /// Drop every matched (allowed) datagram in XDP and count it (`drop_mode_dropped`): a
    /// benchmark/diagnostic mode measuring the XDP_DROP ceiling; nothing is collected.
    Drop,
}

/// What the program is configured with before it is attached.
#[derive(Clone, Debug)]
pub struct SteerConfig {
    /// UDP destination ports to steer.
    pub ports: Vec<PortKey>,
    /// Allowed exporter prefixes; empty allows every source.
    pub allow: Vec<AllowPrefix>,
    /// AF_XDP redirect or perf-ring copy.
    pub mode: SteerMode,
    /// Turn on the program's debug-level log records.
    pub log_debug: bool,
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native XDP.
    Driver,
    /// Generic XDP.
    Skb,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Driver => "driver",
            AttachedMode::Skb => "skb",
        })
    }
}

/// Linux capability numbers the XDP path needs (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The process lacks capabilities needed to load and attach XDP.
#[derive(Debug, thiserror::Error)]
#[error(
    "XDP needs the capabilities CAP_BPF and CAP_NET_ADMIN, plus CAP_NET_RAW for AF_XDP sockets \
     or CAP_PERFMON for perf mode; this process lacks {}. Run as root or grant them (e.g. \
     `setcap cap_bpf,cap_net_admin,cap_net_raw,cap_perfmon+ep <collector binary>`)",
    missing.join(" and ")
)]
pub struct MissingCapabilities {
    /// Names of the missing capabilities, e.g. `["CAP_BPF"]`.
    pub missing: Vec<&'static str>,
}

/// Capabilities XDP needs that are absent from the effective set `cap_eff`.
/// CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8 only know the former).
pub fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// The effective capability set from the `CapEff:` line of a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Capabilities absent from `cap_eff` that the XDP path needs in `mode`: those of
/// [`missing_capabilities`], plus CAP_NET_RAW to open AF_XDP sockets, or CAP_PERFMON (or
/// CAP_SYS_ADMIN) to open perf buffers.
pub fn missing_mode_capabilities(cap_eff: u64, mode: SteerMode) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let mut missing = missing_capabilities(cap_eff);
    match mode {
        SteerMode::Afxdp if !has(CAP_NET_RAW) => missing.push("CAP_NET_RAW"),
        SteerMode::Perf if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) => missing.push("CAP_PERFMON"),
        _ => {}
    }
    missing
}

/// Fails with [`MissingCapabilities`] unless this process may load and attach XDP and open the
/// sockets or buffers of `mode`.
pub fn check_capabilities(mode: SteerMode) -> anyhow::Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let cap_eff = parse_cap_eff(&status).context("no CapEff line in /proc/self/status")?;
    let missing = missing_mode_capabilities(cap_eff, mode);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities { missing }.into())
    }
}

/// Counters of the XDP program summed over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerCounters {
    values: [u64; Counter::COUNT as usize],
}

impl SteerCounters {
    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// Set one counter (used when parsing and in tests).
    pub fn set(&mut self, counter: Counter, value: u64) {
        self.values[counter as usize] = value;
    }

    /// Whether `seen` equals the sum of the verdict counters and `matched` the sum of the
    /// matched outcomes, as the program guarantees for a quiescent snapshot.
    pub fn is_consistent(&self) -> bool {
        let verdicts: u64 = Counter::VERDICTS.iter().map(|c| self.get(*c)).sum();
        let outcomes: u64 = Counter::MATCHED_OUTCOMES.iter().map(|c| self.get(*c)).sum();
        self.get(Counter::Seen) == verdicts && self.get(Counter::Matched) == outcomes
    }
}

/// `seen=1 matched=0 passed_not_matched=1 fragments=0 malformed=0`: the line `collector run`
/// logs and writes to `--counters-file`.
impl fmt::Display for SteerCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", counter.name(), self.get(*counter))?;
        }
        Ok(())
    }
}

/// A counters line that is not the [`SteerCounters`] display format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an XDP counters line: {0}")]
pub struct CountersLineError(String);

impl FromStr for SteerCounters {
    type Err = CountersLineError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut counters = SteerCounters::default();
        let mut found = [false; Counter::COUNT as usize];
        for pair in line.split_whitespace() {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| CountersLineError(format!("`{pair}` is not name=value")))?;
            let counter = Counter::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| CountersLineError(format!("unknown counter `{name}`")))?;
            let value = value
                .parse()
                .map_err(|_| CountersLineError(format!("`{value}` is not a count")))?;
            counters.set(counter, value);
            found[counter as usize] = true;
        }
        if let Some(missing) = Counter::ALL.into_iter().find(|c| !found[*c as usize]) {
            return Err(CountersLineError(format!("`{}` missing", missing.name())));
        }
        Ok(counters)
    }
}

/// The program's per-CPU counter map, shareable with the metrics thread (reading it takes one
/// `bpf(MAP_LOOKUP_ELEM)` per counter; it never blocks the program).
pub struct CounterMap(PerCpuArray<MapData, CounterValue>);

impl CounterMap {
    /// Counters summed over all CPUs.
    pub fn read(&self) -> anyhow::Result<SteerCounters> {
        let mut counters = SteerCounters::default();
        for counter in Counter::ALL {
            let per_cpu = self.0.get(&(counter as u32), 0)?;
            counters.set(counter, per_cpu.iter().sum());
        }
        Ok(counters)
    }
}

impl fmt::Debug for CounterMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CounterMap")
    }
}

/// The loaded and attached XDP program. Dropping it detaches the program (closes the bpf_link).
pub struct SteerProgram {
    // Field order is drop order: detach first, then the log ring, then program and maps.
    _link: XdpLink,
    logger: EbpfLogger<&'static dyn log::Log>,
    counters: std::sync::Arc<CounterMap>,
    ebpf: Ebpf,
    iface: String,
    mode: AttachedMode,
    link_id: u32,
    program_id: u32,
}

impl SteerProgram {
    /// Check capabilities, load the program, fill its maps from `config` and attach it to
    /// `iface` through a bpf_link.
    pub fn attach(iface: &str, mode: AttachMode, config: &SteerConfig) -> anyhow::Result<Self> {
        check_capabilities(config.mode)?;
        let log_debug = config.log_debug;
        let distinct: std::collections::BTreeSet<PortKey> = config.ports.iter().copied().collect();
        ensure!(!distinct.is_empty(), "no listen port configured");
        ensure!(
            distinct.len() <= MAX_PORTS as usize,
            "{} distinct listen ports configured; the XDP port map holds at most {MAX_PORTS}",
            distinct.len()
        );
        let level = if log_debug {
            aya_log::Level::Debug
        } else {
            aya_log::Level::Info
        } as u8;
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, true)
            .load(STEER_OBJECT)
            .context("loading the XDP object")?;
        let logger = EbpfLogger::init(&mut ebpf).context("opening the XDP program's log ring")?;
        {
            let mut port_map: HashMap<_, PortKey, PortValue> = ebpf
                .map_mut(PORTS_MAP)
                .context("port map missing from the XDP object")?
                .try_into()?;
            for port in &distinct {
                port_map
                    .insert(port, 1, 0)
                    .with_context(|| format!("adding port {port} to the XDP port map"))?;
            }
        }
        fill_allow_list(&mut ebpf, &config.allow)?;
        let mut flags: ConfigFlags = 0;
        if !config.allow.is_empty() {
            flags |= CONFIG_ALLOW_LIST;
        }
        match config.mode {
            SteerMode::Afxdp => {}
            SteerMode::Perf => flags |= CONFIG_PERF_MODE,
            SteerMode::Drop => flags |= CONFIG_DROP_MODE,
        }
        {
            let mut config_map: Array<_, ConfigFlags> = ebpf
                .map_mut(CONFIG_MAP)
                .context("config map missing from the XDP object")?
                .try_into()?;
            config_map
                .set(0, flags, 0)
                .context("writing the XDP config map")?;
        }
        let program: &mut Xdp = ebpf
            .program_mut(STEER_PROGRAM)
            .context("XDP program missing from the object")?
            .try_into()?;
        program
            .load()
            .context("loading the XDP program into the kernel (verifier)")?;
        let (link_id, mode) = match mode {
            AttachMode::Driver => (
                attach_in(program, iface, XdpMode::Driver)?,
                AttachedMode::Driver,
            ),
            AttachMode::Skb => (attach_in(program, iface, XdpMode::Skb)?, AttachedMode::Skb),
            AttachMode::Auto => match attach_in(program, iface, XdpMode::Driver) {
                Ok(id) => (id, AttachedMode::Driver),
                Err(driver_err) => {
                    tracing::info!(%iface, "driver-mode XDP refused ({driver_err:#}); trying SKB mode");
                    (attach_in(program, iface, XdpMode::Skb)?, AttachedMode::Skb)
                }
            },
        };
        let link = program.take_link(link_id)?;
        let program_id = program.info()?.id();
        let counters: PerCpuArray<MapData, CounterValue> = ebpf
            .take_map(COUNTERS_MAP)
            .context("counter map missing from the XDP object")?
            .try_into()?;
        // aya falls back to netlink attachment when bpf_link_create is refused; such an
        // attachment outlives the process. Accept only a real XDP bpf_link of our program.
        let Some(kernel_link) = loaded_links().filter_map(Result::ok).find(|info| {
            info.program_id() == program_id && info.link_type().ok() == Some(LinkType::Xdp)
        }) else {
            drop(link);
            bail!(
                "the kernel attached the XDP program to {iface} through netlink, not a bpf_link, \
                 so it would stay attached if collector died; collector needs Linux 5.9 or newer"
            );
        };
        Ok(SteerProgram {
            _link: link,
            logger,
            counters: std::sync::Arc::new(CounterMap(counters)),
            ebpf,
            iface: iface.to_owned(),
            mode,
            link_id: kernel_link.id(),
            program_id,
        })
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The mode the program is attached in.
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Kernel ids of the bpf_link and the program (as `bpftool link` / `bpftool prog` show).
    pub fn kernel_ids(&self) -> (u32, u32) {
        (self.link_id, self.program_id)
    }

    /// Counters summed over all CPUs.
    pub fn counters(&self) -> anyhow::Result<SteerCounters> {
        self.counters.read()
    }

    /// The counter map, for readers on other threads (metrics).
    pub fn counter_map(&self) -> std::sync::Arc<CounterMap> {
        std::sync::Arc::clone(&self.counters)
    }

    /// Bind the AF_XDP socket `socket` to RX queue `queue` in the XSKMAP: from now on the
    /// program redirects that queue's matched frames to it.
    pub fn bind_socket(&mut self, queue: u32, socket: impl AsRawFd) -> anyhow::Result<()> {
        ensure!(
            queue < MAX_QUEUES,
            "RX queue {queue} is beyond the XSKMAP's {MAX_QUEUES} slots"
        );
        let mut map: XskMap<_> = self
            .ebpf
            .map_mut(XSKS_MAP)
            .context("XSKMAP missing from the XDP object")?
            .try_into()?;
        map.set(queue, socket, 0)
            .with_context(|| format!("binding the AF_XDP socket of queue {queue} in the XSKMAP"))
    }

    /// Take the perf event array matched frames are copied to in perf mode (once).
    pub fn take_frames(&mut self) -> anyhow::Result<PerfEventArray<MapData>> {
        let map = self
            .ebpf
            .take_map(FRAMES_MAP)
            .context("perf event array missing from the XDP object (already taken?)")?;
        Ok(map.try_into()?)
    }

    /// File descriptor of the program's log ring, readable when records wait.
    pub fn log_fd(&self) -> std::os::fd::RawFd {
        self.logger.as_raw_fd()
    }

    /// Forward every waiting log record of the program to `tracing` (through the `log` bridge).
    pub fn flush_log(&mut self) {
        self.logger.flush();
    }
}

fn fill_allow_list(ebpf: &mut Ebpf, allow: &[AllowPrefix]) -> anyhow::Result<()> {
    let (v4, v6): (Vec<&AllowPrefix>, Vec<&AllowPrefix>) =
        allow.iter().partition(|p| p.addr.is_ipv4());
    for (family, count) in [("IPv4", v4.len()), ("IPv6", v6.len())] {
        ensure!(
            count <= MAX_ALLOW_PREFIXES as usize,
            "{count} {family} allow prefixes; the XDP allow-list holds at most {MAX_ALLOW_PREFIXES}"
        );
    }
    {
        let mut trie: LpmTrie<_, [u8; 4], AllowValue> = ebpf
            .map_mut(ALLOW_V4_MAP)
            .context("IPv4 allow-list missing from the XDP object")?
            .try_into()?;
        for prefix in &v4 {
            if let IpAddr::V4(addr) = prefix.addr {
                trie.insert(&Key::new(u32::from(prefix.len), addr.octets()), 1, 0)
                    .with_context(|| format!("adding {prefix} to the XDP allow-list"))?;
            }
        }
    }
    let mut trie: LpmTrie<_, [u8; 16], AllowValue> = ebpf
        .map_mut(ALLOW_V6_MAP)
        .context("IPv6 allow-list missing from the XDP object")?
        .try_into()?;
    for prefix in &v6 {
        if let IpAddr::V6(addr) = prefix.addr {
            trie.insert(&Key::new(u32::from(prefix.len), addr.octets()), 1, 0)
                .with_context(|| format!("adding {prefix} to the XDP allow-list"))?;
        }
    }
    Ok(())
}

fn attach_in(
    program: &mut Xdp,
    iface: &str,
    mode: XdpMode,
) -> anyhow::Result<aya::programs::xdp::XdpLinkId> {
    program
        .attach(iface, mode)
        .with_context(|| format!("attaching the XDP program to {iface} in {mode:?} mode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_named_when_missing() {
        let net_admin = 1u64 << CAP_NET_ADMIN;
        let bpf = 1u64 << CAP_BPF;
        let sys_admin = 1u64 << CAP_SYS_ADMIN;
        assert!(missing_capabilities(net_admin | bpf).is_empty());
        assert!(missing_capabilities(net_admin | sys_admin).is_empty());
        assert!(missing_capabilities(0x0000_01ff_feff_ffff).is_empty());
        assert_eq!(missing_capabilities(net_admin), ["CAP_BPF"]);
        assert_eq!(missing_capabilities(bpf), ["CAP_NET_ADMIN"]);
        assert_eq!(missing_capabilities(0), ["CAP_BPF", "CAP_NET_ADMIN"]);
        let message = MissingCapabilities {
            missing: missing_capabilities(bpf),
        }
        .to_string();
        assert!(message.contains("lacks CAP_NET_ADMIN"), "{message}");
    }

    #[test]
    fn mode_capabilities_add_net_raw_or_perfmon() {
        let base = (1u64 << CAP_NET_ADMIN) | (1u64 << CAP_BPF);
        assert_eq!(
            missing_mode_capabilities(base, SteerMode::Afxdp),
            ["CAP_NET_RAW"]
        );
        assert!(missing_mode_capabilities(base | 1 << CAP_NET_RAW, SteerMode::Afxdp).is_empty());
        assert_eq!(
            missing_mode_capabilities(base, SteerMode::Perf),
            ["CAP_PERFMON"]
        );
        assert!(missing_mode_capabilities(base | 1 << CAP_PERFMON, SteerMode::Perf).is_empty());
        assert!(missing_mode_capabilities(base | 1 << CAP_SYS_ADMIN, SteerMode::Perf).is_empty());
        // Drop mode opens neither sockets nor perf buffers.
        assert!(missing_mode_capabilities(base, SteerMode::Drop).is_empty());
        assert_eq!(
            missing_mode_capabilities(1 << CAP_NET_RAW, SteerMode::Afxdp),
            ["CAP_BPF", "CAP_NET_ADMIN"]
        );
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tcollector\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t0000008000001000\nCapBnd:\t000001fffeffffff\n";
        let cap_eff = parse_cap_eff(status).unwrap();
        assert_eq!(cap_eff, (1 << CAP_BPF) | (1 << CAP_NET_ADMIN));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn counters_line_round_trips() {
        let mut counters = SteerCounters::default();
        for (value, counter) in Counter::ALL.into_iter().enumerate() {
            counters.set(counter, value as u64 * 1000 + 7);
        }
        let line = counters.to_string();
        assert_eq!(
            line,
            "seen=7 matched=1007 passed_not_matched=2007 fragments=3007 malformed=4007 \
             dropped_not_allowed=5007 redirected=6007 passed_no_socket=7007 perf_copied=8007 \
             perf_failed=9007 drop_mode_dropped=10007"
        );
        assert_eq!(line.parse::<SteerCounters>(), Ok(counters));
    }

    #[test]
    fn counters_line_rejects_garbage() {
        assert!("seen=1 matched=2".parse::<SteerCounters>().is_err());
        assert!(
            "seen=1 matched=x passed_not_matched=0 fragments=0 malformed=0"
                .parse::<SteerCounters>()
                .is_err()
        );
        assert!(
            "seen=1 matched=0 passed_not_matched=0 fragments=0 malformed=0 bogus=1"
                .parse::<SteerCounters>()
                .is_err()
        );
    }

    #[test]
    fn consistency_means_seen_is_the_sum() {
        let mut counters: SteerCounters =
            "seen=7 matched=6 passed_not_matched=0 fragments=0 malformed=1 \
             dropped_not_allowed=1 redirected=1 passed_no_socket=1 perf_copied=1 perf_failed=1 \
             drop_mode_dropped=1"
                .parse()
                .unwrap();
        assert!(counters.is_consistent());
        counters.set(Counter::Seen, 8);
        assert!(!counters.is_consistent());
        counters.set(Counter::Seen, 7);
        counters.set(Counter::Redirected, 2);
        assert!(!counters.is_consistent());
    }

    #[test]
    fn embedded_object_holds_the_program_and_its_maps() {
        let contains = |name: &str| {
            STEER_OBJECT
                .windows(name.len() + 1)
                .any(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
        };
        for name in [
            STEER_PROGRAM,
            PORTS_MAP,
            COUNTERS_MAP,
            ALLOW_V4_MAP,
            ALLOW_V6_MAP,
            CONFIG_MAP,
            XSKS_MAP,
            FRAMES_MAP,
            "AYA_LOGS",
            aya_log::LEVEL,
        ] {
            assert!(contains(name), "{name} missing from the embedded object");
        }
        assert_eq!(&STEER_OBJECT[..4], b"\x7fELF");
    }
}
