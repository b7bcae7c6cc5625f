//! Socket queries rustix lacks.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `ioctl(fd, SIOCOUTQ, &n)`: bytes in the socket's send queue not yet acknowledged
/// by the peer — <https://man7.org/linux/man-pages/man7/tcp.7.html>.
pub fn send_queue_len<Fd: AsFd>(fd: Fd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points to `n`.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n.max(0) as usize)
    }
}

/// `setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, bytes)`: the socket reports readable (and
/// wakes a blocked reader) only once `bytes` are queued, or at end of stream or on an
/// error — <https://man7.org/linux/man-pages/man7/socket.7.html>. For TCP the kernel
/// caps it at half of `tcp_rmem`'s maximum and grows the receive buffer to fit.
pub fn set_recv_lowat<Fd: AsFd>(fd: Fd, bytes: usize) -> io::Result<()> {
    let v: libc::c_int = bytes.clamp(1, i32::MAX as usize) as libc::c_int;
    // SAFETY: SO_RCVLOWAT reads one int from the pointer, which points to `v`, of the
    // length given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
