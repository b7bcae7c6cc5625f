//! From request target to an open file beneath the root, never outside it.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::request::HttpError;

const BAD_PATH: HttpError = HttpError {
    status: 400,
    reason: "bad request path",
};

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
///
/// The target must start with `/`. A `%` not followed by two hex digits is 400 (a
/// literal `%` must arrive as `%25`), as is a segment that isn't UTF-8 once decoded.
/// `#` has no special meaning (clients never send fragments) and is kept literally.
/// Decoding happens once: `%252e` is the file name `%2e`.
pub fn clean(target: &str) -> Result<CleanPath, HttpError> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    if !path.starts_with('/') {
        return Err(BAD_PATH);
    }
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        if raw == "." || raw == ".." || !escapes_well_formed(raw.as_bytes()) {
            return Err(BAD_PATH);
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        let seg = String::from_utf8(decoded).map_err(|_| BAD_PATH)?;
        if seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
            return Err(BAD_PATH);
        }
        segments.push(seg);
    }
    Ok(CleanPath {
        segments,
        trailing_slash: path.ends_with('/'),
        query,
    })
}

/// Every `%` is followed by two hex digits.
fn escapes_well_formed(raw: &[u8]) -> bool {
    raw.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (raw.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && raw.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Missing, hidden (dotfile without `hidden`), not a file or dir, or refused by
    /// the symlink policy (→ 404).
    NotFound,
    /// Permission denied (→ 403).
    Forbidden,
    /// Out of file descriptors or kernel memory for now (→ 503).
    Busy,
    /// Anything else (→ 500), with errno text.
    Other(String),
}

/// Opens `path` beneath `root` (openat2 RESOLVE_BENEATH / RESOLVE_NO_SYMLINKS per
/// `symlinks`; one open + one fstat). Dotfile segments are NotFound unless `hidden`.
///
/// Syscalls on the hot path: one `openat2` (or `openat` for
/// [`SymlinkPolicy::Follow`]) and one `fstat`. The file is opened
/// `O_RDONLY|O_CLOEXEC|O_NOCTTY|O_NONBLOCK`: O_NONBLOCK keeps a FIFO from blocking
/// the open (it is then refused after the fstat, like sockets and devices: only
/// regular files and directories are served); regular files ignore the flag.
/// A symlink the policy refuses, a missing file, a non-directory in the middle of the
/// path and an escape attempt are all [`OpenError::NotFound`]; EACCES/EPERM is
/// [`OpenError::Forbidden`].
///
/// On kernels without openat2 (ENOSYS, before 5.6) the path is walked one segment
/// at a time with O_NOFOLLOW, so `WithinRoot` then degrades to `Never` (safe, but
/// symlinks inside the root stop working).
pub fn open(
    root: &OwnedFd,
    path: &CleanPath,
    symlinks: SymlinkPolicy,
    hidden: bool,
) -> Result<Resolved, OpenError> {
    if !hidden && path.segments.iter().any(|s| s.starts_with('.')) {
        return Err(OpenError::NotFound);
    }
    open_noting_links(root, path, symlinks, hidden).map(|(r, _)| r)
}

/// [`open`], also saying whether a symbolic link was followed on the way (then the
/// caller looks at where it led: [`crate::access::real_rel`]). Costs nothing more
/// when no link is met; a path through a link costs one more `openat2`.
pub fn open_noting_links(
    root: &OwnedFd,
    path: &CleanPath,
    symlinks: SymlinkPolicy,
    hidden: bool,
) -> Result<(Resolved, bool), OpenError> {
    if !hidden && path.segments.iter().any(|s| s.starts_with('.')) {
        return Err(OpenError::NotFound);
    }
    let rel = if path.segments.is_empty() {
        String::from(".")
    } else {
        path.segments.join("/")
    };
    open_beneath_noting(root.as_fd(), &rel, symlinks)
}

/// Opens `name` in the already-open directory `dir` (for the index file).
///
/// `name` must be a single path component; anything else is NotFound.
pub fn open_in_dir(dir: &File, name: &str, symlinks: SymlinkPolicy) -> Result<Resolved, OpenError> {
    open_in_dir_noting_links(dir, name, symlinks).map(|(r, _)| r)
}

/// [`open_in_dir`], also saying whether a symbolic link was followed.
pub fn open_in_dir_noting_links(
    dir: &File,
    name: &str,
    symlinks: SymlinkPolicy,
) -> Result<(Resolved, bool), OpenError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(OpenError::NotFound);
    }
    open_beneath_noting(dir.as_fd(), name, symlinks)
}

/// Opens `rel` (segments joined by `/`, none `.`, `..` or empty) beneath `dir` per
/// `symlinks` (for sidecars and fallback files named by the server, not the client).
pub fn open_at(
    dir: BorrowedFd<'_>,
    rel: &str,
    symlinks: SymlinkPolicy,
) -> Result<Resolved, OpenError> {
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(OpenError::NotFound);
    }
    open_beneath(dir, rel, symlinks)
}

/// Flags for the final open.
fn file_flags() -> OFlags {
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

/// Opens `rel` (segments joined by `/`, no `.`/`..`) beneath `dir` per `symlinks`.
fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &str,
    symlinks: SymlinkPolicy,
) -> Result<Resolved, OpenError> {
    open_beneath_noting(dir, rel, symlinks).map(|(r, _)| r)
}

/// [`open_beneath`], also saying whether a symbolic link was followed: the path is
/// first opened with no link allowed; only when that meets one (ELOOP) is it opened
/// again as the policy allows.
fn open_beneath_noting(
    dir: BorrowedFd<'_>,
    rel: &str,
    symlinks: SymlinkPolicy,
) -> Result<(Resolved, bool), OpenError> {
    let strict = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
    let first = match openat2_retrying(dir, rel, strict) {
        Err(Errno::NOSYS) if symlinks == SymlinkPolicy::Follow => None,
        Err(Errno::NOSYS) => return open_segments(dir, rel).map(|r| (r, false)),
        Err(Errno::LOOP) if symlinks != SymlinkPolicy::Never => None,
        other => Some(other),
    };
    if let Some(fd) = first {
        return classify(fd.map_err(map_errno)?).map(|r| (r, false));
    }
    let fd = match symlinks {
        SymlinkPolicy::Follow => rustix::fs::openat(dir, rel, file_flags(), Mode::empty()),
        _ => openat2_retrying(dir, rel, ResolveFlags::BENEATH),
    };
    classify(fd.map_err(map_errno)?).map(|r| (r, true))
}

/// openat2 with the file flags, retried while the kernel asks (a rename or mount
/// raced with the lookup).
fn openat2_retrying(
    dir: BorrowedFd<'_>,
    rel: &str,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut attempt = 0;
    loop {
        match rustix::fs::openat2(dir, rel, file_flags(), Mode::empty(), resolve) {
            Err(Errno::AGAIN) if attempt < 8 => attempt += 1,
            other => return other,
        }
    }
}

/// The openat2 fallback: walks `rel` one segment at a time, never following a
/// symlink (O_NOFOLLOW on every step).
fn open_segments(dir: BorrowedFd<'_>, rel: &str) -> Result<Resolved, OpenError> {
    let mut parts = rel.split('/').peekable();
    let mut held: Option<OwnedFd> = None;
    while let Some(seg) = parts.next() {
        let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
        if parts.peek().is_some() {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = rustix::fs::openat(at, seg, flags, Mode::empty()).map_err(map_errno)?;
            held = Some(next);
        } else {
            let fd = rustix::fs::openat(at, seg, file_flags() | OFlags::NOFOLLOW, Mode::empty())
                .map_err(map_errno)?;
            return classify(fd);
        }
    }
    Err(OpenError::NotFound)
}

/// fstat the opened fd and keep it only if it is a regular file or a directory.
fn classify(fd: OwnedFd) -> Result<Resolved, OpenError> {
    let st = rustix::fs::fstat(&fd).map_err(map_errno)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(Resolved::File(File::from(fd), st)),
        FileType::Directory => Ok(Resolved::Dir(File::from(fd), st)),
        _ => Err(OpenError::NotFound),
    }
}

/// Maps an open error to what the client is told.
fn map_errno(e: Errno) -> OpenError {
    match e {
        Errno::NOENT
        | Errno::NOTDIR
        | Errno::LOOP
        | Errno::XDEV
        | Errno::NAMETOOLONG
        | Errno::NXIO
        | Errno::NODEV => OpenError::NotFound,
        Errno::ACCESS | Errno::PERM => OpenError::Forbidden,
        Errno::MFILE | Errno::NFILE | Errno::NOMEM => OpenError::Busy,
        other => OpenError::Other(std::io::Error::from(other).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    fn segs(target: &str) -> Vec<String> {
        clean(target).unwrap().segments
    }

    #[test]
    fn clean_ok() {
        let c = clean("/a/b%20c/d.txt?x=1&y=%2F").unwrap();
        assert_eq!(c.segments, ["a", "b c", "d.txt"]);
        assert!(!c.trailing_slash);
        assert_eq!(c.query.as_deref(), Some("x=1&y=%2F"));

        let c = clean("/").unwrap();
        assert!(c.segments.is_empty());
        assert!(c.trailing_slash);
        assert_eq!(c.query, None);

        let c = clean("/dir/?").unwrap();
        assert_eq!(c.segments, ["dir"]);
        assert!(c.trailing_slash);
        assert_eq!(c.query.as_deref(), Some(""));

        assert_eq!(segs("//a///b//"), ["a", "b"]);
        assert_eq!(segs("/%252e%252e"), ["%2e%2e"]);
        assert_eq!(segs("/%25"), ["%"]);
        assert_eq!(segs("/a#b"), ["a#b"]);
        assert_eq!(segs("/caf%C3%A9"), ["café"]);
        assert_eq!(segs("/...."), ["...."]);
        assert_eq!(segs("/.hidden/..x/x.."), [".hidden", "..x", "x.."]);
        assert_eq!(segs("/a+b"), ["a+b"]);
    }

    #[test]
    fn clean_rejects() {
        let bad = [
            "/..",
            "/a/../b",
            "/./a",
            "/a/.",
            "/%2e%2e",
            "/%2E%2e/x",
            "/%2e",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/%ff",
            "/%c3",
            "/%zz",
            "/%4",
            "/a%",
            "a/b",
            "",
            "*",
            "?x",
        ];
        for t in bad {
            assert_eq!(clean(t).map_err(|e| e.status), Err(400), "{t:?}");
        }
        // The query is not decoded or checked.
        assert!(clean("/a?..%zz").is_ok());
    }

    /// A temp dir with a root inside it and a secret outside the root.
    struct Tree {
        _tmp: tempfile::TempDir,
        root_path: std::path::PathBuf,
        root: OwnedFd,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::write(base.join("outside.txt"), b"secret").unwrap();
        let r = base.join("root");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/b.txt"), b"bee").unwrap();
        std::fs::write(r.join(".secret"), b"dot").unwrap();
        std::fs::create_dir(r.join(".git")).unwrap();
        std::fs::write(r.join(".git/config"), b"cfg").unwrap();
        std::fs::write(r.join("we ird#%?.txt"), b"weird").unwrap();
        symlink(base.join("outside.txt"), r.join("abs_out")).unwrap();
        symlink("../outside.txt", r.join("rel_out")).unwrap();
        symlink("sub/b.txt", r.join("in_link")).unwrap();
        symlink("sub", r.join("dir_link")).unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("missing", r.join("dangling")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, r.join("fifo"), Mode::from_raw_mode(0o644)).unwrap();
        let root = rustix::fs::open(
            &r,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        Tree {
            _tmp: tmp,
            root_path: r,
            root,
        }
    }

    fn read(
        target: &str,
        t: &Tree,
        policy: SymlinkPolicy,
        hidden: bool,
    ) -> Result<String, OpenError> {
        match open(&t.root, &clean(target).unwrap(), policy, hidden)? {
            Resolved::File(mut f, st) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(st.st_size as usize, s.len());
                Ok(s)
            }
            Resolved::Dir(..) => Ok(String::from("<dir>")),
        }
    }

    #[test]
    fn open_plain_files_and_dirs() {
        let t = tree();
        for p in [
            SymlinkPolicy::Follow,
            SymlinkPolicy::WithinRoot,
            SymlinkPolicy::Never,
        ] {
            assert_eq!(read("/a.txt", &t, p, false).unwrap(), "hello");
            assert_eq!(read("/sub/b.txt", &t, p, false).unwrap(), "bee");
            assert_eq!(read("//sub//b.txt", &t, p, false).unwrap(), "bee");
            assert_eq!(
                read("/we%20ird%23%25%3F.txt", &t, p, false).unwrap(),
                "weird"
            );
            assert_eq!(read("/", &t, p, false).unwrap(), "<dir>");
            assert_eq!(read("/sub/", &t, p, false).unwrap(), "<dir>");
            assert_eq!(read("/nope", &t, p, false), Err(OpenError::NotFound));
            assert_eq!(read("/a.txt/x", &t, p, false), Err(OpenError::NotFound));
            assert_eq!(read("/dangling", &t, p, false), Err(OpenError::NotFound));
        }
    }

    #[test]
    fn symlink_policies() {
        use SymlinkPolicy::*;
        let t = tree();
        let nf = Err(OpenError::NotFound);
        let cases: &[(&str, SymlinkPolicy, Result<&str, OpenError>)] = &[
            ("/abs_out", Follow, Ok("secret")),
            ("/rel_out", Follow, Ok("secret")),
            ("/in_link", Follow, Ok("bee")),
            ("/dir_link/b.txt", Follow, Ok("bee")),
            ("/abs_out", WithinRoot, nf.clone()),
            ("/rel_out", WithinRoot, nf.clone()),
            ("/slash", WithinRoot, nf.clone()),
            ("/in_link", WithinRoot, Ok("bee")),
            ("/dir_link/b.txt", WithinRoot, Ok("bee")),
            ("/abs_out", Never, nf.clone()),
            ("/rel_out", Never, nf.clone()),
            ("/in_link", Never, nf.clone()),
            ("/dir_link/b.txt", Never, nf.clone()),
        ];
        for (target, policy, want) in cases {
            let got = read(target, &t, *policy, false);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "{target} {policy:?}"
            );
        }
    }

    #[test]
    fn hidden_files() {
        let t = tree();
        let p = SymlinkPolicy::WithinRoot;
        assert_eq!(read("/.secret", &t, p, false), Err(OpenError::NotFound));
        assert_eq!(read("/.git/config", &t, p, false), Err(OpenError::NotFound));
        assert_eq!(read("/%2esecret", &t, p, false), Err(OpenError::NotFound));
        assert_eq!(read("/.secret", &t, p, true).unwrap(), "dot");
        assert_eq!(read("/.git/config", &t, p, true).unwrap(), "cfg");
    }

    #[test]
    fn fifo_and_socket_not_opened() {
        let t = tree();
        let sock = t.root_path.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let root = t.root.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            for name in ["/fifo", "/sock"] {
                for p in [
                    SymlinkPolicy::Follow,
                    SymlinkPolicy::WithinRoot,
                    SymlinkPolicy::Never,
                ] {
                    out.push(open(&root, &clean(name).unwrap(), p, false).map(|_| ()));
                }
            }
            tx.send(out).unwrap();
        });
        let results = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("opening a FIFO must not block");
        assert!(
            results.iter().all(|r| *r == Err(OpenError::NotFound)),
            "{results:?}"
        );
    }

    #[test]
    fn permission_denied() {
        if rustix::process::geteuid().is_root() {
            eprintln!("skipped: running as root, EACCES can't happen");
            return;
        }
        let t = tree();
        let f = t.root_path.join("locked");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        assert_eq!(
            read("/locked", &t, SymlinkPolicy::WithinRoot, false),
            Err(OpenError::Forbidden)
        );
    }

    #[test]
    fn errno_mapping() {
        for e in [
            Errno::NOENT,
            Errno::NOTDIR,
            Errno::LOOP,
            Errno::XDEV,
            Errno::NXIO,
        ] {
            assert_eq!(map_errno(e), OpenError::NotFound, "{e:?}");
        }
        assert_eq!(map_errno(Errno::ACCESS), OpenError::Forbidden);
        assert_eq!(map_errno(Errno::PERM), OpenError::Forbidden);
        assert_eq!(map_errno(Errno::MFILE), OpenError::Busy);
        assert!(matches!(map_errno(Errno::IO), OpenError::Other(s) if !s.is_empty()));
    }

    #[test]
    fn index_in_dir() {
        let t = tree();
        let Resolved::Dir(dir, _) = open(
            &t.root,
            &clean("/sub/").unwrap(),
            SymlinkPolicy::WithinRoot,
            false,
        )
        .unwrap() else {
            panic!("not a dir")
        };
        assert!(matches!(
            open_in_dir(&dir, "b.txt", SymlinkPolicy::Never),
            Ok(Resolved::File(..))
        ));
        for bad in ["", ".", "..", "../a.txt", "x/y", "missing"] {
            assert_eq!(
                open_in_dir(&dir, bad, SymlinkPolicy::Follow).map(|_| ()),
                Err(OpenError::NotFound),
                "{bad:?}"
            );
        }
        let Resolved::Dir(root_dir, _) = open(
            &t.root,
            &clean("/").unwrap(),
            SymlinkPolicy::WithinRoot,
            false,
        )
        .unwrap() else {
            panic!("not a dir")
        };
        assert!(matches!(
            open_in_dir(&root_dir, "in_link", SymlinkPolicy::WithinRoot),
            Ok(Resolved::File(..))
        ));
        assert_eq!(
            open_in_dir(&root_dir, "in_link", SymlinkPolicy::Never).map(|_| ()),
            Err(OpenError::NotFound)
        );
        assert_eq!(
            open_in_dir(&root_dir, "abs_out", SymlinkPolicy::WithinRoot).map(|_| ()),
            Err(OpenError::NotFound)
        );
        assert!(matches!(
            open_in_dir(&root_dir, "abs_out", SymlinkPolicy::Follow),
            Ok(Resolved::File(..))
        ));
    }

    #[test]
    fn fallback_walk_never_follows() {
        let t = tree();
        let root = t.root.as_fd();
        let ok = |rel: &str| match open_segments(root, rel) {
            Ok(Resolved::File(mut f, _)) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            }
            Ok(Resolved::Dir(..)) => "<dir>".into(),
            Err(e) => panic!("{rel}: {e:?}"),
        };
        assert_eq!(ok("a.txt"), "hello");
        assert_eq!(ok("sub/b.txt"), "bee");
        assert_eq!(ok("sub"), "<dir>");
        assert_eq!(ok("."), "<dir>");
        for rel in [
            "abs_out",
            "rel_out",
            "in_link",
            "dir_link/b.txt",
            "slash",
            "fifo",
            "nope",
            "a.txt/x",
        ] {
            assert_eq!(
                open_segments(root, rel).map(|_| ()),
                Err(OpenError::NotFound),
                "{rel}"
            );
        }
    }
}
