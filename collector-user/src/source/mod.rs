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

/// poll(2) one descriptor for readability; false on timeout or EINTR (so a stop flag is seen).
pub(crate) fn wait_readable(
    fd: std::os::fd::RawFd,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if ready < 0 {
        let err = std::io::Error::last_os_error();
        return if err.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(ready > 0)
}
