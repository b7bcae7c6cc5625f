//! "Send this file range to this socket" on an [`EventRing`]: the asynchronous form
//! of a [`Transfer`](crate::Transfer) step, for an event loop that owns the ring.
//!
//! The operation chooses the engine from a [`Plan`] (the same plans the blocking
//! engines run), queues the ring operations that engine needs, takes their
//! completions back, and says what reached the socket. The caller only submits,
//! reaps, and hands each completion carrying its token to [`FileSend::complete`].
//! Engines on the ring:
//!
//! - `splice` (by reference): `SPLICE` file → pipe linked to `SPLICE` pipe →
//!   socket, one pipe per operation, made on first use and kept across bodies.
//!   The `uring` engine is this on a ring.
//! - `sendfile` (by reference), after `splice` whatever the plan's order: io_uring
//!   has no sendfile operation, so it is `sendfile(2)` on the caller's thread, on
//!   the non-blocking socket (a full socket is polled for `POLLOUT` on the ring). It
//!   serves where splice can't (or is forced off); a cold file's read would wait on
//!   the caller's thread. A sealed memfd (a snapshot) goes by `sendfile` first:
//!   its pages are in memory, and the kernel runs every ring `SPLICE` on an
//!   io-wq worker thread (a hand-off and wake-ups per body, 1.5x the server's CPU
//!   per 64 KiB body).
//! - The corked prefix before a `splice` or `sendfile` is sent at once with
//!   `send(2)` (`MSG_MORE | MSG_DONTWAIT`), and only what does not fit on the ring:
//!   the body's first bytes then go in the same turn.
//! - `mmap` (one copy, at send time): the corked prefix first on its own (as for
//!   splice), then a chunk of the file's mapping sent with `sendmsg(2)` on the
//!   caller's thread (`MSG_DONTWAIT`: what fits now; a full socket is polled for
//!   `POLLOUT` on the ring), as the epoll driver's `write(2)` does, when the
//!   chunk's first and last bytes are in the page cache (two one-byte
//!   `preadv2(RWF_NOWAIT)` probes; a page fault that reads the disk would stall
//!   the loop); a cold chunk is read as below. (`mincore` said it of every page,
//!   and its page-cache lookups for pages not yet mapped cost a tenth of the
//!   server's CPU on a 1 GiB body.) Across a veth pair, 1 GiB, against the epoll
//!   driver's server CPU per GB: a ring `SENDMSG` of each chunk (`MSG_WAITALL |
//!   MSG_MORE`) cost 1.2-1.35x; sent now, 1 MiB chunks 1.48x (more than the
//!   core's 1 MiB L2 in flight at once), 512 KiB ones with `MSG_MORE` 1.22x, and
//!   without it (as `write(2)`) 1.03x.
//!   Bodies shorter than [`MAP_MIN`] are read (mapping one costs more than it
//!   saves) when `read-write` follows in the plan.
//! - `read-write` (two copies): `READ` of a chunk into a buffer from the caller's
//!   [`BufPool`], then a `SEND` with `MSG_DONTWAIT` of what fits now; file bytes
//!   that did not fit are read again later, and the buffer goes back to the pool at
//!   once. The chunk is no larger than the room in the socket's send buffer; a
//!   socket with less room than [`ROOM_MIN`] (or none) is polled for `POLLOUT`,
//!   holding no buffer. So buffers are held by operations in flight for a moment,
//!   never by slow readers: memory is bounded by the pool, not by connections.
//!
//! An engine that can't do the job here (EINVAL before its first byte, ENOSYS,
//! EOPNOTSUPP, ... — [`is_unsupported`]) hands over to the next one from the byte it
//! reached, as [`Forced`] makes it (`ZCOPY_DISABLE`, `engine@bytes` included). Each
//! engine's bytes and operations are counted in the [`Report`].

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::{EngineKind, is_unsupported};
use crate::error::{FallbackReason, TransferError};
use crate::plan::Plan;
use crate::stats::Stats;
use crate::sys::event_ring::{Desc, Event, EventRing};
use crate::sys::mem::{Mapping, Part, page_size, send_parts};
use crate::transfer::{EngineRun, Forced, Report};

/// Largest chunk read into a buffer (and sent) in one operation.
pub const CHUNK: usize = 256 * 1024;
/// Largest chunk sent from a mapping in one `sendmsg(2)`: no buffer holds it, and
/// each chunk costs an fstat and two page-cache probes. As the epoll driver's
/// turn budget: 1 MiB ones cost 1.48x the server CPU per GB of 512 KiB ones
/// across a veth pair (1 GiB, 4 alternating rounds; the peer reads bytes the
/// sender's core no longer holds in its cache).
/// Also to a loopback peer: 2 MiB chunks there cost 5-15% less CPU per GB, but a
/// chunk sent at once holds the worker for its whole copy, and 1 KiB requests
/// beside a 1 GiB download waited 3x longer (p50 ~1 ms against ~0.3 ms).
pub const MAP_CHUNK: usize = 512 * 1024;
/// Bodies from this size on go by `mmap` (when the plan says so); shorter ones are
/// read.
pub const MAP_MIN: u64 = 1024 * 1024;
/// Pipe capacity asked for `splice` (and so the largest splice).
pub const PIPE_SIZE: usize = 256 * 1024;
/// Least room in the socket's send buffer worth reading a chunk for.
pub const ROOM_MIN: usize = 16 * 1024;
/// Most bytes one `sendfile(2)` call moves (`MAX_RW_COUNT`).
const SENDFILE_MAX: usize = 0x7fff_f000;
/// `POLLOUT`, as the poll operation takes it.
const POLLOUT: u32 = libc::POLLOUT as u32;

/// Spare buffers for the `read-write` engine (and a caller's own sends), shared by
/// every operation of a thread: at most `count` kept, none larger than `2 *
/// CHUNK`, so what is held between operations is bounded, not per connection;
/// and those no operation needed between two [`BufPool::trim`]s are freed, so
/// a burst's spares don't stay.
#[derive(Debug)]
pub struct BufPool {
    spare: Vec<Vec<u8>>,
    count: usize,
    /// Bytes of buffers `read-write` chunks have in flight.
    lent: usize,
    /// Capacity of the spares.
    spare_bytes: usize,
    /// The fewest spares kept since the last [`BufPool::trim`]: that many were
    /// never needed in the meantime.
    low: usize,
}

/// Most bytes of spare buffers a pool keeps.
pub const SPARE_BYTES: usize = 2 * 1024 * 1024;

/// Bytes of buffers `read-write` chunks of a pool may have in flight before each
/// further chunk is cut to [`ROOM_MIN`]: so many connections reading at once hold
/// at most this plus `ROOM_MIN` each, not a full chunk each.
pub const READ_BUDGET: usize = 4 * 1024 * 1024;

impl BufPool {
    /// A pool keeping at most `count` spare buffers.
    pub fn new(count: usize) -> BufPool {
        BufPool {
            spare: Vec::new(),
            count,
            lent: 0,
            spare_bytes: 0,
            low: 0,
        }
    }

    /// Bytes of chunk buffers in flight now.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// A spare buffer (empty), or a new one without capacity.
    pub fn take(&mut self) -> Vec<u8> {
        let b = self.spare.pop().unwrap_or_default();
        self.spare_bytes -= b.capacity();
        self.low = self.low.min(self.spare.len());
        b
    }

    /// Frees the spares no [`BufPool::take`] needed since the last call (the
    /// least recently given back): after a burst the pool's spares go within two
    /// calls, while a steady load keeps the ones it reuses. Meant for a periodic
    /// sweep (once a second). Returns the bytes freed.
    pub fn trim(&mut self) -> usize {
        let surplus = self.low.min(self.spare.len());
        let freed: usize = self.spare.drain(..surplus).map(|b| b.capacity()).sum();
        self.spare_bytes -= freed;
        self.low = self.spare.len();
        freed
    }

    /// Bytes of the spare buffers kept now.
    pub fn spare_bytes(&self) -> usize {
        self.spare_bytes
    }

    /// Gives a buffer back: kept if there is room (at most `count` spares, of at
    /// most [`SPARE_BYTES`] in all) and it is not too large.
    pub fn give(&mut self, mut b: Vec<u8>) {
        if b.capacity() > 0
            && b.capacity() <= 2 * CHUNK
            && self.spare.len() < self.count
            && self.spare_bytes + b.capacity() <= SPARE_BYTES
        {
            b.clear();
            self.spare_bytes += b.capacity();
            self.spare.push(b);
        }
    }
}

/// What a [`FileSend`] has to say after [`FileSend::start`] or
/// [`FileSend::complete`].
#[derive(Debug)]
pub enum Progress {
    /// Operations are in flight: wait for their completions.
    Pending,
    /// `bytes` file bytes reached the socket (after the prefix, if one was given),
    /// sent by `engine` (by reference when [`EngineKind::sends_by_reference`]).
    Sent {
        /// File bytes delivered.
        bytes: usize,
        /// The engine that sent them.
        engine: EngineKind,
    },
    /// Nothing delivered this time, and nothing wrong (the prefix went alone, or
    /// the pipe still holds bytes): call [`FileSend::start`] again.
    Again,
    /// The file holds nothing at the offset any more (it shrank).
    Ended {
        /// The engine running was sending by reference.
        by_reference: bool,
    },
    /// The send failed (the socket is gone, the file lost pages under a mapping,
    /// or no engine could run).
    Failed(TransferError),
}

/// What is in flight.
#[derive(Debug)]
enum Flight {
    Idle,
    /// The corked prefix on its own (from byte `from` on), before a splice.
    Prefix {
        from: usize,
    },
    /// A chunk being read in after `prefix` corked bytes.
    Read {
        prefix: usize,
    },
    /// `prefix` corked bytes and `file` bytes of a file chunk being sent (`sent` so
    /// far); `eof`: the read found the end of the file.
    Send {
        sent: usize,
        prefix: usize,
        file: usize,
        eof: bool,
    },
    /// A splice pair (`want` 0: only the drain leg); `first`: the file → pipe
    /// leg's outcome once known.
    Splice {
        want: usize,
        first: Option<io::Result<usize>>,
    },
    /// Waiting for room in the socket.
    Room,
}

/// The range being sent and where to.
#[derive(Debug)]
struct Job {
    token: u64,
    file: Arc<File>,
    sock: Desc,
    offset: u64,
    len: u64,
}

/// Sends a file range to a socket through an [`EventRing`], one chunk per
/// [`FileSend::start`]: see the `ring::send` module documentation.
#[derive(Debug)]
pub struct FileSend {
    plan: Vec<EngineKind>,
    next: usize,
    current: Option<EngineKind>,
    forced: Forced,
    report: Report,
    flight: Flight,
    job: Option<Job>,
    /// Read end, write end, room.
    pipe: Option<(Rc<OwnedFd>, Rc<OwnedFd>, usize)>,
    in_pipe: usize,
    map: Option<(Rc<Mapping>, Arc<File>, u64)>,
    /// A send failed mid-body: what the engine holds must not reach another sink.
    failed: bool,
    /// The caller gave up on what is in flight: queue nothing more.
    abandoned: bool,
    /// Bytes of the pool's budget the `read-write` chunk in flight holds.
    lent: usize,
    /// A poll just said the socket has room.
    polled: bool,
}

thread_local! {
    /// [`FileSend`]s alive on this thread.
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Drop for FileSend {
    fn drop(&mut self) {
        LIVE.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// The ring form of a plan's engine, if it has one.
fn ring_form(k: EngineKind) -> Option<EngineKind> {
    match k {
        EngineKind::Splice | EngineKind::Uring => Some(EngineKind::Splice),
        EngineKind::Sendfile => Some(EngineKind::Sendfile),
        EngineKind::Mmap => Some(EngineKind::Mmap),
        EngineKind::ReadWrite => Some(EngineKind::ReadWrite),
        _ => None,
    }
}

/// Errors that mean "this engine can't do it here" on the ring: the library's rule,
/// plus a sink that is not a socket (`SEND` needs one) and a file system that
/// can't map.
fn unsupported_here(e: &io::Error, moved: u64) -> bool {
    is_unsupported(e, moved)
        || (moved == 0 && matches!(e.raw_os_error(), Some(libc::ENOTSOCK | libc::ENODEV)))
}

impl FileSend {
    /// An operation trying `plan`'s engines that have a ring form, in order, with
    /// `forced` switching engines off.
    pub fn new(plan: &Plan, forced: Forced) -> FileSend {
        LIVE.with(|n| n.set(n.get() + 1));
        let mut engines: Vec<EngineKind> = Vec::new();
        for k in plan.engines.iter().filter_map(|&k| ring_form(k)) {
            if !engines.contains(&k) {
                engines.push(k);
            }
        }
        // Splice before sendfile: the ring's by-reference engine first.
        if let (Some(f), Some(s)) = (
            engines.iter().position(|&k| k == EngineKind::Sendfile),
            engines.iter().position(|&k| k == EngineKind::Splice),
        ) && s > f
        {
            engines.swap(f, s);
        }
        FileSend {
            plan: engines,
            next: 0,
            current: None,
            forced,
            report: Report::default(),
            flight: Flight::Idle,
            job: None,
            pipe: None,
            in_pipe: 0,
            map: None,
            failed: false,
            abandoned: false,
            lent: 0,
            polled: false,
        }
    }

    /// Starts the next body with `plan` (the pipe is kept; nothing else is).
    ///
    /// # Panics
    /// If operations are in flight.
    pub fn reset(&mut self, plan: &Plan) {
        assert!(self.is_idle(), "reset with operations in flight");
        let pipe = self.pipe.take();
        let forced = std::mem::take(&mut self.forced);
        *self = FileSend::new(plan, forced);
        self.pipe = pipe;
    }

    /// The engines this operation tries, in order (the plan's with a ring form).
    pub fn engines(&self) -> &[EngineKind] {
        &self.plan
    }

    /// What ran so far: each engine, its counters, why it handed over.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The engine running now.
    pub fn current(&self) -> Option<EngineKind> {
        self.current
    }

    /// No operation in flight.
    pub fn is_idle(&self) -> bool {
        matches!(self.flight, Flight::Idle)
    }

    /// Whether the operation may serve another body (to another socket): nothing
    /// failed, nothing in flight, no byte of this body left in its pipe.
    pub fn reusable(&self) -> bool {
        !self.failed && self.is_idle() && self.in_pipe == 0
    }

    /// Whether it holds a pipe (set up by a splice): the one thing worth keeping
    /// it for between bodies (else a new one costs a few small allocations).
    pub fn holds_pipe(&self) -> bool {
        self.pipe.is_some()
    }

    /// How many [`FileSend`]s this thread has now (kept by connections between
    /// bodies, or sending).
    pub fn live_on_this_thread() -> usize {
        LIVE.with(std::cell::Cell::get)
    }

    /// The caller gives up on this body (its lease is being broken, the
    /// connection closes): nothing more is queued; completions still due must
    /// be handed in until one is not [`Progress::Pending`]. What the pipe holds is
    /// never sent.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.failed = true;
        if self.is_idle() {
            self.discard();
        }
    }

    /// Drops what this body left: the mapping, and the pipe if it holds bytes.
    fn discard(&mut self) {
        self.map = None;
        self.job = None;
        if self.in_pipe > 0 {
            self.pipe = None;
            self.in_pipe = 0;
        }
    }

    /// Ends the body: lets go of the file (its mapping), so a read lease on it does
    /// not outlive the response.
    pub fn release(&mut self) {
        self.map = None;
        self.job = None;
    }

    /// The engine for the next chunk of `len` bytes, falling back (forced, or a
    /// body too short to map) as needed.
    fn engine(&mut self, len: u64) -> Result<EngineKind, TransferError> {
        loop {
            if let Some(k) = self.current {
                let moved = self.moved();
                match self.forced.limit(k) {
                    Some(limit) if moved >= limit && self.in_pipe == 0 => {
                        self.fall(FallbackReason::Forced { after: moved });
                        continue;
                    }
                    _ => return Ok(k),
                }
            }
            let Some(&k) = self.plan.get(self.next) else {
                self.failed = true;
                return Err(TransferError::NoEngine {
                    tried: self.report.fallbacks().collect(),
                });
            };
            self.next += 1;
            if k == EngineKind::Mmap
                && len < MAP_MIN
                && self.plan[self.next..].contains(&EngineKind::ReadWrite)
            {
                continue;
            }
            self.current = Some(k);
            self.report.runs.push(EngineRun {
                engine: k,
                stats: Stats::default(),
                fell_back: None,
            });
        }
    }

    /// The current engine hands over, for `why`.
    fn fall(&mut self, why: FallbackReason) {
        if let Some(run) = self.report.runs.last_mut() {
            tracing::debug!(engine = %run.engine, "ring send falling back: {why}");
            run.fell_back = Some(why);
        }
        self.current = None;
        self.map = None;
    }

    /// Bytes the current engine has delivered.
    fn moved(&self) -> u64 {
        self.report.runs.last().map_or(0, |r| r.stats.bytes)
    }

    fn run_stats(&mut self) -> &mut Stats {
        &mut self.report.runs.last_mut().expect("an engine runs").stats
    }

    /// Bytes the current engine may still move before it is forced off.
    fn allowed(&self, k: EngineKind) -> u64 {
        self.forced
            .limit(k)
            .map_or(u64::MAX, |l| l.saturating_sub(self.moved()))
    }

    /// Queues the next chunk of `len` bytes of `file` from `offset` to `sock`, after
    /// the corked `prefix` bytes (already reported by the caller; the buffer is
    /// the operation's until it comes back to `pool`). Every completion carrying
    /// `token` is then the operation's ([`FileSend::complete`]).
    ///
    /// # Panics
    /// If operations are in flight.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        token: u64,
        file: &Arc<File>,
        offset: u64,
        len: u64,
        sock: impl Into<Desc>,
        prefix: Vec<u8>,
    ) -> Progress {
        assert!(self.is_idle(), "a send is in flight");
        self.abandoned = false;
        if self.report.runs.is_empty() && self.next == 0 {
            self.prefer_inline(file);
        }
        self.job = Some(Job {
            token,
            file: file.clone(),
            sock: sock.into(),
            offset,
            len,
        });
        self.go(ring, pool, prefix)
    }

    /// A body from a sealed memfd (a snapshot: in memory, can never change) goes by
    /// `sendfile(2)` on this thread rather than by the ring's `splice`: io_uring
    /// runs every `SPLICE` on a worker thread of its own (the kernel punts it), a
    /// hand-off and two wake-ups that cost more than a short body's send, while a
    /// memfd's pages are never read from a disk, so the loop can't stall on them.
    /// Both lend the same pages; a file on a disk keeps the ring's splice.
    fn prefer_inline(&mut self, file: &File) {
        let (Some(s), Some(f)) = (
            self.plan.iter().position(|&k| k == EngineKind::Splice),
            self.plan.iter().position(|&k| k == EngineKind::Sendfile),
        ) else {
            return;
        };
        if s < f && crate::sys::memfd::is_sealed(file) {
            self.plan.swap(s, f);
        }
    }

    /// Queues the job's next operations with the engine that runs now.
    fn go(&mut self, ring: &mut EventRing, pool: &mut BufPool, prefix: Vec<u8>) -> Progress {
        let len = self.job.as_ref().map_or(0, |j| j.len);
        let kind = match self.engine(len) {
            Ok(k) => k,
            Err(e) => {
                pool.give(prefix);
                return Progress::Failed(e);
            }
        };
        let allowed = self.allowed(kind);
        let r = match kind {
            EngineKind::Splice => self.splice(ring, pool, prefix, allowed),
            EngineKind::Sendfile => self.sendfile(ring, pool, prefix, allowed),
            EngineKind::Mmap => self.mapped(ring, pool, prefix, allowed),
            _ => self.read(ring, pool, prefix, allowed, true),
        };
        match r {
            Ok(p) => p,
            Err(e) if unsupported_here(&e, self.moved()) && self.in_pipe == 0 => {
                self.fall(FallbackReason::Unsupported(Arc::new(e)));
                self.go(ring, pool, Vec::new())
            }
            Err(e) => self.fail(kind, e),
        }
    }

    fn fail(&mut self, engine: EngineKind, source: io::Error) -> Progress {
        self.failed = true;
        self.flight = Flight::Idle;
        Progress::Failed(TransferError::Io { engine, source })
    }

    /// Sends a non-empty `prefix` (the head bytes before the file's) on its own, now
    /// if it fits in the socket (`send(2)` with `MSG_MORE | MSG_DONTWAIT`: the file's
    /// first bytes then follow in the same turn, no wait for a completion), else its
    /// rest on the ring, and answers `None`: the engine goes on when it is sent.
    /// Sent now, or empty, it comes back (emptied).
    fn send_prefix(&mut self, ring: &mut EventRing, mut prefix: Vec<u8>) -> Option<Vec<u8>> {
        if prefix.is_empty() {
            return Some(prefix);
        }
        let job = self.job.as_ref().expect("a job");
        let flags = rustix::net::SendFlags::MORE
            | rustix::net::SendFlags::DONTWAIT
            | rustix::net::SendFlags::NOSIGNAL;
        // Any error (a full socket, a sink that is no socket) is left to the ring's
        // send, which waits for room or reports it as before.
        let from = rustix::net::send(&job.sock, &prefix, flags).unwrap_or(0);
        self.run_stats().syscalls += 1;
        if from == prefix.len() {
            prefix.clear();
            return Some(prefix);
        }
        let job = self.job.as_ref().expect("a job");
        ring.send(job.token, job.sock.clone(), prefix, from, true);
        self.run_stats().syscalls += 1;
        self.flight = Flight::Prefix { from };
        None
    }

    /// `splice`: the prefix first on its own, then a linked pair (or the drain of
    /// what the pipe holds).
    fn splice(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        prefix: Vec<u8>,
        allowed: u64,
    ) -> io::Result<Progress> {
        let Some(prefix) = self.send_prefix(ring, prefix) else {
            return Ok(Progress::Pending);
        };
        pool.give(prefix);
        if self.pipe.is_none() {
            let (r, w, room) = crate::pipe::sized(PIPE_SIZE)?;
            self.pipe = Some((Rc::new(r), Rc::new(w), room));
        }
        let job = self.job.as_ref().expect("a job");
        let (r, w, cap) = self.pipe.as_ref().expect("made above");
        let cap = *cap;
        let want = if self.in_pipe > 0 {
            0
        } else {
            (job.len.min(allowed) as usize).min(cap)
        };
        let (token, file, offset, sock) =
            (job.token, job.file.clone(), job.offset, job.sock.clone());
        ring.splice(token, &file, offset, want, w, r, sock, self.in_pipe);
        self.run_stats().syscalls += if want > 0 { 2 } else { 1 };
        self.flight = Flight::Splice { want, first: None };
        Ok(Progress::Pending)
    }

    /// `sendfile`: the prefix first on its own (as for splice), then `sendfile(2)`
    /// now, on the non-blocking socket; a full one is polled for room.
    fn sendfile(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        prefix: Vec<u8>,
        allowed: u64,
    ) -> io::Result<Progress> {
        let Some(prefix) = self.send_prefix(ring, prefix) else {
            return Ok(Progress::Pending);
        };
        pool.give(prefix);
        let job = self.job.as_ref().expect("a job");
        let want = job.len.min(allowed).min(SENDFILE_MAX as u64) as usize;
        let mut off = job.offset;
        let r = rustix::fs::sendfile(&job.sock, &*job.file, Some(&mut off), want);
        self.run_stats().syscalls += 1;
        match r {
            Ok(0) => Ok(Progress::Ended { by_reference: true }),
            Ok(n) => Ok(self.delivered(n)),
            Err(e) if e == rustix::io::Errno::AGAIN => {
                let job = self.job.as_ref().expect("a job");
                ring.poll(job.token, job.sock.clone(), POLLOUT);
                self.flight = Flight::Room;
                Ok(Progress::Pending)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Maps the job's file (unless the mapping held covers the next chunk) and
    /// answers the next chunk's length, or `None` when the file holds nothing at
    /// the offset any more (it shrank).
    fn map_next(&mut self, allowed: u64) -> io::Result<Option<usize>> {
        let job = self.job.as_ref().expect("a job");
        let (file, offset, len) = (job.file.clone(), job.offset, job.len);
        // One fstat per chunk: the length now, so no chunk reaches past the end.
        let size = rustix::fs::fstat(&*file)?.st_size as u64;
        if offset >= size {
            return Ok(None);
        }
        let chunk = len.min(MAP_CHUNK as u64).min(size - offset).min(allowed) as usize;
        // The mapping must be of this very file: an archive's members follow one
        // another with offsets from 0 each.
        let covers = |(m, f, at): &(Rc<Mapping>, Arc<File>, u64)| {
            Arc::ptr_eq(f, &file) && offset >= *at && offset + chunk as u64 <= at + m.len() as u64
        };
        if !self.map.as_ref().is_some_and(covers) {
            self.map = None;
            let ps = page_size() as u64;
            let at = offset / ps * ps;
            let end = (offset + len).min(size);
            let m = Mapping::map(file.as_fd(), at, (end - at) as usize)?;
            self.map = Some((Rc::new(m), file.clone(), at));
        }
        Ok(Some(chunk))
    }

    /// `mmap`: the prefix first on its own (as for splice), then a `sendmsg(2)` now
    /// of the next chunk from the file's mapping (made on first use), if the
    /// chunk's pages are in memory; else the chunk is read. A full socket is
    /// polled for room.
    fn mapped(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        prefix: Vec<u8>,
        allowed: u64,
    ) -> io::Result<Progress> {
        let Some(chunk) = self.map_next(allowed)? else {
            pool.give(prefix);
            return Ok(Progress::Ended {
                by_reference: false,
            });
        };
        let job = self.job.as_ref().expect("a job");
        let (file, offset) = (job.file.clone(), job.offset);
        if !cached(&file, offset, chunk as u64) {
            // A page fault would stall the loop: read it in the ring.
            return self.read(ring, pool, prefix, allowed, false);
        }
        let Some(prefix) = self.send_prefix(ring, prefix) else {
            return Ok(Progress::Pending);
        };
        pool.give(prefix);
        let (m, _, at) = self.map.as_ref().expect("mapped above");
        let start = (offset - at) as usize;
        let job = self.job.as_ref().expect("a job");
        // No MSG_MORE although more of the body follows: it held each chunk's last
        // segment back until the next call, and cost 1.22x the server CPU per GB
        // of a send without it (1.03x the epoll driver's, which writes without).
        let r = send_parts(job.sock.as_fd(), &[Part::Map(m, start, chunk)], false);
        self.run_stats().syscalls += 1;
        match r {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            // Short: the socket is full, or the file lost pages from there on (the
            // next chunk's fstat sees it shrink).
            Ok(n) => Ok(self.delivered(n)),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                let job = self.job.as_ref().expect("a job");
                ring.poll(job.token, job.sock.clone(), POLLOUT);
                self.flight = Flight::Room;
                Ok(Progress::Pending)
            }
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source truncated under the mapping",
            )),
            Err(e) => Err(e),
        }
    }

    /// The plan has `mmap`, and it is not forced off.
    fn may_map(&self) -> bool {
        self.plan.contains(&EngineKind::Mmap) && self.forced.limit(EngineKind::Mmap).is_none()
    }

    /// `read-write` (and a cold `mmap` chunk): `READ` into a pooled buffer after
    /// the prefix, then `SEND`. With `wait_room`, a socket with little room is
    /// polled first.
    fn read(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        mut prefix: Vec<u8>,
        allowed: u64,
        wait_room: bool,
    ) -> io::Result<Progress> {
        let job = self.job.as_ref().expect("a job");
        let mut chunk = (job.len.min(allowed) as usize).min(CHUNK);
        if let Some(room) = room(&job.sock) {
            // Not right after a poll said there is room: the estimate (the send
            // buffer's size less what is queued, not counting overhead) may stay
            // low while the kernel takes more.
            let polled = std::mem::take(&mut self.polled);
            if wait_room && !polled && room < ROOM_MIN && prefix.is_empty() {
                pool.give(prefix);
                ring.poll(job.token, job.sock.clone(), POLLOUT);
                self.flight = Flight::Room;
                return Ok(Progress::Pending);
            }
            chunk = chunk.min(room.max(ROOM_MIN));
        }
        // Many chunks in flight at once (a burst of requests, each read in the
        // same turn): past the budget, a chunk whose pages are in memory goes from
        // a mapping of the file, holding no buffer (when the plan has `mmap`; it
        // is counted as this engine's, as a cold `mmap` chunk read is `mmap`'s);
        // else each takes a small one.
        if wait_room && pool.lent >= READ_BUDGET && self.may_map() {
            let (file, offset) = (job.file.clone(), job.offset);
            if let Ok(Some(n)) = self.map_next(allowed)
                && cached(&file, offset, n as u64)
            {
                return self.mapped(ring, pool, prefix, allowed);
            }
        }
        chunk = chunk.min(READ_BUDGET.saturating_sub(pool.lent).max(ROOM_MIN));
        if prefix.capacity() == 0 && chunk > ROOM_MIN {
            prefix = pool.take();
        }
        self.lent = prefix.capacity().max(prefix.len() + chunk);
        pool.lent += self.lent;
        let job = self.job.as_ref().expect("a job");
        self.flight = Flight::Read {
            prefix: prefix.len(),
        };
        ring.read(job.token, &job.file, job.offset, prefix, chunk);
        self.run_stats().syscalls += 1;
        Ok(Progress::Pending)
    }

    /// Takes in one completion of the operations [`FileSend::start`] queued.
    pub fn complete(&mut self, ring: &mut EventRing, pool: &mut BufPool, event: Event) -> Progress {
        let flight = std::mem::replace(&mut self.flight, Flight::Idle);
        if matches!(flight, Flight::Read { .. } | Flight::Send { .. }) {
            pool.lent -= self.lent.min(pool.lent);
        }
        let kind = self.current.unwrap_or(EngineKind::ReadWrite);
        let p = match (flight, event) {
            (Flight::Prefix { from }, Event::Sent { res, buf }) => {
                let whole = buf.len() - from.min(buf.len());
                pool.give(buf);
                match res {
                    Ok(n) if n == whole && !self.abandoned => self.go(ring, pool, Vec::new()),
                    Ok(_) if self.abandoned => Progress::Again,
                    Ok(_) => self.fail(kind, io::Error::from(io::ErrorKind::WriteZero)),
                    Err(e) => self.fail(kind, e),
                }
            }
            (Flight::Read { prefix }, Event::Read { res, buf }) => match res {
                _ if self.abandoned => {
                    pool.give(buf);
                    Progress::Again
                }
                Ok(n) if n > 0 || prefix > 0 => {
                    let job = self.job.as_ref().expect("a job");
                    // More of this piece follows unless this chunk ends it (MSG_MORE
                    // on the last bytes would hold them back).
                    let more = n > 0 && (n as u64) < job.len;
                    // What fits now: file bytes that don't are read again later,
                    // so no buffer waits for a slow reader.
                    ring.send_now(job.token, job.sock.clone(), buf, 0, more);
                    pool.lent += self.lent;
                    self.run_stats().syscalls += 1;
                    self.flight = Flight::Send {
                        sent: 0,
                        prefix,
                        file: n,
                        eof: n == 0,
                    };
                    Progress::Pending
                }
                Ok(_) => {
                    pool.give(buf);
                    Progress::Ended {
                        by_reference: false,
                    }
                }
                Err(e) if unsupported_here(&e, self.moved()) => {
                    self.fall(FallbackReason::Unsupported(Arc::new(e)));
                    buf_truncated_go(self, ring, pool, buf, prefix)
                }
                Err(e) => {
                    pool.give(buf);
                    self.fail(kind, e)
                }
            },
            (
                Flight::Send {
                    sent,
                    prefix,
                    file,
                    eof,
                },
                Event::Sent { res, buf },
            ) => self.sent_copy(ring, pool, (sent, prefix, file, eof), res, buf),
            (Flight::Splice { want, first: None }, Event::Spliced { res, second: false }) => {
                if let Ok(n) = res {
                    self.in_pipe += n;
                }
                self.flight = Flight::Splice {
                    want,
                    first: Some(res),
                };
                Progress::Pending
            }
            (Flight::Splice { want, first }, Event::Spliced { res, second: true }) => {
                self.spliced(ring, pool, want, first, res)
            }
            (Flight::Room, Event::Polled(_)) if self.abandoned => Progress::Again,
            (Flight::Room, Event::Polled(_)) => {
                self.polled = true;
                self.go(ring, pool, Vec::new())
            }
            (flight, event) => {
                // Not this operation's: put the state back.
                tracing::debug!(?event, "ring send: unexpected completion");
                self.flight = flight;
                Progress::Pending
            }
        };
        if self.abandoned && !matches!(p, Progress::Pending) {
            self.discard();
        }
        p
    }

    /// A `read-write` chunk's send is in: `sent` bytes had left before it, of
    /// `prefix` corked bytes and `file` file bytes.
    fn sent_copy(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        (sent, prefix, file, eof): (usize, usize, usize, bool),
        res: io::Result<usize>,
        buf: Vec<u8>,
    ) -> Progress {
        let kind = self.current.unwrap_or(EngineKind::ReadWrite);
        let n = match res {
            _ if self.abandoned => {
                pool.give(buf);
                return Progress::Again;
            }
            Ok(n) => n,
            // The socket is full.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => 0,
            Err(e) if sent == 0 && unsupported_here(&e, self.moved()) => {
                self.fall(FallbackReason::Unsupported(Arc::new(e)));
                return buf_truncated_go(self, ring, pool, buf, prefix);
            }
            Err(e) => {
                pool.give(buf);
                return self.fail(kind, e);
            }
        };
        let sent = sent + n;
        let job = self.job.as_ref().expect("a job");
        if sent < prefix {
            // The corked bytes were reported already: they all go (waiting for
            // room); the file's are read again after them.
            let mut buf = buf;
            buf.truncate(prefix);
            ring.send(job.token, job.sock.clone(), buf, sent, true);
            pool.lent += self.lent;
            self.run_stats().syscalls += 1;
            self.flight = Flight::Send {
                sent,
                prefix,
                file: 0,
                eof,
            };
            return Progress::Pending;
        }
        pool.give(buf);
        let left = (sent - prefix).min(file);
        if left > 0 {
            self.delivered(left)
        } else if eof {
            // The file ended early: only the corked bytes went.
            Progress::Ended {
                by_reference: false,
            }
        } else if file == 0 {
            // Only the corked bytes were due this time.
            Progress::Again
        } else {
            // Nothing of the chunk fitted: wait for room, holding no buffer.
            ring.poll(job.token, job.sock.clone(), POLLOUT);
            self.flight = Flight::Room;
            Progress::Pending
        }
    }

    /// The socket leg of a splice pair is in.
    fn spliced(
        &mut self,
        ring: &mut EventRing,
        pool: &mut BufPool,
        want: usize,
        first: Option<io::Result<usize>>,
        res: io::Result<usize>,
    ) -> Progress {
        let first = first.unwrap_or(Ok(0));
        let sent = match res {
            Ok(m) => m,
            // The first leg was short: drain what it moved, or end.
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => 0,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && !self.abandoned => {
                // The socket is full (splice doesn't wait for room): the pipe keeps
                // the bytes until it has some.
                if self.in_pipe > 0 {
                    let job = self.job.as_ref().expect("a job");
                    ring.poll(job.token, job.sock.clone(), POLLOUT);
                    self.flight = Flight::Room;
                    return Progress::Pending;
                }
                0
            }
            Err(e) => {
                if self.abandoned {
                    return Progress::Again;
                }
                return self.fail(EngineKind::Splice, e);
            }
        };
        self.in_pipe -= sent.min(self.in_pipe);
        if sent > 0 {
            return self.delivered(sent);
        }
        if self.abandoned {
            return Progress::Again;
        }
        match first {
            Err(e) if self.in_pipe == 0 && unsupported_here(&e, self.moved()) => {
                self.fall(FallbackReason::Unsupported(Arc::new(e)));
                self.go(ring, pool, Vec::new())
            }
            Err(e) if self.in_pipe == 0 => self.fail(EngineKind::Splice, e),
            // Nothing left in the file at this offset: it shrank.
            Ok(0) if want > 0 && self.in_pipe == 0 => Progress::Ended { by_reference: true },
            // The pipe still holds bytes: the next start drains them.
            _ => Progress::Again,
        }
    }

    /// `n` file bytes reached the socket through the current engine.
    fn delivered(&mut self, n: usize) -> Progress {
        let engine = self.current.unwrap_or(EngineKind::ReadWrite);
        self.run_stats().bytes += n as u64;
        self.report.bytes += n as u64;
        if let Some(j) = self.job.as_mut() {
            j.offset += n as u64;
            j.len = j.len.saturating_sub(n as u64);
        }
        Progress::Sent { bytes: n, engine }
    }
}

/// After a fallback with a buffer in hand: keep its first `prefix` (corked) bytes,
/// drop what was read after them, and go on with the next engine.
fn buf_truncated_go(
    op: &mut FileSend,
    ring: &mut EventRing,
    pool: &mut BufPool,
    mut buf: Vec<u8>,
    prefix: usize,
) -> Progress {
    buf.truncate(prefix);
    op.go(ring, pool, buf)
}

/// Room in a socket's send buffer (`SO_SNDBUF` less `SIOCOUTQ`), or `None` when
/// `fd` is not a socket.
fn room(fd: &Desc) -> Option<usize> {
    let size = rustix::net::sockopt::socket_send_buffer_size(fd).ok()?;
    let queued = crate::sys::sock::send_queue_len(fd).ok()?;
    Some(size.saturating_sub(queued))
}

/// Whether the first and last byte of `[offset, offset + len)` are in the page cache
/// (`preadv2(RWF_NOWAIT)` fails with EAGAIN where a read would go to disk).
fn cached(file: &File, offset: u64, len: u64) -> bool {
    let probe = |at: u64| {
        let mut b = [0u8; 1];
        !matches!(
            rustix::io::preadv2(
                file,
                &mut [io::IoSliceMut::new(&mut b)],
                at,
                rustix::io::ReadWriteFlags::NOWAIT
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    };
    len == 0 || (probe(offset) && probe(offset + len - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: the pool kept up to 2 MiB of spare buffers for good after a burst
    /// of by-copy bodies. Spares no take needed between two trims are freed; the
    /// ones a steady load reuses stay.
    #[test]
    fn spares_unused_between_two_trims_are_freed() {
        let mut pool = BufPool::new(32);
        for _ in 0..4 {
            pool.give(Vec::with_capacity(64 * 1024));
        }
        assert_eq!(pool.spare_bytes(), 4 * 64 * 1024);
        // The first trim only starts the count.
        assert_eq!(pool.trim(), 0);
        // One is taken and given back in the meantime: the three others go.
        let b = pool.take();
        assert_eq!(b.capacity(), 64 * 1024);
        pool.give(b);
        assert_eq!(pool.trim(), 3 * 64 * 1024);
        assert_eq!(pool.spare_bytes(), 64 * 1024);
        // Then nothing is taken: the last one goes too.
        assert_eq!(pool.trim(), 64 * 1024);
        assert_eq!(pool.spare_bytes(), 0);
        assert_eq!(pool.take().capacity(), 0);
    }
}
