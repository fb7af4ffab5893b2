//! The XDP program `steer`: classifies every received frame, steers flow-export datagrams and
//! counts every branch.
//!
//! Maps (names and types shared with userspace through `collector-common`):
//! - `PORTS`: hash map of configured UDP destination ports, filled by userspace from `--listen`.
//! - `ALLOW_V4`, `ALLOW_V6`: LPM tries of allowed exporter source prefixes (`--allow`); consulted
//!   only when the `CONFIG_ALLOW_LIST` bit is set (empty list = allow all).
//! - `CONFIG`: one slot of `CONFIG_*` bits (allow-list active, perf mode, drop mode).
//! - `XSKS`: AF_XDP socket per RX queue index, filled by userspace as sockets are bound.
//! - `FRAMES`: per-CPU perf event array; in perf mode matched frames are copied there.
//! - `COUNTERS`: per-CPU array, one slot per `collector_common::Counter`.
//! - `AYA_LOGS` (from aya-log-ebpf): debug-level log records, drained by userspace.
//!
//! Decisions: fragments, non-UDP, unconfigured ports, malformed → `XDP_PASS`; a source outside
//! the allow-list → `XDP_DROP`; drop mode (benchmark ceiling) → `XDP_DROP`; perf mode → copy to
//! `FRAMES` and `XDP_DROP` (`XDP_PASS` when the copy fails); otherwise redirect to
//! `XSKS[rx_queue]`, `XDP_PASS` when no socket is bound.
//! The header walk itself is `collector_common::steer::classify`.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_CURRENT_CPU, xdp_action},
    helpers::bpf_perf_event_output,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerfEventArray, XskMap, lpm_trie::Key},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use collector_common::{
    AllowValue, CONFIG_ALLOW_LIST, CONFIG_DROP_MODE, CONFIG_PERF_MODE, ConfigFlags, Counter,
    CounterValue, MAX_ALLOW_PREFIXES, MAX_PORTS, MAX_QUEUES, PortKey, PortValue,
    steer::{FrameBytes, SourceAddr, Verdict, classify},
};

/// Configured UDP destination ports (host order).
#[map]
static PORTS: HashMap<PortKey, PortValue> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Allowed IPv4 exporter prefixes.
#[map]
static ALLOW_V4: LpmTrie<[u8; 4], AllowValue> = LpmTrie::with_max_entries(MAX_ALLOW_PREFIXES, 0);

/// Allowed IPv6 exporter prefixes.
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], AllowValue> = LpmTrie::with_max_entries(MAX_ALLOW_PREFIXES, 0);

/// `CONFIG_*` bits in slot 0.
#[map]
static CONFIG: Array<ConfigFlags> = Array::with_max_entries(1, 0);

/// AF_XDP socket per RX queue.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// Per-CPU perf rings for perf mode (userspace sizes it to the CPU count).
#[map]
static FRAMES: PerfEventArray<[u8; 8]> = PerfEventArray::new(0);

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
    let Verdict::Matched { port, source, .. } = verdict else {
        return xdp_action::XDP_PASS;
    };
    debug!(&ctx, "udp to listen port {}", port);
    let flags = CONFIG.get(0).copied().unwrap_or(0);
    if flags & CONFIG_ALLOW_LIST != 0 && !allowed(&source) {
        count(Counter::DroppedNotAllowed);
        debug!(&ctx, "udp to port {} dropped: source not allowed", port);
        return xdp_action::XDP_DROP;
    }
    if flags & CONFIG_DROP_MODE != 0 {
        count(Counter::DropModeDropped);
        return xdp_action::XDP_DROP;
    }
    if flags & CONFIG_PERF_MODE != 0 {
        return copy_to_perf(&ctx);
    }
    let queue = ctx.rx_queue_index();
    match XSKS.redirect(queue, u64::from(xdp_action::XDP_PASS)) {
        Ok(action) => {
            count(Counter::Redirected);
            action
        }
        Err(_) => {
            count(Counter::PassedNoSocket);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn allowed(source: &SourceAddr) -> bool {
    match source {
        SourceAddr::V4(addr) => ALLOW_V4.get(Key::new(32, *addr)).is_some(),
        SourceAddr::V6(addr) => ALLOW_V6.get(Key::new(128, *addr)).is_some(),
    }
}

/// Copy the whole frame behind an 8-byte header (frame length, RX queue) into this CPU's perf
/// ring and drop it; pass it to the kernel when the copy fails.
#[inline(always)]
fn copy_to_perf(ctx: &XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    let queue = ctx.rx_queue_index();
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&frame_len.to_ne_bytes());
    header[4..].copy_from_slice(&queue.to_ne_bytes());
    // The upper 32 bits of the flags ask the helper to append that many bytes of the packet.
    let flags = (u64::from(frame_len) << 32) | u64::from(BPF_F_CURRENT_CPU);
    // SAFETY: `FRAMES` is a perf event array map definition; `header` is 8 readable bytes.
    let ret = unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(FRAMES).cast_mut().cast(),
            flags,
            header.as_mut_ptr().cast(),
            header.len() as u64,
        )
    };
    if ret == 0 {
        count(Counter::PerfCopied);
        xdp_action::XDP_DROP
    } else {
        count(Counter::PerfFailed);
        xdp_action::XDP_PASS
    }
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
