//! The engine suite: every engine, every fd pair it accepts, byte-exact.
//!
//! Run it again with `ZCOPY_DISABLE=<engine>` (or `<engine>@<bytes>`) to force that
//! engine to report "unsupported" and check the next one finishes the job.

mod util;

mod copy_range;
mod direct;
mod fallback;
mod mmap;
mod msg_zerocopy;
mod read_write;
mod reuse;
#[cfg(feature = "server")]
mod ring_send;
mod sendfile;
mod splice;
mod tee;
mod truncation;
mod uring;
mod vmsplice;
