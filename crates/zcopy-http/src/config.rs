//! Everything `zcopy serve` can be told: a plain struct the CLI fills in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zcopy::Preference;

use crate::path::SymlinkPolicy;
use crate::request::Limits;

/// Where the access log (Common Log Format) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory served.
    pub root: PathBuf,
    /// Addresses to listen on (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// Which engine sends file bodies (with fallback).
    pub engine: Preference,
    /// Which event loop runs the workers.
    pub io: crate::driver::IoDriver,
    /// Worker threads, each with its own event loop (0: one per core).
    pub workers: usize,
    /// Answer directories without an index file with a listing.
    pub listing: bool,
    /// Serve dotfiles.
    pub hidden: bool,
    /// What to do with symbolic links.
    pub symlinks: SymlinkPolicy,
    /// Index file name tried in directories (empty: none).
    pub index: String,
    /// A request head must arrive within this time (→ 408).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub idle_timeout: Duration,
    /// A response that makes no progress for this long is dropped.
    pub send_timeout: Duration,
    /// Most open connections, all workers together.
    pub max_connections: usize,
    /// Request head limits.
    pub limits: Limits,
    /// Largest request body read and thrown away (→ 413 beyond).
    pub max_body_discard: u64,
    /// Access log destination, if any.
    pub access_log: Option<AccessLog>,
    /// How long in-flight responses may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How long a small file stays open in a worker's cache before its path is
    /// resolved again (0: no cache). Every hit is revalidated with fstat.
    pub file_cache_ttl: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from("."),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            engine: Preference::Auto,
            io: crate::driver::IoDriver::Auto,
            workers: 0,
            listing: false,
            hidden: false,
            symlinks: SymlinkPolicy::WithinRoot,
            index: String::from("index.html"),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            limits: Limits::default(),
            max_body_discard: 1024 * 1024,
            access_log: None,
            shutdown_grace: Duration::from_secs(5),
            file_cache_ttl: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// The number of worker threads to start (`workers`, or one per core).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
