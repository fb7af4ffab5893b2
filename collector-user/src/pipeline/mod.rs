//! The per-core data path: sources → decoder → sink, one shared-nothing lane per worker thread.
//!
//! This module owns the seams every lane is built from and the worker loop that drives them:
//! - [`Source`]: hands out batches of datagrams borrowed from its own buffers (UDP sockets,
//!   AF_XDP sockets, perf rings; [`xdp`] merges a worker's XDP-mode sources into one);
//! - [`DatagramDecoder`]: the sans-IO decoder state of one worker ([`crate::decode::Decoder`]);
//! - [`BatchSink`]: a [`RecordSink`] that is committed once per batch (the ring writers);
//! - [`Worker`]: receive a batch → decode every datagram → commit → publish counters, until the
//!   shutdown flag is set, then drain what the source still holds and flush; the workers of a run
//!   stop decoding together before any seals or closes a socket ([`gate`]).
//!
//! Workers share nothing but atomics ([`counters`]) and a bounded event channel ([`Event`]) with the
//! control plane. Nothing on the per-datagram path allocates, locks or formats, except the first
//! datagram of a new exporter (one table insert and one event).

pub mod counters;
pub mod exporters;
pub mod gate;
pub mod lanes;
pub mod udp;
pub mod worker;
pub mod xdp;

pub use counters::{ExporterCounters, WorkerCounters};
pub use worker::{Worker, WorkerCommand};

use crate::decode::sampling::ConfiguredRate;
use crate::decode::sequence::SequenceCounts;
use crate::decode::sflow::SflowStats;
use crate::decode::{
    Collected, Counted, DatagramMeta, DecodeStats, Decoder, ErrorReason, RecordSink,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Losses a source counted before a datagram reached the decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceLosses {
    /// Datagrams the kernel dropped because a socket buffer (or an XSK ring) was full.
    pub kernel_drops: u64,
    /// Datagrams larger than the source's receive slot, discarded whole.
    pub truncated: u64,
    /// Datagrams from sources outside the allow-list (`--allow`), discarded.
    pub not_allowed: u64,
}

/// Where a worker gets datagrams from.
///
/// A source owns its receive buffers and lends each datagram to `deliver` for the duration of the
/// call: no copy, no allocation. Implementations: [`crate::source::udp::UdpSource`],
/// [`crate::source::xsk::XskSource`], [`crate::source::perf::PerfSource`], and
/// [`xdp::XdpLaneSource`] merging them for one XDP-mode worker.
pub trait Source: Send {
    /// Receive one batch: wait at most `timeout` for the first datagram, then hand every datagram
    /// that is ready (up to the source's batch size) to `deliver`. Returns how many were delivered;
    /// 0 means nothing arrived within `timeout` (or a signal interrupted the wait).
    fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> std::io::Result<usize>;

    /// Cumulative losses counted by this source.
    fn losses(&self) -> SourceLosses;

    /// Read now the loss counts the kernel keeps but reports only now and then (a socket's drops
    /// after the last datagram, AF_XDP statistics), so that [`Source::losses`] is final: the
    /// worker calls it once its drain is done. Sources with nothing of the kind keep the default.
    fn refresh_losses(&mut self) {}

    /// Stop the kernel from queueing anything more for this source, keeping what it holds
    /// readable: the worker calls it once at shutdown, after every worker of the run stopped
    /// decoding, then receives (and counts) the rest undecoded. UDP sockets are connected to
    /// their own address, which takes them out of their `SO_REUSEPORT` group's choice; sources
    /// that cannot be sealed keep the default (nothing).
    fn seal(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The decoder state of one worker, as the worker loop sees it.
pub trait DatagramDecoder: Send {
    /// Decode one datagram into `sink`: the records handed to it (also when the datagram failed
    /// partway) and the sequence units it carried, and the outcome; errors are already counted in
    /// [`DatagramDecoder::stats`].
    fn decode_datagram<S: RecordSink>(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut S,
    ) -> (Counted, Result<(), ErrorReason>);

    /// Cumulative decode counters.
    fn stats(&self) -> &DecodeStats;

    /// Cumulative sFlow counters, for decoders that decode sFlow.
    fn sflow_stats(&self) -> Option<&SflowStats>;

    /// Append the sequence accounting of every sequence space, by exporter address (several
    /// entries may share an address: one per domain, protocol or sFlow sub-agent).
    fn sequence_counts(&self, out: &mut Vec<(IpAddr, SequenceCounts)>);

    /// sFlow's sample sequences (numbered per agent and data source, apart from the datagram
    /// sequence that [`DatagramDecoder::sequence_counts`] reports), summed over every source.
    fn sflow_sample_sequences(&self) -> SequenceCounts;

    /// Replace the configured sampling rates (SIGHUP).
    fn set_configured_sampling(&mut self, rates: Vec<ConfiguredRate>);

    /// Age out by the clock (`now_ns`) what waits for messages that stopped coming; the worker
    /// calls it now and then ([`Decoder::housekeeping`]).
    fn housekeeping(&mut self, now_ns: u64);

    /// Count what the decoder still holds undecoded as lost; the worker calls it once, when it
    /// stops ([`Decoder::finish`]).
    fn finish(&mut self);
}

impl DatagramDecoder for Decoder {
    fn decode_datagram<S: RecordSink>(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut S,
    ) -> (Counted, Result<(), ErrorReason>) {
        self.decode_counted(meta, datagram, sink)
    }

    fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    fn sflow_stats(&self) -> Option<&SflowStats> {
        Some(self.sflow().stats())
    }

    fn sequence_counts(&self, out: &mut Vec<(IpAddr, SequenceCounts)>) {
        out.extend(Decoder::sequence_counts(self).map(|(space, counts)| (space.exporter, counts)));
        out.extend(self.retired_sequence_counts());
        out.extend(self.sflow().agents().map(|a| (a.exporter, a.datagrams)));
    }

    fn sflow_sample_sequences(&self) -> SequenceCounts {
        let mut total = SequenceCounts::default();
        for agent in self.sflow().agents() {
            total.add(&agent.samples);
        }
        total
    }

    fn set_configured_sampling(&mut self, rates: Vec<ConfiguredRate>) {
        Decoder::set_configured_sampling(self, rates);
    }

    fn housekeeping(&mut self, now_ns: u64) {
        Decoder::housekeeping(self, now_ns);
    }

    fn finish(&mut self) {
        Decoder::finish(self);
    }
}

/// A record sink that publishes in batches: records pushed since the last `commit` become visible
/// to readers at `commit`.
pub trait BatchSink: RecordSink + Send {
    /// Publish the records of the batch just decoded.
    fn commit(&mut self) -> std::io::Result<()>;
    /// Make everything durable before exit (the final commit on shutdown).
    fn flush(&mut self) -> std::io::Result<()> {
        self.commit()
    }
}

impl BatchSink for crate::ring::WorkerRings {
    fn commit(&mut self) -> std::io::Result<()> {
        crate::ring::WorkerRings::commit(self);
        Ok(())
    }
}

impl BatchSink for Collected {
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What workers tell the control plane, over a bounded crossbeam channel (never blocking: when the
/// channel is full the event is dropped and counted in [`WorkerCounters::events_dropped`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// A worker saw an exporter (address and source port) for the first time; its counters follow.
    NewExporter {
        worker: usize,
        exporter: SocketAddr,
        counters: Arc<ExporterCounters>,
    },
    /// A worker's sequence accounting (sent about once a second and when it stops).
    Sequences {
        worker: usize,
        counts: Vec<(IpAddr, SequenceCounts)>,
    },
    /// Templates were learned or withdrawn since the previous report (sent at most about once a
    /// second; counts, not ids: the decoder keeps templates to itself).
    Templates {
        worker: usize,
        learned: u64,
        withdrawn: u64,
        /// Templates in the worker's cache now.
        cached: u64,
    },
    /// A sample of the decode errors of one worker (at most one per [`worker::ERROR_SAMPLE_INTERVAL_NS`]).
    DecodeError {
        worker: usize,
        exporter: SocketAddr,
        reason: ErrorReason,
        /// Errors of the worker not sampled since the previous sample.
        suppressed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Collected, DatagramMeta, netflow_v5};

    #[test]
    fn a_worker_reports_the_counts_of_forgotten_sequence_spaces() {
        // Exporter A loses 5 flows, then falls silent; 31 minutes later exporter B's first
        // datagram makes the decoder forget A's space. The worker's report (what the exporter
        // metrics sum) still holds A's loss.
        let mut dec = Decoder::new();
        let v5 = |sequence, records| {
            let header = netflow_v5::HeaderRepr {
                flow_sequence: sequence,
                ..Default::default()
            };
            let mut out = Vec::new();
            netflow_v5::emit(
                &header,
                &vec![netflow_v5::RecordRepr::default(); records],
                &mut out,
            );
            out
        };
        let t0 = 1_700_000_000_000_000_000;
        let sends = [
            ("192.0.2.1:2055", 0, 5, t0),
            ("192.0.2.1:2055", 10, 1, t0),
            ("192.0.2.2:2055", 0, 1, t0 + 31 * 60 * 1_000_000_000),
        ];
        for (exporter, sequence, records, received_ns) in sends {
            let meta = DatagramMeta {
                exporter: exporter.parse().unwrap(),
                received_ns,
            };
            let datagram = v5(sequence, records);
            let (_, result) = dec.decode_datagram(&meta, &datagram, &mut Collected::default());
            assert_eq!(result, Ok(()));
        }
        assert_eq!(dec.stats.sequence_spaces_forgotten, 1);
        let mut reported = Vec::new();
        DatagramDecoder::sequence_counts(&dec, &mut reported);
        let lost: Vec<_> = reported
            .iter()
            .map(|(a, c)| (a.to_string(), c.lost))
            .collect();
        assert!(lost.contains(&("192.0.2.1".to_string(), 5)), "{lost:?}");
    }

    #[test]
    fn sflow_counts_are_reported_under_the_address_the_datagrams_come_from() {
        // Open vSwitch's agent address is the address of the interface named by `agent=`, not
        // the node address it sends from: the exporter metrics are per source address.
        let mut agent = crate::decode::sflow::emit::OvsExporter::new([100, 64, 0, 9].into(), 3);
        let node: SocketAddr = "192.0.2.30:6343".parse().unwrap();
        let mut dec = Decoder::new();
        for n in 0..6 {
            let mut datagram = Vec::new();
            agent.flow_datagram(&mut datagram);
            // Datagrams 2 and 3 never arrive: two datagrams and their samples lost.
            if n == 2 || n == 3 {
                continue;
            }
            let meta = DatagramMeta {
                exporter: node,
                received_ns: 1,
            };
            let (_, result) = dec.decode_datagram(&meta, &datagram, &mut Collected::default());
            assert_eq!(result, Ok(()));
        }
        let mut reported = Vec::new();
        DatagramDecoder::sequence_counts(&dec, &mut reported);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!((reported[0].0, reported[0].1.lost), (node.ip(), 2));
        let samples = dec.sflow_sample_sequences();
        assert!(samples.lost >= 2, "{samples:?}");
    }
}
