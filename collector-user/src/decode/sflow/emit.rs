//! Whole sFlow datagrams to send: the encoder half used by tests, benchmarks, fuzz seeds and the
//! load generator, including an exporter that sends like Open vSwitch ([`OvsExporter`]).
//!
//! [`DatagramRepr`] emits any mix of samples and records; [`OvsExporter`] builds datagrams the way
//! OVS does on an OpenShift / OVN-Kubernetes node (`OVS-EXPORTS.md`): compact flow samples at 1:400
//! with extended switch and a 128-byte raw Ethernet header and — for traffic to or from another node —
//! a VNI egress or ingress record with its IPv4 tunnel (Geneve, UDP 6081) record, in the order OVS
//! writes them; counter samples per port
//! with generic, Ethernet, OpenFlow port and port name records, plus a bridge sample with application
//! resources and OVS datapath counters; every datagram at most 1400 bytes.
//! [`ovs_sample_datagrams`] is a fixed set of such datagrams (fuzz seeds, benchmarks).

use super::counter_records::CounterRecordRepr;
use super::datagram::HeaderRepr;
use super::flow_records::{FlowRecordRepr, SampledIpv4};
use super::samples::{
    self, Interface, SourceId, emit_counter_sample_header, emit_flow_sample_header,
};
use super::xdr::put_element;
use crate::decode::packet_header::{Frame, Network, Transport, ip_proto};
use crate::record::counters::{
    AppResourcesCounters, EthernetCounters, GenericInterfaceCounters, OpenflowPortCounters,
    OvsDatapathCounters,
};
use std::net::{IpAddr, Ipv4Addr};

/// A flow sample to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSampleRepr {
    /// Expanded form (format 3) instead of compact (1).
    pub expanded: bool,
    pub sequence: u32,
    pub source: SourceId,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    pub drops: u32,
    pub input: Interface,
    pub output: Interface,
    pub records: Vec<FlowRecordRepr>,
}

/// A counter sample to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSampleRepr {
    /// Expanded form (format 4) instead of compact (2).
    pub expanded: bool,
    pub sequence: u32,
    pub source: SourceId,
    pub records: Vec<CounterRecordRepr>,
}

/// One sample of a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleRepr {
    Flow(FlowSampleRepr),
    Counters(CounterSampleRepr),
    /// Any other sample format, with its body bytes as given.
    Other {
        format: u32,
        body: Vec<u8>,
    },
}

impl SampleRepr {
    /// Append the framed sample to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            SampleRepr::Flow(s) => {
                let format = if s.expanded {
                    samples::format::EXPANDED_FLOW
                } else {
                    samples::format::FLOW
                };
                put_element(out, format, |out| {
                    emit_flow_sample_header(
                        out,
                        s.expanded,
                        s.sequence,
                        s.source,
                        s.sampling_rate,
                        s.sample_pool,
                        s.drops,
                        s.input,
                        s.output,
                        s.records.len() as u32,
                    );
                    for r in &s.records {
                        r.emit(out);
                    }
                });
            }
            SampleRepr::Counters(s) => {
                let format = if s.expanded {
                    samples::format::EXPANDED_COUNTERS
                } else {
                    samples::format::COUNTERS
                };
                put_element(out, format, |out| {
                    emit_counter_sample_header(
                        out,
                        s.expanded,
                        s.sequence,
                        s.source,
                        s.records.len() as u32,
                    );
                    for r in &s.records {
                        r.emit(out);
                    }
                });
            }
            SampleRepr::Other { format, body } => {
                put_element(out, *format, |out| out.extend_from_slice(body))
            }
        }
    }
}

/// A whole datagram to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatagramRepr {
    pub header: HeaderRepr,
    pub samples: Vec<SampleRepr>,
}

impl DatagramRepr {
    /// Append the datagram to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.header.emit(self.samples.len() as u32, out);
        for s in &self.samples {
            s.emit(out);
        }
    }

    /// The datagram as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// One port of the emulated OVS bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvsPort {
    pub port_no: u32,
    pub if_index: u32,
    pub name: Vec<u8>,
    pub mac: [u8; 6],
    pub speed: u64,
}

/// Geneve's UDP port (OVN-Kubernetes tunnels between nodes).
pub const GENEVE_PORT: u16 = 6081;

/// Emits datagrams like the sFlow agent of Open vSwitch on one cluster node.
#[derive(Clone, Debug)]
pub struct OvsExporter {
    pub agent: Ipv4Addr,
    pub sub_agent_id: u32,
    /// 1 in N packets (OVS default 400).
    pub sampling_rate: u32,
    /// Bytes of each sampled frame sent (OVS default 128).
    pub header_bytes: usize,
    /// Largest datagram (OVS default 1400).
    pub max_datagram: usize,
    pub datapath_id: u64,
    pub ports: Vec<OvsPort>,
    /// Addresses of the other nodes (tunnel endpoints).
    pub peers: Vec<Ipv4Addr>,
    datagram_sequence: u32,
    flow_sequence: u32,
    counter_sequence: u32,
    sample_pool: u32,
    uptime_ms: u32,
    rng: u64,
    /// An encoded flow sample that did not fit in the previous datagram.
    pending: Option<Vec<u8>>,
}

impl OvsExporter {
    /// A node with agent address `agent`; `seed` varies the sampled traffic.
    pub fn new(agent: Ipv4Addr, seed: u64) -> Self {
        let o = agent.octets();
        let port = |port_no: u32, if_index: u32, name: &str, speed: u64| OvsPort {
            port_no,
            if_index,
            name: name.as_bytes().to_vec(),
            mac: [0x0a, 0x58, o[2], o[3], 0, port_no as u8],
            speed,
        };
        OvsExporter {
            agent,
            sub_agent_id: 0,
            sampling_rate: 400,
            header_bytes: 128,
            max_datagram: 1400,
            datapath_id: u64::from(u32::from(agent)) << 16 | 1,
            ports: vec![
                port(1, 3, "genev_sys_6081", 0),
                port(2, 4, "ovn-k8s-mp0", 10_000_000_000),
                port(3, 7, "patch-br-int-to-br-ex", 0),
                port(4, 9, "a1b2c3d4e5f6a7b", 10_000_000_000),
                port(5, 10, "f0e1d2c3b4a5968", 10_000_000_000),
            ],
            peers: (1..=8)
                .map(|n| Ipv4Addr::new(o[0], o[1], o[2], n))
                .collect(),
            datagram_sequence: 0,
            flow_sequence: 0,
            counter_sequence: 0,
            sample_pool: 0,
            uptime_ms: 1_000_000,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            pending: None,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        let n = items.len() as u64;
        if n == 0 {
            return None;
        }
        let i = self.next_random() % n;
        items.get(i as usize).cloned()
    }

    /// The next sampled packet as OVS would report it.
    pub fn next_flow_sample(&mut self) -> FlowSampleRepr {
        let r = self.next_random();
        let pods = [
            [10, 128, (r >> 8) as u8 & 7, (r >> 16) as u8 | 1],
            [10, 129, (r >> 24) as u8 & 7, (r >> 32) as u8 | 1],
        ];
        let ipv6 = r.is_multiple_of(7);
        let tcp = !r.is_multiple_of(3);
        let frame_len = 64 + (self.next_random() % 1451) as usize;
        let network = if ipv6 {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..2].copy_from_slice(&[0xfd, 0x01]);
            dst[..2].copy_from_slice(&[0xfd, 0x01]);
            src[12..].copy_from_slice(&pods[0]);
            dst[12..].copy_from_slice(&pods[1]);
            Network::Ipv6 {
                src,
                dst,
                flow_label: (r >> 40) as u32 & 0xfffff,
                extensions: Vec::new(),
            }
        } else {
            Network::Ipv4 {
                src: pods[0],
                dst: pods[1],
                options_len: 0,
                fragment_offset: 0,
            }
        };
        let headers = 14 + if ipv6 { 40 } else { 20 } + if tcp { 20 } else { 8 };
        let frame = Frame {
            dst_mac: [0x0a, 0x58, 10, 129, 0, (r >> 48) as u8],
            src_mac: [0x0a, 0x58, 10, 128, 0, (r >> 56) as u8],
            vlans: if r.is_multiple_of(11) {
                vec![100]
            } else {
                Vec::new()
            },
            mpls: Vec::new(),
            network,
            proto: if tcp { ip_proto::TCP } else { ip_proto::UDP },
            tos: 0,
            ttl: 64,
            transport: Transport::Ports {
                src: 30000 + (r >> 20) as u16 % 30000,
                dst: [443u16, 8080, 53, 6443][(r >> 4) as usize % 4],
                tcp_flags: if tcp { 0x10 } else { 0 },
            },
            payload_len: frame_len.saturating_sub(headers),
        };
        let mut bytes = Vec::with_capacity(frame_len + 8);
        frame.emit(&mut bytes);
        let frame_length = bytes.len() as u32;
        bytes.truncate(self.header_bytes);

        let ports = self.ports.clone();
        let input = self.pick(&ports).map_or(0, |p| p.if_index);
        let output = match r % 50 {
            0 => Interface::Multiple(3),
            1 => Interface::Discarded(0x101),
            _ => Interface::Index(self.pick(&ports).map_or(0, |p| p.if_index)),
        };
        // In the order OVS writes them (`dpif_sflow_received` prepends each element to the list
        // the encoder walks): extended switch, raw header, then the output tunnel's VNI and IPv4
        // tunnel records, then the input tunnel's.
        let mut records = vec![
            FlowRecordRepr::Switch {
                src_vlan: if r.is_multiple_of(11) { 100 } else { 0 },
                src_priority: 0,
                dst_vlan: 0,
                dst_priority: 0,
            },
            FlowRecordRepr::RawHeader {
                protocol: 1,
                frame_length,
                stripped: 4,
                header: bytes,
            },
        ];
        let tunnel = r % 3;
        if tunnel != 0 {
            let peers = self.peers.clone();
            let peer = self.pick(&peers).unwrap_or(Ipv4Addr::LOCALHOST);
            let egress = tunnel == 1;
            let (src, dst) = if egress {
                (self.agent, peer)
            } else {
                (peer, self.agent)
            };
            records.push(FlowRecordRepr::Vni {
                egress,
                vni: 1 + (r >> 44) as u32 % 64,
            });
            records.push(FlowRecordRepr::Ipv4Tunnel {
                egress,
                outer: SampledIpv4 {
                    length: frame_length + 50,
                    protocol: u32::from(ip_proto::UDP),
                    src: src.octets(),
                    dst: dst.octets(),
                    src_port: 49152 + (r >> 36) as u32 % 16384,
                    dst_port: u32::from(GENEVE_PORT),
                    tcp_flags: 0,
                    tos: 0,
                },
            });
        }
        self.flow_sequence = self.flow_sequence.wrapping_add(1);
        self.sample_pool = self.sample_pool.wrapping_add(self.sampling_rate);
        FlowSampleRepr {
            expanded: false,
            sequence: self.flow_sequence,
            source: SourceId { kind: 0, index: 1 },
            sampling_rate: self.sampling_rate,
            sample_pool: self.sample_pool,
            drops: 0,
            input: Interface::Index(input),
            output,
            records,
        }
    }

    /// Counter samples for every port, then the bridge's application and datapath counters.
    pub fn counter_samples(&mut self) -> Vec<SampleRepr> {
        self.counter_sequence = self.counter_sequence.wrapping_add(1);
        let sequence = self.counter_sequence;
        let packets = u64::from(self.flow_sequence) * u64::from(self.sampling_rate);
        let mut out: Vec<SampleRepr> = self
            .ports
            .iter()
            .map(|p| {
                SampleRepr::Counters(CounterSampleRepr {
                    expanded: false,
                    sequence,
                    source: SourceId {
                        kind: 0,
                        index: p.if_index,
                    },
                    records: vec![
                        CounterRecordRepr::GenericInterface(GenericInterfaceCounters {
                            if_index: p.if_index,
                            if_type: 6,
                            if_speed: p.speed,
                            if_direction: 1,
                            if_status: 3,
                            in_octets: packets * 700,
                            in_ucast_pkts: packets as u32,
                            out_octets: packets * 650,
                            out_ucast_pkts: packets as u32,
                            ..Default::default()
                        }),
                        CounterRecordRepr::Ethernet(EthernetCounters::default()),
                        CounterRecordRepr::OpenflowPort(OpenflowPortCounters {
                            datapath_id: self.datapath_id,
                            port_no: p.port_no,
                            reserved: 0,
                        }),
                        CounterRecordRepr::PortName(p.name.clone()),
                    ],
                })
            })
            .collect();
        out.push(SampleRepr::Counters(CounterSampleRepr {
            expanded: false,
            sequence,
            source: SourceId { kind: 0, index: 1 },
            records: vec![
                CounterRecordRepr::AppResources(AppResourcesCounters {
                    mem_used: 200 << 20,
                    mem_max: 0,
                    user_time: self.uptime_ms / 50,
                    system_time: self.uptime_ms / 80,
                    fd_open: 120,
                    fd_max: 65536,
                    conn_open: 0,
                    conn_max: 0,
                }),
                CounterRecordRepr::OvsDatapath(OvsDatapathCounters {
                    n_hit: packets as u32,
                    n_missed: (packets / 100) as u32,
                    n_lost: 0,
                    n_mask_hit: (packets * 3) as u32,
                    n_flows: 420,
                    n_masks: 12,
                }),
            ],
        }));
        out
    }

    /// The header of the next datagram (sequence and uptime advance).
    fn next_header(&mut self) -> HeaderRepr {
        self.datagram_sequence = self.datagram_sequence.wrapping_add(1);
        self.uptime_ms = self.uptime_ms.wrapping_add(7);
        HeaderRepr {
            agent: IpAddr::V4(self.agent),
            sub_agent_id: self.sub_agent_id,
            sequence: self.datagram_sequence,
            uptime_ms: self.uptime_ms,
        }
    }

    /// Append one datagram packing encoded samples from `next` while they fit in `max_datagram`
    /// (at least one); a sample that does not fit is returned for the next datagram.
    fn pack(
        &mut self,
        out: &mut Vec<u8>,
        mut next: impl FnMut(&mut Self) -> Option<Vec<u8>>,
    ) -> (usize, Option<Vec<u8>>) {
        let header = self.next_header();
        let start = out.len();
        header.emit(0, out);
        let mut count = 0u32;
        let mut left_over = None;
        while let Some(sample) = next(self) {
            if count > 0 && out.len() - start + sample.len() > self.max_datagram {
                left_over = Some(sample);
                break;
            }
            out.extend_from_slice(&sample);
            count += 1;
        }
        let count_at = start + header.len() - 4;
        if let Some(slot) = out.get_mut(count_at..count_at + 4) {
            slot.copy_from_slice(&count.to_be_bytes());
        }
        (count as usize, left_over)
    }

    /// Append one datagram of flow samples, as many as fit in `max_datagram`; returns the samples.
    pub fn flow_datagram(&mut self, out: &mut Vec<u8>) -> usize {
        let (count, left_over) = self.pack(out, |exporter| {
            Some(exporter.pending.take().unwrap_or_else(|| {
                let mut bytes = Vec::with_capacity(320);
                SampleRepr::Flow(exporter.next_flow_sample()).emit(&mut bytes);
                bytes
            }))
        });
        self.pending = left_over;
        count
    }

    /// Datagrams carrying one round of counter samples (every port, then the bridge).
    pub fn counter_datagrams(&mut self) -> Vec<Vec<u8>> {
        let mut queue: std::collections::VecDeque<Vec<u8>> = self
            .counter_samples()
            .iter()
            .map(|s| {
                let mut bytes = Vec::new();
                s.emit(&mut bytes);
                bytes
            })
            .collect();
        let mut datagrams = Vec::new();
        while !queue.is_empty() {
            let mut buf = Vec::new();
            let (_, left_over) = self.pack(&mut buf, |_| queue.pop_front());
            if let Some(sample) = left_over {
                queue.push_front(sample);
            }
            datagrams.push(buf);
        }
        datagrams
    }
}

/// A fixed set of OVS-like datagrams: flow datagrams from two nodes (one packing tunnel, VLAN and IPv6
/// samples), a round of counter datagrams, and one expanded-sample datagram with an IPv6 agent.
/// Fuzz seeds and benchmark input; deterministic.
pub fn ovs_sample_datagrams() -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    for (node, seed) in [
        (Ipv4Addr::new(192, 168, 10, 11), 1),
        (Ipv4Addr::new(192, 168, 10, 12), 2),
    ] {
        let mut exporter = OvsExporter::new(node, seed);
        for _ in 0..4 {
            let mut buf = Vec::new();
            exporter.flow_datagram(&mut buf);
            datagrams.push(buf);
        }
        datagrams.extend(exporter.counter_datagrams());
    }
    let mut exporter = OvsExporter::new(Ipv4Addr::new(192, 168, 10, 13), 3);
    let mut flow = exporter.next_flow_sample();
    flow.expanded = true;
    flow.source = SourceId {
        kind: 0,
        index: 0x0100_0000,
    };
    let mut counters = match exporter.counter_samples().into_iter().next() {
        Some(SampleRepr::Counters(c)) => c,
        _ => CounterSampleRepr {
            expanded: true,
            sequence: 1,
            source: SourceId::default(),
            records: Vec::new(),
        },
    };
    counters.expanded = true;
    datagrams.push(
        DatagramRepr {
            header: HeaderRepr {
                agent: "fd00::13"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                sub_agent_id: 1,
                sequence: 1,
                uptime_ms: 5_000,
            },
            samples: vec![SampleRepr::Flow(flow), SampleRepr::Counters(counters)],
        }
        .to_bytes(),
    );
    datagrams
}
