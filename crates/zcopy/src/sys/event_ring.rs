//! An io_uring for an event loop: operations are queued with a caller's token, sent
//! to the kernel in one `io_uring_enter` per loop turn, and come back as
//! [`Completion`]s — <https://man7.org/linux/man-pages/man7/io_uring.7.html>.
//!
//! Soundness rests on ownership: the ring holds every buffer an operation points to
//! (a send's or read's `Vec`, the provided receive buffers) until the kernel has
//! posted the operation's last completion, and hands it back only then. Dropping the
//! ring cancels what is still in flight and waits for it; memory the kernel might
//! still use after that is leaked, never freed.
//!
//! File descriptors are named by number, and the kernel may look a number up late (a
//! linked operation, one punted to an io-wq worker, one still in the submission
//! queue): so every descriptor an operation names is held by the ring as a [`Desc`]
//! (an `Rc` or `Arc` of its owner) until the operation's last completion, and a
//! number can't be closed and reused for another file meanwhile. Memory and
//! descriptors the kernel might still use when the ring is dropped are leaked.
//! A thread's own sockets are held without an allocation each: a [`RingFd`] owns
//! the socket, and the operations that name it are counted in a table of the
//! thread's, by descriptor number; the descriptor closes once its owner has let go
//! and the count is back to 0.
//!
//! An operation's `user_data` carries its slot and the slot's generation, so a
//! cancel of an operation that has already completed (its slot reused since) is
//! dropped, never sent to another operation. A multishot receive on a [`RingFd`]'s
//! socket (every idle connection has one) takes no slot: its `user_data` is the
//! socket's number and the caller's token, and its hold on the socket keeps that
//! number from naming another file until its last completion.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, IOU_PBUF_RING_INC, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

/// Provided-buffer group id of the receive buffers.
const BGID: u16 = 0;
/// The user_data of the cancel-everything entry pushed on drop.
const DROP_CANCEL: u64 = u64::MAX;
/// The low half of a `user_data` with this bit set is not an operation slot but
/// the socket number of a receive without one (see [`EventRing::recv_multi`]);
/// the high half is its token plus 1.
const RECV_FD: u32 = 1 << 31;

/// The ring's sizes.
#[derive(Clone, Copy, Debug)]
pub struct RingSize {
    /// Submission-queue entries (the completion queue is four times larger).
    pub entries: u32,
    /// Provided receive buffers the ring holds at most (a power of two, at most
    /// 32768); their memory has room for twice as many (see
    /// [`EventRing::release_recv_bufs`]), untouched pages costing nothing.
    pub recv_bufs: u16,
    /// Bytes in each receive buffer.
    pub recv_buf_len: u32,
}

/// An operation in flight, for [`EventRing::cancel`]: its slot and the slot's
/// generation, or for a receive without a slot ([`EventRing::recv_multi`]) its
/// socket's number and its token plus 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpId(u32, NonZeroU32);

impl OpId {
    fn user_data(self) -> u64 {
        (u64::from(self.1.get()) << 32) | u64::from(self.0)
    }
}

/// A descriptor an operation names, held by the ring until the operation's last
/// completion (so its number can't name another file meanwhile).
#[derive(Clone)]
pub enum Desc {
    /// Owned by this thread (a socket, a pipe end).
    Local(Rc<dyn AsFd>),
    /// Shared with other threads (an open file).
    Shared(Arc<dyn AsFd + Send + Sync>),
    /// Owned by a [`RingFd`] of this thread: counted, not shared by pointer.
    Held(FdHold),
}

impl Desc {
    fn raw(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Desc {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Desc::Local(d) => d.as_fd(),
            Desc::Shared(d) => d.as_fd(),
            Desc::Held(h) => h.fd,
        }
    }
}

/// This thread's count of the holds on each of its [`RingFd`]s' descriptors (by
/// number), and the descriptors whose owner let go while held: each is closed
/// when its last hold goes. A count with [`ORPHANED`] set is an orphan's, so the
/// last hold of a descriptor whose owner is alive (the common case) looks
/// nothing up.
struct Holds {
    count: Vec<u16>,
    orphans: Vec<OwnedFd>,
}

/// Set in a descriptor's hold count once its owner let go while it was held.
const ORPHANED: u16 = 1 << 15;

impl Drop for Holds {
    fn drop(&mut self) {
        // The thread is ending with descriptors still held (by operations of a
        // ring that leaked them, the kernel maybe still using them): leaked, not
        // closed.
        for fd in self.orphans.drain(..) {
            std::mem::forget(fd);
        }
    }
}

thread_local! {
    static HOLDS: RefCell<Holds> = const {
        RefCell::new(Holds {
            count: Vec::new(),
            orphans: Vec::new(),
        })
    };
}

/// A descriptor this thread owns (a connection's socket) that its rings' operations
/// name without an allocation each (an `Rc` took a 32-byte chunk a connection):
/// each operation holds it by number, counted in a table of the thread's, and
/// dropping the owner while operations hold it leaves the descriptor open until
/// the last of them completes. Not `Send`: the count is this thread's. `T` must
/// not close or replace its descriptor through `&T` (sockets and streams don't):
/// the holds name it by number.
pub struct RingFd<T: AsFd + Into<OwnedFd>> {
    inner: ManuallyDrop<T>,
    _thread: PhantomData<Rc<()>>,
}

impl<T: AsFd + Into<OwnedFd>> RingFd<T> {
    /// Owns `inner` (a descriptor no operation names yet).
    pub fn new(inner: T) -> RingFd<T> {
        RingFd {
            inner: ManuallyDrop::new(inner),
            _thread: PhantomData,
        }
    }
}

impl<T: AsFd + Into<OwnedFd>> Deref for RingFd<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsFd + Into<OwnedFd>> AsFd for RingFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsFd + Into<OwnedFd>> fmt::Debug for RingFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingFd({})", self.inner.as_fd().as_raw_fd())
    }
}

impl<T: AsFd + Into<OwnedFd>> Drop for RingFd<T> {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `inner` is not used after.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        let fd = inner.as_fd().as_raw_fd() as usize;
        let held = HOLDS.try_with(|h| {
            let mut h = h.borrow_mut();
            match h.count.get_mut(fd) {
                Some(n) if *n > 0 => {
                    *n |= ORPHANED;
                    true
                }
                _ => false,
            }
        });
        match held {
            // Nothing names it: closed now.
            Ok(false) => drop(inner),
            // Closed when its last hold goes.
            Ok(true) => HOLDS.with(|h| h.borrow_mut().orphans.push(inner.into())),
            // The thread is ending and its table is gone: an operation may still
            // name the descriptor, so it is leaked rather than closed.
            Err(_) => std::mem::forget(inner),
        }
    }
}

impl<T: AsFd + Into<OwnedFd>> From<&RingFd<T>> for Desc {
    fn from(d: &RingFd<T>) -> Desc {
        Desc::Held(FdHold::new(d.inner.as_fd()))
    }
}

/// One hold on a [`RingFd`]'s descriptor: while any is alive the descriptor stays
/// open (made only from a `RingFd`, whose drop defers the close, or by cloning).
pub struct FdHold {
    fd: BorrowedFd<'static>,
    _thread: PhantomData<Rc<()>>,
}

impl FdHold {
    fn new(fd: BorrowedFd<'_>) -> FdHold {
        let raw = fd.as_raw_fd();
        HOLDS.with(|h| {
            let count = &mut h.borrow_mut().count;
            let at = raw as usize;
            if count.len() <= at {
                count.resize(at + 1, 0);
            }
            assert!(count[at] & !ORPHANED < !ORPHANED, "fewer than 32,768 holds");
            count[at] += 1;
        });
        FdHold {
            // SAFETY: the descriptor is a RingFd's (open: borrowed from it, or from
            // another hold); the count just taken keeps it open until this hold's
            // drop (the RingFd's drop defers the close while the count is not 0).
            fd: unsafe { BorrowedFd::borrow_raw(raw) },
            _thread: PhantomData,
        }
    }
}

impl Clone for FdHold {
    fn clone(&self) -> FdHold {
        FdHold::new(self.fd)
    }
}

impl FdHold {
    /// The hold's descriptor number, the hold kept (in the thread's count) with
    /// nothing to drop it: [`FdHold::release`] of the number lets it go.
    fn into_raw(self) -> RawFd {
        let raw = self.fd.as_raw_fd();
        std::mem::forget(self);
        raw
    }

    /// Lets go of a hold that [`FdHold::into_raw`] kept of descriptor `raw`, as the
    /// hold's drop would have (closing the descriptor if it was the orphan's last).
    fn release(raw: RawFd) {
        let _ = HOLDS.try_with(|h| {
            let orphan = {
                let mut h = h.borrow_mut();
                let Some(n) = h.count.get_mut(raw as usize) else {
                    return;
                };
                if *n & !ORPHANED == 0 {
                    return;
                }
                *n -= 1;
                if *n != ORPHANED {
                    // Still held, or the owner is alive and closes it: nothing
                    // to look up.
                    return;
                }
                *n = 0;
                let i = h.orphans.iter().position(|o| o.as_raw_fd() == raw);
                i.map(|i| h.orphans.swap_remove(i))
            };
            // The owner let go before this last hold: closed now.
            drop(orphan);
        });
    }

    /// Whether the thread holds descriptor `raw` for any operation.
    fn held(raw: RawFd) -> bool {
        HOLDS
            .try_with(|h| {
                let h = h.borrow();
                h.count.get(raw as usize).is_some_and(|n| n & !ORPHANED > 0)
            })
            .unwrap_or(false)
    }
}

impl Drop for FdHold {
    fn drop(&mut self) {
        FdHold::release(self.fd.as_raw_fd());
    }
}

impl fmt::Debug for FdHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FdHold({})", self.fd.as_raw_fd())
    }
}

impl fmt::Debug for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Desc({})", self.raw())
    }
}

impl<T: AsFd + 'static> From<&Rc<T>> for Desc {
    fn from(d: &Rc<T>) -> Desc {
        Desc::Local(d.clone())
    }
}

impl<T: AsFd + Send + Sync + 'static> From<&Arc<T>> for Desc {
    fn from(d: &Arc<T>) -> Desc {
        Desc::Shared(d.clone())
    }
}

/// Identifies each ring of the process, so a buffer is only given back to its own
/// (from 1: a ring's id is never 0).
static NEXT_RING: AtomicU32 = AtomicU32::new(1);

/// A received chunk, in one of the ring's provided buffers, until
/// [`EventRing::recycle`] gives it back (to the ring it came from: another ring
/// refuses it). A buffer may hold several chunks, one after another (see
/// `RecvBufs`): it goes back to the kernel once all are recycled.
#[derive(Debug)]
pub struct RecvBuf {
    /// Never 0: an `Option` of a chunk (and of a chunk and a count) takes no more
    /// room than the chunk (a connection keeps one waiting in place). 32 bits: a
    /// chunk and a 32-bit count of its bytes used take 16 bytes, not 24 (ids
    /// repeat after 2^32 rings, which only weakens the check).
    ring: NonZeroU32,
    bid: u16,
    /// Where in its buffer the chunk starts (buffers are at most 32 KiB when
    /// they hold more than one chunk; see [`INC_MAX_LEN`]).
    off: u16,
    len: u32,
}

impl RecvBuf {
    /// Bytes received.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was received into it.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What finished.
#[derive(Debug)]
pub enum Event {
    /// A connection accepted by [`EventRing::accept_multi`].
    Accepted(io::Result<OwnedFd>),
    /// Bytes received by [`EventRing::recv_multi`]; `Ok(None)`: the peer closed.
    Received(io::Result<Option<RecvBuf>>),
    /// [`EventRing::send`] finished; its buffer comes back.
    Sent {
        /// Bytes sent, or the error.
        res: io::Result<usize>,
        /// The buffer given to `send`.
        buf: Vec<u8>,
    },
    /// [`EventRing::read`] finished; the bytes read were appended to `buf`.
    Read {
        /// Bytes read (0: end of file), or the error.
        res: io::Result<usize>,
        /// The buffer given to `read`, longer by the bytes read.
        buf: Vec<u8>,
    },
    /// One splice of [`EventRing::splice`] finished (`second`: the pipe → sink leg).
    Spliced {
        /// Bytes moved, or the error (ECANCELED for a second leg whose first was short).
        res: io::Result<usize>,
        /// Which leg.
        second: bool,
    },
    /// [`EventRing::poll`] saw these events.
    Polled(io::Result<u32>),
    /// [`EventRing::cancel_fd`] finished (how many were cancelled).
    Cancelled(io::Result<usize>),
}

/// One completion and the token its operation was queued with.
#[derive(Debug)]
pub struct Completion {
    /// The caller's token.
    pub token: u64,
    /// What happened.
    pub event: Event,
    /// The operation is over: no more completions will carry its token for it
    /// (false only for a multishot accept or receive that goes on).
    pub last: bool,
}

#[derive(Debug)]
enum Held {
    Nothing,
    Buf(Vec<u8>),
    Read(Vec<u8>),
    Msg(Box<MsgParts>),
    /// A splice's second descriptor (the first is the operation's own; never
    /// read: holding it is the point).
    Fd(#[allow(dead_code)] Desc),
}

impl Held {
    /// Bytes of the buffer held (its capacity; the shared or mapped second part of
    /// a `sendmsg` is not the operation's).
    fn bytes(&self) -> usize {
        match self {
            Held::Nothing | Held::Fd(_) => 0,
            Held::Buf(b) | Held::Read(b) => b.capacity(),
            Held::Msg(m) => m.prefix.capacity(),
        }
    }
}

/// A `sendmsg` of a buffer and a mapped range: the header, its iovecs, and what they
/// point to.
struct MsgParts {
    hdr: libc::msghdr,
    iov: [libc::iovec; 2],
    prefix: Vec<u8>,
    _second: Second,
}

/// What the second iovec of a [`MsgParts`] points into, kept alive with it (never
/// read: holding it is the point).
#[allow(dead_code)]
enum Second {
    /// Shared, immutable bytes.
    Bytes(Arc<[u8]>),
}

impl fmt::Debug for MsgParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgParts")
            .field("prefix", &self.prefix.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Accept,
    Recv,
    Send,
    Read,
    Splice { second: bool },
    Poll,
    Cancel,
}

#[derive(Debug)]
struct Op {
    token: u64,
    kind: Kind,
    held: Held,
    /// The descriptor the operation names (a splice's second is in `held`; never
    /// read: holding it is the point). One, not an array of two: 72 bytes an
    /// operation, not 96, and every idle connection has its receive in flight.
    _fd: Option<Desc>,
}

/// A receive's token plus 1, the high half of its `user_data` (see
/// [`EventRing::recv_multi`]), if the token is below `u32::MAX - 1` (so the
/// `user_data` is never [`DROP_CANCEL`]'s).
fn token_plus1(token: u64) -> Option<NonZeroU32> {
    u32::try_from(token)
        .ok()
        .filter(|&t| t < u32::MAX - 1)
        .and_then(|t| NonZeroU32::new(t + 1))
}

/// The generation after `g`: never 0 (nor is a receive's token plus 1), so an
/// `Option` of an [`OpId`] (a connection's receive, while armed) takes 8 bytes,
/// not 12.
fn next_gen(g: NonZeroU32) -> NonZeroU32 {
    g.checked_add(1).unwrap_or(NonZeroU32::MIN)
}

/// Provided receive buffers in a buffer ring (`IORING_REGISTER_PBUF_RING`).
///
/// Consumed incrementally where the kernel can (`IOU_PBUF_RING_INC`, 6.12): a
/// receive takes only the bytes it needs of the buffer at the ring's head, and its
/// completion says (`IORING_CQE_F_BUF_MORE`) when the kernel keeps the buffer for
/// the next receive, which continues where this one ended. So a buffer holds a
/// run of chunks, and goes back only once the kernel is done with it (a
/// completion without that flag named it) and every chunk of it is recycled: a
/// wave of 100 one-byte receives fills 100 bytes of one buffer, not 100 buffers.
/// Where the kernel can't, every chunk has a buffer of its own.
///
/// Each buffer is in one of five places: in the ring (the kernel may take it and
/// write to it at any time; the one it is filling may have chunks out already),
/// out (the kernel is done with it; the caller holds chunks of it, as
/// [`RecvBuf`]s), parked (taken back when its last chunk was recycled, its pages
/// maybe still resident), spare (its pages given back, or never touched), or in
/// limbo (it was in the ring when the ring was taken from the kernel, see
/// [`EventRing::renew_buf_ring`]). Only a parked buffer's pages are ever given
/// back ([`RecvBufs::release_parked`]): the kernel took it out of the ring before
/// posting the completion that ended its use, and it has not been put back
/// since, so no entry the kernel may read names it; a buffer in limbo is parked
/// (or out, while chunks of it are held) once every completion posted before
/// the ring was taken has been reaped.
struct RecvBufs {
    /// The ring of `io_uring_buf` entries (page-aligned, `count` entries).
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    /// The buffers: `slots * len` bytes of an anonymous mapping, so a page
    /// counts as the process's memory only once a receive has written to it.
    mem: *mut u8,
    mem_len: usize,
    /// Entries of the ring: at most this many buffers are live.
    count: u16,
    /// Buffers in `mem`: twice `count`, so that when the ring is renewed after a
    /// burst (all `count` in it touched) its first buffers can be untouched ones.
    slots: u32,
    len: u32,
    tail: u16,
    /// Buffers in the ring or out: a few at first, doubled each time a receive
    /// finds none free, up to `count`; fewer again as chunks are recycled while
    /// the ring holds `keep` free ones. The ring reuses them in
    /// turn, so only the buffers recently needed stay touched.
    live: u16,
    /// Buffers out: the kernel is done with them, chunks of them are held.
    out: u16,
    /// Taken out of use, pages maybe resident (given back at the next
    /// [`RecvBufs::release_parked`]); reused first when the ring grows.
    parked: Vec<u16>,
    /// Taken out of use with their pages given back, or never used.
    spare: Vec<u16>,
    /// Each buffer's [`TOUCHED`] and [`KERNEL`] bits, and how many are touched.
    state: Vec<u8>,
    touched_count: usize,
    /// Each buffer's bytes the kernel has filled since it was pushed (where its
    /// next chunk starts), and its chunks the caller holds. A buffer comes back
    /// (to be pushed again or parked) when neither the kernel ([`KERNEL`]) nor
    /// a chunk holds it.
    filled: Vec<u16>,
    chunks: Vec<u16>,
    /// Consumed incrementally (registered with `IOU_PBUF_RING_INC`): buffers of
    /// at most [`INC_MAX_LEN`], on a kernel that takes the flag.
    inc: bool,
    /// Free buffers the ring keeps before recycled ones are parked instead:
    /// [`RECV_BUFS_FIRST`] at rest, doubled (up to [`RECV_BUFS_KEEP_MAX`]) each
    /// time a receive finds none free, halved again at a release that follows a
    /// tick without one.
    keep: u16,
    /// A receive found no buffer free since the last release.
    starved: bool,
    /// The buffers the ring held when it was last taken from the kernel, until
    /// parked (see [`EventRing::renew_buf_ring`]); one that turns out to have been
    /// received into before that comes out of limbo as a chunk.
    limbo: Vec<u16>,
    /// [`EventRing::enters`] when the ring was renewed: limbo is parked at the
    /// first reaping after a later enter (which flushed any completion the CQ
    /// overflowed).
    limbo_since: u64,
    /// When the ring was renewed: limbo's pages go back [`LIMBO_WAIT`] later at
    /// the earliest.
    limbo_at: Option<Instant>,
    /// The ring is not registered (registering it again failed).
    unregistered_now: bool,
}

/// Receive buffers handed to the kernel at first (then doubled as needed), and
/// the free ones the ring keeps at rest before recycled buffers are parked
/// instead. The kernel takes the ring's buffers in turn, so every one it holds
/// ends up touched: 4 of 2 KiB (the server's size) cost 8 KiB a worker where 16
/// cost 32 and 64 cost 128 (a burst doubles it in a few turns: 4, 8, 16, 32, 64).
const RECV_BUFS_FIRST: u16 = 4;
/// The most free buffers the ring keeps while receives keep finding none free
/// (a busy worker's turn may take dozens at once: each receive that finds none
/// is re-armed, a turn later).
const RECV_BUFS_KEEP_MAX: u16 = 64;
/// A quiet ring is renewed only when it holds more free buffers than this (and
/// than it keeps): after a burst they all stay touched, 64 of 2 KiB a worker.
const RECV_BUFS_RENEW: u16 = 2 * RECV_BUFS_FIRST;
/// A buffer's state bit: a receive has written to it since its pages were last
/// given back (so they are resident).
const TOUCHED: u8 = 1;
/// A buffer's state bit: it was pushed to the ring and no completion has named it
/// as done since (one without `IORING_CQE_F_BUF_MORE`), so the kernel may hold it
/// (in the ring, or in limbo) and write past its chunks.
const KERNEL: u8 = 2;
/// Buffers up to this long are consumed incrementally (a chunk's offset and a
/// buffer's count of chunks are 16 bits); longer ones hold a chunk each.
const INC_MAX_LEN: u32 = 32 * 1024;
/// How long after a renewal the buffers the ring held give their pages back at
/// the earliest (see [`EventRing::renew_buf_ring`]; not what keeps it safe).
const LIMBO_WAIT: Duration = Duration::from_millis(50);

impl RecvBufs {
    fn new(count: u16, len: u32) -> io::Result<RecvBufs> {
        if !count.is_power_of_two() || count > 32768 || len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let ring_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        // Buffer ids are 16 bits: 2 * 32768 slots are ids 0..=65535.
        let slots = 2 * u32::from(count);
        let mem_len = slots as usize * len as usize;
        // SAFETY: the layout has a non-zero size (count > 0).
        let ring = unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: a fresh private anonymous mapping at an address the kernel
        // chooses overlaps no existing memory; it is ours until munmap in Drop.
        let mem = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                mem_len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        };
        let mem = match mem {
            Ok(m) => m.cast::<u8>(),
            Err(e) => {
                // SAFETY: `ring` came from alloc_zeroed with this layout, freed once.
                unsafe { dealloc(ring.cast(), ring_layout) };
                return Err(e.into());
            }
        };
        let mut bufs = RecvBufs {
            ring,
            ring_layout,
            mem,
            mem_len,
            count,
            slots,
            len,
            tail: 0,
            live: 0,
            out: 0,
            parked: Vec::new(),
            // Popped lowest first.
            spare: (0..slots).rev().map(|b| b as u16).collect(),
            state: vec![0; slots as usize],
            touched_count: 0,
            filled: vec![0; slots as usize],
            chunks: vec![0; slots as usize],
            inc: len <= INC_MAX_LEN,
            keep: RECV_BUFS_FIRST.min(count),
            starved: false,
            limbo: Vec::new(),
            limbo_since: 0,
            limbo_at: None,
            unregistered_now: false,
        };
        bufs.grow();
        Ok(bufs)
    }

    /// Hands the kernel more of the buffers (the first [`RECV_BUFS_FIRST`], then
    /// as many again as are live), up to all of them: spare ones only, parked ones
    /// given back first when there are too few (so what the ring holds unused at
    /// the end of a burst is mostly untouched, costing no memory).
    fn grow(&mut self) {
        let to = self
            .live
            .saturating_mul(2)
            .max(RECV_BUFS_FIRST)
            .min(self.count);
        // Chunks received into buffers taken back from a renewed ring (in limbo)
        // count as live too, so more than `count` may be.
        if self.spare.len() < to.saturating_sub(self.live) as usize {
            self.release_parked();
        }
        while self.live < to {
            // Parked buffers whose pages are still resident (sharing a page with a
            // buffer in use) serve as they are.
            let Some(bid) = self.spare.pop().or_else(|| self.parked.pop()) else {
                break;
            };
            self.push(bid);
            self.live += 1;
        }
    }

    /// A receive found no buffer free: the ring gets more, and keeps more free
    /// from now on (until a tick passes without this).
    fn starve(&mut self) {
        self.starved = true;
        self.keep = self.keep.saturating_mul(2).min(RECV_BUFS_KEEP_MAX);
        self.grow();
    }

    /// A chunk of buffer `bid` is recycled. The buffer comes back once neither
    /// the kernel nor another chunk holds it: into the ring, or parked when the
    /// ring already holds `keep` free ones beyond what is out.
    fn recycle(&mut self, bid: u16) {
        let i = bid as usize;
        assert!(self.chunks[i] > 0, "receive buffer {bid} holds no chunk");
        self.chunks[i] -= 1;
        if self.chunks[i] > 0 || self.state[i] & KERNEL != 0 {
            return;
        }
        self.out = self.out.saturating_sub(1);
        let free_in_ring = self.live.saturating_sub(self.out + 1);
        // (A ring renewed while chunks were out may have more than `count` live:
        // its entries still never hold more than `count`.)
        if (self.live > self.keep && free_in_ring >= self.keep) || free_in_ring >= self.count {
            self.live -= 1;
            self.parked.push(bid);
        } else {
            self.push(bid);
        }
    }

    /// Gives the pages of the parked buffers back to the system
    /// (`madvise(MADV_DONTNEED)`, runs of neighbours at once, whole pages only);
    /// they become spare. Returns how many were released.
    fn release_parked(&mut self) -> usize {
        if self.parked.is_empty() {
            return 0;
        }
        self.parked.sort_unstable();
        let n = self.parked.len();
        let len = self.len as usize;
        // Buffers whose pages could not go back yet (a neighbour on the same page
        // is not parked): they stay parked, tried again next time.
        let mut kept = Vec::new();
        let page = rustix::param::page_size();
        let mut i = 0;
        while i < n {
            let first = self.parked[i];
            let mut j = i + 1;
            while j < n && self.parked[j] == self.parked[j - 1] + 1 {
                j += 1;
            }
            // Only whole pages of the run: buffers smaller than a page share pages,
            // and a neighbour outside the run may be in the ring or held.
            let start = first as usize * len;
            let end = start + (j - i) * len;
            let (from, to) = (start.next_multiple_of(page), end / page * page);
            if to > from {
                // SAFETY: the range lies inside `mem` (bids < slots, and `mem` is
                // `slots * len` bytes) and inside this run of parked buffers. A parked
                // buffer is neither in the ring (the kernel took it before completing
                // into it, and it was not pushed back since) nor held by the caller
                // (its RecvBuf was consumed by recycle), so nothing reads or writes it:
                // dropping its pages (the mapping stays; they read as zeros if touched
                // again) loses nothing.
                let _ = unsafe {
                    rustix::mm::madvise(
                        self.mem.add(from).cast(),
                        to - from,
                        rustix::mm::Advice::LinuxDontNeed,
                    )
                };
            }
            for &bid in &self.parked[i..j] {
                let at = bid as usize * len;
                if at < from || at + len > to {
                    kept.push(bid);
                } else if std::mem::replace(&mut self.state[bid as usize], 0) & TOUCHED != 0 {
                    self.touched_count -= 1;
                }
            }
            i = j;
        }
        let released = n - kept.len();
        self.spare.extend(
            self.parked
                .drain(..)
                .rev()
                .filter(|b| kept.binary_search(b).is_err()),
        );
        self.parked = kept;
        released
    }

    /// A receive completed `len` bytes into buffer `bid` (`more`: the kernel
    /// keeps the buffer for the next receive): a chunk of it is held until
    /// recycled, and the buffer is resident. Returns where the chunk starts.
    fn taken(&mut self, bid: u16, len: u32, more: bool) -> u16 {
        let i = bid as usize;
        let state = &mut self.state[i];
        // A completion naming a buffer the kernel cannot hold (parked, spare, or
        // out) would hand out a chunk another one aliases: wrong bytes.
        assert!(
            *state & KERNEL != 0,
            "io_uring completed into receive buffer {bid}, which it does not hold"
        );
        if *state & TOUCHED == 0 {
            *state |= TOUCHED;
            self.touched_count += 1;
        }
        // Without incremental consumption, a chunk is a whole buffer.
        assert!(
            self.inc || !more,
            "a partly used buffer without IOU_PBUF_RING_INC"
        );
        let off = if self.inc { self.filled[i] } else { 0 };
        let end = u32::from(off) + len;
        assert!(
            end <= self.len,
            "io_uring completed past receive buffer {bid}"
        );
        self.chunks[i] += 1;
        if more {
            // In use by the kernel still (INC_MAX_LEN fits 16 bits).
            self.filled[i] = end as u16;
            return off;
        }
        *state &= !KERNEL;
        if !self.limbo.is_empty()
            && let Some(l) = self.limbo.iter().position(|&b| b == bid)
        {
            // The kernel took it before the ring was renewed: live again.
            self.limbo.swap_remove(l);
            self.live = self.live.saturating_add(1);
        }
        self.out = self.out.saturating_add(1);
        off
    }

    /// Bytes of the buffers a receive has written to since their pages were last
    /// given back (in the ring, held, or parked).
    fn resident_bytes(&self) -> usize {
        self.touched_count * self.len as usize
    }

    /// Puts buffer `bid` at the ring's tail and publishes the new tail.
    fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        // SAFETY: `tail & mask` < count, so the entry lies inside the ring allocation;
        // the kernel only reads entries between its head and our published tail, and
        // this one is past the tail until the store below.
        unsafe {
            let e = &mut *self.ring.add((self.tail & mask) as usize);
            e.set_addr(self.mem.add(bid as usize * self.len as usize) as u64);
            e.set_len(self.len);
            e.set_bid(bid);
        }
        debug_assert_eq!(self.chunks[bid as usize], 0, "a held buffer pushed");
        self.state[bid as usize] |= KERNEL;
        self.filled[bid as usize] = 0;
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `ring` is the (page-aligned, initialised) first entry, so `tail()`
        // points at its `resv` field, which the kernel reads as the ring's tail; a u16
        // at an even offset is suitably aligned for AtomicU16.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Gives back the pages of the buffers in limbo (those sharing a page with a
    /// buffer in use are parked instead, released with the parked ones); one
    /// that chunks received before the renewal still hold is out until they are
    /// recycled.
    fn release_limbo(&mut self) {
        let mut gone = Vec::new();
        for bid in std::mem::take(&mut self.limbo) {
            self.state[bid as usize] &= !KERNEL;
            if self.chunks[bid as usize] > 0 {
                self.live = self.live.saturating_add(1);
                self.out = self.out.saturating_add(1);
            } else {
                gone.push(bid);
            }
        }
        let parked = std::mem::replace(&mut self.parked, gone);
        self.release_parked();
        self.parked.extend(parked);
    }

    /// The flags the ring is registered with.
    fn flags(&self) -> u16 {
        if self.inc {
            IOU_PBUF_RING_INC as u16
        } else {
            0
        }
    }

    /// Takes the ring's entries back after `IORING_UNREGISTER_PBUF_RING`: the
    /// buffers they name go to limbo, and the ring starts empty again (tail 0,
    /// as a newly registered ring's head is), with what is out still live.
    fn unregistered(&mut self) {
        let mask = self.count - 1;
        let in_ring = self.live.saturating_sub(self.out);
        for i in 1..=in_ring {
            // SAFETY: the index is masked below `count`, inside the ring allocation,
            // which the kernel no longer reads (unregistered).
            let bid =
                unsafe { (*self.ring.add((self.tail.wrapping_sub(i) & mask) as usize)).bid() };
            self.limbo.push(bid);
        }
        self.live = self.out;
        self.tail = 0;
        // SAFETY: as in `push`; the kernel reads this tail only once registered.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(0, Ordering::Release);
    }

    fn data(&self, b: &RecvBuf) -> &[u8] {
        assert!(
            u32::from(b.bid) < self.slots && u32::from(b.off) + b.len <= self.len,
            "a buffer of this ring"
        );
        // SAFETY: the range lies inside `mem`; the kernel filled it before posting the
        // completion. It may write the buffer's bytes past this chunk's (the next
        // receives into it, incremental consumption) but not these, and the buffer is
        // pushed again only once every chunk of it is recycled, which takes the chunk
        // by value (so the borrow `b` has ended).
        unsafe {
            std::slice::from_raw_parts(
                self.mem
                    .add(b.bid as usize * self.len as usize + b.off as usize),
                b.len as usize,
            )
        }
    }
}

impl Drop for RecvBufs {
    fn drop(&mut self) {
        // SAFETY: `ring` came from alloc_zeroed with this layout and `mem` from
        // mmap with this length; the owner only drops us once the kernel can no
        // longer use them (see EventRing's Drop).
        unsafe {
            dealloc(self.ring.cast(), self.ring_layout);
            let _ = rustix::mm::munmap(self.mem.cast(), self.mem_len);
        }
    }
}

/// An io_uring with a provided-buffer ring for receives, run by one thread.
pub struct EventRing {
    ring: IoUring,
    /// This ring's id (see [`RecvBuf`]).
    id: NonZeroU32,
    ops: Vec<Option<Op>>,
    /// Each slot's generation, bumped when the slot is freed.
    gens: Vec<NonZeroU32>,
    free: Vec<u32>,
    inflight: usize,
    bufs: Option<RecvBufs>,
    enters: u64,
    /// Bytes of the buffers the operations in flight hold (sends, reads).
    buf_bytes: usize,
    /// The most `buf_bytes` ever was.
    buf_peak: usize,
    /// Tests: registering the receive buffers again fails.
    #[cfg(test)]
    refuse_registration: bool,
}

impl fmt::Debug for EventRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRing")
            .field("inflight", &self.inflight)
            .field("enters", &self.enters)
            .finish_non_exhaustive()
    }
}

/// `IORING_REGISTER_PBUF_RING` of `b`'s ring of entries, with its flags.
fn register(ring: &IoUring, b: &RecvBufs) -> io::Result<()> {
    // SAFETY: the ring of entries stays allocated (and at this address) until the
    // io_uring is closed: the `RecvBufs` lives in the EventRing and is dropped after
    // the ring has no operations left (see Drop), or leaked.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(b.ring as u64, b.count, BGID, b.flags())
    }
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

impl EventRing {
    /// `io_uring_setup` (single issuer, cooperative task work where the kernel has
    /// them; not deferred task work, which let a worker sleep with receives pending
    /// while slow clients drained large bodies: hot p99 21–50 ms instead of ~6)
    /// and `io_uring_register(IORING_REGISTER_PBUF_RING)` —
    /// <https://man7.org/linux/man-pages/man2/io_uring_register.2.html>.
    pub fn new(size: RingSize) -> io::Result<EventRing> {
        let cq = size.entries * 4;
        let ring = IoUring::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .build(size.entries)
            .or_else(|_| IoUring::builder().setup_cqsize(cq).build(size.entries))?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG / NODROP",
            ));
        }
        let mut bufs = RecvBufs::new(size.recv_bufs, size.recv_buf_len)?;
        if let Err(e) = register(&ring, &bufs) {
            if !bufs.inc {
                return Err(e);
            }
            // A kernel before 6.12 refuses IOU_PBUF_RING_INC: a chunk a buffer.
            bufs.inc = false;
            register(&ring, &bufs)?;
        }
        Ok(EventRing {
            ring,
            id: NEXT_RING
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| io::Error::other("io_uring: ring ids ran out (2^32 rings made)"))?,
            ops: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            inflight: 0,
            bufs: Some(bufs),
            enters: 0,
            buf_bytes: 0,
            buf_peak: 0,
            #[cfg(test)]
            refuse_registration: false,
        })
    }

    /// Operations queued or in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// How many `io_uring_enter` calls this ring has made.
    pub fn enters(&self) -> u64 {
        self.enters
    }

    /// Bytes of the buffers (send and read buffers, by capacity) that operations in
    /// flight hold now, and the most they ever held at once.
    pub fn buf_bytes(&self) -> (usize, usize) {
        (self.buf_bytes, self.buf_peak)
    }

    /// Queues `entry`, holding `held` and the descriptor `fd` until its last
    /// completion.
    fn push(
        &mut self,
        entry: squeue::Entry,
        token: u64,
        kind: Kind,
        held: Held,
        fd: Option<Desc>,
    ) -> OpId {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.ops.push(None);
            self.gens.push(NonZeroU32::MIN);
            (self.ops.len() - 1) as u32
        });
        self.buf_bytes += held.bytes();
        self.buf_peak = self.buf_peak.max(self.buf_bytes);
        self.ops[idx as usize] = Some(Op {
            token,
            kind,
            held,
            _fd: fd,
        });
        self.inflight += 1;
        let id = OpId(idx, self.gens[idx as usize]);
        self.push_entry(&entry.user_data(id.user_data()));
        id
    }

    /// Puts `entry` in the submission queue, handing a full queue to the kernel
    /// first.
    fn push_entry(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every buffer the entry points to is held in `self.ops` (or is a
            // provided buffer of `self.bufs`) until its last completion is reaped.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            // The submission queue is full: hand it to the kernel now.
            self.enters += 1;
            if let Err(e) = self.ring.submit()
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                )
            {
                // Unwinding would free what queued operations point to while the
                // kernel may still use it: abort.
                eprintln!("io_uring_enter failed with a full submission queue: {e}");
                std::process::abort();
            }
        }
    }

    /// `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT` on a listening socket: one
    /// [`Event::Accepted`] per connection (accepted with `SOCK_CLOEXEC | SOCK_NONBLOCK`).
    pub fn accept_multi(&mut self, token: u64, listener: impl Into<Desc>) -> OpId {
        let listener = listener.into();
        let e = opcode::AcceptMulti::new(types::Fd(listener.raw()))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build();
        self.push(e, token, Kind::Accept, Held::Nothing, Some(listener))
    }

    /// `IORING_OP_RECV` with `IORING_RECV_MULTISHOT` into the provided buffers: one
    /// [`Event::Received`] per chunk until the peer closes, an error, or cancel.
    ///
    /// On a [`RingFd`]'s socket with a token below `u32::MAX - 1` (a connection's)
    /// the receive takes no slot, no memory at all: its `user_data` is the socket's
    /// number ([`RECV_FD`] set) and the token plus 1, and the hold on the socket is
    /// the thread's count alone, let go at its last completion. So no completion
    /// of it can be taken for another socket's: the number names this socket until
    /// then. A token names the caller's connection, which it must not give to
    /// another before the receive's last completion (the driver frees a
    /// connection's token only once all its operations have completed). A cancel
    /// of such a receive once it is over finds nothing, or the receive armed after
    /// it on the same socket with the same token: the caller's own.
    pub fn recv_multi(&mut self, token: u64, sock: impl Into<Desc>) -> OpId {
        let sock = sock.into();
        let e = opcode::RecvMulti::new(types::Fd(sock.raw()), BGID).build();
        match (sock, token_plus1(token)) {
            (Desc::Held(hold), Some(plus1)) => {
                self.inflight += 1;
                let id = OpId(hold.into_raw() as u32 | RECV_FD, plus1);
                self.push_entry(&e.user_data(id.user_data()));
                id
            }
            (sock, _) => self.push(e, token, Kind::Recv, Held::Nothing, Some(sock)),
        }
    }

    /// Whether operation `op` is still in flight (its last completion not yet taken).
    /// For a receive without a slot (see [`EventRing::recv_multi`]): whether its
    /// socket is held by an operation, which is the receive while the caller arms
    /// one at a time and forgets its id at its last completion.
    pub fn in_flight(&self, op: OpId) -> bool {
        if op.0 & RECV_FD != 0 {
            return FdHold::held((op.0 & !RECV_FD) as RawFd);
        }
        self.ops.get(op.0 as usize).is_some_and(Option::is_some)
            && self.gens.get(op.0 as usize) == Some(&op.1)
    }

    /// `IORING_OP_ASYNC_CANCEL` of one operation, if it is still in flight (its last
    /// completion not yet taken): it completes (with ECANCELED, or with what it had
    /// already done). An operation that is over is left alone, and so is whatever
    /// uses its slot now. A receive without a slot ([`EventRing::recv_multi`]) is
    /// the exception: its id names the socket's number and the token, so a cancel
    /// of one that is over reaches the receive armed after it on the same socket
    /// with the same token, if any: cancel only the receive armed now.
    pub fn cancel(&mut self, token: u64, op: OpId) {
        if self.in_flight(op) {
            let e = opcode::AsyncCancel::new(op.user_data()).build();
            let _ = self.push(e, token, Kind::Cancel, Held::Nothing, None);
        }
    }

    /// The bytes of a received chunk.
    ///
    /// # Panics
    /// If the buffer is another ring's.
    pub fn recv_data(&self, b: &RecvBuf) -> &[u8] {
        assert_eq!(b.ring, self.id, "a buffer of this ring");
        self.bufs
            .as_ref()
            .expect("buffers live as long as the ring")
            .data(b)
    }

    /// Gives a received chunk's buffer back to the kernel.
    ///
    /// # Panics
    /// If the buffer is another ring's.
    pub fn recycle(&mut self, b: RecvBuf) {
        assert_eq!(b.ring, self.id, "a buffer of this ring");
        let bufs = self
            .bufs
            .as_mut()
            .expect("buffers live as long as the ring");
        assert!(u32::from(b.bid) < bufs.slots, "a buffer of this ring");
        bufs.recycle(b.bid);
    }

    /// Gives back the pages of the receive buffers taken out of use since the last
    /// call (when a chunk was recycled while the ring held enough free ones): after
    /// a burst, the receive buffers it touched stop counting as the process's
    /// memory. Cheap when there are none; meant for a periodic sweep (a buffer
    /// parked and soon needed again is reused with its pages). At a quiet call (no
    /// receive found the ring empty since the last) after a burst, when the ring
    /// holds more free buffers than it keeps now, it is renewed with as many as it
    /// keeps, untouched ones, and those it held are given back at the next call
    /// (see [`EventRing::renew_buf_ring`]). Returns how many buffers were released.
    pub fn release_recv_bufs(&mut self) -> usize {
        let Some(b) = self.bufs.as_mut() else {
            return 0;
        };
        // No receive found the ring empty since the last call: it keeps fewer
        // free buffers from now on.
        let quiet = !std::mem::take(&mut b.starved);
        if quiet {
            b.keep = (b.keep / 2).max(RECV_BUFS_FIRST.min(b.count));
        }
        let released = b.release_parked();
        if b.unregistered_now {
            // Registering it again failed at the renewal (warned then): tried
            // again here, not at every turn.
            let _ = self.register_buf_ring();
            return released;
        }
        // Quiet after a burst, the ring still holds the free buffers it grew to,
        // every one touched (the kernel takes them in turn): it is renewed with
        // as many as it keeps now, untouched ones.
        let free = b.live.saturating_sub(b.out);
        if quiet && b.limbo.is_empty() && free > b.keep && free > RECV_BUFS_RENEW {
            self.renew_buf_ring();
        }
        released
    }

    /// Whether the receive buffers are registered, so a receive armed now can
    /// take one: not while registering them again after a renewal fails (retried
    /// at each [`EventRing::release_recv_bufs`]), when a receive ends at once with
    /// ENOBUFS; its owner had better wait for the next release than arm it again
    /// and again.
    pub fn recv_bufs_ready(&self) -> bool {
        self.bufs.as_ref().is_none_or(|b| !b.unregistered_now)
    }

    /// Takes the receive-buffer ring from the kernel
    /// (`IORING_UNREGISTER_PBUF_RING`) and registers it again holding as many free
    /// buffers as it keeps now, untouched ones: the buffers it held go to limbo
    /// and give their pages back once every completion posted before has been
    /// reaped, [`LIMBO_WAIT`] after the renewal at the earliest. A
    /// receive that looks for a buffer in between ends with ENOBUFS, as when the
    /// ring is empty: its owner arms it again, and its bytes wait in the socket.
    /// Why no buffer in limbo is written after its pages go back: the only
    /// receive that selects a buffer is [`EventRing::recv_multi`], a multishot
    /// receive on a socket, never submitted with `IOSQE_ASYNC`. The kernel never
    /// runs a multishot request in an io-wq worker (it arms its poll again), so
    /// each buffer is taken, filled and its completion posted under the ring's
    /// lock, in this thread; unregistering takes that lock, so every buffer taken
    /// before has its completion posted (in the CQ, or in the overflow list an
    /// enter flushes). Whoever adds a single-shot buffer-select receive, or
    /// `IOSQE_ASYNC`, breaks this: a completion naming a buffer the kernel cannot
    /// hold then panics (see [`RecvBufs::taken`]) rather than alias a chunk.
    /// [`LIMBO_WAIT`] is not part of that argument: it is how long the old buffers
    /// stay, sooner than the next release, since a ring renewed between waves of
    /// receives (slowloris clients every 2 s) refills with new buffers, touched on
    /// top of the old.
    fn renew_buf_ring(&mut self) {
        let Some(b) = self.bufs.as_mut() else {
            return;
        };
        if self.ring.submitter().unregister_buf_ring(BGID).is_err() {
            return;
        }
        b.unregistered();
        b.limbo_since = self.enters;
        b.limbo_at = Some(Instant::now());
        while b.live - b.out < b.keep {
            let Some(bid) = b.spare.pop().or_else(|| b.parked.pop()) else {
                break;
            };
            b.push(bid);
            b.live += 1;
        }
        b.unregistered_now = true;
        if let Err(e) = self.register_buf_ring() {
            tracing::warn!(
                "io_uring: registering the receive buffers again (retried at each release): {e}"
            );
        }
    }

    /// Registers the receive-buffer ring again after [`EventRing::renew_buf_ring`]
    /// took it (tried again at each [`EventRing::release_recv_bufs`] while it
    /// fails: receives end with ENOBUFS until then).
    fn register_buf_ring(&mut self) -> io::Result<()> {
        let Some(b) = self.bufs.as_mut() else {
            return Ok(());
        };
        #[cfg(test)]
        if self.refuse_registration {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        register(&self.ring, b)?;
        b.unregistered_now = false;
        Ok(())
    }

    /// Whether the ring was renewed and the buffers it held have yet to give their
    /// pages back (at a reaping [`LIMBO_WAIT`] after the renewal: a loop that
    /// would sleep longer wakes for it).
    pub fn recv_bufs_settling(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.limbo.is_empty())
    }

    /// Bytes of receive buffers whose pages are resident now: those a receive has
    /// written to since their pages were last given back (in the ring, held as
    /// received chunks, or parked).
    pub fn recv_buf_bytes(&self) -> usize {
        self.bufs.as_ref().map_or(0, RecvBufs::resident_bytes)
    }

    /// `IORING_OP_SEND` of `buf[from..]` (`send(2)` with `MSG_NOSIGNAL | MSG_WAITALL`,
    /// plus `MSG_MORE` with `more`): finishes when all is sent or on error.
    pub fn send(
        &mut self,
        token: u64,
        sock: impl Into<Desc>,
        buf: Vec<u8>,
        from: usize,
        more: bool,
    ) {
        self.send_flags(token, sock.into(), buf, from, more, libc::MSG_WAITALL);
    }

    /// `IORING_OP_SEND` of `buf[from..]` with `MSG_DONTWAIT` (and `MSG_NOSIGNAL`,
    /// plus `MSG_MORE` with `more`): sends what fits in the socket now and
    /// completes at once, with a short count, or EAGAIN when nothing fits — the
    /// buffer is never held waiting for a slow reader.
    pub fn send_now(
        &mut self,
        token: u64,
        sock: impl Into<Desc>,
        buf: Vec<u8>,
        from: usize,
        more: bool,
    ) {
        self.send_flags(token, sock.into(), buf, from, more, libc::MSG_DONTWAIT);
    }

    fn send_flags(
        &mut self,
        token: u64,
        sock: Desc,
        buf: Vec<u8>,
        from: usize,
        more: bool,
        wait: libc::c_int,
    ) {
        let from = from.min(buf.len());
        let len = (buf.len() - from).min(u32::MAX as usize) as u32;
        let mut flags = libc::MSG_NOSIGNAL | wait;
        if more {
            flags |= libc::MSG_MORE;
        }
        let e = opcode::Send::new(types::Fd(sock.raw()), buf[from..].as_ptr(), len)
            .flags(flags)
            .build();
        let _ = self.push(e, token, Kind::Send, Held::Buf(buf), Some(sock));
    }

    /// `IORING_OP_SENDMSG` of `prefix` followed by `bytes[start..start + len]`
    /// (shared, immutable memory, held until the send completes; `sendmsg(2)` with
    /// `MSG_NOSIGNAL | MSG_WAITALL`, plus `MSG_MORE` with `more`): the kernel copies
    /// them at send time. Completes as [`Event::Sent`] with `prefix` as the buffer.
    ///
    /// # Panics
    /// If the range is not inside `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn send_shared(
        &mut self,
        token: u64,
        sock: impl Into<Desc>,
        prefix: Vec<u8>,
        bytes: &Arc<[u8]>,
        start: usize,
        len: usize,
        more: bool,
    ) {
        let second = bytes[start..start + len].as_ptr();
        self.send_two(
            token,
            sock.into(),
            prefix,
            second,
            len,
            Second::Bytes(bytes.clone()),
            more,
        );
    }

    /// One `IORING_OP_SENDMSG` of `prefix` and the `len` bytes at `second`, which
    /// `keep` keeps alive.
    #[allow(clippy::too_many_arguments)]
    fn send_two(
        &mut self,
        token: u64,
        sock: Desc,
        prefix: Vec<u8>,
        second: *const u8,
        len: usize,
        keep: Second,
        more: bool,
    ) {
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        let mut parts = Box::new(MsgParts {
            hdr,
            iov: [
                libc::iovec {
                    iov_base: prefix.as_ptr() as *mut libc::c_void,
                    iov_len: prefix.len(),
                },
                libc::iovec {
                    iov_base: second as *mut libc::c_void,
                    iov_len: len,
                },
            ],
            prefix,
            _second: keep,
        });
        parts.hdr.msg_iov = parts.iov.as_mut_ptr();
        parts.hdr.msg_iovlen = 2;
        let mut flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        if more {
            flags |= libc::MSG_MORE;
        }
        let e = opcode::SendMsg::new(types::Fd(sock.raw()), &parts.hdr)
            .flags(flags as u32)
            .build();
        // The header, iovecs, prefix bytes and what the second iovec points into all
        // live in `parts` (boxed: their addresses don't move) until the completion.
        let _ = self.push(e, token, Kind::Send, Held::Msg(parts), Some(sock));
    }

    /// `IORING_OP_READ` (`pread(2)`) of up to `len` bytes of `file` at `offset`,
    /// appended to `buf` (within its spare capacity, reserved here).
    pub fn read(
        &mut self,
        token: u64,
        file: &Arc<File>,
        offset: u64,
        mut buf: Vec<u8>,
        len: usize,
    ) {
        buf.reserve(len);
        let len = len.min(u32::MAX as usize);
        let ptr = buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let e = opcode::Read::new(types::Fd(file.as_raw_fd()), ptr, len as u32)
            .offset(offset)
            .build();
        let _ = self.push(e, token, Kind::Read, Held::Read(buf), Some(file.into()));
    }

    /// Two `IORING_OP_SPLICE`s linked with `IOSQE_IO_LINK`: up to `len` bytes of `file`
    /// at `offset` into `pipe_w`, then as many from `pipe_r` to `sock`. Each leg
    /// completes as [`Event::Spliced`]; a short first leg cancels the second.
    /// With `len` 0 only the second leg runs (draining what the pipe holds, `drain`
    /// bytes). The file, both pipe ends and the socket are held until each leg's
    /// completion.
    #[allow(clippy::too_many_arguments)]
    pub fn splice(
        &mut self,
        token: u64,
        file: &Arc<File>,
        offset: u64,
        len: usize,
        pipe_w: &Rc<OwnedFd>,
        pipe_r: &Rc<OwnedFd>,
        sock: impl Into<Desc>,
        drain: usize,
    ) {
        let move_flags = libc::SPLICE_F_MOVE;
        if len > 0 {
            let first = opcode::Splice::new(
                types::Fd(file.as_raw_fd()),
                offset as i64,
                types::Fd(pipe_w.as_raw_fd()),
                -1,
                len.min(u32::MAX as usize) as u32,
            )
            .flags(move_flags)
            .build()
            .flags(squeue::Flags::IO_LINK);
            let _ = self.push(
                first,
                token,
                Kind::Splice { second: false },
                Held::Fd(pipe_w.into()),
                Some(file.into()),
            );
        }
        let sock = sock.into();
        let n = if len > 0 { len } else { drain };
        let second = opcode::Splice::new(
            types::Fd(pipe_r.as_raw_fd()),
            -1,
            types::Fd(sock.raw()),
            -1,
            n.min(u32::MAX as usize) as u32,
        )
        .flags(move_flags)
        .build();
        let _ = self.push(
            second,
            token,
            Kind::Splice { second: true },
            Held::Fd(sock),
            Some(pipe_r.into()),
        );
    }

    /// `IORING_OP_POLL_ADD` (one shot) for `events` (`POLLIN`, `POLLOUT`, ...).
    pub fn poll(&mut self, token: u64, fd: impl Into<Desc>, events: u32) {
        let fd = fd.into();
        let e = opcode::PollAdd::new(types::Fd(fd.raw()), events).build();
        let _ = self.push(e, token, Kind::Poll, Held::Nothing, Some(fd));
    }

    /// `IORING_OP_ASYNC_CANCEL` of every operation on `fd` (`IORING_ASYNC_CANCEL_FD |
    /// IORING_ASYNC_CANCEL_ALL`); they complete with ECANCELED.
    pub fn cancel_fd(&mut self, token: u64, fd: impl Into<Desc>) {
        let fd = fd.into();
        let e = opcode::AsyncCancel2::new(CancelBuilder::fd(types::Fd(fd.raw())).all()).build();
        let _ = self.push(e, token, Kind::Cancel, Held::Nothing, Some(fd));
    }

    /// Submits everything queued and waits for at least one completion, at most
    /// `timeout` (`None`: don't wait) — one `io_uring_enter`.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.enters += 1;
        let r = match timeout {
            None => self.ring.submit(),
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every posted completion into `out`.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let _left = self.completions_upto(out, usize::MAX);
    }

    /// Moves posted completions into `out`, at most `max` of them: the rest stay
    /// in the completion queue for the next call (and the next wait returns at
    /// once). A caller taking a burst's completions `max` at a time keeps its list
    /// that small (a worker's held 64 bytes a completion of the burst). Read from
    /// the queue in batches on the stack: no allocation a call. Returns whether
    /// completions are left in the queue (`out` may hold fewer than `max` even
    /// then: a completion nobody waits for is not handed out).
    pub fn completions_upto(&mut self, out: &mut Vec<Completion>, max: usize) -> bool {
        const BATCH: usize = 32;
        let mut left = max;
        while left > 0 {
            let mut batch: [Option<cqueue::Entry>; BATCH] = Default::default();
            let mut n = 0;
            for (slot, cqe) in batch
                .iter_mut()
                .zip(self.ring.completion().take(left.min(BATCH)))
            {
                *slot = Some(cqe);
                n += 1;
            }
            for cqe in batch.iter().flatten() {
                if let Some(c) = self.complete(cqe) {
                    out.push(c);
                }
            }
            if n < BATCH {
                break;
            }
            left -= n;
        }
        // Every completion posted before the ring was renewed is in: an enter since
        // flushed those the CQ overflowed (none is pending now), and this reaped
        // the rest (none is left in the queue). The buffers still in limbo were
        // not received into: their pages go back (a while after the renewal: see
        // `renew_buf_ring`).
        if let Some(b) = self.bufs.as_mut()
            && !b.limbo.is_empty()
            && self.ring.completion().is_empty()
            && self.enters > b.limbo_since
            && !self.ring.submission().cq_overflow()
            && b.limbo_at.is_some_and(|t| t.elapsed() >= LIMBO_WAIT)
        {
            b.release_limbo();
        }
        !self.ring.completion().is_empty()
    }

    fn complete(&mut self, cqe: &cqueue::Entry) -> Option<Completion> {
        let ud = cqe.user_data();
        if ud == DROP_CANCEL {
            return None;
        }
        let idx = (ud & u64::from(u32::MAX)) as u32;
        // Generations are never 0: a user_data with 0 there is no operation's.
        let gen_ = NonZeroU32::new((ud >> 32) as u32)?;
        let flags = cqe.flags();
        let last = !cqueue::more(flags);
        let res = cqe.result();
        if idx & RECV_FD != 0 {
            if last {
                // The socket is the kernel's no more: let it go (its number may
                // name another file from now on, never before).
                FdHold::release((idx & !RECV_FD) as RawFd);
                self.inflight -= 1;
            }
            return Some(Completion {
                token: u64::from(gen_.get() - 1),
                event: self.received(res, flags),
                last,
            });
        }
        let idx = idx as usize;
        if self.gens.get(idx) != Some(&gen_) {
            return None;
        }
        let slot = self.ops.get_mut(idx)?;
        let op = if last {
            slot.take()?
        } else {
            let op = slot.as_ref()?;
            Op {
                token: op.token,
                kind: op.kind,
                held: Held::Nothing,
                _fd: None,
            }
        };
        if last {
            self.inflight -= 1;
            self.buf_bytes -= op.held.bytes();
            // A cancel naming the old generation no longer matches this slot.
            self.gens[idx] = next_gen(self.gens[idx]);
            self.free.push(idx as u32);
        }
        let event = match (op.kind, op.held) {
            (Kind::Accept, _) => Event::Accepted(result(res).map(|fd| {
                // SAFETY: a successful accept completion carries a new fd the kernel
                // installed for us; nothing else owns it.
                unsafe { OwnedFd::from_raw_fd(fd as i32) }
            })),
            (Kind::Recv, _) => self.received(res, flags),
            (Kind::Send, Held::Buf(buf)) => Event::Sent {
                res: result(res),
                buf,
            },
            (Kind::Send, Held::Msg(parts)) => Event::Sent {
                res: result(res),
                buf: parts.prefix,
            },
            (Kind::Read, Held::Read(mut buf)) => {
                let res = result(res);
                if let Ok(n) = res {
                    let n = n.min(buf.capacity() - buf.len());
                    // SAFETY: the kernel wrote `n` bytes into the spare capacity that
                    // `read` pointed it at (it never writes more than asked).
                    unsafe { buf.set_len(buf.len() + n) };
                }
                Event::Read { res, buf }
            }
            (Kind::Splice { second }, _) => Event::Spliced {
                res: result(res),
                second,
            },
            (Kind::Poll, _) => Event::Polled(result(res).map(|r| r as u32)),
            (Kind::Cancel, _) => Event::Cancelled(result(res)),
            (Kind::Send | Kind::Read, _) => unreachable!("sends and reads hold their buffer"),
        };
        Some(Completion {
            token: op.token,
            event,
            last,
        })
    }

    /// The event of a receive's completion: the chunk (its buffer taken out of the
    /// ring), the peer's close, or the error.
    fn received(&mut self, res: i32, flags: u32) -> Event {
        let len = res.max(0) as u32;
        // Under incremental consumption a buffer is done only once its last byte
        // is filled: an end (0) or an error consumed nothing, so the kernel keeps
        // the buffer whatever the flag says (a kernel has posted such a bid
        // without IORING_CQE_F_BUF_MORE while keeping it: liburing #1545).
        let more =
            cqueue::buffer_more(flags) || (res <= 0 && self.bufs.as_ref().is_some_and(|b| b.inc));
        let buf = cqueue::buffer_select(flags).map(|bid| RecvBuf {
            ring: self.id,
            bid,
            off: self.bufs.as_mut().map_or(0, |b| b.taken(bid, len, more)),
            len,
        });
        match (result(res), buf) {
            (Ok(0), b) => {
                if let Some(b) = b {
                    self.recycle(b);
                }
                Event::Received(Ok(None))
            }
            (Ok(_), Some(b)) => Event::Received(Ok(Some(b))),
            (Ok(_), None) => {
                Event::Received(Err(io::Error::other("receive completion without a buffer")))
            }
            (Err(e), b) => {
                if let Some(b) = b {
                    self.recycle(b);
                }
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    && let Some(bufs) = self.bufs.as_mut()
                {
                    // Every buffer handed out is in use: hand out more (the
                    // connection's receive is re-armed by its owner).
                    bufs.starve();
                }
                Event::Received(Err(e))
            }
        }
    }
}

impl Drop for EventRing {
    fn drop(&mut self) {
        if self.inflight > 0 {
            let e = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(DROP_CANCEL);
            // A full submission queue is handed to the kernel first: the cancel must
            // go in.
            self.push_entry(&e);
            let mut out = Vec::new();
            for _ in 0..50 {
                if self.inflight == 0 {
                    break;
                }
                let _ = self.submit_and_wait(Some(Duration::from_millis(20)));
                self.completions(&mut out);
                out.clear();
            }
        }
        if self.inflight > 0 {
            // The kernel may still use these — buffers and descriptors (closing one
            // would let its number name another file): leak them rather than free
            // or close them.
            for op in self.ops.drain(..).flatten() {
                std::mem::forget(op);
            }
            // A receive without a slot holds its socket by a count that its last
            // completion would have taken back: left as it is, the socket stays
            // open.
            std::mem::forget(self.bufs.take());
            return;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

/// Whether an event loop can run on io_uring here (setup allowed, multishot accept
/// and receive, provided-buffer rings, send, read, splice, poll, cancel by fd), and
/// if not, why. Probed once per process.
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_now).clone()
}

fn probe_now() -> Result<(), String> {
    let mut ring = EventRing::new(RingSize {
        entries: 8,
        recv_bufs: 2,
        recv_buf_len: 64,
    })
    .map_err(|e| super::uring::setup_refused(&e))?;
    let mut probe = Probe::new();
    ring.ring
        .submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe: {e}"))?;
    for (code, name) in [
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::Splice::CODE, "SPLICE"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("IORING_OP_{name} not supported by this kernel"));
        }
    }
    // Multishot receive (6.0): one byte through a socket pair must arrive with
    // IORING_CQE_F_MORE set.
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let b = RingFd::new(b);
    ring.recv_multi(1, &b);
    rustix::io::write(&a, b"x").map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    for _ in 0..20 {
        ring.submit_and_wait(Some(Duration::from_millis(50)))
            .map_err(|e| format!("io_uring_enter: {e}"))?;
        ring.completions(&mut out);
        if !out.is_empty() {
            break;
        }
    }
    let verdict = match out.pop() {
        Some(Completion {
            event: Event::Received(Ok(Some(buf))),
            last: false,
            ..
        }) => {
            ring.recycle(buf);
            Ok(())
        }
        Some(c) => Err(format!("multishot receive not supported: {:?}", c.event)),
        None => Err("multishot receive: no completion".to_string()),
    };
    ring.cancel_fd(2, &b);
    for _ in 0..20 {
        if ring.inflight() == 0 {
            break;
        }
        let _ = ring.submit_and_wait(Some(Duration::from_millis(50)));
        ring.completions(&mut out);
        for c in out.drain(..) {
            if let Event::Received(Ok(Some(buf))) = c.event {
                ring.recycle(buf);
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    fn ring() -> Option<EventRing> {
        ring_of(RingSize {
            entries: 16,
            recv_bufs: 4,
            recv_buf_len: 4096,
        })
    }

    /// A ring of `size`, or None (the test says it is skipped) where io_uring
    /// can't run an event loop.
    fn ring_of(size: RingSize) -> Option<EventRing> {
        if let Err(why) = probe() {
            eprintln!("skipped: no io_uring event loop here: {why}");
            return None;
        }
        Some(EventRing::new(size).expect("ring"))
    }

    /// A connected pair: the ring's end (held by the operations that name it, as a
    /// server's connection is) and the peer's.
    fn socket_pair() -> (RingFd<UnixStream>, UnixStream) {
        let (sock, peer) = UnixStream::pair().unwrap();
        (RingFd::new(sock), peer)
    }

    /// The same over TCP on loopback (a FIN or a reset to receive).
    fn tcp_pair() -> (RingFd<std::net::TcpStream>, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (RingFd::new(l.accept().unwrap().0), peer)
    }

    /// Receives on `sock` (token 1) until `n` bytes are in or 2,000 turns have
    /// gone by, giving each chunk to `chunk`; the receive is armed again after its
    /// last completion, ENOBUFS (every buffer held) the only error expected.
    /// `armed` says whether a receive is armed, before and after. Returns the
    /// bytes received.
    fn receive(
        ring: &mut EventRing,
        sock: &RingFd<UnixStream>,
        armed: &mut bool,
        n: usize,
        mut chunk: impl FnMut(&mut EventRing, RecvBuf),
    ) -> usize {
        let mut got = 0;
        for _ in 0..2000 {
            if got >= n {
                break;
            }
            if !*armed {
                ring.recv_multi(1, sock);
                *armed = true;
            }
            let mut out = Vec::new();
            ring.submit_and_wait(Some(Duration::from_millis(20)))
                .unwrap();
            ring.completions(&mut out);
            for c in out {
                *armed &= !c.last;
                match c.event {
                    Event::Received(Ok(Some(b))) => {
                        got += b.len();
                        chunk(ring, b);
                    }
                    Event::Received(Err(e)) => {
                        assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "{e}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        got
    }

    /// Cancels `old`, an operation that is over (its slot now used by the
    /// operation queued with token 2), then wakes token 2's operation with a byte
    /// from `peer`: its one completion, which the cancel must not have reached.
    fn cancel_stale_then_wake(
        ring: &mut EventRing,
        old: OpId,
        peer: &mut UnixStream,
    ) -> Completion {
        ring.submit_and_wait(None).unwrap();
        ring.cancel(3, old);
        ring.submit_and_wait(None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        peer.write_all(b"y").unwrap();
        let done = reap(ring, 1);
        let seen = format!("{done:?}");
        let mut got: Vec<_> = done.into_iter().filter(|c| c.token == 2).collect();
        assert_eq!(got.len(), 1, "{seen}");
        got.pop().expect("one")
    }

    /// Waits until `n` completions are in (or 2 s pass).
    fn reap(ring: &mut EventRing, n: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..100 {
            if out.len() >= n {
                break;
            }
            ring.submit_and_wait(Some(Duration::from_millis(20)))
                .unwrap();
            ring.completions(&mut out);
        }
        out
    }

    fn file_of(byte: u8, len: usize) -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![byte; len]).unwrap();
        (dir, Arc::new(File::open(&path).unwrap()))
    }

    fn private_dirty_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("Private_Dirty:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The receive buffers are the process's memory only once a receive has used
    /// them (a ring of 64 MiB of buffers costs next to nothing at rest; it was all
    /// written at set-up), and the kernel is handed more of them when all it has
    /// are held: 70 chunks held at once arrive whole, past the first 64.
    #[test]
    fn receive_buffers_cost_memory_only_once_used_and_grow_when_all_are_held() {
        if let Err(why) = probe() {
            eprintln!("skipped: no io_uring event loop here: {why}");
            return;
        }
        let before = private_dirty_kib();
        let mut ring = EventRing::new(RingSize {
            entries: 64,
            recv_bufs: 16384,
            recv_buf_len: 4096,
        })
        .expect("ring");
        let grew = private_dirty_kib().saturating_sub(before);
        // Other tests run alongside: a wide margin from the 64 MiB.
        assert!(grew < 16 * 1024, "a new ring made {grew} KiB dirty");
        let (sock, mut peer) = socket_pair();
        // 70 chunks held at once, every byte as written (hold_chunks checks them).
        let held = hold_chunks(&mut ring, &sock, &mut peer, 70, 7);
        assert!(held.len() > 64, "{} chunks held", held.len());
        recycle_all(&mut ring, held);
        stop_receiving(&mut ring, &sock);
    }

    /// The caller drops its file before the splice is even submitted, and another
    /// file is opened (and would get the freed number): the client still gets the
    /// first file's bytes, because the ring holds the file until the completion.
    #[test]
    fn a_queued_splice_keeps_its_file_open() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (_d1, first) = file_of(b'A', 4096);
        let (sock, mut peer) = socket_pair();
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (r, w) = (Rc::new(r), Rc::new(w));
        let number = first.as_raw_fd();
        ring.splice(1, &first, 0, 4096, &w, &r, &sock, 0);
        drop(first);
        let (_d2, other) = file_of(b'B', 4096);
        assert_ne!(
            other.as_raw_fd(),
            number,
            "the first file's number is still in use"
        );
        let done = reap(&mut ring, 2);
        assert_eq!(done.len(), 2);
        let mut got = vec![0u8; 4096];
        peer.read_exact(&mut got).unwrap();
        assert!(
            got.iter().all(|&b| b == b'A'),
            "only the first file's bytes"
        );
    }

    /// The buffers operations hold are counted until their completions (a send's
    /// buffer, a `sendmsg`'s corked prefix, not its shared bytes), and the most
    /// ever held at once is kept.
    #[test]
    fn buffers_held_by_operations_are_counted_until_they_complete() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        let buf = Vec::with_capacity(1000);
        let prefix = Vec::from(&b"head"[..]);
        let cap = prefix.capacity();
        let shared: Arc<[u8]> = Arc::from(vec![7u8; 5000]);
        let mut one = buf;
        one.extend_from_slice(b"abc");
        ring.send(1, &sock, one, 0, false);
        ring.send_shared(2, &sock, prefix, &shared, 0, 5000, false);
        assert_eq!(ring.buf_bytes(), (1000 + cap, 1000 + cap));
        let done = reap(&mut ring, 2);
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(ring.buf_bytes(), (0, 1000 + cap));
        let mut got = vec![0u8; 3 + 4 + 5000];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got[..7], b"abchead");
    }

    /// A cancel of an operation that is over does not reach the operation that now
    /// uses its slot (another connection's, in a server).
    #[test]
    fn a_stale_cancel_never_hits_the_slots_next_operation() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        let (a, b) = (Rc::new(a), Rc::new(b));
        const POLLIN: u32 = libc::POLLIN as u32;
        ring.poll(1, &a, POLLIN);
        let old = OpId(0, NonZeroU32::MIN);
        assert!(ring.in_flight(old));
        a_peer.write_all(b"x").unwrap();
        let done = reap(&mut ring, 1);
        assert!(matches!(done[0].event, Event::Polled(Ok(_))), "{done:?}");
        assert!(!ring.in_flight(old));
        // The slot is reused by b's poll; a cancel of a's (over) poll is dropped.
        ring.poll(2, &b, POLLIN);
        let polled = cancel_stale_then_wake(&mut ring, old, &mut b_peer);
        assert!(
            matches!(polled.event, Event::Polled(Ok(_))),
            "b's poll was cancelled: {:?}",
            polled.event
        );
    }

    /// Every idle connection has a receive in flight: on a [`RingFd`]'s socket it
    /// takes no slot (the socket's number and the token are its `user_data`). A
    /// cancel of a receive that is over does not reach another socket's receive,
    /// and a receive keeps its socket open after its owner let go.
    #[test]
    fn a_receive_takes_no_slot_and_a_closed_sockets_id_cancels_nothing() {
        // A chunk waiting in a connection, with the count of its bytes used: 16
        // bytes (24 with a 64-bit ring id).
        assert_eq!(std::mem::size_of::<Option<(RecvBuf, u32)>>(), 16);
        let Some(mut ring) = ring() else {
            return;
        };
        let (a, a_peer) = socket_pair();
        let (b, mut b_peer) = socket_pair();
        let old = ring.recv_multi(1, &a);
        assert!(ring.in_flight(old));
        assert!(ring.ops.is_empty(), "a receive took a slot");
        drop(a);
        drop(a_peer);
        let done = reap(&mut ring, 1);
        assert!(
            matches!(done[0].event, Event::Received(Ok(None))),
            "{done:?}"
        );
        assert!(done[0].last && !ring.in_flight(old));
        let new = ring.recv_multi(2, &b);
        assert_ne!(new, old);
        let got = cancel_stale_then_wake(&mut ring, old, &mut b_peer);
        let Event::Received(Ok(Some(chunk))) = &got.event else {
            panic!("b's receive was cancelled: {:?}", got.event);
        };
        assert_eq!(ring.recv_data(chunk), b"y");
        assert!(!got.last && ring.in_flight(new));
    }

    /// A receive without a slot is named by its socket's number and its token, so
    /// a completion of a closed connection's receive would look like one of the
    /// receive a new connection with the same number and token arms: the hold
    /// keeps the number from being reused until the old receive's last
    /// completion, so every completion before it is the old socket's, and none
    /// of it comes after.
    #[test]
    fn a_closed_sockets_receive_never_reaches_the_socket_reusing_its_number() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (a, mut a_peer) = socket_pair();
        let number = a.as_raw_fd();
        let old = ring.recv_multi(7, &a);
        ring.submit_and_wait(None).unwrap();
        // The connection closes; its receive is still in flight.
        drop(a);
        let unused = |what: &str| {
            let (x, y) = UnixStream::pair().unwrap();
            assert!(
                x.as_raw_fd() != number && y.as_raw_fd() != number,
                "the number is reused {what}"
            );
        };
        unused("while the receive is in flight");
        a_peer.write_all(b"old").unwrap();
        let done = reap(&mut ring, 1);
        let Event::Received(Ok(Some(chunk))) = &done[0].event else {
            panic!("{done:?}");
        };
        assert_eq!((done[0].token, done[0].last), (7, false));
        assert_eq!(ring.recv_data(chunk), b"old");
        for c in done {
            if let Event::Received(Ok(Some(b))) = c.event {
                ring.recycle(b);
            }
        }
        unused("after a chunk");
        ring.cancel(3, old);
        let mut done = reap(&mut ring, 2);
        done.retain(|c| c.token == 7);
        assert!(done.len() == 1 && done[0].last, "{done:?}");
        // Now the number is free: a new connection takes it and the same token.
        let (x, y) = UnixStream::pair().unwrap();
        let (c, mut c_peer) = if x.as_raw_fd() == number {
            (x, y)
        } else {
            (y, x)
        };
        assert_eq!(c.as_raw_fd(), number, "the number is free again");
        let c = RingFd::new(c);
        let new = ring.recv_multi(7, &c);
        assert_eq!(new, old, "same number, same token: same user_data");
        c_peer.write_all(b"new").unwrap();
        let done = reap(&mut ring, 1);
        assert_eq!(done.len(), 1, "{done:?}");
        let Event::Received(Ok(Some(chunk))) = &done[0].event else {
            panic!("{done:?}");
        };
        assert_eq!(ring.recv_data(chunk), b"new");
        assert_eq!(ring.inflight(), 1);
    }

    /// Dropping a ring whose submission queue is full still cancels everything in
    /// flight (the cancel used to be dropped when it found no room), and once all
    /// has completed the ring lets go of every descriptor its operations named.
    #[test]
    fn teardown_with_a_full_submission_queue_cancels_everything() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (s, _peer) = UnixStream::pair().unwrap();
        let s = Rc::new(s);
        // Polls that never fire, exactly filling the (unsubmitted) queue.
        for t in 0..16 {
            ring.poll(t, &s, libc::POLLIN as u32);
        }
        assert_eq!(Rc::strong_count(&s), 17);
        drop(ring);
        assert_eq!(
            Rc::strong_count(&s),
            1,
            "operations left in flight (leaked)"
        );
    }

    /// Issue 18: a connection's socket is held by its operations without an `Rc`
    /// (a 32-byte chunk a connection): the owner let go while a poll naming the
    /// socket is not even submitted, and the socket stays open (its number is not
    /// reused; the peer reads no end) until the poll's last completion, then
    /// closes (the peer reads the end).
    #[test]
    fn a_socket_stays_open_until_the_last_operation_naming_it_completes() {
        let Some(mut ring) = ring() else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        let number = sock.as_raw_fd();
        ring.poll(1, &sock, libc::POLLIN as u32);
        drop(sock);
        let (other, _) = UnixStream::pair().unwrap();
        assert_ne!(other.as_raw_fd(), number, "the socket's number is reused");
        peer.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let open = peer.read(&mut byte);
        assert!(
            matches!(&open, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "closed while a poll named it: {open:?}"
        );
        // The peer's end of sending wakes the poll (no byte left unread, which
        // would make the close a reset).
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let done = reap(&mut ring, 1);
        assert!(matches!(done[0].event, Event::Polled(Ok(_))), "{done:?}");
        assert_eq!(ring.inflight(), 0);
        assert_eq!(peer.read(&mut byte).unwrap(), 0, "still open");
    }

    /// The hold count's orphan flag: a descriptor whose owner goes while unheld
    /// closes at once; one whose owner goes while held closes with its last hold,
    /// and leaves its number's count at 0 (a later descriptor with that number is
    /// no orphan).
    #[test]
    fn an_orphan_closes_with_its_last_hold_and_leaves_no_flag() {
        let count = |fd: RawFd| HOLDS.with(|h| h.borrow().count[fd as usize]);
        let mut byte = [0u8; 1];
        // Held and let go, then the owner goes: closed at its drop.
        let (sock, mut peer) = socket_pair();
        let number = sock.as_raw_fd();
        drop(Desc::from(&sock));
        assert_eq!(count(number), 0);
        drop(sock);
        assert_eq!(
            peer.read(&mut byte).unwrap(),
            0,
            "closed at the owner's drop"
        );
        // The owner goes while two holds are alive: closed with the last.
        let (sock, mut peer) = socket_pair();
        let number = sock.as_raw_fd();
        let (a, b) = (Desc::from(&sock), Desc::from(&sock));
        drop(sock);
        assert_eq!(count(number), ORPHANED | 2);
        drop(a);
        peer.set_nonblocking(true).unwrap();
        let open = peer.read(&mut byte);
        assert!(
            matches!(&open, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "closed while held: {open:?}"
        );
        drop(b);
        assert_eq!(count(number), 0, "the flag stays on the number");
        peer.set_nonblocking(false).unwrap();
        assert_eq!(
            peer.read(&mut byte).unwrap(),
            0,
            "closed with the last hold"
        );
    }

    /// Receives `n` chunks of 4 KiB written to `peer` (each byte `byte`) on `sock`,
    /// holding them all (re-arming after ENOBUFS), and returns them.
    fn hold_chunks(
        ring: &mut EventRing,
        sock: &RingFd<UnixStream>,
        peer: &mut UnixStream,
        n: usize,
        byte: u8,
    ) -> Vec<RecvBuf> {
        let mut w = peer.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..n {
                w.write_all(&[byte; 4096]).unwrap();
            }
        });
        let mut held = Vec::new();
        let got = receive(ring, sock, &mut false, n * 4096, |ring, b| {
            assert!(ring.recv_data(&b).iter().all(|&x| x == byte));
            held.push(b);
        });
        writer.join().unwrap();
        assert_eq!(got, n * 4096);
        held
    }

    /// Gives every chunk of `chunks` back to the ring.
    fn recycle_all(ring: &mut EventRing, chunks: impl IntoIterator<Item = RecvBuf>) {
        for b in chunks {
            ring.recycle(b);
        }
    }

    /// Cancels the receive armed on `sock` (token 2) and reaps its end.
    fn stop_receiving<S: AsFd + Into<OwnedFd>>(ring: &mut EventRing, sock: &RingFd<S>) {
        ring.cancel_fd(2, sock);
        let _ = reap(ring, 1);
    }

    /// A loop turn [`LIMBO_WAIT`] on: a renewed ring gives back what it held.
    fn settle(ring: &mut EventRing) {
        std::thread::sleep(LIMBO_WAIT);
        ring.submit_and_wait(Some(Duration::from_millis(1)))
            .unwrap();
        ring.completions(&mut Vec::new());
    }

    /// Receives `n` chunks of 4 KiB one at a time on `sock` (each recycled before
    /// the next is written), as a worker's receives arrive when it is not busy.
    fn one_at_a_time(
        ring: &mut EventRing,
        sock: &RingFd<UnixStream>,
        peer: &mut UnixStream,
        n: usize,
    ) {
        let mut armed = false;
        for i in 0..n {
            peer.write_all(&[i as u8; 4096]).unwrap();
            let mut got = 0;
            for _ in 0..200 {
                if got == 4096 {
                    break;
                }
                if !armed {
                    ring.recv_multi(1, sock);
                    armed = true;
                }
                let mut out = Vec::new();
                ring.submit_and_wait(Some(Duration::from_millis(20)))
                    .unwrap();
                ring.completions(&mut out);
                for c in out {
                    armed &= !c.last;
                    match c.event {
                        Event::Received(Ok(Some(b))) => {
                            assert!(ring.recv_data(&b).iter().all(|&x| x == i as u8));
                            got += b.len();
                            ring.recycle(b);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            assert_eq!(got, 4096, "chunk {i}");
        }
    }

    /// Issue 18: every idle io_uring connection has its receive in flight, so an
    /// operation's record is memory per connection: it held two descriptor slots
    /// (96 bytes), of which only splices use the second.
    #[test]
    fn an_operation_record_is_at_most_72_bytes() {
        assert!(
            std::mem::size_of::<Option<Op>>() <= 72,
            "{}",
            std::mem::size_of::<Option<Op>>()
        );
    }

    /// Issue 18: the kernel takes a buffer ring's buffers in turn, so every buffer
    /// the ring keeps free ends up touched: 64 kept free cost 64 buffers' worth a
    /// worker even when one receive at a time ever needed one. Now the ring keeps
    /// 4 free at rest (more while receives find none free, fewer again a quiet
    /// tick or two later; 16 before, and the bound below was 16 buffers).
    #[test]
    fn a_quiet_ring_keeps_few_receive_buffers_touched() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 512,
            recv_buf_len: 4096,
        }) else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        one_at_a_time(&mut ring, &sock, &mut peer, 100);
        let quiet = ring.recv_buf_bytes();
        assert!(
            quiet <= 4 * 4096,
            "{quiet} bytes touched one receive at a time"
        );
        // A burst: the ring grows and keeps more free while it lasts.
        let held = hold_chunks(&mut ring, &sock, &mut peer, 200, 7);
        recycle_all(&mut ring, held);
        ring.release_recv_bufs();
        // Quiet ticks: it keeps fewer again, and what a receive at a time
        // recycles is parked and given back.
        ring.release_recv_bufs();
        ring.release_recv_bufs();
        one_at_a_time(&mut ring, &sock, &mut peer, 100);
        // (Ticks are a second apart in the server: a ring renewed at one has
        // given back what it held by the next.)
        settle(&mut ring);
        ring.release_recv_bufs();
        let after = ring.recv_buf_bytes();
        assert!(
            after <= 16 * 4096,
            "{after} bytes touched after the burst and quiet ticks"
        );
        stop_receiving(&mut ring, &sock);
    }

    /// Issue 18: a burst that held 300 receive buffers at once left all 512 of the
    /// ring's buffers touched for good (2 MiB a worker). Now a recycled buffer is
    /// parked while the ring holds 64 free ones, and parked buffers give their
    /// pages back: the ring is back to 64 buffers' worth, and buffers reused after
    /// that carry the new bytes exactly.
    #[test]
    fn receive_buffers_a_burst_used_are_given_back_after_it() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 512,
            recv_buf_len: 4096,
        }) else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        let held = hold_chunks(&mut ring, &sock, &mut peer, 300, 7);
        assert!(held.len() >= 300, "{} chunks held", held.len());
        assert_eq!(ring.recv_buf_bytes(), held.len() * 4096);
        recycle_all(&mut ring, held);
        let released = ring.release_recv_bufs();
        assert!(released >= 200, "{released} buffers released");
        let left = ring.recv_buf_bytes();
        assert!(left <= 64 * 4096, "{left} bytes of receive buffers left");
        // Released buffers come back into use (the ring grows again) and hold what
        // arrives, byte for byte.
        let again = hold_chunks(&mut ring, &sock, &mut peer, 400, 9);
        recycle_all(&mut ring, again);
        stop_receiving(&mut ring, &sock);
    }

    /// Buffers smaller than a page share pages: giving back a parked buffer's
    /// pages must not take a neighbour's bytes with them. With 2 KiB buffers, a
    /// run of parked buffers ending mid-page had `madvise` round its length up to
    /// the page and zero the held chunk beside it (in the server: a request read
    /// as 33 NUL bytes, answered 400).
    #[test]
    fn giving_back_sub_page_buffers_keeps_a_held_neighbours_bytes() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 512,
            recv_buf_len: 2048,
        }) else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        let held = hold_chunks(&mut ring, &sock, &mut peer, 150, 7);
        assert!(held.len() >= 300, "{} chunks held", held.len());
        // Runs of three parked buffers, each beside a held one: a run's last
        // buffer shares its page with the held one.
        let (keep, back): (Vec<_>, Vec<_>) = held.into_iter().partition(|b| b.bid % 4 == 3);
        assert!(keep.len() >= 50 && back.len() >= 150);
        recycle_all(&mut ring, back);
        ring.release_recv_bufs();
        for b in &keep {
            assert!(
                ring.recv_data(b).iter().all(|&x| x == 7),
                "a held chunk lost its bytes when its neighbour's pages were given back"
            );
        }
        recycle_all(&mut ring, keep);
        // Whole pages of parked buffers do go back (those parked before with them).
        let released = ring.release_recv_bufs();
        assert!(released >= 100, "{released} buffers released");
        let left = ring.recv_buf_bytes();
        assert!(left <= 128 * 2048, "{left} bytes of receive buffers left");
        stop_receiving(&mut ring, &sock);
    }

    /// Issue 18: after a burst the ring held every buffer it grew to free and
    /// touched (64 of 2 KiB a worker in the server) for good: the kernel may take
    /// any of them, so none could be given back. Quiet ticks later the ring is
    /// now renewed with a few untouched buffers, and the ones it held go back.
    #[test]
    fn a_ring_renewed_after_a_burst_gives_its_buffers_back() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 64,
            recv_buf_len: 2048,
        }) else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        let held = hold_chunks(&mut ring, &sock, &mut peer, 28, 7);
        assert!(held.len() >= 56, "{} chunks held", held.len());
        recycle_all(&mut ring, held);
        let burst = ring.recv_buf_bytes();
        assert!(burst >= 56 * 2048, "{burst} bytes touched by the burst");
        // Quiet ticks (the first one after the burst, starved, keeps 64): the
        // second renews the ring with the 32 it keeps then, untouched; what it
        // held gives its pages back at a reaping a while later.
        for _ in 0..6 {
            ring.release_recv_bufs();
        }
        assert!(ring.recv_bufs_settling());
        settle(&mut ring);
        assert!(!ring.recv_bufs_settling());
        let left = ring.recv_buf_bytes();
        assert!(
            left <= 8 * 2048,
            "{left} bytes touched after the quiet ticks"
        );
        // The renewed ring serves receives, byte for byte.
        one_at_a_time(&mut ring, &sock, &mut peer, 20);
        let again = hold_chunks(&mut ring, &sock, &mut peer, 28, 9);
        recycle_all(&mut ring, again);
        stop_receiving(&mut ring, &sock);
    }

    /// Renewing the ring while receives are armed and bytes arrive loses none: a
    /// receive that finds no ring ends with ENOBUFS and is armed again, and a
    /// chunk received before the ring was taken comes out whole (its buffer is not
    /// given back while in limbo).
    #[test]
    fn renewing_the_ring_while_receives_are_armed_loses_no_byte() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 64,
            recv_buf_len: 2048,
        }) else {
            return;
        };
        const SOCKS: usize = 4;
        const BYTES: usize = 1024 * 1024;
        let pairs: Vec<_> = (0..SOCKS).map(|_| socket_pair()).collect();
        let writers: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| {
                let mut w = peer.try_clone().unwrap();
                std::thread::spawn(move || {
                    let data: Vec<u8> = (0..BYTES).map(|n| ((n * 7 + i) % 251) as u8).collect();
                    // Small writes, so receives keep completing while the ring
                    // is renewed.
                    for part in data.chunks(700) {
                        w.write_all(part).unwrap();
                    }
                })
            })
            .collect();
        let mut got = [0usize; SOCKS];
        let mut armed = [false; SOCKS];
        // Held chunks with the bytes they held when received: checked again when
        // they go back, after renewals (a buffer given back or pushed again while
        // held would read as zeros or as other bytes).
        let mut held: Vec<(RecvBuf, Vec<u8>)> = Vec::new();
        let check_and_recycle = |ring: &mut EventRing, (b, was): (RecvBuf, Vec<u8>)| {
            assert_eq!(ring.recv_data(&b), &was[..], "a held chunk changed");
            ring.recycle(b);
        };
        let mut renewals = 0;
        for turn in 0..20_000 {
            if got.iter().all(|&g| g == BYTES) {
                break;
            }
            for (i, (sock, _)) in pairs.iter().enumerate() {
                if !armed[i] && got[i] < BYTES {
                    ring.recv_multi(i as u64, sock);
                    armed[i] = true;
                }
            }
            ring.submit_and_wait(Some(Duration::from_millis(5)))
                .unwrap();
            let mut out = Vec::new();
            ring.completions(&mut out);
            for c in out {
                let i = c.token as usize;
                if c.last {
                    armed[i] = false;
                }
                match c.event {
                    Event::Received(Ok(Some(b))) => {
                        for &x in ring.recv_data(&b) {
                            assert_eq!(
                                x,
                                ((got[i] * 7 + i) % 251) as u8,
                                "socket {i} byte {}",
                                got[i]
                            );
                            got[i] += 1;
                        }
                        let was = ring.recv_data(&b).to_vec();
                        held.push((b, was));
                    }
                    Event::Received(Err(e)) => {
                        assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "{e}");
                    }
                    other => panic!("{other:?}"),
                }
            }
            // Some chunks stay held across a renewal; the rest go back.
            if turn % 3 != 0 {
                for h in held.drain(..) {
                    check_and_recycle(&mut ring, h);
                }
            }
            ring.release_recv_bufs();
            // Renewed every turn: what the last renewal held goes back at this
            // turn's reaping (the wait is for io-wq workers, which serve none).
            ring.renew_buf_ring();
            if let Some(b) = ring.bufs.as_mut() {
                b.limbo_at = Some(Instant::now() - LIMBO_WAIT);
            }
            renewals += 1;
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(got, [BYTES; SOCKS]);
        assert!(renewals >= 10, "{renewals} renewals");
        // What the renewals held went back (what the last one held, at the next
        // reaping): only the ring's own buffers stay.
        for h in held.drain(..) {
            check_and_recycle(&mut ring, h);
        }
        ring.release_recv_bufs();
        settle(&mut ring);
        assert!(!ring.recv_bufs_settling());
        let left = ring.recv_buf_bytes();
        assert!(left <= 64 * 2048, "{left} bytes touched");
        for (sock, _) in &pairs {
            ring.cancel_fd(99, sock);
        }
        let _ = reap(&mut ring, SOCKS);
    }

    /// Issue 18 (the soak's slowloris clients, 100 one-byte receives a worker at
    /// once, took 64 buffers of 2 KiB): with incremental consumption small
    /// receives fill one buffer one after another, and a held chunk keeps its
    /// bytes while later receives land in the rest of its buffer and while the
    /// ring cycles through its buffers many times over: a buffer goes back to the
    /// kernel only once every chunk of it is recycled.
    #[test]
    fn small_receives_share_a_buffer_and_a_held_chunk_keeps_its_bytes() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 16,
            recv_bufs: 16,
            recv_buf_len: 2048,
        }) else {
            return;
        };
        if !ring.bufs.as_ref().is_some_and(|b| b.inc) {
            let uname = rustix::system::uname();
            let release = uname.release().to_string_lossy();
            let mut v = release
                .split(['.', '-'])
                .map(|p| p.parse::<u32>().unwrap_or(0));
            let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
            assert!(version < (6, 12), "no IOU_PBUF_RING_INC on {release}");
            eprintln!("skipped: no incremental buffer consumption before 6.12 ({release})");
            return;
        }
        let (sock, mut peer) = socket_pair();
        let mut armed = false;
        let mut held: Vec<(RecvBuf, u8)> = Vec::new();
        let mut first_bids = std::collections::HashSet::new();
        // How often each buffer was started afresh (a chunk at its offset 0).
        let mut starts = std::collections::HashMap::<u16, u32>::new();
        let mut total = 0;
        for i in 0..1000usize {
            let x = (i % 250 + 1) as u8;
            let n = 1 + i % 100;
            peer.write_all(&vec![x; n]).unwrap();
            total += n;
            // ENOBUFS (the ring's buffers all held or in use) arms it again.
            let got = receive(&mut ring, &sock, &mut armed, n, |ring, b| {
                assert!(ring.recv_data(&b).iter().all(|&y| y == x), "write {i}");
                if b.off == 0 {
                    *starts.entry(b.bid).or_default() += 1;
                }
                if i < 20 {
                    first_bids.insert(b.bid);
                }
                // Not a divisor of a buffer's writes: held chunks sit at every
                // place in their buffers.
                if i % 97 == 0 {
                    held.push((b, x));
                } else {
                    ring.recycle(b);
                }
            });
            assert_eq!(got, n, "write {i}");
            for (b, y) in &held {
                assert!(
                    ring.recv_data(b).iter().all(|z| z == y),
                    "a held chunk of buffer {} changed at write {i}",
                    b.bid
                );
            }
            if i == 19 {
                // 210 bytes: one buffer, where a buffer a receive took 4.
                assert_eq!(first_bids.len(), 1, "{first_bids:?}");
                assert!(ring.recv_buf_bytes() <= 2048, "{}", ring.recv_buf_bytes());
            }
            if i % 300 == 299 {
                // Their buffers go back, to be filled again from the start while
                // other buffers still hold chunks.
                recycle_all(&mut ring, held.drain(..).map(|(b, _)| b));
            }
        }
        // 50 KB through 16 buffers of 2 KiB: the ring went round its buffers, and
        // buffers were started afresh after going back.
        assert!(total > 24 * 2048, "{total}");
        assert!(
            starts.values().any(|&n| n >= 2),
            "no buffer reused: {starts:?}"
        );
        recycle_all(&mut ring, held.into_iter().map(|(b, _)| b));
        let b = ring.bufs.as_ref().unwrap();
        assert_eq!(b.out, 0, "buffers still out");
        assert!(b.chunks.iter().all(|&c| c == 0));
        stop_receiving(&mut ring, &sock);
    }

    /// The path of a kernel without incremental consumption (before 6.12), which
    /// buffers above [`INC_MAX_LEN`] take here too: every chunk has a buffer of
    /// its own, from its start, bytes exact, and every buffer goes back.
    #[test]
    fn buffers_above_the_incremental_limit_give_every_chunk_its_own() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 16,
            recv_bufs: 64,
            recv_buf_len: 64 * 1024,
        }) else {
            return;
        };
        assert!(!ring.bufs.as_ref().unwrap().inc);
        let (sock, mut peer) = socket_pair();
        let held = hold_chunks(&mut ring, &sock, &mut peer, 40, 5);
        let mut bids = std::collections::HashSet::new();
        for b in &held {
            assert_eq!(b.off, 0, "a chunk not at its buffer's start");
            assert!(bids.insert(b.bid), "two held chunks in buffer {}", b.bid);
        }
        recycle_all(&mut ring, held);
        let again = hold_chunks(&mut ring, &sock, &mut peer, 10, 6);
        recycle_all(&mut ring, again);
        assert!(ring.bufs.as_ref().unwrap().chunks.iter().all(|&c| c == 0));
        stop_receiving(&mut ring, &sock);
    }

    /// Review15 M2: under incremental consumption a receive's end (the peer's FIN,
    /// or a reset) after a chunk consumed nothing, so the buffer the chunk came
    /// from stays the kernel's: handing it out again, or reading the next receive
    /// at offset 0 where the kernel wrote after the chunk, would give wrong bytes.
    /// The next receive into that buffer reads its own bytes.
    #[test]
    fn an_end_after_a_chunk_leaves_its_buffer_with_the_kernel() {
        for reset in [false, true] {
            let Some(mut ring) = ring_of(RingSize {
                entries: 16,
                recv_bufs: 16,
                recv_buf_len: 2048,
            }) else {
                return;
            };
            if !ring.bufs.as_ref().is_some_and(|b| b.inc) {
                eprintln!("skipped: no incremental buffer consumption on this kernel");
                return;
            }
            let (one_end, mut one) = tcp_pair();
            let (two_end, mut two) = tcp_pair();
            ring.recv_multi(2, &one_end);
            one.write_all(b"aaaaaaaaaa").unwrap();
            let c = reap(&mut ring, 1).remove(0);
            let Event::Received(Ok(Some(b))) = c.event else {
                panic!("{c:?}")
            };
            assert_eq!(ring.recv_data(&b), b"aaaaaaaaaa");
            let bid = b.bid;
            ring.recycle(b);
            if reset {
                // Closed with SO_LINGER 0: a reset.
                rustix::net::sockopt::set_socket_linger(&one, Some(Duration::ZERO)).unwrap();
            }
            drop(one);
            let end = reap(&mut ring, 1);
            assert!(
                end.iter().any(|c| matches!(
                    c.event,
                    Event::Received(Ok(None)) | Event::Received(Err(_))
                )),
                "reset {reset}: {end:?}"
            );
            let state = ring.bufs.as_ref().unwrap().state[bid as usize];
            assert!(
                state & KERNEL != 0,
                "reset {reset}: buffer {bid} taken from the kernel"
            );
            ring.recv_multi(3, &two_end);
            two.write_all(b"bbbbb").unwrap();
            let c = reap(&mut ring, 1).remove(0);
            let Event::Received(Ok(Some(b))) = c.event else {
                panic!("{c:?}")
            };
            assert_eq!(ring.recv_data(&b), b"bbbbb", "reset {reset}");
            ring.recycle(b);
            stop_receiving(&mut ring, &two_end);
        }
    }

    /// Review of uringmem7 (L2): while registering the receive buffers again
    /// after a renewal kept failing, it was tried at every reaping, and every
    /// receive armed ended at once with ENOBUFS, armed again by its owner at the
    /// next turn: a busy loop. Now the ring says it has no buffers
    /// (`recv_bufs_ready`), reapings leave the registration alone, and the next
    /// release tries it again; once it succeeds, receives get their bytes.
    #[test]
    fn a_failed_re_registration_is_retried_at_the_release_not_at_every_turn() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 16,
            recv_bufs: 64,
            recv_buf_len: 2048,
        }) else {
            return;
        };
        let (sock, mut peer) = socket_pair();
        assert!(ring.recv_bufs_ready());
        ring.refuse_registration = true;
        ring.renew_buf_ring();
        assert!(!ring.recv_bufs_ready());
        // The receive finds no buffers: ENOBUFS, its last completion.
        ring.recv_multi(1, &sock);
        peer.write_all(b"wait").unwrap();
        let done = reap(&mut ring, 1);
        assert!(
            matches!(&done[..], [Completion { event: Event::Received(Err(e)), last: true, .. }]
                if e.raw_os_error() == Some(libc::ENOBUFS)),
            "{done:?}"
        );
        // Turns go by: nothing tries the registration (it would succeed now).
        ring.refuse_registration = false;
        for _ in 0..3 {
            ring.submit_and_wait(Some(Duration::from_millis(1)))
                .unwrap();
            ring.completions(&mut Vec::new());
        }
        assert!(!ring.recv_bufs_ready(), "registered again at a reaping");
        // The release does; the bytes waiting in the socket come in whole.
        ring.release_recv_bufs();
        assert!(ring.recv_bufs_ready());
        ring.recv_multi(1, &sock);
        let done = reap(&mut ring, 1);
        let Some(Completion {
            event: Event::Received(Ok(Some(b))),
            ..
        }) = done.into_iter().next()
        else {
            panic!("no chunk received");
        };
        assert_eq!(ring.recv_data(&b), b"wait");
        ring.recycle(b);
        settle(&mut ring);
        stop_receiving(&mut ring, &sock);
    }

    /// A worker takes a burst's completions in turns (issue 18: a turn that took
    /// them all at once answered them all at once): a call takes at most `max`,
    /// across the batches it reads them in, and leaves the rest in the queue for
    /// the next call; none is lost or taken twice.
    #[test]
    fn completions_are_taken_at_most_max_a_call() {
        let Some(mut ring) = ring_of(RingSize {
            entries: 64,
            recv_bufs: 4,
            recv_buf_len: 4096,
        }) else {
            return;
        };
        let (sock, _peer) = socket_pair();
        let sock = Rc::new(sock);
        // A poll for room on a socket with room completes at once.
        for token in 0..40 {
            ring.poll(token, Desc::Local(sock.clone()), libc::POLLOUT as u32);
        }
        for _ in 0..100 {
            ring.submit_and_wait(Some(Duration::from_millis(20)))
                .unwrap();
            if ring.ring.completion().len() >= 40 {
                break;
            }
        }
        let mut out = Vec::new();
        assert!(ring.completions_upto(&mut out, 35), "some are left");
        assert_eq!(out.len(), 35);
        assert_eq!(ring.ring.completion().len(), 5, "left in the queue");
        assert!(!ring.completions_upto(&mut out, 35), "none is left");
        let mut tokens: Vec<u64> = out.iter().map(|c| c.token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (0..40).collect::<Vec<_>>());
        assert_eq!(ring.inflight(), 0);
    }

    /// A received chunk is only ever given back to the ring it came from.
    #[test]
    #[should_panic(expected = "a buffer of this ring")]
    fn a_buffer_goes_back_only_to_its_own_ring() {
        let Some(mut one) = ring() else {
            panic!("a buffer of this ring (skipped: no io_uring)");
        };
        let mut two = ring().expect("a second ring");
        let (s, mut peer) = socket_pair();
        one.recv_multi(1, &s);
        peer.write_all(b"hello").unwrap();
        let done = reap(&mut one, 1);
        let Some(Completion {
            event: Event::Received(Ok(Some(buf))),
            ..
        }) = done.into_iter().next()
        else {
            panic!("no chunk received");
        };
        two.recycle(buf);
    }
}
