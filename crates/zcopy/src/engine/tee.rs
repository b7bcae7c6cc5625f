//! `tee` engine (stub: to be written).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Stub.
#[derive(Debug, Default)]
pub struct Tee {
    copies: Vec<OwnedFd>,
}

impl Tee {
    /// A tee engine that also duplicates every byte into each pipe in `copies`.
    pub fn new(copies: Vec<OwnedFd>) -> Tee {
        Tee { copies }
    }
}

impl Engine for Tee {
    fn kind(&self) -> EngineKind {
        EngineKind::Tee
    }

    fn step(
        &mut self,
        _src: Src<'_>,
        _sink: BorrowedFd<'_>,
        _max: usize,
        _stats: &mut Stats,
    ) -> io::Result<usize> {
        let _ = &self.copies;
        Err(unsupported("not implemented yet"))
    }
}
