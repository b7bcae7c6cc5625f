//! File read leases (`F_SETLEASE`): another process that opens a leased file for
//! writing, or truncates it, waits until the holder lets go (at most the kernel's
//! `/proc/sys/fs/lease-break-time`), and the holder can see that it is waiting.

pub use crate::sys::lease::{ReadLease, breaking, take_until_close};
