//! The errors callers can match on.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::engine::EngineKind;
pub use crate::engine::{ProbeError, UnknownEngine};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Every engine of the plan said it can't do this job here.
    #[error("no engine can do this here (tried: {})", Tried(tried))]
    NoEngine {
        /// The engines tried, in order, each with why it handed over.
        tried: Vec<Fallback>,
    },
    /// The source ended before the promised length.
    #[error("source shrank: expected {expected} bytes, it ended after {got}")]
    SourceShrank {
        /// Bytes promised.
        expected: u64,
        /// Bytes that existed.
        got: u64,
    },
    /// Another process started writing or truncating the source while we sent it.
    #[error("source is being modified by another process; stopped after {sent} bytes")]
    SourceModified {
        /// Bytes delivered before stopping.
        sent: u64,
    },
    /// The source or the sink could not be inspected (`fstat`, `getsockopt`) to
    /// choose an engine.
    #[error("inspecting the source and sink: {0}")]
    Inspect(#[source] io::Error),
    /// An I/O error from the engine that was running.
    #[error("{engine}: {source}")]
    Io {
        /// The engine that failed.
        engine: EngineKind,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl TransferError {
    /// The underlying I/O error kind, if any (e.g. `WouldBlock` on non-blocking sinks).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TransferError::Io { source, .. } | TransferError::Inspect(source) => {
                Some(source.kind())
            }
            _ => None,
        }
    }
}

/// Why an engine handed the job over to the next engine of the plan.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FallbackReason {
    /// Switched off by the caller's [`Forced`](crate::Forced) configuration once
    /// it had moved `after` bytes.
    Forced {
        /// Bytes the engine had moved when it was switched off.
        after: u64,
    },
    /// The engine can't do this job here: the kernel, the file system or the fd pair
    /// lacks what it needs. The error says what (its
    /// [`raw_os_error`](io::Error::raw_os_error) is the errno, when there is one).
    Unsupported(Arc<io::Error>),
}

impl FallbackReason {
    /// The error the engine reported, for [`FallbackReason::Unsupported`].
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            FallbackReason::Unsupported(e) => Some(e),
            FallbackReason::Forced { .. } => None,
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackReason::Forced { after } => write!(f, "forced off after {after} bytes"),
            FallbackReason::Unsupported(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FallbackReason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FallbackReason::Unsupported(e) => Some(&**e),
            FallbackReason::Forced { .. } => None,
        }
    }
}

/// One engine that handed over, and why.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Fallback {
    /// The engine.
    pub engine: EngineKind,
    /// Why it handed over.
    pub reason: FallbackReason,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.engine, self.reason)
    }
}

/// Formats a list of fallbacks as `a (why) → b (why)`.
struct Tried<'a>(&'a [Fallback]);

impl fmt::Display for Tried<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no engine in the plan");
        }
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}
