//! `collector run --xdp IFACE`: the XDP fast path feeding the same workers, decoders and rings as
//! socket mode, with the UDP sockets kept open as the slow path.
//!
//! Owns the XDP-mode setup and lifecycle: place one lane per RX queue (afxdp and drop mode) or
//! per CPU (perf mode) on the CPU that services it ([`plan_lanes`]), bind each lane's share of the
//! UDP sockets, attach the `steer` program, open each lane's AF_XDP sockets (inserted into the
//! XSKMAP) or perf buffers, drop privileges, run the lanes with [`run_lanes`] (metrics, SIGHUP
//! reload, SIGTERM drain), meanwhile forward the program's log records and write its counters
//! report, and detach the program as soon as shutdown starts. The per-lane [`XdpLaneSource`]
//! merges a worker's fast-path sources and its UDP sockets into one [`Source`], counting what came
//! through the slow path, and waits for them as its [`SpinPolicy`] says (spin on the rings, then
//! sleep in poll(2)).

use super::counters::{PerfCpuCounters, XskQueueCounters, bump};
use super::lanes::{Lane, LaneOptions, run_lanes};
use super::udp::{bind_sources, create_ring_dir, open_rings, sampling_reload};
use super::{Source, SourceLosses};
use crate::allow::AllowList;
use crate::config::{FlagConfig, Settings};
use crate::decode::{DatagramMeta, Decoder, DecoderConfig};
use crate::metrics::XdpMetrics;
use crate::ring::WorkerRings;
use crate::source::perf::PerfSource;
use crate::source::rx_queues::{queue_cpus, rx_queue_count};
use crate::source::udp::UdpSource;
use crate::source::xsk::{XskConfig, XskSource};
use crate::xdp::{
    AttachMode, CounterMap, PROGRAM_LOG_TARGET, SteerConfig, SteerMode, SteerProgram,
};
use anyhow::Context as _;
use aya::maps::{MapData, PerfEventArray};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Pages (4 KiB) of each CPU's perf buffer in perf mode.
pub const PERF_PAGES: usize = 256;
/// While the fast path delivers, the slow-path sockets are read every this many batches (and on
/// every batch where the fast path delivered nothing).
const SLOW_PATH_EVERY: u32 = 8;
/// Fast-path ring checks between two clock reads while spinning.
const SPIN_CHECKS: u32 = 64;
/// Default of `--xdp-spin-us`: how long a worker spins on its fast-path rings after the last
/// frame (zero: it sleeps in poll(2) as soon as they are empty).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(crate::config::DEFAULT_XDP_SPIN_US);
/// Longest wait for a log record before the stop flag and the report clock are looked at again.
const LOG_POLL: Duration = Duration::from_millis(20);

/// How long a worker keeps checking its fast-path rings without a syscall after the last frame
/// arrived, before it sleeps in poll(2) (`--xdp-spin-us`).
///
/// Sleeping costs a wake-up per NAPI run under load, paid on the CPU that received the frames,
/// and the worker reacts a wake-up later. Spinning while frames keep coming avoids both, at the
/// price of the worker's core (and of its SMT sibling's speed: on the 2-vCPU test machine that
/// cost more than it saved, so the default window is zero — BENCHMARKS.md, e2e-xdp); stopping
/// once the fast path has been quiet for the whole window keeps an idle collector from burning
/// its core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinPolicy {
    window: Duration,
}

impl SpinPolicy {
    /// Spin for at most `window` after the last frame; `Duration::ZERO`: never spin.
    pub const fn new(window: Duration) -> Self {
        SpinPolicy { window }
    }

    /// Until when to spin at `now`, the fast path's last frame having arrived at `last_frame`:
    /// `None` (sleep) when spinning is off, nothing arrived yet, or the fast path has been quiet
    /// for the whole window.
    pub fn spin_until(&self, last_frame: Option<Instant>, now: Instant) -> Option<Instant> {
        let until = last_frame?.checked_add(self.window)?;
        (until > now).then_some(until)
    }
}

/// What `collector run --xdp` takes besides the common settings.
#[derive(Clone, Debug)]
pub struct XdpOptions {
    /// Interface to attach to.
    pub iface: String,
    /// Driver, SKB or auto attach.
    pub attach: AttachMode,
    /// AF_XDP, perf or drop mode.
    pub mode: SteerMode,
    /// Period of the counters report.
    pub report_interval: Duration,
    /// Where to write each counters report (one line, replaced atomically).
    pub counters_file: Option<PathBuf>,
}

/// The fast-path units (RX queues, or CPUs in perf mode) one worker owns, and its core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanePlan {
    /// CPU the worker is pinned to: the CPU of its first unit.
    pub core: u32,
    /// RX queue indices (afxdp, drop) or CPU ids (perf).
    pub units: Vec<u32>,
}

/// Spread `units` — (RX queue or CPU, the CPU serving it) — over workers: one worker per unit by
/// default; with `workers` given, at most that many, unit `i` going to worker `i % workers`.
/// More workers than units are not started (a worker without a fast-path unit would only share
/// the slow path).
pub fn plan_lanes(units: &[(u32, u32)], workers: Option<usize>) -> Vec<LanePlan> {
    let count = workers.map_or(units.len(), |w| w.min(units.len())).max(1);
    let mut plans: Vec<LanePlan> = Vec::with_capacity(count);
    for (index, &(unit, cpu)) in units.iter().enumerate() {
        match plans.get_mut(index % count) {
            Some(plan) => plan.units.push(unit),
            None => plans.push(LanePlan {
                core: cpu,
                units: vec![unit],
            }),
        }
    }
    plans
}

/// One worker's sources in XDP mode: its AF_XDP sockets or perf buffers (the fast path) and its
/// UDP sockets on the listen addresses (the slow path: fragments, frames the program passed).
pub struct XdpLaneSource {
    xsk: Vec<(XskSource, Arc<XskQueueCounters>)>,
    perf: Vec<(PerfSource, Arc<PerfCpuCounters>)>,
    slow: UdpSource,
    slow_path: Arc<AtomicU64>,
    pollfds: Vec<libc::pollfd>,
    batches: u32,
    spin: SpinPolicy,
    /// When the fast path last delivered a frame.
    last_frame: Option<Instant>,
}

impl XdpLaneSource {
    /// A lane over `xsk` sockets and `perf` buffers (either may be empty) and the UDP sockets
    /// `slow`; datagrams from `slow` are counted in `slow_path`. Before sleeping the lane spins
    /// on its fast-path rings as [`DEFAULT_SPIN`] says (another window: [`Self::with_spin`]).
    pub fn new(
        xsk: Vec<(XskSource, Arc<XskQueueCounters>)>,
        perf: Vec<(PerfSource, Arc<PerfCpuCounters>)>,
        slow: UdpSource,
        slow_path: Arc<AtomicU64>,
    ) -> Self {
        let fds = xsk
            .iter()
            .map(|(s, _)| s.fd())
            .chain(perf.iter().map(|(s, _)| s.fd()))
            .chain(slow.sockets().iter().map(|s| s.as_raw_fd()));
        let pollfds = fds
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        XdpLaneSource {
            xsk,
            perf,
            slow,
            slow_path,
            pollfds,
            batches: 0,
            spin: SpinPolicy::new(DEFAULT_SPIN),
            last_frame: None,
        }
    }

    /// Spin on the fast-path rings before sleeping as `spin` says.
    pub fn with_spin(mut self, spin: SpinPolicy) -> Self {
        self.spin = spin;
        self
    }

    /// Whether a fast-path ring holds something (memory loads only, no syscall unless an AF_XDP
    /// socket busy-polls: then its queue's NAPI runs first).
    fn fast_pending(&self) -> bool {
        for (source, _) in &self.xsk {
            source.busy_poll();
        }
        self.xsk.iter().any(|(s, _)| s.has_pending())
            || self.perf.iter().any(|(s, _)| s.has_pending())
    }

    /// Check the fast-path rings until one holds something (true) or `until` passes (false).
    fn spin(&self, until: Instant) -> bool {
        loop {
            // The clock is read every SPIN_CHECKS ring checks.
            for _ in 0..SPIN_CHECKS {
                if self.fast_pending() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// One pass over every source without waiting.
    fn recv_ready(
        &mut self,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> std::io::Result<usize> {
        let mut fast = 0;
        for (source, _) in &mut self.xsk {
            fast += source.recv_batch(Duration::ZERO, deliver)?;
        }
        for (source, _) in &mut self.perf {
            fast += source.recv_batch(Duration::ZERO, deliver)?;
        }
        self.publish();
        if fast > 0 {
            self.last_frame = Some(Instant::now());
        }
        self.batches = self.batches.wrapping_add(1);
        if fast > 0 && !self.batches.is_multiple_of(SLOW_PATH_EVERY) {
            return Ok(fast);
        }
        let slow = self.slow.recv_batch(Duration::ZERO, deliver)?;
        bump(&self.slow_path, slow as u64);
        Ok(fast + slow)
    }

    /// Read every AF_XDP socket's kernel statistics, and the UDP sockets' drop counts, now and
    /// publish them.
    fn refresh_kernel_stats(&mut self) {
        for (source, _) in &mut self.xsk {
            source.refresh_kernel_stats();
        }
        self.slow.count_quiet_drops();
        self.publish();
    }

    /// Copy every fast-path source's counters into the atomics the metrics read.
    fn publish(&self) {
        for (source, counters) in &self.xsk {
            let stats = source.stats();
            counters.datagrams.store(stats.delivered, Relaxed);
            counters.rx_dropped.store(stats.rx_dropped, Relaxed);
            counters.rx_ring_full.store(stats.rx_ring_full, Relaxed);
            counters
                .fill_ring_empty
                .store(stats.fill_ring_empty, Relaxed);
            counters
                .invalid_descriptors
                .store(stats.rx_invalid_descs, Relaxed);
            counters.discarded.store(
                stats.not_matched + stats.bad_udp_length + stats.bad_descriptor,
                Relaxed,
            );
        }
        for (source, counters) in &self.perf {
            let stats = source.stats();
            counters.datagrams.store(stats.delivered, Relaxed);
            counters.lost_samples.store(stats.lost_samples, Relaxed);
            counters.discarded.store(stats.discarded(), Relaxed);
        }
    }
}

impl Source for XdpLaneSource {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> std::io::Result<usize> {
        let received = self.recv_ready(deliver)?;
        if received > 0 {
            return Ok(received);
        }
        if timeout.is_zero() {
            return Ok(0);
        }
        let now = Instant::now();
        if let Some(until) = self.spin.spin_until(self.last_frame, now)
            && self.spin(until.min(now + timeout))
        {
            return self.recv_ready(deliver);
        }
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pollfds` is a valid array of `len` pollfd structs; every descriptor belongs to
        // a source this value owns.
        let ready = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                millis,
            )
        };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            return if err.kind() == std::io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            };
        }
        if ready == 0 {
            // Idle: a good moment for the kernel's AF_XDP statistics (one getsockopt each).
            self.refresh_kernel_stats();
            return Ok(0);
        }
        self.recv_ready(deliver)
    }

    /// AF_XDP drops and discards, perf discards, and the UDP sockets' drops and truncations.
    fn losses(&self) -> SourceLosses {
        let mut losses = self.slow.losses();
        for (source, _) in &self.xsk {
            losses.kernel_drops += source.losses().kernel_drops;
        }
        for (source, _) in &self.perf {
            losses.kernel_drops += source.losses().kernel_drops;
        }
        losses
    }

    fn refresh_losses(&mut self) {
        self.refresh_kernel_stats();
    }

    /// The UDP sockets (the program is detached before the workers stop: nothing more comes
    /// through the fast path).
    fn seal(&mut self) -> std::io::Result<()> {
        self.slow.seal()
    }
}

/// `collector run --xdp IFACE`: bind, attach, collect until SIGINT/SIGTERM, detach, drain.
///
/// Order matters for loss: the UDP sockets are bound before the program is attached (so what it
/// passes always finds a socket), and on shutdown the program is detached first, so datagrams that
/// keep coming land in the UDP sockets while the workers drain the AF_XDP rings and the sockets.
pub fn run(settings: &Settings, flags: &FlagConfig, options: &XdpOptions) -> anyhow::Result<()> {
    // Missing capabilities first: that is the error to report, before any port is taken.
    crate::xdp::check_capabilities(options.mode)?;
    create_ring_dir(settings)?;
    let metrics_listener = std::net::TcpListener::bind(settings.metrics)
        .with_context(|| format!("binding the metrics endpoint {}", settings.metrics))?;
    let mut ports: Vec<u16> = settings.listen.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    let iface = options.iface.as_str();

    let units = fast_path_units(iface, options.mode)?;
    let workers = (!settings.workers_is_default).then_some(settings.workers);
    let plans = plan_lanes(&units, workers);
    let slow_sources = bind_sources(
        &settings.listen,
        settings.listen_is_default,
        plans.len(),
        settings.rcvbuf,
        // The program passes IP fragments and unmatched frames to the kernel unfiltered: these
        // sockets check the allow-list themselves.
        &AllowList::new(&settings.allow),
    )?;

    let config = SteerConfig {
        ports: ports.clone(),
        allow: settings.allow.clone(),
        mode: options.mode,
        log_debug: tracing::enabled!(target: PROGRAM_LOG_TARGET, tracing::Level::DEBUG),
    };
    let mut program = SteerProgram::attach(iface, options.attach, &config)?;
    let (link_id, program_id) = program.kernel_ids();
    tracing::info!(
        iface,
        mode = %program.mode(),
        link_id,
        program_id,
        ?ports,
        xdp_mode = ?options.mode,
        allow = settings.allow.len(),
        "XDP program attached through a bpf_link"
    );
    let mut frames = match options.mode {
        SteerMode::Perf => Some(program.take_frames()?),
        _ => None,
    };
    let FastPath {
        lanes,
        queues,
        cpus,
        slow_path,
    } = open_lanes(
        settings,
        options,
        &ports,
        &plans,
        slow_sources,
        &mut program,
        frames.as_mut(),
    )?;
    crate::control::check_startup()?;
    let counter_map = program.counter_map();
    report(&counter_map, iface, options.counters_file.as_deref())?;
    if let Some(user) = settings.user.as_deref() {
        // Before any thread starts: no other thread may exist while the ids change.
        let account = crate::privilege::drop_to_user(user, &[crate::privilege::CAP_BPF])?;
        tracing::info!(
            user,
            uid = account.uid,
            gid = account.gid,
            "privileges dropped (CAP_BPF kept)"
        );
    }

    let metrics_map = Arc::clone(&counter_map);
    let xdp_metrics = Arc::new(XdpMetrics {
        program: Box::new(move || metrics_map.read().ok()),
        queues,
        cpus,
        slow_path,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers_stop = Arc::new(AtomicBool::new(false));
    let lane_options = LaneOptions {
        metrics_listener,
        summary_interval: settings.summary_interval,
        stop: Arc::clone(&stop),
        workers_stop: Some(Arc::clone(&workers_stop)),
        reload: sampling_reload(settings, flags),
        pin: true,
        cores: plans.iter().map(|p| p.core as usize).collect(),
        xdp: Some(xdp_metrics),
    };
    tracing::info!(metrics = %settings.metrics, workers = lanes.len(), "serving /metrics");
    let lanes_thread = std::thread::Builder::new()
        .name("lanes".into())
        .spawn(move || run_lanes(lanes, lane_options).map(|outcome| outcome.totals))
        .context("starting the lanes")?;
    let attached = supervise(
        program,
        &lanes_thread,
        &stop,
        &workers_stop,
        &counter_map,
        options,
    );
    let outcome = lanes_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the lanes thread panicked"))?;
    if let Some(mut program) = attached {
        program.flush_log();
        drop(program);
        tracing::info!(iface, "XDP program detached");
    }
    drop(frames.take());
    report(&counter_map, iface, options.counters_file.as_deref())?;
    outcome.map(|_| ())
}

/// What [`open_lanes`] built: the lanes and the counters their sources publish.
struct FastPath {
    lanes: Vec<Lane<XdpLaneSource, Decoder, WorkerRings>>,
    queues: Vec<Arc<XskQueueCounters>>,
    cpus: Vec<Arc<PerfCpuCounters>>,
    slow_path: Vec<Arc<AtomicU64>>,
}

/// Build one lane per plan: its AF_XDP sockets (bound into the XSKMAP) or perf buffers, its UDP
/// sockets `slow_sources[i]`, a decoder and its rings.
fn open_lanes(
    settings: &Settings,
    options: &XdpOptions,
    ports: &[u16],
    plans: &[LanePlan],
    slow_sources: Vec<UdpSource>,
    program: &mut SteerProgram,
    mut frames: Option<&mut PerfEventArray<MapData>>,
) -> anyhow::Result<FastPath> {
    let iface = options.iface.as_str();
    let queues = plans.iter().map(|p| p.units.len()).sum();
    let xsk_config = XskConfig {
        ring_size: settings
            .xsk_ring_size
            .unwrap_or_else(|| crate::config::auto_xsk_ring_size(queues)),
        zero_copy: settings.xdp_zero_copy,
        busy_poll: settings.xdp_busy_poll,
        ..XskConfig::default()
    };
    let mut built = FastPath {
        lanes: Vec::with_capacity(plans.len()),
        queues: Vec::new(),
        cpus: Vec::new(),
        slow_path: Vec::new(),
    };
    for (worker, (plan, slow)) in plans.iter().zip(slow_sources).enumerate() {
        // A stop asked for while the rings are made ends the startup between two of them.
        crate::control::check_startup()?;
        let mut xsk = Vec::new();
        let mut perf = Vec::new();
        for &unit in &plan.units {
            match (options.mode, frames.as_deref_mut()) {
                (SteerMode::Afxdp, _) => {
                    let source = XskSource::open(iface, unit, ports, xsk_config)?;
                    program.bind_socket(unit, source.fd())?;
                    tracing::info!(
                        worker,
                        queue = unit,
                        zero_copy = source.is_zero_copy(),
                        ring_size = xsk_config.ring_size,
                        busy_poll = xsk_config.busy_poll,
                        spin_us = settings.xdp_spin.as_micros() as u64,
                        "AF_XDP socket bound"
                    );
                    let counters = Arc::new(XskQueueCounters {
                        queue: unit,
                        worker,
                        zero_copy: source.is_zero_copy(),
                        ..Default::default()
                    });
                    built.queues.push(Arc::clone(&counters));
                    xsk.push((source, counters));
                }
                (SteerMode::Perf, Some(frames)) => {
                    let source = PerfSource::open(frames, unit, PERF_PAGES, ports)?;
                    let counters = Arc::new(PerfCpuCounters {
                        cpu: unit,
                        worker,
                        ..Default::default()
                    });
                    built.cpus.push(Arc::clone(&counters));
                    perf.push((source, counters));
                }
                // Drop mode: the program drops what it matches; the lane has the slow path only.
                _ => {}
            }
        }
        let slow_count = Arc::new(AtomicU64::new(0));
        built.slow_path.push(Arc::clone(&slow_count));
        built.lanes.push(Lane {
            source: XdpLaneSource::new(xsk, perf, slow, slow_count)
                .with_spin(SpinPolicy::new(settings.xdp_spin)),
            decoder: Decoder::with_config(DecoderConfig {
                sampling: settings.sampling.to_configured(settings.sampling_override),
                ..Default::default()
            }),
            sink: open_rings(settings, worker)?,
        });
    }
    Ok(built)
}

/// While the lanes run: forward the program's log records, write the counters report every
/// `--report-interval`, and once `stop` is set detach the program, then set `workers_stop` so
/// the workers drain. Returns the program if it is still attached (the lanes ended on their own).
fn supervise(
    program: SteerProgram,
    lanes_thread: &std::thread::JoinHandle<anyhow::Result<crate::metrics::Totals>>,
    stop: &AtomicBool,
    workers_stop: &AtomicBool,
    counter_map: &CounterMap,
    options: &XdpOptions,
) -> Option<SteerProgram> {
    let iface = options.iface.as_str();
    let period = options.report_interval;
    let mut next_report = Instant::now() + period;
    let mut attached = Some(program);
    while !lanes_thread.is_finished() {
        let Some(program) = attached.as_mut() else {
            std::thread::sleep(LOG_POLL);
            continue;
        };
        if stop.load(Relaxed) {
            // Detach before the workers drain: from now on every datagram goes to the UDP
            // sockets, which they drain with the AF_XDP rings and perf buffers.
            program.flush_log();
            drop(attached.take());
            tracing::info!(iface, "XDP program detached; draining");
            workers_stop.store(true, Relaxed);
            continue;
        }
        match crate::source::wait_readable(program.log_fd(), LOG_POLL) {
            Ok(true) => program.flush_log(),
            Ok(false) => {}
            Err(err) => {
                tracing::error!(%err, "polling the XDP log ring failed; stopping");
                stop.store(true, Relaxed);
            }
        }
        if Instant::now() >= next_report {
            next_report += period;
            if let Err(err) = report(counter_map, iface, options.counters_file.as_deref()) {
                tracing::warn!("{err:#}");
            }
        }
    }
    attached
}

/// The fast-path units of `mode` and the CPU serving each: (RX queue, CPU of its IRQ or
/// round robin) for afxdp and drop mode, (CPU, CPU) for perf mode.
fn fast_path_units(iface: &str, mode: SteerMode) -> anyhow::Result<Vec<(u32, u32)>> {
    match mode {
        SteerMode::Afxdp | SteerMode::Drop => {
            let queues = rx_queue_count(iface)?;
            anyhow::ensure!(queues > 0, "{iface} has no RX queue");
            let cpus: Vec<u32> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| u32::try_from(c.id).ok())
                .collect();
            let cpus = if cpus.is_empty() { vec![0] } else { cpus };
            let placed = queue_cpus(iface, queues, &cpus)?;
            for p in &placed {
                tracing::info!(
                    queue = p.queue,
                    cpu = p.cpu,
                    from_irq = p.from_irq,
                    "RX queue placed"
                );
            }
            Ok(placed.iter().map(|p| (p.queue, p.cpu)).collect())
        }
        SteerMode::Perf => {
            let cpus = aya::util::online_cpus()
                .map_err(|(_, err)| err)
                .context("reading the online CPUs")?;
            anyhow::ensure!(!cpus.is_empty(), "no online CPU");
            Ok(cpus.into_iter().map(|cpu| (cpu, cpu)).collect())
        }
    }
}

/// Log the program's counters and write them to `counters_file` (replaced atomically).
fn report(counters: &CounterMap, iface: &str, counters_file: Option<&Path>) -> anyhow::Result<()> {
    let counters = counters.read()?;
    tracing::info!(iface, "xdp counters {counters}");
    if let Some(path) = counters_file {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{counters}\n"))
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lane_per_unit_on_its_cpu_by_default() {
        let units = [(0, 2), (1, 3), (2, 0), (3, 1)];
        let plans = plan_lanes(&units, None);
        assert_eq!(
            plans,
            [
                LanePlan {
                    core: 2,
                    units: vec![0]
                },
                LanePlan {
                    core: 3,
                    units: vec![1]
                },
                LanePlan {
                    core: 0,
                    units: vec![2]
                },
                LanePlan {
                    core: 1,
                    units: vec![3]
                },
            ]
        );
    }

    #[test]
    fn workers_cap_the_lanes_and_share_units_round_robin() {
        let units = [(0, 0), (1, 1), (2, 0), (3, 1), (4, 0)];
        let plans = plan_lanes(&units, Some(2));
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].units, [0, 2, 4]);
        assert_eq!(plans[1].units, [1, 3]);
        assert_eq!((plans[0].core, plans[1].core), (0, 1));
        // More workers than units: one per unit, no idle worker.
        assert_eq!(plan_lanes(&units, Some(16)).len(), 5);
        assert_eq!(plan_lanes(&units, Some(1))[0].units, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn spinning_lasts_the_window_after_the_last_frame_then_stops() {
        let policy = SpinPolicy::new(Duration::from_micros(200));
        let t0 = Instant::now();
        // Nothing arrived yet: an idle collector sleeps.
        assert_eq!(policy.spin_until(None, t0), None);
        // Frames coming: spin until the window after the last one.
        let until = t0 + Duration::from_micros(200);
        assert_eq!(policy.spin_until(Some(t0), t0), Some(until));
        assert_eq!(
            policy.spin_until(Some(t0), t0 + Duration::from_micros(150)),
            Some(until)
        );
        // Quiet for the whole window: sleep, however long it stays quiet.
        assert_eq!(
            policy.spin_until(Some(t0), t0 + Duration::from_micros(200)),
            None
        );
        assert_eq!(
            policy.spin_until(Some(t0), t0 + Duration::from_secs(60)),
            None
        );
        // A window of zero never spins.
        let never = SpinPolicy::new(Duration::ZERO);
        assert_eq!(never.spin_until(Some(t0), t0), None);
    }

    #[test]
    fn an_idle_lane_sleeps_instead_of_spinning() {
        use crate::source::udp::UdpSocket;
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let target = socket.local_addr();
        let mut lane = XdpLaneSource::new(
            Vec::new(),
            Vec::new(),
            UdpSource::new(vec![socket]),
            Arc::new(AtomicU64::new(0)),
        )
        .with_spin(SpinPolicy::new(Duration::from_millis(5)));
        // Pretend the fast path delivered just now: the lane spins at most its window, then
        // sleeps in poll(2) and still sees the slow path's datagram.
        lane.last_frame = Some(Instant::now());
        let cpu_before = thread_cpu_time();
        let started = Instant::now();
        assert_eq!(
            lane.recv_batch(Duration::from_millis(300), &mut |_, _| {})
                .unwrap(),
            0
        );
        let waited = started.elapsed();
        let cpu = thread_cpu_time() - cpu_before;
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        // 5 ms of spinning at most (plus scheduling noise), not 300 ms.
        assert!(
            cpu < Duration::from_millis(100),
            "{cpu:?} of CPU in {waited:?}"
        );
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&[7], target).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.is_empty() && Instant::now() < deadline {
            lane.recv_batch(Duration::from_millis(50), &mut |_, payload| {
                got.extend_from_slice(payload)
            })
            .unwrap();
        }
        assert_eq!(got, [7]);
    }

    /// CPU time this thread used so far.
    fn thread_cpu_time() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: one valid timespec to write.
        let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(ret, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn slow_path_datagrams_are_delivered_and_counted() {
        use crate::source::udp::UdpSocket;
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let target = socket.local_addr();
        let slow_path = Arc::new(AtomicU64::new(0));
        let mut lane = XdpLaneSource::new(
            Vec::new(),
            Vec::new(),
            UdpSource::new(vec![socket]),
            Arc::clone(&slow_path),
        );
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for n in 0..3u8 {
            sender.send_to(&[n], target).unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 && Instant::now() < deadline {
            lane.recv_batch(Duration::from_millis(50), &mut |meta, payload| {
                assert_eq!(meta.exporter, sender.local_addr().unwrap());
                got.extend_from_slice(payload);
            })
            .unwrap();
        }
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(slow_path.load(Relaxed), 3);
        assert_eq!(lane.losses(), SourceLosses::default());
        // Nothing waiting: a timeout, not an error.
        assert_eq!(
            lane.recv_batch(Duration::from_millis(10), &mut |_, _| {})
                .unwrap(),
            0
        );
    }
}
