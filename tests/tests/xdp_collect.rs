//! Privileged, end to end through the XDP fast path: `collector run --xdp` on a 4-queue veth in a
//! private namespace, exporters in the peer namespace sending NetFlow v5 (IPv4 and IPv6, many
//! source ports so the flows spread over the RX queues), NetFlow v9, IPFIX and sFlow (the OVS
//! profile), all built with the project's encoders.
//!
//! Checks, in driver and SKB attach mode with AF_XDP and in perf mode: the rings hold exactly the
//! records the same datagrams decode to in process (every field but the receive time); every RX
//! queue's AF_XDP socket received some (driver mode; SKB mode on veth reports only part of the
//! queues); IP-fragmented export datagrams arrive through the slow path (records in the rings,
//! `collector_slow_path_datagrams_total` = their count); a TCP connection and UDP to another port
//! still work while attached; a non-allowed exporter is dropped in XDP, counted, and absent from
//! the rings. SIGKILL leaves no program attached, no bpf program loaded and no AF_XDP socket
//! bound (every queue accepts a new one).

#[path = "../../collector-user/tests/exports/mod.rs"]
mod exports;
#[path = "../../collector-user/tests/readback/mod.rs"]
mod readback;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use collector::{
    decode::{
        Collected, DatagramMeta, Decoder,
        ie::EncodeContext,
        ipfix::{self, MessageWriter},
        sflow::emit::OvsExporter,
        time::ExportClock,
    },
    record::FlowRecord,
    source::xsk::{XskConfig, XskSource, ZeroCopy},
};
use collector_common::Counter;
use collector_tests::{
    collector::{CollectorProcess, metric_value},
    netns::{COLLECTOR_V4, COLLECTOR_V6, NetnsPair, PEER_V6, ip},
    poll, privilege,
};
use exports::{EXPORT_SECS, five_tuple_template, flow, v5_datagram, v9_packet};
use readback::{counter_bytes, flow_bytes, read_back};

const NETFLOW_PORT: u16 = 2055;
const IPFIX_PORT: u16 = 4739;
const SFLOW_PORT: u16 = 6343;
const OTHER_PORT: u16 = 9999;
const TCP_PORT: u16 = 8080;
const QUEUES: u32 = 4;
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(20);
/// Largest UDP payload that crosses a 1500-byte MTU unfragmented over IPv6 (and IPv4).
const UNFRAGMENTED_MAX: usize = 1500 - 40 - 8;

/// Peer addresses: v5 (two), v9, IPFIX, sFlow, fragmented IPFIX, and one outside the allow-list.
const V5_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const V5_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const V9: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
const IPFIX: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const SFLOW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 6);
const FRAGMENTED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const DENIED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

#[test]
fn afxdp_driver_mode_collects_every_protocol_on_every_queue() {
    if !privilege::require("afxdp_driver_mode_collects_every_protocol_on_every_queue") {
        return;
    }
    // Two workers for four queues: each polls two AF_XDP sockets.
    collect("driver", "afxdp", &["--workers", "2"]);
}

#[test]
fn afxdp_skb_mode_collects_every_protocol() {
    if !privilege::require("afxdp_skb_mode_collects_every_protocol") {
        return;
    }
    collect("skb", "afxdp", &["--xsk-ring-size", "4096"]);
}

#[test]
fn afxdp_busy_poll_collects_every_protocol() {
    if !privilege::require("afxdp_busy_poll_collects_every_protocol") {
        return;
    }
    // The workers run the veth's NAPI themselves (preferred busy polling), and sleep at once
    // when their rings are empty.
    collect(
        "driver",
        "afxdp",
        &["--xdp-busy-poll", "--xdp-spin-us", "0"],
    );
}

#[test]
fn perf_mode_collects_every_protocol() {
    if !privilege::require("perf_mode_collects_every_protocol") {
        return;
    }
    collect("driver", "perf", &[]);
}

/// One exporter socket in the peer namespace and the datagrams it sent.
struct Exporter {
    socket: UdpSocket,
    sent: Vec<Vec<u8>>,
}

impl Exporter {
    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send(&mut self, datagram: Vec<u8>, port: u16) {
        let target = match self.addr().ip() {
            IpAddr::V4(_) => SocketAddr::from((COLLECTOR_V4, port)),
            IpAddr::V6(_) => SocketAddr::from((COLLECTOR_V6, port)),
        };
        self.socket.send_to(&datagram, target).unwrap();
        self.sent.push(datagram);
        // Copy-mode AF_XDP on a 2-CPU machine shared with builds: stay well under the rings.
        if self.sent.len().is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

fn collect(attach: &str, xdp_mode: &str, extra: &[&str]) {
    let pair = NetnsPair::create_with_queues(QUEUES).expect("namespaces");
    for addr in [V5_B, V9, IPFIX, SFLOW, FRAGMENTED, DENIED] {
        ip(&[
            "-n",
            &pair.peer_ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &pair.peer_if,
        ])
        .expect("extra peer address");
    }
    let listen = [
        format!("0.0.0.0:{NETFLOW_PORT}"),
        format!("[::]:{NETFLOW_PORT}"),
        format!("0.0.0.0:{IPFIX_PORT}"),
        format!("0.0.0.0:{SFLOW_PORT}"),
    ];
    let mut args = vec![
        "run",
        "--xdp",
        &pair.collector_if,
        "--xdp-attach",
        attach,
        "--xdp-mode",
        xdp_mode,
        "--xdp-zero-copy",
        "off",
        "--listen",
        &listen[0],
        &listen[1],
        &listen[2],
        &listen[3],
        "--allow",
        "192.0.2.0/29",
        "--allow",
        "2001:db8::/64",
        "--ring-size",
        "16384",
        "--report-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let mut collector =
        CollectorProcess::start(Some(&pair.collector_ns), &args, "info").expect("collector starts");
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    if let Some(size) = extra
        .iter()
        .position(|a| *a == "--xsk-ring-size")
        .and_then(|i| extra.get(i + 1))
    {
        let stderr = collector.stderr();
        assert!(stderr.contains(&format!("ring_size={size}")), "{stderr}");
    }

    // Every exporter socket, created in the peer namespace.
    let mut sockets = pair
        .in_peer(|| {
            let bind = |addr: IpAddr| UdpSocket::bind((addr, 0)).unwrap();
            let v5: Vec<UdpSocket> = (0..16)
                .flat_map(|_| [bind(V5_A.into()), bind(V5_B.into())])
                .chain((0..4).map(|_| bind(PEER_V6.into())))
                .collect();
            let singles = [V9, IPFIX, SFLOW, FRAGMENTED, DENIED].map(|a| bind(a.into()));
            (v5, singles)
        })
        .expect("peer sockets");
    let [
        v9_socket,
        ipfix_socket,
        sflow_socket,
        fragmented_socket,
        denied_socket,
    ] = sockets.1;
    let exporter = |socket| Exporter {
        socket,
        sent: Vec::new(),
    };
    let mut v5: Vec<Exporter> = sockets.0.drain(..).map(exporter).collect();
    let mut v9 = exporter(v9_socket);
    let mut ipfix_exp = exporter(ipfix_socket);
    let mut sflow = exporter(sflow_socket);
    let mut fragmented = exporter(fragmented_socket);
    let mut denied = exporter(denied_socket);

    for round in 0..4u32 {
        for (n, e) in v5.iter_mut().enumerate() {
            let seq = round * 10;
            e.send(
                v5_datagram(seq, 100_000 + round * 1000, 10, n as u8),
                NETFLOW_PORT,
            );
        }
    }
    for seq in 0..10u32 {
        v9.send(v9_packet(seq, seq % 5 == 0, seq * 4), NETFLOW_PORT);
    }
    for seq in 0..10u32 {
        ipfix_exp.send(ipfix_message(seq * 5, seq == 0, seq * 5, 5), IPFIX_PORT);
    }
    let mut ovs = OvsExporter::new(SFLOW, 7);
    for _ in 0..10 {
        let mut buf = Vec::new();
        ovs.flow_datagram(&mut buf);
        sflow.send(buf, SFLOW_PORT);
    }
    for d in ovs.counter_datagrams() {
        sflow.send(d, SFLOW_PORT);
    }
    // OVS IPFIX with its ~120 templates in every message: fragmented on the way, so the program
    // passes the fragments and the kernel reassembles them for the slow-path socket.
    let ctx = encode_context();
    for seq in 0..3u32 {
        let records: Vec<FlowRecord> = (0..6).map(|i| flow(1000 + seq * 6 + i, 6)).collect();
        let message = ipfix::ovs::message(EXPORT_SECS, seq * 6, true, &records, &ctx);
        assert!(
            message.len() > 1500,
            "{} bytes do not fragment",
            message.len()
        );
        fragmented.send(message, IPFIX_PORT);
    }
    for round in 0..5u32 {
        denied.send(v5_datagram(round * 10, 5_000, 10, 99), NETFLOW_PORT);
    }
    // Fragments reach the slow-path sockets unfiltered by the program: the sockets check the
    // allow-list themselves.
    for seq in 0..2u32 {
        let records: Vec<FlowRecord> = (0..6).map(|i| flow(9000 + seq * 6 + i, 6)).collect();
        denied.send(
            ipfix::ovs::message(EXPORT_SECS, seq * 6, true, &records, &ctx),
            IPFIX_PORT,
        );
    }

    // Other traffic is untouched while the program is attached.
    pair.tcp_round_trip(TCP_PORT);
    udp_to_other_port(&pair);

    let collected = [&v9, &ipfix_exp, &sflow, &fragmented]
        .into_iter()
        .chain(v5.iter());
    for e in collected
        .clone()
        .filter(|e| e.addr().ip() != IpAddr::from(FRAGMENTED))
    {
        for d in &e.sent {
            assert!(
                d.len() <= UNFRAGMENTED_MAX,
                "{} sends {} bytes",
                e.addr(),
                d.len()
            );
        }
    }
    // What the same datagrams decode to, in process.
    let mut reference = Collected::default();
    let mut decoder = Decoder::new();
    let mut datagrams = 0u64;
    for e in collected.clone() {
        for d in &e.sent {
            let meta = DatagramMeta {
                exporter: e.addr(),
                received_ns: 1,
            };
            decoder.decode(&meta, d, &mut reference).unwrap();
            datagrams += 1;
        }
    }
    assert!(reference.flows.len() > 800, "{}", reference.flows.len());
    assert!(!reference.counters.is_empty());
    let fragmented_count = fragmented.sent.len() as u64;
    let fast_count = datagrams - fragmented_count;

    // Everything arrived, each through the path it must take.
    let text = poll(WAIT, || {
        let text = collector.metrics().ok()?;
        (sum(&text, "collector_datagrams_received_total{") >= datagrams).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "not all {datagrams} datagrams arrived:\n{}\n{}",
            collector.metrics().unwrap_or_default(),
            collector.stderr()
        )
    });
    assert_eq!(
        sum(&text, "collector_datagrams_received_total{"),
        datagrams,
        "{text}"
    );
    assert_eq!(sum(&text, "collector_socket_drops_total{"), 0, "{text}");
    assert_eq!(sum(&text, "collector_decode_errors_total{"), 0, "{text}");
    assert_eq!(
        sum(&text, "collector_slow_path_datagrams_total{"),
        fragmented_count,
        "{text}"
    );
    let branch = |name: &str| {
        metric_value(
            &text,
            &format!("collector_xdp_frames_total{{branch=\"{name}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {name} branch:\n{text}"))
    };
    let delivered = |c: Counter| branch(c.name()) - before.get(c);
    assert_eq!(delivered(Counter::DroppedNotAllowed), 5, "{text}");
    let not_allowed = poll(WAIT, || {
        let text = collector.metrics().ok()?;
        let n = sum(&text, "collector_datagrams_not_allowed_total{");
        (n >= 2).then_some(n)
    });
    assert_eq!(
        not_allowed,
        Some(2),
        "{}",
        collector.metrics().unwrap_or_default()
    );
    assert!(
        delivered(Counter::Fragments) >= 2 * fragmented_count,
        "{text}"
    );
    assert_eq!(delivered(Counter::PassedNoSocket), 0, "{text}");
    match xdp_mode {
        "perf" => {
            assert_eq!(delivered(Counter::PerfCopied), fast_count, "{text}");
            assert_eq!(sum(&text, "collector_perf_datagrams_total{"), fast_count);
            assert_eq!(sum(&text, "collector_perf_lost_samples_total{"), 0);
        }
        _ => {
            assert_eq!(delivered(Counter::Redirected), fast_count, "{text}");
            assert_eq!(sum(&text, "collector_xsk_datagrams_total{"), fast_count);
            assert_eq!(sum(&text, "collector_xsk_rx_dropped_total{"), 0, "{text}");
            // One worker per queue, or --workers sharing them round robin.
            let workers: usize = extra
                .iter()
                .position(|a| *a == "--workers")
                .and_then(|i| extra.get(i + 1)?.parse().ok())
                .unwrap_or(QUEUES as usize);
            for q in 0..QUEUES as usize {
                let series = format!(
                    "collector_xsk_datagrams_total{{queue=\"{q}\",worker=\"{}\"}}",
                    q % workers
                );
                assert!(
                    metric_value(&text, &series).is_some(),
                    "no {series}:\n{text}"
                );
            }
            let busy = (0..QUEUES)
                .filter(|q| {
                    sum(
                        &text,
                        &format!("collector_xsk_datagrams_total{{queue=\"{q}\""),
                    ) > 0
                })
                .count();
            // veth in driver mode records every frame's RX queue; generic (SKB) mode only part
            // of them (see xsk.rs).
            let required = if attach == "skb" { 2 } else { QUEUES as usize };
            assert!(
                busy >= required,
                "{busy} busy queues, need {required}:\n{text}"
            );
        }
    }

    // `collector stats` shows the XDP section from inside the namespace.
    let stats = Command::new("ip")
        .args(["netns", "exec", &pair.collector_ns])
        .arg(collector_tests::collector::collector_bin())
        .arg("stats")
        .output()
        .expect("collector stats");
    let stats_out = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success(), "{stats_out}");
    assert!(stats_out.contains("xdp: seen="), "{stats_out}");
    assert!(stats_out.contains("slow path (UDP sockets)"), "{stats_out}");

    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(WAIT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", collector.stderr());
    let read = read_back(&collector.rings());
    assert_eq!(read.flows.len(), reference.flows.len());
    assert_eq!(flow_bytes(&read.flows), flow_bytes(&reference.flows));
    assert_eq!(
        counter_bytes(&read.counters),
        counter_bytes(&reference.counters)
    );
}

/// SIGTERM right after a burst: the program is detached first (later datagrams go to the UDP
/// sockets), the workers drain the AF_XDP rings and the sockets: every record is in the rings.
#[test]
fn sigterm_right_after_a_burst_loses_nothing() {
    if !privilege::require("sigterm_right_after_a_burst_loses_nothing") {
        return;
    }
    let pair = NetnsPair::create_with_queues(QUEUES).expect("namespaces");
    let listen = format!("0.0.0.0:{NETFLOW_PORT}");
    let mut collector = CollectorProcess::start(
        Some(&pair.collector_ns),
        &[
            "run",
            "--xdp",
            &pair.collector_if,
            "--listen",
            &listen,
            "--ring-size",
            "65536",
            "--report-interval",
            "1",
        ],
        "info",
    )
    .expect("collector starts");
    collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    poll(WAIT, || {
        collector.stderr().contains("collecting").then_some(())
    })
    .expect("workers started");
    const SOCKETS: u32 = 8;
    const PER_SOCKET: u32 = 60;
    pair.in_peer(|| {
        for s in 0..SOCKETS {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            for i in 0..PER_SOCKET {
                let d = v5_datagram(i * 30, 1_000_000 + i, 30, s as u8);
                socket.send_to(&d, (COLLECTOR_V4, NETFLOW_PORT)).unwrap();
                if i % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    })
    .unwrap();
    // No waiting: datagrams may still sit in the veth, the AF_XDP rings or the sockets.
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(WAIT).unwrap();
    assert!(status.success(), "exit {status}:\n{}", collector.stderr());
    let stderr = collector.stderr();
    assert!(
        stderr.contains("XDP program detached; draining"),
        "{stderr}"
    );
    let read = read_back(&collector.rings());
    assert_eq!(
        read.flows.len(),
        (SOCKETS * PER_SOCKET * 30) as usize,
        "{stderr}"
    );
}

/// SIGKILL: the kernel detaches the program (bpf_link), unloads it and closes the AF_XDP sockets.
#[test]
fn sigkill_leaves_no_program_and_no_xdp_socket() {
    if !privilege::require("sigkill_leaves_no_program_and_no_xdp_socket") {
        return;
    }
    let pair = NetnsPair::create_with_queues(QUEUES).expect("namespaces");
    let mut collector = CollectorProcess::start(
        Some(&pair.collector_ns),
        &[
            "run",
            "--xdp",
            &pair.collector_if,
            "--listen",
            &format!("0.0.0.0:{NETFLOW_PORT}"),
            "--report-interval",
            "1",
        ],
        "info",
    )
    .expect("collector starts");
    collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    let stderr = collector.stderr();
    let program_id: u32 = stderr
        .split("program_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no program id logged:\n{stderr}"));
    assert!(
        program_loaded(program_id),
        "program {program_id} not loaded"
    );
    assert!(attached(&pair), "{}", link_details(&pair));
    assert_eq!(
        free_xsk_queues(&pair),
        0,
        "the collector binds every RX queue"
    );

    collector.signal(libc::SIGKILL).unwrap();
    collector.wait_exit(Duration::from_secs(10)).unwrap();
    let clean = poll(Duration::from_secs(10), || {
        (!attached(&pair)
            && free_xsk_queues(&pair) == QUEUES as usize
            && !program_loaded(program_id))
        .then_some(())
    });
    assert!(
        clean.is_some(),
        "after SIGKILL: attached {}, {} of {QUEUES} queues free for AF_XDP, program loaded {}\n{}",
        attached(&pair),
        free_xsk_queues(&pair),
        program_loaded(program_id),
        link_details(&pair)
    );
}

fn link_details(pair: &NetnsPair) -> String {
    ip(&[
        "-n",
        &pair.collector_ns,
        "-d",
        "link",
        "show",
        "dev",
        &pair.collector_if,
    ])
    .unwrap_or_default()
}

/// `ip -d link` shows an XDP program on the interface (`prog/xdp id N`).
fn attached(pair: &NetnsPair) -> bool {
    link_details(pair).contains("prog/xdp")
}

/// RX queues of the collector's interface an AF_XDP socket can be bound to right now. A queue
/// that already has a bound socket refuses a second one (EBUSY), so this counts the queues no
/// AF_XDP socket holds. (`ss --xdp` needs xsk_diag, which kernels may lack.)
fn free_xsk_queues(pair: &NetnsPair) -> usize {
    let iface = pair.collector_if.clone();
    pair.in_collector(move || {
        let config = XskConfig {
            ring_size: 64,
            zero_copy: ZeroCopy::Off,
            ..XskConfig::default()
        };
        (0..QUEUES)
            .filter(|q| XskSource::open(&iface, *q, &[NETFLOW_PORT], config).is_ok())
            .count()
    })
    .expect("collector namespace")
}

/// Whether the kernel still holds BPF program `id`.
fn program_loaded(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .any(|p| p.id() == id)
}

fn sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn udp_to_other_port(pair: &NetnsPair) {
    let socket = pair
        .in_collector(|| UdpSocket::bind((COLLECTOR_V4, OTHER_PORT)).unwrap())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    pair.in_peer(|| {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .send_to(b"other", (COLLECTOR_V4, OTHER_PORT))
            .unwrap();
    })
    .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(socket.recv(&mut buf).expect("UDP to another port"), 5);
}

fn encode_context() -> EncodeContext {
    EncodeContext {
        clock: ExportClock {
            export_ns: u64::from(EXPORT_SECS) * 1_000_000_000,
            uptime_ms: None,
        },
        init_ms: 0,
        interface_name: "ovn-k8s-mp0",
    }
}

fn ipfix_message(seq: u32, with_template: bool, first: u32, n: u32) -> Vec<u8> {
    let mut w = MessageWriter::new(EXPORT_SECS, seq, 5);
    if with_template {
        w.templates(&[five_tuple_template()]);
    }
    let records: Vec<FlowRecord> = (first..first + n)
        .map(|i| flow(i, if i % 2 == 0 { 6 } else { 17 }))
        .collect();
    w.data(&five_tuple_template(), &records, &encode_context());
    w.finish()
}
