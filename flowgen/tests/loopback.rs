//! Sending over loopback: the manifest counts exactly the datagrams a UDP socket received, those
//! datagrams decode into exactly the records the manifest regenerates, and the rate is honoured.

mod common;

use collector::decode::{Collected, DatagramMeta, Decoder};
use flowgen::manifest::{Manifest, Params};
use flowgen::model::Profile;
use flowgen::send::{ProgressMode, SendConfig, run};
use flowgen::verify::{VerifyConfig, verify_records};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A receive buffer large enough for a whole test run (SO_RCVBUFFORCE as root, else SO_RCVBUF up to
/// the system's limit), so that a slow test machine does not drop datagrams.
fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd as _;
    let bytes: libc::c_int = 32 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a valid fd with a pointer to a c_int.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Receive until the socket has been idle for 500 ms.
fn receive(socket: UdpSocket) -> Vec<(SocketAddr, Vec<u8>)> {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        out.push((from, buf[..n].to_vec()));
    }
    out
}

fn send(
    profile: Profile,
    exporters: u32,
    threads: usize,
    count: u64,
    rate: Option<f64>,
    v6: bool,
) -> (Manifest, Vec<(SocketAddr, Vec<u8>)>, Duration) {
    send_with(
        profile,
        exporters,
        threads,
        Some(count),
        None,
        rate,
        v6,
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn send_with(
    profile: Profile,
    exporters: u32,
    threads: usize,
    count: Option<u64>,
    duration: Option<Duration>,
    rate: Option<f64>,
    v6: bool,
    restart_every: Option<Duration>,
) -> (Manifest, Vec<(SocketAddr, Vec<u8>)>, Duration) {
    let receiver =
        UdpSocket::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).expect("bind receiver");
    grow_receive_buffer(&receiver);
    let destination = receiver.local_addr().expect("addr");
    let rx = std::thread::spawn(move || receive(receiver));
    let ip = destination.ip();
    let config = SendConfig {
        destination,
        sources: (0..exporters).map(|_| SocketAddr::new(ip, 0)).collect(),
        params: Params {
            gap_every: 11,
            ..common::params(profile, 0)
        },
        rate,
        duration,
        count,
        threads,
        batch: 16,
        restart_every,
        progress: ProgressMode::None,
        send_buffer: None,
    };
    let started = Instant::now();
    let manifest = run(&config, Arc::new(AtomicBool::new(false))).expect("send");
    let elapsed = started.elapsed();
    (manifest, rx.join().expect("receiver"), elapsed)
}

#[test]
fn manifest_counts_equal_datagrams_received_and_records_verify() {
    for (profile, v6) in [
        (Profile::OvsIpfix, false),
        (Profile::OvsNetflow, false),
        (Profile::OvsSflow, true),
        (Profile::NetflowV9, true),
    ] {
        let (manifest, got, _) = send(profile, 5, 2, 300, Some(5_000.0), v6);
        let t = manifest.totals;
        assert_eq!(t.data_datagrams, 300, "{profile}");
        assert_eq!(t.unsent, 0);
        assert_eq!(
            got.len() as u64,
            t.datagrams,
            "{profile}: received = manifest datagrams"
        );
        assert_eq!(
            got.iter().map(|(_, d)| d.len() as u64).sum::<u64>(),
            t.bytes
        );
        for e in &manifest.exporters {
            let from = got.iter().filter(|(a, _)| Some(*a) == e.source).count() as u64;
            assert_eq!(from, e.datagrams, "{profile}: exporter {}", e.index);
            assert_eq!(e.data_datagrams, 60);
        }
        assert_eq!(t.gaps, 5 * (60 / 11));
        // Decode what arrived, as a collector would, and verify it against the manifest.
        let mut dec = Decoder::new();
        let mut sink = Collected::default();
        for (from, d) in &got {
            let meta = DatagramMeta {
                exporter: *from,
                received_ns: flowgen::send::unix_now_ns(),
            };
            dec.decode(&meta, d, &mut sink).expect("decode");
        }
        assert_eq!(sink.flows.len() as u64, t.records);
        let report = verify_records(&manifest, &sink.flows, &VerifyConfig::default());
        assert!(report.ok(), "{profile}: {}", report.summary());
        assert_eq!(report.matched, t.records);
    }
}

#[test]
fn the_rate_is_honoured() {
    // 200 datagrams at 1000/s take about 0.2 s (the bucket starts empty).
    let (manifest, got, elapsed) = send(Profile::OvsNetflow, 4, 1, 200, Some(1000.0), false);
    assert_eq!(got.len() as u64, manifest.totals.datagrams);
    assert!(elapsed >= Duration::from_millis(180), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The CPU the run used is recorded (it is unset, 0, when not measured).
    assert!(manifest.cpu_secs > 0.0, "{}", manifest.cpu_secs);
}

#[test]
fn restarts_resend_templates_and_the_records_still_verify() {
    // 0.7 s with a restart every 0.2 s: three restarts, each a burst of the 121 OVS templates.
    let (manifest, got, _) = send_with(
        Profile::OvsIpfix,
        3,
        1,
        None,
        Some(Duration::from_millis(700)),
        Some(600.0),
        false,
        Some(Duration::from_millis(200)),
    );
    assert_eq!(got.len() as u64, manifest.totals.datagrams);
    for e in &manifest.exporters {
        let restarts = e.restarts() as u64;
        assert!((2..=4).contains(&restarts), "{restarts} restarts");
        // 121 templates in messages of 6: 21 template datagrams per burst.
        assert_eq!(e.template_datagrams, 21 * (restarts + 1));
        assert_eq!(e.sequence_ranges.len() as u64, restarts + 1);
    }
    let mut dec = Decoder::new();
    let mut sink = Collected::default();
    for (from, d) in &got {
        let meta = DatagramMeta {
            exporter: *from,
            received_ns: flowgen::send::unix_now_ns(),
        };
        dec.decode(&meta, d, &mut sink).expect("decode");
    }
    let report = verify_records(&manifest, &sink.flows, &VerifyConfig::default());
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.matched, manifest.totals.records);
}
