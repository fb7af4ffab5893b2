#![no_main]
//! Fuzz target: arbitrary bytes as a capture file (pcap or pcapng) replayed as `collector replay`
//! does: frames, link layers, VLAN tags, IP, fragment reassembly, then the decoders.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| collector_fuzz::run_capture(data));
