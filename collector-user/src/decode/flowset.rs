//! What NetFlow v9 and IPFIX have in common once their set framing is parsed: learning and
//! withdrawing templates, decoding data sets through compiled templates, holding data sets whose
//! template is missing and replaying them when it arrives, and learning sampling rates from options
//! records. `netflow_v9.rs` and `ipfix.rs` own their headers and set layouts and call in here.

use super::ie::Extras;
use super::ipfix_ovs;
use super::sampling::{DatagramRates, SamplerKey, SamplingTable};
use super::template::{
    EarlyData, Field, HeldContext, RecordImage, SetTail, Template, TemplateCache, TemplateKey,
    TemplateKind,
};
use super::template::{FastMap, Noted, SessionKey, Step};
use super::time::{ExportClock, TimeKind};
use super::{DecodeStats, ErrorReason, RecordSink};
use crate::record::{FlowRecord, FlowType, ipv4_bytes};
use bytemuck::Zeroable;
use std::net::SocketAddr;
use std::ops::Range;

/// The header facts of one export message that its records inherit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// 9 (NetFlow v9) or 10 (IPFIX).
    pub version: u8,
    pub flow_type: FlowType,
    pub exporter: SocketAddr,
    /// Observation domain (IPFIX) or source id (v9).
    pub domain: u32,
    pub received_ns: u64,
    pub clock: ExportClock,
    pub sequence: u32,
}

impl Message {
    pub fn key(&self, id: u16) -> TemplateKey {
        TemplateKey {
            version: self.version,
            domain: self.domain,
            id,
        }
    }

    /// What scopes this message's templates besides domain and id: for IPFIX the transport
    /// session, source address and port (RFC 7011 §8); for NetFlow v9 the source address alone
    /// (RFC 3954 §5.1: source address and source id tell export streams apart), so the port is 0.
    pub fn template_session(&self) -> SocketAddr {
        match self.version {
            9 => SocketAddr::new(self.exporter.ip(), 0),
            _ => self.exporter,
        }
    }

    /// The record every data record of this message starts from.
    fn base_record(&self) -> FlowRecord {
        let mut rec = FlowRecord::zeroed();
        rec.flow_type = self.flow_type as u8;
        rec.time_received_ns = self.received_ns;
        rec.exporter_addr = match self.exporter {
            SocketAddr::V4(a) => ipv4_bytes(a.ip().octets()),
            SocketAddr::V6(a) => a.ip().octets(),
        };
        rec.exporter_port = self.exporter.port();
        rec.observation_domain_id = self.domain;
        rec.sequence_num = self.sequence;
        rec
    }
}

/// The decoder parts a message needs besides the template state.
pub struct Env<'a, S> {
    pub sampling: &'a mut SamplingTable,
    pub stats: &'a mut DecodeStats,
    pub sink: &'a mut S,
}

impl<S> Env<'_, S> {
    /// Remember the first problem of a message (returned, and counted by the caller) and count the
    /// later ones here, so each is counted once.
    pub fn note(&mut self, first: &mut Option<ErrorReason>, reason: ErrorReason) {
        if first.is_none() {
            *first = Some(reason);
        } else {
            self.stats.count_error(reason);
        }
    }
}

/// Records decoded from one data set (or a template's replayed early data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Flow records handed to the sink.
    pub flows: u32,
    /// Data records read, options records included (IPFIX sequence numbers count these).
    pub data_records: u32,
}

/// Templates and early data of one worker for v9 and IPFIX.
#[derive(Debug, Default)]
pub struct TemplatedState {
    pub templates: TemplateCache,
    pub early: EarlyData,
    /// Template fields being parsed (reused; never shrinks below the largest template seen).
    pub fields: Vec<Field>,
    /// Steps being compiled (reused, as `fields`).
    steps: Vec<Step>,
    replay: Vec<u8>,
    replay_sets: Vec<(HeldContext, Range<usize>)>,
    /// systemInitTimeMilliseconds (160) learned from options records, per (exporter address and
    /// port, domain): the base of IPFIX flowStart/EndSysUpTime (21/22) in data records that do
    /// not carry 160.
    init_times: FastMap<(SessionKey, u32), u64>,
    /// The padded end of the data set being decoded (boxed: 544 bytes, used near set ends only).
    tail: Box<SetTail>,
    /// The template session of the message being decoded and the sequence slot noted with it
    /// ([`TemplateCache::get_noted`]), once one of its data sets found its template.
    pub sequence_slot: Option<Noted>,
    /// Templates or early data changed since the decoder last copied their sizes into its
    /// gauges ([`TemplatedState::take_gauges_changed`]).
    gauges_changed: bool,
}

/// Most (exporter, domain) pairs whose systemInitTimeMilliseconds is remembered; beyond, new ones
/// are not (counted in [`DecodeStats::init_times_refused`]).
pub const MAX_INIT_TIMES: usize = 1 << 16;

impl TemplatedState {
    pub fn new(templates: TemplateCache, early: EarlyData) -> Self {
        TemplatedState {
            templates,
            early,
            ..Default::default()
        }
    }

    /// Start a message: age out early data and idle sessions' templates by its receive time.
    pub fn begin<S>(&mut self, msg: &Message, env: &mut Env<'_, S>) {
        self.sequence_slot = None;
        let dropped = self.early.expire(msg.template_session(), msg.received_ns);
        let expired = self.templates.expire_idle(msg.received_ns);
        self.count_aged(dropped, expired, env.stats);
    }

    /// Count data sets and templates that aged out.
    #[inline]
    fn count_aged(&mut self, dropped: u64, expired: u64, stats: &mut DecodeStats) {
        stats.errors[ErrorReason::EarlyDataDropped.index()] += dropped;
        stats.templates_expired += expired;
        self.gauges_changed |= dropped != 0 || expired != 0;
    }

    /// Age out early data and idle sessions' templates by the clock (`now_ns`), when no message
    /// came to do it ([`TemplatedState::begin`]).
    pub fn housekeeping(&mut self, now_ns: u64, stats: &mut DecodeStats) {
        let dropped = self.early.sweep(now_ns);
        let expired = self.templates.expire_idle(now_ns);
        self.count_aged(dropped, expired, stats);
    }

    /// Drop the data sets still waiting for their templates, counted as
    /// [`ErrorReason::EarlyDataDropped`]: the decoder is done.
    pub fn finish(&mut self, stats: &mut DecodeStats) {
        let dropped = self.early.drop_all();
        self.count_aged(dropped, 0, stats);
    }

    /// Whether the template cache or the early data changed (learned, withdrawn, expired, evicted,
    /// held, replayed, aged out) since the last call: their sizes are then worth copying into the
    /// decoder's gauges. A message that only decodes data changes neither.
    #[inline]
    pub fn take_gauges_changed(&mut self) -> bool {
        std::mem::take(&mut self.gauges_changed)
    }

    /// Compile and store the template `id` made of `self.fields`, then decode early data held for it.
    pub fn learn<S: RecordSink>(
        &mut self,
        msg: &Message,
        id: u16,
        kind: TemplateKind,
        env: &mut Env<'_, S>,
    ) -> Result<(), ErrorReason> {
        self.gauges_changed = true;
        let templates = &self.templates;
        let template = Template::compile_with(kind, &self.fields, &mut self.steps, |steps| {
            templates.shared_steps(steps)
        })?;
        let key = msg.key(id);
        let session = msg.template_session();
        let inserted = self
            .templates
            .insert(session, key, template, msg.received_ns);
        env.stats.templates_learned += 1;
        env.stats.templates_redefined += u64::from(inserted.replaced);
        env.stats.templates_changed += u64::from(inserted.changed);
        env.stats.errors[ErrorReason::TemplateEvicted.index()] += inserted.evicted;

        self.replay.clear();
        self.replay_sets.clear();
        self.early
            .take(session, key, &mut self.replay, &mut self.replay_sets);
        for (ctx, range) in &self.replay_sets {
            let (Some(template), Some(body)) = (
                self.templates.get(session, key, msg.received_ns),
                self.replay.get(range.clone()),
            ) else {
                env.stats.count_error(ErrorReason::EarlyDataDropped);
                continue;
            };
            let held = Message {
                received_ns: ctx.received_ns,
                clock: ctx.clock,
                sequence: ctx.sequence,
                // A v9 session is the address alone: the data may have come from another port.
                exporter: SocketAddr::new(msg.exporter.ip(), ctx.exporter_port),
                ..*msg
            };
            let (_, result) = decode_records(
                template,
                &held,
                body,
                (&mut self.init_times, &mut self.tail),
                env,
            );
            if let Err(reason) = result {
                env.stats.count_error(reason);
            }
            env.stats.early_data_replayed += 1;
        }
        Ok(())
    }

    /// A template record with field count 0: withdraw `id`, or all templates of the set's kind when
    /// `id` is the set id itself (2 data, 3 options; RFC 7011 §8.1).
    pub fn withdraw<S>(
        &mut self,
        msg: &Message,
        id: u16,
        kind: TemplateKind,
        env: &mut Env<'_, S>,
    ) -> Result<(), ErrorReason> {
        self.gauges_changed = true;
        let session = msg.template_session();
        let all_id = match kind {
            TemplateKind::Data => 2,
            TemplateKind::Options => 3,
        };
        if id == all_id {
            let n = self
                .templates
                .withdraw_all(session, msg.version, msg.domain, kind);
            env.stats.templates_withdrawn += n as u64;
            Ok(())
        } else if id >= 256 {
            env.stats.templates_withdrawn +=
                u64::from(self.templates.withdraw(session, msg.key(id)));
            Ok(())
        } else {
            Err(ErrorReason::BadTemplate)
        }
    }

    /// Decode data set `set_id`, or hold it as early data when its template is unknown
    /// (`Err(TemplateMissing)` either way; `EarlyDataDropped` counted when it cannot be held).
    #[inline]
    pub fn data_set<S: RecordSink>(
        &mut self,
        msg: &Message,
        set_id: u16,
        body: &[u8],
        env: &mut Env<'_, S>,
    ) -> (Decoded, Result<(), ErrorReason>) {
        let session = msg.template_session();
        let key = msg.key(set_id);
        if let Some((template, noted)) = self.templates.get_noted(session, key, msg.received_ns) {
            self.sequence_slot = Some(noted);
            return decode_records(
                template,
                msg,
                body,
                (&mut self.init_times, &mut self.tail),
                env,
            );
        }
        let ctx = HeldContext {
            key,
            received_ns: msg.received_ns,
            clock: msg.clock,
            sequence: msg.sequence,
            exporter_port: msg.exporter.port(),
        };
        self.gauges_changed = true;
        if self.early.hold(session, ctx, body) {
            env.stats.early_data_held += 1;
        } else {
            env.stats.count_error(ErrorReason::EarlyDataDropped);
        }
        (Decoded::default(), Err(ErrorReason::TemplateMissing))
    }
}

/// Decode every record of a data set body; trailing bytes shorter than the template's smallest
/// record are padding. Records before an error are kept. Open vSwitch's templates take their
/// layout's loop, inlined here; every other template takes [`decode_general_set`].
#[inline(always)]
fn decode_records<S: RecordSink>(
    template: &Template,
    msg: &Message,
    body: &[u8],
    (init_times, tail): (&mut FastMap<(SessionKey, u32), u64>, &mut SetTail),
    env: &mut Env<'_, S>,
) -> (Decoded, Result<(), ErrorReason>) {
    // An OVS layout is a data template without sampling elements (`ipfix_ovs` tests hold every
    // layout to it): one rate for the whole set.
    if let Some(layout) = template.ovs_layout() {
        let ip = msg.exporter.ip();
        let rates = env.sampling.rates_for(ip, msg.domain);
        let rate = env.sampling.resolve(&rates, ip, msg.domain, 0, None);
        return decode_ovs_records(layout, msg, body, env, rate);
    }
    decode_general_set(template, msg, body, (init_times, tail), env)
}

/// [`decode_records`] for any template but Open vSwitch's.
fn decode_general_set<S: RecordSink>(
    template: &Template,
    msg: &Message,
    body: &[u8],
    (init_times, tail): (&mut FastMap<(SessionKey, u32), u64>, &mut SetTail),
    env: &mut Env<'_, S>,
) -> (Decoded, Result<(), ErrorReason>) {
    let rates = env.sampling.rates_for(msg.exporter.ip(), msg.domain);
    // Records without sampling elements all resolve to the same rate.
    let set_rate =
        (template.kind == TemplateKind::Data && !template.carries_sampling()).then(|| {
            env.sampling
                .resolve(&rates, msg.exporter.ip(), msg.domain, 0, None)
        });
    tail.reset();
    decode_general_records(
        template,
        msg,
        body,
        (init_times, tail),
        env,
        (rates, set_rate),
    )
}

/// The records of a data set through the template's compiled steps (any template but Open
/// vSwitch's): times made absolute, sampling rates resolved, options records learned from.
fn decode_general_records<S: RecordSink>(
    template: &Template,
    msg: &Message,
    body: &[u8],
    (init_times, tail): (&mut FastMap<(SessionKey, u32), u64>, &mut SetTail),
    env: &mut Env<'_, S>,
    (mut rates, set_rate): (DatagramRates, Option<u32>),
) -> (Decoded, Result<(), ErrorReason>) {
    let base = msg.base_record();
    let ip = msg.exporter.ip();
    let uses_uptime = template.start == TimeKind::Uptime || template.end == TimeKind::Uptime;
    let learned_init_ms = match (uses_uptime, msg.clock.uptime_ms) {
        (true, None) => init_times
            .get(&(SessionKey(msg.exporter), msg.domain))
            .copied()
            .unwrap_or(0),
        _ => 0,
    };
    let mut out = Decoded::default();
    let mut rest = body;
    let fresh = template.needs_fresh_record();
    let mut img = RecordImage::new(base);
    while !rest.is_empty() && rest.len() >= template.min_len() {
        if fresh {
            img.rec = base;
        }
        let mut extras = Extras::default();
        let used = match template.decode_record(rest, &mut img, &mut extras, tail) {
            Ok(used) => used,
            Err(reason) => return (out, Err(reason)),
        };
        rest = rest.get(used..).unwrap_or_default();
        out.data_records += 1;
        if extras.skipped || template.skips_fields() {
            env.stats.count_error(ErrorReason::FieldSkipped);
        }
        let rec = &mut img.rec;
        match template.kind {
            TemplateKind::Data => {
                if extras.init_ms == 0 {
                    extras.init_ms = learned_init_ms;
                }
                if template.start != TimeKind::Absent {
                    rec.time_flow_start_ns = msg.clock.absolute_ns(
                        template.start,
                        rec.time_flow_start_ns,
                        extras.init_ms,
                    );
                }
                if template.end != TimeKind::Absent {
                    rec.time_flow_end_ns =
                        msg.clock
                            .absolute_ns(template.end, rec.time_flow_end_ns, extras.init_ms);
                }
                rec.sampling_rate = match set_rate {
                    Some(rate) => rate,
                    None => env.sampling.resolve(
                        &rates,
                        ip,
                        msg.domain,
                        extras.sampler(rec),
                        extras.sampling_rate(),
                    ),
                };
                env.sink.flow(rec);
                out.flows += 1;
            }
            TemplateKind::Options => {
                env.stats.options_records += 1;
                if extras.init_ms != 0 {
                    let key = (SessionKey(msg.exporter), msg.domain);
                    if init_times.len() < MAX_INIT_TIMES || init_times.contains_key(&key) {
                        init_times.insert(key, extras.init_ms);
                    } else {
                        env.stats.init_times_refused += 1;
                    }
                }
                if let Some(rate) = extras.sampling_rate() {
                    let key = SamplerKey {
                        exporter: ip,
                        domain: msg.domain,
                        sampler: extras.sampler(rec),
                    };
                    if env.sampling.learn(key, rate) {
                        env.stats.sampling_rates_learned += 1;
                    } else {
                        env.stats.sampling_rates_refused += 1;
                    }
                    rates = env.sampling.rates_for(ip, msg.domain);
                }
            }
        }
    }
    (out, Ok(()))
}

/// The records of a data set whose template is one of Open vSwitch's ([`ipfix_ovs`]): its times
/// are delta-µs and it carries no sampling elements, so every record starts from the same base
/// with the set's rate, and the layout's own loop does the rest.
#[inline(always)]
fn decode_ovs_records<S: RecordSink>(
    layout: ipfix_ovs::Layout,
    msg: &Message,
    body: &[u8],
    env: &mut Env<'_, S>,
    rate: u32,
) -> (Decoded, Result<(), ErrorReason>) {
    let mut rec = msg.base_record();
    rec.sampling_rate = rate;
    let skipped = &mut env.stats.errors[ErrorReason::FieldSkipped.index()];
    let (flows, result) = layout.decode_set(body, &mut rec, msg.clock, (env.sink, skipped));
    let decoded = Decoded {
        flows,
        data_records: flows,
    };
    (decoded, result)
}

/// What decoding one v9 / IPFIX message produced, for the decoder's counters and sequence tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub domain: u32,
    pub sequence: u32,
    /// How far this message advances the sequence space (IPFIX: its data records; v9: 1), `None`
    /// when unknown because a set could not be decoded.
    pub span: Option<u32>,
    /// Data records read, options records included (those before any problem in their set).
    pub data_records: u32,
    /// Of those, options records.
    pub options_records: u32,
    /// Exporter uptime from the header (v9).
    pub uptime_ms: Option<u32>,
    /// The first problem met in a set (counted by the caller); later ones are already counted.
    pub error: Option<ErrorReason>,
}

impl Outcome {
    pub fn new(domain: u32, sequence: u32, uptime_ms: Option<u32>) -> Self {
        Outcome {
            domain,
            sequence,
            span: None,
            data_records: 0,
            options_records: 0,
            uptime_ms,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ipfix::{MessageWriter, TemplateSpec};
    use crate::decode::test_support::{init_time_options, run};
    use crate::decode::{Decoder, Protocol};

    #[test]
    fn init_times_past_the_cap_are_counted() {
        // The table of systemInitTimeMilliseconds is full of other sessions: an options record
        // of a new one is not kept, and counted; its uptime-relative flow times stay 0. A
        // session already in the table still updates its value.
        let (opt, ctx) = init_time_options();
        let data = TemplateSpec {
            id: 300,
            scope_fields: 0,
            fields: vec![Field::iana(22, 4), Field::iana(21, 4)],
        };
        let mut rec = FlowRecord::zeroed();
        rec.time_flow_start_ns = 1_699_999_990_000_000_000;
        rec.time_flow_end_ns = 1_699_999_999_000_000_000;
        let mut w = MessageWriter::new(1_700_000_000, 0, 0);
        w.templates(&[opt.clone(), data.clone()])
            .data(&opt, &[rec], &ctx)
            .data(&data, &[rec], &ctx);
        let message = w.finish();
        let mut dec = Decoder::new();
        let kept = "192.0.2.1:4739";
        let exporter = |i: usize| SocketAddr::new([10, 0, (i >> 8) as u8, i as u8].into(), 4739);
        dec.templated
            .init_times
            .insert((SessionKey(kept.parse().unwrap()), 0), 1);
        for i in 1..MAX_INIT_TIMES {
            dec.templated
                .init_times
                .insert((SessionKey(exporter(i)), 0), 1);
        }
        let (sink, result) = run(&mut dec, "192.0.2.2:4739", &message);
        assert_eq!(result, Ok(()));
        assert_eq!(dec.stats.init_times_refused, 1);
        let times = |r: &FlowRecord| (r.time_flow_start_ns, r.time_flow_end_ns);
        assert_eq!(times(&sink.flows[0]), (0, 0));
        let (sink, result) = run(&mut dec, kept, &message);
        assert_eq!(result, Ok(()));
        assert_eq!(dec.stats.init_times_refused, 1, "a known session updates");
        assert_eq!(
            times(&sink.flows[0]),
            (rec.time_flow_start_ns, rec.time_flow_end_ns)
        );
        assert_eq!(dec.stats.records[Protocol::Ipfix.index()], 2);
    }
}
