//! flowgen: emulates the nodes of a cluster exporting flows (NetFlow v5/v9, IPFIX, sFlow; Open
//! vSwitch profiles) to a collector, writes a manifest of exactly what was sent, and verifies a
//! collector's ring files against it.
//!
//! Crate map:
//! - [`model`]: the flows each node reports, a pure function of (seed, exporter, index).
//! - [`exporter`]: one node's datagram stream (sequence numbers, templates, restarts, gaps), sans-IO,
//!   and [`exporter::replay`] that regenerates it from a manifest.
//! - [`manifest`]: the JSON account of a run.
//! - [`send`]: sockets, `sendmmsg`, sender threads, pacing, progress.
//! - [`netns`]: source addresses added inside a network namespace.
//! - [`verify`]: rings vs manifest: missing, extra and mismatched records.
//! - [`pcap`]: datagrams as a pcap file of Ethernet/IP/UDP frames (tshark checks, debugging).

pub mod exporter;
pub mod manifest;
pub mod model;
pub mod netns;
pub mod pcap;
pub mod send;
pub mod verify;
