//! `direct`: `O_DIRECT` on whichever side is a regular file, bypassing the page
//! cache there.
//!
//! - From a file: read the source with `O_DIRECT` into an aligned buffer, then
//!   `write(2)` it to the sink. Reads start at the offset rounded down to [`ALIGN`]
//!   and skip the head; the file's last partial block comes back as a short read.
//! - From a stream (socket, pipe) into a file: `read(2)` into the aligned buffer
//!   (one copy), then write whole blocks with `O_DIRECT` (no page-cache copy, no
//!   dirty pages for write-back to find later). The part before the sink's next
//!   block boundary and a last partial block go through the page cache, so the
//!   engine never keeps a byte it took from the source between steps.
//!
//! We only get fds, so the file is reopened through `/proc/self/fd/N` with
//! `O_DIRECT`; a file system that refuses it is reported as unsupported before
//! anything is read.

use std::cell::RefCell;
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

/// A file reopened with `O_DIRECT`.
#[derive(Debug)]
struct Reopened {
    id: (u64, u64),
    fd: OwnedFd,
}

/// `O_DIRECT` reads + `write(2)` from a regular file to any sink, or `read(2)` +
/// `O_DIRECT` writes from a stream into a regular file.
#[derive(Debug)]
pub struct Direct {
    /// Allocated at the size of the first steps (a 64 KiB file needs no 1 MiB of
    /// zeroed memory), grown up to `cap`.
    buf: AlignedBuf,
    cap: usize,
    src: Option<Reopened>,
    sink: Option<Reopened>,
    /// The sink's file system refused an `O_DIRECT` write after the engine had
    /// taken bytes from the source (they went through the page cache instead).
    sink_refused: bool,
}

thread_local! {
    /// The largest buffer a `Direct` dropped on this thread, for the next one to
    /// take: `zcopy recv` makes an engine per file, and a fresh 1 MiB buffer is
    /// 256 page faults and 1 MiB of zeroing (a quarter of the receiver's CPU for
    /// 1 MiB files, by perf). At most one buffer (up to its engine's capacity) a
    /// thread, freed when the thread ends.
    static SPARE: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

impl Drop for Direct {
    fn drop(&mut self) {
        if self.buf.len() <= ALIGN {
            return;
        }
        let buf = std::mem::replace(&mut self.buf, AlignedBuf::new(1, 1));
        SPARE.with_borrow_mut(|spare| {
            if spare.as_ref().is_none_or(|s| s.len() < buf.len()) {
                *spare = Some(buf);
            }
        });
    }
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

    /// An engine whose buffer holds up to `size` bytes (rounded up to 4096).
    pub fn with_buf(size: usize) -> Direct {
        Direct {
            buf: AlignedBuf::new(ALIGN, ALIGN),
            cap: size.max(1).next_multiple_of(ALIGN),
            src: None,
            sink: None,
            sink_refused: false,
        }
    }

    /// Makes the buffer hold `len` bytes (rounded up to a block), or the whole
    /// capacity if that is less.
    fn ensure(&mut self, len: usize) {
        let len = len.min(self.cap).next_multiple_of(ALIGN);
        if self.buf.len() < len {
            let cap = self.cap;
            let spare =
                SPARE.with_borrow_mut(|spare| spare.take_if(|s| s.len() >= len && s.len() <= cap));
            self.buf = spare.unwrap_or_else(|| AlignedBuf::new(len, ALIGN));
        }
    }

    /// The `O_DIRECT` twin of the source `fd`, opened on first use (and again if
    /// `fd` names another file).
    fn reopen(&mut self, fd: BorrowedFd<'_>, stats: &mut Stats) -> io::Result<()> {
        stats.syscalls += 1;
        let st = rustix::fs::fstat(fd)?;
        if !is_regular(&st) {
            return Err(unsupported("O_DIRECT needs a regular file source"));
        }
        reopen_as(&mut self.src, fd, &st, OFlags::RDONLY)
    }

    /// Stream → file: takes at most `max` bytes from `src` with `read(2)` and
    /// writes them at the sink file's position, whole blocks with `O_DIRECT`.
    fn write_step(
        &mut self,
        src: BorrowedFd<'_>,
        sink: BorrowedFd<'_>,
        sink_st: &rustix::fs::Stat,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.sink_refused {
            return Err(unsupported(
                "O_DIRECT write refused by the sink's file system",
            ));
        }
        // The twin writes at positions and may write where the sink may not: an
        // appending or read-only sink is left to the other engines.
        stats.syscalls += 2;
        let fl = rustix::fs::fcntl_getfl(sink)?;
        let access = fl & OFlags::ACCMODE;
        if fl.contains(OFlags::APPEND) || (access != OFlags::WRONLY && access != OFlags::RDWR) {
            return Err(unsupported(
                "O_DIRECT writes need a writable, non-appending file",
            ));
        }
        let offset = rustix::fs::tell(sink)?;
        let head = (offset % ALIGN as u64) as usize;
        if head != 0 {
            // Up to the next block boundary, through the page cache.
            // Fewer than ALIGN bytes: the buffer always holds a block.
            let want = max.min(ALIGN - head);
            let n = read_some(src, &mut self.buf[..want], stats)?;
            write_all_at(sink, &self.buf[..n], offset, stats).map_err(held)?;
            return self.wrote(sink, offset, n, stats);
        }
        reopen_as(&mut self.sink, sink, sink_st, OFlags::WRONLY)?;
        self.ensure(max);
        let want = max.min(self.buf.len());
        let mut n = read_some(src, &mut self.buf[..want], stats)?;
        // Top up to a whole block: those bytes are within `max`, so they are
        // certain to come, and waiting for fewer than ALIGN of them is short.
        while n % ALIGN != 0 && n < want {
            let end = n.next_multiple_of(ALIGN).min(want);
            stats.syscalls += 1;
            match rustix::io::read(src, &mut self.buf[n..end]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(Errno::INTR) => {}
                // Whatever else: write what we hold first; the next read reports it.
                Err(_) => break,
            }
        }
        let blocks = n - n % ALIGN;
        let mut done = 0;
        let twin = self.sink.as_ref().expect("reopened").fd.as_fd();
        while done < blocks {
            stats.syscalls += 1;
            match rustix::io::pwrite(twin, &self.buf[done..blocks], offset + done as u64) {
                Ok(0) => break,
                Ok(k) => done += k,
                Err(Errno::INTR) => {}
                Err(Errno::INVAL) => {
                    // The device wants a larger alignment than ALIGN: these bytes
                    // (already taken from the source) go through the page cache,
                    // and the next step hands over to the next engine.
                    self.sink_refused = true;
                    break;
                }
                Err(e) => {
                    self.wrote(sink, offset, done, stats)?;
                    return Err(held(e.into()));
                }
            }
        }
        write_all_at(sink, &self.buf[done..n], offset + done as u64, stats).map_err(held)?;
        self.wrote(sink, offset, n, stats)
    }

    /// `n` bytes from `offset` are in the sink file: moves its position past them.
    fn wrote(
        &mut self,
        sink: BorrowedFd<'_>,
        offset: u64,
        n: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if n > 0 {
            stats.syscalls += 1;
            rustix::fs::seek(sink, rustix::fs::SeekFrom::Start(offset + n as u64))?;
        }
        stats.bytes += n as u64;
        Ok(n)
    }
}

/// A write error once bytes were taken from the source: never one that hands over
/// to the next engine (it would go on from the stream's next byte without them).
fn held(e: io::Error) -> io::Error {
    if super::is_unsupported(&e, 0) {
        io::Error::other(format!("writing bytes already read: {e}"))
    } else {
        e
    }
}

fn is_regular(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
}

/// `slot` holds the `O_DIRECT` twin of `fd` (whose `fstat` is `st`), opened with
/// `access` now unless it already names the same file.
fn reopen_as(
    slot: &mut Option<Reopened>,
    fd: BorrowedFd<'_>,
    st: &rustix::fs::Stat,
    access: OFlags,
) -> io::Result<()> {
    let id = (st.st_dev, st.st_ino);
    if slot.as_ref().is_none_or(|r| r.id != id) {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let flags = access | OFlags::DIRECT | OFlags::CLOEXEC;
        let direct = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(d) => d,
            Err(e) => {
                return Err(unsupported(format!("can't reopen with O_DIRECT: {e}")));
            }
        };
        *slot = Some(Reopened { id, fd: direct });
    }
    Ok(())
}

/// One `read(2)` into `buf` (again after EINTR).
fn read_some(src: BorrowedFd<'_>, buf: &mut [u8], stats: &mut Stats) -> io::Result<usize> {
    loop {
        stats.syscalls += 1;
        match rustix::io::read(src, &mut *buf) {
            Err(Errno::INTR) => {}
            r => return Ok(r?),
        }
    }
}

/// All of `buf` into the file `fd` at `offset`, through the page cache.
fn write_all_at(
    fd: BorrowedFd<'_>,
    mut buf: &[u8],
    mut offset: u64,
    stats: &mut Stats,
) -> io::Result<()> {
    while !buf.is_empty() {
        stats.syscalls += 1;
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Engine for Direct {
    fn kind(&self) -> EngineKind {
        EngineKind::Direct
    }

    fn release(&mut self) {
        self.src = None;
        self.sink = None;
        self.sink_refused = false;
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
        if offset.is_none() {
            // A stream source into a file sink: O_DIRECT on the sink.
            stats.syscalls += 2;
            if !is_regular(&rustix::fs::fstat(fd)?) {
                let sink_st = rustix::fs::fstat(sink)?;
                if !is_regular(&sink_st) {
                    return Err(unsupported("O_DIRECT needs a regular file on one side"));
                }
                if max == 0 {
                    return Ok(0);
                }
                return self.write_step(fd, sink, &sink_st, max, stats);
            }
        }
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
        self.ensure(head.saturating_add(max));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_engine_on_a_thread_takes_the_last_ones_buffer() {
        let mut a = Direct::new();
        a.ensure(DEFAULT_BUF);
        let at = a.buf.as_ptr();
        drop(a);
        let mut b = Direct::new();
        b.ensure(64 << 10);
        assert_eq!(b.buf.as_ptr(), at, "a fresh buffer, not the spare");
        // One that may hold less than the spare does not take it.
        drop(b);
        let mut c = Direct::with_buf(64 << 10);
        c.ensure(64 << 10);
        assert_ne!(c.buf.as_ptr(), at);
        assert_eq!(c.buf.len(), 64 << 10);
    }
}
