//! Decode N in-memory OVS-like sFlow datagrams once, for instruction counting with callgrind.
//!
//! ```text
//! cargo build --release -p collector-user --example sflow_loop
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/sflow_loop --datagrams 2000
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/sflow_loop --datagrams 4000
//! ```
//! Instructions per flow sample = (Ir(2N) − Ir(N)) / (samples(2N) − samples(N)); only `decode_all`
//! (the decoder and a counting sink) is collected, not building the datagrams.

use collector::decode::sflow::SflowDecoder;
use collector::decode::sflow::emit::OvsExporter;
use collector::decode::{DatagramMeta, RecordSink};
use collector::record::{CounterRecord, FlowRecord};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

#[derive(Default)]
struct CountingSink {
    records: u64,
    fold: u64,
}

impl RecordSink for CountingSink {
    fn flow(&mut self, record: &FlowRecord) {
        self.records += 1;
        self.fold = self
            .fold
            .wrapping_add(u64::from(record.src_port) ^ record.bytes);
    }
    fn counters(&mut self, record: &CounterRecord) {
        self.records += 1;
        self.fold = self.fold.wrapping_add(u64::from(record.if_index));
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

fn main() {
    let n: usize = std::env::args()
        .skip_while(|a| a != "--datagrams")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
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
    let mut decoder = SflowDecoder::new();
    let mut sink = CountingSink::default();
    let errors = decode_all(&mut decoder, &datagrams, &mut sink);
    println!(
        "datagrams={n} samples={samples} records={} errors={errors} fold={}",
        sink.records,
        black_box(sink.fold)
    );
}
