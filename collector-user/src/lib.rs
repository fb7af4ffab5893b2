//! collector: ingest NetFlow v5/v9, IPFIX and sFlow v5 exports and write normalized records to ring files.
//!
//! Crate map:
//! - [`privilege`]: dropping root after setup (`--user`).
//! - [`record`]: the fixed-size records everything produces and stores.
//! - [`decode`]: sans-IO protocol decoders, templates, sequence tracking.
//! - [`ring`]: mmap'd ring files of records: format, writer, live readers.
//! - [`source`]: datagram sources fed by XDP (AF_XDP sockets, perf rings).
//! - [`xdp`]: the embedded XDP program and its userspace side.
//! - [`cli`]: the `collector` subcommands.

pub mod cli;
pub mod decode;
pub mod privilege;
pub mod record;
pub mod ring;
pub mod source;
pub mod xdp;
