//! `copy-range`: `copy_file_range(2)` file → file inside the kernel; a reflink (no
//! copy at all) on filesystems that share extents, an in-kernel copy elsewhere.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Most bytes asked of one call (the kernel caps a call at `MAX_RW_COUNT`).
const MAX_PER_CALL: usize = 1 << 30;

/// `copy_file_range(2)` from a file to a file.
///
/// The source is read at the given offset (or its file position for stream
/// mode); the sink is written at its own file position, which advances, so a
/// fresh sink fd receives the bytes in order. Holes stay holes where the
/// filesystem's implementation keeps them (e.g. reflinks on btrfs/xfs).
/// EXDEV, EOPNOTSUPP, ENOSYS and EINVAL before the first byte make the transfer
/// fall back (see [`super::is_unsupported`]).
#[derive(Debug, Default)]
pub struct CopyRange;

impl CopyRange {
    /// A new engine.
    pub fn new() -> CopyRange {
        CopyRange
    }
}

impl Engine for CopyRange {
    fn kind(&self) -> EngineKind {
        EngineKind::CopyRange
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let Src::Fd { fd, offset } = src else {
            return Err(unsupported(
                "copy_file_range needs a file source, not memory",
            ));
        };
        let mut pos = offset;
        let mut done = 0usize;
        while done < max {
            let want = (max - done).min(MAX_PER_CALL);
            stats.syscalls += 1;
            match rustix::fs::copy_file_range(fd, pos.as_mut(), sink, None, want) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    stats.bytes += n as u64;
                }
                Err(Errno::INTR) => {}
                // Bytes moved in this step are reported; the error comes back on
                // the next call, where the transfer decides what it means.
                Err(_) if done > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }
}
