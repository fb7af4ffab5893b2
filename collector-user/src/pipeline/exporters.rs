//! The exporters one worker has seen: a bounded table from exporter socket address to its counters.
//!
//! The table is the worker's own (no lock). A new exporter costs one insert and one
//! [`Event::NewExporter`] carrying an `Arc` of its counters to the control plane; afterwards a
//! datagram costs one lookup and a few relaxed stores. The table holds at most `capacity` exporters;
//! datagrams of exporters beyond that are counted in
//! [`WorkerCounters::untracked_exporter_datagrams`]. Exporters idle for longer than the idle limit are
//! forgotten by [`ExporterTable::expire_idle`] (called from the worker's housekeeping, not per
//! datagram); the control plane notices the dropped `Arc` and folds their totals away.

use super::Event;
use super::counters::{ExporterCounters, WorkerCounters, bump};
use crate::decode::template::{FastMap, SessionKey};
use crossbeam_channel::Sender;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Exporters one worker tracks by default.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// An exporter silent for this long is forgotten (ns).
pub const IDLE_LIMIT_NS: u64 = 3600 * 1_000_000_000;

/// Exporter address → counters, for one worker.
#[derive(Debug)]
pub struct ExporterTable {
    worker: usize,
    capacity: usize,
    /// Hashed like the decoder's per-exporter tables (std's SipHash cost a datagram ~230
    /// instructions here), an IPv4 address as one word ([`SessionKey`]).
    exporters: FastMap<SessionKey, Arc<ExporterCounters>>,
    counters: Arc<WorkerCounters>,
    events: Sender<Event>,
}

impl ExporterTable {
    /// A table of at most `capacity` exporters for the worker with `counters`, announcing new
    /// exporters on `events`.
    pub fn new(capacity: usize, counters: Arc<WorkerCounters>, events: Sender<Event>) -> Self {
        ExporterTable {
            worker: counters.worker,
            capacity,
            exporters: FastMap::default(),
            counters,
            events,
        }
    }

    /// Count one datagram of `exporter`: `records` decoded, `failed` when decoding reported an error.
    #[inline]
    pub fn observe(
        &mut self,
        exporter: SocketAddr,
        records: u64,
        units: u64,
        failed: bool,
        received_ns: u64,
    ) {
        if let Some(counters) = self.exporters.get(&SessionKey(exporter)) {
            counters.observe(records, units, failed, received_ns);
            return;
        }
        if self.exporters.len() >= self.capacity {
            bump(&self.counters.untracked_exporter_datagrams, 1);
            return;
        }
        let counters = Arc::new(ExporterCounters::default());
        counters.observe(records, units, failed, received_ns);
        self.exporters
            .insert(SessionKey(exporter), Arc::clone(&counters));
        let event = Event::NewExporter {
            worker: self.worker,
            exporter,
            counters,
        };
        if self.events.try_send(event).is_err() {
            bump(&self.counters.events_dropped, 1);
        }
    }

    /// Forget exporters whose last datagram is older than `IDLE_LIMIT_NS` before `now_ns`.
    pub fn expire_idle(&mut self, now_ns: u64) -> usize {
        let before = self.exporters.len();
        self.exporters
            .retain(|_, c| now_ns.saturating_sub(c.last_seen_ns.load(Relaxed)) < IDLE_LIMIT_NS);
        before - self.exporters.len()
    }

    /// Number of exporters tracked.
    pub fn len(&self) -> usize {
        self.exporters.len()
    }

    /// True when no exporter is tracked.
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::counters::get;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn new_exporters_announced_then_counted_and_capacity_bounded() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let w = Arc::new(WorkerCounters::new(0));
        let mut t = ExporterTable::new(2, Arc::clone(&w), tx);
        t.observe(addr(1), 5, 5, false, 1);
        t.observe(addr(1), 5, 5, true, 2);
        t.observe(addr(2), 1, 1, false, 3);
        t.observe(addr(3), 1, 1, false, 4);
        assert_eq!(t.len(), 2);
        assert_eq!(get(&w.untracked_exporter_datagrams), 1);
        let events: Vec<_> = rx.try_iter().collect();
        assert_eq!(events.len(), 2);
        let Event::NewExporter {
            exporter, counters, ..
        } = &events[0]
        else {
            panic!("unexpected event {:?}", events[0]);
        };
        assert_eq!(*exporter, addr(1));
        assert_eq!(get(&counters.datagrams), 2);
        assert_eq!(get(&counters.records), 10);
        assert_eq!(get(&counters.errors), 1);
        assert_eq!(get(&counters.sequence_units), 10);
    }

    #[test]
    fn full_channel_counts_dropped_events() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let w = Arc::new(WorkerCounters::new(0));
        let mut t = ExporterTable::new(10, Arc::clone(&w), tx);
        t.observe(addr(1), 0, 0, false, 1);
        t.observe(addr(2), 0, 0, false, 1);
        assert_eq!(get(&w.events_dropped), 1);
    }

    #[test]
    fn idle_exporters_expire() {
        let (tx, _rx) = crossbeam_channel::bounded(8);
        let w = Arc::new(WorkerCounters::new(0));
        let mut t = ExporterTable::new(10, Arc::clone(&w), tx);
        t.observe(addr(1), 0, 0, false, 0);
        t.observe(addr(2), 0, 0, false, IDLE_LIMIT_NS);
        assert_eq!(t.expire_idle(IDLE_LIMIT_NS + 1), 1);
        assert_eq!(t.len(), 1);
    }
}
