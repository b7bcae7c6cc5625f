//! The scenarios: which fds each one sets up, who is on the other end, and one timed
//! run of `iters` transfers with byte counting on both sides.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

use zcopy::peer::{LocalReason, PeerClass};
use zcopy::transfer::Forced;
use zcopy::{EngineKind, FdKind, Plan, Preference, Transfer, Usage};
use zcopy_netns::VethPair;

use crate::BenchError;

/// A pair of fd kinds the bench measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A file sent into a loopback TCP socket; a receiver thread splices it to /dev/null.
    FileTcp,
    /// The same across a veth pair: the sending socket in one network namespace,
    /// the receiving one in another (root only).
    FileTcpVeth,
    /// A file copied into a fresh file on the same filesystem (no fsync).
    FileFile,
    /// A file written into a pipe; a receiver thread splices it to /dev/null.
    FilePipe,
    /// A loopback TCP socket (fed by a sender thread with sendfile) received into a
    /// fresh file.
    TcpFile,
}

/// One row of a scenario's table: a single engine, or `auto` (the default plan, with
/// fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Row {
    /// Exactly this engine (no fallback).
    Engine(EngineKind),
    /// `Plan::with_profile(.., Preference::Auto, size, profile)`; to a TCP peer,
    /// `Plan::for_peer(peer, size, Auto, LeaseHold::UntilConsumed, profile)`: the
    /// measured order for the peer's path, every engine allowed. The profile is the
    /// one in force for this process ([`zcopy::profile::Profile::cached_default`]).
    Auto,
}

fn profile() -> Option<&'static zcopy::profile::Profile> {
    zcopy::profile::Profile::cached_default()
}

impl Row {
    /// "auto" or the engine's name.
    pub fn name(self) -> &'static str {
        match self {
            Row::Engine(k) => k.name(),
            Row::Auto => "auto",
        }
    }

    /// The plan this row runs for a (source, sink) pair and transfer size, to a
    /// peer of class `peer` when the sink is a socket.
    pub fn plan(self, src: FdKind, sink: FdKind, size: u64, peer: Option<&PeerClass>) -> Plan {
        match (self, peer) {
            (Row::Engine(k), _) => Plan::only(&[k]),
            (Row::Auto, Some(peer)) => {
                let hold = zcopy::LeaseHold::UntilConsumed;
                Plan::for_peer(peer, size, Preference::Auto, hold, profile())
            }
            (Row::Auto, None) => {
                Plan::with_profile(Some(src), sink, Preference::Auto, Some(size), profile())
            }
        }
    }
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 5] = [
        Scenario::FileTcp,
        Scenario::FileTcpVeth,
        Scenario::FileFile,
        Scenario::FilePipe,
        Scenario::TcpFile,
    ];

    /// Short name for the command line and file names, e.g. `file-tcp`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FileTcp => "file-tcp",
            Scenario::FileTcpVeth => "file-tcp-veth",
            Scenario::FileFile => "file-file",
            Scenario::FilePipe => "file-pipe",
            Scenario::TcpFile => "tcp-file",
        }
    }

    /// Heading for tables and charts, e.g. `file → TCP socket`.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::FileTcp => "file → TCP socket (loopback)",
            Scenario::FileTcpVeth => "file → TCP socket (across a veth pair)",
            Scenario::FileFile => "file → file",
            Scenario::FilePipe => "file → pipe",
            Scenario::TcpFile => "TCP socket (loopback) → file, fsync'd",
        }
    }

    /// The kind of the engine's source fd (files with their length).
    pub fn src_kind(self, len: u64) -> FdKind {
        match self {
            Scenario::TcpFile => FdKind::TcpSocket,
            _ => FdKind::File { len },
        }
    }

    /// The kind of the engine's sink fd.
    pub fn sink_kind(self) -> FdKind {
        match self {
            Scenario::FileTcp | Scenario::FileTcpVeth => FdKind::TcpSocket,
            Scenario::FilePipe => FdKind::Pipe,
            Scenario::FileFile | Scenario::TcpFile => FdKind::File { len: 0 },
        }
    }

    /// What the engine under test does here.
    pub fn engine_side(self) -> &'static str {
        match self {
            Scenario::TcpFile => "receiver",
            _ => "sender",
        }
    }

    /// Who is on the other end, if anyone (a thread of its own, with its own CPU figures).
    pub fn peer(self) -> Option<&'static str> {
        match self {
            Scenario::FileTcp | Scenario::FileTcpVeth | Scenario::FilePipe => {
                Some("receiver: splice → /dev/null")
            }
            Scenario::TcpFile => Some("sender: sendfile"),
            Scenario::FileFile => None,
        }
    }

    /// The class of the engine's TCP peer, for scenarios that send to one.
    pub fn peer_class(self) -> Option<PeerClass> {
        match self {
            Scenario::FileTcp => Some(PeerClass::Local(LocalReason::Loopback)),
            Scenario::FileTcpVeth => {
                Some(PeerClass::Local(LocalReason::VirtualDevice("veth0".into())))
            }
            _ => None,
        }
    }

    /// The sink name this scenario's lines have in a calibration profile: `tcp@lo`
    /// and `tcp@veth` for the TCP senders (see [`zcopy::profile`]), else the sink
    /// kind's name.
    pub fn profile_sink(self) -> String {
        match self.peer_class() {
            Some(peer) => format!("{}@{}", self.sink_kind().name(), peer.path()),
            None => self.sink_kind().name().to_string(),
        }
    }

    /// The engines that can do this scenario per [`Plan::auto_order`], plus `auto`.
    pub fn rows(self, len: u64) -> Vec<Row> {
        let mut rows: Vec<Row> = Plan::auto_order(Some(self.src_kind(len)), self.sink_kind())
            .into_iter()
            .map(Row::Engine)
            .collect();
        rows.sort_by_key(|r| match r {
            Row::Engine(k) => *k,
            Row::Auto => EngineKind::ReadWrite,
        });
        rows.push(Row::Auto);
        rows
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|k| k.name()).collect();
                format!("unknown scenario '{s}' (known: {})", names.join(", "))
            })
    }
}

/// What one timed run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Transfers in the run (small sizes repeat to last long enough).
    pub iters: u64,
    /// Bytes moved, all transfers together (verified on both ends).
    pub bytes: u64,
    /// Wall time from the start until the last byte arrived.
    pub elapsed: Duration,
    /// CPU, switches and faults of the engine's side: the whole process minus the
    /// peer thread, so that kernel workers the engine uses (io_uring's io-wq threads
    /// belong to the process) count too.
    pub engine: Usage,
    /// The same for the engine's own thread only.
    pub engine_thread: Usage,
    /// Same for the peer thread, if the scenario has one.
    pub peer: Option<Usage>,
    /// Syscalls the engine reported.
    pub syscalls: u64,
    /// The engine(s) that really ran (interesting for `auto`).
    pub ran: String,
}

/// What a run needs: the source file, its length, a scratch directory, and for
/// [`Scenario::FileTcpVeth`] the veth pair.
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// The source file (for `tcp-file`, the sender's file).
    pub source: &'a Path,
    /// Its length: the size of one transfer.
    pub size: u64,
    /// Where destination files go.
    pub scratch: &'a Path,
    /// The namespaces [`Scenario::FileTcpVeth`] connects across.
    pub veth: Option<&'a VethPair>,
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> BenchError + '_ {
    move |e| BenchError::Io(what.to_string(), e)
}

/// The engine side: `iters` transfers of `size` bytes, with rusage deltas of this thread.
struct EngineSide {
    bytes: u64,
    syscalls: u64,
    ran: String,
    usage: Usage,
    end: Instant,
}

#[allow(clippy::too_many_arguments)]
fn engine_loop(
    row: Row,
    peer: Option<&PeerClass>,
    src: BorrowedFd<'_>,
    offset: Option<u64>,
    sink: BorrowedFd<'_>,
    size: u64,
    iters: u64,
) -> Result<EngineSide, BenchError> {
    let src_kind = FdKind::of(src).map_err(io_err("fstat source"))?;
    let sink_kind = FdKind::of(sink).map_err(io_err("fstat sink"))?;
    let u0 = Usage::thread();
    let (mut bytes, mut syscalls) = (0u64, 0u64);
    let mut ran = String::new();
    for _ in 0..iters {
        let plan = row.plan(src_kind, sink_kind, size, peer);
        let mut t = Transfer::with_forced(plan, Forced::default());
        let report = t
            .run(src, offset, sink, Some(size), &mut |_| {})
            .map_err(|e| BenchError::Transfer(row.name(), e))?;
        bytes += report.bytes;
        syscalls += report.stats().syscalls;
        if ran.is_empty() {
            ran = report.short();
        }
    }
    let stream = matches!(
        src_kind,
        FdKind::TcpSocket | FdKind::UnixSocket | FdKind::Pipe
    );
    if stream && matches!(sink_kind, FdKind::File { .. }) {
        // A receiver makes what it got durable (zcopy recv and uploads fsync before
        // they publish a file): the write-back its engine left is its cost too.
        rustix::fs::fsync(sink)
            .map_err(|e| BenchError::Io("fsync destination".into(), e.into()))?;
    }
    Ok(EngineSide {
        bytes,
        syscalls,
        ran,
        usage: Usage::thread().since(&u0),
        end: Instant::now(),
    })
}

/// The peer side's result: bytes it moved, its usage and when it finished.
type PeerResult = Result<(u64, Usage, Instant), BenchError>;

/// Receiver: splices everything from `src` to /dev/null until end of stream.
/// The `nth` CPU this process may run on as a set of one, and the whole mask, when it
/// may run on two or more.
pub(crate) fn one_cpu(nth: usize) -> Option<(CpuSet, CpuSet)> {
    let all = sched_getaffinity(None).ok()?;
    if all.count() < 2 {
        return None;
    }
    let cpu = (0..CpuSet::MAX_CPU).filter(|&c| all.is_set(c)).nth(nth)?;
    let mut one = CpuSet::new();
    one.set(cpu);
    Some((all, one))
}

/// Pins the calling thread to the `nth` CPU it may run on, when it may run on two or
/// more, so the engine and its peer never fight over one core (their spread drops a
/// lot on small machines). Returns the previous mask, to restore.
pub(crate) fn pin(nth: usize) -> Option<CpuSet> {
    let (old, one) = one_cpu(nth)?;
    sched_setaffinity(None, &one).ok()?;
    Some(old)
}

/// Puts back a mask taken by [`pin`].
pub(crate) fn unpin(old: Option<CpuSet>) {
    if let Some(old) = old {
        let _ = sched_setaffinity(None, &old);
    }
}

fn receive_to_null(src: OwnedFd, barrier: &Barrier) -> PeerResult {
    pin(1);
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    barrier.wait();
    let u0 = Usage::thread();
    let mut t = Transfer::with_forced(Plan::only(&[EngineKind::Splice]), Forced::default());
    let got = t
        .run(src.as_fd(), None, null.as_fd(), None, &mut |_| {})
        .map_err(|e| BenchError::Transfer("receiver", e))?
        .bytes;
    Ok((got, Usage::thread().since(&u0), Instant::now()))
}

/// Sender: sendfiles `source` `iters` times into `sock`, then shuts down writing.
fn send_file(
    source: &Path,
    size: u64,
    iters: u64,
    sock: TcpStream,
    barrier: &Barrier,
) -> PeerResult {
    pin(1);
    let file = File::open(source).map_err(io_err("open source"))?;
    barrier.wait();
    let u0 = Usage::thread();
    let mut sent = 0;
    for _ in 0..iters {
        let mut t = Transfer::with_forced(Plan::only(&[EngineKind::Sendfile]), Forced::default());
        sent += t
            .run(file.as_fd(), Some(0), sock.as_fd(), Some(size), &mut |_| {})
            .map_err(|e| BenchError::Transfer("sender", e))?
            .bytes;
    }
    let _ = sock.shutdown(Shutdown::Write);
    Ok((sent, Usage::thread().since(&u0), Instant::now()))
}

fn tcp_pair() -> Result<(TcpStream, TcpStream), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1"))?;
    let addr = listener.local_addr().map_err(io_err("local_addr"))?;
    let client = TcpStream::connect(addr).map_err(io_err("connect"))?;
    let (server, _) = listener.accept().map_err(io_err("accept"))?;
    Ok((client, server))
}

/// A connected pair across `pair`: the first end in namespace `a`, the second in `b`.
fn veth_tcp_pair(pair: &VethPair) -> Result<(TcpStream, TcpStream), BenchError> {
    let addr_b = pair.addr_b;
    let listener = pair
        .b
        .run(move || TcpListener::bind((addr_b, 0)))
        .and_then(|r| r)
        .map_err(io_err("bind in the veth namespace"))?;
    let addr = listener.local_addr().map_err(io_err("local_addr"))?;
    let client = pair
        .a
        .run(move || TcpStream::connect(addr))
        .and_then(|r| r)
        .map_err(io_err("connect across the veth pair"))?;
    let (server, _) = listener.accept().map_err(io_err("accept"))?;
    Ok((client, server))
}

fn fresh_file(scratch: &Path) -> Result<(File, std::path::PathBuf), BenchError> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = scratch.join(format!("dst-{n}"));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err("create destination"))?;
    Ok((f, path))
}

fn check(what: &str, expected: u64, got: u64) -> Result<(), BenchError> {
    if expected == got {
        Ok(())
    } else {
        Err(BenchError::Mismatch {
            what: what.to_string(),
            expected,
            got,
        })
    }
}

/// Runs `iters` transfers of `setup.size` bytes with `row`, timed, and checks that
/// every byte sent arrived.
pub fn run(
    scenario: Scenario,
    row: Row,
    setup: Setup<'_>,
    iters: u64,
) -> Result<Measured, BenchError> {
    let expected = setup.size * iters;
    let barrier = Barrier::new(2);
    let mask = pin(0);
    let result = run_pinned(scenario, row, setup, iters, expected, &barrier);
    unpin(mask);
    result
}

fn run_pinned(
    scenario: Scenario,
    row: Row,
    setup: Setup<'_>,
    iters: u64,
    expected: u64,
    barrier: &Barrier,
) -> Result<Measured, BenchError> {
    let (start, process, side, peer) = match scenario {
        Scenario::FileTcp | Scenario::FileTcpVeth | Scenario::FilePipe => {
            let source = File::open(setup.source).map_err(io_err("open source"))?;
            let (sink, theirs): (OwnedFd, OwnedFd) = match (scenario, setup.veth) {
                (Scenario::FileTcp, _) => {
                    let (c, s) = tcp_pair()?;
                    (c.into(), s.into())
                }
                (Scenario::FileTcpVeth, Some(pair)) => {
                    let (c, s) = veth_tcp_pair(pair)?;
                    (c.into(), s.into())
                }
                (Scenario::FileTcpVeth, None) => {
                    return Err(BenchError::Config(
                        "skipped: needs root (a veth pair)".into(),
                    ));
                }
                _ => {
                    let (r, w) = rustix::pipe::pipe()
                        .map_err(|e| BenchError::Io("pipe".into(), e.into()))?;
                    (w, r)
                }
            };
            let class = scenario.peer_class();
            std::thread::scope(|s| {
                let peer = s.spawn(|| receive_to_null(theirs, barrier));
                barrier.wait();
                let (start, p0) = (Instant::now(), Usage::process());
                let side = engine_loop(
                    row,
                    class.as_ref(),
                    source.as_fd(),
                    Some(0),
                    sink.as_fd(),
                    setup.size,
                    iters,
                );
                drop(sink); // end of stream for the receiver, also on error
                let peer = peer.join().expect("receiver thread panicked");
                (start, Usage::process().since(&p0), side, Some(peer))
            })
        }
        Scenario::FileFile => {
            let source = File::open(setup.source).map_err(io_err("open source"))?;
            let (dst, path) = fresh_file(setup.scratch)?;
            let (start, p0) = (Instant::now(), Usage::process());
            let side = engine_loop(
                row,
                None,
                source.as_fd(),
                Some(0),
                dst.as_fd(),
                setup.size,
                iters,
            );
            let process = Usage::process().since(&p0);
            let len = dst.metadata().map_err(io_err("fstat destination"));
            drop(dst);
            let _ = std::fs::remove_file(&path);
            let side = side?;
            check("destination file length", side.bytes, len?.len())?;
            (start, process, Ok(side), None)
        }
        Scenario::TcpFile => {
            let (client, server) = tcp_pair()?;
            let (dst, path) = fresh_file(setup.scratch)?;
            let r = std::thread::scope(|s| {
                let peer = s.spawn(|| send_file(setup.source, setup.size, iters, client, barrier));
                barrier.wait();
                let (start, p0) = (Instant::now(), Usage::process());
                let side = engine_loop(
                    row,
                    None,
                    server.as_fd(),
                    None,
                    dst.as_fd(),
                    setup.size,
                    iters,
                );
                drop(server); // unblocks the sender on error
                let peer = peer.join().expect("sender thread panicked");
                (start, Usage::process().since(&p0), side, Some(peer))
            });
            let len = dst.metadata().map_err(io_err("fstat destination"));
            drop(dst);
            let _ = std::fs::remove_file(&path);
            if let Ok(side) = &r.2 {
                check("destination file length", side.bytes, len?.len())?;
            }
            r
        }
    };
    let side = side?;
    check("bytes the engine delivered", expected, side.bytes)?;
    let (peer_usage, end) = match peer {
        Some(p) => {
            let (moved, usage, end) = p?;
            check(
                if scenario == Scenario::TcpFile {
                    "bytes the sender sent"
                } else {
                    "bytes the receiver got"
                },
                side.bytes,
                moved,
            )?;
            (Some(usage), end.max(side.end))
        }
        None => (None, side.end),
    };
    Ok(Measured {
        iters,
        bytes: side.bytes,
        elapsed: end - start,
        engine: peer_usage.map_or(process, |p| process.since(&p)),
        engine_thread: side.usage,
        peer: peer_usage,
        syscalls: side.syscalls,
        ran: side.ran,
    })
}

/// Drops `path` from the page cache: fsync, then `posix_fadvise(DONTNEED)`.
pub fn drop_from_cache(path: &Path) -> Result<(), BenchError> {
    let f = File::open(path).map_err(io_err("open source"))?;
    f.sync_all().map_err(io_err("fsync source"))?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(|e| BenchError::Io("fadvise(DONTNEED)".into(), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_count_mismatch_is_an_error() {
        assert!(check("x", 10, 10).is_ok());
        let e = check("bytes the receiver got", 10, 9).unwrap_err();
        assert!(matches!(
            e,
            BenchError::Mismatch {
                expected: 10,
                got: 9,
                ..
            }
        ));
        assert!(e.to_string().contains("expected 10 bytes, got 9"));
    }

    #[test]
    fn rows_end_with_auto_and_include_read_write() {
        for s in Scenario::ALL {
            let rows = s.rows(4096);
            assert_eq!(rows.last(), Some(&Row::Auto));
            assert!(rows.contains(&Row::Engine(EngineKind::ReadWrite)));
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
    }
}
