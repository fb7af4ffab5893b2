//! `cargo bench -p collector-user --bench ring`: ring writer and reader throughput.
//!
//! - writer: records/s pushed into a 2^18-slot ring (64 MiB), committing every 64 records;
//! - reader: records/s copied out by a `RingReader` from a full ring (reads of 256 records);
//! - live: a writer thread and a following reader thread at the same time (reader records/s and
//!   records lost to lapping).
//!
//! Instructions per record: see `examples/ring_loop.rs` (callgrind).

use bytemuck::Zeroable as _;
use collector::record::FlowRecord;
use collector::ring::{IdleBackoff, RingConfig, RingReader, RingSize, RingWriter, Start};
use std::hint::black_box;
use std::time::Instant;

const CAPACITY: u64 = 1 << 18;

fn rate(records: u64, seconds: f64) -> String {
    format!("{:.1} M records/s", records as f64 / seconds / 1e6)
}

fn main() {
    let records: u64 = std::env::var("RING_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let dir = std::env::temp_dir().join(format!("collector-ring-bench-{}", std::process::id()));
    let config = RingConfig {
        size: RingSize::Records(CAPACITY),
        ..RingConfig::default()
    };
    let mut writer = RingWriter::<FlowRecord>::open_in_dir(&dir, &config).expect("ring");
    let path = writer.path().to_path_buf();
    let mut record = FlowRecord::zeroed();

    let t = Instant::now();
    for i in 0..records {
        record.bytes = i;
        writer.push(black_box(&record));
        if i % 64 == 63 {
            writer.commit();
        }
    }
    writer.commit();
    let w = t.elapsed().as_secs_f64();
    println!(
        "writer: {records} records in {w:.3} s: {}",
        rate(records, w)
    );

    let mut buf = vec![FlowRecord::zeroed(); 256];
    let mut read = 0;
    let t = Instant::now();
    while read < records {
        let mut reader = RingReader::<FlowRecord>::open(&path, Start::Oldest).expect("reader");
        loop {
            let n = reader.read(&mut buf);
            if n == 0 {
                break;
            }
            black_box(&buf);
            read += n as u64;
        }
    }
    let r = t.elapsed().as_secs_f64();
    println!("reader: {read} records in {r:.3} s: {}", rate(read, r));

    let mut follower = RingReader::<FlowRecord>::open(&path, Start::Now).expect("reader");
    let end = writer.pushed() + records;
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut idle = IdleBackoff::new();
            while follower.position() < end {
                if follower.read(&mut buf) == 0 {
                    idle.wait();
                } else {
                    idle.reset();
                }
            }
        });
        for i in 0..records {
            record.bytes = i;
            writer.push(black_box(&record));
            if i % 64 == 63 {
                writer.commit();
            }
        }
        writer.commit();
    });
    let l = t.elapsed().as_secs_f64();
    let stats = follower.stats();
    println!(
        "live: writer+reader threads, {records} records in {l:.3} s: read {} ({}), lost to lapping {}",
        stats.read,
        rate(stats.read, l),
        stats.lost
    );
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}
