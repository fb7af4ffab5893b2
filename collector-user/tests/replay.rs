//! `collector replay` end to end: capture files built here (etherparse for L2-L4, pcap and pcapng
//! written by hand), run through the real binary, stdout/stderr parsed as JSON.

use collector::capture::{PcapWriter, linktype};
use etherparse::{IpNumber, Ipv4Header, PacketBuilder, VlanId};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const EXPORTER_V4: [u8; 4] = [192, 0, 2, 10];
const COLLECTOR_V4: [u8; 4] = [192, 0, 2, 1];
const EXPORTER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const COLLECTOR_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
/// 2023-11-14T22:13:20Z plus a fraction, as a capture timestamp.
const TS_NS: u64 = 1_700_000_000_123_456_000;

/// A NetFlow v5 datagram with `count` records: record i is 10.0.0.i:1000+i → 10.1.0.i:80, TCP,
/// 100·(i+1) bytes, i+1 packets. Laid out per Cisco's v5 format (24-byte header, 48-byte records).
fn v5_datagram(count: u8, sequence: u32) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&5u16.to_be_bytes());
    d.extend_from_slice(&u16::from(count).to_be_bytes());
    d.extend_from_slice(&600_000u32.to_be_bytes()); // sysUptime ms
    d.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // unix secs
    d.extend_from_slice(&0u32.to_be_bytes()); // unix nsecs
    d.extend_from_slice(&sequence.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 0]); // engine type, id, sampling
    for i in 0..count {
        d.extend_from_slice(&[10, 0, 0, i]); // srcaddr
        d.extend_from_slice(&[10, 1, 0, i]); // dstaddr
        d.extend_from_slice(&[0, 0, 0, 0]); // nexthop
        d.extend_from_slice(&1u16.to_be_bytes()); // input
        d.extend_from_slice(&2u16.to_be_bytes()); // output
        d.extend_from_slice(&(u32::from(i) + 1).to_be_bytes()); // packets
        d.extend_from_slice(&(100 * (u32::from(i) + 1)).to_be_bytes()); // octets
        d.extend_from_slice(&590_000u32.to_be_bytes()); // first
        d.extend_from_slice(&599_000u32.to_be_bytes()); // last
        d.extend_from_slice(&(1000 + u16::from(i)).to_be_bytes()); // srcport
        d.extend_from_slice(&80u16.to_be_bytes()); // dstport
        d.extend_from_slice(&[0, 0x1b, 6, 0]); // pad, tcp flags, proto, tos
        d.extend_from_slice(&[0; 8]); // src/dst AS, masks, pad
    }
    d
}

fn ethernet_ipv4_udp(payload: &[u8], dport: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(EXPORTER_V4, COLLECTOR_V4, 64)
        .udp(40_000, dport);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn ethernet_vlan_ipv4_udp(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv4(EXPORTER_V4, COLLECTOR_V4, 64)
        .udp(40_001, 2055);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn ethernet_qinq_ipv6_udp(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
        .ipv6(EXPORTER_V6, COLLECTOR_V6, 64)
        .udp(40_002, 2055);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn sll_ipv4_udp(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::linux_sll(
        etherparse::LinuxSllPacketType::OUTGOING,
        6,
        [2, 0, 0, 0, 0, 0xa, 0, 0],
    )
    .ipv4(EXPORTER_V4, COLLECTOR_V4, 64)
    .udp(40_003, 2055);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn raw_ipv4_udp(payload: &[u8], sport: u16) -> Vec<u8> {
    let builder = PacketBuilder::ipv4(EXPORTER_V4, COLLECTOR_V4, 64).udp(sport, 2055);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn ethernet_ipv4_tcp() -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(EXPORTER_V4, COLLECTOR_V4, 64)
        .tcp(179, 40_000, 1, 1024);
    let mut frame = Vec::new();
    builder.write(&mut frame, &[0; 19]).unwrap();
    frame
}

/// IPv4 fragments (raw IP frames) of one UDP datagram, `mtu` bytes of IP payload per fragment.
fn ipv4_fragments(payload: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let udp = etherparse::UdpHeader::without_ipv4_checksum(40_004, 2055, payload.len()).unwrap();
    let mut l4 = udp.to_bytes().to_vec();
    l4.extend_from_slice(payload);
    let chunk = mtu / 8 * 8;
    l4.chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let mut h = Ipv4Header::new(
                piece.len() as u16,
                64,
                IpNumber::UDP,
                EXPORTER_V4,
                COLLECTOR_V4,
            )
            .unwrap();
            h.identification = 0x4242;
            h.more_fragments = (i + 1) * chunk < l4.len();
            h.fragment_offset = etherparse::IpFragOffset::try_new((i * chunk / 8) as u16).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut frame = h.to_bytes().to_vec();
            frame.extend_from_slice(piece);
            frame
        })
        .collect()
}

/// IPv6 fragments (raw IP frames) of one UDP datagram, behind a fragment extension header.
fn ipv6_fragments(payload: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let udp = etherparse::UdpHeader::without_ipv4_checksum(40_005, 2055, payload.len()).unwrap();
    let mut l4 = udp.to_bytes().to_vec();
    l4.extend_from_slice(payload);
    let chunk = mtu / 8 * 8;
    l4.chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let more = (i + 1) * chunk < l4.len();
            let mut frame = vec![0x60, 0, 0, 0];
            frame.extend_from_slice(&((8 + piece.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[44, 64]);
            frame.extend_from_slice(&EXPORTER_V6);
            frame.extend_from_slice(&COLLECTOR_V6);
            frame.extend_from_slice(&[17, 0]);
            frame.extend_from_slice(&(((i * chunk) as u16) | u16::from(more)).to_be_bytes());
            frame.extend_from_slice(&0xdead_beefu32.to_be_bytes());
            frame.extend_from_slice(piece);
            frame
        })
        .collect()
}

fn write_pcap(path: &Path, link: u32, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), link).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_frame(TS_NS + i as u64 * 1_000_000, f).unwrap();
    }
    w.finish().unwrap();
}

/// A little-endian pcapng file: one section, the given interfaces (link type, if_tsresol), and
/// enhanced packet blocks (interface, frame) with timestamps TS_NS + i ms.
fn write_pcapng(path: &Path, interfaces: &[(u16, u8)], packets: &[(u32, Vec<u8>)]) {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let mut padded = body.to_vec();
        padded.resize(body.len().next_multiple_of(4), 0);
        let total = (12 + padded.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&padded);
        out.extend_from_slice(&total.to_le_bytes());
    }
    let mut file = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut file, 0x0a0d_0d0a, &shb);
    for &(link, tsresol) in interfaces {
        let mut idb = link.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
        idb.extend_from_slice(&[9, 0, 1, 0, tsresol, 0, 0, 0, 0, 0, 0, 0]);
        block(&mut file, 1, &idb);
    }
    for (i, (iface, frame)) in packets.iter().enumerate() {
        let tsresol = interfaces[*iface as usize].1;
        let ns = TS_NS + i as u64 * 1_000_000;
        let units = ns / 10u64.pow(9 - u32::from(tsresol));
        let mut epb = iface.to_le_bytes().to_vec();
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        block(&mut file, 6, &epb);
    }
    std::fs::write(path, file).unwrap();
}

struct Replayed {
    success: bool,
    records: Vec<Value>,
    stdout: String,
    errors: Vec<Value>,
    summary: Value,
}

fn replay(path: &Path, args: &[&str]) -> Replayed {
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .arg("replay")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut errors = Vec::new();
    let mut summary = Value::Null;
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("summary").is_some() {
            summary = v["summary"].clone();
        } else {
            assert!(v["error"].is_string(), "stderr line: {line}");
            errors.push(v);
        }
    }
    assert!(!summary.is_null(), "no summary on stderr: {stderr}");
    let records = if args.contains(&"--json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    } else {
        Vec::new()
    };
    Replayed {
        success: out.status.success(),
        records,
        stdout,
        errors,
        summary,
    }
}

fn count(summary: &Value, group: &str, key: &str) -> u64 {
    summary[group][key].as_u64().unwrap_or(0)
}

/// Every datagram reached the decoder, and every error line is counted in the summary.
fn assert_accounted(r: &Replayed, datagrams: u64) {
    let decoded: u64 = ["NETFLOW_V5", "NETFLOW_V9", "IPFIX", "SFLOW_5"]
        .iter()
        .map(|p| count(&r.summary, "datagrams", p))
        .sum();
    assert_eq!(decoded, datagrams, "summary: {}", r.summary);
    let errors: u64 = r.summary["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        errors,
        r.errors.len() as u64,
        "one error line per counted error"
    );
}

#[test]
fn link_layers_vlans_and_ip_versions_reach_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let v5 = v5_datagram(2, 1);
    let eth = dir.path().join("eth.pcap");
    write_pcap(
        &eth,
        linktype::ETHERNET,
        &[
            ethernet_ipv4_udp(&v5, 2055),
            ethernet_ipv4_tcp(),
            ethernet_vlan_ipv4_udp(&v5),
            ethernet_qinq_ipv6_udp(&v5),
        ],
    );
    let r = replay(&eth, &["--json"]);
    assert!(r.success);
    assert_eq!(r.summary["frames"], 4);
    assert_eq!(r.summary["udp_datagrams"], 3);
    assert_eq!(count(&r.summary, "skipped", "not_udp"), 1);
    assert_eq!(count(&r.summary, "datagrams", "NETFLOW_V5"), 3);
    assert_accounted(&r, 3);
    for e in &r.errors {
        // Frame numbers are 1-based capture positions; the TCP frame (2) never reaches the decoder.
        assert_ne!(e["frame"], 2);
        assert_eq!(e["protocol"], "NETFLOW_V5");
        assert_eq!(e["length"], v5.len());
    }

    let sll = dir.path().join("sll.pcap");
    write_pcap(&sll, linktype::LINUX_SLL, &[sll_ipv4_udp(&v5)]);
    let r = replay(&sll, &["--json"]);
    assert_eq!(count(&r.summary, "datagrams", "NETFLOW_V5"), 1);
    assert_accounted(&r, 1);

    // pcapng: three interfaces with different link types and timestamp resolutions.
    let ng = dir.path().join("mixed.pcapng");
    write_pcapng(
        &ng,
        &[(1, 6), (113, 9), (101, 6)],
        &[
            (0, ethernet_vlan_ipv4_udp(&v5)),
            (1, sll_ipv4_udp(&v5)),
            (2, raw_ipv4_udp(&v5, 40_006)),
            (0, ethernet_ipv4_tcp()),
        ],
    );
    let r = replay(&ng, &["--json"]);
    assert!(r.success);
    assert_eq!(r.summary["frames"], 4);
    assert_eq!(count(&r.summary, "datagrams", "NETFLOW_V5"), 3);
    assert_accounted(&r, 3);
    // Each datagram ends as records or as an error line, both stamped with the capture time.
    let mut times: Vec<u64> = r
        .errors
        .iter()
        .chain(&r.records)
        .map(|v| v["time_received_ns"].as_u64().unwrap())
        .collect();
    times.sort_unstable();
    times.dedup();
    assert_eq!(times, [TS_NS, TS_NS + 1_000_000, TS_NS + 2_000_000]);
}

#[test]
fn fragmented_datagrams_are_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let big = v5_datagram(30, 7); // 1464 bytes
    let mut frames = ipv4_fragments(&big, 600);
    assert_eq!(frames.len(), 3);
    // Out of order, and an IPv6 datagram's fragments interleaved.
    frames.swap(0, 2);
    let v6 = ipv6_fragments(&v5_datagram(30, 37), 512);
    frames.insert(1, v6[0].clone());
    frames.extend(v6[1..].iter().cloned());
    let path = dir.path().join("fragments.pcap");
    write_pcap(&path, linktype::RAW, &frames);
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert_eq!(r.summary["reassembled"], 2, "{}", r.summary);
    assert_eq!(r.summary["udp_datagrams"], 2);
    assert_eq!(count(&r.summary, "datagrams", "NETFLOW_V5"), 2);
    assert_eq!(r.summary["skipped"], serde_json::json!({}));
    assert_accounted(&r, 2);
    for e in &r.errors {
        assert_eq!(e["length"], big.len());
    }
    // Each reassembled datagram is whole: 30 records, or refused as a whole.
    assert_eq!(r.errors.len() + r.records.len() / 30, 2);
    assert_eq!(r.records.len() % 30, 0);
}

#[test]
fn incomplete_fragments_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let frames = ipv4_fragments(&v5_datagram(30, 1), 600);
    let path = dir.path().join("incomplete.pcap");
    write_pcap(&path, linktype::RAW, &frames[..2]);
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert_eq!(r.summary["fragments"], 2);
    assert_eq!(count(&r.summary, "skipped", "reassembly_incomplete"), 1);
    assert_accounted(&r, 0);
}

#[test]
fn port_filter_skips_other_ports() {
    let dir = tempfile::tempdir().unwrap();
    let v5 = v5_datagram(1, 1);
    let path = dir.path().join("ports.pcap");
    write_pcap(
        &path,
        linktype::ETHERNET,
        &[ethernet_ipv4_udp(&v5, 2055), ethernet_ipv4_udp(&v5, 53)],
    );
    let r = replay(&path, &["--json", "--port", "2055"]);
    assert_eq!(r.summary["other_port"], 1);
    assert_accounted(&r, 1);
    let r = replay(&path, &["--json"]);
    assert_eq!(r.summary["other_port"], 0);
    assert_accounted(&r, 2);
}

#[test]
fn non_flow_udp_is_an_error_line_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns.pcap");
    write_pcap(
        &path,
        linktype::ETHERNET,
        &[ethernet_ipv4_udp(&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0], 53)],
    );
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0]["error"], "unknown_version");
    assert_eq!(r.errors[0]["exporter"], "192.0.2.10:40000");
    assert_eq!(r.errors[0]["frame"], 1);
    assert_eq!(r.summary["errors"]["unknown_version"], 1);
}

#[test]
fn corrupt_capture_fails_after_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    write_pcap(
        &path,
        linktype::ETHERNET,
        &vec![ethernet_ipv4_udp(&v5_datagram(1, 1), 2055); 2],
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let r = replay(&path, &["--json"]);
    assert!(!r.success);
    assert_eq!(r.summary["frames"], 1);
    assert!(
        r.summary["capture_error"]
            .as_str()
            .unwrap()
            .contains("ends inside")
    );

    std::fs::write(&path, b"this is not a capture").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["replay"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));
}

#[test]
fn v5_records_as_json_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.pcap");
    write_pcap(
        &path,
        linktype::ETHERNET,
        &[ethernet_ipv4_udp(&v5_datagram(3, 100), 2055)],
    );
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.records.len(), 3);
    for (i, rec) in r.records.iter().enumerate() {
        assert_eq!(rec["type"], "NETFLOW_V5");
        assert_eq!(rec["time_received_ns"], TS_NS);
        assert_eq!(rec["sampler_address"], "192.0.2.10");
        assert_eq!(rec["exporter_port"], 40_000);
        assert_eq!(rec["src_addr"], format!("10.0.0.{i}"));
        assert_eq!(rec["dst_addr"], format!("10.1.0.{i}"));
        assert_eq!(rec["src_port"], 1000 + i);
        assert_eq!(rec["dst_port"], 80);
        assert_eq!(rec["proto"], "TCP");
        assert_eq!(rec["tcp_flags"], 0x1b);
        assert_eq!(rec["bytes"], 100 * (i + 1));
        assert_eq!(rec["packets"], i + 1);
        assert_eq!(rec["in_if"], 1);
        assert_eq!(rec["out_if"], 2);
        assert_eq!(rec["sequence_num"], 100);
        assert_eq!(rec["next_hop"], "0.0.0.0");
        // Flow end: unix time of the export minus (uptime - last) = 1 s earlier.
        assert_eq!(rec["time_flow_end_ns"], 1_699_999_999_000_000_000u64);
    }
    assert_eq!(count(&r.summary, "records", "NETFLOW_V5"), 3);

    assert_eq!(r.summary["sequence"]["spaces"], 1);
    assert_eq!(r.summary["sequence"]["lost"], 0);

    // v5 sequences count flows: 100 + 3 records → 103 expected; 110 means 7 flows lost.
    let gap = dir.path().join("v5-gap.pcap");
    write_pcap(
        &gap,
        linktype::ETHERNET,
        &[
            ethernet_ipv4_udp(&v5_datagram(3, 100), 2055),
            ethernet_ipv4_udp(&v5_datagram(3, 110), 2055),
        ],
    );
    let r = replay(&gap, &["--json"]);
    assert_eq!(r.records.len(), 6);
    assert_eq!(r.summary["sequence"]["lost"], 7, "{}", r.summary);

    let table = replay(&path, &[]);
    assert!(table.success);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("NETFLOW_V5"));
    assert!(
        lines[0].contains("10.0.0.0:1000 -> 10.1.0.0:80"),
        "{}",
        lines[0]
    );
}

/// An OVS-style IPFIX message (all 120 templates + options template + data) is ~20 KB: on the wire
/// it is a train of IP fragments. Replay must reassemble and decode it like the socket path does.
#[test]
fn fragmented_ovs_ipfix_message_decodes_through_the_project_encoder() {
    use collector::decode::ie::EncodeContext;
    use collector::decode::ipfix::ovs;
    use collector::decode::time::ExportClock;
    use collector::record::{FlowRecord, ipv4_bytes};

    let mut tcp = <FlowRecord as bytemuck::Zeroable>::zeroed();
    tcp.etype = 0x0800;
    tcp.proto = 6;
    tcp.src_addr = ipv4_bytes([10, 128, 0, 5]);
    tcp.dst_addr = ipv4_bytes([10, 128, 1, 7]);
    tcp.src_port = 43_210;
    tcp.dst_port = 8443;
    tcp.bytes = 123_456;
    tcp.packets = 99;
    tcp.src_mac = [0x0a, 0x58, 0x0a, 0x80, 0x00, 0x05];
    tcp.dst_mac = [0x0a, 0x58, 0x0a, 0x80, 0x01, 0x07];
    tcp.in_if = 3;
    tcp.ip_ttl = 63;
    tcp.flow_end_reason = 2;
    tcp.time_flow_start_ns = 1_699_999_990_000_000_000;
    tcp.time_flow_end_ns = 1_699_999_999_000_000_000;
    let mut tunneled = tcp;
    tunneled.proto = 17;
    tunneled.flow_direction = 1;
    tunneled.out_if = 4;
    tunneled.tunnel_type = 1;
    tunneled.tunnel_key = 5001;
    tunneled.tunnel_src_addr = ipv4_bytes([172, 16, 0, 1]);
    tunneled.tunnel_dst_addr = ipv4_bytes([172, 16, 0, 2]);
    tunneled.tunnel_proto = 17;
    tunneled.tunnel_dst_port = 4789;
    let ctx = EncodeContext {
        clock: ExportClock {
            export_ns: 1_700_000_000_000_000_000,
            uptime_ms: None,
        },
        init_ms: 0,
        interface_name: "ovn-k8s-mp0",
    };
    let message = ovs::message(1_700_000_000, 0, true, &[tcp, tunneled], &ctx);
    assert!(message.len() > 8 * 1480, "{} bytes", message.len());
    let frames = ipv4_fragments(&message, 1480);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ovs-ipfix.pcap");
    write_pcap(&path, linktype::RAW, &frames);
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.summary["reassembled"], 1);
    assert_eq!(r.summary["fragments"], frames.len() - 1);
    assert_eq!(r.summary["templates"]["learned"], 121);
    assert_eq!(r.records.len(), 2);
    let last_ts = TS_NS + (frames.len() as u64 - 1) * 1_000_000;
    for (rec, want) in r.records.iter().zip([tcp, tunneled]) {
        assert_eq!(rec["type"], "IPFIX");
        assert_eq!(rec["time_received_ns"], last_ts);
        assert_eq!(rec["sampler_address"], "192.0.2.10");
        assert_eq!(rec["exporter_port"], 40_004);
        assert_eq!(rec["src_addr"], "10.128.0.5");
        assert_eq!(rec["dst_addr"], "10.128.1.7");
        assert_eq!(rec["src_port"], 43_210);
        assert_eq!(rec["dst_port"], 8443);
        assert_eq!(rec["etype"], "IPv4");
        assert_eq!(rec["bytes"], 123_456);
        assert_eq!(rec["packets"], 99);
        assert_eq!(rec["src_mac"], "0a:58:0a:80:00:05");
        assert_eq!(rec["dst_mac"], "0a:58:0a:80:01:07");
        assert_eq!(rec["ip_ttl"], 63);
        assert_eq!(rec["flow_end_reason"], 2);
        assert_eq!(rec["time_flow_start_ns"], want.time_flow_start_ns);
        assert_eq!(rec["time_flow_end_ns"], want.time_flow_end_ns);
        assert_eq!(rec["flow_direction"], want.flow_direction);
    }
    assert_eq!(r.records[0]["proto"], "TCP");
    assert_eq!(r.records[0]["tunnel_type"], 0);
    assert_eq!(r.records[0]["tunnel_src_addr"], "");
    assert_eq!(r.records[1]["proto"], "UDP");
    assert_eq!(r.records[1]["out_if"], 4);
    assert_eq!(r.records[1]["tunnel_type"], 1);
    assert_eq!(r.records[1]["tunnel_key"], 5001);
    assert_eq!(r.records[1]["tunnel_src_addr"], "172.16.0.1");
    assert_eq!(r.records[1]["tunnel_dst_addr"], "172.16.0.2");
    assert_eq!(r.records[1]["tunnel_dst_port"], 4789);
}

/// sFlow from an OVS-like exporter (the project's encoder): flow samples become flow records with
/// the agent as `sampler_address` and the sampling rate; counter samples come out with their kind.
#[test]
fn ovs_sflow_flows_and_counters() {
    use collector::decode::sflow::emit::OvsExporter;
    let mut exporter = OvsExporter::new(std::net::Ipv4Addr::new(10, 0, 0, 7), 42);
    let mut flow_datagram = Vec::new();
    let samples = exporter.flow_datagram(&mut flow_datagram);
    assert!(samples > 0);
    let counter_datagrams = exporter.counter_datagrams();
    let mut frames = vec![ethernet_ipv4_udp(&flow_datagram, 6343)];
    frames.extend(counter_datagrams.iter().map(|d| ethernet_ipv4_udp(d, 6343)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sflow.pcap");
    write_pcap(&path, linktype::ETHERNET, &frames);
    let r = replay(&path, &["--json"]);
    assert!(r.success);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let (counters, flows): (Vec<&Value>, Vec<&Value>) =
        r.records.iter().partition(|v| v["kind"] == "counters");
    assert_eq!(flows.len(), samples);
    for f in &flows {
        assert_eq!(f["type"], "SFLOW_5");
        assert_eq!(f["sampler_address"], "10.0.0.7");
        assert_eq!(f["sampling_rate"], 400);
        assert_eq!(f["time_received_ns"], TS_NS);
        assert_ne!(f["src_addr"], "");
    }
    assert!(!counters.is_empty());
    for c in &counters {
        assert_eq!(c["type"], "SFLOW_5");
        assert_eq!(c["sampler_address"], "10.0.0.7");
        assert!(c["counters"].is_object());
    }
    assert_eq!(
        count(&r.summary, "datagrams", "SFLOW_5"),
        1 + counter_datagrams.len() as u64
    );
    assert_eq!(
        count(&r.summary, "sflow_sequence", "agents"),
        1,
        "{}",
        r.summary
    );
    assert!(
        count(&r.summary, "sflow_sequence", "sources") > 0,
        "{}",
        r.summary
    );
    assert_eq!(
        count(&r.summary, "sflow_sequence", "datagrams_lost"),
        0,
        "{}",
        r.summary
    );
    assert_eq!(
        count(&r.summary, "sflow_sequence", "samples_lost"),
        0,
        "{}",
        r.summary
    );

    // The counter datagrams and two flow datagrams skipped: the agent's datagram sequence misses
    // them all, and the flow source's sample sequence misses the samples of the two.
    let mut skipped_samples = 0;
    let mut frames = vec![ethernet_ipv4_udp(&flow_datagram, 6343)];
    for i in 0..4 {
        let mut datagram = Vec::new();
        let n = exporter.flow_datagram(&mut datagram);
        if i < 2 {
            skipped_samples += n as u64;
        } else {
            frames.push(ethernet_ipv4_udp(&datagram, 6343));
        }
    }
    let gap = dir.path().join("sflow-gap.pcap");
    write_pcap(&gap, linktype::ETHERNET, &frames);
    let r = replay(&gap, &["--json"]);
    assert_eq!(
        count(&r.summary, "sflow_sequence", "datagrams_lost"),
        2 + counter_datagrams.len() as u64,
        "{}",
        r.summary
    );
    assert_eq!(
        count(&r.summary, "sflow_sequence", "samples_lost"),
        skipped_samples,
        "{}",
        r.summary
    );
    assert_eq!(
        count(&r.summary, "sflow_sequence", "restarts"),
        0,
        "{}",
        r.summary
    );
}

#[test]
fn the_summary_keeps_the_loss_of_sequence_spaces_forgotten_on_the_way() {
    // Exporter A loses 5 flows (sequence 0 + 5 records, then 10), then falls silent; 31 minutes
    // of capture time later exporter B's first datagram makes the decoder forget A's idle space.
    // The summary still counts both spaces and A's loss.
    let dir = tempfile::tempdir().unwrap();
    let from = |source: [u8; 4], payload: &[u8]| {
        let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(source, COLLECTOR_V4, 64)
            .udp(40_000, 2055);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, payload).unwrap();
        frame
    };
    let path = dir.path().join("idle.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap(), linktype::ETHERNET).unwrap();
    w.write_frame(TS_NS, &from(EXPORTER_V4, &v5_datagram(5, 0)))
        .unwrap();
    w.write_frame(TS_NS + 1_000_000, &from(EXPORTER_V4, &v5_datagram(1, 10)))
        .unwrap();
    let later = TS_NS + 31 * 60 * 1_000_000_000;
    w.write_frame(later, &from([192, 0, 2, 11], &v5_datagram(1, 0)))
        .unwrap();
    w.finish().unwrap();
    let r = replay(&path, &[]);
    assert!(r.success);
    assert_accounted(&r, 3);
    assert_eq!(count(&r.summary, "sequence", "spaces"), 2, "{}", r.summary);
    assert_eq!(count(&r.summary, "sequence", "lost"), 5, "{}", r.summary);
}

/// `collector replay --json FILE | head -1`: the reader going away is a normal end, as for
/// `collector read`: exit 0, nothing about the pipe, and the summary of the whole file on stderr.
#[test]
fn a_closed_stdout_ends_the_replay_quietly_with_its_summary() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.pcap");
    // 2000 datagrams of 30 records: megabytes of output, far more than a pipe holds.
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| ethernet_ipv4_udp(&v5_datagram(30, i * 30), 2055))
        .collect();
    write_pcap(&path, linktype::ETHERNET, &frames);
    for args in [&["--json"][..], &[][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
            .arg("replay")
            .arg(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is dropped: stdout's pipe has no reader any more.
        assert!(first.contains("10.0.0.0"), "{args:?}: {first}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        let summary = stderr
            .lines()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()?
                    .get("summary")
                    .cloned()
            })
            .unwrap_or_else(|| panic!("{args:?}: no summary: {stderr}"));
        assert_eq!(summary["frames"], 2000, "{args:?}: {summary}");
        assert_eq!(count(&summary, "records", "NETFLOW_V5"), 60_000);
    }
}
