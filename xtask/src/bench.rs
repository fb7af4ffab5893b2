//! `cargo xtask bench [decode|ring|e2e-udp|e2e-xdp|peers|templates|all] [--quick] [--smoke]`: the
//! criterion benches of a group, and for decode the callgrind measurement of instructions per
//! record, written to `target/bench/decode.json` (for ring: instructions per record written over a
//! memcpy, `target/bench/ring.json`); for e2e-udp and peers the sender-scaling probes of
//! [`senders`] and the end-to-end sweeps of [`e2e`] (collector with one and with all workers;
//! nfcapd, sfcapd, nfacctd and sfacctd on the same load), written with the other groups' figures
//! to `target/bench/report.json`, `report.md` and plots ([`report`], [`plot`]); for e2e-xdp the
//! XDP modes on a veth between namespaces ([`xdp`], `target/bench/xdp.json`); for templates the
//! template memory of 5,000 OVS nodes ([`templates`], `target/bench/templates.json`). `--smoke` is
//! a seconds-long run of the e2e harness (tiny rate, one bisection step, no peers) into
//! `target/bench/smoke/` that checks the report it writes.
//!
//! The callgrind figures are differential, and the examples measure them themselves (`--callgrind`,
//! collector-user's `examples/callgrind`): `decode_loop` (and `worker_loop`, the whole worker step
//! over in-memory datagrams; `sflow_loop` for sFlow samples; `ring_loop` for the ring) runs for N
//! and 2N datagrams and `(Ir(2N) - Ir(N)) / (records(2N) - records(N))` removes start-up cost.
//! IPFIX is measured at 12 records per message and at one; the line through both splits its cost
//! into a part per message and a part per record.

mod e2e;
mod plot;
mod report;
mod senders;
mod templates;
mod xdp;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{cargo, run_status, target_dir, workspace_root};
use e2e::{Binaries, Sweep, SweepConfig, System};
use report::{Report, Skipped};

/// Bench groups: a bench file belongs to a group when its name starts with the group name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Decoder benches and the callgrind instruction counts.
    Decode,
    /// Ring-file benches.
    Ring,
    /// End to end over UDP on loopback: the collector with one and with all workers.
    E2eUdp,
    /// The peers (nfcapd, sfcapd, nfacctd, sfacctd) next to the collector (e2e-udp).
    Peers,
    /// XDP over a veth between two namespaces: the XDP_DROP ceiling, AF_XDP, perf and UDP mode
    /// as ratios to it (root only; skipped with the reason otherwise).
    E2eXdp,
    /// Template memory: 5,000 emulated OVS IPFIX nodes × 121 templates into one worker.
    Templates,
    /// Everything.
    All,
}

/// How much of the e2e harness to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Shorter trials and fewer bisection steps.
    pub quick: bool,
    /// Seconds-long check of the harness itself: tiny rate, one step, no peers.
    pub smoke: bool,
}

impl Group {
    fn includes(self, bench_name: &str) -> bool {
        match self {
            Group::Decode => bench_name.starts_with("decode"),
            Group::Ring => bench_name.starts_with("ring"),
            Group::E2eUdp | Group::Peers | Group::E2eXdp | Group::Templates => false,
            Group::All => true,
        }
    }
}

/// Emulated OVS nodes of the template-memory run (issue 8: 5,000 × 120 templates), and their
/// data datagrams/s (each node's 121 templates go out before its first data datagram).
const TEMPLATE_NODES: u64 = 5_000;
const TEMPLATE_RATE: u64 = 1_000;

/// The callgrind loops (collector-user examples measured with their own `--callgrind`, see
/// `examples/callgrind`): the example, the protocols it is asked about, and its key in
/// `decode.json`: the decoder alone, and the whole worker step (decoder, exporter table, counters,
/// commit) without the kernel's receive path. `sflow_loop` (one protocol, counted in samples) joins
/// the decoder's row.
const LOOPS: [(&str, &[&str], &str); 2] = [
    (
        "decode_loop",
        &["v5", "v9", "ipfix", "ipfix-single"],
        "instructions_per_record",
    ),
    (
        "worker_loop",
        &["v5", "v9", "ipfix", "ipfix-single"],
        "worker_instructions_per_record",
    ),
];

pub fn bench(group: Group, options: Options) -> anyhow::Result<()> {
    if options.smoke {
        let dir = target_dir().join("bench/smoke");
        let report = smoke(&smoke_binaries()?, &dir)?;
        println!(
            "bench: smoke report well-formed ({} sweeps) in {}",
            report.sweeps.len(),
            dir.display()
        );
        return Ok(());
    }
    let out_dir = target_dir().join("bench");
    let ran_micro = matches!(group, Group::Decode | Group::Ring | Group::All);
    if ran_micro {
        micro(group)?;
    }
    if matches!(group, Group::Templates | Group::All) {
        let bins = release_binaries()?;
        println!(
            "bench: template memory, {TEMPLATE_NODES} OVS IPFIX nodes at {TEMPLATE_RATE} data datagrams/s"
        );
        let scratch = out_dir.join("scratch");
        let m = templates::measure(&bins, TEMPLATE_NODES, TEMPLATE_RATE, Some(1), &scratch)?;
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&out_dir)?;
        let path = out_dir.join("templates.json");
        std::fs::write(&path, serde_json::to_string_pretty(&m)? + "\n")?;
        print!("{}", templates::markdown(&m));
        println!("bench: wrote {}", path.display());
    }
    if matches!(group, Group::E2eXdp | Group::All) {
        let bins = release_binaries()?;
        let config = sweep_config(report::Machine::probe().cpus, options.quick);
        let scratch = out_dir.join("scratch");
        let run = xdp::run(&bins, "ovs-netflow", &config, &scratch)?;
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&out_dir)?;
        let path = out_dir.join("xdp.json");
        std::fs::write(&path, serde_json::to_string_pretty(&run)? + "\n")?;
        print!("{}", xdp::markdown(&run));
        println!("bench: wrote {}", path.display());
    }
    if matches!(group, Group::E2eUdp | Group::Peers | Group::All) {
        let machine = report::Machine::probe();
        let config = sweep_config(machine.cpus, options.quick);
        let bins = release_binaries()?;
        let command = format!(
            "cargo xtask bench {}{}",
            group_name(group),
            if options.quick { " --quick" } else { "" }
        );
        let systems = systems(group, machine.cpus);
        let micro = matches!(group, Group::All);
        let scratch = out_dir.join("scratch");
        let senders = senders::probe(&bins, machine.cpus, config.trial_secs, &scratch)?;
        let mut report = e2e_report(
            machine,
            &systems,
            micro,
            &bins,
            &config,
            &e2e::PROFILES,
            &out_dir,
            command,
        )?;
        report.senders = senders;
        write_report(&report, &out_dir)?;
    }
    Ok(())
}

/// The sweeps' setup on a machine with `cpus` CPUs: the receiver on core 0, the sender on the
/// others with a thread per core, and 4 exporters (source ports) per sender thread, so that a
/// multi-worker collector spreads them over its workers. On 2 CPUs that is one sender thread on
/// core 1: the only way to give both sides a core of their own.
fn sweep_config(cpus: usize, quick: bool) -> SweepConfig {
    let sender_cores: Vec<usize> = (1..cpus).collect();
    let sender_threads = sender_cores.len().max(1);
    SweepConfig {
        trial_secs: if quick { 1.0 } else { 2.0 },
        steps: if quick { 3 } else { 5 },
        start_rate: None,
        receiver_core: (cpus > 1).then_some(0),
        sender_cores,
        sender_threads,
        exporters: 4 * sender_threads as u32,
    }
}

fn group_name(group: Group) -> &'static str {
    match group {
        Group::Decode => "decode",
        Group::Ring => "ring",
        Group::E2eUdp => "e2e-udp",
        Group::Peers => "peers",
        Group::E2eXdp => "e2e-xdp",
        Group::Templates => "templates",
        Group::All => "all",
    }
}

/// Systems a group compares, in report order.
fn systems(group: Group, cpus: usize) -> Vec<System> {
    let mut systems = vec![System::Collector { workers: 1 }];
    if cpus > 1 {
        systems.push(System::Collector { workers: cpus });
    }
    if matches!(group, Group::Peers | Group::All) {
        systems.extend([
            System::Nfcapd,
            System::Sfcapd,
            System::Nfacctd,
            System::Sfacctd,
        ]);
    }
    systems
}

/// Run the sweeps of `group` on `profiles`, peers installed when missing, into one report.
#[allow(clippy::too_many_arguments)]
fn e2e_report(
    machine: report::Machine,
    systems: &[System],
    micro: bool,
    bins: &Binaries,
    config: &SweepConfig,
    profiles: &[&str],
    out_dir: &Path,
    command: String,
) -> anyhow::Result<Report> {
    let mut skipped = Vec::new();
    let mut candidates = systems.to_vec();
    if candidates.iter().any(|s| s.program().is_some()) {
        let missing = install_peers();
        candidates.retain(|s| match s.program() {
            Some(p) if !e2e::has_program(p) => {
                skipped.push(Skipped {
                    system: s.name(),
                    reason: format!("`{p}` not installed: {missing}"),
                });
                false
            }
            _ => true,
        });
    }
    let scratch = out_dir.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let mut sweeps: Vec<Sweep> = Vec::new();
    for profile in profiles {
        for system in candidates.iter().copied().filter(|s| s.accepts(profile)) {
            match e2e::sweep(bins, system, profile, config, &scratch) {
                Ok(sweep) => sweeps.push(sweep),
                // A peer that will not run is reported, not fatal; the collector failing is.
                Err(err) if system.program().is_some() => {
                    println!("bench: {} on {profile} skipped: {err:#}", system.name());
                    skipped.push(Skipped {
                        system: format!("{} ({profile})", system.name()),
                        reason: format!("{err:#}"),
                    });
                }
                Err(err) => return Err(err.context(format!("{} on {profile}", system.name()))),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let read_json = |name: &str| {
        std::fs::read_to_string(out_dir.join(name))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    };
    Ok(Report {
        version: report::REPORT_VERSION,
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        commit: report::commit(workspace_root()),
        command,
        machine,
        loss_threshold: e2e::LOSS_THRESHOLD,
        trial_secs: config.trial_secs,
        bisection_steps: config.steps,
        start_rate: config.start_rate,
        smoke: false,
        sweeps,
        skipped,
        decode: micro.then(|| read_json("decode.json")).flatten(),
        ring: micro.then(|| read_json("ring.json")).flatten(),
        templates: micro
            .then(|| read_json("templates.json"))
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok()),
        senders: Vec::new(),
        xdp: micro
            .then(|| read_json("xdp.json"))
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok()),
    })
}

/// Install Debian's nfdump, nfdump-sflow and pmacct when a peer program is missing; what went
/// wrong, if anything, for the skip reasons.
fn install_peers() -> String {
    let programs = ["nfcapd", "sfcapd", "nfdump", "nfacctd", "sfacctd", "pmacct"];
    if programs.iter().all(|p| e2e::has_program(p)) {
        return String::new();
    }
    if !e2e::has_program("apt-get") {
        return "no apt-get on this machine (install nfdump, nfdump-sflow, pmacct)".into();
    }
    println!("bench: apt-get install -y nfdump nfdump-sflow pmacct");
    match Command::new("apt-get")
        .args(["install", "-y", "nfdump", "nfdump-sflow", "pmacct"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
    {
        Ok(status) if status.success() => String::new(),
        Ok(status) => format!("apt-get install failed ({status})"),
        Err(err) => format!("apt-get could not start: {err}"),
    }
}

/// Write `report.json`, `report.md` and the plots into `out_dir`.
fn write_report(report: &Report, out_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    report::validate(report)?;
    let json = out_dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")?;
    let md = out_dir.join("report.md");
    std::fs::write(&md, report::markdown(report))?;
    println!("bench: wrote {} and {}", json.display(), md.display());
    match plot::write_plots(report, out_dir) {
        Ok(files) => {
            for f in files {
                println!("bench: wrote {}", f.display());
            }
        }
        Err(err) => println!("bench: no plots: {err:#}"),
    }
    Ok(())
}

/// Release builds of the collector and flowgen.
fn release_binaries() -> anyhow::Result<Binaries> {
    build_binaries("release")
}

/// Binaries for a smoke run: `COLLECTOR_BIN` / `FLOWGEN_BIN`, else a debug build.
fn smoke_binaries() -> anyhow::Result<Binaries> {
    match binaries_from_env() {
        Some(bins) => Ok(bins),
        None => build_binaries("debug"),
    }
}

/// Build the collector and flowgen binaries in `profile` ("release" or "debug").
fn build_binaries(profile: &str) -> anyhow::Result<Binaries> {
    let mut command = cargo();
    command.arg("build");
    if profile == "release" {
        command.arg("--release");
    }
    // `--bin collector` alone would leave flowgen's binary out.
    command.args([
        "-p",
        "collector-user",
        "--bin",
        "collector",
        "-p",
        "flowgen",
        "--bin",
        "flowgen",
    ]);
    run_status(&mut command)?;
    Ok(Binaries {
        collector: target_dir().join(profile).join("collector"),
        flowgen: target_dir().join(profile).join("flowgen"),
    })
}

fn binaries_from_env() -> Option<Binaries> {
    Some(Binaries {
        collector: PathBuf::from(std::env::var_os("COLLECTOR_BIN")?),
        flowgen: PathBuf::from(std::env::var_os("FLOWGEN_BIN")?),
    })
}

/// The binaries a test runs: those `cargo xtask test` passes in `COLLECTOR_BIN` and
/// `FLOWGEN_BIN`, else target/debug's when built; `None` (after printing SKIPPED) otherwise.
#[cfg(test)]
pub(crate) fn test_binaries() -> Option<Binaries> {
    let bins = binaries_from_env().unwrap_or_else(|| Binaries {
        collector: target_dir().join("debug/collector"),
        flowgen: target_dir().join("debug/flowgen"),
    });
    if bins.collector.is_file() && bins.flowgen.is_file() {
        Some(bins)
    } else {
        println!("SKIPPED: no collector/flowgen binaries (run through `cargo xtask test`)");
        None
    }
}

/// The smoke run: the one-worker collector, one profile, 300 datagrams/s for half a second,
/// one bisection step; writes the report into `dir`, reads it back and validates it.
fn smoke(bins: &Binaries, dir: &Path) -> anyhow::Result<Report> {
    let config = SweepConfig {
        trial_secs: 0.5,
        steps: 1,
        start_rate: Some(300),
        sender_cores: Vec::new(),
        receiver_core: None,
        sender_threads: 1,
        exporters: 1,
    };
    let mut report = e2e_report(
        report::Machine::probe(),
        &[System::Collector { workers: 1 }],
        false,
        bins,
        &config,
        &["ovs-netflow"],
        dir,
        "cargo xtask bench --smoke".into(),
    )?;
    report.smoke = true;
    write_report(&report, dir)?;
    let text = std::fs::read_to_string(dir.join("report.json"))?;
    let back: Report = serde_json::from_str(&text).context("report.json does not parse back")?;
    report::validate(&back)?;
    anyhow::ensure!(
        back.smoke && back.sweeps.len() == 1,
        "smoke report has {} sweeps",
        back.sweeps.len()
    );
    let md = std::fs::read_to_string(dir.join("report.md"))?;
    anyhow::ensure!(
        md.contains("## ovs-netflow") && md.contains("collector-w1"),
        "report.md lacks the sweep"
    );
    Ok(back)
}

/// The criterion benches of `group` and its callgrind figures.
fn micro(group: Group) -> anyhow::Result<()> {
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

/// Build a release example of collector-user; its path.
fn release_example(name: &str) -> anyhow::Result<PathBuf> {
    run_status(cargo().args([
        "build",
        "--release",
        "-p",
        "collector-user",
        "--example",
        name,
    ]))?;
    Ok(target_dir().join("release/examples").join(name))
}

/// Records in the smaller `ring_loop` callgrind run (the larger has twice as many).
const RING_RECORDS: u64 = 200_000;

/// Instructions per record the ring writer adds over a plain memcpy of the record
/// (`examples/ring_loop.rs --callgrind`, with and without `--memcpy`), written to
/// `target/bench/ring.json`.
fn callgrind_ring() -> anyhow::Result<()> {
    let binary = release_example("ring_loop")?;
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut per_record = Vec::new();
    let mut sizes = [0; 2];
    let records = RING_RECORDS.to_string();
    for (name, memcpy) in [("ring", None), ("memcpy", Some("--memcpy"))] {
        let args: Vec<&str> = ["--records", &records].into_iter().chain(memcpy).collect();
        let runs = loop_runs(&binary, &args, "records")?;
        let ipr = per_unit(runs).context("the larger ring_loop run wrote no more records")?;
        println!("ring_loop {name:<7} {ipr:>8.1} instructions/record");
        per_record.push(ipr);
        sizes = runs.map(|r| r.units);
    }
    let added = per_record[0] - per_record[1];
    println!("ring write adds {added:.1} instructions/record over a memcpy (goal <= 20)");
    let json_path = out_dir.join("ring.json");
    std::fs::write(
        &json_path,
        format!(
            "{{\"records\":[{},{}],\"instructions_per_record\":{{\"ring\":{:.1},\"memcpy\":{:.1},\"added\":{added:.1}}}}}\n",
            sizes[0], sizes[1], per_record[0], per_record[1]
        ),
    )?;
    println!("bench: wrote {}", json_path.display());
    Ok(())
}

/// The callgrind figures of the decode loops ([`LOOPS`], and `sflow_loop`), written to
/// `target/bench/decode.json`, with IPFIX's cost split into a part per message and a part per
/// record.
fn callgrind_decode() -> anyhow::Result<()> {
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut tables = Vec::new();
    let mut splits = Vec::new();
    let datagrams = DATAGRAMS.to_string();
    for (example, protocols, key) in LOOPS {
        let binary = release_example(example)?;
        let mut rows = Vec::new();
        for protocol in protocols {
            let args = ["--protocol", protocol, "--datagrams", &datagrams];
            let runs = loop_runs(&binary, &args, "records")?;
            rows.push((*protocol, runs));
        }
        if example == "decode_loop" {
            let binary = release_example("sflow_loop")?;
            let runs = loop_runs(&binary, &["--datagrams", &datagrams], "samples")?;
            rows.push(("sflow", runs));
        }
        println!(
            "{example}: {:<12} {:>22} {:>12}",
            "protocol", "instructions/record", "records(2N)"
        );
        let mut figures = Vec::new();
        for (protocol, runs) in &rows {
            let per_record = per_unit(*runs).with_context(|| {
                format!("{example} {protocol}: the larger run decoded no more records")
            })?;
            println!(
                "{example}: {protocol:<12} {per_record:>22.1} {:>12}",
                runs[1].units
            );
            figures.push(format!("\"{protocol}\":{per_record:.1}"));
        }
        let runs_of = |p: &str| rows.iter().find(|(q, _)| *q == p).map(|(_, runs)| *runs);
        if let (Some(batched), Some(single)) = (runs_of("ipfix"), runs_of("ipfix-single"))
            && let Some(split) = Split::fit(batched, single)
        {
            println!(
                "{example}: ipfix = {:.1} per message + {:.1} per record (fitted to ipfix and ipfix-single)",
                split.per_message, split.per_record
            );
            splits.push(format!(
                "\"{key}\":{{\"per_message\":{:.1},\"per_record\":{:.1}}}",
                split.per_message, split.per_record
            ));
        }
        tables.push(format!("\"{key}\":{{{}}}", figures.join(",")));
    }
    let json = format!(
        "{{\"datagrams\":[{},{}],{},\"ipfix_split\":{{{}}}}}\n",
        DATAGRAMS,
        2 * DATAGRAMS,
        tables.join(","),
        splits.join(",")
    );
    let json_path = out_dir.join("decode.json");
    std::fs::write(&json_path, json)?;
    println!("bench: wrote {}", json_path.display());
    Ok(())
}

/// Datagrams in the smaller callgrind run of the decode loops (the larger has twice as many).
const DATAGRAMS: u64 = 2000;

/// One callgrind run of a measurement example: its size (datagrams, or the units when it is sized
/// by them), the units it counted (records, samples) and the instructions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    pub size: u64,
    pub units: u64,
    pub ir: u64,
}

/// `binary --callgrind` with `args`: its two runs, counted in `unit`.
fn loop_runs(binary: &Path, args: &[&str], unit: &str) -> anyhow::Result<[Run; 2]> {
    let out = Command::new(binary)
        .arg("--callgrind")
        .args(args)
        .output()
        .context("running valgrind (apt-get install valgrind)")?;
    anyhow::ensure!(
        out.status.success(),
        "{} --callgrind {}: {}",
        binary.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_runs(&String::from_utf8_lossy(&out.stdout), unit).with_context(|| {
        format!(
            "{} --callgrind {} printed no two runs",
            binary.display(),
            args.join(" ")
        )
    })
}

/// The two runs a `--callgrind` example prints, one line each: `datagrams=N UNIT=U Ir=I`, or
/// `UNIT=U Ir=I` when it is sized in its units.
pub fn parse_runs(stdout: &str, unit: &str) -> Option<[Run; 2]> {
    let runs: Vec<Run> = stdout
        .lines()
        .filter_map(|line| {
            let value = |key: &str| {
                line.split_whitespace().find_map(|word| {
                    word.strip_prefix(key)?
                        .strip_prefix('=')?
                        .parse::<u64>()
                        .ok()
                })
            };
            let units = value(unit)?;
            Some(Run {
                size: value("datagrams").unwrap_or(units),
                units,
                ir: value("Ir")?,
            })
        })
        .collect();
    runs.try_into().ok()
}

/// Differential instructions per unit between two runs: what start-up costs cancels out.
pub fn per_unit([small, large]: [Run; 2]) -> Option<f64> {
    let units = large.units.checked_sub(small.units).filter(|u| *u > 0)?;
    let ir = large.ir.checked_sub(small.ir)?;
    Some(ir as f64 / units as f64)
}

/// IPFIX's cost as a part per message and a part per record: a line through the loop with
/// many records per message and the one with a single record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    pub per_message: f64,
    pub per_record: f64,
}

impl Split {
    /// From the runs of two loops of different records per message: per message and records
    /// per message of each (differential, as [`per_unit`]), then the line through both.
    pub fn fit(a: [Run; 2], b: [Run; 2]) -> Option<Split> {
        let per_datagram = |[small, large]: [Run; 2]| {
            let datagrams = large.size.checked_sub(small.size).filter(|d| *d > 0)? as f64;
            let ir = large.ir.checked_sub(small.ir)? as f64;
            let records = large.units.checked_sub(small.units)? as f64;
            Some((ir / datagrams, records / datagrams))
        };
        let ((ir_a, records_a), (ir_b, records_b)) = (per_datagram(a)?, per_datagram(b)?);
        let per_record = (ir_a - ir_b) / (records_a - records_b);
        per_record.is_finite().then_some(Split {
            per_message: ir_b - per_record * records_b,
            per_record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_pick_their_systems() {
        let names = |g, cpus| {
            systems(g, cpus)
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Group::E2eUdp, 4), ["collector-w1", "collector-w4"]);
        assert_eq!(names(Group::E2eUdp, 1), ["collector-w1"]);
        assert_eq!(
            names(Group::Peers, 2),
            [
                "collector-w1",
                "collector-w2",
                "nfcapd",
                "sfcapd",
                "nfacctd",
                "sfacctd"
            ]
        );
        assert_eq!(
            names(Group::All, 1),
            ["collector-w1", "nfcapd", "sfcapd", "nfacctd", "sfacctd"]
        );
    }

    /// `cargo xtask bench --smoke` as a test: `cargo xtask test` passes the debug binaries in
    /// `COLLECTOR_BIN` and `FLOWGEN_BIN`; a plain `cargo test` uses them from target/debug
    /// when built, and skips otherwise. Asserts that the report is produced and well-formed,
    /// never a speed.
    #[test]
    fn smoke_run_writes_a_well_formed_report() {
        let Some(bins) = test_binaries() else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("xtask-bench-smoke-{}", std::process::id()));
        let report = smoke(&bins, &dir).expect("smoke run");
        let sweep = &report.sweeps[0];
        assert_eq!(sweep.profile, "ovs-netflow");
        assert_eq!(
            sweep.trials.len(),
            2,
            "a first trial and one bisection step"
        );
        assert!(
            sweep
                .trials
                .iter()
                .all(|t| t.sent_records > 0 && t.peak_rss_kib > 0)
        );
        assert!(
            (sweep.records_per_datagram - 30.0).abs() < 1.0,
            "v5 as OVS: 30 records"
        );
        if dir.join("max-lossless-rate.svg").is_file() {
            for stem in [
                "loss-vs-offered-rate",
                "max-lossless-rate",
                "cpu-per-million-records",
            ] {
                let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
                assert!(png.starts_with(b"\x89PNG"), "{stem}.png is a PNG");
                let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
                assert!(svg.contains("<svg"), "{stem}.svg is an SVG");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn groups_select_by_prefix() {
        assert!(Group::Decode.includes("decode_v9"));
        assert!(!Group::Decode.includes("ring_write"));
        assert!(Group::Ring.includes("ring_write"));
        assert!(Group::All.includes("anything"));
    }

    #[test]
    fn measurement_examples_output_is_read() {
        let decode = "datagrams=1000 records=12000 Ir=1866536\n\
                      datagrams=2000 records=24000 Ir=3732712\n\
                      instructions/record=155.5\n";
        let runs = parse_runs(decode, "records").expect("two runs");
        assert_eq!(
            runs[1],
            Run {
                size: 2000,
                units: 24000,
                ir: 3_732_712
            }
        );
        assert_eq!(per_unit(runs).map(|x| (x * 10.0).round()), Some(1555.0));
        // Sized in its units (ring_loop); samples (sflow_loop).
        let ring = parse_runs("records=10 Ir=100\nrecords=20 Ir=150\n", "records").expect("runs");
        assert_eq!((ring[0].size, per_unit(ring)), (10, Some(5.0)));
        assert!(parse_runs("datagrams=2 samples=9 Ir=1\n", "samples").is_none());
        assert!(parse_runs("nothing\n", "records").is_none());
        let same = Run {
            size: 1,
            units: 1,
            ir: 1,
        };
        assert_eq!(per_unit([same, same]), None);
    }

    #[test]
    fn ipfix_cost_splits_into_message_and_record() {
        // 500 per message and 100 per record: 12 records cost 1,700, one costs 600.
        let runs = |records: u64| {
            [1000, 2000].map(|datagrams| Run {
                size: datagrams,
                units: datagrams * records,
                ir: 7 + datagrams * (500 + 100 * records),
            })
        };
        let split = Split::fit(runs(12), runs(1)).expect("two loops");
        assert!((split.per_message - 500.0).abs() < 1e-9, "{split:?}");
        assert!((split.per_record - 100.0).abs() < 1e-9, "{split:?}");
        // The same number of records per message says nothing about the split.
        assert_eq!(Split::fit(runs(3), runs(3)), None);
    }
}
