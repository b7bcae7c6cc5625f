//! `zcopy serve` with HTTPS listeners: the flags, their usage errors (exit 2 with
//! zcopy-tls's message), the start-up line, and `zcopy engines` on kTLS.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rcgen::{CertificateParams, KeyPair};

use crate::util::zcopy;

/// A self-signed certificate for 127.0.0.1 and its key, plus a second key that
/// does not match it; returns (cert, key, other key) paths.
pub(crate) fn files(dir: &Path) -> [String; 3] {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let paths = ["cert.pem", "key.pem", "other.pem"].map(|n| dir.join(n));
    std::fs::write(&paths[0], cert.pem()).unwrap();
    std::fs::write(&paths[1], key.serialize_pem()).unwrap();
    std::fs::write(&paths[2], other.serialize_pem()).unwrap();
    paths.map(|p| p.to_str().unwrap().to_string())
}

/// Runs `zcopy serve ROOT ARGS` expecting exit 2 and `want` in its message.
fn exits_2(root: &Path, args: &[&str], want: &str) {
    let out = zcopy(&["serve", root.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
}

#[test]
fn tls_usage_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let [cert, key, other] = files(dir.path());
    let root = dir.path();
    let https = ["--listen", "https://127.0.0.1:0"];
    exits_2(root, &https, "needs --tls-cert");
    exits_2(
        root,
        &[&https[..], &["--tls-cert", &cert]].concat(),
        "go together",
    );
    exits_2(
        root,
        &[
            "--listen",
            "http://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        "every listener says http://",
    );
    exits_2(root, &["--listen", "127.0.0.1:0", "--hsts", "60"], "--hsts");
    exits_2(
        root,
        &["--listen", "127.0.0.1:0", "--redirect-http", "127.0.0.1:0"],
        "--redirect-http",
    );
    exits_2(root, &["--listen", "ftp://127.0.0.1:0"], "ftp://");
    exits_2(root, &["--ktls", "maybe"], "auto, off");
    exits_2(root, &["--tls-tickets=maybe"], "maybe");
    fn with<'a>(c: &'a str, k: &'a str) -> Vec<&'a str> {
        vec![
            "--listen",
            "https://127.0.0.1:0",
            "--tls-cert",
            c,
            "--tls-key",
            k,
        ]
    }
    exits_2(root, &with(&cert, &other), "does not match");
    exits_2(root, &with("/no/such/cert.pem", &key), "/no/such/cert.pem");
    exits_2(root, &with(&cert, "/no/such/key.pem"), "/no/such/key.pem");
    exits_2(root, &with(&key, &key), "no certificate found");
    exits_2(root, &with(&cert, &cert), "no private key found");
}

#[test]
fn start_up_line_names_each_listener_and_its_tls_path() {
    let dir = tempfile::tempdir().unwrap();
    let [cert, key, _] = files(dir.path());
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("zcopy"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "https://127.0.0.1:0",
        ])
        .args([
            "--redirect-http",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    let (plain, tls, redirect) = (next(), next(), next());
    let _ = child.kill();
    let _ = child.wait();
    assert!(plain.contains(" on http://127.0.0.1:"), "{plain}");
    assert!(tls.contains(" on https://127.0.0.1:"), "{tls}");
    let probe = zcopy::ktls::probe();
    if probe.available() {
        assert!(tls.contains("; kTLS)"), "{tls}");
    } else {
        assert!(
            tls.contains("; userspace TLS (kernel has no tls ULP"),
            "{tls}"
        );
    }
    assert!(
        redirect.contains("redirecting http://127.0.0.1:"),
        "{redirect}"
    );
}

#[test]
fn engines_says_whether_ktls_is_available() {
    let out = zcopy(&["engines"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("kTLS: "))
        .unwrap_or_else(|| panic!("no kTLS line in {text}"));
    if zcopy::ktls::probe().available() {
        assert!(line.starts_with("kTLS: yes"), "{line}");
    } else {
        assert!(
            line.starts_with("kTLS: no, kernel has no tls ULP"),
            "{line}"
        );
    }
}

/// `zcopy serve --io uring --workers 2 ARGS ROOT` under strace, which writes the
/// workers' epoll waits and io_uring submissions to a file; ROOT holds `big` (1 MiB)
/// and `small`. For the tests that a protocol really runs on the ring.
struct TracedUring {
    strace: std::process::Child,
    trace: std::path::PathBuf,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    big: Vec<u8>,
}

impl TracedUring {
    /// None (and says skipped) when strace or curl is missing.
    fn start(dir: &Path, args: &[&str]) -> Option<TracedUring> {
        if !crate::util::tool("strace", "-V") || !crate::util::tool("curl", "--version") {
            println!("skipped: strace or curl is missing");
            return None;
        }
        let root = dir.join("root");
        std::fs::create_dir(&root).unwrap();
        let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(root.join("big"), &big).unwrap();
        std::fs::write(root.join("small"), b"hello\n").unwrap();
        let trace = dir.join("trace.txt");
        let mut strace = Command::new("strace")
            .args([
                "-f",
                "-e",
                "trace=epoll_wait,epoll_pwait,epoll_pwait2,io_uring_enter",
            ])
            .arg("-o")
            .arg(&trace)
            .arg(assert_cmd::cargo::cargo_bin("zcopy"))
            .args(["serve", "--io", "uring", "--workers", "2"])
            .args(args)
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(strace.stdout.take().unwrap()).lines();
        Some(TracedUring {
            strace,
            trace,
            lines,
            big,
        })
    }

    /// The address after `scheme` on the server's next line of output.
    fn addr(&mut self, scheme: &str) -> Option<String> {
        let line = self.lines.next().map(|l| l.unwrap()).unwrap_or_default();
        line.split(' ')
            .find_map(|w| w.strip_prefix(scheme))
            .map(|a| a.trim_end_matches('/').to_owned())
    }

    /// Reads the trace, then stops the server (strace's child: SIGTERM to it ends
    /// both): the trace and strace's stderr (the server's), or None when the kernel
    /// refused io_uring (said skipped).
    fn stop(mut self) -> Option<(String, String)> {
        let seen = std::fs::read_to_string(&self.trace).unwrap();
        let kids: String = std::fs::read_dir(format!("/proc/{}/task", self.strace.id()))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .collect();
        if let Some(server) = kids.split_whitespace().next() {
            let _ = Command::new("kill").args(["-TERM", server]).status();
        }
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.strace.stderr.take().unwrap(), &mut err).unwrap();
        self.strace.wait().unwrap();
        // Refused by the kernel (or forced off): "--io uring: io_uring unavailable: ..".
        if err.contains("--io uring: io_uring") {
            println!("skipped: io_uring refused here ({})", err.trim());
            return None;
        }
        assert!(
            seen.contains("io_uring_enter("),
            "no io_uring_enter in:\n{seen}"
        );
        assert!(!seen.contains("epoll_"), "waited in epoll:\n{seen}");
        Some((seen, err))
    }
}

/// HTTPS under `--io uring` really runs on io_uring: strace sees the workers
/// submit to their rings (`io_uring_enter`) and never wait in epoll while they
/// answer HTTPS requests (a 1 MiB body and small ones, on one keep-alive
/// connection, byte-exact). The shutdown that follows may look at the waker's
/// epoll instance once; the trace is read before it.
#[test]
fn https_under_io_uring_runs_on_the_ring_without_epoll_wait() {
    let dir = tempfile::tempdir().unwrap();
    let [cert, key, _] = files(dir.path());
    let tls = ["--listen", "https://127.0.0.1:0"];
    let Some(mut srv) = TracedUring::start(
        dir.path(),
        &[&tls[..], &["--tls-cert", &cert, "--tls-key", &key]].concat(),
    ) else {
        return;
    };
    let addr = srv.addr("https://").expect("an https address");
    let got = dir.path().join("got");
    let out = Command::new("curl")
        .args(["-sSfk", "--http1.1", "--max-time", "20"])
        .args(["-o", "/dev/null", &format!("https://{addr}/small")])
        .args(["-o", got.to_str().unwrap(), &format!("https://{addr}/big")])
        .args(["-o", "/dev/null", &format!("https://{addr}/small")])
        .args(["-w", "%{http_code} %{num_connects}\\n"])
        .output()
        .unwrap();
    let big = std::mem::take(&mut srv.big);
    if srv.stop().is_none() {
        return;
    }
    assert!(out.status.success(), "curl: {out:?}");
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(codes, "200 1\n200 0\n200 0\n", "one keep-alive connection");
    assert!(
        std::fs::read(&got).unwrap() == big,
        "the 1 MiB body byte-exact"
    );
}

/// HTTP/2 under `--io uring` really runs on io_uring: h2c with prior knowledge on
/// a plain listener and `h2` by ALPN on an HTTPS one (a 1 MiB body between small
/// ones, each on one connection, byte-exact), while strace sees the workers submit
/// to their rings and never wait in epoll. The trace is read before the shutdown.
#[test]
fn http2_under_io_uring_runs_on_the_ring_without_epoll_wait() {
    let dir = tempfile::tempdir().unwrap();
    let [cert, key, _] = files(dir.path());
    let Some(mut srv) = TracedUring::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "https://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    ) else {
        return;
    };
    let (plain, tls) = (srv.addr("http://"), srv.addr("https://"));
    let mut runs = Vec::new();
    if let (Some(plain), Some(tls)) = (&plain, &tls) {
        for (how, url) in [
            ("--http2-prior-knowledge", format!("http://{plain}")),
            ("--http2", format!("https://{tls}")),
        ] {
            let got = dir.path().join(format!("got{}", runs.len()));
            let mut curl = Command::new("curl");
            curl.args(["-sSfk", how, "--max-time", "20"]);
            curl.args(["-w", "%{http_code} %{http_version} %{num_connects}\\n"]);
            if how == "--http2" {
                // One connection for all three (curl 7.88 fails to reuse an h2c
                // connection it opened with prior knowledge, whatever the server).
                curl.args(["-o", "/dev/null", &format!("{url}/small")]);
            }
            curl.args(["-o", got.to_str().unwrap(), &format!("{url}/big")]);
            if how == "--http2" {
                curl.args(["-o", "/dev/null", &format!("{url}/small")]);
            }
            runs.push((how, curl.output().unwrap(), got));
        }
    }
    let big = std::mem::take(&mut srv.big);
    let Some((_, err)) = srv.stop() else {
        return;
    };
    assert!(plain.is_some() && tls.is_some(), "{err}");
    for (how, out, got) in runs {
        assert!(out.status.success(), "curl {how}: {out:?}");
        let codes = String::from_utf8_lossy(&out.stdout);
        let want = match how {
            "--http2" => "200 2 1\n200 2 0\n200 2 0\n",
            _ => "200 2 1\n",
        };
        assert_eq!(codes, want, "{how}: HTTP/2, one connection");
        assert!(
            std::fs::read(&got).unwrap() == big,
            "{how}: 1 MiB byte-exact"
        );
    }
}
