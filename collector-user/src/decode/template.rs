//! Compiled templates, the per-worker [`TemplateCache`] and the [`EarlyData`] holding buffer.
//!
//! A NetFlow v9 / IPFIX template is compiled once, when it arrives, into a list of [`Step`]s: per
//! field, its length (or "variable") and the [`Action`] that stores it into the record. Decoding a
//! data record is then one pass over the steps — no per-field lookup by element id. Precedence
//! between elements that fill the same record field is resolved at compile time (see [`super::ie`]):
//! a repeated element (OVS egress templates repeat interfaceName 82 and interfaceDescription 83)
//! is decoded by position, and the *first* occurrence of a mapped element is the one stored; the
//! later ones become skips. Runs of skipped fixed-length fields merge into one step.
//!
//! # Memory per cached template
//! A step is 2 bytes; an OVS data template (up to 51 fields) compiles to at most 45 steps (skips
//! merged). A cached template costs its [`TemplateKey`] + [`Template`] (40 bytes) in a hash table
//! that is between 44 % and 88 % full, its boxed steps and the allocator's header.
//! [`Template::cached_bytes`] charges the table entry twice (worst-case load) and the caps are
//! enforced with that figure; `ipfix::tests::ovs_family_round_trips` checks that every OVS template
//! stays ≤ 256 B by that measure. Measured with a counting allocator (`benches/decode_netflow.rs`,
//! 600 exporters × 121 OVS templates): **148.8 heap bytes per template**, so 600,000 OVS templates
//! take ≈ 85 MiB (budget: 150 MiB).
//!
//! # Bounds
//! [`CacheLimits`]: a total byte cap and a per-exporter byte cap. Inserting past the per-exporter cap
//! evicts that exporter's least recently used template; past the total cap, the least recently used
//! template of the exporter holding the most bytes. Templates never expire on a timer (some exporters
//! send them once per session); a redefinition replaces the old one.
//!
//! # Early data
//! Data sets whose template has not arrived are copied into a per-exporter buffer
//! ([`EarlyLimits`]: bytes per exporter, total bytes, age) with what is needed to decode them later,
//! and replayed when the template arrives. What ages out or does not fit is counted by the caller
//! (`EarlyDataDropped`). Time comes from the datagrams' receive times (sans-IO).

use super::ErrorReason;
use super::ie::{self, Action, Extras, Slot};
use super::time::{ExportClock, TimeKind};
use crate::record::FlowRecord;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// Most fields a template may have; more is `TemplateTooLarge`.
pub const MAX_FIELDS: usize = 512;
/// Largest record a template may describe: a maximal IPFIX message minus its header and set header.
pub const MAX_RECORD_LEN: usize = 65_535 - 16 - 4;

/// One field of a template as sent: element id (enterprise bit cleared), enterprise number (0 for
/// IANA / NetFlow v9) and length ([`ie::VARLEN`] = variable length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub id: u16,
    pub pen: u32,
    pub len: u16,
}

impl Field {
    pub const fn iana(id: u16, len: u16) -> Field {
        Field { id, pen: 0, len }
    }
    pub const fn enterprise(pen: u32, id: u16, len: u16) -> Field {
        Field { id, pen, len }
    }
}

/// One compiled step: apply `action` to the next `len` bytes (`len` 0: a variable-length field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub len: u8,
}

/// Data templates produce flow records; options templates feed the sampling table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateKind {
    Data,
    Options,
}

/// A template compiled for decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    steps: Box<[Step]>,
    /// Smallest record: fixed lengths plus one length byte per variable-length field.
    min_len: u16,
    has_varlen: bool,
    pub kind: TemplateKind,
    pub start: TimeKind,
    pub end: TimeKind,
    /// Cache clock value of the last use (LRU eviction).
    last_used: u64,
}

impl Template {
    /// Compile `fields` (of which the first `scope` are options scope fields; decoded like any other).
    pub fn compile(kind: TemplateKind, fields: &[Field]) -> Result<Template, ErrorReason> {
        if fields.len() > MAX_FIELDS {
            return Err(ErrorReason::TemplateTooLarge);
        }
        if fields.is_empty() {
            return Err(ErrorReason::BadTemplate);
        }
        // Per slot: (rank, field index) of the element that will fill it.
        let mut best: [Option<(u8, usize)>; Slot::COUNT] = [None; Slot::COUNT];
        let mut min_len = 0usize;
        for (i, f) in fields.iter().enumerate() {
            min_len += if f.len == ie::VARLEN {
                1
            } else {
                usize::from(f.len)
            };
            if let Some(spec) = usable(f) {
                let slot = &mut best[spec.slot as usize];
                if slot.is_none_or(|(rank, _)| spec.rank < rank) {
                    *slot = Some((spec.rank, i));
                }
            }
        }
        if min_len > MAX_RECORD_LEN {
            return Err(ErrorReason::TemplateTooLarge);
        }
        // Only zero-length fields: records of no bytes cannot be delimited.
        if min_len == 0 {
            return Err(ErrorReason::BadTemplate);
        }
        // Both address families for one record field: each stores only non-zero values.
        let both = |v4: Slot, v6: Slot| best[v4 as usize].is_some() && best[v6 as usize].is_some();
        let either = [
            (Slot::Src, Slot::Src6, Action::SrcEither),
            (Slot::Dst, Slot::Dst6, Action::DstEither),
            (Slot::NextHop, Slot::NextHop6, Action::NextHopEither),
        ]
        .map(|(v4, v6, action)| (v4, v6, action, both(v4, v6)));
        let mut steps = Vec::with_capacity(fields.len());
        let (mut start, mut end) = (TimeKind::Absent, TimeKind::Absent);
        let mut pending_skip = 0usize;
        let flush = |steps: &mut Vec<Step>, pending: &mut usize| {
            while *pending > 0 {
                let n = (*pending).min(255);
                steps.push(Step {
                    action: Action::Skip,
                    len: n as u8,
                });
                *pending -= n;
            }
        };
        for (i, f) in fields.iter().enumerate() {
            let chosen = usable(f).filter(|s| best[s.slot as usize].is_some_and(|(_, j)| j == i));
            match chosen {
                Some(spec) => {
                    flush(&mut steps, &mut pending_skip);
                    match spec.slot {
                        Slot::Start => start = spec.time,
                        Slot::End => end = spec.time,
                        _ => {}
                    }
                    let len = if f.len == ie::VARLEN { 0 } else { f.len as u8 };
                    let action = either
                        .iter()
                        .find(|(v4, v6, _, both)| *both && (spec.slot == *v4 || spec.slot == *v6))
                        .map_or(spec.action, |e| e.2);
                    steps.push(Step { action, len });
                }
                None if f.len == ie::VARLEN => {
                    flush(&mut steps, &mut pending_skip);
                    steps.push(Step {
                        action: Action::Skip,
                        len: 0,
                    });
                }
                None => pending_skip += usize::from(f.len),
            }
        }
        flush(&mut steps, &mut pending_skip);
        Ok(Template {
            has_varlen: steps.iter().any(|s| s.len == 0),
            steps: steps.into_boxed_slice(),
            min_len: min_len as u16,
            kind,
            start,
            end,
            last_used: 0,
        })
    }

    /// Same steps, kind and time bases (ignores cache bookkeeping).
    pub fn same_layout(&self, other: &Template) -> bool {
        self.steps == other.steps
            && self.kind == other.kind
            && self.start == other.start
            && self.end == other.end
    }

    /// The compiled steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Smallest record this template can describe; trailing bytes shorter than this are padding.
    pub fn min_len(&self) -> usize {
        usize::from(self.min_len)
    }

    /// Bytes this template costs in the cache: its hash-table entry (key, template, control byte)
    /// twice, for a table at its lowest load, and the boxed steps rounded to the allocator's
    /// 16-byte granule plus its 8-byte header.
    pub fn cached_bytes(&self) -> usize {
        let entry = 2 * (size_of::<TemplateKey>() + size_of::<Template>() + 1);
        let steps = (self.steps.len() * size_of::<Step>() + 8).div_ceil(16) * 16;
        entry + steps
    }

    /// Decode one record from the front of `data`; returns the bytes it used.
    #[inline]
    pub fn decode_record(
        &self,
        data: &[u8],
        rec: &mut FlowRecord,
        extras: &mut Extras,
    ) -> Result<usize, ErrorReason> {
        if data.len() < self.min_len() {
            return Err(ErrorReason::TruncatedRecord);
        }
        let mut pos = 0usize;
        if !self.has_varlen {
            for step in self.steps.iter() {
                let end = pos + usize::from(step.len);
                let Some(bytes) = data.get(pos..end) else {
                    return Err(ErrorReason::TruncatedRecord);
                };
                ie::apply(step.action, bytes, rec, extras);
                pos = end;
            }
            return Ok(pos);
        }
        for step in self.steps.iter() {
            // A fixed skip only moves the position; the next read (or the final check) bounds it.
            if matches!(step.action, Action::Skip) && step.len != 0 {
                pos += usize::from(step.len);
                continue;
            }
            let len = if step.len != 0 {
                usize::from(step.len)
            } else {
                let Some(&first) = data.get(pos) else {
                    return Err(ErrorReason::BadVariableLength);
                };
                pos += 1;
                if first < 255 {
                    usize::from(first)
                } else {
                    let Some(&[a, b]) = data.get(pos..).and_then(|d| d.first_chunk::<2>()) else {
                        return Err(ErrorReason::BadVariableLength);
                    };
                    pos += 2;
                    usize::from(u16::from_be_bytes([a, b]))
                }
            };
            let end = pos + len;
            let Some(bytes) = data.get(pos..end) else {
                return Err(if step.len == 0 {
                    ErrorReason::BadVariableLength
                } else {
                    ErrorReason::TruncatedRecord
                });
            };
            // A variable-length field is only mapped when it holds an unsigned value of ≤ 8 bytes.
            if step.len != 0 || len <= 8 {
                ie::apply(step.action, bytes, rec, extras);
            }
            pos = end;
        }
        if pos > data.len() {
            return Err(ErrorReason::TruncatedRecord);
        }
        Ok(pos)
    }
}

/// The element spec of `f` if the decoder maps it at this length. Variable-length fields are only
/// mapped to unsigned slots (e.g. OVS tunnelKey).
fn usable(f: &Field) -> Option<ie::ElementSpec> {
    let spec = ie::lookup(f.pen, f.id)?;
    let ok = if f.len == ie::VARLEN {
        matches!(spec.width, ie::Width::Uint(_))
    } else {
        spec.width.allows(usize::from(f.len))
    };
    ok.then_some(spec)
}

/// Template scope within one exporter: protocol version, observation domain / source id, id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// 9 (NetFlow v9) or 10 (IPFIX).
    pub version: u8,
    pub domain: u32,
    pub id: u16,
}

/// A small, fast hasher for keys that are not attacker-chosen in bulk (addresses of exporters
/// that passed the allow-list, template ids): multiply-rotate over 64-bit words.
#[derive(Default, Clone, Copy)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// Memory caps of a [`TemplateCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    pub total_bytes: usize,
    pub per_exporter_bytes: usize,
}

impl Default for CacheLimits {
    /// 150 MiB in all (600,000 OVS templates), 256 KiB per exporter (over 1,000 OVS templates).
    fn default() -> Self {
        CacheLimits {
            total_bytes: 150 << 20,
            per_exporter_bytes: 256 << 10,
        }
    }
}

#[derive(Debug, Default)]
struct ExporterTemplates {
    templates: FastMap<TemplateKey, Template>,
    bytes: usize,
}

impl ExporterTemplates {
    /// Remove the least recently used template other than `keep`; returns its size.
    fn evict_lru(&mut self, keep: Option<TemplateKey>) -> Option<usize> {
        let victim = self
            .templates
            .iter()
            .filter(|(k, _)| Some(**k) != keep)
            .min_by_key(|(_, t)| t.last_used)
            .map(|(k, _)| *k)?;
        let t = self.templates.remove(&victim)?;
        let size = t.cached_bytes();
        self.bytes -= size;
        Some(size)
    }
}

/// What inserting a template did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// An existing template with this key was replaced (redefinition).
    pub replaced: bool,
    /// ... by one with a different layout: many of these for one exporter address suggest several
    /// exporters behind it (e.g. OVS nodes behind a SNAT'ing Kubernetes Service, all using
    /// domain 0 and the same template ids).
    pub changed: bool,
    /// Templates evicted to respect the caps.
    pub evicted: u64,
}

/// The templates of one worker, keyed (exporter address, [`TemplateKey`]), bounded by [`CacheLimits`].
#[derive(Debug, Default)]
pub struct TemplateCache {
    exporters: FastMap<IpAddr, ExporterTemplates>,
    limits: CacheLimits,
    total_bytes: usize,
    count: usize,
    clock: u64,
}

impl TemplateCache {
    pub fn new(limits: CacheLimits) -> Self {
        TemplateCache {
            limits,
            ..Default::default()
        }
    }

    /// Number of cached templates.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes accounted to cached templates ([`Template::cached_bytes`]).
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// The template for `key` from `exporter`, marked as used.
    #[inline]
    pub fn get(&mut self, exporter: IpAddr, key: TemplateKey) -> Option<&Template> {
        self.clock += 1;
        let t = self.exporters.get_mut(&exporter)?.templates.get_mut(&key)?;
        t.last_used = self.clock;
        Some(t)
    }

    /// Insert or replace a template, evicting others to respect the caps.
    pub fn insert(
        &mut self,
        exporter: IpAddr,
        key: TemplateKey,
        mut template: Template,
    ) -> Inserted {
        self.clock += 1;
        template.last_used = self.clock;
        let size = template.cached_bytes();
        let entry = self.exporters.entry(exporter).or_default();
        let mut out = Inserted::default();
        if let Some(old) = entry.templates.insert(key, template) {
            out.changed = entry
                .templates
                .get(&key)
                .is_some_and(|new| !new.same_layout(&old));
            let old_size = old.cached_bytes();
            entry.bytes -= old_size;
            self.total_bytes -= old_size;
            out.replaced = true;
        } else {
            self.count += 1;
        }
        entry.bytes += size;
        self.total_bytes += size;
        while entry.bytes > self.limits.per_exporter_bytes {
            let keep = (entry.templates.len() > 1).then_some(key);
            let Some(freed) = entry.evict_lru(keep) else {
                break;
            };
            self.total_bytes -= freed;
            self.count -= 1;
            out.evicted += 1;
        }
        if entry.templates.is_empty() {
            self.exporters.remove(&exporter);
        }
        while self.total_bytes > self.limits.total_bytes {
            let Some((&heaviest, _)) = self.exporters.iter().max_by_key(|(_, e)| e.bytes) else {
                break;
            };
            let Some(e) = self.exporters.get_mut(&heaviest) else {
                break;
            };
            let keep = (heaviest == exporter && e.templates.len() > 1).then_some(key);
            let Some(freed) = e.evict_lru(keep) else {
                break;
            };
            let emptied = e.templates.is_empty();
            self.total_bytes -= freed;
            self.count -= 1;
            out.evicted += 1;
            if emptied {
                self.exporters.remove(&heaviest);
            }
        }
        out
    }

    /// Withdraw one template; true when it existed.
    pub fn withdraw(&mut self, exporter: IpAddr, key: TemplateKey) -> bool {
        let Some(e) = self.exporters.get_mut(&exporter) else {
            return false;
        };
        let Some(t) = e.templates.remove(&key) else {
            return false;
        };
        let size = t.cached_bytes();
        e.bytes -= size;
        self.total_bytes -= size;
        self.count -= 1;
        if e.templates.is_empty() {
            self.exporters.remove(&exporter);
        }
        true
    }

    /// Withdraw every template of `kind` in (`exporter`, `version`, `domain`); returns how many.
    pub fn withdraw_all(
        &mut self,
        exporter: IpAddr,
        version: u8,
        domain: u32,
        kind: TemplateKind,
    ) -> usize {
        let Some(e) = self.exporters.get_mut(&exporter) else {
            return 0;
        };
        let before = e.templates.len();
        let mut freed = 0;
        e.templates.retain(|k, t| {
            let gone = k.version == version && k.domain == domain && t.kind == kind;
            if gone {
                freed += t.cached_bytes();
            }
            !gone
        });
        let removed = before - e.templates.len();
        e.bytes -= freed;
        self.total_bytes -= freed;
        self.count -= removed;
        if e.templates.is_empty() {
            self.exporters.remove(&exporter);
        }
        removed
    }
}

/// Caps of the early-data buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EarlyLimits {
    /// Bytes of data sets held per exporter.
    pub per_exporter_bytes: usize,
    /// Bytes held across all exporters.
    pub total_bytes: usize,
    /// Held data older than this (by receive time) is dropped.
    pub max_age_ns: u64,
}

impl Default for EarlyLimits {
    /// 64 KiB per exporter, 16 MiB in all, 30 s (OVS resends templates every 600 s, but a restarted
    /// collector sees templates from most exporters within seconds of their first data).
    fn default() -> Self {
        EarlyLimits {
            per_exporter_bytes: 64 << 10,
            total_bytes: 16 << 20,
            max_age_ns: 30_000_000_000,
        }
    }
}

/// What is needed to decode a held data set later, as it would have been decoded on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldContext {
    pub key: TemplateKey,
    pub received_ns: u64,
    pub clock: ExportClock,
    pub sequence: u32,
    pub exporter_port: u16,
}

/// Bytes charged per held set besides its data, so that empty or tiny sets cannot pile up.
const HELD_SET_OVERHEAD: usize = 64;

#[derive(Clone, Copy, Debug)]
struct HeldSet {
    ctx: HeldContext,
    start: usize,
    len: usize,
}

#[derive(Debug, Default)]
struct ExporterEarly {
    sets: Vec<HeldSet>,
    bytes: Vec<u8>,
}

impl ExporterEarly {
    /// Remove the held sets for which `gone` is true; returns (sets, bytes) removed.
    fn remove_where(&mut self, mut gone: impl FnMut(&HeldSet) -> bool) -> (u64, usize) {
        if !self.sets.iter().any(&mut gone) {
            return (0, 0);
        }
        let (mut sets, mut freed) = (0u64, 0usize);
        let mut write = 0usize;
        let mut kept = Vec::with_capacity(self.sets.len());
        for s in &self.sets {
            if gone(s) {
                sets += 1;
                freed += s.len + HELD_SET_OVERHEAD;
            } else {
                self.bytes.copy_within(s.start..s.start + s.len, write);
                kept.push(HeldSet { start: write, ..*s });
                write += s.len;
            }
        }
        self.bytes.truncate(write);
        self.sets = kept;
        (sets, freed)
    }
}

/// Data sets held until their template arrives, per exporter.
#[derive(Debug, Default)]
pub struct EarlyData {
    exporters: FastMap<IpAddr, ExporterEarly>,
    limits: EarlyLimits,
    total_bytes: usize,
    last_sweep_ns: u64,
}

impl EarlyData {
    pub fn new(limits: EarlyLimits) -> Self {
        EarlyData {
            limits,
            ..Default::default()
        }
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// Data sets currently held.
    pub fn sets(&self) -> usize {
        self.exporters.values().map(|e| e.sets.len()).sum()
    }

    /// Drop what is older than the age cap at `now_ns` (every exporter at most once per age period,
    /// plus `exporter` now); returns the number of sets dropped.
    pub fn expire(&mut self, exporter: IpAddr, now_ns: u64) -> u64 {
        if self.exporters.is_empty() {
            return 0;
        }
        let max_age = self.limits.max_age_ns;
        let old = |s: &HeldSet| now_ns.saturating_sub(s.ctx.received_ns) > max_age;
        let mut dropped = 0;
        if now_ns.saturating_sub(self.last_sweep_ns) > max_age {
            self.last_sweep_ns = now_ns;
            for e in self.exporters.values_mut() {
                let (n, freed) = e.remove_where(old);
                dropped += n;
                self.total_bytes -= freed;
            }
            self.exporters.retain(|_, e| !e.sets.is_empty());
        } else if let Some(e) = self.exporters.get_mut(&exporter) {
            let (n, freed) = e.remove_where(old);
            dropped += n;
            self.total_bytes -= freed;
            if e.sets.is_empty() {
                self.exporters.remove(&exporter);
            }
        }
        dropped
    }

    /// Hold `set` (a data set's records, without the set header); false when it does not fit.
    pub fn hold(&mut self, exporter: IpAddr, ctx: HeldContext, set: &[u8]) -> bool {
        let cost = set.len() + HELD_SET_OVERHEAD;
        if self.total_bytes + cost > self.limits.total_bytes {
            return false;
        }
        let per_exporter = self.limits.per_exporter_bytes;
        let e = self.exporters.entry(exporter).or_default();
        if e.bytes.len() + e.sets.len() * HELD_SET_OVERHEAD + cost > per_exporter {
            if e.sets.is_empty() {
                self.exporters.remove(&exporter);
            }
            return false;
        }
        let start = e.bytes.len();
        e.bytes.extend_from_slice(set);
        e.sets.push(HeldSet {
            ctx,
            start,
            len: set.len(),
        });
        self.total_bytes += cost;
        true
    }

    /// Move every set held for (`exporter`, `key`) into `out` (bytes) and `contexts` (with each
    /// set's range in `out`), oldest first, and forget them.
    pub fn take(
        &mut self,
        exporter: IpAddr,
        key: TemplateKey,
        out: &mut Vec<u8>,
        contexts: &mut Vec<(HeldContext, std::ops::Range<usize>)>,
    ) {
        let Some(e) = self.exporters.get_mut(&exporter) else {
            return;
        };
        for s in e.sets.iter().filter(|s| s.ctx.key == key) {
            let start = out.len();
            if let Some(bytes) = e.bytes.get(s.start..s.start + s.len) {
                out.extend_from_slice(bytes);
                contexts.push((s.ctx, start..out.len()));
            }
        }
        let (_, freed) = e.remove_where(|s| s.ctx.key == key);
        self.total_bytes -= freed;
        if e.sets.is_empty() {
            self.exporters.remove(&exporter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ie::VARLEN;
    use bytemuck::Zeroable;

    fn rec() -> FlowRecord {
        FlowRecord::zeroed()
    }

    #[test]
    fn compile_merges_skips_and_keeps_mapped_steps() {
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(8, 4),
                Field::iana(500, 2),
                Field::iana(501, 300),
                Field::iana(2, 4),
                Field::iana(82, VARLEN),
            ],
        )
        .unwrap();
        assert_eq!(
            t.steps(),
            &[
                Step {
                    action: Action::SrcV4,
                    len: 4
                },
                Step {
                    action: Action::Skip,
                    len: 255
                },
                Step {
                    action: Action::Skip,
                    len: 47
                },
                Step {
                    action: Action::Packets,
                    len: 4
                },
                Step {
                    action: Action::Skip,
                    len: 0
                },
            ]
        );
        assert_eq!(t.min_len(), 4 + 2 + 300 + 4 + 1);
    }

    #[test]
    fn repeated_element_first_wins_and_rank_beats_position() {
        // Two sourceIPv4Address fields: the first is stored. packetTotalCount (86) before
        // packetDeltaCount (2): the delta wins although it comes later.
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(8, 4),
                Field::iana(8, 4),
                Field::iana(86, 8),
                Field::iana(2, 8),
            ],
        )
        .unwrap();
        let data = [
            10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 7,
        ];
        let (mut r, mut x) = (rec(), Extras::default());
        assert_eq!(t.decode_record(&data, &mut r, &mut x), Ok(24));
        assert_eq!(r.src_addr, crate::record::ipv4_bytes([10, 0, 0, 1]));
        assert_eq!(r.packets, 7);
    }

    #[test]
    fn wrong_length_for_a_mapped_element_is_skipped() {
        let t =
            Template::compile(TemplateKind::Data, &[Field::iana(8, 3), Field::iana(4, 1)]).unwrap();
        assert_eq!(
            t.steps(),
            &[
                Step {
                    action: Action::Skip,
                    len: 3
                },
                Step {
                    action: Action::Proto,
                    len: 1
                }
            ]
        );
    }

    #[test]
    fn compile_errors() {
        assert_eq!(
            Template::compile(TemplateKind::Data, &[]),
            Err(ErrorReason::BadTemplate)
        );
        assert_eq!(
            Template::compile(TemplateKind::Data, &[Field::iana(1, 0)]),
            Err(ErrorReason::BadTemplate)
        );
        let huge = vec![Field::iana(1, 8); MAX_FIELDS + 1];
        assert_eq!(
            Template::compile(TemplateKind::Data, &huge),
            Err(ErrorReason::TemplateTooLarge)
        );
        let long = vec![Field::iana(999, 60_000); 2];
        assert_eq!(
            Template::compile(TemplateKind::Data, &long),
            Err(ErrorReason::TemplateTooLarge)
        );
    }

    #[test]
    fn varlen_one_and_three_byte_lengths() {
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(82, VARLEN),
                Field::enterprise(ie::PEN_OVS, 892, VARLEN),
                Field::iana(4, 1),
            ],
        )
        .unwrap();
        // interfaceName of 300 bytes (255, then 2-byte length), tunnelKey in 3 bytes, proto 17.
        let mut data = vec![255, 0x01, 0x2c];
        data.extend(std::iter::repeat_n(b'x', 300));
        data.extend([3, 0, 0x12, 0x34, 17]);
        let (mut r, mut x) = (rec(), Extras::default());
        assert_eq!(t.decode_record(&data, &mut r, &mut x), Ok(data.len()));
        assert_eq!((r.tunnel_key, r.proto), (0x1234, 17));
        // A length that runs past the record.
        let bad = [10, b'a', b'b'];
        assert_eq!(
            t.decode_record(&bad, &mut r, &mut x),
            Err(ErrorReason::BadVariableLength)
        );
        let bad3 = [255, 0x01, 0x00];
        assert_eq!(
            t.decode_record(&bad3, &mut r, &mut x),
            Err(ErrorReason::BadVariableLength)
        );
        // A fixed field cut short.
        let fixed = Template::compile(TemplateKind::Data, &[Field::iana(1, 8)]).unwrap();
        assert_eq!(
            fixed.decode_record(&[0; 7], &mut r, &mut x),
            Err(ErrorReason::TruncatedRecord)
        );
        // A tunnel key longer than 8 bytes is skipped, not truncated into garbage.
        let mut data = vec![0u8, 9];
        data.extend([0xff; 9]);
        data.push(6);
        let mut r = rec();
        assert_eq!(t.decode_record(&data, &mut r, &mut x), Ok(data.len()));
        assert_eq!((r.tunnel_key, r.proto), (0, 6));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn key(id: u16) -> TemplateKey {
        TemplateKey {
            version: 10,
            domain: 0,
            id,
        }
    }

    fn small() -> Template {
        Template::compile(TemplateKind::Data, &[Field::iana(1, 4), Field::iana(2, 4)]).unwrap()
    }

    #[test]
    fn cache_replaces_withdraws_and_scopes_by_exporter_and_domain() {
        let mut c = TemplateCache::new(CacheLimits::default());
        assert!(!c.insert(ip(1), key(256), small()).replaced);
        let again = c.insert(ip(1), key(256), small());
        assert!(again.replaced && !again.changed);
        let other = Template::compile(TemplateKind::Data, &[Field::iana(4, 1)]).unwrap();
        assert!(c.insert(ip(1), key(256), other).changed);
        c.insert(ip(1), key(256), small());
        c.insert(ip(2), key(256), small());
        c.insert(
            ip(1),
            TemplateKey {
                domain: 7,
                ..key(256)
            },
            small(),
        );
        assert_eq!(c.len(), 3);
        assert!(c.get(ip(3), key(256)).is_none());
        assert!(c.withdraw(ip(1), key(256)));
        assert!(!c.withdraw(ip(1), key(256)));
        assert!(c.get(ip(2), key(256)).is_some());
        assert_eq!(c.withdraw_all(ip(1), 10, 7, TemplateKind::Options), 0);
        assert_eq!(c.withdraw_all(ip(1), 10, 7, TemplateKind::Data), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), small().cached_bytes());
    }

    #[test]
    fn per_exporter_cap_evicts_lru_of_that_exporter() {
        let one = small().cached_bytes();
        let mut c = TemplateCache::new(CacheLimits {
            total_bytes: 1 << 20,
            per_exporter_bytes: 3 * one,
        });
        for id in 256..259 {
            assert_eq!(c.insert(ip(1), key(id), small()).evicted, 0);
        }
        c.insert(ip(2), key(256), small());
        assert!(c.get(ip(1), key(256)).is_some()); // 257 is now the least recently used
        assert_eq!(c.insert(ip(1), key(300), small()).evicted, 1);
        assert!(c.get(ip(1), key(257)).is_none());
        assert!(c.get(ip(1), key(256)).is_some());
        assert!(c.get(ip(2), key(256)).is_some());
        assert_eq!(c.len(), 4);
        assert!(c.bytes() <= 4 * one);
    }

    #[test]
    fn total_cap_evicts_from_the_heaviest_exporter() {
        let one = small().cached_bytes();
        let mut c = TemplateCache::new(CacheLimits {
            total_bytes: 4 * one,
            per_exporter_bytes: 1 << 20,
        });
        for id in 256..259 {
            c.insert(ip(1), key(id), small());
        }
        c.insert(ip(2), key(256), small());
        assert_eq!(c.insert(ip(2), key(257), small()).evicted, 1);
        assert_eq!(c.len(), 4);
        assert!(
            c.get(ip(1), key(256)).is_none(),
            "oldest of the heaviest exporter"
        );
        assert!(c.get(ip(2), key(256)).is_some());
        assert!(c.bytes() <= 4 * one);
    }

    fn held(id: u16, t: u64) -> HeldContext {
        HeldContext {
            key: key(id),
            received_ns: t,
            clock: ExportClock::default(),
            sequence: 0,
            exporter_port: 4739,
        }
    }

    #[test]
    fn early_data_holds_takes_and_ages() {
        // Each held set costs its bytes plus HELD_SET_OVERHEAD.
        let o = HELD_SET_OVERHEAD;
        let mut e = EarlyData::new(EarlyLimits {
            per_exporter_bytes: 10 + 3 * o,
            total_bytes: 15 + 4 * o,
            max_age_ns: 100,
        });
        assert!(e.hold(ip(1), held(256, 0), &[1, 2, 3]));
        assert!(e.hold(ip(1), held(257, 10), &[4, 5]));
        assert!(e.hold(ip(1), held(256, 20), &[6, 7, 8]));
        assert!(!e.hold(ip(1), held(256, 20), &[0; 3]), "per-exporter cap");
        assert!(e.hold(ip(2), held(256, 20), &[9; 5]));
        assert!(!e.hold(ip(3), held(256, 20), &[9; 3]), "total cap");
        // Empty sets are charged too: they cannot pile up.
        let mut tiny = EarlyData::new(EarlyLimits {
            per_exporter_bytes: 10 * o,
            ..EarlyLimits::default()
        });
        assert_eq!(
            (0..100)
                .filter(|_| tiny.hold(ip(1), held(256, 0), &[]))
                .count(),
            10
        );
        let (mut out, mut ctx) = (Vec::new(), Vec::new());
        e.take(ip(1), key(256), &mut out, &mut ctx);
        assert_eq!(out, [1, 2, 3, 6, 7, 8]);
        assert_eq!(ctx.len(), 2);
        assert_eq!(ctx[1].1, 3..6);
        assert_eq!(e.bytes(), 7 + 2 * o);
        // The remaining set of exporter 1 ages out; exporter 2's too on the sweep.
        assert_eq!(e.expire(ip(1), 50), 0);
        assert_eq!(e.expire(ip(1), 200), 2);
        assert_eq!((e.bytes(), e.sets()), (0, 0));
    }
}
