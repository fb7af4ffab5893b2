//! `collector run`: load and attach the XDP program, report its counters until SIGINT/SIGTERM.

use anyhow::Context as _;
use clap::Args;

/// Arguments of `collector run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Attach the XDP program to this interface.
    #[arg(long, value_name = "IFACE")]
    pub xdp: String,
}

/// Run until interrupted.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mut ebpf = aya::Ebpf::load(crate::xdp::STEER_OBJECT).context("loading the XDP object")?;
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut(collector_common::STEER_PROGRAM)
        .context("XDP program missing from the object")?
        .try_into()?;
    program
        .load()
        .context("loading the XDP program into the kernel")?;
    program
        .attach(&args.xdp, aya::programs::XdpMode::default())
        .with_context(|| format!("attaching the XDP program to {}", args.xdp))?;
    tracing::info!(iface = %args.xdp, "XDP program attached");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}
