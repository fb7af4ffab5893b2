//! Decoder tests: hand-built datagrams, emit → decode round trips, lengths that lie, truncation,
//! sequence tracking, the OVS profile and the public corpus (skipped when absent).

use super::counter_records::CounterRecordRepr;
use super::datagram::HeaderRepr;
use super::emit::{
    CounterSampleRepr, DatagramRepr, FlowSampleRepr, OvsExporter, SampleRepr, ovs_sample_datagrams,
};
use super::flow_records::{FlowRecordRepr, SampledIpv4, SampledIpv6};
use super::samples::{Interface, SourceId};
use super::*;
use crate::decode::packet_header::{Frame, Network, Transport};
use crate::decode::{Collected, DatagramMeta, Decoder, Protocol};
use crate::record::counters::{
    CounterBody, GenericInterfaceCounters, LacpCounters, OvsDatapathCounters, ProcessorCounters,
    VlanCounters,
};
use crate::record::{addr_to_bytes, ipv4_bytes};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn meta() -> DatagramMeta {
    DatagramMeta {
        exporter: SocketAddr::from(([192, 0, 2, 99], 40001)),
        received_ns: 1_700_000_000_000_000_000,
    }
}

fn decode(dec: &mut SflowDecoder, bytes: &[u8]) -> (Result<usize, ErrorReason>, Collected) {
    let mut sink = Collected::default();
    let result = dec.decode(&meta(), bytes, &mut sink);
    (result, sink)
}

/// A datagram built byte by byte: agent 10.0.0.254, sub-agent 0, sequence 42, uptime 100000 ms,
/// one compact flow sample (seq 9, source 0:5, 1:400, pool 8000, drops 0, in 5, out 0x3FFFFFFF)
/// with a raw header record (Ethernet / IPv4 10.1.1.1 → 10.2.2.2 / UDP 4000 → 53, frame 90)
/// and an extended switch record (VLAN 12).
#[rustfmt::skip]
const FLOW_DATAGRAM: [u8; 160] = [
    0, 0, 0, 5,  0, 0, 0, 1,  10, 0, 0, 254,  0, 0, 0, 0,  0, 0, 0, 42,  0, 1, 0x86, 0xa0,  0, 0, 0, 1,
    // sample: format 1, length 124
    0, 0, 0, 1,  0, 0, 0, 124,
    0, 0, 0, 9,  0, 0, 0, 5,  0, 0, 0x01, 0x90,  0, 0, 0x1f, 0x40,  0, 0, 0, 0,
    0, 0, 0, 5,  0x3f, 0xff, 0xff, 0xff,  0, 0, 0, 2,
    // raw header: format 1, length 16 + 44
    0, 0, 0, 1,  0, 0, 0, 60,
    0, 0, 0, 1,  0, 0, 0, 90,  0, 0, 0, 4,  0, 0, 0, 42,
    2, 0, 0, 0, 0, 2,  2, 0, 0, 0, 0, 1,  0x08, 0x00,
    0x45, 0x00, 0, 76,  0, 0, 0, 0,  61, 17, 0, 0,  10, 1, 1, 1,  10, 2, 2, 2,
    0x0f, 0xa0, 0, 53,  0, 56, 0, 0,
    0, 0, // padding to a multiple of 4
    // extended switch: format 1001, length 16
    0, 0, 0x03, 0xe9,  0, 0, 0, 16,  0, 0, 0, 12,  0, 0, 0, 0,  0, 0, 0, 12,  0, 0, 0, 0,
];

#[test]
fn hand_built_flow_datagram_decodes_every_field() {
    let mut dec = SflowDecoder::new();
    let (result, sink) = decode(&mut dec, &FLOW_DATAGRAM);
    assert_eq!(result, Ok(1));
    assert_eq!(sink.flows.len(), 1);
    let r = &sink.flows[0];
    assert_eq!(r.flow_type, FlowType::SflowV5 as u8);
    assert_eq!(r.exporter_addr, ipv4_bytes([10, 0, 0, 254]));
    assert_eq!(r.exporter_port, 40001);
    assert_eq!(r.observation_domain_id, 0);
    assert_eq!(r.observation_point_id, 5);
    assert_eq!(r.sampler_id, 5);
    // The datagram's sequence number (goflow2's `sequence_num`), not the sample's (9).
    assert_eq!(r.sequence_num, 42);
    assert_eq!(r.sampling_rate, 400);
    assert_eq!((r.in_if, r.in_if_format), (5, 0));
    assert_eq!((r.out_if, r.out_if_format), (0x3fff_ffff, 0));
    assert_eq!((r.bytes, r.packets), (90, 1));
    assert_eq!(r.time_received_ns, meta().received_ns);
    assert_eq!(r.time_flow_start_ns, meta().received_ns);
    assert_eq!(r.time_flow_end_ns, meta().received_ns);
    assert_eq!(r.src_mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(r.dst_mac, [2, 0, 0, 0, 0, 2]);
    assert_eq!(r.etype, 0x0800);
    assert_eq!(r.src_addr, ipv4_bytes([10, 1, 1, 1]));
    assert_eq!(r.dst_addr, ipv4_bytes([10, 2, 2, 2]));
    assert_eq!(
        (r.proto, r.ip_ttl, r.src_port, r.dst_port),
        (17, 61, 4000, 53)
    );
    assert_eq!(r.vlan_id, 12);
    assert_eq!(dec.stats().datagrams, 1);
    assert_eq!(dec.stats().samples_by_type, [1, 0, 0, 0]);
}

#[test]
fn decoder_dispatch_counts_sflow() {
    let mut decoder = Decoder::new();
    let mut sink = Collected::default();
    assert_eq!(Protocol::detect(&FLOW_DATAGRAM), Ok(Protocol::SflowV5));
    decoder.decode(&meta(), &FLOW_DATAGRAM, &mut sink).unwrap();
    assert_eq!(decoder.stats.records[Protocol::SflowV5.index()], 1);
}

#[test]
fn truncated_datagram_at_every_offset_is_a_named_error() {
    for cut in 0..FLOW_DATAGRAM.len() {
        let mut dec = SflowDecoder::new();
        let (result, sink) = decode(&mut dec, &FLOW_DATAGRAM[..cut]);
        let expected = match cut {
            0..28 => ErrorReason::TruncatedHeader,
            // One sample announced: it needs at least its 8-byte framing.
            28..36 => ErrorReason::BadSampleCount,
            _ => ErrorReason::BadSampleLength,
        };
        assert_eq!(result, Err(expected), "cut at {cut}");
        assert!(sink.flows.is_empty());
    }
}

#[test]
fn sample_length_past_the_datagram_and_shorter_than_fixed_part() {
    let mut long = FLOW_DATAGRAM;
    long[35] = 128;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &long).0,
        Err(ErrorReason::BadSampleLength)
    );
    let mut huge = FLOW_DATAGRAM;
    huge[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode(&mut SflowDecoder::new(), &huge).0,
        Err(ErrorReason::BadSampleLength)
    );
    // Shorter than the 32-byte fixed part of a flow sample (the rest becomes trailing bytes).
    let mut short = FLOW_DATAGRAM;
    short[35] = 28;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &short).0,
        Err(ErrorReason::BadSampleLength)
    );
}

#[test]
fn record_lengths_that_lie_are_bad_record_length() {
    // Raw header record claims more than the sample holds.
    let mut long = FLOW_DATAGRAM;
    long[75] = 200;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &long).0,
        Err(ErrorReason::BadRecordLength)
    );
    // Raw header record shorter than its 16-byte fixed part (the sample length stays consistent:
    // the remaining bytes fail as the next record's framing).
    let mut short = FLOW_DATAGRAM;
    short[75] = 12;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &short).0,
        Err(ErrorReason::BadRecordLength)
    );
    // header_length larger than the record.
    let mut header = FLOW_DATAGRAM;
    header[91] = 60;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &header).0,
        Err(ErrorReason::BadRecordLength)
    );
    // Record count that cannot fit.
    let mut count = FLOW_DATAGRAM;
    count[64..68].copy_from_slice(&0x4000_0000u32.to_be_bytes());
    assert_eq!(
        decode(&mut SflowDecoder::new(), &count).0,
        Err(ErrorReason::BadSampleCount)
    );
    // Record count one more than present: the framing of the missing one runs out.
    let mut count = FLOW_DATAGRAM;
    count[67] = 3;
    assert_eq!(
        decode(&mut SflowDecoder::new(), &count).0,
        Err(ErrorReason::BadRecordLength)
    );
}

#[test]
fn zero_and_huge_sample_counts() {
    let mut dec = SflowDecoder::new();
    let mut zero = FLOW_DATAGRAM[..28].to_vec();
    zero[27] = 0;
    let (result, sink) = decode(&mut dec, &zero);
    assert_eq!(result, Ok(0));
    assert!(sink.flows.is_empty());
    assert_eq!(dec.stats().datagrams, 1);
    for count in [2u32, 1_000, 0x7fff_ffff, u32::MAX] {
        let mut huge = FLOW_DATAGRAM;
        huge[24..28].copy_from_slice(&count.to_be_bytes());
        let (result, sink) = decode(&mut SflowDecoder::new(), &huge);
        assert_eq!(
            result,
            Err(if count == 2 {
                ErrorReason::BadSampleLength
            } else {
                ErrorReason::BadSampleCount
            }),
            "count {count}"
        );
        assert!(
            count != 2 || sink.flows.len() == 1,
            "the first sample is kept"
        );
    }
}

#[test]
fn unknown_samples_and_records_are_skipped_and_counted_by_type() {
    let datagram = DatagramRepr {
        header: header_v4(1),
        samples: vec![
            SampleRepr::Other {
                format: 5,
                body: vec![1, 2, 3, 4],
            },
            SampleRepr::Other {
                format: 4413 << 12 | 1,
                body: vec![],
            },
            SampleRepr::Flow(FlowSampleRepr {
                records: vec![
                    FlowRecordRepr::Other {
                        format: 1031,
                        body: vec![0; 12],
                    },
                    FlowRecordRepr::Vni {
                        egress: false,
                        vni: 77,
                    },
                ],
                ..flow_sample(1)
            }),
            SampleRepr::Counters(CounterSampleRepr {
                expanded: false,
                sequence: 1,
                source: SourceId { kind: 0, index: 3 },
                records: vec![
                    CounterRecordRepr::Other {
                        format: 2000,
                        body: vec![0; 40],
                    },
                    CounterRecordRepr::Other {
                        format: 2000,
                        body: vec![],
                    },
                    CounterRecordRepr::PortName(b"eth0".to_vec()),
                ],
            }),
            SampleRepr::Other {
                format: 5,
                body: vec![],
            },
        ],
    }
    .to_bytes();
    let mut dec = SflowDecoder::new();
    let (result, sink) = decode(&mut dec, &datagram);
    assert_eq!(result, Ok(2));
    assert_eq!(sink.flows[0].tunnel_key, 77);
    assert_eq!(sink.counters[0].body(), CounterBody::PortName(b"eth0"));
    let stats = dec.stats();
    assert_eq!(stats.unknown_sample_types.get(5), 2);
    assert_eq!(stats.unknown_sample_types.get(4413 << 12 | 1), 1);
    assert_eq!(stats.unknown_flow_records.get(1031), 1);
    assert_eq!(stats.unknown_counter_records.get(2000), 2);
    assert_eq!(stats.samples_by_type, [1, 1, 0, 0]);
}

#[test]
fn format_counts_overflow_into_other() {
    let mut counts = FormatCounts::default();
    for f in 0..10 {
        counts.count(100 + f);
    }
    counts.count(100);
    assert_eq!(counts.get(100), 2);
    assert_eq!(counts.other, 2);
    assert_eq!(counts.total(), 11);
    assert_eq!(counts.iter().count(), 8);
}

fn header_v4(sequence: u32) -> HeaderRepr {
    HeaderRepr {
        agent: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1)),
        sub_agent_id: 2,
        sequence,
        uptime_ms: 10_000_000 + sequence,
    }
}

fn flow_sample(sequence: u32) -> FlowSampleRepr {
    FlowSampleRepr {
        expanded: false,
        sequence,
        source: SourceId { kind: 0, index: 7 },
        sampling_rate: 400,
        sample_pool: sequence * 400,
        drops: 0,
        input: Interface::Index(7),
        output: Interface::Index(8),
        records: Vec::new(),
    }
}

fn datagram(sequence: u32, samples: Vec<SampleRepr>) -> Vec<u8> {
    DatagramRepr {
        header: header_v4(sequence),
        samples,
    }
    .to_bytes()
}

#[test]
fn sequence_tracking_per_agent_and_per_source() {
    let mut dec = SflowDecoder::new();
    let flow = |seq| SampleRepr::Flow(flow_sample(seq));
    // Datagrams 1, 2, 5 (3 and 4 lost); samples 1, 2, 3, then 10 (6 lost).
    decode(&mut dec, &datagram(1, vec![flow(1)])).0.unwrap();
    decode(&mut dec, &datagram(2, vec![flow(2), flow(3)]))
        .0
        .unwrap();
    decode(&mut dec, &datagram(5, vec![flow(10)])).0.unwrap();
    // Another agent is a separate space.
    let other = DatagramRepr {
        header: HeaderRepr {
            agent: "2001:db8::1".parse().unwrap(),
            ..header_v4(100)
        },
        samples: vec![flow(500)],
    }
    .to_bytes();
    decode(&mut dec, &other).0.unwrap();
    let agents: Vec<_> = dec.agents().collect();
    assert_eq!(agents.len(), 2);
    let a = agents
        .iter()
        .find(|a| a.agent_addr == ipv4_bytes([172, 16, 0, 1]))
        .unwrap();
    assert_eq!(a.sub_agent_id, 2);
    assert_eq!(a.datagrams.lost, 2);
    assert_eq!(a.samples.lost, 6);
    assert_eq!(a.sources, 1);
    let b = agents.iter().find(|a| a.agent_addr[0] == 0x20).unwrap();
    assert_eq!((b.datagrams.lost, b.samples.lost), (0, 0));

    // The agent restarts: uptime goes back, sequences start again. No loss is invented.
    let restarted = DatagramRepr {
        header: HeaderRepr {
            uptime_ms: 1_000,
            ..header_v4(1)
        },
        samples: vec![flow(1)],
    }
    .to_bytes();
    decode(&mut dec, &restarted).0.unwrap();
    let a = dec
        .agents()
        .find(|a| a.agent_addr == ipv4_bytes([172, 16, 0, 1]))
        .unwrap();
    assert_eq!(a.datagrams.restarts, 1);
    assert_eq!(a.samples.restarts, 1);
    assert_eq!((a.datagrams.lost, a.samples.lost), (2, 6));
}

/// Many more agents than agent-cache slots (so slots collide and are overwritten), interleaved, with
/// sub-agents sharing an address: every agent keeps its own sequence spaces, no loss is invented,
/// and a real gap is charged to the right agent only.
#[test]
fn interleaved_agents_beyond_the_agent_cache_keep_their_own_sequences() {
    let mut dec = SflowDecoder::new();
    let agents = 3 * AGENT_CACHE_SLOTS as u32;
    let header = |agent: u32, sequence: u32| HeaderRepr {
        agent: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + agent / 2)),
        sub_agent_id: agent % 2,
        sequence,
        uptime_ms: 50_000 + sequence,
    };
    for sequence in 1..=4u32 {
        for agent in 0..agents {
            // Agent 77 skips its datagram 3 (one lost datagram, one lost sample).
            if agent == 77 && sequence == 3 {
                continue;
            }
            let bytes = DatagramRepr {
                header: header(agent, sequence),
                samples: vec![SampleRepr::Flow(flow_sample(sequence))],
            }
            .to_bytes();
            decode(&mut dec, &bytes).0.unwrap();
        }
    }
    let seen: Vec<_> = dec.agents().collect();
    assert_eq!(seen.len(), agents as usize);
    let lossy = ipv4_bytes(Ipv4Addr::from(0x0a00_0000 + 77 / 2).octets());
    for a in &seen {
        let expect = if a.agent_addr == lossy && a.sub_agent_id == 1 {
            1
        } else {
            0
        };
        assert_eq!((a.datagrams.lost, a.samples.lost), (expect, expect));
        assert_eq!((a.datagrams.late, a.datagrams.restarts), (0, 0));
        assert_eq!(a.sources, 1);
    }
    assert_eq!(dec.stats().untracked, 0);
}

#[test]
fn flow_and_counter_samples_of_one_source_are_separate_spaces_and_drops_are_counted() {
    let mut dec = SflowDecoder::new();
    let counters = |seq| {
        SampleRepr::Counters(CounterSampleRepr {
            expanded: false,
            sequence: seq,
            source: SourceId { kind: 0, index: 7 },
            records: vec![],
        })
    };
    let flow = |seq, drops| {
        SampleRepr::Flow(FlowSampleRepr {
            drops,
            ..flow_sample(seq)
        })
    };
    decode(&mut dec, &datagram(1, vec![flow(100, 5), counters(1)]))
        .0
        .unwrap();
    decode(&mut dec, &datagram(2, vec![flow(101, 5), counters(2)]))
        .0
        .unwrap();
    decode(&mut dec, &datagram(3, vec![flow(102, 9), counters(3)]))
        .0
        .unwrap();
    let a = dec.agents().next().unwrap();
    assert_eq!(a.sources, 2);
    assert_eq!(a.samples.lost, 0);
    assert_eq!(a.drops, 4);
    assert_eq!(dec.stats().agent_drops, 4);
}

/// Datagram `d` (sequence `d + 1`) of agent 172.16.0.1 carrying, for each source index in
/// `sources`, `per_source` flow samples numbered from `d * per_source + 1`, the sources' samples
/// interleaved; compact samples (the fast path) or expanded ones (the general path).
fn run_datagram(d: u32, sources: &[u32], per_source: u32, expanded: bool) -> Vec<u8> {
    let samples = (0..per_source)
        .flat_map(|i| {
            sources.iter().map(move |&index| {
                SampleRepr::Flow(FlowSampleRepr {
                    expanded,
                    source: SourceId { kind: 0, index },
                    ..flow_sample(d * per_source + 1 + i)
                })
            })
        })
        .collect();
    datagram(d + 1, samples)
}

#[test]
fn a_late_datagram_gives_back_its_samples_loss_and_is_not_a_restart() {
    // 5 samples per datagram and source, datagram 3 delivered last: it is late once per source,
    // its samples' loss is given back, and its in-order samples are no run of late datagrams
    // (RESTART_RUN). One source or two interleaved; fast path or general path.
    for (sources, expanded) in [
        (&[7][..], false),
        (&[7][..], true),
        (&[7, 9][..], false),
        (&[7, 9][..], true),
    ] {
        let mut dec = SflowDecoder::new();
        for d in [0, 1, 2, 4, 5, 6, 7, 3] {
            decode(&mut dec, &run_datagram(d, sources, 5, expanded))
                .0
                .unwrap();
        }
        let case = format!("sources {sources:?}, expanded {expanded}");
        let a = dec.agents().next().unwrap();
        assert_eq!(a.sources, sources.len(), "{case}");
        let late = sources.len() as u64;
        assert_eq!(
            (a.samples.lost, a.samples.late, a.samples.restarts),
            (0, late, 0),
            "{case}"
        );
        assert_eq!(
            (a.datagrams.lost, a.datagrams.late, a.datagrams.restarts),
            (0, 1, 0),
            "{case}"
        );
        // The sources go on in order after it.
        decode(&mut dec, &run_datagram(8, sources, 5, expanded))
            .0
            .unwrap();
        let a = dec.agents().next().unwrap();
        assert_eq!(
            (a.samples.lost, a.samples.late, a.samples.restarts),
            (0, late, 0),
            "{case}"
        );

        // Dropped instead, datagram 3's samples stay lost.
        let mut dec = SflowDecoder::new();
        for d in [0, 1, 2, 4, 5, 6, 7] {
            decode(&mut dec, &run_datagram(d, sources, 5, expanded))
                .0
                .unwrap();
        }
        let a = dec.agents().next().unwrap();
        assert_eq!(
            (a.samples.lost, a.samples.late, a.samples.restarts),
            (5 * late, 0, 0),
            "{case}"
        );
    }
}

#[test]
fn an_agent_reboot_is_still_a_sample_restart() {
    for expanded in [false, true] {
        let mut dec = SflowDecoder::new();
        for d in 0..4 {
            decode(&mut dec, &run_datagram(d, &[7], 5, expanded))
                .0
                .unwrap();
        }
        // Uptime and sequences start again: samples 1..=5 in datagram 1.
        let reboot = DatagramRepr {
            header: HeaderRepr {
                uptime_ms: 2_000,
                ..header_v4(1)
            },
            samples: (1..=5)
                .map(|seq| {
                    SampleRepr::Flow(FlowSampleRepr {
                        expanded,
                        ..flow_sample(seq)
                    })
                })
                .collect(),
        };
        decode(&mut dec, &reboot.to_bytes()).0.unwrap();
        let a = dec.agents().next().unwrap();
        assert_eq!(
            (a.samples.lost, a.samples.late, a.samples.restarts),
            (0, 0, 1),
            "expanded {expanded}"
        );
        assert_eq!(a.datagrams.restarts, 1);
    }
    // Without the uptime going back, a sample sequence far behind is a restart too.
    let mut dec = SflowDecoder::new();
    let far = |d: u32, first: u32| {
        datagram(
            d,
            (first..first + 5)
                .map(|seq| SampleRepr::Flow(flow_sample(seq)))
                .collect(),
        )
    };
    decode(&mut dec, &far(1, 5_000_000)).0.unwrap();
    decode(&mut dec, &far(2, 5_000_005)).0.unwrap();
    decode(&mut dec, &far(3, 1)).0.unwrap();
    decode(&mut dec, &far(4, 6)).0.unwrap();
    let a = dec.agents().next().unwrap();
    assert_eq!(
        (a.samples.lost, a.samples.late, a.samples.restarts),
        (0, 0, 1)
    );
}

#[test]
fn sample_runs_of_changing_length_are_judged_as_sflow_numbers_them() {
    // Runs of 2, 2, then 3 samples lost before a run of 5: the gap (3) equals what a numbering by
    // the last unit would expect (the previous run's first + 5), and must not be learned as one:
    // the runs after it, in order, count nothing.
    let mut dec = SflowDecoder::new();
    let run = |d: u32, first: u32, n: u32| {
        datagram(
            d,
            (first..first + n)
                .map(|seq| SampleRepr::Flow(flow_sample(seq)))
                .collect(),
        )
    };
    for (d, first, n) in [
        (1, 1, 2),
        (2, 3, 2),
        (3, 8, 5),
        (4, 13, 3),
        (5, 16, 1),
        (6, 17, 4),
    ] {
        decode(&mut dec, &run(d, first, n)).0.unwrap();
    }
    let a = dec.agents().next().unwrap();
    assert_eq!(
        (a.samples.lost, a.samples.late, a.samples.restarts),
        (3, 0, 0)
    );
}

#[test]
fn more_sources_in_a_datagram_than_open_runs_are_all_tracked() {
    // Each datagram carries 3 samples of each of MAX_RUNS + 3 sources, interleaved; datagram 2
    // arrives after 3.
    let sources: Vec<u32> = (1..=MAX_RUNS as u32 + 3).collect();
    let mut dec = SflowDecoder::new();
    for d in [0, 1, 3, 2, 4] {
        decode(&mut dec, &run_datagram(d, &sources, 3, false))
            .0
            .unwrap();
    }
    let a = dec.agents().next().unwrap();
    assert_eq!(a.sources, sources.len());
    // The first MAX_RUNS sources' samples are judged as runs (late once each); the others' one
    // by one (late three times each, a run of late samples too short for a restart).
    assert_eq!(
        (a.samples.lost, a.samples.late, a.samples.restarts),
        (0, MAX_RUNS as u64 + 3 * 3, 0)
    );
}

#[test]
fn expanded_samples_keep_full_source_index_and_interface_formats() {
    let sample = FlowSampleRepr {
        expanded: true,
        source: SourceId {
            kind: 2,
            index: 0x0123_4567,
        },
        input: Interface::Discarded(0x102),
        output: Interface::Multiple(4),
        ..flow_sample(3)
    };
    let bytes = datagram(1, vec![SampleRepr::Flow(sample)]);
    let mut dec = SflowDecoder::new();
    let (result, sink) = decode(&mut dec, &bytes);
    assert_eq!(result, Ok(1));
    let r = &sink.flows[0];
    assert_eq!(r.sampler_id, 0x0123_4567);
    assert_eq!(r.observation_point_id, 2 << 24 | 0x23_4567);
    assert_eq!((r.in_if_format, r.in_if), (1, 0x102));
    assert_eq!((r.out_if_format, r.out_if), (2, 4));
    assert_eq!(dec.stats().samples_by_type, [0, 0, 1, 0]);

    // The compact form of the same interfaces.
    let sample = FlowSampleRepr {
        input: Interface::Discarded(0x102),
        output: Interface::Multiple(4),
        ..flow_sample(3)
    };
    let (_, sink) = decode(
        &mut SflowDecoder::new(),
        &datagram(1, vec![SampleRepr::Flow(sample)]),
    );
    assert_eq!(
        (sink.flows[0].in_if_format, sink.flows[0].in_if),
        (1, 0x102)
    );
    assert_eq!((sink.flows[0].out_if_format, sink.flows[0].out_if), (2, 4));
}

#[test]
fn counter_samples_produce_one_record_per_counter_record() {
    let generic = GenericInterfaceCounters {
        if_index: 12,
        if_speed: 25_000_000_000,
        in_octets: 123_456_789_012,
        ..Default::default()
    };
    let sample = CounterSampleRepr {
        expanded: true,
        sequence: 77,
        source: SourceId {
            kind: 0,
            index: 0x0200_0000,
        },
        records: vec![
            CounterRecordRepr::GenericInterface(generic),
            CounterRecordRepr::Vlan(VlanCounters {
                vlan_id: 4,
                octets: 9,
                ..Default::default()
            }),
            CounterRecordRepr::Processor(ProcessorCounters {
                cpu_5s: 50,
                ..Default::default()
            }),
            CounterRecordRepr::Lacp(LacpCounters {
                attached_agg_id: 3,
                ..Default::default()
            }),
            CounterRecordRepr::OvsDatapath(OvsDatapathCounters {
                n_flows: 33,
                ..Default::default()
            }),
        ],
    };
    let mut dec = SflowDecoder::new();
    let (result, sink) = decode(&mut dec, &datagram(4, vec![SampleRepr::Counters(sample)]));
    assert_eq!(result, Ok(5));
    assert_eq!(sink.counters.len(), 5);
    let first = &sink.counters[0];
    assert_eq!(first.agent_addr, ipv4_bytes([172, 16, 0, 1]));
    assert_eq!(first.sub_agent_id, 2);
    assert_eq!(first.sequence_num, 77);
    assert_eq!(first.source_index, 0x0200_0000);
    assert_eq!(first.if_index, 12);
    assert_eq!(first.sample_type, 4);
    assert_eq!(first.agent_uptime_ms, 10_000_004);
    assert_eq!(first.exporter_port, 40001);
    assert_eq!(first.time_received_ns, meta().received_ns);
    assert_eq!(first.body(), CounterBody::GenericInterface(&generic));
    assert_eq!(sink.counters[1].if_index, 0x0200_0000);
    assert!(
        matches!(sink.counters[1].body(), CounterBody::Vlan(v) if v.vlan_id == 4 && v.octets == 9)
    );
    assert!(matches!(sink.counters[2].body(), CounterBody::Processor(p) if p.cpu_5s == 50));
    assert!(matches!(sink.counters[3].body(), CounterBody::Lacp(l) if l.attached_agg_id == 3));
    assert!(matches!(sink.counters[4].body(), CounterBody::OvsDatapath(d) if d.n_flows == 33));
}

#[test]
fn ovs_profile_datagrams_fit_and_decode_with_tunnel_fields() {
    let mut exporter = OvsExporter::new(Ipv4Addr::new(192, 168, 10, 11), 9);
    let mut dec = SflowDecoder::new();
    let mut flows = Vec::new();
    let mut sent = 0;
    for _ in 0..50 {
        let mut buf = Vec::new();
        let n = exporter.flow_datagram(&mut buf);
        assert!(buf.len() <= 1400, "datagram of {} bytes", buf.len());
        assert!(n >= 4, "only {n} samples packed");
        sent += n;
        let (result, sink) = decode(&mut dec, &buf);
        assert_eq!(result, Ok(n));
        flows.extend(sink.flows);
    }
    assert_eq!(flows.len(), sent);
    let a = dec.agents().next().unwrap();
    assert_eq!(
        (a.datagrams.lost, a.samples.lost, a.samples.late),
        (0, 0, 0)
    );
    assert!(
        flows
            .iter()
            .all(|f| f.sampling_rate == 400 && f.bytes >= 64 && f.src_port != 0)
    );
    let tunneled: Vec<_> = flows.iter().filter(|f| f.tunnel_key != 0).collect();
    assert!(!tunneled.is_empty());
    for f in &tunneled {
        assert_eq!(
            (f.tunnel_proto, f.tunnel_dst_port, f.tunnel_type),
            (17, 6081, 7)
        );
        assert!(
            f.tunnel_src_addr == ipv4_bytes([192, 168, 10, 11])
                || f.tunnel_dst_addr == ipv4_bytes([192, 168, 10, 11])
        );
    }
    assert!(flows.iter().any(|f| f.etype == 0x86dd));
    assert!(flows.iter().any(|f| f.vlan_id == 100));
    assert!(flows.iter().any(|f| f.out_if_format == 2));

    let mut counters = Vec::new();
    for bytes in exporter.counter_datagrams() {
        assert!(bytes.len() <= 1400);
        let (result, sink) = decode(&mut dec, &bytes);
        assert!(result.is_ok());
        counters.extend(sink.counters);
    }
    // 5 ports × 4 records + the bridge's 2.
    assert_eq!(counters.len(), 22);
    let names: Vec<_> = counters
        .iter()
        .filter_map(|c| match c.body() {
            CounterBody::PortName(n) => Some(n.to_vec()),
            _ => None,
        })
        .collect();
    assert!(names.contains(&b"genev_sys_6081".to_vec()));
    assert!(
        counters
            .iter()
            .any(|c| matches!(c.body(), CounterBody::AppResources(_)))
    );
    assert!(
        counters
            .iter()
            .any(|c| matches!(c.body(), CounterBody::OpenflowPort(p) if p.port_no == 2))
    );
}

#[test]
fn ovs_seed_datagrams_all_decode() {
    let seeds = ovs_sample_datagrams();
    assert!(seeds.len() >= 10);
    let mut dec = SflowDecoder::new();
    let mut flows = 0;
    let mut counters = 0;
    for bytes in &seeds {
        assert!(bytes.len() <= 1400);
        let (result, sink) = decode(&mut dec, bytes);
        assert_eq!(result, Ok(sink.flows.len() + sink.counters.len()));
        flows += sink.flows.len();
        counters += sink.counters.len();
    }
    assert!(
        flows > 20 && counters > 40,
        "{flows} flows, {counters} counters"
    );
    assert_eq!(dec.stats().samples_by_type[2], 1);
    assert_eq!(dec.stats().samples_by_type[3], 1);
}

// --- property tests -------------------------------------------------------------------------

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        proptest::option::of(1u16..4095),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<(u16, u16)>(),
        0usize..200,
        any::<bool>(),
    )
        .prop_map(
            |(dst_mac, src_mac, vlan, src, dst, ports, payload_len, tcp)| Frame {
                dst_mac,
                src_mac,
                vlans: vlan.into_iter().collect(),
                mpls: Vec::new(),
                network: Network::Ipv4 {
                    src,
                    dst,
                    options_len: 0,
                    fragment_offset: 0,
                },
                proto: if tcp { 6 } else { 17 },
                tos: 0,
                ttl: 64,
                transport: Transport::Ports {
                    src: ports.0,
                    dst: ports.1,
                    tcp_flags: if tcp { 0x12 } else { 0 },
                },
                payload_len,
            },
        )
}

#[derive(Clone, Debug)]
struct FlowCase {
    sample: FlowSampleRepr,
    frame: Frame,
    frame_length: u32,
    vni: Option<u32>,
    tunnel: Option<([u8; 4], [u8; 4])>,
    gateway: Option<(u32, Vec<u32>)>,
}

fn arb_interface() -> impl Strategy<Value = Interface> {
    prop_oneof![
        (0u32..0x4000_0000).prop_map(Interface::Index),
        (0u32..0x4000_0000).prop_map(Interface::Discarded),
        (0u32..0x4000_0000).prop_map(Interface::Multiple),
    ]
}

fn arb_flow_case() -> impl Strategy<Value = FlowCase> {
    (
        any::<bool>(),
        any::<u32>(),
        (0u32..4, any::<u32>()),
        1u32..100_000,
        any::<u32>(),
        arb_interface(),
        arb_interface(),
        arb_frame(),
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<[u8; 4]>(), any::<[u8; 4]>())),
        proptest::option::of((any::<u32>(), proptest::collection::vec(any::<u32>(), 1..5))),
        16usize..=128,
    )
        .prop_map(
            |(
                expanded,
                sequence,
                (kind, index),
                rate,
                drops,
                input,
                output,
                frame,
                vni,
                tunnel,
                gateway,
                snap,
            )| {
                let index = if expanded { index } else { index & 0xff_ffff };
                let mut bytes = Vec::new();
                frame.emit(&mut bytes);
                let frame_length = bytes.len() as u32;
                bytes.truncate(snap);
                let mut records = vec![FlowRecordRepr::RawHeader {
                    protocol: 1,
                    frame_length,
                    stripped: 4,
                    header: bytes,
                }];
                if let Some(vni) = vni {
                    records.push(FlowRecordRepr::Vni {
                        egress: vni % 2 == 0,
                        vni,
                    });
                }
                if let Some((src, dst)) = tunnel {
                    records.push(FlowRecordRepr::Ipv4Tunnel {
                        egress: true,
                        outer: SampledIpv4 {
                            length: 100,
                            protocol: 17,
                            src,
                            dst,
                            src_port: 1,
                            dst_port: 4789,
                            tcp_flags: 0,
                            tos: 0,
                        },
                    });
                }
                if let Some((src_as, path)) = &gateway {
                    records.push(FlowRecordRepr::Gateway {
                        next_hop: None,
                        router_as: 1,
                        src_as: *src_as,
                        src_peer_as: 2,
                        as_path: vec![super::flow_records::AsPathSegment {
                            kind: 2,
                            ases: path.clone(),
                        }],
                        communities: vec![],
                        local_pref: 100,
                    });
                }
                FlowCase {
                    sample: FlowSampleRepr {
                        expanded,
                        sequence,
                        source: SourceId { kind, index },
                        sampling_rate: rate,
                        sample_pool: rate,
                        drops,
                        input,
                        output,
                        records,
                    },
                    frame,
                    frame_length,
                    vni,
                    tunnel,
                    gateway,
                }
            },
        )
}

proptest! {
    #[test]
    fn emit_then_decode_flow_samples(cases in proptest::collection::vec(arb_flow_case(), 0..6), v6 in any::<bool>(), sub in any::<u32>()) {
        let agent: IpAddr = if v6 { "2001:db8::5".parse().unwrap() } else { "198.51.100.5".parse().unwrap() };
        let bytes = DatagramRepr {
            header: HeaderRepr { agent, sub_agent_id: sub, sequence: 1, uptime_ms: 1 },
            samples: cases.iter().map(|c| SampleRepr::Flow(c.sample.clone())).collect(),
        }.to_bytes();
        let mut dec = SflowDecoder::new();
        let (result, sink) = decode(&mut dec, &bytes);
        prop_assert_eq!(result, Ok(cases.len()));
        prop_assert_eq!(sink.flows.len(), cases.len());
        for (case, r) in cases.iter().zip(&sink.flows) {
            let s = &case.sample;
            prop_assert_eq!(r.exporter_addr, addr_to_bytes(agent));
            prop_assert_eq!(r.observation_domain_id, sub);
            prop_assert_eq!(r.sequence_num, 1);
            prop_assert_eq!(r.sampler_id, s.source.index);
            prop_assert_eq!(r.observation_point_id, s.source.compact());
            prop_assert_eq!(r.sampling_rate, s.sampling_rate);
            prop_assert_eq!((u32::from(r.in_if_format), r.in_if), s.input.parts());
            prop_assert_eq!((u32::from(r.out_if_format), r.out_if), s.output.parts());
            prop_assert_eq!(r.bytes, u64::from(case.frame_length));
            prop_assert_eq!(r.src_mac, case.frame.src_mac);
            prop_assert_eq!(r.dst_mac, case.frame.dst_mac);
            // A short snap may cut the VLAN tag or the IP header; fields are filled where present.
            let snap = match &s.records[0] { FlowRecordRepr::RawHeader { header, .. } => header.len(), _ => 0 };
            let vlan = if snap >= 18 { case.frame.vlans.first().copied().unwrap_or(0) } else { 0 };
            prop_assert_eq!(r.vlan_id, vlan);
            if snap >= 14 + 4 * case.frame.vlans.len() + 20 + 4 {
                let Network::Ipv4 { src, dst, .. } = case.frame.network else { unreachable!() };
                prop_assert_eq!(r.src_addr, ipv4_bytes(src));
                prop_assert_eq!(r.dst_addr, ipv4_bytes(dst));
                let Transport::Ports { src, dst, .. } = case.frame.transport else { unreachable!() };
                prop_assert_eq!((r.src_port, r.dst_port), (src, dst));
            }
            prop_assert_eq!(r.tunnel_key, u64::from(case.vni.unwrap_or(0)));
            if let Some((src, dst)) = case.tunnel {
                prop_assert_eq!(r.tunnel_src_addr, ipv4_bytes(src));
                prop_assert_eq!(r.tunnel_dst_addr, ipv4_bytes(dst));
                prop_assert_eq!(r.tunnel_type, 1);
            }
            if let Some((src_as, path)) = &case.gateway {
                prop_assert_eq!(r.src_as, *src_as);
                prop_assert_eq!(r.dst_as, *path.last().unwrap());
            }
        }
    }

    #[test]
    fn emit_then_decode_ipv6_sampled_records(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), ports in any::<(u16, u16)>(), prio in any::<u8>()) {
        let sample = FlowSampleRepr {
            records: vec![
                FlowRecordRepr::Ipv6(SampledIpv6 { length: 1280, protocol: 6, src, dst, src_port: ports.0.into(), dst_port: ports.1.into(), tcp_flags: 0x11, priority: prio.into() }),
                FlowRecordRepr::Ipv6Tunnel { egress: false, outer: SampledIpv6 { protocol: 47, src: dst, dst: src, ..Default::default() } },
            ],
            ..flow_sample(1)
        };
        let (result, sink) = decode(&mut SflowDecoder::new(), &datagram(1, vec![SampleRepr::Flow(sample)]));
        prop_assert_eq!(result, Ok(1));
        let r = &sink.flows[0];
        prop_assert_eq!((r.src_addr, r.dst_addr), (src, dst));
        prop_assert_eq!((r.src_port, r.dst_port, r.tcp_flags, r.ip_tos), (ports.0, ports.1, 0x11, prio));
        prop_assert_eq!((r.etype, r.bytes, r.proto), (0x86dd, 1280, 6));
        prop_assert_eq!((r.tunnel_src_addr, r.tunnel_dst_addr, r.tunnel_type), (dst, src, 2));
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), agent6 in any::<bool>()) {
        // Make most inputs get past the header so the sample walk is exercised.
        if bytes.len() >= 8 {
            bytes[..4].copy_from_slice(&5u32.to_be_bytes());
            bytes[4..8].copy_from_slice(&(if agent6 { 2u32 } else { 1 }).to_be_bytes());
        }
        let mut dec = SflowDecoder::new();
        let (result, sink) = decode(&mut dec, &bytes);
        if let Ok(n) = result {
            prop_assert_eq!(n, sink.flows.len() + sink.counters.len());
        }
    }

    #[test]
    fn mutated_ovs_datagrams_never_panic(which in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let seeds = ovs_sample_datagrams();
        let mut bytes = which.get(&seeds).clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let mut dec = SflowDecoder::new();
        let (result, sink) = decode(&mut dec, &bytes);
        if let Ok(n) = result {
            prop_assert_eq!(n, sink.flows.len() + sink.counters.len());
        }
    }
}

// --- public corpus ----------------------------------------------------------------------------

/// `shared/corpus` found by walking up from the crate, or `COLLECTOR_CORPUS`.
fn corpus_dir() -> Option<std::path::PathBuf> {
    if let Ok(dir) = std::env::var("COLLECTOR_CORPUS") {
        return Some(dir.into());
    }
    let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/corpus");
        if candidate.join("MANIFEST.tsv").is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// UDP payloads of a classic little-endian pcap with Ethernet / IPv4 / UDP frames.
fn pcap_udp_payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if bytes.get(..4) != Some(&[0xd4, 0xc3, 0xb2, 0xa1]) {
        return out;
    }
    let mut at = 24;
    while let Some(rec) = bytes.get(at..at + 16) {
        let incl = u32::from_le_bytes(rec[8..12].try_into().unwrap()) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + incl) else {
            break;
        };
        at += 16 + incl;
        if frame.get(12..14) != Some(&[0x08, 0x00]) {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        if frame.get(14 + 9) != Some(&17) {
            continue;
        }
        if let Some(payload) = frame.get(14 + ihl + 8..) {
            out.push(payload.to_vec());
        }
    }
    out
}

#[test]
fn corpus_sflow_captures_decode_without_panics_and_agents_match_manifest() {
    let Some(dir) = corpus_dir() else {
        println!("SKIPPED: no shared/corpus (set COLLECTOR_CORPUS)");
        return;
    };
    let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST.tsv")) else {
        println!("SKIPPED: corpus has no readable MANIFEST.tsv");
        return;
    };
    let mut files = 0;
    let mut records = 0;
    for line in manifest.lines() {
        let cols: Vec<_> = line.split('\t').collect();
        if cols.len() < 8 || cols[4] != "sflow" || cols[7].starts_with("EXPECTED OUTPUT") {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join(cols[0])) else {
            continue;
        };
        let datagrams = if cols[7].starts_with("pcap capture") {
            pcap_udp_payloads(&bytes)
        } else {
            vec![bytes]
        };
        let agents: Vec<IpAddr> = cols[7]
            .split("sFlow agent(s): ")
            .nth(1)
            .map(|s| {
                s.split([',', ' ', ';'])
                    .filter_map(|a| a.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let malformed = !cols[7].contains("malformed=0");
        files += 1;
        for d in datagrams {
            let mut dec = SflowDecoder::new();
            let (result, sink) = decode(&mut dec, &d);
            if malformed {
                continue;
            }
            let n = result.unwrap_or_else(|e| panic!("{}: {e}", cols[0]));
            records += n;
            let header = super::datagram::Header::parse(&d).unwrap();
            if !agents.is_empty() {
                assert!(
                    agents.iter().any(|a| addr_to_bytes(*a) == header.agent),
                    "{}: agent not in manifest",
                    cols[0]
                );
            }
            for f in &sink.flows {
                assert_eq!(f.exporter_addr, header.agent);
                assert!(f.sampling_rate > 0, "{}", cols[0]);
            }
        }
    }
    assert!(files >= 10, "only {files} sFlow captures in the manifest");
    assert!(records > 0);
    println!("corpus: {files} sFlow files, {records} records");
}

/// Field values `tshark -d udp.port==6343,sflow -V` (4.0.17) prints for nDPI's `sflow.pcap`: the
/// first datagram (a counter sample) and the one flow sample (ICMP echo in VLAN 32).
#[test]
fn corpus_ndpi_capture_matches_tshark() {
    let Some(dir) = corpus_dir() else {
        println!("SKIPPED: no shared/corpus (set COLLECTOR_CORPUS)");
        return;
    };
    let Ok(bytes) = std::fs::read(dir.join("nDPI/tests/cfgs/default/pcap/sflow.pcap")) else {
        println!("SKIPPED: nDPI sflow.pcap not in the corpus");
        return;
    };
    let datagrams = pcap_udp_payloads(&bytes);
    assert_eq!(datagrams.len(), 9);
    let mut dec = SflowDecoder::new();
    let mut flows = Vec::new();
    let mut counters = Vec::new();
    for d in &datagrams {
        let (result, sink) = decode(&mut dec, d);
        assert_eq!(result, Ok(1));
        flows.extend(sink.flows);
        counters.extend(sink.counters);
    }
    assert_eq!((flows.len(), counters.len()), (1, 8));
    let c = &counters[0];
    assert_eq!(c.agent_addr, ipv4_bytes([172, 21, 35, 17]));
    assert_eq!(
        (c.sub_agent_id, c.sequence_num, c.source_index),
        (1, 8485, 1036)
    );
    assert_eq!(c.agent_uptime_ms, 1_732_106_000);
    let CounterBody::GenericInterface(g) = c.body() else {
        panic!("{:?}", c.body())
    };
    assert_eq!((g.if_index, g.if_type, g.if_speed), (1036, 6, 100_000_000));
    assert_eq!((g.if_direction, g.if_status), (1, 3));
    assert_eq!(
        (g.in_octets, g.in_ucast_pkts, g.in_mcast_pkts),
        (25_963_724, 39_811, 167_958)
    );
    assert_eq!(
        (g.in_bcast_pkts, g.out_octets, g.out_ucast_pkts),
        (128_627, 5_455_297, 41_143)
    );
    assert_eq!(
        (g.out_mcast_pkts, g.out_bcast_pkts, g.promiscuous_mode),
        (8_583, 2_263, 0)
    );

    let f = &flows[0];
    assert_eq!(f.exporter_addr, ipv4_bytes([172, 21, 35, 17]));
    // The datagram's sequence number (tshark's sflow_245.sequence_number), not the sample's (6).
    assert_eq!(
        (f.observation_domain_id, f.sequence_num, f.sampling_rate),
        (1, 418, 2048)
    );
    assert_eq!((f.in_if, f.out_if, f.out_if_format), (1048, 1043, 0));
    assert_eq!((f.bytes, f.packets), (82, 1));
    assert_eq!(f.src_mac, [0x00, 0x19, 0xb9, 0xdd, 0xb2, 0x64]);
    assert_eq!(f.dst_mac, [0x00, 0x1c, 0x23, 0x9f, 0x15, 0x0b]);
    assert_eq!((f.vlan_id, f.etype), (32, 0x0800));
    assert_eq!(f.src_addr, ipv4_bytes([172, 21, 32, 254]));
    assert_eq!(f.dst_addr, ipv4_bytes([172, 21, 32, 241]));
    assert_eq!((f.ip_ttl, f.proto, f.ip_tos), (124, 1, 0));
    assert_eq!((f.icmp_type, f.icmp_code), (8, 0));
    let a = dec.agents().next().unwrap();
    // Datagram sequence 415..=423 without gaps.
    assert_eq!(
        (a.datagrams.lost, a.datagrams.late, a.datagrams.restarts),
        (0, 0, 0)
    );
}

// --- fast path vs general path ----------------------------------------------------------------

/// Decode one flow sample body in a datagram of agent 203.0.113.7 with `uptime_ms`: through
/// `decode`'s sample loop (the fast path, falling back to the general one) when `fast`, through the
/// general path alone otherwise. Returns whether the fast path took the sample (tried first on a
/// copy of the decoder), and the result.
fn walk_flow_sample(
    dec: &mut SflowDecoder,
    body: &[u8],
    uptime_ms: u32,
    fast: bool,
    sink: &mut Collected,
) -> (bool, Result<usize, ErrorReason>) {
    let header = datagram::Header {
        agent: ipv4_bytes([203, 0, 113, 7]),
        sub_agent_id: 3,
        sequence: 0,
        uptime_ms,
        num_samples: 1,
        samples: &[],
    };
    let walk = |dec: &mut SflowDecoder, visit: &mut dyn FnMut(&mut DatagramWalk<'_>)| {
        let agent = dec.agent_index(header.agent, header.sub_agent_id, &meta());
        let SflowDecoder {
            stats,
            agents,
            runs,
            ..
        } = dec;
        let mut walk = DatagramWalk::new(
            stats,
            runs,
            agent.and_then(|a| agents.get_mut(a)),
            &header,
            &meta(),
        );
        visit(&mut walk);
        walk.finish();
    };
    if !fast {
        let mut result = Ok(0);
        walk(dec, &mut |w| result = w.flow_sample::<false>(body, sink));
        return (false, result);
    }
    let mut took = false;
    walk(&mut dec.clone(), &mut |w| {
        took = w
            .flow_sample_fast(body, &mut Collected::default())
            .is_some()
    });
    let mut framed = Vec::new();
    xdr::put_element(&mut framed, samples::format::FLOW, |out| {
        out.extend_from_slice(body)
    });
    let mut result = Ok(0);
    walk(dec, &mut |w| result = w.samples(1, &framed, sink));
    (took, result)
}

/// The body of a framed sample.
fn sample_body(sample: &SampleRepr) -> Vec<u8> {
    let mut framed = Vec::new();
    sample.emit(&mut framed);
    framed.split_off(xdr::ELEMENT_HEADER_LEN)
}

/// Records of the kinds the fast path takes (and a few it leaves to the general path): raw
/// headers of Ethernet frames (VLAN-tagged or not, IPv4 or IPv6, TCP, UDP or ICMP, cut anywhere),
/// other header protocols, extended switch, IPv4 tunnels, VNIs, and now and then a router record.
fn arb_ovs_record() -> impl Strategy<Value = FlowRecordRepr> {
    let frame = (
        arb_frame(),
        any::<bool>(),
        prop_oneof![Just(6u8), Just(17), Just(1)],
        any::<[u8; 16]>(),
        0usize..=140,
        prop_oneof![8 => Just(1u32), 1 => Just(11), 1 => Just(7)],
    )
        .prop_map(|(mut frame, v6, proto, addr, snap, protocol)| {
            frame.proto = proto;
            if proto == 1 {
                frame.transport = Transport::Icmp { kind: 8, code: 0 };
            }
            if v6 {
                frame.network = Network::Ipv6 {
                    src: addr,
                    dst: addr.map(|b| b ^ 0x5a),
                    flow_label: u32::from(addr[0]) << 12 | 7,
                    extensions: Vec::new(),
                };
            }
            let mut header = Vec::new();
            frame.emit(&mut header);
            let frame_length = header.len() as u32 + 4;
            header.truncate(snap);
            FlowRecordRepr::RawHeader {
                protocol,
                frame_length,
                stripped: 4,
                header,
            }
        });
    let tunnel = (
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        prop_oneof![Just(17u32), Just(47), Just(6)],
        any::<u16>(),
        prop_oneof![Just(6081u32), Just(4789), Just(53)],
    )
        .prop_map(|(egress, src, dst, protocol, src_port, dst_port)| {
            FlowRecordRepr::Ipv4Tunnel {
                egress,
                outer: SampledIpv4 {
                    length: 1500,
                    protocol,
                    src,
                    dst,
                    src_port: u32::from(src_port),
                    dst_port,
                    tcp_flags: 0,
                    tos: 0,
                },
            }
        });
    prop_oneof![
        4 => frame,
        3 => (0u32..5000, any::<u32>()).prop_map(|(src_vlan, dst_vlan)| FlowRecordRepr::Switch {
            src_vlan,
            src_priority: 0,
            dst_vlan,
            dst_priority: 0,
        }),
        2 => tunnel,
        2 => (any::<bool>(), any::<u32>()).prop_map(|(egress, vni)| FlowRecordRepr::Vni { egress, vni }),
        1 => Just(FlowRecordRepr::Router { next_hop: None, src_mask: 24, dst_mask: 16 }),
    ]
}

/// One compact flow sample of two sources, mostly in sequence with unchanged drops, then possibly
/// damaged: a byte flipped, cut short, or a record count that lies.
#[derive(Clone, Debug)]
struct SampleStep {
    body: Vec<u8>,
    uptime_step: u32,
}

/// Records laid out as OVS writes them (extended switch, raw header, then possibly a VNI and an
/// IPv4 tunnel record) — what `ovs_layout` takes — with now and then one record swapped for
/// another kind.
fn arb_ovs_layout() -> impl Strategy<Value = Vec<FlowRecordRepr>> {
    (
        proptest::collection::vec(arb_ovs_record(), 4),
        any::<bool>(),
        any::<[bool; 2]>(),
        prop_oneof![4 => Just(None), 1 => (0usize..4).prop_map(Some)],
    )
        .prop_map(|(mut any, tunnel, [vni_egress, egress], swap)| {
            let mut records = vec![
                FlowRecordRepr::Switch {
                    src_vlan: 100,
                    src_priority: 0,
                    dst_vlan: 0,
                    dst_priority: 0,
                },
                any.iter()
                    .find(|r| matches!(r, FlowRecordRepr::RawHeader { .. }))
                    .cloned()
                    .unwrap_or(FlowRecordRepr::RawHeader {
                        protocol: 1,
                        frame_length: 64,
                        stripped: 4,
                        header: vec![0; 14],
                    }),
            ];
            if tunnel {
                records.push(FlowRecordRepr::Vni {
                    egress: vni_egress,
                    vni: 5001,
                });
                records.push(FlowRecordRepr::Ipv4Tunnel {
                    egress,
                    outer: SampledIpv4 {
                        length: 1500,
                        protocol: 17,
                        src: [10, 0, 0, 1],
                        dst: [10, 0, 0, 2],
                        src_port: 50000,
                        dst_port: 6081,
                        tcp_flags: 0,
                        tos: 0,
                    },
                });
            }
            if let Some(at) = swap
                && at < records.len()
            {
                records[at] = any.swap_remove(at);
            }
            records
        })
}

fn arb_sample_steps() -> impl Strategy<Value = Vec<SampleStep>> {
    let step = (
        prop_oneof![
            proptest::collection::vec(arb_ovs_record(), 0..5),
            arb_ovs_layout()
        ],
        any::<bool>(),
        prop_oneof![8 => Just(0u32), 1 => 1u32..3, 1 => any::<u32>()],
        prop_oneof![8 => Just(0u32), 2 => 0u32..3],
        (arb_interface(), arb_interface()),
        prop_oneof![6 => Just(1000u32), 1 => Just(0), 1 => any::<u32>()],
        prop_oneof![
            8 => Just(None),
            1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, x)| Some((at, x, false))),
            1 => (any::<prop::sample::Index>(), Just(0u8)).prop_map(|(at, x)| Some((at, x, true))),
        ],
        prop_oneof![9 => Just(0u32), 1 => 1u32..4],
    );
    proptest::collection::vec(step, 1..12).prop_map(|steps| {
        let mut sequences = [100u32, 7];
        let mut drops = [0u32, 5];
        steps
            .into_iter()
            .map(
                |(records, second, jump, more_drops, (input, output), uptime_step, damage, lie)| {
                    let s = usize::from(second);
                    sequences[s] = sequences[s].wrapping_add(1).wrapping_add(jump);
                    drops[s] = drops[s].wrapping_add(more_drops);
                    let num_records = records.len() as u32;
                    let mut body = sample_body(&SampleRepr::Flow(FlowSampleRepr {
                        expanded: false,
                        sequence: sequences[s],
                        source: SourceId {
                            kind: if second { 3 } else { 0 },
                            index: if second { 0xab_cdef } else { 2 },
                        },
                        sampling_rate: 400,
                        sample_pool: sequences[s].wrapping_mul(400),
                        drops: drops[s],
                        input,
                        output,
                        records,
                    }));
                    if lie > 0 {
                        let count = num_records.wrapping_add(lie).to_be_bytes();
                        body[samples::field::flow::NUM_RECORDS..samples::field::flow::LEN]
                            .copy_from_slice(&count);
                    }
                    match damage {
                        Some((at, x, false)) => {
                            let at = at.index(body.len());
                            body[at] ^= x | 1;
                        }
                        Some((at, _, true)) => body.truncate(at.index(body.len() + 1)),
                        None => {}
                    }
                    SampleStep { body, uptime_step }
                },
            )
            .collect()
    })
}

proptest! {
    /// The fast path and the general path give byte-identical records, the same results and errors,
    /// the same counters and the same sequence state, sample after sample (so a broken fast path,
    /// general path or sequence shortcut each fail here).
    #[test]
    fn fast_path_matches_general_path(steps in arb_sample_steps()) {
        let (mut fast, mut general) = (SflowDecoder::new(), SflowDecoder::new());
        let mut uptime = 50_000u32;
        for step in &steps {
            uptime = uptime.wrapping_add(step.uptime_step);
            let (mut fast_sink, mut general_sink) = (Collected::default(), Collected::default());
            let (_, fast_result) = walk_flow_sample(&mut fast, &step.body, uptime, true, &mut fast_sink);
            let (_, general_result) = walk_flow_sample(&mut general, &step.body, uptime, false, &mut general_sink);
            prop_assert_eq!(fast_result, general_result);
            prop_assert_eq!(fast_sink.flows.len(), general_sink.flows.len());
            for (a, b) in fast_sink.flows.iter().zip(&general_sink.flows) {
                prop_assert_eq!(bytemuck::bytes_of(a), bytemuck::bytes_of(b));
            }
            prop_assert_eq!(fast.stats(), general.stats());
            prop_assert_eq!(fast.agents().collect::<Vec<_>>(), general.agents().collect::<Vec<_>>());
        }
    }
}

/// The fast path is not vacuous: it takes every flow sample the OVS profile sends, and the
/// records it gives are the general path's.
#[test]
fn fast_path_takes_every_ovs_flow_sample() {
    let mut exporter = OvsExporter::new(Ipv4Addr::new(10, 0, 0, 9), 77);
    let (mut fast, mut general) = (SflowDecoder::new(), SflowDecoder::new());
    let mut taken = 0;
    for i in 0..200u32 {
        let body = sample_body(&SampleRepr::Flow(exporter.next_flow_sample()));
        let (mut fast_sink, mut general_sink) = (Collected::default(), Collected::default());
        let (took, result) = walk_flow_sample(&mut fast, &body, 1000 + i, true, &mut fast_sink);
        assert!(took, "sample {i} left to the general path");
        let (h, records) = body
            .split_first_chunk::<{ samples::field::flow::LEN }>()
            .unwrap();
        let num_records = xdr::word(h, samples::field::flow::NUM_RECORDS);
        let mut laid_out = FlowRecord::zeroed();
        assert!(
            ovs_layout(records, num_records, &mut laid_out).is_some(),
            "sample {i} not in OVS's layout"
        );
        assert_eq!(result, Ok(1));
        walk_flow_sample(&mut general, &body, 1000 + i, false, &mut general_sink)
            .1
            .unwrap();
        assert_eq!(
            bytemuck::bytes_of(&fast_sink.flows[0]),
            bytemuck::bytes_of(&general_sink.flows[0])
        );
        taken += 1;
    }
    assert_eq!(taken, 200);
    assert_eq!(fast.stats(), general.stats());
    assert_eq!(
        fast.agents().collect::<Vec<_>>(),
        general.agents().collect::<Vec<_>>()
    );
}
