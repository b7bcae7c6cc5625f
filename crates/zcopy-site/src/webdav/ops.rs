//! MKCOL, DELETE, COPY and MOVE (RFC 4918 §9.3, §9.6, §9.8, §9.9).
//!
//! Each works in the directory that holds its name, opened beneath the root with no
//! symbolic link followed ([`parent`]); a tree is walked by directory fds opened
//! `O_NOFOLLOW`, so a link met inside is removed (DELETE) or left out (COPY) as a
//! name, never followed. Files are copied with copy_file_range (a reflink where the
//! file system can) into a temporary dotfile renamed into place, with their dead
//! properties (user xattrs).

use crate::head::Out;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::locks::{self, Scope};
use super::{Answer, Ctx, status};
use crate::access::Access;
use crate::path::{self, CleanPath, OpenError, Resolved, SymlinkPolicy};
use crate::plan::Response;
use crate::request::Request;
use crate::site::Site;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Most entries a recursive DELETE or COPY walks (beyond: 507 for COPY, the rest
/// left for DELETE with 500).
pub const MAX_TREE: usize = 1_000_000;

/// The directory holding `clean`'s last segment, opened beneath the root with no
/// link followed, and that name. The root itself is 403; a missing or non-directory
/// parent 409.
pub(crate) fn parent(ctx: &Ctx, clean: &CleanPath) -> Result<(File, String), u16> {
    let Some((name, parents)) = clean.segments.split_last() else {
        return Err(403);
    };
    if !ctx.hidden && clean.segments.iter().any(|s| s.starts_with('.')) {
        return Err(403);
    }
    let p = CleanPath {
        segments: parents.to_vec(),
        trailing_slash: true,
        query: None,
    };
    match path::open(&ctx.root, &p, SymlinkPolicy::Never, ctx.hidden) {
        Ok(Resolved::Dir(d, _)) => Ok((d, name.clone())),
        Ok(Resolved::File(..)) | Err(OpenError::NotFound) => Err(409),
        Err(OpenError::Forbidden) => Err(403),
        Err(OpenError::Busy) => Err(503),
        Err(OpenError::Other(_)) => Err(500),
    }
}

/// What is under `name` in `dir` (not following a link).
fn kind(dir: &File, name: &str) -> Result<Option<FileType>, u16> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::ACCESS | Errno::PERM) => Err(403),
        Err(_) => Err(500),
    }
}

/// Something is at `clean`.
pub(crate) fn exists(ctx: &Ctx, clean: &CleanPath) -> Result<bool, u16> {
    if clean.segments.is_empty() {
        return Ok(true);
    }
    let (dir, name) = parent(ctx, clean)?;
    Ok(kind(&dir, &name)?.is_some())
}

/// An empty file at `clean` (a LOCK on an unmapped URL).
pub(crate) fn create_empty(ctx: &Ctx, clean: &CleanPath) -> Result<(), u16> {
    let (dir, name) = parent(ctx, clean)?;
    refuse_sidecar(ctx, &dir, &name)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    rustix::fs::openat(&dir, &name, flags, Mode::from_raw_mode(0o644))
        .map(drop)
        .map_err(errno_status)
}

/// A sidecar beside its original (`x.gz` where `x` is) is refused unless --hidden
/// (it would be served in place of the original).
fn refuse_sidecar(ctx: &Ctx, dir: &File, name: &str) -> Result<(), u16> {
    if !ctx.hidden
        && let Some(orig) = crate::access::original(name)
        && rustix::fs::statat(dir, orig, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    {
        return Err(403);
    }
    Ok(())
}

fn errno_status(e: Errno) -> u16 {
    match e {
        Errno::NOENT | Errno::NOTDIR => 409,
        Errno::EXIST => 405,
        Errno::ACCESS | Errno::PERM | Errno::ROFS => 403,
        Errno::NOSPC | Errno::DQUOT => 507,
        _ => 500,
    }
}

/// MKCOL: 201; 405 if something is there; 409 without a parent.
pub(crate) fn mkcol(
    ctx: &Ctx,
    req: &Request<'_>,
    clean: &CleanPath,
    rel: &str,
    out: &mut Out,
    close: bool,
) -> Response {
    if clean.segments.is_empty() {
        return status(out, 405, close);
    }
    let (dir, name) = match parent(ctx, clean) {
        Ok(p) => p,
        Err(s) => return status(out, s, close),
    };
    match kind(&dir, &name) {
        Ok(Some(_)) => return status(out, 405, close),
        Ok(None) => {}
        Err(s) => return status(out, s, close),
    }
    let parent = locks::parent_rel(rel);
    if let Err(s) = locks::check(ctx, req.dav.if_, rel, &[(&parent, Scope::Exact)]) {
        return status(out, s, close);
    }
    match rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o755)) {
        Ok(()) => status(out, 201, close),
        Err(e) => status(out, errno_status(e), close),
    }
}

/// The header fields a DELETE, COPY or MOVE goes by, owned (it runs off the
/// loop, after the request is gone).
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct Fields {
    pub depth: Option<String>,
    pub overwrite: Option<String>,
    pub if_: Option<String>,
}

impl Fields {
    pub(crate) fn of(req: &Request<'_>) -> Fields {
        Fields {
            depth: req.dav.depth.map(str::to_owned),
            overwrite: req.dav.overwrite.map(str::to_owned),
            if_: req.dav.if_.map(str::to_owned),
        }
    }
}

/// DELETE: a file, or a directory and everything beneath it (204).
pub(crate) fn delete(ctx: &Ctx, f: &Fields, clean: &CleanPath, rel: &str) -> u16 {
    let (dir, name) = match parent(ctx, clean) {
        Ok(p) => p,
        Err(409) => return 404,
        Err(s) => return s,
    };
    let k = match kind(&dir, &name) {
        Ok(Some(k)) => k,
        Ok(None) => return 404,
        Err(s) => return s,
    };
    if k == FileType::Directory
        && f.depth
            .as_deref()
            .is_some_and(|d| !d.trim().eq_ignore_ascii_case("infinity"))
    {
        return 400;
    }
    let parent = locks::parent_rel(rel);
    let scopes = [(rel, Scope::Tree), (parent.as_str(), Scope::Exact)];
    if let Err(s) = locks::check(ctx, f.if_.as_deref(), rel, &scopes) {
        return s;
    }
    match remove(ctx, &dir, &name, k) {
        Ok(()) => {
            locks::forget(ctx, rel);
            204
        }
        Err(s) => s,
    }
}

/// Removes `name` in `dir`: a directory with everything beneath it (a dotfile
/// inside, unless --hidden, refuses the whole: 403, nothing removed).
fn remove(ctx: &Ctx, dir: &File, name: &str, k: FileType) -> Result<(), u16> {
    if k != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(errno_status);
    }
    if !ctx.hidden && has_hidden(dir, name, &mut 0)? {
        return Err(403);
    }
    let mut seen = 0;
    remove_tree(dir, name, &mut seen)
}

fn open_dir(dir: &File, name: &str) -> Result<OwnedFd, u16> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_status)
}

/// The entries of a directory fd (no `.`, `..`), with their types.
fn entries(fd: &OwnedFd, seen: &mut usize) -> Result<Vec<(String, FileType)>, u16> {
    let mut d = rustix::fs::Dir::read_from(fd).map_err(errno_status)?;
    let mut v = Vec::new();
    while let Some(e) = d.read() {
        let e = e.map_err(errno_status)?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        *seen += 1;
        if *seen > MAX_TREE {
            return Err(507);
        }
        let Ok(n) = std::str::from_utf8(n) else {
            // A name no URL can carry: left alone (and then the directory can't go).
            return Err(403);
        };
        let mut t = e.file_type();
        if t == FileType::Unknown {
            t = rustix::fs::statat(fd, n, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .map_err(errno_status)?;
        }
        v.push((n.to_owned(), t));
    }
    Ok(v)
}

/// Something beneath `dir/name` is a dotfile.
fn has_hidden(dir: &File, name: &str, seen: &mut usize) -> Result<bool, u16> {
    let fd = open_dir(dir, name)?;
    let f = File::from(fd);
    for (n, t) in entries(&f.try_clone().map_err(|_| 503u16)?.into(), seen)? {
        if n.starts_with('.') {
            return Ok(true);
        }
        if t == FileType::Directory && has_hidden(&f, &n, seen)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn remove_tree(dir: &File, name: &str, seen: &mut usize) -> Result<(), u16> {
    let fd = open_dir(dir, name)?;
    let f = File::from(fd);
    for (n, t) in entries(&f.try_clone().map_err(|_| 503u16)?.into(), seen)? {
        if t == FileType::Directory {
            remove_tree(&f, &n, seen)?;
        } else {
            rustix::fs::unlinkat(&f, n.as_str(), AtFlags::empty()).map_err(errno_status)?;
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno_status)
}

/// Where a COPY or MOVE goes.
#[derive(Debug)]
pub(crate) struct Dest {
    clean: CleanPath,
    rel: String,
}

impl Dest {
    pub(crate) fn rel(&self) -> &str {
        &self.rel
    }
}

/// The `Destination` header (RFC 4918 §10.3): this server's (same authority, or a
/// path: else 502), a clean path (else 400), visible and writable by this client
/// under the rules (else 403).
pub(crate) fn destination(
    site: &Site,
    ctx: &Ctx,
    req: &Request<'_>,
    access: &mut Access<'_>,
) -> Result<Dest, Answer> {
    let Some(h) = req.dav.destination else {
        return Err(Answer::Status(400));
    };
    let clean = super::url_path(ctx, h).map_err(Answer::Status)?;
    let rel = clean.segments.join("/");
    if !ctx.hidden && clean.segments.iter().any(|s| s.starts_with('.')) {
        return Err(Answer::Status(403));
    }
    if !super::writable(site, &rel) {
        return Err(Answer::Status(403));
    }
    if access.name(&rel).is_err() {
        return Err(Answer::Status(403));
    }
    Ok(Dest { clean, rel })
}

/// COPY or MOVE `clean` to `dest`: 201 when the destination was new, 204 when it
/// was replaced (`Overwrite: T`, the default), 412 for `Overwrite: F` onto
/// something.
pub(crate) fn copy_move(
    ctx: &Ctx,
    f: &Fields,
    clean: &CleanPath,
    rel: &str,
    dest: &Dest,
    is_move: bool,
) -> u16 {
    match copy_move_inner(ctx, f, clean, rel, dest, is_move) {
        Ok(true) => 201,
        Ok(false) => 204,
        Err(s) => s,
    }
}

fn copy_move_inner(
    ctx: &Ctx,
    f: &Fields,
    clean: &CleanPath,
    rel: &str,
    dest: &Dest,
    is_move: bool,
) -> Result<bool, u16> {
    let (sdir, sname) = match parent(ctx, clean) {
        Ok(p) => p,
        Err(409) => return Err(404),
        Err(s) => return Err(s),
    };
    let sk = kind(&sdir, &sname)?.ok_or(404u16)?;
    if sk != FileType::Directory && sk != FileType::RegularFile {
        return Err(403);
    }
    let drel = dest.rel.as_str();
    if drel == rel || (sk == FileType::Directory && locks::is_below(drel, rel)) {
        return Err(403);
    }
    let depth_infinite = match f.depth.as_deref().map(str::trim) {
        None => true,
        Some(d) if d.eq_ignore_ascii_case("infinity") => true,
        Some("0") if !is_move => false,
        Some(_) => return Err(400),
    };
    let overwrite = match f.overwrite.as_deref().map(str::trim) {
        None | Some("T") | Some("t") => true,
        Some("F") | Some("f") => false,
        Some(_) => return Err(400),
    };
    let (ddir, dname) = parent(ctx, &dest.clean)?;
    refuse_sidecar(ctx, &ddir, &dname)?;
    let dk = kind(&ddir, &dname)?;
    if dk.is_some() && !overwrite {
        return Err(412);
    }
    let dparent = locks::parent_rel(drel);
    let sparent = locks::parent_rel(rel);
    let mut scopes = vec![(drel, Scope::Tree), (dparent.as_str(), Scope::Exact)];
    if is_move {
        scopes.push((rel, Scope::Tree));
        scopes.push((sparent.as_str(), Scope::Exact));
    }
    locks::check(ctx, f.if_.as_deref(), rel, &scopes)?;
    if is_move {
        if sk == FileType::Directory && !ctx.hidden && has_hidden(&sdir, &sname, &mut 0)? {
            // Moving would carry names the client can't see.
            return Err(403);
        }
        if let Some(k) = dk
            && (k == FileType::Directory || sk == FileType::Directory)
        {
            remove(ctx, &ddir, &dname, k)?;
        }
        match rustix::fs::renameat(&sdir, sname.as_str(), &ddir, dname.as_str()) {
            Ok(()) => {}
            Err(Errno::XDEV) => {
                // Another file system mounted beneath the root: copy, then remove.
                if let Some(k) = kind(&ddir, &dname)? {
                    remove(ctx, &ddir, &dname, k)?;
                }
                copy_any(ctx, &sdir, &sname, sk, &ddir, &dname, true)?;
                remove(ctx, &sdir, &sname, sk)?;
            }
            Err(e) => return Err(errno_status(e)),
        }
        locks::forget(ctx, rel);
        return Ok(dk.is_none());
    }
    if let Some(k) = dk {
        remove(ctx, &ddir, &dname, k)?;
    }
    copy_any(ctx, &sdir, &sname, sk, &ddir, &dname, depth_infinite)?;
    Ok(dk.is_none())
}

/// Copies the file or directory `sname` (of kind `sk`) to the new `dname`; a
/// directory's members too when `infinite`. A directory copy that fails leaves
/// nothing half-copied behind.
fn copy_any(
    ctx: &Ctx,
    sdir: &File,
    sname: &str,
    sk: FileType,
    ddir: &File,
    dname: &str,
    infinite: bool,
) -> Result<(), u16> {
    if sk != FileType::Directory {
        return copy_file(ctx, sdir, sname, ddir, dname);
    }
    let mut seen = 0;
    let sfd = File::from(open_dir(sdir, sname)?);
    rustix::fs::mkdirat(ddir, dname, Mode::from_raw_mode(0o755)).map_err(errno_status)?;
    let copied = copy_members(ctx, &sfd, ddir, dname, infinite, &mut seen);
    if let Err(s) = copied {
        let mut n = 0;
        let _ = remove_tree(ddir, dname, &mut n);
        return Err(s);
    }
    Ok(())
}

/// Copies the regular file `sname` (not following a link) to `dname`: into a
/// temporary dotfile by copy_file_range, then renamed into place.
fn copy_file(ctx: &Ctx, sdir: &File, sname: &str, ddir: &File, dname: &str) -> Result<(), u16> {
    let src = rustix::fs::openat(
        sdir,
        sname,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(errno_status)?;
    let st = rustix::fs::fstat(&src).map_err(|_| 500u16)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(403);
    }
    #[allow(clippy::unnecessary_cast)] // differs between architectures
    if ctx.guarded && st.st_nlink as u64 > 1 {
        // GET refuses it on a guarded site: a copy must not make it fetchable.
        return Err(403);
    }
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let short: String = dname.chars().take(32).collect();
    let tmp = format!(".{short}.zcopy-copy-{}-{n}", std::process::id());
    let dst = rustix::fs::openat(
        ddir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(errno_status)?;
    let done = copy_bytes(&src, &dst, st.st_size as u64).and_then(|()| {
        copy_props(&src, &dst);
        rustix::fs::renameat(ddir, tmp.as_str(), ddir, dname).map_err(errno_status)
    });
    if done.is_err() {
        let _ = rustix::fs::unlinkat(ddir, tmp.as_str(), AtFlags::empty());
    }
    done
}

/// `len` bytes from `src` to `dst` by copy_file_range (the kernel copies, or shares
/// extents where it can), falling back to read/write where it can't.
fn copy_bytes(src: &OwnedFd, dst: &OwnedFd, len: u64) -> Result<(), u16> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => continue,
            Err(Errno::XDEV | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
                return copy_by_read(src, dst);
            }
            Err(e) => return Err(errno_status(e)),
        }
    }
    Ok(())
}

fn copy_by_read(src: &OwnedFd, dst: &OwnedFd) -> Result<(), u16> {
    use std::io::{Read, Write};
    let mut s = File::from(src.try_clone().map_err(|_| 503u16)?);
    let mut d = File::from(dst.try_clone().map_err(|_| 503u16)?);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = s.read(&mut buf).map_err(|_| 500u16)?;
        if n == 0 {
            return Ok(());
        }
        d.write_all(&buf[..n])
            .map_err(|e| errno_status(Errno::from_raw_os_error(e.raw_os_error().unwrap_or(0))))?;
    }
}

/// Copies the dead properties (user xattrs) of `src` to `dst`, as far as the
/// file system keeps them.
fn copy_props(src: &impl AsFd, dst: &impl AsFd) {
    for (name, value) in super::props::dead_raw(src) {
        let _ = rustix::fs::fsetxattr(dst, name.as_str(), &value, rustix::fs::XattrFlags::empty());
    }
}

/// Copies the directory `sname` to the new `dname`: its members too when
/// `infinite` (dotfiles left out unless --hidden, symbolic links always).
fn copy_tree(
    ctx: &Ctx,
    sdir: &File,
    sname: &str,
    ddir: &File,
    dname: &str,
    infinite: bool,
    seen: &mut usize,
) -> Result<(), u16> {
    let sfd = File::from(open_dir(sdir, sname)?);
    rustix::fs::mkdirat(ddir, dname, Mode::from_raw_mode(0o755)).map_err(errno_status)?;
    copy_members(ctx, &sfd, ddir, dname, infinite, seen)
}

/// Copies the dead properties of the open directory `sfd` to the new directory
/// `dname`, and its members when `infinite`.
fn copy_members(
    ctx: &Ctx,
    sfd: &File,
    ddir: &File,
    dname: &str,
    infinite: bool,
    seen: &mut usize,
) -> Result<(), u16> {
    let dfd = File::from(open_dir(ddir, dname)?);
    copy_props(sfd, &dfd);
    if !infinite {
        return Ok(());
    }
    for (n, t) in entries(&sfd.try_clone().map_err(|_| 503u16)?.into(), seen)? {
        if !ctx.hidden && n.starts_with('.') {
            continue;
        }
        match t {
            FileType::Directory => copy_tree(ctx, sfd, &n, &dfd, &n, true, seen)?,
            FileType::RegularFile => copy_file(ctx, sfd, &n, &dfd, &n)?,
            _ => {}
        }
    }
    Ok(())
}
