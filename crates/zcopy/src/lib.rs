//! zcopy: move bytes between file descriptors with the fewest CPU copies Linux allows.
//!
//! Data flows one way: a caller builds a [`plan::Plan`] from the kinds of its two fds
//! ([`fdkind::FdKind`]), and [`transfer::Transfer`] runs it, one [`engine::Engine`] at
//! a time, falling back to the next engine from the exact offset reached when one
//! turns out not to work here. All `unsafe` lives in the private `sys` module.
#![deny(unsafe_code)]

pub mod activation;
pub mod engine;
mod error;
pub mod fanout;
pub mod fdkind;
pub mod ktls;
pub mod lease;
pub mod peer;
pub mod plan;
pub mod probe;
pub mod profile;
pub mod ring;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod transfer;

pub use engine::{Engine, EngineKind, Src};
pub use error::{Fallback, FallbackReason, ProbeError, TransferError, UnknownEngine};
pub use fdkind::FdKind;
pub use peer::{LocalReason, PeerClass, PeerClassifier};
pub use plan::{LeaseHold, Plan, Preference};
pub use stats::{Stats, Usage};
pub use transfer::{Forced, Report, Transfer};
