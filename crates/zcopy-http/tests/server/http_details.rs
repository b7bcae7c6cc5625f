//! HTTP details where RFC 9110/9112 are precise (found by a differential against
//! nginx): no body in any answer to HEAD, `Expect: 100-continue` never desyncs a
//! connection, Host is checked, and the SHOULDs (501, `OPTIONS *`, absolute-form
//! with an empty path, redirects keeping the query).

use std::io::Write;
use std::time::{Duration, Instant};

use zcopy_http::access_log::LogFormat;
use zcopy_http::config::AccessLog;

use crate::util::*;

fn site() -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    fx.file("b.txt", b"BBBBBBBB");
    fx.file("sub/x.txt", b"x");
    let srv = TestServer::start(&fx.root(), |_| {});
    (fx, srv)
}

#[test]
fn error_answers_to_head_carry_no_body() {
    let (_fx, srv) = site();
    let long = format!("HEAD /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let big = format!(
        "HEAD /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17_000)
    );
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (
            413,
            b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
        ),
        (400, b"HEAD /a.txt HTTP/1.1\r\nHost : x\r\n\r\n".to_vec()),
        (400, b"\r\nHEAD /a.txt HTTP/1.1\r\n\r\n".to_vec()),
        (414, long.into_bytes()),
        (431, big.into_bytes()),
        (505, b"HEAD /a.txt HTTP/2.0\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (want, req) in cases {
        let what = String::from_utf8_lossy(&req[..req.len().min(40)]).into_owned();
        let mut s = srv.connect();
        s.write_all(&req).unwrap();
        let r = read_response(&mut s, true).expect("a response");
        assert_eq!(r.status, want, "{what}");
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        // Nothing after the head: the connection ends there.
        assert!(closed(&mut s), "{what}: a body followed the head");
    }
    // The same errors to GET still explain themselves in a body.
    let (r, _) = raw(&srv, b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 505);
    assert!(!r.body.is_empty());
}

#[test]
fn a_408_to_a_stalled_head_request_carries_no_body() {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    let srv = TestServer::start(&fx.root(), |c| {
        c.header_timeout = Duration::from_millis(300)
    });
    let mut s = srv.connect();
    s.write_all(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n").unwrap();
    let r = read_response(&mut s, true).expect("a response");
    assert_eq!(r.status, 408);
    assert!(closed(&mut s), "a body followed the 408 head");
}

#[test]
fn expect_100_continue_with_a_body_is_answered_then_closed() {
    let (_fx, srv) = site();
    // The client waits for a 100 that doesn't come, gets the 200, and sends its
    // next request instead of the body: it must not be swallowed as body bytes.
    let mut s = srv.connect();
    s.write_all(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 34\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!((r.status, &r.body[..]), (200, &b"AAAA"[..]));
    assert_eq!(r.header("connection"), Some("close"));
    let _ = s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed(&mut s),
        "the connection stayed open after a skipped body"
    );
    // Without a body there is nothing to skip: kept alive.
    let mut s = srv.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!((r.status, r.header("connection")), (200, None));
}

#[test]
fn invalid_host_values_are_400() {
    let (_fx, srv) = site();
    for host in ["", "a b", "x/y", "u@x", "x:abc", "[::1", "x:80:80", "a%zz"] {
        let req = format!("GET /a.txt HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (r, mut s) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 400, "Host: {host:?}");
        assert!(closed(&mut s), "{host:?}: connection left open");
    }
    let (r, _) = raw(&srv, b"GET http://:80/a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400, "empty authority");
    for host in ["x", "x:8080", "127.0.0.1", "[::1]:80", "a-b.example.com."] {
        let req = format!("GET /a.txt HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (r, _) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 200, "Host: {host:?}");
    }
}

#[test]
fn unknown_methods_and_transfer_codings_are_501() {
    let (_fx, srv) = site();
    for m in ["FOO", "BREW", "get", "PROPFIND"] {
        let req = format!("{m} /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let (r, _) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 501, "{m}");
    }
    for m in ["POST", "PUT", "DELETE", "PATCH", "TRACE"] {
        let req = format!("{m} /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let (r, _) = raw(&srv, req.as_bytes());
        assert_eq!(
            (r.status, r.header("allow")),
            (405, Some("GET, HEAD")),
            "{m}"
        );
    }
    for te in ["gzip, chunked", "x-zip, chunked"] {
        let req = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
        let (r, mut s) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 501, "{te}");
        assert!(closed(&mut s), "{te}: connection left open");
    }
}

#[test]
fn options_asterisk_says_what_the_server_allows() {
    let (_fx, srv) = site();
    let mut s = srv.connect();
    s.write_all(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!((r.status, r.header("allow")), (200, Some("GET, HEAD")));
    assert_eq!(r.header("content-length"), Some("0"));
    // Kept alive.
    let r = read_response(&mut s, false).expect("a second response");
    assert_eq!((r.status, &r.body[..]), (200, &b"AAAA"[..]));
    // Only OPTIONS may name the whole server.
    let (r, _) = raw(&srv, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn absolute_form_with_an_empty_path_before_a_query_is_the_root() {
    let (_fx, srv) = site();
    let (r, _) = raw(&srv, b"GET http://x?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("a.txt"),
        "not the root listing"
    );
}

#[test]
fn a_directory_redirect_keeps_the_query() {
    let (_fx, srv) = site();
    let (r, _) = raw(
        &srv,
        b"GET /sub?format=json&x=%2F HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/?format=json&x=%2F"));
    let (r, _) = raw(&srv, b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.header("location"), Some("/sub/"));
}

/// Waits (20 s at most) until the access log holds `n` lines.
fn log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
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

#[test]
fn the_json_log_escapes_c1_controls_and_keeps_what_a_refused_line_said() {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    let log = fx.root().parent().unwrap().join("access.json");
    let log2 = log.clone();
    let srv = TestServer::start(&fx.root(), move |c| {
        c.access_log = Some(AccessLog::File(log2));
        c.access_log_format = LogFormat::Json;
    });
    // U+0085 (NEL) and U+009B (CSI) in the user agent, as UTF-8.
    let (r, _) = raw(
        &srv,
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: a\u{85}b\u{9b}31mc\r\nConnection: close\r\n\r\n"
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let lines = log_lines(&log, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(r#""user_agent":"a\u0085b\u009b31mc""#),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains('\u{85}') && !lines[0].contains('\u{9b}'));
    // A 400 keeps what arrived of its request line (escaped, bounded).
    let (r, _) = raw(
        &srv,
        b"GET /a\x1b[2J.txt?q=\"x\" HTTP/1.1\r\nHost : x\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "z".repeat(9000));
    let (r, _) = raw(&srv, long.as_bytes());
    assert_eq!(r.status, 414);
    let lines = log_lines(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Each connection may land on another worker: their lines come in either order.
    let of = |status: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!(r#""status":{status}"#)))
            .unwrap_or_else(|| panic!("no {status} line in {lines:?}"))
    };
    let bad = of("400");
    assert!(
        bad.contains(r#""request":"GET /a?[2J.txt?q=\"x\" HTTP/1.1""#),
        "{bad}"
    );
    let want = format!(r#""request":"GET /{}...""#, "z".repeat(251));
    assert!(of("414").contains(&want), "{lines:?}");
}
