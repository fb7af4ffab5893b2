//! Information elements (IPFIX IANA registry, NetFlow v9 field types, OVS PEN 6876) → flow record
//! fields, and back for the encoders.
//!
//! This module owns the meaning of every element the decoders map: which [`Slot`] of a decoded
//! record it fills, how its bytes convert ([`Action`]), which lengths its type allows (reduced-size
//! encoding: unsigned counters in any length from 1 to their natural size, big-endian) and its
//! *rank* among elements that fill the same slot. The template compiler keeps, per slot, the
//! element with the best rank (first by position among equals) and turns every other one into a
//! skip, so precedence rules ("total counts only when the delta is absent", "layer-2 octets only
//! when octetDeltaCount is absent", "the first of a repeated element wins") cost nothing per record.
//! Elements not listed here are skipped by length; listed ones sent with a length their type
//! cannot have are skipped too, and counted (`field_skipped`, per record), as are values too wide
//! for their record field (observationPointId and selectorId are unsigned64, their record fields
//! 32 bits: a wider value is left out, the record field zero).

use super::time::{ExportClock, TimeKind};
use crate::record::FlowRecord;

/// Private enterprise number of Open vSwitch (Nicira) elements.
pub const PEN_OVS: u32 = 6876;

/// What one compiled step does with its field's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Skip,
    Bytes,
    Packets,
    Proto,
    Tos,
    /// ipDiffServCodePoint (195): DSCP, stored as the ToS byte (`dscp << 2`).
    Dscp,
    TcpFlags,
    SrcPort,
    DstPort,
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    NextHopV4,
    NextHopV6,
    /// The template carries both address families for the source (destination, next hop): store
    /// the 4- or 16-byte value only when it is non-zero, so the other family's all-zero field
    /// cannot erase it.
    SrcEither,
    DstEither,
    NextHopEither,
    SrcAs,
    DstAs,
    FlowLabel,
    /// icmpTypeCodeIPv4/IPv6 (32/139): type in the high byte, code in the low byte.
    IcmpTypeCode,
    IcmpType,
    IcmpCode,
    SrcMac,
    DstMac,
    Vlan,
    Direction,
    EndReason,
    ObservationPoint,
    Ttl,
    Etype,
    /// ipVersion (60): sets the ethertype when no ethernetType (256) is sent.
    IpVersion,
    TunnelType,
    TunnelKey,
    TunnelSrcV4,
    TunnelDstV4,
    TunnelProto,
    TunnelSrcPort,
    TunnelDstPort,
    Start,
    End,
    InitMs,
    SamplerId,
    SamplingInterval,
    SelectorAlgorithm,
    PacketInterval,
    PacketSpace,
    SamplingSize,
    SamplingPopulation,
}

impl Action {
    /// Every action, in declaration order (`ALL[a as usize] == a`).
    pub const ALL: [Action; 54] = [
        Action::Skip,
        Action::Bytes,
        Action::Packets,
        Action::Proto,
        Action::Tos,
        Action::Dscp,
        Action::TcpFlags,
        Action::SrcPort,
        Action::DstPort,
        Action::SrcV4,
        Action::DstV4,
        Action::SrcV6,
        Action::DstV6,
        Action::SrcMask,
        Action::DstMask,
        Action::InIf,
        Action::OutIf,
        Action::NextHopV4,
        Action::NextHopV6,
        Action::SrcEither,
        Action::DstEither,
        Action::NextHopEither,
        Action::SrcAs,
        Action::DstAs,
        Action::FlowLabel,
        Action::IcmpTypeCode,
        Action::IcmpType,
        Action::IcmpCode,
        Action::SrcMac,
        Action::DstMac,
        Action::Vlan,
        Action::Direction,
        Action::EndReason,
        Action::ObservationPoint,
        Action::Ttl,
        Action::Etype,
        Action::IpVersion,
        Action::TunnelType,
        Action::TunnelKey,
        Action::TunnelSrcV4,
        Action::TunnelDstV4,
        Action::TunnelProto,
        Action::TunnelSrcPort,
        Action::TunnelDstPort,
        Action::Start,
        Action::End,
        Action::InitMs,
        Action::SamplerId,
        Action::SamplingInterval,
        Action::SelectorAlgorithm,
        Action::PacketInterval,
        Action::PacketSpace,
        Action::SamplingSize,
        Action::SamplingPopulation,
    ];

    /// The action stored as `value` (a compiled step keeps it as a byte).
    pub fn from_index(value: u8) -> Option<Action> {
        Action::ALL.get(usize::from(value)).copied()
    }
}

/// The destination an element fills; at most one element per slot survives compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Slot {
    Bytes,
    Packets,
    Proto,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    Src,
    Dst,
    /// IPv6 addresses claim their own slots: a template may carry both families (see
    /// [`Action::SrcEither`]).
    Src6,
    Dst6,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    NextHop,
    NextHop6,
    SrcAs,
    DstAs,
    FlowLabel,
    IcmpType,
    IcmpCode,
    SrcMac,
    DstMac,
    Vlan,
    Direction,
    EndReason,
    ObservationPoint,
    Ttl,
    Etype,
    TunnelType,
    TunnelKey,
    TunnelSrc,
    TunnelDst,
    TunnelProto,
    TunnelSrcPort,
    TunnelDstPort,
    Start,
    End,
    InitMs,
    SamplerId,
    SamplingInterval,
    SelectorAlgorithm,
    PacketInterval,
    PacketSpace,
    SamplingSize,
    SamplingPopulation,
}

impl Slot {
    /// Number of slots (size of the compiler's claim table).
    pub const COUNT: usize = Slot::SamplingPopulation as usize + 1;
}

/// Which field lengths an element's type allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// Unsigned integer, reduced-size encoding allowed: 1..=n bytes.
    Uint(u8),
    /// Exactly n bytes (addresses, MACs, 64-bit timestamps).
    Exact(u8),
}

impl Width {
    pub const fn allows(self, len: usize) -> bool {
        match self {
            Width::Uint(n) => len >= 1 && len <= n as usize,
            Width::Exact(n) => len == n as usize,
        }
    }
}

/// How the decoders treat one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementSpec {
    pub action: Action,
    pub slot: Slot,
    /// Lower wins among elements of one slot; equal ranks: first by position.
    pub rank: u8,
    pub width: Width,
    /// Time base, for the `Start`/`End` slots.
    pub time: TimeKind,
}

const fn spec(action: Action, slot: Slot, rank: u8, width: Width) -> ElementSpec {
    ElementSpec {
        action,
        slot,
        rank,
        width,
        time: TimeKind::Absent,
    }
}

const fn time(slot: Slot, kind: TimeKind, rank: u8, width: Width) -> ElementSpec {
    let action = match slot {
        Slot::Start => Action::Start,
        _ => Action::End,
    };
    ElementSpec {
        action,
        slot,
        rank,
        width,
        time: kind,
    }
}

/// The spec of element `id` of enterprise `pen` (0 = IANA / NetFlow v9), or `None` to skip it.
pub const fn lookup(pen: u32, id: u16) -> Option<ElementSpec> {
    use Action as A;
    use Slot as S;
    use Width::{Exact, Uint};
    if pen == PEN_OVS {
        return match id {
            891 => Some(spec(A::TunnelType, S::TunnelType, 0, Uint(1))),
            892 => Some(spec(A::TunnelKey, S::TunnelKey, 0, Uint(8))),
            893 => Some(spec(A::TunnelSrcV4, S::TunnelSrc, 0, Exact(4))),
            894 => Some(spec(A::TunnelDstV4, S::TunnelDst, 0, Exact(4))),
            895 => Some(spec(A::TunnelProto, S::TunnelProto, 0, Uint(1))),
            896 => Some(spec(A::TunnelSrcPort, S::TunnelSrcPort, 0, Uint(2))),
            897 => Some(spec(A::TunnelDstPort, S::TunnelDstPort, 0, Uint(2))),
            _ => None,
        };
    }
    if pen != 0 {
        return None;
    }
    Some(match id {
        1 => spec(A::Bytes, S::Bytes, 0, Uint(8)),
        85 => spec(A::Bytes, S::Bytes, 1, Uint(8)),
        352 => spec(A::Bytes, S::Bytes, 2, Uint(8)),
        353 => spec(A::Bytes, S::Bytes, 3, Uint(8)),
        2 => spec(A::Packets, S::Packets, 0, Uint(8)),
        86 => spec(A::Packets, S::Packets, 1, Uint(8)),
        4 => spec(A::Proto, S::Proto, 0, Uint(1)),
        5 => spec(A::Tos, S::Tos, 0, Uint(1)),
        195 => spec(A::Dscp, S::Tos, 1, Uint(1)),
        6 => spec(A::TcpFlags, S::TcpFlags, 0, Uint(2)),
        7 => spec(A::SrcPort, S::SrcPort, 0, Uint(2)),
        11 => spec(A::DstPort, S::DstPort, 0, Uint(2)),
        8 => spec(A::SrcV4, S::Src, 0, Exact(4)),
        27 => spec(A::SrcV6, S::Src6, 0, Exact(16)),
        12 => spec(A::DstV4, S::Dst, 0, Exact(4)),
        28 => spec(A::DstV6, S::Dst6, 0, Exact(16)),
        9 | 29 => spec(A::SrcMask, S::SrcMask, 0, Uint(1)),
        13 | 30 => spec(A::DstMask, S::DstMask, 0, Uint(1)),
        10 => spec(A::InIf, S::InIf, 0, Uint(4)),
        14 => spec(A::OutIf, S::OutIf, 0, Uint(4)),
        15 => spec(A::NextHopV4, S::NextHop, 0, Exact(4)),
        62 => spec(A::NextHopV6, S::NextHop6, 0, Exact(16)),
        16 => spec(A::SrcAs, S::SrcAs, 0, Uint(4)),
        17 => spec(A::DstAs, S::DstAs, 0, Uint(4)),
        31 => spec(A::FlowLabel, S::FlowLabel, 0, Uint(4)),
        176 | 178 => spec(A::IcmpType, S::IcmpType, 0, Uint(1)),
        177 | 179 => spec(A::IcmpCode, S::IcmpCode, 0, Uint(1)),
        32 | 139 => spec(A::IcmpTypeCode, S::IcmpType, 1, Uint(2)),
        56 => spec(A::SrcMac, S::SrcMac, 0, Exact(6)),
        81 => spec(A::SrcMac, S::SrcMac, 1, Exact(6)),
        80 => spec(A::DstMac, S::DstMac, 0, Exact(6)),
        57 => spec(A::DstMac, S::DstMac, 1, Exact(6)),
        58 => spec(A::Vlan, S::Vlan, 0, Uint(2)),
        243 => spec(A::Vlan, S::Vlan, 1, Uint(2)),
        61 => spec(A::Direction, S::Direction, 0, Uint(1)),
        136 => spec(A::EndReason, S::EndReason, 0, Uint(1)),
        138 => spec(A::ObservationPoint, S::ObservationPoint, 0, Uint(8)),
        192 => spec(A::Ttl, S::Ttl, 0, Uint(1)),
        256 => spec(A::Etype, S::Etype, 0, Uint(2)),
        60 => spec(A::IpVersion, S::Etype, 1, Uint(1)),
        156 => time(S::Start, TimeKind::NtpNanos, 0, Exact(8)),
        157 => time(S::End, TimeKind::NtpNanos, 0, Exact(8)),
        154 => time(S::Start, TimeKind::NtpMicros, 1, Exact(8)),
        155 => time(S::End, TimeKind::NtpMicros, 1, Exact(8)),
        152 => time(S::Start, TimeKind::Millis, 2, Uint(8)),
        153 => time(S::End, TimeKind::Millis, 2, Uint(8)),
        150 => time(S::Start, TimeKind::Seconds, 3, Uint(4)),
        151 => time(S::End, TimeKind::Seconds, 3, Uint(4)),
        158 => time(S::Start, TimeKind::DeltaMicros, 4, Uint(4)),
        159 => time(S::End, TimeKind::DeltaMicros, 4, Uint(4)),
        22 => time(S::Start, TimeKind::Uptime, 5, Uint(4)),
        21 => time(S::End, TimeKind::Uptime, 5, Uint(4)),
        160 => spec(A::InitMs, S::InitMs, 0, Uint(8)),
        48 => spec(A::SamplerId, S::SamplerId, 0, Uint(4)),
        302 => spec(A::SamplerId, S::SamplerId, 1, Uint(8)),
        34 => spec(A::SamplingInterval, S::SamplingInterval, 0, Uint(4)),
        50 => spec(A::SamplingInterval, S::SamplingInterval, 1, Uint(4)),
        304 => spec(A::SelectorAlgorithm, S::SelectorAlgorithm, 0, Uint(2)),
        305 => spec(A::PacketInterval, S::PacketInterval, 0, Uint(4)),
        306 => spec(A::PacketSpace, S::PacketSpace, 0, Uint(4)),
        309 => spec(A::SamplingSize, S::SamplingSize, 0, Uint(4)),
        310 => spec(A::SamplingPopulation, S::SamplingPopulation, 0, Uint(4)),
        _ => return None,
    })
}

/// Values a decoded record carries besides the flow record itself: sampling elements (options
/// records, or data records that carry them) and systemInitTimeMilliseconds. (Raw flow times go
/// into the record's time fields and are converted in place once the whole record is read.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    pub init_ms: u64,
    /// A selectorId (302) too wide for the record's 32-bit `sampler_id`: the sampler its rate is
    /// learned and looked up under (0: the record's `sampler_id` is the whole id).
    pub wide_sampler: u64,
    /// An element of this record was left out ([`crate::decode::ErrorReason::FieldSkipped`]).
    pub skipped: bool,
    pub sampling_interval: u64,
    pub selector_algorithm: u64,
    pub packet_interval: u64,
    pub packet_space: u64,
    pub sampling_size: u64,
    pub sampling_population: u64,
}

impl Extras {
    /// The sampler id a record's rate is learned and looked up under.
    #[inline(always)]
    pub fn sampler(&self, rec: &FlowRecord) -> u64 {
        match self.wide_sampler {
            0 => u64::from(rec.sampler_id),
            wide => wide,
        }
    }

    /// The 1-in-N rate these sampling elements describe, if any.
    ///
    /// samplingInterval (34) / samplerRandomInterval (50) are N directly. Systematic count-based
    /// selection (304 = 1, or 305/306 without 304) selects 305 packets then skips 306: N =
    /// (305 + 306) / 305. Random n-out-of-N (309/310): N = population / size.
    pub fn sampling_rate(&self) -> Option<u32> {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        if self.sampling_interval != 0 {
            return Some(clamp(self.sampling_interval));
        }
        if self.packet_interval != 0 && matches!(self.selector_algorithm, 0 | 1) {
            return Some(clamp(
                (self.packet_interval + self.packet_space) / self.packet_interval,
            ));
        }
        if self.sampling_size != 0 && self.sampling_population != 0 {
            return Some(clamp(self.sampling_population / self.sampling_size));
        }
        None
    }
}

/// Big-endian unsigned value of 0..=8 bytes (reduced-size encoding); longer input keeps its last
/// 8 bytes (never happens for a compiled step: widths are checked at compile time or before the call).
#[inline(always)]
pub fn be_uint(bytes: &[u8]) -> u64 {
    match *bytes {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    }
}

#[inline(always)]
fn v4(bytes: &[u8]) -> [u8; 16] {
    match *bytes {
        [a, b, c, d] => crate::record::ipv4_bytes([a, b, c, d]),
        _ => [0; 16],
    }
}

/// Store a 4-byte (IPv4) or 16-byte address unless it is all zero.
#[inline(always)]
fn set_if_nonzero(dst: &mut [u8; 16], bytes: &[u8]) {
    if let Ok(&v4) = <&[u8; 4]>::try_from(bytes) {
        if u32::from_ne_bytes(v4) != 0 {
            *dst = crate::record::ipv4_bytes(v4);
        }
    } else if let Ok(v6) = <&[u8; 16]>::try_from(bytes)
        && u128::from_ne_bytes(*v6) != 0
    {
        *dst = *v6;
    }
}

#[inline(always)]
fn copy_into<const N: usize>(dst: &mut [u8; N], bytes: &[u8]) {
    if let Ok(src) = <&[u8; N]>::try_from(bytes) {
        *dst = *src;
    }
}

/// How a compiled step moves a fixed-length field into the record image (see
/// [`super::template::Step`]) without looking at its element again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Store {
    /// A big-endian unsigned value of 1..=8 bytes (reduced-size encodings included) into a
    /// native-endian record field of 1, 2, 4 or 8 bytes (narrower fields keep the low bytes).
    Uint1,
    Uint2,
    Uint4,
    Uint8,
    /// An IPv4 address into a 16-byte address field, IPv4-mapped.
    V4Mapped,
    /// Bytes copied as sent: IPv6 addresses (16), MAC addresses (6).
    Copy16,
    Copy6,
}

/// Where `action` on a fixed-length field goes when it is a plain store: the [`Store`] and the
/// byte offset of its record field. `None`: the action transforms its value or fills [`Extras`],
/// and goes through [`apply`].
pub const fn placement(action: Action) -> Option<(Store, usize)> {
    use Store::*;
    use std::mem::offset_of;
    type R = FlowRecord;
    Some(match action {
        Action::Bytes => (Uint8, offset_of!(R, bytes)),
        Action::Packets => (Uint8, offset_of!(R, packets)),
        Action::Proto => (Uint1, offset_of!(R, proto)),
        Action::Tos => (Uint1, offset_of!(R, ip_tos)),
        Action::TcpFlags => (Uint2, offset_of!(R, tcp_flags)),
        Action::SrcPort => (Uint2, offset_of!(R, src_port)),
        Action::DstPort => (Uint2, offset_of!(R, dst_port)),
        Action::SrcV4 => (V4Mapped, offset_of!(R, src_addr)),
        Action::DstV4 => (V4Mapped, offset_of!(R, dst_addr)),
        Action::SrcV6 => (Copy16, offset_of!(R, src_addr)),
        Action::DstV6 => (Copy16, offset_of!(R, dst_addr)),
        Action::SrcMask => (Uint1, offset_of!(R, src_net)),
        Action::DstMask => (Uint1, offset_of!(R, dst_net)),
        Action::InIf => (Uint4, offset_of!(R, in_if)),
        Action::OutIf => (Uint4, offset_of!(R, out_if)),
        Action::NextHopV4 => (V4Mapped, offset_of!(R, next_hop)),
        Action::NextHopV6 => (Copy16, offset_of!(R, next_hop)),
        Action::SrcAs => (Uint4, offset_of!(R, src_as)),
        Action::DstAs => (Uint4, offset_of!(R, dst_as)),
        Action::IcmpType => (Uint1, offset_of!(R, icmp_type)),
        Action::IcmpCode => (Uint1, offset_of!(R, icmp_code)),
        Action::SrcMac => (Copy6, offset_of!(R, src_mac)),
        Action::DstMac => (Copy6, offset_of!(R, dst_mac)),
        Action::Direction => (Uint1, offset_of!(R, flow_direction)),
        Action::EndReason => (Uint1, offset_of!(R, flow_end_reason)),
        Action::ObservationPoint => (Uint4, offset_of!(R, observation_point_id)),
        Action::Ttl => (Uint1, offset_of!(R, ip_ttl)),
        Action::Etype => (Uint2, offset_of!(R, etype)),
        Action::TunnelType => (Uint1, offset_of!(R, tunnel_type)),
        Action::TunnelKey => (Uint8, offset_of!(R, tunnel_key)),
        Action::TunnelSrcV4 => (V4Mapped, offset_of!(R, tunnel_src_addr)),
        Action::TunnelDstV4 => (V4Mapped, offset_of!(R, tunnel_dst_addr)),
        Action::TunnelProto => (Uint1, offset_of!(R, tunnel_proto)),
        Action::TunnelSrcPort => (Uint2, offset_of!(R, tunnel_src_port)),
        Action::TunnelDstPort => (Uint2, offset_of!(R, tunnel_dst_port)),
        Action::Start => (Uint8, offset_of!(R, time_flow_start_ns)),
        Action::End => (Uint8, offset_of!(R, time_flow_end_ns)),
        Action::SamplerId => (Uint4, offset_of!(R, sampler_id)),
        _ => return None,
    })
}

/// Apply one step to the record being decoded. `bytes` already has a length the step allows.
#[inline(always)]
pub fn apply(action: Action, bytes: &[u8], rec: &mut FlowRecord, extras: &mut Extras) {
    let uint = || be_uint(bytes);
    match action {
        Action::Skip => {}
        Action::Bytes => rec.bytes = uint(),
        Action::Packets => rec.packets = uint(),
        Action::Proto => rec.proto = uint() as u8,
        Action::Tos => rec.ip_tos = uint() as u8,
        Action::Dscp => rec.ip_tos = (uint() as u8) << 2,
        Action::TcpFlags => rec.tcp_flags = uint() as u16,
        Action::SrcPort => rec.src_port = uint() as u16,
        Action::DstPort => rec.dst_port = uint() as u16,
        Action::SrcV4 => rec.src_addr = v4(bytes),
        Action::DstV4 => rec.dst_addr = v4(bytes),
        Action::SrcV6 => copy_into(&mut rec.src_addr, bytes),
        Action::DstV6 => copy_into(&mut rec.dst_addr, bytes),
        Action::SrcMask => rec.src_net = uint() as u8,
        Action::DstMask => rec.dst_net = uint() as u8,
        Action::InIf => rec.in_if = uint() as u32,
        Action::OutIf => rec.out_if = uint() as u32,
        Action::NextHopV4 => rec.next_hop = v4(bytes),
        Action::NextHopV6 => copy_into(&mut rec.next_hop, bytes),
        Action::SrcEither => set_if_nonzero(&mut rec.src_addr, bytes),
        Action::DstEither => set_if_nonzero(&mut rec.dst_addr, bytes),
        Action::NextHopEither => set_if_nonzero(&mut rec.next_hop, bytes),
        Action::SrcAs => rec.src_as = uint() as u32,
        Action::DstAs => rec.dst_as = uint() as u32,
        Action::FlowLabel => rec.ipv6_flow_label = uint() as u32 & 0x000f_ffff,
        Action::IcmpTypeCode => {
            let v = uint();
            rec.icmp_type = (v >> 8) as u8;
            rec.icmp_code = v as u8;
        }
        Action::IcmpType => rec.icmp_type = uint() as u8,
        Action::IcmpCode => rec.icmp_code = uint() as u8,
        Action::SrcMac => copy_into(&mut rec.src_mac, bytes),
        Action::DstMac => copy_into(&mut rec.dst_mac, bytes),
        Action::Vlan => rec.vlan_id = uint() as u16 & 0x0fff,
        Action::Direction => rec.flow_direction = uint() as u8,
        Action::EndReason => rec.flow_end_reason = uint() as u8,
        Action::ObservationPoint => match u32::try_from(uint()) {
            Ok(v) => rec.observation_point_id = v,
            Err(_) => {
                rec.observation_point_id = 0;
                extras.skipped = true;
            }
        },
        Action::Ttl => rec.ip_ttl = uint() as u8,
        Action::Etype => rec.etype = uint() as u16,
        Action::IpVersion => {
            rec.etype = match uint() {
                4 => 0x0800,
                6 => 0x86dd,
                _ => 0,
            }
        }
        Action::TunnelType => rec.tunnel_type = uint() as u8,
        Action::TunnelKey => rec.tunnel_key = uint(),
        Action::TunnelSrcV4 => rec.tunnel_src_addr = v4(bytes),
        Action::TunnelDstV4 => rec.tunnel_dst_addr = v4(bytes),
        Action::TunnelProto => rec.tunnel_proto = uint() as u8,
        Action::TunnelSrcPort => rec.tunnel_src_port = uint() as u16,
        Action::TunnelDstPort => rec.tunnel_dst_port = uint() as u16,
        Action::Start => rec.time_flow_start_ns = uint(),
        Action::End => rec.time_flow_end_ns = uint(),
        Action::InitMs => extras.init_ms = uint(),
        Action::SamplerId => match u32::try_from(uint()) {
            Ok(v) => rec.sampler_id = v,
            Err(_) => {
                rec.sampler_id = 0;
                extras.wide_sampler = uint();
                extras.skipped = true;
            }
        },
        Action::SamplingInterval => extras.sampling_interval = uint(),
        Action::SelectorAlgorithm => extras.selector_algorithm = uint(),
        Action::PacketInterval => extras.packet_interval = uint(),
        Action::PacketSpace => extras.packet_space = uint(),
        Action::SamplingSize => extras.sampling_size = uint(),
        Action::SamplingPopulation => extras.sampling_population = uint(),
    }
}

/// What an encoder needs besides the record to write an element's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeContext {
    pub clock: ExportClock,
    /// systemInitTimeMilliseconds to write in IE 160 and relate IPFIX 21/22 to.
    pub init_ms: u64,
    /// Interface name written in interfaceName (82) fields (OVS templates).
    pub interface_name: &'static str,
}

/// The value element `id` of `pen` has for `rec`: an unsigned number or bytes. Unknown elements
/// are zero.
enum Value<'a> {
    Uint(u64),
    Bytes(&'a [u8]),
}

fn value_of<'a>(pen: u32, id: u16, rec: &'a FlowRecord, ctx: &'a EncodeContext) -> Value<'a> {
    use Value::{Bytes, Uint};
    let low4 = |a: &'a [u8; 16]| Bytes(&a[12..16]);
    if pen == PEN_OVS {
        return match id {
            891 => Uint(rec.tunnel_type.into()),
            892 => Uint(rec.tunnel_key),
            893 => low4(&rec.tunnel_src_addr),
            894 => low4(&rec.tunnel_dst_addr),
            895 => Uint(rec.tunnel_proto.into()),
            896 => Uint(rec.tunnel_src_port.into()),
            897 => Uint(rec.tunnel_dst_port.into()),
            _ => Uint(0),
        };
    }
    if pen != 0 {
        return Uint(0);
    }
    if let Some(s) = lookup(0, id)
        && s.time != TimeKind::Absent
    {
        let ns = match s.slot {
            Slot::Start => rec.time_flow_start_ns,
            _ => rec.time_flow_end_ns,
        };
        return Uint(ctx.clock.raw_for(s.time, ns, ctx.init_ms));
    }
    match id {
        1 | 85 | 352 | 353 => Uint(rec.bytes),
        2 | 86 => Uint(rec.packets),
        4 => Uint(rec.proto.into()),
        5 => Uint(rec.ip_tos.into()),
        195 => Uint((rec.ip_tos >> 2).into()),
        6 => Uint(rec.tcp_flags.into()),
        7 => Uint(rec.src_port.into()),
        11 => Uint(rec.dst_port.into()),
        8 => low4(&rec.src_addr),
        12 => low4(&rec.dst_addr),
        27 => Bytes(&rec.src_addr),
        28 => Bytes(&rec.dst_addr),
        9 | 29 => Uint(rec.src_net.into()),
        13 | 30 => Uint(rec.dst_net.into()),
        10 => Uint(rec.in_if.into()),
        14 => Uint(rec.out_if.into()),
        15 => low4(&rec.next_hop),
        62 => Bytes(&rec.next_hop),
        16 => Uint(rec.src_as.into()),
        17 => Uint(rec.dst_as.into()),
        31 => Uint(rec.ipv6_flow_label.into()),
        32 | 139 => Uint(u64::from(rec.icmp_type) << 8 | u64::from(rec.icmp_code)),
        176 | 178 => Uint(rec.icmp_type.into()),
        177 | 179 => Uint(rec.icmp_code.into()),
        56 | 81 => Bytes(&rec.src_mac),
        80 | 57 => Bytes(&rec.dst_mac),
        58 | 243 => Uint(rec.vlan_id.into()),
        61 => Uint(rec.flow_direction.into()),
        136 => Uint(rec.flow_end_reason.into()),
        138 => Uint(rec.observation_point_id.into()),
        192 => Uint(rec.ip_ttl.into()),
        256 => Uint(rec.etype.into()),
        60 => Uint(match rec.etype {
            0x0800 => 4,
            0x86dd => 6,
            _ => 0,
        }),
        160 => Uint(ctx.init_ms),
        48 | 302 => Uint(rec.sampler_id.into()),
        34 | 50 => Uint(rec.sampling_rate.into()),
        82 => Bytes(ctx.interface_name.as_bytes()),
        _ => Uint(0),
    }
}

/// Length value that marks a variable-length field in an IPFIX template.
pub const VARLEN: u16 = 65535;

/// Append element `id` of `pen` for `rec` in `len` bytes ([`VARLEN`]: IPFIX variable-length
/// encoding, 1-byte length below 255, else 255 and a 2-byte length). Unsigned values keep their
/// low `len` bytes (reduced-size encoding); byte values are cut or zero-padded to `len`.
pub fn encode(
    pen: u32,
    id: u16,
    len: u16,
    rec: &FlowRecord,
    ctx: &EncodeContext,
    out: &mut Vec<u8>,
) {
    let value = value_of(pen, id, rec, ctx);
    if len == VARLEN {
        let bytes: Vec<u8> = match value {
            Value::Bytes(b) => b.to_vec(),
            Value::Uint(0) if id != 892 => Vec::new(),
            Value::Uint(v) => {
                let n = (8 - (v.leading_zeros() / 8) as usize).max(1);
                v.to_be_bytes()[8 - n..].to_vec()
            }
        };
        if bytes.len() < 255 {
            out.push(bytes.len() as u8);
        } else {
            out.push(255);
            out.extend_from_slice(&(bytes.len().min(65535) as u16).to_be_bytes());
        }
        out.extend_from_slice(&bytes[..bytes.len().min(65535)]);
        return;
    }
    let len = usize::from(len);
    match value {
        Value::Uint(v) => {
            let be = v.to_be_bytes();
            if len <= 8 {
                out.extend_from_slice(&be[8 - len..]);
            } else {
                out.resize(out.len() + len - 8, 0);
                out.extend_from_slice(&be);
            }
        }
        Value::Bytes(b) => {
            let n = b.len().min(len);
            out.extend_from_slice(&b[..n]);
            out.resize(out.len() + len - n, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_size_unsigned_reads() {
        assert_eq!(be_uint(&[]), 0);
        assert_eq!(be_uint(&[7]), 7);
        assert_eq!(be_uint(&[1, 2]), 0x0102);
        assert_eq!(be_uint(&[1, 2, 3]), 0x010203);
        assert_eq!(be_uint(&[1, 2, 3, 4, 5]), 0x0102030405);
        assert_eq!(be_uint(&[1, 2, 3, 4, 5, 6, 7, 8]), 0x0102030405060708);
    }

    #[test]
    fn widths() {
        assert!(Width::Uint(8).allows(3));
        assert!(!Width::Uint(4).allows(8));
        assert!(!Width::Uint(4).allows(0));
        assert!(Width::Exact(16).allows(16));
        assert!(!Width::Exact(4).allows(3));
    }

    #[test]
    fn lookup_covers_ovs_and_skips_unknown() {
        assert_eq!(
            lookup(PEN_OVS, 892).map(|s| s.action),
            Some(Action::TunnelKey)
        );
        assert_eq!(lookup(PEN_OVS, 898), None, "virtualObsID is skipped");
        assert_eq!(lookup(9, 1), None, "unknown enterprise");
        assert_eq!(lookup(0, 82), None, "interfaceName is skipped");
        assert_eq!(
            lookup(0, 85).map(|s| (s.slot, s.rank)),
            Some((Slot::Bytes, 1))
        );
        assert_eq!(lookup(0, 158).map(|s| s.time), Some(TimeKind::DeltaMicros));
    }

    #[test]
    fn sampling_rate_forms() {
        let e = |f: fn(&mut Extras)| {
            let mut x = Extras::default();
            f(&mut x);
            x.sampling_rate()
        };
        assert_eq!(e(|_| {}), None);
        assert_eq!(e(|x| x.sampling_interval = 400), Some(400));
        assert_eq!(
            e(|x| {
                x.packet_interval = 1;
                x.packet_space = 99
            }),
            Some(100)
        );
        assert_eq!(
            e(|x| {
                x.selector_algorithm = 3;
                x.packet_interval = 1;
                x.packet_space = 99
            }),
            None
        );
        assert_eq!(
            e(|x| {
                x.sampling_size = 2;
                x.sampling_population = 1000
            }),
            Some(500)
        );
    }

    #[test]
    fn encode_reduced_and_varlen() {
        let mut rec = FlowRecord::zeroed_for_test();
        rec.bytes = 0x0102_0304;
        let ctx = EncodeContext::default();
        let mut out = Vec::new();
        encode(0, 1, 3, &rec, &ctx, &mut out);
        assert_eq!(out, [2, 3, 4]);
        out.clear();
        rec.tunnel_key = 0x1234;
        encode(PEN_OVS, 892, VARLEN, &rec, &ctx, &mut out);
        assert_eq!(out, [2, 0x12, 0x34]);
        out.clear();
        let ctx = EncodeContext {
            interface_name: "eth0",
            ..ctx
        };
        encode(0, 82, VARLEN, &rec, &ctx, &mut out);
        assert_eq!(out, [4, b'e', b't', b'h', b'0']);
    }

    impl FlowRecord {
        fn zeroed_for_test() -> FlowRecord {
            bytemuck::Zeroable::zeroed()
        }
    }
}
