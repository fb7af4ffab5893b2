//! Two network namespaces joined by a veth pair, for tests that need real interfaces.
//!
//! The *collector* namespace holds the end the collector attaches to (`192.0.2.1/24`,
//! `2001:db8::1/64`, MAC 02:00:00:00:00:01); the *peer* namespace holds the other end
//! (`192.0.2.2`, `2001:db8::2`, MAC 02:00:00:00:00:02) and sends the traffic. Nothing touches
//! the host's namespace, so tests running in parallel cannot collide. Names carry the process
//! id and a counter; [`NetnsPair`]'s drop deletes both namespaces (and with them the veth),
//! also while unwinding from a failed assertion.

use std::{
    ffi::CString,
    fs::File,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, RawFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};

/// Collector-side IPv4 address.
pub const COLLECTOR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Peer-side IPv4 address.
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Collector-side IPv6 address.
pub const COLLECTOR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Peer-side IPv6 address.
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// MAC of the collector-side veth end (the destination `collector_common::steer::emit` writes).
pub const COLLECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the peer-side veth end.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

static NEXT_PAIR: AtomicU32 = AtomicU32::new(0);

/// Two namespaces and the veth between them; removed on drop.
#[derive(Debug)]
pub struct NetnsPair {
    /// Namespace of the collector-side end.
    pub collector_ns: String,
    /// Namespace of the peer-side end.
    pub peer_ns: String,
    /// Interface name of the collector-side end (inside `collector_ns`).
    pub collector_if: String,
    /// Interface name of the peer-side end (inside `peer_ns`).
    pub peer_if: String,
}

impl NetnsPair {
    /// Create both namespaces, the veth pair and the addresses. On failure everything created
    /// so far is removed again.
    pub fn create() -> anyhow::Result<Self> {
        Self::create_with_queues(1)
    }

    /// [`NetnsPair::create`] with `queues` RX and TX queues on both veth ends (for tests of
    /// per-queue steering; the peer's TX queue, picked per flow, is the collector's RX queue).
    pub fn create_with_queues(queues: u32) -> anyhow::Result<Self> {
        let queues = queues.to_string();
        let n = NEXT_PAIR.fetch_add(1, Ordering::Relaxed);
        let tag = format!("ct{}x{n}", std::process::id());
        let pair = NetnsPair {
            collector_ns: format!("{tag}c"),
            peer_ns: format!("{tag}p"),
            // Interface names: at most 15 bytes ("ct4194304x99c" is 13).
            collector_if: format!("{tag}c"),
            peer_if: format!("{tag}p"),
        };
        // From here on, drop cleans up whatever exists.
        ip(&["netns", "add", &pair.collector_ns])?;
        ip(&["netns", "add", &pair.peer_ns])?;
        ip(&[
            "link",
            "add",
            &pair.collector_if,
            "address",
            &mac_string(COLLECTOR_MAC),
            "numrxqueues",
            &queues,
            "numtxqueues",
            &queues,
            "netns",
            &pair.collector_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.peer_if,
            "address",
            &mac_string(PEER_MAC),
            "numrxqueues",
            &queues,
            "numtxqueues",
            &queues,
            "netns",
            &pair.peer_ns,
        ])?;
        for (ns, iface, v4, v6) in [
            (
                &pair.collector_ns,
                &pair.collector_if,
                COLLECTOR_V4,
                COLLECTOR_V6,
            ),
            (&pair.peer_ns, &pair.peer_if, PEER_V4, PEER_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", iface])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                iface,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", iface, "up"])?;
        }
        Ok(pair)
    }

    /// Run `f` on a thread that has entered namespace `ns`. Sockets `f` creates stay in `ns`
    /// and may be returned and used from any thread.
    pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/run/netns/{ns}");
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(file.as_raw_fd())?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the thread in namespace {ns} panicked"))?
        })
    }

    /// Run `f` inside the collector namespace.
    pub fn in_collector<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        Self::run_in(&self.collector_ns, f)
    }

    /// Run `f` inside the peer namespace.
    pub fn in_peer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        Self::run_in(&self.peer_ns, f)
    }

    /// A TCP connection from the peer to a listener on `port` in the collector namespace: "ping"
    /// one way, "pong" back, each checked.
    pub fn tcp_round_trip(&self, port: u16) {
        let listener = self
            .in_collector(|| TcpListener::bind((COLLECTOR_V4, port)).unwrap())
            .unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            stream.write_all(b"pong").unwrap();
        });
        let reply = self
            .in_peer(|| {
                let mut stream = TcpStream::connect_timeout(
                    &SocketAddr::from((COLLECTOR_V4, port)),
                    Duration::from_secs(5),
                )
                .unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                stream.write_all(b"ping").unwrap();
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).unwrap();
                buf
            })
            .unwrap();
        server.join().expect("TCP server");
        assert_eq!(&reply, b"pong");
    }

    /// Send raw Ethernet frames out of the peer end; they arrive at the collector end as is.
    pub fn send_raw_frames(&self, frames: &[&[u8]]) -> anyhow::Result<()> {
        let iface = self.peer_if.clone();
        self.in_peer(move || send_raw(&iface, frames))?
    }

    /// `ip -n <collector ns> link show dev <collector if>`.
    pub fn collector_link(&self) -> anyhow::Result<String> {
        ip(&[
            "-n",
            &self.collector_ns,
            "link",
            "show",
            "dev",
            &self.collector_if,
        ])
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it, and with it the peer.
        for ns in [&self.collector_ns, &self.peer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Whether namespace `ns` exists (`ip netns list`).
pub fn netns_exists(ns: &str) -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.split_whitespace().next() == Some(ns))
        })
        .unwrap_or(false)
}

/// Run `ip ARGS`; its stdout, or an error with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Move the calling thread into the network namespace open as `fd`.
pub fn enter(fd: RawFd) -> anyhow::Result<()> {
    // SAFETY: setns on a namespace file descriptor affects only the calling thread.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Send `frames` through an AF_PACKET raw socket on `iface` (in the calling thread's namespace).
pub fn send_raw(iface: &str, frames: &[&[u8]]) -> anyhow::Result<()> {
    let name = CString::new(iface)?;
    // SAFETY: plain libc calls with valid arguments; the descriptor is closed below.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            bail!("no interface {iface}: {}", std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&COLLECTOR_MAC);
        let mut result = Ok(());
        for frame in frames {
            let sent = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if sent != frame.len() as isize {
                result = Err(anyhow::anyhow!(
                    "sending a {}-byte frame: {}",
                    frame.len(),
                    std::io::Error::last_os_error()
                ));
                break;
            }
        }
        libc::close(fd);
        result
    }
}
