//! NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records, IPv4 only.
//!
//! Times in records are sysUpTime-relative milliseconds; they become absolute with the header's
//! `sys_uptime` and `unix_secs`/`unix_nsecs`. The header's sampling field holds the mode in its top
//! 2 bits and the interval (1 in N) in its low 14; engine type/id become the observation domain
//! (`type << 8 | id`). The sequence number counts flows (span of a datagram = its record count).
//! OVS sends OpenFlow port numbers as interfaces and zero next hop / AS / masks, all kept as sent.

use super::ipfix::{be16, be32};
use super::time::{ExportClock, uptime_to_ns};
use super::{DatagramMeta, ErrorReason, RecordSink};
use crate::record::{FlowRecord, FlowType, addr_to_bytes, ipv4_bytes};
use bytemuck::Zeroable;

/// Byte ranges of the header and of one record.
pub mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const COUNT: Range<usize> = 2..4;
    pub const SYS_UPTIME: Range<usize> = 4..8;
    pub const UNIX_SECS: Range<usize> = 8..12;
    pub const UNIX_NSECS: Range<usize> = 12..16;
    pub const FLOW_SEQUENCE: Range<usize> = 16..20;
    pub const ENGINE_TYPE: usize = 20;
    pub const ENGINE_ID: usize = 21;
    pub const SAMPLING: Range<usize> = 22..24;
    pub const HEADER_LEN: usize = 24;

    pub const SRC_ADDR: Range<usize> = 0..4;
    pub const DST_ADDR: Range<usize> = 4..8;
    pub const NEXT_HOP: Range<usize> = 8..12;
    pub const INPUT: Range<usize> = 12..14;
    pub const OUTPUT: Range<usize> = 14..16;
    pub const PACKETS: Range<usize> = 16..20;
    pub const OCTETS: Range<usize> = 20..24;
    pub const FIRST: Range<usize> = 24..28;
    pub const LAST: Range<usize> = 28..32;
    pub const SRC_PORT: Range<usize> = 32..34;
    pub const DST_PORT: Range<usize> = 34..36;
    pub const TCP_FLAGS: usize = 37;
    pub const PROTO: usize = 38;
    pub const TOS: usize = 39;
    pub const SRC_AS: Range<usize> = 40..42;
    pub const DST_AS: Range<usize> = 42..44;
    pub const SRC_MASK: usize = 44;
    pub const DST_MASK: usize = 45;
    pub const RECORD_LEN: usize = 48;
}

pub const VERSION: u16 = 5;
pub const MAX_RECORDS: usize = 30;

/// A zero-copy view of a v5 datagram, checked once: header complete, 1..=30 records, all present.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, ErrorReason> {
        let b = buffer.as_ref();
        if b.len() < field::HEADER_LEN {
            return Err(ErrorReason::TruncatedHeader);
        }
        let count = usize::from(be16(b, field::COUNT));
        if count == 0
            || count > MAX_RECORDS
            || b.len() < field::HEADER_LEN + count * field::RECORD_LEN
        {
            return Err(ErrorReason::BadRecordCount);
        }
        Ok(Packet { buffer })
    }
    pub fn count(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::COUNT))
    }
    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }
    pub fn header(&self) -> HeaderRepr {
        let b = self.buffer.as_ref();
        HeaderRepr {
            count: be16(b, field::COUNT),
            sys_uptime_ms: be32(b, field::SYS_UPTIME),
            unix_secs: be32(b, field::UNIX_SECS),
            unix_nsecs: be32(b, field::UNIX_NSECS),
            flow_sequence: be32(b, field::FLOW_SEQUENCE),
            engine_type: self.byte(field::ENGINE_TYPE),
            engine_id: self.byte(field::ENGINE_ID),
            sampling: be16(b, field::SAMPLING),
        }
    }
    /// The 48 bytes of record `i` (`None` past the count).
    /// The records' bytes (exactly `count` records: `new_checked` made sure they are there).
    pub fn records(&self) -> &[u8] {
        let end = field::HEADER_LEN + self.count() * field::RECORD_LEN;
        self.buffer
            .as_ref()
            .get(field::HEADER_LEN..end)
            .unwrap_or_default()
    }

    pub fn record(&self, i: usize) -> Option<&[u8; field::RECORD_LEN]> {
        if i >= self.count() {
            return None;
        }
        let start = field::HEADER_LEN + i * field::RECORD_LEN;
        self.buffer
            .as_ref()
            .get(start..)?
            .first_chunk::<{ field::RECORD_LEN }>()
    }
}

/// The parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderRepr {
    pub count: u16,
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub unix_nsecs: u32,
    pub flow_sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    /// Mode in the top 2 bits, interval in the low 14.
    pub sampling: u16,
}

impl HeaderRepr {
    pub fn sampling_mode(&self) -> u8 {
        (self.sampling >> 14) as u8
    }
    pub fn sampling_interval(&self) -> u16 {
        self.sampling & 0x3fff
    }
    /// observation_domain_id of this exporter's records.
    pub fn domain(&self) -> u32 {
        u32::from(self.engine_type) << 8 | u32::from(self.engine_id)
    }
    pub fn clock(&self) -> ExportClock {
        ExportClock {
            export_ns: u64::from(self.unix_secs) * 1_000_000_000 + u64::from(self.unix_nsecs),
            uptime_ms: Some(self.sys_uptime_ms),
        }
    }
    pub fn emit(&self, out: &mut [u8]) {
        if let Some(h) = out.get_mut(..field::HEADER_LEN) {
            h[field::VERSION].copy_from_slice(&VERSION.to_be_bytes());
            h[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
            h[field::SYS_UPTIME].copy_from_slice(&self.sys_uptime_ms.to_be_bytes());
            h[field::UNIX_SECS].copy_from_slice(&self.unix_secs.to_be_bytes());
            h[field::UNIX_NSECS].copy_from_slice(&self.unix_nsecs.to_be_bytes());
            h[field::FLOW_SEQUENCE].copy_from_slice(&self.flow_sequence.to_be_bytes());
            h[field::ENGINE_TYPE] = self.engine_type;
            h[field::ENGINE_ID] = self.engine_id;
            h[field::SAMPLING].copy_from_slice(&self.sampling.to_be_bytes());
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordRepr {
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub next_hop: [u8; 4],
    pub input: u16,
    pub output: u16,
    pub packets: u32,
    pub octets: u32,
    /// sysUpTime (ms) at the first packet.
    pub first_ms: u32,
    pub last_ms: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub proto: u8,
    pub tos: u8,
    pub src_as: u16,
    pub dst_as: u16,
    pub src_mask: u8,
    pub dst_mask: u8,
}

/// A record's bytes by field (`field`'s ranges as a struct): reading a field of a record already
/// known to be 48 bytes long needs no check.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct RawRecord {
    src_addr: [u8; 4],
    dst_addr: [u8; 4],
    next_hop: [u8; 4],
    input: [u8; 2],
    output: [u8; 2],
    packets: [u8; 4],
    octets: [u8; 4],
    first: [u8; 4],
    last: [u8; 4],
    src_port: [u8; 2],
    dst_port: [u8; 2],
    pad1: u8,
    tcp_flags: u8,
    proto: u8,
    tos: u8,
    src_as: [u8; 2],
    dst_as: [u8; 2],
    src_mask: u8,
    dst_mask: u8,
    pad2: [u8; 2],
}

impl RecordRepr {
    #[inline(always)]
    pub fn parse(r: &[u8; field::RECORD_LEN]) -> RecordRepr {
        let r: &RawRecord = bytemuck::cast_ref(r);
        RecordRepr {
            src_addr: r.src_addr,
            dst_addr: r.dst_addr,
            next_hop: r.next_hop,
            input: u16::from_be_bytes(r.input),
            output: u16::from_be_bytes(r.output),
            packets: u32::from_be_bytes(r.packets),
            octets: u32::from_be_bytes(r.octets),
            first_ms: u32::from_be_bytes(r.first),
            last_ms: u32::from_be_bytes(r.last),
            src_port: u16::from_be_bytes(r.src_port),
            dst_port: u16::from_be_bytes(r.dst_port),
            tcp_flags: r.tcp_flags,
            proto: r.proto,
            tos: r.tos,
            src_as: u16::from_be_bytes(r.src_as),
            dst_as: u16::from_be_bytes(r.dst_as),
            src_mask: r.src_mask,
            dst_mask: r.dst_mask,
        }
    }

    pub fn emit(&self, r: &mut [u8; field::RECORD_LEN]) {
        *r = [0; field::RECORD_LEN];
        r[field::SRC_ADDR].copy_from_slice(&self.src_addr);
        r[field::DST_ADDR].copy_from_slice(&self.dst_addr);
        r[field::NEXT_HOP].copy_from_slice(&self.next_hop);
        r[field::INPUT].copy_from_slice(&self.input.to_be_bytes());
        r[field::OUTPUT].copy_from_slice(&self.output.to_be_bytes());
        r[field::PACKETS].copy_from_slice(&self.packets.to_be_bytes());
        r[field::OCTETS].copy_from_slice(&self.octets.to_be_bytes());
        r[field::FIRST].copy_from_slice(&self.first_ms.to_be_bytes());
        r[field::LAST].copy_from_slice(&self.last_ms.to_be_bytes());
        r[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        r[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        r[field::TCP_FLAGS] = self.tcp_flags;
        r[field::PROTO] = self.proto;
        r[field::TOS] = self.tos;
        r[field::SRC_AS].copy_from_slice(&self.src_as.to_be_bytes());
        r[field::DST_AS].copy_from_slice(&self.dst_as.to_be_bytes());
        r[field::SRC_MASK] = self.src_mask;
        r[field::DST_MASK] = self.dst_mask;
    }

    /// The v5 record for a flow record (IPv4 addresses taken from the mapped form; counters and
    /// fields wider than v5's are truncated), its times made relative to `header`'s clock.
    pub fn from_flow(rec: &FlowRecord, header: &HeaderRepr) -> RecordRepr {
        let low4 = |a: &[u8; 16]| [a[12], a[13], a[14], a[15]];
        let clock = header.clock();
        let uptime = |ns: u64| {
            let ago_ms = clock.export_ns.saturating_sub(ns) / 1_000_000;
            header.sys_uptime_ms.wrapping_sub(ago_ms as u32)
        };
        RecordRepr {
            src_addr: low4(&rec.src_addr),
            dst_addr: low4(&rec.dst_addr),
            next_hop: low4(&rec.next_hop),
            input: rec.in_if as u16,
            output: rec.out_if as u16,
            packets: rec.packets as u32,
            octets: rec.bytes as u32,
            first_ms: uptime(rec.time_flow_start_ns),
            last_ms: uptime(rec.time_flow_end_ns),
            src_port: rec.src_port,
            dst_port: rec.dst_port,
            tcp_flags: rec.tcp_flags as u8,
            proto: rec.proto,
            tos: rec.ip_tos,
            src_as: rec.src_as as u16,
            dst_as: rec.dst_as as u16,
            src_mask: rec.src_net,
            dst_mask: rec.dst_net,
        }
    }
}

/// Append a v5 datagram (header with `count` set from `records`, at most 30 of them) to `out`.
pub fn emit(header: &HeaderRepr, records: &[RecordRepr], out: &mut Vec<u8>) {
    let records = &records[..records.len().min(MAX_RECORDS)];
    let start = out.len();
    out.resize(
        start + field::HEADER_LEN + records.len() * field::RECORD_LEN,
        0,
    );
    let header = HeaderRepr {
        count: records.len() as u16,
        ..*header
    };
    header.emit(&mut out[start..]);
    let body = &mut out[start + field::HEADER_LEN..];
    for (r, chunk) in records.iter().zip(body.chunks_exact_mut(field::RECORD_LEN)) {
        if let Ok(chunk) = <&mut [u8; field::RECORD_LEN]>::try_from(chunk) {
            r.emit(chunk);
        }
    }
}

/// Store an IPv4 address into the low four bytes of an IPv4-mapped address whose prefix is set.
#[inline(always)]
fn set_ipv4(mapped: &mut [u8; 16], octets: [u8; 4]) {
    let [.., a, b, c, d] = mapped;
    [*a, *b, *c, *d] = octets;
}

/// What one decoded v5 datagram says for sequence tracking and sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub records: u32,
    pub header: HeaderRepr,
}

/// Decode one v5 datagram into `sink`, each record's `sampling_rate` being `rate(header)`.
pub fn decode(
    meta: &DatagramMeta,
    datagram: &[u8],
    rate: impl FnOnce(&HeaderRepr) -> u32,
    sink: &mut impl RecordSink,
) -> Result<Outcome, ErrorReason> {
    let packet = Packet::new_checked(datagram)?;
    let header = packet.header();
    let clock = header.clock();
    let mut base = FlowRecord::zeroed();
    base.flow_type = FlowType::NetflowV5 as u8;
    base.time_received_ns = meta.received_ns;
    base.exporter_addr = addr_to_bytes(meta.exporter.ip());
    base.exporter_port = meta.exporter.port();
    base.observation_domain_id = header.domain();
    base.sequence_num = header.flow_sequence;
    base.sampling_rate = rate(&header);
    base.etype = 0x0800;
    // One record image per datagram: every v5 field is overwritten by every record, and the
    // IPv4-mapped prefix of the three addresses is the same for all, so per record only the
    // record's own bytes are stored (no 256-byte copy, no 16-byte address build).
    base.src_addr = ipv4_bytes([0; 4]);
    base.dst_addr = ipv4_bytes([0; 4]);
    base.next_hop = ipv4_bytes([0; 4]);
    let rec = &mut base;
    let (raws, _) = packet.records().as_chunks::<{ field::RECORD_LEN }>();
    let mut records = 0;
    for raw in raws {
        let r = RecordRepr::parse(raw);
        set_ipv4(&mut rec.src_addr, r.src_addr);
        set_ipv4(&mut rec.dst_addr, r.dst_addr);
        set_ipv4(&mut rec.next_hop, r.next_hop);
        rec.in_if = r.input.into();
        rec.out_if = r.output.into();
        rec.packets = r.packets.into();
        rec.bytes = r.octets.into();
        rec.time_flow_start_ns = uptime_to_ns(clock.export_ns, header.sys_uptime_ms, r.first_ms);
        rec.time_flow_end_ns = uptime_to_ns(clock.export_ns, header.sys_uptime_ms, r.last_ms);
        rec.src_port = r.src_port;
        rec.dst_port = r.dst_port;
        rec.tcp_flags = r.tcp_flags.into();
        rec.proto = r.proto;
        rec.ip_tos = r.tos;
        rec.src_as = r.src_as.into();
        rec.dst_as = r.dst_as.into();
        rec.src_net = r.src_mask;
        rec.dst_net = r.dst_mask;
        sink.flow(rec);
        records += 1;
    }
    Ok(Outcome { records, header })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_support::{T0, errors, run};
    use crate::decode::{Decoder, DecoderConfig, Protocol, sampling::ConfiguredRate};

    const EXPORTER: &str = "192.0.2.20:2055";

    /// Header (2 records, uptime 100 s, export 1700000000.5, sequence 100, engine 1/2, sampling
    /// mode 1 interval 100) and two records.
    #[rustfmt::skip]
    static DATAGRAM: [u8; 120] = [
        0x00, 0x05, 0x00, 0x02, 0x00, 0x01, 0x86, 0xa0, 0x65, 0x53, 0xf1, 0x00, 0x1d, 0xcd, 0x65, 0x00,
        0x00, 0x00, 0x00, 0x64, 0x01, 0x02, 0x40, 0x64,
        // record 1: 10.0.0.1 → 10.0.0.2 via 0.0.0.0, in 1 out 65534, 10 pkts, 1500 B,
        // first 90 s, last 99 s, 12345 → 80, flags 0x1b, TCP, tos 0x10, AS 65000 → 0, /24 → /16
        10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0x00, 0x01, 0xff, 0xfe,
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x5f, 0x90, 0x00, 0x01, 0x82, 0xb8,
        0x30, 0x39, 0x00, 0x50, 0x00, 0x1b, 0x06, 0x10, 0xfd, 0xe8, 0x00, 0x00, 24, 16, 0x00, 0x00,
        // record 2: 10.0.0.3 → 10.0.0.4, UDP 53 → 53, 1 pkt, 60 B, first = last = 100 s
        10, 0, 0, 3, 10, 0, 0, 4, 0, 0, 0, 0, 0x00, 0x02, 0x00, 0x03,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x01, 0x86, 0xa0,
        0x00, 0x35, 0x00, 0x35, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 0x00, 0x00,
    ];

    fn header() -> HeaderRepr {
        HeaderRepr {
            count: 2,
            sys_uptime_ms: 100_000,
            unix_secs: 1_700_000_000,
            unix_nsecs: 500_000_000,
            flow_sequence: 100,
            engine_type: 1,
            engine_id: 2,
            sampling: 0x4064,
        }
    }

    fn first() -> RecordRepr {
        RecordRepr {
            src_addr: [10, 0, 0, 1],
            dst_addr: [10, 0, 0, 2],
            next_hop: [0, 0, 0, 0],
            input: 1,
            output: 65534,
            packets: 10,
            octets: 1500,
            first_ms: 90_000,
            last_ms: 99_000,
            src_port: 12345,
            dst_port: 80,
            tcp_flags: 0x1b,
            proto: 6,
            tos: 0x10,
            src_as: 65000,
            dst_as: 0,
            src_mask: 24,
            dst_mask: 16,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.header(), header());
        assert_eq!(p.header().sampling_mode(), 1);
        assert_eq!(p.header().sampling_interval(), 100);
        assert_eq!(p.header().domain(), 0x0102);
        assert_eq!(RecordRepr::parse(p.record(0).unwrap()), first());
        assert!(p.record(2).is_none());
    }

    #[test]
    fn construct() {
        let second = RecordRepr::parse(
            Packet::new_checked(&DATAGRAM[..])
                .unwrap()
                .record(1)
                .unwrap(),
        );
        let mut out = Vec::new();
        emit(&header(), &[first(), second], &mut out);
        assert_eq!(out, DATAGRAM.to_vec());
    }

    #[test]
    fn decode_into_records() {
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &DATAGRAM);
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 2);
        let r = sink.flows[0];
        assert_eq!(r.flow_type(), FlowType::NetflowV5);
        assert_eq!(r.time_received_ns, T0);
        assert_eq!(r.exporter_addr, ipv4_bytes([192, 0, 2, 20]));
        assert_eq!(r.exporter_port, 2055);
        assert_eq!(r.observation_domain_id, 0x0102);
        assert_eq!(r.sequence_num, 100);
        assert_eq!(r.sampling_rate, 100);
        // Export 1700000000.5 s at uptime 100 s: first (90 s) is 10 s before, last 1 s before.
        assert_eq!(r.time_flow_start_ns, 1_699_999_990_500_000_000);
        assert_eq!(r.time_flow_end_ns, 1_699_999_999_500_000_000);
        assert_eq!(
            (r.src_addr, r.dst_addr),
            (ipv4_bytes([10, 0, 0, 1]), ipv4_bytes([10, 0, 0, 2]))
        );
        assert_eq!(r.next_hop, crate::record::IPV4_UNSPECIFIED);
        assert_eq!((r.in_if, r.out_if), (1, 65534));
        assert_eq!((r.packets, r.bytes), (10, 1500));
        assert_eq!((r.src_port, r.dst_port, r.proto), (12345, 80, 6));
        assert_eq!((r.tcp_flags, r.ip_tos, r.etype), (0x1b, 0x10, 0x0800));
        assert_eq!(
            (r.src_as, r.dst_as, r.src_net, r.dst_net),
            (65000, 0, 24, 16)
        );
        assert_eq!(sink.flows[1].time_flow_end_ns, 1_700_000_000_500_000_000);
        assert_eq!(dec.stats.records[Protocol::NetflowV5.index()], 2);
        assert_eq!(dec.stats.sampling_rates_learned, 1);
    }

    #[test]
    fn from_flow_round_trips() {
        let mut dec = Decoder::new();
        let (sink, _) = run(&mut dec, EXPORTER, &DATAGRAM);
        assert_eq!(RecordRepr::from_flow(&sink.flows[0], &header()), first());
    }

    #[test]
    fn configured_rate_fills_unsampled_header_and_override_wins() {
        let cfg = |over| DecoderConfig {
            sampling: vec![ConfiguredRate {
                prefix: "192.0.2.0".parse().unwrap(),
                prefix_len: 24,
                rate: 400,
                override_exported: over,
            }],
            ..Default::default()
        };
        let mut unsampled = DATAGRAM;
        unsampled[22] = 0;
        unsampled[23] = 0;
        let mut dec = Decoder::with_config(cfg(false));
        assert_eq!(
            run(&mut dec, EXPORTER, &unsampled).0.flows[0].sampling_rate,
            400
        );
        assert_eq!(
            run(&mut dec, EXPORTER, &DATAGRAM).0.flows[0].sampling_rate,
            100
        );
        let mut dec = Decoder::with_config(cfg(true));
        assert_eq!(
            run(&mut dec, EXPORTER, &DATAGRAM).0.flows[0].sampling_rate,
            400
        );
        let mut dec = Decoder::new();
        assert_eq!(
            run(&mut dec, EXPORTER, &unsampled).0.flows[0].sampling_rate,
            0
        );
    }

    #[test]
    fn sequence_counts_flows() {
        let mut dec = Decoder::new();
        let with_seq = |seq: u32| {
            let mut d = DATAGRAM;
            d[16..20].copy_from_slice(&seq.to_be_bytes());
            d
        };
        for seq in [100, 102, 110, 104] {
            assert_eq!(run(&mut dec, EXPORTER, &with_seq(seq)).1, Ok(()));
        }
        let (space, counts) = dec.sequence_counts().next().unwrap();
        assert_eq!(
            (space.protocol, space.domain),
            (Protocol::NetflowV5, 0x0102)
        );
        // 102 → 110 skips 6 flows; 104 arrives late and gives back its 2.
        assert_eq!((counts.lost, counts.late, counts.restarts), (4, 1, 0));
    }

    #[test]
    fn malformed_datagrams() {
        let mut dec = Decoder::new();
        assert_eq!(
            run(&mut dec, EXPORTER, &DATAGRAM[..23]).1,
            Err(ErrorReason::TruncatedHeader)
        );
        let mut zero = DATAGRAM;
        zero[3] = 0;
        assert_eq!(
            run(&mut dec, EXPORTER, &zero).1,
            Err(ErrorReason::BadRecordCount)
        );
        let mut many = DATAGRAM;
        many[3] = 31;
        assert_eq!(
            run(&mut dec, EXPORTER, &many).1,
            Err(ErrorReason::BadRecordCount)
        );
        assert_eq!(
            run(&mut dec, EXPORTER, &DATAGRAM[..119]).1,
            Err(ErrorReason::BadRecordCount)
        );
        assert_eq!(errors(&dec, ErrorReason::BadRecordCount), 3);
        assert_eq!(errors(&dec, ErrorReason::TruncatedHeader), 1);
        assert_eq!(dec.stats.records[Protocol::NetflowV5.index()], 0);
    }
}
