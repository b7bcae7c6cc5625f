//! The only place with `unsafe`: thin, safe wrappers over what rustix lacks.
//!
//! Each function names the C call it makes and links its man page; each `unsafe`
//! block says why it is sound.

pub mod activation;
pub mod event_ring;
pub mod ktls;
pub mod lease;
pub mod mem;
pub mod rusage;
pub mod sock;
pub mod uring;
pub mod vmsplice;
pub mod zerocopy;
