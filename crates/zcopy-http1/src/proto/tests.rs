//! The core alone: bytes and events in, intents out, a stub in the site's place. No
//! directory, no site, no socket (a file body comes from an anonymous temporary
//! file). The core together with the real site is tested in zcopy-http
//! (driver/core_tests.rs).

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::head::{Head, Out};
use crate::plan::{Body, BodyMem, FileBody, Member, Piece, Response};

/// What the core told its observer.
#[derive(Default)]
struct Seen {
    done: Vec<(MethodClass, u16, u64)>,
}

impl Observer for &mut Seen {
    fn keep(&self) -> Keep {
        Keep::Nothing
    }
    fn done(&mut self, d: &Done<'_>) {
        self.done.push((d.method, d.status, d.body_sent));
    }
    fn body_from_memory(&mut self, _: u64) {}
    fn truncated(&mut self) {}
    fn lease_broken(&mut self) {}
}

struct Harness {
    config: ConnConfig,
    bufs: Buffers,
    now: Instant,
    seen: Seen,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            config: ConnConfig {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                send_timeout: Duration::from_secs(30),
                limits: Limits::default(),
                max_body_discard: 1024,
                body_timeout: Duration::from_secs(10),
                limit_rate: None,
            },
            bufs: Buffers::new(8),
            now: Instant::now(),
            seen: Seen::default(),
        }
    }

    fn env(&mut self) -> Env<'_, &mut Seen> {
        Env {
            now: self.now,
            config: &self.config,
            shutting_down: false,
            bufs: &mut self.bufs,
            events: &mut self.seen,
        }
    }

    fn conn(&mut self) -> Conn {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        Conn::new(peer, true, &self.env())
    }

    fn next(&mut self, c: &mut Conn) -> Intent {
        c.next(&mut self.env())
    }

    fn feed(&mut self, c: &mut Conn, bytes: &[u8]) {
        assert_eq!(self.next(c), Intent::Read);
        let buf = c.read_buf(&mut self.env());
        buf[..bytes.len()].copy_from_slice(bytes);
        c.on_read(&mut self.env(), bytes.len());
    }

    /// Answers the request the core offers with `site`.
    fn answer(
        &mut self,
        c: &mut Conn,
        site: impl FnOnce(&Request<'_>, bool, &mut Out) -> Response,
    ) {
        assert_eq!(self.next(c), Intent::Request);
        c.answer(&mut self.env(), site);
    }

    /// Takes every pending write; also what the core asked for after them.
    fn written_then(&mut self, c: &mut Conn) -> (Vec<u8>, Intent) {
        let mut out = Vec::new();
        loop {
            match self.next(c) {
                Intent::Write { .. } => {
                    let b = c.write_buf().to_vec();
                    c.on_written(&mut self.env(), b.len());
                    out.extend_from_slice(&b);
                }
                intent => return (out, intent),
            }
        }
    }

    fn written(&mut self, c: &mut Conn) -> Vec<u8> {
        self.written_then(c).0
    }
}

/// The stub site: `text` as a 200 with its length.
fn text(text: &'static str) -> impl FnOnce(&Request<'_>, bool, &mut Out) -> Response {
    move |_, close, out| {
        let mut h = Head::start(out, 200);
        h.header_u64("Content-Length", text.len() as u64);
        h.finish();
        out.body.extend_from_slice(text.as_bytes());
        Response {
            status: 200,
            body: Body::InHead,
            body_len: text.len() as u64,
            close,
        }
    }
}

fn never(_: &Request<'_>, _: bool, _: &mut Out) -> Response {
    panic!("the site was asked");
}

fn anonymous(bytes: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn a_ready_request_is_an_event_answered_with_a_plan() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, text("hello"));
    let out = h.written(&mut c);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with(b"\r\n\r\nhello"));
    assert_eq!(h.seen.done, [(MethodClass::Get, 200, 5)]);
    assert_eq!(h.next(&mut c), Intent::Read);
    assert!(c.is_idle());
}

#[test]
fn pipelined_requests_are_offered_one_at_a_time_in_order() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut asked = Vec::new();
    for _ in 0..2 {
        h.answer(&mut c, |req, close, out| {
            asked.push(req.target.to_string());
            text("x")(req, close, out)
        });
        h.written(&mut c);
    }
    assert_eq!(asked, ["/a", "/b"]);
    assert_eq!(h.next(&mut c), Intent::Read);
}

/// Issue 18: a pipelined next request kept the whole 4 KiB read buffer while the
/// response before it was sent (on io_uring, or to a slow reader, for as long as
/// that takes). Its few bytes now move to a buffer of their own size and the read
/// buffer goes back to the pool as the response starts; the next request is still
/// answered in order, and a split one still reads on.
#[test]
fn a_pipelined_leftover_does_not_keep_the_read_buffer_while_a_response_is_sent() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let second = b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HT";
    let mut first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    first.extend_from_slice(second);
    h.feed(&mut c, &first);
    assert!(c.buffered() >= RBUF_INITIAL);
    h.answer(&mut c, text("x"));
    // The response is due (not written yet): the pool has its buffer back.
    assert!(matches!(h.next(&mut c), Intent::Write { .. }));
    let held = c.buffered();
    assert!(
        held < RBUF_INITIAL,
        "{held} bytes of buffer held for a {}-byte leftover",
        second.len()
    );
    assert_eq!(h.bufs.spare(), 1, "the read buffer went back to the pool");
    h.written(&mut c);
    let mut asked = Vec::new();
    h.answer(&mut c, |req, close, out| {
        asked.push(req.target.to_string());
        text("y")(req, close, out)
    });
    h.written(&mut c);
    // The split third head: more bytes are read after it, then it is answered.
    h.answer(&mut c, never);
    h.feed(&mut c, b"TP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, |req, close, out| {
        asked.push(req.target.to_string());
        text("z")(req, close, out)
    });
    assert!(h.written(&mut c).ends_with(b"z"));
    assert_eq!(asked, ["/b", "/c"]);
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(c.buffered(), 0, "an idle connection holds no buffer");
}

#[test]
fn a_split_head_is_offered_again_only_after_more_bytes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /a HT");
    h.answer(&mut c, never);
    // Not whole: the core asks for bytes, not for the same head again.
    assert_eq!(h.next(&mut c), Intent::Read);
    h.feed(&mut c, b"TP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, text("ok"));
    assert!(h.written(&mut c).ends_with(b"ok"));
}

#[test]
fn a_malformed_head_is_answered_by_the_core_and_closes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /a\r\n\r\n");
    h.answer(&mut c, never);
    let (out, then) = h.written_then(&mut c);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("Connection: close\r\n"), "{out}");
    assert_eq!(then, Intent::ShutdownWrite);
    assert_eq!(h.seen.done.len(), 1);
    assert_eq!(h.seen.done[0].0, MethodClass::Invalid);
}

#[test]
fn a_body_beyond_the_discard_limit_gets_413_without_the_site() {
    // (A PUT is offered to the site, which may take its body: see below.)
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    );
    h.answer(&mut c, never);
    let out = String::from_utf8(h.written(&mut c)).unwrap();
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
}

#[test]
fn a_pending_answer_keeps_the_request_until_resume() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, |_, _, _| Response::pending());
    assert_eq!(h.next(&mut c), Intent::Wait);
    assert!(h.seen.done.is_empty());
    c.resume();
    let mut target = String::new();
    h.answer(&mut c, |req, close, out| {
        target = req.target.to_string();
        text("late")(req, close, out)
    });
    assert_eq!(target, "/a");
    assert!(h.written(&mut c).ends_with(b"late"));
}

#[test]
fn a_file_body_follows_the_plan_leased_only_when_the_plan_asks() {
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    // (lease, lendable, peer may have references, lease granted): a lendable
    // (sealed) body goes by reference with no lease, even to a local peer; a file
    // only under its lease to a peer that may have references; a trusted file
    // (lendable under a tripwire lease) to a local peer too while its lease is held,
    // and is copied when the lease is refused.
    for (lease, lendable, may, granted) in [
        (true, false, true, true),
        (false, false, true, true),
        (true, false, false, true),
        (false, true, false, true),
        (true, true, false, true),
        (true, true, false, false),
    ] {
        let mut h = Harness::new();
        let mut c = h.conn();
        if !may {
            c = Conn::new("127.0.0.1:9".parse().unwrap(), false, &h.env());
        }
        h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        let file = Arc::new(anonymous(&data));
        h.answer(&mut c, |_, close, out| {
            let mut head = Head::start(out, 200);
            head.header_u64("Content-Length", data.len() as u64);
            head.finish();
            Response {
                status: 200,
                body: Body::File(FileBody {
                    file,
                    file_len: data.len() as u64,
                    pieces: vec![Piece::File {
                        start: 0,
                        len: data.len() as u64,
                    }]
                    .into(),
                    mem: BodyMem::Owned(Vec::new()),
                    members: Box::default(),
                    lease,
                    held: None,
                    lendable,
                }),
                body_len: data.len() as u64,
                close,
            }
        });
        assert!(h.written(&mut c).starts_with(b"HTTP/1.1 200 OK"));
        if lease {
            assert_eq!(h.next(&mut c), Intent::Lease);
            c.on_lease(granted);
        }
        let Intent::SendFile {
            offset,
            len,
            leased,
            by_reference,
        } = h.next(&mut c)
        else {
            panic!("expected the file");
        };
        assert_eq!((offset, len), (0, data.len() as u64));
        assert_eq!(
            (leased, by_reference),
            (
                lease && granted,
                (lease && granted && may) || (lendable && (granted || !lease))
            ),
            "lease {lease}, lendable {lendable}, may {may}, granted {granted}"
        );
        c.on_file_sent(&mut h.env(), data.len(), by_reference);
        assert_eq!(h.next(&mut c), Intent::Read);
        assert_eq!(h.seen.done, [(MethodClass::Get, 200, data.len() as u64)]);
    }
}

/// An archive-like plan: two header bytes, then member 0 opened by the caller.
fn archive(dir: File) -> impl FnOnce(&Request<'_>, bool, &mut Out) -> Response {
    move |_, close, out| {
        let mut head = Head::start(out, 200);
        head.header_u64("Content-Length", 5);
        head.finish();
        Response {
            status: 200,
            body: Body::File(FileBody {
                file: Arc::new(dir),
                file_len: 0,
                pieces: vec![Piece::Mem(0, 2), Piece::Member { index: 0, len: 3 }].into(),
                mem: BodyMem::Owned(b"ab".to_vec()),
                members: vec![Member {
                    rel: "m.txt".into(),
                    size: 3,
                }]
                .into(),
                lease: false,
                held: None,
                lendable: false,
            }),
            body_len: 5,
            close,
        }
    }
}

#[test]
fn an_archive_member_is_opened_by_the_caller_when_its_turn_comes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /d.tar HTTP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, archive(anonymous(b"")));
    let out = h.written(&mut c);
    assert!(out.ends_with(b"\r\n\r\nab"));
    assert_eq!(h.next(&mut c), Intent::OpenMember);
    let (_, m) = c.member_to_open().unwrap();
    assert_eq!(&*m.rel, "m.txt");
    c.on_member(&mut h.env(), Some(anonymous(b"xyz")));
    let Intent::SendFile { offset, len, .. } = h.next(&mut c) else {
        panic!("expected the member's bytes");
    };
    assert_eq!((offset, len), (0, 3));
    c.on_file_sent(&mut h.env(), 3, false);
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(h.seen.done, [(MethodClass::Get, 200, 5)]);
}

#[test]
fn an_archive_member_that_cannot_be_opened_cuts_the_response_short() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /d.tar HTTP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, archive(anonymous(b"")));
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::OpenMember);
    c.on_member(&mut h.env(), None);
    assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
    assert_eq!(h.seen.done, [(MethodClass::Get, 200, 2)]);
}

/// A sink that keeps its body in an anonymous file and answers 201 with the bytes
/// it holds as the body (so a test can see them).
#[derive(Debug)]
struct TestSink(File);

impl crate::plan::Sink for TestSink {
    fn file(&self) -> &File {
        &self.0
    }
    fn finish(self: Box<Self>, out: &mut Out, close: bool) -> Response {
        use std::io::{Read, Seek};
        let mut f = self.0;
        let mut got = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut got).unwrap();
        let mut h = Head::start(out, 201);
        h.header_u64("Content-Length", got.len() as u64);
        h.finish();
        out.body.extend_from_slice(&got);
        Response {
            status: 201,
            body: Body::InHead,
            body_len: got.len() as u64,
            close,
        }
    }
    fn failed(self: Box<Self>, _: &std::io::Error, out: &mut Out) -> Response {
        Response::error(
            out,
            HttpError {
                status: 507,
                reason: "full",
            },
            false,
        )
    }
}

fn receive(_: &Request<'_>, _: bool, _: &mut Out) -> Response {
    Response {
        status: 0,
        body: Body::Receive(Box::new(TestSink(tempfile::tempfile().unwrap()))),
        body_len: 0,
        close: false,
    }
}

/// Plays the driver for a body: stores buffered bytes, "receives" `more` from the
/// socket by writing them to the sink's file, publishes.
fn run_body(h: &mut Harness, c: &mut Conn, mut more: &[u8]) -> Vec<u8> {
    drive_body(h, c, |h, c, len| {
        let n = (len as usize).min(more.len()).min(7);
        let mut f = c.body_file().unwrap();
        f.write_all(&more[..n]).unwrap();
        more = &more[n..];
        c.on_body_received(&mut h.env(), n);
    })
}

/// Plays the driver for a body: stores buffered bytes, leaves each
/// `ReceiveBody { len }` to `receive`, publishes; returns everything written.
fn drive_body(
    h: &mut Harness,
    c: &mut Conn,
    mut receive: impl FnMut(&mut Harness, &mut Conn, u64),
) -> Vec<u8> {
    let mut interim = Vec::new();
    loop {
        match h.next(c) {
            Intent::Write { .. } => {
                let b = c.write_buf().to_vec();
                c.on_written(&mut h.env(), b.len());
                interim.extend_from_slice(&b);
            }
            Intent::StoreBody => {
                let (mut f, bytes) = c.body_buffered().unwrap();
                let n = f.write(bytes).unwrap();
                c.on_body_stored(&mut h.env(), n);
            }
            Intent::ReceiveBody { len } => receive(h, c, len),
            Intent::Publish => {
                c.publish(&mut h.env());
                let mut all = interim;
                all.extend_from_slice(&h.written(c));
                return all;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_accepted_body_is_stored_then_received_then_published_and_the_next_request_follows() {
    let mut h = Harness::new();
    let mut c = h.conn();
    // Part of the body with the head, the rest later; then a pipelined GET waits.
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\nfirst-",
    );
    h.answer(&mut c, receive);
    let out = run_body(&mut h, &mut c, b"then-the-rest");
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert!(out.ends_with("first-then-the-rest"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    // Kept alive: the next request is read.
    h.feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.answer(&mut c, text("ok"));
    assert!(
        String::from_utf8(h.written(&mut c))
            .unwrap()
            .ends_with("ok")
    );
}

#[test]
fn expect_100_continue_gets_a_100_only_when_the_body_is_taken() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    );
    h.answer(&mut c, receive);
    let out = String::from_utf8(run_body(&mut h, &mut c, b"abc")).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201"),
        "{out}"
    );
    // Refused: a final status at once, then close; the body is never read.
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    );
    h.answer(&mut c, text("no"));
    let (out, then) = h.written_then(&mut c);
    assert!(!String::from_utf8(out).unwrap().contains("100 Continue"));
    assert_eq!(then, Intent::ShutdownWrite);
}

#[test]
fn a_put_larger_than_the_discard_limit_is_offered_to_the_site() {
    let mut h = Harness::new();
    let mut c = h.conn();
    // 1024 is the discard limit: a GET this large gets 413 from the core, a PUT
    // goes to the site, which may take it.
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    );
    h.answer(&mut c, receive);
    let body = vec![b'z'; 5000];
    let out = run_body(&mut h, &mut c, &body);
    assert!(out.starts_with(b"HTTP/1.1 201"));
    assert!(out.ends_with(&body));
}

#[test]
fn a_body_that_stalls_or_ends_early_is_dropped_and_logged() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nab",
    );
    h.answer(&mut c, receive);
    assert_eq!(h.next(&mut c), Intent::StoreBody);
    let (mut f, bytes) = c.body_buffered().unwrap();
    let n = f.write(bytes).unwrap();
    c.on_body_stored(&mut h.env(), n);
    assert_eq!(h.next(&mut c), Intent::ReceiveBody { len: 48 });
    h.now += Duration::from_secs(11);
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
    assert_eq!(h.seen.done.last().map(|d| d.1), Some(408));

    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n",
    );
    h.answer(&mut c, receive);
    assert_eq!(h.next(&mut c), Intent::ReceiveBody { len: 50 });
    c.on_body_received(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn a_chunked_body_is_decoded_across_reads_and_bad_framing_is_refused() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab",
    );
    h.answer(&mut c, receive);
    let mut rest: &[u8] = b"cd\r\na;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\n";
    let mut interim = Vec::new();
    let out = loop {
        match h.next(&mut c) {
            Intent::Read => {
                // Three bytes a read: lines and data split everywhere.
                let n = rest.len().min(3);
                let buf = c.read_buf(&mut h.env());
                buf[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                c.on_read(&mut h.env(), n);
            }
            Intent::StoreBody => {
                let (mut f, bytes) = c.body_buffered().unwrap();
                let n = f.write(bytes).unwrap();
                c.on_body_stored(&mut h.env(), n);
            }
            Intent::Publish => {
                c.publish(&mut h.env());
                break h.written(&mut c);
            }
            Intent::Write { .. } => {
                let b = c.write_buf().to_vec();
                c.on_written(&mut h.env(), b.len());
                interim.extend_from_slice(&b);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(interim.is_empty());
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert!(out.ends_with("abcd0123456789"), "{out}");

    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    );
    h.answer(&mut c, receive);
    assert_eq!(h.next(&mut c), Intent::StoreBody);
    let (mut f, bytes) = c.body_buffered().unwrap();
    let n = f.write(bytes).unwrap();
    c.on_body_stored(&mut h.env(), n);
    let out = String::from_utf8(h.written(&mut c)).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

/// A read buffer given back keeps its initialised length, and is taken for the next
/// read before a (short) write buffer: no zeroing per request.
#[test]
fn a_read_buffer_comes_back_with_its_length() {
    let mut b = Buffers::new(4);
    b.give_filled(vec![7u8; RBUF_INITIAL]);
    b.give(Vec::with_capacity(100));
    assert_eq!(b.spare(), 2);
    assert_eq!(b.take_filled().len(), RBUF_INITIAL);
    assert!(b.take().is_empty());
    // The pool's bound counts both kinds.
    for _ in 0..6 {
        b.give_filled(vec![0u8; 16]);
    }
    assert_eq!(b.spare(), 4);
}

/// A small file whose bytes are held in memory leaves with its head in one write,
/// copied once from the held bytes (no file read, no second write).
#[test]
fn a_small_held_file_leaves_with_the_head_in_one_write() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(&mut c, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n");
    let data = b"0123456789".to_vec();
    let file = Arc::new(anonymous(&data));
    let held: Arc<[u8]> = data.clone().into();
    h.answer(&mut c, |_, close, out| {
        let mut head = Head::start(out, 200);
        head.header_u64("Content-Length", 4);
        head.finish();
        Response {
            status: 200,
            body: Body::File(FileBody {
                file,
                file_len: 10,
                pieces: vec![Piece::File { start: 3, len: 4 }].into(),
                mem: BodyMem::Owned(Vec::new()),
                members: Box::default(),
                lease: false,
                held: Some(held),
                lendable: false,
            }),
            body_len: 4,
            close,
        }
    });
    let (written, next) = h.written_then(&mut c);
    assert!(written.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(written.ends_with(b"\r\nContent-Length: 4\r\n\r\n3456"));
    assert_eq!(next, Intent::Read);
    assert_eq!(h.seen.done, [(MethodClass::Get, 200, 4)]);
}

/// Issue 18: a connection waiting with part of a head (a slowloris client's) kept a
/// whole pooled read buffer. It now holds a copy of exactly its bytes, the pooled
/// buffer back in the pool; the next read takes one again with the bytes in front.
#[test]
fn a_partial_head_waiting_for_bytes_holds_only_its_bytes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let part = b"GET /a";
    h.feed(&mut c, part);
    h.answer(&mut c, never);
    assert_eq!(h.next(&mut c), Intent::Read);
    // The driver's read found nothing more.
    c.on_read_blocked(&mut h.env());
    assert_eq!(c.buffered(), part.len(), "a copy of the head's bytes only");
    assert_eq!(h.bufs.spare(), 1, "the read buffer went back to the pool");
    // Bytes come one at a time: each read takes a pooled buffer, each wait gives it back.
    for b in b"bc" {
        h.feed(&mut c, &[*b]);
        h.answer(&mut c, never);
        assert_eq!(h.next(&mut c), Intent::Read);
        c.on_read_blocked(&mut h.env());
        assert_eq!(h.bufs.spare(), 1);
    }
    assert_eq!(c.buffered(), part.len() + 2);
    h.feed(&mut c, b" HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.buffered() >= RBUF_INITIAL, "read into a pooled buffer");
    let mut asked = None;
    h.answer(&mut c, |req, close, out| {
        asked = Some(req.target.to_string());
        text("ok")(req, close, out)
    });
    assert!(h.written(&mut c).ends_with(b"ok"));
    assert_eq!(asked.as_deref(), Some("/abc"));
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(c.buffered(), 0);
}

/// Issue 18: a read buffer grown to 64 KiB for a body read by copy went back to the
/// pool at that size and was lent again for the next head. It now comes back cut to
/// [`RBUF_INITIAL`].
#[test]
fn after_a_body_read_by_copy_the_next_head_reads_into_a_first_size_buffer() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.feed(
        &mut c,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
    );
    h.answer(&mut c, receive);
    let mut grown = 0;
    let mut more: &[u8] = b"0123456789";
    let out = drive_body(&mut h, &mut c, |h, c, _| {
        // Read by copy, as TLS and io_uring do.
        let buf = c.read_buf(&mut h.env());
        grown = grown.max(buf.len());
        let n = more.len().min(4);
        buf[..n].copy_from_slice(&more[..n]);
        more = &more[n..];
        c.on_read(&mut h.env(), n);
    });
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert_eq!(grown, POOLED_MAX, "the body was read into a grown buffer");
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(c.buffered(), 0);
    h.feed(&mut c, b"GET /a HT");
    assert_eq!(
        c.buffered(),
        RBUF_INITIAL,
        "the head's buffer is a first-size one"
    );
}

/// A write buffer that grew (a head with a small body) is cut back to
/// [`RBUF_INITIAL`] when it is lent for reading; one given back as a read buffer
/// after growing is cut back too.
#[test]
fn a_buffer_lent_for_reading_is_at_most_first_size() {
    let mut b = Buffers::new(4);
    b.give(Vec::with_capacity(20_000));
    let r = b.take_filled();
    assert_eq!(r.capacity(), RBUF_INITIAL);
    b.give_filled(vec![1u8; POOLED_MAX]);
    let r = b.take_filled();
    assert_eq!((r.len(), r.capacity()), (RBUF_INITIAL, RBUF_INITIAL));
    // Write buffers keep their size.
    b.give(Vec::with_capacity(20_000));
    assert!(b.take().capacity() >= 20_000);
}
