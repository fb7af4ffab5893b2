//! `--netns`: flowgen adds the exporters' source addresses to an interface inside a network
//! namespace, sends from them, and removes them afterwards. Runs as root with `ip` available (else
//! SKIPPED); the namespace is this test's own and is deleted however the test ends.

mod common;

use flowgen::manifest::Manifest;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// A new network namespace of this test's own (`None`, after printing SKIPPED, when it cannot be
/// made and privileged tests are not required).
fn namespace(tag: &str) -> Option<Namespace> {
    let name = format!("flowgen-{tag}{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        // CI requires privileged tests to run (the integration tests' convention).
        assert!(
            std::env::var("COLLECTOR_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "cannot create a network namespace and COLLECTOR_REQUIRE_PRIVILEGED=1"
        );
        println!("SKIPPED: cannot create a network namespace (needs root and iproute2)");
        return None;
    }
    Some(Namespace(name))
}

/// Loopback up, and a veth pair (fg0, fg1) up in `ns` with `addr` on fg0.
fn with_veth(ns: &Namespace, addr: &str) {
    assert!(ip(&["-n", &ns.0, "link", "set", "lo", "up"]));
    assert!(ip(&[
        "-n", &ns.0, "link", "add", "fg0", "type", "veth", "peer", "name", "fg1"
    ]));
    assert!(ip(&["-n", &ns.0, "link", "set", "fg0", "up"]));
    assert!(ip(&["-n", &ns.0, "link", "set", "fg1", "up"]));
    assert!(ip(&["-n", &ns.0, "addr", "add", addr, "dev", "fg0"]));
}

#[test]
fn sources_are_added_in_the_namespace_used_and_removed() {
    let Some(ns) = namespace("t") else {
        return;
    };
    let name = ns.0.clone();
    with_veth(&ns, "10.199.255.254/16");

    // The receiver lives in the namespace: a thread that entered it.
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver_ns = name.clone();
    let receiver = std::thread::spawn(move || {
        flowgen::netns::enter(&receiver_ns).expect("enter namespace");
        let socket = UdpSocket::bind("10.199.255.254:0").expect("bind in namespace");
        tx.send(socket.local_addr().expect("addr"))
            .expect("send addr");
        socket
            .set_read_timeout(Some(Duration::from_millis(800)))
            .expect("timeout");
        let mut got: Vec<SocketAddr> = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok((_, from)) = socket.recv_from(&mut buf) {
            got.push(from);
        }
        got
    });
    let to = rx.recv().expect("receiver address");
    let dir = common::temp_dir("netns");
    let manifest_path = dir.join("m.json");
    let out = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args([
            "--profile",
            "ovs-netflow",
            "-n",
            "3",
            "--count",
            "30",
            "--rate",
            "3000",
        ])
        .args([
            "--source-addrs",
            "10.199.0.1/16",
            "--netns",
            &name,
            "--netns-dev",
            "fg0",
            "--progress",
            "none",
        ])
        .arg("--to")
        .arg(to.to_string())
        .arg("--manifest")
        .arg(&manifest_path)
        .output()
        .expect("run flowgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.join().expect("receiver");
    let m = Manifest::read(&manifest_path).expect("manifest");
    let sources: Vec<IpAddr> = m
        .exporters
        .iter()
        .filter_map(|e| e.source.map(|s| s.ip()))
        .collect();
    let want: Vec<IpAddr> = ["10.199.0.1", "10.199.0.2", "10.199.0.3"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(sources, want);
    assert_eq!(got.len() as u64, m.totals.datagrams);
    for e in &m.exporters {
        let from = got.iter().filter(|a| Some(**a) == e.source).count() as u64;
        assert_eq!(from, e.datagrams);
    }
    // The addresses flowgen added are gone; the test's own is still there.
    let shown = Command::new("ip")
        .args(["-n", &name, "addr", "show", "dev", "fg0"])
        .output()
        .expect("ip");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!shown.contains("10.199.0.1/"), "{shown}");
    assert!(shown.contains("10.199.255.254/16"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The user's walkthrough: in a namespace whose only address is 10.77.0.2, the default source
/// (127.0.0.1) cannot reach 10.77.0.1 and the kernel refuses every datagram (EINVAL, before any
/// packet exists). flowgen says why once, stops, exits 1, and its manifest makes verify fail.
#[test]
fn a_run_whose_every_datagram_is_refused_fails_and_says_why() {
    let Some(ns) = namespace("r") else {
        return;
    };
    with_veth(&ns, "10.77.0.2/24");
    let dir = common::temp_dir("refused");
    let manifest_path = dir.join("m.json");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(env!("CARGO_BIN_EXE_flowgen"))
        .args([
            "--profile",
            "ipfix",
            "--to",
            "10.77.0.1:4739",
            "--count",
            "5",
        ])
        .args(["--progress", "none", "--manifest"])
        .arg(&manifest_path)
        .output()
        .expect("run flowgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The reason, once (not once per datagram).
    assert_eq!(stderr.matches("Invalid argument").count(), 1, "{stderr}");
    assert!(
        stderr.contains("first refusal: exporter 0 (127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped early"), "{stderr}");

    let m = Manifest::read(&manifest_path).expect("manifest");
    assert_eq!((m.totals.datagrams, m.totals.records), (0, 0));
    assert_eq!(m.totals.unsent, 5);
    assert!(m.totals.refused_datagrams >= 5, "{:?}", m.totals);
    let e = &m.exporters[0];
    assert!(
        e.refusal
            .as_deref()
            .is_some_and(|r| r.contains("os error 22")),
        "{:?}",
        e.refusal
    );
    assert!(
        m.stopped
            .as_deref()
            .is_some_and(|s| s.contains("10.77.0.1:4739"))
    );

    let rings = dir.join("rings");
    std::fs::create_dir(&rings).expect("ring dir");
    let out = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .arg("verify")
        .arg("--manifest")
        .arg(&manifest_path)
        .arg("--ring-dir")
        .arg(&rings)
        .output()
        .expect("run flowgen verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("NOTHING SENT: "), "{stdout}");
    assert!(stdout.contains("os error 22"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
