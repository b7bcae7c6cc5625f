//! One TLS connection, sans I/O: ciphertext in, plaintext out, and back.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};

use crate::limits::Limits;
use crate::sniff::{self, FirstBytes, SNIFF_LEN};

/// What one [`Session::feed`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Plaintext bytes appended for the HTTP core.
    pub plaintext: usize,
    /// The handshake finished in this call (reported once): release the
    /// handshake slot, and this is the moment to consider kTLS.
    pub handshake_done: bool,
    /// The peer sent close_notify: no more plaintext will come.
    pub peer_closed: bool,
}

/// Why a connection cannot go on. After [`TlsError::PlainHttp`] the driver may
/// write [`sniff::PLAIN_HTTP_400`] in clear text; after [`TlsError::Protocol`]
/// it flushes [`Session::write_tls`] (rustls queued an alert); then it closes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The client spoke plain HTTP to a TLS port.
    #[error("plain HTTP request on a TLS port")]
    PlainHttp,
    /// The first bytes are neither TLS nor HTTP.
    #[error("not a TLS client (first bytes are not a handshake record)")]
    NotTls,
    /// The TLS layer failed (bad record, failed handshake, bad MAC, ...).
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fewer than enough bytes to tell TLS from HTTP or garbage.
    Sniffing,
    Handshaking,
    Open,
    Failed,
}

/// A server-side TLS session the driver feeds with socket bytes.
///
/// Built on rustls' unbuffered connection: records are decrypted from and
/// encrypted into buffers owned here, and after the handshake the connection can
/// become a rustls `KernelConnection` (kTLS, with TLS 1.3 key updates).
pub struct Session {
    pub(crate) conn: UnbufferedServerConnection,
    phase: Phase,
    /// First bytes held back until [`sniff::classify`] decides.
    sniffed: Vec<u8>,
    handshake_deadline: Instant,
    /// Ciphertext received and not yet a whole record.
    pub(crate) incoming: Vec<u8>,
    /// What goes out.
    out: Outbox,
    /// Plaintext decrypted outside [`Session::feed`], handed out by the next feed.
    stash: Vec<u8>,
}

/// A session's outgoing side.
#[derive(Debug, Default)]
struct Outbox {
    /// Ciphertext to write is `buf[sent..end]`; `buf` keeps its length (and
    /// zeroed memory) between records, so sealing never clears memory again.
    buf: Vec<u8>,
    sent: usize,
    end: usize,
    /// Plaintext given before the handshake allowed encrypting it.
    held: Vec<u8>,
    /// close_notify asked for and not yet encrypted.
    close_wanted: bool,
}

impl Outbox {
    /// Encrypt the held plaintext, then close_notify if wanted.
    fn seal_held(
        &mut self,
        w: &mut WriteTraffic<'_, ServerConnectionData>,
    ) -> Result<(), rustls::Error> {
        if !self.held.is_empty() {
            let mut held = std::mem::take(&mut self.held);
            let r = self.put(held.len(), |buf| encrypted(w.encrypt(&held, buf)));
            held.clear();
            self.held = held;
            r?;
        }
        if std::mem::take(&mut self.close_wanted) {
            self.put(64, |buf| encrypted(w.queue_close_notify(buf)))?;
        }
        Ok(())
    }

    /// Append what `write` puts in the free tail, growing it until it fits
    /// (`write` answers `Err(Some(size))` when it needs `size` bytes). `hint`:
    /// plaintext bytes about to be sealed.
    fn put(
        &mut self,
        hint: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
    ) -> Result<(), rustls::Error> {
        // Room for the records' headers and tags: 64 bytes per 16 KiB record.
        let mut room = hint + (hint / 16384 + 1) * 64;
        loop {
            if self.buf.len() < self.end + room {
                self.buf.resize(self.end + room, 0);
            }
            match write(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(Some(need)) if need > self.buf.len() - self.end => room = need,
                Err(_) => {
                    return Err(rustls::Error::General("TLS record encoding failed".into()));
                }
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.end]
    }

    fn consumed(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.end {
            self.sent = 0;
            self.end = 0;
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.out.pending().len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(
        config: &Arc<ServerConfig>,
        now: Instant,
        limits: &Limits,
    ) -> Result<Self, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(config.clone())?,
            phase: Phase::Sniffing,
            sniffed: Vec::with_capacity(SNIFF_LEN),
            handshake_deadline: now + limits.handshake_timeout,
            incoming: Vec::new(),
            out: Outbox::default(),
            stash: Vec::new(),
        })
    }

    /// Take `ciphertext` read from the socket (all of it), append the plaintext
    /// it carries to `plaintext`.
    pub fn feed(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Fed, TlsError> {
        let mut fed = Fed::default();
        if self.phase == Phase::Failed {
            return Err(TlsError::NotTls);
        }
        if self.phase == Phase::Sniffing {
            let take = (SNIFF_LEN - self.sniffed.len()).min(ciphertext.len());
            self.sniffed.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
            match sniff::classify(&self.sniffed) {
                FirstBytes::NeedMore => return Ok(fed),
                FirstBytes::PlainHttp => {
                    self.phase = Phase::Failed;
                    return Err(TlsError::PlainHttp);
                }
                FirstBytes::Garbage => {
                    self.phase = Phase::Failed;
                    return Err(TlsError::NotTls);
                }
                FirstBytes::Tls => {
                    self.phase = Phase::Handshaking;
                    let head = std::mem::take(&mut self.sniffed);
                    self.incoming.extend_from_slice(&head);
                }
            }
        }
        self.incoming.extend_from_slice(ciphertext);
        let before = plaintext.len();
        plaintext.append(&mut self.stash);
        let peer_closed = self.process(plaintext).map_err(|e| self.fail(e))?;
        fed.plaintext = plaintext.len() - before;
        fed.peer_closed = peer_closed;
        if self.phase == Phase::Handshaking && !self.conn.is_handshaking() {
            self.phase = Phase::Open;
            fed.handshake_done = true;
        }
        Ok(fed)
    }

    /// Run rustls over `incoming` until it needs more bytes: decrypted data goes
    /// to `plaintext`, records to send to `outgoing`. Returns whether the peer
    /// sent close_notify.
    fn process(&mut self, plaintext: &mut Vec<u8>) -> Result<bool, rustls::Error> {
        let mut peer_closed = false;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.incoming.drain(..discard);
                    return Err(e);
                }
            };
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    self.out.put(0, |out| encoded(e.encode(out)))?;
                }
                ConnectionState::TransmitTlsData(mut t) => {
                    if let Some(mut w) = t.may_encrypt_app_data() {
                        self.out.seal_held(&mut w)?;
                    }
                    // The records are queued in `outgoing`, in order: as good as sent.
                    t.done();
                }
                ConnectionState::WriteTraffic(mut w) => {
                    self.out.seal_held(&mut w)?;
                    done = true;
                }
                ConnectionState::PeerClosed => peer_closed = true,
                _ => done = true,
            }
            self.incoming.drain(..discard);
            if done {
                return Ok(peer_closed);
            }
        }
    }

    /// After an error rustls may have queued an alert: encode it for
    /// [`Session::write_tls`]. rustls is asked only while it holds records to
    /// encode, so it never parses the failed input again.
    fn fail(&mut self, e: rustls::Error) -> TlsError {
        self.phase = Phase::Failed;
        while self.conn.wants_write() {
            // The same buffer as before: rustls remembers positions in it.
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming);
            let Ok(ConnectionState::EncodeTlsData(mut enc)) = state else {
                break;
            };
            let done = self.out.put(0, |out| encoded(enc.encode(out)));
            if done.is_err() {
                break;
            }
        }
        TlsError::Protocol(e)
    }

    /// Encrypt `plaintext` (a response head, a small body) for sending. Before the
    /// handshake ends it is held and encrypted then. An error means the session
    /// cannot send any more: close the connection, since the peer would otherwise
    /// see a body with bytes missing.
    pub fn send(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.out.held.extend_from_slice(plaintext);
        self.pump_out()
    }

    /// Encrypt what is held, if the handshake allows.
    fn pump_out(&mut self) -> io::Result<()> {
        if self.phase == Phase::Failed {
            return Err(io::Error::other("TLS session failed"));
        }
        if self.is_handshaking() {
            return Ok(());
        }
        let mut stash = std::mem::take(&mut self.stash);
        let r = self.process(&mut stash);
        self.stash = stash;
        r.map(|_| ()).map_err(io::Error::other)
    }

    /// There is ciphertext to write to the socket.
    pub fn wants_write(&self) -> bool {
        !self.out.pending().is_empty()
    }

    /// Write pending ciphertext to `out` (the socket, or a buffer an io_uring
    /// send will take): one `write` call. Call while [`Session::wants_write`] and
    /// `out` accepts.
    pub fn write_tls(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        let n = out.write(self.out.pending())?;
        self.out.consumed(n);
        Ok(n)
    }

    /// Takes all pending ciphertext as one buffer, without copying it where it
    /// can (the session's own buffer moves out; the next records are sealed into
    /// the buffer [`Session::recycle`] gives back, or a new one). For a driver that
    /// hands the bytes to an operation owning its buffer (an io_uring `SEND`).
    pub fn take_tls(&mut self) -> Vec<u8> {
        let out = &mut self.out;
        let buf = if out.sent == 0 {
            let mut b = std::mem::take(&mut out.buf);
            b.truncate(out.end);
            b
        } else {
            out.pending().to_vec()
        };
        out.sent = 0;
        out.end = 0;
        buf
    }

    /// A buffer from [`Session::take_tls`] whose bytes have been sent: kept for
    /// the next records when nothing is queued and it is larger than the session's
    /// own (its memory is set already, so sealing into it clears nothing). `buf`
    /// gets the buffer the session does not keep.
    pub fn recycle(&mut self, buf: &mut Vec<u8>) {
        if self.out.end == 0 && buf.capacity() > self.out.buf.capacity() {
            std::mem::swap(&mut self.out.buf, buf);
        }
    }

    /// Give back the memory of the buffers while the connection is idle (a
    /// keep-alive wait); a no-op while anything is pending.
    pub fn release_buffers(&mut self) {
        if self.out.pending().is_empty() {
            self.out.buf = Vec::new();
        }
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
    }

    /// Queue a close_notify alert; flush it with [`Session::write_tls`], then
    /// shut the socket's write side.
    pub fn close_notify(&mut self) {
        self.out.close_wanted = true;
        let _ = self.pump_out();
    }

    /// The handshake has not finished (or not started).
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Sniffing | Phase::Handshaking)
    }

    /// When the driver closes the connection if the handshake has not finished:
    /// `Some` only while handshaking.
    pub fn handshake_deadline(&self) -> Option<Instant> {
        self.is_handshaking().then_some(self.handshake_deadline)
    }

    /// The negotiated ALPN protocol (`http/1.1`, or none if the client sent no ALPN).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Protocol version, once negotiated.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Cipher suite, once negotiated.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }

    /// The handshake resumed an earlier session (ticket or cache).
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }
}

fn encoded(r: Result<usize, EncodeError>) -> Result<usize, Option<usize>> {
    match r {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
        Err(_) => Err(None),
    }
}

fn encrypted(r: Result<usize, EncryptError>) -> Result<usize, Option<usize>> {
    match r {
        Ok(n) => Ok(n),
        Err(EncryptError::InsufficientSize(s)) => Err(Some(s.required_size)),
        Err(_) => Err(None),
    }
}
