//! `mmap`: map the source file and `write(2)` straight from the mapping (one CPU
//! copy, into the sink's buffers).
//!
//! The mapping is a window of up to [`WINDOW`] bytes, kept across steps while
//! they stay inside it. Mapped bytes are never touched in user space (see
//! [`crate::sys::mem`]): if another process truncates the file under us, the
//! kernel's copy fails with a short count or `EFAULT`, which this engine turns
//! into an error. The read lease that prevents this in the first place is taken
//! by the caller ([`crate::Transfer::run`] or the server), not here, so that every
//! engine shares one lease per source.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;
use crate::sys::mem::{Mapping, page_size};

/// Largest window of the file mapped at once.
pub const WINDOW: usize = 32 << 20;

/// The current window: file bytes `[start, start + map.len())` of inode `id`.
#[derive(Debug)]
struct Window {
    id: (u64, u64),
    start: u64,
    map: Mapping,
}

/// `mmap(2)` + `write(2)` from a regular file to any sink.
#[derive(Debug, Default)]
pub struct Mmap {
    window: Option<Window>,
    /// Set when a write stopped at a page lost to truncation after delivering
    /// some bytes: the next step reports the error (even to a caller that does
    /// not know the length and would take a short file for a normal end).
    truncated_at: Option<u64>,
}

impl Mmap {
    /// Most bytes of the file mapped at once.
    pub const WINDOW: usize = WINDOW;

    /// A new engine (nothing mapped yet).
    pub fn new() -> Mmap {
        Mmap::default()
    }

    /// A window holding file byte `offset`, reusing the current one if it does.
    fn window(
        &mut self,
        fd: BorrowedFd<'_>,
        id: (u64, u64),
        offset: u64,
        file_len: u64,
        stats: &mut Stats,
    ) -> io::Result<&Window> {
        let reuse = self.window.as_ref().is_some_and(|w| {
            w.id == id && offset >= w.start && offset < w.start + w.map.len() as u64
        });
        if !reuse {
            self.window = None; // unmap the old window before mapping the next
            let start = offset - offset % page_size() as u64;
            let len = (file_len - start).min(WINDOW as u64) as usize;
            stats.syscalls += 1;
            let map = Mapping::map(fd, start, len)?;
            self.window = Some(Window { id, start, map });
        }
        Ok(self.window.as_ref().expect("window mapped"))
    }
}

/// The error for a source that lost bytes under the mapping.
fn truncated(at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("source truncated under the mapping (write failed at byte {at})"),
    )
}

impl Engine for Mmap {
    fn release(&mut self) {
        self.window = None;
        self.truncated_at = None;
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Mmap
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let Src::Fd { fd, offset } = src else {
            return Err(unsupported("mmap needs a file source, not memory"));
        };
        if let Some(at) = self.truncated_at {
            return Err(truncated(at));
        }
        // One fstat per step: is it a file, how long is it now, which inode.
        stats.syscalls += 1;
        let st = rustix::fs::fstat(fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(unsupported("mmap needs a regular file source"));
        }
        let file_len = st.st_size as u64;
        let id = (st.st_dev, st.st_ino);
        let offset = match offset {
            Some(o) => o,
            None => {
                stats.syscalls += 1;
                rustix::fs::tell(fd)?
            }
        };
        if offset >= file_len || max == 0 {
            return Ok(0);
        }
        let w = self.window(fd, id, offset, file_len, stats)?;
        let in_map = (offset - w.start) as usize;
        let len = max
            .min(w.map.len() - in_map)
            .min((file_len - offset) as usize);
        let mut done = 0usize;
        while done < len {
            stats.syscalls += 1;
            match w.map.write_to(sink, in_map + done, len - done) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) => match Errno::from_io_error(&e) {
                    Some(Errno::INTR) => {}
                    Some(Errno::AGAIN) if done > 0 => break,
                    // What was written was copied before the page went away, so
                    // it is the file's bytes: report it, and the error next step.
                    Some(Errno::FAULT) if done > 0 => {
                        self.truncated_at = Some(offset + done as u64);
                        break;
                    }
                    Some(Errno::FAULT) => return Err(truncated(offset)),
                    _ => return Err(e),
                },
            }
        }
        stats.bytes += done as u64;
        if src_is_stream(src) {
            stats.syscalls += 1;
            rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(offset + done as u64))?;
        }
        Ok(done)
    }
}

fn src_is_stream(src: Src<'_>) -> bool {
    matches!(src, Src::Fd { offset: None, .. })
}
