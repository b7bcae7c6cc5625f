//! `direct`: read the source with `O_DIRECT` (bypassing the page cache) into an
//! aligned buffer, then `write(2)` it to the sink.
//!
//! We only get an fd, so the source is reopened through `/proc/self/fd/N` with
//! `O_DIRECT`. Reads start at the offset rounded down to [`ALIGN`] and skip the
//! head; the file's last partial block comes back as a short read.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;
use crate::sys::mem::AlignedBuf;

/// Alignment of buffer addresses, lengths and file offsets: the largest logical
/// block size in common use, so it suits every device.
pub const ALIGN: usize = 4096;

/// Default buffer size.
pub const DEFAULT_BUF: usize = 1 << 20;

/// The source reopened with `O_DIRECT`.
#[derive(Debug)]
struct Reopened {
    id: (u64, u64),
    fd: OwnedFd,
}

/// `O_DIRECT` reads + `write(2)` from a regular file to any sink.
#[derive(Debug)]
pub struct Direct {
    buf: AlignedBuf,
    src: Option<Reopened>,
}

impl Default for Direct {
    fn default() -> Direct {
        Direct::new()
    }
}

impl Direct {
    /// An engine with a 1 MiB aligned buffer.
    pub fn new() -> Direct {
        Direct::with_buf(DEFAULT_BUF)
    }

    /// An engine whose buffer holds `size` bytes (rounded up to 4096).
    pub fn with_buf(size: usize) -> Direct {
        let size = size.max(1).next_multiple_of(ALIGN);
        Direct {
            buf: AlignedBuf::new(size, ALIGN),
            src: None,
        }
    }

    /// The `O_DIRECT` twin of `fd`, opened on first use (and again if `fd` names
    /// another file).
    fn reopen(&mut self, fd: BorrowedFd<'_>, stats: &mut Stats) -> io::Result<()> {
        stats.syscalls += 1;
        let st = rustix::fs::fstat(fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(unsupported("O_DIRECT needs a regular file source"));
        }
        let id = (st.st_dev, st.st_ino);
        if self.src.as_ref().is_none_or(|r| r.id != id) {
            let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let flags = OFlags::RDONLY | OFlags::DIRECT | OFlags::CLOEXEC;
            let direct = match rustix::fs::open(&path, flags, Mode::empty()) {
                Ok(d) => d,
                Err(e) => {
                    return Err(unsupported(format!("can't reopen with O_DIRECT: {e}")));
                }
            };
            self.src = Some(Reopened { id, fd: direct });
        }
        Ok(())
    }
}

impl Engine for Direct {
    fn kind(&self) -> EngineKind {
        EngineKind::Direct
    }

    fn release(&mut self) {
        self.src = None;
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let Src::Fd { fd, offset } = src else {
            return Err(unsupported("O_DIRECT needs a file source, not memory"));
        };
        let offset = match offset {
            Some(o) => o,
            None => {
                stats.syscalls += 1;
                rustix::fs::tell(fd)?
            }
        };
        let stream = matches!(src, Src::Fd { offset: None, .. });
        if max == 0 {
            return Ok(0);
        }
        let head = (offset % ALIGN as u64) as usize;
        let aligned = offset - head as u64;
        let want = max.min(self.buf.len() - head);
        let read_len = (head + want).next_multiple_of(ALIGN);
        self.reopen(fd, stats)?;
        let dfd = self.src.as_ref().expect("reopened").fd.as_fd();
        let got = loop {
            stats.syscalls += 1;
            match rustix::io::pread(dfd, &mut self.buf[..read_len], aligned) {
                Err(Errno::INTR) => continue,
                Err(Errno::INVAL) if stats.bytes == 0 => {
                    return Err(unsupported("O_DIRECT read refused (alignment)"));
                }
                r => break r?,
            }
        };
        if got <= head {
            return Ok(0);
        }
        let end = head + (got - head).min(want);
        let mut start = head;
        while start < end {
            stats.syscalls += 1;
            match rustix::io::write(sink, &self.buf[start..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => start += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if start > head => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Whatever did not go out is dropped: the caller's next offset re-reads it.
        let done = start - head;
        stats.bytes += done as u64;
        if stream {
            stats.syscalls += 1;
            rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(offset + done as u64))?;
        }
        Ok(done)
    }
}
