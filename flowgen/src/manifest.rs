//! The manifest: a JSON account of exactly what a run sent, written by `flowgen` and read by
//! `flowgen verify`.
//!
//! With the seed and the profile parameters it regenerates every record sent (see
//! [`crate::exporter::replay`]), so it stays small whatever the run's size: per exporter only counts,
//! sequence ranges and the events that changed the stream (restarts, template and counter bursts,
//! intentional gaps, datagrams the kernel refused).

use crate::model::Profile;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Version of the manifest layout; `verify` refuses others.
pub const MANIFEST_VERSION: u32 = 1;

/// What every exporter of a run shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub profile: Profile,
    pub seed: u64,
    /// Flow records per data datagram.
    pub records_per_datagram: u32,
    /// Model times are whole milliseconds before this instant (ns since the Unix epoch).
    pub time_base_ns: u64,
    /// Templates (and OVS exporter statistics) re-sent this often (seconds; v9 / IPFIX).
    pub template_interval_secs: f64,
    /// Counter samples sent this often (seconds; sFlow).
    pub counter_interval_secs: f64,
    /// sFlow sampling rate (1 in N); 0 for the unsampled protocols.
    pub sampling_rate: u32,
    /// Every N-th data datagram's sequence is skipped on purpose (0: never).
    pub gap_every: u64,
}

/// One event in an exporter's stream, at data datagram index `at` (before that datagram).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Exporter restart: sequence numbers and uptime start again; templates follow.
    Restart { at: u64 },
    /// Template datagrams sent (v9 / IPFIX; IPFIX OVS adds an exporter-statistics record).
    Templates { at: u64, datagrams: u32 },
    /// Counter-sample datagrams sent (sFlow).
    Counters { at: u64, datagrams: u32 },
    /// Sequence numbers `sequence ..` (`skipped` of them) skipped on purpose: no datagram sent.
    Gap {
        at: u64,
        sequence: u32,
        skipped: u32,
    },
    /// Data datagram `at` was built but the kernel refused to send it (its records were not sent).
    Unsent { at: u64 },
}

/// The sequence numbers one exporter used between two restarts: `first` ..< `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceRange {
    pub first: u32,
    pub next: u32,
}

/// One emulated node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExporterLog {
    pub index: u32,
    /// Source address and port of its datagrams.
    pub source: Option<SocketAddr>,
    /// Address inside the datagrams that names the exporter (sFlow agent); the source address otherwise.
    pub agent: Option<IpAddr>,
    /// Every datagram sent: data, template and counter datagrams.
    pub datagrams: u64,
    /// Data datagrams built (sent or refused; intentional gaps are not datagrams).
    pub data_datagrams: u64,
    pub template_datagrams: u64,
    pub counter_datagrams: u64,
    /// Flow records in data datagrams actually sent.
    pub records: u64,
    /// Of `records`, those without an IP network layer (OVS IPFIX ARP flows): collectors that
    /// keep IP flows only (pmacct) leave them out.
    #[serde(default)]
    pub non_ip_records: u64,
    /// Bytes of every datagram sent (UDP payload).
    pub bytes: u64,
    /// Datagrams built but refused by the kernel (not in `datagrams`; data ones are `Unsent` events).
    pub refused_datagrams: u64,
    /// The OS error of the first datagram the kernel refused (`None`: none was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    pub sequence_ranges: Vec<SequenceRange>,
    pub events: Vec<Event>,
}

impl ExporterLog {
    pub fn restarts(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Restart { .. }))
            .count()
    }

    pub fn gaps(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.events.iter().filter_map(|e| match e {
            Event::Gap {
                at,
                sequence,
                skipped,
            } => Some((*at, *sequence, *skipped)),
            _ => None,
        })
    }

    pub fn unsent(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Unsent { .. }))
            .count()
    }
}

/// Totals over every exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub exporters: u64,
    pub datagrams: u64,
    pub data_datagrams: u64,
    pub records: u64,
    /// Of `records`, those without an IP network layer.
    #[serde(default)]
    pub non_ip_records: u64,
    pub bytes: u64,
    /// Data datagrams the kernel refused (their records are not in `records`).
    pub unsent: u64,
    /// Every datagram the kernel refused: data, template and counter datagrams.
    #[serde(default)]
    pub refused_datagrams: u64,
    pub gaps: u64,
    pub restarts: u64,
}

/// The whole manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Where the datagrams went.
    pub destination: SocketAddr,
    pub params: Params,
    pub started_unix_ns: u64,
    pub elapsed_secs: f64,
    /// CPU seconds (user + system, every thread) flowgen used for the run: with `elapsed_secs`
    /// and the cores it had, whether the sender was the limit.
    #[serde(default)]
    pub cpu_secs: f64,
    pub totals: Totals,
    /// Why the run stopped before its duration or count: a refusal retrying cannot cure (the
    /// exporter, its source and destination, and the OS error). `None`: it ran its course.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub exporters: Vec<ExporterLog>,
}

impl Manifest {
    pub fn new(destination: SocketAddr, params: Params, exporters: Vec<ExporterLog>) -> Self {
        let mut m = Manifest {
            version: MANIFEST_VERSION,
            destination,
            started_unix_ns: params.time_base_ns,
            params,
            elapsed_secs: 0.0,
            cpu_secs: 0.0,
            totals: Totals::default(),
            stopped: None,
            exporters,
        };
        m.exporters.sort_by_key(|e| e.index);
        m.totals = m.compute_totals();
        m
    }

    pub fn compute_totals(&self) -> Totals {
        let mut t = Totals::default();
        for e in &self.exporters {
            t.exporters += 1;
            t.datagrams += e.datagrams;
            t.data_datagrams += e.data_datagrams;
            t.records += e.records;
            t.non_ip_records += e.non_ip_records;
            t.bytes += e.bytes;
            t.refused_datagrams += e.refused_datagrams;
            t.unsent += e.unsent() as u64;
            t.gaps += e.gaps().count() as u64;
            t.restarts += e.restarts() as u64;
        }
        t
    }

    /// The first refusal of the run, naming its exporter: `None` when nothing was refused.
    pub fn first_refusal(&self) -> Option<String> {
        self.exporters.iter().find_map(|e| {
            e.refusal.as_ref().map(|r| {
                let source = e.source.map_or_else(|| "?".to_string(), |s| s.to_string());
                format!(
                    "exporter {} ({source} -> {}): {r}",
                    e.index, self.destination
                )
            })
        })
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        use anyhow::Context as _;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", path.display()))?;
        anyhow::ensure!(
            m.version == MANIFEST_VERSION,
            "manifest version {} (this flowgen reads {MANIFEST_VERSION})",
            m.version
        );
        Ok(m)
    }
}
