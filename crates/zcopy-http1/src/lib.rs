//! zcopy-http1: HTTP/1.1 without I/O. Bytes, events and the time go in; what to do
//! next ([`proto::Intent`]) and what ended ([`proto::Observer`]) come out. No server
//! settings, no log, no counters: the site answers a parsed [`request`] with a
//! [`plan`], the server's drivers carry it out.
#![forbid(unsafe_code)]

pub mod conditional;
pub mod fields;
pub mod head;
pub mod json;
pub mod pace;
pub mod plan;
pub mod proto;
pub mod range;
pub mod request;
