//! The worker loop: one thread, one core, its own sources, decoder state, sink and exporter table.
//!
//! Loop: receive a batch (waiting at most [`POLL_TIMEOUT`]) → decode each datagram into the sink →
//! commit the sink once → publish counters. When the shutdown flag is set the worker drains: it
//! keeps receiving without waiting until its source is empty (or [`DRAIN_LIMIT`] passed). Then it
//! meets the other workers at the [`ShutdownGate`](super::gate::ShutdownGate) (see there why): it
//! decodes what its own source still receives until every worker has drained, then decodes
//! nothing more, and once every worker has stopped decoding it seals its source
//! ([`crate::pipeline::Source::seal`]: the kernel queues nothing more for it) and receives what the
//! source still holds undecoded, counting it (`shutdown_discarded`, for at most
//! [`DISCARD_LIMIT`]): nothing queued for the collector disappears uncounted with its sockets, and
//! no worker decodes a datagram of an exporter the kernel moved to it from a closing socket. Last
//! it commits and flushes the sink and returns. The control plane gets counters through atomics
//! and events through a bounded channel; the worker never blocks on either.

use super::counters::{WorkerCounters, bump};
use super::exporters::{DEFAULT_CAPACITY, ExporterTable};
use super::gate::GateMember;
use super::{BatchSink, DatagramDecoder, Event, Source, SourceLosses};
use crate::decode::sampling::ConfiguredRate;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for a datagram before the worker looks at the shutdown flag again.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest time spent draining sources after shutdown was asked for.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Longest time spent counting (not decoding) what the sources still hold once sealed.
pub const DISCARD_LIMIT: Duration = Duration::from_millis(250);
/// Longest wait for a datagram while a drained worker waits for the others to drain.
const GATE_POLL: Duration = Duration::from_millis(2);
/// At most one decode-error sample per this many ns of receive time, per worker.
pub const ERROR_SAMPLE_INTERVAL_NS: u64 = 1_000_000_000;
/// Housekeeping (exporter expiry) period.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How often the sequence accounting is sent to the control plane.
const SEQUENCE_REPORT: Duration = Duration::from_secs(1);

/// What the control plane tells a worker (checked once per batch, never blocking).
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// New configured sampling rates (SIGHUP).
    SetSampling(Vec<ConfiguredRate>),
}

/// One lane of the pipeline.
pub struct Worker<S, D, K> {
    id: usize,
    source: S,
    decoder: D,
    sink: K,
    counters: Arc<WorkerCounters>,
    exporters: ExporterTable,
    events: Sender<Event>,
    commands: Option<Receiver<WorkerCommand>>,
    /// Where it meets the other workers of the run at shutdown; `None`: it is alone.
    gate: Option<GateMember>,
    errors_since_sample: u64,
    last_error_sample_ns: Option<u64>,
    /// Templates learned and withdrawn at the previous report.
    templates_reported: (u64, u64),
}

impl<S: Source, D: DatagramDecoder, K: BatchSink> Worker<S, D, K> {
    /// A worker numbered `id` that publishes into `counters` and reports on `events`.
    pub fn new(
        id: usize,
        source: S,
        decoder: D,
        sink: K,
        counters: Arc<WorkerCounters>,
        events: Sender<Event>,
    ) -> Self {
        let exporters = ExporterTable::new(DEFAULT_CAPACITY, Arc::clone(&counters), events.clone());
        Worker {
            id,
            source,
            decoder,
            sink,
            counters,
            exporters,
            events,
            commands: None,
            gate: None,
            errors_since_sample: 0,
            last_error_sample_ns: None,
            templates_reported: (0, 0),
        }
    }

    /// Take commands (sampling reloads) from `commands`.
    pub fn with_commands(mut self, commands: Receiver<WorkerCommand>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Meet the other workers at `gate` when shutting down (all of one run share one
    /// [`ShutdownGate`](super::gate::ShutdownGate)).
    pub fn with_gate(mut self, gate: GateMember) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// Run until `stop` is set, then drain and flush. Returns the decoder and sink (tests inspect them).
    pub fn run(mut self, stop: &AtomicBool) -> std::io::Result<(D, K)> {
        let mut last_housekeeping = Instant::now();
        let mut last_sequence_report = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.step(POLL_TIMEOUT)?;
            if let Some(commands) = &self.commands {
                for command in commands.try_iter() {
                    match command {
                        WorkerCommand::SetSampling(rates) => {
                            self.decoder.set_configured_sampling(rates)
                        }
                    }
                }
            }
            if last_sequence_report.elapsed() >= SEQUENCE_REPORT {
                last_sequence_report = Instant::now();
                self.report_state();
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = Instant::now();
                let now = crate::source::now_ns();
                self.exporters.expire_idle(now);
                self.decoder.housekeeping(now);
                self.counters.publish_decode_stats(self.decoder.stats());
            }
        }
        let drain_started = Instant::now();
        let mut emptied = false;
        while drain_started.elapsed() < DRAIN_LIMIT {
            if self.step(Duration::ZERO)? == 0 {
                emptied = true;
                break;
            }
        }
        let mut gate = self.gate.take();
        if let Some(gate) = gate.as_mut() {
            gate.arrive_drained();
            // Every socket is still open, so what this source receives is still its exporters':
            // decode it while the others drain.
            while !gate.all_drained() {
                self.step(GATE_POLL)?;
            }
            gate.arrive_quiet_and_wait();
        }
        // Nobody decodes any more: the kernel may move exporters between sockets now.
        let sealed = self.source.seal();
        let discarded = self.discard_remaining()?;
        if let Err(err) = sealed {
            tracing::warn!(worker = self.id, %err, "could not seal the sockets for shutdown");
        }
        if !emptied {
            tracing::warn!(
                worker = self.id,
                discarded,
                drain_secs = DRAIN_LIMIT.as_secs(),
                "datagrams kept coming through the shutdown drain; the rest were discarded undecoded"
            );
        } else if discarded > 0 {
            tracing::info!(
                worker = self.id,
                discarded,
                "datagrams that arrived after the shutdown drain were discarded undecoded"
            );
        }
        // The kernel's last drops, which no datagram will report now.
        self.source.refresh_losses();
        publish_losses(&self.counters, self.source.losses());
        self.decoder.finish();
        self.counters.publish_decode_stats(self.decoder.stats());
        self.report_state();
        if let Err(err) = self.sink.flush() {
            bump(&self.counters.sink_errors, 1);
            return Err(err);
        }
        Ok((self.decoder, self.sink))
    }

    /// Once every worker stopped decoding: receive what the source still holds without decoding
    /// it, and count it, until the source is empty or [`DISCARD_LIMIT`] passed. Returns the count.
    fn discard_remaining(&mut self) -> std::io::Result<u64> {
        let started = Instant::now();
        let mut discarded = 0u64;
        while started.elapsed() < DISCARD_LIMIT {
            let n = self.source.recv_batch(Duration::ZERO, &mut |_, _| {})?;
            if n == 0 {
                break;
            }
            discarded += n as u64;
        }
        bump(&self.counters.shutdown_discarded, discarded);
        Ok(discarded)
    }

    /// Send the decoder's sequence accounting, and template changes since the previous report,
    /// to the control plane (off the per-datagram path).
    fn report_state(&mut self) {
        let stats = self.decoder.stats();
        let now = (stats.templates_learned, stats.templates_withdrawn);
        if now != self.templates_reported {
            let event = Event::Templates {
                worker: self.id,
                learned: now.0.wrapping_sub(self.templates_reported.0),
                withdrawn: now.1.wrapping_sub(self.templates_reported.1),
                cached: stats.template_cache_templates,
            };
            self.templates_reported = now;
            if self.events.try_send(event).is_err() {
                bump(&self.counters.events_dropped, 1);
            }
        }
        self.counters
            .publish_sflow_sample_sequences(&self.decoder.sflow_sample_sequences());
        let mut counts = Vec::new();
        self.decoder.sequence_counts(&mut counts);
        if counts.is_empty() {
            return;
        }
        let event = Event::Sequences {
            worker: self.id,
            counts,
        };
        if self.events.try_send(event).is_err() {
            bump(&self.counters.events_dropped, 1);
        }
    }

    /// One batch: receive, decode, commit, publish. Returns the number of datagrams received.
    pub fn step(&mut self, timeout: Duration) -> std::io::Result<usize> {
        let Worker {
            id,
            source,
            decoder,
            sink,
            counters,
            exporters,
            events,
            commands: _,
            gate: _,
            errors_since_sample,
            last_error_sample_ns,
            templates_reported: _,
        } = self;
        let mut bytes = 0u64;
        let received = source.recv_batch(timeout, &mut |meta, datagram| {
            bytes += datagram.len() as u64;
            let (counted, result) = decoder.decode_datagram(meta, datagram, sink);
            exporters.observe(
                meta.exporter,
                u64::from(counted.records),
                u64::from(counted.sequence_units),
                result.is_err(),
                meta.received_ns,
            );
            if let Err(reason) = result {
                let due = last_error_sample_ns.is_none_or(|last| {
                    meta.received_ns.saturating_sub(last) >= ERROR_SAMPLE_INTERVAL_NS
                });
                if due {
                    *last_error_sample_ns = Some(meta.received_ns);
                    let event = Event::DecodeError {
                        worker: *id,
                        exporter: meta.exporter,
                        reason,
                        suppressed: *errors_since_sample,
                    };
                    *errors_since_sample = 0;
                    if events.try_send(event).is_err() {
                        bump(&counters.events_dropped, 1);
                    }
                } else {
                    *errors_since_sample += 1;
                }
            }
        })?;
        if received > 0 {
            if sink.commit().is_err() {
                bump(&counters.sink_errors, 1);
            }
            bump(&counters.batches, 1);
            bump(&counters.datagrams, received as u64);
            bump(&counters.bytes, bytes);
            counters.publish_decode_stats(decoder.stats());
            if let Some(sflow) = decoder.sflow_stats() {
                counters.publish_sflow_stats(sflow);
            }
        }
        publish_losses(counters, source.losses());
        Ok(received)
    }
}

/// Copy a source's cumulative losses into the worker's counters.
fn publish_losses(counters: &WorkerCounters, losses: SourceLosses) {
    counters
        .kernel_drops
        .store(losses.kernel_drops, Ordering::Relaxed);
    counters
        .truncated
        .store(losses.truncated, Ordering::Relaxed);
    counters
        .not_allowed
        .store(losses.not_allowed, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::sequence::SequenceCounts;
    use crate::decode::{Collected, Counted, DatagramMeta, DecodeStats, ErrorReason, RecordSink};
    use crate::pipeline::SourceLosses;
    use crate::pipeline::counters::get;
    use crate::record::FlowRecord;
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;

    /// A source replaying prepared batches; an empty queue behaves like a timeout.
    struct ScriptedSource {
        batches: VecDeque<Vec<(SocketAddr, Vec<u8>)>>,
        drops: u64,
    }

    impl Source for ScriptedSource {
        fn recv_batch(
            &mut self,
            _timeout: Duration,
            deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
        ) -> std::io::Result<usize> {
            let Some(batch) = self.batches.pop_front() else {
                return Ok(0);
            };
            for (i, (exporter, bytes)) in batch.iter().enumerate() {
                let meta = DatagramMeta {
                    exporter: *exporter,
                    received_ns: 1_000 + i as u64,
                };
                deliver(&meta, bytes);
            }
            self.drops += 1;
            Ok(batch.len())
        }
        fn losses(&self) -> SourceLosses {
            SourceLosses {
                kernel_drops: self.drops,
                truncated: 0,
                not_allowed: 2 * self.drops,
            }
        }
        /// Drops the kernel reports only when asked: 10 more at the end.
        fn refresh_losses(&mut self) {
            self.drops += 10;
        }
    }

    /// Decodes a test format: first byte = number of flow records; 0xff = an error.
    #[derive(Default)]
    struct CountingDecoder {
        stats: DecodeStats,
        sampling: Vec<ConfiguredRate>,
        /// Data sets it pretends to hold for templates that never come: dropped by `finish`.
        held: u64,
    }

    impl DatagramDecoder for CountingDecoder {
        fn decode_datagram<S: RecordSink>(
            &mut self,
            meta: &DatagramMeta,
            datagram: &[u8],
            sink: &mut S,
        ) -> (Counted, Result<(), ErrorReason>) {
            let Some(&n) = datagram.first() else {
                return (Counted::default(), Err(ErrorReason::TooShort));
            };
            if n == 0xff {
                self.stats.count_error(ErrorReason::UnknownVersion);
                return (Counted::default(), Err(ErrorReason::UnknownVersion));
            }
            for i in 0..n {
                let mut r: FlowRecord = bytemuck::Zeroable::zeroed();
                r.time_received_ns = meta.received_ns;
                r.packets = u64::from(i);
                sink.flow(&r);
            }
            self.stats.datagrams[0] += 1;
            self.stats.records[0] += u64::from(n);
            // Pretend a datagram of 4 records also carried a template.
            if n == 4 {
                self.stats.templates_learned += 1;
                self.stats.template_cache_templates += 1;
            }
            // Each record stands for two sequence units (the worker passes on what it is told).
            let counted = Counted {
                records: u32::from(n),
                sequence_units: 2 * u32::from(n),
            };
            (counted, Ok(()))
        }
        fn stats(&self) -> &DecodeStats {
            &self.stats
        }
        fn sflow_stats(&self) -> Option<&crate::decode::sflow::SflowStats> {
            None
        }
        fn sflow_sample_sequences(&self) -> SequenceCounts {
            SequenceCounts {
                lost: 4,
                late: 2,
                restarts: 1,
                ..SequenceCounts::default()
            }
        }
        fn sequence_counts(&self, out: &mut Vec<(std::net::IpAddr, SequenceCounts)>) {
            out.push((
                "192.0.2.9".parse().unwrap(),
                SequenceCounts {
                    lost: self.stats.records[0],
                    ..Default::default()
                },
            ));
        }
        fn set_configured_sampling(&mut self, rates: Vec<ConfiguredRate>) {
            self.sampling = rates;
        }
        fn housekeeping(&mut self, _now_ns: u64) {}
        fn finish(&mut self) {
            self.stats.errors[ErrorReason::EarlyDataDropped.index()] +=
                std::mem::take(&mut self.held);
        }
    }

    /// A sink that counts commits.
    #[derive(Default)]
    struct CommitCounting {
        collected: Collected,
        commits: usize,
        flushed: bool,
    }
    impl RecordSink for CommitCounting {
        fn flow(&mut self, r: &FlowRecord) {
            self.collected.flow(r);
        }
        fn counters(&mut self, r: &crate::record::CounterRecord) {
            self.collected.counters(r);
        }
    }
    impl BatchSink for CommitCounting {
        fn commit(&mut self) -> std::io::Result<()> {
            self.commits += 1;
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushed = true;
            Ok(())
        }
    }

    fn exporter(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 9], port))
    }

    /// Exporters that never stop: a datagram of one record on every call.
    struct EndlessSource {
        delivered: Arc<AtomicU64>,
    }

    impl Source for EndlessSource {
        fn recv_batch(
            &mut self,
            _timeout: Duration,
            deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
        ) -> std::io::Result<usize> {
            let meta = DatagramMeta {
                exporter: exporter(1),
                received_ns: 1_000,
            };
            deliver(&meta, &[1]);
            self.delivered.fetch_add(1, Ordering::Relaxed);
            Ok(1)
        }
        fn losses(&self) -> SourceLosses {
            SourceLosses::default()
        }
    }

    #[test]
    fn a_drain_that_runs_out_of_time_counts_what_it_discards() {
        let delivered = Arc::new(AtomicU64::new(0));
        let source = EndlessSource {
            delivered: Arc::clone(&delivered),
        };
        let counters = Arc::new(WorkerCounters::new(0));
        let (tx, _rx) = crossbeam_channel::bounded(64);
        let worker = Worker::new(
            0,
            source,
            CountingDecoder::default(),
            CommitCounting::default(),
            Arc::clone(&counters),
            tx,
        );
        let started = Instant::now();
        let (decoder, sink) = worker.run(&AtomicBool::new(true)).unwrap();
        assert!(started.elapsed() < DRAIN_LIMIT + DISCARD_LIMIT + Duration::from_secs(5));
        assert!(sink.flushed);
        let decoded = decoder.stats.records[0];
        let discarded = get(&counters.shutdown_discarded);
        assert!(decoded > 0 && discarded > 0, "{decoded} {discarded}");
        // Every datagram the source handed over is either decoded or counted as discarded.
        assert_eq!(decoded + discarded, delivered.load(Ordering::Relaxed));
    }

    #[test]
    fn batches_are_decoded_committed_counted_and_drained_after_stop() {
        let batches = VecDeque::from(vec![
            vec![(exporter(1), vec![3]), (exporter(2), vec![2])],
            vec![(exporter(1), vec![0xff]), (exporter(1), vec![1])],
            vec![(exporter(3), vec![4])],
        ]);
        let source = ScriptedSource { batches, drops: 0 };
        let counters = Arc::new(WorkerCounters::new(0));
        let (tx, rx) = crossbeam_channel::bounded(64);
        let decoder = CountingDecoder {
            held: 2,
            ..CountingDecoder::default()
        };
        let worker = Worker::new(
            0,
            source,
            decoder,
            CommitCounting::default(),
            Arc::clone(&counters),
            tx,
        );
        // Stop is already set: everything is received by the drain, none of it lost.
        let stop = AtomicBool::new(true);
        let (decoder, sink) = worker.run(&stop).unwrap();
        assert_eq!(sink.collected.flows.len(), 10);
        assert_eq!(sink.commits, 3);
        assert!(sink.flushed);
        assert_eq!(decoder.stats.records[0], 10);
        assert_eq!(get(&counters.datagrams), 5);
        assert_eq!(get(&counters.bytes), 5);
        assert_eq!(get(&counters.batches), 3);
        assert_eq!(counters.records_total(), 10);
        assert_eq!(
            get(&counters.errors[ErrorReason::UnknownVersion.index()]),
            1
        );
        // 3 counted batch by batch, 10 more read once the drain was done.
        assert_eq!(get(&counters.kernel_drops), 13);
        assert_eq!(get(&counters.not_allowed), 26);
        assert_eq!(
            counters.sflow_sample_sequence.each_ref().map(get),
            [4, 2, 1]
        );
        // What the decoder still held when the worker stopped is counted, and published.
        assert_eq!(
            get(&counters.errors[ErrorReason::EarlyDataDropped.index()]),
            2
        );
        let events: Vec<_> = rx.try_iter().collect();
        let mut per_exporter = Vec::new();
        let mut error_samples = 0;
        let mut sequence_reports = 0;
        let mut template_reports = 0;
        for e in &events {
            match e {
                Event::NewExporter {
                    exporter, counters, ..
                } => per_exporter.push((
                    exporter.port(),
                    get(&counters.datagrams),
                    get(&counters.records),
                    get(&counters.sequence_units),
                    get(&counters.errors),
                )),
                Event::DecodeError { reason, .. } => {
                    assert_eq!(*reason, ErrorReason::UnknownVersion);
                    error_samples += 1;
                }
                Event::Templates {
                    learned,
                    withdrawn,
                    cached,
                    ..
                } => {
                    assert_eq!((*learned, *withdrawn, *cached), (1, 0, 1));
                    template_reports += 1;
                }
                Event::Sequences { counts, .. } => {
                    // The final report after the drain carries the decoder's last counts.
                    assert_eq!(counts[0].1.lost, 10);
                    sequence_reports += 1;
                }
            }
        }
        per_exporter.sort();
        assert_eq!(
            per_exporter,
            vec![(1, 3, 4, 8, 1), (2, 1, 2, 4, 0), (3, 1, 4, 8, 0)]
        );
        let _ = &decoder.sampling;
        assert_eq!(error_samples, 1);
        assert_eq!(sequence_reports, 1);
        assert_eq!(template_reports, 1);
    }

    #[test]
    fn sampling_reload_reaches_the_decoder() {
        let source = ScriptedSource {
            batches: VecDeque::new(),
            drops: 0,
        };
        let (tx, _rx) = crossbeam_channel::bounded(8);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(8);
        let worker = Worker::new(
            0,
            source,
            CountingDecoder::default(),
            CommitCounting::default(),
            Arc::new(WorkerCounters::new(0)),
            tx,
        )
        .with_commands(cmd_rx);
        let rate = ConfiguredRate {
            prefix: "10.0.0.0".parse().unwrap(),
            prefix_len: 8,
            rate: 400,
            override_exported: false,
        };
        cmd_tx.send(WorkerCommand::SetSampling(vec![rate])).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        let handle = std::thread::spawn(move || worker.run(&stopper));
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let (decoder, _) = handle.join().unwrap().unwrap();
        assert_eq!(decoder.sampling, vec![rate]);
    }

    #[test]
    fn decode_error_samples_are_rate_limited() {
        let batch: Vec<_> = (0..100).map(|_| (exporter(7), vec![0xff])).collect();
        let source = ScriptedSource {
            batches: VecDeque::from(vec![batch]),
            drops: 0,
        };
        let counters = Arc::new(WorkerCounters::new(1));
        let (tx, rx) = crossbeam_channel::bounded(256);
        let mut worker = Worker::new(
            1,
            source,
            CountingDecoder::default(),
            CommitCounting::default(),
            Arc::clone(&counters),
            tx,
        );
        assert_eq!(worker.step(Duration::ZERO).unwrap(), 100);
        let samples = rx
            .try_iter()
            .filter(|e| matches!(e, Event::DecodeError { .. }))
            .count();
        assert_eq!(samples, 1);
        assert_eq!(
            get(&counters.errors[ErrorReason::UnknownVersion.index()]),
            100
        );
    }
}
