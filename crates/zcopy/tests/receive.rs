//! `zcopy::receive`: the receive low-water mark and early write-back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use zcopy::receive::{LowWater, WRITEBACK_EVERY, Writeback};

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Whether `s` reports readable within `ms`.
fn readable(s: &TcpStream, ms: u16) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(s, PollFlags::IN)];
    let t = Timespec {
        tv_sec: i64::from(ms / 1000),
        tv_nsec: i64::from(ms % 1000) * 1_000_000,
    };
    poll(&mut fds, Some(&t)).unwrap() > 0
}

#[test]
fn the_low_water_mark_wakes_a_reader_once_a_step_is_there_and_never_above_what_is_to_come() {
    let (mut c, mut s) = pair();
    let mut low = LowWater::new(64 * 1024);
    low.expect(&s, 1 << 20);
    assert_eq!(low.current(), 64 * 1024);
    c.write_all(&[1u8; 1000]).unwrap();
    assert!(
        !readable(&s, 100),
        "woken for 1000 bytes under a 64 KiB mark"
    );
    c.write_all(&vec![2u8; 64 * 1024]).unwrap();
    assert!(readable(&s, 2000), "not woken with 65 KiB queued");
    let mut buf = vec![0u8; 65 * 1024 + 1000];
    s.read_exact(&mut buf[..1000 + 64 * 1024]).unwrap();

    // Only 1000 bytes are still to come: the mark follows, so they wake us.
    low.expect(&s, 1000);
    assert_eq!(low.current(), 1000);
    c.write_all(&[3u8; 1000]).unwrap();
    assert!(readable(&s, 2000), "the last bytes did not wake the reader");
    s.read_exact(&mut buf[..1000]).unwrap();

    // Back to 1 before anything else is read: one byte wakes us.
    low.reset(&s);
    assert_eq!(low.current(), 1);
    c.write_all(b"x").unwrap();
    assert!(readable(&s, 2000));
    // A mark already set costs no call.
    let calls = low.calls;
    low.reset(&s);
    low.expect(&s, 0);
    assert_eq!(low.calls, calls);
}

#[test]
fn write_back_is_started_every_few_mib_off_the_callers_thread() {
    let mut f = tempfile::tempfile().unwrap();
    let chunk = vec![7u8; 1 << 20];
    let before = zcopy::receive::writeback_kicks();
    let mut wb = Writeback::new();
    let write = |f: &mut std::fs::File, wb: &mut Writeback, bytes: u64| {
        let mut done = 0;
        while done < bytes {
            f.write_all(&chunk).unwrap();
            wb.wrote(f, chunk.len() as u64);
            done += chunk.len() as u64;
        }
    };
    for round in 1..=3 {
        write(&mut f, &mut wb, WRITEBACK_EVERY);
        assert_eq!(wb.kicks, round);
        let t = std::time::Instant::now();
        while wb.pending() {
            assert!(t.elapsed() < Duration::from_secs(20), "the kick never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(zcopy::receive::writeback_kicks() >= before + 3);
    // The call itself works on this file system (a no-op where there is no
    // write-back, as on tmpfs).
    zcopy::receive::start(&f).unwrap();
    f.sync_all().unwrap();
}
