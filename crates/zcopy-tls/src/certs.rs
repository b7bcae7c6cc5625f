//! One listener's certificate, swappable while the server runs (SIGHUP reload).

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::load::{self, CertFiles, LoadError};

/// The certificate a listener presents, reloadable from its files.
///
/// Every handshake, whatever SNI name it asks for (or none), gets the current
/// certificate; a client that asked for another name fails its own name check.
/// Sessions and tickets stay valid across a reload.
#[derive(Debug)]
pub struct CertStore {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Load `files` once; fails as [`load::load`] does.
    pub fn open(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, LoadError> {
        let first = load::load(&files, &provider)?;
        Ok(Arc::new(CertStore {
            files,
            provider,
            current: RwLock::new(first),
        }))
    }

    /// Read the files again and present the new certificate to the next
    /// handshakes. On error the old certificate stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        let fresh = load::load(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The files this store loads.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
