//! Instruction-count harness for the ring writer.
//!
//! `ring_loop --records N` pushes N flow records into a 2^16-slot ring file (committing every 32),
//! `ring_loop --records N --memcpy` copies the same records into a plain in-memory array of the same
//! size and indexing. Prints `records=R`. With `--callgrind` it runs itself under
//! `valgrind --tool=callgrind` for N and 2N records (default N = 200,000) and prints
//! (I(2N) − I(N)) / N, the cost per record, as `instructions/record=…`; the difference between
//! the modes is what the ring adds over a memcpy:
//! ```text
//! cargo run --release -p collector-user --example ring_loop -- --callgrind [--memcpy] [--records N]
//! ```

#[allow(dead_code)]
mod callgrind;

use collector::record::FlowRecord;
use collector::ring::{RingConfig, RingSize, RingWriter};
use std::hint::black_box;

const CAPACITY: usize = 1 << 16;
const BATCH: u64 = 32;

fn main() -> anyhow::Result<()> {
    let mut records: Option<u64> = None;
    let mut memcpy = false;
    let mut measure = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = Some(args.next().unwrap_or_default().parse()?),
            "--memcpy" => memcpy = true,
            "--callgrind" => measure = true,
            other => anyhow::bail!(
                "unknown argument {other:?} (use --records N [--memcpy] [--callgrind])"
            ),
        }
    }
    if measure {
        let args = |n: usize| {
            let mut args = vec!["--records".to_string(), n.to_string()];
            if memcpy {
                args.push("--memcpy".into());
            }
            args
        };
        let units = callgrind::Units {
            size: "records",
            unit: "records",
        };
        callgrind::differential(&[], args, &units, records.unwrap_or(200_000) as usize);
        return Ok(());
    }
    let records = records.unwrap_or(1_000_000);
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
