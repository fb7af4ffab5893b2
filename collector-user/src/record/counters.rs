//! [`CounterRecord`]: one sFlow counter record (interface, VLAN, processor, LACP, OpenFlow port,
//! port name, application resources, OVS datapath counters), keyed by agent + ifIndex.
//!
//! This module owns the counter record's ring layout and the typed counter blocks stored in its body.
//! It knows nothing of sFlow's wire encoding (that is `decode::sflow`): every integer here is host byte
//! order, already converted.
//!
//! # Layout (256 bytes, `#[repr(C)]`, no padding; `docs/counter-record.md` has the same table)
//!
//! | offset | size | field               | meaning                                                          |
//! |--------|------|---------------------|------------------------------------------------------------------|
//! | 0      | 8    | `ring_seq`          | stamped by the ring writer                                       |
//! | 8      | 8    | `time_received_ns`  | receive (or capture) time, ns since the Unix epoch               |
//! | 16     | 16   | `agent_addr`        | sFlow agent address, IPv4-mapped when IPv4                       |
//! | 32     | 4    | `sub_agent_id`      | sFlow sub-agent id                                               |
//! | 36     | 4    | `sequence_num`      | counter sample sequence number (per source)                      |
//! | 40     | 4    | `source_index`      | data source index (full 32 bits: expanded samples allow it)      |
//! | 44     | 4    | `if_index`          | interface the counters describe: generic record's ifIndex, else the source index |
//! | 48     | 4    | `agent_uptime_ms`   | agent uptime from the datagram header                            |
//! | 52     | 4    | `format`            | counter record data format, `enterprise << 12 \| format` ([`format`](mod@format)) |
//! | 56     | 2    | `exporter_port`     | UDP source port of the datagram                                  |
//! | 58     | 2    | `body_len`          | bytes of `body` in use                                           |
//! | 60     | 1    | `source_type`       | data source type (0 ifIndex, 1 VLAN, 2 physical, 3 logical entity) |
//! | 61     | 1    | `sample_type`       | sFlow sample format the record came in: 2 compact, 4 expanded    |
//! | 62     | 1    | `flags`             | bit 0 [`FLAG_BODY_TRUNCATED`]: the body was cut to fit (port names over 192 bytes) |
//! | 63     | 1    | `reserved`          | zero                                                             |
//! | 64     | 192  | `body`              | one typed block chosen by `format` (below), zero-filled after `body_len` |
//!
//! Body per `format`: 1 [`GenericInterfaceCounters`] (88 B), 2 [`EthernetCounters`] (52 B),
//! 5 [`VlanCounters`] (32 B), 7 [`LacpCounters`] (52 B), 1001 [`ProcessorCounters`] (32 B),
//! 1004 [`OpenflowPortCounters`] (16 B), 1005 port name bytes (up to 192 B, `body_len` = bytes stored),
//! 2203 [`AppResourcesCounters`] (40 B), 2207 [`OvsDatapathCounters`] (24 B). Read it with
//! [`CounterRecord::body`].
//!
//! **Why 256 bytes.** The key header (agent, sub-agent, source, ifIndex, times, format) takes 64 bytes
//! and the largest fixed counter block (generic interface counters) 88: 152 bytes, so 128 cannot hold
//! it. 256 is the next power of two and the flow record's slot size: ring indexing stays a shift, a slot
//! never straddles a page, and the 192-byte body also holds port names (OVS names are ≤ 15 bytes; sFlow
//! allows 255, longer ones are truncated and flagged).

use super::{RecordKind, RingRecord};
use bytemuck::{Pod, Zeroable};

/// sFlow counter record data formats stored in [`CounterRecord::format`] (enterprise 0).
pub mod format {
    pub const GENERIC_INTERFACE: u32 = 1;
    pub const ETHERNET: u32 = 2;
    pub const VLAN: u32 = 5;
    pub const LACP: u32 = 7;
    pub const PROCESSOR: u32 = 1001;
    pub const OPENFLOW_PORT: u32 = 1004;
    pub const PORT_NAME: u32 = 1005;
    pub const APP_RESOURCES: u32 = 2203;
    pub const OVS_DATAPATH: u32 = 2207;
}

/// Bytes available for the typed counter block.
pub const BODY_LEN: usize = 192;

/// [`CounterRecord::flags`] bit: the body was truncated to [`BODY_LEN`] bytes.
pub const FLAG_BODY_TRUNCATED: u8 = 1;

/// One sFlow counter record with the sample's key. See the module documentation for the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct CounterRecord {
    /// Stamped by the ring writer: number of records committed to the ring before this one.
    pub ring_seq: u64,
    /// When the datagram was received (capture time in replay), ns since the Unix epoch.
    pub time_received_ns: u64,
    /// sFlow agent address (IPv4-mapped when IPv4).
    pub agent_addr: [u8; 16],
    pub sub_agent_id: u32,
    /// Counter sample sequence number (per data source).
    pub sequence_num: u32,
    /// Data source index (sFlow source id without its type).
    pub source_index: u32,
    /// The interface the counters describe: the generic record's ifIndex, else the source index.
    pub if_index: u32,
    /// Agent uptime (ms) from the datagram header.
    pub agent_uptime_ms: u32,
    /// Counter record data format (`enterprise << 12 | format`), see [`format`](mod@format).
    pub format: u32,
    /// UDP source port of the datagram.
    pub exporter_port: u16,
    /// Bytes of `body` in use.
    pub body_len: u16,
    /// Data source type: 0 ifIndex, 1 VLAN, 2 physical entity, 3 logical entity.
    pub source_type: u8,
    /// sFlow sample format the record came in: 2 counter sample, 4 expanded counter sample.
    pub sample_type: u8,
    /// [`FLAG_BODY_TRUNCATED`].
    pub flags: u8,
    /// Zero.
    pub reserved: u8,
    /// The counter block chosen by `format` (8-byte aligned words; read with [`CounterRecord::body`]).
    pub body: [u64; BODY_LEN / 8],
}

const _: () = assert!(core::mem::size_of::<CounterRecord>() == 256);
const _: () = assert!(core::mem::offset_of!(CounterRecord, body) == 64);

impl RingRecord for CounterRecord {
    const KIND: RecordKind = RecordKind::Counters;
    const SCHEMA_VERSION: u16 = 1;
    fn ring_seq(&self) -> u64 {
        self.ring_seq
    }
    fn set_ring_seq(&mut self, seq: u64) {
        self.ring_seq = seq;
    }
}

/// A typed counter block that a [`CounterRecord`] body can hold.
pub trait CounterBlock: Pod {
    /// The sFlow counter record format this block comes from.
    const FORMAT: u32;
}

/// Generic interface counters (format 1, RFC 2233 ifTable/ifXTable). 64-bit fields first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GenericInterfaceCounters {
    pub if_speed: u64,
    pub in_octets: u64,
    pub out_octets: u64,
    pub if_index: u32,
    pub if_type: u32,
    /// 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.
    pub if_direction: u32,
    /// Bit 0 ifAdminStatus up, bit 1 ifOperStatus up.
    pub if_status: u32,
    pub in_ucast_pkts: u32,
    pub in_mcast_pkts: u32,
    pub in_bcast_pkts: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_ucast_pkts: u32,
    pub out_mcast_pkts: u32,
    pub out_bcast_pkts: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous_mode: u32,
}

/// Ethernet interface counters (format 2, RFC 2358 dot3Stats), in wire order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EthernetCounters {
    pub alignment_errors: u32,
    pub fcs_errors: u32,
    pub single_collision_frames: u32,
    pub multiple_collision_frames: u32,
    pub sqe_test_errors: u32,
    pub deferred_transmissions: u32,
    pub late_collisions: u32,
    pub excessive_collisions: u32,
    pub internal_mac_transmit_errors: u32,
    pub carrier_sense_errors: u32,
    pub frame_too_longs: u32,
    pub internal_mac_receive_errors: u32,
    pub symbol_errors: u32,
}

/// VLAN counters (format 5).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VlanCounters {
    pub octets: u64,
    pub vlan_id: u32,
    pub ucast_pkts: u32,
    pub mcast_pkts: u32,
    pub bcast_pkts: u32,
    pub discards: u32,
    /// Zero (keeps the block free of padding).
    pub reserved: u32,
}

/// Processor counters (format 1001).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ProcessorCounters {
    pub total_memory: u64,
    pub free_memory: u64,
    /// CPU utilisation in hundredths of a percent, 5 s / 1 min / 5 min averages.
    pub cpu_5s: u32,
    pub cpu_1m: u32,
    pub cpu_5m: u32,
    /// Zero (keeps the block free of padding).
    pub reserved: u32,
}

/// IEEE 802.3ad LACP port counters (format 7).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LacpCounters {
    pub actor_system_id: [u8; 6],
    pub partner_oper_system_id: [u8; 6],
    /// actorAdmin, actorOper, partnerAdmin, partnerOper state bytes.
    pub port_state: [u8; 4],
    pub attached_agg_id: u32,
    pub lacpdus_rx: u32,
    pub marker_pdus_rx: u32,
    pub marker_response_pdus_rx: u32,
    pub unknown_rx: u32,
    pub illegal_rx: u32,
    pub lacpdus_tx: u32,
    pub marker_pdus_tx: u32,
    pub marker_response_pdus_tx: u32,
}

/// OpenFlow port (format 1004): which datapath and port the interface is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OpenflowPortCounters {
    pub datapath_id: u64,
    pub port_no: u32,
    /// Zero (keeps the block free of padding).
    pub reserved: u32,
}

/// Application resources (format 2203; OVS reports the `ovs-vswitchd` process).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AppResourcesCounters {
    pub mem_used: u64,
    pub mem_max: u64,
    /// CPU time in user mode, ms.
    pub user_time: u32,
    /// CPU time in kernel mode, ms.
    pub system_time: u32,
    pub fd_open: u32,
    pub fd_max: u32,
    pub conn_open: u32,
    pub conn_max: u32,
}

/// Open vSwitch datapath counters (format 2207).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OvsDatapathCounters {
    pub n_hit: u32,
    pub n_missed: u32,
    pub n_lost: u32,
    pub n_mask_hit: u32,
    pub n_flows: u32,
    pub n_masks: u32,
}

macro_rules! counter_blocks {
    ($($ty:ident => $format:ident,)*) => {
        $(impl CounterBlock for $ty {
            const FORMAT: u32 = format::$format;
        })*
        const _: () = {
            $(assert!(core::mem::size_of::<$ty>() <= BODY_LEN);
              assert!(core::mem::align_of::<$ty>() <= 8);)*
        };
    };
}

counter_blocks! {
    GenericInterfaceCounters => GENERIC_INTERFACE,
    EthernetCounters => ETHERNET,
    VlanCounters => VLAN,
    LacpCounters => LACP,
    ProcessorCounters => PROCESSOR,
    OpenflowPortCounters => OPENFLOW_PORT,
    AppResourcesCounters => APP_RESOURCES,
    OvsDatapathCounters => OVS_DATAPATH,
}

/// The body of a [`CounterRecord`], typed by its `format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterBody<'a> {
    GenericInterface(&'a GenericInterfaceCounters),
    Ethernet(&'a EthernetCounters),
    Vlan(&'a VlanCounters),
    Lacp(&'a LacpCounters),
    Processor(&'a ProcessorCounters),
    OpenflowPort(&'a OpenflowPortCounters),
    /// Port name bytes as sent (not checked for UTF-8), possibly truncated (see `flags`).
    PortName(&'a [u8]),
    AppResources(&'a AppResourcesCounters),
    OvsDatapath(&'a OvsDatapathCounters),
    /// A format this schema does not define (the decoder never writes one).
    Unknown(u32),
}

impl CounterRecord {
    /// The body as bytes (all [`BODY_LEN`] of them).
    pub fn body_bytes(&self) -> &[u8; BODY_LEN] {
        bytemuck::cast_ref(&self.body)
    }

    /// The body as bytes, mutable.
    pub fn body_bytes_mut(&mut self) -> &mut [u8; BODY_LEN] {
        bytemuck::cast_mut(&mut self.body)
    }

    /// The typed block when `format` is `T::FORMAT`.
    pub fn block<T: CounterBlock>(&self) -> Option<&T> {
        if self.format != T::FORMAT {
            return None;
        }
        let bytes = self.body_bytes().get(..core::mem::size_of::<T>())?;
        bytemuck::try_from_bytes(bytes).ok()
    }

    /// Store `block` as the body and set `format` and `body_len` to match.
    pub fn set_block<T: CounterBlock>(&mut self, block: &T) {
        let src = bytemuck::bytes_of(block);
        let body = self.body_bytes_mut();
        body.fill(0);
        if let Some(dst) = body.get_mut(..src.len()) {
            dst.copy_from_slice(src);
        }
        self.format = T::FORMAT;
        self.body_len = src.len() as u16;
    }

    /// Store a port name (format 1005), truncated to [`BODY_LEN`] bytes and flagged when cut.
    pub fn set_port_name(&mut self, name: &[u8]) {
        let kept = name.len().min(BODY_LEN);
        let body = self.body_bytes_mut();
        body.fill(0);
        if let (Some(dst), Some(src)) = (body.get_mut(..kept), name.get(..kept)) {
            dst.copy_from_slice(src);
        }
        self.format = format::PORT_NAME;
        self.body_len = kept as u16;
        if kept < name.len() {
            self.flags |= FLAG_BODY_TRUNCATED;
        } else {
            self.flags &= !FLAG_BODY_TRUNCATED;
        }
    }

    /// The body typed by `format`.
    pub fn body(&self) -> CounterBody<'_> {
        fn typed<'a, T: CounterBlock>(
            record: &'a CounterRecord,
            wrap: fn(&'a T) -> CounterBody<'a>,
        ) -> CounterBody<'a> {
            match record.block::<T>() {
                Some(block) => wrap(block),
                None => CounterBody::Unknown(record.format),
            }
        }
        match self.format {
            format::GENERIC_INTERFACE => typed(self, CounterBody::GenericInterface),
            format::ETHERNET => typed(self, CounterBody::Ethernet),
            format::VLAN => typed(self, CounterBody::Vlan),
            format::LACP => typed(self, CounterBody::Lacp),
            format::PROCESSOR => typed(self, CounterBody::Processor),
            format::OPENFLOW_PORT => typed(self, CounterBody::OpenflowPort),
            format::APP_RESOURCES => typed(self, CounterBody::AppResources),
            format::OVS_DATAPATH => typed(self, CounterBody::OvsDatapath),
            format::PORT_NAME => {
                let len = usize::from(self.body_len).min(BODY_LEN);
                CounterBody::PortName(self.body_bytes().get(..len).unwrap_or_default())
            }
            other => CounterBody::Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_record_layout_is_the_one_documented() {
        let fields = crate::record::doc_layout::fields!(CounterRecord:
            ring_seq, time_received_ns, agent_addr, sub_agent_id, sequence_num, source_index,
            if_index, agent_uptime_ms, format, exporter_port, body_len, source_type, sample_type,
            flags, reserved, body,
        );
        crate::record::doc_layout::check(
            "docs/counter-record.md",
            include_str!("../../../docs/counter-record.md"),
            "Counter record",
            CounterRecord::SCHEMA_VERSION,
            &fields,
            size_of::<CounterRecord>(),
        );
    }

    #[test]
    fn block_sizes_match_the_documented_layout() {
        use core::mem::size_of;
        assert_eq!(size_of::<GenericInterfaceCounters>(), 88);
        assert_eq!(size_of::<EthernetCounters>(), 52);
        assert_eq!(size_of::<VlanCounters>(), 32);
        assert_eq!(size_of::<LacpCounters>(), 52);
        assert_eq!(size_of::<ProcessorCounters>(), 32);
        assert_eq!(size_of::<OpenflowPortCounters>(), 16);
        assert_eq!(size_of::<AppResourcesCounters>(), 40);
        assert_eq!(size_of::<OvsDatapathCounters>(), 24);
        assert_eq!(core::mem::offset_of!(CounterRecord, agent_addr), 16);
        assert_eq!(core::mem::offset_of!(CounterRecord, format), 52);
        assert_eq!(core::mem::offset_of!(CounterRecord, exporter_port), 56);
        assert_eq!(core::mem::offset_of!(CounterRecord, source_type), 60);
    }

    #[test]
    fn typed_block_round_trips_and_other_formats_refuse() {
        let mut record = CounterRecord::zeroed();
        let generic = GenericInterfaceCounters {
            if_index: 7,
            if_speed: 10_000_000_000,
            in_octets: u64::MAX - 1,
            promiscuous_mode: 1,
            ..Default::default()
        };
        record.set_block(&generic);
        assert_eq!(record.format, format::GENERIC_INTERFACE);
        assert_eq!(record.body_len, 88);
        assert_eq!(record.block::<GenericInterfaceCounters>(), Some(&generic));
        assert_eq!(record.block::<EthernetCounters>(), None);
        assert_eq!(record.body(), CounterBody::GenericInterface(&generic));

        let dp = OvsDatapathCounters {
            n_hit: 1,
            n_masks: 6,
            ..Default::default()
        };
        record.set_block(&dp);
        assert_eq!(record.body(), CounterBody::OvsDatapath(&dp));
        // The previous, longer block does not leak into the new body.
        assert!(record.body_bytes()[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn port_names_are_truncated_and_flagged() {
        let mut record = CounterRecord::zeroed();
        record.set_port_name(b"br-int");
        assert_eq!(record.body(), CounterBody::PortName(b"br-int"));
        assert_eq!(record.flags & FLAG_BODY_TRUNCATED, 0);
        let long = [b'x'; 255];
        record.set_port_name(&long);
        assert_eq!(record.body(), CounterBody::PortName(&long[..BODY_LEN]));
        assert_eq!(record.flags & FLAG_BODY_TRUNCATED, FLAG_BODY_TRUNCATED);
    }

    #[test]
    fn unknown_format_is_reported_not_misread() {
        let mut record = CounterRecord::zeroed();
        record.format = 4242;
        assert_eq!(record.body(), CounterBody::Unknown(4242));
    }
}
