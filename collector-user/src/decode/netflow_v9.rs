//! NetFlow v9 (RFC 3954) export packets: the 20-byte header, flowsets (0 templates, 1 options
//! templates, ≥ 256 data) and the encoder ([`PacketWriter`]).
//!
//! Differences from IPFIX that matter here: the header's `count` is the number of *records*
//! (template + options template + data records), not bytes — the decoder walks flowsets by their
//! lengths and does not trust it; field lengths are fixed (no variable length, no enterprise bit);
//! options templates give scope and option lengths in bytes, and scope field types (1 system,
//! 2 interface, 3 line card, 4 cache, 5 template) are not information elements (they are decoded
//! as skips); times are sysUpTime-relative (FIRST_SWITCHED 22 / LAST_SWITCHED 21 against the
//! header's sysUptime and unix secs); the sequence number counts export packets (span 1).
//! NetFlow v9 has no template withdrawal: a template record with field count 0 is `BadTemplate`.

use super::flowset::{Env, Message, Outcome, TemplatedState};
use super::ie::{self, EncodeContext, VARLEN};
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

/// Decode one NetFlow v9 packet. A header problem is an `Err`; problems in flowsets are in the
/// outcome.
pub fn decode<S: RecordSink>(
    state: &mut TemplatedState,
    meta: &DatagramMeta,
    datagram: &[u8],
    env: &mut Env<'_, S>,
) -> Result<Outcome, ErrorReason> {
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
    let mut out = Outcome::new(repr.source_id, repr.sequence, Some(repr.sys_uptime_ms));
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
            TEMPLATE_FLOWSET => template_flowset(state, &msg, body, env, &mut out),
            OPTIONS_TEMPLATE_FLOWSET => options_template_flowset(state, &msg, body, env, &mut out),
            256.. => {
                let (decoded, result) = state.data_set(&msg, set_id, body, env);
                out.flows += decoded.flows;
                if let Err(reason) = result {
                    env.note(&mut out.error, reason);
                }
            }
            _ => env.note(&mut out.error, ErrorReason::BadSetId),
        }
    }
    Ok(out)
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
    // v9 has no variable-length fields: 65535 is a (too) large fixed length.
    if state.fields.iter().any(|f| f.len == VARLEN) {
        env.note(&mut out.error, ErrorReason::TemplateTooLarge);
        return;
    }
    if id < 256 {
        env.note(&mut out.error, ErrorReason::BadTemplate);
        return;
    }
    match state.learn(msg, id, kind, env) {
        Ok(flows) => out.flows += flows,
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
