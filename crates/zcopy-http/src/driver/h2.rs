//! HTTP/2 connections: the glue between a socket (plain, or userspace TLS) and the
//! sans-I/O core [`zcopy_http2::Conn`]. Requests go to the same site as HTTP/1
//! ([`SiteResponder::respond`]); the plan's body pieces (memory, file ranges,
//! archive members) are copied into DATA frames (`pread` into frame-sized slices
//! of the output buffer, many frames per `send`: the h2o and Go way), round robin
//! across streams, within the peer's windows.
//!
//! Leftover: the site still formats an HTTP/1 head; [`head_spans`] turns it into
//! a status and lower-case fields (dropping Connection, Keep-Alive,
//! Transfer-Encoding) until the site hands out a protocol-neutral head.

use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use mio::net::TcpStream;
use zcopy_http2::frame::Code;
use zcopy_http2::request::Head;
use zcopy_http2::{Conn, Event, Settings};

use super::tls::{TlsConn, TlsWorker};
use super::worker::Env;
use super::{SiteResponder, TURN_BUDGET};
use crate::config::ListenKind;
use crate::handler::{Body, Piece, Response};
use crate::plan::FileBody;
use crate::proto::{Done, Keep, MethodClass, Observer};

/// Output bytes queued before the connection stops reading and making DATA.
const HIGH_WATER: usize = 256 * 1024;
/// What a request costs of the turn budget (so a burst of small requests yields).
const REQUEST_COST: usize = 4096;
/// Streams answered at once per connection; the others wait their turn, their
/// heads parsed. Each may hold an open file: the fd budget counts one file per
/// connection and a fourth of them at once (`crate::budget`), so an HTTP/2
/// connection must not hold 128.
const MAX_ANSWERING: usize = 8;
/// The receive buffer: room for a whole frame (16 KiB + 9) after a cut one.
const INBUF: usize = 48 * 1024;
/// Plaintext handed to a TLS session per call.
const TLS_CHUNK: usize = 64 * 1024;

/// What the driver does after [`H2::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for readiness or the deadline.
    Wait,
    /// More to do now: drive again next turn.
    Yield,
    /// Close the connection.
    Close,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// This many bytes were put at the start of the buffer.
    Bytes(usize),
    /// The peer closed.
    Eof,
    /// Nothing now.
    Blocked,
}

/// The socket side of an HTTP/2 connection.
pub(crate) trait Io {
    /// Puts received plaintext into `buf`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Got>;
    /// Takes plaintext to send; 0 when the socket is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Pushes out what a transport still holds; `Ok(true)` when nothing is left.
    fn flush(&mut self) -> io::Result<bool>;
    /// A transport that sends from buffers it owns (the io_uring driver's plain
    /// socket) takes `out[from..]` whole, leaving `out` an empty buffer to fill
    /// next (no copy); false: not now, or never (the caller uses `write`).
    fn swap_out(&mut self, out: &mut Vec<u8>, from: usize) -> io::Result<bool> {
        let _ = (out, from);
        Ok(false)
    }
}

/// A plain TCP socket (edge-triggered readiness flags of the epoll driver).
pub(crate) struct PlainIo<'a> {
    pub(crate) stream: &'a TcpStream,
    pub(crate) readable: &'a mut bool,
    pub(crate) writable: &'a mut bool,
    /// The peer shut its side: read until EOF, whatever the read size.
    pub(crate) read_closed: bool,
}

/// One `read` into `buf`. A short read emptied the socket: the next bytes bring a
/// new edge-triggered event, so `readable` drops and the read that would say
/// EAGAIN is skipped.
fn read_some(
    stream: &TcpStream,
    buf: &mut [u8],
    readable: &mut bool,
    read_closed: bool,
) -> io::Result<Got> {
    if !*readable {
        return Ok(Got::Blocked);
    }
    loop {
        return match (&*stream).read(buf) {
            Ok(0) => Ok(Got::Eof),
            Ok(n) => {
                if n < buf.len() && !read_closed {
                    *readable = false;
                }
                Ok(Got::Bytes(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                Ok(Got::Blocked)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

fn send_plain(stream: &TcpStream, buf: &[u8], writable: &mut bool) -> io::Result<usize> {
    use rustix::net::SendFlags;
    if !*writable {
        return Ok(0);
    }
    match rustix::net::send(stream, buf, SendFlags::NOSIGNAL) {
        Ok(n) => {
            if n < buf.len() {
                *writable = false;
            }
            Ok(n)
        }
        Err(rustix::io::Errno::AGAIN) => {
            *writable = false;
            Ok(0)
        }
        // Interrupted: the caller sees no progress and would wait on a socket that
        // is writable (no edge to come); say "full" only for EAGAIN.
        Err(rustix::io::Errno::INTR) => send_plain(stream, buf, writable),
        Err(e) => Err(e.into()),
    }
}

impl Io for PlainIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        read_some(self.stream, buf, self.readable, self.read_closed)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_plain(self.stream, buf, self.writable)
    }

    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

/// A userspace TLS session over the socket.
pub(crate) struct TlsIo<'a> {
    pub(crate) stream: &'a TcpStream,
    pub(crate) t: &'a mut TlsConn,
    pub(crate) w: &'a mut TlsWorker,
    pub(crate) readable: &'a mut bool,
    pub(crate) writable: &'a mut bool,
    pub(crate) read_closed: bool,
}

impl Io for TlsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        loop {
            let (n, closed) = self.t.take_plain(buf);
            if n > 0 {
                return Ok(Got::Bytes(n));
            }
            if closed {
                return Ok(Got::Eof);
            }
            let cipher = self.w.read_buf();
            let got = read_some(self.stream, cipher, self.readable, self.read_closed)?;
            let n = match got {
                Got::Bytes(n) => n,
                other => return Ok(other),
            };
            let cipher = std::mem::take(&mut self.w.rbuf);
            let fed = self.t.feed(&cipher[..n], self.w, peer_of(self.stream));
            self.w.rbuf = cipher;
            if let Err(refusal) = fed {
                use std::io::Write;
                let _ = (&*self.stream).write(&refusal.bytes);
                return Err(io::Error::other("TLS refused"));
            }
            self.flush()?;
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.flush()? {
            return Ok(0);
        }
        let n = buf.len().min(TLS_CHUNK);
        self.t.send_plain(&buf[..n])?;
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<bool> {
        while self.t.wants_write() {
            if !*self.writable {
                return Ok(false);
            }
            match self.t.ciphertext(&mut &*self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *self.writable = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

fn peer_of(stream: &TcpStream) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Where a response's body bytes come from.
#[derive(Debug)]
enum Src {
    /// Bytes in memory (a small body read with the head), from `pos`.
    Mem(Vec<u8>, usize),
    /// The plan's pieces, from piece `piece`, `off` bytes into it.
    File {
        fb: FileBody,
        piece: usize,
        off: u64,
        /// The archive member being read.
        member: Option<File>,
    },
}

/// A stream being answered.
#[derive(Debug)]
struct Answer {
    id: u32,
    head: Head,
    started: Instant,
    status: u16,
    /// A password check runs off the loop: ask the site again when it is done.
    waiting: bool,
    src: Option<Src>,
    /// Body bytes announced (Content-Length) and sent so far.
    total: u64,
    sent: u64,
    in_memory: bool,
}

/// One HTTP/2 connection (of either driver).
#[derive(Debug)]
pub(crate) struct H2 {
    core: Conn,
    /// Received bytes: `inbuf[..have]` not yet used by the core (at most a frame
    /// cut short). Sized once ([`INBUF`]), so reads zero nothing.
    inbuf: Vec<u8>,
    have: usize,
    /// Bytes at the front of `core.out` already written.
    written: usize,
    answers: Vec<Answer>,
    /// Requests waiting for one of the [`MAX_ANSWERING`] places.
    queued: std::collections::VecDeque<Answer>,
    via: ListenKind,
    peer: SocketAddr,
    tls: bool,
    /// The last time bytes moved either way.
    last_progress: Instant,
    /// The peer closed its side.
    eof: bool,
    /// Round-robin start among `answers`.
    rr: usize,
    scratch: Vec<u8>,
    /// A response head's lower-case field names, and where each name (in
    /// `names`) and value (in the head) is: reused, so a head allocates nothing.
    names: String,
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    idle_timeout: std::time::Duration,
    send_timeout: std::time::Duration,
}

/// `first`, the first bytes read from a plain connection, when they start with
/// the h2c preface (at least `PRI `: no HTTP/1 request starts so; fewer bytes go
/// to HTTP/1, which answers the rest of a preface 505).
pub(crate) fn preface_start(first: &[u8]) -> Option<&[u8]> {
    let n = first.len().min(zcopy_http2::PREFACE.len());
    (n >= 4 && first[..n] == zcopy_http2::PREFACE[..n]).then_some(first)
}

/// HTTP/2 is offered under `config`: asked for, and without `--limit-rate` (not
/// paced yet). Both drivers speak it: epoll drives [`H2`] by readiness, io_uring
/// by completions (its `Io` takes received chunks and submits sends).
pub(crate) fn offered(config: &crate::config::Config) -> bool {
    config.http2 && config.limit_rate.is_none()
}

/// The limits every HTTP/2 connection runs under (SECURITY.md lists them).
pub(crate) fn settings() -> Settings {
    Settings::default()
}

impl H2 {
    /// A connection from `peer` on a listener of `via` (`tls`: through userspace
    /// TLS); `first`: its bytes read so far (the preface, or its start).
    pub(crate) fn new(
        peer: SocketAddr,
        via: ListenKind,
        tls: bool,
        env: &Env<'_>,
        first: &[u8],
    ) -> H2 {
        let mut h = H2 {
            idle_timeout: env.config.idle_timeout,
            send_timeout: env.config.send_timeout,
            core: Conn::new(settings()),
            inbuf: vec![0; INBUF],
            have: 0,
            written: 0,
            answers: Vec::new(),
            queued: Default::default(),
            via,
            peer,
            tls,
            last_progress: env.now,
            eof: false,
            rr: 0,
            scratch: Vec::new(),
            names: String::new(),
            spans: Vec::new(),
        };
        h.take(first);
        h
    }

    /// No stream open and nothing to write.
    pub(crate) fn is_idle(&self) -> bool {
        self.answers.is_empty()
            && self.queued.is_empty()
            && self.core.is_idle()
            && self.written == self.core.out.len()
    }

    /// When the connection is closed if nothing happens: idle (keep-alive
    /// timeout), or a response that can't make progress (the peer keeps its window
    /// shut or stops reading: the send timeout).
    pub(crate) fn deadline(&self) -> Instant {
        if self.is_idle() {
            self.last_progress + self.idle_timeout
        } else {
            self.last_progress + self.send_timeout
        }
    }

    /// Does all the work possible now, up to the turn budget.
    pub(crate) fn drive(
        &mut self,
        io: &mut dyn Io,
        env: &mut Env<'_>,
        site: &mut SiteResponder,
    ) -> Next {
        let now = env.now;
        if env.shutting_down {
            self.core.go_away();
        }
        if now >= self.deadline() && !self.core.is_closed() {
            if self.is_idle() {
                self.core.go_away();
            } else {
                tracing::debug!(peer = %self.peer, stalled = self.core.stalled(), "HTTP/2: no progress within the send timeout");
                self.core.abort(Code::EnhanceYourCalm);
            }
            let _ = self.write_out(io);
            self.drop_all(env);
            return Next::Close;
        }
        let mut budget = TURN_BUDGET;
        // Answers whose password check is done.
        if self.answers.iter().any(|a| a.waiting) {
            for i in 0..self.answers.len() {
                if self.answers[i].waiting {
                    let mut a = self.answers.swap_remove(i);
                    a.waiting = false;
                    self.answer(a, env, site);
                }
            }
        }
        loop {
            let mut progressed = false;
            match self.write_out(io) {
                Ok(p) => progressed |= p,
                Err(_) => {
                    self.drop_all(env);
                    return Next::Close;
                }
            }
            let pending = self.core.out.len() - self.written;
            if self.core.is_closed() {
                if let Some(code) = self.core.error() {
                    tracing::debug!(peer = %self.peer, ?code, "HTTP/2 connection error");
                }
                self.drop_all(env);
                if pending == 0 && !matches!(io.flush(), Ok(false)) {
                    return Next::Close;
                }
                return Next::Wait;
            }
            if pending < HIGH_WATER && !self.eof {
                match io.read(&mut self.inbuf[self.have..]) {
                    Ok(Got::Bytes(n)) => {
                        progressed = true;
                        self.last_progress = now;
                        self.have += n;
                        self.used();
                    }
                    Ok(Got::Eof) => self.eof = true,
                    Ok(Got::Blocked) => {}
                    Err(_) => {
                        self.drop_all(env);
                        return Next::Close;
                    }
                }
                while let Some(ev) = self.core.poll_event() {
                    self.event(ev, env, site);
                    budget = budget.saturating_sub(REQUEST_COST);
                }
            }
            if self.eof {
                // The peer can send nothing more (no more WINDOW_UPDATE either).
                self.drop_all(env);
                return Next::Close;
            }
            if self.core.out.len() - self.written < HIGH_WATER {
                // Progress is output made, the last frame of a body too (made
                // counts only bodies that go on): with edge-triggered readiness
                // a socket that is writable brings no event, so bytes queued now
                // must be written before waiting.
                let before = self.core.out.len();
                let made = self.make_data(env, budget);
                budget = budget.saturating_sub(made);
                progressed |= made > 0 || self.core.out.len() != before;
            }
            while self.answers.len() < MAX_ANSWERING
                && let Some(a) = self.queued.pop_front()
            {
                self.answer(a, env, site);
                budget = budget.saturating_sub(REQUEST_COST);
                progressed = true;
            }
            if !progressed {
                return Next::Wait;
            }
            if budget == 0 {
                let _ = self.write_out(io);
                return Next::Yield;
            }
        }
    }

    /// Bytes read before the connection became HTTP/2 (the preface, and what came
    /// with it), fed in buffer-sized pieces.
    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.core.is_closed() {
            let n = bytes.len().min(self.inbuf.len() - self.have);
            self.inbuf[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            self.used();
        }
    }

    /// Gives the core what was received; keeps what it leaves (a frame cut short)
    /// at the start of the buffer.
    fn used(&mut self) {
        let n = self.core.feed(&self.inbuf[..self.have]).min(self.have);
        self.inbuf.copy_within(n..self.have, 0);
        self.have -= n;
    }

    /// Writes queued output; true if any left.
    fn write_out(&mut self, io: &mut dyn Io) -> io::Result<bool> {
        let mut any = false;
        while self.written < self.core.out.len() {
            if io.swap_out(&mut self.core.out, self.written)? {
                self.written = 0;
                any = true;
                break;
            }
            let n = io.write(&self.core.out[self.written..])?;
            if n == 0 {
                break;
            }
            self.written += n;
            any = true;
        }
        if self.written > 0 && self.written == self.core.out.len() {
            self.core.out.clear();
            self.written = 0;
        }
        io.flush()?;
        if any {
            self.last_progress = Instant::now();
        }
        Ok(any)
    }

    fn event(&mut self, ev: Event, env: &mut Env<'_>, site: &mut SiteResponder) {
        match ev {
            Event::Request { stream, head } => {
                let a = Answer {
                    id: stream,
                    head,
                    started: env.now,
                    status: 0,
                    waiting: false,
                    src: None,
                    total: 0,
                    sent: 0,
                    in_memory: false,
                };
                if self.answers.len() >= MAX_ANSWERING || !self.queued.is_empty() {
                    self.queued.push_back(a);
                } else {
                    self.answer(a, env, site);
                }
            }
            Event::TooLarge { stream } => {
                let mut out = std::mem::take(&mut self.scratch);
                out.clear();
                let err = crate::request::HttpError {
                    status: 431,
                    reason: "request header fields too large",
                };
                let resp = Response::error(&mut out, err, false);
                let a = Answer {
                    id: stream,
                    head: Head {
                        method: "GET".into(),
                        path: "-".into(),
                        ..Head::default()
                    },
                    started: env.now,
                    status: 0,
                    waiting: false,
                    src: None,
                    total: 0,
                    sent: 0,
                    in_memory: true,
                };
                self.start(a, resp, out, env);
            }
            Event::Reset { stream } => {
                self.queued.retain(|a| a.id != stream);
                if let Some(i) = self.answers.iter().position(|a| a.id == stream) {
                    let a = self.answers.swap_remove(i);
                    self.done(&a, env);
                }
            }
        }
    }

    /// Asks the site for the answer to `a` and starts it.
    fn answer(&mut self, mut a: Answer, env: &mut Env<'_>, site: &mut SiteResponder) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let head_only = a.head.method == "HEAD";
        let resp = if !a.head.end_stream && a.head.method != "GET" && a.head.method != "HEAD" {
            not_served(&mut out)
        } else {
            match a.head.request(self.via) {
                Err(e) => Response::error(&mut out, e, head_only),
                Ok(req) => site.respond(&req, false, &mut out, env.now),
            }
        };
        let resp = match resp.body {
            Body::Pending => {
                a.waiting = true;
                self.scratch = out;
                self.answers.push(a);
                return;
            }
            Body::Receive(sink) if a.head.end_stream => {
                // An empty upload: the whole body is here already.
                out.clear();
                sink.finish(&mut out, false)
            }
            Body::Receive(_) => {
                out.clear();
                not_served(&mut out)
            }
            _ => resp,
        };
        self.start(a, resp, out, env);
    }

    /// Sends the head of `resp` (formatted in `out`) and queues its body.
    fn start(&mut self, mut a: Answer, resp: Response, mut out: Vec<u8>, env: &mut Env<'_>) {
        let head_only = a.head.method == "HEAD";
        let mut names = std::mem::take(&mut self.names);
        let mut spans = std::mem::take(&mut self.spans);
        let Some((status, head_len)) = head_spans(&out, &mut names, &mut spans) else {
            tracing::warn!("HTTP/2: the site's head could not be read");
            self.core.reset(a.id);
            (self.names, self.spans, self.scratch) = (names, spans, out);
            return;
        };
        a.status = status;
        let value = |r: &std::ops::Range<usize>| std::str::from_utf8(&out[r.clone()]).unwrap_or("");
        let declared = spans
            .iter()
            .find(|(n, _)| &names[n.clone()] == "content-length")
            .and_then(|(_, v)| value(v).parse::<u64>().ok());
        let no_body = head_only || status == 304 || status == 204 || status < 200;
        let in_head = out.len() - head_len;
        a.src = match resp.body {
            _ if no_body => None,
            Body::File(fb) => Some(Src::File {
                fb,
                piece: 0,
                off: 0,
                member: None,
            }),
            // Taken from `out` below, once the head is sent.
            _ => None,
        };
        a.in_memory = !no_body && a.src.is_none();
        a.total = match &a.src {
            Some(Src::File { fb, .. }) => declared.unwrap_or_else(|| pieces_len(fb)),
            Some(Src::Mem(..)) => 0,
            None if a.in_memory => declared.unwrap_or(in_head as u64),
            None => 0,
        };
        let refs: Vec<(&str, &str)> = spans
            .iter()
            .map(|(n, v)| (&names[n.clone()], value(v)))
            .collect();
        let end = a.total == 0;
        self.core.send_headers(a.id, status, &refs, end);
        drop(refs);
        if a.in_memory && !end {
            if a.total == in_head as u64 && self.core.capacity(a.id) >= in_head {
                // The whole body in one frame now (a small file, a listing page):
                // no answer kept, no copy of the body kept.
                let body = &out[head_len..];
                a.sent = self.core.send_data(a.id, in_head, true, |d| {
                    d[..in_head].copy_from_slice(body);
                    in_head
                }) as u64;
            } else {
                a.src = Some(Src::Mem(out.split_off(head_len), 0));
            }
        }
        out.clear();
        (self.names, self.spans, self.scratch) = (names, spans, out);
        if end || a.in_memory && a.src.is_none() {
            self.done(&a, env);
        } else {
            self.answers.push(a);
        }
    }

    /// DATA for the streams with body bytes and window, round robin, a frame each
    /// per round; returns the body bytes made.
    fn make_data(&mut self, env: &mut Env<'_>, budget: usize) -> usize {
        let mut made = 0;
        loop {
            let mut any = false;
            let n = self.answers.len();
            let mut i = 0;
            while i < n.min(self.answers.len()) {
                let k = (self.rr + i) % self.answers.len();
                i += 1;
                if self.answers[k].waiting {
                    continue;
                }
                let id = self.answers[k].id;
                let cap = self.core.capacity(id);
                if cap == 0 {
                    continue;
                }
                match self.frame_of(k, cap, env) {
                    Some(0) => {}
                    Some(sent) => {
                        made += sent;
                        any = true;
                    }
                    None => {
                        // Finished or failed: forget it.
                        let a = self.answers.swap_remove(k);
                        self.done(&a, env);
                        any = true;
                    }
                }
                if self.core.out.len() - self.written >= HIGH_WATER || made >= budget {
                    self.rr = self.rr.wrapping_add(1);
                    return made;
                }
            }
            if !any {
                return made;
            }
            self.rr = self.rr.wrapping_add(1);
        }
    }

    /// One DATA frame of at most `cap` bytes for answer `k`. `None`: the answer is
    /// over (its last bytes went, or its source failed and the stream was reset).
    fn frame_of(&mut self, k: usize, cap: usize, env: &mut Env<'_>) -> Option<usize> {
        let a = &mut self.answers[k];
        let left = a.total - a.sent;
        let want = (cap as u64).min(left) as usize;
        let id = a.id;
        let src = a.src.as_mut()?;
        let (n, short) = match src {
            Src::Mem(b, pos) => {
                let avail = (b.len() - *pos).min(want);
                let end = a.sent + avail as u64 == a.total;
                let n = self.core.send_data(id, avail, end, |dst| {
                    dst[..avail].copy_from_slice(&b[*pos..*pos + avail]);
                    avail
                });
                *pos += n;
                (n, avail < want)
            }
            Src::File {
                fb,
                piece,
                off,
                member,
            } => {
                // Skip finished pieces.
                while *piece < fb.pieces.len() && *off >= piece_len(&fb.pieces[*piece]) {
                    *piece += 1;
                    *off = 0;
                    *member = None;
                }
                let Some(p) = fb.pieces.get(*piece).copied() else {
                    // The pieces ended before the length announced.
                    self.core.reset(id);
                    return None;
                };
                let take = (piece_len(&p) - *off).min(want as u64) as usize;
                let end = a.sent + take as u64 == a.total;
                let (file, at): (Option<&File>, u64) = match p {
                    Piece::Mem(s, _) => {
                        let s = s + *off as usize;
                        let mem = &fb.mem;
                        let n = self.core.send_data(id, take, end, |dst| {
                            dst[..take].copy_from_slice(&mem[s..s + take]);
                            take
                        });
                        *off += n as u64;
                        a.sent += n as u64;
                        env.events.body_from_memory(n as u64);
                        return self.after(k, n, n < take);
                    }
                    Piece::File { start, .. } => {
                        if let Some(held) = &fb.held
                            && start + *off + take as u64 <= held.len() as u64
                        {
                            let s = (start + *off) as usize;
                            let n = self.core.send_data(id, take, end, |dst| {
                                dst[..take].copy_from_slice(&held[s..s + take]);
                                take
                            });
                            *off += n as u64;
                            a.sent += n as u64;
                            env.events.body_from_memory(n as u64);
                            return self.after(k, n, n < take);
                        }
                        (Some(&*fb.file), start + *off)
                    }
                    Piece::Member { index, .. } => {
                        if member.is_none() {
                            *member = fb
                                .members
                                .get(index)
                                .and_then(|m| crate::archive::open_member(&fb.file, m));
                        }
                        (member.as_ref(), *off)
                    }
                };
                let Some(file) = file else {
                    self.core.reset(id);
                    return None;
                };
                let n = self
                    .core
                    .send_data(id, take, end, |dst| pread_full(file, at, &mut dst[..take]));
                *off += n as u64;
                if self.tls {
                    env.events.stats.body_by_tls(n as u64);
                } else {
                    env.events.stats.body_by_engine(
                        Some(zcopy::EngineKind::ReadWrite),
                        n as u64,
                        false,
                    );
                }
                (n, n < take)
            }
        };
        a.sent += n as u64;
        self.after(k, n, short)
    }

    /// After a frame of `n` bytes for answer `k`; `short`: its source gave less than
    /// asked (a file that shrank): the stream is reset, never padded.
    fn after(&mut self, k: usize, n: usize, short: bool) -> Option<usize> {
        let a = &self.answers[k];
        if short {
            tracing::debug!(peer = %self.peer, stream = a.id, "HTTP/2: body source ended early; stream reset");
            self.core.reset(a.id);
            return None;
        }
        if a.sent >= a.total {
            return None;
        }
        Some(n)
    }

    /// A response ended (whole, reset, or dropped): its log line and counts.
    fn done(&self, a: &Answer, env: &mut Env<'_>) {
        if a.waiting {
            return;
        }
        let keep = env.events.keep();
        let line = if keep != Keep::Nothing {
            a.head.line()
        } else {
            String::new()
        };
        let (referer, agent) = if keep == Keep::LineAndHeaders {
            (
                a.head.field("referer").unwrap_or(""),
                a.head.field("user-agent").unwrap_or(""),
            )
        } else {
            ("", "")
        };
        let method = match a.head.method.as_str() {
            "GET" => MethodClass::Get,
            "HEAD" => MethodClass::Head,
            "OPTIONS" => MethodClass::Options,
            "PUT" => MethodClass::Put,
            _ => MethodClass::Other,
        };
        env.events.done(&Done {
            peer: self.peer,
            method,
            status: a.status,
            body_sent: a.sent,
            body_received: None,
            in_memory: a.in_memory,
            took: env.now.saturating_duration_since(a.started),
            line: &line,
            referer,
            user_agent: agent,
        });
    }

    /// The worker closes the connection (shedding, the end of the shutdown grace):
    /// every response still open gets its log line.
    pub(crate) fn dropped(&mut self, env: &mut Env<'_>) {
        self.drop_all(env);
    }

    /// The connection goes: every response still open gets its log line.
    fn drop_all(&mut self, env: &mut Env<'_>) {
        for a in std::mem::take(&mut self.answers) {
            self.done(&a, env);
        }
    }
}

fn piece_len(p: &Piece) -> u64 {
    match *p {
        Piece::Mem(s, e) => (e - s) as u64,
        Piece::File { len, .. } => len,
        Piece::Member { len, .. } => len,
    }
}

fn pieces_len(fb: &FileBody) -> u64 {
    fb.pieces.iter().map(piece_len).sum()
}

/// Reads `dst.len()` bytes at `at` (fewer only at the end of the file).
fn pread_full(file: &File, at: u64, dst: &mut [u8]) -> usize {
    let mut got = 0;
    while got < dst.len() {
        match file.read_at(&mut dst[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("pread: {e}");
                break;
            }
        }
    }
    got
}

/// A request with a body other than GET/HEAD: uploads are HTTP/1.1's for now.
fn not_served(out: &mut Vec<u8>) -> Response {
    let err = crate::request::HttpError {
        status: 501,
        reason: "request bodies over HTTP/2 are not served yet: use HTTP/1.1",
    };
    Response::error(out, err, false)
}

/// Reads the HTTP/1 head at the start of `out`: its status and length, and per
/// field (Connection, Keep-Alive, Transfer-Encoding, Upgrade dropped) where its
/// lower-cased name lies in `names` and its value in `out`.
pub(crate) fn head_spans(
    out: &[u8],
    names: &mut String,
    spans: &mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
) -> Option<(u16, usize)> {
    names.clear();
    spans.clear();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    // "HTTP/1.1 200 Reason"
    let status = std::str::from_utf8(out.get(9..12)?).ok()?.parse().ok()?;
    let mut at = out[..end]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(end, |p| p + 1);
    while at < end {
        let line_end = out[at..end]
            .iter()
            .position(|&b| b == b'\r')
            .map_or(end, |p| at + p);
        let line = &out[at..line_end];
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?.trim();
        let mut v = (at + colon + 1, line_end);
        while v.0 < v.1 && matches!(out[v.0], b' ' | b'\t') {
            v.0 += 1;
        }
        while v.1 > v.0 && matches!(out[v.1 - 1], b' ' | b'\t') {
            v.1 -= 1;
        }
        let dropped = [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
        ]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d));
        if !dropped {
            let n0 = names.len();
            names.extend(name.chars().map(|c| c.to_ascii_lowercase()));
            spans.push((n0..names.len(), v.0..v.1));
        }
        at = line_end + 2;
    }
    Some((status, end + 4))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_preface_start_of_four_bytes_or_more_switches_to_http2() {
        use super::preface_start;
        assert!(preface_start(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04").is_some());
        assert!(preface_start(b"PRI ").is_some());
        assert!(preface_start(b"PRI").is_none());
        assert!(preface_start(b"POST / HTTP/1.1\r\n").is_none());
        assert!(preface_start(b"PRI * HTTP/1.1\r\n").is_none());
        assert!(preface_start(b"").is_none());
    }

    #[test]
    fn an_http1_head_becomes_status_and_fields() {
        let head = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nETag:  \"x\" \r\n\r\nab";
        let (mut names, mut spans) = (String::new(), Vec::new());
        let (status, len) = super::head_spans(head, &mut names, &mut spans).unwrap();
        assert_eq!(status, 206);
        let fields: Vec<(&str, &[u8])> = spans
            .iter()
            .map(|(n, v)| (&names[n.clone()], &head[v.clone()]))
            .collect();
        assert_eq!(
            fields,
            vec![("content-length", &b"2"[..]), ("etag", &b"\"x\""[..])]
        );
        assert_eq!(&head[len..], b"ab");
        // A head with no field.
        let head = b"HTTP/1.1 304 Not Modified\r\n\r\n";
        assert_eq!(
            super::head_spans(head, &mut names, &mut spans),
            Some((304, head.len()))
        );
        assert!(spans.is_empty());
    }
}
