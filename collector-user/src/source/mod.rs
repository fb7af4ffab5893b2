//! Sources of export datagrams for the pipeline's workers (implementations of
//! [`crate::pipeline::Source`]). Sources know sockets and buffers, never protocols: the XDP-fed
//! ones ([`xsk`], [`perf`]) find each frame's UDP payload with the shared classifier and lend it,
//! with the exporter's address, to the worker; [`rx_queues`] places their workers on CPUs.

pub mod perf;
pub mod rx_queues;
pub mod udp;
pub mod xsk;

/// Wall-clock time, ns since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
