//! TLS between a connection's socket and its core: the HTTPS listeners' setup, a
//! worker's TLS state, and the transport both drivers feed. `TlsConn` (userspace
//! TLS) does no I/O: the epoll driver reads and writes the socket around it
//! (`epoll.rs`, `tls_io`), the io_uring driver hands it received chunks and sends
//! the ciphertext it makes. `KernelConn` (kTLS, the epoll driver's only): the
//! kernel encrypts and the connection is plain TCP for the core, apart from reads
//! and the close.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use zcopy::ktls::Received;
use zcopy_tls::{
    BodyError, HandOff, HandshakeSlots, KernelSession, Limits, LoadError, PLAIN_HTTP_400, Session,
    TlsError, TlsListener, TlsPath, Why, send_file_chunk,
};

use super::worker::Env;
use crate::config::TlsConfig;
use crate::proto;

/// Ciphertext read from the socket per call: a whole TLS record and then some.
const CIPHER_READ: usize = 32 * 1024;
/// Most plaintext bytes the head of a response may leave unflushed for the first
/// body chunk to join it in one write.
const COALESCE_MAX: usize = 16 * 1024;

/// The HTTPS listeners' TLS setup, shared by every worker.
#[derive(Debug)]
pub struct TlsSite {
    /// Certificate (reloadable) and rustls config.
    pub listener: TlsListener,
    /// The path the listeners' connections take, and why.
    pub path: TlsPath,
    /// Handshake timeout and per-worker cap.
    pub limits: Limits,
    /// Try the kernel hand-off after each handshake.
    attempt_kernel: bool,
}

impl TlsSite {
    /// Loads the certificate and decides the path (probing kTLS once); `h2`: offer
    /// HTTP/2 by ALPN.
    pub fn open(cfg: &TlsConfig, h2: bool) -> Result<TlsSite, LoadError> {
        let probe = zcopy::ktls::probe();
        let path = zcopy_tls::ktls::listener_path(cfg.ktls, &probe);
        let attempt_kernel = path == TlsPath::Kernel || cfg.force_ktls_attempt;
        let mut options = cfg.options.clone();
        options.ktls = attempt_kernel;
        options.h2 = h2;
        let listener = TlsListener::new(cfg.files.clone(), &options)?;
        warn_if_expired(&listener.certs);
        Ok(TlsSite {
            listener,
            path,
            limits: cfg.limits,
            attempt_kernel,
        })
    }
}

/// Warns when the certificate `certs` presents has expired (clients will refuse it;
/// it is presented all the same, so renewing the files and reloading fixes it).
pub(crate) fn warn_if_expired(certs: &zcopy_tls::CertStore) {
    let Some(end) = certs.not_after() else {
        return;
    };
    if let Ok(ago) = std::time::SystemTime::now().duration_since(end) {
        let files = certs.files();
        tracing::warn!(
            "TLS certificate {} expired {} days ago (at {}): clients will refuse it",
            files.cert.display(),
            ago.as_secs() / 86_400,
            httpdate::fmt_http_date(end)
        );
    }
}

/// A worker's TLS state: handshake slots and buffers shared by its connections.
#[derive(Debug)]
pub(crate) struct TlsWorker {
    /// Connections of this worker still in their handshake.
    pub(crate) slots: HandshakeSlots,
    /// Ciphertext read buffer (a driver that reads into its own buffers, like the
    /// io_uring driver's provided buffers, leaves it empty).
    pub(crate) rbuf: Vec<u8>,
    /// File bytes read for encryption.
    fbuf: Vec<u8>,
}

impl TlsWorker {
    pub(crate) fn new(limits: &Limits) -> TlsWorker {
        TlsWorker {
            slots: HandshakeSlots::new(limits),
            rbuf: Vec::new(),
            fbuf: Vec::new(),
        }
    }

    /// The read buffer, at least [`CIPHER_READ`] long.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        if self.rbuf.len() < CIPHER_READ {
            self.rbuf.resize(CIPHER_READ, 0);
        }
        &mut self.rbuf
    }

    fn give_back(&mut self) {
        self.slots.give_back();
    }
}

/// What lies between a connection's socket and its core (the epoll driver's
/// connections; the io_uring driver's are plain or userspace TLS).
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plain TCP.
    Plain,
    /// TLS encrypted in user space.
    Tls(Box<TlsConn>),
    /// TLS encrypted by the kernel: plain TCP for sending.
    Kernel(Box<KernelConn>),
}

/// What the driver does next after a TLS step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ask the core again.
    Again,
    /// Wait for readiness.
    Wait,
    /// Close now.
    Close,
    /// The handshake is done and the kernel may take over: call [`Transport::hand_off`].
    HandOff,
}

/// Ciphertext that ended a connection: what to send before closing (best effort,
/// once), and whether to shut the write side after it.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// A clear-text 400 for a plain HTTP client, a TLS alert, or nothing.
    pub(crate) bytes: Vec<u8>,
    /// Shut the write side after the bytes (the clear-text 400).
    pub(crate) shut: bool,
}

/// Plaintext decrypted and not yet given to the core, and whether the peer's
/// close_notify follows it.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    pos: usize,
    /// The peer sent close_notify: after the plaintext, the core sees EOF.
    peer_closed: bool,
}

impl Pending {
    /// Gives the core what it gets before the socket is read: pending plaintext,
    /// then EOF after a close_notify. False: nothing to give, read the socket.
    fn deliver(&mut self, core: &mut proto::Conn, env: &mut Env<'_>) -> bool {
        if self.give(core, env) {
            return true;
        }
        if self.peer_closed {
            core.on_read(env, 0);
            return true;
        }
        false
    }

    /// Moves what fits into the core's read buffer; false when nothing was pending.
    fn give(&mut self, core: &mut proto::Conn, env: &mut Env<'_>) -> bool {
        if self.pos == self.buf.len() {
            return false;
        }
        let room = core.read_buf(env);
        let n = room.len().min(self.buf.len() - self.pos);
        room[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        core.on_read(env, n);
        true
    }
}

/// A userspace TLS connection: the transport between the socket's bytes and the
/// core, doing no I/O itself. Ciphertext the driver received goes in with
/// [`TlsConn::feed`] and reaches the core as plaintext through
/// [`TlsConn::deliver`]; the core's writes and file ranges are encrypted by
/// [`TlsConn::encrypt_write`] and [`TlsConn::encrypt_file`] (a `pread`, never by
/// reference), and the driver sends what [`TlsConn::ciphertext`] hands it: the
/// epoll driver writes it to the socket, the io_uring driver copies it into the
/// buffer of a `SEND`.
#[derive(Debug)]
pub(crate) struct TlsConn {
    session: Session,
    plain: Pending,
    /// Holds one of the worker's handshake slots.
    in_handshake: bool,
    /// Shut the write side once the queued ciphertext has left.
    shut_pending: bool,
    /// The head was left unflushed for the first body chunk to join it.
    coalesce: bool,
    /// The kernel hand-off is still to be tried.
    try_kernel: bool,
    /// The core closed with ciphertext still queued: it may leave until then.
    drain_until: Option<Instant>,
}

impl TlsConn {
    /// A connection accepted at `now` on a listener of `site`, holding a handshake
    /// slot already taken. `kernel`: the driver can hand the session to the kernel
    /// (the epoll driver); tried only where the listener's path allows it.
    pub(crate) fn new(site: &TlsSite, now: Instant, kernel: bool) -> io::Result<TlsConn> {
        Ok(TlsConn {
            session: Session::new(&site.listener.config, now, &site.limits)
                .map_err(io::Error::other)?,
            plain: Pending::default(),
            in_handshake: true,
            shut_pending: false,
            coalesce: false,
            try_kernel: kernel && site.attempt_kernel,
            drain_until: None,
        })
    }

    /// When the connection closes if the handshake has not finished, or if the
    /// end of its last response has not left by then.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.session.handshake_deadline().or(self.drain_until)
    }

    /// Still in its handshake (holding a handshake slot).
    pub(crate) fn in_handshake(&self) -> bool {
        self.in_handshake
    }

    /// The handshake took too long.
    pub(crate) fn handshake_late(&self, now: Instant) -> bool {
        self.session.handshake_deadline().is_some_and(|d| d <= now)
    }

    /// [`proto::Intent::Close`] (graceful): the core is done, but the end of the
    /// last response may still be on its way (`all_sent` false). True: close now;
    /// false: wait for it, at most `limit` from the first call.
    pub(crate) fn may_close(&mut self, all_sent: bool, now: Instant, limit: Duration) -> bool {
        if self.in_handshake || all_sent {
            return true;
        }
        now >= *self.drain_until.get_or_insert(now + limit)
    }

    /// The connection goes: give back its handshake slot if it held one.
    pub(crate) fn closed(&mut self, w: &mut TlsWorker) {
        if std::mem::take(&mut self.in_handshake) {
            w.give_back();
        }
    }

    /// There is ciphertext to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Hands queued ciphertext to `out` (one `write` call: the socket, or a `Vec`
    /// that takes it all).
    pub(crate) fn ciphertext(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.session.write_tls(out)
    }

    /// All queued ciphertext as one buffer (no copy where it can: see
    /// [`Session::take_tls`]).
    pub(crate) fn take_ciphertext(&mut self) -> Vec<u8> {
        self.session.take_tls()
    }

    /// A buffer from [`TlsConn::take_ciphertext`] whose bytes have left; `buf`
    /// gets what the session does not keep.
    pub(crate) fn recycle(&mut self, buf: &mut Vec<u8>) {
        self.session.recycle(buf);
    }

    /// All queued ciphertext has been sent: true once if the write side is to be
    /// shut now (after [`TlsConn::shutdown_write`]).
    pub(crate) fn sent_all(&mut self) -> bool {
        std::mem::take(&mut self.shut_pending)
    }

    /// The head waits unsent for the first body chunk (taken once).
    pub(crate) fn take_coalesce(&mut self) -> bool {
        std::mem::take(&mut self.coalesce)
    }

    /// Gives the core pending plaintext, or EOF after the peer's close_notify;
    /// false when there is none (read the socket).
    pub(crate) fn deliver(&mut self, core: &mut proto::Conn, env: &mut Env<'_>) -> bool {
        self.plain.deliver(core, env)
    }

    /// The core waits for bytes (keep-alive): the session's and the plaintext
    /// buffers' memory goes back while idle.
    pub(crate) fn on_idle(&mut self, core: &proto::Conn) {
        if core.is_idle() {
            self.session.release_buffers();
            if self.plain.buf.is_empty() {
                self.plain.buf = Vec::new();
            }
        }
    }

    /// Ciphertext received from the socket: decrypted into the pending plaintext
    /// (the handshake's answers are queued as ciphertext to send). An error ends
    /// the connection, after the refusal's bytes.
    pub(crate) fn feed(
        &mut self,
        cipher: &[u8],
        w: &mut TlsWorker,
        peer: std::net::SocketAddr,
    ) -> Result<(), Refusal> {
        match self.session.feed(cipher, &mut self.plain.buf) {
            Ok(fed) => {
                if fed.handshake_done && std::mem::take(&mut self.in_handshake) {
                    w.give_back();
                    // HTTP/2 writes its frames itself: it stays in user space.
                    if self.session.alpn() == Some(b"h2") {
                        self.try_kernel = false;
                    }
                }
                self.plain.peer_closed |= fed.peer_closed;
                Ok(())
            }
            Err(e) => {
                tracing::debug!(%peer, "TLS: {e}");
                let mut bytes = Vec::new();
                let shut = match e {
                    TlsError::PlainHttp => {
                        bytes.extend_from_slice(PLAIN_HTTP_400);
                        true
                    }
                    TlsError::NotTls => false,
                    TlsError::Protocol(_) => {
                        while self.session.wants_write() {
                            if self.session.write_tls(&mut bytes).is_err() {
                                break;
                            }
                        }
                        false
                    }
                };
                Err(Refusal { bytes, shut })
            }
        }
    }

    /// The handshake chose HTTP/2 by ALPN.
    pub(crate) fn alpn_h2(&self) -> bool {
        !self.in_handshake && self.session.alpn() == Some(b"h2")
    }

    /// HTTP/2 reads plaintext itself: moves pending plaintext into `out`. Returns
    /// the bytes moved and whether the peer's close_notify came after them (true
    /// only once none is left).
    pub(crate) fn take_plain(&mut self, out: &mut [u8]) -> (usize, bool) {
        let p = &mut self.plain;
        let n = (p.buf.len() - p.pos).min(out.len());
        out[..n].copy_from_slice(&p.buf[p.pos..p.pos + n]);
        p.pos += n;
        if p.pos == p.buf.len() {
            p.buf.clear();
            p.pos = 0;
        }
        (n, p.peer_closed && n == 0 && p.buf.is_empty())
    }

    /// HTTP/2 writes plaintext itself: encrypts `bytes` for sending.
    pub(crate) fn send_plain(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.session.send(bytes)
    }

    /// The handshake is done and the kernel hand-off is still to be tried.
    pub(crate) fn kernel_due(&self) -> bool {
        self.try_kernel && !self.in_handshake
    }

    /// [`proto::Intent::Write`]: the core's bytes encrypted (and reported
    /// written). True: send now; false: a body chunk follows at once and joins them.
    pub(crate) fn encrypt_write(
        &mut self,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        more: bool,
    ) -> bool {
        let buf = core.write_buf();
        let len = buf.len();
        if self.session.send(buf).is_err() {
            core.on_send_failed(env);
            return true;
        }
        core.on_written(env, len);
        self.coalesce = more && len <= COALESCE_MAX;
        !self.coalesce
    }

    /// [`proto::Intent::SendFile`]: one chunk of the file read (`pread`) and
    /// encrypted, a copy, never by reference; at most `max` bytes. Returns the file
    /// bytes taken (reported to the core as sent). Call only when no ciphertext
    /// waits, apart from a coalesced head.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encrypt_file(
        &mut self,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        w: &mut TlsWorker,
        offset: u64,
        len: u64,
        max: usize,
    ) -> usize {
        self.coalesce = false;
        let Some(file) = core.file() else {
            core.on_send_failed(env);
            return 0;
        };
        match send_file_chunk(&mut self.session, file, offset, len, &mut w.fbuf, max) {
            Ok(n) => {
                env.events.stats.body_by_tls(n as u64);
                core.on_file_sent(env, n, false);
                n
            }
            Err(e) => {
                // Nothing of the failed piece was encrypted: never a wrong byte.
                if let BodyError::Shrank { .. } = e {
                    tracing::debug!(peer = %core.peer(), "{e}; closing");
                }
                core.on_send_failed(env);
                0
            }
        }
    }

    /// A file chunk the driver read itself (the io_uring driver's `READ` of a
    /// range not in the page cache), encrypted and reported sent. Empty: the file
    /// ended early, for the core to end the response (never padded).
    pub(crate) fn encrypt_read(&mut self, core: &mut proto::Conn, env: &mut Env<'_>, bytes: &[u8]) {
        self.coalesce = false;
        if bytes.is_empty() {
            core.on_file_sent(env, 0, false);
        } else if self.session.send(bytes).is_err() {
            core.on_send_failed(env);
        } else {
            env.events.stats.body_by_tls(bytes.len() as u64);
            core.on_file_sent(env, bytes.len(), false);
        }
    }

    /// [`proto::Intent::ShutdownWrite`]: close_notify queued; shut the write side
    /// once it has left ([`TlsConn::sent_all`]).
    pub(crate) fn shutdown_write(&mut self) {
        self.session.close_notify();
        self.shut_pending = true;
    }
}

/// A connection whose records the kernel encrypts and decrypts.
#[derive(Debug)]
pub(crate) struct KernelConn {
    kernel: KernelSession,
    /// Plaintext decrypted in user space before the hand-off.
    plain: Pending,
    /// Upper bound of records sent (one per send call plus one per 16 KiB).
    records: u64,
}

impl KernelConn {
    /// Counts what a send of `n` bytes may have cost in records; false once the
    /// suite's limit is near (the connection must close).
    pub(crate) fn sent(&mut self, n: usize) -> bool {
        self.records += 1 + (n as u64) / 16384;
        self.records < self.kernel.max_records
    }

    /// [`proto::Intent::Read`]: plaintext from the kernel; a TLS 1.3 KeyUpdate is
    /// followed, an alert or any other record ends the connection.
    pub(crate) fn read(
        &mut self,
        stream: &TcpStream,
        core: &mut proto::Conn,
        env: &mut Env<'_>,
        readable: &mut bool,
    ) -> Step {
        if self.plain.deliver(core, env) {
            return Step::Again;
        }
        if !*readable {
            core.on_read_blocked(env);
            return Step::Wait;
        }
        let buf = core.read_buf(env);
        match zcopy::ktls::recv(stream.as_fd(), buf) {
            Ok(Received::Data(0)) => {}
            Ok(Received::Data(n)) => core.on_read(env, n),
            Ok(Received::Eof | Received::Alert { .. }) => core.on_read(env, 0),
            Ok(Received::Other {
                content_type: 22,
                len,
            }) => {
                let record = buf[..len].to_vec();
                let applied = self
                    .kernel
                    .key_update(&record)
                    .map_err(io::Error::other)
                    .and_then(|u| self.kernel.apply(stream.as_fd(), &u));
                if let Err(e) = applied {
                    tracing::debug!(peer = %core.peer(), "kTLS key update: {e}");
                    return Step::Close;
                }
            }
            Ok(Received::Other { .. }) => return Step::Close,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                core.on_read_blocked(env);
                return Step::Wait;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => core.on_read_failed(env),
        }
        Step::Again
    }

    /// [`proto::Intent::ShutdownWrite`]: close_notify, then shut the write side.
    pub(crate) fn shutdown_write(&mut self, stream: &TcpStream) {
        let _ = zcopy::ktls::send_close_notify(stream.as_fd());
        let _ = stream.shutdown(Shutdown::Write);
    }
}

impl Transport {
    /// After a handshake on a listener whose path may be the kernel's: hand the
    /// session over, or stay in user space (trying again later if the reason may
    /// pass). An error: the keys were taken but the kernel refused them; close.
    pub(crate) fn hand_off(&mut self, stream: &TcpStream) -> io::Result<()> {
        let Transport::Tls(t) = std::mem::replace(self, Transport::Plain) else {
            return Ok(());
        };
        let TlsConn {
            session,
            plain,
            in_handshake,
            shut_pending,
            coalesce,
            try_kernel: _,
            drain_until,
        } = *t;
        match session.into_kernel(stream.as_fd(), &TlsPath::Kernel) {
            Ok(kernel) => {
                tracing::debug!(?kernel, "kTLS: session handed to the kernel");
                *self = Transport::Kernel(Box::new(KernelConn {
                    kernel,
                    plain,
                    records: 0,
                }));
                Ok(())
            }
            Err(HandOff::Stay(session, why)) => {
                tracing::debug!("kTLS not used for this connection: {why}");
                *self = Transport::Tls(Box::new(TlsConn {
                    session: *session,
                    plain,
                    in_handshake,
                    shut_pending,
                    coalesce,
                    try_kernel: matches!(why, Why::PendingWrite | Why::MidRecord),
                    drain_until,
                }));
                Ok(())
            }
            Err(HandOff::Broken(e)) => Err(e),
        }
    }
}
