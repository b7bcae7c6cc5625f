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
//!
//! **Resumable uploads** (`PUT` with `Content-Range: bytes start-end/total`, as
//! Apache mod_dav accepts): the parts go, in order, to a *partial*: an unnamed file
//! (`O_TMPFILE`) in the target's directory that the server holds open. It has no
//! name, so no GET, listing or archive can ever see it, and it is gone when the
//! server exits, whatever the reason. A part must start where the partial ends
//! (`start` 0 starts over); otherwise 416, and the partial stays. Every answer to
//! a part, and `HEAD` of the final name, says in `Upload-Offset` how many bytes the
//! server holds; a part that is cut off keeps what arrived of it. The part that
//! brings the last byte publishes the partial as a whole PUT does (fsync, link,
//! rename, `If-Match`/`If-None-Match` checked then); the parts before it are
//! answered 202. At most [`MAX_PARTIALS`] partials are held (beyond: 503), each at
//! most `--max-upload-size`, each dropped after the resume timeout without a part
//! ([`SiteConfig::upload_resume_ttl`](crate::site_config::SiteConfig)).

use crate::head::Out;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

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
    /// Its file (taken only when the sink goes: see `Drop`).
    file: Option<File>,
    /// The temporary name the body is written under, when the file system has no
    /// `O_TMPFILE` (removed unless published).
    named: Option<String>,
    cond: Conditions,
    /// Most body bytes taken (`--max-upload-size`).
    limit: u64,
    /// The partial of a resumable upload this part goes to (given back to the
    /// registry unless the last part publishes it).
    part: Option<Part>,
    /// Starts the file's write-back while the body arrives, off the event loop, so
    /// the publish's fsync finds little left to write.
    writeback: zcopy::receive::Writeback,
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
                file: Some(File::from(fd)),
                named: None,
                cond,
                limit,
                part: None,
                writeback: Default::default(),
            }),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                let tmp = temp_name(&name);
                let fd =
                    rustix::fs::openat(&dir, &tmp, flags | OFlags::CREATE | OFlags::EXCL, mode)?;
                Ok(PutSink {
                    dir,
                    name,
                    file: Some(File::from(fd)),
                    named: Some(tmp),
                    cond,
                    limit,
                    part: None,
                    writeback: Default::default(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Links the complete, synced body in: `Ok(Some(created))`, `Ok(None)` when a
    /// precondition no longer holds.
    fn publish(&mut self) -> io::Result<Option<bool>> {
        self.f().sync_all()?;
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

    /// The body's file (there until the sink is dropped).
    fn f(&self) -> &File {
        self.file.as_ref().expect("the sink's file")
    }

    /// Gives the unnamed file the name `to` in its directory.
    fn link_unnamed(&self, to: &str) -> rustix::io::Result<()> {
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link does not.
        let proc = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(self.f())
        );
        match rustix::fs::linkat(self.f(), "", &self.dir, to, AtFlags::EMPTY_PATH) {
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
        let Some(file) = self.file.take() else {
            return;
        };
        match self.part.take() {
            // A part cut off (the client went away, the body stalled, the disk
            // filled): what arrived of it stays, for the next part to continue.
            Some(part) => part.give_back(file),
            // Unpublished (dropped, stalled, refused), its last close frees every
            // block and page it has: not on the event loop (see `close_later`).
            None => close_later(file),
        }
    }
}

/// Files at least this large are closed by the closing thread, not where dropped.
const CLOSE_LATER_MIN: u64 = 1 << 20;

/// Closes `file` on a thread of its own when it is large: the last close of an
/// unnamed file frees all its blocks and page-cache pages (240 ms for 700 MiB of
/// dirty pages here), which must not stall an event loop. `file` must be the only
/// descriptor left (moved here, never a clone: a clone closed first would leave
/// the costly last close to the caller).
pub fn close_later(file: File) {
    static TX: LazyLock<Option<Mutex<std::sync::mpsc::Sender<File>>>> = LazyLock::new(|| {
        let (tx, rx) = std::sync::mpsc::channel::<File>();
        std::thread::Builder::new()
            .name("zcopy-close".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .map_err(|e| tracing::error!("closing thread: {e}"))
            .ok()?;
        Some(Mutex::new(tx))
    });
    if file.metadata().is_ok_and(|m| m.len() < CLOSE_LATER_MIN) {
        return;
    }
    if let Some(tx) = TX.as_ref() {
        let _ = crate::lock(tx).send(file);
    }
}

/// A dotfile name for a body being published (never served, never listed).
fn temp_name(name: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(32).collect();
    format!(".{short}.zcopy-upload-{}-{n}", std::process::id())
}

/// A response with no body.
pub fn empty(out: &mut Out, status: u16, close: bool) -> Response {
    answer(out, status, close, &[])
}

/// A response with no body (a short text for an error), and `extra` header fields.
pub fn answer(out: &mut Out, status: u16, close: bool, extra: &[(&str, &str)]) -> Response {
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
    for (k, v) in extra {
        h.header(k, v);
    }
    if close {
        h.header("Connection", "close");
    }
    h.finish();
    out.body.extend_from_slice(body.as_bytes());
    Response {
        status,
        body: Body::InHead,
        body_len: body.len() as u64,
        close,
    }
}

impl Sink for PutSink {
    fn file(&self) -> &File {
        self.f()
    }

    fn limit(&self) -> u64 {
        self.limit
    }

    fn received(&mut self, n: u64) {
        if let Some(f) = &self.file {
            self.writeback.wrote(f, n);
        }
    }

    fn finish(mut self: Box<Self>, out: &mut Out, close: bool) -> Response {
        if let Some(part) = &self.part {
            let len = match self.f().metadata() {
                Ok(m) => m.len(),
                Err(e) => return status_of_error(&e, out),
            };
            if len < part.total {
                // Not the last part: the partial waits for the next (given back
                // as the sink goes).
                drop(self);
                let offset = len.to_string();
                return answer(out, 202, close, &[("Upload-Offset", &offset)]);
            }
            // The last byte is in: published as a whole PUT is, never given back.
            if let Some(part) = self.part.take() {
                crate::lock(&PARTIALS).remove(&part.key);
            }
        }
        match self.publish() {
            Ok(Some(true)) => empty(out, 201, close),
            Ok(Some(false)) => empty(out, 204, close),
            Ok(None) => empty(out, 412, close),
            Err(e) => status_of_error(&e, out),
        }
    }

    fn failed(self: Box<Self>, err: &io::Error, out: &mut Out) -> Response {
        status_of_error(err, out)
    }
}

/// 507 for a full disk or quota, 500 otherwise (logged); the connection closes.
fn status_of_error(e: &io::Error, out: &mut Out) -> Response {
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

// ---- resumable uploads -------------------------------------------------------

/// Most partial uploads held at once (all sites of the process); beyond, a first
/// part gets 503.
pub const MAX_PARTIALS: usize = 64;
/// How long a partial upload is kept without a part arriving (the default of
/// [`SiteConfig::upload_resume_ttl`](crate::site_config::SiteConfig)).
pub const RESUME_TTL: Duration = Duration::from_secs(3600);

/// `Content-Range: bytes start-end/total` of a PUT: where its body goes in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartRange {
    /// First byte of this part.
    pub start: u64,
    /// Last byte of this part (inclusive).
    pub end: u64,
    /// The whole file's length.
    pub total: u64,
}

/// Parses a PUT's Content-Range (`bytes start-end/total`, total known; a part of at
/// least one byte within it). `None`: malformed (400).
pub fn parse_content_range(v: &str) -> Option<PartRange> {
    let rest = v.trim().strip_prefix("bytes ")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end, total) = (num(start)?, num(end)?, num(total)?);
    (start <= end && end < total).then_some(PartRange { start, end, total })
}

/// Which partial: the served root (device, inode) and the path beneath it.
type Key = (u64, u64, String);

/// A partial upload between its parts.
#[derive(Debug)]
struct Partial {
    /// The directory (device, inode) it was made in: it is published there only.
    dir: (u64, u64),
    /// Its unnamed file; `None` while a part is being received into it.
    file: Option<File>,
    /// Bytes it holds (when not busy).
    len: u64,
    total: u64,
    touched: Instant,
}

static PARTIALS: LazyLock<Mutex<HashMap<Key, Partial>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A part's claim on its partial: given back with what it holds unless published.
#[derive(Debug)]
struct Part {
    key: Key,
    total: u64,
}

impl Part {
    fn give_back(self, file: File) {
        let len = file.metadata().map_or(0, |m| m.len());
        let mut map = crate::lock(&PARTIALS);
        if let Some(p) = map.get_mut(&self.key)
            && p.file.is_none()
            && p.total == self.total
        {
            p.file = Some(file);
            p.len = len;
            p.touched = Instant::now();
        }
    }
}

/// What a part of a resumable upload gets.
#[derive(Debug)]
pub enum Resume {
    /// Its body goes to this sink.
    Sink(PutSink),
    /// It does not start where the partial ends (which holds this many bytes): 416.
    Offset(u64),
    /// Another part of the same upload is being received: 409.
    Busy,
    /// [`MAX_PARTIALS`] are held: 503.
    Full,
    /// The file system has no unnamed files (`O_TMPFILE`): 501.
    Unsupported,
    /// Making its file failed.
    Failed(io::Error),
}

fn id_of(fd: impl std::os::fd::AsFd) -> (u64, u64) {
    rustix::fs::fstat(fd).map_or((0, 0), |st| (st.st_dev, st.st_ino))
}

fn key_of(root: &OwnedFd, clean: &CleanPath) -> Key {
    let (dev, ino) = id_of(root);
    (dev, ino, clean.segments.join("/"))
}

/// Drops the partials no part came for within `ttl` (also done at each part).
pub fn expire_partials(ttl: Duration) {
    let now = Instant::now();
    let mut gone = Vec::new();
    crate::lock(&PARTIALS).retain(|_, p| {
        let keep = p.file.is_none() || now.duration_since(p.touched) < ttl;
        if !keep {
            gone.extend(p.file.take());
        }
        keep
    });
    gone.into_iter().for_each(close_later);
}

/// Bytes held of the partial upload to `clean` (after [`target`] allowed a PUT
/// there), if one is held.
pub fn partial_len(root: &OwnedFd, clean: &CleanPath, ttl: Duration) -> Option<u64> {
    let key = key_of(root, clean);
    let now = Instant::now();
    let map = crate::lock(&PARTIALS);
    let p = map.get(&key)?;
    if p.file.is_some() && now.duration_since(p.touched) >= ttl {
        return None;
    }
    Some(p.len)
}

/// A part `range` of the resumable upload to `dir/name` (from [`target`]): a sink
/// that appends its body to the partial, or why not.
#[allow(clippy::too_many_arguments)]
pub fn resume(
    root: &OwnedFd,
    clean: &CleanPath,
    dir: File,
    name: String,
    range: PartRange,
    cond: Conditions,
    limit: u64,
    ttl: Duration,
) -> Resume {
    use std::io::{Seek, SeekFrom};
    expire_partials(ttl);
    let key = key_of(root, clean);
    let dir_id = id_of(&dir);
    let mut map = crate::lock(&PARTIALS);
    let held = match map.get_mut(&key) {
        Some(p) if p.file.is_none() => return Resume::Busy,
        Some(p) if p.dir == dir_id && p.total == range.total && p.len == range.start => {
            p.file.take()
        }
        Some(p) if range.start != 0 => {
            return Resume::Offset(if p.dir == dir_id && p.total == range.total {
                p.len
            } else {
                0
            });
        }
        // A first part starts over.
        Some(_) => None,
        None if range.start != 0 => return Resume::Offset(0),
        None => None,
    };
    let file = match held {
        Some(f) => f,
        None => {
            if !map.contains_key(&key) && map.len() >= MAX_PARTIALS {
                return Resume::Full;
            }
            let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::TMPFILE;
            match rustix::fs::openat(&dir, ".", flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => File::from(fd),
                Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                    map.remove(&key);
                    return Resume::Unsupported;
                }
                Err(e) => {
                    map.remove(&key);
                    return Resume::Failed(e.into());
                }
            }
        }
    };
    // Appended where the partial ends (its offset already is; said again).
    if let Err(e) = (&file).seek(SeekFrom::Start(range.start)) {
        map.remove(&key);
        return Resume::Failed(e);
    }
    let replaced = map.insert(
        key.clone(),
        Partial {
            dir: dir_id,
            file: None,
            len: range.start,
            total: range.total,
            touched: Instant::now(),
        },
    );
    drop(map);
    if let Some(f) = replaced.and_then(|p| p.file) {
        // Started over: the old partial goes.
        close_later(f);
    }
    Resume::Sink(PutSink {
        dir,
        name,
        file: Some(file),
        named: None,
        cond,
        limit,
        part: Some(Part {
            key,
            total: range.total,
        }),
        writeback: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_of_puts() {
        let r = |start, end, total| Some(PartRange { start, end, total });
        assert_eq!(parse_content_range("bytes 0-99/1000"), r(0, 99, 1000));
        assert_eq!(
            parse_content_range(" bytes 100-999/1000 "),
            r(100, 999, 1000)
        );
        for bad in [
            "bytes */1000",
            "bytes 0-99/*",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes -1/2",
            "bytes 0-1/99999999999999999999",
            "bytes +0-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
