//! End to end, unprivileged: the `collector` binary in UDP mode on loopback ports, exporters
//! sending NetFlow v5, NetFlow v9, IPFIX (the OVS template family) and sFlow (the OVS profile) from
//! their own addresses (127.0.0.2..), the rings read back with `collector read`'s loop.
//!
//! Checks: the rings hold exactly the records the same datagrams decode to (every field; only the
//! receive time differs), nothing more; `/metrics` agrees with what was sent; the sequence loss of
//! each exporter equals what the sender skipped on purpose, and an exporter restart is counted as a
//! restart, not loss; flags win over the config file; SIGTERM drains and flushes everything.

mod exports;
mod loopback;
mod readback;

use collector::decode::ipfix;
use collector::decode::sflow::emit::OvsExporter;
use collector::decode::{Collected, DatagramMeta, Decoder};
use collector::record::FlowRecord;
use exports::{EXPORT_SECS, flow, v5_datagram, v9_packet};
use loopback::{free_tcp_addr, free_udp_port, get_metrics};
use readback::{counter_bytes, flow_bytes, read_back};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `collector run` child process, killed on drop; its scratch directory removed.
struct Collector {
    child: Child,
    dir: PathBuf,
    metrics: SocketAddr,
}

impl Collector {
    /// Start `collector run` with the arguments `args` builds from the scratch directory; rings go
    /// to `<scratch>/rings`.
    fn start(
        name: &str,
        args: impl FnOnce(&Path) -> Vec<String>,
        metrics: SocketAddr,
    ) -> Collector {
        let dir = std::env::temp_dir().join(format!("collector-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_collector"))
            .arg("run")
            .args(args(&dir))
            .arg("--ring-dir")
            .arg(dir.join("rings"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut collector = Collector {
            child,
            dir,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while scrape(metrics).is_none() {
            if let Ok(Some(status)) = collector.child.try_wait() {
                panic!("collector exited {status}:\n{}", collector.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no /metrics:\n{}",
                collector.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        collector
    }

    fn rings(&self) -> PathBuf {
        self.dir.join("rings")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.stderr());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The metrics page, when the collector answers it with 200.
fn scrape(addr: SocketAddr) -> Option<String> {
    get_metrics(addr).filter(|text| text.starts_with("HTTP/1.1 200"))
}

fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Wait until every `(series, value)` shows in /metrics.
fn wait_metrics(collector: &Collector, expected: &[(String, u64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(collector.metrics).unwrap_or_default();
        if expected.iter().all(|(s, v)| value(&text, s) == Some(*v)) {
            return text;
        }
        if Instant::now() > deadline {
            let got: Vec<_> = expected
                .iter()
                .map(|(s, v)| format!("{s}: want {v}, got {:?}", value(&text, s)))
                .collect();
            panic!(
                "metrics disagree:\n{}\n{}",
                got.join("\n"),
                collector.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One exporter: its socket (bound to its own loopback address) and what it sent.
struct Exporter {
    socket: UdpSocket,
    sent: Vec<Vec<u8>>,
}

impl Exporter {
    fn new(last_octet: u8) -> Exporter {
        Exporter {
            socket: UdpSocket::bind((Ipv4Addr::new(127, 0, 0, last_octet), 0)).unwrap(),
            sent: Vec::new(),
        }
    }
    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }
    fn send(&mut self, datagram: Vec<u8>, to: u16) {
        self.socket.send_to(&datagram, ("127.0.0.1", to)).unwrap();
        self.sent.push(datagram);
        // Loopback delivers synchronously, but keep well under any receive buffer.
        if self.sent.len().is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn ipfix_message(seq: u32, with_templates: bool, first: u32, n: u32) -> Vec<u8> {
    let records: Vec<FlowRecord> = (first..first + n)
        .map(|i| flow(i, if i % 2 == 0 { 6 } else { 17 }))
        .collect();
    let ctx = collector::decode::ie::EncodeContext {
        clock: collector::decode::time::ExportClock {
            export_ns: u64::from(EXPORT_SECS) * 1_000_000_000,
            uptime_ms: None,
        },
        init_ms: 0,
        interface_name: "ovn-k8s-mp0",
    };
    ipfix::ovs::message(EXPORT_SECS, seq, with_templates, &records, &ctx)
}

#[test]
fn records_metrics_loss_and_restarts_end_to_end() {
    let ports = [free_udp_port(), free_udp_port()];
    let metrics = free_tcp_addr();
    let file_metrics = free_tcp_addr();
    let scratch = std::env::temp_dir().join(format!("collector-e2e-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let config = scratch.join("collector.toml");
    // The file names a metrics address the flag overrides, and the listen addresses.
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nmetrics = \"{file_metrics}\"\nworkers = 2\nring_size = 16384\nsummary_interval = 1\n",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut collector = Collector::start(
        "records",
        |_| {
            vec![
                "--config".into(),
                config_arg,
                "--metrics".into(),
                metrics.to_string(),
            ]
        },
        metrics,
    );
    let ring_dir = collector.rings();
    assert!(
        scrape(file_metrics).is_none(),
        "the --metrics flag must win"
    );

    // NetFlow v5 from 127.0.0.2: 10 records per datagram, the 4th datagram skipped → 10 lost flows.
    let mut v5 = Exporter::new(2);
    for i in 0..20u32 {
        let d = v5_datagram(i * 10, 100_000 + i * 1000, 10, i as u8);
        if i == 3 {
            continue;
        }
        v5.send(d, ports[0]);
    }
    // NetFlow v9 from 127.0.0.3: packets 5 and 6 skipped → 2 lost packets.
    let mut v9 = Exporter::new(3);
    for seq in 0..15u32 {
        if seq == 5 || seq == 6 {
            continue;
        }
        v9.send(v9_packet(seq, seq % 5 == 0, seq * 4), ports[1]);
    }
    // IPFIX (OVS templates) from 127.0.0.4: 6 records a message, one message skipped → 6 lost.
    let mut ipfix_exporter = Exporter::new(4);
    let mut seq = 0;
    for i in 0..12u32 {
        let m = ipfix_message(seq, i == 0, i * 6, 6);
        seq += 6;
        if i == 7 {
            continue;
        }
        ipfix_exporter.send(m, ports[0]);
    }
    // sFlow (OVS profile) from 127.0.0.5 with that agent address: 3 datagrams skipped.
    let mut sflow = Exporter::new(5);
    let mut ovs = OvsExporter::new(Ipv4Addr::new(127, 0, 0, 5), 7);
    for i in 0..12 {
        let mut buf = Vec::new();
        ovs.flow_datagram(&mut buf);
        if (4..7).contains(&i) {
            continue;
        }
        sflow.send(buf, ports[1]);
    }
    for d in ovs.counter_datagrams() {
        sflow.send(d, ports[1]);
    }
    // A v5 exporter at 127.0.0.6 that restarts: sequence and uptime start over → restart, no loss.
    let mut restarting = Exporter::new(6);
    restarting.send(v5_datagram(7_000_000, 90_000_000, 5, 1), ports[0]);
    restarting.send(v5_datagram(7_000_005, 90_001_000, 5, 2), ports[0]);
    restarting.send(v5_datagram(0, 1_000, 5, 3), ports[0]);
    restarting.send(v5_datagram(5, 2_000, 5, 4), ports[0]);

    // What the same datagrams decode to, in process.
    let mut reference = Collected::default();
    let mut decoder = Decoder::new();
    let exporters = [&v5, &v9, &ipfix_exporter, &sflow, &restarting];
    for e in exporters {
        for d in &e.sent {
            let meta = DatagramMeta {
                exporter: e.addr(),
                received_ns: 1,
            };
            decoder.decode(&meta, d, &mut reference).unwrap();
        }
    }
    assert!(reference.flows.len() > 300, "{}", reference.flows.len());
    assert!(!reference.counters.is_empty());
    let datagrams: u64 = exporters.iter().map(|e| e.sent.len() as u64).sum();
    let records = (reference.flows.len() + reference.counters.len()) as u64;

    let series = |name: &str, exporter: &str| format!("{name}{{exporter=\"{exporter}\"}}");
    let mut expected = vec![
        (series("collector_exporter_sequence_lost", "127.0.0.2"), 10),
        (series("collector_exporter_sequence_lost", "127.0.0.3"), 2),
        (series("collector_exporter_sequence_lost", "127.0.0.4"), 6),
        (series("collector_exporter_sequence_lost", "127.0.0.5"), 3),
        (series("collector_exporter_sequence_lost", "127.0.0.6"), 0),
        (series("collector_exporter_restarts_total", "127.0.0.6"), 1),
        (series("collector_exporter_restarts_total", "127.0.0.2"), 0),
        (
            "collector_decode_errors_total{reason=\"template_missing\"}".into(),
            0,
        ),
        ("collector_exporters".into(), 5),
    ];
    for e in exporters {
        expected.push((
            series(
                "collector_exporter_datagrams_total",
                &e.addr().ip().to_string(),
            ),
            e.sent.len() as u64,
        ));
    }
    let text = wait_metrics(&collector, &expected);
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(sum("collector_datagrams_received_total{"), datagrams);
    assert_eq!(sum("collector_records_decoded_total{"), records);
    assert_eq!(sum("collector_decode_errors_total{"), 0);
    assert_eq!(sum("collector_socket_drops_total{"), 0);
    assert!(
        sum("collector_templates{") >= 121,
        "OVS templates + v9 template:\n{text}"
    );

    // `collector stats` reads the same endpoint.
    let stats = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["stats", "--metrics", &metrics.to_string()])
        .output()
        .unwrap();
    let stats_out = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success(), "{stats_out}");
    let row = stats_out
        .lines()
        .find(|l| l.starts_with("127.0.0.3 "))
        .unwrap_or_else(|| panic!("no v9 exporter row:\n{stats_out}"));
    // 2 lost of 15 packets.
    assert_eq!(row.split_whitespace().nth(3), Some("13.33"), "{stats_out}");

    collector.terminate();
    assert!(
        collector.stderr().contains("final:"),
        "{}",
        collector.stderr()
    );
    let read = read_back(&ring_dir);
    assert_eq!(read.flows.len(), reference.flows.len());
    assert_eq!(flow_bytes(&read.flows), flow_bytes(&reference.flows));
    assert_eq!(
        counter_bytes(&read.counters),
        counter_bytes(&reference.counters)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn sigterm_right_after_sending_loses_nothing() {
    let port = free_udp_port();
    let metrics = free_tcp_addr();
    let listen = format!("127.0.0.1:{port}");
    let mut collector = Collector::start(
        "term",
        |_| {
            [
                "--listen",
                &listen,
                "--workers",
                "2",
                "--ring-size",
                "32768",
                "--metrics",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([metrics.to_string()])
            .collect()
        },
        metrics,
    );
    let ring_dir = collector.rings();
    let mut exporter = Exporter::new(7);
    for i in 0..800u32 {
        exporter.send(v5_datagram(i * 30, 1_000_000 + i, 30, i as u8), port);
    }
    // No waiting for the collector: the datagrams sit in its socket buffers when SIGTERM lands.
    collector.terminate();
    let read = read_back(&ring_dir);
    assert_eq!(read.flows.len(), 800 * 30, "{}", collector.stderr());
    let mut seqs: Vec<u32> = read.flows.iter().map(|r| r.sequence_num).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 800);
}

/// Wait until the collector's log contains `needle`.
fn wait_log(collector: &Collector, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !collector.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            collector.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_sampling_rates_and_a_bad_file_keeps_the_old_ones() {
    let port = free_udp_port();
    let metrics = free_tcp_addr();
    let scratch = std::env::temp_dir().join(format!("collector-e2e-hupcfg-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let config = scratch.join("collector.toml");
    let write_config = |rate: u32| {
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:{port}\"]\nworkers = 1\nring_size = 4096\n[sampling_rate]\n\"127.0.0.8/32\" = {rate}\n"
            ),
        )
        .unwrap();
    };
    write_config(400);
    let config_arg = config.display().to_string();
    let mut collector = Collector::start(
        "hup",
        |_| {
            vec![
                "--config".into(),
                config_arg,
                "--metrics".into(),
                metrics.to_string(),
            ]
        },
        metrics,
    );
    let mut exporter = Exporter::new(8);
    let sent = |collector: &Collector, n: u64| {
        wait_metrics(
            collector,
            &[(
                "collector_exporter_datagrams_total{exporter=\"127.0.0.8\"}".into(),
                n,
            )],
        );
    };
    exporter.send(v5_datagram(0, 10_000, 5, 1), port);
    sent(&collector, 1);
    write_config(1000);
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(collector.child.id() as i32, libc::SIGHUP) },
        0
    );
    wait_log(&collector, "sampling rates reloaded");
    // Workers pick the command up between batches (at most one poll timeout later).
    std::thread::sleep(Duration::from_millis(300));
    exporter.send(v5_datagram(5, 11_000, 5, 2), port);
    sent(&collector, 2);
    std::fs::write(&config, "[sampling_rate]\n\"127.0.0.8/32\" = 0\n").unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(collector.child.id() as i32, libc::SIGHUP) },
        0
    );
    wait_log(&collector, "reload failed");
    std::thread::sleep(Duration::from_millis(300));
    exporter.send(v5_datagram(10, 12_000, 5, 3), port);
    sent(&collector, 3);
    collector.terminate();
    let read = read_back(&collector.rings());
    let mut rates: Vec<(u32, u32)> = read
        .flows
        .iter()
        .map(|r| (r.sequence_num, r.sampling_rate))
        .collect();
    rates.sort_unstable();
    rates.dedup();
    assert_eq!(rates, vec![(0, 400), (5, 1000), (10, 1000)]);
    let _ = std::fs::remove_dir_all(&scratch);
}
