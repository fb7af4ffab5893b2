//! `cargo xtask bench [decode|ring|all]`: the criterion benches of a group, and for decode the
//! callgrind measurement of instructions per record, written to `target/bench/decode.json` (for ring:
//! instructions per record written over a memcpy, `target/bench/ring.json`).
//!
//! The callgrind figure is differential: `decode_loop` runs for N and 2N datagrams and
//! `(Ir(2N) - Ir(N)) / (records(2N) - records(N))` removes start-up cost.

use std::{path::Path, process::Command};

use anyhow::Context as _;

use crate::{cargo, run_status, target_dir, workspace_root};

/// Bench groups: a bench file belongs to a group when its name starts with the group name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Decoder benches and the callgrind instruction counts.
    Decode,
    /// Ring-file benches.
    Ring,
    /// Everything.
    All,
}

impl Group {
    fn includes(self, bench_name: &str) -> bool {
        match self {
            Group::Decode => bench_name.starts_with("decode"),
            Group::Ring => bench_name.starts_with("ring"),
            Group::All => true,
        }
    }
}

/// Protocols `decode_loop` is asked about.
const PROTOCOLS: [&str; 4] = ["v5", "v9", "ipfix", "sflow"];
/// Datagrams in the smaller callgrind run (the larger has twice as many).
const DATAGRAMS: u64 = 2000;

pub fn bench(group: Group) -> anyhow::Result<()> {
    let benches_dir = workspace_root().join("collector-user/benches");
    let mut names: Vec<String> = std::fs::read_dir(&benches_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
                .filter(|n| group.includes(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        println!(
            "bench: no bench files for {group:?} in {}",
            benches_dir.display()
        );
    }
    for name in &names {
        println!("bench: {name}");
        run_status(cargo().args(["bench", "-p", "collector-user", "--bench", name]))?;
    }
    if matches!(group, Group::Decode | Group::All) {
        callgrind_decode()?;
    }
    if matches!(group, Group::Ring | Group::All) {
        callgrind_ring()?;
    }
    Ok(())
}

/// Records in the smaller `ring_loop` callgrind run (the larger has twice as many).
const RING_RECORDS: u64 = 200_000;

/// Instructions per record the ring writer adds over a plain memcpy of the record
/// (`examples/ring_loop.rs`, with and without `--memcpy`), written to `target/bench/ring.json`.
fn callgrind_ring() -> anyhow::Result<()> {
    run_status(cargo().args([
        "build",
        "--release",
        "-p",
        "collector-user",
        "--example",
        "ring_loop",
    ]))?;
    let binary = target_dir().join("release/examples/ring_loop");
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut per_record = Vec::new();
    for mode in ["ring", "memcpy"] {
        let mut runs = Vec::new();
        for records in [RING_RECORDS, 2 * RING_RECORDS] {
            let callgrind_out = out_dir.join(format!("callgrind.ring_loop.{mode}.{records}.out"));
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
                .arg(&binary)
                .args(["--records", &records.to_string()]);
            if mode == "memcpy" {
                command.arg("--memcpy");
            }
            let out = command
                .output()
                .context("running valgrind (apt-get install valgrind)")?;
            anyhow::ensure!(out.status.success(), "ring_loop {mode} {records} failed");
            let done = parse_records(&String::from_utf8_lossy(&out.stdout))
                .context("ring_loop printed no records=R line")?;
            let profile = std::fs::read_to_string(&callgrind_out)?;
            let ir = parse_callgrind_total(&profile)
                .context("no summary/totals line in callgrind output")?;
            runs.push((ir, done));
        }
        let ipr = instructions_per_record(runs[0], runs[1])
            .context("the larger ring_loop run wrote no more records")?;
        println!("ring_loop {mode:<7} {ipr:>8.1} instructions/record");
        per_record.push(ipr);
    }
    let added = per_record[0] - per_record[1];
    println!("ring write adds {added:.1} instructions/record over a memcpy (goal <= 20)");
    let json_path = out_dir.join("ring.json");
    std::fs::write(
        &json_path,
        format!(
            "{{\"records\":[{},{}],\"instructions_per_record\":{{\"ring\":{:.1},\"memcpy\":{:.1},\"added\":{added:.1}}}}}\n",
            RING_RECORDS,
            2 * RING_RECORDS,
            per_record[0],
            per_record[1]
        ),
    )?;
    println!("bench: wrote {}", json_path.display());
    Ok(())
}

fn callgrind_decode() -> anyhow::Result<()> {
    let example = workspace_root().join("collector-user/examples/decode_loop.rs");
    if !example.exists() {
        println!(
            "bench: {} does not exist yet; no callgrind figures",
            example.display()
        );
        return Ok(());
    }
    run_status(cargo().args([
        "build",
        "--release",
        "-p",
        "collector-user",
        "--example",
        "decode_loop",
    ]))?;
    let binary = target_dir().join("release/examples/decode_loop");
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut rows = Vec::new();
    for protocol in PROTOCOLS {
        let Some(small) = measure(&binary, &out_dir, protocol, DATAGRAMS)? else {
            println!("bench: decode_loop rejects --protocol {protocol}; skipped");
            continue;
        };
        let Some(large) = measure(&binary, &out_dir, protocol, 2 * DATAGRAMS)? else {
            continue;
        };
        let per_record = instructions_per_record(small, large)
            .with_context(|| format!("{protocol}: the larger run decoded no more records"))?;
        rows.push((protocol, per_record, large.1));
    }
    let json = format!(
        "{{\"datagrams\":[{},{}],\"instructions_per_record\":{{{}}}}}\n",
        DATAGRAMS,
        2 * DATAGRAMS,
        rows.iter()
            .map(|(p, ipr, _)| format!("\"{p}\":{ipr:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let json_path = out_dir.join("decode.json");
    std::fs::write(&json_path, json)?;
    println!(
        "{:<8} {:>22} {:>12}",
        "protocol", "instructions/record", "records(2N)"
    );
    for (protocol, per_record, records) in &rows {
        println!("{protocol:<8} {per_record:>22.1} {records:>12}");
    }
    println!("bench: wrote {}", json_path.display());
    Ok(())
}

/// `(Ir, records)` of one callgrind run, or `None` when decode_loop rejects the protocol.
fn measure(
    binary: &Path,
    out_dir: &Path,
    protocol: &str,
    datagrams: u64,
) -> anyhow::Result<Option<(u64, u64)>> {
    let callgrind_out = out_dir.join(format!("callgrind.{protocol}.{datagrams}.out"));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
        .arg(binary)
        .args([
            "--protocol",
            protocol,
            "--datagrams",
            &datagrams.to_string(),
        ])
        .output()
        .context("running valgrind (apt-get install valgrind)")?;
    if !out.status.success() {
        return Ok(None);
    }
    let records = parse_records(&String::from_utf8_lossy(&out.stdout))
        .context("decode_loop printed no records=R line")?;
    let profile = std::fs::read_to_string(&callgrind_out)?;
    let ir =
        parse_callgrind_total(&profile).context("no summary/totals line in callgrind output")?;
    Ok(Some((ir, records)))
}

/// `R` from a `records=R` line.
pub fn parse_records(stdout: &str) -> Option<u64> {
    stdout
        .split_whitespace()
        .find_map(|word| word.strip_prefix("records="))
        .and_then(|n| n.parse().ok())
}

/// Total instructions (`summary:` or `totals:` line) of a callgrind output file.
pub fn parse_callgrind_total(profile: &str) -> Option<u64> {
    profile.lines().find_map(|line| {
        let rest = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Differential instructions per record between two `(Ir, records)` runs.
pub fn instructions_per_record(small: (u64, u64), large: (u64, u64)) -> Option<f64> {
    let records = large.1.checked_sub(small.1).filter(|r| *r > 0)?;
    let ir = large.0.checked_sub(small.0)?;
    Some(ir as f64 / records as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_select_by_prefix() {
        assert!(Group::Decode.includes("decode_v9"));
        assert!(!Group::Decode.includes("ring_write"));
        assert!(Group::Ring.includes("ring_write"));
        assert!(Group::All.includes("anything"));
    }

    #[test]
    fn callgrind_and_decode_loop_output_are_read() {
        assert_eq!(
            parse_records("protocol=v9 records=30000 errors=0\n"),
            Some(30000)
        );
        assert_eq!(parse_records("nothing\n"), None);
        let profile = "version: 1\ncmd: decode_loop\nevents: Ir\nsummary: 123456789\n";
        assert_eq!(parse_callgrind_total(profile), Some(123_456_789));
        assert_eq!(parse_callgrind_total("totals: 42\n"), Some(42));
        assert_eq!(
            instructions_per_record((1_000_000, 1000), (1_500_000, 2000)),
            Some(500.0)
        );
        assert_eq!(instructions_per_record((1, 10), (2, 10)), None);
    }
}
