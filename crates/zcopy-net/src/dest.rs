//! The receiving side's output directory: every path a sender names is checked and
//! opened beneath it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so neither
//! `..`, an absolute path nor a symlink planted in the tree can lead outside.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Why a sender's path is refused.
pub fn check_path(path: &[u8]) -> Result<Vec<&OsStr>, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path[0] == b'/' {
        return Err("absolute path".into());
    }
    if path.contains(&0) {
        return Err("NUL in path".into());
    }
    let segs: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for seg in &segs {
        match *seg {
            b"" => return Err("empty path segment".into()),
            b"." | b".." => return Err(format!("'{}' segment", String::from_utf8_lossy(seg))),
            _ => {}
        }
    }
    Ok(segs.into_iter().map(OsStr::from_bytes).collect())
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The directory everything is received into.
#[derive(Debug)]
pub struct OutDir {
    fd: OwnedFd,
}

impl OutDir {
    /// Opens `path`, which must be an existing directory.
    pub fn open(path: &Path) -> io::Result<OutDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(OutDir { fd })
    }

    /// Opens (creating missing ones when `create`) the directory `segs` beneath the
    /// output directory, one segment at a time, refusing symlinks.
    pub fn dir(&self, segs: &[&OsStr], create: bool) -> io::Result<OwnedFd> {
        let mut cur = rustix::io::dup(&self.fd)?;
        for seg in segs {
            let open = |at: &OwnedFd| {
                rustix::fs::openat2(
                    at,
                    *seg,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                    BENEATH,
                )
            };
            cur = match open(&cur) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, *seg, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open(&cur)?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cur)
    }

    /// The directory fd itself (for fsync).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// Opens `name` in `dir` with `flags`, never following a symlink.
pub fn open_in(dir: &OwnedFd, name: &OsStr, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        dir,
        name,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
        BENEATH,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        for p in [
            &b""[..],
            b"/etc/passwd",
            b"../x",
            b"a/../../x",
            b"a//b",
            b"./a",
            b"a/.",
            b"a\0b",
            b"a/",
        ] {
            assert!(check_path(p).is_err(), "{:?}", String::from_utf8_lossy(p));
        }
        assert_eq!(check_path(b"a/b c/\xff.bin").unwrap().len(), 3);
    }

    #[test]
    fn symlinks_in_the_tree_are_not_followed() {
        let out = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), out.path().join("evil")).unwrap();
        let d = OutDir::open(out.path()).unwrap();
        assert!(d.dir(&[OsStr::new("evil")], true).is_err());
        assert!(d.dir(&[OsStr::new("evil"), OsStr::new("x")], true).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let ok = d
            .dir(&[OsStr::new("new"), OsStr::new("deeper")], true)
            .unwrap();
        drop(ok);
        assert!(out.path().join("new/deeper").is_dir());
    }
}
