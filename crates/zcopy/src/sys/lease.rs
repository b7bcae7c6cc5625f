//! File read leases: `fcntl(F_SETLEASE, F_RDLCK)`.
//!
//! A read lease makes any other process that opens the file for writing or truncates
//! it wait (up to `/proc/sys/fs/lease-break-time`) until the holder lets go. The break
//! is signalled with SIGURG (set with `F_SETSIG`), whose default action is to ignore
//! it, so no handler is needed: [`ReadLease::breaking`] polls `F_GETLEASE`, which
//! reports `F_UNLCK` as soon as a break is pending.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `F_SETSIG` from `<fcntl.h>` (Linux), which the libc crate does not export.
const F_SETSIG: libc::c_int = 10;

/// A read lease held on an open file; released on drop.
#[derive(Debug)]
pub struct ReadLease<'a> {
    fd: BorrowedFd<'a>,
}

fn fcntl(fd: BorrowedFd<'_>, cmd: libc::c_int, arg: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: `fd` is a live borrowed fd; F_SETLEASE/F_GETLEASE/F_SETSIG take an int
    // argument and touch no memory of ours.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl<'a> ReadLease<'a> {
    /// `fcntl(fd, F_SETSIG, SIGURG)` then `fcntl(fd, F_SETLEASE, F_RDLCK)` —
    /// <https://man7.org/linux/man-pages/man2/fcntl.2.html>. Fails with EAGAIN when
    /// the file is open for writing anywhere, EACCES when we neither own it nor have
    /// CAP_LEASE.
    pub fn take<Fd: AsFd + ?Sized>(fd: &'a Fd) -> io::Result<ReadLease<'a>> {
        let fd = fd.as_fd();
        fcntl(fd, F_SETSIG, libc::SIGURG)?;
        fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK)?;
        Ok(ReadLease { fd })
    }

    /// True once another process has asked to write or truncate the file: stop
    /// sending, let queued bytes leave, then drop the lease.
    pub fn breaking(&self) -> bool {
        !matches!(fcntl(self.fd, libc::F_GETLEASE, 0), Ok(libc::F_RDLCK))
    }
}

impl Drop for ReadLease<'_> {
    fn drop(&mut self) {
        let _ = fcntl(self.fd, libc::F_SETLEASE, libc::F_UNLCK);
    }
}

/// Takes a read lease on `fd` that lasts until the open file is closed (for callers
/// that keep the file and the lease in one struct). See [`ReadLease::take`].
pub fn take_until_close<Fd: AsFd + ?Sized>(fd: &Fd) -> io::Result<()> {
    std::mem::forget(ReadLease::take(fd)?);
    Ok(())
}

/// True once another process has asked to write or truncate a file whose lease was
/// taken with [`take_until_close`] (or if `fd` holds no read lease).
pub fn breaking<Fd: AsFd + ?Sized>(fd: &Fd) -> bool {
    !matches!(fcntl(fd.as_fd(), libc::F_GETLEASE, 0), Ok(libc::F_RDLCK))
}
