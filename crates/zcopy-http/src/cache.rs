//! A per-worker cache of open small files, so a hot file costs one `fstat` per
//! request instead of `openat2` + `fstat` + `close`.
//!
//! Every hit is revalidated with `fstat` on the cached fd, so size, mtime and ETag are
//! always current; a file that was deleted or replaced by a rename (link count 0) is
//! reopened at once. What the cache can hide, for at most `ttl`, is a path that now
//! names a different file while the old one still has another link (a directory moved
//! away, say). Only files up to [`CACHE_MAX`] bytes are cached: they go out in one
//! step and take no read lease, so a shared fd never holds a lease for another
//! connection.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest file kept open in the cache.
pub const CACHE_MAX: u64 = 64 * 1024;
/// Most files one worker's cache keeps open.
pub const CACHE_FILES: usize = 1024;

#[derive(Debug)]
struct Cached {
    file: Arc<File>,
    opened: Instant,
}

/// Request path → open file, per worker thread.
#[derive(Debug)]
pub struct FileCache {
    map: HashMap<Box<str>, Cached>,
    /// Request path → which precompressed sidecars it has (a bitmask), and when that
    /// was looked up.
    sidecars: HashMap<Box<str>, (Instant, u8)>,
    ttl: Duration,
    cap: usize,
    /// Lookups answered from the cache, and those that were not (cache on only).
    pub hits: u64,
    /// See `hits`.
    pub misses: u64,
}

impl FileCache {
    /// A cache holding at most `cap` files, each re-resolved after `ttl` (0: off).
    pub fn new(ttl: Duration, cap: usize) -> FileCache {
        FileCache {
            map: HashMap::new(),
            sidecars: HashMap::new(),
            ttl,
            cap,
            hits: 0,
            misses: 0,
        }
    }

    /// The cached file for `key` with a fresh fstat, if it is still valid.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<(Arc<File>, rustix::fs::Stat)> {
        if self.ttl.is_zero() {
            return None;
        }
        let Some(entry) = self.map.get(key) else {
            self.misses += 1;
            return None;
        };
        let fresh = now.saturating_duration_since(entry.opened) < self.ttl;
        let st = rustix::fs::fstat(&*entry.file).ok();
        match st {
            Some(st) if fresh && st.st_nlink > 0 && (st.st_size as u64) <= CACHE_MAX => {
                self.hits += 1;
                Some((entry.file.clone(), st))
            }
            _ => {
                self.misses += 1;
                self.map.remove(key);
                None
            }
        }
    }

    /// The sidecar bitmask noted for `key` less than `ttl` ago.
    pub fn sidecars(&self, key: &str, now: Instant) -> Option<u8> {
        if self.ttl.is_zero() {
            return None;
        }
        self.sidecars
            .get(key)
            .filter(|(t, _)| now.saturating_duration_since(*t) < self.ttl)
            .map(|&(_, mask)| mask)
    }

    /// Remembers which sidecars `key` has (for `ttl`).
    pub fn note_sidecars(&mut self, key: &str, now: Instant, mask: u8) {
        if self.ttl.is_zero() {
            return;
        }
        if self.sidecars.len() >= self.cap {
            self.sidecars.clear();
        }
        self.sidecars.insert(key.into(), (now, mask));
    }

    /// Closes the files (and forgets the sidecar notes) older than `ttl`: the next
    /// request would reopen them anyway, and an idle worker then holds no descriptor
    /// for a file nobody asks for. Called about once a second; O(entries).
    pub fn evict_expired(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.map
            .retain(|_, c| now.saturating_duration_since(c.opened) < ttl);
        self.sidecars
            .retain(|_, (t, _)| now.saturating_duration_since(*t) < ttl);
    }

    /// Remembers `file` (opened for `key`) when it is small enough.
    pub fn put(&mut self, key: &str, file: &Arc<File>, st: &rustix::fs::Stat, now: Instant) {
        if self.ttl.is_zero() || st.st_size as u64 > CACHE_MAX {
            return;
        }
        if self.map.len() >= self.cap {
            // Simple and bounded: start over rather than track recency.
            self.map.clear();
        }
        self.map.insert(
            key.into(),
            Cached {
                file: file.clone(),
                opened: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_closed_without_a_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let st = rustix::fs::fstat(&*file).unwrap();
        let t0 = Instant::now();
        let mut c = FileCache::new(Duration::from_secs(1), 8);
        c.put("/f", &file, &st, t0);
        c.note_sidecars("/f", t0, 0);
        c.evict_expired(t0 + Duration::from_millis(500));
        assert_eq!(Arc::strong_count(&file), 2, "kept while fresh");
        c.evict_expired(t0 + Duration::from_secs(1));
        assert_eq!(Arc::strong_count(&file), 1, "closed once expired");
        assert_eq!(c.sidecars("/f", t0), None);
    }

    #[test]
    fn hit_revalidates_and_unlinked_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        let st = rustix::fs::fstat(&*f).unwrap();
        let mut c = FileCache::new(Duration::from_secs(60), 8);
        let now = Instant::now();
        c.put("/f", &f, &st, now);
        std::fs::write(&p, b"three").unwrap();
        let (_, st2) = c.get("/f", now).expect("hit");
        assert_eq!(st2.st_size, 5, "metadata must be current");
        // Replace by rename: the cached inode is unlinked, so it must not be served.
        std::fs::write(dir.path().join("g"), b"new").unwrap();
        std::fs::rename(dir.path().join("g"), &p).unwrap();
        assert!(c.get("/f", now).is_none());
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
        c.put("/f", &f, &st, now);
        assert!(c.get("/f", now).is_some());
        assert!(c.get("/f", now + Duration::from_millis(20)).is_none());
        let mut big = st;
        big.st_size = (CACHE_MAX + 1) as i64;
        c.put("/big", &f, &big, now);
        assert!(c.get("/big", now).is_none());
        let mut off = FileCache::new(Duration::ZERO, 8);
        off.put("/f", &f, &st, now);
        assert!(off.get("/f", now).is_none());
    }
}
