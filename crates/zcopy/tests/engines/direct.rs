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
