//! `msg-zerocopy` engine (stub: to be written).

use std::io;
use std::os::fd::BorrowedFd;

use super::{Engine, EngineKind, Src, unsupported};
use crate::stats::Stats;

/// Stub.
#[derive(Debug, Default)]
pub struct MsgZerocopy;

impl MsgZerocopy {
    /// A new engine.
    pub fn new() -> MsgZerocopy {
        MsgZerocopy
    }
}

impl Engine for MsgZerocopy {
    fn kind(&self) -> EngineKind {
        EngineKind::MsgZerocopy
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

/// Whether MSG_ZEROCOPY can run here.
pub fn probe() -> Result<(), String> {
    Err("not implemented yet".into())
}
