//! Shared by the `ring_*` integration tests: records whose every byte derives from their sequence
//! number (so a torn or misplaced record cannot pass [`check`]), and scratch directories.
#![allow(dead_code)] // each test crate uses a subset

use collector::record::RingRecord;
use collector::ring::RingReader;
use std::path::{Path, PathBuf};

/// Word `k` of record `seq` (words 1.. of the record; word 0 is `ring_seq`).
fn word(seq: u64, k: usize) -> u64 {
    let mut x = seq
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(k as u64);
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The record the tests write as number `seq` (its `ring_seq` is left for the writer to stamp).
pub fn record<R: RingRecord>(seq: u64) -> R {
    let mut r = R::zeroed();
    for (k, w) in bytemuck::cast_slice_mut::<R, u64>(std::slice::from_mut(&mut r))
        .iter_mut()
        .enumerate()
        .skip(1)
    {
        *w = word(seq, k);
    }
    r
}

/// True when `r` is exactly record `seq` as written: stamped and every byte as [`record`] made it.
pub fn check<R: RingRecord>(r: &R, seq: u64) -> bool {
    let words = bytemuck::cast_slice::<R, u64>(std::slice::from_ref(r));
    words.first() == Some(&seq)
        && words
            .iter()
            .enumerate()
            .skip(1)
            .all(|(k, &w)| w == word(seq, k))
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "collector-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records for the long concurrent tests: `RING_TEST_RECORDS`, or `default`.
pub fn record_count(default: u64) -> u64 {
    std::env::var("RING_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Read everything available in batches of `batch` records; check each record and return their
/// sequence numbers in read order.
pub fn drain<R: RingRecord>(r: &mut RingReader<R>, batch: usize) -> Vec<u64> {
    let mut buf = vec![R::zeroed(); batch];
    let mut seqs = Vec::new();
    loop {
        let n = r.read(&mut buf);
        if n == 0 {
            return seqs;
        }
        for rec in &buf[..n] {
            assert!(check(rec, rec.ring_seq()), "record {} torn", rec.ring_seq());
            seqs.push(rec.ring_seq());
        }
    }
}
