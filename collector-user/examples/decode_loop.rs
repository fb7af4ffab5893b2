//! Decode N pre-built datagrams of one protocol in a loop and print `records=R` — the workload
//! measured under `valgrind --tool=callgrind` for instructions per record.
//!
//! `cargo run --release --example decode_loop -- --protocol v5|v9|ipfix --datagrams N`

// Shared with the benchmark, which also uses its template-memory helper.
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use common::{CountingSink, datagrams, meta, primed_decoder};

/// Distinct datagrams built; the loop cycles through them.
const POOL: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let protocol = value("--protocol").unwrap_or_else(|| "ipfix".into());
    let n: usize = value("--datagrams")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let Some((prime, pool)) = datagrams(&protocol, POOL) else {
        eprintln!("unsupported protocol {protocol:?} (v5, v9, ipfix; sflow is not built yet)");
        std::process::exit(2);
    };
    let mut dec = primed_decoder(&prime);
    let mut sink = CountingSink::default();
    let meta = meta();
    for d in pool.iter().cycle().take(n) {
        if let Err(reason) = dec.decode(&meta, d, &mut sink) {
            eprintln!("decode error: {reason}");
            std::process::exit(1);
        }
    }
    println!("records={} checksum={:x}", sink.flows, sink.checksum);
}
