//! zcopy-http: a static HTTP/1.1 file server that sends from page cache to socket.
//!
//! Three layers, each importing only downward:
//! - `zcopy-http1`: HTTP/1.1 without I/O ([`request`], [`range`], [`conditional`],
//!   [`head`], the response [`plan`], the connection state machine [`proto`]). It
//!   knows bytes, events and the time; no file system, settings, log or counters.
//! - `zcopy-site`: what is served, from a parsed request to a plan ([`handler`],
//!   [`path`], [`listing`], [`archive`], [`rules`], [`access`], [`auth`],
//!   [`encoding`], [`cache`]...), under a [`site_config::SiteConfig`]. No socket.
//! - this crate, the server: [`server`] binds and starts the workers, a [`driver`]
//!   event loop owns the sockets, answers each core's ready requests from the site
//!   and carries out the plans through a `zcopy` engine, [`stats`] and
//!   [`access_log`] take what the core reports, [`config`] splits into the core's
//!   and the site's settings. Nothing here knows which engine runs; nothing in
//!   `zcopy` knows HTTP. On HTTPS listeners a `zcopy-tls` session sits between the
//!   socket and the core ([`driver::tls`]); after a kTLS hand-off the connection is
//!   plain TCP again for sending.
#![forbid(unsafe_code)]

// The lower layers' modules under their old paths, for the CLI, the bench, the fuzz
// targets and this crate's own `crate::...` paths.
pub use zcopy_http1::{conditional, head, plan, proto, range, request};
pub(crate) use zcopy_site::lock;
pub use zcopy_site::{
    access, archive, auth, cache, encoding, handler, listing, pages, path, redirect, rules,
    site_config, snapshot, watch,
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
