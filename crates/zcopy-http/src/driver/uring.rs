//! The io_uring driver: one ring per worker, each with its own `SO_REUSEPORT`
//! listeners, carrying out what each connection's [`proto::Conn`] asks.
//!
//! - Accepts: one multishot `ACCEPT` per listener.
//! - Reads: one multishot `RECV` per connection into the ring's provided buffers; a
//!   chunk is copied into the core's read buffer when it asks to read. A connection
//!   whose core doesn't read (busy answering) has its receive cancelled while it
//!   holds buffers, and re-armed when it asks again.
//! - Request bodies: the rest of a large one (64 KiB or more to come) is spliced
//!   socket → pipe → file on the loop by the epoll driver's transfer, the multishot
//!   receive cancelled first (before a `100 Continue` leaves) and a one-shot ring
//!   poll waiting for the socket (its receive low-water mark raised, as on epoll);
//!   what the ring received before, and a small body, go from its buffers to the
//!   file in one writev.
//! - Heads and in-memory bodies: copied into a buffer the ring owns until the `SEND`
//!   completes. A head followed by a body is held back (corked in user space) and
//!   leaves in the same `SEND` as the body's first chunk.
//! - Bodies of files the cache holds (up to 64 KiB, HTTP/1): one `SENDMSG` of the
//!   corked head and the held bytes, which the operation keeps alive (the kernel's
//!   copy only). Small ones too: copied after the head, then again into a send
//!   buffer per connection in flight, a burst of them left the allocator holding
//!   ~20 MiB. A connection gives its send buffer back to the worker's pool after
//!   each send, so one at rest holds none.
//! - File bodies: the library's [`FileSend`] chooses the engine from the same plan
//!   the epoll driver's transfers follow (splice by reference where the peer and the
//!   source allow it; mmap or read+send by copy), queues its operations on the
//!   ring (or sends now where nothing can wait on a disk: `sendfile`, a mapped
//!   chunk in the page cache), falls back, honours `ZCOPY_DISABLE` and counts per
//!   engine; this loop hands it the completions carrying the connection's token
//!   while it is in flight, and tells the core what it sent. The corked head goes
//!   with (or just before) the first chunk. Bytes sent now count against the
//!   turn's budget, as the epoll driver's do: then others get a go.
//! - At most one send-side operation per connection is in flight; its outcome is
//!   reported to the core only when it completes.
//! - Timers: the loop's wait is bounded by the nearest deadline (`io_uring_enter`
//!   with a timeout); everything queued in a turn is submitted by that one call.
//! - Lease and send-queue checks are plain synchronous calls (fcntl, ioctl).
//! - Peers are classified at accept like the epoll driver's; at the connection cap an
//!   idle connection, else the oldest request head, is shed, else the client gets a
//!   503. Access log lines are written once per loop turn; a reload is picked up at
//!   the next turn.
//! - HTTPS: a TLS connection's received chunks are ciphertext, fed to its
//!   `TlsConn` (the transport shared with the epoll driver, which does no I/O);
//!   the core's bytes and file chunks (read with `pread`, never by reference) are
//!   encrypted there, and the ciphertext leaves in one `SEND` at a time. The kernel
//!   TLS hand-off is the epoll driver's only: here TLS stays in user space.
//! - HTTP/2 (h2c by prior knowledge, ALPN `h2`): the epoll driver's glue
//!   (`H2`) driven by completions through `RingIo`: its reads take the
//!   received chunks (fed to the TLS session first), its frames leave in one
//!   `SEND` at a time — plain, the frame buffer itself goes to the ring and the
//!   last send's buffer comes back to be filled (no copy); TLS, the session's
//!   ciphertext. File bodies are `pread` into DATA frames, as on epoll. A send's
//!   completion, a received chunk or the deadline drives it again.
//! - Listener set: a reload hands the worker a new one; a listener left has its
//!   accept cancelled, what waits in its queue taken in, then closes. A retiring
//!   worker serves what its accept still brings, then drains like a shutdown.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use rustix::io::Errno;
use zcopy::receive::LowWater;
use zcopy::ring::{
    BufPool, Completion, Event, EventRing, FileSend, OpId, Progress, RecvBuf, RingFd, RingSize,
};

use super::h2::{self, Got, H2};
use super::lend::{self, Lending, Rest};
use super::tls::{TlsConn, TlsSite, TlsWorker};
use super::worker::Env;
use super::worker::{ACCEPT_PAUSE, ConnContext, LoopState, Notices, TICK, WorkerSetup};
use super::{
    Engines, PeerRoute, SPLICE_BODY_MIN, Sheddable, SiteResponder, classify_peer, shed_victim,
};
use crate::config::ListenKind;
use crate::listen::{Listen, MAX_ID};
use crate::proto::{self, Intent};

/// The ring's sizes: 1024 submissions a turn, up to 64 receive buffers of 2 KiB
/// (4 handed to the kernel at first, more when all are held; once the ring holds
/// 4 free ones again, or up to 64 while receives keep finding none, recycled
/// buffers are taken out of it and their pages given back at the next sweep).
/// A receive takes only the bytes it needs of a buffer where the kernel consumes
/// them incrementally (6.12+: a wave of 100 one-byte slowloris receives fills
/// 100 bytes of one buffer, where it took 100 buffers); the next continues in it.
/// The ring reuses the buffers it holds in turn, so all it keeps stay resident:
/// 2 KiB ones (a request head is mostly a few hundred bytes; a longer one, or a
/// body, comes in more chunks) cost 8 KiB a worker at rest and 128 KiB at most;
/// after a burst the ring is renewed at the first quiet sweep with as many as it
/// keeps then, untouched, and the buffers the burst touched go back soon after.
/// 1 KiB ones held 64 KiB less after a burst but cost an h2c upload on this driver
/// ~25% more server CPU per GiB (twice the completions, and a 64 KiB window filled
/// the ring: 1.08-1.40 vs 0.88-1.00 CPU-s/GiB, 5 alternating rounds of 256 MiB).
/// A turn with more receives than that (a burst: 200 slowloris clients sending
/// their next byte at once took 250 buffers, 500 KiB) has the rest wait for the
/// next turn: their receive ends with ENOBUFS and is armed again once a buffer
/// is back (server CPU per 1 KiB request at 400 connections unchanged within
/// this machine's noise: 9.07 vs 8.56 µs, medians of 6 alternating rounds, measured
/// with 64 buffers of 2 KiB).
const RING: RingSize = RingSize {
    entries: 1024,
    recv_bufs: 64,
    recv_buf_len: 2048,
};
/// Completions a worker takes from the ring at once, until none is left: its list
/// never holds more (4 KiB), where taking a burst's whole at once grew it to 190
/// KiB a worker for 3,000 clients.
const REAP_MAX: usize = 64;
/// Connections a turn drives at most; the rest wait for the next turn, which does
/// not wait in the kernel. So a burst is answered in turns of this many, and what
/// answering holds at once (sends in flight until the next turn reaps them, their
/// slots in the ring's operation table, response buffers) is bounded by it, not by
/// the burst: the soak's 3,000 keep-alive clients connecting grew the two workers'
/// operation tables to 1,024 and 512 slots (72 bytes each, kept for good).
const TURN_MAX: usize = 128;
/// Room for connections a worker's run queue keeps between sweeps (8 bytes each:
/// 512 bytes; a burst grows it again).
const RUNQ_KEPT: usize = 64;
/// Token of the shutdown waker's poll.
const WAKER: u64 = u64::MAX;
/// `POLLIN`, as the poll operation takes it.
const POLLIN: u32 = rustix::event::PollFlags::IN.bits() as u32;
/// `POLLOUT`, as the poll operation takes it.
const POLLOUT: u32 = rustix::event::PollFlags::OUT.bits() as u32;
/// Token of a cancel whose completion nobody waits for.
const IGNORE: u64 = u64::MAX - 1;
/// Listener tokens count down from here.
const LISTENER_BASE: u64 = u64::MAX - 2;
/// A connection's token with this bit set names the poll that waits for more of
/// its request body to splice (apart from the send side's operations).
const BODY_POLL: u64 = 1 << 40;
/// A token with this bit set names a poll on a change-notice fd: bit 32 which one
/// ([`NOTICE_FDS`]), the low 32 bits which copy of it ([`NoticePoll::generation`]: a
/// reload makes a new file cache).
const NOTICES: u64 = 1 << 41;

/// A change-notice fd the ring polls for the site (see [`Worker::watch_notices`]).
struct NoticePoll {
    /// A copy of the fd (the poll in flight holds it).
    fd: Rc<OwnedFd>,
    /// Told apart from an earlier copy's poll still completing.
    generation: u32,
    /// A poll is in flight.
    armed: bool,
}

/// The change-notice fds, in the order of [`Worker::notices`] and of the tokens' bit 32.
const NOTICE_FDS: [Notices; 2] = [Notices::Cache, Notices::Snapshots];

/// Largest TLS file chunk read (and encrypted) in one go.
const TLS_CHUNK: usize = zcopy::ring::CHUNK;
/// Largest in-memory write corked while a body follows.
const CORK_MAX: usize = 64 * 1024;
/// Most received chunks written to a body's file in one `writev`.
const WRITEV_MAX: usize = 256;
/// Received chunks a connection may hold unread before its receive is cancelled.
const PENDING_MAX: usize = 2;
/// HTTP/2 plaintext encrypted per call while a send may be in flight (as much as
/// the connection queues before it stops making frames).
const H2_TLS_CHUNK: usize = 256 * 1024;
/// TLS file chunks longer than this are checked for being in the page cache (two
/// `preadv2(RWF_NOWAIT)` probes); a cold one is read in the ring, not on the loop.
const TLS_COLD_CHECK: u64 = 64 * 1024;

/// The send-side operation in flight for a connection.
#[derive(Debug)]
enum Sending {
    /// In-memory bytes: `core` of them are the core's (reported with `on_written`),
    /// the rest were already reported (corked).
    Write { sent: usize, core: usize },
    /// The connection's [`FileSend`] has operations in flight (every send-side
    /// completion is its).
    File,
    /// `prefix` corked bytes and `core` bytes of a held file being sent in one
    /// `sendmsg`.
    HeldSend { prefix: usize, core: usize },
    /// TLS ciphertext (already reported to the core when it was encrypted).
    Cipher { sent: usize },
    /// The socket is polled for room for the rest of a lent response
    /// ([`Connection::lent`]).
    Lent,
    /// A TLS connection's file chunk not in the page cache, being read in the
    /// ring (encrypted when it completes).
    TlsRead,
}

/// A request body being spliced (socket → pipe → file) on a connection, in one
/// box: two (the engine state's and the mark's) took 8 bytes more in every
/// connection.
#[derive(Debug, Default)]
struct Splicing {
    /// The engine state; while set, the multishot receive stays off.
    upload: Option<Box<zcopy::Transfer>>,
    /// The socket's receive low-water mark, raised while the body is spliced.
    low: LowWater,
}

impl Splicing {
    /// The body is over: the socket's mark goes back to 1 (before it carries
    /// anything else) and the box goes.
    fn end(this: &mut Option<Box<Splicing>>, sock: &TcpStream) {
        if let Some(mut s) = this.take() {
            s.low.reset(sock);
        }
    }
}

/// An [`Intent::SendFile`]'s range and rules.
#[derive(Clone, Copy, Debug)]
struct FileRange {
    offset: u64,
    len: u64,
    /// The file holds our read lease.
    leased: bool,
    /// Engines that send by reference may run (the peer and the source allow it).
    by_reference: bool,
}

/// One client connection: the socket, what is in flight for it, and the core.
struct Connection {
    /// Held by the ring's operations that name it until their completions
    /// (counted by number: no allocation a connection).
    stream: RingFd<TcpStream>,
    core: proto::Conn,
    /// Operations in the ring for this connection.
    inflight: u32,
    /// The multishot receive, while armed.
    recv: Option<OpId>,
    /// Received chunks not yet copied into the core (chunk, bytes of it used: 32
    /// bits, 8 bytes fewer a connection).
    pending: Chunks<(RecvBuf, u32)>,
    /// The peer closed its side.
    eof: bool,
    /// Receiving failed.
    recv_failed: bool,
    sending: Option<Sending>,
    /// The buffer of the send-side operation (between operations: corked bytes).
    out: Vec<u8>,
    /// Shut the write side once the send in flight is done.
    shut_pending: bool,
    /// The send in flight was cancelled (its file's lease is being broken): its
    /// outcome is not the core's any more.
    abandoned: bool,
    /// The peer's route, for the body plans.
    route: PeerRoute,
    /// File bodies: the library's send operation (kept across bodies for its pipe).
    file_send: Option<Box<FileSend>>,
    /// `file_send` is set up for the body being sent.
    in_body: bool,
    /// The rest of a response lent from a template ([`zcopy::lend`]) that the
    /// socket did not take whole, and how many of its bytes are corked head bytes
    /// (already told to the core): the next bytes on the wire.
    /// Boxed: 8 bytes in every connection instead of 40.
    lent: Option<Box<(zcopy::lend::Lent, usize)>>,
    /// Closing: waits for `inflight` to reach 0, then is dropped.
    closing: bool,
    /// Counted among the worker's open connections (until it starts closing).
    counted: bool,
    queued: bool,
    /// Accept order within the worker.
    seq: u64,
    /// Userspace TLS between the socket and the core (an HTTPS listener's).
    tls: Option<Box<TlsConn>>,
    /// Sending ciphertext failed: nothing more can leave.
    send_failed: bool,
    /// Speaking HTTP/2 (h2c by prior knowledge, or ALPN `h2`): the HTTP/1 core
    /// is left unused.
    h2: Option<Box<H2>>,
    /// Plain listener with HTTP/2 on, what it speaks not known yet: the first bytes
    /// may be the h2c preface. Some(n): n bytes of it received and taken (see
    /// [`h2::Sniff::More`]).
    sniff: Option<u8>,
    /// The HTTP/2 connection has more to do now (its turn budget ran out).
    again: bool,
    /// A request body being spliced, and the low-water mark it raised (none
    /// before the first such body, nor once the mark is back to 1).
    splice: Option<Box<Splicing>>,
    /// A poll for more of the body is in flight (token | [`BODY_POLL`]).
    body_poll: bool,
    /// The multishot receive was cancelled to splice a body (not yet over).
    recv_cancelled: bool,
    /// A receive ended for want of free buffers, or was not armed while the ring
    /// had none registered: the socket may hold bytes not read yet (read out
    /// before it closes: see [`Worker::release`]).
    recv_starved: bool,
}

/// A connection's received chunks not yet taken, in arrival order. The first is
/// held in place (a connection rarely has more than one waiting); the rest queue
/// behind it in a (boxed) deque that is freed when it empties. A plain `VecDeque` kept its
/// allocation from the first request on: 96 bytes per keep-alive connection, made
/// in the middle of a burst, pinning the pages around it after the burst's buffers
/// were freed.
#[derive(Debug)]
struct Chunks<T> {
    first: Option<T>,
    /// Boxed: 8 bytes in every connection instead of a deque's 32.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<T>>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            first: None,
            rest: None,
        }
    }
}

impl<T> Chunks<T> {
    fn push_back(&mut self, c: T) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.get_or_insert_default().push_back(c);
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        let c = self.first.take();
        if let Some(rest) = &mut self.rest {
            self.first = rest.pop_front();
            if rest.is_empty() {
                self.rest = None;
            }
        }
        c
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    fn drain(&mut self) -> impl Iterator<Item = T> + use<T> {
        let rest = self.rest.take().map(|r| *r).unwrap_or_default();
        self.first.take().into_iter().chain(rest)
    }

    /// Bytes of heap the queue holds (none while at most one chunk waits).
    fn heap_bytes(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| {
            std::mem::size_of::<VecDeque<T>>() + r.capacity() * std::mem::size_of::<T>()
        })
    }
}

impl Chunks<(RecvBuf, u32)> {
    /// The bytes of the front chunk not taken yet (none while no chunk waits).
    fn unread<'r>(&self, ring: &'r EventRing) -> Option<&'r [u8]> {
        let (buf, used) = self.first.as_ref()?;
        Some(&ring.recv_data(buf)[*used as usize..])
    }

    /// Takes up to `n` bytes from the front chunk, which goes back to `ring` once
    /// all its bytes are taken. Returns how many it took (0: no chunk waits).
    fn consume(&mut self, ring: &mut EventRing, n: usize) -> usize {
        let Some((buf, used)) = self.first.as_mut() else {
            return 0;
        };
        let size = ring.recv_data(buf).len();
        let take = (size - *used as usize).min(n);
        *used += take as u32;
        if *used as usize == size
            && let Some((buf, _)) = self.pop_front()
        {
            ring.recycle(buf);
        }
        take
    }
}

/// The socket side of an HTTP/2 connection on the ring ([`h2::Io`]): reads take
/// the received chunks (ciphertext fed to the TLS session first), and what is
/// written leaves in one `SEND` at a time, the connection's frames handed over
/// whole (plain: the buffer itself goes to the ring, no copy) or as the
/// ciphertext the session makes of them.
struct RingIo<'a> {
    ring: &'a mut EventRing,
    conn: &'a mut Connection,
    tls: Option<(&'a mut TlsConn, &'a mut TlsWorker)>,
    token: u64,
}

impl RingIo<'_> {
    /// Sends what the TLS session holds, unless a send is in flight.
    fn send_cipher(&mut self) {
        let c = &mut *self.conn;
        let Some((t, _)) = self.tls.as_mut() else {
            return;
        };
        if c.sending.is_some() || c.send_failed || !t.wants_write() {
            return;
        }
        // The session's buffer itself goes to the SEND; it comes back to the
        // session when the send completes.
        c.out = t.take_ciphertext();
        c.sending = Some(Sending::Cipher { sent: 0 });
        c.submit_send(self.token, self.ring, 0, false);
    }
}

impl h2::Io for RingIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        loop {
            let c = &mut *self.conn;
            if let Some((t, _)) = self.tls.as_mut() {
                let (n, closed) = t.take_plain(buf);
                if n > 0 {
                    return Ok(Got::Bytes(n));
                }
                if closed {
                    return Ok(Got::Eof);
                }
            }
            let Some(data) = c.pending.unread(self.ring) else {
                if c.eof {
                    return Ok(Got::Eof);
                }
                if c.recv_failed {
                    return Err(io::Error::other("receive failed"));
                }
                return Ok(Got::Blocked);
            };
            let Some((t, tw)) = self.tls.as_mut() else {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                c.pending.consume(self.ring, n);
                return Ok(Got::Bytes(n));
            };
            let fed = t.feed(data, tw, c.core.peer());
            c.pending.consume(self.ring, usize::MAX);
            if let Err(refusal) = fed {
                use rustix::net::SendFlags;
                let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
                let _ = rustix::net::send(&*c.stream, &refusal.bytes, flags);
                return Err(io::Error::other("TLS refused"));
            }
            // Whatever the session answers (a key update) leaves now.
            self.send_cipher();
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.conn.send_failed {
            return Err(io::Error::other("send failed"));
        }
        let busy = self.conn.sending.is_some();
        let Some((t, _)) = self.tls.as_mut() else {
            // Plain bytes go by `swap_out` when no send is in flight.
            return Ok(0);
        };
        if busy && t.wants_write() {
            // One buffer in flight, one made: enough until the send completes.
            return Ok(0);
        }
        let n = buf.len().min(H2_TLS_CHUNK);
        t.send_plain(&buf[..n])?;
        self.send_cipher();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<bool> {
        if self.conn.send_failed {
            return Err(io::Error::other("send failed"));
        }
        self.send_cipher();
        let held = self.tls.as_ref().is_some_and(|(t, _)| t.wants_write());
        Ok(self.conn.sending.is_none() && !held)
    }

    fn shut_write(&mut self) {
        match self.tls.as_mut() {
            Some((t, _)) => {
                t.shutdown_write();
                self.send_cipher();
            }
            None => {
                let _ = self.conn.stream.shutdown(Shutdown::Write);
            }
        }
    }

    fn swap_out(&mut self, out: &mut Vec<u8>, from: usize) -> io::Result<bool> {
        let c = &mut *self.conn;
        if c.send_failed {
            return Err(io::Error::other("send failed"));
        }
        if self.tls.is_some() || c.sending.is_some() {
            return Ok(false);
        }
        // The connection's spare buffer (the last send's, back from the ring)
        // becomes the one frames are made in; the full one goes to the SEND.
        c.out.clear();
        std::mem::swap(&mut c.out, out);
        c.sending = Some(Sending::Write {
            sent: from,
            core: 0,
        });
        c.submit_send(self.token, self.ring, from, false);
        Ok(true)
    }
}

/// What a worker shares with all its connections.
struct Shared {
    common: ConnContext,
    /// Spare buffers for sends and reads, the worker's (not per connection).
    io: BufPool,
    /// The plans for file bodies, and the engines forced off.
    engines: Engines,
    /// Handshake slots and buffers of the TLS connections.
    tls: TlsWorker,
    /// Plain connections may speak HTTP/2 with prior knowledge (h2c).
    h2c: bool,
}

/// What [`Shared::parts`] lends.
type Parts<'a> = (
    Env<'a>,
    &'a mut BufPool,
    &'a mut SiteResponder,
    &'a mut Engines,
    &'a mut TlsWorker,
);

impl Shared {
    fn env(&mut self) -> Env<'_> {
        self.common.env()
    }

    /// The core's view of the worker, and beside it the send/read buffers, the
    /// responder that answers its requests, the body plans and the TLS state.
    fn parts(&mut self) -> Parts<'_> {
        let (env, site) = self.common.parts();
        (env, &mut self.io, site, &mut self.engines, &mut self.tls)
    }
}

impl Connection {
    /// Gives the HTTP/1 core the first `seen` bytes of the h2c preface, taken while
    /// it was not yet known what the connection speaks: it turned out HTTP/1.
    fn give_core(&mut self, env: &mut Env, seen: usize) {
        if seen == 0 {
            return;
        }
        let dst = self.core.read_buf(env);
        dst[..seen].copy_from_slice(&zcopy_http2::PREFACE[..seen]);
        self.core.on_read(env, seen);
    }

    fn token(idx: usize) -> u64 {
        idx as u64
    }

    /// When the connection next needs attention without a completion: the core's
    /// deadline, or the end of its TLS handshake (or of its last ciphertext's wait).
    fn deadline(&self) -> Instant {
        if let Some(h) = &self.h2 {
            return h.deadline();
        }
        let core = self.core.deadline();
        self.tls
            .as_ref()
            .and_then(|t| t.deadline())
            .map_or(core, |d| d.min(core))
    }

    /// No request in flight (HTTP/1 between requests, HTTP/2 with no stream).
    fn is_idle(&self) -> bool {
        match &self.h2 {
            Some(h) => h.is_idle(),
            None => self.core.is_idle(),
        }
    }

    /// Drives the HTTP/2 connection: its reads take the received chunks, its
    /// writes submit sends; it is driven again when one completes.
    fn drive_h2(
        &mut self,
        token: u64,
        ring: &mut EventRing,
        sh: &mut Shared,
        tls: Option<&mut TlsConn>,
    ) {
        let Some(mut h) = self.h2.take() else {
            return;
        };
        // Publishes of its uploads answer to this connection's slot.
        h.set_token(token as usize);
        let (mut env, io, site, _, tw) = sh.parts();
        let next = {
            let mut rio = RingIo {
                ring: &mut *ring,
                conn: &mut *self,
                tls: tls.map(|t| (t, tw)),
                token,
            };
            h.drive(&mut rio, &mut env, site)
        };
        self.h2 = Some(h);
        match next {
            h2::Next::Wait => {}
            h2::Next::Yield => self.again = true,
            h2::Next::Close => self.begin_close(ring, io, None),
        }
        if !self.closing
            && self.recv.is_none()
            && !self.eof
            && !self.recv_failed
            && self.pending.len() < PENDING_MAX
        {
            self.arm_recv(token, ring);
        }
    }

    /// Arms the connection's multishot receive, unless the ring has no receive
    /// buffers registered (registering them again after a renewal failed): the
    /// receive would end at once with ENOBUFS and be armed again at every turn,
    /// a busy loop. It waits instead, starved, for the sweep that registers them
    /// again and drives it.
    fn arm_recv(&mut self, token: u64, ring: &mut EventRing) {
        if !ring.recv_bufs_ready() {
            self.recv_starved = true;
            return;
        }
        self.recv = Some(ring.recv_multi(token, &self.stream));
        self.inflight += 1;
    }

    /// Does all the work possible now; the rest waits for completions.
    fn drive(&mut self, idx: usize, ring: &mut EventRing, sh: &mut Shared) {
        let token = Connection::token(idx);
        sh.common.serving(idx, self.core.peer());
        if self.h2.is_some() {
            let mut t = self.tls.take();
            self.drive_h2(token, ring, sh, t.as_deref_mut());
            if let (Some(t), Some(tw)) = (t.as_mut(), self.closing.then_some(&mut sh.tls)) {
                t.closed(tw);
            }
            self.tls = t;
            return;
        }
        if let Some(mut t) = self.tls.take() {
            self.drive_tls(&mut t, token, ring, sh);
            self.tls = Some(t);
            return;
        }
        // Body bytes spliced this turn (others get a go after the budget).
        let mut budget = super::TURN_BUDGET;
        while !self.closing {
            let (mut env, io, site, engines, _) = sh.parts();
            if self.lent.is_some() && self.core.is_closed() {
                // Timed out (or failed) with a lent rest unsent: it is dropped (its
                // poll is cancelled with the connection) and `next` says close.
                self.lent = None;
            }
            if self.lent.is_some() {
                if self.sending.is_some() || self.send_lent(token, ring, &mut env, engines) {
                    return;
                }
                continue;
            }
            let intent = self.core.next(&mut env);
            let corked = self.sending.is_none() && !self.out.is_empty();
            if let Some(op) = self.recv
                && !self.recv_cancelled
                && self.core.body_to_come() >= SPLICE_BODY_MIN
            {
                // A large body is coming: it will be spliced, so the multishot
                // receive ends now (before a `100 Continue` leaves), not after it
                // has copied the body's first buffers.
                self.recv_cancelled = true;
                ring.cancel(IGNORE, op);
            }
            match intent {
                Intent::StoreBody => super::store_body(&mut self.core, &mut env, false),
                Intent::Publish => {
                    Splicing::end(&mut self.splice, &self.stream);
                    super::start_publish(&mut self.core, &mut env, site, idx)
                }
                // A request body is received by copy here: the chunks the ring
                // received go from its buffers to the body's file, all of them in
                // one writev (not each through the core's read buffer).
                Intent::ReceiveBody { len } if !self.pending.is_empty() => {
                    if corked {
                        self.flush(token, ring, false);
                    }
                    self.write_received(len, ring, &mut env);
                }
                // The rest of a large body is spliced, socket → pipe → file, on the
                // loop as the epoll driver does, a ring poll waiting for the socket
                // (readable once the low-water mark's bytes are queued).
                Intent::ReceiveBody { len }
                    if len >= SPLICE_BODY_MIN
                        || self.splice.as_ref().is_some_and(|s| s.upload.is_some()) =>
                {
                    if corked {
                        self.flush(token, ring, false);
                    }
                    if self.body_poll {
                        return;
                    }
                    if let Some(op) = self.recv {
                        // Bytes the receive takes until it is over are written first
                        // (pending); then the socket is the splice's alone.
                        if !self.recv_cancelled {
                            self.recv_cancelled = true;
                            ring.cancel(IGNORE, op);
                        }
                        return;
                    }
                    if self.eof {
                        self.core.on_read(&mut env, 0);
                        continue;
                    }
                    if self.recv_failed {
                        self.core.on_read_failed(&mut env);
                        continue;
                    }
                    if budget == 0 {
                        self.again = true;
                        return;
                    }
                    if self.core.body_file().is_none() {
                        continue;
                    }
                    let splice = self.splice.get_or_insert_default();
                    splice.low.expect(&*self.stream, len);
                    let want = len.min(budget as u64) as usize;
                    let (step, n) = super::splice_body_step(
                        &mut self.core,
                        &mut env,
                        &mut splice.upload,
                        engines,
                        self.stream.as_fd(),
                        want,
                    );
                    budget = budget.saturating_sub(n);
                    if let super::BodyStep::Blocked = step {
                        self.body_poll = true;
                        ring.poll(token | BODY_POLL, &self.stream, POLLIN);
                        self.inflight += 1;
                        return;
                    }
                }
                Intent::Read | Intent::ReceiveBody { .. } => {
                    if corked {
                        self.flush(token, ring, false);
                    }
                    if let Some(seen) = self.sniff
                        && let Some(data) = self.pending.unread(ring)
                    {
                        self.sniff = None;
                        let seen = usize::from(seen);
                        match h2::sniff(seen, data) {
                            h2::Sniff::Http2 => {
                                let first = match seen {
                                    0 => std::borrow::Cow::Borrowed(data),
                                    _ => [&zcopy_http2::PREFACE[..seen], data].concat().into(),
                                };
                                let peer = self.core.peer();
                                let h = H2::new(peer, ListenKind::Http, false, &env, &first);
                                self.h2 = Some(Box::new(h));
                                self.pending.consume(ring, usize::MAX);
                                self.drive_h2(token, ring, sh, None);
                                return;
                            }
                            h2::Sniff::More => {
                                let n = data.len();
                                self.sniff = Some((seen + n) as u8);
                                self.pending.consume(ring, n);
                            }
                            h2::Sniff::Http1 => self.give_core(&mut env, seen),
                        }
                        continue;
                    }
                    if let Some(data) = self.pending.unread(ring) {
                        let dst = self.core.read_buf(&mut env);
                        let n = data.len().min(dst.len());
                        if n == 0 {
                            return;
                        }
                        dst[..n].copy_from_slice(&data[..n]);
                        self.pending.consume(ring, n);
                        self.core.on_read(&mut env, n);
                        continue;
                    }
                    if (self.eof || self.recv_failed)
                        && let Some(seen) = self.sniff.take()
                    {
                        // What was taken of a preface goes to HTTP/1 first.
                        self.give_core(&mut env, seen.into());
                        continue;
                    }
                    if self.eof {
                        self.core.on_read(&mut env, 0);
                        continue;
                    }
                    if self.recv_failed {
                        self.core.on_read_failed(&mut env);
                        continue;
                    }
                    if self.recv.is_none() {
                        // The mark a spliced body raised must not hold back a head.
                        Splicing::end(&mut self.splice, &self.stream);
                        self.arm_recv(token, ring);
                    }
                    // Nothing received yet: a connection waiting for bytes holds no
                    // read buffer.
                    self.core.on_read_blocked(&mut env);
                    return;
                }
                Intent::Write { more } => {
                    if self.sending.is_some() {
                        return;
                    }
                    if let Some((bytes, range)) = self.core.write_held() {
                        // A held file's bytes: sent from where they are held, after
                        // the corked head, in one SENDMSG (the kernel's copy only).
                        let len = range.len();
                        if self.out.capacity() == 0 {
                            self.out = io.take();
                        }
                        let prefix = std::mem::take(&mut self.out);
                        self.sending = Some(Sending::HeldSend {
                            prefix: prefix.len(),
                            core: len,
                        });
                        let fd = &self.stream;
                        ring.send_shared(token, fd, prefix, bytes, range.start, len, more);
                        self.inflight += 1;
                        return;
                    }
                    let data = self.core.write_buf();
                    let n = data.len();
                    if more && self.out.len() + n <= CORK_MAX {
                        // A body follows at once: keep these bytes for its first send.
                        if self.out.capacity() == 0 {
                            self.out = io.take();
                        }
                        self.out.extend_from_slice(data);
                        self.core.on_written(&mut env, n);
                        continue;
                    }
                    if self.out.capacity() == 0 {
                        self.out = io.take();
                    }
                    self.out.extend_from_slice(data);
                    self.sending = Some(Sending::Write { sent: 0, core: n });
                    self.submit_send(token, ring, 0, more);
                    return;
                }
                Intent::Request => super::answer_request(&mut self.core, &mut env, site),
                Intent::OpenMember => super::open_next_member(&mut self.core, &mut env),
                Intent::Lease => super::take_lease(&mut self.core),
                Intent::SendFile {
                    offset,
                    len,
                    leased,
                    by_reference,
                } => {
                    let file = FileRange {
                        offset,
                        len,
                        leased,
                        by_reference,
                    };
                    if self.sending.is_none() && !self.in_body && self.lend(&mut env, io, engines) {
                        continue;
                    }
                    let Some(sent) = self.send_file(file, None, token, ring, &mut env, io, engines)
                    else {
                        return;
                    };
                    // A body the library sent now (the socket took it at once) has
                    // the turn's budget, as a spliced one: then others get a go.
                    budget = budget.saturating_sub(sent);
                    if budget == 0 {
                        self.again = true;
                        return;
                    }
                }
                Intent::CheckSendQueue => {
                    let n = zcopy::transfer::send_queue_len(&self.stream).unwrap_or(0);
                    self.core.on_send_queue(&mut env, n);
                }
                Intent::ShutdownWrite => {
                    if corked {
                        self.flush(token, ring, false);
                    }
                    if self.sending.is_some() {
                        self.shut_pending = true;
                    } else {
                        let _ = self.stream.shutdown(Shutdown::Write);
                    }
                }
                Intent::Close { reset } => {
                    if reset {
                        // Discard what is queued rather than let changed pages go out.
                        let _ = rustix::net::sockopt::set_socket_linger(
                            &self.stream,
                            Some(Duration::ZERO),
                        );
                    }
                    self.begin_close(ring, io, None);
                    return;
                }
                Intent::Wait => {
                    if corked {
                        self.flush(token, ring, false);
                    }
                    return;
                }
            }
        }
    }

    /// Writes what the ring received of a request body (at most `len` bytes, from
    /// the pending chunks, in one `writev`) to the body's file.
    fn write_received(&mut self, len: u64, ring: &mut EventRing, env: &mut super::worker::Env<'_>) {
        use std::io::Write;
        let r = {
            let Some(file) = self.core.body_file() else {
                return;
            };
            let mut want = len;
            let mut iov = Vec::with_capacity(self.pending.len().min(WRITEV_MAX));
            for (buf, used) in self.pending.iter().take(WRITEV_MAX) {
                if want == 0 {
                    break;
                }
                let data = &ring.recv_data(buf)[*used as usize..];
                let data = &data[..data.len().min(usize::try_from(want).unwrap_or(usize::MAX))];
                want -= data.len() as u64;
                iov.push(io::IoSlice::new(data));
            }
            (&*file).write_vectored(&iov)
        };
        match r {
            Ok(0) => self
                .core
                .on_body_failed(env, Some(&io::Error::from(io::ErrorKind::WriteZero))),
            Ok(n) => {
                let mut left = n;
                while left > 0 {
                    match self.pending.consume(ring, left) {
                        0 => break,
                        took => left -= took,
                    }
                }
                env.events.stats.upload_copied(false, n as u64);
                self.core.on_body_received(env, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.core.on_body_failed(env, Some(&e)),
        }
    }

    /// [`Connection::drive`] for a TLS connection: received chunks are ciphertext
    /// for `t`, and what leaves is the ciphertext it makes of the core's bytes.
    fn drive_tls(&mut self, t: &mut TlsConn, token: u64, ring: &mut EventRing, sh: &mut Shared) {
        while !self.closing {
            if t.alpn_h2() {
                let env = sh.env();
                let via = ListenKind::Https;
                self.h2 = Some(Box::new(H2::new(self.core.peer(), via, true, &env, &[])));
                self.drive_h2(token, ring, sh, Some(t));
                if self.closing {
                    t.closed(&mut sh.tls);
                }
                return;
            }
            let (mut env, io, site, engines, tw) = sh.parts();
            match self.core.next(&mut env) {
                Intent::StoreBody => super::store_body(&mut self.core, &mut env, true),
                Intent::Publish => {
                    super::start_publish(&mut self.core, &mut env, site, token as usize)
                }
                // A request body is plaintext delivered into the core's read buffer,
                // as a head is, then written to its file (StoreBody).
                Intent::Read | Intent::ReceiveBody { .. } => {
                    if t.deliver(&mut self.core, &mut env) {
                        continue;
                    }
                    if let Some(data) = self.pending.unread(ring) {
                        let fed = t.feed(data, tw, self.core.peer());
                        self.pending.consume(ring, usize::MAX);
                        if let Err(refusal) = fed {
                            // Best effort, once, like the epoll driver: a clear-text 400
                            // or an alert into the socket's (likely empty) buffer.
                            use rustix::net::SendFlags;
                            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
                            let _ = rustix::net::send(&*self.stream, &refusal.bytes, flags);
                            if refusal.shut {
                                let _ = self.stream.shutdown(Shutdown::Write);
                            }
                            t.closed(tw);
                            self.begin_close(ring, io, None);
                            return;
                        }
                        continue;
                    }
                    if self.eof {
                        self.core.on_read(&mut env, 0);
                        continue;
                    }
                    if self.recv_failed {
                        self.core.on_read_failed(&mut env);
                        continue;
                    }
                    if self.recv.is_none() {
                        self.arm_recv(token, ring);
                    }
                    self.core.on_read_blocked(&mut env);
                    // The handshake's answers, or a coalesced head, leave now.
                    self.send_cipher(t, token, ring, io);
                    t.on_idle(&self.core);
                    return;
                }
                Intent::Write { more } => {
                    if self.sending.is_some() {
                        return;
                    }
                    if t.wants_write() && !t.take_coalesce() {
                        if self.send_cipher(t, token, ring, io) {
                            return;
                        }
                        continue;
                    }
                    if t.encrypt_write(&mut self.core, &mut env, more)
                        && self.send_cipher(t, token, ring, io)
                    {
                        return;
                    }
                }
                Intent::Request => super::answer_request(&mut self.core, &mut env, site),
                Intent::OpenMember => super::open_next_member(&mut self.core, &mut env),
                Intent::Lease => super::take_lease(&mut self.core),
                Intent::SendFile {
                    offset,
                    len,
                    leased,
                    by_reference,
                } => {
                    let file = FileRange {
                        offset,
                        len,
                        leased,
                        by_reference,
                    };
                    let tls = Some((&mut *t, tw));
                    if self
                        .send_file(file, tls, token, ring, &mut env, io, engines)
                        .is_none()
                    {
                        return;
                    }
                }
                Intent::CheckSendQueue => {
                    let n = zcopy::transfer::send_queue_len(&self.stream).unwrap_or(0);
                    self.core.on_send_queue(&mut env, n);
                }
                Intent::ShutdownWrite => {
                    t.shutdown_write();
                    self.send_cipher(t, token, ring, io);
                }
                Intent::Close { reset } => {
                    if !reset {
                        let in_flight = self.send_cipher(t, token, ring, io);
                        let limit = env.config.send_timeout;
                        if !t.may_close(!in_flight, env.now, limit) {
                            return;
                        }
                    } else {
                        let _ = rustix::net::sockopt::set_socket_linger(
                            &self.stream,
                            Some(Duration::ZERO),
                        );
                    }
                    t.closed(tw);
                    self.begin_close(ring, io, None);
                    return;
                }
                Intent::Wait => {
                    self.send_cipher(t, token, ring, io);
                    return;
                }
            }
        }
    }

    /// Sends the ciphertext `t` holds, unless a send is in flight; with nothing
    /// left to send, shuts the write side if a close_notify asked for it. True
    /// while a send is in flight.
    fn send_cipher(
        &mut self,
        t: &mut TlsConn,
        token: u64,
        ring: &mut EventRing,
        io: &mut BufPool,
    ) -> bool {
        if self.sending.is_some() {
            return true;
        }
        if self.send_failed {
            return false;
        }
        if !t.wants_write() {
            if t.sent_all() {
                let _ = self.stream.shutdown(Shutdown::Write);
            }
            return false;
        }
        // The session's buffer itself goes to the SEND (no copy); it comes back
        // to the session when the send completes.
        if self.out.capacity() > 0 {
            io.give(std::mem::take(&mut self.out));
        }
        self.out = t.take_ciphertext();
        self.sending = Some(Sending::Cipher { sent: 0 });
        self.submit_send(token, ring, 0, false);
        true
    }

    /// Sends corked bytes on their own (what follows them isn't a file chunk).
    fn flush(&mut self, token: u64, ring: &mut EventRing, more: bool) {
        self.sending = Some(Sending::Write { sent: 0, core: 0 });
        self.submit_send(token, ring, 0, more);
    }

    fn submit_send(&mut self, token: u64, ring: &mut EventRing, from: usize, more: bool) {
        let buf = std::mem::take(&mut self.out);
        ring.send(token, &self.stream, buf, from, more);
        self.inflight += 1;
    }

    /// A hot snapshot's body after the corked head, both from a template pipe in one
    /// splice on this thread ([`zcopy::lend`]; the ring would run a splice on an
    /// io-wq thread). False when declined (nothing sent: the usual way then). A
    /// rest the socket did not take is sent by the loop first
    /// ([`Connection::send_lent`]).
    fn lend(&mut self, env: &mut Env<'_>, io: &mut BufPool, engines: &mut Engines) -> bool {
        let sock = self.stream.as_fd();
        match lend::lend(&mut self.core, env, engines, sock, Some(&self.out)) {
            Lending::Declined => return false,
            Lending::Sent(rest) => self.lent = rest.map(Box::new),
            Lending::Failed => {}
        }
        self.out.clear();
        self.release_out(io);
        true
    }

    /// Sends more of [`Connection::lent`]; true while the socket is polled for room.
    fn send_lent(
        &mut self,
        token: u64,
        ring: &mut EventRing,
        env: &mut Env<'_>,
        engines: &mut Engines,
    ) -> bool {
        let Some((lent, corked)) = self.lent.as_deref_mut() else {
            return false;
        };
        let sock = self.stream.as_fd();
        match lend::send_rest(lent, corked, &mut self.core, env, sock, false) {
            Rest::Done => {
                if let Some(rest) = self.lent.take() {
                    engines.lender().give_back(rest.0);
                }
                return false;
            }
            Rest::Left => {}
            Rest::Failed => {
                self.lent = None;
                return false;
            }
        }
        ring.poll(token, &self.stream, POLLOUT);
        self.inflight += 1;
        self.sending = Some(Sending::Lent);
        true
    }

    /// [`Intent::SendFile`] for either transport (`tls`: the connection's session
    /// and the worker's TLS state). `None` while a send is in flight (the loop
    /// waits for its completion), else the file bytes sent now.
    #[allow(clippy::too_many_arguments)]
    fn send_file(
        &mut self,
        r: FileRange,
        tls: Option<(&mut TlsConn, &mut TlsWorker)>,
        token: u64,
        ring: &mut EventRing,
        env: &mut Env<'_>,
        io: &mut BufPool,
        engines: &mut Engines,
    ) -> Option<usize> {
        let breaking = r.leased
            && self
                .core
                .file()
                .is_some_and(|f| zcopy::lease::breaking(&**f));
        if breaking {
            match (&self.sending, tls.is_some()) {
                (None, _) => {}
                // Ciphertext in flight holds nothing of the file: only a chunk
                // being read in is not the core's any more.
                (Some(s), true) => self.abandoned |= matches!(s, Sending::TlsRead),
                // A send blocked on a full socket holds the file (its pages, its
                // mapping) and so its lease: cancel it so the file can go.
                (Some(_), false) if !self.abandoned => {
                    self.abandoned = true;
                    if let (Some(Sending::File), Some(op)) = (&self.sending, &mut self.file_send) {
                        op.abandon();
                    }
                    ring.cancel_fd(IGNORE, &self.stream);
                }
                (Some(_), false) => return None,
            }
            self.core.on_lease_breaking(env);
            return Some(0);
        }
        if self.sending.is_some() {
            return None;
        }
        let Some(file) = self.core.file().cloned() else {
            self.core.on_send_failed(env);
            return Some(0);
        };
        if let Some((t, tw)) = tls {
            let busy = self.send_file_tls(r, file, t, tw, token, ring, env, io);
            return (!busy).then_some(0);
        }
        if !self.in_body {
            // A new body: the plan the epoll driver's transfer would follow.
            let forced = engines.forced().clone();
            let plan = engines.plan(self.route, r.len, r.by_reference);
            match &mut self.file_send {
                Some(op) => op.reset(plan),
                None => self.file_send = Some(Box::new(FileSend::new(plan, forced))),
            }
            self.in_body = true;
        }
        let op = self.file_send.as_mut().expect("set up above");
        let prefix = std::mem::take(&mut self.out);
        let before = ring.inflight();
        let p = op.start(
            ring,
            io,
            token,
            &file,
            r.offset,
            r.len,
            &self.stream,
            prefix,
        );
        self.inflight += (ring.inflight() - before) as u32;
        self.file_progress(p, env)
    }

    /// What the connection's [`FileSend`] said: told to the core (and the metrics).
    /// `None` while it has operations in flight, else the file bytes it sent.
    fn file_progress(&mut self, p: Progress, env: &mut Env<'_>) -> Option<usize> {
        let mut sent = 0;
        match p {
            Progress::Pending => {
                self.sending = Some(Sending::File);
                return None;
            }
            Progress::Sent { bytes, engine } => {
                sent = bytes;
                let by_ref = engine.sends_by_reference();
                env.events
                    .stats
                    .body_by_engine(Some(engine), bytes as u64, by_ref);
                self.core.on_file_sent(env, bytes, by_ref);
            }
            Progress::Again => {}
            Progress::Ended { by_reference } => self.core.on_file_sent(env, 0, by_reference),
            Progress::Failed(e) => {
                tracing::debug!(peer = %self.core.peer(), "send failed: {e}");
                self.core.on_send_failed(env);
            }
        }
        self.sending = None;
        Some(sent)
    }

    /// [`Connection::send_file`] for TLS: copies only (the chunk is encrypted in user
    /// space), read in the ring when its pages are not in memory.
    #[allow(clippy::too_many_arguments)]
    fn send_file_tls(
        &mut self,
        r: FileRange,
        file: Arc<File>,
        t: &mut TlsConn,
        tw: &mut TlsWorker,
        token: u64,
        ring: &mut EventRing,
        env: &mut Env<'_>,
        io: &mut BufPool,
    ) -> bool {
        if t.wants_write() && !t.take_coalesce() {
            return self.send_cipher(t, token, ring, io);
        }
        let FileRange { offset, len, .. } = r;
        // Larger than epoll's: each chunk is a SEND and its completion.
        let chunk = TLS_CHUNK;
        let cold =
            len > TLS_COLD_CHECK && !super::fetch::is_cached(&file, offset, len.min(chunk as u64));
        if cold {
            // Read in the ring: a cold file never stalls the loop.
            let mut buf = std::mem::take(&mut self.out);
            if buf.capacity() == 0 {
                buf = io.take();
            }
            buf.clear();
            self.sending = Some(Sending::TlsRead);
            ring.read(token, &file, offset, buf, (len as usize).min(chunk));
            self.inflight += 1;
            return true;
        }
        t.encrypt_file(&mut self.core, env, tw, offset, len, chunk);
        self.send_cipher(t, token, ring, io)
    }

    /// Cancels what is in flight; the connection goes once it all has completed.
    /// `tw`: give back its TLS handshake slot, if it still holds one.
    fn begin_close(&mut self, ring: &mut EventRing, io: &mut BufPool, tw: Option<&mut TlsWorker>) {
        self.closing = true;
        if let (Some(t), Some(tw)) = (self.tls.as_mut(), tw) {
            t.closed(tw);
        }
        for (buf, _) in self.pending.drain() {
            ring.recycle(buf);
        }
        if self.out.capacity() > 0 {
            io.give(std::mem::take(&mut self.out));
        }
        if let (Some(Sending::File), Some(op)) = (&self.sending, &mut self.file_send) {
            op.abandon();
        }
        if self.inflight > 0 {
            ring.cancel_fd(IGNORE, &self.stream);
        }
    }

    /// Takes in one completion of this connection's operations.
    fn complete(&mut self, c: Completion, ring: &mut EventRing, sh: &mut Shared) {
        if c.last {
            self.inflight -= 1;
        }
        let now_token = c.token;
        let send_side = !matches!(
            c.event,
            Event::Received(_) | Event::Cancelled(_) | Event::Accepted(_)
        );
        if send_side && let (Some(Sending::File), Some(op)) = (&self.sending, &mut self.file_send) {
            // The library's send: its completion, and what it queues next.
            let before = ring.inflight();
            let p = op.complete(ring, &mut sh.io, c.event);
            self.inflight += (ring.inflight() - before) as u32;
            if matches!(p, Progress::Pending) {
                return;
            }
            if self.abandoned || self.closing {
                // The response already ended; what the operation held is dropped.
                self.abandoned = false;
                self.sending = None;
            } else {
                self.file_progress(p, &mut sh.env());
            }
            self.after_send();
            self.release_out(&mut sh.io);
            return;
        }
        if self.abandoned && send_side {
            if let Event::Sent { buf, .. } | Event::Read { buf, .. } = c.event {
                self.out = buf;
            }
            // The response already ended.
            self.abandoned = false;
            self.sending = None;
            self.out.clear();
            self.after_send();
            self.release_out(&mut sh.io);
            return;
        }
        if self.h2.is_some()
            && let Event::Sent { res, buf } = c.event
        {
            self.h2_sent(res, buf, now_token, ring);
            return;
        }
        let mut env = sh.common.env();
        match c.event {
            Event::Received(r) => {
                if c.last {
                    self.recv = None;
                    self.recv_cancelled = false;
                }
                match r {
                    Ok(Some(buf)) if self.closing => ring.recycle(buf),
                    Ok(Some(buf)) => self.pending.push_back((buf, 0)),
                    Ok(None) => self.eof = true,
                    Err(e) => match errno(&e) {
                        // Out of buffers, or cancelled by us: re-armed when needed.
                        Some(Errno::NOBUFS) => self.recv_starved = true,
                        Some(Errno::CANCELED) => {}
                        _ => self.recv_failed = true,
                    },
                }
            }
            Event::Sent { res, buf } => {
                self.out = buf;
                let Some(sending) = self.sending.take() else {
                    return;
                };
                if self.closing {
                    return;
                }
                match (sending, res) {
                    (Sending::Write { sent, core }, Ok(n)) => {
                        let sent = sent + n;
                        if n > 0 && sent < self.out.len() {
                            self.sending = Some(Sending::Write { sent, core });
                            self.submit_send(now_token, ring, sent, false);
                            return;
                        }
                        self.out.clear();
                        if sent < self.out.len() {
                            self.core.on_send_failed(&mut env);
                        } else if core > 0 {
                            self.core.on_written(&mut env, core);
                        }
                    }
                    (Sending::Cipher { sent }, Ok(n)) => {
                        let sent = sent + n;
                        if n > 0 && sent < self.out.len() {
                            self.sending = Some(Sending::Cipher { sent });
                            self.submit_send(now_token, ring, sent, false);
                            return;
                        }
                        let short = sent < self.out.len();
                        if let Some(t) = self.tls.as_mut() {
                            t.recycle(&mut self.out);
                        }
                        self.out.clear();
                        if short {
                            self.send_failed = true;
                            self.core.on_send_failed(&mut env);
                        }
                    }
                    (Sending::Cipher { .. }, Err(e)) => {
                        tracing::debug!(peer = %self.core.peer(), "send failed: {e}");
                        self.out.clear();
                        self.send_failed = true;
                        self.core.on_send_failed(&mut env);
                    }
                    (Sending::HeldSend { prefix, core }, Ok(n)) => {
                        self.out.clear();
                        if n == prefix + core {
                            self.core.on_written(&mut env, core);
                        } else {
                            // MSG_WAITALL: short only when the connection failed.
                            self.core.on_send_failed(&mut env);
                        }
                    }
                    (_, Err(e)) => {
                        tracing::debug!(peer = %self.core.peer(), "send failed: {e}");
                        self.out.clear();
                        self.core.on_send_failed(&mut env);
                    }
                    (s, Ok(_)) => unreachable!("a send completes a send, not {s:?}"),
                }
                self.after_send();
                self.release_out(&mut sh.io);
            }
            Event::Read { res, buf } => {
                self.out = buf;
                if matches!(self.sending, Some(Sending::TlsRead)) {
                    self.sending = None;
                    if self.closing {
                        return;
                    }
                    match (res, self.tls.as_mut()) {
                        (Ok(n), Some(t)) => {
                            let n = n.min(self.out.len());
                            t.encrypt_read(&mut self.core, &mut env, &self.out[..n]);
                        }
                        (res, _) => {
                            tracing::debug!(peer = %self.core.peer(), "read failed: {res:?}");
                            self.core.on_send_failed(&mut env);
                        }
                    }
                    self.out.clear();
                }
            }
            Event::Polled(_) if matches!(self.sending, Some(Sending::Lent)) => {
                // Room (or an error, which the next splice reports): the loop sends.
                self.sending = None;
            }
            Event::Spliced { .. } | Event::Polled(_) => {}
            Event::Cancelled(_) | Event::Accepted(_) => {}
        }
    }

    /// An HTTP/2 connection's send completed: the rest of a short one goes again;
    /// the buffer is kept for the next frames (or the TLS session's).
    fn h2_sent(&mut self, res: io::Result<usize>, buf: Vec<u8>, token: u64, ring: &mut EventRing) {
        self.out = buf;
        let sending = self.sending.take();
        if self.closing {
            return;
        }
        let (Some(Sending::Write { sent, .. } | Sending::Cipher { sent }), Ok(n)) =
            (&sending, &res)
        else {
            if let Err(e) = res {
                tracing::debug!(peer = %self.core.peer(), "send failed: {e}");
            }
            self.out.clear();
            self.send_failed = true;
            return;
        };
        let sent = sent + n;
        if *n > 0 && sent < self.out.len() {
            self.sending = match sending {
                Some(Sending::Cipher { .. }) => Some(Sending::Cipher { sent }),
                _ => Some(Sending::Write { sent, core: 0 }),
            };
            self.submit_send(token, ring, sent, false);
            return;
        }
        if sent < self.out.len() {
            self.send_failed = true;
        }
        if let (Some(Sending::Cipher { .. }), Some(t)) = (&sending, self.tls.as_mut()) {
            t.recycle(&mut self.out);
        }
        self.out.clear();
    }

    /// Gives the send buffer back to the worker's pool once a plain HTTP/1 send is
    /// over and nothing is corked in it: a connection at rest holds no send buffer
    /// (a burst of small bodies would otherwise leave one the size of a head and
    /// body on every connection, which the allocator keeps).
    fn release_out(&mut self, io: &mut BufPool) {
        if self.sending.is_none()
            && self.tls.is_none()
            && self.h2.is_none()
            && self.out.is_empty()
            && self.out.capacity() > 0
        {
            io.give(std::mem::take(&mut self.out));
        }
    }

    fn after_send(&mut self) {
        if self.shut_pending && self.sending.is_none() {
            self.shut_pending = false;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }
}

struct Listener {
    /// The set's id of the socket (its token is `LISTENER_BASE - id`).
    id: u64,
    /// This worker's descriptor of the socket, closed (dropped) at shutdown once its
    /// accept is over, so that new clients are refused at once (the accept holds it
    /// too, until its last completion).
    sock: Option<Rc<std::net::TcpListener>>,
    /// Left out of the worker's listener set: closed once its accept is over.
    leaving: bool,
    /// The multishot accept, while armed.
    accept: Option<OpId>,
    kind: ListenKind,
    /// The TLS setup of an HTTPS listener.
    tls: Option<Arc<TlsSite>>,
}

/// One worker thread's event loop on its own io_uring.
pub struct Worker {
    poll: Poll,
    /// A descriptor of `poll`'s epoll instance for the ring's poll on it (held by
    /// the operation until it completes); made in [`Worker::run`].
    waker: Option<Rc<mio::Registry>>,
    listeners: Vec<Listener>,
    /// Connections in place (not boxed each: 16 bytes and an allocation fewer a
    /// connection, as the epoll driver keeps them).
    conns: Vec<Option<Connection>>,
    books: LoopState,
    /// The worker's handshake limits were taken from its first HTTPS listener.
    tls_limits_set: bool,
    sh: Shared,
    /// When the sweep next gives back the pages of parked receive buffers.
    release_at: Instant,
    /// The change-notice fds polled: the file cache's and the snapshot store's,
    /// once each exists.
    notices: [Option<NoticePoll>; 2],
    /// Counted up at each new copy of a notice fd.
    notices_gen: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.books.fmt(f)
    }
}

impl Worker {
    /// A worker for its listeners (plain HTTP, HTTPS and redirects).
    pub(crate) fn new(start: WorkerSetup) -> Worker {
        let WorkerSetup {
            poll,
            live,
            stats,
            active,
            shutdown,
            ctl,
            ..
        } = start;
        let engines = Engines::new(live.load().1.config.engine, stats.clone());
        let h2c = h2::offered(&live.load().1.config);
        let (books, mut common) = LoopState::new(live, active, shutdown, ctl, stats);
        // Held bodies leave from the held bytes (SENDMSG after the corked head), not
        // copied after the head and again into a send buffer.
        common.responder.inline_max = super::URING_INLINE_MAX;
        Worker {
            poll,
            waker: None,
            listeners: Vec::new(),
            conns: Vec::new(),
            books,
            tls_limits_set: false,
            release_at: Instant::now(),
            notices: [None, None],
            notices_gen: 0,
            sh: Shared {
                common,
                io: BufPool::new(super::SPARE_BUFFERS),
                engines,
                tls: TlsWorker::new(&zcopy_tls::Limits::default()),
                h2c,
            },
        }
    }

    /// Runs until shutdown (the ring is made here, on the worker's own thread).
    pub fn run(mut self) -> io::Result<()> {
        let mut ring = EventRing::new(RING)?;
        let waker = Rc::new(self.poll.registry().try_clone()?);
        ring.poll(WAKER, &waker, POLLIN);
        self.waker = Some(waker);
        let mut done = Vec::with_capacity(REAP_MAX);
        if let Some(plan) = self.books.ctl.new_plan() {
            self.relisten(plan, &mut ring);
        }
        loop {
            if self.books.shutdown_asked(&self.sh.common) {
                self.begin_shutdown(&mut ring);
            }
            self.arm_accepts(&mut ring);
            let now = Instant::now();
            let wake = self.books.wake_at();
            let timeout = if self.books.runq.is_empty() {
                Some(
                    wake.saturating_duration_since(now)
                        .max(Duration::from_micros(1)),
                )
            } else {
                None
            };
            ring.submit_and_wait(timeout)?;
            self.sh.common.now = Instant::now();
            if let Some(plan) = self.books.ctl.new_plan() {
                self.relisten(plan, &mut ring);
            }
            // REAP_MAX at a time until the completion queue is empty.
            let mut left = true;
            while left {
                left = ring.completions_upto(&mut done, REAP_MAX);
                for c in done.drain(..) {
                    self.complete(c, &mut ring);
                }
            }
            self.resume_checked();
            // A reload is taken after this turn's completions, before any request
            // is answered: a connection whose accept completed after the reload was
            // stored (reaped in this turn's loop above) is served under it.
            if let Some(live) = self.books.reloaded() {
                self.sh.common.reload(&live);
                self.sh.h2c = h2::offered(&self.sh.common.config);
            }
            self.run_queue(&mut ring);
            self.watch_notices(&mut ring);
            if self.sh.common.now >= self.books.next_sweep {
                self.sweep(&mut ring);
                if self.books.runq.is_empty() && self.books.runq.capacity() > RUNQ_KEPT {
                    // A burst's run queue goes (8 bytes a connection queued at
                    // once: 1,500 a worker in a burst of 3,000); the next burst
                    // grows it again.
                    self.books.runq = Vec::new();
                }
            }
            let (bufs, peak) = ring.buf_bytes();
            self.sh.common.stats.ring_buffers(bufs, peak);
            self.sh.common.stats.ring_memory(
                ring.recv_buf_bytes(),
                self.sh.io.spare_bytes(),
                FileSend::live_on_this_thread(),
            );
            self.sh.common.flush_log();
            if self.books.grace_over(&self.sh.common) {
                for i in 0..self.conns.len() {
                    self.close(i, &mut ring);
                }
                self.sh.common.flush_log();
                // Dropping the ring cancels and waits for what is still in flight;
                // the sockets close after it.
                drop(ring);
                return Ok(());
            }
        }
    }

    /// Keeps a poll on each change-notice fd of the site, so it reads its notices
    /// only in a turn after they came. The poll is one-shot and armed again only
    /// once the notices it reported are read (an fd still readable would complete
    /// it at once, every turn).
    fn watch_notices(&mut self, ring: &mut EventRing) {
        let mut offered = Vec::new();
        self.sh.common.offer_notice_fds(|which, fd| {
            offered.push((which, fd.try_clone_to_owned()?));
            Ok(())
        });
        for (which, fd) in offered {
            let i = NOTICE_FDS.iter().position(|&w| w == which).expect("listed");
            let slot = &mut self.notices[i];
            if let Some(old) = slot.take()
                && old.armed
            {
                // An old file cache's: its instance goes with the poll's copy.
                ring.cancel_fd(IGNORE, &old.fd);
            }
            self.notices_gen = self.notices_gen.wrapping_add(1);
            *slot = Some(NoticePoll {
                fd: Rc::new(fd),
                generation: self.notices_gen,
                armed: false,
            });
        }
        for (i, which) in NOTICE_FDS.into_iter().enumerate() {
            let unread = self.sh.common.notices_unread(which);
            if let Some(p) = &mut self.notices[i]
                && !p.armed
                && !unread
            {
                let token = NOTICES | (i as u64) << 32 | u64::from(p.generation);
                ring.poll(token, &p.fd, POLLIN);
                p.armed = true;
            }
        }
    }

    fn complete(&mut self, c: Completion, ring: &mut EventRing) {
        match c.token {
            IGNORE => {}
            WAKER => {
                // Shutdown or a reload: both are looked at once per loop turn.
                let mut events = Events::with_capacity(4);
                let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
                if !self.books.shutdown.flag.load(Ordering::SeqCst)
                    && let Some(waker) = &self.waker
                {
                    ring.poll(WAKER, waker, POLLIN);
                }
            }
            t if t > LISTENER_BASE - MAX_ID && t <= LISTENER_BASE => {
                let li = self
                    .listeners
                    .iter()
                    .position(|l| l.id == LISTENER_BASE - t);
                if let (true, Some(li)) = (c.last, li) {
                    self.listeners[li].accept = None;
                }
                match c.event {
                    Event::Accepted(Ok(fd)) => {
                        self.books.starved = false;
                        let from = li.map(|li| {
                            let l = &self.listeners[li];
                            (l.kind, l.tls.clone())
                        });
                        self.add(fd, from.unwrap_or((ListenKind::Http, None)), ring);
                    }
                    Event::Accepted(Err(e)) => match errno(&e) {
                        Some(Errno::CANCELED) => {}
                        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                            // Shed one to make room; accepting resumes once its fd
                            // is closed (or after a pause when nothing could go).
                            if !self.shed(ring) && !self.books.starved {
                                self.books.starved = true;
                                tracing::warn!("accept: {e}; pausing new connections");
                            }
                            self.pause_accepts(ring);
                        }
                        _ => tracing::debug!("accept: {e}"),
                    },
                    _ => {}
                }
                if let Some(li) = li {
                    self.settle_listener(li, ring);
                }
            }
            // (after WAKER, IGNORE and the listeners: their tokens have this bit)
            t if t & NOTICES != 0 => {
                let i = ((t >> 32) & 1) as usize;
                // A poll on an old copy (cancelled at a reload) is not ours.
                if let Some(p) = &mut self.notices[i]
                    && p.generation == t as u32
                {
                    p.armed = false;
                    self.sh.common.notices_waiting(NOTICE_FDS[i]);
                }
            }
            t if t & BODY_POLL != 0 => {
                // More of a spliced body may be there (or the connection is closing).
                let idx = (t & !BODY_POLL) as usize;
                let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                    return;
                };
                if c.last {
                    conn.inflight -= 1;
                    conn.body_poll = false;
                }
                if conn.closing {
                    self.closed(idx);
                } else if !conn.queued {
                    conn.queued = true;
                    self.books.runq.push(idx);
                }
            }
            t => {
                let idx = t as usize;
                let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                    return;
                };
                conn.complete(c, ring, &mut self.sh);
                if conn.closing {
                    self.closed(idx);
                } else if !conn.queued {
                    conn.queued = true;
                    self.books.runq.push(idx);
                }
            }
        }
    }

    /// Queues the connections whose password check is done (the pool wakes the
    /// loop through the waker), resumed: their request is answered again.
    fn resume_checked(&mut self) {
        let mut published = Vec::new();
        self.sh.common.published(&mut published);
        for p in published {
            let mut env = self.sh.common.env();
            if let Some(conn) = self.conns.get_mut(p.token).and_then(Option::as_mut)
                && !conn.closing
            {
                match conn.h2.as_mut() {
                    Some(h) => h.on_published(&mut env, p.id, p.resp, p.out),
                    None => conn.core.on_published(&mut env, p.id, p.resp, p.out),
                }
                if !conn.queued {
                    conn.queued = true;
                    self.books.runq.push(p.token);
                }
            }
        }
        let mut woken = Vec::new();
        self.sh.common.checked(&mut woken);
        for idx in woken {
            if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut)
                && !conn.closing
            {
                conn.core.resume();
                if !conn.queued {
                    conn.queued = true;
                    self.books.runq.push(idx);
                }
            }
        }
    }

    fn arm_accepts(&mut self, ring: &mut EventRing) {
        if self.sh.common.shutting_down || !self.books.may_accept(self.sh.common.now) {
            return;
        }
        for l in &mut self.listeners {
            if l.accept.is_none()
                && !l.leaving
                && let Some(sock) = &l.sock
            {
                l.accept = Some(ring.accept_multi(LISTENER_BASE - l.id, sock));
            }
        }
    }

    fn pause_accepts(&mut self, ring: &mut EventRing) {
        self.books.accept_paused_until = Some(self.sh.common.now + ACCEPT_PAUSE);
        for l in &self.listeners {
            if let Some(op) = l.accept {
                ring.cancel(LISTENER_BASE - l.id, op);
            }
        }
    }

    /// Takes a new listener set: accepts on the sockets new to this worker; the ones
    /// it leaves have their accept cancelled, what waits on them taken in, and close.
    fn relisten(&mut self, plan: Vec<Listen>, ring: &mut EventRing) {
        if self.sh.common.shutting_down {
            return;
        }
        for l in &mut self.listeners {
            if !l.leaving && !plan.iter().any(|p| p.sock.id == l.id) {
                l.leaving = true;
                if let Some(op) = l.accept {
                    ring.cancel(IGNORE, op);
                }
            }
        }
        for p in plan {
            if self.listeners.iter().any(|l| l.id == p.sock.id) {
                continue;
            }
            if let (false, Some(site)) = (self.tls_limits_set, &p.tls) {
                // The first HTTPS listener of this worker: its handshake limits (one
                // TLS setup per process, so they never change after).
                self.sh.tls = TlsWorker::new(&site.limits);
                self.tls_limits_set = true;
            }
            match p.sock.sock.try_clone() {
                Ok(sock) => self.listeners.push(Listener {
                    id: p.sock.id,
                    sock: Some(Rc::new(sock)),
                    leaving: false,
                    accept: None,
                    kind: p.kind,
                    tls: p.tls,
                }),
                Err(e) => tracing::error!("listener {}: {e}", p.sock.id),
            }
        }
        for li in (0..self.listeners.len()).rev() {
            self.settle_listener(li, ring);
        }
    }

    /// Closes listener `li` if it is left (or shutting down) and its accept is over;
    /// a left one first has what waits in its queue taken in.
    fn settle_listener(&mut self, li: usize, ring: &mut EventRing) {
        let l = &mut self.listeners[li];
        if l.accept.is_some() || !(l.leaving || self.sh.common.shutting_down) {
            return;
        }
        let sock = l.sock.take();
        if l.leaving {
            let l = self.listeners.swap_remove(li);
            while let Some(Ok((stream, _))) = sock.as_ref().map(|s| s.accept()) {
                // As the ring's accepts make them.
                let _ = stream.set_nonblocking(true);
                self.add(stream.into(), (l.kind, l.tls.clone()), ring);
            }
        }
    }

    fn begin_shutdown(&mut self, ring: &mut EventRing) {
        self.books.begin_shutdown(&mut self.sh.common);
        for l in &mut self.listeners {
            match l.accept {
                Some(op) => ring.cancel(LISTENER_BASE - l.id, op),
                None => l.sock = None,
            }
        }
        if self.books.retiring() {
            // The server goes on: an idle keep-alive client may be sending its next
            // request right now; kept through the grace period, it gets its answer.
            return;
        }
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut().filter(|c| !c.closing) else {
                continue;
            };
            if c.is_idle() {
                self.close(i, ring);
            } else if c.h2.is_some() && !c.queued {
                // Its GOAWAY leaves now, not at its next completion.
                c.queued = true;
                self.books.runq.push(i);
            }
        }
    }

    /// Serves an accepted connection; at the connection cap, sheds another to make
    /// room, or (nothing to shed) answers 503 and closes it.
    fn add(
        &mut self,
        fd: OwnedFd,
        (kind, site): (ListenKind, Option<Arc<TlsSite>>),
        ring: &mut EventRing,
    ) {
        let stream = TcpStream::from(fd);
        // A retiring worker serves what its accept still brings (one response each,
        // then close): the client connected to a server that goes on.
        if self.sh.common.shutting_down && !self.books.retiring() {
            return;
        }
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        // No handshake slot free: the oldest unfinished handshake makes room (as the
        // oldest request head does at the connection cap).
        if site.is_some() && self.sh.tls.slots.full() && !self.shed_handshake(ring) {
            return;
        }
        let max = self.sh.common.config.max_connections.max(1);
        if self.books.active.load(Ordering::Relaxed) >= max && !self.shed(ring) {
            self.sh.common.stats.refused();
            // A TLS client is closed: it could not read a clear-text 503.
            if site.is_none() {
                super::refuse(&stream);
            }
            return;
        }
        let tls = match &site {
            Some(site) => match TlsConn::new(site, self.sh.common.now, false) {
                Ok(t) if self.sh.tls.slots.take() => Some(Box::new(t)),
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("TLS session: {e}");
                    return;
                }
            },
            None => None,
        };
        self.start(stream, peer, kind, tls);
    }

    /// Closes the connection that has been in its TLS handshake longest (giving its
    /// handshake slot back); false when none is.
    fn shed_handshake(&mut self, ring: &mut EventRing) -> bool {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref().filter(|c| !c.closing)?;
                c.tls
                    .as_ref()
                    .is_some_and(|t| t.in_handshake())
                    .then_some((c.seq, i))
            })
            .min();
        let Some((_, victim)) = oldest else {
            return false;
        };
        tracing::debug!("TLS handshake slots full: shedding connection {victim}");
        self.sh.common.stats.shed();
        self.close(victim, ring);
        true
    }

    /// Closes the connection [`shed_victim`] picks; false when there is none.
    fn shed(&mut self, ring: &mut EventRing) -> bool {
        let candidates = self.conns.iter().enumerate().filter_map(|(i, c)| {
            let c = c.as_ref().filter(|c| !c.closing)?;
            Some((
                i,
                Sheddable {
                    idle: c.is_idle(),
                    reading_head: c.h2.is_none() && c.core.is_reading_head(),
                    deadline: c.core.deadline(),
                    seq: c.seq,
                },
            ))
        });
        let Some(victim) = shed_victim(candidates) else {
            return false;
        };
        super::shedding(victim, &self.sh.common.stats);
        self.close(victim, ring);
        true
    }

    /// Starts serving an accepted connection.
    fn start(
        &mut self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        kind: ListenKind,
        tls: Option<Box<TlsConn>>,
    ) {
        let _ = stream.set_nodelay(true);
        let route = classify_peer(&mut self.sh.common.peers, &stream, peer);
        let mut core = proto::Conn::new(peer, !route.local, &self.sh.env());
        if kind != ListenKind::Http {
            core.set_via(kind);
        }
        core.set_loopback_peer(route.loopback());
        let idx = self.books.slot(|| {
            // When the table moves to a larger block, the old one is free memory
            // among live allocations, whose whole pages go back at the next
            // release (3,000 idle clients: 64 KiB).
            self.conns.push(None);
            self.conns.len() - 1
        });
        let deadline = tls
            .as_ref()
            .and_then(|t| t.deadline())
            .map_or(core.deadline(), |d| d.min(core.deadline()));
        let seq = self.books.opened(&self.sh.common, deadline);
        self.conns[idx] = Some(Connection {
            stream: RingFd::new(stream),
            core,
            inflight: 0,
            recv: None,
            pending: Chunks::default(),
            eof: false,
            recv_failed: false,
            sending: None,
            out: Vec::new(),
            shut_pending: false,
            abandoned: false,
            route,
            file_send: None,
            in_body: false,
            lent: None,
            closing: false,
            counted: true,
            queued: true,
            seq,
            sniff: (kind == ListenKind::Http && tls.is_none() && self.sh.h2c).then_some(0),
            tls,
            send_failed: false,
            h2: None,
            again: false,
            splice: None,
            body_poll: false,
            recv_cancelled: false,
            recv_starved: false,
        });
        self.books.runq.push(idx);
    }

    /// Starts closing a connection (cancels its operations).
    fn close(&mut self, idx: usize, ring: &mut EventRing) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !conn.closing {
            // A response cut short here (not by the core) still gets its log line.
            conn.core.on_dropped(&mut self.sh.common.env());
            if let Some(h) = conn.h2.as_mut() {
                h.dropped(&mut self.sh.common.env());
            }
            conn.begin_close(ring, &mut self.sh.io, Some(&mut self.sh.tls));
        }
        self.closed(idx);
    }

    /// A connection started closing: it no longer counts as open (its slot frees
    /// up for a new one now), and it goes once its operations have all completed.
    fn closed(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.counted {
            conn.counted = false;
            self.books.closed();
        }
        if conn.inflight == 0 {
            self.release(idx);
        }
    }

    /// Drops a closed connection whose operations have all completed.
    fn release(&mut self, idx: usize) {
        if let Some(mut conn) = self.conns[idx].take() {
            if conn.out.capacity() > 0 {
                self.sh.io.give(std::mem::take(&mut conn.out));
            }
            if conn.recv_starved && !conn.eof {
                // Closing a socket with unread bytes resets the connection, and the
                // peer may lose what we sent last (an HTTP/2 GOAWAY after a flood
                // the ring's 64 buffers did not take in whole): read them out
                // first, a bounded amount, as a receive with buffers to spare would
                // have.
                let mut sink = [0u8; 16 * 1024];
                for _ in 0..16 {
                    match rustix::net::recv(
                        &*conn.stream,
                        &mut sink,
                        rustix::net::RecvFlags::DONTWAIT,
                    ) {
                        Ok((n, _)) if n > 0 => {}
                        _ => break,
                    }
                }
            }
            drop(conn);
            self.books.free.push(idx);
            if !self.books.starved {
                // An fd was closed: try accepting again now.
                self.books.fd_freed(self.sh.common.now);
            }
        }
    }

    /// Drives the queued connections, [`TURN_MAX`] at most: the rest stay first
    /// in the queue, before those queued meanwhile.
    fn run_queue(&mut self, ring: &mut EventRing) {
        let mut queue = self.books.take_runq();
        let n = queue.len().min(TURN_MAX);
        for &idx in &queue[..n] {
            self.drive(idx, ring);
        }
        if n == queue.len() {
            self.books.give_runq(queue);
        } else {
            queue.drain(..n);
            queue.append(&mut self.books.runq);
            self.books.runq = queue;
        }
    }

    fn drive(&mut self, idx: usize, ring: &mut EventRing) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.queued = false;
        conn.drive(idx, ring, &mut self.sh);
        if conn.closing {
            self.closed(idx);
            return;
        }
        if conn.in_body && !conn.core.in_file_body() && conn.sending.is_none() {
            // The body is over: its fallbacks are counted, its file let go; an
            // operation that failed (or holds bytes of it) is not reused, nor one
            // without a pipe to keep (a by-copy body's: kept, 3,000 keep-alive
            // connections held 1.2 MiB of them for nothing).
            conn.in_body = false;
            if let Some(op) = conn.file_send.as_mut() {
                self.sh.engines.ring_done(op);
                if !op.reusable() || !op.holds_pipe() {
                    conn.file_send = None;
                }
            }
        }
        if std::mem::take(&mut conn.again) && !conn.queued {
            conn.queued = true;
            self.books.runq.push(idx);
        }
        // Nothing to send: the buffer goes back to the pool (idle connections hold
        // none; a busy HTTP/2 connection keeps it to make frames in next).
        if conn.sending.is_none()
            && conn.out.is_empty()
            && conn.out.capacity() > 0
            && conn.is_idle()
        {
            self.sh.io.give(std::mem::take(&mut conn.out));
        }
        // Chunks the core didn't take: stop receiving more until it asks.
        if conn.pending.len() >= PENDING_MAX
            && let Some(op) = conn.recv
        {
            ring.cancel(IGNORE, op);
        }
        // A paced body's next send, like any timeout, waits for the core's deadline.
        self.books.next_sweep = self.books.next_sweep.min(conn.deadline());
    }

    fn sweep(&mut self, ring: &mut EventRing) {
        let now = self.sh.common.now;
        if now >= self.release_at {
            // Receive buffers a burst touched and the ring no longer needs give
            // their pages back, at most once a tick (a buffer parked and soon
            // needed again is reused with its pages until then); spare send and
            // read buffers no operation took since the last tick are freed.
            let ready = ring.recv_bufs_ready();
            ring.release_recv_bufs();
            if !ready && ring.recv_bufs_ready() {
                // The receive buffers are registered again: the connections that
                // did not arm their receive meanwhile do now.
                for (idx, conn) in self.conns.iter_mut().enumerate() {
                    if let Some(c) = conn
                        .as_mut()
                        .filter(|c| c.recv_starved && c.recv.is_none() && !c.closing && !c.queued)
                    {
                        c.queued = true;
                        self.books.runq.push(idx);
                    }
                }
            }
            self.sh.io.trim();
            self.sh.engines.lender().trim(now);
            // What the tick freed among live allocations (a send's buffer, a
            // head, a read buffer, spares the pool let go, a burst's run queue;
            // 3,000 clients at once left about 300 KiB): the whole free pages go
            // back, at every release. Trimmed only after a burst, the soak's
            // churn kept 150-200 KiB more resident than on epoll; only after a
            // busy tick, what the pool frees a tick after the last would stay.
            // An idle worker's trim finds little to give (once a second).
            zcopy::ring::trim_heap();
            self.release_at = now + TICK;
        }
        let mut next = now + TICK;
        if ring.recv_bufs_settling() {
            // A renewed receive-buffer ring gives the buffers it held back at a
            // reaping soon after: an idle loop wakes for it.
            next = now + Duration::from_millis(100);
        }
        let (mut idle, mut held) = (0, 0);
        for c in self.conns.iter().flatten().filter(|c| !c.closing) {
            idle += usize::from(c.is_idle());
            held += c.core.buffered() + c.pending.heap_bytes() + c.out.capacity();
        }
        self.sh.common.stats.connection_buffers(held);
        self.sh.common.sweep(self.books.count, idle);
        for idx in 0..self.conns.len() {
            let Some(conn) = self.conns[idx].as_mut() else {
                continue;
            };
            if conn.closing {
                continue;
            }
            if conn.deadline() <= now {
                if conn.tls.as_ref().is_some_and(|t| t.handshake_late(now)) {
                    tracing::debug!(peer = %conn.core.peer(), "TLS handshake timeout");
                    self.close(idx, ring);
                    continue;
                }
                // An HTTP/2 connection looks at its own deadline when driven.
                if conn.h2.is_none() {
                    conn.core.on_timer(&mut self.sh.env());
                }
                self.drive(idx, ring);
            }
            if let Some(conn) = self.conns[idx].as_ref()
                && !conn.closing
            {
                next = next.min(conn.deadline().max(now + Duration::from_millis(1)));
            }
        }
        self.books.next_sweep = next;
    }
}

fn errno(e: &io::Error) -> Option<Errno> {
    Errno::from_io_error(e)
}

#[cfg(test)]
mod tests {
    /// Issue 18: every connection's record is memory for as long as it is open, and
    /// the io_uring driver's was 392 bytes in a box of its own (the epoll driver's,
    /// 328 in place). Now it is kept in place, its rarely used lent rest boxed, and
    /// a waiting received chunk takes no tag beside it (352); its socket is held
    /// by number (no `Rc`), a waiting chunk's count of bytes used is 32 bits, a
    /// spliced body's state and mark share one box, and an armed receive's id has
    /// a niche (328).
    #[test]
    fn a_connection_record_is_at_most_328_bytes() {
        let size = std::mem::size_of::<Option<super::Connection>>();
        assert!(size <= 328, "{size} bytes");
    }
}
