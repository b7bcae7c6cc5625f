//! `zcopy recv`: receive files from `zcopy send`, splicing socket → file.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use zcopy::Preference;
use zcopy_net::recv::{RecvConfig, receive};

use crate::progress::{summary, with_bars};

/// Arguments of `zcopy recv`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Listens on 127.0.0.1:9000 unless told otherwise: binding any other \
address must be explicit. Received paths stay beneath --out: absolute paths, '..' and \
symlinks are refused. Files are written as hidden .part files and renamed into place \
only when complete and fsync'd; a broken transfer keeps its .part file so the next send \
resumes it. Protocol: docs/protocol.md."
)]
pub struct RecvArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Directory to write into (must exist).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Exit after one sender (exit code 0 only if it succeeded).
    #[arg(long)]
    once: bool,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
    /// Engine for socket → file: auto (splice), splice, read-write, uring.
    #[arg(long, default_value = "auto", value_parser = parse_pref)]
    engine: Preference,
    /// Refuse files larger than this many bytes.
    #[arg(long)]
    max_size: Option<u64>,
    /// Refuse more than this many entries per connection.
    #[arg(long, default_value_t = 1_000_000)]
    max_files: u64,
}

fn parse_pref(s: &str) -> Result<Preference, String> {
    s.parse()
}

/// Runs `zcopy recv`.
pub fn run(args: RecvArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if !args.out.is_dir() {
        eprintln!("zcopy recv: '{}' is not a directory", args.out.display());
        return Ok(ExitCode::from(2));
    }
    let listener =
        TcpListener::bind(&args.listen).with_context(|| format!("listening on {}", args.listen))?;
    println!(
        "zcopy: receiving into {} on {}",
        args.out.display(),
        listener.local_addr()?
    );
    let cfg = RecvConfig {
        out: args.out.clone(),
        force: args.force,
        resume: true,
        max_files: args.max_files,
        max_size: args.max_size.unwrap_or(u64::MAX),
        engine: args.engine,
    };
    loop {
        let (conn, peer) = listener.accept()?;
        tracing::info!("sender connected from {peer}");
        let result = with_bars(None, quiet, |progress| receive(conn, &cfg, progress));
        match result {
            Ok(s) => {
                if !quiet {
                    let line = summary(s.files, s.bytes, s.skipped_bytes, s.elapsed, &s.engines);
                    eprintln!("received from {peer}: {line}");
                }
                if args.once {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) => {
                eprintln!("zcopy recv: transfer from {peer} failed: {e}");
                if args.once {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
}
