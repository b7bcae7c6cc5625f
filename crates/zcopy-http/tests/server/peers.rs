//! "Never a byte the file did not hold", for every class of peer: a client on
//! loopback, a client on this host using one of its non-loopback addresses, and a
//! client in another network namespace behind a veth pair (a container, as far as
//! the kernel is concerned). Every one of them has its receive queue in this kernel,
//! so bytes sent by reference would stay references to our page-cache pages until
//! the client reads them; a file truncated mid-page meanwhile would turn them into
//! zeros. The server must copy for them, whatever engine was asked for.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use zcopy::Preference;
use zcopy_netns::VethPair;

use crate::files::engines;
use crate::util::*;

/// One of this host's own non-loopback addresses (the source of its default route),
/// if it has one.
fn host_address() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// What the client does once connected: request, leave the body unread while the
/// file is truncated mid-page, then read everything that comes.
enum Ask {
    /// 16 MiB: read 1 MiB, truncate to `2 MiB + 100`. (Each ask closes after its
    /// response, so the client's read to EOF ends with it.)
    Large,
    /// 48 KiB (from the worker's file cache): read only the head, truncate to 20000.
    Cached,
    /// Two ranges of the 48 KiB file in a multipart body, truncate to 25000.
    Multipart,
}

const LARGE: u64 = 16 << 20;
const CACHED: u64 = 48 << 10;

/// Runs `ask` against `server` and checks every byte received against the original.
fn check(root: &Path, server: SocketAddr, ask: &Ask, what: &str) {
    let (name, request, cut, read_first): (&str, String, u64, usize) = match ask {
        Ask::Large => ("large.bin", String::new(), (2 << 20) + 100, 1 << 20),
        Ask::Cached => ("cached.bin", String::new(), 20_000, 0),
        Ask::Multipart => (
            "cached.bin",
            "Range: bytes=0-9999,30000-45000\r\n".into(),
            25_000,
            0,
        ),
    };
    let path = root.join(name);
    write_pattern(&path, if name == "large.bin" { LARGE } else { CACHED });
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{request}\r\n"
    )
    .unwrap();
    let head = read_response(&mut s, true).expect("a response");
    let mut body = vec![0u8; read_first];
    s.read_exact(&mut body).unwrap();
    // Let the server queue what it can, then truncate mid-page (a writer waits while
    // the server holds a lease, so this may block until the server lets go).
    std::thread::sleep(Duration::from_millis(100));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    match ask {
        Ask::Large | Ask::Cached => {
            assert_eq!(head.status, 200, "{what}");
            assert_pattern(&body, 0, what);
        }
        Ask::Multipart => {
            assert_eq!(head.status, 206, "{what}");
            // Each part's bytes follow its blank line; check them where they stand.
            let text = body.clone();
            for (start, _) in [(0u64, 9999u64), (30000, 45000)] {
                let marker = format!("Content-Range: bytes {start}-");
                let Some(at) = find(&text, marker.as_bytes()) else {
                    continue; // the body ended before this part
                };
                let data_at = at + find(&text[at..], b"\r\n\r\n").expect("part head") + 4;
                let end = find(&text[data_at..], b"\r\n--").map_or(text.len(), |e| data_at + e);
                assert_pattern(&text[data_at..end], start, what);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every engine and every kind of body against a server at `listen`, with the
/// client connecting from wherever `client` runs it.
fn every_case(
    start: impl Fn(&Path, Preference) -> (TestServer, SocketAddr),
    client: impl Fn(&(dyn Fn() + Sync)),
) {
    for (engine, pref) in engines() {
        for ask in [Ask::Large, Ask::Cached, Ask::Multipart] {
            let fx = Fixture::new();
            let (srv, addr) = start(&fx.root(), pref);
            let what = format!(
                "engine {engine}, {} body",
                match ask {
                    Ask::Large => "large",
                    Ask::Cached => "cached",
                    Ask::Multipart => "multipart",
                }
            );
            let root = fx.root();
            client(&|| check(&root, addr, &ask, &what));
            drop(srv);
        }
    }
}

fn start_on(ip: IpAddr) -> impl Fn(&Path, Preference) -> (TestServer, SocketAddr) {
    move |root, pref| {
        let srv = TestServer::start(root, |c| {
            c.listen = vec![SocketAddr::new(ip, 0)];
            c.engine = pref;
        });
        let addr = srv.addr;
        (srv, addr)
    }
}

#[test]
fn a_loopback_client_never_gets_a_byte_the_file_did_not_hold() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    every_case(start_on(ip), |f| f());
}

#[test]
fn a_client_using_a_host_address_never_gets_a_byte_the_file_did_not_hold() {
    let Some(ip) = host_address() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but this host has no non-loopback address");
        }
        println!("skipped: this host has no non-loopback address");
        return;
    };
    every_case(start_on(ip), |f| f());
}

#[test]
fn a_client_behind_a_veth_pair_never_gets_a_byte_the_file_did_not_hold() {
    // Not while another test has veth peers classified as remote.
    let _switch = VETH_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pair) = VethPair::for_test() else {
        return;
    };
    let ip = IpAddr::V4(pair.addr_a);
    // The server's workers are started in namespace a (threads inherit it), the
    // client runs in namespace b.
    let start = |root: &Path, pref: Preference| {
        let root = root.to_path_buf();
        pair.a
            .run(move || start_on(ip)(&root, pref))
            .expect("server in namespace a")
    };
    every_case(start, |f| {
        pair.b.run(f).expect("client in namespace b");
    });
}
