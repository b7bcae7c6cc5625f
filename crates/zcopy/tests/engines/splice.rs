//! `splice`: file → every sink kind, streams (socket → file, pipe → file, TCP →
//! pipe, socket → socket), more than 2^31 bytes, a non-blocking sink.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::engine::Splice;
use zcopy::{Engine, EngineKind, Src, Stats};

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    check_file_to_sinks(EngineKind::Splice, &SINKS);
}

#[test]
fn stream_mode_uses_and_moves_the_file_position() {
    check_file_stream_mode(EngineKind::Splice);
}

#[test]
fn streams_to_files_pipes_and_sockets() {
    check_streams(
        EngineKind::Splice,
        &[SinkKind::Pipe, SinkKind::Tcp, SinkKind::Unix],
        &SINKS,
    );
}

#[test]
fn more_than_2_gib_to_a_pipe() {
    check_more_than_2g(Box::new(Splice::new()));
}

#[test]
fn nonblocking_tcp_sink_with_slow_reader() {
    check_nonblocking_tcp(EngineKind::Splice);
}

#[test]
fn intermediate_pipe_is_enlarged() {
    let data = pattern(100_000, 2);
    let (_d, src) = file_with(&data);
    let sink = Sink::new(SinkKind::Tcp);
    let mut e = Splice::new();
    let mut stats = Stats::default();
    let at = Src::Fd {
        fd: src.as_fd(),
        offset: Some(0),
    };
    assert_eq!(e.step(at, sink.fd(), 1 << 20, &mut stats).unwrap(), 100_000);
    let size = e.pipe_size().expect("file -> socket goes through a pipe");
    assert!(size >= 64 << 10, "{size}");
    eprintln!("splice: intermediate pipe of {size} bytes");
    assert_same(&sink.finish(), &data, "file -> tcp");
}

#[test]
fn memory_source_is_unsupported() {
    let sink = Sink::new(SinkKind::Pipe);
    let mut stats = Stats::default();
    let err = Splice::new()
        .step(Src::Mem(b"abc"), sink.fd(), 3, &mut stats)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    assert!(sink.finish().is_empty());
}
