//! Decode throughput (records/s on one core) for NetFlow v5, NetFlow v9 and IPFIX with the OVS
//! templates, on in-memory datagrams; the measured heap cost of cached OVS templates; and the
//! slowest datagram while 605,000 of them are learned.
//!
//! `cargo bench -p collector-user --bench decode_netflow [-- SECONDS]` (default 1 s per protocol).
//! Instructions per record come from `examples/decode_loop.rs` under callgrind.

// Not every helper is used by every bench.
#[allow(dead_code)]
mod common;

use collector::decode::{DatagramMeta, Decoder};
use common::{CountingSink, Sequencer, ovs_template_message, primed_decoder};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes (requested sizes) to measure the template cache.
struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn throughput(protocol: &str, budget: Duration) {
    let (prime, mut pool) = common::loop_datagrams(protocol);
    let mut dec = primed_decoder(&prime, 1);
    let meta = common::meta();
    // The pool is cycled: its datagrams are renumbered as they go, so the sequence numbers run
    // on as a live exporter's do instead of jumping back once per pass (which would time the
    // decoder's reorder path for one datagram in `POOL`).
    let mut sequencer = Sequencer::new(protocol, 1);
    let mut sink = CountingSink::default();
    // Warm up, then run whole passes over the pool until the budget is spent.
    for d in &mut pool {
        sequencer.renumber(0, d);
        dec.decode(&meta, d, &mut sink).expect("decodes");
    }
    let mut sink = CountingSink::default();
    let start = Instant::now();
    let mut datagrams = 0u64;
    while start.elapsed() < budget {
        for d in &mut pool {
            sequencer.renumber(0, d);
            dec.decode(&meta, d, &mut sink).expect("decodes");
        }
        datagrams += pool.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let anomalies: u64 = dec
        .sequence_counts()
        .map(|(_, n)| n.lost + n.late + n.restarts)
        .sum();
    assert_eq!(
        anomalies, 0,
        "{protocol}: the datagrams' sequence numbers run on"
    );
    println!(
        "{protocol:>6}: {:>12.0} records/s  {:>10.0} datagrams/s  ({} records)",
        sink.flows as f64 / secs,
        datagrams as f64 / secs,
        sink.flows,
    );
}

/// Heap bytes per cached template: 600 exporters × the 120 OVS data templates (+ 1 options
/// template each), measured with the counting allocator.
fn template_memory() {
    let message = ovs_template_message();
    let exporters = 600u32;
    let mut dec = Decoder::new();
    let mut sink = CountingSink::default();
    // Warm the decoder's own scratch buffers first so they are not counted.
    let warm = DatagramMeta {
        exporter: "198.51.100.1:4739".parse().expect("address"),
        received_ns: 0,
    };
    dec.decode(&warm, &message, &mut sink).expect("decodes");
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..exporters {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let meta = DatagramMeta {
            exporter: std::net::SocketAddr::new(ip.into(), 4739),
            received_ns: 0,
        };
        dec.decode(&meta, &message, &mut sink).expect("decodes");
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let templates = u64::from(exporters) * 121;
    println!(
        "template cache: {templates} templates, {bytes} heap bytes measured = {:.1} B/template \
         (cache accounting: {:.1} B/template); 600,000 would take {:.1} MiB",
        bytes as f64 / templates as f64,
        dec.stats.template_cache_bytes as f64 / dec.stats.template_cache_templates as f64,
        bytes as f64 / templates as f64 * 600_000.0 / (1 << 20) as f64
    );
}

/// The process's resident set (VmRSS), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// 5,000 OVS nodes' templates (605,000) arriving at one decoder: the slowest datagram (a growing
/// template table moves its entries when it outgrows its buckets, and the worker waits), and the
/// memory they take at that scale, live heap and resident set.
fn template_learning() {
    let message = ovs_template_message();
    let mut dec = Decoder::new();
    let mut sink = CountingSink::default();
    let mut times = Vec::with_capacity(5_000);
    let (live_before, rss_before) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    for i in 0..5_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let meta = DatagramMeta {
            exporter: std::net::SocketAddr::new(ip.into(), 4739),
            received_ns: 0,
        };
        let start = Instant::now();
        dec.decode(&meta, &message, &mut sink).expect("decodes");
        times.push(start.elapsed());
    }
    let live = (LIVE.load(Ordering::Relaxed) - live_before) as f64;
    let rss = rss_bytes().saturating_sub(rss_before) as f64;
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let worst = times.last().copied().unwrap_or_default();
    let templates = dec.stats.template_cache_templates;
    println!(
        "template learning: {templates} templates from 5,000 exporters, one 121-template datagram \
         each: median {median:.1?}, slowest {worst:.1?}; live heap {:.1} B/template, resident \
         set {:.1} B/template",
        live / templates as f64,
        rss / templates as f64,
    );
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    for protocol in ["v5", "v9", "ipfix", "ipfix-single"] {
        throughput(protocol, budget);
    }
    template_memory();
    template_learning();
}
