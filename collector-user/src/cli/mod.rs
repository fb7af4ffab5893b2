//! The `collector` subcommands. Each file owns one subcommand: its clap arguments and what it runs.

pub mod read;
pub mod replay;
pub mod run;
pub mod stats;
