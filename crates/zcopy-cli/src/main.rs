//! The `zcopy` command: one module per subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cp;
mod engines;
mod logging;
mod progress;
mod recv;
mod send;
mod serve;
mod tee;

/// Move bytes between files, pipes and sockets with the fewest CPU copies Linux
/// allows, and serve files over HTTP straight from the page cache.
#[derive(Debug, Parser)]
#[command(name = "zcopy", version, about, propagate_version = true)]
struct Cli {
    /// Less output (errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More output: -v shows which engine ran and why any fell back, -vv everything.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a directory over HTTP/1.1, sending files from page cache to socket.
    Serve(Box<serve::ServeArgs>),
    /// Copy files (and with -r, directories) with copy_file_range and friends.
    Cp(cp::CpArgs),
    /// Show which engines this kernel supports, and what each costs.
    Engines(engines::EnginesArgs),
    /// Send files and directories to a `zcopy recv` (sendfile out, resumable).
    Send(send::SendArgs),
    /// Receive files from `zcopy send` (splice socket → file).
    Recv(recv::RecvArgs),
    /// Copy stdin to stdout and to files, like tee(1), with tee(2) + splice.
    Tee(tee::TeeArgs),
    /// Measure every engine on this machine: tables, JSON, charts, calibration.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.quiet, cli.verbose);
    // ZCOPY_DISABLE (README): engines and the server's `inotify`; say so of a typo.
    for name in zcopy::Forced::from_env().switches() {
        if name != "inotify" {
            tracing::warn!("ZCOPY_DISABLE: '{name}' is neither an engine nor 'inotify'");
        }
    }
    // Tests only (README): peers behind a veth count as remote.
    if std::env::var(zcopy::peer::TEST_VETH_IS_REMOTE).is_ok_and(|v| v == "1") {
        zcopy::peer::set_test_veth_is_remote(true);
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args, cli.quiet),
        Command::Cp(args) => cp::run(args),
        Command::Engines(args) => engines::run(args),
        Command::Send(args) => send::run(args, cli.quiet),
        Command::Recv(args) => recv::run(args, cli.quiet),
        Command::Tee(args) => tee::run(args),
        Command::Bench(args) => bench::run(args, cli.quiet),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zcopy: {}", logging::describe(&e));
            ExitCode::from(1)
        }
    }
}
