//! Test PKI (a CA and a leaf, made with rcgen), rustls clients, and an in-memory
//! pump between a client and a [`Session`].
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rcgen::{CertificateParams, KeyPair};

#[path = "../../../../tests/support/pki.rs"]
mod pki;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection};
use zcopy_tls::{CertFiles, Limits, Session, TlsListener, TlsOptions};

/// Key algorithms the tests cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rsa,
    EcdsaP256,
    Ed25519,
}

pub const ALGS: [Alg; 3] = [Alg::Rsa, Alg::EcdsaP256, Alg::Ed25519];

const RSA_KEY: &str = include_str!("../data/rsa2048.key.pem");

pub fn key_pair(alg: Alg) -> KeyPair {
    match alg {
        // ring cannot make RSA keys: a fixed test-only key.
        Alg::Rsa => {
            KeyPair::from_pkcs8_pem_and_sign_algo(RSA_KEY, &rcgen::PKCS_RSA_SHA256).unwrap()
        }
        Alg::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
    }
}

/// A CA, a leaf for "localhost" and 127.0.0.1 it signed, and both on disk.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateDer<'static>,
    pub files: CertFiles,
    pub leaf_pem: String,
    pub ca_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(alg: Alg) -> Pki {
        Pki::with(alg, |_| {})
    }

    /// `tweak` may change the leaf's parameters (names, validity).
    pub fn with(alg: Alg, tweak: impl FnOnce(&mut CertificateParams)) -> Pki {
        let leaf_key = key_pair(alg);
        let (ca, leaf) = pki::ca_and_leaf(&leaf_key, tweak);

        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("chain.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
        Pki {
            ca: ca.der().clone(),
            files: CertFiles { cert, key },
            leaf_pem: leaf.pem(),
            ca_pem: ca.pem(),
            key_pem: leaf_key.serialize_pem(),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn listener(&self, opts: &TlsOptions) -> TlsListener {
        TlsListener::new(self.files.clone(), opts).unwrap()
    }

    /// A client trusting this CA, offering `alpn`, limited to `versions`.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        pki::client_config(&self.ca, versions, alpn)
    }
}

pub const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
pub const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
pub const H1: &[&[u8]] = &[b"http/1.1"];

pub fn client(config: &Arc<ClientConfig>, name: &str) -> ClientConnection {
    ClientConnection::new(
        config.clone(),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap()
}

pub fn session(listener: &TlsListener) -> Session {
    Session::new(&listener.config, Instant::now(), &Limits::default()).unwrap()
}

/// What the server side saw while pumping.
#[derive(Debug, Default)]
pub struct Seen {
    pub plaintext: Vec<u8>,
    pub handshake_done: usize,
    pub peer_closed: bool,
    /// Plaintext the client decrypted.
    pub client: Vec<u8>,
}

/// Move bytes both ways until neither side has anything to say. Returns the
/// first error either side hit.
pub fn pump(c: &mut ClientConnection, s: &mut Session, seen: &mut Seen) -> Result<(), String> {
    for _ in 0..1000 {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let fed = s
                .feed(&buf, &mut seen.plaintext)
                .map_err(|e| format!("server: {e}"))?;
            seen.handshake_done += fed.handshake_done as usize;
            seen.peer_closed |= fed.peer_closed;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()
                    .map_err(|e| format!("client: {e}"))?;
                seen.client.extend(client_read(c));
            }
        }
        if !moved {
            return Ok(());
        }
    }
    Err("pump did not settle".into())
}

/// Everything the client has decrypted so far.
pub fn client_read(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.reader().read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("client read: {e}"),
        }
    }
}

pub fn client_send(c: &mut ClientConnection, data: &[u8]) {
    c.writer().write_all(data).unwrap();
}

/// A deterministic, non-repeating test pattern.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A client and a session for `alg` that have finished their handshake in memory.
pub fn handshaken(
    alg: Alg,
    versions: &[&'static rustls::SupportedProtocolVersion],
    opts: &TlsOptions,
) -> (Pki, ClientConnection, Session) {
    let pki = Pki::new(alg);
    let l = pki.listener(opts);
    let mut c = client(&pki.client_config(versions, H1), "localhost");
    let mut s = session(&l);
    pump(&mut c, &mut s, &mut Seen::default()).unwrap();
    (pki, c, s)
}

/// A rustls client over TCP speaking the tests' line protocol.
pub type LineClient = rustls::StreamOwned<ClientConnection, std::net::TcpStream>;

/// Connect to `addr` as "localhost".
pub fn connect_lines(
    config: &Arc<ClientConfig>,
    addr: std::net::SocketAddr,
) -> std::io::BufReader<LineClient> {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    std::io::BufReader::new(rustls::StreamOwned::new(client(config, "localhost"), sock))
}

/// `GET <off> <len>`: the server answers `OK <len>` and the bytes.
pub fn get(c: &mut std::io::BufReader<LineClient>, off: u64, len: u64) -> Vec<u8> {
    use std::io::BufRead;
    c.get_mut()
        .write_all(format!("GET {off} {len}\n").as_bytes())
        .unwrap();
    let mut head = String::new();
    c.read_line(&mut head).unwrap();
    assert_eq!(head, format!("OK {len}\n"));
    let mut body = vec![0u8; len as usize];
    c.read_exact(&mut body).unwrap();
    body
}
