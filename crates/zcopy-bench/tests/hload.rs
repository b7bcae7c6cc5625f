//! `hload` against a real `zcopy serve` (both drivers where they run) and against
//! servers that lie about a body's length.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use zcopy_bench::hload::{self, Options};
use zcopy_http::config::{Config, IoDriver};
use zcopy_http::server::Server;

const SIZE: usize = 64 << 10;

fn options(addr: SocketAddr, path: &str) -> Options {
    Options {
        connections: 4,
        threads: 2,
        duration: Duration::from_millis(300),
        ..Options::for_url(&format!("http://{addr}{path}")).unwrap()
    }
}

/// The head's length of one response to a plain blocking GET, and its body.
fn one_get(addr: SocketAddr, path: &str) -> (usize, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // The same head as a keep-alive request gets, less its `Connection: close`.
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let close = head
        .lines()
        .find(|l| l.eq_ignore_ascii_case("connection: close"))
        .map_or(0, |l| l.len() + 2);
    (end - close, all[end..].to_vec())
}

#[test]
fn counts_every_byte_of_a_real_server_on_both_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let file: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(dir.path().join("64k.bin"), &file).unwrap();
    for io in [IoDriver::Epoll, IoDriver::Uring] {
        let (runs, why) = zcopy_http::driver::choose(io, false);
        if runs != io {
            eprintln!("{io:?} skipped: {why}");
            continue;
        }
        let server = Server::bind(Config {
            root: dir.path().to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            workers: 1,
            io,
            ..Config::default()
        })
        .unwrap();
        let addr = server.local_addrs()[0];
        let running = server.spawn().unwrap();
        let (head, body) = one_get(addr, "/64k.bin");
        assert!(body == file, "{io:?}: the body differs from the file");

        let out = hload::run(&Options {
            length: Some(SIZE as u64),
            ..options(addr, "/64k.bin")
        })
        .unwrap_or_else(|e| panic!("{io:?}: {e}"));
        assert!(out.requests >= 4, "{io:?}: {out:?}");
        assert_eq!(out.length, SIZE as u64);
        assert_eq!(
            out.body_bytes,
            out.requests * SIZE as u64,
            "{io:?}: {out:?}"
        );
        assert_eq!(
            out.head_bytes,
            out.requests * head as u64,
            "{io:?}: {out:?}"
        );
        assert!(out.wall >= Duration::from_millis(300), "{out:?}");

        let wrong = hload::run(&Options {
            length: Some(SIZE as u64 - 1),
            ..options(addr, "/64k.bin")
        });
        assert!(
            wrong.is_err(),
            "{io:?}: a length other than asked for passed"
        );
        let missing = hload::run(&options(addr, "/missing.bin")).unwrap_err();
        assert!(missing.to_string().contains("404"), "{missing}");
        running.stop().unwrap();
    }
}

/// A server whose every response announces `announced` body bytes and sends `sent`.
fn liar(announced: usize, sent: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n");
                        let mut answer = head.into_bytes();
                        answer.resize(answer.len() + sent, b'x');
                        if w.write_all(&answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_wrong_content_length_fails_the_run() {
    let honest = hload::run(&options(liar(1000, 1000), "/")).unwrap();
    assert_eq!(honest.body_bytes, honest.requests * 1000);
    // Bytes beyond the body: the next head does not parse, or they come with no
    // request in flight.
    let short = hload::run(&options(liar(1000, 1001), "/"));
    assert!(short.is_err(), "{short:?}");
    // Fewer bytes than announced: the response never ends.
    let long = hload::run(&Options {
        grace: Duration::from_millis(300),
        ..options(liar(1001, 1000), "/")
    })
    .unwrap_err();
    assert!(long.to_string().contains("unfinished"), "{long}");
}
