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

// The lower layers' modules under their old paths, for the CLI, the bench, the fuzz
// targets and this crate's own `crate::...` paths.
pub use zcopy_http1::{conditional, head, plan, proto, range, request};
pub(crate) use zcopy_site::lock;
pub use zcopy_site::{
    access, archive, auth, cache, encoding, handler, listing, pages, path, redirect, rules,
    site_config, watch,
};

pub mod access_log;
pub mod budget;
pub mod config;
pub mod driver;
pub mod error;
pub(crate) mod listen;
pub mod live;
pub mod metrics;
pub(crate) mod pool;
pub mod server;
pub(crate) mod shutdown;
pub mod stats;
