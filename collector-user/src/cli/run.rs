//! `collector run`: collect from UDP sockets (the default), or load and attach the XDP program.

use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `collector run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Attach the XDP program to this interface.
    #[arg(long, value_name = "IFACE")]
    pub xdp: Option<String>,
    /// Listen on this UDP address (repeatable). Default: 0.0.0.0 and [::] on 2055, 2056, 4739, 6343.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Worker threads, each pinned to a core. Default: one per online core.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Directory of the ring files. Default: ./collector-rings.
    #[arg(long, value_name = "DIR")]
    pub ring_dir: Option<PathBuf>,
    /// Size of each ring file: records (a power of two) or bytes with a unit (64MiB). Default: 64MiB.
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
    /// Seconds between the one-line summaries in the log. Default: 10.
    #[arg(long, value_name = "SECS")]
    pub summary_interval: Option<u64>,
    /// TOML config file with the same settings (flags win); re-read for sampling rates on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
            sampling_rate: self.sampling_rate.clone(),
        }
    }
}

/// Run until interrupted.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let Some(iface) = &args.xdp else {
        let flags = args.flag_config();
        let settings = crate::config::Settings::resolve(&flags)?;
        crate::pipeline::udp::run(&settings, &flags)?;
        return Ok(());
    };
    let mut ebpf = aya::Ebpf::load(crate::xdp::STEER_OBJECT).context("loading the XDP object")?;
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut(collector_common::STEER_PROGRAM)
        .context("XDP program missing from the object")?
        .try_into()?;
    program
        .load()
        .context("loading the XDP program into the kernel")?;
    program
        .attach(iface, aya::programs::XdpMode::default())
        .with_context(|| format!("attaching the XDP program to {iface}"))?;
    tracing::info!(iface = %iface, "XDP program attached");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}
