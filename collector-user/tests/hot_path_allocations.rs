//! The hot path does not allocate. Once a decoder has met its exporters, decoding their steady
//! traffic makes no heap allocation: data datagrams of every protocol, templates resent unchanged
//! (exporters refresh them, some in every datagram), datagrams out of order, and the once-a-minute
//! sweeps that come with the clock moving on. Nor does writing the records to a ring file.
//!
//! A counting global allocator counts the allocations this test's thread makes while a measured
//! closure runs (the test harness's other threads are not counted). When one fails,
//! `ALLOCATION_BACKTRACE=1 cargo test -p collector-user --test hot_path_allocations NAME` prints
//! where the first allocation came from.

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

use collector::decode::sflow::emit::OvsExporter;
use collector::decode::{DatagramMeta, Decoder, ErrorReason};
use collector::record::FlowRecord;
use collector::ring::{RingConfig, RingSize, RingWriter};
use common::{CountingSink, Sequencer, exporter_meta, loop_datagrams, primed_decoder};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;

struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        if std::env::var_os("ALLOCATION_BACKTRACE").is_some() {
            // Where the first one came from (allocating freely now), then stop: an allocator
            // must not unwind.
            COUNTING.set(false);
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            std::process::abort();
        }
    }
}

// SAFETY: every call goes to the system allocator unchanged; the count touches only const-
// initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Allocations this thread made while `work` ran.
fn allocations(work: impl FnOnce()) -> u64 {
    ALLOCATIONS.set(0);
    COUNTING.set(true);
    work();
    COUNTING.set(false);
    ALLOCATIONS.get()
}

const EXPORTERS: u16 = 4;

/// Each exporter's datagrams of one pass over `pool`, in the order a worker would see them,
/// received `step_ns` apart from `start_ns` on.
fn pass(
    dec: &mut Decoder,
    pool: &mut [Vec<u8>],
    sequencer: Option<&mut Sequencer>,
    start_ns: u64,
    step_ns: u64,
) -> u64 {
    let mut sink = CountingSink::default();
    let mut sequencer = sequencer;
    let mut now = start_ns;
    for d in pool.iter_mut() {
        for e in 0..EXPORTERS {
            if let Some(s) = sequencer.as_deref_mut() {
                s.renumber(usize::from(e), d);
            }
            let meta = DatagramMeta {
                received_ns: now,
                ..exporter_meta(e)
            };
            // Errors are fine here (datagrams out of order may be judged late): the point is
            // what decoding them costs.
            let _ = dec.decode(&meta, d, &mut sink);
            now += step_ns;
        }
    }
    sink.flows
}

#[test]
fn steady_traffic_decodes_without_allocating() {
    for protocol in ["v5", "v9", "ipfix", "ipfix-single"] {
        let (prime, mut pool) = loop_datagrams(protocol);
        let mut dec = primed_decoder(&prime, EXPORTERS);
        let mut sequencer = Sequencer::new(protocol, EXPORTERS);
        let start = exporter_meta(0).received_ns;
        // The first pass meets each exporter's sequence spaces.
        assert!(pass(&mut dec, &mut pool, Some(&mut sequencer), start, 0) > 0);
        // Then two minutes of traffic, a datagram a millisecond: the sequence tables' and the
        // early data's sweeps run along the way.
        let mut flows = 0;
        let n = allocations(|| {
            let mut now = start;
            while now < start + 120_000_000_000 {
                flows += pass(&mut dec, &mut pool, Some(&mut sequencer), now, 1_000_000);
                now += pool.len() as u64 * u64::from(EXPORTERS) * 1_000_000;
            }
        });
        assert!(flows > 0, "{protocol}: no records");
        assert_eq!(n, 0, "{protocol}: {n} allocations decoding steady traffic");
    }
}

#[test]
fn templates_resent_unchanged_allocate_nothing() {
    for protocol in ["v9", "ipfix"] {
        let (prime, mut pool) = loop_datagrams(protocol);
        let mut dec = primed_decoder(&prime, EXPORTERS);
        let start = exporter_meta(0).received_ns;
        let mut templates = vec![prime];
        pass(&mut dec, &mut templates, None, start, 0);
        let learned = dec.stats.templates_learned;
        let n = allocations(|| {
            for _ in 0..10 {
                pass(&mut dec, &mut templates, None, start, 1_000);
                pass(&mut dec, &mut pool, None, start, 1_000);
            }
        });
        assert!(
            dec.stats.templates_learned > learned,
            "{protocol}: no template decoded"
        );
        assert_eq!(
            n, 0,
            "{protocol}: {n} allocations for templates resent unchanged"
        );
    }
}

#[test]
fn datagrams_out_of_order_decode_without_allocating() {
    for protocol in ["v5", "v9", "ipfix", "ipfix-single"] {
        let (prime, mut pool) = loop_datagrams(protocol);
        let mut dec = primed_decoder(&prime, EXPORTERS);
        let start = exporter_meta(0).received_ns;
        pool.reverse();
        pass(&mut dec, &mut pool, None, start, 0);
        pool.rotate_left(7);
        let n = allocations(|| {
            pass(&mut dec, &mut pool, None, start, 1_000);
        });
        assert_eq!(
            n, 0,
            "{protocol}: {n} allocations for datagrams out of order"
        );
    }
}

#[test]
fn data_waiting_for_a_template_ages_out_without_allocating() {
    // An exporter whose templates never come (the collector restarted; it resends them every
    // few minutes): its data sets are held until the buffer is full, then one ages out and one
    // more is held per datagram.
    let (_, mut pool) = loop_datagrams("ipfix");
    let mut dec = Decoder::new();
    let start = exporter_meta(0).received_ns;
    let mut sink = CountingSink::default();
    let mut now = start;
    let mut feed = |dec: &mut Decoder, seconds: u64| {
        for _ in 0..seconds * 10 {
            let Some(d) = pool.get_mut((now / 100_000_000) as usize % 64) else {
                return;
            };
            let meta = DatagramMeta {
                received_ns: now,
                ..exporter_meta(0)
            };
            let _ = dec.decode(&meta, d, &mut sink);
            now += 100_000_000;
        }
    };
    feed(&mut dec, 60);
    let dropped = |dec: &Decoder| dec.stats.errors[ErrorReason::EarlyDataDropped.index()];
    let before = dropped(&dec);
    let n = allocations(|| feed(&mut dec, 60));
    assert!(dropped(&dec) > before, "nothing aged out");
    assert_eq!(n, 0, "{n} allocations holding and ageing early data");
}

#[test]
fn sflow_decodes_without_allocating() {
    let mut agents: Vec<_> = (1..=EXPORTERS as u8)
        .map(|i| OvsExporter::new(Ipv4Addr::new(10, 0, 0, i), u64::from(i)))
        .collect();
    // A round: flow datagrams from every agent, then their counter datagrams.
    let mut round = || {
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        for _ in 0..20 {
            for agent in &mut agents {
                let mut buf = Vec::new();
                agent.flow_datagram(&mut buf);
                datagrams.push(buf);
            }
        }
        for agent in &mut agents {
            datagrams.extend(agent.counter_datagrams());
        }
        datagrams
    };
    let (first, next) = (round(), round());
    let mut dec = Decoder::new();
    let mut sink = CountingSink::default();
    let meta = exporter_meta(0);
    for d in &first {
        dec.decode(&meta, d, &mut sink).expect("sFlow decodes");
    }
    let flows = sink.flows;
    let n = allocations(|| {
        for d in &next {
            dec.decode(&meta, d, &mut sink).expect("sFlow decodes");
        }
    });
    assert!(sink.flows > flows);
    assert_eq!(n, 0, "{n} allocations decoding sFlow");
}

#[test]
fn ring_writes_without_allocating() {
    let dir = std::env::temp_dir().join(format!("collector-alloc-ring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = RingConfig {
        size: RingSize::Records(1024),
        ..RingConfig::default()
    };
    let mut ring = RingWriter::<FlowRecord>::open_in_dir(&dir, &config).unwrap();
    let record = FlowRecord {
        bytes: 1500,
        packets: 1,
        ..bytemuck::Zeroable::zeroed()
    };
    ring.push(&record);
    ring.commit();
    let n = allocations(|| {
        // Four laps of the ring.
        for i in 0..4096u64 {
            ring.push(&record);
            if i % 64 == 63 {
                ring.commit();
            }
        }
    });
    assert_eq!(ring.pushed(), 4097);
    drop(ring);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n, 0, "{n} allocations writing a ring");
}
