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
/// Name of the LPM trie of allowed IPv4 exporter prefixes (key: `prefix_len` + 4 address bytes
/// in network order, value: [`AllowValue`]).
pub const ALLOW_V4_MAP: &str = "ALLOW_V4";
/// Name of the LPM trie of allowed IPv6 exporter prefixes (key: `prefix_len` + 16 address bytes).
pub const ALLOW_V6_MAP: &str = "ALLOW_V6";
/// Most prefixes each allow-list trie holds.
pub const MAX_ALLOW_PREFIXES: u32 = 1024;
/// Name of the XSKMAP: AF_XDP socket per RX queue index.
pub const XSKS_MAP: &str = "XSKS";
/// Most RX queues the XSKMAP covers (queue indices `0..MAX_QUEUES`).
pub const MAX_QUEUES: u32 = 256;
/// Name of the one-slot array holding the [`ConfigFlags`] bits (key 0).
pub const CONFIG_MAP: &str = "CONFIG";
/// Name of the per-CPU perf event array matched frames are copied to in perf mode.
pub const FRAMES_MAP: &str = "FRAMES";

/// Value stored for each allowed prefix (always 1).
pub type AllowValue = u8;
/// Value of the [`CONFIG_MAP`] slot: a set of `CONFIG_*` bits.
pub type ConfigFlags = u32;
/// [`ConfigFlags`] bit: the allow-list is active (at least one prefix configured); without it
/// every source is allowed.
pub const CONFIG_ALLOW_LIST: ConfigFlags = 1;
/// [`ConfigFlags`] bit: perf mode, matched frames are copied to [`FRAMES_MAP`] and dropped
/// instead of being redirected to AF_XDP sockets.
pub const CONFIG_PERF_MODE: ConfigFlags = 2;
/// [`ConfigFlags`] bit: drop mode, matched (and allowed) frames are dropped and counted in
/// [`Counter::DropModeDropped`]: the XDP_DROP ceiling for benchmarks and a diagnostic of what
/// the NIC and the program alone sustain. Wins over [`CONFIG_PERF_MODE`].
pub const CONFIG_DROP_MODE: ConfigFlags = 4;

/// Length of the header the program puts in front of every frame it copies to [`FRAMES_MAP`]:
/// the frame length (u32, native endian) and the RX queue index (u32, native endian). The frame
/// bytes follow; the kernel pads the sample to a multiple of 8 bytes.
pub const PERF_HEADER_LEN: usize = 8;

/// Key of [`PORTS_MAP`]: a UDP destination port in host byte order.
pub type PortKey = u16;
/// Value stored for each configured port; non-zero means "steer".
pub type PortValue = u8;
/// Value of one slot of [`COUNTERS_MAP`] on one CPU.
pub type CounterValue = u64;

/// Per-CPU counters kept by the XDP program, one slot each in [`COUNTERS_MAP`].
///
/// Every frame is counted in [`Counter::Seen`] and in exactly one of the next four, so
/// `seen == matched + passed_not_matched + fragments + malformed` (per CPU, and summed); every
/// matched frame is counted in exactly one of the last six, so `matched == dropped_not_allowed +
/// redirected + passed_no_socket + perf_copied + perf_failed + drop_mode_dropped`.
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
    /// Matched, but the source address is not in the configured allow-list: `XDP_DROP`.
    DroppedNotAllowed = 5,
    /// Matched and redirected to the AF_XDP socket bound to the frame's RX queue.
    Redirected = 6,
    /// Matched in AF_XDP mode, but no socket is bound for the RX queue: `XDP_PASS` (slow path).
    PassedNoSocket = 7,
    /// Matched in perf mode and copied to the perf ring of this CPU: `XDP_DROP`.
    PerfCopied = 8,
    /// Matched in perf mode, but the copy failed (ring full or no reader): `XDP_PASS` so the
    /// kernel UDP socket still gets it.
    PerfFailed = 9,
    /// Matched in drop mode (`--xdp-mode drop`, a benchmark/diagnostic mode): `XDP_DROP`.
    DropModeDropped = 10,
}

impl Counter {
    /// Number of counter slots.
    pub const COUNT: u32 = 11;
    /// All counters in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::Matched,
        Counter::PassedNotMatched,
        Counter::Fragments,
        Counter::Malformed,
        Counter::DroppedNotAllowed,
        Counter::Redirected,
        Counter::PassedNoSocket,
        Counter::PerfCopied,
        Counter::PerfFailed,
        Counter::DropModeDropped,
    ];
    /// The counters that split [`Counter::Seen`]: each frame is in exactly one.
    pub const VERDICTS: [Counter; 4] = [
        Counter::Matched,
        Counter::PassedNotMatched,
        Counter::Fragments,
        Counter::Malformed,
    ];
    /// The counters that split [`Counter::Matched`]: each matched frame is in exactly one.
    pub const MATCHED_OUTCOMES: [Counter; 6] = [
        Counter::DroppedNotAllowed,
        Counter::Redirected,
        Counter::PassedNoSocket,
        Counter::PerfCopied,
        Counter::PerfFailed,
        Counter::DropModeDropped,
    ];

    /// Stable snake_case name used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Matched => "matched",
            Counter::PassedNotMatched => "passed_not_matched",
            Counter::Fragments => "fragments",
            Counter::Malformed => "malformed",
            Counter::DroppedNotAllowed => "dropped_not_allowed",
            Counter::Redirected => "redirected",
            Counter::PassedNoSocket => "passed_no_socket",
            Counter::PerfCopied => "perf_copied",
            Counter::PerfFailed => "perf_failed",
            Counter::DropModeDropped => "drop_mode_dropped",
        }
    }
}
