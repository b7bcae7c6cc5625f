//! `uring` engine (stub: to be written).

use std::io;
use std::os::fd::BorrowedFd;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Stub.
#[derive(Debug, Default)]
pub struct Uring;

impl Uring {
    /// A new engine.
    pub fn new() -> Uring {
        Uring
    }
}

impl Engine for Uring {
    fn kind(&self) -> EngineKind {
        EngineKind::Uring
    }

    fn step(
        &mut self,
        _src: Src<'_>,
        _sink: BorrowedFd<'_>,
        _max: usize,
        _stats: &mut Stats,
    ) -> io::Result<usize> {
        Err(unsupported("not implemented yet"))
    }
}

/// Whether io_uring can run here.
pub fn probe() -> Result<(), String> {
    Err("not implemented yet".into())
}
