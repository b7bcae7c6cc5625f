//! A source truncated by someone else mid-send: the transfer ends with an error,
//! the process survives (no SIGBUS from mmap), and every byte that arrived is
//! the file's original byte at that position.
//!
//! With the read lease (taken by `Transfer::run`), the truncating open waits
//! until we stop, so the transfer ends with `SourceModified`. Without it (the
//! file is open for writing elsewhere, so `F_SETLEASE` fails with EAGAIN), the
//! file really shrinks under the engine, which must notice.

use crate::util::*;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use zcopy::transfer::{Forced, Transfer, TransferError};
use zcopy::{EngineKind, Plan};

/// Reads everything, slowly (a pause per 64 KiB), calling `at_1mib` once after
/// the first MiB has arrived.
fn slow_reader(
    mut r: impl Read + Send + 'static,
    at_1mib: impl FnOnce() + Send + 'static,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut at_1mib = Some(at_1mib);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() >= 1 << 20
                && let Some(f) = at_1mib.take()
            {
                f();
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    })
}

/// A sink of `kind` (pipe or TCP) read by [`slow_reader`].
fn slow_sink(
    kind: SinkKind,
    at_1mib: impl FnOnce() + Send + 'static,
) -> (OwnedFd, JoinHandle<Vec<u8>>) {
    match kind {
        SinkKind::Pipe => {
            let (r, w) = std::io::pipe().unwrap();
            (w.into(), slow_reader(r, at_1mib))
        }
        SinkKind::Tcp => {
            let (a, b) = tcp_pair();
            (a.into(), slow_reader(b, at_1mib))
        }
        SinkKind::Unix => {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            (a.into(), slow_reader(b, at_1mib))
        }
        SinkKind::File => panic!("not a slow sink"),
    }
}

/// A file of `len` pattern bytes in a fresh directory: (dir, path, data).
fn source(len: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let data = pattern(len, len as u64 ^ 0x5a);
    std::fs::write(&path, &data).unwrap();
    (dir, path, data)
}

fn check_prefix(got: &[u8], data: &[u8], what: &str) {
    assert!(
        got.len() <= data.len(),
        "{what}: more bytes than the file had"
    );
    assert_same(got, &data[..got.len()], what);
}

/// With the lease: after 1 MiB has arrived, another open for writing breaks the
/// lease and a thread waits to truncate the file to half.
fn with_lease(engine: EngineKind, sink_kind: SinkKind) {
    let len = 40 << 20;
    let (_dir, path, data) = source(len);
    let src = std::fs::File::open(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    let (sink, reader) = slow_sink(sink_kind, move || {
        // A non-blocking open for writing starts the lease break and fails at
        // once, so the break is certain before this step ends.
        let e = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .expect_err("the source should be under a read lease");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        // The truncating writer, which waits for the lease to go.
        tx.send(std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(len as u64 / 2).unwrap();
        }))
        .unwrap();
    });
    let mut t = Transfer::with_forced(Plan::only(&[engine]), Forced::default());
    let r = t.run(
        src.as_fd(),
        Some(0),
        sink.as_fd(),
        Some(len as u64),
        &mut |_| {},
    );
    let what = format!("{engine} -> {sink_kind:?} with lease");
    let sent = match r {
        Err(TransferError::SourceModified { sent }) => sent,
        Err(e) => panic!("{what}: expected SourceModified, got {e}"),
        Ok(r) => panic!("{what}: finished despite the truncation: {}", r.describe()),
    };
    drop(sink);
    let got = reader.join().unwrap();
    check_prefix(&got, &data, &what);
    assert_eq!(got.len() as u64, sent, "{what}");
    rx.recv().unwrap().join().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64 / 2);
    eprintln!("{what}: stopped after {sent} of {len} bytes");
}

#[test]
fn mmap_with_lease_stops_with_source_modified() {
    with_lease(EngineKind::Mmap, SinkKind::Pipe);
}

#[test]
fn sendfile_with_lease_stops_with_source_modified() {
    with_lease(EngineKind::Sendfile, SinkKind::Tcp);
}

#[test]
fn splice_with_lease_stops_with_source_modified() {
    with_lease(EngineKind::Splice, SinkKind::Unix);
}

/// Without a lease: the file (of `len` bytes) is open for writing elsewhere, and
/// once 1 MiB has arrived it is truncated to half. With an 8 MiB file and a pipe
/// or UNIX socket (small buffers), that happens inside the first step, under
/// the engine's feet; the transfer is told the length (`known_len`) or not.
fn without_lease(engine: EngineKind, sink_kind: SinkKind, len: usize, known_len: bool) {
    let (_dir, path, data) = source(len);
    let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let src = std::fs::File::open(&path).unwrap();
    assert!(
        zcopy::lease::ReadLease::take(&src).is_err(),
        "a read lease despite a writer"
    );
    let (sink, reader) = slow_sink(sink_kind, move || writer.set_len(len as u64 / 2).unwrap());
    let mut t = Transfer::with_forced(Plan::only(&[engine]), Forced::default());
    let expect = known_len.then_some(len as u64);
    let r = t.run(src.as_fd(), Some(0), sink.as_fd(), expect, &mut |_| {});
    let what = format!("{engine} -> {sink_kind:?} without lease ({len} bytes)");
    let err = match r {
        Ok(r) => panic!("{what}: finished despite the truncation: {}", r.describe()),
        Err(e) => e,
    };
    drop(sink);
    let got = reader.join().unwrap();
    check_prefix(&got, &data, &what);
    assert!(got.len() <= len / 2, "{what}: {} bytes", got.len());
    if !known_len {
        assert!(
            matches!(err, TransferError::Io { .. }),
            "{what}: a truncation under a write is an I/O error: {err}"
        );
    }
    eprintln!("{what}: {err} ({} bytes arrived)", got.len());
}

#[test]
fn mmap_without_lease_errors_without_crashing() {
    without_lease(EngineKind::Mmap, SinkKind::Pipe, 8 << 20, true);
    without_lease(EngineKind::Mmap, SinkKind::Unix, 8 << 20, true);
    without_lease(EngineKind::Mmap, SinkKind::Tcp, 40 << 20, true);
}

#[test]
fn mmap_truncated_under_a_write_errors_even_without_a_length() {
    // The write faults at the lost page: an error, not a short "end of file".
    without_lease(EngineKind::Mmap, SinkKind::Pipe, 8 << 20, false);
}

#[test]
fn sendfile_without_lease_errors() {
    without_lease(EngineKind::Sendfile, SinkKind::Pipe, 8 << 20, true);
    without_lease(EngineKind::Sendfile, SinkKind::Tcp, 40 << 20, true);
}

#[test]
fn splice_without_lease_errors() {
    without_lease(EngineKind::Splice, SinkKind::Unix, 8 << 20, true);
    without_lease(EngineKind::Splice, SinkKind::Tcp, 40 << 20, true);
}
