//! `sendfile`: file → every sink kind, stream mode, more than 2^31 bytes, a
//! non-blocking sink, and "unsupported" for sources it can't take.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::engine::Sendfile;
use zcopy::{Engine, EngineKind, Src, Stats};

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    check_file_to_sinks(EngineKind::Sendfile, &SINKS);
}

#[test]
fn stream_mode_uses_and_moves_the_file_position() {
    check_file_stream_mode(EngineKind::Sendfile);
}

#[test]
fn more_than_2_gib_to_a_pipe() {
    check_more_than_2g(Box::new(Sendfile::new()));
}

#[test]
fn nonblocking_tcp_sink_with_slow_reader() {
    check_nonblocking_tcp(EngineKind::Sendfile);
}

#[test]
fn memory_and_stream_sources_are_unsupported_before_moving_anything() {
    check_needs_a_file_source(&mut Sendfile::new());
}

#[test]
fn early_end_of_file_is_ok_zero() {
    let data = pattern(10, 1);
    let (_d, src) = file_with(&data);
    let sink = Sink::new(SinkKind::Pipe);
    let mut e = Sendfile::new();
    let mut stats = Stats::default();
    let at = |o| Src::Fd {
        fd: src.as_fd(),
        offset: Some(o),
    };
    assert_eq!(e.step(at(4), sink.fd(), 100, &mut stats).unwrap(), 6);
    assert_eq!(e.step(at(10), sink.fd(), 100, &mut stats).unwrap(), 0);
    assert_same(&sink.finish(), &data[4..], "tail");
}
