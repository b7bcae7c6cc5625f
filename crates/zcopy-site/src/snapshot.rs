//! The snapshot store: one per server, shared by every worker. Each entry is a sealed
//! memory file ([`zcopy::snapshot`]) holding one complete version of a file, or of a
//! compressed variant of it, that can never change: it is served by reference to any
//! peer, with no lease.
//!
//! - **Keyed by version**: device, inode, size, mtime and ctime (which no user can set:
//!   a write with the mtime put back still moves it), and the variant. A changed
//!   file's stat never matches an old key.
//! - **Dropped on change**: the store watches each source inode with inotify (the same
//!   [`Watcher`] the workers' file caches use) before it reads it, and drops every
//!   entry of an inode that reports a change, at the next lookup. A file the watch
//!   can't cover (a network or FUSE file system, no inotify) gets no snapshot.
//! - **Made once, off the event loop**: variants are made by one background thread
//!   from a bounded queue ([`QUEUE`]); a request that finds none queues the job and is
//!   answered with the identity meanwhile. A job whose source moved while it was read
//!   (two fstats differ) is thrown away.
//! - **Bounded** by `--snapshot-memory` bytes ([`default_budget`]), least recently
//!   used first out.
//! - **Hot files only** for snapshots of files themselves ([`Store::request_hot`]): a
//!   version is copied on its second request, so a client fetching a tree once does
//!   not copy every file a second time nor push the hot ones out.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::lock;
use crate::watch::{Notice, Watcher};

/// Jobs waiting for the background compressor at most; more are not queued (their
/// requests get the identity, and a later request queues the job again).
pub const QUEUE: usize = 64;

/// Files smaller than this are not compressed: the saving does not pay for a second
/// body and its ETag.
pub const COMPRESS_MIN: u64 = 1024;

/// Files larger than this are not compressed (nor more than 1/8 of the budget).
pub const COMPRESS_MAX: u64 = 32 << 20;

/// Versions seen once ([`Store::request_hot`]) remembered at most; past it the
/// memory starts afresh.
pub const SEEN_MAX: usize = 4096;

/// The default `--snapshot-band` for peers not on loopback (a veth, a NIC; loopback
/// has [`DEFAULT_BAND_LOOPBACK`]): files from 65 KiB to 16 MiB. Up to 64 KiB a
/// worker holds a hot file's bytes and sends them from memory, which measured as
/// cheap as lending at 64 KiB on epoll and cheaper on io_uring across a veth pair
/// (1.2x the requests per server CPU-s, since a snapshot goes there by `sendfile`
/// too; 2.5x while it went by a ring splice); above 16 MiB a second copy of a file
/// takes too much of the budget (bench/results/snapshot.md).
pub const DEFAULT_BAND: (u64, u64) = (65 << 10, 16 << 20);

/// The default band for a peer on this host's loopback path (a loopback address or
/// one of this host's own addresses): from 32 KiB. Over loopback, lending a snapshot
/// by `sendfile` measured cheaper per request than the copy from held bytes from
/// 32 KiB on (requests per server CPU-s, band vs off, 2-3 alternating runs: 32 KiB
/// 1.10-1.13x on both drivers, 64 KiB 1.01-1.11x; 16 KiB 0.74-0.91x, a loss).
/// Across a veth pair it did not (above), so other peers keep [`DEFAULT_BAND`]
/// (bench/results/snapshot.md, `SNAP_SIZES="16 32 64" bench/snapshot.sh 3 5 16k-16M`).
pub const DEFAULT_BAND_LOOPBACK: (u64, u64) = (32 << 10, 16 << 20);

/// The gzip level variants are made at (made once, so the best).
pub const GZIP_LEVEL: u32 = 9;

/// The default `--snapshot-memory`: 1/16 of the machine's RAM, at most 1 GiB (64 MiB
/// when the RAM size is unknown).
pub fn default_budget() -> u64 {
    let ram = rustix::system::sysinfo();
    let total = ram.totalram.saturating_mul(u64::from(ram.mem_unit.max(1)));
    match total {
        0 => 64 << 20,
        t => (t / 16).min(1 << 30),
    }
}

/// What a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The file's own bytes.
    Identity,
    /// The file gzip-compressed.
    Gzip,
    /// The file brotli-compressed.
    Br,
    /// The file zstd-compressed.
    Zstd,
}

impl Variant {
    /// The Content-Encoding token (`None` for the identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Variant::Identity => None,
            Variant::Gzip => Some("gzip"),
            Variant::Br => Some("br"),
            Variant::Zstd => Some("zstd"),
        }
    }
}

/// One version of one file, and a variant of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    variant: Variant,
}

impl Key {
    /// The key of `variant` of the file version with fstat `st`.
    #[allow(clippy::unnecessary_cast)] // field types differ between architectures
    pub fn of(st: &rustix::fs::Stat, variant: Variant) -> Key {
        Key {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            variant,
        }
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }
}

/// A sealed snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// The sealed memory file.
    pub file: Arc<File>,
    /// Its length.
    pub len: u64,
}

#[derive(Debug)]
struct Entry {
    snap: Arc<Snapshot>,
    used: u64,
    wd: i32,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Queued or being made.
    pending: HashSet<Key>,
    /// Requested once by [`Store::request_hot`], not yet made.
    seen: HashSet<Key>,
    /// The loop turn whose lookups found the notices read ([`Store::get`]).
    drained: Option<Instant>,
    /// Watch → the keys it guards.
    by_wd: HashMap<i32, Vec<Key>>,
    /// Watches of sources being read, and whether a change was reported since.
    making: HashMap<i32, bool>,
    tick: u64,
    bytes: u64,
    /// Made at the first snapshot; `Err` once making it failed (then none are made).
    watcher: Option<Result<Watcher, ()>>,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lookups that found a snapshot.
    pub hits: AtomicU64,
    /// Lookups that found none.
    pub misses: AtomicU64,
    /// Bytes the snapshots hold.
    pub bytes: AtomicU64,
    /// Snapshots dropped to make room.
    pub evictions: AtomicU64,
    /// Snapshots dropped because their file changed.
    pub invalidations: AtomicU64,
}

/// A lookup's loop turn, as the store's change notices see it.
#[derive(Clone, Copy, Debug)]
pub struct Turn {
    /// The turn's clock reading.
    pub now: Instant,
    /// The worker's loop watches the store's notice fd ([`Store::notice_fd`]) and
    /// calls [`Store::notices_waiting`] when it turns readable: notices are read
    /// only then, not in every turn.
    pub watched: bool,
}

/// The store (see the module documentation).
#[derive(Debug)]
pub struct Store {
    budget: u64,
    inner: Mutex<Inner>,
    /// A copy of the watcher's fd, for the workers' loops to watch (made with it).
    notice_fd: OnceLock<Arc<OwnedFd>>,
    /// A worker's loop saw the notice fd readable since the notices were read last
    /// by a lookup of a watching worker.
    notices_wait: AtomicBool,
    /// The counters.
    pub counters: Counters,
    jobs: Mutex<Option<SyncSender<Job>>>,
}

#[derive(Debug)]
struct Job {
    key: Key,
    file: Arc<File>,
}

impl Store {
    /// A store holding at most `budget` bytes (0: none, nothing is ever made).
    pub fn new(budget: u64) -> Arc<Store> {
        Arc::new(Store {
            budget,
            inner: Mutex::new(Inner::default()),
            notice_fd: OnceLock::new(),
            notices_wait: AtomicBool::new(false),
            counters: Counters::default(),
            jobs: Mutex::new(None),
        })
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        lock(&self.inner).bytes
    }

    /// The fd that turns readable when change notices wait, once the store has one
    /// (made with the first snapshot). A worker's loop that watches it calls
    /// [`Store::notices_waiting`] each time it reports it readable, and looks up
    /// with [`Turn::watched`] set.
    pub fn notice_fd(&self) -> Option<&Arc<OwnedFd>> {
        self.notice_fd.get()
    }

    /// The notice fd was reported readable: the next watching lookup reads them.
    pub fn notices_waiting(&self) {
        self.notices_wait.store(true, Ordering::SeqCst);
    }

    /// Whether notices reported by [`Store::notices_waiting`] are still unread (a
    /// loop that has to re-arm a one-shot watch does so once they are read).
    pub fn notices_unread(&self) -> bool {
        self.notices_wait.load(Ordering::SeqCst)
    }

    /// The snapshot for `key`, if one is held, looked up in `turn`: no change
    /// reported before the turn is answered from an old snapshot. The change
    /// notices are read once per turn, or, where the worker's loop watches their
    /// fd, when a loop reported it readable (the change that queued a notice came
    /// before the readiness the turn's wait returned; the notices read by any
    /// worker's lookup apply to all).
    pub fn get(&self, key: &Key, turn: Turn) -> Option<Arc<Snapshot>> {
        let mut inner = lock(&self.inner);
        let read = if turn.watched {
            self.notices_wait.swap(false, Ordering::SeqCst)
        } else {
            inner.drained != Some(turn.now)
        };
        if read {
            inner.drained = Some(turn.now);
            self.read_notices(&mut inner);
        }
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(key) {
            Some(e) => {
                e.used = tick;
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.snap.clone())
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A file of `len` bytes is worth a compressed variant under this budget.
    pub fn compressible_size(&self, len: u64) -> bool {
        (COMPRESS_MIN..=COMPRESS_MAX.min(self.budget / 8)).contains(&len)
    }

    /// [`Store::request`] on the second call for `key`: the first only remembers it
    /// (at most [`SEEN_MAX`] keys).
    pub fn request_hot(self: &Arc<Self>, key: Key, file: Arc<File>) {
        {
            let mut inner = lock(&self.inner);
            if !inner.seen.remove(&key) {
                if inner.seen.len() >= SEEN_MAX {
                    inner.seen.clear();
                }
                inner.seen.insert(key);
                return;
            }
        }
        self.request(key, file);
    }

    /// Queues the making of `key` from `file` (the open file whose fstat gave `key`)
    /// on the background thread, unless it is held, queued, or the queue is full.
    pub fn request(self: &Arc<Self>, key: Key, file: Arc<File>) {
        {
            let mut inner = lock(&self.inner);
            if inner.map.contains_key(&key) || inner.pending.contains(&key) {
                return;
            }
            inner.pending.insert(key);
        }
        let mut jobs = lock(&self.jobs);
        if jobs.is_none() {
            let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
            let store = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("zcopy-compress".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let Some(store) = store.upgrade() else { return };
                        store.make(job);
                    }
                });
            match spawned {
                Ok(_) => *jobs = Some(tx),
                Err(e) => tracing::warn!("no compression thread: {e}"),
            }
        }
        let sent = match &*jobs {
            Some(tx) => match tx.try_send(Job { key, file }) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        drop(jobs);
        if !sent {
            lock(&self.inner).pending.remove(&key);
        }
    }

    /// Makes and stores `job` (on the background thread).
    fn make(&self, job: Job) {
        let Job { key, file } = job;
        match self.snapshot(key, &file) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(?key, "snapshot not kept: source moved or no room"),
            Err(e) => tracing::debug!(?key, "snapshot failed: {e}"),
        }
        lock(&self.inner).pending.remove(&key);
    }

    /// Makes `key` from `file` now (the caller's thread) and stores it; `Ok(false)`
    /// when it was not kept (the file changed meanwhile, can't be watched, or the
    /// snapshot does not fit).
    pub fn snapshot(&self, key: Key, file: &File) -> io::Result<bool> {
        let wd = {
            let mut inner = lock(&self.inner);
            let watcher = inner.watcher.get_or_insert_with(|| {
                let w =
                    Watcher::new().map_err(|e| tracing::debug!("no inotify, no snapshots: {e}"))?;
                // Without a copy for the loops to watch, they read it every turn.
                if let Ok(fd) = w.fd().try_clone_to_owned() {
                    let _ = self.notice_fd.set(Arc::new(fd));
                }
                Ok(w)
            });
            let wd = match watcher {
                Ok(w) => match w.watch(file) {
                    Ok(wd) => wd,
                    Err(_) => return Ok(false),
                },
                Err(()) => return Ok(false),
            };
            inner.making.insert(wd, false);
            wd
        };
        let made = self.read_source(key, file);
        let mut inner = lock(&self.inner);
        self.read_notices(&mut inner);
        let changed = inner.making.remove(&wd).unwrap_or(true);
        let (kept, made) = match made {
            Ok(Some((snap, len))) if !changed => {
                (self.insert(&mut inner, key, snap, len, wd), Ok(()))
            }
            Ok(_) => (false, Ok(())),
            Err(e) => (false, Err(e)),
        };
        if !kept
            && !inner.by_wd.contains_key(&wd)
            && let Some(Ok(w)) = &inner.watcher
        {
            w.unwatch(wd);
        }
        made.map(|_| kept)
    }

    /// The snapshot of `key` read from `file`, if `file` was that version before and
    /// after.
    fn read_source(&self, key: Key, file: &File) -> io::Result<Option<(File, u64)>> {
        // The watch is in place: from here on a change is noticed. The bytes are kept
        // only if the file still is the version `key` names after they were read.
        let before = rustix::fs::fstat(file)?;
        if Key::of(&before, key.variant) != key {
            return Ok(None);
        }
        let len = key.size.max(0) as u64;
        let name = match key.variant {
            Variant::Identity => "zcopy-snapshot",
            Variant::Gzip => "zcopy-gzip",
            Variant::Br => "zcopy-br",
            Variant::Zstd => "zcopy-zstd",
        };
        let snap = match key.variant {
            Variant::Identity => zcopy::snapshot::copy_of(name, file, len)?,
            Variant::Gzip => zcopy::snapshot::made_by(name, |out| gzip(file, len, out))?,
            Variant::Br => zcopy::snapshot::made_by(name, |out| brotli(file, len, out))?,
            Variant::Zstd => zcopy::snapshot::made_by(name, |out| zstd(file, len, out))?,
        };
        let after = rustix::fs::fstat(file)?;
        if Key::of(&after, key.variant) != key {
            return Ok(None);
        }
        let snap_len = rustix::fs::fstat(&snap)?.st_size.max(0) as u64;
        Ok(Some((snap, snap_len)))
    }

    /// Stores a snapshot, evicting the least recently used to make room.
    fn insert(&self, inner: &mut Inner, key: Key, snap: File, len: u64, wd: i32) -> bool {
        if len > self.budget {
            return false;
        }
        while inner.bytes + len > self.budget {
            let Some((&victim, _)) = inner.map.iter().min_by_key(|(_, e)| e.used) else {
                break;
            };
            self.remove(inner, &victim);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                snap: Arc::new(Snapshot {
                    file: Arc::new(snap),
                    len,
                }),
                used,
                wd,
            },
        ) {
            inner.bytes -= old.snap.len;
        }
        inner.bytes += len;
        let keys = inner.by_wd.entry(wd).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
        self.counters.bytes.store(inner.bytes, Ordering::Relaxed);
        true
    }

    /// Drops `key`, and its watch when no other key shares it.
    fn remove(&self, inner: &mut Inner, key: &Key) {
        let Some(e) = inner.map.remove(key) else {
            return;
        };
        inner.bytes -= e.snap.len;
        self.counters.bytes.store(inner.bytes, Ordering::Relaxed);
        if let Some(keys) = inner.by_wd.get_mut(&e.wd) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                inner.by_wd.remove(&e.wd);
                if let Some(Ok(w)) = &inner.watcher {
                    w.unwatch(e.wd);
                }
            }
        }
    }

    /// Applies the change notices read so far: every snapshot of a changed inode goes.
    fn read_notices(&self, inner: &mut Inner) {
        let Some(Ok(watcher)) = &mut inner.watcher else {
            return;
        };
        let mut changed = Vec::new();
        let mut overflow = false;
        watcher.drain(|n| match n {
            Notice::Changed(wd) => changed.push(wd),
            Notice::Overflow => overflow = true,
        });
        if overflow {
            changed = inner
                .by_wd
                .keys()
                .chain(inner.making.keys())
                .copied()
                .collect();
        }
        for wd in changed {
            if let Some(c) = inner.making.get_mut(&wd) {
                *c = true;
            }
            for key in inner.by_wd.get(&wd).cloned().unwrap_or_default() {
                self.remove(inner, &key);
                self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The brotli quality variants are made at: the best (11) up to 1 MiB, 9 above (11
/// runs at about 1 MB/s, and the one background thread serves every file).
pub fn brotli_quality(len: u64) -> u32 {
    if len <= 1 << 20 { 11 } else { 9 }
}

/// Writes the first `len` bytes of `src`, brotli-compressed, to `out`.
fn brotli(src: &File, len: u64, out: &mut File) -> io::Result<()> {
    let w = io::BufWriter::with_capacity(64 << 10, out);
    let mut enc = ::brotli::CompressorWriter::new(w, 64 << 10, brotli_quality(len), 22);
    copy_into(src, len, &mut enc)?;
    enc.flush()?;
    enc.into_inner().flush()
}

/// The zstd level variants are made at: 19 up to 1 MiB, 15 above (like brotli's
/// quality: 19 ran at about 0.35 MB/s on a loaded 2-core VM, and the one background
/// thread serves every file). Never above 19: levels 20-22 use windows over 8 MiB,
/// which `Content-Encoding: zstd` must not use (RFC 9659: browsers refuse them).
pub fn zstd_level(len: u64) -> i32 {
    if len <= 1 << 20 { 19 } else { 15 }
}

/// Writes the first `len` bytes of `src`, zstd-compressed (one frame that states its
/// content size), to `out`.
fn zstd(src: &File, len: u64, out: &mut File) -> io::Result<()> {
    let w = io::BufWriter::with_capacity(64 << 10, out);
    let mut enc = ::zstd::stream::write::Encoder::new(w, zstd_level(len))?;
    enc.set_pledged_src_size(Some(len))?;
    enc.include_contentsize(true)?;
    copy_into(src, len, &mut enc)?;
    enc.finish()?.flush()
}

/// Writes the first `len` bytes of `src` (read with pread) to `w`.
fn copy_into(src: &File, len: u64, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0u64;
    while off < len {
        let want = ((len - off) as usize).min(buf.len());
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        w.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// Writes the first `len` bytes of `src`, gzip-compressed at [`GZIP_LEVEL`], to `out`.
fn gzip(src: &File, len: u64, out: &mut File) -> io::Result<()> {
    let w = io::BufWriter::with_capacity(64 << 10, out);
    let mut enc = flate2::write::GzEncoder::new(w, flate2::Compression::new(GZIP_LEVEL));
    copy_into(src, len, &mut enc)?;
    enc.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn stat(f: &File) -> rustix::fs::Stat {
        rustix::fs::fstat(f).unwrap()
    }

    #[test]
    fn snapshots_are_sealed_exact_and_evicted_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(10_000);
        let mut files = Vec::new();
        for i in 0..3u8 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![b'a' + i; 4000]).unwrap();
            files.push(File::open(&p).unwrap());
        }
        let keys: Vec<Key> = files
            .iter()
            .map(|f| Key::of(&stat(f), Variant::Identity))
            .collect();
        for (k, f) in keys.iter().zip(&files) {
            if !store.snapshot(*k, f).unwrap() {
                eprintln!("skipped: no inotify watch here");
                return;
            }
        }
        // 3 × 4000 > 10000: the least recently used went.
        assert!(store.get(&keys[0], unwatched(Instant::now())).is_none());
        assert_eq!(store.counters.evictions.load(Ordering::Relaxed), 1);
        assert_eq!(store.bytes(), 8000);
        let s = store.get(&keys[2], unwatched(Instant::now())).unwrap();
        assert!(zcopy::snapshot::is_sealed(&s.file));
        let mut got = vec![0; 4000];
        s.file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, vec![b'c'; 4000]);
    }

    #[test]
    fn a_file_is_copied_on_its_second_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, vec![7u8; 5000]).unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let store = Store::new(1 << 20);
        let key = Key::of(&stat(&f), Variant::Identity);
        store.request_hot(key, f.clone());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            store.get(&key, unwatched(Instant::now())).is_none(),
            "made on its first request"
        );
        assert!(lock(&store.inner).pending.is_empty());
        store.request_hot(key, f.clone());
        let start = std::time::Instant::now();
        while store.get(&key, unwatched(Instant::now())).is_none() {
            if matches!(lock(&store.inner).watcher, Some(Err(()))) {
                eprintln!("skipped: no inotify watch here");
                return;
            }
            assert!(start.elapsed().as_secs() < 10, "never made");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(store.bytes(), 5000);
    }

    #[test]
    fn a_change_drops_the_snapshot_and_gzip_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.js");
        let text = "function f() { return 42; }\n".repeat(500);
        std::fs::write(&p, &text).unwrap();
        let f = File::open(&p).unwrap();
        let store = Store::new(1 << 20);
        let key = Key::of(&stat(&f), Variant::Gzip);
        if !store.snapshot(key, &f).unwrap() {
            eprintln!("skipped: no inotify watch here");
            return;
        }
        let turn = Instant::now();
        let s = store.get(&key, unwatched(turn)).unwrap();
        assert!(s.len < text.len() as u64 / 4);
        let mut packed = vec![0; s.len as usize];
        s.file.read_exact_at(&mut packed, 0).unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        // An in-place write of the same size: the watch drops the snapshot.
        write_in_place(&p, b"X");
        // The notices are read once per loop turn: the rest of the turn that read
        // them still finds the old (complete, sealed) version; the next turn does not.
        assert!(
            store.get(&key, unwatched(turn)).is_some(),
            "notices read once per turn"
        );
        assert!(
            store.get(&key, unwatched(Instant::now())).is_none(),
            "changed in place"
        );
        assert_eq!(store.bytes(), 0);
        assert_eq!(store.counters.invalidations.load(Ordering::Relaxed), 1);
    }

    /// Writes `bytes` at the start of the file at `p` (same size, a change only a
    /// notice or a stat can tell).
    fn write_in_place(p: &std::path::Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .write_all_at(bytes, 0)
            .unwrap();
    }

    fn unwatched(now: Instant) -> Turn {
        Turn {
            now,
            watched: false,
        }
    }

    /// Where a loop watches the notice fd, a lookup reads the notices when the loop
    /// said they wait: the fd turns readable at a change, and after the report the
    /// changed file's snapshot is gone.
    #[test]
    fn a_watching_loop_is_told_of_a_change_by_the_notice_fd() {
        use rustix::event::{PollFd, PollFlags, poll};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, vec![1u8; 5000]).unwrap();
        let f = File::open(&p).unwrap();
        let store = Store::new(1 << 20);
        assert!(
            store.notice_fd().is_none(),
            "none before the first snapshot"
        );
        let key = Key::of(&stat(&f), Variant::Identity);
        if !store.snapshot(key, &f).unwrap() {
            eprintln!("skipped: no inotify watch here");
            return;
        }
        let fd = store.notice_fd().expect("made with the watcher").clone();
        let readable = || {
            let mut fds = [PollFd::new(&*fd, PollFlags::IN)];
            poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap() == 1
        };
        let watched = |now| Turn { now, watched: true };
        assert!(!readable(), "no notice yet");
        assert!(store.get(&key, watched(Instant::now())).is_some());
        write_in_place(&p, b"X");
        assert!(readable(), "a change makes the fd readable");
        // Until a loop reports it, a watching lookup does not read (no system call).
        assert!(store.get(&key, watched(Instant::now())).is_some());
        store.notices_waiting();
        assert!(store.notices_unread());
        assert!(
            store.get(&key, watched(Instant::now())).is_none(),
            "changed"
        );
        assert!(!store.notices_unread(), "read by the lookup");
        assert_eq!(store.counters.invalidations.load(Ordering::Relaxed), 1);
    }
}
