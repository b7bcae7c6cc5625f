//! `read-write`: read into a reusable buffer, write it out. The baseline.

use std::io;
use std::os::fd::BorrowedFd;

use super::{Engine, EngineKind, Src};
use crate::stats::Stats;

/// Default buffer size: 128 KiB, large enough to amortise syscalls.
pub const DEFAULT_BUF: usize = 128 * 1024;

/// read(2)/pread(2) into a buffer, then write(2) it all.
#[derive(Debug)]
pub struct ReadWrite {
    buf: Vec<u8>,
    /// Bytes in `buf[start..end]` read from a stream source but not yet written.
    start: usize,
    end: usize,
}

impl ReadWrite {
    /// An engine with a `buf_size`-byte buffer.
    pub fn new(buf_size: usize) -> ReadWrite {
        ReadWrite {
            buf: vec![0; buf_size.max(1)],
            start: 0,
            end: 0,
        }
    }

    fn flush(&mut self, sink: BorrowedFd<'_>, stats: &mut Stats) -> io::Result<usize> {
        let mut done = 0;
        while self.start < self.end {
            stats.syscalls += 1;
            match rustix::io::write(sink, &self.buf[self.start..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    done += n;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) if done > 0 && e == rustix::io::Errno::AGAIN => break,
                Err(e) => return Err(e.into()),
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        stats.bytes += done as u64;
        Ok(done)
    }
}

impl Engine for ReadWrite {
    fn kind(&self) -> EngineKind {
        EngineKind::ReadWrite
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.end > self.start {
            return self.flush(sink, stats);
        }
        let want = max.min(self.buf.len());
        match src {
            // Memory needs no buffer: write it as it is.
            Src::Mem(bytes) => {
                let n = max.min(bytes.len());
                if n == 0 {
                    return Ok(0);
                }
                stats.syscalls += 1;
                let n = rustix::io::write(sink, &bytes[..n])?;
                stats.bytes += n as u64;
                Ok(n)
            }
            Src::Fd { fd, offset } => {
                if want == 0 {
                    return Ok(0);
                }
                let n = loop {
                    stats.syscalls += 1;
                    let r = match offset {
                        Some(off) => rustix::io::pread(fd, &mut self.buf[..want], off),
                        None => rustix::io::read(fd, &mut self.buf[..want]),
                    };
                    match r {
                        Err(rustix::io::Errno::INTR) => continue,
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Ok(0);
                }
                self.start = 0;
                self.end = n;
                match self.flush(sink, stats) {
                    // Nothing written: for a positional source, forget the buffer;
                    // the caller will retry at the same offset.
                    Err(e) if offset.is_some() => {
                        self.start = 0;
                        self.end = 0;
                        Err(e)
                    }
                    Ok(done) if offset.is_some() => {
                        self.start = 0;
                        self.end = 0;
                        Ok(done)
                    }
                    r => r,
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.end - self.start
    }
}
