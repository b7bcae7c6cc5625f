//! Starting write-back of a file's dirty pages early.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`: starts write-back of every
/// dirty page of the file that is not already being written, and waits for none —
/// <https://man7.org/linux/man-pages/man2/sync_file_range.2.html>. It may still block
/// while the device's request queue is full. Not a durability point (no metadata, no
/// cache flush): a later `fsync` is what makes the file durable, and finds less to do.
pub fn start<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    // SAFETY: no pointers; the fd is borrowed for the call.
    let rc =
        unsafe { libc::sync_file_range(fd.as_fd().as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
