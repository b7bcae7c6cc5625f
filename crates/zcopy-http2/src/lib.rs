//! zcopy-http2: HTTP/2 (RFC 9113) without I/O. Bytes go in ([`conn::Conn::feed`]);
//! events (a request is ready, a stream was reset) and the bytes to write come out.
//! The caller answers each request with a status, fields and body bytes it pushes
//! as DATA frames within the peer's windows. No files, no server settings, no log,
//! no counters: every limit is a field of [`conn::Settings`].
//!
//! Attack budgets live here, each tested with bytes only: resets (either side's,
//! CVE-2023-44487 and CVE-2025-8671), header blocks (bytes and CONTINUATION frames),
//! HPACK (table and decoded list), control frames that ask for an answer or do
//! nothing, and streams beyond the concurrency limit.
#![forbid(unsafe_code)]

pub mod conn;
pub mod frame;
pub mod hpack;
mod hpack_tables;
pub mod request;

pub use conn::{Conn, Event, Settings};
pub use frame::PREFACE;
