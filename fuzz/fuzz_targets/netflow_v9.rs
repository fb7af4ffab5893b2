#![no_main]
//! Fuzz target: arbitrary bytes as a netflow_v9 datagram (version field forced).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| collector_fuzz::run(9, data));
