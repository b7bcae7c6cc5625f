//! `sendfile`: the kernel copies file pages to the sink itself (one CPU copy, none
//! with an SG-DMA NIC), two user/kernel switches per call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use rustix::io::Errno;

use super::{Engine, EngineKind, Src, unsupported};
use crate::fdkind::FdKind;
use crate::stats::Stats;

/// Most bytes one `sendfile(2)` call moves (`MAX_RW_COUNT`).
pub const MAX_PER_CALL: usize = 0x7fff_f000;

/// `sendfile(2)` from a file to any sink.
#[derive(Debug, Default)]
pub struct Sendfile {
    /// A stream-mode source fd already checked to be a regular file.
    checked_src: Option<RawFd>,
}

impl Sendfile {
    /// A new engine.
    pub fn new() -> Sendfile {
        Sendfile::default()
    }
}

impl Engine for Sendfile {
    fn kind(&self) -> EngineKind {
        EngineKind::Sendfile
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let Src::Fd { fd, offset } = src else {
            return Err(unsupported("sendfile needs a file source, not memory"));
        };
        // A positional source is a file (sendfile itself says ESPIPE otherwise); a
        // stream-mode one is checked once, as sockets and pipes may be accepted by
        // newer kernels with stream semantics we don't want here.
        if offset.is_none() && self.checked_src != Some(fd.as_raw_fd()) {
            stats.syscalls += 1;
            if !FdKind::of(fd)?.is_file() {
                return Err(unsupported("sendfile needs a regular file source"));
            }
            self.checked_src = Some(fd.as_raw_fd());
        }
        let mut pos = offset;
        let mut done = 0usize;
        while done < max {
            let want = (max - done).min(MAX_PER_CALL);
            stats.syscalls += 1;
            match rustix::fs::sendfile(sink, fd, pos.as_mut(), want) {
                // End of file (possibly earlier than the caller expected: it decides).
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    stats.bytes += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if done > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }
}
