//! `flowgen verify`: compare the flow records a collector wrote to its rings with what a manifest
//! says was sent.
//!
//! Expected records are regenerated from the manifest ([`crate::exporter::replay`]) and grouped by
//! what identifies a datagram in a record: exporter address and port, protocol and sequence number.
//! Each received record first looks for an exact match in its group (every compared field equal,
//! times within the tolerance); what is left is paired inside the group by fewest differing fields
//! and reported as *mismatched* with the fields that differ; what still has no partner is *missing*
//! (expected) or *extra* (received). Records from exporters the manifest does not name are counted
//! as *foreign* and do not fail the check. Loss the collector reports on its metrics endpoint is the
//! [`CollectorLoss`] hook, not read yet.
//!
//! Rings are read from the first record of their generation, so that records overwritten before
//! verify got to them are counted ([`Report::ring_lost`]) rather than invisible. An expected record
//! the rings do not hold is *overwritten* (the ring was too small for verify to see it, which says
//! nothing against the collector) when the ring its exporter's records went to overwrote records
//! received during the run and the record was sent in or before the oldest datagram of its exporter
//! still there; otherwise it is *missing*: the collector lost it.

use crate::exporter::replay;
use crate::manifest::Manifest;
use collector::record::{FlowRecord, FlowType, addr_from_bytes};
use collector::ring::{DirReader, RingReader, Start};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

/// What identifies the datagram a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatagramKey {
    pub exporter_addr: [u8; 16],
    pub exporter_port: u16,
    pub flow_type: u8,
    pub sequence_num: u32,
}

impl DatagramKey {
    pub fn of(r: &FlowRecord) -> Self {
        DatagramKey {
            exporter_addr: r.exporter_addr,
            exporter_port: r.exporter_port,
            flow_type: r.flow_type,
            sequence_num: r.sequence_num,
        }
    }
}

/// A field value, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Uint(u64),
    Addr([u8; 16]),
    Mac([u8; 6]),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Uint(v) => write!(f, "{v}"),
            Value::Addr(a) => write!(f, "{}", addr_from_bytes(a)),
            Value::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}

/// Call `diff(name, expected, got)` for every compared field that differs; returns how many did.
/// Times are compared within `tolerance_ns` and only when expected (sFlow carries none); the
/// sampling rate only when the exporter sent one.
pub fn compare(
    expected: &FlowRecord,
    got: &FlowRecord,
    tolerance_ns: u64,
    mut diff: impl FnMut(&'static str, Value, Value),
) -> usize {
    let mut n = 0;
    let mut check = |name: &'static str, e: Value, g: Value| {
        if e != g {
            n += 1;
            diff(name, e, g);
        }
    };
    macro_rules! uint {
        ($($f:ident),*) => {$(
            check(stringify!($f), Value::Uint(expected.$f as u64), Value::Uint(got.$f as u64));
        )*};
    }
    macro_rules! addr {
        ($($f:ident),*) => {$(
            check(stringify!($f), Value::Addr(expected.$f), Value::Addr(got.$f));
        )*};
    }
    uint!(
        flow_type,
        exporter_port,
        sequence_num,
        observation_domain_id,
        observation_point_id
    );
    addr!(
        exporter_addr,
        src_addr,
        dst_addr,
        tunnel_src_addr,
        tunnel_dst_addr
    );
    uint!(
        src_port,
        dst_port,
        proto,
        bytes,
        packets,
        in_if,
        out_if,
        in_if_format,
        out_if_format
    );
    uint!(
        etype,
        vlan_id,
        tcp_flags,
        ip_tos,
        ip_ttl,
        icmp_type,
        icmp_code,
        ipv6_flow_label
    );
    uint!(
        flow_direction,
        flow_end_reason,
        tunnel_type,
        tunnel_key,
        tunnel_proto
    );
    uint!(tunnel_src_port, tunnel_dst_port, sampler_id);
    check(
        "src_mac",
        Value::Mac(expected.src_mac),
        Value::Mac(got.src_mac),
    );
    check(
        "dst_mac",
        Value::Mac(expected.dst_mac),
        Value::Mac(got.dst_mac),
    );
    if expected.sampling_rate != 0 {
        uint!(sampling_rate);
    }
    for (name, e, g) in [
        (
            "time_flow_start_ns",
            expected.time_flow_start_ns,
            got.time_flow_start_ns,
        ),
        (
            "time_flow_end_ns",
            expected.time_flow_end_ns,
            got.time_flow_end_ns,
        ),
    ] {
        if e != 0 && e.abs_diff(g) > tolerance_ns {
            check(name, Value::Uint(e), Value::Uint(g));
        }
    }
    n
}

/// Loss the collector itself reported (its metrics endpoint): the hook `verify` fills once the
/// collector exports these counters. `None` in a report means "not read".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectorLoss {
    /// Records the collector's sequence trackers counted as lost.
    pub sequence_lost: u64,
    /// Datagrams the collector's sockets or rings dropped.
    pub datagrams_dropped: u64,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: &'static str,
    pub expected: String,
    pub got: String,
}

/// One problem found (the first `--show` of each kind are kept).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `missing`, `extra` or `mismatched`.
    pub kind: &'static str,
    pub exporter: String,
    pub protocol: &'static str,
    pub sequence: u32,
    pub src: String,
    pub dst: String,
    pub fields: Vec<FieldDiff>,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub expected: u64,
    pub received: u64,
    pub matched: u64,
    /// Expected records the rings do not hold although they were not overwritten: the collector
    /// lost them (or never wrote them).
    pub missing: u64,
    /// Expected records the rings had overwritten before verify read them (sent in or before the
    /// oldest datagram of their exporter still in a ring that overwrote records of the run): the
    /// ring was too small for verify to see them; not a sign the collector lost them.
    pub overwritten: u64,
    pub extra: u64,
    pub mismatched: u64,
    /// Records from exporters the manifest does not name.
    pub foreign: u64,
    /// Sequence gaps the generator made on purpose (their records were never sent).
    pub intentional_gaps: u64,
    /// Data datagrams the kernel refused to send (their records are not expected).
    pub unsent_datagrams: u64,
    /// Every datagram the kernel refused (data, template, counter), and the first refusal's error.
    pub refused_datagrams: u64,
    pub first_refusal: Option<String>,
    /// Why the run stopped early, as the manifest says (`None`: it ran its course).
    pub sender_stopped: Option<String>,
    /// Records of the rings' current generations that were overwritten before verify read them,
    /// counted from each generation's first record (so it includes records older than the run).
    pub ring_lost: u64,
    pub ring_corrupt: u64,
    /// Loss reported by the collector's metrics; `None`: not read.
    pub collector_reported: Option<CollectorLoss>,
    /// Mismatches by field name.
    pub mismatched_fields: Vec<(String, u64)>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Every record the manifest says was sent is in the rings, intact, and nothing else is; and
    /// the run did send records (a run whose every datagram was refused has nothing to verify).
    pub fn ok(&self) -> bool {
        self.verdict() == "OK"
    }

    /// `OK`; `NOTHING SENT` when the manifest records no flow record sent; `MISMATCH` when records
    /// are missing (the collector lost them), extra or mismatched; `INCOMPLETE` when nothing is
    /// wrong with what verify could see but the rings had overwritten records of the run before
    /// verify read them (rings too small for the run: verify cannot tell whether those arrived).
    pub fn verdict(&self) -> &'static str {
        if self.expected == 0 {
            "NOTHING SENT"
        } else if self.missing > 0 || self.extra > 0 || self.mismatched > 0 {
            "MISMATCH"
        } else if self.overwritten > 0 {
            "INCOMPLETE"
        } else {
            "OK"
        }
    }

    /// Fraction of expected records not received intact.
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.missing as f64 / self.expected as f64
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: expected {} records, received {} ({} matched, {} missing, {} overwritten, {} extra, {} mismatched, {} foreign)",
            self.verdict(),
            self.expected,
            self.received,
            self.matched,
            self.missing,
            self.overwritten,
            self.extra,
            self.mismatched,
            self.foreign
        );
        let _ = writeln!(
            s,
            "  intentional gaps: {}, unsent datagrams: {}, ring records lost: {}, corrupt: {}, collector-reported loss: {}",
            self.intentional_gaps,
            self.unsent_datagrams,
            self.ring_lost,
            self.ring_corrupt,
            match &self.collector_reported {
                Some(l) => format!(
                    "{} sequence, {} datagrams",
                    l.sequence_lost, l.datagrams_dropped
                ),
                None => "not read".to_string(),
            }
        );
        if self.missing > 0 {
            let _ = writeln!(
                s,
                "  collector lost records: {} sent records are not in the rings, and the rings did not overwrite them",
                self.missing
            );
        }
        if self.overwritten > 0 {
            let _ = writeln!(
                s,
                "  rings too small for verify: {} sent records were overwritten in the rings before verify read them ({} ring records lost in all); whether the collector received them cannot be told: give it a larger --ring-size or verify a shorter run",
                self.overwritten, self.ring_lost
            );
        }
        if self.refused_datagrams > 0 {
            let _ = writeln!(
                s,
                "  the kernel refused {} datagrams when sending (their records are not expected); first refusal: {}",
                self.refused_datagrams,
                self.first_refusal.as_deref().unwrap_or("not recorded")
            );
        }
        if let Some(why) = &self.sender_stopped {
            let _ = writeln!(s, "  the sender stopped early: {why}");
        }
        for (field, n) in &self.mismatched_fields {
            let _ = writeln!(s, "  mismatched field {field}: {n}");
        }
        for f in &self.findings {
            let _ = write!(
                s,
                "  {} {} {} seq {} {} -> {}",
                f.kind, f.protocol, f.exporter, f.sequence, f.src, f.dst
            );
            for d in &f.fields {
                let _ = write!(s, " [{}: expected {} got {}]", d.field, d.expected, d.got);
            }
            s.push('\n');
        }
        s
    }
}

/// Verification settings.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// Flow times may differ by this much (encodings round to ms or µs).
    pub tolerance_ns: u64,
    /// Findings of each kind kept in the report.
    pub show: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            tolerance_ns: 1_000_000,
            show: 10,
        }
    }
}

/// An expected record and the place of its datagram in its exporter's stream (0: the first data
/// datagram sent). Datagrams, not records: a collector need not write the records of one datagram
/// in the order they were generated (IPFIX sets of different templates, say).
#[derive(Clone, Copy, Debug)]
struct Expected {
    order: u64,
    record: FlowRecord,
}

/// The records the manifest says were sent, grouped by datagram key, each with the place of its
/// datagram in its exporter's stream.
fn expected_records(manifest: &Manifest) -> HashMap<DatagramKey, Vec<Expected>> {
    let mut groups: HashMap<DatagramKey, Vec<Expected>> = HashMap::new();
    for log in &manifest.exporters {
        let mut order = 0u64;
        replay(&manifest.params, log, |records| {
            for r in records {
                groups
                    .entry(DatagramKey::of(r))
                    .or_default()
                    .push(Expected { order, record: *r });
            }
            order += 1;
        });
    }
    groups
}

/// What verify read from one ring file.
#[derive(Clone, Debug)]
pub struct RingRead {
    /// Its records: this range of the received records.
    pub records: Range<usize>,
    /// Records of its generation overwritten before they were read (from its first record).
    pub lost: u64,
    /// Receive time of the oldest record read (`None`: none read).
    pub oldest_received_ns: Option<u64>,
}

impl RingRead {
    /// Whether the ring overwrote records received during the run (started at `started_ns`): it
    /// lost records and its oldest one left was received after the start.
    fn overwrote_run(&self, started_ns: u64) -> bool {
        self.lost > 0 && self.oldest_received_ns.is_none_or(|t| t >= started_ns)
    }
}

/// Compare the flow rings in `ring_dir` with `manifest`.
pub fn verify_dir(
    manifest: &Manifest,
    ring_dir: &Path,
    config: &VerifyConfig,
) -> anyhow::Result<Report> {
    // Each ring on its own, from the first record of its generation: what was overwritten before
    // verify got to it is counted as lost instead of going unseen.
    let paths: Vec<_> = DirReader::<FlowRecord>::open(ring_dir, Start::Now)?
        .rings()
        .iter()
        .map(|r| r.path().to_path_buf())
        .collect();
    let mut received = Vec::new();
    let mut rings = Vec::new();
    let mut corrupt = 0;
    let mut buf = vec![bytemuck::Zeroable::zeroed(); 4096];
    for path in paths {
        let mut reader = RingReader::<FlowRecord>::open(&path, Start::Cursor(0))?;
        reader.stop_at_current_end();
        let first = received.len();
        loop {
            let n = reader.read(&mut buf);
            if n == 0 {
                break;
            }
            received.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        let stats = reader.stats();
        corrupt += stats.corrupt;
        rings.push(RingRead {
            oldest_received_ns: received.get(first).map(|r| r.time_received_ns),
            records: first..received.len(),
            lost: stats.lost,
        });
    }
    let mut report = verify_ring_records(manifest, &received, &rings, config);
    report.ring_corrupt = corrupt;
    Ok(report)
}

/// Compare `received` records with `manifest` (no ring overwrote any: every record not received
/// is missing).
pub fn verify_records(
    manifest: &Manifest,
    received: &[FlowRecord],
    config: &VerifyConfig,
) -> Report {
    verify_ring_records(manifest, received, &[], config)
}

/// Compare `received` records, read from `rings`, with `manifest`: expected records not received
/// are `overwritten` when a ring explains them, `missing` otherwise.
pub fn verify_ring_records(
    manifest: &Manifest,
    received: &[FlowRecord],
    rings: &[RingRead],
    config: &VerifyConfig,
) -> Report {
    let mut report = Report {
        ring_lost: rings.iter().map(|r| r.lost).sum(),
        ..Report::default()
    };
    let mut expected = expected_records(manifest);
    report.expected = expected.values().map(|v| v.len() as u64).sum();
    report.intentional_gaps = manifest
        .exporters
        .iter()
        .map(|e| e.gaps().count() as u64)
        .sum();
    report.unsent_datagrams = manifest.exporters.iter().map(|e| e.unsent() as u64).sum();
    report.refused_datagrams = manifest.exporters.iter().map(|e| e.refused_datagrams).sum();
    report.first_refusal = manifest.first_refusal();
    report.sender_stopped = manifest.stopped.clone();
    let known: HashSet<([u8; 16], u16)> = expected
        .keys()
        .map(|k| (k.exporter_addr, k.exporter_port))
        .collect();

    // Per exporter: the ring its records were found in, and the place in its stream of the
    // oldest datagram a received record came from.
    let ring_of = |i: usize| rings.iter().position(|r| r.records.contains(&i));
    let mut exporter_ring: HashMap<([u8; 16], u16), Option<usize>> = HashMap::new();
    let mut first_seen: HashMap<([u8; 16], u16), u64> = HashMap::new();
    let mut seen = |key: &DatagramKey, order: u64| {
        let e = first_seen
            .entry((key.exporter_addr, key.exporter_port))
            .or_insert(order);
        *e = (*e).min(order);
    };

    // Exact matches first.
    let mut leftover: HashMap<DatagramKey, Vec<FlowRecord>> = HashMap::new();
    for (i, r) in received.iter().enumerate() {
        report.received += 1;
        let key = DatagramKey::of(r);
        if !known.contains(&(key.exporter_addr, key.exporter_port)) {
            report.foreign += 1;
            continue;
        }
        exporter_ring
            .entry((key.exporter_addr, key.exporter_port))
            .or_insert_with(|| ring_of(i));
        let group = expected.get_mut(&key);
        let hit = group.as_ref().and_then(|g| {
            g.iter()
                .position(|e| compare(&e.record, r, config.tolerance_ns, |_, _, _| {}) == 0)
        });
        match (group, hit) {
            (Some(g), Some(i)) => {
                seen(&key, g.swap_remove(i).order);
                report.matched += 1;
            }
            _ => leftover.entry(key).or_default().push(*r),
        }
    }

    // Pair what is left inside each datagram: closest expected record → mismatched.
    let mut by_field: HashMap<&'static str, u64> = HashMap::new();
    let mut keys: Vec<DatagramKey> = leftover.keys().copied().collect();
    keys.sort_by_key(|k| (k.exporter_addr, k.exporter_port, k.sequence_num));
    for key in keys {
        let Some(records) = leftover.remove(&key) else {
            continue;
        };
        for r in records {
            let best = expected.get(&key).and_then(|g| {
                g.iter()
                    .enumerate()
                    .map(|(i, e)| (compare(&e.record, &r, config.tolerance_ns, |_, _, _| {}), i))
                    .min()
            });
            match best {
                Some((_, i)) => {
                    let Some(e) = expected.get_mut(&key).map(|g| g.swap_remove(i)) else {
                        continue;
                    };
                    seen(&key, e.order);
                    let e = e.record;
                    report.mismatched += 1;
                    let mut fields = Vec::new();
                    compare(&e, &r, config.tolerance_ns, |field, ev, gv| {
                        *by_field.entry(field).or_default() += 1;
                        fields.push(FieldDiff {
                            field,
                            expected: ev.to_string(),
                            got: gv.to_string(),
                        });
                    });
                    if count_kind(&report, "mismatched") < config.show {
                        report.findings.push(finding("mismatched", &e, fields));
                    }
                }
                None => {
                    report.extra += 1;
                    if count_kind(&report, "extra") < config.show {
                        report.findings.push(finding("extra", &r, Vec::new()));
                    }
                }
            }
        }
    }

    // Not received: overwritten when a ring that overwrote records of the run explains it (sent in
    // or before the oldest datagram of its exporter left in that ring, whose first records the
    // ring may have overwritten; or an exporter none of whose records are left), at most as many
    // per ring as it lost; missing otherwise.
    let mut unseen: Vec<Expected> = expected.into_values().flatten().collect();
    unseen.sort_by_key(|e| (e.record.exporter_addr, e.record.exporter_port, e.order));
    let started = manifest.started_unix_ns;
    let mut room: Vec<u64> = rings
        .iter()
        .map(|r| if r.overwrote_run(started) { r.lost } else { 0 })
        .collect();
    let mut missing = Vec::new();
    for e in unseen {
        let exporter = (e.record.exporter_addr, e.record.exporter_port);
        let ring = match exporter_ring.get(&exporter) {
            Some(ring) => ring.filter(|_| first_seen.get(&exporter).is_some_and(|&f| e.order <= f)),
            // Nothing of this exporter is left: any ring that overwrote records of the run.
            None => room.iter().position(|&n| n > 0),
        };
        match ring.and_then(|i| room.get_mut(i)).filter(|n| **n > 0) {
            Some(n) => {
                *n -= 1;
                report.overwritten += 1;
            }
            None => missing.push(e.record),
        }
    }
    missing.sort_by_key(|r| (r.exporter_addr, r.exporter_port, r.sequence_num));
    report.missing = missing.len() as u64;
    for r in missing.iter().take(config.show) {
        report.findings.push(finding("missing", r, Vec::new()));
    }
    let mut fields: Vec<(String, u64)> = by_field
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    fields.sort();
    report.mismatched_fields = fields;
    report
}

fn count_kind(report: &Report, kind: &str) -> usize {
    report.findings.iter().filter(|f| f.kind == kind).count()
}

fn finding(kind: &'static str, r: &FlowRecord, fields: Vec<FieldDiff>) -> Finding {
    let addr =
        |a: &[u8; 16], port: u16| std::net::SocketAddr::new(addr_from_bytes(a), port).to_string();
    Finding {
        kind,
        exporter: addr(&r.exporter_addr, r.exporter_port),
        protocol: FlowType::from_u8(r.flow_type).name(),
        sequence: r.sequence_num,
        src: addr(&r.src_addr, r.src_port),
        dst: addr(&r.dst_addr, r.dst_port),
        fields,
    }
}
