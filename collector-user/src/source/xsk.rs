//! AF_XDP source: one XDP socket bound to one RX queue of the interface the `steer` program is
//! attached to, receiving the frames the program redirects through `XSKS[queue]`.
//!
//! Owns the UMEM (an anonymous, page-aligned memmap2 mapping of `ring_size` frames), the fill
//! and RX rings (xdpilone), the bind (copy, zero-copy or the kernel's choice; need-wakeup;
//! optionally preferred busy polling), the userspace header walk that finds each frame's UDP
//! payload (the same classifier as the XDP program, `collector_common::steer`), and the loss
//! accounting: the kernel's XDP_STATISTICS and this source's own per-frame counters. Frames are
//! lent to the caller in place and go back to the fill ring after the batch. It knows nothing
//! about flow protocols.

use std::{
    ffi::CString,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    os::fd::RawFd,
    ptr::NonNull,
    time::Duration,
};

use anyhow::{Context as _, anyhow, ensure};
use collector_common::steer::{FrameError, SourceAddr, udp_datagram};
use memmap2::MmapMut;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::{now_ns, wait_readable};
use crate::decode::DatagramMeta;
use crate::pipeline::{Source, SourceLosses};

/// Whether to ask the driver for zero-copy AF_XDP (`--xdp-zero-copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ZeroCopy {
    /// Let the kernel choose: zero-copy when the driver supports it, else copy mode.
    Auto,
    /// Require zero-copy; binding fails when the driver cannot.
    On,
    /// Always copy mode (works on every interface, e.g. veth).
    Off,
}

/// Settings of one AF_XDP socket.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Entries in each of the fill, completion and RX rings, and frames in the UMEM
    /// (a power of two; default 32768, as `collector run`'s).
    pub ring_size: u32,
    /// Bytes per UMEM frame: 2048 or 4096 (default 4096).
    pub frame_size: u32,
    /// Most frames handed out per [`XskSource::recv_batch`].
    pub batch: u32,
    /// Zero-copy request.
    pub zero_copy: ZeroCopy,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`
    /// = `batch`): every receive first runs the RX queue's NAPI on the calling CPU (one
    /// non-blocking recvfrom), so the XDP program and the copy into the UMEM run on the worker's
    /// core. With the interface's `napi_defer_hard_irqs` and `gro_flush_timeout` set, the kernel
    /// then leaves the queue to the worker while it keeps polling.
    pub busy_poll: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ring_size: crate::config::DEFAULT_XSK_RING_SIZE,
            frame_size: 4096,
            batch: 64,
            zero_copy: ZeroCopy::Auto,
            busy_poll: false,
        }
    }
}

/// Counters of one socket: the kernel's XDP_STATISTICS and this source's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames the kernel dropped for this socket other than for a full RX ring (e.g. no free
    /// UMEM frame in copy mode, or a frame larger than a UMEM chunk).
    pub rx_dropped: u64,
    /// Frames the kernel dropped because the RX ring was full (the worker fell behind). Read with
    /// the extended statistics (Linux ≥ 5.9), the kernel counts these here and not in
    /// `rx_dropped`.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (Linux ≥ 5.9).
    pub fill_ring_empty: u64,
    /// Invalid RX descriptors the kernel saw.
    pub rx_invalid_descs: u64,
    /// Frames read from the RX ring.
    pub frames: u64,
    /// UDP payloads handed to `deliver`.
    pub delivered: u64,
    /// Frames that are not UDP to a listen port (the program and userspace disagree, e.g.
    /// after a port change): dropped here.
    pub not_matched: u64,
    /// Frames whose UDP length is impossible: dropped here.
    pub bad_udp_length: u64,
    /// Descriptors pointing outside the UMEM: dropped here.
    pub bad_descriptor: u64,
}

impl XskStats {
    /// Frames this source or the kernel discarded.
    pub fn losses(&self) -> u64 {
        self.rx_dropped
            + self.rx_ring_full
            + self.not_matched
            + self.bad_udp_length
            + self.bad_descriptor
    }
}

/// The set of UDP destination ports the collector listens on, as a bitmap (no search per frame).
struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    fn new(ports: &[u16]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for port in ports {
            bits[usize::from(*port / 64)] |= 1 << (port % 64);
        }
        PortSet(bits)
    }

    #[inline]
    fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

/// One AF_XDP socket on one RX queue.
pub struct XskSource {
    // Field order is drop order: rings and sockets before the UMEM registration, the mapping last.
    rx: RingRx,
    device: DeviceQueue,
    user: User,
    _socket: Socket,
    _umem: Umem,
    area: MmapMut,
    queue: u32,
    zero_copy: bool,
    busy_poll: bool,
    frame_size: u32,
    batch: u32,
    ports: PortSet,
    returned: Vec<u64>,
    counts: XskStats,
    batches_since_kernel_stats: u32,
}

/// Batches between two XDP_STATISTICS reads while busy (an idle wait always reads them).
const KERNEL_STATS_EVERY: u32 = 64;

// SAFETY: the raw pointers inside `Umem`/`User`/`DeviceQueue` point into `area` and the kernel's
// ring mappings, all owned by this value and moved with it; nothing is shared with another thread.
unsafe impl Send for XskSource {}

impl XskSource {
    /// Create the UMEM and socket for RX queue `queue` of `iface`, stock the fill ring and bind.
    /// The caller inserts [`XskSource::fd`] into the XSKMAP
    /// ([`crate::xdp::SteerProgram::bind_socket`]) to start receiving.
    pub fn open(iface: &str, queue: u32, ports: &[u16], config: XskConfig) -> anyhow::Result<Self> {
        ensure!(
            config.ring_size.is_power_of_two() && config.ring_size >= 64,
            "AF_XDP ring size {} is not a power of two ≥ 64",
            config.ring_size
        );
        ensure!(
            matches!(config.frame_size, 2048 | 4096),
            "AF_XDP frame size {} is not 2048 or 4096",
            config.frame_size
        );
        ensure!(config.batch > 0, "AF_XDP batch size is 0");
        let len = config.ring_size as usize * config.frame_size as usize;
        let mut area = MmapMut::map_anon(len).context("mapping the AF_XDP UMEM")?;
        let slice = NonNull::from(&mut area[..]);
        let umem_config = UmemConfig {
            fill_size: config.ring_size,
            complete_size: config.ring_size,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is a page-aligned anonymous mapping of `len` bytes that lives as long as
        // the returned source, which drops the UMEM and its sockets before the mapping.
        let umem = unsafe { Umem::new(umem_config, slice) }
            .map_err(|err| anyhow!("registering the AF_XDP UMEM: {err}"))?;
        let mut info = IfInfo::invalid();
        let name = CString::new(iface).context("interface name contains NUL")?;
        info.from_name(&name)
            .map_err(|err| anyhow!("looking up interface {iface}: {err}"))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(|err| {
            anyhow!("creating the AF_XDP socket for {iface} queue {queue}: {err}")
        })?;
        let mut device = umem
            .fq_cq(&socket)
            .map_err(|err| anyhow!("creating the fill/completion rings: {err}"))?;
        let mode_flag = match config.zero_copy {
            ZeroCopy::Auto => 0,
            ZeroCopy::On => SocketConfig::XDP_BIND_ZEROCOPY,
            ZeroCopy::Off => SocketConfig::XDP_BIND_COPY,
        };
        let socket_config = SocketConfig {
            rx_size: NonZeroU32::new(config.ring_size),
            tx_size: None,
            bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | mode_flag,
        };
        let user = umem
            .rx_tx(&socket, &socket_config)
            .map_err(|err| anyhow!("creating the AF_XDP RX ring: {err}"))?;
        let rx = user
            .map_rx()
            .map_err(|err| anyhow!("mapping the AF_XDP RX ring: {err}"))?;
        {
            let mut fill = device.fill(config.ring_size);
            let stocked = fill.insert(
                (0..u64::from(config.ring_size)).map(|frame| frame * u64::from(config.frame_size)),
            );
            fill.commit();
            ensure!(
                stocked == config.ring_size,
                "stocked {stocked} of {} frames in the fill ring",
                config.ring_size
            );
        }
        umem.bind(&user).map_err(|err| {
            anyhow!(
                "binding the AF_XDP socket to {iface} queue {queue} (zero-copy {:?}): {err}",
                config.zero_copy
            )
        })?;
        let zero_copy = socket_zero_copy(user.as_raw_fd())?;
        if config.busy_poll {
            let fd = user.as_raw_fd();
            let budget = i32::try_from(config.batch).unwrap_or(i32::MAX);
            for (option, value, name) in [
                (libc::SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"),
                (libc::SO_BUSY_POLL, BUSY_POLL_USECS, "SO_BUSY_POLL"),
                (libc::SO_BUSY_POLL_BUDGET, budget, "SO_BUSY_POLL_BUDGET"),
            ] {
                set_socket_option(fd, option, value)
                    .with_context(|| format!("setting {name} on the AF_XDP socket"))?;
            }
        }
        Ok(XskSource {
            rx,
            device,
            user,
            _socket: socket,
            _umem: umem,
            area,
            queue,
            zero_copy,
            busy_poll: config.busy_poll,
            frame_size: config.frame_size,
            batch: config.batch,
            ports: PortSet::new(ports),
            returned: Vec::with_capacity(config.batch as usize),
            counts: XskStats::default(),
            batches_since_kernel_stats: 0,
        })
    }

    /// The socket's descriptor, for the XSKMAP.
    pub fn fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }

    /// The RX queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the kernel bound the socket in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// With busy polling: run the RX queue's NAPI once on this CPU (a non-blocking recvfrom,
    /// which is how AF_XDP busy-polls); without: nothing.
    #[inline]
    pub fn busy_poll(&self) {
        if self.busy_poll {
            // SAFETY: a zero-length receive into no buffer on our own socket.
            unsafe {
                libc::recvfrom(
                    self.user.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Whether frames wait in the RX ring: one relaxed load of the kernel's producer index, no
    /// syscall (for a worker spinning on its rings instead of sleeping in poll(2)).
    #[inline]
    pub fn has_pending(&self) -> bool {
        self.rx.available() > 0
    }

    /// Wait at most `timeout` for frames, then hand the UDP payload of every frame ready (up to
    /// the batch size) to `deliver`, and return the frames to the fill ring. Returns how many
    /// payloads were delivered; 0 when nothing arrived (or a signal interrupted the wait).
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        self.busy_poll();
        if self.rx.available() == 0 {
            if self.device.needs_wakeup() {
                self.device.wake();
            }
            if timeout.is_zero() {
                // A caller polling several sources (or draining): no syscall for an empty ring;
                // the kernel statistics are refreshed every KERNEL_STATS_EVERY such calls.
                self.batches_since_kernel_stats += 1;
                if self.batches_since_kernel_stats >= KERNEL_STATS_EVERY {
                    self.read_kernel_stats();
                }
                return Ok(0);
            }
            if !wait_readable(self.user.as_raw_fd(), timeout)? {
                self.read_kernel_stats();
                return Ok(0);
            }
        }
        let received_ns = now_ns();
        let mut delivered = 0;
        let chunk_mask = !(u64::from(self.frame_size) - 1);
        {
            let mut read = self.rx.receive(self.batch);
            while let Some(desc) = read.read() {
                self.counts.frames += 1;
                self.returned.push(desc.addr & chunk_mask);
                let Some(frame) = usize::try_from(desc.addr).ok().and_then(|start| {
                    let end = start.checked_add(usize::try_from(desc.len).ok()?)?;
                    self.area.get(start..end)
                }) else {
                    self.counts.bad_descriptor += 1;
                    continue;
                };
                match udp_datagram(frame, |port| self.ports.contains(port)) {
                    Ok(datagram) => {
                        let meta = DatagramMeta {
                            exporter: exporter(datagram.source, datagram.src_port),
                            received_ns,
                        };
                        if let Some(payload) = frame.get(datagram.payload) {
                            deliver(&meta, payload);
                            delivered += 1;
                        }
                    }
                    Err(FrameError::NotMatched) => self.counts.not_matched += 1,
                    Err(FrameError::BadUdpLength) => self.counts.bad_udp_length += 1,
                }
            }
            read.release();
        }
        self.counts.delivered += delivered as u64;
        self.refill();
        self.batches_since_kernel_stats += 1;
        if self.batches_since_kernel_stats >= KERNEL_STATS_EVERY {
            self.read_kernel_stats();
        }
        Ok(delivered)
    }

    /// Read the kernel's XDP_STATISTICS now (one getsockopt), e.g. before the final report.
    pub fn refresh_kernel_stats(&mut self) {
        self.read_kernel_stats();
    }

    /// Copy the kernel's XDP_STATISTICS into the counters (one getsockopt).
    fn read_kernel_stats(&mut self) {
        self.batches_since_kernel_stats = 0;
        if let Ok(kernel) = self.user.statistics_v2() {
            self.counts.rx_dropped = kernel.rx_dropped;
            self.counts.rx_ring_full = kernel.rx_ring_full;
            self.counts.fill_ring_empty = kernel.rx_fill_ring_empty_descs;
            self.counts.rx_invalid_descs = kernel.rx_invalid_descs;
        }
    }

    /// Put the frames of the last batch back into the fill ring.
    fn refill(&mut self) {
        if self.returned.is_empty() {
            return;
        }
        let inserted = {
            let mut fill = self.device.fill(self.returned.len() as u32);
            let inserted = fill.insert(self.returned.iter().copied()) as usize;
            fill.commit();
            inserted
        };
        // The fill ring holds every UMEM frame, so it always has room; keep any rest for later.
        self.returned.drain(..inserted);
        if self.device.needs_wakeup() {
            self.device.wake();
        }
    }

    /// This source's counters with the kernel's statistics as of the last read (every
    /// `KERNEL_STATS_EVERY` batches or empty zero-timeout calls, on every idle wait, and by
    /// [`XskSource::refresh_kernel_stats`]).
    pub fn stats(&self) -> XskStats {
        self.counts
    }
}

impl Source for XskSource {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        XskSource::recv_batch(self, timeout, deliver)
    }

    /// The kernel's drops for this socket (RX ring full, frames too large) and the frames this
    /// source discarded (not a listen-port datagram, impossible UDP length, bad descriptor).
    fn losses(&self) -> SourceLosses {
        SourceLosses {
            kernel_drops: self.counts.losses(),
            ..SourceLosses::default()
        }
    }
}

fn exporter(source: SourceAddr, port: u16) -> SocketAddr {
    match source {
        SourceAddr::V4(addr) => SocketAddr::from((Ipv4Addr::from(addr), port)),
        SourceAddr::V6(addr) => SocketAddr::from((Ipv6Addr::from(addr), port)),
    }
}

/// `SO_BUSY_POLL` of a busy-polling socket, µs: any non-zero value enables it; non-blocking
/// receives run one NAPI pass whatever it is.
const BUSY_POLL_USECS: i32 = 50;

/// setsockopt(SOL_SOCKET, `option`, `value`).
fn set_socket_option(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the call.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the bound socket `fd` runs in zero-copy mode (getsockopt XDP_OPTIONS).
fn socket_zero_copy(fd: RawFd) -> anyhow::Result<bool> {
    let mut options = libc::xdp_options { flags: 0 };
    let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
    // SAFETY: `options` and `len` are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&raw mut options).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error()).context("getsockopt(XDP_OPTIONS)");
    }
    Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_holds_exactly_its_ports() {
        let set = PortSet::new(&[0, 63, 64, 2055, 65535]);
        for port in [0, 63, 64, 2055, 65535] {
            assert!(set.contains(port), "{port}");
        }
        for port in [1, 62, 65, 2054, 2056, 65534] {
            assert!(!set.contains(port), "{port}");
        }
    }

    #[test]
    fn exporter_addresses_keep_their_family() {
        assert_eq!(
            exporter(SourceAddr::V4([192, 0, 2, 9]), 40000),
            "192.0.2.9:40000".parse().unwrap()
        );
        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0x20, 0x01]);
        v6[15] = 5;
        assert_eq!(
            exporter(SourceAddr::V6(v6), 9),
            "[2001::5]:9".parse().unwrap()
        );
    }

    #[test]
    fn losses_sum_kernel_and_own_drops() {
        let stats = XskStats {
            rx_dropped: 1,
            rx_ring_full: 16,
            not_matched: 2,
            bad_udp_length: 4,
            bad_descriptor: 8,
            frames: 100,
            delivered: 85,
            // Not losses: the kernel counts the times it looked, not frames.
            fill_ring_empty: 32,
            rx_invalid_descs: 64,
        };
        assert_eq!(stats.losses(), 31);
    }
}
