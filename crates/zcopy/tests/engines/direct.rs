//! `direct`: O_DIRECT reads at every size and (unaligned) offset to every sink
//! kind, buffers smaller than the request, stream mode; skipped where the
//! filesystem of the temporary directory refuses O_DIRECT (tmpfs).

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::engine::Direct;
use zcopy::{Engine, EngineKind, Src, Stats};

/// True if the temporary directory's filesystem takes O_DIRECT; says why not.
fn direct_works() -> bool {
    let (_d, src) = file_with(b"probe");
    let sink = Sink::new(SinkKind::Pipe);
    let at = Src::Fd {
        fd: src.as_fd(),
        offset: Some(0),
    };
    let r = Direct::new().step(at, sink.fd(), 5, &mut Stats::default());
    let got = sink.finish();
    match r {
        Ok(5) => {
            assert_eq!(got, b"probe");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!(
                "skipped: direct: {e} (temp dir {})",
                std::env::temp_dir().display()
            );
            false
        }
        r => panic!("direct probe: {r:?}"),
    }
}

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    if direct_works() {
        check_file_to_sinks(EngineKind::Direct, &SINKS);
    }
}

#[test]
fn stream_mode_uses_and_moves_the_file_position() {
    if direct_works() {
        check_file_stream_mode(EngineKind::Direct);
    }
}

#[test]
fn small_buffer_many_steps_unaligned() {
    if !direct_works() {
        return;
    }
    let data = pattern(3 * 4096 * 5 + 123, 12);
    let (_d, src) = file_with(&data);
    let sink = Sink::new(SinkKind::Tcp);
    let mut e = Direct::with_buf(8192);
    let mut stats = Stats::default();
    let mut off = 4093u64;
    loop {
        let at = Src::Fd {
            fd: src.as_fd(),
            offset: Some(off),
        };
        match e.step(at, sink.fd(), 5000, &mut stats).unwrap() {
            0 => break,
            n => {
                assert!(n <= 5000);
                off += n as u64;
            }
        }
    }
    assert_eq!(off, data.len() as u64);
    assert_same(&sink.finish(), &data[4093..], "small buffer");
}

#[test]
fn tmpfs_source_is_unsupported() {
    if !std::path::Path::new("/dev/shm").is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"x").unwrap();
    let src = std::fs::File::open(&path).unwrap();
    let sink = Sink::new(SinkKind::Pipe);
    let at = Src::Fd {
        fd: src.as_fd(),
        offset: Some(0),
    };
    match Direct::new().step(at, sink.fd(), 1, &mut Stats::default()) {
        Err(e) => assert!(zcopy::engine::is_unsupported(&e, 0), "{e}"),
        // Newer kernels may accept O_DIRECT on tmpfs.
        Ok(n) => eprintln!("direct: tmpfs took O_DIRECT ({n} bytes)"),
    }
    drop(sink);
}

/// Pages of `path` in the page cache, per `fincore` (util-linux); None (and why, on
/// stderr) when it can't tell or when the file lives on tmpfs (whose pages are the
/// file, O_DIRECT or not).
fn cached_bytes(path: &std::path::Path) -> Option<u64> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    if rustix::fs::statfs(path).is_ok_and(|s| s.f_type == TMPFS_MAGIC) {
        eprintln!(
            "skipped the page-cache check: {} is on tmpfs",
            path.display()
        );
        return None;
    }
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().parse().ok(),
        r => {
            eprintln!("skipped the page-cache check: fincore: {r:?}");
            None
        }
    }
}

#[test]
fn streams_into_a_file_from_every_stream_kind() {
    if direct_works() {
        check_streams(
            EngineKind::Direct,
            &[SinkKind::Pipe, SinkKind::Tcp, SinkKind::Unix],
            &[SinkKind::File],
        );
    }
}

/// A TCP stream trickling in odd-sized pieces into a file whose position starts
/// mid-block (a resumed file): the head goes through the page cache up to the block
/// boundary, whole blocks with O_DIRECT (so they are not left in the page cache),
/// the last partial block through the page cache; every byte lands in order.
#[test]
fn a_trickling_stream_from_a_mid_block_position() {
    if !direct_works() {
        return;
    }
    let prefix = pattern(4093, 7);
    let data = pattern(3 << 20, 8);
    let (_d, file, path) = empty_file();
    std::fs::write(&path, &prefix).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap();
    drop(file);
    let (mut tx, rx) = tcp_pair();
    let feed = data.clone();
    let feeder = std::thread::spawn(move || {
        for piece in feed.chunks(12_345) {
            std::io::Write::write_all(&mut tx, piece).unwrap();
        }
    });
    let mut e = Direct::with_buf(256 << 10);
    let mut stats = Stats::default();
    let mut got = 0;
    while got < data.len() {
        let at = Src::Fd {
            fd: rx.as_fd(),
            offset: None,
        };
        match e.step(at, f.as_fd(), data.len() - got, &mut stats).unwrap() {
            0 => panic!("stream ended after {got} bytes"),
            n => got += n,
        }
    }
    feeder.join().unwrap();
    let pos = std::io::Seek::stream_position(&mut f).unwrap();
    assert_eq!(pos, (prefix.len() + data.len()) as u64, "the file position");
    drop(f);
    // Before anything reads the file back: only the head's block and the last
    // partial one went through the page cache (through it, all 3 MiB would be
    // there).
    if let Some(cached) = cached_bytes(&path) {
        assert!(
            cached <= 16 << 10,
            "{cached} bytes of the file in the page cache"
        );
    }
    let mut want = prefix.clone();
    want.extend_from_slice(&data);
    assert_same(
        &std::fs::read(&path).unwrap(),
        &want,
        "trickled into a file",
    );
}

/// A sink opened read-only or for appending is refused before a byte is read (the
/// twin would write where the sink may not, or at the wrong place).
#[test]
fn a_read_only_or_appending_sink_is_unsupported_and_nothing_is_taken() {
    if !direct_works() {
        return;
    }
    let (_d, _file, path) = empty_file();
    let read_only = std::fs::File::open(&path).unwrap();
    let appending = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    for (what, sink) in [("read-only", read_only), ("appending", appending)] {
        let (mut tx, rx) = tcp_pair();
        std::io::Write::write_all(&mut tx, b"still here").unwrap();
        drop(tx);
        let at = Src::Fd {
            fd: rx.as_fd(),
            offset: None,
        };
        match Direct::new().step(at, sink.as_fd(), 10, &mut Stats::default()) {
            Err(e) => assert!(zcopy::engine::is_unsupported(&e, 0), "{what}: {e}"),
            Ok(n) => panic!("{what}: {n} bytes written"),
        }
        let mut left = Vec::new();
        std::io::Read::read_to_end(&mut &rx, &mut left).unwrap();
        assert_eq!(left, b"still here", "{what}: bytes taken from the source");
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

/// A write that fails after the engine took bytes from the stream (a sealed memfd
/// refuses writes with EPERM, which before the first byte would mean "hand over")
/// fails the transfer instead of handing over without those bytes.
#[test]
fn a_write_refused_after_reading_is_not_a_fallback() {
    if !direct_works() {
        return;
    }
    let fd = rustix::fs::memfd_create("sealed", rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::WRITE).unwrap();
    let (mut tx, rx) = tcp_pair();
    std::io::Write::write_all(&mut tx, &pattern(10_000, 5)).unwrap();
    drop(tx);
    let at = Src::Fd {
        fd: rx.as_fd(),
        offset: None,
    };
    match Direct::new().step(at, fd.as_fd(), 10_000, &mut Stats::default()) {
        Err(e) if zcopy::engine::is_unsupported(&e, 0) => {
            // Kernels before 6.6 refuse O_DIRECT on a memfd at open, before any
            // byte is read: a fallback is right then, and the stream must be whole.
            let mut left = Vec::new();
            std::io::Read::read_to_end(&mut &rx, &mut left).unwrap();
            assert_eq!(
                left,
                pattern(10_000, 5),
                "a fallback error after reading: {e}"
            );
            eprintln!("skipped: this kernel's memfd takes no O_DIRECT ({e})");
        }
        Err(_) => {}
        Ok(n) => panic!("{n} bytes into a sealed memfd"),
    }
}
