//! `cargo xtask`: the project's tasks (setup, build, run, test). In progress.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the collector in release mode.
    Build,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Build => {
            let status = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args(["build", "--release", "-p", "collector-user"])
            .status()?;
            anyhow::ensure!(status.success(), "cargo build failed");
        }
    }
    Ok(())
}
