//! Real exporters → their datagrams captured → `collector replay` compared with tshark on the same
//! capture, record by record.
//!
//! softflowd (needs `softflowd`, `tshark`):
//! - `softflowd_from_a_capture_*`: softflowd reads a traffic capture built here (`-r`) and exports
//!   NetFlow v5, v9 or IPFIX to a UDP socket of this test on 127.0.0.1; no privileges needed.
//! - `softflowd_ipfix_sequence_numbers_without_its_options_records`: 1,500 flows the same way,
//!   IPFIX, judged for sequence loss (softflowd leaves its options records out of its numbers).
//! - `softflowd_live_in_network_namespaces` (privileged): softflowd captures on the collector end
//!   of a veth pair between two namespaces while the peer sends UDP flows; its IPFIX export goes
//!   to 127.0.0.1 inside the collector namespace (see the test's doc for the capture-block filler).
//!
//! softflowd's and pmacct's datagrams are received on a socket of the test and written to a pcap
//! as they arrived (raw IPv4/UDP, source = the exporter's socket). softflowd's flow records must
//! match tshark's as multisets of (src, dst, protocol, octets, packets), and the traffic's known
//! flows (with ports) must be among them.
//!
//! pmacct (needs `pmacctd`, `tshark`; privileged): `pmacctd_sfprobe_live_in_network_namespaces`,
//! pmacctd's sfprobe plugin samples the collector end of a veth pair 1:1 and exports sFlow; its
//! flow samples are compared with tshark's like OVS's (below), and the known datagrams must be
//! among them with their sizes, addresses and MACs.
//!
//! Open vSwitch (privileged; needs `ovs-vswitchd` & co., `tcpdump`, `ethtool`, `tshark`): a
//! private OVS ([`collector_tests::ovs`]) bridges two host namespaces; host A sends 5 UDP
//! datagrams over IPv4, a 3000-byte TCP connection, 5 UDP datagrams over IPv6, 5 tagged
//! (VLAN 10) UDP datagrams and 3 pings to host B (NetFlow v5 cannot carry the IPv6 flow). The
//! `collector run` (UDP mode, one worker) and tcpdump receive the export in the switch
//! namespace; afterwards the capture's `collector replay` is compared with tshark field by
//! field, the live collector's rings must hold exactly the records replay decodes (receive times
//! aside), and the known traffic must be there:
//! - `ovs_netflow_v5`: addresses, ports (ICMP type/code), protocol, packets, octets, OpenFlow
//!   in/out ports, absolute start/end times, header sequence.
//! - `ovs_ipfix`: OVS's template family learned; direction, observation point, MACs, ethertype,
//!   VLAN, addresses, ports, ICMP type/code, packets, octets, ingress/egress ifindex, start/end
//!   times, ingress and egress sampling. `ovs_ipfix_per_flow`: the same for flow-based IPFIX
//!   (an OpenFlow `sample` action with its own observation domain and point).
//! - `ovs_sflow`: flow samples with their decoded 128-byte headers (MACs, 802.1Q tag,
//!   addresses, TTL, ports, TCP flags, ICMP type/code) per datagram vs tshark; counter samples
//!   (port names, interface counters).
//!
//! Every test skips with `SKIPPED: reason` when a tool is missing (the integrator's
//! `cargo xtask setup` installs them); privileged ones also skip without root, and
//! `COLLECTOR_REQUIRE_PRIVILEGED=1` turns that skip into a failure.

use collector::capture::{PcapWriter, linktype};
use collector_tests::collector::{CollectorProcess, collector_bin};
use collector_tests::netns::{COLLECTOR_MAC, COLLECTOR_V4, NetnsPair, PEER_MAC, PEER_V4};
use collector_tests::ovs::{
    self, Capture, HOST_A, HOST_A_VLAN, HOST_A6, HOST_B, HOST_B_VLAN, HOST_B6, OvsLab, VLAN_ID,
};
use collector_tests::privilege;
use etherparse::PacketBuilder;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
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

/// Report `test` as skipped for a missing tool (straight to the file descriptor: libtest
/// captures `println!` of passing tests). A missing tool is a skip even with
/// `COLLECTOR_REQUIRE_PRIVILEGED=1`, which is about privileges.
fn skipped(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}

fn tools_missing(test: &str) -> bool {
    for tool in ["softflowd", "tshark"] {
        if !tool_available(tool) {
            skipped(
                test,
                &format!("{tool} is not installed (cargo xtask setup installs it)"),
            );
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

/// Flow records as tshark decodes them (`-T json`: NetFlow v5 "pdu" and v9/IPFIX "Flow" trees
/// with counters), ports zeroed: ICMP records carry none (IPFIX) or type/code (v5), so ports are
/// checked against the known traffic instead.
fn tshark_flows(pcap: &Path, port: u16) -> Vec<FlowKey> {
    let frames = tshark_json(pcap, Some((port, "cflow")));
    let mut trees = Vec::new();
    for frame in &frames {
        let cflow = &frame["_source"]["layers"]["cflow"];
        subtrees(cflow, "pdu ", &mut trees);
        subtrees(cflow, "Flow ", &mut trees);
    }
    trees
        .iter()
        .filter(|t| t.get("cflow.packets").is_some())
        .map(|t| {
            let addr = |v4: &str, v6: &str| {
                let text = tstr(t, v4);
                address(if text.is_empty() { tstr(t, v6) } else { text })
            };
            (
                addr("cflow.srcaddr", "cflow.srcaddrv6"),
                addr("cflow.dstaddr", "cflow.dstaddrv6"),
                0,
                0,
                tnum(t, "cflow.protocol") as u8,
                tnum(t, "cflow.octets"),
                tnum(t, "cflow.packets"),
            )
        })
        .collect()
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

/// softflowd reading `traffic` (`-r`) and exporting NetFlow `version` to a socket of this test on
/// 127.0.0.1: the datagrams it sent, and the socket's address.
fn softflowd_read(
    dir: &Path,
    traffic: &Path,
    version: &str,
) -> (Vec<(SocketAddr, Vec<u8>)>, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = socket.local_addr().unwrap();
    let status = Command::new("softflowd")
        .arg("-r")
        .arg(traffic)
        .args(["-n", &to.to_string(), "-v", version, "-d"])
        // No control socket: with one at a custom path softflowd 1.1.0 does not exit at EOF.
        .args(["-c", "none"])
        .arg("-p")
        .arg(dir.join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "softflowd -r failed");
    let datagrams = receive(&socket, Duration::from_millis(500), Duration::from_secs(10));
    (datagrams, to)
}

fn softflowd_from_a_capture(version: &str) {
    let test = format!("softflowd_from_a_capture_{version}");
    if tools_missing(&test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let traffic_pcap = dir.path().join("traffic.pcap");
    traffic(&traffic_pcap);
    let (datagrams, to) = softflowd_read(dir.path(), &traffic_pcap, version);
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

/// softflowd's IPFIX sequence numbers leave out its options records (RFC 7011 counts them), and
/// it sends options again every 16 messages: 1,500 flows (47 messages, as many as the test's
/// socket buffer holds when softflowd sends them at once) must show no loss, late messages or
/// restarts.
#[test]
fn softflowd_ipfix_sequence_numbers_without_its_options_records() {
    let test = "softflowd_ipfix_sequence_numbers_without_its_options_records";
    if tools_missing(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let traffic_pcap = dir.path().join("traffic.pcap");
    let mut w = PcapWriter::new(
        std::fs::File::create(&traffic_pcap).unwrap(),
        linktype::ETHERNET,
    )
    .unwrap();
    let flows = 1500u16;
    for i in 0..flows {
        let [hi, lo] = i.to_be_bytes();
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([10, 1, hi, lo], [10, 2, 0, 1], 64)
            .udp(1000 + i, 53);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 10]).unwrap();
        w.write_frame(1_700_000_000_000_000_000 + u64::from(i) * 10_000_000, &f)
            .unwrap();
    }
    w.finish().unwrap();
    let (datagrams, to) = softflowd_read(dir.path(), &traffic_pcap, "10");
    let pcap = dir.path().join("export.pcap");
    write_capture(&pcap, &datagrams, to);
    let (ours, summary) = collector_flows(&pcap);
    assert_eq!(ours.len(), usize::from(flows), "{summary}");
    assert!(
        summary["options_records"].as_u64() > Some(1),
        "softflowd sent its options more than once: {summary}"
    );
    let sequence = &summary["sequence"];
    assert_eq!(
        (
            sequence["lost"].as_u64(),
            sequence["late"].as_u64(),
            sequence["restarts"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{summary}"
    );
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

/// softflowd capturing live on the collector end of a veth pair while the peer sends.
///
/// softflowd only sees packets once the kernel capture ring hands over a whole block: it opens
/// libpcap with a timeout of 0 (`pcap_open_live(dev, snaplen, 1, 0, ..)`), libpcap uses
/// TPACKET_V3, and a partly filled block is never handed over here (measured on Linux 6.18 with
/// libpcap 1.10.3: 4 datagrams never reached softflowd, on a veth or on `lo`, with or without
/// -D/-B; of a 3000-datagram burst the full 2 MiB block arrived, the tail did not). Its SIGTERM
/// export never happens for the same reason: the main loop sleeps in poll(2) until a block comes.
/// So the test makes the ring small (`-B 262144`), sends ~420 KB of filler after the measured
/// flows (a third UDP flow, 300 × 1400 bytes to port 12) to fill and retire the block holding
/// them, and lets softflowd's expiry (`-t maxlife=1 -t expint=1`) export the flows. The
/// filler's counts depend on where blocks end: it is only compared with tshark.
#[test]
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
            .args(["-c", "none", "-B", "262144"])
            .args(["-t", "maxlife=1", "-t", "expint=1"])
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
        // Filler: fills the capture block that holds the flows above (see the doc comment).
        let s = UdpSocket::bind((PEER_V4, 41_002)).unwrap();
        for _ in 0..300 {
            s.send_to(&[0u8; 1400], (COLLECTOR_V4, 12)).unwrap();
        }
    })
    .unwrap();
    // The flows expire within about two seconds; receive until the export has been quiet for 2 s.
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
            && f.5 == 4 * 60
            && f.6 == 4),
        "no 4-packet UDP flow from the peer: {ours:?}"
    );
    drop(softflowd);
}

// ---------------------------------------------------------------------------------------------
// Open vSwitch as the exporter.

/// What one OVS run left behind: the capture of the exports, decoded by `collector replay`.
struct OvsRun {
    lab: OvsLab,
    /// The collector's UDP port (the exports' destination).
    port: u16,
    pcap: PathBuf,
    records: Vec<Value>,
    summary: Value,
    _dir: tempfile::TempDir,
}

/// Skip unless tshark, Open vSwitch and privileges are here.
fn ovs_missing(test: &str) -> bool {
    if !tool_available("tshark") {
        skipped(
            test,
            "tshark is not installed (cargo xtask setup installs it)",
        );
        return true;
    }
    if let Some(reason) = ovs::missing_tools() {
        skipped(test, &reason);
        return true;
    }
    !privilege::require(test)
}

/// Every record of `collector replay --json FILE` (flows and counters), and the summary.
fn replay_json(pcap: &Path) -> (Vec<Value>, Value) {
    let out = Command::new(collector_bin())
        .arg("replay")
        .arg(pcap)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "collector replay failed: {stderr}");
    let summary = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
        .expect("summary line");
    let records = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (records, summary)
}

/// The records of a capture tcpdump is still writing, or `None` while replay fails on it (it
/// may catch a record half written).
fn replay_json_so_far(pcap: &Path) -> Option<Vec<Value>> {
    let out = Command::new(collector_bin())
        .arg("replay")
        .arg(pcap)
        .arg("--json")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every record in the rings of `dir`, as `collector read` prints them (flows, then counters).
fn ring_json(dir: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    for kind in ["flows", "counters"] {
        let out = Command::new(collector_bin())
            .args(["read", "--kind", kind, "--ring-dir"])
            .arg(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "collector read failed: {stderr}");
        assert!(
            stderr.contains("records_lost=0 records_corrupt=0"),
            "ring read: {stderr}"
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

/// A record as a comparable string without what only the receiving side decides: the receive
/// time (capture time in replay), and sFlow's flow times, which are the receive time.
fn without_receive_time(record: &Value) -> String {
    let mut r = record.clone();
    let map = r.as_object_mut().unwrap();
    let received = map.remove("time_received_ns");
    for key in ["time_flow_start_ns", "time_flow_end_ns"] {
        if map.get(key) == received.as_ref() {
            map.remove(key);
        }
    }
    r.to_string()
}

fn is_flow(r: &Value) -> bool {
    r.get("kind").is_none_or(|k| k != "counters")
}

fn str_of(r: &Value, key: &str) -> String {
    r[key].as_str().unwrap_or_default().to_owned()
}

fn u64_of(r: &Value, key: &str) -> u64 {
    r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"))
}

fn proto_of(r: &Value) -> u64 {
    match r["proto"].as_str().unwrap() {
        "ICMP" => 1,
        "TCP" => 6,
        "UDP" => 17,
        "ICMPv6" => 58,
        "SCTP" => 132,
        other => other.parse().unwrap(),
    }
}

fn etype_of(r: &Value) -> u64 {
    match r["etype"].as_str().unwrap() {
        "IPv4" => 0x0800,
        "ARP" => 0x0806,
        "IPv6" => 0x86dd,
        "" => 0,
        other => other.parse().unwrap_or_else(|_| panic!("etype {other}")),
    }
}

/// Start the collector (`collector run`, UDP on 127.0.0.1:PORT of the switch namespace, rings in
/// `rings`) and a tcpdump of that port, configure the export with `export`, send the lab's
/// traffic (5-datagram UDP flows A→B 40000→9999 over IPv4, 40002→9997 over IPv6 and 40003→9996
/// tagged with VLAN 10, a TCP connection A→B 40001→8080, 3 pings A→B), wait
/// until `done` holds for what the capture decodes to, stop the exports and both receivers,
/// and check that the rings hold exactly the records `collector replay` decodes from the capture.
fn run_ovs(
    test: &str,
    export: impl Fn(&OvsLab, SocketAddr),
    done: impl Fn(&[Value]) -> bool,
) -> OvsRun {
    let started = Instant::now();
    let mut lab = OvsLab::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = ovs::free_udp_port(&lab.switch_ns).unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let rings = dir.path().join("rings");
    let listen = to.to_string();
    let mut collector = CollectorProcess::start(
        Some(&lab.switch_ns),
        &[
            "run",
            "--listen",
            &listen,
            "--workers",
            "1",
            "--ring-size",
            "4096",
            "--metrics",
            "127.0.0.1:9742",
            "--ring-dir",
            rings.to_str().unwrap(),
        ],
        "info",
    )
    .unwrap();
    let metrics = SocketAddr::from(([127, 0, 0, 1], 9742));
    assert!(
        collector_tests::poll(Duration::from_secs(30), || ovs::metrics_in(
            &lab.switch_ns,
            metrics
        ))
        .is_some(),
        "collector did not serve /metrics:\n{}",
        collector.stderr()
    );
    let pcap = dir.path().join("export.pcap");
    let capture = Capture::start(&lab.switch_ns, "lo", port, &pcap).unwrap();
    export(&lab, to);
    lab.udp_flow(40_000, 9_999, 5, 50).unwrap();
    lab.tcp_flow(40_001, 8_080, 3_000).unwrap();
    lab.udp6_flow(40_002, 9_997, 5, 50).unwrap();
    lab.ping(0x4242, 3).unwrap();
    send_vlan_flow(&lab);
    let seen = collector_tests::poll(Duration::from_secs(30), || {
        let records = replay_json_so_far(&pcap)?;
        done(&records).then_some(())
    });
    lab.stop_exports().unwrap();
    let dropped = capture.stop().unwrap();
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "collector: {status}\n{}",
        collector.stderr()
    );
    let (records, summary) = replay_json(&pcap);
    println!(
        "{test}: {} records, summary {summary}, {:?}",
        records.len(),
        started.elapsed()
    );
    assert_eq!(dropped, 0, "tcpdump lost exports");
    assert!(
        seen.is_some(),
        "the exports never showed the expected flows: {records:#?}\n{}",
        lab.log()
    );
    assert_eq!(
        summary["errors"],
        serde_json::json!({}),
        "decode errors: {summary}"
    );
    // The live collector decoded the same datagrams into the same records.
    let mut from_rings: Vec<String> = ring_json(&rings).iter().map(without_receive_time).collect();
    let mut from_replay: Vec<String> = records.iter().map(without_receive_time).collect();
    from_rings.sort();
    from_replay.sort();
    assert_eq!(
        from_rings.len(),
        from_replay.len(),
        "rings vs replay: record counts"
    );
    assert!(from_rings == from_replay, "rings vs replay differ");
    OvsRun {
        lab,
        port,
        pcap,
        records,
        summary,
        _dir: dir,
    }
}

/// Tagged traffic (VLAN 10), as raw frames (this kernel has no VLAN devices): host B sends one
/// datagram first so that the bridge learns its MAC in VLAN 10, then host A sends 5 UDP
/// datagrams of 50 bytes, 40003→9996, to it. Host B's kernel drops them (no VLAN device); the
/// bridge has forwarded and sampled them.
fn send_vlan_flow(lab: &OvsLab) {
    let frame = |from: ([u8; 6], Ipv4Addr, u16), to: ([u8; 6], Ipv4Addr, u16)| {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(from.0, to.0)
            .single_vlan(VLAN_ID.try_into().unwrap())
            .ipv4(from.1.octets(), to.1.octets(), 64)
            .udp(from.2, to.2)
            .write(&mut frame, &[0x5a; 50])
            .unwrap();
        frame
    };
    let a = (ovs::MAC_A, HOST_A_VLAN, 40_003);
    let b = (ovs::MAC_B, HOST_B_VLAN, 40_004);
    let hello = frame(b, (ovs::MAC_A, HOST_A_VLAN, 9_995));
    lab.hosts[1].send_frames(&[&hello]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let datagram = frame(a, (ovs::MAC_B, HOST_B_VLAN, 9_996));
    lab.hosts[0].send_frames(&[datagram.as_slice(); 5]).unwrap();
}

/// `tshark -T json` of `pcap` (duplicate keys merged into arrays), decoding `port` as `proto`.
fn tshark_json(pcap: &Path, decode_as: Option<(u16, &str)>) -> Vec<Value> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some((port, proto)) = decode_as {
        cmd.args(["-d", &format!("udp.port=={port},{proto}")]);
    }
    cmd.args(["-T", "json", "--no-duplicate-keys"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each object under a key of `tree` that starts with `prefix`, at any depth; values that are
/// arrays (repeated keys) give each element.
fn subtrees<'a>(tree: &'a Value, prefix: &str, found: &mut Vec<&'a Value>) {
    let Some(map) = tree.as_object() else {
        return;
    };
    for (key, value) in map {
        if key.starts_with(prefix) {
            match value {
                Value::Array(items) => found.extend(items.iter()),
                other => found.push(other),
            }
        } else {
            match value {
                Value::Array(items) => items.iter().for_each(|i| subtrees(i, prefix, found)),
                other => subtrees(other, prefix, found),
            }
        }
    }
}

/// A tshark field as a number (decimal or 0x-hex; absent = 0).
fn tnum(tree: &Value, key: &str) -> u64 {
    match tree.get(key) {
        None => 0,
        Some(Value::String(s)) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => s.parse().unwrap_or_else(|_| panic!("{key} = {s}")),
        },
        Some(other) => panic!("{key} = {other}"),
    }
}

/// tshark's "2.936000000" (seconds, ms precision in NetFlow v5) in milliseconds.
fn seconds_ms(text: &str) -> u64 {
    (epoch_ns(text) + 500_000) / 1_000_000
}

/// tshark's absolute time text ("Nov 21, 2026 19:13:51.671000000 UTC") in ns since the epoch.
fn utc_ns(text: &str) -> u64 {
    let fields: Vec<&str> = text
        .split([' ', ',', ':'])
        .filter(|f| !f.is_empty())
        .collect();
    let [month, day, year, hour, minute, second, "UTC"] = fields[..] else {
        panic!("tshark time {text:?}");
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)
    .unwrap_or_else(|| panic!("month in {text:?}")) as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().unwrap(), year.parse().unwrap());
    // Days from 1970-01-01 to year-month-day (proleptic Gregorian calendar).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs =
        days * 86_400 + hour.parse::<i64>().unwrap() * 3_600 + minute.parse::<i64>().unwrap() * 60;
    secs as u64 * 1_000_000_000 + epoch_ns(second)
}

fn tstr(tree: &Value, key: &str) -> String {
    tree.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// tshark's text of an address as the record's JSON shows it: an all-zero address (a DAD
/// neighbour solicitation's `::` source) is "no address" in the flow record, printed as "".
fn address(text: String) -> String {
    if text == "::" || text == "0.0.0.0" {
        String::new()
    } else {
        text
    }
}

fn counted<T: Ord + Clone>(items: &[T]) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_default() += 1;
    }
    m
}

/// Fail with what only one side has unless `ours` and `theirs` are equal as multisets.
fn assert_same_records<T: Ord + Clone + std::fmt::Debug>(ours: &[T], theirs: &[T], what: &str) {
    let (a, b) = (counted(ours), counted(theirs));
    if a == b {
        return;
    }
    let only = |x: &BTreeMap<T, usize>, y: &BTreeMap<T, usize>| -> Vec<(T, usize)> {
        x.iter()
            .filter(|(k, n)| y.get(*k) != Some(*n))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    };
    panic!(
        "{what}: {} vs {} records\nonly (or more often) in ours: {:#?}\nonly (or more often) in theirs: {:#?}",
        ours.len(),
        theirs.len(),
        only(&a, &b),
        only(&b, &a)
    );
}

/// (src, dst, src port, dst port, protocol, packets, octets, in_if, out_if)
/// (src, dst, src port, dst port, protocol, packets, octets, in_if, out_if, start ns, end ns,
/// header flow sequence)
type V5Key = (
    String,
    String,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
);

#[test]
fn ovs_netflow_v5() {
    let test = "ovs_netflow_v5";
    if ovs_missing(test) {
        return;
    }
    let (a, b) = (HOST_A.to_string(), HOST_B.to_string());
    let udp_packets = |records: &[Value]| -> u64 {
        records
            .iter()
            .filter(|r| str_of(r, "src_addr") == a && str_of(r, "dst_addr") == b)
            .filter(|r| proto_of(r) == 17 && u64_of(r, "src_port") == 40_000)
            .map(|r| u64_of(r, "packets"))
            .sum()
    };
    let tcp_both_ways = |records: &[Value]| {
        [(&a, &b), (&b, &a)].iter().all(|(s, d)| {
            records.iter().any(|r| {
                proto_of(r) == 6 && str_of(r, "src_addr") == **s && str_of(r, "dst_addr") == **d
            })
        })
    };
    let run = run_ovs(
        test,
        |lab, to| lab.export_netflow(to, 60).unwrap(),
        |records| udp_packets(records) >= 5 && tcp_both_ways(records),
    );
    let ours: Vec<V5Key> = run
        .records
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "NETFLOW_V5", "{r}");
            (
                str_of(r, "src_addr"),
                str_of(r, "dst_addr"),
                u64_of(r, "src_port"),
                u64_of(r, "dst_port"),
                proto_of(r),
                u64_of(r, "packets"),
                u64_of(r, "bytes"),
                u64_of(r, "in_if"),
                u64_of(r, "out_if"),
                u64_of(r, "time_flow_start_ns"),
                u64_of(r, "time_flow_end_ns"),
                u64_of(r, "sequence_num"),
            )
        })
        .collect();
    let mut theirs: Vec<V5Key> = Vec::new();
    for frame in &tshark_json(&run.pcap, Some((run.port, "cflow"))) {
        let cflow = &frame["_source"]["layers"]["cflow"];
        // Absolute flow times: export time minus (sysUptime - first/last switched).
        let header = &cflow["cflow.timestamp_tree"];
        let export_ns =
            tnum(header, "cflow.unix_secs") * 1_000_000_000 + tnum(header, "cflow.unix_nsecs");
        let uptime_ms = seconds_ms(&tstr(cflow, "cflow.sysuptime"));
        let mut pdus = Vec::new();
        subtrees(cflow, "pdu ", &mut pdus);
        for p in pdus {
            let times = &p["cflow.timedelta_tree"];
            let at =
                |key: &str| export_ns - (uptime_ms - seconds_ms(&tstr(times, key))) * 1_000_000;
            theirs.push((
                tstr(p, "cflow.srcaddr"),
                tstr(p, "cflow.dstaddr"),
                tnum(p, "cflow.srcport"),
                tnum(p, "cflow.dstport"),
                tnum(p, "cflow.protocol"),
                tnum(p, "cflow.packets"),
                tnum(p, "cflow.octets"),
                tnum(p, "cflow.inputint"),
                tnum(p, "cflow.outputint"),
                at("cflow.timestart"),
                at("cflow.timeend"),
                tnum(cflow, "cflow.sequence"),
            ));
        }
    }
    assert!(!theirs.is_empty(), "tshark decoded no NetFlow record");
    // Sequence accounting: nothing lost, late or restarted. OVS writes `flow_seq = netflow_cnt++`
    // for every record it adds (ofproto/netflow.c, gen_netflow_rec), so a header carries the
    // number of its *last* record, not the count of flows before it; the decoder learns that
    // numbering (decode::sequence::Numbering::Inclusive) instead of reporting c2 - c1 "lost" or
    // late flows between datagrams of c1 and c2 records.
    let sequence = &run.summary["sequence"];
    assert_eq!(
        (
            sequence["lost"].as_u64(),
            sequence["late"].as_u64(),
            sequence["restarts"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{}",
        run.summary
    );
    assert_same_records(&ours, &theirs, "collector vs tshark");
    // The known traffic: 5 UDP datagrams of 50 bytes (OVS counts Ethernet bytes: 14+20+8+50),
    // from host A's bridge port to host B's.
    let (port_a, port_b) = (
        u64::from(run.lab.hosts[0].ofport),
        u64::from(run.lab.hosts[1].ofport),
    );
    assert_eq!(udp_packets(&run.records), 5, "{ours:?}");
    let udp: Vec<&V5Key> = ours.iter().filter(|f| f.4 == 17 && f.2 == 40_000).collect();
    assert!(
        udp.iter()
            .all(|f| f.0 == a && f.1 == b && f.3 == 9_999 && f.7 == port_a && f.8 == port_b),
        "{udp:?}"
    );
    assert_eq!(udp.iter().map(|f| f.6).sum::<u64>(), 5 * 92, "{udp:?}");
    // TCP: at least the 3000 payload bytes went from A to B.
    let tcp_ab: u64 = ours
        .iter()
        .filter(|f| f.4 == 6 && f.0 == a && f.2 == 40_001 && f.3 == 8_080)
        .map(|f| f.6)
        .sum();
    assert!(tcp_ab > 3_000, "{ours:?}");
    // ICMP: 3 echo requests A→B (type 8, code 0 in the destination port) and 3 replies B→A.
    for (src, dst_port) in [(&a, 0x0800), (&b, 0)] {
        let icmp: u64 = ours
            .iter()
            .filter(|f| f.4 == 1 && f.0 == **src && f.2 == 0 && f.3 == dst_port)
            .map(|f| f.5)
            .sum();
        assert_eq!(icmp, 3, "ICMP from {src}: {ours:?}");
    }
}

/// The lab's measured UDP flows A→B, 5 datagrams of 50 bytes each.
struct UdpFlow {
    src: String,
    dst: String,
    src_port: u64,
    dst_port: u64,
    /// IP + UDP header bytes.
    headers: u64,
    /// 802.1Q tag on the wire (0: untagged).
    vlan: u64,
}

fn udp_flows() -> [UdpFlow; 3] {
    let flow = |src: String, dst: String, src_port, dst_port, headers, vlan| UdpFlow {
        src,
        dst,
        src_port,
        dst_port,
        headers,
        vlan,
    };
    [
        flow(HOST_A.to_string(), HOST_B.to_string(), 40_000, 9_999, 28, 0),
        flow(
            HOST_A6.to_string(),
            HOST_B6.to_string(),
            40_002,
            9_997,
            48,
            0,
        ),
        flow(
            HOST_A_VLAN.to_string(),
            HOST_B_VLAN.to_string(),
            40_003,
            9_996,
            28,
            u64::from(VLAN_ID),
        ),
    ]
}

/// Packets of the UDP flow from `src` port `src_port` in `records` with `flow_direction` =
/// `direction`.
fn udp_packets(records: &[Value], src: &str, src_port: u64, direction: u64) -> u64 {
    records
        .iter()
        .filter(|r| is_flow(r) && str_of(r, "src_addr") == src && proto_of(r) == 17)
        .filter(|r| u64_of(r, "src_port") == src_port)
        .filter(|r| u64_of(r, "flow_direction") == direction)
        .map(|r| u64_of(r, "packets"))
        .sum()
}

/// The fields of an OVS IPFIX data record compared with tshark.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct OvsIpfixRecord {
    direction: u64,
    observation_point: u64,
    src_mac: String,
    dst_mac: String,
    etype: u64,
    src: String,
    dst: String,
    src_port: u64,
    dst_port: u64,
    proto: u64,
    packets: u64,
    /// octetDeltaCount (IP bytes) where the template has it, else layer2OctetDeltaCount.
    bytes: u64,
    in_if: u64,
    out_if: u64,
    vlan: u64,
    icmp_type: u64,
    icmp_code: u64,
    /// Flow start and end (flowStart/EndDeltaMicroseconds from the export time), ns.
    start_ns: u64,
    end_ns: u64,
}

#[test]
fn ovs_ipfix() {
    let test = "ovs_ipfix";
    if ovs_missing(test) {
        return;
    }
    // Bridge IPFIX samples each packet on ingress and on egress.
    let run = run_ovs(
        test,
        |lab, to| lab.export_ipfix(to, 7, 9).unwrap(),
        |records| {
            udp_flows().iter().all(|f| {
                udp_packets(records, &f.src, f.src_port, 0) >= 5
                    && udp_packets(records, &f.src, f.src_port, 1) >= 5
            })
        },
    );
    check_ovs_ipfix(&run, (7, 9), &[0, 1]);
}

#[test]
fn ovs_ipfix_per_flow() {
    let test = "ovs_ipfix_per_flow";
    if ovs_missing(test) {
        return;
    }
    // Flow-based IPFIX: the OpenFlow sample action decides domain and point.
    let run = run_ovs(
        test,
        |lab, to| lab.export_ipfix_per_flow(to, 123, 456).unwrap(),
        |records| {
            udp_flows()
                .iter()
                .all(|f| udp_packets(records, &f.src, f.src_port, 0) >= 5)
        },
    );
    check_ovs_ipfix(&run, (123, 456), &[0]);
}

/// Compare an OVS IPFIX run with tshark and check the known traffic: every record from
/// observation (domain, point) `ids`, the UDP flow's 5 packets sampled in each of `directions`.
fn check_ovs_ipfix(run: &OvsRun, ids: (u64, u64), directions: &[u64]) {
    let a = HOST_A.to_string();
    let ours: Vec<OvsIpfixRecord> = run
        .records
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "IPFIX", "{r}");
            OvsIpfixRecord {
                direction: u64_of(r, "flow_direction"),
                observation_point: u64_of(r, "observation_point_id"),
                src_mac: str_of(r, "src_mac"),
                dst_mac: str_of(r, "dst_mac"),
                etype: etype_of(r),
                src: str_of(r, "src_addr"),
                dst: str_of(r, "dst_addr"),
                src_port: u64_of(r, "src_port"),
                dst_port: u64_of(r, "dst_port"),
                proto: proto_of(r),
                packets: u64_of(r, "packets"),
                bytes: u64_of(r, "bytes"),
                in_if: u64_of(r, "in_if"),
                out_if: u64_of(r, "out_if"),
                vlan: u64_of(r, "vlan_id"),
                icmp_type: u64_of(r, "icmp_type"),
                icmp_code: u64_of(r, "icmp_code"),
                start_ns: u64_of(r, "time_flow_start_ns"),
                end_ns: u64_of(r, "time_flow_end_ns"),
            }
        })
        .collect();
    let mut flows = Vec::new();
    let frames = tshark_json(&run.pcap, Some((run.port, "cflow")));
    for frame in &frames {
        let before = flows.len();
        subtrees(&frame["_source"]["layers"]["cflow"], "Flow ", &mut flows);
        // OVS sends one data record per message (`ipfix_send_data_msg`): what flowgen's
        // ovs-ipfix profile and the decode benchmark's ipfix-single reproduce. OVS's data records
        // all carry flowDirection; the options record (exporter statistics) not.
        let data = flows[before..]
            .iter()
            .filter(|f| f.get("cflow.direction").is_some())
            .count();
        assert!(data <= 1, "an OVS IPFIX message with {data} data records");
    }
    let theirs: Vec<OvsIpfixRecord> = flows
        .iter()
        .filter(|f| f.get("cflow.direction").is_some())
        .map(|f| {
            let addr = |v4: &str, v6: &str| {
                let s = tstr(f, v4);
                if s.is_empty() { tstr(f, v6) } else { s }
            };
            OvsIpfixRecord {
                direction: tnum(f, "cflow.direction"),
                observation_point: tnum(f, "cflow.observation_point_id"),
                src_mac: tstr(f, "cflow.srcmac"),
                dst_mac: tstr(f, "cflow.dstmac"),
                etype: tnum(f, "cflow.ethernet_type"),
                src: address(addr("cflow.srcaddr", "cflow.srcaddrv6")),
                dst: address(addr("cflow.dstaddr", "cflow.dstaddrv6")),
                src_port: tnum(f, "cflow.srcport"),
                dst_port: tnum(f, "cflow.dstport"),
                proto: tnum(f, "cflow.protocol"),
                packets: tnum(f, "cflow.packets"),
                bytes: match f.get("cflow.octets") {
                    Some(_) => tnum(f, "cflow.octets"),
                    None => tnum(f, "cflow.layer2_octet_delta_count"),
                },
                in_if: tnum(f, "cflow.inputint"),
                out_if: tnum(f, "cflow.outputint"),
                vlan: tnum(f, "cflow.vlan_id").max(tnum(f, "cflow.dot1q_vlan_id")),
                icmp_type: tnum(f, "cflow.icmp_ipv4_type").max(tnum(f, "cflow.icmp_ipv6_type")),
                icmp_code: tnum(f, "cflow.icmp_ipv4_code").max(tnum(f, "cflow.icmp_ipv6_code")),
                start_ns: utc_ns(&tstr(&f["cflow.timedelta_tree"], "cflow.abstimestart")),
                end_ns: utc_ns(&tstr(&f["cflow.timedelta_tree"], "cflow.abstimeend")),
            }
        })
        .collect();
    assert!(!theirs.is_empty(), "tshark decoded no IPFIX data record");
    assert_same_records(&ours, &theirs, "collector vs tshark");
    // Sequence accounting: nothing lost, late or restarted. OVS numbers IPFIX messages with one
    // counter per exporter, not per observation domain (RFC 7011 says per domain): its
    // exporter-statistics options records, sent in domain 0, advance the data domain's numbers
    // too. The decoder learns that (decode::sequence::DomainSequence); before it did, each
    // statistics record showed as one lost record in the data domain.
    let sequence = &run.summary["sequence"];
    assert_eq!(
        (
            sequence["lost"].as_u64(),
            sequence["late"].as_u64(),
            sequence["restarts"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{}",
        run.summary
    );
    // OVS's template family was learned; every record is from the expected domain and point.
    assert!(
        run.summary["templates"]["learned"].as_u64().unwrap_or(0) > 0,
        "{}",
        run.summary
    );
    for r in &run.records {
        assert_eq!(
            (
                u64_of(r, "observation_domain_id"),
                u64_of(r, "observation_point_id")
            ),
            ids,
            "{r}"
        );
    }
    // The known traffic: 5 datagrams sampled on ingress (from host A's port) and on egress (to
    // host B's), with host A's and host B's MACs. IPFIX numbers interfaces by kernel ifindex.
    let (port_a, port_b) = (
        u64::from(run.lab.hosts[0].ifindex),
        u64::from(run.lab.hosts[1].ifindex),
    );
    let mac_a = mac_text(ovs::MAC_A);
    let mac_b = mac_text(ovs::MAC_B);
    for UdpFlow {
        src,
        dst,
        src_port,
        dst_port,
        headers,
        vlan,
    } in udp_flows()
    {
        for direction in [0, 1] {
            let expected = if directions.contains(&direction) {
                5
            } else {
                0
            };
            assert_eq!(
                udp_packets(&run.records, &src, src_port, direction),
                expected,
                "{src} port {src_port}, direction {direction}"
            );
        }
        let udp = ours
            .iter()
            .filter(|f| f.proto == 17 && f.src_port == src_port);
        for f in udp {
            assert!(
                f.src_mac == mac_a
                    && f.dst_mac == mac_b
                    && f.src == src
                    && f.dst == dst
                    && f.dst_port == dst_port
                    && f.vlan == vlan
                    && f.in_if == port_a,
                "{f:?} (ifindex: A {port_a}, B {port_b})"
            );
            // OVS's IP templates carry octetDeltaCount (IP bytes: headers + 50) besides the
            // layer-2 count; the record takes the former.
            assert_eq!(f.bytes, f.packets * (headers + 50), "{f:?}");
            // Egress records name the output port; ingress ones have none.
            assert_eq!(f.out_if, if f.direction == 1 { port_b } else { 0 }, "{f:?}");
        }
    }
    let tcp_ab: u64 = ours
        .iter()
        .filter(|f| f.direction == 0 && f.proto == 6 && f.src == a)
        .filter(|f| f.src_port == 40_001 && f.dst_port == 8_080)
        .map(|f| f.bytes)
        .sum();
    assert!(tcp_ab > 3_000, "{ours:?}");
    // ICMP: 3 echo requests A→B (type 8) and 3 replies B→A (type 0), sampled on ingress.
    for (src, icmp_type) in [(a.clone(), 8), (HOST_B.to_string(), 0)] {
        let icmp: u64 = ours
            .iter()
            .filter(|f| f.direction == 0 && f.proto == 1 && f.src == src)
            .filter(|f| (f.icmp_type, f.icmp_code, f.src_port, f.dst_port) == (icmp_type, 0, 0, 0))
            .map(|f| f.packets)
            .sum();
        assert_eq!(icmp, 3, "ICMP type {icmp_type} from {src}: {ours:?}");
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The fields of an sFlow flow sample compared with tshark (which decodes the sampled header).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SflowSample {
    sequence: u64,
    sampling_rate: u64,
    in_if: u64,
    frame_length: u64,
    src_mac: String,
    dst_mac: String,
    etype: u64,
    src: String,
    dst: String,
    proto: u64,
    ttl: u64,
    src_port: u64,
    dst_port: u64,
    tcp_flags: u64,
    vlan: u64,
    icmp_type: u64,
    icmp_code: u64,
}

/// A flow sample of the datagram numbered `datagram_sequence` as tshark shows it: the sample's
/// fields and its decoded raw header. Its `sequence` is the datagram's, as a flow record's
/// `sequence_num` is (goflow2's).
fn tshark_sflow_sample(datagram_sequence: u64, sample: &Value) -> SflowSample {
    let header = &sample["Raw packet header"];
    let tree = &header["sflow_245.header_tree"];
    let (eth, ip4, ip6) = (&tree["eth"], &tree["ip"], &tree["ipv6"]);
    let (tcp, udp) = (&tree["tcp"], &tree["udp"]);
    let pick = |a: String, b: String| if a.is_empty() { b } else { a };
    let proto = if tcp.is_object() {
        6
    } else if udp.is_object() {
        17
    } else if tree["icmpv6"].is_object() {
        58
    } else if tree["icmp"].is_object() {
        1
    } else {
        tnum(ip4, "ip.proto")
    };
    SflowSample {
        sequence: datagram_sequence,
        sampling_rate: tnum(sample, "sflow.flow_sample.sampling_rate"),
        in_if: tnum(sample, "sflow.flow_sample.input_interface"),
        frame_length: tnum(header, "sflow_245.header.frame_length"),
        src_mac: tstr(eth, "eth.src"),
        dst_mac: tstr(eth, "eth.dst"),
        // The record's ethertype is the payload's, after any 802.1Q tag.
        etype: match tree["vlan"].get("vlan.etype") {
            Some(_) => tnum(&tree["vlan"], "vlan.etype"),
            None => tnum(eth, "eth.type"),
        },
        src: address(pick(tstr(ip4, "ip.src"), tstr(ip6, "ipv6.src"))),
        dst: address(pick(tstr(ip4, "ip.dst"), tstr(ip6, "ipv6.dst"))),
        proto,
        ttl: tnum(ip4, "ip.ttl").max(tnum(ip6, "ipv6.hlim")),
        src_port: tnum(tcp, "tcp.srcport").max(tnum(udp, "udp.srcport")),
        dst_port: tnum(tcp, "tcp.dstport").max(tnum(udp, "udp.dstport")),
        tcp_flags: tnum(tcp, "tcp.flags"),
        icmp_type: tnum(&tree["icmp"], "icmp.type").max(tnum(&tree["icmpv6"], "icmpv6.type")),
        icmp_code: tnum(&tree["icmp"], "icmp.code").max(tnum(&tree["icmpv6"], "icmpv6.code")),
        // The extended switch structure's input VLAN, else the sampled header's tag.
        vlan: match tnum(&sample["Extended switch data"], "sflow_245.vlan.in") {
            0 => tnum(&tree["vlan"], "vlan.id"),
            vlan => vlan,
        },
    }
}

/// One of our sFlow flow records in the same shape.
fn our_sflow_sample(r: &Value) -> SflowSample {
    SflowSample {
        sequence: u64_of(r, "sequence_num"),
        sampling_rate: u64_of(r, "sampling_rate"),
        in_if: u64_of(r, "in_if"),
        frame_length: u64_of(r, "bytes"),
        src_mac: str_of(r, "src_mac"),
        dst_mac: str_of(r, "dst_mac"),
        etype: etype_of(r),
        src: str_of(r, "src_addr"),
        dst: str_of(r, "dst_addr"),
        proto: proto_of(r),
        ttl: u64_of(r, "ip_ttl"),
        src_port: u64_of(r, "src_port"),
        dst_port: u64_of(r, "dst_port"),
        tcp_flags: u64_of(r, "tcp_flags"),
        vlan: u64_of(r, "vlan_id"),
        icmp_type: u64_of(r, "icmp_type"),
        icmp_code: u64_of(r, "icmp_code"),
    }
}

/// A tshark `frame.time_epoch` ("1795288431.671279000") in nanoseconds.
fn epoch_ns(text: &str) -> u64 {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

/// Compare sFlow records (`collector replay --json` of `pcap`) with tshark, datagram by datagram
/// (a capture timestamp is a datagram): flow samples field by field, counter samples by
/// (sequence, source type, source index). tshark stops at counter structures it does not know
/// (OVS's 1004, 1005: "Malformed Packet"), so in such datagrams its samples are a subset of ours;
/// elsewhere they are all of them. Returns how many flow and counter samples were compared.
fn compare_sflow_with_tshark(
    test: &str,
    pcap: &Path,
    port: u16,
    records: &[Value],
) -> (usize, usize) {
    let mut ours_by_frame: BTreeMap<u64, Vec<SflowSample>> = BTreeMap::new();
    for r in records.iter().filter(|r| is_flow(r)) {
        ours_by_frame
            .entry(u64_of(r, "time_received_ns"))
            .or_default()
            .push(our_sflow_sample(r));
    }
    let mut our_counter_samples: Vec<(u64, u64, u64)> = records
        .iter()
        .filter(|r| !is_flow(r))
        .map(|r| {
            (
                u64_of(r, "sequence_num"),
                u64_of(r, "source_type"),
                u64_of(r, "source_index"),
            )
        })
        .collect();
    our_counter_samples.sort();
    our_counter_samples.dedup();
    let (mut compared, mut whole_frames, mut counter_samples) = (0, 0, 0);
    for frame in &tshark_json(pcap, Some((port, "sflow"))) {
        let layers = &frame["_source"]["layers"];
        let time = epoch_ns(&tstr(&layers["frame"], "frame.time_epoch"));
        let malformed = layers.get("_ws.malformed").is_some();
        let mut samples = Vec::new();
        subtrees(&layers["sflow"], "Flow sample", &mut samples);
        let sequence = tnum(&layers["sflow"], "sflow_245.sequence_number");
        let theirs: Vec<SflowSample> = samples
            .iter()
            .map(|s| tshark_sflow_sample(sequence, s))
            .collect();
        let ours = ours_by_frame.remove(&time).unwrap_or_default();
        compared += theirs.len();
        if malformed {
            let mut ours_left = counted(&ours);
            for sample in &theirs {
                let n = ours_left.get_mut(sample);
                assert!(
                    n.as_ref().is_some_and(|n| **n > 0),
                    "tshark's {sample:?} is not among ours at {time}: {ours:#?}"
                );
                *n.unwrap() -= 1;
            }
        } else {
            whole_frames += 1;
            assert_same_records(&ours, &theirs, &format!("flow samples at {time}"));
        }
        let mut counters = Vec::new();
        subtrees(&layers["sflow"], "Counters sample", &mut counters);
        for c in counters {
            let key = (
                tnum(c, "sflow.counters_sample.sequence_number"),
                tnum(c, "sflow.counters_sample.source_id_type"),
                tnum(c, "sflow.counters_sample.source_id_index"),
            );
            assert!(
                our_counter_samples.binary_search(&key).is_ok(),
                "tshark's counter sample {key:?} is not among ours"
            );
            counter_samples += 1;
        }
    }
    assert!(
        ours_by_frame.is_empty(),
        "records at times tshark has no datagram for: {ours_by_frame:?}"
    );
    println!(
        "{test}: {compared} flow samples and {counter_samples} counter samples compared with \
         tshark ({whole_frames} datagrams whole)"
    );
    (compared, counter_samples)
}

#[test]
fn ovs_sflow() {
    let test = "ovs_sflow";
    if ovs_missing(test) {
        return;
    }
    let (a, b) = (HOST_A.to_string(), HOST_B.to_string());
    // Flow samples of the measured UDP flow from `src` port `src_port`.
    let udp_samples = |records: &[Value], src: &str, src_port: u64| -> Vec<SflowSample> {
        records
            .iter()
            .filter(|r| is_flow(r) && str_of(r, "src_addr") == src && proto_of(r) == 17)
            .filter(|r| u64_of(r, "src_port") == src_port)
            .map(our_sflow_sample)
            .collect()
    };
    // A counter record naming each bridge port (OVS's port name structure, 1005), and the
    // ports' own generic interface counters showing the traffic.
    let port_names = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter(|r| !is_flow(r) && r["format"] == 1005)
            .map(|r| r["counters"]["port_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let run = run_ovs(
        test,
        |lab, to| lab.export_sflow(to).unwrap(),
        |records| {
            let names = port_names(records);
            udp_flows()
                .iter()
                .all(|f| udp_samples(records, &f.src, f.src_port).len() >= 5)
                && names.len() >= 2
        },
    );
    let hosts = &run.lab.hosts;
    for r in &run.records {
        assert_eq!(r["type"], "SFLOW_5", "{r}");
        assert_eq!(r["sampler_address"], "127.0.0.1", "{r}");
    }
    let (compared, counter_samples) =
        compare_sflow_with_tshark(test, &run.pcap, run.port, &run.records);
    assert!(compared > 0 && counter_samples > 0);
    // The known traffic: every packet sampled (rate 1), the 5 UDP datagrams of each flow as they
    // entered host A's port, their 128-byte headers decoded (frames of 14 + IP + UDP + 50 bytes,
    // + 4 for the FCS as sFlow counts).
    for UdpFlow {
        src,
        dst,
        src_port,
        dst_port,
        headers,
        vlan,
    } in udp_flows()
    {
        let udp = udp_samples(&run.records, &src, src_port);
        assert_eq!(udp.len(), 5, "{udp:#?}");
        for s in &udp {
            assert_eq!(
                (
                    s.sampling_rate,
                    s.in_if,
                    s.frame_length,
                    s.src_mac.as_str(),
                    s.dst_mac.as_str(),
                    s.dst.as_str(),
                    s.ttl,
                    s.dst_port,
                    s.vlan
                ),
                (
                    1,
                    u64::from(hosts[0].ifindex),
                    14 + if vlan == 0 { 0 } else { 4 } + headers + 50 + 4,
                    mac_text(ovs::MAC_A).as_str(),
                    mac_text(ovs::MAC_B).as_str(),
                    dst.as_str(),
                    64,
                    dst_port,
                    vlan
                ),
                "{s:?}"
            );
        }
    }
    // ICMP from the sampled headers: 3 echo requests A→B (type 8) and 3 replies B→A (type 0).
    for (src, icmp_type) in [(&a, 8), (&b, 0)] {
        let icmp = run
            .records
            .iter()
            .filter(|r| is_flow(r) && proto_of(r) == 1 && str_of(r, "src_addr") == **src)
            .filter(|r| (u64_of(r, "icmp_type"), u64_of(r, "icmp_code")) == (icmp_type, 0))
            .count();
        assert_eq!(icmp, 3, "ICMP type {icmp_type} from {src}");
    }
    // TCP flags from the sampled headers: host A's SYN and host B's SYN-ACK.
    let flags = |src: &str, dst_port: u64| -> Vec<u64> {
        run.records
            .iter()
            .filter(|r| is_flow(r) && proto_of(r) == 6 && str_of(r, "src_addr") == src)
            .filter(|r| u64_of(r, "dst_port") == dst_port)
            .map(|r| u64_of(r, "tcp_flags"))
            .collect()
    };
    assert!(flags(&a, 8_080).contains(&0x02), "{:?}", flags(&a, 8_080));
    assert!(flags(&b, 40_001).contains(&0x12), "{:?}", flags(&b, 40_001));
    // Counter samples: OVS's port names, and generic interface counters of host A's port that
    // saw the traffic.
    let names = port_names(&run.records);
    for host in hosts {
        assert!(names.contains(&host.port), "{names:?}");
    }
    let port_a_octets = run
        .records
        .iter()
        .filter(|r| !is_flow(r) && r["format"] == 1)
        .filter(|r| r["counters"]["if_index"] == hosts[0].ifindex)
        .filter_map(|r| r["counters"]["in_octets"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        port_a_octets > 3_000,
        "host A's port counters: {port_a_octets}"
    );
}

#[test]
fn tshark_time_texts() {
    assert_eq!(
        utc_ns("Nov 21, 2026 19:13:51.671000000 UTC"),
        1_795_288_431_671_000_000
    );
    assert_eq!(
        utc_ns("Feb 29, 2000 23:59:59.000000001 UTC"),
        951_868_799_000_000_001
    );
    assert_eq!(utc_ns("Jan  1, 1970 00:00:00.5 UTC"), 500_000_000);
    assert_eq!(epoch_ns("1795288431.671279"), 1_795_288_431_671_279_000);
    assert_eq!(seconds_ms("2.936000000"), 2_936);
}

/// pmacct's `pmacctd` with the sfprobe plugin as a second sFlow exporter: it captures on the
/// collector end of a veth pair (every packet sampled, agent address 192.0.2.1) and exports sFlow
/// to a socket of this test in the collector namespace while the peer sends two UDP flows.
#[test]
fn pmacctd_sfprobe_live_in_network_namespaces() {
    let test = "pmacctd_sfprobe_live_in_network_namespaces";
    for tool in ["pmacctd", "tshark"] {
        if !tool_available(tool) {
            skipped(
                test,
                &format!("{tool} is not installed (cargo xtask setup installs it)"),
            );
            return;
        }
    }
    if !privilege::require(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pair = NetnsPair::create().unwrap();
    let socket = pair
        .in_collector(|| UdpSocket::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let to = socket.local_addr().unwrap();
    let config = dir.path().join("pmacctd.conf");
    std::fs::write(
        &config,
        format!(
            "daemonize: false\npcap_interface: {}\nplugins: sfprobe\nsfprobe_receiver: {to}\n\
             sfprobe_agentip: {COLLECTOR_V4}\n",
            pair.collector_if
        ),
    )
    .unwrap();
    let log = dir.path().join("pmacctd.log");
    let mut command = Command::new("pmacctd");
    command
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut pmacctd = ovs::Daemon::spawn(command, Some(&pair.collector_ns)).unwrap();
    let ready = collector_tests::poll(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("Exporting flows to").then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ready.is_some(), "pmacctd's sfprobe did not start:\n{text}");
    // The capture opens before the plugin reports; give both a moment.
    std::thread::sleep(Duration::from_millis(500));
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
    let datagrams = receive(&socket, Duration::from_secs(2), Duration::from_secs(15));
    pmacctd.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(!datagrams.is_empty(), "pmacctd sent nothing");
    let pcap = dir.path().join("export.pcap");
    write_capture(&pcap, &datagrams, to);
    let (records, summary) = replay_json(&pcap);
    println!("{test}: {} datagrams, summary {summary}", datagrams.len());
    assert_eq!(
        summary["errors"],
        serde_json::json!({}),
        "decode errors: {summary}"
    );
    let (compared, _) = compare_sflow_with_tshark(test, &pcap, to.port(), &records);
    assert!(compared > 0, "tshark decoded no flow sample");
    // The known traffic, sampled 1:1 as it arrived at the collector end: 4 and 3 datagrams,
    // frames of 14 + 20 + 8 + payload bytes (+ 4 for the FCS, as sFlow counts).
    let (peer, collector) = (PEER_V4.to_string(), COLLECTOR_V4.to_string());
    for (src_port, dst_port, count, payload) in [(41_000, 9, 4, 32), (41_001, 10, 3, 100)] {
        let samples: Vec<SflowSample> = records
            .iter()
            .filter(|r| is_flow(r) && r["src_port"] == src_port && proto_of(r) == 17)
            .map(|r| {
                assert_eq!(r["sampler_address"], collector, "{r}");
                our_sflow_sample(r)
            })
            .collect();
        assert_eq!(samples.len(), count, "{samples:#?}");
        for s in &samples {
            assert_eq!(
                (
                    s.sampling_rate,
                    s.src.as_str(),
                    s.dst.as_str(),
                    s.dst_port,
                    s.frame_length,
                    s.src_mac.as_str(),
                    s.dst_mac.as_str(),
                ),
                (
                    1,
                    peer.as_str(),
                    collector.as_str(),
                    dst_port,
                    14 + 20 + 8 + payload + 4,
                    mac_text(PEER_MAC).as_str(),
                    mac_text(COLLECTOR_MAC).as_str(),
                ),
                "{s:?}"
            );
        }
    }
}
