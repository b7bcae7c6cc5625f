//! Change notices for the files a worker keeps in memory: one inotify instance per
//! worker, one watch per cached inode, read without blocking.
//!
//! A watch reports every change made through the file system: writes and
//! truncation (`IN_MODIFY`), a writer closing (`IN_CLOSE_WRITE`), mode, times and
//! link count (`IN_ATTRIB`, which also covers an unlink and a rename over the
//! path), and the inode moving or going away. Writes through a shared writable
//! mapping give no notice until the kernel updates the file's times.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// What a drain found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The inode behind this watch changed (or the watch is gone).
    Changed(i32),
    /// The kernel's event queue overflowed: any watched file may have changed.
    Overflow,
}

/// A worker's inotify instance.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    buf: Box<[MaybeUninit<u8>]>,
}

/// The events that mean a cached copy of a file is stale.
const CHANGES: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::DELETE_SELF);

/// File systems whose every change passes through this kernel, so a watch sees it
/// (`statfs` magic numbers: ext2/3/4, xfs, btrfs, tmpfs, f2fs, overlay). A network
/// or FUSE file system can change under us without a notice.
const LOCAL_FS: [i64; 6] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0xF2F5_2010,
    0x794C_7630,
];

impl Watcher {
    /// A new non-blocking inotify instance (refused with `ZCOPY_DISABLE=inotify`).
    pub fn new() -> io::Result<Watcher> {
        if zcopy::Forced::from_env().switched_off("inotify") {
            return Err(io::Error::other("inotify forced off by ZCOPY_DISABLE"));
        }
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        Ok(Watcher {
            fd,
            buf: vec![MaybeUninit::uninit(); 4096].into_boxed_slice(),
        })
    }

    /// Watches the inode `file` refers to; the same inode always gets the same
    /// watch. Refused (`EXDEV`) on a file system whose changes might not be seen.
    pub fn watch(&self, file: &File) -> io::Result<i32> {
        let fs = rustix::fs::fstatfs(file)?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
        if !LOCAL_FS.contains(&(fs.f_type as i64)) {
            return Err(rustix::io::Errno::XDEV.into());
        }
        // inotify names a file by path; the fd's magic link names exactly its inode.
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        Ok(inotify::add_watch(&self.fd, path, CHANGES)?)
    }

    /// The fd that turns readable when notices wait (for a caller's event loop).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Stops watching `wd` (gone already is fine).
    pub fn unwatch(&self, wd: i32) {
        let _ = inotify::remove_watch(&self.fd, wd);
    }

    /// Reads every pending event, without blocking, and hands each to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(Notice)) {
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            match reader.next() {
                Ok(ev) if ev.events().contains(ReadFlags::QUEUE_OVERFLOW) => f(Notice::Overflow),
                Ok(ev) => f(Notice::Changed(ev.wd())),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(e) => {
                    // Nothing can be trusted if the queue can't be read.
                    tracing::warn!("reading inotify events failed: {e}");
                    f(Notice::Overflow);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notices(w: &mut Watcher) -> Vec<Notice> {
        let mut v = Vec::new();
        w.drain(|n| v.push(n));
        v
    }

    #[test]
    fn every_kind_of_change_gives_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let f = File::open(&p).unwrap();
        let mut w = Watcher::new().unwrap();
        let wd = match w.watch(&f) {
            Ok(wd) => wd,
            Err(e) => {
                eprintln!("skipped: {} can't be watched here: {e}", p.display());
                return;
            }
        };
        assert_eq!(w.watch(&f).unwrap(), wd, "one watch per inode");
        assert!(notices(&mut w).is_empty(), "reading gives no notice");
        std::fs::write(&p, b"two").unwrap();
        assert!(notices(&mut w).contains(&Notice::Changed(wd)), "write");
        let t = std::fs::File::options().write(true).open(&p).unwrap();
        t.set_len(1).unwrap();
        assert!(notices(&mut w).contains(&Notice::Changed(wd)), "truncate");
        drop(t);
        let _ = notices(&mut w);
        // Times alone (read-only fd: no close-after-write notice can stand in).
        File::open(&p)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(notices(&mut w).contains(&Notice::Changed(wd)), "touch");
        std::fs::write(dir.path().join("g"), b"new").unwrap();
        std::fs::rename(dir.path().join("g"), &p).unwrap();
        assert!(
            notices(&mut w).contains(&Notice::Changed(wd)),
            "rename over"
        );
    }
}
