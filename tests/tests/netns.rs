//! Privileged: the namespace helper itself — traffic flows across the veth, and the
//! namespaces are removed when the guard drops, including while a test panics.

use std::net::UdpSocket;

use collector_tests::{
    netns::{COLLECTOR_V4, NetnsPair, netns_exists},
    privilege,
};

#[test]
fn udp_crosses_the_veth_between_the_namespaces() {
    if !privilege::require("udp_crosses_the_veth_between_the_namespaces") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let receiver = pair
        .in_collector(|| UdpSocket::bind((COLLECTOR_V4, 0)).unwrap())
        .unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let target = receiver.local_addr().unwrap();
    pair.in_peer(|| {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .send_to(b"hello", target)
            .unwrap()
    })
    .unwrap();
    let mut buf = [0u8; 16];
    let (len, from) = receiver.recv_from(&mut buf).expect("datagram arrives");
    assert_eq!(&buf[..len], b"hello");
    assert_eq!(from.ip().to_string(), "192.0.2.2");
}

#[test]
fn namespaces_are_removed_on_drop_and_on_panic() {
    if !privilege::require("namespaces_are_removed_on_drop_and_on_panic") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let names = [pair.collector_ns.clone(), pair.peer_ns.clone()];
    assert!(names.iter().all(|ns| netns_exists(ns)));
    drop(pair);
    assert!(names.iter().all(|ns| !netns_exists(ns)), "{names:?} left");

    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let pair = NetnsPair::create().expect("namespaces");
        tx.send([pair.collector_ns.clone(), pair.peer_ns.clone()])
            .unwrap();
        panic!("a failing test");
    });
    assert!(result.is_err());
    let names = rx.recv().unwrap();
    assert!(names.iter().all(|ns| !netns_exists(ns)), "{names:?} left");
}
