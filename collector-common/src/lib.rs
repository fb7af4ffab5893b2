//! Types the XDP program (`collector-ebpf`) and userspace (`collector-user`) must agree on.
//!
//! Map names, key/value types and counter slots are plain constants and primitive types: the
//! kernel-side program and userspace read them through BPF maps, so they change only together.
//! [`steer`] holds the frame classifier the XDP program runs (and its frame encoder for tests),
//! so it can be unit-tested in userspace with byte slices.
#![no_std]

pub mod steer;

/// Name of the XDP program in the eBPF object.
pub const STEER_PROGRAM: &str = "steer";
/// Name of the hash map of configured UDP destination ports (key: [`PortKey`], value: [`PortValue`]).
pub const PORTS_MAP: &str = "PORTS";
/// Name of the per-CPU array of [`CounterValue`]s, one slot per [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Most listen ports the port map holds.
pub const MAX_PORTS: u32 = 64;

/// Key of [`PORTS_MAP`]: a UDP destination port in host byte order.
pub type PortKey = u16;
/// Value stored for each configured port; non-zero means "steer".
pub type PortValue = u8;
/// Value of one slot of [`COUNTERS_MAP`] on one CPU.
pub type CounterValue = u64;

/// Per-CPU counters kept by the XDP program, one slot each in [`COUNTERS_MAP`].
///
/// Every frame is counted in [`Counter::Seen`] and in exactly one of the other four, so
/// `seen == matched + passed_not_matched + fragments + malformed` (per CPU, and summed).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program saw.
    Seen = 0,
    /// UDP to a configured port (not fragmented).
    Matched = 1,
    /// Passed to the kernel because it is not UDP to a configured port: other ethertypes, other
    /// protocols, other ports, IPv6 extension headers other than fragment, more than two VLAN tags.
    PassedNotMatched = 2,
    /// IPv4 fragments (MF set or offset non-zero) and IPv6 packets whose next header is a
    /// fragment header, of any protocol: passed to the kernel so it reassembles them.
    Fragments = 3,
    /// Frames too short for the headers they announce, or IPv4 with IHL < 5 / version ≠ 4 in an
    /// IPv4 ethertype, or IPv6 with version ≠ 6: passed untouched.
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
