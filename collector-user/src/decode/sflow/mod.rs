//! sFlow v5: datagrams of flow samples (1), counter samples (2) and their expanded forms (3, 4).
//!
//! This module owns the sFlow decoder of one worker ([`SflowDecoder`]): the walk over a datagram's
//! samples and records, sequence tracking per agent + sub-agent and per sample source, and the sFlow
//! counters ([`SflowStats`]). The submodules hold one wire structure each, smoltcp style (`field`
//! offsets, a checked parse, and the `emit` half):
//! [`datagram`] (header), [`samples`] (sample headers, source ids, interfaces), [`flow_records`],
//! [`counter_records`], [`xdr`] (framing primitives) and [`emit`] (whole datagrams, the OVS profile).
//!
//! # What comes out
//! One flow sample → one [`FlowRecord`]: `flow_type` = `SflowV5`, `exporter_addr` = agent address
//! (goflow2's `sampler_address`), `exporter_port` = UDP source port, `observation_domain_id` =
//! sub-agent id, `observation_point_id` = source id in its compact form (`type << 24 | index & 0xFFFFFF`),
//! `sampler_id` = the full 32-bit source index, `sequence_num` = the datagram's sequence number
//! (as goflow2's `sequence_num`; the sample's own sequence number has no field in the record: it
//! is tracked for loss, not kept), `sampling_rate`, `in_if` / `out_if` = interface value with its format in `in_if_format` /
//! `out_if_format` (0 ifIndex, 1 discarded: value = reason, 2 multiple: value = count), `packets` = 1,
//! `bytes` = sampled frame length, all three times = receive time; the flow records fill the rest
//! (see [`flow_records`]). One counter record of a counter sample → one [`CounterRecord`]
//! (`record::counters` documents the layout).
//!
//! # Sequences
//! Each agent + sub-agent's datagram sequence is tracked datagram by datagram. Each sample
//! source's sample sequence (flow and counter samples apart) is tracked a run (`Run`) at a time:
//! the samples of the source in one datagram that follow each other in order — normally all of
//! them — are one observation spanning that many samples, judged when the datagram ends. So loss
//! counts samples, while `late` and `restarts` count runs, in effect datagrams per source: a
//! datagram that arrives late is late once per source and gives its samples' loss back, as it
//! would if it had one sample. (Judged sample by sample, its in-order samples would look like the
//! first datagrams of an exporter that restarted without resetting its uptime: `RESTART_RUN` late
//! ones in a row.) An agent that reboots still shows as a restart: its uptime goes back, or its
//! sequences jump far back. In a datagram with samples of more than `MAX_RUNS` (16) sources, the
//! extra sources' samples are judged one by one.
//!
//! # Errors and counts
//! Lengths are checked before use and never trusted past the datagram: a sample running past the
//! datagram or shorter than its fixed part is `BadSampleLength`; a record running past its sample or
//! shorter than its fixed part is `BadRecordLength`; a sample or record count that cannot fit in the
//! bytes is `BadSampleCount` (checked before looping, so a huge count costs nothing). Decoding stops at
//! the first error; records already handed to the sink stay. Unknown sample, flow record and counter
//! record formats are skipped by their length and counted by format in [`SflowStats`].
//!
//! # Fast path
//! A compact flow sample whose records are all of the kinds Open vSwitch sends (raw header of an
//! Ethernet frame, extended switch, IPv4 tunnel, VNI) is decoded by `DatagramWalk::flow_sample_fast`:
//! one scratch record per datagram with only the fields those records write cleared per sample,
//! and the sequence check of the agent's recent source done on its cached compact id, next
//! sequence number and drops counter (the uptime going back is checked once per datagram). Records
//! laid out as OVS writes them — extended switch, raw header, then optionally a VNI record and an
//! IPv4 tunnel record — are framed by comparing whole record heads at known offsets (`ovs_layout`),
//! and their IPv4 addresses written into the cleared record as their non-zero bytes; the same
//! kinds in any other order go through a record loop (`fast_records`). Anything else in the
//! sample — another record or header format, a length or count that does not fit — sends the
//! whole sample to the general path (`flow_sample`), which also decodes expanded samples and names
//! every error. The sample loop counts the fast path's samples once per datagram. The paths give
//! byte-identical records, counters and sequence state (`fast_path_matches_general_path`).
//!
//! The hot path does not allocate except when a new agent or sample source is first seen (bounded by
//! [`MAX_AGENTS`] and [`MAX_SOURCES_PER_AGENT`]; beyond them sequences are not tracked and
//! [`SflowStats::untracked`] counts it).

pub mod counter_records;
pub mod datagram;
pub mod emit;
pub mod flow_records;
pub mod samples;
pub mod xdr;

use super::sequence::{SequenceCounts, SequenceEvent, SequenceTracker};
use super::{DatagramMeta, ErrorReason, RecordSink};
use crate::record::{CounterRecord, FlowRecord, FlowType};
use bytemuck::Zeroable;
use samples::{CounterSampleHeader, FlowSampleHeader, Interface, SourceId};
use std::collections::HashMap;
use std::net::IpAddr;

/// Agents (address + sub-agent) whose sequences are tracked; further agents are decoded untracked.
pub const MAX_AGENTS: usize = 65_536;
/// Sample sources tracked per agent.
pub const MAX_SOURCES_PER_AGENT: usize = 4_096;
/// A step back of at most this many datagrams or samples is a late arrival, further back a restart.
pub const REORDER_WINDOW: u32 = 1_024;
/// A jump forward of more than this many datagrams or samples is a restart, not loss.
pub const MAX_GAP: u32 = 1 << 20;

/// Counts of formats by number: a few slots for the formats seen first, then `other`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatCounts {
    /// (data format `enterprise << 12 | format`, count); count 0 = free slot.
    pub slots: [(u32, u64); 8],
    /// Occurrences of formats that found no free slot.
    pub other: u64,
}

impl FormatCounts {
    /// Count one occurrence of `format` (kept out of line: unknown formats are rare, and inlined
    /// the slot walk costs the record loops register spills on every sample).
    #[cold]
    #[inline(never)]
    pub fn count(&mut self, format: u32) {
        for slot in &mut self.slots {
            if slot.1 == 0 {
                *slot = (format, 1);
                return;
            }
            if slot.0 == format {
                slot.1 += 1;
                return;
            }
        }
        self.other += 1;
    }

    /// Occurrences of `format` (0 if it went to `other`).
    pub fn get(&self, format: u32) -> u64 {
        self.slots
            .iter()
            .find(|s| s.0 == format && s.1 > 0)
            .map_or(0, |s| s.1)
    }

    /// All occurrences.
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.1).sum::<u64>() + self.other
    }

    /// The (format, count) pairs in use.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.slots.iter().copied().filter(|s| s.1 > 0)
    }
}

/// sFlow counters of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SflowStats {
    /// Datagrams whose header decoded.
    pub datagrams: u64,
    /// Samples by sample format: index 0 flow (1), 1 counter (2), 2 expanded flow (3), 3 expanded counter (4).
    pub samples_by_type: [u64; 4],
    /// Samples of other formats (skipped).
    pub unknown_sample_types: FormatCounts,
    /// Flow records of formats not decoded (skipped).
    pub unknown_flow_records: FormatCounts,
    /// Counter records of formats not decoded (skipped).
    pub unknown_counter_records: FormatCounts,
    /// Raw packet header records of a header protocol other than Ethernet / IPv4 / IPv6 (only the
    /// frame length was used).
    pub unparsed_headers: u64,
    /// Samples the agents report having dropped (increase of the flow samples' `drops` counters).
    pub agent_drops: u64,
    /// Datagrams and samples whose sequence was not tracked (agent or source caps reached).
    pub untracked: u64,
}

/// Sequence counts of one agent + sub-agent, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentSequences {
    /// Agent address (IPv4-mapped when IPv4).
    pub agent_addr: [u8; 16],
    pub sub_agent_id: u32,
    /// Source address of the agent's first datagram.
    pub exporter: IpAddr,
    /// Datagram sequence: lost datagrams, late ones, restarts.
    pub datagrams: SequenceCounts,
    /// Sample sequences summed over the agent's sources: lost samples, late ones, restarts.
    pub samples: SequenceCounts,
    /// Sample sources tracked.
    pub sources: usize,
    /// Samples the agent reports dropped.
    pub drops: u64,
}

/// Which sequence space of a source: flow samples and counter samples are numbered separately.
const SOURCE_CLASS_COUNTERS: u64 = 1 << 40;

#[derive(Clone, Debug)]
struct SourceState {
    /// class | type << 32 | index.
    key: u64,
    samples: SequenceTracker,
    last_drops: Option<u32>,
}

#[derive(Clone, Debug)]
struct AgentState {
    agent_addr: [u8; 16],
    sub_agent_id: u32,
    /// The source address of the agent's first datagram: the exporter its counts are reported
    /// under (an agent's address is often another of the device's addresses; Open vSwitch's is
    /// the address of the interface given as `agent=`, not the one it sends from). Set once, so
    /// that a datagram pays nothing for it.
    exporter: IpAddr,
    datagrams: SequenceTracker,
    /// Sorted by key.
    sources: Vec<SourceState>,
    last_source: usize,
    drops: u64,
    /// The source of the agent's latest sample, followed here alone while its samples come in
    /// order with unchanged drops (the fast path's sequence check); written back to `sources`
    /// ([`AgentState::write_back_recent`]), or to the source's open [`Run`], before anything else
    /// reads or changes them.
    recent: RecentSource,
}

/// Open runs kept at once: in a datagram with samples of more sources, the samples of the sources
/// that found no room are judged one by one.
const MAX_RUNS: usize = 16;

/// A run: the samples of one source in the datagram being walked that followed each other in
/// order with the same drops counter — normally all the datagram's samples of that source. Its
/// sequence is judged as one observation of `next - first` samples when the run ends (at the
/// datagram's end, or at a sample of the source that does not continue it): a late datagram is one
/// late observation that gives back all its samples' loss, never a run of late samples that would
/// pass for a restart ([`crate::decode::sequence::RESTART_RUN`]).
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Source key.
    key: u64,
    /// Sequence number of the run's first sample.
    first: u32,
    /// The number the next sample of the run would carry (while [`AgentState::recent`] follows the
    /// run, its `sequence` is ahead of this).
    next: u32,
    /// The drops counter of the run's samples (`None` for counter samples).
    drops: Option<u32>,
    /// Index of the source in `sources` when the run began (checked against `key` before use).
    index: usize,
}

impl Run {
    const EMPTY: Run = Run {
        key: u64::MAX,
        first: 0,
        next: 0,
        drops: None,
        index: 0,
    };
}

/// The open runs of the datagram being walked: `list[..open]`, at most one per source. Empty
/// between datagrams ([`DatagramWalk::finish`]).
#[derive(Clone, Debug)]
struct Runs {
    list: [Run; MAX_RUNS],
    open: usize,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            list: [Run::EMPTY; MAX_RUNS],
            open: 0,
        }
    }
}

/// Samples of a datagram not taken by the fast path, and the records they produced.
#[derive(Default)]
struct Others {
    samples: u32,
    records: usize,
}

/// See [`AgentState::recent`].
///
/// Its uptime never runs ahead of the datagram being walked: [`DatagramWalk::new`] writes it back
/// when the agent's uptime went back, so the fast path's check needs no uptime comparison.
#[derive(Clone, Copy, Debug)]
struct RecentSource {
    /// The source's compact id (`type << 24 | index`, as a compact flow sample carries it) widened
    /// to 64 bits, what the fast path compares; `u64::MAX` (in [`RecentSource::NONE`], and for a
    /// source that has no compact form) matches no sample.
    compact_id: u64,
    /// Source key; [`RecentSource::NONE`]'s matches no source (keys stay below 2^41).
    key: u64,
    /// The next expected sample sequence number.
    sequence: u32,
    /// The drops counter of the latest sample.
    drops: u32,
    uptime_ms: u32,
    /// Index of the source in `sources`.
    index: usize,
    /// The slot of the source's open run in [`Runs::list`], when the samples followed here are
    /// that run's and not yet judged; [`NO_RUN`] when the source's tracker has judged every sample
    /// before `sequence` (the samples followed here were in order).
    run: usize,
}

/// [`RecentSource::run`] of a source followed without an open run.
const NO_RUN: usize = usize::MAX;

impl RecentSource {
    const NONE: RecentSource = RecentSource {
        compact_id: u64::MAX,
        key: u64::MAX,
        sequence: 0,
        drops: 0,
        uptime_ms: 0,
        index: 0,
        run: NO_RUN,
    };

    /// Following `run`'s source from the sample after its last on, the source's tracker at `index`
    /// and its run open in `slot` ([`NO_RUN`]: none).
    #[inline(always)]
    fn following(run: &Run, uptime_ms: u32, index: usize, slot: usize) -> RecentSource {
        RecentSource {
            compact_id: RecentSource::compact_id(run.key),
            key: run.key,
            sequence: run.next,
            drops: run.drops.unwrap_or(0),
            uptime_ms,
            index,
            run: slot,
        }
    }

    /// The compact id of a flow sample source `key` (`type << 32 | index`), or `u64::MAX` when its
    /// type or index is too wide for the compact form.
    const fn compact_id(key: u64) -> u64 {
        let (kind, index) = (key >> 32, key & 0xffff_ffff);
        if kind <= 0xff && index <= SourceId::COMPACT_INDEX_MAX as u64 {
            kind << 24 | index
        } else {
            u64::MAX
        }
    }
}

impl AgentState {
    /// Hand what [`AgentState::recent`] followed back to its source's tracker, and forget it (no
    /// run is open: see [`Runs`]).
    #[inline(always)]
    fn write_back_recent(&mut self) {
        let recent = std::mem::replace(&mut self.recent, RecentSource::NONE);
        self.write_back(recent);
    }

    /// Hand what `recent` followed, with no open run, back to its source's tracker.
    #[inline(always)]
    fn write_back(&mut self, recent: RecentSource) {
        if let Some(source) = self.sources.get_mut(recent.index)
            && source.key == recent.key
        {
            // The drops counter did not change while followed here: `last_drops` holds it.
            source
                .samples
                .resume_in_order(recent.sequence, recent.uptime_ms);
        }
    }

    /// The source with `key`, created when there is room.
    #[inline(always)]
    fn source(&mut self, key: u64) -> Option<&mut SourceState> {
        if self
            .sources
            .get(self.last_source)
            .is_some_and(|s| s.key == key)
        {
            return self.sources.get_mut(self.last_source);
        }
        let at = match self.sources.binary_search_by_key(&key, |s| s.key) {
            Ok(at) => at,
            Err(_) if self.sources.len() >= MAX_SOURCES_PER_AGENT => return None,
            Err(at) => {
                self.sources.insert(
                    at,
                    SourceState {
                        key,
                        // Runs of any length: nothing to learn from spans (see `Run`).
                        samples: SequenceTracker::new(REORDER_WINDOW, MAX_GAP)
                            .with_standard_numbering(),
                        last_drops: None,
                    },
                );
                at
            }
        };
        self.last_source = at;
        self.sources.get_mut(at)
    }

    /// Judge a run in its source's sample sequence (one observation of all its samples) and count
    /// the drops its agent reports. Returns the event and the source's index.
    fn judge(
        &mut self,
        run: &Run,
        uptime_ms: u32,
        stats: &mut SflowStats,
    ) -> Option<(SequenceEvent, usize)> {
        let index = match self.sources.get(run.index) {
            Some(s) if s.key == run.key => run.index,
            // Sources created since the run began moved it.
            _ => self
                .sources
                .binary_search_by_key(&run.key, |s| s.key)
                .ok()?,
        };
        let source = self.sources.get_mut(index)?;
        let span = run.next.wrapping_sub(run.first);
        let event = source
            .samples
            .observe(run.first, Some(span), Some(uptime_ms));
        let Some(now) = run.drops else {
            return Some((event, index));
        };
        let last = source.last_drops.replace(now);
        // Unchanged drops outside a restart add nothing.
        if last != Some(now) || event == SequenceEvent::Restart {
            let dropped = match (last, event) {
                // A restarted agent counts drops from zero again.
                (Some(_), SequenceEvent::Restart) => now,
                (Some(last), _) if now >= last => now - last,
                (Some(_), _) => now,
                // Drops before the first sample seen happened before tracking began.
                (None, _) => 0,
            };
            self.drops += u64::from(dropped);
            stats.agent_drops += u64::from(dropped);
        }
        Some((event, index))
    }
}

/// sFlow decoder state of one worker: sequence trackers per agent and sample source, and counters.
#[derive(Clone, Debug, Default)]
pub struct SflowDecoder {
    stats: SflowStats,
    agents: Vec<AgentState>,
    by_agent: HashMap<([u8; 16], u32), usize, AgentHashBuilder>,
    /// The open runs of the datagram being walked.
    runs: Runs,
    /// Direct-mapped cache in front of `by_agent`: slot [`agent_slot`] holds an agent index + 1
    /// (0 empty), checked against the agent's key before use. Datagrams of a few dozen agents
    /// interleaved find their agent here without hashing.
    agent_cache: AgentCache,
}

/// Slots of the agent cache (a power of two).
const AGENT_CACHE_SLOTS: usize = 256;

#[derive(Clone, Debug)]
struct AgentCache([u32; AGENT_CACHE_SLOTS]);

impl Default for AgentCache {
    fn default() -> Self {
        AgentCache([0; AGENT_CACHE_SLOTS])
    }
}

/// The cache slot of an agent: a multiplicative mix of the address's last word and the sub-agent.
#[inline(always)]
fn agent_slot(agent_addr: &[u8; 16], sub_agent_id: u32) -> usize {
    let low = agent_addr.last_chunk::<8>().copied().unwrap_or_default();
    let mixed = (u64::from_le_bytes(low) ^ u64::from(sub_agent_id) << 40)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 56) as usize % AGENT_CACHE_SLOTS
}

/// Hashes agent keys (address + sub-agent, looked up once per datagram) with a multiply-rotate mix
/// and a random per-decoder seed: a fraction of SipHash's cost for a 20-byte key. Agents are
/// exporters that passed the allow-list, and the map is capped at [`MAX_AGENTS`].
#[derive(Clone, Debug)]
struct AgentHashBuilder {
    seed: u64,
}

impl Default for AgentHashBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher;
        AgentHashBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5f10_u64),
        }
    }
}

impl std::hash::BuildHasher for AgentHashBuilder {
    type Hasher = AgentHasher;
    fn build_hasher(&self) -> AgentHasher {
        AgentHasher { state: self.seed }
    }
}

struct AgentHasher {
    state: u64,
}

impl AgentHasher {
    #[inline(always)]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl std::hash::Hasher for AgentHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            if let Some(word) = chunk.first_chunk::<8>() {
                self.mix(u64::from_le_bytes(*word));
            }
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        if let Some(dst) = tail.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
            self.mix(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 59);
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.state ^ self.state >> 29
    }
}

impl SflowDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sFlow counters.
    pub fn stats(&self) -> &SflowStats {
        &self.stats
    }

    /// Sequence counts per agent + sub-agent.
    pub fn agents(&self) -> impl Iterator<Item = AgentSequences> + '_ {
        self.agents.iter().map(|a| {
            let mut samples = SequenceCounts::default();
            for s in &a.sources {
                samples.add(&s.samples.counts);
            }
            AgentSequences {
                agent_addr: a.agent_addr,
                sub_agent_id: a.sub_agent_id,
                exporter: a.exporter,
                datagrams: a.datagrams.counts,
                samples,
                sources: a.sources.len(),
                drops: a.drops,
            }
        })
    }

    /// Decode one sFlow datagram; returns the number of records (flows + counters) handed to `sink`.
    pub fn decode(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        let header = datagram::Header::parse(datagram)?;
        self.stats.datagrams += 1;
        let agent = self.agent_index(header.agent, header.sub_agent_id, meta);
        let SflowDecoder {
            stats,
            agents,
            runs,
            ..
        } = self;
        let agent = agent.and_then(|a| agents.get_mut(a));
        let mut walk = DatagramWalk::new(stats, runs, agent, &header, meta);
        walk.observe_datagram(header.sequence);
        let result = walk.samples(header.num_samples, header.samples, sink);
        walk.finish();
        result
    }

    /// Index of the agent's state, created when there is room.
    #[inline(always)]
    fn agent_index(
        &mut self,
        agent_addr: [u8; 16],
        sub_agent_id: u32,
        meta: &DatagramMeta,
    ) -> Option<usize> {
        let slot = agent_slot(&agent_addr, sub_agent_id);
        if let Some(&cached) = self.agent_cache.0.get(slot)
            && let Some(i) = (cached as usize).checked_sub(1)
            && let Some(a) = self.agents.get(i)
            && a.agent_addr == agent_addr
            && a.sub_agent_id == sub_agent_id
        {
            return Some(i);
        }
        self.agent_index_slow(agent_addr, sub_agent_id, slot, meta)
    }

    /// [`SflowDecoder::agent_index`] past the cache: the map, then a new agent when there is room.
    #[inline(never)]
    fn agent_index_slow(
        &mut self,
        agent_addr: [u8; 16],
        sub_agent_id: u32,
        slot: usize,
        meta: &DatagramMeta,
    ) -> Option<usize> {
        let i = match self.by_agent.get(&(agent_addr, sub_agent_id)) {
            Some(&i) => i,
            None if self.agents.len() >= MAX_AGENTS => return None,
            None => {
                let i = self.agents.len();
                self.agents.push(AgentState {
                    agent_addr,
                    sub_agent_id,
                    exporter: meta.exporter.ip(),
                    datagrams: SequenceTracker::new(REORDER_WINDOW, MAX_GAP),
                    sources: Vec::new(),
                    last_source: 0,
                    drops: 0,
                    recent: RecentSource::NONE,
                });
                self.by_agent.insert((agent_addr, sub_agent_id), i);
                i
            }
        };
        if let Some(cached) = self.agent_cache.0.get_mut(slot) {
            // Indexes stay below MAX_AGENTS, far inside u32.
            *cached = i as u32 + 1;
        }
        Some(i)
    }
}

/// One datagram being decoded: the counters, the agent's sequence state, and the values every
/// record of the datagram shares.
struct DatagramWalk<'a> {
    stats: &'a mut SflowStats,
    /// The datagram's open runs (empty when the walk begins).
    runs: &'a mut Runs,
    /// `None` when the agent is not tracked (agent cap reached).
    agent: Option<&'a mut AgentState>,
    uptime_ms: u32,
    /// The record the fast path fills sample after sample: the datagram's template
    /// ([`flow_template`]) once per datagram, then per sample only the fields the fast path's
    /// records can write are cleared ([`clear_packet_fields`]) and the sample's own fields
    /// overwritten — a fraction of the stores of a fresh 256-byte record. Its template fields
    /// stay as set, and serve the general path and counter samples too.
    flow: FlowRecord,
}

/// The flow records of a compact flow sample for the fast path, in any order: each of the kinds
/// OVS sends, framed and dispatched most common first; `None` at anything else (another format or
/// header protocol, a record or count that does not fit). Out of line: OVS's own layout takes
/// [`ovs_layout`].
#[inline(never)]
fn fast_records(mut records: &[u8], num_records: u32, flow: &mut FlowRecord) -> Option<()> {
    for _ in 0..num_records {
        let (head, rest) = records.split_first_chunk::<{ xdr::ELEMENT_HEADER_LEN }>()?;
        let (body, rest) = rest.split_at_checked(xdr::word(head, 4) as usize)?;
        records = rest;
        // The format compared as it lies in the bytes: no byte swap per record.
        let format = wire_word(head, 0);
        if format == wire(flow_records::format::RAW_HEADER) {
            flow_records::raw_ethernet_header::<false>(body, flow)?;
        } else if format == wire(flow_records::format::SWITCH) {
            flow_records::switch(body, flow).ok()?;
        } else if format == wire(flow_records::format::IPV4_TUNNEL_EGRESS)
            || format == wire(flow_records::format::IPV4_TUNNEL_INGRESS)
        {
            flow_records::ipv4_tunnel::<false>(body, flow).ok()?;
        } else if format == wire(flow_records::format::VNI_EGRESS)
            || format == wire(flow_records::format::VNI_INGRESS)
        {
            flow_records::vni(body, flow).ok()?;
        } else {
            return None;
        }
    }
    Some(())
}

/// A record's 8-byte head (format, length) as [`head_word`] reads it.
const fn wire_head(format: u32, len: u32) -> u64 {
    u64::from_ne_bytes(((format as u64) << 32 | len as u64).to_be_bytes())
}

/// The 8 bytes at `at` of `b` as they lie in memory, to compare with [`wire_head`] constants.
#[inline(always)]
fn head_word<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    b.get(at..)
        .and_then(|s| s.first_chunk::<8>())
        .map_or(0, |w| u64::from_ne_bytes(*w))
}

/// The flow records of a compact flow sample laid out as Open vSwitch writes them — extended
/// switch, raw packet header, and either nothing more or a VNI record then an IPv4 tunnel record
/// (2 or 4 records) — framed by a few comparisons of whole record heads at known offsets instead
/// of the record loop, then decoded by the same record functions in the same order as
/// [`fast_records`]. `None` (possibly after the switch record was applied) when the sample is laid
/// out otherwise: another count, order, format, or a fixed-size record of another length.
#[inline(always)]
fn ovs_layout(records: &[u8], num_records: u32, flow: &mut FlowRecord) -> Option<()> {
    use flow_records::{field, format};
    const HEAD: usize = xdr::ELEMENT_HEADER_LEN;
    const SWITCH: usize = HEAD + field::switch::LEN;
    const VNI: usize = HEAD + field::vni::LEN;
    const TUNNEL: usize = HEAD + field::ipv4::LEN;
    // The switch record and the raw header's head in one read.
    let (first, rest) = records.split_first_chunk::<{ SWITCH + HEAD }>()?;
    if head_word(first, 0) != wire_head(format::SWITCH, field::switch::LEN as u32)
        || wire_word(first, SWITCH) != wire(format::RAW_HEADER)
    {
        return None;
    }
    let (raw, rest) = rest.split_at_checked(xdr::word(first, SWITCH + 4) as usize)?;
    let tunnel = match num_records {
        2 => None,
        4 => {
            let (t, _) = rest.split_first_chunk::<{ VNI + TUNNEL }>()?;
            let vni = head_word(t, 0);
            let tunnel = head_word(t, VNI);
            let vni_len = field::vni::LEN as u32;
            let tunnel_len = field::ipv4::LEN as u32;
            if (vni != wire_head(format::VNI_EGRESS, vni_len)
                && vni != wire_head(format::VNI_INGRESS, vni_len))
                || (tunnel != wire_head(format::IPV4_TUNNEL_EGRESS, tunnel_len)
                    && tunnel != wire_head(format::IPV4_TUNNEL_INGRESS, tunnel_len))
            {
                return None;
            }
            Some(t)
        }
        _ => return None,
    };
    flow_records::switch(first.get(HEAD..SWITCH).unwrap_or_default(), flow).ok()?;
    // Records applied once each to a record cleared for the sample: addresses written as their
    // non-zero bytes.
    flow_records::raw_ethernet_header::<true>(raw, flow)?;
    if let Some(t) = tunnel {
        flow_records::vni(t.get(HEAD..VNI).unwrap_or_default(), flow).ok()?;
        flow_records::ipv4_tunnel::<true>(t.get(VNI + HEAD..).unwrap_or_default(), flow).ok()?;
    }
    Some(())
}

/// The word at `at` of `b` as it lies in memory (not byte-swapped), to compare with [`wire`]
/// constants.
#[inline(always)]
fn wire_word<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    b.get(at..)
        .and_then(|s| s.first_chunk::<4>())
        .map_or(0, |w| u32::from_ne_bytes(*w))
}

/// A big-endian wire word's value as [`wire_word`] reads it.
const fn wire(value: u32) -> u32 {
    u32::from_ne_bytes(value.to_be_bytes())
}

/// The flow record every flow sample of a datagram starts from: zero but for the fields the
/// datagram fixes (type, agent, sub-agent, exporter port, sequence number, times, one packet). Zeroing and storing
/// these is cheaper than copying a 256-byte template (a call to `memcpy`).
#[inline(always)]
fn flow_template(header: &datagram::Header<'_>, meta: &DatagramMeta) -> FlowRecord {
    let mut flow = FlowRecord::zeroed();
    flow.flow_type = FlowType::SflowV5 as u8;
    flow.exporter_addr = header.agent;
    flow.exporter_port = meta.exporter.port();
    flow.observation_domain_id = header.sub_agent_id;
    flow.sequence_num = header.sequence;
    flow.time_received_ns = meta.received_ns;
    flow.time_flow_start_ns = meta.received_ns;
    flow.time_flow_end_ns = meta.received_ns;
    flow.packets = 1;
    flow
}

/// Clear every field the fast path's record decoders can write (raw Ethernet header at any depth,
/// extended switch, IPv4 tunnel, VNI), leaving the datagram's template fields. A field missing
/// here would leak from one sample into the next; the fast-vs-general property test catches it.
#[inline(always)]
fn clear_packet_fields(flow: &mut FlowRecord) {
    flow.bytes = 0;
    flow.tunnel_key = 0;
    flow.src_addr = [0; 16];
    flow.dst_addr = [0; 16];
    flow.tunnel_src_addr = [0; 16];
    flow.tunnel_dst_addr = [0; 16];
    flow.ipv6_flow_label = 0;
    flow.src_port = 0;
    flow.dst_port = 0;
    flow.etype = 0;
    flow.vlan_id = 0;
    flow.tcp_flags = 0;
    flow.tunnel_src_port = 0;
    flow.tunnel_dst_port = 0;
    flow.proto = 0;
    flow.ip_tos = 0;
    flow.ip_ttl = 0;
    flow.icmp_type = 0;
    flow.icmp_code = 0;
    flow.tunnel_type = 0;
    flow.tunnel_proto = 0;
    flow.src_mac = [0; 6];
    flow.dst_mac = [0; 6];
}

impl<'a> DatagramWalk<'a> {
    #[inline(always)]
    fn new(
        stats: &'a mut SflowStats,
        runs: &'a mut Runs,
        agent: Option<&'a mut AgentState>,
        header: &datagram::Header<'_>,
        meta: &DatagramMeta,
    ) -> Self {
        let mut agent = agent;
        if let Some(agent) = agent.as_deref_mut()
            && header.uptime_ms < agent.recent.uptime_ms
        {
            agent.write_back_recent();
        }
        DatagramWalk {
            stats,
            runs,
            agent,
            uptime_ms: header.uptime_ms,
            flow: flow_template(header, meta),
        }
    }

    /// A fresh record of the datagram for the general path: the template fields of
    /// [`DatagramWalk::flow`], the rest zero.
    #[inline(always)]
    fn start_flow(&self) -> FlowRecord {
        let mut flow = FlowRecord::zeroed();
        flow.flow_type = self.flow.flow_type;
        flow.exporter_addr = self.flow.exporter_addr;
        flow.exporter_port = self.flow.exporter_port;
        flow.observation_domain_id = self.flow.observation_domain_id;
        flow.sequence_num = self.flow.sequence_num;
        flow.time_received_ns = self.flow.time_received_ns;
        flow.time_flow_start_ns = self.flow.time_flow_start_ns;
        flow.time_flow_end_ns = self.flow.time_flow_end_ns;
        flow.packets = self.flow.packets;
        flow
    }

    /// Track the datagram sequence of the agent + sub-agent.
    #[inline(always)]
    fn observe_datagram(&mut self, sequence: u32) {
        match self.agent.as_deref_mut() {
            Some(agent) => {
                if !agent.datagrams.advance_in_order(sequence, self.uptime_ms) {
                    agent
                        .datagrams
                        .observe(sequence, Some(1), Some(self.uptime_ms));
                }
            }
            None => self.stats.untracked += 1,
        }
    }

    /// Walk the datagram's `num_samples` samples.
    ///
    /// The compact flow samples the fast path takes cost the loop nothing beyond their walk: how
    /// many there were (and so the records they produced, one each) is known at the end from the
    /// samples walked and the others, which are counted where they are decoded.
    #[inline(always)]
    fn samples(
        &mut self,
        num_samples: u32,
        mut samples: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        if num_samples as usize > samples.len() / xdr::ELEMENT_HEADER_LEN {
            return Err(ErrorReason::BadSampleCount);
        }
        let mut left = num_samples;
        // Samples not taken by the fast path, and the records they produced.
        let mut others = Others::default();
        let result = loop {
            let Some(next) = left.checked_sub(1) else {
                break Ok(());
            };
            left = next;
            let Some((sample, rest)) = xdr::split_element(samples) else {
                others.samples += 1;
                break Err(ErrorReason::BadSampleLength);
            };
            samples = rest;
            // Compact flow samples first: OVS sends little else.
            if sample.format == samples::format::FLOW
                && self.flow_sample_fast(sample.body, sink).is_some()
            {
                continue;
            }
            others.samples += 1;
            match self.other_sample(sample.format, sample.body, sink) {
                Ok(produced) => others.records += produced,
                Err(e) => break Err(e),
            }
        };
        let fast = num_samples - left - others.samples;
        self.stats.samples_by_type[0] += u64::from(fast);
        result.map(|()| fast as usize + others.records)
    }

    /// A sample the fast path did not take: a compact flow sample it left to the general path, or
    /// a sample of another format.
    #[inline(never)]
    fn other_sample(
        &mut self,
        format: u32,
        body: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        Ok(match format {
            samples::format::FLOW => self.flow_sample::<false>(body, sink)?,
            samples::format::EXPANDED_FLOW => self.flow_sample::<true>(body, sink)?,
            samples::format::COUNTERS => self.counter_sample(body, false, sink)?,
            samples::format::EXPANDED_COUNTERS => self.counter_sample(body, true, sink)?,
            other => {
                self.stats.unknown_sample_types.count(other);
                0
            }
        })
    }

    /// [`DatagramWalk::observe_sample`] for the fast path: the next sample of the agent's recent
    /// source with unchanged drops and an uptime that did not go back is decided here, on
    /// [`AgentState::recent`] alone; everything else there.
    #[inline(always)]
    fn observe_sample_fast(&mut self, source_id: u32, sequence: u32, drops: u32) {
        if let Some(agent) = self.agent.as_deref_mut() {
            let recent = &mut agent.recent;
            // The uptime did not go back (see `RecentSource`).
            if recent.compact_id == u64::from(source_id)
                && recent.sequence == sequence
                && recent.drops == drops
            {
                recent.sequence = sequence.wrapping_add(1);
                recent.uptime_ms = self.uptime_ms;
                return;
            }
        }
        let source = SourceId::from_compact(source_id);
        let key = u64::from(source.kind) << 32 | u64::from(source.index);
        self.observe_sample(key, sequence, Some(drops));
    }

    /// Track a sample's sequence number (and the agent's drop counter) in its source's space: the
    /// sample continues its source's open [`Run`] or begins one, judged when it ends.
    #[inline(never)]
    fn observe_sample(&mut self, key: u64, sequence: u32, drops: Option<u32>) {
        let Some(agent) = self.agent.as_deref_mut() else {
            self.stats.untracked += 1;
            return;
        };
        let runs = &mut *self.runs;
        // What the recent source followed goes to its run, or to its tracker.
        let recent = std::mem::replace(&mut agent.recent, RecentSource::NONE);
        match runs.list.get_mut(recent.run) {
            Some(run) => run.next = recent.sequence,
            None => agent.write_back(recent),
        }
        let open = runs.open.min(MAX_RUNS);
        let (slot, index) = match runs.list.iter().take(open).position(|r| r.key == key) {
            Some(slot) => {
                let Some(run) = runs.list.get_mut(slot) else {
                    return;
                };
                if run.next == sequence && run.drops == drops {
                    run.next = sequence.wrapping_add(1);
                    agent.recent = RecentSource::following(run, self.uptime_ms, run.index, slot);
                    return;
                }
                // The run ends here; this sample begins the source's next one, in its slot.
                let ended = *run;
                match agent.judge(&ended, self.uptime_ms, self.stats) {
                    Some((_, index)) => (slot, index),
                    None => return,
                }
            }
            None => {
                if agent.source(key).is_none() {
                    self.stats.untracked += 1;
                    return;
                }
                let index = agent.last_source;
                if open == MAX_RUNS {
                    // More sources in the datagram than runs: this sample is judged alone.
                    let alone = Run {
                        key,
                        first: sequence,
                        next: sequence.wrapping_add(1),
                        drops,
                        index,
                    };
                    if let Some((event, index)) = agent.judge(&alone, self.uptime_ms, self.stats)
                        && event != SequenceEvent::Late
                    {
                        agent.recent =
                            RecentSource::following(&alone, self.uptime_ms, index, NO_RUN);
                    }
                    return;
                }
                runs.open = open + 1;
                (open, index)
            }
        };
        if let Some(run) = runs.list.get_mut(slot) {
            *run = Run {
                key,
                first: sequence,
                next: sequence.wrapping_add(1),
                drops,
                index,
            };
            agent.recent = RecentSource::following(run, self.uptime_ms, index, slot);
        }
    }

    /// End the datagram's walk: judge its open runs. The recent source goes on without a run,
    /// unless its run was late (its tracker's expectation is then not known here).
    #[inline(always)]
    fn finish(&mut self) {
        if self.runs.open > 0 {
            self.close_runs();
        }
    }

    #[inline(never)]
    fn close_runs(&mut self) {
        let open = std::mem::take(&mut self.runs.open).min(MAX_RUNS);
        let Some(agent) = self.agent.as_deref_mut() else {
            return;
        };
        let mut recent = agent.recent;
        if let Some(run) = self.runs.list.get_mut(recent.run) {
            run.next = recent.sequence;
        }
        for (slot, run) in self.runs.list.iter().take(open).enumerate() {
            let judged = agent.judge(run, self.uptime_ms, self.stats);
            if slot == recent.run {
                recent = match judged {
                    Some((event, index)) if event != SequenceEvent::Late => RecentSource {
                        index,
                        run: NO_RUN,
                        ..recent
                    },
                    _ => RecentSource::NONE,
                };
            }
        }
        agent.recent = recent;
    }

    /// The fast path of a compact flow sample (format 1) whose records are all of the kinds OVS
    /// sends — raw packet header of an Ethernet frame, extended switch, IPv4 tunnel, VNI — in any
    /// order: fixed part read as one array, the record filled in place in the datagram's
    /// [`DatagramWalk::flow`], the records by [`ovs_layout`] when laid out as OVS writes them and
    /// by [`fast_records`] otherwise. It does not count the sample: the sample loop counts the
    /// samples it took once per datagram. Any other sample (another
    /// record format or header protocol, a length or count that does not fit) returns `None`
    /// having changed nothing but the scratch record, and [`DatagramWalk::flow_sample`] decodes
    /// it, naming the error if there is one.
    /// Both give identical records, counts and sequence state (a property test holds them to it).
    #[inline(always)]
    fn flow_sample_fast(&mut self, body: &[u8], sink: &mut impl RecordSink) -> Option<()> {
        use samples::field::flow as f;
        let (h, records) = body.split_first_chunk::<{ f::LEN }>()?;
        // A count that does not fit in the bytes needs no check of its own: `ovs_layout` takes 2
        // or 4 records only, and `fast_records` gives up when the bytes run out.
        let num_records = xdr::word(h, f::NUM_RECORDS);
        let flow = &mut self.flow;
        clear_packet_fields(flow);
        if ovs_layout(records, num_records, flow).is_none() {
            // Clear what `ovs_layout` wrote before giving up.
            clear_packet_fields(flow);
            fast_records(records, num_records, flow)?;
        }
        let sequence = xdr::word(h, f::SEQUENCE);
        // The compact source id is its own compact form.
        let source_id = xdr::word(h, f::SOURCE_ID);
        let input = xdr::word(h, f::INPUT);
        let output = xdr::word(h, f::OUTPUT);
        flow.observation_point_id = source_id;
        flow.sampler_id = source_id & SourceId::COMPACT_INDEX_MAX;
        flow.sampling_rate = xdr::word(h, f::SAMPLING_RATE);
        flow.in_if_format = (input >> 30) as u8;
        flow.in_if = input & Interface::COMPACT_MAX;
        flow.out_if_format = (output >> 30) as u8;
        flow.out_if = output & Interface::COMPACT_MAX;
        sink.flow(flow);
        self.observe_sample_fast(source_id, sequence, xdr::word(h, f::DROPS));
        Some(())
    }

    /// One flow sample (`EXPANDED`: format 3) → one flow record: the general path, every record
    /// format and every error.
    #[inline(never)]
    fn flow_sample<const EXPANDED: bool>(
        &mut self,
        body: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        let (sample, mut records) = FlowSampleHeader::parse(body, EXPANDED)?;
        self.stats.samples_by_type[if EXPANDED { 2 } else { 0 }] += 1;
        if sample.num_records as usize > records.len() / xdr::ELEMENT_HEADER_LEN {
            return Err(ErrorReason::BadSampleCount);
        }
        let mut flow = self.start_flow();
        flow.observation_point_id = sample.source.compact();
        flow.sampler_id = sample.source.index;
        flow.sampling_rate = sample.sampling_rate;
        flow.in_if_format = sample.input.0 as u8;
        flow.in_if = sample.input.1;
        flow.out_if_format = sample.output.0 as u8;
        flow.out_if = sample.output.1;
        for _ in 0..sample.num_records {
            let Some((record, rest)) = xdr::split_element(records) else {
                return Err(ErrorReason::BadRecordLength);
            };
            records = rest;
            match flow_records::apply(record, &mut flow)? {
                flow_records::Outcome::Applied => {}
                flow_records::Outcome::UnparsedHeader => self.stats.unparsed_headers += 1,
                flow_records::Outcome::Unknown => {
                    self.stats.unknown_flow_records.count(record.format)
                }
            }
        }
        let key = u64::from(sample.source.kind & 0xff) << 32 | u64::from(sample.source.index);
        self.observe_sample(key, sample.sequence, Some(sample.drops));
        sink.flow(&flow);
        Ok(1)
    }

    fn counter_sample(
        &mut self,
        body: &[u8],
        expanded: bool,
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        let (sample, mut records) = CounterSampleHeader::parse(body, expanded)?;
        self.stats.samples_by_type[if expanded { 3 } else { 1 }] += 1;
        if sample.num_records as usize > records.len() / xdr::ELEMENT_HEADER_LEN {
            return Err(ErrorReason::BadSampleCount);
        }
        let key = SOURCE_CLASS_COUNTERS
            | u64::from(sample.source.kind & 0xff) << 32
            | u64::from(sample.source.index);
        self.observe_sample(key, sample.sequence, None);
        let mut template = CounterRecord::zeroed();
        template.time_received_ns = self.flow.time_received_ns;
        template.agent_addr = self.flow.exporter_addr;
        template.sub_agent_id = self.flow.observation_domain_id;
        template.agent_uptime_ms = self.uptime_ms;
        template.exporter_port = self.flow.exporter_port;
        template.sequence_num = sample.sequence;
        template.source_index = sample.source.index;
        template.source_type = sample.source.kind as u8;
        template.if_index = sample.source.index;
        template.sample_type = if expanded {
            samples::format::EXPANDED_COUNTERS as u8
        } else {
            samples::format::COUNTERS as u8
        };
        let mut produced = 0;
        for _ in 0..sample.num_records {
            let Some((element, rest)) = xdr::split_element(records) else {
                return Err(ErrorReason::BadRecordLength);
            };
            records = rest;
            let mut record = template;
            match counter_records::fill(element, &mut record)? {
                counter_records::Outcome::Stored => {
                    sink.counters(&record);
                    produced += 1;
                }
                counter_records::Outcome::Unknown => {
                    self.stats.unknown_counter_records.count(element.format)
                }
            }
        }
        Ok(produced)
    }
}

#[cfg(test)]
mod tests;
