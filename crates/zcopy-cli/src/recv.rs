//! `zcopy recv`: receive files from `zcopy send`, socket → file.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use zcopy::Preference;
use zcopy_net::accept::{Admission, serve};
use zcopy_net::recv::{RecvConfig, receive};

use crate::progress::{summary, with_bars};

/// Arguments of `zcopy recv`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Listens on 127.0.0.1:9000 unless told otherwise: binding any other \
address must be explicit. Received paths stay beneath --out: absolute paths, '..' and \
symlinks are refused. Files are written as hidden .part files and renamed into place \
only when complete and fsync'd; a broken transfer keeps its .part file so the next send \
resumes it (a .part file with other links is never written through: it is replaced). \
An existing file, symlink or FIFO under a received name is replaced only with --force; \
an existing directory keeps its mode. Senders are served at the same time, each on its \
own thread; a connection counts as a sender (also for --once) only once it has sent a \
complete hello, all of it within 10 s (or --idle-timeout if shorter). A sender can \
probe which names exist under --out, with their size and mtime: see SECURITY.md. \
Protocol: docs/protocol.md."
)]
pub struct RecvArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Directory to write into (must exist).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Exit after one sender (exit code 0 only if it succeeded); connections that
    /// send no hello don't count.
    #[arg(long)]
    once: bool,
    /// Replace existing files (and symlinks, FIFOs) under the received names.
    #[arg(long)]
    force: bool,
    /// Engine for socket → file: auto (files of 1 MiB or more: direct, whole blocks
    /// written with O_DIRECT, bypassing the page cache; smaller ones, and where the
    /// file system refuses O_DIRECT: splice; a calibration profile's order where it
    /// has one), direct, splice, read-write, uring.
    #[arg(long, default_value = "auto", value_parser = parse_pref)]
    engine: Preference,
    /// Refuse files larger than this (bytes; suffixes k, M, G, T: powers of 1024).
    #[arg(long, value_parser = crate::send::parse_size)]
    max_size: Option<u64>,
    /// Refuse more than this many entries per connection.
    #[arg(long, default_value_t = 1_000_000)]
    max_files: u64,
    /// Most senders served at once (as many more may wait; beyond that, new
    /// connections are closed).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_senders: u32,
    /// Drop a sender that sends nothing for this many seconds (counted from the last
    /// byte that arrived).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}

fn parse_pref(s: &str) -> Result<Preference, String> {
    s.parse().map_err(|e: zcopy::UnknownEngine| e.to_string())
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
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    let admission = Admission {
        max_senders: args.max_senders as usize,
        hello_timeout: cfg.idle_timeout.min(Admission::default().hello_timeout),
        once: args.once,
    };
    let ok = serve(
        listener,
        admission,
        move |conn, peer, features| match with_bars(None, quiet, |progress| {
            receive(conn, features, &cfg, progress)
        }) {
            Ok(s) => {
                if !quiet {
                    let line = summary(s.files, s.bytes, s.skipped_bytes, s.elapsed, &s.engines);
                    eprintln!("received from {peer}: {line}");
                }
                true
            }
            Err(e) => {
                eprintln!("zcopy recv: transfer from {peer} failed: {e}");
                false
            }
        },
    )
    .context("accepting senders")?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
