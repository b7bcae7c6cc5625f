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

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::OnceLock;
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

/// send(MSG_ZEROCOPY) + recvmsg(MSG_ERRQUEUE).
#[derive(Debug, Default)]
pub struct MsgZerocopy {
    /// The socket SO_ZEROCOPY was turned on for.
    enabled_on: Option<RawFd>,
    /// Buffer for fd sources, allocated on first use.
    buf: Vec<u8>,
    /// `buf[start..end]`: read from a stream source, not yet sent.
    start: usize,
    end: usize,
    /// Zero-copy sends whose completion has not arrived.
    outstanding: u64,
}

impl MsgZerocopy {
    /// A new engine.
    pub fn new() -> MsgZerocopy {
        MsgZerocopy::default()
    }

    /// Turns on SO_ZEROCOPY for a TCP sink (once), or says why not.
    fn prepare(&mut self, sink: BorrowedFd<'_>) -> io::Result<()> {
        if self.enabled_on == Some(sink.as_raw_fd()) {
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
        self.enabled_on = Some(sink.as_raw_fd());
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
        let deadline = Instant::now() + COMPLETION_TIMEOUT;
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
        self.prepare(sink)?;
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.step_with(src, sink, max, &mut buf, stats);
        self.buf = buf;
        result
    }

    fn pending(&self) -> usize {
        self.end - self.start
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
