//! Resumable uploads: `PUT` with `Content-Range: bytes start-end/total` appends to
//! an unnamed partial the server holds; `HEAD` says in `Upload-Offset` how much it
//! holds; the part with the last byte publishes it.

use std::io::Write;
use std::time::Duration;

use zcopy_http::driver::IoDriver;

use crate::util::*;

const DRIVERS: [IoDriver; 2] = [IoDriver::Epoll, IoDriver::Uring];

fn uploads(io: IoDriver) -> impl FnOnce(&mut zcopy_http::config::Config) {
    move |c| {
        c.io = io;
        c.upload = true;
    }
}

/// `PUT path` with bytes `start..start+body.len()` of a `total`-byte file.
fn put_part(
    srv: &TestServer,
    path: &str,
    start: u64,
    total: u64,
    body: &[u8],
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut s = srv.connect();
    let end = start + body.len() as u64 - 1;
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
         Content-Range: bytes {start}-{end}/{total}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut all = req.into_bytes();
    all.extend_from_slice(body);
    s.write_all(&all).unwrap();
    read_response(&mut s, false).expect("a response")
}

fn offset(srv: &TestServer, path: &str) -> Option<u64> {
    let r = request(srv, "HEAD", path, &[]);
    r.header("upload-offset").map(|v| v.parse().unwrap())
}

#[test]
fn a_three_part_resumed_upload_is_byte_exact_and_never_shows_a_partial_file() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("other.txt", b"other");
        let srv = TestServer::start(&fx.root(), |c| {
            uploads(io)(c);
            c.listing = true;
        });
        let total = 3 << 20;
        let body = pattern(11, total);
        let total = total as u64;
        assert_eq!(offset(&srv, "/big.bin"), Some(0), "{io}: nothing held yet");
        let cuts = [0u64, 1_000_000, 2_500_000, total];
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let r = put_part(
                &srv,
                "/big.bin",
                a,
                total,
                &body[a as usize..b as usize],
                &[],
            );
            if b < total {
                assert_eq!(r.status, 202, "{io}: part {a}-{b}");
                assert_eq!(r.header("upload-offset"), Some(&*b.to_string()), "{io}");
                assert_eq!(offset(&srv, "/big.bin"), Some(b), "{io}");
                // The final name shows nothing: no file, no listing entry, no
                // temporary name on disk.
                assert_eq!(request(&srv, "GET", "/big.bin", &[]).status, 404, "{io}");
                let listing = request(&srv, "GET", "/", &[]);
                let page = String::from_utf8_lossy(&listing.body);
                assert!(!page.contains("big.bin"), "{io}: {page}");
                assert_eq!(names(&fx.root()), ["other.txt"], "{io}");
            } else {
                assert_eq!(r.status, 201, "{io}: the last part publishes");
            }
        }
        let got = std::fs::read(fx.root().join("big.bin")).unwrap();
        assert_eq!(got.len() as u64, total, "{io}");
        assert_pattern(&got, 11, &format!("{io}: resumed"));
        assert_eq!(
            offset(&srv, "/big.bin"),
            Some(0),
            "{io}: the partial is gone"
        );
        assert_eq!(names(&fx.root()), ["big.bin", "other.txt"], "{io}");
    }
}

#[test]
fn a_wrong_offset_gets_416_and_keeps_the_partial() {
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        let body = pattern(0, 3000);
        assert_eq!(
            put_part(&srv, "/f.bin", 0, 3000, &body[..1000], &[]).status,
            202
        );
        // A gap, an overlap, and a resume of nothing.
        for start in [1500u64, 500] {
            let r = put_part(
                &srv,
                "/f.bin",
                start,
                3000,
                &body[start as usize..2000],
                &[],
            );
            assert_eq!(r.status, 416, "{io}: start {start}");
            assert_eq!(r.header("upload-offset"), Some("1000"), "{io}");
        }
        let r = put_part(&srv, "/none.bin", 10, 20, &[0; 10], &[]);
        assert_eq!((r.status, r.header("upload-offset")), (416, Some("0")));
        // Malformed ranges, or a length that does not match.
        let mut s = srv.connect();
        s.write_all(
            b"PUT /f.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
              Content-Range: bytes 1000-1009/3000\r\n\r\nabc",
        )
        .unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().status, 400, "{io}");
        // The partial is intact: the upload goes on where it was.
        assert_eq!(offset(&srv, "/f.bin"), Some(1000), "{io}");
        let r = put_part(&srv, "/f.bin", 1000, 3000, &body[1000..], &[]);
        assert_eq!(r.status, 201, "{io}");
        assert_eq!(std::fs::read(fx.root().join("f.bin")).unwrap(), body);
    }
}

#[test]
fn a_cut_off_part_keeps_what_arrived_and_the_upload_resumes_from_there() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    let body = pattern(3, 4 << 20);
    let total = body.len() as u64;
    let mut s = srv.connect();
    write!(
        s,
        "PUT /cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\
         Content-Range: bytes 0-{}/{total}\r\n\r\n",
        total - 1
    )
    .unwrap();
    s.write_all(&body[..1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    let t = std::time::Instant::now();
    let held = loop {
        match offset(&srv, "/cut.bin") {
            Some(n) if n == 1 << 20 => break n,
            _ if t.elapsed() > Duration::from_secs(10) => panic!("the cut-off part is not held"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(request(&srv, "GET", "/cut.bin", &[]).status, 404);
    let r = put_part(&srv, "/cut.bin", held, total, &body[held as usize..], &[]);
    assert_eq!(r.status, 201);
    assert_eq!(std::fs::read(fx.root().join("cut.bin")).unwrap(), body);
}

#[test]
fn a_stale_partial_expires() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.upload_resume_ttl = Duration::from_millis(300);
    });
    let body = pattern(0, 2000);
    assert_eq!(
        put_part(&srv, "/s.bin", 0, 2000, &body[..1000], &[]).status,
        202
    );
    assert_eq!(offset(&srv, "/s.bin"), Some(1000));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(offset(&srv, "/s.bin"), Some(0), "expired");
    let r = put_part(&srv, "/s.bin", 1000, 2000, &body[1000..], &[]);
    assert_eq!((r.status, r.header("upload-offset")), (416, Some("0")));
    assert!(names(&fx.root()).is_empty());
}

#[test]
fn preconditions_are_checked_when_the_last_part_publishes() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    let body = pattern(0, 2000);
    let create = [("If-None-Match", "*")];
    assert_eq!(
        put_part(&srv, "/c.bin", 0, 2000, &body[..1000], &create).status,
        202
    );
    // Someone else creates the file meanwhile: the last part gets 412 and the
    // other file stays.
    fx.file("c.bin", b"theirs");
    let r = put_part(&srv, "/c.bin", 1000, 2000, &body[1000..], &create);
    assert_eq!(r.status, 412);
    assert_eq!(std::fs::read(fx.root().join("c.bin")).unwrap(), b"theirs");
    // Without the condition, the upload is published over it.
    assert_eq!(
        put_part(&srv, "/c.bin", 0, 2000, &body[..1000], &[]).status,
        202
    );
    assert_eq!(
        put_part(&srv, "/c.bin", 1000, 2000, &body[1000..], &[]).status,
        204
    );
    assert_eq!(std::fs::read(fx.root().join("c.bin")).unwrap(), body);
}

#[test]
fn resumable_parts_follow_the_put_rules() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.root().join("sub")).unwrap();
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.max_upload_size = 10_000;
    });
    // Too large in total: 413 before the body.
    assert_eq!(
        put_part(&srv, "/t.bin", 0, 20_000, &[1; 100], &[]).status,
        413
    );
    // Outside the root, dotfiles: refused as a PUT is.
    assert!(put_part(&srv, "/../x.bin", 0, 10, &[1; 5], &[]).status >= 400);
    assert_eq!(put_part(&srv, "/.hidden", 0, 10, &[1; 5], &[]).status, 403);
    assert_eq!(put_part(&srv, "/sub", 0, 10, &[1; 5], &[]).status, 405);
    // Uploads off: 405 whatever the range.
    let off = TestServer::start(&fx.root(), |_| {});
    assert_eq!(put_part(&off, "/u.bin", 0, 10, &[1; 5], &[]).status, 405);
    assert_eq!(
        request(&off, "HEAD", "/u.bin", &[]).header("upload-offset"),
        None
    );
    assert_eq!(names(&fx.root()), ["sub"]);
}

/// The documented way: a first part, `curl -I` for `Upload-Offset`, then
/// `curl -C OFFSET -T file`, which sends the rest with its Content-Range.
#[test]
fn curl_resumes_an_upload_with_dash_c() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    let body = pattern(5, 2_000_000);
    let src = fx.dir.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    assert_eq!(
        put_part(&srv, "/c.bin", 0, 2_000_000, &body[..700_000], &[]).status,
        202
    );
    let head = std::process::Command::new("curl")
        .args(["-sfI", &srv.url("/c.bin")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    let held = head
        .lines()
        .find_map(|l| l.strip_prefix("upload-offset: "))
        .expect("Upload-Offset on HEAD")
        .trim()
        .to_string();
    assert_eq!(held, "700000");
    let st = std::process::Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-C", &held, "-T"])
        .arg(&src)
        .arg(srv.url("/c.bin"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(fx.root().join("c.bin")).unwrap(), body);
    let _ = std::fs::remove_file(src);
}
