//! The worker loop over in-memory datagrams: `Worker::step` with a source that hands out batches
//! of pre-built datagrams and a sink that counts. What a datagram costs a worker besides the
//! kernel's receive path — decoding, the exporter table, counters, the batch commit — next to
//! what `decode_loop` measures for the decoder alone.
//!
//! ```text
//! cargo run --release -p collector-user --example worker_loop -- --protocol ipfix-single --callgrind [--exporters E]
//! ```
//! prints (Ir(2N) − Ir(N)) / (records(2N) − records(N)) for N and 2N datagrams (default N = 1000),
//! counting the worker steps only (`step_all`), as `decode_loop --callgrind` does; `--protocol`
//! and `--exporters` are decode_loop's, and so are the sequence numbers. The source renumbers
//! each datagram as it hands it out: the renumbering itself is left out of the count, its call
//! (a few instructions per datagram) is not.

mod callgrind;
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use callgrind::LoopArgs;
use collector::decode::{DatagramMeta, RecordSink};
use collector::pipeline::{BatchSink, Source, SourceLosses, Worker, WorkerCounters};
use collector::record::{CounterRecord, FlowRecord};
use common::{CountingSink, Sequencer, exporter_meta, loop_datagrams, primed_decoder};
use std::sync::Arc;
use std::time::Duration;

/// Datagrams per `recv_batch`, as a UDP source's `recvmmsg` batch.
const BATCH: usize = 64;

/// Hands out `remaining` datagrams of `pool` in batches, exporter i mod E for datagram i.
struct PoolSource {
    pool: Vec<Vec<u8>>,
    metas: Vec<DatagramMeta>,
    sequencer: Sequencer,
    /// The next datagram of the pool and the exporter it comes from (wrapping counters: a
    /// division per datagram would be counted as the worker's).
    next_datagram: usize,
    next_exporter: usize,
    remaining: usize,
}

impl Source for PoolSource {
    fn recv_batch(
        &mut self,
        _timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> std::io::Result<usize> {
        let n = BATCH.min(self.remaining);
        let (datagrams, exporters) = (self.pool.len(), self.metas.len());
        let wrap = |i: usize, len: usize| if i + 1 >= len { 0 } else { i + 1 };
        for _ in 0..n {
            let exporter = self.next_exporter;
            if let (Some(d), Some(meta)) = (
                self.pool.get_mut(self.next_datagram),
                self.metas.get(exporter),
            ) {
                self.sequencer.renumber(exporter, d);
                deliver(meta, d);
            }
            self.next_datagram = wrap(self.next_datagram, datagrams);
            self.next_exporter = wrap(exporter, exporters);
        }
        self.remaining -= n;
        Ok(n)
    }

    fn losses(&self) -> SourceLosses {
        SourceLosses::default()
    }
}

/// The benchmark's counting sink as a worker's batch sink (commit publishes nothing).
struct CountingBatchSink(CountingSink);

impl RecordSink for CountingBatchSink {
    fn flow(&mut self, record: &FlowRecord) {
        self.0.flow(record);
    }
    fn counters(&mut self, record: &CounterRecord) {
        self.0.counters(record);
    }
}

impl BatchSink for CountingBatchSink {
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let Some(LoopArgs {
        protocol,
        datagrams: n,
        exporters,
        ..
    }) = LoopArgs::or_measure("ipfix-single", &["*step_all*", common::RENUMBER_SYMBOL])
    else {
        return;
    };
    let (prime, pool) = loop_datagrams(&protocol);
    let source = PoolSource {
        pool,
        metas: (0..exporters).map(exporter_meta).collect(),
        sequencer: Sequencer::new(&protocol, exporters),
        next_datagram: 0,
        next_exporter: 0,
        remaining: n,
    };
    // Nobody reads the events: new-exporter announcements are counted as dropped.
    let (events, _unread) = crossbeam_channel::bounded(1024);
    let mut worker = Worker::new(
        0,
        source,
        primed_decoder(&prime, exporters),
        CountingBatchSink(CountingSink::default()),
        Arc::new(WorkerCounters::new(0)),
        events,
    );
    let received = step_all(&mut worker);
    let records = worker.counters().records_total();
    println!("datagrams={received} records={records}");
}

/// The measured loop (`--callgrind` counts this function only): worker steps until the source
/// has nothing left. Returns the datagrams received.
#[inline(never)]
fn step_all<D, K>(worker: &mut Worker<PoolSource, D, K>) -> usize
where
    D: collector::pipeline::DatagramDecoder,
    K: BatchSink,
{
    let mut received = 0;
    loop {
        match worker.step(Duration::ZERO) {
            Ok(0) => return received,
            Ok(got) => received += got,
            Err(e) => {
                eprintln!("worker step: {e}");
                std::process::exit(1);
            }
        }
    }
}
