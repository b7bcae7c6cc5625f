//! Gathered sends for framed protocols: a protocol's own bytes (frame headers)
//! and file bytes in one `sendmsg`, the file bytes read by the kernel straight
//! from a mapping of the file ([`Window`]): one copy, made at send time, so what
//! sits in the socket's queue is a copy and may go to any peer, a local one too.
//! Knows nothing of the protocol: the caller says which bytes go where.
//!
//! A file truncated under a mapping loses its pages: the kernel's copy then
//! stops with a short count or `EFAULT` (never a signal: mapped bytes are never
//! touched in user space). A truncation to the middle of a page, though, leaves
//! that page's tail zeroed, and the kernel copies the zeros: like the `mmap`
//! engine, a caller maps only a file that can't change under it (sealed, on a
//! read-only file system) or that it holds a read lease on, taken *before* it
//! checks the length it maps.
//!
//! [`send_file`] is the by-reference counterpart (`sendfile(2)`), for bytes the
//! caller may lend to its peer.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys::mem::{self, Mapping, page_size};

/// Most file bytes one [`Window`] maps.
pub const WINDOW: usize = crate::engine::Mmap::WINDOW;

/// Most pieces one [`send`] takes; more are left for the next call.
pub const MAX_PARTS: usize = mem::MAX_PARTS;

/// A read-only mapping of file bytes `[start, end)`.
#[derive(Debug)]
pub struct Window {
    map: Mapping,
    start: u64,
}

impl Window {
    /// Maps file bytes from `offset` (rounded down to a page) up to at most
    /// [`WINDOW`] bytes, and not past `file_len`, the file's length. Fails with
    /// `EINVAL` when `offset >= file_len`.
    pub fn map(file: BorrowedFd<'_>, offset: u64, file_len: u64) -> io::Result<Window> {
        if offset >= file_len {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let start = offset - offset % page_size() as u64;
        let len = (file_len - start).min(WINDOW as u64) as usize;
        let map = Mapping::map(file, start, len)?;
        Ok(Window { map, start })
    }

    /// The first file byte mapped.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The file byte after the last one mapped.
    pub fn end(&self) -> u64 {
        self.start + self.map.len() as u64
    }

    /// Whether file byte `offset` is mapped here.
    pub fn covers(&self, offset: u64) -> bool {
        offset >= self.start && offset < self.end()
    }
}

/// One piece of a gathered send.
#[derive(Clone, Copy, Debug)]
pub enum Part<'a> {
    /// Bytes in memory.
    Mem(&'a [u8]),
    /// File bytes `[offset, offset + len)`, from a window that maps them all.
    File(&'a Window, u64, usize),
}

/// Sends `parts` in order with one non-blocking `sendmsg` (`MSG_NOSIGNAL`), at
/// most [`MAX_PARTS`] of them; returns the bytes sent (`WouldBlock` when the
/// socket is full). `more`: the caller sends more at once (`MSG_MORE`: a frame
/// header waits for the payload [`send_file`] sends next). File bytes are copied by the kernel as they are sent. A page
/// lost to truncation ends the send early: a short count, then `EFAULT`.
///
/// # Panics
/// If a [`Part::File`] range is not inside its window.
pub fn send(sock: BorrowedFd<'_>, parts: &[Part<'_>], more: bool) -> io::Result<usize> {
    let mut raw = [mem::Part::Mem(&[]); MAX_PARTS];
    for (r, p) in raw.iter_mut().zip(parts) {
        *r = match *p {
            Part::Mem(b) => mem::Part::Mem(b),
            Part::File(w, offset, len) => {
                assert!(
                    offset >= w.start && offset + len as u64 <= w.end(),
                    "file range outside the window"
                );
                mem::Part::Map(&w.map, (offset - w.start) as usize, len)
            }
        };
    }
    mem::send_parts(sock, &raw[..parts.len().min(MAX_PARTS)], more)
}

/// `sendfile(sock, file, &offset, len)`: file bytes by reference (the socket's
/// queue keeps page-cache pages, not copies: only for bytes the caller may lend
/// to this peer). Returns the bytes sent (`WouldBlock` when the socket is full);
/// a file that ends before `offset + len` is an error ([`is_truncation`]) once
/// its bytes are sent.
pub fn send_file(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = offset;
    match rustix::fs::sendfile(sock, file, Some(&mut off), len)? {
        0 if len > 0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file ended at byte {offset}"),
        )),
        n => Ok(n),
    }
}

/// Whether `e` says the file lost bytes the send needed: a mapped page gone
/// (`EFAULT`) or a file that ended early.
pub fn is_truncation(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EFAULT) || e.kind() == io::ErrorKind::UnexpectedEof
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn headers_and_mapped_file_bytes_go_in_order_and_a_lost_page_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * page_size() as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let w = Window::map(f.as_fd(), 100, data.len() as u64).unwrap();
        assert_eq!((w.start(), w.end()), (0, data.len() as u64));
        let (a, mut b) = UnixStream::pair().unwrap();
        let parts = [
            Part::Mem(b"head"),
            Part::File(&w, 100, 5000),
            Part::Mem(b"mid"),
            Part::File(&w, 7000, 10),
        ];
        let n = send(a.as_fd(), &parts, false).unwrap();
        assert_eq!(n, 4 + 5000 + 3 + 10);
        let mut got = vec![0; n];
        b.read_exact(&mut got).unwrap();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[100..5100]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&data[7000..7010]);
        assert_eq!(got, want);
        // Truncated to one page: the pages after it are gone.
        f.set_len(page_size() as u64).unwrap();
        let lost = [Part::File(&w, 2 * page_size() as u64, 10)];
        let e = send(a.as_fd(), &lost, false).unwrap_err();
        assert!(is_truncation(&e), "{e}");
    }
}
