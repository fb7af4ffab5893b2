//! Sampled packet headers: the first bytes of a frame as sFlow's raw packet header record (flow
//! record 1) carries them, parsed into the packet fields of a [`FlowRecord`].
//!
//! This module owns the layer walk Ethernet → 802.1Q / QinQ tags (0x8100, 0x88a8, 0x9100) → MPLS
//! label stack (0x8847, 0x8848; after the bottom label the payload is IPv4 or IPv6 by its first
//! nibble) → IPv4 (options skipped by IHL) or IPv6 (hop-by-hop, routing, fragment, destination
//! options and AH extension headers skipped) → TCP (ports, flags), UDP, SCTP (ports), ICMP / ICMPv6
//! (type, code). The header is truncated by the exporter (OVS: 128 bytes): parsing never reads past
//! the slice and fills every field whose bytes are present — a layer whose fixed part is cut short
//! is left unfilled, and [`Depth`] says how far the walk got. Non-first IP fragments carry no
//! transport header and stop at layer 3.
//!
//! It must not allocate or panic: every read is a checked `get`. The `emit` half ([`Frame`]) builds
//! frames for tests, benchmarks and the load generator.

use crate::record::{FlowRecord, ipv4_bytes};

/// Ethertypes the walk understands.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_LEGACY: u16 = 0x9100;
    pub const MPLS_UNICAST: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
}

/// IP protocol numbers the walk understands.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDP_LITE: u8 = 136;
    /// IPv6 extension headers.
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// Byte ranges of the headers the walk reads.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub mod ethernet {
        use super::Field;
        pub const DST: Field = 0..6;
        pub const SRC: Field = 6..12;
        pub const ETHERTYPE: Field = 12..14;
        pub const LEN: usize = 14;
        /// A VLAN tag: TCI then the inner ethertype.
        pub const TAG_LEN: usize = 4;
    }
    pub mod ipv4 {
        use super::Field;
        pub const VER_IHL: usize = 0;
        pub const TOS: usize = 1;
        pub const FRAG: Field = 6..8;
        pub const TTL: usize = 8;
        pub const PROTO: usize = 9;
        pub const SRC: Field = 12..16;
        pub const DST: Field = 16..20;
        pub const LEN: usize = 20;
    }
    pub mod ipv6 {
        use super::Field;
        pub const VTF: Field = 0..4;
        pub const NEXT_HEADER: usize = 6;
        pub const HOP_LIMIT: usize = 7;
        pub const SRC: Field = 8..24;
        pub const DST: Field = 24..40;
        pub const LEN: usize = 40;
        /// Fragment extension header length and its offset field.
        pub const FRAG_LEN: usize = 8;
        pub const FRAG_OFFSET: Field = 2..4;
    }
    pub mod l4 {
        use super::Field;
        pub const SRC_PORT: Field = 0..2;
        pub const DST_PORT: Field = 2..4;
        pub const TCP_FLAGS: Field = 12..14;
        pub const ICMP_TYPE: usize = 0;
        pub const ICMP_CODE: usize = 1;
    }
}

/// Most IPv6 extension headers walked before giving up on finding the transport header.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// How far the walk filled the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Depth {
    /// Nothing (the header is shorter than the first layer's fixed part, or not a known format).
    None,
    /// Link layer (MACs, VLAN, ethertype).
    Link,
    /// Network layer (addresses, protocol, ToS, TTL, flow label).
    Network,
    /// Transport layer (ports and TCP flags, or ICMP type and code).
    Transport,
}

fn be16(b: &[u8], r: field::Field) -> Option<u16> {
    let s = b.get(r)?;
    Some(u16::from_be_bytes(*s.first_chunk::<2>()?))
}

fn array<const N: usize>(b: &[u8], r: field::Field) -> Option<[u8; N]> {
    b.get(r)?.first_chunk::<N>().copied()
}

/// Parse an Ethernet frame header into `record`.
///
/// The common cases — Ethernet with at most one 802.1Q tag, then IPv4 without options (not a later
/// fragment) or IPv6 without extension headers, then TCP or UDP, with the bytes up to the TCP flags
/// present — are read in straight lines (`parse_ethernet_fast`); every other frame takes the
/// general layer walk ([`parse_ethernet_general`]). Both fill the record identically (a property
/// test holds them to it).
///
/// The most common case of all, untagged IPv4, is inlined into the caller; the others are one call
/// away.
#[inline(always)]
pub fn parse_ethernet(frame: &[u8], record: &mut FlowRecord) -> Depth {
    match parse_untagged_ipv4_fast::<false>(frame, record) {
        Some(depth) => depth,
        None => parse_ethernet_rest(frame, record),
    }
}

/// [`parse_ethernet`] into a record whose packet addresses (`src_addr`, `dst_addr`) are all zero,
/// as the sFlow fast path clears them per sample: the inlined case then writes an IPv4-mapped
/// address as its 6 non-zero bytes. Same result as [`parse_ethernet`] on such a record.
#[inline(always)]
pub fn parse_ethernet_cleared(frame: &[u8], record: &mut FlowRecord) -> Depth {
    debug_assert!(record.src_addr == [0; 16] && record.dst_addr == [0; 16]);
    match parse_untagged_ipv4_fast::<true>(frame, record) {
        Some(depth) => depth,
        None => parse_ethernet_rest(frame, record),
    }
}

/// Store `octets` into `addr` in record form (IPv4-mapped); when `CLEARED` (`addr` known to be all
/// zero) only the 6 bytes that are not zero.
#[inline(always)]
pub fn set_ipv4_mapped<const CLEARED: bool>(addr: &mut [u8; 16], octets: [u8; 4]) {
    if CLEARED {
        if let Some(tail) = addr.last_chunk_mut::<6>() {
            let [a, b, c, d] = octets;
            *tail = [0xff, 0xff, a, b, c, d];
        }
    } else {
        *addr = ipv4_bytes(octets);
    }
}

/// [`parse_ethernet`] past its inlined case: the other straight lines, then the general walk.
#[inline(never)]
fn parse_ethernet_rest(frame: &[u8], record: &mut FlowRecord) -> Depth {
    match parse_ethernet_fast(frame, record) {
        Some(depth) => depth,
        None => parse_ethernet_general(frame, record),
    }
}

/// Untagged Ethernet → [`ipv4_tcp_udp_fast`], as one fixed-size read.
#[inline(always)]
fn parse_untagged_ipv4_fast<const CLEARED: bool>(
    frame: &[u8],
    record: &mut FlowRecord,
) -> Option<Depth> {
    use field::{ethernet as e, ipv4 as ip};
    let h = frame.first_chunk::<{ e::LEN + ip::LEN + FAST_L4_LEN }>()?;
    if be16_at(h, e::ETHERTYPE.start) != ethertype::IPV4 {
        return None;
    }
    ipv4_tcp_udp_fast::<CLEARED>(h.get(e::LEN..).unwrap_or_default(), record)?;
    record.dst_mac = bytes_at(h, e::DST.start);
    record.src_mac = bytes_at(h, e::SRC.start);
    record.etype = ethertype::IPV4;
    Some(Depth::Transport)
}

/// Bytes of the transport header the fast path needs: TCP up to its flags (UDP needs fewer, but
/// one length keeps the path straight).
const FAST_L4_LEN: usize = field::l4::TCP_FLAGS.end;

/// `N` bytes at a constant offset of a fixed-size header (the bounds fold away once inlined).
#[inline(always)]
fn bytes_at<const N: usize, const M: usize>(h: &[u8; M], at: usize) -> [u8; N] {
    h.get(at..)
        .and_then(|s| s.first_chunk::<N>())
        .copied()
        .unwrap_or([0; N])
}

/// Big-endian u16 at a constant offset of a fixed-size header.
#[inline(always)]
fn be16_at<const M: usize>(h: &[u8; M], at: usize) -> u16 {
    u16::from_be_bytes(bytes_at(h, at))
}

/// The straight-line cases of [`parse_ethernet`]: `None`, with nothing written, for any other frame
/// or one shorter than the fixed parts the case needs.
#[inline(always)]
fn parse_ethernet_fast(frame: &[u8], record: &mut FlowRecord) -> Option<Depth> {
    use field::ethernet as e;
    let (eth, mut l3) = frame.split_first_chunk::<{ e::LEN }>()?;
    let mut etype = be16_at(eth, e::ETHERTYPE.start);
    let mut vlan = None;
    if etype == ethertype::VLAN {
        let (tag, after) = l3.split_first_chunk::<{ e::TAG_LEN }>()?;
        vlan = Some(be16_at(tag, 0) & 0x0fff);
        etype = be16_at(tag, 2);
        l3 = after;
    }
    match etype {
        ethertype::IPV4 => ipv4_tcp_udp_fast::<false>(l3, record)?,
        ethertype::IPV6 => ipv6_tcp_udp_fast(l3, record)?,
        _ => return None,
    }
    record.dst_mac = bytes_at(eth, e::DST.start);
    record.src_mac = bytes_at(eth, e::SRC.start);
    if let Some(vlan) = vlan {
        record.vlan_id = vlan;
    }
    record.etype = etype;
    Some(Depth::Transport)
}

/// Source and destination port from the transport header at `l4` of a fixed-size header: one
/// word read, the two fields stored from it (adjacent in the record, the stores can merge).
#[inline(always)]
fn set_ports<const M: usize>(record: &mut FlowRecord, h: &[u8; M], l4: usize) {
    let ports = u32::from_be_bytes(bytes_at(h, l4 + field::l4::SRC_PORT.start));
    record.src_port = (ports >> 16) as u16;
    record.dst_port = ports as u16;
}

/// IPv4 with IHL 5, not a later fragment, carrying TCP or UDP: network and transport fields
/// (addresses as [`set_ipv4_mapped`] stores them).
#[inline(always)]
fn ipv4_tcp_udp_fast<const CLEARED: bool>(packet: &[u8], record: &mut FlowRecord) -> Option<()> {
    use field::{ipv4 as ip, l4};
    const L4: usize = ip::LEN;
    let h = packet.first_chunk::<{ ip::LEN + FAST_L4_LEN }>()?;
    let proto = h[ip::PROTO];
    if h[ip::VER_IHL] != 0x45
        || be16_at(h, ip::FRAG.start) & 0x1fff != 0
        || (proto != ip_proto::TCP && proto != ip_proto::UDP)
    {
        return None;
    }
    record.ip_tos = h[ip::TOS];
    record.ip_ttl = h[ip::TTL];
    record.proto = proto;
    set_ipv4_mapped::<CLEARED>(&mut record.src_addr, bytes_at(h, ip::SRC.start));
    set_ipv4_mapped::<CLEARED>(&mut record.dst_addr, bytes_at(h, ip::DST.start));
    set_ports(record, h, L4);
    if proto == ip_proto::TCP {
        record.tcp_flags = be16_at(h, L4 + l4::TCP_FLAGS.start) & 0x01ff;
    }
    Some(())
}

/// IPv6 whose next header is TCP or UDP (no extension headers): network and transport fields.
#[inline(always)]
fn ipv6_tcp_udp_fast(packet: &[u8], record: &mut FlowRecord) -> Option<()> {
    use field::{ipv6 as ip, l4};
    const L4: usize = ip::LEN;
    let h = packet.first_chunk::<{ ip::LEN + FAST_L4_LEN }>()?;
    let vtf = u32::from_be_bytes(bytes_at(h, ip::VTF.start));
    let proto = h[ip::NEXT_HEADER];
    if vtf >> 28 != 6 || (proto != ip_proto::TCP && proto != ip_proto::UDP) {
        return None;
    }
    record.ip_tos = (vtf >> 20) as u8;
    record.ipv6_flow_label = vtf & 0x000f_ffff;
    record.ip_ttl = h[ip::HOP_LIMIT];
    record.proto = proto;
    record.src_addr = bytes_at(h, ip::SRC.start);
    record.dst_addr = bytes_at(h, ip::DST.start);
    set_ports(record, h, L4);
    if proto == ip_proto::TCP {
        record.tcp_flags = be16_at(h, L4 + l4::TCP_FLAGS.start) & 0x01ff;
    }
    Some(())
}

/// The general layer walk of an Ethernet frame (tags, MPLS, IPv4 options, IPv6, every transport).
pub fn parse_ethernet_general(frame: &[u8], record: &mut FlowRecord) -> Depth {
    use field::ethernet as f;
    let (Some(dst), Some(src), Some(mut etype)) = (
        array::<6>(frame, f::DST),
        array::<6>(frame, f::SRC),
        be16(frame, f::ETHERTYPE),
    ) else {
        return Depth::None;
    };
    record.dst_mac = dst;
    record.src_mac = src;
    let mut at = f::LEN;
    let mut outer_tag = true;
    while matches!(
        etype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    ) {
        let (Some(tci), Some(inner)) = (be16(frame, at..at + 2), be16(frame, at + 2..at + 4))
        else {
            record.etype = etype;
            return Depth::Link;
        };
        if outer_tag {
            record.vlan_id = tci & 0x0fff;
            outer_tag = false;
        }
        etype = inner;
        at += f::TAG_LEN;
    }
    record.etype = etype;
    let rest = frame.get(at..).unwrap_or_default();
    match etype {
        ethertype::IPV4 => parse_ipv4(rest, record).max(Depth::Link),
        ethertype::IPV6 => parse_ipv6(rest, record).max(Depth::Link),
        ethertype::MPLS_UNICAST | ethertype::MPLS_MULTICAST => {
            parse_mpls(rest, record).max(Depth::Link)
        }
        _ => Depth::Link,
    }
}

/// Skip an MPLS label stack and parse what follows the bottom label as IPv4 or IPv6 by its first
/// nibble.
pub fn parse_mpls(stack: &[u8], record: &mut FlowRecord) -> Depth {
    let mut rest = stack;
    loop {
        let Some((entry, after)) = rest.split_first_chunk::<4>() else {
            return Depth::None;
        };
        rest = after;
        if entry[2] & 0x01 != 0 {
            break;
        }
    }
    match rest.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(rest, record),
        Some(6) => parse_ipv6(rest, record),
        _ => Depth::None,
    }
}

/// Parse an IPv4 header (and the transport header after it) into `record`.
#[inline]
pub fn parse_ipv4(packet: &[u8], record: &mut FlowRecord) -> Depth {
    use field::ipv4 as f;
    let Some(fixed) = packet.first_chunk::<{ f::LEN }>() else {
        return Depth::None;
    };
    let ver_ihl = fixed[f::VER_IHL];
    if ver_ihl >> 4 != 4 {
        return Depth::None;
    }
    let (Some(src), Some(dst), Some(frag)) = (
        array::<4>(packet, f::SRC),
        array::<4>(packet, f::DST),
        be16(packet, f::FRAG),
    ) else {
        return Depth::None;
    };
    record.ip_tos = fixed[f::TOS];
    record.ip_ttl = fixed[f::TTL];
    record.proto = fixed[f::PROTO];
    record.src_addr = ipv4_bytes(src);
    record.dst_addr = ipv4_bytes(dst);
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if frag & 0x1fff != 0 || header_len < f::LEN {
        return Depth::Network;
    }
    match packet.get(header_len..) {
        Some(l4) => parse_transport(l4, record.proto, record).max(Depth::Network),
        None => Depth::Network,
    }
}

/// Parse an IPv6 header, skip its extension headers, and parse the transport header into `record`.
pub fn parse_ipv6(packet: &[u8], record: &mut FlowRecord) -> Depth {
    use field::ipv6 as f;
    let (Some(vtf), Some(src), Some(dst), Some(&next), Some(&hops)) = (
        array::<4>(packet, f::VTF),
        array::<16>(packet, f::SRC),
        array::<16>(packet, f::DST),
        packet.get(f::NEXT_HEADER),
        packet.get(f::HOP_LIMIT),
    ) else {
        return Depth::None;
    };
    let vtf = u32::from_be_bytes(vtf);
    if vtf >> 28 != 6 {
        return Depth::None;
    }
    record.ip_tos = (vtf >> 20) as u8;
    record.ipv6_flow_label = vtf & 0x000f_ffff;
    record.ip_ttl = hops;
    record.src_addr = src;
    record.dst_addr = dst;
    record.proto = next;
    let mut rest = packet.get(f::LEN..).unwrap_or_default();
    for _ in 0..MAX_IPV6_EXTENSIONS {
        let proto = record.proto;
        let len = match proto {
            ip_proto::HOP_BY_HOP | ip_proto::ROUTING | ip_proto::DESTINATION_OPTIONS => {
                match rest.get(1) {
                    Some(&n) => (usize::from(n) + 1) * 8,
                    None => return Depth::Network,
                }
            }
            ip_proto::AH => match rest.get(1) {
                Some(&n) => (usize::from(n) + 2) * 4,
                None => return Depth::Network,
            },
            ip_proto::FRAGMENT => {
                let Some(offset) = be16(rest, f::FRAG_OFFSET) else {
                    return Depth::Network;
                };
                if offset >> 3 != 0 {
                    // A later fragment: the transport header is in the first one.
                    if let Some(&n) = rest.first() {
                        record.proto = n;
                    }
                    return Depth::Network;
                }
                f::FRAG_LEN
            }
            _ => return parse_transport(rest, proto, record).max(Depth::Network),
        };
        let (Some(&n), Some(after)) = (rest.first(), rest.get(len..)) else {
            return Depth::Network;
        };
        record.proto = n;
        rest = after;
    }
    Depth::Network
}

/// Fill ports / TCP flags / ICMP type and code from the transport header of protocol `proto`.
#[inline]
fn parse_transport(l4: &[u8], proto: u8, record: &mut FlowRecord) -> Depth {
    use field::l4 as f;
    match proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::UDP_LITE => {
            let (Some(src), Some(dst)) = (be16(l4, f::SRC_PORT), be16(l4, f::DST_PORT)) else {
                return Depth::None;
            };
            record.src_port = src;
            record.dst_port = dst;
            if proto == ip_proto::TCP
                && let Some(flags) = be16(l4, f::TCP_FLAGS)
            {
                record.tcp_flags = flags & 0x01ff;
            }
            Depth::Transport
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let (Some(&t), Some(&c)) = (l4.get(f::ICMP_TYPE), l4.get(f::ICMP_CODE)) else {
                return Depth::None;
            };
            record.icmp_type = t;
            record.icmp_code = c;
            Depth::Transport
        }
        _ => Depth::None,
    }
}

/// The transport part of a [`Frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with flags (9 bits), UDP, SCTP: by the frame's IP protocol.
    Ports { src: u16, dst: u16, tcp_flags: u16 },
    /// ICMP or ICMPv6 by the IP version.
    Icmp { kind: u8, code: u8 },
    /// No transport header (or one the walk does not read).
    None,
}

/// The network part of a [`Frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    Ipv4 {
        src: [u8; 4],
        dst: [u8; 4],
        /// Option bytes (a multiple of 4, at most 40) between the fixed header and the payload.
        options_len: u8,
        /// Fragment offset in 8-byte units (non-zero: a later fragment, no transport header).
        fragment_offset: u16,
    },
    Ipv6 {
        src: [u8; 16],
        dst: [u8; 16],
        flow_label: u32,
        /// Extension headers in order (hop-by-hop 0, routing 43, fragment 44, destination options 60).
        extensions: Vec<u8>,
    },
}

/// A frame to emit: the encoder half of this module (tests, benchmarks, load generator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN ids, outermost first (the outer tag of two or more uses 0x88a8).
    pub vlans: Vec<u16>,
    /// MPLS labels (20 bits), top first.
    pub mpls: Vec<u32>,
    pub network: Network,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    pub transport: Transport,
    /// Payload bytes after the transport header.
    pub payload_len: usize,
}

impl Frame {
    /// The ethertype after the VLAN tags.
    pub fn inner_ethertype(&self) -> u16 {
        match (&self.network, self.mpls.is_empty()) {
            (_, false) => ethertype::MPLS_UNICAST,
            (Network::Ipv4 { .. }, true) => ethertype::IPV4,
            (Network::Ipv6 { .. }, true) => ethertype::IPV6,
        }
    }

    /// Append the whole frame (without FCS) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        for (i, vid) in self.vlans.iter().enumerate() {
            let tpid = if i == 0 && self.vlans.len() > 1 {
                ethertype::QINQ
            } else {
                ethertype::VLAN
            };
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&self.inner_ethertype().to_be_bytes());
        for (i, label) in self.mpls.iter().enumerate() {
            let bottom = u32::from(i + 1 == self.mpls.len());
            let entry = (label & 0x000f_ffff) << 12 | bottom << 8 | 64;
            out.extend_from_slice(&entry.to_be_bytes());
        }
        let transport = self.emit_transport();
        match &self.network {
            Network::Ipv4 {
                src,
                dst,
                options_len,
                fragment_offset,
            } => {
                let options = usize::from(*options_len).min(40) & !3;
                let total = 20 + options + transport.len() + self.payload_len;
                out.push(0x40 | (5 + options / 4) as u8);
                out.push(self.tos);
                out.extend_from_slice(&(total.min(65535) as u16).to_be_bytes());
                out.extend_from_slice(&[0x12, 0x34]);
                out.extend_from_slice(&(fragment_offset & 0x1fff).to_be_bytes());
                out.push(self.ttl);
                out.push(self.proto);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                // NOP options then End of options list.
                out.extend(core::iter::repeat_n(1u8, options.saturating_sub(1)));
                if options > 0 {
                    out.push(0);
                }
            }
            Network::Ipv6 {
                src,
                dst,
                flow_label,
                extensions,
            } => {
                let ext_len = extensions.len() * 8;
                let payload = ext_len + transport.len() + self.payload_len;
                let vtf = 6u32 << 28 | u32::from(self.tos) << 20 | (flow_label & 0x000f_ffff);
                out.extend_from_slice(&vtf.to_be_bytes());
                out.extend_from_slice(&(payload.min(65535) as u16).to_be_bytes());
                out.push(extensions.first().copied().unwrap_or(self.proto));
                out.push(self.ttl);
                out.extend_from_slice(src);
                out.extend_from_slice(dst);
                for (i, _) in extensions.iter().enumerate() {
                    let next = extensions.get(i + 1).copied().unwrap_or(self.proto);
                    // Every emitted extension header is 8 bytes (length field 0; fragment offset 0).
                    out.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
                }
            }
        }
        out.extend_from_slice(&transport);
        out.extend((0..self.payload_len).map(|i| i as u8));
    }

    fn emit_transport(&self) -> Vec<u8> {
        match self.transport {
            Transport::Ports {
                src,
                dst,
                tcp_flags,
            } => {
                let mut t = Vec::with_capacity(20);
                t.extend_from_slice(&src.to_be_bytes());
                t.extend_from_slice(&dst.to_be_bytes());
                if self.proto == ip_proto::TCP {
                    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
                    t.extend_from_slice(&(0x5000 | (tcp_flags & 0x01ff)).to_be_bytes());
                    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
                } else {
                    t.extend_from_slice(&[0, 8, 0, 0]);
                }
                t
            }
            Transport::Icmp { kind, code } => vec![kind, code, 0, 0, 0, 0, 0, 0],
            Transport::None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;
    use proptest::prelude::*;

    /// Ethernet / 802.1Q 100 / IPv4 10.0.0.1 → 10.0.0.2 TCP 1234 → 80 SYN, built by hand.
    const VLAN_TCP: [u8; 58] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src
        0x81, 0x00, 0x20, 0x64, // 802.1Q, PCP 1, VID 100
        0x08, 0x00, // IPv4
        0x45, 0xb8, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x3f, 0x06, 0x00,
        0x00, // ToS 0xb8, TTL 63, TCP
        10, 0, 0, 1, 10, 0, 0, 2, // addresses
        0x04, 0xd2, 0x00, 0x50, // ports
        0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0, // SYN
    ];

    fn parse(frame: &[u8]) -> (Depth, FlowRecord) {
        let mut r = FlowRecord::zeroed();
        let d = parse_ethernet(frame, &mut r);
        (d, r)
    }

    #[test]
    fn vlan_ipv4_tcp_by_hand() {
        let (depth, r) = parse(&VLAN_TCP);
        assert_eq!(depth, Depth::Transport);
        assert_eq!(r.dst_mac, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(r.src_mac, [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]);
        assert_eq!(r.vlan_id, 100);
        assert_eq!(r.etype, 0x0800);
        assert_eq!(r.ip_tos, 0xb8);
        assert_eq!(r.ip_ttl, 63);
        assert_eq!(r.proto, 6);
        assert_eq!(r.src_addr, ipv4_bytes([10, 0, 0, 1]));
        assert_eq!(r.dst_addr, ipv4_bytes([10, 0, 0, 2]));
        assert_eq!((r.src_port, r.dst_port, r.tcp_flags), (1234, 80, 0x02));
    }

    #[test]
    fn truncated_at_every_offset_never_reads_past_and_fills_by_layer() {
        for cut in 0..=VLAN_TCP.len() {
            let (depth, r) = parse(&VLAN_TCP[..cut]);
            let expected = match cut {
                0..14 => Depth::None,
                14..38 => Depth::Link,
                38..42 => Depth::Network,
                _ => Depth::Transport,
            };
            assert_eq!(depth, expected, "cut at {cut}");
            if cut >= 18 {
                assert_eq!(r.vlan_id, 100);
            }
            if depth >= Depth::Network {
                assert_eq!(r.dst_addr, ipv4_bytes([10, 0, 0, 2]));
            } else {
                assert_eq!(r.proto, 0, "cut at {cut}");
            }
            // Flags need the 14th transport byte.
            assert_eq!(r.tcp_flags, if cut >= 52 { 2 } else { 0 }, "cut at {cut}");
        }
    }

    #[test]
    fn qinq_mpls_ipv6_with_extension_headers_udp() {
        let frame = Frame {
            dst_mac: [2; 6],
            src_mac: [4; 6],
            vlans: vec![300, 7],
            mpls: vec![16, 17, 18],
            network: Network::Ipv6 {
                src: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                dst: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                flow_label: 0xabcde,
                extensions: vec![
                    ip_proto::HOP_BY_HOP,
                    ip_proto::ROUTING,
                    ip_proto::FRAGMENT,
                    ip_proto::DESTINATION_OPTIONS,
                ],
            },
            proto: ip_proto::UDP,
            tos: 0x20,
            ttl: 9,
            transport: Transport::Ports {
                src: 5353,
                dst: 53,
                tcp_flags: 0,
            },
            payload_len: 100,
        };
        let mut bytes = Vec::new();
        frame.emit(&mut bytes);
        assert_eq!(&bytes[12..14], &[0x88, 0xa8]);
        let (depth, r) = parse(&bytes[..128]);
        assert_eq!(depth, Depth::Transport);
        assert_eq!(r.vlan_id, 300);
        assert_eq!(r.etype, ethertype::MPLS_UNICAST);
        assert_eq!(r.proto, ip_proto::UDP);
        assert_eq!(r.ipv6_flow_label, 0xabcde);
        assert_eq!(r.ip_tos, 0x20);
        assert_eq!(r.ip_ttl, 9);
        assert_eq!((r.src_port, r.dst_port), (5353, 53));
        // Cut inside the extension headers: addresses yes, ports no.
        let (depth, r) = parse(&bytes[..30 + 40 + 20]);
        assert_eq!(depth, Depth::Network);
        assert_eq!(r.src_port, 0);
    }

    #[test]
    fn later_fragments_have_no_transport_header() {
        let mut frame = sample_frame();
        frame.network = Network::Ipv4 {
            src: [1, 2, 3, 4],
            dst: [5, 6, 7, 8],
            options_len: 8,
            fragment_offset: 185,
        };
        let mut bytes = Vec::new();
        frame.emit(&mut bytes);
        let (depth, r) = parse(&bytes);
        assert_eq!(depth, Depth::Network);
        assert_eq!(r.src_port, 0);
        assert_eq!(r.proto, ip_proto::TCP);
    }

    #[test]
    fn ipv4_options_and_icmp() {
        let mut frame = sample_frame();
        frame.proto = ip_proto::ICMP;
        frame.transport = Transport::Icmp { kind: 8, code: 0 };
        frame.network = Network::Ipv4 {
            src: [192, 0, 2, 1],
            dst: [192, 0, 2, 2],
            options_len: 40,
            fragment_offset: 0,
        };
        let mut bytes = Vec::new();
        frame.emit(&mut bytes);
        assert_eq!(bytes[14], 0x4f);
        let (depth, r) = parse(&bytes);
        assert_eq!(depth, Depth::Transport);
        assert_eq!((r.icmp_type, r.icmp_code), (8, 0));
    }

    #[test]
    fn non_ip_ethertypes_stop_at_the_link_layer() {
        let mut arp = VLAN_TCP;
        arp[16..18].copy_from_slice(&[0x08, 0x06]);
        let (depth, r) = parse(&arp);
        assert_eq!(depth, Depth::Link);
        assert_eq!(r.etype, 0x0806);
        assert_eq!(r.proto, 0);
        // A bad IP version under an IPv4 ethertype fills nothing past the link layer.
        let mut bad = VLAN_TCP;
        bad[18] = 0x65;
        assert_eq!(parse(&bad).0, Depth::Link);
    }

    fn sample_frame() -> Frame {
        Frame {
            dst_mac: [0xaa; 6],
            src_mac: [0xbb; 6],
            vlans: vec![],
            mpls: vec![],
            network: Network::Ipv4 {
                src: [10, 1, 1, 1],
                dst: [10, 2, 2, 2],
                options_len: 0,
                fragment_offset: 0,
            },
            proto: ip_proto::TCP,
            tos: 0,
            ttl: 64,
            transport: Transport::Ports {
                src: 40000,
                dst: 443,
                tcp_flags: 0x18,
            },
            payload_len: 0,
        }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let network = prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>(), 0u8..=10).prop_map(|(src, dst, words)| {
                Network::Ipv4 {
                    src,
                    dst,
                    options_len: words * 4,
                    fragment_offset: 0,
                }
            }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                0u32..0x10_0000,
                proptest::collection::vec(
                    prop_oneof![Just(0u8), Just(43), Just(44), Just(60)],
                    0..4
                )
            )
                .prop_map(|(src, dst, flow_label, extensions)| Network::Ipv6 {
                    src,
                    dst,
                    flow_label,
                    extensions,
                }),
        ];
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::collection::vec(0u16..4096, 0..3),
            proptest::collection::vec(0u32..0x10_0000, 0..3),
            network,
            prop_oneof![Just(6u8), Just(17), Just(132)],
            any::<u8>(),
            any::<u8>(),
            any::<(u16, u16)>(),
            0u16..0x200,
            0usize..64,
        )
            .prop_map(
                |(
                    dst_mac,
                    src_mac,
                    vlans,
                    mpls,
                    network,
                    proto,
                    tos,
                    ttl,
                    ports,
                    flags,
                    payload_len,
                )| {
                    Frame {
                        dst_mac,
                        src_mac,
                        vlans,
                        mpls,
                        network,
                        proto,
                        tos,
                        ttl,
                        transport: Transport::Ports {
                            src: ports.0,
                            dst: ports.1,
                            tcp_flags: if proto == 6 { flags } else { 0 },
                        },
                        payload_len,
                    }
                },
            )
    }

    /// The straight lines really take their cases (so the equivalence property is not vacuous),
    /// and leave the record untouched when they refuse a frame.
    #[test]
    fn fast_paths_take_their_cases() {
        let frame = |vlans: Vec<u16>, network: Network, proto: u8| {
            let mut bytes = Vec::new();
            Frame {
                dst_mac: [2; 6],
                src_mac: [4; 6],
                vlans,
                mpls: Vec::new(),
                network,
                proto,
                tos: 0x10,
                ttl: 9,
                transport: Transport::Ports {
                    src: 1,
                    dst: 2,
                    tcp_flags: if proto == ip_proto::TCP { 0x12 } else { 0 },
                },
                // UDP takes the straight line only with 14 transport bytes present.
                payload_len: 16,
            }
            .emit(&mut bytes);
            bytes
        };
        let v4 = Network::Ipv4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            options_len: 0,
            fragment_offset: 0,
        };
        let v6 = Network::Ipv6 {
            src: [1; 16],
            dst: [2; 16],
            flow_label: 7,
            extensions: Vec::new(),
        };
        let untagged_v4 = frame(Vec::new(), v4.clone(), ip_proto::TCP);
        let mut r = FlowRecord::zeroed();
        assert_eq!(
            parse_untagged_ipv4_fast::<false>(&untagged_v4, &mut r),
            Some(Depth::Transport)
        );
        assert_eq!((r.src_port, r.dst_port, r.tcp_flags), (1, 2, 0x12));
        for taken in [
            untagged_v4.clone(),
            frame(vec![100], v4.clone(), ip_proto::UDP),
            frame(Vec::new(), v6.clone(), ip_proto::TCP),
            frame(vec![5], v6.clone(), ip_proto::UDP),
        ] {
            let mut r = FlowRecord::zeroed();
            assert_eq!(parse_ethernet_fast(&taken, &mut r), Some(Depth::Transport));
        }
        // Refused: QinQ, IPv4 options, IPv6 extension headers, ICMP, a header cut inside TCP.
        for refused in [
            frame(vec![1, 2], v4.clone(), ip_proto::TCP),
            frame(
                Vec::new(),
                Network::Ipv4 {
                    src: [1; 4],
                    dst: [2; 4],
                    options_len: 4,
                    fragment_offset: 0,
                },
                ip_proto::TCP,
            ),
            frame(
                Vec::new(),
                Network::Ipv6 {
                    src: [1; 16],
                    dst: [2; 16],
                    flow_label: 0,
                    extensions: vec![ip_proto::HOP_BY_HOP],
                },
                ip_proto::TCP,
            ),
            frame(Vec::new(), v4.clone(), ip_proto::ICMP),
            untagged_v4[..14 + 20 + 13].to_vec(),
        ] {
            let mut r = FlowRecord::zeroed();
            assert_eq!(parse_ethernet_fast(&refused, &mut r), None);
            assert_eq!(parse_untagged_ipv4_fast::<false>(&refused, &mut r), None);
            assert_eq!(parse_untagged_ipv4_fast::<true>(&refused, &mut r), None);
            assert_eq!(
                bytemuck::bytes_of(&r),
                bytemuck::bytes_of(&FlowRecord::zeroed())
            );
        }
    }

    proptest! {
        #[test]
        fn emit_then_parse_recovers_every_field(frame in arb_frame()) {
            let mut bytes = Vec::new();
            frame.emit(&mut bytes);
            let (depth, r) = parse(&bytes);
            prop_assert_eq!(depth, Depth::Transport);
            prop_assert_eq!(r.dst_mac, frame.dst_mac);
            prop_assert_eq!(r.src_mac, frame.src_mac);
            prop_assert_eq!(r.vlan_id, frame.vlans.first().copied().unwrap_or(0));
            prop_assert_eq!(r.etype, frame.inner_ethertype());
            prop_assert_eq!(r.proto, frame.proto);
            prop_assert_eq!(r.ip_ttl, frame.ttl);
            prop_assert_eq!(r.ip_tos, frame.tos);
            match &frame.network {
                Network::Ipv4 { src, dst, .. } => {
                    prop_assert_eq!(r.src_addr, ipv4_bytes(*src));
                    prop_assert_eq!(r.dst_addr, ipv4_bytes(*dst));
                }
                Network::Ipv6 { src, dst, flow_label, .. } => {
                    prop_assert_eq!(r.src_addr, *src);
                    prop_assert_eq!(r.dst_addr, *dst);
                    prop_assert_eq!(r.ipv6_flow_label, *flow_label);
                }
            }
            let Transport::Ports { src, dst, tcp_flags } = frame.transport else { unreachable!() };
            prop_assert_eq!((r.src_port, r.dst_port, r.tcp_flags), (src, dst, tcp_flags));
        }

        /// The straight-line path and the general walk give identical records and depths, on
        /// emitted frames (every truncation, with one byte flipped) and on arbitrary bytes that
        /// start like the fast path's frames.
        #[test]
        fn fast_path_matches_general_walk(
            frame in arb_frame(),
            flip in any::<(usize, u8)>(),
            noise in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = Vec::new();
            frame.emit(&mut bytes);
            let mut flipped = bytes.clone();
            let at = flip.0 % flipped.len();
            flipped[at] ^= flip.1;
            // Noise shaped like the fast path's own cases: untagged or 802.1Q-tagged IPv4 (not a
            // later fragment) and IPv6, TCP or UDP.
            let proto = if flip.1 & 1 == 0 { 6 } else { 17 };
            let mut v4 = vec![0u8; 12];
            v4.extend_from_slice(&[0x08, 0x00, 0x45]);
            v4.extend_from_slice(&noise);
            if let Some(ip) = v4.get_mut(14..24) {
                ip[6] &= 0xe0;
                ip[7] = 0;
                ip[9] = proto;
            }
            let mut tagged_v4 = v4.clone();
            tagged_v4.splice(12..12, [0x81, 0x00, noise.first().copied().unwrap_or(0), 7]);
            let mut v6 = vec![0u8; 12];
            v6.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x86, 0xdd, 0x60 | (flip.1 >> 4)]);
            v6.extend_from_slice(&noise);
            if let Some(next) = v6.get_mut(18 + 6) {
                *next = proto;
            }
            let untagged_v6: Vec<u8> = v6[..12].iter().chain(&v6[16..]).copied().collect();
            for input in [&bytes, &flipped, &v4, &tagged_v4, &v6, &untagged_v6] {
                for cut in 0..=input.len() {
                    let frame = &input[..cut];
                    let mut fast = FlowRecord::zeroed();
                    let mut general = FlowRecord::zeroed();
                    let d_fast = parse_ethernet(frame, &mut fast);
                    let d_general = parse_ethernet_general(frame, &mut general);
                    prop_assert_eq!(d_fast, d_general);
                    prop_assert_eq!(bytemuck::bytes_of(&fast), bytemuck::bytes_of(&general));
                    let mut cleared = FlowRecord::zeroed();
                    prop_assert_eq!(parse_ethernet_cleared(frame, &mut cleared), d_general);
                    prop_assert_eq!(bytemuck::bytes_of(&cleared), bytemuck::bytes_of(&general));
                }
            }
        }

        #[test]
        fn any_prefix_of_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for cut in 0..=bytes.len() {
                let mut r = FlowRecord::zeroed();
                let _ = parse_ethernet(&bytes[..cut], &mut r);
                let _ = parse_ipv6(&bytes[..cut], &mut r);
                let _ = parse_mpls(&bytes[..cut], &mut r);
            }
        }
    }
}
