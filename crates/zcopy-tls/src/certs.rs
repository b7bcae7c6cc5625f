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
    /// The files loaded, and what they held.
    current: RwLock<(CertFiles, Arc<CertifiedKey>)>,
    provider: Arc<CryptoProvider>,
}

impl CertStore {
    /// Load `files` once; fails as [`load::load`] does.
    pub fn open(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, LoadError> {
        let first = load::load(&files, &provider)?;
        Ok(Arc::new(CertStore {
            current: RwLock::new((files, first)),
            provider,
        }))
    }

    /// Read the files again and present the new certificate to the next
    /// handshakes. On error the old certificate stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        let files = self.files();
        self.reload_from(files)
    }

    /// Load `files` (other paths than before, after a configuration change) and,
    /// when they hold a good pair, present it to the next handshakes and read these
    /// files on later reloads. On error the old files and certificate stay.
    pub fn reload_from(&self, files: CertFiles) -> Result<(), LoadError> {
        let fresh = self.load(&files)?;
        self.put(files, fresh);
        Ok(())
    }

    /// Loads `files` with this store's provider, changing nothing (see
    /// [`CertStore::put`]).
    pub fn load(&self, files: &CertFiles) -> Result<Arc<CertifiedKey>, LoadError> {
        load::load(files, &self.provider)
    }

    /// Presents `key`, loaded from `files`, to the next handshakes.
    pub fn put(&self, files: CertFiles, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (files, key);
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The files this store loads.
    pub fn files(&self) -> CertFiles {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// When the certificate presented now stops being valid (its leaf's notAfter);
    /// `None` when it can't be read.
    pub fn not_after(&self) -> Option<std::time::SystemTime> {
        load::not_after(self.current().end_entity_cert().ok()?)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
