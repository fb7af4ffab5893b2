//! The normalized records every decoder produces and every ring file stores.
//!
//! Two record kinds exist, each a fixed-size `#[repr(C)]` plain-old-data struct written byte for byte
//! into ring files: [`FlowRecord`] (one per flow, from any protocol) and [`CounterRecord`]
//! (interface counters from sFlow counter samples). Their layouts are part of the ring file format
//! (`docs/ring-format.md`): change a field and bump the kind's `SCHEMA_VERSION`.
//!
//! Addresses are stored as 16 bytes, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`); all-zero means
//! "not reported". Integers are host byte order.

pub mod counters;

pub use counters::CounterRecord;

use bytemuck::{Pod, Zeroable};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which kind of record a ring holds.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Flow = 1,
    Counters = 2,
}

/// A record type that ring files store.
///
/// # Safety contract (checked by `bytemuck::Pod`)
/// The type has no padding and every bit pattern is valid, so a ring slot can be read as bytes.
pub trait RingRecord: Pod {
    /// The kind stored in a ring header.
    const KIND: RecordKind;
    /// Layout version of this kind; readers refuse rings of another version.
    const SCHEMA_VERSION: u16;
    /// Sequence number the ring writer stamps into the slot (count of records committed before it).
    fn ring_seq(&self) -> u64;
    /// Stamp the ring sequence number.
    fn set_ring_seq(&mut self, seq: u64);
}

/// The export protocol a flow record came from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowType {
    Unknown = 0,
    NetflowV5 = 1,
    NetflowV9 = 2,
    Ipfix = 3,
    SflowV5 = 4,
}

impl FlowType {
    /// Decode the stored byte; unknown values map to [`FlowType::Unknown`].
    pub const fn from_u8(v: u8) -> FlowType {
        match v {
            1 => FlowType::NetflowV5,
            2 => FlowType::NetflowV9,
            3 => FlowType::Ipfix,
            4 => FlowType::SflowV5,
            _ => FlowType::Unknown,
        }
    }

    /// The JSON `type` value (goflow2's names).
    pub const fn name(self) -> &'static str {
        match self {
            FlowType::Unknown => "UNKNOWN",
            FlowType::NetflowV5 => "NETFLOW_V5",
            FlowType::NetflowV9 => "NETFLOW_V9",
            FlowType::Ipfix => "IPFIX",
            FlowType::SflowV5 => "SFLOW_5",
        }
    }
}

/// One flow, normalized from NetFlow v5, NetFlow v9, IPFIX or sFlow v5.
///
/// **Size: 256 bytes, four 64-byte cache lines.** The fields the flow record must carry include six
/// addresses that may be IPv6 (exporter, source, destination, next hop, tunnel source and destination):
/// 96 bytes on their own, and 232 bytes with every other field. 192 bytes would force dropping fields
/// or making tunnel endpoints IPv4-only (sFlow 1025/1026 carry IPv6 tunnels). 256 is the next
/// power of two: ring indexing is a shift, a slot never straddles a cache line or a 4 KiB page
/// (16 slots per page), and the 24 reserved bytes let the schema grow without changing slot size.
/// Hot fields for readers (times, counters, addresses) sit in the first three lines.
///
/// Counters are raw as exported (`bytes`, `packets`); `sampling_rate` says how to renormalize.
/// A field that the exporter did not report is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowRecord {
    // --- 0..56: 64-bit values
    /// Stamped by the ring writer: number of records committed to the ring before this one.
    pub ring_seq: u64,
    /// When the datagram was received (or its capture timestamp in replay), ns since the Unix epoch.
    pub time_received_ns: u64,
    /// Flow start, ns since the Unix epoch (converted from the exporter's time base).
    pub time_flow_start_ns: u64,
    /// Flow end, ns since the Unix epoch.
    pub time_flow_end_ns: u64,
    /// Octets counted by the exporter (layer 3, or layer 2 when only that was sent, e.g. OVS IPFIX).
    pub bytes: u64,
    /// Packets counted by the exporter.
    pub packets: u64,
    /// Tunnel key: VXLAN/Geneve VNI or GRE key (OVS PEN 6876 IE 892, sFlow 1029/1030).
    pub tunnel_key: u64,
    // --- 56..152: addresses, IPv4-mapped when IPv4
    /// Address of the exporter that sent the datagram (goflow2 `sampler_address`); sFlow: agent address.
    pub exporter_addr: [u8; 16],
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub next_hop: [u8; 16],
    /// Outer (tunnel) source address.
    pub tunnel_src_addr: [u8; 16],
    /// Outer (tunnel) destination address.
    pub tunnel_dst_addr: [u8; 16],
    // --- 152..192: 32-bit values
    /// Sequence number from the export header (meaning depends on the protocol; see the decoders).
    pub sequence_num: u32,
    /// IPFIX observation domain, NetFlow v9 source id, sFlow sub-agent id, v5 engine type<<8|engine id.
    pub observation_domain_id: u32,
    /// IPFIX observationPointId (138); sFlow source id (type<<24 | index). 0 when the exporter's
    /// unsigned64 value does not fit (counted as `field_skipped`).
    pub observation_point_id: u32,
    /// 1 in N packets sampled; 0 = unknown (not exported and not configured).
    pub sampling_rate: u32,
    /// Sampler / selector id the rate came from (NetFlow v9 48, IPFIX 302), 0 if none, or if an
    /// IPFIX selectorId does not fit 32 bits (counted as `field_skipped`; its rate is still that
    /// selector's own).
    pub sampler_id: u32,
    /// Input interface (ifIndex, or OpenFlow port for OVS).
    pub in_if: u32,
    /// Output interface.
    pub out_if: u32,
    pub src_as: u32,
    pub dst_as: u32,
    /// IPv6 flow label (low 20 bits).
    pub ipv6_flow_label: u32,
    // --- 192..208: 16-bit values
    /// UDP source port of the exporter's datagram.
    pub exporter_port: u16,
    pub src_port: u16,
    pub dst_port: u16,
    /// Ethertype of the flow (0x0800 IPv4, 0x86dd IPv6, ...).
    pub etype: u16,
    pub vlan_id: u16,
    /// TCP flags (IPFIX tcpControlBits is 16 bits wide).
    pub tcp_flags: u16,
    pub tunnel_src_port: u16,
    pub tunnel_dst_port: u16,
    // --- 208..220: 8-bit values
    /// [`FlowType`] as a byte.
    pub flow_type: u8,
    /// IP protocol number.
    pub proto: u8,
    /// Full ToS / traffic class byte (DSCP is the upper six bits).
    pub ip_tos: u8,
    pub ip_ttl: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// IPFIX flowDirection (61): 0 ingress, 1 egress.
    pub flow_direction: u8,
    /// Source prefix length.
    pub src_net: u8,
    /// Destination prefix length.
    pub dst_net: u8,
    /// IPFIX flowEndReason (136).
    pub flow_end_reason: u8,
    /// Tunnel type (OVS: 1 VXLAN, 2 GRE, 3 LISP, 4 STT, 7 Geneve).
    pub tunnel_type: u8,
    /// IP protocol of the outer (tunnel) header.
    pub tunnel_proto: u8,
    // --- 220..232
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    // --- 232..256
    /// How `in_if` is encoded (sFlow interface format): 0 ifIndex, 1 discarded (`in_if` = reason
    /// code), 2 multiple interfaces (`in_if` = count, 0 = unknown). Other protocols: 0.
    pub in_if_format: u8,
    /// How `out_if` is encoded, as `in_if_format`.
    pub out_if_format: u8,
    /// Zero; room for fields added in later schema versions.
    pub reserved: [u8; 22],
}

const _: () = assert!(core::mem::size_of::<FlowRecord>() == 256);
const _: () = assert!(core::mem::align_of::<FlowRecord>() == 8);

impl RingRecord for FlowRecord {
    const KIND: RecordKind = RecordKind::Flow;
    const SCHEMA_VERSION: u16 = 1;
    fn ring_seq(&self) -> u64 {
        self.ring_seq
    }
    fn set_ring_seq(&mut self, seq: u64) {
        self.ring_seq = seq;
    }
}

impl FlowRecord {
    /// The protocol this record came from.
    pub fn flow_type(&self) -> FlowType {
        FlowType::from_u8(self.flow_type)
    }
}

/// Store an address in the 16-byte record form (IPv4 as IPv4-mapped IPv6).
pub fn addr_to_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The 16-byte form of an IPv4 address given as its four octets.
pub const fn ipv4_bytes(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// Read back a stored address: IPv4-mapped addresses become IPv4.
pub fn addr_from_bytes(bytes: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// True when the stored address is the unspecified "not reported" value (all zero).
pub fn addr_is_unset(bytes: &[u8; 16]) -> bool {
    *bytes == [0; 16]
}

/// The 16-byte form of `0.0.0.0` (reported, but zero — e.g. NetFlow v5 next hop from OVS).
pub const IPV4_UNSPECIFIED: [u8; 16] = ipv4_bytes(Ipv4Addr::UNSPECIFIED.octets());

/// Checks that the field tables of the record layouts in `docs/` are the structs' true layouts:
/// `docs/ring-format.md` (flow record) and `docs/counter-record.md` (counter record).
#[cfg(test)]
pub(crate) mod doc_layout {
    /// One field of a record struct, as the compiler lays it out.
    #[derive(Debug)]
    pub struct Field {
        pub name: &'static str,
        pub offset: usize,
        pub size: usize,
        pub ty: &'static str,
    }

    /// Size and type name of the field a projection reaches.
    pub fn shape<T, F>(_field: fn(&T) -> &F) -> (usize, &'static str) {
        (size_of::<F>(), std::any::type_name::<F>())
    }

    /// `fields!(FlowRecord: ring_seq, time_received_ns, ...)`: every named field's [`Field`].
    macro_rules! fields {
        ($t:ty: $($f:ident),* $(,)?) => {
            vec![$({
                let (size, ty) = $crate::record::doc_layout::shape(|r: &$t| &r.$f);
                $crate::record::doc_layout::Field {
                    name: stringify!($f),
                    offset: core::mem::offset_of!($t, $f),
                    size,
                    ty,
                }
            }),*]
        };
    }
    pub(crate) use fields;

    /// The rows of the first table after the heading of `doc` that contains `title`, each as its
    /// cells keyed by the column names (backticks removed); and that heading.
    fn table<'a>(doc: &'a str, title: &str) -> (&'a str, Vec<Vec<(String, String)>>) {
        let mut lines = doc
            .lines()
            .skip_while(|l| !(l.starts_with('#') && l.contains(title)));
        let heading = lines
            .next()
            .unwrap_or_else(|| panic!("no heading {title:?}"));
        let mut lines = lines.skip_while(|l| !l.starts_with('|'));
        let cells = |line: &str| -> Vec<String> {
            let line = line.replace("\\|", "/");
            let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
            inner
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        };
        let columns = cells(
            lines
                .next()
                .unwrap_or_else(|| panic!("no table after {heading:?}")),
        );
        let rows = lines
            .skip(1) // |---|---|
            .take_while(|l| l.starts_with('|'))
            .map(|l| columns.iter().cloned().zip(cells(l)).collect())
            .collect();
        (heading, rows)
    }

    /// Assert that `fields` cover a `record_size`-byte record without a gap (so that none is left
    /// out), that the heading of `doc` containing `title` names `schema`, and that the table under
    /// it lists exactly these fields in this order, at their offset, with their size and (when the
    /// table has a `type` column) their type.
    pub fn check(
        doc_name: &str,
        doc: &str,
        title: &str,
        schema: u16,
        fields: &[Field],
        record_size: usize,
    ) {
        let mut end = 0;
        for f in fields {
            assert_eq!(
                f.offset, end,
                "{f:?}: a field is missing from the list before it"
            );
            end += f.size;
        }
        assert_eq!(end, record_size, "the list misses the last fields");
        let (heading, rows) = table(doc, title);
        assert!(
            heading.contains(&format!("schema version {schema}")),
            "{doc_name}: {heading:?} does not name schema version {schema}"
        );
        let cell = |row: &[(String, String)], column: &str| {
            row.iter()
                .find(|(c, _)| c == column)
                .map(|(_, v)| v.clone())
        };
        let documented: Vec<_> = rows
            .iter()
            .map(|row| {
                (
                    cell(row, "field").unwrap_or_default(),
                    cell(row, "offset").and_then(|v| v.parse::<usize>().ok()),
                    cell(row, "size").and_then(|v| v.parse::<usize>().ok()),
                    cell(row, "type"),
                )
            })
            .collect();
        let has_type = rows.first().is_some_and(|row| cell(row, "type").is_some());
        let actual: Vec<_> = fields
            .iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    Some(f.offset),
                    Some(f.size),
                    has_type.then(|| f.ty.to_string()),
                )
            })
            .collect();
        assert_eq!(
            documented, actual,
            "{doc_name}: the table under {heading:?} is not the struct's layout \
             (field, offset, size, type)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_record_layout_is_the_one_documented() {
        let fields = doc_layout::fields!(FlowRecord:
            ring_seq, time_received_ns, time_flow_start_ns, time_flow_end_ns, bytes, packets,
            tunnel_key, exporter_addr, src_addr, dst_addr, next_hop, tunnel_src_addr,
            tunnel_dst_addr, sequence_num, observation_domain_id, observation_point_id,
            sampling_rate, sampler_id, in_if, out_if, src_as, dst_as, ipv6_flow_label,
            exporter_port, src_port, dst_port, etype, vlan_id, tcp_flags, tunnel_src_port,
            tunnel_dst_port, flow_type, proto, ip_tos, ip_ttl, icmp_type, icmp_code,
            flow_direction, src_net, dst_net, flow_end_reason, tunnel_type, tunnel_proto, src_mac,
            dst_mac, in_if_format, out_if_format, reserved,
        );
        doc_layout::check(
            "docs/ring-format.md",
            include_str!("../../../docs/ring-format.md"),
            "Flow record",
            FlowRecord::SCHEMA_VERSION,
            &fields,
            size_of::<FlowRecord>(),
        );
    }

    #[test]
    fn address_round_trip() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr_from_bytes(&addr_to_bytes(v4)), v4);
        assert_eq!(addr_from_bytes(&addr_to_bytes(v6)), v6);
        assert_eq!(addr_to_bytes(v4), ipv4_bytes([192, 0, 2, 7]));
        assert!(addr_is_unset(&[0; 16]));
        assert!(!addr_is_unset(&IPV4_UNSPECIFIED));
    }

    #[test]
    fn flow_type_names_round_trip() {
        for t in [
            FlowType::NetflowV5,
            FlowType::NetflowV9,
            FlowType::Ipfix,
            FlowType::SflowV5,
        ] {
            assert_eq!(FlowType::from_u8(t as u8), t);
        }
        assert_eq!(FlowType::from_u8(200), FlowType::Unknown);
        assert_eq!(FlowType::SflowV5.name(), "SFLOW_5");
    }
}
