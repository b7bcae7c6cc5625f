//! The metrics endpoint under slow clients: one scraper's progress never holds up
//! another's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use zcopy_http::config::Config;
use zcopy_http::metrics::MAX_SCRAPES;
use zcopy_http::server::Server;

use crate::util::*;

fn scrape(addr: std::net::SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out, t.elapsed())
}

/// The issue: one slow client blocked the metrics endpoint for every scraper (one
/// scrape at a time, 5 s each to send a request). Now scrapes are served side by side,
/// and more slow clients than [`MAX_SCRAPES`] close the oldest.
#[test]
fn slow_clients_do_not_hold_up_other_scrapers() {
    let fx = Fixture::new();
    fx.file("a.txt", b"hello");
    let server = Server::bind(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        ..Config::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    zcopy_http::metrics::spawn(listener, server.stats()).unwrap();
    let running = server.spawn().unwrap();

    // Clients that send half a request and stall, more of them than the cap.
    let mut slow = Vec::new();
    for _ in 0..MAX_SCRAPES + 6 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metr").unwrap();
        slow.push(s);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (out, took) = scrape(addr);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("zcopy_requests_total"), "{out}");
        worst = worst.max(took);
        // Another slow one joins between scrapes.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /").unwrap();
        slow.push(s);
    }
    eprintln!(
        "worst scrape among {} stalled clients: {worst:?}",
        slow.len()
    );
    assert!(worst < Duration::from_secs(3), "{worst:?}");
    // The oldest stalled clients were closed to make room.
    let first = &mut slow[0];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(first.read(&mut b), Ok(0) | Err(_)));
    running.stop().unwrap();
}

/// Sends `req` to the metrics endpoint and reads the whole answer.
fn ask(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The issue: the metrics endpoint split the request line by hand beside the real
/// parser, so it answered heads the server refuses (no version: 200), waited out
/// its timeout on bare-LF heads and answered nothing, and took an absolute-form
/// target for an unknown path. Now it parses with the server's own parser.
#[test]
fn the_metrics_endpoint_parses_requests_as_the_server_does() {
    let fx = Fixture::new();
    let server = Server::bind(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        ..Config::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    zcopy_http::metrics::spawn(listener, server.stats()).unwrap();
    let running = server.spawn().unwrap();

    let out = ask(addr, b"GET /metrics\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = ask(addr, b"GET /metrics HTTP/1.1\nHost: x\n\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = ask(addr, b"GET http://x/metrics?q HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("zcopy_requests_total"), "{out}");
    let out = ask(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
    let out = ask(addr, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    let out = ask(addr, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    running.stop().unwrap();
}

/// A counter of the metrics endpoint's answer.
fn counter(metrics: &str, name: &str) -> u64 {
    metric(metrics, name).unwrap_or_else(|| panic!("{name} missing"))
}

/// The sum of every `zcopy_body_bytes_total{engine=...}` line.
fn body_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("zcopy_body_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Issue 18 item 4: the io_uring driver chose its engines itself (mmap from 1 MiB
/// on, whatever the configured engine) and counted them itself. Now both drivers
/// send through the library, which runs the configured engine first and counts
/// what each engine sent: the metrics endpoint shows the body under that engine,
/// and the engine counters add up to the body once.
#[test]
fn body_bytes_are_counted_once_under_the_engine_the_library_ran() {
    use zcopy::{EngineKind, Forced, Preference};
    let fx = Fixture::new();
    let body = pattern(3, (3 << 20) + 7);
    fx.file("big.bin", &body);
    let forced = Forced::from_env();
    for engine in [EngineKind::ReadWrite, EngineKind::Mmap] {
        if forced.limit(engine).is_some() {
            eprintln!("skipped: {engine} is forced off (ZCOPY_DISABLE)");
            continue;
        }
        let server = Server::bind(Config {
            root: fx.root(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            workers: 1,
            io: io_driver(),
            engine: Preference::Prefer(engine),
            ..Config::default()
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = listener.local_addr().unwrap();
        zcopy_http::metrics::spawn(listener, server.stats()).unwrap();
        let srv = TestServer::adopt(server.local_addrs()[0], server.spawn().unwrap());
        let r = request(&srv, "GET", "/big.bin", &[]);
        assert_eq!(r.status, 200);
        assert!(r.body == body, "the file's bytes");
        let name = format!("zcopy_body_bytes_total{{engine=\"{engine}\"}}");
        // The last bytes are counted as the worker sends them.
        let start = Instant::now();
        let mut out = scrape(metrics).0;
        while counter(&out, &name) < body.len() as u64 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
            out = scrape(metrics).0;
        }
        assert_eq!(
            counter(&out, &name),
            body.len() as u64,
            "{:?}: the body under {engine}",
            io_driver()
        );
        assert_eq!(body_total(&out), body.len() as u64, "counted once");
        srv.stop();
    }
}
