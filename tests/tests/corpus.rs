//! Real-world captures (`shared/corpus`, listed in its MANIFEST.tsv) decoded by the collector and
//! compared field by field with `tshark -T json`.
//!
//! - pcap/pcapng captures are read with [`collector::capture`]; raw UDP payload files are wrapped in
//!   a synthetic raw-IPv4 pcap (UDP 2055 for NetFlow/IPFIX, 6343 for sFlow), one datagram per file
//!   (IPFIX files holding several messages are split by the message length), and files the manifest
//!   says were "replayed with companions" are replayed together in the listed order, through one
//!   decoder, exactly as tshark saw them.
//! - Both sides run on the same pcap. Per datagram (frame), tshark's flow records (options data
//!   excluded: their template came from an options template set) are matched in order with the
//!   records our decoder produced for that datagram. Held early data decoded when its template
//!   arrives shows up as extra records of a later datagram: accepted only when the decoder counted
//!   that replay, and tshark's records must then match a contiguous run of ours.
//! - Fields compared, when tshark shows the field exactly once in the record (a repeated IE is
//!   ambiguous): addresses (v4 or v6), ports, protocol, octets, packets, interfaces, TCP flags,
//!   ToS, AS numbers, prefix lengths, next hop, MACs, IPv6 flow label, direction, end reason; for
//!   sFlow the sampled header's addresses, ports and protocol, and counter samples' ifIndex/octets.
//! - Captures holding data sets whose template is not in the file must produce no record for them
//!   and count `template_missing`.
//!
//! Skips with `SKIPPED: <reason>` when the corpus or tshark is absent (a user's clone has no
//! `shared/`). `COLLECTOR_CORPUS` points at another corpus directory.

use collector::capture::{CaptureReader, Dissected, Dissector, PcapWriter, linktype};
use collector::decode::{Collected, DatagramMeta, Decoder, ErrorReason, Protocol};
use collector::record::{FlowRecord, addr_from_bytes, addr_is_unset};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

// ------------------------------------------------------------------------------------------------
// tshark's PDML (-T pdml) as a tree. Its JSON output merges subtrees that share a label (sixteen
// data sets labelled "FlowSet 1 [id=3281]" come out as one), PDML keeps every element in order.
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    Leaf(String),
    Obj(Vec<(String, Node)>),
}

/// One PDML element: its attributes and children.
#[derive(Debug, Default)]
struct Element {
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A field or proto as entries of its parent: `name → show`, and its children under
    /// `name_tree` (or, for a text label without a name, under the label).
    fn to_entries(&self, out: &mut Vec<(String, Node)>) {
        let name = self.attr("name");
        let show = self.attr("show");
        let children = || {
            let mut entries = Vec::new();
            for c in &self.children {
                c.to_entries(&mut entries);
            }
            Node::Obj(entries)
        };
        if self.children.is_empty() {
            out.push((name.to_owned(), Node::Leaf(show.to_owned())));
        } else if name.is_empty() {
            out.push((show.to_owned(), children()));
        } else {
            out.push((name.to_owned(), Node::Leaf(show.to_owned())));
            out.push((format!("{name}_tree"), children()));
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Parse PDML into its `<packet>` elements (each with its `<proto>` children).
fn parse_pdml(text: &str) -> Result<Vec<Element>, String> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        rest = &rest[at..];
        if rest.starts_with("<?") || rest.starts_with("<!--") {
            let end = if rest.starts_with("<?") { "?>" } else { "-->" };
            let close = rest.find(end).ok_or("unterminated declaration")?;
            rest = &rest[close + end.len()..];
            continue;
        }
        let close = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('/') {
            let done = stack.pop().ok_or("unbalanced PDML")?;
            stack
                .last_mut()
                .ok_or("unbalanced PDML")?
                .children
                .push(done);
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let mut element = Element::default();
        // Attributes: name="value" pairs after the tag name.
        let mut attrs = tag.split_once(char::is_whitespace).map_or("", |(_, a)| a);
        while let Some(eq) = attrs.find("=\"") {
            let key = attrs[..eq].trim().to_owned();
            let value_start = eq + 2;
            let value_end = attrs[value_start..]
                .find('"')
                .ok_or("unterminated attribute")?;
            let value = unescape(&attrs[value_start..value_start + value_end]);
            element.attrs.push((key, value));
            attrs = &attrs[value_start + value_end + 1..];
        }
        if self_closing {
            stack
                .last_mut()
                .ok_or("unbalanced PDML")?
                .children
                .push(element);
        } else {
            stack.push(element);
        }
    }
    let root = stack.pop().ok_or("unbalanced PDML")?;
    if !stack.is_empty() {
        return Err("unbalanced PDML".into());
    }
    // root → <pdml> → <packet>s
    Ok(root
        .children
        .into_iter()
        .flat_map(|pdml| pdml.children)
        .collect())
}

impl Node {
    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Obj(e) => e,
            _ => &[],
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn leaf(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Node::Leaf(s) => Some(s),
            _ => None,
        }
    }

    /// Every leaf below this node, depth first, in document order.
    fn leaves<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        match self {
            Node::Leaf(_) => {}
            Node::Obj(entries) => {
                for (k, v) in entries {
                    match v {
                        Node::Leaf(s) => out.push((k, s)),
                        _ => v.leaves(out),
                    }
                }
            }
        }
    }
}

/// One flow (or sampled packet, or counter) record as tshark shows it: field → values.
#[derive(Debug, Default)]
struct TsharkRecord {
    fields: BTreeMap<String, Vec<String>>,
}

impl TsharkRecord {
    fn from_node(node: &Node) -> TsharkRecord {
        let mut leaves = Vec::new();
        node.leaves(&mut leaves);
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in leaves {
            fields.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        TsharkRecord { fields }
    }

    /// The field's value when it occurs exactly once.
    fn one(&self, key: &str) -> Option<&str> {
        match self.fields.get(key).map(Vec::as_slice) {
            Some([v]) => Some(v),
            _ => None,
        }
    }

    /// The first occurrence (sFlow sampled headers: the outer header comes first).
    fn first(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// What tshark decoded in one frame.
#[derive(Debug, Default)]
struct TsharkFrame {
    flows: Vec<TsharkRecord>,
    counters: Vec<TsharkRecord>,
    /// NetFlow v9: tshark showed as many records (templates, options and data) as the header's
    /// count and stops there, even when more flowsets follow; we decode by flowset length.
    v9_count_reached: bool,
    /// NetFlow v9: the header's record count.
    v9_count: Option<u64>,
    /// Template and options template records tshark showed (they count in the v9 header).
    non_data_shown: u64,
    /// Data sets tshark could not decode for want of a template. tshark scopes templates by
    /// transport session (addresses and ports); we scope them by exporter address and domain, so
    /// we may decode them with a template from the same exporter's other session.
    unresolved_sets: u64,
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Run tshark on `pcap` and collect, per frame number, the flow records it decoded.
fn tshark_frames(pcap: &Path, decode_as: &str) -> Result<BTreeMap<u64, TsharkFrame>, String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", decode_as, "-T", "pdml"])
        .output()
        .map_err(|e| format!("running tshark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tshark failed on {}: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let packets = parse_pdml(&String::from_utf8_lossy(&out.stdout))?;
    let mut frames = BTreeMap::new();
    // Template ids defined by options template sets, per frame number (data sets name the frame
    // their template came from).
    let mut options_templates: HashMap<u64, HashSet<String>> = HashMap::new();
    for packet in &packets {
        let mut layers = Vec::new();
        for proto in &packet.children {
            let mut entries = Vec::new();
            for c in &proto.children {
                c.to_entries(&mut entries);
            }
            layers.push((proto.attr("name").to_owned(), Node::Obj(entries)));
        }
        let layers = Node::Obj(layers);
        let Some(number) = layers
            .get("geninfo")
            .and_then(|g| g.leaf("num"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let mut frame = TsharkFrame::default();
        for (name, layer) in layers.entries() {
            match name.as_str() {
                "cflow" => cflow_records(layer, number, &mut options_templates, &mut frame),
                "sflow" => sflow_records(layer, &mut frame),
                _ => {}
            }
        }
        frames.insert(number, frame);
    }
    Ok(frames)
}

fn cflow_records(
    cflow: &Node,
    frame_number: u64,
    options_templates: &mut HashMap<u64, HashSet<String>>,
    frame: &mut TsharkFrame,
) {
    let mut shown = 0u64;
    for (key, node) in cflow.entries() {
        if key.starts_with("FlowSet ") || key.starts_with("Set ") {
            for (k, _) in node.entries() {
                if k.starts_with("Flow ") {
                    shown += 1;
                } else if k.starts_with("Template (") || k.starts_with("Options Template (") {
                    shown += 1;
                    frame.non_data_shown += 1;
                } else if k.contains("no template found") {
                    frame.unresolved_sets += 1;
                }
            }
        }
    }
    if cflow.leaf("cflow.version") == Some("9") {
        let count = cflow.leaf("cflow.count").and_then(number).unwrap_or(0);
        frame.v9_count = Some(count);
        frame.v9_count_reached = shown >= count;
    }
    for (key, node) in cflow.entries() {
        if key.starts_with("pdu ") {
            frame.flows.push(TsharkRecord::from_node(node)); // NetFlow v5
            continue;
        }
        if !(key.starts_with("FlowSet ") || key.starts_with("Set ")) {
            continue;
        }
        let set_id = node.leaf("cflow.flowset_id").and_then(number).unwrap_or(0);
        if set_id == 1 || set_id == 3 {
            // v9 (1) or IPFIX (3) options templates: remember their ids for this frame.
            let mut leaves = Vec::new();
            node.leaves(&mut leaves);
            let ids = options_templates.entry(frame_number).or_default();
            ids.extend(
                leaves
                    .iter()
                    .filter(|(k, _)| *k == "cflow.template_id")
                    .map(|(_, v)| v.to_string()),
            );
            continue;
        }
        if set_id < 256 {
            continue;
        }
        let template_frame = node.leaf("cflow.template_frame").and_then(number);
        let is_options = template_frame
            .and_then(|f| options_templates.get(&f))
            .is_some_and(|ids| ids.contains(&set_id.to_string()));
        if is_options {
            continue;
        }
        for (k, flow) in node.entries() {
            if k.starts_with("Flow ") {
                frame.flows.push(TsharkRecord::from_node(flow));
            }
        }
    }
}

fn sflow_records(sflow: &Node, frame: &mut TsharkFrame) {
    for (key, node) in sflow.entries() {
        if key.starts_with("Flow sample") || key.starts_with("Expanded flow sample") {
            frame.flows.push(TsharkRecord::from_node(node));
        } else if key.starts_with("Counters sample") || key.starts_with("Expanded counters sample")
        {
            // One of our counter records per generic interface counters record in the sample.
            for (k, rec) in node.entries() {
                if k.starts_with("Generic interface counters") {
                    frame.counters.push(TsharkRecord::from_node(rec));
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Our side
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct OurDatagram {
    protocol: Option<Protocol>,
    flows: Vec<FlowRecord>,
    counters: Vec<collector::record::CounterRecord>,
    /// Held data sets decoded during this datagram (their records are among `flows`).
    early_replayed: u64,
    error: Option<ErrorReason>,
}

struct OurReplay {
    by_frame: BTreeMap<u64, OurDatagram>,
    decoder: Decoder,
}

fn replay(pcap: &Path) -> OurReplay {
    let mut reader =
        CaptureReader::open(pcap).unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
    let mut dissector = Dissector::new();
    let mut decoder = Decoder::new();
    let mut by_frame = BTreeMap::new();
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => panic!("{}: {e}", pcap.display()),
        };
        let number = dissector.stats.frames + 1;
        let Dissected::Datagram(d) = dissector.dissect(&frame) else {
            continue;
        };
        let meta = DatagramMeta {
            exporter: d.src,
            received_ns: d.ts_ns,
        };
        let replayed_before = decoder.stats.early_data_replayed;
        let mut sink = Collected::default();
        let error = decoder.decode(&meta, d.payload, &mut sink).err();
        by_frame.insert(
            number,
            OurDatagram {
                protocol: Protocol::detect(d.payload).ok(),
                flows: sink.flows,
                counters: sink.counters,
                early_replayed: decoder.stats.early_data_replayed - replayed_before,
                error,
            },
        );
    }
    OurReplay { by_frame, decoder }
}

// ------------------------------------------------------------------------------------------------
// Comparison
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    captures: u64,
    datagrams: u64,
    records_compared: u64,
    fields_compared: u64,
    field_mismatches: u64,
    count_mismatches: u64,
    early_records: u64,
    /// v9 records in flowsets past the header's count, which tshark does not show.
    beyond_count_records: u64,
    /// Records of data sets tshark had no template for (template from another transport session).
    other_session_records: u64,
    /// Deliberately invalid inputs that tshark decodes leniently and we refuse with a reason.
    refused_invalid: u64,
    template_missing_captures: u64,
    /// (capture, what) → (occurrences, first example).
    problems: BTreeMap<(String, String), (u64, String)>,
}

impl Tally {
    fn problem(&mut self, capture: &str, what: &str, example: String) {
        let entry = self
            .problems
            .entry((capture.to_owned(), what.to_owned()))
            .or_insert((0, example));
        entry.0 += 1;
    }
}

fn addr_text(a: &[u8; 16]) -> String {
    if addr_is_unset(a) {
        "unset".into()
    } else {
        addr_from_bytes(a).to_string()
    }
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Compare one record pair; returns (fields compared, mismatch descriptions).
fn compare_cflow(t: &TsharkRecord, o: &FlowRecord) -> (u64, Vec<(&'static str, String)>) {
    let mut compared = 0;
    let mut bad = Vec::new();
    let mut check = |name: &'static str, theirs: Option<String>, ours: String| {
        if let Some(theirs) = theirs {
            compared += 1;
            if theirs != ours {
                bad.push((name, format!("{name}: tshark {theirs} ours {ours}")));
            }
        }
    };
    let num = |key: &str| t.one(key).and_then(number).map(|n| n.to_string());
    let addr = |v4: &str, v6: &str| {
        let a = t.one(v4).filter(|s| *s != "0.0.0.0");
        let b = t.one(v6).filter(|s| *s != "::");
        match (a, b) {
            (Some(a), None) => Some(a.to_owned()),
            (None, Some(b)) => Some(b.to_owned()),
            _ => None, // neither, or both: which one the record keeps is a decoder policy
        }
    };
    check(
        "src_addr",
        addr("cflow.srcaddr", "cflow.srcaddrv6"),
        addr_text(&o.src_addr),
    );
    check(
        "dst_addr",
        addr("cflow.dstaddr", "cflow.dstaddrv6"),
        addr_text(&o.dst_addr),
    );
    check("src_port", num("cflow.srcport"), o.src_port.to_string());
    check("dst_port", num("cflow.dstport"), o.dst_port.to_string());
    check("proto", num("cflow.protocol"), o.proto.to_string());
    check("bytes", num("cflow.octets"), o.bytes.to_string());
    check("packets", num("cflow.packets"), o.packets.to_string());
    check("in_if", num("cflow.inputint"), o.in_if.to_string());
    check("out_if", num("cflow.outputint"), o.out_if.to_string());
    check("tcp_flags", num("cflow.tcpflags"), o.tcp_flags.to_string());
    check("ip_tos", num("cflow.tos"), o.ip_tos.to_string());
    check("src_as", num("cflow.srcas"), o.src_as.to_string());
    check("dst_as", num("cflow.dstas"), o.dst_as.to_string());
    check(
        "src_net",
        num("cflow.srcmask").or_else(|| num("cflow.srcmaskv6")),
        o.src_net.to_string(),
    );
    check(
        "dst_net",
        num("cflow.dstmask").or_else(|| num("cflow.dstmaskv6")),
        o.dst_net.to_string(),
    );
    check(
        "next_hop",
        t.one("cflow.nexthop").map(str::to_owned),
        addr_from_bytes(&o.next_hop).to_string(),
    );
    check(
        "src_mac",
        t.one("cflow.srcmac").map(str::to_owned),
        mac_text(&o.src_mac),
    );
    check(
        "dst_mac",
        t.one("cflow.dstmac").map(str::to_owned),
        mac_text(&o.dst_mac),
    );
    check(
        "ipv6_flow_label",
        num("cflow.ipv6flowlabel"),
        o.ipv6_flow_label.to_string(),
    );
    check(
        "flow_direction",
        num("cflow.direction"),
        o.flow_direction.to_string(),
    );
    check(
        "flow_end_reason",
        num("cflow.flow_end_reason"),
        o.flow_end_reason.to_string(),
    );
    (compared, bad)
}

fn compare_sflow(t: &TsharkRecord, o: &FlowRecord) -> (u64, Vec<(&'static str, String)>) {
    let mut compared = 0;
    let mut bad = Vec::new();
    let mut check = |name: &'static str, theirs: Option<String>, ours: String| {
        if let Some(theirs) = theirs {
            compared += 1;
            if theirs != ours {
                bad.push((name, format!("{name}: tshark {theirs} ours {ours}")));
            }
        }
    };
    let first = |key: &str| t.first(key).map(str::to_owned);
    check(
        "src_addr",
        first("ip.src").or_else(|| first("ipv6.src")),
        addr_text(&o.src_addr),
    );
    check(
        "dst_addr",
        first("ip.dst").or_else(|| first("ipv6.dst")),
        addr_text(&o.dst_addr),
    );
    check(
        "proto",
        first("ip.proto").or_else(|| first("ipv6.nxt")),
        o.proto.to_string(),
    );
    check(
        "src_port",
        first("tcp.srcport").or_else(|| first("udp.srcport")),
        o.src_port.to_string(),
    );
    check(
        "dst_port",
        first("tcp.dstport").or_else(|| first("udp.dstport")),
        o.dst_port.to_string(),
    );
    (compared, bad)
}

/// Compare one capture (a real one or a synthetic wrapper of raw payloads).
fn compare_capture(
    name: &str,
    pcap: &Path,
    decode_as: &str,
    expect_missing: bool,
    invalid: bool,
    tally: &mut Tally,
) {
    let theirs = match tshark_frames(pcap, decode_as) {
        Ok(frames) => frames,
        Err(e) => {
            tally.problem(name, "tshark", e);
            tally.count_mismatches += 1;
            return;
        }
    };
    let ours = replay(pcap);
    tally.captures += 1;
    let mut explained_extra = 0u64;
    for (frame, our) in &ours.by_frame {
        tally.datagrams += 1;
        let empty = TsharkFrame::default();
        let their = theirs.get(frame).unwrap_or(&empty);
        let sflow = our.protocol == Some(Protocol::SflowV5);
        let surplus = our.flows.len() as i64 - their.flows.len() as i64;
        if invalid && our.flows.is_empty() && our.error.is_some() {
            tally.refused_invalid += 1;
            tally.problem(
                name,
                "refused (deliberately invalid input)",
                format!(
                    "frame {frame}: {} (tshark shows {} records)",
                    our.error.map_or("", ErrorReason::name),
                    their.flows.len()
                ),
            );
            continue;
        }
        // Extra records are acceptable as early data replayed in this datagram, as data sets
        // tshark found no template for (other transport session), or as v9 records the header
        // count announces that tshark did not show (it stops at the count).
        let v9_header_explains = their.v9_count.is_some_and(|count| {
            their.v9_count_reached || our.flows.len() as u64 + their.non_data_shown <= count
        });
        let offsets: Vec<usize> = match surplus {
            0 => vec![0],
            s if s > 0 && (our.early_replayed > 0 || their.unresolved_sets > 0) => {
                (0..=s as usize).collect()
            }
            s if s > 0 && v9_header_explains => vec![0],
            _ => {
                tally.count_mismatches += 1;
                tally.problem(
                    name,
                    "record count",
                    format!(
                        "frame {frame}: tshark {} flow records, ours {} (early data replayed: {}, error: {:?})",
                        their.flows.len(),
                        our.flows.len(),
                        our.early_replayed,
                        our.error
                    ),
                );
                continue;
            }
        };
        if surplus > 0 {
            if our.early_replayed > 0 {
                tally.early_records += surplus as u64;
            } else if their.unresolved_sets > 0 {
                tally.other_session_records += surplus as u64;
            } else {
                tally.beyond_count_records += surplus as u64;
            }
            explained_extra += surplus as u64;
        }
        let mut best: Option<(u64, Vec<(&str, String)>)> = None;
        for offset in offsets {
            let mut compared = 0;
            let mut bad = Vec::new();
            for (i, (t, o)) in their.flows.iter().zip(&our.flows[offset..]).enumerate() {
                let (c, b) = if sflow {
                    compare_sflow(t, o)
                } else {
                    compare_cflow(t, o)
                };
                compared += c;
                bad.extend(
                    b.into_iter()
                        .map(|(field, m)| (field, format!("record {i}: {m}"))),
                );
            }
            if best.as_ref().is_none_or(|(_, b)| bad.len() < b.len()) {
                best = Some((compared, bad));
            }
        }
        let (compared, bad) = best.unwrap_or_default();
        tally.records_compared += their.flows.len() as u64;
        tally.fields_compared += compared;
        tally.field_mismatches += bad.len() as u64;
        for (field, m) in bad {
            tally.problem(name, field, format!("frame {frame}: {m}"));
        }
        if sflow {
            // tshark's generic interface counter records ↔ ours of that format, in order.
            let our_counters: Vec<&collector::record::counters::GenericInterfaceCounters> = our
                .counters
                .iter()
                .filter_map(|c| match c.body() {
                    collector::record::counters::CounterBody::GenericInterface(g) => Some(g),
                    _ => None,
                })
                .collect();
            if their.counters.len() != our_counters.len() {
                tally.count_mismatches += 1;
                tally.problem(
                    name,
                    "counter record count",
                    format!(
                        "frame {frame}: tshark {} interface counter records, ours {}",
                        their.counters.len(),
                        our_counters.len()
                    ),
                );
                continue;
            }
            for (t, o) in their.counters.iter().zip(&our_counters) {
                for (key, ours) in [
                    ("sflow_245.ifindex", u64::from(o.if_index)),
                    ("sflow_245.ifinoct", o.in_octets),
                    ("sflow_245.ifoutoct", o.out_octets),
                ] {
                    if let Some(theirs) = t.one(key).and_then(number) {
                        tally.fields_compared += 1;
                        if theirs != ours {
                            tally.field_mismatches += 1;
                            tally.problem(
                                name,
                                key,
                                format!("frame {frame}: tshark {theirs} ours {ours}"),
                            );
                        }
                    }
                }
            }
        }
    }
    // Frames tshark decoded records from that never reached our decoder.
    for (frame, their) in &theirs {
        if !their.flows.is_empty() && !ours.by_frame.contains_key(frame) {
            tally.count_mismatches += 1;
            tally.problem(
                name,
                "datagram",
                format!("frame {frame}: tshark decoded records, we saw no datagram"),
            );
        }
    }
    if expect_missing {
        let missing = ours.decoder.stats.errors[ErrorReason::TemplateMissing.index()];
        // tshark's "template not in this file" may be a template it did not see (past a v9
        // header count, or in another transport session) that we did: then there is no miss.
        if missing == 0 && explained_extra == 0 {
            tally.count_mismatches += 1;
            tally.problem(
                name,
                "template_missing",
                "data without its template, but no template_missing counted".into(),
            );
        } else {
            tally.template_missing_captures += 1;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The manifest
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    protocol: String,
    notes: String,
}

impl Entry {
    fn is_capture(&self) -> bool {
        self.notes.starts_with("pcap capture") || self.notes.starts_with("pcapng capture")
    }
    fn is_raw(&self) -> bool {
        self.notes.starts_with("raw UDP payload")
    }
    fn decode_as(&self) -> Option<String> {
        let at = self.notes.find("-d udp.port==")?;
        let rest = &self.notes[at + 3..];
        Some(rest.split([';', ' ']).next()?.to_owned())
    }
    /// Companion files (same directory) replayed together, in order.
    fn companions(&self) -> Option<Vec<String>> {
        let at = self.notes.find("replayed with companions [")?;
        let rest = &self.notes[at + "replayed with companions [".len()..];
        let list = &rest[..rest.find(']')?];
        Some(list.split(", ").map(str::to_owned).collect())
    }
    fn data_without_template(&self) -> bool {
        self.notes.contains("whose template is not in this file")
    }
}

fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("COLLECTOR_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/corpus");
        if candidate.join("MANIFEST.tsv").is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn manifest(corpus: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let [path, _, _, _, protocol, _, _, notes] = cols[..] else {
                return None;
            };
            Some(Entry {
                path: path.to_owned(),
                protocol: protocol.to_owned(),
                notes: notes.to_owned(),
            })
        })
        .collect()
}

/// The datagrams of a raw payload file (IPFIX files may hold several messages back to back).
fn raw_datagrams(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 16 && rest[..2] == [0, 10] {
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len < 16 || len > rest.len() {
            break;
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    if out.is_empty() || !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

/// A raw-IPv4 pcap of `datagrams` from 192.0.2.100:40000 to 192.0.2.1:`port`.
fn wrap(datagrams: &[Vec<u8>], port: u16, path: &Path) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), linktype::RAW).unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        let builder =
            etherparse::PacketBuilder::ipv4([192, 0, 2, 100], [192, 0, 2, 1], 64).udp(40_000, port);
        let mut frame = Vec::new();
        builder.write(&mut frame, d).unwrap();
        w.write_frame(1_700_000_000_000_000_000 + i as u64 * 1_000_000, &frame)
            .unwrap();
    }
    w.finish().unwrap();
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Replay every manifest entry of `protocols` and compare with tshark.
fn run_corpus(label: &str, protocols: &[&str]) -> Option<Tally> {
    let Some(corpus) = corpus_dir() else {
        println!(
            "SKIPPED: corpus {label}: no shared/corpus above {} and COLLECTOR_CORPUS unset",
            env!("CARGO_MANIFEST_DIR")
        );
        return None;
    };
    if !tshark_available() {
        println!("SKIPPED: corpus {label}: tshark is not installed");
        return None;
    }
    let entries: Vec<Entry> = manifest(&corpus)
        .into_iter()
        .filter(|e| protocols.contains(&e.protocol.as_str()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let mut raw_done: HashSet<String> = HashSet::new();
    for entry in &entries {
        let sflow = entry.protocol == "sflow";
        if entry.is_capture() {
            let decode_as = entry.decode_as().unwrap_or_else(|| {
                format!(
                    "udp.port=={},{}",
                    if sflow { 6343 } else { 2055 },
                    if sflow { "sflow" } else { "cflow" }
                )
            });
            compare_capture(
                &entry.path,
                &corpus.join(&entry.path),
                &decode_as,
                entry.data_without_template(),
                entry.notes.contains("deliberately invalid"),
                &mut tally,
            );
        } else if entry.is_raw() && !raw_done.contains(&entry.path) {
            // One synthetic capture per companion group (or per file).
            let dir = Path::new(&entry.path).parent().unwrap_or(Path::new(""));
            let group: Vec<String> = match entry.companions() {
                Some(names) => names
                    .iter()
                    .map(|n| dir.join(n).to_string_lossy().into_owned())
                    .collect(),
                None => vec![entry.path.clone()],
            };
            let mut datagrams = Vec::new();
            for member in &group {
                raw_done.insert(member.clone());
                match std::fs::read(corpus.join(member)) {
                    Ok(bytes) => datagrams.extend(raw_datagrams(&bytes)),
                    Err(e) => tally.problem(member, "read", e.to_string()),
                }
            }
            let port = if sflow { 6343 } else { 2055 };
            let pcap = tmp.path().join(format!("group-{}.pcap", raw_done.len()));
            wrap(&datagrams, port, &pcap);
            let decode_as = format!("udp.port=={port},{}", if sflow { "sflow" } else { "cflow" });
            let invalid = group.len() == 1 && entry.notes.contains("deliberately invalid");
            compare_capture(
                &group.join(" + "),
                &pcap,
                &decode_as,
                false,
                invalid,
                &mut tally,
            );
        }
    }
    println!(
        "corpus {label}: {} captures, {} datagrams, {} records compared ({} fields), {} field mismatches, \
         {} count mismatches, {} early-data records, {} v9 records past the header count, \
         {} records whose template tshark scoped to another transport session, \
         {} deliberately invalid datagrams refused, {} data-only captures reported template_missing",
        tally.captures,
        tally.datagrams,
        tally.records_compared,
        tally.fields_compared,
        tally.field_mismatches,
        tally.count_mismatches,
        tally.early_records,
        tally.beyond_count_records,
        tally.other_session_records,
        tally.refused_invalid,
        tally.template_missing_captures
    );
    for ((capture, what), (n, example)) in &tally.problems {
        println!("  {capture}: {what}: {n}x, e.g. {example}");
    }
    Some(tally)
}

/// Decoder defects this comparison found, reported to the decoders' owners, each matched narrowly
/// (capture, mismatch kind, example text). They are listed, not failed, so the rest of the corpus
/// keeps guarding against regressions; and each must still occur: once a decoder is fixed the test
/// fails until its entry is removed here (a strict expected failure).
struct KnownIssue {
    capture: &'static str,
    what: &'static [&'static str],
    example: &'static str,
    why: &'static str,
}

const KNOWN_DECODER_ISSUES: &[KnownIssue] = &[];

fn known_issue(capture: &str, what: &str, example: &str) -> Option<usize> {
    KNOWN_DECODER_ISSUES.iter().position(|k| {
        capture.contains(k.capture) && k.what.contains(&what) && example.contains(k.example)
    })
}

fn assert_clean(tally: Option<Tally>, expected_issues: &[&str]) {
    let Some(t) = tally else { return };
    assert!(t.captures > 0, "no capture compared");
    assert!(t.records_compared > 0, "no record compared");
    let mut seen = vec![0u64; KNOWN_DECODER_ISSUES.len()];
    let mut unexplained = 0;
    for ((capture, what), (n, example)) in &t.problems {
        if what.starts_with("refused (deliberately invalid") {
            continue;
        }
        match known_issue(capture, what, example) {
            Some(i) => seen[i] += n,
            None => unexplained += n,
        }
    }
    for (issue, n) in KNOWN_DECODER_ISSUES.iter().zip(&seen) {
        if *n > 0 {
            println!("KNOWN DECODER ISSUE ({n}x): {}", issue.why);
        }
    }
    assert_eq!(unexplained, 0, "mismatches with tshark (listed above)");
    for why in expected_issues {
        let i = KNOWN_DECODER_ISSUES
            .iter()
            .position(|k| k.why.starts_with(why))
            .expect("expected issue is listed");
        assert!(
            seen[i] > 0,
            "known decoder issue no longer occurs (fixed?): remove it from KNOWN_DECODER_ISSUES: {}",
            KNOWN_DECODER_ISSUES[i].why
        );
    }
}

#[test]
fn corpus_netflow_v5_matches_tshark() {
    assert_clean(run_corpus("v5", &["v5", "mixed"]), &[]);
}

#[test]
fn corpus_netflow_v9_matches_tshark() {
    assert_clean(run_corpus("v9", &["v9"]), &[]);
}

#[test]
fn corpus_ipfix_matches_tshark() {
    assert_clean(run_corpus("ipfix", &["ipfix"]), &[]);
}

#[test]
fn corpus_sflow_matches_tshark() {
    assert_clean(run_corpus("sflow", &["sflow"]), &[]);
}
