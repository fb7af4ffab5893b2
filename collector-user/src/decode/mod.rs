//! Sans-IO decoders: bytes of one export datagram in, normalized records out.
//!
//! This module owns protocol dispatch ([`Protocol::detect`] reads the version field, so any port may
//! carry any protocol), per-worker decoder state ([`Decoder`]: templates, sequence trackers, sampling
//! rates) and the decode counters. It knows nothing of sockets, threads or ring files: callers hand it
//! a datagram with its [`DatagramMeta`] and a [`RecordSink`].
//!
//! Files: `netflow_v5.rs`, `netflow_v9.rs`, `ipfix.rs` (wire formats, views, encoders; `ipfix::ovs`
//! is Open vSwitch's template family), `flowset.rs` (what v9 and IPFIX share once sets are framed),
//! `template.rs` (compiled templates, the bounded [`template::TemplateCache`], early data), `ie.rs`
//! (information elements → record fields), `sampling.rs` (learned and configured rates), `time.rs`
//! (exporter time bases), `sequence.rs` (loss accounting), `sflow.rs`. Caps and configured rates
//! come in a [`DecoderConfig`]; per-exporter loss is read with [`Decoder::sequence_counts`].
//!
//! Templates are per worker and scoped as the RFCs say: IPFIX by transport session (exporter
//! address *and port*, RFC 7011 §8), observation domain and id; NetFlow v9 by exporter address,
//! source id and id (RFC 3954 §5.1). IPFIX exporters that share an address (nodes behind a SNAT'ing
//! Service, softflowd next to OVS on one host) all use domain 0 and template 256 and up, and keep
//! their own templates. Sequence spaces follow the same scopes: IPFIX numbers per transport
//! session and domain, NetFlow per address and engine or source id ([`SequenceSpace`]); a space
//! silent for the sessions' idle time is forgotten when new ones come, its counts kept. Learned
//! sampling rates and per-exporter metrics are per address.
//!
//! Open vSwitch sends one data record per IPFIX message, so the per-message path is its per-record
//! cost. A data message costs one hash lookup: its template, keyed by transport session and
//! template key. The template's session also notes where its sequence space is kept (an index the
//! decoder checks against the space's key before use, so a stale note costs a lookup, never a
//! wrong count). Map keys hash as a few 64-bit words ([`template::WordHasher`]). A message skips the
//! sampling lookup when no rate is configured or learned, the early-data scan when none is held,
//! and the idle-session sweep when none is due.

pub mod error;
pub mod flowset;
pub mod ie;
pub mod ipfix;
pub mod ipfix_ovs;
pub mod netflow_v5;
pub mod netflow_v9;
pub mod packet_header;
#[cfg(test)]
mod proptests;
pub mod sampling;
pub mod sequence;
pub mod sflow;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod time;

pub use error::ErrorReason;

use crate::record::{CounterRecord, FlowRecord};
use flowset::{Env, Outcome, TemplatedState};
use sampling::{ConfiguredRate, SamplerKey, SamplingTable};
use sequence::{DomainSequence, ExporterCounter, SequenceCounts, SequenceTracker};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use template::{CacheLimits, EarlyData, EarlyLimits, FastMap, SessionKey, TemplateCache};

/// The export protocols, told apart by the version field at the start of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    NetflowV5,
    NetflowV9,
    Ipfix,
    SflowV5,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::NetflowV5,
        Protocol::NetflowV9,
        Protocol::Ipfix,
        Protocol::SflowV5,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Stable name used in metrics and summaries (goflow2's `type` values).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::NetflowV5 => "NETFLOW_V5",
            Protocol::NetflowV9 => "NETFLOW_V9",
            Protocol::Ipfix => "IPFIX",
            Protocol::SflowV5 => "SFLOW_5",
        }
    }

    /// Index into per-protocol counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Pick the protocol from the version field: a 16-bit 5, 9 or 10 for NetFlow/IPFIX; a 32-bit 5
    /// for sFlow (whose first 16 bits are therefore 0).
    pub fn detect(datagram: &[u8]) -> Result<Protocol, ErrorReason> {
        let Some(&[a, b, c, d]) = datagram.first_chunk::<4>() else {
            return Err(ErrorReason::TooShort);
        };
        match (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])) {
            (5, _) => Ok(Protocol::NetflowV5),
            (9, _) => Ok(Protocol::NetflowV9),
            (10, _) => Ok(Protocol::Ipfix),
            (0, 5) => Ok(Protocol::SflowV5),
            _ => Err(ErrorReason::UnknownVersion),
        }
    }
}

/// Where and when a datagram came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramMeta {
    /// The exporter's address and UDP source port.
    pub exporter: SocketAddr,
    /// Receive time (capture time in replay), ns since the Unix epoch.
    pub received_ns: u64,
}

/// Receives decoded records. The ring writer, `collector replay` and tests implement it.
pub trait RecordSink {
    fn flow(&mut self, record: &FlowRecord);
    fn counters(&mut self, record: &CounterRecord);
}

/// A sink that keeps every record in memory (tests, replay, small tools).
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub flows: Vec<FlowRecord>,
    pub counters: Vec<CounterRecord>,
}

impl RecordSink for Collected {
    fn flow(&mut self, record: &FlowRecord) {
        self.flows.push(*record);
    }
    fn counters(&mut self, record: &CounterRecord) {
        self.counters.push(*record);
    }
}

/// Counts the records (flow and counter) passed on to the sink it wraps.
struct Tally<'a, S> {
    sink: &'a mut S,
    records: u32,
    /// Units of the exporter's sequence numbers the datagram carried ([`Counted::sequence_units`]).
    sequence_units: u32,
}

impl<S: RecordSink> RecordSink for Tally<'_, S> {
    #[inline(always)]
    fn flow(&mut self, record: &FlowRecord) {
        self.records += 1;
        self.sink.flow(record);
    }
    #[inline(always)]
    fn counters(&mut self, record: &CounterRecord) {
        self.records += 1;
        self.sink.counters(record);
    }
}

/// What one datagram counts for besides its errors ([`Decoder::decode_counted`]). 32 bits
/// each: a datagram holds at most 64 KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Flow and counter records handed to the sink.
    pub records: u32,
    /// Units of the exporter's sequence numbers the datagram carried: its flows (v5), 1 (a v9
    /// export packet, an sFlow datagram), its data records, options records included (IPFIX:
    /// those read before any problem; a set held until its template arrives counts none). 0 when
    /// a v5, v9 or IPFIX header could not be read; every sFlow datagram counts 1.
    pub sequence_units: u32,
}

/// Decode counters of one worker.
#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    /// Datagrams handed to the decoder, by protocol (undetectable ones are only in `errors`).
    pub datagrams: [u64; Protocol::COUNT],
    /// Records produced, by protocol.
    pub records: [u64; Protocol::COUNT],
    /// Datagrams, sets or records refused or skipped, by reason. Template evictions
    /// (`template_evicted`), data sets without a template (`template_missing`) and early data lost
    /// (`early_data_dropped`) are counted here too.
    pub errors: [u64; ErrorReason::COUNT],
    /// Templates compiled and stored (redefinitions included).
    pub templates_learned: u64,
    /// Templates that replaced one with the same key.
    pub templates_redefined: u64,
    /// Redefinitions with a different layout within one transport session (an exporter whose
    /// configuration changed; a steady stream means something resends conflicting templates).
    pub templates_changed: u64,
    /// Templates removed by withdrawal records.
    pub templates_withdrawn: u64,
    /// Templates forgotten with a transport session idle for longer than
    /// [`template::CacheLimits::session_idle_ns`].
    pub templates_expired: u64,
    /// Templates in the cache now (gauge).
    pub template_cache_templates: u64,
    /// Bytes accounted to the template cache now (gauge).
    pub template_cache_bytes: u64,
    /// Data sets held because their template was missing.
    pub early_data_held: u64,
    /// Held data sets decoded after their template arrived.
    pub early_data_replayed: u64,
    /// Bytes of early data held now (gauge).
    pub early_data_bytes: u64,
    /// Options data records read (v9 / IPFIX).
    pub options_records: u64,
    /// Sampling rates learned or updated from options data and v5 headers.
    pub sampling_rates_learned: u64,
    /// Sampling rates not learned because the table was full.
    pub sampling_rates_refused: u64,
    /// systemInitTimeMilliseconds (IPFIX 160) from options records not kept because the table of
    /// (session, domain) init times was full ([`flowset::MAX_INIT_TIMES`]): that exporter's
    /// sysUpTime-relative flow times (21/22) stay unknown (0).
    pub init_times_refused: u64,
    /// Sequence spaces not tracked because the tracker table was full.
    pub sequence_spaces_refused: u64,
    /// Sequence spaces forgotten after going idle (their counts are kept,
    /// [`Decoder::retired_sequence_counts`]).
    pub sequence_spaces_forgotten: u64,
}

impl DecodeStats {
    pub fn count_error(&mut self, reason: ErrorReason) {
        self.errors[reason.index()] += 1;
    }
}

/// Decoder settings: cache and early-data caps, configured sampling rates.
#[derive(Clone, Debug, Default)]
pub struct DecoderConfig {
    pub template_limits: CacheLimits,
    pub early_limits: EarlyLimits,
    /// Configured rates by exporter prefix (longest match); see [`sampling`].
    pub sampling: Vec<ConfiguredRate>,
}

/// One sequence space: an exporter, its protocol and its domain (v5 engine, v9 source id, IPFIX
/// observation domain). IPFIX numbers per transport session (RFC 7011 §3.1: the records sent in
/// one stream from one observation domain), so its spaces are also told apart by the exporter's
/// source port: nodes behind one SNAT'ing address, each with its own port, keep their own counts.
/// NetFlow numbers per device (address and engine or source id, RFC 3954 §5.1): port 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceSpace {
    pub exporter: IpAddr,
    /// The exporter's source port for IPFIX, 0 for NetFlow.
    pub port: u16,
    pub protocol: Protocol,
    pub domain: u32,
}

impl Hash for SequenceSpace {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let protocol = self.protocol.index() as u64;
        template::hash_addr(
            self.exporter,
            u64::from(self.domain) | protocol << 32 | u64::from(self.port) << 40,
            state,
        );
    }
}

/// Most sequence spaces tracked per worker.
pub const MAX_SEQUENCE_SPACES: usize = 1 << 16;

/// Most exporter addresses whose forgotten spaces' counts are kept apart
/// ([`Decoder::retired_sequence_counts`]); the counts of further ones are kept together, under
/// the unspecified address.
pub const MAX_RETIRED_EXPORTERS: usize = 1 << 16;

/// All decoder state of one worker. Not shared between threads.
#[derive(Debug, Default)]
pub struct Decoder {
    pub stats: DecodeStats,
    sflow: sflow::SflowDecoder,
    templated: TemplatedState,
    sampling: SamplingTable,
    /// Index in `spaces` of each sequence space.
    sequences: FastMap<SequenceSpace, u32>,
    /// Each space with its tracker and, for IPFIX, the index of its exporter's counter in
    /// `exporter_counters` (so a message costs one lookup, or none when its template session
    /// noted the index: [`template::TemplateCache::get_noted`]). A space idle for the template
    /// sessions' idle time is forgotten when new spaces come ([`Decoder::forget_idle_spaces`]),
    /// its counts kept in `retired`.
    spaces: Vec<(SequenceSpace, TrackedSpace)>,
    /// Per IPFIX transport session, what ties its domains' sequence numbers together (one per
    /// session with a sequence space).
    exporter_counters: Vec<ExporterCounter>,
    /// Index in `exporter_counters` of each IPFIX transport session (used when a space is created).
    ipfix_exporters: FastMap<SessionKey, u32>,
    /// Counts of forgotten spaces, by exporter address.
    retired: FastMap<IpAddr, SequenceCounts>,
    /// How long a space may be idle (by receive time) before it may be forgotten.
    space_idle_ns: u64,
    /// Receive time of the last look for idle spaces.
    spaces_swept_ns: u64,
}

/// One tracked sequence space.
#[derive(Clone, Copy, Debug)]
struct TrackedSpace {
    sequence: DomainSequence,
    /// Index of the exporter's [`ExporterCounter`] (IPFIX), `None` for the other protocols.
    counter: Option<u32>,
    /// Receive time of its last datagram.
    last_seen_ns: u64,
    /// The source port of its last datagram ([`SequenceCounts::source_port_changes`]).
    source_port: u16,
}

impl Decoder {
    pub fn new() -> Self {
        Self::with_config(DecoderConfig::default())
    }

    pub fn with_config(config: DecoderConfig) -> Self {
        Decoder {
            templated: TemplatedState::new(
                TemplateCache::new(config.template_limits),
                EarlyData::new(config.early_limits),
            ),
            sampling: SamplingTable::new(config.sampling),
            space_idle_ns: config.template_limits.session_idle_ns,
            ..Default::default()
        }
    }

    /// The counts (loss, late, restarts, source port changes) of each sequence space tracked now.
    pub fn sequence_counts(&self) -> impl Iterator<Item = (SequenceSpace, SequenceCounts)> + '_ {
        self.spaces
            .iter()
            .map(|(k, s)| (*k, s.sequence.tracker.counts))
    }

    /// The counts of the sequence spaces forgotten after going idle, by exporter address (those
    /// of addresses past [`MAX_RETIRED_EXPORTERS`] under the unspecified address): with
    /// [`Decoder::sequence_counts`], every count there ever was.
    pub fn retired_sequence_counts(&self) -> impl Iterator<Item = (IpAddr, SequenceCounts)> + '_ {
        self.retired.iter().map(|(a, c)| (*a, *c))
    }

    /// The template cache (sizes for metrics; tests).
    pub fn templates(&self) -> &TemplateCache {
        &self.templated.templates
    }

    /// Learned and configured sampling rates.
    pub fn sampling(&self) -> &SamplingTable {
        &self.sampling
    }

    /// Replace the configured sampling rates (SIGHUP reload); learned rates are kept.
    pub fn set_configured_sampling(&mut self, configured: Vec<ConfiguredRate>) {
        self.sampling.set_configured(configured);
    }

    /// Age out data sets waiting for templates, and idle sessions' templates, by the clock
    /// (`now_ns`, the receive-time clock): a worker calls this now and then, so that what an
    /// exporter which went quiet left behind is counted and freed without a message to do it.
    pub fn housekeeping(&mut self, now_ns: u64) {
        self.templated.housekeeping(now_ns, &mut self.stats);
        self.refresh_gauges();
    }

    /// The decoder is done (the worker stops, the capture ended): data sets still waiting for
    /// their templates are dropped and counted as `early_data_dropped`, so that every set held
    /// is either decoded or counted.
    pub fn finish(&mut self) {
        self.templated.finish(&mut self.stats);
        self.refresh_gauges();
    }

    /// Copy the template cache's and the early data's sizes into the stats when they changed.
    #[inline]
    fn refresh_gauges(&mut self) {
        if self.templated.take_gauges_changed() {
            self.stats.template_cache_templates = self.templated.templates.len() as u64;
            self.stats.template_cache_bytes = self.templated.templates.bytes() as u64;
            self.stats.early_data_bytes = self.templated.early.bytes() as u64;
        }
    }

    /// The sFlow decoder: its counters (`stats()`) and per-agent sequence counts (`agents()`).
    pub fn sflow(&self) -> &sflow::SflowDecoder {
        &self.sflow
    }

    /// Decode one datagram, handing every record to `sink`.
    ///
    /// Records decoded before a malformed part are kept and counted in `stats.records`; the error
    /// names the first problem that stopped decoding and has already been counted in
    /// [`Decoder::stats`].
    pub fn decode(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), ErrorReason> {
        self.decode_counted(meta, datagram, sink).1
    }

    /// [`Decoder::decode`], also returning what the datagram counts for: the records (flow and
    /// counter) it handed to `sink`, failed datagrams included, and the units of its exporter's
    /// sequence numbers it carried.
    pub fn decode_counted(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> (Counted, Result<(), ErrorReason>) {
        let protocol = match Protocol::detect(datagram) {
            Ok(protocol) => protocol,
            Err(reason) => {
                self.stats.count_error(reason);
                return (Counted::default(), Err(reason));
            }
        };
        self.stats.datagrams[protocol.index()] += 1;
        let mut tally = Tally {
            sink,
            records: 0,
            sequence_units: 0,
        };
        let result = self.decode_protocol(protocol, meta, datagram, &mut tally);
        // Every record handed to the sink is counted, also when the datagram failed partway.
        self.stats.records[protocol.index()] += u64::from(tally.records);
        if let Err(reason) = result {
            self.stats.count_error(reason);
        }
        let counted = Counted {
            records: tally.records,
            sequence_units: tally.sequence_units,
        };
        (counted, result)
    }

    fn decode_protocol<S: RecordSink>(
        &mut self,
        protocol: Protocol,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut Tally<'_, S>,
    ) -> Result<(), ErrorReason> {
        match protocol {
            // v5 hands all of a datagram's records or none: counted once, not per record.
            Protocol::NetflowV5 => {
                let outcome = self.decode_v5(meta, datagram, sink.sink)?;
                sink.records += outcome.records;
                sink.sequence_units = outcome.records;
                match outcome.trailing_bytes {
                    0 => Ok(()),
                    _ => Err(ErrorReason::TrailingBytes),
                }
            }
            Protocol::SflowV5 => {
                sink.sequence_units = 1;
                self.sflow.decode(meta, datagram, sink)?;
                Ok(())
            }
            Protocol::NetflowV9 | Protocol::Ipfix => {
                let mut env = Env {
                    sampling: &mut self.sampling,
                    stats: &mut self.stats,
                    sink,
                };
                let mut outcome = Outcome::new(0, 0, None);
                let decoded = if protocol == Protocol::Ipfix {
                    ipfix::decode(&mut self.templated, meta, datagram, &mut env, &mut outcome)
                } else {
                    netflow_v9::decode(&mut self.templated, meta, datagram, &mut env, &mut outcome)
                };
                self.refresh_gauges();
                decoded?;
                sink.sequence_units = match protocol {
                    Protocol::Ipfix => outcome.data_records,
                    _ => 1,
                };
                self.observe_message_sequence(protocol, meta, &outcome);
                match outcome.error {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                }
            }
        }
    }

    /// Decode a v5 datagram: the records handed to `sink`, and the bytes after them.
    fn decode_v5(
        &mut self,
        meta: &DatagramMeta,
        datagram: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<netflow_v5::Outcome, ErrorReason> {
        let exporter = meta.exporter.ip();
        let sampling = &mut self.sampling;
        let stats = &mut self.stats;
        let outcome = netflow_v5::decode(
            meta,
            datagram,
            |h| {
                let interval = u32::from(h.sampling_interval());
                let key = SamplerKey {
                    exporter,
                    domain: h.domain(),
                    sampler: 0,
                };
                if interval != 0 && sampling.learned(key) != Some(interval) {
                    if sampling.learn(key, interval) {
                        stats.sampling_rates_learned += 1;
                    } else {
                        stats.sampling_rates_refused += 1;
                    }
                }
                let rates = sampling.rates_for(exporter, h.domain());
                let exported = (interval != 0).then_some(interval);
                sampling.resolve(&rates, exporter, h.domain(), 0, exported)
            },
            sink,
        )?;
        let space = SequenceSpace {
            exporter,
            port: 0,
            protocol: Protocol::NetflowV5,
            domain: outcome.header.domain(),
        };
        let seen = Seen {
            sequence: outcome.header.flow_sequence,
            span: Some(outcome.records),
            options: 0,
            uptime_ms: Some(outcome.header.sys_uptime_ms),
            now_ns: meta.received_ns,
            source_port: meta.exporter.port(),
        };
        self.observe_sequence(space, seen);
        Ok(outcome)
    }

    /// Judge a v9 / IPFIX message's sequence number. Its template session noted where its
    /// sequence space was, when one of its data sets found a template: the note may be stale
    /// and is used only when that space is this message's; otherwise the space is looked up and
    /// noted again.
    #[inline(always)]
    fn observe_message_sequence(
        &mut self,
        protocol: Protocol,
        meta: &DatagramMeta,
        outcome: &Outcome,
    ) {
        let port = match protocol {
            Protocol::Ipfix => meta.exporter.port(),
            _ => 0,
        };
        if let Some(noted) = self.templated.sequence_slot
            && let Some((key, state)) = self.spaces.get_mut(noted.sequence_slot as usize)
            && key.domain == outcome.domain
            && key.port == port
            && key.protocol == protocol
            && key.exporter == meta.exporter.ip()
        {
            let counter = state
                .counter
                .and_then(|i| self.exporter_counters.get_mut(i as usize));
            state.observe(counter, Seen::of_message(meta, outcome));
            return;
        }
        self.observe_message_sequence_unnoted(protocol, port, meta, outcome);
    }

    /// [`Decoder::observe_message_sequence`] without a usable note: look the space up, and note
    /// where it is with the message's template session.
    #[cold]
    #[inline(never)]
    fn observe_message_sequence_unnoted(
        &mut self,
        protocol: Protocol,
        port: u16,
        meta: &DatagramMeta,
        outcome: &Outcome,
    ) {
        let space = SequenceSpace {
            exporter: meta.exporter.ip(),
            port,
            protocol,
            domain: outcome.domain,
        };
        self.observe_sequence(space, Seen::of_message(meta, outcome));
        if let Some(noted) = self.templated.sequence_slot
            && let Some(&slot) = self.sequences.get(&space)
        {
            self.templated
                .templates
                .note_sequence_slot(noted.session, slot);
        }
    }

    /// Judge one datagram's sequence number in its space: one lookup when the space is known.
    #[inline]
    fn observe_sequence(&mut self, space: SequenceSpace, seen: Seen) {
        let Some((_, state)) = self
            .sequences
            .get(&space)
            .and_then(|&slot| self.spaces.get_mut(slot as usize))
        else {
            self.first_in_space(space, seen);
            return;
        };
        let counter = state
            .counter
            .and_then(|i| self.exporter_counters.get_mut(i as usize));
        state.observe(counter, seen);
    }

    /// [`Decoder::observe_sequence`] for a space not tracked yet: track it with its first
    /// datagram, unless the table is full even after idle spaces are forgotten. New spaces are
    /// when the table grows, so that is when idle ones are looked for (at most once a minute
    /// unless the table is full).
    #[cold]
    #[inline(never)]
    fn first_in_space(&mut self, space: SequenceSpace, seen: Seen) {
        let now_ns = seen.now_ns;
        let full = self.spaces.len() >= MAX_SEQUENCE_SPACES;
        if full || now_ns.saturating_sub(self.spaces_swept_ns) >= template::IDLE_SWEEP_NS {
            self.forget_idle_spaces(now_ns);
        }
        if self.spaces.len() >= MAX_SEQUENCE_SPACES {
            self.stats.sequence_spaces_refused += 1;
            return;
        }
        // v5 counts flows (30 per datagram), IPFIX data records, v9 packets.
        let (window, max_gap) = match space.protocol {
            Protocol::NetflowV9 => (100, 1_000_000),
            _ => (3_000, 10_000_000),
        };
        let counter = match space.protocol {
            Protocol::Ipfix => {
                let next = self.exporter_counters.len() as u32;
                let session = SessionKey(SocketAddr::new(space.exporter, space.port));
                let index = *self.ipfix_exporters.entry(session).or_insert(next);
                if index == next {
                    self.exporter_counters.push(ExporterCounter::default());
                }
                Some(index)
            }
            _ => None,
        };
        let mut state = TrackedSpace {
            sequence: DomainSequence::new(SequenceTracker::new(window, max_gap)),
            counter,
            last_seen_ns: now_ns,
            source_port: seen.source_port,
        };
        let counter = counter.and_then(|i| self.exporter_counters.get_mut(i as usize));
        state.observe(counter, seen);
        self.sequences.insert(space, self.spaces.len() as u32);
        self.spaces.push((space, state));
    }

    /// Forget the sequence spaces that saw no datagram for the idle time, keeping their counts by
    /// exporter address, and the IPFIX sessions' counters no space uses any more. The spaces left
    /// move to new slots; notes of the old ones are checked before use and replaced.
    fn forget_idle_spaces(&mut self, now_ns: u64) {
        self.spaces_swept_ns = now_ns;
        let idle = |s: &TrackedSpace| now_ns.saturating_sub(s.last_seen_ns) > self.space_idle_ns;
        if !self.spaces.iter().any(|(_, s)| idle(s)) {
            return;
        }
        let spaces = std::mem::take(&mut self.spaces);
        let counters = std::mem::take(&mut self.exporter_counters);
        // Old counter index → new one.
        let mut moved: Vec<Option<u32>> = vec![None; counters.len()];
        self.sequences.clear();
        self.ipfix_exporters.clear();
        for (space, mut state) in spaces {
            if idle(&state) {
                let at = if self.retired.len() < MAX_RETIRED_EXPORTERS
                    || self.retired.contains_key(&space.exporter)
                {
                    space.exporter
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                };
                let retired = self.retired.entry(at).or_default();
                retired.add(&state.sequence.tracker.counts);
                self.stats.sequence_spaces_forgotten += 1;
                continue;
            }
            state.counter = state.counter.and_then(|old| {
                let slot = moved.get_mut(old as usize)?;
                if slot.is_none() {
                    let index = self.exporter_counters.len() as u32;
                    self.exporter_counters
                        .push(counters.get(old as usize).copied().unwrap_or_default());
                    let session = SessionKey(SocketAddr::new(space.exporter, space.port));
                    self.ipfix_exporters.insert(session, index);
                    *slot = Some(index);
                }
                *slot
            });
            self.sequences.insert(space, self.spaces.len() as u32);
            self.spaces.push((space, state));
        }
    }
}

/// What a datagram says of its sequence space, and when it came.
#[derive(Clone, Copy)]
struct Seen {
    sequence: u32,
    /// How far it advances the space (`None`: unknown), and the IPFIX options records in that.
    span: Option<u32>,
    options: u32,
    /// The exporter's uptime, when the protocol sends one.
    uptime_ms: Option<u32>,
    /// Its receive time.
    now_ns: u64,
    /// The exporter's source port.
    source_port: u16,
}

impl Seen {
    #[inline(always)]
    fn of_message(meta: &DatagramMeta, outcome: &Outcome) -> Seen {
        Seen {
            sequence: outcome.sequence,
            span: outcome.span,
            options: outcome.options_records,
            uptime_ms: outcome.uptime_ms,
            now_ns: meta.received_ns,
            source_port: meta.exporter.port(),
        }
    }
}

impl TrackedSpace {
    #[inline(always)]
    fn observe(&mut self, counter: Option<&mut ExporterCounter>, seen: Seen) {
        self.last_seen_ns = seen.now_ns;
        if seen.source_port != self.source_port {
            self.source_port = seen.source_port;
            self.sequence.tracker.counts.source_port_changes += 1;
        }
        let Seen {
            sequence,
            span,
            options,
            uptime_ms,
            ..
        } = seen;
        self.sequence
            .observe(counter, sequence, (span, options), uptime_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;
    use std::collections::BTreeMap;

    #[test]
    fn records_before_a_failure_are_counted() {
        // An sFlow flow datagram cut inside its last sample: the samples before it are decoded.
        let mut datagram = sflow::emit::ovs_sample_datagrams().swap_remove(0);
        datagram.truncate(datagram.len() - 3);
        let mut dec = Decoder::new();
        let (sink, result) = test_support::run(&mut dec, "192.0.2.1:6343", &datagram);
        assert!(result.is_err());
        let produced = (sink.flows.len() + sink.counters.len()) as u64;
        assert!(produced > 0, "some samples precede the cut");
        assert_eq!(dec.stats.records[Protocol::SflowV5.index()], produced);
    }

    #[test]
    fn sequence_units_follow_each_protocols_numbering() {
        // What a datagram adds to its exporter's sequence units: v5 its flows, v9 one export
        // packet, IPFIX its data records, sFlow one datagram.
        let counted = |datagram: &[u8]| {
            let mut dec = Decoder::new();
            let meta = test_support::meta("192.0.2.1:2055");
            let (counted, result) = dec.decode_counted(&meta, datagram, &mut Collected::default());
            assert_eq!(result, Ok(()));
            (counted.records, counted.sequence_units)
        };
        let header = netflow_v5::HeaderRepr::default();
        let records = [netflow_v5::RecordRepr::default(); 3];
        let mut v5 = Vec::new();
        netflow_v5::emit(&header, &records, &mut v5);
        assert_eq!(counted(&v5), (3, 3));
        let t = ipfix::TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![template::Field::iana(8, 4), template::Field::iana(12, 4)],
        };
        let mut w = netflow_v9::PacketWriter::new(0, 1_700_000_000, 0, 0);
        w.templates(std::slice::from_ref(&t))
            .data(&t, &[FlowRecord::zeroed(); 2], 0);
        assert_eq!(counted(&w.finish()), (2, 1));
        assert_eq!(counted(&ipfix_message(0, 0, 4)), (4, 4));
        let sflow = sflow::emit::ovs_sample_datagrams().swap_remove(0);
        let (records, units) = counted(&sflow);
        assert!(records > 1);
        assert_eq!(units, 1);
    }

    /// An IPFIX message: template 256 (two IPv4 addresses) and `n` records of it.
    fn ipfix_message(seq: u32, domain: u32, n: usize) -> Vec<u8> {
        use ipfix::{MessageWriter, TemplateSpec};
        let t = TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![template::Field::iana(8, 4), template::Field::iana(12, 4)],
        };
        let mut w = MessageWriter::new(1_700_000_000, seq, domain);
        w.templates(std::slice::from_ref(&t)).data(
            &t,
            &vec![FlowRecord::zeroed(); n],
            &ie::EncodeContext::default(),
        );
        w.finish()
    }

    #[test]
    fn each_ipfix_exporter_has_its_own_counter_over_its_domains() {
        // Two exporters number their domains 5 and 0 with one counter each, interleaved; a third
        // numbers its domains on its own. No loss anywhere: each space reaches its exporter's
        // counter, never another's.
        let mut dec = Decoder::new();
        let (a, b, c) = ("192.0.2.1:4739", "192.0.2.2:4739", "192.0.2.3:4739");
        for (seq, domain, n) in [(0, 5, 3), (3, 0, 1), (4, 5, 2), (6, 0, 1), (7, 5, 4)] {
            for exporter in [a, b] {
                let (_, result) =
                    test_support::run(&mut dec, exporter, &ipfix_message(seq, domain, n));
                assert_eq!(result, Ok(()));
            }
        }
        for (seq, domain) in [(0, 5), (0, 0), (1, 5), (1, 0), (2, 5)] {
            let (_, result) = test_support::run(&mut dec, c, &ipfix_message(seq, domain, 1));
            assert_eq!(result, Ok(()));
        }
        let mut counts: Vec<_> = dec
            .sequence_counts()
            .map(|(space, n)| {
                (
                    space.exporter.to_string(),
                    space.domain,
                    n.lost + n.late + n.restarts,
                )
            })
            .collect();
        counts.sort();
        let clean = |e: &str| [(e.to_string(), 0, 0), (e.to_string(), 5, 0)];
        assert_eq!(
            counts,
            [clean("192.0.2.1"), clean("192.0.2.2"), clean("192.0.2.3")].concat()
        );
        // A message lost by exporter b alone (11..=12) is b's loss, counted once.
        for (exporter, seq) in [(b, 13), (a, 11)] {
            let (_, result) = test_support::run(&mut dec, exporter, &ipfix_message(seq, 5, 1));
            assert_eq!(result, Ok(()));
        }
        let lost: Vec<_> = dec
            .sequence_counts()
            .filter(|(_, n)| n.lost != 0)
            .map(|(space, n)| (space.exporter.to_string(), space.domain, n.lost))
            .collect();
        assert_eq!(lost, [("192.0.2.2".to_string(), 5, 2)]);
    }

    #[test]
    fn ipfix_exporters_behind_one_address_keep_their_own_sequences() {
        // Three OVS nodes behind one SNAT'ing address: each sends from its own port, all in domain
        // 0, each numbering its own records, their messages interleaved. IPFIX numbers per
        // transport session: each is judged on its own, nothing lost, late or restarted.
        let mut dec = Decoder::new();
        let nodes = ["192.0.2.1:50001", "192.0.2.1:50002", "192.0.2.1:50003"];
        for round in 0..5 {
            for (i, node) in (0..).zip(nodes) {
                let message = ipfix_message(1000 * i + 2 * round, 0, 2);
                assert_eq!(test_support::run(&mut dec, node, &message).1, Ok(()));
            }
        }
        let spaces: Vec<_> = dec.sequence_counts().map(|(s, n)| (s.port, n)).collect();
        let clean = SequenceCounts::default();
        assert_eq!(spaces, [(50001, clean), (50002, clean), (50003, clean)]);
        // NetFlow v9 numbers per device (address and source id): two ports, one space, whose
        // datagrams switching ports are counted (the sign of a shared address).
        let t = ipfix::TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![template::Field::iana(8, 4)],
        };
        for (port, seq) in [(2055, 0), (2056, 1), (2055, 2)] {
            let mut w = netflow_v9::PacketWriter::new(1000, 1_700_000_000, seq, 7);
            w.templates(std::slice::from_ref(&t))
                .data(&t, &[FlowRecord::zeroed()], 0);
            let exporter = format!("192.0.2.1:{port}");
            assert_eq!(
                test_support::run(&mut dec, &exporter, &w.finish()).1,
                Ok(())
            );
        }
        let v9: Vec<_> = dec
            .sequence_counts()
            .filter(|(s, _)| s.protocol == Protocol::NetflowV9)
            .map(|(s, n)| (s.port, s.domain, n))
            .collect();
        let switched = SequenceCounts {
            source_port_changes: 2,
            ..Default::default()
        };
        assert_eq!(v9, [(0, 7, switched)]);
    }

    #[test]
    fn idle_sequence_spaces_are_forgotten_and_their_counts_kept() {
        // A node restarts and sends from a new port: its old space goes idle. When a new space
        // comes after it has been idle for the sessions' idle time, the old one is forgotten; its
        // counts (3 records lost) stay with its address. Another exporter's two domains, which
        // share its one counter, move to new slots and go on being judged as before.
        let mut dec = Decoder::new();
        let idle = CacheLimits::default().session_idle_ns;
        let t0 = test_support::T0;
        let (old, new, other) = ("192.0.2.1:50001", "192.0.2.1:50002", "192.0.2.9:4739");
        let send = |dec: &mut Decoder, exporter: &str, (seq, domain, n), at: u64| {
            let meta = test_support::meta_at(exporter, at);
            let message = ipfix_message(seq, domain, n);
            assert_eq!(
                dec.decode(&meta, &message, &mut Collected::default()),
                Ok(())
            );
        };
        send(&mut dec, old, (0, 0, 1), t0);
        send(&mut dec, old, (4, 0, 1), t0);
        let t1 = t0 + idle / 2;
        send(&mut dec, other, (0, 5, 3), t1);
        send(&mut dec, other, (3, 0, 1), t1);
        let t2 = t0 + idle + 1;
        send(&mut dec, new, (0, 0, 1), t2);
        assert_eq!(dec.stats.sequence_spaces_forgotten, 1);
        let lost = SequenceCounts {
            lost: 3,
            ..Default::default()
        };
        let retired: Vec<_> = dec.retired_sequence_counts().collect();
        assert_eq!(retired, [("192.0.2.1".parse().unwrap(), lost)]);
        // `other` numbers both its domains with one counter (learned from (4, 5)): no loss.
        send(&mut dec, other, (4, 5, 2), t2);
        send(&mut dec, other, (6, 0, 1), t2);
        send(&mut dec, new, (1, 0, 1), t2);
        let mut spaces: Vec<_> = dec
            .sequence_counts()
            .map(|(s, n)| (s.exporter.to_string(), s.port, s.domain, n))
            .collect();
        spaces.sort_by_key(|s| (s.0.clone(), s.1, s.2));
        let clean = SequenceCounts::default();
        assert_eq!(
            spaces,
            [
                ("192.0.2.1".to_string(), 50002, 0, clean),
                ("192.0.2.9".to_string(), 4739, 0, clean),
                ("192.0.2.9".to_string(), 4739, 5, clean),
            ]
        );
    }

    #[test]
    fn a_full_space_table_makes_room_from_idle_spaces() {
        // The table is full of spaces that are not idle yet: a new one is refused (counted).
        // Moments later they are idle, before the next timed look for idle spaces is due: a new
        // space still gets room, because a full table looks at once.
        let mut dec = Decoder::new();
        let idle = CacheLimits::default().session_idle_ns;
        let t0 = test_support::T0;
        let mut v5 = Vec::new();
        netflow_v5::emit(
            &netflow_v5::HeaderRepr::default(),
            &[netflow_v5::RecordRepr::default()],
            &mut v5,
        );
        let send = |dec: &mut Decoder, n: u32, at: u64| {
            let exporter = SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + n).into(), 2055);
            let meta = DatagramMeta {
                exporter,
                received_ns: at,
            };
            assert_eq!(dec.decode(&meta, &v5, &mut Collected::default()), Ok(()));
        };
        let full = MAX_SEQUENCE_SPACES as u32;
        for n in 0..full {
            send(&mut dec, n, t0);
        }
        send(&mut dec, full, t0 + idle - 30_000_000_000);
        assert_eq!(dec.stats.sequence_spaces_refused, 1);
        send(&mut dec, full, t0 + idle + 1);
        assert_eq!(dec.stats.sequence_spaces_refused, 1);
        assert_eq!(dec.stats.sequence_spaces_forgotten, u64::from(full));
        assert_eq!(dec.sequence_counts().count(), 1);
        assert_eq!(dec.retired_sequence_counts().count(), MAX_RETIRED_EXPORTERS);
    }

    impl Decoder {
        /// The sequence tables agree with each other: each space is found at its slot; an IPFIX
        /// space's counter is its transport session's, and every counter belongs to a session
        /// with a space; other protocols' spaces have none.
        fn check_sequence_tables(&self) {
            assert_eq!(self.sequences.len(), self.spaces.len());
            let mut used = vec![false; self.exporter_counters.len()];
            for (slot, (space, state)) in (0..).zip(&self.spaces) {
                assert_eq!(self.sequences.get(space), Some(&slot), "{space:?}");
                match (space.protocol, state.counter) {
                    (Protocol::Ipfix, Some(c)) => {
                        let session = SessionKey(SocketAddr::new(space.exporter, space.port));
                        assert_eq!(self.ipfix_exporters.get(&session), Some(&c), "{space:?}");
                        used[c as usize] = true;
                    }
                    (Protocol::Ipfix, None) => panic!("IPFIX space without a counter: {space:?}"),
                    (_, counter) => assert_eq!(counter, None, "{space:?}"),
                }
            }
            assert!(used.iter().all(|&u| u), "a counter no space uses");
            assert_eq!(self.ipfix_exporters.len(), self.exporter_counters.len());
        }

        /// Late datagrams, restarts and source port changes so far, live and forgotten spaces
        /// together, by address.
        fn late_and_restarts(&self) -> BTreeMap<IpAddr, (u64, u64, u64)> {
            let mut totals = BTreeMap::new();
            let live = self.sequence_counts().map(|(s, c)| (s.exporter, c));
            for (addr, c) in live.chain(self.retired_sequence_counts()) {
                let t: &mut (u64, u64, u64) = totals.entry(addr).or_default();
                *t = (t.0 + c.late, t.1 + c.restarts, t.2 + c.source_port_changes);
            }
            totals
        }
    }

    /// One message of the sequence-table property: exporter address (192.0.2.x), source port
    /// (4739 + p), protocol (0 v5, 1 v9, 2 IPFIX), domain, sequence step (0–1 next, 2 a gap of
    /// 7, 3 three back) and wait (none, 1 s, a third of the idle time, past it).
    type SequenceMessage = (u8, u16, u8, u32, u8, u8);

    /// After every message of `messages` the sequence tables agree with each other, and no
    /// exporter's late, restart or source port change count has gone down.
    fn sequence_tables_hold_over(messages: Vec<SequenceMessage>) {
        let mut dec = Decoder::new();
        let idle = CacheLimits::default().session_idle_ns;
        let mut now = test_support::T0;
        let mut next: BTreeMap<(u8, u16, u8, u32), u32> = BTreeMap::new();
        let mut before = BTreeMap::new();
        for (addr, port, protocol, domain, step, wait) in messages {
            now += [0, 1_000_000_000, idle / 3, idle + 1][usize::from(wait)];
            let seq = next.entry((addr, port, protocol, domain)).or_insert(1000);
            *seq = match step {
                0 | 1 => *seq,
                2 => seq.wrapping_add(7),
                _ => seq.wrapping_sub(3),
            };
            let sent = *seq;
            let datagram = match protocol {
                0 => {
                    let header = netflow_v5::HeaderRepr {
                        flow_sequence: sent,
                        engine_id: domain as u8,
                        ..Default::default()
                    };
                    let mut out = Vec::new();
                    netflow_v5::emit(&header, &[netflow_v5::RecordRepr::default(); 2], &mut out);
                    *seq = seq.wrapping_add(2);
                    out
                }
                1 => {
                    let t = ipfix::TemplateSpec {
                        id: 256,
                        scope_fields: 0,
                        fields: vec![template::Field::iana(8, 4)],
                    };
                    let mut w = netflow_v9::PacketWriter::new(1000, 1_700_000_000, sent, domain);
                    w.templates(std::slice::from_ref(&t))
                        .data(&t, &[FlowRecord::zeroed()], 0);
                    *seq = seq.wrapping_add(1);
                    w.finish()
                }
                _ => {
                    *seq = seq.wrapping_add(2);
                    ipfix_message(sent, domain, 2)
                }
            };
            let meta = DatagramMeta {
                exporter: SocketAddr::new([192, 0, 2, addr].into(), 4739 + port),
                received_ns: now,
            };
            let (_, result) = dec.decode_counted(&meta, &datagram, &mut Collected::default());
            assert_eq!(result, Ok(()));
            dec.check_sequence_tables();
            let after = dec.late_and_restarts();
            for (addr, (late, restarts, changes)) in &before {
                let (l, r, c) = after.get(addr).copied().unwrap_or_default();
                assert!(
                    l >= *late && r >= *restarts && c >= *changes,
                    "{addr}: {before:?} → {after:?}"
                );
            }
            before = after;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Messages of v5, v9 and IPFIX from three addresses, two ports each, two domains, with
        /// gaps, steps back and time jumps past the idle time: after every message the sequence
        /// tables agree with each other, and no exporter's late, restart or source port change
        /// count ever goes down (they are counters), whatever spaces were forgotten on the way.
        #[test]
        fn sequence_tables_hold_together_as_spaces_come_and_go(
            messages in proptest::collection::vec(
                (0u8..3, 0u16..2, 0u8..3, proptest::sample::select(vec![0u32, 5]), 0u8..4, 0u8..4),
                1..120,
            ),
        ) {
            sequence_tables_hold_over(messages);
        }
    }

    #[test]
    fn sequence_tables_hold_when_a_v9_exporter_steps_back_from_another_port() {
        // Found by the property above: a v9 exporter on one port, then on another three back.
        sequence_tables_hold_over(vec![
            (0, 0, 0, 0, 0, 0),
            (1, 1, 1, 5, 0, 0),
            (1, 0, 1, 5, 3, 0),
            (1, 0, 1, 5, 0, 0),
            (1, 0, 1, 5, 0, 0),
            (1, 0, 1, 5, 0, 0),
        ]);
    }

    #[test]
    fn a_stale_sequence_slot_is_never_used_for_another_space() {
        // Each template session notes where its sequence space is. A note that points at another
        // space (another exporter's, another domain's, or past the end) is checked and replaced:
        // every message is judged in its own space.
        let mut dec = Decoder::new();
        let (a, b) = ("192.0.2.1:4739", "192.0.2.2:4739");
        let session = |e: &str| e.parse::<SocketAddr>().unwrap();
        let send = |dec: &mut Decoder, exporter: &str, seq: u32, domain: u32| {
            let (_, result) = test_support::run(dec, exporter, &ipfix_message(seq, domain, 1));
            assert_eq!(result, Ok(()));
        };
        let noted = |dec: &mut Decoder, exporter: &str| {
            let key = template::TemplateKey {
                version: 10,
                domain: 5,
                id: 256,
            };
            dec.templated
                .templates
                .get_noted(session(exporter), key, 0)
                .map(|(_, noted)| noted)
        };
        send(&mut dec, a, 0, 5);
        send(&mut dec, b, 100, 5);
        send(&mut dec, b, 101, 5);
        let (noted_a, noted_b) = (noted(&mut dec, a).unwrap(), noted(&mut dec, b).unwrap());
        assert_ne!(noted_a.sequence_slot, noted_b.sequence_slot);
        for (wrong, seq) in [(noted_b.sequence_slot, 1), (99, 2)] {
            dec.templated
                .templates
                .note_sequence_slot(noted_a.session, wrong);
            send(&mut dec, a, seq, 5);
            assert_eq!(noted(&mut dec, a), Some(noted_a), "corrected");
        }
        // Another domain of the same session: its own space, noted in turn.
        send(&mut dec, a, 3, 7);
        send(&mut dec, a, 3, 5);
        send(&mut dec, b, 102, 5);
        let judged: Vec<_> = dec
            .sequence_counts()
            .map(|(space, n)| (space.exporter.to_string(), space.domain, n))
            .collect();
        let clean = SequenceCounts::default();
        assert_eq!(
            judged,
            [
                ("192.0.2.1".to_string(), 5, clean),
                ("192.0.2.2".to_string(), 5, clean),
                ("192.0.2.1".to_string(), 7, clean)
            ]
        );
        // b withdraws all its templates: its session is forgotten with its note. Learned again,
        // the new session's note starts at 0 (a's space); b is still judged in its own.
        let mut w = ipfix::MessageWriter::new(1_700_000_000, 103, 5);
        w.withdrawal(ipfix::TEMPLATE_SET, ipfix::TEMPLATE_SET);
        assert_eq!(test_support::run(&mut dec, b, &w.finish()).1, Ok(()));
        assert_eq!(noted(&mut dec, b), None, "session forgotten");
        send(&mut dec, b, 103, 5);
        assert_eq!(
            noted(&mut dec, b).map(|n| n.sequence_slot),
            Some(noted_b.sequence_slot),
            "noted again"
        );
        send(&mut dec, b, 104, 5);
        send(&mut dec, a, 4, 5);
        assert!(
            dec.sequence_counts()
                .all(|(_, n)| n == SequenceCounts::default()),
            "{:?}",
            dec.sequence_counts().collect::<Vec<_>>()
        );
    }

    #[test]
    fn gauges_follow_every_change_of_templates_and_early_data() {
        // Gauges are copied only after a message that changed the cache or the early data; after
        // every kind of change they equal the sizes.
        use ipfix::{MessageWriter, TEMPLATE_SET, TemplateSpec};
        let spec = |id| TemplateSpec {
            id,
            scope_fields: 0,
            fields: vec![template::Field::iana(8, 4), template::Field::iana(12, 4)],
        };
        let message = |f: &dyn Fn(&mut MessageWriter)| {
            let mut w = MessageWriter::new(1_700_000_000, 0, 0);
            f(&mut w);
            w.finish()
        };
        let ctx = ie::EncodeContext::default();
        let rec = [FlowRecord::zeroed()];
        let templates = message(&|w| {
            w.templates(&[spec(256)]);
        });
        let data = |id| {
            message(&|w| {
                w.data(&spec(id), &rec, &ctx);
            })
        };
        let withdrawal = message(&|w| {
            w.withdrawal(TEMPLATE_SET, 256);
        });
        let mut dec = Decoder::new();
        let at = |dec: &mut Decoder, s: u64, bytes: &[u8]| {
            let meta =
                test_support::meta_at("192.0.2.1:4739", test_support::T0 + s * 1_000_000_000);
            let _ = dec.decode(&meta, bytes, &mut Collected::default());
            let sizes = (
                dec.templates().len() as u64,
                dec.templates().bytes() as u64,
                dec.templated.early.bytes() as u64,
            );
            let gauges = (
                dec.stats.template_cache_templates,
                dec.stats.template_cache_bytes,
                dec.stats.early_data_bytes,
            );
            assert_eq!(gauges, sizes, "at {s} s");
            sizes
        };
        assert_eq!(at(&mut dec, 0, &templates).0, 1, "learned");
        assert!(at(&mut dec, 1, &data(257)).2 > 0, "held");
        assert_eq!(at(&mut dec, 2, &data(256)).0, 1, "data only");
        assert_eq!(at(&mut dec, 40, &data(256)).2, 0, "early data aged out");
        assert!(at(&mut dec, 41, &data(257)).2 > 0, "held again");
        let replayed = message(&|w| {
            w.templates(&[spec(257)]);
        });
        let (templates, _, early) = at(&mut dec, 42, &replayed);
        assert_eq!((templates, early), (2, 0), "learned, held data replayed");
        assert_eq!(at(&mut dec, 43, &withdrawal).0, 1, "withdrawn");
        assert_eq!(
            at(&mut dec, 43 + 31 * 60, &data(256)).0,
            0,
            "idle session forgotten"
        );
    }

    #[test]
    fn detect_by_version_field() {
        assert_eq!(Protocol::detect(&[0, 5, 0, 1]), Ok(Protocol::NetflowV5));
        assert_eq!(Protocol::detect(&[0, 9, 0, 1]), Ok(Protocol::NetflowV9));
        assert_eq!(Protocol::detect(&[0, 10, 0, 16]), Ok(Protocol::Ipfix));
        assert_eq!(
            Protocol::detect(&[0, 0, 0, 5, 0, 0, 0, 1]),
            Ok(Protocol::SflowV5)
        );
        assert_eq!(
            Protocol::detect(&[0, 0, 0, 4]),
            Err(ErrorReason::UnknownVersion)
        );
        assert_eq!(Protocol::detect(&[0, 5, 0]), Err(ErrorReason::TooShort));
        assert_eq!(Protocol::detect(&[]), Err(ErrorReason::TooShort));
    }
}
