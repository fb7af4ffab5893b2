//! Helpers shared by the decoders' unit tests.

use super::ie::EncodeContext;
use super::ipfix::TemplateSpec;
use super::template::Field;
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

/// Options template 401 (scope exportingProcessId 144; systemInitTimeMilliseconds 160), and an
/// encoding context whose exporter started at 1,699,999,000,000 ms: what uptime-relative flow
/// times (21/22) need to become absolute.
pub fn init_time_options() -> (TemplateSpec, EncodeContext) {
    let options = TemplateSpec {
        id: 401,
        scope_fields: 1,
        fields: vec![Field::iana(144, 4), Field::iana(160, 8)],
    };
    let ctx = EncodeContext {
        init_ms: 1_699_999_000_000,
        ..EncodeContext::default()
    };
    (options, ctx)
}
