//! `collector replay FILE [--json] [--port PORT]...`: decode the flow exports in a capture file.
//!
//! Frames come from [`crate::capture`] (pcap or pcapng; Ethernet, VLAN, Linux cooked, raw IP,
//! loopback; IPv4/IPv6 with fragments reassembled). Every UDP datagram (or every one sent to a
//! `--port`) goes to one [`Decoder`], as it would on one worker: the exporter is the datagram's
//! source address and port, the receive time (`time_received_ns`) is the capture timestamp, and the
//! protocol is picked from the datagram's version field, whatever the port.
//!
//! Output:
//! - stdout, one line per record: with `--json` a JSON object ([`crate::json`]: goflow2's keys; counter
//!   records with `"kind":"counters"`); without it a compact table for people (type, exporter,
//!   source → destination, protocol, bytes, packets).
//! - stderr, in both modes: one JSON object per datagram the decoder refused or cut short,
//!   `{"error":REASON,"frame":N,"time_received_ns":..,"exporter":"ADDR:PORT","protocol":..}`, then one
//!   summary object `{"summary":{..}}`: frames, UDP datagrams, frames skipped by reason, datagrams
//!   and records by protocol, errors by reason (every counted reason: also those counted per set,
//!   such as `template_missing`, beyond the one reason per error line), templates learned /
//!   redefined / withdrawn / expired / cached, early data held and replayed, options records, sampling rates
//!   learned, and sequence accounting (spaces, lost, late, restarts) summed over every exporter;
//!   sFlow's in `sflow_sequence` (agents, sample sources, datagrams and samples lost, late,
//!   restarts, samples the agents report dropped), as its units differ.
//!   Both stay JSON so scripts can read them in either mode.
//!
//! Exit status 0 when the whole file was read (decode errors are data, reported above); non-zero
//! when the file cannot be opened or is corrupt, after the summary of what came before. A closed
//! stdout (`collector replay --json FILE | head`) is a normal end, as for `collector read`: the
//! records after it are not printed, the file is still read to its end, and the summary counts
//! all of it.

use crate::capture::{CaptureError, CaptureReader, DissectStats, Dissected, Dissector, SkipReason};
use crate::decode::sequence::SequenceCounts;
use crate::decode::{DatagramMeta, DecodeStats, Decoder, ErrorReason, Protocol, RecordSink};
use crate::json::{RecordWriter, TextFormat, write_u64};
use crate::record::counters::CounterBody;
use crate::record::{CounterRecord, FlowRecord, addr_from_bytes};
use crate::ring::{RingConfig, RingSize, WorkerRings};
use anyhow::Context as _;
use clap::Args;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Arguments of `collector replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture file: pcap or pcapng.
    pub file: PathBuf,
    /// Print records as JSON lines (goflow2's keys) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Decode only UDP datagrams sent to this port (repeatable). Default: every UDP datagram.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Write the records into the ring files of worker 0 in DIR (`flows-0.ring`, `counters-0.ring`,
    /// the live pipeline's writer) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub ring_dir: Option<PathBuf>,
    /// Capacity of rings `--ring-dir` creates: records (a power of two) or bytes (`64MiB`).
    #[arg(long, value_name = "SIZE", default_value_t = RingSize::default())]
    pub ring_size: RingSize,
}

/// What one replay saw.
#[derive(Debug, Default)]
pub struct ReplayTotals {
    /// Frames → datagrams, and what was skipped on the way.
    pub capture: DissectStats,
    /// UDP datagrams not sent to one of the `--port`s.
    pub other_port: u64,
    /// The decoder's counters.
    pub decode: DecodeStats,
    /// Sequence accounting summed over every sequence space (exporter, protocol, domain).
    pub sequence: SequenceCounts,
    /// Sequence spaces seen.
    pub sequence_spaces: u64,
    /// sFlow's sequence accounting, summed over agents.
    pub sflow: SflowSequenceTotals,
}

/// sFlow sequence accounting summed over every agent + sub-agent.
#[derive(Debug, Default)]
pub struct SflowSequenceTotals {
    /// Agent + sub-agent pairs seen.
    pub agents: u64,
    /// Sample sources (data source per agent) tracked.
    pub sources: u64,
    /// Datagrams missing from the agents' datagram sequences.
    pub datagrams_lost: u64,
    /// Samples missing from the sources' sample sequences.
    pub samples_lost: u64,
    /// Datagrams and samples that arrived behind their sequence.
    pub late: u64,
    /// Agent or source restarts.
    pub restarts: u64,
    /// Samples the agents report they dropped (their own loss, before export).
    pub drops: u64,
}

/// Replay `reader` into `sink`, writing one JSON line per decode error to `errors`.
///
/// Returns the totals and, when the capture could not be read to its end, why.
pub fn replay<R: Read>(
    reader: &mut CaptureReader<R>,
    ports: &[u16],
    sink: &mut impl RecordSink,
    errors: &mut impl Write,
) -> (ReplayTotals, Option<CaptureError>) {
    let mut dissector = Dissector::new();
    let mut decoder = Decoder::new();
    let mut other_port = 0;
    let mut line = Vec::with_capacity(256);
    let mut failure = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let frame_number = dissector.stats.frames + 1;
        let Dissected::Datagram(datagram) = dissector.dissect(&frame) else {
            continue;
        };
        if !ports.is_empty() && !ports.contains(&datagram.dst.port()) {
            other_port += 1;
            continue;
        }
        let meta = DatagramMeta {
            exporter: datagram.src,
            received_ns: datagram.ts_ns,
        };
        if let Err(reason) = decoder.decode(&meta, datagram.payload, sink) {
            line.clear();
            error_line(&mut line, reason, frame_number, &meta, datagram.payload);
            // stderr going away must not stop the replay; the summary still counts the error.
            let _ = errors.write_all(&line);
        }
    }
    dissector.finish();
    // Data sets still waiting for templates the capture did not have: counted as dropped.
    decoder.finish();
    let mut sequence = SequenceCounts::default();
    // Spaces forgotten while the capture went on (idle for 30 minutes of capture time) count too.
    let mut sequence_spaces = decoder.stats.sequence_spaces_forgotten;
    for (_, counts) in decoder.sequence_counts() {
        sequence.add(&counts);
        sequence_spaces += 1;
    }
    for (_, counts) in decoder.retired_sequence_counts() {
        sequence.add(&counts);
    }
    let mut sflow = SflowSequenceTotals::default();
    for agent in decoder.sflow().agents() {
        sflow.agents += 1;
        sflow.sources += agent.sources as u64;
        sflow.datagrams_lost += agent.datagrams.lost;
        sflow.samples_lost += agent.samples.lost;
        sflow.late += agent.datagrams.late + agent.samples.late;
        sflow.restarts += agent.datagrams.restarts + agent.samples.restarts;
        sflow.drops += agent.drops;
    }
    let totals = ReplayTotals {
        capture: dissector.stats,
        other_port,
        decode: decoder.stats,
        sequence,
        sequence_spaces,
        sflow,
    };
    (totals, failure)
}

fn error_line(
    out: &mut Vec<u8>,
    reason: ErrorReason,
    frame: u64,
    meta: &DatagramMeta,
    datagram: &[u8],
) {
    out.extend_from_slice(b"{\"error\":\"");
    out.extend_from_slice(reason.name().as_bytes());
    out.extend_from_slice(b"\",\"frame\":");
    write_u64(out, frame);
    out.extend_from_slice(b",\"time_received_ns\":");
    write_u64(out, meta.received_ns);
    out.extend_from_slice(b",\"exporter\":\"");
    let _ = write!(out, "{}", meta.exporter);
    out.extend_from_slice(b"\",\"protocol\":\"");
    let protocol = Protocol::detect(datagram).map_or("unknown", Protocol::name);
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(b"\",\"length\":");
    write_u64(out, datagram.len() as u64);
    out.extend_from_slice(b"}\n");
}

/// The `{"summary":{..}}` line. Zero counters of reasons are left out.
pub fn summary_line(out: &mut Vec<u8>, totals: &ReplayTotals, failure: Option<&CaptureError>) {
    let c = &totals.capture;
    let d = &totals.decode;
    out.extend_from_slice(b"{\"summary\":{\"frames\":");
    write_u64(out, c.frames);
    out.extend_from_slice(b",\"udp_datagrams\":");
    write_u64(out, c.datagrams);
    out.extend_from_slice(b",\"reassembled\":");
    write_u64(out, c.reassembled);
    out.extend_from_slice(b",\"fragments\":");
    write_u64(out, c.fragments);
    out.extend_from_slice(b",\"skipped\":");
    counts_object(
        out,
        SkipReason::ALL
            .iter()
            .map(|r| (r.name(), c.skipped[r.index()])),
    );
    out.extend_from_slice(b",\"other_port\":");
    write_u64(out, totals.other_port);
    out.extend_from_slice(b",\"datagrams\":");
    counts_object(
        out,
        Protocol::ALL
            .iter()
            .map(|p| (p.name(), d.datagrams[p.index()])),
    );
    out.extend_from_slice(b",\"records\":");
    counts_object(
        out,
        Protocol::ALL
            .iter()
            .map(|p| (p.name(), d.records[p.index()])),
    );
    out.extend_from_slice(b",\"errors\":");
    counts_object(
        out,
        ErrorReason::ALL
            .iter()
            .map(|r| (r.name(), d.errors[r.index()])),
    );
    out.extend_from_slice(b",\"templates\":");
    counts_object(
        out,
        [
            ("learned", d.templates_learned),
            ("redefined", d.templates_redefined),
            ("withdrawn", d.templates_withdrawn),
            ("expired", d.templates_expired),
            ("cached", d.template_cache_templates),
            ("cache_bytes", d.template_cache_bytes),
        ]
        .into_iter(),
    );
    out.extend_from_slice(b",\"early_data\":");
    counts_object(
        out,
        [
            ("held", d.early_data_held),
            ("replayed", d.early_data_replayed),
            ("bytes_still_held", d.early_data_bytes),
        ]
        .into_iter(),
    );
    out.extend_from_slice(b",\"options_records\":");
    write_u64(out, d.options_records);
    out.extend_from_slice(b",\"sampling_rates_learned\":");
    write_u64(out, d.sampling_rates_learned);
    out.extend_from_slice(b",\"sequence\":{\"spaces\":");
    write_u64(out, totals.sequence_spaces);
    out.extend_from_slice(b",\"lost\":");
    write_u64(out, totals.sequence.lost);
    out.extend_from_slice(b",\"late\":");
    write_u64(out, totals.sequence.late);
    out.extend_from_slice(b",\"restarts\":");
    write_u64(out, totals.sequence.restarts);
    out.extend_from_slice(b",\"source_port_changes\":");
    write_u64(out, totals.sequence.source_port_changes);
    out.push(b'}');
    let f = &totals.sflow;
    out.extend_from_slice(b",\"sflow_sequence\":");
    counts_object(
        out,
        [
            ("agents", f.agents),
            ("sources", f.sources),
            ("datagrams_lost", f.datagrams_lost),
            ("samples_lost", f.samples_lost),
            ("late", f.late),
            ("restarts", f.restarts),
            ("drops", f.drops),
        ]
        .into_iter(),
    );
    if let Some(e) = failure {
        out.extend_from_slice(b",\"capture_error\":\"");
        // Error texts are ASCII without quotes or backslashes, except io errors: keep it JSON-safe.
        for ch in e.to_string().chars() {
            match ch {
                '"' | '\\' => out.push(b'\''),
                c if c.is_ascii() && !c.is_ascii_control() => out.push(c as u8),
                _ => out.push(b'?'),
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"}}\n");
}

fn counts_object<'a>(out: &mut Vec<u8>, counts: impl Iterator<Item = (&'a str, u64)>) {
    out.push(b'{');
    let mut first = true;
    for (name, n) in counts.filter(|&(_, n)| n > 0) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write_u64(out, n);
    }
    out.push(b'}');
}

/// The human form: one compact line per record.
struct RecordTable<W: Write> {
    out: W,
    line: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> RecordTable<W> {
    fn emit(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.out.write_all(&self.line)
        {
            self.error = Some(e);
        }
        self.line.clear();
    }

    fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

impl<W: Write> RecordSink for RecordTable<W> {
    fn flow(&mut self, r: &FlowRecord) {
        let exporter =
            std::net::SocketAddr::new(addr_from_bytes(&r.exporter_addr), r.exporter_port);
        let src = std::net::SocketAddr::new(addr_from_bytes(&r.src_addr), r.src_port);
        let dst = std::net::SocketAddr::new(addr_from_bytes(&r.dst_addr), r.dst_port);
        let _ = writeln!(
            self.line,
            "{:<10} {:<22} {:>40} -> {:<40} proto {:<3} bytes {:<10} packets {}",
            r.flow_type().name(),
            exporter,
            src,
            dst,
            r.proto,
            r.bytes,
            r.packets
        );
        self.emit();
    }

    fn counters(&mut self, r: &CounterRecord) {
        let _ = write!(
            self.line,
            "{:<10} {:<22} counters if_index {} format {}",
            "SFLOW_5",
            addr_from_bytes(&r.agent_addr),
            r.if_index,
            r.format
        );
        if let CounterBody::GenericInterface(c) = r.body() {
            let _ = write!(
                self.line,
                " in_octets {} out_octets {}",
                c.in_octets, c.out_octets
            );
        }
        self.line.push(b'\n');
        self.emit();
    }
}

/// The end of printing the records: a closed stdout (the reader went away) is a normal end.
fn records_written(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if crate::cli::read::is_closed_output(&e) => Ok(()),
        result => result.context("writing records"),
    }
}

/// Run `collector replay`.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut reader = CaptureReader::open(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let stdout = io::BufWriter::new(io::stdout().lock());
    let mut stderr = io::BufWriter::new(io::stderr().lock());
    let (totals, failure) = if let Some(dir) = &args.ring_dir {
        let config = RingConfig {
            size: args.ring_size,
            ..RingConfig::default()
        };
        let mut rings = WorkerRings::open(dir, &config)
            .with_context(|| format!("opening the rings in {}", dir.display()))?;
        let result = replay(&mut reader, &args.ports, &mut rings, &mut stderr);
        rings.commit();
        result
    } else if args.json {
        let mut sink = RecordWriter::new(stdout, TextFormat::Json);
        let result = replay(&mut reader, &args.ports, &mut sink, &mut stderr);
        records_written(sink.finish().map(drop))?;
        result
    } else {
        let mut sink = RecordTable {
            out: stdout,
            line: Vec::with_capacity(256),
            error: None,
        };
        let result = replay(&mut reader, &args.ports, &mut sink, &mut stderr);
        records_written(sink.finish())?;
        result
    };
    let mut line = Vec::new();
    summary_line(&mut line, &totals, failure.as_ref());
    stderr.write_all(&line)?;
    stderr.flush()?;
    match failure {
        Some(e) => Err(e).with_context(|| format!("reading {}", args.file.display())),
        None => Ok(()),
    }
}
