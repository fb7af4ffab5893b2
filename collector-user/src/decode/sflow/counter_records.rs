//! sFlow counter records (the elements of a counter sample) → one [`CounterRecord`] each.
//!
//! Formats decoded (enterprise 0): generic interface (1, 88 bytes), Ethernet (2, 52), VLAN (5, 28),
//! LACP (7, 56), processor (1001, 28), OpenFlow port (1004, 12), port name (1005, counted string),
//! application resources (2203, 40), OVS datapath (2207, 24). Wire layouts are in [`field`]; the
//! stored layout is `record::counters`. A record shorter than its fixed part is
//! [`ErrorReason::BadRecordLength`]; longer ones are accepted (later versions may append fields).
//! Other formats are reported as [`Outcome::Unknown`] for the caller to count. The `emit` half is
//! [`CounterRecordRepr`].

use super::xdr::{self, Element, put_element, put_mac, put_opaque, put_u32, put_u64};
use crate::decode::ErrorReason;
use crate::record::CounterRecord;
use crate::record::counters::{
    AppResourcesCounters, EthernetCounters, GenericInterfaceCounters, LacpCounters,
    OpenflowPortCounters, OvsDatapathCounters, ProcessorCounters, VlanCounters, format,
};

/// Wire offsets of the fixed-size counter records.
pub mod field {
    pub mod generic {
        pub const IF_INDEX: usize = 0;
        pub const IF_TYPE: usize = 4;
        pub const IF_SPEED: usize = 8;
        pub const IF_DIRECTION: usize = 16;
        pub const IF_STATUS: usize = 20;
        pub const IN_OCTETS: usize = 24;
        pub const IN_UCAST: usize = 32;
        pub const IN_MCAST: usize = 36;
        pub const IN_BCAST: usize = 40;
        pub const IN_DISCARDS: usize = 44;
        pub const IN_ERRORS: usize = 48;
        pub const IN_UNKNOWN_PROTOS: usize = 52;
        pub const OUT_OCTETS: usize = 56;
        pub const OUT_UCAST: usize = 64;
        pub const OUT_MCAST: usize = 68;
        pub const OUT_BCAST: usize = 72;
        pub const OUT_DISCARDS: usize = 76;
        pub const OUT_ERRORS: usize = 80;
        pub const PROMISCUOUS: usize = 84;
        pub const LEN: usize = 88;
    }
    /// 13 consecutive 32-bit dot3Stats counters.
    pub mod ethernet {
        pub const LEN: usize = 52;
    }
    pub mod vlan {
        pub const VLAN_ID: usize = 0;
        pub const OCTETS: usize = 4;
        pub const UCAST: usize = 12;
        pub const MCAST: usize = 16;
        pub const BCAST: usize = 20;
        pub const DISCARDS: usize = 24;
        pub const LEN: usize = 28;
    }
    pub mod lacp {
        pub const ACTOR_SYSTEM_ID: usize = 0;
        pub const PARTNER_SYSTEM_ID: usize = 8;
        pub const ATTACHED_AGG_ID: usize = 16;
        pub const PORT_STATE: usize = 20;
        /// Eight 32-bit PDU counters.
        pub const COUNTERS: usize = 24;
        pub const LEN: usize = 56;
    }
    pub mod processor {
        pub const CPU_5S: usize = 0;
        pub const CPU_1M: usize = 4;
        pub const CPU_5M: usize = 8;
        pub const TOTAL_MEMORY: usize = 12;
        pub const FREE_MEMORY: usize = 20;
        pub const LEN: usize = 28;
    }
    pub mod openflow_port {
        pub const DATAPATH_ID: usize = 0;
        pub const PORT_NO: usize = 8;
        pub const LEN: usize = 12;
    }
    pub mod port_name {
        pub const LENGTH: usize = 0;
        pub const NAME: usize = 4;
    }
    pub mod app_resources {
        pub const USER_TIME: usize = 0;
        pub const SYSTEM_TIME: usize = 4;
        pub const MEM_USED: usize = 8;
        pub const MEM_MAX: usize = 16;
        pub const FD_OPEN: usize = 24;
        pub const FD_MAX: usize = 28;
        pub const CONN_OPEN: usize = 32;
        pub const CONN_MAX: usize = 36;
        pub const LEN: usize = 40;
    }
    /// n_hit, n_missed, n_lost, n_mask_hit, n_flows, n_masks.
    pub mod ovs_datapath {
        pub const LEN: usize = 24;
    }
}

/// What decoding one counter record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The body, `format` and `body_len` of the record were filled: hand it to the sink.
    Stored,
    /// A format this decoder does not know: skipped by its length.
    Unknown,
}

fn words<const N: usize, const M: usize>(b: &[u8; N], from: usize) -> [u32; M] {
    core::array::from_fn(|i| xdr::word(b, from + 4 * i))
}

fn mac<const N: usize>(b: &[u8; N], at: usize) -> [u8; 6] {
    b.get(at..)
        .and_then(|s| s.first_chunk::<6>())
        .copied()
        .unwrap_or_default()
}

/// Decode one counter record element into `record`'s body (its key fields are the caller's).
pub fn fill(element: Element<'_>, record: &mut CounterRecord) -> Result<Outcome, ErrorReason> {
    let body = element.body;
    let short = ErrorReason::BadRecordLength;
    match element.format {
        format::GENERIC_INTERFACE => {
            use field::generic as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            let block = GenericInterfaceCounters {
                if_speed: xdr::dword(b, f::IF_SPEED),
                in_octets: xdr::dword(b, f::IN_OCTETS),
                out_octets: xdr::dword(b, f::OUT_OCTETS),
                if_index: xdr::word(b, f::IF_INDEX),
                if_type: xdr::word(b, f::IF_TYPE),
                if_direction: xdr::word(b, f::IF_DIRECTION),
                if_status: xdr::word(b, f::IF_STATUS),
                in_ucast_pkts: xdr::word(b, f::IN_UCAST),
                in_mcast_pkts: xdr::word(b, f::IN_MCAST),
                in_bcast_pkts: xdr::word(b, f::IN_BCAST),
                in_discards: xdr::word(b, f::IN_DISCARDS),
                in_errors: xdr::word(b, f::IN_ERRORS),
                in_unknown_protos: xdr::word(b, f::IN_UNKNOWN_PROTOS),
                out_ucast_pkts: xdr::word(b, f::OUT_UCAST),
                out_mcast_pkts: xdr::word(b, f::OUT_MCAST),
                out_bcast_pkts: xdr::word(b, f::OUT_BCAST),
                out_discards: xdr::word(b, f::OUT_DISCARDS),
                out_errors: xdr::word(b, f::OUT_ERRORS),
                promiscuous_mode: xdr::word(b, f::PROMISCUOUS),
            };
            record.if_index = block.if_index;
            record.set_block(&block);
        }
        format::ETHERNET => {
            let b = xdr::fixed::<{ field::ethernet::LEN }>(body).ok_or(short)?;
            let w: [u32; 13] = words(b, 0);
            record.set_block(&EthernetCounters {
                alignment_errors: w[0],
                fcs_errors: w[1],
                single_collision_frames: w[2],
                multiple_collision_frames: w[3],
                sqe_test_errors: w[4],
                deferred_transmissions: w[5],
                late_collisions: w[6],
                excessive_collisions: w[7],
                internal_mac_transmit_errors: w[8],
                carrier_sense_errors: w[9],
                frame_too_longs: w[10],
                internal_mac_receive_errors: w[11],
                symbol_errors: w[12],
            });
        }
        format::VLAN => {
            use field::vlan as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            record.set_block(&VlanCounters {
                octets: xdr::dword(b, f::OCTETS),
                vlan_id: xdr::word(b, f::VLAN_ID),
                ucast_pkts: xdr::word(b, f::UCAST),
                mcast_pkts: xdr::word(b, f::MCAST),
                bcast_pkts: xdr::word(b, f::BCAST),
                discards: xdr::word(b, f::DISCARDS),
                reserved: 0,
            });
        }
        format::LACP => {
            use field::lacp as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            let w: [u32; 8] = words(b, f::COUNTERS);
            record.set_block(&LacpCounters {
                actor_system_id: mac(b, f::ACTOR_SYSTEM_ID),
                partner_oper_system_id: mac(b, f::PARTNER_SYSTEM_ID),
                port_state: xdr::word(b, f::PORT_STATE).to_be_bytes(),
                attached_agg_id: xdr::word(b, f::ATTACHED_AGG_ID),
                lacpdus_rx: w[0],
                marker_pdus_rx: w[1],
                marker_response_pdus_rx: w[2],
                unknown_rx: w[3],
                illegal_rx: w[4],
                lacpdus_tx: w[5],
                marker_pdus_tx: w[6],
                marker_response_pdus_tx: w[7],
            });
        }
        format::PROCESSOR => {
            use field::processor as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            record.set_block(&ProcessorCounters {
                total_memory: xdr::dword(b, f::TOTAL_MEMORY),
                free_memory: xdr::dword(b, f::FREE_MEMORY),
                cpu_5s: xdr::word(b, f::CPU_5S),
                cpu_1m: xdr::word(b, f::CPU_1M),
                cpu_5m: xdr::word(b, f::CPU_5M),
                reserved: 0,
            });
        }
        format::OPENFLOW_PORT => {
            use field::openflow_port as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            record.set_block(&OpenflowPortCounters {
                datapath_id: xdr::dword(b, f::DATAPATH_ID),
                port_no: xdr::word(b, f::PORT_NO),
                reserved: 0,
            });
        }
        format::PORT_NAME => {
            use field::port_name as f;
            let len = xdr::u32_at(body, f::LENGTH).ok_or(short)? as usize;
            let name = body
                .get(f::NAME..)
                .and_then(|rest| rest.get(..len))
                .ok_or(short)?;
            record.set_port_name(name);
        }
        format::APP_RESOURCES => {
            use field::app_resources as f;
            let b = xdr::fixed::<{ f::LEN }>(body).ok_or(short)?;
            record.set_block(&AppResourcesCounters {
                mem_used: xdr::dword(b, f::MEM_USED),
                mem_max: xdr::dword(b, f::MEM_MAX),
                user_time: xdr::word(b, f::USER_TIME),
                system_time: xdr::word(b, f::SYSTEM_TIME),
                fd_open: xdr::word(b, f::FD_OPEN),
                fd_max: xdr::word(b, f::FD_MAX),
                conn_open: xdr::word(b, f::CONN_OPEN),
                conn_max: xdr::word(b, f::CONN_MAX),
            });
        }
        format::OVS_DATAPATH => {
            let b = xdr::fixed::<{ field::ovs_datapath::LEN }>(body).ok_or(short)?;
            let w: [u32; 6] = words(b, 0);
            record.set_block(&OvsDatapathCounters {
                n_hit: w[0],
                n_missed: w[1],
                n_lost: w[2],
                n_mask_hit: w[3],
                n_flows: w[4],
                n_masks: w[5],
            });
        }
        _ => return Ok(Outcome::Unknown),
    }
    Ok(Outcome::Stored)
}

/// A counter record to emit (the encoder half). The typed blocks are the stored ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterRecordRepr {
    GenericInterface(GenericInterfaceCounters),
    Ethernet(EthernetCounters),
    Vlan(VlanCounters),
    Lacp(LacpCounters),
    Processor(ProcessorCounters),
    OpenflowPort(OpenflowPortCounters),
    PortName(Vec<u8>),
    AppResources(AppResourcesCounters),
    OvsDatapath(OvsDatapathCounters),
    /// Any other format, with its body bytes as given.
    Other {
        format: u32,
        body: Vec<u8>,
    },
}

impl CounterRecordRepr {
    /// The record's data format.
    pub fn format(&self) -> u32 {
        match self {
            CounterRecordRepr::GenericInterface(_) => format::GENERIC_INTERFACE,
            CounterRecordRepr::Ethernet(_) => format::ETHERNET,
            CounterRecordRepr::Vlan(_) => format::VLAN,
            CounterRecordRepr::Lacp(_) => format::LACP,
            CounterRecordRepr::Processor(_) => format::PROCESSOR,
            CounterRecordRepr::OpenflowPort(_) => format::OPENFLOW_PORT,
            CounterRecordRepr::PortName(_) => format::PORT_NAME,
            CounterRecordRepr::AppResources(_) => format::APP_RESOURCES,
            CounterRecordRepr::OvsDatapath(_) => format::OVS_DATAPATH,
            CounterRecordRepr::Other { format, .. } => *format,
        }
    }

    /// Append the framed record (format, length, body) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_element(out, self.format(), |out| match self {
            CounterRecordRepr::GenericInterface(g) => {
                put_u32(out, g.if_index);
                put_u32(out, g.if_type);
                put_u64(out, g.if_speed);
                put_u32(out, g.if_direction);
                put_u32(out, g.if_status);
                put_u64(out, g.in_octets);
                for v in [
                    g.in_ucast_pkts,
                    g.in_mcast_pkts,
                    g.in_bcast_pkts,
                    g.in_discards,
                    g.in_errors,
                    g.in_unknown_protos,
                ] {
                    put_u32(out, v);
                }
                put_u64(out, g.out_octets);
                for v in [
                    g.out_ucast_pkts,
                    g.out_mcast_pkts,
                    g.out_bcast_pkts,
                    g.out_discards,
                    g.out_errors,
                    g.promiscuous_mode,
                ] {
                    put_u32(out, v);
                }
            }
            CounterRecordRepr::Ethernet(e) => {
                for v in bytemuck::cast_ref::<EthernetCounters, [u32; 13]>(e) {
                    put_u32(out, *v);
                }
            }
            CounterRecordRepr::Vlan(v) => {
                put_u32(out, v.vlan_id);
                put_u64(out, v.octets);
                for w in [v.ucast_pkts, v.mcast_pkts, v.bcast_pkts, v.discards] {
                    put_u32(out, w);
                }
            }
            CounterRecordRepr::Lacp(l) => {
                put_mac(out, l.actor_system_id);
                put_mac(out, l.partner_oper_system_id);
                put_u32(out, l.attached_agg_id);
                out.extend_from_slice(&l.port_state);
                for w in [
                    l.lacpdus_rx,
                    l.marker_pdus_rx,
                    l.marker_response_pdus_rx,
                    l.unknown_rx,
                    l.illegal_rx,
                    l.lacpdus_tx,
                    l.marker_pdus_tx,
                    l.marker_response_pdus_tx,
                ] {
                    put_u32(out, w);
                }
            }
            CounterRecordRepr::Processor(p) => {
                put_u32(out, p.cpu_5s);
                put_u32(out, p.cpu_1m);
                put_u32(out, p.cpu_5m);
                put_u64(out, p.total_memory);
                put_u64(out, p.free_memory);
            }
            CounterRecordRepr::OpenflowPort(p) => {
                put_u64(out, p.datapath_id);
                put_u32(out, p.port_no);
            }
            CounterRecordRepr::PortName(name) => put_opaque(out, name),
            CounterRecordRepr::AppResources(a) => {
                put_u32(out, a.user_time);
                put_u32(out, a.system_time);
                put_u64(out, a.mem_used);
                put_u64(out, a.mem_max);
                for w in [a.fd_open, a.fd_max, a.conn_open, a.conn_max] {
                    put_u32(out, w);
                }
            }
            CounterRecordRepr::OvsDatapath(d) => {
                for v in bytemuck::cast_ref::<OvsDatapathCounters, [u32; 6]>(d) {
                    put_u32(out, *v);
                }
            }
            CounterRecordRepr::Other { body, .. } => out.extend_from_slice(body),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::counters::CounterBody;
    use bytemuck::Zeroable;

    fn filled(bytes: &[u8]) -> (Result<Outcome, ErrorReason>, CounterRecord) {
        let (element, rest) = xdr::split_element(bytes).expect("framed");
        assert!(rest.is_empty());
        let mut r = CounterRecord::zeroed();
        let outcome = fill(element, &mut r);
        (outcome, r)
    }

    #[test]
    fn generic_interface_by_bytes() {
        let mut bytes = vec![0, 0, 0, 1, 0, 0, 0, 88];
        bytes.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 6]); // ifIndex 5, ifType 6
        bytes.extend_from_slice(&10_000_000_000u64.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 3]); // full duplex, up/up
        bytes.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        for v in 1..=6u32 {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&99u64.to_be_bytes());
        for v in 11..=16u32 {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let (outcome, r) = filled(&bytes);
        assert_eq!(outcome, Ok(Outcome::Stored));
        assert_eq!(r.if_index, 5);
        let CounterBody::GenericInterface(g) = r.body() else {
            panic!("{:?}", r.body())
        };
        assert_eq!((g.if_index, g.if_type, g.if_speed), (5, 6, 10_000_000_000));
        assert_eq!((g.if_direction, g.if_status), (1, 3));
        assert_eq!(g.in_octets, 0x0102_0304_0506_0708);
        assert_eq!((g.in_ucast_pkts, g.in_unknown_protos), (1, 6));
        assert_eq!(
            (g.out_octets, g.out_ucast_pkts, g.promiscuous_mode),
            (99, 11, 16)
        );
    }

    #[test]
    fn port_name_and_ovs_datapath_by_bytes() {
        let bytes = [
            0, 0, 0x03, 0xed, 0, 0, 0, 12, 0, 0, 0, 6, b'b', b'r', b'-', b'i', b'n', b't', 0, 0,
        ];
        let (outcome, r) = filled(&bytes);
        assert_eq!(outcome, Ok(Outcome::Stored));
        assert_eq!(r.body(), CounterBody::PortName(b"br-int"));
        // A name length past the record.
        let mut lying = bytes;
        lying[11] = 9;
        assert_eq!(filled(&lying).0, Err(ErrorReason::BadRecordLength));

        let mut bytes = vec![0, 0, 0x08, 0x9f, 0, 0, 0, 24];
        for v in [100u32, 5, 1, 300, 42, 7] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let (_, r) = filled(&bytes);
        assert_eq!(
            r.body(),
            CounterBody::OvsDatapath(&OvsDatapathCounters {
                n_hit: 100,
                n_missed: 5,
                n_lost: 1,
                n_mask_hit: 300,
                n_flows: 42,
                n_masks: 7
            })
        );
    }

    fn all_reprs() -> Vec<CounterRecordRepr> {
        vec![
            CounterRecordRepr::GenericInterface(GenericInterfaceCounters {
                if_index: 3,
                if_speed: 1 << 40,
                in_octets: 77,
                out_octets: 1 << 50,
                out_errors: 9,
                ..Default::default()
            }),
            CounterRecordRepr::Ethernet(EthernetCounters {
                alignment_errors: 1,
                symbol_errors: 13,
                frame_too_longs: 11,
                ..Default::default()
            }),
            CounterRecordRepr::Vlan(VlanCounters {
                octets: 1 << 33,
                vlan_id: 100,
                discards: 4,
                ..Default::default()
            }),
            CounterRecordRepr::Lacp(LacpCounters {
                actor_system_id: [1, 2, 3, 4, 5, 6],
                partner_oper_system_id: [6, 5, 4, 3, 2, 1],
                port_state: [0x3d, 0x3d, 0x3c, 0x3c],
                attached_agg_id: 7,
                lacpdus_rx: 1,
                marker_response_pdus_tx: 8,
                ..Default::default()
            }),
            CounterRecordRepr::Processor(ProcessorCounters {
                total_memory: 1 << 34,
                free_memory: 1 << 30,
                cpu_5s: 1234,
                cpu_1m: 2345,
                cpu_5m: 3456,
                reserved: 0,
            }),
            CounterRecordRepr::OpenflowPort(OpenflowPortCounters {
                datapath_id: 0x0000_5254_0012_3456,
                port_no: 3,
                reserved: 0,
            }),
            CounterRecordRepr::AppResources(AppResourcesCounters {
                mem_used: 1 << 28,
                mem_max: 1 << 32,
                user_time: 10,
                system_time: 20,
                fd_open: 30,
                fd_max: 1024,
                conn_open: 2,
                conn_max: 3,
            }),
            CounterRecordRepr::OvsDatapath(OvsDatapathCounters {
                n_hit: 1,
                n_missed: 2,
                n_lost: 3,
                n_mask_hit: 4,
                n_flows: 5,
                n_masks: 6,
            }),
        ]
    }

    #[test]
    fn every_block_round_trips_and_short_records_are_refused() {
        for repr in all_reprs() {
            let mut bytes = Vec::new();
            repr.emit(&mut bytes);
            let (outcome, r) = filled(&bytes);
            assert_eq!(outcome, Ok(Outcome::Stored), "{repr:?}");
            let same = match (&repr, r.body()) {
                (CounterRecordRepr::GenericInterface(a), CounterBody::GenericInterface(b)) => {
                    a == b
                }
                (CounterRecordRepr::Ethernet(a), CounterBody::Ethernet(b)) => a == b,
                (CounterRecordRepr::Vlan(a), CounterBody::Vlan(b)) => a == b,
                (CounterRecordRepr::Lacp(a), CounterBody::Lacp(b)) => a == b,
                (CounterRecordRepr::Processor(a), CounterBody::Processor(b)) => a == b,
                (CounterRecordRepr::OpenflowPort(a), CounterBody::OpenflowPort(b)) => a == b,
                (CounterRecordRepr::AppResources(a), CounterBody::AppResources(b)) => a == b,
                (CounterRecordRepr::OvsDatapath(a), CounterBody::OvsDatapath(b)) => a == b,
                _ => false,
            };
            assert!(same, "{repr:?} decoded as {:?}", r.body());
            for cut in 8..bytes.len() {
                let mut short = bytes[..cut].to_vec();
                short[4..8].copy_from_slice(&((cut - 8) as u32).to_be_bytes());
                assert_eq!(
                    filled(&short).0,
                    Err(ErrorReason::BadRecordLength),
                    "{repr:?} at {cut}"
                );
            }
        }
        let (outcome, r) = filled(&[0, 0, 0x07, 0xd0, 0, 0, 0, 0]);
        assert_eq!(outcome, Ok(Outcome::Unknown));
        assert_eq!(r, CounterRecord::zeroed());
    }
}
