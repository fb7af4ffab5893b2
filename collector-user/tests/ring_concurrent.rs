//! A writer and readers running at the same time, in threads and in separate processes, with
//! millions of records: every record read is intact and in order, none twice, and every gap is a
//! lapped record counted exactly. A writer killed with SIGKILL leaves every committed record readable
//! and no torn one.
//!
//! `RING_TEST_RECORDS` sets the record count (default 2,000,000).

mod ring_common;

use bytemuck::Zeroable as _;
use collector::record::{FlowRecord, RingRecord};
use collector::ring::{
    IdleBackoff, RingConfig, RingError, RingOpen, RingReader, RingSize, RingWriter, Start,
};
use ring_common::{Scratch, check, record, record_count};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn config(records: u64) -> RingConfig {
    RingConfig {
        size: RingSize::Records(records),
        ..RingConfig::default()
    }
}

/// What a verifying follower saw.
#[derive(Debug, Default)]
struct Followed {
    read: u64,
    /// Gaps in the sequence numbers returned, summed.
    gaps: u64,
    /// The reader's own count of lost records.
    lost: u64,
    corrupt: u64,
    restarts: u64,
}

/// Follow `reader` until it has passed sequence number `until`, or until `tick` (called after every
/// read, with the reader) has said "finish" and everything committed is read. Checks every record:
/// intact, increasing, gaps equal to the lost count.
fn follow(
    reader: &mut RingReader<FlowRecord>,
    until: u64,
    mut tick: impl FnMut(&RingReader<FlowRecord>) -> bool,
) -> Followed {
    let mut seen = Followed::default();
    let mut next = reader.position();
    let mut buf = vec![FlowRecord::zeroed(); 509];
    let mut idle = IdleBackoff::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while reader.position() < until {
        assert!(
            Instant::now() < deadline,
            "follower stuck at {}",
            reader.position()
        );
        let n = reader.read(&mut buf);
        for rec in &buf[..n] {
            let seq = rec.ring_seq();
            assert!(seq >= next, "duplicate or out of order: {seq} after {next}");
            assert!(check(rec, seq), "record {seq} is torn or wrong");
            seen.gaps += seq - next;
            next = seq + 1;
        }
        seen.read += n as u64;
        let finish = tick(reader);
        if n == 0 {
            if let Some(change) = reader.check_writer().unwrap() {
                eprintln!("writer change: {change:?}");
            }
            if finish && reader.position() >= reader.committed() {
                break;
            }
            idle.wait();
        } else {
            idle.reset();
        }
    }
    let stats = reader.stats();
    seen.gaps += reader.position() - next; // records skipped after the last one returned
    seen.lost = stats.lost;
    seen.corrupt = stats.corrupt;
    seen.restarts = stats.writer_restarts;
    assert_eq!(stats.read, seen.read);
    seen
}

/// Write records `from..to`, committing in batches of 1..=97 records.
fn write_range(w: &mut RingWriter<FlowRecord>, from: u64, to: u64) {
    let mut batch = 1;
    for seq in from..to {
        w.push(&record(seq));
        if seq % batch == 0 {
            w.commit();
            batch = batch % 97 + 1;
        }
    }
    w.commit();
}

#[test]
fn writer_and_reader_threads() {
    let total = record_count(2_000_000);
    let dir = Scratch::new("conc-threads");
    let mut w = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(1 << 16)).unwrap();
    let mut fast = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    let mut slow = RingReader::<FlowRecord>::open(w.path(), Start::Oldest).unwrap();
    let started = Instant::now();
    let (f, s) = std::thread::scope(|scope| {
        let f = scope.spawn(|| follow(&mut fast, total, |_| false));
        let s = scope.spawn(|| {
            let mut ticks = 0u32;
            follow(&mut slow, total, |_| {
                ticks += 1;
                if ticks.is_multiple_of(8) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                false
            })
        });
        write_range(&mut w, 0, total);
        (f.join().unwrap(), s.join().unwrap())
    });
    eprintln!(
        "{total} records in {:?}: fast {f:?}, slow {s:?}",
        started.elapsed()
    );
    for seen in [&f, &s] {
        assert_eq!(seen.read + seen.lost, total, "{seen:?}");
        assert_eq!(seen.gaps, seen.lost, "{seen:?}");
        assert_eq!(seen.corrupt, 0);
    }
    // The slow reader sleeps far longer than the writer needs to fill 64 Ki slots many times.
    assert!(s.lost > 0, "slow reader was never lapped: {s:?}");
}

/// Entry point of the writer child process (run by the tests below, ignored otherwise).
/// Env: RING_CHILD_PATH (ring file), RING_CHILD_RECORDS (count, or 0 for "until killed").
#[test]
#[ignore = "writer child process of the tests in this file"]
fn writer_child() {
    let Ok(path) = std::env::var("RING_CHILD_PATH") else {
        return;
    };
    let records: u64 = std::env::var("RING_CHILD_RECORDS")
        .unwrap()
        .parse()
        .unwrap();
    let capacity: u64 = std::env::var("RING_CHILD_CAPACITY")
        .unwrap()
        .parse()
        .unwrap();
    // The parent dropped its writer, but a sibling test may have forked while it was open: until
    // that fork execs, the copied descriptor still holds the parent's writer lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut w = loop {
        match RingWriter::<FlowRecord>::open(Path::new(&path), &config(capacity)) {
            Err(RingError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => break opened.unwrap(),
        }
    };
    assert!(
        matches!(w.opened(), RingOpen::Resumed { .. }),
        "{:?}",
        w.opened()
    );
    let start = w.committed();
    if records == 0 {
        let mut seq = start;
        loop {
            write_range(&mut w, seq, seq + 1000);
            seq += 1000;
        }
    }
    write_range(&mut w, start, start + records);
}

/// Kills and reaps a child writer that a failing test left running (it writes until killed).
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_writer(path: &Path, records: u64, capacity: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RING_CHILD_PATH", path)
        .env("RING_CHILD_RECORDS", records.to_string())
        .env("RING_CHILD_CAPACITY", capacity.to_string())
        .spawn()
        .unwrap()
}

/// Create an empty ring for a child to resume, so that a reader can be positioned at 0 first.
fn empty_ring(dir: &Path, capacity: u64) -> PathBuf {
    let w = RingWriter::<FlowRecord>::open_in_dir(dir, &config(capacity)).unwrap();
    w.path().to_path_buf()
}

#[test]
fn writer_and_reader_processes() {
    let total = record_count(2_000_000);
    let dir = Scratch::new("conc-procs");
    let capacity = 1 << 16;
    let path = empty_ring(dir.path(), capacity);
    let mut reader = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let mut child = spawn_writer(&path, total, capacity);
    let seen = follow(&mut reader, total, |_| false);
    assert!(child.wait().unwrap().success());
    eprintln!("{seen:?}");
    assert_eq!(seen.read + seen.lost, total);
    assert_eq!(seen.gaps, seen.lost);
    assert_eq!(seen.corrupt, 0);
    // The child resumed the ring this reader had open; the reader noticed unless it never idled.
    assert!(seen.restarts <= 1);
}

#[test]
fn sigkilled_writer_leaves_every_committed_record_intact() {
    let dir = Scratch::new("conc-kill");
    let capacity = 1 << 14;
    let path = empty_ring(dir.path(), capacity);
    let mut live = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let mut child = KillOnDrop(Some(spawn_writer(&path, 0, capacity)));
    // Follow live until the writer has lapped the ring several times, then kill it mid-stream (and
    // reap it, so nothing is written after), then read on to the final commit cursor.
    let mut killed = false;
    let seen = follow(&mut live, u64::MAX, |r| {
        if r.committed() > 8 * capacity
            && let Some(mut writer) = child.0.take()
        {
            // SAFETY: plain syscall; the pid is our child, not yet reaped.
            assert_eq!(
                unsafe { libc::kill(writer.id() as libc::pid_t, libc::SIGKILL) },
                0
            );
            writer.wait().unwrap();
            killed = true;
            return false;
        }
        killed
    });
    assert!(killed);
    assert_eq!(seen.corrupt, 0);
    assert_eq!(seen.gaps, seen.lost, "{seen:?}");
    let commit = live.committed();
    assert_eq!(live.position(), commit);

    // A new reader reads every record still in the ring, all intact.
    let mut after = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let oldest = after.position();
    assert!(commit - oldest <= capacity);
    assert!(
        commit - oldest >= capacity - capacity / 4,
        "window {oldest}..{commit}"
    );
    let got = follow(&mut after, commit, |_| true);
    assert_eq!(got.read, commit - oldest);
    assert_eq!((got.lost, got.corrupt, got.gaps), (0, 0, 0));

    // A new writer resumes at the commit cursor; what it writes follows on without a seam.
    let mut w = RingWriter::<FlowRecord>::open(&path, &config(capacity)).unwrap();
    assert!(matches!(w.opened(), RingOpen::Resumed { commit: c, .. } if *c == commit));
    write_range(&mut w, commit, commit + 100);
    let mut resumed = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let from = resumed.position();
    let got = follow(&mut resumed, commit + 100, |_| true);
    assert_eq!(got.read, commit + 100 - from);
    assert_eq!((got.lost, got.corrupt), (0, 0));
}
