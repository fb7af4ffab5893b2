//! [`RingWriter`]: the single writer of one ring file; [`WorkerRings`]: a worker's flow and counter
//! rings as one [`RecordSink`].
//!
//! The writer owns creating, resuming and replacing the file, and the write protocol:
//! 1. before it writes a slot it has not claimed, it stores the claim cursor (`pos + chunk`) and
//!    fences, so a reader that sees any byte of the new slot content also sees the new claim;
//! 2. it copies the record into the slot, stamping `ring_seq` = the record's absolute index;
//! 3. [`RingWriter::commit`] stores the commit cursor with release ordering, then lowers the claim
//!    cursor back to what was written.
//!
//! It never waits for readers and never allocates, locks or formats after opening. A second writer on
//! the same file is refused (an OFD lock held for the writer's lifetime).

use super::{HEADER_SIZE, MAGIC, RingError, RingInfo, RingSize, atomic_at, field, now_ns};
use crate::decode::RecordSink;
use crate::record::{CounterRecord, FlowRecord, RingRecord};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::marker::PhantomData;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// Permissions of a new ring file: the writer reads and writes, its group (the readers) reads,
/// nobody else: flow records name hosts and ports.
pub const RING_FILE_MODE: u32 = 0o640;

/// How to create a ring.
#[derive(Clone, Debug, Default)]
pub struct RingConfig {
    /// Capacity: records (a power of two) or bytes.
    pub size: RingSize,
    /// Worker id stored in the header.
    pub worker_id: u32,
    /// `msync` the ring at most this often, on commit (power-loss durability). `None`: never (the
    /// default; a crashed process loses nothing committed, the page cache outlives it).
    pub msync_interval: Option<Duration>,
}

/// What [`RingWriter::open`] found.
#[derive(Debug)]
pub enum RingOpen {
    /// No file existed: a new generation.
    Created,
    /// A compatible file existed: its generation continues at its commit cursor.
    Resumed { epoch: u64, commit: u64 },
    /// A file of another layout (version, schema, capacity, ...) or a damaged one existed: replaced by
    /// a new generation; readers of the old file finish it, then switch.
    Replaced { reason: RingError },
}

/// The single writer of one ring file of `R` records.
pub struct RingWriter<R: RingRecord> {
    /// The mapping; `slots`, `commit` and `claim` point into it.
    map: MmapRaw,
    /// Holds the OFD write lock for as long as the writer lives.
    _file: File,
    slots: *mut R,
    mask: u64,
    /// Sequence number of the next record pushed.
    pos: u64,
    /// Last value stored in the commit cursor.
    committed: u64,
    /// Last value stored in the claim cursor.
    claimed: u64,
    /// Claim left by a previous writer that died mid-batch: its slots may be torn, so the claim
    /// cursor never goes below it.
    claim_floor: u64,
    /// Records claimed at a time; also the most records pushed without a commit.
    chunk: u64,
    msync: Option<(Duration, Instant)>,
    info: RingInfo,
    path: PathBuf,
    opened: RingOpen,
    _records: PhantomData<R>,
}

// SAFETY: the raw pointers point into `map`, which the writer owns and moves with it; nothing else in
// this process aliases them, so the writer may move to (and be used from) another thread.
unsafe impl<R: RingRecord> Send for RingWriter<R> {}

impl<R: RingRecord> std::fmt::Debug for RingWriter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("committed", &self.committed)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<R: RingRecord> RingWriter<R> {
    /// Open the ring of `config.worker_id` for `R` in `dir` (created if missing): `flows-<w>.ring`.
    pub fn open_in_dir(dir: &Path, config: &RingConfig) -> Result<Self, RingError> {
        std::fs::create_dir_all(dir).map_err(|e| RingError::io(dir, e))?;
        Self::open(
            &dir.join(super::ring_file_name::<R>(config.worker_id)),
            config,
        )
    }

    /// Open `path` for writing: resume a compatible ring (same kind, schema, capacity and worker),
    /// replace an incompatible or damaged one by a new generation, create a missing one. A file that
    /// is not a ring, or a ring another writer holds, is refused.
    pub fn open(path: &Path, config: &RingConfig) -> Result<Self, RingError> {
        let capacity = config.size.capacity(size_of::<R>())?;
        loop {
            let existing = match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    match Self::create(path, capacity, config, None)? {
                        Some(writer) => return Ok(writer),
                        None => continue, // another writer created it first: look again
                    }
                }
                Err(e) => return Err(RingError::io(path, e)),
            };
            lock_for_writing(path, &existing)?;
            if !same_file(path, &existing)? {
                continue; // replaced between open and lock
            }
            let len = existing
                .metadata()
                .map_err(|e| RingError::io(path, e))?
                .len();
            let mut header = vec![0u8; HEADER_SIZE.min(len as usize)];
            std::os::unix::fs::FileExt::read_exact_at(&existing, &mut header, 0)
                .map_err(|e| RingError::io(path, e))?;
            let reason = match RingInfo::parse::<R>(path, &header, len) {
                Ok(info) if info.capacity == capacity && info.worker_id == config.worker_id => {
                    if cursors_consistent(&header, capacity) {
                        return Self::resume(path, existing, info, config);
                    }
                    RingError::BadHeader {
                        path: path.to_path_buf(),
                        what: "commit and claim cursors are inconsistent",
                    }
                }
                Ok(info) => RingError::OtherLayout {
                    path: path.to_path_buf(),
                    found_capacity: info.capacity,
                    found_worker: info.worker_id,
                    capacity,
                    worker: config.worker_id,
                },
                Err(e @ RingError::WrongMagic { .. }) => return Err(e),
                Err(e) => e,
            };
            let writer = Self::create(path, capacity, config, Some(existing))?;
            if let Some(mut writer) = writer {
                writer.opened = RingOpen::Replaced { reason };
                return Ok(writer);
            }
        }
    }

    /// Build a new generation in a temporary file and move it to `path`: replacing `existing`
    /// (whose lock we hold), or only if `path` still does not exist (`None` returned when it does).
    fn create(
        path: &Path,
        capacity: u64,
        config: &RingConfig,
        existing: Option<File>,
    ) -> Result<Option<Self>, RingError> {
        let name = path
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(super::temp_file_name(&name, std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(RING_FILE_MODE)
            .open(&tmp)
            .map_err(|e| RingError::io(&tmp, e))?;
        // Exactly RING_FILE_MODE whatever the umask: records are readable by the owner's group.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(RING_FILE_MODE))
            .map_err(|e| RingError::io(&tmp, e))?;
        let result = Self::initialize(&tmp, file, capacity, config).and_then(|writer| {
            let placed = if existing.is_some() {
                std::fs::rename(&tmp, path)
            } else {
                std::fs::hard_link(&tmp, path)
            };
            match placed {
                Ok(()) => Ok(Some(writer)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(RingError::io(path, e)),
            }
        });
        // After a rename the name is gone already; after a link or a failure, drop the temporary name.
        let _ = std::fs::remove_file(&tmp);
        drop(existing);
        let mut writer = result?;
        if let Some(w) = writer.as_mut() {
            w.path = path.to_path_buf();
        }
        Ok(writer)
    }

    fn initialize(
        tmp: &Path,
        file: File,
        capacity: u64,
        config: &RingConfig,
    ) -> Result<Self, RingError> {
        lock_for_writing(tmp, &file)?;
        let info = RingInfo::new::<R>(capacity, config.worker_id);
        file.set_len(info.file_len())
            .map_err(|e| RingError::io(tmp, e))?;
        preallocate(tmp, &file, 0, HEADER_SIZE as u64)?;
        preallocate(
            tmp,
            &file,
            info.data_offset,
            info.file_len() - info.data_offset,
        )?;
        let map = map_file(tmp, &file, info.file_len())?;
        let mut header = [0u8; HEADER_SIZE];
        info.emit(&mut header);
        // SAFETY: the mapping is at least HEADER_SIZE long and nobody else can have it mapped with a
        // magic yet (a reader refuses the file until the magic is stored below).
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), map.as_mut_ptr(), HEADER_SIZE) };
        let writer = Self::from_parts(tmp, map, file, info, 0, 0, config);
        writer.announce(0);
        // The magic goes last: a reader that sees it sees a complete header.
        fence(Ordering::Release);
        // SAFETY: offset 0 of a page-aligned mapping of at least HEADER_SIZE bytes.
        let magic = unsafe { atomic_at(writer.map.as_ptr(), field::MAGIC.start) };
        magic.store(u64::from_ne_bytes(MAGIC), Ordering::Release);
        Ok(writer)
    }

    fn resume(
        path: &Path,
        file: File,
        info: RingInfo,
        config: &RingConfig,
    ) -> Result<Self, RingError> {
        let map = map_file(path, &file, info.file_len())?;
        // SAFETY: offsets within the header of a page-aligned mapping.
        let (commit, claim, epoch) = unsafe {
            (
                atomic_at(map.as_ptr(), field::COMMIT).load(Ordering::Acquire),
                atomic_at(map.as_ptr(), field::CLAIM).load(Ordering::Acquire),
                atomic_at(map.as_ptr(), field::WRITER_EPOCH).load(Ordering::Acquire),
            )
        };
        let mut writer = Self::from_parts(path, map, file, info, commit, claim, config);
        writer.announce(epoch);
        writer.opened = RingOpen::Resumed {
            epoch: epoch + 1,
            commit,
        };
        Ok(writer)
    }

    fn from_parts(
        path: &Path,
        map: MmapRaw,
        file: File,
        info: RingInfo,
        commit: u64,
        claim: u64,
        config: &RingConfig,
    ) -> Self {
        // SAFETY: data_offset + capacity * size_of::<R>() is within the mapping (checked by
        // RingInfo::parse or set by RingInfo::new); data_offset is page aligned, so slots are aligned.
        let slots = unsafe { map.as_mut_ptr().add(info.data_offset as usize) }.cast::<R>();
        let claim = claim.max(commit);
        RingWriter {
            map,
            _file: file,
            slots,
            mask: info.capacity - 1,
            pos: commit,
            committed: commit,
            claimed: claim,
            claim_floor: claim,
            chunk: (info.capacity / 4).clamp(1, 1024),
            msync: config.msync_interval.map(|d| (d, Instant::now())),
            info,
            path: path.to_path_buf(),
            opened: RingOpen::Created,
            _records: PhantomData,
        }
    }

    /// Store this process as the ring's writer; the epoch goes last, readers watch it.
    fn announce(&self, previous_epoch: u64) {
        self.cursor(field::WRITER_PID)
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        self.cursor(field::WRITER_STARTED_NS)
            .store(now_ns(), Ordering::Relaxed);
        self.cursor(field::WRITER_EPOCH)
            .store(previous_epoch + 1, Ordering::Release);
    }

    fn cursor(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the 8-aligned cursor fields inside the mapped header.
        unsafe { atomic_at(self.map.as_ptr(), offset) }
    }

    /// Write one record into the next slot (not visible to readers before [`RingWriter::commit`]).
    /// Overwrites the oldest record when the ring is full; publishes a batch by itself when
    /// `min(capacity/4, 1024)` records are pending.
    #[inline]
    pub fn push(&mut self, record: &R) {
        if self.pos == self.claimed {
            self.claim_more();
        }
        // SAFETY: `pos & mask` < capacity, so the slot lies in the record area of the mapping, aligned
        // for R; no reference to it exists in this process other than the one made here.
        unsafe {
            let slot = self.slots.add((self.pos & self.mask) as usize);
            slot.write(*record);
            (*slot).set_ring_seq(self.pos);
        }
        self.pos += 1;
    }

    #[cold]
    fn claim_more(&mut self) {
        if self.pos - self.committed >= self.chunk {
            self.commit();
        }
        self.claimed = self.pos + self.chunk;
        self.cursor(field::CLAIM)
            .store(self.claimed, Ordering::Relaxed);
        // Orders the claim store before every later slot store (StoreStore): a reader that copied a
        // byte of a slot written after this point loads, after its own acquire fence, a claim at
        // least this large.
        fence(Ordering::SeqCst);
    }

    /// Publish every pushed record: store the commit cursor (release), then lower the claim cursor to
    /// the records written so that the whole ring is readable.
    #[inline]
    pub fn commit(&mut self) {
        if self.pos == self.committed {
            return;
        }
        self.cursor(field::COMMIT)
            .store(self.pos, Ordering::Release);
        self.committed = self.pos;
        let claim = self.pos.max(self.claim_floor);
        if claim != self.claimed {
            self.claimed = claim;
            self.cursor(field::CLAIM).store(claim, Ordering::Release);
        }
        if let Some((interval, last)) = self.msync.as_mut()
            && last.elapsed() >= *interval
        {
            *last = Instant::now();
            // Best effort: the data is in the page cache either way.
            let _ = self.map.flush_async();
        }
    }

    /// Commit, then write the whole mapping to disk and wait for it (`msync(MS_SYNC)`).
    pub fn sync(&mut self) -> Result<(), RingError> {
        self.commit();
        self.map.flush().map_err(|e| RingError::io(&self.path, e))
    }

    /// Records committed so far in this generation (the commit cursor).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Records pushed so far (committed or not).
    pub fn pushed(&self) -> u64 {
        self.pos
    }

    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the ring was created, resumed or replaced.
    pub fn opened(&self) -> &RingOpen {
        &self.opened
    }
}

impl<R: RingRecord> Drop for RingWriter<R> {
    /// Records pushed are committed: dropping the writer is a clean stop.
    fn drop(&mut self) {
        self.commit();
    }
}

/// What [`remove_stale_temp_files`] did.
#[derive(Debug, Default)]
pub struct StaleTempFiles {
    /// Files removed, with the pid in their name.
    pub removed: Vec<(PathBuf, u32)>,
    /// Files that should have gone but could not be removed.
    pub failed: Vec<(PathBuf, std::io::Error)>,
}

/// Remove the temporary files ([`super::temp_file_name`]) in `dir` that a writer which no longer
/// runs left behind: one killed (SIGKILL, a crash, power loss) while it built a new ring. Only
/// names of that pattern are touched, and only when their pid is not a live process or is this
/// process (which has built no ring yet when it calls this at startup, and may carry the pid of a
/// predecessor, e.g. as pid 1 of a container). Call it before opening the rings of `dir`.
pub fn remove_stale_temp_files(dir: &Path) -> StaleTempFiles {
    let mut found = StaleTempFiles::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(super::parse_temp_file_name) else {
            continue;
        };
        if pid != std::process::id() && process_exists(pid) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => found.removed.push((path, pid)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => found.failed.push((path, e)),
        }
    }
    found
}

/// Whether a process `pid` exists (also one of another user, which we may not signal).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The two rings of one worker (flows and counters), as the sink the decoder writes into.
#[derive(Debug)]
pub struct WorkerRings {
    pub flows: RingWriter<FlowRecord>,
    pub counters: RingWriter<CounterRecord>,
}

impl WorkerRings {
    /// Open (create, resume or replace) `flows-<w>.ring` and `counters-<w>.ring` in `dir`.
    pub fn open(dir: &Path, config: &RingConfig) -> Result<Self, RingError> {
        Ok(WorkerRings {
            flows: RingWriter::open_in_dir(dir, config)?,
            counters: RingWriter::open_in_dir(dir, config)?,
        })
    }

    /// Publish what was pushed to both rings (call once per received batch).
    #[inline]
    pub fn commit(&mut self) {
        self.flows.commit();
        self.counters.commit();
    }
}

impl RecordSink for WorkerRings {
    #[inline]
    fn flow(&mut self, record: &FlowRecord) {
        self.flows.push(record);
    }
    #[inline]
    fn counters(&mut self, record: &CounterRecord) {
        self.counters.push(record);
    }
}

/// Take the single-writer lock (an OFD write lock on the whole file, released when it is closed).
fn lock_for_writing(path: &Path, file: &File) -> Result<(), RingError> {
    // SAFETY: flock is plain data; zeroed is a valid value, and the fields are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: valid fd and a valid flock struct for the duration of the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
        return Err(RingError::io(path, err));
    }
    // Name the holder when the kernel tells (OFD locks report pid -1).
    // SAFETY: as above.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as _;
    probe.l_whence = libc::SEEK_SET as _;
    // SAFETY: as above.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) };
    let mut pid = i64::from(probe.l_pid);
    let mut header = [0u8; 16];
    if pid <= 0
        && std::os::unix::fs::FileExt::read_exact_at(file, &mut header, field::WRITER_PID as u64)
            .is_ok()
    {
        pid = u64::from_ne_bytes(header[..8].try_into().unwrap_or_default()) as i64;
    }
    Err(RingError::Locked {
        path: path.to_path_buf(),
        pid,
    })
}

/// A writer leaves `commit <= claim <= commit + chunk`; anything else is damage, not a crash.
fn cursors_consistent(header: &[u8], capacity: u64) -> bool {
    let at = |offset: usize| {
        header
            .get(offset..offset + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
    };
    match (at(field::COMMIT), at(field::CLAIM)) {
        (Some(commit), Some(claim)) => claim >= commit && claim - commit <= capacity / 4,
        _ => false,
    }
}

/// Whether `file` is still the file at `path`.
fn same_file(path: &Path, file: &File) -> Result<bool, RingError> {
    let open = file.metadata().map_err(|e| RingError::io(path, e))?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RingError::io(path, e)),
    }
}

/// Reserve blocks so that a full disk shows up now, not as SIGBUS on a later page fault. File
/// systems without fallocate keep the sparse file `set_len` made.
fn preallocate(path: &Path, file: &File, offset: u64, len: u64) -> Result<(), RingError> {
    loop {
        // SAFETY: plain syscall on a valid fd.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                0,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            _ if rc == 0 => Ok(()),
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(()),
            // A signal caught meanwhile (tmpfs gives up on any): the stop is looked at once the
            // ring is made, so go on.
            Some(libc::EINTR) => continue,
            _ => Err(RingError::io(path, err)),
        };
    }
}

fn map_file(path: &Path, file: &File, len: u64) -> Result<MmapRaw, RingError> {
    let len = usize::try_from(len).map_err(|_| RingError::BadHeader {
        path: path.to_path_buf(),
        what: "ring larger than the address space",
    })?;
    MmapOptions::new()
        .len(len)
        .populate()
        .map_raw(file)
        .map_err(|e| RingError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that ran and is gone (a writer killed with SIGKILL).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::os::unix::process::parent_id();
        let own = std::process::id();
        let names = [
            (super::super::temp_file_name("flows-3.ring", dead), true),
            (super::super::temp_file_name("counters-0.ring", dead), true),
            // Ours: this process has made no ring in `dir`, so a predecessor with our pid did.
            (super::super::temp_file_name("flows-1.ring", own), true),
            // A live writer's file, and names of other patterns, stay.
            (super::super::temp_file_name("flows-2.ring", live), false),
            (format!(".notes.{dead}.tmp"), false),
            (format!("flows-3.ring.{dead}.tmp"), false),
            ("flows-3.ring".to_string(), false),
        ];
        for (name, _) in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let found = remove_stale_temp_files(dir.path());
        assert!(found.failed.is_empty(), "{:?}", found.failed);
        let mut removed: Vec<_> = found
            .removed
            .iter()
            .map(|(p, pid)| (p.file_name().unwrap().to_string_lossy().into_owned(), *pid))
            .collect();
        removed.sort();
        let mut expected: Vec<_> = names
            .iter()
            .filter(|(_, stale)| *stale)
            .map(|(name, _)| {
                (
                    name.clone(),
                    super::super::parse_temp_file_name(name).unwrap(),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(removed, expected);
        for (name, stale) in &names {
            assert_eq!(dir.path().join(name).exists(), !stale, "{name}");
        }
    }

    #[test]
    fn new_ring_files_are_mode_0640_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file creation mask; restored below.
        let previous = unsafe { libc::umask(0o077) };
        let rings = WorkerRings::open(
            dir.path(),
            &RingConfig {
                size: RingSize::Records(16),
                ..Default::default()
            },
        );
        // SAFETY: as above.
        unsafe { libc::umask(previous) };
        let rings = rings.unwrap();
        for path in [rings.flows.path(), rings.counters.path()] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{}", path.display());
        }
    }
}
