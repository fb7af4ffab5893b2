//! `cargo xtask`: the project's tasks, one command each.
//!
//! - `setup`: install the eBPF toolchain and test tools that are missing ([`setup`]).
//! - `build`: release build of the `collector` binary.
//! - `run [-- ARGS]`: setup if needed, release build, then exec `collector ARGS`.
//! - `test`: setup if needed, then `cargo test` of the default members (unit + integration).
//! - `fuzz [SECONDS] [TARGET...]`: run the cargo-fuzz targets for a while each ([`fuzz`]).
//! - `bench [decode|ring|e2e-udp|e2e-xdp|peers|templates|all] [--quick] [--smoke]`: criterion benches, callgrind
//!   instruction counts, end-to-end sweeps next to peers, report and plots ([`bench`]).

mod bench;
mod fuzz;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "The collector project's tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Check the eBPF toolchain and test tools; install only what is missing.
    Setup,
    /// Build the collector in release mode.
    Build,
    /// Set up if needed, build in release mode, and run `collector` with ARGS.
    Run {
        /// Arguments for `collector`, e.g. `run --xdp eth0`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up if needed, then run every unit and integration test.
    Test,
    /// Run each fuzz target (or the named ones) for SECONDS (default 60) with cargo-fuzz.
    Fuzz {
        /// Seconds per target.
        #[arg(default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: every file in fuzz/fuzz_targets/).
        targets: Vec<String>,
    },
    /// Run the benches of a group (criterion + callgrind, or the e2e sweeps next to peers).
    Bench {
        /// decode / ring: the bench files whose name starts with it; e2e-udp, peers: the
        /// end-to-end sweeps with report and plots in target/bench/; e2e-xdp: XDP modes on a
        /// veth; templates: template memory; all: everything.
        #[arg(value_enum, default_value = "all")]
        group: bench::Group,
        /// Shorter e2e trials and fewer bisection steps.
        #[arg(long)]
        quick: bool,
        /// A seconds-long run of the e2e harness that checks its report (no speed asserted).
        #[arg(long)]
        smoke: bool,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::setup(),
        Task::Build => build_release(),
        Task::Run { args } => run(&args),
        Task::Test => test(),
        Task::Fuzz { seconds, targets } => fuzz::fuzz(seconds, &targets),
        Task::Bench {
            group,
            quick,
            smoke,
        } => bench::bench(group, bench::Options { quick, smoke }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_release() -> anyhow::Result<()> {
    run_status(cargo().args([
        "build",
        "--release",
        "-p",
        "collector-user",
        "--bin",
        "collector",
    ]))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    setup::ensure()?;
    build_release()?;
    let binary = target_dir().join("release/collector");
    // Replace this process so signals (Ctrl-C, SIGTERM) reach the collector directly.
    let err = Command::new(&binary).args(args).exec();
    Err(err).with_context(|| format!("starting {}", binary.display()))
}

fn test() -> anyhow::Result<()> {
    setup::ensure()?;
    // The integration tests run the real binary; build it in the profile `cargo test` uses.
    run_status(cargo().args(["build", "-p", "collector-user", "--bin", "collector"]))?;
    run_status(cargo().args(["build", "-p", "flowgen"]))?;
    let binary = target_dir().join("debug/collector");
    run_status(
        cargo()
            .arg("test")
            .env("COLLECTOR_BIN", &binary)
            .env("FLOWGEN_BIN", target_dir().join("debug/flowgen")),
    )
}

/// A `cargo` command (the one running xtask, if known), in the workspace root.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Run a command with inherited stdio; fail when it does not exit 0.
pub(crate) fn run_status(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// The repository root (xtask lives one level below it).
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
}

/// Cargo's target directory for this workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_forwards_everything_after_the_separator() {
        let cli =
            Cli::try_parse_from(["xtask", "run", "--", "run", "--xdp", "eth0", "--help"]).unwrap();
        match cli.task {
            Task::Run { args } => assert_eq!(args, ["run", "--xdp", "eth0", "--help"]),
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["xtask", "bench", "e2e-udp", "--quick"]).unwrap();
        assert!(matches!(
            cli.task,
            Task::Bench {
                group: bench::Group::E2eUdp,
                quick: true,
                smoke: false
            }
        ));
        let cli = Cli::try_parse_from(["xtask", "bench", "--smoke"]).unwrap();
        assert!(matches!(cli.task, Task::Bench { smoke: true, .. }));
        let cli = Cli::try_parse_from(["xtask", "fuzz", "5", "ipfix"]).unwrap();
        assert!(
            matches!(cli.task, Task::Fuzz { seconds: 5, ref targets } if targets == &["ipfix"])
        );
    }
}
