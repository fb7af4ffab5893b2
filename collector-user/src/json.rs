//! Records as text: one JSON object per line (goflow2's keys) and CSV with the same columns.
//!
//! Used by `collector replay` and `collector read`. This module owns the column list and how each
//! value is rendered; it never allocates per record: everything is appended to a caller's reusable
//! `Vec<u8>` (or, through [`RecordWriter`], to one buffer the writer keeps).
//!
//! ## Flow records
//! Keys and value forms follow goflow2's JSON format where goflow2 has the field, in the order
//! of `FLOW_COLUMNS`:
//! - `type`: `NETFLOW_V5`, `NETFLOW_V9`, `IPFIX`, `SFLOW_5`.
//! - Addresses (`sampler_address`, `src_addr`, `dst_addr`, `next_hop`, `tunnel_*_addr`) as text, IPv4
//!   (stored IPv4-mapped) as a dotted quad. A field the exporter did not report (all-zero bytes) is
//!   `""`, as goflow2 renders an empty address; an address reported as `0.0.0.0` (NetFlow v5's next
//!   hop) stays `"0.0.0.0"`.
//! - `etype` and `proto` are names as in goflow2 (`IPv4`, `IPv6`, `ARP`; `ICMP`, `TCP`, `UDP`,
//!   `ICMPv6`, `SCTP`). goflow2 prints `""` for any other value and loses it; we print the number
//!   instead (`etype` in hex, `"0x8847"`; `proto` in decimal, `"47"`), and `etype` 0 (not reported) as `""`.
//! - `src_net` / `dst_net`: goflow2's form, the flow's address masked to the prefix length,
//!   `"192.0.2.0/24"` (`/0` when no length was reported); `""` when the address is unset.
//! - MACs as `aa:bb:cc:dd:ee:ff`, always present (zero when not reported), as goflow2.
//! - `sequence_num`: the export header's sequence number, as goflow2's; for sFlow the datagram's,
//!   not the flow sample's (which the record does not keep).
//! - Every other field is a JSON number; zero means not reported (see [`FlowRecord`]).
//! - Ours, in the same style, after goflow2's: `exporter_port`, `sampler_id`, `flow_end_reason`,
//!   `tunnel_type`, `tunnel_key`, `tunnel_src_addr`, `tunnel_dst_addr`, `tunnel_proto`,
//!   `tunnel_src_port`, `tunnel_dst_port`, `in_if_format`, `out_if_format` (sFlow's interface
//!   format: 0 `in_if`/`out_if` is an ifIndex, 1 the packet was discarded and it is the reason
//!   code, 2 it went to several interfaces and it is their count; 0 for the other protocols).
//!
//! ## Counter records
//! One JSON object per line with `"type":"SFLOW_5","kind":"counters"` (flow lines have no `kind`),
//! then the record's key (`time_received_ns`, `sampler_address` = the sFlow agent as for flows,
//! `exporter_port`, `sub_agent_id`, `agent_uptime_ms`, `sequence_num`, `source_type`,
//! `source_index`, `if_index`, `sample_type`, `format`, `truncated`) and the typed block as an
//! object `"counters":{..}` whose members are the block's fields (generic interface, Ethernet,
//! VLAN, processor, LACP, OpenFlow port, port name, app resources, OVS datapath; empty for an
//! unknown format).
//!
//! ## CSV
//! [`write_csv_header`] then one [`write_csv`] line per flow, same columns and value forms, no
//! quoting (no value contains a comma, a quote or a newline).

use crate::decode::RecordSink;
use crate::record::counters::{CounterBody, FLAG_BODY_TRUNCATED};
use crate::record::{CounterRecord, FlowRecord, addr_from_bytes, addr_is_unset};
use std::io::{self, Write};
use std::net::IpAddr;

/// One rendered value.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Number(u64),
    Name(&'static str),
    Addr(&'a [u8; 16]),
    Mac(&'a [u8; 6]),
    /// An address masked to a prefix length.
    Net(&'a [u8; 16], u8),
    Etype(u16),
    Proto(u8),
}

type Column<R> = (&'static str, for<'a> fn(&'a R) -> Value<'a>);

/// Flow-record columns, in output order.
pub const FLOW_COLUMN_NAMES: [&str; 46] = {
    let mut names = [""; 46];
    let mut i = 0;
    while i < FLOW_COLUMNS.len() {
        names[i] = FLOW_COLUMNS[i].0;
        i += 1;
    }
    names
};

const FLOW_COLUMNS: [Column<FlowRecord>; 46] = [
    ("type", |r| Value::Name(r.flow_type().name())),
    ("time_received_ns", |r| Value::Number(r.time_received_ns)),
    ("sequence_num", |r| Value::Number(r.sequence_num.into())),
    ("sampling_rate", |r| Value::Number(r.sampling_rate.into())),
    ("sampler_address", |r| Value::Addr(&r.exporter_addr)),
    ("time_flow_start_ns", |r| {
        Value::Number(r.time_flow_start_ns)
    }),
    ("time_flow_end_ns", |r| Value::Number(r.time_flow_end_ns)),
    ("bytes", |r| Value::Number(r.bytes)),
    ("packets", |r| Value::Number(r.packets)),
    ("src_addr", |r| Value::Addr(&r.src_addr)),
    ("dst_addr", |r| Value::Addr(&r.dst_addr)),
    ("etype", |r| Value::Etype(r.etype)),
    ("proto", |r| Value::Proto(r.proto)),
    ("src_port", |r| Value::Number(r.src_port.into())),
    ("dst_port", |r| Value::Number(r.dst_port.into())),
    ("in_if", |r| Value::Number(r.in_if.into())),
    ("out_if", |r| Value::Number(r.out_if.into())),
    ("src_mac", |r| Value::Mac(&r.src_mac)),
    ("dst_mac", |r| Value::Mac(&r.dst_mac)),
    ("vlan_id", |r| Value::Number(r.vlan_id.into())),
    ("ip_tos", |r| Value::Number(r.ip_tos.into())),
    ("ip_ttl", |r| Value::Number(r.ip_ttl.into())),
    ("tcp_flags", |r| Value::Number(r.tcp_flags.into())),
    ("icmp_type", |r| Value::Number(r.icmp_type.into())),
    ("icmp_code", |r| Value::Number(r.icmp_code.into())),
    ("ipv6_flow_label", |r| {
        Value::Number(r.ipv6_flow_label.into())
    }),
    ("next_hop", |r| Value::Addr(&r.next_hop)),
    ("src_as", |r| Value::Number(r.src_as.into())),
    ("dst_as", |r| Value::Number(r.dst_as.into())),
    ("src_net", |r| Value::Net(&r.src_addr, r.src_net)),
    ("dst_net", |r| Value::Net(&r.dst_addr, r.dst_net)),
    ("observation_domain_id", |r| {
        Value::Number(r.observation_domain_id.into())
    }),
    ("observation_point_id", |r| {
        Value::Number(r.observation_point_id.into())
    }),
    ("flow_direction", |r| Value::Number(r.flow_direction.into())),
    ("exporter_port", |r| Value::Number(r.exporter_port.into())),
    ("sampler_id", |r| Value::Number(r.sampler_id.into())),
    ("flow_end_reason", |r| {
        Value::Number(r.flow_end_reason.into())
    }),
    ("tunnel_type", |r| Value::Number(r.tunnel_type.into())),
    ("tunnel_key", |r| Value::Number(r.tunnel_key)),
    ("tunnel_src_addr", |r| Value::Addr(&r.tunnel_src_addr)),
    ("tunnel_dst_addr", |r| Value::Addr(&r.tunnel_dst_addr)),
    ("tunnel_proto", |r| Value::Number(r.tunnel_proto.into())),
    ("tunnel_src_port", |r| {
        Value::Number(r.tunnel_src_port.into())
    }),
    ("tunnel_dst_port", |r| {
        Value::Number(r.tunnel_dst_port.into())
    }),
    ("in_if_format", |r| Value::Number(r.in_if_format.into())),
    ("out_if_format", |r| Value::Number(r.out_if_format.into())),
];

/// Counter-record columns after `"type":"SFLOW_5","kind":"counters"`; the typed block follows
/// under `"counters"`.
const COUNTER_COLUMNS: [Column<CounterRecord>; 12] = [
    ("time_received_ns", |r| Value::Number(r.time_received_ns)),
    ("sampler_address", |r| Value::Addr(&r.agent_addr)),
    ("exporter_port", |r| Value::Number(r.exporter_port.into())),
    ("sub_agent_id", |r| Value::Number(r.sub_agent_id.into())),
    ("agent_uptime_ms", |r| {
        Value::Number(r.agent_uptime_ms.into())
    }),
    ("sequence_num", |r| Value::Number(r.sequence_num.into())),
    ("source_type", |r| Value::Number(r.source_type.into())),
    ("source_index", |r| Value::Number(r.source_index.into())),
    ("if_index", |r| Value::Number(r.if_index.into())),
    ("sample_type", |r| Value::Number(r.sample_type.into())),
    ("format", |r| Value::Number(r.format.into())),
    ("truncated", |r| {
        Value::Number(u64::from(r.flags & FLAG_BODY_TRUNCATED != 0))
    }),
];

/// `"name":number` members of a counter block, comma-separated.
macro_rules! block_members {
    ($out:expr, $block:expr, $($field:ident),+) => {{
        let names = [$(stringify!($field)),+];
        let values = [$(u64::from($block.$field)),+];
        for (i, (name, value)) in names.iter().zip(values).enumerate() {
            if i > 0 {
                $out.push(b',');
            }
            $out.push(b'"');
            $out.extend_from_slice(name.as_bytes());
            $out.extend_from_slice(b"\":");
            write_u64($out, value);
        }
    }};
}

/// The typed counter block as the members of the `"counters"` object (names as in [`crate::record`]).
fn write_counter_block(out: &mut Vec<u8>, body: CounterBody<'_>) {
    match body {
        CounterBody::GenericInterface(c) => block_members!(
            out,
            c,
            if_index,
            if_type,
            if_speed,
            if_direction,
            if_status,
            in_octets,
            in_ucast_pkts,
            in_mcast_pkts,
            in_bcast_pkts,
            in_discards,
            in_errors,
            in_unknown_protos,
            out_octets,
            out_ucast_pkts,
            out_mcast_pkts,
            out_bcast_pkts,
            out_discards,
            out_errors,
            promiscuous_mode
        ),
        CounterBody::Ethernet(c) => block_members!(
            out,
            c,
            alignment_errors,
            fcs_errors,
            single_collision_frames,
            multiple_collision_frames,
            sqe_test_errors,
            deferred_transmissions,
            late_collisions,
            excessive_collisions,
            internal_mac_transmit_errors,
            carrier_sense_errors,
            frame_too_longs,
            internal_mac_receive_errors,
            symbol_errors
        ),
        CounterBody::Vlan(c) => block_members!(
            out, c, vlan_id, octets, ucast_pkts, mcast_pkts, bcast_pkts, discards
        ),
        CounterBody::Processor(c) => {
            block_members!(out, c, cpu_5s, cpu_1m, cpu_5m, total_memory, free_memory)
        }
        CounterBody::Lacp(c) => {
            out.extend_from_slice(b"\"actor_system_id\":\"");
            write_mac(out, &c.actor_system_id);
            out.extend_from_slice(b"\",\"partner_oper_system_id\":\"");
            write_mac(out, &c.partner_oper_system_id);
            out.extend_from_slice(b"\",\"port_state\":");
            write_u64(out, u32::from_be_bytes(c.port_state).into());
            out.push(b',');
            block_members!(
                out,
                c,
                attached_agg_id,
                lacpdus_rx,
                marker_pdus_rx,
                marker_response_pdus_rx,
                unknown_rx,
                illegal_rx,
                lacpdus_tx,
                marker_pdus_tx,
                marker_response_pdus_tx
            );
        }
        CounterBody::OpenflowPort(c) => block_members!(out, c, datapath_id, port_no),
        CounterBody::PortName(name) => {
            out.extend_from_slice(b"\"port_name\":\"");
            // Names are ASCII in practice; anything that would need JSON escaping becomes '?'.
            for &b in name {
                let printable = b.is_ascii_graphic() || b == b' ';
                out.push(if printable && b != b'"' && b != b'\\' {
                    b
                } else {
                    b'?'
                });
            }
            out.push(b'"');
        }
        CounterBody::AppResources(c) => block_members!(
            out,
            c,
            mem_used,
            mem_max,
            user_time,
            system_time,
            fd_open,
            fd_max,
            conn_open,
            conn_max
        ),
        CounterBody::OvsDatapath(c) => {
            block_members!(
                out, c, n_hit, n_missed, n_lost, n_mask_hit, n_flows, n_masks
            )
        }
        CounterBody::Unknown(_) => {}
    }
}

/// Append one flow record as a JSON object and a newline.
pub fn write_flow_json(out: &mut Vec<u8>, record: &FlowRecord) {
    out.push(b'{');
    write_json_members(out, record, &FLOW_COLUMNS);
    out.extend_from_slice(b"}\n");
}

/// Append one counter record as a JSON object and a newline.
pub fn write_counters_json(out: &mut Vec<u8>, record: &CounterRecord) {
    out.extend_from_slice(b"{\"type\":\"SFLOW_5\",\"kind\":\"counters\",");
    write_json_members(out, record, &COUNTER_COLUMNS);
    out.extend_from_slice(b",\"counters\":{");
    write_counter_block(out, record.body());
    out.extend_from_slice(b"}}\n");
}

/// Append the CSV header line for flow records.
pub fn write_csv_header(out: &mut Vec<u8>) {
    for (i, name) in FLOW_COLUMN_NAMES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
}

/// Append one flow record as a CSV line (columns of [`write_csv_header`]).
pub fn write_csv(out: &mut Vec<u8>, record: &FlowRecord) {
    for (i, (_, value)) in FLOW_COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, value(record), false);
    }
    out.push(b'\n');
}

fn write_json_members<R>(out: &mut Vec<u8>, record: &R, columns: &[Column<R>]) {
    for (i, (name, value)) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write_value(out, value(record), true);
    }
}

fn write_value(out: &mut Vec<u8>, value: Value<'_>, quoted: bool) {
    let quote = |out: &mut Vec<u8>| {
        if quoted {
            out.push(b'"');
        }
    };
    match value {
        Value::Number(n) => write_u64(out, n),
        text => {
            quote(out);
            match text {
                Value::Name(s) => out.extend_from_slice(s.as_bytes()),
                Value::Addr(a) => write_addr(out, a),
                Value::Mac(m) => write_mac(out, m),
                Value::Net(a, len) => write_net(out, a, len),
                Value::Etype(e) => write_etype(out, e),
                Value::Proto(p) => write_proto(out, p),
                Value::Number(_) => {}
            }
            quote(out);
        }
    }
}

/// Decimal digits of `n`, without going through `fmt`.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_addr(out: &mut Vec<u8>, addr: &[u8; 16]) {
    if addr_is_unset(addr) {
        return;
    }
    // Writing to a Vec cannot fail; `Display` for addresses formats on the stack.
    let _ = write!(out, "{}", addr_from_bytes(addr));
}

fn write_mac(out: &mut Vec<u8>, mac: &[u8; 6]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn write_net(out: &mut Vec<u8>, addr: &[u8; 16], len: u8) {
    if addr_is_unset(addr) {
        return;
    }
    let masked = match addr_from_bytes(addr) {
        IpAddr::V4(v4) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    let len = if masked.is_ipv4() {
        len.min(32)
    } else {
        len.min(128)
    };
    let _ = write!(out, "{masked}/");
    write_u64(out, len.into());
}

fn write_etype(out: &mut Vec<u8>, etype: u16) {
    match etype {
        0 => {}
        0x0800 => out.extend_from_slice(b"IPv4"),
        0x0806 => out.extend_from_slice(b"ARP"),
        0x86dd => out.extend_from_slice(b"IPv6"),
        other => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"0x");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[usize::from((other >> shift) & 0xf)]);
            }
        }
    }
}

fn write_proto(out: &mut Vec<u8>, proto: u8) {
    match proto {
        1 => out.extend_from_slice(b"ICMP"),
        6 => out.extend_from_slice(b"TCP"),
        17 => out.extend_from_slice(b"UDP"),
        58 => out.extend_from_slice(b"ICMPv6"),
        132 => out.extend_from_slice(b"SCTP"),
        other => write_u64(out, other.into()),
    }
}

/// The text form a [`RecordWriter`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// One JSON object per record (flows and counters).
    Json,
    /// CSV of flow records, header first (with the first record or the first flush, whichever
    /// comes first: output without flow records still has it); counter records are not written
    /// (counted only).
    Csv,
}

/// A [`RecordSink`] that writes each record as a line to `out` through one reusable buffer.
///
/// A sink cannot fail, so the first I/O error is kept (and later records dropped, counted in
/// `dropped`); check [`RecordWriter::finish`].
pub struct RecordWriter<W: Write> {
    out: W,
    format: TextFormat,
    buf: Vec<u8>,
    error: Option<io::Error>,
    header_written: bool,
    /// Flow records written.
    pub flows: u64,
    /// Counter records written (JSON) or seen and not written (CSV).
    pub counters: u64,
    /// Records not written because of an earlier I/O error.
    pub dropped: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W, format: TextFormat) -> Self {
        RecordWriter {
            out,
            format,
            buf: Vec::with_capacity(2048),
            error: None,
            header_written: false,
            flows: 0,
            counters: 0,
            dropped: 0,
        }
    }

    fn emit(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.out.write_all(&self.buf)
        {
            self.error = Some(e);
        }
        self.buf.clear();
    }

    /// The CSV header, unless it is out already.
    fn csv_header(&mut self) {
        if self.format == TextFormat::Csv && !std::mem::replace(&mut self.header_written, true) {
            write_csv_header(&mut self.buf);
        }
    }

    /// Push buffered output out (a CSV header not written yet first); reports the first write
    /// error if there was one.
    pub fn flush(&mut self) -> io::Result<()> {
        self.csv_header();
        self.emit();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// Flush, and report the first write error if there was one.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> RecordSink for RecordWriter<W> {
    fn flow(&mut self, record: &FlowRecord) {
        if self.error.is_some() {
            self.dropped += 1;
            return;
        }
        match self.format {
            TextFormat::Json => write_flow_json(&mut self.buf, record),
            TextFormat::Csv => {
                self.csv_header();
                write_csv(&mut self.buf, record);
            }
        }
        self.flows += 1;
        self.emit();
    }

    fn counters(&mut self, record: &CounterRecord) {
        if self.error.is_some() {
            self.dropped += 1;
            return;
        }
        self.counters += 1;
        if self.format == TextFormat::Json {
            write_counters_json(&mut self.buf, record);
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FlowType, IPV4_UNSPECIFIED, addr_to_bytes, ipv4_bytes};
    use bytemuck::Zeroable;

    fn sample() -> FlowRecord {
        let mut r = FlowRecord::zeroed();
        r.flow_type = FlowType::Ipfix as u8;
        r.time_received_ns = 1_700_000_000_000_000_001;
        r.sequence_num = 42;
        r.sampling_rate = 400;
        r.exporter_addr = ipv4_bytes([192, 0, 2, 1]);
        r.exporter_port = 50_000;
        r.time_flow_start_ns = 10;
        r.time_flow_end_ns = u64::MAX;
        r.bytes = 1500;
        r.packets = 1;
        r.src_addr = ipv4_bytes([10, 1, 2, 3]);
        r.dst_addr = addr_to_bytes("2001:db8::7".parse().unwrap());
        r.etype = 0x0800;
        r.proto = 6;
        r.src_port = 443;
        r.dst_port = 51_000;
        r.src_mac = [0xaa, 0xbb, 0xcc, 0x00, 0x01, 0x0f];
        r.src_net = 20;
        r.dst_net = 0;
        r.next_hop = IPV4_UNSPECIFIED;
        r.tunnel_type = 1;
        r.tunnel_key = 5001;
        r.tunnel_dst_addr = ipv4_bytes([172, 16, 0, 9]);
        r
    }

    #[test]
    fn flow_json_uses_goflow2_keys_and_forms() {
        let mut out = Vec::new();
        write_flow_json(&mut out, &sample());
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "IPFIX");
        assert_eq!(v["time_received_ns"], 1_700_000_000_000_000_001u64);
        assert_eq!(v["time_flow_end_ns"], u64::MAX);
        assert_eq!(v["sampler_address"], "192.0.2.1");
        assert_eq!(v["exporter_port"], 50_000);
        assert_eq!(v["src_addr"], "10.1.2.3");
        assert_eq!(v["dst_addr"], "2001:db8::7");
        assert_eq!(v["etype"], "IPv4");
        assert_eq!(v["proto"], "TCP");
        assert_eq!(v["src_mac"], "aa:bb:cc:00:01:0f");
        assert_eq!(v["dst_mac"], "00:00:00:00:00:00");
        assert_eq!(v["src_net"], "10.1.0.0/20");
        assert_eq!(v["dst_net"], "::/0");
        assert_eq!(v["next_hop"], "0.0.0.0");
        assert_eq!(v["tunnel_src_addr"], "");
        assert_eq!(v["tunnel_dst_addr"], "172.16.0.9");
        assert_eq!(v["tunnel_key"], 5001);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = FLOW_COLUMN_NAMES.to_vec();
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "every column once");
    }

    #[test]
    fn every_byte_of_a_flow_record_shows_in_its_line() {
        // A record field no column renders would be lost to every reader of `read` and `replay`
        // (sFlow's interface formats were): each byte of the record but the ring's own sequence
        // number and the reserved tail changes the JSON line when it changes.
        use std::mem::{offset_of, size_of};
        let base = sample();
        let mut line = Vec::new();
        write_flow_json(&mut line, &base);
        let skipped = [
            offset_of!(FlowRecord, ring_seq)..offset_of!(FlowRecord, ring_seq) + 8,
            offset_of!(FlowRecord, reserved)..size_of::<FlowRecord>(),
        ];
        for at in (0..size_of::<FlowRecord>()).filter(|i| !skipped.iter().any(|r| r.contains(i))) {
            let mut r = base;
            bytemuck::bytes_of_mut(&mut r)[at] ^= 0x01;
            let mut changed = Vec::new();
            write_flow_json(&mut changed, &r);
            assert_ne!(changed, line, "byte {at} of the record is in no column");
        }
    }

    #[test]
    fn unknown_etype_and_proto_keep_their_number() {
        let mut r = sample();
        r.etype = 0x8847;
        r.proto = 47;
        let mut out = Vec::new();
        write_flow_json(&mut out, &r);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["etype"], "0x8847");
        assert_eq!(v["proto"], "47");
        r.etype = 0;
        r.src_addr = [0; 16];
        out.clear();
        write_flow_json(&mut out, &r);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["etype"], "");
        assert_eq!(v["src_addr"], "");
        assert_eq!(v["src_net"], "");
    }

    #[test]
    fn csv_has_the_same_columns() {
        let mut out = Vec::new();
        write_csv_header(&mut out);
        write_csv(&mut out, &sample());
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header, FLOW_COLUMN_NAMES);
        assert_eq!(row.len(), header.len());
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("type"), "IPFIX");
        assert_eq!(col("src_addr"), "10.1.2.3");
        assert_eq!(col("proto"), "TCP");
        assert_eq!(col("bytes"), "1500");
        assert_eq!(col("tunnel_src_addr"), "");
    }

    #[test]
    fn counters_json_has_its_kind_and_block() {
        use crate::record::counters::GenericInterfaceCounters;
        let mut c = CounterRecord::zeroed();
        c.agent_addr = ipv4_bytes([10, 0, 0, 1]);
        c.if_index = 7;
        c.set_block(&GenericInterfaceCounters {
            if_index: 7,
            in_octets: 123_456_789_012,
            out_errors: 3,
            ..Default::default()
        });
        let mut out = Vec::new();
        write_counters_json(&mut out, &c);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "SFLOW_5");
        assert_eq!(v["kind"], "counters");
        assert_eq!(v["sampler_address"], "10.0.0.1");
        assert_eq!(v["if_index"], 7);
        assert_eq!(v["format"], 1);
        assert_eq!(v["counters"]["in_octets"], 123_456_789_012u64);
        assert_eq!(v["counters"]["out_errors"], 3);
        assert_eq!(v["counters"].as_object().unwrap().len(), 19);

        c.set_port_name(b"ovs-\"p0\"");
        out.clear();
        write_counters_json(&mut out, &c);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["counters"]["port_name"], "ovs-?p0?");
        assert_eq!(v["truncated"], 0);
    }

    #[test]
    fn writer_reuses_its_buffer_and_reports_io_errors() {
        let mut w = RecordWriter::new(Vec::new(), TextFormat::Csv);
        w.flow(&sample());
        w.flow(&sample());
        w.counters(&CounterRecord::zeroed());
        assert_eq!((w.flows, w.counters), (2, 1));
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(text.lines().count(), 3, "header + two rows");

        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = RecordWriter::new(Broken, TextFormat::Json);
        w.flow(&sample());
        w.flow(&sample());
        assert_eq!(w.dropped, 1);
        assert!(w.finish().is_err());
    }

    #[test]
    fn numbers_render_exactly() {
        for n in [0u64, 9, 10, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
