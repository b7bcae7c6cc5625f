//! `vmsplice(2)` from user memory into a pipe, and page-aligned buffers whose pages
//! can be handed to the kernel and then let go of.
//!
//! Without `SPLICE_F_GIFT` (and in practice with it too) `vmsplice` does not copy:
//! the pipe holds references to the user pages, and so does whatever the pipe is
//! later spliced into (a socket's send or receive queue, another pipe). Writing to
//! that memory before the reader has consumed the bytes changes what it reads.
//! [`PageBuf::release`] is the way out for an engine's own buffer: it drops the
//! mapping's pages (the kernel keeps the ones it still references, unchanged) and
//! the next write faults in fresh ones.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FileType, OFlags};
use rustix::mm::{Advice, MapFlags, ProtFlags};
use rustix::pipe::{IoSliceRaw, SpliceFlags};

/// The write side of a pipe, checked to be one (so `vmsplice` reads from our
/// memory and never writes into it).
#[derive(Debug, Clone, Copy)]
pub struct PipeWriter<'a> {
    fd: BorrowedFd<'a>,
    nonblocking: bool,
}

impl<'a> PipeWriter<'a> {
    /// `fstat(fd)` + `fcntl(fd, F_GETFL)`: `Ok(Some)` for a pipe or FIFO open for
    /// writing, `Ok(None)` for anything else (including a pipe's read end) —
    /// <https://man7.org/linux/man-pages/man2/fstat.2.html>,
    /// <https://man7.org/linux/man-pages/man2/fcntl.2.html>.
    pub fn check(fd: BorrowedFd<'a>) -> io::Result<Option<PipeWriter<'a>>> {
        let st = rustix::fs::fstat(fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
            return Ok(None);
        }
        let fl = rustix::fs::fcntl_getfl(fd)?;
        let mode = fl & OFlags::RWMODE;
        if mode != OFlags::WRONLY && mode != OFlags::RDWR {
            return Ok(None);
        }
        Ok(Some(PipeWriter {
            fd,
            nonblocking: fl.contains(OFlags::NONBLOCK),
        }))
    }

    /// `vmsplice(fd, {buf}, 1, flags)`: puts references to the pages holding `buf`
    /// into the pipe and returns how many bytes it took (maybe fewer than
    /// `buf.len()` when the pipe fills up) —
    /// <https://man7.org/linux/man-pages/man2/vmsplice.2.html>.
    ///
    /// The kernel reads the bytes when the pipe's reader consumes them, not now:
    /// leave the memory untouched until then (see the module docs).
    /// `SPLICE_F_NONBLOCK` is added when the pipe is in non-blocking mode.
    pub fn vmsplice(&self, buf: &[u8]) -> rustix::io::Result<usize> {
        let flags = if self.nonblocking {
            SpliceFlags::NONBLOCK
        } else {
            SpliceFlags::empty()
        };
        let iov = [IoSliceRaw::from_slice(buf)];
        loop {
            // SAFETY: `self.fd` is a pipe open for writing (checked in `check`; a
            // `WriteEnd` is one by construction), so vmsplice moves data *into* the pipe and only reads
            // `buf`, which is valid for reads for the duration of the call. The kernel
            // keeps page references, not pointers into our address space, so nothing
            // it does later can touch Rust-visible memory unsoundly.
            let r = unsafe { rustix::pipe::vmsplice(self.fd, &iov, flags) };
            match r {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r,
            }
        }
    }
}

/// The write end of a pipe made by [`pipe`]: a write end by construction, so its
/// [`PipeWriter`] needs no check.
#[derive(Debug)]
pub struct WriteEnd(OwnedFd);

impl AsFd for WriteEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl WriteEnd {
    /// The pipe's writer (blocking, as [`pipe`] made it).
    pub fn writer(&self) -> PipeWriter<'_> {
        PipeWriter {
            fd: self.0.as_fd(),
            nonblocking: false,
        }
    }
}

/// `pipe2(O_CLOEXEC)` — <https://man7.org/linux/man-pages/man2/pipe.2.html>: the read
/// end and the write end.
pub fn pipe() -> io::Result<(OwnedFd, WriteEnd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, WriteEnd(w)))
}

/// A private anonymous mapping, page-aligned, whose pages can be released to the
/// kernel after they were vmspliced away.
#[derive(Debug)]
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PageBuf owns its mapping exclusively, like a Box<[u8]>.
unsafe impl Send for PageBuf {}

impl PageBuf {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)` —
    /// <https://man7.org/linux/man-pages/man2/mmap.2.html>. `len` is rounded up to
    /// whole pages.
    pub fn new(len: usize) -> io::Result<PageBuf> {
        let page = rustix::param::page_size();
        let len = len.max(1).div_ceil(page) * page;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing
        // aliases nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        Ok(PageBuf { ptr, len })
    }

    /// Size in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, owned by self, alive while self is.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// `madvise(ptr, len, MADV_DONTNEED)` —
    /// <https://man7.org/linux/man-pages/man2/madvise.2.html>: drops this mapping's
    /// pages. Pages a pipe or socket still references stay alive with their bytes;
    /// the next write here faults in fresh zeroed pages, so refilling the buffer can
    /// no longer change bytes in flight.
    pub fn release(&mut self) -> io::Result<()> {
        // SAFETY: the range is exactly our private anonymous mapping; `&mut self`
        // means no Rust reference into it is alive. DONTNEED on private anonymous
        // memory only makes it read as zeros afterwards.
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().cast(), self.len, Advice::LinuxDontNeed)? };
        Ok(())
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no references remain
        // (we are in drop). Pages the kernel still references outlive the mapping.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No way to a `PipeWriter` accepts a pipe's read end (the unchecked `own` is
    /// gone): vmsplice on a read end would move bytes *out of* the pipe into memory
    /// lent only for reading.
    #[test]
    fn no_pipe_writer_for_a_read_end() {
        let (r, w) = pipe().unwrap();
        rustix::io::write(&w, b"from the pipe").unwrap();
        assert!(PipeWriter::check(r.as_fd()).unwrap().is_none());
        let pw = PipeWriter::check(w.as_fd())
            .unwrap()
            .expect("the write end");
        assert_eq!(pw.vmsplice(b"x").unwrap(), 1);
        assert_eq!(w.writer().vmsplice(b"y").unwrap(), 1);
    }
}
