//! The XDP program embedded in the binary, and what userspace does with it.

/// The eBPF object built by `build.rs` from `collector-ebpf`.
pub static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer"));
