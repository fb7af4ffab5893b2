//! NetFlow v9 (RFC 3954) export packets: the 20-byte header, flowsets (0 templates, 1 options
//! templates, ≥ 256 data) and the encoder ([`PacketWriter`]).
//!
//! Differences from IPFIX that matter here: the header's `count` is the number of *records*
//! (template + options template + data records), not bytes — the decoder walks flowsets by their
//! lengths and does not trust it; field lengths are fixed in RFC 3954 (no enterprise bit), but
//! exporters bend it and peers accept that: a field of length 0 contributes nothing (logstash,
//! tshark), and length 65535 marks an IPFIX-style variable-length field (H3C NetStream);
//! options templates give scope and option lengths in bytes, and scope field types (1 system,
//! 2 interface, 3 line card, 4 cache, 5 template) are not information elements (they are decoded
//! as skips); times are sysUpTime-relative (FIRST_SWITCHED 22 / LAST_SWITCHED 21 against the
//! header's sysUptime and unix secs); the sequence number counts export packets (span 1).
//! NetFlow v9 has no template withdrawal: a template record with field count 0 is `BadTemplate`.

use super::flowset::{Env, Message, Outcome, TemplatedState};
use super::ie::{self, EncodeContext};
use super::ipfix::{TemplateSpec, be16, be32};
use super::template::{Field, MAX_FIELDS, TemplateKind};
use super::time::ExportClock;
use super::{DatagramMeta, ErrorReason, RecordSink};
use crate::record::{FlowRecord, FlowType};

/// Byte ranges of the packet header and flowset header.
pub mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const COUNT: Range<usize> = 2..4;
    pub const SYS_UPTIME: Range<usize> = 4..8;
    pub const UNIX_SECS: Range<usize> = 8..12;
    pub const SEQUENCE: Range<usize> = 12..16;
    pub const SOURCE_ID: Range<usize> = 16..20;
    pub const HEADER_LEN: usize = 20;
    pub const FLOWSET_ID: Range<usize> = 0..2;
    pub const FLOWSET_LENGTH: Range<usize> = 2..4;
    pub const FLOWSET_HEADER_LEN: usize = 4;
}

pub const VERSION: u16 = 9;
pub const TEMPLATE_FLOWSET: u16 = 0;
pub const OPTIONS_TEMPLATE_FLOWSET: u16 = 1;
/// Enterprise number given to options scope fields so that no element spec matches them.
pub const SCOPE_PEN: u32 = u32::MAX;

/// A zero-copy view of a NetFlow v9 packet header.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, ErrorReason> {
        if buffer.as_ref().len() < field::HEADER_LEN {
            return Err(ErrorReason::TruncatedHeader);
        }
        Ok(Header { buffer })
    }
    pub fn version(&self) -> u16 {
        be16(self.buffer.as_ref(), field::VERSION)
    }
    pub fn count(&self) -> u16 {
        be16(self.buffer.as_ref(), field::COUNT)
    }
    pub fn sys_uptime(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SYS_UPTIME)
    }
    pub fn unix_secs(&self) -> u32 {
        be32(self.buffer.as_ref(), field::UNIX_SECS)
    }
    pub fn sequence(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQUENCE)
    }
    pub fn source_id(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SOURCE_ID)
    }
}

/// The parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderRepr {
    /// Records in the packet (templates, options templates and data records).
    pub count: u16,
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub sequence: u32,
    pub source_id: u32,
}

impl HeaderRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> HeaderRepr {
        HeaderRepr {
            count: h.count(),
            sys_uptime_ms: h.sys_uptime(),
            unix_secs: h.unix_secs(),
            sequence: h.sequence(),
            source_id: h.source_id(),
        }
    }

    pub fn emit(&self, out: &mut [u8]) {
        if let Some(h) = out.get_mut(..field::HEADER_LEN) {
            h[field::VERSION].copy_from_slice(&VERSION.to_be_bytes());
            h[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
            h[field::SYS_UPTIME].copy_from_slice(&self.sys_uptime_ms.to_be_bytes());
            h[field::UNIX_SECS].copy_from_slice(&self.unix_secs.to_be_bytes());
            h[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
            h[field::SOURCE_ID].copy_from_slice(&self.source_id.to_be_bytes());
        }
    }

    /// The clock records of this packet are relative to.
    pub fn clock(&self) -> ExportClock {
        ExportClock {
            export_ns: u64::from(self.unix_secs) * 1_000_000_000,
            uptime_ms: Some(self.sys_uptime_ms),
        }
    }
}

/// Decode one NetFlow v9 packet. A header problem is an `Err` (and `out` is left as it was); what
/// the flowsets gave, and their problems, are in `out`.
pub fn decode<S: RecordSink>(
    state: &mut TemplatedState,
    meta: &DatagramMeta,
    datagram: &[u8],
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) -> Result<(), ErrorReason> {
    let header = Header::new_checked(datagram)?;
    let repr = HeaderRepr::parse(&header);
    let msg = Message {
        version: 9,
        flow_type: FlowType::NetflowV9,
        exporter: meta.exporter,
        domain: repr.source_id,
        received_ns: meta.received_ns,
        clock: repr.clock(),
        sequence: repr.sequence,
    };
    state.begin(&msg, env);
    *out = Outcome::new(repr.source_id, repr.sequence, Some(repr.sys_uptime_ms));
    out.span = Some(1);
    let mut rest = datagram.get(field::HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        let set_len = usize::from(be16(rest, field::FLOWSET_LENGTH));
        if rest.len() < field::FLOWSET_HEADER_LEN
            || set_len < field::FLOWSET_HEADER_LEN
            || set_len > rest.len()
        {
            env.note(&mut out.error, ErrorReason::BadSetLength);
            break;
        }
        let set_id = be16(rest, field::FLOWSET_ID);
        let body = rest
            .get(field::FLOWSET_HEADER_LEN..set_len)
            .unwrap_or_default();
        rest = rest.get(set_len..).unwrap_or_default();
        match set_id {
            TEMPLATE_FLOWSET => template_flowset(state, &msg, body, env, out),
            OPTIONS_TEMPLATE_FLOWSET => options_template_flowset(state, &msg, body, env, out),
            256.. => {
                let (_, result) = state.data_set(&msg, set_id, body, env);
                if let Err(reason) = result {
                    env.note(&mut out.error, reason);
                }
            }
            _ => env.note(&mut out.error, ErrorReason::BadSetId),
        }
    }
    Ok(())
}

/// Read `n` (type, length) pairs from `bytes` into `fields`; false when `bytes` is too short.
fn read_fields(bytes: &[u8], n: usize, pen: u32, fields: &mut Vec<Field>) -> bool {
    for i in 0..n {
        let Some(&[a, b, c, d]) = bytes.get(i * 4..).and_then(|r| r.first_chunk::<4>()) else {
            return false;
        };
        fields.push(Field {
            id: u16::from_be_bytes([a, b]),
            pen,
            len: u16::from_be_bytes([c, d]),
        });
    }
    true
}

fn learn_parsed<S: RecordSink>(
    state: &mut TemplatedState,
    msg: &Message,
    id: u16,
    kind: TemplateKind,
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) {
    if id < 256 {
        env.note(&mut out.error, ErrorReason::BadTemplate);
        return;
    }
    match state.learn(msg, id, kind, env) {
        Ok(()) => {}
        Err(reason) => env.note(&mut out.error, reason),
    }
}

fn template_flowset<S: RecordSink>(
    state: &mut TemplatedState,
    msg: &Message,
    body: &[u8],
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) {
    let mut rest = body;
    while rest.len() >= 4 {
        let id = be16(rest, 0..2);
        let count = usize::from(be16(rest, 2..4));
        if count == 0 {
            env.note(&mut out.error, ErrorReason::BadTemplate);
            rest = rest.get(4..).unwrap_or_default();
            continue;
        }
        if count > MAX_FIELDS {
            env.note(&mut out.error, ErrorReason::TemplateTooLarge);
            return;
        }
        state.fields.clear();
        if !read_fields(
            rest.get(4..).unwrap_or_default(),
            count,
            0,
            &mut state.fields,
        ) {
            env.note(&mut out.error, ErrorReason::BadTemplate);
            return;
        }
        rest = rest.get(4 + count * 4..).unwrap_or_default();
        learn_parsed(state, msg, id, TemplateKind::Data, env, out);
    }
}

fn options_template_flowset<S: RecordSink>(
    state: &mut TemplatedState,
    msg: &Message,
    body: &[u8],
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) {
    let mut rest = body;
    // Fewer than 6 bytes left: padding to the 32-bit boundary.
    while rest.len() >= 6 {
        let id = be16(rest, 0..2);
        let scope_len = usize::from(be16(rest, 2..4));
        let option_len = usize::from(be16(rest, 4..6));
        let end = 6 + scope_len + option_len;
        if scope_len % 4 != 0 || option_len % 4 != 0 || scope_len + option_len == 0 {
            env.note(&mut out.error, ErrorReason::BadTemplate);
            return;
        }
        let Some(record) = rest.get(6..end) else {
            env.note(&mut out.error, ErrorReason::BadTemplate);
            return;
        };
        let (scopes, options) = (scope_len / 4, option_len / 4);
        if scopes + options > MAX_FIELDS {
            env.note(&mut out.error, ErrorReason::TemplateTooLarge);
            return;
        }
        state.fields.clear();
        read_fields(record, scopes, SCOPE_PEN, &mut state.fields);
        read_fields(
            record.get(scope_len..).unwrap_or_default(),
            options,
            0,
            &mut state.fields,
        );
        rest = rest.get(end..).unwrap_or_default();
        learn_parsed(state, msg, id, TemplateKind::Options, env, out);
    }
}

/// Builds one NetFlow v9 packet: header, then flowsets in the order they are added; `count` is
/// kept as the number of records written.
#[derive(Debug, Clone)]
pub struct PacketWriter {
    buf: Vec<u8>,
    header: HeaderRepr,
}

impl PacketWriter {
    pub fn new(sys_uptime_ms: u32, unix_secs: u32, sequence: u32, source_id: u32) -> Self {
        PacketWriter {
            buf: vec![0; field::HEADER_LEN],
            header: HeaderRepr {
                count: 0,
                sys_uptime_ms,
                unix_secs,
                sequence,
                source_id,
            },
        }
    }

    /// The clock records are encoded against.
    pub fn clock(&self) -> ExportClock {
        self.header.clock()
    }

    /// Append a flowset with id `set_id` and the given body holding `records` records.
    pub fn raw_flowset(&mut self, set_id: u16, body: &[u8], records: u16) -> &mut Self {
        self.buf.extend_from_slice(&set_id.to_be_bytes());
        self.buf
            .extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        self.buf.extend_from_slice(body);
        self.header.count = self.header.count.wrapping_add(records);
        self
    }

    /// Append a template flowset and/or an options template flowset (templates with
    /// `scope_fields > 0`; their first `scope_fields` fields are scopes).
    pub fn templates(&mut self, templates: &[TemplateSpec]) -> &mut Self {
        let mut data = Vec::new();
        let mut options = Vec::new();
        let (mut n_data, mut n_options) = (0u16, 0u16);
        for t in templates {
            let pairs = |fields: &[Field], out: &mut Vec<u8>| {
                for f in fields {
                    out.extend_from_slice(&f.id.to_be_bytes());
                    out.extend_from_slice(&f.len.to_be_bytes());
                }
            };
            if t.scope_fields == 0 {
                data.extend_from_slice(&t.id.to_be_bytes());
                data.extend_from_slice(&(t.fields.len() as u16).to_be_bytes());
                pairs(&t.fields, &mut data);
                n_data += 1;
            } else {
                let (scope, opts) = t
                    .fields
                    .split_at(usize::from(t.scope_fields).min(t.fields.len()));
                options.extend_from_slice(&t.id.to_be_bytes());
                options.extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
                options.extend_from_slice(&((opts.len() * 4) as u16).to_be_bytes());
                pairs(scope, &mut options);
                pairs(opts, &mut options);
                n_options += 1;
            }
        }
        if n_data > 0 {
            self.raw_flowset(TEMPLATE_FLOWSET, &data, n_data);
        }
        if n_options > 0 {
            while options.len() % 4 != 0 {
                options.push(0);
            }
            self.raw_flowset(OPTIONS_TEMPLATE_FLOWSET, &options, n_options);
        }
        self
    }

    /// Append a data flowset of `records` encoded with `template` (scope fields written as zero).
    pub fn data(
        &mut self,
        template: &TemplateSpec,
        records: &[FlowRecord],
        init_ms: u64,
    ) -> &mut Self {
        let ctx = EncodeContext {
            clock: self.clock(),
            init_ms,
            interface_name: "",
        };
        let mut body = Vec::new();
        for rec in records {
            for (i, f) in template.fields.iter().enumerate() {
                if i < usize::from(template.scope_fields) {
                    body.resize(body.len() + usize::from(f.len), 0);
                } else {
                    ie::encode(0, f.id, f.len, rec, &ctx, &mut body);
                }
            }
        }
        self.raw_flowset(template.id, &body, records.len() as u16)
    }

    /// The finished packet, its count field set.
    pub fn finish(mut self) -> Vec<u8> {
        self.header.emit(&mut self.buf);
        self.buf
    }
}

/// A NetFlow v9 data template (id 256) of the classic fields: IPv4 source and destination, IN_BYTES
/// and IN_PKTS in 4 bytes, FIRST/LAST_SWITCHED, ports and protocol. Fuzz priming and seeds.
pub fn five_tuple_template() -> TemplateSpec {
    TemplateSpec {
        id: 256,
        scope_fields: 0,
        fields: [
            (8, 4),
            (12, 4),
            (1, 4),
            (2, 4),
            (22, 4),
            (21, 4),
            (7, 2),
            (11, 2),
            (4, 1),
        ]
        .map(|(id, len)| Field::iana(id, len))
        .to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_support::{errors, run};
    use crate::decode::{Decoder, Protocol};
    use crate::record::ipv4_bytes;
    use bytemuck::Zeroable;

    const EXPORTER: &str = "192.0.2.30:2055";

    /// Header (count 3: one template, two data records; uptime 100 s, unix 1700000000, sequence 42,
    /// source id 3), a template flowset (256: src/dst IPv4, IN_BYTES in 4, IN_PKTS in 4,
    /// FIRST_SWITCHED, LAST_SWITCHED, PROTOCOL) and a data flowset of two records + 2 bytes padding.
    #[rustfmt::skip]
    static PACKET: [u8; 112] = [
        0x00, 0x09, 0x00, 0x03, 0x00, 0x01, 0x86, 0xa0, 0x65, 0x53, 0xf1, 0x00, 0x00, 0x00, 0x00, 0x2a,
        0x00, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x00, 0x24, 0x01, 0x00, 0x00, 0x07,
        0x00, 0x08, 0x00, 0x04, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x00, 0x04, 0x00, 0x02, 0x00, 0x04,
        0x00, 0x16, 0x00, 0x04, 0x00, 0x15, 0x00, 0x04, 0x00, 0x04, 0x00, 0x01,
        0x01, 0x00, 0x00, 0x38,
        10, 1, 0, 1, 10, 1, 0, 2, 0x00, 0x00, 0x05, 0xdc, 0x00, 0x00, 0x00, 0x0a,
        0x00, 0x01, 0x5f, 0x90, 0x00, 0x01, 0x82, 0xb8, 0x06,
        10, 1, 0, 3, 10, 1, 0, 4, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x01, 0x86, 0xa0, 0x00, 0x01, 0x86, 0xa0, 0x11,
        0x00, 0x00,
    ];

    fn template() -> TemplateSpec {
        TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: [(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4), (4, 1)]
                .map(|(id, len)| Field::iana(id, len))
                .to_vec(),
        }
    }

    #[test]
    fn deconstruct_header() {
        let h = Header::new_checked(&PACKET[..]).unwrap();
        assert_eq!(h.version(), 9);
        assert_eq!(
            HeaderRepr::parse(&h),
            HeaderRepr {
                count: 3,
                sys_uptime_ms: 100_000,
                unix_secs: 1_700_000_000,
                sequence: 42,
                source_id: 3
            }
        );
        assert_eq!(
            Header::new_checked(&PACKET[..19]).err(),
            Some(ErrorReason::TruncatedHeader)
        );
    }

    #[test]
    fn decode_uptime_relative_records() {
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &PACKET);
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 2);
        let r = sink.flows[0];
        assert_eq!(r.flow_type, FlowType::NetflowV9 as u8);
        assert_eq!((r.observation_domain_id, r.sequence_num), (3, 42));
        assert_eq!(r.src_addr, ipv4_bytes([10, 1, 0, 1]));
        assert_eq!((r.bytes, r.packets, r.proto), (1500, 10, 6));
        assert_eq!(r.time_flow_start_ns, 1_699_999_990_000_000_000);
        assert_eq!(r.time_flow_end_ns, 1_699_999_999_000_000_000);
        assert_eq!(sink.flows[1].time_flow_end_ns, 1_700_000_000_000_000_000);
        assert_eq!(dec.stats.records[Protocol::NetflowV9.index()], 2);
    }

    #[test]
    fn templates_belong_to_the_address_and_source_id() {
        // RFC 3954 §5.1: source address and source id tell export streams apart, whatever the
        // source port (unlike IPFIX's transport sessions). Data from another port of the same
        // address decodes with the template, early data too, and keeps its own port.
        let mut rec = FlowRecord::zeroed();
        rec.src_addr = ipv4_bytes([10, 1, 0, 1]);
        rec.bytes = 1500;
        let packet = |templates: bool| {
            let mut w = PacketWriter::new(100_000, 1_700_000_000, 0, 3);
            if templates {
                w.templates(&[template()]);
            }
            w.data(&template(), std::slice::from_ref(&rec), 0);
            w.finish()
        };
        let mut dec = Decoder::new();
        let (_, result) = run(&mut dec, "192.0.2.30:50001", &packet(false));
        assert_eq!(result, Err(ErrorReason::TemplateMissing), "held");
        let (sink, result) = run(&mut dec, "192.0.2.30:50000", &packet(true));
        assert_eq!(result, Ok(()));
        let ports: Vec<u16> = sink.flows.iter().map(|r| r.exporter_port).collect();
        assert_eq!(
            ports,
            [50001, 50000],
            "the held record first, with its own port"
        );
        let (sink, result) = run(&mut dec, "192.0.2.30:50002", &packet(false));
        assert_eq!(result, Ok(()));
        assert_eq!(
            (sink.flows[0].bytes, sink.flows[0].exporter_port),
            (1500, 50002)
        );
        let (_, result) = run(&mut dec, "192.0.2.31:50000", &packet(false));
        assert_eq!(result, Err(ErrorReason::TemplateMissing), "another address");
    }

    #[test]
    fn construct_matches_the_byte_array() {
        let mut recs = Vec::new();
        let mut dec = Decoder::new();
        recs.extend(run(&mut dec, EXPORTER, &PACKET).0.flows);
        let mut w = PacketWriter::new(100_000, 1_700_000_000, 42, 3);
        w.templates(&[template()]).data(&template(), &recs, 0);
        let mut out = w.finish();
        // The writer does not pad; the byte array has 2 bytes of flowset padding.
        out.extend([0, 0]);
        out[58..60].copy_from_slice(&56u16.to_be_bytes());
        assert_eq!(out, PACKET.to_vec());
    }

    #[test]
    fn options_sampler_then_data_naming_it() {
        // Options template 300: scope System (type 1, 4 bytes); FLOW_SAMPLER_ID (48, 1),
        // FLOW_SAMPLER_MODE (49, 1), FLOW_SAMPLER_RANDOM_INTERVAL (50, 4); padded to 32 bits.
        let mut w = PacketWriter::new(1000, 1_700_000_000, 1, 0);
        w.raw_flowset(
            OPTIONS_TEMPLATE_FLOWSET,
            &[
                0x01, 0x2c, 0x00, 0x04, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x04, 0x00, 0x30, 0x00, 0x01,
                0x00, 0x31, 0x00, 0x01, 0x00, 0x32, 0x00, 0x04, 0x00, 0x00,
            ],
            1,
        );
        w.raw_flowset(300, &[0, 0, 0, 0, 7, 2, 0, 0, 0x03, 0xe8, 0, 0, 0], 1);
        let t = TemplateSpec {
            id: 301,
            scope_fields: 0,
            fields: vec![Field::iana(48, 1), Field::iana(4, 1)],
        };
        let mut rec = FlowRecord::zeroed();
        rec.sampler_id = 7;
        rec.proto = 6;
        w.templates(std::slice::from_ref(&t)).data(&t, &[rec], 0);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        assert_eq!(dec.stats.options_records, 1);
        assert_eq!(
            (sink.flows[0].sampler_id, sink.flows[0].sampling_rate),
            (7, 1000)
        );
    }

    #[test]
    fn sequence_counts_packets() {
        let mut dec = Decoder::new();
        for seq in [42u32, 43, 46] {
            let mut p = PACKET;
            p[12..16].copy_from_slice(&seq.to_be_bytes());
            assert_eq!(run(&mut dec, EXPORTER, &p).1, Ok(()));
        }
        let (space, counts) = dec.sequence_counts().next().unwrap();
        assert_eq!(
            (space.protocol, space.domain, counts.lost),
            (Protocol::NetflowV9, 3, 2)
        );
    }

    /// One v9 packet: a template flowset with `template` (id 256) and a data flowset of `data`.
    fn packet(template: &[u8], data: &[u8]) -> Vec<u8> {
        let mut w = PacketWriter::new(100_000, 1_700_000_000, 1, 0);
        w.raw_flowset(TEMPLATE_FLOWSET, template, 1)
            .raw_flowset(256, data, 1);
        w.finish()
    }

    #[test]
    fn both_address_families_zero_does_not_erase_set() {
        // Template 256: IPV4_SRC_ADDR 4, IPV6_SRC_ADDR 16, IPV4_DST_ADDR 4, IPV6_DST_ADDR 16,
        // IPV6_NEXT_HOP 16, IPV4_NEXT_HOP 4 (Cisco / nProbe style: both families in one template).
        #[rustfmt::skip]
        let template = [
            0x01, 0x00, 0x00, 0x06,
            0x00, 0x08, 0x00, 0x04, 0x00, 0x1b, 0x00, 0x10, 0x00, 0x0c, 0x00, 0x04,
            0x00, 0x1c, 0x00, 0x10, 0x00, 0x3e, 0x00, 0x10, 0x00, 0x0f, 0x00, 0x04,
        ];
        let v6 = |last: u8| {
            let mut a = [0u8; 16];
            a[..2].copy_from_slice(&[0x20, 0x01]);
            a[15] = last;
            a
        };
        // Record 1: an IPv4 flow (IPv6 fields all zero, IPv4 next hop after a zero IPv6 one).
        // Record 2: an IPv6 flow (IPv4 fields 0.0.0.0, IPv4 next hop 0.0.0.0 after a real one).
        let mut data = Vec::new();
        data.extend([10, 0, 0, 1]);
        data.extend([0; 16]);
        data.extend([10, 0, 0, 2]);
        data.extend([0; 16]);
        data.extend([0; 16]);
        data.extend([10, 0, 0, 254]);
        data.extend([0; 4]);
        data.extend(v6(1));
        data.extend([0; 4]);
        data.extend(v6(2));
        data.extend(v6(254));
        data.extend([0; 4]);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &packet(&template, &data));
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 2);
        let (a, b) = (sink.flows[0], sink.flows[1]);
        assert_eq!(
            (a.src_addr, a.dst_addr, a.next_hop),
            (
                ipv4_bytes([10, 0, 0, 1]),
                ipv4_bytes([10, 0, 0, 2]),
                ipv4_bytes([10, 0, 0, 254])
            )
        );
        assert_eq!(
            (b.src_addr, b.dst_addr, b.next_hop),
            (v6(1), v6(2), v6(254))
        );
    }

    #[test]
    fn zero_length_fields_contribute_nothing() {
        // Template 256: IPV4_SRC_ADDR 4, IN_BYTES 0, PROTOCOL 1, L4_SRC_PORT 0.
        #[rustfmt::skip]
        let template = [
            0x01, 0x00, 0x00, 0x04,
            0x00, 0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01,
            0x00, 0x07, 0x00, 0x00,
        ];
        let data = [10, 0, 0, 1, 6, 10, 0, 0, 2, 17, 0, 0];
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &packet(&template, &data));
        assert_eq!(result, Ok(()));
        let got: Vec<_> = sink
            .flows
            .iter()
            .map(|r| (r.src_addr, r.proto, r.bytes, r.src_port))
            .collect();
        assert_eq!(
            got,
            [
                (ipv4_bytes([10, 0, 0, 1]), 6, 0, 0),
                (ipv4_bytes([10, 0, 0, 2]), 17, 0, 0)
            ]
        );
        assert_eq!(errors(&dec, ErrorReason::BadTemplate), 0);
    }

    #[test]
    fn length_65535_is_variable_length_as_in_ipfix() {
        // H3C NetStream: template 256: IPV4_SRC_ADDR 4, interface name (82) 65535, PROTOCOL 1.
        #[rustfmt::skip]
        let template = [
            0x01, 0x00, 0x00, 0x03,
            0x00, 0x08, 0x00, 0x04, 0x00, 0x52, 0xff, 0xff, 0x00, 0x04, 0x00, 0x01,
        ];
        // Record 1: a 3-byte name ("ge0"); record 2: a 1-byte length of 0; record 3: the 3-byte
        // length form (255, then 0x0002).
        #[rustfmt::skip]
        let data = [
            10, 0, 0, 1, 3, b'g', b'e', b'0', 6,
            10, 0, 0, 2, 0, 17,
            10, 0, 0, 3, 255, 0x00, 0x02, b'x', b'y', 1,
        ];
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &packet(&template, &data));
        assert_eq!(result, Ok(()));
        let got: Vec<_> = sink
            .flows
            .iter()
            .map(|r| (r.src_addr[15], r.proto))
            .collect();
        assert_eq!(got, [(1, 6), (2, 17), (3, 1)]);
        // A variable length running past the record is named.
        let bad = [10, 0, 0, 1, 9, b'g', 6];
        let (_, result) = run(&mut dec, EXPORTER, &packet(&template, &bad));
        assert_eq!(result, Err(ErrorReason::BadVariableLength));
    }

    #[test]
    fn malformed_packets() {
        let mut dec = Decoder::new();
        let mut case = |bytes: &[u8], want: ErrorReason| {
            assert_eq!(run(&mut dec, EXPORTER, bytes).1, Err(want), "{bytes:02x?}");
        };
        case(&PACKET[..19], ErrorReason::TruncatedHeader);
        let mut p = PACKET;
        p[23] = 0xff;
        case(&p, ErrorReason::BadSetLength);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(5, &[0; 4], 0);
        case(&w.finish(), ErrorReason::BadSetId);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(TEMPLATE_FLOWSET, &[0x01, 0x00, 0x00, 0x00], 1);
        case(&w.finish(), ErrorReason::BadTemplate);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(
            TEMPLATE_FLOWSET,
            &[0x00, 0x10, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04],
            1,
        );
        case(&w.finish(), ErrorReason::BadTemplate);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(
            TEMPLATE_FLOWSET,
            &[0x01, 0x00, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04],
            1,
        );
        case(&w.finish(), ErrorReason::BadTemplate);
        // A template of zero-length fields only: its records could not be delimited.
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(
            TEMPLATE_FLOWSET,
            &[0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00],
            1,
        );
        case(&w.finish(), ErrorReason::BadTemplate);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(
            OPTIONS_TEMPLATE_FLOWSET,
            &[0x01, 0x00, 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0, 0, 0],
            1,
        );
        case(&w.finish(), ErrorReason::BadTemplate);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(
            OPTIONS_TEMPLATE_FLOWSET,
            &[0x01, 0x00, 0x00, 0x04, 0x00, 0x08, 0, 1, 0, 4],
            1,
        );
        case(&w.finish(), ErrorReason::BadTemplate);
        let mut w = PacketWriter::new(0, 0, 0, 0);
        w.raw_flowset(777, &[0; 8], 1);
        case(&w.finish(), ErrorReason::TemplateMissing);
        assert_eq!(errors(&dec, ErrorReason::BadTemplate), 6);
    }

    #[test]
    fn bytes_after_the_last_flowset_are_counted_padding_inside_one_is_not() {
        // v9 has no packet length: its flowsets run to the end of the datagram, and RFC 3954
        // puts padding inside a flowset (counted in its length). PACKET's data flowset ends in
        // 2 padding bytes: accepted. Bytes after the last flowset cannot be a flowset: counted.
        let mut dec = Decoder::new();
        assert_eq!(run(&mut dec, EXPORTER, &PACKET).1, Ok(()));
        let long = [&PACKET[..], &[0, 0]].concat();
        let (sink, result) = run(&mut dec, EXPORTER, &long);
        assert_eq!(result, Err(ErrorReason::BadSetLength));
        assert_eq!(sink.flows.len(), 2, "the flowsets before them are decoded");
        assert_eq!(errors(&dec, ErrorReason::BadSetLength), 1);
    }
}
