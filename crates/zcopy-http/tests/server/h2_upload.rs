//! HTTP/2 request bodies on the epoll driver (issue 21 item 2, issue 20): PUT
//! uploads and WebDAV bodies over h2c and over TLS go to the same site code as over
//! HTTP/1.1, under the same switches and rules, byte-exact, published atomically;
//! a dropped or stalled stream leaves nothing.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zcopy_http::access_log::{AccessLog, LogFormat};
use zcopy_http::auth::Users;
use zcopy_http::config::Config;
use zcopy_http::rules::Rule;
use zcopy_http2::frame::{self, Code, Header, flag, kind, setting};
use zcopy_http2::hpack;

use crate::h2::{read_frame, request_block};
use crate::tls::Pki;
use crate::util::*;

/// Uploads on, on the driver the suite runs on (`ZCOPY_IO`).
fn h2_uploads(c: &mut Config) {
    c.io = io_driver();
    c.upload = true;
}

/// curl with `args`, uploading `body` (a file, or `-` for stdin from `stdin`);
/// returns (status, HTTP version, response body).
fn curl_put(args: &[&str], url: &str, body: &Path, stdin: Option<&Path>) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o"])
        .arg(&out_path)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg("-T");
    match stdin {
        Some(p) => {
            cmd.arg("-").stdin(std::fs::File::open(p).unwrap());
        }
        None => {
            cmd.arg(body);
        }
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, version) = w.split_once(' ').unwrap_or(("0", ""));
    let bytes = std::fs::read(&out_path).unwrap_or_default();
    (code.parse().unwrap_or(0), version.to_string(), bytes)
}

/// `PUT path` of the file `body` by h2c with prior knowledge: its status.
fn h2c_put(srv: &TestServer, path: &str, body: &Path, extra: &[&str]) -> u16 {
    let mut a = vec!["--http2-prior-knowledge"];
    a.extend_from_slice(extra);
    let (code, version, _) = curl_put(&a, &srv.url(path), body, None);
    assert_eq!(version, "2", "{path}: HTTP/{version}");
    code
}

/// The same by HTTP/1.1.
fn h1_put(srv: &TestServer, path: &str, body: &Path, extra: &[&str]) -> u16 {
    let mut a = vec!["--http1.1"];
    a.extend_from_slice(extra);
    let (code, version, _) = curl_put(&a, &srv.url(path), body, None);
    assert_eq!(version, "1.1", "{path}");
    code
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bodies of 0 B, 1 byte, 100 KiB and 64 MiB, written in `dir`.
fn bodies(dir: &Path) -> Vec<(String, std::path::PathBuf, usize)> {
    [0usize, 1, 100 << 10, 64 << 20]
        .into_iter()
        .map(|len| {
            let name = format!("b{len}");
            let p = dir.join(&name);
            write_pattern(&p, len as u64);
            (name, p, len)
        })
        .collect()
}

#[test]
fn h2c_and_h2_over_tls_puts_are_byte_exact_and_say_created_or_replaced() {
    if !require("curl") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let bodies = bodies(src.path());
    // h2c with prior knowledge.
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), h2_uploads);
    for (name, path, len) in &bodies {
        assert_eq!(h2c_put(&srv, &format!("/{name}"), path, &[]), 201, "{name}");
        let got = std::fs::read(fx.root().join(name)).unwrap();
        assert_eq!(got.len(), *len, "{name}");
        assert_pattern(&got, 0, name);
        assert_eq!(h2c_put(&srv, &format!("/{name}"), path, &[]), 204, "{name}");
    }
    // A body of unknown length (curl from stdin sends no content-length).
    let (code, version, _) = curl_put(
        &["--http2-prior-knowledge"],
        &srv.url("/stdin.bin"),
        Path::new("-"),
        Some(&bodies[2].1),
    );
    assert_eq!((code, version.as_str()), (201, "2"));
    assert_eq!(
        std::fs::read(fx.root().join("stdin.bin")).unwrap(),
        std::fs::read(&bodies[2].1).unwrap()
    );
    let mut want: Vec<String> = bodies.iter().map(|b| b.0.clone()).collect();
    want.push("stdin.bin".into());
    want.sort();
    assert_eq!(names(&fx.root()), want, "no temporary file left");
    drop(srv);

    // ALPN h2 over TLS.
    let fx = Fixture::new();
    let pki = Pki::new();
    let srv = TestServer::start(&fx.root(), |c| {
        h2_uploads(c);
        c.listen = Vec::new();
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(pki.tls());
    });
    let ca = pki.ca_file();
    let port = srv.addr.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    for (name, path, len) in &bodies {
        let url = format!("https://localhost:{port}/{name}");
        let args = [
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
        ];
        let (code, version, _) = curl_put(&args, &url, path, None);
        assert_eq!((code, version.as_str()), (201, "2"), "{name}");
        let got = std::fs::read(fx.root().join(name)).unwrap();
        assert_eq!(got.len(), *len, "{name}");
        assert_pattern(&got, 0, name);
    }
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

/// Over HTTP/2 as over HTTP/1.1, a large upload's write-back starts while its body
/// arrives (every 8 MiB), so the publish's fsync finds little left to write.
#[test]
fn a_large_h2_put_starts_its_write_back_while_the_body_arrives() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("wb.bin");
    write_pattern(&src, 24 << 20);
    let before = zcopy::receive::writeback_kicks();
    assert_eq!(h2c_put(&srv, "/wb.bin", &src, &[]), 201);
    let kicks = zcopy::receive::writeback_kicks() - before;
    assert!(kicks >= 1, "{kicks} write-back kicks for 24 MiB");
    assert_pattern(
        &std::fs::read(fx.root().join("wb.bin")).unwrap(),
        0,
        "wb.bin",
    );
}

#[test]
fn h2_puts_are_refused_and_conditioned_as_over_http1() {
    if !require("curl") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let small = src.path().join("small");
    std::fs::write(&small, b"new").unwrap();
    let two_m = src.path().join("two_m");
    write_pattern(&two_m, 2 << 20);

    // Uploads off: the status HTTP/1.1 gets.
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| c.io = io_driver());
    let h1 = h1_put(&srv, "/new.txt", &small, &[]);
    assert_eq!(h1, 405);
    assert_eq!(h2c_put(&srv, "/new.txt", &small, &[]), h1);
    assert!(names(&fx.root()).is_empty());
    drop(srv);

    // A protected path: 401 without (or with a wrong) password, as over HTTP/1.1.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users = Users::parse("files", &format!("alice:{hash}\n")).unwrap();
    let fx = Fixture::new();
    std::fs::create_dir(fx.root().join("private")).unwrap();
    fx.file("a.txt", b"old");
    let srv = TestServer::start(&fx.root(), |c| {
        h2_uploads(c);
        c.max_upload_size = 1 << 20;
        c.rules = vec![Rule {
            glob: "private/**".into(),
            auth: Some(Arc::new(users)),
            ..Rule::default()
        }];
    });
    let wrong = format!("Authorization: {}", basic("alice", "nope"));
    let good = format!("Authorization: {}", basic("alice", "s3cret"));
    for extra in [&[][..], &["-H", &wrong][..]] {
        let h1 = h1_put(&srv, "/private/p.txt", &small, extra);
        assert_eq!(h1, 401);
        assert_eq!(h2c_put(&srv, "/private/p.txt", &small, extra), h1);
    }
    assert!(!fx.root().join("private/p.txt").exists());
    assert_eq!(h2c_put(&srv, "/private/p.txt", &small, &["-H", &good]), 201);
    assert_eq!(
        std::fs::read(fx.root().join("private/p.txt")).unwrap(),
        b"new"
    );

    // --max-upload-size: 413 as over HTTP/1.1 (over HTTP/2 the stream is then
    // reset NO_ERROR, RFC 9113 §8.1, which curl 7.88 reports as error 92 instead
    // of the 413: `a_413_comes_before_the_body...` checks it frame by frame).
    assert_eq!(h1_put(&srv, "/big.bin", &two_m, &[]), 413);
    assert!(!fx.root().join("big.bin").exists());
    // Dotfiles, as over HTTP/1.1.
    let h1 = h1_put(&srv, "/.env", &small, &[]);
    assert_eq!(h1, 403);
    assert_eq!(h2c_put(&srv, "/.env", &small, &[]), h1);

    // Conditional PUT: 412 instead of a lost update.
    let inm = ["-H", "If-None-Match: *"];
    assert_eq!(h2c_put(&srv, "/a.txt", &small, &inm), 412);
    assert_eq!(std::fs::read(fx.root().join("a.txt")).unwrap(), b"old");
    assert_eq!(h2c_put(&srv, "/b.txt", &small, &inm), 201);
    assert_eq!(
        h2c_put(&srv, "/missing.txt", &small, &["-H", "If-Match: *"]),
        412
    );
    assert_eq!(
        names(&fx.root()),
        ["a.txt", "b.txt", "private"],
        "nothing else written"
    );
}

/// A client writing frames by hand.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    dec: hpack::Decoder,
}

/// One stream's answer: status, fields, body, and the RST_STREAM codes seen on it.
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    resets: Vec<Code>,
    ended: bool,
}

impl Raw {
    fn open(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Raw {
            s,
            buf: Vec::new(),
            dec: hpack::Decoder::new(4096, 1 << 20),
        };
        let mut b = frame::PREFACE.to_vec();
        frame::write_settings(&mut b, &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
        c.s.write_all(&b).unwrap();
        c
    }

    fn headers(&mut self, id: u32, method: &str, path: &str, extra: &[(&str, &str)], end: bool) {
        let mut b = Vec::new();
        let f = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            f,
            id,
            &request_block(method, path, extra),
        );
        self.s.write_all(&b).unwrap();
    }

    /// `data` in DATA frames of at most 16 KiB (within the server's windows: the
    /// callers send at most 1 MiB per stream).
    fn data(&mut self, id: u32, data: &[u8], end: bool) {
        let mut b = Vec::new();
        let n = data.chunks(16_384).count();
        for (i, d) in data.chunks(16_384).enumerate() {
            let f = if end && i + 1 == n {
                flag::END_STREAM
            } else {
                0
            };
            frame::write_frame(&mut b, kind::DATA, f, id, d);
        }
        if data.is_empty() && end {
            frame::write_frame(&mut b, kind::DATA, flag::END_STREAM, id, &[]);
        }
        self.s.write_all(&b).unwrap();
    }

    fn frame(&mut self) -> Option<(Header, Vec<u8>)> {
        read_frame(&mut self.s, &mut self.buf)
    }

    /// Reads until a HEADERS frame on stream `id` comes: its status.
    fn answer_interim(&mut self, id: u32) -> u16 {
        loop {
            let (h, p) = self.frame().expect("a frame");
            match h.kind {
                kind::SETTINGS if h.flags & flag::ACK == 0 => {
                    let mut b = Vec::new();
                    frame::write_frame(&mut b, kind::SETTINGS, flag::ACK, 0, &[]);
                    let _ = self.s.write_all(&b);
                }
                kind::HEADERS => {
                    let fields = self.dec.decode(&p).unwrap().fields;
                    if h.stream == id {
                        assert_eq!(h.flags & flag::END_STREAM, 0, "an interim answer");
                        return std::str::from_utf8(&fields[0].1).unwrap().parse().unwrap();
                    }
                }
                kind::RST_STREAM | kind::GOAWAY => panic!("{h:?} {p:?}"),
                _ => {}
            }
        }
    }

    /// Reads until stream `id` has ended and been reset or `linger` has passed after
    /// its end (a reset may follow it), or the connection closes.
    fn answer(&mut self, id: u32, linger: Duration) -> Answer {
        let mut a = Answer::default();
        let mut ended_at: Option<Instant> = None;
        let start = Instant::now();
        loop {
            if ended_at.is_some_and(|t| t.elapsed() >= linger) || !a.resets.is_empty() {
                return a;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no answer: {a:?}"
            );
            let wait = if ended_at.is_some() {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(20)
            };
            self.s.set_read_timeout(Some(wait)).unwrap();
            let Some((h, p)) = self.frame() else {
                if ended_at.is_some() {
                    continue;
                }
                return a;
            };
            match h.kind {
                kind::SETTINGS if h.flags & flag::ACK == 0 => {
                    let mut b = Vec::new();
                    frame::write_frame(&mut b, kind::SETTINGS, flag::ACK, 0, &[]);
                    let _ = self.s.write_all(&b);
                }
                kind::HEADERS => {
                    let fields = self.dec.decode(&p).unwrap().fields;
                    if h.stream != id {
                        continue;
                    }
                    for (n, v) in fields {
                        let (n, v) = (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap());
                        if n == ":status" {
                            a.status = v.parse().unwrap();
                        } else {
                            a.fields.push((n, v));
                        }
                    }
                    if h.flags & flag::END_STREAM != 0 {
                        a.ended = true;
                        ended_at = Some(Instant::now());
                    }
                }
                kind::DATA if h.stream == id => {
                    a.body.extend_from_slice(&p);
                    if h.flags & flag::END_STREAM != 0 {
                        a.ended = true;
                        ended_at = Some(Instant::now());
                    }
                }
                kind::RST_STREAM if h.stream == id => {
                    a.resets
                        .push(Code::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])));
                }
                kind::GOAWAY => panic!("GOAWAY {p:?}"),
                _ => {}
            }
        }
    }
}

#[test]
fn a_413_comes_before_the_body_and_the_stream_is_reset_no_error() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        h2_uploads(c);
        c.max_upload_size = 1 << 20;
    });
    let mut c = Raw::open(srv.addr);
    // Only the head: the answer must not wait for 16 GiB.
    let len = (1u64 << 34).to_string();
    c.headers(1, "PUT", "/big.bin", &[("content-length", &len)], false);
    let a = c.answer(1, Duration::from_secs(2));
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.ended, "{a:?}");
    // The peer is asked to stop sending (RFC 9113 §8.1), without error.
    assert_eq!(a.resets, [Code::NoError], "{a:?}");
    // The connection goes on: the body it had in flight is dropped, and a PUT
    // within the limit is taken.
    c.data(1, &pattern(0, 100_000), false);
    let body = pattern(7, 1 << 20);
    c.headers(3, "PUT", "/ok.bin", &[("content-length", "1048576")], false);
    c.data(3, &body, true);
    let a = c.answer(3, Duration::from_millis(300));
    assert_eq!((a.status, &a.resets[..]), (201, &[][..]), "{a:?}");
    assert_eq!(std::fs::read(fx.root().join("ok.bin")).unwrap(), body);
    // A body of unknown length that grows past the limit: 413 once it does, the
    // stream reset, nothing written.
    c.headers(5, "PUT", "/grown.bin", &[], false);
    c.data(5, &pattern(0, 1 << 20), false);
    std::thread::sleep(Duration::from_millis(200));
    c.data(5, &pattern(0, 64 << 10), false);
    let a = c.answer(5, Duration::from_secs(2));
    assert_eq!(
        (a.status, &a.resets[..]),
        (413, &[Code::NoError][..]),
        "{a:?}"
    );
    eventually("nothing left of it", || names(&fx.root()) == ["ok.bin"]);
}

#[test]
fn a_dropped_h2_upload_leaves_nothing_under_its_name() {
    let fx = Fixture::new();
    fx.file("keep.bin", b"the old version");
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let len = (4u64 << 20).to_string();
    for name in ["new.bin", "keep.bin"] {
        // Reset mid-body: the connection goes on, a GET on it is answered.
        let mut c = Raw::open(srv.addr);
        c.headers(
            1,
            "PUT",
            &format!("/{name}"),
            &[("content-length", &len)],
            false,
        );
        c.data(1, &pattern(0, 1 << 20), false);
        let mut b = Vec::new();
        frame::write_rst(&mut b, 1, Code::Cancel);
        c.s.write_all(&b).unwrap();
        c.headers(3, "GET", &format!("/{name}"), &[], true);
        let a = c.answer(3, Duration::ZERO);
        let want = if name == "new.bin" { 404 } else { 200 };
        assert_eq!(a.status, want, "{name}: {a:?}");
        // The connection closed mid-body.
        let mut c = Raw::open(srv.addr);
        c.headers(
            1,
            "PUT",
            &format!("/{name}"),
            &[("content-length", &len)],
            false,
        );
        c.data(1, &pattern(0, 1 << 20), false);
        std::thread::sleep(Duration::from_millis(100));
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(request(&srv, "GET", "/new.bin", &[]).status, 404);
    eventually("no temporary file", || names(&fx.root()) == ["keep.bin"]);
    assert_eq!(
        std::fs::read(fx.root().join("keep.bin")).unwrap(),
        b"the old version"
    );
}

#[test]
fn a_stalled_h2_body_hits_the_body_timeout() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), |c| {
        h2_uploads(c);
        c.send_timeout = Duration::from_secs(1);
    });
    let mut c = Raw::open(srv.addr);
    c.headers(1, "PUT", "/slow.bin", &[("content-length", "1000")], false);
    c.data(1, b"abc", false);
    let t = Instant::now();
    let a = c.answer(1, Duration::from_secs(1));
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.resets, [Code::NoError], "{a:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    eventually("nothing left behind", || names(&fx.root()).is_empty());
}

#[test]
fn expect_100_continue_over_h2_is_answered_when_the_upload_is_taken() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let mut c = Raw::open(srv.addr);
    let exp = ("expect", "100-continue");
    // Taken: 100 first (the body held back until then), then the final answer.
    c.headers(1, "PUT", "/e.bin", &[("content-length", "5"), exp], false);
    let a = c.answer_interim(1);
    assert_eq!(a, 100);
    c.data(1, b"hello", true);
    let a = c.answer(1, Duration::ZERO);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(std::fs::read(fx.root().join("e.bin")).unwrap(), b"hello");
    // Refused (a dotfile): the final answer straight away, no 100.
    c.headers(3, "PUT", "/.e", &[("content-length", "5"), exp], false);
    let a = c.answer(3, Duration::from_millis(200));
    assert_eq!(a.status, 403, "{a:?}");
}

#[test]
fn a_resumable_put_continues_over_h2() {
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let body = pattern(3, 300_000);
    let mut c = Raw::open(srv.addr);
    let cr = "bytes 0-99999/300000";
    c.headers(
        1,
        "PUT",
        "/r.bin",
        &[("content-length", "100000"), ("content-range", cr)],
        false,
    );
    c.data(1, &body[..100_000], true);
    let a = c.answer(1, Duration::ZERO);
    assert_eq!(a.status, 202, "{a:?}");
    let offset = a.fields.iter().find(|(n, _)| n == "upload-offset");
    assert_eq!(offset.map(|(_, v)| v.as_str()), Some("100000"));
    assert!(!fx.root().join("r.bin").exists());
    let cr = "bytes 100000-299999/300000";
    c.headers(
        3,
        "PUT",
        "/r.bin",
        &[("content-length", "200000"), ("content-range", cr)],
        false,
    );
    c.data(3, &body[100_000..], true);
    let a = c.answer(3, Duration::ZERO);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(std::fs::read(fx.root().join("r.bin")).unwrap(), body);
}

/// Python's `h2` package: `n` PUTs of `size` bytes each on one connection, their
/// DATA interleaved within the server's windows; prints `path status` per stream.
const MANY_PUTS: &str = r#"
import socket, sys
import h2.config, h2.connection, h2.events
host, port, n, size, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sock = socket.create_connection((host, port))
sock.settimeout(30)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
pending, paths, status = {}, {}, {}
for i in range(n):
    sid = conn.get_next_available_stream_id()
    data = open(f"{src}/src{i}", "rb").read()
    conn.send_headers(sid, [(":method", "PUT"), (":scheme", "http"), (":authority", f"{host}:{port}"),
                            (":path", f"/up{i}.bin"), ("content-length", str(len(data)))])
    pending[sid] = [data, 0]
    paths[sid] = f"/up{i}.bin"
while len(status) < n:
    moved = True
    while moved:
        moved = False
        for sid, p in pending.items():
            data, off = p
            if off >= len(data) or sid in status:
                continue
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data) - off)
            if room <= 0:
                continue
            conn.send_data(sid, data[off:off + room], end_stream=off + room == len(data))
            p[1] = off + room
            moved = True
        sock.sendall(conn.data_to_send())
    got = sock.recv(65536)
    if not got:
        break
    for ev in conn.receive_data(got):
        if isinstance(ev, h2.events.ResponseReceived):
            status[ev.stream_id] = dict(ev.headers)[":status"]
        elif isinstance(ev, h2.events.StreamReset):
            status[ev.stream_id] = f"reset {ev.error_code}"
    sock.sendall(conn.data_to_send())
for sid, path in sorted(paths.items()):
    print(path, status.get(sid, "none"))
"#;

#[test]
fn many_concurrent_h2_uploads_on_one_connection_are_byte_exact() {
    if Command::new("python3")
        .args(["-c", "import h2"])
        .status()
        .map_or(true, |s| !s.success())
    {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with the h2 package is required");
        }
        eprintln!("skipped: python3 h2 not installed");
        return;
    }
    let fx = Fixture::new();
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let src = tempfile::tempdir().unwrap();
    // Each body is three stream windows: the server must credit as it writes.
    // More streams than are answered at once: the ones waiting must not hold the
    // connection window the others need (24 deadlocked with 1 MiB initial windows).
    const N: usize = 24;
    const SIZE: usize = 3 << 20;
    for i in 0..N {
        write_pattern(&src.path().join(format!("src{i}")), (SIZE + i) as u64);
    }
    let script = src.path().join("many.py");
    std::fs::write(&script, MANY_PUTS).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(srv.addr.port().to_string())
        .arg(N.to_string())
        .arg(SIZE.to_string())
        .arg(src.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..N {
        assert!(text.contains(&format!("/up{i}.bin 201\n")), "{text}");
        let got = std::fs::read(fx.root().join(format!("up{i}.bin"))).unwrap();
        let want = std::fs::read(src.path().join(format!("src{i}"))).unwrap();
        assert!(got == want, "up{i}.bin differs");
    }
    assert_eq!(names(&fx.root()).len(), N, "no temporary file");
}

#[test]
fn webdav_bodies_over_h2_are_answered_as_over_http1() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir(fx.root().join("dir")).unwrap();
    fx.file("dir/a.txt", b"aaa");
    let srv = TestServer::start(&fx.root(), |c| {
        c.io = io_driver();
        c.webdav = true;
    });
    let body = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>"#;
    let dav = |version: &str, method: &str, path: &str, extra: &[&str], data: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut cmd = Command::new("curl");
        cmd.args(["-s", version, "-X", method, "-o"])
            .arg(&out)
            .args(["-w", "%{http_code} %{http_version}"])
            .args(extra);
        if let Some(d) = data {
            cmd.args(["-H", "Content-Type: application/xml", "--data-binary", d]);
        }
        let o = cmd.arg(srv.url(path)).output().unwrap();
        let w = String::from_utf8_lossy(&o.stdout).to_string();
        (w, std::fs::read(&out).unwrap_or_default())
    };
    let (w1, b1) = dav(
        "--http1.1",
        "PROPFIND",
        "/dir/",
        &["-H", "Depth: 1"],
        Some(body),
    );
    let (w2, b2) = dav(
        "--http2-prior-knowledge",
        "PROPFIND",
        "/dir/",
        &["-H", "Depth: 1"],
        Some(body),
    );
    assert_eq!((w1.as_str(), w2.as_str()), ("207 1.1", "207 2"));
    assert_eq!(String::from_utf8_lossy(&b2), String::from_utf8_lossy(&b1));
    assert!(String::from_utf8_lossy(&b2).contains("<D:getcontentlength>3<"));
    // A malformed body: the same refusal.
    let (w1, _) = dav(
        "--http1.1",
        "PROPFIND",
        "/",
        &["-H", "Depth: 0"],
        Some("<D:propfind"),
    );
    let (w2, _) = dav(
        "--http2-prior-knowledge",
        "PROPFIND",
        "/",
        &["-H", "Depth: 0"],
        Some("<D:propfind"),
    );
    assert_eq!(w1.split(' ').next(), w2.split(' ').next());
    assert!(w1.starts_with("400"), "{w1}");
    // A body of unknown length past the WebDAV body limit (64 KiB): 413.
    let mut c = Raw::open(srv.addr);
    c.headers(1, "PROPFIND", "/dir/", &[("depth", "0")], false);
    c.data(1, &vec![b' '; 60 << 10], false);
    std::thread::sleep(Duration::from_millis(100));
    c.data(1, &vec![b' '; 8 << 10], false);
    let a = c.answer(1, Duration::from_secs(1));
    assert_eq!(
        (a.status, &a.resets[..]),
        (413, &[Code::NoError][..]),
        "{a:?}"
    );
    // MKCOL, and MKCOL with a body (415), as over HTTP/1.1.
    let (w, _) = dav("--http2-prior-knowledge", "MKCOL", "/new/", &[], None);
    assert_eq!(w, "201 2");
    assert!(fx.root().join("new").is_dir());
    let (w1, _) = dav("--http1.1", "MKCOL", "/n1/", &[], Some("<x/>"));
    let (w2, _) = dav(
        "--http2-prior-knowledge",
        "MKCOL",
        "/n2/",
        &[],
        Some("<x/>"),
    );
    assert_eq!((w1.as_str(), w2.as_str()), ("415 1.1", "415 2"));
    // PROPPATCH with a body sets a dead property PROPFIND then shows.
    let pp = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:z"><D:set><D:prop><z:color>blue</z:color></D:prop></D:set></D:propertyupdate>"#;
    let (w, b) = dav(
        "--http2-prior-knowledge",
        "PROPPATCH",
        "/dir/a.txt",
        &[],
        Some(pp),
    );
    assert_eq!(w, "207 2", "{}", String::from_utf8_lossy(&b));
}

#[test]
fn an_h2_upload_is_counted_as_copied_and_logged_with_its_bytes() {
    const N: usize = 700_001;
    let fx = Fixture::new();
    let log = fx.root().parent().unwrap().join("access.json");
    let (srv, stats) = TestServer::with_stats(Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 1,
        io: io_driver(),
        upload: true,
        access_log: Some(AccessLog::File(log.clone())),
        access_log_format: LogFormat::Json,
        ..Config::default()
    });
    let addr = srv.addr;
    let body = pattern(0, N);
    let mut c = Raw::open(addr);
    c.headers(
        1,
        "PUT",
        "/up.bin",
        &[("content-length", &N.to_string())],
        false,
    );
    c.data(1, &body, true);
    assert_eq!(c.answer(1, Duration::ZERO).status, 201);
    assert_eq!(std::fs::read(fx.root().join("up.bin")).unwrap(), body);
    eventually("counted as copied", || {
        stats
            .render()
            .contains(&format!("zcopy_upload_bytes_total{{engine=\"copy\"}} {N}"))
    });
    eventually("logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| {
            t.contains("PUT /up.bin HTTP/2.0")
                && t.contains("\"status\":201")
                && t.contains(&format!("\"received\":{N},"))
        })
    });
}

#[test]
fn a_full_disk_gives_507_over_h2_and_leaves_no_file() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let fx = Fixture::new();
    let small = fx.root().join("small");
    let Some(_mounted) = small_tmpfs(&small) else {
        return;
    };
    let srv = TestServer::start(&fx.root(), h2_uploads);
    let mut c = Raw::open(srv.addr);
    // Three stream windows: the server must write (and fail) before it takes more.
    let len = 3u64 << 20;
    c.headers(
        1,
        "PUT",
        "/small/big.bin",
        &[("content-length", &len.to_string())],
        false,
    );
    c.data(1, &pattern(0, 1 << 20), false);
    // What the server took of it is credited back (the full 1 MiB if the disk
    // held it all): the rest can't fit.
    std::thread::sleep(Duration::from_millis(300));
    c.data(1, &pattern(1 << 20, 512 << 10), false);
    let a = c.answer(1, Duration::from_millis(300));
    assert_eq!(a.status, 507, "{a:?}");
    eventually("no temporary file", || names(&small).is_empty());
}

#[test]
fn rclone_syncs_a_tree_up_and_back_through_webdav_over_h2() {
    if !require("rclone") {
        return;
    }
    let fx = Fixture::new();
    let log = fx.root().parent().unwrap().join("rclone-access.log");
    let pki = Pki::new();
    let srv = TestServer::start(&fx.root(), |c| {
        c.io = io_driver();
        c.webdav = true;
        c.listen = Vec::new();
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(pki.tls());
        c.access_log = Some(AccessLog::File(log.clone()));
    });
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::create_dir_all(tree.join("odd name")).unwrap();
    write_pattern(&tree.join("a/b/big.bin"), 5 << 20);
    std::fs::write(tree.join("empty"), b"").unwrap();
    std::fs::write(tree.join("odd name/ü x%.txt"), b"hi").unwrap();
    for i in 0..20 {
        write_pattern(&tree.join(format!("a/f{i}")), 4096 + i);
    }
    let remote = format!(
        ":webdav,url='https://127.0.0.1:{}/',vendor=other:",
        srv.addr.port()
    );
    let rclone = |args: &[&str]| {
        let out = Command::new("rclone")
            .args(["--no-check-certificate", "--config", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rclone {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let t = tree.to_str().unwrap();
    rclone(&["sync", t, &remote]);
    rclone(&["check", t, &remote]);
    let back = src.path().join("back");
    rclone(&["copy", &remote, back.to_str().unwrap()]);
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(&back)
        .status()
        .unwrap();
    assert!(diff.success(), "the tree came back different");
    // Through HTTP/2 (rclone's Go client negotiates h2 by ALPN).
    eventually("PUTs logged over HTTP/2", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().filter(|l| l.contains("\"PUT ")).count() == 23
            && text
                .lines()
                .filter(|l| l.contains("\"PUT "))
                .all(|l| l.contains(" HTTP/2.0\" 201"))
    });
}

/// A page that PUTs `n` bodies of `len` bytes at once with `fetch` and writes the
/// statuses into `#r`.
fn upload_page(n: usize, len: usize) -> String {
    format!(
        r#"<!doctype html><html><body><div id="r">pending</div><script>
const body = i => {{ const b = new Uint8Array({len} + i); for (let j = 0; j < b.length; j++) b[j] = (j * 31 + i) & 255; return b; }};
Promise.all([...Array({n}).keys()].map(i => fetch('/got' + i + '.bin', {{method: 'PUT', body: body(i)}}).then(r => r.status, e => 'error ' + e)))
  .then(s => {{ document.getElementById('r').textContent = 'statuses ' + s.join(','); }});
</script></body></html>"#
    )
}

#[test]
fn chromium_uploads_many_files_at_once_over_https_by_http2() {
    if !require("chromium") {
        return;
    }
    const N: usize = 30;
    const LEN: usize = 2 << 20;
    let fx = Fixture::new();
    fx.file("up.html", upload_page(N, LEN).as_bytes());
    let log = fx.root().parent().unwrap().join("chromium-up.log");
    let pki = Pki::new();
    let srv = TestServer::start(&fx.root(), |c| {
        h2_uploads(c);
        c.listen = Vec::new();
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(pki.tls());
        c.access_log = Some(AccessLog::File(log.clone()));
    });
    let out = chromium_dom(
        &format!("https://localhost:{}/up.html", srv.addr.port()),
        &[
            "--ignore-certificate-errors",
            "--virtual-time-budget=60000",
            "--host-resolver-rules=MAP localhost 127.0.0.1",
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let want = format!("statuses {}", vec!["201"; N].join(","));
    assert!(
        dom.contains(&want),
        "{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..N {
        let got = std::fs::read(fx.root().join(format!("got{i}.bin"))).unwrap();
        assert_eq!(got.len(), LEN + i, "got{i}.bin");
        let exact = got
            .iter()
            .enumerate()
            .all(|(j, &b)| b == ((j * 31 + i) & 255) as u8);
        assert!(exact, "got{i}.bin differs");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"PUT /got") && l.contains(" HTTP/2.0\" 201"))
            .count(),
        N,
        "{text}"
    );
}
