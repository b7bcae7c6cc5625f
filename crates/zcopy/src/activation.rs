//! systemd socket activation: the listening sockets a service manager passed in
//! (`LISTEN_FDS`, `LISTEN_PID`, fds from 3 on).

pub use crate::sys::activation::{FIRST, take_listen_fds};
