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
