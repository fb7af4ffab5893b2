//! Property tests across the decoders: emit → decode round trips for random records and random
//! templates (v5, v9, IPFIX), and "no input panics" for arbitrary and mutated datagrams.

use super::ie::{self, EncodeContext, PEN_OVS, VARLEN};
use super::ipfix::{self, MessageWriter, TemplateSpec};
use super::netflow_v5::{self, HeaderRepr, RecordRepr};
use super::netflow_v9::PacketWriter;
use super::template::Field;
use super::test_support::run;
use super::time::ExportClock;
use super::{Decoder, ErrorReason, Protocol};
use crate::record::FlowRecord;
use proptest::prelude::*;

/// One group per record slot; a random template takes at most one element of each.
const GROUPS: &[&[(u32, u16)]] = &[
    &[(0, 1), (0, 85), (0, 352), (0, 353)],
    &[(0, 2), (0, 86)],
    &[(0, 4)],
    &[(0, 5), (0, 195)],
    &[(0, 6)],
    &[(0, 7)],
    &[(0, 11)],
    &[(0, 8), (0, 27)],
    &[(0, 12), (0, 28)],
    &[(0, 9), (0, 29)],
    &[(0, 13), (0, 30)],
    &[(0, 10)],
    &[(0, 14)],
    &[(0, 15), (0, 62)],
    &[(0, 16)],
    &[(0, 17)],
    &[(0, 31)],
    &[(0, 176), (0, 178), (0, 32), (0, 139)],
    &[(0, 177), (0, 179)],
    &[(0, 56), (0, 81)],
    &[(0, 80), (0, 57)],
    &[(0, 58), (0, 243)],
    &[(0, 61)],
    &[(0, 136)],
    &[(0, 138)],
    &[(0, 192)],
    &[(0, 256), (0, 60)],
    &[(0, 150), (0, 152), (0, 154), (0, 156), (0, 158), (0, 22)],
    &[(0, 151), (0, 153), (0, 155), (0, 157), (0, 159), (0, 21)],
    &[(0, 48), (0, 302)],
    &[(0, 34), (0, 50)],
    &[(PEN_OVS, 891)],
    &[(PEN_OVS, 892)],
    &[(PEN_OVS, 893)],
    &[(PEN_OVS, 894)],
    &[(PEN_OVS, 895)],
    &[(PEN_OVS, 896)],
    &[(PEN_OVS, 897)],
];

const EXPORT_SECS: u32 = 1_700_000_000;
const UPTIME_MS: u32 = 3_600_000;
const INIT_MS: u64 = EXPORT_SECS as u64 * 1000 - 100_000_000;

/// A random template: per group, maybe one element, with a random allowed length (reduced sizes
/// for unsigned elements, variable length for OVS tunnelKey in IPFIX), unknown elements mixed in,
/// in random order.
fn template(ipfix: bool) -> impl Strategy<Value = Vec<Field>> {
    let picks = prop::collection::vec((any::<u8>(), any::<u8>(), any::<bool>()), GROUPS.len());
    let unknown = prop::collection::vec((1u16..40, any::<bool>()), 0..3);
    (picks, unknown, any::<u64>()).prop_map(move |(picks, unknown, seed)| {
        let mut fields = Vec::new();
        for ((pick, len_pick, varlen), group) in picks.iter().zip(GROUPS) {
            let choice = usize::from(*pick) % (group.len() + 1);
            let Some(&(pen, id)) = group.get(choice) else {
                continue;
            };
            if pen != 0 && !ipfix {
                continue;
            }
            let spec = ie::lookup(pen, id).expect("mapped element");
            let len = match spec.width {
                ie::Width::Exact(n) => u16::from(n),
                ie::Width::Uint(_) if ipfix && *varlen && id == 892 => VARLEN,
                ie::Width::Uint(n) => u16::from(*len_pick % n + 1),
            };
            fields.push(Field { id, pen, len });
        }
        let uptime_time = fields
            .iter()
            .any(|f| f.pen == 0 && (f.id == 21 || f.id == 22));
        if ipfix && uptime_time {
            fields.push(Field::iana(160, 8));
        }
        for (len, enterprise) in unknown {
            let pen = if enterprise && ipfix { 9 } else { 0 };
            fields.push(Field { id: 999, pen, len });
        }
        // Deterministic shuffle from the seed (Fisher–Yates with an LCG).
        let mut s = seed | 1;
        for i in (1..fields.len()).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            fields.swap(i, (s >> 33) as usize % (i + 1));
        }
        if fields.is_empty() {
            fields.push(Field::iana(4, 1));
        }
        fields
    })
}

/// A random record: random bytes, then values kept in their fields' ranges and times within
/// 16 minutes before the export time.
fn record() -> impl Strategy<Value = FlowRecord> {
    (
        prop::collection::vec(any::<u8>(), size_of::<FlowRecord>()),
        0u64..1_000_000_000_000,
        0u64..1_000_000_000_000,
    )
        .prop_map(|(bytes, a, b)| {
            let mut r: FlowRecord = bytemuck::pod_read_unaligned(&bytes);
            r.vlan_id &= 0x0fff;
            r.ipv6_flow_label &= 0x000f_ffff;
            let export_ns = u64::from(EXPORT_SECS) * 1_000_000_000;
            r.time_flow_start_ns = export_ns - a.max(b);
            r.time_flow_end_ns = export_ns - a.min(b);
            r
        })
}

/// Every template field encodes the same from the decoded record as from the original.
fn same_on_template(
    fields: &[Field],
    orig: &FlowRecord,
    got: &FlowRecord,
    ctx: &EncodeContext,
) -> Result<(), TestCaseError> {
    for f in fields {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ie::encode(f.pen, f.id, f.len, orig, ctx, &mut a);
        ie::encode(f.pen, f.id, f.len, got, ctx, &mut b);
        prop_assert_eq!(a, b, "field {:?}", f);
    }
    Ok(())
}

proptest! {
    #[test]
    fn ipfix_emit_decode_round_trip(fields in template(true), records in prop::collection::vec(record(), 1..5)) {
        let t = TemplateSpec { id: 256, scope_fields: 0, fields };
        let ctx = EncodeContext {
            clock: ExportClock { export_ns: u64::from(EXPORT_SECS) * 1_000_000_000, uptime_ms: None },
            init_ms: INIT_MS,
            interface_name: "",
        };
        let mut w = MessageWriter::new(EXPORT_SECS, 0, 1);
        w.templates(std::slice::from_ref(&t)).data(&t, &records, &ctx);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, "192.0.2.1:4739", &w.finish());
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(sink.flows.len(), records.len());
        for (orig, got) in records.iter().zip(&sink.flows) {
            same_on_template(&t.fields, orig, got, &ctx)?;
        }
    }

    #[test]
    fn v9_emit_decode_round_trip(fields in template(false), records in prop::collection::vec(record(), 1..5)) {
        let t = TemplateSpec { id: 300, scope_fields: 0, fields };
        let mut w = PacketWriter::new(UPTIME_MS, EXPORT_SECS, 0, 1);
        let ctx = EncodeContext { clock: w.clock(), init_ms: 0, interface_name: "" };
        w.templates(std::slice::from_ref(&t)).data(&t, &records, 0);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, "192.0.2.1:2055", &w.finish());
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(sink.flows.len(), records.len());
        for (orig, got) in records.iter().zip(&sink.flows) {
            same_on_template(&t.fields, orig, got, &ctx)?;
        }
    }

    #[test]
    fn v5_emit_decode_round_trip(
        header in (any::<u32>(), 2_200_000u32..4_000_000_000, 0u32..1_000_000_000, any::<u32>(), any::<[u8; 2]>(), any::<u16>()),
        raw in prop::collection::vec((any::<[u8; 48]>(), 0u32..2_000_000, 0u32..2_000_000), 1..=30),
    ) {
        let header = HeaderRepr {
            count: raw.len() as u16,
            sys_uptime_ms: header.0,
            unix_secs: header.1,
            unix_nsecs: header.2,
            flow_sequence: header.3,
            engine_type: header.4[0],
            engine_id: header.4[1],
            sampling: header.5,
        };
        let records: Vec<RecordRepr> = raw
            .iter()
            .map(|(bytes, a, b)| RecordRepr {
                first_ms: header.sys_uptime_ms.wrapping_sub((*a).max(*b)),
                last_ms: header.sys_uptime_ms.wrapping_sub((*a).min(*b)),
                ..RecordRepr::parse(bytes)
            })
            .collect();
        let mut datagram = Vec::new();
        netflow_v5::emit(&header, &records, &mut datagram);
        let mut dec = Decoder::new();
        let (sink, result) = run(&mut dec, "192.0.2.1:2055", &datagram);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(sink.flows.len(), records.len());
        for (orig, got) in records.iter().zip(&sink.flows) {
            prop_assert_eq!(&RecordRepr::from_flow(got, &header), orig);
            prop_assert_eq!(got.sampling_rate, u32::from(header.sampling & 0x3fff));
        }
    }
}

/// A decoder that knows the OVS templates and a v9 template from exporter 192.0.2.1, so random
/// bytes reach the data paths too.
fn primed() -> (Decoder, Vec<Vec<u8>>) {
    let mut dec = Decoder::new();
    let ctx = EncodeContext {
        clock: ExportClock {
            export_ns: u64::from(EXPORT_SECS) * 1_000_000_000,
            uptime_ms: None,
        },
        init_ms: 0,
        interface_name: "br-int",
    };
    let mut rec: FlowRecord = bytemuck::Zeroable::zeroed();
    rec.etype = 0x0800;
    rec.proto = 6;
    rec.tunnel_type = 1;
    let ovs = ipfix::ovs::message(EXPORT_SECS, 0, true, &[rec], &ctx);
    let t = TemplateSpec {
        id: 256,
        scope_fields: 0,
        fields: [(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4), (4, 1)]
            .map(|(i, l)| Field::iana(i, l))
            .to_vec(),
    };
    let mut w = PacketWriter::new(UPTIME_MS, EXPORT_SECS, 0, 0);
    w.templates(std::slice::from_ref(&t))
        .data(&t, &[rec, rec], 0);
    let v9 = w.finish();
    let mut v5 = Vec::new();
    netflow_v5::emit(&HeaderRepr::default(), &[RecordRepr::default(); 3], &mut v5);
    for m in [&ovs, &v9] {
        assert_eq!(run(&mut dec, "192.0.2.1:9", m).1, Ok(()));
    }
    (dec, vec![ovs, v9, v5])
}

fn check_accounted(dec: &mut Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let errors_before: u64 = dec.stats.errors.iter().sum();
    let datagrams_before: u64 = dec.stats.datagrams.iter().sum();
    let (_, result) = run(dec, "192.0.2.1:9", bytes);
    let errors_after: u64 = dec.stats.errors.iter().sum();
    let datagrams_after: u64 = dec.stats.datagrams.iter().sum();
    match result {
        Ok(()) => prop_assert_eq!(datagrams_after, datagrams_before + 1),
        Err(ErrorReason::TooShort | ErrorReason::UnknownVersion) => {
            prop_assert_eq!(datagrams_after, datagrams_before)
        }
        Err(_) => {
            prop_assert_eq!(datagrams_after, datagrams_before + 1);
            prop_assert!(errors_after > errors_before);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(version in prop::sample::select(vec![5u8, 9, 10]), mut bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let (mut dec, _) = primed();
        if bytes.len() >= 2 {
            bytes[0] = 0;
            bytes[1] = version;
        }
        check_accounted(&mut dec, &bytes)?;
    }

    #[test]
    fn mutated_datagrams_never_panic(
        which in 0usize..3,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut dec, valid) = primed();
        let mut bytes = valid[which].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            if i >= 2 {
                bytes[i] = value;
            }
        }
        let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
        bytes.truncate(keep);
        check_accounted(&mut dec, &bytes)?;
        // The same datagram again (templates may have been redefined by the first pass).
        check_accounted(&mut dec, &bytes)?;
        let _ = Protocol::detect(&bytes);
    }
}
