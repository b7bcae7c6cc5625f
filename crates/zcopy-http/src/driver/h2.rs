//! HTTP/2 connections: the glue between a socket (plain, or userspace TLS) and the
//! sans-I/O core [`zcopy_http2::Conn`]. Requests go to the same site as HTTP/1
//! ([`SiteResponder::respond`]); the plan's body pieces (memory, file ranges,
//! archive members) go into DATA frames by the streams' RFC 9218 priorities
//! ([`H2::make_data`]), within the peer's windows: copied (`pread` into
//! frame-sized slices of the output buffer, many frames per `send`: the h2o and
//! Go way), or, on a plain socket of the epoll
//! driver, mapped ([`Via::Map`]: only the frame headers in the buffer, payloads
//! from a mapping of the file, gathered into one `sendmsg` by
//! [`zcopy::gather`]) or, for a file that can't change, lent ([`Via::Lend`]:
//! each payload by `sendfile` after its header). The site's head is protocol-neutral
//! ([`Out`]): the core HPACK-encodes it as it is ([`Conn::send_head`]).
//!
//! Request bodies (PUT uploads, WebDAV bodies) go where the site says, as over
//! HTTP/1.1: a [`Sink`] the site made (an unnamed file, a memfd). Each DATA payload
//! is written to it from the frame buffer (a copy: counted as such, never by an
//! engine), and only then taken from the core, which credits the peer's windows for
//! it: a slow disk slows the peer down. The whole body is published off the loop
//! ([`super::publish`]) and the answer sent when it is in. A body that brings
//! nothing for the body timeout gets 408; one beyond the sink's limit 413; either
//! way the stream is reset NO_ERROR and nothing is published. A body the answer
//! does not depend on (a 401, a GET's) is thrown away as it comes, within the
//! stream's window (the core resets the stream NO_ERROR past it).

use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use zcopy::gather;
use zcopy_http1::pace::Pace;
use zcopy_http2::frame::Code;
use zcopy_http2::request::Head;
use zcopy_http2::{Conn, Event, Settings};

use super::tls::{TlsConn, TlsWorker};
use super::worker::Env;
use super::{SiteResponder, TURN_BUDGET};
use crate::config::ListenKind;
use crate::handler::{Body, Piece, Response};
use crate::head::Out;
use crate::plan::FileBody;
use crate::plan::Sink;
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
/// How often a connection sending from a leased file looks for a lease break
/// while it waits (as HTTP/1.1 does).
const LEASE_CHECK: Duration = Duration::from_millis(200);
/// How long payloads framed from a file whose lease is being broken may take to
/// leave (the writer waits meanwhile); past it the connection closes. Well under
/// the kernel's lease-break-time (45 s by default), after which the file could
/// change under the mapping.
const LEASE_DRAIN: Duration = Duration::from_secs(2);
/// How long a connection that sent its GOAWAY and its last bytes reads and drops
/// what the peer still sends before it closes (as HTTP/1.1 lingers): closing with
/// unread bytes makes the kernel answer with a reset that discards what is still
/// queued for the peer, the GOAWAY among it.
const LINGER: Duration = Duration::from_secs(2);
/// Reads dropped per turn while lingering.
const LINGER_READS: usize = 16;

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
    /// Ends the sending side after what was written (a TLS close_notify, or the
    /// socket's FIN); called once nothing is left to flush.
    fn shut_write(&mut self);
    /// A transport that sends from buffers it owns (the io_uring driver's plain
    /// socket) takes `out[from..]` whole, leaving `out` an empty buffer to fill
    /// next (no copy); false: not now, or never (the caller uses `write`).
    fn swap_out(&mut self, out: &mut Vec<u8>, from: usize) -> io::Result<bool> {
        let _ = (out, from);
        Ok(false)
    }
    /// Which DATA paths this transport takes besides `pread` ([`Paths`]).
    fn paths(&self) -> Paths {
        Paths::default()
    }
    /// Sends `parts` in order in one call (at most [`gather::MAX_PARTS`]); 0 when
    /// the socket is full. Only called where [`Paths::map`]. `more`: a payload
    /// sent by reference follows at once (`MSG_MORE`).
    fn write_parts(&mut self, parts: &[gather::Part<'_>], more: bool) -> io::Result<usize> {
        let _ = (parts, more);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Sends `len` bytes of `file` from `offset` by reference (`sendfile`); 0 when
    /// the socket is full. Only called where [`Paths::lend`].
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        let _ = (file, offset, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// The DATA paths a transport takes for file bodies besides `pread` into the
/// frames, as the engine settings allow them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Paths {
    /// Payloads from a mapping of the file in gathered sends ([`Via::Map`]).
    pub(crate) map: bool,
    /// Payloads of files that may be lent by `sendfile` ([`Via::Lend`]).
    pub(crate) lend: bool,
}

impl Paths {
    /// The paths a plain socket of the epoll driver takes under the worker's
    /// engine settings: the mapped one unless `--engine read-write` is asked for
    /// or `ZCOPY_DISABLE` names `mmap`; the lent one unless `--engine` asks for a
    /// copying engine (`read-write`, `mmap`) or `ZCOPY_DISABLE` names `sendfile`.
    pub(crate) fn plain(engines: &super::Engines) -> Paths {
        use zcopy::{EngineKind, Preference};
        let off = |k: EngineKind| engines.forced().limit(k).is_some();
        let pref = engines.pref();
        let copying = [EngineKind::ReadWrite, EngineKind::Mmap]
            .into_iter()
            .any(|k| pref == Preference::Prefer(k));
        Paths {
            map: !off(EngineKind::Mmap) && pref != Preference::Prefer(EngineKind::ReadWrite),
            lend: !off(EngineKind::Sendfile) && !copying,
        }
    }
}

/// A plain TCP socket (edge-triggered readiness flags of the epoll driver).
pub(crate) struct PlainIo<'a> {
    /// The DATA paths it takes.
    pub(crate) paths: Paths,
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

    fn paths(&self) -> Paths {
        self.paths
    }

    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        use std::os::fd::AsFd;
        if !*self.writable {
            return Ok(0);
        }
        loop {
            return match gather::send_file(self.stream.as_fd(), file.as_fd(), offset, len) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *self.writable = false;
                    Ok(0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn write_parts(&mut self, parts: &[gather::Part<'_>], more: bool) -> io::Result<usize> {
        use std::os::fd::AsFd;
        if !*self.writable {
            return Ok(0);
        }
        loop {
            // A short count is not taken for a full socket: it may be a mapped page
            // lost to truncation, which only the next call tells (EFAULT); a full
            // socket says EAGAIN then.
            return match gather::send(self.stream.as_fd(), parts, more) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *self.writable = false;
                    Ok(0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn shut_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
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

    fn shut_write(&mut self) {
        self.t.shutdown_write();
        let _ = self.flush();
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
    /// The request's body goes to this sink (an upload the site accepted).
    recv: Option<Box<dyn Sink>>,
    /// Request body bytes stored (`Some` once the site took the body).
    received: Option<u64>,
    /// When the body last brought bytes (the body timeout runs from there).
    body_at: Instant,
    /// The body is whole and being published: the answer comes with this id.
    publishing: Option<u64>,
    /// How its file bytes go into DATA frames.
    via: Via,
    /// The window of its file mapped now ([`Via::Map`]).
    map: Option<Arc<Mapped>>,
    /// Its file holds our read lease ([`Via::Map`] from a file that may change).
    leased: bool,
    /// When a lease break was last looked for (once per loop turn).
    lease_seen: Option<Instant>,
    /// `--limit-rate`: the pace of its file bytes.
    pace: Option<Pace>,
}

/// How a response's file bytes go into DATA frames (chosen when it starts; the
/// metrics say which ran: engine `read-write` for [`Via::Pread`], `mmap` for
/// [`Via::Map`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `pread` into the output buffer (a copy), sent with the frames around it
    /// (the h2o and Go way): over TLS, on io_uring, for archive members, for
    /// files neither leased nor unchangeable, and below [`MAP_MIN`].
    Pread,
    /// Frame headers in the output buffer, payloads from a mapping of the file,
    /// many frames per `sendmsg`: the kernel copies the payload once, at send
    /// time. Only from a file that can't change (sealed snapshot, read-only file
    /// system) or that holds our read lease: a writer waits until we let go.
    Map,
    /// Frame headers in the output buffer, each payload by `sendfile` (nginx's
    /// way): by reference, so only from a file that can't change (sealed
    /// snapshot, read-only file system), to any peer. Counted under `sendfile`.
    Lend,
}

/// A file body smaller than this goes by [`Via::Pread`] (chosen by measurement:
/// see `bench/h2-data.sh`).
const MAP_MIN: u64 = 64 * 1024;

/// A window of a response's file, shared by the DATA payloads framed from it.
#[derive(Debug)]
struct Mapped {
    win: gather::Window,
    /// The file: checked for a lease break while payloads from it wait.
    file: Arc<File>,
    /// Mapped under our read lease (else the file can't change).
    leased: bool,
}

/// A DATA payload framed in `core.out` and not sent yet: `len` file bytes from
/// `off`, which go on the wire after `core.out[..at]`.
#[derive(Debug)]
struct Lent {
    at: usize,
    src: Payload,
    off: u64,
    len: usize,
}

/// Where a framed payload's bytes come from.
#[derive(Debug)]
enum Payload {
    /// A window of the file mapped ([`Via::Map`]).
    Map(Arc<Mapped>),
    /// The file itself, sent by reference ([`Via::Lend`]).
    Lend(Arc<File>),
}

impl Payload {
    /// The mapping of a payload from a leased file.
    fn leased(&self) -> Option<&Arc<Mapped>> {
        match self {
            Payload::Map(m) if m.leased => Some(m),
            _ => None,
        }
    }
}

impl Answer {
    fn new(id: u32, head: Head, now: Instant) -> Answer {
        Answer {
            id,
            head,
            started: now,
            status: 0,
            waiting: false,
            src: None,
            total: 0,
            sent: 0,
            in_memory: false,
            recv: None,
            received: None,
            body_at: now,
            publishing: None,
            via: Via::Pread,
            map: None,
            leased: false,
            lease_seen: None,
            pace: None,
        }
    }

    /// Waiting for body bytes (not yet whole, not publishing).
    fn receiving(&self) -> bool {
        self.recv.is_some() && self.publishing.is_none()
    }
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
    /// DATA payloads framed in `core.out` and sent from their file mappings as the
    /// writer reaches them, in order ([`Via::Map`]).
    lent: std::collections::VecDeque<Lent>,
    /// Bytes of `lent[0]` already sent.
    lent_done: usize,
    /// Bytes of `lent` not sent yet.
    lent_left: usize,
    /// The DATA paths the transport takes ([`Io::paths`]; set each drive).
    paths: Paths,
    /// A read lease on a file with payloads waiting in `lent` is being broken:
    /// they must be sent by then, or the connection closes (a writer waits).
    drain_by: Option<Instant>,
    /// The core is closed and all it wrote has left: until then, what the peer
    /// sends is read and dropped ([`LINGER`]).
    linger_until: Option<Instant>,
    /// When to look for lease breaks next (while sending from a leased file).
    lease_check: Option<Instant>,
    /// The earliest time a paced answer (`--limit-rate`) may send again.
    pace_due: Option<Instant>,
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
    /// The incremental stream served last: the next one after it goes next.
    rr_last: u32,
    /// What the site answers into (reused, so a head allocates nothing).
    scratch: Out,
    idle_timeout: std::time::Duration,
    send_timeout: std::time::Duration,
    body_timeout: std::time::Duration,
    /// The worker's name for this connection, which its publishes answer to
    /// ([`H2::on_published`]). A driver that never gives it (routes no publish
    /// answer here) gets request bodies refused: 501, as before they were served.
    token: Option<usize>,
}

/// What the first bytes of a plain connection (HTTP/2 on) say it speaks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// They start the h2c preface, at least `PRI ` of it (no HTTP/1 request
    /// starts so).
    Http2,
    /// They are not the preface's start (a preface going wrong later goes to
    /// HTTP/1 too, which answers it 505).
    Http1,
    /// Fewer than four bytes, all the preface's: it takes more to tell. A read
    /// may end anywhere (a client's first write split in two, an io_uring
    /// receive ending with its buffer), so deciding on them would take an h2c
    /// client for HTTP/1.
    More,
}

/// What a plain connection speaks, `seen` bytes of the h2c preface read and
/// matched before (see [`Sniff::More`]), then `next`.
pub(crate) fn sniff(seen: usize, next: &[u8]) -> Sniff {
    let rest = &zcopy_http2::PREFACE[seen..];
    let n = next.len().min(rest.len());
    if next[..n] != rest[..n] {
        Sniff::Http1
    } else if seen + n >= 4 {
        Sniff::Http2
    } else {
        Sniff::More
    }
}

/// HTTP/2 is offered under `config`. Both drivers speak it: epoll drives [`H2`]
/// by readiness, io_uring by completions (its `Io` takes received chunks and
/// submits sends).
pub(crate) fn offered(config: &crate::config::Config) -> bool {
    config.http2
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
            body_timeout: env.config.body_timeout,
            token: None,
            core: Conn::new(settings()),
            inbuf: vec![0; INBUF],
            have: 0,
            written: 0,
            lent: Default::default(),
            lent_done: 0,
            lent_left: 0,
            paths: Paths::default(),
            drain_by: None,
            linger_until: None,
            lease_check: None,
            pace_due: None,
            answers: Vec::new(),
            queued: Default::default(),
            via,
            peer,
            tls,
            last_progress: env.now,
            eof: false,
            rr_last: 0,
            scratch: Out::default(),
        };
        h.take(first);
        h
    }

    /// The worker's name for this connection, for the answers of its publishes.
    pub(crate) fn set_token(&mut self, token: usize) {
        self.token = Some(token);
    }

    /// No stream open and nothing to write.
    pub(crate) fn is_idle(&self) -> bool {
        self.answers.is_empty()
            && self.queued.is_empty()
            && self.core.is_idle()
            && self.written == self.core.out.len()
            && self.lent.is_empty()
    }

    /// Output bytes queued and not written yet.
    fn pending(&self) -> usize {
        self.core.out.len() - self.written + self.lent_left
    }

    /// When the connection is closed if nothing happens: idle (keep-alive
    /// timeout), or a response that can't make progress (the peer keeps its window
    /// shut or stops reading: the send timeout).
    pub(crate) fn deadline(&self) -> Instant {
        [
            self.lease_check,
            self.drain_by,
            self.pace_due,
            self.linger_until,
        ]
        .into_iter()
        .flatten()
        .fold(self.timeout_at(), Instant::min)
    }

    /// When the connection is closed for want of progress (see [`H2::deadline`]).
    fn timeout_at(&self) -> Instant {
        if self.is_idle() {
            self.last_progress + self.idle_timeout
        } else {
            let body = self
                .answers
                .iter()
                .filter(|a| a.receiving())
                .map(|a| a.body_at + self.body_timeout)
                .min();
            let d = self.last_progress + self.send_timeout;
            // Our own pacing is no stall of the client's.
            let d = self.pace_due.map_or(d, |p| d.max(p + self.send_timeout));
            body.map_or(d, |b| b.min(d))
        }
    }

    /// Request bodies that brought nothing for the body timeout: 408, the stream
    /// reset, nothing published.
    fn body_timeouts(&mut self, env: &mut Env<'_>) {
        while let Some(k) = self
            .answers
            .iter()
            .position(|a| a.receiving() && env.now >= a.body_at + self.body_timeout)
        {
            let mut a = self.answers.swap_remove(k);
            tracing::debug!(peer = %self.peer, stream = a.id, "HTTP/2: request body stalled; upload dropped");
            a.recv = None;
            let err = crate::request::HttpError {
                status: 408,
                reason: "request body timeout",
            };
            self.refuse(a, err, env);
        }
    }

    /// Answers `a` with `err` instead of receiving its body (dropped: nothing is
    /// published).
    fn refuse(&mut self, mut a: Answer, err: crate::request::HttpError, env: &mut Env<'_>) {
        a.recv = None;
        self.core.stop_body(a.id);
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let resp = Response::error(&mut out, err, false);
        self.start(a, resp, out, env);
    }

    /// Does all the work possible now, up to the turn budget.
    pub(crate) fn drive(
        &mut self,
        io: &mut dyn Io,
        env: &mut Env<'_>,
        site: &mut SiteResponder,
    ) -> Next {
        self.paths = io.paths();
        let next = self.drive_inner(io, env, site);
        let leased = self.lent.iter().any(|l| l.src.leased().is_some())
            || self.answers.iter().any(|a| a.leased);
        self.lease_check = leased.then(|| env.now + LEASE_CHECK);
        next
    }

    /// Responses from a leased file that another process wants to change (once per
    /// loop turn, their windows open or shut): no more DATA is framed from it, the
    /// stream is reset and the file let go once what is framed has left (the
    /// connection goes on).
    fn lease_breaks(&mut self, env: &mut Env<'_>) {
        let mut k = 0;
        while k < self.answers.len() {
            let a = &mut self.answers[k];
            let broken = a.leased
                && a.lease_seen != Some(env.now)
                && matches!(&a.src, Some(Src::File { fb, .. }) if zcopy::lease::breaking(&*fb.file));
            a.lease_seen = Some(env.now);
            if !broken {
                k += 1;
                continue;
            }
            let a = self.answers.swap_remove(k);
            tracing::debug!(peer = %self.peer, stream = a.id, "HTTP/2: file is being modified; stream reset");
            env.events.lease_broken();
            self.core.reset(a.id);
            self.done(&a, env);
        }
    }

    /// Payloads waiting in `lent` from a file whose read lease is being broken
    /// must leave within [`LEASE_DRAIN`]; false when they did not.
    fn lent_drained_in_time(&mut self, now: Instant) -> bool {
        if self.lent.is_empty() {
            self.drain_by = None;
            return true;
        }
        if self.drain_by.is_none() {
            let mut last: Option<&Arc<Mapped>> = None;
            for m in self.lent.iter().filter_map(|l| l.src.leased()) {
                if last.is_some_and(|p| Arc::ptr_eq(p, m)) {
                    continue;
                }
                last = Some(m);
                if zcopy::lease::breaking(&*m.file) {
                    tracing::debug!(peer = %self.peer, "HTTP/2: a file with DATA framed is being modified; sending what is framed");
                    self.drain_by = Some(now + LEASE_DRAIN);
                    break;
                }
            }
        }
        self.drain_by.is_none_or(|by| now < by)
    }

    fn drive_inner(
        &mut self,
        io: &mut dyn Io,
        env: &mut Env<'_>,
        site: &mut SiteResponder,
    ) -> Next {
        let now = env.now;
        if env.shutting_down {
            self.core.go_away();
        }
        self.body_timeouts(env);
        self.lease_breaks(env);
        if !self.lent_drained_in_time(now) {
            tracing::debug!(peer = %self.peer, "HTTP/2: DATA framed from a file being modified did not leave in time; closing");
            self.drop_all(env);
            return Next::Close;
        }
        if now >= self.timeout_at() && !self.core.is_closed() {
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
                Err(e) => {
                    if gather::is_truncation(&e) {
                        // A frame's header is out and its payload can't follow.
                        tracing::debug!(peer = %self.peer, "HTTP/2: file truncated under a DATA frame; closing");
                        env.events.truncated();
                    }
                    self.drop_all(env);
                    return Next::Close;
                }
            }
            let pending = self.pending();
            if self.core.is_closed() {
                if let Some(code) = self.core.error() {
                    tracing::debug!(peer = %self.peer, ?code, "HTTP/2 connection error");
                }
                self.drop_all(env);
                if pending == 0 && !matches!(io.flush(), Ok(false)) {
                    return self.linger(io, now);
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
            if self.pending() < HIGH_WATER {
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
                && let Some(a) = self.next_queued()
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

    /// After the last bytes have left: ends the sending side once, then reads and
    /// drops what the peer still sends until it closes too or [`LINGER`] passes.
    fn linger(&mut self, io: &mut dyn Io, now: Instant) -> Next {
        let until = *self.linger_until.get_or_insert_with(|| {
            io.shut_write();
            now + LINGER
        });
        if self.eof || now >= until {
            return Next::Close;
        }
        for _ in 0..LINGER_READS {
            match io.read(&mut self.inbuf) {
                Ok(Got::Bytes(_)) => {}
                Ok(Got::Blocked) => return Next::Wait,
                Ok(Got::Eof) | Err(_) => return Next::Close,
            }
        }
        Next::Yield
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
        while let Some(l) = self.lent.front() {
            let n = match &l.src {
                Payload::Lend(file) if self.written == l.at => {
                    let done = self.lent_done;
                    io.send_file(file, l.off + done as u64, l.len - done)?
                }
                _ => self.write_gathered(io)?,
            };
            if n == 0 {
                break;
            }
            self.advance(n);
            any = true;
        }
        while self.lent.is_empty() && self.written < self.core.out.len() {
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
        if self.written > 0 && self.written == self.core.out.len() && self.lent.is_empty() {
            self.core.out.clear();
            self.written = 0;
        }
        io.flush()?;
        if any {
            self.last_progress = Instant::now();
        }
        Ok(any)
    }

    /// One gathered send of what is queued: the output buffer's bytes with the
    /// mapped DATA payloads of `lent` in their places, up to the first payload
    /// sent by reference; returns the bytes sent.
    fn write_gathered(&mut self, io: &mut dyn Io) -> io::Result<usize> {
        let out = &self.core.out;
        let mut parts = Vec::with_capacity(gather::MAX_PARTS);
        let mut pos = self.written;
        let mut all = true;
        let mut more = false;
        for (i, l) in self.lent.iter().enumerate() {
            if parts.len() + 2 > gather::MAX_PARTS {
                all = false;
                break;
            }
            if l.at > pos {
                parts.push(gather::Part::Mem(&out[pos..l.at]));
                pos = l.at;
            }
            let skip = if i == 0 { self.lent_done } else { 0 };
            match &l.src {
                Payload::Map(m) => parts.push(gather::Part::File(
                    &m.win,
                    l.off + skip as u64,
                    l.len - skip,
                )),
                Payload::Lend(_) => {
                    // Sent by `sendfile` next: the header waits for it.
                    (all, more) = (false, true);
                    break;
                }
            }
        }
        if all && pos < out.len() {
            parts.push(gather::Part::Mem(&out[pos..]));
        }
        io.write_parts(&parts, more)
    }

    /// `n` bytes of the queue (output buffer and payloads, in wire order) left.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.lent.front() {
                Some(l) if self.written == l.at => {
                    let t = n.min(l.len - self.lent_done);
                    self.lent_done += t;
                    self.lent_left -= t;
                    n -= t;
                    if self.lent_done == l.len {
                        self.lent.pop_front();
                        self.lent_done = 0;
                    }
                }
                Some(l) => {
                    let t = n.min(l.at - self.written);
                    self.written += t;
                    n -= t;
                }
                None => {
                    self.written += n;
                    n = 0;
                }
            }
        }
    }

    fn event(&mut self, ev: Event, env: &mut Env<'_>, site: &mut SiteResponder) {
        match ev {
            Event::Request { stream, head } => {
                let a = Answer::new(stream, head, env.now);
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
                let head = Head::stand_in("GET", "-");
                let mut a = Answer::new(stream, head, env.now);
                a.in_memory = true;
                self.start(a, resp, out, env);
            }
            Event::Reset { stream } => {
                self.queued.retain(|a| a.id != stream);
                if let Some(i) = self.answers.iter().position(|a| a.id == stream) {
                    // A body being received is dropped with its sink: nothing is
                    // published (one being published goes on; its answer has
                    // nobody to go to).
                    let a = self.answers.swap_remove(i);
                    self.done(&a, env);
                }
            }
            Event::Data { stream } => self.take_body(stream, env, site),
        }
    }

    /// Writes what arrived of stream `id`'s body to its sink, takes it from the
    /// core (which credits the peer's windows), and publishes the body once whole.
    fn take_body(&mut self, id: u32, env: &mut Env<'_>, site: &mut SiteResponder) {
        use std::io::Write;
        let Some(k) = self
            .answers
            .iter()
            .position(|a| a.id == id && a.receiving())
        else {
            // Not answered yet (queued, a password check): the core holds it.
            return;
        };
        let Some((bytes, end)) = self.core.body(id) else {
            return;
        };
        let a = &mut self.answers[k];
        let sink = a.recv.as_mut().expect("receiving");
        let got = a.received.unwrap_or(0);
        if got + bytes.len() as u64 > sink.limit() {
            let a = self.answers.swap_remove(k);
            let err = crate::request::HttpError {
                status: 413,
                reason: "upload too large",
            };
            return self.refuse(a, err, env);
        }
        if !bytes.is_empty() {
            if let Err(e) = sink.file().write_all(bytes) {
                // A full disk: the sink answers (507), nothing is published.
                let mut a = self.answers.swap_remove(k);
                let sink = a.recv.take().expect("receiving");
                self.core.stop_body(id);
                let mut out = std::mem::take(&mut self.scratch);
                out.clear();
                let resp = sink.failed(&e, &mut out);
                return self.start(a, resp, out, env);
            }
            let n = bytes.len();
            sink.received(n as u64);
            a.received = Some(got + n as u64);
            a.body_at = env.now;
            self.last_progress = env.now;
            env.events.stats.upload_copied(self.tls, n as u64);
            self.core.consume(id, n);
        }
        if end {
            let a = &mut self.answers[k];
            let sink = a.recv.take().expect("receiving");
            let job = crate::proto::PublishJob::new(sink, false);
            let Some(token) = self.token else {
                // A driver that brings no publish answers here takes only empty
                // bodies (END_STREAM on the HEADERS): published here and now.
                let a = self.answers.swap_remove(k);
                let (resp, out) = job.run();
                return self.start(a, resp, out, env);
            };
            a.publishing = Some(site.publishes.start_job(token, job));
        }
    }

    /// The publish named `id` answered `resp` (its head in `out`): sent on the
    /// stream that waits for it, if it is still there.
    pub(crate) fn on_published(&mut self, env: &mut Env<'_>, id: u64, resp: Response, out: Out) {
        if let Some(k) = self.answers.iter().position(|a| a.publishing == Some(id)) {
            let mut a = self.answers.swap_remove(k);
            a.publishing = None;
            self.start(a, resp, out, env);
        }
    }

    /// Asks the site for the answer to `a` and starts it.
    fn answer(&mut self, mut a: Answer, env: &mut Env<'_>, site: &mut SiteResponder) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let head_only = a.head.method() == "HEAD";
        let resp = if !a.head.end_stream
            && self.token.is_none()
            && !head_only
            && a.head.method() != "GET"
        {
            // A driver that brings no publish answers here.
            let err = crate::request::HttpError {
                status: 501,
                reason: "request bodies over HTTP/2 are not served on this driver: use HTTP/1.1",
            };
            Response::error(&mut out, err, false)
        } else {
            match a.head.request(self.via) {
                Err(e) => Response::error(&mut out, e, head_only),
                Ok(req) => {
                    site.respond_inline(&req, false, &mut out, env.now, crate::proto::INLINE_MAX)
                }
            }
        };
        match resp.body {
            Body::Pending => {
                a.waiting = true;
                self.scratch = out;
                self.answers.push(a);
            }
            Body::Receive(sink) => {
                // The site takes the body: received as it comes, then published.
                self.scratch = out;
                let id = a.id;
                a.recv = Some(sink);
                a.received = Some(0);
                a.body_at = env.now;
                self.core.accept_body(id);
                // A client that asked may hold its body back until told to send
                // it (as over HTTP/1.1, only for a body the site takes).
                if a.head
                    .field("expect")
                    .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
                    && self
                        .core
                        .body(id)
                        .is_some_and(|(b, end)| b.is_empty() && !end)
                {
                    self.core.send_continue(id);
                }
                self.answers.push(a);
                self.take_body(id, env, site);
            }
            _ => {
                if !a.head.end_stream {
                    // The answer does not depend on the body: thrown away as it
                    // comes, within the stream's window (reset NO_ERROR past it).
                    self.core.discard_body(a.id);
                }
                self.start(a, resp, out, env);
            }
        }
    }

    /// Sends the head of `resp` (in `out`) and queues its body.
    fn start(&mut self, mut a: Answer, resp: Response, mut out: Out, env: &mut Env<'_>) {
        let head_only = a.head.method() == "HEAD";
        let status = out.head.status;
        a.status = status;
        let declared = out.head.content_length();
        let no_body = head_only || status == 304 || status == 204 || status < 200;
        // A small held file goes as a body held in memory, from the held bytes.
        let mut held = None;
        a.src = match resp.body {
            _ if no_body => None,
            Body::File(fb) if crate::proto::inline_file(&fb).is_some() => {
                held = Some(fb);
                None
            }
            Body::File(fb) => Some(Src::File {
                fb,
                piece: 0,
                off: 0,
                member: None,
            }),
            // Taken from `out` below, once the head is sent.
            _ => None,
        };
        let body: &[u8] = match &held {
            Some(fb) => crate::proto::inline_file(fb).unwrap_or_default(),
            None => &out.body,
        };
        let in_head = body.len();
        if let Some(Src::File { fb, .. }) = &a.src {
            let len = declared.unwrap_or_else(|| pieces_len(fb));
            (a.via, a.leased) = self.via_for(fb, len);
            // File bytes are paced as over HTTP/1.1 (bodies in memory are not).
            a.pace = env.config.limit_rate.map(|rate| Pace::new(rate, env.now));
        }
        a.in_memory = !no_body && a.src.is_none();
        a.total = match &a.src {
            Some(Src::File { fb, .. }) => declared.unwrap_or_else(|| pieces_len(fb)),
            Some(Src::Mem(..)) => 0,
            None if a.in_memory => declared.unwrap_or(in_head as u64),
            None => 0,
        };
        let end = a.total == 0;
        self.core.send_head(a.id, &out.head, end);
        if a.in_memory && !end {
            if a.total == in_head as u64 && self.core.capacity(a.id) >= in_head {
                // The whole body in one frame now (a small file, a listing page):
                // no answer kept, no copy of the body kept.
                a.sent = self.core.send_data_from(a.id, body, true) as u64;
            } else if held.is_some() {
                a.src = Some(Src::Mem(body.to_vec(), 0));
            } else {
                a.src = Some(Src::Mem(std::mem::take(&mut out.body), 0));
            }
        }
        out.clear();
        self.scratch = out;
        if end || a.in_memory && a.src.is_none() {
            self.done(&a, env);
            self.core.recycle(a.head);
        } else {
            self.answers.push(a);
        }
    }

    /// How the file bytes of a body of `len` bytes go ([`Via`]), and whether its
    /// file now holds our read lease.
    fn via_for(&self, fb: &FileBody, len: u64) -> (Via, bool) {
        if self.tls || len < MAP_MIN {
            return (Via::Pread, false);
        }
        if !self.paths.map {
            if fb.lendable && !fb.lease && self.paths.lend {
                return (Via::Lend, false);
            }
            return (Via::Pread, false);
        }
        if fb.lendable && !fb.lease {
            // A sealed snapshot, a file on a read-only file system: can't change,
            // so it may be lent to every peer.
            let via = if self.paths.lend { Via::Lend } else { Via::Map };
            return (via, false);
        }
        if !fb.lease {
            // Shared with the worker's cache of small files: no lease of ours.
            return (Via::Pread, false);
        }
        if let Err(e) = zcopy::lease::take_until_close(&*fb.file) {
            tracing::trace!("no read lease: {e}");
            return (Via::Pread, false);
        }
        // Under the lease the length can't shrink any more: map only what is
        // there now (a truncation before the lease would have zeroed a page's
        // tail under the mapping). A file that shrank goes by pread, which stops
        // at its end (the stream is reset).
        match fb.file.metadata() {
            Ok(m) if m.len() >= fb.file_len => (Via::Map, true),
            _ => (Via::Pread, true),
        }
    }

    /// DATA for the streams with body bytes and window, a frame at a time, by
    /// priority (RFC 9218 §4): the lowest urgency first; at one urgency the
    /// non-incremental streams one at a time in stream order, then the
    /// incremental ones, round robin, a frame each. A stream that signalled no
    /// priority takes turns as an incremental one of the default urgency (3), as
    /// every stream did before priorities: a client that sends none (curl,
    /// h2load) sees no change. A stream that can't send now (its window shut,
    /// paced by `--limit-rate`, its answer not ready) lets the next one go.
    /// Returns the body bytes made.
    fn make_data(&mut self, env: &mut Env<'_>, budget: usize) -> usize {
        let mut made = 0;
        self.pace_due = None;
        // Answers whose source gave nothing this time: not asked again now.
        let mut dry: Vec<u32> = Vec::new();
        while let Some((k, cap)) = self.next_turn(env, &dry) {
            match self.frame_of(k, cap, env) {
                Some(0) => dry.push(self.answers[k].id),
                Some(sent) => made += sent,
                None => {
                    // Finished or failed: forget it.
                    let a = self.answers.swap_remove(k);
                    self.done(&a, env);
                    self.core.recycle(a.head);
                }
            }
            if self.pending() >= HIGH_WATER || made >= budget {
                break;
            }
        }
        made
    }

    /// The queued request to answer next: the most urgent (RFC 9218), the
    /// first come among equals.
    fn next_queued(&mut self) -> Option<Answer> {
        let urgency = |a: &Answer| self.core.priority(a.id).map_or(3, |p| p.urgency);
        let (k, _) = self
            .queued
            .iter()
            .enumerate()
            .min_by_key(|&(k, a)| (urgency(a), k))?;
        self.queued.remove(k)
    }

    /// The answer whose frame goes next ([`H2::make_data`]) and the bytes it may
    /// send; `None` when none can send now (the earliest paced one's time in
    /// `pace_due`).
    fn next_turn(&mut self, env: &Env<'_>, dry: &[u32]) -> Option<(usize, usize)> {
        // (urgency, incremental, after the last incremental one served, id): the
        // smallest goes; with its index and the bytes it may send.
        type Turn = (u8, bool, bool, u32);
        let mut best: Option<(Turn, usize, usize)> = None;
        for (k, a) in self.answers.iter().enumerate() {
            if a.waiting || dry.contains(&a.id) {
                continue;
            }
            let mut cap = self.core.capacity(a.id);
            if cap == 0 {
                continue;
            }
            if let Some(pace) = a.pace {
                match pace.allowance(env.now, a.sent, a.total - a.sent) {
                    Ok(n) => cap = cap.min(n.try_into().unwrap_or(usize::MAX)),
                    Err(due) => {
                        self.pace_due = Some(self.pace_due.map_or(due, |d| d.min(due)));
                        continue;
                    }
                }
            }
            let (urgency, incremental) = match self.core.priority(a.id) {
                Some(p) => (p.urgency, p.incremental),
                _ => (3, true),
            };
            let key = (
                urgency,
                incremental,
                incremental && a.id <= self.rr_last,
                a.id,
            );
            if best.is_none_or(|b| key < b.0) {
                best = Some((key, k, cap));
            }
        }
        let ((_, incremental, _, id), k, cap) = best?;
        if incremental {
            self.rr_last = id;
        }
        Some((k, cap))
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
                let n = self.core.send_data_from(id, &b[*pos..*pos + avail], end);
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
                        let n = self.core.send_data_from(id, &mem[s..s + take], end);
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
                            let n = self.core.send_data_from(id, &held[s..s + take], end);
                            *off += n as u64;
                            a.sent += n as u64;
                            env.events.body_from_memory(n as u64);
                            return self.after(k, n, n < take);
                        }
                        let at = start + *off;
                        if a.via == Via::Lend {
                            let end = a.sent + take as u64 == a.total;
                            let (n, pos) = self.core.send_data_header(id, take, end);
                            if n > 0 {
                                self.lent.push_back(Lent {
                                    at: pos,
                                    src: Payload::Lend(fb.file.clone()),
                                    off: at,
                                    len: n,
                                });
                                self.lent_left += n;
                            }
                            *off += n as u64;
                            a.sent += n as u64;
                            env.events.stats.body_by_engine(
                                Some(zcopy::EngineKind::Sendfile),
                                n as u64,
                                true,
                            );
                            return self.after(k, n, false);
                        }
                        if a.via == Via::Map && a.map.as_ref().is_none_or(|m| !m.win.covers(at)) {
                            use std::os::fd::AsFd;
                            a.map = None; // unmapped before the next window is
                            match gather::Window::map(fb.file.as_fd(), at, fb.file_len) {
                                Ok(win) => {
                                    a.map = Some(Arc::new(Mapped {
                                        win,
                                        file: fb.file.clone(),
                                        leased: a.leased,
                                    }))
                                }
                                Err(e) => {
                                    tracing::debug!("mapping a file body: {e}; pread instead");
                                    a.via = Via::Pread;
                                }
                            }
                        }
                        if a.via == Via::Map
                            && let Some(m) = &a.map
                        {
                            let take = take.min((m.win.end() - at) as usize);
                            let end = a.sent + take as u64 == a.total;
                            let (n, pos) = self.core.send_data_header(id, take, end);
                            if n > 0 {
                                self.lent.push_back(Lent {
                                    at: pos,
                                    src: Payload::Map(m.clone()),
                                    off: at,
                                    len: n,
                                });
                                self.lent_left += n;
                            }
                            *off += n as u64;
                            a.sent += n as u64;
                            env.events.stats.body_by_engine(
                                Some(zcopy::EngineKind::Mmap),
                                n as u64,
                                false,
                            );
                            return self.after(k, n, false);
                        }
                        (Some(&*fb.file), at)
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
        // A publish still running: the upload is whole and will be published; its
        // answer has nobody to go to (no line, as over HTTP/1.1).
        if a.waiting || a.publishing.is_some() {
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
        let method = match a.head.method() {
            "GET" => MethodClass::Get,
            "HEAD" => MethodClass::Head,
            "OPTIONS" => MethodClass::Options,
            "PUT" => MethodClass::Put,
            _ => MethodClass::Other,
        };
        // An upload cut off (the stream reset, the connection gone) is logged 400,
        // as over HTTP/1.1.
        let status = if a.status == 0 && a.received.is_some() {
            400
        } else {
            a.status
        };
        env.events.done(&Done {
            peer: self.peer,
            method,
            status,
            body_sent: a.sent,
            body_received: a.received,
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

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_preface_start_of_four_bytes_or_more_switches_to_http2() {
        use super::{Sniff, sniff};
        assert_eq!(
            sniff(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"),
            Sniff::Http2
        );
        assert_eq!(sniff(0, b"PRI "), Sniff::Http2);
        assert_eq!(sniff(0, b"POST / HTTP/1.1\r\n"), Sniff::Http1);
        assert_eq!(sniff(0, b"PRI * HTTP/1.1\r\n"), Sniff::Http1);
        assert_eq!(sniff(0, b"GET"), Sniff::Http1);
        // Too few bytes to tell, wherever a read ended.
        assert_eq!(sniff(0, b"PRI"), Sniff::More);
        assert_eq!(sniff(0, b"P"), Sniff::More);
        assert_eq!(sniff(0, b""), Sniff::More);
        // The rest, after bytes seen before.
        assert_eq!(sniff(3, b" * HTTP/2.0\r\n"), Sniff::Http2);
        assert_eq!(sniff(1, b"RI"), Sniff::More);
        assert_eq!(sniff(2, b"I"), Sniff::More);
        assert_eq!(sniff(2, b"I "), Sniff::Http2);
        assert_eq!(sniff(1, b"UT / HTTP/1.1"), Sniff::Http1);
        assert_eq!(sniff(3, b"X"), Sniff::Http1);
    }
}
