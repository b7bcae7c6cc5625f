//! Logs via `tracing` to stderr; `-q`, `-v`, `-vv` or `RUST_LOG` choose how much.
//! Colour only when stderr is a terminal and `NO_COLOR` is unset or empty.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,zcopy_cli=info,zcopy_http=info,zcopy_http1=info,zcopy_site=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false)
        .init();
}

/// Colour on stderr: only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error and its causes on one line, each said once: a cause whose text its
/// parent already ends with ("splice: No space left on device" over "No space left
/// on device") is not repeated.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) || out.contains(&format!("{text}: ")) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
