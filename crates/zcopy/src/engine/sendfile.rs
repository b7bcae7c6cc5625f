//! `sendfile` engine (stub: to be written).

use std::io;
use std::os::fd::BorrowedFd;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Stub.
#[derive(Debug, Default)]
pub struct Sendfile;

impl Sendfile {
    /// A new engine.
    pub fn new() -> Sendfile {
        Sendfile
    }
}

impl Engine for Sendfile {
    fn kind(&self) -> EngineKind {
        EngineKind::Sendfile
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
