//! Decode N pre-built datagrams of one protocol in a loop and print `records=R` — the workload
//! measured under `valgrind --tool=callgrind` for instructions per record.
//!
//! `cargo run --release -p collector-user --example decode_loop -- --protocol v5|v9|ipfix|ipfix-single --datagrams N [--exporters E]`
//!
//! `ipfix` packs 12 records per message, `ipfix-single` one, as Open vSwitch does. With
//! `--exporters E` (default 1) datagram i comes from exporter i mod E, each with its own address
//! and templates, so per-exporter lookups are not always the same one.
//!
//! One command gives the instruction figure: it re-runs itself under callgrind for N and 2N
//! datagrams (default N = 1000), counting the decode loop only (`decode_all`: start-up, building
//! the 64 distinct datagrams and learning templates, is left out; its cost varies with the
//! process's random hash seed), and prints (Ir(2N) − Ir(N)) / (records(2N) − records(N)), so the
//! loop's own fixed cost cancels out too:
//! ```text
//! cargo run --release -p collector-user --example decode_loop -- --protocol ipfix --callgrind [--datagrams 1000]
//! ```
//! which is the same as
//! ```text
//! cargo build --release -p collector-user --example decode_loop
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/decode_loop --protocol ipfix --datagrams 1000
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' target/release/examples/decode_loop --protocol ipfix --datagrams 2000
//! ```

mod callgrind;
// Shared with the benchmark, which also uses its template-memory helper.
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use callgrind::LoopArgs;
use collector::decode::{DatagramMeta, Decoder};
use common::{CountingSink, exporter_meta, loop_datagrams, primed_decoder};

fn main() {
    let args = LoopArgs::from_env("ipfix");
    if args.callgrind {
        callgrind::per_record("*decode_all*", &args);
        return;
    }
    let LoopArgs {
        protocol,
        datagrams: n,
        exporters,
        ..
    } = args;
    let (prime, pool) = loop_datagrams(&protocol);
    let mut dec = primed_decoder(&prime, exporters);
    let metas: Vec<_> = (0..exporters).map(exporter_meta).collect();
    let records = decode_all(&mut dec, &pool, &metas, n);
    println!("records={records}");
}

/// The measured loop (`--callgrind` counts this function only): `n` datagrams of `pool`, datagram
/// i from exporter i mod E. Returns the records decoded.
#[inline(never)]
fn decode_all(dec: &mut Decoder, pool: &[Vec<u8>], metas: &[DatagramMeta], n: usize) -> u64 {
    let mut sink = CountingSink::default();
    for (d, meta) in pool.iter().cycle().zip(metas.iter().cycle()).take(n) {
        if let Err(reason) = dec.decode(meta, d, &mut sink) {
            eprintln!("decode error: {reason}");
            std::process::exit(1);
        }
    }
    sink.flows
}
