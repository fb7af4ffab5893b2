//! Privileged: the XDP program `steer` attached by `collector run --xdp` to a veth end inside a
//! private network namespace, in driver and in SKB mode. Traffic from the peer namespace —
//! UDP over IPv4 and IPv6 to configured and other ports, fragmented datagrams, a TCP
//! connection, and hand-made frames with VLAN tags, IPv4 options and truncations — must be
//! counted exactly: matched datagrams redirected to the collector's AF_XDP sockets, everything
//! else reaching the kernel; the allow-list, perf and drop modes count their branches; SIGKILL
//! must leave no XDP program attached. (Records through the fast path: `xdp_collect.rs`.)

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use collector_common::{
    Counter,
    steer::{ETHERTYPE_QINQ, ETHERTYPE_VLAN, FrameSpec, IPPROTO_UDP, Network, emit},
};
use collector_tests::{
    collector::CollectorProcess,
    netns::{COLLECTOR_V4, COLLECTOR_V6, NetnsPair},
    poll, privilege,
};

const NETFLOW_PORT: u16 = 2055;
const IPFIX_PORT: u16 = 4739;
const OTHER_PORT: u16 = 9999;
const TCP_PORT: u16 = 8080;
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);
const COUNT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the traffic below must add to the counters (passed_not_matched is a lower bound: the
/// kernel's own ARP / neighbour discovery frames land there too).
struct Expected {
    matched: u64,
    fragments: u64,
    malformed: u64,
    passed_at_least: u64,
}

#[test]
fn driver_mode_counts_udp_and_passes_everything() {
    if !privilege::require("driver_mode_counts_udp_and_passes_everything") {
        return;
    }
    exercise("driver", "xdp");
}

#[test]
fn skb_mode_counts_udp_and_passes_everything() {
    if !privilege::require("skb_mode_counts_udp_and_passes_everything") {
        return;
    }
    exercise("skb", "xdpgeneric");
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    if !privilege::require("sigterm_detaches_and_exits_zero") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start(&pair, "auto");
    collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    assert!(has_xdp(&pair), "{}", pair.collector_link().unwrap());
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", collector.stderr());
    assert!(!has_xdp(&pair), "{}", pair.collector_link().unwrap());
    let stderr = collector.stderr();
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("XDP program detached"), "{stderr}");
    assert!(
        stderr.contains("mode=driver"),
        "veth supports native XDP: {stderr}"
    );
}

fn start(pair: &NetnsPair, mode: &str) -> CollectorProcess {
    start_with(pair, mode, &[])
}

fn start_with(pair: &NetnsPair, mode: &str, extra: &[&str]) -> CollectorProcess {
    let listen_v4 = format!("0.0.0.0:{NETFLOW_PORT}");
    let listen_v6 = format!("[::]:{IPFIX_PORT}");
    let mut args = vec![
        "run",
        "--xdp",
        &pair.collector_if,
        "--xdp-attach",
        mode,
        "--listen",
        &listen_v4,
        &listen_v6,
        "--report-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    CollectorProcess::start(Some(&pair.collector_ns), &args, "info,steer=debug")
        .expect("collector starts")
}

/// `--allow 192.0.2.2/32`: IPv4 datagrams from the peer are redirected to the collector's AF_XDP
/// socket; IPv6 ones from 2001:db8::2 are dropped in XDP and counted, and reach no socket.
#[test]
fn allow_list_drops_and_counts_other_sources() {
    if !privilege::require("allow_list_drops_and_counts_other_sources") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start_with(&pair, "skb", &["--allow", "192.0.2.2/32"]);
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    pair.in_peer(|| {
        let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        let v6 = UdpSocket::bind("[::]:0").unwrap();
        for _ in 0..4 {
            v4.send_to(b"allowed", (COLLECTOR_V4, NETFLOW_PORT))
                .unwrap();
        }
        for _ in 0..3 {
            v6.send_to(b"denied", (COLLECTOR_V6, IPFIX_PORT)).unwrap();
        }
    })
    .unwrap();
    let after = collector
        .wait_counters(COUNT_TIMEOUT, |c| {
            c.get(Counter::Matched) - before.get(Counter::Matched) >= 7 && c.is_consistent()
        })
        .expect("counters");
    let delta = |counter| after.get(counter) - before.get(counter);
    assert_eq!(delta(Counter::DroppedNotAllowed), 3, "{after}");
    assert_eq!(delta(Counter::Redirected), 4, "{after}");
    assert_eq!(delta(Counter::PassedNoSocket), 0, "{after}");
    // The workers saw the 4 allowed datagrams (not decodable: counted as errors), nothing on the
    // slow path.
    let received = poll(COUNT_TIMEOUT, || {
        (collector.metric("collector_datagrams_received_total{worker=\"0\"}") == Some(4))
            .then_some(())
    });
    assert!(
        received.is_some(),
        "{}",
        collector.metrics().unwrap_or_default()
    );
    assert_eq!(
        collector.metric("collector_slow_path_datagrams_total{worker=\"0\"}"),
        Some(0)
    );
}

/// `--xdp-mode perf`: matched datagrams are copied into the collector's perf readers and
/// dropped; none fails, none reaches the slow path.
#[test]
fn perf_mode_copies_to_the_collectors_perf_readers() {
    if !privilege::require("perf_mode_copies_to_the_collectors_perf_readers") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start_with(&pair, "driver", &["--xdp-mode", "perf"]);
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    pair.in_peer(|| {
        let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            v4.send_to(b"netflow", (COLLECTOR_V4, NETFLOW_PORT))
                .unwrap();
        }
    })
    .unwrap();
    let after = collector
        .wait_counters(COUNT_TIMEOUT, |c| {
            c.get(Counter::Matched) - before.get(Counter::Matched) >= 5 && c.is_consistent()
        })
        .expect("counters");
    let delta = |counter| after.get(counter) - before.get(counter);
    assert_eq!(delta(Counter::PerfCopied), 5, "{after}");
    assert_eq!(delta(Counter::PerfFailed), 0, "{after}");
    let received = poll(COUNT_TIMEOUT, || {
        let text = collector.metrics().ok()?;
        let total: u64 = text
            .lines()
            .filter(|l| l.starts_with("collector_perf_datagrams_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        (total == 5).then_some(text)
    });
    let text = received.unwrap_or_else(|| collector.metrics().unwrap_or_default());
    assert!(
        text.lines()
            .any(|l| l == "collector_slow_path_datagrams_total{worker=\"0\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("collector_perf_datagrams_total{"),
        "no per-CPU perf counters: {text}"
    );
}

/// `--xdp-mode drop` (the benchmark ceiling): every matched datagram is dropped in XDP and
/// counted as `drop_mode_dropped`; the collector's sockets get none; other ports still pass.
#[test]
fn drop_mode_drops_and_counts_matched_datagrams() {
    if !privilege::require("drop_mode_drops_and_counts_matched_datagrams") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start_with(&pair, "driver", &["--xdp-mode", "drop"]);
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    let other_socket = pair
        .in_collector(|| UdpSocket::bind((COLLECTOR_V4, OTHER_PORT)).unwrap())
        .unwrap();
    pair.in_peer(|| {
        let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..6 {
            v4.send_to(b"netflow", (COLLECTOR_V4, NETFLOW_PORT))
                .unwrap();
        }
        v4.send_to(b"other", (COLLECTOR_V4, OTHER_PORT)).unwrap();
    })
    .unwrap();
    let after = collector
        .wait_counters(COUNT_TIMEOUT, |c| {
            c.get(Counter::Matched) - before.get(Counter::Matched) >= 6 && c.is_consistent()
        })
        .expect("counters");
    let delta = |counter| after.get(counter) - before.get(counter);
    assert_eq!(delta(Counter::DropModeDropped), 6, "{after}");
    assert_eq!(delta(Counter::PassedNoSocket), 0, "{after}");
    assert_eq!(delta(Counter::PerfFailed), 0, "{after}");
    let mut buf = [0u8; 16];
    other_socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(other_socket.recv(&mut buf).unwrap(), 5, "other ports pass");
    // Nothing reached the collector's sockets.
    std::thread::sleep(Duration::from_millis(300));
    let text = collector.metrics().expect("metrics");
    for series in [
        "collector_datagrams_received_total{worker=\"0\"} 0",
        "collector_slow_path_datagrams_total{worker=\"0\"} 0",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in {text}");
    }
}

/// `--user nobody`: after attaching the collector runs as nobody with only CAP_BPF, still
/// collects and reports counters, and still detaches on SIGTERM.
#[test]
fn user_flag_drops_root_after_attach() {
    if !privilege::require("user_flag_drops_root_after_attach") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let listen = format!("0.0.0.0:{NETFLOW_PORT}");
    let mut collector = CollectorProcess::start_as_user(
        "nobody",
        Some(&pair.collector_ns),
        &[
            "run",
            "--xdp",
            &pair.collector_if,
            "--listen",
            &listen,
            "--report-interval",
            "1",
        ],
        "info",
    )
    .expect("collector starts");
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    let cap_eff = collector.wait_dropped_to(65534, COUNT_TIMEOUT).unwrap();
    assert_eq!(cap_eff, 1 << collector::privilege::CAP_BPF);
    pair.in_peer(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            socket
                .send_to(b"netflow", (COLLECTOR_V4, NETFLOW_PORT))
                .unwrap();
        }
    })
    .unwrap();
    collector
        .wait_counters(COUNT_TIMEOUT, |c| {
            c.get(Counter::Matched) - before.get(Counter::Matched) >= 3
        })
        .expect("counters still readable as nobody");
    // The workers still receive as nobody (AF_XDP socket bound before the drop).
    let received = poll(COUNT_TIMEOUT, || {
        (collector.metric("collector_datagrams_received_total{worker=\"0\"}") == Some(3))
            .then_some(())
    });
    assert!(
        received.is_some(),
        "{}",
        collector.metrics().unwrap_or_default()
    );
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", collector.stderr());
    assert!(!has_xdp(&pair), "{}", pair.collector_link().unwrap());
}

/// `--xdp-zero-copy on` on veth (no zero-copy AF_XDP driver support): startup fails, naming it,
/// and leaves nothing attached.
#[test]
fn zero_copy_on_fails_clearly_without_driver_support() {
    if !privilege::require("zero_copy_on_fails_clearly_without_driver_support") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start_with(&pair, "skb", &["--xdp-zero-copy", "on"]);
    let status = collector.wait_exit(COUNT_TIMEOUT).expect("exits");
    assert!(!status.success(), "{}", collector.stderr());
    let stderr = collector.stderr();
    assert!(stderr.contains("zero-copy On"), "{stderr}");
    assert!(!has_xdp(&pair), "{}", pair.collector_link().unwrap());
}

/// SIGHUP in XDP mode re-reads the sampling rates, like socket mode, and keeps collecting.
#[test]
fn sighup_reloads_in_xdp_mode() {
    if !privilege::require("sighup_reloads_in_xdp_mode") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start_with(&pair, "driver", &["--sampling-rate", "192.0.2.0/24=400"]);
    collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    // The control plane's handler is installed once the workers run.
    poll(COUNT_TIMEOUT, || {
        collector.stderr().contains("collecting").then_some(())
    })
    .expect("workers started");
    collector.signal(libc::SIGHUP).unwrap();
    let reloaded = poll(COUNT_TIMEOUT, || {
        collector
            .stderr()
            .contains("sampling rates reloaded entries=1")
            .then_some(())
    });
    assert!(reloaded.is_some(), "{}", collector.stderr());
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", collector.stderr());
}

fn has_xdp(pair: &NetnsPair) -> bool {
    let link = pair.collector_link().expect("ip link show");
    attach_marker(&link).is_some() || link.contains("prog/xdp")
}

/// The XDP attach flag `ip link show` prints on the interface line: `xdp` (driver mode),
/// `xdpgeneric` (SKB mode), `xdpoffload`, or `xdpmulti`.
fn attach_marker(link: &str) -> Option<&str> {
    link.lines()
        .next()?
        .split_whitespace()
        .find(|token| token.starts_with("xdp"))
}

fn exercise(mode: &str, link_marker: &str) {
    let pair = NetnsPair::create().expect("namespaces");
    let mut collector = start(&pair, mode);
    let before = collector.wait_attached(ATTACH_TIMEOUT).expect("attached");
    let link = pair.collector_link().unwrap();
    assert!(
        link.contains(link_marker),
        "{mode} mode not visible in:\n{link}"
    );
    assert!(link.contains("prog/xdp"), "{link}");

    let mut expected = Expected {
        matched: 0,
        fragments: 0,
        malformed: 0,
        passed_at_least: 0,
    };
    send_udp(&pair, &mut expected);
    tcp_round_trip(&pair, &mut expected);
    send_raw_frames(&pair, &mut expected);

    let after = collector
        .wait_counters(COUNT_TIMEOUT, |c| {
            c.get(Counter::Matched) - before.get(Counter::Matched) >= expected.matched
                && c.get(Counter::Fragments) - before.get(Counter::Fragments) >= expected.fragments
                && c.get(Counter::Malformed) - before.get(Counter::Malformed) >= expected.malformed
                && c.is_consistent()
        })
        .expect("counters");
    let delta = |counter| after.get(counter) - before.get(counter);
    assert_eq!(delta(Counter::Matched), expected.matched, "{after}");
    assert_eq!(delta(Counter::Fragments), expected.fragments, "{after}");
    assert_eq!(delta(Counter::Malformed), expected.malformed, "{after}");
    assert!(
        delta(Counter::PassedNotMatched) >= expected.passed_at_least,
        "passed_not_matched {} < {}: {after}",
        delta(Counter::PassedNotMatched),
        expected.passed_at_least
    );
    assert!(after.is_consistent(), "{after}");
    // The collector bound an AF_XDP socket on the (only) RX queue: every matched frame goes there.
    assert_eq!(delta(Counter::Redirected), expected.matched, "{after}");
    assert_eq!(delta(Counter::PassedNoSocket), 0, "{after}");
    assert_eq!(delta(Counter::DroppedNotAllowed), 0, "{after}");

    // The program's debug-level log records reach the collector's log.
    let logged = poll(COUNT_TIMEOUT, || {
        collector
            .stderr()
            .contains(&format!("udp to listen port {NETFLOW_PORT}"))
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "no aya-log record:\n{}",
        collector.stderr()
    );

    // SIGKILL: no chance to clean up; the kernel must drop the bpf_link with the process.
    collector.signal(libc::SIGKILL).unwrap();
    collector.wait_exit(Duration::from_secs(10)).unwrap();
    let detached = poll(Duration::from_secs(10), || (!has_xdp(&pair)).then_some(()));
    assert!(
        detached.is_some(),
        "XDP still attached after SIGKILL:\n{}",
        pair.collector_link().unwrap()
    );
}

/// Real sockets: IPv4 and IPv6 datagrams to configured ports and another port, and one large
/// datagram per family that the sender's kernel fragments.
fn send_udp(pair: &NetnsPair, expected: &mut Expected) {
    let v4_listen = SocketAddr::from((COLLECTOR_V4, NETFLOW_PORT));
    let v4_other = SocketAddr::from((COLLECTOR_V4, OTHER_PORT));
    let v6_listen = SocketAddr::from((COLLECTOR_V6, IPFIX_PORT));
    pair.in_peer(|| {
        let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
        let v6 = UdpSocket::bind("[::]:0").unwrap();
        for _ in 0..5 {
            v4.send_to(b"netflow", v4_listen).unwrap();
        }
        for _ in 0..3 {
            v4.send_to(b"other", v4_other).unwrap();
        }
        for _ in 0..2 {
            v6.send_to(b"ipfix", v6_listen).unwrap();
        }
        // 3000 bytes over a 1500-byte MTU: 3 fragments each (IPv4: 1480+1480+48 payload bytes;
        // IPv6: 1448+1448+112, each behind a fragment header).
        let big = vec![0u8; 3000];
        v4.send_to(&big, v4_listen).unwrap();
        v6.send_to(&big, v6_listen).unwrap();
    })
    .unwrap();
    expected.matched += 5 + 2;
    expected.passed_at_least += 3;
    expected.fragments += 3 + 3;
}

/// A TCP connection from the peer to a listener in the collector namespace still works.
fn tcp_round_trip(pair: &NetnsPair, expected: &mut Expected) {
    pair.tcp_round_trip(TCP_PORT);
    // SYN, ACK, data and its ACK at least reach the collector side.
    expected.passed_at_least += 3;
}

/// Hand-made frames: VLAN tags, IPv4 options, extension headers, truncations.
fn send_raw_frames(pair: &NetnsPair, expected: &mut Expected) {
    let udp4 = |options_words| Network::Ipv4 {
        options_words,
        flags_fragment_offset: 0,
        protocol: IPPROTO_UDP,
    };
    let spec = |vlan_tpids, network, dst_port| FrameSpec {
        vlan_tpids,
        network,
        src_port: 40000,
        dst_port,
        payload_len: 16,
    };
    let frame = |spec: FrameSpec<'_>| {
        let mut buf = vec![0u8; 256];
        let len = emit(&spec, &mut buf).expect("frame fits");
        buf.truncate(len);
        buf
    };
    let one_tag = [ETHERTYPE_VLAN];
    let two_tags = [ETHERTYPE_QINQ, ETHERTYPE_VLAN];
    let three_tags = [ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_VLAN];
    let matched = [
        frame(spec(&one_tag, udp4(0), NETFLOW_PORT)),
        frame(spec(
            &two_tags,
            Network::Ipv6 { next_header: 17 },
            IPFIX_PORT,
        )),
        frame(spec(&[], udp4(2), NETFLOW_PORT)),
        frame(spec(&two_tags, udp4(10), IPFIX_PORT)),
    ];
    let passed = [
        frame(spec(&three_tags, udp4(0), NETFLOW_PORT)),
        // Hop-by-hop options header first: not parsed, passed.
        frame(spec(&[], Network::Ipv6 { next_header: 0 }, NETFLOW_PORT)),
        frame(spec(&one_tag, udp4(0), OTHER_PORT)),
    ];
    let full = frame(spec(&[], udp4(0), NETFLOW_PORT));
    let malformed = [
        // IPv4 ethertype, 10 bytes of IPv4 header.
        full[..24].to_vec(),
        // Complete IPv4 header, 4 of 8 UDP header bytes.
        full[..38].to_vec(),
        // IHL 3.
        {
            let mut bad = full.clone();
            bad[14] = 0x43;
            bad
        },
    ];
    let fragment = {
        let mut frag = full.clone();
        frag[20] = 0x20; // More Fragments
        frag
    };
    let mut all: Vec<&[u8]> = Vec::new();
    all.extend(matched.iter().map(Vec::as_slice));
    all.extend(passed.iter().map(Vec::as_slice));
    all.extend(malformed.iter().map(Vec::as_slice));
    all.push(&fragment);
    pair.send_raw_frames(&all).unwrap();
    expected.matched += matched.len() as u64;
    expected.passed_at_least += passed.len() as u64;
    expected.malformed += malformed.len() as u64;
    expected.fragments += 1;
}
