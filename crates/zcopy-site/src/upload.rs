//! PUT uploads: where a body may go, and how it is published.
//!
//! The target is confined beneath the root like a read, but stricter: its
//! directory is opened without following any symbolic link (`RESOLVE_NO_SYMLINKS`
//! through [`path::open`] with [`SymlinkPolicy::Never`]), the final name must not
//! be a symbolic link or a directory, dotfiles and sidecar names beside their
//! original (`x.gz` where `x` is) are refused unless `--hidden`. The body goes to an unnamed file
//! (`O_TMPFILE`) in the target's directory, or, where the file system has none, to
//! a temporary dotfile that is removed if the upload does not complete. Once the
//! whole body is there it is fsync'd and published in one step: linked under a
//! temporary name and renamed over the final name (a reader sees the old file or
//! the new one, never a part; one already sending the old file keeps its inode),
//! or, for `If-None-Match: *`, linked straight to the final name (which fails if
//! something is there: 412).

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::conditional::Validators;
use crate::head::Head;
use crate::path::{self, CleanPath, OpenError, Resolved, SymlinkPolicy};
use crate::plan::{Body, Response, Sink};

/// Tells temporary names apart within this process.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// What a PUT's preconditions ask for.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// `If-None-Match: *`: create only.
    pub create_only: bool,
    /// `If-Match`: replace only a file with one of these ETags (`*`: any file).
    pub if_match: Option<String>,
}

/// Why a PUT is refused before its body is read.
#[derive(Debug)]
pub enum Refused {
    /// A status and what the log says.
    Status(u16),
    /// The file system said no.
    Open(OpenError),
}

/// Opens the directory of `clean` and checks the final name. Returns the directory,
/// the name and whether a file is there now.
pub fn target(
    root: &OwnedFd,
    clean: &CleanPath,
    hidden: bool,
) -> Result<(File, String, Option<Validators>), Refused> {
    let Some((name, parents)) = clean.segments.split_last() else {
        return Err(Refused::Status(405));
    };
    if clean.trailing_slash {
        return Err(Refused::Status(405));
    }
    if !hidden && clean.segments.iter().any(|s| s.starts_with('.')) {
        // Dotfiles are invisible.
        return Err(Refused::Status(403));
    }
    let parent = CleanPath {
        segments: parents.to_vec(),
        trailing_slash: true,
        query: None,
    };
    let dir = match path::open(root, &parent, SymlinkPolicy::Never, hidden) {
        Ok(Resolved::Dir(dir, _)) => dir,
        Ok(Resolved::File(..)) => return Err(Refused::Status(409)),
        Err(OpenError::NotFound) => return Err(Refused::Status(409)),
        Err(e) => return Err(Refused::Open(e)),
    };
    // A sidecar beside its original (`x.gz` where `x` is) would be served in place
    // of the original to clients that accept its encoding: refused unless
    // --hidden. Alone (`backup.tar.gz`) it is a file like any other.
    if !hidden
        && let Some(orig) = crate::access::original(name)
        && rustix::fs::statat(&dir, orig, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    {
        return Err(Refused::Status(403));
    }
    let existing = current(&dir, name)?;
    Ok((dir, name.clone(), existing))
}

/// The regular file under `name` in `dir` now (not following a link): its
/// validators, or `None` when nothing is there; a link, a directory or anything
/// else is refused.
fn current(dir: &File, name: &str) -> Result<Option<Validators>, Refused> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(Refused::Open(OpenError::Other(e.to_string()))),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
            Ok(Some(crate::cache::validators(&st)))
        }
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(Refused::Status(405))
        }
        Ok(_) => Err(Refused::Status(403)),
    }
}

/// Whether the preconditions hold against the file there now.
pub fn preconditions_hold(cond: &Conditions, existing: Option<&Validators>) -> bool {
    if cond.create_only && existing.is_some() {
        return false;
    }
    match (&cond.if_match, existing) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(list), Some(v)) => list
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == v.etag),
    }
}

/// A body on its way to `dir/name`.
#[derive(Debug)]
pub struct PutSink {
    dir: File,
    name: String,
    file: File,
    /// The temporary name the body is written under, when the file system has no
    /// `O_TMPFILE` (removed unless published).
    named: Option<String>,
    cond: Conditions,
    /// Most body bytes taken (`--max-upload-size`).
    limit: u64,
}

impl PutSink {
    /// A file nobody can see yet in `dir`, for the body of `name`.
    pub fn create(dir: File, name: String, cond: Conditions, limit: u64) -> io::Result<PutSink> {
        let mode = Mode::from_raw_mode(0o644);
        let flags = OFlags::WRONLY | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, ".", flags | OFlags::TMPFILE, mode) {
            Ok(fd) => Ok(PutSink {
                dir,
                name,
                file: File::from(fd),
                named: None,
                cond,
                limit,
            }),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                let tmp = temp_name(&name);
                let fd =
                    rustix::fs::openat(&dir, &tmp, flags | OFlags::CREATE | OFlags::EXCL, mode)?;
                Ok(PutSink {
                    dir,
                    name,
                    file: File::from(fd),
                    named: Some(tmp),
                    cond,
                    limit,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Links the complete, synced body in: `Ok(Some(created))`, `Ok(None)` when a
    /// precondition no longer holds.
    fn publish(&mut self) -> io::Result<Option<bool>> {
        self.file.sync_all()?;
        let existing = match current(&self.dir, &self.name) {
            Ok(v) => v,
            Err(Refused::Status(_)) => return Ok(None),
            Err(Refused::Open(e)) => return Err(io::Error::other(format!("{e:?}"))),
        };
        if !preconditions_hold(&self.cond, existing.as_ref()) {
            return Ok(None);
        }
        let created = existing.is_none();
        if self.cond.create_only {
            // Linked straight to the final name: fails if anything got there first.
            let r = match self.named.take() {
                Some(tmp) => {
                    rustix::fs::linkat(&self.dir, &tmp, &self.dir, &self.name, AtFlags::empty())
                        .map(|()| {
                            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
                        })
                }
                None => self.link_unnamed(&self.name),
            };
            return match r {
                Ok(()) => Ok(Some(true)),
                Err(rustix::io::Errno::EXIST) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let tmp = match self.named.take() {
            Some(tmp) => tmp,
            None => {
                let tmp = temp_name(&self.name);
                self.link_unnamed(&tmp)?;
                tmp
            }
        };
        if let Err(e) = rustix::fs::renameat(&self.dir, &tmp, &self.dir, &self.name) {
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
            return Err(e.into());
        }
        // The new name lasts a crash too.
        let _ = rustix::fs::fsync(&self.dir);
        Ok(Some(created))
    }

    /// Gives the unnamed file the name `to` in its directory.
    fn link_unnamed(&self, to: &str) -> rustix::io::Result<()> {
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link does not.
        let proc = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.file)
        );
        match rustix::fs::linkat(&self.file, "", &self.dir, to, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            Err(_) => rustix::fs::linkat(
                rustix::fs::CWD,
                proc.as_str(),
                &self.dir,
                to,
                AtFlags::SYMLINK_FOLLOW,
            ),
        }
    }
}

impl Drop for PutSink {
    fn drop(&mut self) {
        if let Some(tmp) = self.named.take() {
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, AtFlags::empty());
        }
    }
}

/// A dotfile name for a body being published (never served, never listed).
fn temp_name(name: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(32).collect();
    format!(".{short}.zcopy-upload-{}-{n}", std::process::id())
}

/// A response with no body.
pub fn empty(out: &mut Vec<u8>, status: u16, close: bool) -> Response {
    let body = match status {
        201 | 204 => String::new(),
        s => format!("{s} {}\n", crate::head::reason(s)),
    };
    let mut h = Head::start(out, status);
    if !body.is_empty() {
        h.header("Content-Type", "text/plain; charset=utf-8");
    }
    if status != 204 {
        h.header_u64("Content-Length", body.len() as u64);
    }
    if close {
        h.header("Connection", "close");
    }
    h.finish();
    out.extend_from_slice(body.as_bytes());
    Response {
        status,
        body: Body::InHead,
        body_len: body.len() as u64,
        close,
    }
}

impl Sink for PutSink {
    fn file(&self) -> &File {
        &self.file
    }

    fn limit(&self) -> u64 {
        self.limit
    }

    fn finish(mut self: Box<Self>, out: &mut Vec<u8>, close: bool) -> Response {
        match self.publish() {
            Ok(Some(true)) => empty(out, 201, close),
            Ok(Some(false)) => empty(out, 204, close),
            Ok(None) => empty(out, 412, close),
            Err(e) => status_of_error(&e, out),
        }
    }

    fn failed(self: Box<Self>, err: &io::Error, out: &mut Vec<u8>) -> Response {
        status_of_error(err, out)
    }
}

/// 507 for a full disk or quota, 500 otherwise (logged); the connection closes.
fn status_of_error(e: &io::Error, out: &mut Vec<u8>) -> Response {
    let full = matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error()
            || c == rustix::io::Errno::DQUOT.raw_os_error()
    );
    if full {
        tracing::warn!("upload refused: {e}");
        empty(out, 507, true)
    } else {
        tracing::warn!("upload failed: {e}");
        empty(out, 500, true)
    }
}
