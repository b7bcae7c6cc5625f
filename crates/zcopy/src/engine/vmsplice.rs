//! `vmsplice` engine (stub: to be written).

use std::io;
use std::os::fd::BorrowedFd;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Stub.
#[derive(Debug, Default)]
pub struct Vmsplice;

impl Vmsplice {
    /// A new engine.
    pub fn new() -> Vmsplice {
        Vmsplice
    }
}

impl Engine for Vmsplice {
    fn kind(&self) -> EngineKind {
        EngineKind::Vmsplice
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
