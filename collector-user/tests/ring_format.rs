//! Ring files that must be refused: each with a clear, specific error and never a panic.

mod ring_common;

use bytemuck::Zeroable as _;
use collector::record::{CounterRecord, FlowRecord};
use collector::ring::{
    HEADER_SIZE, RingConfig, RingError, RingReader, RingSize, RingWriter, Start, field,
};
use proptest::prelude::*;
use ring_common::{Scratch, check, record};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

fn config(records: u64) -> RingConfig {
    RingConfig {
        size: RingSize::Records(records),
        ..RingConfig::default()
    }
}

/// A valid flows ring of 64 slots holding 10 records.
fn valid_ring(dir: &Path) -> PathBuf {
    let mut w = RingWriter::<FlowRecord>::open_in_dir(dir, &config(64)).unwrap();
    for seq in 0..10 {
        w.push(&record(seq));
    }
    w.commit();
    w.path().to_path_buf()
}

fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset as u64).unwrap();
}

fn open_err(path: &Path) -> RingError {
    RingReader::<FlowRecord>::open(path, Start::Oldest).unwrap_err()
}

#[test]
fn valid_ring_reads_back() {
    let dir = Scratch::new("fmt-valid");
    let path = valid_ring(dir.path());
    let mut r = RingReader::<FlowRecord>::open(&path, Start::Oldest).unwrap();
    let mut buf = vec![FlowRecord::zeroed(); 16];
    assert_eq!(r.read(&mut buf), 10);
    assert!(buf[..10].iter().zip(0..).all(|(rec, seq)| check(rec, seq)));
    assert_eq!(r.info().capacity, 64);
    assert_eq!(r.info().record_size, 256);
}

#[test]
fn wrong_magic_is_refused_by_reader_and_writer() {
    let dir = Scratch::new("fmt-magic");
    let path = valid_ring(dir.path());
    patch(&path, 0, b"NOTARING");
    let err = open_err(&path);
    assert!(matches!(err, RingError::WrongMagic { found, .. } if &found == b"NOTARING"));
    assert!(
        err.to_string().contains("not a collector ring file"),
        "{err}"
    );
    // The writer does not overwrite a file that is not a ring.
    let w = RingWriter::<FlowRecord>::open(&path, &config(64)).unwrap_err();
    assert!(matches!(w, RingError::WrongMagic { .. }));
    let mut magic = [0u8; 8];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut magic, 0)
        .unwrap();
    assert_eq!(&magic, b"NOTARING");
}

#[test]
fn wrong_format_version_is_refused() {
    let dir = Scratch::new("fmt-version");
    let path = valid_ring(dir.path());
    patch(&path, field::FORMAT_VERSION.start, &99u16.to_ne_bytes());
    let err = open_err(&path);
    assert!(matches!(
        err,
        RingError::UnsupportedVersion {
            found: 99,
            supported: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("format version 99"), "{err}");
}

#[test]
fn wrong_schema_is_refused() {
    let dir = Scratch::new("fmt-schema");
    let path = valid_ring(dir.path());
    patch(&path, field::SCHEMA_VERSION.start, &7u16.to_ne_bytes());
    let err = open_err(&path);
    assert!(matches!(err, RingError::WrongSchema { found: 7, .. }));
    assert!(err.to_string().contains("schema version 7"), "{err}");
}

#[test]
fn wrong_kind_is_refused() {
    let dir = Scratch::new("fmt-kind");
    let path = valid_ring(dir.path());
    let err = RingReader::<CounterRecord>::open(&path, Start::Oldest).unwrap_err();
    assert!(matches!(
        err,
        RingError::WrongKind {
            found: 1,
            expected: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("counters"), "{err}");
}

#[test]
fn other_byte_order_is_refused() {
    let dir = Scratch::new("fmt-endian");
    let path = valid_ring(dir.path());
    patch(
        &path,
        field::BYTE_ORDER.start,
        &0x0403_0201u32.to_ne_bytes(),
    );
    assert!(matches!(open_err(&path), RingError::WrongByteOrder { .. }));
}

#[test]
fn bad_capacity_and_record_size_are_refused() {
    let dir = Scratch::new("fmt-cap");
    let path = valid_ring(dir.path());
    patch(&path, field::CAPACITY.start, &48u64.to_ne_bytes());
    assert!(
        matches!(open_err(&path), RingError::BadHeader { what, .. } if what.contains("capacity"))
    );
    let path = valid_ring(&dir.path().join("b"));
    patch(&path, field::RECORD_SIZE.start, &192u32.to_ne_bytes());
    assert!(
        matches!(open_err(&path), RingError::BadHeader { what, .. } if what.contains("record size"))
    );
}

#[test]
fn truncated_file_is_refused() {
    let dir = Scratch::new("fmt-trunc");
    let path = valid_ring(dir.path());
    let full = std::fs::metadata(&path).unwrap().len();
    for len in [full - 1, HEADER_SIZE as u64 + 256, 100] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len)
            .unwrap();
        let err = open_err(&path);
        assert!(
            matches!(err, RingError::Truncated { len: l, needed, .. } if l == len && needed >= full.min(needed)),
            "{len}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn data_offset_other_than_the_one_the_capacity_gives_is_refused() {
    let dir = Scratch::new("fmt-offset");
    let path = valid_ring(dir.path());
    // 64 slots of 256 bytes: the record area starts at 4096. 8192 is page aligned and the file is
    // made long enough for it, but it is not where a writer puts this ring's area.
    let area = 64 * 256;
    for offset in [8192u64, 2 << 20] {
        patch(&path, field::DATA_OFFSET.start, &offset.to_ne_bytes());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(offset + area)
            .unwrap();
        let err = open_err(&path);
        assert!(
            matches!(err, RingError::BadHeader { what, .. } if what.contains("data offset")),
            "{offset}: {err}"
        );
    }
}

#[test]
fn file_being_created_is_refused() {
    let dir = Scratch::new("fmt-creating");
    // Just created (empty), sized but not yet written, and fully written except the magic.
    let empty = dir.path().join("flows-0.ring");
    std::fs::File::create(&empty).unwrap();
    assert!(matches!(open_err(&empty), RingError::Incomplete { .. }));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&empty)
        .unwrap()
        .set_len(HEADER_SIZE as u64 + 64 * 256)
        .unwrap();
    let err = open_err(&empty);
    assert!(matches!(err, RingError::Incomplete { .. }));
    assert!(err.to_string().contains("being created"), "{err}");
    let path = valid_ring(&dir.path().join("b"));
    patch(&path, 0, &[0; 8]);
    assert!(matches!(open_err(&path), RingError::Incomplete { .. }));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = Scratch::new("fmt-missing");
    let path = dir.path().join("flows-9.ring");
    let err = open_err(&path);
    assert!(matches!(err, RingError::Io { .. }));
    assert!(err.to_string().contains("flows-9.ring"), "{err}");
}

#[test]
fn second_writer_is_refused_while_the_first_lives() {
    let dir = Scratch::new("fmt-locked");
    let first = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64)).unwrap();
    let err = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64)).unwrap_err();
    assert!(
        matches!(err, RingError::Locked { pid, .. } if pid == i64::from(std::process::id())),
        "{err}"
    );
    // Even with another configuration, it must not replace the live ring.
    let err = RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(128)).unwrap_err();
    assert!(matches!(err, RingError::Locked { .. }), "{err}");
    drop(first);
    RingWriter::<FlowRecord>::open_in_dir(dir.path(), &config(64)).unwrap();
}

#[test]
fn bad_sizes_are_refused() {
    for size in [
        RingSize::Records(1000),
        RingSize::Records(8),
        RingSize::Bytes(1000),
    ] {
        let err = RingWriter::<FlowRecord>::open(
            Path::new("/nonexistent/x.ring"),
            &RingConfig {
                size,
                ..RingConfig::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, RingError::BadSize(_)), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any damage to the header or length: an error or a reader that reads without panicking.
    #[test]
    fn damaged_headers_never_panic(
        patches in proptest::collection::vec((0usize..256, any::<u8>()), 1..8),
        cut in proptest::option::of(0u64..(HEADER_SIZE as u64 + 64 * 256)),
    ) {
        let dir = Scratch::new("fmt-prop");
        let path = valid_ring(dir.path());
        for (offset, byte) in patches {
            patch(&path, offset, &[byte]);
        }
        if let Some(len) = cut {
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len).unwrap();
        }
        if let Ok(mut r) = RingReader::<FlowRecord>::open(&path, Start::Oldest) {
            let mut buf = vec![FlowRecord::zeroed(); 32];
            while r.read(&mut buf) > 0 {}
            let _ = r.check_writer();
        }
    }
}
