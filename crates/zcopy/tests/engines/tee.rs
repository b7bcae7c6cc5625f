//! `tee`: a pipe's bytes duplicated into other pipes, then consumed into the sink.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use crate::util::*;
use zcopy::engine::Tee;
use zcopy::engine::{Engine, is_unsupported};
use zcopy::{EngineKind, Src, Stats};

/// A pipe for one copy: the write end for the engine, a thread collecting the rest.
/// `size` (if given) sets the pipe's capacity, so copies fill at different rates.
fn copy_pipe(size: Option<usize>) -> (OwnedFd, JoinHandle<Vec<u8>>) {
    let (mut r, w) = std::io::pipe().unwrap();
    if let Some(size) = size {
        rustix::pipe::fcntl_setpipe_size(&w, size).unwrap();
    }
    let h = std::thread::spawn(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    });
    (w.into(), h)
}

/// Runs a tee with `copies` pipes (capacities given) from a fed pipe to `sink_kind`,
/// `max` bytes a step, and checks every output against the input.
fn tee_case(size: usize, sizes: &[Option<usize>], sink_kind: SinkKind, max: usize) -> Stats {
    let data = pattern(size, size as u64 + sizes.len() as u64);
    let (src, feeder) = stream_source(SinkKind::Pipe, data.clone());
    let sink = Sink::new(sink_kind);
    let (fds, readers): (Vec<_>, Vec<_>) = sizes.iter().map(|&s| copy_pipe(s)).unzip();
    let mut engine = Tee::new(fds);
    let stats = drive_stream(&mut engine, src.as_fd(), sink.fd(), max);
    drop(engine); // closes the copies' write ends
    feeder.join().unwrap();
    let what = format!(
        "{size} bytes, {} copies -> {sink_kind:?}, max {max}",
        sizes.len()
    );
    assert_eq!(stats.bytes, size as u64, "{what}");
    assert_same(&sink.finish(), &data, &format!("sink: {what}"));
    for (i, h) in readers.into_iter().enumerate() {
        assert_same(&h.join().unwrap(), &data, &format!("copy {i}: {what}"));
    }
    stats
}

#[test]
fn pipe_to_pipe_with_one_and_two_copies_at_every_size() {
    for &size in &SIZES {
        for max in [4096, 65536 + 3, usize::MAX] {
            tee_case(size, &[None], SinkKind::Pipe, max);
            tee_case(size, &[None, None], SinkKind::Pipe, max);
        }
    }
}

/// Copies whose pipes differ in size take different amounts per tee(2) call; every
/// output must still get the identical sequence.
#[test]
fn copies_of_different_capacities_get_identical_bytes() {
    let page = rustix::param::page_size();
    for sink_kind in [SinkKind::Pipe, SinkKind::File, SinkKind::Tcp] {
        let stats = tee_case(
            (1 << 20) + 7,
            &[Some(page), Some(1 << 20), None],
            sink_kind,
            usize::MAX,
        );
        // At least one tee per copy and one splice per 4 KiB the smallest pipe took;
        // no more than a few calls per page.
        let pages = ((1 << 20) + 7u64).div_ceil(page as u64);
        assert!(
            stats.syscalls >= pages && stats.syscalls <= 8 * pages,
            "{sink_kind:?}: {} syscalls",
            stats.syscalls
        );
        eprintln!(
            "tee, 3 copies -> {sink_kind:?}: {} syscalls",
            stats.syscalls
        );
    }
}

#[test]
fn without_copies_it_is_a_splice() {
    let stats = tee_case((1 << 20) + 7, &[], SinkKind::Pipe, usize::MAX);
    assert!(
        stats.syscalls >= 2 && stats.syscalls <= 64,
        "{}",
        stats.syscalls
    );
}

#[test]
fn pipe_to_file_and_pipe_through_transfer() {
    for &size in &SIZES {
        for sink_kind in [SinkKind::File, SinkKind::Pipe] {
            let data = pattern(size, 17);
            let (src, feeder) = stream_source(SinkKind::Pipe, data.clone());
            let sink = Sink::new(sink_kind);
            let r = run_engine(EngineKind::Tee, src.as_fd(), None, sink.fd(), None);
            feeder.join().unwrap();
            assert_eq!(r.bytes, size as u64);
            assert_same(
                &sink.finish(),
                &data,
                &format!("{size} pipe -> {sink_kind:?}"),
            );
        }
    }
}

#[test]
fn non_pipe_sources_are_unsupported() {
    let data = pattern(100, 1);
    let (_d, file) = file_with(&data);
    let sink = Sink::new(SinkKind::Pipe);
    let mut engine = Tee::new(Vec::new());
    let mut stats = Stats::default();
    for src in [
        Src::Mem(&data),
        Src::Fd {
            fd: file.as_fd(),
            offset: Some(0),
        },
        Src::Fd {
            fd: file.as_fd(),
            offset: None,
        },
    ] {
        let e = engine.step(src, sink.fd(), 100, &mut stats).unwrap_err();
        assert!(is_unsupported(&e, 0), "{e}");
    }
    assert_eq!(stats, Stats::default());
    drop(engine);
    assert!(sink.finish().is_empty());
}

#[test]
fn non_blocking_tcp_sink_resumes_exactly() {
    let data = pattern((4 << 20) + 7, 79);
    let (src, feeder) = stream_source(SinkKind::Pipe, data.clone());
    let (copy, reader) = copy_pipe(None);
    let mut sink = StalledTcp::new();
    let mut engine = Tee::new(vec![copy]);
    let (_, blocked) = drive_nonblocking(
        &mut engine,
        &|_| Src::Fd {
            fd: src.as_fd(),
            offset: None,
        },
        data.len(),
        &mut sink,
    );
    drop(engine);
    feeder.join().unwrap();
    assert!(blocked > 0, "the stalled sink never filled up");
    assert_same(&sink.finish(), &data, "sink");
    assert_same(&reader.join().unwrap(), &data, "copy");
}
