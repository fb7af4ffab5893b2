//! Shared setup of the fuzz targets: a fresh [`Decoder`] per input (so every crash reproduces from
//! its input alone), primed with a template datagram from the project's encoders (built once per
//! process) so data paths are reachable, and the input's version field forced so each target stays
//! on its protocol. The `capture` target instead replays its input as a capture file
//! ([`run_capture`]).
//!
//! Seeds: `cargo run -p collector-user --example fuzz_seeds -- fuzz/corpus` (from the repository root).

use collector::capture::CaptureReader;
use collector::decode::ipfix::{MessageWriter, TemplateSpec, ovs};
use collector::decode::netflow_v9::{PacketWriter, five_tuple_template};
use collector::decode::{Collected, DatagramMeta, Decoder};
use std::sync::OnceLock;

/// The exporter every fuzz input comes from (the one the templates were learned from).
pub fn meta() -> DatagramMeta {
    DatagramMeta {
        exporter: "192.0.2.1:4739".parse().expect("address"),
        received_ns: 1_700_000_000_000_000_000,
    }
}

/// A decoder that knows the templates of `version` (9: [`five_tuple_template`]; 10: the OVS family).
pub fn primed(version: u16) -> Decoder {
    let mut dec = Decoder::new();
    if let Some(prime) = prime(version) {
        let _ = dec.decode(&meta(), prime, &mut Collected::default());
    }
    dec
}

/// The template datagram of `version`, encoded once per process (encoding it per input cost
/// more than decoding most inputs).
fn prime(version: u16) -> Option<&'static [u8]> {
    static V9: OnceLock<Vec<u8>> = OnceLock::new();
    static IPFIX: OnceLock<Vec<u8>> = OnceLock::new();
    match version {
        9 => Some(V9.get_or_init(|| encode_prime(9))),
        10 => Some(IPFIX.get_or_init(|| encode_prime(10))),
        _ => None,
    }
}

fn encode_prime(version: u16) -> Vec<u8> {
    match version {
        9 => {
            let mut w = PacketWriter::new(3_600_000, 1_700_000_000, 0, 0);
            w.templates(&[five_tuple_template()]);
            w.finish()
        }
        10 => {
            // Two OVS templates (IPv4 UDP tunnelled egress: every kind of step; IPv6 ICMP
            // ingress) and the options template. Priming is most of an execution's cost (5
            // templates: 6.8 of 9.0 µs natively), so the other shapes come from the seeds, which
            // carry their own templates.
            let ids = [
                ovs::template_id(0, 1, 2, true, true),
                ovs::template_id(0, 2, 4, false, false),
            ];
            let mut templates: Vec<TemplateSpec> =
                ids.iter().filter_map(|&id| ovs::template(id)).collect();
            templates.push(ovs::options_template());
            let mut w = MessageWriter::new(1_700_000_000, 0, 0);
            w.templates(&templates);
            w.finish()
        }
        _ => Vec::new(),
    }
}

/// Decode `data` as a datagram of `version` (5, 9, 10; 0 = sFlow's 32-bit version 5).
pub fn run(version: u16, data: &[u8]) {
    let mut dec = primed(version);
    let mut bytes = data.to_vec();
    match version {
        0 => {
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&[0, 0, 0, 5]);
            }
        }
        v => {
            if bytes.len() >= 2 {
                bytes[..2].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
    let mut sink = Collected::default();
    let _ = dec.decode(&meta(), &bytes, &mut sink);
}

/// Replay `data` as a capture file, every UDP port, as `collector replay` does (no templates
/// primed: a capture carries its own).
pub fn run_capture(data: &[u8]) {
    let Ok(mut reader) = CaptureReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    let _ = collector::cli::replay::replay(
        &mut reader,
        &[],
        &mut Collected::default(),
        &mut std::io::sink(),
    );
}
