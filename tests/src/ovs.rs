//! A private Open vSwitch between two hosts, for tests of OVS as a real flow exporter.
//!
//! [`OvsLab::start`] builds, under a scratch directory and in namespaces of its own:
//! - a *switch* namespace where a private `ovsdb-server` (its own database, created with
//!   `ovsdb-tool create` from the installed `vswitch.ovsschema`, its own unix socket, pidfile and
//!   log) and `ovs-vswitchd` (`--disable-system`: userspace datapath only) run as children of the
//!   test, never detached, with `OVS_RUNDIR`/`OVS_DBDIR`/`OVS_LOGDIR`/`OVS_SYSCONFDIR` pointing at
//!   the scratch directory, so a system Open vSwitch is never touched;
//! - a userspace bridge `br0` (`datapath_type=netdev`) whose two ports are the switch ends of
//!   veth pairs; the other ends sit in two *host* namespaces with [`HOST_A`]/[`HOST_A6`] and
//!   [`HOST_B`]/[`HOST_B6`] (MACs [`MAC_A`] and [`MAC_B`]), transmit checksum offload off so
//!   the userspace datapath forwards packets with complete checksums. Tagged traffic (VLAN
//!   [`VLAN_ID`]) goes out as raw frames ([`Host::send_frames`]).
//!
//! Exports ([`OvsLab::export_netflow`], [`OvsLab::export_ipfix`], [`OvsLab::export_sflow`]) go to a
//! collector address inside the switch namespace (its loopback), where the test runs the collector
//! and a [`Capture`] (tcpdump). The switch namespace's loopback is private, so tests in parallel
//! cannot see each other's exports. Drop kills both daemons and deletes the three namespaces (with
//! them the veths and the datapath's tap devices), also while unwinding from a failed assertion.
//!
//! OVS exports from a *connected* UDP socket: while nothing listens on the target port, every
//! ICMP port-unreachable makes its next send fail, so every other export datagram is lost. Start
//! the receiver before configuring an export.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    collector::ScratchDir,
    netns::{NetnsPair, ip, send_raw},
    poll,
};

/// Address of host A.
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Address of host B.
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// IPv6 address of host A.
pub const HOST_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// IPv6 address of host B.
pub const HOST_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// VLAN of the tagged frames tests send with [`Host::send_frames`] (the bridge ports trunk every
/// VLAN).
pub const VLAN_ID: u16 = 10;
/// Host A's address in the tagged frames.
pub const HOST_A_VLAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Host B's address in the tagged frames.
pub const HOST_B_VLAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// MAC of host A's interface.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
/// MAC of host B's interface.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
/// Where the OVS schema is unless `OVS_PKGDATADIR` says otherwise.
const DEFAULT_PKGDATADIR: &str = "/usr/share/openvswitch";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Why the OVS lab cannot run here (a tool or the schema is missing), or `None`.
pub fn missing_tools() -> Option<String> {
    for tool in [
        "ovsdb-tool",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-ofctl",
        "tcpdump",
        "ethtool",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (cargo xtask setup installs openvswitch-switch, tcpdump and ethtool)"
            ));
        }
    }
    let schema = schema_path();
    if !schema.exists() {
        return Some(format!("no OVS schema at {}", schema.display()));
    }
    None
}

fn schema_path() -> PathBuf {
    std::env::var_os("OVS_PKGDATADIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PKGDATADIR))
        .join("vswitch.ovsschema")
}

/// A child process in a process group of its own (with whatever it forks, e.g. pmacctd's plugin
/// processes). Drop stops the group (SIGTERM, then SIGKILL after 5 s) and reaps the child; the
/// child also dies with the thread that started it (`PR_SET_PDEATHSIG`), so a test killed
/// outright leaves no daemon behind.
#[derive(Debug)]
pub struct Daemon(Child);

impl Daemon {
    /// Spawn `command`, inside namespace `netns` when given.
    pub fn spawn(mut command: Command, netns: Option<&str>) -> anyhow::Result<Self> {
        let ns_file = match netns {
            Some(ns) => Some(
                File::open(format!("/run/netns/{ns}"))
                    .with_context(|| format!("opening namespace {ns}"))?,
            ),
            None => None,
        };
        let ns_fd = ns_file.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: only prctl and setns (async-signal-safe syscalls) run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = ns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        Ok(Daemon(child))
    }

    /// Send `signal` to the process group, then wait at most `timeout` for the child's exit
    /// (SIGKILL to the group after that).
    pub fn stop(&mut self, signal: i32, timeout: Duration) {
        let group = -(self.0.id() as i32);
        // SAFETY: kill(2) on the process group our child leads.
        unsafe {
            libc::kill(group, signal);
        }
        let child = &mut self.0;
        if poll(timeout, || child.try_wait().ok().flatten()).is_none() {
            // SAFETY: as above.
            unsafe {
                libc::kill(group, libc::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }

    /// Whether the process already exited.
    fn exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.exited() {
            self.stop(libc::SIGTERM, Duration::from_secs(5));
        }
    }
}

/// One host: a namespace with one end of a veth pair whose other end is a bridge port.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub ns: String,
    /// The host's interface (inside `ns`).
    pub iface: String,
    /// The switch-side interface: the bridge port (inside the switch namespace).
    pub port: String,
    /// The host's address.
    pub addr: Ipv4Addr,
    /// The host's IPv6 address.
    pub addr6: Ipv6Addr,
    /// OpenFlow port number of `port` (NetFlow's interface numbers).
    pub ofport: u32,
    /// Kernel interface index of `port` in the switch namespace (IPFIX's and sFlow's
    /// interface numbers).
    pub ifindex: u32,
}

impl Host {
    /// Send raw Ethernet frames out of the host's interface (e.g. 802.1Q-tagged ones: this
    /// kernel has no VLAN devices, and the bridge ports trunk every VLAN).
    pub fn send_frames(&self, frames: &[&[u8]]) -> anyhow::Result<()> {
        let iface = self.iface.clone();
        self.run(move || send_raw(&iface, frames))?
    }

    /// Run `f` on a thread inside the host's namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        NetnsPair::run_in(&self.ns, f)
    }
}

/// Open vSwitch with bridge `br0` between hosts A and B. See the module documentation.
#[derive(Debug)]
pub struct OvsLab {
    /// The namespace where ovs-vswitchd, the collector and the capture run.
    pub switch_ns: String,
    /// Host A ([`HOST_A`]) and host B ([`HOST_B`]).
    pub hosts: [Host; 2],
    // Fields drop in order: daemons first, then the scratch directory; the namespaces last
    // (in `Drop`).
    vswitchd: Option<Daemon>,
    ovsdb: Option<Daemon>,
    scratch: ScratchDir,
}

impl OvsLab {
    /// Create the namespaces and veths, start ovsdb-server and ovs-vswitchd, add the bridge and
    /// its two ports, and wait until ovs-vswitchd has applied that configuration.
    pub fn start() -> anyhow::Result<Self> {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("ov{}x{n}", std::process::id());
        let host = |side: &str, addr, addr6| Host {
            ns: format!("{tag}{side}"),
            iface: format!("{tag}{side}0"),
            port: format!("{tag}{side}1"),
            addr,
            addr6,
            ofport: 0,
            ifindex: 0,
        };
        let mut lab = OvsLab {
            switch_ns: format!("{tag}s"),
            hosts: [host("a", HOST_A, HOST_A6), host("b", HOST_B, HOST_B6)],
            vswitchd: None,
            ovsdb: None,
            scratch: ScratchDir::new()?,
        };
        // From here on, drop removes whatever exists.
        lab.build_network()?;
        lab.start_daemons()?;
        Ok(lab)
    }

    fn build_network(&self) -> anyhow::Result<()> {
        ip(&["netns", "add", &self.switch_ns])?;
        ip(&["-n", &self.switch_ns, "link", "set", "lo", "up"])?;
        for (host, mac) in self.hosts.iter().zip([MAC_A, MAC_B]) {
            ip(&["netns", "add", &host.ns])?;
            ip(&[
                "link",
                "add",
                &host.iface,
                "address",
                &mac_string(mac),
                "netns",
                &host.ns,
                "type",
                "veth",
                "peer",
                "name",
                &host.port,
                "netns",
                &self.switch_ns,
            ])?;
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                &host.iface,
            ])?;
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{}/64", host.addr6),
                "dev",
                &host.iface,
                "nodad",
            ])?;
            ethtool_tx_off(&host.ns, &host.iface)?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &host.ns, "link", "set", &host.iface, "up"])?;
            ip(&["-n", &self.switch_ns, "link", "set", &host.port, "up"])?;
        }
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.scratch.path()
    }

    fn db_socket(&self) -> PathBuf {
        self.dir().join("db.sock")
    }

    /// A command with the OVS environment pointing at the scratch directory.
    fn ovs_command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            command.env(var, self.dir());
        }
        command
    }

    fn start_daemons(&mut self) -> anyhow::Result<()> {
        let dir = self.dir().to_owned();
        let db = dir.join("conf.db");
        let out = self
            .ovs_command("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(schema_path())
            .output()
            .context("running ovsdb-tool")?;
        if !out.status.success() {
            bail!(
                "ovsdb-tool create: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut server = self.ovs_command("ovsdb-server");
        server
            .arg(&db)
            .arg(format!("--remote=punix:{}", self.db_socket().display()))
            .args(daemon_files(&dir, "ovsdb-server"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.ovsdb = Some(Daemon::spawn(server, None)?);
        let socket = self.db_socket();
        poll(Duration::from_secs(10), || socket.exists().then_some(()))
            .with_context(|| format!("ovsdb-server did not open {}", socket.display()))?;
        self.vsctl(&["--no-wait", "init"])?;
        let mut vswitchd = self.ovs_command("ovs-vswitchd");
        vswitchd
            .arg(format!("unix:{}", self.db_socket().display()))
            .arg("--disable-system")
            .args(daemon_files(&dir, "ovs-vswitchd"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.vswitchd = Some(Daemon::spawn(vswitchd, Some(&self.switch_ns))?);
        // Without --no-wait, ovs-vsctl returns once ovs-vswitchd has applied the change.
        let [a, b] = &self.hosts;
        self.vsctl(&[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br0",
            &a.port,
            "--",
            "add-port",
            "br0",
            &b.port,
        ])?;
        for i in 0..self.hosts.len() {
            self.hosts[i].ofport = self.ofport(&self.hosts[i].port)?;
            self.hosts[i].ifindex = self.ifindex(&self.hosts[i].port)?;
        }
        // Datapath flows idle for 1 s expire (default 10 s): NetFlow records come out sooner.
        self.vsctl(&["set", "Open_vSwitch", ".", "other_config:max-idle=1000"])?;
        Ok(())
    }

    /// Run `ovs-vsctl ARGS` against the private database; its stdout.
    pub fn vsctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .ovs_command("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.db_socket().display()))
            .arg("--timeout=20")
            .args(args)
            .output()
            .context("running ovs-vsctl")?;
        if !out.status.success() {
            bail!(
                "ovs-vsctl {}: {}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The end of ovs-vswitchd's log (for failure messages).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("ovs-vswitchd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The OpenFlow port number of bridge port `iface` (NetFlow's interface numbers).
    fn ofport(&self, iface: &str) -> anyhow::Result<u32> {
        let out = self.vsctl(&["get", "Interface", iface, "ofport"])?;
        out.trim()
            .parse()
            .with_context(|| format!("ofport of {iface}: {out:?}"))
    }

    /// The kernel interface index of bridge port `iface` in the switch namespace (IPFIX's and
    /// sFlow's interface numbers), from `ip -o link show` (`INDEX: NAME@...`).
    fn ifindex(&self, iface: &str) -> anyhow::Result<u32> {
        let out = ip(&["-n", &self.switch_ns, "-o", "link", "show", "dev", iface])?;
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no ifindex for {iface} in {out:?}"))
    }

    /// Export NetFlow v5 to `target` (`active_timeout` in seconds).
    pub fn export_netflow(&self, target: SocketAddr, active_timeout: u32) -> anyhow::Result<()> {
        self.vsctl(&[
            "--",
            "set",
            "Bridge",
            "br0",
            "netflow=@nf",
            "--",
            "--id=@nf",
            "create",
            "NetFlow",
            &format!("targets=\"{target}\""),
            &format!("active_timeout={active_timeout}"),
        ])
        .map(drop)
    }

    /// Export bridge IPFIX to `target`: every packet sampled, flows cached for 1 s.
    pub fn export_ipfix(
        &self,
        target: SocketAddr,
        obs_domain_id: u32,
        obs_point_id: u32,
    ) -> anyhow::Result<()> {
        self.vsctl(&[
            "--",
            "set",
            "Bridge",
            "br0",
            "ipfix=@i",
            "--",
            "--id=@i",
            "create",
            "IPFIX",
            &format!("targets=\"{target}\""),
            "sampling=1",
            &format!("obs_domain_id={obs_domain_id}"),
            &format!("obs_point_id={obs_point_id}"),
            "cache_active_timeout=1",
        ])
        .map(drop)
    }

    /// Per-flow IPFIX: an IPFIX exporter to `target` in collector set 1, and one OpenFlow rule
    /// on br0 that samples every packet into it (`sample(probability=65535, ...)`) with
    /// observation domain `obs_domain_id` and point `obs_point_id`, then forwards as usual.
    pub fn export_ipfix_per_flow(
        &self,
        target: SocketAddr,
        obs_domain_id: u32,
        obs_point_id: u32,
    ) -> anyhow::Result<()> {
        self.vsctl(&[
            "--",
            "--id=@br",
            "get",
            "Bridge",
            "br0",
            "--",
            "--id=@i",
            "create",
            "IPFIX",
            &format!("targets=\"{target}\""),
            "cache_active_timeout=1",
            "--",
            "create",
            "Flow_Sample_Collector_Set",
            "id=1",
            "bridge=@br",
            "ipfix=@i",
        ])?;
        let out = self
            .ovs_command("ovs-ofctl")
            .args(["add-flow", "br0"])
            .arg(format!(
                "priority=10,actions=sample(probability=65535,collector_set_id=1,\
                 obs_domain_id={obs_domain_id},obs_point_id={obs_point_id}),NORMAL"
            ))
            .output()
            .context("running ovs-ofctl")?;
        if !out.status.success() {
            bail!(
                "ovs-ofctl add-flow: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Export sFlow to `target`: every packet sampled with 128-byte headers, counters polled every
    /// second, agent address from the switch namespace's loopback.
    pub fn export_sflow(&self, target: SocketAddr) -> anyhow::Result<()> {
        self.vsctl(&[
            "--",
            "set",
            "Bridge",
            "br0",
            "sflow=@s",
            "--",
            "--id=@s",
            "create",
            "sFlow",
            "agent=lo",
            "header=128",
            "sampling=1",
            "polling=1",
            &format!("targets=\"{target}\""),
        ])
        .map(drop)
    }

    /// Stop every export (`clear Bridge br0 netflow ipfix sflow`, the per-flow collector sets),
    /// then stop ovs-vswitchd: after
    /// this no export datagram can come.
    pub fn stop_exports(&mut self) -> anyhow::Result<()> {
        self.vsctl(&["clear", "Bridge", "br0", "netflow", "ipfix", "sflow"])?;
        self.vsctl(&["--all", "destroy", "Flow_Sample_Collector_Set"])?;
        if let Some(vswitchd) = &mut self.vswitchd {
            vswitchd.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        Ok(())
    }

    /// Host A sends `count` UDP datagrams of `size` bytes from `src_port` to host B's `dst_port`
    /// over IPv4 ([`HOST_A`] → [`HOST_B`]); host B receives them all (proof that the bridge
    /// forwards).
    pub fn udp_flow(
        &self,
        src_port: u16,
        dst_port: u16,
        count: usize,
        size: usize,
    ) -> anyhow::Result<()> {
        self.udp_between(
            HOST_A.into(),
            HOST_B.into(),
            (src_port, dst_port),
            count,
            size,
        )
    }

    /// [`OvsLab::udp_flow`] over IPv6 ([`HOST_A6`] → [`HOST_B6`]).
    pub fn udp6_flow(
        &self,
        src_port: u16,
        dst_port: u16,
        count: usize,
        size: usize,
    ) -> anyhow::Result<()> {
        self.udp_between(
            HOST_A6.into(),
            HOST_B6.into(),
            (src_port, dst_port),
            count,
            size,
        )
    }

    fn udp_between(
        &self,
        src: IpAddr,
        dst: IpAddr,
        (src_port, dst_port): (u16, u16),
        count: usize,
        size: usize,
    ) -> anyhow::Result<()> {
        let [a, b] = &self.hosts;
        let (from, to) = (
            SocketAddr::new(src, src_port),
            SocketAddr::new(dst, dst_port),
        );
        let receiver = b.run(|| UdpSocket::bind(to))??;
        receiver.set_read_timeout(Some(Duration::from_secs(5)))?;
        let sender = a.run(|| UdpSocket::bind(from))??;
        let payload = vec![0x5au8; size];
        let mut buf = vec![0u8; size + 1];
        for i in 0..count {
            sender.send_to(&payload, to)?;
            let (n, got_from) = receiver
                .recv_from(&mut buf)
                .with_context(|| format!("UDP datagram {i} did not cross the bridge"))?;
            if n != size || got_from != from {
                bail!("unexpected datagram of {n} bytes from {got_from}");
            }
        }
        Ok(())
    }

    /// Host A pings host B `count` times (ICMP echo, identifier `id`, 56 bytes of data) through
    /// a raw socket; every reply must come back.
    pub fn ping(&self, id: u16, count: u16) -> anyhow::Result<()> {
        let socket = self.hosts[0].run(RawIcmp::open)??;
        for seq in 0..count {
            socket.send_echo(HOST_B, id, seq)?;
            socket
                .wait_reply(HOST_B, id, seq)
                .with_context(|| format!("no echo reply {seq} from {HOST_B}"))?;
        }
        Ok(())
    }

    /// Host A opens a TCP connection from `src_port` to host B's `dst_port`, sends `bytes`
    /// bytes, and both sides close; host B receives them all.
    pub fn tcp_flow(&self, src_port: u16, dst_port: u16, bytes: usize) -> anyhow::Result<()> {
        let [a, b] = &self.hosts;
        let listener = b.run(|| TcpListener::bind((HOST_B, dst_port)))??;
        let client = a.run(move || -> std::io::Result<TcpStream> {
            let socket = connect_from(
                SocketAddr::from((HOST_A, src_port)),
                SocketAddr::from((HOST_B, dst_port)),
            )?;
            Ok(socket)
        })??;
        let (mut server, _) = listener.accept()?;
        server.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut client = client;
        client.write_all(&vec![0x33u8; bytes])?;
        client.shutdown(std::net::Shutdown::Write)?;
        let mut got = Vec::new();
        server
            .read_to_end(&mut got)
            .context("TCP data did not cross the bridge")?;
        if got.len() != bytes {
            bail!("host B received {} of {bytes} TCP bytes", got.len());
        }
        drop(server);
        drop(client);
        Ok(())
    }
}

/// A raw IPv4 ICMP socket (closed on drop), for pings without a `ping` binary.
struct RawIcmp(std::os::fd::OwnedFd);

impl RawIcmp {
    fn open() -> anyhow::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: socket(2); the descriptor is owned by the OwnedFd from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        if fd < 0 {
            bail!("raw ICMP socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let socket = RawIcmp(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn send_echo(&self, to: Ipv4Addr, id: u16, seq: u16) -> anyhow::Result<()> {
        let mut message = [0u8; 8 + 56];
        message[0] = 8; // echo request, code 0
        message[4..6].copy_from_slice(&id.to_be_bytes());
        message[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in message[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let sum = internet_checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(to).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sendto with a valid buffer and address of the sizes given.
        let sent = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent != message.len() as isize {
            bail!(
                "sending an echo request: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Read ICMP datagrams (IPv4 header included) until the echo reply `id`/`seq` from `from`.
    fn wait_reply(&self, from: Ipv4Addr, id: u16, seq: u16) -> anyhow::Result<()> {
        let mut buf = [0u8; 1500];
        loop {
            // SAFETY: recv into a buffer of the size given; SO_RCVTIMEO bounds the wait.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&self.0),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                bail!("{}", std::io::Error::last_os_error());
            }
            let packet = &buf[..n as usize];
            let header_len = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
            let (Some(src), Some(icmp)) = (packet.get(12..16), packet.get(header_len..)) else {
                continue;
            };
            if src == from.octets()
                && icmp.first() == Some(&0)
                && icmp.get(4..6) == Some(&id.to_be_bytes()[..])
                && icmp.get(6..8) == Some(&seq.to_be_bytes()[..])
            {
                return Ok(());
            }
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `ethtool -K IFACE tx off` in namespace `ns`. The userspace datapath forwards frames as they
/// are: a partial checksum left for the veth's offload would reach the other host broken.
fn ethtool_tx_off(ns: &str, iface: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-K", iface, "tx", "off"])
        .output()
        .context("running ethtool")?;
    if !out.status.success() {
        bail!(
            "ethtool -K {iface} tx off: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A TCP connection from `local` to `remote` (std cannot bind before connecting).
fn connect_from(local: SocketAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let (SocketAddr::V4(local), SocketAddr::V4(remote)) = (local, remote) else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let sockaddr = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by the TcpStream once connected (or
    // closed on error).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let l = sockaddr(local);
        if libc::bind(fd, (&raw const l).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = sockaddr(remote);
        if libc::connect(fd, (&raw const r).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

impl Drop for OvsLab {
    fn drop(&mut self) {
        if let Some(mut vswitchd) = self.vswitchd.take() {
            vswitchd.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        if let Some(mut ovsdb) = self.ovsdb.take() {
            ovsdb.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        for ns in [&self.switch_ns, &self.hosts[0].ns, &self.hosts[1].ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `tcpdump -i IFACE -w FILE udp port PORT` in a namespace; [`Capture::stop`] ends it.
#[derive(Debug)]
pub struct Capture {
    daemon: Daemon,
    stderr: PathBuf,
}

impl Capture {
    /// Start the capture and wait until tcpdump says it is listening.
    pub fn start(netns: &str, iface: &str, port: u16, path: &Path) -> anyhow::Result<Self> {
        let stderr = path.with_extension("tcpdump.log");
        let mut command = Command::new("tcpdump");
        command
            // A 32 MiB buffer and 9000-byte slots: OVS sends its IPFIX templates as a burst of
            // ~16 datagrams, which overflow tcpdump's default (2 MiB of 256 KiB slots).
            .args(["-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root"])
            .args(["-B", "32768", "-s", "9000", "-w"])
            .arg(path)
            .args(["udp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr)?);
        let mut capture = Capture {
            daemon: Daemon::spawn(command, Some(netns))?,
            stderr,
        };
        let listening = poll(Duration::from_secs(10), || {
            let log = std::fs::read_to_string(&capture.stderr).unwrap_or_default();
            (log.contains("listening on") || capture.daemon.exited()).then_some(())
        });
        let log = std::fs::read_to_string(&capture.stderr).unwrap_or_default();
        if listening.is_none() || !log.contains("listening on") {
            bail!("tcpdump did not start: {log}");
        }
        Ok(capture)
    }

    /// Stop tcpdump (SIGINT) and return how many packets the kernel dropped before it read them.
    pub fn stop(mut self) -> anyhow::Result<u64> {
        self.daemon.stop(libc::SIGINT, Duration::from_secs(5));
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        log.lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel")?.parse().ok())
            .with_context(|| format!("no drop count from tcpdump: {log}"))
    }
}

/// A free UDP port in namespace `ns`'s loopback (bound and released; the namespace is private).
pub fn free_udp_port(ns: &str) -> anyhow::Result<u16> {
    let port = NetnsPair::run_in(ns, || {
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    })??
    .port();
    Ok(port)
}

/// The HTTP status line and body of `GET /metrics` at `addr` inside namespace `ns`.
pub fn metrics_in(ns: &str, addr: SocketAddr) -> Option<String> {
    NetnsPair::run_in(ns, || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
    .ok()?
    .ok()
    .filter(|text| text.starts_with("HTTP/1.1 200"))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The control socket, pidfile and log file arguments of an Open vSwitch daemon, all in `dir`.
fn daemon_files(dir: &Path, name: &str) -> [String; 3] {
    let file = |suffix: &str| dir.join(format!("{name}.{suffix}")).display().to_string();
    [
        format!("--unixctl={}", file("ctl")),
        format!("--pidfile={}", file("pid")),
        format!("--log-file={}", file("log")),
    ]
}
