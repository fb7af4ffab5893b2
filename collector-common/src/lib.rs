//! Types the XDP program (`collector-ebpf`) and userspace (`collector-user`) must agree on.
//!
//! Everything here is `#[repr(C)]` or a plain constant: it is read by the kernel-side program and by
//! userspace through BPF maps, so layouts change only together on both sides.
#![no_std]

/// Name of the XDP program in the eBPF object.
pub const STEER_PROGRAM: &str = "steer";
/// Name of the hash map of configured UDP destination ports (key: port in host order, value: [`PortValue`]).
pub const PORTS_MAP: &str = "PORTS";
/// Name of the per-CPU array of [`Counter`] values.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Most listen ports the port map holds.
pub const MAX_PORTS: u32 = 64;

/// Value stored for each configured port; non-zero means "steer".
pub type PortValue = u8;

/// Per-CPU counters kept by the XDP program, one slot each in [`COUNTERS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program saw.
    Seen = 0,
    /// UDP to a configured port (not fragmented).
    Matched = 1,
    /// Passed to the kernel because it is not UDP to a configured port.
    PassedNotMatched = 2,
    /// IPv4 fragments and IPv6 fragment headers: passed to the kernel so it reassembles them.
    Fragments = 3,
    /// Frames too short for the headers they announce (passed untouched).
    Malformed = 4,
}

impl Counter {
    /// Number of counter slots.
    pub const COUNT: u32 = 5;
    /// All counters in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::Matched,
        Counter::PassedNotMatched,
        Counter::Fragments,
        Counter::Malformed,
    ];

    /// Stable snake_case name used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Matched => "matched",
            Counter::PassedNotMatched => "passed_not_matched",
            Counter::Fragments => "fragments",
            Counter::Malformed => "malformed",
        }
    }
}
