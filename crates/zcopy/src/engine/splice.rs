//! `splice`: page references move source → pipe → sink; no CPU copy of the data.
//!
//! One side of a `splice(2)` must be a pipe. When the source or the sink is a
//! pipe already, one call does it; otherwise the engine keeps its own pipe (sized
//! with `F_SETPIPE_SZ`) between the two legs and reuses it for every step.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::{Engine, EngineKind, Src, unsupported};
use crate::fdkind::FdKind;
use crate::stats::Stats;

/// The size asked of the intermediate pipe; the default (64 KiB) is kept when the
/// kernel refuses (e.g. EPERM over `/proc/sys/fs/pipe-max-size` for non-root).
pub const PIPE_SIZE: usize = 1 << 20;

/// Most bytes asked of one `splice(2)` call when one side is a caller's pipe.
const MAX_PER_CALL: usize = 0x7fff_f000;

/// The engine's own pipe between the two legs.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    /// `pipe2(O_CLOEXEC)`, then `F_SETPIPE_SZ` to [`PIPE_SIZE`] if allowed.
    fn new() -> io::Result<Pipe> {
        let (read, write, size) = crate::pipe::sized(PIPE_SIZE)?;
        Ok(Pipe { read, write, size })
    }
}

/// What the fds of the last step were, so `fstat` runs once per fd pair (an
/// engine serves one transfer, whose fds stay open while it runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    src: RawFd,
    sink: RawFd,
    src_is_pipe: bool,
    sink_is_pipe: bool,
}

/// `splice(2)` from any fd to any fd, through a pipe when neither is one.
#[derive(Debug, Default)]
pub struct Splice {
    pipe: Option<Pipe>,
    /// Bytes in the intermediate pipe not yet delivered to the sink.
    pending: usize,
    pair: Option<Pair>,
}

impl Splice {
    /// A new engine; its pipe is made on first use.
    pub fn new() -> Splice {
        Splice::default()
    }

    /// The intermediate pipe's capacity, once it exists.
    pub fn pipe_size(&self) -> Option<usize> {
        self.pipe.as_ref().map(|p| p.size)
    }

    fn pair(
        &mut self,
        src: BorrowedFd<'_>,
        sink: BorrowedFd<'_>,
        stats: &mut Stats,
    ) -> io::Result<Pair> {
        if let Some(p) = self.pair
            && p.src == src.as_raw_fd()
            && p.sink == sink.as_raw_fd()
        {
            return Ok(p);
        }
        stats.syscalls += 2;
        let p = Pair {
            src: src.as_raw_fd(),
            sink: sink.as_raw_fd(),
            src_is_pipe: FdKind::of(src)? == FdKind::Pipe,
            sink_is_pipe: FdKind::of(sink)? == FdKind::Pipe,
        };
        self.pair = Some(p);
        Ok(p)
    }

    /// Source straight to sink: one of them is a pipe.
    fn direct(
        src: BorrowedFd<'_>,
        mut offset: Option<u64>,
        sink: BorrowedFd<'_>,
        src_is_stream: bool,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let mut done = 0usize;
        while done < max {
            let want = (max - done).min(MAX_PER_CALL);
            let mut flags = SpliceFlags::MOVE;
            if done + want < max {
                flags |= SpliceFlags::MORE;
            }
            stats.syscalls += 1;
            match rustix::pipe::splice(src, offset.as_mut(), sink, None, want, flags) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    stats.bytes += n as u64;
                    // A stream gave what it had: don't wait for more while holding
                    // a result.
                    if src_is_stream && n < want {
                        break;
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if done > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Intermediate pipe → sink, for the bytes already in it. Returns what left.
    fn drain(&mut self, sink: BorrowedFd<'_>, more: bool, stats: &mut Stats) -> io::Result<usize> {
        let pipe = self.pipe.as_ref().expect("pipe holds pending bytes");
        let mut done = 0usize;
        while self.pending > 0 {
            let mut flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
            if more {
                flags |= SpliceFlags::MORE;
            }
            stats.syscalls += 1;
            match rustix::pipe::splice(&pipe.read, None, sink, None, self.pending, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending -= n;
                    done += n;
                    stats.bytes += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if done > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Source → intermediate pipe → sink.
    fn through_pipe(
        &mut self,
        src: BorrowedFd<'_>,
        mut offset: Option<u64>,
        sink: BorrowedFd<'_>,
        src_is_stream: bool,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.pending > 0 {
            // Bytes already taken from the source go first; the caller's offset
            // points at them, so nothing new is read in this step.
            return self.drain(sink, false, stats);
        }
        if self.pipe.is_none() {
            stats.syscalls += 2;
            self.pipe = Some(Pipe::new()?);
        }
        let size = self.pipe.as_ref().map_or(0, |p| p.size);
        // The pipe is empty when we fill it, so that leg never waits on the pipe;
        // a socket source keeps its own blocking mode.
        let fill_flags = SpliceFlags::MOVE;
        let mut done = 0usize;
        while done < max {
            let want = (max - done).min(size);
            stats.syscalls += 1;
            let pipe_w = self.pipe.as_ref().expect("pipe made").write.as_fd();
            let n = match rustix::pipe::splice(src, offset.as_mut(), pipe_w, None, want, fill_flags)
            {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) if done > 0 => break,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            self.pending = n;
            let more = done + n < max && !(src_is_stream && n < want);
            match self.drain(sink, more, stats) {
                Ok(d) => done += d,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => break,
                Err(e) => return Err(e),
            }
            if self.pending > 0 || (src_is_stream && n < want) {
                break;
            }
        }
        Ok(done)
    }
}

impl Engine for Splice {
    fn kind(&self) -> EngineKind {
        EngineKind::Splice
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let Src::Fd { fd, offset } = src else {
            return Err(unsupported(
                "splice needs an fd source (vmsplice takes memory)",
            ));
        };
        if max == 0 {
            return Ok(0);
        }
        let pair = self.pair(fd, sink, stats)?;
        let src_is_stream = offset.is_none();
        if self.pending == 0 && (pair.src_is_pipe || pair.sink_is_pipe) {
            Self::direct(fd, offset, sink, src_is_stream, max, stats)
        } else {
            self.through_pipe(fd, offset, sink, src_is_stream, max, stats)
        }
    }

    fn pending(&self) -> usize {
        self.pending
    }

    /// Nothing pending and the pipe really empty (FIONREAD), whatever the count says.
    fn reusable(&self) -> bool {
        self.pending == 0
            && self
                .pipe
                .as_ref()
                .is_none_or(|p| super::pipe_is_empty(p.read.as_fd()))
    }

    /// Forgets the fds of the last pair: a number may name another file next time.
    fn release(&mut self) {
        self.pair = None;
    }
}
