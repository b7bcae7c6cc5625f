//! `zcopy tee`: tee(1) without user-space copies when stdin is a pipe.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `zcopy tee`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  producer | zcopy tee copy1.log copy2.log | consumer\n\n\
When stdin is a pipe, tee(2) duplicates its pages for each FILE and splice moves them: \
no byte of the data enters user space. Otherwise (stdin a file or a terminal) it copies \
through a buffer like tee(1); -v says which path ran and why.\n\n\
As with tee(1), a FILE that can't be opened or written (a full disk) is named on stderr \
and dropped; stdout and the other FILEs still get every byte, and the exit status is 1."
)]
pub struct TeeArgs {
    /// Files to write (created or truncated; appended to with -a).
    files: Vec<PathBuf>,
    /// Append to the files instead of truncating them.
    #[arg(short, long)]
    append: bool,
    /// Copy through user space even when zero-copy would work (for comparison).
    #[arg(long)]
    copy: bool,
}

/// Runs `zcopy tee`.
pub fn run(args: TeeArgs) -> anyhow::Result<ExitCode> {
    // Like tee(1): a file that can't be opened or written is named, the others and
    // stdout get every byte, and the exit status says something failed.
    let mut ok = true;
    let mut files = Vec::new();
    for path in &args.files {
        match OpenOptions::new()
            .write(true)
            .create(true)
            .append(args.append)
            .truncate(!args.append)
            .open(path)
        {
            Ok(f) => files.push((path, f)),
            Err(e) => {
                eprintln!("zcopy tee: '{}': {e}", path.display());
                ok = false;
            }
        }
    }
    let outputs: Vec<_> = files.iter().map(|(_, f)| f.as_fd()).collect();
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let mut forced = zcopy::Forced::from_env();
    if args.copy {
        forced = forced.disable(zcopy::EngineKind::Tee);
    }
    let report = zcopy::fanout::fanout(stdin.as_fd(), stdout.as_fd(), &outputs, &forced)
        .context("copying stdin to stdout")?;
    for (i, e) in &report.failed {
        eprintln!(
            "zcopy tee: '{}': {e} (stopped there; the other outputs got everything)",
            files[*i].0.display()
        );
        ok = false;
    }
    match &report.fallback_reason {
        Some(why) => tracing::debug!("tee: read-write ({why}); {} bytes", report.bytes),
        None => tracing::debug!(
            "tee: zero-copy (tee + splice), {} bytes, {} syscalls; outputs: {}",
            report.bytes,
            report.stats.syscalls,
            report.outputs.join(", ")
        ),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
