//! zcopy-site: what is served. From a parsed request to a response plan: [`path`]
//! resolution beneath the root, [`handler`] (files, [`listing`]s, [`archive`]s,
//! [`rules`], [`access`] and [`auth`], precompressed [`encoding`] sidecars, generated
//! [`pages`]), the worker's file [`cache`] and its [`watch`]es, under the settings of
//! [`site_config`]. Knows no socket and no event loop.
#![forbid(unsafe_code)]

pub mod access;
pub mod archive;
pub mod auth;
pub mod cache;
pub mod encoding;
pub mod handler;
pub mod listing;
pub mod offload;
pub mod pages;
pub mod path;
pub mod redirect;
pub mod rules;
pub mod site;
pub mod site_config;
pub mod snapshot;
pub mod upload;
pub mod watch;
pub mod webdav;

// The protocol core's modules under their old paths (`crate::request`, ...).
pub use zcopy_http1::{conditional, head, plan, range, request};

/// Locks `m`, also after a panic elsewhere (the state stays usable).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
