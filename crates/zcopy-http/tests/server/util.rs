//! Shared helpers: a real server on 127.0.0.1:0, a fixture tree, raw HTTP parsing.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use zcopy_http::config::Config;
use zcopy_http::driver::IoDriver;
use zcopy_http::server::{RunningServer, Server};
use zcopy_http::stats::ServerStats;

/// A server running in this process, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Every bound address (plain, then HTTPS, then redirect listeners).
    pub addrs: Vec<SocketAddr>,
    running: Option<RunningServer>,
}

impl TestServer {
    /// Serves `root` with the given tweaks to the default config, on the I/O driver
    /// named by `ZCOPY_IO` (`epoll`, the default, or `uring`).
    pub fn start(root: &Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config {
            root: root.to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            workers: 2,
            io: io_driver(),
            ..Config::default()
        };
        tweak(&mut cfg);
        TestServer::with_stats(cfg).0
    }

    /// Serves `cfg` exactly as given (none of [`TestServer::start`]'s defaults),
    /// with the server's metrics.
    pub fn with_stats(cfg: Config) -> (TestServer, std::sync::Arc<ServerStats>) {
        let server = Server::bind(cfg).expect("bind");
        let stats = server.stats();
        let addr = server.local_addrs()[0];
        (
            TestServer::adopt(addr, server.spawn().expect("spawn")),
            stats,
        )
    }

    /// A server started by the caller (to keep its `Server` handles first).
    pub fn adopt(addr: SocketAddr, running: RunningServer) -> TestServer {
        TestServer {
            addr,
            addrs: running.local_addrs().to_vec(),
            running: Some(running),
        }
    }

    /// The event loop the server's workers really run.
    pub fn io_driver(&self) -> IoDriver {
        self.running.as_ref().expect("running").io_driver()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A raw connection with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("running")
    }

    /// Stops the server, waiting for its workers.
    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().expect("clean stop");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

/// The driver the suite runs on: `ZCOPY_IO` (default epoll).
pub fn io_driver() -> IoDriver {
    std::env::var("ZCOPY_IO")
        .ok()
        .filter(|v| !v.is_empty())
        .map_or(IoDriver::Epoll, |v| {
            v.parse().expect("ZCOPY_IO: epoll or uring")
        })
}

/// A ureq agent that returns every status instead of turning 4xx/5xx into errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// GETs `url` with extra headers and returns (status, headers, body).
pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().expect("request");
    let status = resp.status().as_u16();
    let hdrs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .expect("body");
    (status, hdrs, body)
}

/// The value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Reads one response (head, then Content-Length bytes unless `head_only`).
/// `None` at a clean EOF before any byte.
pub fn read_response(s: &mut impl Read, head_only: bool) -> Option<RawResponse> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) if head.is_empty() => return None,
            Ok(0) => panic!(
                "EOF inside a response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(b[0]),
            // Interrupted by a signal (seen once under scripts/test.sh): std does not retry.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if head.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return None;
            }
            Err(e) => panic!("reading head: {e}"),
        }
    }
    let text = String::from_utf8(head).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header colon");
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; if head_only { 0 } else { len }];
    s.read_exact(&mut body).expect("body");
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// True when the server closed the connection (EOF or reset) before sending more.
pub fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Sends `req` on a fresh connection and reads one response.
pub fn raw(server: &TestServer, req: &[u8]) -> (RawResponse, TcpStream) {
    let mut s = server.connect();
    s.write_all(req).unwrap();
    let r = read_response(&mut s, false).expect("a response");
    (r, s)
}

/// The pattern byte content for offset-checkable files: each 8-byte word holds its
/// own offset (little-endian), so a misplaced byte shows where it came from.
pub fn pattern(start: u64, len: usize) -> Vec<u8> {
    pattern_slice(start, len).into_owned()
}

/// The pattern's first bytes, made once per process for the large files and bodies
/// (an unoptimized test build takes about a second to make 100 MiB word by word,
/// which the largest tests did once per engine and per comparison).
const KEPT: usize = (128 << 20) + 8;

/// [`pattern`], borrowed from the kept prefix where it lies inside it.
fn pattern_slice(start: u64, len: usize) -> Cow<'static, [u8]> {
    static KEPT_PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    let kept = if len >= 1 << 20 {
        Some(KEPT_PATTERN.get_or_init(|| make_pattern(0, KEPT)))
    } else {
        KEPT_PATTERN.get()
    };
    let at = usize::try_from(start).ok();
    match kept
        .zip(at)
        .and_then(|(k, at)| k.get(at..at.checked_add(len)?))
    {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(make_pattern(start, len)),
    }
}

fn make_pattern(start: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 16);
    let mut word = start / 8;
    let skip = (start % 8) as usize;
    while v.len() < len + skip {
        v.extend_from_slice(&(word * 8).to_le_bytes());
        word += 1;
    }
    v.drain(..skip);
    v.truncate(len);
    v
}

/// Writes a pattern file of `len` bytes (in 1 MiB chunks).
pub fn write_pattern(path: &Path, len: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut off = 0;
    while off < len {
        let n = (len - off).min(1 << 20);
        f.write_all(&pattern_slice(off, n as usize)).unwrap();
        off += n;
    }
}

/// Compares `body` with the pattern from `start`, panicking at the first difference.
pub fn assert_pattern(body: &[u8], start: u64, what: &str) {
    let mut off = 0usize;
    while off < body.len() {
        let n = (body.len() - off).min(1 << 20);
        let want = pattern_slice(start + off as u64, n);
        if body[off..off + n] != want[..] {
            let i = (0..n).find(|&i| body[off + i] != want[i]).unwrap();
            panic!("{what}: byte {} differs", off + i);
        }
        off += n;
    }
}

/// A temp dir with `root/` (served) and a secret file beside it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes `root/name` (creating parent dirs).
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.root().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }
}

/// The content of the file outside the root that must never be served.
pub const SECRET: &[u8] = b"TOP-SECRET-4f1c9e";

#[path = "../../../../tests/support/tool.rs"]
mod tool_support;
pub use tool_support::tool;

/// Whether `prog` runs (`prog --version`).
pub fn have(prog: &str) -> bool {
    std::process::Command::new(prog)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `METHOD path` with extra header fields on a fresh connection (closed after).
pub fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = server.connect();
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, method == "HEAD").expect("a response")
}

/// Whether `prog` runs; when it doesn't, says "skipped" — or fails under `CI=true`,
/// where scripts/test.sh must have installed it.
pub fn require(prog: &str) -> bool {
    if have(prog) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{prog} is missing under CI=true (scripts/test.sh installs it)"
    );
    eprintln!("skipped: {prog} not installed");
    false
}

/// Held while a test has veth peers classified as remote
/// ([`zcopy::peer::set_test_veth_is_remote`]): the switch is process-wide, and the
/// tests that need veth peers to be local must not run meanwhile.
pub static VETH_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` with veth peers classified as remote (test-only switch), then switches
/// it back off.
pub fn with_veth_as_remote<T>(f: impl FnOnce() -> T) -> T {
    let _held = VETH_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            zcopy::peer::set_test_veth_is_remote(false);
        }
    }
    let _off = Off;
    zcopy::peer::set_test_veth_is_remote(true);
    f()
}

/// A file system mounted for a test, unmounted (lazily: a server may still hold a
/// file of it open) when dropped.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A 1 MiB tmpfs mounted on the directory `at` (made here), or `None` after
/// saying "skipped" when it can't be mounted.
pub fn small_tmpfs(at: &Path) -> Option<Mounted> {
    std::fs::create_dir(at).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: can't mount a tmpfs here");
        return None;
    }
    Some(Mounted(at.to_path_buf()))
}

/// Headless Chromium's serialised DOM of `url` once its scripts ran, with `extra`
/// flags (certificate errors ignored, a virtual time budget, ...): its output, for
/// the caller to read `stdout` (the DOM) and `stderr`.
#[allow(dead_code)]
pub fn chromium_dom(url: &str, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium")
}

/// Names in `dir`, sorted (dotfiles too: a temporary file would show).
#[allow(dead_code)]
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The value of one series (its name with any labels, as the metrics endpoint
/// renders it) in a metrics text; `None` when the series is not there.
pub fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of one series of a running server's metrics; panics when the
/// series is missing (a misspelt name must not read as zero).
pub fn stat(stats: &ServerStats, series: &str) -> u64 {
    let text = stats.render();
    metric(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}
