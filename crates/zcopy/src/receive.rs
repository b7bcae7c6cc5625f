//! Receiving a stream into a file fast: fewer, larger steps per wake-up, and the
//! file's write-back started while the bytes still arrive.
//!
//! - [`LowWater`] raises the socket's `SO_RCVLOWAT` to the bytes still expected
//!   (up to a cap), so a reader is woken (and epoll reports readable) once a large
//!   step can be taken instead of at every segment; it lowers it again for the
//!   last bytes, so the end of a body is never waited for, and puts it back to 1
//!   before anything else is read from the socket ([`LowWater::reset`]).
//! - [`Writeback`] starts write-back of the file's dirty pages every few MiB
//!   (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) on a thread of its own, so the
//!   `fsync` that makes the file durable at the end finds little left to write,
//!   and the disk works while the network does. It never makes anything durable
//!   itself and never waits for the disk in the caller.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// Write-back kicks handed to the write-back thread by this process.
static KICKS: AtomicU64 = AtomicU64::new(0);

/// How many times this process handed a file to the write-back thread
/// ([`start_later`]): a counter for tests and metrics.
pub fn writeback_kicks() -> u64 {
    KICKS.load(Ordering::Relaxed)
}

/// The largest `SO_RCVLOWAT` [`LowWater`] asks for.
pub const LOW_WATER_CAP: usize = 512 * 1024;

/// The receive low-water mark of one socket, as set by [`LowWater::expect`].
#[derive(Debug)]
pub struct LowWater {
    current: usize,
    cap: usize,
    /// `setsockopt` calls made.
    pub calls: u64,
}

impl Default for LowWater {
    fn default() -> Self {
        LowWater::new(LOW_WATER_CAP)
    }
}

impl LowWater {
    /// A socket at the default mark (1), to be raised up to `cap` bytes.
    pub fn new(cap: usize) -> LowWater {
        LowWater {
            current: 1,
            cap: cap.max(1),
            calls: 0,
        }
    }

    /// `remaining` more bytes are certain to come on `sock` before the peer waits
    /// for anything from us: wake the reader once `min(remaining, cap)` are queued.
    /// A failure is ignored (the mark is an optimization; the default works).
    pub fn expect(&mut self, sock: impl AsFd, remaining: u64) {
        let want = remaining.clamp(1, self.cap as u64) as usize;
        self.set(sock, want);
    }

    /// Back to the default (1), before the socket carries anything else.
    #[inline]
    pub fn reset(&mut self, sock: impl AsFd) {
        self.set(sock, 1);
    }

    /// The mark set now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Inlined: the mark is nearly always where it should be already (a driver
    /// resets it before every read of a head).
    #[inline]
    fn set(&mut self, sock: impl AsFd, want: usize) {
        if want != self.current {
            self.change(sock.as_fd(), want);
        }
    }

    #[cold]
    fn change(&mut self, sock: BorrowedFd<'_>, want: usize) {
        self.calls += 1;
        match crate::sys::sock::set_recv_lowat(sock, want) {
            Ok(()) => self.current = want,
            Err(e) => tracing::debug!("SO_RCVLOWAT {want}: {e}"),
        }
    }
}

/// Bytes received into a file between two write-back kicks of [`Writeback`].
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts write-back of a file being received every [`WRITEBACK_EVERY`] bytes, off
/// the caller's thread. At most one kick of a file waits for the thread at a time
/// (a disk slower than the network gets no queue of duplicate descriptors): a kick
/// due while the last one still waits is skipped, the next one covers its pages.
#[derive(Debug, Default)]
pub struct Writeback {
    since: u64,
    /// Set while a kick of this file waits for (or runs on) the write-back thread.
    queued: Arc<AtomicBool>,
    /// Kicks handed to the write-back thread.
    pub kicks: u64,
}

impl Writeback {
    /// Nothing received yet.
    pub fn new() -> Writeback {
        Writeback::default()
    }

    /// Whether a kick of this file still waits for (or runs on) the write-back
    /// thread.
    pub fn pending(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// `n` more bytes were written to `file`.
    pub fn wrote(&mut self, file: &File, n: u64) {
        self.since += n;
        if self.since >= WRITEBACK_EVERY {
            self.since = 0;
            if self.queued.swap(true, Ordering::AcqRel) {
                return;
            }
            if send(file, Some(self.queued.clone())) {
                self.kicks += 1;
            } else {
                self.queued.store(false, Ordering::Release);
            }
        }
    }
}

/// Starts write-back of `file`'s dirty pages now, in the caller
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; may block while the device's queue is
/// full).
pub fn start(file: impl AsFd) -> io::Result<()> {
    crate::sys::writeback::start(file)
}

/// Starts write-back of `file`'s dirty pages on the write-back thread: a duplicate
/// of its descriptor goes there (so that thread may be the one to close the file
/// last). Nothing happens when the thread or the duplicate can't be made.
pub fn start_later(file: &File) {
    send(file, None);
}

/// A kick for the write-back thread: a duplicate of the file's descriptor, and the
/// flag to clear once done.
type Kick = (File, Option<Arc<AtomicBool>>);

/// Hands `file` to the write-back thread; whether it went.
fn send(file: &File, done: Option<Arc<AtomicBool>>) -> bool {
    static TX: LazyLock<Option<Mutex<std::sync::mpsc::Sender<Kick>>>> = LazyLock::new(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Kick>();
        std::thread::Builder::new()
            .name("zcopy-writeback".into())
            .spawn(move || {
                for (f, done) in rx {
                    if let Err(e) = start(&f) {
                        tracing::debug!("sync_file_range: {e}");
                    }
                    drop(f);
                    if let Some(done) = done {
                        done.store(false, Ordering::Release);
                    }
                }
            })
            .map_err(|e| tracing::debug!("write-back thread: {e}"))
            .ok()?;
        Some(Mutex::new(tx))
    });
    let Some(tx) = TX.as_ref() else { return false };
    let Ok(dup) = file.try_clone() else {
        return false;
    };
    let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
    let sent = tx.send((dup, done)).is_ok();
    if sent {
        KICKS.fetch_add(1, Ordering::Relaxed);
    }
    sent
}
