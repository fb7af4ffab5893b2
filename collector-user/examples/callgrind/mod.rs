//! Instruction counting for the measurement examples (`decode_loop`, `worker_loop`, `sflow_loop`,
//! `ring_loop`): with `--callgrind` an example runs itself again under `valgrind --tool=callgrind`
//! for N and 2N units of work and prints the differential figure, so start-up cost cancels out.
//! `cargo xtask bench` reads the lines [`differential`] prints.

use std::process::Command;

/// `(Ir, units)` of one run of this binary under callgrind with `args`, the units read from the
/// `UNIT=N` word it prints (`records`, `samples`); `valgrind_args` go to valgrind (e.g. a
/// `--toggle-collect` that limits the count to the decode loop).
fn run(valgrind_args: &[&str], args: &[String], unit: &str) -> Result<(u64, u64), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let name = me
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let out_file = std::env::temp_dir().join(format!(
        "callgrind.{name}.{}.{}.out",
        std::process::id(),
        args.join("_").replace(['/', '-'], "")
    ));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .args(valgrind_args)
        .arg(&me)
        .args(args)
        .output()
        .map_err(|e| format!("running valgrind: {e}"))?;
    if !out.status.success() {
        // What the program said, without valgrind's own lines.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("==")).collect();
        return Err(format!("{name} {}: {}", args.join(" "), said.join("\n")));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{unit}=");
    let units = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no {prefix} in {stdout:?}"))?;
    let profile = std::fs::read_to_string(&out_file).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out_file);
    let ir = profile
        .lines()
        .find_map(|l| {
            let rest = l
                .strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or("no summary/totals line in the callgrind output")?;
    Ok((ir, units))
}

/// What one run is sized by and what it counts: the flag taking N (`datagrams`, `records`) and
/// the unit it prints as `UNIT=N` (`records`, `samples`).
pub struct Units {
    pub size: &'static str,
    pub unit: &'static str,
}

/// `--callgrind`: this binary under callgrind with `args(n)` and `args(2n)` (`valgrind_args`, e.g.
/// `--toggle-collect` patterns, go to valgrind). Prints one line per run, `SIZE=N UNIT=U Ir=I`
/// (the size left out when it is the unit), then `instructions/UNIT=…`, that is
/// (Ir(2n) − Ir(n)) / (U(2n) − U(n)) with the unit in the singular. Exits with 1 when that
/// cannot be measured.
pub fn differential(
    valgrind_args: &[&str],
    args: impl Fn(usize) -> Vec<String>,
    units: &Units,
    n: usize,
) {
    let Units { size, unit } = units;
    let measure = |n: usize| run(valgrind_args, &args(n), unit);
    match measure(n).and_then(|small| Ok((small, measure(2 * n)?))) {
        Ok(((ir1, u1), (ir2, u2))) if u2 > u1 => {
            for (n, u, ir) in [(n, u1, ir1), (2 * n, u2, ir2)] {
                if size == unit {
                    println!("{unit}={u} Ir={ir}");
                } else {
                    println!("{size}={n} {unit}={u} Ir={ir}");
                }
            }
            let singular = unit.strip_suffix('s').unwrap_or(unit);
            println!(
                "instructions/{singular}={:.1}",
                (ir2 - ir1) as f64 / (u2 - u1) as f64
            );
        }
        Ok(_) => {
            eprintln!("the larger run counted no more {unit}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// The command line of the record loops (`decode_loop`, `worker_loop`): `--protocol P`,
/// `--datagrams N` (default 1000 with `--callgrind`, 100,000 without), `--exporters E` (default 1)
/// and `--callgrind`.
pub struct LoopArgs {
    pub protocol: String,
    pub callgrind: bool,
    pub datagrams: usize,
    pub exporters: u16,
}

impl LoopArgs {
    /// This process's arguments (`protocol` when none is given), unless it was asked for
    /// `--callgrind`: then the figure is measured and printed ([`per_record`], counting as
    /// `toggles` say) and there is nothing left to run.
    pub fn or_measure(protocol: &str, toggles: &[&str]) -> Option<LoopArgs> {
        let args = LoopArgs::from_env(protocol);
        if args.callgrind {
            per_record(toggles, &args);
            return None;
        }
        Some(args)
    }

    /// This process's arguments; `protocol` when none is given.
    fn from_env(protocol: &str) -> LoopArgs {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let callgrind = args.iter().any(|a| a == "--callgrind");
        LoopArgs {
            protocol: value("--protocol").unwrap_or_else(|| protocol.into()),
            callgrind,
            datagrams: value("--datagrams")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if callgrind { 1000 } else { 100_000 }),
            exporters: value("--exporters")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1),
        }
    }
}

/// `--callgrind` of a record loop ([`differential`] in datagrams and records), counting only
/// inside the function `toggles[0]` names (each further pattern names a function inside it whose
/// instructions are left out: entering it toggles the count).
pub fn per_record(toggles: &[&str], loop_args: &LoopArgs) {
    let LoopArgs {
        protocol,
        datagrams: n,
        exporters,
        ..
    } = loop_args;
    let toggles: Vec<String> = toggles
        .iter()
        .map(|t| format!("--toggle-collect={t}"))
        .collect();
    let toggles: Vec<&str> = toggles.iter().map(String::as_str).collect();
    let args = |datagrams: usize| {
        [
            "--protocol",
            protocol,
            "--datagrams",
            &datagrams.to_string(),
            "--exporters",
            &exporters.to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let units = Units {
        size: "datagrams",
        unit: "records",
    };
    differential(&toggles, args, &units, *n);
}
