//! Write seed corpora for the fuzz targets (`fuzz/`), built with the project's encoders.
//!
//! `cargo run -p collector-user --example fuzz_seeds -- fuzz/corpus` writes
//! `fuzz/corpus/{netflow_v5,netflow_v9,ipfix,sflow,capture}/seed-N` (the corpus directory is
//! gitignored). The capture seeds carry the other targets' datagrams in pcap (Ethernet, QinQ,
//! IPv6, an IPv4 datagram in two fragments; raw IP) and pcapng files.

use collector::capture::{PcapWriter, linktype};
use collector::decode::ie::{EncodeContext, PEN_OVS, VARLEN};
use collector::decode::ipfix::{MessageWriter, TemplateSpec, ovs};
use collector::decode::netflow_v5::{self, HeaderRepr, RecordRepr};
use collector::decode::netflow_v9::{PacketWriter, five_tuple_template};
use collector::decode::sflow::emit::ovs_sample_datagrams;
use collector::decode::template::Field;
use collector::decode::time::ExportClock;
use collector::record::{FlowRecord, ipv4_bytes};
use etherparse::PacketBuilder;
use std::path::Path;

fn record(i: u8) -> FlowRecord {
    let mut r: FlowRecord = bytemuck::Zeroable::zeroed();
    r.src_addr = ipv4_bytes([10, 0, 0, i]);
    r.dst_addr = ipv4_bytes([10, 0, 1, i]);
    r.etype = 0x0800;
    r.proto = if i.is_multiple_of(2) { 6 } else { 17 };
    r.src_port = 1000 + u16::from(i);
    r.dst_port = 80;
    r.bytes = 1500;
    r.packets = 3;
    r.flow_direction = i % 2;
    r.tunnel_type = i % 3;
    r.tunnel_key = u64::from(i) * 100;
    r.time_flow_start_ns = 1_699_999_990_000_000_000;
    r.time_flow_end_ns = 1_699_999_999_000_000_000;
    r
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let dir = Path::new(&dir);
    let records: Vec<FlowRecord> = (0..6).map(record).collect();

    let mut v5 = Vec::new();
    for n in [1usize, 6] {
        let header = HeaderRepr {
            sys_uptime_ms: 100_000,
            unix_secs: 1_700_000_000,
            sampling: 0x4064,
            ..Default::default()
        };
        let recs: Vec<RecordRepr> = records
            .iter()
            .take(n)
            .map(|r| RecordRepr::from_flow(r, &header))
            .collect();
        let mut buf = Vec::new();
        netflow_v5::emit(&header, &recs, &mut buf);
        v5.push(buf);
    }

    // The template fuzz/src/lib.rs primes the v9 target with.
    let v9_template = five_tuple_template();
    let sampler = TemplateSpec {
        id: 300,
        scope_fields: 1,
        fields: vec![Field::iana(1, 4), Field::iana(48, 1), Field::iana(34, 4)],
    };
    let mut v9 = Vec::new();
    for with_templates in [false, true] {
        let mut w = PacketWriter::new(100_000, 1_700_000_000, 1, 0);
        if with_templates {
            w.templates(&[v9_template.clone(), sampler.clone()]);
            w.data(&sampler, &records[..1], 0);
        }
        w.data(&v9_template, &records, 0);
        v9.push(w.finish());
    }

    let ctx = EncodeContext {
        clock: ExportClock {
            export_ns: 1_700_000_000_000_000_000,
            uptime_ms: None,
        },
        init_ms: 0,
        interface_name: "br-int",
    };
    // Small seeds (libFuzzer's input size limit follows the largest seed): data for the
    // templates the target is primed with, and a message that defines the templates of its own
    // records (VLAN-tagged and IPv6 ones included) and the options template before its data.
    // The whole 121-template family (21 KB) is left to `ipfix::tests::ovs_family_round_trips`.
    let mut own = records.clone();
    own[1].vlan_id = 42;
    own[2].etype = 0x86dd;
    own[2].src_addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    own[3].proto = 1;
    let mut specs: Vec<TemplateSpec> = Vec::new();
    for r in &own {
        let id = ovs::template_id_for(r);
        if !specs.iter().any(|t| t.id == id)
            && let Some(t) = ovs::template(id)
        {
            specs.push(t);
        }
    }
    specs.push(ovs::options_template());
    let mut w = MessageWriter::new(1_700_000_000, 0, 0);
    w.templates(&specs);
    for t in specs.iter().filter(|t| t.scope_fields == 0) {
        let group: Vec<FlowRecord> = own
            .iter()
            .filter(|r| ovs::template_id_for(r) == t.id)
            .copied()
            .collect();
        w.data(t, &group, &ctx);
    }
    let mut ipfix = vec![
        ovs::message(1_700_000_000, 0, false, &records, &ctx),
        w.finish(),
    ];
    let varlen = TemplateSpec {
        id: 500,
        scope_fields: 0,
        fields: vec![
            Field::iana(82, VARLEN),
            Field::enterprise(PEN_OVS, 892, VARLEN),
            Field::iana(156, 8),
            Field::iana(157, 8),
            Field::iana(27, 16),
        ],
    };
    let mut w = MessageWriter::new(1_700_000_000, 0, 0);
    w.templates(std::slice::from_ref(&varlen))
        .data(&varlen, &records, &ctx)
        .withdrawal(2, 500);
    ipfix.push(w.finish());

    // OVS-like sFlow datagrams: flow and counter samples, an IPv6 agent, expanded samples.
    let sflow = ovs_sample_datagrams();

    // Templates first (v9's and IPFIX's last seeds carry theirs), then the datagrams using them.
    let datagrams: Vec<&[u8]> = [&v9, &ipfix]
        .into_iter()
        .filter_map(|seeds| seeds.last())
        .chain(
            [&v5, &v9, &ipfix, &sflow]
                .into_iter()
                .filter_map(|seeds| seeds.first()),
        )
        .map(Vec::as_slice)
        .collect();
    let capture = capture_seeds(&datagrams)?;

    for (target, seeds) in [
        ("netflow_v5", v5),
        ("netflow_v9", v9),
        ("ipfix", ipfix),
        ("sflow", sflow),
        ("capture", capture),
    ] {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), seed)?;
        }
        println!("{}: {} seeds", d.display(), seeds.len());
    }
    Ok(())
}

/// Capture files holding `datagrams`: Ethernet frames, and the first datagram again with two
/// VLAN tags, over IPv6 and in two IPv4 fragments; the same as raw IP; and a pcapng file.
fn capture_seeds(datagrams: &[&[u8]]) -> std::io::Result<Vec<Vec<u8>>> {
    const T0: u64 = 1_700_000_000_000_000_000;
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let udp_v4 = |payload: &[u8]| -> Vec<u8> {
        let mut ip = Vec::new();
        let builder = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64).udp(50_000, 2055);
        builder.write(&mut ip, payload).expect("in memory");
        ip
    };
    let mut ethernet = PcapWriter::new(Vec::new(), linktype::ETHERNET)?;
    let mut raw = PcapWriter::new(Vec::new(), linktype::RAW)?;
    for (i, payload) in (0u64..).zip(datagrams) {
        let mut frame = Vec::new();
        let builder = PacketBuilder::ethernet2(a, b)
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(50_000, 2055);
        builder.write(&mut frame, payload).expect("in memory");
        ethernet.write_frame(T0 + i, &frame)?;
        raw.write_frame(T0 + i, &udp_v4(payload))?;
    }
    if let Some(payload) = datagrams.first() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(a, b)
            .double_vlan(
                etherparse::VlanId::try_new(10).expect("valid"),
                etherparse::VlanId::try_new(20).expect("valid"),
            )
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(50_000, 2055)
            .write(&mut frame, payload)
            .expect("in memory");
        ethernet.write_frame(T0 + 10, &frame)?;
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(a, b)
            .ipv6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0; 16],
                64,
            )
            .udp(50_000, 2055)
            .write(&mut frame, payload)
            .expect("in memory");
        ethernet.write_frame(T0 + 11, &frame)?;
        for (i, fragment) in (12u64..).zip(fragments(&udp_v4(payload))) {
            let mut frame = [&b[..], &a[..], &[0x08, 0x00][..]].concat();
            frame.extend_from_slice(&fragment);
            ethernet.write_frame(T0 + i, &frame)?;
        }
    }
    // pcapng: a section header, one Ethernet interface, one enhanced packet block.
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(50_000, 2055)
        .write(&mut frame, datagrams.first().copied().unwrap_or_default())
        .expect("in memory");
    let block = |kind: u32, body: &[u8]| -> Vec<u8> {
        let padded = body.len().next_multiple_of(4);
        let total = (12 + padded) as u32;
        let mut out = [kind.to_le_bytes(), total.to_le_bytes()].concat();
        out.extend_from_slice(body);
        out.resize(8 + padded, 0);
        out.extend_from_slice(&total.to_le_bytes());
        out
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut idb = (linktype::ETHERNET as u16).to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&65_535u32.to_le_bytes());
    let ts_us = T0 / 1000;
    let mut epb = 0u32.to_le_bytes().to_vec();
    epb.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
    epb.extend_from_slice(&(ts_us as u32).to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&frame);
    let pcapng = [block(0x0a0d_0d0a, &shb), block(1, &idb), block(6, &epb)].concat();
    Ok(vec![ethernet.finish()?, raw.finish()?, pcapng])
}

/// An IPv4 packet (20-byte header) cut into two fragments, the first carrying 8 bytes of its
/// payload per 8 it can, up to half.
fn fragments(packet: &[u8]) -> Vec<Vec<u8>> {
    let (header, payload) = packet.split_at(20);
    let first = (payload.len() / 2) / 8 * 8;
    let piece = |part: &[u8], offset_units: u16, more: bool| -> Vec<u8> {
        let mut h = header.to_vec();
        h[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
        let flags = if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&(flags | offset_units).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let sum = h
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        h[10..12].copy_from_slice(&checksum.to_be_bytes());
        [h, part.to_vec()].concat()
    };
    vec![
        piece(&payload[..first], 0, true),
        piece(&payload[first..], (first / 8) as u16, false),
    ]
}
