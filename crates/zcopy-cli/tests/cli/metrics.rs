//! `--metrics ADDR`: Prometheus text on a separate listener, counters summed over the
//! workers; an address in use exits 2.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::serve::{bin, signal};

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("Content-Type: text/plain; version=0.0.4"),
        "{out}"
    );
    out
}

/// The value of the sample line starting with `name` (labels included), if present.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Starts `zcopy serve --metrics` with `args` (`--workers N`, ...) and `env`; returns
/// it with the server's and the metrics listener's addresses.
fn start_with_metrics(
    root: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String, String) {
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .args(args)
        .arg(root)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut urls = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .split(' ')
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        urls.push(url.split('/').next().unwrap().to_owned());
    }
    let metrics = urls.pop().unwrap();
    (child, urls.pop().unwrap(), metrics)
}

#[test]
fn metrics_count_requests_bytes_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), vec![b's'; 1000]).unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'b'; 1 << 20]).unwrap();
    let (mut child, web, metrics) = start_with_metrics(dir.path(), &["--workers", "2"], &[]);
    let (web, metrics) = (&web, &metrics);
    let before = scrape(metrics);
    assert_eq!(
        value(
            &before,
            "zcopy_requests_total{method=\"GET\",status=\"2xx\"}"
        ),
        Some(0.0)
    );

    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    for _ in 0..5 {
        let body = agent
            .get(&format!("http://{web}/small.txt"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        assert_eq!(body.len(), 1000);
    }
    let mut big = agent.get(&format!("http://{web}/big.bin")).call().unwrap();
    assert_eq!(
        big.body_mut()
            .with_config()
            .limit(2 << 20)
            .read_to_vec()
            .unwrap()
            .len(),
        1 << 20
    );
    assert_eq!(
        agent
            .get(&format!("http://{web}/nope"))
            .call()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        agent
            .head(&format!("http://{web}/small.txt"))
            .call()
            .unwrap()
            .status(),
        200
    );
    let mut raw = TcpStream::connect(web).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    raw.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    // Counters of finished responses are current; gauges and cache counts are
    // published once a second: wait (bounded) for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = scrape(metrics);
        let open = value(&t, "zcopy_connections_open").unwrap();
        let idle = value(&t, "zcopy_connections_idle").unwrap();
        let hits = value(&t, "zcopy_file_cache_hits_total").unwrap();
        if (open >= 1.0 && idle >= 1.0 && hits >= 1.0) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let v = |name: &str| value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(
        v("zcopy_requests_total{method=\"GET\",status=\"2xx\"}"),
        6.0
    );
    assert_eq!(
        v("zcopy_requests_total{method=\"GET\",status=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        v("zcopy_requests_total{method=\"HEAD\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        v("zcopy_requests_total{method=\"invalid\",status=\"4xx\"}"),
        1.0
    );
    assert_eq!(v("zcopy_request_duration_seconds_count"), 9.0);
    assert_eq!(v("zcopy_request_duration_seconds_bucket{le=\"+Inf\"}"), 9.0);
    let engines: f64 = text
        .lines()
        .filter(|l| l.starts_with("zcopy_body_bytes_total{") && !l.contains("\"memory\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(engines, (1 << 20) as f64, "{text}");
    assert!(v("zcopy_body_bytes_total{engine=\"memory\"}") >= 5000.0);
    assert_eq!(
        v("zcopy_body_bytes_by_reference_total") + v("zcopy_body_bytes_copied_total"),
        engines + v("zcopy_body_bytes_total{engine=\"memory\"}")
    );
    assert!(v("zcopy_connections_accepted_total") >= 2.0);
    assert!(v("zcopy_connections_open") >= 1.0, "{text}");
    assert!(v("zcopy_connections_idle") >= 1.0, "{text}");
    assert!(v("zcopy_file_cache_hits_total") >= 1.0, "{text}");
    assert!(v("zcopy_file_cache_misses_total") >= 1.0, "{text}");
    // Small files on this file system are held in memory under an inotify watch.
    if zcopy::Forced::from_env().switched_off("inotify") {
        assert_eq!(v("zcopy_file_cache_held_hits_total"), 0.0, "{text}");
    } else {
        assert!(v("zcopy_file_cache_held_hits_total") >= 1.0, "{text}");
    }
    for name in [
        "zcopy_connections_shed_total",
        "zcopy_lease_breaks_total",
        "zcopy_truncations_total",
    ] {
        assert_eq!(v(name), 0.0, "{name}");
    }
    // Other paths on the metrics listener are not metrics; requests are parsed as
    // the server parses them (an HTTP/1.1 request without Host is a 400).
    for (req, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "404"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", "400"),
    ] {
        let mut s = TcpStream::connect(metrics.as_str()).unwrap();
        s.write_all(req).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{r}");
    }
    drop(agent);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_metrics_address_in_use_exits_2() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics", &addr])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")),
        "{err}"
    );
}

#[test]
fn engine_fallbacks_are_counted_by_engine_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'b'; 1 << 20]).unwrap();
    // Loopback peers get copying engines (mmap, then read-write): mmap switched off
    // reports "unsupported" and read-write takes over. Engines run in the epoll
    // driver (the io_uring driver sends bodies from its ring, without them).
    let (mut child, web, metrics) = start_with_metrics(
        dir.path(),
        &["--workers", "1", "--io", "epoll"],
        &[("ZCOPY_DISABLE", "mmap")],
    );
    for _ in 0..2 {
        let mut resp = ureq::get(&format!("http://{web}/big.bin")).call().unwrap();
        let body = resp
            .body_mut()
            .with_config()
            .limit(2 << 20)
            .read_to_vec()
            .unwrap();
        assert_eq!(body.len(), 1 << 20);
    }
    let text = scrape(&metrics);
    let fell: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("zcopy_engine_fallbacks_total{engine=\"mmap\",reason=\""))
        .collect();
    assert_eq!(fell.len(), 1, "{text}");
    assert!(
        value(&text, "zcopy_body_bytes_total{engine=\"read-write\"}").unwrap() >= (1 << 20) as f64,
        "{text}"
    );
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_file_cut_short_mid_send_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'b'; 16 << 20]).unwrap();
    let (mut child, web, metrics) = start_with_metrics(dir.path(), &["--workers", "1"], &[]);
    let mut s = TcpStream::connect(web.as_str()).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    s.read_exact(&mut buf).unwrap();
    // The server holds a read lease (as root): this truncate waits until it lets go.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut got = buf.len();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 16 << 20, "{got}");
    let text = scrape(&metrics);
    let seen = value(&text, "zcopy_lease_breaks_total").unwrap()
        + value(&text, "zcopy_truncations_total").unwrap();
    assert!(seen >= 1.0, "{text}");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Serves `name` (holding `body`) once per `(args, lent)` case and GETs it until the
/// case shows: `lent` — a body of exactly `body.len()` counted by reference and a
/// snapshot of that size held (within 10 s); not `lent` — no byte by reference and
/// no snapshot for 500 ms of requests. Every body is checked byte for byte.
fn assert_lent_by_case(dir: &std::path::Path, name: &str, body: &[u8], cases: &[(&[&str], bool)]) {
    std::fs::write(dir.join(name), body).unwrap();
    for &(args, lent) in cases {
        let (mut child, web, metrics) = start_with_metrics(dir, args, &[]);
        let start = Instant::now();
        loop {
            let before = value(&scrape(&metrics), "zcopy_body_bytes_by_reference_total");
            let got = ureq::get(&format!("http://{web}/{name}"))
                .call()
                .unwrap()
                .into_body()
                .read_to_vec()
                .unwrap();
            assert!(got == body, "byte-exact");
            std::thread::sleep(Duration::from_millis(20));
            let t = scrape(&metrics);
            let by_ref =
                value(&t, "zcopy_body_bytes_by_reference_total").unwrap() - before.unwrap();
            let held = value(&t, "zcopy_snapshot_bytes").unwrap();
            if !lent {
                assert_eq!((by_ref, held), (0.0, 0.0), "{args:?}");
                if start.elapsed() > Duration::from_millis(500) {
                    break;
                }
                continue;
            }
            if by_ref == body.len() as f64 {
                assert_eq!(held, body.len() as f64);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never lent from a snapshot: {t}"
            );
        }
        signal(&child, "-TERM");
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}

/// The default `--snapshot-band` (65k-16M): a file in it is copied once into a sealed
/// snapshot on its second request and then lent by reference, loopback peer
/// included; `--snapshot-band off` makes none.
#[test]
fn files_in_the_default_band_are_lent_from_a_snapshot_and_off_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..128 << 10).map(|i: u32| (i % 251) as u8).collect();
    assert_lent_by_case(
        dir.path(),
        "mid.bin",
        &body,
        &[
            (&["--workers", "1"], true),
            (&["--workers", "1", "--snapshot-band", "off"], false),
        ],
    );
}

/// The default bands differ per peer: over loopback (where lending measured cheaper
/// than a copy from memory from 32 KiB on) a hot 64 KiB file, which a worker would
/// hold in memory, is lent from its sealed snapshot; `--snapshot-band 65k-16M`
/// given explicitly applies to every peer, loopback too (copied, no snapshot).
#[test]
fn a_hot_64k_file_is_lent_to_a_loopback_peer_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 251) as u8).collect();
    assert_lent_by_case(
        dir.path(),
        "hot.bin",
        &body,
        &[
            (&["--workers", "1"], true),
            (&["--workers", "1", "--snapshot-band", "65k-16M"], false),
        ],
    );
}
