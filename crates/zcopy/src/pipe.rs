//! Pipes the engines move bytes through.

use std::io;
use std::os::fd::OwnedFd;

/// `pipe2(O_CLOEXEC)` with room for `size` bytes if the kernel allows it
/// (`F_SETPIPE_SZ`; refused past `fs.pipe-max-size` or the user's pipe pages):
/// the read end, the write end and the room the pipe has.
pub(crate) fn sized(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let room = match rustix::pipe::fcntl_setpipe_size(&write, size) {
        Ok(room) => room,
        Err(e) => {
            tracing::debug!("F_SETPIPE_SZ {size} refused ({e}); default pipe size");
            rustix::pipe::fcntl_getpipe_size(&write)?
        }
    };
    Ok((read, write, room))
}
