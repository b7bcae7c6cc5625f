//! The engines: one module each, all behind [`Engine`].
//!
//! An engine moves bytes from a source ([`Src`]) to a sink fd, a step at a time, and
//! knows nothing of HTTP or of which engine runs after it. When it can't do the job
//! here it returns an error that [`is_unsupported`] recognises, and the transfer
//! moves on to the next engine of its plan.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::str::FromStr;

use crate::stats::Stats;

mod copy_range;
mod direct;
mod mmap;
mod msg_zerocopy;
mod read_write;
mod sendfile;
mod splice;
mod tee;
mod uring;
mod vmsplice;

pub use copy_range::CopyRange;
pub use direct::Direct;
pub use mmap::Mmap;
pub use msg_zerocopy::MsgZerocopy;
pub use read_write::ReadWrite;
pub use sendfile::Sendfile;
pub use splice::Splice;
pub use tee::Tee;
pub use uring::Uring;
pub use vmsplice::Vmsplice;

/// Where an engine's bytes come from.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Src<'a> {
    /// An fd. `offset` is `Some` for files (read at that position; the fd's own
    /// file position is neither used nor moved) and `None` for streams.
    Fd {
        /// The source fd.
        fd: BorrowedFd<'a>,
        /// Position to read from, for seekable sources.
        offset: Option<u64>,
    },
    /// Bytes already in memory, starting at the first byte still to send.
    Mem(&'a [u8]),
}

/// One way of moving bytes. [`EngineKind::create`] makes one; a [`Transfer`](crate::Transfer)
/// runs several with fallbacks, but an engine can be stepped by
/// hand:
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use zcopy::engine::{Engine, Splice};
/// use zcopy::{Src, Stats};
///
/// let mut src = tempfile::tempfile()?;
/// src.write_all(&[9u8; 70_000])?;
/// let dst = tempfile::tempfile()?;
/// let mut engine = Splice::new();
/// let mut stats = Stats::default();
/// let mut at = 0u64;
/// while at < 70_000 {
///     let from = Src::Fd { fd: src.as_fd(), offset: Some(at) };
///     at += engine.step(from, dst.as_fd(), 65536, &mut stats)? as u64;
/// }
/// assert_eq!(stats.bytes, 70_000);
/// assert_eq!(dst.metadata()?.len(), 70_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Engine: Send + fmt::Debug {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Moves at most `max` bytes from `src` to `sink`, returning how many reached the
    /// sink. `Ok(0)` means the source has nothing more (end of file or stream).
    ///
    /// On a non-blocking sink, `Err(WouldBlock)` means nothing moved; call again
    /// when the sink is writable. Bytes taken from a stream source but not yet
    /// delivered stay inside the engine ([`Engine::pending`]) and go out first on
    /// the next call.
    fn step(
        &mut self,
        src: Src<'_>,
        sink: BorrowedFd<'_>,
        max: usize,
        stats: &mut Stats,
    ) -> io::Result<usize>;

    /// Bytes taken from the source that have not reached the sink yet.
    fn pending(&self) -> usize {
        0
    }

    /// Lets go of anything kept from the last source between steps (a mapping, which
    /// pins the open file and so any lease on it), before the engine is reused for
    /// another source.
    fn release(&mut self) {}

    /// Whether the engine may serve another source or sink: it holds no byte of the
    /// last one (nothing [`pending`](Engine::pending), an empty pipe) and the kernel
    /// owes it nothing (every zero-copy completion in). An engine that is not
    /// reusable is dropped, never handed to the next transfer: what it holds would
    /// reach the next sink first.
    fn reusable(&self) -> bool {
        self.pending() == 0
    }
}

/// Whether a pipe holds no bytes (`ioctl(FIONREAD)` says 0); false when it can't
/// be asked.
pub(crate) fn pipe_is_empty(read_end: BorrowedFd<'_>) -> bool {
    rustix::io::ioctl_fionread(read_end).is_ok_and(|n| n == 0)
}

/// The engines zcopy knows. More may come: match with a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EngineKind {
    /// `read` + `write` through a reusable buffer: the baseline.
    ReadWrite,
    /// `mmap` the source, `write` from the mapping.
    Mmap,
    /// `sendfile(2)`.
    Sendfile,
    /// `splice(2)` source → pipe → sink.
    Splice,
    /// `vmsplice(2)` user memory → pipe, then `splice(2)` → sink.
    Vmsplice,
    /// `tee(2)` pipe → pipes, without consuming.
    Tee,
    /// `copy_file_range(2)`.
    CopyRange,
    /// `O_DIRECT` on the regular-file side: reads from a file into an aligned
    /// buffer, then `write`; or `read` from a stream, then `O_DIRECT` writes into a
    /// file.
    Direct,
    /// `send(MSG_ZEROCOPY)` with completions from the error queue.
    MsgZerocopy,
    /// io_uring: linked SPLICE, SEND_ZC.
    Uring,
}

/// What an engine costs on paper (the textbook count, not a measurement), for tables.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct EngineInfo {
    /// The syscalls it issues.
    pub calls: &'static str,
    /// The fd pairs it accepts.
    pub accepts: &'static str,
    /// CPU copies of each byte, per the textbook count.
    pub cpu_copies: &'static str,
    /// User/kernel switches, per the textbook count.
    pub switches: &'static str,
}

impl EngineKind {
    /// Every engine, in table order.
    pub const ALL: [EngineKind; 10] = [
        EngineKind::ReadWrite,
        EngineKind::Mmap,
        EngineKind::Sendfile,
        EngineKind::Splice,
        EngineKind::Vmsplice,
        EngineKind::Tee,
        EngineKind::CopyRange,
        EngineKind::Direct,
        EngineKind::MsgZerocopy,
        EngineKind::Uring,
    ];

    /// The engine's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::ReadWrite => "read-write",
            EngineKind::Mmap => "mmap",
            EngineKind::Sendfile => "sendfile",
            EngineKind::Splice => "splice",
            EngineKind::Vmsplice => "vmsplice",
            EngineKind::Tee => "tee",
            EngineKind::CopyRange => "copy-range",
            EngineKind::Direct => "direct",
            EngineKind::MsgZerocopy => "msg-zerocopy",
            EngineKind::Uring => "uring",
        }
    }

    /// The engine's textbook costs and the fd pairs it accepts.
    pub fn info(self) -> EngineInfo {
        let (calls, accepts, cpu_copies, switches) = match self {
            EngineKind::ReadWrite => ("read + write", "any → any", "2", "4 per chunk"),
            EngineKind::Mmap => ("mmap + write", "file → any", "1", "4"),
            EngineKind::Sendfile => ("sendfile", "file → any", "1 (0 with SG-DMA)", "2"),
            EngineKind::Splice => ("splice ×2", "any → pipe → any", "0", "2 per leg"),
            EngineKind::Vmsplice => (
                "vmsplice + splice",
                "memory/any → pipe → any",
                "0 (gift)",
                "2 per leg",
            ),
            EngineKind::Tee => ("tee + splice", "pipe → pipe(s)", "0", "1 per copy"),
            EngineKind::CopyRange => ("copy_file_range", "file → file", "0 (reflink)", "2"),
            EngineKind::Direct => (
                "O_DIRECT read + write, or read + O_DIRECT write",
                "file → any, stream → file",
                "1",
                "4",
            ),
            EngineKind::MsgZerocopy => (
                "send(MSG_ZEROCOPY) + recvmsg(ERRQUEUE)",
                "memory/any → tcp",
                "0 (pinned)",
                "2 + completions",
            ),
            EngineKind::Uring => (
                "io_uring SPLICE / SEND_ZC",
                "any → any",
                "per op",
                "batched",
            ),
        };
        EngineInfo {
            calls,
            accepts,
            cpu_copies,
            switches,
        }
    }

    /// A fresh engine of this kind with default settings.
    pub fn create(self) -> Box<dyn Engine> {
        match self {
            EngineKind::ReadWrite => Box::new(read_write::ReadWrite::new(read_write::DEFAULT_BUF)),
            EngineKind::Mmap => Box::new(mmap::Mmap::new()),
            EngineKind::Sendfile => Box::new(sendfile::Sendfile::new()),
            EngineKind::Splice => Box::new(splice::Splice::new()),
            EngineKind::Vmsplice => Box::new(vmsplice::Vmsplice::new()),
            EngineKind::Tee => Box::new(tee::Tee::new(Vec::new())),
            EngineKind::CopyRange => Box::new(copy_range::CopyRange::new()),
            EngineKind::Direct => Box::new(direct::Direct::new()),
            EngineKind::MsgZerocopy => Box::new(msg_zerocopy::MsgZerocopy::new()),
            EngineKind::Uring => Box::new(uring::Uring::new()),
        }
    }

    /// Whether bytes this engine sends from a file can still be references to the
    /// file's page-cache pages after the call returns (in a pipe, a socket's send
    /// queue, or a local peer's receive queue), so that truncating or rewriting the
    /// file afterwards changes bytes already "sent".
    ///
    /// True for `sendfile`, `splice` and `uring` (SPLICE) — and `tee`, which
    /// duplicates such references. False for the engines that copy at call time
    /// (`read-write`, `mmap`'s `write`, `direct`, `copy-range` into a file) and for
    /// `vmsplice` and `msg-zerocopy`: they reference or pin only the engine's own
    /// buffer, filled by a `read` (a copy taken at that moment) and not reused until
    /// the kernel is done with it, so later changes to the file can't reach them.
    pub fn sends_by_reference(self) -> bool {
        matches!(
            self,
            EngineKind::Sendfile | EngineKind::Splice | EngineKind::Uring | EngineKind::Tee
        )
    }

    /// Whether this kernel has what the engine needs at all (io_uring's SPLICE,
    /// `SO_ZEROCOPY`), and if not, why. Cheap: nothing moves; see
    /// [`probe::verify`](crate::probe::verify) for a check that moves bytes.
    pub fn probe(self) -> Result<(), ProbeError> {
        match self {
            EngineKind::Uring => uring::probe(),
            EngineKind::MsgZerocopy => msg_zerocopy::probe(),
            _ => Ok(()),
        }
        .map_err(ProbeError::Unavailable)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, UnknownEngine> {
        EngineKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownEngine {
                name: s.to_string(),
            })
    }
}

/// An error that says "this engine can't do this job here" with a reason.
pub fn unsupported(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, why.into())
}

/// The one rule for falling back: does `err` mean this engine can't do the job here,
/// so that the next engine should continue? `moved` is what this engine has already
/// delivered; EINVAL only counts before the first byte (after that it is a real
/// error, not a missing feature).
pub fn is_unsupported(err: &io::Error, moved: u64) -> bool {
    if err.kind() == io::ErrorKind::Unsupported {
        return true;
    }
    match err.raw_os_error() {
        Some(libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::ENOTTY | libc::ESPIPE) => true,
        Some(libc::EINVAL | libc::EPERM | libc::EBADF) => moved == 0,
        _ => false,
    }
}

/// A name that is no engine's ([`EngineKind`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine '{name}' (known: {})", known())]
#[non_exhaustive]
pub struct UnknownEngine {
    /// The name given.
    pub name: String,
}

fn known() -> String {
    let names: Vec<_> = EngineKind::ALL.iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// Why an engine can't run on this machine ([`EngineKind::probe`],
/// [`probe::verify`](crate::probe::verify)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The kernel lacks a feature the engine needs: which.
    #[error("{0}")]
    Unavailable(String),
    /// A system call failed while trying the engine.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The engine delivered fewer bytes than it was given.
    #[error("the source ended after {got} of {expected} bytes")]
    ShortSource {
        /// Bytes handed to the engine.
        expected: u64,
        /// Bytes it delivered.
        got: u64,
    },
    /// The bytes that came out differ from the bytes that went in.
    #[error("bytes differ after the transfer")]
    Mismatch,
}
