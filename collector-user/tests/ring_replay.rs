//! `collector replay --ring-dir`: decoded records go into ring files, and `collector read` prints
//! them exactly as `collector replay --json` does.

mod ring_common;

use bytemuck::Zeroable as _;
use collector::capture::{PcapWriter, linktype};
use collector::decode::netflow_v5::{self, HeaderRepr, RecordRepr};
use collector::record::FlowRecord;
use collector::ring::{DirReader, Start};
use etherparse::PacketBuilder;
use ring_common::Scratch;
use std::path::Path;
use std::process::{Command, Output};

const TS_NS: u64 = 1_700_000_000_000_000_000;

/// A pcap of `datagrams` NetFlow v5 datagrams of 30 records each, made with the project's encoder;
/// record j of datagram i counts 1000·i + j octets.
fn v5_capture(path: &Path, datagrams: u32) {
    let mut pcap =
        PcapWriter::new(std::fs::File::create(path).unwrap(), linktype::ETHERNET).unwrap();
    for i in 0..datagrams {
        let header = HeaderRepr {
            sys_uptime_ms: 600_000,
            unix_secs: 1_700_000_000,
            flow_sequence: i * 30,
            ..HeaderRepr::default()
        };
        let records: Vec<RecordRepr> = (0..30u32)
            .map(|j| RecordRepr {
                src_addr: [10, 0, 0, j as u8],
                dst_addr: [10, 1, 0, j as u8],
                packets: 1,
                octets: 1000 * i + j,
                first_ms: 590_000,
                last_ms: 599_000,
                src_port: 1000,
                dst_port: 80,
                proto: 6,
                ..RecordRepr::default()
            })
            .collect();
        let mut datagram = Vec::new();
        netflow_v5::emit(&header, &records, &mut datagram);
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
            .udp(40_000, 2055);
        let mut frame = Vec::new();
        builder.write(&mut frame, &datagram).unwrap();
        pcap.write_frame(TS_NS + u64::from(i) * 1000, &frame)
            .unwrap();
    }
    pcap.finish().unwrap();
}

fn collector(args: &[&str], paths: &[&Path]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn replay_into_rings_then_read_matches_replay_json() {
    let dir = Scratch::new("replay-rings");
    let capture = dir.path().join("v5.pcap");
    let rings = dir.path().join("rings");
    v5_capture(&capture, 10);
    collector(
        &["replay", "--ring-size", "1024"],
        &[&capture, Path::new("--ring-dir"), &rings],
    );

    let mut reader = DirReader::<FlowRecord>::open(&rings, Start::Oldest).unwrap();
    assert_eq!(reader.rings().len(), 1);
    assert_eq!(reader.rings()[0].info().capacity, 1024);
    let mut buf = vec![FlowRecord::zeroed(); 1024];
    let n = reader.read(&mut buf);
    assert_eq!(n, 300);
    for (k, rec) in buf[..n].iter().enumerate() {
        let (i, j) = (k as u64 / 30, k as u64 % 30);
        assert_eq!(rec.ring_seq, k as u64);
        assert_eq!(rec.bytes, 1000 * i + j);
        assert_eq!(rec.time_received_ns, TS_NS + i * 1000);
    }

    let json = collector(&["replay", "--json"], &[&capture]).stdout;
    let read = collector(&["read", "--ring-dir"], &[&rings]).stdout;
    assert_eq!(
        String::from_utf8(read).unwrap(),
        String::from_utf8(json).unwrap()
    );

    // A second replay resumes the same ring: the sequence goes on.
    collector(
        &["replay", "--ring-size", "1024"],
        &[&capture, Path::new("--ring-dir"), &rings],
    );
    let mut reader = DirReader::<FlowRecord>::open(&rings, Start::Oldest).unwrap();
    assert_eq!(reader.read(&mut buf), 600);
    assert_eq!(buf[599].ring_seq, 599);
}
