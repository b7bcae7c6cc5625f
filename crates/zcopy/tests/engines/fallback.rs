//! Fallback: an engine forced off after some bytes hands over to the next one,
//! which finishes from the exact offset, and the report says why.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::transfer::{Forced, Transfer};
use zcopy::{EngineKind, FallbackReason, FdKind, Plan, Preference};

/// Runs `first` (then the pair's other engines) with `spec` forced, from a file
/// at offset 3 to `sink_kind`; checks the bytes and the report.
fn handover(first: EngineKind, spec: &str, sink_kind: SinkKind, after: u64) {
    let data = pattern((1 << 20) + 7, 21);
    let (_d, src) = file_with(&data);
    let sink = Sink::new(sink_kind);
    let plan = Plan::new(
        Some(FdKind::of(&src).unwrap()),
        FdKind::of(sink.fd()).unwrap(),
        Preference::Prefer(first),
    );
    let mut t = Transfer::with_forced(plan, Forced::parse(spec));
    let len = data.len() as u64 - 3;
    let r = t
        .run(src.as_fd(), Some(3), sink.fd(), Some(len), &mut |_| {})
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
        .clone();
    assert_same(&sink.finish(), &data[3..], spec);
    assert_eq!(r.bytes, len);
    assert_eq!(r.runs[0].engine, first, "{}", r.describe());
    assert_eq!(r.runs[0].stats.bytes, after, "{}", r.describe());
    let why = r.runs[0].fell_back.as_ref().expect("fell back");
    assert!(
        matches!(why, FallbackReason::Forced { after: a } if *a == after),
        "{why}"
    );
    assert!(r.runs.len() >= 2);
    assert_ne!(r.engine(), Some(first));
    assert_eq!(r.stats().bytes, len, "{}", r.describe());
    eprintln!("{spec}: {}", r.describe());
}

#[test]
fn sendfile_hands_over_after_64k_to_tcp() {
    handover(EngineKind::Sendfile, "sendfile@65536", SinkKind::Tcp, 65536);
}

#[test]
fn sendfile_forced_off_falls_back_at_once() {
    handover(EngineKind::Sendfile, "sendfile", SinkKind::Tcp, 0);
}

#[test]
fn splice_hands_over_after_64k_to_unix_socket() {
    handover(EngineKind::Splice, "splice@65536", SinkKind::Unix, 65536);
}

#[test]
fn copy_range_hands_over_after_64k_to_file() {
    handover(
        EngineKind::CopyRange,
        "copy-range@65536",
        SinkKind::File,
        65536,
    );
}

#[test]
fn mmap_hands_over_after_64k_to_pipe() {
    handover(EngineKind::Mmap, "mmap@65536", SinkKind::Pipe, 65536);
}

#[test]
fn splice_stream_source_hands_over_after_64k() {
    let data = pattern((1 << 20) + 7, 22);
    let (src, feeder) = stream_source(SinkKind::Tcp, data.clone());
    let sink = Sink::new(SinkKind::File);
    let plan = Plan::only(&[EngineKind::Splice, EngineKind::ReadWrite]);
    let mut t = Transfer::with_forced(plan, Forced::parse("splice@65536"));
    let r = t
        .run(src.as_fd(), None, sink.fd(), None, &mut |_| {})
        .unwrap()
        .clone();
    feeder.join().unwrap();
    assert_same(&sink.finish(), &data, "tcp -> file");
    assert_eq!(r.runs[0].stats.bytes, 65536, "{}", r.describe());
    assert_eq!(r.engine(), Some(EngineKind::ReadWrite));
}
