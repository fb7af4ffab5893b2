//! `collector run`: collect from UDP sockets (the default, unprivileged), or through the XDP
//! fast path on an interface (`--xdp IFACE`), until SIGINT/SIGTERM.
//!
//! Thin: argument parsing only. Settings (flags + config file, which may name the XDP interface
//! too) are resolved in [`crate::config`];
//! the UDP-socket mode lives in [`crate::pipeline::udp`], the XDP mode in [`crate::pipeline::xdp`];
//! loading and attaching the XDP program in [`crate::xdp`].

use std::path::PathBuf;

use clap::{ArgAction, Args};

use crate::allow::AllowPrefix;
use crate::source::xsk::ZeroCopy;
use crate::xdp::{AttachMode, SteerMode};

/// Arguments of `collector run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Collect through the XDP fast path on this interface: attach the XDP program, which steers
    /// UDP datagrams to the --listen ports into one AF_XDP socket per RX queue (or perf rings,
    /// --xdp-mode), each read by a worker pinned to the CPU serving that queue; everything else
    /// passes to the kernel untouched. The UDP sockets stay open on the same ports as the slow
    /// path (fragments, anything the program passes). Without it (or the config key `xdp`),
    /// collect from UDP sockets; the flags marked "XDP mode" are refused then.
    #[arg(long, value_name = "IFACE")]
    pub xdp: Option<String>,

    /// Address and UDP port to collect on; repeat the flag or give several values. Default:
    /// 0.0.0.0:2055, 0.0.0.0:2056, 0.0.0.0:4739, 0.0.0.0:6343 and the same ports on IPv6 (::). The
    /// XDP program matches on the destination port only.
    #[arg(long, value_name = "ADDR:PORT", num_args = 1.., action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Worker threads, each pinned to a core. Default: one per online core; with --xdp one per
    /// RX queue (per CPU in perf mode), and N caps that: queues are shared round robin by N
    /// workers.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Directory of the ring files. Default: ./collector-rings.
    #[arg(long, value_name = "DIR")]
    pub ring_dir: Option<PathBuf>,

    /// Size of each ring file: records (a power of two) or bytes with a unit (64MiB).
    /// Default: 64MiB.
    #[arg(long, value_name = "SIZE")]
    pub ring_size: Option<String>,

    /// Serve Prometheus metrics on this address. Default: 127.0.0.1:9742.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,

    /// Receive buffer per UDP socket (bytes or with a unit). Default: 32MiB.
    #[arg(long, value_name = "SIZE")]
    pub rcvbuf: Option<String>,

    /// Configured sampling rate for an exporter or prefix (repeatable): 10.0.0.0/8=400.
    #[arg(long, value_name = "EXPORTER_OR_PREFIX=RATE")]
    pub sampling_rate: Vec<String>,

    /// Seconds between the one-line summaries in the log (UDP mode). Default: 10.
    #[arg(long, value_name = "SECS")]
    pub summary_interval: Option<u64>,

    /// Configured sampling rates win over the rates exporters send.
    #[arg(long)]
    pub sampling_override: bool,

    /// TOML config file with the same settings, each flag's key named like it (--xdp-mode:
    /// xdp_mode); flags win. Re-read for sampling rates on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// XDP mode: attach the program `driver` (native, in the NIC driver), `skb` (generic, any
    /// interface), or `auto` (driver, falling back to skb when the driver refuses). Default: auto.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_attach: Option<AttachMode>,

    /// XDP mode: where the program sends matched datagrams: `afxdp` (redirect to the AF_XDP
    /// socket of the RX queue; passed to the kernel while none is bound), `perf` (copy into
    /// per-CPU perf rings and drop), or `drop` (a benchmark/diagnostic mode: drop them in XDP and
    /// count them as `drop_mode_dropped`, collecting nothing: the XDP_DROP ceiling). Default:
    /// afxdp.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<SteerMode>,

    /// Exporter source prefix allowed to send (ADDR or ADDR/LEN, IPv4 or IPv6); repeat for
    /// more. Datagrams from other sources are discarded and counted: by the UDP sockets
    /// (`collector_datagrams_not_allowed_total`) and, with --xdp, already in XDP
    /// (`dropped_not_allowed`). Without any --allow every source is allowed.
    #[arg(long, value_name = "PREFIX", action = ArgAction::Append)]
    pub allow: Vec<AllowPrefix>,

    /// XDP mode: zero-copy AF_XDP sockets `auto` (when the driver supports it), `on` (required)
    /// or `off` (copy mode). Default: auto.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_zero_copy: Option<ZeroCopy>,

    /// XDP mode: entries in each AF_XDP ring (fill, completion, RX) and 4 KiB frames in each
    /// queue's UMEM, a power of two from 64 to 65536. Default: 32768 (128 MiB of UMEM per RX
    /// queue: bursts the worker cannot take at once wait there) for up to 4 queues; NICs with
    /// more share 512 MiB (16 queues: 8192), never below 2048.
    #[arg(long, value_name = "N")]
    pub xsk_ring_size: Option<u32>,

    /// XDP mode: microseconds a worker keeps checking its AF_XDP rings (or perf buffers) in a
    /// loop, without a syscall, after the last frame arrived, before it sleeps in poll(2). While
    /// frames keep coming the worker spins and the kernel need not wake it (a wake-up per NAPI
    /// run, paid on the receiving CPU); once the fast path has been quiet this long it sleeps,
    /// so an idle collector uses no CPU. A steady trickle (a frame at least every N µs) keeps the
    /// worker's core busy, and a spinning core can slow its SMT sibling. Worth trying when the
    /// worker has a core (and its sibling) to itself. Default: 0 (never spin), at most 10000.
    #[arg(long, value_name = "MICROS")]
    pub xdp_spin_us: Option<u64>,

    /// XDP mode: preferred busy polling on the AF_XDP sockets (SO_PREFER_BUSY_POLL): the worker
    /// runs its RX queue's NAPI itself, so the XDP program and the copy into the UMEM run on the
    /// worker's core instead of where the interrupt (or, on a veth, the sender) runs. Pair it
    /// with the interface's napi_defer_hard_irqs and gro_flush_timeout (see README) so that the
    /// kernel leaves the queue to the worker while it polls. Default: off.
    #[arg(long)]
    pub xdp_busy_poll: bool,

    /// Drop root after setup (sockets bound, ring files open; with --xdp, the program attached):
    /// switch to this user (and its primary group), keeping no capability, or with --xdp only
    /// CAP_BPF, which reading the program's counters needs. The config file (re-read on SIGHUP)
    /// must be readable, and the --counters-file directory writable, by that user. A user this
    /// host does not have, or root, is refused at start (exit code 2), before anything is set up.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// XDP mode: seconds between two reports of the XDP program's counters (logged at info
    /// level). Default: 5, at most 3600.
    #[arg(long, value_name = "SECONDS")]
    pub report_interval: Option<u64>,

    /// XDP mode: also write each counter report as one line to this file (replaced atomically),
    /// e.g. for scripts and tests: `seen=N matched=N passed_not_matched=N fragments=N ...`. The
    /// first is written once the sockets are bound.
    #[arg(long, value_name = "PATH")]
    pub counters_file: Option<PathBuf>,
}

impl RunArgs {
    /// The settings given as flags.
    pub fn flag_config(&self) -> crate::config::FlagConfig {
        crate::config::FlagConfig {
            config: self.config.clone(),
            listen: self.listen.clone(),
            workers: self.workers,
            ring_dir: self.ring_dir.clone(),
            ring_size: self.ring_size.clone(),
            metrics: self.metrics.clone(),
            rcvbuf: self.rcvbuf.clone(),
            summary_interval: self.summary_interval,
            sampling_override: self.sampling_override,
            sampling_rate: self.sampling_rate.clone(),
            xdp: self.xdp.clone(),
            xdp_attach: self.xdp_attach,
            xdp_mode: self.xdp_mode,
            xdp_zero_copy: self.xdp_zero_copy,
            xsk_ring_size: self.xsk_ring_size,
            xdp_spin_us: self.xdp_spin_us,
            xdp_busy_poll: self.xdp_busy_poll,
            report_interval: self.report_interval,
            counters_file: self.counters_file.clone(),
            allow: self.allow.clone(),
            user: self.user.clone(),
        }
    }
}

/// Run until SIGINT or SIGTERM, then drain (and detach, in XDP mode) and return. A SIGINT or
/// SIGTERM during startup stops it there, cleanly (`Ok`).
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    // First: from here on a signal cannot cut startup short half-way through a ring file.
    crate::control::catch_signals()?;
    match collect(args) {
        Err(err) => match err.downcast::<crate::control::StartupStopped>() {
            Ok(stopped) => {
                tracing::info!("{stopped}");
                Ok(())
            }
            Err(err) => Err(err),
        },
        Ok(()) => Ok(()),
    }
}

fn collect(args: &RunArgs) -> anyhow::Result<()> {
    let flags = args.flag_config();
    let settings = crate::config::Settings::resolve(&flags)?;
    let Some(iface) = settings.xdp.clone() else {
        return crate::pipeline::udp::run(&settings, &flags);
    };
    let options = crate::pipeline::xdp::XdpOptions {
        iface,
        attach: settings.xdp_attach,
        mode: settings.xdp_mode,
        report_interval: settings.report_interval,
        counters_file: settings.counters_file.clone(),
    };
    crate::pipeline::xdp::run(&settings, &flags, &options)
}
