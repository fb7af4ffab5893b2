//! Counters a worker publishes for the control plane: plain atomics, one writer (the worker), any
//! number of readers (metrics scrapes, summaries, `collector stats` through /metrics).
//!
//! Because each counter has a single writer, an increment is a relaxed load + store (no locked
//! read-modify-write on the hot path); readers see a recent, never torn, value.

use crate::decode::sequence::SequenceCounts;
use crate::decode::sflow::SflowStats;
use crate::decode::{DecodeStats, ErrorReason, Protocol};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Add `n` to a counter that only the calling thread writes.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Read a counter.
#[inline]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// Everything one worker counts.
#[derive(Debug)]
pub struct WorkerCounters {
    /// Worker index.
    pub worker: usize,
    /// The core the worker is pinned to, if pinning succeeded (`u64::MAX`: not pinned).
    pub core: AtomicU64,
    /// Datagrams received from the sources.
    pub datagrams: AtomicU64,
    /// Payload bytes of those datagrams.
    pub bytes: AtomicU64,
    /// Datagrams the kernel dropped before we could receive them (socket buffer full).
    pub kernel_drops: AtomicU64,
    /// Datagrams larger than a receive slot, discarded.
    pub truncated: AtomicU64,
    /// Datagrams from sources outside the allow-list, discarded by the UDP sockets.
    pub not_allowed: AtomicU64,
    /// Datagrams handed to the decoder, by protocol (copied from the decoder's stats).
    pub decoded_datagrams: [AtomicU64; Protocol::COUNT],
    /// Records produced, by protocol (copied from the decoder's stats).
    pub records: [AtomicU64; Protocol::COUNT],
    /// Decode errors by reason (copied from the decoder's stats).
    pub errors: [AtomicU64; ErrorReason::COUNT],
    /// Datagrams of exporters beyond the per-worker exporter table's capacity (counted only here).
    pub untracked_exporter_datagrams: AtomicU64,
    /// Events dropped because the control plane's channel was full.
    pub events_dropped: AtomicU64,
    /// Templates in the worker's cache, and their bytes (copied from the decoder's stats).
    pub templates: AtomicU64,
    pub template_bytes: AtomicU64,
    /// Templates learned, redefined, withdrawn and expired with an idle session so far.
    pub templates_learned: AtomicU64,
    pub templates_redefined: AtomicU64,
    pub templates_withdrawn: AtomicU64,
    pub templates_expired: AtomicU64,
    /// Data sets held for a template not seen yet, their bytes now, and those replayed later.
    pub early_data_held: AtomicU64,
    pub early_data_bytes: AtomicU64,
    pub early_data_replayed: AtomicU64,
    /// Sequence spaces not tracked because the worker's table was full, and spaces forgotten
    /// after going idle; sampling rates and systemInitTimeMilliseconds values not learned
    /// because their tables were full.
    pub sequence_spaces_refused: AtomicU64,
    pub sequence_spaces_forgotten: AtomicU64,
    pub sampling_rates_refused: AtomicU64,
    pub init_times_refused: AtomicU64,
    /// sFlow's own counts (copied from the decoder's sFlow stats): samples by format (flow,
    /// counter, expanded flow, expanded counter); what was skipped (samples, flow records and
    /// counter records of formats not decoded, raw headers of protocols other than Ethernet, IPv4
    /// and IPv6); samples the agents report they dropped; datagrams and samples whose sequence was
    /// not tracked (agent or source tables full).
    pub sflow_samples: [AtomicU64; 4],
    pub sflow_skipped: [AtomicU64; 4],
    pub sflow_agent_drops: AtomicU64,
    pub sflow_untracked: AtomicU64,
    /// sFlow sample sequences: samples lost, late, and source restarts (copied from the decoder
    /// with its sequence report).
    pub sflow_sample_sequence: [AtomicU64; 3],
    /// Batches committed to the sink.
    pub batches: AtomicU64,
    /// Sink commits that failed (records of such a batch may be lost; logged once per failure burst).
    pub sink_errors: AtomicU64,
    /// Datagrams still arriving when the shutdown drain ran out of time: received and discarded
    /// undecoded, so that they are counted rather than closed away with the sockets.
    pub shutdown_discarded: AtomicU64,
}

impl WorkerCounters {
    pub fn new(worker: usize) -> Self {
        WorkerCounters {
            worker,
            core: AtomicU64::new(u64::MAX),
            datagrams: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            kernel_drops: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            not_allowed: AtomicU64::new(0),
            decoded_datagrams: Default::default(),
            records: Default::default(),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            untracked_exporter_datagrams: AtomicU64::new(0),
            templates: AtomicU64::new(0),
            template_bytes: AtomicU64::new(0),
            templates_learned: AtomicU64::new(0),
            templates_redefined: AtomicU64::new(0),
            templates_withdrawn: AtomicU64::new(0),
            templates_expired: AtomicU64::new(0),
            early_data_held: AtomicU64::new(0),
            early_data_bytes: AtomicU64::new(0),
            early_data_replayed: AtomicU64::new(0),
            sequence_spaces_refused: AtomicU64::new(0),
            sequence_spaces_forgotten: AtomicU64::new(0),
            sampling_rates_refused: AtomicU64::new(0),
            init_times_refused: AtomicU64::new(0),
            sflow_samples: Default::default(),
            sflow_skipped: Default::default(),
            sflow_agent_drops: AtomicU64::new(0),
            sflow_untracked: AtomicU64::new(0),
            sflow_sample_sequence: Default::default(),
            events_dropped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            shutdown_discarded: AtomicU64::new(0),
        }
    }

    /// Copy the decoder's cumulative counters (called once per batch, not per datagram).
    pub fn publish_decode_stats(&self, stats: &DecodeStats) {
        for (slot, &v) in self.decoded_datagrams.iter().zip(&stats.datagrams) {
            slot.store(v, Relaxed);
        }
        for (slot, &v) in self.records.iter().zip(&stats.records) {
            slot.store(v, Relaxed);
        }
        for (slot, &v) in self.errors.iter().zip(&stats.errors) {
            slot.store(v, Relaxed);
        }
        self.templates
            .store(stats.template_cache_templates, Relaxed);
        self.template_bytes
            .store(stats.template_cache_bytes, Relaxed);
        self.templates_learned
            .store(stats.templates_learned, Relaxed);
        self.templates_redefined
            .store(stats.templates_redefined, Relaxed);
        self.templates_withdrawn
            .store(stats.templates_withdrawn, Relaxed);
        self.templates_expired
            .store(stats.templates_expired, Relaxed);
        self.early_data_held.store(stats.early_data_held, Relaxed);
        self.early_data_bytes.store(stats.early_data_bytes, Relaxed);
        self.early_data_replayed
            .store(stats.early_data_replayed, Relaxed);
        self.sequence_spaces_refused
            .store(stats.sequence_spaces_refused, Relaxed);
        self.sequence_spaces_forgotten
            .store(stats.sequence_spaces_forgotten, Relaxed);
        self.sampling_rates_refused
            .store(stats.sampling_rates_refused, Relaxed);
        self.init_times_refused
            .store(stats.init_times_refused, Relaxed);
    }

    /// Copy the decoder's sFlow counters (with [`WorkerCounters::publish_decode_stats`]).
    pub fn publish_sflow_stats(&self, stats: &SflowStats) {
        for (slot, &v) in self.sflow_samples.iter().zip(&stats.samples_by_type) {
            slot.store(v, Relaxed);
        }
        let skipped = [
            stats.unknown_sample_types.total(),
            stats.unknown_flow_records.total(),
            stats.unknown_counter_records.total(),
            stats.unparsed_headers,
        ];
        for (slot, v) in self.sflow_skipped.iter().zip(skipped) {
            slot.store(v, Relaxed);
        }
        self.sflow_agent_drops.store(stats.agent_drops, Relaxed);
        self.sflow_untracked.store(stats.untracked, Relaxed);
    }

    /// Copy the decoder's sFlow sample-sequence counts.
    pub fn publish_sflow_sample_sequences(&self, counts: &SequenceCounts) {
        let values = [counts.lost, counts.late, counts.restarts];
        for (slot, v) in self.sflow_sample_sequence.iter().zip(values) {
            slot.store(v, Relaxed);
        }
    }

    /// Records produced so far, all protocols.
    pub fn records_total(&self) -> u64 {
        self.records.iter().map(get).sum()
    }

    /// Decode errors so far, all reasons.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(get).sum()
    }
}

/// Counters of one AF_XDP socket (one RX queue), published after every batch by the worker that
/// owns it: the kernel's XDP_STATISTICS and the source's own counts.
#[derive(Debug, Default)]
pub struct XskQueueCounters {
    /// RX queue index.
    pub queue: u32,
    /// Worker owning the socket.
    pub worker: usize,
    /// Whether the kernel bound the socket in zero-copy mode.
    pub zero_copy: bool,
    /// UDP payloads handed to the worker.
    pub datagrams: AtomicU64,
    /// Frames the kernel dropped for this socket (RX ring full, frame too large).
    pub rx_dropped: AtomicU64,
    /// Times the RX ring was full.
    pub rx_ring_full: AtomicU64,
    /// Times the kernel found the fill ring empty.
    pub fill_ring_empty: AtomicU64,
    /// Invalid descriptors the kernel saw.
    pub invalid_descriptors: AtomicU64,
    /// Frames the source discarded (not a listen-port datagram, impossible UDP length, bad
    /// descriptor).
    pub discarded: AtomicU64,
}

/// Counters of one CPU's perf buffer (perf mode), published after every batch by its worker.
#[derive(Debug, Default)]
pub struct PerfCpuCounters {
    /// The CPU whose buffer this is.
    pub cpu: u32,
    /// Worker reading it.
    pub worker: usize,
    /// UDP payloads handed to the worker.
    pub datagrams: AtomicU64,
    /// Samples the kernel could not write (buffer full); their frames went to the slow path.
    pub lost_samples: AtomicU64,
    /// Samples the source discarded (short, not a listen-port datagram, impossible UDP length).
    pub discarded: AtomicU64,
}

/// What one worker counts for one exporter (address + source port).
#[derive(Debug, Default)]
pub struct ExporterCounters {
    /// Datagrams received from this exporter.
    pub datagrams: AtomicU64,
    /// Records decoded from them.
    pub records: AtomicU64,
    /// Datagrams that failed to decode (fully or partly).
    pub errors: AtomicU64,
    /// Units the exporter's sequence numbers count that arrived (flows for v5, data records for
    /// IPFIX, packets for v9, datagrams for sFlow): the denominator of the loss ratio.
    pub sequence_units: AtomicU64,
    /// Receive time of the last datagram, ns since the Unix epoch.
    pub last_seen_ns: AtomicU64,
}

impl ExporterCounters {
    /// Count one datagram of this exporter.
    #[inline]
    pub fn observe(&self, records: u64, units: u64, failed: bool, received_ns: u64) {
        bump(&self.datagrams, 1);
        bump(&self.records, records);
        bump(&self.sequence_units, units);
        if failed {
            bump(&self.errors, 1);
        }
        self.last_seen_ns.store(received_ns, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_copies_sflow_stats() {
        let c = WorkerCounters::new(0);
        let mut s = SflowStats {
            samples_by_type: [5, 4, 3, 2],
            unparsed_headers: 7,
            agent_drops: 8,
            untracked: 9,
            ..Default::default()
        };
        s.unknown_sample_types.count(42);
        s.unknown_flow_records.count(1001);
        s.unknown_flow_records.count(1002);
        s.unknown_counter_records.other = 3;
        c.publish_sflow_stats(&s);
        assert_eq!(c.sflow_samples.each_ref().map(get), [5, 4, 3, 2]);
        assert_eq!(c.sflow_skipped.each_ref().map(get), [1, 2, 3, 7]);
        assert_eq!((get(&c.sflow_agent_drops), get(&c.sflow_untracked)), (8, 9));
    }

    #[test]
    fn publish_copies_decoder_stats() {
        let c = WorkerCounters::new(3);
        let mut s = DecodeStats::default();
        s.records[Protocol::Ipfix.index()] = 7;
        s.records[Protocol::NetflowV5.index()] = 5;
        s.count_error(ErrorReason::TemplateMissing);
        s.template_cache_templates = 120;
        s.early_data_replayed = 4;
        (s.sequence_spaces_refused, s.sequence_spaces_forgotten) = (2, 9);
        s.sampling_rates_refused = 6;
        s.init_times_refused = 8;
        c.publish_decode_stats(&s);
        assert_eq!(get(&c.templates), 120);
        assert_eq!(get(&c.early_data_replayed), 4);
        assert_eq!(
            [
                &c.sequence_spaces_refused,
                &c.sequence_spaces_forgotten,
                &c.sampling_rates_refused,
                &c.init_times_refused
            ]
            .map(get),
            [2, 9, 6, 8]
        );
        assert_eq!(c.records_total(), 12);
        assert_eq!(get(&c.errors[ErrorReason::TemplateMissing.index()]), 1);
        assert_eq!(c.errors_total(), 1);
    }

    #[test]
    fn exporter_observe_counts() {
        let e = ExporterCounters::default();
        e.observe(30, 30, false, 10);
        e.observe(0, 1, true, 20);
        assert_eq!(get(&e.datagrams), 2);
        assert_eq!(get(&e.records), 30);
        assert_eq!(get(&e.errors), 1);
        assert_eq!(get(&e.sequence_units), 31);
        assert_eq!(get(&e.last_seen_ns), 20);
    }
}
