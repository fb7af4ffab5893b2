//! Compiled templates, the per-worker [`TemplateCache`] and the [`EarlyData`] holding buffer.
//!
//! A NetFlow v9 / IPFIX template is compiled once, when it arrives, into a list of 4-byte [`Step`]s
//! — no per-field lookup by element id when records are decoded. Precedence between elements that
//! fill the same record field is resolved at compile time (see [`super::ie`]): a repeated element
//! (OVS egress templates repeat interfaceName 82 and interfaceDescription 83) is decoded by
//! position, and the *first* occurrence of a mapped element is the one stored; the later ones are
//! skipped.
//!
//! # Step layout
//! A record is cut into *regions*: runs of fixed-length fields between variable-length ones (and
//! at most 255 bytes up to their last mapped field). A region costs one length check against the
//! data; its mapped fields are then read from a fixed-size view of the data at byte offsets (no
//! further check can fail) and stored at byte offsets of the record ([`RecordImage`]): an unsigned
//! value is one big-endian read (and a shift for reduced-size encodings); two adjacent fields of
//! one kind (ports, addresses, MACs, TTL and protocol) share a step. Unmapped and
//! enterprise fields cost nothing (the offsets step over them); a variable-length field reads its
//! 1- or 3-byte length, moves the base past its value and opens the next region. Regions near the
//! end of a data set read from a zero-padded copy of the set's last bytes ([`SetTail`], made once
//! per set). Transformed values (DSCP, VLAN, ICMP type-code, …) and options elements go through
//! [`ie::apply`]. A data template that is one of Open vSwitch's layouts decodes through the
//! straight-line decoder of [`ipfix_ovs`] instead; its steps are still compiled (they define what
//! that decoder must produce, and tests compare the two).
//!
//! # Memory per cached template
//! A step is 4 bytes; the largest OVS data template (51 fields) compiles to 27 steps, 250 cached
//! bytes by the measure below. A cached template costs its [`TemplateKey`] and [`Template`] (which
//! holds its session's index) in a hash table that is between 44 % and 88 % full, its key in its
//! session's key list, and its steps with their reference counts and the allocator's header.
//! Identical templates of different sessions (a cluster's nodes send the same ones) share one copy
//! of their steps. [`Template::cached_bytes`] charges the table entry twice (worst-case load) and
//! every template its steps, shared or not, and the caps are enforced with that figure;
//! `ipfix::tests::ovs_family_round_trips` checks that every OVS template stays ≤ 256 B by that
//! measure. Measured with a counting allocator and the resident set (`benches/decode_netflow.rs`,
//! 600 and 5,000 exporters × 121 OVS templates): see BENCHMARKS.md.

//! # Bounds
//! [`CacheLimits`]: a total byte cap and a per-exporter byte cap (an exporter is a transport
//! session: source address and port). Inserting past the per-exporter cap
//! evicts that exporter's least recently used template; past the total cap, the least recently used
//! template of the session seen least recently (of the heaviest of those seen as recently). A
//! redefinition replaces the old one. A template
//! does not expire on its own (some exporters send them once per session), but a session that
//! learned and used none for [`CacheLimits::session_idle_ns`] (30 minutes) is forgotten with its
//! templates: an exporter that restarts comes back from a new port, and its old session would
//! otherwise stay until the caps pushed it out.
//!
//! # Lookup
//! Every session's templates share one hash table keyed (session, [`TemplateKey`]), so a data set
//! finds its template, and through the session index stored in it its session, with one lookup;
//! each session keeps the keys of its templates, so eviction, withdrawal and expiry touch only
//! that session's templates.
//!
//! # Early data
//! Data sets whose template has not arrived are copied into a per-exporter buffer
//! ([`EarlyLimits`]: bytes per exporter, total bytes, age) with what is needed to decode them later,
//! and replayed when the template arrives. What ages out or does not fit is counted by the caller
//! (`EarlyDataDropped`). Time comes from the datagrams' receive times (sans-IO). A message looks
//! its session's held sets up only when some are held and the session's bit in a small filter is
//! set, so exporters with nothing held pay nothing for the ones that do.

use super::ErrorReason;
use super::ie::{self, Action, Extras, Slot, Store};
use super::ipfix_ovs;
use super::time::{ExportClock, TimeKind};
use crate::record::FlowRecord;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

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

/// What one compiled [`Step`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// The big-endian unsigned field at `src` (from the region's base) into the native-endian
    /// record field of 1, 2, 4 or 8 bytes at byte `dst` of the [`RecordImage`]. `arg` is the shift
    /// that turns an 8-byte read into the field's value: 8 × (8 − field length) bits, so reduced-size
    /// encodings cost nothing extra; narrower record fields keep the low bytes.
    Uint1,
    Uint2,
    Uint4,
    Uint8,
    /// As `Uint1` … `Uint8` when the field has the record field's own size: no shift.
    Be1,
    Be2,
    Be4,
    Be8,
    /// The IPv4 address at `src` into the 16-byte address field at `dst`, IPv4-mapped.
    V4Mapped,
    /// Bytes copied as sent: an IPv6 address (16), a MAC address (6).
    Copy16,
    Copy6,
    /// Two adjacent fields of one of the kinds above (source and destination ports, addresses,
    /// MACs, TTL and protocol, …) in one step: the first at `src` into `dst`, the second right
    /// after it into byte `arg`.
    Be1Pair,
    Be2Pair,
    Be4Pair,
    Be8Pair,
    V4MappedPair,
    Copy16Pair,
    Copy6Pair,
    /// Pass the `arg`-byte field at `src` to [`ie::apply`] with the action of index `dst`
    /// (transformed values and options elements; rare).
    Apply,
    /// Start a region: the base moves `src | dst << 8` bytes on, and the `arg` bytes from there
    /// must be in the record. The steps up to the next region read below `arg` from this base.
    Region,
    /// A variable-length field whose length prefix is `src` bytes on from the base: its value
    /// goes to [`ie::apply`] with the action of index `dst % 64`, and the base moves to its end.
    /// Then, unless `arg` is 0, a region of `arg` bytes starts there (as [`Op::Region`] with no
    /// move). The element is an unsigned integer of up to 2^(`dst / 64`) bytes: a longer value
    /// (RFC 7011 §6.2 allows only shorter ones) stores 0 and is counted, never narrowed.
    Varlen,
    /// As `Varlen` for a field that is not mapped (interface names and descriptions): skipped.
    VarSkip,
}

impl Op {
    /// The op storing two adjacent fields of this kind, for kinds without a shift.
    const fn pair(self) -> Option<Op> {
        Some(match self {
            Op::Be1 => Op::Be1Pair,
            Op::Be2 => Op::Be2Pair,
            Op::Be4 => Op::Be4Pair,
            Op::Be8 => Op::Be8Pair,
            Op::V4Mapped => Op::V4MappedPair,
            Op::Copy16 => Op::Copy16Pair,
            Op::Copy6 => Op::Copy6Pair,
            _ => return None,
        })
    }
}

/// One compiled step, 4 bytes (see [`Op`] for what `src`, `dst` and `arg` mean). Unmapped
/// fixed-length fields have no step: offsets step over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    pub op: Op,
    pub src: u8,
    pub dst: u8,
    pub arg: u8,
}

// `Op::Varlen` keeps its action's index in the low 6 bits of `dst`.
const _: () = assert!(Action::ALL.len() <= 64);

/// Bytes a region may span up to the end of its last mapped field, so offsets fit a byte.
const REGION_SPAN: usize = 255;
/// Bytes readable from a region's base without further checks: any byte offset plus the widest
/// read (16).
pub const WINDOW: usize = 256 + 16;

/// The record being decoded plus spare bytes, so that a [`Step`]'s store at any byte offset
/// fits without a bounds check.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct RecordImage {
    pub rec: FlowRecord,
    spare: [u8; 16],
}

impl RecordImage {
    pub fn new(rec: FlowRecord) -> Self {
        RecordImage {
            rec,
            spare: [0; 16],
        }
    }
}

/// The last [`WINDOW`] bytes of a data set followed by [`WINDOW`] zero bytes, copied once per
/// set when a region near its end is read: regions there are read from this copy. One per worker,
/// [`SetTail::reset`] per set.
#[derive(Debug)]
pub struct SetTail {
    bytes: [u8; 2 * WINDOW],
    filled: bool,
}

impl SetTail {
    pub fn new() -> Self {
        SetTail {
            bytes: [0; 2 * WINDOW],
            filled: false,
        }
    }

    /// Forget the previous set (its bytes are overwritten when the next set needs them; the
    /// zero half is never written).
    pub fn reset(&mut self) {
        self.filled = false;
    }

    /// The [`WINDOW`] bytes from `base` of `data` (a suffix of the set): straight from `data`
    /// when it has them, else from this zero-padded copy of the set's end.
    #[inline(always)]
    pub(super) fn view<'a>(&'a mut self, data: &'a [u8], base: usize) -> &'a [u8; WINDOW] {
        match data.get(base..).and_then(|d| d.first_chunk::<WINDOW>()) {
            Some(w) => w,
            None => self.window(data, base),
        }
    }

    /// The [`WINDOW`] bytes from `base` of `data` (a suffix of the set), zero-padded.
    #[cold]
    fn window(&mut self, data: &[u8], base: usize) -> &[u8; WINDOW] {
        let from_end = data.len().saturating_sub(base).min(WINDOW);
        if !self.filled {
            // `data` ends where the set ends: its last bytes are the set's last bytes.
            let n = data.len().min(WINDOW);
            if let (Some(dst), Some(src)) = (
                self.bytes.get_mut(WINDOW - n..WINDOW),
                data.get(data.len() - n..),
            ) {
                dst.copy_from_slice(src);
            }
            self.filled = true;
        }
        self.bytes
            .get(WINDOW - from_end..)
            .and_then(|w| w.first_chunk::<WINDOW>())
            .unwrap_or(&NO_WINDOW)
    }
}

impl Default for SetTail {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes [`Template::decode_record`] takes from the window per field read (the widest field).
const N16: usize = 16;

#[inline(always)]
fn be16(f: [u8; N16]) -> u16 {
    u16::from_be_bytes([f[0], f[1]])
}

#[inline(always)]
fn be32(f: [u8; N16]) -> u32 {
    u32::from_be_bytes([f[0], f[1], f[2], f[3]])
}

#[inline(always)]
fn be64(f: [u8; N16]) -> u64 {
    u64::from_be_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]])
}

#[inline(always)]
fn v4_mapped(f: [u8; N16]) -> [u8; 16] {
    crate::record::ipv4_bytes([f[0], f[1], f[2], f[3]])
}

/// The view before the first region (no step reads it: every store follows a region).
static NO_WINDOW: [u8; WINDOW] = [0; WINDOW];

/// Data templates produce flow records; options templates feed the sampling table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateKind {
    Data,
    Options,
}

/// A template compiled for decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Shared by the identical templates of every session in a [`TemplateCache`] (a cluster's
    /// nodes send the same ones).
    steps: Arc<[Step]>,
    /// Smallest record: fixed lengths plus one length byte per variable-length field.
    min_len: u16,
    /// Bytes from the last base (the end of the last variable-length field, or the record's start)
    /// to the end of the record.
    tail: u16,
    /// See [`Template::needs_fresh_record`].
    fresh: bool,
    /// See [`Template::carries_sampling`].
    sampling: bool,
    /// See [`Template::skips_fields`].
    skips: bool,
    /// The straight-line decoder when this is one of Open vSwitch's data templates.
    ovs: Option<ipfix_ovs::Layout>,
    pub kind: TemplateKind,
    pub start: TimeKind,
    pub end: TimeKind,
    /// Cache clock value of the last use (LRU eviction).
    last_used: u64,
    /// The cache's index of the session that sent it ([`TemplateCache`]; here rather than next
    /// to the template in the cache's table, where it would cost 8 bytes of padding).
    session: u32,
}

impl Template {
    /// Compile `fields` (of which the first `scope` are options scope fields; decoded like any other).
    pub fn compile(kind: TemplateKind, fields: &[Field]) -> Result<Template, ErrorReason> {
        Self::compile_with(kind, fields, &mut Vec::new(), |steps| Arc::from(steps))
    }

    /// [`Template::compile`], building the steps in `scratch` (reused, so that compiling needs no
    /// allocation of its own) and making them the template's shared list with `share`. With
    /// [`TemplateCache::shared_steps`] as `share`, a template resent unchanged, as exporters do
    /// to refresh it, allocates nothing.
    pub fn compile_with(
        kind: TemplateKind,
        fields: &[Field],
        scratch: &mut Vec<Step>,
        share: impl FnOnce(&[Step]) -> Arc<[Step]>,
    ) -> Result<Template, ErrorReason> {
        if fields.len() > MAX_FIELDS {
            return Err(ErrorReason::TemplateTooLarge);
        }
        if fields.is_empty() {
            return Err(ErrorReason::BadTemplate);
        }
        // Per slot: (rank, field index) of the element that will fill it.
        let mut best: [Option<(u8, usize)>; Slot::COUNT] = [None; Slot::COUNT];
        let mut min_len = 0usize;
        // A mapped element at a length its type cannot have (0 is no value at all: NetFlow v9
        // exporters send it for fields they leave out).
        let skips = fields
            .iter()
            .any(|f| f.len != 0 && ie::lookup(f.pen, f.id).is_some() && usable(f).is_none());
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
        let steps = scratch;
        steps.clear();
        let (mut start, mut end) = (TimeKind::Absent, TimeKind::Absent);
        // Offset from the current base (every fixed length sums to ≤ min_len ≤ MAX_RECORD_LEN),
        // and the index of the current region's step, if one is open.
        let mut off = 0usize;
        let mut region: Option<usize> = None;
        let open_region = |steps: &mut Vec<Step>, advance: usize| {
            let [src, dst] = (advance as u16).to_le_bytes();
            steps.push(Step {
                op: Op::Region,
                src,
                dst,
                arg: 0,
            });
            steps.len() - 1
        };
        let (mut fresh, mut sampling) = (false, false);
        for (i, f) in fields.iter().enumerate() {
            let chosen = usable(f).filter(|s| best[s.slot as usize].is_some_and(|(_, j)| j == i));
            let action = match chosen {
                Some(spec) => {
                    match spec.slot {
                        Slot::Start => start = spec.time,
                        Slot::End => end = spec.time,
                        _ => {}
                    }
                    either
                        .iter()
                        .find(|(v4, v6, _, both)| *both && (spec.slot == *v4 || spec.slot == *v6))
                        .map_or(spec.action, |e| e.2)
                }
                None => Action::Skip,
            };
            fresh |= matches!(
                action,
                Action::SrcEither | Action::DstEither | Action::NextHopEither
            );
            sampling |= matches!(
                action,
                Action::SamplerId
                    | Action::SamplingInterval
                    | Action::SelectorAlgorithm
                    | Action::PacketInterval
                    | Action::PacketSpace
                    | Action::SamplingSize
                    | Action::SamplingPopulation
            );
            if f.len == ie::VARLEN {
                // The prefix is `src` bytes on from the base (a region that only moves the base
                // comes first when that is more than a byte can say). The region after it is
                // opened by the same step.
                if off > usize::from(u8::MAX) {
                    open_region(&mut *steps, off);
                    off = 0;
                }
                // Mapped variable-length elements are unsigned of 1, 2, 4 or 8 bytes (`usable`).
                let (op, dst) = match (action, chosen.map(|s| s.width)) {
                    (Action::Skip, _) => (Op::VarSkip, Action::Skip as u8),
                    (_, Some(ie::Width::Uint(n))) => {
                        (Op::Varlen, action as u8 | (n.trailing_zeros() as u8) << 6)
                    }
                    _ => (Op::Varlen, action as u8 | 3 << 6),
                };
                steps.push(Step {
                    op,
                    src: off as u8,
                    dst,
                    arg: 0,
                });
                (off, region) = (0, Some(steps.len() - 1));
                continue;
            }
            let len = usize::from(f.len);
            if action != Action::Skip {
                // Mapped widths are at most 16 bytes (checked by `usable`).
                let r = match region {
                    Some(r) if off + len <= REGION_SPAN => r,
                    _ => {
                        let r = open_region(&mut *steps, off);
                        (off, region) = (0, Some(r));
                        r
                    }
                };
                let shift = (8usize.saturating_sub(len) * 8) as u8;
                let (op, dst, arg) = match (ie::placement(action), len) {
                    (Some((Store::Uint1, dst)), 1) => (Op::Be1, dst, 0),
                    (Some((Store::Uint2, dst)), 2) => (Op::Be2, dst, 0),
                    (Some((Store::Uint4, dst)), 4) => (Op::Be4, dst, 0),
                    // Wider than the 32-bit record field (observationPointId, selectorId are
                    // unsigned64): [`ie::apply`] stores the value only when it fits.
                    (Some((Store::Uint4, _)), 5..) => (Op::Apply, action as usize, len as u8),
                    (Some((Store::Uint8, dst)), 8) => (Op::Be8, dst, 0),
                    (Some((Store::Uint1, dst)), _) => (Op::Uint1, dst, shift),
                    (Some((Store::Uint2, dst)), _) => (Op::Uint2, dst, shift),
                    (Some((Store::Uint4, dst)), _) => (Op::Uint4, dst, shift),
                    (Some((Store::Uint8, dst)), _) => (Op::Uint8, dst, shift),
                    (Some((Store::V4Mapped, dst)), _) => (Op::V4Mapped, dst, 4),
                    (Some((Store::Copy16, dst)), _) => (Op::Copy16, dst, 16),
                    (Some((Store::Copy6, dst)), _) => (Op::Copy6, dst, 6),
                    (None, _) => (Op::Apply, action as usize, len as u8),
                };
                // The previous step of the same kind, for the field right before this one (a
                // store step is only ever preceded by one of its own region): one step for both.
                let pair = match (steps.last_mut(), op.pair()) {
                    (Some(last), Some(pair))
                        if last.op == op && usize::from(last.src) + len == off =>
                    {
                        (last.op, last.arg) = (pair, dst as u8);
                        true
                    }
                    _ => false,
                };
                if !pair {
                    steps.push(Step {
                        op,
                        src: off as u8,
                        dst: dst as u8,
                        arg,
                    });
                }
                if let Some(step) = steps.get_mut(r) {
                    step.arg = (off + len) as u8;
                }
            }
            off += len;
        }
        let ovs = match kind {
            TemplateKind::Data => ipfix_ovs::Layout::recognise(fields),
            TemplateKind::Options => None,
        };
        Ok(Template {
            ovs,
            steps: share(steps),
            min_len: min_len as u16,
            tail: off as u16,
            fresh,
            sampling,
            skips,
            kind,
            start,
            end,
            last_used: 0,
            session: 0,
        })
    }

    /// Same steps, kind, time bases and skipped fields (ignores cache bookkeeping).
    pub fn same_layout(&self, other: &Template) -> bool {
        self.steps == other.steps
            && self.tail == other.tail
            && self.kind == other.kind
            && self.start == other.start
            && self.end == other.end
            && self.skips == other.skips
    }

    /// The compiled steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Smallest record this template can describe; trailing bytes shorter than this are padding.
    pub fn min_len(&self) -> usize {
        usize::from(self.min_len)
    }

    /// Bytes this template costs in the cache at most: its hash-table entry (session, key,
    /// template, control byte) twice, for a table at its lowest load; its key in its session's
    /// list (grown exactly); and its steps with their reference counts, rounded to the
    /// allocator's 16-byte granule plus its 8-byte header. The steps are charged to every template
    /// that shares them, so the caps hold for templates that share nothing.
    pub fn cached_bytes(&self) -> usize {
        let entry = 2 * (size_of::<Cached>() + 1) + size_of::<TemplateKey>();
        let steps = (self.steps.len() * size_of::<Step>() + 16 + 8).div_ceil(16) * 16;
        entry + steps
    }

    /// Whether each record must start from a fresh copy of the message's base record: some step
    /// stores only non-zero values. Otherwise every record writes the same fields, and one
    /// [`RecordImage`] serves a whole data set.
    pub fn needs_fresh_record(&self) -> bool {
        self.fresh
    }

    /// The Open vSwitch layout this data template has, if any: its records then take the
    /// straight-line decoder of [`ipfix_ovs`] (times in delta-µs, no sampling elements).
    #[inline]
    pub fn ovs_layout(&self) -> Option<ipfix_ovs::Layout> {
        self.ovs
            .filter(|_| self.start == TimeKind::DeltaMicros && self.end == TimeKind::DeltaMicros)
    }

    /// Whether the template gives an element the decoder maps a length its type cannot have: that
    /// field is skipped in every record, and each record counts as `field_skipped`.
    pub fn skips_fields(&self) -> bool {
        self.skips
    }

    /// Whether records carry a sampler id or sampling parameters: otherwise every record of a
    /// data set has the same sampling rate.
    pub fn carries_sampling(&self) -> bool {
        self.sampling
    }

    /// Decode one record from the front of `data` (a suffix of the data set whose [`SetTail`] is
    /// `tail`) into `img`; returns the bytes it used.
    ///
    /// Every region's extent is checked once against `data` (a template is the exporter's word,
    /// not a proof): a region past the end is `TruncatedRecord`, a variable-length prefix or value
    /// past the end is `BadVariableLength`. Fields are then read from a fixed-size view of the
    /// region at byte offsets, which needs no further checks.
    #[inline(always)]
    pub fn decode_record(
        &self,
        data: &[u8],
        img: &mut RecordImage,
        extras: &mut Extras,
        tail: &mut SetTail,
    ) -> Result<usize, ErrorReason> {
        if data.len() < self.min_len() {
            return Err(ErrorReason::TruncatedRecord);
        }
        let mut base = 0usize;
        let mut window: &[u8; WINDOW] = &NO_WINDOW;
        for step in self.steps.iter() {
            let image: &mut [u8; size_of::<RecordImage>()] = bytemuck::cast_mut(img);
            let (src, dst) = (usize::from(step.src), usize::from(step.dst));
            let word = || {
                let mut w = [0u8; 8];
                if let Some(bytes) = window.get(src..src + 8) {
                    w.copy_from_slice(bytes);
                }
                u64::from_be_bytes(w).wrapping_shr(u32::from(step.arg))
            };
            let mut put_at = |at: usize, bytes: &[u8]| {
                if let Some(d) = image.get_mut(at..at + bytes.len()) {
                    d.copy_from_slice(bytes);
                }
            };
            // The field of `N` bytes at `from` in the window.
            let field = |from: usize| -> [u8; N16] {
                let mut f = [0u8; N16];
                if let Some(b) = window.get(from..from + N16) {
                    f.copy_from_slice(b);
                }
                f
            };
            match step.op {
                Op::Be1 => put_at(dst, &field(src)[..1]),
                Op::Be2 => put_at(dst, &be16(field(src)).to_ne_bytes()),
                Op::Be4 => put_at(dst, &be32(field(src)).to_ne_bytes()),
                Op::Be8 => put_at(dst, &be64(field(src)).to_ne_bytes()),
                Op::Uint1 => put_at(dst, &[word() as u8]),
                Op::Uint2 => put_at(dst, &(word() as u16).to_ne_bytes()),
                Op::Uint4 => put_at(dst, &(word() as u32).to_ne_bytes()),
                Op::Uint8 => put_at(dst, &word().to_ne_bytes()),
                Op::V4Mapped => put_at(dst, &v4_mapped(field(src))),
                Op::Copy16 => put_at(dst, &field(src)),
                Op::Copy6 => put_at(dst, &field(src)[..6]),
                Op::Be1Pair => {
                    let f = field(src);
                    put_at(dst, &f[..1]);
                    put_at(usize::from(step.arg), &f[1..2]);
                }
                Op::Be2Pair => {
                    put_at(dst, &be16(field(src)).to_ne_bytes());
                    put_at(usize::from(step.arg), &be16(field(src + 2)).to_ne_bytes());
                }
                Op::Be4Pair => {
                    put_at(dst, &be32(field(src)).to_ne_bytes());
                    put_at(usize::from(step.arg), &be32(field(src + 4)).to_ne_bytes());
                }
                Op::Be8Pair => {
                    put_at(dst, &be64(field(src)).to_ne_bytes());
                    put_at(usize::from(step.arg), &be64(field(src + 8)).to_ne_bytes());
                }
                Op::V4MappedPair => {
                    put_at(dst, &v4_mapped(field(src)));
                    put_at(usize::from(step.arg), &v4_mapped(field(src + 4)));
                }
                Op::Copy16Pair => {
                    put_at(dst, &field(src));
                    put_at(usize::from(step.arg), &field(src + 16));
                }
                Op::Copy6Pair => {
                    let f = field(src);
                    put_at(dst, &f[..6]);
                    put_at(usize::from(step.arg), &f[6..12]);
                }
                Op::Apply => {
                    if let (Some(bytes), Some(action)) = (
                        window.get(src..src + usize::from(step.arg)),
                        Action::from_index(step.dst),
                    ) {
                        ie::apply(action, bytes, &mut img.rec, extras);
                    }
                }
                Op::Region => {
                    base += usize::from(u16::from_le_bytes([step.src, step.dst]));
                    if base + usize::from(step.arg) > data.len() {
                        return Err(ErrorReason::TruncatedRecord);
                    }
                    window = tail.view(data, base);
                }
                Op::VarSkip => {
                    (_, base) = varlen(data, base + src)?;
                    if step.arg != 0 {
                        if base + usize::from(step.arg) > data.len() {
                            return Err(ErrorReason::TruncatedRecord);
                        }
                        window = tail.view(data, base);
                    }
                }
                Op::Varlen => {
                    let (start, end) = varlen(data, base + src)?;
                    if let (Some(bytes), Some(action)) =
                        (data.get(start..end), Action::from_index(step.dst % 64))
                    {
                        // Only a value no longer than its element's type is stored; a longer
                        // one stores 0, as if absent (so a reused record image holds nothing
                        // stale), and is counted.
                        let value = if bytes.len() <= 1 << (step.dst / 64) {
                            bytes
                        } else {
                            extras.skipped = true;
                            &[]
                        };
                        ie::apply(action, value, &mut img.rec, extras);
                    }
                    base = end;
                    if step.arg != 0 {
                        if base + usize::from(step.arg) > data.len() {
                            return Err(ErrorReason::TruncatedRecord);
                        }
                        window = tail.view(data, base);
                    }
                }
            }
        }
        let end = base + usize::from(self.tail);
        if end > data.len() {
            return Err(ErrorReason::TruncatedRecord);
        }
        Ok(end)
    }
}

/// The value of the variable-length field whose length prefix (1 or 3 bytes, RFC 7011 §7) is at
/// `prefix` in `data`: its start and end; `BadVariableLength` when the prefix or the value is
/// not all there.
#[inline(always)]
pub(super) fn varlen(data: &[u8], prefix: usize) -> Result<(usize, usize), ErrorReason> {
    let (start, len) = match data.get(prefix..) {
        Some(&[first, ..]) if first < 255 => (prefix + 1, usize::from(first)),
        Some(&[255, a, b, ..]) => (prefix + 3, usize::from(u16::from_be_bytes([a, b]))),
        _ => return Err(ErrorReason::BadVariableLength),
    };
    let end = start + len;
    if end > data.len() {
        return Err(ErrorReason::BadVariableLength);
    }
    Ok((start, end))
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateKey {
    /// 9 (NetFlow v9) or 10 (IPFIX).
    pub version: u8,
    pub domain: u32,
    pub id: u16,
}

impl Hash for TemplateKey {
    /// One word: the derived hash would take three.
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(
            u64::from(self.domain) | u64::from(self.id) << 32 | u64::from(self.version) << 48,
        );
    }
}

/// An exporter's address as map-key words: `std`'s hash of an `IpAddr` feeds its variant, a length
/// and then the address bytes through [`Hasher::write`]; this is one word (IPv4) or two (IPv6),
/// followed by `tail` (what else the key holds: port, domain, ...). Equal addresses give equal
/// words, as a `Hash` consistent with `Eq` needs.
#[inline(always)]
pub fn hash_addr<H: Hasher>(ip: IpAddr, tail: u64, state: &mut H) {
    match ip {
        IpAddr::V4(a) => state.write_u64(u64::from(a.to_bits())),
        IpAddr::V6(a) => {
            let bits = a.to_bits();
            state.write_u64(bits as u64);
            state.write_u64((bits >> 64) as u64 ^ V6_MARK);
        }
    }
    state.write_u64(tail);
}

/// A transport session (exporter address and port) as a map key. IPv6 flow info and scope id are
/// part of equality but not of the hash (equal keys still hash alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionKey(pub SocketAddr);

impl Hash for SessionKey {
    /// An IPv4 address and its port as one word; an IPv6 address's words and then the port.
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(a) => {
                state.write_u64(u64::from(a.ip().to_bits()) | u64::from(a.port()) << 32)
            }
            SocketAddr::V6(a) => hash_addr(IpAddr::V6(*a.ip()), u64::from(a.port()), state),
        }
    }
}

/// A small, fast hasher for the decoder's and the worker's tables, whose keys (exporter
/// addresses and ports, template ids) a sender chooses: a folded multiply (the high and low halves
/// of a 64×64-bit product, xored) per 64-bit word, so every input bit reaches the low bits that
/// pick a bucket, starting from a seed drawn once per process from the OS's randomness (std's
/// `RandomState`), so which keys share a bucket cannot be worked out in advance. Keys of this
/// module hash as a few words ([`hash_addr`], [`SessionKey`], [`TemplateKey`]); byte slices of up
/// to 16 bytes take two words without a copy loop.
#[derive(Clone, Copy)]
pub struct WordHasher(u64);

/// 64-bit constants (digits of π): the odd multiplier, and what an IPv6 address's high word is
/// xored with (an IPv6 key is never an IPv4 one plus a word that happens to match).
const HASH_MUL: u64 = 0x243f_6a88_85a3_08d3;
const V6_MARK: u64 = 0x1319_8a2e_0370_7344;
/// The multiplier of [`WordHasher::finish`] (more digits of π, made odd).
const HASH_FINISH: u64 = 0xa409_3822_299f_31d1;

/// The high and low halves of the 128-bit product `a × b`, xored.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ (product >> 64) as u64
}

/// The state before the first word: random, the same for every table of the process.
fn hash_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(HASH_MUL))
}

/// What a [`FastMap`] makes its [`WordHasher`]s with: the process's seed, read once when the
/// table is made.
#[derive(Clone, Copy, Debug)]
pub struct WordState(u64);

impl Default for WordState {
    fn default() -> Self {
        WordState(hash_seed())
    }
}

impl BuildHasher for WordState {
    type Hasher = WordHasher;
    #[inline(always)]
    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.0)
    }
}

impl Hasher for WordHasher {
    /// One more folded multiply: a key's last word, or a one-word key's high bits, would
    /// otherwise reach the low bits through a single product only.
    #[inline(always)]
    fn finish(&self) -> u64 {
        folded_multiply(self.0, HASH_FINISH)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(b) {
                *d = *s;
            }
            u64::from_le_bytes(w)
        };
        match bytes.len() {
            0..=8 => self.write_u64(word(bytes) ^ (bytes.len() as u64) << 59),
            9..=16 => {
                let (a, b) = bytes.split_at(8);
                self.write_u64(word(a));
                self.write_u64(word(b) ^ (bytes.len() as u64) << 59);
            }
            _ => {
                for chunk in bytes.chunks(8) {
                    self.write_u64(word(chunk));
                }
            }
        }
    }
    #[inline(always)]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline(always)]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline(always)]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline(always)]
    fn write_u64(&mut self, i: u64) {
        self.0 = folded_multiply(self.0 ^ i, HASH_MUL);
    }
    #[inline(always)]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, WordState>;

/// Memory caps of a [`TemplateCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    pub total_bytes: usize,
    pub per_exporter_bytes: usize,
    /// A transport session that sent no template and used none for this long (by receive time)
    /// is forgotten with its templates (RFC 7011 §8.4: templates over UDP have a lifetime). An
    /// exporter that restarts comes back from a new port, so its old session only ages out.
    pub session_idle_ns: u64,
}

/// How often [`TemplateCache::expire_idle`] looks for idle sessions (by receive time; the
/// decoder's sequence spaces too).
pub(crate) const IDLE_SWEEP_NS: u64 = 60_000_000_000;

impl Default for CacheLimits {
    /// 150 MiB in all (600,000 OVS templates), 256 KiB per exporter (over 1,000 OVS templates),
    /// sessions idle for 30 minutes forgotten (three of OVS's 10-minute template refreshes).
    fn default() -> Self {
        CacheLimits {
            total_bytes: 150 << 20,
            per_exporter_bytes: 256 << 10,
            session_idle_ns: 30 * 60 * 1_000_000_000,
        }
    }
}

/// A cached template; `template.session` is the index of its session in
/// [`TemplateCache::sessions`].
#[derive(Debug)]
struct Cached {
    key: TemplateKey,
    template: Template,
}

/// A transport session's share of the cache. A session exists while it has templates.
#[derive(Debug)]
struct Session {
    addr: SessionKey,
    /// Keys of its templates: eviction, withdrawal and expiry find them without a scan of the
    /// whole table.
    keys: Vec<TemplateKey>,
    bytes: usize,
    /// Receive time of the last template learned or used.
    last_seen_ns: u64,
    /// Kept for the decoder: where it last found this session's sequence space.
    sequence_slot: u32,
}

/// Where [`TemplateCache::get_noted`] found a template's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noted {
    /// The session's index in the cache, for [`TemplateCache::note_sequence_slot`].
    pub session: u32,
    /// The sequence slot last noted with the session.
    pub sequence_slot: u32,
}

/// What inserting a template did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// An existing template with this key was replaced (redefinition).
    pub replaced: bool,
    /// ... by one with a different layout (the exporter's configuration changed).
    pub changed: bool,
    /// Templates evicted to respect the caps.
    pub evicted: u64,
}

/// The templates of one worker, keyed (session, [`TemplateKey`]) — a session is an IPFIX
/// exporter's address and port, a v9 exporter's address with port 0 — and bounded by
/// [`CacheLimits`]. The per-exporter cap is per session.
///
/// A data set finds its template with one hash lookup: every template of every session is in one
/// table (cut into shards), hashed by its session's address and port and its key, and names its session
/// by index. The sessions (their byte counts, last use and key lists) are reached by that index;
/// the map from address to session is used only when templates are learned or withdrawn.
#[derive(Debug, Default)]
pub struct TemplateCache {
    templates: Shards,
    /// Indexed by the session index each template holds; a slot whose session ended (no keys)
    /// waits in `free_sessions` to be reused.
    sessions: Vec<Session>,
    free_sessions: Vec<u32>,
    session_slots: FastMap<SessionKey, u32>,
    /// One copy of each distinct list of steps the cached templates use.
    interned: HashSet<Arc<[Step]>, WordState>,
    hasher: WordState,
    limits: CacheLimits,
    total_bytes: usize,
    clock: u64,
    last_sweep_ns: u64,
}

/// Shards of the template table.
const SHARDS: usize = 32;

/// The template table of a [`TemplateCache`], cut into [`SHARDS`] hash tables by bits of the hash
/// that the tables themselves do not use (they pick buckets by the low bits and tag them with the
/// top seven). A table that outgrows its buckets moves every entry at once: one table of 600,000
/// templates stalled its worker for ~20 ms; a shard moves a 32nd of that.
#[derive(Debug)]
struct Shards(Box<[HashTable<Cached>; SHARDS]>);

impl Default for Shards {
    fn default() -> Self {
        Shards(Box::new(std::array::from_fn(|_| HashTable::new())))
    }
}

impl Shards {
    #[inline(always)]
    fn index(hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    #[inline(always)]
    fn of(&self, hash: u64) -> &HashTable<Cached> {
        &self.0[Self::index(hash)]
    }

    #[inline(always)]
    fn of_mut(&mut self, hash: u64) -> &mut HashTable<Cached> {
        &mut self.0[Self::index(hash)]
    }

    fn len(&self) -> usize {
        self.0.iter().map(HashTable::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(HashTable::is_empty)
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &Cached> {
        self.0.iter().flat_map(HashTable::iter)
    }
}

/// The interned copy of `steps` (which become it when they are new).
fn intern(interned: &mut HashSet<Arc<[Step]>, WordState>, steps: Arc<[Step]>) -> Arc<[Step]> {
    if let Some(shared) = interned.get(&steps) {
        return Arc::clone(shared);
    }
    interned.insert(Arc::clone(&steps));
    steps
}

/// Drop a removed template's `steps`, and their interned copy when no other template uses them.
fn release(interned: &mut HashSet<Arc<[Step]>, WordState>, steps: Arc<[Step]>) {
    // This one and the interned copy: no cached template has them any more.
    if Arc::strong_count(&steps) == 2 {
        interned.remove(&steps);
    }
}

/// The hash of a template in the [`TemplateCache`] table: its session's words ([`SessionKey`]),
/// then its key word.
#[inline(always)]
fn cached_hash(hasher: &WordState, session: SocketAddr, key: TemplateKey) -> u64 {
    let mut h = hasher.build_hasher();
    SessionKey(session).hash(&mut h);
    key.hash(&mut h);
    h.finish()
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
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Bytes accounted to cached templates ([`Template::cached_bytes`]).
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// `steps` as a shared list: the one a cached template already has, else a new one (the
    /// `share` of [`Template::compile_with`]).
    pub fn shared_steps(&self, steps: &[Step]) -> Arc<[Step]> {
        self.interned
            .get(steps)
            .map_or_else(|| Arc::from(steps), Arc::clone)
    }

    /// The template for `key` from `exporter`, marked as used (at receive time `now_ns`).
    #[inline]
    pub fn get(
        &mut self,
        exporter: SocketAddr,
        key: TemplateKey,
        now_ns: u64,
    ) -> Option<&Template> {
        self.get_noted(exporter, key, now_ns).map(|(t, _)| t)
    }

    /// [`TemplateCache::get`], and where its session is noted: its index, and the sequence slot
    /// the decoder keeps with it ([`TemplateCache::note_sequence_slot`]; 0 until it does) to find
    /// the session's sequence space without a lookup. The cache does not interpret the slot; the
    /// decoder checks it.
    #[inline]
    pub fn get_noted(
        &mut self,
        exporter: SocketAddr,
        key: TemplateKey,
        now_ns: u64,
    ) -> Option<(&Template, Noted)> {
        self.clock += 1;
        let hash = cached_hash(&self.hasher, exporter, key);
        let sessions = &mut self.sessions;
        let c = self.templates.of_mut(hash).find_mut(hash, |c| {
            c.key == key
                && sessions
                    .get(c.template.session as usize)
                    .is_some_and(|s| s.addr.0 == exporter)
        })?;
        let session = sessions.get_mut(c.template.session as usize)?;
        session.last_seen_ns = now_ns;
        c.template.last_used = self.clock;
        let noted = Noted {
            session: c.template.session,
            sequence_slot: session.sequence_slot,
        };
        Some((&c.template, noted))
    }

    /// Keep sequence slot `slot` with session `session` ([`Noted::session`]) for
    /// [`TemplateCache::get_noted`]. A session that ended since is not harmed: its index is
    /// reused with slot 0.
    pub fn note_sequence_slot(&mut self, session: u32, slot: u32) {
        if let Some(s) = self.sessions.get_mut(session as usize) {
            s.sequence_slot = slot;
        }
    }

    /// Forget the sessions idle for longer than [`CacheLimits::session_idle_ns`] at receive time
    /// `now_ns` (looked for once a minute); returns the templates dropped.
    #[inline]
    pub fn expire_idle(&mut self, now_ns: u64) -> u64 {
        if now_ns.saturating_sub(self.last_sweep_ns) < IDLE_SWEEP_NS {
            return 0;
        }
        self.sweep_idle(now_ns)
    }

    #[cold]
    #[inline(never)]
    fn sweep_idle(&mut self, now_ns: u64) -> u64 {
        self.last_sweep_ns = now_ns;
        let idle = self.limits.session_idle_ns;
        let mut dropped = 0;
        for slot in 0..self.sessions.len() {
            let Some(s) = self.sessions.get(slot) else {
                break;
            };
            if s.keys.is_empty() || now_ns.saturating_sub(s.last_seen_ns) <= idle {
                continue;
            }
            let keys = std::mem::take(&mut self.sessions[slot].keys);
            dropped += keys.len() as u64;
            for key in keys {
                self.remove(slot as u32, key);
            }
            self.end_session(slot as u32);
        }
        dropped
    }

    /// Insert or replace a template, evicting others to respect the caps.
    pub fn insert(
        &mut self,
        exporter: SocketAddr,
        key: TemplateKey,
        mut template: Template,
        now_ns: u64,
    ) -> Inserted {
        self.clock += 1;
        template.last_used = self.clock;
        let size = template.cached_bytes();
        let slot = self.session_for(exporter);
        template.session = slot;
        template.steps = intern(&mut self.interned, template.steps);
        let mut out = Inserted::default();
        let hash = cached_hash(&self.hasher, exporter, key);
        let Self {
            templates,
            sessions,
            hasher,
            interned,
            ..
        } = self;
        let eq = |c: &Cached| c.template.session == slot && c.key == key;
        let shard = templates.of_mut(hash);
        if let Some(c) = shard.find_mut(hash, eq) {
            let old = std::mem::replace(&mut c.template, template);
            out.changed = !c.template.same_layout(&old);
            out.replaced = true;
            let old_size = old.cached_bytes();
            release(interned, old.steps);
            if let Some(s) = sessions.get_mut(slot as usize) {
                s.bytes -= old_size;
            }
            self.total_bytes -= old_size;
        } else {
            let rehash = |c: &Cached| {
                let addr = sessions.get(c.template.session as usize).map(|s| s.addr.0);
                addr.map_or(0, |a| cached_hash(hasher, a, c.key))
            };
            shard.insert_unique(hash, Cached { key, template }, rehash);
            if let Some(s) = sessions.get_mut(slot as usize) {
                // Grown one key at a time: its capacity is its length (the bytes charged).
                s.keys.reserve_exact(1);
                s.keys.push(key);
            }
        }
        let Some(s) = sessions.get_mut(slot as usize) else {
            return out;
        };
        s.last_seen_ns = now_ns;
        s.bytes += size;
        self.total_bytes += size;
        while self
            .sessions
            .get(slot as usize)
            .is_some_and(|s| s.bytes > self.limits.per_exporter_bytes)
        {
            let Some(()) = self.evict_lru(slot, Some(key)) else {
                break;
            };
            out.evicted += 1;
        }
        while self.total_bytes > self.limits.total_bytes {
            // The session seen least recently (a restarted exporter's old one), the heaviest
            // among equals.
            let victim = (0..self.sessions.len() as u32)
                .filter_map(|i| Some((i, self.sessions.get(i as usize)?)))
                .filter(|(_, s)| !s.keys.is_empty())
                .min_by_key(|(_, s)| (s.last_seen_ns, std::cmp::Reverse(s.bytes)))
                .map(|(i, _)| i);
            let Some(victim) = victim else {
                break;
            };
            let Some(()) = self.evict_lru(victim, (victim == slot).then_some(key)) else {
                break;
            };
            out.evicted += 1;
        }
        out
    }

    /// The session slot of `exporter`, made when it has none.
    fn session_for(&mut self, exporter: SocketAddr) -> u32 {
        if let Some(&slot) = self.session_slots.get(&SessionKey(exporter)) {
            return slot;
        }
        let session = Session {
            addr: SessionKey(exporter),
            keys: Vec::new(),
            bytes: 0,
            last_seen_ns: 0,
            sequence_slot: 0,
        };
        let slot = match self.free_sessions.pop() {
            Some(slot) => {
                if let Some(s) = self.sessions.get_mut(slot as usize) {
                    *s = session;
                }
                slot
            }
            None => {
                self.sessions.push(session);
                (self.sessions.len() - 1) as u32
            }
        };
        self.session_slots.insert(SessionKey(exporter), slot);
        slot
    }

    /// Forget session `slot` (its templates are gone) and free its slot.
    fn end_session(&mut self, slot: u32) {
        if let Some(s) = self.sessions.get_mut(slot as usize) {
            s.keys = Vec::new();
            s.bytes = 0;
            self.session_slots.remove(&s.addr);
            self.free_sessions.push(slot);
        }
    }

    /// Remove template `key` of session `slot` from the table and the byte counts (not from the
    /// session's key list); its kind, when it was there.
    fn remove(&mut self, slot: u32, key: TemplateKey) -> Option<TemplateKind> {
        let addr = self.sessions.get(slot as usize)?.addr.0;
        let hash = cached_hash(&self.hasher, addr, key);
        let entry = self
            .templates
            .of_mut(hash)
            .find_entry(hash, |c| c.template.session == slot && c.key == key)
            .ok()?;
        let (c, _) = entry.remove();
        let size = c.template.cached_bytes();
        if let Some(s) = self.sessions.get_mut(slot as usize) {
            s.bytes -= size;
        }
        self.total_bytes -= size;
        let kind = c.template.kind;
        release(&mut self.interned, c.template.steps);
        Some(kind)
    }

    /// Remove the least recently used template of session `slot` other than `keep` (unless it is
    /// the only one); ends the session when it was its last.
    fn evict_lru(&mut self, slot: u32, keep: Option<TemplateKey>) -> Option<()> {
        let s = self.sessions.get(slot as usize)?;
        let keep = keep.filter(|_| s.keys.len() > 1);
        let addr = s.addr.0;
        let (at, victim) = s
            .keys
            .iter()
            .enumerate()
            .filter(|&(_, k)| Some(*k) != keep)
            .min_by_key(|&(_, &k)| {
                let hash = cached_hash(&self.hasher, addr, k);
                self.templates
                    .of(hash)
                    .find(hash, |c| c.template.session == slot && c.key == k)
                    .map_or(0, |c| c.template.last_used)
            })
            .map(|(at, &k)| (at, k))?;
        self.remove(slot, victim);
        self.forget_key(slot, at);
        Some(())
    }

    /// Take the key at `at` off session `slot`'s list; ends the session when it was its last.
    fn forget_key(&mut self, slot: u32, at: usize) {
        let Some(s) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        if at < s.keys.len() {
            s.keys.swap_remove(at);
        }
        if s.keys.is_empty() {
            self.end_session(slot);
        }
    }

    /// Withdraw one template; true when it existed.
    pub fn withdraw(&mut self, exporter: SocketAddr, key: TemplateKey) -> bool {
        let Some(&slot) = self.session_slots.get(&SessionKey(exporter)) else {
            return false;
        };
        let Some(at) = self
            .sessions
            .get(slot as usize)
            .and_then(|s| s.keys.iter().position(|&k| k == key))
        else {
            return false;
        };
        self.remove(slot, key);
        self.forget_key(slot, at);
        true
    }

    /// Panics unless the table, the sessions, their key lists, the address map and the byte
    /// counts agree with each other and with the caps.
    #[cfg(test)]
    fn check_consistency(&self) {
        let mut bytes_by_session = vec![0; self.sessions.len()];
        for c in self.templates.iter() {
            let slot = c.template.session as usize;
            let s = &self.sessions[slot];
            assert!(
                s.keys.contains(&c.key),
                "{:?} not in its session's keys",
                c.key
            );
            bytes_by_session[slot] += c.template.cached_bytes();
        }
        let mut keys = 0;
        for (slot, s) in self.sessions.iter().enumerate() {
            keys += s.keys.len();
            assert_eq!(s.bytes, bytes_by_session[slot], "bytes of session {slot}");
            let free = self.free_sessions.contains(&(slot as u32));
            assert_eq!(
                free,
                s.keys.is_empty(),
                "session {slot}: free iff it has no keys"
            );
            if !free {
                assert_eq!(self.session_slots.get(&s.addr), Some(&(slot as u32)));
                assert!(s.bytes <= self.limits.per_exporter_bytes);
            }
        }
        assert_eq!(keys, self.templates.len(), "every key is in the table once");
        for c in self.templates.iter() {
            let shared = self.interned.get(&c.template.steps);
            assert!(
                shared.is_some_and(|s| Arc::ptr_eq(s, &c.template.steps)),
                "steps interned"
            );
        }
        // Each interned list is used by a template besides the interner: nothing kept for none.
        let users: usize = self.interned.iter().map(|s| Arc::strong_count(s) - 1).sum();
        assert_eq!(
            users,
            self.templates.len(),
            "interned steps and their users"
        );
        assert_eq!(
            self.session_slots.len() + self.free_sessions.len(),
            self.sessions.len()
        );
        assert_eq!(self.total_bytes, bytes_by_session.iter().sum::<usize>());
        assert!(self.total_bytes <= self.limits.total_bytes);
    }

    /// Withdraw every template of `kind` in (`exporter`, `version`, `domain`); returns how many.
    pub fn withdraw_all(
        &mut self,
        exporter: SocketAddr,
        version: u8,
        domain: u32,
        kind: TemplateKind,
    ) -> usize {
        let Some(&slot) = self.session_slots.get(&SessionKey(exporter)) else {
            return 0;
        };
        let Some(s) = self.sessions.get_mut(slot as usize) else {
            return 0;
        };
        let mut keys = std::mem::take(&mut s.keys);
        let before = keys.len();
        keys.retain(|&k| {
            if k.version != version || k.domain != domain {
                return true;
            }
            let hash = cached_hash(&self.hasher, exporter, k);
            let same_kind = self
                .templates
                .of(hash)
                .find(hash, |c| c.template.session == slot && c.key == k)
                .is_some_and(|c| c.template.kind == kind);
            !(same_kind && self.remove(slot, k).is_some())
        });
        let removed = before - keys.len();
        let emptied = keys.is_empty();
        if let Some(s) = self.sessions.get_mut(slot as usize) {
            s.keys = keys;
        }
        if emptied {
            self.end_session(slot);
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
    /// Remove the held sets for which `gone` is true, in place (the kept sets' bytes move down,
    /// in order); returns (sets, bytes) removed.
    fn remove_where(&mut self, mut gone: impl FnMut(&HeldSet) -> bool) -> (u64, usize) {
        if !self.sets.iter().any(&mut gone) {
            return (0, 0);
        }
        let (mut sets, mut freed) = (0u64, 0usize);
        let mut write = 0usize;
        let bytes = &mut self.bytes;
        self.sets.retain_mut(|s| {
            if gone(s) {
                sets += 1;
                freed += s.len + HELD_SET_OVERHEAD;
                return false;
            }
            bytes.copy_within(s.start..s.start + s.len, write);
            s.start = write;
            write += s.len;
            true
        });
        self.bytes.truncate(write);
        (sets, freed)
    }
}

/// Whether a held set is older than `max_age` at `now_ns`.
fn aged(now_ns: u64, max_age: u64) -> impl Fn(&HeldSet) -> bool {
    move |s| now_ns.saturating_sub(s.ctx.received_ns) > max_age
}

/// Data sets held until their template arrives, per exporter (transport session).
#[derive(Debug, Default)]
pub struct EarlyData {
    exporters: FastMap<SessionKey, ExporterEarly>,
    limits: EarlyLimits,
    total_bytes: usize,
    last_sweep_ns: u64,
    /// Sessions that may hold data: one bit per session (by its hash), set when it holds a set,
    /// cleared on the sweep that rebuilds it from the sessions left. A clear bit means nothing is
    /// held, so the session's messages skip the lookup while other sessions hold data; a set bit
    /// of another session only costs that lookup.
    held_filter: [u64; 4],
}

/// Where `exporter`'s bit is in [`EarlyData`]'s filter (hashed with its table's `state`).
#[inline]
fn filter_bit(state: &WordState, exporter: SocketAddr) -> (usize, u64) {
    let h = state.hash_one(SessionKey(exporter));
    ((h >> 58) as usize & 3, 1 << (h & 63))
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
    #[inline]
    pub fn expire(&mut self, exporter: SocketAddr, now_ns: u64) -> u64 {
        if self.exporters.is_empty() {
            return 0;
        }
        self.expire_held(exporter, now_ns)
    }

    /// False when `exporter` holds nothing (true may be wrong: see `held_filter`).
    #[inline]
    fn may_hold(&self, exporter: SocketAddr) -> bool {
        let (word, bit) = filter_bit(self.exporters.hasher(), exporter);
        self.held_filter.get(word).is_some_and(|w| w & bit != 0)
    }

    #[inline(never)]
    fn expire_held(&mut self, exporter: SocketAddr, now_ns: u64) -> u64 {
        let max_age = self.limits.max_age_ns;
        let sweep_due = now_ns.saturating_sub(self.last_sweep_ns) > max_age;
        if !sweep_due && !self.may_hold(exporter) {
            return 0;
        }
        if sweep_due {
            return self.sweep(now_ns);
        }
        let Some(e) = self.exporters.get_mut(&SessionKey(exporter)) else {
            return 0;
        };
        let (dropped, freed) = e.remove_where(aged(now_ns, max_age));
        self.total_bytes -= freed;
        if e.sets.is_empty() {
            self.exporters.remove(&SessionKey(exporter));
        }
        dropped
    }

    /// Drop what every exporter holds past the age cap at `now_ns`; returns the sets dropped.
    /// Messages sweep at most once per age period; a worker with no messages calls this to age
    /// out what exporters that went quiet left behind.
    pub fn sweep(&mut self, now_ns: u64) -> u64 {
        let max_age = self.limits.max_age_ns;
        self.last_sweep_ns = now_ns;
        let mut dropped = 0;
        for e in self.exporters.values_mut() {
            let (n, freed) = e.remove_where(aged(now_ns, max_age));
            dropped += n;
            self.total_bytes -= freed;
        }
        self.exporters.retain(|_, e| !e.sets.is_empty());
        self.held_filter = [0; 4];
        let state = *self.exporters.hasher();
        for session in self.exporters.keys() {
            let (word, bit) = filter_bit(&state, session.0);
            if let Some(w) = self.held_filter.get_mut(word) {
                *w |= bit;
            }
        }
        dropped
    }

    /// Drop everything held (the decoder is stopping, or the capture ended, before the templates
    /// came); returns the sets dropped.
    pub fn drop_all(&mut self) -> u64 {
        let dropped = self.sets() as u64;
        self.exporters.clear();
        self.held_filter = [0; 4];
        self.total_bytes = 0;
        dropped
    }

    /// Hold `set` (a data set's records, without the set header); false when it does not fit.
    pub fn hold(&mut self, exporter: SocketAddr, ctx: HeldContext, set: &[u8]) -> bool {
        let cost = set.len() + HELD_SET_OVERHEAD;
        if self.total_bytes + cost > self.limits.total_bytes {
            return false;
        }
        let per_exporter = self.limits.per_exporter_bytes;
        let state = *self.exporters.hasher();
        let e = self.exporters.entry(SessionKey(exporter)).or_default();
        if e.bytes.len() + e.sets.len() * HELD_SET_OVERHEAD + cost > per_exporter {
            if e.sets.is_empty() {
                self.exporters.remove(&SessionKey(exporter));
            }
            return false;
        }
        let (word, bit) = filter_bit(&state, exporter);
        if let Some(w) = self.held_filter.get_mut(word) {
            *w |= bit;
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
        exporter: SocketAddr,
        key: TemplateKey,
        out: &mut Vec<u8>,
        contexts: &mut Vec<(HeldContext, std::ops::Range<usize>)>,
    ) {
        let Some(e) = self.exporters.get_mut(&SessionKey(exporter)) else {
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
            self.exporters.remove(&SessionKey(exporter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ie::VARLEN;
    use bytemuck::Zeroable;
    use proptest::prelude::*;

    fn rec() -> RecordImage {
        RecordImage::new(FlowRecord::zeroed())
    }

    /// Decode one record as `decode_records` does, with a fresh set tail.
    fn decode(t: &Template, data: &[u8], r: &mut RecordImage) -> Result<usize, ErrorReason> {
        t.decode_record(data, r, &mut Extras::default(), &mut SetTail::new())
    }

    fn step(op: Op, src: u8, dst: usize, arg: u8) -> Step {
        Step {
            op,
            src,
            dst: dst as u8,
            arg,
        }
    }

    fn region(advance: u16, need: u8) -> Step {
        let [src, dst] = advance.to_le_bytes();
        Step {
            op: Op::Region,
            src,
            dst,
            arg: need,
        }
    }

    #[test]
    fn compile_drops_skips_into_offsets_and_splits_regions() {
        use std::mem::offset_of;
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(8, 4),
                Field::iana(500, 2),
                Field::iana(501, 300),
                Field::iana(2, 4),
                Field::iana(82, VARLEN),
                Field::iana(4, 1),
                Field::iana(503, 3),
            ],
        )
        .unwrap();
        assert_eq!(
            t.steps(),
            &[
                // sourceIPv4Address at 0; packetDeltaCount past the 302 skipped bytes needs a new
                // region (offsets stay below 256); the interfaceName prefix is 4 bytes on, and
                // the region after it holds protocolIdentifier.
                region(0, 4),
                step(Op::V4Mapped, 0, offset_of!(FlowRecord, src_addr), 4),
                region(306, 4),
                step(Op::Uint8, 0, offset_of!(FlowRecord, packets), 32),
                Step {
                    op: Op::VarSkip,
                    src: 4,
                    dst: Action::Skip as u8,
                    arg: 1
                },
                step(Op::Be1, 0, offset_of!(FlowRecord, proto), 0),
            ]
        );
        assert_eq!(t.min_len(), 4 + 2 + 300 + 4 + 1 + 1 + 3);
        assert_eq!(t.tail, 4);
        assert_eq!(size_of::<Step>(), 4);
        // Decoding it: 10.0.0.1, 302 bytes skipped, 7 packets, a 2-byte name, proto 6, 3 bytes.
        let mut data = vec![10, 0, 0, 1];
        data.extend([0xee; 302]);
        data.extend([0, 0, 0, 7, 2, b'x', b'y', 6, 1, 2, 3]);
        let mut r = rec();
        assert_eq!(decode(&t, &data, &mut r), Ok(data.len()));
        assert_eq!(
            (r.rec.src_addr, r.rec.packets, r.rec.proto),
            (crate::record::ipv4_bytes([10, 0, 0, 1]), 7, 6)
        );
        // The trailing skipped field cut short.
        let short = &data[..data.len() - 1];
        assert_eq!(
            decode(&t, &data[..data.len() - 1], &mut r),
            Err(ErrorReason::TruncatedRecord),
            "{short:?}"
        );
    }

    #[test]
    fn every_store_op_from_bytes() {
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(1, 3),   // octetDeltaCount, reduced to 3 bytes: Uint8 >> 40
                Field::iana(2, 8),   // packetDeltaCount: Be8
                Field::iana(10, 2),  // ingressInterface in 2 bytes: Uint4 >> 48
                Field::iana(14, 4),  // egressInterface: Be4
                Field::iana(6, 1),   // tcpControlBits in 1 byte: Uint2 >> 56
                Field::iana(7, 2),   // sourceTransportPort: Be2
                Field::iana(4, 1),   // protocolIdentifier: Be1
                Field::iana(138, 8), // observationPointId (u32 field) in 8 bytes: Apply (if it fits)
                Field::iana(12, 4),  // destinationIPv4Address: V4Mapped
                Field::iana(27, 16), // sourceIPv6Address: Copy16
                Field::iana(56, 6),  // sourceMacAddress: Copy6
                Field::iana(58, 2),  // vlanId: Apply (masked to 12 bits)
            ],
        )
        .unwrap();
        let ops: Vec<Op> = t.steps().iter().map(|s| s.op).collect();
        use Op::*;
        assert_eq!(
            ops,
            [
                Region, Uint8, Be8, Uint4, Be4, Uint2, Be2, Be1, Apply, V4Mapped, Copy16, Copy6,
                Apply
            ]
        );
        #[rustfmt::skip]
        let data = [
            0x01, 0x02, 0x03,
            0, 0, 0, 0, 0, 0, 0x10, 0x00,
            0x00, 0x07,
            0x00, 0x00, 0x01, 0x00,
            0x1b,
            0x30, 0x39,
            6,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
            198, 51, 100, 7,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            2, 0, 0, 0, 0, 9,
            0xf0, 0x64,
        ];
        let mut r = rec();
        assert_eq!(decode(&t, &data, &mut r), Ok(data.len()));
        let r = r.rec;
        assert_eq!(
            (r.bytes, r.packets, r.in_if, r.out_if),
            (0x010203, 4096, 7, 256)
        );
        assert_eq!((r.tcp_flags, r.src_port, r.proto), (0x1b, 12345, 6));
        assert_eq!(r.observation_point_id, 42);
        assert_eq!(r.dst_addr, crate::record::ipv4_bytes([198, 51, 100, 7]));
        assert_eq!(r.src_addr[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!((r.src_mac, r.vlan_id), ([2, 0, 0, 0, 0, 9], 0x064));
    }

    #[test]
    fn adjacent_fields_of_one_kind_share_a_step() {
        let t = Template::compile(
            TemplateKind::Data,
            &[
                Field::iana(192, 1), // ipTTL + protocolIdentifier: Be1Pair
                Field::iana(4, 1),
                Field::iana(7, 2), // ports: Be2Pair
                Field::iana(11, 2),
                Field::iana(10, 4), // interfaces: Be4Pair
                Field::iana(14, 4),
                Field::iana(1, 8), // octets + packets: Be8Pair
                Field::iana(2, 8),
                Field::iana(8, 4), // IPv4 addresses: V4MappedPair
                Field::iana(12, 4),
                Field::iana(56, 6), // MACs: Copy6Pair
                Field::iana(80, 6),
                Field::iana(62, 16), // IPv6 next hop, flow label, then the same kind apart:
                Field::iana(31, 4),
                Field::iana(5, 1),   // ipClassOfService: Be1
                Field::iana(999, 1), // (skipped)
                Field::iana(61, 1),  // flowDirection: Be1, not paired across the skip
            ],
        )
        .unwrap();
        let ops: Vec<Op> = t.steps().iter().map(|s| s.op).collect();
        use Op::*;
        assert_eq!(
            ops,
            [
                Region,
                Be1Pair,
                Be2Pair,
                Be4Pair,
                Be8Pair,
                V4MappedPair,
                Copy6Pair,
                Copy16,
                Apply,
                Be1,
                Be1
            ]
        );
        #[rustfmt::skip]
        let data = [
            64, 17,
            0x30, 0x39, 0x00, 0x35,
            0, 0, 0, 3, 0, 0, 0, 4,
            0, 0, 0, 0, 0, 0, 0x05, 0xdc, 0, 0, 0, 0, 0, 0, 0, 2,
            192, 0, 2, 1, 198, 51, 100, 2,
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2,
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            0, 0x01, 0x23, 0x45,
            0xb8, 0xee, 1,
        ];
        let mut r = rec();
        assert_eq!(decode(&t, &data, &mut r), Ok(data.len()));
        let r = r.rec;
        assert_eq!(
            (r.ip_ttl, r.proto, r.src_port, r.dst_port),
            (64, 17, 12345, 53)
        );
        assert_eq!((r.in_if, r.out_if, r.bytes, r.packets), (3, 4, 1500, 2));
        assert_eq!(r.src_addr, crate::record::ipv4_bytes([192, 0, 2, 1]));
        assert_eq!(r.dst_addr, crate::record::ipv4_bytes([198, 51, 100, 2]));
        assert_eq!(
            (r.src_mac, r.dst_mac),
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        );
        assert_eq!((r.next_hop[0], r.next_hop[15]), (0xfe, 1));
        assert_eq!(
            (r.ipv6_flow_label, r.ip_tos, r.flow_direction),
            (0x12345, 0xb8, 1)
        );
    }

    #[test]
    fn reads_near_the_end_of_a_set_come_from_its_tail_copy() {
        // Records of 8 bytes (bytes, packets in 4 each): a set of 40 records, every record
        // decoded from the right place whether or not WINDOW bytes follow it.
        let t =
            Template::compile(TemplateKind::Data, &[Field::iana(1, 4), Field::iana(2, 4)]).unwrap();
        let mut set = Vec::new();
        for i in 0..40u32 {
            set.extend(i.to_be_bytes());
            set.extend((i * 2).to_be_bytes());
        }
        let mut tail = SetTail::new();
        let mut rest = &set[..];
        let mut i = 0;
        let mut r = rec();
        while !rest.is_empty() {
            let used = t
                .decode_record(rest, &mut r, &mut Extras::default(), &mut tail)
                .unwrap();
            assert_eq!((r.rec.bytes, r.rec.packets), (i, i * 2));
            rest = &rest[used..];
            i += 1;
        }
        assert_eq!(i, 40);
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
        let mut r = rec();
        assert_eq!(decode(&t, &data, &mut r), Ok(24));
        assert_eq!(r.rec.src_addr, crate::record::ipv4_bytes([10, 0, 0, 1]));
        assert_eq!(r.rec.packets, 7);
    }

    #[test]
    fn wrong_length_for_a_mapped_element_is_skipped() {
        let t =
            Template::compile(TemplateKind::Data, &[Field::iana(8, 3), Field::iana(4, 1)]).unwrap();
        assert_eq!(
            t.steps(),
            &[
                region(3, 1),
                step(Op::Be1, 0, std::mem::offset_of!(FlowRecord, proto), 0)
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
        let mut r = rec();
        assert_eq!(decode(&t, &data, &mut r), Ok(data.len()));
        assert_eq!((r.rec.tunnel_key, r.rec.proto), (0x1234, 17));
        // A length that runs past the record.
        let bad = [10, b'a', b'b'];
        assert_eq!(
            decode(&t, &bad, &mut r),
            Err(ErrorReason::BadVariableLength)
        );
        let bad3 = [255, 0x01, 0x00];
        assert_eq!(
            decode(&t, &bad3, &mut r),
            Err(ErrorReason::BadVariableLength)
        );
        // A fixed field cut short.
        let fixed = Template::compile(TemplateKind::Data, &[Field::iana(1, 8)]).unwrap();
        assert_eq!(
            decode(&fixed, &[0; 7], &mut r),
            Err(ErrorReason::TruncatedRecord)
        );
        // A tunnel key longer than 8 bytes stores 0 (as if absent), not truncated garbage, and
        // not the previous record's key (the record image is reused within a set).
        let mut data = vec![0u8, 9];
        data.extend([0xff; 9]);
        data.push(6);
        assert_eq!(r.rec.tunnel_key, 0x1234);
        assert_eq!(decode(&t, &data, &mut r), Ok(data.len()));
        assert_eq!((r.rec.tunnel_key, r.rec.proto), (0, 6));
    }

    #[test]
    fn per_record_work_only_when_the_template_needs_it() {
        let t = Template::compile(
            TemplateKind::Data,
            &[Field::iana(8, 4), Field::iana(27, 16)],
        )
        .unwrap();
        assert!(t.needs_fresh_record());
        assert!(!small().needs_fresh_record());
        // Likewise a per-record sampling rate only when records carry sampling elements.
        assert!(!small().carries_sampling());
        let sampled =
            Template::compile(TemplateKind::Data, &[Field::iana(1, 4), Field::iana(48, 1)])
                .unwrap();
        assert!(sampled.carries_sampling());
    }

    /// Exporter `last` of 192.0.2.0/24, from the IPFIX port.
    fn ip(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 4739))
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

    /// One operation on a [`TemplateCache`]: which exporter (of 3), domain (of 2) and template id
    /// (of 4) it names, and the template's size class.
    #[derive(Clone, Debug)]
    enum CacheOp {
        Insert(u8, u32, u16, usize),
        Get(u8, u32, u16),
        Withdraw(u8, u32, u16),
        WithdrawAll(u8, u32, bool),
        Expire(u64),
    }

    fn cache_op() -> impl Strategy<Value = CacheOp> {
        let (e, d, id) = (0u8..3, 0u32..2, 256u16..260);
        prop_oneof![
            3 => (e.clone(), d.clone(), id.clone(), 1usize..4)
                .prop_map(|(e, d, id, n)| CacheOp::Insert(e, d, id, n)),
            1 => (e.clone(), d.clone(), id.clone()).prop_map(|(e, d, id)| CacheOp::Get(e, d, id)),
            1 => (e.clone(), d.clone(), id).prop_map(|(e, d, id)| CacheOp::Withdraw(e, d, id)),
            1 => (e, d, any::<bool>()).prop_map(|(e, d, options)| CacheOp::WithdrawAll(e, d, options)),
            1 => (0u64..40).prop_map(CacheOp::Expire),
        ]
    }

    /// A template of `n` fields (options templates for even ids, so withdraw-all has both kinds).
    fn sized(id: u16, n: usize) -> Template {
        let kind = if id.is_multiple_of(2) {
            TemplateKind::Options
        } else {
            TemplateKind::Data
        };
        // Each variable-length field is a step of its own: sizes differ by whole granules.
        let fields: Vec<_> = (0..n * n * 4).map(|_| Field::iana(82, VARLEN)).collect();
        Template::compile(kind, &fields).unwrap()
    }

    proptest! {
        /// Whatever the operations, the cache's table, sessions, key lists and byte counts agree
        /// and respect the caps; with caps too large to evict, it holds exactly what a plain map
        /// of the same operations holds.
        #[test]
        fn cache_bookkeeping_holds(ops in proptest::collection::vec(cache_op(), 1..80), tight: bool) {
            const MINUTE: u64 = 60_000_000_000;
            let one = sized(257, 3).cached_bytes();
            let limits = if tight {
                CacheLimits { total_bytes: 4 * one, per_exporter_bytes: 2 * one, session_idle_ns: 10 * MINUTE }
            } else {
                CacheLimits { total_bytes: 1 << 30, per_exporter_bytes: 1 << 30, session_idle_ns: 1 << 62 }
            };
            let mut c = TemplateCache::new(limits);
            let mut model: HashMap<(SocketAddr, TemplateKey), TemplateKind> = HashMap::new();
            let key = |d: u32, id: u16| TemplateKey { version: 10, domain: d, id };
            let mut now = 0;
            for op in ops {
                match op {
                    CacheOp::Insert(e, d, id, n) => {
                        let t = sized(id, n);
                        model.insert((ip(e), key(d, id)), t.kind);
                        c.insert(ip(e), key(d, id), t, now);
                    }
                    CacheOp::Get(e, d, id) => {
                        let got = c.get(ip(e), key(d, id), now).map(|t| t.kind);
                        if !tight {
                            prop_assert_eq!(got, model.get(&(ip(e), key(d, id))).copied());
                        }
                    }
                    CacheOp::Withdraw(e, d, id) => {
                        let was = model.remove(&(ip(e), key(d, id))).is_some();
                        let withdrawn = c.withdraw(ip(e), key(d, id));
                        if !tight {
                            prop_assert_eq!(withdrawn, was);
                        }
                    }
                    CacheOp::WithdrawAll(e, d, options) => {
                        let kind = if options { TemplateKind::Options } else { TemplateKind::Data };
                        let before = model.len();
                        model.retain(|(a, k), t| !(*a == ip(e) && k.domain == d && *t == kind));
                        let n = c.withdraw_all(ip(e), 10, d, kind);
                        if !tight {
                            prop_assert_eq!(n, before - model.len());
                        }
                    }
                    CacheOp::Expire(minutes) => {
                        now += minutes * MINUTE;
                        c.expire_idle(now);
                    }
                }
                c.check_consistency();
                if !tight {
                    prop_assert_eq!(c.len(), model.len());
                }
            }
        }
    }

    #[test]
    fn identical_templates_of_different_sessions_share_their_steps() {
        let mut c = TemplateCache::new(CacheLimits::default());
        c.insert(ip(1), key(256), small(), 0);
        c.insert(ip(2), key(300), small(), 0);
        let steps = |c: &mut TemplateCache, e: u8, id: u16| {
            let t = c.get(ip(e), key(id), 0).expect("cached");
            Arc::clone(&t.steps)
        };
        let (a, b) = (steps(&mut c, 1, 256), steps(&mut c, 2, 300));
        assert!(Arc::ptr_eq(&a, &b), "one copy of the steps");
        drop((a, b));
        // Each template is still charged its steps (the caps hold for templates that share none).
        assert_eq!(c.bytes(), 2 * small().cached_bytes());
        assert_eq!(c.interned.len(), 1);
        assert!(c.withdraw(ip(1), key(256)));
        assert_eq!(c.interned.len(), 1, "still used by session 2");
        assert!(c.withdraw(ip(2), key(300)));
        assert!(
            c.interned.is_empty(),
            "released with the last template that used them"
        );
        c.check_consistency();
    }

    #[test]
    fn cache_replaces_withdraws_and_scopes_by_exporter_and_domain() {
        let mut c = TemplateCache::new(CacheLimits::default());
        assert!(!c.insert(ip(1), key(256), small(), 0).replaced);
        let again = c.insert(ip(1), key(256), small(), 0);
        assert!(again.replaced && !again.changed);
        let other = Template::compile(TemplateKind::Data, &[Field::iana(4, 1)]).unwrap();
        assert!(c.insert(ip(1), key(256), other, 0).changed);
        c.insert(ip(1), key(256), small(), 0);
        c.insert(ip(2), key(256), small(), 0);
        c.insert(
            ip(1),
            TemplateKey {
                domain: 7,
                ..key(256)
            },
            small(),
            0,
        );
        assert_eq!(c.len(), 3);
        assert!(c.get(ip(3), key(256), 0).is_none());
        assert!(c.withdraw(ip(1), key(256)));
        assert!(!c.withdraw(ip(1), key(256)));
        assert!(c.get(ip(2), key(256), 0).is_some());
        assert_eq!(c.withdraw_all(ip(1), 10, 7, TemplateKind::Options), 0);
        assert_eq!(c.withdraw_all(ip(1), 10, 7, TemplateKind::Data), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), small().cached_bytes());
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        const MINUTE: u64 = 60_000_000_000;
        let mut c = TemplateCache::new(CacheLimits::default());
        c.insert(ip(1), key(256), small(), 0);
        c.insert(ip(1), key(257), small(), 0);
        c.insert(ip(2), key(256), small(), 0);
        assert!(c.get(ip(2), key(256), 20 * MINUTE).is_some());
        assert_eq!(c.expire_idle(30 * MINUTE), 0, "30 minutes is not idle yet");
        assert_eq!(c.expire_idle(30 * MINUTE + 1), 0, "one sweep a minute");
        assert_eq!(c.expire_idle(31 * MINUTE + 1), 2);
        assert!(c.get(ip(1), key(256), 31 * MINUTE).is_none());
        assert_eq!((c.len(), c.bytes()), (1, small().cached_bytes()));
        assert_eq!(
            c.expire_idle(51 * MINUTE + 2),
            1,
            "the used session, 31 minutes on"
        );
        assert!(c.is_empty());
    }

    #[test]
    fn per_exporter_cap_evicts_lru_of_that_exporter() {
        let one = small().cached_bytes();
        let mut c = TemplateCache::new(CacheLimits {
            total_bytes: 1 << 20,
            per_exporter_bytes: 3 * one,
            ..Default::default()
        });
        for id in 256..259 {
            assert_eq!(c.insert(ip(1), key(id), small(), 0).evicted, 0);
        }
        c.insert(ip(2), key(256), small(), 0);
        assert!(c.get(ip(1), key(256), 0).is_some()); // 257 is now the least recently used
        assert_eq!(c.insert(ip(1), key(300), small(), 0).evicted, 1);
        assert!(c.get(ip(1), key(257), 0).is_none());
        assert!(c.get(ip(1), key(256), 0).is_some());
        assert!(c.get(ip(2), key(256), 0).is_some());
        assert_eq!(c.len(), 4);
        assert!(c.bytes() <= 4 * one);
    }

    #[test]
    fn total_cap_evicts_from_the_session_seen_least_recently() {
        let one = small().cached_bytes();
        let mut c = TemplateCache::new(CacheLimits {
            total_bytes: 4 * one,
            per_exporter_bytes: 1 << 20,
            ..Default::default()
        });
        c.insert(ip(1), key(256), small(), 0);
        for id in 256..259 {
            c.insert(ip(2), key(id), small(), 10);
        }
        assert_eq!(c.insert(ip(3), key(256), small(), 20).evicted, 1);
        assert!(c.get(ip(1), key(256), 20).is_none(), "the stale session");
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn total_cap_evicts_from_the_heaviest_of_sessions_seen_as_recently() {
        let one = small().cached_bytes();
        let mut c = TemplateCache::new(CacheLimits {
            total_bytes: 4 * one,
            per_exporter_bytes: 1 << 20,
            ..Default::default()
        });
        for id in 256..259 {
            c.insert(ip(1), key(id), small(), 0);
        }
        c.insert(ip(2), key(256), small(), 0);
        assert_eq!(c.insert(ip(2), key(257), small(), 0).evicted, 1);
        assert_eq!(c.len(), 4);
        assert!(
            c.get(ip(1), key(256), 0).is_none(),
            "oldest of the heaviest exporter"
        );
        assert!(c.get(ip(2), key(256), 0).is_some());
        assert!(c.bytes() <= 4 * one);
    }

    #[test]
    fn early_data_of_a_session_ages_on_its_own_messages_while_others_skip_the_lookup() {
        // max_age 30: the sweep of every session runs at most every 30; in between a message
        // ages out its own session's sets, and a session that holds nothing skips the lookup.
        let mut e = EarlyData::new(EarlyLimits {
            max_age_ns: 30,
            ..EarlyLimits::default()
        });
        assert!(e.hold(ip(1), held(256, 0), &[1]));
        assert_eq!(e.expire(ip(2), 10), 0, "sweep due (none yet): nothing old");
        assert!(e.hold(ip(2), held(256, 20), &[2]));
        assert_eq!(e.expire(ip(3), 31), 1, "the sweep: session 1's set");
        assert!(!e.may_hold(ip(1)), "the sweep rebuilt the filter");
        assert_eq!(e.expire(ip(3), 45), 0, "session 3 holds nothing");
        assert_eq!(e.expire(ip(2), 45), 0, "session 2's set is 25 old");
        assert_eq!(e.expire(ip(2), 52), 1, "32 old, on session 2's own message");
        assert_eq!((e.sets(), e.bytes()), (0, 0));
        // After a take the session's bit may stay set (a lookup that finds nothing); holding
        // again sets it, and the session's own message ages its data.
        assert!(e.hold(ip(2), held(256, 53), &[3]));
        assert!(e.hold(ip(1), held(257, 53), &[4]));
        let (mut out, mut ctx) = (Vec::new(), Vec::new());
        e.take(ip(1), key(257), &mut out, &mut ctx);
        assert_eq!(e.expire(ip(1), 54), 0);
        assert!(e.hold(ip(1), held(257, 55), &[5]));
        assert_eq!(
            e.expire(ip(3), 80),
            0,
            "a sweep (49 after the last): nothing 31 old"
        );
        assert_eq!(e.expire(ip(1), 86), 1, "31 old, on session 1's own message");
        assert_eq!(
            e.sets(),
            1,
            "session 2's set waits for its message or the sweep"
        );
        // Every session's bit is set while it holds data, whatever its address.
        let mut e = EarlyData::new(EarlyLimits::default());
        for n in 0..=255u8 {
            assert!(e.hold(SocketAddr::from(([10, 0, 0, n], 4739)), held(256, 0), &[]));
        }
        for n in 0..=255u8 {
            assert!(e.may_hold(SocketAddr::from(([10, 0, 0, n], 4739))));
        }
    }

    fn hash_of(key: &(impl Hash + ?Sized)) -> u64 {
        WordState::default().hash_one(key)
    }

    #[test]
    fn word_hash_spreads_exporters_over_the_low_bits() {
        // 1000 exporters 10.a.b.1:4739 (as the decode benchmark numbers them): a table of 2048
        // buckets picks by the low 11 bits, which must not repeat much (random: ~790 distinct),
        // whatever the process's seed: this one and 200 others.
        let buckets = |hashes: Vec<u64>| {
            let mut seen: Vec<u64> = hashes.into_iter().map(|h| h & 2047).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        let mut seed = hash_seed();
        for _ in 0..=200 {
            let state = WordState(seed);
            let sessions: Vec<u64> = (0u16..1000)
                .map(|n| {
                    let [a, b] = n.to_be_bytes();
                    state.hash_one(SessionKey(SocketAddr::from(([10, a, b, 1], 4739))))
                })
                .collect();
            assert!(buckets(sessions) > 700, "seed {seed:#x}");
            let ports: Vec<u64> = (0u16..1000)
                .map(|p| state.hash_one(SessionKey(SocketAddr::from(([10, 0, 0, 1], 30000 + p)))))
                .collect();
            assert!(buckets(ports) > 700, "seed {seed:#x}");
            let ids: Vec<u64> = (256u16..1256).map(|id| state.hash_one(key(id))).collect();
            assert!(buckets(ids) > 700, "seed {seed:#x}");
            seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ 0x5555;
        }
        // Every part of a key reaches the hash.
        let k = key(256);
        assert_ne!(hash_of(&k), hash_of(&TemplateKey { domain: 1, ..k }));
        assert_ne!(hash_of(&k), hash_of(&TemplateKey { version: 9, ..k }));
        let v6: SocketAddr = "[2001:db8::1]:4739".parse().unwrap();
        let v6b: SocketAddr = "[2001:db8:0:1::1]:4739".parse().unwrap();
        assert_ne!(hash_of(&SessionKey(v6)), hash_of(&SessionKey(v6b)));
        let (top, no_top): (SocketAddr, SocketAddr) = (
            "[fc00::1]:1".parse().unwrap(),
            "[7c00::1]:1".parse().unwrap(),
        );
        assert_ne!(hash_of(&SessionKey(top)), hash_of(&SessionKey(no_top)));
        // Byte slices (std keys such as IpAddr) of up to 16 bytes: each byte and the length count.
        let bytes = [7u8; 16];
        for len in 0..=16 {
            for i in 0..len {
                let mut other = bytes;
                other[i] ^= 1;
                assert_ne!(hash_of(&bytes[..len]), hash_of(&other[..len]));
            }
        }
        assert_ne!(hash_of(&[0u8; 3][..]), hash_of(&[0u8; 4][..]));
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
