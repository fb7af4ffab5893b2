//! The `collector` binary: parses the command line and runs a subcommand from [`collector::cli`].

use clap::{Parser, Subcommand};
use collector::cli;

/// Flow-export collector: NetFlow v5/v9, IPFIX and sFlow v5 in, ring files of normalized records out.
#[derive(Debug, Parser)]
#[command(name = "collector", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the big `run` arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Collect from UDP sockets into ring files until SIGINT/SIGTERM; with --xdp IFACE, through the XDP fast path (AF_XDP sockets per RX queue, or perf rings), the UDP sockets kept as the slow path.
    Run(cli::run::RunArgs),
    /// Decode the flow exports in a pcap/pcapng capture: records on stdout, errors and a summary on stderr.
    Replay(cli::replay::ReplayArgs),
    /// Show per-worker and per-exporter rates, loss and templates of a running collector.
    Stats(cli::stats::StatsArgs),
    /// Print the records of a ring directory as JSON lines or CSV, once or following (`--follow`).
    Read(cli::read::ReadArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Stats(args) => cli::stats::run(args),
        Command::Read(args) => cli::read::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("collector: {err:#}");
            // A bad flag or config file exits 2, like clap's own usage errors.
            if err
                .downcast_ref::<collector::config::ConfigError>()
                .is_some()
            {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
