#![no_main]
//! Fuzz target: arbitrary bytes as a ipfix datagram (version field forced).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| collector_fuzz::run(10, data));
