//! The connection core, without I/O: it is fed bytes read, bytes written, file bytes
//! sent, send-queue readings and the time, and says what to do next ([`Intent`]).
//!
//! ```text
//! Idle ─first byte─▶ Head ─parsed─▶ Respond ─done, keep-alive─▶ Idle (or Head: pipelined)
//!                      │               │ lease breaking ─▶ Draining ─queue empty─▶ Closed
//!                      │               └ close / file shrank ─▶ Closing (shutdown(WR), read to EOF) ─▶ Closed
//!                      └ bad request ─▶ Respond (error, then Closing)
//! ```
//!
//! A driver (in the server: the mio epoll loop or the io_uring loop) owns the socket and asks
//! [`Conn::next`] what to do, does it, and reports the outcome with the matching `on_*`
//! call. The core makes no syscalls and knows no site: when a request is ready it
//! says so ([`Intent::Request`]) and the driver answers it with a response plan
//! ([`Conn::answer`]); when an archive member's turn comes it asks for it to be
//! opened ([`Intent::OpenMember`], [`Conn::on_member`]).
//!
//! Memory: an idle keep-alive connection holds no buffer. The read buffer and the
//! response-head buffer come from the worker's [`Buffers`] when bytes are due and go
//! back as soon as they are empty; a small pipelined leftover moves to a buffer of
//! its own size while the response before it is sent.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::head::{self, Out};
use crate::pace::Pace;
pub use crate::pace::RATE_BURST;
use crate::plan::{Body, BodyMem, FileBody, Member, Piece, Response, Sink};
use crate::request::{self, HttpError, Limits, ListenKind, Method, Request};

/// First size of a read buffer.
pub const RBUF_INITIAL: usize = 4096;
/// How long a closing connection reads and discards what the client still sends.
pub const LINGER: Duration = Duration::from_secs(2);
/// How long queued bytes may take to leave after a lease break before we reset.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How often a send blocked on a full socket re-checks its file's lease.
pub const LEASE_CHECK: Duration = Duration::from_millis(200);
/// After the idle timeout, how often a connection whose last response is still
/// being read (bytes in our send queue, shrinking) is looked at again.
pub const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// How often the send queue is looked at while a file is held or drained.
pub const QUEUE_CHECK: Duration = Duration::from_millis(20);
/// The interim answer to `Expect: 100-continue` when the body will be read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Buffers larger than this are freed instead of pooled.
const POOLED_MAX: usize = 64 * 1024;
/// Bytes of a pipelined next request, at most, moved out of the read buffer when a
/// response starts ([`Conn::keep_leftover`]).
const LEFTOVER_MAX: usize = 1024;

/// Bodies held in memory up to this size leave with the head in one write.
pub const INLINE_MAX: u64 = 16 * 1024;

/// The bytes of `body` when it is one range of a file held in memory, of at most
/// [`INLINE_MAX`] bytes.
pub fn inline_body(body: &Body) -> Option<&[u8]> {
    match body {
        Body::File(fb) => inline_file(fb),
        _ => None,
    }
}

/// As [`inline_body`], for a file body.
pub fn inline_file(fb: &FileBody) -> Option<&[u8]> {
    let [Piece::File { start, len }] = fb.pieces[..] else {
        return None;
    };
    let held = fb.held.as_deref()?;
    let end = start.checked_add(len)?;
    (len <= INLINE_MAX && end <= held.len() as u64).then(|| &held[start as usize..end as usize])
}

/// A worker's spare buffers, lent to connections while they have bytes to hold.
#[derive(Debug, Default)]
pub struct Buffers {
    free: Vec<Vec<u8>>,
    /// Read buffers given back with their length (initialised bytes) kept: taken
    /// first for reading, so a read buffer is not zeroed again on every request
    /// (the write buffers, short, would be).
    filled: Vec<Vec<u8>>,
    max: usize,
    /// What the site answers into, reused for every response of the worker.
    out: Out,
    /// Emptied response records, so a response costs no allocation of its own.
    /// Boxed: a connection's state holds its record as a `Box`, moved in and out.
    #[allow(clippy::vec_box)]
    responds: Vec<Box<Respond>>,
    /// The Date value heads are written with.
    date: head::DateCache,
    /// The last Host value found valid, checked again by a compare.
    known_host: request::KnownHost,
}

/// Spare response records a worker keeps (a few hundred bytes each).
const SPARE_RESPONDS: usize = 32;

impl Buffers {
    /// A pool keeping at most `max` spare buffers.
    pub fn new(max: usize) -> Buffers {
        Buffers {
            free: Vec::new(),
            filled: Vec::new(),
            max,
            out: Out::default(),
            responds: Vec::new(),
            date: head::DateCache::default(),
            known_host: request::KnownHost::default(),
        }
    }

    /// Keeps an ended response's record, emptied first: nothing it held (a file, an
    /// archive member, log strings) outlives its response.
    fn give_respond(&mut self, mut r: Box<Respond>) {
        if self.responds.len() < SPARE_RESPONDS {
            r.body = None;
            r.member = None;
            r.meta = Meta::default();
            self.responds.push(r);
        }
    }

    /// Asks `answer` for a response into the worker's [`Out`], and writes its head
    /// (and a body held in memory) as HTTP/1.1 into a pooled buffer (nothing for an
    /// answer still to come: [`Body::Pending`], [`Body::Receive`]).
    ///
    /// A file body of at most [`INLINE_MAX`] bytes whose bytes are held in memory
    /// ([`FileBody::held`]) is copied after the head here, straight from the held
    /// bytes, so it leaves with the head in one write.
    pub fn answer(
        &mut self,
        now: Instant,
        answer: impl FnOnce(&mut Out) -> Response,
    ) -> (Response, Vec<u8>) {
        // Answered in place: the worker's Out is not moved out and back.
        self.out.clear();
        let mut resp = answer(&mut self.out);
        let wire = self.wire(now, &mut resp);
        (resp, wire)
    }

    /// The second half of [`Buffers::answer`], for a response the caller asked for
    /// into the emptied [`Buffers::out`] itself: its head (and a held body of at most
    /// [`INLINE_MAX`] bytes) as HTTP/1.1 in a pooled buffer. The connection core's
    /// common path asks so, keeping the response (~160 bytes) where the site returned
    /// it rather than moving it out of a pair.
    fn wire(&mut self, now: Instant, resp: &mut Response) -> Vec<u8> {
        let mut wire = self.take();
        if !matches!(resp.body, Body::Pending | Body::Receive(_)) {
            head::write_http1_out_at(&mut wire, &self.out, &mut self.date, now);
            if let Some(bytes) = inline_body(&resp.body) {
                wire.extend_from_slice(bytes);
                resp.body_len = bytes.len() as u64;
                resp.body = Body::InHead;
            }
        }
        wire
    }

    /// An empty buffer (pooled capacity when there is one).
    pub fn take(&mut self) -> Vec<u8> {
        let mut b = self
            .free
            .pop()
            .or_else(|| self.filled.pop())
            .unwrap_or_default();
        b.clear();
        b
    }

    /// A buffer whose length is kept from its last use (stale bytes, already
    /// initialised), so a read buffer doesn't pay zeroing on every request. Never
    /// more than [`RBUF_INITIAL`] bytes: a write buffer that grew (a head with a
    /// small body) is cut back before it is lent for reading.
    pub fn take_filled(&mut self) -> Vec<u8> {
        match self.filled.pop() {
            Some(b) => b,
            None => {
                let mut b = self.free.pop().unwrap_or_default();
                fit_read(&mut b);
                b
            }
        }
    }

    /// Returns a buffer to the pool (large or surplus ones are freed).
    pub fn give(&mut self, b: Vec<u8>) {
        if self.keeps(&b) {
            self.free.push(b);
        }
    }

    /// Returns a read buffer to the pool, its length kept for [`Buffers::take_filled`]
    /// (one grown past [`RBUF_INITIAL`], for a body read by copy or a large head, is
    /// cut back to it: the next read is most likely a head's).
    pub fn give_filled(&mut self, mut b: Vec<u8>) {
        if self.keeps(&b) {
            fit_read(&mut b);
            self.filled.push(b);
        }
    }

    fn keeps(&self, b: &Vec<u8>) -> bool {
        b.capacity() > 0 && b.capacity() <= POOLED_MAX && self.spare() < self.max
    }

    /// Spare buffers held.
    pub fn spare(&self) -> usize {
        self.free.len() + self.filled.len()
    }
}

/// Cuts a buffer lent for reading back to [`RBUF_INITIAL`] bytes of capacity.
fn fit_read(b: &mut Vec<u8>) {
    if b.capacity() > RBUF_INITIAL {
        b.truncate(RBUF_INITIAL);
        b.shrink_to(RBUF_INITIAL);
    }
}

/// The settings a connection runs under (the server fills them in from its
/// configuration, again on each reload).
#[derive(Clone, Copy, Debug)]
pub struct ConnConfig {
    /// A request head must arrive within this time (→ 408).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub idle_timeout: Duration,
    /// A response that makes no progress for this long is dropped.
    pub send_timeout: Duration,
    /// Request head limits.
    pub limits: Limits,
    /// Largest request body read and thrown away (→ 413 beyond).
    pub max_body_discard: u64,
    /// An accepted request body (an upload) that brings no byte for this long is
    /// dropped, and with it the connection.
    pub body_timeout: Duration,
    /// Most body bytes per second (none: as fast as it goes).
    pub limit_rate: Option<u64>,
}

/// Which request fields a finished response carries ([`Done`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// None (no access log).
    Nothing,
    /// The request line.
    Line,
    /// The request line, Referer and User-Agent.
    LineAndHeaders,
}

/// A response that ended (finished, cut short or abandoned): what a log line and the
/// counters need.
#[derive(Debug)]
pub struct Done<'a> {
    /// The client.
    pub peer: SocketAddr,
    /// What kind of request it answered.
    pub method: MethodClass,
    /// Status sent.
    pub status: u16,
    /// Body bytes sent.
    pub body_sent: u64,
    /// Request body bytes received into an upload's file (`None`: the request's
    /// body, if any, went to no sink).
    pub body_received: Option<u64>,
    /// The body was all in memory (in the head buffer).
    pub in_memory: bool,
    /// From the parsed head to the end.
    pub took: Duration,
    /// Request line, Referer, User-Agent (empty unless [`Observer::keep`] asked).
    pub line: &'a str,
    /// Referer.
    pub referer: &'a str,
    /// User-Agent.
    pub user_agent: &'a str,
}

/// The kinds of request the counters tell apart; `as usize` indexes them in this
/// order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MethodClass {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
    /// PUT.
    Put,
    /// Any other method.
    Other,
    /// A request that never parsed.
    Invalid,
}

/// What the core tells its worker: every response that ends, and the events the
/// counters count. The core keeps no counters and writes no log itself.
pub trait Observer {
    /// Which request fields to keep for [`Observer::done`].
    fn keep(&self) -> Keep;
    /// A response ended.
    fn done(&mut self, d: &Done<'_>);
    /// `n` body bytes of a held file left from memory.
    fn body_from_memory(&mut self, n: u64);
    /// A body's file ended early (it shrank mid-send).
    fn truncated(&mut self);
    /// A body's file lease is being broken.
    fn lease_broken(&mut self);
}

/// What a call into the core can see of its worker.
pub struct Env<'a, O> {
    /// The time of this loop turn.
    pub now: Instant,
    /// The connection settings.
    pub config: &'a ConnConfig,
    /// The server is shutting down: every response closes its connection.
    pub shutting_down: bool,
    /// Spare buffers.
    pub bufs: &'a mut Buffers,
    /// Told of every response that ends, and of what the counters count.
    pub events: O,
}

impl<O> std::fmt::Debug for Env<'_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("now", &self.now)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

/// What the driver should do next for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Read from the socket into [`Conn::read_buf`], then [`Conn::on_read`].
    Read,
    /// A request head may be complete: call [`Conn::answer`] (which parses it and,
    /// when it is whole, asks the caller for the response plan).
    Request,
    /// An archive member's turn has come: open [`Conn::member_to_open`], then
    /// [`Conn::on_member`].
    OpenMember,
    /// Write [`Conn::write_buf`] (`more`: body bytes follow at once, so MSG_MORE), then
    /// [`Conn::on_written`].
    Write {
        /// More of this response follows immediately.
        more: bool,
    },
    /// Write the request-body bytes that arrived with the head ([`Conn::body_buffered`])
    /// to the sink's file, then [`Conn::on_body_stored`] (or [`Conn::on_body_failed`]).
    StoreBody,
    /// Move up to `len` request-body bytes from the socket to the sink's file
    /// ([`Conn::body_file`]), then [`Conn::on_body_received`] (0: the peer closed),
    /// or [`Conn::on_body_failed`].
    ReceiveBody {
        /// Body bytes still to come.
        len: u64,
    },
    /// The whole body is in the sink: call [`Conn::publish`].
    Publish,
    /// Try to take a read lease on [`Conn::file`], then [`Conn::on_lease`].
    Lease,
    /// Send up to `len` bytes of [`Conn::file`] from `offset` through an engine, then
    /// [`Conn::on_file_sent`]. With `leased`, check first whether the lease is being
    /// broken ([`Conn::on_lease_breaking`]). `by_reference`: the bytes may leave as
    /// page references (sendfile, splice); otherwise they must be copied at send time.
    SendFile {
        /// File offset.
        offset: u64,
        /// Bytes left in this piece.
        len: u64,
        /// The file holds our read lease.
        leased: bool,
        /// Engines that queue page references are allowed.
        by_reference: bool,
    },
    /// Read the socket's send-queue length (SIOCOUTQ), then [`Conn::on_send_queue`].
    CheckSendQueue,
    /// Shut down the write side (the core has moved on to reading until EOF).
    ShutdownWrite,
    /// Close the socket (`reset`: discard unsent bytes with an RST).
    Close {
        /// Abort instead of a graceful close.
        reset: bool,
    },
    /// Nothing to do until an event or [`Conn::deadline`].
    Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lease {
    /// Not wanted for this body (small, shared with the file cache).
    No,
    /// Wanted, not asked for yet.
    Wanted,
    /// Held.
    Held,
    /// The kernel refused it.
    Refused,
}

/// A response in progress.
#[derive(Debug)]
struct Respond {
    /// Head (and in-memory body) bytes; `out[pos..]` still to write.
    out: Vec<u8>,
    pos: usize,
    body: Option<FileBody>,
    /// Current piece, and bytes of it already sent.
    piece: usize,
    off: u64,
    lease: Lease,
    /// Some body bytes left as page references.
    by_reference: bool,
    /// Rate limit, if any.
    pace: Option<Pace>,
    /// The archive member being sent, opened.
    member: Option<(usize, Arc<File>)>,
    close_after: bool,
    send_deadline: Instant,
    status: u16,
    body_sent: u64,
    /// What the log and the counters say of the request.
    meta: Meta,
}

/// What is kept of a request for the access log and the counters.
#[derive(Debug, Default)]
struct Meta {
    /// As [`Done::method`].
    method: MethodClass,
    /// When its head was parsed.
    started: Option<Instant>,
    /// Body bytes stored in the sink, once it has one.
    received: Option<u64>,
    /// Request line, referer and user agent: kept only when the log shows them, in a
    /// box of their own, so a request no log shows moves and drops one word for
    /// them (three strings were 72 bytes, moved twice and dropped on every request).
    logged: Option<Box<Logged>>,
}

/// What the access log shows of a request besides its method ([`Meta::logged`]).
#[derive(Debug, Default)]
struct Logged {
    line: String,
    referer: String,
    user_agent: String,
}

impl Meta {
    /// Inlined in its one caller: as a call it was ~30 instructions a request, half
    /// of them its saved registers and the copy out of its result.
    #[inline(always)]
    fn of(req: &Request<'_>, raw: &[u8], env: &Env<'_, impl Observer>) -> Meta {
        let method = match req.method {
            Method::Get => MethodClass::Get,
            Method::Head => MethodClass::Head,
            Method::Other if req.method_name == "OPTIONS" => MethodClass::Options,
            Method::Other if req.method_name == "PUT" => MethodClass::Put,
            Method::Other => MethodClass::Other,
        };
        let mut m = Meta {
            method,
            started: Some(env.now),
            ..Meta::default()
        };
        let keep = env.events.keep();
        if keep != Keep::Nothing {
            let mut l = Logged {
                line: request_line(raw),
                ..Logged::default()
            };
            if keep == Keep::LineAndHeaders {
                l.referer = req.referer.unwrap_or("").to_owned();
                l.user_agent = req.user_agent.unwrap_or("").to_owned();
            }
            m.logged = Some(Box::new(l));
        }
        m
    }

    /// What a log line and the metrics get of the exchange this request began,
    /// ended at `now` with `status` after `body_sent` body bytes (`in_memory`: the
    /// body was all in the head buffer).
    fn done(
        &self,
        peer: SocketAddr,
        now: Instant,
        status: u16,
        body_sent: u64,
        in_memory: bool,
    ) -> Done<'_> {
        let (line, referer, user_agent) = match &self.logged {
            Some(l) => (&l.line[..], &l.referer[..], &l.user_agent[..]),
            None => ("", "", ""),
        };
        Done {
            peer,
            method: self.method,
            status,
            body_sent,
            body_received: self.received,
            in_memory,
            took: took(self.started, now),
            line,
            referer,
            user_agent,
        }
    }

    /// A request that never parsed.
    fn invalid(env: &Env<'_, impl Observer>) -> Meta {
        Meta {
            method: MethodClass::Invalid,
            started: Some(env.now),
            ..Meta::default()
        }
    }
}

/// A request body being received into a sink.
#[derive(Debug)]
struct Receive {
    sink: Box<dyn Sink>,
    /// Body bytes still to come.
    left: u64,
    /// Bytes of [`CONTINUE`] written (all of it when none is owed).
    cont: usize,
    /// Close after the answer (the request asked for it).
    close: bool,
    received: u64,
    meta: Meta,
    /// A chunked body: where its framing is (`left` is then what is left of the
    /// chunk being stored).
    chunked: Option<Chunk>,
    /// Most body bytes the sink takes (a chunked body beyond it gets 413).
    limit: u64,
}

/// An upload's publish, taken off a connection ([`Conn::take_publish`]) to be run
/// where blocking on the disk does no harm (a thread of a pool).
#[derive(Debug)]
pub struct PublishJob {
    sink: Box<dyn Sink>,
    close: bool,
}

impl PublishJob {
    /// A body received whole into `sink` by another protocol (HTTP/2), to publish
    /// as this core publishes its own.
    pub fn new(sink: Box<dyn Sink>, close: bool) -> PublishJob {
        PublishJob { sink, close }
    }

    /// Publishes the body (fsync, link, rename: blocks on the disk) and returns the
    /// answer and its protocol-neutral head, for [`Conn::on_published`] (or another
    /// protocol's glue).
    pub fn run(self) -> (Response, Out) {
        let mut out = Out::default();
        let mut resp = self.sink.finish(&mut out, self.close);
        resp.close |= self.close;
        (resp, out)
    }
}

/// An upload being published off the loop.
#[derive(Debug)]
struct Publishing {
    /// The driver's name for this publish (the answer must be for it).
    id: u64,
    meta: Meta,
}

/// Where a chunked request body is (RFC 9112 §7.1): decoded from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is due.
    Size,
    /// Chunk data (`Receive::left` bytes to go).
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the empty line.
    Trailer,
}

/// Longest chunk-size or trailer line accepted.
const CHUNK_LINE_MAX: usize = 4096;

/// Where a connection is; each state carries its own data.
#[derive(Debug)]
enum State {
    /// Keep-alive, nothing received of the next request (idle timeout).
    Idle,
    /// Some of a request head received (header timeout).
    Head,
    /// A complete request whose password check runs off the loop: it stays buffered
    /// and is answered again on [`Conn::resume`] (header timeout).
    Checking,
    /// Sending a response.
    Respond(Box<Respond>),
    /// Receiving an accepted request body (body timeout).
    Receive(Box<Receive>),
    /// The whole body is in; its sink is being published off the event loop (fsync,
    /// link, rename): the answer comes with [`Conn::on_published`] (no timeout: the
    /// body is whole, the publish finishes whatever the client does).
    Publishing(Box<Publishing>),
    /// The file is being changed by another process: let queued bytes leave, then close.
    Draining { until: Instant },
    /// Response done, write side to be shut (`shut`: done), reading until EOF.
    Closing { shut: bool },
    /// Finished.
    Closed { reset: bool },
}

impl State {
    /// Owns nothing (no record, sink or job): dropping it does nothing. Every
    /// state is named, so a new one must say which it is.
    fn owns_nothing(&self) -> bool {
        match self {
            State::Idle
            | State::Head
            | State::Checking
            | State::Draining { .. }
            | State::Closing { .. }
            | State::Closed { .. } => true,
            State::Respond(_) | State::Receive(_) | State::Publishing(_) => false,
        }
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Conn {
    peer: SocketAddr,
    /// The peer gets its own copy once it ACKs (a route through real hardware): body
    /// bytes may leave by reference under a lease.
    may_reference: bool,
    state: State,
    /// Read buffer: unparsed bytes are `rbuf[rpos..rend]`; empty (no capacity) when idle.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Request body bytes still to read and throw away.
    discard: u64,
    deadline: Instant,
    /// A leased file whose last bytes went out by reference and may still be queued:
    /// kept open (lease and all) until the send queue is empty.
    held: Option<Arc<File>>,
    /// When to look at the send queue next (while `held` or draining).
    queue_check: Instant,
    /// The idle timeout passed: look at the send queue to see whether the client is
    /// still reading the last response.
    idle_check_due: bool,
    /// The send queue's length at the previous such look in this idle spell.
    idle_queue: Option<u32>,
    /// What the listener speaks (set on each request).
    via: ListenKind,
    /// The peer's route is this host's loopback path ([`Request::loopback_peer`]).
    loopback_peer: bool,
    /// The buffered bytes were parsed and are not a whole head yet: read more before
    /// offering them again.
    partial: bool,
}

/// How long a request took by the loop's clock, from `started` (its head parsed)
/// to `now`. One that ends in the turn its head was parsed in (a small response's
/// usual case) took no time by that clock, and none is worked out (Instant
/// arithmetic was ~80 instructions).
fn took(started: Option<Instant>, now: Instant) -> Duration {
    match started {
        Some(t) if t != now => now.saturating_duration_since(t),
        _ => Duration::ZERO,
    }
}

impl Conn {
    /// A connection just accepted from `peer`; `may_reference` says whether body bytes
    /// may leave as page references (see [`Intent::SendFile`]).
    pub fn new(peer: SocketAddr, may_reference: bool, env: &Env<'_, impl Observer>) -> Conn {
        Conn {
            peer,
            may_reference,
            state: State::Head,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            discard: 0,
            deadline: env.now + env.config.header_timeout,
            held: None,
            queue_check: env.now,
            idle_check_due: false,
            idle_queue: None,
            via: ListenKind::Http,
            loopback_peer: false,
            partial: false,
        }
    }

    /// Marks a connection accepted on an HTTPS or redirecting listener.
    pub fn set_via(&mut self, via: ListenKind) {
        self.via = via;
    }

    /// Marks a connection whose peer's route is this host's loopback path (a
    /// loopback address or one of this host's own addresses; told to the site in
    /// [`Request::loopback_peer`]).
    pub fn set_loopback_peer(&mut self, yes: bool) {
        self.loopback_peer = yes;
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// When this connection next needs [`Conn::on_timer`] without an event.
    pub fn deadline(&self) -> Instant {
        let mut d = self.deadline;
        if self.held.is_some() || matches!(self.state, State::Draining { .. }) {
            d = d.min(self.queue_check);
        }
        d
    }

    /// Idle between requests (nothing received, nothing to send): safe to close at
    /// shutdown, and the first to shed under pressure.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle) && self.rend == self.rpos && self.discard == 0
    }

    /// Still receiving a request head (a candidate for shedding after idle ones).
    pub fn is_reading_head(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// The connection is over (timed out, failed or done): [`Conn::next`] says
    /// close, and nothing more of a response is to be sent.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// A file body is being sent (the driver keeps its engine state meanwhile).
    pub fn in_file_body(&self) -> bool {
        matches!(&self.state, State::Respond(r) if r.body.is_some())
    }

    /// Bytes of buffer this connection holds now (for the idle-memory figure).
    pub fn buffered(&self) -> usize {
        self.rbuf.capacity()
            + match &self.state {
                State::Respond(r) => r.out.capacity(),
                _ => 0,
            }
    }

    /// What to do next.
    ///
    /// Inlined in the drivers' loops: a request takes about four calls, each with
    /// its saved registers and its answer matched again by the caller (~65
    /// instructions a request by callgrind).
    #[inline(always)]
    pub fn next(&mut self, env: &mut Env<'_, impl Observer>) -> Intent {
        if self.idle_check_due {
            return Intent::CheckSendQueue;
        }
        if self.held.is_some() && env.now >= self.queue_check {
            self.queue_check = env.now + QUEUE_CHECK;
            return Intent::CheckSendQueue;
        }
        loop {
            match &mut self.state {
                State::Idle | State::Head => {
                    if let Some(intent) = self.read_head(env) {
                        return intent;
                    }
                }
                State::Respond(r) => {
                    if r.pos < r.out.len() {
                        return Intent::Write {
                            more: r.body.is_some(),
                        };
                    }
                    if !r.out.is_empty() {
                        env.bufs.give(std::mem::take(&mut r.out));
                        r.pos = 0;
                    }
                    let Some(body) = &r.body else {
                        self.finish_response(env);
                        continue;
                    };
                    if r.lease == Lease::Wanted {
                        return Intent::Lease;
                    }
                    match body.pieces.get(r.piece).copied() {
                        None => self.finish_response(env),
                        Some(Piece::Mem(..)) => {
                            let last = r.piece + 1 == body.pieces.len();
                            return Intent::Write { more: !last };
                        }
                        Some(Piece::Member { index, .. })
                            if r.member.as_ref().is_none_or(|(i, _)| *i != index) =>
                        {
                            // Its turn: the caller opens it (and checks it is still
                            // the file the archive announced).
                            return Intent::OpenMember;
                        }
                        Some(Piece::File { start: _, len } | Piece::Member { len, .. }) => {
                            let start = match body.pieces[r.piece] {
                                Piece::File { start, .. } => start,
                                _ => 0,
                            };
                            let mut left = len - r.off;
                            if let Some(pace) = r.pace {
                                match pace.allowance(env.now, r.body_sent, left) {
                                    Ok(n) => left = left.min(n),
                                    Err(due) => {
                                        // Our own wait is no stall of the client's.
                                        r.send_deadline =
                                            r.send_deadline.max(due + env.config.send_timeout);
                                        self.deadline = due;
                                        return Intent::Wait;
                                    }
                                }
                            }
                            let leased = r.lease == Lease::Held;
                            if leased {
                                // If the socket is full, come back soon to see whether
                                // the lease is being broken.
                                self.deadline = r.send_deadline.min(env.now + LEASE_CHECK);
                            }
                            return Intent::SendFile {
                                offset: start + r.off,
                                len: left,
                                leased,
                                // A body that can't change (sealed snapshot,
                                // read-only file system: no lease) or is trusted
                                // not to (under its tripwire lease, unless that
                                // was refused) is lent to every peer.
                                by_reference: (leased && self.may_reference)
                                    || (body.lendable && r.lease != Lease::Refused),
                            };
                        }
                    }
                }
                State::Receive(r) => {
                    if r.cont < CONTINUE.len() {
                        return Intent::Write { more: false };
                    }
                    if r.chunked.is_some() {
                        match self.chunk_step(env) {
                            Ok(Some(intent)) => return intent,
                            Ok(None) => continue,
                            Err(e) => {
                                self.refuse_body(env, e);
                                continue;
                            }
                        }
                    }
                    if r.left == 0 {
                        return Intent::Publish;
                    }
                    if self.rend > self.rpos {
                        return Intent::StoreBody;
                    }
                    return Intent::ReceiveBody { len: r.left };
                }
                State::Checking | State::Publishing(_) => return Intent::Wait,
                State::Draining { .. } => {
                    if env.now >= self.queue_check {
                        self.queue_check = env.now + QUEUE_CHECK;
                        return Intent::CheckSendQueue;
                    }
                    return Intent::Wait;
                }
                State::Closing { shut } => {
                    if !*shut {
                        *shut = true;
                        return Intent::ShutdownWrite;
                    }
                    return Intent::Read;
                }
                State::Closed { reset } => {
                    if !*reset && self.held.is_some() {
                        // Pages of a leased file may still be queued: close gracefully
                        // only if they have left, else discard them with a reset.
                        return Intent::CheckSendQueue;
                    }
                    return Intent::Close { reset: *reset };
                }
            }
        }
    }

    // ---- reading -------------------------------------------------------------

    /// Offers what is buffered as a request, or asks for more bytes; `None` when the
    /// state changed (call again). Inlined in [`Conn::next`], its one caller: left
    /// out of line once `next` was inlined, it was ~110 instructions a request.
    #[inline(always)]
    fn read_head(&mut self, env: &mut Env<'_, impl Observer>) -> Option<Intent> {
        self.skip_body();
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.discard == 0 && self.rend > self.rpos && !self.partial {
            return Some(Intent::Request);
        }
        // Need more bytes: make room, or refuse a head that can't fit. A buffer is
        // taken from the pool (for none, or a small copy of unparsed bytes) only when
        // bytes are there to read ([`Conn::read_buf`]).
        let cap = env.config.limits.max_header_bytes + 1024;
        if self.rbuf.capacity() >= RBUF_INITIAL && self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            } else if self.rbuf.len() < cap || self.discard > 0 {
                let n = (self.rbuf.len() * 2).clamp(RBUF_INITIAL, cap.max(RBUF_INITIAL));
                self.ensure_rbuf(env, n);
            }
            if self.rend == self.rbuf.len() {
                self.respond_error(env, http_error(431, "request header fields too large"));
                return None;
            }
        }
        Some(Intent::Read)
    }

    /// Answers [`Intent::Request`]: parses the buffered head once and, when it is
    /// whole, asks `site` for the response (`site(request, close, out)`: the head and
    /// any in-memory body go to `out`; `close`: the connection closes after it
    /// whatever the request asked). A head that is not whole yet waits for more bytes;
    /// one that is malformed or too large is answered here with its error status. A
    /// [`Response::pending`] answer keeps the request until [`Conn::resume`].
    pub fn answer(
        &mut self,
        env: &mut Env<'_, impl Observer>,
        site: impl FnOnce(&Request<'_>, bool, &mut Out) -> Response,
    ) {
        if !matches!(self.state, State::Idle | State::Head)
            || self.discard > 0
            || self.rend == self.rpos
        {
            return;
        }
        let limits = env.config.limits;
        // Parsed where it lies: the request is not moved out of a result.
        let mut parsed = Request::blank();
        // The read buffer's bytes past what was read (stale, initialised) may pad
        // the head's UTF-8 check to whole blocks.
        let buffered = self.rend - self.rpos;
        let (rbuf, known) = (&self.rbuf[self.rpos..], &mut env.bufs.known_host);
        match request::parse_into(rbuf, buffered, &limits, known, &mut parsed) {
            Ok(Some(used)) => {
                let req = &mut parsed;
                req.via = self.via;
                req.loopback_peer = self.loopback_peer;
                let meta = Meta::of(req, &self.rbuf[self.rpos..self.rpos + used], env);
                let body_len = req.body_len;
                // An upload's body may be larger than what is read and thrown away:
                // the site says whether it takes it.
                let put = req.method == Method::Other && req.method_name == "PUT";
                let too_big = body_len > env.config.max_body_discard;
                if too_big && !put {
                    let head_only = req.method == Method::Head;
                    self.rpos = self.rend;
                    let e = http_error(413, "request body too large");
                    let (resp, out) = env
                        .bufs
                        .answer(env.now, |o| Response::error(o, e, head_only));
                    self.start_response(env, resp, out, meta);
                    return;
                }
                // A client that sent `Expect: 100-continue` may hold its body back
                // until a 100 that never comes, or drop it on seeing our final
                // status: what follows the head is then not surely body bytes, so
                // this response closes the connection (RFC 9110 §10.1.1).
                // A body too large to throw away is never read: the answer closes.
                let close = env.shutting_down || (req.expect_continue && body_len > 0) || too_big;
                let keep_alive = req.keep_alive;
                let expect_continue = req.expect_continue;
                let chunked = req.body == request::BodyFraming::Chunked;
                env.bufs.out.clear();
                let mut resp = site(req, close, &mut env.bufs.out);
                let out = env.bufs.wire(env.now, &mut resp);
                if matches!(resp.body, Body::Pending) {
                    env.bufs.give(out);
                    self.state = State::Checking;
                    self.deadline = env.now + env.config.header_timeout;
                    return;
                }
                self.rpos += used;
                if let Body::Receive(sink) = resp.body {
                    // The site takes the body: receive it, then let the sink answer.
                    env.bufs.give(out);
                    let buffered = (self.rend - self.rpos) as u64;
                    let limit = sink.limit();
                    let mut meta = meta;
                    meta.received = Some(0);
                    self.state = State::Receive(Box::new(Receive {
                        sink,
                        left: body_len,
                        chunked: chunked.then_some(Chunk::Size),
                        limit,
                        // A client that sent its body with the head needs no 100.
                        cont: if expect_continue && buffered == 0 && (body_len > 0 || chunked) {
                            0
                        } else {
                            CONTINUE.len()
                        },
                        close: !keep_alive,
                        received: 0,
                        meta,
                    }));
                    self.deadline = env.now + env.config.body_timeout;
                    return;
                }
                if too_big {
                    self.rpos = self.rend;
                } else {
                    self.discard = body_len;
                    self.skip_body();
                }
                self.start_response(env, resp, out, meta);
            }
            Ok(None) => self.partial = true,
            Err(e) => self.respond_error(env, e),
        }
    }

    /// Throws away buffered request-body bytes still owed.
    fn skip_body(&mut self) {
        if self.discard > 0 {
            let take = self.discard.min((self.rend - self.rpos) as u64) as usize;
            self.rpos += take;
            self.discard -= take as u64;
        }
    }

    /// Makes the read buffer at least `len` bytes long: from the pool when the
    /// connection holds none or only a small copy of unparsed bytes
    /// ([`Conn::keep_unparsed`]), those bytes then at its start.
    fn ensure_rbuf(&mut self, env: &mut Env<'_, impl Observer>, len: usize) {
        if self.rbuf.capacity() < RBUF_INITIAL {
            let mut b = env.bufs.take_filled();
            let held = self.rend - self.rpos;
            if held > 0 {
                if b.len() < held.max(len) {
                    b.resize(held.max(len), 0);
                }
                b[..held].copy_from_slice(&self.rbuf[self.rpos..self.rend]);
            }
            self.rbuf = b;
            self.rpos = 0;
            self.rend = held;
        }
        if self.rbuf.len() < len {
            self.rbuf.resize(len, 0);
        }
    }

    /// Lends the read buffer back when it holds nothing unparsed (one smaller than a
    /// pooled read buffer, a leftover's, is freed).
    fn release_rbuf(&mut self, env: &mut Env<'_, impl Observer>) {
        if self.rpos == self.rend && self.rbuf.capacity() > 0 {
            let b = std::mem::take(&mut self.rbuf);
            if b.capacity() >= RBUF_INITIAL {
                env.bufs.give_filled(b);
            }
            self.rpos = 0;
            self.rend = 0;
        }
    }

    /// A response starts while bytes of the next request (pipelined) wait in the
    /// read buffer: a small leftover moves to a buffer of its own size and the
    /// pooled one goes back at once, so a connection whose response takes a while
    /// (a slow reader, an io_uring send in flight) holds tens of bytes, not 4 KiB.
    /// Once moved it stays where it is (later leftovers are not copied again).
    fn keep_leftover(&mut self, env: &mut Env<'_, impl Observer>) {
        if self.rend - self.rpos <= LEFTOVER_MAX {
            self.keep_unparsed(env);
        }
    }

    /// Moves the unparsed bytes to a buffer of their own size and gives the pooled
    /// read buffer back (nothing when they fill a pooled buffer, or are a copy
    /// already). The next read takes a pooled buffer again, the bytes in front
    /// ([`Conn::ensure_rbuf`]).
    fn keep_unparsed(&mut self, env: &mut Env<'_, impl Observer>) {
        let left = self.rend - self.rpos;
        if left >= RBUF_INITIAL || self.rbuf.capacity() < RBUF_INITIAL {
            return;
        }
        let rest = self.rbuf[self.rpos..self.rend].to_vec();
        env.bufs
            .give_filled(std::mem::replace(&mut self.rbuf, rest));
        self.rpos = 0;
        self.rend = left;
    }

    /// Where the next read goes (after [`Intent::Read`]); taken from the pool when the
    /// connection held no buffer.
    #[inline(always)]
    pub fn read_buf(&mut self, env: &mut Env<'_, impl Observer>) -> &mut [u8] {
        if self.rbuf.len() < RBUF_INITIAL {
            // None, or a small copy of unparsed bytes (reads are never that small).
            self.ensure_rbuf(env, RBUF_INITIAL);
        }
        if matches!(self.state, State::Receive(_)) && self.rpos == self.rend {
            // A body read by copy (TLS, io_uring): larger reads, same pooled buffer.
            self.rpos = 0;
            self.rend = 0;
            self.ensure_rbuf(env, POOLED_MAX);
        }
        &mut self.rbuf[self.rend..]
    }

    /// The read found nothing (EAGAIN): an empty buffer goes back to the pool, so a
    /// connection waiting for bytes holds none; one waiting with part of a head
    /// (a slowloris client's, a head split across packets) holds a copy of its bytes.
    pub fn on_read_blocked(&mut self, env: &mut Env<'_, impl Observer>) {
        if self.discard == 0 {
            if self.partial {
                self.keep_unparsed(env);
            } else {
                self.release_rbuf(env);
            }
        }
    }

    /// `n` bytes were read into [`Conn::read_buf`]; 0 means the peer closed.
    #[inline(always)]
    pub fn on_read(&mut self, env: &mut Env<'_, impl Observer>, n: usize) {
        if n == 0 {
            // An upload cut short is logged with what arrived of it.
            self.end_receive(env, 400);
            self.state = State::Closed { reset: false };
            return;
        }
        match self.state {
            State::Closing { .. } => {
                self.rpos = 0;
                self.rend = 0;
            }
            State::Idle => {
                self.partial = false;
                self.rend += n;
                if self.discard == 0 || self.rend - self.rpos > self.discard as usize {
                    // First bytes of a new request on a kept-alive connection.
                    self.set_state(State::Head);
                    self.deadline = env.now + env.config.header_timeout;
                }
            }
            State::Receive(_) => {
                // Bytes of a body read by copy (chunked, TLS, io_uring).
                self.rend += n;
                self.deadline = env.now + env.config.body_timeout;
            }
            _ => {
                self.partial = false;
                self.rend += n;
            }
        }
    }

    /// Reading failed (reset by peer, ...).
    pub fn on_read_failed(&mut self, env: &mut Env<'_, impl Observer>) {
        self.end_receive(env, 400);
        self.state = State::Closed { reset: false };
    }

    // ---- responding ----------------------------------------------------------

    /// Answers a request that could not be parsed (all of `rbuf[rpos..rend]`, which
    /// is dropped). The answer to a HEAD has no body, and the log gets what arrived
    /// of the request line.
    fn respond_error(&mut self, env: &mut Env<'_, impl Observer>, e: HttpError) {
        let raw = &self.rbuf[self.rpos..self.rend];
        // Leading empty lines are ignored before a request line (RFC 9112 §2.2).
        let skip = raw.chunks(2).take_while(|c| *c == b"\r\n").count() * 2;
        let raw = &raw[skip..];
        let head_only = raw.starts_with(b"HEAD ");
        let mut meta = Meta::invalid(env);
        if env.events.keep() != Keep::Nothing {
            meta.logged = Some(Box::new(Logged {
                line: partial_request_line(raw),
                ..Logged::default()
            }));
        }
        self.rpos = self.rend;
        let (resp, out) = env
            .bufs
            .answer(env.now, |o| Response::error(o, e, head_only));
        self.start_response(env, resp, out, meta);
    }

    fn start_response(
        &mut self,
        env: &mut Env<'_, impl Observer>,
        resp: Response,
        out: Vec<u8>,
        meta: Meta,
    ) {
        let send_deadline = env.now + env.config.send_timeout;
        self.deadline = send_deadline;
        // Small files are shared with the worker's file cache and leave in one
        // step: no lease (it would belong to the shared open file).
        let (lease, in_head) = match &resp.body {
            Body::File(fb) if fb.lease => (Lease::Wanted, 0),
            Body::File(_) => (Lease::No, 0),
            Body::InHead | Body::Pending | Body::Receive(_) => (Lease::No, resp.body_len),
        };
        if self.rpos == self.rend {
            self.release_rbuf(env);
        } else {
            self.keep_leftover(env);
        }
        let pace = env.config.limit_rate.map(|rate| Pace::new(rate, env.now));
        let record = match env.bufs.responds.pop() {
            // A spare record, filled in where it lies (every field: the pattern
            // names them all, so a new one can't be left over from the last use).
            Some(mut b) => {
                let Respond {
                    out: r_out,
                    pos: r_pos,
                    body: r_body,
                    piece: r_piece,
                    off: r_off,
                    lease: r_lease,
                    by_reference: r_by_reference,
                    pace: r_pace,
                    member: r_member,
                    close_after: r_close_after,
                    send_deadline: r_send_deadline,
                    status: r_status,
                    body_sent: r_body_sent,
                    meta: r_meta,
                } = &mut *b;
                *r_out = out;
                *r_pos = 0;
                // Moved straight from the response into the record (a body in
                // the head: None).
                *r_body = match resp.body {
                    Body::File(fb) => Some(fb),
                    _ => None,
                };
                *r_piece = 0;
                *r_off = 0;
                *r_lease = lease;
                *r_by_reference = false;
                *r_pace = pace;
                *r_member = None;
                *r_close_after = resp.close;
                *r_send_deadline = send_deadline;
                *r_status = resp.status;
                *r_body_sent = in_head;
                *r_meta = meta;
                b
            }
            None => Box::new(Respond {
                out,
                pos: 0,
                body: match resp.body {
                    Body::File(fb) => Some(fb),
                    _ => None,
                },
                piece: 0,
                off: 0,
                lease,
                by_reference: false,
                pace,
                member: None,
                close_after: resp.close,
                send_deadline,
                status: resp.status,
                body_sent: in_head,
                meta,
            }),
        };
        self.set_state(State::Respond(record));
    }

    /// Moves to `next`. A state's drop glue is a call even for one that owns nothing
    /// (idle, reading a head, the placeholder [`Conn::end_response`] leaves), and
    /// these moves are made on every request: it is skipped for those. Any state may
    /// be left this way: one that owns something is dropped as usual.
    #[inline]
    fn set_state(&mut self, next: State) {
        let old = std::mem::replace(&mut self.state, next);
        if old.owns_nothing() {
            std::mem::forget(old);
        }
    }

    fn respond_mut(&mut self) -> Option<&mut Respond> {
        match &mut self.state {
            State::Respond(r) => Some(r),
            _ => None,
        }
    }

    /// The bytes to write (after [`Intent::Write`]).
    #[inline(always)]
    pub fn write_buf(&self) -> &[u8] {
        if let State::Receive(r) = &self.state {
            return &CONTINUE[r.cont.min(CONTINUE.len())..];
        }
        let State::Respond(r) = &self.state else {
            return &[];
        };
        if r.pos < r.out.len() {
            return &r.out[r.pos..];
        }
        match r.body.as_ref().map(|b| (b, b.pieces.get(r.piece))) {
            Some((b, Some(&Piece::Mem(start, end)))) => &b.mem[start + r.off as usize..end],
            _ => &[],
        }
    }

    /// [`Conn::write_buf`] and, while it is the head and the body's next piece is in
    /// memory, that piece too, so both can leave in one gather write (reported with
    /// one [`Conn::on_written`] of their total). `more`: whether bytes follow at once
    /// when all of both are written.
    #[inline(always)]
    pub fn write_bufs(&self, more: bool) -> ([&[u8]; 2], bool) {
        let first = self.write_buf();
        let State::Respond(r) = &self.state else {
            return ([first, &[]], more);
        };
        if r.pos >= r.out.len() || r.lease == Lease::Wanted {
            return ([first, &[]], more);
        }
        match r.body.as_ref().map(|b| (b, b.pieces.get(r.piece))) {
            Some((b, Some(&Piece::Mem(start, end)))) => {
                let last = r.piece + 1 == b.pieces.len();
                ([first, &b.mem[start + r.off as usize..end]], !last)
            }
            _ => ([first, &[]], more),
        }
    }

    /// When [`Conn::write_buf`] is a held file's bytes (not the head): those bytes
    /// and the range still to write, so a driver can send them without a copy of its
    /// own (reporting with [`Conn::on_written`] as for `write_buf`).
    pub fn write_held(&self) -> Option<(&Arc<[u8]>, std::ops::Range<usize>)> {
        let State::Respond(r) = &self.state else {
            return None;
        };
        if r.pos < r.out.len() {
            return None;
        }
        match r.body.as_ref().map(|b| (&b.mem, b.pieces.get(r.piece))) {
            Some((BodyMem::Held(bytes), Some(&Piece::Mem(start, end)))) => {
                Some((bytes, start + r.off as usize..end))
            }
            _ => None,
        }
    }

    /// A response whose body is one whole piece of a file that can't change (a sealed
    /// snapshot or a read-only file: lendable, no lease), sent without pacing, before
    /// any of its body left: the head bytes still to write (all of the head, or none
    /// once it is written), the file and the piece's range. A driver may send head
    /// and body together its own way, reporting the head's bytes with
    /// [`Conn::on_written`] and the body's with [`Conn::on_file_sent`].
    pub fn lendable_whole(&self) -> Option<(&[u8], &Arc<File>, u64, u64)> {
        let State::Respond(r) = &self.state else {
            return None;
        };
        let body = r.body.as_ref()?;
        if !body.lendable
            || r.lease != Lease::No
            || r.pace.is_some()
            || r.piece != 0
            || r.off != 0
            || body.pieces.len() != 1
            || (r.pos != 0 && r.pos != r.out.len())
        {
            return None;
        }
        match body.pieces[0] {
            Piece::File { start, len } if len > 0 => {
                Some((&r.out[r.pos..], &body.file, start, len))
            }
            _ => None,
        }
    }

    /// `n` bytes of [`Conn::write_buf`] were written.
    ///
    /// This and the other steps a driver takes once or twice a request
    /// ([`Conn::read_buf`], [`Conn::on_read`], [`Conn::write_bufs`]) are inlined in
    /// its loop, as [`Conn::next`] is: ~70 instructions a request of calls.
    #[inline(always)]
    pub fn on_written(&mut self, env: &mut Env<'_, impl Observer>, n: usize) {
        let now = env.now;
        let timeout = env.config.send_timeout;
        if let State::Receive(r) = &mut self.state {
            r.cont += n;
            if n > 0 {
                self.deadline = now + env.config.body_timeout;
            }
            return;
        }
        let Some(r) = self.respond_mut() else {
            return;
        };
        if n > 0 {
            r.send_deadline = now + timeout;
        }
        let mut n = n;
        if r.pos < r.out.len() {
            let head = n.min(r.out.len() - r.pos);
            r.pos += head;
            n -= head;
        }
        if n > 0
            && let Some(b) = &r.body
            && let Some(&Piece::Mem(start, end)) = b.pieces.get(r.piece)
        {
            r.off += n as u64;
            r.body_sent += n as u64;
            if matches!(b.mem, BodyMem::Held(_)) {
                // A held file's bytes: from memory, copied at send time.
                env.events.body_from_memory(n as u64);
            }
            if r.off as usize == end - start {
                r.piece += 1;
                r.off = 0;
            }
        }
        let d = r.send_deadline;
        self.deadline = d;
    }

    /// The file whose bytes [`Intent::Lease`] and [`Intent::SendFile`] are about.
    pub fn file(&self) -> Option<&Arc<File>> {
        let State::Respond(r) = &self.state else {
            return None;
        };
        let body = r.body.as_ref()?;
        match body.pieces.get(r.piece) {
            Some(Piece::Member { index, .. }) => r
                .member
                .as_ref()
                .filter(|(i, _)| i == index)
                .map(|(_, f)| f),
            _ => Some(&body.file),
        }
    }

    /// The outcome of [`Intent::Lease`].
    pub fn on_lease(&mut self, held: bool) {
        if let Some(r) = self.respond_mut() {
            r.lease = if held { Lease::Held } else { Lease::Refused };
        }
    }

    /// `n` file bytes left (`by_reference`: as page references). `n == 0` means the
    /// file ended early: it shrank since its length was taken, so the response can't
    /// be completed and the connection closes after the bytes that exist.
    pub fn on_file_sent(&mut self, env: &mut Env<'_, impl Observer>, n: usize, by_reference: bool) {
        let now = env.now;
        let timeout = env.config.send_timeout;
        let peer = self.peer;
        let Some(r) = self.respond_mut() else {
            return;
        };
        if n == 0 {
            tracing::debug!(%peer, "file shrank mid-send; closing");
            env.events.truncated();
            self.abort_response(env);
            return;
        }
        r.off += n as u64;
        r.body_sent += n as u64;
        r.by_reference |= by_reference;
        r.send_deadline = now + timeout;
        if let Some(b) = &r.body
            && let Some(&(Piece::File { len, .. } | Piece::Member { len, .. })) =
                b.pieces.get(r.piece)
            && r.off == len
        {
            r.piece += 1;
            r.off = 0;
        }
        self.deadline = r.send_deadline;
    }

    /// Sending failed (peer gone, ...): log and close.
    pub fn on_send_failed(&mut self, env: &mut Env<'_, impl Observer>) {
        tracing::debug!(peer = %self.peer, "send failed; closing");
        self.end_response(env);
        self.state = State::Closed { reset: false };
    }

    /// The body's file is about to be changed by another process: send nothing more.
    /// Bytes that left as page references must leave before the file is let go (or
    /// be discarded with a reset if they don't in time); copies may stay queued, so
    /// then the file goes at once and the connection closes gracefully.
    pub fn on_lease_breaking(&mut self, env: &mut Env<'_, impl Observer>) {
        if self
            .respond_mut()
            .and_then(|r| r.body.as_ref())
            .is_some_and(|b| b.lendable)
        {
            // Only a file trusted not to change (never a sealed snapshot) is both
            // lent and leased: the trust was wrong.
            tracing::error!(
                peer = %self.peer,
                "a file trusted not to change (immutable rule or attribute) is being modified; closing"
            );
        } else {
            tracing::debug!(peer = %self.peer, "file is being modified; stopping");
        }
        env.events.lease_broken();
        let by_reference = self.end_response(env).is_some_and(|r| r.by_reference);
        if by_reference {
            self.state = State::Draining {
                until: env.now + DRAIN,
            };
            self.queue_check = env.now;
            self.deadline = env.now + DRAIN;
        } else {
            self.state = State::Closing { shut: false };
            self.deadline = env.now + LINGER;
        }
    }

    /// The socket's send queue holds `len` bytes (after [`Intent::CheckSendQueue`]).
    pub fn on_send_queue(&mut self, env: &mut Env<'_, impl Observer>, len: usize) {
        if std::mem::take(&mut self.idle_check_due) && matches!(self.state, State::Idle) {
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            match (len, self.idle_queue) {
                // Nothing queued for a whole idle period, or a reader that stopped.
                (0, None | Some(0)) => self.state = State::Closed { reset: false },
                (_, Some(last)) if len != 0 && len >= last => {
                    self.state = State::Closed { reset: false };
                }
                // Just taken: the idle period starts now.
                (0, Some(_)) => {
                    self.idle_queue = Some(0);
                    self.deadline = env.now + env.config.idle_timeout;
                }
                // Still reading: look again soon.
                _ => {
                    self.idle_queue = Some(len);
                    self.deadline = env.now + IDLE_RECHECK.min(env.config.idle_timeout);
                }
            }
            return;
        }
        if let State::Draining { until } = self.state {
            if len == 0 {
                self.state = State::Closed { reset: false };
            } else if env.now >= until {
                self.state = State::Closed { reset: true };
            }
            return;
        }
        if let State::Closed { reset } = &mut self.state {
            *reset |= len > 0;
            self.held = None;
        } else if len == 0 {
            self.held = None;
        }
    }

    /// Logs the response and drops its body; the caller sets the next state.
    /// Inlined where it is called (six places; [`Conn::finish_response`], on every
    /// request, is the one that counts: ~20 instructions).
    #[inline(always)]
    fn end_response(&mut self, env: &mut Env<'_, impl Observer>) -> Option<Box<Respond>> {
        let old = std::mem::replace(&mut self.state, State::Closing { shut: false });
        let State::Respond(mut r) = old else {
            self.state = old;
            return None;
        };
        let done = r
            .meta
            .done(self.peer, env.now, r.status, r.body_sent, r.body.is_none());
        env.events.done(&done);
        if !r.out.is_empty() || r.out.capacity() > 0 {
            env.bufs.give(std::mem::take(&mut r.out));
        }
        Some(r)
    }

    /// The body can't be completed (its file shrank or changed): log, then close
    /// after the bytes that went out, so the client sees a short body, never a
    /// complete-looking wrong one.
    fn abort_response(&mut self, env: &mut Env<'_, impl Observer>) {
        self.end_response(env);
        self.state = State::Closing { shut: false };
        self.deadline = env.now + LINGER;
    }

    fn finish_response(&mut self, env: &mut Env<'_, impl Observer>) {
        let Some(mut r) = self.end_response(env) else {
            return;
        };
        if let Some(body) = r.body.take()
            && r.lease == Lease::Held
            && r.by_reference
        {
            // Its last pages may still be queued: keep the file, and so its lease,
            // until the send queue is empty.
            self.held = Some(body.file);
            self.queue_check = env.now;
        }
        let close_after = r.close_after;
        env.bufs.give_respond(r);
        if close_after || (env.shutting_down && self.rend == self.rpos) {
            self.state = State::Closing { shut: false };
            self.deadline = env.now + LINGER;
            return;
        }
        if self.rend > self.rpos {
            self.set_state(State::Head);
            self.deadline = env.now + env.config.header_timeout;
        } else {
            self.release_rbuf(env);
            self.set_state(State::Idle);
            self.idle_queue = None;
            self.deadline = env.now + env.config.idle_timeout;
        }
    }

    // ---- time ----------------------------------------------------------------

    /// Called when [`Conn::deadline`] has passed; follow with [`Conn::next`].
    pub fn on_timer(&mut self, env: &mut Env<'_, impl Observer>) {
        let now = env.now;
        if now < self.deadline {
            // Only a send-queue check is due; `next` asks for it.
            return;
        }
        match &mut self.state {
            State::Head if self.rend > self.rpos => {
                self.discard = 0;
                self.respond_error(env, http_error(408, "request head not received in time"));
            }
            State::Idle => {
                // Idle counts from when the client has taken the last response, not
                // from when we finished writing it: a slow reader may still have
                // megabytes queued. Look at the send queue first.
                self.idle_check_due = true;
            }
            State::Checking => {
                self.rpos = self.rend;
                self.discard = 0;
                self.respond_error(env, http_error(503, "password check not done in time"));
            }
            State::Head | State::Closing { .. } => {
                self.state = State::Closed { reset: false };
            }
            State::Respond(r) => {
                if now >= r.send_deadline {
                    tracing::debug!(peer = %self.peer, "send timeout");
                    self.end_response(env);
                    self.state = State::Closed { reset: false };
                } else {
                    // A leased send blocked on a full socket re-checks its lease.
                    self.deadline = r.send_deadline.min(now + LEASE_CHECK);
                }
            }
            State::Receive(_) => {
                tracing::debug!(peer = %self.peer, "request body stalled; dropping it");
                self.end_receive(env, 408);
            }
            State::Publishing(_) => {
                // A publish takes what the disk takes: wait on.
                self.deadline = now + env.config.body_timeout;
            }
            State::Draining { .. } => {}
            State::Closed { .. } => {}
        }
    }

    // ---- receiving a request body ----------------------------------------------

    /// One step through a chunked body's framing: what to do next (`None`: ask
    /// again), or why the framing is refused.
    fn chunk_step(
        &mut self,
        env: &mut Env<'_, impl Observer>,
    ) -> Result<Option<Intent>, HttpError> {
        let State::Receive(r) = &mut self.state else {
            return Ok(None);
        };
        let buf = &self.rbuf[self.rpos..self.rend];
        let line = |buf: &[u8]| -> Result<Option<usize>, HttpError> {
            match buf.windows(2).position(|w| w == b"\r\n") {
                Some(i) => Ok(Some(i)),
                None if buf.len() > CHUNK_LINE_MAX => Err(http_error(400, "chunk line too long")),
                None => Ok(None),
            }
        };
        let step = match r.chunked {
            Some(Chunk::Size) => match line(buf)? {
                Some(i) => {
                    let text = std::str::from_utf8(&buf[..i]).unwrap_or("");
                    let hex = text
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim_end_matches([' ', '\t']);
                    if hex.is_empty()
                        || hex.len() > 15
                        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(http_error(400, "invalid chunk size"));
                    }
                    let n = u64::from_str_radix(hex, 16).unwrap_or(u64::MAX);
                    if r.received.saturating_add(n) > r.limit {
                        return Err(http_error(413, "upload too large"));
                    }
                    self.rpos += i + 2;
                    r.left = n;
                    r.chunked = Some(if n == 0 { Chunk::Trailer } else { Chunk::Data });
                    None
                }
                None => Some(Intent::Read),
            },
            Some(Chunk::Data) if r.left == 0 => {
                r.chunked = Some(Chunk::DataEnd);
                None
            }
            Some(Chunk::Data) if buf.is_empty() => Some(Intent::Read),
            Some(Chunk::Data) => Some(Intent::StoreBody),
            Some(Chunk::DataEnd) if buf.len() < 2 => Some(Intent::Read),
            Some(Chunk::DataEnd) if buf.starts_with(b"\r\n") => {
                self.rpos += 2;
                r.chunked = Some(Chunk::Size);
                None
            }
            Some(Chunk::DataEnd) => return Err(http_error(400, "chunk data longer than its size")),
            Some(Chunk::Trailer) => match line(buf)? {
                // The empty line ends the body: publish.
                Some(0) => {
                    self.rpos += 2;
                    r.chunked = None;
                    r.left = 0;
                    Some(Intent::Publish)
                }
                // Trailer fields are read and ignored (counted against the limit,
                // so they can't go on for ever).
                Some(i) => {
                    self.rpos += i + 2;
                    r.received += i as u64 + 2;
                    if r.received > r.limit {
                        return Err(http_error(413, "upload too large"));
                    }
                    None
                }
                None => Some(Intent::Read),
            },
            None => None,
        };
        if step == Some(Intent::Read) {
            // Keep what is buffered (a part of a line) at the start of the buffer.
            if self.rpos > 0 && self.rpos < self.rend {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            } else if self.rpos == self.rend {
                self.rpos = 0;
                self.rend = 0;
            }
            if self.rbuf.len() < POOLED_MAX {
                self.ensure_rbuf(env, POOLED_MAX);
            }
        }
        Ok(step)
    }

    /// A body refused mid-way (bad chunk framing, too large): nothing is
    /// published; the error is answered and the connection closes.
    fn refuse_body(&mut self, env: &mut Env<'_, impl Observer>, e: HttpError) {
        let old = std::mem::replace(&mut self.state, State::Closing { shut: false });
        let State::Receive(r) = old else {
            self.state = old;
            return;
        };
        drop(r.sink);
        self.rpos = self.rend;
        let (resp, out) = env.bufs.answer(env.now, |o| Response::error(o, e, false));
        self.start_response(env, resp, out, r.meta);
    }

    /// The body bytes that arrived with the head (after [`Intent::StoreBody`]), and
    /// the file they go to.
    pub fn body_buffered(&self) -> Option<(&File, &[u8])> {
        let State::Receive(r) = &self.state else {
            return None;
        };
        let n = r.left.min((self.rend - self.rpos) as u64) as usize;
        Some((r.sink.file(), &self.rbuf[self.rpos..self.rpos + n]))
    }

    /// Body bytes still to come from the socket (those that came with the head
    /// not counted); 0 unless a body is being received.
    pub fn body_to_come(&self) -> u64 {
        match &self.state {
            State::Receive(r) => r.left.saturating_sub((self.rend - self.rpos) as u64),
            _ => 0,
        }
    }

    /// The file the body goes to (after [`Intent::ReceiveBody`]).
    pub fn body_file(&self) -> Option<&File> {
        match &self.state {
            State::Receive(r) => Some(r.sink.file()),
            _ => None,
        }
    }

    /// `n` bytes of [`Conn::body_buffered`] were written to the file.
    pub fn on_body_stored(&mut self, env: &mut Env<'_, impl Observer>, n: usize) {
        if let State::Receive(r) = &mut self.state {
            self.rpos += n;
            r.left -= n as u64;
            r.received += n as u64;
            r.sink.received(n as u64);
            r.meta.received = Some(r.meta.received.unwrap_or(0) + n as u64);
            self.deadline = env.now + env.config.body_timeout;
            if self.rpos == self.rend {
                self.release_rbuf(env);
            }
        }
    }

    /// `n` body bytes moved from the socket to the file; 0: the peer closed before
    /// the whole body came (the sink is dropped, nothing is published).
    pub fn on_body_received(&mut self, env: &mut Env<'_, impl Observer>, n: usize) {
        let State::Receive(r) = &mut self.state else {
            return;
        };
        if n == 0 {
            tracing::debug!(peer = %self.peer, "client closed mid-body; upload dropped");
            self.end_receive(env, 400);
            return;
        }
        r.left = r.left.saturating_sub(n as u64);
        r.received += n as u64;
        r.sink.received(n as u64);
        r.meta.received = Some(r.meta.received.unwrap_or(0) + n as u64);
        self.deadline = env.now + env.config.body_timeout;
    }

    /// Receiving or storing the body failed: `err` from the file (a full disk) gets
    /// the sink's answer, then the connection closes; `None` (the socket failed)
    /// closes at once. Nothing is published either way.
    pub fn on_body_failed(
        &mut self,
        env: &mut Env<'_, impl Observer>,
        err: Option<&std::io::Error>,
    ) {
        let Some(err) = err else {
            self.end_receive(env, 400);
            return;
        };
        let old = std::mem::replace(&mut self.state, State::Closing { shut: false });
        let State::Receive(r) = old else {
            self.state = old;
            return;
        };
        let Receive { sink, meta, .. } = *r;
        let (mut resp, out) = env.bufs.answer(env.now, |o| sink.failed(err, o));
        resp.close = true;
        // The rest of the body is never read.
        self.rpos = self.rend;
        self.start_response(env, resp, out, meta);
    }

    /// The whole body is in the sink (after [`Intent::Publish`]): the sink publishes
    /// it and answers, here and now (a driver that publishes off its loop uses
    /// [`Conn::take_publish`] and [`Conn::on_published`] instead).
    pub fn publish(&mut self, env: &mut Env<'_, impl Observer>) {
        let Some(job) = self.take_publish(env, 0) else {
            return;
        };
        let (resp, out) = job.run();
        self.on_published(env, 0, resp, out);
    }

    /// The whole body is in the sink (after [`Intent::Publish`]): hands the sink
    /// over, to be published elsewhere (fsync, link and rename block on the disk).
    /// The connection waits ([`Intent::Wait`]) until [`Conn::on_published`] brings
    /// the answer of the publish named `id`.
    pub fn take_publish(
        &mut self,
        env: &mut Env<'_, impl Observer>,
        id: u64,
    ) -> Option<PublishJob> {
        if !matches!(&self.state, State::Receive(r) if r.left == 0 && r.chunked.is_none()) {
            return None;
        }
        let State::Receive(r) = std::mem::replace(
            &mut self.state,
            State::Publishing(Box::new(Publishing {
                id,
                meta: Meta::default(),
            })),
        ) else {
            return None;
        };
        let r = *r;
        if let State::Publishing(p) = &mut self.state {
            p.meta = r.meta;
        }
        self.deadline = env.now + env.config.body_timeout;
        Some(PublishJob {
            sink: r.sink,
            close: r.close || env.shutting_down,
        })
    }

    /// The publish named `id` answered with `resp` (its head in `out`, from
    /// [`PublishJob::run`]): the answer is sent. An answer for a publish this
    /// connection is not waiting for is dropped.
    pub fn on_published(
        &mut self,
        env: &mut Env<'_, impl Observer>,
        id: u64,
        mut resp: Response,
        out: Out,
    ) {
        if !matches!(&self.state, State::Publishing(p) if p.id == id) {
            return;
        }
        let State::Publishing(p) =
            std::mem::replace(&mut self.state, State::Closing { shut: false })
        else {
            return;
        };
        resp.close |= env.shutting_down;
        let mut wire = env.bufs.take();
        head::write_http1_out(&mut wire, &out);
        self.start_response(env, resp, wire, p.meta);
    }

    /// Gives up on a body being received (the sink is dropped: nothing is
    /// published); logs `status` and closes.
    fn end_receive(&mut self, env: &mut Env<'_, impl Observer>, status: u16) {
        let old = std::mem::replace(&mut self.state, State::Closed { reset: false });
        if let State::Receive(r) = old {
            env.events
                .done(&r.meta.done(self.peer, env.now, status, 0, true));
        }
    }

    /// The archive member to open after [`Intent::OpenMember`]: the directory it lies
    /// beneath and the member as the archive announced it.
    pub fn member_to_open(&self) -> Option<(&File, &Member)> {
        let State::Respond(r) = &self.state else {
            return None;
        };
        let body = r.body.as_ref()?;
        match body.pieces.get(r.piece)? {
            Piece::Member { index, .. } => Some((&body.file, body.members.get(*index)?)),
            _ => None,
        }
    }

    /// The member of [`Conn::member_to_open`], opened; `None` when it is gone or no
    /// longer the file the archive announced (the response is cut short).
    pub fn on_member(&mut self, env: &mut Env<'_, impl Observer>, file: Option<File>) {
        let State::Respond(r) = &mut self.state else {
            return;
        };
        let index = match r.body.as_ref().and_then(|b| b.pieces.get(r.piece)) {
            Some(Piece::Member { index, .. }) => *index,
            _ => return,
        };
        match file {
            Some(f) => r.member = Some((index, Arc::new(f))),
            None => self.abort_response(env),
        }
    }

    /// The password check its request waited for is done: the request is answered
    /// at the next [`Conn::next`] (nothing happens for a connection not waiting).
    pub fn resume(&mut self) {
        if matches!(self.state, State::Checking) {
            self.state = State::Head;
        }
    }

    /// The driver closes the connection for a reason of its own (a TLS error, the
    /// peer gone while ciphertext waited, the end of the shutdown grace): a response
    /// in progress is logged and counted as it stands.
    pub fn on_dropped(&mut self, env: &mut Env<'_, impl Observer>) {
        if matches!(self.state, State::Receive(_)) {
            self.end_receive(env, 400);
        }
        if matches!(self.state, State::Publishing(_)) {
            // The body is whole: its publish goes on; the answer has nobody to go to.
            self.state = State::Closed { reset: false };
        }
        if matches!(self.state, State::Respond(_)) {
            self.end_response(env);
            self.state = State::Closed { reset: false };
        }
    }

    /// Closes at once (shutdown of an idle connection, shedding).
    pub fn close(&mut self) {
        self.state = State::Closed { reset: false };
    }
}

const fn http_error(status: u16, reason: &'static str) -> HttpError {
    HttpError { status, reason }
}

/// The request line of a head, with anything unprintable replaced (for the log).
fn request_line(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == b'\r').unwrap_or(0);
    printable(&raw[..end])
}

/// Most bytes of a refused request line the log keeps.
const LOGGED_LINE_MAX: usize = 256;

/// What arrived of the request line of a head that was refused: up to its end (CR
/// or LF) or [`LOGGED_LINE_MAX`] bytes, unprintable bytes replaced; `...` marks a
/// cut.
fn partial_request_line(raw: &[u8]) -> String {
    let end = raw
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(raw.len());
    let mut line = printable(&raw[..end.min(LOGGED_LINE_MAX)]);
    if end > LOGGED_LINE_MAX {
        line.push_str("...");
    }
    line
}

fn printable(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
