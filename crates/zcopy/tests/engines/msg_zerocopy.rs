//! `msg-zerocopy`: send(MSG_ZEROCOPY) to TCP, completions from the error queue.

use std::os::fd::AsFd;

use crate::util::*;
use zcopy::engine::MsgZerocopy;
use zcopy::engine::{Engine, is_unsupported};
use zcopy::{EngineKind, Src, Stats};

fn skip() -> bool {
    match zcopy::EngineKind::MsgZerocopy.probe() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipped: msg-zerocopy: {why}");
            true
        }
    }
}

#[test]
fn memory_to_tcp_at_every_size_and_offset() {
    if skip() {
        return;
    }
    for &size in &SIZES {
        let data = pattern(size + 5, size as u64 + 3);
        for offset in [0usize, 5] {
            let sink = Sink::new(SinkKind::Tcp);
            let mut engine = MsgZerocopy::new();
            let stats = drive_mem(&mut engine, &data[offset..], sink.fd(), usize::MAX);
            drop(engine);
            assert_same(
                &sink.finish(),
                &data[offset..],
                &format!("mem {size} -> tcp @{offset}"),
            );
            if data.len() - offset < MsgZerocopy::MIN_ZEROCOPY {
                assert_eq!(stats.zerocopy_copied + stats.zerocopy_done, 0);
            }
        }
    }
}

#[test]
fn file_to_tcp_at_every_size_and_offset() {
    if skip() {
        return;
    }
    check_file_to_sinks(EngineKind::MsgZerocopy, &[SinkKind::Tcp]);
}

/// Every zero-copy send is accounted for by a completion, and on loopback the
/// kernel says it copied (it must, to hand the bytes to a local socket).
#[test]
fn one_mebibyte_completes_and_loopback_reports_copies() {
    if skip() {
        return;
    }
    let data = pattern(1 << 20, 42);
    for max in [usize::MAX, 64 * 1024] {
        let sink = Sink::new(SinkKind::Tcp);
        let mut engine = MsgZerocopy::new();
        let stats = drive_mem(&mut engine, &data, sink.fd(), max);
        drop(engine);
        assert_same(&sink.finish(), &data, "1 MiB -> tcp");
        eprintln!(
            "msg-zerocopy 1 MiB over loopback, max {max}: zerocopy_copied={} zerocopy_done={} syscalls={}",
            stats.zerocopy_copied, stats.zerocopy_done, stats.syscalls
        );
        assert!(stats.zerocopy_copied + stats.zerocopy_done > 0, "{stats:?}");
        assert!(stats.zerocopy_copied > 0, "loopback copies: {stats:?}");
        // One send per step at most MiB plus a few completion reads/polls each.
        let steps = (1u64 << 20).div_ceil(max.min(1 << 30) as u64);
        assert!(stats.syscalls <= steps * 64, "{stats:?}");
    }
}

#[test]
fn stream_source_to_tcp() {
    if skip() {
        return;
    }
    let data = pattern((1 << 20) + 7, 9);
    let (src, feeder) = stream_source(SinkKind::Unix, data.clone());
    let sink = Sink::new(SinkKind::Tcp);
    run_engine(EngineKind::MsgZerocopy, src.as_fd(), None, sink.fd(), None);
    feeder.join().unwrap();
    assert_same(&sink.finish(), &data, "unix -> tcp");
}

#[test]
fn non_tcp_sinks_are_unsupported() {
    let data = pattern(64 * 1024, 1);
    for sink_kind in [SinkKind::Unix, SinkKind::Pipe, SinkKind::File] {
        let sink = Sink::new(sink_kind);
        let mut engine = MsgZerocopy::new();
        let mut stats = Stats::default();
        let e = engine
            .step(Src::Mem(&data), sink.fd(), usize::MAX, &mut stats)
            .unwrap_err();
        assert!(is_unsupported(&e, 0), "{sink_kind:?}: {e}");
        assert_eq!(stats.bytes, 0);
        drop(engine);
        assert!(sink.finish().is_empty());
    }
}
