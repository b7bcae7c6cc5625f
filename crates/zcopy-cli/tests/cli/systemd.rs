//! systemd's protocols without systemd: listening sockets inherited at fds 3 and 4
//! (`LISTEN_FDS`, `LISTEN_PID`) replace `--listen`, state changes arrive on a
//! `NOTIFY_SOCKET` datagram socket, and a restart on the same sockets loses no
//! connection attempt (the kernel queues them while no server runs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::serve::{bin, signal};

/// A copy of `l`'s fd numbered 10 or more, inherited by children (no CLOEXEC).
pub(crate) fn inheritable(l: &TcpListener) -> OwnedFd {
    let fd = rustix::io::fcntl_dupfd_cloexec(l.as_fd(), 10).unwrap();
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).unwrap();
    fd
}

/// Starts `zcopy serve` through `bash` (dash refuses fds above 9), which moves `fds` to 3, 4, ... and sets
/// LISTEN_PID to its own pid before exec'ing (so to zcopy's).
fn start_activated(root: &std::path::Path, fds: &[&OwnedFd], notify: &std::path::Path) -> Child {
    let moves: Vec<String> = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| format!("{}<&{} {}<&-", 3 + i, fd.as_raw_fd(), fd.as_raw_fd()))
        .collect();
    let script = format!(
        "exec {}; LISTEN_PID=$$ LISTEN_FDS={} exec \"$@\"",
        moves.join(" "),
        fds.len()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(bin())
        .args(["serve", "--listen", "127.0.0.1:1"])
        .arg(root)
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Both inherited addresses are announced; 127.0.0.1:1 is not.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in fds {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("zcopy: serving "), "{line}");
        assert!(!line.contains("127.0.0.1:1/"), "{line}");
    }
    child
}

fn expect(notify: &UnixDatagram, want: &str) {
    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no {want:?} on NOTIFY_SOCKET: {e}"));
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.lines().any(|l| l == want), "{got:?}, want {want}");
}

fn get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn inherited_sockets_are_served_and_systemd_is_told_the_state() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("[::1]:0").or_else(|_| TcpListener::bind("127.0.0.1:0"));
    let b = b.unwrap();
    let (fa, fb) = (inheritable(&a), inheritable(&b));

    let mut child = start_activated(dir.path(), &[&fa, &fb], &notify_path);
    expect(&notify, "READY=1");
    for l in [&a, &b] {
        let resp = get(l.local_addr().unwrap());
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("hello\n"), "{resp}");
    }
    signal(&child, "-HUP");
    expect(&notify, "RELOADING=1");
    expect(&notify, "READY=1");
    signal(&child, "-TERM");
    expect(&notify, "STOPPING=1");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // Restart: between the two servers the sockets stay open here (as in systemd),
    // so a client that connects meanwhile waits in the backlog and is answered.
    let addr = a.local_addr().unwrap();
    let waiting = std::thread::spawn(move || get(addr));
    std::thread::sleep(Duration::from_millis(200));
    let mut child = start_activated(dir.path(), &[&fa, &fb], &notify_path);
    expect(&notify, "READY=1");
    let resp = waiting.join().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn an_inherited_fd_that_is_not_a_listener_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::open(dir.path()).unwrap();
    let fd = rustix::io::fcntl_dupfd_cloexec(&f, 10).unwrap();
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<&{0} {0}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"",
            fd.as_raw_fd()
        ))
        .arg("bash")
        .arg(bin())
        .arg("serve")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fd 3"), "{err}");
}
