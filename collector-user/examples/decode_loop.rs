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

// Shared with the benchmark, which also uses its template-memory helper.
mod callgrind;
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use collector::decode::{DatagramMeta, Decoder};
use common::{CountingSink, datagrams, exporter_meta, primed_decoder};

/// Distinct datagrams built; the loop cycles through them.
const POOL: usize = 64;

/// `(Ir, records)` of one run of this binary under callgrind (whole program).
fn callgrind_run(protocol: &str, n: usize, exporters: u16) -> Result<(u64, u64), String> {
    let args = [
        "--protocol",
        protocol,
        "--datagrams",
        &n.to_string(),
        "--exporters",
        &exporters.to_string(),
    ]
    .map(String::from);
    callgrind::run(&["--toggle-collect=*decode_all*"], &args, "records")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let protocol = value("--protocol").unwrap_or_else(|| "ipfix".into());
    let callgrind = args.iter().any(|a| a == "--callgrind");
    let n: usize = value("--datagrams")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if callgrind { 1000 } else { 100_000 });
    let exporters: u16 = value("--exporters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    if callgrind {
        measure(&protocol, n, exporters);
        return;
    }
    let Some((prime, pool)) = datagrams(&protocol, POOL) else {
        eprintln!(
            "unsupported protocol {protocol:?} (v5, v9, ipfix; sflow: examples/sflow_loop.rs)"
        );
        std::process::exit(2);
    };
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

/// `--callgrind`: this binary under callgrind for `n` and `2n` datagrams; prints the difference
/// per record.
#[inline(never)]
fn measure(protocol: &str, n: usize, exporters: u16) {
    let runs = callgrind_run(protocol, n, exporters)
        .and_then(|small| Ok((small, callgrind_run(protocol, 2 * n, exporters)?)));
    match runs {
        Ok(((ir1, r1), (ir2, r2))) if r2 > r1 => {
            println!("protocol={protocol} datagrams={n} records={r1} Ir={ir1}");
            println!(
                "protocol={protocol} datagrams={} records={r2} Ir={ir2}",
                2 * n
            );
            println!(
                "instructions/record={:.1}",
                (ir2 - ir1) as f64 / (r2 - r1) as f64
            );
        }
        Ok(_) => {
            eprintln!("the larger run decoded no more records");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
