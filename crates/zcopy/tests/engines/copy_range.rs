//! `copy-range`: file → file at every size and offset, stream mode, a sparse
//! source, and fallback for sinks it can't write.

use crate::util::*;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use zcopy::EngineKind;

#[test]
fn file_to_file_at_every_size_and_offset() {
    check_file_to_sinks(EngineKind::CopyRange, &[SinkKind::File]);
}

#[test]
fn writes_at_the_sink_position() {
    let data = pattern(300_000, 8);
    let (_d, src) = file_with(&data);
    let (_d2, dst, path) = empty_file();
    dst.write_at(b"head", 0).unwrap();
    use std::io::Seek;
    let mut dst = dst;
    dst.seek(std::io::SeekFrom::Start(4)).unwrap();
    run_engine(
        EngineKind::CopyRange,
        src.as_fd(),
        Some(0),
        dst.as_fd(),
        Some(data.len() as u64),
    );
    let got = std::fs::read(path).unwrap();
    assert_eq!(&got[..4], b"head");
    assert_same(&got[4..], &data, "after head");
}

#[test]
fn sparse_source_copies_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let f = std::fs::File::create(&path).unwrap();
    let len = 8u64 << 20;
    f.set_len(len).unwrap();
    f.write_at(b"start", 0).unwrap();
    f.write_at(b"end", len - 3).unwrap();
    drop(f);
    let src = std::fs::File::open(&path).unwrap();
    let (_d2, dst, dpath) = empty_file();
    run_engine(
        EngineKind::CopyRange,
        src.as_fd(),
        Some(0),
        dst.as_fd(),
        Some(len),
    );
    let want = std::fs::read(&path).unwrap();
    assert_same(&std::fs::read(&dpath).unwrap(), &want, "sparse");
    eprintln!(
        "copy-range: sparse {len} bytes: source uses {} blocks, copy {}",
        std::fs::metadata(&path).unwrap().blocks(),
        std::fs::metadata(&dpath).unwrap().blocks()
    );
}

#[test]
fn non_file_sinks_fall_back() {
    let data = pattern(70_000, 6);
    let (_d, src) = file_with(&data);
    for sink_kind in [SinkKind::Pipe, SinkKind::Tcp] {
        let sink = Sink::new(sink_kind);
        let plan = zcopy::Plan::only(&[EngineKind::CopyRange, EngineKind::ReadWrite]);
        let mut t = zcopy::Transfer::with_forced(plan, Default::default());
        let r = t
            .run(
                src.as_fd(),
                Some(0),
                sink.fd(),
                Some(data.len() as u64),
                &mut |_| {},
            )
            .unwrap()
            .clone();
        assert_eq!(r.runs[0].engine, EngineKind::CopyRange);
        assert!(r.runs[0].fell_back.is_some(), "{}", r.describe());
        assert_eq!(r.engine(), Some(EngineKind::ReadWrite));
        assert_same(&sink.finish(), &data, &format!("{sink_kind:?}"));
    }
}

#[test]
fn across_filesystems_copies_or_falls_back() {
    if !std::path::Path::new("/dev/shm").is_dir() {
        eprintln!("skipped: no /dev/shm for a second filesystem");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("src");
    let data = pattern(200_003, 9);
    std::fs::write(&path, &data).unwrap();
    let src = std::fs::File::open(&path).unwrap();
    let (_d2, dst, dpath) = empty_file();
    let plan = zcopy::Plan::only(&[EngineKind::CopyRange, EngineKind::ReadWrite]);
    let mut t = zcopy::Transfer::with_forced(plan, Default::default());
    let r = t
        .run(src.as_fd(), Some(0), dst.as_fd(), None, &mut |_| {})
        .unwrap()
        .clone();
    assert_same(&std::fs::read(dpath).unwrap(), &data, "tmpfs -> temp dir");
    eprintln!("copy-range: tmpfs -> temp dir: {}", r.describe());
}
