//! zcopy-tls: TLS for zcopy's servers, sans I/O.
//!
//! DESIGN NOTE (see the end of this comment).
#![forbid(unsafe_code)]

pub mod body;
pub mod certs;
pub mod config;
pub mod ktls;
pub mod limits;
pub mod load;
mod records;
pub mod session;
pub mod sniff;

pub use body::{BodyError, FILE_CHUNK, send_file_chunk};
pub use certs::CertStore;
pub use config::{ALPN_HTTP11, TlsListener, TlsOptions};
pub use ktls::{HandOff, KernelSession, KtlsMode, TlsPath, Why};
pub use limits::{HandshakeSlots, Limits};
pub use load::{CertFiles, LoadError};
pub use session::{Fed, Session, TlsError};
pub use sniff::{FirstBytes, PLAIN_HTTP_400};
