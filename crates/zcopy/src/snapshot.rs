//! Sealed snapshots: one complete version of a file's bytes (or of bytes made from
//! it) in a memory file that can never change again.
//!
//! A file on disk can be truncated or rewritten while its pages sit in a socket's
//! queue; a memfd sealed with `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW` cannot.
//! So a snapshot may be sent by reference (sendfile, splice) to any peer, a local one
//! too, with no lease: the pages the peer gets are the pages we sealed.

use std::fs::File;
use std::io::{self, Write};

use crate::sys::memfd;

/// A new, empty, unsealed memory file named `name` (shown in `/proc/PID/fd`), to be
/// written and then [`seal`]ed.
pub fn create(name: &str) -> io::Result<File> {
    memfd::create(name)
}

/// A sealed copy of the first `len` bytes of `src`, made in the kernel
/// (`copy_file_range`, or `sendfile` across file systems: no user-space copy).
/// Fails with `UnexpectedEof` when `src` holds fewer than `len` bytes.
pub fn copy_of(name: &str, src: &File, len: u64) -> io::Result<File> {
    let f = memfd::create(name)?;
    let got = memfd::fill_from(&f, src, len)?;
    if got != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank while copied ({got} of {len} bytes)"),
        ));
    }
    memfd::seal(&f)?;
    Ok(f)
}

/// A sealed memory file holding what `fill` writes into it.
pub fn made_by(name: &str, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<File> {
    let mut f = memfd::create(name)?;
    fill(&mut f)?;
    f.flush()?;
    memfd::seal(&f)?;
    Ok(f)
}

/// Seals `f` (made by [`create`]) for good.
pub fn seal(f: &File) -> io::Result<()> {
    memfd::seal(f)
}

/// `f` is a sealed memory file: its bytes can never change, so they may be sent by
/// reference to any peer.
pub fn is_sealed(f: &File) -> bool {
    memfd::is_sealed(f)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_sealed_copy_holds_the_file_and_refuses_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let src = File::open(&p).unwrap();
        let mut snap = copy_of("t", &src, data.len() as u64).unwrap();
        assert!(is_sealed(&snap));
        let mut got = Vec::new();
        snap.seek(SeekFrom::Start(0)).unwrap();
        snap.read_to_end(&mut got).unwrap();
        assert!(got == data, "the snapshot holds the file");
        // Writes, truncation and growth are refused, through any fd of it.
        assert!(snap.write_all(b"x").is_err(), "write");
        assert!(snap.write_at(b"x", 0).is_err(), "pwrite");
        assert!(snap.set_len(10).is_err(), "shrink");
        assert!(snap.set_len(300_000).is_err(), "grow");
        let again = File::options().write(true).open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&snap)
        ));
        if let Ok(mut w) = again {
            assert!(w.write_all(b"x").is_err(), "write through a reopened fd");
        }
        // A writable shared mapping is refused too.
        let map = rustix::fs::fcntl_add_seals(&snap, rustix::fs::SealFlags::empty());
        assert!(map.is_err(), "F_SEAL_SEAL: no seal change");
        // The source changing leaves the snapshot as it was.
        std::fs::write(&p, b"changed").unwrap();
        snap.seek(SeekFrom::Start(0)).unwrap();
        got.clear();
        snap.read_to_end(&mut got).unwrap();
        assert!(got == data, "the snapshot did not follow the file");
    }

    #[test]
    fn a_short_source_is_refused_and_an_unsealed_memfd_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let src = File::open(&p).unwrap();
        assert!(copy_of("t", &src, 10).is_err());
        let f = create("t").unwrap();
        assert!(!is_sealed(&f));
        assert!(!is_sealed(&src));
        let made = made_by("t", |f| f.write_all(b"hello")).unwrap();
        assert!(is_sealed(&made));
        assert_eq!(made.metadata().unwrap().len(), 5);
    }
}
