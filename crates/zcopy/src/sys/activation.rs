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
/// empty when `LISTEN_PID` is unset or names another process (it must equal
/// `getpid()`). Each must be an open listening stream socket inherited through
/// `exec` (so without close-on-exec: a descriptor with it set was opened by this
/// process and has an owner already). Every one is checked before any is taken: on
/// an error none is owned or closed here. Only the first call takes them; later
/// calls get none, so no descriptor gets a second owner.
pub fn take_listen_fds() -> io::Result<Vec<OwnedFd>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let n = std::env::var("LISTEN_FDS").ok();
    if !names_this_process(pid.as_deref()) {
        return Ok(Vec::new());
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    take_from(n.as_deref(), FIRST)
}

/// Whether a `LISTEN_PID` value is this process's id.
fn names_this_process(pid: Option<&str>) -> bool {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    pid.and_then(|p| p.trim().parse::<i32>().ok()) == Some(me)
}

/// Checks, then takes, `LISTEN_FDS` (the value `n`) descriptors from `first` on.
fn take_from(n: Option<&str>, first: RawFd) -> io::Result<Vec<OwnedFd>> {
    let n: RawFd = n
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or_else(|| io::Error::other("LISTEN_FDS is not a small number"))?;
    for raw in first..first + n {
        // SAFETY: only borrowed for the checks below, while nothing else in this
        // process uses descriptor numbers 3.. it did not open itself (the protocol
        // hands them to the process; TAKEN makes this the only taker). A closed
        // number fails the fcntl with EBADF, which we report instead of owning it.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let flags = rustix::io::fcntl_getfd(fd)
            .map_err(|e| io::Error::other(format!("inherited fd {raw}: {e}")))?;
        if flags.contains(rustix::io::FdFlags::CLOEXEC) {
            return Err(io::Error::other(format!(
                "fd {raw} was not inherited (close-on-exec is set: this process opened \
                 it): LISTEN_FDS/LISTEN_PID do not describe this process"
            )));
        }
        let listening = rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false);
        let stream = rustix::net::sockopt::socket_type(fd)
            .is_ok_and(|t| t == rustix::net::SocketType::STREAM);
        if !listening || !stream {
            return Err(io::Error::other(format!(
                "inherited fd {raw} is not a listening stream socket"
            )));
        }
    }
    let mut fds = Vec::with_capacity(n as usize);
    for raw in first..first + n {
        // SAFETY: as above; checked to be open just now.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        // SAFETY: the descriptor is open, inherited (no close-on-exec: nothing in
        // this process opened it) and was passed to this process to own; no other
        // OwnedFd holds it (TAKEN guards against a second take), so ownership —
        // and the close on drop — is ours alone.
        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::{AsFd, AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn listen_pid_must_be_this_process() {
        let me = std::process::id();
        assert!(names_this_process(Some(&me.to_string())));
        assert!(!names_this_process(Some(&(me + 1).to_string())));
        assert!(!names_this_process(Some("1")));
        assert!(!names_this_process(Some("")));
        assert!(!names_this_process(None));
    }

    /// A descriptor this process opened itself (close-on-exec set) is never taken:
    /// it already has an owner, which would close it a second time.
    #[test]
    fn a_descriptor_this_process_owns_is_not_taken() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let raw = l.as_raw_fd();
        let e = take_from(Some("1"), raw).expect_err("an owned fd");
        assert!(e.to_string().contains("not inherited"), "{e}");
        // Still open, still ours.
        rustix::io::fcntl_getfd(l.as_fd()).unwrap();
        l.set_nonblocking(true).unwrap();
        assert!(matches!(l.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
    }

    /// One bad descriptor among several: none is taken (nor closed).
    #[test]
    fn nothing_is_taken_when_one_is_wrong() {
        // Two consecutive numbers, high up: an "inherited" listener (no
        // close-on-exec) and a plain socket.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = rustix::io::fcntl_dupfd_cloexec(&l, 900).unwrap();
        let b = rustix::io::fcntl_dupfd_cloexec(&plain, a.as_raw_fd() + 1).unwrap();
        if b.as_raw_fd() != a.as_raw_fd() + 1 {
            eprintln!("skipped: no two consecutive free descriptors");
            return;
        }
        rustix::io::fcntl_setfd(&a, rustix::io::FdFlags::empty()).unwrap();
        rustix::io::fcntl_setfd(&b, rustix::io::FdFlags::empty()).unwrap();
        let first = a.as_raw_fd();
        let e = take_from(Some("2"), first).expect_err("fd 2 is not a listener");
        assert!(
            e.to_string().contains("not a listening stream socket"),
            "{e}"
        );
        // Both still open (the first was not taken and closed on the way out).
        rustix::io::fcntl_getfd(&a).unwrap();
        rustix::io::fcntl_getfd(&b).unwrap();
        // With only the good one, it is taken (and becomes close-on-exec).
        let raw_a = a.into_raw_fd();
        let got = take_from(Some("1"), raw_a).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_raw_fd(), raw_a);
        assert!(
            rustix::io::fcntl_getfd(&got[0])
                .unwrap()
                .contains(rustix::io::FdFlags::CLOEXEC)
        );
    }
}
