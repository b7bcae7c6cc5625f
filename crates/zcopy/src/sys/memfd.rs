//! Sealed memory files: `memfd_create(MFD_ALLOW_SEALING)`, filled, then sealed with
//! `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` so their bytes can never
//! change again (<https://man7.org/linux/man-pages/man2/memfd_create.2.html>,
//! <https://man7.org/linux/man-pages/man2/fcntl.2.html> "File Sealing"). No `unsafe`
//! is needed: rustix wraps each call.

use std::fs::File;
use std::io;

use rustix::fs::{MemfdFlags, SealFlags};

/// The seals that make a memfd's bytes immutable.
const IMMUTABLE: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW);

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub fn create(name: &str) -> io::Result<File> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    Ok(File::from(fd))
}

/// Copies `len` bytes of `src` from offset 0 into `dst` at its end, in the kernel:
/// `copy_file_range`, or `sendfile` where the two files' file systems differ
/// (`EXDEV`) or the call is refused. Answers how many bytes came (short at end of
/// file).
pub fn fill_from(dst: &File, src: &File, len: u64) -> io::Result<u64> {
    let mut off = 0u64;
    let mut cfr = true;
    while off < len {
        let want = (len - off).min(1 << 30) as usize;
        let n = if cfr {
            let mut o = off;
            match rustix::fs::copy_file_range(src, Some(&mut o), dst, None, want) {
                Ok(n) => n,
                Err(
                    rustix::io::Errno::XDEV
                    | rustix::io::Errno::INVAL
                    | rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::NOSYS,
                ) => {
                    cfr = false;
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut o = off;
            match rustix::fs::sendfile(dst, src, Some(&mut o), want) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    Ok(off)
}

/// Seals `f` for good: no write, no shrink, no growth, no further seal change.
/// Fails (`EBUSY`) while a writable shared mapping of it exists.
pub fn seal(f: &File) -> io::Result<()> {
    rustix::fs::fcntl_add_seals(f, IMMUTABLE | SealFlags::SEAL)?;
    Ok(())
}

/// `f` is a memfd whose bytes can never change (`F_GET_SEALS` has write, shrink and
/// grow).
pub fn is_sealed(f: &File) -> bool {
    rustix::fs::fcntl_get_seals(f).is_ok_and(|s| s.contains(IMMUTABLE))
}
