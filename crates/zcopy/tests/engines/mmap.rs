//! `mmap`: file → every sink kind at every size and offset, stream mode, windows
//! larger than one mapping, and "unsupported" for non-file sources.

use crate::util::*;
use std::os::fd::AsFd;
use zcopy::engine::Mmap;
const WINDOW: usize = Mmap::WINDOW;
use zcopy::{Engine, EngineKind, Src, Stats};

#[test]
fn file_to_every_sink_at_every_size_and_offset() {
    check_file_to_sinks(EngineKind::Mmap, &SINKS);
}

#[test]
fn stream_mode_uses_and_moves_the_file_position() {
    check_file_stream_mode(EngineKind::Mmap);
}

#[test]
fn crosses_mapping_windows() {
    // Starts unaligned just before a window boundary, with steps that straddle it.
    let len = WINDOW + (3 << 20) + 11;
    let data = pattern(len, 4);
    let (_d, src) = file_with(&data);
    let sink = Sink::new(SinkKind::Pipe);
    let mut e = Mmap::new();
    let mut stats = Stats::default();
    let mut off = (WINDOW - (1 << 20) - 3) as u64;
    let start = off as usize;
    loop {
        let at = Src::Fd {
            fd: src.as_fd(),
            offset: Some(off),
        };
        match e.step(at, sink.fd(), 700_001, &mut stats).unwrap() {
            0 => break,
            n => off += n as u64,
        }
    }
    assert_eq!(off, len as u64);
    assert_same(&sink.finish(), &data[start..], "across windows");
}

#[test]
fn non_file_sources_are_unsupported() {
    check_needs_a_file_source(&mut Mmap::new());
}
