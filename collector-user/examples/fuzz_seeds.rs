//! Write seed corpora for the fuzz targets (`fuzz/`), built with the project's encoders.
//!
//! `cargo run -p collector-user --example fuzz_seeds -- fuzz/corpus` writes
//! `fuzz/corpus/{netflow_v5,netflow_v9,ipfix,sflow}/seed-N` (the corpus directory is gitignored).

use collector::decode::ie::{EncodeContext, PEN_OVS, VARLEN};
use collector::decode::ipfix::{MessageWriter, TemplateSpec, ovs};
use collector::decode::netflow_v5::{self, HeaderRepr, RecordRepr};
use collector::decode::netflow_v9::{PacketWriter, five_tuple_template};
use collector::decode::sflow::emit::ovs_sample_datagrams;
use collector::decode::template::Field;
use collector::decode::time::ExportClock;
use collector::record::{FlowRecord, ipv4_bytes};
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

    for (target, seeds) in [
        ("netflow_v5", v5),
        ("netflow_v9", v9),
        ("ipfix", ipfix),
        ("sflow", sflow),
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
