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
//! `sampler_id` = the full 32-bit source index, `sequence_num` = sample sequence number,
//! `sampling_rate`, `in_if` / `out_if` = interface value with its format in `in_if_format` /
//! `out_if_format` (0 ifIndex, 1 discarded: value = reason, 2 multiple: value = count), `packets` = 1,
//! `bytes` = sampled frame length, all three times = receive time; the flow records fill the rest
//! (see [`flow_records`]). One counter record of a counter sample → one [`CounterRecord`]
//! (`record::counters` documents the layout).
//!
//! # Errors and counts
//! Lengths are checked before use and never trusted past the datagram: a sample running past the
//! datagram or shorter than its fixed part is `BadSampleLength`; a record running past its sample or
//! shorter than its fixed part is `BadRecordLength`; a sample or record count that cannot fit in the
//! bytes is `BadSampleCount` (checked before looping, so a huge count costs nothing). Decoding stops at
//! the first error; records already handed to the sink stay. Unknown sample, flow record and counter
//! record formats are skipped by their length and counted by format in [`SflowStats`].
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
use samples::{CounterSampleHeader, FlowSampleHeader};
use std::collections::HashMap;

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
    /// Count one occurrence of `format`.
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
    datagrams: SequenceTracker,
    /// Sorted by key.
    sources: Vec<SourceState>,
    last_source: usize,
    drops: u64,
}

impl AgentState {
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
                        samples: SequenceTracker::new(REORDER_WINDOW, MAX_GAP),
                        last_drops: None,
                    },
                );
                at
            }
        };
        self.last_source = at;
        self.sources.get_mut(at)
    }
}

/// sFlow decoder state of one worker: sequence trackers per agent and sample source, and counters.
#[derive(Debug, Default)]
pub struct SflowDecoder {
    stats: SflowStats,
    agents: Vec<AgentState>,
    by_agent: HashMap<([u8; 16], u32), usize>,
    /// The agent of the previous datagram (most datagrams come from the agent before them).
    last_agent: Option<usize>,
}

/// Per-datagram values every record of the datagram shares.
struct DatagramContext {
    agent: Option<usize>,
    uptime_ms: u32,
    flow: FlowRecord,
    counters: CounterRecord,
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
                samples.lost += s.samples.counts.lost;
                samples.late += s.samples.counts.late;
                samples.restarts += s.samples.counts.restarts;
            }
            AgentSequences {
                agent_addr: a.agent_addr,
                sub_agent_id: a.sub_agent_id,
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
        let agent = self.agent_index(header.agent, header.sub_agent_id);
        match agent.and_then(|a| self.agents.get_mut(a)) {
            Some(state) => {
                state
                    .datagrams
                    .observe(header.sequence, Some(1), Some(header.uptime_ms));
            }
            None => self.stats.untracked += 1,
        }
        let mut samples = header.samples;
        if header.num_samples as usize > samples.len() / xdr::ELEMENT_HEADER_LEN {
            return Err(ErrorReason::BadSampleCount);
        }

        let mut flow = FlowRecord::zeroed();
        flow.flow_type = FlowType::SflowV5 as u8;
        flow.exporter_addr = header.agent;
        flow.exporter_port = meta.exporter.port();
        flow.observation_domain_id = header.sub_agent_id;
        flow.time_received_ns = meta.received_ns;
        flow.time_flow_start_ns = meta.received_ns;
        flow.time_flow_end_ns = meta.received_ns;
        flow.packets = 1;
        let mut counters = CounterRecord::zeroed();
        counters.time_received_ns = meta.received_ns;
        counters.agent_addr = header.agent;
        counters.sub_agent_id = header.sub_agent_id;
        counters.agent_uptime_ms = header.uptime_ms;
        counters.exporter_port = meta.exporter.port();
        let ctx = DatagramContext {
            agent,
            uptime_ms: header.uptime_ms,
            flow,
            counters,
        };

        let mut produced = 0;
        for _ in 0..header.num_samples {
            let Some((sample, rest)) = xdr::split_element(samples) else {
                return Err(ErrorReason::BadSampleLength);
            };
            samples = rest;
            produced += match sample.format {
                samples::format::FLOW => self.flow_sample(&ctx, sample.body, false, sink)?,
                samples::format::EXPANDED_FLOW => {
                    self.flow_sample(&ctx, sample.body, true, sink)?
                }
                samples::format::COUNTERS => self.counter_sample(&ctx, sample.body, false, sink)?,
                samples::format::EXPANDED_COUNTERS => {
                    self.counter_sample(&ctx, sample.body, true, sink)?
                }
                other => {
                    self.stats.unknown_sample_types.count(other);
                    0
                }
            };
        }
        Ok(produced)
    }

    /// Index of the agent's state, created when there is room.
    #[inline(always)]
    fn agent_index(&mut self, agent_addr: [u8; 16], sub_agent_id: u32) -> Option<usize> {
        if let Some(i) = self.last_agent
            && let Some(a) = self.agents.get(i)
            && a.agent_addr == agent_addr
            && a.sub_agent_id == sub_agent_id
        {
            return Some(i);
        }
        let i = match self.by_agent.get(&(agent_addr, sub_agent_id)) {
            Some(&i) => i,
            None if self.agents.len() >= MAX_AGENTS => return None,
            None => {
                let i = self.agents.len();
                self.agents.push(AgentState {
                    agent_addr,
                    sub_agent_id,
                    datagrams: SequenceTracker::new(REORDER_WINDOW, MAX_GAP),
                    sources: Vec::new(),
                    last_source: 0,
                    drops: 0,
                });
                self.by_agent.insert((agent_addr, sub_agent_id), i);
                i
            }
        };
        self.last_agent = Some(i);
        Some(i)
    }

    /// Track a sample's sequence number (and the agent's drop counter) in its source's space.
    #[inline(always)]
    fn observe_sample(
        &mut self,
        ctx: &DatagramContext,
        key: u64,
        sequence: u32,
        drops: Option<u32>,
    ) {
        let Some(agent) = ctx.agent.and_then(|a| self.agents.get_mut(a)) else {
            self.stats.untracked += 1;
            return;
        };
        let Some(source) = agent.source(key) else {
            self.stats.untracked += 1;
            return;
        };
        let event = source
            .samples
            .observe(sequence, Some(1), Some(ctx.uptime_ms));
        if let Some(now) = drops {
            let dropped = match (source.last_drops, event) {
                // A restarted agent counts drops from zero again.
                (Some(_), SequenceEvent::Restart) => now,
                (Some(last), _) if now >= last => now - last,
                (Some(_), _) => now,
                // Drops before the first sample seen happened before tracking began.
                (None, _) => 0,
            };
            source.last_drops = Some(now);
            agent.drops += u64::from(dropped);
            self.stats.agent_drops += u64::from(dropped);
        }
    }

    #[inline]
    fn flow_sample(
        &mut self,
        ctx: &DatagramContext,
        body: &[u8],
        expanded: bool,
        sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        let (sample, mut records) = FlowSampleHeader::parse(body, expanded)?;
        self.stats.samples_by_type[if expanded { 2 } else { 0 }] += 1;
        if sample.num_records as usize > records.len() / xdr::ELEMENT_HEADER_LEN {
            return Err(ErrorReason::BadSampleCount);
        }
        let mut flow = ctx.flow;
        flow.sequence_num = sample.sequence;
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
        self.observe_sample(ctx, key, sample.sequence, Some(sample.drops));
        sink.flow(&flow);
        Ok(1)
    }

    fn counter_sample(
        &mut self,
        ctx: &DatagramContext,
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
        self.observe_sample(ctx, key, sample.sequence, None);
        let mut template = ctx.counters;
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
