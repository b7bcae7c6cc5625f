//! A directory as a tar stream (`?download=tar` with `--archives`): the headers are
//! written here, in memory; the members' contents leave through the engines, each
//! member opened only when its turn comes (one fd per connection, whatever the tree).
//!
//! What goes in: directories and regular files beneath the requested directory,
//! reached without following a symbolic link (links are left out, so nothing outside
//! the root can be named), dotfiles only with `--hidden`, names that are UTF-8, and
//! only what the caller's filter passes: the server keeps files the client could not
//! fetch by name and directories it could not list ([`crate::access`]) out. Names
//! longer than ustar's 100 bytes, or not ASCII, and sizes of 8 GiB or more get a PAX
//! extended header. The length of the whole stream is known before the first byte
//! (Content-Length); a member whose size has changed by the time it is opened, or
//! that shrinks while it is sent, ends the connection early, so a client never keeps
//! an archive that looks complete but isn't.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

pub use crate::plan::Member;
use crate::plan::Piece;

/// Most entries (files, directories and anything else met) one archive may hold: it
/// bounds the headers held in memory (512 bytes an entry) and the time a request
/// may take before its first byte.
pub const MAX_ENTRIES: usize = 10_000;
/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 64;
const BLOCK: u64 = 512;

/// The plan of a tar stream: pieces (headers in `mem`, contents from `members`).
#[derive(Debug, Default)]
pub struct Archive {
    /// In order.
    pub pieces: Vec<Piece>,
    /// Header bytes the [`Piece::Mem`] pieces point into.
    pub mem: Vec<u8>,
    /// The files, as [`Piece::Member`] indexes them.
    pub members: Vec<Member>,
    /// Total length in bytes.
    pub len: u64,
    /// Entries (files and directories) so far.
    entries: usize,
}

/// Why a directory can't be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// More than [`MAX_ENTRIES`] entries.
    #[error("more than {MAX_ENTRIES} entries")]
    TooLarge,
    /// Reading the tree failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Archive {
    /// Plans the archive of `dir` (opened for reading); `top` names its root entry.
    /// `keep` is asked about every file and directory beneath it (its path beneath
    /// `dir`, its lstat, whether it is a directory); what it refuses is left out (a
    /// directory with all it holds).
    pub fn plan(
        dir: &File,
        top: &str,
        hidden: bool,
        keep: &mut dyn FnMut(&str, &rustix::fs::Stat, bool) -> bool,
    ) -> Result<Archive, ArchiveError> {
        let mut a = Archive::default();
        let st = rustix::fs::fstat(dir).map_err(io::Error::from)?;
        a.header(&format!("{top}/"), 0, mtime(&st), st.st_mode, b'5');
        a.walk(dir, top, "", hidden, 0, keep)?;
        // Two zero blocks end the archive.
        a.push_mem(&[0u8; 2 * BLOCK as usize]);
        Ok(a)
    }

    fn walk(
        &mut self,
        dir: &File,
        top: &str,
        prefix: &str,
        hidden: bool,
        depth: usize,
        keep: &mut dyn FnMut(&str, &rustix::fs::Stat, bool) -> bool,
    ) -> Result<(), ArchiveError> {
        let mut names = Vec::new();
        for item in rustix::fs::Dir::read_from(dir).map_err(io::Error::from)? {
            let item = item.map_err(io::Error::from)?;
            let raw = item.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            // Every entry met counts, listed or not: the walk's cost is bounded.
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(ArchiveError::TooLarge);
            }
            let Ok(name) = item.file_name().to_str() else {
                continue;
            };
            if !hidden && name.starts_with('.') {
                continue;
            }
            names.push(name.to_owned());
        }
        names.sort_by(|a, b| crate::listing::natural_cmp(a, b));
        for name in names {
            let Ok(st) = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if matches!(
                FileType::from_raw_mode(st.st_mode),
                FileType::RegularFile | FileType::Directory
            ) && !keep(&rel, &st, is_dir)
            {
                continue;
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    #[allow(clippy::unnecessary_cast)] // differs between architectures
                    let size = st.st_size as u64;
                    self.header(&format!("{top}/{rel}"), size, mtime(&st), st.st_mode, b'0');
                    if size > 0 {
                        self.pieces.push(Piece::Member {
                            index: self.members.len(),
                            len: size,
                        });
                        self.members.push(Member {
                            rel: rel.into(),
                            size,
                        });
                        self.len += size;
                    }
                    let pad = (BLOCK - size % BLOCK) % BLOCK;
                    self.push_mem(&vec![0u8; pad as usize]);
                }
                FileType::Directory if depth < MAX_DEPTH => {
                    let Ok(sub) = rustix::fs::openat(
                        dir.as_fd(),
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) else {
                        continue;
                    };
                    self.header(&format!("{top}/{rel}/"), 0, mtime(&st), st.st_mode, b'5');
                    self.walk(
                        &File::from(sub),
                        top,
                        &format!("{rel}/"),
                        hidden,
                        depth + 1,
                        keep,
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends `bytes` to the current memory piece (or starts one).
    fn push_mem(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.mem.len();
        self.mem.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        match self.pieces.last_mut() {
            Some(Piece::Mem(_, end)) if *end == start => *end = self.mem.len(),
            _ => self.pieces.push(Piece::Mem(start, self.mem.len())),
        }
    }

    /// A ustar header for `name` (with a PAX header first when ustar can't hold it).
    fn header(&mut self, name: &str, size: u64, mtime: u64, mode: u32, kind: u8) {
        let long_name = name.len() > 100 || !name.is_ascii();
        let big = size >= 1 << 33;
        if long_name || big {
            let mut records = String::new();
            if long_name {
                records.push_str(&pax_record("path", name));
            }
            if big {
                records.push_str(&pax_record("size", &size.to_string()));
            }
            let block = ustar("././@PaxHeader", records.len() as u64, mtime, 0o644, b'x');
            self.push_mem(&block);
            self.push_mem(records.as_bytes());
            let pad = (BLOCK - records.len() as u64 % BLOCK) % BLOCK;
            self.push_mem(&vec![0u8; pad as usize]);
        }
        let short = if long_name {
            ustar_fallback(name)
        } else {
            name.to_owned()
        };
        let block = ustar(
            &short,
            if big { 0 } else { size },
            mtime,
            mode & 0o7777,
            kind,
        );
        self.push_mem(&block);
    }
}

/// The ustar name beside a PAX `path`, for tools that ignore PAX: ASCII only (other
/// characters become `_`), at most 99 bytes, relative, and with no `.` or `..`
/// segment, so it can't lead out of the directory it is extracted into.
fn ustar_fallback(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(99)
        .collect();
    let dir = ascii.ends_with('/');
    let mut segs: Vec<&str> = ascii.split('/').filter(|s| !s.is_empty()).collect();
    for s in &mut segs {
        if *s == "." || *s == ".." {
            *s = "_";
        }
    }
    let mut out = segs.join("/");
    if out.is_empty() {
        out.push('_');
    }
    if dir && out.len() < 99 {
        out.push('/');
    }
    out
}

/// One PAX record: `LEN KEY=VALUE\n`, LEN counting the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// A 512-byte ustar header block.
fn ustar(name: &str, size: u64, mtime: u64, mode: u32, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put =
        |h: &mut [u8; 512], at: usize, field: &[u8]| h[at..at + field.len()].copy_from_slice(field);
    let octal = |width: usize, v: u64| format!("{v:0w$o}\0", w = width - 1).into_bytes();
    put(&mut h, 0, &name.as_bytes()[..name.len().min(100)]);
    put(&mut h, 100, &octal(8, u64::from(mode)));
    put(&mut h, 108, &octal(8, 0));
    put(&mut h, 116, &octal(8, 0));
    put(&mut h, 124, &octal(12, size));
    put(&mut h, 136, &octal(12, mtime.min(0o77777777777)));
    h[156] = kind;
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

fn mtime(st: &rustix::fs::Stat) -> u64 {
    #[allow(clippy::unnecessary_cast)] // differs between architectures
    let secs = st.st_mtime as i64;
    secs.max(0) as u64
}

/// Opens member `m` beneath `dir` (no symlink followed) if it is still the regular
/// file of the size the archive announced.
pub fn open_member(dir: &File, m: &Member) -> Option<File> {
    let fd = rustix::fs::openat2(
        dir.as_fd(),
        &*m.rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    #[allow(clippy::unnecessary_cast)] // differs between architectures
    let same =
        FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_size as u64 == m.size;
    if !same {
        tracing::debug!(member = %m.rel, "archive member changed since the archive was planned");
        return None;
    }
    Some(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_fallback_names_stay_inside() {
        for (name, want) in [
            ("root/\u{e9}../x", "root/_../x"),
            ("root/..\u{e9}/x", "root/.._/x"),
            ("\u{e9}/a", "_/a"),
            ("/etc/passwd", "etc/passwd"),
            ("a/./b/../c/", "a/_/b/_/c/"),
            ("\u{e9}", "_"),
        ] {
            assert_eq!(ustar_fallback(name), want, "{name:?}");
        }
        // Truncation can't leave a `..` segment either.
        let name = format!("{}/....", "a".repeat(96));
        let short = ustar_fallback(&name);
        assert!(short.len() <= 99 && !short.split('/').any(|s| s == ".." || s == "."));
        assert!(!short.starts_with('/'));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["a", &"x".repeat(95), &"y".repeat(996)] {
            let r = pax_record("path", value);
            let (len, _) = r.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{r:?}");
        }
    }

    #[test]
    fn headers_carry_a_valid_checksum() {
        let h = ustar("dir/file.txt", 1234, 1_700_000_000, 0o644, b'0');
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].fill(b' ');
        assert_eq!(stored, blank.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert_eq!(&h[124..136], b"00000002322\0");
    }
}
