//! One client's bytes never reach another. Bodies to a remote peer may leave by
//! reference (splice, io_uring SPLICE, MSG_ZEROCOPY), through engines a worker pools
//! for the next body; a client that aborts mid-body leaves bytes of its file in such
//! an engine (a pipe, a buffer, completions still owed). The next client of that
//! worker must get exactly its own file. There is no NIC here: the peer is in another
//! network namespace behind a veth pair, classified as remote by the test-only
//! switch ([`zcopy::peer::set_test_veth_is_remote`]).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use zcopy::{EngineKind, Preference};
use zcopy_http::driver::IoDriver;
use zcopy_netns::VethPair;

use crate::util::*;

/// The aborting client's file: every byte `S`.
const SECRET: u64 = 8 << 20;
/// The next client's file: the offset pattern.
const PUBLIC: u64 = 3 << 20;
/// Aborted downloads per engine, each followed by a checked one.
const ROUNDS: usize = 3;

/// Asks for the secret file, reads a little of it, waits for the server to fill its
/// pipe and the socket, then resets the connection.
fn abort_mid_body(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /secret.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_response(&mut s, true).expect("a response");
    assert_eq!(head.status, 200);
    let mut some = vec![0u8; 64 << 10];
    s.read_exact(&mut some).unwrap();
    assert!(some.iter().all(|&b| b == b'S'));
    std::thread::sleep(Duration::from_millis(300));
    // SO_LINGER 0: the close is a reset, the server's next send fails.
    rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO)).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
}

/// Downloads the public file and checks every byte.
fn download_public(addr: SocketAddr, what: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /public.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s, false).unwrap_or_else(|| panic!("{what}: no response"));
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.body.len() as u64, PUBLIC, "{what}");
    let leaked = r.body.iter().take(1 << 20).filter(|&&b| b == b'S').count();
    assert_pattern(
        &r.body,
        0,
        &format!("{what} ({leaked} 'S' bytes in the first MiB)"),
    );
}

fn aborts_never_leak(io: IoDriver, engines: &[EngineKind]) {
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    with_veth_as_remote(|| {
        for &engine in engines {
            if let Err(why) = engine.probe() {
                eprintln!("skipped: engine {engine}: {why}");
                continue;
            }
            let fx = Fixture::new();
            std::fs::write(fx.root().join("secret.bin"), vec![b'S'; SECRET as usize]).unwrap();
            write_pattern(&fx.root().join("public.bin"), PUBLIC);
            let root = fx.root();
            let ip = IpAddr::V4(pair.addr_a);
            let srv = pair
                .a
                .run(move || {
                    TestServer::start(&root, |c| {
                        c.listen = vec![SocketAddr::new(ip, 0)];
                        c.workers = 1;
                        c.io = io;
                        c.engine = Preference::Prefer(engine);
                    })
                })
                .expect("server in namespace a");
            let addr = srv.addr;
            for round in 0..ROUNDS {
                let what = format!("{io} driver, engine {engine}, after abort {round}");
                pair.b
                    .run(|| {
                        abort_mid_body(addr);
                        download_public(addr, &what);
                    })
                    .expect("client in namespace b");
            }
            drop(srv);
        }
    });
}

#[test]
fn after_an_aborted_splice_download_the_next_client_gets_only_its_own_bytes() {
    aborts_never_leak(IoDriver::Epoll, &[EngineKind::Splice]);
}

#[test]
fn after_an_aborted_uring_download_the_next_client_gets_only_its_own_bytes() {
    aborts_never_leak(IoDriver::Epoll, &[EngineKind::Uring]);
}

#[test]
fn after_an_aborted_msg_zerocopy_download_the_next_client_gets_only_its_own_bytes() {
    aborts_never_leak(IoDriver::Epoll, &[EngineKind::MsgZerocopy]);
}

#[test]
fn after_an_aborted_download_on_the_uring_driver_the_next_client_gets_only_its_own_bytes() {
    if zcopy::ring::probe().is_err() {
        eprintln!("skipped: no io_uring event loop here");
        return;
    }
    aborts_never_leak(IoDriver::Uring, &[EngineKind::Splice]);
}
