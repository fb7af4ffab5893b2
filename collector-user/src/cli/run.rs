//! `collector run`: collect from UDP sockets (the default, unprivileged), or attach the XDP program,
//! report its counters until SIGINT/SIGTERM, detach.
//!
//! Thin: argument parsing and the control loops. Settings (flags + config file) are resolved in
//! [`crate::config`]; the UDP-socket mode lives in [`crate::pipeline::udp`]; loading and attaching
//! the XDP program in [`crate::xdp`].

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use clap::{ArgAction, Args};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::xdp::{
    AllowPrefix, AttachMode, PROGRAM_LOG_TARGET, SteerConfig, SteerMode, SteerProgram,
};

/// Arguments of `collector run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Attach the XDP program to this interface; it counts UDP datagrams to the --listen ports
    /// and passes every frame on to the kernel. Without it, collect from UDP sockets.
    #[arg(long, value_name = "IFACE")]
    pub xdp: Option<String>,

    /// Address and UDP port to collect on; repeat the flag or give several values. Default:
    /// 0.0.0.0:2055, 0.0.0.0:2056, 0.0.0.0:4739, 0.0.0.0:6343 and the same ports on [::]. The
    /// XDP program matches on the destination port only.
    #[arg(long, value_name = "ADDR:PORT", num_args = 1.., action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Worker threads, each pinned to a core. Default: one per online core.
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

    /// TOML config file with the same settings (flags win); re-read for sampling rates on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// XDP attach mode: `driver` (native, in the NIC driver), `skb` (generic, any interface),
    /// or `auto` (driver, falling back to skb when the driver refuses).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub xdp_attach: AttachMode,

    /// Where the XDP program sends matched datagrams: `afxdp` (redirect to the AF_XDP socket
    /// of the RX queue; passed to the kernel while none is bound), `perf` (copy into per-CPU
    /// perf rings and drop), or `drop` (a benchmark/diagnostic mode: drop them in XDP and count
    /// them as `drop_mode_dropped`, collecting nothing: the XDP_DROP ceiling).
    #[arg(long, value_enum, value_name = "MODE", default_value = "afxdp")]
    pub xdp_mode: SteerMode,

    /// Exporter source prefix allowed to send (ADDR or ADDR/LEN, IPv4 or IPv6); repeat for
    /// more. Datagrams from other sources to the --listen ports are dropped in XDP and counted
    /// (`dropped_not_allowed`). Without any --allow every source is allowed.
    #[arg(long, value_name = "PREFIX", action = ArgAction::Append)]
    pub allow: Vec<AllowPrefix>,

    /// Drop root after attaching: switch to this user (and its primary group), keeping only
    /// CAP_BPF, which reading the program's counters needs. The --counters-file directory must
    /// be writable by that user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Seconds between two counter reports (logged at info level).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub report_interval: u64,

    /// Also write each counter report as one line to this file (replaced atomically), e.g. for
    /// scripts and tests: `seen=N matched=N passed_not_matched=N fragments=N malformed=N`.
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
        }
    }
}

/// Run until SIGINT or SIGTERM, then drain (UDP mode) or detach (XDP), and return.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let flags = args.flag_config();
    let settings = crate::config::Settings::resolve(&flags)?;
    let Some(iface) = args.xdp.as_deref() else {
        return crate::pipeline::udp::run(&settings, &flags);
    };
    let mut ports: Vec<u16> = settings.listen.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    let log_debug = tracing::enabled!(target: PROGRAM_LOG_TARGET, tracing::Level::DEBUG);
    let config = SteerConfig {
        ports: ports.clone(),
        allow: args.allow.clone(),
        mode: args.xdp_mode,
        log_debug,
    };
    let mut program = SteerProgram::attach(iface, args.xdp_attach, &config)?;
    let (link_id, program_id) = program.kernel_ids();
    tracing::info!(
        iface = program.iface(),
        mode = %program.mode(),
        link_id,
        program_id,
        ?ports,
        xdp_mode = ?args.xdp_mode,
        allow = args.allow.len(),
        "XDP program attached through a bpf_link"
    );
    report(&program, args.counters_file.as_deref())?;
    if let Some(user) = args.user.as_deref() {
        // Before the runtime starts: no other thread may exist while the ids change.
        let account = crate::privilege::drop_to_user(user, &[crate::privilege::CAP_BPF])?;
        tracing::info!(
            user,
            uid = account.uid,
            gid = account.gid,
            "privileges dropped (CAP_BPF kept)"
        );
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    runtime.block_on(control_loop(&mut program, args))?;

    report(&program, args.counters_file.as_deref())?;
    drop(program);
    tracing::info!(%iface, "XDP program detached");
    Ok(())
}

/// The program's log ring descriptor, for readiness polling only (the ring is read by aya-log).
struct LogRing(RawFd);

impl AsRawFd for LogRing {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

async fn control_loop(program: &mut SteerProgram, args: &RunArgs) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // SAFETY: the descriptor belongs to `program`'s log ring, which stays open while this
    // function holds `program`; `log_ring` is dropped before it returns.
    let log_ring =
        unsafe { AsyncFd::register_with_interest(LogRing(program.log_fd()), Interest::READABLE) }
            .map_err(|err| err.into_parts().1)
            .context("polling the XDP log ring")?;
    let period = Duration::from_secs(args.report_interval);
    let mut reports = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = sigint.recv() => {
                tracing::info!("SIGINT received");
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM received");
                break;
            }
            _ = reports.tick() => report(program, args.counters_file.as_deref())?,
            ready = log_ring.readable() => {
                let mut guard = ready.context("polling the XDP log ring")?;
                program.flush_log();
                guard.clear_ready();
            }
        }
    }
    program.flush_log();
    Ok(())
}

fn report(program: &SteerProgram, counters_file: Option<&Path>) -> anyhow::Result<()> {
    let counters = program.counters()?;
    tracing::info!(iface = program.iface(), "xdp counters {counters}");
    if let Some(path) = counters_file {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{counters}\n"))
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}
