//! Precompressed sidecars: chosen by Accept-Encoding, never from outside the root,
//! never stale, with their own validators and ranges.

use std::time::{Duration, SystemTime};

use zcopy_http::encoding::Encoding;

use crate::util::*;

const JS: &[u8] = b"console.log('identity body');\n";
const GZ: &[u8] = b"GZIP-BYTES-of-app.js";
const BR: &[u8] = b"BROTLI-BYTES-of-app.js!";

fn site(tweak: impl FnOnce(&mut zcopy_http::config::Config)) -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("app.js", JS);
    fx.file("app.js.gz", GZ);
    fx.file("app.js.br", BR);
    fx.file("plain.txt", b"no sidecar here");
    fx.file("only-gz.css", b"body{}");
    fx.file("only-gz.css.gz", b"GZ-CSS");
    fx.file("dir/index.html", b"<p>i</p>");
    fx.file("dir/index.html.gz", b"GZ-INDEX");
    // A sidecar that is a symlink out of the root, one that is a directory, and
    // one older than its original.
    fx.file("leak.txt", b"leak");
    std::os::unix::fs::symlink(
        fx.dir.path().join("secret.txt"),
        fx.root().join("leak.txt.gz"),
    )
    .unwrap();
    fx.file("dirside.txt", b"d");
    std::fs::create_dir(fx.root().join("dirside.txt.gz")).unwrap();
    fx.file("stale.txt", b"fresh original");
    let stale = fx.file("stale.txt.gz", b"STALE");
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let srv = TestServer::start(&fx.root(), tweak);
    (fx, srv)
}

#[test]
fn accept_encoding_picks_the_sidecar() {
    let (_fx, srv) = site(|_| {});
    let ae = |v: &str| request(&srv, "GET", "/app.js", &[("Accept-Encoding", v)]);

    let plain = request(&srv, "GET", "/app.js", &[]);
    assert_eq!((plain.status, &plain.body[..]), (200, JS));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let gz = ae("gzip");
    assert_eq!((gz.status, &gz.body[..]), (200, GZ));
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gz.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gz.header("content-length"), Some(&*GZ.len().to_string()));
    assert_ne!(gz.header("etag"), plain.header("etag"));

    let br = ae("gzip, deflate, br, zstd");
    assert_eq!(
        (br.header("content-encoding"), &br.body[..]),
        (Some("br"), BR)
    );
    assert_ne!(br.header("etag"), gz.header("etag"));
    // q-values: the client prefers gzip.
    let q = ae("br;q=0.1, gzip;q=0.9");
    assert_eq!(&q.body[..], GZ);
    assert_eq!(&ae("br;q=0, *").body[..], GZ);
    assert_eq!(&ae("*").body[..], BR);
    // Refusals, identity;q=0 and junk.
    for v in ["identity", "gzip;q=0, br;q=0", "*;q=0", "deflate", ""] {
        let r = ae(v);
        assert_eq!((r.status, &r.body[..]), (200, JS), "{v:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{v:?}");
    }
    for junk in [
        "gzip;q=abc",
        "gzip;q=2",
        "br;;=",
        "g z i p",
        "gzip;q=0.12345",
    ] {
        let r = ae(junk);
        assert_eq!((r.status, &r.body[..]), (200, JS), "{junk:?}");
        assert_eq!(r.header("content-encoding"), None, "{junk:?}");
    }
    // identity;q=0 with nothing else acceptable still gets the identity body
    // (RFC 9110 §12.5.3 lets the server ignore it rather than answer 406).
    let r = request(
        &srv,
        "GET",
        "/plain.txt",
        &[("Accept-Encoding", "identity;q=0")],
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"no sidecar here"[..]));

    // HEAD: the encoded representation's length, no body.
    let h = request(&srv, "HEAD", "/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(h.header("content-length"), Some(&*GZ.len().to_string()));
    assert_eq!(h.header("content-encoding"), Some("gzip"));

    // Only some codings present: the others fall back to identity, still varying.
    let css = request(&srv, "GET", "/only-gz.css", &[("Accept-Encoding", "br")]);
    assert_eq!(
        (&css.body[..], css.header("vary")),
        (&b"body{}"[..], Some("Accept-Encoding"))
    );
    let css = request(
        &srv,
        "GET",
        "/only-gz.css",
        &[("Accept-Encoding", "br, gzip")],
    );
    assert_eq!(&css.body[..], b"GZ-CSS");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    // A directory's index has sidecars too.
    let idx = request(&srv, "GET", "/dir/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (&idx.body[..], idx.header("content-encoding")),
        (&b"GZ-INDEX"[..], Some("gzip"))
    );
    assert_eq!(idx.header("content-type"), Some("text/html; charset=utf-8"));

    // A file without sidecars doesn't vary.
    let p = request(&srv, "GET", "/plain.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!(p.header("vary"), None);
    // Asking twice (the second answer may come from the per-worker memo) agrees.
    let p = request(&srv, "GET", "/plain.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (p.header("vary"), &p.body[..]),
        (None, &b"no sidecar here"[..])
    );
}

#[test]
fn ranges_and_conditionals_apply_to_the_encoded_body() {
    let (_fx, srv) = site(|_| {});
    let gz = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "gzip")]);
    let etag = gz.header("etag").unwrap().to_string();
    let r = request(
        &srv,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-3")],
    );
    assert_eq!((r.status, &r.body[..]), (206, &GZ[..4]));
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 0-3/{}", GZ.len()))
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = request(
        &srv,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("etag"), Some(&*etag));
    // The gzip ETag doesn't validate the identity representation.
    let r = request(&srv, "GET", "/app.js", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, &r.body[..]), (200, JS));
    // If-Range with the gzip ETag on an identity request: whole identity body.
    let r = request(
        &srv,
        "GET",
        "/app.js",
        &[("If-Range", &etag), ("Range", "bytes=0-1")],
    );
    assert_eq!((r.status, &r.body[..]), (200, JS));
    let r = request(
        &srv,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=999-")],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes */{}", GZ.len()))
    );
}

#[test]
fn bad_sidecars_are_ignored() {
    let (_fx, srv) = site(|_| {});
    for (path, body) in [
        ("/leak.txt", &b"leak"[..]),
        ("/dirside.txt", &b"d"[..]),
        ("/stale.txt", &b"fresh original"[..]),
    ] {
        let r = request(&srv, "GET", path, &[("Accept-Encoding", "gzip")]);
        assert_eq!((r.status, &r.body[..]), (200, body), "{path}");
        assert_eq!(r.header("content-encoding"), None, "{path}");
        assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET));
    }
    // The sidecar name itself is still an ordinary file (or a 404 for the escape).
    let r = request(&srv, "GET", "/leak.txt.gz", &[]);
    assert_eq!(r.status, 404);
    let r = request(&srv, "GET", "/app.js.gz", &[]);
    assert_eq!(
        (&r.body[..], r.header("content-type")),
        (GZ, Some("application/gzip"))
    );
}

#[test]
fn off_means_identity_and_no_vary() {
    let (_fx, srv) = site(|c| c.precompressed.clear());
    let r = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!((&r.body[..], r.header("vary")), (JS, None));
    let (_fx, srv) = site(|c| c.precompressed = vec![Encoding::Gzip]);
    let r = request(&srv, "GET", "/app.js", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(&r.body[..], GZ);
}

#[test]
fn curl_compressed_decodes_a_real_gzip_sidecar() {
    if !require("curl") || !require("gzip") {
        return;
    }
    let fx = Fixture::new();
    let text = "hello sidecar ".repeat(1000);
    let p = fx.file("t.txt", text.as_bytes());
    assert!(
        std::process::Command::new("gzip")
            .arg("-k")
            .arg(&p)
            .status()
            .unwrap()
            .success()
    );
    let srv = TestServer::start(&fx.root(), |_| {});
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--compressed", "-D", "-", &srv.url("/t.txt")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{s}"
    );
    assert!(s.ends_with(&text));
}

#[test]
fn without_the_memo_a_new_sidecar_is_seen_at_once() {
    let fx = Fixture::new();
    fx.file("late.txt", b"identity");
    let srv = TestServer::start(&fx.root(), |c| c.file_cache_ttl = Duration::ZERO);
    let r = request(&srv, "GET", "/late.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!((&r.body[..], r.header("vary")), (&b"identity"[..], None));
    fx.file("late.txt.gz", b"LATE-GZ");
    let r = request(&srv, "GET", "/late.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (&r.body[..], r.header("vary")),
        (&b"LATE-GZ"[..], Some("Accept-Encoding"))
    );
    std::fs::remove_file(fx.root().join("late.txt.gz")).unwrap();
    let r = request(&srv, "GET", "/late.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!((&r.body[..], r.header("vary")), (&b"identity"[..], None));
}

/// With the file cache on, which sidecars a path has is noted with the cached file
/// for at most the cache's TTL: a sidecar made after the first request (while the
/// file stays hot and held in memory) is served once that note runs out, and one
/// removed is no longer served. The note never outlives the cached entry.
#[test]
fn a_sidecar_made_after_the_first_request_is_served_once_the_note_runs_out() {
    let fx = Fixture::new();
    fx.file("late.txt", b"identity");
    let ttl = Duration::from_millis(300);
    // One worker, so one cache answers every connection.
    let srv = TestServer::start(&fx.root(), |c| {
        c.file_cache_ttl = ttl;
        c.workers = 1;
    });
    let get = || request(&srv, "GET", "/late.txt", &[("Accept-Encoding", "gzip")]);
    // Twice: the second is a cache hit, which notes "no sidecar" with the entry.
    for _ in 0..2 {
        let r = get();
        assert_eq!((&r.body[..], r.header("vary")), (&b"identity"[..], None));
    }
    fx.file("late.txt.gz", b"LATE-GZ");
    // Hot throughout: each turn is a hit until the entry and its note expire.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = get();
        if &r.body[..] == b"LATE-GZ" {
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            break;
        }
        assert_eq!(&r.body[..], b"identity");
        assert!(
            std::time::Instant::now() < deadline,
            "a new sidecar was still not served long after the cache TTL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And every request after that serves it (the new note says it exists).
    for _ in 0..3 {
        assert_eq!(&get().body[..], b"LATE-GZ");
    }
    std::fs::remove_file(fx.root().join("late.txt.gz")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = get();
        if &r.body[..] == b"identity" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a removed sidecar was still served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
