//! Unit tests of the connection core with the real site: bytes and events in, intents
//! out. The harness plays the driver's part of answering requests with the real
//! responder over a real directory; no socket is involved. (The core's own tests,
//! with a stub answer and no directory, are in zcopy-http1.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::FileCache;
use crate::config::Config;
use crate::driver::SiteResponder;
use crate::handler::Site;
use crate::proto::*;

/// A core with its worker: a site in a temporary directory, a buffer pool, a clock.
struct Harness {
    _dir: tempfile::TempDir,
    config: ConnConfig,
    bufs: Buffers,
    responder: SiteResponder,
    now: Instant,
    shutting_down: bool,
    log_buf: Vec<u8>,
    stats: crate::stats::WorkerStats,
}

impl Harness {
    fn new(files: &[(&str, Vec<u8>)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        let config = Config {
            root: dir.path().to_path_buf(),
            ..Config::default()
        };
        let site = Arc::new(Site::open(config.site()).unwrap());
        Harness {
            _dir: dir,
            config: config.conn(),
            bufs: Buffers::new(8),
            responder: SiteResponder {
                site,
                cache: FileCache::new(Duration::ZERO, 0),
                checks: Default::default(),
                publishes: Default::default(),
                inline_max: crate::proto::INLINE_MAX,
            },
            now: Instant::now(),
            shutting_down: false,
            log_buf: Vec::new(),
            stats: crate::stats::WorkerStats::default(),
        }
    }

    fn env(&mut self) -> crate::driver::worker::Env<'_> {
        self.parts().0
    }

    fn parts(&mut self) -> (crate::driver::worker::Env<'_>, &mut SiteResponder) {
        let env = Env {
            now: self.now,
            config: &self.config,
            shutting_down: self.shutting_down,
            bufs: &mut self.bufs,
            events: crate::driver::worker::Report {
                stats: &self.stats,
                log: None,
                log_buf: &mut self.log_buf,
            },
        };
        (env, &mut self.responder)
    }

    fn conn(&mut self, may_reference: bool) -> Conn {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        Conn::new(peer, may_reference, &self.env())
    }

    /// What the core asks next, after answering its requests and opening its archive
    /// members as a driver does.
    fn next(&mut self, c: &mut Conn) -> Intent {
        loop {
            let (mut env, site) = self.parts();
            match c.next(&mut env) {
                Intent::Request => {
                    let now = env.now;
                    c.answer(&mut env, |req, close, out| {
                        site.respond(req, close, out, now)
                    });
                }
                Intent::OpenMember => {
                    let file = c
                        .member_to_open()
                        .and_then(|(d, m)| crate::archive::open_member(d, m));
                    c.on_member(&mut env, file);
                }
                intent => return intent,
            }
        }
    }

    /// Feeds `bytes` as one read (the core must be asking to read).
    fn feed(&mut self, c: &mut Conn, bytes: &[u8]) {
        assert_eq!(self.next(c), Intent::Read);
        let buf = c.read_buf(&mut self.env());
        assert!(buf.len() >= bytes.len(), "read buffer too small");
        buf[..bytes.len()].copy_from_slice(bytes);
        c.on_read(&mut self.env(), bytes.len());
    }

    /// Takes the whole pending write (the core must be asking to write).
    fn written(&mut self, c: &mut Conn) -> (Vec<u8>, bool) {
        let Intent::Write { more } = self.next(c) else {
            panic!("expected a write, got {:?}", self.next(c));
        };
        let bytes = c.write_buf().to_vec();
        c.on_written(&mut self.env(), bytes.len());
        (bytes, more)
    }

    /// Plays the driver for a file body: sends every piece in `chunk`-byte steps
    /// from the real file, returning the bytes and whether any left by reference.
    fn body(&mut self, c: &mut Conn, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.next(c) {
                Intent::Lease => c.on_lease(true),
                Intent::Write { .. } => {
                    let b = c.write_buf().to_vec();
                    out.extend_from_slice(&b);
                    c.on_written(&mut self.env(), b.len());
                }
                Intent::SendFile {
                    offset,
                    len,
                    by_reference,
                    ..
                } => {
                    let n = (len as usize).min(chunk);
                    let mut b = vec![0u8; n];
                    let got = rustix::io::pread(&**c.file().unwrap(), &mut b, offset).unwrap();
                    out.extend_from_slice(&b[..got]);
                    c.on_file_sent(&mut self.env(), got, by_reference);
                }
                _ => return out,
            }
        }
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn split_head(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8(bytes[..end].to_vec()).unwrap(),
        &bytes[end..],
    )
}

#[test]
fn a_small_file_leaves_with_its_head_in_one_write_and_the_connection_goes_idle() {
    let mut h = Harness::new(&[("a.txt", b"hello".to_vec())]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let (bytes, more) = h.written(&mut c);
    assert!(!more);
    let (head, body) = split_head(&bytes);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 5\r\n"), "{head}");
    assert_eq!(body, b"hello");
    assert_eq!(h.next(&mut c), Intent::Read);
    assert!(c.is_idle());
    assert_eq!(c.buffered(), 0, "an idle connection holds no buffer");
    assert_eq!(c.deadline(), h.now + h.config.idle_timeout);
}

#[test]
fn pipelined_requests_are_answered_in_order_without_another_read() {
    let mut h = Harness::new(&[("a", b"AAA".to_vec()), ("b", b"BB".to_vec())]);
    let mut c = h.conn(false);
    h.feed(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    for want in [&b"AAA"[..], b"BB", b"AAA"] {
        let (bytes, _) = h.written(&mut c);
        assert_eq!(split_head(&bytes).1, want);
    }
    // The last asked to close: shut the write side, read until EOF, close.
    assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
    h.feed(&mut c, b"ignored");
    assert_eq!(h.next(&mut c), Intent::Read);
    c.on_read(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn a_head_split_across_reads_is_parsed_once_whole() {
    let mut h = Harness::new(&[("a", b"AAA".to_vec())]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a HT");
    h.feed(&mut c, b"TP/1.1\r\nHo");
    h.feed(&mut c, b"st: x\r\n\r\n");
    let (bytes, _) = h.written(&mut c);
    assert_eq!(split_head(&bytes).1, b"AAA");
}

#[test]
fn a_large_body_is_leased_and_sent_by_reference_only_to_peers_that_may_have_it() {
    let content = data(200_000);
    for may_reference in [false, true] {
        let mut h = Harness::new(&[("big", content.clone())]);
        let mut c = h.conn(may_reference);
        h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, more) = h.written(&mut c);
        assert!(more, "the body follows the head at once (MSG_MORE)");
        assert!(split_head(&head).1.is_empty());
        assert_eq!(h.next(&mut c), Intent::Lease);
        c.on_lease(true);
        assert_eq!(
            h.next(&mut c),
            Intent::SendFile {
                offset: 0,
                len: 200_000,
                leased: true,
                by_reference: may_reference,
            }
        );
        assert!(c.in_file_body());
        let body = h.body(&mut c, 65_536);
        assert_eq!(body, content);
        assert!(c.is_idle());
        let idle_deadline = h.now + h.config.idle_timeout;
        if may_reference {
            // Pages may still be queued: the file is held until the queue is empty.
            assert!(c.deadline() <= h.now);
            assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
            c.on_send_queue(&mut h.env(), 1000);
            h.now += QUEUE_CHECK;
            assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
            c.on_send_queue(&mut h.env(), 0);
        }
        assert_eq!(h.next(&mut c), Intent::Read);
        assert_eq!(c.deadline(), idle_deadline);
    }
}

#[test]
fn without_a_lease_nothing_goes_by_reference() {
    let mut h = Harness::new(&[("big", data(100_000))]);
    let mut c = h.conn(true);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(false);
    assert!(matches!(
        h.next(&mut c),
        Intent::SendFile {
            leased: false,
            by_reference: false,
            ..
        }
    ));
}

#[test]
fn multipart_ranges_interleave_part_headers_and_file_pieces() {
    let content = data(50_000);
    let mut h = Harness::new(&[("f", content.clone())]);
    let mut c = h.conn(true);
    h.feed(
        &mut c,
        b"GET /f HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,40000-40009\r\n\r\n",
    );
    let (head, more) = h.written(&mut c);
    let (head, _) = split_head(&head);
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(more);
    let mut kinds = Vec::new();
    let mut body = Vec::new();
    loop {
        let i = h.next(&mut c);
        match i {
            Intent::Write { more } => {
                kinds.push(format!("mem(more={more})"));
                let b = c.write_buf().to_vec();
                body.extend_from_slice(&b);
                c.on_written(&mut h.env(), b.len());
            }
            Intent::SendFile {
                offset,
                len,
                by_reference,
                ..
            } => {
                // A 50 KB file is shared with the cache: no lease, so copies only.
                assert!(!by_reference);
                kinds.push(format!("file({offset},{len})"));
                body.extend_from_slice(&content[offset as usize..(offset + len) as usize]);
                c.on_file_sent(&mut h.env(), len as usize, false);
            }
            _ => break,
        }
    }
    assert_eq!(
        kinds,
        [
            "mem(more=true)",
            "file(0,10)",
            "mem(more=true)",
            "file(40000,10)",
            "mem(more=false)"
        ]
    );
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Content-Range: bytes 0-9/50000"), "{text}");
    assert!(
        text.contains("Content-Range: bytes 40000-40009/50000"),
        "{text}"
    );
}

#[test]
fn a_file_that_ends_early_ends_the_connection_not_the_response() {
    let mut h = Harness::new(&[("big", data(100_000))]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(true);
    c.on_file_sent(&mut h.env(), 4096, false);
    c.on_file_sent(&mut h.env(), 0, false);
    assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
    assert!(!c.in_file_body());
    c.on_read(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn a_lease_break_drains_bytes_sent_by_reference_and_resets_if_they_stay() {
    let mut h = Harness::new(&[("big", data(100_000))]);
    let mut c = h.conn(true);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(true);
    c.on_file_sent(&mut h.env(), 8192, true);
    c.on_lease_breaking(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 8192);
    assert_eq!(h.next(&mut c), Intent::Wait);
    h.now += DRAIN;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 8192);
    assert_eq!(h.next(&mut c), Intent::Close { reset: true });
}

#[test]
fn a_lease_break_after_copies_only_closes_gracefully_at_once() {
    let mut h = Harness::new(&[("big", data(100_000))]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(true);
    c.on_file_sent(&mut h.env(), 8192, false);
    c.on_lease_breaking(&mut h.env());
    assert!(c.file().is_none(), "the file is let go at once");
    assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
}

#[test]
fn bad_requests_get_their_status_then_the_connection_closes() {
    let cases: [(&[u8], &str); 3] = [
        (b"BLAH\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 413",
        ),
        (b"GET /a HTTP/3.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505"),
    ];
    for (req, want) in cases {
        let mut h = Harness::new(&[("a", b"A".to_vec())]);
        let mut c = h.conn(false);
        h.feed(&mut c, req);
        let (bytes, _) = h.written(&mut c);
        let (head, _) = split_head(&bytes);
        assert!(head.starts_with(want), "{req:?}: {head}");
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
    }
}

#[test]
fn a_head_larger_than_the_limit_gets_431() {
    let mut h = Harness::new(&[]);
    let mut c = h.conn(false);
    let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
    req.resize(h.config.limits.max_header_bytes + 4096, b'a');
    let mut fed = 0;
    let mut status = None;
    while fed < req.len() {
        match h.next(&mut c) {
            Intent::Read => {
                let buf = c.read_buf(&mut h.env());
                let n = buf.len().min(req.len() - fed);
                buf[..n].copy_from_slice(&req[fed..fed + n]);
                fed += n;
                c.on_read(&mut h.env(), n);
            }
            Intent::Write { .. } => {
                status = Some(split_head(c.write_buf()).0[9..12].to_string());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let status = status.expect("an answer before the whole head was taken");
    assert!(status == "431" || status == "400", "{status}");
}

#[test]
fn deadlines_answer_a_stalled_head_with_408_and_close_idle_connections() {
    let mut h = Harness::new(&[("a", b"A".to_vec())]);
    // Part of a head, then silence past the header timeout: 408.
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a HTTP/1.1\r\n");
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(c.deadline(), h.now + h.config.header_timeout);
    h.now += h.config.header_timeout;
    c.on_timer(&mut h.env());
    let (bytes, _) = h.written(&mut c);
    assert!(split_head(&bytes).0.starts_with("HTTP/1.1 408"));
    // An idle keep-alive connection past the idle timeout: closed without a word.
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Read);
    h.now += h.config.idle_timeout;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn the_idle_timeout_waits_for_a_slow_reader_to_take_its_response() {
    let mut h = Harness::new(&[("a", b"A".to_vec())]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Read);
    // Idle timeout: the client is still reading (megabytes queued, shrinking).
    h.now += h.config.idle_timeout;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 3_000_000);
    assert_eq!(h.next(&mut c), Intent::Read, "kept while the queue shrinks");
    assert_eq!(c.deadline(), h.now + IDLE_RECHECK);
    h.now += IDLE_RECHECK;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 1_000_000);
    assert_eq!(h.next(&mut c), Intent::Read);
    // It has taken everything: a whole idle period starts now.
    h.now += IDLE_RECHECK;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Read);
    assert_eq!(c.deadline(), h.now + h.config.idle_timeout);
    h.now += h.config.idle_timeout;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 0);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn a_client_that_stops_reading_its_response_is_closed_at_the_idle_timeout() {
    let mut h = Harness::new(&[("a", b"A".to_vec())]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Read);
    h.now += h.config.idle_timeout;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 1_000_000);
    h.now += IDLE_RECHECK;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
    c.on_send_queue(&mut h.env(), 1_000_000);
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn a_stalled_send_is_dropped_after_the_send_timeout() {
    let mut h = Harness::new(&[("big", data(100_000))]);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(true);
    // The socket stays full: timers come, a leased send re-checks its lease.
    assert!(matches!(
        h.next(&mut c),
        Intent::SendFile { leased: true, .. }
    ));
    assert_eq!(c.deadline(), h.now + LEASE_CHECK);
    h.now += LEASE_CHECK;
    c.on_timer(&mut h.env());
    assert!(matches!(h.next(&mut c), Intent::SendFile { .. }));
    h.now += h.config.send_timeout;
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::Close { reset: false });
}

#[test]
fn at_shutdown_a_response_closes_its_connection() {
    let mut h = Harness::new(&[("a", b"A".to_vec())]);
    let mut c = h.conn(false);
    h.shutting_down = true;
    h.feed(&mut c, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let (bytes, _) = h.written(&mut c);
    assert!(split_head(&bytes).0.contains("Connection: close"));
    assert_eq!(h.next(&mut c), Intent::ShutdownWrite);
}

#[test]
fn a_request_body_is_skipped_not_parsed_as_a_request() {
    let mut h = Harness::new(&[("a", b"A".to_vec()), ("b", b"B".to_vec())]);
    let mut c = h.conn(false);
    h.feed(
        &mut c,
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (bytes, _) = h.written(&mut c);
    assert_eq!(split_head(&bytes).1, b"A");
    // The 10 body bytes hid the start of the "request" inside it: what is left is
    // not a request, so it is answered 400, never served as /b.
    let (bytes, _) = h.written(&mut c);
    assert!(split_head(&bytes).0.starts_with("HTTP/1.1 400"));
}

#[test]
fn a_rate_limited_body_is_paced_by_the_clock_not_by_sleeping() {
    let mut h = Harness::new(&[("big", data(1 << 20))]);
    h.config.limit_rate = Some(100_000);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    h.written(&mut c);
    assert_eq!(h.next(&mut c), Intent::Lease);
    c.on_lease(true);
    // The burst goes at once.
    let Intent::SendFile { len, .. } = h.next(&mut c) else {
        panic!("expected a send");
    };
    assert_eq!(len, RATE_BURST);
    c.on_file_sent(&mut h.env(), len as usize, false);
    // Then nothing until the clock says so: the core waits on a deadline.
    assert_eq!(h.next(&mut c), Intent::Wait);
    let due = c.deadline();
    assert!(due > h.now, "the wait must end in the future");
    // Half a second later, about 50 000 bytes are due.
    h.now += Duration::from_millis(500);
    c.on_timer(&mut h.env());
    let Intent::SendFile { len, offset, .. } = h.next(&mut c) else {
        panic!("expected a send");
    };
    assert_eq!(offset, RATE_BURST);
    assert!((49_000..=51_000).contains(&len), "{len}");
    c.on_file_sent(&mut h.env(), len as usize, false);
    assert_eq!(h.next(&mut c), Intent::Wait);
    // Pacing is not a stall: a whole send timeout of pacing later it is still alive.
    h.now += h.config.send_timeout;
    c.on_timer(&mut h.env());
    assert!(matches!(h.next(&mut c), Intent::SendFile { .. }));
}

#[test]
fn closing_with_pages_still_queued_by_reference_resets_instead_of_letting_the_file_go() {
    for (queued, want_reset) in [(0, false), (4096, true)] {
        let mut h = Harness::new(&[("big", data(100_000))]);
        let mut c = h.conn(true);
        h.feed(
            &mut c,
            b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        h.written(&mut c);
        assert_eq!(h.next(&mut c), Intent::Lease);
        c.on_lease(true);
        h.body(&mut c, 1 << 20); // ends with the write side shut
        // The response is done, its file held while its pages may be queued; the
        // first queue check finds them still there.
        assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
        c.on_send_queue(&mut h.env(), 4096);
        assert_eq!(h.next(&mut c), Intent::Read);
        c.on_read(&mut h.env(), 0);
        // Closing: the queue is looked at once more, then the close is graceful only
        // if nothing that references the file is left.
        assert_eq!(h.next(&mut c), Intent::CheckSendQueue);
        c.on_send_queue(&mut h.env(), queued);
        assert_eq!(h.next(&mut c), Intent::Close { reset: want_reset });
    }
}

#[test]
fn a_publish_runs_off_the_core_and_only_its_own_answer_is_taken() {
    let mut h = Harness::new(&[]);
    let site = h.responder.site.clone();
    let mut cfg = site.config.clone();
    cfg.upload = true;
    cfg.upload_needs_auth = false;
    h.responder.site = Arc::new(Site::open(cfg).unwrap());
    let mut c = h.conn(false);
    h.feed(
        &mut c,
        b"PUT /up.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(h.next(&mut c), Intent::StoreBody);
    let (file, bytes) = c.body_buffered().unwrap();
    std::io::Write::write_all(&mut &*file, bytes).unwrap();
    let n = bytes.len();
    c.on_body_stored(&mut h.env(), n);
    assert_eq!(h.next(&mut c), Intent::Publish);
    let job = c.take_publish(&mut h.env(), 7).expect("the body is whole");
    // Waiting for the answer: nothing to do, and the timer does not give up.
    assert_eq!(h.next(&mut c), Intent::Wait);
    h.now += Duration::from_secs(3600);
    c.on_timer(&mut h.env());
    assert_eq!(h.next(&mut c), Intent::Wait);
    let (resp, out) = job.run();
    assert_eq!(resp.status, 201);
    // An answer for another publish (a slot reused) is dropped.
    let mut other = crate::head::Out::default();
    other.head.status = 500;
    let stale = crate::handler::Response {
        status: 500,
        body: crate::handler::Body::InHead,
        body_len: 0,
        close: false,
    };
    c.on_published(&mut h.env(), 6, stale, other);
    assert_eq!(h.next(&mut c), Intent::Wait);
    c.on_published(&mut h.env(), 7, resp, out);
    let (bytes, _) = h.written(&mut c);
    assert!(
        bytes.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        std::fs::read(h._dir.path().join("up.txt")).unwrap(),
        b"hello"
    );
}

#[test]
fn a_held_body_leaves_with_its_head_in_one_gather_write_reported_in_any_split() {
    // 40 KB: held in the worker's memory, above the size copied into the head.
    let content = data(40_000);
    let mut h = Harness::new(&[("mid", content.clone())]);
    h.responder.cache = FileCache::new(Duration::from_secs(60), 8);
    let mut c = h.conn(false);
    h.feed(&mut c, b"GET /mid HTTP/1.1\r\nHost: x\r\n\r\n");
    let Intent::Write { more } = h.next(&mut c) else {
        panic!("expected the head");
    };
    assert!(more);
    let (bufs, more) = c.write_bufs(more);
    if bufs[1].is_empty() {
        eprintln!("skipped: the file is not held (no inotify watch here)");
        return;
    }
    assert!(!more, "the body is the last piece: nothing follows it");
    let head_len = bufs[0].len();
    assert!(
        split_head(bufs[0]).1.is_empty(),
        "the first slice is the head"
    );
    assert!(bufs[1] == &content[..], "the second is the whole body");
    let all = [bufs[0], bufs[1]].concat();
    // Report the gather write in steps that cross the head/body boundary.
    let mut sent = Vec::new();
    for n in [head_len - 3, 7, 1000] {
        let (bufs, _) = c.write_bufs(true);
        let first = [bufs[0], bufs[1]].concat();
        sent.extend_from_slice(&first[..n]);
        c.on_written(&mut h.env(), n);
    }
    // The rest goes out as the driver asks for it.
    sent.extend_from_slice(&h.body(&mut c, 4096));
    assert_eq!(sent.len(), all.len());
    assert!(
        sent == all,
        "the bytes reported written are the response, in order"
    );
}
