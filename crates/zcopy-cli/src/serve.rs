//! `zcopy serve` (to be written).

use std::process::ExitCode;

/// Arguments of `zcopy serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs `zcopy serve`.
pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
