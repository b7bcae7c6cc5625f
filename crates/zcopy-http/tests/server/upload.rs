//! PUT uploads (`--upload`): byte-exact bodies received socket → file, published
//! atomically, refused where they must be.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zcopy_http::auth::Users;
use zcopy_http::driver::IoDriver;
use zcopy_http::rules::Rule;

use crate::util::*;

const DRIVERS: [IoDriver; 2] = [IoDriver::Epoll, IoDriver::Uring];

fn uploads(io: IoDriver) -> impl FnOnce(&mut zcopy_http::config::Config) {
    move |c| {
        c.io = io;
        c.upload = true;
    }
}

/// `PUT path` with `body`, head and body in one write unless `split`.
fn put(srv: &TestServer, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let mut s = srv.connect();
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
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

#[test]
fn uploads_are_off_by_default() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |_| {});
    let r = put(&srv, "/new.txt", &[], b"hello");
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| !a.contains("PUT")));
    assert!(names(&fx.root()).is_empty());
}

#[test]
fn put_is_byte_exact_and_says_created_or_replaced() {
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        if srv.io_driver() != io {
            eprintln!("{io} not available here: ran {}", srv.io_driver());
        }
        for len in [0usize, 1, 4095, 100_000, 5 << 20, 24 << 20] {
            let body = pattern(len as u64 * 3, len);
            let path = format!("/f{len}.bin");
            let r = put(&srv, &path, &[], &body);
            assert_eq!(r.status, 201, "{io}: PUT of {len} bytes");
            let got = std::fs::read(fx.root().join(&path[1..])).unwrap();
            assert_eq!(got.len(), len, "{io}: {len}");
            assert_pattern(&got, len as u64 * 3, &format!("{io}: {len}"));
            // Replaced: 204, and the new bytes.
            let body = pattern(7, len);
            let r = put(&srv, &path, &[], &body);
            assert_eq!(r.status, 204, "{io}: replacing {len} bytes");
            let (st, _, got) = get(&srv.url(&path), &[]);
            assert_eq!(st, 200);
            assert_eq!(got.len(), len);
            assert_pattern(&got, 7, &format!("{io}: {len} replaced"));
        }
        assert_eq!(names(&fx.root()).len(), 6, "{io}: no temporary file left");
    }
}

#[test]
fn expect_100_continue_is_answered_then_the_connection_goes_on() {
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        let body = pattern(0, 300_000);
        let mut s = srv.connect();
        write!(
            s,
            "PUT /c.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .unwrap();
        let want = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut interim = vec![0u8; want.len()];
        s.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, want, "{io}");
        s.write_all(&body).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 201, "{io}");
        assert_eq!(std::fs::read(fx.root().join("c.bin")).unwrap(), body);
        // Kept alive: the next request on the same connection is answered.
        s.write_all(b"GET /c.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!((r.status, r.body.len()), (200, body.len()), "{io}");
    }
}

#[test]
fn a_body_end_that_trickles_in_and_the_next_small_request_are_not_waited_for() {
    // While a body is spliced the socket's receive low-water mark is raised (up to
    // 512 KiB): it must follow the bytes still to come, so a last piece smaller
    // than the mark wakes the server, and be back at 1 for the next request head.
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        let body = pattern(0, 600_000);
        let mut s = srv.connect();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT /t.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        for piece in [&body[..1000], &body[1000..590_000], &body[590_000..599_999]] {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        s.write_all(&body[599_999..]).unwrap();
        let r = read_response(&mut s, false).expect("the PUT answered");
        assert_eq!(r.status, 201, "{io}");
        assert_eq!(std::fs::read(fx.root().join("t.bin")).unwrap(), body);
        for _ in 0..2 {
            s.write_all(b"HEAD /t.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let r = read_response(&mut s, true).expect("the next request answered");
            assert_eq!(r.status, 200, "{io}");
        }
    }
}

#[test]
fn a_large_put_starts_its_write_back_while_the_body_arrives() {
    // Every 8 MiB received, the file's write-back is started on a thread of its
    // own (sync_file_range), so the publish's fsync finds little left to write.
    const N: usize = 24 << 20;
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        let body = pattern(0, N);
        let before = zcopy::receive::writeback_kicks();
        let r = put(&srv, "/wb.bin", &[], &body);
        assert_eq!(r.status, 201, "{io}");
        let kicks = zcopy::receive::writeback_kicks() - before;
        assert!(kicks >= 1, "{io}: {kicks} write-back kicks for {N} bytes");
        assert_pattern(
            &std::fs::read(fx.root().join("wb.bin")).unwrap(),
            0,
            "wb.bin",
        );
    }
}

#[test]
fn a_body_over_max_upload_size_gets_413_before_it_is_read() {
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), |c| {
            uploads(io)(c);
            c.max_upload_size = 1 << 20;
        });
        for expect in [true, false] {
            let mut s = srv.connect();
            let mut head = format!(
                "PUT /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
                1u64 << 34
            );
            if expect {
                head.push_str("Expect: 100-continue\r\n");
            }
            head.push_str("\r\n");
            // Only the head: the answer must not wait for 16 GiB.
            s.write_all(head.as_bytes()).unwrap();
            let r = read_response(&mut s, false).expect("an answer");
            assert_eq!(r.status, 413, "{io} expect={expect}");
            assert_eq!(r.header("connection"), Some("close"), "{io}");
            assert!(closed(&mut s), "{io}: closed without reading the body");
        }
        // At the limit it is taken.
        assert_eq!(put(&srv, "/ok.bin", &[], &pattern(0, 1 << 20)).status, 201);
        assert_eq!(names(&fx.root()), ["ok.bin"]);
    }
}

#[test]
fn conditional_puts_give_412_instead_of_a_lost_update() {
    let fx = Fixture::new();
    fx.file("a.txt", b"old");
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    let inm = [("If-None-Match", "*")];
    assert_eq!(put(&srv, "/a.txt", &inm, b"new").status, 412);
    assert_eq!(std::fs::read(fx.root().join("a.txt")).unwrap(), b"old");
    assert_eq!(put(&srv, "/b.txt", &inm, b"b").status, 201);
    assert_eq!(std::fs::read(fx.root().join("b.txt")).unwrap(), b"b");

    let stale = [("If-Match", "\"1-2-3\"")];
    assert_eq!(put(&srv, "/a.txt", &stale, b"new").status, 412);
    assert_eq!(
        put(&srv, "/missing.txt", &[("If-Match", "*")], b"x").status,
        412
    );
    assert!(!fx.root().join("missing.txt").exists());
    let (_, h, _) = get(&srv.url("/a.txt"), &[]);
    let etag = header(&h, "etag").unwrap().to_owned();
    assert_eq!(
        put(&srv, "/a.txt", &[("If-Match", &etag)], b"newer").status,
        204
    );
    assert_eq!(std::fs::read(fx.root().join("a.txt")).unwrap(), b"newer");
    // The ETag changed with the file: the old one no longer matches.
    assert_eq!(
        put(&srv, "/a.txt", &[("If-Match", &etag)], b"lost").status,
        412
    );
    assert_eq!(std::fs::read(fx.root().join("a.txt")).unwrap(), b"newer");
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dropped_upload_leaves_nothing_and_the_old_file_stays() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("keep.bin", b"the old version");
        let srv = TestServer::start(&fx.root(), uploads(io));
        for name in ["new.bin", "keep.bin"] {
            let mut s = srv.connect();
            write!(
                s,
                "PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                4 << 20
            )
            .unwrap();
            s.write_all(&pattern(0, 1 << 20)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(s);
        }
        // The server notices the closed connections; nothing is published.
        std::thread::sleep(Duration::from_millis(300));
        let r = request(&srv, "GET", "/new.bin", &[]);
        assert_eq!(r.status, 404, "{io}");
        assert_eq!(names(&fx.root()), ["keep.bin"], "{io}: no temporary file");
        assert_eq!(
            std::fs::read(fx.root().join("keep.bin")).unwrap(),
            b"the old version"
        );
    }
}

#[test]
fn a_stalled_body_hits_the_body_timeout() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.send_timeout = Duration::from_secs(1);
    });
    let mut s = srv.connect();
    s.write_all(b"PUT /slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    let t = Instant::now();
    assert!(closed(&mut s), "the stalled upload's connection is closed");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    eventually("nothing left behind", || names(&fx.root()).is_empty());
}

#[test]
fn a_large_stalled_body_hits_the_body_timeout_on_both_drivers() {
    // A large body's rest is spliced on both drivers (io_uring waits for it with a
    // ring poll): a client that stops halfway is still closed at the body timeout,
    // and nothing is left under the final name or as a temporary file.
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), |c| {
            uploads(io)(c);
            c.send_timeout = Duration::from_secs(1);
        });
        let mut s = srv.connect();
        write!(
            s,
            "PUT /slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            8 << 20
        )
        .unwrap();
        s.write_all(&pattern(0, 1 << 20)).unwrap();
        let t = Instant::now();
        assert!(
            closed(&mut s),
            "{io}: the stalled upload's connection is closed"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{io}: {:?}",
            t.elapsed()
        );
        eventually("nothing left behind", || names(&fx.root()).is_empty());
        // The worker goes on serving.
        assert_eq!(put(&srv, "/next.bin", &[], b"next").status, 201, "{io}");
    }
}

#[test]
fn concurrent_puts_to_one_path_end_with_one_complete_version() {
    let fx = Fixture::new();
    let srv = Arc::new(TestServer::start(&fx.root(), uploads(io_driver())));
    let len = 2 << 20;
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let srv = srv.clone();
            std::thread::spawn(move || put(&srv, "/same.bin", &[], &vec![b'a' + i; len]).status)
        })
        .collect();
    for t in threads {
        assert!(matches!(t.join().unwrap(), 201 | 204));
    }
    let got = std::fs::read(fx.root().join("same.bin")).unwrap();
    assert_eq!(got.len(), len);
    assert!(got.iter().all(|&b| b == got[0]), "one version, never a mix");
    assert_eq!(names(&fx.root()), ["same.bin"]);
}

#[test]
fn puts_stay_beneath_the_root_and_skip_hidden_names() {
    let fx = Fixture::new();
    fx.file("dir/a.txt", b"a");
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, fx.root().join("out")).unwrap();
    std::os::unix::fs::symlink(fx.dir.path().join("secret.txt"), fx.root().join("s.txt")).unwrap();
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    // A compressed file alone is a file like any other.
    assert_eq!(put(&srv, "/dir/backup.tar.gz", &[], b"gz").status, 201);
    std::fs::remove_file(fx.root().join("dir/backup.tar.gz")).unwrap();
    for path in [
        "/out/x.txt",
        "/s.txt",
        "/.hidden",
        "/dir/.env",
        "/dir/a.txt.gz",
        "/../outside/y.txt",
        "/%2e%2e/outside/y.txt",
        "/dir/",
        "/nodir/z.txt",
    ] {
        let r = put(&srv, path, &[], b"PWNED");
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
    }
    assert!(
        names(&outside).is_empty(),
        "nothing written outside the root"
    );
    assert_eq!(
        std::fs::read(fx.dir.path().join("secret.txt")).unwrap(),
        SECRET
    );
    assert_eq!(names(&fx.root()), ["dir", "out", "s.txt"]);
    assert_eq!(names(&fx.root().join("dir")), ["a.txt"]);
    // With --hidden, a dotfile is a name like any other.
    drop(srv);
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.hidden = true;
    });
    assert_eq!(put(&srv, "/dir/.env", &[], b"x").status, 201);
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

#[test]
fn a_protected_path_needs_the_password_to_upload() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = Users::parse("files", &format!("alice:{hash}\n")).unwrap();
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.rules = vec![Rule {
            glob: "private/**".into(),
            auth: Some(Arc::new(users)),
            ..Rule::default()
        }];
    });
    std::fs::create_dir(fx.root().join("private")).unwrap();
    let get_status = request(&srv, "GET", "/private/p.txt", &[]).status;
    let r = put(&srv, "/private/p.txt", &[], b"x");
    assert_eq!((r.status, get_status), (401, 401), "what a GET gets");
    assert!(r.header("www-authenticate").is_some());
    let wrong = basic("alice", "nope");
    assert_eq!(
        put(&srv, "/private/p.txt", &[("Authorization", &wrong)], b"x").status,
        401
    );
    assert!(!fx.root().join("private/p.txt").exists());
    let good = basic("alice", "s3cret");
    assert_eq!(
        put(&srv, "/private/p.txt", &[("Authorization", &good)], b"x").status,
        201
    );
}

#[test]
fn anonymous_writes_off_loopback_need_an_auth_rule_or_the_flag() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.listen = vec!["0.0.0.0:0".parse().unwrap()];
    });
    let mut srv_local = srv.addr;
    srv_local.set_ip([127, 0, 0, 1].into());
    let put_to = |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            .unwrap();
        read_response(&mut s, false).unwrap().status
    };
    assert_eq!(put_to(srv_local), 403);
    assert!(names(&fx.root()).is_empty());
    drop(srv);
    // Uploads turned on by a rule only: the same.
    let srv = TestServer::start(&fx.root(), |c| {
        c.io = io_driver();
        c.listen = vec!["0.0.0.0:0".parse().unwrap()];
        c.rules = vec![Rule {
            glob: "**".into(),
            upload: Some(true),
            ..Rule::default()
        }];
    });
    let mut addr = srv.addr;
    addr.set_ip([127, 0, 0, 1].into());
    assert_eq!(put_to(addr), 403);
    assert!(names(&fx.root()).is_empty());
    drop(srv);
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.listen = vec!["0.0.0.0:0".parse().unwrap()];
        c.allow_anonymous_writes = true;
    });
    let mut addr = srv.addr;
    addr.set_ip([127, 0, 0, 1].into());
    assert_eq!(put_to(addr), 201);
}

#[test]
fn a_chunked_upload_is_decoded_by_copy_and_its_framing_checked() {
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), |c| {
            uploads(io)(c);
            c.max_upload_size = 400_000;
        });
        let req: &[u8] = b"PUT /c.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        // In one write, then a byte at a time.
        for (i, step) in [req.len(), 1].into_iter().enumerate() {
            let mut s = srv.connect();
            for part in req.chunks(step) {
                s.write_all(part).unwrap();
                if step == 1 {
                    s.flush().unwrap();
                }
            }
            let r = read_response(&mut s, false).unwrap();
            assert_eq!(r.status, [201, 204][i], "{io}");
            assert_eq!(
                std::fs::read(fx.root().join("c.txt")).unwrap(),
                b"hello world"
            );
        }
        // Larger, in many chunks of odd sizes, after a 100 Continue.
        let body = pattern(5, 300_001);
        let mut s = srv.connect();
        s.write_all(
            b"PUT /big.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{io}");
        let mut framed = Vec::new();
        for c in body.chunks(7919) {
            framed.extend_from_slice(format!("{:X}\r\n", c.len()).as_bytes());
            framed.extend_from_slice(c);
            framed.extend_from_slice(b"\r\n");
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        s.write_all(&framed).unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().status, 201, "{io}");
        assert_eq!(std::fs::read(fx.root().join("big.bin")).unwrap(), body);
        // Bad framing and a body over the limit: refused, nothing published.
        for (bad, status) in [
            (&b"zz\r\nhello\r\n0\r\n\r\n"[..], 400),
            (&b"3\r\nhello\r\n0\r\n\r\n"[..], 400),
            (&b"100000\r\n"[..], 413),
        ] {
            let mut req =
                b"PUT /bad.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            req.extend_from_slice(bad);
            let (r, _) = raw(&srv, &req);
            assert_eq!(r.status, status, "{io}: {}", String::from_utf8_lossy(bad));
        }
        assert_eq!(names(&fx.root()), ["big.bin", "c.txt"], "{io}");
    }
}

#[test]
fn curl_uploads_chunked_from_stdin_byte_exact() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), uploads(io_driver()));
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("s.bin");
    write_pattern(&f, 6 << 20);
    // `-T -` reads stdin: curl sends it chunked.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", "-"])
        .arg(srv.url("/s.bin"))
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    let got = std::fs::read(fx.root().join("s.bin")).unwrap();
    assert_eq!(got.len(), 6 << 20);
    assert_pattern(&got, 0, "curl -T - (chunked)");
}

#[test]
fn curl_uploads_byte_exact() {
    if !require("curl") {
        return;
    }
    for io in DRIVERS {
        let fx = Fixture::new();
        let srv = TestServer::start(&fx.root(), uploads(io));
        let src = tempfile::tempdir().unwrap();
        for len in [0u64, 1, 70_000, 20 << 20] {
            let f = src.path().join(format!("u{len}"));
            write_pattern(&f, len);
            let out = std::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
                .arg(&f)
                .arg(srv.url(&format!("/u{len}")))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "{io}: {len}");
            let got = std::fs::read(fx.root().join(format!("u{len}"))).unwrap();
            assert_eq!(got.len() as u64, len);
            assert_pattern(&got, 0, &format!("{io}: curl {len}"));
        }
    }
}

#[test]
fn a_full_disk_gives_507_and_leaves_no_file() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let fx = Fixture::new();
    let small = fx.root().join("small");
    let Some(_mounted) = small_tmpfs(&small) else {
        return;
    };
    for io in DRIVERS {
        let srv = TestServer::start(&fx.root(), uploads(io));
        let r = put(&srv, "/small/big.bin", &[], &pattern(0, 3 << 20));
        assert_eq!(r.status, 507, "{io}");
        eventually("no temporary file", || names(&small).is_empty());
        // The unnamed file's blocks come back when its last descriptor closes, which
        // a closing thread does (not the event loop): wait for them.
        eventually("the space back", || {
            rustix::fs::statvfs(&small).is_ok_and(|v| v.f_bfree * v.f_frsize >= 900 << 10)
        });
        // Space is back: a small one fits.
        assert_eq!(put(&srv, "/small/a.bin", &[], b"fits").status, 201, "{io}");
        std::fs::remove_file(small.join("a.bin")).unwrap();
    }
}

#[test]
fn a_get_during_an_upload_sees_the_old_file_or_404_never_a_part() {
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("old.bin", b"old bytes");
        let srv = TestServer::start(&fx.root(), uploads(io));
        let mut uploads = Vec::new();
        for name in ["old.bin", "new.bin"] {
            let mut s = srv.connect();
            write!(
                s,
                "PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                2 << 20
            )
            .unwrap();
            s.write_all(&pattern(0, 1 << 20)).unwrap();
            uploads.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        let (st, _, body) = get(&srv.url("/old.bin"), &[]);
        assert_eq!((st, body.as_slice()), (200, &b"old bytes"[..]), "{io}");
        assert_eq!(request(&srv, "GET", "/new.bin", &[]).status, 404, "{io}");
        for (s, want) in uploads.iter_mut().zip([204, 201]) {
            s.write_all(&pattern(1 << 20, 1 << 20)).unwrap();
            assert_eq!(read_response(s, false).unwrap().status, want, "{io}");
        }
        for name in ["/old.bin", "/new.bin"] {
            let (st, _, body) = get(&srv.url(name), &[]);
            assert_eq!((st, body.len()), (200, 2 << 20), "{io}: {name}");
            assert_pattern(&body, 0, name);
        }
    }
}

#[test]
fn a_rule_turns_uploads_on_or_off_per_path() {
    let fx = Fixture::new();
    fx.file("ro/a.txt", b"a");
    fx.file("rw/a.txt", b"a");
    let srv = TestServer::start(&fx.root(), |c| {
        c.io = io_driver();
        c.rules = vec![Rule {
            glob: "rw/**".into(),
            upload: Some(true),
            ..Rule::default()
        }];
    });
    assert_eq!(put(&srv, "/rw/b.txt", &[], b"b").status, 201);
    assert_eq!(put(&srv, "/ro/b.txt", &[], b"b").status, 405);
    assert_eq!(put(&srv, "/c.txt", &[], b"c").status, 405);
    drop(srv);
    let srv = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.rules = vec![Rule {
            glob: "ro/**".into(),
            upload: Some(false),
            ..Rule::default()
        }];
    });
    assert_eq!(put(&srv, "/ro/b.txt", &[], b"b").status, 405);
    assert_eq!(put(&srv, "/c.txt", &[], b"c").status, 201);
    // Where uploads are on, a 405 names PUT among the methods allowed.
    let r = request(&srv, "DELETE", "/c.txt", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PUT")));
    let r = request(&srv, "DELETE", "/ro/a.txt", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(names(&fx.root().join("ro")), ["a.txt"]);
}

/// The tests that upload most of a GiB run one at a time (their dirty pages and
/// write-back would otherwise add to each other's latencies).
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Regression: publishing an upload (fsync of every dirty page, link, rename) ran on
/// the event loop, and a GET to the same worker waited for the whole fsync (0.5 s
/// for a 1 GiB body here). Now the publish runs in a pool off the loop; a GET sent
/// while it syncs is answered at once.
#[test]
fn a_get_is_answered_promptly_while_a_large_upload_is_published() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    // Enough dirty data for a slow fsync (~0.4 s on this VM's disk).
    const LEN: usize = 768 << 20;
    for io in DRIVERS {
        let fx = Fixture::new();
        fx.file("small.txt", b"small and cached");
        let srv = Arc::new(TestServer::start(&fx.root(), |c| {
            uploads(io)(c);
            c.workers = 1;
            c.max_upload_size = 1 << 31;
        }));
        let sent = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicBool::new(false));
        let uploader = {
            let (srv, sent, answered) = (srv.clone(), sent.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut s = srv.connect();
                write!(
                    s,
                    "PUT /large.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n"
                )
                .unwrap();
                let chunk = pattern(0, 1 << 20);
                for _ in 0..LEN / chunk.len() {
                    s.write_all(&chunk).unwrap();
                }
                sent.store(true, Ordering::SeqCst);
                let r = read_response(&mut s, false).expect("an answer");
                answered.store(true, Ordering::SeqCst);
                r.status
            })
        };
        let mut c = srv.connect();
        while !sent.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // GETs back to back until the upload is answered: one of them is in flight
        // while the body is published.
        let (mut worst, mut gets) = (Duration::ZERO, 0);
        while !answered.load(Ordering::SeqCst) {
            let t = Instant::now();
            c.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let r = read_response(&mut c, false).expect("a GET answer");
            worst = worst.max(t.elapsed());
            gets += 1;
            assert_eq!(r.status, 200);
        }
        assert_eq!(uploader.join().unwrap(), 201, "{io}");
        let len = std::fs::metadata(fx.root().join("large.bin"))
            .unwrap()
            .len();
        assert_eq!(len, LEN as u64, "{io}");
        eprintln!("{io}: {gets} GETs during the publish, slowest {worst:?}");
        assert!(
            worst < Duration::from_millis(150),
            "{io}: a GET waited {worst:?} while an upload was published"
        );
        drop(srv);
        drop(fx);
    }
}

/// The listing page offers upload (file input, drop zone, progress bar, its script
/// from the server itself) only where uploads are allowed and would pass auth.
#[test]
fn the_listing_page_offers_upload_only_where_uploads_are_allowed() {
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    let on = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.listing = true;
    });
    let page = request(&on, "GET", "/", &[]);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("id=\"zu-files\""), "{html}");
    assert!(html.contains("<progress id=\"zu-bar\""));
    assert!(html.contains("data-webdav=\"0\""));
    assert!(html.contains("<script src=\"?asset=upload.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    let js = request(&on, "GET", "/?asset=upload.js", &[]);
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(String::from_utf8_lossy(&js.body).contains("XMLHttpRequest"));

    let off = TestServer::start(&fx.root(), |c| c.listing = true);
    let html = String::from_utf8_lossy(&request(&off, "GET", "/", &[]).body).into_owned();
    assert!(
        !html.contains("zu-files") && !html.contains("<script"),
        "{html}"
    );
    let js = request(&off, "GET", "/?asset=upload.js", &[]);
    assert!(!String::from_utf8_lossy(&js.body).contains("XMLHttpRequest"));

    // Uploads on, but a PUT here would be refused (no auth rule on a listener that
    // is not loopback): no controls either.
    let guarded = TestServer::start(&fx.root(), |c| {
        uploads(io_driver())(c);
        c.listing = true;
        c.listen = vec!["0.0.0.0:0".parse().unwrap()];
    });
    let mut addr = guarded.addr;
    addr.set_ip([127, 0, 0, 1].into());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("zu-files"));
}

/// Regression: an upload dropped mid-body had its unnamed file closed on the event
/// loop, and that last close frees every block and page of it (240 ms for 700 MiB
/// here): a GET to the same worker waited. Now the closing thread closes it.
#[test]
fn a_get_is_answered_promptly_while_a_large_dropped_upload_is_freed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    const LEN: usize = 1 << 30;
    let fx = Fixture::new();
    fx.file("small.txt", b"small and cached");
    let srv = Arc::new(TestServer::start(&fx.root(), |c| {
        uploads(IoDriver::Epoll)(c);
        c.workers = 1;
        c.max_upload_size = 1 << 31;
    }));
    let dropped = Arc::new(AtomicBool::new(false));
    let uploader = {
        let (srv, dropped) = (srv.clone(), dropped.clone());
        std::thread::spawn(move || {
            let mut s = srv.connect();
            write!(
                s,
                "PUT /large.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                LEN + 1
            )
            .unwrap();
            let chunk = pattern(0, 1 << 20);
            for _ in 0..LEN / chunk.len() {
                s.write_all(&chunk).unwrap();
            }
            // One byte short: the server drops the upload when we go.
            drop(s);
            dropped.store(true, Ordering::SeqCst);
        })
    };
    let mut c = srv.connect();
    while !dropped.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    let (mut worst, mut gets) = (Duration::ZERO, 0);
    while t0.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        c.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c, false).expect("a GET answer");
        worst = worst.max(t.elapsed());
        gets += 1;
        assert_eq!(r.status, 200);
    }
    uploader.join().unwrap();
    eprintln!("{gets} GETs after the drop, slowest {worst:?}");
    assert!(
        worst < Duration::from_millis(150),
        "a GET waited {worst:?} while a dropped upload was freed"
    );
    eventually("nothing left behind", || names(&fx.root()) == ["small.txt"]);
}
