//! Sockets handed over by a service manager: systemd's socket-activation protocol
//! (sd_listen_fds(3)): `LISTEN_PID` names this process, `LISTEN_FDS` says how many
//! descriptors follow from fd 3 on.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST: RawFd = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors passed to this process, owned (and close-on-exec) from now on;
/// empty when `LISTEN_PID` is unset or names another process. Each must be an open
/// listening stream socket. Only the first call takes them; later calls get none.
pub fn take_listen_fds() -> io::Result<Vec<OwnedFd>> {
    let pid = std::env::var("LISTEN_PID").ok();
    if pid.as_deref().and_then(|p| p.trim().parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or_else(|| io::Error::other("LISTEN_FDS is not a small number"))?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let mut fds = Vec::with_capacity(n as usize);
    for raw in FIRST..FIRST + n {
        // SAFETY: only borrowed for the checks below, while nothing else in this
        // process uses descriptor numbers 3.. it did not open itself (the protocol
        // hands them to the process; TAKEN makes this the only taker). A closed
        // number fails the fcntl with EBADF, which we report instead of owning it.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        rustix::io::fcntl_getfd(fd)
            .map_err(|e| io::Error::other(format!("inherited fd {raw}: {e}")))?;
        let listening = rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false);
        let stream = rustix::net::sockopt::socket_type(fd)
            .is_ok_and(|t| t == rustix::net::SocketType::STREAM);
        if !listening || !stream {
            return Err(io::Error::other(format!(
                "inherited fd {raw} is not a listening stream socket"
            )));
        }
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        // SAFETY: the descriptor is open (checked above) and was passed to this
        // process to own; no other OwnedFd holds it (TAKEN guards against a second
        // take), so ownership — and the close on drop — is ours alone.
        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(fds)
}
