//! Instruction counting for the decode examples: run this example again under
//! `valgrind --tool=callgrind` and read back the total instructions (Ir) and the units it decoded.

use std::process::Command;

/// `(Ir, units)` of one run of this binary under callgrind with `args`, the units read from the
/// `UNIT=N` word it prints (`records`, `samples`); `valgrind_args` go to valgrind (e.g. a
/// `--toggle-collect` that limits the count to the decode loop).
pub fn run(valgrind_args: &[&str], args: &[String], unit: &str) -> Result<(u64, u64), String> {
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
