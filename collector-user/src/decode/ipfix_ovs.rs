//! Straight-line decoders for Open vSwitch's IPFIX data templates.
//!
//! A cluster's flow exports are mostly OVS IPFIX, and OVS uses a fixed family of 120 data
//! templates ([`ovs::template`]): one per combination of VLAN, L3 (none, IPv4, IPv6), L4 (none,
//! ports, ICMP), tunnel and direction, always with the same fields in the same order. When a
//! template's field list is exactly one of them (whatever its id), [`Layout::recognise`] names it,
//! and its data sets decode through a loop compiled for that layout ([`Layout::decode_set`]).
//! A record is decoded by `record_fast` when it is the common case (one-byte lengths, a tunnel
//! key of at most 8 bytes, whole): it reads the variable-length fields' length bytes, checks
//! once that the record they describe is all there, and then needs no other check, since every
//! offset is a sum of those lengths and the layout's constants. Fields are plain loads and
//! stores, times become absolute as they are read, and what the layout fixes for every record
//! (the IPv4-mapped prefix of its addresses) is written once per set. Any other record is
//! decoded again by `record`, with the step decoder's checks in its order. Any other template,
//! and any OVS template that differs by one field, takes the step decoder ([`super::template`]).
//!
//! The contract is exact equivalence with the step decoder on the same template: the same records,
//! and the same error for the same damage after the same records. `tests::same_as_step_decoder`
//! holds the two to it over every layout with random values, random variable-length fields
//! (three-byte lengths and long tunnel keys included), truncation and corrupted bytes.

use super::ie::{PEN_OVS, be_uint};
use super::ipfix::ovs;
use super::template::{Field, varlen};
use super::time::{ExportClock, TimeKind};
use super::{ErrorReason, RecordSink};
use crate::record::{FlowRecord, ipv4_bytes};

/// L4 groups of the OVS family (TCP, UDP and SCTP send the same port fields), as packed in a
/// [`Layout`].
const L4_NONE: u8 = 0;
const L4_PORTS: u8 = 1;
const L4_ICMP: u8 = 2;

/// Bytes before the first variable-length field: observationPointId, flowDirection, source and
/// destination MAC, ethernetType, ethernetHeaderLength, ingressInterface, ingressInterfaceType.
const FRONT_LEN: usize = 28;

/// egressInterface and egressInterfaceType (egress layouts).
const EGRESS_LEN: usize = 8;

/// tunnelSource/DestinationIPv4Address, tunnelProtocolIdentifier and
/// tunnelSource/DestinationTransportPort, after the variable-length tunnelKey.
const TUNNEL_LEN: usize = 13;

/// Bytes of the fields every OVS record ends with: flowStart/EndDeltaMicroseconds (158, 159),
/// dropped counts (133, 135), packetDelta/TotalCount (2, 86), layer-2 and multicast counters
/// (354–358, 19, 174), layer2OctetDelta/TotalCount (352, 353) and flowEndReason (136).
const TAIL_LEN: usize = 113;

/// `::ffff:0.0.0.0`: the prefix of an IPv4 address in a record.
const V4_MAPPED: [u8; 16] = ipv4_bytes([0; 4]);

/// One of OVS's data template layouts, its parameters packed in a byte: egress (bit 0), tunnel
/// (bit 1), L4 (bits 2–3: none, ports, ICMP), L3 (bits 4–5: none, IPv4, IPv6) and VLAN (bit 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout(u8);

impl Layout {
    /// The layout of `fields` when they are exactly one of OVS's data templates.
    pub fn recognise(fields: &[Field]) -> Option<Layout> {
        let has = |f: Field| fields.contains(&f);
        let iana = Field::iana;
        let egress = fields.get(10) == Some(&iana(14, 4));
        let vlan = has(iana(58, 2));
        let l3 = if has(iana(8, 4)) {
            1
        } else if has(iana(27, 16)) {
            2
        } else {
            0
        };
        let (l4, l4_id) = if has(iana(7, 2)) {
            (L4_PORTS, 1)
        } else if has(iana(176, 1)) || has(iana(178, 1)) {
            (L4_ICMP, 4)
        } else {
            (L4_NONE, 0)
        };
        let tunnel = has(Field::enterprise(PEN_OVS, 891, 1));
        let expected =
            ovs::template_fields(ovs::template_id(u16::from(vlan), l3, l4_id, tunnel, egress))?;
        let packed = u8::from(egress)
            | u8::from(tunnel) << 1
            | l4 << 2
            | (l3 as u8) << 4
            | u8::from(vlan) << 6;
        (expected == fields).then_some(Layout(packed))
    }

    /// Decode the records of a data set `body` of this layout, handing each to `sink`. `rec` is
    /// the set's base record (header facts, sampling rate), overwritten field by field; flow
    /// times become absolute by `clock`. Trailing bytes shorter than the smallest record are
    /// padding. Returns the records handed over and what stopped the set, if anything. Records
    /// that left out a tunnelKey longer than 8 bytes are added to `skipped`
    /// ([`ErrorReason::FieldSkipped`]).
    pub fn decode_set<S: RecordSink>(
        self,
        body: &[u8],
        rec: &mut FlowRecord,
        clock: ExportClock,
        (sink, skipped): (&mut S, &mut u64),
    ) -> (u32, Result<(), ErrorReason>) {
        let Params {
            egress,
            vlan,
            l3,
            l4,
            tunnel,
        } = self.params();
        let set = Set {
            body,
            rec,
            clock,
            sink,
            skipped,
        };
        match (egress, vlan) {
            (false, false) => set.by_l3::<false, false>(l3, l4, tunnel),
            (false, true) => set.by_l3::<false, true>(l3, l4, tunnel),
            (true, false) => set.by_l3::<true, false>(l3, l4, tunnel),
            (true, true) => set.by_l3::<true, true>(l3, l4, tunnel),
        }
    }

    /// The smallest record of this layout (tests hold it to the template's).
    #[cfg(test)]
    fn min_len(self) -> usize {
        let p = self.params();
        min_len(p.egress, p.vlan, p.l3, p.l4, p.tunnel)
    }

    fn params(self) -> Params {
        let bits = self.0;
        Params {
            egress: bits & 1 != 0,
            tunnel: bits & 2 != 0,
            l4: (bits >> 2) & 3,
            l3: (bits >> 4) & 3,
            vlan: bits & 64 != 0,
        }
    }
}

/// The parameters of an OVS data template.
struct Params {
    egress: bool,
    vlan: bool,
    /// 0 none, 1 IPv4, 2 IPv6.
    l3: u8,
    /// `L4_NONE`, `L4_PORTS` or `L4_ICMP`.
    l4: u8,
    tunnel: bool,
}

/// One data set on its way to the loop of its layout: the layout's parameters become constants
/// one match at a time.
struct Set<'a, S> {
    body: &'a [u8],
    rec: &'a mut FlowRecord,
    clock: ExportClock,
    sink: &'a mut S,
    skipped: &'a mut u64,
}

type SetOutcome = (u32, Result<(), ErrorReason>);

impl<S: RecordSink> Set<'_, S> {
    fn by_l3<const EGRESS: bool, const VLAN: bool>(
        self,
        l3: u8,
        l4: u8,
        tunnel: bool,
    ) -> SetOutcome {
        match l3 {
            0 => self.by_l4::<EGRESS, VLAN, 0>(L4_NONE, tunnel),
            1 => self.by_l4::<EGRESS, VLAN, 1>(l4, tunnel),
            _ => self.by_l4::<EGRESS, VLAN, 2>(l4, tunnel),
        }
    }

    fn by_l4<const EGRESS: bool, const VLAN: bool, const L3: u8>(
        self,
        l4: u8,
        tunnel: bool,
    ) -> SetOutcome {
        match l4 {
            L4_PORTS => self.by_tunnel::<EGRESS, VLAN, L3, L4_PORTS>(tunnel),
            L4_ICMP => self.by_tunnel::<EGRESS, VLAN, L3, L4_ICMP>(tunnel),
            _ => self.by_tunnel::<EGRESS, VLAN, L3, L4_NONE>(tunnel),
        }
    }

    fn by_tunnel<const EGRESS: bool, const VLAN: bool, const L3: u8, const L4: u8>(
        self,
        tunnel: bool,
    ) -> SetOutcome {
        if tunnel {
            self.records::<EGRESS, VLAN, L3, L4, true>()
        } else {
            self.records::<EGRESS, VLAN, L3, L4, false>()
        }
    }

    /// The record loop of one layout.
    fn records<
        const EGRESS: bool,
        const VLAN: bool,
        const L3: u8,
        const L4: u8,
        const TUNNEL: bool,
    >(
        self,
    ) -> SetOutcome {
        let Set {
            body,
            rec,
            clock,
            sink,
            skipped,
        } = self;
        let min_len = min_len(EGRESS, VLAN, L3, L4, TUNNEL);
        // The IPv4-mapped prefix of the addresses this layout sends as IPv4; records write their
        // last four bytes.
        if L3 == 1 {
            rec.src_addr = V4_MAPPED;
            rec.dst_addr = V4_MAPPED;
        }
        if TUNNEL {
            rec.tunnel_src_addr = V4_MAPPED;
            rec.tunnel_dst_addr = V4_MAPPED;
        }
        let mut flows = 0;
        let mut rest = body;
        while rest.len() >= min_len {
            rest = match record_fast::<EGRESS, VLAN, L3, L4, TUNNEL>(rest, rec, clock) {
                Some(after) => after,
                None => match record::<EGRESS, VLAN, L3, L4, TUNNEL>(rest, rec, clock) {
                    Ok((used, key_skipped)) => {
                        *skipped += u64::from(key_skipped);
                        rest.get(used..).unwrap_or_default()
                    }
                    Err(reason) => return (flows, Err(reason)),
                },
            };
            sink.flow(rec);
            flows += 1;
        }
        (flows, Ok(()))
    }
}

/// Bytes of the VLAN fields: vlanId, dot1qVlanId, dot1qPriority.
const fn vlan_len(vlan: bool) -> usize {
    if vlan { 5 } else { 0 }
}

/// Bytes of the L3 fields: ipVersion, ipTTL, protocolIdentifier, DSCP, precedence and
/// ipClassOfService, then the addresses (and IPv6's flow label).
const fn l3_len(l3: u8) -> usize {
    match l3 {
        1 => 6 + 8,
        2 => 6 + 36,
        _ => 0,
    }
}

/// Bytes of the L4 fields: ports, or ICMP type and code.
const fn l4_len(l4: u8) -> usize {
    match l4 {
        L4_PORTS => 4,
        L4_ICMP => 2,
        _ => 0,
    }
}

/// The smallest record of a layout: its fixed fields and one length byte per variable-length
/// field (interface name and description, twice for egress, and the tunnel key).
const fn min_len(egress: bool, vlan: bool, l3: u8, l4: u8, tunnel: bool) -> usize {
    let egress = if egress { EGRESS_LEN + 2 } else { 0 };
    let tunnel = if tunnel { 1 + 1 + TUNNEL_LEN } else { 0 };
    FRONT_LEN + 2 + egress + vlan_len(vlan) + l3_len(l3) + l4_len(l4) + tunnel + TAIL_LEN
}

/// The `len` bytes of `data` from `at`: the step decoder's region check (`TruncatedRecord` when
/// they are not all there). `len` is a constant of the layout, so reads at constant offsets
/// below it need no further check.
#[inline(always)]
fn region(data: &[u8], at: usize, len: usize) -> Result<&[u8], ErrorReason> {
    data.get(at..)
        .and_then(|d| d.get(..len))
        .ok_or(ErrorReason::TruncatedRecord)
}

/// `N` bytes at constant offset `offset` of a region (zeros past its end, which the constant
/// offsets below never reach).
#[inline(always)]
fn at<const N: usize>(w: &[u8], offset: usize) -> [u8; N] {
    match w.get(offset..).and_then(|s| s.first_chunk::<N>()) {
        Some(b) => *b,
        None => [0; N],
    }
}

#[inline(always)]
fn u8_at(w: &[u8], offset: usize) -> u8 {
    at::<1>(w, offset)[0]
}

#[inline(always)]
fn u16_at(w: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes(at(w, offset))
}

#[inline(always)]
fn u32_at(w: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(at(w, offset))
}

#[inline(always)]
fn u64_at(w: &[u8], offset: usize) -> u64 {
    u64::from_be_bytes(at(w, offset))
}

/// The last four bytes of an IPv4-mapped address (its prefix is written once per set).
#[inline(always)]
fn set_v4(addr: &mut [u8; 16], octets: [u8; 4]) {
    if let Some(last) = addr.last_chunk_mut::<4>() {
        *last = octets;
    }
}

/// The low `n` bytes of a `u64`, by `n` from 0 to 8.
const LOW_BYTES: [u64; 9] = {
    let mut masks = [0; 9];
    let mut n = 1;
    while n <= 8 {
        masks[n] = u64::MAX >> (64 - 8 * n);
        n += 1;
    }
    masks
};

/// The variable-length tunnelKey that ends at `end` and is `len` bytes long: an unsigned
/// big-endian number of up to 8 bytes, 0 when longer (as the step decoder stores it; the caller
/// counts it).
#[inline(always)]
fn tunnel_key(data: &[u8], end: usize, len: usize) -> u64 {
    match (
        data.get(..end).and_then(|d| d.last_chunk::<8>()),
        LOW_BYTES.get(len),
    ) {
        // The 8 bytes that end with the key, masked to its length.
        (Some(word), Some(mask)) => u64::from_be_bytes(*word) & mask,
        _ => match data.get(end.saturating_sub(len)..end) {
            Some(key) if key.len() <= 8 => be_uint(key),
            _ => 0,
        },
    }
}

/// Where `src_mac` starts in a record, `dst_mac` right after it.
const MACS: usize = std::mem::offset_of!(FlowRecord, src_mac);
const _: () = assert!(std::mem::offset_of!(FlowRecord, dst_mac) == MACS + 6);

/// The fields of a record's front region ([`FRONT_LEN`] bytes) the record keeps;
/// ingressInterfaceType is skipped.
#[inline(always)]
fn front(w: &[u8], rec: &mut FlowRecord) {
    rec.observation_point_id = u32_at(w, 0);
    rec.flow_direction = u8_at(w, 4);
    // Source and destination MAC follow each other in both: one 12-byte copy.
    let macs: [u8; 12] = at(w, 5);
    if let Some(to) = bytemuck::bytes_of_mut(rec).get_mut(MACS..MACS + 12) {
        to.copy_from_slice(&macs);
    }
    rec.etype = u16_at(w, 17);
    rec.in_if = u32_at(w, 20);
}

/// The VLAN, L3 and L4 fields of a record, from the start of `w`.
#[inline(always)]
fn middle<const VLAN: bool, const L3: u8, const L4: u8>(w: &[u8], rec: &mut FlowRecord) {
    let l3 = vlan_len(VLAN);
    let l4 = l3 + l3_len(L3);
    if VLAN {
        // vlanId; dot1qVlanId and dot1qPriority are skipped.
        rec.vlan_id = u16_at(w, 0) & 0x0fff;
    }
    if L3 != 0 {
        // ipVersion (the ethertype is sent), ipTTL, protocolIdentifier, DSCP and precedence
        // (ipClassOfService is sent), ipClassOfService.
        rec.ip_ttl = u8_at(w, l3 + 1);
        rec.proto = u8_at(w, l3 + 2);
        rec.ip_tos = u8_at(w, l3 + 5);
        if L3 == 1 {
            set_v4(&mut rec.src_addr, at(w, l3 + 6));
            set_v4(&mut rec.dst_addr, at(w, l3 + 10));
        } else {
            rec.src_addr = at(w, l3 + 6);
            rec.dst_addr = at(w, l3 + 22);
            rec.ipv6_flow_label = u32_at(w, l3 + 38) & 0x000f_ffff;
        }
    }
    match L4 {
        L4_PORTS => {
            let ports = u32_at(w, l4);
            (rec.src_port, rec.dst_port) = ((ports >> 16) as u16, ports as u16);
        }
        L4_ICMP => {
            rec.icmp_type = u8_at(w, l4);
            rec.icmp_code = u8_at(w, l4 + 1);
        }
        _ => {}
    }
}

/// Tunnel source/destination IPv4, protocol and ports, from the start of `w`.
#[inline(always)]
fn tunnel(w: &[u8], rec: &mut FlowRecord) {
    set_v4(&mut rec.tunnel_src_addr, at(w, 0));
    set_v4(&mut rec.tunnel_dst_addr, at(w, 4));
    rec.tunnel_proto = u8_at(w, 8);
    let ports = u32_at(w, 9);
    (rec.tunnel_src_port, rec.tunnel_dst_port) = ((ports >> 16) as u16, ports as u16);
}

/// The counters every record ends with ([`TAIL_LEN`] bytes from `at` in `w`): delta-µs start
/// and end, packetDeltaCount, layer2OctetDeltaCount (OVS sends no octetDeltaCount) and
/// flowEndReason; the other counters are skipped.
#[inline(always)]
fn tail(w: &[u8], at: usize, rec: &mut FlowRecord, clock: ExportClock) {
    let micros = |at| u64::from(u32_at(w, at));
    rec.time_flow_start_ns = clock.absolute_ns(TimeKind::DeltaMicros, micros(at), 0);
    rec.time_flow_end_ns = clock.absolute_ns(TimeKind::DeltaMicros, micros(at + 4), 0);
    rec.packets = u64_at(w, at + 24);
    rec.bytes = u64_at(w, at + 96);
    rec.flow_end_reason = u8_at(w, at + 112);
}

/// The common case of [`record`] in fewer checks: the record at the front of `data` when every
/// variable-length field uses the one-byte length form and the tunnel key is at most 8 bytes;
/// `None` otherwise, or when the record is not whole. It reads the length bytes first (one
/// check each), then checks once that the record they describe is all there: every offset
/// after that is a sum of those lengths and constants, so the compiler proves each read inside
/// the record and drops its check. Returns the bytes after the record; after `None`, some
/// fields may have been written and [`record`] decodes the record again, exactly.
#[inline(always)]
fn record_fast<
    'a,
    const EGRESS: bool,
    const VLAN: bool,
    const L3: u8,
    const L4: u8,
    const TUNNEL: bool,
>(
    data: &'a [u8],
    rec: &mut FlowRecord,
    clock: ExportClock,
) -> Option<&'a [u8]> {
    // Where each region starts: the front, then past interfaceName and interfaceDescription
    // (and the egress pair) the middle; with a tunnel, the tunnel fields after the key.
    // A variable-length field's length byte and value take `1 + len` bytes; the three-byte form
    // (length byte 255) is the only one whose step is 256, so one test of the steps or-ed
    // together finds it.
    let step = |at: usize| data.get(at).map(|&len| 1 + usize::from(len));
    let name = step(FRONT_LEN)?;
    let description_at = FRONT_LEN + name;
    let description = step(description_at)?;
    let mut middle_at = description_at + description;
    let mut steps = name | description;
    let egress_at = middle_at;
    if EGRESS {
        let name_at = egress_at + EGRESS_LEN;
        let name = step(name_at)?;
        let description = step(name_at + name)?;
        middle_at = name_at + name + description;
        steps |= name | description;
    }
    if steps & 256 != 0 {
        return None;
    }
    let middle_len = vlan_len(VLAN) + l3_len(L3) + l4_len(L4);
    let (key_len, tail_at) = if TUNNEL {
        let key_len = *data.get(middle_at + middle_len + 1)?;
        // A key of up to 8 bytes (longer ones, and the three-byte form, take `record`).
        if key_len > 8 {
            return None;
        }
        let key_len = usize::from(key_len);
        (key_len, middle_at + middle_len + 2 + key_len + TUNNEL_LEN)
    } else {
        (0, middle_at + middle_len)
    };
    let (record, after) = data.split_at_checked(tail_at + TAIL_LEN)?;
    front(record.get(..FRONT_LEN)?, rec);
    if EGRESS {
        rec.out_if = u32_at(record.get(egress_at..)?, 0);
    }
    let middle = record.get(middle_at..)?;
    self::middle::<VLAN, L3, L4>(middle, rec);
    if TUNNEL {
        rec.tunnel_type = u8_at(middle, middle_len);
        // The 8 bytes that end with the key (the front is before it), masked to its length.
        let key_word = record.get(tail_at - TUNNEL_LEN - 8..)?;
        rec.tunnel_key = u64_at(key_word, 0) & LOW_BYTES.get(key_len)?;
        tunnel(record.get(tail_at - TUNNEL_LEN..)?, rec);
    }
    tail(record.get(tail_at..)?, 0, rec, clock);
    Some(after)
}

/// One record of the OVS layout given by the parameters (see [`ovs::template`] for the field
/// order this follows) from the front of `data`, which holds at least the layout's smallest
/// record, with the step decoder's checks in its order. Returns the bytes it used, and whether
/// its tunnelKey was too long to store (left out, as the step decoder does).
#[cold]
#[inline(never)]
fn record<const EGRESS: bool, const VLAN: bool, const L3: u8, const L4: u8, const TUNNEL: bool>(
    data: &[u8],
    rec: &mut FlowRecord,
    clock: ExportClock,
) -> Result<(usize, bool), ErrorReason> {
    front(region(data, 0, FRONT_LEN)?, rec);
    let (_, name_end) = varlen(data, FRONT_LEN)?;
    let (_, mut base) = varlen(data, name_end)?;
    if EGRESS {
        // egressInterface (egressInterfaceType is skipped: the region ends at the last field
        // read), then the egress port's name and description.
        let w = region(data, base, 4)?;
        rec.out_if = u32_at(w, 0);
        let (_, name_end) = varlen(data, base + EGRESS_LEN)?;
        (_, base) = varlen(data, name_end)?;
    }
    // VLAN, L3, L4 and the tunnel type; without a tunnel, the tail follows directly.
    let middle_len = vlan_len(VLAN) + l3_len(L3) + l4_len(L4);
    let w = region(data, base, middle_len + if TUNNEL { 1 } else { TAIL_LEN })?;
    middle::<VLAN, L3, L4>(w, rec);
    if TUNNEL {
        // tunnelType, tunnelKey (variable length), then tunnel source/destination IPv4,
        // protocol and ports.
        rec.tunnel_type = u8_at(w, middle_len);
        let (start, end) = varlen(data, base + middle_len + 1)?;
        rec.tunnel_key = tunnel_key(data, end, end - start);
        let w = region(data, end, TUNNEL_LEN + TAIL_LEN)?;
        tunnel(w, rec);
        tail(w, TUNNEL_LEN, rec, clock);
        Ok((end + TUNNEL_LEN + TAIL_LEN, end - start > 8))
    } else {
        tail(w, middle_len, rec, clock);
        Ok((base + middle_len + TAIL_LEN, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Collected;
    use crate::decode::ie::{Extras, VARLEN};
    use crate::decode::template::{RecordImage, SetTail, Template, TemplateKind};
    use bytemuck::Zeroable;
    use proptest::prelude::*;

    fn compiled(fields: &[Field]) -> Template {
        Template::compile(TemplateKind::Data, fields).expect("OVS templates compile")
    }

    #[test]
    fn every_ovs_template_is_recognised_and_nothing_else() {
        for spec in ovs::templates() {
            let t = compiled(&spec.fields);
            let layout = t.ovs_layout();
            assert!(layout.is_some(), "template {} not recognised", spec.id);
            // One sampling rate serves a whole set (`flowset::decode_records`).
            assert!(!t.carries_sampling(), "template {}", spec.id);
            assert_eq!(
                layout.map(Layout::min_len),
                Some(t.min_len()),
                "template {}",
                spec.id
            );
            // One field more, one less, or one of another length: the step decoder.
            let mut more = spec.fields.clone();
            more.push(Field::iana(1, 8));
            let mut shorter = spec.fields.clone();
            shorter.pop();
            let mut resized = spec.fields.clone();
            resized[0] = Field::iana(138, 8);
            for other in [more, shorter, resized] {
                assert_eq!(compiled(&other).ovs_layout(), None, "template {}", spec.id);
            }
        }
        // Options templates never take it.
        let options = Template::compile(TemplateKind::Options, &ovs::templates()[0].fields);
        assert_eq!(options.unwrap().ovs_layout(), None);
    }

    /// A deterministic byte source for the property test (values need no distribution).
    struct Bytes(u64);

    impl Bytes {
        fn next(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 as u8
        }
    }

    /// `records` records of `fields` with random values; variable-length fields get lengths
    /// that need the 3-byte prefix and tunnel keys longer than 8 bytes now and then.
    fn records(fields: &[Field], records: usize, rng: &mut Bytes) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..records {
            for f in fields {
                let len = if f.len == VARLEN {
                    let len = match rng.next() % 8 {
                        0 => 255 + usize::from(rng.next()),
                        1 => 9 + usize::from(rng.next() % 4),
                        _ => usize::from(rng.next() % 9),
                    };
                    if len < 255 {
                        out.push(len as u8);
                    } else {
                        out.push(255);
                        out.extend_from_slice(&(len as u16).to_be_bytes());
                    }
                    len
                } else {
                    usize::from(f.len)
                };
                out.extend((0..len).map(|_| rng.next()));
            }
        }
        out
    }

    /// What the step decoder makes of a data set `body`, run as the set loop of `flowset` runs
    /// it for a template that writes the same fields in every record: the records, then the
    /// error that stopped the set.
    fn step_decoded(
        t: &Template,
        body: &[u8],
        base: FlowRecord,
        clock: ExportClock,
    ) -> (Vec<FlowRecord>, u64, Result<(), ErrorReason>) {
        let mut out = Vec::new();
        let mut skipped = 0;
        let mut img = RecordImage::new(base);
        let mut tail = SetTail::new();
        let mut rest = body;
        while !rest.is_empty() && rest.len() >= t.min_len() {
            let mut extras = Extras::default();
            match t.decode_record(rest, &mut img, &mut extras, &mut tail) {
                Ok(used) => rest = rest.get(used..).unwrap_or_default(),
                Err(reason) => return (out, skipped, Err(reason)),
            }
            skipped += u64::from(extras.skipped);
            let mut rec = img.rec;
            for time in [&mut rec.time_flow_start_ns, &mut rec.time_flow_end_ns] {
                *time = clock.absolute_ns(TimeKind::DeltaMicros, *time, 0);
            }
            out.push(rec);
        }
        (out, skipped, Ok(()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The straight-line loop and the step decoder agree on every layout: the records (from
        /// a base record of random bytes, so a field written wrongly or not at all shows), the
        /// error for truncated or corrupted data after the same records, and the count of tunnel
        /// keys left out.
        #[test]
        fn same_as_step_decoder(
            index in 0..ovs::COUNT,
            seed in any::<u64>(),
            count in 1usize..4,
            cut in proptest::option::of(any::<prop::sample::Index>()),
            flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
            export_secs in any::<u32>(),
        ) {
            let spec = ovs::template(ovs::FIRST_ID + index).expect("in the family");
            let t = compiled(&spec.fields);
            let layout = t.ovs_layout();
            prop_assert!(layout.is_some());
            let mut rng = Bytes(seed | 1);
            let mut body = records(&spec.fields, count, &mut rng);
            if let Some(at) = cut {
                body.truncate(at.index(body.len() + 1));
            }
            if let Some((at, byte)) = flip && !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let mut base = FlowRecord::zeroed();
            bytemuck::bytes_of_mut(&mut base).iter_mut().for_each(|b| *b = rng.next());
            let clock = ExportClock {
                export_ns: u64::from(export_secs) * 1_000_000_000,
                uptime_ms: None,
            };
            let mut sink = Collected::default();
            let mut rec = base;
            let mut skipped = 0;
            let (flows, result) = layout
                .expect("recognised")
                .decode_set(&body, &mut rec, clock, (&mut sink, &mut skipped));
            prop_assert_eq!(flows as usize, sink.flows.len());
            let (expected, expected_skipped, expected_result) = step_decoded(&t, &body, base, clock);
            prop_assert_eq!(result, expected_result);
            prop_assert_eq!(skipped, expected_skipped, "tunnel keys left out");
            prop_assert_eq!(sink.flows.len(), expected.len());
            for (fast, step) in sink.flows.iter().zip(&expected) {
                prop_assert_eq!(bytemuck::bytes_of(fast), bytemuck::bytes_of(step));
            }
        }
    }
}
