//! The rustls server configuration of a TLS listener.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;

use crate::certs::CertStore;
use crate::load::{CertFiles, LoadError};

/// The ALPN protocol always spoken.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// HTTP/2's ALPN protocol, offered when [`TlsOptions::h2`] says so.
pub const ALPN_H2: &[u8] = b"h2";

/// Choices for one TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Sessions remembered for resumption by session ID (TLS 1.2) or, without
    /// `tickets`, by stateful TLS 1.3 ticket; 0 turns the cache off.
    pub session_cache: usize,
    /// Issue stateless session tickets (TLS 1.2 and 1.3), keys rotated every 6 h.
    pub tickets: bool,
    /// Let traffic secrets be taken out after the handshake, for kTLS. Only set
    /// when the kernel path may be used.
    pub ktls: bool,
    /// Offer HTTP/2 by ALPN (`h2` before `http/1.1`).
    pub h2: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            session_cache: 4096,
            tickets: true,
            ktls: false,
            h2: false,
        }
    }
}

/// The crypto provider used for everything: *ring* (builds with a C compiler only).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A listener's TLS setup: its reloadable certificate and its rustls config.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The certificate (reload on SIGHUP with [`CertStore::reload`]).
    pub certs: Arc<CertStore>,
    /// Shared by every connection of the listener.
    pub config: Arc<ServerConfig>,
}

impl TlsListener {
    /// Load the certificate and build the config: TLS 1.3 and 1.2, ALPN
    /// `http/1.1` (and `h2` first if asked), resumption by cache and tickets as `opts` says.
    pub fn new(files: CertFiles, opts: &TlsOptions) -> Result<TlsListener, LoadError> {
        let provider = provider();
        let certs = CertStore::open(files, provider.clone())?;
        let config = server_config(certs.clone(), provider, opts)?;
        Ok(TlsListener { certs, config })
    }
}

/// The rustls config for `certs` with `opts`.
pub fn server_config(
    certs: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    opts: &TlsOptions,
) -> Result<Arc<ServerConfig>, LoadError> {
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(LoadError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    c.alpn_protocols = match opts.h2 {
        true => vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()],
        false => vec![ALPN_HTTP11.to_vec()],
    };
    c.session_storage = if opts.session_cache > 0 {
        ServerSessionMemoryCache::new(opts.session_cache)
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    if opts.tickets {
        c.ticketer = rustls::crypto::ring::Ticketer::new().map_err(LoadError::Config)?;
    }
    c.enable_secret_extraction = opts.ktls;
    Ok(Arc::new(c))
}
