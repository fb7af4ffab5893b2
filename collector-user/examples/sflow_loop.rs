//! Decode N in-memory OVS-like sFlow datagrams (16 agents interleaved), for instruction counting
//! with callgrind and for a samples/s figure.
//!
//! One command gives the instruction figure (it re-runs itself under valgrind for N and 2N
//! datagrams, collecting only `decode_all` — the decoder and a counting sink, not building the
//! datagrams — and prints Ir(2N) − Ir(N) over samples(2N) − samples(N)):
//! ```text
//! cargo run --release -p collector-user --example sflow_loop -- --callgrind [--datagrams 2000]
//! ```
//! which is the same as
//! ```text
//! cargo build --release -p collector-user --example sflow_loop
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/sflow_loop --datagrams 2000
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/sflow_loop --datagrams 4000
//! ```
//! Samples per second on one core (fresh decoder per round, best of the rounds):
//! ```text
//! cargo run --release -p collector-user --example sflow_loop -- --time [--datagrams 2000] [--rounds 50]
//! ```

#[allow(dead_code)]
mod callgrind;

use collector::decode::sflow::SflowDecoder;
use collector::decode::sflow::emit::OvsExporter;
use collector::decode::{DatagramMeta, RecordSink};
use collector::record::{CounterRecord, FlowRecord};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

#[derive(Default)]
struct CountingSink {
    records: u64,
}

impl RecordSink for CountingSink {
    // Every record escapes through `black_box`: the decoder's stores all happen, as they would
    // into a ring, and the sink adds nothing but a count.
    fn flow(&mut self, record: &FlowRecord) {
        black_box(record);
        self.records += 1;
    }
    fn counters(&mut self, record: &CounterRecord) {
        black_box(record);
        self.records += 1;
    }
}

#[inline(never)]
fn decode_all(decoder: &mut SflowDecoder, datagrams: &[Vec<u8>], sink: &mut CountingSink) -> u64 {
    let meta = DatagramMeta {
        exporter: SocketAddr::from(([10, 0, 0, 1], 6343)),
        received_ns: 1,
    };
    let mut errors = 0;
    for d in datagrams {
        if decoder.decode(&meta, black_box(d), sink).is_err() {
            errors += 1;
        }
    }
    errors
}

/// `n` flow datagrams from 16 OVS-like agents, interleaved; and the samples they carry.
fn datagrams(n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut exporters: Vec<_> = (1..=16u8)
        .map(|i| OvsExporter::new(Ipv4Addr::new(10, 0, 0, i), u64::from(i)))
        .collect();
    let mut datagrams = Vec::with_capacity(n);
    let mut samples = 0;
    for i in 0..n {
        let mut buf = Vec::new();
        if let Some(exporter) = exporters.get_mut(i % 16) {
            samples += exporter.flow_datagram(&mut buf);
        }
        datagrams.push(buf);
    }
    (datagrams, samples)
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(
        "--datagrams",
        if args.iter().any(|a| a == "--time") {
            20_000
        } else {
            2000
        },
    );
    if args.iter().any(|a| a == "--callgrind") {
        let units = callgrind::Units {
            size: "datagrams",
            unit: "samples",
        };
        let args = |n: usize| vec!["--datagrams".to_string(), n.to_string()];
        callgrind::differential(&["--toggle-collect=*decode_all*"], args, &units, n);
        return;
    }
    let (datagrams, samples) = datagrams(n);
    if args.iter().any(|a| a == "--time") {
        let rounds: usize = arg("--rounds", 50);
        let mut best = f64::INFINITY;
        let mut sink = CountingSink::default();
        for _ in 0..rounds {
            let mut decoder = SflowDecoder::new();
            let start = Instant::now();
            black_box(decode_all(&mut decoder, &datagrams, &mut sink));
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "datagrams={n} samples={samples} rounds={rounds} best={:.3}ms samples/s={:.0}",
            best * 1e3,
            samples as f64 / best,
        );
        return;
    }
    let mut decoder = SflowDecoder::new();
    let mut sink = CountingSink::default();
    let errors = decode_all(&mut decoder, &datagrams, &mut sink);
    println!(
        "datagrams={n} samples={samples} records={} errors={errors}",
        sink.records,
    );
}
