//! Shared by flowgen's tests: streams of datagrams from emulated exporters, without sockets.

#![allow(dead_code)]

use collector::record::FlowRecord;
use flowgen::exporter::Exporter;
use flowgen::manifest::{ExporterLog, Params};
use flowgen::model::Profile;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A time base (ms-aligned) and a send time a little after it.
pub const TIME_BASE_NS: u64 = 1_763_000_000_123_000_000;
pub const SEND_NS: u64 = TIME_BASE_NS + 2_500_000_000;

pub fn params(profile: Profile, gap_every: u64) -> Params {
    Params {
        profile,
        seed: 42,
        records_per_datagram: profile.default_records_per_datagram(),
        time_base_ns: TIME_BASE_NS,
        template_interval_secs: 600.0,
        counter_interval_secs: 30.0,
        sampling_rate: profile.default_sampling_rate(),
        gap_every,
    }
}

/// What one emulated exporter sent: every datagram in order and the flow records each data
/// datagram carries.
pub struct Stream {
    pub source: SocketAddr,
    pub datagrams: Vec<Vec<u8>>,
    pub expected: Vec<FlowRecord>,
    pub log: ExporterLog,
}

/// `data` data datagrams from exporter `index` at `source`, with templates / counters first, a
/// restart (and the templates it brings) after `restart_after` data datagrams when given.
pub fn stream(
    params: &Params,
    index: u32,
    source: SocketAddr,
    data: u64,
    restart_after: Option<u64>,
) -> Stream {
    let mut e = Exporter::new(index, source, params, params.time_base_ns);
    let mut datagrams = Vec::new();
    let mut expected = Vec::new();
    for d in 0..data {
        let now = SEND_NS + d * 1_000_000;
        if restart_after == Some(d) {
            e.restart(now);
        }
        if e.templates_due(now) {
            e.template_datagrams(now, &mut datagrams);
        }
        if e.counters_due(now) {
            e.counter_datagrams(now, &mut datagrams);
        }
        let mut buf = Vec::new();
        e.data_datagram(now, &mut buf, Some(&mut expected));
        datagrams.push(buf);
    }
    Stream {
        source,
        datagrams,
        expected,
        log: e.log,
    }
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flowgen-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
