//! The `zcopy` binary, run as users run it.

mod cp;
mod engines;
mod sendrecv;
mod sendrecv_netns;
mod serve;
mod soak;
mod tee;
mod tls;
mod util;
