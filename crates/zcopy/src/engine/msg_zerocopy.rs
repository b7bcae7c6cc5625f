//! `msg-zerocopy`: `send(MSG_ZEROCOPY)` to a TCP socket, completions from the
//! socket's error queue.
//!
//! `Src::Mem` is sent straight from the caller's memory; `Src::Fd` is first read
//! into an engine-owned buffer (an honest CPU copy). Either way, every zero-copy
//! send of a step has completed (its notification read off the error queue) before
//! the step returns, so the caller's memory is its own again and the engine's buffer
//! can be refilled. Sends under [`MIN_ZEROCOPY`] bytes go out with a plain `send`:
//! pinning and notifying cost more than copying them.
//!
//! The kernel reports for each send whether it copied after all
//! (`SO_EE_CODE_ZEROCOPY_COPIED`), which it always does on loopback; those are
//! counted in [`Stats::zerocopy_copied`], the others in [`Stats::zerocopy_done`].
//!
//! Because of that wait a step blocks until the kernel is done with the data —
//! it has left the machine or, on loopback, reached the peer's socket — even on a
//! non-blocking sink; if the peer's receive window is closed that means until the
//! peer reads (bounded by [`COMPLETION_TIMEOUT`]).
//!
//! Completions are counted, not matched by id, so the engine assumes no other
//! zero-copy send on the socket is still outstanding when a step starts (true when
//! only this engine sends zero-copy on it: each step waits for its own).
//!
//! When completions are still missing after [`COMPLETION_TIMEOUT`] (or reading them
//! fails), the socket may still reference the memory: the engine is poisoned (every
//! later step fails, [`Engine::reusable`] is false) and its own buffer is abandoned —
//! leaked, never refilled or freed, since the kernel may still send from it. At most
//! [`ABANDON_LIMIT`] bytes are abandoned per process; past that, the engine refuses
//! fd sources ("unsupported", so a transfer falls back to the next engine). For
//! `Src::Mem` the same holds for the caller's memory: after a `TimedOut` error it
//! must not be reused or freed while the socket is open.
//!
//! `SO_ZEROCOPY` is turned on per socket, recognised by its inode (`fstat`), not by
//! its descriptor number, which a new socket may get once the old one is closed.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::SendFlags;

use super::{Engine, EngineKind, Src, unsupported};
use crate::fdkind::FdKind;
use crate::stats::Stats;
use crate::sys::zerocopy;

/// Sends smaller than this go out with a plain `send` (copying is cheaper).
pub const MIN_ZEROCOPY: usize = 10 * 1024;
/// Largest single `send` call.
pub const SEND_MAX: usize = 1 << 20;
/// Most bytes of caller memory one step sends (and keeps pinned) before waiting.
pub const MEM_STEP: usize = 4 << 20;
/// Size of the engine-owned buffer for fd sources.
pub const BUF: usize = 1 << 20;
/// How long a step waits for completions before giving up.
pub const COMPLETION_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of engine buffers abandoned (leaked because the kernel may still send
/// from them) per process before the engine refuses fd sources: 64 MiB.
pub const ABANDON_LIMIT: usize = 64 << 20;

/// Bytes of engine buffers abandoned so far in this process.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of engine buffers abandoned so far in this process (see [`ABANDON_LIMIT`]).
pub fn abandoned_bytes() -> usize {
    ABANDONED.load(Ordering::Relaxed)
}

/// A socket, as the kernel knows it: device and inode of its sockfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SockId {
    dev: u64,
    ino: u64,
}

impl SockId {
    fn of(fd: BorrowedFd<'_>) -> io::Result<SockId> {
        let st = rustix::fs::fstat(fd)?;
        Ok(SockId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// send(MSG_ZEROCOPY) + recvmsg(MSG_ERRQUEUE).
#[derive(Debug, Default)]
pub struct MsgZerocopy {
    /// The socket SO_ZEROCOPY was turned on for.
    enabled_on: Option<SockId>,
    /// Completions went missing: the kernel may still read memory this engine
    /// handed it; the engine does nothing more.
    poisoned: bool,
    /// Buffer for fd sources, allocated on first use.
    buf: Vec<u8>,
    /// `buf[start..end]`: read from a stream source, not yet sent.
    start: usize,
    end: usize,
    /// Zero-copy sends whose completion has not arrived.
    outstanding: u64,
    /// How long a step waits for completions (`None`: [`COMPLETION_TIMEOUT`]).
    timeout: Option<Duration>,
}

impl MsgZerocopy {
    /// Sends shorter than this are plain copies: pinning pages costs more.
    pub const MIN_ZEROCOPY: usize = MIN_ZEROCOPY;

    /// Bytes of engine buffers abandoned so far in this process (see
    /// the limit, 64 MiB, past which the engine refuses fd sources).
    pub fn abandoned_bytes() -> usize {
        abandoned_bytes()
    }

    /// A new engine.
    pub fn new() -> MsgZerocopy {
        MsgZerocopy::default()
    }

    /// An engine that waits at most `timeout` for completions (instead of
    /// 30 s); for tests of what happens when they go missing.
    pub fn with_timeout(timeout: Duration) -> MsgZerocopy {
        MsgZerocopy {
            timeout: Some(timeout),
            ..MsgZerocopy::default()
        }
    }

    /// Completions went missing: the engine has abandoned its buffer and does no
    /// more work.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Turns on SO_ZEROCOPY for a TCP sink (once), or says why not.
    fn prepare(&mut self, sink: BorrowedFd<'_>, stats: &mut Stats) -> io::Result<()> {
        stats.syscalls += 1;
        let id = SockId::of(sink)?;
        if self.enabled_on == Some(id) {
            return Ok(());
        }
        let kind = FdKind::of(sink)?;
        if kind != FdKind::TcpSocket {
            return Err(unsupported(format!(
                "MSG_ZEROCOPY needs a TCP sink, not {}",
                kind.name()
            )));
        }
        zerocopy::enable(sink).map_err(|e| unsupported(format!("SO_ZEROCOPY: {e}")))?;
        self.enabled_on = Some(id);
        // Stale notifications of an earlier user of the socket would skew the count.
        while zerocopy::read_completion(sink)?.is_some() {}
        self.outstanding = 0;
        Ok(())
    }

    /// Sends `bytes` (zero-copy where worth it), then waits for every completion.
    /// Returns the bytes sent; an error only if none were.
    fn send_all(
        &mut self,
        sink: BorrowedFd<'_>,
        bytes: &[u8],
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let mut done = 0;
        let mut failed = None;
        while done < bytes.len() {
            let piece = &bytes[done..bytes.len().min(done + SEND_MAX)];
            let zc = piece.len() >= MIN_ZEROCOPY;
            stats.syscalls += 1;
            let r = if zc {
                zerocopy::send(sink, piece)
            } else {
                plain_send(sink, piece)
            };
            match r {
                Ok(n) => {
                    if zc && n > 0 {
                        self.outstanding += 1;
                    }
                    done += n;
                }
                Err(e) if zc && e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Out of optmem or lockable pages: let the kernel finish what it
                    // has, then retry; with nothing outstanding, copy this piece.
                    if self.outstanding > 0 {
                        if let Err(e) = self.wait(sink, stats) {
                            failed = Some(e);
                            break;
                        }
                    } else {
                        stats.syscalls += 1;
                        match plain_send(sink, piece) {
                            Ok(n) => done += n,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Whatever happened, the memory is not handed back before the kernel is done.
        let waited = self.wait(sink, stats);
        stats.bytes += done as u64;
        match (failed, waited) {
            (_, Err(e)) => Err(e),
            (Some(e), Ok(())) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Reads completions until none of our sends is outstanding.
    fn wait(&mut self, sink: BorrowedFd<'_>, stats: &mut Stats) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout.unwrap_or(COMPLETION_TIMEOUT);
        while self.outstanding > 0 {
            stats.syscalls += 1;
            if let Some(c) = zerocopy::read_completion(sink)? {
                let n = c.count();
                if c.copied {
                    stats.zerocopy_copied += n;
                } else {
                    stats.zerocopy_done += n;
                }
                self.outstanding = self.outstanding.saturating_sub(n);
                continue;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} MSG_ZEROCOPY completions still missing",
                        self.outstanding
                    ),
                ));
            }
            // The error queue being non-empty shows as POLLERR.
            let mut fds = [PollFd::new(&sink, PollFlags::empty())];
            let timeout = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            stats.syscalls += 1;
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            if fds[0].revents().contains(PollFlags::HUP)
                && !fds[0].revents().contains(PollFlags::ERR)
            {
                // A hung-up socket polls ready at once; don't spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

/// `send(fd, buf, MSG_NOSIGNAL)`, retried on EINTR.
fn plain_send(sink: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(sink, buf, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

impl Engine for MsgZerocopy {
    fn kind(&self) -> EngineKind {
        EngineKind::MsgZerocopy
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.poisoned {
            return Err(io::Error::other(
                "MSG_ZEROCOPY completions went missing earlier: engine retired",
            ));
        }
        self.prepare(sink, stats)?;
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.step_with(src, sink, max, &mut buf, stats);
        if self.outstanding > 0 {
            // The socket may still send from `buf` (and from the caller's memory):
            // never refill or free it.
            self.poisoned = true;
            self.start = 0;
            self.end = 0;
            abandon(buf);
        } else {
            self.buf = buf;
        }
        result
    }

    fn pending(&self) -> usize {
        self.end - self.start
    }

    fn reusable(&self) -> bool {
        !self.poisoned && self.outstanding == 0 && self.pending() == 0
    }

    /// Forgets the socket SO_ZEROCOPY was turned on for.
    fn release(&mut self) {
        self.enabled_on = None;
    }
}

/// Leaks `buf`, which the kernel may still read, counting it against
/// [`ABANDON_LIMIT`].
fn abandon(buf: Vec<u8>) {
    if buf.capacity() > 0 {
        ABANDONED.fetch_add(buf.capacity(), Ordering::Relaxed);
        tracing::warn!(
            bytes = buf.capacity(),
            "MSG_ZEROCOPY completions missing: the engine's buffer is abandoned, not reused"
        );
        std::mem::forget(buf);
    }
}

impl MsgZerocopy {
    fn step_with(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        buf: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.start < self.end {
            let n = self.send_all(sink, &buf[self.start..self.end], stats)?;
            self.start += n;
            return Ok(n);
        }
        self.start = 0;
        self.end = 0;
        match src {
            Src::Mem(bytes) => {
                let want = max.min(bytes.len()).min(MEM_STEP);
                if want == 0 {
                    return Ok(0);
                }
                self.send_all(sink, &bytes[..want], stats)
            }
            Src::Fd { fd, offset } => {
                if buf.is_empty() {
                    if ABANDONED.load(Ordering::Relaxed) >= ABANDON_LIMIT {
                        return Err(unsupported(format!(
                            "{} MiB of MSG_ZEROCOPY buffers abandoned to stalled sockets",
                            ABANDON_LIMIT >> 20
                        )));
                    }
                    buf.resize(BUF, 0);
                }
                let want = max.min(buf.len());
                if want == 0 {
                    return Ok(0);
                }
                let n = loop {
                    stats.syscalls += 1;
                    let r = match offset {
                        Some(off) => rustix::io::pread(fd, &mut buf[..want], off),
                        None => rustix::io::read(fd, &mut buf[..want]),
                    };
                    match r {
                        Err(Errno::INTR) => continue,
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Ok(0);
                }
                let sent = match self.send_all(sink, &buf[..n], stats) {
                    Ok(sent) => sent,
                    // Positional: forget the chunk, the caller retries at the offset.
                    Err(e) if offset.is_some() => return Err(e),
                    Err(e) => {
                        self.start = 0;
                        self.end = n;
                        return Err(e);
                    }
                };
                if offset.is_none() && sent < n {
                    self.start = sent;
                    self.end = n;
                }
                Ok(sent)
            }
        }
    }
}

/// Whether MSG_ZEROCOPY can run here: a TCP socket accepts `SO_ZEROCOPY`.
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let sock = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .map_err(|e| format!("socket: {e}"))?;
            zerocopy::enable(&sock).map_err(|e| format!("setsockopt(SO_ZEROCOPY): {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsFd, OwnedFd};

    use super::*;

    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn reader(mut s: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        })
    }

    /// A reused engine on a new socket that got the old one's descriptor number
    /// turns SO_ZEROCOPY on for it (it was remembered by number: every step then
    /// waited 30 s for completions that never come).
    #[test]
    fn so_zerocopy_follows_the_socket_not_its_number() {
        if probe().is_err() {
            return;
        }
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut engine = MsgZerocopy::with_timeout(Duration::from_secs(5));
        let mut stats = Stats::default();
        let (a1, b1) = tcp_pair();
        let got1 = reader(b1);
        let mut sink = OwnedFd::from(a1);
        let n = engine.step(Src::Mem(&data), sink.as_fd(), data.len(), &mut stats);
        assert_eq!(n.unwrap(), data.len());
        // A new socket under the same number.
        let (a2, b2) = tcp_pair();
        let got2 = reader(b2);
        rustix::io::dup2(&a2, &mut sink).unwrap();
        drop(a2);
        assert!(!zerocopy::is_enabled(&sink).unwrap());
        let n = engine.step(Src::Mem(&data), sink.as_fd(), data.len(), &mut stats);
        assert_eq!(n.unwrap(), data.len(), "the step on the new socket");
        assert!(
            zerocopy::is_enabled(&sink).unwrap(),
            "SO_ZEROCOPY on the new socket"
        );
        assert!(engine.reusable());
        drop(sink);
        assert_eq!(got1.join().unwrap(), data);
        assert_eq!(got2.join().unwrap(), data);
    }

    /// Completions that don't arrive in time poison the engine: its buffer, which
    /// the socket may still send from, is abandoned (never refilled), and the engine
    /// is not reusable.
    #[test]
    fn missing_completions_poison_the_engine_and_abandon_its_buffer() {
        if probe().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..4 << 20).map(|i| (i % 253) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // A receiver with a small window that doesn't read yet: sent bytes wait in
        // our send queue, their completions with them.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(&l, 4096).unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        let before = abandoned_bytes();
        let mut engine = MsgZerocopy::with_timeout(Duration::from_millis(300));
        let mut stats = Stats::default();
        let src = Src::Fd {
            fd: file.as_fd(),
            offset: Some(0),
        };
        let r = engine.step(src, a.as_fd(), 4 << 20, &mut stats);
        let e = r.expect_err("completions are missing");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(engine.poisoned());
        assert!(!engine.reusable());
        assert!(abandoned_bytes() >= before + BUF);
        assert!(engine.buf.is_empty(), "the buffer is not kept for a refill");
        // Nothing more is done with it.
        let src = Src::Fd {
            fd: file.as_fd(),
            offset: Some(0),
        };
        assert!(engine.step(src, a.as_fd(), 4 << 20, &mut stats).is_err());
        // The bytes the socket took still arrive intact: the first 8 KiB of them
        // (through the small window they come a segment per delayed ACK, and the
        // socket may have taken megabytes; reading all took 106 s once).
        drop(a);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < 8 << 10 {
            match b.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!got.is_empty(), "the socket took bytes before the timeout");
        assert_eq!(got[..], data[..got.len()]);
    }
}
