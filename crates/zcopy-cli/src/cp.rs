//! `zcopy cp`: copy files and trees through the best engine for file → file
//! (copy_file_range first), never leaving a half-written file under the final name.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use rustix::fs::SeekFrom;
use zcopy::transfer::Transfer;
use zcopy::{FdKind, Plan, Preference};

/// Arguments of `zcopy cp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zcopy cp big.iso /mnt/backup/            copy into a directory\n  \
zcopy cp -r photos/ /mnt/backup/photos    copy a tree, keeping modes and mtimes\n  \
zcopy cp --engine read-write a b           force the baseline engine\n\n\
The copy is written to a hidden temporary name next to DST and renamed into place only \
when complete, so an interrupted copy never leaves a file that looks finished. Holes in \
sparse files stay holes.\n\nExit codes: 0 done, 1 I/O error, 2 usage error (missing \
source, directory without -r, ...), 130 interrupted."
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
    /// Show a progress bar even when stderr is not a terminal ("never" to hide it).
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ProgressMode {
    Auto,
    Always,
    Never,
}

fn parse_pref(s: &str) -> Result<Preference, String> {
    s.parse()
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
        interrupted,
        bar: None,
        files: 0,
        bytes: 0,
        engines: Vec::new(),
    };
    match copier.start(&args) {
        Ok(()) => {
            if let Some(bar) = &copier.bar {
                bar.finish_and_clear();
            }
            tracing::info!(
                "copied {} file(s), {} bytes ({})",
                copier.files,
                copier.bytes,
                copier.engines.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if let Some(bar) = &copier.bar {
                bar.abandon();
            }
            eprintln!("zcopy cp: {e:#}");
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
    interrupted: Arc<AtomicBool>,
    bar: Option<ProgressBar>,
    files: u64,
    bytes: u64,
    engines: Vec<String>,
}

fn usage(msg: String) -> anyhow::Error {
    Usage(msg).into()
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
        let dst = if args.dst.is_dir() {
            let name = args
                .src
                .file_name()
                .ok_or_else(|| usage(format!("'{}' has no file name", args.src.display())))?;
            args.dst.join(name)
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
            tree_size(&args.src)?
        } else {
            meta.len()
        };
        if dst.is_dir() && !meta.is_dir() {
            return Err(usage(format!(
                "destination '{}' is a directory",
                dst.display()
            )));
        }
        self.bar = make_bar(total, args.progress);
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
        let mut entries: Vec<_> = fs::read_dir(src)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let (from, to) = (entry.path(), dst.join(entry.file_name()));
            let ty = entry.file_type()?;
            if ty.is_symlink() {
                let target = fs::read_link(&from)?;
                let _ = fs::remove_file(&to);
                std::os::unix::fs::symlink(&target, &to)
                    .with_context(|| format!("creating symlink '{}'", to.display()))?;
            } else if ty.is_dir() {
                self.copy_tree(&from, &to)?;
            } else if ty.is_file() {
                self.copy_file(&from, &to)?;
            } else {
                tracing::warn!(
                    "skipping '{}': not a file, directory or symlink",
                    from.display()
                );
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

    fn copy_file(&mut self, src: &Path, dst: &Path) -> anyhow::Result<()> {
        let from = File::open(src).with_context(|| format!("opening '{}'", src.display()))?;
        let meta = from.metadata()?;
        let tmp = TempPath::create(dst)?;
        let result = self.copy_contents(&from, meta.len(), &tmp.file);
        let result = result.and_then(|()| {
            tmp.file.set_permissions(fs::Permissions::from_mode(
                meta.permissions().mode() & 0o7777,
            ))?;
            if self.preserve_times {
                tmp.file.set_times(
                    fs::FileTimes::new()
                        .set_modified(meta.modified()?)
                        .set_accessed(meta.accessed()?),
                )?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                tmp.persist(dst)
                    .with_context(|| format!("renaming into '{}'", dst.display()))?;
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

    /// Copies each data extent (SEEK_DATA/SEEK_HOLE), so holes stay holes, then sets
    /// the length. The length is the one fstat gave when the file was opened.
    fn copy_contents(&mut self, from: &File, len: u64, to: &File) -> anyhow::Result<()> {
        let plan = Plan::new(
            Some(FdKind::File { len }),
            FdKind::File { len: 0 },
            self.pref,
        );
        let mut transfer = Transfer::new(plan);
        let mut pos = 0;
        while pos < len {
            let data = match rustix::fs::seek(from, SeekFrom::Data(pos)) {
                Ok(d) => d.min(len),
                Err(rustix::io::Errno::NXIO) => len,
                Err(e) => return Err(e.into()),
            };
            if data >= len {
                break;
            }
            let hole = rustix::fs::seek(from, SeekFrom::Hole(data))?.min(len);
            rustix::fs::seek(to, SeekFrom::Start(data))?;
            let mut at = data;
            while at < hole {
                if self.interrupted.load(Ordering::Relaxed) {
                    return Err(anyhow!("interrupted"));
                }
                let n = (hole - at).min(CHUNK);
                let bar = self.bar.clone();
                let base = self.bytes;
                transfer.run(from.as_fd(), Some(at), to.as_fd(), Some(n), &mut |done| {
                    if let Some(bar) = &bar {
                        bar.set_position(base + done);
                    }
                })?;
                at += n;
                self.bytes += n;
            }
            pos = hole;
        }
        to.set_len(len)?;
        tracing::debug!("engines: {}", transfer.report().describe());
        let used = transfer.report().short();
        if !self.engines.contains(&used) {
            self.engines.push(used);
        }
        Ok(())
    }
}

/// A hidden temporary file beside the destination, removed unless persisted.
struct TempPath {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempPath {
    fn create(dst: &Path) -> anyhow::Result<TempPath> {
        let name = dst
            .file_name()
            .ok_or_else(|| usage(format!("'{}' has no file name", dst.display())))?;
        let dir = dst
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for n in 0..100 {
            let path = dir.join(format!(
                ".{}.zcopy-{}-{n}.part",
                name.to_string_lossy(),
                std::process::id()
            ));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempPath {
                        path,
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

    fn persist(mut self, dst: &Path) -> io::Result<()> {
        fs::rename(&self.path, dst)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
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

fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            total += tree_size(&entry.path())?;
        } else if ty.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

fn make_bar(total: u64, mode: ProgressMode) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    let show = match mode {
        ProgressMode::Never => false,
        ProgressMode::Always => true,
        ProgressMode::Auto => total >= PROGRESS_MIN && io::stderr().is_terminal(),
    };
    show.then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template"),
        );
        bar
    })
}
