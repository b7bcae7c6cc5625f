//! `zcopy serve` as a user runs it: the URL it prints, exit codes, signals, and a
//! process that runs out of file descriptors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("zcopy")
}

/// Starts `zcopy serve` (through `wrapper`, e.g. prlimit, if given) and returns it
/// with the address it printed.
fn start(root: &std::path::Path, wrapper: &[&str], extra: &[&str]) -> (Child, String) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(root)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("zcopy: serving "), "{line}");
    let url = line.trim().rsplit(' ').next().unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    (child, addr)
}

fn get(addr: &str, path: &str) -> Vec<u8> {
    ureq::get(&format!("http://{addr}{path}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
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

/// With its descriptors exhausted (EMFILE on accept), the server must neither spin nor
/// stop: connections it has keep being served, and new ones are served once fds free up.
#[test]
fn running_out_of_fds_neither_spins_nor_stops_the_server() {
    if !crate::util::tool("prlimit", "--version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"abc").unwrap();
    let (mut child, addr) = start(
        dir.path(),
        &["prlimit", "--nofile=40:40"],
        &["--workers", "1", "--max-connections", "1000"],
    );
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    // Far more connections than fds: the kernel completes them all in the backlog.
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
        "server spun on EMFILE: {used:.2} CPU-s in {wall:.2} s"
    );
    // The first connection was accepted before fds ran out: still answered — with
    // the file if an fd is free for it, else 503 and Retry-After.
    conns[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    conns[0].write_all(request).unwrap();
    let mut buf = [0u8; 512];
    let n = conns[0].read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    // Free the fds: a new client is served again.
    conns.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ureq::get(&format!("http://{addr}/a")).call().is_ok();
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover after fds were freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
