//! zcopy-net: send files and directory trees over TCP with no user-space copy of the
//! data at either end — sendfile (or another engine) out, splice socket → file in.
//!
//! The framing is in [`proto`] and documented in `docs/protocol.md`; [`send`] and
//! [`recv`] are the two ends; [`accept`] admits many senders at once; [`dest`] keeps
//! a hostile sender inside the output directory.
#![forbid(unsafe_code)]

pub mod accept;
pub mod dest;
pub mod proto;
pub mod recv;
pub mod send;
