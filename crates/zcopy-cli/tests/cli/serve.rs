//! `zcopy serve` as a user runs it: the URL it prints, exit codes, signals, and a
//! process that runs out of file descriptors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("zcopy")
}

/// Starts `zcopy serve` (through `wrapper`, e.g. prlimit, if given) and returns it
/// with the address it printed.
pub(crate) fn start(root: &std::path::Path, wrapper: &[&str], extra: &[&str]) -> (Child, String) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg(root)
        .args(extra)
        .stderr(Stdio::null());
    let (child, line) = launch(cmd);
    let url = line
        .split(' ')
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    (child, addr)
}

/// Spawns `cmd` with stdout piped and returns it with the start-up line it printed.
pub(crate) fn launch(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("zcopy: serving "), "{line}");
    (child, line)
}

pub(crate) fn get(addr: &str, path: &str) -> Vec<u8> {
    ureq::get(&format!("http://{addr}{path}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap()
}

pub(crate) fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn prints_its_url_serves_and_exits_0_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    for sig in ["-TERM", "-INT"] {
        let (mut child, addr) = start(dir.path(), &[], &[]);
        assert_eq!(get(&addr, "/hello.txt"), b"hello\n");
        signal(&child, sig);
        assert_eq!(child.wait().unwrap().code(), Some(0), "{sig}");
    }
}

#[test]
fn usage_errors_exit_2_and_a_busy_port_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/dir"));
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(
        Command::new(bin())
            .arg("serve")
            .arg(&file)
            .status()
            .unwrap()
            .code(),
        Some(2)
    );
    assert_eq!(
        Command::new(bin())
            .args(["serve", "--workers", "many"])
            .status()
            .unwrap()
            .code(),
        Some(2)
    );
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let out = Command::new(bin())
        .args(["serve", "--listen", &port])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Under a small open-file limit the server fits its connection cap to it; at the cap
/// it sheds (the oldest clients that sent nothing yet go first) instead of letting new
/// clients wait in the backlog, and it neither spins nor stops.
#[test]
fn at_the_fd_limit_the_oldest_silent_clients_are_shed_and_new_ones_served() {
    if !crate::util::tool("prlimit", "--version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"abc").unwrap();
    let (mut child, addr) = start(
        dir.path(),
        &["prlimit", "--nofile=40:40"],
        &["--workers", "1"],
    );
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    // Far more connections than fds, none sending a byte.
    let mut conns: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_secs(child.id());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_secs(child.id()) - before;
    let wall = t0.elapsed().as_secs_f64();
    assert!(
        used < 0.5 * wall,
        "server spun at its limit: {used:.2} CPU-s in {wall:.2} s"
    );
    // The newest client is served at once; the oldest was shed to make room.
    let last = conns.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    last.write_all(request).unwrap();
    let mut buf = [0u8; 512];
    let n = last.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conns[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let shed = matches!(conns[0].read(&mut buf), Ok(0) | Err(_));
    assert!(shed, "the oldest silent client was not shed");
    // A new client is served too.
    conns.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ureq::get(&format!("http://{addr}/a")).call().is_ok();
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "a new client was not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn feature_flags_with_bad_values_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:plaintext\n").unwrap();
    let bad: [&[&str]; 12] = [
        &["--header", "X-A: a\rb"],
        &["--header", "X-A: a\nSet-Cookie: b"],
        &["--header", "Bad Name: v"],
        &["--header", "NoColon"],
        &["--precompressed", "deflate"],
        &["--cors", "not-an-origin"],
        &["--fallback", "../outside.html"],
        &["--auth", "alice:plaintext"],
        &["--auth", "nocolon"],
        &["--auth-file", "/no/such/htpasswd"],
        &["--error-page", "404"],
        &["--error-page", "200=/etc/hostname"],
    ];
    for args in bad
        .iter()
        .copied()
        .chain([&["--auth-file", htpasswd.to_str().unwrap()][..]])
    {
        let out = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", root])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn start_up_line_says_how_and_no_listing_turns_listings_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-listing",
            "--cors",
            "*",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("(listing off, dotfiles hidden, precompressed br,zstd,gzip, CORS *)"),
        "{line}"
    );
    let addr = line.split(' ').find(|w| w.starts_with("http://")).unwrap();
    let status = ureq::get(addr).call().map(|r| r.status().as_u16());
    assert!(
        matches!(status, Err(ureq::Error::StatusCode(404))),
        "{status:?}"
    );
    let _ = child.kill();
    let _ = child.wait();

    let (mut child, addr) = start(dir.path(), &[], &[]);
    assert!(String::from_utf8_lossy(&get(&addr, "/")).contains("a.txt"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn basic_auth_off_loopback_warns() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--auth"])
        .arg(format!("u:{hash}"))
        .arg(dir.path())
        .stderr(Stdio::piped());
    let (mut child, line) = launch(cmd);
    assert!(line.contains("Basic auth"), "{line}");
    // The warning follows the URL line: wait for it (bounded), then stop the server.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut err = String::new();
    while !err.contains("not loopback, without TLS") {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => err.push_str(&l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(err.contains("not loopback, without TLS"), "{err}");
}

/// `--webdav` (and `webdav = true` in a config file) answers WebDAV; without it,
/// OPTIONS says nothing of DAV and MKCOL is refused.
#[test]
fn webdav_flag_and_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let conf = dir.path().join("zcopy.toml");
    std::fs::write(&conf, "webdav = true\n").unwrap();
    let ask = |addr: &str, method: &str, path: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let conf_arg = format!("--config={}", conf.display());
    for (extra, on) in [
        (&[][..], false),
        (&["--webdav"][..], true),
        (&[conf_arg.as_str()][..], true),
    ] {
        let (mut child, addr) = start(&root, &[], extra);
        let r = ask(&addr, "OPTIONS", "/");
        assert_eq!(r.contains("DAV: 1, 2"), on, "{extra:?}: {r}");
        let r = ask(&addr, "MKCOL", "/d");
        assert_eq!(r.starts_with("HTTP/1.1 201"), on, "{extra:?}: {r}");
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(root.join("d"));
    }
}

#[test]
fn anonymous_writes_off_loopback_warn_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--upload",
        "--allow-anonymous-writes",
    ])
    .arg(dir.path())
    .stderr(Stdio::piped());
    let (mut child, _) = launch(cmd);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut err = String::new();
    while !err.contains("without a password") {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => err.push_str(&l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(err.contains("without a password"), "{err}");
}

/// `--max-connections` beyond what the open-file limit holds is a usage error at
/// start (exit 2, saying what fits), not a warning followed by clients that hang.
#[test]
fn a_connection_cap_the_fd_limit_cannot_hold_exits_2() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("prlimit")
        .arg("--nofile=512:512")
        .arg(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "5000",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-connections 5000") && err.contains("ulimit -n"),
        "{err}"
    );
}

#[test]
fn the_readme_example_with_fallback_and_error_page_starts_and_both_come_from_root() {
    // README: zcopy serve dist/ --fallback index.html --cache-control 'public, max-age=600'
    //     --header 'X-Content-Type-Options: nosniff' --cors '*' --error-page 404=404.html
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<p>app</p>").unwrap();
    std::fs::write(dist.join("404.html"), "<p>lost</p>").unwrap();
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir.path())
        .args(["serve", "dist/", "--listen", "127.0.0.1:0"])
        .args(["--fallback", "index.html"])
        .args(["--cache-control", "public, max-age=600"])
        .args(["--header", "X-Content-Type-Options: nosniff"])
        .args(["--cors", "*", "--error-page", "404=404.html"])
        .stderr(Stdio::piped());
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.starts_with("zcopy: serving ") {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("did not start: {line:?} {err}");
    }
    let addr = line
        .split(' ')
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://{addr}/missing.txt"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "<p>lost</p>");
    let mut r = agent
        .get(&format!("http://{addr}/some/route"))
        .header("Accept", "text/html")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "<p>app</p>");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn quiet_prints_only_each_listeners_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let mut child = Command::new(bin())
        .args([
            "-q",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "0.0.0.0:0",
        ])
        .args(["--auth", &format!("u:{hash}"), "--metrics", "127.0.0.1:0"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut urls = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        urls.push(line);
    }
    for (url, ip) in urls.iter().zip(["127.0.0.1", "0.0.0.0"]) {
        let addr = url
            .strip_prefix("http://")
            .and_then(|u| u.strip_suffix("/\n"))
            .unwrap_or_else(|| panic!("-q printed {url:?}, not a bare URL"));
        let sa: std::net::SocketAddr = addr.parse().unwrap();
        assert_eq!(sa.ip().to_string(), ip, "{url:?}");
    }
    let addr = urls[0]
        .trim_start_matches("http://")
        .trim_end_matches("/\n");
    let status = ureq::get(&format!("http://{addr}/a.txt"))
        .header("Authorization", "Basic dTpwdw==")
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "-q printed more on stdout");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        err, "",
        "-q printed on stderr (the Basic-auth warning is a log line)"
    );
}

#[test]
fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
    // Checked and printed as given.
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--listen", "localhost:8080"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("listen = [\"localhost:8080\"]"), "{text}");
    // Served on the loopback address(es) localhost names.
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "localhost:0"])
        .arg(dir.path())
        .stderr(Stdio::null());
    let (mut child, line) = launch(cmd);
    let url = line
        .split(' ')
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    assert!(sa.ip().is_loopback(), "{line}");
    assert_eq!(get(addr, "/a.txt"), b"A");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // A name that doesn't resolve is a usage error.
    let out = Command::new(bin())
        .args([
            "serve",
            "--check-config",
            "--listen",
            "no-such-host.invalid:80",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-host.invalid"));
}
