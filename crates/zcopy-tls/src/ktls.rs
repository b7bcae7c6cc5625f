//! Handing an established session to the kernel (kTLS), or saying why not.
//!
//! Secrets come from rustls' kernel-connection API
//! (`UnbufferedServerConnection::dangerous_into_kernel_connection`), which gives
//! both directions' keys, IVs and next sequence numbers, and keeps the key
//! schedule so a peer's TLS 1.3 KeyUpdate can be followed ([`KernelSession`]);
//! `zcopy::ktls` turns keys into the kernel's `crypto_info` structs. Whether a listener, and then a
//! connection, takes the kernel path is decided by pure functions
//! ([`listener_path`], [`connection_path`]) from plain facts.

use std::fmt;
use std::os::fd::AsFd;

use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{CipherSuite, ConnectionTrafficSecrets, ProtocolVersion};
use zcopy::ktls::{Cipher, Probe, TlsVersion, TrafficKeys};

use crate::Session;

/// `--ktls auto|off`: whether a TLS listener may hand sessions to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KtlsMode {
    /// Use kTLS where the probe passed and the session allows it.
    #[default]
    Auto,
    /// Always encrypt in user space.
    Off,
}

/// Which path TLS records take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPath {
    /// The kernel encrypts; bodies leave by sendfile/splice.
    Kernel,
    /// rustls encrypts; bodies are pread and encrypted per chunk.
    Userspace(Why),
}

/// Why records stay in user space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `--ktls off`.
    Disabled,
    /// The probe found no tls ULP (its text says what it saw).
    NoUlp(String),
    /// The negotiated version has no kernel support.
    Version(ProtocolVersion),
    /// The negotiated cipher suite has no kernel support.
    Cipher(CipherSuite),
    /// The handshake has not finished.
    Handshaking,
    /// Ciphertext (tickets, alerts) still waits to be written.
    PendingWrite,
    /// A partial record has been read: the kernel would start mid-record.
    MidRecord,
    /// Attaching the ULP to this socket failed.
    Attach(String),
    /// The server's event loop keeps TLS in user space (the io_uring driver).
    Driver,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Disabled => f.write_str("kTLS disabled (--ktls off)"),
            Why::NoUlp(probe) => f.write_str(probe),
            Why::Version(v) => write!(f, "kernel TLS does not do {v:?}"),
            Why::Cipher(c) => write!(f, "kernel TLS does not do {c:?}"),
            Why::Handshaking => f.write_str("handshake not finished"),
            Why::PendingWrite => f.write_str("TLS records still to be written"),
            Why::MidRecord => f.write_str("a partial TLS record has been read"),
            Why::Attach(e) => write!(f, "TCP_ULP tls: {e}"),
            Why::Driver => f.write_str("the io_uring driver keeps TLS in user space"),
        }
    }
}

impl fmt::Display for TlsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsPath::Kernel => f.write_str("kTLS"),
            TlsPath::Userspace(why) => write!(f, "userspace TLS ({why})"),
        }
    }
}

/// A listener's path, decided once at start-up from `mode` and the probe.
pub fn listener_path(mode: KtlsMode, probe: &Probe) -> TlsPath {
    match mode {
        KtlsMode::Off => TlsPath::Userspace(Why::Disabled),
        KtlsMode::Auto if probe.available() => TlsPath::Kernel,
        KtlsMode::Auto => TlsPath::Userspace(Why::NoUlp(probe.to_string())),
    }
}

/// The facts about one session that decide its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    /// Negotiated version (`None` while handshaking).
    pub version: Option<ProtocolVersion>,
    /// Negotiated suite (`None` while handshaking).
    pub suite: Option<CipherSuite>,
    /// Ciphertext waits to be written.
    pub wants_write: bool,
    /// The bytes read so far end at a record boundary.
    pub at_record_boundary: bool,
}

/// One connection's path, given its listener's.
pub fn connection_path(listener: &TlsPath, s: &SessionFacts) -> TlsPath {
    if let TlsPath::Userspace(_) = listener {
        return listener.clone();
    }
    let (Some(version), Some(suite)) = (s.version, s.suite) else {
        return TlsPath::Userspace(Why::Handshaking);
    };
    if !matches!(version, ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3) {
        return TlsPath::Userspace(Why::Version(version));
    }
    if !kernel_has(suite) {
        return TlsPath::Userspace(Why::Cipher(suite));
    }
    if s.wants_write {
        return TlsPath::Userspace(Why::PendingWrite);
    }
    if !s.at_record_boundary {
        return TlsPath::Userspace(Why::MidRecord);
    }
    TlsPath::Kernel
}

/// Suites whose AEAD the kernel implements (AES-GCM 128/256, ChaCha20-Poly1305).
fn kernel_has(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// Turn rustls' secrets for one direction into what `zcopy::ktls` installs.
pub fn traffic_keys(
    version: ProtocolVersion,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> Result<TrafficKeys, rustls::Error> {
    let version = match version {
        ProtocolVersion::TLSv1_2 => TlsVersion::Tls12,
        ProtocolVersion::TLSv1_3 => TlsVersion::Tls13,
        v => return Err(rustls::Error::General(format!("no kTLS for {v:?}"))),
    };
    fn arr<const N: usize>(b: &[u8]) -> Result<[u8; N], rustls::Error> {
        b.try_into().map_err(|_| {
            rustls::Error::General(format!("key material of {} bytes, not {N}", b.len()))
        })
    }
    let cipher = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => Cipher::AesGcm128 {
            key: arr(key.as_ref())?,
            iv: arr(iv.as_ref())?,
        },
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => Cipher::AesGcm256 {
            key: arr(key.as_ref())?,
            iv: arr(iv.as_ref())?,
        },
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Cipher::Chacha20Poly1305 {
            key: arr(key.as_ref())?,
            iv: arr(iv.as_ref())?,
        },
        _ => return Err(rustls::Error::General("cipher without kTLS support".into())),
    };
    Ok(TrafficKeys {
        version,
        cipher,
        seq,
    })
}

/// A session now run by the kernel: what is left of rustls (the key schedule,
/// for TLS 1.3 key updates) and the facts the driver needs.
pub struct KernelSession {
    conn: KernelConnection<ServerConnectionData>,
    /// Negotiated version.
    pub version: ProtocolVersion,
    /// Negotiated suite.
    pub suite: CipherSuite,
    /// Records the kernel may send under one key before the connection must end
    /// or update its keys (the suite's confidentiality limit).
    pub max_records: u64,
}

impl fmt::Debug for KernelSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSession")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// The keys a peer's TLS 1.3 KeyUpdate calls for.
#[derive(Debug)]
pub struct KeyUpdate {
    /// New keys for what the peer sends from now on.
    pub rx: TrafficKeys,
    /// When the peer asked us to update too: our KeyUpdate message (a
    /// handshake record to send under the *old* keys) and our new keys.
    pub tx: Option<(&'static [u8], TrafficKeys)>,
}

/// Handshake message type of a TLS 1.3 KeyUpdate.
const KEY_UPDATE: u8 = 24;
/// Our KeyUpdate answer: update_not_requested.
const KEY_UPDATE_NOT_REQUESTED: &[u8] = &[KEY_UPDATE, 0, 0, 1, 0];

impl KernelSession {
    /// The new keys for a handshake record (content type 22) the kernel handed
    /// up: only a TLS 1.3 KeyUpdate is expected; anything else is an error (close).
    pub fn key_update(&mut self, record: &[u8]) -> Result<KeyUpdate, rustls::Error> {
        let bad = || rustls::Error::General("unexpected handshake message after hand-off".into());
        let [KEY_UPDATE, 0, 0, 1, request] = record else {
            return Err(bad());
        };
        let version = self.version;
        let (seq, secrets) = self.conn.update_rx_secret()?;
        let rx = traffic_keys(version, seq, &secrets)?;
        let tx = match request {
            0 => None,
            1 => {
                let (seq, secrets) = self.conn.update_tx_secret()?;
                Some((
                    KEY_UPDATE_NOT_REQUESTED,
                    traffic_keys(version, seq, &secrets)?,
                ))
            }
            _ => return Err(bad()),
        };
        Ok(KeyUpdate { rx, tx })
    }

    /// Follow a peer's KeyUpdate on `sock`: new receive keys; if asked, send our
    /// KeyUpdate under the old keys, then switch to the new send keys.
    pub fn apply<Fd: AsFd>(&self, sock: Fd, update: &KeyUpdate) -> std::io::Result<()> {
        zcopy::ktls::set_keys(sock.as_fd(), zcopy::ktls::Direction::Rx, &update.rx)?;
        if let Some((message, tx)) = &update.tx {
            zcopy::ktls::send_handshake(sock.as_fd(), message)?;
            zcopy::ktls::set_keys(sock.as_fd(), zcopy::ktls::Direction::Tx, tx)?;
        }
        Ok(())
    }
}

/// What [`Session::into_kernel`] gives back when it did not hand over.
#[derive(Debug)]
pub enum HandOff {
    /// Nothing changed: go on in user space.
    Stay(Box<Session>, Why),
    /// Keys were taken but the kernel refused them: the connection is lost
    /// and must be closed.
    Broken(std::io::Error),
}

impl Session {
    /// The facts [`connection_path`] needs.
    pub fn facts(&self) -> SessionFacts {
        SessionFacts {
            version: if self.is_handshaking() {
                None
            } else {
                self.protocol_version()
            },
            suite: self.cipher_suite().map(|s| s.suite()),
            wants_write: self.wants_write(),
            at_record_boundary: self.incoming.is_empty(),
        }
    }

    /// Take both directions' keys out of rustls, ending the user-space session:
    /// `(tx, rx, rest)`. Needs [`crate::TlsOptions::ktls`], a finished handshake
    /// and nothing left to write or half read; [`Session::into_kernel`] checks
    /// all that first.
    pub fn extract_keys(self) -> Result<(TrafficKeys, TrafficKeys, KernelSession), rustls::Error> {
        let version = self
            .protocol_version()
            .ok_or(rustls::Error::HandshakeNotComplete)?;
        let suite = self
            .cipher_suite()
            .ok_or(rustls::Error::HandshakeNotComplete)?;
        let (s, conn) = self.conn.dangerous_into_kernel_connection()?;
        let rest = KernelSession {
            conn,
            version,
            suite: suite.suite(),
            max_records: match suite {
                rustls::SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
                rustls::SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            },
        };
        Ok((
            traffic_keys(version, s.tx.0, &s.tx.1)?,
            traffic_keys(version, s.rx.0, &s.rx.1)?,
            rest,
        ))
    }

    /// Hand the session to the kernel on `sock` if [`connection_path`] says so:
    /// attach the ULP, take the secrets out of rustls, install them.
    pub fn into_kernel<Fd: AsFd>(
        self,
        sock: Fd,
        listener: &TlsPath,
    ) -> Result<KernelSession, HandOff> {
        let facts = self.facts();
        if let TlsPath::Userspace(why) = connection_path(listener, &facts) {
            return Err(HandOff::Stay(Box::new(self), why));
        }
        if let Err(e) = zcopy::ktls::attach(sock.as_fd()) {
            return Err(HandOff::Stay(Box::new(self), Why::Attach(e.to_string())));
        }
        let (tx, rx, rest) = self
            .extract_keys()
            .map_err(|e| HandOff::Broken(std::io::Error::other(e)))?;
        zcopy::ktls::install(sock.as_fd(), &tx, &rx).map_err(HandOff::Broken)?;
        Ok(rest)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn probe(ok: bool) -> Probe {
        Probe {
            listed: Some(ok),
            attach: if ok {
                Ok(())
            } else {
                Err("No such file or directory (os error 2)".into())
            },
        }
    }

    fn ready() -> SessionFacts {
        SessionFacts {
            version: Some(ProtocolVersion::TLSv1_3),
            suite: Some(CipherSuite::TLS13_AES_128_GCM_SHA256),
            wants_write: false,
            at_record_boundary: true,
        }
    }

    #[test]
    fn listener_follows_mode_and_probe() {
        assert_eq!(listener_path(KtlsMode::Auto, &probe(true)), TlsPath::Kernel);
        assert_eq!(
            listener_path(KtlsMode::Off, &probe(true)),
            TlsPath::Userspace(Why::Disabled)
        );
        let p = listener_path(KtlsMode::Auto, &probe(false));
        assert!(
            matches!(&p, TlsPath::Userspace(Why::NoUlp(t)) if t.starts_with("kernel has no tls ULP")),
            "{p:?}"
        );
        assert!(
            p.to_string()
                .starts_with("userspace TLS (kernel has no tls ULP"),
            "{p}"
        );
    }

    #[test]
    fn connection_goes_to_the_kernel_only_when_everything_allows() {
        let k = TlsPath::Kernel;
        assert_eq!(connection_path(&k, &ready()), TlsPath::Kernel);
        let off = TlsPath::Userspace(Why::Disabled);
        assert_eq!(connection_path(&off, &ready()), off);
        let cases = [
            (
                SessionFacts {
                    version: None,
                    suite: None,
                    ..ready()
                },
                Why::Handshaking,
            ),
            (
                SessionFacts {
                    wants_write: true,
                    ..ready()
                },
                Why::PendingWrite,
            ),
            (
                SessionFacts {
                    at_record_boundary: false,
                    ..ready()
                },
                Why::MidRecord,
            ),
            (
                SessionFacts {
                    suite: Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA),
                    ..ready()
                },
                Why::Cipher(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA),
            ),
            (
                SessionFacts {
                    version: Some(ProtocolVersion::TLSv1_1),
                    ..ready()
                },
                Why::Version(ProtocolVersion::TLSv1_1),
            ),
        ];
        for (facts, why) in cases {
            assert_eq!(
                connection_path(&k, &facts),
                TlsPath::Userspace(why),
                "{facts:?}"
            );
        }
    }

    #[test]
    fn every_suite_rustls_offers_here_is_one_the_kernel_has() {
        for s in rustls::crypto::ring::default_provider().cipher_suites {
            assert!(kernel_has(s.suite()), "{:?}", s.suite());
        }
    }
}
