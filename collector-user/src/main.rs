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

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect: attach the XDP program and run until SIGINT/SIGTERM.
    Run(cli::run::RunArgs),
    /// Decode the flow exports in a pcap/pcapng capture: records on stdout, errors and a summary on stderr.
    Replay(cli::replay::ReplayArgs),
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
        Command::Read(args) => cli::read::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("collector: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
