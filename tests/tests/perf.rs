//! Privileged: perf mode. The `steer` program copies matched frames into the per-CPU perf event
//! array and drops them; [`collector::source::perf::PerfSource`]s, one per online CPU, must hand
//! out every UDP payload with its exporter address (IPv4 and IPv6), in driver and SKB mode, and
//! the kernel socket must see none of them.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use collector::{
    pipeline::Source,
    source::perf::PerfSource,
    xdp::{AttachMode, SteerConfig, SteerMode, SteerProgram},
};
use collector_common::Counter;
use collector_tests::{
    netns::{COLLECTOR_V4, COLLECTOR_V6, NetnsPair},
    privilege,
};

const PORT: u16 = 6343;
const FLOWS: usize = 16;
const DATAGRAMS_PER_FLOW: usize = 5;

#[test]
fn perf_rings_receive_every_datagram_driver_mode() {
    if !privilege::require("perf_rings_receive_every_datagram_driver_mode") {
        return;
    }
    exercise(AttachMode::Driver);
}

#[test]
fn perf_rings_receive_every_datagram_skb_mode() {
    if !privilege::require("perf_rings_receive_every_datagram_skb_mode") {
        return;
    }
    exercise(AttachMode::Skb);
}

fn exercise(mode: AttachMode) {
    let pair = NetnsPair::create().expect("namespaces");
    let peer_ns = pair.peer_ns.clone();
    let iface = pair.collector_if.clone();
    let (received, sent, counters, stats, kernel_socket_got) = pair
        .in_collector(move || {
            let config = SteerConfig {
                ports: vec![PORT],
                allow: Vec::new(),
                mode: SteerMode::Perf,
                log_debug: false,
            };
            let mut program = SteerProgram::attach(&iface, mode, &config).expect("attach");
            let mut frames = program.take_frames().expect("perf array");
            let cpus = aya::util::online_cpus().expect("online CPUs");
            let mut sources: Vec<PerfSource> = cpus
                .iter()
                .map(|cpu| PerfSource::open(&mut frames, *cpu, 16, &[PORT]).expect("perf buffer"))
                .collect();
            let kernel_socket = UdpSocket::bind((COLLECTOR_V4, PORT)).unwrap();
            kernel_socket.set_nonblocking(true).unwrap();
            let sent = NetnsPair::run_in(&peer_ns, send).expect("send");
            let mut received: BTreeMap<String, SocketAddr> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while received.len() < sent && Instant::now() < deadline {
                for source in &mut sources {
                    // Through the pipeline's Source trait, as a worker calls it.
                    let lane: &mut dyn Source = source;
                    lane.recv_batch(Duration::from_millis(20), &mut |meta, payload| {
                        let text = String::from_utf8_lossy(payload).into_owned();
                        assert!(received.insert(text, meta.exporter).is_none(), "duplicate");
                    })
                    .expect("recv_batch");
                    assert_eq!(lane.losses().kernel_drops, 0);
                }
            }
            let counters = program.counters().expect("counters");
            let stats: Vec<_> = sources.iter().map(PerfSource::stats).collect();
            let mut buf = [0u8; 64];
            let kernel_socket_got = kernel_socket.recv(&mut buf).is_ok();
            (received, sent, counters, stats, kernel_socket_got)
        })
        .expect("collector namespace");

    assert_eq!(received.len(), sent, "{stats:?} {counters}");
    for (payload, exporter) in &received {
        let (from, _) = payload.split_once('/').expect("payload format");
        assert_eq!(from, exporter.to_string(), "exporter of {payload}");
    }
    assert!(received.values().any(SocketAddr::is_ipv6));
    assert_eq!(counters.get(Counter::PerfCopied), sent as u64, "{counters}");
    assert_eq!(counters.get(Counter::PerfFailed), 0, "{counters}");
    assert_eq!(counters.get(Counter::Redirected), 0, "{counters}");
    assert!(counters.is_consistent(), "{counters}");
    for stats in &stats {
        assert_eq!(stats.discarded() + stats.lost_samples, 0, "{stats:?}");
    }
    let delivered: u64 = stats.iter().map(|s| s.delivered).sum();
    assert_eq!(delivered, sent as u64);
    assert!(!kernel_socket_got, "perf mode drops what it copied");
}

/// IPv4 and IPv6 flows, each datagram naming its sender. Returns how many were sent.
fn send() -> usize {
    let mut sent = 0;
    for flow in 0..FLOWS {
        let (socket, target) = if flow % 2 == 0 {
            (
                UdpSocket::bind("0.0.0.0:0").unwrap(),
                SocketAddr::from((COLLECTOR_V4, PORT)),
            )
        } else {
            (
                UdpSocket::bind("[::]:0").unwrap(),
                SocketAddr::from((COLLECTOR_V6, PORT)),
            )
        };
        socket.connect(target).unwrap();
        let from = socket.local_addr().unwrap();
        for n in 0..DATAGRAMS_PER_FLOW {
            socket.send(format!("{from}/{n}").as_bytes()).unwrap();
            sent += 1;
        }
    }
    sent
}

/// Perf mode with no perf buffer open: every copy fails, the program passes the frames to the
/// kernel (the collector's slow-path sockets) and counts them as `perf_failed`; nothing is lost.
#[test]
fn perf_mode_without_reader_passes_and_counts() {
    if !privilege::require("perf_mode_without_reader_passes_and_counts") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let peer_ns = pair.peer_ns.clone();
    let iface = pair.collector_if.clone();
    let (counters, received) = pair
        .in_collector(move || {
            let config = SteerConfig {
                ports: vec![PORT],
                allow: Vec::new(),
                mode: SteerMode::Perf,
                log_debug: false,
            };
            let program = SteerProgram::attach(&iface, AttachMode::Skb, &config).expect("attach");
            let socket = UdpSocket::bind((COLLECTOR_V4, PORT)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            NetnsPair::run_in(&peer_ns, || {
                let v4 = UdpSocket::bind("0.0.0.0:0").unwrap();
                for _ in 0..5 {
                    v4.send_to(b"netflow", (COLLECTOR_V4, PORT)).unwrap();
                }
            })
            .expect("send");
            let mut buf = [0u8; 16];
            let received = (0..5)
                .filter(|_| socket.recv(&mut buf).is_ok_and(|n| n == 7))
                .count();
            (program.counters().expect("counters"), received)
        })
        .expect("collector namespace");
    assert_eq!(received, 5);
    assert_eq!(counters.get(Counter::PerfFailed), 5, "{counters}");
    assert_eq!(counters.get(Counter::PerfCopied), 0, "{counters}");
    assert!(counters.is_consistent(), "{counters}");
}
