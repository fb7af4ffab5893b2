//! sFlow flow records (the elements of a flow sample) → fields of one [`FlowRecord`].
//!
//! | format | record                    | fills                                                         |
//! |--------|---------------------------|---------------------------------------------------------------|
//! | 1      | raw packet header         | `bytes` = frame length; MACs, VLAN, etype, addresses, proto, ToS, TTL, flow label, ports, TCP flags, ICMP (via `packet_header`) |
//! | 2      | sampled Ethernet          | MACs, etype; `bytes` when no raw header set it                |
//! | 3 / 4  | sampled IPv4 / IPv6       | addresses, proto, ports, TCP flags, ToS / priority; `bytes` when unset |
//! | 1001   | extended switch           | `vlan_id` = source VLAN when non-zero                         |
//! | 1002   | extended router           | `next_hop`, `src_net`, `dst_net`                              |
//! | 1003   | extended gateway          | `next_hop`, `src_as`, `dst_as` = last AS of the path (the router's own AS when the path is empty) |
//! | 1006   | extended MPLS             | `next_hop` (label stacks are checked, not stored)             |
//! | 1023–1026 | IPv4 / IPv6 tunnel egress / ingress | `tunnel_src_addr`, `tunnel_dst_addr`, `tunnel_proto`, `tunnel_src_port`, `tunnel_dst_port`, `tunnel_type` guessed from the outer header (GRE 2; UDP to 4789 VXLAN 1, 6081 Geneve 7) |
//! | 1029 / 1030 | VNI egress / ingress  | `tunnel_key`                                                  |
//!
//! When egress and ingress tunnel records both appear, the later one fills the tunnel fields.
//! A record shorter than its fixed part, or whose inner counts run past it, is
//! [`ErrorReason::BadRecordLength`]; an address type other than 0/1/2 is
//! [`ErrorReason::BadRecordAddress`]. Other formats are reported as [`Outcome::Unknown`] for the
//! caller to count. The `emit` half is [`FlowRecordRepr`].

use super::xdr::{self, Element, put_address, put_element, put_mac, put_opaque, put_u32};
use crate::decode::ErrorReason;
use crate::decode::packet_header::{self, ethertype, ip_proto};
use crate::record::{FlowRecord, ipv4_bytes};
use std::net::IpAddr;

/// Flow record data formats (enterprise 0).
pub mod format {
    pub const RAW_HEADER: u32 = 1;
    pub const ETHERNET: u32 = 2;
    pub const IPV4: u32 = 3;
    pub const IPV6: u32 = 4;
    pub const SWITCH: u32 = 1001;
    pub const ROUTER: u32 = 1002;
    pub const GATEWAY: u32 = 1003;
    pub const MPLS: u32 = 1006;
    pub const IPV4_TUNNEL_EGRESS: u32 = 1023;
    pub const IPV4_TUNNEL_INGRESS: u32 = 1024;
    pub const IPV6_TUNNEL_EGRESS: u32 = 1025;
    pub const IPV6_TUNNEL_INGRESS: u32 = 1026;
    pub const VNI_EGRESS: u32 = 1029;
    pub const VNI_INGRESS: u32 = 1030;
}

/// Raw packet header protocols this decoder parses.
pub mod header_protocol {
    pub const ETHERNET: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// Offsets of the fixed parts.
pub mod field {
    pub mod raw_header {
        pub const PROTOCOL: usize = 0;
        pub const FRAME_LENGTH: usize = 4;
        pub const STRIPPED: usize = 8;
        pub const HEADER_LENGTH: usize = 12;
        pub const LEN: usize = 16;
    }
    pub mod ethernet {
        pub const LENGTH: usize = 0;
        pub const SRC_MAC: usize = 4;
        pub const DST_MAC: usize = 12;
        pub const TYPE: usize = 20;
        pub const LEN: usize = 24;
    }
    /// Sampled IPv4 (3), also the body of IPv4 tunnel records (1023/1024).
    pub mod ipv4 {
        pub const LENGTH: usize = 0;
        pub const PROTOCOL: usize = 4;
        pub const SRC: usize = 8;
        pub const DST: usize = 12;
        pub const SRC_PORT: usize = 16;
        pub const DST_PORT: usize = 20;
        pub const TCP_FLAGS: usize = 24;
        pub const TOS: usize = 28;
        pub const LEN: usize = 32;
    }
    /// Sampled IPv6 (4), also the body of IPv6 tunnel records (1025/1026).
    pub mod ipv6 {
        pub const LENGTH: usize = 0;
        pub const PROTOCOL: usize = 4;
        pub const SRC: usize = 8;
        pub const DST: usize = 24;
        pub const SRC_PORT: usize = 40;
        pub const DST_PORT: usize = 44;
        pub const TCP_FLAGS: usize = 48;
        pub const PRIORITY: usize = 52;
        pub const LEN: usize = 56;
    }
    pub mod switch {
        pub const SRC_VLAN: usize = 0;
        pub const SRC_PRIORITY: usize = 4;
        pub const DST_VLAN: usize = 8;
        pub const DST_PRIORITY: usize = 12;
        pub const LEN: usize = 16;
    }
    pub mod vni {
        pub const VNI: usize = 0;
        pub const LEN: usize = 4;
    }
}

/// What applying one record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded into the record.
    Applied,
    /// A raw packet header of a protocol other than Ethernet, IPv4 or IPv6: only `bytes` was filled.
    UnparsedHeader,
    /// A record format this decoder does not know: skipped by its length.
    Unknown,
}

/// Decode one flow record element into `record`.
#[inline(always)]
pub fn apply(element: Element<'_>, record: &mut FlowRecord) -> Result<Outcome, ErrorReason> {
    let body = element.body;
    match element.format {
        format::RAW_HEADER => raw_header(body, record),
        format::ETHERNET => {
            use field::ethernet as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
            record.src_mac = mac_at(b, f::SRC_MAC);
            record.dst_mac = mac_at(b, f::DST_MAC);
            record.etype = xdr::word(b, f::TYPE) as u16;
            if record.bytes == 0 {
                record.bytes = u64::from(xdr::word(b, f::LENGTH));
            }
            Ok(Outcome::Applied)
        }
        format::IPV4 => {
            use field::ipv4 as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
            record.src_addr = ipv4_bytes(xdr::word(b, f::SRC).to_be_bytes());
            record.dst_addr = ipv4_bytes(xdr::word(b, f::DST).to_be_bytes());
            record.proto = xdr::word(b, f::PROTOCOL) as u8;
            record.src_port = xdr::word(b, f::SRC_PORT) as u16;
            record.dst_port = xdr::word(b, f::DST_PORT) as u16;
            record.tcp_flags = xdr::word(b, f::TCP_FLAGS) as u16;
            record.ip_tos = xdr::word(b, f::TOS) as u8;
            if record.etype == 0 {
                record.etype = ethertype::IPV4;
            }
            if record.bytes == 0 {
                record.bytes = u64::from(xdr::word(b, f::LENGTH));
            }
            Ok(Outcome::Applied)
        }
        format::IPV6 => {
            use field::ipv6 as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
            record.src_addr = addr16_at(b, f::SRC);
            record.dst_addr = addr16_at(b, f::DST);
            record.proto = xdr::word(b, f::PROTOCOL) as u8;
            record.src_port = xdr::word(b, f::SRC_PORT) as u16;
            record.dst_port = xdr::word(b, f::DST_PORT) as u16;
            record.tcp_flags = xdr::word(b, f::TCP_FLAGS) as u16;
            record.ip_tos = xdr::word(b, f::PRIORITY) as u8;
            if record.etype == 0 {
                record.etype = ethertype::IPV6;
            }
            if record.bytes == 0 {
                record.bytes = u64::from(xdr::word(b, f::LENGTH));
            }
            Ok(Outcome::Applied)
        }
        format::SWITCH => switch(body, record),
        format::ROUTER => {
            let (next_hop, rest) = address(body)?;
            let b = xdr::fixed::<8>(rest).ok_or(ErrorReason::BadRecordLength)?;
            record.next_hop = next_hop;
            record.src_net = xdr::word(b, 0) as u8;
            record.dst_net = xdr::word(b, 4) as u8;
            Ok(Outcome::Applied)
        }
        format::GATEWAY => gateway(body, record),
        format::MPLS => {
            let (next_hop, rest) = address(body)?;
            let rest = skip_u32_array(rest)?;
            skip_u32_array(rest)?;
            record.next_hop = next_hop;
            Ok(Outcome::Applied)
        }
        format::IPV4_TUNNEL_EGRESS | format::IPV4_TUNNEL_INGRESS => {
            ipv4_tunnel::<false>(body, record)
        }
        format::IPV6_TUNNEL_EGRESS | format::IPV6_TUNNEL_INGRESS => {
            use field::ipv6 as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
            record.tunnel_src_addr = addr16_at(b, f::SRC);
            record.tunnel_dst_addr = addr16_at(b, f::DST);
            set_tunnel_transport(
                record,
                xdr::word(b, f::PROTOCOL) as u8,
                xdr::word(b, f::SRC_PORT) as u16,
                xdr::word(b, f::DST_PORT) as u16,
            );
            Ok(Outcome::Applied)
        }
        format::VNI_EGRESS | format::VNI_INGRESS => vni(body, record),
        _ => Ok(Outcome::Unknown),
    }
}

/// The fixed part of a raw packet header record: (header protocol, frame length, the header).
#[inline(always)]
fn raw_header_parts(body: &[u8]) -> Option<(u32, u32, &[u8])> {
    use field::raw_header as f;
    let (b, rest) = body.split_first_chunk::<{ f::LEN }>()?;
    let header = rest.get(..xdr::word(b, f::HEADER_LENGTH) as usize)?;
    Some((
        xdr::word(b, f::PROTOCOL),
        xdr::word(b, f::FRAME_LENGTH),
        header,
    ))
}

#[inline(always)]
fn raw_header(body: &[u8], record: &mut FlowRecord) -> Result<Outcome, ErrorReason> {
    let (protocol, frame_length, header) =
        raw_header_parts(body).ok_or(ErrorReason::BadRecordLength)?;
    record.bytes = u64::from(frame_length);
    match protocol {
        header_protocol::ETHERNET => {
            packet_header::parse_ethernet(header, record);
        }
        header_protocol::IPV4 => {
            record.etype = ethertype::IPV4;
            packet_header::parse_ipv4(header, record);
        }
        header_protocol::IPV6 => {
            record.etype = ethertype::IPV6;
            packet_header::parse_ipv6(header, record);
        }
        _ => return Ok(Outcome::UnparsedHeader),
    }
    Ok(Outcome::Applied)
}

/// A raw packet header record (1) of an Ethernet frame, as [`apply`] decodes it; `None`, with
/// nothing written, for any other header protocol or a record cut short (the decoder's fast path,
/// which leaves those to [`apply`]). `CLEARED`: the record's packet addresses are all zero
/// ([`packet_header::parse_ethernet_cleared`]).
#[inline(always)]
pub fn raw_ethernet_header<const CLEARED: bool>(
    body: &[u8],
    record: &mut FlowRecord,
) -> Option<()> {
    let (protocol, frame_length, header) = raw_header_parts(body)?;
    if protocol != header_protocol::ETHERNET {
        return None;
    }
    record.bytes = u64::from(frame_length);
    if CLEARED {
        packet_header::parse_ethernet_cleared(header, record);
    } else {
        packet_header::parse_ethernet(header, record);
    }
    Some(())
}

/// Extended switch (1001): the source VLAN when non-zero.
#[inline(always)]
pub fn switch(body: &[u8], record: &mut FlowRecord) -> Result<Outcome, ErrorReason> {
    use field::switch as f;
    let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
    let vlan = xdr::word(b, f::SRC_VLAN) as u16 & 0x0fff;
    if vlan != 0 {
        record.vlan_id = vlan;
    }
    Ok(Outcome::Applied)
}

/// IPv4 tunnel egress or ingress (1023 / 1024): the tunnel fields. `CLEARED`: the record's tunnel
/// addresses are all zero (written as [`packet_header::set_ipv4_mapped`] does).
#[inline(always)]
pub fn ipv4_tunnel<const CLEARED: bool>(
    body: &[u8],
    record: &mut FlowRecord,
) -> Result<Outcome, ErrorReason> {
    use field::ipv4 as f;
    let b = xdr::fixed::<{ f::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
    debug_assert!(
        !CLEARED || (record.tunnel_src_addr == [0; 16] && record.tunnel_dst_addr == [0; 16])
    );
    let src = xdr::word(b, f::SRC).to_be_bytes();
    let dst = xdr::word(b, f::DST).to_be_bytes();
    packet_header::set_ipv4_mapped::<CLEARED>(&mut record.tunnel_src_addr, src);
    packet_header::set_ipv4_mapped::<CLEARED>(&mut record.tunnel_dst_addr, dst);
    set_tunnel_transport(
        record,
        xdr::word(b, f::PROTOCOL) as u8,
        xdr::word(b, f::SRC_PORT) as u16,
        xdr::word(b, f::DST_PORT) as u16,
    );
    Ok(Outcome::Applied)
}

/// VNI egress or ingress (1029 / 1030): `tunnel_key`.
#[inline(always)]
pub fn vni(body: &[u8], record: &mut FlowRecord) -> Result<Outcome, ErrorReason> {
    let b = xdr::fixed::<{ field::vni::LEN }>(body).ok_or(ErrorReason::BadRecordLength)?;
    record.tunnel_key = u64::from(xdr::word(b, field::vni::VNI));
    Ok(Outcome::Applied)
}

fn gateway(body: &[u8], record: &mut FlowRecord) -> Result<Outcome, ErrorReason> {
    let (next_hop, rest) = address(body)?;
    let (b, mut rest) = rest
        .split_first_chunk::<16>()
        .ok_or(ErrorReason::BadRecordLength)?;
    let router_as = xdr::word(b, 0);
    let src_as = xdr::word(b, 4);
    let segments = xdr::word(b, 12) as usize;
    // Each segment is at least its type and length words.
    if segments > rest.len() / 8 {
        return Err(ErrorReason::BadRecordLength);
    }
    let mut dst_as = router_as;
    for _ in 0..segments {
        let (seg, after) = rest
            .split_first_chunk::<8>()
            .ok_or(ErrorReason::BadRecordLength)?;
        let count = xdr::word(seg, 4) as usize;
        let ases = after
            .get(..count.checked_mul(4).ok_or(ErrorReason::BadRecordLength)?)
            .ok_or(ErrorReason::BadRecordLength)?;
        if let Some(last) = ases.last_chunk::<4>() {
            dst_as = u32::from_be_bytes(*last);
        }
        rest = after.get(ases.len()..).unwrap_or_default();
    }
    let rest = skip_u32_array(rest)?; // communities
    xdr::fixed::<4>(rest).ok_or(ErrorReason::BadRecordLength)?; // local_pref
    record.next_hop = next_hop;
    record.src_as = src_as;
    record.dst_as = dst_as;
    Ok(Outcome::Applied)
}

#[inline(always)]
fn set_tunnel_transport(record: &mut FlowRecord, proto: u8, src_port: u16, dst_port: u16) {
    record.tunnel_proto = proto;
    record.tunnel_src_port = src_port;
    record.tunnel_dst_port = dst_port;
    record.tunnel_type = match proto {
        ip_proto::UDP => match dst_port {
            6081 => 7,
            4789 => 1,
            _ => 0,
        },
        ip_proto::GRE => 2,
        _ => 0,
    };
}

fn address(body: &[u8]) -> Result<([u8; 16], &[u8]), ErrorReason> {
    xdr::split_address(body).map_err(|e| match e {
        xdr::AddressError::BadType => ErrorReason::BadRecordAddress,
        xdr::AddressError::Short => ErrorReason::BadRecordLength,
    })
}

/// Skip a counted array of u32 (`count`, then `count` words).
fn skip_u32_array(b: &[u8]) -> Result<&[u8], ErrorReason> {
    let (count, rest) = b
        .split_first_chunk::<4>()
        .ok_or(ErrorReason::BadRecordLength)?;
    let len = (u32::from_be_bytes(*count) as usize)
        .checked_mul(4)
        .ok_or(ErrorReason::BadRecordLength)?;
    rest.get(len..).ok_or(ErrorReason::BadRecordLength)
}

fn mac_at<const N: usize>(b: &[u8; N], at: usize) -> [u8; 6] {
    b.get(at..)
        .and_then(|s| s.first_chunk::<6>())
        .copied()
        .unwrap_or_default()
}

fn addr16_at<const N: usize>(b: &[u8; N], at: usize) -> [u8; 16] {
    b.get(at..)
        .and_then(|s| s.first_chunk::<16>())
        .copied()
        .unwrap_or_default()
}

/// A sampled IPv4 header (record 3, and the body of tunnel records 1023/1024).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampledIpv4 {
    pub length: u32,
    pub protocol: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u32,
    pub dst_port: u32,
    pub tcp_flags: u32,
    pub tos: u32,
}

/// A sampled IPv6 header (record 4, and the body of tunnel records 1025/1026).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampledIpv6 {
    pub length: u32,
    pub protocol: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u32,
    pub dst_port: u32,
    pub tcp_flags: u32,
    pub priority: u32,
}

/// One AS path segment of an extended gateway record: 1 AS_SET, 2 AS_SEQUENCE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsPathSegment {
    pub kind: u32,
    pub ases: Vec<u32>,
}

/// A flow record to emit (the encoder half).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowRecordRepr {
    RawHeader {
        protocol: u32,
        frame_length: u32,
        stripped: u32,
        header: Vec<u8>,
    },
    Ethernet {
        length: u32,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        etype: u32,
    },
    Ipv4(SampledIpv4),
    Ipv6(SampledIpv6),
    Switch {
        src_vlan: u32,
        src_priority: u32,
        dst_vlan: u32,
        dst_priority: u32,
    },
    Router {
        next_hop: Option<IpAddr>,
        src_mask: u32,
        dst_mask: u32,
    },
    Gateway {
        next_hop: Option<IpAddr>,
        router_as: u32,
        src_as: u32,
        src_peer_as: u32,
        as_path: Vec<AsPathSegment>,
        communities: Vec<u32>,
        local_pref: u32,
    },
    Mpls {
        next_hop: Option<IpAddr>,
        in_labels: Vec<u32>,
        out_labels: Vec<u32>,
    },
    Ipv4Tunnel {
        egress: bool,
        outer: SampledIpv4,
    },
    Ipv6Tunnel {
        egress: bool,
        outer: SampledIpv6,
    },
    Vni {
        egress: bool,
        vni: u32,
    },
    /// Any other format, with its body bytes as given.
    Other {
        format: u32,
        body: Vec<u8>,
    },
}

fn put_ipv4(out: &mut Vec<u8>, ip: &SampledIpv4) {
    for v in [ip.length, ip.protocol] {
        put_u32(out, v);
    }
    out.extend_from_slice(&ip.src);
    out.extend_from_slice(&ip.dst);
    for v in [ip.src_port, ip.dst_port, ip.tcp_flags, ip.tos] {
        put_u32(out, v);
    }
}

fn put_ipv6(out: &mut Vec<u8>, ip: &SampledIpv6) {
    for v in [ip.length, ip.protocol] {
        put_u32(out, v);
    }
    out.extend_from_slice(&ip.src);
    out.extend_from_slice(&ip.dst);
    for v in [ip.src_port, ip.dst_port, ip.tcp_flags, ip.priority] {
        put_u32(out, v);
    }
}

fn put_u32_array(out: &mut Vec<u8>, values: &[u32]) {
    put_u32(out, values.len() as u32);
    for &v in values {
        put_u32(out, v);
    }
}

impl FlowRecordRepr {
    /// The record's data format.
    pub fn format(&self) -> u32 {
        match self {
            FlowRecordRepr::RawHeader { .. } => format::RAW_HEADER,
            FlowRecordRepr::Ethernet { .. } => format::ETHERNET,
            FlowRecordRepr::Ipv4(_) => format::IPV4,
            FlowRecordRepr::Ipv6(_) => format::IPV6,
            FlowRecordRepr::Switch { .. } => format::SWITCH,
            FlowRecordRepr::Router { .. } => format::ROUTER,
            FlowRecordRepr::Gateway { .. } => format::GATEWAY,
            FlowRecordRepr::Mpls { .. } => format::MPLS,
            FlowRecordRepr::Ipv4Tunnel { egress: true, .. } => format::IPV4_TUNNEL_EGRESS,
            FlowRecordRepr::Ipv4Tunnel { egress: false, .. } => format::IPV4_TUNNEL_INGRESS,
            FlowRecordRepr::Ipv6Tunnel { egress: true, .. } => format::IPV6_TUNNEL_EGRESS,
            FlowRecordRepr::Ipv6Tunnel { egress: false, .. } => format::IPV6_TUNNEL_INGRESS,
            FlowRecordRepr::Vni { egress: true, .. } => format::VNI_EGRESS,
            FlowRecordRepr::Vni { egress: false, .. } => format::VNI_INGRESS,
            FlowRecordRepr::Other { format, .. } => *format,
        }
    }

    /// Append the framed record (format, length, body) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_element(out, self.format(), |out| match self {
            FlowRecordRepr::RawHeader {
                protocol,
                frame_length,
                stripped,
                header,
            } => {
                put_u32(out, *protocol);
                put_u32(out, *frame_length);
                put_u32(out, *stripped);
                put_opaque(out, header);
            }
            FlowRecordRepr::Ethernet {
                length,
                src_mac,
                dst_mac,
                etype,
            } => {
                put_u32(out, *length);
                put_mac(out, *src_mac);
                put_mac(out, *dst_mac);
                put_u32(out, *etype);
            }
            FlowRecordRepr::Ipv4(ip) | FlowRecordRepr::Ipv4Tunnel { outer: ip, .. } => {
                put_ipv4(out, ip)
            }
            FlowRecordRepr::Ipv6(ip) | FlowRecordRepr::Ipv6Tunnel { outer: ip, .. } => {
                put_ipv6(out, ip)
            }
            FlowRecordRepr::Switch {
                src_vlan,
                src_priority,
                dst_vlan,
                dst_priority,
            } => {
                for v in [*src_vlan, *src_priority, *dst_vlan, *dst_priority] {
                    put_u32(out, v);
                }
            }
            FlowRecordRepr::Router {
                next_hop,
                src_mask,
                dst_mask,
            } => {
                put_address(out, *next_hop);
                put_u32(out, *src_mask);
                put_u32(out, *dst_mask);
            }
            FlowRecordRepr::Gateway {
                next_hop,
                router_as,
                src_as,
                src_peer_as,
                as_path,
                communities,
                local_pref,
            } => {
                put_address(out, *next_hop);
                put_u32(out, *router_as);
                put_u32(out, *src_as);
                put_u32(out, *src_peer_as);
                put_u32(out, as_path.len() as u32);
                for segment in as_path {
                    put_u32(out, segment.kind);
                    put_u32_array(out, &segment.ases);
                }
                put_u32_array(out, communities);
                put_u32(out, *local_pref);
            }
            FlowRecordRepr::Mpls {
                next_hop,
                in_labels,
                out_labels,
            } => {
                put_address(out, *next_hop);
                put_u32_array(out, in_labels);
                put_u32_array(out, out_labels);
            }
            FlowRecordRepr::Vni { vni, .. } => put_u32(out, *vni),
            FlowRecordRepr::Other { body, .. } => out.extend_from_slice(body),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::packet_header::{Frame, Network, Transport};
    use bytemuck::Zeroable;

    fn applied(bytes: &[u8]) -> (Result<Outcome, ErrorReason>, FlowRecord) {
        let (element, rest) = xdr::split_element(bytes).expect("framed");
        assert!(rest.is_empty());
        let mut r = FlowRecord::zeroed();
        let outcome = apply(element, &mut r);
        (outcome, r)
    }

    #[test]
    fn raw_header_ipv4_udp() {
        // Header protocol 11 (IPv4), frame 1000, stripped 4, 28 header bytes: UDP 10.0.0.1:53 → 10.0.0.2:999.
        let bytes = [
            0, 0, 0, 1, 0, 0, 0, 44, // format 1, length
            0, 0, 0, 11, 0, 0, 0x03, 0xe8, 0, 0, 0, 4, 0, 0, 0, 28, //
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, //
            0, 53, 0x03, 0xe7, 0, 8, 0, 0,
        ];
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.bytes, 1000);
        assert_eq!(r.etype, 0x0800);
        assert_eq!(r.proto, 17);
        assert_eq!((r.src_port, r.dst_port), (53, 999));
        assert_eq!(r.src_addr, ipv4_bytes([10, 0, 0, 1]));
    }

    #[test]
    fn raw_header_longer_than_record_is_bad_length_and_other_protocols_unparsed() {
        let mut bytes = vec![
            0, 0, 0, 1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 5,
        ];
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(applied(&bytes).0, Err(ErrorReason::BadRecordLength));
        let bytes = [
            0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::UnparsedHeader));
        assert_eq!(r.bytes, 64);
    }

    #[test]
    fn sampled_ethernet_by_bytes() {
        let bytes = [
            0, 0, 0, 2, 0, 0, 0, 24, 0, 0, 0x05, 0xdc, // length 1500
            1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0, 0, 0, 0x86, 0xdd,
        ];
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.src_mac, [1, 2, 3, 4, 5, 6]);
        assert_eq!(r.dst_mac, [7, 8, 9, 10, 11, 12]);
        assert_eq!(r.etype, 0x86dd);
        assert_eq!(r.bytes, 1500);
    }

    #[test]
    fn sampled_ipv4_and_ipv4_tunnel_by_bytes() {
        let body = [
            0, 0, 0, 100, 0, 0, 0, 6, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0x1f, 0x90, 0, 0, 0, 80, 0,
            0, 0, 0x12, 0, 0, 0, 0x28,
        ];
        let mut bytes = vec![0, 0, 0, 3, 0, 0, 0, 32];
        bytes.extend_from_slice(&body);
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.src_addr, ipv4_bytes([192, 0, 2, 1]));
        assert_eq!(r.dst_addr, ipv4_bytes([192, 0, 2, 2]));
        assert_eq!((r.proto, r.src_port, r.dst_port), (6, 8080, 80));
        assert_eq!((r.tcp_flags, r.ip_tos, r.bytes), (0x12, 0x28, 100));

        let mut bytes = vec![0, 0, 0x03, 0xff, 0, 0, 0, 32]; // 1023
        let mut outer = body;
        outer[7] = 17;
        outer[20..24].copy_from_slice(&4789u32.to_be_bytes());
        bytes.extend_from_slice(&outer);
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.tunnel_src_addr, ipv4_bytes([192, 0, 2, 1]));
        assert_eq!(r.tunnel_dst_addr, ipv4_bytes([192, 0, 2, 2]));
        assert_eq!(
            (r.tunnel_proto, r.tunnel_dst_port, r.tunnel_type),
            (17, 4789, 1)
        );
        assert_eq!(r.src_addr, [0; 16]);
    }

    #[test]
    fn switch_router_vni_by_bytes() {
        let (_, r) = applied(&[
            0, 0, 0x03, 0xe9, 0, 0, 0, 16, 0, 0, 0, 42, 0, 0, 0, 3, 0, 0, 0, 43, 0, 0, 0, 0,
        ]);
        assert_eq!(r.vlan_id, 42);
        let (_, r) = applied(&[
            0, 0, 0x03, 0xea, 0, 0, 0, 16, 0, 0, 0, 1, 10, 9, 8, 7, 0, 0, 0, 24, 0, 0, 0, 16,
        ]);
        assert_eq!(r.next_hop, ipv4_bytes([10, 9, 8, 7]));
        assert_eq!((r.src_net, r.dst_net), (24, 16));
        let (_, r) = applied(&[0, 0, 0x04, 0x06, 0, 0, 0, 4, 0, 0x12, 0xd6, 0x87]);
        assert_eq!(r.tunnel_key, 1_234_567);
        // Router record with an address type 9.
        let (outcome, _) = applied(&[
            0, 0, 0x03, 0xea, 0, 0, 0, 16, 0, 0, 0, 9, 10, 9, 8, 7, 0, 0, 0, 24, 0, 0, 0, 16,
        ]);
        assert_eq!(outcome, Err(ErrorReason::BadRecordAddress));
    }

    #[test]
    fn mpls_next_hop_by_bytes_and_ipv6() {
        // 1006: next hop 10.9.8.7, in stack [1, 2], out stack [3].
        let (outcome, r) = applied(&[
            0, 0, 0x03, 0xee, 0, 0, 0, 28, 0, 0, 0, 1, 10, 9, 8, 7, //
            0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3,
        ]);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.next_hop, ipv4_bytes([10, 9, 8, 7]));
        let next_hop: std::net::Ipv6Addr = "2001:db8::fe".parse().unwrap();
        let mut bytes = Vec::new();
        FlowRecordRepr::Mpls {
            next_hop: Some(next_hop.into()),
            in_labels: vec![],
            out_labels: vec![16, 17, 18],
        }
        .emit(&mut bytes);
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!(r.next_hop, next_hop.octets());
    }

    #[test]
    fn raw_header_ipv6_icmpv6() {
        // Ethernet / IPv6 (with a hop-by-hop header) / ICMPv6 echo reply (type 129, code 0),
        // then a destination unreachable (type 1) with code 4 (port unreachable).
        for (kind, code) in [(129, 0), (1, 4)] {
            let frame = Frame {
                dst_mac: [2; 6],
                src_mac: [4; 6],
                vlans: vec![],
                mpls: vec![],
                network: Network::Ipv6 {
                    src: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    dst: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    flow_label: 7,
                    extensions: vec![0],
                },
                proto: ip_proto::ICMPV6,
                tos: 0,
                ttl: 64,
                transport: Transport::Icmp { kind, code },
                payload_len: 8,
            };
            let mut header = Vec::new();
            frame.emit(&mut header);
            let mut bytes = Vec::new();
            FlowRecordRepr::RawHeader {
                protocol: 1,
                frame_length: header.len() as u32 + 4,
                stripped: 4,
                header,
            }
            .emit(&mut bytes);
            let (outcome, r) = applied(&bytes);
            assert_eq!(outcome, Ok(Outcome::Applied));
            assert_eq!((r.etype, r.proto), (0x86dd, ip_proto::ICMPV6));
            assert_eq!((r.icmp_type, r.icmp_code), (kind, code));
            assert_eq!((r.src_port, r.dst_port), (0, 0));
        }
    }

    #[test]
    fn gateway_as_path_summarized() {
        let repr = FlowRecordRepr::Gateway {
            next_hop: Some("2001:db8::1".parse().unwrap()),
            router_as: 65000,
            src_as: 64512,
            src_peer_as: 64513,
            as_path: vec![
                AsPathSegment {
                    kind: 2,
                    ases: vec![65001, 65002],
                },
                AsPathSegment {
                    kind: 1,
                    ases: vec![65003, 65004],
                },
            ],
            communities: vec![1, 2, 3],
            local_pref: 100,
        };
        let mut bytes = Vec::new();
        repr.emit(&mut bytes);
        let (outcome, r) = applied(&bytes);
        assert_eq!(outcome, Ok(Outcome::Applied));
        assert_eq!((r.src_as, r.dst_as), (64512, 65004));
        assert_eq!(r.next_hop[0..2], [0x20, 0x01]);

        // Empty path: destination in the router's own AS.
        let repr = FlowRecordRepr::Gateway {
            next_hop: None,
            router_as: 65000,
            src_as: 1,
            src_peer_as: 2,
            as_path: vec![],
            communities: vec![],
            local_pref: 0,
        };
        let mut bytes = Vec::new();
        repr.emit(&mut bytes);
        assert_eq!(applied(&bytes).1.dst_as, 65000);

        // A segment count that cannot fit.
        let mut lying = bytes.clone();
        lying[8 + 4 + 12..8 + 4 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(applied(&lying).0, Err(ErrorReason::BadRecordLength));
    }

    #[test]
    fn every_known_record_cut_short_is_bad_record_length() {
        let reprs = [
            FlowRecordRepr::RawHeader {
                protocol: 1,
                frame_length: 64,
                stripped: 4,
                header: vec![0; 16],
            },
            FlowRecordRepr::Ethernet {
                length: 1,
                src_mac: [1; 6],
                dst_mac: [2; 6],
                etype: 0x800,
            },
            FlowRecordRepr::Ipv4(SampledIpv4::default()),
            FlowRecordRepr::Ipv6(SampledIpv6::default()),
            FlowRecordRepr::Switch {
                src_vlan: 1,
                src_priority: 0,
                dst_vlan: 2,
                dst_priority: 0,
            },
            FlowRecordRepr::Router {
                next_hop: Some("10.0.0.1".parse().unwrap()),
                src_mask: 8,
                dst_mask: 8,
            },
            FlowRecordRepr::Mpls {
                next_hop: Some("10.0.0.1".parse().unwrap()),
                in_labels: vec![1, 2],
                out_labels: vec![3],
            },
            FlowRecordRepr::Ipv4Tunnel {
                egress: false,
                outer: SampledIpv4::default(),
            },
            FlowRecordRepr::Ipv6Tunnel {
                egress: true,
                outer: SampledIpv6::default(),
            },
            FlowRecordRepr::Vni {
                egress: true,
                vni: 5,
            },
        ];
        for repr in reprs {
            let mut bytes = Vec::new();
            repr.emit(&mut bytes);
            assert_eq!(applied(&bytes).0, Ok(Outcome::Applied), "{repr:?}");
            for cut in 8..bytes.len() {
                let mut short = bytes[..cut].to_vec();
                short[4..8].copy_from_slice(&((cut - 8) as u32).to_be_bytes());
                assert_eq!(
                    applied(&short).0,
                    Err(ErrorReason::BadRecordLength),
                    "{repr:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_formats_are_reported() {
        let (outcome, r) = applied(&[0, 0, 0x10, 0x01, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(outcome, Ok(Outcome::Unknown));
        assert_eq!(r, FlowRecord::zeroed());
    }
}
