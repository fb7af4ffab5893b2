//! IPFIX (RFC 7011) messages: the 16-byte header, sets (2 templates, 3 options templates,
//! ≥ 256 data), template records with enterprise elements and variable lengths, and the encoders
//! ([`MessageWriter`], and the Open vSwitch template family in [`ovs`]).
//!
//! Data sets go through `flowset.rs` (compiled templates, early data, sampling). Sequence numbers
//! count data records per observation domain: the caller tracks them with the message's span.

use super::flowset::{Env, Message, Outcome, TemplatedState};
use super::ie::{self, EncodeContext};
use super::template::{Field, MAX_FIELDS, TemplateKind};
use super::time::ExportClock;
use super::{DatagramMeta, ErrorReason, RecordSink};
use crate::record::{FlowRecord, FlowType};

/// Byte ranges of the message header and set header.
pub mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const EXPORT_TIME: Range<usize> = 4..8;
    pub const SEQUENCE: Range<usize> = 8..12;
    pub const DOMAIN: Range<usize> = 12..16;
    pub const HEADER_LEN: usize = 16;
    pub const SET_ID: Range<usize> = 0..2;
    pub const SET_LENGTH: Range<usize> = 2..4;
    pub const SET_HEADER_LEN: usize = 4;
}

pub const VERSION: u16 = 10;
/// Set ids.
pub const TEMPLATE_SET: u16 = 2;
pub const OPTIONS_TEMPLATE_SET: u16 = 3;

#[inline(always)]
pub(crate) fn be16(b: &[u8], at: std::ops::Range<usize>) -> u16 {
    b.get(at)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_be_bytes)
}

#[inline(always)]
pub(crate) fn be32(b: &[u8], at: std::ops::Range<usize>) -> u32 {
    b.get(at)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

/// A zero-copy view of an IPFIX message header.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks that the header is complete.
    pub fn new_checked(buffer: T) -> Result<Self, ErrorReason> {
        if buffer.as_ref().len() < field::HEADER_LEN {
            return Err(ErrorReason::TruncatedHeader);
        }
        Ok(Header { buffer })
    }
    pub fn version(&self) -> u16 {
        be16(self.buffer.as_ref(), field::VERSION)
    }
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn export_time(&self) -> u32 {
        be32(self.buffer.as_ref(), field::EXPORT_TIME)
    }
    pub fn sequence(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQUENCE)
    }
    pub fn domain(&self) -> u32 {
        be32(self.buffer.as_ref(), field::DOMAIN)
    }
}

/// The parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderRepr {
    pub length: u16,
    /// Seconds since the Unix epoch.
    pub export_time: u32,
    pub sequence: u32,
    pub domain: u32,
}

impl HeaderRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> HeaderRepr {
        HeaderRepr {
            length: h.length(),
            export_time: h.export_time(),
            sequence: h.sequence(),
            domain: h.domain(),
        }
    }

    /// Write the 16 header bytes to the front of `out` (which must hold them).
    pub fn emit(&self, out: &mut [u8]) {
        if let Some(h) = out.get_mut(..field::HEADER_LEN) {
            h[field::VERSION].copy_from_slice(&VERSION.to_be_bytes());
            h[field::LENGTH].copy_from_slice(&self.length.to_be_bytes());
            h[field::EXPORT_TIME].copy_from_slice(&self.export_time.to_be_bytes());
            h[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
            h[field::DOMAIN].copy_from_slice(&self.domain.to_be_bytes());
        }
    }
}

/// Decode one IPFIX message. A header problem is an `Err` (and `out` is left as it was); what the
/// sets gave, and their problems, are in `out`. Bytes of the datagram after the message's length
/// are not decoded: they are `TrailingBytes`, noted after the sets' problems.
#[inline]
pub fn decode<S: RecordSink>(
    state: &mut TemplatedState,
    meta: &DatagramMeta,
    datagram: &[u8],
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) -> Result<(), ErrorReason> {
    let header = Header::new_checked(datagram)?;
    let repr = HeaderRepr::parse(&header);
    let length = usize::from(repr.length);
    if length < field::HEADER_LEN || length > datagram.len() {
        return Err(ErrorReason::BadMessageLength);
    }
    let msg = Message {
        version: 10,
        flow_type: FlowType::Ipfix,
        exporter: meta.exporter,
        domain: repr.domain,
        received_ns: meta.received_ns,
        clock: ExportClock {
            export_ns: u64::from(repr.export_time) * 1_000_000_000,
            uptime_ms: None,
        },
        sequence: repr.sequence,
    };
    state.begin(&msg, env);
    *out = Outcome::new(repr.domain, repr.sequence, None);
    let mut span = Some(0u32);
    let mut rest = datagram.get(field::HEADER_LEN..length).unwrap_or_default();
    while !rest.is_empty() {
        let set_len = usize::from(be16(rest, field::SET_LENGTH));
        if rest.len() < field::SET_HEADER_LEN
            || set_len < field::SET_HEADER_LEN
            || set_len > rest.len()
        {
            env.note(&mut out.error, ErrorReason::BadSetLength);
            span = None;
            break;
        }
        let set_id = be16(rest, field::SET_ID);
        let body = rest.get(field::SET_HEADER_LEN..set_len).unwrap_or_default();
        rest = rest.get(set_len..).unwrap_or_default();
        match set_id {
            TEMPLATE_SET => template_set(state, &msg, TemplateKind::Data, body, env, out),
            OPTIONS_TEMPLATE_SET => {
                template_set(state, &msg, TemplateKind::Options, body, env, out)
            }
            256.. => {
                let (decoded, result) = state.data_set(&msg, set_id, body, env);
                out.data_records += decoded.data_records;
                out.options_records += decoded.data_records.saturating_sub(decoded.flows);
                span = span.map(|s| s + decoded.data_records);
                if let Err(reason) = result {
                    env.note(&mut out.error, reason);
                    span = None;
                }
            }
            _ => env.note(&mut out.error, ErrorReason::BadSetId),
        }
    }
    out.span = span;
    if length < datagram.len() {
        env.note(&mut out.error, ErrorReason::TrailingBytes);
    }
    Ok(())
}

/// Parse a template or options template set, learning, redefining and withdrawing templates.
fn template_set<S: RecordSink>(
    state: &mut TemplatedState,
    msg: &Message,
    kind: TemplateKind,
    body: &[u8],
    env: &mut Env<'_, S>,
    out: &mut Outcome,
) {
    let mut rest = body;
    // Fewer than 4 bytes left: padding.
    while rest.len() >= 4 {
        let id = be16(rest, 0..2);
        let count = usize::from(be16(rest, 2..4));
        if count == 0 {
            if let Err(reason) = state.withdraw(msg, id, kind, env) {
                env.note(&mut out.error, reason);
            }
            rest = rest.get(4..).unwrap_or_default();
            continue;
        }
        let mut pos = 4;
        let scope = if kind == TemplateKind::Options {
            if rest.len() < 6 {
                env.note(&mut out.error, ErrorReason::BadTemplate);
                return;
            }
            pos = 6;
            usize::from(be16(rest, 4..6))
        } else {
            0
        };
        if count > MAX_FIELDS {
            env.note(&mut out.error, ErrorReason::TemplateTooLarge);
            return;
        }
        state.fields.clear();
        for _ in 0..count {
            let Some(&[a, b, c, d]) = rest.get(pos..).and_then(|r| r.first_chunk::<4>()) else {
                env.note(&mut out.error, ErrorReason::BadTemplate);
                return;
            };
            pos += 4;
            let raw_id = u16::from_be_bytes([a, b]);
            let len = u16::from_be_bytes([c, d]);
            let pen = if raw_id & 0x8000 != 0 {
                let Some(&pen) = rest.get(pos..).and_then(|r| r.first_chunk::<4>()) else {
                    env.note(&mut out.error, ErrorReason::BadTemplate);
                    return;
                };
                pos += 4;
                u32::from_be_bytes(pen)
            } else {
                0
            };
            state.fields.push(Field {
                id: raw_id & 0x7fff,
                pen,
                len,
            });
        }
        rest = rest.get(pos..).unwrap_or_default();
        if id < 256 || (kind == TemplateKind::Options && (scope == 0 || scope > count)) {
            env.note(&mut out.error, ErrorReason::BadTemplate);
            continue;
        }
        match state.learn(msg, id, kind, env) {
            Ok(()) => {}
            Err(reason) => env.note(&mut out.error, reason),
        }
    }
}

/// A template to encode: id, number of scope fields (options templates; 0 for data templates) and
/// the fields in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: u16,
    pub scope_fields: u16,
    pub fields: Vec<Field>,
}

/// Builds one IPFIX message: header, then sets in the order they are added.
#[derive(Debug, Clone)]
pub struct MessageWriter {
    buf: Vec<u8>,
    header: HeaderRepr,
}

impl MessageWriter {
    pub fn new(export_time: u32, sequence: u32, domain: u32) -> Self {
        MessageWriter {
            buf: vec![0; field::HEADER_LEN],
            header: HeaderRepr {
                length: 0,
                export_time,
                sequence,
                domain,
            },
        }
    }

    /// Append a set with id `set_id` and the given body.
    pub fn raw_set(&mut self, set_id: u16, body: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&set_id.to_be_bytes());
        self.buf
            .extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        self.buf.extend_from_slice(body);
        self
    }

    /// Append one template set (data templates) or options template set (`scope_fields > 0`) per
    /// kind present in `templates`.
    pub fn templates(&mut self, templates: &[TemplateSpec]) -> &mut Self {
        for options in [false, true] {
            let mut body = Vec::new();
            for t in templates.iter().filter(|t| (t.scope_fields > 0) == options) {
                body.extend_from_slice(&t.id.to_be_bytes());
                body.extend_from_slice(&(t.fields.len() as u16).to_be_bytes());
                if options {
                    body.extend_from_slice(&t.scope_fields.to_be_bytes());
                }
                for f in &t.fields {
                    let id = if f.pen != 0 { f.id | 0x8000 } else { f.id };
                    body.extend_from_slice(&id.to_be_bytes());
                    body.extend_from_slice(&f.len.to_be_bytes());
                    if f.pen != 0 {
                        body.extend_from_slice(&f.pen.to_be_bytes());
                    }
                }
            }
            if !body.is_empty() {
                let set_id = if options {
                    OPTIONS_TEMPLATE_SET
                } else {
                    TEMPLATE_SET
                };
                self.raw_set(set_id, &body);
            }
        }
        self
    }

    /// Append a withdrawal of template `id` (`TEMPLATE_SET`/`OPTIONS_TEMPLATE_SET` as `id`: all).
    pub fn withdrawal(&mut self, set_id: u16, id: u16) -> &mut Self {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        self.raw_set(set_id, &body)
    }

    /// Append a data set of `records` encoded with `template`.
    pub fn data(
        &mut self,
        template: &TemplateSpec,
        records: &[FlowRecord],
        ctx: &EncodeContext,
    ) -> &mut Self {
        let mut body = Vec::new();
        for rec in records {
            for f in &template.fields {
                ie::encode(f.pen, f.id, f.len, rec, ctx, &mut body);
            }
        }
        self.raw_set(template.id, &body)
    }

    /// Bytes written so far (header included).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The finished message, its length field set.
    pub fn finish(mut self) -> Vec<u8> {
        self.header.length = self.buf.len().min(65535) as u16;
        self.header.emit(&mut self.buf);
        self.buf
    }
}

/// Open vSwitch's IPFIX exports (`ofproto-dpif-ipfix`), as described in OVS-EXPORTS.md: 120 data
/// templates (ids 256–375), observation domain 0, delta-microsecond times, layer-2 octet counters,
/// variable-length interface names, PEN 6876 tunnel elements; and its exporter-statistics options
/// template. The load generator, benchmarks and tests build OVS traffic with these.
pub mod ovs {
    use super::{MessageWriter, TemplateSpec};
    use crate::decode::ie::{EncodeContext, PEN_OVS, VARLEN};
    use crate::decode::template::Field;
    use crate::record::FlowRecord;
    use std::sync::OnceLock;

    pub const FIRST_ID: u16 = 256;
    pub const COUNT: u16 = 120;
    /// Id used here for the options template (exportingProcessId scope + notSentPacketTotalCount).
    pub const OPTIONS_ID: u16 = FIRST_ID + COUNT;

    /// The template id OVS uses for (l2: 0 Ethernet, 1 VLAN; l3: 0 other, 1 IPv4, 2 IPv6; l4: 0
    /// other, 1 TCP, 2 UDP, 3 SCTP, 4 ICMP; tunnel; direction: 0 ingress, 1 egress).
    pub const fn template_id(l2: u16, l3: u16, l4: u16, tunnel: bool, egress: bool) -> u16 {
        FIRST_ID + ((((l2 * 3 + l3) * 5 + l4) * 2 + tunnel as u16) * 2 + egress as u16)
    }

    /// The template OVS would use for `rec`.
    pub fn template_id_for(rec: &FlowRecord) -> u16 {
        let l2 = u16::from(rec.vlan_id != 0);
        let l3 = match rec.etype {
            0x0800 => 1,
            0x86dd => 2,
            _ => 0,
        };
        let l4 = match (l3, rec.proto) {
            (0, _) => 0,
            (_, 6) => 1,
            (_, 17) => 2,
            (_, 132) => 3,
            (_, 1 | 58) => 4,
            _ => 0,
        };
        template_id(l2, l3, l4, rec.tunnel_type != 0, rec.flow_direction == 1)
    }

    /// The fields of data template `id` (256..=375), built once per process: the decoder
    /// compares the data templates it learns with them, and must not allocate to do so.
    pub fn template_fields(id: u16) -> Option<&'static [Field]> {
        static FAMILY: OnceLock<Vec<TemplateSpec>> = OnceLock::new();
        let family =
            FAMILY.get_or_init(|| (FIRST_ID..FIRST_ID + COUNT).filter_map(template).collect());
        let spec = family.get(usize::from(id.checked_sub(FIRST_ID)?))?;
        Some(&spec.fields)
    }

    /// The data template `id` (256..=375), field order as OVS sends it.
    pub fn template(id: u16) -> Option<TemplateSpec> {
        let index = id.checked_sub(FIRST_ID).filter(|i| *i < COUNT)?;
        let egress = index % 2 == 1;
        let tunnel = (index / 2) % 2 == 1;
        let l4 = (index / 4) % 5;
        let l3 = (index / 20) % 3;
        let l2 = index / 60;
        let iana = Field::iana;
        let mut f = vec![iana(138, 4), iana(61, 1)];
        f.extend([iana(56, 6), iana(80, 6), iana(256, 2), iana(240, 1)]);
        f.extend([
            iana(10, 4),
            iana(368, 4),
            iana(82, VARLEN),
            iana(83, VARLEN),
        ]);
        if egress {
            f.extend([
                iana(14, 4),
                iana(369, 4),
                iana(82, VARLEN),
                iana(83, VARLEN),
            ]);
        }
        if l2 == 1 {
            f.extend([iana(58, 2), iana(243, 2), iana(244, 1)]);
        }
        if l3 != 0 {
            f.extend([
                iana(60, 1),
                iana(192, 1),
                iana(4, 1),
                iana(195, 1),
                iana(196, 1),
                iana(5, 1),
            ]);
            if l3 == 1 {
                f.extend([iana(8, 4), iana(12, 4)]);
            } else {
                f.extend([iana(27, 16), iana(28, 16), iana(31, 4)]);
            }
            match (l4, l3) {
                (1..=3, _) => f.extend([iana(7, 2), iana(11, 2)]),
                (4, 1) => f.extend([iana(176, 1), iana(177, 1)]),
                (4, _) => f.extend([iana(178, 1), iana(179, 1)]),
                _ => {}
            }
        }
        if tunnel {
            let ovs = |id, len| Field::enterprise(PEN_OVS, id, len);
            f.extend([
                ovs(891, 1),
                ovs(892, VARLEN),
                ovs(893, 4),
                ovs(894, 4),
                ovs(895, 1),
                ovs(896, 2),
                ovs(897, 2),
            ]);
        }
        f.extend([iana(158, 4), iana(159, 4), iana(133, 8), iana(135, 8)]);
        f.extend([iana(2, 8), iana(86, 8)]);
        f.extend([
            iana(354, 8),
            iana(355, 8),
            iana(356, 8),
            iana(357, 8),
            iana(358, 8),
        ]);
        f.extend([
            iana(19, 8),
            iana(174, 8),
            iana(352, 8),
            iana(353, 8),
            iana(136, 1),
        ]);
        Some(TemplateSpec {
            id,
            scope_fields: 0,
            fields: f,
        })
    }

    /// All 120 data templates.
    pub fn templates() -> Vec<TemplateSpec> {
        (FIRST_ID..FIRST_ID + COUNT).filter_map(template).collect()
    }

    /// The exporter-statistics options template.
    pub fn options_template() -> TemplateSpec {
        TemplateSpec {
            id: OPTIONS_ID,
            scope_fields: 1,
            fields: vec![Field::iana(144, 4), Field::iana(167, 8)],
        }
    }

    /// One OVS-style message: optionally every template first, then one data set per template
    /// used by `records`, in order of first use.
    pub fn message(
        export_time: u32,
        sequence: u32,
        with_templates: bool,
        records: &[FlowRecord],
        ctx: &EncodeContext,
    ) -> Vec<u8> {
        let mut w = MessageWriter::new(export_time, sequence, 0);
        if with_templates {
            let mut all = templates();
            all.push(options_template());
            w.templates(&all);
        }
        let mut done: Vec<u16> = Vec::new();
        for rec in records {
            let id = template_id_for(rec);
            if done.contains(&id) {
                continue;
            }
            done.push(id);
            let group: Vec<FlowRecord> = records
                .iter()
                .filter(|r| template_id_for(r) == id)
                .copied()
                .collect();
            if let Some(t) = template(id) {
                w.data(&t, &group, ctx);
            }
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ie::{PEN_OVS, VARLEN};
    use crate::decode::template::{CacheLimits, EarlyLimits};
    use crate::decode::test_support::{T0, errors, init_time_options, meta_at, run};
    use crate::decode::{
        Collected, Counted, Decoder, DecoderConfig, Protocol,
        sampling::{ConfiguredRate, SamplerKey},
    };
    use crate::record::{FlowRecord, ipv4_bytes};
    use bytemuck::Zeroable;

    const EXPORTER: &str = "192.0.2.10:4739";

    /// Header, a template set (template 256: src/dst IPv4, ports, proto, octetDeltaCount in 4 bytes,
    /// packetDeltaCount, flowStart/EndMilliseconds) and a data set of one record plus 3 padding bytes.
    #[rustfmt::skip]
    static MESSAGE: [u8; 108] = [
        0x00, 0x0a, 0x00, 0x6c, 0x65, 0x53, 0xf1, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x07,
        // template set: id 2, length 44; template 256, 9 fields
        0x00, 0x02, 0x00, 0x2c, 0x01, 0x00, 0x00, 0x09,
        0x00, 0x08, 0x00, 0x04, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x07, 0x00, 0x02, 0x00, 0x0b, 0x00, 0x02,
        0x00, 0x04, 0x00, 0x01, 0x00, 0x01, 0x00, 0x04, 0x00, 0x02, 0x00, 0x08, 0x00, 0x98, 0x00, 0x08,
        0x00, 0x99, 0x00, 0x08,
        // data set: id 256, length 48
        0x01, 0x00, 0x00, 0x30,
        192, 0, 2, 1, 198, 51, 100, 2, 0x30, 0x39, 0x00, 0x35, 17,
        0x00, 0x00, 0x05, 0xdc,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x40, 0xf0,
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x65, 0x12,
        0x00, 0x00, 0x00,
    ];

    fn template_256() -> TemplateSpec {
        TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: [
                (8, 4),
                (12, 4),
                (7, 2),
                (11, 2),
                (4, 1),
                (1, 4),
                (2, 8),
                (152, 8),
                (153, 8),
            ]
            .map(|(id, len)| Field::iana(id, len))
            .to_vec(),
        }
    }

    fn ipv6(text: &str) -> [u8; 16] {
        text.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    fn flow() -> FlowRecord {
        let mut r = FlowRecord::zeroed();
        r.src_addr = ipv4_bytes([192, 0, 2, 1]);
        r.dst_addr = ipv4_bytes([198, 51, 100, 2]);
        r.src_port = 12345;
        r.dst_port = 53;
        r.proto = 17;
        r.bytes = 1500;
        r.packets = 10;
        r.time_flow_start_ns = 1_699_999_990_000_000_000;
        r.time_flow_end_ns = 1_699_999_999_250_000_000;
        r
    }

    #[test]
    fn deconstruct_header() {
        let h = Header::new_checked(&MESSAGE[..]).unwrap();
        assert_eq!(h.version(), 10);
        assert_eq!(
            HeaderRepr::parse(&h),
            HeaderRepr {
                length: 108,
                export_time: 1_700_000_000,
                sequence: 5,
                domain: 7
            }
        );
        assert_eq!(
            Header::new_checked(&MESSAGE[..15]).err(),
            Some(ErrorReason::TruncatedHeader)
        );
    }

    #[test]
    fn decode_template_and_data_with_padding() {
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &MESSAGE);
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 1, "3 trailing bytes are padding");
        let r = sink.flows[0];
        let mut want = flow();
        want.flow_type = FlowType::Ipfix as u8;
        want.time_received_ns = T0;
        want.exporter_addr = ipv4_bytes([192, 0, 2, 10]);
        want.exporter_port = 4739;
        want.observation_domain_id = 7;
        want.sequence_num = 5;
        assert_eq!(r, want);
        assert_eq!(dec.stats.templates_learned, 1);
        assert_eq!(dec.stats.records[Protocol::Ipfix.index()], 1);
    }

    #[test]
    fn construct_matches_the_byte_array() {
        let mut w = MessageWriter::new(1_700_000_000, 5, 7);
        w.templates(&[template_256()]);
        let mut body = Vec::new();
        for f in &template_256().fields {
            ie::encode(
                f.pen,
                f.id,
                f.len,
                &flow(),
                &EncodeContext::default(),
                &mut body,
            );
        }
        body.extend([0, 0, 0]);
        w.raw_set(256, &body);
        assert_eq!(w.finish(), MESSAGE.to_vec());
    }

    fn decode_all(dec: &mut Decoder, messages: &[Vec<u8>]) -> Vec<FlowRecord> {
        let mut all = Vec::new();
        for m in messages {
            let (sink, _) = run(dec, EXPORTER, m);
            all.extend(sink.flows);
        }
        all
    }

    fn one_field_template(fields: &[Field]) -> TemplateSpec {
        TemplateSpec {
            id: 300,
            scope_fields: 0,
            fields: fields.to_vec(),
        }
    }

    #[test]
    fn every_timestamp_form() {
        let export = 1_700_000_100u32;
        let ctx = EncodeContext {
            clock: ExportClock {
                export_ns: u64::from(export) * 1_000_000_000,
                uptime_ms: None,
            },
            init_ms: 1_699_000_000_000,
            interface_name: "",
        };
        let mut rec = flow();
        rec.time_flow_start_ns = 1_700_000_040_123_456_789;
        rec.time_flow_end_ns = 1_700_000_099_999_999_999;
        let us = |ns: u64| ns / 1000 * 1000;
        let ms = |ns: u64| ns / 1_000_000 * 1_000_000;
        let s = |ns: u64| ns / 1_000_000_000 * 1_000_000_000;
        let (st, en) = (rec.time_flow_start_ns, rec.time_flow_end_ns);
        let cases: [(&[Field], u64, u64); 6] = [
            (&[Field::iana(150, 4), Field::iana(151, 4)], s(st), s(en)),
            (&[Field::iana(152, 8), Field::iana(153, 8)], ms(st), ms(en)),
            (&[Field::iana(154, 8), Field::iana(155, 8)], us(st), us(en)),
            (&[Field::iana(156, 8), Field::iana(157, 8)], st, en),
            // Delta µs before the export time: truncation rounds the time up to the µs.
            (
                &[Field::iana(158, 4), Field::iana(159, 4)],
                us(st) + 1000,
                us(en) + 1000,
            ),
            (
                &[Field::iana(160, 8), Field::iana(22, 4), Field::iana(21, 4)],
                ms(st),
                ms(en),
            ),
        ];
        for (fields, start, end) in cases {
            let t = one_field_template(fields);
            let mut w = MessageWriter::new(export, 0, 0);
            w.templates(std::slice::from_ref(&t)).data(&t, &[rec], &ctx);
            let mut dec = Decoder::new();
            let got = decode_all(&mut dec, &[w.finish()]);
            assert_eq!(got.len(), 1, "{fields:?}");
            assert_eq!(
                (got[0].time_flow_start_ns, got[0].time_flow_end_ns),
                (start, end),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn templates_belong_to_the_transport_session() {
        // Two exporters behind one address (a SNAT'ing Service, softflowd next to OVS), both in
        // domain 0 with template 256 of different layouts (RFC 7011 §8: template ids are scoped
        // by transport session and domain). Each one's data decodes with its own template.
        let a = template_256();
        let b = TemplateSpec {
            fields: [(27, 16), (28, 16), (2, 8), (1, 8)]
                .map(|(id, len)| Field::iana(id, len))
                .to_vec(),
            ..template_256()
        };
        let mut v6 = flow();
        (v6.src_addr, v6.dst_addr) = (ipv6("2001:db8::1"), ipv6("2001:db8::2"));
        let ctx = EncodeContext::default();
        let message = |t: &TemplateSpec, rec: &FlowRecord, templates: bool| {
            let mut w = MessageWriter::new(1_700_000_000, 0, 0);
            if templates {
                w.templates(std::slice::from_ref(t));
            }
            w.data(t, std::slice::from_ref(rec), &ctx);
            w.finish()
        };
        let mut dec = Decoder::new();
        let (from_a, from_b) = ("192.0.2.10:50000", "192.0.2.10:50001");
        assert_eq!(run(&mut dec, from_a, &message(&a, &flow(), true)).1, Ok(()));
        assert_eq!(run(&mut dec, from_b, &message(&b, &v6, true)).1, Ok(()));
        assert_eq!(
            dec.stats.templates_changed, 0,
            "no template replaced another"
        );
        let (sink, result) = run(&mut dec, from_a, &message(&a, &flow(), false));
        assert_eq!(result, Ok(()));
        assert_eq!(
            (sink.flows[0].src_addr, sink.flows[0].src_port),
            (flow().src_addr, 12345)
        );
        let (sink, result) = run(&mut dec, from_b, &message(&b, &v6, false));
        assert_eq!(result, Ok(()));
        assert_eq!(
            (sink.flows[0].src_addr, sink.flows[0].bytes),
            (v6.src_addr, v6.bytes)
        );
        // A third session on that address has no template 256.
        let (_, result) = run(&mut dec, "192.0.2.10:50002", &message(&a, &flow(), false));
        assert_eq!(result, Err(ErrorReason::TemplateMissing));
    }

    #[test]
    fn withdrawal_single_and_all() {
        let t = |id| TemplateSpec {
            id,
            ..template_256()
        };
        let opt = TemplateSpec {
            id: 400,
            scope_fields: 1,
            fields: vec![Field::iana(302, 4), Field::iana(34, 4)],
        };
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&[t(256), t(257), t(258), opt.clone()]);
        let mut dec = Decoder::new();
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.templates().len(), 4);
        let mut w = MessageWriter::new(0, 0, 0);
        w.withdrawal(TEMPLATE_SET, 257);
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.templates().len(), 3);
        let mut w = MessageWriter::new(0, 0, 0);
        w.data(&t(257), &[flow()], &EncodeContext::default());
        assert_eq!(
            run(&mut dec, EXPORTER, &w.finish()).1,
            Err(ErrorReason::TemplateMissing)
        );
        // Id 2 withdraws every data template of the domain, not the options template.
        let mut w = MessageWriter::new(0, 0, 0);
        w.withdrawal(TEMPLATE_SET, TEMPLATE_SET);
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.templates().len(), 1);
        let mut w = MessageWriter::new(0, 0, 0);
        w.withdrawal(OPTIONS_TEMPLATE_SET, OPTIONS_TEMPLATE_SET);
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.templates().len(), 0);
        assert_eq!(dec.stats.templates_withdrawn, 4);
        // Withdrawing id 5 is malformed.
        let mut w = MessageWriter::new(0, 0, 0);
        w.withdrawal(TEMPLATE_SET, 5);
        assert_eq!(
            run(&mut dec, EXPORTER, &w.finish()).1,
            Err(ErrorReason::BadTemplate)
        );
    }

    #[test]
    fn redefinition_replaces() {
        let mut dec = Decoder::new();
        assert_eq!(run(&mut dec, EXPORTER, &MESSAGE).1, Ok(()));
        let t = one_field_template(&[Field::iana(4, 1)]);
        let t = TemplateSpec { id: 256, ..t };
        let mut w = MessageWriter::new(0, 0, 7);
        w.templates(std::slice::from_ref(&t))
            .data(&t, &[flow()], &EncodeContext::default());
        let got = decode_all(&mut dec, &[w.finish()]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].proto, got[0].bytes), (17, 0));
        assert_eq!(dec.stats.templates_redefined, 1);
        assert_eq!(
            dec.stats.templates_changed, 1,
            "another layout under the same key"
        );
        assert_eq!(dec.templates().len(), 1);
    }

    #[test]
    fn templates_are_scoped_by_exporter_and_domain() {
        // Two OVS nodes, both domain 0 and template 256, with different definitions.
        let a = TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![Field::iana(4, 1)],
        };
        let b = TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![Field::iana(7, 2)],
        };
        let mut rec = flow();
        rec.proto = 6;
        let ctx = EncodeContext::default();
        let mut dec = Decoder::new();
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&a));
        assert_eq!(run(&mut dec, "10.0.0.1:999", &w.finish()).1, Ok(()));
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&b));
        assert_eq!(run(&mut dec, "10.0.0.2:999", &w.finish()).1, Ok(()));
        let mut w = MessageWriter::new(0, 0, 0);
        w.data(&a, &[rec], &ctx);
        let (sa, _) = run(&mut dec, "10.0.0.1:999", &w.finish());
        let mut w = MessageWriter::new(0, 0, 0);
        w.data(&b, &[rec], &ctx);
        let (sb, _) = run(&mut dec, "10.0.0.2:999", &w.finish());
        assert_eq!((sa.flows[0].proto, sa.flows[0].src_port), (6, 0));
        assert_eq!((sb.flows[0].proto, sb.flows[0].src_port), (0, 12345));
        // Same exporter, another domain: unknown there.
        let mut w = MessageWriter::new(0, 0, 9);
        w.data(&a, &[rec], &ctx);
        assert_eq!(
            run(&mut dec, "10.0.0.1:999", &w.finish()).1,
            Err(ErrorReason::TemplateMissing)
        );
    }

    #[test]
    fn options_data_sets_the_sampling_rate_in_the_same_message() {
        // Options template (scope selectorId 302; samplingPacketInterval 305, samplingPacketSpace 306),
        // its data (selector 5: 1 of 400), then data records naming selector 5 — all in one message.
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            OPTIONS_TEMPLATE_SET,
            &[
                0x01, 0x90, 0x00, 0x03, 0x00, 0x01, 0x01, 0x2e, 0x00, 0x04, 0x01, 0x31, 0x00, 0x04,
                0x01, 0x32, 0x00, 0x04,
            ],
        );
        w.raw_set(400, &[0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 1, 0x8f]);
        let t = one_field_template(&[Field::iana(302, 4), Field::iana(4, 1)]);
        let mut rec = flow();
        rec.sampler_id = 5;
        w.templates(std::slice::from_ref(&t))
            .data(&t, &[rec], &EncodeContext::default());
        let mut dec = Decoder::new();
        let mut sink = Collected::default();
        let (counted, result) = dec.decode_counted(&meta_at(EXPORTER, T0), &w.finish(), &mut sink);
        assert_eq!(result, Ok(()));
        // IPFIX sequence numbers count data records, the options record too.
        let units = Counted {
            records: 1,
            sequence_units: 2,
        };
        assert_eq!(counted, units);
        assert_eq!(dec.stats.options_records, 1);
        assert_eq!(dec.stats.sampling_rates_learned, 1);
        assert_eq!(
            (sink.flows[0].sampler_id, sink.flows[0].sampling_rate),
            (5, 400)
        );
    }

    #[test]
    fn uptime_times_use_init_time_learned_from_options() {
        // Options template 401 (scope exportingProcessId 144; systemInitTimeMilliseconds 160), its
        // record, then a data template with flowStartSysUpTime/flowEndSysUpTime (22/21) only.
        let (opt, ctx) = init_time_options();
        let data = one_field_template(&[Field::iana(22, 4), Field::iana(21, 4)]);
        let mut w = MessageWriter::new(1_700_000_000, 0, 0);
        w.templates(&[opt.clone(), data.clone()])
            .data(&opt, &[flow()], &ctx)
            .data(&data, &[flow()], &ctx);
        let mut dec = Decoder::new();
        let got = decode_all(&mut dec, &[w.finish()]);
        assert_eq!(got[0].time_flow_start_ns, flow().time_flow_start_ns);
        assert_eq!(got[0].time_flow_end_ns, flow().time_flow_end_ns);
        // Without the options record the times are unknown (0), not garbage.
        let mut w = MessageWriter::new(1_700_000_000, 0, 0);
        w.templates(std::slice::from_ref(&data))
            .data(&data, &[flow()], &ctx);
        let got = decode_all(&mut Decoder::new(), &[w.finish()]);
        assert_eq!((got[0].time_flow_start_ns, got[0].time_flow_end_ns), (0, 0));
    }

    #[test]
    fn configured_rate_fills_the_gap_and_override_wins() {
        let cfg = |over| DecoderConfig {
            sampling: vec![ConfiguredRate {
                prefix: "192.0.2.0".parse().unwrap(),
                prefix_len: 24,
                rate: 400,
                override_exported: over,
            }],
            ..Default::default()
        };
        let t = one_field_template(&[Field::iana(34, 4), Field::iana(4, 1)]);
        let mut with_rate = flow();
        with_rate.sampling_rate = 64;
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&t))
            .data(&t, &[with_rate], &EncodeContext::default());
        let msg = w.finish();
        let mut dec = Decoder::with_config(cfg(false));
        assert_eq!(
            decode_all(&mut dec, std::slice::from_ref(&msg))[0].sampling_rate,
            64
        );
        let mut dec = Decoder::with_config(cfg(true));
        assert_eq!(decode_all(&mut dec, &[msg])[0].sampling_rate, 400);
        let mut dec = Decoder::with_config(cfg(false));
        assert_eq!(
            decode_all(&mut dec, &[MESSAGE.to_vec()])[0].sampling_rate,
            400
        );
    }

    #[test]
    fn early_data_is_held_then_decoded_when_the_template_arrives() {
        let mut data = MessageWriter::new(1_700_000_000, 5, 7);
        data.data(
            &template_256(),
            &[flow(), flow()],
            &EncodeContext::default(),
        );
        let mut tmpl = MessageWriter::new(1_700_000_001, 7, 7);
        tmpl.templates(&[template_256()]);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &data.finish());
        assert_eq!(result, Err(ErrorReason::TemplateMissing));
        assert!(sink.flows.is_empty());
        assert_eq!(dec.stats.early_data_held, 1);
        let (sink, result) = run(&mut dec, EXPORTER, &tmpl.finish());
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 2);
        // Decoded as on arrival: its own header's sequence and export time.
        assert_eq!(sink.flows[0].sequence_num, 5);
        assert_eq!(sink.flows[0].time_flow_start_ns, flow().time_flow_start_ns);
        assert_eq!(dec.stats.early_data_replayed, 1);
        assert_eq!(dec.stats.records[Protocol::Ipfix.index()], 2);
        assert_eq!(dec.stats.early_data_bytes, 0);
    }

    #[test]
    fn early_data_ages_out_and_overflows_counted() {
        let cfg = DecoderConfig {
            early_limits: EarlyLimits {
                per_exporter_bytes: 200,
                total_bytes: 1000,
                max_age_ns: 1_000_000_000,
            },
            ..Default::default()
        };
        let mut dec = Decoder::with_config(cfg);
        let mut data = MessageWriter::new(1_700_000_000, 0, 7);
        data.data(
            &template_256(),
            &[flow(), flow(), flow()],
            &EncodeContext::default(),
        );
        let data = data.finish();
        let mut sink = Collected::default();
        assert_eq!(
            dec.decode(&meta_at(EXPORTER, T0), &data, &mut sink),
            Err(ErrorReason::TemplateMissing)
        );
        // 123 bytes held; a second set does not fit in 200.
        assert_eq!(
            dec.decode(&meta_at(EXPORTER, T0), &data, &mut sink),
            Err(ErrorReason::TemplateMissing)
        );
        assert_eq!(errors(&dec, ErrorReason::EarlyDataDropped), 1);
        let mut tmpl = MessageWriter::new(1_700_000_002, 0, 7);
        tmpl.templates(&[template_256()]);
        dec.decode(
            &meta_at(EXPORTER, T0 + 2_000_000_000),
            &tmpl.finish(),
            &mut sink,
        )
        .unwrap();
        assert!(sink.flows.is_empty());
        assert_eq!(errors(&dec, ErrorReason::EarlyDataDropped), 2);
        assert_eq!(errors(&dec, ErrorReason::TemplateMissing), 2);
    }

    #[test]
    fn early_data_of_a_quiet_exporter_ages_out_by_the_clock_and_is_counted_at_the_end() {
        let cfg = DecoderConfig {
            early_limits: EarlyLimits {
                max_age_ns: 1_000_000_000,
                ..EarlyLimits::default()
            },
            ..Default::default()
        };
        let mut dec = Decoder::with_config(cfg);
        let mut data = MessageWriter::new(1_700_000_000, 0, 7);
        data.data(&template_256(), &[flow()], &EncodeContext::default());
        let data = data.finish();
        let mut sink = Collected::default();
        let other = "192.0.2.200:4739";
        for (exporter, at) in [(EXPORTER, T0), (other, T0 + 900_000_000)] {
            assert_eq!(
                dec.decode(&meta_at(exporter, at), &data, &mut sink),
                Err(ErrorReason::TemplateMissing)
            );
        }
        assert_eq!(dec.stats.early_data_held, 2);
        let held = dec.stats.early_data_bytes;
        // Neither exporter sends again. Before the age cap nothing goes; past it for the first
        // set only, that one, and the sizes follow.
        dec.housekeeping(T0 + 1_000_000_000);
        assert_eq!(errors(&dec, ErrorReason::EarlyDataDropped), 0);
        dec.housekeeping(T0 + 1_500_000_000);
        assert_eq!(errors(&dec, ErrorReason::EarlyDataDropped), 1);
        assert!(dec.stats.early_data_bytes > 0 && dec.stats.early_data_bytes < held);
        // Stopping drops and counts the rest: every set held is accounted for.
        dec.finish();
        assert_eq!(errors(&dec, ErrorReason::EarlyDataDropped), 2);
        assert_eq!(dec.stats.early_data_bytes, 0);
        assert!(sink.flows.is_empty());
    }

    #[test]
    fn varlen_enterprise_and_repeated_elements() {
        // interfaceName (var, 300 bytes: 3-byte length), OVS tunnelKey (var), an unknown enterprise
        // element (PEN 9, 2 bytes) skipped, sourceIPv4Address twice: the first is kept.
        let t = one_field_template(&[
            Field::iana(82, VARLEN),
            Field::enterprise(PEN_OVS, 892, VARLEN),
            Field::enterprise(9, 1, 2),
            Field::iana(8, 4),
            Field::iana(8, 4),
        ]);
        let mut body = vec![255, 0x01, 0x2c];
        body.extend([b'x'; 300]);
        body.extend([3, 0x01, 0x02, 0x03, 0xaa, 0xbb, 10, 0, 0, 1, 10, 0, 0, 2]);
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&t)).raw_set(300, &body);
        let mut dec = Decoder::new();
        let got = decode_all(&mut dec, &[w.finish()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tunnel_key, 0x010203);
        assert_eq!(got[0].src_addr, ipv4_bytes([10, 0, 0, 1]));
        assert_eq!(got[0].bytes, 0, "PEN 9 element 1 is not octetDeltaCount");
    }

    #[test]
    fn ovs_family_round_trips() {
        let templates = ovs::templates();
        assert_eq!(templates.len(), 120);
        assert_eq!(ovs::template_id(1, 2, 4, true, true), 375);
        let mut rec = flow();
        rec.etype = 0x0800;
        rec.proto = 17;
        rec.flow_direction = 1;
        rec.in_if = 3;
        rec.out_if = 4;
        rec.tunnel_type = 1;
        rec.tunnel_key = 5001;
        rec.tunnel_src_addr = ipv4_bytes([172, 16, 0, 1]);
        rec.tunnel_dst_addr = ipv4_bytes([172, 16, 0, 2]);
        rec.tunnel_proto = 17;
        rec.tunnel_dst_port = 4789;
        rec.src_mac = [2, 0, 0, 0, 0, 1];
        rec.dst_mac = [2, 0, 0, 0, 0, 2];
        rec.ip_ttl = 64;
        rec.ip_tos = 0xb8;
        rec.flow_end_reason = 2;
        let mut v6 = rec;
        v6.etype = 0x86dd;
        v6.proto = 58;
        (v6.src_addr, v6.dst_addr) = (ipv6("2001:db8::1"), ipv6("2001:db8::2"));
        v6.ipv6_flow_label = 0xabcde;
        v6.icmp_type = 128;
        v6.vlan_id = 100;
        v6.tunnel_type = 0;
        v6.src_port = 0;
        v6.dst_port = 0;
        let ctx = EncodeContext {
            clock: ExportClock {
                export_ns: 1_700_000_000_000_000_000,
                uptime_ms: None,
            },
            init_ms: 0,
            interface_name: "ovn-k8s-mp0",
        };
        let msg = ovs::message(1_700_000_000, 0, true, &[rec, v6], &ctx);
        let mut dec = Decoder::new();
        let got = decode_all(&mut dec, &[msg]);
        assert_eq!(dec.templates().len(), 121);
        assert_eq!(got.len(), 2);
        for (g, want) in got.iter().zip([rec, v6]) {
            let mut want = want;
            want.flow_type = FlowType::Ipfix as u8;
            want.time_received_ns = T0;
            want.exporter_addr = ipv4_bytes([192, 0, 2, 10]);
            want.exporter_port = 4739;
            if want.tunnel_type == 0 {
                want.tunnel_key = 0;
                want.tunnel_src_addr = [0; 16];
                want.tunnel_dst_addr = [0; 16];
                want.tunnel_proto = 0;
                want.tunnel_dst_port = 0;
            }
            if want.etype == 0x86dd {
                want.src_port = 0;
            }
            assert_eq!(*g, want);
        }
        // Memory: every OVS template within the 256-byte budget.
        let mut largest = (0, 0);
        for t in &templates {
            let compiled =
                crate::decode::template::Template::compile(TemplateKind::Data, &t.fields).unwrap();
            assert!(
                compiled.cached_bytes() <= 256,
                "template {}: {} B",
                t.id,
                compiled.cached_bytes()
            );
            largest = largest.max((compiled.cached_bytes(), compiled.steps().len()));
        }
        eprintln!(
            "largest OVS template: {} cached bytes, {} steps",
            largest.0, largest.1
        );
    }

    #[test]
    fn sequence_counts_data_records_per_domain() {
        let mut dec = Decoder::new();
        let send = |dec: &mut Decoder, seq: u32, n: usize| {
            let mut w = MessageWriter::new(0, seq, 7);
            w.templates(&[template_256()]).data(
                &template_256(),
                &vec![flow(); n],
                &EncodeContext::default(),
            );
            assert_eq!(run(dec, EXPORTER, &w.finish()).1, Ok(()));
        };
        send(&mut dec, 0, 3);
        send(&mut dec, 3, 2);
        send(&mut dec, 9, 1);
        let counts: Vec<_> = dec.sequence_counts().collect();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].0.domain, 7);
        assert_eq!(counts[0].1.lost, 4);
    }

    #[test]
    fn options_records_in_or_out_of_the_numbering_are_both_followed() {
        // One domain, flow records and now and then an options record. RFC 7011 counts options
        // records among the data records (Open vSwitch does); softflowd leaves them out and
        // numbers each message by its last flow. Neither shows loss, late messages or restarts;
        // a real gap after the options still counts.
        let flows = template_256();
        let stats = ovs::options_template();
        let ctx = EncodeContext::default();
        let message = |seq: u32, n: usize, options: usize| {
            let mut w = MessageWriter::new(1_700_000_000, seq, 0);
            w.templates(&[flows.clone(), stats.clone()]);
            if options > 0 {
                w.data(&stats, &vec![flow(); options], &ctx);
            }
            w.data(&flows, &vec![flow(); n], &ctx);
            w.finish()
        };
        let anomalies = |dec: &Decoder| -> Vec<(u64, u64, u64)> {
            dec.sequence_counts()
                .map(|(_, c)| (c.lost, c.late, c.restarts))
                .collect()
        };
        // (sequence number, flows, options records)
        let counted = [(0, 3, 1), (4, 3, 0), (7, 2, 1), (10, 3, 0), (13, 2, 0)];
        let softflowd = [(3, 3, 1), (6, 3, 0), (8, 2, 1), (11, 3, 0), (13, 2, 0)];
        for messages in [counted, softflowd] {
            let mut dec = Decoder::new();
            for (seq, n, options) in messages {
                assert_eq!(run(&mut dec, EXPORTER, &message(seq, n, options)).1, Ok(()));
            }
            assert_eq!(anomalies(&dec), [(0, 0, 0)], "{messages:?}");
            // An options record alone, then 4 flow records lost.
            let (options, after_gap) = match messages == counted {
                true => (15, 16 + 4),
                false => (13, 13 + 4 + 2),
            };
            assert_eq!(run(&mut dec, EXPORTER, &message(options, 0, 1)).1, Ok(()));
            assert_eq!(run(&mut dec, EXPORTER, &message(after_gap, 2, 0)).1, Ok(()));
            assert_eq!(anomalies(&dec), [(4, 0, 0)], "{messages:?}");
        }
    }

    #[test]
    fn an_idle_session_forgets_its_templates() {
        // RFC 7011 §8.4: templates received over UDP have a lifetime. A session silent for more
        // than 30 minutes is forgotten; its data then waits for the templates to be resent.
        let t = template_256();
        let ctx = EncodeContext::default();
        let mut w = MessageWriter::new(1_700_000_000, 0, 0);
        w.templates(std::slice::from_ref(&t));
        let templates = w.finish();
        let mut w = MessageWriter::new(1_700_000_000, 0, 0);
        w.data(&t, &[flow()], &ctx);
        let data = w.finish();
        let minutes = |m: u64| T0 + m * 60_000_000_000;
        let mut dec = Decoder::new();
        let mut sink = Collected::default();
        let mut at = |dec: &mut Decoder, m: u64, bytes: &[u8]| {
            dec.decode(&meta_at(EXPORTER, minutes(m)), bytes, &mut sink)
        };
        assert_eq!(at(&mut dec, 0, &templates), Ok(()));
        assert_eq!(at(&mut dec, 29, &data), Ok(()), "used: idle from here");
        assert_eq!(at(&mut dec, 58, &data), Ok(()));
        assert_eq!(dec.stats.templates_expired, 0);
        assert_eq!(at(&mut dec, 89, &data), Err(ErrorReason::TemplateMissing));
        assert_eq!(dec.stats.templates_expired, 1);
        assert_eq!(at(&mut dec, 89, &templates), Ok(()));
        assert_eq!(dec.stats.early_data_replayed, 1, "the held set is decoded");
    }

    #[test]
    fn one_counter_over_all_domains_is_learned() {
        // Open vSwitch numbers all domains with one counter: flow records in domain 5, its
        // statistics options record in domain 0 now and then. No loss by either domain's count.
        let flows = template_256();
        let stats = ovs::options_template();
        let ctx = EncodeContext::default();
        let message = |seq: u32, domain: u32, t: &TemplateSpec, n: usize| {
            let mut w = MessageWriter::new(1_700_000_000, seq, domain);
            w.templates(std::slice::from_ref(t))
                .data(t, &vec![flow(); n], &ctx);
            w.finish()
        };
        let mut dec = Decoder::new();
        let lost = |dec: &Decoder| -> Vec<(u32, u64)> {
            let mut v: Vec<_> = dec
                .sequence_counts()
                .map(|(space, c)| (space.domain, c.lost + c.late + c.restarts))
                .collect();
            v.sort();
            v
        };
        for (seq, domain, t, n) in [
            (0, 5, &flows, 3),
            (3, 0, &stats, 1),
            (4, 5, &flows, 3),
            (7, 5, &flows, 2),
            (9, 0, &stats, 1),
            (10, 5, &flows, 2),
        ] {
            assert_eq!(
                run(&mut dec, EXPORTER, &message(seq, domain, t, n)).1,
                Ok(())
            );
        }
        assert_eq!(lost(&dec), [(0, 0), (5, 0)]);
        // A lost flow message (12..=21) is counted once.
        assert_eq!(
            run(&mut dec, EXPORTER, &message(22, 5, &flows, 1)).1,
            Ok(())
        );
        assert_eq!(
            run(&mut dec, EXPORTER, &message(23, 0, &stats, 1)).1,
            Ok(())
        );
        assert_eq!(lost(&dec), [(0, 0), (5, 10)]);
    }

    #[test]
    fn malformed_messages_are_named_and_counted() {
        let mut dec = Decoder::new();
        let case = |dec: &mut Decoder, bytes: &[u8], want: ErrorReason| {
            let (_, result) = run(dec, EXPORTER, bytes);
            assert_eq!(result, Err(want), "{bytes:02x?}");
        };
        case(&mut dec, &MESSAGE[..12], ErrorReason::TruncatedHeader);
        let mut long = MESSAGE;
        long[3] = 0x6d; // 109 > 108
        case(&mut dec, &long, ErrorReason::BadMessageLength);
        let mut short = MESSAGE;
        short[3] = 0x0f; // 15 < 16
        case(&mut dec, &short, ErrorReason::BadMessageLength);
        let mut set = MESSAGE;
        set[19] = 0x03; // set length 3
        case(&mut dec, &set, ErrorReason::BadSetLength);
        let mut set = MESSAGE;
        set[19] = 0xff; // set length past the message
        case(&mut dec, &set, ErrorReason::BadSetLength);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(5, &[0; 4]);
        case(&mut dec, &w.finish(), ErrorReason::BadSetId);
        // Template id below 256; field list cut short; options scope count 0 / above count.
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            TEMPLATE_SET,
            &[0x00, 0xff, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            TEMPLATE_SET,
            &[0x01, 0x00, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            TEMPLATE_SET,
            &[0x01, 0x00, 0x00, 0x01, 0x80, 0x08, 0x00, 0x04, 0x00],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            OPTIONS_TEMPLATE_SET,
            &[0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            OPTIONS_TEMPLATE_SET,
            &[0x01, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        // Zero-length field; more fields than allowed; records too long for a message.
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            TEMPLATE_SET,
            &[0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00],
        );
        case(&mut dec, &w.finish(), ErrorReason::BadTemplate);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(TEMPLATE_SET, &[0x01, 0x00, 0x02, 0x01]);
        case(&mut dec, &w.finish(), ErrorReason::TemplateTooLarge);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(
            TEMPLATE_SET,
            &[
                0x01, 0x00, 0x00, 0x02, 0x00, 0x52, 0xff, 0x00, 0x00, 0x52, 0xff, 0x00,
            ],
        );
        case(&mut dec, &w.finish(), ErrorReason::TemplateTooLarge);
        // A variable-length field running past the record; a fixed field after it cut short.
        let t = one_field_template(&[Field::iana(82, VARLEN), Field::iana(1, 4)]);
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&t))
            .raw_set(300, &[9, 1, 2, 3, 4, 5]);
        case(&mut dec, &w.finish(), ErrorReason::BadVariableLength);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(300, &[2, 1, 2, 3, 4, 5]);
        case(&mut dec, &w.finish(), ErrorReason::TruncatedRecord);
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(999, &[1, 2, 3, 4]);
        case(&mut dec, &w.finish(), ErrorReason::TemplateMissing);
        for reason in [
            ErrorReason::TruncatedHeader,
            ErrorReason::BadMessageLength,
            ErrorReason::BadSetLength,
            ErrorReason::BadSetId,
            ErrorReason::BadTemplate,
            ErrorReason::TemplateTooLarge,
            ErrorReason::BadVariableLength,
            ErrorReason::TruncatedRecord,
            ErrorReason::TemplateMissing,
        ] {
            assert!(errors(&dec, reason) >= 1, "{reason}");
        }
    }

    #[test]
    fn set_errors_after_the_first_are_counted_once_each() {
        let mut w = MessageWriter::new(0, 0, 0);
        w.raw_set(5, &[]).raw_set(6, &[]).raw_set(999, &[1]);
        let mut dec = Decoder::new();
        assert_eq!(
            run(&mut dec, EXPORTER, &w.finish()).1,
            Err(ErrorReason::BadSetId)
        );
        assert_eq!(errors(&dec, ErrorReason::BadSetId), 2);
        assert_eq!(errors(&dec, ErrorReason::TemplateMissing), 1);
    }

    #[test]
    fn template_cache_caps_evict_and_count() {
        let cfg = DecoderConfig {
            template_limits: CacheLimits {
                total_bytes: 1 << 20,
                per_exporter_bytes: 600,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut dec = Decoder::with_config(cfg);
        let templates: Vec<_> = (256..266)
            .map(|id| TemplateSpec {
                id,
                ..template_256()
            })
            .collect();
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&templates);
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert!(dec.templates().bytes() <= 600);
        let kept = dec.templates().len() as u64;
        assert!(kept < 10);
        assert_eq!(errors(&dec, ErrorReason::TemplateEvicted), 10 - kept);
        assert_eq!(dec.stats.template_cache_templates, kept);
    }

    #[test]
    fn bytes_after_the_message_length_are_counted_not_dropped_silently() {
        // Two messages packed into one datagram: the first (its length field says 108) is
        // decoded; the second is not, and the datagram counts as trailing_bytes.
        let mut second = MESSAGE;
        second[8..12].copy_from_slice(&6u32.to_be_bytes());
        let packed = [MESSAGE, second].concat();
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &packed);
        assert_eq!(result, Err(ErrorReason::TrailingBytes));
        assert_eq!(sink.flows.len(), 1);
        assert_eq!(sink.flows[0].sequence_num, 5);
        assert_eq!(errors(&dec, ErrorReason::TrailingBytes), 1);
        assert_eq!(dec.stats.records[Protocol::Ipfix.index()], 1);
        // The message's own record still counts for its sequence space: the next message (6)
        // is no loss.
        assert_eq!(run(&mut dec, EXPORTER, &second).1, Ok(()));
        let (_, counts) = dec.sequence_counts().next().unwrap();
        assert_eq!(counts.lost, 0);
        // A set problem in the message is the one returned; the trailing bytes are counted too.
        let mut bad_set = MESSAGE;
        bad_set[19] = 0x03;
        let (_, result) = run(&mut dec, EXPORTER, &[&bad_set[..], &[0; 5]].concat());
        assert_eq!(result, Err(ErrorReason::BadSetLength));
        assert_eq!(errors(&dec, ErrorReason::TrailingBytes), 2);
        assert_eq!(errors(&dec, ErrorReason::BadSetLength), 1);
    }

    #[test]
    fn padding_after_the_last_template_record_is_accepted() {
        // 1 to 3 bytes after the last record of a template set, and of an options template set,
        // are padding (RFC 7011 §3.3.1), not a template: no error, and the data decodes.
        let opt = TemplateSpec {
            id: 400,
            scope_fields: 1,
            fields: vec![Field::iana(302, 4), Field::iana(34, 4)],
        };
        for pad in 1..=3 {
            let mut body = Vec::new();
            for t in [template_256(), opt.clone()] {
                let mut w = MessageWriter::new(0, 0, 7);
                w.templates(std::slice::from_ref(&t));
                let set = w.finish();
                body.push(set[16..].to_vec());
            }
            let mut w = MessageWriter::new(1_700_000_000, 5, 7);
            for (set_id, set) in [TEMPLATE_SET, OPTIONS_TEMPLATE_SET].into_iter().zip(&body) {
                let mut padded = set[4..].to_vec();
                padded.resize(padded.len() + pad, 0);
                w.raw_set(set_id, &padded);
            }
            w.data(&template_256(), &[flow()], &EncodeContext::default());
            let mut dec = Decoder::new();
            let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
            assert_eq!(result, Ok(()), "{pad} padding bytes");
            assert_eq!(dec.stats.errors.iter().sum::<u64>(), 0, "{pad}");
            assert_eq!(dec.templates().len(), 2, "{pad}");
            assert_eq!(sink.flows.len(), 1, "{pad}");
            assert_eq!(sink.flows[0].bytes, 1500, "{pad}");
        }
    }

    #[test]
    fn withdraw_redefine_and_data_in_one_message_use_the_new_definition() {
        // Template 256 is known (MESSAGE). One message then withdraws it, defines 256 anew
        // (protocol and source port only) and sends data with it, in that order.
        let mut dec = Decoder::new();
        assert_eq!(run(&mut dec, EXPORTER, &MESSAGE).1, Ok(()));
        let new = TemplateSpec {
            id: 256,
            scope_fields: 0,
            fields: vec![Field::iana(4, 1), Field::iana(7, 2)],
        };
        let mut w = MessageWriter::new(1_700_000_000, 6, 7);
        w.withdrawal(TEMPLATE_SET, 256)
            .templates(std::slice::from_ref(&new))
            .data(&new, &[flow()], &EncodeContext::default());
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        assert_eq!(sink.flows.len(), 1);
        let r = sink.flows[0];
        assert_eq!((r.proto, r.src_port), (17, 12345));
        assert_eq!(
            (r.bytes, r.src_addr),
            (0, [0; 16]),
            "nothing of the old layout"
        );
        assert_eq!(dec.stats.templates_withdrawn, 1);
        assert_eq!(
            dec.stats.templates_redefined, 0,
            "learned anew after the withdrawal"
        );
        assert_eq!(dec.templates().len(), 1);
    }

    #[test]
    fn options_template_withdrawal_of_one_id() {
        // Options templates 400 and 401 and data template 256: withdrawing options template 400
        // (set 3, id 400, field count 0) leaves the other two; 400's data is then missing.
        let opt = |id| TemplateSpec {
            id,
            scope_fields: 1,
            fields: vec![Field::iana(302, 4), Field::iana(34, 4)],
        };
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&[template_256(), opt(400), opt(401)]);
        let mut dec = Decoder::new();
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.templates().len(), 3);
        let mut w = MessageWriter::new(0, 0, 0);
        w.withdrawal(OPTIONS_TEMPLATE_SET, 400);
        assert_eq!(run(&mut dec, EXPORTER, &w.finish()).1, Ok(()));
        assert_eq!(dec.stats.templates_withdrawn, 1);
        assert_eq!(dec.templates().len(), 2);
        let ctx = EncodeContext::default();
        let data = |t: &TemplateSpec| {
            let mut w = MessageWriter::new(0, 0, 0);
            w.data(t, &[flow()], &ctx);
            w.finish()
        };
        assert_eq!(
            run(&mut dec, EXPORTER, &data(&opt(400))).1,
            Err(ErrorReason::TemplateMissing)
        );
        assert_eq!(run(&mut dec, EXPORTER, &data(&opt(401))).1, Ok(()));
        assert_eq!(run(&mut dec, EXPORTER, &data(&template_256())).1, Ok(()));
    }

    #[test]
    fn options_sampling_by_selector_algorithm_through_templates() {
        // Options template 402: scope selectorId (302); selectorAlgorithm (304),
        // samplingPacketInterval (305), samplingPacketSpace (306), samplingSize (309),
        // samplingPopulation (310). Selector 5 is systematic count-based (1): 1 + 99 → 1 in 100.
        // Selector 6 is random n-out-of-N (3): its 305/306 do not apply, 2 of 1000 do: 1 in 500.
        // Selector 7 is systematic time-based (2): 305/306 do not apply, no rate is learned.
        // Data records name each selector.
        let opt = TemplateSpec {
            id: 402,
            scope_fields: 1,
            fields: [(302, 4), (304, 2), (305, 4), (306, 4), (309, 4), (310, 4)]
                .map(|(id, len)| Field::iana(id, len))
                .to_vec(),
        };
        let record = |selector: u32, algorithm: u16, values: [u32; 4]| {
            let mut r = selector.to_be_bytes().to_vec();
            r.extend_from_slice(&algorithm.to_be_bytes());
            for v in values {
                r.extend_from_slice(&v.to_be_bytes());
            }
            r
        };
        let options = [
            record(5, 1, [1, 99, 0, 0]),
            record(6, 3, [1, 99, 2, 1000]),
            record(7, 2, [1, 99, 0, 0]),
        ]
        .concat();
        let data = one_field_template(&[Field::iana(302, 4), Field::iana(4, 1)]);
        let flows: Vec<_> = [5, 6, 7]
            .map(|selector| FlowRecord {
                sampler_id: selector,
                ..flow()
            })
            .to_vec();
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&[opt, data.clone()])
            .raw_set(402, &options)
            .data(&data, &flows, &EncodeContext::default());
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        assert_eq!(dec.stats.options_records, 3);
        assert_eq!(dec.stats.sampling_rates_learned, 2);
        let learned = |sampler| {
            dec.sampling().learned(SamplerKey {
                exporter: "192.0.2.10".parse().unwrap(),
                domain: 0,
                sampler,
            })
        };
        assert_eq!([5, 6, 7].map(learned), [Some(100), Some(500), None]);
        let rates: Vec<_> = sink
            .flows
            .iter()
            .map(|r| (r.sampler_id, r.sampling_rate))
            .collect();
        assert_eq!(rates, [(5, 100), (6, 500), (7, 0)]);
    }

    #[test]
    fn sampling_algorithm_35_does_not_change_the_interval() {
        // Options template 403: scope samplerId (48); samplingAlgorithm (35), samplingInterval
        // (34). Deterministic (1) and random (2) are both 1-in-N selections: N is 34 either way,
        // and 35, read first, is not taken for it.
        let opt = TemplateSpec {
            id: 403,
            scope_fields: 1,
            fields: vec![Field::iana(48, 4), Field::iana(35, 1), Field::iana(34, 4)],
        };
        let options = [[0, 0, 0, 8, 1, 0, 0, 0, 64], [0, 0, 0, 9, 2, 0, 0, 1, 0]].concat();
        let data = one_field_template(&[Field::iana(48, 4), Field::iana(4, 1)]);
        let flows = [8, 9].map(|sampler_id| FlowRecord {
            sampler_id,
            ..flow()
        });
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&[opt, data.clone()])
            .raw_set(403, &options)
            .data(&data, &flows, &EncodeContext::default());
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        let rates: Vec<_> = sink.flows.iter().map(|r| r.sampling_rate).collect();
        assert_eq!(rates, [64, 256]);
    }

    #[test]
    fn elements_that_cannot_be_stored_are_skipped_and_counted() {
        let mut dec = Decoder::new();
        // sourceTransportPort (unsigned16) in 4 bytes: longer than its type (RFC 7011 §6.2
        // allows only shorter), skipped in both records, each counted.
        let t = one_field_template(&[Field::iana(7, 4), Field::iana(4, 1)]);
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(std::slice::from_ref(&t))
            .raw_set(300, &[0, 0, 0x30, 0x39, 6, 0, 0, 0, 80, 17]);
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        let got: Vec<_> = sink.flows.iter().map(|r| (r.src_port, r.proto)).collect();
        assert_eq!(got, [(0, 6), (0, 17)]);
        assert_eq!(errors(&dec, ErrorReason::FieldSkipped), 2);

        // A variable-length packetDeltaCount of 9 bytes: left out, counted; one of 2 is kept.
        let t = TemplateSpec {
            id: 301,
            ..one_field_template(&[Field::iana(2, VARLEN), Field::iana(4, 1)])
        };
        let mut w = MessageWriter::new(0, 0, 0);
        let mut body = vec![9, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6];
        body.extend([2, 0, 5, 17]);
        w.templates(std::slice::from_ref(&t)).raw_set(301, &body);
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        let got: Vec<_> = sink.flows.iter().map(|r| (r.packets, r.proto)).collect();
        assert_eq!(got, [(0, 6), (5, 17)]);
        assert_eq!(errors(&dec, ErrorReason::FieldSkipped), 3);

        // A variable-length sourceTransportPort (unsigned16) of 4 bytes is longer than its type:
        // left out and counted, not narrowed to its low 2 bytes; one of 2 bytes is kept.
        let t = TemplateSpec {
            id: 302,
            ..one_field_template(&[Field::iana(7, VARLEN), Field::iana(4, 1)])
        };
        let mut w = MessageWriter::new(0, 0, 0);
        let body = [4, 0, 1, 0x30, 0x39, 6, 2, 0x30, 0x39, 17];
        w.templates(std::slice::from_ref(&t)).raw_set(302, &body);
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        let got: Vec<_> = sink.flows.iter().map(|r| (r.src_port, r.proto)).collect();
        assert_eq!(got, [(0, 6), (12345, 17)]);
        assert_eq!(errors(&dec, ErrorReason::FieldSkipped), 4);
    }

    #[test]
    fn unsigned64_ids_too_wide_for_the_record_are_counted_and_selectors_stay_apart() {
        // observationPointId (138) and selectorId (302) are unsigned64; the record keeps 32 bits.
        // Options template 404 (scope selectorId in 8 bytes; samplingInterval): selector
        // 0x1_0000_0005 samples 1 in 100, 0x2_0000_0005 1 in 200, selector 5 1 in 400. Data
        // template 302 (138 and 302 in 8 bytes, protocol): a record naming wide ids gets zero for
        // both (counted once, as its record) and its wide selector's own rate; one naming point 7
        // and selector 5 keeps both.
        let (wide, wider): (u64, u64) = (0x1_0000_0005, 0x2_0000_0005);
        let opt = TemplateSpec {
            id: 404,
            scope_fields: 1,
            fields: vec![Field::iana(302, 8), Field::iana(34, 4)],
        };
        let data = TemplateSpec {
            id: 302,
            ..one_field_template(&[Field::iana(138, 8), Field::iana(302, 8), Field::iana(4, 1)])
        };
        let options = [
            &wide.to_be_bytes()[..],
            &100u32.to_be_bytes(),
            &wider.to_be_bytes(),
            &200u32.to_be_bytes(),
            &5u64.to_be_bytes(),
            &400u32.to_be_bytes(),
        ]
        .concat();
        let records = [
            &0x1_0000_0001u64.to_be_bytes()[..],
            &wide.to_be_bytes(),
            &[6],
            &7u64.to_be_bytes(),
            &5u64.to_be_bytes(),
            &[17],
            &7u64.to_be_bytes(),
            &wider.to_be_bytes(),
            &[1],
            &u64::MAX.to_be_bytes(),
            &5u64.to_be_bytes(),
            &[2],
        ]
        .concat();
        let mut w = MessageWriter::new(0, 0, 0);
        w.templates(&[opt, data])
            .raw_set(404, &options)
            .raw_set(302, &records);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, EXPORTER, &w.finish());
        assert_eq!(result, Ok(()));
        assert_eq!(dec.stats.sampling_rates_learned, 3, "three selectors");
        let got: Vec<_> = sink
            .flows
            .iter()
            .map(|r| {
                (
                    r.observation_point_id,
                    r.sampler_id,
                    r.sampling_rate,
                    r.proto,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, 100, 6),
                (7, 5, 400, 17),
                (7, 0, 200, 1),
                (0, 5, 400, 2)
            ]
        );
        // The two wide options records and the three data records with a wide id.
        assert_eq!(errors(&dec, ErrorReason::FieldSkipped), 5);
    }
}
