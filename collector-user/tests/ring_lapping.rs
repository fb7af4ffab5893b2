//! Readers that fall behind: exactly the records they skipped are counted lost, never returned torn.

mod ring_common;

use collector::record::FlowRecord;
use collector::ring::{
    HEADER_SIZE, RingConfig, RingError, RingReader, RingSize, RingWriter, Start, field,
};
use ring_common::{Scratch, drain, record};
use std::os::unix::fs::FileExt as _;

fn writer(dir: &Scratch, records: u64) -> RingWriter<FlowRecord> {
    let config = RingConfig {
        size: RingSize::Records(records),
        ..RingConfig::default()
    };
    RingWriter::open_in_dir(dir.path(), &config).unwrap()
}

fn write(w: &mut RingWriter<FlowRecord>, count: u64) {
    for _ in 0..count {
        let seq = w.pushed();
        w.push(&record(seq));
        if seq % 10 == 9 {
            w.commit();
        }
    }
    w.commit();
}

#[test]
fn slow_reader_counts_exactly_what_it_lost() {
    let dir = Scratch::new("lap-exact");
    let mut w = writer(&dir, 64);
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    write(&mut w, 10);
    assert_eq!(drain(&mut r, 7), (0..10).collect::<Vec<_>>());
    // 1000 more: the ring keeps the last 64, the reader at 10 lost 1010 - 64 - 10 = 936.
    write(&mut w, 1000);
    assert_eq!(drain(&mut r, 7), (946..1010).collect::<Vec<_>>());
    assert_eq!(r.stats().lost, 936);
    assert_eq!(r.stats().read, 74);
    // Reading on in step loses nothing more.
    write(&mut w, 50);
    assert_eq!(drain(&mut r, 7), (1010..1060).collect::<Vec<_>>());
    write(&mut w, 64);
    assert_eq!(drain(&mut r, 7).len(), 64);
    assert_eq!(r.stats().lost, 936);
    // A cursor from before the oldest record counts the difference on the first read.
    let mut c = RingReader::<FlowRecord>::open(w.path(), Start::Cursor(5)).unwrap();
    assert_eq!(drain(&mut c, 7), (1060..1124).collect::<Vec<_>>());
    assert_eq!(c.stats().lost, 1055);
}

#[test]
fn claimed_slots_are_never_returned_even_before_commit() {
    // Capacity 64: the writer claims 16 slots at a time.
    let dir = Scratch::new("lap-claim");
    let mut w = writer(&dir, 64);
    write(&mut w, 64);
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    assert_eq!(r.position(), 0);
    // Ten records overwrite slots 0..10 but are not committed: the claim covers 0..16.
    for seq in 64..74 {
        w.push(&record(seq));
    }
    assert_eq!(r.committed(), 64);
    assert_eq!(drain(&mut r, 7), (16..64).collect::<Vec<_>>());
    assert_eq!(r.stats().lost, 16);
    assert_eq!(r.stats().corrupt, 0);
    w.commit();
    assert_eq!(drain(&mut r, 7), (64..74).collect::<Vec<_>>());
    assert_eq!(r.stats().lost, 16);
}

#[test]
fn start_positions() {
    let dir = Scratch::new("lap-start");
    let mut w = writer(&dir, 64);
    write(&mut w, 100);
    let mut now = RingReader::<FlowRecord>::open(w.path(), Start::Now).unwrap();
    let mut oldest = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    let mut at = RingReader::<FlowRecord>::open(w.path(), Start::Cursor(90)).unwrap();
    assert!(drain(&mut now, 7).is_empty());
    write(&mut w, 3);
    assert_eq!(drain(&mut now, 7), vec![100, 101, 102]);
    assert_eq!(drain(&mut oldest, 7), (39..103).collect::<Vec<_>>());
    assert_eq!(drain(&mut at, 7), (90..103).collect::<Vec<_>>());
    // Opened at 36, the oldest then; the three new records pushed 36..39 out before it read.
    assert_eq!(oldest.stats().lost, 3);
    assert_eq!((now.stats().lost, at.stats().lost), (0, 0));
    let err = RingReader::<FlowRecord>::open(w.path(), Start::Cursor(104)).unwrap_err();
    assert!(
        matches!(
            err,
            RingError::CursorAhead {
                cursor: 104,
                commit: 103,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn snapshot_stops_at_the_commit_cursor_seen() {
    let dir = Scratch::new("lap-snap");
    let mut w = writer(&dir, 64);
    write(&mut w, 20);
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    r.stop_at_current_end();
    write(&mut w, 5);
    assert_eq!(drain(&mut r, 7), (0..20).collect::<Vec<_>>());
    assert!(r.at_end());
}

#[test]
fn damaged_slot_is_skipped_and_counted() {
    let dir = Scratch::new("lap-corrupt");
    let mut w = writer(&dir, 64);
    write(&mut w, 64);
    let data = w.info().data_offset;
    assert_eq!(data, HEADER_SIZE as u64);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(w.path())
        .unwrap();
    f.write_all_at(&12345u64.to_ne_bytes(), data + 5 * 256)
        .unwrap();
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    let seqs = drain(&mut r, 7);
    assert_eq!(seqs.len(), 63);
    assert!(!seqs.contains(&5));
    assert_eq!(r.stats().corrupt, 1);
    // A commit cursor damaged far ahead: every slot is "corrupt", none returned, no panic.
    f.write_all_at(&(1u64 << 40).to_ne_bytes(), field::COMMIT as u64)
        .unwrap();
    f.write_all_at(&(1u64 << 40).to_ne_bytes(), field::CLAIM as u64)
        .unwrap();
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    assert!(drain(&mut r, 7).is_empty());
    assert_eq!(r.stats().corrupt, 64);
}

#[test]
fn commit_damaged_past_claim_reads_no_further_than_the_ring() {
    // A writer keeps its claim cursor at or ahead of its commit cursor; a damaged (or foreign)
    // file need not. Read from a cursor with a buffer larger than the ring, as `collector read
    // --follow` does when a ring appears: the reader must stay inside the ring's slots.
    let dir = Scratch::new("lap-commit-ahead");
    let mut w = writer(&dir, 16);
    write(&mut w, 16);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(w.path())
        .unwrap();
    f.write_all_at(&100_000u64.to_ne_bytes(), field::COMMIT as u64)
        .unwrap();
    f.write_all_at(&0u64.to_ne_bytes(), field::CLAIM as u64)
        .unwrap();
    let mut r = RingReader::<FlowRecord>::open(w.path(), Start::Cursor(0)).unwrap();
    assert!(drain(&mut r, 4096).is_empty());
    let stats = r.stats();
    // Everything below the last ring's worth is gone; the last ring's worth holds other sequence
    // numbers (0..16), so it is corrupt.
    assert_eq!((stats.lost, stats.corrupt), (100_000 - 16, 16));
    assert_eq!(r.position(), 100_000);
}
