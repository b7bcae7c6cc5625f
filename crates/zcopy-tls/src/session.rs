//! One TLS connection, sans I/O: ciphertext in, plaintext out, and back.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use crate::limits::Limits;
use crate::records::RecordTracker;
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
#[derive(Debug)]
pub struct Session {
    pub(crate) conn: ServerConnection,
    phase: Phase,
    /// First bytes held back until [`sniff::classify`] decides.
    sniffed: Vec<u8>,
    handshake_deadline: Instant,
    /// Record boundaries of the ciphertext fed so far.
    pub(crate) records: RecordTracker,
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(
        config: &Arc<ServerConfig>,
        now: Instant,
        limits: &Limits,
    ) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config.clone())?;
        // The driver bounds what it encrypts ahead (see `send_file_chunk`), so
        // rustls never refuses plaintext.
        conn.set_buffer_limit(None);
        Ok(Session {
            conn,
            phase: Phase::Sniffing,
            sniffed: Vec::with_capacity(SNIFF_LEN),
            handshake_deadline: now + limits.handshake_timeout,
            records: RecordTracker::default(),
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
                    self.push(&head, plaintext, &mut fed)?;
                }
            }
        }
        self.push(ciphertext, plaintext, &mut fed)?;
        Ok(fed)
    }

    fn push(
        &mut self,
        mut bytes: &[u8],
        plaintext: &mut Vec<u8>,
        fed: &mut Fed,
    ) -> Result<(), TlsError> {
        self.records.advance(bytes);
        while !bytes.is_empty() {
            let n = self
                .conn
                .read_tls(&mut bytes)
                .map_err(|e| self.fail(rustls::Error::General(e.to_string())))?;
            if n == 0 {
                return Err(self.fail(rustls::Error::General("TLS input not taken".into())));
            }
            let state = self.conn.process_new_packets().map_err(|e| self.fail(e))?;
            let want = state.plaintext_bytes_to_read();
            if want > 0 {
                let start = plaintext.len();
                plaintext.resize(start + want, 0);
                self.conn
                    .reader()
                    .read_exact(&mut plaintext[start..])
                    .map_err(|e| self.fail(rustls::Error::General(e.to_string())))?;
                fed.plaintext += want;
            }
            if state.peer_has_closed() {
                fed.peer_closed = true;
            }
            if self.phase == Phase::Handshaking && !self.conn.is_handshaking() {
                self.phase = Phase::Open;
                fed.handshake_done = true;
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: rustls::Error) -> TlsError {
        self.phase = Phase::Failed;
        TlsError::Protocol(e)
    }

    /// Encrypt `plaintext` (a response head, a small body) for sending. Before the
    /// handshake ends it is held and encrypted then. An error means rustls took
    /// only part of it (after close_notify, say): close the connection, since the
    /// peer would otherwise see a body with bytes missing.
    pub fn send(&mut self, plaintext: &[u8]) -> io::Result<()> {
        // With no buffer limit the writer takes everything it may send at all.
        let n = self.conn.writer().write(plaintext)?;
        if n == plaintext.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "TLS session took {n} of {} plaintext bytes",
                plaintext.len()
            )))
        }
    }

    /// There is ciphertext to write to the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Write pending ciphertext to `out` (the socket, or a buffer an io_uring
    /// send will take). Call while [`Session::wants_write`] and `out` accepts.
    pub fn write_tls(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.conn.write_tls(out)
    }

    /// Queue a close_notify alert; flush it with [`Session::write_tls`], then
    /// shut the socket's write side.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
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

    /// The SNI name the client asked for.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
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
