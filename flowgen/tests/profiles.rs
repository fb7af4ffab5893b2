//! Every profile's datagrams decode with the project's `Decoder` into exactly the records the
//! generator says it sent, with the collector seeing intentional gaps as loss and restarts as
//! restarts; the manifest regenerates the same records; and tshark decodes every profile without a
//! malformed packet or an expert error (when installed).

mod common;

use collector::decode::{Collected, DatagramMeta, Decoder, Protocol};
use collector::record::{FlowRecord, FlowType};
use common::{SEND_NS, params, stream};
use flowgen::exporter::{DataDatagram, replay};
use flowgen::model::{ETYPE_ARP, ETYPE_IPV4, ETYPE_IPV6, Profile};
use flowgen::pcap::PcapWriter;
use flowgen::verify::compare;
use std::net::SocketAddr;

fn source(i: u8) -> SocketAddr {
    SocketAddr::new([192, 0, 2, 10 + i].into(), 40_000 + u16::from(i))
}

fn decode_all(source: SocketAddr, datagrams: &[Vec<u8>]) -> (Decoder, Collected) {
    let mut dec = Decoder::new();
    let mut sink = Collected::default();
    let meta = DatagramMeta {
        exporter: source,
        received_ns: SEND_NS + 10_000_000_000,
    };
    for (i, d) in datagrams.iter().enumerate() {
        let r = dec.decode(&meta, d, &mut sink);
        assert_eq!(r, Ok(()), "datagram {i} of {} bytes", d.len());
    }
    (dec, sink)
}

fn assert_same(expected: &[FlowRecord], got: &[FlowRecord], what: &str) {
    assert_eq!(expected.len(), got.len(), "{what}: record count");
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        let mut diffs = Vec::new();
        compare(e, g, 0, |f, ev, gv| {
            diffs.push(format!("{f}: expected {ev} got {gv}"))
        });
        assert!(diffs.is_empty(), "{what}: record {i}: {diffs:?}");
    }
}

#[test]
fn every_profile_decodes_into_the_records_sent() {
    for profile in Profile::ALL {
        let p = params(profile, 0);
        let s = stream(&p, 3, source(3), 40, Some(25));
        let (dec, sink) = decode_all(s.source, &s.datagrams);
        assert!(!s.expected.is_empty());
        // Decoders emit records in datagram order; IPFIX/v9 group a datagram's records by template,
        // so compare as multisets inside each datagram: sort both by a total order.
        let key = |r: &FlowRecord| {
            (
                r.sequence_num,
                r.src_addr,
                r.dst_addr,
                r.src_port,
                r.dst_port,
                r.bytes,
                r.packets,
                r.time_flow_end_ns,
            )
        };
        let mut want = s.expected.clone();
        let mut got = sink.flows.clone();
        want.sort_by_key(key);
        got.sort_by_key(key);
        // sFlow records carry the receive time as flow times.
        if profile.flow_type() == FlowType::SflowV5 {
            assert!(
                got.iter()
                    .all(|r| r.time_flow_start_ns == SEND_NS + 10_000_000_000)
            );
        }
        assert_same(&want, &got, profile.name());
        let errors: u64 = dec.stats.errors.iter().sum();
        assert_eq!(errors, 0, "{profile}: decode errors {:?}", dec.stats.errors);
        if profile.flow_type() == FlowType::SflowV5 {
            assert!(!sink.counters.is_empty(), "{profile}: counter samples");
        }
        if profile == Profile::OvsIpfix {
            assert!(
                dec.stats.templates_learned >= 2 * 121,
                "templates re-sent after the restart"
            );
            assert_eq!(
                dec.stats.options_records, 2,
                "exporter statistics after each template burst"
            );
        }
    }
}

#[test]
fn ovs_profiles_look_like_ovs() {
    let s = stream(&params(Profile::OvsNetflow, 0), 0, source(0), 50, None);
    let (_, sink) = decode_all(s.source, &s.datagrams);
    assert!(
        s.datagrams.iter().all(|d| d.len() == 24 + 30 * 48),
        "30 records per v5 datagram"
    );
    assert!(
        sink.flows
            .iter()
            .all(|r| r.etype == 0x0800 && r.next_hop == collector::record::IPV4_UNSPECIFIED)
    );
    assert!(
        sink.flows
            .iter()
            .all(|r| r.in_if <= 16 && (r.out_if <= 16 || r.out_if == 65534))
    );

    let s = stream(&params(Profile::OvsIpfix, 0), 0, source(0), 200, None);
    let (dec, sink) = decode_all(s.source, &s.datagrams);
    assert_eq!(
        dec.templates().len(),
        121,
        "120 data templates + the options template"
    );
    assert_eq!(
        sink.flows.len(),
        200,
        "one record per data message, as OVS's ipfix_send_data_msg sends them"
    );
    assert!(
        sink.flows
            .iter()
            .all(|r| r.observation_domain_id == 0 && r.tcp_flags == 0)
    );
    assert!(
        sink.flows
            .iter()
            .any(|r| r.tunnel_type == 7 && r.tunnel_key != 0),
        "PEN 6876 tunnels"
    );
    assert!(sink.flows.iter().any(|r| r.etype == 0x86dd));
    assert!(
        sink.flows
            .iter()
            .any(|r| r.flow_direction == 1 && r.out_if != 0)
    );
    let ids: std::collections::HashSet<u16> = s
        .expected
        .iter()
        .map(collector::decode::ipfix::ovs::template_id_for)
        .collect();
    assert!(
        ids.len() >= 30,
        "many of the 120 templates in use: {}",
        ids.len()
    );

    let s = stream(&params(Profile::OvsSflow, 0), 0, source(0), 50, None);
    let (_, sink) = decode_all(s.source, &s.datagrams);
    assert!(sink.flows.iter().all(|r| r.sampling_rate == 400));
    assert!(
        sink.flows
            .iter()
            .any(|r| r.tunnel_key != 0 && r.tunnel_type == 7)
    );
    assert!(
        s.datagrams.iter().all(|d| d.len() <= 1400),
        "OVS keeps datagrams ≤ 1400 bytes"
    );
}

#[test]
fn intentional_gaps_are_loss_and_restarts_are_restarts_to_the_collector() {
    // IPFIX headers carry no uptime: a restart's jump back in sequence is not told apart from
    // reordering by the collector, so the IPFIX case runs without one.
    for (profile, restart) in [
        (Profile::OvsNetflow, Some(30)),
        (Profile::NetflowV9, Some(30)),
        (Profile::OvsIpfix, None),
    ] {
        let p = params(profile, 7);
        let s = stream(&p, 1, source(1), 60, restart);
        let (dec, sink) = decode_all(s.source, &s.datagrams);
        assert_eq!(sink.flows.len(), s.expected.len());
        let gaps: Vec<_> = s.log.gaps().collect();
        assert_eq!(gaps.len(), 60 / 7, "{profile}");
        let skipped: u64 = gaps.iter().map(|g| u64::from(g.2)).sum();
        let proto = match profile.flow_type() {
            FlowType::NetflowV5 => Protocol::NetflowV5,
            FlowType::NetflowV9 => Protocol::NetflowV9,
            _ => Protocol::Ipfix,
        };
        let (_, counts) = dec
            .sequence_counts()
            .find(|(space, _)| space.protocol == proto)
            .expect("a sequence space");
        assert_eq!(counts.lost, skipped, "{profile}: {counts:?}");
        let restarts = u64::from(restart.is_some());
        assert_eq!(counts.restarts, restarts, "{profile}: {counts:?}");
        assert_eq!(s.log.restarts() as u64, restarts);
        assert_eq!(s.log.sequence_ranges.len() as u64, 1 + restarts);
    }
}

/// The manifest counts the records without an IP layer (what pmacct leaves out, see the bench):
/// OVS IPFIX's ARP flows, none for the other profiles.
#[test]
fn the_manifest_counts_non_ip_records() {
    for profile in Profile::ALL {
        let p = params(profile, 0);
        let s = stream(&p, 1, source(1), 200, None);
        let arp = s.expected.iter().filter(|r| r.etype == ETYPE_ARP).count() as u64;
        let non_ip = s
            .expected
            .iter()
            .filter(|r| r.etype != ETYPE_IPV4 && r.etype != ETYPE_IPV6)
            .count() as u64;
        assert_eq!(s.log.non_ip_records, non_ip, "{profile}");
        assert_eq!(non_ip, arp, "{profile}: ARP is the only non-IP kind");
        if profile == Profile::OvsIpfix {
            assert!(non_ip > 0, "OVS IPFIX reports ARP flows");
        } else {
            assert_eq!(non_ip, 0, "{profile}");
        }
    }
}

#[test]
fn the_manifest_regenerates_every_record() {
    for profile in Profile::ALL {
        let p = params(profile, 5);
        let mut s = stream(&p, 2, source(2), 30, Some(12));
        // Pretend datagram 20 was refused by the kernel.
        let mut e = flowgen::exporter::Exporter::new(2, s.source, &p, p.time_base_ns);
        e.log = s.log.clone();
        let per = p.records_per_datagram as usize;
        let non_ip_20 = s.expected[20 * per..21 * per]
            .iter()
            .filter(|r| r.etype != ETYPE_IPV4 && r.etype != ETYPE_IPV6)
            .count() as u32;
        e.refused(
            100,
            Some(DataDatagram {
                index: 20,
                records: p.records_per_datagram,
                non_ip_records: non_ip_20,
            }),
        );
        s.log = e.log;
        let mut replayed: Vec<Vec<FlowRecord>> = Vec::new();
        replay(&p, &s.log, |r| replayed.push(r.to_vec()));
        assert_eq!(replayed.len(), 29, "{profile}: datagram 20 was not sent");
        let mut want: Vec<Vec<FlowRecord>> = s.expected.chunks(per).map(<[_]>::to_vec).collect();
        want.remove(20);
        assert_eq!(replayed, want, "{profile}");
    }
}

/// The pcap of `datagrams` from `src` to `dst`.
fn pcap(src: SocketAddr, dst: SocketAddr, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).expect("pcap header");
    for (i, d) in datagrams.iter().enumerate() {
        w.datagram(SEND_NS + i as u64 * 1000, src, dst, d)
            .expect("pcap record");
    }
    w.finish().expect("pcap")
}

/// tshark 4.0's sFlow dissector does not know OVS's counter records (OpenFlow port 1004, port name
/// 1005, app resources 2203, OVS datapath 2207) and loses its way after one ("Unknown sample
/// format", then a malformed packet). Accept that only for a counter-sample datagram (it decodes
/// into counter records and no flow) whose dissection stops right after such a record.
fn tshark_lacks_ovs_counter_records(
    file: &std::path::Path,
    port: u16,
    frame: usize,
    datagrams: &[Vec<u8>],
    src: SocketAddr,
) -> bool {
    let Some(d) = frame.checked_sub(1).and_then(|i| datagrams.get(i)) else {
        return false;
    };
    let (_, sink) = decode_all(src, std::slice::from_ref(d));
    if !sink.flows.is_empty() || sink.counters.is_empty() {
        return false;
    }
    let out = std::process::Command::new("tshark")
        .args(["-n", "-V", "-r"])
        .arg(file)
        .args(["-d", &format!("udp.port=={port},sflow")])
        .args(["-Y", &format!("frame.number=={frame}")])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let unknown = ["1004", "1005", "2203", "2207"]
        .iter()
        .filter_map(|f| text.find(&format!("Format: Unknown ({f})")))
        .min();
    matches!((unknown, text.find("[Malformed Packet")), (Some(u), Some(m)) if u < m)
}

#[test]
fn tshark_decodes_every_profile_without_errors() {
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: tshark is not installed");
        return;
    }
    let dir = common::temp_dir("tshark");
    for profile in Profile::ALL {
        let p = params(profile, 0);
        for (i, src) in [
            source(4),
            SocketAddr::new("2001:db8::4".parse().unwrap(), 40_004),
        ]
        .into_iter()
        .enumerate()
        {
            let s = stream(&p, 4, src, 30, Some(20));
            let port = profile.default_port();
            let dst = SocketAddr::new(
                if src.is_ipv4() {
                    [192, 0, 2, 1].into()
                } else {
                    "2001:db8::1".parse().unwrap()
                },
                port,
            );
            let file = dir.join(format!("{profile}-{i}.pcap"));
            std::fs::write(&file, pcap(src, dst, &s.datagrams)).expect("write pcap");
            let dissector = if profile.flow_type() == FlowType::SflowV5 {
                "sflow"
            } else {
                "cflow"
            };
            let out = std::process::Command::new("tshark")
                .args(["-n", "-r"])
                .arg(&file)
                .args(["-d", &format!("udp.port=={port},{dissector}")])
                .args([
                    "-T",
                    "fields",
                    "-e",
                    "frame.number",
                    "-e",
                    "frame.protocols",
                    "-e",
                    "_ws.malformed",
                    "-e",
                    "_ws.expert.severity",
                ])
                .output()
                .expect("run tshark");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{profile}: tshark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(
                lines.len(),
                s.datagrams.len(),
                "{profile}: every frame read"
            );
            for line in lines {
                let cols: Vec<&str> = line.split('\t').collect();
                let protocols = cols.get(1).copied().unwrap_or_default();
                assert!(
                    protocols.contains(&format!("udp:{dissector}")),
                    "{profile}: {line}"
                );
                let malformed = cols.get(2).is_some_and(|c| !c.is_empty());
                if malformed {
                    let frame: usize = cols.first().and_then(|n| n.parse().ok()).unwrap_or(0);
                    assert!(
                        tshark_lacks_ovs_counter_records(&file, port, frame, &s.datagrams, src),
                        "{profile}: malformed: {line}"
                    );
                    continue;
                }
                // Expert severities: 0x00800000 is an error (0x00600000 a warning).
                let severe = cols
                    .get(3)
                    .copied()
                    .unwrap_or_default()
                    .split(',')
                    .any(|s| {
                        let v = match s.strip_prefix("0x") {
                            Some(hex) => u64::from_str_radix(hex, 16),
                            None => s.parse(),
                        };
                        v.is_ok_and(|v| v >= 0x0080_0000)
                    });
                assert!(!severe, "{profile}: expert error: {line}");
            }
        }
    }
    if std::env::var_os("FLOWGEN_KEEP_PCAP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
