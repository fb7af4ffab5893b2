//! Writer restarts (resume, new generation, crash mid-batch) and the multi-ring directory reader.

mod ring_common;

use bytemuck::Zeroable as _;
use collector::decode::RecordSink as _;
use collector::record::{CounterRecord, FlowRecord, RingRecord};
use collector::ring::{
    DirChange, DirReader, RingChange, RingConfig, RingError, RingOpen, RingReader, RingSize,
    RingWriter, Start, WorkerRings, field,
};
use ring_common::{Scratch, drain, record};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Duration;

fn config(records: u64, worker_id: u32) -> RingConfig {
    RingConfig {
        size: RingSize::Records(records),
        worker_id,
        ..RingConfig::default()
    }
}

fn write<R: RingRecord>(w: &mut RingWriter<R>, count: u64) {
    for _ in 0..count {
        let seq = w.pushed();
        w.push(&record(seq));
    }
    w.commit();
}

#[test]
fn resumed_writer_continues_the_sequence_and_readers_notice() {
    let dir = Scratch::new("restart-resume");
    let mut a = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 0)).unwrap();
    assert!(matches!(a.opened(), RingOpen::Created));
    let generation = a.info().generation;
    write(&mut a, 30);
    let mut r = RingReader::<FlowRecord>::open(a.path(), Start::Oldest).unwrap();
    assert_eq!(drain(&mut r, 16), (0..30).collect::<Vec<_>>());
    assert_eq!(r.check_writer().unwrap(), None);
    // Pushed but not committed when the writer stops: dropping commits them.
    for seq in 30..35 {
        a.push(&record(seq));
    }
    drop(a);
    let mut b = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 0)).unwrap();
    assert!(
        matches!(
            b.opened(),
            RingOpen::Resumed {
                epoch: 2,
                commit: 35
            }
        ),
        "{:?}",
        b.opened()
    );
    assert_eq!(b.info().generation, generation);
    write(&mut b, 10);
    assert_eq!(
        r.check_writer().unwrap(),
        Some(RingChange::WriterRestarted {
            epoch: 2,
            pid: u64::from(std::process::id())
        })
    );
    assert_eq!(r.check_writer().unwrap(), None);
    assert_eq!(drain(&mut r, 16), (30..45).collect::<Vec<_>>());
    assert_eq!(r.stats().lost, 0);
    assert_eq!(r.stats().writer_restarts, 1);
}

#[test]
fn replaced_ring_is_read_to_its_end_then_the_new_generation() {
    let dir = Scratch::new("restart-replace");
    let mut a = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 0)).unwrap();
    let old_generation = a.info().generation;
    write(&mut a, 100);
    let path = a.path().to_path_buf();
    drop(a);
    let mut r = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let mut buf = vec![FlowRecord::zeroed(); 20];
    assert_eq!(r.read(&mut buf), 20);
    assert_eq!(buf[0].ring_seq, 36);
    // A new configuration (capacity 128): the ring is replaced by a new generation.
    let mut b = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(128, 0)).unwrap();
    assert!(
        matches!(
            b.opened(),
            RingOpen::Replaced {
                reason: RingError::OtherLayout {
                    found_capacity: 64,
                    capacity: 128,
                    ..
                }
            }
        ),
        "{:?}",
        b.opened()
    );
    let new_generation = b.info().generation;
    assert_ne!(new_generation, old_generation);
    write(&mut b, 50);
    // Not switched before the old generation is read to its end.
    assert_eq!(r.check_writer().unwrap(), None);
    assert_eq!(drain(&mut r, 16), (56..100).collect::<Vec<_>>());
    assert_eq!(
        r.check_writer().unwrap(),
        Some(RingChange::NewGeneration {
            previous: old_generation,
            generation: new_generation
        })
    );
    assert_eq!(r.info().capacity, 128);
    assert_eq!(drain(&mut r, 16), (0..50).collect::<Vec<_>>());
    let stats = r.stats();
    assert_eq!((stats.read, stats.lost, stats.new_generations), (114, 0, 1));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["flows-0.ring".to_string()]);
}

#[test]
fn crash_mid_batch_never_exposes_the_torn_slots() {
    // The state a writer killed mid-batch leaves: commit 100, claim 116 (capacity 64 claims 16 at a
    // time) and slots of sequence numbers 100..116 (slots 36..52) partly rewritten.
    let dir = Scratch::new("restart-crash");
    let mut a = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 0)).unwrap();
    write(&mut a, 100);
    let path = a.path().to_path_buf();
    let data = a.info().data_offset;
    drop(a);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&116u64.to_ne_bytes(), field::CLAIM as u64)
        .unwrap();
    for slot in 36..52 {
        f.write_all_at(&[0xee; 100], data + slot * 256 + 8).unwrap();
    }
    let mut r = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    assert_eq!(drain(&mut r, 16), (52..100).collect::<Vec<_>>());
    // The next writer resumes at 100 and keeps the claim until it has rewritten those slots.
    let mut b = RingWriter::<FlowRecord>::open(&path, &config(64, 0)).unwrap();
    write(&mut b, 3);
    let mut r = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    assert_eq!(drain(&mut r, 16), (52..103).collect::<Vec<_>>());
    assert_eq!(r.stats().corrupt, 0);
    write(&mut b, 20);
    let mut r = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    assert_eq!(drain(&mut r, 16), (59..123).collect::<Vec<_>>());
    assert_eq!(r.stats().corrupt, 0);
}

#[test]
fn directory_reader_merges_worker_rings() {
    let dir = Scratch::new("restart-dir");
    let counts = [30u64, 0, 70];
    let mut rings: Vec<WorkerRings> = (0..3)
        .map(|w| WorkerRings::open(dir.path(), &config(128, w)).unwrap())
        .collect();
    for (ring, &count) in rings.iter_mut().zip(&counts) {
        for seq in 0..count {
            ring.flow(&record(seq));
        }
        ring.counters(&record(0));
        ring.commit();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a ring").unwrap();
    std::fs::write(dir.path().join(".flows-9.ring.1.tmp"), "").unwrap();
    let mut flows = DirReader::<FlowRecord>::open(dir.path(), Start::Oldest).unwrap();
    assert_eq!(flows.rings().len(), 3);
    let workers: Vec<u32> = flows.rings().iter().map(|r| r.info().worker_id).collect();
    assert_eq!(workers, vec![0, 1, 2]);
    let mut buf = vec![FlowRecord::zeroed(); 16];
    let mut per_worker: [Vec<u64>; 3] = Default::default();
    let mut order = Vec::new();
    loop {
        let n = flows.read(&mut buf);
        if n == 0 {
            break;
        }
        // A batch comes from one ring: the one whose position moved.
        let seqs: Vec<u64> = buf[..n].iter().map(|r| r.ring_seq).collect();
        let w = (0..3)
            .find(|&w| flows.rings()[w].position() != per_worker[w].len() as u64)
            .unwrap();
        order.push(w);
        per_worker[w].extend(seqs);
    }
    assert_eq!(per_worker[0], (0..30).collect::<Vec<_>>());
    assert_eq!(per_worker[2], (0..70).collect::<Vec<_>>());
    // Round robin: worker 0 and 2 alternate while both have records.
    assert_eq!(&order[..4], &[0, 2, 0, 2]);
    assert_eq!(flows.stats().read, 100);
    let counters = DirReader::<CounterRecord>::open(dir.path(), Start::Oldest).unwrap();
    assert_eq!(counters.rings().len(), 3);

    // Following: a worker ring that appears later is picked up by poll().
    let mut late = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 7)).unwrap();
    write(&mut late, 5);
    assert_eq!(flows.read(&mut buf), 0);
    let changes = flows.poll().unwrap();
    assert_eq!(
        changes,
        vec![DirChange::Added {
            path: late.path().to_path_buf()
        }]
    );
    assert_eq!(flows.read(&mut buf), 5);
    assert_eq!(flows.stats().read, 105);

    // A snapshot stops at what is committed when it is taken.
    let mut snap = DirReader::<FlowRecord>::open(dir.path(), Start::Oldest).unwrap();
    snap.stop_at_current_end();
    write(&mut late, 5);
    let mut total = 0;
    loop {
        let n = snap.read(&mut buf);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 105);
}

#[test]
fn directory_with_a_bad_ring_is_an_error_naming_it() {
    let dir = Scratch::new("restart-dirbad");
    write(
        &mut RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64, 0)).unwrap(),
        3,
    );
    let bad = dir.path().join("flows-1.ring");
    std::fs::write(&bad, vec![0x55; 8192]).unwrap();
    let err = DirReader::<FlowRecord>::open(dir.path(), Start::Oldest).unwrap_err();
    assert!(
        matches!(err, RingError::WrongMagic { ref path, .. } if path == &bad),
        "{err}"
    );
    assert!(err.to_string().contains("flows-1.ring"));
    let missing = DirReader::<FlowRecord>::open(Path::new("/nonexistent/rings"), Start::Oldest);
    assert!(matches!(missing, Err(RingError::Io { .. })));
}

#[test]
fn msync_option_writes_through() {
    let dir = Scratch::new("restart-msync");
    let mut w = RingWriter::<FlowRecord>::open_in_dir(
        dir.path(),
        &RingConfig {
            msync_interval: Some(Duration::ZERO),
            ..config(64, 0)
        },
    )
    .unwrap();
    write(&mut w, 10);
    w.sync().unwrap();
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    assert_eq!(drain(&mut r, 16).len(), 10);
}
