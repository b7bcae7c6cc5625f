//! HTTP/2: curl (h2c with prior knowledge, and ALPN `h2` over TLS), h2load, and a
//! raw client writing frames by hand (many streams, and the known attacks: after
//! each, a good client is answered promptly and the server is still up).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zcopy_http::config::Config;
use zcopy_http::driver::IoDriver;
use zcopy_http2::frame::{self, Code, Header, flag, kind, setting};
use zcopy_http2::hpack;

use crate::tls::Pki;
use crate::util::*;

/// The drivers these tests run on: both, or the one `ZCOPY_IO` names (the
/// suite's run on io_uring then covers that half once).
fn drivers() -> Vec<IoDriver> {
    if std::env::var_os("ZCOPY_IO").is_some_and(|v| !v.is_empty()) {
        vec![io_driver()]
    } else {
        vec![IoDriver::Epoll, IoDriver::Uring]
    }
}

/// A server on driver `io` (a kernel that refuses io_uring runs epoll: said).
fn start_on(io: IoDriver, root: &Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let srv = TestServer::start(root, |c| {
        c.io = io;
        tweak(c);
    });
    if srv.io_driver() != io {
        eprintln!("{io} not available here: ran {}", srv.io_driver());
    }
    srv
}

/// An HTTPS server on driver `io`.
fn start_tls_on(
    io: IoDriver,
    root: &Path,
    pki: &Pki,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    start_on(io, root, |c| {
        c.listen = Vec::new();
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(pki.tls());
        tweak(c);
    })
}

/// curl with `args` then `url`; returns (status, HTTP version, body).
fn curl(args: &[&str], url: &str) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, version) = w.split_once(' ').unwrap_or(("0", ""));
    let bytes = std::fs::read(&body).unwrap_or_default();
    (code.parse().unwrap_or(0), version.to_string(), bytes)
}

fn h2c(args: &[&str], srv: &TestServer, path: &str) -> (u16, Vec<u8>) {
    let mut a = vec!["--http2-prior-knowledge"];
    a.extend_from_slice(args);
    let (code, version, body) = curl(&a, &srv.url(path));
    assert_eq!(version, "2", "{path}: HTTP/{version}");
    (code, body)
}

/// The sizes every client must get byte-exact: 0 B, 1 KiB, 1 MiB, 100 MiB (sparse).
fn sized_files(fx: &Fixture) {
    fx.file("zero", b"");
    write_pattern(&fx.root().join("one_k"), 1024);
    write_pattern(&fx.root().join("one_m"), 1 << 20);
    let f = std::fs::File::create(fx.root().join("big")).unwrap();
    f.set_len(100 << 20).unwrap();
}

fn check_sizes(get: impl Fn(&str) -> (u16, Vec<u8>)) {
    for (name, len) in [("zero", 0usize), ("one_k", 1024), ("one_m", 1 << 20)] {
        let (code, body) = get(name);
        assert_eq!(code, 200, "{name}");
        assert_eq!(body.len(), len, "{name}");
        assert_pattern(&body, 0, name);
    }
    let (code, body) = get("big");
    assert_eq!(code, 200);
    assert_eq!(body.len(), 100 << 20);
    assert!(body.iter().all(|&b| b == 0), "big: only zeros");
}

#[test]
fn h2c_curl_every_size_byte_exact() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    sized_files(&fx);
    for io in drivers() {
        let srv = start_on(io, &fx.root(), |_| {});
        check_sizes(|name| h2c(&[], &srv, &format!("/{name}")));
    }
}

#[test]
fn h2_over_tls_by_alpn_every_size_byte_exact() {
    for io in drivers() {
        h2_over_tls_by_alpn_every_size_byte_exact_on(io);
    }
}

fn h2_over_tls_by_alpn_every_size_byte_exact_on(io: IoDriver) {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    sized_files(&fx);
    let pki = Pki::new();
    let srv = start_tls_on(io, &fx.root(), &pki, |_| {});
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    check_sizes(|name| {
        let url = format!("https://localhost:{}/{name}", srv.addr.port());
        let resolve = format!("localhost:{}:127.0.0.1", srv.addr.port());
        let (code, version, body) = curl(&["--http2", "--cacert", ca, "--resolve", &resolve], &url);
        assert_eq!(version, "2", "ALPN h2");
        (code, body)
    });
    // h2load over TLS: many streams per connection, every one 2xx.
    if tool("h2load", "--version") {
        let out = Command::new("h2load")
            .args(["-n", "300", "-c", "2", "-m", "30"])
            .arg(format!("https://127.0.0.1:{}/one_m", srv.addr.port()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("300 succeeded, 0 failed"), "{text}");
        assert!(text.contains("status codes: 300 2xx"), "{text}");
        assert!(text.contains("Application protocol: h2"), "{text}");
    } else {
        eprintln!("skipped: h2load not installed (Debian nghttp2-client)");
    }
    // A client offering only http/1.1 still gets HTTP/1.1.
    let url = format!("https://localhost:{}/one_k", srv.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", srv.addr.port());
    let (code, version, body) = curl(&["--http1.1", "--cacert", ca, "--resolve", &resolve], &url);
    assert_eq!((code, version.as_str(), body.len()), (200, "1.1", 1024));
}

#[test]
fn h2c_ranges_conditionals_head_listing_auth_and_the_access_log() {
    for io in drivers() {
        h2c_ranges_conditionals_head_listing_auth_and_the_access_log_on(io);
    }
}

fn h2c_ranges_conditionals_head_listing_auth_and_the_access_log_on(io: IoDriver) {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    write_pattern(&fx.root().join("a.bin"), 3 << 20);
    fx.file("dir/x.txt", b"x");
    let log = fx
        .root()
        .join("..")
        .join(format!("h2-access-{}.log", std::process::id()));
    let srv = start_on(io, &fx.root(), |c: &mut Config| {
        c.access_log = Some(zcopy_http::config::AccessLog::File(log.clone()));
    });
    // One range.
    let (code, body) = h2c(&["-r", "1000000-2999999"], &srv, "/a.bin");
    assert_eq!(code, 206);
    assert_eq!(body.len(), 2_000_000);
    assert_pattern(&body, 1_000_000, "range");
    // Two ranges: multipart.
    let (code, body) = h2c(&["-r", "0-9,3145000-3145727"], &srv, "/a.bin");
    assert_eq!(code, 206);
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(find(&pattern(0, 10)) && find(&pattern(3_145_000, 728)));
    assert!(find(b"Content-Range: bytes 0-9/3145728"));
    // HEAD: the length, no body.
    let out = Command::new("curl")
        .args(["-s", "-I", "--http2-prior-knowledge"])
        .arg(srv.url("/a.bin"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("content-length: 3145728"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    // Conditional: 304, no body.
    let (code, body) = h2c(&["-H", &format!("If-None-Match: {etag}")], &srv, "/a.bin");
    assert_eq!((code, body.len()), (304, 0));
    // A listing.
    let (code, body) = h2c(&[], &srv, "/dir/");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("x.txt"));
    // A missing file.
    let (code, _) = h2c(&[], &srv, "/nope");
    assert_eq!(code, 404);
    srv.stop();
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        lines.contains("\"GET /a.bin HTTP/2.0\" 206 2000000"),
        "{lines}"
    );
    assert!(lines.contains("\"HEAD /a.bin HTTP/2.0\" 200"), "{lines}");
    assert!(lines.contains("\"GET /a.bin HTTP/2.0\" 304"), "{lines}");
}

#[test]
fn h2c_auth_asks_with_www_authenticate_and_lets_the_right_password_in() {
    for io in drivers() {
        h2c_auth_asks_with_www_authenticate_and_lets_the_right_password_in_on(io);
    }
}

fn h2c_auth_asks_with_www_authenticate_and_lets_the_right_password_in_on(io: IoDriver) {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    fx.file("secret.txt", b"s3cret");
    let hash = bcrypt::hash("pw", 4).unwrap();
    let users = zcopy_http::auth::Users::parse("files", &format!("u:{hash}\n")).unwrap();
    let srv = start_on(io, &fx.root(), |c: &mut Config| {
        c.rules = vec![zcopy_http::rules::Rule {
            glob: "**".into(),
            auth: Some(std::sync::Arc::new(users)),
            ..Default::default()
        }];
    });
    let out = Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge"])
        .arg(srv.url("/secret.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/2 401"), "{text}");
    assert!(text.contains("www-authenticate: basic"), "{text}");
    // The password check runs off the loop; the stream is answered when it is done.
    let (code, body) = h2c(&["-u", "u:pw"], &srv, "/secret.txt");
    assert_eq!((code, &body[..]), (200, &b"s3cret"[..]));
    let (code, _) = h2c(&["-u", "u:wrong"], &srv, "/secret.txt");
    assert_eq!(code, 401);
}

#[test]
fn many_streams_on_one_connection_interleave_byte_exact() {
    for io in drivers() {
        many_streams_on_one_connection_interleave_byte_exact_on(io);
    }
}

fn many_streams_on_one_connection_interleave_byte_exact_on(io: IoDriver) {
    let fx = Fixture::new();
    for i in 0..20 {
        write_pattern(&fx.root().join(format!("f{i}")), 200_000 + i * 1000);
    }
    let srv = start_on(io, &fx.root(), |_| {});
    let mut c = Raw::open(srv.addr, &[]);
    // 100 streams at once, five per file.
    for n in 0..100u32 {
        c.get(2 * n + 1, &format!("/f{}", n % 20), &[]);
    }
    let got = c.responses(100, Duration::from_secs(60));
    assert_eq!(got.len(), 100);
    for (id, (status, body)) in &got {
        let i = ((id - 1) / 2 % 20) as usize;
        assert_eq!(*status, 200);
        assert_eq!(body.len(), 200_000 + i * 1000, "stream {id}");
        assert_pattern(body, 0, &format!("stream {id}"));
    }
    // Interleaved: the first stream's last DATA came after other streams' DATA.
    assert!(c.interleaved, "DATA of streams interleave");

    // h2load, when installed: many streams on each connection, every one 2xx.
    if tool("h2load", "--version") {
        let out = Command::new("h2load")
            .args(["-n", "600", "-c", "3", "-m", "50"])
            .arg(srv.url("/f1"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("600 succeeded, 0 failed"), "{text}");
        assert!(text.contains("status codes: 600 2xx"), "{text}");
    } else {
        eprintln!("skipped: h2load not installed (Debian nghttp2-client)");
    }
}

/// A raw HTTP/2 client: frames built by hand.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    dec: hpack::Decoder,
    interleaved: bool,
}

/// A GET's header block (literals, no Huffman, nothing indexed).
fn block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    request_block("GET", path, extra)
}

/// A request header block (literals, no Huffman, nothing indexed).
pub(crate) fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    let base = [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "x"),
    ];
    for (n, v) in base.iter().chain(extra) {
        hpack::encode_literal(&mut b, n, v);
    }
    b
}

/// The next frame from `s`, with what was read past it kept in `buf` (None:
/// closed or timed out).
pub(crate) fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Header, Vec<u8>)> {
    loop {
        if let Some(h) = Header::parse(buf) {
            let end = 9 + h.len as usize;
            if buf.len() >= end {
                let p = buf[9..end].to_vec();
                buf.drain(..end);
                return Some((h, p));
            }
        }
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp) {
            // The io_uring server runs in this process: a read here may be
            // interrupted (EINTR) while its ring works.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

impl Raw {
    /// Connects, sends the preface and SETTINGS `settings` (with large windows
    /// unless the settings shut the initial window).
    fn open(addr: SocketAddr, settings: &[(u16, u32)]) -> Raw {
        Raw::open_split(addr, settings, 0)
    }

    /// As [`Raw::open`], the first `split` bytes of the preface (0: none) sent on
    /// their own and the rest a moment later, so the server reads them apart.
    fn open_split(addr: SocketAddr, settings: &[(u16, u32)], split: usize) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Raw {
            s,
            buf: Vec::new(),
            dec: hpack::Decoder::new(4096, 1 << 20),
            interleaved: false,
        };
        let mut b = frame::PREFACE.to_vec();
        let shut = settings
            .iter()
            .any(|&(k, v)| k == setting::INITIAL_WINDOW_SIZE && v == 0);
        let mut all = settings.to_vec();
        if !settings
            .iter()
            .any(|&(k, _)| k == setting::INITIAL_WINDOW_SIZE)
        {
            all.push((setting::INITIAL_WINDOW_SIZE, 64 << 20));
        }
        frame::write_settings(&mut b, &all);
        if !shut {
            frame::write_window_update(&mut b, 0, 100 << 20);
        }
        if split > 0 {
            c.send(&b[..split]);
            std::thread::sleep(Duration::from_millis(100));
        }
        c.send(&b[split..]);
        c
    }

    fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }

    fn get(&mut self, id: u32, path: &str, extra: &[(&str, &str)]) {
        let mut b = Vec::new();
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block(path, extra),
        );
        self.send(&b);
    }

    /// The next frame (None: closed or timed out).
    fn frame(&mut self) -> Option<(Header, Vec<u8>)> {
        read_frame(&mut self.s, &mut self.buf)
    }

    /// Reads until `n` streams have ended (or the time is up); answers SETTINGS.
    fn responses(
        &mut self,
        n: usize,
        limit: Duration,
    ) -> std::collections::BTreeMap<u32, (u16, Vec<u8>)> {
        let end = Instant::now() + limit;
        let mut got: std::collections::BTreeMap<u32, (u16, Vec<u8>)> = Default::default();
        let mut done = 0;
        let mut last_data: Option<u32> = None;
        while done < n && Instant::now() < end {
            let Some((h, p)) = self.frame() else {
                break;
            };
            match h.kind {
                kind::SETTINGS if h.flags & flag::ACK == 0 => {
                    let mut b = Vec::new();
                    frame::write_frame(&mut b, kind::SETTINGS, flag::ACK, 0, &[]);
                    self.send(&b);
                }
                kind::HEADERS => {
                    let fields = self.dec.decode(&p).unwrap().fields;
                    let status = std::str::from_utf8(&fields[0].1).unwrap().parse().unwrap();
                    got.entry(h.stream).or_default().0 = status;
                    if h.flags & flag::END_STREAM != 0 {
                        done += 1;
                    }
                }
                kind::DATA => {
                    if last_data.is_some_and(|l| l != h.stream) {
                        self.interleaved = true;
                    }
                    last_data = Some(h.stream);
                    got.entry(h.stream).or_default().1.extend_from_slice(&p);
                    if h.flags & flag::END_STREAM != 0 {
                        done += 1;
                    }
                }
                kind::RST_STREAM | kind::GOAWAY => panic!("unexpected frame {h:?} {p:?}"),
                _ => {}
            }
        }
        got
    }

    /// Reads until the server closes, for at most `limit`; returns the GOAWAY code
    /// seen, if any, and the RST_STREAM codes per stream.
    fn until_closed(&mut self, limit: Duration) -> (Option<Code>, Vec<(u32, Code)>, bool) {
        let end = Instant::now() + limit;
        self.s
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut goaway = None;
        let mut rsts = Vec::new();
        loop {
            if Instant::now() >= end {
                return (goaway, rsts, false);
            }
            if let Some(h) = Header::parse(&self.buf) {
                let e = 9 + h.len as usize;
                if self.buf.len() >= e {
                    let p: Vec<u8> = self.buf[9..e].to_vec();
                    self.buf.drain(..e);
                    let code =
                        |b: &[u8]| Code::from_u32(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    match h.kind {
                        kind::GOAWAY => goaway = Some(code(&p[4..])),
                        kind::RST_STREAM => rsts.push((h.stream, code(&p))),
                        _ => {}
                    }
                    continue;
                }
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) => return (goaway, rsts, true),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return (goaway, rsts, true),
            }
        }
    }
}

/// A good client (HTTP/1.1 and HTTP/2) is answered within a generous bound.
fn good_client_answered(srv: &TestServer, root: &Path) {
    let _ = root;
    let t = Instant::now();
    let (code, _, body) = get(&srv.url("/small"), &[]);
    assert_eq!((code, &body[..]), (200, &b"small"[..]));
    let mut c = Raw::open(srv.addr, &[]);
    c.get(1, "/small", &[]);
    let got = c.responses(1, Duration::from_secs(10));
    assert_eq!(
        got.get(&1).map(|r| (r.0, &r.1[..])),
        Some((200, &b"small"[..]))
    );
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a good client waited {took:?}"
    );
}

fn attack_server() -> (Fixture, TestServer) {
    let fx = Fixture::new();
    fx.file("small", b"small");
    write_pattern(&fx.root().join("large"), 4 << 20);
    let srv = TestServer::start(&fx.root(), |c: &mut Config| {
        c.send_timeout = Duration::from_secs(2);
    });
    (fx, srv)
}

#[test]
fn rapid_reset_ends_in_goaway_and_others_are_served() {
    let (fx, srv) = attack_server();
    let mut c = Raw::open(srv.addr, &[]);
    let mut b = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block("/large", &[]),
        );
        frame::write_rst(&mut b, id, Code::Cancel);
    }
    c.send(&b);
    let (goaway, _, closed) = c.until_closed(Duration::from_secs(10));
    assert_eq!(goaway, Some(Code::EnhanceYourCalm));
    assert!(closed, "the connection is closed");
    good_client_answered(&srv, &fx.root());
}

#[test]
fn made_you_reset_counts_the_resets_we_send() {
    let (fx, srv) = attack_server();
    let mut c = Raw::open(srv.addr, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    let mut b = Vec::new();
    for i in 0..3000u32 {
        let id = 2 * i + 1;
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block("/large", &[]),
        );
        // An invalid WINDOW_UPDATE: the server must reset the stream.
        frame::write_window_update(&mut b, id, 0);
    }
    c.send(&b);
    let (goaway, rsts, closed) = c.until_closed(Duration::from_secs(10));
    assert_eq!(goaway, Some(Code::EnhanceYourCalm));
    assert!(closed);
    assert!(rsts.len() <= 200, "{} resets", rsts.len());
    good_client_answered(&srv, &fx.root());
}

#[test]
fn a_continuation_flood_is_cut_off() {
    let (fx, srv) = attack_server();
    let mut c = Raw::open(srv.addr, &[]);
    let mut b = Vec::new();
    frame::write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_STREAM,
        1,
        &block("/small", &[])[..5],
    );
    c.send(&b);
    let one = {
        let mut b = Vec::new();
        frame::write_frame(&mut b, kind::CONTINUATION, 0, 1, &[b'a'; 100]);
        b.repeat(100)
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && c.send(&one) {}
    let (goaway, _, closed) = c.until_closed(Duration::from_secs(10));
    assert_eq!(goaway, Some(Code::EnhanceYourCalm));
    assert!(closed);
    good_client_answered(&srv, &fx.root());
}

#[test]
fn a_settings_and_ping_flood_ends_in_goaway() {
    let (fx, srv) = attack_server();
    for k in [kind::SETTINGS, kind::PING] {
        let mut c = Raw::open(srv.addr, &[]);
        let mut b = Vec::new();
        for _ in 0..50_000 {
            match k {
                kind::SETTINGS => frame::write_settings(&mut b, &[(setting::ENABLE_PUSH, 0)]),
                _ => frame::write_frame(&mut b, kind::PING, 0, 0, &[1; 8]),
            }
        }
        // The server may close before it has read it all.
        let _ = c.s.write_all(&b);
        let (goaway, _, closed) = c.until_closed(Duration::from_secs(10));
        assert_eq!(goaway, Some(Code::EnhanceYourCalm), "{k}");
        assert!(closed);
    }
    good_client_answered(&srv, &fx.root());
}

#[test]
fn streams_past_the_limit_are_refused_and_a_shut_window_times_out() {
    let (fx, srv) = attack_server();
    // The peer never opens its window: each response stalls after its HEADERS.
    let mut c = Raw::open(srv.addr, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    let t = Instant::now();
    for i in 0..150u32 {
        c.get(2 * i + 1, "/large", &[]);
    }
    let (goaway, rsts, closed) = c.until_closed(Duration::from_secs(20));
    let refused: Vec<u32> = rsts
        .iter()
        .filter(|(_, code)| *code == Code::RefusedStream)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(refused.len(), 22, "{rsts:?}");
    assert!(refused.iter().all(|&id| id > 2 * 128), "{refused:?}");
    // Then the send timeout (2 s here) ends the stalled connection.
    assert!(closed, "closed");
    assert_eq!(goaway, Some(Code::EnhanceYourCalm));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    good_client_answered(&srv, &fx.root());
}

#[test]
fn data_on_a_reset_stream_still_opens_the_connection_window() {
    let (fx, srv) = attack_server();
    let mut c = Raw::open(srv.addr, &[]);
    let mut b = Vec::new();
    // A POST whose stream we reset, then 40 MiB of DATA on it (more than the
    // server's 16 MiB connection window): a server that forgot to credit it
    // would end the connection with FLOW_CONTROL_ERROR.
    frame::write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block("/small", &[]),
    );
    frame::write_rst(&mut b, 1, Code::Cancel);
    c.send(&b);
    let chunk = {
        let mut b = Vec::new();
        frame::write_frame(&mut b, kind::DATA, 0, 1, &[0u8; 16_384]);
        b
    };
    for _ in 0..(40 << 20) / 16_384 {
        assert!(c.send(&chunk));
    }
    c.get(3, "/small", &[]);
    let mut seen = false;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let Some((h, p)) = c.frame() else { break };
        assert_ne!(h.kind, kind::GOAWAY, "{p:?}");
        if h.kind == kind::DATA && h.stream == 3 {
            assert_eq!(p, b"small");
            seen = true;
            break;
        }
    }
    assert!(seen, "stream 3 answered");
    good_client_answered(&srv, &fx.root());
}

#[test]
fn h2c_archives_sidecars_and_rules_are_the_sites_as_for_http1() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    fx.file("sub/a.txt", b"alpha");
    write_pattern(&fx.root().join("sub/b.bin"), 300_000);
    fx.file("app.js", b"console.log(1)");
    fx.file("app.js.gz", b"GZ-SIDECAR");
    let srv = TestServer::start(&fx.root(), |c: &mut Config| {
        c.archives = true;
        c.rules = vec![zcopy_http::rules::Rule {
            glob: "app.js".into(),
            headers: vec![zcopy_http::rules::Header {
                name: "X-Rule".into(),
                value: "yes".into(),
            }],
            ..Default::default()
        }];
    });
    // The same tar as HTTP/1.1 sends (archive members read when their turn comes).
    let (code, h2_tar) = h2c(&[], &srv, "/sub/?download=tar");
    assert_eq!(code, 200);
    let (code, _, h1_tar) = get(&srv.url("/sub/?download=tar"), &[]);
    assert_eq!(code, 200);
    assert_eq!(h2_tar.len(), h1_tar.len());
    assert!(h2_tar == h1_tar, "the tar differs from HTTP/1.1's");
    // A sidecar by Accept-Encoding, with the rule's header.
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            "--http2-prior-knowledge",
            "-H",
            "Accept-Encoding: gzip",
        ])
        .arg(srv.url("/app.js"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lower = text.to_lowercase();
    assert!(lower.contains("content-encoding: gzip"), "{text}");
    assert!(lower.contains("x-rule: yes"), "{text}");
    assert!(text.ends_with("GZ-SIDECAR"), "{text}");
}

#[test]
fn without_http2_a_preface_gets_505_and_alpn_offers_http11_only() {
    for io in drivers() {
        without_http2_on(io);
    }
}

fn without_http2_on(io: IoDriver) {
    let fx = Fixture::new();
    fx.file("small", b"small");
    let srv = start_on(io, &fx.root(), |c: &mut Config| c.http2 = false);
    let mut s = srv.connect();
    let mut b = frame::PREFACE.to_vec();
    frame::write_settings(&mut b, &[]);
    s.write_all(&b).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 505 "), "{io}: {text}");
    // HTTP/1.1 as before.
    let (code, _, body) = get(&srv.url("/small"), &[]);
    assert_eq!((code, &body[..]), (200, &b"small"[..]));
    if !require("curl") {
        return;
    }
    let pki = Pki::new();
    let srv = start_tls_on(io, &fx.root(), &pki, |c| c.http2 = false);
    let ca = pki.ca_file();
    let url = format!("https://localhost:{}/small", srv.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", srv.addr.port());
    let (code, version, _) = curl(
        &[
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
        ],
        &url,
    );
    assert_eq!((code, version.as_str()), (200, "1.1"), "{io}");
}

#[test]
fn shutdown_sends_goaway_and_lets_the_open_stream_finish() {
    for io in drivers() {
        shutdown_sends_goaway_and_lets_the_open_stream_finish_on(io);
    }
}

fn shutdown_sends_goaway_and_lets_the_open_stream_finish_on(io: IoDriver) {
    let fx = Fixture::new();
    write_pattern(&fx.root().join("large"), 8 << 20);
    let srv = start_on(io, &fx.root(), |c: &mut Config| {
        c.shutdown_grace = Duration::from_secs(20);
    });
    let mut c = Raw::open(srv.addr, &[]);
    c.get(1, "/large", &[]);
    // The response has begun.
    let first = loop {
        let (h, p) = c.frame().expect("a frame");
        if h.kind == kind::DATA {
            break p;
        }
    };
    let stopper = std::thread::spawn(move || srv.stop());
    std::thread::sleep(Duration::from_millis(300));
    let mut body = first;
    let mut goaway = None;
    while let Some((h, p)) = c.frame() {
        match h.kind {
            kind::DATA => body.extend_from_slice(&p),
            kind::GOAWAY => {
                goaway = Some(Code::from_u32(u32::from_be_bytes([p[4], p[5], p[6], p[7]])));
            }
            _ => {}
        }
    }
    assert_eq!(goaway, Some(Code::NoError));
    assert_eq!(body.len(), 8 << 20);
    assert_pattern(&body, 0, "large");
    stopper.join().unwrap();
}

#[test]
fn a_reload_that_retires_a_worker_sends_goaway_and_lets_its_streams_finish() {
    for io in drivers() {
        retire_on(io);
    }
}

fn retire_on(io: IoDriver) {
    let fx = Fixture::new();
    let len = 24 << 20;
    write_pattern(&fx.root().join("large"), len);
    let cfg = Config {
        root: fx.root(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        workers: 2,
        io,
        shutdown_grace: Duration::from_secs(20),
        ..Config::default()
    };
    let server = zcopy_http::server::Server::bind(cfg.clone()).expect("bind");
    let addr = server.local_addrs()[0];
    let reload = server.reload_handle();
    let srv = TestServer::adopt(addr, server.spawn().expect("spawn"));
    if srv.io_driver() != io {
        eprintln!("{io} not available here: ran {}", srv.io_driver());
    }
    // Connections spread over both workers (SO_REUSEPORT); each starts a large body.
    let mut conns: Vec<(Raw, Vec<u8>)> = (0..12)
        .map(|i| {
            let mut c = Raw::open(srv.addr, &[]);
            c.get(1, "/large", &[]);
            let first = loop {
                let (h, p) = c
                    .frame()
                    .unwrap_or_else(|| panic!("{io}: connection {i}: a frame"));
                if h.kind == kind::DATA {
                    break p;
                }
            };
            (c, first)
        })
        .collect();
    // One worker retires: its connections get GOAWAY, their streams go on.
    reload.reload(Config { workers: 1, ..cfg }).expect("reload");
    let mut goaways = 0;
    for (c, body) in &mut conns {
        let mut goaway = None;
        let mut ended = false;
        while !ended {
            let Some((h, p)) = c.frame() else {
                break;
            };
            match h.kind {
                kind::DATA => {
                    body.extend_from_slice(&p);
                    ended = h.flags & flag::END_STREAM != 0;
                }
                kind::GOAWAY => {
                    goaway = Some(Code::from_u32(u32::from_be_bytes([p[4], p[5], p[6], p[7]])));
                }
                _ => {}
            }
        }
        assert!(ended, "{io}: the stream ended");
        assert_eq!(body.len() as u64, len, "{io}");
        assert_pattern(body, 0, "large");
        if let Some(code) = goaway {
            assert_eq!(code, Code::NoError, "{io}");
            goaways += 1;
        }
    }
    // 12 connections all on the worker that stays: 1 in 4096.
    assert!(
        goaways > 0,
        "{io}: no connection of the retired worker got GOAWAY"
    );
}

#[test]
fn chromium_loads_a_listing_over_https_by_http2() {
    for io in drivers() {
        chromium_loads_a_listing_over_https_by_http2_on(io);
    }
}

fn chromium_loads_a_listing_over_https_by_http2_on(io: IoDriver) {
    if !require("chromium") {
        return;
    }
    let fx = Fixture::new();
    fx.file("dir/hello.txt", b"hi");
    let pki = Pki::new();
    let log = fx
        .root()
        .join("..")
        .join(format!("h2-chromium-{}.log", std::process::id()));
    let srv = start_tls_on(io, &fx.root(), &pki, |c| {
        c.access_log = Some(zcopy_http::config::AccessLog::File(log.clone()));
    });
    let out = chromium_dom(
        &format!("https://localhost:{}/dir/", srv.addr.port()),
        &[
            "--ignore-certificate-errors",
            "--host-resolver-rules=MAP localhost 127.0.0.1",
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(">hello.txt</a>"),
        "{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop();
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(lines.contains("\"GET /dir/ HTTP/2.0\" 200"), "{lines}");
}

/// `--limit-rate` paces file bodies over HTTP/2 as over HTTP/1.1 (HTTP/2 stays
/// offered): byte-exact, ranges too, other clients served meanwhile, and no faster
/// than the rate lets it (a lower bound on the time taken: a slow machine only
/// makes it longer).
#[test]
fn h2c_rate_limited_downloads_are_paced_and_byte_exact() {
    if !require("curl") {
        return;
    }
    let fx = Fixture::new();
    let len = 600 << 10;
    write_pattern(&fx.root().join("big.bin"), len);
    fx.file("small.txt", b"small");
    let rate = 256 << 10;
    for io in drivers() {
        let srv = start_on(io, &fx.root(), |c| {
            c.workers = 1;
            c.limit_rate = Some(rate);
        });
        let url = srv.url("/big.bin");
        let t0 = Instant::now();
        let slow = std::thread::spawn(move || curl(&["--http2-prior-knowledge"], &url));
        let (code, body) = h2c(&[], &srv, "/small.txt");
        assert_eq!((code, body.as_slice()), (200, &b"small"[..]), "{io}");
        let (code, version, body) = slow.join().unwrap();
        let took = t0.elapsed();
        assert_eq!((code, version.as_str()), (200, "2"), "{io}");
        assert_eq!(body.len() as u64, len, "{io}");
        assert_pattern(&body, 0, "rate-limited h2 body");
        // 64 KiB at once, then the rest at the rate: at least 2.09 s.
        let least = (len - zcopy_http1::pace::RATE_BURST) as f64 / rate as f64;
        assert!(
            took.as_secs_f64() >= least * 0.9,
            "{io}: {len} bytes in {took:?} at {rate} B/s (at least {least:.2} s)"
        );
        let (code, body) = h2c(&["-r", "100000-299999"], &srv, "/big.bin");
        assert_eq!(code, 206, "{io}");
        assert_pattern(&body, 100_000, "rate-limited h2 range");
    }
}

#[test]
fn urgent_streams_go_before_a_large_low_urgency_body() {
    for io in drivers() {
        urgent_streams_go_before_a_large_low_urgency_body_on(io);
    }
}

/// RFC 9218: a large `u=5` body is streaming, its window open, when urgent
/// requests come: the `u=0` bodies go whole, one after the other in stream
/// order (non-incremental; one of them made `u=0` by a PRIORITY_UPDATE sent
/// before its HEADERS), then two incremental `u=1` ones take turns, all before
/// the large body's next frame. Frame order only, no timing.
fn urgent_streams_go_before_a_large_low_urgency_body_on(io: IoDriver) {
    let fx = Fixture::new();
    let f = std::fs::File::create(fx.root().join("large")).unwrap();
    f.set_len(64 << 20).unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        write_pattern(&fx.root().join(name), 50 * 1024);
    }
    let srv = start_on(io, &fx.root(), |_| {});
    let mut c = Raw::open(srv.addr, &[]);
    c.get(1, "/large", &[("priority", "u=5")]);
    // The large body has started (and fills the socket buffers while the
    // client reads nothing more).
    loop {
        let (h, p) = c.frame().expect("a frame");
        if h.kind == kind::HEADERS {
            c.dec.decode(&p).unwrap();
        }
        if h.kind == kind::DATA && h.stream == 1 {
            break;
        }
    }
    // Two urgent non-incremental requests in one write, then two urgent
    // incremental ones.
    let mut b = Vec::new();
    for (id, path, prio) in [
        (3, "/a", "u=0"),
        (5, "/b", "u=0"),
        (7, "/c", "u=1, i"),
        (9, "/d", "u=1, i"),
    ] {
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block(path, &[("priority", prio)]),
        );
    }
    // A PRIORITY_UPDATE (RFC 9218 §7.1) before its stream opens: `u=0`, the
    // later word over the `u=7` of the request's field.
    let mut p = 11u32.to_be_bytes().to_vec();
    p.extend_from_slice(b"u=0");
    frame::write_frame(&mut b, kind::PRIORITY_UPDATE, 0, 0, &p);
    frame::write_frame(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        11,
        &block("/e", &[("priority", "u=7")]),
    );
    c.send(&b);
    // The DATA frames' streams from the first urgent one on, until the large
    // body's next frame after the urgent ones ended.
    let mut order: Vec<u32> = Vec::new();
    let mut bodies: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
    let mut ended = 0;
    while ended < 5 || order.last() != Some(&1) {
        let (h, p) = c.frame().expect("a frame");
        match h.kind {
            kind::DATA if h.stream == 1 && order.is_empty() => {}
            kind::DATA => {
                order.push(h.stream);
                if h.stream != 1 {
                    bodies.entry(h.stream).or_default().extend_from_slice(&p);
                    ended += (h.flags & flag::END_STREAM != 0) as usize;
                }
            }
            kind::HEADERS => {
                c.dec.decode(&p).unwrap();
            }
            kind::RST_STREAM | kind::GOAWAY => panic!("{io}: unexpected frame {h:?} {p:?}"),
            _ => {}
        }
    }
    for (id, body) in &bodies {
        assert_eq!(body.len(), 50 * 1024, "{io}: stream {id}");
        assert_pattern(body, 0, &format!("stream {id}"));
    }
    // Streams 3, 5 and 11 whole, one after the other, then 7 and 9 taking
    // turns, then 1.
    let runs: Vec<u32> = order.iter().fold(Vec::new(), |mut v, &s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(&runs[..3], &[3, 5, 11], "{io}: {order:?}");
    assert!(
        runs[3..runs.len() - 1].iter().all(|s| [7, 9].contains(s)) && runs.len() > 6,
        "{io}: incremental streams interleave: {order:?}"
    );
    assert_eq!(runs.last(), Some(&1), "{io}: {order:?}");
}

#[test]
fn a_queued_urgent_request_takes_the_first_free_place() {
    for io in drivers() {
        a_queued_urgent_request_takes_the_first_free_place_on(io);
    }
}

/// Eight `u=7` requests take every place a connection answers at once; of the
/// two queued behind them, the `u=0` one starts when the first place frees,
/// before the `u=6` one asked for earlier. Frame order only.
fn a_queued_urgent_request_takes_the_first_free_place_on(io: IoDriver) {
    let fx = Fixture::new();
    // 200 KiB each: the first place frees with the second body under way (the
    // connection stops making DATA at 256 KiB queued), so one place, not two.
    for i in 0..10 {
        let len = if i < 8 { 200 * 1024 } else { 100 * 1024 };
        write_pattern(&fx.root().join(format!("f{i}")), len);
    }
    let srv = start_on(io, &fx.root(), |_| {});
    let mut c = Raw::open(srv.addr, &[]);
    let mut b = Vec::new();
    for i in 0..10u32 {
        let prio = match i {
            8 => "u=6",
            9 => "u=0",
            _ => "u=7",
        };
        frame::write_frame(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            2 * i + 1,
            &block(&format!("/f{i}"), &[("priority", prio)]),
        );
    }
    c.send(&b);
    let mut order: Vec<u32> = Vec::new();
    let mut ended = 0;
    while ended < 10 {
        let (h, p) = c.frame().expect("a frame");
        match h.kind {
            kind::DATA => {
                if order.last() != Some(&h.stream) {
                    order.push(h.stream);
                }
                ended += (h.flags & flag::END_STREAM != 0) as usize;
            }
            kind::HEADERS => {
                c.dec.decode(&p).unwrap();
            }
            kind::RST_STREAM | kind::GOAWAY => panic!("{io}: unexpected frame {h:?} {p:?}"),
            _ => {}
        }
    }
    let at = |s: u32| order.iter().position(|&x| x == s).unwrap();
    // Stream 19 (u=0) whole before stream 17 (u=6) starts.
    assert!(
        at(19) < at(17) && order.iter().filter(|&&s| s == 19).count() == 1,
        "{io}: {order:?}"
    );
}

#[test]
fn an_urgent_stream_with_its_window_shut_lets_the_others_go() {
    for io in drivers() {
        an_urgent_stream_with_its_window_shut_lets_the_others_go_on(io);
    }
}

/// Priorities never starve: a `u=0` stream whose window the peer keeps shut
/// lets a `u=5` one with an open window send its whole body.
fn an_urgent_stream_with_its_window_shut_lets_the_others_go_on(io: IoDriver) {
    let fx = Fixture::new();
    write_pattern(&fx.root().join("a"), 100 * 1024);
    write_pattern(&fx.root().join("b"), 100 * 1024);
    let srv = start_on(io, &fx.root(), |_| {});
    let mut c = Raw::open(srv.addr, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    let mut b = Vec::new();
    frame::write_window_update(&mut b, 0, 1 << 20);
    c.send(&b);
    c.get(1, "/a", &[("priority", "u=0")]);
    c.get(3, "/b", &[("priority", "u=5")]);
    let mut b = Vec::new();
    frame::write_window_update(&mut b, 3, 200 * 1024);
    c.send(&b);
    let mut body = Vec::new();
    loop {
        let (h, p) = c.frame().expect("a frame");
        match h.kind {
            kind::DATA => {
                assert_eq!(h.stream, 3, "{io}: DATA on a shut window");
                body.extend_from_slice(&p);
                if h.flags & flag::END_STREAM != 0 {
                    break;
                }
            }
            kind::HEADERS => {
                c.dec.decode(&p).unwrap();
            }
            kind::RST_STREAM | kind::GOAWAY => panic!("{io}: unexpected frame {h:?} {p:?}"),
            _ => {}
        }
    }
    assert_eq!(body.len(), 100 * 1024, "{io}");
    assert_pattern(&body, 0, "stream 3");
}

/// A prior-knowledge client whose preface reaches the server in two reads, the
/// first of 1, 2, 3 or 5 bytes, still speaks HTTP/2 (both drivers). Deciding on
/// the first read alone took one of fewer than four bytes for HTTP/1 (answered
/// `HTTP/1.1 400`); io_uring's incremental receive buffers end a receive wherever
/// its buffer ends, so there it happened without a client splitting anything.
#[test]
fn h2c_preface_split_across_reads_is_still_http2() {
    for io in drivers() {
        let fx = Fixture::new();
        fx.file("a.txt", b"hello");
        let srv = start_on(io, &fx.root(), |_: &mut Config| {});
        for split in [1, 2, 3, 5] {
            let mut c = Raw::open_split(srv.addr, &[], split);
            c.get(1, "/a.txt", &[]);
            let got = c.responses(1, Duration::from_secs(10));
            assert_eq!(
                got.get(&1),
                Some(&(200, b"hello".to_vec())),
                "{io:?}: the preface split after {split} bytes"
            );
        }
        // Fewer than four bytes of it, then the end: HTTP/1 gets them (a request
        // cut short: closed without an answer, and the server goes on).
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.write_all(b"PR").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let read = s.read_to_end(&mut rest);
        assert!(read.is_ok() && rest.is_empty(), "{io:?}: {read:?} {rest:?}");
        let (code, _, body) = get(&format!("http://{}/a.txt", srv.addr), &[]);
        assert_eq!((code, body), (200, b"hello".to_vec()), "{io:?}");
    }
}
