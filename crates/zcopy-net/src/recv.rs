//! The receiving end: checks each entry, writes file bytes from the socket into a
//! `.part` file beneath the output directory (with `O_DIRECT` where the file system
//! takes it, else splice), fsyncs, and renames it into place.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, FileType, OFlags, SeekFrom, Timespec, Timestamps};
use zcopy::profile::Profile;
use zcopy::receive::Writeback;
use zcopy::transfer::Transfer;
use zcopy::{EngineKind, FdKind, Forced, Plan, Preference};

use crate::dest::{OutDir, check_path, open_in};
use crate::proto::{
    self, Entry, FEAT_BYREF, FEAT_RESUME, FEAT_VERIFY, Kind, Reply, SendMode, Verdict, printable,
};

/// How the receiver behaves.
#[derive(Clone, Debug)]
pub struct RecvConfig {
    /// Directory everything is written under.
    pub out: PathBuf,
    /// Replace existing files.
    pub force: bool,
    /// Offer to resume partial files.
    pub resume: bool,
    /// Most entries in one connection.
    pub max_files: u64,
    /// Largest single file.
    pub max_size: u64,
    /// Engine preference for socket → file.
    pub engine: Preference,
    /// A sender that sends nothing (and reads nothing) for this long is dropped.
    pub idle_timeout: Duration,
}

impl Default for RecvConfig {
    fn default() -> RecvConfig {
        RecvConfig {
            out: PathBuf::from("."),
            force: false,
            resume: true,
            max_files: 1_000_000,
            max_size: u64::MAX,
            engine: Preference::Auto,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What one connection delivered.
#[derive(Clone, Debug, Default)]
pub struct RecvSummary {
    /// Files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Bytes received from the socket.
    pub bytes: u64,
    /// Bytes that were already there (resume / identical files).
    pub skipped_bytes: u64,
    /// Engines that moved the bytes, e.g. "splice".
    pub engines: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Observes a transfer (progress bars, logs).
pub trait Progress {
    /// A file starts: its path, size, and the offset it resumes from.
    fn file_start(&self, path: &str, size: u64, offset: u64);
    /// `done` bytes of the current file are in place.
    fn file_progress(&self, done: u64);
    /// The current file is complete.
    fn file_done(&self);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn file_start(&self, _: &str, _: u64, _: u64) {}
    fn file_progress(&self, _: u64) {}
    fn file_done(&self) {}
}

fn refuse(conn: &mut TcpStream, why: String) -> io::Result<io::Error> {
    Reply::refused(why.clone()).write(conn)?;
    Ok(io::Error::new(io::ErrorKind::PermissionDenied, why))
}

/// Waits at most `timeout` for a complete hello on `conn`; returns the sender's
/// features. A connection that closes or stalls first is no sender.
///
/// `timeout` bounds the whole hello, not each read: a peer dripping one byte at a
/// time is dropped as soon as the deadline passes.
pub fn await_hello(conn: &mut TcpStream, timeout: Duration) -> io::Result<u32> {
    let deadline = Instant::now() + timeout;
    let mut hello = [0u8; proto::HELLO_LEN];
    let mut got = 0;
    while got < hello.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete hello within {timeout:?}"),
            ));
        }
        conn.set_read_timeout(Some(left))?;
        match conn.read(&mut hello[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    proto::read_hello(&mut &hello[..])
}

/// Serves one sender whose hello (`theirs`, from [`await_hello`]) was read, until
/// its end entry (or an error, or `cfg.idle_timeout` without progress).
pub fn receive(
    mut conn: TcpStream,
    theirs: u32,
    cfg: &RecvConfig,
    progress: &dyn Progress,
) -> io::Result<RecvSummary> {
    let started = Instant::now();
    conn.set_read_timeout(Some(cfg.idle_timeout))?;
    conn.set_write_timeout(Some(cfg.idle_timeout))?;
    let watchdog = Watchdog::new(&conn, cfg.idle_timeout)?;
    let out = OutDir::open(&cfg.out)?;
    let ours = FEAT_VERIFY | FEAT_BYREF | if cfg.resume { FEAT_RESUME } else { 0 };
    proto::write_hello(&mut conn, ours)?;
    let features = theirs & ours;
    let mut summary = RecvSummary::default();
    let mut touched = Touched::default();
    let mut entries = 0u64;
    loop {
        let entry = Entry::read(&mut conn)?;
        if entry.kind == Kind::End {
            rustix::fs::fsync(out.fd())?;
            touched.sync_all()?;
            summary.elapsed = started.elapsed();
            let msg = format!(
                "{} files, {} bytes in {:.2}s via {}",
                summary.files,
                summary.bytes,
                summary.elapsed.as_secs_f64(),
                if summary.engines.is_empty() {
                    "-".to_string()
                } else {
                    summary.engines.join(", ")
                }
            );
            Reply::ok(0, msg).write(&mut conn)?;
            return Ok(summary);
        }
        entries += 1;
        if entries > cfg.max_files {
            return Err(refuse(
                &mut conn,
                format!("more than {} entries", cfg.max_files),
            )?);
        }
        let segs = match check_path(&entry.path) {
            Ok(s) => s,
            Err(why) => {
                let shown = String::from_utf8_lossy(&entry.path).into_owned();
                return Err(refuse(
                    &mut conn,
                    format!("refusing path {shown:?}: {why}"),
                )?);
            }
        };
        let (name, parents) = segs.split_last().expect("at least one segment");
        match entry.kind {
            Kind::Dir => {
                // An existing directory keeps its mode: only one created here gets
                // the sender's.
                let made = match out.dir(&segs, false) {
                    Ok(d) => Ok((d, false)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        out.dir(&segs, true).map(|d| (d, true))
                    }
                    Err(e) => Err(e),
                };
                let dir = match made {
                    Ok((d, created)) => {
                        if created {
                            let mode = rustix::fs::Mode::from_raw_mode(entry.mode & 0o777);
                            let _ = rustix::fs::fchmod(&d, mode);
                        }
                        d
                    }
                    Err(e) => {
                        let shown = printable(&String::from_utf8_lossy(&entry.path));
                        return Err(refuse(
                            &mut conn,
                            format!("cannot create directory '{shown}': {e}"),
                        )?);
                    }
                };
                touched.add(dir)?;
                summary.dirs += 1;
                Reply::ok(0, "").write(&mut conn)?;
            }
            Kind::File => {
                if entry.size > cfg.max_size {
                    return Err(refuse(
                        &mut conn,
                        format!(
                            "file of {} bytes exceeds the limit of {}",
                            entry.size, cfg.max_size
                        ),
                    )?);
                }
                let parent = match out.dir(parents, true) {
                    Ok(d) => d,
                    Err(e) => {
                        return Err(refuse(
                            &mut conn,
                            format!("cannot open parent directory: {e}"),
                        )?);
                    }
                };
                receive_file(
                    &mut conn,
                    &watchdog,
                    &parent,
                    name,
                    &entry,
                    cfg,
                    features,
                    &mut summary,
                    progress,
                )?;
                touched.add(parent)?;
            }
            Kind::End => unreachable!(),
        }
    }
}

/// Drops a sender whose file data stops for the idle timeout, measured from the last
/// bytes that arrived. The socket's own receive timeout restarts with every read
/// call, and an engine step that moved bytes and then waited out the timeout returns
/// those bytes instead of the timeout, so a stopped sender lasted up to twice the
/// limit. This thread watches the file being written (its size grows with every
/// chunk, also inside one engine step) a few times per limit, and shuts the socket's
/// read side once it stopped growing for the limit.
struct Watchdog {
    shared: std::sync::Arc<WatchShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchShared {
    state: std::sync::Mutex<WatchState>,
    wake: std::sync::Condvar,
    fired: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WatchState {
    /// The file being received, its size when last looked at, and when it last grew.
    armed: Option<(File, u64, Instant)>,
    done: bool,
}

impl Watchdog {
    fn new(conn: &TcpStream, idle: Duration) -> io::Result<Watchdog> {
        let sock = conn.try_clone()?;
        let shared = std::sync::Arc::new(WatchShared {
            state: std::sync::Mutex::new(WatchState::default()),
            wake: std::sync::Condvar::new(),
            fired: std::sync::atomic::AtomicBool::new(false),
        });
        let mine = shared.clone();
        let every = (idle / 8).max(Duration::from_millis(50));
        let thread = std::thread::Builder::new()
            .name("recv-idle".into())
            .spawn(move || {
                let mut st = mine.lock();
                while !st.done {
                    if let Some((file, size, grew)) = &mut st.armed {
                        let now = file.metadata().map_or(*size, |m| m.len());
                        if now != *size {
                            (*size, *grew) = (now, Instant::now());
                        } else if grew.elapsed() >= idle {
                            mine.fired.store(true, std::sync::atomic::Ordering::SeqCst);
                            let _ = sock.shutdown(std::net::Shutdown::Read);
                            return;
                        }
                    }
                    let wait = if st.armed.is_some() {
                        every
                    } else {
                        Duration::from_secs(3600)
                    };
                    st = mine
                        .wake
                        .wait_timeout(st, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            })?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// A file's data starts: watch `file` from now.
    fn arm(&self, file: &File) -> io::Result<()> {
        let size = file.metadata()?.len();
        self.shared.lock().armed = Some((file.try_clone()?, size, Instant::now()));
        self.shared.wake.notify_all();
        Ok(())
    }

    /// The data phase is over: nothing to watch until the next [`Watchdog::arm`].
    fn disarm(&self) {
        self.shared.lock().armed = None;
    }

    /// Whether it dropped the sender.
    fn fired(&self) -> bool {
        self.shared.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl WatchShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().done = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Directories that got new entries, fsync'd before the final reply: each one once
/// (by device and inode), and at most [`Touched::MAX`] fds held, so a tree of many
/// files in few directories holds few fds (a low `ulimit -n` is enough).
#[derive(Default)]
struct Touched {
    dirs: Vec<(u64, u64, OwnedFd)>,
}

impl Touched {
    const MAX: usize = 8;

    fn add(&mut self, dir: OwnedFd) -> io::Result<()> {
        let st = rustix::fs::fstat(&dir)?;
        let id = (st.st_dev, st.st_ino);
        if self.dirs.iter().any(|(d, i, _)| (*d, *i) == id) {
            return Ok(());
        }
        if self.dirs.len() >= Self::MAX {
            let (_, _, old) = self.dirs.remove(0);
            rustix::fs::fsync(&old)?;
        }
        self.dirs.push((id.0, id.1, dir));
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        for (_, _, dir) in self.dirs.drain(..) {
            rustix::fs::fsync(&dir)?;
        }
        Ok(())
    }
}

fn part_name(name: &OsStr, entry: &Entry) -> Vec<u8> {
    let mut v = b".".to_vec();
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(format!(".zcopy-{}-{}.part", entry.size, entry.mtime_sec).as_bytes());
    v
}

#[allow(clippy::too_many_arguments)]
fn receive_file(
    conn: &mut TcpStream,
    watchdog: &Watchdog,
    dir: &OwnedFd,
    name: &OsStr,
    entry: &Entry,
    cfg: &RecvConfig,
    features: u32,
    summary: &mut RecvSummary,
    progress: &dyn Progress,
) -> io::Result<()> {
    let shown = printable(&String::from_utf8_lossy(&entry.path));
    // Whatever is under the final name (not following a symlink): a regular file
    // identical by size + mtime counts as received; anything else (a different file,
    // a symlink, a FIFO) is only replaced with --force; a directory never.
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(refuse(conn, format!("'{shown}': {e}"))?),
        Ok(st) => {
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Directory {
                return Err(refuse(conn, format!("'{shown}' is a directory here"))?);
            }
            let same = kind == FileType::RegularFile
                && st.st_size as u64 == entry.size
                && st.st_mtime == entry.mtime_sec;
            if same && !cfg.force {
                Reply::ok(entry.size, "already there").write(conn)?;
                summary.skipped_bytes += entry.size;
                let mode = read_mode(conn, features)?;
                return finish_file(
                    conn, dir, None, name, entry, features, mode, summary, progress, &shown,
                );
            }
            if !cfg.force {
                let what = if kind == FileType::RegularFile {
                    "exists"
                } else {
                    "exists (not a regular file)"
                };
                return Err(refuse(
                    conn,
                    format!("'{shown}' {what} (the receiver can pass --force to replace it)"),
                )?);
            }
        }
    }
    let part_v = part_name(name, entry);
    let part = OsStr::from_bytes(&part_v);
    let lent_v = lent_name(&part_v);
    let lent = OsStr::from_bytes(&lent_v);
    let opened = adopt_lent(dir, lent, part, features)
        .and_then(|unchecked| Ok((open_part(dir, part, entry, features)?, unchecked)));
    let ((mut fd, mut offset), unchecked) = match opened {
        Ok(p) => p,
        Err(e) => return Err(refuse(conn, format!("'{shown}': {e}"))?),
    };
    let free = rustix::fs::fstatvfs(&fd)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(u64::MAX);
    if entry.size - offset > free {
        drop(fd);
        let _ = rustix::fs::unlinkat(dir, part, rustix::fs::AtFlags::empty());
        return Err(refuse(
            conn,
            format!(
                "no space for '{shown}': {} bytes needed, {free} free",
                entry.size - offset
            ),
        )?);
    }
    if unchecked && offset > 0 {
        // A prefix sent by reference by a sender that failed: its last bytes may
        // have been read after the file changed. Resume only if it hashes the same
        // as the source's first `offset` bytes.
        Reply::ok(offset, proto::CHECK_PREFIX).write(conn)?;
        let mut theirs = [0u8; 16];
        conn.read_exact(&mut theirs)?;
        let file = File::from(fd);
        if proto::hash_range(&file, 0, offset)? != theirs {
            tracing::warn!("'{shown}': the kept prefix differs from the source: starting afresh");
            file.set_len(0)?;
            offset = 0;
        }
        fd = OwnedFd::from(file);
    }
    Reply::ok(offset, "").write(conn)?;
    summary.skipped_bytes += offset;
    let mode = match read_mode(conn, features) {
        Ok(m) => m,
        Err(e) => {
            drop(fd);
            if offset == 0 {
                let _ = rustix::fs::unlinkat(dir, part, AtFlags::empty());
            }
            return Err(e);
        }
    };
    progress.file_start(&shown, entry.size, offset);
    rustix::fs::seek(&fd, SeekFrom::Start(offset))?;
    let file = File::from(fd);
    let want = entry.size - offset;
    let mut t = Transfer::with_forced(plan_for(cfg.engine, offset, want), Forced::from_env());
    watchdog.arm(&file)?;
    // The file's write-back starts every few MiB while the bytes arrive (on a
    // thread of its own), so the fsync below finds little left to write.
    let mut wb = Writeback::new();
    let mut last = 0;
    let result = t
        .run(conn.as_fd(), None, file.as_fd(), Some(want), &mut |done| {
            wb.wrote(&file, done - last);
            last = done;
            progress.file_progress(offset + done)
        })
        .map(|_| ());
    watchdog.disarm();
    let got = t.report().bytes;
    summary.bytes += got;
    if let Err(e) = result {
        // Keep the .part file: the next attempt resumes from it. One sent by
        // reference is kept under another name (its last bytes may have been read
        // after the file changed): a resume checks it against the source first.
        file.sync_data().ok();
        let lent_bytes = mode == SendMode::ByReference;
        if lent_bytes {
            drop(file);
            let _ = rustix::fs::renameat(dir, part, dir, lent);
        }
        // The socket's own receive timeout is the idle timeout too: it can expire
        // just before the watchdog sees the file stop growing.
        let timed_out = matches!(
            e.io_kind(),
            Some(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
        );
        let why = match &e {
            _ if watchdog.fired() || timed_out => format!(
                "no data for {:?} (--idle-timeout) after {} of {} bytes",
                cfg.idle_timeout,
                offset + got,
                entry.size
            ),
            // The socket ended before the promised length: the sender stopped.
            zcopy::TransferError::SourceShrank { .. } => format!(
                "connection closed after {} of {} bytes",
                offset + got,
                entry.size
            ),
            e => e.to_string(),
        };
        let msg = if lent_bytes {
            format!(
                "'{shown}': {why} (kept {} bytes sent by reference, to be checked \
                 against the source before a resume)",
                offset + got
            )
        } else {
            format!("'{shown}': {why} (kept {} bytes to resume)", offset + got)
        };
        if !connection_failed(&e) {
            // Our side failed (a full disk, EIO, a quota): tell the sender why before
            // closing; it reads this once its sending fails.
            let _ = Reply::refused(msg.clone()).write(conn);
        }
        return Err(io::Error::other(msg));
    }
    let used = t.report().short();
    if !used.is_empty() && !summary.engines.contains(&used) {
        summary.engines.push(used);
    }
    finish_file(
        conn,
        dir,
        Some((file, part)),
        name,
        entry,
        features,
        mode,
        summary,
        progress,
        &shown,
    )
}

/// The plan for a file's bytes, socket → file: `pref` when one is named, else the
/// calibration profile's order for the pair, else for [`DIRECT_FROM`] bytes or more
/// `direct` first (then splice, io_uring, read-write), and splice first below.
/// `direct` writes whole blocks with `O_DIRECT`; a file system without it (tmpfs
/// before 6.6) falls back to splice before a byte is read.
fn plan_for(pref: Preference, offset: u64, want: u64) -> Plan {
    let (src, sink) = (Some(FdKind::TcpSocket), FdKind::File { len: offset });
    let profile = Profile::cached_default();
    let measured = profile.is_some_and(|p| p.order(src, sink, Some(want)).is_some());
    let pref = match pref {
        Preference::Auto if !measured && want >= DIRECT_FROM => {
            Preference::Prefer(EngineKind::Direct)
        }
        p => p,
    };
    Plan::with_profile(src, sink, pref, Some(want), profile)
}

/// The smallest file `auto` receives with `O_DIRECT`. Measured here
/// (`bench/recv-tree.sh 5`: the receiver's CPU-s with direct against splice, fsyncs
/// included, medians of 5 rounds, trees sent over loopback): 1,000 files of 64 KiB
/// 1.03x, 400 of 256 KiB 1.00x, 200 of 512 KiB 0.87x, 200 of 1 MiB 0.76-0.84x,
/// 100 of 2 MiB 0.67x, 50 of 4 MiB 0.58x; one file of 1 GiB 0.11 against 1.06
/// CPU-s/GB (`bench/sendrecv.sh`). Below, an `O_DIRECT` write to a fresh file
/// allocating its blocks at once and the fsync's journal cost what splice's copy
/// into the page cache does.
pub const DIRECT_FROM: u64 = 1 << 20;

/// The name a `.part` file sent by reference is kept under after a failure.
fn lent_name(part: &[u8]) -> Vec<u8> {
    let mut v = part.strip_suffix(b".part").unwrap_or(part).to_vec();
    v.extend_from_slice(b".lent.part");
    v
}

/// A kept `.part` of bytes sent by reference (`lent`) becomes the `.part` to resume
/// when the sender can check it (it speaks [`FEAT_BYREF`]): returns whether it did.
/// Otherwise it is deleted.
fn adopt_lent(dir: &OwnedFd, lent: &OsStr, part: &OsStr, features: u32) -> io::Result<bool> {
    match rustix::fs::statat(dir, lent, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
        Ok(_) if features & FEAT_BYREF == 0 => {
            rustix::fs::unlinkat(dir, lent, AtFlags::empty())?;
            Ok(false)
        }
        Ok(_) => {
            rustix::fs::renameat(dir, lent, dir, part)?;
            Ok(true)
        }
    }
}

/// With [`FEAT_BYREF`], the sender's byte after our offset reply: how it sends.
fn read_mode(conn: &mut TcpStream, features: u32) -> io::Result<SendMode> {
    if features & FEAT_BYREF == 0 {
        return Ok(SendMode::Copied);
    }
    let mut b = [0u8; 1];
    conn.read_exact(&mut b)?;
    SendMode::from_byte(b[0])
}

/// Whether a failed socket → file transfer failed on the socket side (the sender went
/// away or stalled), where a reply can't help.
fn connection_failed(e: &zcopy::TransferError) -> bool {
    match e {
        zcopy::TransferError::SourceShrank { .. } => true,
        zcopy::TransferError::Io { source, .. } => matches!(
            source.kind(),
            io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Opens the `.part` file for `entry` and the offset to resume from. One that is not
/// a regular file of ours (a symlink, a FIFO, a hard link to a file elsewhere: more
/// than one link) is removed and created afresh (O_EXCL), never written through.
fn open_part(
    dir: &OwnedFd,
    part: &OsStr,
    entry: &Entry,
    features: u32,
) -> io::Result<(OwnedFd, u64)> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NONBLOCK;
    let fd = match open_in(dir, part, flags, 0o600) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_nlink == 1 {
                Some(fd)
            } else {
                None
            }
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => None,
        Err(e) => return Err(e),
    };
    let fd = match fd {
        Some(fd) => fd,
        None => {
            tracing::warn!(
                "'{}': not a plain .part file (a link?): starting afresh",
                printable(&String::from_utf8_lossy(&entry.path))
            );
            rustix::fs::unlinkat(dir, part, AtFlags::empty())?;
            open_in(dir, part, flags | OFlags::EXCL, 0o600)?
        }
    };
    rustix::fs::fcntl_setfl(&fd, OFlags::RDWR)?;
    let have = rustix::fs::fstat(&fd)?.st_size as u64;
    let offset = if features & FEAT_RESUME != 0 && have <= entry.size {
        have
    } else {
        0
    };
    rustix::fs::ftruncate(&fd, offset)?;
    Ok((fd, offset))
}

#[allow(clippy::too_many_arguments)]
fn finish_file(
    conn: &mut TcpStream,
    dir: &OwnedFd,
    part: Option<(File, &OsStr)>,
    name: &OsStr,
    entry: &Entry,
    features: u32,
    mode: SendMode,
    summary: &mut RecvSummary,
    progress: &dyn Progress,
    shown: &str,
) -> io::Result<()> {
    let mut their_hash = [0u8; 16];
    if features & FEAT_VERIFY != 0 {
        conn.read_exact(&mut their_hash)?;
    }
    let Some((file, part)) = part else {
        if features & FEAT_VERIFY != 0 {
            let existing = File::from(open_in(dir, name, OFlags::RDONLY, 0)?);
            if proto::hash_file(&existing)? != their_hash {
                return Err(refuse(
                    conn,
                    format!(
                        "'{shown}' exists with different content (the receiver can pass \
                         --force to replace it)"
                    ),
                )?);
            }
        }
        Reply::ok(0, "").write(conn)?;
        summary.files += 1;
        return Ok(());
    };
    if features & FEAT_VERIFY != 0 && proto::hash_file(&file)? != their_hash {
        drop(file);
        let _ = rustix::fs::unlinkat(dir, part, rustix::fs::AtFlags::empty());
        return Err(refuse(
            conn,
            format!("'{shown}': checksum mismatch, file discarded"),
        )?);
    }
    if mode == SendMode::ByReference {
        // Every byte is in our file: the sender says whether they are the file's.
        Reply::ok(entry.size, "landed").write(conn)?;
        let mut b = [0u8; 1];
        let verdict = conn
            .read_exact(&mut b)
            .and_then(|()| Verdict::from_byte(b[0]));
        if verdict.as_ref().ok() != Some(&Verdict::Keep) {
            drop(file);
            let _ = rustix::fs::unlinkat(dir, part, AtFlags::empty());
            let verdict = verdict?;
            tracing::warn!("'{shown}': changed while it was being sent: discarded");
            debug_assert_eq!(verdict, Verdict::Discard);
            Reply::ok(0, "discarded").write(conn)?;
            return Ok(());
        }
    }
    rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(entry.mode & 0o777))?;
    let mtime = Timespec {
        tv_sec: entry.mtime_sec,
        tv_nsec: entry.mtime_nsec.min(999_999_999) as _,
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let atime = Timespec {
        tv_sec: now.as_secs() as i64,
        tv_nsec: now.subsec_nanos() as _,
    };
    rustix::fs::futimens(
        &file,
        &Timestamps {
            last_access: atime,
            last_modification: mtime,
        },
    )?;
    file.sync_all()?;
    rustix::fs::renameat(dir, part, dir, name)?;
    progress.file_done();
    Reply::ok(0, "").write(conn)?;
    conn.flush()?;
    summary.files += 1;
    Ok(())
}
