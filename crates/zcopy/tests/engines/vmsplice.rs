//! `vmsplice`: user memory → pipe → sink, and files through the engine's buffer.

use std::os::fd::AsFd;

use crate::util::*;
use zcopy::engine::Vmsplice;
use zcopy::{Engine, EngineKind, Src, Stats};

#[test]
fn memory_to_every_sink_at_every_size_and_offset() {
    for &size in &SIZES {
        let data = pattern(size + 5, size as u64 + 11);
        for sink_kind in SINKS {
            for offset in [0usize, 5] {
                let sink = Sink::new(sink_kind);
                let mut engine = Vmsplice::new();
                let stats = drive_mem(&mut engine, &data[offset..], sink.fd(), usize::MAX);
                let n = data.len() - offset;
                // One vmsplice (+ one splice when the sink isn't a pipe) per chunk.
                let chunks = n.div_ceil(4096) as u64 + 2;
                assert!(
                    stats.syscalls <= 2 * chunks,
                    "{sink_kind:?}: {} syscalls for {n} bytes",
                    stats.syscalls
                );
                drop(engine);
                assert_same(
                    &sink.finish(),
                    &data[offset..],
                    &format!("mem {size} -> {sink_kind:?} @{offset}"),
                );
            }
        }
    }
}

#[test]
fn memory_in_small_steps() {
    let data = pattern(100_003, 7);
    for sink_kind in [SinkKind::Pipe, SinkKind::Tcp] {
        let sink = Sink::new(sink_kind);
        let mut engine = Vmsplice::new();
        drive_mem(&mut engine, &data, sink.fd(), 4093);
        drop(engine);
        assert_same(
            &sink.finish(),
            &data,
            &format!("small steps -> {sink_kind:?}"),
        );
    }
}

#[test]
fn file_to_pipe_tcp_unix_at_every_size_and_offset() {
    check_file_to_sinks(
        EngineKind::Vmsplice,
        &[SinkKind::Pipe, SinkKind::Tcp, SinkKind::Unix],
    );
}

/// The rule: the engine's buffer is refilled while earlier chunks still sit,
/// unread, in the sink pipe (as page references). If the refill wrote into those
/// pages, the reader would see later bytes in place of earlier ones.
#[test]
fn refilling_the_buffer_never_changes_bytes_still_in_the_pipe() {
    let data = pattern(3 * zcopy::engine::Vmsplice::CHUNK + 123, 99);
    let (_d, src) = file_with(&data);
    let (r, w) = std::io::pipe().unwrap();
    rustix::pipe::fcntl_setpipe_size(&w, 4 << 20)
        .or_else(|_| rustix::pipe::fcntl_setpipe_size(&w, 1 << 20))
        .unwrap();
    let mut engine = Vmsplice::new();
    let mut stats = Stats::default();
    let mut done = 0;
    while done < data.len() {
        let src = Src::Fd {
            fd: src.as_fd(),
            offset: Some(done as u64),
        };
        let n = engine.step(src, w.as_fd(), usize::MAX, &mut stats).unwrap();
        assert!(n > 0);
        done += n;
    }
    drop(w);
    drop(engine);
    // Only now does anyone read.
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut { r }, &mut got).unwrap();
    assert_same(&got, &data, "late reader");
}

#[test]
fn stream_source_to_tcp() {
    let data = pattern((1 << 20) + 7, 5);
    let (src, feeder) = stream_source(SinkKind::Pipe, data.clone());
    let sink = Sink::new(SinkKind::Tcp);
    run_engine(EngineKind::Vmsplice, src.as_fd(), None, sink.fd(), None);
    feeder.join().unwrap();
    assert_same(&sink.finish(), &data, "pipe -> tcp");
}

#[test]
fn non_blocking_tcp_sink_resumes_exactly() {
    let data = pattern((4 << 20) + 7, 77);
    // Memory source.
    let mut sink = StalledTcp::new();
    let mut engine = Vmsplice::new();
    let (_, blocked) = drive_nonblocking(
        &mut engine,
        &|done| Src::Mem(&data[done..]),
        data.len(),
        &mut sink,
    );
    drop(engine);
    assert!(blocked > 0, "the stalled sink never filled up");
    assert_same(&sink.finish(), &data, "mem -> non-blocking tcp");
    // File source.
    let (_d, src) = file_with(&data);
    let mut sink = StalledTcp::new();
    let mut engine = Vmsplice::new();
    let (_, blocked) = drive_nonblocking(
        &mut engine,
        &|done| Src::Fd {
            fd: src.as_fd(),
            offset: Some(done as u64),
        },
        data.len(),
        &mut sink,
    );
    drop(engine);
    assert!(blocked > 0, "the stalled sink never filled up");
    assert_same(&sink.finish(), &data, "file -> non-blocking tcp");
}
