//! Kernel TLS (kTLS): whether this kernel encrypts TLS records itself, and handing
//! it one connection's traffic keys so file bodies can leave by sendfile/splice.
//!
//! Nothing here speaks TLS: a TLS library does the handshake and gives us, per
//! direction, the protocol version, the AEAD key and 12-byte IV, and the next record
//! sequence number ([`TrafficKeys`]). [`attach`] puts the "tls" upper-layer protocol
//! on a connected TCP socket (until keys are installed it still passes bytes through
//! unchanged), and [`install`] hands the kernel both directions' keys.

use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

use crate::sys::ktls as sys;
pub use crate::sys::ktls::CryptoInfo;

/// Where the kernel lists the upper-layer protocols it has loaded.
pub const AVAILABLE_ULP: &str = "/proc/sys/net/ipv4/tcp_available_ulp";

/// TLS protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// One direction's AEAD key and full 12-byte IV, as TLS key derivation produces them.
#[derive(Clone, PartialEq, Eq)]
pub enum Cipher {
    /// AES-128-GCM.
    AesGcm128 {
        /// Key.
        key: [u8; 16],
        /// IV (TLS 1.2: 4-byte salt then 8 bytes; TLS 1.3: the whole static IV).
        iv: [u8; 12],
    },
    /// AES-256-GCM.
    AesGcm256 {
        /// Key.
        key: [u8; 32],
        /// IV, as for AES-128-GCM.
        iv: [u8; 12],
    },
    /// ChaCha20-Poly1305.
    Chacha20Poly1305 {
        /// Key.
        key: [u8; 32],
        /// IV.
        iv: [u8; 12],
    },
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material is never printed.
        f.write_str(match self {
            Cipher::AesGcm128 { .. } => "AesGcm128",
            Cipher::AesGcm256 { .. } => "AesGcm256",
            Cipher::Chacha20Poly1305 { .. } => "Chacha20Poly1305",
        })
    }
}

/// What the kernel needs for one direction of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficKeys {
    /// Protocol version.
    pub version: TlsVersion,
    /// Cipher, key and IV.
    pub cipher: Cipher,
    /// Sequence number of the next record in this direction.
    pub seq: u64,
}

/// The kernel's `tls12_crypto_info_*` struct for `keys` (TLS 1.2 and 1.3 share it:
/// AES-GCM splits the IV into a 4-byte salt and 8 bytes of IV; ChaCha20 has no salt).
pub fn crypto_info(keys: &TrafficKeys) -> CryptoInfo {
    let version = match keys.version {
        TlsVersion::Tls12 => libc::TLS_1_2_VERSION,
        TlsVersion::Tls13 => libc::TLS_1_3_VERSION,
    };
    let rec_seq = keys.seq.to_be_bytes();
    let iv = match &keys.cipher {
        Cipher::AesGcm128 { iv, .. }
        | Cipher::AesGcm256 { iv, .. }
        | Cipher::Chacha20Poly1305 { iv, .. } => iv,
    };
    let (salt, rest) = split_iv(iv);
    match &keys.cipher {
        Cipher::AesGcm128 { key, .. } => {
            CryptoInfo::AesGcm128(libc::tls12_crypto_info_aes_gcm_128 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_AES_GCM_128,
                },
                iv: rest,
                key: *key,
                salt,
                rec_seq,
            })
        }
        Cipher::AesGcm256 { key, .. } => {
            CryptoInfo::AesGcm256(libc::tls12_crypto_info_aes_gcm_256 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_AES_GCM_256,
                },
                iv: rest,
                key: *key,
                salt,
                rec_seq,
            })
        }
        Cipher::Chacha20Poly1305 { key, iv } => {
            CryptoInfo::Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_CHACHA20_POLY1305,
                },
                iv: *iv,
                key: *key,
                salt: [],
                rec_seq,
            })
        }
    }
}

/// AES-GCM's IV as the kernel takes it: a 4-byte salt, then 8 bytes.
fn split_iv(iv: &[u8; 12]) -> ([u8; 4], [u8; 8]) {
    let mut salt = [0; 4];
    let mut rest = [0; 8];
    salt.copy_from_slice(&iv[..4]);
    rest.copy_from_slice(&iv[4..]);
    (salt, rest)
}

/// Attach the "tls" upper-layer protocol to a connected TCP socket. Harmless until
/// [`install`]: the socket keeps passing bytes through unchanged. Fails with ENOENT
/// where the kernel has no tls module.
pub fn attach<Fd: AsFd>(sock: Fd) -> io::Result<()> {
    sys::set_tcp_ulp(sock, "tls")
}

/// Hand the kernel both directions' keys; from then on it encrypts what is written
/// to `sock` and decrypts what is read from it. The socket must have been
/// [`attach`]ed and all earlier records sent and received in user space.
pub fn install<Fd: AsFd>(sock: Fd, tx: &TrafficKeys, rx: &TrafficKeys) -> io::Result<()> {
    set_keys(sock.as_fd(), Direction::Tx, tx)?;
    set_keys(sock.as_fd(), Direction::Rx, rx)
}

/// Which way a key works.
pub use crate::sys::ktls::Half as Direction;

/// Install one direction's keys: the first time (see [`install`]) or after a TLS 1.3
/// key update (kernels that support rekeying take new keys the same way).
pub fn set_keys<Fd: AsFd>(sock: Fd, direction: Direction, keys: &TrafficKeys) -> io::Result<()> {
    sys::set_crypto_info(sock, direction, &crypto_info(keys))
}

/// Send one TLS handshake message (content type 22) on a socket after [`install`]:
/// a KeyUpdate.
pub fn send_handshake<Fd: AsFd>(sock: Fd, message: &[u8]) -> io::Result<()> {
    let n = sys::send_record(sock, HANDSHAKE, message)?;
    if n == message.len() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "handshake record: {n} of {} bytes sent",
            message.len()
        )))
    }
}

/// TLS content type of alerts.
const ALERT: u8 = 21;
/// TLS content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// TLS content type of application data.
const APPLICATION_DATA: u8 = 23;

/// What one [`recv`] from a kTLS socket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `n` bytes of application data at the start of the buffer.
    Data(usize),
    /// The peer closed the TCP connection.
    Eof,
    /// An alert record: close_notify is description 0; any alert ends the connection.
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// Alert description (0: close_notify).
        description: u8,
    },
    /// A record of another type (22: a handshake message such as KeyUpdate).
    Other {
        /// TLS content type.
        content_type: u8,
        /// Its plaintext length.
        len: usize,
    },
}

/// Read from a socket after [`install`]: application data, or the control record
/// the kernel stopped at (a plain `read` fails with EIO on those).
pub fn recv<Fd: AsFd>(sock: Fd, buf: &mut [u8]) -> io::Result<Received> {
    let (n, record_type) = sys::recv_record(sock, buf)?;
    Ok(match record_type {
        _ if n == 0 && record_type.is_none() => Received::Eof,
        None | Some(APPLICATION_DATA) => Received::Data(n),
        Some(ALERT) if n >= 2 => Received::Alert {
            level: buf[0],
            description: buf[1],
        },
        Some(content_type) => Received::Other {
            content_type,
            len: n,
        },
    })
}

/// Send a close_notify alert on a socket after [`install`].
pub fn send_close_notify<Fd: AsFd>(sock: Fd) -> io::Result<()> {
    // Level warning (1), description close_notify (0).
    match sys::send_record(sock, ALERT, &[1, 0])? {
        2 => Ok(()),
        n => Err(io::Error::other(format!(
            "close_notify: {n} of 2 bytes sent"
        ))),
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whether [`AVAILABLE_ULP`] lists "tls" (`None`: the file could not be read).
    pub listed: Option<bool>,
    /// What attaching "tls" to a real connected TCP socket gave (error text if not).
    pub attach: Result<(), String>,
}

impl Probe {
    /// kTLS can be used here: attaching the ULP to a connected socket worked.
    pub fn available(&self) -> bool {
        self.attach.is_ok()
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.attach, self.listed) {
            (Ok(()), _) => f.write_str("kernel has the tls ULP"),
            (Err(e), Some(false)) => write!(
                f,
                "kernel has no tls ULP ({AVAILABLE_ULP} lacks tls; TCP_ULP: {e})"
            ),
            (Err(e), _) => write!(f, "kernel has no tls ULP (TCP_ULP: {e})"),
        }
    }
}

/// Whether this kernel can take TLS keys: reads [`AVAILABLE_ULP`], then attaches
/// "tls" to a connected loopback TCP socket (which may load the module).
pub fn probe() -> Probe {
    let listed = std::fs::read_to_string(AVAILABLE_ULP)
        .ok()
        .map(|s| s.split_whitespace().any(|u| u == "tls"));
    let attach = loopback_pair()
        .and_then(|(client, _server)| attach(&client))
        .map_err(|e| e.to_string());
    Probe { listed, attach }
}

fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (s, _) = l.accept()?;
    Ok((c, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(version: TlsVersion, cipher: Cipher) -> TrafficKeys {
        TrafficKeys {
            version,
            cipher,
            seq: 0x0102_0304_0506_0708,
        }
    }

    const IV: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn aes_gcm_128_splits_salt_and_iv() {
        let k = keys(
            TlsVersion::Tls13,
            Cipher::AesGcm128 {
                key: [0xaa; 16],
                iv: IV,
            },
        );
        let CryptoInfo::AesGcm128(i) = crypto_info(&k) else {
            panic!("wrong struct")
        };
        assert_eq!(i.info.version, 0x0304);
        assert_eq!(i.info.cipher_type, 51);
        assert_eq!(i.salt, [1, 2, 3, 4]);
        assert_eq!(i.iv, [5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(i.key, [0xaa; 16]);
        assert_eq!(i.rec_seq, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn aes_gcm_256_tls12() {
        let k = keys(
            TlsVersion::Tls12,
            Cipher::AesGcm256 {
                key: [0xbb; 32],
                iv: IV,
            },
        );
        let CryptoInfo::AesGcm256(i) = crypto_info(&k) else {
            panic!("wrong struct")
        };
        assert_eq!(i.info.version, 0x0303);
        assert_eq!(i.info.cipher_type, 52);
        assert_eq!(i.salt, [1, 2, 3, 4]);
        assert_eq!(i.iv, [5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(i.key, [0xbb; 32]);
    }

    #[test]
    fn chacha_keeps_the_whole_iv() {
        let k = keys(
            TlsVersion::Tls13,
            Cipher::Chacha20Poly1305 {
                key: [0xcc; 32],
                iv: IV,
            },
        );
        let CryptoInfo::Chacha20Poly1305(i) = crypto_info(&k) else {
            panic!("wrong struct")
        };
        assert_eq!(i.info.cipher_type, 54);
        assert_eq!(i.iv, IV);
        assert_eq!(i.key, [0xcc; 32]);
        assert_eq!(i.rec_seq, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn probe_agrees_with_a_real_socket_and_says_why() {
        let p = probe();
        let text = p.to_string();
        if p.available() {
            assert_eq!(text, "kernel has the tls ULP");
        } else {
            assert!(text.starts_with("kernel has no tls ULP"), "{text}");
            println!("skipped: {text}");
        }
    }

    #[test]
    fn recv_on_plain_tcp_is_data_then_eof() {
        let (a, b) = loopback_pair().unwrap();
        std::io::Write::write_all(&mut &b, b"abc").unwrap();
        drop(b);
        let mut buf = [0u8; 8];
        assert_eq!(recv(&a, &mut buf).unwrap(), Received::Data(3));
        assert_eq!(recv(&a, &mut buf).unwrap(), Received::Eof);
    }

    #[test]
    fn debug_never_prints_keys() {
        let k = keys(
            TlsVersion::Tls13,
            Cipher::AesGcm128 {
                key: [0x5a; 16],
                iv: IV,
            },
        );
        let s = format!("{k:?} {:?}", crypto_info(&k));
        assert!(!s.contains("90, 90"), "{s}"); // 0x5a as decimal
        assert!(!s.contains("5a"), "{s}");
        assert!(s.contains("AesGcm128"), "{s}");
    }
}
