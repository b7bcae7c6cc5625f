//! `vmsplice`: user memory → pipe (→ `splice` → sink).
//!
//! - `Src::Mem`: the caller's bytes are vmspliced straight into the sink when it is
//!   a pipe, else into an engine-owned pipe that is then spliced into the sink.
//! - `Src::Fd`: a chunk is first read into an engine-owned page-aligned buffer (an
//!   honest CPU copy), then vmspliced the same way.
//!
//! **The rule.** vmsplice does not copy: the pipe — and whatever it is spliced into,
//! a socket's queues or the reader's pipe — holds references to the memory's pages
//! until the final reader has consumed the bytes. So:
//!
//! - for `Src::Mem`, the caller must leave that memory untouched (not modified, not
//!   freed and reused) until the receiver has read the bytes; returning from
//!   [`Engine::step`] does *not* mean the kernel is done with it;
//! - the engine's own buffer is refilled only after everything in it has left the
//!   engine's pipe for the sink, and before refilling, its pages are released
//!   ([`PageBuf::release`], `MADV_DONTNEED`): pages still referenced downstream keep
//!   their bytes and the refill lands in fresh pages. (Regular-file sinks copy into
//!   the page cache, so the release is skipped for them.)

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::{Engine, EngineKind, Src};
use crate::stats::Stats;
use crate::sys::vmsplice::{PageBuf, PipeWriter, WriteEnd};

/// Size of the engine's buffer and pipe: 256 KiB.
pub const CHUNK: usize = 256 * 1024;

/// vmsplice(2) into a pipe, then splice(2) to the sink when it is not a pipe.
#[derive(Debug, Default)]
pub struct Vmsplice {
    /// Engine-owned pipe (read end, write end) and its capacity, created on first use.
    pipe: Option<(OwnedFd, WriteEnd, usize)>,
    /// Buffer for fd sources, created on first use.
    buf: Option<PageBuf>,
    /// `buf[start..end]`: read from the source, not yet vmspliced anywhere.
    start: usize,
    end: usize,
    /// Bytes in the engine's pipe not yet spliced to the sink.
    in_pipe: usize,
    /// The buffer's pages were handed to the kernel since the last release.
    lent: bool,
}

impl Vmsplice {
    /// Bytes read into the engine's buffer per step.
    pub const CHUNK: usize = CHUNK;

    /// A new engine; its pipe and buffer are created on first use.
    pub fn new() -> Vmsplice {
        Vmsplice::default()
    }

    /// The engine's pipe, creating it (sized to [`CHUNK`] when the kernel lets us).
    fn pipe(&mut self) -> io::Result<&(OwnedFd, WriteEnd, usize)> {
        if self.pipe.is_none() {
            let (r, w) = crate::sys::vmsplice::pipe()?;
            let cap = rustix::pipe::fcntl_setpipe_size(&w, CHUNK)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&w))?;
            self.pipe = Some((r, w, cap));
        }
        Ok(self.pipe.as_ref().expect("pipe just created"))
    }

    /// Pushes pending bytes on towards the sink: engine pipe → sink first, then the
    /// buffer's unsent bytes. Stops when nothing is pending, or at EAGAIN after some
    /// progress (`Err(WouldBlock)` with none).
    fn flush(
        &mut self,
        sink: BorrowedFd<'_>,
        sink_pipe: Option<PipeWriter<'_>>,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let mut done = 0;
        let result = loop {
            let r = if self.in_pipe > 0 {
                let (r, _, _) = self.pipe.as_ref().expect("bytes in the pipe");
                stats.syscalls += 1;
                rustix::pipe::splice(r, None, sink, None, self.in_pipe, SpliceFlags::MOVE).inspect(
                    |&n| {
                        self.in_pipe -= n;
                        done += n;
                    },
                )
            } else if self.start < self.end {
                let buf = self.buf.as_ref().expect("bytes in the buffer");
                let bytes = &buf.as_slice()[self.start..self.end];
                stats.syscalls += 1;
                self.lent = true;
                let r = match sink_pipe {
                    Some(pw) => pw.vmsplice(bytes).inspect(|&n| done += n),
                    None => {
                        let (_, w, _) = self.pipe.as_ref().expect("pipe exists");
                        w.writer().vmsplice(bytes).inspect(|&n| self.in_pipe += n)
                    }
                };
                r.inspect(|&n| self.start += n)
            } else {
                break Ok(());
            };
            match r {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if done > 0 => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        stats.bytes += done as u64;
        result.map(|()| done)
    }
}

impl Engine for Vmsplice {
    fn kind(&self) -> EngineKind {
        EngineKind::Vmsplice
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let sink_pipe = PipeWriter::check(sink)?;
        if self.pending() > 0 {
            return self.flush(sink, sink_pipe, stats);
        }
        match src {
            Src::Mem(bytes) => {
                let want = max.min(bytes.len());
                if want == 0 {
                    return Ok(0);
                }
                if let Some(pw) = sink_pipe {
                    stats.syscalls += 1;
                    let n = pw.vmsplice(&bytes[..want])?;
                    stats.bytes += n as u64;
                    return Ok(n);
                }
                let (_, w, cap) = self.pipe()?;
                let want = want.min(*cap);
                stats.syscalls += 1;
                self.in_pipe = w.writer().vmsplice(&bytes[..want])?;
                self.flush(sink, None, stats)
            }
            Src::Fd { fd, offset } => {
                let cap = self.pipe()?.2;
                if self.buf.is_none() {
                    self.buf = Some(PageBuf::new(CHUNK.min(cap))?);
                }
                let sink_is_file = sink_pipe.is_none()
                    && FileType::from_raw_mode(rustix::fs::fstat(sink)?.st_mode)
                        == FileType::RegularFile;
                let buf = self.buf.as_mut().expect("buffer just created");
                if self.lent && !sink_is_file {
                    // The rule: pages that went downstream are let go before refilling.
                    stats.syscalls += 1;
                    buf.release()?;
                }
                self.lent = false;
                let want = max.min(buf.len());
                if want == 0 {
                    return Ok(0);
                }
                let dst = &mut buf.as_mut_slice()[..want];
                let n = loop {
                    stats.syscalls += 1;
                    let r = match offset {
                        Some(off) => rustix::io::pread(fd, &mut *dst, off),
                        None => rustix::io::read(fd, &mut *dst),
                    };
                    match r {
                        Err(Errno::INTR) => continue,
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Ok(0);
                }
                self.start = 0;
                self.end = n;
                self.flush(sink, sink_pipe, stats)
            }
        }
    }

    fn pending(&self) -> usize {
        (self.end - self.start) + self.in_pipe
    }

    fn reusable(&self) -> bool {
        self.pending() == 0
            && self
                .pipe
                .as_ref()
                .is_none_or(|(r, _, _)| super::pipe_is_empty(r.as_fd()))
    }
}
