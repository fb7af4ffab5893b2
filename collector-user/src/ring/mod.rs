//! Ring files: the appliance's output, one mmap'd file per worker and record kind.
//!
//! This module owns the on-disk format (`docs/ring-format.md` is its written form): the 4 KiB header
//! ([`field`], [`RingInfo`]), the file names (`flows-<worker>.ring`, `counters-<worker>.ring`), the
//! ring size setting ([`RingSize`]) and the errors a ring can be refused with ([`RingError`]).
//! [`RingWriter`] (one per worker and kind, never blocks) and [`RingReader`] / [`DirReader`] (any
//! process, read-only, following live) live in [`writer`] and [`reader`]. It knows nothing of
//! decoders or sockets: it stores any [`RingRecord`].
//!
//! Concurrency in one sentence: the single writer publishes a *claim* cursor before it overwrites
//! slots and a *commit* cursor after it wrote them; a reader copies slots below the commit cursor and
//! then keeps only those the claim cursor (loaded after the copy) proves untouched.

pub mod reader;
pub mod writer;

pub use reader::{DirChange, DirReader, IdleBackoff, ReadStats, RingChange, RingReader, Start};
pub use writer::{RingConfig, RingOpen, RingWriter, WorkerRings};

use crate::record::{RecordKind, RingRecord};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// The first eight bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"CLCTRING";
/// Version of the file layout described here (header fields, cursors, slot placement).
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header; the record area starts at [`RingInfo::data_offset`], a multiple of it.
pub const HEADER_SIZE: usize = 4096;
/// Written in host byte order: a reader on a host of the other byte order sees it reversed.
pub const BYTE_ORDER_TAG: u32 = 0x0102_0304;
/// Smallest ring: one page of 256-byte records.
pub const MIN_CAPACITY: u64 = 16;
/// Largest ring accepted: 2^32 records (1 TiB of 256-byte records).
pub const MAX_CAPACITY: u64 = 1 << 32;
/// Record areas this large or larger start at a 2 MiB offset (huge-page friendly).
pub const HUGE_PAGE: u64 = 2 << 20;

/// Byte offsets of the header fields. Integers are host byte order.
///
/// Line 0 (identity) and line 1 (host) are written once before the magic and never change.
/// Line 2 is rewritten by each writer that opens the ring (atomics). Line 3 holds the two cursors the
/// writer stores per batch and every reader loads: alone on their cache line so that the cold fields
/// readers copy once are never invalidated by it.
pub mod field {
    use core::ops::Range;

    // --- line 0: identity
    pub const MAGIC: Range<usize> = 0..8;
    pub const BYTE_ORDER: Range<usize> = 8..12;
    pub const FORMAT_VERSION: Range<usize> = 12..14;
    /// [`crate::record::RecordKind`] as u16.
    pub const RECORD_KIND: Range<usize> = 14..16;
    pub const SCHEMA_VERSION: Range<usize> = 16..18;
    // 18..20: zero
    pub const RECORD_SIZE: Range<usize> = 20..24;
    /// Slots in the record area, a power of two.
    pub const CAPACITY: Range<usize> = 24..32;
    /// Random, non-zero; names the sequence space of `ring_seq` (new file, new generation).
    pub const GENERATION: Range<usize> = 32..40;
    /// When the file was created, ns since the Unix epoch.
    pub const CREATED_NS: Range<usize> = 40..48;
    /// Byte offset of slot 0: 4096, or 2 MiB for record areas of 2 MiB and more
    /// ([`super::data_offset_for`]; any other value is refused).
    pub const DATA_OFFSET: Range<usize> = 48..56;
    pub const WORKER_ID: Range<usize> = 56..60;
    pub const HEADER_SIZE: Range<usize> = 60..64;
    // --- line 1: host name, NUL padded
    pub const HOSTNAME: Range<usize> = 64..128;
    // --- line 2: the current writer (AtomicU64 each)
    /// Number of writers that opened this file: 1 after creation, +1 per resume. Stored last.
    pub const WRITER_EPOCH: usize = 128;
    pub const WRITER_PID: usize = 136;
    pub const WRITER_STARTED_NS: usize = 144;
    // --- line 3: cursors (AtomicU64 each)
    /// Records ever committed (release store after each batch).
    pub const COMMIT: usize = 192;
    /// One past the highest sequence number whose slot the writer may be writing.
    pub const CLAIM: usize = 200;
}

/// Why a ring file was refused or could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The OS error is part of the message (not a separate `source`, which `{:#}` would print a
    /// second time).
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: header not written yet (file being created)")]
    Incomplete { path: PathBuf },
    #[error("{path}: not a collector ring file (magic {found:02x?})")]
    WrongMagic { path: PathBuf, found: [u8; 8] },
    #[error("{path}: ring written on a host of the other byte order")]
    WrongByteOrder { path: PathBuf },
    #[error("{path}: ring format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("{path}: ring holds record kind {found}, expected {expected} ({expected_name})")]
    WrongKind {
        path: PathBuf,
        found: u16,
        expected: u16,
        expected_name: &'static str,
    },
    #[error("{path}: record schema version {found}, this build reads version {supported}")]
    WrongSchema {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("{path}: header is malformed: {what}")]
    BadHeader { path: PathBuf, what: &'static str },
    #[error(
        "{path}: holds {found_capacity} records of worker {found_worker}, configured for \
         {capacity} records of worker {worker}"
    )]
    OtherLayout {
        path: PathBuf,
        found_capacity: u64,
        found_worker: u32,
        capacity: u64,
        worker: u32,
    },
    #[error("{path}: file is {len} bytes, the header says {needed}: truncated")]
    Truncated {
        path: PathBuf,
        len: u64,
        needed: u64,
    },
    #[error("{path}: another writer holds this ring (pid {pid})")]
    Locked { path: PathBuf, pid: i64 },
    #[error("{path}: start cursor {cursor} is beyond the commit cursor {commit}")]
    CursorAhead {
        path: PathBuf,
        cursor: u64,
        commit: u64,
    },
    #[error(
        "ring size {0:?}: expected a power of two of records ({MIN_CAPACITY}..={MAX_CAPACITY}), or bytes with a KiB/MiB/GiB suffix giving that many 256-byte records"
    )]
    BadSize(String),
}

impl RingError {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> RingError {
        RingError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Lower-case name of a record kind, as used in file names and `--kind`.
pub const fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Flow => "flows",
        RecordKind::Counters => "counters",
    }
}

/// File name of the ring of `worker` for record type `R`: `flows-3.ring`, `counters-0.ring`.
pub fn ring_file_name<R: RingRecord>(worker: u32) -> String {
    format!("{}-{worker}.ring", kind_name(R::KIND))
}

/// The worker id encoded in a ring file name of kind `R`, or `None` when the name is not one.
pub fn parse_ring_file_name<R: RingRecord>(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(kind_name(R::KIND))?.strip_prefix('-')?;
    let digits = rest.strip_suffix(".ring")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Name of the temporary file process `pid` builds a new ring `ring_name` in before moving it into
/// place: `.flows-3.ring.<pid>.tmp`.
pub fn temp_file_name(ring_name: &str, pid: u32) -> String {
    format!(".{ring_name}.{pid}.tmp")
}

/// The pid in a [`temp_file_name`] of a flow or counter ring, or `None` when the name is not one.
pub fn parse_temp_file_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (ring, pid) = rest.rsplit_once('.')?;
    let is_ring = parse_ring_file_name::<crate::record::FlowRecord>(ring).is_some()
        || parse_ring_file_name::<crate::record::CounterRecord>(ring).is_some();
    if !is_ring || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// A ring size as configured: a record count (a power of two) or a byte size (`64MiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSize {
    Records(u64),
    Bytes(u64),
}

impl RingSize {
    /// Capacity in records of `record_size` bytes each: a power of two within
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`], or [`RingError::BadSize`].
    pub fn capacity(self, record_size: usize) -> Result<u64, RingError> {
        let records = match self {
            RingSize::Records(n) => n,
            RingSize::Bytes(b) if b % record_size as u64 == 0 => b / record_size as u64,
            RingSize::Bytes(_) => u64::MAX,
        };
        if records.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&records) {
            Ok(records)
        } else {
            Err(RingError::BadSize(self.to_string()))
        }
    }
}

impl Default for RingSize {
    /// 2^18 records: 64 MiB of 256-byte records per ring.
    fn default() -> Self {
        RingSize::Records(1 << 18)
    }
}

impl std::fmt::Display for RingSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingSize::Records(n) => write!(f, "{n}"),
            RingSize::Bytes(b) => write!(f, "{b}B"),
        }
    }
}

impl std::str::FromStr for RingSize {
    type Err = RingError;

    /// `262144` (records) or `64MiB`, `512KiB`, `1GiB`, `4096B` (bytes). The value is checked by
    /// [`RingSize::capacity`] too, so that a flag is refused when parsed.
    fn from_str(s: &str) -> Result<Self, RingError> {
        let bad = || RingError::BadSize(s.to_string());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim() {
            "" => {
                let size = RingSize::Records(n);
                size.capacity(256).map_err(|_| bad())?;
                return Ok(size);
            }
            "B" => 1,
            "KiB" | "K" | "k" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            _ => return Err(bad()),
        };
        let size = RingSize::Bytes(n.checked_mul(multiplier).ok_or_else(bad)?);
        size.capacity(256).map_err(|_| bad())?;
        Ok(size)
    }
}

/// Where the record area of `area` bytes starts: right after the header, or at [`HUGE_PAGE`] when
/// the area is that large or larger (so that it can be mapped with huge pages). A reader refuses a
/// header that says anything else.
pub const fn data_offset_for(area: u64) -> u64 {
    if area >= HUGE_PAGE {
        HUGE_PAGE
    } else {
        HEADER_SIZE as u64
    }
}

/// The identity of a ring file, read from its header (lines 0 and 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingInfo {
    pub record_kind: u16,
    pub schema_version: u16,
    pub record_size: u32,
    pub capacity: u64,
    pub generation: u64,
    pub created_ns: u64,
    pub data_offset: u64,
    pub worker_id: u32,
    pub hostname: String,
}

impl RingInfo {
    /// A new ring's identity for records of type `R`: data offset chosen from the capacity, a fresh
    /// generation, this host and the current time.
    pub fn new<R: RingRecord>(capacity: u64, worker_id: u32) -> RingInfo {
        let area = capacity * size_of::<R>() as u64;
        let created_ns = now_ns();
        RingInfo {
            record_kind: R::KIND as u16,
            schema_version: R::SCHEMA_VERSION,
            record_size: size_of::<R>() as u32,
            capacity,
            generation: new_generation(created_ns),
            created_ns,
            data_offset: data_offset_for(area),
            worker_id,
            hostname: hostname(),
        }
    }

    /// Size of the whole file: data offset plus the record area.
    pub fn file_len(&self) -> u64 {
        self.data_offset + self.capacity * u64::from(self.record_size)
    }

    /// Parse and check a header (at least [`HEADER_SIZE`] bytes, or fewer when the file is short)
    /// as a ring of `R` records in a file of `file_len` bytes.
    pub fn parse<R: RingRecord>(
        path: &Path,
        header: &[u8],
        file_len: u64,
    ) -> Result<RingInfo, RingError> {
        let path_buf = || path.to_path_buf();
        let magic: [u8; 8] = match header.get(field::MAGIC) {
            Some(m) => m.try_into().unwrap_or([0; 8]),
            None => [0; 8],
        };
        if magic == [0; 8] {
            return Err(RingError::Incomplete { path: path_buf() });
        }
        if magic != MAGIC {
            return Err(RingError::WrongMagic {
                path: path_buf(),
                found: magic,
            });
        }
        let Some(header) = header.get(..HEADER_SIZE) else {
            return Err(RingError::Truncated {
                path: path_buf(),
                len: file_len,
                needed: HEADER_SIZE as u64,
            });
        };
        let u16_at = |r: core::ops::Range<usize>| {
            u16::from_ne_bytes(header[r].try_into().unwrap_or_default())
        };
        let u32_at = |r: core::ops::Range<usize>| {
            u32::from_ne_bytes(header[r].try_into().unwrap_or_default())
        };
        let u64_at = |r: core::ops::Range<usize>| {
            u64::from_ne_bytes(header[r].try_into().unwrap_or_default())
        };
        if u32_at(field::BYTE_ORDER) != BYTE_ORDER_TAG {
            return Err(
                if u32_at(field::BYTE_ORDER) == BYTE_ORDER_TAG.swap_bytes() {
                    RingError::WrongByteOrder { path: path_buf() }
                } else {
                    RingError::BadHeader {
                        path: path_buf(),
                        what: "byte order tag",
                    }
                },
            );
        }
        let version = u16_at(field::FORMAT_VERSION);
        if version != FORMAT_VERSION {
            return Err(RingError::UnsupportedVersion {
                path: path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let kind = u16_at(field::RECORD_KIND);
        if kind != R::KIND as u16 {
            return Err(RingError::WrongKind {
                path: path_buf(),
                found: kind,
                expected: R::KIND as u16,
                expected_name: kind_name(R::KIND),
            });
        }
        let schema = u16_at(field::SCHEMA_VERSION);
        if schema != R::SCHEMA_VERSION {
            return Err(RingError::WrongSchema {
                path: path_buf(),
                found: schema,
                supported: R::SCHEMA_VERSION,
            });
        }
        let bad = |what| RingError::BadHeader {
            path: path_buf(),
            what,
        };
        if u32_at(field::HEADER_SIZE) as usize != HEADER_SIZE {
            return Err(bad("header size"));
        }
        let record_size = u32_at(field::RECORD_SIZE);
        if record_size as usize != size_of::<R>() {
            return Err(bad("record size does not match the schema"));
        }
        let capacity = u64_at(field::CAPACITY);
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(bad("capacity is not a power of two in range"));
        }
        let data_offset = u64_at(field::DATA_OFFSET);
        if data_offset != data_offset_for(capacity * u64::from(record_size)) {
            return Err(bad(
                "data offset is not the one its record area's size gives (4096 below 2 MiB, else 2 MiB)",
            ));
        }
        let generation = u64_at(field::GENERATION);
        if generation == 0 {
            return Err(bad("generation is zero"));
        }
        let host = &header[field::HOSTNAME];
        let host_len = host.iter().position(|&b| b == 0).unwrap_or(host.len());
        let info = RingInfo {
            record_kind: kind,
            schema_version: schema,
            record_size,
            capacity,
            generation,
            created_ns: u64_at(field::CREATED_NS),
            data_offset,
            worker_id: u32_at(field::WORKER_ID),
            hostname: String::from_utf8_lossy(&host[..host_len]).into_owned(),
        };
        if file_len < info.file_len() {
            return Err(RingError::Truncated {
                path: path_buf(),
                len: file_len,
                needed: info.file_len(),
            });
        }
        Ok(info)
    }

    /// Write lines 0 and 1 except the magic, which the writer stores last (see `writer.rs`).
    pub fn emit(&self, header: &mut [u8; HEADER_SIZE]) {
        header[field::BYTE_ORDER].copy_from_slice(&BYTE_ORDER_TAG.to_ne_bytes());
        header[field::FORMAT_VERSION].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
        header[field::RECORD_KIND].copy_from_slice(&self.record_kind.to_ne_bytes());
        header[field::SCHEMA_VERSION].copy_from_slice(&self.schema_version.to_ne_bytes());
        header[field::RECORD_SIZE].copy_from_slice(&self.record_size.to_ne_bytes());
        header[field::CAPACITY].copy_from_slice(&self.capacity.to_ne_bytes());
        header[field::GENERATION].copy_from_slice(&self.generation.to_ne_bytes());
        header[field::CREATED_NS].copy_from_slice(&self.created_ns.to_ne_bytes());
        header[field::DATA_OFFSET].copy_from_slice(&self.data_offset.to_ne_bytes());
        header[field::WORKER_ID].copy_from_slice(&self.worker_id.to_ne_bytes());
        header[field::HEADER_SIZE].copy_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
        let host = &mut header[field::HOSTNAME];
        host.fill(0);
        let name = self.hostname.as_bytes();
        let n = name.len().min(host.len() - 1);
        host[..n].copy_from_slice(&name[..n]);
    }
}

/// The atomic at byte `offset` of a mapping.
///
/// # Safety
/// `base` points to a live mapping of at least `offset + 8` bytes, page aligned, and `offset` is a
/// multiple of 8. Other processes access the same bytes only through atomics.
pub(crate) unsafe fn atomic_at<'a>(base: *const u8, offset: usize) -> &'a AtomicU64 {
    // SAFETY: in bounds and 8-byte aligned per the caller's contract; AtomicU64 has u64's layout.
    unsafe { AtomicU64::from_ptr(base.add(offset).cast::<u64>().cast_mut()) }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A non-zero generation: random bytes from the kernel, or time and pid if that fails.
fn new_generation(now: u64) -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for 8 bytes of writes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let random = if n == 8 {
        u64::from_ne_bytes(bytes)
    } else {
        now ^ (u64::from(std::process::id()) << 32)
    };
    random.max(1)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CounterRecord, FlowRecord};

    fn header_of(info: &RingInfo) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        info.emit(&mut h);
        h[field::MAGIC].copy_from_slice(&MAGIC);
        h
    }

    #[test]
    fn header_round_trip() {
        let info = RingInfo::new::<FlowRecord>(1 << 10, 7);
        let h = header_of(&info);
        let p = Path::new("x.ring");
        assert_eq!(
            RingInfo::parse::<FlowRecord>(p, &h, info.file_len()).unwrap(),
            info
        );
        assert_eq!(info.data_offset, HEADER_SIZE as u64);
        assert_eq!(
            RingInfo::new::<FlowRecord>(1 << 13, 0).data_offset,
            HUGE_PAGE
        );
        assert_ne!(info.generation, 0);
    }

    #[test]
    fn header_refusals_name_the_problem() {
        let info = RingInfo::new::<FlowRecord>(1 << 10, 7);
        let p = Path::new("x.ring");
        let len = info.file_len();
        let parse = |h: &[u8], len| RingInfo::parse::<FlowRecord>(p, h, len).unwrap_err();
        assert!(matches!(parse(&[0; 3], 3), RingError::Incomplete { .. }));
        assert!(matches!(
            parse(&[0; HEADER_SIZE], len),
            RingError::Incomplete { .. }
        ));
        let mut h = header_of(&info);
        assert!(matches!(parse(&h[..100], 100), RingError::Truncated { .. }));
        assert!(matches!(parse(&h, len - 1), RingError::Truncated { .. }));
        h[field::BYTE_ORDER].copy_from_slice(&BYTE_ORDER_TAG.swap_bytes().to_ne_bytes());
        assert!(matches!(parse(&h, len), RingError::WrongByteOrder { .. }));
        let h = header_of(&info);
        let kind = RingInfo::parse::<CounterRecord>(p, &h, len).unwrap_err();
        assert!(matches!(
            kind,
            RingError::WrongKind {
                found: 1,
                expected: 2,
                ..
            }
        ));
        let mut h = header_of(&info);
        h[field::CAPACITY].copy_from_slice(&1000u64.to_ne_bytes());
        assert!(matches!(parse(&h, len), RingError::BadHeader { .. }));
        let mut h = header_of(&info);
        h[field::GENERATION].fill(0);
        assert!(matches!(parse(&h, len), RingError::BadHeader { .. }));
        // The data offset is the one the record area's size gives, nothing else: 4096 below
        // 2 MiB of records, 2 MiB from there on (the file is long enough in every case).
        let big = RingInfo::new::<FlowRecord>(1 << 13, 7);
        for (info, offset) in [
            (&info, 2 * HEADER_SIZE as u64),
            (&info, HUGE_PAGE),
            (&big, HEADER_SIZE as u64),
            (&big, HUGE_PAGE / 2),
        ] {
            let mut h = header_of(info);
            h[field::DATA_OFFSET].copy_from_slice(&offset.to_ne_bytes());
            let err = parse(&h, info.file_len() + HUGE_PAGE);
            assert!(
                matches!(err, RingError::BadHeader { what, .. } if what.starts_with("data offset")),
                "{offset}: {err}"
            );
        }
    }

    #[test]
    fn ring_sizes_parse_to_power_of_two_capacities() {
        let cap = |s: &str| s.parse::<RingSize>().and_then(|r| r.capacity(256));
        assert_eq!(cap("262144").unwrap(), 1 << 18);
        assert_eq!(cap("64MiB").unwrap(), 1 << 18);
        assert_eq!(cap("4KiB").unwrap(), 16);
        assert_eq!(cap("1GiB").unwrap(), 1 << 22);
        for bad in [
            "",
            "1000",
            "8",
            "3MiB",
            "64XB",
            "-1",
            "99999999999999999999GiB",
            "1KiB",
        ] {
            assert!(matches!(cap(bad), Err(RingError::BadSize(_))), "{bad}");
        }
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(ring_file_name::<FlowRecord>(3), "flows-3.ring");
        assert_eq!(ring_file_name::<CounterRecord>(0), "counters-0.ring");
        assert_eq!(
            parse_ring_file_name::<FlowRecord>("flows-12.ring"),
            Some(12)
        );
        assert_eq!(parse_ring_file_name::<FlowRecord>("counters-1.ring"), None);
        assert_eq!(parse_ring_file_name::<FlowRecord>("flows-.ring"), None);
        assert_eq!(parse_ring_file_name::<FlowRecord>("flows-1.ring.tmp"), None);
        assert_eq!(parse_ring_file_name::<FlowRecord>("flows-+1.ring"), None);
    }

    #[test]
    fn temp_file_names_round_trip() {
        assert_eq!(temp_file_name("flows-3.ring", 42), ".flows-3.ring.42.tmp");
        assert_eq!(parse_temp_file_name(".flows-3.ring.42.tmp"), Some(42));
        assert_eq!(parse_temp_file_name(".counters-0.ring.7.tmp"), Some(7));
        for other in [
            "flows-3.ring.42.tmp",
            ".flows-3.ring.tmp",
            ".flows-3.ring..tmp",
            ".flows-3.ring.4x2.tmp",
            ".flows-3.ring.42",
            ".other-3.ring.42.tmp",
            ".flows-3.ring.99999999999.tmp",
            "flows-3.ring",
        ] {
            assert_eq!(parse_temp_file_name(other), None, "{other}");
        }
    }
}
