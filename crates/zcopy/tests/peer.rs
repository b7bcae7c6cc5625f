//! Peer classes from the kernel's routes, in real network namespaces.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

use zcopy::{LocalReason, PeerClass, PeerClassifier};
use zcopy_netns::VethPair;

#[test]
fn a_peer_across_a_veth_is_local_by_its_virtual_device() {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    let (addr_a, addr_b) = (pair.addr_a, pair.addr_b);
    let (across, own) = pair
        .a
        .run(move || {
            let mut c = PeerClassifier::new();
            (c.classify_ip(addr_b.into()), c.classify_ip(addr_a.into()))
        })
        .unwrap();
    assert_eq!(
        across,
        PeerClass::Local(LocalReason::VirtualDevice("veth0".into()))
    );
    assert!(across.is_local());
    assert_eq!(own, PeerClass::Local(LocalReason::LocalAddress));
}

#[test]
fn an_accepted_connection_from_the_other_namespace_is_classified_from_its_socket() {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    let addr_a = pair.addr_a;
    let listener = pair
        .a
        .run(move || TcpListener::bind((addr_a, 0)))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = pair
        .b
        .run(move || TcpStream::connect((addr_a, port)))
        .unwrap()
        .unwrap();
    let (server_side, _) = listener.accept().unwrap();
    // The lookup runs in the namespace of the thread that asks: the server's.
    let class = pair
        .a
        .run(|| PeerClassifier::new().classify(server_side.as_fd()))
        .unwrap();
    assert_eq!(
        class,
        PeerClass::Local(LocalReason::VirtualDevice("veth0".into()))
    );
}

#[test]
fn a_namespace_without_routes_gives_unknown_which_is_local() {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    // No default route in the namespace: 203.0.113.9 is unreachable there.
    let class = pair
        .a
        .run(|| PeerClassifier::new().classify_ip("203.0.113.9".parse().unwrap()))
        .unwrap();
    assert!(
        matches!(class, PeerClass::Local(LocalReason::Unknown(_))),
        "{class:?}"
    );
}
