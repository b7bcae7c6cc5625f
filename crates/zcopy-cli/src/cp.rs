//! `zcopy cp` (to be written).

use std::process::ExitCode;

/// Arguments of `zcopy cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {}

/// Runs `zcopy cp`.
pub fn run(_args: CpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
