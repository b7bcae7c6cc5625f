//! `zcopy cp`: copy files and trees through the best engine for file → file
//! (copy_file_range first), never leaving a half-written file under the final name.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, SeekFrom};
use rustix::io::Errno;
use zcopy::transfer::{Transfer, TransferError};
use zcopy::{FdKind, Plan, Preference};

/// Arguments of `zcopy cp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zcopy cp big.iso /mnt/backup/            copy into a directory\n  \
zcopy cp -r photos/ /mnt/backup/photos    copy a tree, keeping modes and mtimes\n  \
zcopy cp --engine read-write a b           force the baseline engine\n\n\
A new file is written unnamed (O_TMPFILE, or a hidden temporary name where the file \
system lacks it) and linked into place only when complete, so an interrupted copy never \
leaves a file that looks finished, nor a temporary file. Holes in sparse files stay \
holes; a source that ends before the length it had when opened is an error.\n\n\
An existing destination keeps its mode and owner (as with GNU cp). It is replaced \
atomically by a complete copy, fsync'd before the rename so a power loss leaves the old \
or the new file. Exceptions, where GNU cp's write-through is kept instead (not atomic: an \
interrupted copy leaves a partial file): a destination with other hard links (so every \
name sees the new bytes), one whose owner we may not set, one in a directory we may not \
write, and one that is not a regular file (a device, a FIFO). A symlink destination is \
followed: its target gets the bytes, the link stays. Copying a file onto itself is \
refused.\n\n\
Exit codes: 0 done, 1 I/O error (with -r: some files could not be copied; the others \
were), 2 usage error (missing source, directory without -r, missing destination \
directory, same file, ...), 130 interrupted."
)]
pub struct CpArgs {
    /// File or directory to copy.
    src: PathBuf,
    /// Destination file, or an existing directory to copy into.
    dst: PathBuf,
    /// Copy directories recursively (keeps modes and modification times).
    #[arg(short, long)]
    recursive: bool,
    /// Keep modification and access times of files too.
    #[arg(short, long)]
    preserve: bool,
    /// Engine to prefer: auto, copy-range, sendfile, splice, read-write, mmap, direct ...
    #[arg(long, default_value = "auto", value_parser = parse_pref)]
    engine: Preference,
    /// Progress: "auto" (a bar when stderr is a terminal), "always" (a bar on a
    /// terminal, else a line every second), "never".
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Also fsync new files and their directory (a replaced file is always fsync'd
    /// before the rename).
    #[arg(long)]
    fsync: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ProgressMode {
    Auto,
    Always,
    Never,
}

fn parse_pref(s: &str) -> Result<Preference, String> {
    s.parse().map_err(|e: zcopy::UnknownEngine| e.to_string())
}

/// Files smaller than this get no progress bar.
const PROGRESS_MIN: u64 = 4 << 20;
/// The transfer is checked for Ctrl-C at least this often (bytes).
const CHUNK: u64 = 256 << 20;

/// An error that is the user's to fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// Runs `zcopy cp`.
pub fn run(args: CpArgs) -> anyhow::Result<ExitCode> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))?;
    }
    let mut copier = Copier {
        pref: args.engine,
        preserve_times: args.preserve || args.recursive,
        fsync: args.fsync,
        interrupted,
        progress: None,
        files: 0,
        bytes: 0,
        failed: 0,
        engines: Vec::new(),
    };
    let result = copier.start(&args);
    if let Some(p) = &mut copier.progress {
        p.finish(result.is_ok() && copier.failed == 0);
    }
    match result {
        Ok(()) if copier.failed == 0 => {
            tracing::info!(
                "copied {} file(s), {} bytes ({})",
                copier.files,
                copier.bytes,
                copier.engines.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => {
            eprintln!(
                "zcopy cp: {} entr{} could not be copied; {} file(s) were",
                copier.failed,
                if copier.failed == 1 { "y" } else { "ies" },
                copier.files
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("zcopy cp: {}", crate::logging::describe(&e));
            Ok(if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else if copier.interrupted.load(Ordering::Relaxed) {
                ExitCode::from(130)
            } else {
                ExitCode::from(1)
            })
        }
    }
}

struct Copier {
    pref: Preference,
    preserve_times: bool,
    fsync: bool,
    interrupted: Arc<AtomicBool>,
    progress: Option<Progress>,
    files: u64,
    bytes: u64,
    /// Entries of a tree that could not be copied (reported, then skipped).
    failed: u64,
    engines: Vec<String>,
}

fn usage(msg: String) -> anyhow::Error {
    Usage(msg).into()
}

/// How a file reaches its destination.
enum How {
    /// No file there: an unnamed file linked in when complete.
    New,
    /// A regular file with one link: a complete copy with its mode and owner renamed
    /// over it.
    Replace(fs::Metadata),
    /// GNU cp's way: truncate the existing inode and write into it.
    Through(fs::Metadata),
}

impl Copier {
    fn start(&mut self, args: &CpArgs) -> anyhow::Result<()> {
        let meta = fs::metadata(&args.src).map_err(|e| {
            usage(format!(
                "cannot copy '{}': {}",
                args.src.display(),
                plain(&e)
            ))
        })?;
        let names_dir = args.dst.as_os_str().as_bytes().ends_with(b"/");
        let dst = if args.dst.is_dir() {
            let name = args
                .src
                .file_name()
                .ok_or_else(|| usage(format!("'{}' has no file name", args.src.display())))?;
            args.dst.join(name)
        } else if names_dir && !meta.is_dir() {
            return Err(usage(format!(
                "destination directory '{}' does not exist",
                args.dst.display()
            )));
        } else {
            args.dst.clone()
        };
        if let Some(parent) = dst.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(usage(format!(
                "destination directory '{}' does not exist",
                parent.display()
            )));
        }
        let total = if meta.is_dir() {
            if !args.recursive {
                return Err(usage(format!(
                    "'{}' is a directory (use -r to copy it)",
                    args.src.display()
                )));
            }
            let (src_abs, dst_abs) = (fs::canonicalize(&args.src)?, absolute_parent(&dst)?);
            if dst_abs.starts_with(&src_abs) {
                return Err(usage(format!(
                    "cannot copy '{}' into itself ('{}')",
                    args.src.display(),
                    dst.display()
                )));
            }
            tree_size(&args.src)
        } else {
            meta.len()
        };
        if dst.is_dir() && !meta.is_dir() {
            return Err(usage(format!(
                "destination '{}' is a directory",
                dst.display()
            )));
        }
        self.progress = Progress::new(total, args.progress);
        if meta.is_dir() {
            self.copy_tree(&args.src, &dst)
        } else {
            self.copy_file(&args.src, &dst)
        }
    }

    fn copy_tree(&mut self, src: &Path, dst: &Path) -> anyhow::Result<()> {
        let meta = fs::metadata(src)?;
        match fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
            Err(e) => return Err(e).with_context(|| format!("creating '{}'", dst.display())),
        }
        let mut entries: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("reading directory '{}'", src.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading directory '{}'", src.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(anyhow!("interrupted"));
            }
            let (from, to) = (entry.path(), dst.join(entry.file_name()));
            if let Err(e) = self.copy_entry(&entry, &from, &to) {
                if self.interrupted.load(Ordering::Relaxed) || e.downcast_ref::<Usage>().is_some() {
                    return Err(e);
                }
                // Like GNU cp: say what failed, copy the rest, exit non-zero.
                eprintln!("zcopy cp: {}", crate::logging::describe(&e));
                self.failed += 1;
            }
        }
        fs::set_permissions(dst, meta.permissions())?;
        let dir = File::open(dst)?;
        dir.set_times(
            fs::FileTimes::new()
                .set_modified(meta.modified()?)
                .set_accessed(meta.accessed()?),
        )?;
        Ok(())
    }

    fn copy_entry(&mut self, entry: &fs::DirEntry, from: &Path, to: &Path) -> anyhow::Result<()> {
        let ty = entry.file_type()?;
        if ty.is_symlink() {
            let target = fs::read_link(from)?;
            let _ = fs::remove_file(to);
            std::os::unix::fs::symlink(&target, to)
                .with_context(|| format!("creating symlink '{}'", to.display()))?;
        } else if ty.is_dir() {
            self.copy_tree(from, to)?;
        } else if ty.is_file() {
            self.copy_file(from, to)?;
        } else {
            tracing::warn!(
                "skipping '{}': not a file, directory or symlink",
                from.display()
            );
        }
        Ok(())
    }

    fn copy_file(&mut self, src: &Path, dst: &Path) -> anyhow::Result<()> {
        let from = File::open(src).with_context(|| format!("opening '{}'", src.display()))?;
        let meta = from.metadata()?;
        let (dst, how) = destination(src, &meta, dst)?;
        let result = match how {
            How::Through(existing) => self.write_through(&from, &meta, &dst, &existing),
            How::New => self.write_new(&from, &meta, &dst, None),
            How::Replace(existing) => self.write_new(&from, &meta, &dst, Some(&existing)),
        };
        match result {
            Ok(()) => {
                self.files += 1;
                Ok(())
            }
            Err(e) => Err(e.context(format!(
                "copying '{}' to '{}'",
                src.display(),
                dst.display()
            ))),
        }
    }

    /// A complete copy, linked in under `dst` (new) or renamed over it (`existing`,
    /// whose mode and owner it takes). Falls back to writing through the existing
    /// file where a replacement could not keep its owner, or can't be created.
    fn write_new(
        &mut self,
        from: &File,
        meta: &fs::Metadata,
        dst: &Path,
        existing: Option<&fs::Metadata>,
    ) -> anyhow::Result<()> {
        let tmp = match TempFile::create(dst) {
            Ok(tmp) => tmp,
            Err(e) if existing.is_some() && is_permission(&e) => {
                tracing::debug!(
                    "can't create a file beside '{}': writing through",
                    dst.display()
                );
                return self.write_through(from, meta, dst, existing.expect("checked"));
            }
            Err(e) => return Err(e),
        };
        if let Some(old) = existing {
            match rustix::fs::fchown(
                &tmp.file,
                Some(rustix::fs::Uid::from_raw(old.uid())),
                Some(rustix::fs::Gid::from_raw(old.gid())),
            ) {
                Ok(()) => {}
                Err(rustix::io::Errno::PERM) => {
                    tracing::debug!(
                        "can't keep the owner of '{}': writing through",
                        dst.display()
                    );
                    drop(tmp);
                    return self.write_through(from, meta, dst, old);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.copy_contents(from, meta.len(), &tmp.file, true)?;
        let mode = existing.unwrap_or(meta).permissions().mode() & 0o7777;
        tmp.file.set_permissions(fs::Permissions::from_mode(mode))?;
        if self.preserve_times {
            set_times(&tmp.file, meta)?;
        }
        if existing.is_some() || self.fsync {
            tmp.file.sync_all()?;
        }
        tmp.persist(dst, existing.is_some())
            .with_context(|| format!("moving the copy into place as '{}'", dst.display()))?;
        if self.fsync {
            File::open(parent_of(dst))?.sync_all()?;
        }
        Ok(())
    }

    /// GNU cp's way: the existing inode is truncated and written (its mode, owner
    /// and other links stay). Not atomic.
    fn write_through(
        &mut self,
        from: &File,
        meta: &fs::Metadata,
        dst: &Path,
        existing: &fs::Metadata,
    ) -> anyhow::Result<()> {
        let regular = existing.is_file();
        let to = fs::OpenOptions::new()
            .write(true)
            .truncate(regular)
            .open(dst)
            .with_context(|| format!("opening '{}' for writing", dst.display()))?;
        self.copy_contents(from, meta.len(), &to, regular)?;
        if regular && self.preserve_times {
            set_times(&to, meta)?;
        }
        if regular {
            to.sync_all()?;
        }
        Ok(())
    }

    /// Copies each data extent (SEEK_DATA/SEEK_HOLE), so holes stay holes, then sets
    /// the length (`sparse`; else every byte in order, for sinks that can't seek).
    /// The length is the one fstat gave when the file was opened: a source that ends
    /// before it is an error, whatever the hole probe says.
    fn copy_contents(
        &mut self,
        from: &File,
        len: u64,
        to: &File,
        sparse: bool,
    ) -> anyhow::Result<()> {
        let plan = Plan::with_profile(
            Some(FdKind::File { len }),
            if sparse {
                FdKind::File { len: 0 }
            } else {
                FdKind::of(to.as_fd()).unwrap_or(FdKind::File { len: 0 })
            },
            self.pref,
            None,
            zcopy::profile::Profile::cached_default(),
        );
        let mut transfer = Transfer::with_forced(plan, zcopy::Forced::from_env());
        let mut pos = 0;
        self.show(self.bytes);
        while pos < len {
            let (data, hole) = if sparse {
                let data = match rustix::fs::seek(from, SeekFrom::Data(pos)) {
                    Ok(d) => d.min(len),
                    // No data past `pos`: a hole up to the end, or the end itself.
                    Err(rustix::io::Errno::NXIO) => len,
                    Err(e) => return Err(e.into()),
                };
                check_length(from, data.max(pos), len)?;
                if data >= len {
                    break;
                }
                let hole = rustix::fs::seek(from, SeekFrom::Hole(data))?.min(len);
                rustix::fs::seek(to, SeekFrom::Start(data))?;
                (data, hole)
            } else {
                (pos, len)
            };
            let mut at = data;
            while at < hole {
                if self.interrupted.load(Ordering::Relaxed) {
                    return Err(anyhow!("interrupted"));
                }
                let n = (hole - at).min(CHUNK);
                let base = self.bytes;
                let progress = &mut self.progress;
                transfer.run(from.as_fd(), Some(at), to.as_fd(), Some(n), &mut |done| {
                    if let Some(p) = progress.as_mut() {
                        p.set(base + done);
                    }
                })?;
                at += n;
                self.bytes += n;
            }
            pos = hole;
        }
        check_length(from, len, len)?;
        if sparse {
            to.set_len(len)?;
        }
        tracing::debug!("engines: {}", transfer.report().describe());
        let used = transfer.report().short();
        if !self.engines.contains(&used) {
            self.engines.push(used);
        }
        Ok(())
    }

    fn show(&mut self, pos: u64) {
        if let Some(p) = &mut self.progress {
            p.set(pos);
        }
    }
}

/// The source must still reach `upto` bytes of the `len` it had when opened.
fn check_length(from: &File, upto: u64, len: u64) -> anyhow::Result<()> {
    let now = from.metadata()?.len();
    if now < upto.min(len) {
        return Err(TransferError::SourceShrank {
            expected: len,
            got: now,
        }
        .into());
    }
    Ok(())
}

/// Where the bytes go, and how: a symlink is followed (the target gets the bytes),
/// an existing file is replaced or written through, the same file is refused.
fn destination(src: &Path, meta: &fs::Metadata, dst: &Path) -> anyhow::Result<(PathBuf, How)> {
    let lmeta = match fs::symlink_metadata(dst) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((dst.to_path_buf(), How::New)),
        Err(e) => return Err(e).with_context(|| format!("looking at '{}'", dst.display())),
    };
    let (path, existing) = if lmeta.file_type().is_symlink() {
        match fs::canonicalize(dst) {
            Ok(target) => {
                let m = fs::metadata(&target)?;
                (target, m)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(usage(format!(
                    "not writing through dangling symlink '{}'",
                    dst.display()
                )));
            }
            Err(e) => return Err(e).with_context(|| format!("following '{}'", dst.display())),
        }
    } else {
        (dst.to_path_buf(), lmeta)
    };
    if existing.dev() == meta.dev() && existing.ino() == meta.ino() {
        return Err(usage(format!(
            "'{}' and '{}' are the same file",
            src.display(),
            dst.display()
        )));
    }
    if existing.is_dir() {
        return Err(usage(format!(
            "destination '{}' is a directory",
            dst.display()
        )));
    }
    let how = if existing.is_file() && existing.nlink() == 1 {
        How::Replace(existing)
    } else {
        How::Through(existing)
    };
    Ok((path, how))
}

fn set_times(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    file.set_times(
        fs::FileTimes::new()
            .set_modified(meta.modified()?)
            .set_accessed(meta.accessed()?),
    )
}

fn is_permission(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|e| {
            e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(30)
        })
    })
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The copy being written: unnamed (O_TMPFILE) where the file system allows it, so a
/// killed cp leaves nothing behind; else a hidden name beside the destination,
/// removed unless persisted.
struct TempFile {
    file: File,
    /// The hidden name, when O_TMPFILE was not available.
    path: Option<PathBuf>,
    keep: bool,
}

impl TempFile {
    fn create(dst: &Path) -> anyhow::Result<TempFile> {
        let dir = parent_of(dst);
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => {
                return Ok(TempFile {
                    file: File::from(fd),
                    path: None,
                    keep: false,
                });
            }
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {}
            Err(e) => {
                return Err(io::Error::from(e))
                    .with_context(|| format!("creating a file in '{}'", dir.display()));
            }
        }
        for n in 0..100 {
            let path = temp_name(dst, n)?;
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path: Some(path),
                        file,
                        keep: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating a file in '{}'", dir.display()));
                }
            }
        }
        Err(anyhow!(
            "could not find a free temporary name in '{}'",
            dir.display()
        ))
    }

    /// Puts the copy under `dst`: an unnamed file is linked in directly when nothing
    /// is there, else linked under a hidden name and renamed over `dst` (atomic).
    fn persist(mut self, dst: &Path, replace: bool) -> anyhow::Result<()> {
        if let Some(path) = &self.path {
            fs::rename(path, dst)?;
            self.keep = true;
            return Ok(());
        }
        if !replace {
            match link_unnamed(&self.file, dst) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        for n in 0..100 {
            let path = temp_name(dst, n)?;
            match link_unnamed(&self.file, &path) {
                Ok(()) => {
                    return fs::rename(&path, dst).map_err(|e| {
                        let _ = fs::remove_file(&path);
                        e.into()
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow!("could not find a free temporary name"))
    }
}

fn temp_name(dst: &Path, n: u32) -> anyhow::Result<PathBuf> {
    let name = dst
        .file_name()
        .ok_or_else(|| usage(format!("'{}' has no file name", dst.display())))?;
    Ok(parent_of(dst).join(format!(
        ".{}.zcopy-{}-{n}.part",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Gives an O_TMPFILE file the name `to` (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH;
/// /proc/self/fd works for everyone).
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    match rustix::fs::linkat(file, "", CWD, to, AtFlags::EMPTY_PATH) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {
            let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
            Ok(rustix::fs::linkat(
                CWD,
                proc.as_str(),
                CWD,
                to,
                AtFlags::SYMLINK_FOLLOW,
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let (false, Some(path)) = (self.keep, &self.path) {
            let _ = fs::remove_file(path);
        }
    }
}

fn plain(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn absolute_parent(dst: &Path) -> io::Result<PathBuf> {
    let parent = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(fs::canonicalize(parent)?.join(dst.file_name().unwrap_or_default()))
}

/// Bytes in the regular files of a tree (for the progress display; what can't be
/// read counts 0 here and is reported when copied).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(ty) if ty.is_dir() => total += tree_size(&entry.path()),
            Ok(ty) if ty.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
            _ => {}
        }
    }
    total
}

/// A bar on a terminal; on anything else (with `--progress always`) a plain line at
/// the start, then at most one a second, then at the end.
enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        pos: u64,
        last: Option<Instant>,
    },
}

impl Progress {
    fn new(total: u64, mode: ProgressMode) -> Option<Progress> {
        use std::io::IsTerminal;
        let tty = io::stderr().is_terminal();
        match mode {
            ProgressMode::Never => None,
            ProgressMode::Auto if !(tty && total >= PROGRESS_MIN) => None,
            _ if !tty => Some(Progress::Lines {
                total,
                pos: 0,
                last: None,
            }),
            _ => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                Some(Progress::Bar(bar))
            }
        }
    }

    fn set(&mut self, at: u64) {
        match self {
            Progress::Bar(bar) => bar.set_position(at),
            Progress::Lines { total, pos, last } => {
                *pos = at;
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    eprintln!("{}", progress_line(at, *total));
                }
            }
        }
    }

    fn finish(&mut self, ok: bool) {
        match self {
            Progress::Bar(bar) if ok => bar.finish_and_clear(),
            Progress::Bar(bar) => bar.abandon(),
            Progress::Lines { total, pos, .. } => eprintln!("{}", progress_line(*pos, *total)),
        }
    }
}

fn progress_line(at: u64, total: u64) -> String {
    let pct = (at * 100).checked_div(total).unwrap_or(100);
    format!(
        "zcopy cp: {} of {} ({pct}%)",
        indicatif::HumanBytes(at),
        indicatif::HumanBytes(total)
    )
}
