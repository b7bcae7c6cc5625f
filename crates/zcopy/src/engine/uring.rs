//! `uring`: io_uring operations, one small ring per engine.
//!
//! - fd source: `SPLICE` straight to the sink when either side is a pipe; otherwise
//!   two `SPLICE`s linked with `IOSQE_IO_LINK` (source → engine pipe → sink), one
//!   submission per chunk.
//! - `Src::Mem` to a TCP socket: `SEND_ZC` from the caller's memory, waiting for the
//!   notification (the kernel is done with the memory) before the step returns;
//!   to anything else: `WRITE` (a copy). Like `msg-zerocopy`, a `SEND_ZC` step
//!   waits for the kernel to be done with the memory even on a non-blocking sink.
//!
//! The kernel's opcodes are probed once per process; when io_uring is disabled
//! (`/proc/sys/kernel/io_uring_disabled`, seccomp: ENOSYS/EPERM at setup) or an
//! opcode is missing, the engine reports "unsupported" and the transfer falls back.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::FileType;

use super::{Engine, EngineKind, Src, unsupported};
use crate::fdkind::FdKind;
use crate::stats::Stats;
use crate::sys::uring::{Ops, Ring};

/// Submission-queue size of each engine's ring.
pub const ENTRIES: u32 = 8;
/// Capacity asked for the engine's pipe (the chunk of a linked splice pair).
pub const PIPE_SIZE: usize = 1 << 20;
/// Largest single direct splice.
pub const SPLICE_MAX: usize = 1 << 20;
/// Largest `SEND_ZC`/`WRITE` from caller memory in one step.
pub const MEM_STEP: usize = 4 << 20;

/// io_uring SPLICE / SEND_ZC / WRITE.
#[derive(Debug, Default)]
pub struct Uring {
    ring: Option<Ring>,
    /// Engine pipe (read end, write end) and its capacity, created on first use.
    pipe: Option<(OwnedFd, OwnedFd, usize)>,
    /// Bytes in the engine pipe not yet spliced to the sink.
    in_pipe: usize,
}

impl Uring {
    /// Whether `SEND_ZC` (the memory → TCP path) can run here, and if not, why.
    pub fn probe_send_zc() -> Result<(), crate::ProbeError> {
        probe_send_zc().map_err(crate::ProbeError::Unavailable)
    }

    /// A new engine; the ring is set up on first use (or taken from this thread's
    /// idle rings).
    pub fn new() -> Uring {
        Uring::default()
    }
}

/// An idle ring and its engine pipe, kept for the next engine on this thread.
type Idle = (Ring, Option<(OwnedFd, OwnedFd, usize)>);

/// Most idle rings kept per thread.
const IDLE_RINGS: usize = 4;

thread_local! {
    /// Rings of dropped engines: setting one up (io_uring_setup, mmap of the queues,
    /// io-wq workers) costs far more than a small transfer, so a transfer per file
    /// must not pay it every time.
    static IDLE: std::cell::RefCell<Vec<Idle>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Only a quiet ring with an empty pipe goes back: every step waits for its
        // completions, so a ring between steps has nothing in flight; a pipe that
        // still holds bytes of this engine's sink (its client went away mid-body)
        // is closed with them, never handed to the next engine.
        if self.reusable()
            && let Some(ring) = self.ring.take()
        {
            let pipe = self.pipe.take();
            let _ = IDLE.try_with(|idle| {
                let mut idle = idle.borrow_mut();
                if idle.len() < IDLE_RINGS {
                    idle.push((ring, pipe));
                }
            });
        }
    }
}

/// The kernel's io_uring support, probed once per process.
pub fn ops() -> Result<Ops, String> {
    static OPS: OnceLock<Result<Ops, String>> = OnceLock::new();
    OPS.get_or_init(|| {
        let ring = Ring::new(ENTRIES).map_err(|e| crate::sys::uring::setup_refused(&e))?;
        ring.ops().map_err(|e| format!("io_uring probe: {e}"))
    })
    .clone()
}

/// Whether io_uring can run the engine's fd path here (`SPLICE`), and if not, why.
pub fn probe() -> Result<(), String> {
    let ops = ops()?;
    if !ops.splice {
        return Err("IORING_OP_SPLICE not supported by this kernel".into());
    }
    Ok(())
}

/// Whether `SEND_ZC` (the memory → TCP path) can run here, and if not, why.
pub fn probe_send_zc() -> Result<(), String> {
    if !ops()?.send_zc {
        return Err("IORING_OP_SEND_ZC not supported by this kernel".into());
    }
    Ok(())
}

fn is_pipe(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) == FileType::Fifo)
}

impl Engine for Uring {
    fn kind(&self) -> EngineKind {
        EngineKind::Uring
    }

    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let ops = ops().map_err(unsupported)?;
        if self.ring.is_none() {
            match IDLE.try_with(|idle| idle.borrow_mut().pop()).ok().flatten() {
                Some((ring, pipe)) => {
                    self.ring = Some(ring);
                    self.pipe = pipe;
                }
                None => {
                    let ring = Ring::new(ENTRIES)
                        .map_err(|e| unsupported(format!("io_uring_setup: {e}")))?;
                    self.ring = Some(ring);
                }
            }
        }
        let before = self.ring.as_ref().map_or(0, Ring::enters);
        let r = self.step_ops(ops, src, sink, max, stats);
        stats.syscalls += self.ring.as_ref().map_or(0, Ring::enters) - before;
        if let Ok(n) = r {
            stats.bytes += n as u64;
        }
        r
    }

    fn pending(&self) -> usize {
        self.in_pipe
    }

    /// Nothing counted in the pipe, and the pipe really empty (FIONREAD).
    fn reusable(&self) -> bool {
        self.in_pipe == 0
            && self
                .pipe
                .as_ref()
                .is_none_or(|(r, _, _)| super::pipe_is_empty(r.as_fd()))
    }
}

impl Uring {
    /// The step, with the ring set up; `stats.bytes` is the caller's job.
    fn step_ops(
        &mut self,
        ops: Ops,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if self.in_pipe > 0 {
            return self.flush(sink, 0);
        }
        let ring = self.ring.as_mut().expect("ring set up");
        match src {
            Src::Mem(bytes) => {
                let want = max.min(bytes.len()).min(MEM_STEP);
                if want == 0 {
                    return Ok(0);
                }
                if ops.send_zc && FdKind::of(sink)? == FdKind::TcpSocket {
                    let sent = ring.send_zc(sink, &bytes[..want]);
                    match sent.copied {
                        Some(true) => stats.zerocopy_copied += 1,
                        Some(false) => stats.zerocopy_done += 1,
                        None => {}
                    }
                    sent.result
                } else if ops.write {
                    ring.write(sink, &bytes[..want])
                } else {
                    Err(unsupported("IORING_OP_WRITE not supported"))
                }
            }
            Src::Fd { fd, offset } => {
                if !ops.splice {
                    return Err(unsupported("IORING_OP_SPLICE not supported"));
                }
                if max == 0 {
                    return Ok(0);
                }
                if is_pipe(fd)? || is_pipe(sink)? {
                    return ring.splice(fd, offset, sink, max.min(SPLICE_MAX));
                }
                if self.pipe.is_none() {
                    self.pipe = Some(crate::pipe::sized(PIPE_SIZE)?);
                }
                let (pr, pw, cap) = self.pipe.as_ref().expect("pipe just created");
                let ring = self.ring.as_mut().expect("ring set up");
                let (first, second) =
                    ring.splice_linked(fd, offset, pw.as_fd(), pr.as_fd(), sink, max.min(*cap));
                let n = first?;
                if n == 0 {
                    return Ok(0);
                }
                self.in_pipe = n;
                let done = match second {
                    Ok(m) => m,
                    // Short first splice (link broken) or a full non-blocking sink.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EAGAIN)) => 0,
                    Err(e) => return Err(e),
                };
                self.in_pipe -= done;
                self.flush(sink, done)
            }
        }
    }

    /// Splices what is left in the engine pipe into the sink; `done` bytes of this
    /// step already went. EAGAIN after progress returns the progress.
    fn flush(&mut self, sink: BorrowedFd<'_>, mut done: usize) -> io::Result<usize> {
        let (pr, _, _) = self.pipe.as_ref().expect("bytes in the pipe");
        let ring = self.ring.as_mut().expect("ring set up");
        while self.in_pipe > 0 {
            match ring.splice(pr.as_fd(), None, sink, self.in_pipe) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.in_pipe -= n;
                    done += n;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if done > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}
