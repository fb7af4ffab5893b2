//! The UDP-mode pipeline in-process: real sockets on loopback, real workers and control plane,
//! in-memory sinks. Checks that every datagram sent is accounted for (per worker, per exporter,
//! per error reason), that `/metrics` agrees, and that stopping drains what the sockets hold.

mod loopback;

use collector::config::{FlagConfig, Settings};
use collector::decode::Collected;
use collector::decode::Decoder;
use collector::pipeline::lanes::LanesOutcome;
use collector::pipeline::udp::run_with_sinks;
use loopback::{free_tcp_addr, free_udp_port, get_metrics as scrape};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn settings(ports: &[u16], workers: usize, metrics: SocketAddr) -> (Settings, FlagConfig) {
    let flags = FlagConfig {
        listen: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        workers: Some(workers),
        metrics: Some(metrics.to_string()),
        rcvbuf: Some("4MiB".into()),
        ..Default::default()
    };
    (Settings::resolve(&flags).unwrap(), flags)
}

/// The UDP collector running in a thread, with in-memory sinks, its metrics endpoint up.
struct Running {
    metrics: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<LanesOutcome<Decoder, Collected>>>,
}

impl Running {
    fn start(ports: &[u16], workers: usize) -> Running {
        let metrics = free_tcp_addr();
        let (settings, flags) = settings(ports, workers, metrics);
        let stop = Arc::new(AtomicBool::new(false));
        let run_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            run_with_sinks(&settings, &flags, run_stop, |_| Ok(Collected::default()))
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while scrape(metrics).is_none() {
            assert!(Instant::now() < deadline, "metrics endpoint never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
            metrics,
            stop,
            thread,
        }
    }

    /// Stop it (the sockets are drained first) and return what it did.
    fn stop(self) -> LanesOutcome<Decoder, Collected> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }
}

#[test]
fn every_datagram_is_accounted_per_worker_exporter_and_reason_and_drained_on_stop() {
    let ports = [free_udp_port(), free_udp_port()];
    let collector = Running::start(&ports, 2);
    // Six exporter sockets; datagrams no decoder accepts (version 7) and too-short ones.
    let exporters: Vec<UdpSocket> = (0..6)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut sent_per_exporter = BTreeMap::new();
    let mut unknown = 0u64;
    let mut short = 0u64;
    for round in 0..50u32 {
        for (i, socket) in exporters.iter().enumerate() {
            let port = ports[i % ports.len()];
            let datagram: &[u8] = if (round + i as u32).is_multiple_of(5) {
                short += 1;
                &[0, 7]
            } else {
                unknown += 1;
                &[0, 7, 0, 1, 0, 0, 0, 0]
            };
            socket.send_to(datagram, ("127.0.0.1", port)).unwrap();
            *sent_per_exporter
                .entry(socket.local_addr().unwrap())
                .or_insert(0u64) += 1;
        }
    }
    let total = unknown + short;
    // Stop right away: the workers must drain what the sockets hold before returning.
    let outcome = collector.stop();
    assert_eq!(outcome.totals.datagrams, total);
    assert_eq!(outcome.totals.errors, total);
    assert_eq!(outcome.totals.kernel_drops, 0);
    assert_eq!(
        outcome.totals.exporters, 1,
        "one exporter address: 127.0.0.1"
    );
    assert_eq!(outcome.lanes.len(), 2);
    let unknown_counted: u64 = outcome
        .lanes
        .iter()
        .map(|(d, _)| d.stats.errors[collector::decode::ErrorReason::UnknownVersion.index()])
        .sum();
    let short_counted: u64 = outcome
        .lanes
        .iter()
        .map(|(d, _)| d.stats.errors[collector::decode::ErrorReason::TooShort.index()])
        .sum();
    assert_eq!((unknown_counted, short_counted), (unknown, short));
}

#[test]
fn metrics_agree_with_what_was_sent_while_running() {
    let port = free_udp_port();
    let collector = Running::start(&[port], 1);
    let metrics = collector.metrics;
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..40 {
        a.send_to(&[0, 7, 0, 0], ("127.0.0.1", port)).unwrap();
    }
    let expected = 40;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(metrics).unwrap();
        // The worker's counters are published per batch; the per-exporter series appear once the
        // control plane has taken the worker's new-exporter event, a moment later.
        let settled = [
            "collector_datagrams_received_total{worker=\"0\"}",
            "collector_exporter_datagrams_total{exporter=\"127.0.0.1\"}",
            "collector_exporter_decode_errors_total{exporter=\"127.0.0.1\"}",
        ]
        .iter()
        .all(|series| value(&text, series) == Some(expected));
        if settled {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never reached {expected}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(
            &text,
            "collector_decode_errors_total{reason=\"unknown_version\"}"
        ),
        Some(expected)
    );
    assert_eq!(
        value(
            &text,
            "collector_exporter_datagrams_total{exporter=\"127.0.0.1\"}"
        ),
        Some(expected)
    );
    assert_eq!(
        value(
            &text,
            "collector_exporter_decode_errors_total{exporter=\"127.0.0.1\"}"
        ),
        Some(expected)
    );
    assert_eq!(value(&text, "collector_exporters"), Some(1));
    assert_eq!(
        value(&text, "collector_socket_drops_total{worker=\"0\"}"),
        Some(0)
    );
    let outcome = collector.stop();
    assert_eq!(outcome.totals.datagrams, expected);
}

#[test]
fn sflow_counts_reach_the_metrics() {
    // Open vSwitch sFlow datagrams: the worker's sFlow counts (samples by format) are what a
    // decoder of its own makes of the same datagrams.
    let datagrams = collector::decode::sflow::emit::ovs_sample_datagrams();
    let mut own = collector::decode::sflow::SflowDecoder::new();
    let meta = collector::decode::DatagramMeta {
        exporter: "127.0.0.1:6343".parse().unwrap(),
        received_ns: 0,
    };
    for d in &datagrams {
        own.decode(&meta, d, &mut Collected::default()).unwrap();
    }
    let [flow, counter, ..] = own.stats().samples_by_type;
    assert!(flow > 0 && counter > 0);
    let port = free_udp_port();
    let collector = Running::start(&[port], 1);
    let metrics = collector.metrics;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        sender.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    let series = [
        (
            "collector_sflow_samples_total{worker=\"0\",format=\"flow\"}",
            flow,
        ),
        (
            "collector_sflow_samples_total{worker=\"0\",format=\"counter\"}",
            counter,
        ),
        (
            "collector_sflow_skipped_total{worker=\"0\",what=\"sample\"}",
            0,
        ),
        ("collector_sflow_agent_drops_total{worker=\"0\"}", 0),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(metrics).unwrap();
        if series.iter().all(|(s, n)| value(&text, s) == Some(*n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sFlow metrics never reached {series:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    collector.stop();
}
