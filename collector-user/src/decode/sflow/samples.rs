//! sFlow sample headers: flow sample (format 1), counter sample (2) and their expanded forms (3, 4),
//! with data source ids and interface encodings.
//!
//! ```text
//! flow sample (1)                      expanded flow sample (3)
//! 0  sequence_number                   0  sequence_number
//! 4  source_id (type<<24 | index)      4  source_id_type   8 source_id_index
//! 8  sampling_rate                     12 sampling_rate
//! 12 sample_pool                       16 sample_pool
//! 16 drops                             20 drops
//! 20 input  (format<<30 | value)       24 input_format     28 input_value
//! 24 output (format<<30 | value)       32 output_format    36 output_value
//! 28 num_records                       40 num_records
//!
//! counter sample (2)                   expanded counter sample (4)
//! 0  sequence_number                   0  sequence_number
//! 4  source_id                         4  source_id_type   8 source_id_index
//! 8  num_records                       12 num_records
//! ```
//! Interface formats: 0 ifIndex (0x3FFFFFFF = internal / unknown), 1 packet discarded (value = reason),
//! 2 multiple interfaces (value = count, 0 = unknown).

use super::xdr::{self, put_u32};
use crate::decode::ErrorReason;

/// Sample data formats (enterprise 0).
pub mod format {
    pub const FLOW: u32 = 1;
    pub const COUNTERS: u32 = 2;
    pub const EXPANDED_FLOW: u32 = 3;
    pub const EXPANDED_COUNTERS: u32 = 4;
}

/// Offsets of the fixed parts.
pub mod field {
    pub mod flow {
        pub const SEQUENCE: usize = 0;
        pub const SOURCE_ID: usize = 4;
        pub const SAMPLING_RATE: usize = 8;
        pub const SAMPLE_POOL: usize = 12;
        pub const DROPS: usize = 16;
        pub const INPUT: usize = 20;
        pub const OUTPUT: usize = 24;
        pub const NUM_RECORDS: usize = 28;
        pub const LEN: usize = 32;
    }
    pub mod expanded_flow {
        pub const SEQUENCE: usize = 0;
        pub const SOURCE_TYPE: usize = 4;
        pub const SOURCE_INDEX: usize = 8;
        pub const SAMPLING_RATE: usize = 12;
        pub const SAMPLE_POOL: usize = 16;
        pub const DROPS: usize = 20;
        pub const INPUT_FORMAT: usize = 24;
        pub const INPUT_VALUE: usize = 28;
        pub const OUTPUT_FORMAT: usize = 32;
        pub const OUTPUT_VALUE: usize = 36;
        pub const NUM_RECORDS: usize = 40;
        pub const LEN: usize = 44;
    }
    pub mod counters {
        pub const SEQUENCE: usize = 0;
        pub const SOURCE_ID: usize = 4;
        pub const NUM_RECORDS: usize = 8;
        pub const LEN: usize = 12;
    }
    pub mod expanded_counters {
        pub const SEQUENCE: usize = 0;
        pub const SOURCE_TYPE: usize = 4;
        pub const SOURCE_INDEX: usize = 8;
        pub const NUM_RECORDS: usize = 12;
        pub const LEN: usize = 16;
    }
}

/// A data source: type (0 ifIndex, 1 VLAN, 2 physical entity, 3 logical entity) and index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    pub kind: u32,
    pub index: u32,
}

impl SourceId {
    /// The largest index of the compact form (24 bits).
    pub const COMPACT_INDEX_MAX: u32 = 0x00ff_ffff;

    /// From the compact `type << 24 | index` form.
    pub const fn from_compact(raw: u32) -> Self {
        SourceId {
            kind: raw >> 24,
            index: raw & Self::COMPACT_INDEX_MAX,
        }
    }

    /// The compact form (index truncated to 24 bits, type to 8).
    pub const fn compact(self) -> u32 {
        (self.kind & 0xff) << 24 | (self.index & 0x00ff_ffff)
    }
}

/// An input or output interface of a flow sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// ifIndex; 0 unknown, 0x3FFFFFFF internal to the agent.
    Index(u32),
    /// The packet was discarded; the value is the reason code.
    Discarded(u32),
    /// Sent to several interfaces; the value is their number (0 unknown).
    Multiple(u32),
}

impl Interface {
    /// Largest value the compact form can carry.
    pub const COMPACT_MAX: u32 = 0x3fff_ffff;

    /// From format and value (expanded form). Unknown formats are kept as their format number by
    /// the decoder; here they read as `Index`.
    pub const fn from_parts(format: u32, value: u32) -> Self {
        match format {
            1 => Interface::Discarded(value),
            2 => Interface::Multiple(value),
            _ => Interface::Index(value),
        }
    }

    /// From the compact `format << 30 | value` form.
    pub const fn from_compact(raw: u32) -> Self {
        Self::from_parts(raw >> 30, raw & Self::COMPACT_MAX)
    }

    /// (format, value).
    pub const fn parts(self) -> (u32, u32) {
        match self {
            Interface::Index(v) => (0, v),
            Interface::Discarded(v) => (1, v),
            Interface::Multiple(v) => (2, v),
        }
    }

    /// The compact form (value truncated to 30 bits).
    pub const fn compact(self) -> u32 {
        let (f, v) = self.parts();
        f << 30 | (v & Self::COMPACT_MAX)
    }
}

/// The fixed part of a flow sample, either form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSampleHeader {
    pub sequence: u32,
    pub source: SourceId,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    pub drops: u32,
    /// Interface (format, value) pairs as sent: format 0 ifIndex, 1 discarded, 2 multiple.
    pub input: (u32, u32),
    pub output: (u32, u32),
    pub num_records: u32,
}

impl FlowSampleHeader {
    /// Parse a flow sample body (`expanded`: format 3); returns the header and the records' bytes.
    #[inline(always)]
    pub fn parse(body: &[u8], expanded: bool) -> Result<(Self, &[u8]), ErrorReason> {
        if expanded {
            use field::expanded_flow as f;
            let Some((b, rest)) = body.split_first_chunk::<{ f::LEN }>() else {
                return Err(ErrorReason::BadSampleLength);
            };
            Ok((
                FlowSampleHeader {
                    sequence: xdr::word(b, f::SEQUENCE),
                    source: SourceId {
                        kind: xdr::word(b, f::SOURCE_TYPE),
                        index: xdr::word(b, f::SOURCE_INDEX),
                    },
                    sampling_rate: xdr::word(b, f::SAMPLING_RATE),
                    sample_pool: xdr::word(b, f::SAMPLE_POOL),
                    drops: xdr::word(b, f::DROPS),
                    input: (xdr::word(b, f::INPUT_FORMAT), xdr::word(b, f::INPUT_VALUE)),
                    output: (
                        xdr::word(b, f::OUTPUT_FORMAT),
                        xdr::word(b, f::OUTPUT_VALUE),
                    ),
                    num_records: xdr::word(b, f::NUM_RECORDS),
                },
                rest,
            ))
        } else {
            use field::flow as f;
            let Some((b, rest)) = body.split_first_chunk::<{ f::LEN }>() else {
                return Err(ErrorReason::BadSampleLength);
            };
            let input = xdr::word(b, f::INPUT);
            let output = xdr::word(b, f::OUTPUT);
            Ok((
                FlowSampleHeader {
                    sequence: xdr::word(b, f::SEQUENCE),
                    source: SourceId::from_compact(xdr::word(b, f::SOURCE_ID)),
                    sampling_rate: xdr::word(b, f::SAMPLING_RATE),
                    sample_pool: xdr::word(b, f::SAMPLE_POOL),
                    drops: xdr::word(b, f::DROPS),
                    input: (input >> 30, input & Interface::COMPACT_MAX),
                    output: (output >> 30, output & Interface::COMPACT_MAX),
                    num_records: xdr::word(b, f::NUM_RECORDS),
                },
                rest,
            ))
        }
    }
}

/// The fixed part of a counter sample, either form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterSampleHeader {
    pub sequence: u32,
    pub source: SourceId,
    pub num_records: u32,
}

impl CounterSampleHeader {
    /// Parse a counter sample body (`expanded`: format 4); returns the header and the records' bytes.
    pub fn parse(body: &[u8], expanded: bool) -> Result<(Self, &[u8]), ErrorReason> {
        if expanded {
            use field::expanded_counters as f;
            let Some((b, rest)) = body.split_first_chunk::<{ f::LEN }>() else {
                return Err(ErrorReason::BadSampleLength);
            };
            Ok((
                CounterSampleHeader {
                    sequence: xdr::word(b, f::SEQUENCE),
                    source: SourceId {
                        kind: xdr::word(b, f::SOURCE_TYPE),
                        index: xdr::word(b, f::SOURCE_INDEX),
                    },
                    num_records: xdr::word(b, f::NUM_RECORDS),
                },
                rest,
            ))
        } else {
            use field::counters as f;
            let Some((b, rest)) = body.split_first_chunk::<{ f::LEN }>() else {
                return Err(ErrorReason::BadSampleLength);
            };
            Ok((
                CounterSampleHeader {
                    sequence: xdr::word(b, f::SEQUENCE),
                    source: SourceId::from_compact(xdr::word(b, f::SOURCE_ID)),
                    num_records: xdr::word(b, f::NUM_RECORDS),
                },
                rest,
            ))
        }
    }
}

/// Emit the fixed part of a flow sample (the records follow; `num_records` must match them).
#[allow(clippy::too_many_arguments)]
pub fn emit_flow_sample_header(
    out: &mut Vec<u8>,
    expanded: bool,
    sequence: u32,
    source: SourceId,
    sampling_rate: u32,
    sample_pool: u32,
    drops: u32,
    input: Interface,
    output: Interface,
    num_records: u32,
) {
    put_u32(out, sequence);
    if expanded {
        put_u32(out, source.kind);
        put_u32(out, source.index);
    } else {
        put_u32(out, source.compact());
    }
    put_u32(out, sampling_rate);
    put_u32(out, sample_pool);
    put_u32(out, drops);
    for interface in [input, output] {
        if expanded {
            let (f, v) = interface.parts();
            put_u32(out, f);
            put_u32(out, v);
        } else {
            put_u32(out, interface.compact());
        }
    }
    put_u32(out, num_records);
}

/// Emit the fixed part of a counter sample.
pub fn emit_counter_sample_header(
    out: &mut Vec<u8>,
    expanded: bool,
    sequence: u32,
    source: SourceId,
    num_records: u32,
) {
    put_u32(out, sequence);
    if expanded {
        put_u32(out, source.kind);
        put_u32(out, source.index);
    } else {
        put_u32(out, source.compact());
    }
    put_u32(out, num_records);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flow sample: seq 7, source 0:3, 1:400, pool 4000, drops 2, in ifIndex 3,
    /// out multiple (2 interfaces), 0 records.
    const FLOW: [u8; 32] = [
        0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0x01, 0x90, 0, 0, 0x0f, 0xa0, 0, 0, 0, 2, 0, 0, 0, 3, 0x80,
        0, 0, 2, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct_compact_flow_sample() {
        let (h, rest) = FlowSampleHeader::parse(&FLOW, false).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h.sequence, 7);
        assert_eq!(h.source, SourceId { kind: 0, index: 3 });
        assert_eq!((h.sampling_rate, h.sample_pool, h.drops), (400, 4000, 2));
        assert_eq!(h.input, (0, 3));
        assert_eq!(h.output, (2, 2));
        assert_eq!(Interface::from_compact(0x8000_0002), Interface::Multiple(2));
        assert_eq!(
            Interface::from_compact(0x4000_0101),
            Interface::Discarded(0x101)
        );
    }

    #[test]
    fn construct_compact_and_expanded() {
        let mut out = Vec::new();
        emit_flow_sample_header(
            &mut out,
            false,
            7,
            SourceId { kind: 0, index: 3 },
            400,
            4000,
            2,
            Interface::Index(3),
            Interface::Multiple(2),
            0,
        );
        assert_eq!(out, FLOW);

        let mut out = Vec::new();
        let source = SourceId {
            kind: 3,
            index: 0x0100_0001,
        };
        emit_flow_sample_header(
            &mut out,
            true,
            9,
            source,
            1,
            2,
            3,
            Interface::Discarded(0x105),
            Interface::Index(0xffff_fff0),
            5,
        );
        assert_eq!(out.len(), field::expanded_flow::LEN);
        let (h, _) = FlowSampleHeader::parse(&out, true).unwrap();
        assert_eq!(h.source, source);
        assert_eq!(h.input, (1, 0x105));
        assert_eq!(h.output, (0, 0xffff_fff0));
        assert_eq!(h.num_records, 5);
    }

    #[test]
    fn short_fixed_parts_are_bad_sample_length() {
        for cut in 0..field::expanded_flow::LEN {
            let body = vec![0; cut];
            assert_eq!(
                FlowSampleHeader::parse(&body, true).map(|_| ()),
                Err(ErrorReason::BadSampleLength)
            );
            if cut < field::flow::LEN {
                assert_eq!(
                    FlowSampleHeader::parse(&body, false).map(|_| ()),
                    Err(ErrorReason::BadSampleLength)
                );
            }
            if cut < field::expanded_counters::LEN {
                assert_eq!(
                    CounterSampleHeader::parse(&body, true).map(|_| ()),
                    Err(ErrorReason::BadSampleLength)
                );
            }
        }
        let mut out = Vec::new();
        emit_counter_sample_header(&mut out, false, 1, SourceId { kind: 0, index: 9 }, 2);
        let (h, _) = CounterSampleHeader::parse(&out, false).unwrap();
        assert_eq!(h.source.index, 9);
        assert_eq!(h.num_records, 2);
    }
}
