//! HTTPS: the real server with TLS listeners, a CA and leaf made here (rcgen), curl
//! with --cacert and a rustls client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use zcopy_http::config::{Config, TlsConfig};
use zcopy_tls::{CertFiles, KtlsMode, Limits};

use crate::util::*;

#[path = "../../../../tests/support/pki.rs"]
mod pki;

type Tls = StreamOwned<ClientConnection, TcpStream>;
type Versions = &'static [&'static rustls::SupportedProtocolVersion];
const TLS13: Versions = &[&rustls::version::TLS13];
const TLS12: Versions = &[&rustls::version::TLS12];

/// A test CA and a leaf for 127.0.0.1 and localhost it signed, on disk.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    /// The CA, DER and PEM.
    ca: (CertificateDer<'static>, String),
    files: CertFiles,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("chain.pem"),
            key: dir.path().join("key.pem"),
        };
        let ca = issue(&files);
        Pki { dir, ca, files }
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        std::fs::write(&p, &self.ca.1).unwrap();
        p
    }

    pub(crate) fn tls(&self) -> TlsConfig {
        TlsConfig {
            files: self.files.clone(),
            options: Default::default(),
            limits: Limits::default(),
            ktls: KtlsMode::Auto,
            force_ktls_attempt: false,
        }
    }
}

/// A fresh CA and leaf, the leaf's chain and key written to `files`; returns the CA.
fn issue(files: &CertFiles) -> (CertificateDer<'static>, String) {
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (ca, leaf) = pki::ca_and_leaf(&leaf_key, |_| {});
    std::fs::write(&files.cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&files.key, leaf_key.serialize_pem()).unwrap();
    (ca.der().clone(), ca.pem())
}

/// A server with one HTTPS listener (and what `tweak` adds), on the driver the
/// suite runs on (`ZCOPY_IO=uring`: the io_uring driver, where the kernel allows it).
pub(crate) fn start(root: &Path, pki: &Pki, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let srv = TestServer::start(root, |c| {
        c.listen = Vec::new();
        c.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(pki.tls());
        tweak(c);
    });
    let (chosen, why) = zcopy_http::driver::choose(io_driver(), true);
    assert_eq!(srv.io_driver(), chosen, "{why}");
    srv
}

/// A client that speaks HTTP/1.1 (ALPN `http/1.1` alone: the server offers `h2`
/// first, and these tests write HTTP/1.1; `h2.rs` covers ALPN `h2`).
fn client_config(ca: &(CertificateDer<'static>, String), versions: Versions) -> Arc<ClientConfig> {
    pki::client_config(&ca.0, versions, &[b"http/1.1"])
}

fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).unwrap();
    StreamOwned::new(conn, sock)
}

/// `GET path` (with extra header lines) over a fresh TLS connection.
fn get_tls(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str, extra: &str) -> RawResponse {
    let mut s = connect(addr, cfg);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s, false).expect("a response")
}

#[test]
fn curl_gets_every_size_byte_exact() {
    if !tool("curl", "--version") {
        return;
    }
    let fx = Fixture::new();
    let sizes: [u64; 5] = [0, 1, 16 << 10, 1 << 20, 100 << 20];
    for len in sizes {
        write_pattern(&fx.root().join(format!("f{len}")), len);
    }
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |_| {});
    let ca = pki.ca_file();
    let out = tempfile::tempdir().unwrap();
    for len in sizes {
        let dst = out.path().join(format!("got{len}"));
        let url = format!("https://127.0.0.1:{}/f{len}", srv.addr.port());
        let ok = Command::new("curl")
            .args(["-sSf", "--http1.1", "--cacert"])
            .arg(&ca)
            .arg("-o")
            .arg(&dst)
            .arg(&url)
            .status()
            .unwrap();
        assert!(ok.success(), "curl {url}");
        let got = std::fs::read(&dst).unwrap();
        assert_eq!(got.len() as u64, len, "{url}");
        assert_pattern(&got, 0, &url);
    }
    // curl refuses the server without the CA (the test's CA is the only anchor).
    let url = format!("https://127.0.0.1:{}/f1", srv.addr.port());
    let o = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert", "/dev/null", &url])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn ranges_multipart_pipelining_head_and_304_over_tls() {
    let fx = Fixture::new();
    let len = (3 << 20) + 7;
    write_pattern(&fx.root().join("a.bin"), len);
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |_| {});
    for versions in [TLS13, TLS12] {
        let cfg = client_config(&pki.ca, versions);
        let mut s = connect(srv.addr, &cfg);
        // Three requests in one write: a range, two ranges, a HEAD.
        s.write_all(
            b"GET /a.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000000-2999999\r\n\r\n\
              GET /a.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,3145000-3145727\r\n\r\n\
              HEAD /a.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 206);
        assert_eq!(r.body.len(), 2_000_000);
        assert_pattern(&r.body, 1_000_000, "range");
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 206);
        let ctype = r.header("content-type").unwrap();
        assert!(ctype.starts_with("multipart/byteranges"), "{ctype}");
        let body = &r.body;
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(find(&pattern(0, 10)), "first part");
        assert!(find(&pattern(3_145_000, 728)), "second part");
        let h = read_response(&mut s, true).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-length"), Some(&*len.to_string()));
        // Keep-alive: the same connection answers a conditional request with 304.
        let etag = h.header("etag").unwrap().to_string();
        write!(
            s,
            "GET /a.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut s, true).unwrap();
        assert_eq!(r.status, 304);
        // Then the whole file, still on the same connection.
        s.write_all(b"GET /a.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.body.len() as u64, len);
        assert_pattern(&r.body, 0, "whole");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("a clean close_notify");
        assert!(rest.is_empty());
    }
}

#[test]
fn bad_clients_do_not_disturb_the_others() {
    let fx = Fixture::new();
    let len = (1 << 20) + 3;
    write_pattern(&fx.root().join("f"), len);
    let pki = Pki::new();
    // As many handshake slots as good clients: bad clients, older, are closed first
    // when the slots are full; good ones never have to shed each other.
    let srv = start(&fx.root(), &pki, |c| {
        c.workers = 1;
        c.tls.as_mut().unwrap().limits = Limits {
            handshake_timeout: Duration::from_millis(500),
            max_handshakes: 4,
        };
    });
    let addr = srv.addr;
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_response(&mut plain, false).expect("a clear-text answer");
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("https://"));
    // Clients that never speak hold handshake slots until the deadline, or until
    // newer clients need their slots.
    let stalled: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"\x01\x02\x03 not TLS\r\n\r\n").unwrap();
    {
        // A client that leaves in the middle of its hello.
        let cfg = client_config(&pki.ca, TLS13);
        let mut c = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(&hello[..hello.len() / 2]).unwrap();
    }
    let good: Vec<_> = (0..4)
        .map(|i| {
            let versions = if i % 2 == 0 { TLS13 } else { TLS12 };
            let cfg = client_config(&pki.ca, versions);
            std::thread::spawn(move || {
                let r = get_tls(addr, &cfg, "/f", "");
                assert_eq!(r.status, 200);
                assert_eq!(r.body.len() as u64, len);
                assert_pattern(&r.body, 0, "good client");
            })
        })
        .collect();
    for g in good {
        g.join().unwrap();
    }
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "a silent client is closed without a byte"
        );
    }
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = garbage.read_to_end(&mut got);
    assert!(got.is_empty(), "garbage gets nothing: {got:?}");
}

/// The issue: 600 idle or half-ClientHello connections held every handshake slot
/// (2 × 256) and a good HTTPS client waited 9.5 s (until the idle ones timed out).
/// Now a new client beyond `--tls-max-handshakes` closes the oldest unfinished
/// handshake, as plain connections are shed at the connection cap.
#[test]
fn idle_and_half_hello_clients_cannot_hold_the_handshake_slots() {
    let fx = Fixture::new();
    fx.file("a.txt", b"hello");
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |c| {
        c.workers = 2;
        c.tls.as_mut().unwrap().limits = Limits {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 4,
        };
    });
    let addr = srv.addr;
    let cfg = client_config(&pki.ca, TLS13);
    let hello = {
        let mut c =
            ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        hello
    };
    let mut held = Vec::new();
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        // 40 more silent or half-hello clients, 10 times the slots of both workers.
        for i in 0..40 {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                s.write_all(&hello[..hello.len() / 2]).unwrap();
            }
            held.push(s);
        }
        let t = std::time::Instant::now();
        let r = get_tls(addr, &cfg, "/a.txt", "");
        let took = t.elapsed();
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"hello"[..]),
            "round {round}"
        );
        worst = worst.max(took);
    }
    eprintln!("good HTTPS client's worst answer among 200 stalled handshakes: {worst:?}");
    assert!(worst < Duration::from_secs(2), "{worst:?}");
    // The oldest stalled clients were closed to make room, without a byte.
    let mut first = held.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(first.read(&mut b), Ok(0) | Err(_)));
}

/// The issue: HTTPS downloads closed mid-body without close_notify left no access
/// log line and no count (plain HTTP logged every one), and HTTPS body bytes were
/// missing from `zcopy_body_bytes_total` (a 300 MB download counted 0).
#[test]
fn aborted_https_downloads_are_logged_and_body_bytes_counted() {
    use zcopy_http::config::AccessLog;
    let fx = Fixture::new();
    let len = 8 << 20;
    write_pattern(&fx.root().join("big"), len);
    write_pattern(&fx.root().join("one"), 1 << 20);
    let pki = Pki::new();
    let log = fx.root().join("../access.log");
    let mut cfg = Config {
        root: fx.root(),
        listen: Vec::new(),
        tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(pki.tls()),
        workers: 1,
        access_log: Some(AccessLog::File(log.clone())),
        ..Config::default()
    };
    cfg.io = zcopy_http::driver::IoDriver::Epoll;
    let server = zcopy_http::server::Server::bind(cfg).unwrap();
    let addr = server.local_addrs()[0];
    let stats = server.stats();
    let running = server.spawn().unwrap();
    let client = client_config(&pki.ca, TLS13);

    // One whole download, then one cut off after 256 KiB (no close_notify).
    let r = get_tls(addr, &client, "/one", "");
    assert_eq!(r.body.len(), 1 << 20);
    {
        let mut s = connect(addr, &client);
        write!(s, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < 256 * 1024 {
            got += s.read(&mut buf).unwrap();
        }
        // Dropped: the socket closes, no close_notify.
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("GET /big") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for the aborted download: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("GET /one"), "{text}");
    let metrics = stats.render();
    assert!(
        metrics.contains("zcopy_requests_total{method=\"GET\",status=\"2xx\"} 2"),
        "{metrics}"
    );
    let body: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("zcopy_body_bytes_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(body >= (1 << 20) + 256 * 1024, "{body}\n{metrics}");
    running.stop().unwrap();
}

#[test]
fn hsts_only_over_tls_and_the_redirect_listener_answers_308() {
    let fx = Fixture::new();
    fx.file("x.txt", b"hello");
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |c| {
        c.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.redirect_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.hsts = Some("max-age=600".into());
    });
    let (plain_addr, tls_addr, redirect_addr) = (srv.addrs[0], srv.addrs[1], srv.addrs[2]);
    let cfg = client_config(&pki.ca, TLS13);
    let r = get_tls(tls_addr, &cfg, "/x.txt", "");
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    assert_eq!(r.header("strict-transport-security"), Some("max-age=600"));
    let r = get_tls(tls_addr, &cfg, "/missing", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("strict-transport-security"), Some("max-age=600"));
    let (r, _) = raw_at(plain_addr, b"GET /x.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
    let (r, _) = raw_at(
        redirect_addr,
        b"GET /a%20b/c?d=1 HTTP/1.1\r\nHost: example.org:8080\r\n\r\n",
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://example.org:{}/a%20b/c?d=1", tls_addr.port())
    );
    assert_eq!(r.header("strict-transport-security"), None);
    let (r, _) = raw_at(redirect_addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 400, "no Host, nowhere to redirect to");
}

fn raw_at(addr: SocketAddr, req: &[u8]) -> (RawResponse, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req).unwrap();
    (read_response(&mut s, false).expect("a response"), s)
}

#[test]
fn reload_presents_the_new_certificate_and_keeps_the_old_on_error() {
    let fx = Fixture::new();
    fx.file("x", b"x");
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |_| {});
    let old = client_config(&pki.ca, TLS13);
    assert_eq!(get_tls(srv.addr, &old, "/x", "").status, 200);
    let new_ca = issue(&pki.files);
    assert!(srv.running().reload_tls().expect("reload"));
    let new = client_config(&new_ca, TLS13);
    assert_eq!(get_tls(srv.addr, &new, "/x", "").status, 200);
    // A fresh client (a resumed session would skip the certificate check).
    let old = client_config(&pki.ca, TLS13);
    let mut s = connect(srv.addr, &old);
    let e = s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut b = [0u8; 1];
    assert!(
        e.is_err() || s.read(&mut b).is_err(),
        "the old CA no longer verifies"
    );
    // A broken key file: the reload fails, naming the file; the certificate stays.
    std::fs::write(&pki.files.key, "not a key").unwrap();
    let e = srv.running().reload_tls().unwrap_err().to_string();
    assert!(e.contains("key.pem"), "{e}");
    assert_eq!(get_tls(srv.addr, &new, "/x", "").status, 200);
}

#[test]
fn ktls_hand_off_or_clean_fallback() {
    let fx = Fixture::new();
    let len = (2 << 20) + 5;
    write_pattern(&fx.root().join("f"), len);
    let pki = Pki::new();
    let probe = zcopy::ktls::probe();
    // Where the kernel has no tls ULP, the hand-off is attempted anyway: the socket
    // refuses the ULP and the connection goes on in user space.
    let srv = start(&fx.root(), &pki, |c| {
        c.tls.as_mut().unwrap().force_ktls_attempt = true;
    });
    for versions in [TLS13, TLS12] {
        let cfg = client_config(&pki.ca, versions);
        let mut s = connect(srv.addr, &cfg);
        for range in ["0-", "777-100776"] {
            write!(
                s,
                "GET /f HTTP/1.1\r\nHost: x\r\nRange: bytes={range}\r\n\r\n"
            )
            .unwrap();
            let r = read_response(&mut s, false).unwrap();
            assert_eq!(r.status, 206);
            let start: u64 = range.split('-').next().unwrap().parse().unwrap();
            assert_pattern(&r.body, start, range);
        }
    }
    if !probe.available() {
        println!("skipped: {probe} (the kTLS transfer; the fallback ran)");
    }
}

#[test]
fn resumption_works_and_a_wrong_name_fails_at_the_client_only() {
    let fx = Fixture::new();
    fx.file("x", b"x");
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |_| {});
    // Without tickets and session cache, every handshake is a full one.
    let no_resumption = start(&fx.root(), &pki, |c| {
        let o = &mut c.tls.as_mut().unwrap().options;
        (o.tickets, o.session_cache) = (false, 0);
    });
    for versions in [TLS13, TLS12] {
        for (srv, second) in [
            (&srv, rustls::HandshakeKind::Resumed),
            (&no_resumption, rustls::HandshakeKind::Full),
        ] {
            let cfg = client_config(&pki.ca, versions);
            let kinds: Vec<_> = (0..2)
                .map(|_| {
                    let mut s = connect(srv.addr, &cfg);
                    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    assert_eq!(read_response(&mut s, false).unwrap().status, 200);
                    s.conn.handshake_kind()
                })
                .collect();
            assert_eq!(kinds, [Some(rustls::HandshakeKind::Full), Some(second)]);
        }
    }
    // Every client gets the one certificate; one that asked for another name refuses it.
    let cfg = client_config(&pki.ca, TLS13);
    let sock = TcpStream::connect(srv.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from("other.example").unwrap();
    let mut s = StreamOwned::new(ClientConnection::new(cfg.clone(), name).unwrap(), sock);
    let e = s
        .write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .and_then(|_| s.read(&mut [0u8; 1]));
    let e = e.expect_err("wrong name accepted").to_string();
    assert!(e.contains("not valid for name"), "{e}");
    assert_eq!(get_tls(srv.addr, &cfg, "/x", "").status, 200);
}

/// An upload over TLS is received by copy (decrypted into the core's buffer, then
/// written to the file), byte-exact, with the head and body in one write and after
/// a 100 Continue.
#[test]
fn put_over_tls_is_byte_exact() {
    let fx = Fixture::new();
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |c| c.upload = true);
    let cfg = client_config(&pki.ca, TLS13);
    for (len, expect) in [(0usize, false), (70_000, false), (3 << 20, true)] {
        let body = pattern(len as u64, len);
        let mut s = connect(srv.addr, &cfg);
        let mut head = format!("PUT /t{len} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n");
        if expect {
            head.push_str("Expect: 100-continue\r\n");
        }
        head.push_str("\r\n");
        if expect {
            s.write_all(head.as_bytes()).unwrap();
            let mut interim = [0u8; 25];
            s.read_exact(&mut interim).unwrap();
            assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            s.write_all(&body).unwrap();
        } else {
            let mut all = head.into_bytes();
            all.extend_from_slice(&body);
            s.write_all(&all).unwrap();
        }
        let r = read_response(&mut s, false).expect("a response");
        assert_eq!(r.status, 201, "{len}");
        let got = std::fs::read(fx.root().join(format!("t{len}"))).unwrap();
        assert_eq!(got.len(), len);
        assert_pattern(&got, len as u64, &format!("TLS PUT {len}"));
    }
}

/// A file not in the page cache, over HTTPS: read off the loop (epoll: the fetch
/// thread; io_uring: a READ in the ring), encrypted, byte-exact, with a small file
/// served meanwhile on the same worker.
#[test]
fn a_cold_file_over_tls_is_read_off_the_loop_and_sent_byte_exact() {
    let fx = Fixture::new();
    let len: u64 = (8 << 20) + 3;
    let path = fx.root().join("cold.bin");
    write_pattern(&path, len);
    fx.file("small.txt", b"small");
    let f = std::fs::File::open(&path).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    if zcopy_http::driver::fetch::is_cached(&f, 0, len) {
        println!("skipped: this file system keeps the file cached (tmpfs?)");
        return;
    }
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |c| c.workers = 1);
    let cfg = client_config(&pki.ca, TLS13);
    let addr = srv.addr;
    let c2 = cfg.clone();
    let big = std::thread::spawn(move || get_tls(addr, &c2, "/cold.bin", ""));
    let small = get_tls(addr, &cfg, "/small.txt", "");
    assert_eq!((small.status, &small.body[..]), (200, &b"small"[..]));
    let r = big.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, len);
    assert_pattern(&r.body, 0, "cold file over TLS");
    assert!(
        zcopy_http::driver::fetch::is_cached(&f, 0, len),
        "the file was read in"
    );
}

/// WebDAV request bodies (PROPFIND, PROPPATCH) over TLS: received into memory
/// through the upload path, with the head and after it.
#[test]
fn webdav_bodies_over_tls() {
    let fx = Fixture::new();
    fx.file("f.txt", b"hello");
    let pki = Pki::new();
    let srv = start(&fx.root(), &pki, |c| c.webdav = true);
    let cfg = client_config(&pki.ca, TLS13);
    let set = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><n xmlns="urn:n">v1</n></D:prop></D:set></D:propertyupdate>"#;
    let find = r#"<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;
    for (i, (method, body, want)) in [
        ("PROPPATCH", set, "HTTP/1.1 200 OK"),
        ("PROPFIND", find, ">v1<"),
    ]
    .into_iter()
    .enumerate()
    {
        for split in [false, true] {
            let mut s = connect(srv.addr, &cfg);
            let head = format!(
                "{method} /f.txt HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if split {
                s.write_all(head.as_bytes()).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                s.write_all(body.as_bytes()).unwrap();
            } else {
                s.write_all(format!("{head}{body}").as_bytes()).unwrap();
            }
            let r = read_response(&mut s, false).expect("a response");
            assert_eq!(r.status, 207, "{i} {split}");
            let t = String::from_utf8_lossy(&r.body);
            assert!(t.contains(want), "{method}: {t}");
        }
    }
}

/// Issue 18: a TLS client that sends part of a head and waits (a slowloris) kept
/// the core's whole 4 KiB read buffer on the epoll driver: the short read that
/// emptied the socket skipped the read that would say EAGAIN, and with it the
/// step that cuts a partial head down to a copy of its bytes. User-space TLS
/// (kTLS off), the suite's driver.
#[test]
fn tls_partial_heads_hold_only_their_bytes() {
    let fx = Fixture::new();
    write_pattern(&fx.root().join("a.bin"), 1000);
    let pki = Pki::new();
    let mut tls = pki.tls();
    tls.ktls = KtlsMode::Off;
    let (srv, stats) = TestServer::with_stats(Config {
        root: fx.root(),
        listen: Vec::new(),
        tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(tls),
        workers: 1,
        io: io_driver(),
        ..Config::default()
    });
    let addr = srv.addr;
    let cfg = client_config(&pki.ca, TLS13);
    let conns = 24;
    let mut socks: Vec<Tls> = (0..conns)
        .map(|_| {
            let mut s = connect(addr, &cfg);
            s.write_all(b"GET /a.bin HTTP/1.1\r\nHost: x\r\n").unwrap();
            s.flush().unwrap();
            s
        })
        .collect();
    // The gauge is set once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let held = stat(&stats, "zcopy_connection_buffer_bytes");
    // Before: a 4 KiB read buffer per connection; a partial head's copy is ~30 bytes.
    let bound = conns as u64 * 1024;
    assert!(
        held < bound,
        "{conns} TLS connections with part of a head hold {held} bytes of buffer (bound {bound})"
    );
    for (c, s) in socks.iter_mut().enumerate() {
        s.write_all(b"\r\n").unwrap();
        s.flush().unwrap();
        let r = read_response(s, false).expect("a response");
        assert_eq!((r.status, r.body.len()), (200, 1000), "connection {c}");
        assert_pattern(&r.body, 0, &format!("connection {c}"));
    }
}
