//! HTTP/1.1 behaviour: keep-alive, pipelining, malformed requests, limits, timeouts.

use std::io::Write;
use std::time::Duration;

use crate::util::*;

fn site() -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    fx.file("b.txt", b"BBBBBBBB");
    fx.file("sub/index.html", b"<p>index</p>");
    fx.file("a b/x.txt", b"x");
    let srv = TestServer::start(&fx.root(), |c| {
        c.header_timeout = Duration::from_secs(1);
    });
    (fx, srv)
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let (_fx, srv) = site();
    let mut s = srv.connect();
    for _ in 0..5 {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"AAAA");
        assert_eq!(r.header("connection"), None);
    }
    s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.body, b"BBBBBBBB");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s));
}

#[test]
fn pipelined_requests_get_responses_in_order() {
    let (_fx, srv) = site();
    let mut s = srv.connect();
    s.write_all(
        b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let r1 = read_response(&mut s, false).unwrap();
    let r2 = read_response(&mut s, false).unwrap();
    let r3 = read_response(&mut s, false).unwrap();
    assert_eq!((r1.status, &r1.body[..]), (200, &b"BBBBBBBB"[..]));
    assert_eq!(r2.status, 404);
    assert_eq!((r3.status, &r3.body[..]), (200, &b"AAAA"[..]));
}

#[test]
fn http10_closes_unless_keep_alive() {
    let (_fx, srv) = site();
    let (r, mut s) = raw(&srv, b"GET /a.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.body, b"AAAA");
    assert!(closed(&mut s));
    let (r, mut s) = raw(
        &srv,
        b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /b.txt HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().body, b"BBBBBBBB");
}

#[test]
fn request_bodies_are_discarded_or_refused() {
    let (_fx, srv) = site();
    let (r, mut s) = raw(
        &srv,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.body, b"AAAA");
    assert_eq!(read_response(&mut s, false).unwrap().body, b"BBBBBBBB");
    let (r, mut s) = raw(
        &srv,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(closed(&mut s));
    let (r, mut s) = raw(
        &srv,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s));
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (_fx, srv) = site();
    let cases: &[(&str, &[u8])] = &[
        ("bare LF", b"GET /a.txt HTTP/1.1\nHost: x\n\n"),
        ("bare CR", b"GET /a.txt HTTP/1.1\rHost: x\r\n\r\n"),
        ("bare CR in header", b"GET /a.txt HTTP/1.1\r\nHost: x\rY: z\r\n\r\n"),
        ("obs-fold", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("space before colon", b"GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n"),
        (
            "CL+TE",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "duplicate CL",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ),
        ("invalid CL", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        ("negative CL", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("plus CL", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n"),
        ("missing Host", b"GET /a.txt HTTP/1.1\r\n\r\n"),
        ("duplicate Host", b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("NUL in target", b"GET /a\0.txt HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("NUL in header", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"),
        ("no version", b"GET /a.txt\r\nHost: x\r\n\r\n"),
    ];
    for (what, req) in cases {
        let (r, mut s) = raw(&srv, req);
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(closed(&mut s), "{what}: connection left open");
    }
}

#[test]
fn oversized_heads_get_414_and_431() {
    let (_fx, srv) = site();
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let (r, mut s) = raw(&srv, long.as_bytes());
    assert_eq!(r.status, 414);
    assert!(closed(&mut s));
    let big = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17_000)
    );
    let (r, mut s) = raw(&srv, big.as_bytes());
    assert_eq!(r.status, 431);
    assert!(closed(&mut s));
    let mut many = String::from("GET /a.txt HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let (r, mut s) = raw(&srv, many.as_bytes());
    assert_eq!(r.status, 431);
    assert!(closed(&mut s));
}

#[test]
fn other_methods_get_405_with_allow() {
    let (_fx, srv) = site();
    for m in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let req = format!("{m} /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let (r, _) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{m}");
    }
}

#[test]
fn directories_without_slash_redirect() {
    let (_fx, srv) = site();
    let (r, _) = raw(&srv, b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/"));
    let (r, _) = raw(&srv, b"GET //sub HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/"));
    let (r, _) = raw(&srv, b"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/a%20b/"));
    let (r, _) = raw(&srv, b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>index</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // No index: a listing (on by default).
    let (r, _) = raw(&srv, b"GET /a%20b/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("href=\"x.txt\""));
}

#[test]
fn header_timeout_sends_408_while_others_are_served() {
    let (_fx, srv) = site();
    let mut slow = srv.connect();
    slow.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Another client is served meanwhile.
    let (status, _, body) = get(&srv.url("/b.txt"), &[]);
    assert_eq!((status, &body[..]), (200, &b"BBBBBBBB"[..]));
    let r = read_response(&mut slow, false).expect("a 408");
    assert_eq!(r.status, 408);
    assert!(closed(&mut slow));
}

#[test]
fn idle_keep_alive_connections_close_silently() {
    let fx = Fixture::new();
    fx.file("a.txt", b"A");
    let srv = TestServer::start(&fx.root(), |c| c.idle_timeout = Duration::from_millis(300));
    let (r, mut s) = raw(&srv, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(read_response(&mut s, false).is_none(), "silent close");
}

#[test]
fn shutdown_finishes_in_flight_responses() {
    let fx = Fixture::new();
    let len = 8u64 << 20;
    write_pattern(&fx.root().join("big.bin"), len);
    let srv = TestServer::start(&fx.root(), |_| {});
    let mut s = srv.connect();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    let addr = srv.addr;
    let stopper = std::thread::spawn(move || srv.stop());
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut body).unwrap();
    assert_eq!(body.len() as u64, len);
    assert_pattern(&body, 0, "in-flight body");
    stopper.join().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
}

/// A client that asks for a large file and never reads is dropped after the send
/// timeout; meanwhile others are served, and it never receives more than the file.
#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let fx = Fixture::new();
    let len = 64u64 << 20;
    write_pattern(&fx.root().join("big.bin"), len);
    fx.file("a.txt", b"AAAA");
    let srv = TestServer::start(&fx.root(), |c| c.send_timeout = Duration::from_millis(500));
    let mut stalled = srv.connect();
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = get(&srv.url("/a.txt"), &[]);
    assert_eq!((status, body.as_slice()), (200, &b"AAAA"[..]));
    // Well past the timeout, read what made it into the socket buffers: the head,
    // then a prefix of the body, then the end of the connection.
    std::thread::sleep(Duration::from_millis(2000));
    let head = read_response(&mut stalled, true).expect("head");
    assert_eq!(head.status, 200);
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stalled, &mut got);
    assert!(
        (got.len() as u64) < len,
        "stalled client got the whole file ({} bytes): not dropped",
        got.len()
    );
    assert_pattern(&got, 0, "prefix before the drop");
}

/// The open-file cache never serves stale metadata or content: a small file changed
/// in place or replaced by a rename is served as it is now, with a new ETag.
#[test]
fn cached_small_files_are_revalidated_on_every_request() {
    let fx = Fixture::new();
    let path = fx.file("c.txt", b"first version");
    let srv = TestServer::start(&fx.root(), |c| c.file_cache_ttl = Duration::from_secs(60));
    let (_, h1, b1) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(b1, b"first version");
    let (_, h1b, _) = get(&srv.url("/c.txt"), &[]); // a cache hit
    assert_eq!(header(&h1, "ETag"), header(&h1b, "ETag"));
    // Changed in place: same inode, new size and mtime.
    std::fs::write(&path, b"second, longer version").unwrap();
    let (_, h2, b2) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(b2, b"second, longer version");
    assert_ne!(header(&h1, "ETag"), header(&h2, "ETag"));
    // Replaced by a rename: the cached inode is unlinked.
    let tmp = fx.file("c.tmp", b"third");
    std::fs::rename(&tmp, &path).unwrap();
    let (_, h3, b3) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(b3, b"third");
    // Changed in place to the same size (a held copy must not survive this).
    std::fs::write(&path, b"THIRD").unwrap();
    let (_, h4, b4) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(b4, b"THIRD");
    assert_ne!(header(&h3, "ETag"), header(&h4, "ETag"));
    // Only its time changed: new validators, same bytes.
    std::fs::File::open(&path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let (_, h5, b5) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(b5, b"THIRD");
    assert_eq!(
        header(&h5, "Last-Modified"),
        Some("Sun, 09 Sep 2001 01:46:40 GMT")
    );
    // Deleted: 404, not the cached file.
    std::fs::remove_file(&path).unwrap();
    let (status, _, _) = get(&srv.url("/c.txt"), &[]);
    assert_eq!(status, 404);
}

/// A file between 16 and 64 KiB that the cache holds goes out from memory after its
/// head: byte-exact, whole and in ranges, on a kept-alive connection, and a change in
/// place (same size) is what the next request gets.
#[test]
fn held_medium_files_are_byte_exact_and_follow_changes() {
    let fx = Fixture::new();
    let first: Vec<u8> = (0..48 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = fx.file("m.bin", &first);
    let srv = TestServer::start(&fx.root(), |c| c.file_cache_ttl = Duration::from_secs(60));
    for _ in 0..3 {
        let (status, _, body) = get(&srv.url("/m.bin"), &[]);
        assert_eq!(status, 200);
        assert!(body == first, "whole body differs");
    }
    let (status, _, body) = get(&srv.url("/m.bin"), &[("Range", "bytes=20000-40000")]);
    assert_eq!(status, 206);
    assert!(body == first[20000..=40000], "range differs");
    let second: Vec<u8> = first.iter().map(|b| b ^ 0xff).collect();
    std::fs::write(&path, &second).unwrap();
    let (status, _, body) = get(&srv.url("/m.bin"), &[]);
    assert_eq!(status, 200);
    assert!(body == second, "the change in place was not seen");
}

/// A held file changed between two requests on one kept-alive connection is never
/// answered from the old bytes: the worker reads its change notices in a turn after
/// their fd turned readable (not in every turn), and the change came before the
/// request that follows it. One worker, so every change meets the same cache; 200
/// changes, each the same size as the last (only a notice tells them apart), some
/// made while the connection is idle and some right before the next request.
#[test]
fn a_held_file_changed_between_requests_on_one_connection_is_never_stale() {
    let fx = Fixture::new();
    let body = |i: u32| format!("version {i:06}\n").repeat(64).into_bytes();
    let path = fx.file("v.txt", &body(0));
    let srv = TestServer::start(&fx.root(), |c| {
        c.workers = 1;
        c.file_cache_ttl = Duration::from_secs(60);
    });
    let mut s = srv.connect();
    let ask = b"GET /v.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    for i in 0..200u32 {
        if i % 3 == 0 {
            // Another request first, so the next one is answered from memory again.
            s.write_all(ask).unwrap();
            read_response(&mut s, false).unwrap();
        }
        std::fs::write(&path, body(i + 1)).unwrap();
        s.write_all(ask).unwrap();
        let r = read_response(&mut s, false).expect("answered");
        assert_eq!(r.status, 200);
        assert!(r.body == body(i + 1), "change {} answered stale", i + 1);
    }
}

/// After a reload (a new file cache in each worker, with a new notice fd for the
/// loop to watch), a held file changed between requests is still never answered from
/// the old bytes, on a connection made before the reload and on one made after.
#[test]
fn after_a_reload_a_changed_held_file_is_never_stale() {
    let fx = Fixture::new();
    let body = |i: u32| format!("version {i:06}\n").repeat(64).into_bytes();
    let path = fx.file("v.txt", &body(0));
    let cfg = zcopy_http::config::Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        file_cache_ttl: Duration::from_secs(60),
        ..zcopy_http::config::Config::default()
    };
    let server = zcopy_http::server::Server::bind(cfg.clone()).expect("bind");
    let addr = server.local_addrs()[0];
    let reload = server.reload_handle();
    let srv = TestServer::adopt(addr, server.spawn().expect("spawn"));
    let ask = b"GET /v.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut before = srv.connect();
    for _ in 0..3 {
        before.write_all(ask).unwrap();
        assert_eq!(read_response(&mut before, false).unwrap().body, body(0));
    }
    reload.reload(cfg).expect("reload");
    let mut after = srv.connect();
    for i in 1..=60u32 {
        let s = if i % 2 == 0 { &mut before } else { &mut after };
        // Held again by the new cache, then changed.
        s.write_all(ask).unwrap();
        read_response(s, false).unwrap();
        std::fs::write(&path, body(i)).unwrap();
        s.write_all(ask).unwrap();
        let r = read_response(s, false).expect("answered");
        assert!(
            r.body == body(i),
            "change {i} answered stale after the reload"
        );
    }
}

/// At the connection cap a new client is served at once: an idle keep-alive
/// connection is shed first, then the client that has been sending its head longest;
/// a client with a response in flight is never shed. With nothing to shed, the new
/// client gets 503 with Retry-After instead of a wait in the backlog.
#[test]
fn at_the_cap_idle_then_slow_heads_are_shed_and_otherwise_503() {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    write_pattern(&fx.root().join("big.bin"), 32 << 20);
    let srv = TestServer::start(&fx.root(), |c| {
        c.workers = 1;
        c.max_connections = 2;
    });
    let get_a = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    // idle: one request answered, now waiting on keep-alive.
    let mut idle = srv.connect();
    idle.write_all(get_a).unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);
    // slow: half a head.
    let mut slow = srv.connect();
    slow.write_all(b"GET /a.txt HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A third client: the idle connection makes room.
    let mut third = srv.connect();
    third.write_all(get_a).unwrap();
    assert_eq!(read_response(&mut third, false).unwrap().status, 200);
    assert!(closed(&mut idle), "the idle connection was not shed");
    // `third` starts a big download and stops reading: in flight, not sheddable.
    let get_big = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    third.write_all(get_big).unwrap();
    assert_eq!(read_response(&mut third, true).unwrap().status, 200);
    // The next client takes the slow head's place.
    let mut fourth = srv.connect();
    fourth.write_all(get_big).unwrap();
    let r = read_response(&mut fourth, true).unwrap();
    assert_eq!(r.status, 200);
    assert!(closed(&mut slow), "the slow head was not shed");
    // Both slots hold responses in flight: nothing can be shed.
    let mut fifth = srv.connect();
    fifth.write_all(get_a).unwrap();
    let r = read_response(&mut fifth, false).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
}

/// The idle timeout of a keep-alive connection counts from when the client has taken
/// the last response, not from when the server finished writing it into the socket:
/// a slow reader with megabytes still queued is not cut off before its next request.
/// (Found by the soak: every slow reader of an 8 MiB file lost its connection.)
#[test]
fn a_slow_reader_keeps_its_connection_past_the_idle_timeout_while_it_reads() {
    let fx = Fixture::new();
    let len: u64 = 4 << 20;
    write_pattern(&fx.root().join("big.bin"), len);
    fx.file("a.txt", b"A");
    // The idle timer may start once the last bytes are acknowledged, i.e. while up to
    // a receive buffer (64 KiB, under one read) is still unread: the client then needs
    // one pause (60 ms) to send its next request, well inside 500 ms even on a busy
    // machine, while the body takes ~4 s to read (64 reads of at most 64 KiB), most
    // of it after the server's last write (which is what the test is about).
    let srv = TestServer::start(&fx.root(), |c| c.idle_timeout = Duration::from_millis(500));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&srv.addr.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    // Read the body slowly: well over the idle timeout after the server has written
    // its last byte into the socket.
    let mut body = vec![0u8; len as usize];
    let mut got = 0;
    while got < body.len() {
        let end = (got + 256 * 1024).min(body.len());
        let n = std::io::Read::read(&mut s, &mut body[got..end]).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_pattern(&body, 0, "slowly read body");
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("the connection was kept");
    assert_eq!(r.body, b"A");
}
