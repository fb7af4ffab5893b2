//! [`RingReader`]: reads one ring file read-only while its writer writes it; [`DirReader`]: all
//! rings of one record kind in a directory, merged.
//!
//! A read copies a batch of slots below the commit cursor, then (after an acquire fence) loads the
//! claim cursor: slots of sequence numbers below `claim - capacity` may have been rewritten during
//! the copy and are dropped and counted as lost, like records the writer overwrote before the
//! reader got to them. Every record kept is checked to carry its own sequence number. So a reader
//! returns each record at most once, intact, in order, and counts every gap exactly.
//!
//! The reader never writes to the file and never blocks the writer. It follows a live writer by
//! polling the commit cursor; [`IdleBackoff`] sleeps between empty polls. It notices a writer that
//! resumed the ring (epoch) and a ring replaced by a new generation (another file at the path),
//! which it switches to once it has read the old one to its end.

use super::{HEADER_SIZE, RingError, RingInfo, atomic_at, field, parse_ring_file_name};
use crate::record::RingRecord;
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::io::ErrorKind;
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

/// Where a new reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still in the ring.
    Oldest,
    /// The next record committed after opening.
    Now,
    /// This sequence number (e.g. a position saved earlier; check [`RingInfo::generation`] too). A
    /// cursor older than the oldest record counts the difference as lost on the first read.
    Cursor(u64),
}

/// What a reader has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records returned.
    pub read: u64,
    /// Records skipped because the writer overwrote them before (or while) they were read.
    pub lost: u64,
    /// Slots in the readable window whose `ring_seq` was not the expected one (skipped; zero unless the
    /// file was damaged or written by something else).
    pub corrupt: u64,
    /// Writers that resumed a ring while it was being read.
    pub writer_restarts: u64,
    /// Rings replaced by a new generation while being read.
    pub new_generations: u64,
}

impl std::ops::AddAssign for ReadStats {
    fn add_assign(&mut self, other: ReadStats) {
        self.read += other.read;
        self.lost += other.lost;
        self.corrupt += other.corrupt;
        self.writer_restarts += other.writer_restarts;
        self.new_generations += other.new_generations;
    }
}

/// A change of writer noticed by [`RingReader::check_writer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingChange {
    /// A new writer process resumed the ring: the sequence continues, nothing committed was lost.
    WriterRestarted { epoch: u64, pid: u64 },
    /// The file was replaced by a new generation; the reader now reads it from its first record
    /// (those already overwritten are counted lost).
    NewGeneration { previous: u64, generation: u64 },
}

/// A read-only view of one ring file that follows its writer.
pub struct RingReader<R: RingRecord> {
    path: PathBuf,
    /// Keeps the inode the mapping belongs to (also once the path names another file).
    file: File,
    map: Mmap,
    slots: *const R,
    info: RingInfo,
    mask: u64,
    /// Sequence number of the next record to return.
    pos: u64,
    /// Stop before this sequence number (a snapshot read), if set.
    end: Option<u64>,
    epoch: u64,
    stats: ReadStats,
    _records: PhantomData<R>,
}

// SAFETY: the raw pointer points into `map`, owned by the reader and moved with it; the reader only
// reads through it.
unsafe impl<R: RingRecord> Send for RingReader<R> {}

impl<R: RingRecord> std::fmt::Debug for RingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("info", &self.info)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<R: RingRecord> RingReader<R> {
    /// Open the ring at `path`, check it holds `R` records of this build's schema, and position the
    /// reader at `start`.
    pub fn open(path: &Path, start: Start) -> Result<Self, RingError> {
        let file = File::open(path).map_err(|e| RingError::io(path, e))?;
        let len = file.metadata().map_err(|e| RingError::io(path, e))?.len();
        if len < HEADER_SIZE as u64 {
            // Too short to map a header: parse what is there for the most precise error.
            let mut head = vec![0u8; len as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0)
                .map_err(|e| RingError::io(path, e))?;
            return Err(RingInfo::parse::<R>(path, &head, len).err().unwrap_or(
                RingError::Incomplete {
                    path: path.to_path_buf(),
                },
            ));
        }
        let map_len = usize::try_from(len).map_err(|_| RingError::BadHeader {
            path: path.to_path_buf(),
            what: "ring larger than the address space",
        })?;
        // SAFETY (of reading the mapping at all): the file may change under us — that is the point;
        // the bytes are only read through atomics or copied into `R: Pod` values checked afterwards.
        let map = unsafe { MmapOptions::new().len(map_len).map(&file) }
            .map_err(|e| RingError::io(path, e))?;
        // The magic is stored last by the writer: acquire it, then copy the rest of the header.
        // SAFETY: offset 0 of a page-aligned mapping of at least HEADER_SIZE bytes.
        unsafe { atomic_at(map.as_ptr(), field::MAGIC.start) }.load(Ordering::Acquire);
        let mut header = [0u8; HEADER_SIZE];
        // SAFETY: the mapping holds at least HEADER_SIZE bytes.
        unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), header.as_mut_ptr(), HEADER_SIZE) };
        let info = RingInfo::parse::<R>(path, &header, len)?;
        // SAFETY: RingInfo::parse checked data_offset + capacity * size_of::<R>() <= len.
        let slots = unsafe { map.as_ptr().add(info.data_offset as usize) }.cast::<R>();
        let mut reader = RingReader {
            path: path.to_path_buf(),
            file,
            map,
            slots,
            mask: info.capacity - 1,
            info,
            pos: 0,
            end: None,
            epoch: 0,
            stats: ReadStats::default(),
            _records: PhantomData,
        };
        reader.epoch = reader.cursor(field::WRITER_EPOCH).load(Ordering::Acquire);
        let commit = reader.committed();
        reader.pos = match start {
            Start::Oldest => reader.oldest(),
            Start::Now => commit,
            Start::Cursor(c) if c > commit => {
                return Err(RingError::CursorAhead {
                    path: path.to_path_buf(),
                    cursor: c,
                    commit,
                });
            }
            Start::Cursor(c) => c,
        };
        Ok(reader)
    }

    fn cursor(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the 8-aligned atomic fields inside the mapped header.
        unsafe { atomic_at(self.map.as_ptr(), offset) }
    }

    /// The commit cursor: records ever committed to this generation.
    pub fn committed(&self) -> u64 {
        self.cursor(field::COMMIT).load(Ordering::Acquire)
    }

    /// Sequence number of the oldest record that can still be read.
    pub fn oldest(&self) -> u64 {
        self.oldest_below(self.committed())
    }

    /// The oldest record still in the ring, given `commit` (loaded before): no further back than
    /// one ring's worth from the claim cursor, or from `commit` itself when the file says claim is
    /// behind it (a writer never leaves it so; a damaged file can), and never past `commit`.
    fn oldest_below(&self, commit: u64) -> u64 {
        let claim = self.cursor(field::CLAIM).load(Ordering::Acquire);
        claim
            .max(commit)
            .saturating_sub(self.info.capacity)
            .min(commit)
    }

    /// Copy the next records into `buf`; returns how many (0: nothing new, or the snapshot end).
    /// Records overwritten before they could be read are skipped and counted in
    /// [`ReadStats::lost`].
    pub fn read(&mut self, buf: &mut [R]) -> usize {
        loop {
            let (copied, kept) = self.read_once(buf);
            if kept > 0 || copied == 0 {
                return kept;
            }
        }
    }

    /// One copy of up to `buf.len()` slots: (slots copied, records kept at the start of `buf`).
    fn read_once(&mut self, buf: &mut [R]) -> (usize, usize) {
        let commit = self.committed();
        let limit = self.end.map_or(commit, |end| end.min(commit));
        // Skip what is already gone (claim loaded after commit: the window is conservative).
        let oldest = self.oldest_below(commit).min(limit);
        if self.pos < oldest {
            self.stats.lost += oldest - self.pos;
            self.pos = oldest;
        }
        // At most one ring's worth: `oldest` already bounds it, whatever the cursors say; the
        // copy below relies on it.
        let n = limit
            .saturating_sub(self.pos)
            .min(buf.len() as u64)
            .min(self.info.capacity) as usize;
        if n == 0 {
            return (0, 0);
        }
        let first = (self.pos & self.mask) as usize;
        let before_wrap = n.min(self.info.capacity as usize - first);
        // SAFETY: n <= capacity, so slot indices first..first+before_wrap and 0..n-before_wrap are
        // below capacity, inside the mapped record area; `buf` holds n records; R is Pod, any
        // bytes are a valid R.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slots.add(first), buf.as_mut_ptr(), before_wrap);
            std::ptr::copy_nonoverlapping(
                self.slots,
                buf.as_mut_ptr().add(before_wrap),
                n - before_wrap,
            );
        }
        // Pairs with the writer's fence after its claim store: if any byte copied above came from a
        // slot rewritten after we loaded `commit`, this load sees the claim that covers it.
        fence(Ordering::Acquire);
        let safe_from = self
            .cursor(field::CLAIM)
            .load(Ordering::Relaxed)
            .saturating_sub(self.info.capacity);
        let torn = (safe_from.saturating_sub(self.pos) as usize).min(n);
        let mut kept = 0;
        for (i, seq) in (torn..n).zip(self.pos + torn as u64..) {
            let Some(record) = buf.get(i).copied() else {
                break;
            };
            if record.ring_seq() == seq {
                if let Some(slot) = buf.get_mut(kept) {
                    *slot = record;
                }
                kept += 1;
            } else {
                self.stats.corrupt += 1;
            }
        }
        self.stats.lost += torn as u64;
        self.stats.read += kept as u64;
        self.pos += n as u64;
        (n, kept)
    }

    /// Check the writer: a resumed ring (new epoch) or a replaced file (new generation, switched to
    /// once this one is read to its end). Cheap enough to call whenever a read came back empty.
    pub fn check_writer(&mut self) -> Result<Option<RingChange>, RingError> {
        let epoch = self.cursor(field::WRITER_EPOCH).load(Ordering::Acquire);
        if epoch != self.epoch {
            self.epoch = epoch;
            self.stats.writer_restarts += 1;
            let pid = self.cursor(field::WRITER_PID).load(Ordering::Relaxed);
            return Ok(Some(RingChange::WriterRestarted { epoch, pid }));
        }
        let open = self
            .file
            .metadata()
            .map_err(|e| RingError::io(&self.path, e))?;
        let named = match std::fs::metadata(&self.path) {
            Ok(named) => named,
            // Removed: nothing more will come, keep what we have.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RingError::io(&self.path, e)),
        };
        if (named.dev(), named.ino()) == (open.dev(), open.ino()) || self.pos < self.committed() {
            return Ok(None);
        }
        // Every record of the new generation was written after this reader started: those already
        // overwritten count as lost.
        let mut next = RingReader::open(&self.path, Start::Cursor(0))?;
        next.stats = self.stats;
        next.stats.new_generations += 1;
        let change = RingChange::NewGeneration {
            previous: self.info.generation,
            generation: next.info.generation,
        };
        *self = next;
        Ok(Some(change))
    }

    /// Stop at the records committed now: later [`RingReader::read`]s return 0 past them.
    pub fn stop_at_current_end(&mut self) {
        self.end = Some(self.committed());
    }

    /// True when a snapshot end is set and reached.
    pub fn at_end(&self) -> bool {
        self.end.is_some_and(|end| self.pos >= end)
    }

    /// Sequence number of the next record [`RingReader::read`] returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A change in a ring directory, reported by [`DirReader::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirChange {
    /// A ring file appeared and is now read (from its first record; any already overwritten are
    /// counted lost).
    Added { path: PathBuf },
    /// A ring's writer changed.
    Ring { path: PathBuf, change: RingChange },
}

/// All rings of record type `R` in one directory (`flows-*.ring` or `counters-*.ring`).
///
/// Merging: batches are taken from the rings in turn (round robin, each ring in its own order). There
/// is no global time order across workers; records of one exporter stay in order because one exporter
/// socket always lands on one worker.
#[derive(Debug)]
pub struct DirReader<R: RingRecord> {
    dir: PathBuf,
    rings: Vec<RingReader<R>>,
    /// Ring to read first on the next call.
    next: usize,
    /// Start position for rings that appear while following.
    snapshot: bool,
}

impl<R: RingRecord> DirReader<R> {
    /// Open every ring of kind `R` in `dir` at `start`, in worker order. Files that are not rings of
    /// this kind by name are ignored; a ring file that cannot be read is an error.
    pub fn open(dir: &Path, start: Start) -> Result<Self, RingError> {
        let mut reader = DirReader {
            dir: dir.to_path_buf(),
            rings: Vec::new(),
            next: 0,
            snapshot: false,
        };
        for path in reader.ring_paths()? {
            reader.rings.push(RingReader::open(&path, start)?);
        }
        Ok(reader)
    }

    /// Ring files of kind `R` in the directory, sorted by worker id.
    fn ring_paths(&self) -> Result<Vec<PathBuf>, RingError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| RingError::io(&self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RingError::io(&self.dir, e))?;
            let name = entry.file_name();
            if let Some(worker) = name.to_str().and_then(parse_ring_file_name::<R>) {
                found.push((worker, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, path)| path).collect())
    }

    /// Copy the next batch from the next ring that has records; 0 when none has.
    pub fn read(&mut self, buf: &mut [R]) -> usize {
        let count = self.rings.len();
        for k in 0..count {
            let i = (self.next + k) % count;
            let Some(ring) = self.rings.get_mut(i) else {
                break;
            };
            let n = ring.read(buf);
            if n > 0 {
                self.next = (i + 1) % count;
                return n;
            }
        }
        0
    }

    /// Look for writer changes and new ring files; call when [`DirReader::read`] returned 0.
    pub fn poll(&mut self) -> Result<Vec<DirChange>, RingError> {
        let mut changes = Vec::new();
        for ring in &mut self.rings {
            if let Some(change) = ring.check_writer()? {
                changes.push(DirChange::Ring {
                    path: ring.path().to_path_buf(),
                    change,
                });
            }
        }
        if self.snapshot {
            return Ok(changes);
        }
        for path in self.ring_paths()? {
            if self.rings.iter().any(|r| r.path() == path) {
                continue;
            }
            // A ring that appears while following is new: read it from its first record, counting
            // any already overwritten as lost.
            match RingReader::open(&path, Start::Cursor(0)) {
                Ok(ring) => {
                    self.rings.push(ring);
                    changes.push(DirChange::Added { path });
                }
                // Still being created: try again at the next poll.
                Err(RingError::Incomplete { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    /// Read only what is committed now, in every ring (no new rings either).
    pub fn stop_at_current_end(&mut self) {
        self.snapshot = true;
        for ring in &mut self.rings {
            ring.stop_at_current_end();
        }
    }

    /// The rings being read.
    pub fn rings(&self) -> &[RingReader<R>] {
        &self.rings
    }

    /// Sum of every ring's statistics.
    pub fn stats(&self) -> ReadStats {
        let mut total = ReadStats::default();
        for ring in &self.rings {
            total += ring.stats();
        }
        total
    }
}

/// Sleeps between polls that found nothing: from 100 µs, doubling up to 20 ms, back to the start
/// when records arrive. A follower costs no CPU when the writer is idle and adds at most 20 ms of
/// latency.
#[derive(Debug)]
pub struct IdleBackoff {
    delay: Duration,
}

impl IdleBackoff {
    const MIN: Duration = Duration::from_micros(100);
    const MAX: Duration = Duration::from_millis(20);

    pub fn new() -> Self {
        IdleBackoff { delay: Self::MIN }
    }

    /// Records arrived: the next wait starts short again.
    pub fn reset(&mut self) {
        self.delay = Self::MIN;
    }

    /// Sleep once, longer each time since the last reset.
    pub fn wait(&mut self) {
        std::thread::sleep(self.delay);
        self.delay = (self.delay * 2).min(Self::MAX);
    }
}

impl Default for IdleBackoff {
    fn default() -> Self {
        Self::new()
    }
}
