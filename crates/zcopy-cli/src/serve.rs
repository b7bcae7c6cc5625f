//! `zcopy serve`: a static HTTP/1.1 file server that sends from page cache to socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use zcopy::Preference;
use zcopy_http::config::{AccessLog, Config};
use zcopy_http::path::SymlinkPolicy;
use zcopy_http::request::Limits;
use zcopy_http::server::{Server, ServerError};

/// Arguments of `zcopy serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory to serve.
    #[arg(default_value = ".")]
    root: PathBuf,
    /// Address to listen on (repeatable; IPv6 as `[::1]:8080`; port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: Vec<SocketAddr>,
    /// Engine that sends file bodies: auto, sendfile, splice, mmap, read-write, direct,
    /// uring (others fall back behind it). auto: sendfile (or the calibrated choice) to
    /// clients on other hosts; mmap, which copies at send time, to clients on this
    /// machine, whose receive queues would otherwise share our page-cache pages.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    engine: Preference,
    /// Event loop: auto (io_uring where this kernel allows it, else epoll), epoll, uring.
    #[arg(long, default_value = "auto")]
    io: zcopy_http::driver::IoDriver,
    /// Worker threads, each with its own event loop (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// List directories that have no index file.
    #[arg(long)]
    listing: bool,
    /// Serve dotfiles (hidden by default).
    #[arg(long)]
    hidden: bool,
    /// Symbolic links: follow, within-root (only if they stay inside ROOT) or never.
    #[arg(long, default_value = "within-root", value_parser = parse_symlinks)]
    symlinks: SymlinkPolicy,
    /// Index file served for a directory (empty: none).
    #[arg(long, value_name = "NAME", default_value = "index.html")]
    index: String,
    /// Seconds a client has to send a request head (→ 408).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds a response may make no progress before the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    send_timeout: f64,
    /// Most open connections (all workers together) [default: 16384, or fewer if the
    /// open-file limit can't hold that many].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Longest request line in bytes (→ 414).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_request_line)]
    max_request_line: usize,
    /// Largest request head in bytes (→ 431).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most request header fields (→ 431).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Write a Common Log Format access log to FILE, or to stdout with `-` (the default
    /// when the flag is given without a value).
    #[arg(long, value_name = "FILE|-", num_args = 0..=1, default_missing_value = "-")]
    access_log: Option<String>,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    shutdown_grace: f64,
    /// Seconds a small file (up to 64 KiB) stays open in a worker's cache before its
    /// path is resolved again; every hit is still revalidated with fstat, so sizes and
    /// ETags are current. 0 turns the cache off.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    file_cache_ttl: f64,
}

fn parse_engine(s: &str) -> Result<Preference, String> {
    const SERVER_ENGINES: [&str; 7] = [
        "auto",
        "sendfile",
        "splice",
        "mmap",
        "read-write",
        "direct",
        "uring",
    ];
    if !SERVER_ENGINES.contains(&s) {
        return Err(format!(
            "unknown engine '{s}' (known: {})",
            SERVER_ENGINES.join(", ")
        ));
    }
    s.parse()
}

fn parse_symlinks(s: &str) -> Result<SymlinkPolicy, String> {
    match s {
        "follow" => Ok(SymlinkPolicy::Follow),
        "within-root" => Ok(SymlinkPolicy::WithinRoot),
        "never" => Ok(SymlinkPolicy::Never),
        _ => Err(format!(
            "unknown policy '{s}' (known: follow, within-root, never)"
        )),
    }
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{what}: not a duration: {v}"))
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        Ok(Config {
            root: self.root.clone(),
            listen: self.listen.clone(),
            engine: self.engine,
            io: self.io,
            workers: self.workers.unwrap_or(0),
            listing: self.listing,
            hidden: self.hidden,
            symlinks: self.symlinks,
            index: self.index.clone(),
            header_timeout: secs("header-timeout", self.header_timeout)?,
            idle_timeout: secs("idle-timeout", self.idle_timeout)?,
            send_timeout: secs("send-timeout", self.send_timeout)?,
            max_connections: self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            limits: Limits {
                max_request_line: self.max_request_line,
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
            },
            access_log: self.access_log.as_deref().map(|a| match a {
                "-" => AccessLog::Stdout,
                f => AccessLog::File(PathBuf::from(f)),
            }),
            shutdown_grace: secs("shutdown-grace", self.shutdown_grace)?,
            file_cache_ttl: secs("file-cache-ttl", self.file_cache_ttl)?,
            ..Config::default()
        })
    }
}

/// Runs `zcopy serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zcopy: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    match std::fs::metadata(&config.root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            eprintln!("zcopy: {}: not a directory", config.root.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("zcopy: {}: {e}", config.root.display());
            return Ok(ExitCode::from(2));
        }
    }
    let fit = fit_fd_limit(config.worker_count());
    match args.max_connections {
        None if fit < config.max_connections => {
            tracing::debug!(
                "the open-file limit holds {fit} connections: serving at most that many"
            );
            config.max_connections = fit;
        }
        Some(n) if n > fit => tracing::warn!(
            "--max-connections {n} is more than the open-file limit holds ({fit}); \
             accepting pauses while fds are short"
        ),
        _ => {}
    }
    let root = config.root.clone();
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e @ ServerError::Root { .. }) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let handle = server.shutdown_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("zcopy-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if let Some(sig) = signals.next() {
                tracing::info!(signal = sig, "shutting down (again to stop at once)");
                handle.shutdown();
            }
            if signals.next().is_some() {
                std::process::exit(130);
            }
        })
        .context("starting the signal thread")?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for addr in server.local_addrs() {
            writeln!(out, "zcopy: serving {} on http://{addr}/", root.display())?;
        }
        out.flush()?;
    }
    server.run().context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Connections served at once unless `--max-connections` says otherwise.
const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Raises the open-file limit to its hard maximum (each connection is an fd, and so is
/// each file being sent or cached), and returns how many connections it can hold.
fn fit_fd_limit(workers: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!("could not raise the open-file limit: {e}");
        }
    }
    let fds = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX) as usize;
    // Spare fds: listeners and logs, each worker's file cache, and an eighth for
    // files being sent.
    let spare = 64 + workers * zcopy_http::cache::CACHE_FILES + fds / 8;
    fds.saturating_sub(spare).max(16)
}
