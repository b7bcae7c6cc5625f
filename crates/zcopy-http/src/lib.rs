//! zcopy-http: a static HTTP/1.1 file server that sends from page cache to socket.
//!
//! Data flows one way: [`server`] binds and starts the workers, a [`driver`] event loop
//! owns the sockets and carries out what each connection's sans-I/O core ([`proto`])
//! asks; the core parses a [`request`], [`handler`] turns it into a response plan using
//! [`path`] (safe resolution beneath the root), [`conditional`], [`range`] and
//! [`listing`], [`head`] formats the response head, and the body goes out through a
//! `zcopy` engine. Nothing here knows which engine runs; nothing in `zcopy` knows HTTP.
//! On HTTPS listeners a `zcopy-tls` session sits between the socket and the core
//! ([`driver::tls`]); after a kTLS hand-off the connection is plain TCP again for
//! sending.
#![forbid(unsafe_code)]

pub mod access;
pub mod access_log;
pub mod archive;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod conditional;
pub mod config;
pub mod driver;
pub mod encoding;
pub mod error;
pub mod handler;
pub mod head;
pub(crate) mod listen;
pub mod listing;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod path;
pub mod plan;
pub(crate) mod pool;
pub mod proto;
pub mod range;
pub mod redirect;
pub mod request;
pub mod rules;
pub mod server;
pub(crate) mod shutdown;
pub mod site_config;
pub mod stats;
pub mod watch;

/// Locks `m`, also after a panic elsewhere (the state stays usable).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
