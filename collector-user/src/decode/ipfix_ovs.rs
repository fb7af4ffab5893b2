//! Straight-line decoders for Open vSwitch's IPFIX data templates.
//!
//! A cluster's flow exports are mostly OVS IPFIX, and OVS uses a fixed family of 120 data
//! templates ([`ovs::template`]): one per combination of VLAN, L3 (none, IPv4, IPv6), L4 (none,
//! ports, ICMP), tunnel and direction, always with the same fields in the same order. When a
//! template's field list is exactly one of them (whatever its id), [`Layout::recognise`] names a
//! decoder compiled for that layout: every offset is a constant, each run of fixed-length fields
//! costs one length check, and fields are plain loads and stores — no step dispatch. Any other
//! template, and any OVS template that differs by one field, takes the step decoder
//! ([`super::template`]).
//!
//! The contract is exact equivalence with the step decoder on the same template: the same record
//! image, the same bytes consumed, and the same error for the same damage (length checks happen
//! in the same order). `tests::same_as_step_decoder` holds the two to it over every layout with
//! random values, random variable-length fields, truncation and corrupted bytes.

use super::ErrorReason;
use super::ie::{PEN_OVS, be_uint};
use super::ipfix::ovs;
use super::template::{Field, RecordImage, SetTail, WINDOW, varlen};
use crate::record::ipv4_bytes;

/// Decodes one record of one layout from the front of a data set suffix (see [`super::template::Template::decode_record`]):
/// called only with at least the template's smallest record length.
pub type RecordFn = fn(&[u8], &mut RecordImage, &mut SetTail) -> Result<usize, ErrorReason>;

/// L4 groups of the OVS family: TCP, UDP and SCTP send the same port fields.
const L4_NONE: u8 = 0;
const L4_PORTS: u8 = 1;
const L4_ICMP: u8 = 4;

/// Bytes of the fields every OVS record ends with: flowStart/EndDeltaMicroseconds (158, 159),
/// dropped counts (133, 135), packetDelta/TotalCount (2, 86), layer-2 and multicast counters
/// (354–358, 19, 174), layer2OctetDelta/TotalCount (352, 353) and flowEndReason (136).
const TAIL_LEN: usize = 113;

/// One of OVS's data template layouts: the index of [`ovs::template`]'s id − [`ovs::FIRST_ID`]
/// whose fields a template has.
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
        let l4 = if has(iana(7, 2)) {
            1
        } else if has(iana(176, 1)) || has(iana(178, 1)) {
            4
        } else {
            0
        };
        let tunnel = has(Field::enterprise(PEN_OVS, 891, 1));
        let id = ovs::template_id(u16::from(vlan), l3, l4, tunnel, egress);
        let expected = ovs::template(id)?;
        let index = u8::try_from(id - ovs::FIRST_ID).ok()?;
        (expected.fields == fields).then_some(Layout(index))
    }

    /// Decode one record (see [`RecordFn`]).
    #[inline(always)]
    pub fn decode(
        self,
        data: &[u8],
        img: &mut RecordImage,
        tail: &mut SetTail,
    ) -> Result<usize, ErrorReason> {
        match DECODERS.get(usize::from(self.0)) {
            Some(decode) => decode(data, img, tail),
            // A `Layout` only comes from `recognise`, whose ids are in the family.
            None => Err(ErrorReason::BadTemplate),
        }
    }
}

/// The decoder of every layout, by index.
static DECODERS: [RecordFn; ovs::COUNT as usize] = decoders();

const fn decoders() -> [RecordFn; ovs::COUNT as usize] {
    let mut table: [RecordFn; ovs::COUNT as usize] =
        [record::<false, false, 0, L4_NONE, false>; ovs::COUNT as usize];
    let mut index = 0;
    while index < ovs::COUNT as usize {
        // The id arithmetic of `ovs::template_id`.
        let egress = index % 2 == 1;
        let tunnel = (index / 2) % 2 == 1;
        let l4 = match (index / 4) % 5 {
            1..=3 => L4_PORTS,
            4 => L4_ICMP,
            _ => L4_NONE,
        };
        let l3 = (index / 20) % 3;
        let vlan = index / 60 == 1;
        table[index] = by_direction(egress, vlan, l3, l4, tunnel);
        index += 1;
    }
    table
}

const fn by_direction(egress: bool, vlan: bool, l3: usize, l4: u8, tunnel: bool) -> RecordFn {
    match (egress, vlan) {
        (false, false) => by_l3::<false, false>(l3, l4, tunnel),
        (false, true) => by_l3::<false, true>(l3, l4, tunnel),
        (true, false) => by_l3::<true, false>(l3, l4, tunnel),
        (true, true) => by_l3::<true, true>(l3, l4, tunnel),
    }
}

const fn by_l3<const EGRESS: bool, const VLAN: bool>(l3: usize, l4: u8, tunnel: bool) -> RecordFn {
    match l3 {
        0 => by_l4::<EGRESS, VLAN, 0>(L4_NONE, tunnel),
        1 => by_l4::<EGRESS, VLAN, 1>(l4, tunnel),
        _ => by_l4::<EGRESS, VLAN, 2>(l4, tunnel),
    }
}

const fn by_l4<const EGRESS: bool, const VLAN: bool, const L3: u8>(
    l4: u8,
    tunnel: bool,
) -> RecordFn {
    match l4 {
        L4_PORTS => by_tunnel::<EGRESS, VLAN, L3, L4_PORTS>(tunnel),
        L4_ICMP => by_tunnel::<EGRESS, VLAN, L3, L4_ICMP>(tunnel),
        _ => by_tunnel::<EGRESS, VLAN, L3, L4_NONE>(tunnel),
    }
}

const fn by_tunnel<const EGRESS: bool, const VLAN: bool, const L3: u8, const L4: u8>(
    tunnel: bool,
) -> RecordFn {
    if tunnel {
        record::<EGRESS, VLAN, L3, L4, true>
    } else {
        record::<EGRESS, VLAN, L3, L4, false>
    }
}

/// `N` bytes at constant offset `at` of a window (offsets are constants below [`WINDOW`]).
#[inline(always)]
fn at<const N: usize>(w: &[u8; WINDOW], offset: usize) -> [u8; N] {
    match w.get(offset..).and_then(|s| s.first_chunk::<N>()) {
        Some(b) => *b,
        None => [0; N],
    }
}

#[inline(always)]
fn u8_at(w: &[u8; WINDOW], offset: usize) -> u8 {
    at::<1>(w, offset)[0]
}

#[inline(always)]
fn u16_at(w: &[u8; WINDOW], offset: usize) -> u16 {
    u16::from_be_bytes(at(w, offset))
}

#[inline(always)]
fn u32_at(w: &[u8; WINDOW], offset: usize) -> u32 {
    u32::from_be_bytes(at(w, offset))
}

#[inline(always)]
fn u64_at(w: &[u8; WINDOW], offset: usize) -> u64 {
    u64::from_be_bytes(at(w, offset))
}

/// The step decoder's region check: the bytes up to `end` must be in the record.
#[inline(always)]
fn need(data: &[u8], end: usize) -> Result<(), ErrorReason> {
    if end > data.len() {
        return Err(ErrorReason::TruncatedRecord);
    }
    Ok(())
}

/// One record of the OVS layout given by the parameters (see [`ovs::template`] for the field
/// order this follows).
fn record<const EGRESS: bool, const VLAN: bool, const L3: u8, const L4: u8, const TUNNEL: bool>(
    data: &[u8],
    img: &mut RecordImage,
    tail: &mut SetTail,
) -> Result<usize, ErrorReason> {
    let rec = &mut img.rec;
    // observationPointId, flowDirection, source and destination MAC, ethernetType,
    // ethernetHeaderLength, ingressInterface, ingressInterfaceType (28 bytes; the caller checked
    // the smallest record length), then interfaceName and interfaceDescription.
    let w = tail.view(data, 0);
    rec.observation_point_id = u32_at(w, 0);
    rec.flow_direction = u8_at(w, 4);
    rec.src_mac = at(w, 5);
    rec.dst_mac = at(w, 11);
    rec.etype = u16_at(w, 17);
    rec.in_if = u32_at(w, 20);
    let (_, name_end) = varlen(data, 28)?;
    let (_, mut base) = varlen(data, name_end)?;
    if EGRESS {
        // egressInterface, egressInterfaceType, then the egress port's name and description.
        need(data, base + 4)?;
        let w = tail.view(data, base);
        rec.out_if = u32_at(w, 0);
        let (_, name_end) = varlen(data, base + 8)?;
        (_, base) = varlen(data, name_end)?;
    }
    // VLAN, L3, L4 and the tunnel type; without a tunnel, the tail follows directly.
    let vlan_len = if VLAN { 5 } else { 0 };
    let l3_len = match L3 {
        1 => 6 + 8,
        2 => 6 + 36,
        _ => 0,
    };
    let l4_len = match L4 {
        L4_PORTS => 4,
        L4_ICMP => 2,
        _ => 0,
    };
    let middle = vlan_len + l3_len + l4_len;
    need(data, base + middle + if TUNNEL { 1 } else { TAIL_LEN })?;
    let w = tail.view(data, base);
    if VLAN {
        // vlanId; dot1qVlanId and dot1qPriority are skipped.
        rec.vlan_id = u16_at(w, 0) & 0x0fff;
    }
    let l3 = vlan_len;
    if L3 != 0 {
        // ipVersion (the ethertype is sent), ipTTL, protocolIdentifier, DSCP and precedence
        // (ipClassOfService is sent), ipClassOfService.
        rec.ip_ttl = u8_at(w, l3 + 1);
        rec.proto = u8_at(w, l3 + 2);
        rec.ip_tos = u8_at(w, l3 + 5);
        if L3 == 1 {
            rec.src_addr = ipv4_bytes(at(w, l3 + 6));
            rec.dst_addr = ipv4_bytes(at(w, l3 + 10));
        } else {
            rec.src_addr = at(w, l3 + 6);
            rec.dst_addr = at(w, l3 + 22);
            rec.ipv6_flow_label = u32_at(w, l3 + 38) & 0x000f_ffff;
        }
    }
    let l4 = vlan_len + l3_len;
    match L4 {
        L4_PORTS => {
            rec.src_port = u16_at(w, l4);
            rec.dst_port = u16_at(w, l4 + 2);
        }
        L4_ICMP => {
            rec.icmp_type = u8_at(w, l4);
            rec.icmp_code = u8_at(w, l4 + 1);
        }
        _ => {}
    }
    let (w, tail_at, base) = if TUNNEL {
        // tunnelType, tunnelKey (variable length; longer than 8 bytes stores 0, as the step
        // decoder does), then tunnel source/destination IPv4, protocol and ports.
        rec.tunnel_type = u8_at(w, middle);
        let (start, end) = varlen(data, base + middle + 1)?;
        rec.tunnel_key = match data.get(start..end) {
            Some(key) if key.len() <= 8 => be_uint(key),
            _ => 0,
        };
        need(data, end + 13 + TAIL_LEN)?;
        let w = tail.view(data, end);
        rec.tunnel_src_addr = ipv4_bytes(at(w, 0));
        rec.tunnel_dst_addr = ipv4_bytes(at(w, 4));
        rec.tunnel_proto = u8_at(w, 8);
        rec.tunnel_src_port = u16_at(w, 9);
        rec.tunnel_dst_port = u16_at(w, 11);
        (w, 13, end)
    } else {
        (w, middle, base)
    };
    // Delta-µs start and end (converted by the caller), packetDeltaCount, layer2OctetDeltaCount
    // (OVS sends no octetDeltaCount) and flowEndReason; the other counters are skipped.
    rec.time_flow_start_ns = u64::from(u32_at(w, tail_at));
    rec.time_flow_end_ns = u64::from(u32_at(w, tail_at + 4));
    rec.packets = u64_at(w, tail_at + 24);
    rec.bytes = u64_at(w, tail_at + 96);
    rec.flow_end_reason = u8_at(w, tail_at + 112);
    Ok(base + tail_at + TAIL_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ie::VARLEN;
    use crate::decode::template::{Template, TemplateKind};
    use proptest::prelude::*;

    fn compiled(fields: &[Field]) -> Template {
        Template::compile(TemplateKind::Data, fields).expect("OVS templates compile")
    }

    #[test]
    fn every_ovs_template_is_recognised_and_nothing_else() {
        for spec in ovs::templates() {
            let t = compiled(&spec.fields);
            assert!(
                t.ovs_layout().is_some(),
                "template {} not recognised",
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
    fn records(fields: &[Field], records: usize, seed: u64) -> Vec<u8> {
        let mut rng = Bytes(seed | 1);
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

    /// Every record of `body` as the data-set loop reads them: (result, image) per record.
    fn decode_all(t: &Template, body: &[u8]) -> Vec<(Result<usize, ErrorReason>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut img = RecordImage::new(bytemuck::Zeroable::zeroed());
        let mut tail = SetTail::new();
        let mut rest = body;
        while !rest.is_empty() && rest.len() >= t.min_len() {
            let mut extras = Default::default();
            let result = t.decode_record(rest, &mut img, &mut extras, &mut tail);
            out.push((result, bytemuck::bytes_of(&img).to_vec()));
            match result {
                Ok(used) => rest = rest.get(used..).unwrap_or_default(),
                Err(_) => break,
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The straight-line decoder and the step decoder agree on every layout: records,
        /// bytes used, and errors for truncated or corrupted data.
        #[test]
        fn same_as_step_decoder(
            index in 0..ovs::COUNT,
            seed in any::<u64>(),
            count in 1usize..4,
            cut in proptest::option::of(any::<prop::sample::Index>()),
            flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        ) {
            let spec = ovs::template(ovs::FIRST_ID + index).expect("in the family");
            let fast = compiled(&spec.fields);
            prop_assert!(fast.ovs_layout().is_some());
            let general = compiled(&spec.fields).without_ovs_layout();
            let mut body = records(&spec.fields, count, seed);
            if let Some(at) = cut {
                body.truncate(at.index(body.len() + 1));
            }
            if let Some((at, byte)) = flip && !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
            prop_assert_eq!(decode_all(&fast, &body), decode_all(&general, &body));
        }
    }
}
