//! `uring`: linked SPLICE for fds, SEND_ZC (and WRITE) from memory.

use std::os::fd::AsFd;

use crate::util::*;
use zcopy::EngineKind;
use zcopy::engine::Uring;

fn probe() -> Result<(), String> {
    EngineKind::Uring.probe().map_err(|e| e.to_string())
}

fn skip(why: Result<(), String>) -> bool {
    match why {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipped: uring: {why}");
            true
        }
    }
}

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    if skip(probe()) {
        return;
    }
    for &size in &SIZES {
        let data = pattern(size + 5, size as u64 + 1);
        let (_d, src) = file_with(&data);
        for sink_kind in SINKS {
            for offset in [0usize, 5] {
                let sink = Sink::new(sink_kind);
                let len = (data.len() - offset) as u64;
                let r = run_engine(
                    EngineKind::Uring,
                    src.as_fd(),
                    Some(offset as u64),
                    sink.fd(),
                    Some(len),
                );
                assert_eq!(r.bytes, len);
                let s = r.stats();
                if len > 0 && r.runs.len() == 1 {
                    // One io_uring_enter per chunk (1 MiB), a few more for short splices.
                    assert!(
                        s.syscalls >= 1 && s.syscalls <= 2 * len.div_ceil(4096) + 4,
                        "{sink_kind:?}: {s:?}"
                    );
                }
                assert_same(
                    &sink.finish(),
                    &data[offset..],
                    &format!("file {size} -> {sink_kind:?} @{offset}"),
                );
            }
        }
    }
}

#[test]
fn streams_to_file_and_tcp() {
    if skip(probe()) {
        return;
    }
    for (src_kind, sink_kind) in [
        (SinkKind::Pipe, SinkKind::File),
        (SinkKind::Unix, SinkKind::Tcp),
        (SinkKind::Tcp, SinkKind::File),
    ] {
        let data = pattern((1 << 20) + 7, 4);
        let (src, feeder) = stream_source(src_kind, data.clone());
        let sink = Sink::new(sink_kind);
        run_engine(EngineKind::Uring, src.as_fd(), None, sink.fd(), None);
        feeder.join().unwrap();
        assert_same(
            &sink.finish(),
            &data,
            &format!("{src_kind:?} -> {sink_kind:?}"),
        );
    }
}

#[test]
fn memory_to_tcp_with_send_zc() {
    if skip(probe().and_then(|()| Uring::probe_send_zc().map_err(|e| e.to_string()))) {
        return;
    }
    for &size in &SIZES {
        let data = pattern(size + 5, size as u64 + 8);
        for offset in [0usize, 5] {
            let sink = Sink::new(SinkKind::Tcp);
            let mut engine = Uring::new();
            let stats = drive_mem(&mut engine, &data[offset..], sink.fd(), usize::MAX);
            drop(engine);
            assert_same(
                &sink.finish(),
                &data[offset..],
                &format!("mem {size} -> tcp @{offset}"),
            );
            if size > 0 {
                assert!(stats.zerocopy_copied + stats.zerocopy_done > 0, "{stats:?}");
            }
            if size == SIZES[SIZES.len() - 1] && offset == 0 {
                eprintln!(
                    "uring SEND_ZC {} bytes over loopback: zerocopy_copied={} zerocopy_done={} syscalls={}",
                    data.len(),
                    stats.zerocopy_copied,
                    stats.zerocopy_done,
                    stats.syscalls
                );
            }
        }
    }
}

#[test]
fn memory_to_pipe_and_file_with_write() {
    if skip(probe()) {
        return;
    }
    let data = pattern((1 << 20) + 7, 12);
    for sink_kind in [SinkKind::Pipe, SinkKind::File, SinkKind::Unix] {
        let sink = Sink::new(sink_kind);
        let mut engine = Uring::new();
        drive_mem(&mut engine, &data[3..], sink.fd(), 100_000);
        drop(engine);
        assert_same(&sink.finish(), &data[3..], &format!("mem -> {sink_kind:?}"));
    }
}

#[test]
fn non_blocking_tcp_sink_resumes_exactly() {
    if skip(probe()) {
        return;
    }
    let data = pattern((4 << 20) + 7, 78);
    let (_d, src) = file_with(&data);
    let mut sink = StalledTcp::new();
    let mut engine = Uring::new();
    let (stats, blocked) = drive_nonblocking(
        &mut engine,
        &|done| zcopy::Src::Fd {
            fd: src.as_fd(),
            offset: Some(done as u64),
        },
        data.len(),
        &mut sink,
    );
    drop(engine);
    eprintln!("uring file -> non-blocking tcp: {blocked} times full, {stats:?}");
    assert!(blocked > 0, "the stalled sink never filled up");
    assert_same(&sink.finish(), &data, "file -> non-blocking tcp");
}
