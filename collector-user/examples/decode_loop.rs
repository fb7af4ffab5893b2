//! Decode N pre-built datagrams of one protocol in a loop and print `records=R` — the workload
//! measured under `valgrind --tool=callgrind` for instructions per record.
//!
//! `cargo run --release -p collector-user --example decode_loop -- --protocol v5|v9|ipfix|ipfix-single --datagrams N [--exporters E]`
//!
//! `ipfix` packs 12 records per message, `ipfix-single` one, as Open vSwitch does. With
//! `--exporters E` (default 1) datagram i comes from exporter i mod E, each with its own address
//! and templates, so per-exporter lookups are not always the same one. Each exporter's datagrams
//! carry consecutive sequence numbers (`common::Sequencer`), as a live exporter's do.
//!
//! One command gives the instruction figure: it re-runs itself under callgrind for N and 2N
//! datagrams (default N = 1000), counting the decoder only (`decode_one`, once per datagram:
//! start-up, building the 64 distinct datagrams, learning templates and renumbering are left
//! out; start-up's cost varies with the process's random hash seed), and prints
//! (Ir(2N) − Ir(N)) / (records(2N) − records(N)), so fixed costs cancel out too:
//! ```text
//! cargo run --release -p collector-user --example decode_loop -- --protocol ipfix --callgrind [--datagrams 1000]
//! ```
//! which is the same as
//! ```text
//! cargo build --release -p collector-user --example decode_loop
//! valgrind --tool=callgrind --toggle-collect='*decode_one*' target/release/examples/decode_loop --protocol ipfix --datagrams 1000
//! valgrind --tool=callgrind --toggle-collect='*decode_one*' target/release/examples/decode_loop --protocol ipfix --datagrams 2000
//! ```

mod callgrind;
// Shared with the benchmark, which also uses its template-memory helper.
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use callgrind::LoopArgs;
use collector::decode::{DatagramMeta, Decoder};
use common::{CountingSink, Sequencer, exporter_meta, loop_datagrams, primed_decoder};

fn main() {
    let Some(LoopArgs {
        protocol,
        datagrams: n,
        exporters,
        ..
    }) = LoopArgs::or_measure("ipfix", &["*decode_one*"])
    else {
        return;
    };
    let (prime, mut pool) = loop_datagrams(&protocol);
    let mut dec = primed_decoder(&prime, exporters);
    let metas: Vec<_> = (0..exporters).map(exporter_meta).collect();
    let mut sequencer = Sequencer::new(&protocol, exporters);
    let records = decode_all(&mut dec, &mut pool, &metas, &mut sequencer, n);
    // Renumbered datagrams arrive in order: anything else would measure the decoder's loss or
    // reorder path instead of its common one.
    let anomalies: u64 = dec
        .sequence_counts()
        .map(|(_, n)| n.lost + n.late + n.restarts)
        .sum();
    if anomalies != 0 {
        eprintln!("{anomalies} sequence anomalies in the loop's datagrams");
        std::process::exit(1);
    }
    println!("records={records}");
}

/// `n` datagrams of `pool`, datagram i from exporter i mod E with that exporter's next sequence
/// number. Returns the records decoded.
fn decode_all(
    dec: &mut Decoder,
    pool: &mut [Vec<u8>],
    metas: &[DatagramMeta],
    sequencer: &mut Sequencer,
    n: usize,
) -> u64 {
    let mut sink = CountingSink::default();
    let (datagrams, exporters) = (pool.len(), metas.len());
    for i in 0..n {
        let (Some(d), Some(meta)) = (pool.get_mut(i % datagrams), metas.get(i % exporters)) else {
            break;
        };
        sequencer.renumber(i % exporters, d);
        decode_one(dec, meta, d, &mut sink);
    }
    sink.flows
}

/// What `--callgrind` counts: one datagram through the decoder.
#[inline(never)]
fn decode_one(dec: &mut Decoder, meta: &DatagramMeta, datagram: &[u8], sink: &mut CountingSink) {
    if let Err(reason) = dec.decode(meta, datagram, sink) {
        eprintln!("decode error: {reason}");
        std::process::exit(1);
    }
}
