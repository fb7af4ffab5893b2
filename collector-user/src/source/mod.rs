//! Sources of export datagrams for the pipeline's workers (implementations of
//! [`crate::pipeline::Source`]). Sources know sockets and buffers, never protocols.

pub mod udp;

/// Wall-clock time, ns since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
