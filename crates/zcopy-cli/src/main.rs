//! The `zcopy` command: one module per subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cp;
mod engines;
mod logging;
mod serve;

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
    Serve(serve::ServeArgs),
    /// Copy files (and with -r, directories) with copy_file_range and friends.
    Cp(cp::CpArgs),
    /// Show which engines this kernel supports, and what each costs.
    Engines(engines::EnginesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Cp(args) => cp::run(args),
        Command::Engines(args) => engines::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zcopy: {e:#}");
            ExitCode::from(1)
        }
    }
}
