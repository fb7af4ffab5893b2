//! The UDP-socket source: the unprivileged slow path, and the embedded default.
//!
//! Each worker owns one socket per listen address, all bound with `SO_REUSEPORT` so the kernel spreads
//! exporters over the workers by 4-tuple hash (every datagram of one exporter socket reaches the same
//! worker, so its templates stay on one core). IPv6 sockets are `IPV6_V6ONLY`, so `0.0.0.0:P` and
//! `[::]:P` coexist. Datagrams are received with `recvmmsg` in batches of [`BATCH`] into buffers the
//! source owns and lends to the worker (no copy). Every socket asks for a large receive buffer
//! (`SO_RCVBUFFORCE` when privileged, else `SO_RCVBUF`, read back to report a kernel cap), counts
//! kernel drops from `SO_RXQ_OVFL` control messages (and, once a poll times out, from `SO_MEMINFO`:
//! the drops at the end of a burst, which no later datagram reports) and stamps datagrams with the
//! kernel receive time (`SO_TIMESTAMPNS`). Sockets are non-blocking; a batch waits in `poll` for at
//! most the worker's timeout so shutdown is prompt. Datagrams from sources outside the allow-list
//! are discarded and counted. At shutdown a socket is sealed ([`UdpSocket::seal`]) before it is
//! closed: no more datagrams are queued for it, and what it holds is still read (and counted).

use crate::allow::AllowList;
use crate::decode::DatagramMeta;
use crate::pipeline::{Source, SourceLosses};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Datagrams received per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Receive slot size: the largest UDP payload fits (65,507 bytes over IPv4, 65,527 over IPv6).
pub const SLOT_SIZE: usize = 65_536;
/// Control-message space per datagram: SO_RXQ_OVFL (u32) + SO_TIMESTAMPNS (timespec), aligned.
const CONTROL_WORDS: usize = 16;

// Socket options from <asm-generic/socket.h> (the same on x86_64 and aarch64).
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_TIMESTAMPNS: libc::c_int = 35;
const SO_RXQ_OVFL: libc::c_int = 40;
const SO_MEMINFO: libc::c_int = 55;
/// `SK_MEMINFO_DROPS` in the `SO_MEMINFO` array (`SK_MEMINFO_VARS` entries): the socket's drops.
const SK_MEMINFO_DROPS: usize = 8;
const SK_MEMINFO_VARS: usize = 9;

/// One bound UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddr,
    /// Receive buffer the kernel granted (as `getsockopt(SO_RCVBUF)` reports it: twice the usable size).
    rcvbuf_granted: usize,
    /// Last SO_RXQ_OVFL value seen (the socket's cumulative drop count, 32 bits, wraps).
    last_drop_count: u32,
}

/// A new non-blocking UDP socket for `addr`'s family (IPv6: `IPV6_V6ONLY`).
fn new_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the returned descriptor is owned right away.
    let raw = unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if addr.is_ipv6() {
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    Ok(fd)
}

fn bind_fd(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    with_sockaddr(fd, addr, libc::bind)
}

/// `call` (`bind` or `connect`) on `fd` with `addr` as a C sockaddr.
fn with_sockaddr(
    fd: &OwnedFd,
    addr: SocketAddr,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> io::Result<()> {
    let (storage, len) = sockaddr_from_std(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family, and `call`
    // only reads it.
    let rc = unsafe {
        call(
            fd.as_raw_fd(),
            (&raw const storage).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Fail with `AddrInUse` when another socket holds `addr` (checked by binding it once without
/// `SO_REUSEPORT`). Without this check a second collector of the same user could silently join
/// the reuseport group and take part of the traffic.
pub fn ensure_unused(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let fd = new_socket(addr)?;
    bind_fd(&fd, addr)
}

impl UdpSocket {
    /// Bind a non-blocking `SO_REUSEPORT` socket to `addr`, asking for `rcvbuf` bytes of receive buffer.
    pub fn bind(addr: SocketAddr, rcvbuf: u64) -> io::Result<UdpSocket> {
        let fd = new_socket(addr)?;
        set_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        let want = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        // Privileged: SO_RCVBUFFORCE ignores net.core.rmem_max. Otherwise the kernel caps SO_RCVBUF.
        if set_int(&fd, libc::SOL_SOCKET, SO_RCVBUFFORCE, want).is_err() {
            set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want)?;
        }
        let granted = get_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
        set_int(&fd, libc::SOL_SOCKET, SO_RXQ_OVFL, 1)?;
        set_int(&fd, libc::SOL_SOCKET, SO_TIMESTAMPNS, 1)?;
        bind_fd(&fd, addr)?;
        let local = local_addr(&fd)?;
        Ok(UdpSocket {
            fd,
            local,
            rcvbuf_granted: usize::try_from(granted).unwrap_or(0),
            last_drop_count: 0,
        })
    }

    /// The address the socket is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Usable receive buffer bytes the kernel granted (half of what `SO_RCVBUF` reports).
    pub fn rcvbuf_usable(&self) -> u64 {
        self.rcvbuf_granted as u64 / 2
    }

    /// Take in no more datagrams, keeping the queued ones readable: connect the socket to its own
    /// address (the loopback one when bound to the wildcard). A connected UDP socket only takes
    /// datagrams from its peer, and nothing sends from this address and port but the collector's
    /// own sockets, which send nothing; the kernel stops choosing it for the `SO_REUSEPORT` group
    /// (the group's other sockets get its exporters, or nobody once all are sealed). Unlike
    /// closing it, connecting leaves its queue in place.
    pub fn seal(&self) -> io::Result<()> {
        let mut peer = self.local;
        if peer.ip().is_unspecified() {
            peer.set_ip(match peer {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        with_sockaddr(&self.fd, peer, libc::connect)
    }
}

impl UdpSocket {
    /// Take the socket's cumulative drop count as seen now (`SO_RXQ_OVFL` of a datagram, or
    /// `SO_MEMINFO`); returns the drops not counted before. A datagram queued before drops were
    /// read another way carries an older count: it adds nothing.
    fn note_drop_count(&mut self, count: u32) -> u64 {
        let new = count.wrapping_sub(self.last_drop_count);
        // A 32-bit counter that wraps: "ahead" is a difference below half its range.
        if new == 0 || new > u32::MAX / 2 {
            return 0;
        }
        self.last_drop_count = count;
        u64::from(new)
    }

    /// The socket's cumulative drop count now (`SO_MEMINFO`), for drops no later datagram will
    /// report: those at the end of a burst.
    fn drop_count_now(&self) -> io::Result<u32> {
        let mut info = [0u32; SK_MEMINFO_VARS];
        let mut len = size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that much.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        info.get(SK_MEMINFO_DROPS)
            .copied()
            .filter(|_| len as usize > SK_MEMINFO_DROPS * 4)
            .ok_or_else(|| io::Error::other("SO_MEMINFO without a drop count"))
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The UDP sockets of one worker and their receive buffers.
pub struct UdpSource {
    sockets: Vec<UdpSocket>,
    pollfds: Vec<libc::pollfd>,
    buffers: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[[u64; CONTROL_WORDS]]>,
    /// Socket to read first in the next batch (round robin, so no socket starves another).
    next: usize,
    kernel_drops: u64,
    truncated: u64,
    /// Sources whose datagrams are collected; the others are counted in `not_allowed`.
    allow: AllowList,
    not_allowed: u64,
}

impl std::fmt::Debug for UdpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSource")
            .field("sockets", &self.sockets)
            .field("kernel_drops", &self.kernel_drops)
            .field("truncated", &self.truncated)
            .finish_non_exhaustive()
    }
}

impl UdpSource {
    /// A source over already bound sockets.
    pub fn new(sockets: Vec<UdpSocket>) -> UdpSource {
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        UdpSource {
            sockets,
            pollfds,
            buffers: vec![0u8; BATCH * SLOT_SIZE].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            names: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            controls: vec![[0u64; CONTROL_WORDS]; BATCH].into_boxed_slice(),
            next: 0,
            kernel_drops: 0,
            truncated: 0,
            allow: AllowList::default(),
            not_allowed: 0,
        }
    }

    /// Collect only datagrams from sources `allow` allows; count the others.
    pub fn with_allow(mut self, allow: AllowList) -> UdpSource {
        self.allow = allow;
        self
    }

    /// Bind one socket per address in `listen`.
    pub fn bind(listen: &[SocketAddr], rcvbuf: u64) -> io::Result<UdpSource> {
        let sockets = listen
            .iter()
            .map(|&addr| {
                UdpSocket::bind(addr, rcvbuf)
                    .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(UdpSource::new(sockets))
    }

    /// The bound sockets.
    pub fn sockets(&self) -> &[UdpSocket] {
        &self.sockets
    }

    /// Receive one `recvmmsg` batch from socket `index` without waiting.
    fn recv_socket(
        &mut self,
        index: usize,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        let Some(socket) = self.sockets.get_mut(index) else {
            return Ok(0);
        };
        // SAFETY: iovec and mmsghdr are plain C structs; zero is a valid initial value.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = self.buffers.as_mut_ptr();
        for (k, (iov, header)) in iovecs.iter_mut().zip(headers.iter_mut()).enumerate() {
            // SAFETY: k < BATCH, so the slot lies inside `buffers` (BATCH * SLOT_SIZE bytes).
            iov.iov_base = unsafe { base.add(k * SLOT_SIZE) }.cast();
            iov.iov_len = SLOT_SIZE;
            header.msg_hdr.msg_name = (&raw mut self.names[k]).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = self.controls[k].as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
        }
        // SAFETY: every header points at buffers owned by `self` that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.fd.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        let mut fallback_ns = None;
        let mut delivered = 0;
        for (k, header) in headers.iter().enumerate().take(n) {
            let (drop_count, stamp) = read_control(&header.msg_hdr);
            if let Some(count) = drop_count {
                self.kernel_drops += socket.note_drop_count(count);
            }
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
                continue;
            }
            let Some(exporter) = sockaddr_to_std(&self.names[k]) else {
                continue;
            };
            if !self.allow.allows(exporter.ip()) {
                self.not_allowed += 1;
                continue;
            }
            let received_ns =
                stamp.unwrap_or_else(|| *fallback_ns.get_or_insert_with(super::now_ns));
            let start = k * SLOT_SIZE;
            let len = (header.msg_len as usize).min(SLOT_SIZE);
            let Some(datagram) = self.buffers.get(start..start + len) else {
                continue;
            };
            deliver(
                &DatagramMeta {
                    exporter,
                    received_ns,
                },
                datagram,
            );
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Read each socket's drop count (`SO_MEMINFO`, one syscall each): when idle, and at the end.
    pub fn count_quiet_drops(&mut self) {
        for socket in &mut self.sockets {
            if let Ok(count) = socket.drop_count_now() {
                self.kernel_drops += socket.note_drop_count(count);
            }
        }
    }

    /// One pass over every socket (round robin start), one `recvmmsg` each.
    fn recv_ready(&mut self, deliver: &mut dyn FnMut(&DatagramMeta, &[u8])) -> io::Result<usize> {
        let count = self.sockets.len();
        let mut total = 0;
        for i in 0..count {
            let index = (self.next + i) % count;
            total += self.recv_socket(index, deliver)?;
        }
        if count > 0 {
            self.next = (self.next + 1) % count;
        }
        Ok(total)
    }
}

impl Source for UdpSource {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        let n = self.recv_ready(deliver)?;
        if n > 0 || timeout.is_zero() {
            return Ok(n);
        }
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pollfds` is a valid array of `len` pollfd structs.
        let rc = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                millis,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            };
        }
        if rc == 0 {
            // Quiet for a whole timeout: count the drops at the end of the last burst, which no
            // datagram after them has reported.
            self.count_quiet_drops();
            return Ok(0);
        }
        self.recv_ready(deliver)
    }

    fn losses(&self) -> SourceLosses {
        SourceLosses {
            kernel_drops: self.kernel_drops,
            truncated: self.truncated,
            not_allowed: self.not_allowed,
        }
    }

    fn refresh_losses(&mut self) {
        self.count_quiet_drops();
    }

    fn seal(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for socket in &self.sockets {
            if let Err(err) = socket.seal() {
                result = result.and(Err(err));
            }
        }
        result
    }
}

/// The SO_RXQ_OVFL drop count and the SO_TIMESTAMPNS receive time (ns) in a received message.
fn read_control(msg: &libc::msghdr) -> (Option<u32>, Option<u64>) {
    let mut drops = None;
    let mut stamp = None;
    // SAFETY: `msg` was filled by recvmmsg; the CMSG_* macros walk its control buffer within
    // msg_controllen, and each payload is read unaligned with the size its type says.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let data = libc::CMSG_DATA(cmsg);
            let payload = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            if level == libc::SOL_SOCKET {
                if kind == SO_RXQ_OVFL && payload >= size_of::<u32>() {
                    drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                } else if kind == SO_TIMESTAMPNS && payload >= size_of::<libc::timespec>() {
                    let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                    stamp = Some(
                        (ts.tv_sec as u64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(ts.tv_nsec as u64),
                    );
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (drops, stamp)
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn get_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is large enough for any address; len says so.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    sockaddr_to_std(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected address family"))
}

fn sockaddr_from_std(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe {
                std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast())
            };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe {
                std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast())
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(source: &mut UdpSource, want: usize) -> Vec<(DatagramMeta, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < want && std::time::Instant::now() < deadline {
            source
                .recv_batch(Duration::from_millis(50), &mut |meta, bytes| {
                    got.push((*meta, bytes.to_vec()))
                })
                .unwrap();
        }
        got
    }

    #[test]
    fn receives_batches_with_sender_address_and_kernel_timestamp() {
        let mut source = UdpSource::bind(&["127.0.0.1:0".parse().unwrap()], 1 << 20).unwrap();
        let target = source.sockets()[0].local_addr();
        assert_ne!(target.port(), 0);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = crate::source::now_ns();
        for i in 0..100u8 {
            sender.send_to(&[i; 3], target).unwrap();
        }
        let got = received(&mut source, 100);
        assert_eq!(got.len(), 100);
        for (i, (meta, bytes)) in got.iter().enumerate() {
            assert_eq!(bytes, &vec![i as u8; 3]);
            assert_eq!(meta.exporter, sender.local_addr().unwrap());
            assert!(meta.received_ns >= before && meta.received_ns <= crate::source::now_ns());
        }
        assert_eq!(source.losses(), SourceLosses::default());
    }

    #[test]
    fn sources_outside_the_allow_list_are_discarded_and_counted() {
        let allow = AllowList::new(&["127.0.0.2".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        let mut source = UdpSource::bind(&["127.0.0.1:0".parse().unwrap()], 1 << 20)
            .unwrap()
            .with_allow(allow);
        let target = source.sockets()[0].local_addr();
        let refused = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let allowed = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        // The refused ones first: the socket's queue is in order, so they are all read (and
        // counted) before the allowed ones are delivered.
        for i in 0..5u8 {
            refused.send_to(&[i], target).unwrap();
        }
        for i in 0..3u8 {
            allowed.send_to(&[i], target).unwrap();
        }
        let got = received(&mut source, 3);
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|(meta, _)| meta.exporter == allowed.local_addr().unwrap())
        );
        assert_eq!(
            source.losses(),
            SourceLosses {
                not_allowed: 5,
                ..SourceLosses::default()
            }
        );
    }

    #[test]
    fn ipv6_only_socket_coexists_with_ipv4_on_the_same_port() {
        let v4 = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let port = v4.local_addr().port();
        let Ok(v6) = UdpSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), 1 << 20) else {
            println!("SKIPPED: ipv6 loopback unavailable");
            return;
        };
        let mut source = UdpSource::new(vec![v4, v6]);
        let s4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        s6.send_to(b"six", ("::1", port)).unwrap();
        let mut got: Vec<_> = received(&mut source, 2)
            .into_iter()
            .map(|(m, b)| (m.exporter, b))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (s4.local_addr().unwrap(), b"four".to_vec()),
                (s6.local_addr().unwrap(), b"six".to_vec())
            ]
        );
    }

    #[test]
    fn reuseport_sockets_share_a_port() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let b = UdpSocket::bind(a.local_addr(), 1 << 20).unwrap();
        assert_eq!(a.local_addr(), b.local_addr());
    }

    #[test]
    fn a_port_held_by_another_socket_is_detected() {
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let taken = other.local_addr().unwrap();
        let err = ensure_unused(taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(other);
        ensure_unused(taken).unwrap();
        // Our own reuseport group is only bound after the check.
        let ours = UdpSocket::bind(taken, 1 << 20).unwrap();
        assert_eq!(
            ensure_unused(taken).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        drop(ours);
    }

    #[test]
    fn kernel_drops_are_counted_when_the_buffer_overflows() {
        // The smallest buffer the kernel allows, then far more than fits.
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let target = socket.local_addr();
        let mut source = UdpSource::new(vec![socket]);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 2000;
        for _ in 0..sent {
            sender.send_to(&[7u8; 1000], target).unwrap();
        }
        let mut got = 0;
        while source
            .recv_batch(Duration::from_millis(20), &mut |_, _| got += 1)
            .unwrap()
            > 0
        {}
        // Nothing came after the burst: the quiet poll read the socket's drop count.
        let drops = source.losses().kernel_drops;
        assert!(drops > 0, "no drops counted: got {got}");
        assert_eq!(got as u64 + drops, sent);
        // The next datagram's control message carries the same count: nothing counted twice.
        sender.send_to(&[7u8; 10], target).unwrap();
        got += received(&mut source, 1).len();
        assert_eq!(source.losses().kernel_drops, drops);
        assert_eq!(got as u64 + drops, sent + 1);
    }

    #[test]
    fn drop_counts_only_move_forward_across_the_wrap() {
        let mut s = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert_eq!(s.note_drop_count(5), 5);
        // An older count (a datagram queued before the drops were read): nothing.
        assert_eq!(s.note_drop_count(3), 0);
        assert_eq!(s.note_drop_count(5), 0);
        s.last_drop_count = u32::MAX - 1;
        assert_eq!(s.note_drop_count(2), 4);
        assert_eq!(s.note_drop_count(u32::MAX), 0);
    }

    #[test]
    fn rcvbuf_is_read_back() {
        let s = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
        // Root gets the size asked for (SO_RCVBUFFORCE); others get at most net.core.rmem_max.
        assert!(s.rcvbuf_usable() > 0);
        assert!(s.rcvbuf_usable() <= 4 << 20);
    }
}
