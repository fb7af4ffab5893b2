//! NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records, IPv4 only.
//!
//! Times in records are sysUpTime-relative milliseconds; they become absolute with the header's
//! `sys_uptime` and `unix_secs`/`unix_nsecs`. The header's sampling field holds the mode in its top
//! 2 bits and the interval (1 in N) in its low 14; engine type/id become the observation domain
//! (`type << 8 | id`). The sequence number counts flows (span of a datagram = its record count).
//! Bytes after the `count` records are not decoded and make the datagram `trailing_bytes` (its
//! records are kept): v5 has no padding.
//! OVS sends OpenFlow port numbers as interfaces and zero next hop / AS / masks, all kept as sent.
//!
//! Decoding writes one record image per datagram and, per record, only that record's fields: with
//! SSSE3 (detected at run time) six byte shuffles and one vector time computation, else a scalar
//! loop; tests hold both to a field-by-field reference (`BENCHMARKS.md`: instructions per record).

use super::ipfix::{be16, be32};
use super::time::{ExportClock, UptimeBase};
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
    /// The records' bytes (exactly `count` records: `new_checked` made sure they are there).
    pub fn records(&self) -> &[u8] {
        let end = field::HEADER_LEN + self.count() * field::RECORD_LEN;
        self.buffer
            .as_ref()
            .get(field::HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// The 48 bytes of record `i` (`None` past the count).
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
    /// Bytes of the datagram after its `count` records (not decoded).
    pub trailing_bytes: usize,
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
    let (raws, _) = packet.records().as_chunks::<{ field::RECORD_LEN }>();
    let times = UptimeBase::new(header.clock().export_ns, header.sys_uptime_ms);
    records(raws, &mut base, times, sink);
    Ok(Outcome {
        records: raws.len() as u32,
        header,
        trailing_bytes: datagram
            .len()
            .saturating_sub(field::HEADER_LEN + raws.len() * field::RECORD_LEN),
    })
}

/// Decode `raws` into `rec` (a record image whose per-datagram fields are set, the per-record
/// ones zero) and hand each to `sink`: the SSSE3 loop when the CPU has it and no time needs a clamp
/// to the epoch, else the scalar one.
#[inline(always)]
fn records(
    raws: &[[u8; field::RECORD_LEN]],
    rec: &mut FlowRecord,
    times: UptimeBase,
    sink: &mut impl RecordSink,
) {
    // Export times before 1970-01-25 (an exporter without a clock) may need the clamp.
    if !times.never_clamps() {
        return records_scalar::<true>(raws, rec, times, sink);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3 (checked just above), the one requirement for calling a
        // `#[target_feature(enable = "ssse3")]` function; the function itself is safe code.
        unsafe { ssse3::records(raws, rec, times, sink) };
        return;
    }
    records_scalar::<false>(raws, rec, times, sink);
}

/// The portable record loop. `CLAMP` is false only when `times.never_clamps()`.
#[inline(always)]
fn records_scalar<const CLAMP: bool>(
    raws: &[[u8; field::RECORD_LEN]],
    rec: &mut FlowRecord,
    times: UptimeBase,
    sink: &mut impl RecordSink,
) {
    let time = |raw: [u8; 4]| {
        let t = u32::from_be_bytes(raw);
        if CLAMP {
            times.ns(t)
        } else {
            times.signed_ns(t) as u64
        }
    };
    // Adjacent 16-bit fields: one load and byte swap per pair.
    let pair = |a: [u8; 2], b: [u8; 2]| u32::from_be_bytes([a[0], a[1], b[0], b[1]]);
    for raw in raws {
        let r: &RawRecord = bytemuck::cast_ref(raw);
        rec.time_flow_start_ns = time(r.first);
        rec.time_flow_end_ns = time(r.last);
        rec.bytes = u32::from_be_bytes(r.octets).into();
        rec.packets = u32::from_be_bytes(r.packets).into();
        set_ipv4(&mut rec.src_addr, r.src_addr);
        set_ipv4(&mut rec.dst_addr, r.dst_addr);
        set_ipv4(&mut rec.next_hop, r.next_hop);
        let interfaces = pair(r.input, r.output);
        rec.in_if = interfaces >> 16;
        rec.out_if = interfaces & 0xffff;
        let asns = pair(r.src_as, r.dst_as);
        rec.src_as = asns >> 16;
        rec.dst_as = asns & 0xffff;
        let ports = pair(r.src_port, r.dst_port);
        rec.src_port = (ports >> 16) as u16;
        rec.dst_port = ports as u16;
        rec.tcp_flags = r.tcp_flags.into();
        rec.proto = r.proto;
        rec.ip_tos = r.tos;
        rec.src_net = r.src_mask;
        rec.dst_net = r.dst_mask;
        sink.flow(rec);
    }
}

/// The record loop with SSSE3 byte shuffles (`pshufb`): each 16-byte stretch of the record that v5
/// fills is one shuffle of 16 wire bytes (big-endian fields byte-swapped and zero-extended, fields
/// from elsewhere zeroed), OR'd with the stretch's per-datagram bytes; both times are computed
/// together with [`UptimeBase`]'s unsigned form (two 32-bit additions, two 32×32→64 products).
/// The addresses stay scalar (4 bytes each into a prefix set once). Held equal to
/// [`records_scalar`] by the tests below.
#[cfg(target_arch = "x86_64")]
mod ssse3 {
    use super::{RecordSink, field};
    use crate::decode::time::UptimeBase;
    use crate::record::FlowRecord;
    use core::mem::offset_of;
    use core::ops::Range;
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_add_epi64, _mm_mul_epu32, _mm_or_si128, _mm_set_epi32,
        _mm_set1_epi64x, _mm_shuffle_epi8,
    };

    /// The record's 16-byte stretches written per record, by their offset in [`FlowRecord`].
    const TIMES: usize = offset_of!(FlowRecord, time_flow_start_ns);
    const COUNTERS: usize = offset_of!(FlowRecord, bytes);
    const INTERFACES: usize = offset_of!(FlowRecord, in_if);
    const PORTS: usize = offset_of!(FlowRecord, exporter_port);
    const PROTO: usize = offset_of!(FlowRecord, flow_type);

    /// The wire record's three 16-byte thirds, by their offset in the record.
    const A: usize = 0;
    const B: usize = 16;
    const C: usize = 32;

    /// Record offset of a [`FlowRecord`] field.
    macro_rules! at {
        ($field:ident) => {
            offset_of!(FlowRecord, $field)
        };
    }

    /// The shuffle that fills the record's 16 bytes at `stretch` from the wire record's 16 bytes
    /// at `third`: each `(record offset, wire bytes)` move puts a big-endian wire field, byte-swapped,
    /// at its record offset; every other byte becomes zero (which also zero-extends each field to
    /// its record width). An offset outside the stretch or third fails the build.
    const fn mask(stretch: usize, third: usize, moves: &[(usize, Range<usize>)]) -> [u8; 16] {
        let mut mask = [0x80; 16];
        let mut i = 0;
        while i < moves.len() {
            let (to, from) = (moves[i].0, &moves[i].1);
            let mut k = 0;
            while k < from.end - from.start {
                mask[to - stretch + k] = (from.end - 1 - k - third) as u8;
                k += 1;
            }
            i += 1;
        }
        mask
    }

    /// The wire byte at `at`, as a one-byte field.
    const fn one(at: usize) -> Range<usize> {
        at..at + 1
    }

    const COUNTERS_FROM_B: [u8; 16] = mask(
        COUNTERS,
        B,
        &[(at!(bytes), field::OCTETS), (at!(packets), field::PACKETS)],
    );
    /// First and last, each byte-swapped into the low half of a 64-bit lane.
    const TIMES_FROM_B: [u8; 16] = mask(
        TIMES,
        B,
        &[
            (at!(time_flow_start_ns), field::FIRST),
            (at!(time_flow_end_ns), field::LAST),
        ],
    );
    const INTERFACES_FROM_A: [u8; 16] = mask(
        INTERFACES,
        A,
        &[(at!(in_if), field::INPUT), (at!(out_if), field::OUTPUT)],
    );
    const INTERFACES_FROM_C: [u8; 16] = mask(
        INTERFACES,
        C,
        &[(at!(src_as), field::SRC_AS), (at!(dst_as), field::DST_AS)],
    );
    const PORTS_FROM_C: [u8; 16] = mask(
        PORTS,
        C,
        &[
            (at!(src_port), field::SRC_PORT),
            (at!(dst_port), field::DST_PORT),
            (at!(tcp_flags), one(field::TCP_FLAGS)),
        ],
    );
    const PROTO_FROM_C: [u8; 16] = mask(
        PROTO,
        C,
        &[
            (at!(proto), one(field::PROTO)),
            (at!(ip_tos), one(field::TOS)),
            (at!(src_net), one(field::SRC_MASK)),
            (at!(dst_net), one(field::DST_MASK)),
        ],
    );
    // The layout the stretches assume: the times 8 bytes apart (one per 64-bit lane), and each
    // stretch's other bytes per-datagram fields (kept by the OR) or zero (v5 has no such field).
    const _: () = {
        assert!(at!(time_flow_end_ns) == TIMES + 8);
        assert!(at!(packets) == COUNTERS + 8);
        assert!(at!(dst_as) == INTERFACES + 12);
        assert!(at!(tunnel_dst_port) == PORTS + 14);
        assert!(at!(src_mac) == PROTO + 12);
    };

    /// The 16 bytes of `rec` at `at` (a constant: the check folds away).
    #[inline(always)]
    fn stretch(rec: &mut FlowRecord, at: usize) -> Option<&mut [u8; 16]> {
        bytemuck::bytes_of_mut(rec)
            .get_mut(at..)?
            .first_chunk_mut::<16>()
    }

    #[inline(always)]
    fn store(rec: &mut FlowRecord, at: usize, v: __m128i) {
        if let Some(s) = stretch(rec, at) {
            *s = bytemuck::cast(v);
        }
    }

    /// The v5 record loop (see the module doc). Needs `times.never_clamps()`.
    #[target_feature(enable = "ssse3")]
    pub(super) fn records(
        raws: &[[u8; field::RECORD_LEN]],
        rec: &mut FlowRecord,
        times: UptimeBase,
        sink: &mut impl RecordSink,
    ) {
        let v = bytemuck::cast::<[u8; 16], __m128i>;
        let mut fixed = |at| stretch(rec, at).map_or(v([0; 16]), |s| v(*s));
        // The per-datagram bytes of the stretches (exporter port, ethertype, flow type).
        let (ports_fixed, proto_fixed) = (fixed(PORTS), fixed(PROTO));
        let offset = times.offset_ms as i32;
        let offset = _mm_set_epi32(0, offset, 0, offset);
        let ms = _mm_set_epi32(0, 1_000_000, 0, 1_000_000);
        let low = _mm_set1_epi64x(times.low_ns);
        for raw in raws {
            let r: &super::RawRecord = bytemuck::cast_ref(raw);
            let [a, b, c]: [[u8; 16]; 3] = bytemuck::cast(*raw);
            let (a, b, c) = (v(a), v(b), v(c));
            let shuffle = |x, mask| _mm_shuffle_epi8(x, v(mask));
            let t = _mm_add_epi32(shuffle(b, TIMES_FROM_B), offset);
            store(rec, TIMES, _mm_add_epi64(_mm_mul_epu32(t, ms), low));
            store(rec, COUNTERS, shuffle(b, COUNTERS_FROM_B));
            super::set_ipv4(&mut rec.src_addr, r.src_addr);
            super::set_ipv4(&mut rec.dst_addr, r.dst_addr);
            super::set_ipv4(&mut rec.next_hop, r.next_hop);
            let interfaces =
                _mm_or_si128(shuffle(a, INTERFACES_FROM_A), shuffle(c, INTERFACES_FROM_C));
            store(rec, INTERFACES, interfaces);
            store(
                rec,
                PORTS,
                _mm_or_si128(shuffle(c, PORTS_FROM_C), ports_fixed),
            );
            store(
                rec,
                PROTO,
                _mm_or_si128(shuffle(c, PROTO_FROM_C), proto_fixed),
            );
            sink.flow(rec);
        }
    }
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

    /// What a v5 record must decode to, field by field from [`RecordRepr::parse`] and
    /// `uptime_to_ns`: the reference both record loops are held to.
    fn reference(
        meta: &DatagramMeta,
        header: &HeaderRepr,
        raw: &[u8; 48],
        rate: u32,
    ) -> FlowRecord {
        let r = RecordRepr::parse(raw);
        let export = header.clock().export_ns;
        let time = |t| crate::decode::time::uptime_to_ns(export, header.sys_uptime_ms, t);
        let mut f = FlowRecord::zeroed();
        f.flow_type = FlowType::NetflowV5 as u8;
        f.time_received_ns = meta.received_ns;
        f.exporter_addr = addr_to_bytes(meta.exporter.ip());
        f.exporter_port = meta.exporter.port();
        f.observation_domain_id = header.domain();
        f.sequence_num = header.flow_sequence;
        f.sampling_rate = rate;
        f.etype = 0x0800;
        f.src_addr = ipv4_bytes(r.src_addr);
        f.dst_addr = ipv4_bytes(r.dst_addr);
        f.next_hop = ipv4_bytes(r.next_hop);
        f.in_if = r.input.into();
        f.out_if = r.output.into();
        f.packets = r.packets.into();
        f.bytes = r.octets.into();
        f.time_flow_start_ns = time(r.first_ms);
        f.time_flow_end_ns = time(r.last_ms);
        f.src_port = r.src_port;
        f.dst_port = r.dst_port;
        f.tcp_flags = r.tcp_flags.into();
        f.proto = r.proto;
        f.ip_tos = r.tos;
        f.src_as = r.src_as.into();
        f.dst_as = r.dst_as.into();
        f.src_net = r.src_mask;
        f.dst_net = r.dst_mask;
        f
    }

    fn datagram_of(header: &HeaderRepr, raws: &[[u8; 48]]) -> Vec<u8> {
        let mut out = vec![0; field::HEADER_LEN];
        HeaderRepr {
            count: raws.len() as u16,
            ..*header
        }
        .emit(&mut out);
        raws.iter().for_each(|r| out.extend_from_slice(r));
        out
    }

    fn any_header() -> impl Strategy<Value = HeaderRepr> {
        // Export seconds near the epoch too: an exporter without a clock takes the clamped path.
        let secs = prop_oneof![0u32..3_000_000, any::<u32>()];
        (
            any::<u32>(),
            secs,
            0u32..1_000_000_000,
            any::<u32>(),
            any::<[u8; 2]>(),
            any::<u16>(),
        )
            .prop_map(|(uptime, secs, nsecs, seq, engine, sampling)| HeaderRepr {
                count: 0,
                sys_uptime_ms: uptime,
                unix_secs: secs,
                unix_nsecs: nsecs,
                flow_sequence: seq,
                engine_type: engine[0],
                engine_id: engine[1],
                sampling,
            })
    }

    fn any_exporter() -> impl Strategy<Value = std::net::SocketAddr> {
        (any::<bool>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(v4, a, port)| {
            let ip: std::net::IpAddr = if v4 {
                std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
            } else {
                std::net::Ipv6Addr::from(a).into()
            };
            (ip, port).into()
        })
    }

    use proptest::prelude::*;

    proptest! {
        /// Random bytes in every record field, any uptime (wrapped, skewed), export times near the
        /// epoch: the decoder (whichever loop it picks) equals the field-by-field reference.
        #[test]
        fn decode_matches_the_reference(
            header in any_header(),
            exporter in any_exporter(),
            received in any::<u64>(),
            rate in any::<u32>(),
            raws in prop::collection::vec(any::<[u8; 48]>(), 1..=MAX_RECORDS),
        ) {
            let meta = DatagramMeta { exporter, received_ns: received };
            let mut sink = crate::decode::Collected::default();
            let outcome = decode(&meta, &datagram_of(&header, &raws), |_| rate, &mut sink);
            prop_assert_eq!(outcome.map(|o| o.records), Ok(raws.len() as u32));
            prop_assert_eq!(sink.flows.len(), raws.len());
            for (raw, got) in raws.iter().zip(&sink.flows) {
                prop_assert_eq!(got, &reference(&meta, &header, raw, rate));
            }
        }

        /// The SSSE3 loop and the scalar one (with and without the clamp, which cannot matter
        /// here) write the same records from the same random bytes and record image.
        #[test]
        fn ssse3_equals_scalar(
            export in (1u64 << 51)..u64::MAX,
            uptime in any::<u32>(),
            image in any::<[u8; 32]>(),
            raws in prop::collection::vec(any::<[u8; 48]>(), 1..=MAX_RECORDS),
        ) {
            let times = UptimeBase::new(export, uptime);
            prop_assert!(times.never_clamps());
            // Per-datagram fields from random bytes, the per-record ones zero (as decode leaves them).
            let mut base = FlowRecord::zeroed();
            base.time_received_ns = u64::from_le_bytes(image[..8].try_into().unwrap());
            base.exporter_addr = image[8..24].try_into().unwrap();
            base.exporter_port = u16::from_le_bytes([image[24], image[25]]);
            base.sampling_rate = u32::from_le_bytes(image[26..30].try_into().unwrap());
            (base.flow_type, base.etype) = (image[30], u16::from(image[31]));
            base.src_addr = ipv4_bytes([0; 4]);
            base.dst_addr = ipv4_bytes([0; 4]);
            let run = |loop_: &dyn Fn(&mut FlowRecord, &mut crate::decode::Collected)| {
                let (mut rec, mut sink) = (base, crate::decode::Collected::default());
                loop_(&mut rec, &mut sink);
                sink.flows
            };
            let scalar = run(&|rec, sink| records_scalar::<false>(&raws, rec, times, sink));
            let clamped = run(&|rec, sink| records_scalar::<true>(&raws, rec, times, sink));
            prop_assert_eq!(&scalar, &clamped);
            prop_assert_eq!(scalar.len(), raws.len());
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("ssse3") {
                // SAFETY: SSSE3 checked just above.
                let simd = run(&|rec, sink| unsafe { ssse3::records(&raws, rec, times, sink) });
                prop_assert_eq!(&simd, &scalar);
            }
        }
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

    #[test]
    fn thirty_records_decode_and_thirty_one_are_refused() {
        // A datagram that really carries its records, 30 of them: all decoded. The same with a
        // 31st record and count 31: refused for the count, not for being short.
        let records: Vec<RecordRepr> = (0..31u8)
            .map(|i| RecordRepr {
                src_addr: [10, 0, 0, i],
                ..first()
            })
            .collect();
        let mut thirty = Vec::new();
        emit(&header(), &records[..30], &mut thirty);
        assert_eq!(thirty.len(), 24 + 30 * 48);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &thirty);
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 30);
        assert_eq!(sink.flows[29].src_addr, ipv4_bytes([10, 0, 0, 29]));
        let mut thirty_one = thirty;
        thirty_one[field::COUNT].copy_from_slice(&31u16.to_be_bytes());
        let mut last = [0; field::RECORD_LEN];
        records[30].emit(&mut last);
        thirty_one.extend_from_slice(&last);
        assert_eq!(thirty_one.len(), 24 + 31 * 48);
        let (sink, result) = run(&mut dec, EXPORTER, &thirty_one);
        assert_eq!(result, Err(ErrorReason::BadRecordCount));
        assert!(sink.flows.is_empty());
        assert_eq!(errors(&dec, ErrorReason::BadRecordCount), 1);
        assert_eq!(dec.stats.records[Protocol::NetflowV5.index()], 30);
    }

    #[test]
    fn bytes_after_the_records_are_counted() {
        // v5 has no padding: bytes after the `count` records (here 4) are not decoded and the
        // datagram counts as trailing_bytes; its records are kept and count for the sequence.
        let long = [&DATAGRAM[..], &[0, 0, 0, 0]].concat();
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &long);
        assert_eq!(result, Err(ErrorReason::TrailingBytes));
        assert_eq!(sink.flows.len(), 2);
        assert_eq!(errors(&dec, ErrorReason::TrailingBytes), 1);
        assert_eq!(dec.stats.records[Protocol::NetflowV5.index()], 2);
        let mut next = DATAGRAM;
        next[16..20].copy_from_slice(&102u32.to_be_bytes());
        assert_eq!(run(&mut dec, EXPORTER, &next).1, Ok(()));
        let (_, counts) = dec.sequence_counts().next().unwrap();
        assert_eq!(counts.lost, 0);
        assert_eq!(run(&mut dec, EXPORTER, &DATAGRAM).1, Ok(()), "exact length");
        assert_eq!(errors(&dec, ErrorReason::TrailingBytes), 1);
    }
}
