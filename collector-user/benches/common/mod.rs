//! In-memory export datagrams for the decode benchmark and `examples/decode_loop.rs`, built with
//! the project's encoders: NetFlow v5 (30 records each), NetFlow v9 (a 14-field IPv4 template,
//! 24 records each) and IPFIX with the Open vSwitch template family (tunnelled TCP/UDP, IPv4 and
//! IPv6, ingress and egress): "ipfix" packs 12 records of one template per message, as exporters
//! that batch do; "ipfix-single" sends one record per message, as Open vSwitch itself does
//! (`ipfix_send_data_msg` in ofproto-dpif-ipfix.c), so every record pays for a whole message.

use collector::decode::ie::EncodeContext;
use collector::decode::ipfix::{TemplateSpec, ovs};
use collector::decode::netflow_v5::{self, HeaderRepr, RecordRepr};
use collector::decode::netflow_v9::PacketWriter;
use collector::decode::template::Field;
use collector::decode::time::ExportClock;
use collector::decode::{DatagramMeta, Decoder, RecordSink};
use collector::record::{CounterRecord, FlowRecord, ipv4_bytes};

pub const EXPORT_SECS: u32 = 1_700_000_000;

/// Records per datagram of the "v5" and "ipfix" pools.
const V5_RECORDS: usize = 30;
const IPFIX_RECORDS: usize = 12;

/// Counts records; the whole record escapes through `black_box`, as it would into a ring file, so
/// no field the decoder writes can be optimised away (a sink that read only two fields let LLVM drop
/// every other store of the v5 decoder) and the sink adds no work of its own beyond the count.
#[derive(Default)]
pub struct CountingSink {
    pub flows: u64,
}

impl RecordSink for CountingSink {
    fn flow(&mut self, record: &FlowRecord) {
        std::hint::black_box(record);
        self.flows += 1;
    }
    fn counters(&mut self, _record: &CounterRecord) {}
}

pub fn meta() -> DatagramMeta {
    exporter_meta(0)
}

/// The datagram metadata of exporter number `n`: 192.0.2.1:4739 for 0, 10.a.b.1:4739 (a.b = n)
/// for the others, so `n` exporters have `n` addresses.
pub fn exporter_meta(n: u16) -> DatagramMeta {
    let [a, b] = n.to_be_bytes();
    let ip = match n {
        0 => std::net::Ipv4Addr::new(192, 0, 2, 1),
        _ => std::net::Ipv4Addr::new(10, a, b, 1),
    };
    DatagramMeta {
        exporter: (ip, 4739).into(),
        received_ns: u64::from(EXPORT_SECS) * 1_000_000_000,
    }
}

fn record(i: u64) -> FlowRecord {
    let mut r: FlowRecord = bytemuck::Zeroable::zeroed();
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    r.src_addr = ipv4_bytes([10, (x >> 8) as u8, (x >> 16) as u8, x as u8]);
    r.dst_addr = ipv4_bytes([10, 1, (x >> 24) as u8, (x >> 32) as u8]);
    r.src_port = (x >> 40) as u16;
    r.dst_port = 443;
    r.proto = if i.is_multiple_of(3) { 17 } else { 6 };
    r.etype = 0x0800;
    r.bytes = 1000 + (x >> 50);
    r.packets = 1 + (x >> 58);
    r.in_if = 1 + (i % 8) as u32;
    r.out_if = 2;
    r.tcp_flags = 0x1b;
    r.ip_ttl = 64;
    r.src_mac = [2, 0, 0, 0, 0, i as u8];
    r.dst_mac = [2, 0, 0, 0, 1, 0];
    r.flow_direction = (i % 2) as u8;
    r.time_flow_start_ns = u64::from(EXPORT_SECS) * 1_000_000_000 - 30_000_000_000;
    r.time_flow_end_ns = u64::from(EXPORT_SECS) * 1_000_000_000 - 1_000_000_000;
    if i.is_multiple_of(4) {
        r.etype = 0x86dd;
        r.src_addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8];
        r.dst_addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    }
    if !i.is_multiple_of(5) {
        r.tunnel_type = 7;
        r.tunnel_key = 5000 + i % 16;
        r.tunnel_src_addr = ipv4_bytes([172, 16, 0, 1]);
        r.tunnel_dst_addr = ipv4_bytes([172, 16, 0, 2]);
        r.tunnel_proto = 17;
        r.tunnel_dst_port = 6081;
    }
    r
}

/// The datagrams of one protocol ("v5", "v9", "ipfix", "ipfix-single"): the first primes templates, the others
/// (`count` of them) carry data only.
pub fn datagrams(protocol: &str, count: usize) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut out = Vec::with_capacity(count);
    match protocol {
        "v5" => {
            for d in 0..count {
                let header = HeaderRepr {
                    sys_uptime_ms: 3_600_000,
                    unix_secs: EXPORT_SECS,
                    flow_sequence: (d * V5_RECORDS) as u32,
                    ..Default::default()
                };
                let records: Vec<RecordRepr> = (0..V5_RECORDS)
                    .map(|i| {
                        let mut r = record((d * V5_RECORDS + i) as u64);
                        r.etype = 0x0800;
                        r.src_addr = ipv4_bytes([10, 0, (i >> 8) as u8, i as u8]);
                        RecordRepr::from_flow(&r, &header)
                    })
                    .collect();
                let mut buf = Vec::new();
                netflow_v5::emit(&header, &records, &mut buf);
                out.push(buf);
            }
            Some((Vec::new(), out))
        }
        "v9" => {
            let t = TemplateSpec {
                id: 256,
                scope_fields: 0,
                fields: [
                    (8, 4),
                    (12, 4),
                    (15, 4),
                    (10, 2),
                    (14, 2),
                    (2, 4),
                    (1, 4),
                    (22, 4),
                    (21, 4),
                    (7, 2),
                    (11, 2),
                    (6, 1),
                    (4, 1),
                    (5, 1),
                ]
                .map(|(id, len)| Field::iana(id, len))
                .to_vec(),
            };
            let mut w = PacketWriter::new(3_600_000, EXPORT_SECS, 0, 0);
            w.templates(std::slice::from_ref(&t));
            let prime = w.finish();
            for d in 0..count {
                let records: Vec<FlowRecord> = (0..24)
                    .map(|i| {
                        let mut r = record((d * 24 + i) as u64);
                        r.src_addr = ipv4_bytes([10, 0, 0, i as u8]);
                        r
                    })
                    .collect();
                let mut w = PacketWriter::new(3_600_000, EXPORT_SECS, d as u32 + 1, 0);
                w.data(&t, &records, 0);
                out.push(w.finish());
            }
            Some((prime, out))
        }
        "ipfix" | "ipfix-single" => {
            let per_message = if protocol == "ipfix" {
                IPFIX_RECORDS
            } else {
                1
            };
            let ctx = EncodeContext {
                clock: ExportClock {
                    export_ns: u64::from(EXPORT_SECS) * 1_000_000_000,
                    uptime_ms: None,
                },
                init_ms: 0,
                interface_name: "ovn-k8s-mp0",
            };
            let prime = ovs::message(EXPORT_SECS, 0, true, &[], &ctx);
            for d in 0..count {
                // One template per message, varying by message.
                let shape = record(d as u64);
                let records: Vec<FlowRecord> = (0..per_message)
                    .map(|i| {
                        let mut r = record((d * per_message + i) as u64);
                        (r.etype, r.flow_direction, r.tunnel_type) =
                            (shape.etype, shape.flow_direction, shape.tunnel_type);
                        (r.src_addr, r.dst_addr, r.proto) =
                            (shape.src_addr, shape.dst_addr, shape.proto);
                        r.src_port = 1024 + i as u16;
                        r
                    })
                    .collect();
                out.push(ovs::message(
                    EXPORT_SECS,
                    (d * per_message) as u32,
                    false,
                    &records,
                    &ctx,
                ));
            }
            Some((prime, out))
        }
        _ => None,
    }
}

/// Distinct datagrams the record loops (`examples/decode_loop.rs`, `worker_loop.rs`) and the
/// throughput bench cycle through.
const POOL: usize = 64;

/// The [`datagrams`] of `protocol` for the record loops and the throughput bench ([`POOL`] of
/// them), or exit 2 naming the protocols there are.
pub fn loop_datagrams(protocol: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    datagrams(protocol, POOL).unwrap_or_else(|| {
        eprintln!(
            "unsupported protocol {protocol:?} (v5, v9, ipfix, ipfix-single; sflow: examples/sflow_loop.rs)"
        );
        std::process::exit(2)
    })
}

/// Gives each exporter's datagrams consecutive sequence numbers, as a live exporter's are. The
/// record loops share one pool among all exporters and cycle through it, so the numbers it was
/// built with would jump (exporter e sees every E-th datagram) or run backwards (when the pool
/// wraps), and the decoder would take its loss or reorder path for every such datagram.
/// [`Sequencer::renumber`] is kept out of the instruction counts: `decode_loop` calls it outside
/// the function it counts, `worker_loop`'s source inside, with the count toggled off while it runs
/// (`RENUMBER_SYMBOL`).
pub struct Sequencer {
    /// Where the header keeps the sequence number.
    field: std::ops::Range<usize>,
    /// How far one datagram advances it: v5 counts flows, v9 export packets, IPFIX data records.
    step: u32,
    next: Vec<u32>,
}

/// A callgrind `--toggle-collect` pattern for [`Sequencer::renumber`]: inside a counted loop it
/// stops the count while renumbering.
pub const RENUMBER_SYMBOL: &str = "*Sequencer*renumber*";

impl Sequencer {
    /// Sequence numbers for `exporters` exporters of `protocol`'s [`loop_datagrams`], each
    /// starting where its priming datagram left it.
    pub fn new(protocol: &str, exporters: u16) -> Sequencer {
        let (field, step, first) = match protocol {
            "v5" => (16..20, V5_RECORDS as u32, 0),
            // The template packet was packet 0.
            "v9" => (12..16, 1, 1),
            "ipfix" => (8..12, IPFIX_RECORDS as u32, 0),
            // "ipfix-single": one record per message.
            _ => (8..12, 1, 0),
        };
        Sequencer {
            field,
            step,
            next: vec![first; usize::from(exporters.max(1))],
        }
    }

    /// Write exporter `exporter`'s next sequence number into `datagram`.
    #[inline(never)]
    pub fn renumber(&mut self, exporter: usize, datagram: &mut [u8]) {
        if let (Some(next), Some(field)) = (
            self.next.get_mut(exporter),
            datagram.get_mut(self.field.clone()),
        ) {
            field.copy_from_slice(&next.to_be_bytes());
            *next = next.wrapping_add(self.step);
        }
    }
}

/// A decoder that has seen `prime` from each of `exporters` exporters ([`exporter_meta`]).
pub fn primed_decoder(prime: &[u8], exporters: u16) -> Decoder {
    let mut dec = Decoder::new();
    if !prime.is_empty() {
        let mut sink = CountingSink::default();
        for n in 0..exporters {
            dec.decode(&exporter_meta(n), prime, &mut sink)
                .expect("templates decode");
        }
    }
    dec
}

/// The OVS template message (120 data templates and the options template), for the template
/// memory measurement.
pub fn ovs_template_message() -> Vec<u8> {
    let ctx = EncodeContext::default();
    ovs::message(EXPORT_SECS, 0, true, &[], &ctx)
}
