//! Stopping `collector run` (UDP mode, loopback only, unprivileged): a SIGTERM during startup
//! stops it cleanly with no temporary ring file left; a start removes the temporary files of a
//! collector that was killed while creating a ring; and a SIGTERM under load with two workers
//! decodes no exporter's datagrams on a worker that does not own it (no false `template_missing`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use collector_tests::{
    collector::{CollectorProcess, ScratchDir, collector_bin},
    poll, privilege,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The `.<ring>.<pid>.tmp` files in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
        .collect()
}

/// Wait (checking every millisecond) until `found` holds for the ring directory `dir`.
fn wait_for(dir: &Path, found: impl Fn(&Path) -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if found(dir) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// `collector run` with its rings in `rings`, listening on a port the kernel picks.
fn start(rings: &Path, workers: &str) -> CollectorProcess {
    let rings = rings.to_str().unwrap();
    CollectorProcess::start(
        None,
        &[
            "run",
            "--ring-dir",
            rings,
            "--workers",
            workers,
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        "info",
    )
    .expect("collector starts")
}

/// Wait until the collector logged `line`; fails with its stderr.
fn wait_logged(collector: &CollectorProcess, line: &str) {
    poll(TIMEOUT, || collector.stderr().contains(line).then_some(()))
        .unwrap_or_else(|| panic!("never logged {line:?}:\n{}", collector.stderr()));
}

#[test]
fn sigterm_during_startup_stops_cleanly_without_temporary_files() {
    let scratch = ScratchDir::new().unwrap();
    let rings = scratch.path().join("rings");
    // Eight workers: sixteen 64 MiB rings to create, one after the other.
    let mut collector = start(&rings, "8");
    assert!(
        wait_for(&rings, |dir| std::fs::read_dir(dir)
            .is_ok_and(|mut e| e.next().is_some())),
        "no ring file appeared:\n{}",
        collector.stderr()
    );
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(TIMEOUT).expect("exits");
    let stderr = collector.stderr();
    assert!(status.success(), "{status:?}:\n{stderr}");
    assert!(
        stderr.contains("SIGTERM during startup: stopped before collecting"),
        "{stderr}"
    );
    assert_eq!(temp_files(&rings), Vec::<String>::new(), "{stderr}");
}

#[test]
fn a_start_removes_the_temporary_files_of_a_killed_collector() {
    let scratch = ScratchDir::new().unwrap();
    let rings = scratch.path().join("rings");
    // SIGKILL a collector while it builds a ring in a temporary file (tried again in the rare
    // case the ring was moved into place between seeing the file and the kill).
    let mut left = Vec::new();
    for _ in 0..5 {
        let mut killed = start(&rings, "8");
        let seen = wait_for(&rings, |dir| !temp_files(dir).is_empty());
        killed.signal(libc::SIGKILL).unwrap();
        killed.wait_exit(TIMEOUT).expect("killed");
        assert!(seen, "no temporary file seen:\n{}", killed.stderr());
        left = temp_files(&rings);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "every kill missed the temporary file");

    let mut collector = start(&rings, "1");
    wait_logged(&collector, "collecting");
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(TIMEOUT).expect("exits");
    let stderr = collector.stderr();
    assert!(status.success(), "{status:?}:\n{stderr}");
    assert_eq!(temp_files(&rings), Vec::<String>::new(), "{stderr}");
    for name in &left {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("removed a temporary ring file") && l.contains(name.as_str())),
            "removal of {name} not logged:\n{stderr}"
        );
    }
}

/// The `flowgen` binary: `FLOWGEN_BIN` (set by `cargo xtask test`) or next to the collector.
fn flowgen_bin() -> Option<PathBuf> {
    let path = std::env::var_os("FLOWGEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| collector_bin().with_file_name("flowgen"));
    path.is_file().then_some(path)
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_under_load_decodes_no_exporter_on_a_worker_that_does_not_own_it() {
    let test = "sigterm_under_load_decodes_no_exporter_on_a_worker_that_does_not_own_it";
    let Some(flowgen) = flowgen_bin() else {
        privilege::skip(
            test,
            "no flowgen binary (run `cargo xtask test`, or set FLOWGEN_BIN)",
        );
        return;
    };
    let scratch = ScratchDir::new().unwrap();
    let mut collector = start(&scratch.path().join("rings"), "2");
    wait_logged(&collector, "collecting");
    let stderr = collector.stderr();
    let listen = stderr
        .lines()
        .find_map(|l| l.split("listen=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no listen address logged:\n{stderr}"))
        .to_string();
    // Eight IPFIX exporters (templates first), steady, within what a debug build decodes.
    let sender = Killed(
        Command::new(flowgen)
            .args(["--profile", "ipfix", "-n", "8", "--rate", "5000"])
            .args(["--duration", "10", "--progress", "none", "--to", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("flowgen starts"),
    );
    std::thread::sleep(Duration::from_secs(2));
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(TIMEOUT).expect("exits");
    drop(sender);
    let stderr = collector.stderr();
    assert!(status.success(), "{status:?}:\n{stderr}");

    // Each exporter is new on one worker only.
    let mut owners = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for line in stderr.lines().filter(|l| l.contains("new exporter")) {
        let field = |name: &str| {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_default()
        };
        owners
            .entry(field("exporter"))
            .or_default()
            .push(field("worker"));
    }
    assert_eq!(owners.len(), 8, "{stderr}");
    assert!(
        owners.values().all(|workers| workers.len() == 1),
        "exporters new on more than one worker: {owners:?}\n{stderr}"
    );
    let last = stderr
        .lines()
        .find(|l| l.contains("final:"))
        .unwrap_or_else(|| panic!("no final summary:\n{stderr}"));
    assert!(last.contains(" decode_errors=0 "), "{last}");
    assert!(!stderr.contains("template_missing"), "{stderr}");
}
