//! A per-worker cache of small files, so a hot file costs one `fstat` per request
//! instead of `openat2` + `fstat` + `close`, or no system call at all when its bytes
//! are held in memory under a change watch.
//!
//! Two kinds of entry:
//! - **Held** (files up to [`MEMO_MAX`] bytes on a local file system, while the
//!   worker's share [`MEMO_BYTES`] lasts): the bytes and the fstat they were read
//!   under, guarded by an inotify watch on the inode taken *before* the read. Any
//!   change through the file system (write, truncate, times, mode, unlink, rename
//!   over the path, a writer closing) queues a notice ([`crate::watch`]); the cache
//!   reads the notices once per loop turn, before it answers from memory (in a turn
//!   after the notice fd turned readable, where the worker's loop watches it), and
//!   drops what changed. A hit is a map lookup; the bytes go out from memory.
//! - **Open** (anything else up to [`CACHE_MAX`]): every hit is revalidated with
//!   `fstat` on the cached fd, so size, mtime and ETag are always current; a file
//!   that was deleted or replaced by a rename (link count 0) is reopened at once.
//!
//! What the cache can hide, for at most `ttl`, is a path that now names a different
//! file while the old one still has another link (a directory moved away, say), and,
//! for held files only, a change made through a shared writable mapping, which gives
//! no notice. Cached files take no read lease, so a shared fd never holds a lease for
//! another connection.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conditional::Validators;
use crate::head::{FieldBlock, Name};
use crate::watch::{Notice, Watcher};

/// Largest file kept open in the cache.
pub const CACHE_MAX: u64 = 64 * 1024;
/// Most files one worker's cache keeps open.
pub const CACHE_FILES: usize = 1024;
/// Largest file whose bytes the cache holds.
pub const MEMO_MAX: u64 = CACHE_MAX;
/// Most file bytes one worker holds.
pub const MEMO_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
struct Cached {
    /// The open file; when its bytes are held (`wd`), with them, the fstat they
    /// were read under and its head fields, as a hit answers them (lent, not
    /// copied: see [`FileCache::get`]); else the fstat it was opened with.
    file: CachedFile,
    /// The watch that voids the held bytes, when they are held.
    wd: Option<i32>,
    /// When it is no longer fresh (opened + ttl; `None`: never).
    until: Option<Instant>,
    /// Which precompressed sidecars the path has (a bitmask), once looked up: kept
    /// with the file so a hit costs one map lookup. It lives no longer than the entry
    /// (at most `ttl` from the open, and dropped with the entry when a notice or an
    /// fstat voids it), so never longer than a note in `sidecars` would.
    sidecars: Option<u8>,
}

impl Cached {
    /// The bytes it holds.
    fn held(&self) -> usize {
        self.file.bytes.as_ref().map_or(0, |b| b.len())
    }
}

/// What a response head says about a file, worked out once for a held file.
#[derive(Debug)]
pub struct Described {
    /// ETag and modification time.
    pub validators: Validators,
    /// The Last-Modified value.
    pub last_modified: String,
    /// The Content-Type value.
    pub content_type: String,
    /// Whether that type is worth compressing ([`compressible_type`]).
    pub compressible: bool,
    /// For a held file: the fields of its whole answer (Content-Type,
    /// Content-Length, Last-Modified, ETag, Accept-Ranges) as one kept block, with
    /// the length it says.
    pub whole: Option<(u64, Arc<FieldBlock>)>,
}

/// Content types worth compressing (when no sidecar exists).
pub fn compressible_type(ctype: &str) -> bool {
    // Cut at ';' by byte (ASCII, so a char boundary): a char searcher cost more
    // than the rest of this test.
    let media = match ctype.bytes().position(|b| b == b';') {
        Some(i) => &ctype[..i],
        None => ctype,
    }
    .trim();
    media.starts_with("text/")
        || matches!(
            media,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "application/ld+json"
                | "application/xhtml+xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "image/svg+xml"
        )
}

/// The validators of a file from its fstat.
#[allow(clippy::unnecessary_cast)] // field types differ between architectures
pub fn validators(st: &rustix::fs::Stat) -> Validators {
    Validators::from_parts(
        st.st_ino as u64,
        st.st_size as u64,
        st.st_mtime as i64,
        st.st_mtime_nsec as u64,
    )
}

impl Described {
    /// The head fields of a file named `name` with fstat `st`.
    pub fn of(st: &rustix::fs::Stat, name: &str) -> Described {
        let validators = validators(st);
        let content_type = crate::head::content_type(name);
        Described {
            last_modified: validators.last_modified(),
            compressible: compressible_type(&content_type),
            content_type,
            validators,
            whole: None,
        }
    }

    /// As [`Described::of`], with the fields of the whole answer kept as a block
    /// ([`Described::whole`]).
    pub fn held(st: &rustix::fs::Stat, name: &str) -> Described {
        let mut d = Described::of(st, name);
        let len = st.st_size.max(0) as u64;
        let len_text = len.to_string();
        let block = FieldBlock::new(&[
            (Name::ContentType, &d.content_type),
            (Name::ContentLength, &len_text),
            (Name::LastModified, &d.last_modified),
            (Name::ETag, &d.validators.etag),
            (Name::AcceptRanges, "bytes"),
        ]);
        d.whole = Some((len, Arc::new(block)));
        d
    }
}

/// An open file from the cache (or just opened), the fstat to answer with, and,
/// when the cache holds it, its head fields.
#[derive(Clone, Debug)]
pub struct CachedFile {
    /// The open file.
    pub file: Arc<File>,
    /// Its fstat.
    pub st: rustix::fs::Stat,
    /// Its head fields, when they are held.
    pub described: Option<Arc<Described>>,
    /// Its bytes, when they are held (read under `st`).
    pub bytes: Option<Arc<[u8]>>,
    /// What the file itself proves about whether it can change.
    pub trust: Trust,
}

/// A cache hit: the file (lent by the cache when it holds the file's bytes, which
/// then need no copy) and which sidecars the cache noted for the path (a bitmask),
/// when it did (see [`FileCache::sidecars`]).
#[derive(Debug)]
pub struct Hit<'a> {
    /// The file, its fstat and what the cache holds of it.
    pub file: std::borrow::Cow<'a, CachedFile>,
    /// The sidecar note.
    pub sidecars: Option<u8>,
}

/// What a file itself proves about whether its bytes can change while a peer holds
/// references to them (worked out once per open file, with the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Nothing: it may change in place.
    #[default]
    None,
    /// It lives on a read-only file system type (erofs, squashfs, iso9660) mounted
    /// read-only: it cannot change while open, so it may be lent with no lease.
    ReadOnlyFs,
    /// statx marks it immutable or fs-verity. Root can lift the immutable flag, so
    /// the read lease stays as a tripwire.
    Attribute,
}

/// `EROFS_SUPER_MAGIC_V1`, `SQUASHFS_MAGIC`, `ISOFS_SUPER_MAGIC`: file system types
/// that have no way to write.
const READ_ONLY_TYPES: [u64; 3] = [0xE0F5_E1E2, 0x7371_7368, 0x9660];

/// What `file` proves about itself: fstatfs (and fstatvfs when the type is a
/// read-only one), else statx's attributes. Not cached by device: a device number
/// can come back as another mount once the first is gone.
#[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
pub fn trust_of(file: &File) -> Trust {
    use rustix::fs::{AtFlags, StatVfsMountFlags, StatxAttributes, StatxFlags};
    let read_only_type = rustix::fs::fstatfs(file)
        .is_ok_and(|fs| READ_ONLY_TYPES.contains(&((fs.f_type as u64) & 0xffff_ffff)));
    if read_only_type
        && rustix::fs::fstatvfs(file).is_ok_and(|v| v.f_flag.contains(StatVfsMountFlags::RDONLY))
    {
        return Trust::ReadOnlyFs;
    }
    match rustix::fs::statx(file, c"", AtFlags::EMPTY_PATH, StatxFlags::empty()) {
        Ok(x)
            if (x.stx_attributes & x.stx_attributes_mask)
                .intersects(StatxAttributes::IMMUTABLE | StatxAttributes::VERITY) =>
        {
            Trust::Attribute
        }
        _ => Trust::None,
    }
}

/// A map keyed by request path. The path is the client's choice, so the hash is
/// keyed with a secret: foldhash (a few dozen instructions for a short path, where
/// SipHash-1-3 took about 300), seeded from the operating system's randomness per
/// map ([`path_hasher`]) rather than foldhash's own address-and-clock seed. The
/// maps hold at most [`CACHE_FILES`] paths, which also bounds what colliding keys
/// could cost.
type PathMap<V> = HashMap<Box<str>, V, foldhash::fast::SeedableRandomState>;

/// A hasher for a [`PathMap`]: foldhash with a per-process shared seed and a
/// per-map seed, both drawn from std's `RandomState` (whose keys come from the
/// operating system's random source).
fn path_hasher() -> foldhash::fast::SeedableRandomState {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    static SHARED: OnceLock<foldhash::SharedSeed> = OnceLock::new();
    // A SipHash under fresh random keys of nothing at all: a random u64.
    let random = || std::hash::RandomState::new().build_hasher().finish();
    let shared = SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(random()));
    foldhash::fast::SeedableRandomState::with_seed(random(), shared)
}

/// Whether a worker's loop watches the file cache's notice fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoticeWatch {
    /// Not offered yet (there is no fd before the first held file).
    NotOffered,
    /// Offered and not taken: notices are read in every turn that looks a file up.
    Refused,
    /// The loop watches it; `waiting`: it reported the fd readable since the
    /// notices were read last (they are read only then).
    Watched { waiting: bool },
}

/// Request path → open file (and maybe its bytes), per worker thread.
#[derive(Debug)]
pub struct FileCache {
    map: PathMap<Cached>,
    /// Request path → until when the note holds (looked up + ttl; `None`: always),
    /// and which precompressed sidecars it has (a bitmask).
    sidecars: PathMap<(Option<Instant>, u8)>,
    /// Directories found to hold too many entries to list, by (device, inode), with
    /// the mtime they were counted at: asked again while unchanged, they are refused
    /// without being read.
    too_large: HashMap<(u64, u64), (i64, i64)>,
    ttl: Duration,
    cap: usize,
    /// Made for the first file worth holding; `Err` once making it failed.
    watcher: Option<Result<Watcher, ()>>,
    /// Watch → the request paths whose memo it guards (hard links and an index file
    /// share one inode, so one watch).
    watched: HashMap<i32, Vec<Box<str>>>,
    /// Bytes the memos hold.
    memo_bytes: usize,
    /// The loop turn (its clock reading) whose notices were read last.
    drained: Option<Instant>,
    /// Whether the caller's loop watches the notice fd ([`FileCache::offer_notice_fd`]).
    notice_watch: NoticeWatch,
    /// An entry a lookup found void, dropped at the next lookup, put or sidecar
    /// note: [`FileCache::get`] lends from the map, so it can't drop one itself.
    void: Option<Box<str>>,
    /// Lookups answered from the cache, and those that were not (cache on only).
    pub hits: u64,
    /// See `hits`.
    pub misses: u64,
    /// The hits answered from memory (no system call).
    pub held_hits: u64,
    /// This worker's loop watches the snapshot store's notice fd (see
    /// [`crate::snapshot::Turn::watched`]); kept here, with the worker's other
    /// per-thread state the site is handed.
    pub snapshot_notices_watched: bool,
}

impl FileCache {
    /// A cache holding at most `cap` files, each re-resolved after `ttl` (0: off).
    pub fn new(ttl: Duration, cap: usize) -> FileCache {
        FileCache {
            map: HashMap::with_hasher(path_hasher()),
            sidecars: HashMap::with_hasher(path_hasher()),
            too_large: HashMap::new(),
            ttl,
            cap,
            watcher: None,
            watched: HashMap::new(),
            memo_bytes: 0,
            drained: None,
            notice_watch: NoticeWatch::NotOffered,
            void: None,
            hits: 0,
            misses: 0,
            held_hits: 0,
            snapshot_notices_watched: false,
        }
    }

    /// The cached file for `key` and its current fstat, if it is still valid: a
    /// held file's own fstat while no notice voided it (lent: no copy of the fstat,
    /// no count taken on what it holds), else a fresh one.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Hit<'_>> {
        if self.ttl.is_zero() {
            return None;
        }
        self.drop_void();
        self.read_notices(now);
        let Some(entry) = self.map.get(key) else {
            self.misses += 1;
            return None;
        };
        // The sidecar note is looked up by a hit only: a miss does not use it.
        let fresh = live(entry.until, now);
        if fresh && entry.wd.is_some() {
            self.hits += 1;
            self.held_hits += 1;
            return Some(Hit {
                file: std::borrow::Cow::Borrowed(&entry.file),
                sidecars: entry.sidecars.or_else(|| self.sidecars(key, now)),
            });
        }
        let st = rustix::fs::fstat(&*entry.file.file).ok();
        match st {
            Some(st) if fresh && st.st_nlink > 0 && (st.st_size as u64) <= CACHE_MAX => {
                self.hits += 1;
                Some(Hit {
                    file: std::borrow::Cow::Owned(CachedFile {
                        file: entry.file.file.clone(),
                        st,
                        described: None,
                        bytes: None,
                        trust: entry.file.trust,
                    }),
                    sidecars: entry.sidecars.or_else(|| self.sidecars(key, now)),
                })
            }
            _ => {
                self.misses += 1;
                self.void = Some(key.into());
                None
            }
        }
    }

    /// Drops the entry a lookup found void ([`FileCache::void`]), if any.
    fn drop_void(&mut self) {
        if let Some(void) = self.void.take() {
            self.remove(&void);
        }
    }

    /// The sidecar bitmask noted for `key` less than `ttl` ago.
    pub fn sidecars(&self, key: &str, now: Instant) -> Option<u8> {
        if self.ttl.is_zero() {
            return None;
        }
        self.sidecars
            .get(key)
            .filter(|(until, _)| live(*until, now))
            .map(|&(_, mask)| mask)
    }

    /// Remembers which sidecars `key` has (for `ttl`): with its cached file when
    /// there is one (for as long as that entry lives), else on its own.
    pub fn note_sidecars(&mut self, key: &str, now: Instant, mask: u8) {
        if self.ttl.is_zero() {
            return;
        }
        // Not on the entry a lookup just found void (a file grown past CACHE_MAX,
        // which `put` does not take): dropped at the next lookup, it would take the
        // note along.
        self.drop_void();
        if let Some(entry) = self.map.get_mut(key) {
            entry.sidecars = Some(mask);
            return;
        }
        if self.sidecars.len() >= self.cap {
            self.sidecars.clear();
        }
        self.sidecars
            .insert(key.into(), (now.checked_add(self.ttl), mask));
    }

    /// Whether the directory with fstat `st` was found too large to list and has not
    /// changed since (an entry added or removed changes its mtime).
    pub fn known_too_large(&self, st: &rustix::fs::Stat) -> bool {
        self.too_large.get(&dir_key(st)) == Some(&dir_mtime(st))
    }

    /// Remembers that the directory with fstat `st` is too large to list.
    pub fn note_too_large(&mut self, st: &rustix::fs::Stat) {
        if self.too_large.len() >= 1024 {
            self.too_large.clear();
        }
        self.too_large.insert(dir_key(st), dir_mtime(st));
    }

    /// Closes the files (and forgets the sidecar notes) older than `ttl`: the next
    /// request would reopen them anyway, and an idle worker then holds no descriptor
    /// for a file nobody asks for. Called about once a second; O(entries).
    pub fn evict_expired(&mut self, now: Instant) {
        let expired: Vec<Box<str>> = self
            .map
            .iter()
            .filter(|(_, c)| !live(c.until, now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
        self.sidecars.retain(|_, (until, _)| live(*until, now));
    }

    /// Remembers `file` (opened for `key`, `st` its fstat, `name` the name its
    /// Content-Type follows) when it is small enough. Answers with the fstat to use:
    /// when the file's bytes were taken into memory, the fstat they were read under
    /// (the two belong together), else `st`.
    pub fn put(
        &mut self,
        key: &str,
        name: &str,
        file: Arc<File>,
        st: &rustix::fs::Stat,
        now: Instant,
    ) -> CachedFile {
        let trust = trust_of(&file);
        let plain = |file| CachedFile {
            file,
            st: *st,
            described: None,
            bytes: None,
            trust,
        };
        if self.ttl.is_zero() || st.st_size as u64 > CACHE_MAX {
            return plain(file);
        }
        // The void entry is dropped now, before this one may replace it (dropped at
        // the next lookup, it would take this one along).
        self.drop_void();
        if self.map.len() >= self.cap {
            // Simple and bounded: start over rather than track recency.
            let keys: Vec<Box<str>> = self.map.keys().cloned().collect();
            for k in keys {
                self.remove(&k);
            }
        }
        self.remove(key);
        let (wd, held) = match self.memoize(&file, st, name, trust) {
            Some((wd, held)) => (Some(wd), held),
            None => (None, plain(file)),
        };
        let entry = Cached {
            file: held,
            wd,
            until: now.checked_add(self.ttl),
            sidecars: None,
        };
        if let Some(wd) = wd {
            self.memo_bytes += entry.held();
            self.watched.entry(wd).or_default().push(key.into());
        }
        let answer = entry.file.clone();
        self.map.insert(key.into(), entry);
        answer
    }

    /// Watches `file`, then reads it whole between two fstats. The bytes are kept
    /// only when nothing moved in between; a change after the watch was taken
    /// arrives as a notice.
    fn memoize(
        &mut self,
        file: &Arc<File>,
        st: &rustix::fs::Stat,
        name: &str,
        trust: Trust,
    ) -> Option<(i32, CachedFile)> {
        let len = st.st_size.max(0) as u64;
        if len > MEMO_MAX || self.memo_bytes + len as usize > MEMO_BYTES {
            return None;
        }
        let watcher = self
            .watcher
            .get_or_insert_with(|| {
                Watcher::new()
                    .map_err(|e| tracing::debug!("no inotify, small files use fstat: {e}"))
            })
            .as_ref()
            .ok()?;
        let wd = watcher
            .watch(file)
            .map_err(|e| tracing::debug!("file not watched, it uses fstat: {e}"))
            .ok()?;
        // The size now, which bounds the read (the file may have grown since `st`).
        let before = rustix::fs::fstat(file).ok().filter(|b| {
            let len = b.st_size.max(0) as u64;
            len <= MEMO_MAX && self.memo_bytes + len as usize <= MEMO_BYTES
        });
        let mut bytes = Vec::new();
        let got = before.map(|b| pread_into(file, 0, b.st_size.max(0) as usize, &mut bytes));
        let after = rustix::fs::fstat(file).ok();
        match (before, after, got) {
            (Some(b), Some(a), Some(got))
                if same_version(&b, &a) && got as i64 == a.st_size && a.st_nlink > 0 =>
            {
                Some((
                    wd,
                    CachedFile {
                        file: file.clone(),
                        st: a,
                        described: Some(Arc::new(Described::held(&a, name))),
                        bytes: Some(bytes.into()),
                        trust,
                    },
                ))
            }
            _ => {
                if !self.watched.contains_key(&wd) {
                    watcher.unwatch(wd);
                }
                None
            }
        }
    }

    /// Offers the fd that turns readable when change notices wait to `watch` (a
    /// worker's event loop), once, in the first call after the cache made it (for
    /// the first file it holds). When `watch` takes it, the caller calls
    /// [`FileCache::notices_waiting`] each time it reports the fd readable, and the
    /// cache reads notices only after such a call, where it otherwise tries a read
    /// (a system call) in every loop turn that looks a file up.
    pub fn offer_notice_fd(&mut self, watch: impl FnOnce(BorrowedFd<'_>) -> io::Result<()>) {
        if self.notice_watch != NoticeWatch::NotOffered {
            return;
        }
        let Some(Ok(watcher)) = &self.watcher else {
            return;
        };
        self.notice_watch = match watch(watcher.fd()) {
            // What came before the caller watched it is read at the next lookup.
            Ok(()) => NoticeWatch::Watched { waiting: true },
            Err(e) => {
                tracing::debug!("change notices read every turn: {e}");
                NoticeWatch::Refused
            }
        };
    }

    /// The notice fd was reported readable: the next lookup reads the notices.
    pub fn notices_waiting(&mut self) {
        if let NoticeWatch::Watched { waiting } = &mut self.notice_watch {
            *waiting = true;
        }
    }

    /// Whether notices reported by [`FileCache::notices_waiting`] are still unread
    /// (a caller that has to re-arm a one-shot watch does so once they are read).
    pub fn notices_unread(&self) -> bool {
        matches!(self.notice_watch, NoticeWatch::Watched { waiting: true })
    }

    /// Reads the change notices once per loop turn (`now` is the turn's clock
    /// reading) and drops the entries they void, so no change made before this turn
    /// is answered from memory. Where a driver watches the notice fd, only in a
    /// turn after it reported it readable: the change that queued a notice came
    /// before the readiness the turn's wait returned.
    fn read_notices(&mut self, now: Instant) {
        if self.watched.is_empty()
            || self.drained == Some(now)
            || matches!(self.notice_watch, NoticeWatch::Watched { waiting: false })
        {
            return;
        }
        self.drained = Some(now);
        if let NoticeWatch::Watched { waiting } = &mut self.notice_watch {
            *waiting = false;
        }
        let Some(Ok(watcher)) = &mut self.watcher else {
            return;
        };
        let mut changed = Vec::new();
        let mut overflow = false;
        watcher.drain(|n| match n {
            Notice::Changed(wd) => changed.push(wd),
            Notice::Overflow => overflow = true,
        });
        if overflow {
            changed = self.watched.keys().copied().collect();
        }
        for wd in changed {
            for key in self.watched.get(&wd).cloned().unwrap_or_default() {
                self.remove(&key);
            }
        }
    }

    /// Drops `key`'s entry, and its watch when no other entry shares it.
    fn remove(&mut self, key: &str) {
        let Some(entry) = self.map.remove(key) else {
            return;
        };
        let Some(wd) = entry.wd else {
            return;
        };
        self.memo_bytes -= entry.held();
        if let Some(keys) = self.watched.get_mut(&wd) {
            keys.retain(|k| &**k != key);
            if keys.is_empty() {
                self.watched.remove(&wd);
                if let Some(Ok(w)) = &self.watcher {
                    w.unwatch(wd);
                }
            }
        }
    }
}

/// The fields that change when a file's contents or times do.
#[allow(clippy::unnecessary_cast)] // field types differ between architectures
fn dir_key(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

#[allow(clippy::unnecessary_cast)] // field types differ between architectures
fn dir_mtime(st: &rustix::fs::Stat) -> (i64, i64) {
    (st.st_mtime as i64, st.st_mtime_nsec as i64)
}

fn same_version(a: &rustix::fs::Stat, b: &rustix::fs::Stat) -> bool {
    let v = |s: &rustix::fs::Stat| {
        (
            s.st_ino,
            s.st_size,
            s.st_mtime,
            s.st_mtime_nsec,
            s.st_ctime,
            s.st_ctime_nsec,
        )
    };
    v(a) == v(b)
}

/// Still fresh at `now`, when it stops being so at `until` (`None`: never). Kept as
/// a deadline so a lookup compares two instants (no time arithmetic per request).
fn live(until: Option<Instant>, now: Instant) -> bool {
    until.is_none_or(|u| now < u)
}

/// Appends up to `len` bytes of `file` from `start` to `out`; returns how many
/// existed (fewer if the file shrank).
pub fn pread_into(file: &File, start: u64, len: usize, out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.resize(at + len, 0);
    let mut got = 0;
    while got < len {
        match rustix::io::pread(file, &mut out[at + got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!("pread failed: {e}");
                break;
            }
        }
    }
    out.truncate(at + got);
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_file_knows_whether_its_type_compresses() {
        let f = tempfile::tempfile().unwrap();
        let st = rustix::fs::fstat(&f).unwrap();
        for (name, want) in [
            ("a.html", true),
            ("a.css", true),
            ("a.svg", true),
            ("a.json", true),
            ("a.bin", false),
            ("a.png", false),
            ("a", false),
        ] {
            let d = Described::of(&st, name);
            assert_eq!(d.compressible, want, "{name}");
            assert_eq!(d.compressible, compressible_type(&d.content_type), "{name}");
        }
        assert!(compressible_type("text/plain; charset=utf-8"));
        assert!(compressible_type(" application/json ;x"));
        assert!(!compressible_type("application/octet-stream"));
    }

    #[test]
    fn validators_of_a_real_file_follow_its_stat() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 0x400]).unwrap();
        let st = rustix::fs::fstat(f.as_fd()).unwrap();
        let v = validators(&st);
        let ns = st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128;
        assert_eq!(v.etag, format!("\"{:x}-400-{:x}\"", st.st_ino, ns));
        // A change of content changes the tag.
        f.write_all(b"x").unwrap();
        let st2 = rustix::fs::fstat(f.as_fd()).unwrap();
        assert_ne!(validators(&st2).etag, v.etag);
    }

    #[test]
    fn expired_entries_are_closed_without_a_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let st = rustix::fs::fstat(&*file).unwrap();
        let t0 = Instant::now();
        let mut c = FileCache::new(Duration::from_secs(1), 8);
        c.put("/f", "f", file.clone(), &st, t0);
        c.note_sidecars("/f", t0, 0);
        c.evict_expired(t0 + Duration::from_millis(500));
        assert_eq!(Arc::strong_count(&file), 2, "kept while fresh");
        c.evict_expired(t0 + Duration::from_secs(1));
        assert_eq!(Arc::strong_count(&file), 1, "closed once expired");
        assert_eq!(c.sidecars("/f", t0), None);
    }

    #[test]
    fn open_entries_revalidate_and_unlinked_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        let mut c = FileCache::new(Duration::from_secs(60), 8);
        // As where inotify is refused: kept open, not held, so every hit is an fstat.
        c.watcher = Some(Err(()));
        let now = Instant::now();
        let put = c.put("/f", "f", f.clone(), &st, now);
        assert!(put.bytes.is_none(), "not held without a watch");
        std::fs::write(&p, b"three").unwrap();
        let st2 = c.get("/f", now).expect("hit").file.st;
        assert_eq!(st2.st_size, 5, "metadata must be current");
        // Replace by rename: the cached inode is unlinked, so it must not be served.
        std::fs::write(dir.path().join("g"), b"new").unwrap();
        std::fs::rename(dir.path().join("g"), &p).unwrap();
        assert!(c.get("/f", now).is_none());
        // Put again (as the handler does after the miss), it stays: the void entry
        // went before it came.
        let f2 = Arc::new(File::open(&p).unwrap());
        let st3 = rustix::fs::fstat(&*f2).unwrap();
        c.put("/f", "f", f2.clone(), &st3, now);
        let hit = c.get("/f", now).expect("the new entry");
        assert!(Arc::ptr_eq(&hit.file.file, &f2));
        assert_eq!(hit.file.st.st_size, 3);
    }

    #[test]
    fn a_sidecar_note_after_a_file_outgrew_the_cache_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"small").unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        let mut c = FileCache::new(Duration::from_secs(60), 8);
        // Open, not held: a hit is an fstat, which finds the growth.
        c.watcher = Some(Err(()));
        let now = Instant::now();
        c.put("/f", "f", f.clone(), &st, now);
        std::fs::write(&p, vec![b'x'; CACHE_MAX as usize + 1]).unwrap();
        assert!(c.get("/f", now).is_none(), "too large now: a miss");
        // As the handler does after the miss: put (not taken, too large), then
        // note what sidecars it found.
        let big = rustix::fs::fstat(&*f).unwrap();
        c.put("/f", "f", f.clone(), &big, now);
        c.note_sidecars("/f", now, 0b10);
        assert_eq!(c.sidecars("/f", now), Some(0b10), "noted on its own");
        assert!(c.get("/f", now).is_none());
        assert_eq!(
            c.sidecars("/f", now),
            Some(0b10),
            "kept past the next lookup"
        );
    }

    /// A held file, or `None` (and a skip line) where the file system can't be
    /// watched.
    fn held(dir: &std::path::Path, body: &[u8]) -> Option<(FileCache, Arc<File>, Instant)> {
        let p = dir.join("f");
        std::fs::write(&p, body).unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        let mut c = FileCache::new(Duration::from_secs(60), 8);
        let t0 = Instant::now();
        if c.put("/f", "f", f.clone(), &st, t0).bytes.is_none() {
            eprintln!("skipped: {} is not watchable here", dir.display());
            return None;
        }
        Some((c, f, t0))
    }

    #[test]
    fn held_bytes_are_dropped_by_every_kind_of_change() {
        type Change = fn(&std::path::Path);
        let changes: [(&str, Change); 5] = [
            ("write in place, same size", |p| {
                std::fs::write(p, b"TWO").unwrap()
            }),
            ("truncate", |p| {
                File::options()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(1)
                    .unwrap()
            }),
            ("times only", |p| {
                File::open(p)
                    .unwrap()
                    .set_modified(std::time::SystemTime::UNIX_EPOCH)
                    .unwrap()
            }),
            ("rename over", |p| {
                let g = p.with_file_name("g");
                std::fs::write(&g, b"new").unwrap();
                std::fs::rename(g, p).unwrap();
            }),
            ("unlink", |p| std::fs::remove_file(p).unwrap()),
        ];
        for (what, change) in changes {
            let dir = tempfile::tempdir().unwrap();
            let Some((mut c, f, t0)) = held(dir.path(), b"one") else {
                return;
            };
            let t1 = t0 + Duration::from_millis(1);
            let hit = c.get("/f", t1).expect("hit").file.into_owned();
            assert!(Arc::ptr_eq(&hit.file, &f), "{what}");
            assert_eq!(hit.bytes.as_deref(), Some(&b"one"[..]), "{what}");
            assert_eq!(hit.st.st_size, 3);
            change(&dir.path().join("f"));
            // The next loop turn reads the notice before answering.
            assert!(
                c.get("/f", t1 + Duration::from_millis(1)).is_none(),
                "{what}"
            );
            assert!(!c.map.contains_key("/f"), "{what}: entry kept");
            assert!(
                c.watched.is_empty() && c.memo_bytes == 0,
                "{what}: watch kept"
            );
        }
    }

    #[test]
    fn a_file_that_grew_past_the_limit_is_not_read_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"small").unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        std::fs::write(&p, vec![7u8; MEMO_MAX as usize + 1]).unwrap();
        let mut c = FileCache::new(Duration::from_secs(60), 8);
        let put = c.put("/f", "f", f.clone(), &st, Instant::now());
        assert!(put.bytes.is_none());
        assert_eq!(c.memo_bytes, 0);
        assert!(c.watched.is_empty(), "the watch taken for it is given back");
    }

    #[test]
    fn held_bytes_match_the_fstat_answered_with() {
        let dir = tempfile::tempdir().unwrap();
        let Some((mut c, f, t0)) = held(dir.path(), b"hello") else {
            return;
        };
        let hit = c.get("/f", t0).unwrap().file.into_owned();
        assert!(Arc::ptr_eq(&hit.file, &f), "the bytes come with their file");
        assert_eq!(
            hit.described.unwrap().content_type,
            "application/octet-stream"
        );
        assert_eq!(hit.bytes.as_deref(), Some(&b"hello"[..]));
        assert_eq!(hit.st.st_size, 5);
        // Two paths for one inode share one watch, which goes with the last of them.
        let st2 = rustix::fs::fstat(&*f).unwrap();
        c.put("/", "index.html", f.clone(), &st2, t0);
        assert_eq!(c.watched.len(), 1);
        c.evict_expired(t0 + Duration::from_secs(61));
        assert!(c.watched.is_empty() && c.map.is_empty() && c.memo_bytes == 0);
    }

    #[test]
    fn too_large_directories_are_remembered_until_they_change() {
        let tmp = tempfile::tempdir().unwrap();
        let st = |p: &std::path::Path| rustix::fs::stat(p).unwrap();
        let mut c = FileCache::new(Duration::from_secs(1), 8);
        assert!(!c.known_too_large(&st(tmp.path())));
        c.note_too_large(&st(tmp.path()));
        assert!(c.known_too_large(&st(tmp.path())));
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(tmp.path().join("new"), b"").unwrap();
        assert!(!c.known_too_large(&st(tmp.path())));
    }

    #[test]
    fn sidecar_memo_expires() {
        let mut c = FileCache::new(Duration::from_millis(10), 8);
        let now = Instant::now();
        assert_eq!(c.sidecars("/a", now), None);
        c.note_sidecars("/a", now, 0b101);
        assert_eq!(c.sidecars("/a", now), Some(0b101));
        assert_eq!(c.sidecars("/a", now + Duration::from_millis(20)), None);
        let mut off = FileCache::new(Duration::ZERO, 8);
        off.note_sidecars("/a", now, 0);
        assert_eq!(off.sidecars("/a", now), None);
    }

    #[test]
    fn expires_after_ttl_and_skips_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        let mut c = FileCache::new(Duration::from_millis(10), 8);
        let now = Instant::now();
        c.put("/f", "f", f.clone(), &st, now);
        assert!(c.get("/f", now).is_some());
        assert!(c.get("/f", now + Duration::from_millis(20)).is_none());
        let mut big = st;
        big.st_size = (CACHE_MAX + 1) as i64;
        c.put("/big", "big", f.clone(), &big, now);
        assert!(c.get("/big", now).is_none());
        let mut off = FileCache::new(Duration::ZERO, 8);
        off.put("/f", "f", f.clone(), &st, now);
        assert!(off.get("/f", now).is_none());
    }
}
