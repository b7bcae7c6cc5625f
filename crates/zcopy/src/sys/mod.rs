//! The only place with `unsafe`: thin, safe wrappers over what rustix lacks.
//!
//! Each function names the C call it makes and links its man page; each `unsafe`
//! block says why it is sound.

#[cfg(feature = "server")]
pub mod activation;
#[cfg(feature = "server")]
pub mod event_ring;
#[cfg(feature = "server")]
pub mod ktls;
pub mod lease;
pub mod mem;
pub mod memfd;
pub mod rusage;
pub mod sock;
pub mod uring;
pub mod vmsplice;
pub mod writeback;
pub mod zerocopy;
