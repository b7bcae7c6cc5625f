//! SIGHUP changes the listener set and the worker count: a new address answers (its
//! start-up line printed), a removed one refuses new clients while a connection it
//! accepted before gets its next response, workers go 1 → 3 → 1 under load with no
//! failed request, and a bind that fails keeps the old configuration whole. Each on
//! the epoll and on the io_uring driver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::serve::{bin, signal};
use crate::util::pattern;

/// A `zcopy serve --config FILE ROOT` and what it prints.
struct Serve {
    child: Child,
    cfg: std::path::PathBuf,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    /// The I/O driver really running (io_uring may be refused here).
    uring: bool,
}

fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(plain(&l));
        }
    });
    rx
}

/// `line` without its terminal colour codes (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        match (in_code, c) {
            (false, '\x1b') => in_code = true,
            (false, c) => out.push(c),
            (true, 'm') => in_code = false,
            (true, _) => {}
        }
    }
    out
}

/// Waits (bounded) for a line containing `what`; returns it.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains(what) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no {what:?}; saw {seen:#?}"),
        }
    }
}

/// The address of a start-up line ("zcopy: serving ROOT on http://ADDR/ (...)").
fn addr_of(line: &str) -> String {
    line.split(' ')
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_owned()
}

impl Serve {
    /// Starts on `io` with config `body`; returns it and its first address.
    fn start(dir: &std::path::Path, io: &str, body: &str) -> (Serve, String) {
        Serve::start_with(Command::new(bin()), dir, io, body)
    }

    /// Like [`Serve::start`], `zcopy serve` run by `cmd` (e.g. a shell that passes
    /// it listening sockets).
    fn start_with(
        mut cmd: Command,
        dir: &std::path::Path,
        io: &str,
        body: &str,
    ) -> (Serve, String) {
        let cfg = dir.join("z.toml");
        std::fs::write(&cfg, format!("io = \"{io}\"\n{body}")).unwrap();
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg(dir.join("www"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        let first = wait_line(&out, "zcopy: serving ");
        let mut s = Serve {
            child,
            cfg,
            out,
            err,
            uring: io == "uring",
        };
        if s.uring {
            // A refused io_uring says so at start; then this run is the epoll one again.
            std::thread::sleep(Duration::from_millis(200));
            while let Ok(l) = s.err.try_recv() {
                if l.contains("using epoll") {
                    println!("skipped: io_uring refused here ({l})");
                    s.uring = false;
                }
            }
        }
        (s, addr_of(&first))
    }

    /// Rewrites the config file (keeping `io`) and sends SIGHUP; returns the stderr
    /// lines up to the one that says how it went ("configuration reloaded" or
    /// "reload failed").
    fn reload(&mut self, body: &str) -> String {
        let io = if self.uring { "uring" } else { "epoll" };
        std::fs::write(&self.cfg, format!("io = \"{io}\"\n{body}")).unwrap();
        signal(&self.child, "-HUP");
        let mut seen = Vec::new();
        loop {
            match self.err.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.contains("configuration reloaded") || l.contains("reload failed") => {
                    seen.push(l);
                    return seen.join("\n");
                }
                Ok(l) => seen.push(l),
                Err(_) => panic!("no reload outcome; saw {seen:#?}"),
            }
        }
    }

    /// Threads of the process named `zcopy-worker-*`.
    fn workers(&self) -> usize {
        let dir = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.starts_with("zcopy-worker"))
            .count()
    }

    /// Waits (bounded) until `n` worker threads run.
    fn wait_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.workers() != n {
            assert!(
                Instant::now() < deadline,
                "{} worker threads, not {n}",
                self.workers()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        signal(&self.child, "-TERM");
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
}

/// A site with `a.bin` (`len` bytes of a pattern).
fn site(len: usize) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    let body = pattern(len, 7);
    std::fs::write(dir.path().join("www/a.bin"), &body).unwrap();
    (dir, body)
}

/// Sends `GET path` on `s` and reads the response: status and body.
fn ask(s: &mut TcpStream, path: &str, close: bool) -> std::io::Result<(u16, Vec<u8>)> {
    let conn = if close { "close" } else { "keep-alive" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        // read_exact retries EINTR: with SO_RCVTIMEO set, a stop and continue of this
        // process (or any handled signal) ends a blocked read with EINTR (signal(7)).
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, body))
}

/// One request on a new connection.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    ask(&mut s, path, true)
}

const DRIVERS: [&str; 2] = ["epoll", "uring"];

#[test]
fn a_reload_adds_and_removes_listeners() {
    for io in DRIVERS {
        let (dir, body) = site(100_000);
        let (mut z, a) = Serve::start(dir.path(), io, "listen = [\"127.0.0.1:0\"]\nworkers = 2\n");
        // A keep-alive connection accepted on the address about to go.
        let mut kept = TcpStream::connect(&a).unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(
            ask(&mut kept, "/a.bin", false).unwrap(),
            (200, body.clone())
        );

        // Add a second address: its start-up line is printed, it answers byte-exact.
        let two = "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nworkers = 2\n";
        assert!(z.reload(two).contains("configuration reloaded"), "{io}");
        let b = addr_of(&wait_line(&z.out, "on http://127.0.0.2:"));
        assert_eq!(get(&b, "/a.bin").unwrap(), (200, body.clone()), "{io}");
        assert_eq!(get(&a, "/a.bin").unwrap(), (200, body.clone()), "{io}");

        // Remove the first: it refuses new clients, its old connection still answers.
        let one = "listen = [\"127.0.0.2:0\"]\nworkers = 2\n";
        let outcome = z.reload(one);
        assert!(
            outcome.contains("configuration reloaded"),
            "{io}: {outcome}"
        );
        assert!(
            outcome.contains(&format!("no longer listening on {a}")),
            "{io}: {outcome}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&a).is_ok() {
            assert!(Instant::now() < deadline, "{io}: {a} still accepts");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            ask(&mut kept, "/a.bin", false).unwrap(),
            (200, body.clone())
        );
        assert_eq!(get(&b, "/a.bin").unwrap(), (200, body), "{io}");
        z.stop();
    }
}

#[test]
fn workers_go_1_3_1_under_load_without_a_failed_request() {
    for io in DRIVERS {
        let (dir, body) = site(20_000);
        let (mut z, a) = Serve::start(dir.path(), io, "workers = 1\nlisten = [\"127.0.0.1:0\"]\n");
        z.wait_workers(1);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let (stop, done, a, body) = (stop.clone(), done.clone(), a.clone(), body.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && n < 50_000 {
                        let got =
                            get(&a, "/a.bin").unwrap_or_else(|e| panic!("request {n} failed: {e}"));
                        assert_eq!(got, (200, body.clone()), "request {n}");
                        n += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    n
                })
            })
            .collect();
        let progress = |more: u64| {
            let until = done.load(Ordering::Relaxed) + more;
            let deadline = Instant::now() + Duration::from_secs(30);
            while done.load(Ordering::Relaxed) < until {
                assert!(Instant::now() < deadline, "{io}: clients stalled");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        progress(50);
        for _ in 0..2 {
            let three = "workers = 3\nlisten = [\"127.0.0.1:0\"]\n";
            let outcome = z.reload(three);
            assert!(outcome.contains("reloaded workers=3"), "{io}: {outcome}");
            z.wait_workers(3);
            progress(100);
            let one = "workers = 1\nlisten = [\"127.0.0.1:0\"]\n";
            let outcome = z.reload(one);
            assert!(outcome.contains("reloaded workers=1"), "{io}: {outcome}");
            // The retired workers drain and their threads end.
            z.wait_workers(1);
            progress(100);
        }
        stop.store(true, Ordering::Relaxed);
        let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert!(total >= 450, "{io}: {total}");
        z.stop();
    }
}

#[test]
fn a_bind_failure_keeps_the_old_configuration() {
    for io in DRIVERS {
        let (dir, body) = site(1000);
        let (mut z, a) = Serve::start(dir.path(), io, "listen = [\"127.0.0.1:0\"]\n");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let next = format!(
            "listen = [\"127.0.0.1:0\", \"{busy}\"]\nworkers = 3\nheader = [\"X-Gen: 2\"]\n"
        );
        let outcome = z.reload(&next);
        assert!(
            outcome.contains("reload failed") && outcome.contains(&format!("{busy}")),
            "{io}: {outcome}"
        );
        // The old port serves under the old settings: no new header, no new workers.
        let resp = ureq::get(&format!("http://{a}/a.bin")).call().unwrap();
        assert!(resp.headers().get("x-gen").is_none(), "{io}");
        assert_eq!(get(&a, "/a.bin").unwrap(), (200, body), "{io}");
        drop(taken);
        z.stop();
    }
}

/// `curl ARGS`: its stdout.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {:?}", out);
    out.stdout
}

#[test]
fn a_reload_adds_an_https_listener_and_its_redirect() {
    if !crate::util::tool("curl", "--version") {
        return;
    }
    for io in DRIVERS {
        let (dir, body) = site(300_000);
        let [cert, key, _] = super::tls::files(dir.path());
        let (mut z, a) = Serve::start(dir.path(), io, "listen = [\"127.0.0.1:0\"]\n");
        let tls = format!(
            "listen = [\"127.0.0.1:0\", \"https://127.0.0.3:0\"]\nredirect-http = [\"127.0.0.4:0\"]\n\
             tls-cert = \"{cert}\"\ntls-key = \"{key}\"\n"
        );
        // Either driver serves what the reload adds (io_uring: TLS in user space).
        let outcome = z.reload(&tls);
        assert!(
            outcome.contains("configuration reloaded"),
            "{io}: {outcome}"
        );
        let https = wait_line(&z.out, "on https://127.0.0.3:");
        let b = https
            .split(' ')
            .find_map(|w| w.strip_prefix("https://"))
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let redirect = wait_line(&z.out, "redirecting http://127.0.0.4:");
        let port = b.rsplit(':').next().unwrap();
        assert!(redirect.ends_with(&format!("(port {port})")), "{redirect}");
        let r = addr_of(&redirect);
        assert_eq!(curl(&["-k", &format!("https://{b}/a.bin")]), body, "{io}");
        let moved = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("http://{r}/a.bin"),
        ]);
        let moved = String::from_utf8(moved).unwrap();
        assert!(moved.starts_with("308 https://"), "{moved}");
        assert!(moved.ends_with(&format!(":{port}/a.bin")), "{moved}");
        assert_eq!(get(&a, "/a.bin").unwrap(), (200, body.clone()), "{io}");

        // And back to plain HTTP only: the https port refuses new clients.
        let outcome = z.reload("listen = [\"127.0.0.1:0\"]\n");
        assert!(
            outcome.contains("configuration reloaded"),
            "{io}: {outcome}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&b).is_ok() {
            assert!(Instant::now() < deadline, "{io}: {b} still accepts");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(get(&a, "/a.bin").unwrap(), (200, body), "{io}");
        z.stop();
    }
}

#[test]
fn under_socket_activation_the_inherited_listeners_stay_and_workers_change() {
    use std::os::fd::AsRawFd;
    for io in DRIVERS {
        let (dir, body) = site(5000);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = super::systemd::inheritable(&l);
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!(
                "exec 3<&{0} {0}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"",
                fd.as_raw_fd()
            ))
            .arg("bash")
            .arg(bin());
        let (mut z, a) = Serve::start_with(cmd, dir.path(), io, "workers = 1\n");
        drop(fd);
        assert_eq!(a, l.local_addr().unwrap().to_string());
        z.wait_workers(1);
        let outcome = z.reload("listen = [\"127.0.0.5:0\"]\nworkers = 3\n");
        assert!(outcome.contains("reloaded workers=3"), "{io}: {outcome}");
        assert!(
            outcome.contains("socket activation: the inherited listeners are the listener set"),
            "{io}: {outcome}"
        );
        z.wait_workers(3);
        for _ in 0..20 {
            assert_eq!(get(&a, "/a.bin").unwrap(), (200, body.clone()), "{io}");
        }
        let outcome = z.reload("workers = 1\n");
        assert!(outcome.contains("reloaded workers=1"), "{io}: {outcome}");
        z.wait_workers(1);
        for _ in 0..20 {
            assert_eq!(get(&a, "/a.bin").unwrap(), (200, body.clone()), "{io}");
        }
        z.stop();
    }
}

/// Stderr lines up to (and with) the first containing `what`.
fn lines_until(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => {
                let last = l.contains(what);
                seen.push(l);
                if last {
                    return seen.join("\n");
                }
            }
            Err(_) => panic!("no {what:?}; saw {seen:#?}"),
        }
    }
}

/// Whether `https://ADDR/a.bin` verifies against `ca` alone (the certificate the
/// server presents is that one).
fn presents(addr: &str, ca: &str) -> bool {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "/dev/null", "--cacert", ca])
        .arg(format!("https://{addr}/a.bin"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The issue: pointing `tls-cert`/`tls-key` at a renewed pair and sending SIGHUP kept
/// the old certificate, silently; an expired certificate was taken without a word.
/// Now a reload reads the new paths (a bad new pair fails the reload, the old pair
/// stays), and an expired certificate is warned about at start and at each reload.
#[test]
fn a_reload_reads_new_certificate_paths_and_warns_of_an_expired_one() {
    if !crate::util::tool("curl", "--version") {
        return;
    }
    let (dir, _) = site(1000);
    let [cert_a, key_a, other] = super::tls::files(dir.path());
    let b = dir.path().join("b");
    std::fs::create_dir(&b).unwrap();
    let [cert_b, key_b, _] = super::tls::files(&b);
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let [cert_x, key_x] = expired_files(&old);
    let config = |cert: &str, key: &str| {
        format!(
            "listen = [\"127.0.0.1:0\", \"https://127.0.0.1:0\"]\n\
             tls-cert = \"{cert}\"\ntls-key = \"{key}\"\n"
        )
    };
    let https_of = |z: &Serve| {
        wait_line(&z.out, "on https://")
            .split(' ')
            .find_map(|w| w.strip_prefix("https://"))
            .unwrap()
            .trim_end_matches('/')
            .to_owned()
    };
    let (mut z, _) = Serve::start(dir.path(), "epoll", &config(&cert_a, &key_a));
    let https = https_of(&z);
    assert!(presents(&https, &cert_a));
    assert!(!presents(&https, &cert_b));

    // New paths: the new pair is presented, and said so.
    let outcome = z.reload(&config(&cert_b, &key_b));
    assert!(outcome.contains("configuration reloaded"), "{outcome}");
    assert!(outcome.contains("new files"), "{outcome}");
    assert!(presents(&https, &cert_b), "{outcome}");
    assert!(!presents(&https, &cert_a));

    // A new pair that does not match: the reload fails, naming it; `b` stays.
    let outcome = z.reload(&config(&cert_a, &other));
    assert!(
        outcome.contains("reload failed") && outcome.contains("does not match"),
        "{outcome}"
    );
    assert!(presents(&https, &cert_b));

    // An expired certificate: taken (clients refuse it), with a warning.
    let outcome = z.reload(&config(&cert_x, &key_x));
    assert!(outcome.contains("configuration reloaded"), "{outcome}");
    let warned = lines_until(&z.err, "TLS certificate and key reloaded");
    assert!(warned.contains("expired"), "{warned}");
    z.stop();

    // At start too.
    let (z, _) = Serve::start(dir.path(), "epoll", &config(&cert_x, &key_x));
    let mut seen = Vec::new();
    while let Ok(l) = z.err.recv_timeout(Duration::from_millis(500)) {
        seen.push(l);
    }
    assert!(
        seen.iter().any(|l| l.contains("expired")),
        "no warning at start: {seen:#?}"
    );
    z.stop();
}

/// A self-signed certificate for 127.0.0.1 that expired in 2020, and its key.
fn expired_files(dir: &std::path::Path) -> [String; 2] {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let paths = ["cert.pem", "key.pem"].map(|n| dir.join(n));
    std::fs::write(&paths[0], cert.pem()).unwrap();
    std::fs::write(&paths[1], key.serialize_pem()).unwrap();
    paths.map(|p| p.to_str().unwrap().to_string())
}

/// The issue: after one reload asking for `io = "uring"`, later reloads repeated
/// "the event loop is kept until a restart". It is now said once per change of the
/// setting, only by a reload that succeeded, and only when a restart would run
/// another loop than the one running.
#[test]
fn the_kept_event_loop_is_said_once_per_change() {
    let (dir, body) = site(1000);
    let (z, a) = Serve::start(dir.path(), "uring", "listen = [\"127.0.0.1:0\"]\n");
    if !z.uring {
        z.stop();
        return;
    }
    let cfg = z.cfg.clone();
    let write = |io: &str, extra: &str| {
        std::fs::write(
            &cfg,
            format!("io = \"{io}\"\nlisten = [\"127.0.0.1:0\"{extra}]\n"),
        )
        .unwrap();
    };
    let hup = |z: &Serve| {
        signal(&z.child, "-HUP");
        lines_until(&z.err, "reload")
    };
    // A reload that fails says why, not that the loop is kept.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    write("epoll", &format!(", \"{}\"", taken.local_addr().unwrap()));
    let outcome = hup(&z);
    assert!(outcome.contains("reload failed"), "{outcome}");
    assert!(!outcome.contains("kept until a restart"), "{outcome}");
    write("epoll", "");
    let outcome = hup(&z);
    assert!(outcome.contains("configuration reloaded"), "{outcome}");
    assert!(outcome.contains("kept until a restart"), "{outcome}");
    for _ in 0..2 {
        let outcome = hup(&z);
        assert!(outcome.contains("configuration reloaded"), "{outcome}");
        assert!(!outcome.contains("kept until a restart"), "{outcome}");
    }
    // Back to the loop that runs: nothing to say either.
    write("uring", "");
    let outcome = hup(&z);
    assert!(!outcome.contains("kept until a restart"), "{outcome}");
    assert_eq!(get(&a, "/a.bin").unwrap(), (200, body));
    z.stop();
}

/// The issue: a reload under load (workers 2 → 4 → 1) reset some keep-alive requests
/// ("closed without response"): a retiring worker closed its idle keep-alive
/// connections at once, racing clients that were sending their next request on them.
/// Now a retiring worker keeps them through its grace period and answers what comes
/// (with `Connection: close`); only one still idle when the grace ends is closed.
#[test]
fn idle_keep_alive_connections_of_a_retiring_worker_get_their_next_answer() {
    for io in DRIVERS {
        let (dir, body) = site(5000);
        // A grace far longer than the test, so a busy machine can't end it first.
        let cfg = |n| format!("workers = {n}\nshutdown-grace = 60\nlisten = [\"127.0.0.1:0\"]\n");
        let (z, a) = Serve::start(dir.path(), io, &cfg(4));
        z.wait_workers(4);
        let mut conns: Vec<TcpStream> = (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(&a).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                assert_eq!(ask(&mut s, "/a.bin", false).unwrap(), (200, body.clone()));
                s
            })
            .collect();
        let mut z = z;
        let outcome = z.reload(&cfg(1));
        assert!(outcome.contains("reloaded workers=1"), "{io}: {outcome}");
        // The retiring workers have seen it.
        std::thread::sleep(Duration::from_millis(300));
        for (i, s) in conns.iter_mut().enumerate() {
            let got = ask(s, "/a.bin", false);
            assert!(
                matches!(&got, Ok((200, b)) if *b == body),
                "{io}: keep-alive connection {i}: {:?}",
                got.map(|(st, b)| (st, b.len()))
            );
        }
        drop(conns);
        z.wait_workers(1);
        z.stop();
    }
}
