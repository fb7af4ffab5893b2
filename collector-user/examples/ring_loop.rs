//! Instruction-count harness for the ring writer (run under `valgrind --tool=callgrind`).
//!
//! `ring_loop --records N` pushes N flow records into a 2^16-slot ring file (committing every 32),
//! `ring_loop --records N --memcpy` copies the same records into a plain in-memory array of the same
//! size and indexing. Run each for N and 2N: (I(2N) − I(N)) / N is the cost per record, and the
//! difference between the modes is what the ring adds over a memcpy. Prints `records=R`.

use collector::record::FlowRecord;
use collector::ring::{RingConfig, RingSize, RingWriter};
use std::hint::black_box;

const CAPACITY: usize = 1 << 16;
const BATCH: u64 = 32;

fn main() -> anyhow::Result<()> {
    let mut records: u64 = 1_000_000;
    let mut memcpy = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().unwrap_or_default().parse()?,
            "--memcpy" => memcpy = true,
            other => anyhow::bail!("unknown argument {other:?} (use --records N [--memcpy])"),
        }
    }
    let mut record: FlowRecord = bytemuck::Zeroable::zeroed();
    record.packets = 1;
    if memcpy {
        let mut slots = vec![record; CAPACITY];
        for i in 0..records {
            record.bytes = i;
            // The ring's slot write without the ring: same masking, same 256-byte copy from memory
            // (black_box keeps the compiler from building the record in registers in either mode).
            if let Some(slot) = slots.get_mut(i as usize & (CAPACITY - 1)) {
                *slot = *black_box(&record);
            }
            if i % BATCH == BATCH - 1 {
                black_box(&mut slots);
            }
        }
        black_box(&slots);
    } else {
        let dir = std::env::temp_dir().join(format!("collector-ring-loop-{}", std::process::id()));
        let config = RingConfig {
            size: RingSize::Records(CAPACITY as u64),
            ..RingConfig::default()
        };
        let mut writer = RingWriter::<FlowRecord>::open_in_dir(&dir, &config)?;
        for i in 0..records {
            record.bytes = i;
            writer.push(black_box(&record));
            if i % BATCH == BATCH - 1 {
                writer.commit();
            }
        }
        writer.commit();
        drop(writer);
        std::fs::remove_dir_all(&dir)?;
    }
    println!("records={records}");
    Ok(())
}
