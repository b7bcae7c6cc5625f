//! Reading a PEM certificate chain and private key into a rustls [`CertifiedKey`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The two files behind one listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
}

/// Why a certificate or key could not be loaded. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no `BEGIN CERTIFICATE` block.
    #[error("{path}: no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error(
        "{path}: no private key found (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A PEM block is malformed.
    #[error("{path}: malformed PEM: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key is not one rustls can sign with (RSA, ECDSA P-256/P-384, Ed25519).
    #[error("{path}: unusable private key: {detail}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The leaf certificate cannot be parsed.
    #[error("{path}: first certificate is not valid X.509: {detail}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The key is not the one the leaf certificate was issued for.
    #[error("{key} does not match the certificate in {cert} (their public keys differ)")]
    Mismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// When `cert` (X.509, DER) stops being valid: its notAfter; `None` when it can't
/// be read. (A small DER walk: TBSCertificate's validity is its fifth field after
/// the optional version.)
pub fn not_after(cert: &[u8]) -> Option<std::time::SystemTime> {
    let (_, cert_body, _) = der(cert)?; // Certificate
    let (_, mut tbs, _) = der(cert_body)?; // TBSCertificate
    let (tag, _, rest) = der(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // [0] version
    }
    for _ in 0..3 {
        tbs = der(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der(tbs)?;
    let (_, _, after) = der(validity)?; // notBefore
    let (tag, time, _) = der(after)?;
    let text = std::str::from_utf8(time).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if digits.len() == 12 => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        0x18 if digits.len() == 14 => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let secs = field(4)? * 3600 + field(6)? * 60 + field(8)?;
    let days = days_from_civil(year, month, day);
    let t = days * 86_400 + secs;
    let d = std::time::Duration::from_secs(t.unsigned_abs());
    if t >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
}

/// One DER element of `b`: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Read `files` and check that the key belongs to the leaf certificate.
pub fn load(files: &CertFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, LoadError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| LoadError::BadKey {
            path: files.key.clone(),
            detail: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(ck))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(LoadError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(e) => Err(LoadError::BadCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(path: &Path, e: pem::Error) -> LoadError {
    LoadError::BadPem {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        return Err(LoadError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => LoadError::NoKey {
            path: path.to_owned(),
        },
        e => bad_pem(path, e),
    })
}
