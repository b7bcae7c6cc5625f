//! Move bytes between file descriptors with the fewest CPU copies Linux allows:
//! `sendfile`, `splice`, `tee`, `vmsplice`, `copy_file_range`, `MSG_ZEROCOPY`,
//! io_uring, `mmap`, `O_DIRECT`, and plain `read`/`write` as the baseline that
//! always works. **Linux only.**
//!
//! # Quick start
//!
//! Copy a file to a socket (or a file, a pipe, a socket to a file...) with the best
//! engine for the pair; an engine that can't do the job here hands over to the
//! next one from the exact byte it reached:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! let mut file = tempfile::tempfile()?;
//! file.write_all(&[7u8; 100_000])?;
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut client = TcpStream::connect(listener.local_addr()?)?;
//! let (server, _) = listener.accept()?;
//! let reader = std::thread::spawn(move || {
//!     let mut got = Vec::new();
//!     client.read_to_end(&mut got).map(|_| got)
//! });
//!
//! // The whole file, from byte 0, to the socket.
//! let report = zcopy::copy_with(&file, &server, &zcopy::CopyOptions::new().offset(0))?;
//! drop(server);
//! assert_eq!(reader.join().unwrap()?, vec![7u8; 100_000]);
//! println!("{} bytes by {}", report.bytes, report.short()); // e.g. "sendfile"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The pieces
//!
//! - [`copy`] and [`copy_with`]: one blocking call; [`CopyOptions`] picks a range,
//!   an engine to try first ([`EngineKind`]), a calibration [`Profile`], engines
//!   forced off ([`Forced`]).
//! - [`Plan`]: the engines to try for a (source, sink) pair ([`FdKind`]), best
//!   first; [`Plan::for_peer`] for a file sent to a TCP peer, which leaves out the
//!   engines that send by reference when the peer's receive queue lives in this
//!   kernel ([`PeerClass`]) and the caller's read lease can't cover it
//!   ([`LeaseHold`]).
//! - [`Transfer`]: runs a plan a step at a time ([`Transfer::step`], for
//!   non-blocking sinks) or to the end ([`Transfer::run`]), and reports what ran
//!   ([`Report`]: each engine, its counters, why it handed over).
//! - [`fanout::fanout`]: one source to many outputs, with tee(2) when the source is
//!   a pipe.
//! - [`EngineKind::probe`] and [`probe::verify`]: what this kernel supports.
//! - [`Engine`]: one engine on its own, stepped by hand.
//!
//! Errors are typed: [`TransferError`] (with [`std::io::Error`] sources),
//! [`FallbackReason`], [`ProbeError`], [`UnknownEngine`].
//!
//! # No hidden I/O
//!
//! Nothing in the library reads the environment or a configuration file unless
//! asked: the profile comes from [`Profile::load_default`] (or
//! [`Profile::cached_default`]) and forced-off engines from [`Forced::from_env`]
//! (`ZCOPY_DISABLE`), each an explicit call the `zcopy` command line and server
//! make at start.
//!
//! # Features
//!
//! - `server`: the plumbing of the `zcopy` server (its io_uring event ring,
//!   systemd socket activation, kernel TLS key hand-off, a test switch for peer
//!   classes). Unstable: no semver promise, not for use outside zcopy's crates.
//!
//! Data flows one way: a caller builds a [`Plan`], and a [`Transfer`] runs it, one
//! [`Engine`] at a time. All `unsafe` lives in the private `sys` module.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod activation;
mod copy;
pub mod engine;
mod error;
pub mod fanout;
pub mod fdkind;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod gather;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod ktls;
pub mod lease;
pub mod lend;
pub mod peer;
mod pipe;
pub mod plan;
pub mod probe;
pub mod profile;
pub mod receive;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod ring;
pub mod snapshot;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod transfer;

pub use copy::{CopyOptions, copy, copy_with};
pub use engine::{Engine, EngineKind, Src};
pub use error::{Fallback, FallbackReason, ProbeError, TransferError, UnknownEngine};
pub use fdkind::FdKind;
pub use peer::{LocalReason, PeerClass, PeerClassifier};
pub use plan::{LeaseHold, Plan, Preference};
pub use profile::Profile;
pub use stats::{Stats, Usage};
pub use transfer::{Forced, Report, Transfer};

/// The crate README's code, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
