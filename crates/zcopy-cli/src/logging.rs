//! Logs via `tracing` to stderr; `-q`, `-v`, `-vv` or `RUST_LOG` choose how much.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,zcopy_cli=info,zcopy_http=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
