//! A real exporter (softflowd) → its datagrams captured into a pcap → `collector replay` compared
//! with tshark on the same pcap.
//!
//! - `softflowd_from_a_capture_*`: softflowd reads a traffic capture built here (`-r`) and exports
//!   NetFlow v5, v9 or IPFIX to a UDP socket of this test on 127.0.0.1; no privileges needed.
//! - `softflowd_live_in_network_namespaces` (privileged): softflowd watches the collector end of a
//!   veth pair between two namespaces while the peer sends two UDP flows; its IPFIX export goes to
//!   127.0.0.1 inside the collector namespace, flushed when softflowd is stopped (SIGTERM).
//!
//! The datagrams are written to a pcap as they arrived (raw IPv4/UDP, source = the exporter's
//! socket), then decoded by the `collector` binary and by tshark; the flow records must match as
//! multisets of (src, dst, ports, protocol, octets, packets), and the traffic's known flows must be
//! among them. Skips with `SKIPPED: reason` when softflowd or tshark is missing (the integrator's
//! `cargo xtask setup` installs `softflowd` and `tshark`); the live test also needs privileges
//! (`COLLECTOR_REQUIRE_PRIVILEGED=1` turns that skip into a failure). Open vSwitch as an exporter is
//! not covered here yet.

use collector::capture::{PcapWriter, linktype};
use collector_tests::collector::collector_bin;
use collector_tests::netns::{COLLECTOR_V4, NetnsPair, PEER_V4};
use collector_tests::privilege;
use etherparse::PacketBuilder;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// (src, dst, src port, dst port, protocol, octets, packets)
type FlowKey = (String, String, u16, u16, u8, u64, u64);

fn tool_available(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tools_missing(test: &str) -> bool {
    for tool in ["softflowd", "tshark"] {
        if !tool_available(tool) {
            println!("SKIPPED: {test}: {tool} is not installed (cargo xtask setup installs it)");
            return true;
        }
    }
    false
}

/// A child process killed (and reaped) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receive datagrams on `socket` until it has been quiet for `quiet` (or `limit` passed).
fn receive(socket: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while start.elapsed() < limit {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => got.push((from, buf[..n].to_vec())),
            Err(_) if !got.is_empty() => break,
            Err(_) => {}
        }
    }
    got
}

/// Write received datagrams as raw IPv4/UDP frames (from the exporter's socket to `to`).
fn write_capture(path: &Path, datagrams: &[(SocketAddr, Vec<u8>)], to: SocketAddr) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), linktype::RAW).unwrap();
    let (SocketAddr::V4(to), true) = (to, datagrams.iter().all(|(f, _)| f.is_ipv4())) else {
        panic!("IPv4 exporter expected");
    };
    for (i, (from, payload)) in datagrams.iter().enumerate() {
        let SocketAddr::V4(from) = from else {
            unreachable!()
        };
        let builder = PacketBuilder::ipv4(from.ip().octets(), to.ip().octets(), 64)
            .udp(from.port(), to.port());
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        w.write_frame(1_700_000_000_000_000_000 + i as u64 * 1_000_000, &frame)
            .unwrap();
    }
    w.finish().unwrap();
}

/// Flow records of `collector replay --json`, and the summary.
fn collector_flows(pcap: &Path) -> (Vec<FlowKey>, serde_json::Value) {
    let out = Command::new(collector_bin())
        .arg("replay")
        .arg(pcap)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "collector replay failed: {stderr}");
    let summary: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
        .expect("summary line");
    let proto_number = |v: &serde_json::Value| -> u8 {
        match v.as_str().unwrap() {
            "ICMP" => 1,
            "TCP" => 6,
            "UDP" => 17,
            "ICMPv6" => 58,
            "SCTP" => 132,
            other => other.parse().unwrap(),
        }
    };
    let flows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["src_addr"].as_str().unwrap().to_owned(),
                r["dst_addr"].as_str().unwrap().to_owned(),
                r["src_port"].as_u64().unwrap() as u16,
                r["dst_port"].as_u64().unwrap() as u16,
                proto_number(&r["proto"]),
                r["bytes"].as_u64().unwrap(),
                r["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    (flows, summary)
}

/// Flow records as tshark decodes them (IPv4 flows), ports zeroed.
fn tshark_flows(pcap: &Path, port: u16) -> Vec<FlowKey> {
    // Ports are left out: ICMP records carry none (IPFIX) or type/code (v5), so the per-field
    // lists would not line up. Ports are checked against the known traffic instead.
    let fields = [
        "cflow.srcaddr",
        "cflow.dstaddr",
        "cflow.protocol",
        "cflow.octets",
        "cflow.packets",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},cflow"), "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    cmd.args(["-E", "occurrence=a", "-E", "aggregator=|"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let columns: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split('|').filter(|s| !s.is_empty()).collect())
            .collect();
        let n = columns[0].len();
        assert!(
            columns.iter().all(|c| c.len() == n),
            "tshark fields do not line up: {line}"
        );
        for i in 0..n {
            flows.push((
                columns[0][i].to_owned(),
                columns[1][i].to_owned(),
                0,
                0,
                columns[2][i].parse().unwrap(),
                columns[3][i].parse().unwrap(),
                columns[4][i].parse().unwrap(),
            ));
        }
    }
    flows
}

fn multiset(flows: &[FlowKey]) -> BTreeMap<&FlowKey, usize> {
    let mut m = BTreeMap::new();
    for f in flows {
        *m.entry(f).or_default() += 1;
    }
    m
}

/// Replay the captured export and compare with tshark (unless `with_tshark` is false); returns
/// our flows.
fn compare(
    dir: &Path,
    datagrams: &[(SocketAddr, Vec<u8>)],
    to: SocketAddr,
    with_tshark: bool,
) -> Vec<FlowKey> {
    assert!(!datagrams.is_empty(), "the exporter sent nothing");
    let pcap = dir.join("export.pcap");
    write_capture(&pcap, datagrams, to);
    let (ours, summary) = collector_flows(&pcap);
    println!(
        "{} datagrams, {} records, summary {summary}",
        datagrams.len(),
        ours.len()
    );
    if with_tshark {
        let theirs = tshark_flows(&pcap, to.port());
        let without_ports: Vec<FlowKey> = ours
            .iter()
            .map(|f| (f.0.clone(), f.1.clone(), 0, 0, f.4, f.5, f.6))
            .collect();
        assert!(!theirs.is_empty(), "tshark decoded no flow record");
        assert_eq!(
            multiset(&without_ports),
            multiset(&theirs),
            "collector vs tshark"
        );
    }
    assert_eq!(
        summary["errors"],
        serde_json::json!({}),
        "decode errors: {summary}"
    );
    ours
}

/// A traffic capture: a UDP flow (5 × 48-byte packets), a TCP flow (3 packets) and pings.
fn traffic(path: &Path) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), linktype::ETHERNET).unwrap();
    let mac_a = [2, 0, 0, 0, 0, 0xa];
    let mac_b = [2, 0, 0, 0, 0, 0xb];
    let t0 = 1_700_000_000_000_000_000u64;
    let mut frames = Vec::new();
    for i in 0..5 {
        let b = PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 53);
        let mut f = Vec::new();
        b.write(&mut f, &[i; 20]).unwrap();
        frames.push(f);
    }
    for seq in 0..3u32 {
        let b = PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4([10, 0, 0, 3], [10, 0, 0, 4], 64)
            .tcp(40_000, 443, 1000 + seq, 1024)
            .ack(1);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 10]).unwrap();
        frames.push(f);
    }
    for seq in 0..2u16 {
        let b = PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
            .icmpv4_echo_request(7, seq);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 56]).unwrap();
        frames.push(f);
    }
    for (i, f) in frames.iter().enumerate() {
        w.write_frame(t0 + i as u64 * 10_000_000, f).unwrap();
    }
    w.finish().unwrap();
}

fn softflowd_from_a_capture(version: &str) {
    let test = format!("softflowd_from_a_capture_{version}");
    if tools_missing(&test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let traffic_pcap = dir.path().join("traffic.pcap");
    traffic(&traffic_pcap);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = socket.local_addr().unwrap();
    let status = Command::new("softflowd")
        .arg("-r")
        .arg(&traffic_pcap)
        .args(["-n", &to.to_string(), "-v", version, "-d"])
        // No control socket: with one at a custom path softflowd 1.1.0 does not exit at EOF.
        .args(["-c", "none"])
        .arg("-p")
        .arg(dir.path().join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "softflowd -r failed");
    let datagrams = receive(&socket, Duration::from_millis(500), Duration::from_secs(5));
    // softflowd's v9 header count is the number of flows, not of records (templates included),
    // and tshark stops reading at the count: it shows templates only. v9 is checked against the
    // known traffic alone.
    let ours = compare(dir.path(), &datagrams, to, version != "9");
    // The capture's flows, as softflowd counts them (IP octets).
    let expect: [FlowKey; 3] = [
        (
            "10.0.0.1".into(),
            "10.0.0.2".into(),
            5000,
            53,
            17,
            5 * 48,
            5,
        ),
        (
            "10.0.0.3".into(),
            "10.0.0.4".into(),
            40_000,
            443,
            6,
            3 * 50,
            3,
        ),
        ("10.0.0.5".into(), "10.0.0.6".into(), 0, 2048, 1, 2 * 84, 2),
    ];
    for flow in &expect {
        // ICMP: v5 puts type/code in the destination port, IPFIX has no port for it.
        let found = ours.iter().any(|f| {
            (f.0 == flow.0 && f.1 == flow.1 && f.4 == flow.4 && f.5 == flow.5 && f.6 == flow.6)
                && (flow.4 == 1 || (f.2 == flow.2 && f.3 == flow.3))
        });
        assert!(found, "{flow:?} missing from {ours:?}");
    }
    assert_eq!(ours.len(), expect.len(), "{ours:?}");
}

#[test]
fn softflowd_from_a_capture_netflow_v5() {
    softflowd_from_a_capture("5");
}

#[test]
fn softflowd_from_a_capture_netflow_v9() {
    softflowd_from_a_capture("9");
}

#[test]
fn softflowd_from_a_capture_ipfix() {
    softflowd_from_a_capture("10");
}

#[test]
#[ignore = "softflowd 1.1.0 -i on a veth inside a namespace reports no packet here (even with -D, -B); to investigate"]
fn softflowd_live_in_network_namespaces() {
    let test = "softflowd_live_in_network_namespaces";
    if tools_missing(test) || !privilege::require(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pair = NetnsPair::create().unwrap();
    let socket = pair
        .in_collector(|| UdpSocket::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let to = socket.local_addr().unwrap();
    let softflowd = Process(
        Command::new("ip")
            .args(["netns", "exec", &pair.collector_ns, "softflowd"])
            .args([
                "-i",
                &pair.collector_if,
                "-n",
                &to.to_string(),
                "-v",
                "10",
                "-d",
            ])
            .args(["-c", "none"])
            .arg("-p")
            .arg(dir.path().join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Let softflowd open its capture before traffic starts.
    std::thread::sleep(Duration::from_secs(1));
    pair.in_peer(|| {
        let s = UdpSocket::bind((PEER_V4, 41_000)).unwrap();
        for _ in 0..4 {
            s.send_to(&[0u8; 32], (COLLECTOR_V4, 9)).unwrap();
        }
        let s = UdpSocket::bind((PEER_V4, 41_001)).unwrap();
        for _ in 0..3 {
            s.send_to(&[0u8; 100], (COLLECTOR_V4, 10)).unwrap();
        }
    })
    .unwrap();
    // softflowd exports every flow it holds when asked to stop (`ip netns exec` execs it: same pid).
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the pid of our own child process.
    unsafe {
        libc::kill(softflowd.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let datagrams = receive(&socket, Duration::from_secs(2), Duration::from_secs(15));
    let ours = compare(dir.path(), &datagrams, to, true);
    let peer = PEER_V4.to_string();
    let collector = COLLECTOR_V4.to_string();
    assert!(
        ours.iter().any(|f| f.0 == peer
            && f.1 == collector
            && f.2 == 41_001
            && f.3 == 10
            && f.5 == 3 * 128
            && f.6 == 3),
        "no 3-packet UDP flow from the peer: {ours:?}"
    );
    assert!(
        ours.iter().any(|f| f.0 == peer
            && f.1 == collector
            && f.2 == 41_000
            && f.3 == 9
            && f.6 == 4),
        "no 4-packet UDP flow from the peer: {ours:?}"
    );
}
