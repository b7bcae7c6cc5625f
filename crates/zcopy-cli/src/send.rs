//! `zcopy send`: files and directories to a `zcopy recv` over TCP, sendfile out.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use zcopy::Preference;
use zcopy_net::send::{SendConfig, SendError, collect, send};

use crate::progress::{summary, with_bars};

/// Arguments of `zcopy send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zcopy recv --out /srv/in            # on the receiving side\n  \
zcopy send big.iso photos/ --to 127.0.0.1:9000\n\n\
Each file goes out with sendfile (or --engine) and lands through splice on the other \
side, under a read lease held until the receiver has it. To a receiver on this host \
(loopback, a container) auto copies (measured cheaper there); --engine sendfile lends \
by reference, and such a receiver confirms before keeping each file that the lease \
held while it read the bytes (a file whose lease broke is sent again, up to 3 times; \
an older zcopy recv can't confirm, and gets copies). An interrupted transfer resumes where it stopped when sent again; resume trusts \
size and mtime, so a source edited with its mtime put back needs --verify (or \
--no-resume). Exit 0 only \
once the receiver has fsync'd everything; 1 on failure; 2 on usage errors.\n\
Protocol: docs/protocol.md."
)]
pub struct SendArgs {
    /// Files and directories to send (directories recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Receiver address, HOST:PORT.
    #[arg(long, value_parser = parse_to)]
    to: String,
    /// Engine for file → socket: auto, sendfile, splice, mmap, read-write, uring, ...
    #[arg(long, default_value = "auto", value_parser = parse_pref)]
    engine: Preference,
    /// At most this many bytes per second (suffixes k, M, G: powers of 1024).
    #[arg(long, value_parser = parse_rate)]
    limit_rate: Option<u64>,
    /// Hash every file on both sides (XXH3-128) and fail on mismatch; costs one extra
    /// read pass over the data at each end.
    #[arg(long)]
    verify: bool,
    /// Always send files from the start, even when the receiver holds a partial copy.
    #[arg(long)]
    no_resume: bool,
}

fn parse_pref(s: &str) -> Result<Preference, String> {
    s.parse().map_err(|e: zcopy::UnknownEngine| e.to_string())
}

/// HOST:PORT (a usage error without a port).
fn parse_to(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.into()),
        _ => Err(format!(
            "'{s}' is not HOST:PORT (e.g. 127.0.0.1:9000, [::1]:9000)"
        )),
    }
}

/// Parses `10M`, `1G`, `0` or a plain number of bytes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        Some((i, 't' | 'T')) => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 500k, 10M or 1G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is out of range"))
}

/// Parses `500k`, `10M`, `1G` or a plain number of bytes.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a rate like 500k, 10M or 1G"))?;
    n.checked_mul(mult)
        .filter(|&r| r > 0)
        .ok_or_else(|| format!("'{s}' is out of range"))
}

/// Runs `zcopy send`.
pub fn run(args: SendArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    // A path that isn't there is the user's to fix (2); failing to read one that is
    // (EMFILE, EIO, EACCES in a tree) is an I/O error (1).
    for p in &args.paths {
        if let Err(e) = std::fs::metadata(p) {
            eprintln!("zcopy send: '{}': {e}", p.display());
            return Ok(ExitCode::from(2));
        }
    }
    let items = match collect(&args.paths) {
        Ok(items) => items,
        Err(e) => {
            eprintln!("zcopy send: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let total: u64 = items.iter().map(|i| i.entry.size).sum();
    let conn =
        TcpStream::connect(&args.to).with_context(|| format!("connecting to {}", args.to))?;
    let cfg = SendConfig {
        engine: args.engine,
        limit_rate: args.limit_rate,
        verify: args.verify,
        resume: !args.no_resume,
    };
    let result = with_bars(Some(total), quiet, |progress| {
        send(conn, &items, &cfg, progress)
    });
    match result {
        Ok(s) => {
            if !quiet {
                let line = summary(s.files, s.bytes, s.skipped_bytes, s.elapsed, &s.engines);
                eprintln!("sent {line}; receiver: {}", s.receiver);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (SendError::Refused { .. } | SendError::Changed { .. })) => {
            eprintln!("zcopy send: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The help's "sent again, up to N times" is the library's own count.
    #[test]
    fn help_names_the_librarys_attempt_count() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            send: super::SendArgs,
        }
        let help = Cli::command().get_after_help().unwrap().to_string();
        let said = format!("up to {} times", zcopy_net::send::ATTEMPTS);
        assert!(help.contains(&said), "{help}");
    }
}
