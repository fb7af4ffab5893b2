//! The `flowgen` command line: counts and rates as the flags say, the manifest written, and bad
//! flags refused.

mod common;

use flowgen::manifest::Manifest;
use std::net::UdpSocket;
use std::process::Command;

fn flowgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(args)
        .output()
        .expect("run flowgen")
}

#[test]
fn count_per_exporter_and_record_rate() {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let to = sink.local_addr().expect("addr").to_string();
    let dir = common::temp_dir("cli");
    let path = dir.join("m.json");
    let m = path.to_str().expect("path");

    // --count per exporter: exact.
    let out = flowgen(&[
        "--profile",
        "ovs-netflow",
        "-n",
        "3",
        "--count",
        "5",
        "--per-exporter",
        "--to",
        &to,
        "--gap-every",
        "2",
        "--seed",
        "7",
        "--progress",
        "none",
        "--manifest",
        m,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Manifest::read(&path).expect("manifest");
    assert_eq!(manifest.totals.data_datagrams, 15);
    assert!(
        manifest
            .exporters
            .iter()
            .all(|e| e.data_datagrams == 5 && e.records == 150)
    );
    assert_eq!(manifest.params.seed, 7);
    assert_eq!(manifest.params.gap_every, 2);
    assert_eq!(manifest.totals.gaps, 3 * 2);
    let ports: std::collections::HashSet<_> = manifest
        .exporters
        .iter()
        .map(|e| e.source.expect("source").port())
        .collect();
    assert_eq!(ports.len(), 3, "one source port per exporter");

    // --record-rate per exporter: 2 exporters × 1500 records/s at 30 records per datagram = 100
    // datagrams/s for 1 s.
    let out = flowgen(&[
        "--profile",
        "ovs-netflow",
        "-n",
        "2",
        "--record-rate",
        "1500",
        "--per-exporter",
        "--duration",
        "1",
        "--to",
        &to,
        "--progress",
        "lines",
        "--progress-interval",
        "0.3",
        "--manifest",
        m,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("datagrams/s")),
        "{stderr}"
    );
    let manifest = Manifest::read(&path).expect("manifest");
    let sent = manifest.totals.data_datagrams;
    assert!((60..=115).contains(&sent), "{sent} data datagrams");

    // Bad flags are refused with exit status 2 and a reason.
    for bad in [
        vec!["--records-per-datagram", "31", "--profile", "ovs-netflow"],
        vec!["--source-addrs", "10.0.0.1"],
        vec!["-n", "0"],
        vec!["--rate", "0"],
    ] {
        let mut args = bad.clone();
        args.extend(["--count", "1", "--to", &to]);
        let out = flowgen(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
