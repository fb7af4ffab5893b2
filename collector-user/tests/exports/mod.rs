//! Export datagrams the end-to-end tests send, built with the project's encoders: NetFlow v5
//! records numbered from a seed, flow records for v9 and IPFIX, and the classic five-tuple
//! template. Shared by `collector-user`'s UDP tests and the `tests` crate's XDP tests
//! (`#[path]`-included there).

use collector::decode::ipfix::TemplateSpec;
use collector::decode::netflow_v5::{self, HeaderRepr, RecordRepr};
use collector::decode::netflow_v9::PacketWriter;
use collector::decode::template::Field;
use collector::record::{FlowRecord, ipv4_bytes};

/// Export time (Unix seconds) of every datagram.
pub const EXPORT_SECS: u32 = 1_760_000_000;

/// A v5 datagram of `n` TCP records whose addresses carry `seed`.
pub fn v5_datagram(seq: u32, uptime_ms: u32, n: u8, seed: u8) -> Vec<u8> {
    let header = HeaderRepr {
        count: u16::from(n),
        sys_uptime_ms: uptime_ms,
        unix_secs: EXPORT_SECS,
        unix_nsecs: 5_000,
        flow_sequence: seq,
        engine_type: 1,
        engine_id: 2,
        sampling: 0,
    };
    let records: Vec<RecordRepr> = (0..n)
        .map(|i| RecordRepr {
            src_addr: [10, seed, 0, i],
            dst_addr: [10, 9, seed, i],
            next_hop: [0, 0, 0, 0],
            input: u16::from(i),
            output: 7,
            packets: 3 + u32::from(i),
            octets: 1500 * (1 + u32::from(i)),
            first_ms: uptime_ms.saturating_sub(5_000),
            last_ms: uptime_ms.saturating_sub(1_000),
            src_port: 40_000 + u16::from(i),
            dst_port: 443,
            tcp_flags: 0x1b,
            proto: 6,
            tos: 0x28,
            src_as: 0,
            dst_as: 0,
            src_mask: 0,
            dst_mask: 0,
        })
        .collect();
    let mut out = Vec::new();
    netflow_v5::emit(&header, &records, &mut out);
    out
}

/// Flow record `i` (addresses, ports and counters derived from it) with protocol `proto`.
pub fn flow(i: u32, proto: u8) -> FlowRecord {
    let mut r: FlowRecord = bytemuck::Zeroable::zeroed();
    r.src_addr = ipv4_bytes([10, 1, (i >> 8) as u8, i as u8]);
    r.dst_addr = ipv4_bytes([10, 2, 0, (i % 200) as u8]);
    r.src_port = 1024 + i as u16;
    r.dst_port = 53;
    r.proto = proto;
    r.etype = 0x0800;
    r.bytes = 100 + u64::from(i);
    r.packets = 1 + u64::from(i % 7);
    r.in_if = 2;
    r.out_if = 3;
    r.time_flow_start_ns = u64::from(EXPORT_SECS - 10) * 1_000_000_000;
    r.time_flow_end_ns = u64::from(EXPORT_SECS - 1) * 1_000_000_000;
    r
}

/// The classic five-tuple template, for v9 and for IPFIX (small enough not to fragment).
pub fn five_tuple_template() -> TemplateSpec {
    let f = Field::iana;
    TemplateSpec {
        id: 300,
        scope_fields: 0,
        fields: vec![
            f(8, 4),
            f(12, 4),
            f(7, 2),
            f(11, 2),
            f(4, 1),
            f(1, 8),
            f(2, 8),
            f(10, 4),
            f(14, 4),
            f(22, 4),
            f(21, 4),
        ],
    }
}

/// A v9 packet (with the five-tuple template when asked) carrying flows `first..first + 4`.
pub fn v9_packet(seq: u32, with_template: bool, first: u32) -> Vec<u8> {
    let mut w = PacketWriter::new(50_000_000, EXPORT_SECS, seq, 9);
    if with_template {
        w.templates(&[five_tuple_template()]);
    }
    let records: Vec<FlowRecord> = (first..first + 4).map(|i| flow(i, 17)).collect();
    w.data(&five_tuple_template(), &records, 0);
    w.finish()
}
