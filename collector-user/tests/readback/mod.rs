//! Reading the collector's rings back in the end-to-end tests: every record, the way `collector
//! read` does, and records as sorted, comparable bytes with what only the receiving side decides
//! cleared. Shared by `collector-user`'s UDP tests and the `tests` crate's XDP tests
//! (`#[path]`-included there).

use collector::cli::read::{Format, Kind, ReadArgs, ReadFrom, ReadOutput, read_rings};
use collector::decode::{Collected, RecordSink};
use collector::record::{CounterRecord, FlowRecord, RingRecord};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Read every record in the rings the way `collector read` does.
pub fn read_back(dir: &Path) -> Collected {
    struct Out(Collected);
    impl RecordSink for Out {
        fn flow(&mut self, r: &FlowRecord) {
            self.0.flow(r);
        }
        fn counters(&mut self, r: &CounterRecord) {
            self.0.counters(r);
        }
    }
    impl ReadOutput for Out {
        fn flush_output(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Out(Collected::default());
    let stop = AtomicBool::new(false);
    for kind in [Kind::Flows, Kind::Counters] {
        let args = ReadArgs {
            ring_dir: dir.to_owned(),
            follow: false,
            from: ReadFrom::Oldest,
            kind,
            format: Format::Json,
        };
        let summary = match kind {
            Kind::Flows => read_rings::<FlowRecord>(&args, &mut out, &stop, |_| {}),
            Kind::Counters => read_rings::<CounterRecord>(&args, &mut out, &stop, |_| {}),
        }
        .unwrap();
        assert_eq!(summary.stats.lost, 0);
        assert_eq!(summary.stats.corrupt, 0);
    }
    out.0
}

/// Records as comparable bytes, sorted, with what only the receiving side decides cleared: the
/// ring sequence and the receive time (and flow times that are the receive time, as in sFlow).
pub fn flow_bytes(records: &[FlowRecord]) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = records
        .iter()
        .map(|r| {
            let mut r = *r;
            let t = r.time_received_ns;
            r.set_ring_seq(0);
            r.time_received_ns = 0;
            if r.time_flow_start_ns == t {
                r.time_flow_start_ns = 0;
            }
            if r.time_flow_end_ns == t {
                r.time_flow_end_ns = 0;
            }
            bytemuck::bytes_of(&r).to_vec()
        })
        .collect();
    v.sort();
    v
}

/// Counter records as comparable bytes, sorted, ring sequence and receive time cleared.
pub fn counter_bytes(records: &[CounterRecord]) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = records
        .iter()
        .map(|r| {
            let mut r = *r;
            r.set_ring_seq(0);
            r.time_received_ns = 0;
            bytemuck::bytes_of(&r).to_vec()
        })
        .collect();
    v.sort();
    v
}
