//! What the collector exposes about itself: the Prometheus `/metrics` text and the one-line summary.
//!
//! This module owns the metric names and the exporter registry of the control plane. It reads the
//! workers' atomics at scrape time (a prometheus-client [`Collector`]), so the workers never touch a
//! metrics library. Per-exporter metrics have bounded label cardinality: at most `top_n` exporter
//! addresses get their own `exporter` label — the busiest ones when a slot frees, and a labelled
//! exporter keeps its label so its counters stay monotonic — and every other exporter is summed
//! under `exporter="other"`. Exporters a worker forgot (idle) are folded into retired totals, so no
//! count ever goes backwards.

use crate::decode::sequence::SequenceCounts;
use crate::decode::{ErrorReason, Protocol};
use crate::pipeline::counters::{PerfCpuCounters, XskQueueCounters, get};
use crate::pipeline::{ExporterCounters, WorkerCounters};
use crate::xdp::SteerCounters;
use collector_common::Counter;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

/// Exporters labelled individually by default.
pub const DEFAULT_TOP_N: usize = 20;

/// Totals of one exporter (or of "other").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExporterTotals {
    pub datagrams: u64,
    pub records: u64,
    pub errors: u64,
    /// Sequence units received (see [`ExporterCounters::sequence_units`]).
    pub sequence_units: u64,
    /// Sequence accounting summed over the exporter's sequence spaces.
    pub sequence: SequenceCounts,
}

impl ExporterTotals {
    fn add(&mut self, other: &ExporterTotals) {
        self.datagrams += other.datagrams;
        self.records += other.records;
        self.errors += other.errors;
        self.sequence_units += other.sequence_units;
        self.sequence.add(&other.sequence);
    }

    fn of(counters: &ExporterCounters) -> ExporterTotals {
        ExporterTotals {
            datagrams: get(&counters.datagrams),
            records: get(&counters.records),
            errors: get(&counters.errors),
            sequence_units: get(&counters.sequence_units),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
struct ExporterEntry {
    /// Counters of the worker-side entries (one per exporter socket address still tracked).
    live: Vec<(SocketAddr, Arc<ExporterCounters>)>,
    /// Totals of entries the workers forgot.
    retired: ExporterTotals,
    labelled: bool,
}

impl ExporterEntry {
    fn totals(&self) -> ExporterTotals {
        let mut t = self.retired;
        for (_, c) in &self.live {
            t.add(&ExporterTotals::of(c));
        }
        t
    }
}

/// The control plane's view of all exporters, keyed by exporter IP address.
#[derive(Debug)]
pub struct ExporterRegistry {
    top_n: usize,
    by_addr: HashMap<IpAddr, ExporterEntry>,
    labelled: usize,
    /// Totals of unlabelled exporters that are gone.
    other_retired: ExporterTotals,
    /// The latest sequence accounting of each worker (cumulative in the decoders).
    sequences: HashMap<usize, Vec<(IpAddr, SequenceCounts)>>,
}

impl ExporterRegistry {
    pub fn new(top_n: usize) -> Self {
        ExporterRegistry {
            top_n,
            by_addr: HashMap::new(),
            labelled: 0,
            other_retired: ExporterTotals::default(),
            sequences: HashMap::new(),
        }
    }

    /// A worker's latest sequence accounting (replaces its previous report).
    pub fn set_sequences(&mut self, worker: usize, counts: Vec<(IpAddr, SequenceCounts)>) {
        self.sequences.insert(worker, counts);
    }

    /// A worker announced a new exporter socket address.
    pub fn add(&mut self, exporter: SocketAddr, counters: Arc<ExporterCounters>) {
        self.by_addr
            .entry(exporter.ip())
            .or_default()
            .live
            .push((exporter, counters));
    }

    /// Number of exporter addresses known (live or labelled).
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// True when no exporter is known.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Fold forgotten entries, give free label slots to the busiest unlabelled exporters, and
    /// return (label, totals) for every labelled exporter plus `"other"`, busiest first.
    pub fn snapshot(&mut self) -> Vec<(String, ExporterTotals)> {
        let mut other = self.other_retired;
        let mut gone = Vec::new();
        for (addr, entry) in &mut self.by_addr {
            entry.live.retain(|(_, c)| {
                // Only the registry holds it: the worker forgot this exporter.
                if Arc::strong_count(c) == 1 {
                    entry.retired.add(&ExporterTotals::of(c));
                    false
                } else {
                    true
                }
            });
            if entry.live.is_empty() && !entry.labelled {
                gone.push(*addr);
            }
        }
        for addr in gone {
            if let Some(entry) = self.by_addr.remove(&addr) {
                self.other_retired.add(&entry.retired);
                other.add(&entry.retired);
            }
        }
        if self.labelled < self.top_n {
            let mut candidates: Vec<(u64, IpAddr)> = self
                .by_addr
                .iter()
                .filter(|(_, e)| !e.labelled)
                .map(|(a, e)| (e.totals().datagrams, *a))
                .collect();
            candidates.sort_unstable_by(|a, b| b.cmp(a));
            for (_, addr) in candidates.into_iter().take(self.top_n - self.labelled) {
                if let Some(entry) = self.by_addr.get_mut(&addr) {
                    entry.labelled = true;
                    self.labelled += 1;
                }
            }
        }
        let mut sequences: HashMap<IpAddr, SequenceCounts> = HashMap::new();
        for (addr, counts) in self.sequences.values().flatten() {
            sequences.entry(*addr).or_default().add(counts);
        }
        let mut out = Vec::new();
        for (addr, entry) in &self.by_addr {
            let mut totals = entry.totals();
            if let Some(counts) = sequences.remove(addr) {
                totals.sequence.add(&counts);
            }
            if entry.labelled {
                out.push((addr.to_string(), totals));
            } else {
                other.add(&totals);
            }
        }
        // Sequence spaces of exporters no worker tracks any more.
        for counts in sequences.values() {
            other.sequence.add(counts);
        }
        out.sort_by(|a, b| b.1.datagrams.cmp(&a.1.datagrams).then(a.0.cmp(&b.0)));
        out.push(("other".to_string(), other));
        out
    }
}

/// Reads the XDP program's counters (summed over CPUs) at scrape time; `None` when the read fails.
pub type ProgramCountersReader = Box<dyn Fn() -> Option<SteerCounters> + Send + Sync>;

/// What XDP mode adds to `/metrics`: the program's per-branch counters, each AF_XDP socket's or
/// perf buffer's counters, and each worker's slow-path (UDP socket) datagrams.
pub struct XdpMetrics {
    /// The program's counters.
    pub program: ProgramCountersReader,
    /// One entry per AF_XDP socket (afxdp mode).
    pub queues: Vec<Arc<XskQueueCounters>>,
    /// One entry per perf buffer (perf mode).
    pub cpus: Vec<Arc<PerfCpuCounters>>,
    /// Datagrams each worker received from its UDP sockets (index: worker).
    pub slow_path: Vec<Arc<AtomicU64>>,
}

impl std::fmt::Debug for XdpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpMetrics")
            .field("queues", &self.queues)
            .field("cpus", &self.cpus)
            .field("slow_path", &self.slow_path)
            .finish_non_exhaustive()
    }
}

/// Everything `/metrics` and the summaries read.
#[derive(Debug)]
pub struct CollectorMetrics {
    pub workers: Vec<Arc<WorkerCounters>>,
    pub exporters: Mutex<ExporterRegistry>,
    /// XDP mode's counters; `None` in socket mode.
    pub xdp: Option<Arc<XdpMetrics>>,
}

impl CollectorMetrics {
    pub fn new(workers: Vec<Arc<WorkerCounters>>, top_n: usize) -> Self {
        CollectorMetrics {
            workers,
            exporters: Mutex::new(ExporterRegistry::new(top_n)),
            xdp: None,
        }
    }

    /// Also expose XDP mode's counters.
    pub fn with_xdp(mut self, xdp: Arc<XdpMetrics>) -> Self {
        self.xdp = Some(xdp);
        self
    }

    /// A registry exposing these metrics.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        registry
    }

    /// Totals over all workers, for summaries.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in &self.workers {
            t.datagrams += get(&w.datagrams);
            t.records += w.records_total();
            t.errors += w.errors_total();
            t.kernel_drops += get(&w.kernel_drops);
            t.truncated += get(&w.truncated);
            t.shutdown_discarded += get(&w.shutdown_discarded);
            t.not_allowed += get(&w.not_allowed);
        }
        t.exporters = self
            .exporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64;
        t
    }
}

/// Totals over all workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub datagrams: u64,
    pub records: u64,
    pub errors: u64,
    pub kernel_drops: u64,
    pub truncated: u64,
    pub shutdown_discarded: u64,
    pub not_allowed: u64,
    pub exporters: u64,
}

impl Totals {
    /// The one-line summary: totals and, given the previous totals and the seconds between, rates.
    pub fn summary_line(&self, previous: &Totals, secs: f64) -> String {
        let rate = |now: u64, then: u64| {
            if secs > 0.0 {
                now.saturating_sub(then) as f64 / secs
            } else {
                0.0
            }
        };
        let mut line = format!(
            "datagrams={} ({:.0}/s) records={} ({:.0}/s) decode_errors={} socket_drops={} truncated={} exporters={}",
            self.datagrams,
            rate(self.datagrams, previous.datagrams),
            self.records,
            rate(self.records, previous.records),
            self.errors,
            self.kernel_drops,
            self.truncated,
            self.exporters,
        );
        if self.shutdown_discarded > 0 {
            line.push_str(&format!(" shutdown_discarded={}", self.shutdown_discarded));
        }
        if self.not_allowed > 0 {
            line.push_str(&format!(" not_allowed={}", self.not_allowed));
        }
        line
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for CollectorMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let per_worker = |f: &dyn Fn(&WorkerCounters) -> u64| {
            self.workers
                .iter()
                .map(|w| (vec![("worker", w.worker.to_string())], f(w)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "collector_datagrams_received",
            "Datagrams received from the sources.",
            per_worker(&|w| get(&w.datagrams)),
        )?;
        counter(
            &mut encoder,
            "collector_bytes_received",
            "Payload bytes of the datagrams received.",
            per_worker(&|w| get(&w.bytes)),
        )?;
        counter(
            &mut encoder,
            "collector_socket_drops",
            "Datagrams lost before decoding: UDP socket buffer full (SO_RXQ_OVFL); in XDP mode also AF_XDP rx_dropped and frames the XDP sources discarded.",
            per_worker(&|w| get(&w.kernel_drops)),
        )?;
        counter(
            &mut encoder,
            "collector_datagrams_truncated",
            "Datagrams larger than a receive slot, discarded.",
            per_worker(&|w| get(&w.truncated)),
        )?;
        counter(
            &mut encoder,
            "collector_datagrams_not_allowed",
            "Datagrams from sources outside the allow-list (--allow) that reached the UDP sockets, discarded (in XDP mode: IP fragments and frames the program passed; it drops the others itself and counts them as dropped_not_allowed).",
            per_worker(&|w| get(&w.not_allowed)),
        )?;
        let mut by_protocol = Vec::new();
        let mut records = Vec::new();
        for w in &self.workers {
            for p in Protocol::ALL {
                let labels = vec![
                    ("worker", w.worker.to_string()),
                    ("protocol", p.name().into()),
                ];
                by_protocol.push((labels.clone(), get(&w.decoded_datagrams[p.index()])));
                records.push((labels, get(&w.records[p.index()])));
            }
        }
        counter(
            &mut encoder,
            "collector_datagrams_decoded",
            "Datagrams handed to the decoder, by protocol.",
            by_protocol,
        )?;
        counter(
            &mut encoder,
            "collector_records_decoded",
            "Records decoded, by protocol.",
            records,
        )?;
        let errors = ErrorReason::ALL.iter().map(|r| {
            let total = self.workers.iter().map(|w| get(&w.errors[r.index()])).sum();
            (vec![("reason", r.name().to_string())], total)
        });
        counter(
            &mut encoder,
            "collector_decode_errors",
            "Datagrams, sets or records refused or skipped by the decoders, by reason.",
            errors,
        )?;
        counter(
            &mut encoder,
            "collector_untracked_exporter_datagrams",
            "Datagrams of exporters beyond a worker's exporter table capacity.",
            per_worker(&|w| get(&w.untracked_exporter_datagrams)),
        )?;
        counter(
            &mut encoder,
            "collector_events_dropped",
            "Worker events dropped because the control plane's channel was full.",
            per_worker(&|w| get(&w.events_dropped)),
        )?;
        counter(
            &mut encoder,
            "collector_shutdown_discarded_datagrams",
            "Datagrams received undecoded and discarded because the shutdown drain ran out of time.",
            per_worker(&|w| get(&w.shutdown_discarded)),
        )?;
        counter(
            &mut encoder,
            "collector_sink_errors",
            "Ring commits that failed.",
            per_worker(&|w| get(&w.sink_errors)),
        )?;
        gauge(
            &mut encoder,
            "collector_worker_core",
            "The core a worker is pinned to (-1: not pinned).",
            self.workers.iter().map(|w| {
                let core = get(&w.core);
                (
                    vec![("worker", w.worker.to_string())],
                    i64::try_from(core).unwrap_or(-1),
                )
            }),
        )?;
        counter(
            &mut encoder,
            "collector_templates_learned",
            "Templates compiled and stored (redefinitions included).",
            per_worker(&|w| get(&w.templates_learned)),
        )?;
        counter(
            &mut encoder,
            "collector_templates_redefined",
            "Templates that replaced one with the same key.",
            per_worker(&|w| get(&w.templates_redefined)),
        )?;
        counter(
            &mut encoder,
            "collector_templates_withdrawn",
            "Templates removed by withdrawal records.",
            per_worker(&|w| get(&w.templates_withdrawn)),
        )?;
        counter(
            &mut encoder,
            "collector_templates_expired",
            "Templates forgotten with an exporter session idle for 30 minutes.",
            per_worker(&|w| get(&w.templates_expired)),
        )?;
        let per_worker_gauge = |f: &dyn Fn(&WorkerCounters) -> u64| {
            self.workers
                .iter()
                .map(|w| {
                    (
                        vec![("worker", w.worker.to_string())],
                        i64::try_from(f(w)).unwrap_or(i64::MAX),
                    )
                })
                .collect::<Vec<_>>()
        };
        gauge(
            &mut encoder,
            "collector_templates",
            "Templates in the worker's cache (evictions: collector_decode_errors_total{reason=\"template_evicted\"}).",
            per_worker_gauge(&|w| get(&w.templates)),
        )?;
        gauge(
            &mut encoder,
            "collector_template_cache_bytes",
            "Bytes accounted to the worker's template cache.",
            per_worker_gauge(&|w| get(&w.template_bytes)),
        )?;
        counter(
            &mut encoder,
            "collector_early_data_held",
            "Data sets held because their template had not arrived yet.",
            per_worker(&|w| get(&w.early_data_held)),
        )?;
        counter(
            &mut encoder,
            "collector_early_data_replayed",
            "Held data sets decoded once their template arrived (expired ones: reason early_data_dropped).",
            per_worker(&|w| get(&w.early_data_replayed)),
        )?;
        gauge(
            &mut encoder,
            "collector_early_data_bytes",
            "Bytes of early data held now.",
            per_worker_gauge(&|w| get(&w.early_data_bytes)),
        )?;
        counter(
            &mut encoder,
            "collector_sequence_spaces_refused",
            "Sequence spaces (exporter, domain) not tracked because the worker's table was full.",
            per_worker(&|w| get(&w.sequence_spaces_refused)),
        )?;
        counter(
            &mut encoder,
            "collector_sequence_spaces_forgotten",
            "Sequence spaces forgotten after 30 minutes without a datagram (their counts stay in the exporter's).",
            per_worker(&|w| get(&w.sequence_spaces_forgotten)),
        )?;
        let by_label = |label: &'static str,
                        names: &[&'static str],
                        f: &dyn Fn(&WorkerCounters) -> &[AtomicU64]| {
            self.workers
                .iter()
                .flat_map(|w| {
                    names.iter().zip(f(w)).map(|(name, value)| {
                        let labels =
                            vec![("worker", w.worker.to_string()), (label, (*name).into())];
                        (labels, get(value))
                    })
                })
                .collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "collector_sflow_samples",
            "sFlow samples decoded, by sample format.",
            by_label(
                "format",
                &["flow", "counter", "expanded_flow", "expanded_counter"],
                &|w| &w.sflow_samples,
            ),
        )?;
        counter(
            &mut encoder,
            "collector_sflow_skipped",
            "sFlow samples, flow records and counter records of formats not decoded, and raw packet headers of protocols other than Ethernet, IPv4 and IPv6 (only their length used).",
            by_label(
                "what",
                &["sample", "flow_record", "counter_record", "header"],
                &|w| &w.sflow_skipped,
            ),
        )?;
        // Loss net of late arrivals goes down when a late datagram arrives: a gauge, as
        // collector_exporter_sequence_lost; the rest only grows.
        gauge(
            &mut encoder,
            "collector_sflow_sample_sequence_lost",
            "sFlow samples missing from the sample sequence numbers (per agent and data source, summed), net of late arrivals (so it may go down).",
            per_worker_gauge(&|w| w.sflow_sample_sequence.first().map_or(0, get)),
        )?;
        counter(
            &mut encoder,
            "collector_sflow_sample_sequence",
            "sFlow sample sequence numbers (per agent and data source), summed: late datagrams (each datagram's samples of a source that arrived behind, counted once) and source restarts.",
            by_label("what", &["late", "restarts"], &|w| {
                w.sflow_sample_sequence.get(1..).unwrap_or_default()
            }),
        )?;
        counter(
            &mut encoder,
            "collector_sflow_agent_drops",
            "Samples the sFlow agents report they dropped before export (their samples' drops counters).",
            per_worker(&|w| get(&w.sflow_agent_drops)),
        )?;
        counter(
            &mut encoder,
            "collector_sflow_untracked",
            "sFlow datagrams and samples whose sequence numbers were not tracked (agent or source tables full).",
            per_worker(&|w| get(&w.sflow_untracked)),
        )?;
        counter(
            &mut encoder,
            "collector_sampling_rates_refused",
            "Sampling rates from options data or v5 headers not learned because the worker's table was full.",
            per_worker(&|w| get(&w.sampling_rates_refused)),
        )?;
        counter(
            &mut encoder,
            "collector_init_times_refused",
            "IPFIX systemInitTimeMilliseconds values from options data not kept because the worker's table was full (that exporter's sysUpTime-relative flow times stay 0).",
            per_worker(&|w| get(&w.init_times_refused)),
        )?;
        let snapshot = self
            .exporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot();
        let exporter_rows = |f: &dyn Fn(&ExporterTotals) -> u64| {
            snapshot
                .iter()
                .map(|(label, t)| (vec![("exporter", label.clone())], f(t)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "collector_exporter_datagrams",
            "Datagrams received per exporter address (top exporters, the rest as \"other\").",
            exporter_rows(&|t| t.datagrams),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_records",
            "Records decoded per exporter address.",
            exporter_rows(&|t| t.records),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_decode_errors",
            "Datagrams that failed to decode, per exporter address.",
            exporter_rows(&|t| t.errors),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_sequence_units",
            "Units the exporter's sequence numbers count that arrived: flows (v5), data records (IPFIX), packets (v9), datagrams (sFlow).",
            exporter_rows(&|t| t.sequence_units),
        )?;
        let exporter_gauge = |f: &dyn Fn(&ExporterTotals) -> u64| {
            snapshot
                .iter()
                .map(|(label, t)| {
                    (
                        vec![("exporter", label.clone())],
                        i64::try_from(f(t)).unwrap_or(i64::MAX),
                    )
                })
                .collect::<Vec<_>>()
        };
        gauge(
            &mut encoder,
            "collector_exporter_sequence_lost",
            "Units missing from the exporter's sequence numbers, net of late arrivals (so it may go down).",
            exporter_gauge(&|t| t.sequence.lost),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_sequence_late",
            "Datagrams that arrived behind the expected sequence number (reordered or duplicated).",
            exporter_rows(&|t| t.sequence.late),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_restarts",
            "Exporter restarts detected (sequence or uptime reset): never counted as loss.",
            exporter_rows(&|t| t.sequence.restarts),
        )?;
        counter(
            &mut encoder,
            "collector_exporter_source_port_changes",
            "NetFlow datagrams from another source port than the previous one of the same sequence space (address and engine / source id): steadily when exporters behind one SNAT'ing address share it, once per restart from a new port.",
            exporter_rows(&|t| t.sequence.source_port_changes),
        )?;
        let exporters = self
            .exporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let metric = encoder.encode_descriptor(
            "collector_exporters",
            "Exporter addresses known.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(exporters as i64).encode(metric)?;
        if let Some(xdp) = &self.xdp {
            encode_xdp(xdp, &mut encoder)?;
        }
        Ok(())
    }
}

fn encode_xdp(xdp: &XdpMetrics, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    if let Some(program) = (xdp.program)() {
        counter(
            encoder,
            "collector_xdp_frames",
            "Frames the XDP program saw, by branch: seen = matched + passed_not_matched + fragments + malformed; matched = dropped_not_allowed + redirected + passed_no_socket + perf_copied + perf_failed + drop_mode_dropped.",
            Counter::ALL
                .iter()
                .map(|c| (vec![("branch", c.name().to_string())], program.get(*c))),
        )?;
    }
    counter(
        encoder,
        "collector_slow_path_datagrams",
        "Datagrams received from the UDP sockets kept open beside the XDP path (fragments, frames the program passed).",
        xdp.slow_path
            .iter()
            .enumerate()
            .map(|(worker, n)| (vec![("worker", worker.to_string())], get(n))),
    )?;
    if !xdp.queues.is_empty() {
        let per_queue = |f: &dyn Fn(&XskQueueCounters) -> u64| {
            xdp.queues
                .iter()
                .map(|q| {
                    (
                        vec![
                            ("queue", q.queue.to_string()),
                            ("worker", q.worker.to_string()),
                        ],
                        f(q),
                    )
                })
                .collect::<Vec<_>>()
        };
        for (name, help, value) in [
            (
                "collector_xsk_datagrams",
                "UDP payloads the AF_XDP socket of an RX queue handed to its worker.",
                &(|q: &XskQueueCounters| get(&q.datagrams)) as &dyn Fn(&XskQueueCounters) -> u64,
            ),
            (
                "collector_xsk_rx_dropped",
                "Frames the kernel dropped for the AF_XDP socket other than for a full RX ring (loss: counted in collector_socket_drops).",
                &|q| get(&q.rx_dropped),
            ),
            (
                "collector_xsk_rx_ring_full",
                "Frames the kernel dropped because the AF_XDP RX ring was full: the worker fell behind (loss: counted in collector_socket_drops).",
                &|q| get(&q.rx_ring_full),
            ),
            (
                "collector_xsk_fill_ring_empty",
                "Times the kernel found the AF_XDP fill ring empty.",
                &|q| get(&q.fill_ring_empty),
            ),
            (
                "collector_xsk_invalid_descriptors",
                "Invalid descriptors the kernel saw on the AF_XDP socket.",
                &|q| get(&q.invalid_descriptors),
            ),
            (
                "collector_xsk_discarded",
                "Frames the AF_XDP source discarded: not UDP to a listen port, impossible UDP length, bad descriptor (loss: counted in collector_socket_drops).",
                &|q| get(&q.discarded),
            ),
        ] {
            counter(encoder, name, help, per_queue(value))?;
        }
        gauge(
            encoder,
            "collector_xsk_zero_copy",
            "1 when the AF_XDP socket of the RX queue is bound in zero-copy mode.",
            xdp.queues
                .iter()
                .map(|q| (vec![("queue", q.queue.to_string())], i64::from(q.zero_copy))),
        )?;
    }
    if !xdp.cpus.is_empty() {
        let per_cpu = |f: &dyn Fn(&PerfCpuCounters) -> u64| {
            xdp.cpus
                .iter()
                .map(|c| {
                    (
                        vec![("cpu", c.cpu.to_string()), ("worker", c.worker.to_string())],
                        f(c),
                    )
                })
                .collect::<Vec<_>>()
        };
        counter(
            encoder,
            "collector_perf_datagrams",
            "UDP payloads a CPU's perf buffer handed to its worker.",
            per_cpu(&|c| get(&c.datagrams)),
        )?;
        counter(
            encoder,
            "collector_perf_lost_samples",
            "Samples the kernel could not write to a full perf buffer; the program passed those frames to the UDP sockets (slow path).",
            per_cpu(&|c| get(&c.lost_samples)),
        )?;
        counter(
            encoder,
            "collector_perf_discarded",
            "Samples the perf source discarded: short, not UDP to a listen port, impossible UDP length (loss: counted in collector_socket_drops).",
            per_cpu(&|c| get(&c.discarded)),
        )?;
    }
    Ok(())
}

/// Render the metrics in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::counters::bump;

    fn exporter(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], port))
    }

    fn live(datagrams: u64) -> Arc<ExporterCounters> {
        let c = Arc::new(ExporterCounters::default());
        bump(&c.datagrams, datagrams);
        bump(&c.records, datagrams * 2);
        c
    }

    #[test]
    fn summary_line_gives_rates_and_the_losses_that_happened() {
        let start = Totals::default();
        let now = Totals {
            datagrams: 100,
            records: 1000,
            kernel_drops: 2,
            exporters: 3,
            ..Totals::default()
        };
        assert_eq!(
            now.summary_line(&start, 2.0),
            "datagrams=100 (50/s) records=1000 (500/s) decode_errors=0 socket_drops=2 \
             truncated=0 exporters=3"
        );
        let refused = Totals {
            not_allowed: 7,
            shutdown_discarded: 4,
            ..now
        };
        let line = refused.summary_line(&start, 2.0);
        assert!(
            line.ends_with(" shutdown_discarded=4 not_allowed=7"),
            "{line}"
        );
    }

    #[test]
    fn top_n_labels_are_sticky_and_the_rest_is_other() {
        let mut reg = ExporterRegistry::new(2);
        let held: Vec<_> = [(1, 10), (2, 30), (3, 20)]
            .into_iter()
            .map(|(last, n)| {
                let c = live(n);
                reg.add(exporter(last, 9), Arc::clone(&c));
                c
            })
            .collect();
        let snap = reg.snapshot();
        let labels: Vec<_> = snap
            .iter()
            .map(|(l, t)| (l.as_str(), t.datagrams))
            .collect();
        assert_eq!(
            labels,
            vec![("192.0.2.2", 30), ("192.0.2.3", 20), ("other", 10)]
        );
        // Exporter 1 becomes the busiest; labels stay where they are (monotonic counters).
        bump(&held[0].datagrams, 100);
        let snap = reg.snapshot();
        let labels: Vec<_> = snap
            .iter()
            .map(|(l, t)| (l.as_str(), t.datagrams))
            .collect();
        assert_eq!(
            labels,
            vec![("192.0.2.2", 30), ("192.0.2.3", 20), ("other", 110)]
        );
    }

    #[test]
    fn forgotten_exporters_keep_their_counts() {
        let mut reg = ExporterRegistry::new(1);
        let a = live(5);
        let b = live(7);
        reg.add(exporter(1, 1), Arc::clone(&a));
        reg.add(exporter(2, 1), Arc::clone(&b));
        reg.add(exporter(2, 2), live(0)); // already forgotten by its worker
        assert_eq!(reg.snapshot().last().unwrap().1.datagrams, 5);
        drop(a);
        drop(b);
        let snap = reg.snapshot();
        assert_eq!(
            snap[0],
            (
                "192.0.2.2".to_string(),
                ExporterTotals {
                    datagrams: 7,
                    records: 14,
                    ..Default::default()
                }
            )
        );
        assert_eq!(snap[1].1.datagrams, 5);
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn sequence_counts_are_summed_per_address_over_workers() {
        let mut reg = ExporterRegistry::new(1);
        let a = live(5);
        let b = live(1);
        reg.add(exporter(1, 1), Arc::clone(&a));
        reg.add(exporter(2, 1), Arc::clone(&b));
        let lost = |n| SequenceCounts {
            lost: n,
            late: 1,
            restarts: 2,
            source_port_changes: 3,
        };
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let gone: IpAddr = "198.51.100.1".parse().unwrap();
        reg.set_sequences(0, vec![(one, lost(3)), (two, lost(4))]);
        reg.set_sequences(1, vec![(one, lost(10)), (gone, lost(100))]);
        // A newer report of worker 1 replaces its previous one.
        reg.set_sequences(1, vec![(one, lost(20)), (gone, lost(100))]);
        let snap = reg.snapshot();
        assert_eq!(snap[0].0, "192.0.2.1");
        assert_eq!(
            snap[0].1.sequence,
            SequenceCounts {
                lost: 23,
                late: 2,
                restarts: 4,
                source_port_changes: 6
            }
        );
        assert_eq!(snap[1].0, "other");
        assert_eq!(snap[1].1.sequence.lost, 104);
    }

    #[test]
    fn text_has_every_family_with_labels() {
        let w = Arc::new(WorkerCounters::new(0));
        bump(&w.datagrams, 3);
        w.records[Protocol::Ipfix.index()].store(9, std::sync::atomic::Ordering::Relaxed);
        w.errors[ErrorReason::TemplateMissing.index()]
            .store(2, std::sync::atomic::Ordering::Relaxed);
        let m = Arc::new(CollectorMetrics::new(vec![w], 5));
        let held = live(3);
        m.exporters
            .lock()
            .unwrap()
            .add(exporter(4, 2055), Arc::clone(&held));
        let text = render(&m.registry());
        assert!(!text.contains("collector_xdp_frames"), "{text}");
        for line in [
            "collector_datagrams_received_total{worker=\"0\"} 3",
            "collector_records_decoded_total{worker=\"0\",protocol=\"IPFIX\"} 9",
            "collector_decode_errors_total{reason=\"template_missing\"} 2",
            "collector_exporter_datagrams_total{exporter=\"192.0.2.4\"} 3",
            "collector_exporter_source_port_changes_total{exporter=\"192.0.2.4\"} 0",
            "collector_exporter_datagrams_total{exporter=\"other\"} 0",
            "collector_exporters 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn decoder_losses_and_sflow_counts_are_exported() {
        let w = Arc::new(WorkerCounters::new(0));
        let stats = crate::decode::DecodeStats {
            sequence_spaces_refused: 1,
            sequence_spaces_forgotten: 2,
            sampling_rates_refused: 3,
            init_times_refused: 4,
            ..Default::default()
        };
        w.publish_decode_stats(&stats);
        w.publish_sflow_stats(&crate::decode::sflow::SflowStats {
            samples_by_type: [5, 4, 0, 0],
            unparsed_headers: 7,
            agent_drops: 8,
            untracked: 9,
            ..Default::default()
        });
        w.publish_sflow_sample_sequences(&crate::decode::sequence::SequenceCounts {
            lost: 10,
            late: 11,
            restarts: 12,
            ..Default::default()
        });
        let m = Arc::new(CollectorMetrics::new(vec![w], 5));
        let text = render(&m.registry());
        for line in [
            "collector_sequence_spaces_refused_total{worker=\"0\"} 1",
            "collector_sequence_spaces_forgotten_total{worker=\"0\"} 2",
            "collector_sampling_rates_refused_total{worker=\"0\"} 3",
            "collector_init_times_refused_total{worker=\"0\"} 4",
            "collector_sflow_samples_total{worker=\"0\",format=\"flow\"} 5",
            "collector_sflow_samples_total{worker=\"0\",format=\"counter\"} 4",
            "collector_sflow_skipped_total{worker=\"0\",what=\"header\"} 7",
            "collector_sflow_agent_drops_total{worker=\"0\"} 8",
            "collector_sflow_untracked_total{worker=\"0\"} 9",
            "collector_sflow_sample_sequence_lost{worker=\"0\"} 10",
            "collector_sflow_sample_sequence_total{worker=\"0\",what=\"late\"} 11",
            "collector_sflow_sample_sequence_total{worker=\"0\",what=\"restarts\"} 12",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// The sample lines of every counter family in `text`: (name and labels, value).
    fn counter_samples(text: &str) -> HashMap<String, f64> {
        let counters: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .map(|name| format!("{name}_total"))
            .collect();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(key, _)| {
                let name = key.split('{').next().unwrap_or_default();
                counters.iter().any(|c| c == name)
            })
            .map(|(key, value)| (key.to_string(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn sflow_sample_loss_is_a_gauge_and_every_counter_stays_monotonic() {
        use crate::decode::sflow::datagram::HeaderRepr;
        use crate::decode::sflow::emit::{DatagramRepr, FlowSampleRepr, SampleRepr};
        use crate::decode::sflow::samples::{Interface, SourceId};
        use crate::decode::{Collected, DatagramMeta, Decoder};
        use crate::pipeline::DatagramDecoder;
        let w = Arc::new(WorkerCounters::new(0));
        let m = Arc::new(CollectorMetrics::new(vec![Arc::clone(&w)], 5));
        let registry = m.registry();
        let mut dec = Decoder::new();
        // sFlow datagram `d` with its 2 samples, numbered 2d - 1 and 2d, then the worker's report.
        let mut send = |d: u32| {
            let samples = (2 * d - 1..=2 * d)
                .map(|sequence| {
                    SampleRepr::Flow(FlowSampleRepr {
                        expanded: false,
                        sequence,
                        source: SourceId { kind: 0, index: 3 },
                        sampling_rate: 100,
                        sample_pool: sequence * 100,
                        drops: 0,
                        input: Interface::Index(1),
                        output: Interface::Index(2),
                        records: Vec::new(),
                    })
                })
                .collect();
            let bytes = DatagramRepr {
                header: HeaderRepr {
                    agent: IpAddr::from([192, 0, 2, 7]),
                    sub_agent_id: 0,
                    sequence: d,
                    uptime_ms: 60_000 + d,
                },
                samples,
            }
            .to_bytes();
            let meta = DatagramMeta {
                exporter: exporter(7, 6343),
                received_ns: 1,
            };
            let (_, result) = dec.decode_datagram(&meta, &bytes, &mut Collected::default());
            assert_eq!(result, Ok(()));
            w.publish_sflow_sample_sequences(&dec.sflow_sample_sequences());
        };
        for d in [1, 2, 3, 5, 6, 7, 8] {
            send(d);
        }
        let before = render(&registry);
        // Datagram 4 arrives late: its 2 samples are no longer lost.
        send(4);
        let after = render(&registry);
        for (text, lost) in [(&before, 2), (&after, 0)] {
            for line in [
                "# TYPE collector_sflow_sample_sequence_lost gauge".to_string(),
                format!("collector_sflow_sample_sequence_lost{{worker=\"0\"}} {lost}"),
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "missing {line:?} in\n{text}"
                );
            }
        }
        for line in [
            "collector_sflow_sample_sequence_total{worker=\"0\",what=\"late\"} 1",
            "collector_sflow_sample_sequence_total{worker=\"0\",what=\"restarts\"} 0",
        ] {
            assert!(
                after.lines().any(|l| l == line),
                "missing {line:?} in\n{after}"
            );
        }
        // No counter of any family went down.
        let (then, now) = (counter_samples(&before), counter_samples(&after));
        assert!(
            then.contains_key("collector_sflow_sample_sequence_total{worker=\"0\",what=\"late\"}")
        );
        for (key, value) in &then {
            let later = now.get(key).copied().unwrap_or_default();
            assert!(
                later >= *value,
                "counter {key} went from {value} to {later}"
            );
        }
    }

    #[test]
    fn xdp_mode_adds_program_queue_cpu_and_slow_path_families() {
        let w = Arc::new(WorkerCounters::new(0));
        let queue = Arc::new(XskQueueCounters {
            queue: 3,
            worker: 0,
            zero_copy: true,
            ..Default::default()
        });
        bump(&queue.datagrams, 11);
        bump(&queue.rx_dropped, 2);
        bump(&queue.fill_ring_empty, 5);
        let cpu = Arc::new(PerfCpuCounters {
            cpu: 1,
            worker: 0,
            ..Default::default()
        });
        bump(&cpu.lost_samples, 4);
        let slow = Arc::new(AtomicU64::new(7));
        let xdp = XdpMetrics {
            program: Box::new(|| {
                let mut c = SteerCounters::default();
                c.set(Counter::Seen, 20);
                c.set(Counter::Redirected, 13);
                Some(c)
            }),
            queues: vec![queue],
            cpus: vec![cpu],
            slow_path: vec![slow],
        };
        let m = Arc::new(CollectorMetrics::new(vec![w], 5).with_xdp(Arc::new(xdp)));
        let text = render(&m.registry());
        for line in [
            "collector_xdp_frames_total{branch=\"seen\"} 20",
            "collector_xdp_frames_total{branch=\"redirected\"} 13",
            "collector_xdp_frames_total{branch=\"drop_mode_dropped\"} 0",
            "collector_slow_path_datagrams_total{worker=\"0\"} 7",
            "collector_xsk_datagrams_total{queue=\"3\",worker=\"0\"} 11",
            "collector_xsk_rx_dropped_total{queue=\"3\",worker=\"0\"} 2",
            "collector_xsk_fill_ring_empty_total{queue=\"3\",worker=\"0\"} 5",
            "collector_xsk_zero_copy{queue=\"3\"} 1",
            "collector_perf_lost_samples_total{cpu=\"1\",worker=\"0\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
