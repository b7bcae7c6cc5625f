//! SIGTERM: listeners close at once, a response in flight finishes within
//! `--shutdown-grace`, and one that can't is cut off when the grace period ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::serve::{signal, start};

const BIG: usize = 16 << 20;

/// Asks for /big.bin and reads `first` bytes of the response.
fn begin(addr: &str, first: usize) -> (TcpStream, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; first];
    s.read_exact(&mut buf).unwrap();
    (s, first)
}

fn read_rest(mut s: TcpStream, mut got: usize) -> usize {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got += n,
        }
    }
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_in_flight_responses_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![7u8; BIG]).unwrap();

    // Plenty of grace: the response finishes, new connections are refused.
    let (mut child, addr) = start(dir.path(), &[], &["--shutdown-grace", "60"]);
    let (s, got) = begin(&addr, 1024);
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = read_rest(s, got);
    assert!(total > BIG, "{total}: the whole body and its head");
    assert_eq!(wait_exit(&mut child), Some(0));

    // A client that stops reading is cut off when the grace period ends.
    let (mut child, addr) = start(dir.path(), &[], &["--shutdown-grace", "0.2"]);
    let (s, got) = begin(&addr, 1024);
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child), Some(0));
    let total = read_rest(s, got);
    assert!(total < BIG, "{total}: cut off, not completed");
}
