//! `cargo xtask fuzz [SECONDS] [TARGET...]`: run cargo-fuzz targets from `fuzz/fuzz_targets/`
//! for a bounded time each and print executions and crashes per target.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::{cargo, run_status, workspace_root};

/// What one libFuzzer run reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Executions (`Done N runs` or the last `#N` status line).
    pub executions: u64,
    /// Crash / leak / timeout artifacts written.
    pub crashes: u64,
}

/// Read executions and crash artifacts from libFuzzer's stderr.
pub fn parse_libfuzzer(stderr: &str) -> FuzzOutcome {
    let mut outcome = FuzzOutcome::default();
    for line in stderr.lines() {
        let line = line.trim();
        let first_number = |rest: &str| rest.split_whitespace().next()?.parse::<u64>().ok();
        if let Some(runs) = line.strip_prefix("Done ").and_then(first_number) {
            outcome.executions = runs;
        } else if let Some(runs) = line.strip_prefix('#').and_then(first_number) {
            outcome.executions = outcome.executions.max(runs);
        }
        if line.contains("Test unit written to") {
            outcome.crashes += 1;
        }
    }
    outcome
}

pub fn fuzz(seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    if !fuzz_dir.join("Cargo.toml").exists() {
        println!(
            "fuzz: {} does not exist yet; nothing to fuzz",
            fuzz_dir.display()
        );
        return Ok(());
    }
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        println!("fuzz: installing cargo-fuzz");
        run_status(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets: Vec<String> = if targets.is_empty() {
        let mut found: Vec<String> = std::fs::read_dir(fuzz_dir.join("fuzz_targets"))
            .context("listing fuzz/fuzz_targets")?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".rs").map(str::to_owned)
            })
            .collect();
        found.sort();
        found
    } else {
        targets.to_vec()
    };
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for target in &targets {
        println!("fuzz: {target} for {seconds} s");
        let out = Command::new("cargo")
            .current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let outcome = parse_libfuzzer(&stderr);
        if !out.status.success() {
            let lines: Vec<&str> = stderr.lines().collect();
            eprintln!("{}", lines[lines.len().saturating_sub(30)..].join("\n"));
            failed.push(target.clone());
        }
        rows.push((target.clone(), outcome, out.status.success()));
    }
    println!(
        "{:<32} {:>14} {:>8} status",
        "target", "executions", "crashes"
    );
    for (target, outcome, ok) in &rows {
        println!(
            "{target:<32} {:>14} {:>8} {}",
            outcome.executions,
            outcome.crashes,
            if *ok { "ok" } else { "FAILED" }
        );
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_summary_is_read() {
        let stderr = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                      #65536\tpulse  cov: 80 ft: 120 corp: 9/99b exec/s: 32768 rss: 40Mb\n\
                      Done 70321 runs in 3 second(s)\n";
        assert_eq!(
            parse_libfuzzer(stderr),
            FuzzOutcome {
                executions: 70321,
                crashes: 0
            }
        );
        let crashed = "#1200\tNEW cov: 1\n==1==ERROR: libFuzzer: deadly signal\n\
                       artifact_prefix='./'; Test unit written to ./crash-abc\n";
        assert_eq!(
            parse_libfuzzer(crashed),
            FuzzOutcome {
                executions: 1200,
                crashes: 1
            }
        );
    }
}
