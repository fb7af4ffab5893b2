//! `collector read`: print the records of a ring directory, once or following live (`tail -f`).
//!
//! This module owns the command's arguments, the read loop over a [`DirReader`] (snapshot or follow,
//! stop on SIGINT/SIGTERM or a closed output) and the final stats line. Record formatting is the
//! sink's business: records go to a [`RecordSink`], as in `collector replay`.

use crate::decode::RecordSink;
use crate::json::{RecordWriter, TextFormat};
use crate::record::{CounterRecord, FlowRecord, RingRecord};
use crate::ring::{DirChange, DirReader, IdleBackoff, ReadStats, RingError, Start};
use clap::{Args, ValueEnum};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Arguments of `collector read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Directory of ring files (the collector's `--ring-dir`).
    #[arg(long, value_name = "DIR")]
    pub ring_dir: PathBuf,
    /// Keep reading as records are written, until SIGINT/SIGTERM or a closed output.
    #[arg(long)]
    pub follow: bool,
    /// Start at the oldest record still in the rings, or at the next one written.
    #[arg(long, value_enum, default_value_t = ReadFrom::Oldest)]
    pub from: ReadFrom,
    /// Which rings to read.
    #[arg(long, value_enum, default_value_t = Kind::Flows)]
    pub kind: Kind,
    /// Output format: JSON lines, or CSV: a header line (printed also when there is no flow
    /// record), then one line per flow record. CSV is for flow records only: refused with --kind
    /// counters (exit code 2).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// `--from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadFrom {
    Oldest,
    Now,
}

/// `--kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Flows,
    Counters,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

/// A record type `collector read` can print: hands itself to the matching [`RecordSink`] method.
pub trait SinkRecord: RingRecord {
    fn send_to(&self, sink: &mut impl RecordSink);
}

impl SinkRecord for FlowRecord {
    fn send_to(&self, sink: &mut impl RecordSink) {
        sink.flow(self);
    }
}

impl SinkRecord for CounterRecord {
    fn send_to(&self, sink: &mut impl RecordSink) {
        sink.counters(self);
    }
}

/// Where the read loop's records go, and how it learns that the output is gone.
pub trait ReadOutput: RecordSink {
    /// Push buffered output out (called whenever the rings are idle). `Err` ends the read: for a
    /// closed pipe that is a normal end, see [`is_closed_output`].
    fn flush_output(&mut self) -> std::io::Result<()>;
}

/// How [`read_rings`] ended, with the reader's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSummary {
    pub stats: ReadStats,
    pub rings: usize,
}

impl std::fmt::Display for ReadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "records_read={} records_lost={} records_corrupt={} rings={} writer_restarts={} new_generations={}",
            s.read, s.lost, s.corrupt, self.rings, s.writer_restarts, s.new_generations
        )
    }
}

/// Read the rings of kind `R` in `args.ring_dir` into `out`: what is committed now, or (with
/// `follow`) until `stop` is set or the output fails. Ring changes are reported through `notice`.
pub fn read_rings<R: SinkRecord>(
    args: &ReadArgs,
    out: &mut impl ReadOutput,
    stop: &AtomicBool,
    mut notice: impl FnMut(&DirChange),
) -> Result<ReadSummary, ReadError> {
    let start = match args.from {
        ReadFrom::Oldest => Start::Oldest,
        ReadFrom::Now => Start::Now,
    };
    let mut rings = DirReader::<R>::open(&args.ring_dir, start)?;
    if !args.follow {
        if rings.rings().is_empty() {
            return Err(ReadError::NoRings(args.ring_dir.clone()));
        }
        rings.stop_at_current_end();
    }
    let mut buf = vec![R::zeroed(); 256];
    let mut idle = IdleBackoff::new();
    let summary = |rings: &DirReader<R>| ReadSummary {
        stats: rings.stats(),
        rings: rings.rings().len(),
    };
    loop {
        let n = rings.read(&mut buf);
        for record in buf.iter().take(n) {
            record.send_to(out);
        }
        if n > 0 {
            idle.reset();
            continue;
        }
        if let Err(e) = out.flush_output() {
            return if is_closed_output(&e) {
                Ok(summary(&rings))
            } else {
                Err(ReadError::Output(e))
            };
        }
        if !args.follow || stop.load(Ordering::Relaxed) {
            return Ok(summary(&rings));
        }
        for change in rings.poll()? {
            notice(&change);
        }
        idle.wait();
    }
}

/// Why `collector read` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("{}: no ring files of this kind (use --follow to wait for them)", .0.display())]
    NoRings(PathBuf),
    #[error("writing the output: {0}")]
    Output(std::io::Error),
}

/// A write error that means the reader went away (`collector read | head`): a normal end.
pub fn is_closed_output(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Run `collector read`: records on stdout, ring changes and the final stats line on stderr.
pub fn run(args: &ReadArgs) -> anyhow::Result<()> {
    if let (Format::Csv, Kind::Counters) = (args.format, args.kind) {
        // A usage error: one line and exit code 2, as for a bad flag of `collector run`.
        return Err(crate::config::ConfigError::Value {
            setting: "--format".into(),
            value: "csv".into(),
            expected: "CSV is for flow records; use --format json with --kind counters",
        }
        .into());
    }
    let stop = catch_stop_signals()?;
    let stdout = BufWriter::with_capacity(1 << 16, std::io::stdout());
    let summary = match args.format {
        Format::Json => print(args, &mut RecordWriter::new(stdout, TextFormat::Json), stop),
        Format::Csv => print(args, &mut RecordWriter::new(stdout, TextFormat::Csv), stop),
    }?;
    eprintln!("collector read: {summary}");
    Ok(())
}

/// Read the rings of `args.kind` into `out`, ring changes on stderr.
fn print(
    args: &ReadArgs,
    out: &mut impl ReadOutput,
    stop: &AtomicBool,
) -> Result<ReadSummary, ReadError> {
    let notice = |change: &DirChange| eprintln!("{}", describe(change));
    match args.kind {
        Kind::Flows => read_rings::<FlowRecord>(args, out, stop, notice),
        Kind::Counters => read_rings::<CounterRecord>(args, out, stop, notice),
    }
}

/// The JSON or CSV writer, flushed whenever the rings are idle.
impl<W: Write> ReadOutput for RecordWriter<W> {
    fn flush_output(&mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// Set by SIGINT/SIGTERM while `collector read` runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Route SIGINT and SIGTERM to [`STOP`] (the follow loop notices it within one idle wait).
fn catch_stop_signals() -> std::io::Result<&'static AtomicBool> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(&STOP)
}

fn describe(change: &DirChange) -> String {
    match change {
        DirChange::Added { path } => format!("collector read: new ring {}", path.display()),
        DirChange::Ring { path, change } => {
            format!("collector read: {}: {change:?}", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Collected;
    use crate::ring::{RingConfig, RingSize, WorkerRings};
    use bytemuck::Zeroable as _;
    use std::path::Path;

    /// Collects records; its flush fails with `fail_with` once set.
    #[derive(Default)]
    struct Output {
        records: Collected,
        flushes: u32,
        fail_with: Option<std::io::ErrorKind>,
    }

    impl RecordSink for Output {
        fn flow(&mut self, record: &FlowRecord) {
            self.records.flow(record);
        }
        fn counters(&mut self, record: &CounterRecord) {
            self.records.counters(record);
        }
    }

    impl ReadOutput for Output {
        fn flush_output(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            match self.fail_with {
                Some(kind) => Err(kind.into()),
                None => Ok(()),
            }
        }
    }

    fn args(dir: &Path, follow: bool, kind: Kind) -> ReadArgs {
        ReadArgs {
            ring_dir: dir.to_path_buf(),
            follow,
            from: ReadFrom::Oldest,
            kind,
            format: Format::Json,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("collector-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn flow(bytes: u64) -> FlowRecord {
        FlowRecord {
            bytes,
            ..FlowRecord::zeroed()
        }
    }

    fn worker(dir: &Path, id: u32) -> WorkerRings {
        let config = RingConfig {
            size: RingSize::Records(64),
            worker_id: id,
            ..RingConfig::default()
        };
        WorkerRings::open(dir, &config).unwrap()
    }

    #[test]
    fn snapshot_reads_every_worker_then_stops() {
        let dir = scratch("snapshot");
        let mut w0 = worker(&dir, 0);
        let mut w1 = worker(&dir, 1);
        for i in 0..10 {
            w0.flow(&flow(i));
            w1.flow(&flow(100 + i));
        }
        w1.counters(&CounterRecord::zeroed());
        w0.commit();
        w1.commit();
        let stop = AtomicBool::new(false);
        let mut out = Output::default();
        let summary =
            read_rings::<FlowRecord>(&args(&dir, false, Kind::Flows), &mut out, &stop, |_| {})
                .unwrap();
        assert_eq!(summary.rings, 2);
        assert_eq!(summary.stats.read, 20);
        let mut bytes: Vec<u64> = out.records.flows.iter().map(|r| r.bytes).collect();
        bytes.sort();
        assert_eq!(bytes, (0..10).chain(100..110).collect::<Vec<_>>());
        assert!(out.records.counters.is_empty());
        assert_eq!(
            summary.to_string(),
            "records_read=20 records_lost=0 records_corrupt=0 rings=2 writer_restarts=0 new_generations=0"
        );
        let mut out = Output::default();
        let summary = read_rings::<CounterRecord>(
            &args(&dir, false, Kind::Counters),
            &mut out,
            &stop,
            |_| {},
        )
        .unwrap();
        assert_eq!((summary.stats.read, out.records.counters.len()), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_of_an_empty_directory_is_an_error() {
        let dir = scratch("empty");
        let stop = AtomicBool::new(false);
        let err = read_rings::<FlowRecord>(
            &args(&dir, false, Kind::Flows),
            &mut Output::default(),
            &stop,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, ReadError::NoRings(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn follow_reads_live_records_and_new_rings_until_stopped() {
        let dir = scratch("follow");
        let stop = AtomicBool::new(false);
        let mut out = Output::default();
        let mut notices = Vec::new();
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                read_rings::<FlowRecord>(&args(&dir, true, Kind::Flows), &mut out, &stop, |c| {
                    notices.push(c.clone())
                })
            });
            // The directory is empty when the follower starts: the ring appears later.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut w = worker(&dir, 3);
            for i in 0..500 {
                w.flow(&flow(i));
                if i % 50 == 49 {
                    w.commit();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            w.commit();
            // Give the follower time to find the ring and read to its end, then stop it.
            std::thread::sleep(std::time::Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            let summary = reader.join().unwrap().unwrap();
            // 500 records through a 64-slot ring written in bursts: each one read or counted lost.
            assert_eq!(summary.stats.read + summary.stats.lost, 500);
            assert_eq!(summary.rings, 1);
        });
        let seqs: Vec<u64> = out.records.flows.iter().map(|r| r.ring_seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order or repeated"
        );
        assert_eq!(seqs.last(), Some(&499));
        assert!(out.records.flows.iter().all(|r| r.bytes == r.ring_seq));
        assert!(
            matches!(notices.first(), Some(DirChange::Added { .. })),
            "{notices:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn closed_output_ends_the_read_normally_other_errors_fail() {
        let dir = scratch("closed");
        let mut w = worker(&dir, 0);
        w.flow(&flow(1));
        w.commit();
        let stop = AtomicBool::new(false);
        let mut out = Output {
            fail_with: Some(std::io::ErrorKind::BrokenPipe),
            ..Output::default()
        };
        let summary =
            read_rings::<FlowRecord>(&args(&dir, true, Kind::Flows), &mut out, &stop, |_| {})
                .unwrap();
        assert_eq!((summary.stats.read, out.flushes), (1, 1));
        let mut out = Output {
            fail_with: Some(std::io::ErrorKind::StorageFull),
            ..Output::default()
        };
        let err = read_rings::<FlowRecord>(&args(&dir, true, Kind::Flows), &mut out, &stop, |_| {})
            .unwrap_err();
        assert!(matches!(err, ReadError::Output(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
