//! The `zcopy` binary, run as users run it.

mod cp;
mod engines;
mod sendrecv;
mod serve;
mod soak;
mod tee;
mod util;
