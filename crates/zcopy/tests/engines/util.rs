//! Fixtures for the engine suite: real files, pipes and sockets, and a check that
//! what came out is byte-for-byte what went in.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use zcopy::transfer::{Forced, Transfer};
use zcopy::{EngineKind, FdKind, Plan, Preference, Report};

/// The sizes every engine is checked with.
pub const SIZES: [usize; 6] = [0, 1, 4095, 4096, 4097, (1 << 20) + 7];

/// Deterministic, position-dependent bytes (so a shifted or repeated block shows).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A temporary file holding `data`, reopened read-only.
pub fn file_with(data: &[u8]) -> (tempfile::TempDir, std::fs::File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    std::fs::write(&path, data).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    (dir, f)
}

/// An empty temporary file open for writing, and its path.
pub fn empty_file() -> (tempfile::TempDir, std::fs::File, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dst");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (dir, f, path)
}

/// The kinds of sink the suite writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    File,
    Pipe,
    Tcp,
    Unix,
}

pub const SINKS: [SinkKind; 4] = [
    SinkKind::File,
    SinkKind::Pipe,
    SinkKind::Tcp,
    SinkKind::Unix,
];

/// A sink fd plus whatever collects what reaches it.
pub struct Sink {
    pub fd: OwnedFd,
    collect: Collect,
}

enum Collect {
    File(tempfile::TempDir, std::path::PathBuf),
    Thread(JoinHandle<Vec<u8>>),
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    })
}

/// A connected TCP pair on loopback.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

impl Sink {
    pub fn new(kind: SinkKind) -> Sink {
        match kind {
            SinkKind::File => {
                let (dir, f, path) = empty_file();
                Sink {
                    fd: f.into(),
                    collect: Collect::File(dir, path),
                }
            }
            SinkKind::Pipe => {
                let (r, w) = std::io::pipe().unwrap();
                Sink {
                    fd: w.into(),
                    collect: Collect::Thread(drain(r)),
                }
            }
            SinkKind::Tcp => {
                let (a, b) = tcp_pair();
                Sink {
                    fd: a.into(),
                    collect: Collect::Thread(drain(b)),
                }
            }
            SinkKind::Unix => {
                let (a, b) = UnixStream::pair().unwrap();
                Sink {
                    fd: a.into(),
                    collect: Collect::Thread(drain(b)),
                }
            }
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Closes the sink and returns every byte that reached it.
    pub fn finish(self) -> Vec<u8> {
        drop(self.fd);
        match self.collect {
            Collect::File(_dir, path) => std::fs::read(path).unwrap(),
            Collect::Thread(h) => h.join().unwrap(),
        }
    }
}

/// A stream source fed with `data` by a thread: pipe, TCP or UNIX socket.
pub fn stream_source(kind: SinkKind, data: Vec<u8>) -> (OwnedFd, JoinHandle<()>) {
    fn feed(mut w: impl Write + Send + 'static, data: Vec<u8>) -> JoinHandle<()> {
        std::thread::spawn(move || w.write_all(&data).unwrap())
    }
    match kind {
        SinkKind::Pipe => {
            let (r, w) = std::io::pipe().unwrap();
            (r.into(), feed(w, data))
        }
        SinkKind::Tcp => {
            let (a, b) = tcp_pair();
            (b.into(), feed(a, data))
        }
        SinkKind::Unix => {
            let (a, b) = UnixStream::pair().unwrap();
            (b.into(), feed(a, data))
        }
        SinkKind::File => panic!("not a stream"),
    }
}

/// Engines forced off for this run (the CI runs the suite once per entry).
pub fn forced() -> Forced {
    Forced::from_env()
}

/// Runs `engine` (preferred, with the pair's fallbacks) from `src` to `sink`, then
/// checks the report: the requested engine delivered the bytes, unless the run has
/// forced it off, in which case a fallback is recorded and another engine finished.
pub fn run_engine(
    engine: EngineKind,
    src: BorrowedFd<'_>,
    offset: Option<u64>,
    sink: BorrowedFd<'_>,
    len: Option<u64>,
) -> Report {
    let src_kind = FdKind::of(src).unwrap();
    let sink_kind = FdKind::of(sink).unwrap();
    let plan = Plan::new(Some(src_kind), sink_kind, Preference::Prefer(engine));
    let mut t = Transfer::with_forced(plan, forced());
    let report = t
        .run(src, offset, sink, len, &mut |_| {})
        .unwrap_or_else(|e| panic!("{engine} {src_kind:?}->{sink_kind:?}: {e}"))
        .clone();
    check_engine_used(engine, &report);
    report
}

/// Asserts the engine that ran is the one asked for, or that the forced-off switch
/// made it hand over (and then the first run names it with a reason).
pub fn check_engine_used(engine: EngineKind, report: &Report) {
    if report.runs.is_empty() {
        // Nothing to move (zero length): no engine had to start.
        assert_eq!(report.bytes, 0);
        return;
    }
    let first = &report.runs[0];
    assert_eq!(first.engine, engine, "{}", report.describe());
    match forced().limit(engine) {
        Some(_) if report.bytes > 0 || first.fell_back.is_some() => {
            if report.runs.len() > 1 {
                assert!(first.fell_back.is_some(), "{}", report.describe());
                assert_ne!(report.engine(), Some(engine), "{}", report.describe());
            }
        }
        _ => assert!(
            report.runs.len() == 1 && first.fell_back.is_none(),
            "{engine} fell back: {}",
            report.describe()
        ),
    }
}

/// Skips (loudly) when the kernel can't run `engine`; returns true if skipped.
pub fn skip_unless_supported(engine: EngineKind) -> bool {
    match engine.probe() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipped: {engine}: {why}");
            true
        }
    }
}

/// Asserts `got == want` with a helpful first-difference message.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

// ---- Shared by the sendfile, splice, mmap, direct and copy-range tests. ----

/// Offsets at which [`check_file_to_sinks`] starts reading: aligned, slightly
/// unaligned, and unaligned past the first page.
pub const OFFSETS: [usize; 3] = [0, 5, 4099];

/// Runs `engine` from a file to each of `sinks`, for every size of [`SIZES`] at
/// every offset of [`OFFSETS`], and checks the bytes.
pub fn check_file_to_sinks(engine: EngineKind, sinks: &[SinkKind]) {
    for &size in &SIZES {
        for offset in OFFSETS {
            let data = pattern(size + offset, (size * 31 + offset) as u64);
            let (_d, src) = file_with(&data);
            for &sink_kind in sinks {
                let sink = Sink::new(sink_kind);
                let r = run_engine(
                    engine,
                    src.as_fd(),
                    Some(offset as u64),
                    sink.fd(),
                    Some(size as u64),
                );
                assert_eq!(r.bytes, size as u64);
                assert_same(
                    &sink.finish(),
                    &data[offset..],
                    &format!("{engine}: {size} -> {sink_kind:?} @{offset}"),
                );
            }
        }
    }
}

/// Runs `engine` from a file in stream mode (no offset: from the file position,
/// here 5) to a pipe, and checks the bytes and that the position moved to the end.
pub fn check_file_stream_mode(engine: EngineKind) {
    use std::io::Seek;
    let data = pattern((1 << 20) + 7, 77);
    let (_d, mut src) = file_with(&data);
    src.seek(std::io::SeekFrom::Start(5)).unwrap();
    let sink = Sink::new(SinkKind::Pipe);
    let r = run_engine(engine, src.as_fd(), None, sink.fd(), None);
    assert_eq!(r.bytes, data.len() as u64 - 5);
    assert_same(&sink.finish(), &data[5..], &format!("{engine} stream mode"));
    assert_eq!(src.stream_position().unwrap(), data.len() as u64);
}

/// Runs `engine` from each stream source kind to each sink kind and checks the bytes.
pub fn check_streams(engine: EngineKind, srcs: &[SinkKind], sinks: &[SinkKind]) {
    for &src_kind in srcs {
        for &sink_kind in sinks {
            let data = pattern((1 << 20) + 7, 3);
            let (src, feeder) = stream_source(src_kind, data.clone());
            let sink = Sink::new(sink_kind);
            run_engine(engine, src.as_fd(), None, sink.fd(), None);
            feeder.join().unwrap();
            assert_same(
                &sink.finish(),
                &data,
                &format!("{engine}: {src_kind:?} -> {sink_kind:?}"),
            );
        }
    }
}

/// A sparse file of `len` bytes: zeros except one byte at each marker offset.
/// Made on tmpfs (`/dev/shm`) where it exists, so holes cost no memory or disk
/// and splice hands out the shared zero page. Returns the dir, the file opened
/// read-only, and the markers.
pub fn sparse_file(len: u64) -> (tempfile::TempDir, std::fs::File, Vec<(u64, u8)>) {
    use std::os::unix::fs::FileExt;
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let path = dir.path().join("sparse");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let markers: Vec<(u64, u8)> = [0, 4095, (1 << 31) - 1, 1 << 31, (1 << 31) + 4095, len - 1]
        .into_iter()
        .filter(|&o| o < len)
        .enumerate()
        .map(|(i, o)| (o, 0xA0 + i as u8))
        .collect();
    for &(off, b) in &markers {
        f.write_at(&[b], off).unwrap();
    }
    drop(f);
    (dir, std::fs::File::open(&path).unwrap(), markers)
}

/// A pipe whose reader thread checks every byte against a [`sparse_file`]'s
/// content (zeros except the markers) and returns how many bytes it read.
pub fn sparse_checker(markers: Vec<(u64, u8)>) -> (OwnedFd, JoinHandle<u64>) {
    let (mut r, w) = std::io::pipe().unwrap();
    // Bigger pipe, fewer round trips; the default size works too.
    let _ = rustix::pipe::fcntl_setpipe_size(&w, 1 << 20);
    let h = std::thread::spawn(move || {
        let zeros = vec![0u8; 1 << 20];
        let mut buf = vec![0u8; 1 << 20];
        let mut pos: u64 = 0;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return pos;
            }
            for &(off, b) in &markers {
                if off >= pos && off < pos + n as u64 {
                    let i = (off - pos) as usize;
                    assert_eq!(buf[i], b, "marker at {off}");
                    buf[i] = 0;
                }
            }
            if buf[..n] != zeros[..n] {
                let i = buf[..n].iter().position(|&x| x != 0).unwrap();
                panic!("non-zero byte {:#x} at {}", buf[i], pos + i as u64);
            }
            pos += n as u64;
        }
    });
    (w.into(), h)
}

/// Moves a sparse file of 2 GiB + 4097 bytes through `engine` (called directly,
/// with no per-step limit, so calls cross the 2^31 offset and the per-call
/// limit) into a checking pipe.
pub fn check_more_than_2g(mut engine: Box<dyn zcopy::Engine>) {
    let len: u64 = (1 << 31) + 4097;
    let (_dir, src, markers) = sparse_file(len);
    let (w, reader) = sparse_checker(markers);
    let mut stats = zcopy::Stats::default();
    let mut off = 0u64;
    loop {
        let src_at = zcopy::Src::Fd {
            fd: src.as_fd(),
            offset: Some(off),
        };
        match engine
            .step(src_at, w.as_fd(), usize::MAX, &mut stats)
            .unwrap()
        {
            0 => break,
            n => off += n as u64,
        }
    }
    drop(w);
    assert_eq!(off, len);
    assert_eq!(stats.bytes, len);
    assert_eq!(reader.join().unwrap(), len);
}

/// Sends 16 MiB through `engine` alone to a non-blocking TCP socket whose reader
/// is slow, driving [`Transfer::step`] and polling for writability on
/// `WouldBlock`; checks every byte arrived once, in order.
pub fn check_nonblocking_tcp(engine: EngineKind) {
    use rustix::event::{PollFd, PollFlags, poll};
    let data = pattern((16 << 20) + 7, 5);
    let (_d, src) = file_with(&data);
    let (a, mut b) = tcp_pair();
    a.set_nonblocking(true).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = b.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    });
    let mut t = Transfer::with_forced(Plan::only(&[engine]), Forced::default());
    let len = data.len() as u64;
    let (mut done, mut would_block, mut steps) = (0u64, 0u32, 0u32);
    while done < len {
        let src_at = zcopy::Src::Fd {
            fd: src.as_fd(),
            offset: Some(done),
        };
        steps += 1;
        match t.step(src_at, a.as_fd(), (len - done) as usize) {
            Ok(0) => panic!("{engine}: early end of file at {done}"),
            Ok(n) => done += n as u64,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::WouldBlock) => {
                would_block += 1;
                poll(&mut [PollFd::new(&a, PollFlags::OUT)], None).unwrap();
            }
            Err(e) => panic!("{engine}: {e}"),
        }
    }
    drop(a);
    let got = reader.join().unwrap();
    assert_same(&got, &data, &format!("{engine} non-blocking tcp"));
    assert_eq!(t.report().bytes, len);
    assert_eq!(t.report().describe(), engine.to_string());
    assert!(would_block > 0, "{engine}: the sink never filled up");
    eprintln!("{engine}: non-blocking: {steps} steps, {would_block} WouldBlock");
}

/// Drives `engine` directly (no [`Transfer`]) over `data` in user memory, at most
/// `max` bytes a step, until every byte reached `sink`; returns its counters.
pub fn drive_mem(
    engine: &mut dyn zcopy::Engine,
    data: &[u8],
    sink: BorrowedFd<'_>,
    max: usize,
) -> zcopy::Stats {
    let mut stats = zcopy::Stats::default();
    let mut done = 0;
    while done < data.len() {
        let n = engine
            .step(zcopy::Src::Mem(&data[done..]), sink, max, &mut stats)
            .unwrap_or_else(|e| panic!("{:?} at {done}/{}: {e}", engine.kind(), data.len()));
        assert!(n > 0, "{:?}: no progress at {done}", engine.kind());
        done += n;
    }
    assert_eq!(engine.pending(), 0);
    assert_eq!(stats.bytes, data.len() as u64);
    stats
}

/// Drives `engine` directly from a stream fd until it reports the end; returns its
/// counters.
pub fn drive_stream(
    engine: &mut dyn zcopy::Engine,
    src: BorrowedFd<'_>,
    sink: BorrowedFd<'_>,
    max: usize,
) -> zcopy::Stats {
    let mut stats = zcopy::Stats::default();
    loop {
        let src = zcopy::Src::Fd {
            fd: src,
            offset: None,
        };
        match engine.step(src, sink, max, &mut stats) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("{:?}: {e}", engine.kind()),
        }
    }
    assert_eq!(engine.pending(), 0);
    stats
}

/// A non-blocking TCP sink whose reader starts only when told to, so the sender is
/// sure to find the socket full at some point.
pub struct StalledTcp {
    pub fd: OwnedFd,
    go: Option<std::sync::mpsc::Sender<()>>,
    reader: JoinHandle<Vec<u8>>,
}

impl StalledTcp {
    pub fn new() -> StalledTcp {
        let (a, mut b) = tcp_pair();
        a.set_nonblocking(true).unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 64 * 1024).unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _ = wait.recv();
            let mut v = Vec::new();
            b.read_to_end(&mut v).unwrap();
            v
        });
        StalledTcp {
            fd: a.into(),
            go: Some(go),
            reader,
        }
    }

    /// Lets the reader start.
    pub fn release(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// Closes the sink and returns what the reader got.
    pub fn finish(mut self) -> Vec<u8> {
        self.release();
        drop(self.fd);
        self.reader.join().unwrap()
    }
}

/// Drives `engine` over `len` bytes (`src_at(done)` is the source from byte `done`
/// on) into a [`StalledTcp`]: on each `WouldBlock` the reader is released and the
/// loop waits for POLLOUT. Returns the counters and how often the sink was full.
pub fn drive_nonblocking<'a>(
    engine: &mut dyn zcopy::Engine,
    src_at: &dyn Fn(usize) -> zcopy::Src<'a>,
    len: usize,
    sink: &mut StalledTcp,
) -> (zcopy::Stats, u64) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut stats = zcopy::Stats::default();
    let mut done = 0;
    let mut blocked = 0;
    while done < len {
        match engine.step(src_at(done), sink.fd.as_fd(), len - done, &mut stats) {
            Ok(0) => panic!("{:?}: source ended at {done}/{len}", engine.kind()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked += 1;
                sink.release();
                let mut fds = [PollFd::new(&sink.fd, PollFlags::OUT)];
                poll(&mut fds, None).unwrap();
            }
            Err(e) => panic!("{:?}: {e}", engine.kind()),
        }
    }
    assert_eq!(engine.pending(), 0);
    assert_eq!(stats.bytes, len as u64);
    (stats, blocked)
}

/// Asserts `engine` refuses user memory and a stream (pipe) source as "unsupported",
/// before moving a byte, so that a transfer falls back cleanly.
pub fn check_needs_a_file_source(engine: &mut dyn zcopy::Engine) {
    let sink = Sink::new(SinkKind::Pipe);
    let mut stats = zcopy::Stats::default();
    let err = engine
        .step(zcopy::Src::Mem(b"abc"), sink.fd(), 3, &mut stats)
        .unwrap_err();
    assert!(zcopy::engine::is_unsupported(&err, 0), "{err}");
    let (src, feeder) = stream_source(SinkKind::Pipe, b"hello".to_vec());
    let at = zcopy::Src::Fd {
        fd: src.as_fd(),
        offset: None,
    };
    let err = engine.step(at, sink.fd(), 5, &mut stats).unwrap_err();
    assert!(zcopy::engine::is_unsupported(&err, 0), "{err}");
    assert_eq!(stats.bytes, 0);
    drop(src);
    feeder.join().ok();
    assert!(sink.finish().is_empty());
}
