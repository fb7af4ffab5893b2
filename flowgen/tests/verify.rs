//! `flowgen verify` against rings written with the project's RingWriter: a faithful copy passes;
//! a missing, an extra and an altered record each fail with the right finding.

mod common;

use collector::record::FlowRecord;
use collector::ring::{RingConfig, RingSize, RingWriter};
use common::{SEND_NS, TIME_BASE_NS, params, stream, temp_dir};
use flowgen::manifest::Manifest;
use flowgen::model::Profile;
use flowgen::verify::{Report, VerifyConfig, verify_dir};
use std::net::SocketAddr;

/// A manifest of two OVS IPFIX exporters (with a gap and a restart) and the records they sent,
/// six to a message so that records of one datagram share a sequence number group.
fn run() -> (Manifest, Vec<FlowRecord>) {
    let mut p = params(Profile::OvsIpfix, 9);
    p.records_per_datagram = 6;
    let mut logs = Vec::new();
    let mut records = Vec::new();
    for i in 0..2u32 {
        let src = SocketAddr::new([127, 0, 0, 1].into(), 41_000 + i as u16);
        let s = stream(&p, i, src, 25, Some(15));
        logs.push(s.log);
        records.extend(s.expected);
    }
    let m = Manifest::new("127.0.0.1:4739".parse().unwrap(), p, logs);
    (m, records)
}

/// Write `records` to two worker rings (alternating) in a new directory and verify it.
fn verify(manifest: &Manifest, records: &[FlowRecord], name: &str) -> Report {
    let dir = write_rings(records, name);
    let report = verify_dir(manifest, &dir, &VerifyConfig::default()).expect("verify");
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// A new directory with `records` in two worker rings (alternating).
fn write_rings(records: &[FlowRecord], name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    {
        let mut writers: Vec<RingWriter<FlowRecord>> = (0..2)
            .map(|w| {
                let config = RingConfig {
                    size: RingSize::Records(1024),
                    worker_id: w,
                    msync_interval: None,
                };
                RingWriter::open_in_dir(&dir, &config).expect("ring")
            })
            .collect();
        for (i, r) in records.iter().enumerate() {
            let w = &mut writers[i % 2];
            w.push(r);
            w.commit();
        }
    }
    dir
}

#[test]
fn the_command_exits_zero_on_a_match_and_one_on_a_difference() {
    let (m, mut records) = run();
    let manifest_dir = temp_dir("cli");
    let path = manifest_dir.join("manifest.json");
    m.write(&path).expect("write manifest");
    let verify = |dir: &std::path::Path, json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flowgen"));
        cmd.arg("verify")
            .arg("--manifest")
            .arg(&path)
            .arg("--ring-dir")
            .arg(dir);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run flowgen verify")
    };
    let good = write_rings(&records, "cli-good");
    let out = verify(&good, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: "));
    records[2].packets += 7;
    let bad = write_rings(&records, "cli-bad");
    let out = verify(&bad, true);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["mismatched"], 1);
    assert_eq!(report["findings"][0]["fields"][0]["field"], "packets");
    let missing_dir = manifest_dir.join("no-such-dir");
    assert_eq!(verify(&missing_dir, false).status.code(), Some(2));
    for d in [good, bad, manifest_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_faithful_copy_passes() {
    let (m, records) = run();
    assert!(records.len() > 200);
    let report = verify(&m, &records, "faithful");
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.matched, records.len() as u64);
    assert_eq!(report.expected, records.len() as u64);
    assert_eq!(
        report.intentional_gaps, 4,
        "25 datagrams, a gap before every 9th, 2 exporters"
    );
}

#[test]
fn a_missing_record_fails() {
    let (m, mut records) = run();
    let gone = records.remove(37);
    let report = verify(&m, &records, "missing");
    assert!(!report.ok());
    assert_eq!((report.missing, report.extra, report.mismatched), (1, 0, 0));
    let f = report
        .findings
        .iter()
        .find(|f| f.kind == "missing")
        .expect("finding");
    assert_eq!(f.sequence, gone.sequence_num);
    assert!(report.summary().starts_with("MISMATCH"));
}

#[test]
fn an_extra_record_fails() {
    let (m, mut records) = run();
    // A duplicate: the collector wrote one record twice.
    records.push(records[5]);
    // And a record in a datagram that was never sent.
    let mut invented = records[6];
    invented.sequence_num = 999_999;
    records.push(invented);
    let report = verify(&m, &records, "extra");
    assert!(!report.ok());
    assert_eq!((report.missing, report.extra, report.mismatched), (0, 2, 0));
}

#[test]
fn an_altered_record_fails_with_the_fields_that_differ() {
    let (m, mut records) = run();
    records[11].bytes += 1;
    records[12].dst_port ^= 1;
    records[12].time_flow_end_ns += 5_000_000;
    let report = verify(&m, &records, "altered");
    assert!(!report.ok());
    assert_eq!((report.missing, report.extra, report.mismatched), (0, 0, 2));
    let fields: Vec<&str> = report
        .mismatched_fields
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(fields, ["bytes", "dst_port", "time_flow_end_ns"]);
    // Within the time tolerance is not a mismatch.
    let (m, mut records) = run();
    records[3].time_flow_start_ns += 900_000;
    assert!(verify(&m, &records, "tolerance").ok());
}

#[test]
fn records_of_other_exporters_are_foreign_not_extra() {
    let (m, mut records) = run();
    let mut other = records[0];
    other.exporter_port = 9;
    records.push(other);
    let report = verify(&m, &records, "foreign");
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.foreign, 1);
}

#[test]
fn a_run_that_sent_no_record_is_not_ok() {
    // Every data datagram refused: the manifest expects nothing, and verify must not call that OK.
    let (mut m, _) = run();
    for e in &mut m.exporters {
        e.records = 0;
        e.events = (0..e.data_datagrams)
            .map(|at| flowgen::manifest::Event::Unsent { at })
            .collect();
        e.refused_datagrams = e.data_datagrams;
        e.refusal = Some("Invalid argument (os error 22)".to_string());
    }
    m.totals = m.compute_totals();
    let report = verify(&m, &[], "nothing-sent");
    assert_eq!(report.expected, 0);
    assert!(!report.ok());
    assert_eq!(report.verdict(), "NOTHING SENT");
    assert!(
        report.summary().contains("os error 22"),
        "{}",
        report.summary()
    );
}

/// A new directory with one ring of `capacity` records per worker, worker `w` holding `rings[w]`
/// in order (as the collector writes them: one exporter's records all go to one worker).
fn write_worker_rings(rings: &[Vec<FlowRecord>], capacity: u64, name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    for (w, records) in rings.iter().enumerate() {
        let config = RingConfig {
            size: RingSize::Records(capacity),
            worker_id: w as u32,
            msync_interval: None,
        };
        let mut writer = RingWriter::open_in_dir(&dir, &config).expect("ring");
        for r in records {
            writer.push(r);
            writer.commit();
        }
    }
    dir
}

/// The run's records split by exporter (exporter i to worker i), received during the run.
fn by_exporter(records: &[FlowRecord]) -> Vec<Vec<FlowRecord>> {
    let mut rings = vec![Vec::new(), Vec::new()];
    for r in records {
        let mut r = *r;
        r.time_received_ns = SEND_NS;
        rings[usize::from(r.exporter_port - 41_000)].push(r);
    }
    rings
}

#[test]
fn records_overwritten_in_a_ring_too_small_for_the_run_are_not_collector_loss() {
    // The user's walkthrough: a run larger than the rings. verify used to start at the oldest
    // record left and report everything overwritten before as "missing" with 0 ring records lost.
    let (m, records) = run();
    let mut rings = by_exporter(&records);
    // A collector may write one datagram's records in another order than they were generated
    // (IPFIX sets of different templates): 25 datagrams of 6 records do not fill 64 slots evenly,
    // so each ring's oldest datagram left is partly overwritten.
    for ring in &mut rings {
        for datagram in ring.chunk_by_mut(|a, b| a.sequence_num == b.sequence_num) {
            datagram.reverse();
        }
        assert_ne!((ring.len() - 64) % 6, 0);
    }
    let held = 2 * 64;
    let dir = write_worker_rings(&rings, 64, "overwritten");
    let report = verify_dir(&m, &dir, &VerifyConfig::default()).expect("verify");
    let gone = records.len() as u64 - held;
    assert_eq!(report.verdict(), "INCOMPLETE", "{}", report.summary());
    assert!(!report.ok());
    assert_eq!(
        (
            report.matched,
            report.missing,
            report.overwritten,
            report.ring_lost
        ),
        (held, 0, gone, gone),
        "{}",
        report.summary()
    );
    assert!(report.summary().contains("rings too small for verify"));
    assert!(!report.summary().contains("collector lost records"));

    // The command says so with its own exit status.
    let path = dir.join("manifest.json");
    m.write(&path).expect("write manifest");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .arg("verify")
        .arg("--manifest")
        .arg(&path)
        .arg("--ring-dir")
        .arg(&dir)
        .output()
        .expect("run flowgen verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.starts_with("INCOMPLETE: "), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);

    // A record lost by the collector after the oldest one left is still collector loss.
    let mut rings = by_exporter(&records);
    let at = rings[1].len() - 10;
    let lost = rings[1].remove(at);
    let dir = write_worker_rings(&rings, 64, "overwritten-and-lost");
    let report = verify_dir(&m, &dir, &VerifyConfig::default()).expect("verify");
    assert_eq!(report.verdict(), "MISMATCH", "{}", report.summary());
    assert_eq!(report.missing, 1, "{}", report.summary());
    assert_eq!(report.overwritten, gone - 1, "{}", report.summary());
    let f = report
        .findings
        .iter()
        .find(|f| f.kind == "missing")
        .expect("finding");
    assert_eq!(f.sequence, lost.sequence_num);
    assert!(report.summary().contains("collector lost records: 1 "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_overwritten_before_the_run_do_not_excuse_missing_ones() {
    // The rings wrapped over records older than the run, and still hold the whole run: a record
    // of the run not there was lost by the collector, not overwritten.
    let (m, records) = run();
    let mut rings = by_exporter(&records);
    for ring in &mut rings {
        let mut old = ring[0];
        old.exporter_port = 9;
        old.time_received_ns = TIME_BASE_NS - 1_000_000_000;
        let mut before = vec![old; 300];
        before.append(ring);
        *ring = before;
    }
    let dir = write_worker_rings(&rings, 256, "old-overwritten");
    let report = verify_dir(&m, &dir, &VerifyConfig::default()).expect("verify");
    assert!(report.ok(), "{}", report.summary());
    assert!(report.ring_lost > 0);
    assert_eq!(report.overwritten, 0);
    let _ = std::fs::remove_dir_all(&dir);

    let last = rings[0].len() - 1;
    rings[0].remove(last);
    let dir = write_worker_rings(&rings, 256, "old-overwritten-lost");
    let report = verify_dir(&m, &dir, &VerifyConfig::default()).expect("verify");
    assert_eq!(report.verdict(), "MISMATCH", "{}", report.summary());
    assert_eq!((report.missing, report.overwritten), (1, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_manifest_survives_json() {
    let (m, _) = run();
    let dir = temp_dir("json");
    let path = dir.join("manifest.json");
    m.write(&path).expect("write");
    assert_eq!(Manifest::read(&path).expect("read"), m);
    let _ = std::fs::remove_dir_all(&dir);
}
