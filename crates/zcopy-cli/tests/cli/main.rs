//! The `zcopy` binary, run as users run it.

mod access_log;
mod bench;
mod config;
mod cp;
mod engines;
mod first_run;
mod metrics;
mod relisten;
mod reload;
mod sendrecv;
mod sendrecv_netns;
mod serve;
mod shutdown;
mod soak;
mod systemd;
mod tee;
mod tls;
mod util;
