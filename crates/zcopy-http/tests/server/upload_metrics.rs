//! What the counters and the access log say of uploads: the body bytes received,
//! by the engine that moved them (issue 20 item 5).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zcopy_http::access_log::{AccessLog, LogFormat};
use zcopy_http::config::Config;
use zcopy_http::driver::IoDriver;
use zcopy_http::stats::ServerStats;

use crate::util::*;

const DRIVERS: [IoDriver; 2] = [IoDriver::Epoll, IoDriver::Uring];

/// A server taking uploads on `io`, logging to `log` in `format`, and its counters.
fn start(
    root: &Path,
    io: IoDriver,
    log: &Path,
    format: LogFormat,
) -> (TestServer, Arc<ServerStats>) {
    TestServer::with_stats(Config {
        root: root.to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io,
        upload: true,
        access_log: Some(AccessLog::File(log.to_path_buf())),
        access_log_format: format,
        ..Config::default()
    })
}

/// `zcopy_upload_bytes_total` by engine label, the labels with a count only.
fn uploaded(stats: &ServerStats) -> Vec<(String, u64)> {
    stats
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("zcopy_upload_bytes_total{engine=\""))
        .filter_map(|l| {
            let (engine, v) = l.split_once("\"} ")?;
            let v: u64 = v.parse().ok()?;
            (v > 0).then(|| (engine.to_owned(), v))
        })
        .collect()
}

/// `PUT path` with `Expect: 100-continue` and the head on its own, so that no body
/// byte comes with the head: the receive path moves all of them.
fn put_head(srv: &TestServer, path: &str, len: usize) -> TcpStream {
    let mut s = srv.connect();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut interim = vec![0u8; want.len()];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, want);
    s
}

/// The log's lines once there are `n` (or what there is after 20 s).
fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || start.elapsed() > Duration::from_secs(20) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_path(fx: &Fixture, name: &str) -> PathBuf {
    fx.root().parent().unwrap().join(name)
}

/// The engine label the receive path must report on either driver: the transfer's
/// engine (splice, or read-write where splice can't run). io_uring copied every
/// body from its receive buffers before ("copy"); it splices a large one now.
fn engine_ok(_io: IoDriver, engine: &str) -> bool {
    engine == "splice" || engine == "read-write"
}

#[test]
fn a_put_counts_its_bytes_under_the_engine_that_received_them_and_logs_them() {
    const N: usize = 700_001;
    for io in DRIVERS {
        for format in [LogFormat::Common, LogFormat::Json] {
            let fx = Fixture::new();
            let log = log_path(&fx, "access.log");
            let (srv, stats) = start(&fx.root(), io, &log, format);
            if srv.io_driver() != io {
                eprintln!("{io} not available here: ran {}", srv.io_driver());
                continue;
            }
            assert_eq!(uploaded(&stats), [], "{io}: nothing uploaded yet");
            let body = pattern(0, N);
            let mut s = put_head(&srv, "/up.bin", N);
            s.write_all(&body).unwrap();
            let r = read_response(&mut s, false).unwrap();
            assert_eq!(r.status, 201, "{io}");
            assert_eq!(std::fs::read(fx.root().join("up.bin")).unwrap(), body);
            let counted = uploaded(&stats);
            eprintln!("{io}: {N} bytes received by {counted:?}");
            assert_eq!(
                counted.len(),
                1,
                "{io}: one engine received it: {counted:?}"
            );
            assert!(engine_ok(io, &counted[0].0), "{io}: {counted:?}");
            assert_eq!(counted[0].1, N as u64, "{io}: exactly the body");
            // Counted when the response ends, just after its last byte left.
            eventually("the upload counted by method and status", || {
                stats
                    .render()
                    .contains("zcopy_requests_total{method=\"PUT\",status=\"2xx\"} 1")
            });
            let lines = log_lines(&log, 1);
            assert_eq!(lines.len(), 1, "{io}: {lines:?}");
            let line = &lines[0];
            assert!(line.contains("PUT /up.bin HTTP/1.1"), "{line}");
            match format {
                LogFormat::Json => {
                    assert!(line.contains("\"status\":201"), "{line}");
                    assert!(line.contains(&format!("\"received\":{N},")), "{line}");
                }
                _ => assert!(line.ends_with(&format!("\" 201 - {N}")), "{line}"),
            }
            // A GET's line stays plain CLF (no received field); in JSON it says 0.
            let r = request(&srv, "GET", "/up.bin", &[]);
            assert_eq!(r.status, 200);
            let lines = log_lines(&log, 2);
            let line = &lines[1];
            match format {
                LogFormat::Json => assert!(line.contains("\"received\":0,"), "{line}"),
                _ => assert!(line.ends_with(&format!("\" 200 {N}")), "{line}"),
            }
        }
    }
}

#[test]
fn a_dropped_upload_counts_and_logs_only_what_arrived() {
    const SENT: usize = 300_000;
    for io in DRIVERS {
        let fx = Fixture::new();
        let log = log_path(&fx, "access.json");
        let (srv, stats) = start(&fx.root(), io, &log, LogFormat::Json);
        if srv.io_driver() != io {
            eprintln!("{io} not available here: ran {}", srv.io_driver());
            continue;
        }
        let mut s = put_head(&srv, "/big.bin", 4 << 20);
        s.write_all(&pattern(0, SENT)).unwrap();
        // A clean close (nothing unread here): the server reads every byte sent,
        // then the end.
        drop(s);
        let lines = log_lines(&log, 1);
        assert_eq!(lines.len(), 1, "{io}: {lines:?}");
        let line = &lines[0];
        assert!(line.contains("PUT /big.bin"), "{line}");
        assert!(line.contains("\"status\":400"), "{line}");
        assert!(
            line.contains(&format!("\"received\":{SENT},")),
            "{io}: {line}"
        );
        eventually("counted", || {
            uploaded(&stats).iter().map(|(_, v)| v).sum::<u64>() == SENT as u64
        });
        let counted = uploaded(&stats);
        assert_eq!(counted.len(), 1, "{io}: {counted:?}");
        assert!(engine_ok(io, &counted[0].0), "{io}: {counted:?}");
        assert!(!fx.root().join("big.bin").exists());
    }
}

/// `zcopy_upload_steps_total`.
fn steps(stats: &ServerStats) -> u64 {
    metric(&stats.render(), "zcopy_upload_steps_total").unwrap_or(0)
}

/// A PUT of `len` bytes written by a client thread in 16 KiB writes a millisecond
/// apart (a sender slower than the receiver, as curl is over loopback), with the
/// head on its own; returns the response status.
fn put_paced(srv: &TestServer, path: &str, len: usize) -> u16 {
    let mut s = put_head(srv, path, len);
    let body = pattern(0, len);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in body.chunks(16 * 1024) {
            w.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let r = read_response(&mut s, false).expect("a response");
    writer.join().unwrap();
    r.status
}

#[test]
fn a_spliced_put_moves_its_body_in_large_steps() {
    // The receive low-water mark wakes the receiver once a large step can be taken,
    // not at every segment that arrives: 8 MiB sent 16 KiB at a time took 128 to
    // 512 steps of 16-64 KiB (one splice in, one out, one epoll wake each) before;
    // 16 of 512 KiB now. Bound: 128 KiB on average.
    // On io_uring too, where the splice waits for a ring poll (which the mark
    // holds back the same way).
    const N: usize = 8 << 20;
    for io in DRIVERS {
        let fx = Fixture::new();
        let log = log_path(&fx, "access.log");
        let (srv, stats) = start(&fx.root(), io, &log, LogFormat::Common);
        if srv.io_driver() != io {
            eprintln!("{io} not available here: ran {}", srv.io_driver());
            continue;
        }
        assert_eq!(put_paced(&srv, "/big.bin", N), 201, "{io}");
        assert_pattern(
            &std::fs::read(fx.root().join("big.bin")).unwrap(),
            0,
            "big.bin",
        );
        let counted = uploaded(&stats);
        let steps = steps(&stats);
        eprintln!("{io}: {N} bytes in {steps} steps: {counted:?}");
        if counted.iter().any(|(e, _)| e != "splice") {
            eprintln!("skipped: not received by splice here ({counted:?})");
            continue;
        }
        assert!(steps > 0);
        let per_step = N as u64 / steps;
        assert!(
            per_step >= 128 * 1024,
            "{io}: {steps} steps of {per_step} bytes on average for {N} bytes"
        );
    }
}

#[test]
fn io_uring_writes_a_received_body_to_its_file_many_chunks_at_a_time() {
    // The ring receives into 4 KiB buffers; each went through the core's read
    // buffer and was written on its own (8 MiB: 2048 writes of at most 4 KiB).
    // Now the chunks a turn received go to the file in one writev (what the ring
    // received before a large body's splice began; all of a small body), and the
    // rest is spliced in large steps.
    const N: usize = 8 << 20;
    let fx = Fixture::new();
    let log = log_path(&fx, "access.log");
    let (srv, stats) = start(&fx.root(), IoDriver::Uring, &log, LogFormat::Common);
    if srv.io_driver() != IoDriver::Uring {
        eprintln!("skipped: io_uring not available here");
        return;
    }
    let body = pattern(0, N);
    let mut s = put_head(&srv, "/big.bin", N);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&body).unwrap());
    let r = read_response(&mut s, false).expect("a response");
    writer.join().unwrap();
    assert_eq!(r.status, 201);
    assert_pattern(
        &std::fs::read(fx.root().join("big.bin")).unwrap(),
        0,
        "big.bin",
    );
    let steps = steps(&stats);
    eprintln!("{N} bytes in {steps} writes: {:?}", uploaded(&stats));
    assert!(steps > 0);
    let per_write = N as u64 / steps;
    assert!(
        per_write >= 12 * 1024,
        "{steps} writes of {per_write} bytes on average for {N} bytes"
    );
}

#[test]
fn a_small_body_after_its_head_is_read_not_spliced_and_a_pipelined_request_follows() {
    // A body under 64 KiB that did not come with its head (as rclone's and Go's
    // clients send a small PUT: head, then body) was spliced on epoll: a pipe made
    // and sized, two splices, the low-water mark set and reset, the pipe closed,
    // for a few KiB. It is read into the core's buffer and written from there now,
    // on both drivers, and bytes read past the body are the next request's.
    const N: usize = 20_000;
    for io in DRIVERS {
        let fx = Fixture::new();
        let log = log_path(&fx, "access.log");
        let (srv, stats) = start(&fx.root(), io, &log, LogFormat::Common);
        if srv.io_driver() != io {
            eprintln!("{io} not available here: ran {}", srv.io_driver());
            continue;
        }
        let body = pattern(3, N);
        let mut s = put_head(&srv, "/small.bin", N);
        let mut wire = body.clone();
        wire.extend_from_slice(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(&wire).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 201, "{io}");
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 200, "{io}: the pipelined GET is answered");
        assert_eq!(r.body, body, "{io}: the new file, whole");
        assert_eq!(std::fs::read(fx.root().join("small.bin")).unwrap(), body);
        let counted = uploaded(&stats);
        assert_eq!(counted, [("copy".to_owned(), N as u64)], "{io}");
    }
}

#[test]
fn spliced_bodies_one_after_another_on_one_connection_stay_byte_exact() {
    // On io_uring the multishot receive is cancelled for a large body and armed
    // again for the next head (with the low-water mark back at 1): three requests
    // on one kept-alive connection, two large bodies sent with their heads at once.
    for io in DRIVERS {
        let fx = Fixture::new();
        let log = log_path(&fx, "access.log");
        let (srv, stats) = start(&fx.root(), io, &log, LogFormat::Common);
        if srv.io_driver() != io {
            eprintln!("{io} not available here: ran {}", srv.io_driver());
            continue;
        }
        let mut s = srv.connect();
        let (a, b) = (pattern(1, 300_001), pattern(7, 2 << 20));
        for (name, body) in [("a.bin", &a), ("b.bin", &b)] {
            let mut wire = format!(
                "PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            wire.extend_from_slice(body);
            s.write_all(&wire).unwrap();
            let r = read_response(&mut s, false).unwrap();
            assert_eq!(r.status, 201, "{io}: {name}");
        }
        s.write_all(b"GET /a.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 200, "{io}");
        assert_eq!(r.body, a, "{io}");
        assert_eq!(std::fs::read(fx.root().join("b.bin")).unwrap(), b, "{io}");
        let counted = uploaded(&stats);
        let total: u64 = counted.iter().map(|(_, v)| v).sum();
        assert_eq!(total, (a.len() + b.len()) as u64, "{io}: {counted:?}");
        assert!(
            counted.iter().any(|(e, _)| engine_ok(io, e)),
            "{io}: some of it spliced: {counted:?}"
        );
    }
}
