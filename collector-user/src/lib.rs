//! collector: ingest NetFlow v5/v9, IPFIX and sFlow v5 exports and write normalized records to ring files.
//!
//! Crate map:
//! - [`allow`]: the exporter allow-list (`--allow`).
//! - [`privilege`]: dropping root after setup (`--user`).
//! - [`record`]: the fixed-size records everything produces and stores.
//! - [`decode`]: sans-IO protocol decoders, templates, sequence tracking.
//! - [`capture`]: pcap/pcapng files → UDP datagrams (replay, tests).
//! - [`json`]: records as JSON lines (goflow2's keys) and CSV.
//! - [`ring`]: mmap'd ring files of records: format, writer, live readers.
//! - [`xdp`]: the embedded XDP program and its userspace side.
//! - [`pipeline`]: per-core workers: source → decoder → sink, counters, events.
//! - [`source`]: datagram sources for the workers (UDP sockets, AF_XDP sockets, perf rings).
//! - [`metrics`], [`control`]: Prometheus metrics, the control-plane thread (signals, events, summary).
//! - [`config`]: settings of `collector run` (config file + flags).
//! - [`cli`]: the `collector` subcommands.

pub mod allow;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod decode;
pub mod json;
pub mod metrics;
pub mod pipeline;
pub mod privilege;
pub mod record;
pub mod ring;
pub mod source;
pub mod xdp;
