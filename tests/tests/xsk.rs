//! Privileged: AF_XDP sockets ([`collector::source::xsk::XskSource`]), one per RX queue of a
//! 4-queue veth, fed by the `steer` program through its XSKMAP, in driver and SKB mode. UDP
//! datagrams from many flows and three exporter addresses in the peer namespace must all arrive,
//! with the right exporter address and port, spread over every queue, and nothing else.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use collector::{
    pipeline::Source,
    source::{
        rx_queues::{queue_cpus, rx_queue_count},
        xsk::{XskConfig, XskSource, ZeroCopy},
    },
    xdp::{AttachMode, SteerConfig, SteerMode, SteerProgram},
};
use collector_common::Counter;
use collector_tests::{
    netns::{COLLECTOR_V4, NetnsPair, PEER_V4, ip},
    privilege,
};

const PORT: u16 = 2055;
const QUEUES: u32 = 4;
const FLOWS_PER_ADDR: usize = 24;
const DATAGRAMS_PER_FLOW: usize = 4;

#[test]
fn xsk_receives_every_datagram_on_every_queue_driver_mode() {
    if !privilege::require("xsk_receives_every_datagram_on_every_queue_driver_mode") {
        return;
    }
    exercise(AttachMode::Driver);
}

#[test]
fn xsk_receives_every_datagram_on_every_queue_skb_mode() {
    if !privilege::require("xsk_receives_every_datagram_on_every_queue_skb_mode") {
        return;
    }
    exercise(AttachMode::Skb);
}

fn exercise(mode: AttachMode) {
    let pair = NetnsPair::create_with_queues(QUEUES).expect("namespaces");
    let extra = [Ipv4Addr::new(192, 0, 2, 3), Ipv4Addr::new(192, 0, 2, 4)];
    for addr in extra {
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
    let exporters = [PEER_V4, extra[0], extra[1]];
    let peer_ns = pair.peer_ns.clone();
    let iface = pair.collector_if.clone();
    let (received, per_queue, counters, stats) = pair
        .in_collector(move || {
            let mut program = steer_to_afxdp(&iface, mode);
            // veth queues have no IRQ: every queue is placed round-robin.
            assert_eq!(rx_queue_count(&iface).unwrap(), QUEUES);
            let placed = queue_cpus(&iface, QUEUES, &[0, 1]).unwrap();
            assert!(placed.iter().all(|p| !p.from_irq), "{placed:?}");
            assert_eq!(
                placed.iter().map(|p| p.cpu).collect::<Vec<_>>(),
                [0, 1, 0, 1]
            );
            let xsk_config = XskConfig {
                zero_copy: ZeroCopy::Off,
                ..XskConfig::default()
            };
            let mut sources: Vec<XskSource> = (0..QUEUES)
                .map(|queue| XskSource::open(&iface, queue, &[PORT], xsk_config).expect("xsk"))
                .collect();
            for source in &sources {
                assert!(!source.is_zero_copy(), "veth has no zero-copy AF_XDP");
                program
                    .bind_socket(source.queue(), source.fd())
                    .expect("bind into XSKMAP");
            }
            let sent = NetnsPair::run_in(&peer_ns, || send(&exporters)).expect("send");
            let mut received: BTreeMap<String, SocketAddr> = BTreeMap::new();
            let mut per_queue = vec![0usize; QUEUES as usize];
            let deadline = Instant::now() + Duration::from_secs(10);
            while received.len() < sent && Instant::now() < deadline {
                for source in &mut sources {
                    let queue = source.queue() as usize;
                    // Through the pipeline's Source trait, as a worker calls it.
                    let lane: &mut dyn Source = source;
                    lane.recv_batch(Duration::from_millis(20), &mut |meta, payload| {
                        let text = String::from_utf8_lossy(payload).into_owned();
                        assert!(
                            received.insert(text, meta.exporter).is_none(),
                            "duplicate datagram"
                        );
                        per_queue[queue] += 1;
                    })
                    .expect("recv_batch");
                    assert_eq!(lane.losses().kernel_drops, 0);
                }
            }
            let counters = program.counters().expect("counters");
            let stats: Vec<_> = sources.iter().map(XskSource::stats).collect();
            (received, per_queue, counters, stats)
        })
        .expect("collector namespace");

    let expected = FLOWS_PER_ADDR * DATAGRAMS_PER_FLOW * exporters.len();
    assert_eq!(
        received.len(),
        expected,
        "per queue {per_queue:?}, {stats:?}"
    );
    for (payload, exporter) in &received {
        // The payload names the sender: "<addr>:<port>/<n>".
        let (from, _) = payload.split_once('/').expect("payload format");
        assert_eq!(from, exporter.to_string(), "exporter of {payload}");
    }
    // Driver mode: veth's NAPI records the RX queue of every frame, so all queues get flows. SKB
    // (generic) mode on veth records it only for part of the traffic (the rest counts as queue
    // 0; one queue stays empty here), so there only a spread over several queues is required.
    let busy = per_queue.iter().filter(|n| **n > 0).count();
    let required = match mode {
        AttachMode::Skb => 2,
        _ => QUEUES as usize,
    };
    assert!(
        busy >= required,
        "{busy} of {QUEUES} queues received datagrams (need {required}): {per_queue:?}"
    );
    assert_eq!(
        counters.get(Counter::Redirected),
        expected as u64,
        "{counters}"
    );
    assert_eq!(counters.get(Counter::PassedNoSocket), 0, "{counters}");
    assert!(counters.is_consistent(), "{counters}");
    for (queue, stats) in stats.iter().enumerate() {
        assert_eq!(stats.delivered, per_queue[queue] as u64, "{stats:?}");
        assert_eq!(stats.losses(), 0, "queue {queue}: {stats:?}");
    }
}

/// From every exporter address, `FLOWS_PER_ADDR` sockets (source ports) each send
/// `DATAGRAMS_PER_FLOW` datagrams naming their sender. Returns how many were sent.
/// The steer program attached to `iface` in `mode`, redirecting PORT to AF_XDP sockets.
fn steer_to_afxdp(iface: &str, mode: AttachMode) -> SteerProgram {
    let config = SteerConfig {
        ports: vec![PORT],
        allow: Vec::new(),
        mode: SteerMode::Afxdp,
        log_debug: false,
    };
    SteerProgram::attach(iface, mode, &config).expect("attach")
}

fn send(exporters: &[Ipv4Addr]) -> usize {
    let mut sent = 0;
    // Every flow's socket stays open until all are sent: a closed one's ephemeral port could be
    // handed out again, and its payloads ("<addr>:<port>/<n>") would repeat.
    let mut sockets = Vec::new();
    for addr in exporters {
        for _ in 0..FLOWS_PER_ADDR {
            let socket = UdpSocket::bind((*addr, 0)).unwrap();
            let from = socket.local_addr().unwrap();
            for n in 0..DATAGRAMS_PER_FLOW {
                socket
                    .send_to(format!("{from}/{n}").as_bytes(), (COLLECTOR_V4, PORT))
                    .unwrap();
                sent += 1;
            }
            sockets.push(socket);
        }
    }
    sent
}

/// A worker that falls behind: 200 datagrams into a 64-frame AF_XDP socket nobody reads. What
/// does not fit is dropped by the kernel and counted (rx_dropped), and the lane source of the
/// worker reports it as loss and publishes it per queue: delivered + dropped = sent.
#[test]
fn a_full_xsk_ring_drops_are_counted_as_loss() {
    use collector::pipeline::{counters::XskQueueCounters, xdp::XdpLaneSource};
    use collector::source::udp::UdpSource;
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    };

    if !privilege::require("a_full_xsk_ring_drops_are_counted_as_loss") {
        return;
    }
    const SENT: usize = 200;
    let pair = NetnsPair::create().expect("namespaces");
    let peer_ns = pair.peer_ns.clone();
    let iface = pair.collector_if.clone();
    let (delivered, losses, published, counters) = pair
        .in_collector(move || {
            let mut program = steer_to_afxdp(&iface, AttachMode::Driver);
            let xsk_config = XskConfig {
                ring_size: 64,
                zero_copy: ZeroCopy::Off,
                ..XskConfig::default()
            };
            let source = XskSource::open(&iface, 0, &[PORT], xsk_config).expect("xsk");
            program
                .bind_socket(0, source.fd())
                .expect("bind into XSKMAP");
            let queue = Arc::new(XskQueueCounters::default());
            let slow = UdpSource::bind(&[SocketAddr::from((COLLECTOR_V4, PORT))], 1 << 20)
                .expect("slow-path socket");
            let mut lane = XdpLaneSource::new(
                vec![(source, Arc::clone(&queue))],
                Vec::new(),
                slow,
                Arc::new(AtomicU64::new(0)),
            );
            NetnsPair::run_in(&peer_ns, || {
                let socket = UdpSocket::bind((PEER_V4, 0)).unwrap();
                for n in 0..SENT {
                    socket
                        .send_to(format!("{n}").as_bytes(), (COLLECTOR_V4, PORT))
                        .unwrap();
                }
            })
            .expect("send");
            std::thread::sleep(Duration::from_millis(200));
            let mut delivered = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let lane: &mut dyn Source = &mut lane;
                let got = lane
                    .recv_batch(Duration::from_millis(50), &mut |_, _| delivered += 1)
                    .expect("recv_batch");
                if got == 0 {
                    break;
                }
            }
            let losses = Source::losses(&lane).kernel_drops;
            let published = (
                queue.datagrams.load(Relaxed),
                queue.rx_dropped.load(Relaxed),
            );
            (
                delivered,
                losses,
                published,
                program.counters().expect("counters"),
            )
        })
        .expect("collector namespace");
    assert_eq!(counters.get(Counter::Redirected), SENT as u64, "{counters}");
    assert!(delivered <= 64, "a 64-frame ring delivered {delivered}");
    assert!(delivered > 0);
    assert_eq!(delivered as u64 + losses, SENT as u64, "losses {losses}");
    assert_eq!(published, (delivered as u64, losses));
}
