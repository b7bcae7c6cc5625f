//! One client connection: an explicit state machine driven by readiness events.
//!
//! ```text
//! ReadingHead ─parse─▶ SendingHead ─▶ SendingBody ─▶ (keep-alive) ReadingHead
//!      │                                   │  lease broken ─▶ Draining ─▶ closed
//!      └─ error / close ─────────────────▶ Closing (shutdown(WR), read to EOF) ─▶ closed
//! ```
//!
//! Hot path per small keep-alive request: one `read`, one `openat2` + `fstat`, one
//! `pread` and one `write` (head and body together). A large body: the head with
//! `MSG_MORE`, then the engine (sendfile, splice, ...) a chunk per loop turn.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use zcopy::transfer::Forced;
use zcopy::{EngineKind, Plan, Src, Transfer};

use crate::handler::{self, Body, FileBody, Piece, Site};
use crate::request::{self, HttpError, Parsed};
use crate::server::AccessLogger;

/// Bodies up to this size are read into memory and leave with the head in one write.
pub const SMALL_BODY: u64 = 16 * 1024;
/// Most body bytes one connection sends per loop turn before others get a go.
pub const TURN_BUDGET: usize = 512 * 1024;
/// First size of a connection's read buffer.
const RBUF_INITIAL: usize = 4096;
/// How long a closing connection reads and discards what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How long queued bytes may take to leave after a lease break before we reset.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a waiting send re-checks its file's lease.
const LEASE_CHECK: Duration = Duration::from_millis(200);
/// How often a lingering file's send queue is looked at.
const LINGER_CHECK: Duration = Duration::from_millis(20);
/// Transfers kept for reuse per worker.
const POOL: usize = 64;

/// What a worker shares with all its connections.
#[derive(Debug)]
pub struct Ctx {
    /// The site served.
    pub site: std::sync::Arc<Site>,
    /// Access log, if enabled.
    pub log: Option<std::sync::Arc<AccessLogger>>,
    /// Scratch buffer for response heads (and small bodies).
    pub out: Vec<u8>,
    /// The engine plan for file → TCP socket.
    pub plan: Plan,
    /// The plan for loopback peers: with `auto`, engines that copy at send time
    /// (see [`loopback_plan`]).
    pub plan_loopback: Plan,
    /// Forced engine failures (`ZCOPY_DISABLE`).
    pub forced: Forced,
    /// Small files kept open.
    pub cache: crate::cache::FileCache,
    /// Transfers ready for reuse (index 1: loopback plan).
    pub pool: [Vec<Transfer>; 2],
    /// The time of this loop turn.
    pub now: Instant,
    /// The server is shutting down: every response closes its connection.
    pub shutting_down: bool,
}

impl Ctx {
    fn transfer(&mut self, loopback: bool) -> Transfer {
        let plan = if loopback {
            &self.plan_loopback
        } else {
            &self.plan
        };
        self.pool[loopback as usize]
            .pop()
            .unwrap_or_else(|| Transfer::with_forced(plan.clone(), self.forced.clone()))
    }

    fn give_back(&mut self, t: Transfer, loopback: bool) {
        let pool = &mut self.pool[loopback as usize];
        if pool.len() < POOL {
            pool.push(t);
        }
    }
}

/// The plan for clients on this machine: engines that copy at send time (mmap, then
/// read-write). Over loopback the peer's receive queue holds references to our
/// page-cache pages until the client reads them, so with sendfile/splice a file
/// truncated mid-page afterwards would hand the client zeros that no lease or SIOCOUTQ
/// wait can prevent. An explicit engine is still honoured, first; its fallbacks are
/// the copying engines.
pub fn loopback_plan(pref: zcopy::Preference) -> Plan {
    use zcopy::EngineKind::{Mmap, ReadWrite};
    match pref {
        zcopy::Preference::Auto => Plan::only(&[Mmap, ReadWrite]),
        zcopy::Preference::Prefer(k) => {
            let mut engines = vec![k];
            engines.extend([Mmap, ReadWrite].into_iter().filter(|&e| e != k));
            Plan::only(&engines)
        }
    }
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for (the rest of) a request head.
    ReadingHead,
    /// Writing the response head (and any in-memory body).
    SendingHead,
    /// Sending the body from the file.
    SendingBody,
    /// The file is being changed by another process: let queued bytes leave, then close.
    Draining,
    /// Response sent, write side shut: reading what the client still sends until EOF.
    Closing,
}

/// What the worker should do with a connection after driving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to do until the next readiness event or deadline.
    Wait,
    /// More work is ready now (turn budget used up): drive again next turn.
    Yield,
    /// Close and forget it.
    Close,
}

#[derive(Debug)]
struct Sending {
    body: FileBody,
    piece: usize,
    /// Bytes of the current piece already sent.
    off: u64,
    transfer: Option<Transfer>,
    leased: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The client is on this machine (see [`loopback_plan`]).
    loopback: bool,
    state: State,
    readable: bool,
    /// The client has shut down its side: read until EOF, whatever the read size.
    read_closed: bool,
    writable: bool,
    /// Read buffer: unparsed bytes are `rbuf[rpos..rend]`.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Request body bytes still to read and throw away.
    discard: u64,
    /// Head bytes still to write (only when the socket was full).
    wbuf: Vec<u8>,
    wpos: usize,
    sending: Option<Sending>,
    /// A leased file whose last bytes went out by reference (sendfile, splice, uring)
    /// and may still sit in the send queue: kept open, lease and all, until the
    /// queue is empty, so the file can't change under pages not yet on the wire.
    lingering: Option<Arc<File>>,
    /// When to look at the send queue again while `lingering`.
    linger_next: Instant,
    close_after: bool,
    /// When the current state times out.
    deadline: Instant,
    /// When a stalled send is dropped (SendingBody with a lease re-checks earlier).
    send_deadline: Instant,
    /// The head being read was started (bytes arrived) rather than idle keep-alive.
    fresh: bool,
    // For the access log.
    line: String,
    status: u16,
    body_sent: u64,
}

impl Conn {
    /// A connection just accepted.
    pub fn new(stream: TcpStream, peer: SocketAddr, ctx: &Ctx) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            peer,
            loopback: is_loopback(peer),
            state: State::ReadingHead,
            readable: true,
            read_closed: false,
            writable: true,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            discard: 0,
            wbuf: Vec::new(),
            wpos: 0,
            sending: None,
            lingering: None,
            linger_next: ctx.now,
            close_after: false,
            deadline: ctx.now + ctx.site.config.header_timeout,
            send_deadline: ctx.now,
            fresh: true,
            line: String::new(),
            status: 0,
            body_sent: 0,
        }
    }

    /// The socket, to register with the poller.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When this connection next needs attention without an event.
    pub fn deadline(&self) -> Instant {
        if self.lingering.is_some() {
            self.deadline.min(self.linger_next)
        } else {
            self.deadline
        }
    }

    /// Idle between requests (nothing received, nothing to send): safe to close at shutdown.
    pub fn is_idle(&self) -> bool {
        self.state == State::ReadingHead && self.rend == self.rpos && self.discard == 0
    }

    /// Records a readiness event.
    pub fn ready(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.readable |= readable;
        self.read_closed |= read_closed;
        self.writable |= writable;
    }

    /// Does all the work possible now, up to the turn budget.
    pub fn drive(&mut self, ctx: &mut Ctx) -> Progress {
        self.check_lingering();
        let mut budget = TURN_BUDGET;
        loop {
            let step = match self.state {
                State::ReadingHead => self.read_head(ctx),
                State::SendingHead => self.send_head(ctx),
                State::SendingBody => self.send_body(ctx, &mut budget),
                State::Draining => return self.drain(ctx),
                State::Closing => self.linger(),
            };
            match step {
                Step::Again => {}
                Step::Done(p) => return p,
            }
        }
    }

    /// The deadline passed (the worker checks `deadline() <= now` first).
    pub fn timeout(&mut self, ctx: &mut Ctx) -> Progress {
        if self.lingering.is_some() && ctx.now < self.deadline {
            // Only the lingering file's check is due.
            self.check_lingering();
            self.linger_next = ctx.now + LINGER_CHECK;
            return Progress::Wait;
        }
        match self.state {
            State::ReadingHead if self.rend > self.rpos => {
                self.rpos = self.rend;
                self.discard = 0;
                let e = HttpError {
                    status: 408,
                    reason: "request head not received in time",
                };
                self.line.clear();
                self.respond_error(ctx, e);
                self.drive(ctx)
            }
            State::ReadingHead | State::Closing => Progress::Close,
            State::SendingHead => Progress::Close,
            State::SendingBody => {
                if ctx.now >= self.send_deadline {
                    tracing::debug!(peer = %self.peer, "send timeout");
                    return Progress::Close;
                }
                self.deadline = self.send_deadline.min(ctx.now + LEASE_CHECK);
                self.drive(ctx)
            }
            State::Draining => self.drain(ctx),
        }
    }

    // ---- reading -------------------------------------------------------------

    fn read_head(&mut self, ctx: &mut Ctx) -> Step {
        // Throw away the rest of a request body first.
        if self.discard > 0 {
            let take = self.discard.min((self.rend - self.rpos) as u64) as usize;
            self.rpos += take;
            self.discard -= take as u64;
        }
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.discard == 0 && self.rend > self.rpos {
            let limits = ctx.site.config.limits;
            match request::parse(&self.rbuf[self.rpos..self.rend], &limits) {
                Ok(Parsed::Complete(req, used)) => {
                    if ctx.log.is_some() {
                        let raw = &self.rbuf[self.rpos..self.rpos + used];
                        let end = raw.iter().position(|&b| b == b'\r').unwrap_or(0);
                        self.line.clear();
                        self.line.extend(raw[..end].iter().map(|&b| {
                            if b.is_ascii_graphic() || b == b' ' {
                                b as char
                            } else {
                                '?'
                            }
                        }));
                    }
                    let body_len = req.body_len;
                    if body_len > ctx.site.config.max_body_discard {
                        let e = HttpError {
                            status: 413,
                            reason: "request body too large",
                        };
                        self.rpos = self.rend;
                        self.respond_error(ctx, e);
                        return Step::Again;
                    }
                    let close = ctx.shutting_down;
                    let resp = handler::handle(
                        &ctx.site,
                        &req,
                        close,
                        &mut ctx.out,
                        &mut ctx.cache,
                        ctx.now,
                    );
                    self.rpos += used;
                    self.discard = body_len;
                    if self.discard > 0 {
                        let take = self.discard.min((self.rend - self.rpos) as u64) as usize;
                        self.rpos += take;
                        self.discard -= take as u64;
                    }
                    self.start_response(ctx, resp);
                    return Step::Again;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => {
                    self.line.clear();
                    self.rpos = self.rend;
                    self.respond_error(ctx, e);
                    return Step::Again;
                }
            }
        }
        // Need more bytes.
        if !self.readable {
            return Step::Done(Progress::Wait);
        }
        let cap = ctx.site.config.limits.max_header_bytes + 1024;
        if self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            } else if self.rbuf.len() < cap || self.discard > 0 {
                let n = (self.rbuf.len() * 2).clamp(RBUF_INITIAL, cap.max(RBUF_INITIAL));
                self.rbuf.resize(n, 0);
            }
            if self.rend == self.rbuf.len() {
                let e = HttpError {
                    status: 431,
                    reason: "request header fields too large",
                };
                self.rpos = self.rend;
                self.respond_error(ctx, e);
                return Step::Again;
            }
        }
        let was_empty = self.rend == self.rpos && self.discard == 0;
        let room = self.rbuf.len() - self.rend;
        match (&self.stream).read(&mut self.rbuf[self.rend..]) {
            Ok(0) => Step::Done(Progress::Close),
            Ok(n) => {
                self.rend += n;
                // A short read emptied the socket: with edge-triggered readiness the
                // next bytes bring a new event, so skip the read that would say EAGAIN.
                if n < room && !self.read_closed {
                    self.readable = false;
                }
                if was_empty && !self.fresh {
                    // First bytes of a new request on a kept-alive connection.
                    self.fresh = true;
                    self.deadline = ctx.now + ctx.site.config.header_timeout;
                }
                Step::Again
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Step::Done(Progress::Wait)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Again,
            Err(_) => Step::Done(Progress::Close),
        }
    }

    // ---- responding ----------------------------------------------------------

    fn respond_error(&mut self, ctx: &mut Ctx, e: HttpError) {
        let resp = handler::error_response(&mut ctx.out, e, false);
        self.start_response(ctx, resp);
    }

    fn start_response(&mut self, ctx: &mut Ctx, resp: handler::Response) {
        self.status = resp.status;
        self.close_after = resp.close;
        self.body_sent = 0;
        self.send_deadline = ctx.now + ctx.site.config.send_timeout;
        self.deadline = self.send_deadline;
        let mut in_head = resp.body_len;
        match resp.body {
            Body::InHead => {}
            Body::File(fb) => {
                let small = match fb.pieces.as_slice() {
                    [Piece::File { start, len }] if *len <= SMALL_BODY => Some((*start, *len)),
                    _ => None,
                };
                if let Some((start, len)) = small {
                    let got = pread_into(&fb.file, start, len as usize, &mut ctx.out);
                    if (got as u64) < len {
                        // The file shrank since the fstat: send what exists, then close.
                        self.close_after = true;
                    }
                    in_head = got as u64;
                } else {
                    in_head = 0;
                    // Small files are shared with the cache and leave in one step:
                    // no lease (it would belong to the shared open file).
                    let leased = fb.file_len > crate::cache::CACHE_MAX
                        && zcopy::sys::lease::take_until_close(&*fb.file)
                            .map_err(|e| tracing::trace!("no read lease: {e}"))
                            .is_ok();
                    self.sending = Some(Sending {
                        body: fb,
                        piece: 0,
                        off: 0,
                        transfer: None,
                        leased,
                    });
                }
            }
        }
        self.body_sent = in_head;
        // Try to write the head right away from the scratch buffer; keep only a rest.
        self.wbuf.clear();
        self.wpos = 0;
        let mut written = 0;
        if self.writable {
            // On error, `writable` stays set: the retry in send_head sees it and closes.
            // A body from the file follows: MSG_MORE lets the head share its first
            // packet (one flag instead of two TCP_CORK setsockopt calls).
            let more = self.sending.is_some();
            if let Ok(n) = send_some(&self.stream, &ctx.out, more) {
                written = n;
            }
        }
        if written < ctx.out.len() {
            self.wbuf.extend_from_slice(&ctx.out[written..]);
        }
        self.state = State::SendingHead;
    }

    fn send_head(&mut self, ctx: &mut Ctx) -> Step {
        while self.wpos < self.wbuf.len() {
            if !self.writable {
                return Step::Done(Progress::Wait);
            }
            match write_some(&self.stream, &self.wbuf[self.wpos..]) {
                Ok(0) => {
                    self.writable = false;
                    return Step::Done(Progress::Wait);
                }
                Ok(n) => {
                    self.wpos += n;
                    self.send_deadline = ctx.now + ctx.site.config.send_timeout;
                    self.deadline = self.send_deadline;
                }
                Err(_) => return Step::Done(Progress::Close),
            }
        }
        if self.wbuf.capacity() > 64 * 1024 {
            self.wbuf = Vec::new();
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.sending.is_some() {
            self.state = State::SendingBody;
            Step::Again
        } else {
            self.finish_response(ctx)
        }
    }

    fn send_body(&mut self, ctx: &mut Ctx, budget: &mut usize) -> Step {
        let Some(s) = self.sending.as_mut() else {
            return self.finish_response(ctx);
        };
        loop {
            let Some(&piece) = s.body.pieces.get(s.piece) else {
                return self.finish_response(ctx);
            };
            if *budget == 0 {
                return Step::Done(Progress::Yield);
            }
            if !self.writable {
                if s.leased {
                    self.deadline = self.send_deadline.min(ctx.now + LEASE_CHECK);
                    if zcopy::sys::lease::breaking(&s.body.file) {
                        return self.begin_drain(ctx);
                    }
                }
                return Step::Done(Progress::Wait);
            }
            let (piece_len, result) = match piece {
                Piece::Mem(a, b) => {
                    let r = write_some(&self.stream, &s.body.mem[a + s.off as usize..b]);
                    ((b - a) as u64, r.map_err(Some))
                }
                Piece::File { start, len } => {
                    if s.leased && zcopy::sys::lease::breaking(&s.body.file) {
                        return self.begin_drain(ctx);
                    }
                    let want = ((len - s.off) as usize).min(*budget);
                    let loopback = self.loopback;
                    let t = s.transfer.get_or_insert_with(|| ctx.transfer(loopback));
                    let src = Src::Fd {
                        fd: s.body.file.as_fd(),
                        offset: Some(start + s.off),
                    };
                    match t.step(src, self.stream.as_fd(), want) {
                        Ok(0) => {
                            tracing::debug!(peer = %self.peer, "file shrank mid-send; closing");
                            return self.abort_short(ctx);
                        }
                        Ok(n) => (len, Ok(n)),
                        Err(e) if e.io_kind() == Some(io::ErrorKind::WouldBlock) => (len, Ok(0)),
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, "send failed: {e}");
                            (len, Err(None))
                        }
                    }
                }
            };
            match result {
                Ok(0) => {
                    self.writable = false;
                }
                Ok(n) => {
                    s.off += n as u64;
                    *budget = budget.saturating_sub(n);
                    self.body_sent += n as u64;
                    self.send_deadline = ctx.now + ctx.site.config.send_timeout;
                    self.deadline = self.send_deadline;
                    if s.off == piece_len {
                        s.piece += 1;
                        s.off = 0;
                    }
                }
                Err(_) => {
                    self.log(ctx);
                    return Step::Done(Progress::Close);
                }
            }
        }
    }

    fn finish_response(&mut self, ctx: &mut Ctx) -> Step {
        self.log(ctx);
        if let Some(s) = self.sending.take()
            && let Some(t) = s.transfer
        {
            tracing::trace!(engine = %t.report().describe(), "body sent");
            let by_reference = matches!(
                t.current(),
                Some(EngineKind::Sendfile | EngineKind::Splice | EngineKind::Uring)
            );
            if s.leased && by_reference {
                self.lingering = Some(s.body.file);
                self.linger_next = ctx.now + LINGER_CHECK;
                self.check_lingering();
            }
            ctx.give_back(t, self.loopback);
        }
        if self.close_after || (ctx.shutting_down && self.rend == self.rpos) {
            return self.begin_close(ctx);
        }
        self.state = State::ReadingHead;
        if self.rend > self.rpos {
            self.fresh = true;
            self.deadline = ctx.now + ctx.site.config.header_timeout;
        } else {
            self.fresh = false;
            self.deadline = ctx.now + ctx.site.config.idle_timeout;
        }
        Step::Again
    }

    /// The file ended before Content-Length: let the bytes that exist go, then close.
    fn abort_short(&mut self, ctx: &mut Ctx) -> Step {
        self.log(ctx);
        self.sending = None;
        self.begin_close(ctx)
    }

    fn begin_close(&mut self, ctx: &mut Ctx) -> Step {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = State::Closing;
        self.deadline = ctx.now + LINGER;
        Step::Again
    }

    fn linger(&mut self) -> Step {
        let mut scratch = [0u8; 4096];
        loop {
            match (&self.stream).read(&mut scratch) {
                Ok(0) => return Step::Done(Progress::Close),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Step::Done(Progress::Wait);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Done(Progress::Close),
            }
        }
    }

    /// Another process wants to change the file we send: send nothing more, and close
    /// once the queued bytes have left (they reference page-cache pages that are
    /// about to change), or reset if they don't leave in time.
    fn begin_drain(&mut self, ctx: &mut Ctx) -> Step {
        tracing::debug!(peer = %self.peer, "file is being modified; stopping");
        self.log(ctx);
        self.state = State::Draining;
        self.send_deadline = ctx.now + DRAIN;
        self.deadline = ctx.now;
        Step::Done(self.drain(ctx))
    }

    fn drain(&mut self, ctx: &mut Ctx) -> Progress {
        let queued = zcopy::sys::sock::send_queue_len(&self.stream).unwrap_or(0);
        if queued == 0 {
            return Progress::Close;
        }
        if ctx.now >= self.send_deadline {
            // Discard what is queued rather than let changed pages go out.
            let _ = rustix::net::sockopt::set_socket_linger(&self.stream, Some(Duration::ZERO));
            return Progress::Close;
        }
        self.deadline = ctx.now + Duration::from_millis(20);
        Progress::Wait
    }

    /// Lets go of a lingering file once the send queue is empty (readiness events as
    /// ACKs arrive bring us back here).
    fn check_lingering(&mut self) {
        if self.lingering.is_some()
            && !matches!(zcopy::sys::sock::send_queue_len(&self.stream), Ok(n) if n > 0)
        {
            self.lingering = None;
        }
    }

    fn log(&mut self, ctx: &Ctx) {
        if let Some(log) = &ctx.log {
            log.log(self.peer.ip(), &self.line, self.status, self.body_sent);
        }
    }
}

/// What one state's step decided.
enum Step {
    /// The state changed or more can be done: loop again.
    Again,
    /// Stop driving for now.
    Done(Progress),
}

/// Whether `peer` is on this machine (127.0.0.0/8, ::1, or v4-mapped loopback).
fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Like [`write_some`], with `MSG_MORE` when more data follows at once.
fn send_some(stream: &TcpStream, buf: &[u8], more: bool) -> io::Result<usize> {
    use rustix::net::SendFlags;
    let flags = if more {
        SendFlags::MORE | SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL
    };
    let mut done = 0;
    while done < buf.len() {
        match rustix::net::send(stream, &buf[done..], flags) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Writes as much as the socket takes; `Ok(0)` when it is full.
fn write_some(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match stream.write(&buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Appends up to `len` bytes of `file` from `start` to `out`; returns how many
/// existed (fewer if the file shrank).
fn pread_into(file: &File, start: u64, len: usize, out: &mut Vec<u8>) -> usize {
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
