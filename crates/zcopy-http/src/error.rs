//! Why the server could not start or reload.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The root is missing or not a directory.
    #[error("cannot serve {}: {source}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. address in use).
        #[source]
        source: io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log {}: {source}", path.display())]
    AccessLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The HTTPS listeners' certificate or key could not be loaded.
    #[error("{0}")]
    Tls(#[from] zcopy_tls::LoadError),
    /// HTTPS listeners were asked for without a certificate and key.
    #[error("HTTPS listeners need a certificate and key (--tls-cert, --tls-key)")]
    NoCertificate,
    /// A reload asked for what the running server can't do without a restart.
    #[error("{0}")]
    Refused(String),
    /// Anything else (creating the event loops or threads).
    #[error(transparent)]
    Io(#[from] io::Error),
}
