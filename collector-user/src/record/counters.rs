//! [`CounterRecord`]: interface counters from sFlow counter samples, keyed by agent + ifIndex.

use super::{RecordKind, RingRecord};
use bytemuck::{Pod, Zeroable};

/// Interface counters from one sFlow counter sample (generic interface counters, record type 1).
///
/// Size: 256 bytes, the same slot size as [`super::FlowRecord`] (see its size rationale).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct CounterRecord {
    /// Stamped by the ring writer: number of records committed to the ring before this one.
    pub ring_seq: u64,
    /// When the datagram was received, ns since the Unix epoch.
    pub time_received_ns: u64,
    /// sFlow agent address (IPv4-mapped when IPv4).
    pub agent_addr: [u8; 16],
    pub if_speed: u64,
    pub in_octets: u64,
    pub out_octets: u64,
    pub sub_agent_id: u32,
    /// Counter sample sequence number.
    pub sequence_num: u32,
    /// sFlow source id (type<<24 | index).
    pub source_id: u32,
    pub if_index: u32,
    pub if_type: u32,
    pub if_direction: u32,
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
    /// Zero; room for fields added in later schema versions.
    pub reserved: [u8; 124],
}

const _: () = assert!(core::mem::size_of::<CounterRecord>() == 256);

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
