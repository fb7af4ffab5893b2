//! Sans-IO decoders: bytes of one export datagram in, normalized records out.
//!
//! This module owns protocol dispatch ([`Protocol::detect`] reads the version field, so any port may
//! carry any protocol), per-worker decoder state ([`Decoder`]: templates, sequence trackers, sampling
//! rates) and the decode counters. It knows nothing of sockets, threads or ring files: callers hand it
//! a datagram with its [`DatagramMeta`] and a [`RecordSink`].

pub mod error;
pub mod netflow_v5;
pub mod packet_header;
pub mod sequence;
pub mod sflow;

pub use error::ErrorReason;

use crate::record::{CounterRecord, FlowRecord};
use std::net::SocketAddr;

/// The export protocols, told apart by the version field at the start of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    NetflowV5,
    NetflowV9,
    Ipfix,
    SflowV5,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::NetflowV5,
        Protocol::NetflowV9,
        Protocol::Ipfix,
        Protocol::SflowV5,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Stable name used in metrics and summaries (goflow2's `type` values).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::NetflowV5 => "NETFLOW_V5",
            Protocol::NetflowV9 => "NETFLOW_V9",
            Protocol::Ipfix => "IPFIX",
            Protocol::SflowV5 => "SFLOW_5",
        }
    }

    /// Index into per-protocol counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Pick the protocol from the version field: a 16-bit 5, 9 or 10 for NetFlow/IPFIX; a 32-bit 5
    /// for sFlow (whose first 16 bits are therefore 0).
    pub fn detect(datagram: &[u8]) -> Result<Protocol, ErrorReason> {
        let Some(&[a, b, c, d]) = datagram.first_chunk::<4>() else {
            return Err(ErrorReason::TooShort);
        };
        match (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])) {
            (5, _) => Ok(Protocol::NetflowV5),
            (9, _) => Ok(Protocol::NetflowV9),
            (10, _) => Ok(Protocol::Ipfix),
            (0, 5) => Ok(Protocol::SflowV5),
            _ => Err(ErrorReason::UnknownVersion),
        }
    }
}

/// Where and when a datagram came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramMeta {
    /// The exporter's address and UDP source port.
    pub exporter: SocketAddr,
    /// Receive time (capture time in replay), ns since the Unix epoch.
    pub received_ns: u64,
}

/// Receives decoded records. The ring writer, `collector replay` and tests implement it.
pub trait RecordSink {
    fn flow(&mut self, record: &FlowRecord);
    fn counters(&mut self, record: &CounterRecord);
}

/// A sink that keeps every record in memory (tests, replay, small tools).
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub flows: Vec<FlowRecord>,
    pub counters: Vec<CounterRecord>,
}

impl RecordSink for Collected {
    fn flow(&mut self, record: &FlowRecord) {
        self.flows.push(*record);
    }
    fn counters(&mut self, record: &CounterRecord) {
        self.counters.push(*record);
    }
}

/// Decode counters of one worker.
#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    /// Datagrams handed to the decoder, by protocol (undetectable ones are only in `errors`).
    pub datagrams: [u64; Protocol::COUNT],
    /// Records produced, by protocol.
    pub records: [u64; Protocol::COUNT],
    /// Datagrams, sets or records refused or skipped, by reason.
    pub errors: [u64; ErrorReason::COUNT],
}

impl DecodeStats {
    pub fn count_error(&mut self, reason: ErrorReason) {
        self.errors[reason.index()] += 1;
    }
}

/// All decoder state of one worker. Not shared between threads.
#[derive(Debug, Default)]
pub struct Decoder {
    pub stats: DecodeStats,
    sflow: sflow::SflowDecoder,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sFlow decoder: its counters (`stats()`) and per-agent sequence counts (`agents()`).
    pub fn sflow(&self) -> &sflow::SflowDecoder {
        &self.sflow
    }

    /// Decode one datagram, handing every record to `sink`.
    ///
    /// Records decoded before a malformed part are kept; the error names the first problem that
    /// stopped decoding and has already been counted in [`Decoder::stats`].
    pub fn decode(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), ErrorReason> {
        let result = self.decode_uncounted(meta, datagram, sink);
        if let Err(reason) = result {
            self.stats.count_error(reason);
        }
        result
    }

    fn decode_uncounted(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), ErrorReason> {
        let protocol = Protocol::detect(datagram)?;
        self.stats.datagrams[protocol.index()] += 1;
        let records = match protocol {
            Protocol::NetflowV5 => netflow_v5::decode(meta, datagram, sink)?,
            Protocol::SflowV5 => self.sflow.decode(meta, datagram, sink)?,
            Protocol::NetflowV9 | Protocol::Ipfix => return Err(ErrorReason::UnknownVersion),
        };
        self.stats.records[protocol.index()] += records as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_version_field() {
        assert_eq!(Protocol::detect(&[0, 5, 0, 1]), Ok(Protocol::NetflowV5));
        assert_eq!(Protocol::detect(&[0, 9, 0, 1]), Ok(Protocol::NetflowV9));
        assert_eq!(Protocol::detect(&[0, 10, 0, 16]), Ok(Protocol::Ipfix));
        assert_eq!(
            Protocol::detect(&[0, 0, 0, 5, 0, 0, 0, 1]),
            Ok(Protocol::SflowV5)
        );
        assert_eq!(
            Protocol::detect(&[0, 0, 0, 4]),
            Err(ErrorReason::UnknownVersion)
        );
        assert_eq!(Protocol::detect(&[0, 5, 0]), Err(ErrorReason::TooShort));
        assert_eq!(Protocol::detect(&[]), Err(ErrorReason::TooShort));
    }
}
