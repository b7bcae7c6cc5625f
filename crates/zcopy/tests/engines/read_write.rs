//! `read-write`: every source kind to every sink kind.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::EngineKind;

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    for &size in &SIZES {
        let data = pattern(size + 5, size as u64);
        let (_d, src) = file_with(&data);
        for sink_kind in SINKS {
            for offset in [0usize, 5] {
                let sink = Sink::new(sink_kind);
                let len = (data.len() - offset) as u64;
                let r = run_engine(
                    EngineKind::ReadWrite,
                    src.as_fd(),
                    Some(offset as u64),
                    sink.fd(),
                    Some(len),
                );
                assert_eq!(r.bytes, len);
                assert_same(
                    &sink.finish(),
                    &data[offset..],
                    &format!("{size} -> {sink_kind:?} @{offset}"),
                );
            }
        }
    }
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
