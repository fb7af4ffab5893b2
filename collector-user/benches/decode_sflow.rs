//! sFlow decode throughput on in-memory OVS-like datagrams (no I/O): flow samples per second on one
//! core, with 128-byte raw headers, tunnel and VNI records, as `OvsExporter` emits them.
//!
//! Run: `cargo bench -p collector-user --bench decode_sflow` (`-- --seconds S` to change the duration).
//! Instructions per sample are measured with callgrind on `examples/sflow_loop.rs` (see its docs).

use collector::decode::sflow::SflowDecoder;
use collector::decode::sflow::emit::OvsExporter;
use collector::decode::{DatagramMeta, RecordSink};
use collector::record::{CounterRecord, FlowRecord};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Counts records and folds a field of each, so the decoder's work cannot be optimised away.
#[derive(Default)]
struct CountingSink {
    flows: u64,
    counters: u64,
    fold: u64,
}

impl RecordSink for CountingSink {
    fn flow(&mut self, record: &FlowRecord) {
        self.flows += 1;
        self.fold = self
            .fold
            .wrapping_add(u64::from(record.src_port) ^ record.bytes);
    }
    fn counters(&mut self, record: &CounterRecord) {
        self.counters += 1;
        self.fold = self.fold.wrapping_add(u64::from(record.if_index));
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // 16 nodes × 64 datagrams: the decoder sees interleaved agents like a central collector.
    let mut datagrams = Vec::new();
    let mut exporters: Vec<_> = (1..=16u8)
        .map(|n| OvsExporter::new(Ipv4Addr::new(10, 0, 0, n), u64::from(n)))
        .collect();
    let mut samples_per_round = 0u64;
    for _ in 0..64 {
        for exporter in &mut exporters {
            let mut buf = Vec::new();
            samples_per_round += exporter.flow_datagram(&mut buf) as u64;
            datagrams.push(buf);
        }
    }
    let bytes: usize = datagrams.iter().map(Vec::len).sum();
    let meta = DatagramMeta {
        exporter: SocketAddr::from(([10, 0, 0, 1], 6343)),
        received_ns: 1,
    };
    let mut decoder = SflowDecoder::new();
    let mut sink = CountingSink::default();
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < deadline {
        for d in &datagrams {
            let _ = black_box(decoder.decode(&meta, black_box(d), &mut sink));
        }
        rounds += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let samples = samples_per_round * rounds;
    assert_eq!(sink.flows, samples, "every sample decoded");
    println!(
        "decode_sflow: {} datagrams ({} samples, {} bytes) × {rounds} rounds in {elapsed:.2} s",
        datagrams.len(),
        samples_per_round,
        bytes
    );
    println!(
        "decode_sflow: {:.2} M samples/s, {:.1} ns/sample, {:.2} M datagrams/s, {:.2} Gbit/s of sFlow (fold {})",
        samples as f64 / elapsed / 1e6,
        elapsed * 1e9 / samples as f64,
        (datagrams.len() as u64 * rounds) as f64 / elapsed / 1e6,
        (bytes as u64 * rounds * 8) as f64 / elapsed / 1e9,
        black_box(sink.fold)
    );
}
