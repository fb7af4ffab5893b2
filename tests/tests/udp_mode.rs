//! Privileged: `collector run` in UDP mode (no XDP) as a service runs it: `--user` drops root
//! once the sockets are bound, keeping no capability, and `--allow` discards and counts
//! datagrams from other sources. The collector runs in a network namespace of its own, so its
//! default metrics port is its own.

use std::net::UdpSocket;
use std::time::Duration;

use collector_tests::{
    collector::CollectorProcess,
    netns::{COLLECTOR_V4, NetnsPair, PEER_V4},
    poll, privilege,
};

const PORT: u16 = 2055;
const TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn user_and_allow_list_hold_in_udp_mode() {
    if !privilege::require("user_and_allow_list_hold_in_udp_mode") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let listen = format!("0.0.0.0:{PORT}");
    let allow = PEER_V4.to_string();
    let mut collector = CollectorProcess::start_as_user(
        "nobody",
        Some(&pair.collector_ns),
        &[
            "run",
            "--listen",
            &listen,
            "--workers",
            "1",
            "--allow",
            &allow,
        ],
        "info",
    )
    .expect("collector starts");
    // Nobody, with no capability left.
    let cap_eff = collector.wait_dropped_to(65534, TIMEOUT).unwrap();
    assert_eq!(cap_eff, 0);

    // Three from the allowed peer; five from the collector's own loopback, which is not.
    pair.in_peer(|| {
        let socket = UdpSocket::bind((PEER_V4, 0)).unwrap();
        for _ in 0..3 {
            socket.send_to(&[0, 7, 0, 0], (COLLECTOR_V4, PORT)).unwrap();
        }
    })
    .unwrap();
    pair.in_collector(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            socket.send_to(&[0, 7, 0, 0], ("127.0.0.1", PORT)).unwrap();
        }
    })
    .unwrap();
    let counted = poll(TIMEOUT, || {
        let received = collector.metric("collector_datagrams_received_total{worker=\"0\"}")?;
        let refused = collector.metric("collector_datagrams_not_allowed_total{worker=\"0\"}")?;
        (received + refused >= 8).then_some((received, refused))
    });
    assert_eq!(
        counted,
        Some((3, 5)),
        "{}",
        collector.metrics().unwrap_or_default()
    );
    collector.signal(libc::SIGTERM).unwrap();
    let status = collector.wait_exit(TIMEOUT).expect("exits");
    assert!(status.success(), "{status:?}: {}", collector.stderr());
}
