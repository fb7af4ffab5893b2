//! The XDP program `steer`: classifies every received frame and counts it.
//!
//! Maps (names and types shared with userspace through `collector-common`):
//! - `PORTS`: hash map of configured UDP destination ports, filled by userspace from `--listen`.
//! - `COUNTERS`: per-CPU array, one slot per `collector_common::Counter`.
//! - `AYA_LOGS` (from aya-log-ebpf): debug-level log records, drained by userspace.
//!
//! The header walk itself is `collector_common::steer::classify`; this file only supplies
//! bounds-checked packet reads, the port lookup and the counting. Every frame gets `XDP_PASS`
//! for now (steering to AF_XDP sockets is a later step).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use collector_common::{
    Counter, CounterValue, MAX_PORTS, PortKey, PortValue,
    steer::{FrameBytes, Verdict, classify},
};

/// Configured UDP destination ports (host order).
#[map]
static PORTS: HashMap<PortKey, PortValue> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Per-CPU frame counters, indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<CounterValue> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Packet memory of the frame being processed, every read checked against `data_end`.
struct Packet<'a>(&'a XdpContext);

impl FrameBytes for Packet<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data();
        let end = self.0.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: `start + offset .. start + offset + N` lies inside the packet, checked above.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
    }
}

#[xdp]
pub fn steer(ctx: XdpContext) -> u32 {
    let verdict = classify(&Packet(&ctx), |port| {
        PORTS.get_ptr(port).is_some_and(|value| {
            // SAFETY: a non-null value pointer returned by the map lookup.
            unsafe { *value != 0 }
        })
    });
    count(Counter::Seen);
    count(verdict.counter());
    if let Verdict::Matched { port } = verdict {
        debug!(&ctx, "udp to listen port {}", port);
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the per-CPU slot of this CPU; no other program instance runs on it concurrently.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
