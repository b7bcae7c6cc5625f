//! The `zcopy` binary, run as users run it.

mod config;
mod cp;
mod engines;
mod reload;
mod sendrecv;
mod sendrecv_netns;
mod serve;
mod soak;
mod systemd;
mod tee;
mod util;
