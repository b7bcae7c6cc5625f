//! A small io_uring, driven synchronously: every call submits its operations and
//! returns only after the kernel has posted all their completions (and, for
//! `SEND_ZC`, the notification that it is done with the memory) —
//! <https://man7.org/linux/man-pages/man7/io_uring.7.html>.
//!
//! Pushing a submission-queue entry is `unsafe` because the entry carries raw
//! pointers and fds the kernel uses later; waiting for the completions before
//! returning is what makes the safe API here sound: a borrowed buffer outlives
//! every use the kernel makes of it.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

/// `IORING_SEND_ZC_REPORT_USAGE` (`<linux/io_uring.h>`): ask the notification to say
/// whether the kernel copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's `res` when it copied.
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// The opcodes zcopy uses, as the kernel's probe reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// `IORING_OP_SPLICE`.
    pub splice: bool,
    /// `IORING_OP_SEND_ZC`.
    pub send_zc: bool,
    /// `IORING_OP_READ`.
    pub read: bool,
    /// `IORING_OP_WRITE`.
    pub write: bool,
}

/// What a `SEND_ZC` did.
#[derive(Debug)]
pub struct ZcSent {
    /// Bytes sent, or the send's error.
    pub result: io::Result<usize>,
    /// From the notification: did the kernel copy after all? `None` if the kernel
    /// posted no notification (nothing was sent).
    pub copied: Option<bool>,
}

/// Why `io_uring_setup` failed, naming `kernel.io_uring_disabled` when it is set.
pub fn setup_refused(e: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match disabled.as_str() {
        "" | "0" => format!("io_uring_setup: {e}"),
        d => format!("io_uring_setup: {e} (kernel.io_uring_disabled = {d})"),
    }
}

/// One operation's completion(s).
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    res: i32,
    notif: Option<u32>,
}

/// An io_uring instance.
pub struct Ring {
    ring: IoUring,
    enters: u64,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("entries", &self.ring.params().sq_entries())
            .field("enters", &self.enters)
            .finish()
    }
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// An offset for splice: `-1` means "no offset" (use/advance the file position, or
/// a stream).
fn splice_off(off: Option<u64>) -> i64 {
    off.map_or(-1, |o| o as i64)
}

impl Ring {
    /// `io_uring_setup(entries, &params)` —
    /// <https://man7.org/linux/man-pages/man2/io_uring_setup.2.html>. ENOSYS or EPERM
    /// when io_uring is disabled (`/proc/sys/kernel/io_uring_disabled`, seccomp).
    pub fn new(entries: u32) -> io::Result<Ring> {
        Ok(Ring {
            ring: IoUring::new(entries)?,
            enters: 0,
        })
    }

    /// `io_uring_register(fd, IORING_REGISTER_PROBE, ...)` —
    /// <https://man7.org/linux/man-pages/man2/io_uring_register.2.html>: which of the
    /// opcodes zcopy uses this kernel supports.
    pub fn ops(&self) -> io::Result<Ops> {
        let mut probe = Probe::new();
        self.ring.submitter().register_probe(&mut probe)?;
        Ok(Ops {
            splice: probe.is_supported(opcode::Splice::CODE),
            send_zc: probe.is_supported(opcode::SendZc::CODE),
            read: probe.is_supported(opcode::Read::CODE),
            write: probe.is_supported(opcode::Write::CODE),
        })
    }

    /// How many `io_uring_enter` calls this ring has made.
    pub fn enters(&self) -> u64 {
        self.enters
    }

    /// Submits `entries` and waits for every completion and notification.
    ///
    /// # Safety
    ///
    /// Every buffer an entry points to must be valid (for the access the opcode
    /// makes) until this function returns, and every fd it names must be open.
    unsafe fn run(&mut self, entries: &[squeue::Entry]) -> Vec<Outcome> {
        {
            let mut sq = self.ring.submission();
            assert!(
                sq.is_empty() && entries.len() <= sq.capacity(),
                "ring has room"
            );
            for (i, e) in entries.iter().enumerate() {
                let e = e.clone().user_data(i as u64);
                // SAFETY: the caller keeps every buffer of `e` valid until we return,
                // and we return only once all completions are in (below).
                unsafe { sq.push(&e) }.expect("checked: the queue has room");
            }
        }
        let mut out = vec![Outcome::default(); entries.len()];
        let mut waiting = entries.len();
        while waiting > 0 {
            self.enters += 1;
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                // Returning now — or unwinding, which frees the borrowed buffers
                // on the way — would leave the kernel using them (or submit stale
                // entries later): this cannot be recovered from, so abort.
                Err(e) => {
                    eprintln!("io_uring_enter failed with operations in flight: {e}");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                if cqueue::notif(cqe.flags()) {
                    out[i].notif = Some(cqe.result() as u32);
                } else {
                    out[i].res = cqe.result();
                    if cqueue::more(cqe.flags()) {
                        waiting += 1;
                    }
                }
                waiting -= 1;
            }
        }
        out
    }

    /// `IORING_OP_SPLICE` (see `splice(2)`): moves up to `len` bytes from `src` (at
    /// `off_in`, or its position/stream) to `dst`; one side must be a pipe.
    pub fn splice(
        &mut self,
        src: BorrowedFd<'_>,
        off_in: Option<u64>,
        dst: BorrowedFd<'_>,
        len: usize,
    ) -> io::Result<usize> {
        let e = opcode::Splice::new(
            types::Fd(src.as_raw_fd()),
            splice_off(off_in),
            types::Fd(dst.as_raw_fd()),
            -1,
            len.min(u32::MAX as usize) as u32,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build();
        // SAFETY: a splice entry points to no memory; both fds are borrowed for the
        // whole call.
        let out = unsafe { self.run(&[e]) };
        result(out[0].res)
    }

    /// Two `IORING_OP_SPLICE`s linked with `IOSQE_IO_LINK`: `src` → `pipe_w` (up to
    /// `len`), then `pipe_r` → `dst`, in one submission. Returns both results; the
    /// second is ECANCELED when the first was short.
    pub fn splice_linked(
        &mut self,
        src: BorrowedFd<'_>,
        off_in: Option<u64>,
        pipe_w: BorrowedFd<'_>,
        pipe_r: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        len: usize,
    ) -> (io::Result<usize>, io::Result<usize>) {
        let len = len.min(u32::MAX as usize) as u32;
        let first = opcode::Splice::new(
            types::Fd(src.as_raw_fd()),
            splice_off(off_in),
            types::Fd(pipe_w.as_raw_fd()),
            -1,
            len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
        .flags(squeue::Flags::IO_LINK);
        let second = opcode::Splice::new(
            types::Fd(pipe_r.as_raw_fd()),
            -1,
            types::Fd(dst.as_raw_fd()),
            -1,
            len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build();
        // SAFETY: splice entries point to no memory; all fds are borrowed for the
        // whole call.
        let out = unsafe { self.run(&[first, second]) };
        (result(out[0].res), result(out[1].res))
    }

    /// `IORING_OP_SEND_ZC` (`send(2)` with `MSG_NOSIGNAL | MSG_WAITALL`, zero-copy),
    /// waiting for both the result and the notification that the kernel no longer
    /// needs `buf`.
    pub fn send_zc(&mut self, sock: BorrowedFd<'_>, buf: &[u8]) -> ZcSent {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let e = opcode::SendZc::new(types::Fd(sock.as_raw_fd()), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
            .build();
        // SAFETY: `buf` is borrowed for the whole call, and `run` returns only after
        // the notification CQE, i.e. when the kernel holds no reference to it.
        let out = unsafe { self.run(&[e]) };
        ZcSent {
            result: result(out[0].res),
            copied: out[0]
                .notif
                .map(|res| res & IORING_NOTIF_USAGE_ZC_COPIED != 0),
        }
    }

    /// `IORING_OP_WRITE` (see `write(2)`) at the fd's current position.
    pub fn write(&mut self, fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let e = opcode::Write::new(types::Fd(fd.as_raw_fd()), buf.as_ptr(), len)
            .offset(u64::MAX)
            .build();
        // SAFETY: `buf` is borrowed for the whole call and the write completes
        // (the kernel stops reading it) before `run` returns.
        let out = unsafe { self.run(&[e]) };
        result(out[0].res)
    }
}
