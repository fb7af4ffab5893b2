//! `collector read` end to end: the binary reads rings written by `WorkerRings`.

mod ring_common;

use bytemuck::Zeroable as _;
use collector::decode::RecordSink as _;
use collector::record::{CounterRecord, FlowRecord, FlowType};
use collector::ring::{RingConfig, RingSize, WorkerRings};
use ring_common::Scratch;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_collector"))
}

fn rings(dir: &Path, worker: u32) -> WorkerRings {
    let config = RingConfig {
        size: RingSize::Records(1024),
        worker_id: worker,
        ..RingConfig::default()
    };
    WorkerRings::open(dir, &config).unwrap()
}

fn flow(bytes: u64) -> FlowRecord {
    FlowRecord {
        bytes,
        packets: 1,
        flow_type: FlowType::Ipfix as u8,
        ..FlowRecord::zeroed()
    }
}

fn write_flows(rings: &mut WorkerRings, bytes: impl IntoIterator<Item = u64>) {
    for b in bytes {
        rings.flow(&flow(b));
    }
    rings.commit();
}

/// `collector read [args] --ring-dir DIR`, which must succeed: its stdout and stderr.
fn read_ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = collector()
        .arg("read")
        .args(args)
        .arg("--ring-dir")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

#[test]
fn snapshot_prints_every_record_as_json_and_a_stats_line() {
    let dir = Scratch::new("cli-snapshot");
    let mut w0 = rings(dir.path(), 0);
    let mut w1 = rings(dir.path(), 1);
    write_flows(&mut w0, 1000..1010);
    write_flows(&mut w1, 2000..2005);
    let (stdout, stderr) = read_ok(dir.path(), &[]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 15, "{stdout}");
    for b in (1000..1010).chain(2000..2005) {
        let key = format!("\"bytes\":{b},");
        assert_eq!(
            lines.iter().filter(|l| l.contains(&key)).count(),
            1,
            "{b}: {stdout}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('{') && l.ends_with('}') && l.contains("\"type\":\"IPFIX\""))
    );
    assert!(
        stderr.contains("records_read=15 records_lost=0"),
        "{stderr}"
    );
    assert!(stderr.contains("rings=2"), "{stderr}");
}

#[test]
fn counters_and_csv() {
    let dir = Scratch::new("cli-kinds");
    let mut w = rings(dir.path(), 0);
    write_flows(&mut w, [7, 8, 9]);
    w.counters(&CounterRecord::zeroed());
    w.commit();
    let out = collector()
        .args(["read", "--kind", "counters", "--ring-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("records_read=1 "));
    let out = collector()
        .args(["read", "--format", "csv", "--ring-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].contains("bytes") && !lines[0].contains("IPFIX"),
        "header: {}",
        lines[0]
    );
    assert!(lines[1..].iter().all(|l| l.contains("IPFIX")));
    let out = collector()
        .args([
            "read",
            "--kind",
            "counters",
            "--format",
            "csv",
            "--ring-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    // CSV has the flow records' columns: with counters it is a usage error (exit 2, like clap's),
    // one line naming both flags, and nothing on stdout.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--format") && stderr.contains("--kind counters"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // The help says the same, not that counter records would print as JSON.
    let help = collector().args(["read", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap().replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("refused with --kind counters") && !help.contains("counter records are JSON"),
        "{help}"
    );
}

/// `--format csv` prints its header line also when the rings hold no flow record (yet), so that a
/// CSV reader always gets the columns; with records, the header comes once, first.
#[test]
fn csv_header_is_printed_without_flow_records() {
    let dir = Scratch::new("cli-csv-empty");
    let mut w = rings(dir.path(), 0);
    // Rings that exist, with a counter record and no flow record.
    w.counters(&CounterRecord::zeroed());
    w.commit();
    let (stdout, stderr) = read_ok(dir.path(), &["--format", "csv"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("type,") && lines[0].contains(",bytes,"),
        "{stdout}"
    );
    assert!(stderr.contains("records_read=0 "), "{stderr}");
    let header = lines[0].to_string();
    write_flows(&mut w, [1, 2]);
    let (stdout, _) = read_ok(dir.path(), &["--format", "csv"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], header);
    assert!(
        lines[1..].iter().all(|l| l.starts_with("IPFIX,")),
        "{stdout}"
    );
}

#[test]
fn missing_or_empty_directory_is_a_clear_error() {
    let dir = Scratch::new("cli-empty");
    let out = collector()
        .args(["read", "--ring-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ring files"));
    let out = collector()
        .args(["read", "--ring-dir", "/nonexistent/rings"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rings"));
}

#[test]
fn follow_prints_new_records_until_sigterm() {
    let dir = Scratch::new("cli-follow");
    let mut w = rings(dir.path(), 0);
    write_flows(&mut w, 0..50); // before: not printed with --from now
    let mut child = collector()
        .args(["read", "--follow", "--from", "now", "--ring-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut got = Vec::new();
        for line in BufReader::new(stdout).lines() {
            got.push(line.unwrap());
            if got.len() == 300 {
                break;
            }
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    for batch in 0..3 {
        write_flows(&mut w, (0..100).map(|i| 10_000 + batch * 100 + i));
        std::thread::sleep(Duration::from_millis(30));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.is_finished() {
        assert!(Instant::now() < deadline, "follower printed too little");
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = lines.join().unwrap();
    assert!(got[0].contains("\"bytes\":10000,") && got[299].contains("\"bytes\":10299,"));
    // SAFETY: plain syscall to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("records_read=300 records_lost=0"),
        "{stderr}"
    );
}

#[test]
fn a_missing_path_is_one_clear_line() {
    for args in [
        &["read", "--ring-dir", "/nonexistent-collector-dir"][..],
        &["replay", "/nonexistent-collector-capture.pcap"][..],
    ] {
        let out = collector().args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The OS error once, not once more for its source.
        assert_eq!(
            stderr.matches("No such file or directory").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
