//! `zcopy engines` (to be written).

use std::process::ExitCode;

/// Arguments of `zcopy engines`.
#[derive(Debug, clap::Args)]
pub struct EnginesArgs {}

/// Runs `zcopy engines`.
pub fn run(_args: EnginesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
