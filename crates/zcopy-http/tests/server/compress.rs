//! Compression done once: a gzip variant of a compressible file without a sidecar,
//! made in the background, kept sealed in the snapshot store, served with its own
//! ETag, ranges, 304 and Vary; never stale, never a way around a rule.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use zcopy_http::config::Config;
use zcopy_http::rules::Rule;

use crate::util::*;

/// A compressible script of `n` lines.
fn script(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("export function f{i}(a, b) {{ return a * {i} + b; }}\n"))
        .collect::<String>()
        .into_bytes()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// GETs `path` with `Accept-Encoding: gzip` until the gzip variant comes (it is
/// made in the background), at most 60 s (a loaded CI machine runs the whole suite
/// beside the one background thread that compresses).
fn until_gzip(srv: &TestServer, path: &str, extra: &[(&str, &str)]) -> RawResponse {
    let start = Instant::now();
    let mut headers = vec![("Accept-Encoding", "gzip")];
    headers.extend_from_slice(extra);
    loop {
        let r = request(srv, "GET", path, &headers);
        if r.header("content-encoding") == Some("gzip") {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no gzip variant of {path} after 60 s: status {}, {:?}",
            r.status,
            r.headers
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ZCOPY_DISABLE=inotify`: the store can't watch a file, so it makes no snapshot
/// (one it could not drop on a change would be a stale answer waiting to happen).
/// Then every answer is the file itself, which this checks before the caller skips.
fn no_snapshots(srv: &TestServer, path: &str) -> bool {
    if !zcopy::Forced::from_env().switched_off("inotify") {
        return false;
    }
    for _ in 0..10 {
        let r = request(srv, "GET", path, &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(r.header("content-encoding"), None, "no watch, no variant");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("skipped: inotify forced off, no snapshots are made");
    true
}

fn start(fx: &Fixture, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(&fx.root(), tweak)
}

/// A compressed variant (`coding`, as `variant` was answered) has its own validators
/// and ranges: 304 on its ETag (with `Vary`), 200 on the identity's, and a range is a
/// range of the variant's bytes.
fn variant_validators_and_ranges(
    srv: &TestServer,
    path: &str,
    coding: &str,
    variant: &RawResponse,
    identity_etag: &str,
) {
    let etag = variant.header("etag").unwrap();
    let nm = request(
        srv,
        "GET",
        path,
        &[("Accept-Encoding", coding), ("If-None-Match", etag)],
    );
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("etag"), Some(etag));
    assert_eq!(nm.header("vary"), Some("Accept-Encoding"));
    let other = request(
        srv,
        "GET",
        path,
        &[
            ("Accept-Encoding", coding),
            ("If-None-Match", identity_etag),
        ],
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.header("content-encoding"), Some(coding));
    let r = request(
        srv,
        "GET",
        path,
        &[("Accept-Encoding", coding), ("Range", "bytes=10-99")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), Some(coding));
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 10-99/{}", variant.body.len()))
    );
    assert!(r.body == variant.body[10..100]);
}

#[test]
fn the_gzip_variant_is_the_file_with_its_own_etag_304_and_ranges() {
    let fx = Fixture::new();
    let js = script(4000);
    fx.file("app.js", &js);
    let srv = start(&fx, |_| {});
    if no_snapshots(&srv, "/app.js") {
        return;
    }

    // Without gzip in Accept-Encoding: identity, which varies on it.
    let plain = request(&srv, "GET", "/app.js", &[]);
    assert_eq!(plain.status, 200);
    assert!(plain.body == js);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let refuse = request(
        &srv,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "br, gzip;q=0")],
    );
    assert_eq!(refuse.header("content-encoding"), None);
    assert!(refuse.body == js);

    let gz = until_gzip(&srv, "/app.js", &[]);
    assert_eq!(gz.status, 200);
    assert!(
        gunzip(&gz.body) == js,
        "the variant decompresses to the file"
    );
    assert!(gz.body.len() < js.len() / 4, "{} bytes", gz.body.len());
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        gz.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = gz.header("etag").unwrap().to_owned();
    assert_ne!(Some(&*etag), plain.header("etag"));
    assert!(etag.starts_with('"') && etag.ends_with("-gzip\""), "{etag}");

    variant_validators_and_ranges(&srv, "/app.js", "gzip", &gz, plain.header("etag").unwrap());
    let multi = request(
        &srv,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9,20-29")],
    );
    assert_eq!(multi.status, 206);
    let text = multi.body.clone();
    let find = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    assert!(find(&gz.body[0..10]) && find(&gz.body[20..30]));
    // HEAD says what GET would.
    let head = request(&srv, "HEAD", "/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert_eq!(
        head.header("content-length"),
        Some(&*gz.body.len().to_string())
    );
}

#[test]
fn small_and_incompressible_files_and_compress_off_stay_identity() {
    let fx = Fixture::new();
    fx.file("tiny.js", b"let a = 1;\n");
    fx.file("photo.png", &script(2000));
    fx.file("off/app.js", &script(2000));
    fx.file("app.css", &script(2000));
    let srv = start(&fx, |c| {
        c.rules = vec![Rule {
            glob: "off/**".into(),
            compress: Some(false),
            ..Rule::default()
        }];
    });
    if no_snapshots(&srv, "/app.css") {
        return;
    }
    until_gzip(&srv, "/app.css", &[]);
    for path in ["/tiny.js", "/photo.png", "/off/app.js"] {
        for _ in 0..20 {
            let r = request(&srv, "GET", path, &[("Accept-Encoding", "gzip")]);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-encoding"), None, "{path}");
            assert_eq!(r.header("vary"), None, "{path}");
        }
    }
    let off = start(&fx, |c| c.compress = false);
    for _ in 0..20 {
        let r = request(&off, "GET", "/app.css", &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.header("content-encoding"), None);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_changed_file_never_yields_the_stale_variant() {
    let fx = Fixture::new();
    let one = script(3000);
    let p = fx.file("app.js", &one);
    let srv = start(&fx, |_| {});
    if no_snapshots(&srv, "/app.js") {
        return;
    }
    let gz = until_gzip(&srv, "/app.js", &[]);
    assert!(gunzip(&gz.body) == one);

    // Rewritten with another size: the next answer is the new file (identity or
    // its own variant), never the old variant.
    let two = script(3500);
    std::fs::write(&p, &two).unwrap();
    let r = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "gzip")]);
    let body = match r.header("content-encoding") {
        Some("gzip") => gunzip(&r.body),
        _ => r.body,
    };
    assert!(body == two, "after a rewrite");
    let gz2 = until_gzip(&srv, "/app.js", &[]);
    assert!(gunzip(&gz2.body) == two);
    assert_ne!(gz2.header("etag"), gz.header("etag"));

    // Changed in place, same size, and the mtime put back: caught (the watch, and
    // the ctime in the key).
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(b"/*X*/", 0).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let mut three = two.clone();
    three[..5].copy_from_slice(b"/*X*/");
    for _ in 0..20 {
        let r = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "gzip")]);
        let body = match r.header("content-encoding") {
            Some("gzip") => gunzip(&r.body),
            _ => r.body,
        };
        assert!(body == three, "after an in-place write");
    }
    let gz3 = until_gzip(&srv, "/app.js", &[]);
    assert!(gunzip(&gz3.body) == three);
}

#[test]
fn the_snapshot_budget_evicts_and_the_counters_say_so() {
    let fx = Fixture::new();
    // Files of 7.5 KiB (at most 1/8 of the budget is compressed) whose variants
    // are about half that: 24 of them overflow 64 KiB.
    let files: Vec<String> = (0..24).map(|i| format!("/f{i}.json")).collect();
    for (i, f) in files.iter().enumerate() {
        let mut x = 0x9E37_79B9_u32.wrapping_mul(i as u32 + 1);
        let body: Vec<u8> = (0..500u32)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                format!("\"{x:08x}\":{},", x % 10)
            })
            .collect::<String>()
            .into_bytes();
        fx.file(&f[1..], &body);
    }
    let (srv, stats) = TestServer::with_stats(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 2,
        io: io_driver(),
        snapshot_memory: 64 << 10,
        ..Config::default()
    });
    if no_snapshots(&srv, &files[0]) {
        return;
    }
    let mut sizes = Vec::new();
    for f in &files {
        sizes.push(until_gzip(&srv, f, &[]).body.len() as u64);
    }
    let value = |name: &str| stat(&stats, &format!("zcopy_{name}"));
    assert!(
        value("snapshot_evictions_total") >= 1,
        "{sizes:?}\n{}",
        stats.render()
    );
    assert!(value("snapshot_bytes") <= 64 << 10);
    assert!(value("snapshot_hits_total") >= files.len() as u64);
    assert!(value("snapshot_misses_total") >= files.len() as u64);
    assert_eq!(value("snapshot_budget_bytes"), 64 << 10);
}

#[test]
fn compressed_answers_obey_auth_and_hidden_rules() {
    let fx = Fixture::new();
    let js = script(3000);
    fx.file("private/app.js", &js);
    fx.file(".hidden/app.js", &js);
    fx.file("public/app.js", &js);
    let hash = bcrypt::hash("pw", 4).unwrap();
    let users = zcopy_http::auth::Users::parse("zcopy", &format!("user:{hash}\n")).unwrap();
    let srv = start(&fx, |c| {
        c.rules = vec![Rule {
            glob: "private/**".into(),
            auth: Some(std::sync::Arc::new(users)),
            ..Rule::default()
        }];
    });
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:pw")
    );
    if no_snapshots(&srv, "/public/app.js") {
        return;
    }
    // With credentials the variant is made and served ...
    let gz = until_gzip(&srv, "/private/app.js", &[("Authorization", &basic)]);
    assert!(gunzip(&gz.body) == js);
    // ... and without them it is still a 401, gzip or not.
    for ae in ["gzip", "gzip, br", "*"] {
        let r = request(&srv, "GET", "/private/app.js", &[("Accept-Encoding", ae)]);
        assert_eq!(r.status, 401, "{ae}");
        assert!(!r.body.windows(4).any(|w| w == b"f100"));
        let bad = request(
            &srv,
            "GET",
            "/private/app.js",
            &[("Accept-Encoding", ae), ("Authorization", "Basic dXNlcjp4")],
        );
        assert_eq!(bad.status, 401, "{ae}");
    }
    // A hidden file stays hidden, even once the same bytes have a variant elsewhere.
    until_gzip(&srv, "/public/app.js", &[]);
    for _ in 0..10 {
        let r = request(
            &srv,
            "GET",
            "/.hidden/app.js",
            &[("Accept-Encoding", "gzip")],
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-encoding"), None);
    }
}

/// A sealed variant leaves by reference even to a loopback peer (whose receive
/// queue is in this kernel, so a file on disk is copied at send time): nothing can
/// change it.
#[test]
fn the_sealed_variant_is_lent_to_a_loopback_peer_and_the_file_is_copied() {
    let fx = Fixture::new();
    let js = script(20_000);
    fx.file("big.js", &js);
    fx.file("big.bin", &js);
    let (srv, stats) = TestServer::with_stats(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        ..Config::default()
    });
    let by_ref = || stat(&stats, "zcopy_body_bytes_by_reference_total");
    if no_snapshots(&srv, "/big.js") {
        return;
    }
    let gz = until_gzip(&srv, "/big.js", &[]);
    // That first variant's bytes are counted as the worker finishes sending them,
    // which may be after the client has read them: wait for them first (identity
    // answers before it were copied, so they count nothing here).
    let start = Instant::now();
    while by_ref() < gz.body.len() as u64 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = by_ref();
    let again = request(&srv, "GET", "/big.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(again.header("content-encoding"), Some("gzip"));
    assert!(again.body == gz.body);
    // The response's last bytes are counted as the worker sends them.
    let start = Instant::now();
    while by_ref() < before + gz.body.len() as u64 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        by_ref() - before,
        gz.body.len() as u64,
        "the variant by reference"
    );
    // The file itself (a disk file, mutable) is still copied to this peer.
    let before = by_ref();
    let plain = request(&srv, "GET", "/big.bin", &[]);
    assert!(plain.body == js);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(by_ref(), before, "a mutable file is copied to a local peer");
}

/// One worker serving the fixture, with every file from 1 KiB to 1 MiB snapshotted
/// (loopback peers too), and its metrics.
fn snapshot_server(fx: &Fixture) -> (TestServer, std::sync::Arc<zcopy_http::stats::ServerStats>) {
    TestServer::with_stats(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        snapshot_band: Some((1024, 1 << 20)),
        ..Config::default()
    })
}

/// Asks for `path` (the suite's pattern, `len` bytes) until it goes by reference:
/// until its snapshot is made the file is copied (10 s at most).
fn until_lent(srv: &TestServer, stats: &zcopy_http::stats::ServerStats, path: &str, len: u64) {
    let by_ref = || stat(stats, "zcopy_body_bytes_by_reference_total");
    let start = Instant::now();
    loop {
        let before = by_ref();
        let r = request(srv, "GET", path, &[]);
        assert_pattern(&r.body, 0, path);
        assert_eq!(r.body.len() as u64, len);
        // (the count lands when the server has sent the body, maybe after we read it)
        std::thread::sleep(Duration::from_millis(20));
        if by_ref() - before == len {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never lent");
    }
}

/// `--snapshot-band`: a file in the band is served from a sealed snapshot of itself
/// (lent even to a loopback peer), and a change to the file is never answered from
/// the old snapshot.
#[test]
fn identity_snapshots_in_the_band_are_lent_and_never_stale() {
    let fx = Fixture::new();
    let p = fx.root().join("data.bin");
    write_pattern(&p, 64 << 10);
    fx.file("small.bin", &[7u8; 100]);
    let (srv, stats) = snapshot_server(&fx);
    if zcopy::Forced::from_env().switched_off("inotify") {
        for _ in 0..5 {
            assert_pattern(&request(&srv, "GET", "/data.bin", &[]).body, 0, "data.bin");
        }
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    until_lent(&srv, &stats, "/data.bin", 64 << 10);
    let r = request(&srv, "GET", "/data.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_pattern(&r.body, 100, "range of the snapshot");
    // Below the band: not snapshotted.
    for _ in 0..5 {
        assert_eq!(request(&srv, "GET", "/small.bin", &[]).body, [7u8; 100]);
    }
    // Changed in place (same size): the old snapshot never answers.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&[0xAB; 8], 4096).unwrap();
    drop(f);
    for _ in 0..20 {
        let r = request(&srv, "GET", "/data.bin", &[]);
        assert_eq!(&r.body[4096..4104], &[0xAB; 8], "after an in-place write");
        assert_pattern(&r.body[..4096], 0, "unchanged head");
    }
}

/// The worker's loop watches the snapshot store's change notices: the request after
/// an in-place write reads them (the old snapshot is dropped then, counted as an
/// invalidation), though no lookup reads them in a turn where none came. A file
/// above what the workers hold (fstat on every request), so only the store's own
/// notices are at stake.
#[test]
fn the_request_after_a_change_reads_the_snapshot_stores_notices() {
    let fx = Fixture::new();
    let p = fx.root().join("data.bin");
    write_pattern(&p, 128 << 10);
    let (srv, stats) = snapshot_server(&fx);
    let value = |name: &str| stat(&stats, &format!("zcopy_{name}"));
    if zcopy::Forced::from_env().switched_off("inotify") {
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    until_lent(&srv, &stats, "/data.bin", 128 << 10);
    assert_eq!(value("snapshot_invalidations_total"), 0);
    for round in 1..=3u8 {
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[round; 8], 4096).unwrap();
        drop(f);
        let r = request(&srv, "GET", "/data.bin", &[]);
        assert_eq!(&r.body[4096..4104], &[round; 8], "after write {round}");
        if round == 1 {
            assert_eq!(
                value("snapshot_invalidations_total"),
                1,
                "the change's notice was not read by the next request"
            );
        }
    }
}

/// A snapshot body lent over one keep-alive connection, many times, whole and in
/// ranges, with the client reading only after it has sent every request (so heads
/// meet a full socket): every byte is the file's. On io_uring the body leaves by
/// `sendfile(2)` on the loop, not by the ring's `splice` (which the kernel runs on a
/// worker thread of its own: a hand-off per body).
#[test]
fn snapshot_bodies_stay_exact_over_one_keep_alive_connection() {
    use std::io::Write as _;
    let fx = Fixture::new();
    write_pattern(&fx.root().join("data.bin"), 64 << 10);
    let (srv, stats) = snapshot_server(&fx);
    let value = |series: &str| stat(&stats, series);
    if no_snapshots(&srv, "/data.bin") {
        return;
    }
    // Until the snapshot is made the file is copied.
    let start = Instant::now();
    loop {
        let before = value("zcopy_body_bytes_by_reference_total");
        assert_pattern(&request(&srv, "GET", "/data.bin", &[]).body, 0, "data.bin");
        std::thread::sleep(Duration::from_millis(20));
        if value("zcopy_body_bytes_by_reference_total") - before == 64 << 10 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never lent");
    }
    let splice = "zcopy_body_bytes_total{engine=\"splice\"}";
    let (lent0, splice0) = (value("zcopy_body_bytes_by_reference_total"), value(splice));
    const N: u64 = 60;
    let ranges = |i: u64| (i * 997 % 60_000, i * 997 % 60_000 + 1 + i * 61);
    let mut req = Vec::new();
    for i in 0..N {
        if i % 3 == 1 {
            let (a, b) = ranges(i);
            req.extend_from_slice(
                format!("GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{b}\r\n\r\n")
                    .as_bytes(),
            );
        } else {
            req.extend_from_slice(b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        }
    }
    let mut s = srv.connect();
    s.write_all(&req).unwrap();
    // Let the responses fill both socket buffers before reading any.
    std::thread::sleep(Duration::from_millis(200));
    let mut want_bytes = 0;
    for i in 0..N {
        let r = read_response(&mut s, false).expect("a response");
        if i % 3 == 1 {
            let (a, b) = ranges(i);
            assert_eq!(r.status, 206, "request {i}");
            assert_eq!(r.body.len() as u64, b - a + 1, "request {i}");
            assert_pattern(&r.body, a, &format!("range of request {i}"));
        } else {
            assert_eq!(r.status, 200, "request {i}");
            assert_eq!(r.body.len(), 64 << 10, "request {i}");
            assert_pattern(&r.body, 0, &format!("body of request {i}"));
            want_bytes += 64 << 10;
        }
    }
    let start = Instant::now();
    // (Short ranges may leave with their head, from memory.)
    while value("zcopy_body_bytes_by_reference_total") - lent0 < want_bytes {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "every whole body lent: {} of {want_bytes}",
            value("zcopy_body_bytes_by_reference_total") - lent0
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if srv.io_driver() == zcopy_http::driver::IoDriver::Uring
        && zcopy::Forced::from_env()
            .limit(zcopy::EngineKind::Sendfile)
            .is_none()
    {
        assert_eq!(
            value(splice),
            splice0,
            "a snapshot goes by sendfile on io_uring"
        );
    }
}

/// A file truncated and rewritten while its variant is being sent: the client still
/// gets the one complete variant it was promised (a sealed snapshot can't change).
#[test]
fn a_variant_in_flight_survives_its_file_being_truncated() {
    use std::io::Write as _;
    let fx = Fixture::new();
    let js = script(60_000);
    let p = fx.file("app.js", &js);
    let srv = start(&fx, |c| c.snapshot_memory = 256 << 20);
    if no_snapshots(&srv, "/app.js") {
        return;
    }
    let gz = until_gzip(&srv, "/app.js", &[]);
    assert!(gz.body.len() > 256 << 10, "{}", gz.body.len());
    let mut s = srv.connect();
    s.write_all(b"GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    // Read a little, then cut the file and write something else in its place.
    let mut first = [0u8; 512];
    s.read_exact(&mut first).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::write(&p, b"rewritten").unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 65536];
    let text = String::from_utf8_lossy(&first).into_owned();
    let head_end = text.find("\r\n\r\n").expect("head in the first 512 bytes") + 4;
    let mut body = first[head_end..].to_vec();
    while body.len() + rest.len() < gz.body.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        rest.extend_from_slice(&buf[..n]);
    }
    body.extend_from_slice(&rest);
    assert!(body == gz.body, "the promised variant, whole");
    assert!(gunzip(&body) == js);
    // The next request sees the new file.
    let r = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.body, b"rewritten");
}

/// br is made too: a client that prefers it gets it once ready (gzip meanwhile, if
/// that one is ready), with its own ETag; q-values decide.
#[test]
fn a_br_variant_is_made_and_chosen_by_q_values() {
    let fx = Fixture::new();
    let css = script(3000);
    fx.file("site.css", &css);
    let srv = start(&fx, |_| {});
    if no_snapshots(&srv, "/site.css") {
        return;
    }
    let gz = until_gzip(&srv, "/site.css", &[]);
    let start = Instant::now();
    let br = loop {
        let r = request(&srv, "GET", "/site.css", &[("Accept-Encoding", "gzip, br")]);
        match r.header("content-encoding") {
            Some("br") => break r,
            Some("gzip") => assert!(r.body == gz.body, "gzip while br is made"),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no br variant");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_end(&mut out)
        .unwrap();
    assert!(out == css, "the br variant decompresses to the file");
    let etag = br.header("etag").unwrap();
    assert!(etag.ends_with("-br\""), "{etag}");
    assert_ne!(br.header("etag"), gz.header("etag"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    let q = request(
        &srv,
        "GET",
        "/site.css",
        &[("Accept-Encoding", "br;q=0.5, gzip;q=0.9")],
    );
    assert_eq!(q.header("content-encoding"), Some("gzip"));
    let nm = request(
        &srv,
        "GET",
        "/site.css",
        &[("Accept-Encoding", "br"), ("If-None-Match", etag)],
    );
    assert_eq!(nm.status, 304);
}

/// GETs `path` with `Accept-Encoding: accept` until the `want` variant comes (it is
/// made in the background), at most 30 s.
fn until_coding(srv: &TestServer, path: &str, accept: &str, want: &str) -> RawResponse {
    let start = Instant::now();
    loop {
        let r = request(srv, "GET", path, &[("Accept-Encoding", accept)]);
        if r.header("content-encoding") == Some(want) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {want} variant of {path} after 30 s: {} {:?}",
            r.status,
            r.headers
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_zstd_variant_has_its_own_etag_304_ranges_and_q_values() {
    // Was: only gzip and br variants were made; a client that accepts only zstd got
    // the identity.
    let fx = Fixture::new();
    let js = script(3500);
    fx.file("lib.js", &js);
    let srv = start(&fx, |_| {});
    if no_snapshots(&srv, "/lib.js") {
        return;
    }
    let zs = until_coding(&srv, "/lib.js", "zstd", "zstd");
    assert_eq!(zs.status, 200);
    let out = zstd::stream::decode_all(&zs.body[..]).expect("a zstd body");
    assert!(out == js, "the zstd variant decompresses to the file");
    assert!(zs.body.len() < js.len() / 4, "{} bytes", zs.body.len());
    assert_eq!(zs.header("vary"), Some("Accept-Encoding"));
    let etag = zs.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with("-zstd\""), "{etag}");
    let plain = request(&srv, "GET", "/lib.js", &[]);
    assert!(plain.body == js);
    assert_ne!(plain.header("etag"), Some(&*etag));

    variant_validators_and_ranges(&srv, "/lib.js", "zstd", &zs, plain.header("etag").unwrap());

    // q-values first, then br, zstd, gzip; identity;q=0 with zstd still gets zstd.
    let gz = until_coding(&srv, "/lib.js", "gzip", "gzip");
    let br = until_coding(&srv, "/lib.js", "br", "br");
    let pick = |accept: &str| {
        request(&srv, "GET", "/lib.js", &[("Accept-Encoding", accept)])
            .header("content-encoding")
            .map(str::to_owned)
    };
    assert_eq!(pick("gzip, zstd").as_deref(), Some("zstd"));
    assert_eq!(pick("gzip, deflate, br, zstd").as_deref(), Some("br"));
    assert_eq!(pick("zstd;q=0.5, gzip;q=0.9").as_deref(), Some("gzip"));
    assert_eq!(
        pick("br;q=0.1, zstd;q=0.8, gzip;q=0.5").as_deref(),
        Some("zstd")
    );
    assert_eq!(pick("zstd;q=0, gzip").as_deref(), Some("gzip"));
    assert_eq!(pick("identity;q=0, zstd").as_deref(), Some("zstd"));
    let etags = [&gz, &br, &zs].map(|r| r.header("etag").unwrap().to_owned());
    assert!(
        etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
        "{etags:?}"
    );
}

/// The default snapshot bands, as `zcopy serve` sets them, are chosen per peer: a hot
/// 64 KiB file goes to a loopback peer by reference from its sealed snapshot
/// (`DEFAULT_BAND_LOOPBACK`, where lending measured cheaper than a copy), while the
/// same file to a veth peer (a container's path, a local peer too) is still sent from
/// the bytes the worker holds, copied (`DEFAULT_BAND` starts above 64 KiB there).
/// Every body is the file's bytes.
#[test]
fn a_hot_64k_file_is_lent_from_a_snapshot_to_a_loopback_peer_and_copied_to_a_veth_peer() {
    use std::io::Write as _;
    use std::net::{SocketAddr, TcpStream};
    // veth peers must be classified as local (the switch is process-wide).
    let _local = VETH_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pair) = zcopy_netns::VethPair::for_test() else {
        return;
    };
    let fx = Fixture::new();
    write_pattern(&fx.root().join("hot.bin"), 64 << 10);
    let root = fx.root();
    let veth = SocketAddr::new(pair.addr_a.into(), 0);
    let (srv, stats) = pair
        .a
        .run(move || {
            TestServer::with_stats(Config {
                root,
                listen: vec!["127.0.0.1:0".parse().unwrap(), veth],
                workers: 1,
                io: io_driver(),
                snapshot_band: Some(zcopy_http::snapshot::DEFAULT_BAND),
                snapshot_band_loopback: Some(zcopy_http::snapshot::DEFAULT_BAND_LOOPBACK),
                ..Config::default()
            })
        })
        .expect("server in namespace a");
    let value = |name: &str| -> u64 {
        stats
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let by_ref = || value("zcopy_body_bytes_by_reference_total ");
    let hits = || value("zcopy_snapshot_hits_total ");
    // One GET of /hot.bin to `addr`: the body is the file's, whole.
    let get = |addr: SocketAddr| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /hot.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 64 << 10);
        assert_pattern(&r.body, 0, "hot.bin");
    };
    let (lo, ve) = (srv.addrs[0], srv.addrs[1]);
    if zcopy::Forced::from_env().switched_off("inotify") {
        pair.a.run(|| get(lo)).unwrap();
        eprintln!("skipped: inotify forced off, no snapshots are made");
        return;
    }
    // Loopback: from its second request on the snapshot is made; then it is lent.
    let start = Instant::now();
    loop {
        let (b0, h0) = (by_ref(), hits());
        pair.a.run(|| get(lo)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if by_ref() - b0 == 64 << 10 {
            assert_eq!(hits() - h0, 1, "served from the snapshot");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a 64 KiB file never lent to a loopback peer"
        );
    }
    // The veth peer: the snapshot exists, yet the body is copied, as before.
    for _ in 0..5 {
        let (b0, h0) = (by_ref(), hits());
        pair.b.run(|| get(ve)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(by_ref() - b0, 0, "copied to a veth peer");
        assert_eq!(hits() - h0, 0, "no snapshot for a veth peer at 64 KiB");
    }
    // And the loopback peer still gets it from the snapshot.
    let (b0, h0) = (by_ref(), hits());
    pair.a.run(|| get(lo)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!((by_ref() - b0, hits() - h0), (64 << 10, 1));
    srv.stop();
}
