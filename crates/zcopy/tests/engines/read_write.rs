//! `read-write`: every source kind to every sink kind.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::EngineKind;

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    check_file_to_sinks(EngineKind::ReadWrite, &SINKS);
}

#[test]
fn streams_to_file_and_pipe() {
    for src_kind in [SinkKind::Pipe, SinkKind::Tcp, SinkKind::Unix] {
        for sink_kind in [SinkKind::File, SinkKind::Pipe] {
            let data = pattern((1 << 20) + 7, 3);
            let (src, feeder) = stream_source(src_kind, data.clone());
            let sink = Sink::new(sink_kind);
            run_engine(EngineKind::ReadWrite, src.as_fd(), None, sink.fd(), None);
            feeder.join().unwrap();
            assert_same(
                &sink.finish(),
                &data,
                &format!("{src_kind:?} -> {sink_kind:?}"),
            );
        }
    }
}
