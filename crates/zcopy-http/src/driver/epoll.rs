//! The mio (epoll, edge-triggered) driver: one event loop per worker, each with its
//! own `SO_REUSEPORT` listener per address so the kernel spreads new connections, a
//! slab of connections, a run queue (so one busy connection can't starve the others)
//! and coarse timers. A reload may hand a worker a new listener set: it registers
//! the sockets new to it, and accepts from the ones it leaves until they are empty,
//! then closes them. Each connection's protocol lives in [`proto::Conn`]; this file
//! only carries out its intents.
//!
//! Hot path per small keep-alive request: one `read`, one `openat2` + `fstat` (or one
//! `fstat` on a file-cache hit), one `pread` and one `send` (head and body together).
//! A large body: the head with `MSG_MORE`, then the engine (sendfile, splice, ...) a
//! chunk per loop turn, at most [`TURN_BUDGET`] bytes before other connections go.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustix::io::Errno;
use zcopy::Src;
use zcopy::receive::LowWater;

use super::fetch::{self, Fetcher};
use super::h2::{self, H2};
use super::lend::{self, Lending, Rest};
use super::tls::{Step, TlsConn, TlsSite, TlsWorker, Transport};
use super::worker::Env;
use super::worker::{ACCEPT_PAUSE, ConnContext, LoopState, Notices, TICK, WorkerSetup};
use super::{
    Engines, PeerRoute, PooledTransfer, Sheddable, SiteResponder, TURN_BUDGET, classify_peer,
    shed_victim,
};
use crate::config::ListenKind;
use crate::listen::{Listen, MAX_ID};
use crate::proto::{self, Intent};

/// The token of the shutdown waker.
pub const WAKER: Token = Token(usize::MAX);
/// Listener tokens count down from here.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Token of the file cache's change-notice fd (below the listeners').
const CACHE_NOTICES: Token = Token(LISTENER_BASE - MAX_ID as usize);
/// Token of the snapshot store's change-notice fd.
const SNAPSHOT_NOTICES: Token = Token(LISTENER_BASE - MAX_ID as usize - 1);
/// Most connections accepted per listener per loop turn.
const ACCEPT_BATCH: usize = 64;
/// Ranges at most this long are sent without checking that they are cached.
const FETCH_MIN: u64 = 64 * 1024;

/// What the worker should do with a connection after driving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Nothing to do until the next readiness event or deadline.
    Wait,
    /// More work is ready now (turn budget used up): drive again next turn.
    Yield,
    /// Close and forget it.
    Close,
}

/// What a worker shares with all its connections.
struct Shared {
    common: ConnContext,
    engines: Engines,
    /// Reads cold file ranges into the page cache off the loop.
    fetcher: Fetcher,
    /// Handshake slots and buffers of the TLS connections.
    tls: TlsWorker,
    /// Plain connections may speak HTTP/2 with prior knowledge (h2c).
    h2c: bool,
}

impl Shared {
    /// The core's view of the worker, and the engines, fetch thread and TLS state beside it.
    fn parts(
        &mut self,
    ) -> (
        Env<'_>,
        &mut Engines,
        &Fetcher,
        &mut TlsWorker,
        &mut SiteResponder,
    ) {
        let (env, site) = self.common.parts();
        (env, &mut self.engines, &self.fetcher, &mut self.tls, site)
    }
}

/// One client connection: the socket, its readiness, and the protocol core.
struct Connection {
    stream: TcpStream,
    core: proto::Conn,
    readable: bool,
    /// The client has shut down its side: read until EOF, whatever the read size.
    read_closed: bool,
    writable: bool,
    /// The engine state of the body being sent.
    transfer: Option<Box<PooledTransfer>>,
    /// The engine state of a request body being received (socket → file).
    upload: Option<Box<zcopy::Transfer>>,
    /// The socket's receive low-water mark: raised while a body is spliced (fewer,
    /// larger steps), back to 1 before anything else is read.
    low: LowWater,
    /// Accept order within the worker.
    seq: u64,
    /// Where the peer's receive queue lives.
    route: PeerRoute,
    /// Its slot in the worker.
    token: usize,
    /// Waiting for the fetch thread to bring the next range into the page cache.
    fetching: bool,
    /// The rest of a response lent from a template ([`zcopy::lend`]) that the
    /// socket did not take whole, and how many of its bytes are still head bytes:
    /// the next bytes on the wire, sent before anything else.
    lent: Option<(zcopy::lend::Lent, usize)>,
    /// TLS between the socket and the core, if any.
    transport: Transport,
    /// Speaking HTTP/2 (h2c by prior knowledge, or ALPN `h2`): the HTTP/1 core
    /// is left unused.
    h2: Option<Box<H2>>,
    /// Plain listener with HTTP/2 on, what it speaks not known yet: the first bytes
    /// may be the h2c preface. Some(n): n bytes of it read (see [`h2::Sniff::More`]),
    /// put back before the next read's bytes.
    sniff: Option<u8>,
}

impl Connection {
    /// Head and body of a hot snapshot from a template pipe, in one splice
    /// ([`zcopy::lend`]). False when declined (nothing sent: the usual way then).
    fn lend(&mut self, env: &mut Env<'_>, engines: &mut Engines) -> bool {
        let sock = self.stream.as_fd();
        match lend::lend(&mut self.core, env, engines, sock, None) {
            Lending::Declined => false,
            Lending::Sent(rest) => {
                if rest.is_some() {
                    self.writable = false;
                    self.lent = rest;
                }
                true
            }
            Lending::Failed => true,
        }
    }

    /// Sends more of [`Connection::lent`].
    fn send_lent(&mut self, env: &mut Env<'_>, engines: &mut Engines) {
        let Some((lent, head)) = &mut self.lent else {
            return;
        };
        let sock = self.stream.as_fd();
        match lend::send_rest(lent, head, &mut self.core, env, sock, true) {
            Rest::Done => {
                if let Some((lent, _)) = self.lent.take() {
                    engines.lender().give_back(lent);
                }
            }
            Rest::Left => self.writable = false,
            Rest::Failed => self.lent = None,
        }
    }

    fn ready(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.readable |= readable;
        self.read_closed |= read_closed;
        self.writable |= writable;
    }

    /// No request in flight (HTTP/1 between requests, HTTP/2 with no stream).
    fn is_idle(&self) -> bool {
        match &self.h2 {
            Some(h) => h.is_idle(),
            None => self.core.is_idle(),
        }
    }

    /// When the connection next needs attention without an event: the core's
    /// deadline, or the end of its TLS handshake time.
    fn deadline(&self) -> Instant {
        if let Some(h) = &self.h2 {
            return h.deadline();
        }
        match &self.transport {
            Transport::Tls(t) => t
                .deadline()
                .map_or(self.core.deadline(), |d| d.min(self.core.deadline())),
            _ => self.core.deadline(),
        }
    }

    /// [`Intent::Read`] on a TLS connection; `None`: ask the core again.
    fn read_tls(&mut self, env: &mut Env<'_>, tls: &mut TlsWorker) -> Option<Progress> {
        let step = match &mut self.transport {
            Transport::Plain => Step::Again,
            Transport::Tls(t) => tls_io::read(
                t,
                &self.stream,
                &mut self.core,
                env,
                tls,
                (&mut self.readable, &mut self.writable, self.read_closed),
            ),
            Transport::Kernel(k) => k.read(&self.stream, &mut self.core, env, &mut self.readable),
        };
        match step {
            Step::Again => None,
            Step::Wait => Some(Progress::Wait),
            Step::Close => Some(Progress::Close),
            Step::HandOff => match self.transport.hand_off(&self.stream) {
                Ok(()) => None,
                Err(e) => {
                    tracing::debug!(peer = %self.core.peer(), "kTLS hand-off: {e}");
                    Some(Progress::Close)
                }
            },
        }
    }

    /// Drives the HTTP/2 connection.
    fn drive_h2(&mut self, sh: &mut Shared) -> Progress {
        let (mut env, engines, _, tls, site) = sh.parts();
        let paths = h2::Paths::plain(engines);
        let Some(h) = self.h2.as_mut() else {
            return Progress::Close;
        };
        h.set_token(self.token);
        let next = match &mut self.transport {
            Transport::Tls(t) => {
                let mut io = h2::TlsIo {
                    stream: &self.stream,
                    t,
                    w: tls,
                    readable: &mut self.readable,
                    writable: &mut self.writable,
                    read_closed: self.read_closed,
                };
                h.drive(&mut io, &mut env, site)
            }
            _ => {
                let mut io = h2::PlainIo {
                    paths,
                    stream: &self.stream,
                    readable: &mut self.readable,
                    writable: &mut self.writable,
                    read_closed: self.read_closed,
                };
                h.drive(&mut io, &mut env, site)
            }
        };
        match next {
            h2::Next::Wait => Progress::Wait,
            h2::Next::Yield => Progress::Yield,
            h2::Next::Close => Progress::Close,
        }
    }

    /// Does all the work possible now, up to the turn budget.
    fn drive(&mut self, sh: &mut Shared) -> Progress {
        let mut budget = TURN_BUDGET;
        sh.common.serving(self.token, self.core.peer());
        if let Transport::Tls(t) = &mut self.transport
            && tls_io::flush(t, &self.stream, &mut self.writable).is_err()
        {
            return Progress::Close;
        }
        if self.h2.is_some() {
            return self.drive_h2(sh);
        }
        // Taken once for every step of this turn (each step's own was ~10
        // instructions, and a request is about four steps).
        let (mut env, engines, fetcher, tls, site) = sh.parts();
        loop {
            if let Transport::Tls(t) = &self.transport
                && t.alpn_h2()
            {
                let via = ListenKind::Https;
                self.h2 = Some(Box::new(H2::new(self.core.peer(), via, true, &env, &[])));
                return self.drive_h2(sh);
            }
            if !self.core.in_file_body()
                && let Some(t) = self.transfer.take()
            {
                engines.give(t);
            }
            if self.lent.is_some() && self.core.is_closed() {
                // Timed out (or failed) with a lent rest unsent: it is dropped and
                // `next` says close.
                self.lent = None;
            }
            if self.lent.is_some() {
                if !self.writable {
                    return Progress::Wait;
                }
                self.send_lent(&mut env, engines);
                continue;
            }
            match self.core.next(&mut env) {
                Intent::Read => {
                    self.low.reset(&self.stream);
                    if !matches!(self.transport, Transport::Plain) {
                        match self.read_tls(&mut env, tls) {
                            Some(p) => return p,
                            None => continue,
                        }
                    }
                    if !self.readable {
                        // The socket was emptied by a short read: waiting as on
                        // EAGAIN (no buffer held, or a copy of part of a head).
                        self.core.on_read_blocked(&mut env);
                        return Progress::Wait;
                    }
                    let peer = self.core.peer();
                    let buf = self.core.read_buf(&mut env);
                    // Preface bytes an earlier read matched go back in front, so
                    // the sniff judges them with this read's and HTTP/1 gets them.
                    let seen = match self.sniff {
                        Some(seen) => {
                            let seen = usize::from(seen);
                            buf[..seen].copy_from_slice(&zcopy_http2::PREFACE[..seen]);
                            seen
                        }
                        None => 0,
                    };
                    let room = buf.len() - seen;
                    match recv_some(&self.stream, &mut buf[seen..]) {
                        Ok(got) => {
                            // A short read emptied the socket: with edge-triggered
                            // readiness the next bytes bring a new event, so skip the
                            // read that would say EAGAIN.
                            if got > 0 && got < room && !self.read_closed {
                                self.readable = false;
                            }
                            let n = seen + got;
                            // At the end of the stream, what was seen goes to HTTP/1.
                            if self.sniff.take().is_some() && got > 0 {
                                match h2::sniff(0, &buf[..n]) {
                                    h2::Sniff::Http2 => {
                                        let first = &buf[..n];
                                        let h = H2::new(peer, ListenKind::Http, false, &env, first);
                                        self.h2 = Some(Box::new(h));
                                        return self.drive_h2(sh);
                                    }
                                    h2::Sniff::More => {
                                        self.sniff = Some(n as u8);
                                        continue;
                                    }
                                    h2::Sniff::Http1 => {}
                                }
                            }
                            self.core.on_read(&mut env, n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.readable = false;
                            self.core.on_read_blocked(&mut env);
                            return Progress::Wait;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => self.core.on_read_failed(&mut env),
                    }
                }
                Intent::Write { more } => {
                    if let Transport::Tls(t) = &mut self.transport {
                        let step = tls_io::write(
                            t,
                            &self.stream,
                            &mut self.core,
                            &mut env,
                            &mut self.writable,
                            more,
                        );
                        if step == Step::Wait {
                            return Progress::Wait;
                        }
                        continue;
                    }
                    if !self.writable {
                        return Progress::Wait;
                    }
                    if more
                        && matches!(self.transport, Transport::Plain)
                        && self.lend(&mut env, engines)
                    {
                        continue;
                    }
                    let (bufs, more) = self.core.write_bufs(more);
                    let len = bufs[0].len() + bufs[1].len();
                    match send_some(&self.stream, bufs, more) {
                        Ok(n) => {
                            if n < len {
                                self.writable = false;
                            }
                            if let Transport::Kernel(k) = &mut self.transport
                                && !k.sent(n)
                            {
                                self.core.on_send_failed(&mut env);
                                continue;
                            }
                            self.core.on_written(&mut env, n);
                        }
                        Err(_) => self.core.on_send_failed(&mut env),
                    }
                }
                Intent::StoreBody => {
                    let tls = !matches!(self.transport, Transport::Plain);
                    super::store_body(&mut self.core, &mut env, tls);
                }
                Intent::ReceiveBody { len } => {
                    if !matches!(self.transport, Transport::Plain) {
                        // Through TLS: into the core's read buffer, then StoreBody.
                        match self.read_tls(&mut env, tls) {
                            Some(p) => return p,
                            None => continue,
                        }
                    }
                    if self.upload.is_none() && len < super::SPLICE_BODY_MIN {
                        // A small body: read into the core's buffer, then written
                        // from there (StoreBody).
                        if !self.readable {
                            return Progress::Wait;
                        }
                        let buf = self.core.read_buf(&mut env);
                        let room = buf.len();
                        match (&self.stream).read(buf) {
                            Ok(n) => {
                                if n > 0 && n < room && !self.read_closed {
                                    self.readable = false;
                                }
                                self.core.on_read(&mut env, n);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                self.readable = false;
                                self.core.on_read_blocked(&mut env);
                                return Progress::Wait;
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => self.core.on_read_failed(&mut env),
                        }
                        continue;
                    }
                    // Set before waiting: the mark is never above what is still to
                    // come, so the last bytes wake us too.
                    self.low.expect(&self.stream, len);
                    if !self.readable {
                        return Progress::Wait;
                    }
                    if budget == 0 {
                        return Progress::Yield;
                    }
                    let want = len.min(budget as u64) as usize;
                    let (step, n) = super::splice_body_step(
                        &mut self.core,
                        &mut env,
                        &mut self.upload,
                        engines,
                        self.stream.as_fd(),
                        want,
                    );
                    budget = budget.saturating_sub(n);
                    if let super::BodyStep::Blocked = step {
                        self.readable = false;
                        return Progress::Wait;
                    }
                }
                Intent::Publish => {
                    self.upload = None;
                    self.low.reset(&self.stream);
                    super::start_publish(&mut self.core, &mut env, site, self.token);
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
                    let Some(file) = self.core.file() else {
                        self.core.on_send_failed(&mut env);
                        continue;
                    };
                    if leased && zcopy::lease::breaking(&**file) {
                        self.core.on_lease_breaking(&mut env);
                        continue;
                    }
                    if !self.writable {
                        return Progress::Wait;
                    }
                    if budget == 0 {
                        return Progress::Yield;
                    }
                    let want = len.min(budget as u64);
                    if self.fetching {
                        return Progress::Wait;
                    }
                    // Large ranges only: small files live in the worker's file cache,
                    // and the check costs two syscalls.
                    if want > FETCH_MIN && !fetch::is_cached(file, offset, want) {
                        tracing::trace!(offset, want, "cold range: fetching off the loop");
                        fetcher.request(self.token, file.clone(), offset, want);
                        self.fetching = true;
                        return Progress::Wait;
                    }
                    if let Transport::Tls(t) = &mut self.transport {
                        let (step, n) = tls_io::send_file(
                            t,
                            &self.stream,
                            &mut self.core,
                            &mut env,
                            tls,
                            &mut self.writable,
                            offset,
                            len,
                        );
                        budget = budget.saturating_sub(n);
                        if step == Step::Wait {
                            return Progress::Wait;
                        }
                        continue;
                    }
                    let route = self.route;
                    let t = self
                        .transfer
                        .get_or_insert_with(|| engines.take(route, len, by_reference, leased));
                    let want = want as usize;
                    let src = Src::Fd {
                        fd: file.as_fd(),
                        offset: Some(offset),
                    };
                    match t.transfer.step(src, self.stream.as_fd(), want) {
                        Ok(n) => {
                            budget = budget.saturating_sub(n);
                            if let Transport::Kernel(k) = &mut self.transport
                                && !k.sent(n)
                            {
                                self.core.on_send_failed(&mut env);
                                continue;
                            }
                            let engine = t.transfer.current();
                            let by_ref = engine.is_some_and(|k| k.sends_by_reference());
                            env.events.stats.body_by_engine(engine, n as u64, by_ref);
                            self.core.on_file_sent(&mut env, n, by_ref);
                        }
                        Err(e) if e.io_kind() == Some(io::ErrorKind::WouldBlock) => {
                            self.writable = false;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %self.core.peer(), "send failed: {e}");
                            self.core.on_send_failed(&mut env);
                        }
                    }
                }
                Intent::CheckSendQueue => {
                    let n = zcopy::transfer::send_queue_len(&self.stream).unwrap_or(0);
                    self.core.on_send_queue(&mut env, n);
                }
                Intent::ShutdownWrite => match &mut self.transport {
                    Transport::Plain => {
                        let _ = self.stream.shutdown(Shutdown::Write);
                    }
                    Transport::Tls(t) => {
                        if tls_io::shutdown_write(t, &self.stream, &mut self.writable)
                            == Step::Close
                        {
                            return Progress::Close;
                        }
                    }
                    Transport::Kernel(k) => k.shutdown_write(&self.stream),
                },
                Intent::Close { reset } => {
                    if !reset
                        && let Transport::Tls(t) = &mut self.transport
                        && !tls_io::may_close(
                            t,
                            &self.stream,
                            &mut self.writable,
                            env.now,
                            env.config.send_timeout,
                        )
                    {
                        return Progress::Wait;
                    }
                    if reset {
                        // Discard what is queued rather than let changed pages go out.
                        let _ = rustix::net::sockopt::set_socket_linger(
                            &self.stream,
                            Some(Duration::ZERO),
                        );
                    }
                    if let Some(t) = self.transfer.take() {
                        engines.give(t);
                    }
                    return Progress::Close;
                }
                Intent::Wait => return Progress::Wait,
            }
        }
    }
}

/// The epoll driver's side of a userspace TLS connection: the socket I/O around
/// the transport ([`TlsConn`] itself does none).
mod tls_io {
    use std::io::{self, Read, Write};
    use std::net::Shutdown;
    use std::time::Instant;

    use mio::net::TcpStream;

    use super::super::tls::{Step, TlsConn, TlsWorker};
    use super::super::worker::Env;
    use crate::proto;

    /// Writes queued ciphertext while the socket takes it; `Ok(true)` when all has
    /// left (and the write side is shut if that was asked for).
    pub(super) fn flush(
        t: &mut TlsConn,
        stream: &TcpStream,
        writable: &mut bool,
    ) -> io::Result<bool> {
        while t.wants_write() {
            if !*writable {
                return Ok(false);
            }
            match t.ciphertext(&mut &*stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *writable = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if t.sent_all() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Ok(true)
    }

    /// Flushes; a write error ends the response. False while ciphertext waits.
    fn flush_or_fail(
        t: &mut TlsConn,
        stream: &TcpStream,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        writable: &mut bool,
    ) -> bool {
        match flush(t, stream, writable) {
            Ok(done) => done,
            Err(_) => {
                core.on_send_failed(env);
                true
            }
        }
    }

    /// Nothing to read until the next event: a partial head keeps a copy of its
    /// bytes (not the read buffer), and an idle session gives its buffers back.
    fn wait_readable(t: &mut TlsConn, core: &mut proto::Conn, env: &mut Env<'_>) -> Step {
        core.on_read_blocked(env);
        t.on_idle(core);
        Step::Wait
    }

    /// [`proto::Intent::Read`]: plaintext for the core, read and decrypted as needed.
    pub(super) fn read(
        t: &mut TlsConn,
        stream: &TcpStream,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        w: &mut TlsWorker,
        ready: (&mut bool, &mut bool, bool),
    ) -> Step {
        let (readable, writable, read_closed) = ready;
        if t.deliver(core, env) {
            return Step::Again;
        }
        if !*readable {
            // The socket was emptied by a short read: waiting as on EAGAIN.
            return wait_readable(t, core, env);
        }
        let rbuf = w.read_buf();
        let room = rbuf.len();
        let n = match (&*stream).read(rbuf) {
            Ok(0) => {
                core.on_read(env, 0);
                return Step::Again;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                return wait_readable(t, core, env);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Again,
            Err(_) => {
                core.on_read_failed(env);
                return Step::Again;
            }
        };
        if n < room && !read_closed {
            *readable = false;
        }
        let cipher = std::mem::take(&mut w.rbuf);
        let fed = t.feed(&cipher[..n], w, core.peer());
        w.rbuf = cipher;
        if let Err(refusal) = fed {
            let _ = (&*stream).write(&refusal.bytes);
            if refusal.shut {
                let _ = stream.shutdown(Shutdown::Write);
            }
            return Step::Close;
        }
        if flush(t, stream, writable).is_err() {
            return Step::Close;
        }
        if t.kernel_due() {
            return Step::HandOff;
        }
        Step::Again
    }

    /// [`proto::Intent::Write`]: the core's bytes into the session, flushed unless a
    /// body chunk follows at once.
    pub(super) fn write(
        t: &mut TlsConn,
        stream: &TcpStream,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        writable: &mut bool,
        more: bool,
    ) -> Step {
        if t.wants_write() && !flush_or_fail(t, stream, core, env, writable) {
            return Step::Wait;
        }
        if t.encrypt_write(core, env, more) {
            flush_or_fail(t, stream, core, env, writable);
        }
        Step::Again
    }

    /// [`proto::Intent::SendFile`]: one chunk of the file read and encrypted, then
    /// flushed. Returns the step and the file bytes taken.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_file(
        t: &mut TlsConn,
        stream: &TcpStream,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        w: &mut TlsWorker,
        writable: &mut bool,
        offset: u64,
        len: u64,
    ) -> (Step, usize) {
        if t.wants_write() && !t.take_coalesce() && !flush_or_fail(t, stream, core, env, writable) {
            return (Step::Wait, 0);
        }
        let n = t.encrypt_file(core, env, w, offset, len, zcopy_tls::FILE_CHUNK);
        if n > 0 {
            flush_or_fail(t, stream, core, env, writable);
        }
        (Step::Again, n)
    }

    /// [`proto::Intent::ShutdownWrite`]: close_notify, then shut the write side once
    /// it has left.
    pub(super) fn shutdown_write(t: &mut TlsConn, stream: &TcpStream, writable: &mut bool) -> Step {
        t.shutdown_write();
        match flush(t, stream, writable) {
            Ok(_) => Step::Again,
            Err(_) => Step::Close,
        }
    }

    /// [`proto::Intent::Close`] (graceful): true to close now, false to wait for
    /// the queued ciphertext to leave (bounded by `limit`).
    pub(super) fn may_close(
        t: &mut TlsConn,
        stream: &TcpStream,
        writable: &mut bool,
        now: Instant,
        limit: std::time::Duration,
    ) -> bool {
        let all_sent = t.in_handshake() || !matches!(flush(t, stream, writable), Ok(false));
        t.may_close(all_sent, now, limit)
    }
}

/// One `recv` into `buf`, as a raw system call (rustix), like [`send_some`]: libc's
/// `recv` is a thread-cancellation point, which costs two atomic updates of the
/// thread's cancel state around every call.
fn recv_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty()) {
        Ok((n, _)) => Ok(n),
        Err(e) => Err(e.into()),
    }
}

/// Like `writev` of both slices, with `MSG_MORE` when more data follows at once;
/// stops when the socket is full.
fn send_some(stream: &TcpStream, bufs: [&[u8]; 2], more: bool) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags};
    let flags = if more {
        SendFlags::MORE | SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL
    };
    let len = bufs[0].len() + bufs[1].len();
    let mut done = 0;
    while done < len {
        let (a, b) = if done < bufs[0].len() {
            (&bufs[0][done..], bufs[1])
        } else {
            (&bufs[1][done - bufs[0].len()..], &[][..])
        };
        let sent = if b.is_empty() {
            rustix::net::send(stream, a, flags)
        } else {
            let iov = [io::IoSlice::new(a), io::IoSlice::new(b)];
            rustix::net::sendmsg(stream, &iov, &mut SendAncillaryBuffer::default(), flags)
        };
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(Errno::AGAIN) => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

struct Listener {
    /// The set's id of the socket (its token is `LISTENER_BASE - id`).
    id: u64,
    /// This worker's descriptor of the socket.
    sock: TcpListener,
    kind: ListenKind,
    /// The TLS setup of an HTTPS listener.
    tls: Option<Arc<TlsSite>>,
    /// Left out of the worker's listener set: accepted from until empty, then closed.
    leaving: bool,
    /// May have connections waiting (edge-triggered: cleared only on WouldBlock).
    ready: bool,
    registered: bool,
}

struct Slot {
    conn: Option<Connection>,
    queued: bool,
}

/// One worker thread's event loop.
pub struct Worker {
    poll: Poll,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    books: LoopState,
    sh: Shared,
    /// Connections closed to make room for new ones.
    shed_count: u64,
    /// `sh.tls` has the HTTPS listeners' handshake limits.
    tls_limits_set: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.books.fmt(f)
    }
}

impl Worker {
    /// A worker for its listeners.
    pub(crate) fn new(start: WorkerSetup) -> io::Result<Worker> {
        let WorkerSetup {
            index,
            poll,
            live,
            stats,
            active,
            shutdown,
            ctl,
        } = start;
        let waker = ctl.waker.clone();
        let engines = Engines::new(live.load().1.config.engine, stats.clone());
        let (books, common) = LoopState::new(live, active, shutdown, ctl, stats);
        let fetcher = Fetcher::spawn(format!("zcopy-fetch-{index}"), waker)?;
        Ok(Worker {
            poll,
            listeners: Vec::new(),
            slots: Vec::new(),
            books,
            sh: Shared {
                engines,
                fetcher,
                tls: TlsWorker::new(&Default::default()),
                h2c: h2::offered(&common.config),
                common,
            },
            shed_count: 0,
            tls_limits_set: false,
        })
    }

    /// Runs until shutdown.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut woken = Vec::new();
        let mut published = Vec::new();
        if let Some(plan) = self.books.ctl.new_plan() {
            self.relisten(plan);
        }
        loop {
            let now = Instant::now();
            let wake = self.books.wake_at();
            let accept_now = self.books.accept_paused_until.is_none()
                && self.listeners.iter().any(|l| l.ready && l.registered);
            let timeout = if !self.books.runq.is_empty() || accept_now {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(now)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.sh.common.now = Instant::now();
            if let Some(plan) = self.books.ctl.new_plan() {
                self.relisten(plan);
            }
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    // Shutdown, cold ranges now in the page cache, or password
                    // checks done.
                    for token in self.sh.fetcher.completed() {
                        if let Some(slot) = self.slots.get_mut(token)
                            && let Some(conn) = slot.conn.as_mut()
                        {
                            conn.fetching = false;
                            self.books.queue(token, &mut slot.queued);
                        }
                    }
                    self.sh.common.checked(&mut woken);
                    for token in woken.drain(..) {
                        if let Some(slot) = self.slots.get_mut(token)
                            && let Some(conn) = slot.conn.as_mut()
                        {
                            conn.core.resume();
                            self.books.queue(token, &mut slot.queued);
                        }
                    }
                    self.sh.common.published(&mut published);
                    for p in published.drain(..) {
                        let mut env = self.sh.common.env();
                        if let Some(slot) = self.slots.get_mut(p.token)
                            && let Some(conn) = slot.conn.as_mut()
                        {
                            match conn.h2.as_mut() {
                                Some(h) => h.on_published(&mut env, p.id, p.resp, p.out),
                                None => conn.core.on_published(&mut env, p.id, p.resp, p.out),
                            }
                            self.books.queue(p.token, &mut slot.queued);
                        }
                    }
                    continue;
                }
                if t == CACHE_NOTICES || t == SNAPSHOT_NOTICES {
                    self.sh.common.notices_waiting(match t {
                        CACHE_NOTICES => Notices::Cache,
                        _ => Notices::Snapshots,
                    });
                    continue;
                }
                if t.0 > LISTENER_BASE - MAX_ID as usize && t.0 <= LISTENER_BASE {
                    let id = (LISTENER_BASE - t.0) as u64;
                    if let Some(l) = self.listeners.iter_mut().find(|l| l.id == id) {
                        l.ready = true;
                    }
                    continue;
                }
                if let Some(slot) = self.slots.get_mut(t.0)
                    && let Some(conn) = slot.conn.as_mut()
                {
                    let err = ev.is_error();
                    conn.ready(
                        ev.is_readable() || ev.is_read_closed() || err,
                        ev.is_writable() || ev.is_write_closed() || err,
                        ev.is_read_closed() || err,
                    );
                    self.books.queue(t.0, &mut slot.queued);
                }
            }
            if self.books.shutdown_asked(&self.sh.common) {
                self.begin_shutdown();
            }
            self.accept();
            self.let_go();
            // A reload is taken after this turn's events and accepts, before any
            // request is answered: a connection made after the reload was stored
            // (accepted in this turn's accept loop) is served under it.
            if let Some(live) = self.books.reloaded() {
                if live.config.engine != self.sh.common.config.engine {
                    self.sh.engines =
                        Engines::new(live.config.engine, self.sh.common.stats.clone());
                }
                self.sh.common.reload(&live);
                self.sh.h2c = h2::offered(&live.config);
            }
            self.run_queue();
            // The site's change notices are read in a turn after their fd turns
            // readable (edge-triggered: every notice queued wakes the wait).
            let registry = self.poll.registry();
            self.sh.common.offer_notice_fds(|which, fd| {
                let token = match which {
                    Notices::Cache => CACHE_NOTICES,
                    Notices::Snapshots => SNAPSHOT_NOTICES,
                };
                registry.register(
                    &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                    token,
                    Interest::READABLE,
                )
            });
            if self.sh.common.now >= self.books.next_sweep {
                self.sweep();
            }
            self.sh.common.flush_log();
            if self.books.grace_over(&self.sh.common) {
                for i in 0..self.slots.len() {
                    self.close(i);
                }
                self.sh.common.flush_log();
                return Ok(());
            }
        }
    }

    /// Takes a new listener set: registers the sockets new to this worker, and marks
    /// the ones it leaves (accepted from until empty, then closed: see `let_go`).
    fn relisten(&mut self, plan: Vec<Listen>) {
        if self.sh.common.shutting_down {
            return;
        }
        for l in &mut self.listeners {
            if !plan.iter().any(|p| p.sock.id == l.id) {
                l.leaving = true;
                l.ready = true;
            }
        }
        for p in plan {
            if self.listeners.iter().any(|l| l.id == p.sock.id) {
                continue;
            }
            let mut sock = match p.sock.sock.try_clone() {
                Ok(s) => TcpListener::from_std(s),
                Err(e) => {
                    tracing::error!("listener {}: {e}", p.sock.id);
                    continue;
                }
            };
            let token = Token(LISTENER_BASE - p.sock.id as usize);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut sock, token, Interest::READABLE)
            {
                tracing::error!("listener {}: {e}", p.sock.id);
                continue;
            }
            if let (false, Some(site)) = (self.tls_limits_set, &p.tls) {
                // The first HTTPS listener of this worker: its handshake limits (one
                // TLS setup per process, so they never change after).
                self.sh.tls = TlsWorker::new(&site.limits);
                self.tls_limits_set = true;
            }
            self.listeners.push(Listener {
                id: p.sock.id,
                sock,
                kind: p.kind,
                tls: p.tls,
                leaving: false,
                ready: true,
                registered: true,
            });
        }
    }

    /// Closes the listeners left whose queue is empty.
    fn let_go(&mut self) {
        let registry = self.poll.registry();
        self.listeners.retain_mut(|l| {
            if l.leaving && !l.ready {
                let _ = registry.deregister(&mut l.sock);
                return false;
            }
            true
        });
    }

    fn begin_shutdown(&mut self) {
        self.books.begin_shutdown(&mut self.sh.common);
        for l in &mut self.listeners {
            if l.registered {
                let _ = self.poll.registry().deregister(&mut l.sock);
                l.registered = false;
            }
        }
        self.listeners.clear();
        if self.books.retiring() {
            // The server goes on: an idle keep-alive client may be sending its next
            // request right now. Kept through the grace period, it gets its answer
            // (with `Connection: close`) instead of a close racing its request.
            return;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].conn.as_ref().is_some_and(|c| c.is_idle()) {
                self.close(i);
            }
        }
    }

    fn accept(&mut self) {
        if !self.books.may_accept(self.sh.common.now) {
            return;
        }
        let max = self.sh.common.config.max_connections.max(1);
        for li in 0..self.listeners.len() {
            let mut accepted = 0;
            let tls = self.listeners[li].tls.is_some();
            while self.listeners[li].ready && self.listeners[li].registered {
                if accepted >= ACCEPT_BATCH {
                    return;
                }
                match self.listeners[li].sock.accept() {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        self.books.starved = false;
                        // No handshake slot free: the oldest unfinished handshake makes
                        // room (as the oldest request head does at the connection cap),
                        // so idle or stalled TLS clients can't keep new ones out.
                        if tls && self.sh.tls.slots.full() && !self.shed_handshake() {
                            continue;
                        }
                        // At the cap, make room by shedding; with nothing to shed, the
                        // new client gets a 503 at once rather than a wait in the backlog
                        // (a TLS client is closed: it could not read a clear-text 503).
                        if self.books.active.load(std::sync::atomic::Ordering::Relaxed) >= max
                            && !self.shed()
                        {
                            self.sh.common.stats.refused();
                            if !tls {
                                super::refuse(&stream);
                            }
                        } else {
                            let l = &self.listeners[li];
                            let (kind, site) = (l.kind, l.tls.clone());
                            self.add(stream, peer, kind, site);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listeners[li].ready = false;
                    }
                    Err(e) => match Errno::from_io_error(&e) {
                        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                            if self.shed() {
                                continue;
                            }
                            if !self.books.starved {
                                self.books.starved = true;
                                tracing::warn!("accept: {e}; pausing new connections");
                            }
                            self.books.accept_paused_until =
                                Some(self.sh.common.now + ACCEPT_PAUSE);
                            return;
                        }
                        _ => tracing::debug!("accept: {e}"),
                    },
                }
            }
        }
    }

    /// Closes the connection that has been in its TLS handshake longest (giving its
    /// handshake slot back); false when none is.
    fn shed_handshake(&mut self) -> bool {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let c = slot.conn.as_ref()?;
                matches!(&c.transport, Transport::Tls(t) if t.in_handshake()).then_some((c.seq, i))
            })
            .min();
        let Some((_, victim)) = oldest else {
            return false;
        };
        tracing::debug!("TLS handshake slots full: shedding connection {victim}");
        self.sh.common.stats.shed();
        self.shed_count += 1;
        self.close(victim);
        true
    }

    /// Closes the connection [`shed_victim`] picks; false when there is none.
    fn shed(&mut self) -> bool {
        let candidates = self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let c = slot.conn.as_ref()?;
            Some((
                i,
                Sheddable {
                    idle: c.is_idle(),
                    reading_head: c.h2.is_none() && c.core.is_reading_head(),
                    deadline: c.deadline(),
                    seq: c.seq,
                },
            ))
        });
        let Some(victim) = shed_victim(candidates) else {
            return false;
        };
        super::shedding(victim, &self.sh.common.stats);
        self.shed_count += 1;
        self.close(victim);
        true
    }

    fn add(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        kind: ListenKind,
        tls: Option<Arc<TlsSite>>,
    ) {
        let transport = match &tls {
            Some(site) => match TlsConn::new(site, self.sh.common.now, true) {
                Ok(t) if self.sh.tls.slots.take() => Transport::Tls(Box::new(t)),
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("TLS session: {e}");
                    return;
                }
            },
            None => Transport::Plain,
        };
        let idx = self.books.slot(|| {
            self.slots.push(Slot {
                conn: None,
                queued: false,
            });
            self.slots.len() - 1
        });
        let _ = stream.set_nodelay(true);
        let route = classify_peer(&mut self.sh.common.peers, &stream, peer);
        let (env, ..) = self.sh.parts();
        let mut core = proto::Conn::new(peer, !route.local, &env);
        if kind != ListenKind::Http {
            core.set_via(kind);
        }
        core.set_loopback_peer(route.loopback());
        let mut conn = Connection {
            stream,
            core,
            readable: true,
            read_closed: false,
            writable: true,
            transfer: None,
            upload: None,
            low: LowWater::default(),
            seq: 0,
            route,
            token: idx,
            fetching: false,
            lent: None,
            transport,
            h2: None,
            sniff: (kind == ListenKind::Http && tls.is_none() && self.sh.h2c).then_some(0),
        };
        if let Err(e) = self.poll.registry().register(
            &mut conn.stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("register: {e}");
            if let Transport::Tls(t) = &mut conn.transport {
                t.closed(&mut self.sh.tls);
            }
            self.books.free.push(idx);
            return;
        }
        conn.seq = self.books.opened(&self.sh.common, conn.deadline());
        let slot = &mut self.slots[idx];
        slot.conn = Some(conn);
        slot.queued = true;
        self.books.runq.push(idx);
    }

    fn close(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if let Some(mut conn) = slot.conn.take() {
            // A response cut short here (not by the core) still gets its log line.
            conn.core.on_dropped(&mut self.sh.common.env());
            if let Some(h) = conn.h2.as_mut() {
                h.dropped(&mut self.sh.common.env());
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(t) = conn.transfer.take() {
                self.sh.engines.give(t);
            }
            if let Transport::Tls(t) = &mut conn.transport {
                t.closed(&mut self.sh.tls);
            }
            drop(conn);
            self.books.closed();
            self.books.free.push(idx);
            // A slot opened up: try accepting again soon.
            self.books.fd_freed(self.sh.common.now);
        }
        slot.queued = false;
    }

    fn run_queue(&mut self) {
        let queue = self.books.take_runq();
        for &idx in &queue {
            let slot = &mut self.slots[idx];
            slot.queued = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            let p = conn.drive(&mut self.sh);
            let deadline = conn.deadline();
            self.settle(idx, p, deadline);
        }
        self.books.give_runq(queue);
    }

    fn settle(&mut self, idx: usize, p: Progress, deadline: Instant) {
        match p {
            Progress::Close => self.close(idx),
            Progress::Yield => {
                self.books.queue(idx, &mut self.slots[idx].queued);
                self.books.next_sweep = self.books.next_sweep.min(deadline);
            }
            Progress::Wait => self.books.next_sweep = self.books.next_sweep.min(deadline),
        }
    }

    fn sweep(&mut self) {
        let now = self.sh.common.now;
        let mut next = now + TICK;
        let (mut idle, mut held) = (0, 0);
        for c in self.slots.iter().filter_map(|s| s.conn.as_ref()) {
            idle += usize::from(c.is_idle());
            held += c.core.buffered();
        }
        self.sh.common.stats.connection_buffers(held);
        self.sh.common.sweep(self.books.count, idle);
        self.sh.engines.lender().trim(now);
        for idx in 0..self.slots.len() {
            let Some(conn) = self.slots[idx].conn.as_mut() else {
                continue;
            };
            if conn.deadline() <= now {
                if let Transport::Tls(t) = &conn.transport
                    && t.handshake_late(now)
                {
                    tracing::debug!(peer = %conn.core.peer(), "TLS handshake timeout");
                    self.close(idx);
                    continue;
                }
                let (mut env, ..) = self.sh.parts();
                if conn.h2.is_none() {
                    // An HTTP/2 connection keeps its own timers (its drive looks).
                    conn.core.on_timer(&mut env);
                }
                let p = conn.drive(&mut self.sh);
                let d = conn.deadline();
                self.settle(idx, p, d);
                if self.slots[idx].conn.is_none() {
                    continue;
                }
            }
            if let Some(conn) = self.slots[idx].conn.as_ref() {
                next = next.min(conn.deadline().max(now + Duration::from_millis(1)));
            }
        }
        self.books.next_sweep = next;
    }
}
