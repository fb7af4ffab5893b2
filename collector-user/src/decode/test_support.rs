//! Helpers shared by the decoders' unit tests.

use super::{Collected, DatagramMeta, Decoder, ErrorReason};
use std::net::SocketAddr;

pub const T0: u64 = 1_700_000_000_000_000_000;

pub fn meta(exporter: &str) -> DatagramMeta {
    meta_at(exporter, T0)
}

pub fn meta_at(exporter: &str, received_ns: u64) -> DatagramMeta {
    DatagramMeta {
        exporter: exporter.parse::<SocketAddr>().expect("test address"),
        received_ns,
    }
}

/// Decode `datagram` from `exporter` into a fresh sink.
pub fn run(
    dec: &mut Decoder,
    exporter: &str,
    datagram: &[u8],
) -> (Collected, Result<(), ErrorReason>) {
    let mut sink = Collected::default();
    let result = dec.decode(&meta(exporter), datagram, &mut sink);
    (sink, result)
}

pub fn errors(dec: &Decoder, reason: ErrorReason) -> u64 {
    dec.stats.errors[reason.index()]
}
