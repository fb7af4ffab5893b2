//! One emulated node's exporter: the datagram stream of a profile (headers, sequence numbers,
//! uptime, templates, counter samples, restarts, intentional gaps), built with the project's encoders.
//!
//! Sans-IO: the caller hands in the time and gets datagram bytes (and, when asked, the flow records a
//! collector should decode from them). Everything that depends on time — restarts, template and
//! counter bursts — is decided by the caller and logged as an [`Event`], so [`replay`] regenerates the
//! same records from a manifest without any clock.

use crate::manifest::{Event, ExporterLog, Params, SequenceRange};
use crate::model::{self, ETYPE_IPV4, ETYPE_IPV6, Profile};
use collector::decode::ie::EncodeContext;
use collector::decode::ipfix::{MessageWriter, TemplateSpec, ovs};
use collector::decode::netflow_v5;
use collector::decode::netflow_v9::PacketWriter;
use collector::decode::packet_header::{Frame, Network, Transport};
use collector::decode::sflow::datagram::HeaderRepr as SflowHeader;
use collector::decode::sflow::emit::{FlowSampleRepr, OvsExporter, SampleRepr};
use collector::decode::sflow::flow_records::{FlowRecordRepr, SampledIpv4};
use collector::decode::sflow::samples::{Interface, SourceId};
use collector::decode::template::Field;
use collector::decode::time::ExportClock;
use collector::record::{FlowRecord, FlowType, addr_to_bytes};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Uptime an exporter reports when the run starts (it booted an hour earlier).
const INITIAL_UPTIME_MS: u64 = 3_600_000;
/// Largest datagram for template and counter bursts (OVS's sFlow limit).
const MAX_DATAGRAM: usize = 1400;
/// OVS templates per IPFIX template message (keeps each message near 1400 bytes).
const OVS_TEMPLATES_PER_MESSAGE: usize = 6;
/// Bytes of each sampled frame in sFlow raw header records (OVS default).
const SFLOW_HEADER_BYTES: usize = 128;
/// Interface name OVS IPFIX writes in interfaceName (82).
const OVS_INTERFACE_NAME: &str = "ovn-k8s-mp0";
/// Generic v9 / IPFIX template ids.
const GENERIC_V4: u16 = 256;
const GENERIC_V6: u16 = 257;
/// Observation domain of the generic IPFIX profile (OVS uses 0).
const GENERIC_DOMAIN: u32 = 1;

/// What one data datagram carries: its index among the exporter's data datagrams and its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataDatagram {
    pub index: u64,
    pub records: u32,
    /// Records without an IP network layer (OVS IPFIX ARP flows).
    pub non_ip_records: u32,
}

/// The state of one emulated exporter.
pub struct Exporter {
    params: Params,
    /// Datagram source (port 0 until the socket is bound) and the address that names the exporter.
    source: SocketAddr,
    agent: IpAddr,
    /// Wall-clock instant (ns) at which uptime was 0.
    boot_ns: u64,
    /// Index of the next model record.
    next_record: u64,
    /// Sequence number the next header carries (v5: flows, v9: packets, IPFIX: data records, sFlow:
    /// datagrams).
    sequence: u32,
    /// sFlow flow-sample sequence (per source).
    sample_sequence: u32,
    last_templates_ns: Option<u64>,
    last_counters_ns: Option<u64>,
    counters: Option<OvsExporter>,
    templates: Vec<TemplateSpec>,
    /// What was sent.
    pub log: ExporterLog,
}

impl Exporter {
    /// Exporter `index` sending from `source`, started at `now_ns`.
    pub fn new(index: u32, source: SocketAddr, params: &Params, now_ns: u64) -> Exporter {
        let agent = match (params.profile.flow_type(), source.ip()) {
            // An sFlow agent names itself in every datagram: the node address when the exporter has
            // its own IPv4 address, else a synthetic node address.
            (FlowType::SflowV5, ip) if !ip.is_loopback() => ip,
            (FlowType::SflowV5, _) => IpAddr::V4(Ipv4Addr::from(model::node_ipv4(index))),
            (_, ip) => ip,
        };
        let templates = match params.profile {
            Profile::OvsIpfix => {
                let mut t = ovs::templates();
                t.push(ovs::options_template());
                t
            }
            Profile::NetflowV9 => generic_templates(false),
            Profile::Ipfix => generic_templates(true),
            _ => Vec::new(),
        };
        let mut e = Exporter {
            params: params.clone(),
            source,
            agent,
            boot_ns: now_ns.saturating_sub(INITIAL_UPTIME_MS * 1_000_000),
            next_record: 0,
            sequence: 0,
            sample_sequence: 0,
            last_templates_ns: None,
            last_counters_ns: None,
            counters: None,
            templates,
            log: ExporterLog {
                index,
                source: Some(source),
                agent: Some(agent),
                ..Default::default()
            },
        };
        e.reset_sequences();
        e
    }

    /// Set the source once the socket is bound (the port the kernel picked).
    pub fn set_source(&mut self, source: SocketAddr) {
        if self.agent == self.source.ip() {
            self.agent = source.ip();
        }
        self.source = source;
        self.log.source = Some(source);
        self.log.agent = Some(self.agent);
    }

    pub fn source(&self) -> SocketAddr {
        self.source
    }

    pub fn profile(&self) -> Profile {
        self.params.profile
    }

    fn reset_sequences(&mut self) {
        let first = match self.params.profile.flow_type() {
            FlowType::SflowV5 => 1,
            _ => 0,
        };
        self.sequence = first;
        self.sample_sequence = 0;
        self.log
            .sequence_ranges
            .push(SequenceRange { first, next: first });
    }

    fn advance(&mut self, by: u32) {
        self.sequence = self.sequence.wrapping_add(by);
        if let Some(r) = self.log.sequence_ranges.last_mut() {
            r.next = self.sequence;
        }
    }

    fn uptime_ms(&self, now_ns: u64) -> u32 {
        (now_ns.saturating_sub(self.boot_ns) / 1_000_000) as u32
    }

    /// Restart the exporter: sequences and uptime start again, templates and counters are due.
    pub fn restart(&mut self, now_ns: u64) {
        self.log.events.push(Event::Restart {
            at: self.log.data_datagrams,
        });
        self.boot_ns = now_ns;
        self.last_templates_ns = None;
        self.last_counters_ns = None;
        self.reset_sequences();
    }

    /// Templates must be (re-)sent before the next data datagram.
    pub fn templates_due(&self, now_ns: u64) -> bool {
        self.params.profile.templated()
            && self.last_templates_ns.is_none_or(|t| {
                now_ns.saturating_sub(t) as f64 >= self.params.template_interval_secs * 1e9
            })
    }

    /// Counter samples are due (sFlow).
    pub fn counters_due(&self, now_ns: u64) -> bool {
        self.params.profile.flow_type() == FlowType::SflowV5
            && self.last_counters_ns.is_none_or(|t| {
                now_ns.saturating_sub(t) as f64 >= self.params.counter_interval_secs * 1e9
            })
    }

    /// Append the template datagrams (every template, chunked; OVS adds its exporter statistics) to
    /// `out`; returns how many.
    pub fn template_datagrams(&mut self, now_ns: u64, out: &mut Vec<Vec<u8>>) -> u32 {
        let start = out.len();
        let secs = (now_ns / 1_000_000_000) as u32;
        match self.params.profile {
            Profile::NetflowV9 => {
                let mut w = PacketWriter::new(self.uptime_ms(now_ns), secs, self.sequence, 0);
                w.templates(&self.templates);
                out.push(w.finish());
                self.advance(1);
            }
            Profile::Ipfix => {
                let mut w = MessageWriter::new(secs, self.sequence, GENERIC_DOMAIN);
                w.templates(&self.templates);
                out.push(w.finish());
            }
            Profile::OvsIpfix => {
                let templates = std::mem::take(&mut self.templates);
                let last = templates
                    .len()
                    .div_ceil(OVS_TEMPLATES_PER_MESSAGE)
                    .saturating_sub(1);
                for (i, chunk) in templates.chunks(OVS_TEMPLATES_PER_MESSAGE).enumerate() {
                    let mut w = MessageWriter::new(secs, self.sequence, 0);
                    w.templates(chunk);
                    if i == last {
                        // Exporter statistics (exportingProcessId, notSentPacketTotalCount): one
                        // options data record, which IPFIX sequence numbers count.
                        let stats: FlowRecord = bytemuck::Zeroable::zeroed();
                        w.data(
                            &ovs::options_template(),
                            &[stats],
                            &EncodeContext::default(),
                        );
                        out.push(w.finish());
                        self.advance(1);
                    } else {
                        out.push(w.finish());
                    }
                }
                self.templates = templates;
            }
            _ => {}
        }
        let n = (out.len() - start) as u32;
        if n > 0 {
            self.last_templates_ns = Some(now_ns);
            self.log.events.push(Event::Templates {
                at: self.log.data_datagrams,
                datagrams: n,
            });
            self.log.template_datagrams += u64::from(n);
            self.count_control(&out[start..]);
        }
        n
    }

    /// Append one round of counter-sample datagrams (sFlow: every port, then the bridge) to `out`.
    pub fn counter_datagrams(&mut self, now_ns: u64, out: &mut Vec<Vec<u8>>) -> u32 {
        if self.params.profile.flow_type() != FlowType::SflowV5 {
            return 0;
        }
        let index = self.log.index;
        let seed = self.params.seed;
        let node = match self.agent {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::from(model::node_ipv4(index)),
        };
        let samples = self
            .counters
            .get_or_insert_with(|| OvsExporter::new(node, seed ^ u64::from(index)))
            .counter_samples();
        let start = out.len();
        let mut encoded: Vec<Vec<u8>> = samples
            .iter()
            .map(|s| {
                let mut b = Vec::new();
                s.emit(&mut b);
                b
            })
            .collect();
        encoded.reverse();
        while !encoded.is_empty() {
            let mut body = Vec::new();
            let mut count = 0u32;
            while let Some(s) = encoded.pop() {
                if count > 0 && body.len() + s.len() + 32 > MAX_DATAGRAM {
                    encoded.push(s);
                    break;
                }
                body.extend_from_slice(&s);
                count += 1;
            }
            let mut d = Vec::with_capacity(body.len() + 40);
            self.sflow_header(now_ns).emit(count, &mut d);
            d.extend_from_slice(&body);
            out.push(d);
            self.advance(1);
        }
        let n = (out.len() - start) as u32;
        self.last_counters_ns = Some(now_ns);
        self.log.events.push(Event::Counters {
            at: self.log.data_datagrams,
            datagrams: n,
        });
        self.log.counter_datagrams += u64::from(n);
        self.count_control(&out[start..]);
        n
    }

    fn sflow_header(&self, now_ns: u64) -> SflowHeader {
        SflowHeader {
            agent: self.agent,
            sub_agent_id: 0,
            sequence: self.sequence,
            uptime_ms: self.uptime_ms(now_ns),
        }
    }

    /// The sequence span of one data datagram (what an intentional gap skips).
    fn data_span(&self) -> u32 {
        match self.params.profile.flow_type() {
            FlowType::NetflowV5 | FlowType::Ipfix => self.params.records_per_datagram,
            _ => 1,
        }
    }

    /// Replace `out` with the next data datagram; the records a collector should decode from it are
    /// appended to `expected` when given. Returns what it holds. Every `gap_every`-th datagram is
    /// preceded by an intentional gap of one datagram's sequence span.
    pub fn data_datagram(
        &mut self,
        now_ns: u64,
        out: &mut Vec<u8>,
        expected: Option<&mut Vec<FlowRecord>>,
    ) -> DataDatagram {
        let gap_every = self.params.gap_every;
        if gap_every > 0 && (self.log.data_datagrams + 1).is_multiple_of(gap_every) {
            let skipped = self.data_span();
            self.log.events.push(Event::Gap {
                at: self.log.data_datagrams,
                sequence: self.sequence,
                skipped,
            });
            if self.params.profile.flow_type() == FlowType::SflowV5 {
                self.sample_sequence = self.sample_sequence.wrapping_add(skipped);
            }
            self.advance(skipped);
        }
        let n = self.params.records_per_datagram.max(1);
        let mut records: Vec<FlowRecord> = (0..u64::from(n))
            .map(|i| {
                model::flow(
                    self.params.profile,
                    self.params.seed,
                    self.log.index,
                    self.next_record + i,
                    self.params.time_base_ns,
                )
            })
            .collect();
        self.next_record += u64::from(n);
        out.clear();
        let secs = (now_ns / 1_000_000_000) as u32;
        let seq = self.sequence;
        match self.params.profile {
            Profile::OvsNetflow | Profile::NetflowV5 => {
                let ovs = self.params.profile == Profile::OvsNetflow;
                let header = netflow_v5::HeaderRepr {
                    count: n as u16,
                    sys_uptime_ms: self.uptime_ms(now_ns),
                    unix_secs: secs,
                    // Whole milliseconds, so that uptime-relative times come back exact.
                    unix_nsecs: ((now_ns % 1_000_000_000) / 1_000_000 * 1_000_000) as u32,
                    flow_sequence: seq,
                    engine_type: if ovs { 0 } else { 1 },
                    engine_id: if ovs { 0 } else { self.log.index as u8 },
                    sampling: 0,
                };
                let reprs: Vec<netflow_v5::RecordRepr> = records
                    .iter()
                    .map(|r| netflow_v5::RecordRepr::from_flow(r, &header))
                    .collect();
                netflow_v5::emit(&header, &reprs, out);
                for r in &mut records {
                    r.observation_domain_id = header.domain();
                }
                self.advance(n);
            }
            Profile::NetflowV9 => {
                let mut w = PacketWriter::new(self.uptime_ms(now_ns), secs, seq, 0);
                for t in &self.templates {
                    let group = group_of(&records, t.id, generic_template_id);
                    if !group.is_empty() {
                        w.data(t, &group, 0);
                    }
                }
                *out = w.finish();
                self.advance(1);
            }
            Profile::Ipfix | Profile::OvsIpfix => {
                let ctx = EncodeContext {
                    clock: ExportClock {
                        export_ns: u64::from(secs) * 1_000_000_000,
                        uptime_ms: None,
                    },
                    init_ms: 0,
                    interface_name: OVS_INTERFACE_NAME,
                };
                if self.params.profile == Profile::OvsIpfix {
                    // As `ovs::message`: one data set per template, in order of first use; the
                    // templates come from this exporter's compiled list instead of being rebuilt.
                    let mut w = MessageWriter::new(secs, seq, 0);
                    let mut done: Vec<u16> = Vec::with_capacity(records.len());
                    for rec in &records {
                        let id = ovs::template_id_for(rec);
                        if done.contains(&id) {
                            continue;
                        }
                        done.push(id);
                        let index = usize::from(id.saturating_sub(ovs::FIRST_ID));
                        if let Some(t) = self.templates.get(index).filter(|t| t.id == id) {
                            w.data(t, &group_of(&records, id, ovs::template_id_for), &ctx);
                        }
                    }
                    *out = w.finish();
                } else {
                    let mut w = MessageWriter::new(secs, seq, GENERIC_DOMAIN);
                    for t in &self.templates {
                        let group = group_of(&records, t.id, generic_template_id);
                        if !group.is_empty() {
                            w.data(t, &group, &ctx);
                        }
                    }
                    *out = w.finish();
                    for r in &mut records {
                        r.observation_domain_id = GENERIC_DOMAIN;
                    }
                }
                self.advance(n);
            }
            Profile::OvsSflow | Profile::Sflow => {
                self.sflow_header(now_ns).emit(n, out);
                for r in &mut records {
                    self.sample_sequence = self.sample_sequence.wrapping_add(1);
                    let sample = self.flow_sample(r);
                    SampleRepr::Flow(sample).emit(out);
                }
                self.advance(1);
            }
        }
        let ft = self.params.profile.flow_type();
        for r in &mut records {
            r.flow_type = ft as u8;
            r.exporter_port = self.source.port();
            // The header's sequence number; for sFlow the datagram's, not the sample's.
            r.sequence_num = seq;
            match ft {
                FlowType::SflowV5 => {
                    r.exporter_addr = addr_to_bytes(self.agent);
                    r.observation_point_id = 1;
                    r.sampler_id = 1;
                    r.sampling_rate = self.params.sampling_rate;
                }
                _ => r.exporter_addr = addr_to_bytes(self.source.ip()),
            }
        }
        let non_ip = records
            .iter()
            .filter(|r| r.etype != ETYPE_IPV4 && r.etype != ETYPE_IPV6)
            .count() as u32;
        let sent = DataDatagram {
            index: self.log.data_datagrams,
            records: n,
            non_ip_records: non_ip,
        };
        self.log.data_datagrams += 1;
        self.log.datagrams += 1;
        self.log.records += u64::from(n);
        self.log.non_ip_records += u64::from(non_ip);
        self.log.bytes += out.len() as u64;
        if let Some(expected) = expected {
            expected.extend_from_slice(&records);
        }
        sent
    }

    /// The sFlow flow sample reporting `rec`: the switch record, the sampled frame built from it
    /// and, for tunnelled traffic, the VNI and tunnel records, in OVS's order. `rec.bytes` becomes
    /// the frame's length.
    fn flow_sample(&self, rec: &mut FlowRecord) -> FlowSampleRepr {
        let low4 = |a: &[u8; 16]| [a[12], a[13], a[14], a[15]];
        let v6 = rec.etype == ETYPE_IPV6;
        let network = if v6 {
            Network::Ipv6 {
                src: rec.src_addr,
                dst: rec.dst_addr,
                flow_label: rec.ipv6_flow_label,
                extensions: Vec::new(),
            }
        } else {
            Network::Ipv4 {
                src: low4(&rec.src_addr),
                dst: low4(&rec.dst_addr),
                options_len: 0,
                fragment_offset: 0,
            }
        };
        let transport = match rec.proto {
            1 | 58 => Transport::Icmp {
                kind: rec.icmp_type,
                code: rec.icmp_code,
            },
            _ => Transport::Ports {
                src: rec.src_port,
                dst: rec.dst_port,
                tcp_flags: rec.tcp_flags,
            },
        };
        let vlans = if rec.vlan_id != 0 {
            vec![rec.vlan_id]
        } else {
            Vec::new()
        };
        let l4 = match rec.proto {
            6 => 20,
            _ => 8,
        };
        let headers = 14 + 4 * vlans.len() + if v6 { 40 } else { 20 } + l4;
        let frame = Frame {
            dst_mac: rec.dst_mac,
            src_mac: rec.src_mac,
            vlans,
            mpls: Vec::new(),
            network,
            proto: rec.proto,
            tos: rec.ip_tos,
            ttl: rec.ip_ttl,
            transport,
            payload_len: (rec.bytes as usize).saturating_sub(headers),
        };
        let mut bytes = Vec::with_capacity(rec.bytes as usize + 8);
        frame.emit(&mut bytes);
        let frame_length = bytes.len() as u32;
        rec.bytes = u64::from(frame_length);
        bytes.truncate(SFLOW_HEADER_BYTES);
        // OVS's order (dpif_sflow_received prepends each element): switch, raw header, then for
        // tunnelled traffic VNI and IPv4 tunnel.
        let mut records = vec![
            FlowRecordRepr::Switch {
                src_vlan: u32::from(rec.vlan_id),
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
        if rec.tunnel_type != 0 {
            let node = addr_to_bytes(IpAddr::V4(Ipv4Addr::from(model::node_ipv4(self.log.index))));
            let egress = rec.tunnel_src_addr == node;
            records.push(FlowRecordRepr::Vni {
                egress,
                vni: rec.tunnel_key as u32,
            });
            records.push(FlowRecordRepr::Ipv4Tunnel {
                egress,
                outer: SampledIpv4 {
                    length: frame_length + 50,
                    protocol: u32::from(rec.tunnel_proto),
                    src: low4(&rec.tunnel_src_addr),
                    dst: low4(&rec.tunnel_dst_addr),
                    src_port: u32::from(rec.tunnel_src_port),
                    dst_port: u32::from(rec.tunnel_dst_port),
                    tcp_flags: 0,
                    tos: 0,
                },
            });
        }
        FlowSampleRepr {
            expanded: false,
            sequence: self.sample_sequence,
            source: SourceId { kind: 0, index: 1 },
            sampling_rate: self.params.sampling_rate,
            sample_pool: self.sample_sequence.wrapping_mul(self.params.sampling_rate),
            drops: 0,
            input: Interface::Index(rec.in_if),
            output: Interface::Index(rec.out_if),
            records,
        }
    }

    fn count_control(&mut self, datagrams: &[Vec<u8>]) {
        self.log.datagrams += datagrams.len() as u64;
        self.log.bytes += datagrams.iter().map(|d| d.len() as u64).sum::<u64>();
    }

    /// The kernel refused a datagram of `bytes` bytes: data datagram `data` or a template /
    /// counter datagram (`None`). Its records and bytes leave the counts.
    pub fn refused(&mut self, bytes: usize, data: Option<DataDatagram>) {
        self.log.refused_datagrams += 1;
        self.log.datagrams = self.log.datagrams.saturating_sub(1);
        self.log.bytes = self.log.bytes.saturating_sub(bytes as u64);
        if let Some(d) = data {
            self.log.events.push(Event::Unsent { at: d.index });
            self.log.records = self.log.records.saturating_sub(u64::from(d.records));
            self.log.non_ip_records = self
                .log
                .non_ip_records
                .saturating_sub(u64::from(d.non_ip_records));
        }
    }
}

/// Records of `records` whose template is `id`.
fn group_of(
    records: &[FlowRecord],
    id: u16,
    template_of: fn(&FlowRecord) -> u16,
) -> Vec<FlowRecord> {
    records
        .iter()
        .filter(|r| template_of(r) == id)
        .copied()
        .collect()
}

fn generic_template_id(rec: &FlowRecord) -> u16 {
    if rec.etype == ETYPE_IPV6 {
        GENERIC_V6
    } else {
        GENERIC_V4
    }
}

/// The generic profiles' two templates (IPv4 and IPv6): IPFIX with millisecond timestamps and
/// 16-bit TCP flags, v9 with uptime-relative times.
fn generic_templates(ipfix: bool) -> Vec<TemplateSpec> {
    let (start, end, flags) = if ipfix {
        ((152, 8), (153, 8), (6, 2))
    } else {
        ((22, 4), (21, 4), (6, 1))
    };
    let common = [
        (7, 2),
        (11, 2),
        (4, 1),
        (5, 1),
        flags,
        (10, 4),
        (14, 4),
        (1, 8),
        (2, 8),
        start,
        end,
        (60, 1),
    ];
    let mut v4 = vec![(8, 4), (12, 4)];
    v4.extend(common);
    v4.push((32, 2));
    let mut v6 = vec![(27, 16), (28, 16), (31, 4)];
    v6.extend(common);
    v6.push((139, 2));
    if ipfix {
        v4.push((61, 1));
        v6.push((61, 1));
    }
    [(GENERIC_V4, v4), (GENERIC_V6, v6)]
        .into_iter()
        .map(|(id, fields)| TemplateSpec {
            id,
            scope_fields: 0,
            fields: fields
                .into_iter()
                .map(|(f, len)| Field::iana(f, len))
                .collect(),
        })
        .collect()
}

/// The flow records `log` says were sent, regenerated from `params` (what `verify` expects to find).
/// `sink` receives each data datagram's records that were sent.
pub fn replay(params: &Params, log: &ExporterLog, mut sink: impl FnMut(&[FlowRecord])) {
    let Some(source) = log.source else { return };
    let mut e = Exporter::new(log.index, source, params, params.time_base_ns);
    e.agent = log.agent.unwrap_or(e.agent);
    let unsent: std::collections::HashSet<u64> = log
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Unsent { at } => Some(*at),
            _ => None,
        })
        .collect();
    let mut events = log
        .events
        .iter()
        .filter(|e| !matches!(e, Event::Unsent { .. }))
        .peekable();
    let mut scratch = Vec::new();
    let mut buf = Vec::new();
    let mut records = Vec::new();
    for d in 0..log.data_datagrams {
        while let Some(ev) = events.peek() {
            let at = match ev {
                Event::Restart { at }
                | Event::Templates { at, .. }
                | Event::Counters { at, .. }
                | Event::Gap { at, .. }
                | Event::Unsent { at } => *at,
            };
            if at > d {
                break;
            }
            match ev {
                Event::Restart { .. } => e.restart(params.time_base_ns),
                Event::Templates { .. } => {
                    scratch.clear();
                    e.template_datagrams(params.time_base_ns, &mut scratch);
                }
                Event::Counters { .. } => {
                    scratch.clear();
                    e.counter_datagrams(params.time_base_ns, &mut scratch);
                }
                // Regenerated by `data_datagram` itself; unsent datagrams are handled below.
                Event::Gap { .. } | Event::Unsent { .. } => {}
            }
            events.next();
        }
        records.clear();
        e.data_datagram(params.time_base_ns, &mut buf, Some(&mut records));
        if !unsent.contains(&d) {
            sink(&records);
        }
    }
}
