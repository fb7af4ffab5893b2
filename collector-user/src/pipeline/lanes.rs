//! Starting and stopping the lanes: one pinned thread per worker, each with its own source,
//! decoder and sink, and the control plane beside them.
//!
//! [`run_lanes`] is the whole life of `collector run` (socket and XDP mode) once its sources and
//! sinks are built: start the control plane, spawn the workers (pinned with `core_affinity` to the
//! cores the caller chose — XDP mode: the CPU of each RX queue — or to cores `0..n`, round robin
//! when there are more workers than cores), wait for them to drain after the shutdown flag is set
//! (SIGINT/SIGTERM) — together, at one [`ShutdownGate`] — then let the control plane log the final
//! summary.

use super::gate::ShutdownGate;
use super::{BatchSink, DatagramDecoder, Event, Source, Worker, WorkerCommand, WorkerCounters};
use crate::control::{ControlPlane, ControlSetup};
use crate::decode::sampling::ConfiguredRate;
use crate::metrics::{CollectorMetrics, DEFAULT_TOP_N, Totals, XdpMetrics};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Capacity of the worker → control plane event channel.
pub const EVENT_CHANNEL: usize = 4096;

/// One worker's parts, built by the caller (so bind and open errors surface before anything runs).
pub struct Lane<S, D, K> {
    pub source: S,
    pub decoder: D,
    pub sink: K,
}

/// How the lanes run.
pub struct LaneOptions {
    /// The bound `/metrics` listener.
    pub metrics_listener: std::net::TcpListener,
    pub summary_interval: Duration,
    /// Set to stop (also set by SIGINT/SIGTERM, and by a failing worker).
    pub stop: Arc<AtomicBool>,
    /// The flag the workers poll, when the caller sets it itself some time after `stop` (XDP
    /// mode detaches its program in between); `None`: the workers poll `stop`.
    pub workers_stop: Option<Arc<AtomicBool>>,
    /// Called on SIGHUP: the new configured sampling rates for every worker, or `None` to keep
    /// the current ones (the hook logs why).
    pub reload: Box<dyn FnMut() -> Option<Vec<ConfiguredRate>> + Send>,
    /// Pin worker threads to cores.
    pub pin: bool,
    /// The core of each worker (index: worker), when the caller placed them (XDP mode: the CPU
    /// serving the worker's RX queue); empty: cores `0..n` round robin. Needs `pin`.
    pub cores: Vec<usize>,
    /// The XDP program's and the XDP sources' counters, exposed in `/metrics` (XDP mode).
    pub xdp: Option<Arc<XdpMetrics>>,
}

/// What the lanes leave behind.
pub struct LanesOutcome<D, K> {
    /// Totals at the end (also logged as the final summary).
    pub totals: Totals,
    /// Each worker's decoder and sink, in worker order.
    pub lanes: Vec<(D, K)>,
}

/// Run `lanes` until the stop flag is set, then drain, flush and return the final totals.
pub fn run_lanes<S, D, K>(
    lanes: Vec<Lane<S, D, K>>,
    options: LaneOptions,
) -> anyhow::Result<LanesOutcome<D, K>>
where
    S: Source + 'static,
    D: DatagramDecoder + 'static,
    K: BatchSink + 'static,
{
    let counters: Vec<_> = (0..lanes.len())
        .map(|i| Arc::new(WorkerCounters::new(i)))
        .collect();
    let mut metrics = CollectorMetrics::new(counters.clone(), DEFAULT_TOP_N);
    if let Some(xdp) = options.xdp {
        metrics = metrics.with_xdp(xdp);
    }
    let metrics = Arc::new(metrics);
    let (events_tx, events_rx) = crossbeam_channel::bounded::<Event>(EVENT_CHANNEL);
    let (command_txs, command_rxs): (Vec<_>, Vec<_>) = (0..lanes.len())
        .map(|_| crossbeam_channel::bounded::<WorkerCommand>(4))
        .unzip();
    let mut reload = options.reload;
    let control = ControlPlane::start(ControlSetup {
        metrics,
        events: events_rx,
        listener: options.metrics_listener,
        stop: Arc::clone(&options.stop),
        summary_interval: options.summary_interval,
        reload: Box::new(move || {
            if let Some(rates) = reload() {
                for (worker, tx) in command_txs.iter().enumerate() {
                    if tx
                        .try_send(WorkerCommand::SetSampling(rates.clone()))
                        .is_err()
                    {
                        tracing::warn!(worker, "worker busy with an earlier reload; skipped");
                    }
                }
            }
        }),
    })?;
    let cores = if options.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut threads = Vec::new();
    // The workers stop decoding together before any of them closes a socket (see `gate`).
    let gates = ShutdownGate::members(lanes.len());
    for (id, ((lane, commands), gate)) in lanes.into_iter().zip(command_rxs).zip(gates).enumerate()
    {
        let worker = Worker::new(
            id,
            lane.source,
            lane.decoder,
            lane.sink,
            Arc::clone(&counters[id]),
            events_tx.clone(),
        )
        .with_commands(commands)
        .with_gate(gate);
        let core = match options.cores.get(id) {
            Some(&chosen) if options.pin => Some(core_affinity::CoreId { id: chosen }),
            _ => cores.get(id % cores.len().max(1)).copied(),
        };
        let stop = Arc::clone(&options.stop);
        let workers_stop = Arc::clone(options.workers_stop.as_ref().unwrap_or(&options.stop));
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if core_affinity::set_for_current(core) {
                        worker
                            .counters()
                            .core
                            .store(core.id as u64, Ordering::Relaxed);
                    } else {
                        tracing::warn!(worker = id, core = core.id, "could not pin worker");
                    }
                }
                let result = worker.run(&workers_stop);
                if result.is_err() {
                    // A failed worker stops the others: the collector must not run with a hole.
                    stop.store(true, Ordering::Relaxed);
                    workers_stop.store(true, Ordering::Relaxed);
                }
                result
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(err) => {
                options.stop.store(true, Ordering::Relaxed);
                if let Some(workers_stop) = &options.workers_stop {
                    workers_stop.store(true, Ordering::Relaxed);
                }
                tracing::error!(worker = id, %err, "could not start worker thread");
            }
        }
    }
    drop(events_tx);
    tracing::info!(workers = threads.len(), "collecting");
    let mut failure = None;
    let mut finished = Vec::new();
    for (id, handle) in threads.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(parts)) => finished.push(parts),
            Ok(Err(err)) => {
                tracing::error!(worker = id, %err, "worker failed");
                failure.get_or_insert(anyhow::anyhow!("worker {id} failed: {err}"));
            }
            Err(_) => {
                failure.get_or_insert(anyhow::anyhow!("worker {id} panicked"));
            }
        }
    }
    let totals = control.finish()?;
    match failure {
        Some(err) => Err(err),
        None => Ok(LanesOutcome {
            totals,
            lanes: finished,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow::AllowList;
    use crate::decode::sequence::SequenceCounts;
    use crate::decode::{Collected, Counted, DatagramMeta, DecodeStats, ErrorReason, RecordSink};
    use crate::pipeline::udp::bind_sources;
    use std::collections::BTreeSet;
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// Notes which exporters it decoded; takes `per_datagram` for each (a busy worker).
    #[derive(Default)]
    struct Recording {
        stats: DecodeStats,
        exporters: BTreeSet<SocketAddr>,
        per_datagram: Duration,
    }

    impl DatagramDecoder for Recording {
        fn decode_datagram<S: RecordSink>(
            &mut self,
            meta: &DatagramMeta,
            _datagram: &[u8],
            _sink: &mut S,
        ) -> (Counted, Result<(), ErrorReason>) {
            self.exporters.insert(meta.exporter);
            if !self.per_datagram.is_zero() {
                let until = Instant::now() + self.per_datagram;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            (Counted::default(), Ok(()))
        }
        fn stats(&self) -> &DecodeStats {
            &self.stats
        }
        fn sflow_stats(&self) -> Option<&crate::decode::sflow::SflowStats> {
            None
        }
        fn sequence_counts(&self, _out: &mut Vec<(IpAddr, SequenceCounts)>) {}
        fn sflow_sample_sequences(&self) -> SequenceCounts {
            SequenceCounts::default()
        }
        fn set_configured_sampling(&mut self, _rates: Vec<ConfiguredRate>) {}
        fn housekeeping(&mut self, _now_ns: u64) {}
        fn finish(&mut self) {}
    }

    #[test]
    fn no_worker_decodes_another_workers_exporters_while_shutting_down() {
        // Two workers share a port (SO_REUSEPORT). Worker 1 is busy (each datagram takes 400 µs:
        // it cannot keep up with its share of what is sent), so after the stop it drains long,
        // its socket never empty while the exporters send, while worker 0 is done at once. Were
        // worker 0 to close its socket then, the kernel would send its exporters to worker 1,
        // which would decode them (with real IPFIX: template_missing, "new exporter" on the
        // wrong worker).
        let sources = bind_sources(
            &["127.0.0.1:0".parse().unwrap()],
            false,
            2,
            16 << 20,
            &AllowList::default(),
        )
        .unwrap();
        let target = sources[0].sockets()[0].local_addr();
        let lanes: Vec<_> = sources
            .into_iter()
            .enumerate()
            .map(|(worker, source)| Lane {
                source,
                decoder: Recording {
                    per_datagram: Duration::from_micros(if worker == 1 { 400 } else { 0 }),
                    ..Recording::default()
                },
                sink: Collected::default(),
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let options = LaneOptions {
            metrics_listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            summary_interval: Duration::from_secs(60),
            stop: Arc::clone(&stop),
            workers_stop: None,
            reload: Box::new(|| None),
            pin: false,
            cores: Vec::new(),
            xdp: None,
        };
        let lanes = std::thread::spawn(move || run_lanes(lanes, options).unwrap());

        // 32 exporters, each with its own port, sending round after round until told to stop.
        let sent = Arc::new(AtomicU64::new(0));
        let sending = Arc::new(AtomicBool::new(true));
        let sender = {
            let (sent, sending) = (Arc::clone(&sent), Arc::clone(&sending));
            std::thread::spawn(move || {
                let exporters: Vec<_> = (0..32)
                    .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
                    .collect();
                while sending.load(Ordering::Relaxed) {
                    for exporter in &exporters {
                        exporter.send_to(&[0u8; 64], target).unwrap();
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        // The exporters keep sending through the first part of the drain.
        std::thread::sleep(Duration::from_millis(300));
        sending.store(false, Ordering::Relaxed);
        sender.join().unwrap();
        let outcome = lanes.join().unwrap();

        let seen: Vec<_> = outcome.lanes.iter().map(|(d, _)| &d.exporters).collect();
        assert!(!seen[0].is_empty() && !seen[1].is_empty(), "{seen:?}");
        let shared: Vec<_> = seen[0].intersection(seen[1]).collect();
        assert!(
            shared.is_empty(),
            "exporters decoded by both workers: {shared:?}"
        );
        // Every datagram sent (all before the sockets were sealed) was decoded, counted as
        // discarded at shutdown or as dropped by the kernel: none vanished with a socket.
        let totals = outcome.totals;
        assert_eq!(
            totals.datagrams + totals.shutdown_discarded + totals.kernel_drops,
            sent.load(Ordering::Relaxed),
            "{totals:?}"
        );
    }
}
