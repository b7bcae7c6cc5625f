//! From request target to an open file beneath the root, never outside it.
//! (stub: signatures fixed, bodies to be written)

use std::fs::File;
use std::os::fd::OwnedFd;

use crate::request::HttpError;

/// What to do with symbolic links inside the root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Follow any symlink, even out of the root.
    Follow,
    /// Follow symlinks only while they stay beneath the root.
    #[default]
    WithinRoot,
    /// Never follow symlinks.
    Never,
}

/// A percent-decoded, checked request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanPath {
    /// Decoded segments, none empty, `.`, `..`, or containing `/`, `\` or NUL.
    pub segments: Vec<String>,
    /// The target ended with `/`.
    pub trailing_slash: bool,
    /// The raw query string, if any (without `?`).
    pub query: Option<String>,
}

/// Splits off the query, percent-decodes each segment exactly once and rejects
/// anything that could climb out (`.`, `..`, `/`, `\`, NUL in a segment) with 400.
/// Empty segments (`//`) are dropped.
pub fn clean(target: &str) -> Result<CleanPath, HttpError> {
    let _ = target;
    Err(HttpError {
        status: 400,
        reason: "not implemented yet",
    })
}

/// What a clean path names beneath the root.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, opened read-only, with the fstat of the open fd.
    File(File, rustix::fs::Stat),
    /// A directory, opened (O_DIRECTORY), with its fstat.
    Dir(File, rustix::fs::Stat),
}

/// Why a path can't be served.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Missing, hidden (dotfile without `hidden`), not a file or dir, or refused by
    /// the symlink policy (→ 404).
    NotFound,
    /// Permission denied (→ 403).
    Forbidden,
    /// Anything else (→ 500), with errno text.
    Other(String),
}

/// Opens `path` beneath `root` (openat2 RESOLVE_BENEATH / RESOLVE_NO_SYMLINKS per
/// `symlinks`; one open + one fstat). Dotfile segments are NotFound unless `hidden`.
pub fn open(
    root: &OwnedFd,
    path: &CleanPath,
    symlinks: SymlinkPolicy,
    hidden: bool,
) -> Result<Resolved, OpenError> {
    let _ = (root, path, symlinks, hidden);
    Err(OpenError::NotFound)
}

/// Opens `name` in the already-open directory `dir` (for the index file).
pub fn open_in_dir(dir: &File, name: &str, symlinks: SymlinkPolicy) -> Result<Resolved, OpenError> {
    let _ = (dir, name, symlinks);
    Err(OpenError::NotFound)
}
