//! `MSG_ZEROCOPY`: `SO_ZEROCOPY`, `send(MSG_ZEROCOPY)` and completion notifications
//! from the socket error queue — <https://docs.kernel.org/networking/msg_zerocopy.html>.
//!
//! The kernel pins the pages of a zero-copy send and reads them when the data
//! leaves (or, on loopback, when it reaches the receiving socket, where it copies
//! and says so). Each successful send gets the next 32-bit id of a per-socket
//! counter; completions arrive as ranges of ids on the error queue. Until a send's
//! id has completed, its memory must stay untouched.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `SO_ZEROCOPY` from `<asm-generic/socket.h>`.
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` from `<linux/errqueue.h>`.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` from `<linux/errqueue.h>`.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// `setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &1)` —
/// <https://man7.org/linux/man-pages/man7/socket.7.html>. Fails with EOPNOTSUPP
/// (or ENOPROTOOPT on old kernels) where the socket type can't do zero-copy sends.
pub fn enable<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its exact size; the kernel only
    // reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt(fd, SOL_SOCKET, SO_ZEROCOPY)`: whether zero-copy sends are on for
/// this socket.
#[cfg(test)]
pub fn is_enabled<Fd: AsFd>(fd: Fd) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live c_int and its exact size; the kernel writes
    // at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v != 0)
    }
}

/// `send(fd, buf, len, MSG_ZEROCOPY | MSG_NOSIGNAL)` —
/// <https://man7.org/linux/man-pages/man2/send.2.html>. Returns the bytes queued.
///
/// The kernel keeps references to `buf`'s pages past the return: the caller must
/// leave the memory untouched until [`read_completion`] has reported this send.
/// (Memory-safe either way: pinned pages stay valid; only the bytes sent could
/// change.) ENOBUFS means the socket's optmem or the locked-page limit is used up.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes during the call.
        let rc = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_ZEROCOPY | libc::MSG_NOSIGNAL,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One completion notification: sends `lo..=hi` are done with their memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// First send id of the range.
    pub lo: u32,
    /// Last send id of the range (inclusive).
    pub hi: u32,
    /// The kernel copied the data after all (`SO_EE_CODE_ZEROCOPY_COPIED`).
    pub copied: bool,
}

impl Completion {
    /// How many sends the range covers.
    pub fn count(&self) -> u64 {
        u64::from(self.hi.wrapping_sub(self.lo)) + 1
    }
}

/// `recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT)` —
/// <https://man7.org/linux/man-pages/man2/recvmsg.2.html>,
/// <https://man7.org/linux/man-pages/man7/ip.7.html> (`IP_RECVERR`): takes one
/// notification off the error queue. `Ok(None)` when the queue is empty; entries
/// that are not zero-copy completions are skipped.
pub fn read_completion(fd: BorrowedFd<'_>) -> io::Result<Option<Completion>> {
    loop {
        // Room for one cmsghdr + sock_extended_err + sockaddr (offender), aligned.
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain old data; all-zero (no name, no iov) is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `msg` points to a live control buffer of the length given and to
        // no data buffers; the kernel writes at most `msg_controllen` bytes into it.
        let rc = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR only walk the
        // control buffer within `msg_controllen`.
        let mut cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cm.is_null() {
            // SAFETY: `cm` is non-null and inside the control buffer (see above).
            let h = unsafe { &*cm };
            let is_recverr = (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR)
                || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
            let data_len = h.cmsg_len as usize;
            if is_recverr
                && data_len >= size_of::<libc::cmsghdr>() + size_of::<libc::sock_extended_err>()
            {
                // SAFETY: the cmsg carries a sock_extended_err (level/type checked,
                // length checked); read_unaligned copes with any alignment.
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast()) };
                if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY && ee.ee_errno == 0 {
                    return Ok(Some(Completion {
                        lo: ee.ee_info,
                        hi: ee.ee_data,
                        copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    }));
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cm = unsafe { libc::CMSG_NXTHDR(&msg, cm) };
        }
    }
}
