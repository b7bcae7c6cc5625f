//! Strict message framing (RFC 9112 §6): a body is never parsed as a request, and a
//! Transfer-Encoding we can't frame is refused.

use std::io::Write;

use crate::util::*;

fn site() -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("a.txt", b"AAAA");
    fx.file("b.txt", b"BBBBBBBB");
    let srv = TestServer::start(&fx.root(), |_| {});
    (fx, srv)
}

#[test]
fn a_chunked_body_is_answered_then_closed_never_parsed_as_a_request() {
    let (_fx, srv) = site();
    let smuggled: [&[u8]; 3] = [
        // Properly chunked, and what follows the last chunk looks like a request.
        b"0\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        // A chunk whose data is a whole request.
        b"1f\r\nGET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
        // Not chunked at all: a bare request where the body should be.
        b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for (method, want) in [("GET", &b"AAAA"[..]), ("HEAD", &b""[..])] {
        for body in smuggled {
            let mut req = format!(
                "{method} /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            req.extend_from_slice(body);
            let mut s = srv.connect();
            s.write_all(&req).unwrap();
            let r = read_response(&mut s, method == "HEAD").expect("a response");
            let what = format!("{method} + {:?}", String::from_utf8_lossy(body));
            assert_eq!((r.status, &r.body[..]), (200, want), "{what}");
            assert_eq!(r.header("connection"), Some("close"), "{what}");
            // No second response: the connection ends.
            assert!(closed(&mut s), "{what}: a second response followed");
        }
    }
}

#[test]
fn transfer_encoding_other_than_one_chunked_gets_400_and_close() {
    let (_fx, srv) = site();
    for te in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
    ] {
        let req = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n0\r\n\r\n");
        let (r, mut s) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 400, "{te:?}");
        assert_eq!(r.header("connection"), Some("close"), "{te:?}");
        assert!(closed(&mut s), "{te:?}: connection left open");
    }
}

#[test]
fn a_higher_http_1_minor_version_is_served_as_1_1() {
    let (_fx, srv) = site();
    let mut s = srv.connect();
    for v in ["HTTP/1.2", "HTTP/1.9"] {
        s.write_all(format!("GET /a.txt {v}\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).expect("a response");
        assert_eq!((r.status, &r.body[..]), (200, &b"AAAA"[..]), "{v}");
        // Kept alive, as for 1.1.
        assert_eq!(r.header("connection"), None, "{v}");
    }
    let (r, _) = raw(&srv, b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 505);
}

#[test]
fn a_fragment_in_the_target_is_400() {
    let (_fx, srv) = site();
    for target in ["/a.txt#x", "/a.txt?q#", "/#/a.txt", "http://x/a.txt#f"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (r, mut s) = raw(&srv, req.as_bytes());
        assert_eq!(r.status, 400, "{target}");
        assert!(closed(&mut s), "{target}: connection left open");
    }
}
